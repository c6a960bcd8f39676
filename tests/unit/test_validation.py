"""Source-address validation and the reply budget of unvalidated sources."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plexinode.net.transport import MAX_DATAGRAM
from plexinode.net.validation import (
    AMPLIFICATION_FACTOR,
    PADDED_REQUEST_BYTES,
    VALIDATED_TTL,
    VALIDATES_US_TTL,
    ExpiringSet,
    Validation,
)

PING_BYTES = 142  # the smallest request: a ping (checked against the datagram layer elsewhere)


def test_a_padded_request_buys_a_full_reply_and_a_ping_back() -> None:
    assert PADDED_REQUEST_BYTES * AMPLIFICATION_FACTOR >= MAX_DATAGRAM + PING_BYTES
    assert VALIDATES_US_TTL < VALIDATED_TTL


def test_members_expire_ttl_after_they_were_last_added() -> None:
    seen = ExpiringSet[str](ttl=10.0)
    seen.add("a", 0.0)
    seen.add("b", 5.0)
    assert seen.contains("a", 9.9)
    seen.add("a", 9.9)  # renewed
    assert not seen.contains("b", 15.0)
    assert seen.contains("a", 19.8)
    assert not seen.contains("a", 19.9)
    assert len(seen) == 0


def test_the_set_is_bounded_and_forgets_the_least_recently_added() -> None:
    seen = ExpiringSet[int](ttl=100.0, max_size=3)
    for n in range(5):
        seen.add(n, float(n))
    assert len(seen) == 3
    assert not seen.contains(0, 5.0)
    assert not seen.contains(1, 5.0)
    assert all(seen.contains(n, 5.0) for n in (2, 3, 4))


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="ttl"):
        ExpiringSet[int](ttl=0.0)
    with pytest.raises(ValueError, match="max_size"):
        ExpiringSet[int](ttl=1.0, max_size=0)


def test_an_unvalidated_source_gets_three_times_what_it_sent() -> None:
    validation = Validation[str]()
    assert validation.budget("x", 176, 0.0) == 3 * 176
    validation.validated.add("x", 0.0)
    assert validation.budget("x", 176, 1.0) is None
    assert validation.budget("x", 176, VALIDATED_TTL) == 3 * 176  # it must prove itself again


def test_requests_are_padded_until_the_responder_has_validated_us() -> None:
    validation = Validation[str]()
    assert validation.padding("y", 177, 0.0) == PADDED_REQUEST_BYTES - 177
    assert validation.padding("y", 600, 0.0) == 0  # large enough already
    validation.validates_us.add("y", 0.0)
    assert validation.padding("y", 177, 1.0) == 0
    assert validation.padding("y", 177, VALIDATES_US_TTL) == PADDED_REQUEST_BYTES - 177


@given(
    st.lists(st.tuples(st.integers(0, 20), st.floats(0, 30, allow_nan=False)), max_size=60),
)
def test_the_set_never_exceeds_its_bound_nor_keeps_an_expired_member(
    events: list[tuple[int, float]],
) -> None:
    seen = ExpiringSet[int](ttl=10.0, max_size=5)
    now = 0.0
    added: dict[int, float] = {}
    for member, step in events:
        now += step
        seen.add(member, now)
        added[member] = now
        assert len(seen) <= 5
        for other, at in added.items():
            if at + 10.0 <= now:
                assert not seen.contains(other, now)
