"""The verify core: which shares of which segments each holder is challenged on, and what the
answers make of each segment's available shares."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plexinode.identity import Identity
from plexinode.shards import audit, manifest, pipeline
from plexinode.shards.manifest import Manifest, SegmentTable
from plexinode.shards.messages import Reason
from plexinode.shards.verify_plan import (
    SAMPLE_SEGMENTS,
    Outcome,
    VerifyPlan,
    sample,
)

OWNER = Identity.from_seed(bytes(32))
BACKUP, EARLIER, UNUSED = b"B" * 16, b"E" * 16, b"U" * 16
SEED = bytes(range(32))


class Backup:
    """A signed manifest over random blocks (no encryption: the plan never opens a segment),
    with the blocks kept so that a holder can answer challenges."""

    def __init__(
        self, homes: list[int], *, k: int = 2, n: int = 4, seed: int = 0, repeat: int = 0
    ) -> None:
        rng = random.Random(seed)
        table = SegmentTable(BACKUP, n)
        self.blocks: dict[tuple[bytes, int], bytes] = {}
        identities = []
        for home in homes:
            identity = rng.randbytes(32)
            size = rng.randrange(1, 5 * pipeline.LEAF_BYTES)
            blocks = [rng.randbytes(size) for _ in range(n)]
            for index, block in enumerate(blocks):
                self.blocks[identity, index] = block
            roots = [pipeline.share_root(b) for b in blocks]
            table.add(identity, (BACKUP, EARLIER)[home], size, size, roots)
            identities.append((identity, (BACKUP, EARLIER)[home], size, roots))
        for identity, home, size, roots in identities[:repeat]:  # a segment listed twice
            table.add(identity, home, size, size, roots)
        self.manifest: Manifest = manifest.build(
            owner=OWNER.public_key,
            backup_id=BACKUP,
            created=1.0,
            lease_expires=2.0,
            k=k,
            n=n,
            table=table,
            nonce=bytes(24),
            sealed=b"",
        ).signed_by(OWNER)
        self.manifest.check()

    def holders(self, *, missing: tuple[int, ...] = ()) -> dict[bytes, dict[int, bytes]]:
        """Share index i of home h on node bytes([h, i]) * 16 (two homes: other nodes)."""
        n = self.manifest.n
        return {
            home: {i: bytes([h, i]) * 16 for i in range(n) if i not in missing}
            for h, home in enumerate((BACKUP, EARLIER))
        }

    def answer_all(self, plan: VerifyPlan, failing: frozenset[bytes] = frozenset()) -> None:
        for c in plan.challenges:
            if c.node in failing:
                plan.failed(c.node, Outcome.UNREACHABLE, "gone")
            else:
                proof = audit.answer(self.blocks[c.segment, c.index], c.nonce, c.leaves)
                assert plan.answered(c, proof)


def test_every_share_of_every_home_is_challenged_on_a_sample() -> None:
    backup = Backup([0] * 20 + [1] * 3, repeat=2)
    plan = VerifyPlan(backup.manifest, backup.holders(), SEED)
    by_share: dict[tuple[bytes, int], list[bytes]] = {}
    for c in plan.challenges:
        by_share.setdefault((c.home, c.index), []).append(c.segment)
        info = next(s for s in backup.manifest.segments() if s.identity == c.segment)
        assert (info.home, info.block_size, info.roots[c.index]) == (c.home, c.block_size, c.root)
        assert c.leaves == audit.challenged_leaves(c.nonce, c.block_size)
    assert sorted(by_share) == sorted((h, i) for h in (BACKUP, EARLIER) for i in range(4))
    for (home, _), segments in by_share.items():
        assert len(set(segments)) == len(segments)
        assert len(segments) == (SAMPLE_SEGMENTS if home == BACKUP else 3)
    assert len({c.nonce for c in plan.challenges}) == len(plan.challenges)
    assert list(plan.by_holder()) == list(dict.fromkeys(c.node for c in plan.challenges))

    again = VerifyPlan(backup.manifest, backup.holders(), SEED)
    assert again.challenges == plan.challenges  # the seed decides everything
    other = VerifyPlan(backup.manifest, backup.holders(), bytes(32))
    assert {c.nonce for c in other.challenges}.isdisjoint(c.nonce for c in plan.challenges)


def test_all_holders_proving_make_a_healthy_backup() -> None:
    backup = Backup([0, 0, 1, 0])
    plan = VerifyPlan(backup.manifest, backup.holders(), SEED)
    backup.answer_all(plan)
    report = plan.report()
    assert report.available == (4, 4, 4, 4)
    assert (report.min_available_shares, report.healthy, report.restorable) == (4, True, True)
    assert (report.backup_id, report.k, report.n) == (BACKUP, 2, 4)
    assert all(h.outcome == Outcome.PASSED and h.passed == h.challenges for h in report.holders)
    assert len(report.holders) == 8  # four per home


def test_a_holder_that_fails_once_loses_every_segment_of_that_home() -> None:
    backup = Backup([0] * 12 + [1] * 4)
    plan = VerifyPlan(backup.manifest, backup.holders(), SEED, sample_segments=3)
    bad_node = bytes([0, 2]) * 16  # share 2 of the backup's own home
    first = next(c for c in plan.challenges if c.node == bad_node)
    flipped = bytes(b ^ 1 for b in backup.blocks[first.segment, first.index])
    wrong = audit.answer(flipped, first.nonce, first.leaves)
    for c in plan.challenges:
        if c is first:
            assert not plan.answered(c, wrong)
        else:
            plan.answered(c, audit.answer(backup.blocks[c.segment, c.index], c.nonce, c.leaves))
    report = plan.report()
    assert report.available == (3,) * 12 + (4,) * 4  # every segment of its home, sampled or not
    assert (report.min_available_shares, report.healthy, report.restorable) == (3, False, True)
    bad = next(h for h in report.holders if h.node == bad_node)
    assert (bad.outcome, bad.challenges, bad.passed) == (Outcome.WRONG, 3, 2)


def test_refusals_unanswered_challenges_and_missing_indices() -> None:
    backup = Backup([0, 0, 0], n=5, k=3)
    holders = backup.holders(missing=(4,))
    holders[BACKUP][9] = b"x" * 32  # an index beyond n: ignored
    holders[UNUSED] = {0: b"y" * 32}  # a home the manifest does not name: ignored
    plan = VerifyPlan(backup.manifest, holders, SEED)
    busy, not_held = bytes([0, 0]) * 16, bytes([0, 1]) * 16
    for c in plan.challenges:
        if c.node == busy:
            plan.refused(c, Reason.BUSY)
        elif c.node == not_held:
            plan.refused(c, Reason.NOT_HELD)
        elif c.index == 3:
            continue  # never answered: unreachable
        else:
            plan.answered(c, audit.answer(backup.blocks[c.segment, c.index], c.nonce, c.leaves))
    report = plan.report()
    assert report.available == (1, 1, 1)  # shares 0, 1, 3 failed, 4 has no holder
    assert (report.healthy, report.restorable) == (False, False)
    outcomes = {h.node: (h.outcome, h.detail) for h in report.holders}
    assert outcomes[busy] == (Outcome.BUSY, Reason.BUSY)
    assert outcomes[not_held] == (Outcome.NOT_HELD, Reason.NOT_HELD)
    assert outcomes[bytes([0, 3]) * 16] == (Outcome.UNREACHABLE, "")
    assert set(outcomes) == {bytes([0, i]) * 16 for i in range(4)}


def test_a_backup_of_no_segments_is_healthy_with_nothing_to_ask() -> None:
    backup = Backup([])
    plan = VerifyPlan(backup.manifest, backup.holders(), SEED)
    assert plan.challenges == []
    report = plan.report()
    assert (report.available, report.min_available_shares, report.healthy) == ((), 4, True)


def test_arguments_are_checked() -> None:
    backup = Backup([0])
    with pytest.raises(ValueError, match="32 bytes"):
        VerifyPlan(backup.manifest, {}, b"short")
    with pytest.raises(ValueError, match="at least one"):
        VerifyPlan(backup.manifest, {}, SEED, sample_segments=0)


@given(
    count=st.integers(1, 300),
    size=st.integers(1, 40),
    index=st.integers(0, 255),
    seed=st.binary(min_size=32, max_size=32),
)
def test_a_sample_is_distinct_sorted_and_whole_when_small(
    count: int, size: int, index: int, seed: bytes
) -> None:
    picked = sample(seed, BACKUP, index, count, size)
    assert picked == sorted(set(picked))
    assert len(picked) == min(count, size)
    assert all(0 <= p < count for p in picked)
    assert picked == sample(seed, BACKUP, index, count, size)


@settings(max_examples=40, deadline=None)
@given(
    homes=st.lists(st.integers(0, 1), min_size=1, max_size=14),
    failing=st.sets(st.tuples(st.integers(0, 1), st.integers(0, 3))),
    missing=st.sets(st.integers(0, 3), max_size=4),
    seed=st.binary(min_size=32, max_size=32),
)
def test_available_shares_are_n_less_the_failed_and_the_unplaced(
    homes: list[int], failing: set[tuple[int, int]], missing: set[int], seed: bytes
) -> None:
    backup = Backup(homes, seed=len(homes))
    plan = VerifyPlan(backup.manifest, backup.holders(missing=tuple(missing)), seed)
    backup.answer_all(plan, frozenset(bytes([h, i]) * 16 for h, i in failing))
    report = plan.report()
    expected = [
        sum(1 for i in range(4) if i not in missing and (h, i) not in failing) for h in homes
    ]
    assert list(report.available) == expected
    assert report.min_available_shares == min(expected)
    assert report.healthy == (min(expected) == 4)
    assert report.restorable == (min(expected) >= 2)
    for holder in report.holders:
        assert holder.outcome == (
            Outcome.UNREACHABLE if (holder.node[0], holder.node[1]) in failing else Outcome.PASSED
        )
