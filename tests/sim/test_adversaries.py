"""Adversaries against a private network's authority, each over 20 seeds, with zero successes:
a sleeper identity after a revocation and a full rotation, a member without the admin role
writing ``net.`` state, a member injecting keys, forged certificates, tickets that are expired,
replayed or tampered with, and an outsider answering at a bare seed."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
import trio

from plexinode.errors import HandshakeError
from plexinode.membership.members import State
from plexinode.membership.messages import SYNC_PROTOCOL
from plexinode.membership.service import Seed
from plexinode.net.certificates import ADMIN, INVITER, MEMBER
from plexinode.net.keyring import Keyring, key_id
from plexinode.net.secure import SecureStream
from plexinode.security.rotation import (
    KEYRING_PROTOCOL,
    PLAN_KEY,
    KeyringRequest,
    Plan,
    reply_to,
)
from plexinode.security.statements import encode_statement, make_grant, make_revocation
from plexinode.security.ticket_service import redeem
from plexinode.security.tickets import TicketError
from plexinode.testing.authority import KEY, ROOT, authority, founded
from plexinode.testing.member_cluster import NETWORK, MemberNode, member_cluster
from plexinode.testing.network import MemoryNetwork
from plexinode.testing.nodes import FAST, running_nodes, seeded_identity
from plexinode.testing.scheduling import wait_for
from plexinode.wire import envelope

SEEDS = range(1, 21)
K1 = bytes(range(32, 64))


def roles(
    admins: tuple[int, ...] = (0,), strangers: tuple[int, ...] = ()
) -> Callable[[int], tuple[str, ...]]:
    """Node `i`'s roles: member (and admin for `admins`), none at all for `strangers` (they
    hold the network key without ever having been admitted)."""
    return lambda i: () if i in strangers else (MEMBER, ADMIN) if i in admins else (MEMBER,)


def service(node: MemberNode):  # type: ignore[no-untyped-def]
    assert node.authority_service is not None
    return node.authority_service


async def settle(nodes: list[MemberNode]) -> None:
    """Wait until every node of `nodes` admits every other (their grants spread)."""
    keys = [n.identity.public_key for n in nodes]
    with trio.fail_after(60):
        await wait_for(lambda: all(service(n).admits(k) for n in nodes for k in keys))


def alive_in(node: MemberNode, other: MemberNode) -> bool:
    return node.state_of(other) is State.ALIVE


@pytest.mark.parametrize("seed", SEEDS)
async def test_a_revoked_member_and_its_sleeper_identity_stay_out(
    autojump_clock: trio.testing.MockClock, seed: int
) -> None:
    """Mallory (node 3) is a member; its spare identity (node 4) holds the network key, was
    seen by the network before the revocation, and was never admitted. After Mallory's
    revocation and a full rotation neither holds the new key, neither is heard, and the
    honest members stay whole."""
    net = MemoryNetwork(seed=seed)
    keyrings = founded(seed, roles=roles(strangers=(4,)))
    async with member_cluster(net, 5, seed=seed, keyrings=keyrings, converge=False) as cluster:
        honest, mallory, sleeper = cluster.nodes[:3], cluster.nodes[3], cluster.nodes[4]
        operator = honest[0]
        await settle([*honest, mallory])
        revocation = make_revocation(ROOT, authority(), mallory.identity.public_key, 1)
        await service(operator).add([encode_statement(revocation)], source="the test")
        with trio.fail_after(30):
            await wait_for(lambda: all(n.keyring_service.revoked(mallory.node_id) for n in honest))
        keys = operator.keyring_service
        keys.install(K1)
        with trio.fail_after(60):
            await wait_for(lambda: all(K1 in n.keyring_service.keyring for n in honest))
            await wait_for(lambda: keys.progress()[key_id(K1)]["holders"] == len(honest))
        keys.use(K1)
        with trio.fail_after(60):
            await wait_for(lambda: all(n.keyring_service.keyring.primary == K1 for n in honest))
        keys.remove(KEY)
        await trio.sleep(60)  # they keep trying, from outside
        for bad in (mallory, sleeper):
            assert K1 not in bad.keyring_service.keyring
            assert bad.keyring_service.stats["fetched"] == 0
            assert not any(alive_in(n, bad) for n in honest)
            assert not service(honest[1]).admits(bad.identity.public_key)
        assert cluster.converged(honest)


@pytest.mark.parametrize("seed", SEEDS)
async def test_a_member_without_the_admin_role_writes_no_net_state(
    autojump_clock: trio.testing.MockClock, seed: int
) -> None:
    net = MemoryNetwork(seed=seed)
    async with member_cluster(net, 3, seed=seed, keyrings=founded(seed, roles=roles())) as cluster:
        honest, mallory = cluster.nodes[:2], cluster.nodes[2]
        await settle(cluster.nodes)
        mallory.membership.set_state(PLAN_KEY, Plan((key_id(K1),), key_id(K1)).encode())
        mallory.membership.set_state("net.admins", b"mallory")
        await trio.sleep(20)
        for node in honest:
            assert node.membership.state.get(PLAN_KEY) is None
            assert node.membership.state.get("net.admins") is None
            assert node.keyring_service.keyring.primary == KEY


@pytest.mark.parametrize("seed", SEEDS)
async def test_a_member_cannot_inject_keys_into_one_that_missed_a_rotation(
    autojump_clock: trio.testing.MockClock, seed: int
) -> None:
    """A member that lost touch asks another for the current keys; the other answers with a
    key of its own choosing (sealed properly) and a plan naming it, which it signed itself:
    nothing of it is installed."""
    net = MemoryNetwork(seed=seed)
    async with member_cluster(net, 3, seed=seed, keyrings=founded(seed, roles=roles())) as cluster:
        asker, liar = cluster.nodes[1], cluster.nodes[2]
        await settle(cluster.nodes)
        planted = bytes(range(100, 132))

        async def inject(stream: SecureStream) -> None:
            await stream.receive()
            ring = Keyring([KEY, planted], planted, private=True)
            liar.membership.set_state(PLAN_KEY, Plan.of(ring).encode())
            entry = liar.membership.state.get(PLAN_KEY)
            reply = reply_to(ring, KeyringRequest(()), asker.identity.public_key, entry)
            await stream.send(envelope.encode(reply))

        liar.streams.on(KEYRING_PROTOCOL, inject, retired_ok=True)
        seeds = [Seed(liar.address, liar.node_id)]
        assert not await asker.keyring_service.fetch(seeds, adopt_primary=True)
        assert planted not in asker.keyring_service.keyring
        assert asker.keyring_service.keyring.primary == KEY
        assert asker.keyring_service.stats["fetch_bad_plan"] == 1


@pytest.mark.parametrize("seed", SEEDS)
async def test_forged_certificates_admit_nobody(
    autojump_clock: trio.testing.MockClock, seed: int
) -> None:
    """A member signs an admission for an identity of its own, an inviter and an admin grant
    for itself, and a revocation of an honest member, and pushes them to everyone; a key made
    up on the spot signs a grant as if it were the root."""
    net = MemoryNetwork(seed=seed)
    keyrings = founded(seed, roles=roles(strangers=(3,)))
    async with member_cluster(net, 4, seed=seed, keyrings=keyrings, converge=False) as cluster:
        honest, mallory, friend = cluster.nodes[:2], cluster.nodes[2], cluster.nodes[3]
        await settle(cluster.nodes[:3])
        a = authority()
        fake_root = seeded_identity(99, seed)
        forged = [
            make_grant(mallory.identity, a, friend.identity.public_key, MEMBER, now=1),
            make_grant(mallory.identity, a, mallory.identity.public_key, ADMIN, now=1),
            make_grant(mallory.identity, a, mallory.identity.public_key, INVITER, now=1),
            make_revocation(mallory.identity, a, honest[0].identity.public_key, 1),
            dataclasses.replace(
                make_grant(fake_root, a, friend.identity.public_key, MEMBER, now=1),
                issuer=ROOT.public_key,
            ),
        ]
        added = await service(mallory).add([encode_statement(s) for s in forged], source="x")
        assert added.new == ()
        for node in honest:  # pushed straight at every honest node too
            pushed = await service(node).add([encode_statement(s) for s in forged], source="x")
            assert pushed.new == ()
        await trio.sleep(30)
        for node in honest:
            assert not service(node).admits(friend.identity.public_key)
            assert not service(node).holds(mallory.identity.public_key, ADMIN)
            assert not service(node).authority.is_revoked(honest[0].identity.public_key)
            assert not alive_in(node, friend)


@pytest.mark.parametrize("seed", SEEDS)
async def test_expired_replayed_and_tampered_tickets_admit_nobody(
    autojump_clock: trio.testing.MockClock, seed: int
) -> None:
    settings = dataclasses.replace(FAST, network=NETWORK)

    def keyrings(index: int) -> Keyring:
        if index == 0:
            return founded(seed, roles=lambda i: (MEMBER, INVITER))(index)
        return Keyring.open(NETWORK)

    net = MemoryNetwork(seed=seed)
    async with running_nodes(net, 3, settings, seed=seed, keyrings=keyrings) as nodes:
        inviter, mallory, honest = nodes
        short = await inviter.invite(5)
        await trio.sleep(10)
        later = dataclasses.replace(short, expires_at=short.expires_at + 3600)
        with pytest.raises(TicketError):
            await redeem(mallory.streams, mallory.identity, later, trio.current_time())
        good = await inviter.invite(3600)
        for tampered in (
            dataclasses.replace(good, secret=bytes(32)),
            dataclasses.replace(good, secret=good.secret[:-1] + bytes([good.secret[-1] ^ 0x80])),
            dataclasses.replace(good, inviter=honest.identity.public_key),
        ):
            with pytest.raises(TicketError):
                await mallory.join(tampered.encode())
        await honest.join(good.encode())  # the first use of a good ticket
        with pytest.raises(TicketError):  # replayed by whoever copied it
            await mallory.join(good.encode())
        assert not mallory.keyring.private
        assert inviter.keyring.tickets == []
        assert inviter.authority_service is not None
        assert not inviter.authority_service.admits(mallory.identity.public_key)
        assert inviter.authority_service.admits(honest.identity.public_key)


@pytest.mark.parametrize("seed", SEEDS)
async def test_an_outsider_at_a_bare_seed_learns_nothing(
    autojump_clock: trio.testing.MockClock, seed: int
) -> None:
    """An outsider without the network key answers at an address a member was given as a bare
    seed, and takes any handshake as if it held the key (a tampered responder): the member's
    ping goes unanswered, so no stream protocol runs; a stream dialled there anyway fails at
    msg2, before the member says who it is; the outsider learns no member, no state, no key."""
    settings = dataclasses.replace(FAST, network=NETWORK)

    def keyrings(index: int) -> Keyring:
        return founded(seed)(index) if index < 2 else Keyring.open(NETWORK)

    net = MemoryNetwork(seed=seed)
    async with running_nodes(net, 3, settings, seed=seed, keyrings=keyrings) as nodes:
        member, other, outsider = nodes
        assert await member.dht.bootstrap([other.address]) >= 1
        outsider.keyring.match = lambda data, tag: outsider.keyring.primary  # type: ignore[method-assign]
        assert not await member.membership.join([Seed(outsider.address)])
        assert member.membership.stats["seed_unresolved"] == 1
        with pytest.raises(HandshakeError):
            await member.streams.open(outsider.address, SYNC_PROTOCOL)
        await trio.sleep(10)
        assert outsider.streams.stats["accepted"] == 0
        assert outsider.datagrams.stats["requests"] == 0
        assert [m.node_id for m in outsider.membership.members()] == [outsider.node_id]
        assert list(outsider.keyring) == [Keyring.open(NETWORK).primary]
