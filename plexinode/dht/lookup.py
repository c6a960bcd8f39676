"""The iterative Kademlia lookup over d disjoint paths (S/Kademlia), as a sans-I/O state machine.

This module owns no sockets, no tasks and no clock. A trio driver feeds a :class:`Lookup` the
events it sees (a reply arrived, a query failed, a query is taking long) together with the time
it read from its own clock, and asks it which queries to send next. Everything here is
deterministic given that sequence of calls, which is what lets the unit tests run thousands of
lookups over a simulated network in a second.

Why one file of more than 500 lines: the lookup is one state machine, and its rules (disjoint
paths, the per-path budget, slow and late replies, other addresses for a node) all act on the
same shortlist entries: each is correct only together with the others. Most of the length is
this essay and the documented statistics and result types the callers read.

The plain Kademlia lookup
-------------------------

To find the nodes closest to a target ID, a node starts from the closest contacts its routing
table holds (the *seeds*) and keeps a *shortlist* of candidates sorted by XOR distance to the
target. It asks up to ``alpha`` of the closest unqueried candidates at once "which nodes do you
know closest to the target?", merges the contacts each reply returns into the shortlist, and
repeats. Each round trip roughly halves the distance, which is why a lookup takes O(log N) hops.
It stops when the ``k`` closest candidates it knows (ignoring those that failed) have all
answered: nobody closer is left to ask.

Why one shortlist is not enough
-------------------------------

The lookup trusts every reply. A handful of colluding nodes that answer every query only with
each other's (closer-looking) IDs will, as soon as one of them is asked, fill the ``k`` closest
slots of the shortlist with liars. From then on the lookup only talks to liars and "terminates"
without ever reaching the honest nodes around the target: one reply is enough to capture it.

Baumgart and Mies (S/Kademlia, 2007) fix this with ``d`` *disjoint* paths. The seeds, sorted by
distance, are dealt round-robin to ``d`` independent lookups, each with its own shortlist, its
own ``alpha`` queries in flight and its own termination rule. The paths are kept disjoint by one
rule: a contact joins the shortlist of the path that learned it only if *no* path has seen it
before (one global "seen" set), so every node answers at most one path. A path led astray by
liars therefore cannot pull the other paths' nodes into its trap; the liars can only offer nodes
that nobody has seen yet, and every path that reaches an honest node near the target keeps
it. The lookup succeeds if any one path stays clean, so with a fraction ``f`` of liars the
chance of failure falls roughly like ``f**d`` instead of staying near ``f``. The results of all
paths are merged at the end: :meth:`Lookup.result` returns the ``k`` closest nodes that
*answered*, whichever path asked them.

For a node lookup the target counts as found only when the target itself answers (the driver
authenticated that reply with the target's key); a reply that merely *claims* to know the
target proves nothing. As soon as the target answers, the lookup is done; likewise a value
lookup (``find_value``) is done at the first value delivered (the driver validates records
before it hands one over).

Slow nodes, failures and late replies
-------------------------------------

The driver has two timers per query. When the soft one expires (a small multiple of the measured
round-trip time) it calls :meth:`Lookup.on_slow`: the query stays outstanding, but it no longer
occupies one of its path's ``alpha`` slots, and the slow node no longer counts among the
candidates the path picks from, so the path asks the next candidate instead of waiting. A late
reply is still used in full. When the hard timeout expires, or the request fails, the driver
calls :meth:`Lookup.on_failure` and the node is dropped from consideration. A slow node among the
``k`` closest still holds up the path's termination (it is not known to be gone), so a path that
is otherwise finished waits for the answer or the failure, never longer than the hard timeout.
Whether a path is finished is decided afresh after every event, so a late reply that brings
closer contacts puts a finished path back to work, as long as the lookup as a whole is not done.
Once it is done, the lookup is frozen: later events are only counted.

Hop depth is counted per contact: seeds are at depth 1, and a contact first learned from a reply
given at depth ``h`` is at depth ``h + 1``. The statistics report the deepest reply and the depth
at which the target (or the value) was reached.

Bad replies
-----------

A reply is only as good as its sender, and the sender may be hostile. A reply from a node that
was never asked (or whose query already failed), and a second reply from the same node, are
ignored. Within a reply only the first ``k`` contacts are looked at (the count is checked before
anything is processed), and contacts naming us, repeating an ID already in the same reply, or
carrying an address no peer can be reached at are skipped. Every one of these is counted in
:class:`LookupStats`.

Liars can also invent fresh IDs that look ever closer to the target, forever. Every query is
charged to a budget, ``max_queries`` in total (by default ``QUERY_BUDGET_FACTOR * k * d``), and
each path may spend at most its equal share of it, so a path captured by such liars cannot starve
the others. A path that has spent its share finishes once its outstanding queries are resolved.

A liar can also name an honest node (the target, say) at an address that is not that node's.
Since the seen set is keyed by node ID, the first address heard would win and every path would be
locked out of the real one. So a node remembers the first address each path offered for it (at
most ``d`` addresses in all, in the order heard). When the query at one address fails and another
is known, or another path offers a new address after all known ones failed, the node becomes a
candidate again at that address, on the path that offered it. Disjointness still holds where it
matters: a node *answers* at most one path, because once it has answered it is never asked again.
The authenticated transport makes a wrong address cost no more than one failed query: nobody
else can answer for a node ID. (Within one path, the first address heard wins: a path already
full of liars has no better source to correct it.)

What this core does not do: it sends nothing, retries nothing (the driver's request layer does),
never touches the routing table (a contact enters the routing table only after answering one of
the driver's authenticated requests, never from hearsay) and never validates records.
"""

