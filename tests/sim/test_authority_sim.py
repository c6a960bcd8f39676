"""A private network's statements on the in-memory network: what one member learns reaches
every member, a late joiner catches up, and nothing a non-admin signed is kept anywhere."""

from __future__ import annotations

import pytest
import trio

from plexinode.net.authority import SPENT_MARGIN
from plexinode.net.certificates import ADMIN, INVITER, MEMBER
from plexinode.net.keyring import Keyring
from plexinode.security import authority_service
from plexinode.security.statements import (
    encode_statement,
    make_grant,
    make_revocation,
    statement_hash,
)
from plexinode.testing.authority import ROOT, authority, founded
from plexinode.testing.member_cluster import MemberNode, member_cluster
from plexinode.testing.network import MemoryNetwork
from plexinode.testing.nodes import seeded_identity
from plexinode.testing.scheduling import wait_for

SEED = 5


def service(node: MemberNode):  # type: ignore[no-untyped-def]
    assert node.authority_service is not None
    return node.authority_service


async def test_a_revocation_reaches_every_member_and_stands(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork(seed=SEED)
    async with member_cluster(net, 6, seed=SEED, keyrings=founded(SEED)) as cluster:
        nodes = cluster.nodes
        # every member holds its own grant only, at first, then each other's
        with trio.fail_after(120):
            await wait_for(lambda: all(len(service(n).statements) == 6 for n in nodes))
        victim = nodes[5].identity.public_key
        assert all(service(n).member(victim) for n in nodes)
        revocation = make_revocation(ROOT, authority(), victim, now=int(trio.current_time()))
        started = trio.current_time()
        added = await service(nodes[0]).add([encode_statement(revocation)], source="test")
        assert len(added.new) == 1
        with trio.fail_after(60):
            await wait_for(lambda: all(service(n).authority.is_revoked(victim) for n in nodes))
        spread = trio.current_time() - started
        assert spread < 2 * 5.0  # told at once, not at the next periodic round
        assert not any(service(n).member(victim) for n in nodes)
        # a new grant of the revoked key, however dated, does not undo the revocation
        later = make_grant(ROOT, authority(), victim, MEMBER, now=int(trio.current_time()) + 1)
        await service(nodes[1]).add([encode_statement(later)], source="test")
        await trio.sleep(30)
        assert not any(service(n).member(victim) for n in nodes)


async def test_nothing_a_plain_member_signs_is_kept(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork(seed=SEED)
    async with member_cluster(net, 4, seed=SEED, keyrings=founded(SEED)) as cluster:
        nodes = cluster.nodes
        mallory = nodes[3].identity
        honest = nodes[0].identity.public_key
        forged = [
            make_revocation(mallory, authority(), honest, now=1),
            make_grant(mallory, authority(), mallory.public_key, ADMIN, now=1),
            make_grant(mallory, authority(), mallory.public_key, INVITER, now=1),
        ]
        added = await service(nodes[3]).add([encode_statement(s) for s in forged], source="test")
        assert added.new == ()
        assert len(added.refused) == 3
        await trio.sleep(60)
        for node in nodes:
            assert not service(node).authority.is_revoked(honest)
            assert not service(node).holds(mallory.public_key, ADMIN)
            assert len(service(node).statements) == 4


async def test_a_late_member_catches_up(autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork(seed=SEED)
    async with member_cluster(net, 3, seed=SEED, keyrings=founded(SEED)) as cluster:
        first = cluster.nodes[0]
        inviter = cluster.nodes[1].identity
        grant = make_grant(ROOT, authority(), inviter.public_key, INVITER, now=0)
        await service(first).add([encode_statement(grant)], source="test")
        late = await cluster.add()
        with trio.fail_after(120):
            await wait_for(lambda: len(service(late).statements) == 5)
        assert service(late).holds(inviter.public_key, INVITER)
        assert service(late).member(cluster.nodes[2].identity.public_key)


async def test_an_inviter_renews_a_grant_that_is_about_to_expire(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Node 1 was admitted for 20 days only; node 0 holds the inviter role and renews it
    (RENEW_BEFORE), so that it stays in while the root key is kept offline."""
    founding = founded(SEED, roles=lambda i: (MEMBER, INVITER) if i == 0 else (MEMBER,))

    def keyrings(index: int) -> Keyring:
        ring = founding(index)
        if index == 1:
            key = seeded_identity(1, SEED).public_key
            short = make_grant(ROOT, authority(), key, MEMBER, now=0, lifetime=20 * 86_400)
            ring.credentials = (encode_statement(short),)
        return ring

    net = MemoryNetwork(seed=SEED)
    async with member_cluster(net, 3, seed=SEED, keyrings=keyrings) as cluster:
        inviter, renewed = cluster.nodes[0], cluster.nodes[1]
        key = renewed.identity.public_key

        def longest(node: MemberNode) -> int:
            grants = service(node).authority.grants_of(key)
            return max(g.expires_at for g in grants if g.role == MEMBER)

        with trio.fail_after(120):
            await wait_for(lambda: all(longest(n) > 300 * 86_400 for n in cluster.nodes))
        assert service(inviter).stats["renewed"] == 1
        assert service(cluster.nodes[2]).stats.get("renewed", 0) == 0  # a plain member cannot
        issuers = {g.issuer for g in service(renewed).authority.grants_of(key)}
        assert issuers == {ROOT.public_key, inviter.identity.public_key}


async def test_spent_grants_are_forgotten_everywhere_and_in_the_database(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Node 1 holds a short grant beside its usual one; once every clock is past the short
    grant's expiry and SPENT_MARGIN, every node forgets it, in memory and in its database,
    still admits node 1, and all hold the same set again."""
    monkeypatch.setattr(authority_service, "PRUNE_INTERVAL", 30.0)
    founding = founded(SEED)
    key = seeded_identity(1, SEED).public_key
    short = encode_statement(make_grant(ROOT, authority(), key, MEMBER, now=0, lifetime=86_400))

    def keyrings(index: int) -> Keyring:
        ring = founding(index)
        if index == 1:
            ring.credentials = (*ring.credentials, short)
        return ring

    net = MemoryNetwork(seed=SEED)
    async with member_cluster(
        net, 3, seed=SEED, keyrings=keyrings, databases=True, skew={}
    ) as cluster:
        with trio.fail_after(120):
            await wait_for(
                lambda: all(statement_hash(short) in service(n).statements for n in cluster.nodes)
            )
        for node in cluster.nodes:
            cluster.skew[node.index] = 86_400 + SPENT_MARGIN
        with trio.fail_after(120):
            await wait_for(lambda: all(service(n).stats["pruned"] == 1 for n in cluster.nodes))
        summaries = {service(n).statements.summary() for n in cluster.nodes}
        assert len(summaries) == 1
        for node in cluster.nodes:
            assert statement_hash(short) not in service(node).statements
            assert service(node).member(key)
            rows = await cluster.databases[node.index].execute(
                "SELECT 1 FROM authority WHERE hash = ?", (statement_hash(short),)
            )
            assert rows == []
        await trio.sleep(60)  # a few more rounds: nobody takes it back
        assert all(statement_hash(short) not in service(n).statements for n in cluster.nodes)
