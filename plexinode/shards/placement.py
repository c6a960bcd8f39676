"""Where a home's shares go: rendezvous ranking, a spread over sites, refusals (sans-I/O).

Every segment of a *home* (the backup under which it was first placed) has its n shares on the
same n holders, share index r on the holder chosen for r, so that no member ever holds two
shares of one segment. This module chooses those holders; the driver asks them, feeds their
answers back and stores the result (the index map lives in provider records and is never
recomputed, so ranks moving later moves no data).

**Ranking** (rendezvous, or highest-random-weight, hashing). Each candidate's *score* for a
key (the home's 16-byte backup ID) is::

    score = BLAKE2b-256(node ID, key = backup ID, person = "pxn-placement")

and candidates are ranked by ascending score (ties, which need a hash collision, by node ID).
The rank depends only on the key and the candidate set, never on the order the candidates come
in, so every member that sees the same membership computes the same order without talking to
anyone. A member joining or leaving moves only its own position: the other members keep their
relative order, so the chosen *set* gains or loses at most that one member (minimal
disruption). The key is random and chosen by the owner after the members have their IDs, and
IDs cannot be chosen (they are hashes of public keys), so no member can aim for a home.

**Spread.** Each candidate stands on a *site*: its host (the IP text, normalised), the host's
prefix (the /24 of an IPv4 address, the /64 of an IPv6 one; a host name is its own prefix),
and an optional ``zone`` tag (a rack, a building, a provider; untagged members share the
empty zone). Indices are filled in order (0, 1, ...), each with the first candidate in rank
order among the least *loaded* ones, where the load compares, in this order:

1. how many chosen holders (and the owner) stand on its host;
2. how many stand in its prefix;
3. how many are tagged with its zone, counted only for a host with none yet: two nodes on one
   machine share its fate whatever their tags say.

So a new host beats a new prefix, which beats a new zone, and once every host holds a share
the next goes to a host holding the fewest (two hosts of nine members each get five shares of
ten each, never eight and two: with k = 3, losing a host of eight would lose the backup); among
equals the rank decides. This is a preference, never a requirement: when every candidate
stands on one host (tests run every node on 127.0.0.1), or on distinct hosts, /24s and zones
alike, the loads never differ and the choice is plain rank order. The owner is never chosen,
and its own site counts as used, so shares go away from the machine they protect first. The
spread costs some of the minimal disruption: on a network of crowded hosts, a newcomer on a
new host can also change which member of a crowded host is taken. Placement happens once per
home, so that cost is paid only in where a new backup lands.

**Refusals.** A candidate offered index r may refuse (its quota is full) or not answer (the
driver reports it as refused too); index r then goes to the next candidate chosen by the same
rule among those never offered anything in this plan. A refused candidate is never offered
anything again by this plan. A holder that accepted and then failed (the transfer broke) may be
reported refused as well: its index moves the same way.

**Happiness** h (Tahoe-LAFS's "servers of happiness") is the number of distinct holders a home
needs for the backup to succeed; by default ``max(k, ceil(0.7 n))``, 7 of 10. When fewer
suitable members exist than h (the owner and the members the plan must avoid left out), the
plan offers nothing and its result says how many were found; when at least h but fewer than n
hold shares, the indices left without a holder are reported so that the driver queues them for
repair.

Each pick scans the candidates not offered anything yet: O(n * m) for m candidates.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from plexinode.identity import NodeId
from plexinode.net.address import parse_ip
from plexinode.shards.coding import check_parameters

#: Bytes of a key: the home's backup ID.
KEY_BYTES: Final = 16
#: Bits of the prefix two hosts share when they are likely one network (one operator, one
#: uplink): a /24 for IPv4, a /64 (one subnet, often one machine) for IPv6.
IPV4_PREFIX_BITS: Final = 24
IPV6_PREFIX_BITS: Final = 64
#: Happiness by default, as a fraction of n rounded up (Tahoe-LAFS's 7 of 10).
HAPPY_TENTHS: Final = 7

_PERSON: Final = b"pxn-placement"


def default_happy(k: int, n: int) -> int:
    """``max(k, ceil(0.7 n))``: 7 of 10, and never fewer holders than a restore needs."""
    return max(k, -(-HAPPY_TENTHS * n // 10))


@dataclass(frozen=True, slots=True)
class Coding:
    """k-of-n with happiness h, checked: ``1 <= k <= h <= n <= 256`` (zfec's limit).

    Raises:
        ValueError: Naming the rule that does not hold.
    """

    k: int
    n: int
    happy: int

    def __post_init__(self) -> None:
        check_parameters(self.k, self.n)
        if not self.k <= self.happy <= self.n:
            raise ValueError(f"happiness must be within k..n ({self.k}..{self.n}): {self.happy}")

    @classmethod
    def of(cls, k: int, n: int, happy: int | None = None) -> Coding:
        """k-of-n with `happy`, or :func:`default_happy` when it is None."""
        check_parameters(k, n)
        return cls(k, n, default_happy(k, n) if happy is None else happy)


def network_prefix(host: str) -> str:
    """The /24 (IPv4) or /64 (IPv6) network `host` is in, as text; a host name is its own."""
    ip = parse_ip(host)
    if ip is None:
        return host
    bits = IPV4_PREFIX_BITS if ip.version == 4 else IPV6_PREFIX_BITS
    return str(ipaddress.ip_network((ip, bits), strict=False))


@dataclass(frozen=True, slots=True)
class Candidate:
    """A live member placement may choose: its node ID and site (host, prefix, zone).

    ``host`` is normalised (``0:0::1`` is ``::1``, and an IPv4-mapped IPv6 address, as a
    dual-stack socket reports an IPv4 peer, is the IPv4 address); ``prefix`` is derived from it.
    """

    node_id: NodeId
    host: str
    zone: str = ""
    prefix: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        ip = parse_ip(self.host)
        if ip is not None:
            mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
            object.__setattr__(self, "host", str(mapped or ip))
        object.__setattr__(self, "prefix", network_prefix(self.host))


def score(key: bytes, node_id: NodeId) -> bytes:
    """The candidate's rendezvous score for `key`: lower ranks first.

    Raises:
        ValueError: A key that is not :data:`KEY_BYTES` long.
    """
    if len(key) != KEY_BYTES:
        raise ValueError(f"a placement key is {KEY_BYTES} bytes")
    return hashlib.blake2b(node_id.raw, digest_size=32, key=key, person=_PERSON).digest()


def rank(key: bytes, node_ids: Iterable[NodeId]) -> list[NodeId]:
    """The distinct `node_ids` in rendezvous order for `key` (rank 0 first)."""
    return sorted(set(node_ids), key=lambda node: (score(key, node), node))


class _Sites:
    """The hosts, prefixes and zones in use (counted, so that a refused holder can leave)."""

    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts: dict[tuple[int, str], int] = {}

    def add(self, site: Candidate, step: int = 1) -> None:
        for part in ((0, site.host), (1, site.prefix), (2, site.zone)):
            self._counts[part] = self._counts.get(part, 0) + step

    def load(self, site: Candidate) -> tuple[int, int, int]:
        """How many chosen holders share the site's host, its prefix, and (for a host with
        none) its zone: lower is better."""
        host = self._counts.get((0, site.host), 0)
        prefix = self._counts.get((1, site.prefix), 0)
        zone = self._counts.get((2, site.zone), 0) if host == 0 else 0
        return host, prefix, zone


@dataclass(frozen=True, slots=True)
class PlacementRequest:
    """What to place.

    Attributes:
        key: The home's backup ID.
        owner: The owner's node ID (never chosen; its site, if it is a candidate, counts as
            used).
        candidates: The live members (order does not matter; a repeated node ID is an error).
        indices: The share indices to place, in the order they get holders (0..n-1 for a new
            home; a repair puts its most urgent first).
        happy: Distinct holders the home needs, the kept ones included.
        keep: Indices already held in place (their holders are not chosen again; their sites
            count as used).
        avoid: Other nodes never to choose (they hold a copy to be dropped).
    """

    key: bytes
    owner: NodeId
    candidates: tuple[Candidate, ...]
    indices: tuple[int, ...]
    happy: int
    keep: Mapping[int, NodeId] = field(default_factory=dict)
    avoid: frozenset[NodeId] = frozenset()

    def __post_init__(self) -> None:
        score(self.key, self.owner)  # checks the key
        if len({c.node_id for c in self.candidates}) != len(self.candidates):
            raise ValueError("a candidate is listed twice")
        if len(set(self.indices)) != len(self.indices) or set(self.indices) & set(self.keep):
            raise ValueError("an index is listed twice")
        if self.happy < 1:
            raise ValueError("happiness is at least 1")


@dataclass(frozen=True, slots=True)
class Offer:
    """Ask `holder` to take share index `index` of every segment of the home."""

    index: int
    holder: Candidate


@dataclass(frozen=True, slots=True)
class PlacementResult:
    """Where a plan ended.

    Attributes:
        holders: Index -> the holder that accepted it (the kept ones not included).
        unplaced: Indices nobody took (queued for repair when the home is happy).
        distinct: Distinct holders of the home, kept ones included.
        happy: The happiness asked for.
        found: Suitable members (candidates neither the owner, kept, nor avoided).
    """

    holders: Mapping[int, NodeId]
    unplaced: tuple[int, ...]
    distinct: int
    happy: int
    found: int

    @property
    def met(self) -> bool:
        """Whether the home has at least `happy` distinct holders."""
        return self.distinct >= self.happy

    @property
    def refusal(self) -> str | None:
        """Why the backup fails (None when happiness is met), naming how many were found."""
        if self.met:
            return None
        return (
            f"{self.distinct} distinct holders, {self.happy} needed "
            f"({self.found} suitable members found)"
        )


class PlacementPlan:
    """Offers for each index, moved on by refusals; see the module's docstring for the rule.

    The driver sends what :meth:`offers` returns, reports each answer with :meth:`accepted` or
    :meth:`refused`, sends any new offers, and stops when :attr:`finished` (or early, when
    :attr:`hopeless`); then :meth:`result` says where the shares are.
    """

    __slots__ = (
        "_accepted",
        "_found",
        "_free",
        "_fresh",
        "_kept",
        "_pending",
        "_request",
        "_sites",
        "_unplaced",
    )

    def __init__(self, request: PlacementRequest) -> None:
        self._request = request
        taken = set(request.keep.values()) | request.avoid | {request.owner}
        by_id = {c.node_id: c for c in request.candidates}
        self._sites = _Sites()
        for node in {request.owner, *request.keep.values()}:
            if node in by_id:
                self._sites.add(by_id[node])
        #: Never offered anything yet, in rank order.
        self._free = [by_id[node] for node in rank(request.key, by_id) if node not in taken]
        self._found = len(self._free)
        self._kept = len(set(request.keep.values()))
        self._pending: dict[NodeId, Offer] = {}
        self._accepted: dict[NodeId, Offer] = {}
        self._unplaced: list[int] = []
        self._fresh: list[Offer] = []
        if self._kept + self._found < request.happy:
            self._unplaced = list(request.indices)
        else:
            for index in request.indices:
                self._offer(index)

    def _offer(self, index: int) -> None:
        if not self._free:
            self._unplaced.append(index)
            return
        best = min(range(len(self._free)), key=lambda i: (self._sites.load(self._free[i]), i))
        offer = Offer(index, self._free.pop(best))
        self._sites.add(offer.holder)
        self._pending[offer.holder.node_id] = offer
        self._fresh.append(offer)

    def offers(self) -> tuple[Offer, ...]:
        """The offers made since the last call (each is returned once)."""
        fresh, self._fresh = tuple(self._fresh), []
        return fresh

    def accepted(self, node: NodeId) -> bool:
        """`node` took its offered index. False (and nothing changes) when it had no offer
        outstanding: a late or unasked answer."""
        offer = self._pending.pop(node, None)
        if offer is None:
            return False
        self._accepted[node] = offer
        return True

    def refused(self, node: NodeId) -> bool:
        """`node` refused (or failed after accepting): its index goes to the next candidate.
        False (and nothing changes) when it holds no offer of this plan."""
        offer = self._pending.pop(node, None) or self._accepted.pop(node, None)
        if offer is None:
            return False
        self._sites.add(offer.holder, -1)
        self._offer(offer.index)
        return True

    @property
    def finished(self) -> bool:
        """No answer outstanding: every index has a holder or nobody is left to ask."""
        return not self._pending

    @property
    def hopeless(self) -> bool:
        """Happiness can no longer be met, whatever the outstanding answers are."""
        possible = self._kept + len(self._accepted) + len(self._pending) + len(self._free)
        return possible < self._request.happy

    def result(self) -> PlacementResult:
        """Where the shares are.

        Raises:
            RuntimeError: Offers are still outstanding.
        """
        if not self.finished:
            raise RuntimeError("placement has offers outstanding")
        holders = {offer.index: node for node, offer in self._accepted.items()}
        return PlacementResult(
            holders=dict(sorted(holders.items())),
            unplaced=tuple(sorted(self._unplaced)),
            distinct=self._kept + len(holders),
            happy=self._request.happy,
            found=self._found,
        )
