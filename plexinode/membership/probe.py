"""SWIM's failure detector with Lifeguard's local health, as a sans-I/O state machine.

Each protocol period this node probes one member, picked in one of two ways:

* **Aligned** (the default; the driver passes the wall clock to :meth:`Prober.tick`). Probes
  start on the wall clock's period boundaries. In period ``p`` (the boundary's index), the
  member at position ``i`` of the view sorted by node ID probes the one at
  ``i + 1 + p mod (N - 1)``. Over N - 1 periods each member probes every other once (a round
  robin), and, when clocks and views agree, every member is probed by exactly one other member
  in every period, so a failure is suspected within about one period instead of after a
  random wait (with independent random choices a member goes unprobed for k periods with
  probability about e^-k, which makes the slow tail of detection). Views that differ for a
  moment, or a skewed clock, only make some member probed twice or not at all in a period.
* **Shuffled round robin** (SWIM section 4.3; without a wall clock): every live member once per
  round, in a new random order each round, so every member is probed within two rounds.

A member others suspect can be hurried (:meth:`Prober.hurry`): it is probed next, before the
member the order names. Then:

1. **Direct probe.** A ``ping`` with a sequence number; an ``ack`` within the probe timeout ends
   the probe.
2. **Indirect probes.** Otherwise ``ping-req`` asks k other members (chosen at random) to ping
   the target on our behalf. Each relays the target's ``ack`` to us, or answers ``nack`` if the
   target did not ack within 80% of the probe timeout (Lifeguard, section 4.1): a nack tells us
   the relay itself is alive and reachable, so a missing one hints that *we* are the problem.
3. **Suspicion.** No ack by the end of the period: the target is suspected (the driver makes the
   claim, applies it to the :class:`~plexinode.membership.members.MemberTable` and gossips it).

**Local health** (Lifeguard's "local health multiplier", section 4.1). A score from 0 to
``max_awareness`` rises by one for each failed probe, each probe with missing nacks, and each
accusation against us that we had to refute; it falls by one for each successful probe. The
probe interval and the probe timeout are both multiplied by ``score + 1``: a node that is itself
slow (overloaded, starved of CPU, losing packets) probes less often and waits longer before it
suspects anyone, instead of accusing healthy members of its own failure. The driver stretches
its gossip interval by the same multiplier, so that a sick node also sends less (push-pull
keeps its interval: it does not grow under load, and it is how a sick node catches up).

**Starvation** counts as ill health too. A node whose CPU is saturated (a flood, a heavy job,
many nodes on one core) runs its timers late: the driver reports how late each of its timed
wakeups was (:meth:`Prober.lagged`). A wakeup later than :data:`LAG_FRACTION` of the probe
timeout adds one to the score, at most once a period, and makes the probe under way
*inconclusive*: its ack may be waiting unread in our own socket buffer, so the member is not
suspected for it (the score rises instead, as for a failed probe). A starved node thus slows
down and stops accusing members for its own slowness, and recovers as its probes succeed again.

Everything here takes ``now`` and returns actions; the membership service sends the messages,
keeps the timers (``next_deadline``) and feeds back what arrives. A ``seq`` names one exchange
from this node's point of view; the driver matches replies to the node they came from (the
datagram layer authenticates senders), so a reply from anyone else is ignored.
"""

from __future__ import annotations

import bisect
import collections
import ipaddress
from collections.abc import Callable, Collection
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from plexinode.identity import NodeId
from plexinode.net.address import Address, parse_ip
from plexinode.randomness import Rng

#: A relay answers ``nack`` after this fraction of the probe timeout without the target's ack.
NACK_FRACTION = 0.8
#: A timed wakeup this late, as a fraction of the probe timeout (100 ms at the defaults), means
#: this node's event loop is starved: far above a loaded loop's jitter (a few ms), and well
#: below the probe timeout, so that the ack the lag may have delayed is not taken for silence.
LAG_FRACTION = 0.2
#: Most pings we make for relay requests at once; more are refused (each lives one period, and
#: honest members send at most k per period between them, so only a flood reaches this).
MAX_RELAYED = 256


#: Why a relay request is refused before the prober sees it (see :func:`relay_refusal`).
NOT_A_MEMBER = "requester is not a live member"
TARGET_UNKNOWN = "target is not a live member"
WRONG_ADDRESS = "target is not at that address"
FORBIDDEN_ADDRESS = "target address is loopback, link-local, multicast or unspecified"


