"""The repair driver for one home (plexinode.shards.repairing), against holder services over
in-memory channels: what it places, and each way it stops or goes around a bad holder."""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator

import pytest
import trio

from plexinode.errors import PlexinodeError
from plexinode.identity import Identity, NodeId
from plexinode.shards import derive, manifest, pipeline
from plexinode.shards.holder_service import HolderService
from plexinode.shards.manifest import Private, SegmentTable
from plexinode.shards.placement import Candidate
from plexinode.shards.repair_plan import elect_repairer
from plexinode.shards.repairing import Repairer
from plexinode.shards.store import ShareNotHeld
from plexinode.testing.channels import channel_pair
from plexinode.testing.memory_store import MemoryStore

OWNER = Identity.from_seed(bytes(32))
SECRET = bytes(range(32))
HOME = b"H" * 16
NOW = 1_000.0
LEASE = 5_000.0


def build(segs: list[pipeline.EncodedSegment], forge: int | None = None) -> bytes:
    table = SegmentTable(HOME, 4)
    for s in segs:
        roots = list(s.roots)
        if forge is not None:
            roots[forge] = bytes(32)
        table.add(s.identity, HOME, s.length, len(s.blocks[0]), roots)
    private = Private.of("n", "s", sum(s.length for s in segs), 0, table.lengths)
    key = derive.manifest_key(SECRET, HOME)
    return (
        manifest.build(
            owner=OWNER.public_key,
            backup_id=HOME,
            created=1.0,
            lease_expires=LEASE,
            k=2,
            n=4,
            table=table,
            nonce=bytes(24),
            sealed=manifest.seal_private(private, key, bytes(24), OWNER.public_key, HOME),
        )
        .signed_by(OWNER)
        .to_bytes_checked()
    )


class OwnStore:
    """What the repairer reads of its own node's store."""

    def __init__(self, data: bytes | None, blocks: dict[bytes, bytes], index: int) -> None:
        self.data = data
        self.blocks = blocks
        self.index = index
        self.lease = LEASE

    async def manifest(self, owner: bytes, backup_id: bytes) -> bytes | None:
        return self.data

    async def index_held(self, owner: bytes, home: bytes) -> int | None:
        return self.index

    async def leases(self, owner: bytes) -> list[tuple[bytes, int, bool]]:
        return [(b"X" * 16, 1, False)] + ([(HOME, int(self.lease), True)] if self.lease else [])

    async def read_block(self, owner: bytes, segment: bytes, index: int) -> bytes:
        if segment not in self.blocks:
            raise ShareNotHeld("gone")
        return self.blocks[segment]


class Net:
    """Holder services by node ID, reached over channel pairs from the repairer."""

    def __init__(self, nursery: trio.Nursery, me: NodeId) -> None:
        self.nursery = nursery
        self.me = me
        self.services: dict[NodeId, HolderService] = {}
        self.broken: set[NodeId] = set()

    @contextlib.asynccontextmanager
    async def open(self, node: NodeId) -> AsyncIterator[trio.abc.Channel[bytes]]:
        if node not in self.services or node in self.broken:
            raise trio.BrokenResourceError("unreachable")
        client, server = channel_pair()

        async def serve() -> None:
            await self.services[node].serve(server, self.me)
            await server.aclose()

        self.nursery.start_soon(serve)
        try:
            yield client
        finally:
            await client.aclose()


