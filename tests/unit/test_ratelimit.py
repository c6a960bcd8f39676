"""Token-bucket rate limits."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plexinode.net.ratelimit import TokenBuckets


def test_burst_then_refill() -> None:
    limits = TokenBuckets[str](rate=2.0, burst=3)
    assert [limits.allow("a", 0.0) for _ in range(4)] == [True, True, True, False]
    assert limits.allow("b", 0.0)  # keys are independent
    assert not limits.allow("a", 0.4)  # 0.8 tokens so far
    assert limits.allow("a", 0.5)
    assert not limits.allow("a", 0.5)
    assert [limits.allow("a", 100.0) for _ in range(4)] == [True, True, True, False]  # capped


def test_cost() -> None:
    limits = TokenBuckets[str](rate=1.0, burst=5)
    assert limits.allow("a", 0.0, cost=5)
    assert not limits.allow("a", 0.0, cost=1)


def test_clock_going_backwards_grants_nothing() -> None:
    limits = TokenBuckets[str](rate=1.0, burst=1)
    assert limits.allow("a", 10.0)
    assert not limits.allow("a", 5.0)
    assert not limits.allow("a", 10.5)
    assert limits.allow("a", 11.0)


def test_state_is_bounded_and_least_recently_used_is_forgotten() -> None:
    limits = TokenBuckets[int](rate=0.0, burst=1, max_keys=3)
    for key in range(3):
        assert limits.allow(key, 0.0)
    assert not limits.allow(0, 0.0)  # 0 is now the most recently used
    assert limits.allow(3, 0.0)  # evicts 1
    assert len(limits) == 3
    assert limits.allow(1, 0.0)  # forgotten, so a fresh bucket
    assert not limits.allow(3, 0.0)  # 3 was kept (2 was the least recently used)


@pytest.mark.parametrize(("rate", "burst", "keys"), [(-1, 1, 1), (1, 0, 1), (1, 1, 0)])
def test_bad_parameters(rate: float, burst: float, keys: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        TokenBuckets[str](rate=rate, burst=burst, max_keys=keys)


@given(
    rate=st.floats(0.1, 100.0),
    burst=st.integers(1, 50),
    gaps=st.lists(st.floats(0.0, 2.0), min_size=1, max_size=200),
)
def test_never_allows_more_than_burst_plus_rate_times_elapsed(
    rate: float, burst: int, gaps: list[float]
) -> None:
    limits = TokenBuckets[str](rate=rate, burst=burst)
    now = 0.0
    allowed = 0
    for gap in gaps:
        now += gap
        allowed += limits.allow("a", now)
    assert allowed <= burst + rate * now + 1e-9


@given(rate=st.floats(1.0, 100.0), burst=st.integers(1, 50), count=st.integers(1, 200))
def test_a_key_under_the_rate_is_never_refused(rate: float, burst: int, count: int) -> None:
    limits = TokenBuckets[str](rate=rate, burst=burst)
    assert all(limits.allow("a", i / rate) for i in range(count))


@given(
    rate=st.floats(0.1, 100.0),
    burst=st.integers(1, 20),
    events=st.lists(st.tuples(st.floats(0.0, 2.0), st.booleans()), min_size=1, max_size=100),
)
def test_would_allow_predicts_allow_and_takes_nothing(
    rate: float, burst: int, events: list[tuple[float, bool]]
) -> None:
    """Peeking any number of times changes nothing: a limiter that is only peeked at between
    real events behaves exactly like one that is not."""
    peeked = TokenBuckets[str](rate=rate, burst=burst)
    plain = TokenBuckets[str](rate=rate, burst=burst)
    now = 0.0
    for gap, take in events:
        now += gap
        predicted = peeked.would_allow("a", now)
        assert peeked.would_allow("a", now) == predicted
        if take:
            assert peeked.allow("a", now) == predicted == plain.allow("a", now)
