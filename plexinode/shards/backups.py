"""The owner's backup service: `create` places a backup among the network's members and sends
it, `restore` brings it back; both from this node's catalog (`catalog.Catalog`).

``create``: the live members (from membership, the owner left out) are the candidates; the
placement (`placing.place_shares`: `placement.PlacementPlan`, rendezvous order on the ID, spread
over hosts) offers share indices one by one, each offer being a ``shards/1`` stream and a
``shard-offer`` (a refusal, for quota, or a member that cannot be reached, moves the index to
the next candidate). With fewer holders than the happiness asks, the backup is refused naming
how many were found, before any data moves. Otherwise the job (`backup_job.run_backup`) sends
the segments and the manifest; the placement is recorded; holders of earlier backups whose
segments this one reuses are told (``shard-ref``) to keep them under this backup's lease too.

``restore``: the manifest from the catalog, each home's holders from the catalog, the k
fastest holders per segment (`fetch_plan.FetchPlan`, one stream per holder, reused), then the
restore pipeline (`restore_pipeline.run_restore`: verified, decoded in worker threads, written
atomically).

With the DHT (`dht_records.BackupRecords`): after every change (create, rm, the daily renewal)
the owner republishes its ``backups`` record; ``backup list`` and the renewal first adopt the
backups that record lists and the catalog lacks (`owner_records`, a new machine); a restore asks the
holders' provider records too, which name holders that a repair added.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import trio

from plexinode.errors import PlexinodeError
from plexinode.identity import Identity, NodeId
from plexinode.net.address import Address
from plexinode.net.streams import STREAM_FAILURES, StreamService
from plexinode.shards import deadlines, derive, messages, verifying
from plexinode.shards.backup_job import BackupOutcome, run_backup
from plexinode.shards.catalog import COMPLETE, UPLOADING, Catalog
from plexinode.shards.dht_records import BackupRecords
from plexinode.shards.fetch_plan import FetchPlan
from plexinode.shards.manifest import Manifest
from plexinode.shards.owner_records import adopt_backups, all_holders, publish_list
from plexinode.shards.placement import Coding
from plexinode.shards.placing import Peer, place_shares
from plexinode.shards.progress import Report, ignore
from plexinode.shards.restore_pipeline import RestoreResult, run_restore
from plexinode.shards.restore_streams import RestoreStreams
from plexinode.shards.segment_fetch import SegmentFetcher
from plexinode.shards.segmenter import DEFAULT_SEGMENT_BYTES, SegmentSizes
from plexinode.shards.source import Source
from plexinode.shards.uploading import exchange, request
from plexinode.shards.verify_plan import VerifyReport

log = logging.getLogger(__name__)

#: How long a backup's lease runs; the owner renews it while it runs (issue 23: 30 days).
LEASE_SECONDS: Final = 30 * 86_400
#: How often a running owner renews its leases: daily, so a lease is never less than 29 days
#: from its end while the owner runs.
RENEW_INTERVAL: Final = 86_400.0
#: The first renewal after start: once membership and the DHT have found the network.
RENEW_DELAY: Final = 60.0
#: How long finding this owner's backups in the DHT may take (a record lookup, then a
#: manifest from a holder per backup not known here).
ADOPT_DEADLINE: Final = 300.0
#: How long removing a failed backup from its holders may take before it is left to the next
#: renewal.
CLEANUP_DEADLINE: Final = 60.0


class BackupError(PlexinodeError):
    """A backup or restore that cannot be done (the message says why)."""


@dataclass(frozen=True, slots=True)
class Created:
    """What ``backup create`` reports."""

    backup_id: bytes
    bytes: int
    k: int
    n: int
    happy: int
    holders: tuple[NodeId, ...]
    outcome: BackupOutcome


class BackupService:
    """The owner's side of backups (see the module docstring).

    Args:
        identity: this node (the owner).
        secret: the owner's backup secret.
        catalog: the owner's tables.
        streams: to open ``shards/1`` streams.
        peers: the live members other than this node, now.
        locate: a member's address from its node ID (membership, else the DHT).
        wall_clock: Unix time.
        records: the backups' DHT records (None: the catalog alone, as in simulations without
            a DHT).
    """

    def __init__(
        self,
        *,
        identity: Identity,
        secret: bytes,
        catalog: Catalog,
        streams: StreamService,
        peers: Callable[[], Sequence[Peer]],
        locate: Callable[[NodeId], Awaitable[Address]],
        wall_clock: Callable[[], float] = time.time,
        records: BackupRecords | None = None,
    ) -> None:
        self.identity = identity
        self.records = records
        self._running: set[bytes] = set()
        self.secret = secret
        self.catalog = catalog
        self.streams = streams
        self._peers = peers
        self._locate = locate
        self._clock = wall_clock

    async def create(
        self,
        path: Path,
        *,
        k: int = 3,
        n: int = 10,
        happy: int | None = None,
        name: str | None = None,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        workers: int = 2,
        progress: Report = ignore,
    ) -> Created:
        """Back up `path` (a file or a directory) with k-of-n among the network's members,
        reporting the source's bytes read and sent against its size to `progress`.

        Raises:
            ValueError: k, n or happy outside their rules.
            source.SourceError: `path` cannot be read as it is.
            BackupError: too few members accept shares, or the backup failed midway.
        """
        coding = Coding.of(k, n, happy)
        sizes = SegmentSizes.for_average(segment_bytes)
        source = Source(path)
        backup_id = os.urandom(16)
        now = self._clock()
        lease = now + LEASE_SECONDS
        peers = {p.node_id: p for p in self._peers() if p.node_id != self.identity.node_id}
        if len(peers) < coding.happy:
            raise BackupError(
                f"{len(peers)} other live members found, {coding.happy} needed "
                f"(k = {k}, n = {n}, happiness {coding.happy})"
            )
        await self.catalog.begin(
            backup_id,
            name=name or path.name or str(path),
            source=str(path),
            created=now,
            k=k,
            n=n,
            happy=coding.happy,
            lease_expires=lease,
        )
        self._running.add(backup_id)
        try:
            async with AsyncExitStack() as stack:
                estimate = source.estimate()
                share_bytes = estimate // k + 1
                links = await place_shares(
                    stack,
                    self.streams,
                    backup_id,
                    owner=self.identity.node_id,
                    lease=lease,
                    coding=coding,
                    peers=peers,
                    share_bytes=share_bytes,
                )
                # Recorded before any data moves, so that an interrupted backup's holders are
                # known, to remove it from them (`clean_interrupted`).
                await self.catalog.record_holders(
                    backup_id, {i: NodeId.parse(link.name).raw for i, link in links.items()}
                )
                outcome = await run_backup(
                    source=source,
                    identity=self.identity,
                    secret=self.secret,
                    catalog=self.catalog,
                    backup_id=backup_id,
                    links=links,
                    code=(k, n, coding.happy),
                    name=name or path.name or str(path),
                    now=now,
                    lease_expires=lease,
                    sizes=sizes,
                    workers=workers,
                    reference=lambda references: self._reference(backup_id, lease, references),
                    progress=progress,
                    estimate=estimate,
                )
        except Exception:
            self._running.discard(backup_id)
            with trio.move_on_after(CLEANUP_DEADLINE):
                await self.clean_interrupted(backup_id)
            raise
        finally:
            self._running.discard(backup_id)
        holders = {index: NodeId.parse(label) for index, label in outcome.holders.items()}
        await publish_list(self.records, self.catalog, self._clock())
        return Created(
            backup_id=backup_id,
            bytes=source.data_bytes,
            k=k,
            n=n,
            happy=coding.happy,
            holders=tuple(dict.fromkeys(holders.values())),
            outcome=outcome,
        )

    async def _reference(
        self, backup_id: bytes, lease: float, references: dict[bytes, list[bytes]]
    ) -> None:
        """Tell the holders of earlier homes which of their segments this backup uses."""
        for home, segments in references.items():
            for holder in (await self.catalog.holders(home)).values():
                node = NodeId(holder)
                try:
                    async with self._stream(node) as stream:
                        for at in range(0, len(segments), messages.MAX_IDS):
                            batch = b"".join(segments[at : at + messages.MAX_IDS])
                            ref = messages.ShardRef(backup_id, lease, batch)
                            await exchange(stream, ref, messages.ShardStored)
                except (PlexinodeError, *STREAM_FAILURES) as exc:
                    log.warning("backup: %s did not take the references: %s", node.short(), exc)

    @asynccontextmanager
    async def _stream(self, node: NodeId) -> AsyncIterator[trio.abc.Channel[bytes]]:
        with trio.fail_after(deadlines.CONNECT_SECONDS):
            address = await self._locate(node)
            stream = await self.streams.open(address, messages.SHARDS_PROTOCOL, node_id=node)
        try:
            yield stream
        finally:
            await deadlines.close_soon(stream)

    async def find(self, text: str) -> bytes:
        """The backup whose ID is `text` or starts with it (at least 8 hex digits).

        Raises:
            BackupError: none or several match.
        """
        wanted = text.strip().lower()
        if len(wanted) < 8 or any(c not in "0123456789abcdef" for c in wanted):
            raise BackupError(f"{text!r} is not a backup ID (32 hex digits, or at least 8 of them)")
        found = [
            r.backup_id
            for r in await self.catalog.backups()
            if r.backup_id.hex().startswith(wanted)
        ]
        if not found:
            raise BackupError(f"no backup {text} on this node")
        if len(found) > 1:
            raise BackupError(f"{text} names {len(found)} backups: give more digits")
        return found[0]

    async def adopt(self) -> list[bytes]:
        """Adopt the backups the owner's DHT record lists that the catalog lacks (a new
        machine); returns their IDs. A DHT that cannot be asked now is logged, not raised."""
        if self.records is None:
            return []
        try:
            with trio.fail_after(ADOPT_DEADLINE):
                return await adopt_backups(
                    records=self.records,
                    identity=self.identity,
                    secret=self.secret,
                    catalog=self.catalog,
                    open_stream=self._stream,
                )
        except (PlexinodeError, trio.TooSlowError) as exc:
            log.warning("backup: looking for this node's backups in the DHT failed: %s", exc)
            return []

    async def listing(self) -> list[dict[str, object]]:
        """``backup list``: the complete backups, oldest first (with those the DHT lists that
        this node did not know, adopted first)."""
        await self.adopt()
        return [
            {
                "backup_id": row.backup_id.hex(),
                "name": row.name,
                "bytes": row.size,
                "created": row.created,
                "k": row.k,
                "n": row.n,
            }
            for row in await self.catalog.backups(COMPLETE)
        ]

    async def show(self, backup_id: bytes) -> dict[str, object]:
        """``backup show``: one backup, with its holders and lease."""
        row = await self.catalog.get(backup_id)
        built = await self.manifest(backup_id)
        assert row is not None  # manifest() checked it
        holders = await self._holders_of(built)
        return {
            "backup_id": backup_id.hex(),
            "name": row.name,
            "source": row.source,
            "bytes": row.size,
            "created": row.created,
            "k": row.k,
            "n": row.n,
            "happy": row.happy,
            "segments": built.segment_count,
            "holders": [str(h) for h in holders],
            "lease_expires": row.lease_expires,
        }

    async def _holders_of(self, built: Manifest) -> list[NodeId]:
        """Every holder of every home the backup uses (each keeps a lease of it): as placed,
        and those whose provider records say so (a repair placed shares there)."""
        holders: dict[bytes, None] = {}
        owner = self.identity.node_id
        for home in built.homes:
            for nodes in (await all_holders(self.catalog, self.records, owner, home)).values():
                holders.update(dict.fromkeys(n for n in nodes if n != owner.raw))
        return [NodeId(h) for h in holders]

    async def renew(self) -> int:
        """Extend the lease of every complete backup on every holder that keeps it, to a full
        lease period from now; returns how many holders answered. Run daily while the node
        runs, so a backup lives as long as its owner does (and a lease period after)."""
        await self.adopt()
        await self.clean_interrupted()
        lease = self._clock() + LEASE_SECONDS
        rows = await self.catalog.backups(COMPLETE)
        by_holder: dict[NodeId, list[bytes]] = {}
        for row in rows:
            for node in await self._holders_of(await self.manifest(row.backup_id)):
                by_holder.setdefault(node, []).append(row.backup_id)
        told = 0
        for node, backup_ids in by_holder.items():
            try:
                async with self._stream(node) as stream:
                    for at in range(0, len(backup_ids), messages.MAX_BACKUPS):
                        ids = tuple(backup_ids[at : at + messages.MAX_BACKUPS])
                        await request(stream, messages.ShardRenew(ids, lease))
                told += 1
            except (PlexinodeError, *STREAM_FAILURES) as exc:
                log.warning("backup: %s did not renew its leases: %s", node.short(), exc)
        await self.catalog.renew([row.backup_id for row in rows], lease)
        await publish_list(self.records, self.catalog, self._clock())
        return told

    async def renew_loop(self) -> None:
        """Renew the leases soon after start (a restored identity renews at once) and then
        every `RENEW_INTERVAL` seconds (until cancelled)."""
        await trio.sleep(RENEW_DELAY)
        while True:
            try:
                await self.renew()
            except PlexinodeError as exc:
                log.warning("backup: lease renewal failed: %s", exc)
            await trio.sleep(RENEW_INTERVAL)

    async def remove(self, backup_id: bytes) -> int:
        """``backup rm``: drop the backup's lease on every holder of every home it uses (each
        frees what no other backup of this owner uses), then forget it here. Returns how many
        holders answered; one that did not keeps the shares until the lease expires."""
        built = await self.manifest(backup_id)
        told = 0
        for node in await self._holders_of(built):
            try:
                async with self._stream(node) as stream:
                    await request(stream, messages.ShardRemove(backup_id))
                told += 1
            except (PlexinodeError, *STREAM_FAILURES) as exc:
                log.warning("backup rm: %s did not answer: %s", node.short(), exc)
        await self.catalog.remove(backup_id)
        await publish_list(self.records, self.catalog, self._clock())
        return told

    async def clean_interrupted(self, only: bytes | None = None) -> int:
        """Remove the backups a crash or a failure left ``uploading`` (no manifest was ever
        sent for them, so nothing claims their shares), or only `only`, from every holder they
        were placed on, then from the catalog; returns how many were removed. Backups being
        made now are left alone. One whose holders do not all answer is kept, to try again at
        the next renewal (or their leases run out)."""
        removed = 0
        for row in await self.catalog.backups(UPLOADING):
            if row.backup_id in self._running or only not in (None, row.backup_id):
                continue
            answered = True
            for holder in dict.fromkeys((await self.catalog.holders(row.backup_id)).values()):
                node = NodeId(holder)
                try:
                    async with self._stream(node) as stream:
                        await request(stream, messages.ShardRemove(row.backup_id))
                except (PlexinodeError, *STREAM_FAILURES) as exc:
                    log.info("backup: %s kept an interrupted backup: %s", node.short(), exc)
                    answered = False
            if answered:
                await self.catalog.remove(row.backup_id)
                removed += 1
                log.info("backup: removed the interrupted backup %s", row.backup_id.hex())
        return removed

    async def manifest(self, backup_id: bytes) -> Manifest:
        """A complete backup's manifest, from the catalog."""
        row = await self.catalog.get(backup_id)
        if row is None or row.state != COMPLETE or row.manifest is None:
            raise BackupError(f"no complete backup {backup_id.hex()} on this node")
        return Manifest.decode(row.manifest)

    async def verify(self, backup_id: bytes, *, progress: Report = ignore) -> VerifyReport:
        """``backup verify``: challenge every holder of the backup (`verifying.verify`)."""
        built = await self.manifest(backup_id)
        owner = self.identity.node_id
        holders = {}
        for home in built.homes:
            # The latest holder each index has: a repair's, named by its provider record, after
            # the one placed (which may be gone).
            found = await all_holders(self.catalog, self.records, owner, home)
            holders[home] = {index: nodes[-1] for index, nodes in found.items()}
        return await verifying.verify(
            built, holders, owner=self.identity.node_id.raw, connect=self._stream, progress=progress
        )

    async def restore(
        self, backup_id: bytes, dest: Path, *, partial: bool = False, progress: Report = ignore
    ) -> RestoreResult:
        """Restore a backup at `dest` (which must not exist), reporting the bytes written
        against the backup's size to `progress`."""
        built = await self.manifest(backup_id)
        private = built.open_private(derive.manifest_key(self.secret, backup_id))
        plans = {
            home: FetchPlan(
                await all_holders(self.catalog, self.records, self.identity.node_id, home)
            )
            for home in built.homes
        }
        async with RestoreStreams(self.streams, self._locate, self.identity.node_id.raw) as pool:
            return await run_restore(
                built,
                private,
                secret=self.secret,
                dest=dest,
                fetch=SegmentFetcher(plans, pool, built.k),
                partial=partial,
                progress=progress,
            )
