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
  ``busy``;
* from a repairer (any member): ``shard-repair-claim`` (granted from `repair_intake.Claims`),
  ``shard-repair-offer`` and the owner's manifest in ``shard-manifest`` pieces (checked by
  `repair_intake.RepairIntake`: signed by the owner, listing the home; refused when this node
  holds another index of the home, or for quota as an owner's offer is; the manifest is then
  kept under the backup's lease), ``shard-repair-put`` (blocks filed under the owner, with the
  manifest's roots, through a session of their own) and ``shard-repair-done`` (the share is
  complete here: its provider record is published, through `on_manifest`). A repair put of a
  segment the manifest does not list under the home is a protocol error.

A message the conversation does not allow, or that breaks the piece rules, ends the stream
(`RemoteProtocolError`, counted): nothing half-received is stored.
"""

from __future__ import annotations

import logging
import time
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
from plexinode.shards.repair_intake import Claims, NotProven, RepairIntake, RepairRefused
from plexinode.wire import envelope
from plexinode.wire.codec import FRAME_LIMITS
from plexinode.wire.schema import Message

log = logging.getLogger(__name__)

#: Bytes a second one peer may read from this holder, and the burst: a restore of a 1 GiB
#: backup at k = 3 reads about 340 MB from each of three holders, some minutes at this rate.
READ_RATE: Final = 8 << 20
READ_BURST: Final = 32 << 20
#: The same for an owner reading its own shares (a restore): eight times more. They are its
#: data, stored under its quota, and a restore from n holders is otherwise capped at n times
#: `READ_RATE` (docs/benchmarks.md). Other members' reads, repairs and verifies keep the lower
#: rate, and the two budgets are apart, so an owner's restore does not starve a repair.
OWNER_READ_RATE: Final = 64 << 20
OWNER_READ_BURST: Final = 128 << 20


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

    async def holdings(self, owner: bytes, home: bytes) -> list[tuple[bytes, int]]:
        """The shares of `owner`'s `home` held: (segment ID, index) pairs."""


