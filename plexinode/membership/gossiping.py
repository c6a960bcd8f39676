"""What this node has to tell the others, and the loop that tells it (trio driver).

News (claims the table accepted, this node's own claims, cluster-state writes) waits in two
:class:`~plexinode.membership.gossip.GossipQueue` s, one for membership claims and one for
cluster-state entries. It leaves them in two ways:

- **piggybacked** on the probe traffic that flows anyway: each ping, ack and ping-req takes
  what fits of both queues (:meth:`Gossip.piggyback`, :meth:`Gossip.state_piggyback`);
- **on its own**, while there is news: :meth:`Gossip.run` sends one round of
  ``member-gossip`` messages to ``gossip_nodes`` random live members every ``gossip_interval``.
  News after a quiet spell goes out at once, and urgent news (a death, a leave, our own claims,
  such as a refutation) does not wait for the tick either, though rounds stay at least
  1 / :data:`URGENT_SPACING` of the interval apart (the interval grows with the node's local
  health multiplier: a starved node gossips less): each hop of a verdict costs a network delay,
  not also the wait for the next tick, which is what sets how long after the first member
  declares a death the last one knows.
"""

from __future__ import annotations

import collections
import math
import random
from collections.abc import Callable, Sequence
from typing import Final

import trio

from plexinode.identity import NodeId
from plexinode.membership.claims import SignedClaim
from plexinode.membership.gossip import GossipQueue
from plexinode.membership.members import MemberTable
from plexinode.membership.messages import (
    CLAIM_OVERHEAD,
    CLAIMS_BUDGET,
    MAX_PIGGYBACK,
    MAX_STATE_PIGGYBACK,
    STATE_BUDGET,
    MemberGossip,
)
from plexinode.membership.settings import MembershipSettings
from plexinode.membership.state import StateEntry
from plexinode.net.datagram import DatagramService
from plexinode.wire.codec import pack

#: Urgent gossip rounds (deaths, leaves, our own claims) are at least gossip_interval / this
#: apart.
URGENT_SPACING: Final = 5


def _claim_size(claim: SignedClaim) -> int:
    return claim.wire_size()


def _entry_size(entry: StateEntry) -> int:
    return len(pack(entry.to_wire()))


class Gossip:
    """The gossip queues of one node, and its gossip loop.

    Args:
        datagrams: Where gossip rounds are sent.
        settings: The retransmission multiplier, the round interval and fan-out.
        rng: Picks each round's members.
        stats: The membership counters (``gossip_sent``).
        live: How many members are live (alive or suspect), this node included: the N of the
            retransmission limit.
        left: Whether this node has left (it then gossips no more rounds).
        slowdown: How many times longer than ``gossip_interval`` rounds are apart now: the
            prober's local health multiplier, so that a node in ill health (starved,
            overloaded) gossips less instead of more.
    """

    def __init__(
        self,
        datagrams: DatagramService,
        settings: MembershipSettings,
        rng: random.Random,
        stats: collections.Counter[str],
        *,
        live: Callable[[], int],
        left: Callable[[], bool],
        slowdown: Callable[[], int] = lambda: 1,
    ) -> None:
        self._datagrams = datagrams
        self._slowdown = slowdown
        self._settings = settings
        self._rng = rng
        self._stats = stats
        self._live = live
        self._left = left
        #: Membership claims waiting to be sent, one per member.
        self.claims: GossipQueue[SignedClaim] = GossipQueue(
            _claim_size, retransmit_mult=settings.retransmit_mult
        )
        #: Cluster-state entries waiting to be sent, one per key.
        self.state: GossipQueue[StateEntry] = GossipQueue(
            _entry_size, retransmit_mult=settings.retransmit_mult
        )
        self._news = trio.Event()  # set when something is queued
        self._urgent = trio.Event()  # set when a death, a leave or our own claim is queued

    def queue_claim(self, node_id: NodeId, claim: SignedClaim, *, urgent: bool) -> None:
        """Queue `claim` about member `node_id`; `urgent` news goes out in a round of its own
        at once rather than at the next tick."""
        self.claims.add(node_id, claim)
        self._news.set()
        if urgent:
            self._urgent.set()

    def queue_state(self, key: str, entry: StateEntry) -> None:
        """Queue the cluster-state `entry` of `key`."""
        self.state.add(key, entry)
        self._news.set()

    def piggyback(self, first: Sequence[SignedClaim] = ()) -> tuple[SignedClaim, ...]:
        """The claims for one probe message: `first` (what the message must carry), then the
        queued claims that fit."""
        budget = CLAIMS_BUDGET - sum(_claim_size(c) for c in first)
        taken = self.claims.take(budget, self._live(), overhead=CLAIM_OVERHEAD)
        if first:
            taken = [claim for claim in taken if claim not in first]
        return (*first, *taken)[:MAX_PIGGYBACK]

    def state_piggyback(self) -> tuple[StateEntry, ...]:
        """The cluster-state entries for one probe message."""
        taken = self.state.take(STATE_BUDGET, self._live())
        return tuple(taken[:MAX_STATE_PIGGYBACK])

    async def run(self, table: MemberTable) -> None:
        """While news is queued, one round every ``gossip_interval`` (module docstring)."""
        last_round = -math.inf
        while True:
            interval = self._settings.gossip_interval * self._slowdown()
            if not (self.claims or self.state) or self._left():
                self._news = trio.Event()
                await self._news.wait()
                continue
            with trio.move_on_at(last_round + interval):
                await self._urgent.wait()
                await trio.sleep_until(last_round + interval / URGENT_SPACING)
            self._urgent = trio.Event()
            if not (self.claims or self.state) or self._left():
                continue
            last_round = trio.current_time()
            live = list(table.others_live)
            for node_id in self._rng.sample(live, min(self._settings.gossip_nodes, len(live))):
                member = table.get(node_id)
                claims, state = self.piggyback(), self.state_piggyback()
                if member is None or not (claims or state):
                    break
                self._stats["gossip_sent"] += 1
                message = MemberGossip(claims, state)
                await self._datagrams.send(member.address, message, node_id=node_id)
