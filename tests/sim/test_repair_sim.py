"""Self-repair among nodes on the in-memory network: a holder killed is replaced after the
restart grace, a holder that stops and comes back in time causes no repair traffic, and two
repairers whose views differ do not double up shares."""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from pathlib import Path

import trio

from plexinode.identity import NodeId
from plexinode.membership.members import State
from plexinode.net.address import Address
from plexinode.node import Node
from plexinode.shards.placement import Candidate
from plexinode.shards.repair_plan import elect_repairer
from plexinode.testing.network import MemoryNetwork, open_memory_network
from plexinode.testing.nodes import FAST, seeded_identity

GRACE = 10.0
SETTINGS = replace(FAST, membership=replace(FAST.membership, restart_grace=GRACE))


def make_tree(root: Path) -> dict[str, bytes]:
    rng = random.Random(5)
    root.mkdir(parents=True)
    files = {}
    for i in range(4):
        data = rng.randbytes(rng.randrange(1, 300_000))
        (root / f"f{i}").write_bytes(data)
        files[f"f{i}"] = data
    return files


def tree(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@dataclass
class Cluster:
    net: MemoryNetwork
    tmp: Path
    nursery: trio.Nursery
    hosts: list[str] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)
    scopes: list[trio.CancelScope] = field(default_factory=list)

    def make(self, index: int) -> Node:
        data_dir = self.tmp / f"node{index}"
        data_dir.mkdir(mode=0o700, exist_ok=True)
        first = Address(self.hosts[0 if index else 1], FAST.listen.port)
        return Node(
            seeded_identity(index),
            replace(SETTINGS, bootstrap=(first,)) if index else SETTINGS,
            self.net.transport(self.hosts[index]),
            data_dir=data_dir,
            wall_clock=lambda: 1_000_000.0 + trio.current_time(),
        )

    async def start(self, index: int) -> None:
        node = self.make(index)
        scope = trio.CancelScope()

        async def run(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            with scope:
                await node.run(task_status=task_status)

        await self.nursery.start(run)
        if index < len(self.nodes):
            self.nodes[index], self.scopes[index] = node, scope
        else:
            self.nodes.append(node)
            self.scopes.append(scope)

    def kill(self, index: int) -> None:
        self.scopes[index].cancel()
        self.net.crash(self.hosts[index])

    def alive(self) -> list[int]:
        return [i for i, s in enumerate(self.scopes) if not s.cancel_called]

    def index_of(self, node_id: NodeId) -> int:
        return [n.node_id for n in self.nodes].index(node_id)

    async def holders(self, backup_id: bytes) -> dict[int, list[int]]:
        """Share index -> the live nodes whose provider records say they hold it."""
        owner = self.nodes[0]
        found = await owner.backups.records.holders(owner.node_id, backup_id)  # type: ignore[union-attr]
        live = set(self.alive())
        return {
            index: sorted(i for i in map(self.index_of, nodes) if i in live)
            for index, nodes in sorted(found.items())
        }

    async def counter(self, name: str) -> int:
        return sum([(await self.nodes[i].status())["shards"].get(name, 0) for i in self.alive()])


async def cluster_with_backup(net: MemoryNetwork, tmp: Path, nursery: trio.Nursery, count: int):
    cluster = Cluster(net, tmp, nursery, [net.new_host() for _ in range(count)])
    for i in range(count):
        await cluster.start(i)
    owner = cluster.nodes[0]
    with trio.fail_after(120):
        while len([m for m in owner.membership.members() if m.state is State.ALIVE]) < count:  # noqa: ASYNC110
            await trio.sleep(0.5)
    created = await owner.backups.create(tmp / "src", k=2, n=4, name="repair")
    await trio.sleep(5)  # the holders announce what they hold
    return cluster, created


async def wait_spread(cluster: Cluster, backup_id: bytes, n: int, limit: float) -> dict:
    with trio.fail_after(limit):
        while True:
            holders = await cluster.holders(backup_id)
            placed = [nodes for nodes in holders.values() if nodes]
            distinct = {node for nodes in placed for node in nodes}
            if len(placed) == n and len(distinct) == n:
                return holders
            await trio.sleep(5)


async def test_a_killed_holder_is_replaced_after_the_grace_and_restore_survives_more_losses(
    tmp_path: Path, autojump_clock
) -> None:
    autojump_clock.autojump_threshold = 0.5  # file-backed databases (worker threads)
    files = make_tree(tmp_path / "src")
    async with open_memory_network(seed=31) as net, trio.open_nursery() as nursery:
        cluster, created = await cluster_with_backup(net, tmp_path, nursery, 8)
        before = await cluster.holders(created.backup_id)
        assert sorted(len(v) for v in before.values()) == [1, 1, 1, 1]
        victim = before[0][0]
        cluster.kill(victim)
        killed_at = trio.current_time()
        holders = await wait_spread(cluster, created.backup_id, 4, 300)
        assert trio.current_time() - killed_at >= GRACE  # not before the grace
        assert victim not in {node for nodes in holders.values() for node in nodes}
        assert await cluster.counter("repair_shares_placed") == 1
        assert await cluster.counter("repairs_taken") == 1
        # Repair bytes per lost share: k blocks of each segment, the repairer's own read
        # locally, k - 1 fetched and one sent.
        built = await cluster.nodes[0].backups.manifest(created.backup_id)
        share = sum(info.block_size for info in built.segments())
        assert await cluster.counter("repair_bytes") == built.k * share
        status = await cluster.nodes[0].status()
        assert status["shards"]["repair_backlog"] == 0

        # Two more holders die (the owner's lease renewal reaches the new one too): the two
        # left restore the backup.
        assert await cluster.nodes[0].backups.renew() == 4
        for index in (holders[1][0], holders[2][0]):
            cluster.kill(index)
        await cluster.nodes[0].backups.restore(created.backup_id, tmp_path / "out")
        assert tree(tmp_path / "out") == files
        nursery.cancel_scope.cancel()


async def test_a_holder_back_within_the_grace_causes_no_repair_traffic(
    tmp_path: Path, autojump_clock
) -> None:
    autojump_clock.autojump_threshold = 0.5
    make_tree(tmp_path / "src")
    async with open_memory_network(seed=32) as net, trio.open_nursery() as nursery:
        cluster, created = await cluster_with_backup(net, tmp_path, nursery, 8)
        before = await cluster.holders(created.backup_id)
        stopping = before[1][0]
        cluster.nodes[stopping].stop()  # a planned stop: members list it "stopped"
        await trio.sleep(GRACE / 2)
        await cluster.start(stopping)  # back in time
        await trio.sleep(2 * GRACE)
        assert await cluster.counter("repair_bytes") == 0
        assert await cluster.counter("repair_shares_placed") == 0
        assert await cluster.holders(created.backup_id) == before
        nursery.cancel_scope.cancel()


async def test_two_repairers_with_split_views_do_not_double_up_shares(
    tmp_path: Path, autojump_clock
) -> None:
    autojump_clock.autojump_threshold = 0.5
    make_tree(tmp_path / "src")
    async with open_memory_network(seed=33) as net, trio.open_nursery() as nursery:
        cluster, created = await cluster_with_backup(net, tmp_path, nursery, 8)
        before = await cluster.holders(created.backup_id)
        victim = before[3][0]
        cluster.kill(victim)
        survivors = [nodes[0] for index, nodes in before.items() if index != 3]
        dead = cluster.nodes[victim].node_id
        # Each of two survivors believes itself the repairer: the second thinks the first is
        # dead too. Both start at once, before membership has even noticed the death.
        ids = [cluster.nodes[i].node_id for i in survivors]
        first = cluster.index_of(elect_repairer(created.backup_id, ids, set(ids)))  # type: ignore[arg-type]
        rest = [node for node in ids if node != cluster.nodes[first].node_id]
        second = cluster.index_of(elect_repairer(created.backup_id, rest, set(rest)))  # type: ignore[arg-type]

        def view(gone: set[int]) -> tuple[tuple[Candidate, ...], frozenset[NodeId]]:
            live = tuple(
                Candidate(cluster.nodes[i].node_id, cluster.hosts[i])
                for i in cluster.alive()
                if i not in gone
            )
            return live, frozenset({dead, *(cluster.nodes[i].node_id for i in gone)})

        outcomes = {}

        async def repair(index: int, gone: set[int]) -> None:
            repairs = cluster.nodes[index]._shards.repairs  # type: ignore[union-attr]
            owner = cluster.nodes[0].node_id.raw
            live, gone_ids = view(gone)
            outcome = await repairs.repairer.repair(owner, created.backup_id, live, gone_ids)
            outcomes[index] = outcome.state

        async with trio.open_nursery() as both:
            both.start_soon(repair, first, set())
            both.start_soon(repair, second, {first})
        states = sorted(outcomes.values())
        assert states == ["repaired", "stale_view"], outcomes
        await trio.sleep(5)
        holders = await cluster.holders(created.backup_id)
        assert all(len(nodes) <= 1 for nodes in holders.values()), holders
        nursery.cancel_scope.cancel()
