"""What a repair of one home must do, and who does it (sans-I/O).

A home's shares are meant to sit one index per holder on n distinct members. Members die,
leave, fail audits, and an earlier repair run on a stale view may have left an index on two
nodes or two indices on one node (Tahoe-LAFS's repairer leaves shares doubled up on survivors
that way, and then a single machine's loss costs two shares). A repair restores the *spread*,
not only the count: afterwards every index sits on a distinct live member.

**Who repairs.** Among the home's live holders, the one of lowest rendezvous rank for the
home's key (:func:`elect_repairer`, the rank of :mod:`~plexinode.shards.placement`). It is a
pure function of the key and the set of live holders a member believes in, so members with the
same view agree without a word, and members whose views differ for a while may both start:
the driver confirms the election with an idempotent claim before moving any share.

**What to repair** (:func:`plan_repair`), from the manifest's n, the holdings that provider
records report (index, holder) and the membership view (live members, and those confirmed
dead or gone for good). A holder neither live nor gone, a ``stopped`` member inside its grace
period or a suspect, is *waiting*: its shares still count (a partition that heals in time
causes no repair traffic), but it is not asked for anything.

1. Holdings of a gone holder, of the owner, or of an index outside 0..n-1 do not count
   (the last are bad input, counted in ``ignored``).
2. *Keepers*: each index keeps one holder, each holder keeps at most one index, as many
   indices in place as possible (a maximum matching, live holders tried before waiting ones,
   then by rank). So an index on a node holding two moves off it, and an index whose other
   copy sits on a node that keeps nothing else stays where it is.
3. *Moves*: every index without a keeper, first those with no live copy (to be regenerated
   from k blocks of each segment), then those whose live copy sits on a holder keeping another
   index (the ``source``, which can send its copy and then drop it), each in index order.
4. *Targets*: the moves are placed by the placement rule itself (a
   :class:`~plexinode.shards.placement.PlacementPlan`, so refusals move on the same way), over
   the live members that hold nothing of the home, with the keepers' sites counted as used. A
   repair places what it can: it asks for no happiness.
5. *Surplus*: every counted copy that is not its index's keeper, to drop once the moves are
   done (the sources of moves among them).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from plexinode.identity import NodeId
from plexinode.shards.coding import MAX_SHARES
from plexinode.shards.placement import (
    Candidate,
    PlacementPlan,
    PlacementRequest,
    rank,
    score,
)


def elect_repairer(
    key: bytes, holders: Iterable[NodeId], live: Collection[NodeId]
) -> NodeId | None:
    """The live holder of lowest rank for `key`, or None when no holder is live."""
    alive = {node for node in holders if node in live}
    return min(alive, key=lambda node: (score(key, node), node), default=None)


@dataclass(frozen=True, slots=True)
class Holding:
    """`holder` reports (in a provider record) that it holds share index `index`."""

    index: int
    holder: NodeId


@dataclass(frozen=True, slots=True)
class RepairRequest:
    """One home's state as a repairer sees it.

    Attributes:
        key: The home's backup ID.
        owner: The owner's node ID (never a holder).
        n: Shares per segment (the manifest's n).
        holdings: What the holders report, in any order.
        live: The live members, with their sites.
        gone: Members confirmed dead or gone for good (or whose audit failed).
    """

    key: bytes
    owner: NodeId
    n: int
    holdings: tuple[Holding, ...]
    live: tuple[Candidate, ...]
    gone: frozenset[NodeId] = frozenset()


@dataclass(frozen=True, slots=True)
class Move:
    """Share index `index` needs a new holder; `source` is a live node holding a copy it keeps
    no longer, or None when the index must be regenerated from k blocks per segment."""

    index: int
    source: NodeId | None


@dataclass(frozen=True, slots=True)
class RepairPlan:
    """What to do; see the module's docstring.

    Attributes:
        keep: Index -> the holder it stays on.
        moves: The indices to place, most urgent first.
        surplus: Copies to drop once the moves are done.
        ignored: Holdings of an index outside 0..n-1.
        placement: The request that places the moves (see :meth:`start`).
    """

    keep: Mapping[int, NodeId]
    moves: tuple[Move, ...]
    surplus: tuple[Holding, ...]
    ignored: int
    placement: PlacementRequest

    @property
    def healthy(self) -> bool:
        """Every index sits on a distinct holder: nothing to move."""
        return not self.moves

    def start(self) -> PlacementPlan:
        """The placement plan for the moves: offers to send, refusals to feed back."""
        return PlacementPlan(self.placement)


def _match(choices: Mapping[int, list[NodeId]]) -> dict[int, NodeId]:
    """A maximum matching of indices to holders (Kuhn's augmenting paths, deterministic)."""
    index_of: dict[NodeId, int] = {}

    def augment(index: int, seen: set[NodeId]) -> bool:
        for node in choices[index]:
            if node not in seen:
                seen.add(node)
                if node not in index_of or augment(index_of[node], seen):
                    index_of[node] = index
                    return True
        return False

    for index in sorted(choices):
        augment(index, set())
    return {index: node for node, index in sorted(index_of.items(), key=lambda kv: kv[1])}


def plan_repair(request: RepairRequest) -> RepairPlan:
    """The keepers, moves and surplus that restore one home's spread.

    Raises:
        ValueError: A key that is not a backup ID, or an n beyond zfec's limits.
    """
    if not 1 <= request.n <= MAX_SHARES:
        raise ValueError(f"n must be within 1..{MAX_SHARES} (zfec's limit), not {request.n}")
    live = {c.node_id for c in request.live if c.node_id not in request.gone}
    counted: dict[int, set[NodeId]] = {}
    ignored = 0
    for holding in request.holdings:
        if not 0 <= holding.index < request.n:
            ignored += 1
        elif holding.holder not in request.gone and holding.holder != request.owner:
            counted.setdefault(holding.index, set()).add(holding.holder)
    holders = set[NodeId]().union(*counted.values())
    order = {node: i for i, node in enumerate(rank(request.key, holders))}
    choices = {
        index: sorted(nodes, key=lambda node: (node not in live, order[node]))
        for index, nodes in counted.items()
    }
    keep = _match(choices)
    kept = set(keep.values())
    lost, doubled = [], []
    for index in range(request.n):
        if index in keep:
            continue
        sources = [node for node in choices.get(index, ()) if node in live]
        if sources:
            doubled.append(Move(index, sources[0]))
        else:
            lost.append(Move(index, None))
    moves = (*lost, *doubled)
    surplus = tuple(
        Holding(index, node)
        for index in sorted(choices)
        for node in choices[index]
        if keep.get(index) != node
    )
    placement = PlacementRequest(
        key=request.key,
        owner=request.owner,
        candidates=tuple(c for c in request.live if c.node_id in live),
        indices=tuple(move.index for move in moves),
        happy=1,
        keep=keep,
        avoid=frozenset(holders - kept),
    )
    return RepairPlan(keep, moves, surplus, ignored, placement)


@dataclass(frozen=True, slots=True)
class MemberState:
    """What membership says of a member: its state, since when (membership's clock), its site.

    Attributes:
        node_id: The member.
        state: ``alive``, ``suspect``, ``dead``, ``left`` or ``stopped``.
        since: When it entered that state.
        host: Its host (for placement's spread).
        zone: Its ``zone`` tag.
    """

    node_id: NodeId
    state: str
    since: float
    host: str
    zone: str = ""


def repair_view(
    members: Iterable[MemberState], now: float, grace: float
) -> tuple[tuple[Candidate, ...], frozenset[NodeId]]:
    """The live candidates and the gone members for a `RepairRequest`.

    A member that left is gone at once; a dead one (a stopped member not back within the
    restart grace is shown dead) only once `grace` has passed since it was seen dead, so a
    partition that heals within the grace moves nothing. Suspects, stopped members and the
    recently dead are neither (their shares still count); so are members not listed at all
    (a holder this node has not heard of yet).
    """
    live: list[Candidate] = []
    gone: set[NodeId] = set()
    for member in members:
        if member.state == "alive":
            live.append(Candidate(member.node_id, member.host, member.zone))
        elif member.state == "left" or (member.state == "dead" and now - member.since >= grace):
            gone.add(member.node_id)
    return tuple(live), frozenset(gone)


def claim_won(grants: int, counted: int) -> bool:
    """Whether `grants` claims granted (the claimant's own included) are more than half of the
    `counted` holders of the home (live or waiting, the claimant included)."""
    return 2 * grants > counted
