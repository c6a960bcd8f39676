"""The holder service over the real share store (SQLite and files): a backup, a restore, the
store's refusals as shards/1 reasons."""

from __future__ import annotations

import random
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import trio

from plexinode.identity import Identity
from plexinode.shards import derive, fetching, messages, pipeline
from plexinode.shards.backup_job import HolderLink, run_backup
from plexinode.shards.catalog import Catalog
from plexinode.shards.holder_service import HolderService
from plexinode.shards.holder_storage import StoreHolding
from plexinode.shards.holding import Block
from plexinode.shards.manifest import SegmentInfo
from plexinode.shards.restore_pipeline import SegmentUnavailable, run_restore
from plexinode.shards.segmenter import SegmentSizes
from plexinode.shards.share_open import open_share_store
from plexinode.shards.source import Source
from plexinode.shards.uploading import open_share_upload
from plexinode.storage.database import open_database
from plexinode.testing.channels import channel_pair

OWNER = Identity.from_seed(bytes(32))
SECRET = bytes(range(32))
BACKUP = b"B" * 16
K, N = 2, 3


async def holders(
    stack: AsyncExitStack, tmp_path: Path, capacity: int = 1 << 30
) -> list[HolderService]:
    services = []
    for i in range(N):
        directory = tmp_path / f"holder{i}"
        directory.mkdir()
        db = await stack.enter_async_context(open_database(directory / "node.db"))
        store = await open_share_store(db, directory, capacity=capacity)
        services.append(HolderService(StoreHolding(store)))
    return services


async def test_a_backup_stored_durably_and_restored(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    rng = random.Random(3)
    for i in range(6):
        (tmp_path / "src" / f"f{i}").write_bytes(rng.randbytes(rng.randrange(1, 150_000)))
    async with AsyncExitStack() as stack, trio.open_nursery() as nursery:
        services = await holders(stack, tmp_path)
        db = await stack.enter_async_context(open_database(tmp_path / "owner.db"))
        catalog = Catalog(db)
        await catalog.begin(
            BACKUP, name="t", source="s", created=1.0, k=K, n=N, happy=N, lease_expires=4e9
        )
        links = {}
        async with AsyncExitStack() as uploads:
            for i, service in enumerate(services):
                client, server = channel_pair()
                nursery.start_soon(service.serve, server, OWNER.node_id)
                up = await uploads.enter_async_context(
                    open_share_upload(
                        client, backup_id=BACKUP, home=BACKUP, lease_expires=4e9, index=i
                    )
                )
                links[i] = HolderLink(f"h{i}", up)
            outcome = await run_backup(
                source=Source(tmp_path / "src"),
                identity=OWNER,
                secret=SECRET,
                catalog=catalog,
                backup_id=BACKUP,
                links=links,
                code=(K, N, N),
                name="t",
                now=1.0,
                lease_expires=4e9,
                sizes=SegmentSizes.for_average(64 << 10),
            )
        built = outcome.manifest
        for service in services:
            assert await service.store.list_backups(OWNER.node_id.raw) == [BACKUP]  # type: ignore[attr-defined]

        async def fetch(
            index: int, info: SegmentInfo, excluded: frozenset[int]
        ) -> dict[int, bytes]:
            blocks = {}
            for share in [s for s in range(N) if s not in excluded][:K]:
                client, server = channel_pair()
                nursery.start_soon(services[share].serve, server, OWNER.node_id)
                blocks[share] = await fetching.fetch_block(
                    client, OWNER.node_id.raw, info.identity, share
                )
            if len(blocks) < K:
                raise SegmentUnavailable(str(index))
            return blocks

        private = built.open_private(derive.manifest_key(SECRET, BACKUP))
        await run_restore(built, private, secret=SECRET, dest=tmp_path / "out", fetch=fetch)
        for i in range(6):
            assert (tmp_path / "out" / f"f{i}").read_bytes() == (
                tmp_path / "src" / f"f{i}"
            ).read_bytes()
        nursery.cancel_scope.cancel()


async def test_refusals_become_shards_reasons(tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        directory = tmp_path / "h"
        directory.mkdir()
        db = await stack.enter_async_context(open_database(directory / "node.db"))
        store = await open_share_store(db, directory, capacity=400_000, owner_quota=200_000)
        holding = StoreHolding(store)
        owner = OWNER.node_id.raw
        assert await holding.can_accept(owner, 100) is None
        assert await holding.can_accept(owner, 250_000) == messages.Reason.OWNER_QUOTA
        assert await holding.can_accept(owner, 500_000) == messages.Reason.NODE_FULL
        seg = pipeline.encode_segment(SECRET, random.Random(1).randbytes(300_000), 2, 3)

        def block(index: int, root: bytes | None = None) -> Block:
            return Block(
                owner,
                BACKUP,
                BACKUP,
                4e9,
                seg.identity,
                index,
                root or seg.roots[index],
                seg.blocks[index],
            )

        assert await holding.put([block(0, root=bytes(32))]) == (
            [],
            [seg.identity],
            messages.Reason.BAD_ROOT,
        )
        assert await holding.put([block(0)]) == ([seg.identity], [], "")
        assert await holding.put([block(1)]) == ([], [seg.identity], messages.Reason.OWNER_QUOTA)
        assert await holding.add_refs(owner, b"C" * 16, 4e9, [seg.identity, b"x" * 32]) == (
            [seg.identity],
            [b"x" * 32],
        )
        assert await holding.add_refs(owner, b"C" * 16, 1.0, [seg.identity]) == (
            [],
            [seg.identity],
        )  # expired
        assert (
            await holding.put_manifest(owner, b"D" * 16, b"m" * 10, 4e9) is None
        )  # lease made for it
        assert (
            await holding.put_manifest(owner, b"D" * 16, b"m" * 60_000, 4e9)
            == messages.Reason.OWNER_QUOTA
        )
        assert (
            await holding.put_manifest(owner, b"D" * 16, b"", 4e9) == messages.Reason.BAD_MANIFEST
        )
        assert sorted(await holding.list_backups(owner)) == [b"D" * 16]
        assert await holding.read_manifest(owner, b"D" * 16) == b"m" * 10
        await holding.renew(owner, [BACKUP, b"Z" * 16], 5e9)
        assert await holding.read_block(owner, seg.identity, 0) == seg.blocks[0]
        assert await holding.read_block(owner, seg.identity, 1) is None
        await holding.remove(owner, BACKUP)
        assert await holding.read_block(owner, seg.identity, 0) == seg.blocks[0]  # C still uses it
        await holding.remove(owner, b"C" * 16)
        assert await holding.read_block(owner, seg.identity, 0) is None


def test_disk_full_is_its_own_reason() -> None:
    from plexinode.shards.holder_storage import quota_reason
    from plexinode.shards.share_ledger import NodeFull
    from plexinode.shards.store import DiskFull

    assert quota_reason(DiskFull(1, 0)) == messages.Reason.DISK_FULL
    assert quota_reason(NodeFull(1, 0)) == messages.Reason.NODE_FULL
    with pytest.raises(AssertionError):
        assert quota_reason(NodeFull(1, 0)) == messages.Reason.DISK_FULL