from __future__ import annotations

import dataclasses
import enum
from bisect import insort
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from plexinode.dht.contact import Contact, distance, is_routable
from plexinode.identity import NodeId
from plexinode.net.address import Address

#: Bucket size and result size, from the Kademlia paper: large enough that k nodes chosen at
#: random are very unlikely to all leave within an hour.
DEFAULT_K: Final = 20

#: Queries in flight per path, Kademlia's value: a few round trips overlap so that one slow
#: node does not stall a path, while a lookup still sends at most ``alpha * d`` (12) at once.
DEFAULT_ALPHA: Final = 3

#: Disjoint paths. The failure chance under collusion falls roughly like ``f**d`` while the cost
#: grows about linearly with d. In the unit tests' model (N = 2,000, k = 20, 20% colluders that
#: always answer first, 20% of honest nodes gone) d = 1 found 89% of targets and d = 4 all.
DEFAULT_PATHS: Final = 4

#: Query budget per path, in units of k. A path that runs to the end costs about k queries,
#: fewer when the other paths have already seen its neighbourhood: in the unit tests (N = 500,
#: k = 20, d = 4) a lookup of a key held by no node took a median of 71 queries and at most 95
#: in all, 123 with 30% of the nodes dead; a node lookup, which ends when the target answers,
#: took a median of 23. Three k per path (240 at k = 20, d = 4) is about twice the worst seen
#: and still bounds a lookup that liars keep feeding with fresh IDs.
QUERY_BUDGET_FACTOR: Final = 3


class _State(enum.Enum):
    UNQUERIED = "unqueried"
    IN_FLIGHT = "in flight"
    SLOW = "slow"  # still outstanding, but no longer holds an alpha slot
    RESPONDED = "responded"
    FAILED = "failed"  # every known address failed


_OUTSTANDING: Final = frozenset({_State.IN_FLIGHT, _State.SLOW})
_IN_FLIGHT: Final = frozenset({_State.IN_FLIGHT})


@dataclass(frozen=True, slots=True)
class Query:
    """A query the driver should send now.

    Attributes:
        contact: Whom to ask, at which address.
        path: Index of the disjoint path (0 to d - 1) the query belongs to.
        depth: Hop depth of the contact: 1 for seeds, ``h + 1`` for a contact first learned
            from a reply at depth ``h``.
    """

    contact: Contact
    path: int
    depth: int


