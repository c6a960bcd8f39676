"""The audit scheduler: its budget over a simulated week, its spread, its failure memory."""

from __future__ import annotations

import bisect
import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from plexinode.identity import NodeId
from plexinode.shards import audit
from plexinode.shards.audit_schedule import (
    CHALLENGE_COST,
    FAILED_SCORE,
    HALF_LIFE,
    AuditScheduler,
    HeldHome,
)

DAY = audit.DAY
A, B, C = (NodeId(bytes([i]) * 32) for i in (1, 2, 3))
OWNER = b"\x09" * 32
HOME = b"\x07" * 16
OTHER = b"\x08" * 16


def nonce(i: int) -> bytes:
    return hashlib.blake2b(i.to_bytes(8, "big"), digest_size=16).digest()


def home(key: bytes = HOME, stored: int = 1 << 30, segments: int = 50, holders=None) -> HeldHome:
    pairs = ((A, 0), (B, 1), (C, 2)) if holders is None else holders
    return HeldHome(OWNER, key, stored, segments, pairs)


def test_nothing_to_audit_without_homes_or_co_holders() -> None:
    scheduler = AuditScheduler.start(0.0)
    assert scheduler.ready_at(0.0) is None
    assert scheduler.next(DAY, nonce(0)) is None
    scheduler.update([home(holders=())], 0.0)
    assert scheduler.ready_at(DAY) is None
    assert scheduler.next(DAY, nonce(0)) is None
    scheduler.update([home(segments=0)], DAY)
    assert scheduler.ready_at(2 * DAY) is None


def test_the_first_challenge_waits_for_its_cost_to_accrue() -> None:
    scheduler = AuditScheduler.start(0.0)
    scheduler.update([home(stored=1 << 30)], 0.0)
    at = scheduler.ready_at(0.0)
    assert at is not None
    assert at > 0.0
    assert scheduler.next(at * 0.99, nonce(0)) is None
    assert scheduler.ready_at(at) == at
    pick = scheduler.next(at, nonce(1))
    assert pick is not None
    assert pick.nonce == nonce(1)
    assert 0 <= pick.segment < 50


def test_challenges_go_round_every_co_holder_before_asking_one_twice() -> None:
    scheduler = AuditScheduler.start(0.0)
    scheduler.update([home(), home(OTHER, holders=((A, 3),))], 0.0)
    picks = []
    now = 0.0
    for i in range(8):
        now = scheduler.ready_at(now) or now
        pick = scheduler.next(now, nonce(i))
        assert pick is not None
        picks.append((pick.home, pick.holder, pick.index))
    assert len(set(picks[:4])) == 4
    assert picks[4:] == picks[:4]


def test_what_is_no_longer_held_is_forgotten() -> None:
    scheduler = AuditScheduler.start(0.0)
    scheduler.update([home()], 0.0)
    at = scheduler.ready_at(0.0) or 0.0
    pick = scheduler.next(at, nonce(0))
    assert pick is not None
    scheduler.failed(pick, at)
    assert scheduler.failed_holders(OWNER, HOME, at) == {pick.holder}
    scheduler.update([home(OTHER)], at)
    assert scheduler.failed_holders(OWNER, HOME, at) == frozenset()
    assert scheduler.failed_count(at) == 0


def test_a_failure_counts_for_two_days_and_two_for_longer() -> None:
    scheduler = AuditScheduler.start(0.0)
    scheduler.update([home(stored=1 << 40)], 0.0)
    pick = scheduler.next(DAY, nonce(0))
    assert pick is not None
    scheduler.failed(pick, DAY)
    assert scheduler.failed_holders(OWNER, HOME, DAY) == {pick.holder}
    assert scheduler.failed_holders(OWNER, OTHER, DAY) == frozenset()
    assert scheduler.failed_count(DAY) == 1
    assert scheduler.failed_holders(OWNER, HOME, DAY + 2 * HALF_LIFE - 1) == {pick.holder}
    assert scheduler.failed_holders(OWNER, HOME, DAY + 2 * HALF_LIFE + 1) == frozenset()
    scheduler.failed(pick, DAY)
    assert scheduler.failed_holders(OWNER, HOME, DAY + 2 * HALF_LIFE + 1) == {pick.holder}
    # Decayed far below the threshold: dropped on the next update.
    scheduler.update([home(stored=1 << 40)], DAY + 10 * HALF_LIFE)
    assert scheduler.failed_count(DAY + 10 * HALF_LIFE) == 0
    assert FAILED_SCORE < 1


@settings(max_examples=40, deadline=None)
@given(
    stored=st.integers(min_value=1 << 20, max_value=1 << 33),
    steps=st.lists(st.floats(min_value=600.0, max_value=DAY / 2), min_size=1, max_size=200),
    resize=st.integers(min_value=0, max_value=199),
)
def test_the_budget_is_never_exceeded_over_a_simulated_week(
    stored: int, steps: list[float], resize: int
) -> None:
    """Whatever the polling, the bytes challenged within any day never pass 0.1% of the bytes
    stored (plus the one day's allowance a full bucket may hold), and over a week, no more than
    its time's allowance (the bucket starts empty); the stored size may halve on the way."""
    scheduler = AuditScheduler.start(0.0)
    scheduler.update([home(stored=stored)], 0.0)
    sent: list[float] = []
    now = 0.0
    i = 0
    while now < 7 * DAY:
        i += 1
        now += steps[i % len(steps)]
        if i == resize:
            scheduler.update([home(stored=stored // 2)], now)
        ready = scheduler.ready_at(now)
        assert ready is not None
        assert ready >= now
        while scheduler.next(now, nonce(i)) is not None:
            sent.append(now)
    allowance = stored * audit.DAILY_FRACTION
    assert len(sent) * CHALLENGE_COST <= now / DAY * allowance  # the bucket starts empty
    for first, start in enumerate(sent):
        window = bisect.bisect_left(sent, start + DAY) - first
        assert window * CHALLENGE_COST <= 2 * allowance


def test_a_steady_holder_spends_its_allowance() -> None:
    """Polled whenever it is ready, a holder storing 10 GiB sends a week's allowance (one
    challenge every few minutes), within one challenge."""
    stored = 10 << 30
    scheduler = AuditScheduler.start(0.0)
    scheduler.update([home(stored=stored)], 0.0)
    now, count = 0.0, 0
    while True:
        now = scheduler.ready_at(now) or now
        if now >= 7 * DAY:
            break
        assert scheduler.next(now, nonce(count)) is not None
        count += 1
    week = 7 * stored * audit.DAILY_FRACTION
    assert week - CHALLENGE_COST <= count * CHALLENGE_COST <= week
