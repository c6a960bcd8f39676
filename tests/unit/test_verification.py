"""The memory of the DHT's ping-backs: one check per node at a time, a hold-off after an
answer, a doubling back-off after failures, a rate over all requesters, bounded memory."""

from __future__ import annotations

import pytest

from plexinode.dht.verification import Verifications
from plexinode.identity import NodeId


def nid(i: int) -> NodeId:
    return NodeId(i.to_bytes(32, "big"))


def test_one_check_at_a_time_then_a_hold_off_after_an_answer() -> None:
    v = Verifications(holdoff=100.0)
    assert v.begin(nid(1), 0.0)
    assert v.in_flight() == 1
    assert not v.begin(nid(1), 1.0)
    v.end(nid(1), 2.0, answered=True)
    assert v.in_flight() == 0
    assert len(v) == 1
    assert not v.begin(nid(1), 101.9)
    assert v.begin(nid(1), 102.0)
    assert v.stats == {
        "started": 2,
        "skipped_in_flight": 1,
        "answered": 1,
        "skipped_answered": 1,
    }


def test_failures_back_off_doubling_up_to_the_maximum_and_an_answer_resets_them() -> None:
    v = Verifications(backoff=10.0, max_backoff=35.0, holdoff=0.0)
    now = 0.0
    waits = []
    for _ in range(4):
        assert v.begin(nid(7), now)
        v.end(nid(7), now, answered=False)
        wait = 0.0
        while not v.begin(nid(7), now + wait):
            wait += 1.0
        v.cancel(nid(7))
        waits.append(wait)
        now += wait
    assert waits == [10.0, 20.0, 35.0, 35.0]
    assert v.stats["failed"] == 4
    assert v.stats["skipped_backoff"] == sum(int(w) for w in waits)
    # An answer ends the series: the next failure waits the first back-off again.
    assert v.begin(nid(7), now)
    v.end(nid(7), now, answered=True)
    assert v.begin(nid(7), now)
    v.end(nid(7), now, answered=False)
    assert not v.begin(nid(7), now + 9.0)
    assert v.begin(nid(7), now + 10.0)


def test_many_failures_do_not_overflow_the_back_off() -> None:
    v = Verifications(backoff=1.0, max_backoff=5.0)
    for i in range(2000):
        assert v.begin(nid(3), 10.0 * i)
        v.end(nid(3), 10.0 * i, answered=False)
    assert not v.begin(nid(3), 19994.0)
    assert v.begin(nid(3), 19995.0)


def test_checks_start_at_a_bounded_rate_over_all_requesters() -> None:
    v = Verifications(rate=2.0, burst=3.0)
    started = [v.begin(nid(i), 0.0) for i in range(5)]
    assert started == [True, True, True, False, False]
    assert v.stats["skipped_over_rate"] == 2
    # Half a second brings one token back; a clock that goes back brings none.
    assert v.begin(nid(10), 0.5)
    assert not v.begin(nid(11), 0.4)
    assert not v.begin(nid(11), 0.5)
    # A long pause refills the burst, no more.
    assert [v.begin(nid(20 + i), 100.0) for i in range(4)] == [True, True, True, False]


def test_a_cancelled_check_leaves_no_memory_and_returns_its_token() -> None:
    v = Verifications(rate=0.0, burst=1.0)
    assert v.begin(nid(1), 0.0)
    assert not v.begin(nid(2), 0.0)
    v.cancel(nid(1))
    assert v.in_flight() == 0
    assert len(v) == 0
    assert v.begin(nid(2), 0.0)
    # Cancelling what is not in flight changes nothing.
    v.cancel(nid(1))
    assert v.stats["cancelled"] == 1
    assert not v.begin(nid(1), 0.0)


def test_memory_is_bounded_least_recently_checked_forgotten_first() -> None:
    v = Verifications(memory=2, holdoff=100.0)
    a, b, c = nid(1), nid(2), nid(3)
    for node in (a, b):
        assert v.begin(node, 0.0)
        v.end(node, 0.0, answered=True)
    # a, checked again after its hold-off, becomes the most recently checked ...
    assert v.begin(a, 200.0)
    v.end(a, 200.0, answered=True)
    # ... so c's check makes b the one forgotten: b is checked again at once, a is not.
    assert v.begin(c, 200.0)
    v.end(c, 200.0, answered=True)
    assert len(v) == 2
    assert not v.begin(a, 201.0)
    assert v.begin(b, 201.0)


@pytest.mark.parametrize(
    "kwargs",
    [{"holdoff": -1.0}, {"backoff": -1.0}, {"rate": -1.0}, {"burst": 0.5}, {"memory": 0}],
)
def test_bad_parameters_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        Verifications(**kwargs)  # type: ignore[arg-type]
