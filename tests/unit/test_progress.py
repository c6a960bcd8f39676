"""The progress core: reports, their frame form, the rate and time left over a moving window,
and the throttle that limits how often progress is passed on."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plexinode.errors import DecodeError
from plexinode.shards.progress import (
    BACKUP,
    CHALLENGES,
    MAX_NAME,
    RESTORE,
    VERIFY,
    Progress,
    RateEstimator,
    Throttle,
    ignore,
)


def test_fraction() -> None:
    assert Progress(BACKUP, 5).fraction is None
    assert Progress(BACKUP, 5, 20).fraction == 0.25
    assert Progress(BACKUP, 0, 0).fraction == 1.0  # nothing to do is all done
    assert Progress(BACKUP, 30, 20).fraction == 1.0  # the estimate was short
    ignore(Progress(BACKUP, 1))  # reports to nobody


progresses = st.builds(
    Progress,
    phase=st.sampled_from([BACKUP, RESTORE, VERIFY, "x" * MAX_NAME]),
    done=st.integers(0, 1 << 62),
    total=st.none() | st.integers(0, 1 << 62),
    unit=st.sampled_from(["bytes", CHALLENGES]),
    sent_bytes=st.integers(0, 1 << 62),
    rate=st.none() | st.floats(0, 1e12),
    eta_seconds=st.none() | st.floats(0, 1e9),
)


@given(progresses)
def test_the_map_round_trips(progress: Progress) -> None:
    assert Progress.from_map(progress.to_map()) == progress


def test_a_minimal_map_and_integers_for_seconds() -> None:
    assert Progress.from_map({"phase": VERIFY, "done": 3, "rate": 2, "eta_seconds": 0}) == (
        Progress(VERIFY, 3, None, "bytes", 0, 2.0, 0.0)
    )


@pytest.mark.parametrize(
    ("obj", "words"),
    [
        ([1], "must be a map"),
        ({"done": 1}, "phase must be a name"),
        ({"phase": "", "done": 1}, "phase must be a name"),
        ({"phase": "x" * (MAX_NAME + 1), "done": 1}, "phase must be a name"),
        ({"phase": BACKUP, "unit": 7, "done": 1}, "unit must be a name"),
        ({"phase": BACKUP}, "done must be a count"),
        ({"phase": BACKUP, "done": -1}, "done must be a count"),
        ({"phase": BACKUP, "done": True}, "done must be a count"),
        ({"phase": BACKUP, "done": 1.5}, "done must be a count"),
        ({"phase": BACKUP, "done": 1, "total": "2"}, "total must be a count"),
        ({"phase": BACKUP, "done": 1, "sent_bytes": None}, "sent_bytes must be a count"),
        ({"phase": BACKUP, "done": 1, "rate": "fast"}, "rate must be a non-negative"),
        ({"phase": BACKUP, "done": 1, "rate": -1.0}, "rate must be a non-negative"),
        ({"phase": BACKUP, "done": 1, "rate": float("nan")}, "rate must be a non-negative"),
        ({"phase": BACKUP, "done": 1, "eta_seconds": float("inf")}, "eta_seconds must be"),
        ({"phase": BACKUP, "done": 1, "eta_seconds": False}, "eta_seconds must be"),
    ],
)
def test_malformed_maps_are_refused(obj: object, words: str) -> None:
    with pytest.raises(DecodeError, match=words):
        Progress.from_map(obj)


def test_the_rate_needs_two_reports_some_time_apart() -> None:
    rates = RateEstimator()
    assert rates.rate() is None
    rates.observe(5.0, 100)
    assert rates.rate() is None
    rates.observe(5.0, 200)  # the same instant: no time has passed
    assert rates.rate() is None
    rates.observe(7.0, 400)
    assert rates.rate() == 150.0  # (400 - 100) / 2 s


def test_the_rate_follows_the_last_window_only() -> None:
    rates = RateEstimator(window=10.0, samples=10)
    for second in range(0, 30):  # 1,000 units a second for 30 s ...
        rates.observe(float(second), second * 1000)
    assert rates.rate() == 1000.0
    for second in range(30, 50):  # ... then 100 a second for 20 s
        rates.observe(float(second), 29_000 + (second - 29) * 100)
    # Only the last ten seconds or so count: the fast start is forgotten.
    assert rates.rate() == 100.0


def test_the_window_keeps_a_bounded_number_of_points() -> None:
    rates = RateEstimator(window=10.0, samples=20)
    for i in range(100_000):  # a report every millisecond for 100 s
        rates.observe(i / 1000, i)
    assert len(rates._points) <= 22
    assert rates.rate() == pytest.approx(1000.0)


def test_a_count_that_goes_back_is_no_negative_rate() -> None:
    rates = RateEstimator()
    rates.observe(0.0, 100)
    rates.observe(1.0, 50)
    assert rates.rate() == 0.0


def test_timed_progress_has_its_rate_and_time_left() -> None:
    rates = RateEstimator()
    first = rates.timed(0.0, Progress(RESTORE, 0, 1000))
    assert (first.rate, first.eta_seconds) == (None, None)
    second = rates.timed(2.0, Progress(RESTORE, 200, 1000))
    assert (second.rate, second.eta_seconds) == (100.0, 8.0)
    assert second.done == 200
    stalled = RateEstimator()
    stalled.observe(0.0, 200)
    assert stalled.timed(5.0, Progress(RESTORE, 200, 1000)).eta_seconds is None  # rate 0
    done = rates.timed(3.0, Progress(RESTORE, 1000, 1000))
    assert done.eta_seconds == 0.0
    over = rates.timed(4.0, Progress(BACKUP, 1200, 1000))
    assert over.eta_seconds == 0.0
    unknown = rates.timed(5.0, Progress(BACKUP, 1300))
    assert unknown.eta_seconds is None
    assert unknown.rate is not None


def test_an_estimator_needs_a_window() -> None:
    with pytest.raises(ValueError, match="positive window"):
        RateEstimator(window=0)
    with pytest.raises(ValueError, match="two samples"):
        RateEstimator(samples=1)


def test_the_throttle_lets_one_through_per_interval() -> None:
    throttle = Throttle(0.25)
    assert throttle.delay(10.0) == 0.0  # the first goes at once
    throttle.sent(10.0)
    assert throttle.delay(10.0) == 0.25
    assert throttle.delay(10.1) == pytest.approx(0.15)
    assert throttle.delay(10.25) == 0.0
    assert throttle.delay(99.0) == 0.0
    throttle.sent(99.0)
    assert throttle.delay(99.0) == 0.25


def test_a_throttle_that_starts_closed_and_one_without_limit() -> None:
    later = Throttle(5.0, last=100.0)  # nothing in the first five seconds
    assert later.delay(100.0) == 5.0
    assert later.delay(105.0) == 0.0
    free = Throttle(0.0)
    free.sent(1.0)
    assert free.delay(1.0) == 0.0
    with pytest.raises(ValueError, match="negative"):
        Throttle(-1.0)
