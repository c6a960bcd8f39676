"""One segment through the pipeline and back: encrypt, erasure-code, hash; verify, decode, decrypt.

Backing up a segment (`encode_segment`)::

    plaintext --keyed hash--> segment ID --keyed hash--> segment key
    plaintext --XChaCha20-Poly1305(segment key, AD = ID)--> ciphertext (plaintext + 16 bytes)
    ciphertext --zfec k-of-n--> n blocks; block i is share i of the segment
    block i --cut into 8 KiB leaves--> Merkle tree --> root i (the manifest carries all n)

Restoring it (`decode_segment`) runs the other way and checks at every step: each block against
its share's root before it is used (a holder that serves wrong bytes is named by its share
index, and the caller fetches another share), the ciphertext against its authentication tag,
and the plaintext against the segment ID. A restore therefore never writes a byte that the
owner's secret did not produce.

Every function here is pure computation on bytes, and the heavy parts (hashing, the cipher,
zfec) release the GIL, so a driver runs whole segments in worker threads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from plexinode.shards import coding, derive, merkle, sealing

#: Leaves of a share's Merkle tree. A challenge answer is a few leaves and their paths, so a
#: check of a holder moves kilobytes; 8 KiB keeps the tree of a 1 MiB segment's block (about
#: 350 KB at k = 3) to 43 leaves, so hashing it costs little more than hashing its bytes.
LEAF_BYTES: Final = 8192


class CorruptBlocksError(Exception):
    """Blocks that do not match their share's Merkle root.

    Attributes:
        indices: the share indices of the blocks that failed.
    """

    def __init__(self, indices: Sequence[int]) -> None:
        self.indices = tuple(indices)
        super().__init__(f"blocks of shares {', '.join(map(str, self.indices))} are corrupt")


class SegmentMismatchError(Exception):
    """Blocks that match their roots but do not decode to the segment (a forged manifest)."""


@dataclass(frozen=True, slots=True)
class EncodedSegment:
    """A segment ready to place.

    Attributes:
        identity: the segment ID.
        length: plaintext bytes.
        blocks: the n blocks, block i for share i.
        roots: the n Merkle roots, root i over block i's leaves.
    """

    identity: bytes
    length: int
    blocks: tuple[bytes, ...]
    roots: tuple[bytes, ...]


def leaves(block: bytes) -> list[bytes]:
    """The Merkle leaves of a block: 8 KiB pieces, the last shorter (one empty leaf if empty)."""
    if not block:
        return [b""]
    return [block[i : i + LEAF_BYTES] for i in range(0, len(block), LEAF_BYTES)]


def leaf_count(block_size: int) -> int:
    """How many leaves a block of `block_size` bytes has."""
    return max(1, -(-block_size // LEAF_BYTES))


def share_tree(block: bytes) -> merkle.MerkleTree:
    """The Merkle tree over one block's leaves."""
    return merkle.MerkleTree([merkle.leaf_hash(leaf) for leaf in leaves(block)])


def share_root(block: bytes) -> bytes:
    """The Merkle root of one block."""
    return share_tree(block).root


def ciphertext_length(length: int) -> int:
    """The ciphertext length of a `length`-byte segment."""
    return length + sealing.TAG_BYTES


def encode_segment(
    secret: bytes, plaintext: bytes, k: int, n: int, identity: bytes | None = None
) -> EncodedSegment:
    """Encrypt, encode and hash one segment (its ID is computed unless the caller has it)."""
    if identity is None:
        identity = derive.segment_id(secret, plaintext)
    key = derive.segment_key(secret, identity)
    blocks = coding.encode(sealing.seal(key, identity, plaintext), k, n)
    return EncodedSegment(
        identity=identity,
        length=len(plaintext),
        blocks=tuple(blocks),
        roots=tuple(share_root(block) for block in blocks),
    )


def decode_segment(
    secret: bytes,
    identity: bytes,
    length: int,
    *,
    k: int,
    roots: Sequence[bytes],
    blocks: Mapping[int, bytes],
) -> bytes:
    """The plaintext of a segment from at least k of its blocks, each verified first.

    Raises:
        CorruptBlocksError: a block does not match its root (the caller drops that share and
            fetches another; the other blocks were not used).
        coding.CodingError: fewer than k blocks, or blocks of the wrong size.
        SegmentMismatchError: the blocks match the roots but not the segment ID.
    """
    n = len(roots)
    bad = [
        i for i, block in sorted(blocks.items()) if not 0 <= i < n or share_root(block) != roots[i]
    ]
    if bad:
        raise CorruptBlocksError(bad)
    ciphertext = coding.decode(blocks, k, n, ciphertext_length(length))
    key = derive.segment_key(secret, identity)
    try:
        plaintext = sealing.unseal(key, identity, ciphertext)
    except sealing.SegmentAuthenticationError as exc:
        raise SegmentMismatchError("the blocks do not decrypt to the segment") from exc
    if derive.segment_id(secret, plaintext) != identity:
        raise SegmentMismatchError("the decrypted segment does not match its ID")
    return plaintext
