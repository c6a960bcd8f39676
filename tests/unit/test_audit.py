"""Challenges, proofs and the audit budget."""

from __future__ import annotations

import dataclasses
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plexinode.shards import audit, pipeline

BLOCK = random.Random(1).randbytes(pipeline.LEAF_BYTES * 40 + 123)
ROOT = pipeline.share_root(BLOCK)
NONCE = bytes(range(16))


def test_leaves_are_derived_from_the_nonce() -> None:
    leaves = audit.challenged_leaves(NONCE, len(BLOCK))
    assert len(leaves) == audit.DEFAULT_LEAVES == len(set(leaves))
    assert leaves == tuple(sorted(leaves))
    assert all(0 <= i <= 40 for i in leaves)
    assert audit.challenged_leaves(NONCE, len(BLOCK)) == leaves
    assert audit.challenged_leaves(bytes(16), len(BLOCK)) != leaves
    assert audit.challenged_leaves(NONCE, 100) == (0,)
    assert audit.challenged_leaves(NONCE, pipeline.LEAF_BYTES * 3, count=5) == (0, 1, 2)


def test_challenge_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        audit.challenged_leaves(b"short", 10)
    with pytest.raises(ValueError, match=r"1\.\.16 leaves"):
        audit.challenged_leaves(NONCE, 10, count=17)


def test_an_honest_holder_passes() -> None:
    leaves = audit.challenged_leaves(NONCE, len(BLOCK))
    proof = audit.answer(BLOCK, NONCE, leaves)
    assert audit.check_proof(ROOT, len(BLOCK), NONCE, leaves, proof)
    last = (40,)
    assert audit.check_proof(ROOT, len(BLOCK), NONCE, last, audit.answer(BLOCK, NONCE, last))


def test_wrong_answers_fail() -> None:
    leaves = audit.challenged_leaves(NONCE, len(BLOCK))
    proof = audit.answer(BLOCK, NONCE, leaves)
    corrupt = bytearray(BLOCK)
    corrupt[leaves[0] * pipeline.LEAF_BYTES] ^= 1
    bad = [
        dataclasses.replace(proof, nonce=bytes(16)),
        dataclasses.replace(proof, count=proof.count + 1),
        dataclasses.replace(proof, leaves=proof.leaves[:-1]),
        dataclasses.replace(proof, paths=proof.paths[:-1]),
        dataclasses.replace(proof, leaves=(proof.leaves[0][:-1], *proof.leaves[1:])),
        audit.answer(bytes(corrupt), NONCE, leaves),
        audit.answer(BLOCK, NONCE, (*(i + 1 for i in leaves[:-1]), 0)),
    ]
    for proof_ in bad:
        assert not audit.check_proof(ROOT, len(BLOCK), NONCE, leaves, proof_)
    assert not audit.check_proof(ROOT, len(BLOCK), NONCE, (41,), audit.answer(BLOCK, NONCE, (40,)))


@given(size=st.integers(1, pipeline.LEAF_BYTES * 12), nonce=st.binary(min_size=16, max_size=16))
def test_any_block_answers_any_challenge(size: int, nonce: bytes) -> None:
    block = random.Random(size).randbytes(size)
    leaves = audit.challenged_leaves(nonce, size)
    assert audit.check_proof(
        pipeline.share_root(block), size, nonce, leaves, audit.answer(block, nonce, leaves)
    )


def test_the_budget_refills_at_a_thousandth_a_day_up_to_one_day() -> None:
    budget = audit.AuditBudget(stored_bytes=10_000_000, now=0.0)
    assert not budget.spend(0.0, 1)
    assert budget.spend(86_400.0, 10_000)
    assert not budget.spend(86_400.0, 1)
    assert not budget.spend(10 * 86_400.0, 10_001)  # a day's worth at most, however long idle
    assert budget.spend(10 * 86_400.0, 10_000)
    budget.refill(5.0)  # a clock that steps back adds nothing
    assert budget.tokens == 0