class Scene:
    """Owner O's home H on holders A (this node: index 0), B (1), C (2), D (3); members E, F
    hold nothing. Node IDs are assigned so that A is the elected repairer."""

    def __init__(self, nursery: trio.Nursery, *, forge: int | None = None) -> None:
        rng = random.Random(4)
        self.segs = [pipeline.encode_segment(SECRET, rng.randbytes(50_000), 2, 4) for _ in range(3)]
        self.data = build(self.segs, forge)
        ids = [NodeId(bytes([i]) * 32) for i in range(1, 7)]
        holders = sorted(ids[:3], key=lambda n: n != elect_repairer(HOME, ids[:3], set(ids[:3])))
        self.a, self.b, self.c = holders
        self.d, self.e, self.f = ids[3:]
        self.net = Net(nursery, self.a)
        self.stores: dict[NodeId, MemoryStore] = {}
        owner = OWNER.node_id.raw
        for index, node in ((1, self.b), (2, self.c), (None, self.e), (None, self.f)):
            store = self.stores[node] = MemoryStore()
            if index is not None:
                for s in self.segs:
                    store.blocks[owner, s.identity, index] = s.blocks[index]
                    store.homes[owner, s.identity] = HOME
            self.net.services[node] = HolderService(store, wall_clock=lambda: NOW)
        self.own = OwnStore(self.data, {s.identity: s.blocks[0] for s in self.segs}, 0)
        self.records: dict[int, list[NodeId]] | None = {1: [self.b], 2: [self.c], 3: [self.d]}
        self.released: list[bytes] = []
        self.local_claim: bytes | None = None
        self.paced = 0

    async def holders(self, owner: NodeId, home: bytes) -> dict[int, list[NodeId]]:
        if self.records is None:
            raise PlexinodeError("no DHT")
        return self.records

    async def pace(self, size: int) -> None:
        self.paced += size

    def repairer(self, me: NodeId | None = None) -> Repairer:
        return Repairer(
            node_id=me or self.a,
            store=self.own,  # type: ignore[arg-type]
            holders=self.holders,
            claim=lambda o, h, c: self.local_claim,
            release=lambda o, h, c: self.released.append(c),
            open_stream=self.net.open,
            pace=self.pace,
        )

    def live(self, *extra: NodeId) -> tuple[Candidate, ...]:
        nodes = (self.a, self.b, self.c, self.e, self.f, *extra)
        return tuple(Candidate(n, f"10.0.0.{n.raw[0]}") for n in nodes)

    async def repair(self, me: NodeId | None = None, *, gone: frozenset[NodeId] | None = None):
        gone = frozenset({self.d}) if gone is None else gone
        return await self.repairer(me).repair(OWNER.node_id.raw, HOME, self.live(), gone)

    def placed(self, node: NodeId, index: int) -> list[bytes]:
        owner = OWNER.node_id.raw
        return [
            self.stores[node].blocks[owner, s.identity, index]
            for s in self.segs
            if (owner, s.identity, index) in self.stores[node].blocks
        ]


async def test_a_lost_share_is_regenerated_and_placed_on_a_new_member() -> None:
    async with trio.open_nursery() as nursery:
        scene = Scene(nursery)
        outcome = await scene.repair()
        assert outcome.state == "repaired"
        ((index, node),) = outcome.placed.items()
        assert index == 3
        assert node in (scene.e, scene.f)
        assert scene.placed(node, 3) == [s.blocks[3] for s in scene.segs]
        assert scene.stores[node].leases[OWNER.node_id.raw, HOME] == LEASE
        assert outcome.bytes_read == sum(len(s.blocks[1]) for s in scene.segs)  # one remote
        assert outcome.bytes_sent == sum(len(s.blocks[3]) for s in scene.segs)
        assert scene.paced == outcome.bytes_read + outcome.bytes_sent
        assert scene.released == [scene.a.raw]
        assert scene.net.services[node].stats["repairs_taken"] == 1
        # Done again with the new holder announced: healthy.
        assert scene.records is not None
        scene.records[3] = [node]
        assert (await scene.repair()).state == "healthy"
        nursery.cancel_scope.cancel()


async def test_only_the_elected_repairer_repairs() -> None:
    async with trio.open_nursery() as nursery:
        scene = Scene(nursery)
        scene.own.index = 1
        assert (await scene.repair(scene.b)).state == "not_elected"
        scene.own.index = 0
        assert (await scene.repair(gone=frozenset())).state == "healthy"  # D waiting
        nursery.cancel_scope.cancel()


async def test_no_manifest_or_a_damaged_one_stops_it() -> None:
    async with trio.open_nursery() as nursery:
        scene = Scene(nursery)
        scene.own.data = None
        assert (await scene.repair()).state == "no_manifest"
        scene.own.data = b"\x00garbage"
        assert (await scene.repair()).state == "no_manifest"
        nursery.cancel_scope.cancel()


async def test_a_holder_held_gone_that_answers_means_a_stale_view() -> None:
    async with trio.open_nursery() as nursery:
        scene = Scene(nursery)
        scene.net.services[scene.d] = HolderService(MemoryStore())
        assert (await scene.repair()).state == "stale_view"
        nursery.cancel_scope.cancel()


