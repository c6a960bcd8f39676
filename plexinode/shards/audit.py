"""Checking that a holder still has a share without moving it: challenges, proofs, a budget.

A challenge names a share (owner, segment, share index) and a fresh 16-byte nonce; the leaves
to send are derived from the nonce (`challenged_leaves`), so the challenger needs no more
randomness than the nonce and the holder cannot know them before it is asked. The answer is
those leaves and their Merkle paths; `check_proof` verifies each against the share's root in
the owner-signed manifest. A holder that deleted or corrupted a share cannot answer for more
than the leaves it happens to still have: with 4 leaves asked of a 43-leaf block, a holder
keeping half of them passes one challenge in 16.

What a check costs is a few leaves (8 KiB each) and their paths, so `backup verify` moves
kilobytes per holder, not the backup. Holders also audit each other without the owner, within
`AuditBudget`: at most 0.1% of the bytes a node stores may be read for audits per day.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final

from plexinode.shards import merkle, pipeline
from plexinode.shards.messages import MAX_CHALLENGE_LEAVES, ShardProof

NONCE_BYTES: Final = 16
#: Leaves asked per challenge by default.
DEFAULT_LEAVES: Final = 4
#: Share of the stored bytes that audits may read per day.
DAILY_FRACTION: Final = 0.001
DAY: Final = 86_400.0
_PERSON: Final = b"pxn-audit-leaf"


def challenged_leaves(
    nonce: bytes, block_size: int, count: int = DEFAULT_LEAVES
) -> tuple[int, ...]:
    """The distinct leaf indices a challenge with `nonce` asks for (all, for a small block)."""
    if len(nonce) != NONCE_BYTES:
        raise ValueError(f"a challenge nonce is {NONCE_BYTES} bytes")
    if not 1 <= count <= MAX_CHALLENGE_LEAVES:
        raise ValueError(f"a challenge asks for 1..{MAX_CHALLENGE_LEAVES} leaves")
    total = pipeline.leaf_count(block_size)
    if total <= count:
        return tuple(range(total))
    chosen: list[int] = []
    counter = 0
    while len(chosen) < count:
        digest = hashlib.blake2b(
            counter.to_bytes(4, "big"), digest_size=8, key=nonce, person=_PERSON
        ).digest()
        index = int.from_bytes(digest, "big") % total
        if index not in chosen:
            chosen.append(index)
        counter += 1
    return tuple(sorted(chosen))


def leaf_size(block_size: int, index: int) -> int:
    """The size of leaf `index` of a block of `block_size` bytes."""
    return min(pipeline.LEAF_BYTES, block_size - index * pipeline.LEAF_BYTES)


def answer(block: bytes, nonce: bytes, leaves: tuple[int, ...]) -> ShardProof:
    """The holder's proof for a challenge on `block`."""
    tree = pipeline.share_tree(block)
    parts = pipeline.leaves(block)
    return ShardProof(
        nonce=nonce,
        count=tree.count,
        leaves=tuple(parts[i] for i in leaves),
        paths=tuple(tree.path(i) for i in leaves),
    )


def check_proof(
    root: bytes, block_size: int, nonce: bytes, leaves: tuple[int, ...], proof: ShardProof
) -> bool:
    """Whether `proof` answers the challenge (`nonce`, `leaves`) on a share with `root`."""
    count = pipeline.leaf_count(block_size)
    if proof.nonce != nonce or proof.count != count or len(proof.leaves) != len(leaves):
        return False
    if len(proof.paths) != len(leaves):
        return False
    for index, leaf, path in zip(leaves, proof.leaves, proof.paths, strict=True):
        if not 0 <= index < count or len(leaf) != leaf_size(block_size, index):
            return False
        if not merkle.verify(root, count, index, leaf, path):
            return False
    return True


@dataclass(slots=True)
class AuditBudget:
    """Bytes that audits may read, refilled at `fraction` (`DAILY_FRACTION`) of
    `stored_bytes` a day.

    A token bucket holding at most one day's allowance, so a node that was idle for a week does
    not then spend a week's budget in a burst.
    """

    stored_bytes: int
    now: float
    tokens: float = 0.0
    fraction: float = DAILY_FRACTION

    def refill(self, now: float) -> None:
        """Add what accrued since the last call."""
        rate = self.stored_bytes * self.fraction / DAY
        self.tokens = min(
            self.stored_bytes * self.fraction, self.tokens + rate * max(0.0, now - self.now)
        )
        self.now = max(self.now, now)

    def spend(self, now: float, cost: int) -> bool:
        """Take `cost` bytes if the budget has them."""
        self.refill(now)
        if cost > self.tokens:
            return False
        self.tokens -= cost
        return True