class HolderService:
    """Serves ``shards/1`` streams from a share store (see the module docstring)."""

    def __init__(
        self,
        store: HolderStorage,
        *,
        clock: Callable[[], float] = trio.current_time,
        read_rate: float = READ_RATE,
        read_burst: float = READ_BURST,
        owner_read_rate: float = OWNER_READ_RATE,
        owner_read_burst: float = OWNER_READ_BURST,
        on_manifest: Callable[[bytes, bytes], None] | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        #: Called with (owner, home) once a home's share is complete here: a manifest kept
        #: (the home is the backup itself), or a repaired share done.
        self.on_manifest = on_manifest
        self.stats: Counter[str] = Counter()
        self.claims = Claims()
        self._clock = clock
        self.wall_clock = wall_clock
        self._reads: TokenBuckets[bytes] = TokenBuckets(read_rate, read_burst)
        self._own_reads: TokenBuckets[bytes] = TokenBuckets(owner_read_rate, owner_read_burst)

    def may_read(self, peer: bytes, size: int, owner: bytes = b"") -> bool:
        """Whether `peer` may read `size` more bytes of `owner`'s now (counted when it may
        not): at the owner's rate when it reads its own, else at a member's."""
        buckets = self._own_reads if peer == owner else self._reads
        if buckets.allow(peer, self._clock(), size):
            return True
        self.stats["reads_refused_rate"] += 1
        return False

    def claim(self, owner: bytes, home: bytes, claimant: bytes) -> bytes | None:
        """Grant `claimant` the repair of `owner`'s `home` (None), or the member holding it."""
        return self.claims.claim(owner, home, claimant, self._clock())

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
        #: A repair offer whose manifest is arriving, then the accepted one and its session.
        self.offer: messages.ShardRepairOffer | None = None
        self.repair: tuple[RepairIntake, HolderSession] | None = None

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
        sessions = [self.session] + ([self.repair[1]] if self.repair else [])
        for session in sessions:
            commit = session.take()
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
        owner = self.peer if self.offer is None else self.offer.owner
        if piece.offset != self.manifest_size or piece.owner != owner:
            raise RemoteProtocolError("shard-manifest: pieces out of order, or not the peer's")
        if self.manifest_size + len(piece.data) > min(piece.total, MAX_MANIFEST_BYTES):
            raise RemoteProtocolError("shard-manifest: pieces run past the total")
        self.manifest.append(piece.data)
        self.manifest_size += len(piece.data)
        if self.manifest_size < piece.total:
            return
        data = b"".join(self.manifest)
        self.manifest, self.manifest_size = [], 0
        if self.offer is not None:
            await self._repair_offered(self.offer, piece, data)
            return
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

    # -- from a repairer -----------------------------------------------------------------

    async def on_ShardRepairClaim(self, claim: messages.ShardRepairClaim) -> None:
        holder = self.service.claim(claim.owner, claim.home, self.peer)
        if holder is None:
            await self.reply(True)
            return
        self.service.stats["repair_claims_refused"] += 1
        await self.reply(False, Reason.CLAIMED if holder else Reason.BUSY, holder.hex())

    async def on_ShardRepairOffer(self, offer: messages.ShardRepairOffer) -> None:
        if self.offer is not None or self.repair is not None or self.manifest_size:
            raise RemoteProtocolError("shard-repair-offer: another offer is in progress")
        self.offer = offer

    async def _repair_offered(
        self, offer: messages.ShardRepairOffer, piece: messages.ShardManifest, data: bytes
    ) -> None:
        self.offer = None
        if piece.backup_id != offer.backup_id or piece.total != offer.total:
            raise RemoteProtocolError("shard-repair-offer: the manifest is not the one offered")
        try:
            intake = RepairIntake.accept(offer, data, self.service.wall_clock())
        except RepairRefused as exc:
            self.service.stats["repairs_refused"] += 1
            await self.reply(False, exc.reason, exc.detail)
            return
        indices = {index for _, index in await self.store.holdings(offer.owner, offer.home)}
        reason: str | None = None
        if indices - {offer.index}:
            reason = Reason.CONFLICT  # a member never holds two shares of one segment
        if reason is None:
            reason = await self.store.can_accept(offer.owner, intake.size)
        if reason is None:
            reason = await self.store.put_manifest(
                offer.owner, offer.backup_id, data, intake.lease_expires
            )
        if reason is not None:
            self.service.stats["repairs_refused"] += 1
            await self.reply(False, reason)
            return
        self.repair = (intake, HolderSession(offer.owner))
        await self.reply(True)

    def _repairing(self, what: str) -> tuple[RepairIntake, HolderSession]:
        if self.repair is None:
            raise RemoteProtocolError(f"{what}: no repair offer was accepted")
        return self.repair

    async def on_ShardRepairPut(self, piece: messages.ShardRepairPut) -> None:
        intake, session = self._repairing("shard-repair-put")
        try:
            put = intake.put(piece)
        except NotProven as exc:
            raise RemoteProtocolError(f"shard-repair-put: {exc}") from None
        commit = session.put(put)
        if commit is None:
            return
        stored, refused, reason = await self.store.put(commit.blocks)
        self.service.stats["repair_blocks_stored"] += len(stored)
        self.service.stats["blocks_refused"] += len(refused)
        await self.send(messages.ShardStored(b"".join(stored), b"".join(refused), reason))

    async def on_ShardRepairDone(self, done: messages.ShardRepairDone) -> None:
        intake, session = self._repairing("shard-repair-done")
        if (done.owner, done.home) != (intake.offer.owner, intake.offer.home):
            raise RemoteProtocolError("shard-repair-done: not the share offered")
        commit = session.take()
        if commit is not None:
            await self.store.put(commit.blocks)
        self.repair = None
        missing = intake.missing(await self.store.holdings(done.owner, done.home))
        if missing:
            await self.reply(False, Reason.NOT_HELD, f"{missing} segments of the share missing")
            return
        self.service.stats["repairs_taken"] += 1
        if self.service.on_manifest is not None:
            self.service.on_manifest(done.owner, done.home)
        await self.reply(True)

    # -- from any member -----------------------------------------------------------------

    def may_read(self, size: int, owner: bytes) -> bool:
        return self.service.may_read(self.peer, size, owner)

    async def on_ShardGet(self, get: messages.ShardGet) -> None:
        block = await self.store.read_block(get.owner, get.segment, get.index)
        if block is None:
            await self.reply(False, Reason.NOT_HELD)
            return
        if not self.may_read(len(block), get.owner):
            await self.reply(False, Reason.BUSY)
            return
        for at, piece, _ in messages.pieces(block):
            await self.send(messages.ShardBlock(get.segment, get.index, at, len(block), piece))
        self.service.stats["blocks_served"] += 1

    async def on_ShardChallenge(self, challenge: messages.ShardChallenge) -> None:
        block = await self.store.read_block(challenge.owner, challenge.segment, challenge.index)
        if block is None or any(i >= pipeline.leaf_count(len(block)) for i in challenge.leaves):
            await self.reply(False, Reason.NOT_HELD)
            return
        if not self.may_read(len(challenge.leaves) * pipeline.LEAF_BYTES, challenge.owner):
            await self.reply(False, Reason.BUSY)
            return
        await self.send(audit.answer(block, challenge.nonce, challenge.leaves))
        self.service.stats["challenges_answered"] += 1

    async def on_ShardManifestGet(self, get: messages.ShardManifestGet) -> None:
        data = await self.store.read_manifest(get.owner, get.backup_id)
        if data is None:
            await self.reply(False, Reason.NOT_HELD)
            return
        if not self.may_read(len(data), get.owner):
            await self.reply(False, Reason.BUSY)
            return
        for piece in messages.manifest_pieces(get.owner, get.backup_id, data):
            await self.send(piece)

    async def on_ShardList(self, listing: messages.ShardList) -> None:
        backups = await self.store.list_backups(listing.owner)
        await self.send(messages.ShardListing(tuple(backups[: messages.MAX_BACKUPS])))
