"""Digests of the member table, so that push-pull costs almost nothing when nothing differs.

Anti-entropy (SWIM's push-pull, as in memberlist) exchanges whole membership states between two
members, which at N members is O(N) bytes each way, every push-pull interval, on every node:
idle traffic that grows with the network. Here two members compare digests first:

1. **Root.** One 16-byte hash of the whole table. Equal roots end the exchange: the idle cost
   is a stream handshake and two small frames, whatever N is.
2. **Buckets.** Otherwise each side sends :data:`BUCKETS` 8-byte bucket digests (members are
   bucketed by the first byte of their node ID), and only the members of the buckets that
   differ are exchanged. A node that missed one update sends and receives about N / 256
   members, not N.

A member contributes ``BLAKE2b-64(node ID || incarnation || state)`` to its bucket, and a
bucket's digest is the XOR of its members' contributions, so it does not depend on the order in
which members were learnt. Two tables with the same beliefs have the same digests; what they
heard from whom (accusers, confirmations) is not part of a belief and does not count.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Final

from plexinode.identity import NodeId
from plexinode.membership.members import State

#: Buckets of a digest: one per value of a node ID's first byte.
BUCKETS: Final = 256
#: Bytes of one bucket digest.
BUCKET_BYTES: Final = 8
#: Bytes of the root digest.
ROOT_BYTES: Final = 16


def member_hash(node_id: NodeId, incarnation: int, state: State) -> int:
    """One member's contribution to its bucket digest."""
    data = node_id.raw + incarnation.to_bytes(8, "big") + bytes((int(state),))
    return int.from_bytes(hashlib.blake2b(data, digest_size=BUCKET_BYTES).digest(), "big")


def bucket_of(node_id: NodeId) -> int:
    """The bucket a member falls in."""
    return node_id.raw[0]


def bucket_digests(beliefs: Iterable[tuple[NodeId, int, State]]) -> bytes:
    """The :data:`BUCKETS` bucket digests of a table, concatenated (2,048 bytes)."""
    buckets = [0] * BUCKETS
    for node_id, incarnation, state in beliefs:
        buckets[bucket_of(node_id)] ^= member_hash(node_id, incarnation, state)
    return b"".join(b.to_bytes(BUCKET_BYTES, "big") for b in buckets)


def root_digest(buckets: bytes) -> bytes:
    """The root digest of a table, from its bucket digests."""
    return hashlib.blake2b(buckets, digest_size=ROOT_BYTES).digest()


def differing_buckets(ours: bytes, theirs: bytes) -> set[int]:
    """The buckets whose digests differ (both arguments from :func:`bucket_digests`)."""
    if len(ours) != len(theirs):
        raise ValueError("bucket digests of different lengths")
    return {
        i
        for i in range(BUCKETS)
        if ours[i * BUCKET_BYTES : (i + 1) * BUCKET_BYTES]
        != theirs[i * BUCKET_BYTES : (i + 1) * BUCKET_BYTES]
    }