def relay_refusal(
    *,
    requester_live: bool,
    target_address: Address | None,
    requested: Address,
    own_on_loopback: bool,
) -> str | None:
    """Why a ``member-ping-req`` must not be served, or None if it may be.

    A relay sends a ping (up to a full datagram) wherever a request names, so it serves only
    requests that cannot aim it at a third party: from a live member (alive or suspect), for
    a live member, at the address this node knows that member at (the one in its signed alive
    claim), and never at loopback, link-local, multicast or unspecified addresses, which reach
    services on this host or its link rather than a peer, unless this node itself runs on
    loopback (then its members do too: tests, one-host networks), which allows loopback only.

    Args:
        requester_live: Whether the requester is a live member in our table.
        target_address: The target's address in our table, if it is a live member.
        requested: The address the request asks us to ping.
        own_on_loopback: Whether this node's own address is a loopback address.
    """
    if not requester_live:
        return NOT_A_MEMBER
    if target_address is None:
        return TARGET_UNKNOWN
    if target_address != requested:
        return WRONG_ADDRESS
    ip = parse_ip(target_address.host)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if (
        ip is None
        or ip.is_multicast
        or ip.is_link_local
        or ip.is_unspecified
        or (ip.is_loopback and not own_on_loopback)
        or ip.packed == b"\xff\xff\xff\xff"
    ):
        return FORBIDDEN_ADDRESS
    return None


@dataclass(frozen=True, slots=True)
class SendPing:
    """Ping `target` with sequence number `seq` (a direct probe, or one made for a relay)."""

    target: NodeId
    seq: int


@dataclass(frozen=True, slots=True)
class SendPingReq:
    """Ask `relay` to ping `target`, answering us under `seq`."""

    relay: NodeId
    target: NodeId
    seq: int


@dataclass(frozen=True, slots=True)
class SendAck:
    """Tell `to` that the ping it asked us to make (its `seq`) was answered."""

    to: NodeId
    seq: int


@dataclass(frozen=True, slots=True)
class SendNack:
    """Tell `to` that the ping it asked us to make (its `seq`) was not answered in time."""

    to: NodeId
    seq: int


@dataclass(frozen=True, slots=True)
class SuspectMember:
    """The probe of `target` under `seq` failed: suspect it (in the life that probe reached
    for; the driver knows which incarnation that was)."""

    target: NodeId
    seq: int


Action = SendPing | SendPingReq | SendAck | SendNack | SuspectMember


@dataclass(slots=True)
class _Probe:
    target: NodeId
    seq: int
    started: float
    direct_deadline: float
    period_end: float
    acked: bool = False
    indirect_sent: bool = False
    lagged: bool = False
    relays: tuple[NodeId, ...] = ()
    nacks: set[NodeId] = field(default_factory=set)


@dataclass(slots=True)
class _Relayed:
    """A ping we make for a relay request: answer `requester` under its `seq`."""

    requester: NodeId
    seq: int
    target: NodeId
    nack_at: float
    expires: float
    nacked: bool = False


