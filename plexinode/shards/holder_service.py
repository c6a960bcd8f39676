"""The holder's side of ``shards/1``: a stream handler over the share store.

One handler runs per accepted ``shards/1`` stream (the stream service bounds how many per
node, per host and in all). It reads one message at a time and answers:

* from the owner (the stream's authenticated peer is the owner of everything it stores):
  ``shard-offer`` (a quota check before any bytes move), ``shard-put`` (pieces assembled by
  `holding.HolderSession`, committed by the store in groups, each group answered with
  ``shard-stored`` only after its commit), ``shard-ref``, ``shard-manifest`` (assembled up to
  its announced size, decoded and its owner's signature checked before it is kept: a manifest
  must be signed by the peer), ``shard-renew``, ``shard-remove``;
* from any member: ``shard-get`` (the block in pieces), ``shard-challenge`` (the proof),
  ``shard-manifest-get``, ``shard-list``. What one peer may read is bounded by a byte rate
  (``read_rate`` bytes a second per peer, with a burst of ``read_burst``): a peer past it gets
  ``busy``.

A message the conversation does not allow, or that breaks the piece rules, ends the stream
(`RemoteProtocolError`, counted): nothing half-received is stored.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Final, Protocol

import trio

from plexinode.errors import DecodeError, RemoteProtocolError
from plexinode.identity import NodeId
from plexinode.net.ratelimit import TokenBuckets
from plexinode.shards import audit, messages, pipeline
from plexinode.shards.holding import Block, HolderSession
from plexinode.shards.manifest import MAX_MANIFEST_BYTES, Manifest, ManifestError
from plexinode.shards.messages import Reason
from plexinode.wire import envelope
from plexinode.wire.codec import FRAME_LIMITS
from plexinode.wire.schema import Message

log = logging.getLogger(__name__)

#: Bytes a second one peer may read from this holder, and the burst: a restore of a 1 GiB
#: backup at k = 3 reads about 340 MB from each of three holders, some minutes at this rate.
READ_RATE: Final = 8 << 20
READ_BURST: Final = 32 << 20


class HolderStorage(Protocol):
    """What the holder service needs from the share store."""

    async def can_accept(self, owner: bytes, size: int) -> str | None:
        """None if `owner` may store about `size` more bytes, else the refusal reason."""

    async def put(self, blocks: Sequence[Block]) -> tuple[list[bytes], list[bytes], str]:
        """Verify and commit `blocks` in one transaction: (stored IDs, refused IDs, reason)."""

    async def add_refs(
        self, owner: bytes, backup_id: bytes, lease_expires: float, segments: Sequence[bytes]
    ) -> tuple[list[bytes], list[bytes]]:
        """Reference held segments from a backup's lease: (referenced, not held)."""

    async def put_manifest(
        self, owner: bytes, backup_id: bytes, data: bytes, lease_expires: float
    ) -> str | None:
        """Keep a (checked) manifest under the backup's lease; None, or the refusal reason."""

    async def renew(self, owner: bytes, backup_ids: Sequence[bytes], lease_expires: float) -> None:
        """Extend leases."""

    async def remove(self, owner: bytes, backup_id: bytes) -> None:
        """Drop a backup's lease and what only it used."""

    async def read_block(self, owner: bytes, segment: bytes, index: int) -> bytes | None:
        """A block held, or None."""

    async def read_manifest(self, owner: bytes, backup_id: bytes) -> bytes | None:
        """A manifest kept, or None."""

    async def list_backups(self, owner: bytes) -> list[bytes]:
        """The backups of `owner` whose manifests are kept."""


class HolderService:
    """Serves ``shards/1`` streams from a share store (see the module docstring)."""

    def __init__(
        self,
        store: HolderStorage,
        *,
        clock: Callable[[], float] = trio.current_time,
        read_rate: float = READ_RATE,
        read_burst: float = READ_BURST,
        on_manifest: Callable[[bytes, bytes], None] | None = None,
    ) -> None:
        self.store = store
        #: Called with (owner, backup ID) once a manifest is kept: the backup is complete here.
        self.on_manifest = on_manifest
        self.stats: Counter[str] = Counter()
        self._clock = clock
        self._reads: TokenBuckets[bytes] = TokenBuckets(read_rate, read_burst)

    def may_read(self, peer: bytes, size: int) -> bool:
        """Whether `peer` may read `size` more bytes now (counted when it may not)."""
        if self._reads.allow(peer, self._clock(), size):
            return True
        self.stats["reads_refused_rate"] += 1
        return False

    async def serve(self, stream: trio.abc.Channel[bytes], peer: NodeId) -> None:
        """Serve one stream from `peer` until it closes or breaks the protocol."""
        conversation = _Conversation(self, stream, peer.raw)
        try:
            await conversation.run()
        except (DecodeError, RemoteProtocolError) as exc:
            self.stats["protocol_errors"] += 1
            log.info("shards/1: closing a stream from %s: %s", peer.short(), exc)
        finally:
            await conversation.flush()


