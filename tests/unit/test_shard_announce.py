"""A holder announces what it holds: at once when a backup's manifest arrives, then every few
hours for every home, one index lookup per home; a DHT that fails is counted, not fatal."""

from __future__ import annotations

import random
from pathlib import Path

import trio

from plexinode.identity import Identity
from plexinode.shards import pipeline
from plexinode.shards.dht_records import ANNOUNCE_INTERVAL, BackupRecords
from plexinode.shards.service import ANNOUNCE_DELAY, ANNOUNCE_QUEUE, ShardService
from plexinode.shards.share_open import open_share_store
from plexinode.shards.store import Share
from plexinode.storage import open_database
from plexinode.testing.record_board import RecordBoard

HOLDER = Identity.from_seed(bytes([9]) * 32)
OWNER = Identity.from_seed(bytes(32)).node_id.raw
H1, H2 = b"1" * 16, b"2" * 16
NOW = 1_000_000.0


class Streams:
    def on(self, protocol: str, handler: object) -> None:
        self.protocol = protocol


def share(n: int, index: int) -> Share:
    block = random.Random(n).randbytes(5000)
    return Share(n.to_bytes(32, "big"), index, pipeline.share_root(block), block)


def providers(board: RecordBoard) -> dict[bytes, list[int]]:
    return {
        key: sorted(r.value[0] for r in slot.values()) for (_, key), slot in board.records.items()
    }


async def test_announced_at_once_then_every_interval_and_failures_counted(
    tmp_path: Path, autojump_clock
) -> None:
    autojump_clock.autojump_threshold = 0.05  # a file-backed database (worker threads)
    board = RecordBoard(lambda: NOW + trio.current_time())
    records = BackupRecords(board, HOLDER, wall_clock=lambda: NOW + trio.current_time())
    async with open_database(tmp_path / "node.db") as db:
        store = await open_share_store(db, tmp_path, capacity=1 << 30, clock=lambda: NOW)
        await store.put(OWNER, H1, H1, int(NOW) + 10**6, [share(1, 3), share(2, 3)])
        await store.put(OWNER, H2, H2, int(NOW) + 10**6, [share(3, 5)])
        service = ShardService(
            Streams(),  # type: ignore[arg-type]
            store,
            wall_clock=lambda: NOW + trio.current_time(),
            records=records,
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            assert service.holder.on_manifest is not None
            service.holder.on_manifest(OWNER, H1)  # a backup completed here
            service.holder.on_manifest(OWNER, b"9" * 16)  # nothing held of it: not announced
            await trio.sleep(1)
            assert service.announced == 1
            assert list(providers(board).values()) == [[3]]
            await trio.sleep(ANNOUNCE_DELAY)
            assert service.announced == 3  # every home held
            assert len(providers(board)) == 2
            board.broken = True
            await trio.sleep(ANNOUNCE_INTERVAL)
            assert service.announce_failures == 2
            assert service.status()["announce_failures"] == 2
            # A burst of completions beyond the queue is dropped: the next round covers it.
            for _ in range(ANNOUNCE_QUEUE + 10):
                service.holder.on_manifest(OWNER, H2)
            nursery.cancel_scope.cancel()


async def test_without_the_dht_no_repairs_run(tmp_path: Path) -> None:
    async with open_database(None) as db:
        store = await open_share_store(db, tmp_path, capacity=1 << 30, clock=lambda: NOW)
        service = ShardService(Streams(), store, wall_clock=lambda: NOW)  # type: ignore[arg-type]
        async with trio.open_nursery() as nursery:
            await nursery.start(service.start_repairs, None, None)
        assert service.repairs is None
        assert service.status()["repair_backlog"] == 0
