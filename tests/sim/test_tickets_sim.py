"""Join tickets between full nodes on the in-memory network: a ticket admits one node once,
and an expired, replayed, tampered or misdirected ticket admits nobody."""

from __future__ import annotations

import dataclasses
from dataclasses import replace

import pytest
import trio

from plexinode.membership.members import State
from plexinode.net.certificates import INVITER, MEMBER
from plexinode.net.echo import ECHO_PROTOCOL
from plexinode.net.keyring import Keyring
from plexinode.node import Node
from plexinode.security.rotation import KEYRING_PROTOCOL
from plexinode.security.statements import (
    AUTHORITY_PROTOCOL,
    encode_statement,
    make_grant,
    make_revocation,
)
from plexinode.security.ticket_service import redeem
from plexinode.security.tickets import JOIN_PROTOCOL, JoinReply, JoinRequest, Ticket, TicketError
from plexinode.testing.authority import KEY, ROOT, authority, founded
from plexinode.testing.member_cluster import NETWORK
from plexinode.testing.network import MemoryNetwork
from plexinode.testing.nodes import FAST, running_nodes, seeded_identity
from plexinode.testing.scheduling import wait_for
from plexinode.wire import envelope
from plexinode.wire.codec import FRAME_LIMITS
from plexinode.wire.messages import Ping

SEED = 8
SETTINGS = replace(FAST, network=NETWORK)


def keyrings(index: int) -> Keyring:
    """Node 0 founded the network (member and inviter); the others know only its name."""
    if index == 0:
        return founded(SEED, roles=lambda i: (MEMBER, INVITER))(index)
    return Keyring.open(NETWORK)


def alive(node: Node, other: Node) -> bool:
    return any(
        m.node_id == other.node_id and m.state is State.ALIVE for m in node.membership.members()
    )