class Prober:
    """Probes one member per protocol period; relays probes for others.

    Args:
        own_id: This node's ID.
        now: The caller's clock at creation (the first probe is due at once).
        rng: Picks the round-robin order and the relays.
        probe_interval: The protocol period at full health, seconds.
        probe_timeout: How long a direct probe waits for its ack at full health (less than the
            interval: the rest of the period is for the indirect probes).
        indirect_probes: k, how many relays an indirect probe asks.
        max_awareness: The local health score's ceiling (timeouts grow up to ``max + 1`` times).
    """

    def __init__(
        self,
        own_id: NodeId,
        now: float,
        rng: Rng,
        *,
        probe_interval: float = 1.0,
        probe_timeout: float = 0.5,
        indirect_probes: int = 3,
        max_awareness: int = 8,
    ) -> None:
        if not 0 < probe_timeout < probe_interval:
            raise ValueError("need 0 < probe_timeout < probe_interval")
        if indirect_probes < 0 or max_awareness < 0:
            raise ValueError("indirect_probes and max_awareness must be >= 0")
        self.own_id = own_id
        self.probe_interval = probe_interval
        self.probe_timeout = probe_timeout
        self.indirect_probes = indirect_probes
        self.max_awareness = max_awareness
        self.awareness = 0
        self._rng = rng
        self._seq = 0
        self._order: list[NodeId] = []
        self._hurried: list[NodeId] = []
        # The aligned order: the live members and this node, sorted (rebuilt when it changes).
        self._sorted: list[NodeId] = []
        self._view_members: frozenset[NodeId] = frozenset()
        self._probe: _Probe | None = None
        self._next_probe = now
        self._lag_counted_until = now
        self._relayed: dict[int, _Relayed] = {}
        #: What happened to probes (acked, failed, indirect, missed nacks...), for status.
        self.stats: collections.Counter[str] = collections.Counter()

    # -- local health ----------------------------------------------------------------------------

    @property
    def multiplier(self) -> int:
        """How many times longer than at full health our periods and timeouts are."""
        return self.awareness + 1

    def _adjust(self, delta: int) -> None:
        self.awareness = min(self.max_awareness, max(0, self.awareness + delta))

    def refuted(self) -> None:
        """We had to refute an accusation against us: a sign of our own ill health."""
        self._adjust(+1)

    def starved(self, now: float) -> bool:
        """Whether our event loop lagged within the last (stretched) period: the driver then
        declares no one dead (until :attr:`starved_until`), as a suspect's silence may be our
        own slowness."""
        return now < self._lag_counted_until

    @property
    def starved_until(self) -> float:
        """When :meth:`starved` ends unless the loop lags again."""
        return self._lag_counted_until

    def lagged(self, lag: float, now: float) -> None:
        """A timed wakeup of the driver came `lag` seconds late (module docstring): beyond
        :data:`LAG_FRACTION` of the probe timeout, our own starvation is ill health, and the
        probe under way proves nothing about its target."""
        if lag < self.probe_timeout * LAG_FRACTION:
            return
        self.stats["lagged"] += 1
        if self._probe is not None:
            self._probe.lagged = True
        if now >= self._lag_counted_until:
            self._adjust(+1)
            self._lag_counted_until = now + self.probe_interval * self.multiplier

    # -- the protocol period ---------------------------------------------------------------------

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        return self._seq

    def _pick(self, live: Callable[[NodeId], bool], members: Collection[NodeId]) -> NodeId | None:
        """The next target of the shuffled round robin, skipping members no longer live."""
        while True:
            if not self._order:
                self._order = [m for m in members if m != self.own_id]
                self._rng.shuffle(self._order)
                if not self._order:
                    return None
            candidate = self._order.pop()
            if candidate != self.own_id and live(candidate):
                return candidate

    def aligned_target(self, members: Collection[NodeId], period: int) -> NodeId | None:
        """The member this node probes in wall-clock period `period` (module docstring)."""
        current = members if isinstance(members, AbstractSet) else set(members)
        if self._view_members != current:  # a set comparison, in C: cheap at N = 10,000
            self._view_members = frozenset(current)
            self._sorted = sorted({*current, self.own_id}, key=lambda m: m.raw)
        view = self._sorted
        n = len(view)
        if n < 2:
            return None
        own = bisect.bisect_left(view, self.own_id.raw, key=lambda m: m.raw)
        return view[(own + 1 + period % (n - 1)) % n]

    def hurry(self, target: NodeId) -> None:
        """Make `target` the next member probed (it keeps its own place in the order too).

        The driver calls this for some of the members it hears others suspect: an independent
        probe soon either confirms the suspicion, which shortens its Lifeguard timeout, or
        finds the member well, which the ack's gossip of its refutation then spreads.
        """
        current = self._probe.target if self._probe is not None else None
        if target not in (self.own_id, current) and target not in self._hurried:
            self._hurried.append(target)

    def tick(
        self, now: float, members: Collection[NodeId], wall: float | None = None
    ) -> list[Action]:
        """Advance to `now`. `members` are the live members (alive or suspect), in any order:
        a set or a dict's keys, as membership tests on it should be cheap. `wall` is the wall
        clock at `now` (Unix seconds): with it, probes are aligned (module docstring); without
        it, they follow the shuffled round robin.

        Returns the actions due: a new probe, indirect probes, a suspicion, relay nacks.
        """
        actions: list[Action] = []
        live = members.__contains__
        for seq, relayed in list(self._relayed.items()):
            if not relayed.nacked and now >= relayed.nack_at:
                relayed.nacked = True
                actions.append(SendNack(relayed.requester, relayed.seq))
            if now >= relayed.expires:
                del self._relayed[seq]
        probe = self._probe
        if probe is not None and not probe.acked:
            if not probe.indirect_sent and now >= probe.direct_deadline:
                probe.indirect_sent = True
                others = [m for m in members if m not in (self.own_id, probe.target)]
                relays = self._rng.sample(others, min(self.indirect_probes, len(others)))
                probe.relays = tuple(relays)
                self.stats["indirect"] += bool(relays)
                actions.extend(SendPingReq(r, probe.target, probe.seq) for r in relays)
            if now >= probe.period_end:
                self._finish(probe, actions)
        if self._probe is None and now >= self._next_probe:
            period = None if wall is None else round(wall / self.probe_interval)
            target = self._next_target(live, members, period)
            if target is None:
                self._next_probe = now + self.probe_interval * self.multiplier
            else:
                self._start(target, now, actions)
            if wall is not None and period is not None:
                # The next probe starts on a boundary of the wall clock's periods, however
                # late this one started.
                boundary = (period + self.multiplier) * self.probe_interval
                self._next_probe = now + max(0.0, boundary - wall)
        return actions

    def _next_target(
        self, live: Callable[[NodeId], bool], members: Collection[NodeId], period: int | None
    ) -> NodeId | None:
        while self._hurried:
            hurried = self._hurried.pop(0)
            if live(hurried):
                self.stats["hurried"] += 1
                return hurried
        if period is None:
            return self._pick(live, members)
        return self.aligned_target(members, period)

    def _start(self, target: NodeId, now: float, actions: list[Action]) -> None:
        m = self.multiplier
        period_end = now + self.probe_interval * m
        self._probe = _Probe(
            target,
            self._next_seq(),
            now,
            direct_deadline=now + self.probe_timeout * m,
            period_end=period_end,
        )
        self._next_probe = period_end
        self.stats["probes"] += 1
        actions.append(SendPing(target, self._probe.seq))

    def _finish(self, probe: _Probe, actions: list[Action]) -> None:
        """The period ended without an ack: the probe failed, or proved nothing if our own
        event loop lagged meanwhile."""
        self._probe = None
        if probe.lagged:
            self.stats["inconclusive"] += 1
            self._adjust(+1)
            return
        self.stats["failed"] += 1
        delta = 1
        if probe.relays and len(probe.nacks) < len(probe.relays):
            # Relays that neither relayed an ack nor sent a nack: we may be the one cut off.
            self.stats["missed_nacks"] += 1
            delta += 1
        self._adjust(delta)
        actions.append(SuspectMember(probe.target, probe.seq))

    def next_deadline(self) -> float:
        """When :meth:`tick` next has something to do."""
        times = [self._next_probe]
        probe = self._probe
        if probe is not None and not probe.acked:
            times.append(probe.period_end)
            if not probe.indirect_sent:
                times.append(probe.direct_deadline)
        for relayed in self._relayed.values():
            times.append(relayed.expires if relayed.nacked else relayed.nack_at)
        return min(times)

    # -- what arrives ----------------------------------------------------------------------------

    def on_ack(self, sender: NodeId, seq: int, now: float) -> list[Action]:
        """An ack from `sender` for our `seq`: our own probe (direct, or relayed by a relay we
        asked), or the target of a ping we made for a relay."""
        relayed = self._relayed.get(seq)
        if relayed is not None and sender == relayed.target:
            del self._relayed[seq]
            return [SendAck(relayed.requester, relayed.seq)]
        probe = self._probe
        if probe is None or probe.seq != seq or probe.acked:
            self.stats["ack_unexpected"] += 1
            return []
        if sender != probe.target and sender not in probe.relays:
            self.stats["ack_unexpected"] += 1
            return []
        probe.acked = True
        self._probe = None
        self.stats["acked"] += 1
        self.stats["acked_indirect"] += sender != probe.target
        self._adjust(-1)
        # The rest of the period stays quiet: the next probe starts when the period ends.
        return []

    def on_refused(self, target: NodeId, seq: int) -> list[Action]:
        """Nothing listens at `target`'s address any more (its stream port refused us: the
        process is gone, or moved): the probe fails now, without waiting out the period, and
        without counting against our own health (the target answered, with a refusal)."""
        probe = self._probe
        if probe is None or probe.seq != seq or probe.target != target or probe.acked:
            return []
        self._probe = None
        self.stats["failed"] += 1
        self.stats["refused"] += 1
        return [SuspectMember(target, seq)]

    def on_nack(self, sender: NodeId, seq: int) -> None:
        """A relay we asked could not reach the target in time."""
        probe = self._probe
        if probe is None or probe.seq != seq or sender not in probe.relays:
            self.stats["nack_unexpected"] += 1
            return
        probe.nacks.add(sender)

    def on_ping_req(self, requester: NodeId, target: NodeId, seq: int, now: float) -> list[Action]:
        """`requester` asks us to ping `target` and answer it under its `seq`."""
        if target in (self.own_id, requester) or len(self._relayed) >= MAX_RELAYED:
            self.stats["ping_req_refused"] += 1
            return []
        ours = self._next_seq()
        self._relayed[ours] = _Relayed(
            requester,
            seq,
            target,
            nack_at=now + self.probe_timeout * NACK_FRACTION,
            expires=now + self.probe_interval * self.multiplier,
        )
        self.stats["relayed"] += 1
        return [SendPing(target, ours)]
