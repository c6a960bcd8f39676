"""Membership inside the full node: status counts, the members listing, tags, leaving, and an
incarnation kept in the database across restarts."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest
import trio

from plexinode import __version__
from plexinode.datadir import DB_NAME
from plexinode.errors import PeerTimeout
from plexinode.membership.invite import InviteError
from plexinode.membership.members import State
from plexinode.membership.messages import MemberGossip, MemberPing, MemberPingReq
from plexinode.membership.operator_tags import OPERATOR_TAGS
from plexinode.net.address import Address, packed_ip
from plexinode.net.datagram import Inbound
from plexinode.node import RESERVED_TAGS, Node
from plexinode.storage import open_database
from plexinode.testing.network import open_memory_network
from plexinode.testing.nodes import FAST, seeded_identity
from tests.sim.test_dht_records_sim import WildcardTransport


async def wait_until(condition) -> None:
    with trio.fail_after(30):
        while not condition():  # noqa: ASYNC110 (sampling the nodes' state)
            await trio.sleep(0.05)


async def test_members_status_tags_leave_and_a_persisted_incarnation(
    tmp_path, autojump_clock
) -> None:
    # One node keeps its database in a file, used from a worker thread: simulated time may pass
    # while a call runs there, as on a slow disk, and nothing here needs that call to be quick.
    async with open_memory_network(seed=21) as net:
        hosts = [net.new_host() for _ in range(3)]
        first_address = Address(hosts[0], FAST.listen.port)
        joining = replace(FAST, bootstrap=(first_address,))
        data_dir = tmp_path / "node"
        data_dir.mkdir(mode=0o700)

        def make(index: int, settings=joining, path=None) -> Node:
            return Node(
                seeded_identity(index),
                settings,
                net.transport(hosts[index]),
                data_dir=path,
                wall_clock=trio.current_time,
            )

        async with trio.open_nursery() as nursery:
            a, b, c = make(0, FAST), make(1), make(2, path=data_dir)
            for node in (a, b, c):
                await nursery.start(node.run)

            def everyone_sees(nodes, state: State = State.ALIVE) -> bool:
                return all(
                    n.membership.table is not None
                    and all(
                        (m := n.membership.table.get(o.node_id)) is not None and m.state is state
                        for o in nodes
                    )
                    for n in nodes
                )

            await wait_until(lambda: everyone_sees([a, b, c]))
            status = await a.status()
            counts = {"alive": 3, "suspect": 0, "dead": 0, "left": 0, "stopped": 0}
            assert status["members"] == counts
            assert set(status["membership"]) >= {"claims", "probes", "awareness", "gossip_queued"}
            listed = [a.membership.describe(m) for m in a.membership.members()]
            assert listed[0]["self"] is True
            assert listed[0]["node_id"] == str(a.node_id)
            assert {m["state"] for m in listed} == {"alive"}
            assert all(m["tags"]["version"] for m in listed)
            first_incarnation = c.membership.table.incarnation

            b.membership.set_tags({"version": "x", "role": "relay"})

            def tagged() -> bool:
                view = a.membership.table.get(b.node_id)
                return view is not None and view.tags.get("role") == "relay"

            await wait_until(tagged)

            # c stops on purpose: the others list it stopped, and its silence while it is away
            # (probes of it fail) does not make it dead.
            c.stop()

            def stopped(view) -> bool:
                return view is not None and view.state is State.STOPPED

            await wait_until(
                lambda: all(stopped(n.membership.table.get(c.node_id)) for n in (a, b))
            )
            await trio.sleep(60)
            assert all(stopped(n.membership.table.get(c.node_id)) for n in (a, b))
            assert (await a.status())["members"]["stopped"] == 1
            assert a.membership.describe(a.membership.table.get(c.node_id))["state"] == "stopped"
            # It restarts from its data dir: its incarnation was kept, and it comes back above it.
            again = make(2, path=data_dir)
            await nursery.start(again.run)
            await wait_until(lambda: everyone_sees([a, b, again]))
            assert again.membership.table.incarnation > first_incarnation
            view = a.membership.table.get(again.node_id)
            assert view is not None
            assert view.incarnation == again.membership.table.incarnation

            result = await b.leave()
            assert result["left"] is True
            assert result["acknowledged_by"] >= 1
            await wait_until(
                lambda: all(
                    (v := n.membership.table.get(b.node_id)) is not None and v.state is State.LEFT
                    for n in (a, again)
                )
            )
            assert (await a.status())["members"]["left"] == 1
            a.stop()
            again.stop()


async def test_join_refuses_another_network_and_an_inviter_that_is_gone(autojump_clock) -> None:
    async with open_memory_network(seed=22, latency=0.002) as net:
        hosts = [net.new_host() for _ in range(3)]
        settings = [FAST, replace(FAST, network="elsewhere"), FAST]
        nodes = [
            Node(
                seeded_identity(i),
                settings[i],
                net.transport(hosts[i]),
                wall_clock=trio.current_time,
            )
            for i in range(3)
        ]
        async with trio.open_nursery() as nursery:
            for node in nodes:
                await nursery.start(node.run)
            inviter, other_network, newcomer = nodes
            token = (await inviter.invite(3600)).encode()
            with pytest.raises(InviteError, match="belongs to network 'elsewhere'"):
                await other_network.join(token)
            stale = (await inviter.invite(1)).encode()
            await trio.sleep(2)
            with pytest.raises(InviteError, match="expired"):
                await newcomer.join(stale)
            inviter.stop()
            await trio.sleep(1)
            with pytest.raises(PeerTimeout, match="did not answer"):
                await newcomer.join(token)
            other_network.stop()
            newcomer.stop()


async def test_a_node_cut_off_past_retention_rejoins_through_its_dht_contacts(
    autojump_clock,
) -> None:
    """Membership's seeds come from the DHT: a node cut off for longer than the dead are
    remembered (so it knows no member any more, nor they it), whose only bootstrap node is gone,
    rejoins through the contacts of its DHT routing table when the network heals."""
    settings = replace(FAST, membership=replace(FAST.membership, retention=30.0))
    async with open_memory_network(seed=23, latency=0.002) as net:
        hosts = [net.new_host() for _ in range(6)]
        joining = replace(settings, bootstrap=(Address(hosts[0], FAST.listen.port),))
        nodes = [
            Node(
                seeded_identity(index),
                settings if index == 0 else joining,
                net.transport(host),
                wall_clock=trio.current_time,
            )
            for index, host in enumerate(hosts)
        ]
        async with trio.open_nursery() as nursery:
            for node in nodes:
                await nursery.start(node.run)
            boot, alone = nodes[0], nodes[4]
            rest = [n for n in nodes if n not in (boot, alone)]

            def alive_in(viewer: Node, subject: Node) -> bool:
                member = viewer.membership.table.get(subject.node_id)
                return member is not None and member.state is State.ALIVE

            await wait_until(lambda: all(alive_in(a, b) for a in nodes for b in nodes))
            net.partition([alone_host := hosts[4]], [h for h in hosts if h != alone_host])
            boot.stop()  # the one bootstrap address any node has
            await trio.sleep(120)
            assert len(alone.membership.table) == 1  # only itself: the others were reaped
            assert all(alone.node_id not in n.membership.table for n in rest)
            assert alone.dht.routing.entries()  # what it still has: its DHT contacts
            net.heal()
            healed = trio.current_time()
            with trio.fail_after(60):
                while not all(alive_in(alone, n) and alive_in(n, alone) for n in rest):  # noqa: ASYNC110
                    await trio.sleep(0.05)
            assert trio.current_time() - healed <= 60
            for node in nodes:
                node.stop()


@pytest.mark.parametrize(
    ("stored", "kept", "logged"),
    [
        (b'{"role": "relay", "version": "forged"}', {"role": "relay"}, False),
        (b"{not json", {}, True),
        (b"\xff\xfe", {}, True),
        (b'["role", "relay"]', {}, False),
    ],
)
async def test_stored_operator_tags_are_read_and_unusable_ones_ignored(
    tmp_path, autojump_clock, caplog, stored: bytes, kept: dict[str, str], logged: bool
) -> None:
    # The operator's tags kept in the data dir come back (never over the node's own); damaged
    # ones are ignored and the node starts with its own tags only.
    data_dir = tmp_path / "node"
    data_dir.mkdir(mode=0o700)
    async with open_database(data_dir / DB_NAME) as db:
        await db.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (OPERATOR_TAGS, stored))
    async with open_memory_network(seed=24) as net:
        node = Node(
            seeded_identity(0),
            FAST,
            net.transport(net.new_host()),
            data_dir=data_dir,
            wall_clock=trio.current_time,
        )
        with caplog.at_level(logging.WARNING, logger="plexinode.node"):
            async with trio.open_nursery() as nursery:
                await nursery.start(node.run)
                tags = node.membership.tags
                node.stop()
    assert set(tags) == RESERVED_TAGS | set(kept)
    assert {k: tags[k] for k in kept} == kept
    assert tags["version"] == __version__
    assert ("ignoring unreadable stored tags" in caplog.text) is logged


async def test_a_stopped_node_not_back_within_the_restart_grace_is_shown_dead(
    autojump_clock,
) -> None:
    grace = replace(FAST, membership=replace(FAST.membership, restart_grace=120.0))
    async with open_memory_network(seed=22) as net:
        hosts = [net.new_host() for _ in range(3)]
        first = Address(hosts[0], FAST.listen.port)
        nodes = [
            Node(
                seeded_identity(i),
                replace(grace, bootstrap=(first,) if i else ()),
                net.transport(hosts[i]),
                wall_clock=trio.current_time,
            )
            for i in range(3)
        ]
        async with trio.open_nursery() as nursery:
            for node in nodes:
                await nursery.start(node.run)
            a, b, c = nodes
            events = a.membership.subscribe()
            await wait_until(lambda: len(list(a.membership.table.others_live)) == 2)
            c.stop()
            await wait_until(lambda: a.membership.table.get(c.node_id).state is State.STOPPED)
            stopped_at = trio.current_time()
            with trio.fail_after(200):
                while a.membership.table.get(c.node_id).state is State.STOPPED:  # noqa: ASYNC110
                    await trio.sleep(0.5)
            assert a.membership.table.get(c.node_id).state is State.DEAD
            assert trio.current_time() - stopped_at == pytest.approx(120.0, abs=2.0)
            assert (await a.status())["members"]["dead"] == 1
            seen = []
            while True:
                try:
                    seen.append(type(events.receive_nowait()).__name__)
                except trio.WouldBlock:
                    break
            assert seen[-2:] == ["Stopped", "Died"]
            a.stop()
            b.stop()


async def test_join_fails_when_the_inviter_is_down_though_other_contacts_answer(
    autojump_clock,
) -> None:
    """The join checks that the inviter answered, not that the routing table is not empty: a
    node that already knows others must still be told that its inviter is down."""
    async with open_memory_network(seed=24, latency=0.002) as net:
        hosts = [net.new_host() for _ in range(3)]
        nodes = [
            Node(seeded_identity(i), FAST, net.transport(hosts[i]), wall_clock=trio.current_time)
            for i in range(3)
        ]
        async with trio.open_nursery() as nursery:
            for node in nodes:
                await nursery.start(node.run)
            inviter, other, newcomer = nodes
            token = (await inviter.invite(3600)).encode()
            assert await newcomer.join((await other.invite(3600)).encode()) >= 1
            assert await newcomer.join(token) >= 2
            inviter.stop()
            await trio.sleep(1)
            assert len(newcomer.dht.routing) >= 1  # it still knows `other` (and the inviter)
            with pytest.raises(PeerTimeout, match=f"inviter {inviter.node_id.short()} did not"):
                await newcomer.join(token)
            other.stop()
            newcomer.stop()


async def test_a_node_bound_to_the_wildcard_joins_the_dht_before_it_knows_its_address(
    autojump_clock,
) -> None:
    """Membership takes part once the node knows its address, which a node bound to 0.0.0.0
    learns from a quorum of others: joining through one inviter bootstraps the DHT, and
    membership follows later through its seeds (it is not an error)."""
    async with open_memory_network(seed=26, latency=0.002) as net:
        hosts = [net.new_host() for _ in range(2)]
        inviter = Node(
            seeded_identity(0), FAST, net.transport(hosts[0]), wall_clock=trio.current_time
        )
        wild = Node(
            seeded_identity(1),
            FAST,
            WildcardTransport(net.transport(hosts[1])),
            wall_clock=trio.current_time,
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(inviter.run)
            await nursery.start(wild.run)
            assert await wild.join((await inviter.invite(3600)).encode()) == 1
            assert not wild.membership.ready.is_set()
            assert inviter.node_id in {e.contact.node_id for e in wild.dht.routing.entries()}
            inviter.stop()
            wild.stop()


async def test_requests_that_reach_membership_while_it_stops_are_dropped_and_counted(
    autojump_clock, caplog
) -> None:
    """The datagram service runs membership's handlers in its own nursery: one may run once
    membership's nursery is closing or closed. A ping-req then cannot start its ping there; it
    is dropped quietly and counted, with no traceback in the log."""
    async with open_memory_network(seed=27, latency=0.002) as net:
        hosts = [net.new_host() for _ in range(2)]
        nodes = [
            Node(seeded_identity(i), FAST, net.transport(hosts[i]), wall_clock=trio.current_time)
            for i in range(2)
        ]
        async with trio.open_nursery() as nursery:
            for node in nodes:
                await nursery.start(node.run)
            a, b = nodes
            await wait_until(b.membership.ready.is_set)
            membership = b.membership
            handlers = {
                kind: b.datagrams.handler(kind)
                for kind in (MemberPingReq, MemberPing, MemberGossip)
            }
            b.stop()
            a.stop()
        assert a.address is not None
        target = seeded_identity(9).node_id
        requests = [
            MemberPingReq(target.raw, packed_ip(hosts[0]), 7420, (), ()),
            MemberPing((), ()),
            MemberGossip((), ()),
        ]
        with caplog.at_level(logging.DEBUG):
            for request in requests:
                handler = handlers[type(request)]
                assert handler is not None
                inbound = Inbound(request, 7, a.node_id, a.identity.public_key, a.address)
                assert await handler(inbound) is None
        assert membership.stats["dropped_stopping"] == 3
        assert "failed" not in caplog.text