async def test_a_ticket_admits_one_node_once(autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork(seed=SEED)
    async with running_nodes(net, 3, SETTINGS, seed=SEED, keyrings=keyrings) as nodes:
        inviter, joiner, second = nodes
        ticket = await inviter.invite(3600)
        assert isinstance(ticket, Ticket)
        assert len(inviter.keyring.tickets) == 1
        # a ticket's key opens join/1 and nothing else: not the statements, not the keys
        for protocol in (AUTHORITY_PROTOCOL, KEYRING_PROTOCOL, ECHO_PROTOCOL):
            stream = await joiner.streams.open(
                inviter.address, protocol, node_id=inviter.node_id, network_key=ticket.key
            )
            async with stream:
                with pytest.raises(trio.EndOfChannel):
                    await stream.receive()
        assert inviter.streams.stats["extra_key_refused"] == 3
        await joiner.join(ticket.encode())
        # the joiner holds the network's key, root and its own grant, signed by the inviter
        assert joiner.keyring.private
        assert list(joiner.keyring) == [KEY]
        assert joiner.keyring.root == ROOT.public_key
        service = joiner.authority_service
        assert service is not None
        assert service.member(joiner.identity.public_key)
        assert inviter.keyring.tickets == []  # redeemed: its key no longer admits anyone
        with trio.fail_after(60):
            await wait_for(lambda: alive(inviter, joiner) and alive(joiner, inviter))
        # the same ticket again, from another node: refused
        with pytest.raises(TicketError, match="refused the ticket"):
            await second.join(ticket.encode())
        assert not second.keyring.private
        # a joined member holds no inviter role: it cannot invite
        with pytest.raises(TicketError, match="may not admit"):
            await joiner.invite(3600)
        # a member given a ticket refuses it before spending it
        spare = await inviter.invite(3600)
        with pytest.raises(TicketError, match="already a member of this network"):
            await joiner.join(spare.encode())
        assert len(inviter.keyring.tickets) == 1


async def test_expired_tampered_and_misdirected_tickets_admit_nobody(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork(seed=SEED)
    async with running_nodes(net, 3, SETTINGS, seed=SEED, keyrings=keyrings) as nodes:
        inviter, joiner, other = nodes
        now = trio.current_time()
        # expired: the joiner refuses it itself; forged into the future, the inviter does
        short = await inviter.invite(10)
        await trio.sleep(20)
        with pytest.raises(TicketError, match="expired"):
            await joiner.join(short.encode())
        later = dataclasses.replace(short, expires_at=short.expires_at + 3600)
        with pytest.raises(TicketError, match="refused the ticket"):
            await redeem(joiner.streams, joiner.identity, later, now + 20)
        # a secret changed by one bit: refused at the handshake
        good = await inviter.invite(3600)
        flipped = bytes([good.secret[0] ^ 1]) + good.secret[1:]
        with pytest.raises(TicketError, match="refused the ticket"):
            await joiner.join(dataclasses.replace(good, secret=flipped).encode())
        # sent to another node than its inviter: that node is not who the ticket names
        misdirected = dataclasses.replace(good, inviter=other.identity.public_key)
        with pytest.raises(TicketError, match="not the ticket's inviter"):
            await joiner.join(misdirected.encode())
        assert not joiner.keyring.private
        # the untouched ticket still works, once
        await joiner.join(good.encode())
        assert joiner.keyring.private
        assert inviter.authority_service is not None
        assert inviter.authority_service.stats["added"] == 1


async def test_tickets_kept_in_the_database_outlive_a_restart_and_are_used_once(
    mock_clock: trio.testing.MockClock, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The database is a file, used from a worker thread: virtual time jumps only after the
    # event loop has been idle for this long (real seconds), not while a thread runs.
    mock_clock.autojump_threshold = 0.5
    net = MemoryNetwork(seed=SEED)
    hosts = [net.new_host() for _ in range(3)]
    for name in ("inviter", "joiner", "late"):
        (tmp_path / name).mkdir(mode=0o700)

    def node(index: int, name: str) -> Node:
        return Node(
            seeded_identity(index, SEED),
            SETTINGS,
            net.transport(hosts[index]),
            data_dir=tmp_path / name,
            wall_clock=trio.current_time,
            keyring=keyrings(index),
        )

    async with trio.open_nursery() as nursery:
        async with trio.open_nursery() as first_run:
            inviter = node(0, "inviter")
            await first_run.start(inviter.run)
            kept = await inviter.invite(3600)
            with pytest.raises(TicketError, match="no address"):
                await inviter._security.tickets.issue([], 60)  # type: ignore[union-attr]
            monkeypatch.setattr("plexinode.security.ticket_service.MAX_OPEN_TICKETS", 1)
            with pytest.raises(TicketError, match="open tickets"):
                await inviter.invite(3600)
            monkeypatch.undo()
            inviter.stop()
        # Back from its data dir: the open ticket still admits its holder, once.
        inviter = node(0, "inviter")
        await nursery.start(inviter.run)
        joiner = node(1, "joiner")
        await nursery.start(joiner.run)
        # a join/1 stream that does not ask for a ticket gets nothing
        stream = await joiner.streams.open(
            inviter.address, JOIN_PROTOCOL, node_id=inviter.node_id, network_key=kept.key
        )
        async with stream:
            await stream.send(envelope.encode(Ping()))
            with pytest.raises(trio.EndOfChannel):
                await stream.receive()
        await joiner.join(kept.encode())
        assert joiner.keyring.private
        late = node(2, "late")
        await nursery.start(late.run)
        with pytest.raises(TicketError, match="refused the ticket"):
            await late.join(kept.encode())
        # a revoked key is refused a ticket of its own
        service = inviter.authority_service
        assert service is not None
        revocation = make_revocation(ROOT, authority(), late.identity.public_key, 1)
        await service.add([encode_statement(revocation)], source="the test")
        with pytest.raises(TicketError, match="revoked"):
            await late.join((await inviter.invite(3600)).encode())
        stats = inviter._security.tickets.stats  # type: ignore[union-attr]
        assert (stats["joined"], stats["join_malformed"], stats["join_refused"]) == (1, 1, 1)
        # a grant to a revoked key would change nothing: the admin socket refuses it
        regrant = make_grant(ROOT, authority(), late.identity.public_key, MEMBER, now=2)
        assert service.grants_revoked_key(encode_statement(regrant))
        fresh = make_grant(ROOT, authority(), joiner.identity.public_key, MEMBER, now=2)
        assert not service.grants_revoked_key(encode_statement(fresh))
        assert not service.grants_revoked_key(b"\x00junk")
        # a revoked inviter says so when asked for a ticket
        revoked = make_revocation(ROOT, authority(), inviter.identity.public_key, 3)
        await service.add([encode_statement(revoked)], source="the test")
        with pytest.raises(TicketError, match="this node is revoked"):
            await inviter.invite(3600)
        for each in (inviter, joiner, late):
            each.stop()


async def test_a_session_redeems_only_the_ticket_whose_key_it_used(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Whoever holds ticket A (and learned ticket B's id, not its secret) cannot spend B over
    a handshake made with A's key."""
    net = MemoryNetwork(seed=SEED)
    async with running_nodes(net, 2, SETTINGS, seed=SEED, keyrings=keyrings) as nodes:
        inviter, joiner = nodes
        first = await inviter.invite(3600)
        second = await inviter.invite(3600)
        stream = await joiner.streams.open(
            inviter.address, JOIN_PROTOCOL, node_id=inviter.node_id, network_key=first.key
        )
        async with stream:
            await stream.send(envelope.encode(JoinRequest(second.id)))
            reply = envelope.decode(await stream.receive(), FRAME_LIMITS).message
        assert isinstance(reply, JoinReply)
        assert not reply.admitted
        assert "not the ticket this session used" in reply.reason
        tickets = inviter._security.tickets if inviter._security is not None else None
        assert tickets is not None
        assert tickets.stats["join_other_ticket"] == 1
        assert len(inviter.keyring.tickets) == 2  # neither was spent
        await joiner.join(second.encode())
        assert joiner.keyring.private
        assert len(inviter.keyring.tickets) == 1


async def test_an_admitted_joiner_keeps_its_admission_when_the_inviter_does_not_answer_a_ping(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The ticket is spent once redeemed (over TCP): a lost ping afterwards (UDP dropped on
    the way back) is a warning, not a failed join that would throw the admission away."""
    net = MemoryNetwork(seed=SEED)
    async with running_nodes(net, 2, SETTINGS, seed=SEED, keyrings=keyrings) as nodes:
        inviter, joiner = nodes
        ticket = await inviter.invite(3600)
        assert inviter.address is not None
        assert joiner.address is not None
        net.set_link(inviter.address.host, joiner.address.host, loss=1.0)
        await joiner.join(ticket.encode())
        assert joiner.keyring.private
        service = joiner.authority_service
        assert service is not None
        assert service.member(joiner.identity.public_key)
        net.clear_link(inviter.address.host, joiner.address.host)
        with trio.fail_after(120):
            await wait_for(lambda: alive(inviter, joiner) and alive(joiner, inviter))
