"""The backups' DHT records: the owner's list, the holders' provider records, and adopting a
backup on a new machine from whichever holder serves its true manifest."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from plexinode.dht.backup_records import BACKUPS_MAX_TTL, home_key
from plexinode.dht.record_types import PROVIDER
from plexinode.dht.records import sign_record
from plexinode.identity import Identity, NodeId
from plexinode.shards import derive, manifest, pipeline
from plexinode.shards.catalog import Catalog
from plexinode.shards.dht_records import BackupRecords
from plexinode.shards.holder_service import HolderService
from plexinode.shards.manifest import Private, SegmentTable
from plexinode.shards.owner_records import adopt_backups, all_holders, publish_list
from plexinode.storage import open_database
from plexinode.testing.channels import ChannelEnd, channel_pair
from plexinode.testing.memory_store import MemoryStore
from plexinode.testing.record_board import RecordBoard

OWNER = Identity.from_seed(bytes(32))
OTHER = Identity.from_seed(bytes([3]) * 32)
HOLDERS = [Identity.from_seed(bytes([10 + i]) * 32) for i in range(4)]
SECRET = bytes(range(32))
BACKUP = b"B" * 16
NOW = 1_000_000.0


def records(dht: RecordBoard, identity: Identity = OWNER) -> BackupRecords:
    return BackupRecords(dht, identity, wall_clock=lambda: NOW)


def signed_manifest(
    owner: Identity = OWNER, secret: bytes = SECRET, backup: bytes = BACKUP
) -> bytes:
    rng = random.Random(5)
    segs = [pipeline.encode_segment(secret, rng.randbytes(50_000), 2, 4) for _ in range(3)]
    table = SegmentTable(backup, 4)
    for s in segs:
        table.add(s.identity, backup, s.length, len(s.blocks[0]), s.roots)
    private = Private.of("photos", "/home/me/photos", sum(s.length for s in segs), 0, table.lengths)
    key = derive.manifest_key(secret, backup)
    return (
        manifest.build(
            owner=owner.public_key,
            backup_id=backup,
            created=NOW - 10,
            lease_expires=NOW + 100,
            k=2,
            n=4,
            table=table,
            nonce=bytes(24),
            sealed=manifest.seal_private(private, key, bytes(24), owner.public_key, backup),
        )
        .signed_by(owner)
        .to_bytes_checked()
    )


def opener(served: dict[NodeId, bytes | None], asked: list[NodeId], nursery: trio.Nursery):  # type: ignore[no-untyped-def]
    """Each holder serves `served[node]` as the owner's manifest of BACKUP (None: not held),
    from a task in `nursery`."""

    @asynccontextmanager
    async def open_stream(node: NodeId) -> AsyncIterator[ChannelEnd]:
        asked.append(node)
        store = MemoryStore()
        if served[node] is not None:
            store.manifests[OWNER.node_id.raw, BACKUP] = served[node]  # type: ignore[assignment]
        client, server = channel_pair()

        async def serve() -> None:
            await HolderService(store).serve(server, OWNER.node_id)
            await server.aclose()

        nursery.start_soon(serve)
        try:
            yield client
        finally:
            await client.aclose()

    return open_stream


async def announce_all(dht: RecordBoard) -> None:
    for index, holder in enumerate(HOLDERS):
        await records(dht, holder).announce(OWNER.node_id.raw, BACKUP, [index])


async def test_adopts_from_the_first_holder_that_serves_the_true_manifest() -> None:
    dht = RecordBoard(lambda: NOW)
    await records(dht).publish_backups([BACKUP], NOW + 100)
    await announce_all(dht)
    served: dict[NodeId, bytes | None] = {
        HOLDERS[0].node_id: b"\x93garbage",  # not a manifest
        HOLDERS[1].node_id: signed_manifest(owner=OTHER),  # another owner's
        HOLDERS[2].node_id: None,  # does not hold it
        HOLDERS[3].node_id: signed_manifest(),
    }
    asked: list[NodeId] = []
    async with open_database(None) as db, trio.open_nursery() as nursery:
        catalog = Catalog(db)
        adopted = await adopt_backups(
            records=records(dht),
            identity=OWNER,
            secret=SECRET,
            catalog=catalog,
            open_stream=opener(served, asked, nursery),
        )
        assert adopted == [BACKUP]
        assert sorted(asked) == sorted(h.node_id for h in HOLDERS)
        row = await catalog.get(BACKUP)
        assert row is not None
        assert (row.name, row.source, row.k, row.n, row.happy) == (
            "photos",
            "/home/me/photos",
            2,
            4,
            3,
        )
        assert await catalog.holders(BACKUP) == {i: h.node_id.raw for i, h in enumerate(HOLDERS)}
        assert len(await catalog.known(2, 4)) == 3  # its segments: a later backup reuses them
        # Known now: nothing is fetched again.
        asked.clear()
        again = await adopt_backups(
            records=records(dht),
            identity=OWNER,
            secret=SECRET,
            catalog=catalog,
            open_stream=opener(served, asked, nursery),
        )
        assert again == []
        assert asked == []


async def test_a_backup_no_holder_serves_truly_is_left_for_later() -> None:
    dht = RecordBoard(lambda: NOW)
    await records(dht).publish_backups([BACKUP], NOW + 100)
    await announce_all(dht)
    wrong_secret = signed_manifest(secret=bytes(32))  # the owner's signature, not its secret
    served: dict[NodeId, bytes | None] = dict.fromkeys((h.node_id for h in HOLDERS), wrong_secret)
    async with open_database(None) as db, trio.open_nursery() as nursery:
        catalog = Catalog(db)
        adopt = adopt_backups(
            records=records(dht),
            identity=OWNER,
            secret=SECRET,
            catalog=catalog,
            open_stream=opener(served, [], nursery),
        )
        assert await adopt == []
        assert await catalog.backups() == []
        # No record at all: nothing to adopt.
        empty = adopt_backups(
            records=records(RecordBoard(lambda: NOW)),
            identity=OWNER,
            secret=SECRET,
            catalog=catalog,
            open_stream=opener(served, [], nursery),
        )
        assert await empty == []


async def test_the_list_is_published_newest_first_and_taken_back_only_when_said_before() -> None:
    dht = RecordBoard(lambda: NOW)
    mine = records(dht)
    async with open_database(None) as db:
        catalog = Catalog(db)
        await publish_list(mine, catalog, NOW)
        assert dht.records == {}  # nothing to say
        for i, created in enumerate((NOW - 50, NOW - 20)):
            backup = bytes([i]) * 16
            await catalog.begin(
                backup, name="b", source="/s", created=created, k=2, n=4, happy=3,
                lease_expires=NOW + 1000 * (i + 1),
            )  # fmt: skip
            await catalog.complete(backup, b"m", 10)
        await publish_list(mine, catalog, NOW)
        assert await mine.backup_ids(OWNER.node_id) == [bytes([1]) * 16, bytes([0]) * 16]
        (record,) = next(iter(dht.records.values())).values()
        assert record.expires_at == int(NOW + 2000)
        for backup in (bytes([0]) * 16, bytes([1]) * 16):
            await catalog.remove(backup)
        await publish_list(mine, catalog, NOW)
        assert await mine.backup_ids(OWNER.node_id) == []
        dht.broken = True
        await publish_list(mine, catalog, NOW)  # logged, not raised
        await publish_list(None, catalog, NOW)


async def test_the_list_lives_at_most_the_record_types_cap() -> None:
    dht = RecordBoard(lambda: NOW)
    await records(dht).publish_backups([BACKUP], NOW + 10 * BACKUPS_MAX_TTL)
    (record,) = next(iter(dht.records.values())).values()
    assert record.expires_at == int(NOW + BACKUPS_MAX_TTL)
    assert await records(dht).backup_ids(OTHER.node_id) is None


async def test_holders_merge_the_placements_with_valid_provider_records() -> None:
    dht = RecordBoard(lambda: NOW)
    await announce_all(dht)
    key = home_key(OWNER.node_id, BACKUP)
    # A malformed value under the key (any member may publish there): skipped.
    bad = sign_record(OTHER, PROVIDER, key, seq=1, expires_at=int(NOW) + 60, value=b"\x02\x01")
    await dht.put(bad)
    async with open_database(None) as db:
        catalog = Catalog(db)
        await catalog.record_holders(BACKUP, {0: OTHER.node_id.raw})
        found = await all_holders(catalog, records(dht), OWNER.node_id, BACKUP)
        assert found == {
            0: [OTHER.node_id.raw, HOLDERS[0].node_id.raw],
            **{i: [h.node_id.raw] for i, h in enumerate(HOLDERS) if i},
        }
        assert await all_holders(catalog, None, OWNER.node_id, BACKUP) == {0: [OTHER.node_id.raw]}
        dht.broken = True
        assert await all_holders(catalog, records(dht), OWNER.node_id, BACKUP) == {
            0: [OTHER.node_id.raw]
        }


@pytest.mark.parametrize("indices", [[], [1, 1], [300]])
async def test_bad_share_indices_are_refused_before_signing(indices: list[int]) -> None:
    with pytest.raises(ValueError, match="share ind"):
        await records(RecordBoard(lambda: NOW), HOLDERS[0]).announce(
            OWNER.node_id.raw, BACKUP, indices
        )
