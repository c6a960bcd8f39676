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
from plexinode.security.statements import AUTHORITY_PROTOCOL
from plexinode.security.ticket_service import redeem
from plexinode.security.tickets import Ticket, TicketError
from plexinode.testing.authority import KEY, ROOT, founded
from plexinode.testing.member_cluster import NETWORK
from plexinode.testing.network import MemoryNetwork
from plexinode.testing.nodes import FAST, running_nodes
from plexinode.testing.scheduling import wait_for

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
