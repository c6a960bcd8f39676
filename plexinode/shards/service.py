"""The shard store's service in the node: the holder's end of ``shards/1``, and leases expiring.

`ShardService` registers the ``shards/1`` handler (`holder_service.HolderService` over the
node's share store) with the stream service, and expires leases: every `GC_INTERVAL` seconds it
asks the store to drop the leases whose expiry has passed and the shares only they kept, in
batches (`store.EXPIRE_BATCH`), so a mass expiry never holds the database for long. The work is
proportional to what expired (the store's expiry index), never a crawl of the shares.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final

import trio

from plexinode.net.channel import SecureStream
from plexinode.net.streams import StreamService
from plexinode.shards.holder_service import HolderService
from plexinode.shards.holder_storage import StoreHolding
from plexinode.shards.messages import SHARDS_PROTOCOL
from plexinode.shards.store import EXPIRE_BATCH, ShareStore

log = logging.getLogger(__name__)

#: How often expired leases are collected. Leases last days (30 by default): collecting every
#: ten minutes frees space soon after it is due, at the cost of one indexed query.
GC_INTERVAL: Final = 600.0


class ShardService:
    """The holder's side of the shard store, run in the node's nursery.

    Args:
        streams: where ``shards/1`` is served.
        store: the node's share store.
        wall_clock: Unix time (leases expire at Unix times).
    """

    def __init__(
        self,
        streams: StreamService,
        store: ShareStore,
        *,
        wall_clock: Callable[[], float],
    ) -> None:
        self.store = store
        self.holder = HolderService(StoreHolding(store))
        self._streams = streams
        self._wall_clock = wall_clock
        self.expired_leases = 0
        self.freed_bytes = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve ``shards/1`` and collect expired leases until cancelled."""
        self._streams.on(SHARDS_PROTOCOL, self._serve)
        task_status.started()
        while True:
            await self.collect()
            await trio.sleep(GC_INTERVAL)

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
            **{key: value for key, value in sorted(self.holder.stats.items())},
        }
