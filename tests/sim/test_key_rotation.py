"""Network key rotation on the in-memory network: each step is run on one admin's node and
carried out by all; a member offline for the whole rotation rejoins by itself; a revoked member
is cut off at once and never gets the new key; only admins steer the plan."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trio

from plexinode.membership.members import State
from plexinode.membership.service import Seed
from plexinode.net.certificates import ADMIN, MEMBER
from plexinode.net.keyring import Keyring, key_id
from plexinode.net.secure import SecureStream
from plexinode.security.rotation import (
    KEYRING_PROTOCOL,
    PLAN_KEY,
    KeyringReply,
    KeyringRequest,
    reply_to,
)
from plexinode.security.statements import encode_statement, make_revocation
from plexinode.testing.authority import KEY, ROOT, authority, founded
from plexinode.testing.member_cluster import Cluster, MemberNode, member_cluster
from plexinode.testing.network import MemoryNetwork
from plexinode.testing.scheduling import wait_for
from plexinode.wire import envelope

K0 = KEY
K1 = bytes(range(32, 64))


def private(seed: int) -> Callable[[int], Keyring]:
    """A private network whose node 0 is an admin's node; every node is a member."""
    return founded(seed, roles=lambda i: (MEMBER, ADMIN) if i == 0 else (MEMBER,))


async def revoke(by: MemberNode, node: MemberNode) -> None:
    """The root revokes `node`, through `by`'s node."""
    assert by.authority_service is not None
    revocation = make_revocation(
        ROOT, authority(), node.identity.public_key, int(trio.current_time())
    )
    await by.authority_service.add([encode_statement(revocation)], source="the test")


def holds(node: MemberNode, key: bytes) -> bool:
    return key in node.keyring_service.keyring


def sends_with(node: MemberNode, key: bytes) -> bool:
    return node.keyring_service.keyring.primary == key


async def rotate(cluster: Cluster, operator: MemberNode, nodes: list[MemberNode]) -> None:
    """Install K1, make it primary, remove K0: each step on `operator`, then wait until every
    one of `nodes` has carried it out."""
    service = operator.keyring_service
    service.install(K1)
    with pytest.raises(ValueError, match="installed on 1 of"):
        service.use(K1)  # the others have not fetched it yet
    with trio.fail_after(60):
        await wait_for(lambda: all(holds(n, K1) for n in nodes))
        # the others' tags say so, which is what `use` checks
        await wait_for(lambda: service.progress()[key_id(K1)]["holders"] == len(nodes))
    service.use(K1)
    with trio.fail_after(60):
        await wait_for(lambda: all(sends_with(n, K1) for n in nodes))
    service.remove(K0)
    with trio.fail_after(60):
        await wait_for(lambda: all(K0 in n.keyring_service.keyring.retired for n in nodes))


