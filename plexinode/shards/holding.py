"""A holder's side of one ``shards/1`` conversation with an owner, sans I/O: pieces become
blocks, blocks become group commits.

An owner sends each block in pieces (``shard-put``), in order, one block after another, and
sets ``flush`` on the last piece of a window. `HolderSession` checks that the pieces describe
one block at a time — same segment, share, root and size, each piece starting where the last
ended, never past the size — and collects complete blocks. It asks for a commit (`Commit`,
which the driver carries out through the share store and answers with ``shard-stored``) when
the owner flushes, or when what waits reaches `MAX_PENDING_BLOCKS` or `MAX_PENDING_BYTES`: so
a holder buffers at most a window's worth of blocks per stream, whatever the owner sends, and
one fsync'd transaction covers many blocks.

A piece that breaks these rules is a protocol error (`RemoteProtocolError`): the driver closes
the stream; nothing of the block in progress was stored, and what was committed stays.

The owner is the peer: a holder files shares under the node ID of the stream's other end,
which the handshake authenticated, never under an ID a message names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from plexinode.errors import RemoteProtocolError
from plexinode.shards.messages import ShardPut

#: Most complete blocks waiting for a commit on one stream.
MAX_PENDING_BLOCKS: Final = 32
#: Most bytes of blocks (complete or in progress) held for one stream: a window of 16 blocks of
#: a 1 MiB segment at k = 3 is under 6 MiB, and a maximum block (4 MiB at k = 1) still fits.
MAX_PENDING_BYTES: Final = 16 << 20


@dataclass(frozen=True, slots=True)
class Block:
    """A complete block to store (not yet checked against its root: the store does that).

    Attributes:
        owner: the owner's node ID (the stream's peer).
        backup_id: the backup whose lease covers it.
        home: the backup under which the segment was first placed.
        lease_expires: the lease's expiry, Unix seconds.
        segment: the segment ID.
        index: the share index.
        root: the Merkle root the owner claims for it.
        data: the block.
    """

    owner: bytes
    backup_id: bytes
    home: bytes
    lease_expires: float
    segment: bytes
    index: int
    root: bytes
    data: bytes


@dataclass(frozen=True, slots=True)
class Commit:
    """Store these blocks in one transaction, then answer ``shard-stored`` for them."""

    blocks: tuple[Block, ...]


@dataclass(slots=True)
class _InProgress:
    put: ShardPut
    pieces: list[bytes] = field(default_factory=list)
    received: int = 0


class HolderSession:
    """The state of one stream from an owner (see the module docstring).

    Args:
        owner: the node ID of the stream's peer.
    """

    def __init__(self, owner: bytes) -> None:
        self.owner = owner
        self._current: _InProgress | None = None
        self._pending: list[Block] = []
        self._pending_bytes = 0

    @property
    def buffered_bytes(self) -> int:
        """Bytes held: complete blocks waiting and the block in progress."""
        return self._pending_bytes + (self._current.received if self._current else 0)

    def put(self, piece: ShardPut) -> Commit | None:
        """A ``shard-put`` arrived; returns a commit to carry out, if one is due.

        Raises:
            RemoteProtocolError: the piece does not continue the block in progress or start a
                new one at offset 0, runs past the block's size, or the stream would hold more
                than `MAX_PENDING_BYTES`.
        """
        current = self._current
        if current is None:
            if piece.offset != 0:
                raise RemoteProtocolError("shard-put: a block starts at offset 0")
            current = self._current = _InProgress(piece)
        elif (
            piece.segment,
            piece.index,
            piece.root,
            piece.size,
            piece.backup_id,
            piece.home,
        ) != (
            current.put.segment,
            current.put.index,
            current.put.root,
            current.put.size,
            current.put.backup_id,
            current.put.home,
        ):
            raise RemoteProtocolError("shard-put: a new block began before the last one ended")
        elif piece.offset != current.received:
            raise RemoteProtocolError(
                f"shard-put: piece at {piece.offset}, expected {current.received}"
            )
        if current.received + len(piece.data) > piece.size:
            raise RemoteProtocolError("shard-put: the pieces run past the block's size")
        if self.buffered_bytes + len(piece.data) > MAX_PENDING_BYTES:
            raise RemoteProtocolError("shard-put: more than the stream may buffer")
        if piece.data:
            current.pieces.append(piece.data)
            current.received += len(piece.data)
        if current.received == piece.size:
            self._current = None
            first = current.put
            self._pending.append(
                Block(
                    owner=self.owner,
                    backup_id=first.backup_id,
                    home=first.home,
                    lease_expires=first.lease_expires,
                    segment=first.segment,
                    index=first.index,
                    root=first.root,
                    data=b"".join(current.pieces),
                )
            )
            self._pending_bytes += first.size
        elif piece.flush:
            raise RemoteProtocolError("shard-put: flush in the middle of a block")
        if self._pending and (
            piece.flush
            or len(self._pending) >= MAX_PENDING_BLOCKS
            or self._pending_bytes >= MAX_PENDING_BYTES
        ):
            return self.take()
        return None

    def take(self) -> Commit | None:
        """Whatever complete blocks wait (the stream ends, or the driver commits early)."""
        if not self._pending:
            return None
        commit = Commit(tuple(self._pending))
        self._pending = []
        self._pending_bytes = 0
        return commit
