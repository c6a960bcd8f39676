"""The owner's catalog: backups, placed segments, and what deleting a backup forgets."""

from __future__ import annotations

from pathlib import Path

from plexinode.shards.catalog import COMPLETE, UPLOADING, Catalog, PlacedSegment
from plexinode.storage.database import open_database

A, B = b"A" * 16, b"B" * 16


def seg(i: int, home: bytes = A, n: int = 3) -> PlacedSegment:
    return PlacedSegment(
        bytes([i]) * 32, home, 100 + i, 40, tuple(bytes([i, r]) * 16 for r in range(n))
    )


async def test_a_backup_from_start_to_removal(tmp_path: Path) -> None:
    async with open_database(tmp_path / "node.db") as db:
        catalog = Catalog(db)
        await catalog.begin(
            A, name="docs", source="/d", created=5.0, k=2, n=3, happy=2, lease_expires=9.0
        )
        row = await catalog.get(A)
        assert row is not None
        assert (row.state, row.size, row.manifest, row.happy) == (UPLOADING, 0, None, 2)
        await catalog.record_placed(A, 2, 3, [seg(1), seg(2)])
        assert await catalog.known(2, 3) == {seg(1).identity, seg(2).identity}
        assert await catalog.known(3, 5) == frozenset()  # another code reuses nothing
        await catalog.complete(A, b"manifest", 1234)
        assert [r.backup_id for r in await catalog.backups(COMPLETE)] == [A]
        assert await catalog.backups(UPLOADING) == []

        await catalog.begin(
            B, name="docs", source="/d", created=6.0, k=2, n=3, happy=2, lease_expires=9.0
        )
        found = await catalog.placed(2, 3, [seg(1).identity, seg(9).identity])
        assert found == {seg(1).identity: seg(1)}
        await catalog.add_uses(B, [seg(1).identity])
        await catalog.record_placed(B, 2, 3, [seg(3, home=B)])
        await catalog.renew([A, B], 99.0)
        assert [r.lease_expires for r in await catalog.backups()] == [99.0, 99.0]

        assert await catalog.remove(A) == [seg(2).identity]  # seg 1 is B's too
        assert await catalog.known(2, 3) == {seg(1).identity, seg(3).identity}
        assert await catalog.get(A) is None
        assert sorted(await catalog.remove(B)) == sorted([seg(1).identity, seg(3).identity])
        assert await catalog.known(2, 3) == frozenset()


async def test_the_catalog_survives_a_restart(tmp_path: Path) -> None:
    async with open_database(tmp_path / "node.db") as db:
        catalog = Catalog(db)
        await catalog.begin(
            A, name="x", source="/x", created=1.0, k=1, n=3, happy=1, lease_expires=2.0
        )
        await catalog.record_placed(A, 1, 3, [seg(4)])
    async with open_database(tmp_path / "node.db") as db:
        catalog = Catalog(db)
        assert [r.backup_id for r in await catalog.backups(UPLOADING)] == [A]
        assert await catalog.placed(1, 3, [seg(4).identity]) == {seg(4).identity: seg(4)}
