"""A backup from the owner's side to holders served by the holder service, and a restore."""

from __future__ import annotations

import random
import weakref
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import trio

from plexinode.identity import Identity
from plexinode.shards import backup_job, derive, fetching
from plexinode.shards.backup_job import BackupFailed, HolderLink, run_backup
from plexinode.shards.catalog import COMPLETE, UPLOADING, Catalog
from plexinode.shards.fetch_plan import FetchPlan
from plexinode.shards.holder_service import HolderService
from plexinode.shards.manifest import Manifest, SegmentInfo
from plexinode.shards.pipeline import EncodedSegment
from plexinode.shards.progress import BACKUP, Progress, Report, ignore
from plexinode.shards.restore_pipeline import SegmentUnavailable, run_restore
from plexinode.shards.segmenter import SegmentSizes
from plexinode.shards.source import Source
from plexinode.shards.uploading import open_share_upload
from plexinode.storage.database import open_database
from plexinode.testing.channels import channel_pair
from plexinode.testing.memory_store import MemoryStore

OWNER = Identity.from_seed(bytes(32))
SECRET = bytes(range(32))
SIZES = SegmentSizes.for_average(64 << 10)
K, N, HAPPY = 2, 4, 3


def make_tree(root: Path, files: int = 10, seed: int = 1) -> None:
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        (root / f"f{i}").write_bytes(rng.randbytes(rng.randrange(1000, 120_000)))


class Cluster:
    def __init__(self, quotas: list[int] | None = None) -> None:
        quotas = quotas or [1 << 30] * N
        self.stores = [MemoryStore(quota=q) for q in quotas]
        self.services = [HolderService(store) for store in self.stores]

    async def backup(  # type: ignore[no-untyped-def]
        self,
        nursery: trio.Nursery,
        catalog: Catalog,
        path: Path,
        backup_id: bytes,
        progress: Report = ignore,
    ):
        async with AsyncExitStack() as stack:
            links = {}
            for index, service in enumerate(self.services):
                client, server = channel_pair()
                nursery.start_soon(service.serve, server, OWNER.node_id)
                upload = await stack.enter_async_context(
                    open_share_upload(
                        client,
                        backup_id=backup_id,
                        home=backup_id,
                        lease_expires=100.0,
                        index=index,
                        window=3,
                    )
                )
                links[index] = HolderLink(f"holder-{index}", upload)
            outcome = await run_backup(
                source=Source(path),
                identity=OWNER,
                secret=SECRET,
                catalog=catalog,
                backup_id=backup_id,
                links=links,
                code=(K, N, HAPPY),
                name="tree",
                now=10.0,
                lease_expires=100.0,
                sizes=SIZES,
                progress=progress,
                estimate=Source(path).estimate(),
            )
            for link in links.values():
                await link.upload._stream.aclose()
            return outcome

    async def restore(self, nursery: trio.Nursery, built: Manifest, dest: Path) -> None:
        plan = FetchPlan({i: [bytes([i]) * 32] for i in range(N)})

        async def fetch(
            index: int, info: SegmentInfo, excluded: frozenset[int]
        ) -> dict[int, bytes]:
            chosen = plan.choose(K, excluded)
            if len(chosen) < K:
                raise SegmentUnavailable(f"segment {index}")
            blocks = {}
            for share, node in chosen:
                client, server = channel_pair()
                nursery.start_soon(self.services[share].serve, server, OWNER.node_id)
                try:
                    blocks[share] = await fetching.fetch_block(
                        client, OWNER.node_id.raw, info.identity, share
                    )
                except fetching.NotHeld:
                    plan.failed(node)
                await client.aclose()
            if len(blocks) < K:
                return await fetch(index, info, excluded | frozenset(set(range(N)) - set(blocks)))
            return blocks

        private = built.open_private(derive.manifest_key(SECRET, built.backup_id))
        await run_restore(built, private, secret=SECRET, dest=dest, fetch=fetch)


def tree(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.iterdir())}