class _Conversation:
    def __init__(
        self, service: HolderService, stream: trio.abc.Channel[bytes], peer: bytes
    ) -> None:
        self.service = service
        self.store = service.store
        self.stream = stream
        self.peer = peer
        self.session = HolderSession(peer)
        self.manifest: list[bytes] = []
        self.manifest_size = 0

    async def send(self, message: Message) -> None:
        await self.stream.send(envelope.encode(message))

    async def reply(self, ok: bool, reason: str = "", detail: str = "") -> None:
        await self.send(messages.ShardReply(ok, reason, detail))

    async def run(self) -> None:
        while True:
            try:
                frame = await self.stream.receive()
            except trio.EndOfChannel:
                return
            message = envelope.decode(frame, FRAME_LIMITS).message
            handler = getattr(self, "on_" + type(message).__name__, None)
            if handler is None:
                raise DecodeError(f"shards/1: {message.NAME} is not a request")
            await handler(message)

    async def flush(self) -> None:
        """Commit what waits when the stream ends (the owner's last window)."""
        commit = self.session.take()
        if commit is not None:
            with trio.CancelScope(shield=True):
                await self.store.put(commit.blocks)

    # -- from the owner ------------------------------------------------------------------

    async def on_ShardOffer(self, offer: messages.ShardOffer) -> None:
        reason = await self.store.can_accept(self.peer, offer.size)
        if reason is not None:
            self.service.stats["offers_refused"] += 1
        await self.reply(reason is None, reason or "")

    async def on_ShardPut(self, put: messages.ShardPut) -> None:
        commit = self.session.put(put)
        if commit is None:
            return
        stored, refused, reason = await self.store.put(commit.blocks)
        self.service.stats["blocks_stored"] += len(stored)
        self.service.stats["blocks_refused"] += len(refused)
        await self.send(messages.ShardStored(b"".join(stored), b"".join(refused), reason))

    async def on_ShardRef(self, ref: messages.ShardRef) -> None:
        held, missing = await self.store.add_refs(
            self.peer, ref.backup_id, ref.lease_expires, messages.split_ids(ref.segments)
        )
        await self.send(
            messages.ShardStored(
                b"".join(held), b"".join(missing), Reason.NOT_HELD if missing else ""
            )
        )

    async def on_ShardManifest(self, piece: messages.ShardManifest) -> None:
        if piece.offset != self.manifest_size or piece.owner != self.peer:
            raise RemoteProtocolError("shard-manifest: pieces out of order, or not the peer's")
        if self.manifest_size + len(piece.data) > min(piece.total, MAX_MANIFEST_BYTES):
            raise RemoteProtocolError("shard-manifest: pieces run past the total")
        self.manifest.append(piece.data)
        self.manifest_size += len(piece.data)
        if self.manifest_size < piece.total:
            return
        data = b"".join(self.manifest)
        self.manifest, self.manifest_size = [], 0
        try:
            manifest = Manifest.decode(data)
        except ManifestError as exc:
            self.service.stats["manifests_refused"] += 1
            await self.reply(False, Reason.BAD_MANIFEST, str(exc)[:200])
            return
        if (
            NodeId.from_public_key(manifest.owner).raw != self.peer
            or manifest.backup_id != piece.backup_id
        ):
            self.service.stats["manifests_refused"] += 1
            await self.reply(False, Reason.BAD_MANIFEST, "not the peer's manifest of that backup")
            return
        reason = await self.store.put_manifest(
            self.peer, manifest.backup_id, data, manifest.lease_expires
        )
        if reason is None and self.service.on_manifest is not None:
            self.service.on_manifest(self.peer, manifest.backup_id)
        await self.reply(reason is None, reason or "")

    async def on_ShardRenew(self, renew: messages.ShardRenew) -> None:
        await self.store.renew(self.peer, renew.backup_ids, renew.lease_expires)
        await self.reply(True)

    async def on_ShardRemove(self, remove: messages.ShardRemove) -> None:
        await self.store.remove(self.peer, remove.backup_id)
        await self.reply(True)

    # -- from any member -----------------------------------------------------------------

    def may_read(self, size: int) -> bool:
        return self.service.may_read(self.peer, size)

    async def on_ShardGet(self, get: messages.ShardGet) -> None:
        block = await self.store.read_block(get.owner, get.segment, get.index)
        if block is None:
            await self.reply(False, Reason.NOT_HELD)
            return
        if not self.may_read(len(block)):
            await self.reply(False, Reason.BUSY)
            return
        step = messages.PIECE_BYTES
        for at in range(0, len(block), step):
            await self.send(
                messages.ShardBlock(get.segment, get.index, at, len(block), block[at : at + step])
            )
        self.service.stats["blocks_served"] += 1

    async def on_ShardChallenge(self, challenge: messages.ShardChallenge) -> None:
        block = await self.store.read_block(challenge.owner, challenge.segment, challenge.index)
        if block is None or any(i >= pipeline.leaf_count(len(block)) for i in challenge.leaves):
            await self.reply(False, Reason.NOT_HELD)
            return
        if not self.may_read(len(challenge.leaves) * pipeline.LEAF_BYTES):
            await self.reply(False, Reason.BUSY)
            return
        await self.send(audit.answer(block, challenge.nonce, challenge.leaves))
        self.service.stats["challenges_answered"] += 1

    async def on_ShardManifestGet(self, get: messages.ShardManifestGet) -> None:
        data = await self.store.read_manifest(get.owner, get.backup_id)
        if data is None:
            await self.reply(False, Reason.NOT_HELD)
            return
        if not self.may_read(len(data)):
            await self.reply(False, Reason.BUSY)
            return
        step = messages.PIECE_BYTES
        for at in range(0, len(data), step):
            await self.send(
                messages.ShardManifest(
                    get.owner, get.backup_id, at, len(data), data[at : at + step]
                )
            )

    async def on_ShardList(self, listing: messages.ShardList) -> None:
        backups = await self.store.list_backups(listing.owner)
        await self.send(messages.ShardListing(tuple(backups[: messages.MAX_BACKUPS])))
