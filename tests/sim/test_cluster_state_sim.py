"""The replicated cluster state on the in-memory network: writes reach everyone, concurrent
writes converge on one winner, a node that missed writes catches up through push-pull, a
clock hours ahead is counted, and forged entries, and entries stamped more than a day
ahead, are refused."""

from __future__ import annotations

import dataclasses

import trio

from plexinode.membership.messages import MemberGossip
from plexinode.membership.state import FUTURE_LIMIT_MS, MAX_COUNTER, sign_entry
from plexinode.testing.member_cluster import Cluster, member_cluster
from plexinode.testing.network import open_memory_network
from plexinode.testing.nodes import seeded_identity
from plexinode.testing.scheduling import wait_for
from tests.sim.test_membership_sim import adversary

#: A day and a minute, in milliseconds: beyond what a receiver takes.
DAY = FUTURE_LIMIT_MS + 60_000


def wall_ms() -> int:
    """The wall clock of a cluster's nodes (none skewed), in Unix milliseconds: the simulated
    clock."""
    return int(trio.current_time() * 1000)


def agreed(c: Cluster) -> dict[str, bytes] | None:
    """The map every live node holds, if they all hold the same one."""
    maps = [n.membership.state.items() for n in c.live()]
    return maps[0] if all(m == maps[0] for m in maps) else None


async def test_writes_and_deletes_reach_every_member(autojump_clock) -> None:
    async with (
        open_memory_network(seed=31, latency=0.002, loss=0.02) as net,
        member_cluster(net, 12) as c,
    ):
        c.nodes[3].membership.set_state("net.motd", b"hello")
        c.nodes[7].membership.set_state("blocklist/x", b"1")
        took = await wait_for(lambda: agreed(c) == {"net.motd": b"hello", "blocklist/x": b"1"})
        assert took < 10
        c.nodes[0].membership.set_state("blocklist/x", None)
        await wait_for(lambda: agreed(c) == {"net.motd": b"hello"})


async def test_concurrent_writes_to_one_key_converge_on_one_winner(autojump_clock) -> None:
    async with open_memory_network(seed=32, latency=0.002) as net, member_cluster(net, 10) as c:
        for node in c.nodes:  # everyone writes the same key in the same instant
            node.membership.set_state("net.leader", str(node.index).encode())
        await wait_for(lambda: agreed(c) is not None and "net.leader" in agreed(c))
        winner = c.nodes[0].membership.state.get("net.leader")
        assert winner is not None
        assert all(n.membership.state.get("net.leader") == winner for n in c.nodes)


async def test_a_node_that_missed_writes_catches_up_through_push_pull(autojump_clock) -> None:
    async with open_memory_network(seed=33, latency=0.002) as net, member_cluster(net, 8) as c:
        late = c.nodes[5]
        net.partition([late.host], [n.host for n in c.nodes if n is not late])
        c.nodes[1].membership.set_state("net.setting", b"on")
        await trio.sleep(8)  # the write's gossip is over by now
        assert "net.setting" not in late.membership.state.items()
        assert not any(n.membership.gossip.state for n in c.nodes if n is not late)
        net.heal()
        assert await wait_for(lambda: agreed(c) == {"net.setting": b"on"}) <= 30


async def test_a_clock_hours_ahead_is_counted_and_still_converges(autojump_clock) -> None:
    async with (
        open_memory_network(seed=34, latency=0.002) as net,
        member_cluster(net, 6, skew={4: 3 * 3600.0}) as c,
    ):
        c.nodes[4].membership.set_state("net.skewed", b"ahead")
        c.nodes[1].membership.set_state("net.skewed", b"behind, but later in real time")
        await wait_for(lambda: agreed(c) is not None and "net.skewed" in agreed(c))
        # The skewed writer's stamp is hours ahead: it wins, and everyone agrees on it.
        assert agreed(c) == {"net.skewed": b"ahead"}
        assert c.nodes[0].membership.state.stats["from_the_future"] >= 1
        # Whoever writes after seeing it outranks it, whatever their clock says.
        c.nodes[2].membership.set_state("net.skewed", b"after")
        await wait_for(lambda: agreed(c) == {"net.skewed": b"after"})


async def test_forged_state_entries_are_refused(autojump_clock) -> None:
    async with (
        open_memory_network(seed=35, latency=0.002) as net,
        member_cluster(net, 3) as c,
        adversary(net) as attacker,
    ):
        target = c.nodes[0]
        honest = c.nodes[1].identity
        me = seeded_identity(999, seed=77)
        genuine = sign_entry(honest, "net.motd", b"hi", (1_000, 0))
        forged = dataclasses.replace(genuine, value=b"pwned")  # honest's key, not its words
        bad_key = dataclasses.replace(sign_entry(me, "ok", b"x", (1_000, 0)), key="NOT OK")
        message = MemberGossip((), (forged, bad_key))
        await attacker.send(target.address, message, node_id=target.node_id)
        await trio.sleep(1)
        assert target.membership.stats["state_bad_signature"] == 1
        assert (
            target.membership.stats["state_malformed"]
            + target.membership.stats["state_bad_signature"]
            >= 1
        )
        assert "net.motd" not in target.membership.state.items()


async def test_a_write_stamped_near_the_end_of_time_is_refused_and_moves_no_clock(
    autojump_clock,
) -> None:
    """Taken, such a write would win its key for good and drag the receiver's clock to the
    top of its range, where no later write of any key could outrank the ones before."""
    async with (
        open_memory_network(seed=36, latency=0.002) as net,
        member_cluster(net, 4) as c,
        adversary(net) as attacker,
    ):
        target = c.nodes[0]
        me = seeded_identity(999, seed=77)
        doomsday = sign_entry(me, "net.motd", b"frozen", ((1 << 63) - 1, MAX_COUNTER))
        tomorrow = sign_entry(me, "blocklist/t", b"x", (wall_ms() + DAY, 0))
        await attacker.send(
            target.address, MemberGossip((), (doomsday, tomorrow)), node_id=target.node_id
        )
        await trio.sleep(1)
        assert target.membership.state.stats["refused_far_future"] == 2
        assert target.membership.state.items() == {}
        # The target's own writes still stamp by its wall clock and reach everyone.
        entry = target.membership.set_state("net.motd", b"fine")
        assert entry.wall_ms <= wall_ms()
        await wait_for(lambda: agreed(c) == {"net.motd": b"fine"})