async def test_backup_then_restore_through_holders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backup_job, "RECORD_BATCH", 2)  # record placed segments as it goes
    make_tree(tmp_path / "src")
    cluster = Cluster()
    async with open_database(tmp_path / "node.db") as db, trio.open_nursery() as nursery:
        catalog = Catalog(db)
        await catalog.begin(
            b"A" * 16,
            name="tree",
            source="src",
            created=10.0,
            k=K,
            n=N,
            happy=HAPPY,
            lease_expires=100.0,
        )
        reports: list[Progress] = []
        outcome = await cluster.backup(
            nursery, catalog, tmp_path / "src", b"A" * 16, progress=reports.append
        )
        assert outcome.lost_indices == []
        # A report per segment, in order: the source's bytes (the files, then the index: the
        # total grows from the files' size to what was read) and the share bytes sent.
        assert len(reports) == outcome.manifest.segment_count
        files = sum(len(p.read_bytes()) for p in (tmp_path / "src").iterdir())
        assert {p.phase for p in reports} == {BACKUP}
        assert reports[0].total == files
        assert reports[-1].done == reports[-1].total > files
        assert reports[-1].sent_bytes == outcome.bytes_sent
        assert [p.done for p in reports] == sorted(p.done for p in reports)
        assert [p.sent_bytes for p in reports] == sorted(p.sent_bytes for p in reports)
        assert sorted(outcome.holders) == list(range(N))
        row = await catalog.get(b"A" * 16)
        assert row is not None
        assert row.state == COMPLETE
        assert row.manifest == outcome.manifest.to_bytes_checked()
        assert all(len(store.manifests) == 1 for store in cluster.stores)
        assert len(await catalog.known(K, N)) == outcome.manifest.segment_count
        await cluster.restore(nursery, outcome.manifest, tmp_path / "out")
        assert tree(tmp_path / "out") == tree(tmp_path / "src")

        # The same tree again: nothing sent, every segment reused from the first backup.
        await catalog.begin(
            b"B" * 16,
            name="tree",
            source="src",
            created=11.0,
            k=K,
            n=N,
            happy=HAPPY,
            lease_expires=100.0,
        )
        reports = []
        again = await cluster.backup(
            nursery, catalog, tmp_path / "src", b"B" * 16, progress=reports.append
        )
        assert again.bytes_sent == 0
        assert reports[-1].done == reports[-1].total > files
        assert {p.sent_bytes for p in reports} == {0}
        assert set(again.references) == {b"A" * 16}
        await cluster.restore(nursery, again.manifest, tmp_path / "out2")
        assert tree(tmp_path / "out2") == tree(tmp_path / "src")
        nursery.cancel_scope.cancel()


async def test_a_holder_that_fills_up_is_dropped_and_happiness_decides(tmp_path: Path) -> None:
    make_tree(tmp_path / "src")
    async with open_database(tmp_path / "node.db") as db, trio.open_nursery() as nursery:
        catalog = Catalog(db)
        cluster = Cluster(quotas=[1 << 30, 1 << 30, 1 << 30, 150_000])
        await catalog.begin(
            b"A" * 16, name="t", source="s", created=1.0, k=K, n=N, happy=HAPPY, lease_expires=9.0
        )
        outcome = await cluster.backup(nursery, catalog, tmp_path / "src", b"A" * 16)
        assert outcome.lost_indices == [3]
        assert sorted(outcome.holders) == [0, 1, 2]
        await cluster.restore(nursery, outcome.manifest, tmp_path / "out")
        assert tree(tmp_path / "out") == tree(tmp_path / "src")

        cluster = Cluster(quotas=[1 << 30, 1 << 30, 150_000, 150_000])
        await catalog.begin(
            b"C" * 16, name="t", source="s", created=1.0, k=K, n=N, happy=HAPPY, lease_expires=9.0
        )
        make_tree(tmp_path / "src2", seed=2)
        with pytest.raises(BackupFailed, match="only 2 holders still accept shares, 3 needed"):
            await cluster.backup(nursery, catalog, tmp_path / "src2", b"C" * 16)
        row = await catalog.get(b"C" * 16)
        assert row is not None
        assert (row.state, row.manifest) == (UPLOADING, None)  # no manifest claims anything
        nursery.cancel_scope.cancel()


class Tracked(EncodedSegment):
    """An encoded segment that can be weakly referenced (the dataclass has slots)."""


async def test_a_sent_segment_is_let_go(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The owner's memory stays bounded whatever the source's size: once a segment's blocks
    are sent to every holder, the job keeps only what the manifest needs, not the blocks."""
    held_after_delivery: list[bool] = []
    pipeline_run = backup_job.run_pipeline

    async def tracking(stream, *, deliver, **options):  # type: ignore[no-untyped-def]
        async def deliver_tracked(result):  # type: ignore[no-untyped-def]
            if isinstance(result, EncodedSegment):
                result = Tracked(result.identity, result.length, result.blocks, result.roots)
                ref = weakref.ref(result)
                await deliver(result)
                del result
                held_after_delivery.append(ref() is not None)
            else:
                await deliver(result)

        return await pipeline_run(stream, deliver=deliver_tracked, **options)

    monkeypatch.setattr(backup_job, "run_pipeline", tracking)
    make_tree(tmp_path / "src")
    async with open_database(tmp_path / "node.db") as db, trio.open_nursery() as nursery:
        catalog = Catalog(db)
        await catalog.begin(
            b"M" * 16, name="t", source="s", created=1.0, k=K, n=N, happy=HAPPY, lease_expires=9.0
        )
        cluster = Cluster()
        outcome = await cluster.backup(nursery, catalog, tmp_path / "src", b"M" * 16)
        assert len(held_after_delivery) == outcome.manifest.segment_count > 4
        assert not any(held_after_delivery)
        await cluster.restore(nursery, outcome.manifest, tmp_path / "out")
        assert tree(tmp_path / "out") == tree(tmp_path / "src")
        nursery.cancel_scope.cancel()
