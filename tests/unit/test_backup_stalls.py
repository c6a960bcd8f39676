"""The owner's backup service against holders that stall, are down, or prove the wrong thing:
holders served by the holder service over channel pairs (no network), MockClock time."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from plexinode.identity import NodeId
from plexinode.net.address import Address
from plexinode.shards import deadlines
from plexinode.shards.backups import BackupService
from plexinode.shards.catalog import Catalog
from plexinode.shards.dht_records import BackupRecords
from plexinode.shards.holder_service import HolderService
from plexinode.shards.messages import Reason, ShardListing, ShardOffer, ShardReply
from plexinode.shards.placing import Peer
from plexinode.shards.verify_plan import Outcome
from plexinode.storage.database import open_database
from plexinode.testing.channels import ChannelEnd, channel_pair
from plexinode.testing.memory_store import MemoryStore
from plexinode.testing.nodes import seeded_identity
from plexinode.testing.record_board import RecordBoard
from plexinode.wire import envelope
from plexinode.wire.codec import FRAME_LIMITS

OWNER = seeded_identity(0)
SECRET = bytes(range(32))


class Flipped:
    """A store that serves every block with its bytes flipped (wrong bytes)."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)

    async def read_block(self, owner: bytes, segment: bytes, index: int) -> bytes | None:
        block = await self.store.read_block(owner, segment, index)
        return None if block is None else bytes(b ^ 0xFF for b in block)


