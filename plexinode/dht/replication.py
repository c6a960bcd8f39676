"""Replication choices, sans I/O: which held records go to a new contact, and which are due again.

A record lives on the ``k`` nodes closest to its key. Those nodes change as nodes come and go,
so every holder keeps its records where they belong in two ways (the Kademlia paper's):

Handoff. When a node enters our routing table, we give it the records it is now among the ``k``
closest nodes to, provided we are the closest to their key of all the nodes we know: then only
one holder sends each record instead of all ``k`` (:meth:`Replication.records_for`). The test
needs, per record, the distances to its key of the closest and of the ``k``-th closest contact
we know (its *radius*). It runs for every contact added to the table, and a sort of the table
per record each time would dominate a busy node's CPU, so both distances are cached per record
for ``radius_max_age`` seconds.

Republishing. Every republish interval, each holder stores its records again on the ``k``
closest nodes, except the records it published itself (their owner re-signs those) and the
records stored here, or republished by us, within the last interval: somebody else just did the
work (the paper's optimisation). :meth:`Replication.touched` records those moments and
:meth:`Replication.republish_due` makes the choice.

The DHT service feeds this core what happened (a store arrived, a record was republished, the
store dropped some records) with the time as ``now``, and asks it what to send; it sends nothing
itself and keeps no clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, TypeAlias

from plexinode.dht.contact import distance
from plexinode.dht.records import Record
from plexinode.dht.routing import RoutingTable
from plexinode.dht.store import PutResult, Stored, Unchanged
from plexinode.identity import NodeId

#: How long the distances of a record's key to our closest and k-th closest contacts are reused
#: (see :meth:`Replication.records_for`): tables change slowly next to how often contacts are
#: added while a network forms, and a slightly old radius only sends a record a little too
#: widely or narrowly until the next republish corrects it.
RADIUS_MAX_AGE: Final = 60.0

RecordId: TypeAlias = tuple[int, bytes, bytes]  # (rtype, key, publisher)

#: A distance greater than any between two IDs: the radius while we know fewer than k contacts.
_INFINITE: Final = 1 << 256


def record_id(record: Record) -> RecordId:
    """What identifies a held record: one per type, key and publisher."""
    return (record.rtype, record.key, record.publisher)


class Replication:
    """The replication state of one node's record store.

    Args:
        routing: Our routing table (read only: the contacts closest to a record's key).
        own_publisher: Our public key, the publisher of the records we own.
        k: Replication factor: a record belongs on the k closest nodes to its key.
        radius_max_age: Seconds a record's cached radius is reused.
    """

    def __init__(
        self,
        routing: RoutingTable,
        own_publisher: bytes,
        *,
        k: int,
        radius_max_age: float = RADIUS_MAX_AGE,
    ) -> None:
        self.routing: Final = routing
        self.own_publisher: Final = own_publisher
        self.k: Final = k
        self.radius_max_age: Final = radius_max_age
        self._own_int = int.from_bytes(routing.own_id.raw, "big")
        # When each held record was last stored here or republished by us.
        self._touched: dict[RecordId, float] = {}
        # Per record: distance of the closest and of the k-th closest contact, and when.
        self._radius: dict[RecordId, tuple[int, int, float]] = {}

    # -- republishing ----------------------------------------------------------------------------

    def touched(self, record: Record, now: float) -> None:
        """`record` was stored here or republished by us at `now`."""
        self._touched[record_id(record)] = now

    def stored(self, record: Record, outcome: PutResult, now: float) -> None:
        """A peer asked us to store `record` and the store answered `outcome`.

        A record stored, or offered again at the very version held (someone else republished
        it), counts as touched; a refused one or an older version does not.
        """
        if isinstance(outcome, Stored) or (
            isinstance(outcome, Unchanged) and outcome.held.seq == record.seq
        ):
            self.touched(record, now)

    def republish_due(self, record: Record, *, quiet_since: float, now: float) -> bool:
        """Whether to store `record` again now: not ours, not touched after `quiet_since`, and
        not expired at `now`."""
        if record.publisher == self.own_publisher:
            return False
        if self._touched.get(record_id(record), 0.0) > quiet_since:
            return False
        return record.expires_at > now

    def forget_gone(self, held: Iterable[Record]) -> None:
        """Drop what is kept about records that are no longer held (`held` is all that is)."""
        live = {record_id(r) for r in held}
        for gone in [i for i in self._touched if i not in live]:
            del self._touched[gone]
        for gone in [i for i in self._radius if i not in live]:
            del self._radius[gone]

    # -- what we accept --------------------------------------------------------------------------

    def among_closest(self, key: bytes, besides: NodeId | None = None) -> bool:
        """Whether this node is among the k nodes closest to `key` that it knows of (the live
        contacts of its table and itself, `besides` left out: the node asking us to store a
        record holds it already, so it does not take one of the k places).

        A STORE for any other key is refused: a record belongs on the k closest nodes, and a
        node that kept records for any key would let a few identities fill the provider slots
        of every node in the network, not only of the k that serve the key.
        """
        target = NodeId(key)
        exclude = () if besides is None else (besides,)
        closest = self.routing.closest(target, self.k, exclude=exclude, live_only=True)
        if len(closest) < self.k:
            return True
        own = int.from_bytes(key, "big") ^ self._own_int
        return own < distance(closest[-1].node_id, target)

    # -- handoff ---------------------------------------------------------------------------------

    def records_for(self, newcomer: NodeId, held: Iterable[Record], now: float) -> list[Record]:
        """The records of `held` to hand to `newcomer`, a contact just added to the table.

        A record qualifies if it has not expired, `newcomer` is closer to its key than the k-th
        closest contact we know besides it, we are closer than every contact we know besides
        it, and `newcomer` did not publish it. The order of `held` is kept.
        """
        their_id = int.from_bytes(newcomer.raw, "big")
        out = []
        for record in held:
            if record.expires_at <= now:
                continue
            key = int.from_bytes(record.key, "big")
            nearest, radius = self.radius_of(record, newcomer, now)
            qualifies = (key ^ self._own_int) < nearest and (key ^ their_id) < radius
            # (publisher_id is a hash: checked last, only for records that qualify)
            if qualifies and record.publisher_id != newcomer:
                out.append(record)
        return out

    def radius_of(self, record: Record, newcomer: NodeId, now: float) -> tuple[int, int]:
        """The distances to `record`'s key of the closest and of the k-th closest contacts we
        know besides `newcomer` ("infinite" while we know fewer than k), cached for
        ``radius_max_age`` seconds per record."""
        rid = record_id(record)
        cached = self._radius.get(rid)
        if cached is not None and cached[2] > now - self.radius_max_age:
            return cached[0], cached[1]
        key = NodeId(record.key)
        closest = self.routing.closest(key, self.k, exclude=(newcomer,))
        nearest = distance(closest[0].node_id, key) if closest else _INFINITE
        radius = distance(closest[-1].node_id, key) if len(closest) >= self.k else _INFINITE
        self._radius[rid] = (nearest, radius, now)
        return nearest, radius
