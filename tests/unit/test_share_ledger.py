"""The share ledger core: quotas, batch plans, bounds."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plexinode.shards.share_ledger import (
    MAX_BLOCK_BYTES,
    Ledger,
    NodeFull,
    OwnerQuotaExceeded,
    QuotaExceeded,
    ShareClaim,
    ShareRejected,
    check_lease_key,
    check_manifest,
    plan_batch,
)

A, B = b"a" * 32, b"b" * 32
SEG = b"s" * 32
ROOT = b"r" * 32


def claim(segment: bytes = SEG, index: int = 0, root: bytes = ROOT, size: int = 10) -> ShareClaim:
    return ShareClaim(segment, index, root, size)


def test_reserve_counts_per_owner_and_total() -> None:
    ledger = Ledger(100, used=[(A, 30), (B, 0)])
    ledger.reserve(B, 20)
    assert (ledger.total, ledger.owner_bytes(A), ledger.owner_bytes(B)) == (50, 30, 20)
    usage = ledger.usage()
    assert (usage.total_bytes, usage.capacity_bytes, usage.owner_quota_bytes) == (50, 100, 0)
    assert usage.owners == {A: 30, B: 20}


def test_node_full_is_checked_before_the_owner_quota() -> None:
    ledger = Ledger(100, owner_quota=10, used=[(A, 95)])
    with pytest.raises(NodeFull) as full:
        ledger.reserve(B, 20)
    assert (full.value.needed, full.value.available) == (20, 5)
    assert "node full: 20 bytes needed, 5 available" in str(full.value)
    with pytest.raises(OwnerQuotaExceeded) as over:
        ledger.reserve(A, 1)
    assert isinstance(over.value, QuotaExceeded)
    assert (over.value.needed, over.value.available) == (1, 0)
    ledger.reserve(B, 5)
    assert ledger.total == 100
    with pytest.raises(NodeFull) as full:
        ledger.reserve(B, 1)
    assert full.value.available == 0


def test_owner_quota_zero_means_the_whole_capacity() -> None:
    ledger = Ledger(100)
    ledger.reserve(A, 100)
    assert ledger.owner_bytes(A) == 100


def test_free_gives_back_and_refuses_more_than_used() -> None:
    ledger = Ledger(100, used=[(A, 30)])
    ledger.free(A, 10)
    assert ledger.owner_bytes(A) == 20
    ledger.free(A, 20)
    assert ledger.usage().owners == {}
    with pytest.raises(ValueError, match="cannot free"):
        ledger.free(A, 1)
    with pytest.raises(ValueError, match="cannot free"):
        ledger.free(A, -1)


def test_negative_amounts_and_quotas_are_bugs() -> None:
    with pytest.raises(ValueError, match="at least 0"):
        Ledger(-1)
    with pytest.raises(ValueError, match="at least 0"):
        Ledger(1, owner_quota=-1)
    ledger = Ledger(10)
    with pytest.raises(ValueError, match="at least 0"):
        ledger.reserve(A, -1)
    with pytest.raises(ValueError, match="at least 0"):
        ledger.add(A, -1)
    ledger.reserve(A, 0)
    assert ledger.usage().owners == {}


@given(st.lists(st.tuples(st.booleans(), st.sampled_from([A, B]), st.integers(0, 40))))
def test_the_ledger_never_exceeds_its_quotas(ops: list[tuple[bool, bytes, int]]) -> None:
    ledger = Ledger(100, owner_quota=60)
    for reserve, owner, n in ops:
        if reserve:
            with contextlib.suppress(QuotaExceeded):
                ledger.reserve(owner, n)
        elif n <= ledger.owner_bytes(owner):
            ledger.free(owner, n)
        assert ledger.total == sum(ledger.usage().owners.values()) <= 100
        assert all(0 < v <= 60 for v in ledger.usage().owners.values())


def test_plan_skips_shares_held_with_the_same_root() -> None:
    claims = [claim(index=0), claim(index=1), claim(segment=b"t" * 32)]
    assert plan_batch(A, claims, {}) == [0, 1, 2]
    assert plan_batch(A, claims, {(A, SEG, 1): ROOT}) == [0, 2]


def test_plan_refuses_another_root_and_twice_the_same_share() -> None:
    with pytest.raises(ShareRejected, match="another root"):
        plan_batch(A, [claim()], {(A, SEG, 0): b"x" * 32})
    with pytest.raises(ShareRejected, match="twice"):
        plan_batch(A, [claim(), claim()], {})


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (claim(segment=b"short"), "segment ID"),
        (claim(index=-1), "share index"),
        (claim(index=256), "share index"),
        (claim(root=b"short"), "Merkle root"),
        (claim(size=0), "a block is"),
        (claim(size=MAX_BLOCK_BYTES + 1), "a block is"),
    ],
)
def test_claims_out_of_bounds_are_rejected(bad: ShareClaim, message: str) -> None:
    with pytest.raises(ShareRejected, match=message):
        plan_batch(A, [bad], {})


def test_lease_keys_and_manifests_are_bounded() -> None:
    check_lease_key(A, b"b" * 16)
    with pytest.raises(ShareRejected, match="node ID"):
        check_lease_key(b"x", b"b" * 16)
    with pytest.raises(ShareRejected, match="backup ID"):
        check_lease_key(A, b"b" * 15)
    check_manifest(b"m")
    with pytest.raises(ShareRejected, match="manifest"):
        check_manifest(b"")
