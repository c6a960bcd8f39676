"""The shard store's service in the node: the holder's end of ``shards/1``, and leases expiring.

`ShardService` registers the ``shards/1`` handler (`holder_service.HolderService` over the
node's share store) with the stream service, and expires leases: every `GC_INTERVAL` seconds it
asks the store to drop the leases whose expiry has passed and the shares only they kept, in
batches (`store.EXPIRE_BATCH`), so a mass expiry never holds the database for long. The work is
proportional to what expired (the store's expiry index), never a crawl of the shares.

With the DHT (`dht_records.BackupRecords`), it also says what it holds: a provider record for
each (owner, home) it holds shares of, at once when a backup's manifest arrives (the backup is
complete here) and again every `dht_records.ANNOUNCE_INTERVAL` for every home, walked through
the store's index one lookup per home.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

import trio

from plexinode.errors import PlexinodeError
from plexinode.identity import NodeId
from plexinode.net.address import Address
from plexinode.net.channel import SecureStream
from plexinode.net.streams import StreamService
from plexinode.shards import auditing
from plexinode.shards.auditing import Auditor
from plexinode.shards.dht_records import ANNOUNCE_INTERVAL, BackupRecords
from plexinode.shards.holder_service import HolderService
from plexinode.shards.holder_storage import StoreHolding
from plexinode.shards.messages import SHARDS_PROTOCOL
from plexinode.shards.repair_plan import MemberState
from plexinode.shards.repair_service import SETTLE, RepairService
from plexinode.shards.repairing import Repairer
from plexinode.shards.store import EXPIRE_BATCH, ShareStore

if TYPE_CHECKING:
    from plexinode.membership.service import MembershipService

log = logging.getLogger(__name__)

#: How often expired leases are collected. Leases last days (30 by default): collecting every
#: ten minutes frees space soon after it is due, at the cost of one indexed query.
GC_INTERVAL: Final = 600.0
#: Homes waiting to be announced at once; past this, the next periodic round announces them.
ANNOUNCE_QUEUE: Final = 1024
#: The first round of announcements after start.
ANNOUNCE_DELAY: Final = 60.0


class ShardService:
    """The holder's side of the shard store, run in the node's nursery.

    Args:
        streams: where ``shards/1`` is served.
        store: the node's share store.
        wall_clock: Unix time (leases expire at Unix times).
        records: the DHT's backup records, to announce what this node holds (None: not
            announced, as in simulations without a DHT).
    """

    def __init__(
        self,
        streams: StreamService,
        store: ShareStore,
        *,
        wall_clock: Callable[[], float],
        records: BackupRecords | None = None,
    ) -> None:
        self.store = store
        self.holder = HolderService(
            StoreHolding(store), on_manifest=self._kept, wall_clock=wall_clock
        )
        self._streams = streams
        self._wall_clock = wall_clock
        self._records = records
        self._send, self._receive = trio.open_memory_channel[tuple[bytes, bytes]](ANNOUNCE_QUEUE)
        self.repairs: RepairService | None = None
        self.audits: Auditor | None = None
        self.expired_leases = 0
        self.freed_bytes = 0
        self.announced = 0
        self.announce_failures = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve ``shards/1``, collect expired leases and announce what is held, until
        cancelled."""
        self._streams.on(SHARDS_PROTOCOL, self._serve)
        async with trio.open_nursery() as nursery:
            if self._records is not None:
                nursery.start_soon(self._announce_new, self._records)
                nursery.start_soon(self._announce_loop, self._records)
            task_status.started()
            while True:
                await self.collect()
                await trio.sleep(GC_INTERVAL)

    def _kept(self, owner: bytes, backup_id: bytes) -> None:
        with contextlib.suppress(trio.WouldBlock):  # else the periodic round announces it
            self._send.send_nowait((owner, backup_id))

    async def _announce_new(self, records: BackupRecords) -> None:
        async for owner, home in self._receive:
            index = await self.store.index_held(owner, home)
            if index is not None:
                await self._announce(records, owner, home, index)

    async def _announce_loop(self, records: BackupRecords) -> None:
        # Soon after start (records published before a long stop may have lapsed), once the
        # DHT has found its neighbours; then every interval.
        await trio.sleep(ANNOUNCE_DELAY)
        while True:
            for owner, home, index in await self.store.homes():
                await self._announce(records, owner, home, index)
            await trio.sleep(ANNOUNCE_INTERVAL)

    async def _announce(
        self, records: BackupRecords, owner: bytes, home: bytes, index: int
    ) -> None:
        try:
            await records.announce(owner, home, [index])
        except PlexinodeError as exc:
            self.announce_failures += 1
            log.info("shards: announcing %s failed: %s", home.hex(), exc)
        else:
            self.announced += 1

    async def start_repairs(
        self,
        membership: MembershipService,
        locate: Callable[[NodeId], Awaitable[Address]],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Repair the homes held (`repair_service.RepairService`), until cancelled."""
        if self._records is None:
            task_status.started()
            return
        records = self._records

        @contextlib.asynccontextmanager
        async def open_stream(node: NodeId) -> AsyncIterator[trio.abc.Channel[bytes]]:
            address = await locate(node)
            stream = await self._streams.open(address, SHARDS_PROTOCOL, node_id=node)
            try:
                yield stream
            finally:
                with trio.move_on_after(1):
                    await stream.aclose()

        def members() -> list[MemberState]:
            return [
                MemberState(
                    m.node_id,
                    membership.state_of(m).name.lower(),
                    m.since,
                    m.address.host,
                    m.tags.get("zone", ""),
                )
                for m in membership.members()
            ]

        def audit_failed() -> None:
            if self.repairs is not None:
                self.repairs.schedule(trio.current_time() + SETTLE)

        self.audits = Auditor(
            node_id=records.node_id,
            store=self.store,
            holders=records.holders,
            open_stream=open_stream,
            on_failure=audit_failed,
            fraction=auditing.AUDIT_FRACTION,
            refresh=auditing.REFRESH_INTERVAL,
        )
        repairer = Repairer(
            node_id=records.node_id,
            store=self.store,
            holders=records.holders,
            claim=self.holder.claim,
            release=self.holder.claims.release,
            open_stream=open_stream,
            failed=self.audits.failed_holders,
        )
        self.repairs = RepairService(
            repairer,
            self.store,
            members=members,
            grace=membership.settings.restart_grace,
            events=membership.subscribe(),
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(self.audits.run)
            await self.repairs.run(task_status=task_status)

    async def _serve(self, stream: SecureStream) -> None:
        await self.holder.serve(stream, stream.remote_node_id)

    async def collect(self) -> None:
        """Drop every lease expired by now, a batch at a time."""
        while True:
            freed = await self.store.expire(self._wall_clock())
            self.expired_leases += freed.leases
            self.freed_bytes += freed.bytes
            if freed.leases:
                log.info("shards: %d leases expired, %d bytes freed", freed.leases, freed.bytes)
            if freed.leases < EXPIRE_BATCH:
                return

    def status(self) -> dict[str, Any]:
        """What ``status`` shows under ``shards``: what this node holds for others."""
        usage = self.store.usage()
        return {
            "held_bytes": usage.total_bytes,
            "quota_bytes": usage.capacity_bytes,
            "owner_quota_bytes": usage.owner_quota_bytes,
            "owners": len(usage.owners),
            "expired_leases": self.expired_leases,
            "freed_bytes": self.freed_bytes,
            "announced": self.announced,
            "announce_failures": self.announce_failures,
            **(self.repairs.status() if self.repairs else {"repair_backlog": 0}),
            **(self.audits.status() if self.audits else {}),
            **{key: value for key, value in sorted(self.holder.stats.items())},
        }
