"""The Merkle tree over a share's blocks (plexinode.shards.merkle)."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plexinode.shards.merkle import HASH_BYTES, MAX_BLOCKS, MerkleTree, leaf_hash, verify

blocks_lists = st.lists(st.binary(max_size=40), min_size=1, max_size=40)


def tree(blocks: list[bytes]) -> MerkleTree:
    return MerkleTree([leaf_hash(b) for b in blocks])


@settings(max_examples=100, deadline=None)
@given(blocks_lists)
def test_every_block_verifies_by_its_path_and_nothing_else_does(blocks: list[bytes]) -> None:
    t = tree(blocks)
    n = len(blocks)
    assert t.count == n
    for i, block in enumerate(blocks):
        path = t.path(i)
        assert verify(t.root, n, i, block, path)
        assert not verify(t.root, n, i, block + b"x", path)
        assert not verify(t.root, n + 1, i, block, path)
        assert not verify(t.root, n, i, block, (*path, bytes(HASH_BYTES)))
        if path:
            assert not verify(t.root, n, i, block, path[:-1])
            flipped = bytes([path[0][0] ^ 1]) + path[0][1:]
            assert not verify(t.root, n, i, block, (flipped, *path[1:]))
        for j in range(n):
            if blocks[j] != block:
                assert not verify(t.root, n, j, block, t.path(j))


def test_the_construction_as_documented() -> None:
    def h(person: bytes, data: bytes) -> bytes:
        return hashlib.blake2b(data, digest_size=32, person=person).digest()

    leaves = [h(b"pxn-shard-leaf", b) for b in (b"a", b"b", b"c")]
    ab = h(b"pxn-shard-node", leaves[0] + leaves[1])
    top = h(b"pxn-shard-node", ab + leaves[2])  # c is carried up, then paired
    t = MerkleTree(leaves)
    assert t.root == h(b"pxn-shard-root", (3).to_bytes(8, "big") + top)
    assert t.path(2) == (ab,)
    assert t.path(0) == (leaves[1], leaves[2])


def test_an_odd_block_is_not_paired_with_itself() -> None:
    # [a, b, c] and [a, b, c, c] would share a root if c were paired with itself.
    assert tree([b"a", b"b", b"c"]).root != tree([b"a", b"b", b"c", b"c"]).root


def test_hostile_input_is_false_or_a_clear_error() -> None:
    t = tree([b"a", b"b"])
    for index, count in ((-1, 2), (2, 2), (0, 0), (0, MAX_BLOCKS + 1)):
        assert not verify(t.root, count, index, b"a", t.path(0))
    assert not verify(t.root, 2, 0, b"a", (b"short",))
    empty = MerkleTree([])
    assert empty.count == 0
    assert len(empty.root) == HASH_BYTES
    with pytest.raises(IndexError):
        empty.path(0)
    with pytest.raises(IndexError):
        t.path(2)
    with pytest.raises(ValueError, match="hash"):
        MerkleTree([b"not a hash"])


def test_the_number_of_blocks_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from plexinode.shards import merkle

    monkeypatch.setattr(merkle, "MAX_BLOCKS", 2)
    with pytest.raises(ValueError, match="at most 2 blocks"):
        MerkleTree([leaf_hash(b"x")] * 3)
