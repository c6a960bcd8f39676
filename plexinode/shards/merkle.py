"""The Merkle tree over one share's blocks (sans-I/O): a root to sign, a path per block.

A backup's share is a sequence of blocks (one per segment, docs/architecture.md). The owner
hashes them into a tree and keeps only the root; a holder keeps the blocks, and answers an
audit or a restore with a block and its *path*, the sibling hashes from that block up to the
root, so that a check moves one block and a few hashes, never the share.

The construction (BLAKE2b-256 throughout, one personalisation per purpose, so that a leaf can
never pass for an inner node or a root, the second-preimage trap of unkeyed Merkle trees)::

    leaf  = H("pxn-shard-leaf", block)
    node  = H("pxn-shard-node", left || right)
    root  = H("pxn-shard-root", count as 8 bytes big-endian || top)

Each level pairs its hashes from the left; an odd one out at the end of a level is carried up
unchanged (not paired with itself, which would let two different block lists share a root).
``top`` is the one hash left, and the root commits to the number of blocks as well, so a path
proves a block's position in a share of exactly ``count`` blocks. An empty share has the root
of count 0 and an all-zero top, and no block verifies against it.

:func:`verify` recomputes the root from a block, its index, the count and the path; the path
must have exactly the length the index and count imply, so nothing can be appended to it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Final

#: Bytes of every hash: leaves, inner nodes, roots.
HASH_BYTES: Final = 32
#: Most blocks one tree holds (a count is 8 bytes in the root; this bounds what a path can be).
MAX_BLOCKS: Final = 1 << 32

_LEAF: Final = b"pxn-shard-leaf"
_NODE: Final = b"pxn-shard-node"
_ROOT: Final = b"pxn-shard-root"


def _hash(person: bytes, data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=HASH_BYTES, person=person).digest()


def leaf_hash(block: bytes) -> bytes:
    """The hash of one block, a leaf of its share's tree."""
    return _hash(_LEAF, block)


def _root(count: int, top: bytes) -> bytes:
    return _hash(_ROOT, count.to_bytes(8, "big") + top)


class MerkleTree:
    """The tree over `leaves` (each :func:`leaf_hash` of a block, in the share's order).

    Raises:
        ValueError: More than :data:`MAX_BLOCKS` leaves, or a leaf that is not a hash.
    """

    __slots__ = ("_levels",)

    def __init__(self, leaves: Sequence[bytes]) -> None:
        if len(leaves) > MAX_BLOCKS:
            raise ValueError(f"a share holds at most {MAX_BLOCKS} blocks")
        if any(len(leaf) != HASH_BYTES for leaf in leaves):
            raise ValueError(f"a leaf is a {HASH_BYTES}-byte hash")
        levels = [list(leaves)]
        while len(levels[-1]) > 1:
            below = levels[-1]
            above = [_hash(_NODE, below[i] + below[i + 1]) for i in range(0, len(below) - 1, 2)]
            if len(below) % 2:
                above.append(below[-1])
            levels.append(above)
        self._levels = levels

    @property
    def count(self) -> int:
        """How many blocks the tree covers."""
        return len(self._levels[0])

    @property
    def root(self) -> bytes:
        """The root: what the owner signs in the manifest."""
        top = self._levels[-1][0] if self.count else bytes(HASH_BYTES)
        return _root(self.count, top)

    def path(self, index: int) -> tuple[bytes, ...]:
        """The sibling hashes from block `index` up to the top (levels where it has no sibling
        contribute nothing).

        Raises:
            IndexError: No such block.
        """
        if not 0 <= index < self.count:
            raise IndexError(f"block {index} of {self.count}")
        siblings = []
        for level in self._levels[:-1]:
            sibling = index ^ 1
            if sibling < len(level):
                siblings.append(level[sibling])
            index //= 2
        return tuple(siblings)


def verify(root: bytes, count: int, index: int, block: bytes, path: Sequence[bytes]) -> bool:
    """Whether `block` is block `index` of a share of `count` blocks whose tree has `root`,
    by `path` (:meth:`MerkleTree.path`). Never raises on hostile input: a bad index, count or
    path is False."""
    if not (0 <= index < count <= MAX_BLOCKS) or any(len(h) != HASH_BYTES for h in path):
        return False
    node, width, used = leaf_hash(block), count, 0
    while width > 1:
        if index ^ 1 < width:
            if used == len(path):
                return False
            sibling = path[used]
            used += 1
            node = _hash(_NODE, sibling + node if index % 2 else node + sibling)
        index //= 2
        width = (width + 1) // 2
    return used == len(path) and _root(count, node) == root