async def test_without_the_grants_of_most_holders_nothing_moves() -> None:
    async with trio.open_nursery() as nursery:
        scene = Scene(nursery)
        scene.local_claim = b"other"
        assert (await scene.repair()).state == "not_claimed"
        assert scene.released == []
        scene.local_claim = None
        for node in (scene.b, scene.c):
            scene.net.services[node].claim(OWNER.node_id.raw, HOME, b"other")
        assert (await scene.repair()).state == "not_claimed"
        assert scene.released == [scene.a.raw]
        assert not scene.placed(scene.e, 3)
        assert not scene.placed(scene.f, 3)
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("case", ["corrupt", "own block lost"])
async def test_a_corrupt_or_missing_source_block_is_gone_around(case: str) -> None:
    async with trio.open_nursery() as nursery:
        scene = Scene(nursery)
        owner = OWNER.node_id.raw
        seg = scene.segs[1].identity
        if case == "corrupt":  # B is then not asked again
            scene.stores[scene.b].blocks[owner, seg, 1] = b"x" * len(scene.segs[1].blocks[1])
        else:
            del scene.own.blocks[seg]
        outcome = await scene.repair()
        assert outcome.state == "repaired"
        node = outcome.placed[3]
        assert scene.placed(node, 3) == [s.blocks[3] for s in scene.segs]
        nursery.cancel_scope.cancel()


async def test_fewer_than_k_readable_blocks_leave_it_unreadable() -> None:
    async with trio.open_nursery() as nursery:
        scene = Scene(nursery)
        scene.net.broken.add(scene.b)
        scene.stores[scene.c].blocks.clear()  # answers not_held
        assert (await scene.repair()).state == "unreadable"
        scene.records = None  # the DHT cannot be asked: only this node's share is known
        assert (await scene.repair()).state == "unreadable"
        scene.own.index = None  # type: ignore[assignment]
        assert (await scene.repair()).state == "not_elected"  # nothing known of the home
        nursery.cancel_scope.cancel()


async def test_a_repairer_paces_nothing_unless_asked() -> None:
    async with trio.open_nursery() as nursery:
        scene = Scene(nursery)
        repairer = scene.repairer()
        repairer.pace = Repairer(
            node_id=scene.a,
            store=scene.own,  # type: ignore[arg-type]
            holders=scene.holders,
            claim=lambda o, h, c: None,
            release=lambda o, h, c: None,
            open_stream=scene.net.open,
        ).pace
        outcome = await repairer.repair(OWNER.node_id.raw, HOME, scene.live(), frozenset({scene.d}))
        assert outcome.state == "repaired"
        assert scene.paced == 0
        nursery.cancel_scope.cancel()


async def test_regenerated_blocks_that_do_not_match_the_manifest_are_not_sent() -> None:
    async with trio.open_nursery() as nursery:
        scene = Scene(nursery, forge=3)
        assert (await scene.repair()).state == "unreadable"
        assert not scene.placed(scene.e, 3)
        assert not scene.placed(scene.f, 3)
        nursery.cancel_scope.cancel()


class Refusing(MemoryStore):
    async def put(self, blocks):  # type: ignore[no-untyped-def]
        return [], [b.segment for b in blocks], "disk_full"


class Forgetful(MemoryStore):
    async def holdings(self, owner: bytes, home: bytes) -> list[tuple[bytes, int]]:
        return []


@pytest.mark.parametrize("case", ["no room", "put refused", "not whole", "lease gone"])
async def test_a_share_no_member_takes_whole_is_partial(case: str) -> None:
    async with trio.open_nursery() as nursery:
        scene = Scene(nursery)
        kind = {"no room": MemoryStore, "put refused": Refusing, "not whole": Forgetful}
        for node in (scene.e, scene.f):
            store = kind.get(case, MemoryStore)(quota=10 if case == "no room" else 1 << 30)
            scene.stores[node] = store
            scene.net.services[node] = HolderService(store, wall_clock=lambda: NOW)
        if case == "lease gone":
            scene.own.lease = 0
        outcome = await scene.repair()
        assert outcome.state == "partial"
        assert outcome.placed == {}
        nursery.cancel_scope.cancel()


async def test_a_live_member_naming_a_bogus_index_does_not_stop_the_repair() -> None:
    async with trio.open_nursery() as nursery:
        scene = Scene(nursery)
        assert scene.records is not None
        scene.records[200] = [scene.e]  # a forged provider record: ignored, never asked
        assert (await scene.repair()).state == "repaired"
        nursery.cancel_scope.cancel()