class Elsewhere(Flipped):
    """A store that serves, for any segment, the block of another segment it holds (cut or
    repeated to the size of the one asked for, so that the leaves asked for exist)."""

    async def read_block(self, owner: bytes, segment: bytes, index: int) -> bytes | None:
        own = await self.store.read_block(owner, segment, index)
        others = sorted(k for k in self.store.blocks if k[0] == owner and k[1] != segment)
        if own is None or not others:
            return None
        other = self.store.blocks[others[0]]
        return (other * (len(own) // len(other) + 1))[: len(own)]


class Holders:
    """Holders by node ID, each in one of the modes: "ok", "stall" (reads, never answers),
    "stall_after_offer" (takes the offer, then never answers), "down" (cannot be reached),
    "flipped", "elsewhere" (see above), "garbled" (`garble`), "tiring" (`Tiring`)."""

    def __init__(self, nursery: trio.Nursery, count: int) -> None:
        self.nursery = nursery
        self.ids = [seeded_identity(i + 1).node_id for i in range(count)]
        self.stores = {node: MemoryStore() for node in self.ids}
        self.mode = dict.fromkeys(self.ids, "ok")
        self.opened: list[NodeId] = []

    def peers(self) -> Sequence[Peer]:
        return [Peer(node, Address(f"10.0.0.{i + 1}", 7420)) for i, node in enumerate(self.ids)]

    async def locate(self, node: NodeId) -> Address:
        return Address(f"10.0.0.{self.ids.index(node) + 1}", 7420)

    async def open(self, address: Address, protocol: str, *, node_id: NodeId) -> ChannelEnd:
        mode = self.mode[node_id]
        if mode == "down":
            raise OSError(f"{address}: connection refused")
        self.opened.append(node_id)
        client, server = channel_pair()
        store = self.stores[node_id]
        if mode.startswith("stall"):
            self.nursery.start_soon(stall, server, mode == "stall_after_offer")
        elif mode == "garbled":
            self.nursery.start_soon(garble, server)
        elif mode == "tiring":
            self.nursery.start_soon(HolderService(store).serve, Tiring(server), OWNER.node_id)
        else:
            wrapped = {"ok": store, "flipped": Flipped(store), "elsewhere": Elsewhere(store)}
            service = HolderService(wrapped[mode])  # type: ignore[arg-type]
            self.nursery.start_soon(service.serve, server, OWNER.node_id)
        return client


async def stall(stream: ChannelEnd, take_offer: bool) -> None:
    try:
        while True:
            message = envelope.decode(await stream.receive(), FRAME_LIMITS).message
            if take_offer and isinstance(message, ShardOffer):
                await stream.send(envelope.encode(ShardReply(True, "", "")))
    except (trio.EndOfChannel, trio.ClosedResourceError):
        pass


class Tiring(trio.abc.Channel[bytes]):
    """A holder's end that takes one request, then nothing more (its holder then stalls)."""

    def __init__(self, end: ChannelEnd) -> None:
        self.end, self.taken = end, 0

    async def send(self, value: bytes) -> None:
        await self.end.send(value)

    async def receive(self) -> bytes:
        self.taken += 1
        if self.taken > 1:
            await trio.sleep_forever()
        return await self.end.receive()

    async def aclose(self) -> None:
        await self.end.aclose()


async def garble(stream: ChannelEnd) -> None:
    """Answers every request with a listing: out of the protocol."""
    try:
        while True:
            await stream.receive()
            await stream.send(envelope.encode(ShardListing(())))
    except (trio.EndOfChannel, trio.ClosedResourceError):
        pass


def make_tree(root: Path) -> None:
    rng = random.Random(3)
    root.mkdir()
    for i in range(6):
        (root / f"f{i}").write_bytes(rng.randbytes(rng.randrange(20_000, 200_000)))


def tree(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.iterdir())}


@asynccontextmanager
async def service(count: int) -> AsyncIterator[tuple[BackupService, Holders]]:
    async with open_database(None) as db, trio.open_nursery() as nursery:
        holders = Holders(nursery, count)
        yield (
            BackupService(
                identity=OWNER,
                secret=SECRET,
                catalog=Catalog(db),
                streams=holders,  # type: ignore[arg-type]
                peers=holders.peers,
                locate=holders.locate,
                wall_clock=lambda: 1_000_000.0 + trio.current_time(),
            ),
            holders,
        )
        nursery.cancel_scope.cancel()


async def test_a_stalled_holder_neither_hangs_a_backup_nor_its_restore(
    tmp_path: Path, autojump_clock
) -> None:
    autojump_clock.autojump_threshold = 0.5  # the database and the pipeline use threads
    make_tree(tmp_path / "src")
    async with service(4) as (backups, holders):
        staller = holders.ids[2]
        holders.mode[staller] = "stall_after_offer"
        created = await backups.create(tmp_path / "src", k=2, n=4, happy=3, segment_bytes=64 << 10)
        placed = await backups.catalog.holders(created.backup_id)
        lost = created.outcome.lost_indices
        assert [NodeId(placed[i]) for i in lost] == [staller]  # it never acknowledged
        assert created.outcome.manifest.segment_count > 4
        lost_at = trio.current_time()
        assert lost_at >= deadlines.ANSWER_SECONDS  # it was waited for, then dropped

        # Restore: the holder that stalled still stalls, and one more holder stalls now; the
        # two left are k. Each stalled holder costs one deadline, not one per block.
        # The holder of the lowest share index left serves the index's segment, then stalls
        # while it is asked for four data segments at once: after its first deadline, the
        # requests queued behind it fail at once.
        others = [NodeId(placed[i]) for i in sorted(placed) if NodeId(placed[i]) != staller]
        holders.mode[others[0]] = "tiring"
        holders.opened.clear()
        await backups.restore(created.backup_id, tmp_path / "out")
        assert tree(tmp_path / "out") == tree(tmp_path / "src")
        assert holders.opened.count(others[0]) <= 1

        # With a third holder down, fewer than k are left: the restore names the segments.
        holders.mode[others[1]] = "down"
        with pytest.raises(Exception, match="fewer than k shares reachable"):
            await backups.restore(created.backup_id, tmp_path / "out2")
        assert not (tmp_path / "out2").exists()


async def test_verify_counts_what_each_holder_proves(tmp_path: Path, autojump_clock) -> None:
    autojump_clock.autojump_threshold = 0.5
    make_tree(tmp_path / "src")
    async with service(5) as (backups, holders):
        created = await backups.create(tmp_path / "src", k=2, n=4, segment_bytes=64 << 10)
        backup_id = created.backup_id
        report = await backups.verify(backup_id)
        assert (report.healthy, report.min_available_shares, report.k, report.n) == (
            True,
            4,
            2,
            4,
        )
        assert all(h.outcome == Outcome.PASSED for h in report.holders)
        assert {NodeId(h.node) for h in report.holders} == set(created.holders)
        assert all(h.challenges == h.passed == 8 for h in report.holders)

        by_index = {i: NodeId.parse(label) for i, label in created.outcome.holders.items()}
        for mode, outcome in [
            ("down", Outcome.UNREACHABLE),
            ("stall", Outcome.UNREACHABLE),
            ("flipped", Outcome.WRONG),
            ("elsewhere", Outcome.WRONG),
            ("garbled", Outcome.WRONG),
        ]:
            holders.mode[by_index[1]] = mode
            report = await backups.verify(backup_id)
            assert (report.healthy, report.min_available_shares) == (False, 3), mode
            assert report.restorable
            results = {NodeId(h.node): h for h in report.holders}
            assert results[by_index[1]].outcome == outcome, mode
            assert results[by_index[1]].passed == 0
            assert all(r.outcome == Outcome.PASSED for n, r in results.items() if n != by_index[1])
        holders.mode[by_index[1]] = "ok"

        # A holder that lost its shares says so: counted missing, as not held.
        store = holders.stores[by_index[3]]
        store.blocks.clear()
        report = await backups.verify(backup_id)
        results = {NodeId(h.node): h for h in report.holders}
        assert results[by_index[3]].outcome == Outcome.NOT_HELD
        assert results[by_index[3]].detail == Reason.NOT_HELD
        assert report.min_available_shares == 3

        # Three of four gone: below k, not restorable.
        holders.mode[by_index[0]] = holders.mode[by_index[1]] = "down"
        report = await backups.verify(backup_id)
        assert (report.min_available_shares, report.restorable) == (1, False)


async def test_a_corrupt_holder_of_a_share_gives_way_to_its_other_holder(
    tmp_path: Path, autojump_clock
) -> None:
    """A share index held twice (a repair placed it again while its first holder lies): the
    liar's corrupt block fails the holder, not the index, and the other copy is used."""
    autojump_clock.autojump_threshold = 0.5  # the database and the pipeline use threads
    make_tree(tmp_path / "src")
    async with service(5) as (backups, holders):
        created = await backups.create(tmp_path / "src", k=2, n=4, segment_bytes=64 << 10)
        placed = {
            i: NodeId(h) for i, h in (await backups.catalog.holders(created.backup_id)).items()
        }
        (spare,) = [node for node in holders.ids if node not in placed.values()]
        owner = OWNER.node_id.raw
        for key, block in list(holders.stores[placed[0]].blocks.items()):
            if key[0] == owner and key[2] == 0:
                holders.stores[spare].blocks[key] = block

        def now() -> float:
            return 1_000_000.0 + trio.current_time()

        board = RecordBoard(now)
        spare_identity = seeded_identity(holders.ids.index(spare) + 1)
        announcing = BackupRecords(board, spare_identity, wall_clock=now)
        await announcing.announce(owner, created.backup_id, [0])
        backups.records = BackupRecords(board, OWNER, wall_clock=now)
        # The plan ranks unmeasured holders alike, then by node ID: the liar is asked first.
        liar = min(placed[0], spare, key=lambda node: node.raw)
        holders.mode[liar] = "flipped"
        holders.mode[placed[2]] = holders.mode[placed[3]] = "down"  # k = 2 left: 0 and 1
        await backups.restore(created.backup_id, tmp_path / "out")
        assert tree(tmp_path / "out") == tree(tmp_path / "src")