@dataclass(frozen=True, slots=True)
class LookupStats:
    """What one lookup cost and what it had to ignore.

    Attributes:
        queries: Queries handed to the driver.
        responses: Replies accepted (each node at most once).
        failures: Queries that failed (timeout or error).
        slow: Queries declared slow by the driver's soft timeout.
        max_hops: Greatest depth of a node that replied (0 if none did).
        target_hops: Depth of the target when it replied itself, else None.
        value_hops: Depth of the node that delivered the value, else None.
        ignored_own_id: Returned contacts that named us.
        ignored_duplicates: Returned contacts that repeated an ID within the same reply.
        ignored_unroutable: Returned contacts with an address no peer can be reached at.
        ignored_excess: Returned contacts beyond the first k of a reply.
        unsolicited: Replies from nodes that were not being asked (never queried, or failed).
        repeated: Second and later replies from a node that already replied.
        late: Events that arrived after the lookup was done (ignored).
        budget_exhausted: True if some path stopped because it spent its share of queries.
        duration: Time from the first call that passed ``now`` to the moment the lookup was done
            (or to the latest call, while it is running).
    """

    queries: int
    responses: int
    failures: int
    slow: int
    max_hops: int
    target_hops: int | None
    value_hops: int | None
    ignored_own_id: int
    ignored_duplicates: int
    ignored_unroutable: int
    ignored_excess: int
    unsolicited: int
    repeated: int
    late: int
    budget_exhausted: bool
    duration: float

    @classmethod
    def direct(cls, answered: bool, duration: float) -> LookupStats:
        """The cost of asking the target itself, once, with no lookup around it."""
        return cls(
            queries=1,
            responses=int(answered),
            failures=int(not answered),
            slow=0,
            max_hops=int(answered),
            target_hops=1 if answered else None,
            value_hops=None,
            ignored_own_id=0,
            ignored_duplicates=0,
            ignored_unroutable=0,
            ignored_excess=0,
            unsolicited=0,
            repeated=0,
            late=0,
            budget_exhausted=False,
            duration=duration,
        )


@dataclass(frozen=True, slots=True)
class LookupResult:
    """The outcome of a lookup.

    Attributes:
        target: The ID that was looked up.
        closest: The k closest nodes that replied, across all paths, nearest first, each at the
            address it replied from.
        found_target: True if the target node itself replied.
        value: The first value delivered (``find_value`` lookups only), else None.
        value_from: The node that delivered `value`, else None.
        stats: Counters for this lookup.
    """

    target: NodeId
    closest: tuple[Contact, ...]
    found_target: bool
    value: object | None
    value_from: Contact | None
    stats: LookupStats


def merge_stages(stages: Sequence[LookupResult]) -> LookupResult:
    """One result for lookups run one after another (the stages of a locate, say): the last
    stage's findings, every stage's costs (queries, failures, time and the like summed; the hop
    counts are those of the last stage, and the budget counts as exhausted if any stage's was).

    Raises:
        ValueError: `stages` is empty.
    """
    if not stages:
        raise ValueError("no lookup to merge")
    last = stages[-1]
    if len(stages) == 1:
        return last
    totals: dict[str, Any] = {}
    for name in (f.name for f in dataclasses.fields(LookupStats)):
        values = [getattr(stage.stats, name) for stage in stages]
        if name in ("target_hops", "value_hops", "max_hops"):
            totals[name] = values[-1]
        elif name == "budget_exhausted":
            totals[name] = any(values)
        else:
            totals[name] = sum(values)
    return dataclasses.replace(last, stats=LookupStats(**totals))


@dataclass(frozen=True, slots=True)
class _Offer:
    """An address for a node, as one path heard it."""

    address: Address
    path: int
    depth: int


@dataclass(slots=True, eq=False)
class _Entry:
    """A node some path has seen: where to reach it and how far its query got."""

    node_id: NodeId
    distance: int
    path: int
    depth: int
    # Addresses heard for this node, at most one from each path, in the order heard.
    offers: list[_Offer]
    current: int = 0  # index in `offers` of the address being (or to be) queried
    state: _State = _State.UNQUERIED

    @property
    def contact(self) -> Contact:
        return Contact(self.node_id, self.offers[self.current].address)


@dataclass(slots=True, eq=False)
class _Path:
    """One of the d disjoint lookups."""

    shortlist: list[_Entry] = field(default_factory=list)  # sorted by distance
    in_flight: int = 0  # IN_FLIGHT entries: the ones holding an alpha slot
    outstanding: int = 0  # IN_FLIGHT and SLOW entries
    queries: int = 0


