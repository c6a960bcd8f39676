"""Telling members directly that this node leaves or stops.

A node that leaves for good (``plexinode leave``) or stops to come back (``plexinode stop``,
SIGTERM) gossips its signed ``left`` or ``stopped`` claim like any other; gossip alone may
reach a member only after the node is gone, so the node also sends the claim straight to a few
live members, at random, and waits briefly for their acks.
"""

from __future__ import annotations

from typing import Final

import trio

from plexinode.errors import PeerTimeout, RemoteProtocolError
from plexinode.identity import NodeId
from plexinode.membership.members import MemberTable
from plexinode.membership.messages import MemberPing
from plexinode.net.datagram import DatagramService
from plexinode.randomness import Rng

#: Live members told directly when this node leaves or stops.
LEAVE_FANOUT: Final = 5
#: How long telling them may take, seconds (three attempts of a third each).
LEAVE_TIMEOUT: Final = 3.0


async def tell_members(
    datagrams: DatagramService, table: MemberTable, rng: Rng, ping: MemberPing
) -> tuple[int, int]:
    """Send `ping` (which carries the claim) to up to :data:`LEAVE_FANOUT` live members of
    `table`, chosen by `rng`, all at once: (how many acknowledged, how many were told)."""
    live = list(table.others_live)
    told = rng.sample(live, min(LEAVE_FANOUT, len(live)))
    acked = 0

    async def tell(node_id: NodeId) -> None:
        nonlocal acked
        member = table.get(node_id)
        if member is None:
            return
        try:
            await datagrams.request(
                member.address,
                ping,
                node_id=node_id,
                attempt_timeout=LEAVE_TIMEOUT / 3,
                retries=2,
            )
        except (PeerTimeout, RemoteProtocolError):
            return
        acked += 1

    async with trio.open_nursery() as nursery:
        for node_id in told:
            nursery.start_soon(tell, node_id)
    return acked, len(told)
