"""How a node gets into a network: invites it gives, invites and tickets it uses.

`invite` makes the way in this node offers (a single-use ticket on a private network, a
reusable token on an open one); `join` uses one: a ticket is redeemed over ``join/1`` first,
then the inviter must answer a signed ping, then the DHT bootstraps and membership joins
through it. The node's methods of the same names call these.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

import trio

from plexinode.dht.contact import Contact
from plexinode.errors import PeerTimeout
from plexinode.membership.invite import Invite, InviteError, make_invite
from plexinode.membership.service import Seed
from plexinode.net.interfaces import outward_addresses
from plexinode.net.pinging import Pinger, unanswered
from plexinode.security.ticket_service import redeem
from plexinode.security.tickets import Ticket, parse_way_in

if TYPE_CHECKING:
    from plexinode.node import Node

log = logging.getLogger(__name__)

#: How long `join` waits for membership to take part (at once when bound to a given address).
MEMBERSHIP_READY_WAIT: Final = 10.0


async def invite(node: Node, expires: float) -> Invite | Ticket:
    """A way in through this node, valid for `expires` seconds: on a private network a
    single-use ticket, on an open network a reusable invite token.

    Raises:
        InviteError, TicketError: No address others can reach yet, or (private) this node
            may not admit members or holds too many open tickets.
    """
    # Told by no peer yet where it is seen (a founder's first invite): where it sends from.
    addresses = node.dht.advertised_addresses() or outward_addresses(node._bound_address())
    if node._security is not None and node._security.tickets is not None:
        return await node._security.tickets.issue(addresses, expires)
    network, until = node.settings.network, int(node._wall_clock() + expires)
    return make_invite(node.identity, network, addresses, until)


async def join(node: Node, token: str) -> int:
    """Join the network of an invite token or a ticket through the inviter only (its node
    ID is in the token), for the DHT and membership; the DHT then keeps the contacts it
    made. A ticket is redeemed first (this node becomes a member of the private network);
    then the inviter must answer a signed ping (once admitted, a warning if it does not).
    Returns how many DHT contacts this node has after the bootstrap through the inviter.

    Raises:
        InviteError, TicketError: The token is unusable, made by this node, for another
            network, or refused by the inviter.
        PeerTimeout: The inviter did not answer (an invite token's)."""
    way_in = parse_way_in(token, node._wall_clock())
    inviter, addresses = way_in.inviter_id, way_in.bootstrap()
    if inviter == node.node_id:
        raise InviteError("this invite was made by this node: give it to the node that joins")
    if way_in.network != node.settings.network:
        raise InviteError(
            f"this node belongs to network {node.settings.network!r} and the invite is for "
            f"{way_in.network!r}: use a new data dir (`start --join-file FILE`) to join it"
        )
    admitted = False
    if isinstance(way_in, Ticket) and node._security is not None:
        admitted = True  # once redeemed below
        node._security.check_can_join(way_in)
        redeemed = await redeem(node.streams, node.identity, way_in, node._wall_clock())
        await node._security.join_private(way_in, redeemed)
        await node._keep_private()  # from now on, never without its keys
    pinger = Pinger(node.datagrams, node.streams, node._resolver, node._bound_address())
    why_not = await unanswered(pinger, inviter, addresses)
    if why_not is not None and not admitted:
        raise PeerTimeout(f"the inviter {inviter.short()} did not answer: {why_not}")
    if why_not is not None:  # admitted (the ticket is spent): never lost for a ping
        log.warning("admitted, but the inviter %s did not answer: %s", inviter.short(), why_not)
    known = [Contact(inviter, address) for address in addresses]
    contacts = await node.dht.bootstrap(addresses, known)
    await node.dht.persist()
    if await membership_ready(node):
        await node.membership.join([Seed(address, inviter) for address in addresses])
    return contacts


async def membership_ready(node: Node) -> bool:
    """Wait for membership to take part, if it can: not while a node bound to a wildcard
    address has not learnt its address (it joins through its seeds once it has)."""
    if node._member_address() is None:
        return False
    with trio.move_on_after(MEMBERSHIP_READY_WAIT):
        await node.membership.ready.wait()
    return node.membership.ready.is_set()