class Lookup:
    """One iterative lookup of `target` over `paths` disjoint paths.

    Drive it by calling :meth:`next_queries` and sending what it returns, reporting every
    outcome with :meth:`on_response`, :meth:`on_failure` or :meth:`on_slow`, until :attr:`done`;
    then read :meth:`result`. Whenever no query is outstanding and the lookup is not done,
    :meth:`next_queries` returns at least one query, so a driver that stops when it has nothing
    in flight never stops early.

    Args:
        target: The ID to look up (a node ID, or a key for ``find_value``).
        seeds: Starting contacts, normally the k closest of the routing table. Our own ID,
            repeated IDs and unroutable addresses are dropped; of the rest the k closest are
            used.
        own_id: Our node ID, never queried or learned.
        k: Result size and per-path termination window.
        alpha: Queries in flight per path.
        paths: Number of disjoint paths (d).
        find_value: Stop at the first value delivered instead of at the target node.
        max_queries: Total query budget; defaults to ``QUERY_BUDGET_FACTOR * k * paths``. Each
            path may spend at most an equal share of it.

    Raises:
        ValueError: If `k`, `alpha`, `paths` or `max_queries` is less than 1.
    """

    def __init__(
        self,
        target: NodeId,
        seeds: Sequence[Contact],
        *,
        own_id: NodeId,
        k: int = DEFAULT_K,
        alpha: int = DEFAULT_ALPHA,
        paths: int = DEFAULT_PATHS,
        find_value: bool = False,
        max_queries: int | None = None,
    ) -> None:
        if max_queries is None:
            max_queries = QUERY_BUDGET_FACTOR * k * paths
        for name, number in (("k", k), ("alpha", alpha), ("paths", paths)):
            if number < 1:
                raise ValueError(f"{name} must be at least 1, got {number}")
        if max_queries < 1:
            raise ValueError(f"max_queries must be at least 1, got {max_queries}")
        self.target: Final = target
        self.own_id: Final = own_id
        self.k: Final = k
        self.alpha: Final = alpha
        self.find_value: Final = find_value
        self.max_queries: Final = max_queries

        self._paths = [_Path() for _ in range(paths)]
        self._seen: dict[NodeId, _Entry] = {}
        self._responded: list[_Entry] = []
        self._queries = 0
        self._responses = 0
        self._failures = 0
        self._slow = 0
        self._max_hops = 0
        self._target_hops: int | None = None
        self._value: object | None = None
        self._value_from: Contact | None = None
        self._value_hops: int | None = None
        self._ignored_own_id = 0
        self._ignored_duplicates = 0
        self._ignored_unroutable = 0
        self._ignored_excess = 0
        self._unsolicited = 0
        self._repeated = 0
        self._late = 0
        self._budget_exhausted = False
        self._started: float | None = None
        self._last: float | None = None
        self._finished_at: float | None = None
        self._done = False

        usable: dict[NodeId, Contact] = {}
        for seed in seeds:
            if seed.node_id != own_id and is_routable(seed.address):
                usable.setdefault(seed.node_id, seed)
        ordered = sorted(usable.values(), key=lambda c: distance(c.node_id, target))[:k]
        for index, seed in enumerate(ordered):
            self._add(seed, index % paths, depth=1)
        # Paths that got no seed are finished from the start and do not share the budget.
        self._share = -(-max_queries // max(1, min(len(ordered), paths)))
        self._update_done(None)

    # -- driving API ---------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        """True once the lookup has its answer or nothing more to ask."""
        return self._done

    def next_queries(self, now: float) -> list[Query]:
        """The queries that may start now; they are marked in flight.

        Each path gets up to ``alpha`` queries in flight (slow ones excepted), to its closest
        unqueried candidates among its k closest live contacts, within its share of the budget.

        Args:
            now: The driver's clock.

        Returns:
            The queries to send, possibly none.
        """
        self._tick(now)
        if self._done:
            return []
        queries: list[Query] = []
        for index, path in enumerate(self._paths):
            room = min(
                self.alpha - path.in_flight,
                self._share - path.queries,
                self.max_queries - self._queries,
            )
            if room <= 0:
                continue
            for entry in self._candidates(path, room):
                entry.state = _State.IN_FLIGHT
                path.in_flight += 1
                path.outstanding += 1
                path.queries += 1
                self._queries += 1
                queries.append(Query(entry.contact, index, entry.depth))
        self._update_done(now)
        return queries

    def on_response(
        self,
        contact_node_id: NodeId,
        returned: Sequence[Contact],
        now: float,
        *,
        value: object | None = None,
    ) -> None:
        """A queried node replied.

        Args:
            contact_node_id: The node that replied (authenticated by the driver).
            returned: The contacts it returned; only the first k are considered.
            now: The driver's clock.
            value: The validated value it delivered, if any (``find_value`` lookups only;
                ignored otherwise).
        """
        self._tick(now)
        if self._done:
            self._late += 1
            return
        entry = self._seen.get(contact_node_id)
        if entry is None or entry.state not in _OUTSTANDING:
            if entry is not None and entry.state is _State.RESPONDED:
                self._repeated += 1
            else:
                self._unsolicited += 1
            return
        path = self._paths[entry.path]
        self._settle(entry, path)
        entry.state = _State.RESPONDED
        self._responded.append(entry)
        self._responses += 1
        self._max_hops = max(self._max_hops, entry.depth)
        if contact_node_id == self.target:
            self._target_hops = entry.depth
        if self.find_value and value is not None:
            self._value = value
            self._value_from = entry.contact
            self._value_hops = entry.depth
        if not self._early_finish():
            self._learn(returned, entry)
        self._update_done(now)

    def _event_entry(self, node_id: NodeId, now: float, states: frozenset[_State]) -> _Entry | None:
        """The entry a failure or slow event is about, if it is in one of `states` and the
        lookup still runs (events after the end are counted as late)."""
        self._tick(now)
        if self._done:
            self._late += 1
            return None
        entry = self._seen.get(node_id)
        if entry is None or entry.state not in states:
            return None
        return entry

    def on_failure(self, node_id: NodeId, now: float) -> None:
        """A query failed (hard timeout or error); the node is dropped from consideration.

        If a different address is known for the node, the node becomes a candidate again at that
        address, on the path that offered it. Calls for nodes not being asked are ignored.

        Args:
            node_id: The node whose query failed.
            now: The driver's clock.
        """
        entry = self._event_entry(node_id, now, _OUTSTANDING)
        if entry is None:
            return
        path = self._paths[entry.path]
        self._settle(entry, path)
        self._failures += 1
        entry.state = _State.FAILED
        if entry.current + 1 < len(entry.offers):
            self._reopen(entry, entry.current + 1)
        self._update_done(now)

    def on_slow(self, node_id: NodeId, now: float) -> None:
        """A query passed the driver's soft timeout but may still be answered.

        Its alpha slot is freed and the path picks its next candidate past the slow node; a late
        reply is still accepted and used. Calls for nodes not in flight are ignored.

        Args:
            node_id: The node that is slow to answer.
            now: The driver's clock.
        """
        entry = self._event_entry(node_id, now, _IN_FLIGHT)
        if entry is None:
            return
        self._paths[entry.path].in_flight -= 1
        entry.state = _State.SLOW
        self._slow += 1

    def result(self) -> LookupResult:
        """The outcome so far; final once :attr:`done` is True.

        Returns:
            The k closest nodes that replied, the target and value findings, and the counters.
        """
        closest = sorted(self._responded, key=lambda e: e.distance)[: self.k]
        end = self._finished_at if self._finished_at is not None else self._last
        duration = 0.0 if self._started is None or end is None else end - self._started
        stats = LookupStats(
            queries=self._queries,
            responses=self._responses,
            failures=self._failures,
            slow=self._slow,
            max_hops=self._max_hops,
            target_hops=self._target_hops,
            value_hops=self._value_hops,
            ignored_own_id=self._ignored_own_id,
            ignored_duplicates=self._ignored_duplicates,
            ignored_unroutable=self._ignored_unroutable,
            ignored_excess=self._ignored_excess,
            unsolicited=self._unsolicited,
            repeated=self._repeated,
            late=self._late,
            budget_exhausted=self._budget_exhausted,
            duration=duration,
        )
        return LookupResult(
            target=self.target,
            closest=tuple(entry.contact for entry in closest),
            found_target=self._target_hops is not None,
            value=self._value,
            value_from=self._value_from,
            stats=stats,
        )

    # -- internals -----------------------------------------------------------------------------

    def _tick(self, now: float) -> None:
        if self._done:
            return
        if self._started is None:
            self._started = now
        self._last = now

    def _add(self, contact: Contact, path_index: int, depth: int) -> None:
        entry = _Entry(
            node_id=contact.node_id,
            distance=distance(contact.node_id, self.target),
            path=path_index,
            depth=depth,
            offers=[_Offer(contact.address, path_index, depth)],
        )
        self._seen[contact.node_id] = entry
        insort(self._paths[path_index].shortlist, entry, key=lambda e: e.distance)

    def _settle(self, entry: _Entry, path: _Path) -> None:
        """Release the slot (if any) an outstanding entry holds."""
        if entry.state is _State.IN_FLIGHT:
            path.in_flight -= 1
        path.outstanding -= 1

    def _learn(self, returned: Sequence[Contact], responder: _Entry) -> None:
        if len(returned) > self.k:
            self._ignored_excess += len(returned) - self.k
            returned = returned[: self.k]
        in_reply: set[NodeId] = set()
        for contact in returned:
            if contact.node_id == self.own_id:
                self._ignored_own_id += 1
                continue
            if contact.node_id in in_reply:
                self._ignored_duplicates += 1
                continue
            in_reply.add(contact.node_id)
            if not is_routable(contact.address):
                self._ignored_unroutable += 1
                continue
            known = self._seen.get(contact.node_id)
            if known is None:
                self._add(contact, responder.path, responder.depth + 1)
            else:
                self._offer(known, _Offer(contact.address, responder.path, responder.depth + 1))

    def _offer(self, entry: _Entry, offer: _Offer) -> None:
        """Remember another address for a seen node: one per path, tried if the others fail."""
        if entry.state is _State.RESPONDED or any(
            known.path == offer.path or known.address == offer.address for known in entry.offers
        ):
            return
        entry.offers.append(offer)
        if entry.state is _State.FAILED:
            self._reopen(entry, len(entry.offers) - 1)

    def _reopen(self, entry: _Entry, index: int) -> None:
        """Make a failed entry a candidate again at another address, on the path that offered it."""
        offer = entry.offers[index]
        entry.current = index
        entry.state = _State.UNQUERIED
        entry.depth = offer.depth
        # Each path offers one address per node, so this is always another path.
        self._paths[entry.path].shortlist.remove(entry)
        entry.path = offer.path
        insort(self._paths[offer.path].shortlist, entry, key=lambda e: e.distance)

    def _candidates(self, path: _Path, limit: int) -> list[_Entry]:
        """Closest unqueried entries among the path's k closest that are neither failed nor slow."""
        picked: list[_Entry] = []
        window = 0
        for entry in path.shortlist:
            if entry.state is _State.FAILED or entry.state is _State.SLOW:
                continue
            if entry.state is _State.UNQUERIED:
                picked.append(entry)
                if len(picked) == limit:
                    break
            window += 1
            if window == self.k:
                break
        return picked

    def _settled(self, path: _Path) -> bool:
        """Whether the path's k closest contacts that have not failed have all replied.

        Slow entries count here: they may still answer, so they hold up termination. A path with
        no live contact left is settled.
        """
        window = 0
        for entry in path.shortlist:
            if entry.state is _State.FAILED:
                continue
            if entry.state is not _State.RESPONDED:
                return False
            window += 1
            if window == self.k:
                break
        return True

    def _early_finish(self) -> bool:
        if self.find_value:
            return self._value_from is not None
        return self._target_hops is not None

    def _update_done(self, now: float | None) -> None:
        finished = True
        for path in self._paths:
            if self._settled(path):
                continue
            spent = path.queries >= self._share or self._queries >= self.max_queries
            if spent and path.outstanding == 0:
                self._budget_exhausted = True
                continue
            finished = False
        if finished or self._early_finish():
            self._done = True
            self._finished_at = now if now is not None else self._last