async def test_a_rotation_run_on_one_member_reaches_every_member(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork(seed=11)
    async with member_cluster(net, 5, seed=11, keyrings=private(11)) as cluster:
        operator = cluster.nodes[0]
        await rotate(cluster, operator, cluster.nodes)
        counts = operator.keyring_service.progress()
        assert counts == {key_id(K1): {"holders": 5, "senders": 5, "members": 5}}
        assert cluster.converged()
        for node in cluster.nodes:
            # every member holds exactly the new key, and keeps the old one retired
            assert list(node.keyring_service.keyring) == [K1]
            assert node.membership.stats["claims_accepted"] > 0
            assert all(node.state_of(other) is State.ALIVE for other in cluster.nodes)
        fetched = sum(n.keyring_service.stats["fetched"] for n in cluster.nodes)
        assert fetched == 4  # each member but the operator fetched K1 once
        # the network keeps working on the new key alone
        await trio.sleep(30)
        assert cluster.converged()


async def test_a_member_offline_during_a_rotation_rejoins_by_itself(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork(seed=12)
    async with member_cluster(net, 5, seed=12, keyrings=private(12)) as cluster:
        away = cluster.nodes[4]
        cluster.kill(away)
        others = cluster.nodes[:4]
        with trio.fail_after(60):
            await wait_for(lambda: all(n.state_of(away) is State.DEAD for n in others))
        await rotate(cluster, cluster.nodes[0], others)
        assert list(cluster.keyrings[4]) == [K0]  # it missed everything
        back = await cluster.restart(away)
        with trio.fail_after(120):
            took = await cluster.wait_converged()
        assert took < 60
        assert sends_with(back, K1)
        with trio.fail_after(30):  # then push-pull brings it the plan, which drops K0
            await wait_for(lambda: list(back.keyring_service.keyring) == [K1])
        assert back.keyring_service.keyring.retired == [K0]
        assert back.keyring_service.stats["rescued"] == 1
        # on its way back it was refused everything but the keyring protocol
        assert sum(n.streams.stats["retired_key_refused"] for n in others) >= 1


async def test_a_revoked_member_is_cut_off_at_once_and_gets_no_new_key(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork(seed=13)
    async with member_cluster(net, 5, seed=13, keyrings=private(13)) as cluster:
        operator, revoked = cluster.nodes[0], cluster.nodes[4]
        others = cluster.nodes[:4]
        await revoke(operator, revoked)
        # within one dissemination window every member drops it and lists it as revoked,
        # before any rotation: it still holds the network key
        with trio.fail_after(10):
            await wait_for(lambda: all(n.keyring_service.revoked(revoked.node_id) for n in others))
        with trio.fail_after(120):
            await wait_for(lambda: all(n.state_of(revoked) is State.DEAD for n in others))
        assert sum(n.datagrams.stats["drop_not_member"] for n in others) > 0
        await rotate(cluster, operator, others)  # `use` needs no --force: revoked don't count
        assert not holds(revoked, K1)
        # it keeps asking, from outside, and keeps being refused; the rest stay whole
        await trio.sleep(60)
        assert not holds(revoked, K1)
        assert revoked.keyring_service.stats["fetched"] == 0
        assert cluster.converged(others)


async def test_a_member_without_the_admin_role_cannot_steer_the_plan(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A member holds the network key, so its gossip arrives: it writes a plan of its own (as
    a tampered node would), and every other member refuses it; a plan whose admin was revoked
    since is dropped too."""
    net = MemoryNetwork(seed=15)
    async with member_cluster(net, 5, seed=15, keyrings=private(15)) as cluster:
        operator, member = cluster.nodes[0], cluster.nodes[4]
        others = cluster.nodes[:4]
        member.membership.set_state(
            PLAN_KEY, b'{"keys": ["%s"], "primary": "%s"}' % ((key_id(K1).encode(),) * 2)
        )
        await trio.sleep(30)
        for node in others:
            assert node.membership.state.get(PLAN_KEY) is None
            assert node.keyring_service.plan() is None
        assert sum(n.keyring_service.stats["state_not_admin"] for n in others) >= 1
        # the admin's plan is carried out; once the admin is revoked, its plan is dropped
        operator.keyring_service.install(K1)
        with trio.fail_after(30):
            await wait_for(lambda: all(holds(n, K1) for n in others))
        await revoke(cluster.nodes[1], operator)
        with trio.fail_after(30):
            await wait_for(lambda: all(n.keyring_service.plan() is None for n in others[1:]))
        assert all(n.keyring_service.stats["plan_not_admin"] >= 1 for n in others[1:])


async def test_a_malformed_plan_is_counted_and_ignored(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork(seed=14)
    async with member_cluster(net, 3, seed=14, keyrings=private(14)) as cluster:
        writer = cluster.nodes[0]
        writer.membership.set_state(PLAN_KEY, b'{"keys": ["zz"], "primary": "zz"}')
        with trio.fail_after(30):
            await wait_for(
                lambda: all(n.keyring_service.stats["plan_malformed"] > 0 for n in cluster.nodes)
            )
        assert all(list(n.keyring_service.keyring) == [K0] for n in cluster.nodes)
        # a well-formed plan naming a key nobody holds: members keep their key and keep asking
        writer.membership.set_state(
            PLAN_KEY, b'{"keys": ["0123456789ab"], "primary": "0123456789ab"}'
        )
        await trio.sleep(30)
        assert all(sends_with(n, K0) for n in cluster.nodes)
        assert cluster.converged()


async def test_a_failing_step_is_counted_and_the_service_goes_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork(seed=15)
    async with member_cluster(net, 2, seed=15, keyrings=private(15)) as cluster:
        service = cluster.nodes[1].keyring_service
        real_step = service.step
        calls = 0

        async def flaky_step() -> None:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("a bug")
            await real_step()

        service.step = flaky_step  # type: ignore[method-assign]
        await trio.sleep(3)
        assert service.stats["step_error"] == 1
        cluster.nodes[0].keyring_service.install(K1)
        with trio.fail_after(30):
            await wait_for(lambda: holds(cluster.nodes[1], K1))


async def test_bad_answers_and_bad_requests_are_counted_and_change_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork(seed=16)
    async with member_cluster(net, 3, seed=16, keyrings=private(16)) as cluster:
        honest, asker, liar = cluster.nodes
        service = asker.keyring_service
        with trio.fail_after(60):  # each member holds the others' grants
            await wait_for(
                lambda: all(service.entitled(n.identity.public_key) for n in cluster.nodes)
            )
        at_liar = [Seed(liar.address, liar.node_id)]

        async def wrong_message(stream: SecureStream) -> None:
            await stream.receive()
            await stream.send(envelope.encode(KeyringRequest(())))

        liar.streams.on(KEYRING_PROTOCOL, wrong_message, retired_ok=True)
        assert not await service.fetch(at_liar)
        assert service.stats["fetch_failed"] == 1

        async def sealed_to_another(stream: SecureStream) -> None:
            await stream.receive()
            ring = Keyring([K0, K1], K1, private=True)
            await stream.send(
                envelope.encode(reply_to(ring, KeyringRequest(()), honest.identity.public_key))
            )

        liar.streams.on(KEYRING_PROTOCOL, sealed_to_another, retired_ok=True)
        assert not await service.fetch(at_liar)
        assert service.stats["fetch_bad_key"] == 1, service.stats
        assert list(service.keyring) == [K0]

        # a request that is not one gets no answer
        stream = await asker.streams.open(honest.address, KEYRING_PROTOCOL, node_id=honest.node_id)
        async with stream:
            await stream.send(envelope.encode(KeyringReply(False, b"", ())))
            with pytest.raises(trio.EndOfChannel):
                await stream.receive()
        assert honest.keyring_service.stats["request_malformed"] == 1
