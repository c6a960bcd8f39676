"""A check on a membership simulation: no dead or left member comes back from the dead.

A member that died or left may return only through a higher incarnation of its own (a restart,
or its refutation of a suspicion); seen again at the incarnation it ended at, or a lower one, it
is a zombie, which SWIM's incarnation rule exists to prevent.
"""

from __future__ import annotations

import collections

import trio

from plexinode.identity import NodeId
from plexinode.membership.members import Died, Event, Joined, Left, MemberView, Suspected
from plexinode.testing.member_cluster import Cluster


class ZombieWatch:
    """Follows every node's events and checks that no dead or left member comes back except
    through a higher incarnation of its own. With `strict`, a resurrection fails at once;
    otherwise it is recorded in :attr:`resurrections` (for the benchmark). Read the events with
    :meth:`check`, often enough that the channels (10,000 events each) never fill up."""

    def __init__(self, cluster: Cluster, *, strict: bool = True) -> None:
        self.channels = [(n, n.membership.subscribe(10_000)) for n in cluster.live()]
        self.strict = strict
        #: Suspicions seen, node x member, in all and per member.
        self.suspicions = 0
        self.suspected: collections.Counter[NodeId] = collections.Counter()
        self.resurrections: list[tuple[int, MemberView]] = []
        # Per observer: the members it saw die or leave, with the incarnation they ended at.
        self._ended: dict[int, dict[NodeId, int]] = {}

    def check(self) -> int:
        """Reads the events since the last call; returns the deaths and leaves among them
        (node x member)."""
        deaths = 0
        for node, channel in self.channels:
            ended = self._ended.setdefault(node.index, {})
            while True:
                try:
                    event: Event = channel.receive_nowait()
                except trio.WouldBlock:
                    break
                member = event.member
                if isinstance(event, Suspected):
                    self.suspicions += 1
                    self.suspected[member.node_id] += 1
                elif isinstance(event, Died | Left):
                    deaths += 1
                    ended[member.node_id] = member.incarnation
                elif isinstance(event, Joined) and member.node_id in ended:
                    if member.incarnation <= ended[member.node_id]:
                        assert not self.strict, (node.index, member)
                        self.resurrections.append((node.index, member))
                    del ended[member.node_id]
        return deaths
