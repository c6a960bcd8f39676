"""The member table: what this node believes about each member of its network, and the rules
that merge what it hears (SWIM's states, memberlist's precedence, Lifeguard's suspicion).

Sans-I/O, like the DHT's routing table: every method takes ``now`` and returns what happened;
nothing here sends, sleeps or checks a signature. The driver (the membership service) verifies
each claim's signature first, applies it here, gossips the claims this table accepted, and
hands the events to subscribers. The words of beliefs (states, claims, views, events) are
:mod:`plexinode.membership.beliefs`'s, and offered here too.

Invariants this module keeps:

1. **Beliefs are ordered, and merging is taking the maximum.** A claim about a member is an
   ``(incarnation, state)`` pair, and at one incarnation
   ``alive < suspect < dead < stopped < left`` (:data:`~plexinode.membership.beliefs.PRECEDENCE`). A
   claim replaces the current belief only if it is greater. Once two nodes know the same alive
   claims (a member signs one alive claim per incarnation), hearing the same other claims in
   any order and any number of times leaves them with the same beliefs (the tests check this
   with hypothesis); gossip repeats every claim, so the ones that arrived too early (an
   accusation before the alive claim it refers to) are heard again later.
2. **Only a member raises its own incarnation.** Its ``alive``, ``stopped`` and ``left`` claims
   carry its signature (checked by the driver before :meth:`MemberTable.apply`). Accusations
   (``suspect``, ``dead``) come from others, so an accusation of an incarnation above the one we
   know the member reached is ignored (and counted): otherwise anyone could accuse incarnation
   2**64 - 1, which the member could never refute.
3. **We refute accusations against ourselves.** A ``suspect`` or ``dead`` claim about this node
   (or a ``stopped`` one of our previous run, which a restart without our database leaves
   behind) raises our incarnation above it and returns our new ``alive`` claim to broadcast. At the
   largest incarnation the wire allows (2**64 - 1) there is nothing above; the accusation then
   stands (reaching it takes 2**64 refutations, so it only happens to a member that signed such
   an incarnation itself).
4. **The dead are remembered.** A dead, stopped or left member stays in the table, as a
   tombstone, for ``retention`` seconds, so that an older claim arriving late cannot bring it
   back; then it is reaped. A member that really restarted comes back with a higher
   incarnation. A stopped member not back within ``restart_grace`` is shown dead from then on
   (a :class:`Died` event; its belief stays ``stopped``, so the order above is unchanged).
5. **Suspicion times out, faster when others agree** (Lifeguard, section 4.2): a suspect is
   declared dead after a timeout that shrinks with each distinct member that suspected it too
   (:mod:`plexinode.membership.suspicion`), with a floor that grows with the network size N
   (:meth:`MemberTable.suspicion_bounds`). When that time runs out, a driver that asks for last
   calls pings the suspect once more before the verdict (:meth:`MemberTable.last_calls`).
"""

from __future__ import annotations

import collections
import math
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Final

from plexinode.identity import NodeId
from plexinode.membership.beliefs import (
    MAX_INCARNATION,
    Claim,
    Died,
    Event,
    Joined,
    Left,
    MemberView,
    Reaped,
    State,
    Stopped,
    Suspected,
    Updated,
    rank,
)
from plexinode.membership.suspicion import Suspicion
from plexinode.net.address import Address

# The words of beliefs are defined in plexinode.membership.beliefs and offered here too, beside
# the table that uses them.
__all__ = [
    "MAX_INCARNATION",
    "Applied",
    "Claim",
    "Died",
    "Event",
    "Joined",
    "Left",
    "Member",
    "MemberTable",
    "MemberView",
    "Reaped",
    "State",
    "Stopped",
    "Suspected",
    "Updated",
]


@dataclass(slots=True)
class Member:
    """What we believe about one member (a mutable record; events carry snapshots).

    Attributes:
        node_id: The member.
        address: Its address, from its latest alive claim.
        incarnation: The incarnation our belief refers to.
        state: Our belief.
        since: When the belief last changed state (the caller's clock).
        tags: Its tags, from its latest alive claim.
        overdue: It stopped and did not come back within the restart grace: shown dead.
    """

    node_id: NodeId
    address: Address
    incarnation: int
    state: State
    since: float
    tags: Mapping[str, str]
    overdue: bool = False

    def snapshot(self) -> MemberView:
        state = State.DEAD if self.overdue else self.state
        return MemberView(
            self.node_id, self.address, self.incarnation, state, self.since, self.tags
        )

    @property
    def rank(self) -> tuple[int, int]:
        return rank(self.incarnation, self.state)


@dataclass(frozen=True, slots=True)
class Applied:
    """The outcome of :meth:`MemberTable.apply`.

    Attributes:
        accepted: The claim changed our belief (or confirmed a suspicion): gossip it on.
        events: What subscribers should hear.
        refutation: Our own new alive claim, when the claim accused us: broadcast it.
    """

    accepted: bool
    events: tuple[Event, ...] = ()
    refutation: Claim | None = None


_IGNORED: Final = Applied(False)
#: Claims about this node that it answers with a new incarnation: accusations, and a stopped
#: claim of its previous run.
_REFUTED: Final = frozenset({State.SUSPECT, State.DEAD, State.STOPPED})


# -- the table ---------------------------------------------------------------------------------


class MemberTable:
    """Every member of the network we know of, ourselves included.

    Args:
        own_id: This node's ID.
        address: This node's address, for its alive claims.
        now: The caller's clock at creation.
        incarnation: This node's starting incarnation (a restarted node starts above the one
            it last used, which the service keeps in its database).
        tags: This node's tags.
        probe_interval: The protocol period, seconds (it scales the suspicion timeouts).
        suspicion_mult: Scales the suspicion floor (see invariant 5).
        suspicion_max_mult: The lone-accuser timeout, as a multiple of the floor.
        suspicion_confirmations: K, the independent suspicions that bring the timeout down to
            its floor (fewer when the network has fewer other members to give them).
        retention: How long dead, stopped and left members are remembered, seconds.
        restart_grace: How long a stopped member is expected back before it is shown dead.
    """

    def __init__(
        self,
        own_id: NodeId,
        address: Address,
        now: float,
        *,
        incarnation: int = 0,
        tags: Mapping[str, str] | None = None,
        probe_interval: float = 1.0,
        suspicion_mult: float = 2.0,
        suspicion_max_mult: float = 6.0,
        suspicion_confirmations: int = 3,
        retention: float = 3600.0,
        restart_grace: float = 900.0,
    ) -> None:
        if probe_interval <= 0 or suspicion_mult <= 0 or suspicion_max_mult < 1 or retention < 0:
            raise ValueError("intervals and multipliers must be positive (max multiplier >= 1)")
        if restart_grace < 0:
            raise ValueError("restart_grace must be >= 0")
        self.restart_grace = restart_grace
        if suspicion_confirmations < 0:
            raise ValueError("suspicion_confirmations must be >= 0")
        self.suspicion_confirmations = suspicion_confirmations
        self.own_id = own_id
        self.probe_interval = probe_interval
        self.suspicion_mult = suspicion_mult
        self.suspicion_max_mult = suspicion_max_mult
        self.retention = retention
        self._members: dict[NodeId, Member] = {
            own_id: Member(own_id, address, incarnation, State.ALIVE, now, dict(tags or {}))
        }
        self._suspicions: dict[NodeId, Suspicion] = {}
        # Dead and left members, in the order they died (so oldest first: reaping stops early).
        self._tombstones: dict[NodeId, float] = {}
        # Stopped members still expected back, in the order they stopped.
        self._stopped: dict[NodeId, float] = {}
        # The other members alive or suspect (an ordered set: iteration follows joining).
        self._live: dict[NodeId, None] = {}
        #: Claims ignored, by reason (stale, unknown member, accusation of a future incarnation).
        self.stats: collections.Counter[str] = collections.Counter()

    # -- queries -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._members

    def get(self, node_id: NodeId) -> MemberView | None:
        member = self._members.get(node_id)
        return None if member is None else member.snapshot()

    def members(self) -> Iterator[MemberView]:
        """Every member we know of (tombstones included), ourselves too."""
        return (member.snapshot() for member in self._members.values())

    @property
    def live_count(self) -> int:
        """Members alive or suspect, ourselves included: the N of the timeouts."""
        return len(self._live) + 1

    @property
    def others_live(self) -> Collection[NodeId]:
        """The other members alive or suspect, in the order they joined (or came back): an
        order set by what this node heard, never by hashing, so that choices drawn from it
        replay from a simulation's seed. A live view: do not keep it across changes."""
        return self._live.keys()

    @property
    def incarnation(self) -> int:
        return self._members[self.own_id].incarnation

    def own_claim(self) -> Claim:
        """Our current alive claim (the driver signs it)."""
        me = self._members[self.own_id]
        return Claim(me.node_id, me.incarnation, State.ALIVE, address=me.address, tags=me.tags)

    def suspicion_bounds(self) -> tuple[float, float, int]:
        """(floor, lone-accuser timeout, K) for a suspicion starting now (invariant 5)."""
        minimum = self.suspicion_mult * max(1.0, math.log10(self.live_count))
        minimum *= self.probe_interval
        expected = max(0, min(self.suspicion_confirmations, self.live_count - 2))
        return minimum, minimum * self.suspicion_max_mult, expected

    def suspicion_deadline(self, node_id: NodeId) -> float | None:
        """When a suspect member will be declared dead, if nothing changes."""
        suspicion = self._suspicions.get(node_id)
        return None if suspicion is None else suspicion.deadline()

    # -- our own changes -----------------------------------------------------------------------

    def update_self(
        self, now: float, *, address: Address | None = None, tags: Mapping[str, str] | None = None
    ) -> Claim:
        """Change our address or tags: a new incarnation, whose alive claim is returned."""
        me = self._members[self.own_id]
        if me.incarnation >= MAX_INCARNATION:
            raise OverflowError("this node's incarnation is at its limit")
        me.incarnation += 1
        if address is not None:
            me.address = address
        if tags is not None:
            me.tags = dict(tags)
        return self.own_claim()

    def leave(self, now: float) -> Claim:
        """We leave: our left claim (at our current incarnation) to broadcast."""
        me = self._members[self.own_id]
        return Claim(me.node_id, me.incarnation, State.LEFT)

    def stop(self, now: float) -> Claim:
        """We stop on purpose and mean to come back: our stopped claim (at our current
        incarnation, which the next run starts above) to broadcast."""
        me = self._members[self.own_id]
        return Claim(me.node_id, me.incarnation, State.STOPPED)

    # -- what we hear --------------------------------------------------------------------------

    def apply(self, claim: Claim, now: float) -> Applied:
        """Merge one claim whose signature the caller checked (invariants 1-3)."""
        if claim.node_id == self.own_id:
            return self._about_us(claim)
        member = self._members.get(claim.node_id)
        if member is None:
            if claim.state is not State.ALIVE:
                self.stats["ignored_unknown"] += 1  # we never saw it alive: nothing to check
                return _IGNORED
            assert claim.address is not None
            member = Member(
                claim.node_id, claim.address, claim.incarnation, State.ALIVE, now, claim.tags
            )
            self._members[claim.node_id] = member
            self._live[claim.node_id] = None
            return Applied(True, (Joined(member.snapshot()),))
        accuser = claim.accuser
        if accuser is not None:
            if claim.incarnation > member.incarnation:
                # Invariant 2: not an incarnation we know the member reached.
                self.stats["ignored_future_accusation"] += 1
                return _IGNORED
            if (claim.state, member.state) == (State.SUSPECT, State.SUSPECT) and (
                claim.incarnation == member.incarnation
            ):
                return self._confirm(member, accuser)
        if claim.rank <= member.rank:
            self.stats["ignored_stale"] += 1
            return _IGNORED
        return self._change(member, claim, now)

    def is_news(self, claim: Claim) -> bool:
        """Whether :meth:`apply` could act on `claim` (before its signature is checked: a
        claim that would be ignored anyway need not cost a verification)."""
        if claim.node_id == self.own_id:
            incarnation = self._members[self.own_id].incarnation
            return (
                claim.state in _REFUTED
                and incarnation <= claim.incarnation
                and incarnation < MAX_INCARNATION
            )
        member = self._members.get(claim.node_id)
        if member is None:
            return claim.state is State.ALIVE
        if claim.accuser is not None and claim.incarnation > member.incarnation:
            return False
        if (claim.state, member.state) == (State.SUSPECT, State.SUSPECT) and (
            claim.incarnation == member.incarnation
        ):
            suspicion = self._suspicions.get(member.node_id)
            return suspicion is not None and claim.accuser not in suspicion.accusers
        return claim.rank > member.rank

    def _about_us(self, claim: Claim) -> Applied:
        me = self._members[self.own_id]
        if claim.state not in _REFUTED:
            return _IGNORED  # our own claims coming back to us
        if claim.incarnation < me.incarnation:
            return _IGNORED  # an accusation of an incarnation we already left behind
        if me.incarnation >= MAX_INCARNATION:
            return _IGNORED  # invariant 3: nothing to refute with
        if claim.state is State.STOPPED:
            # Our own word from a previous run (restarted without its database), which may be
            # of a higher incarnation than this run's: go above it. Not for accusations, which
            # anyone can make: one of a huge incarnation would use up ours.
            me.incarnation = min(max(me.incarnation, claim.incarnation) + 1, MAX_INCARNATION)
        else:
            me.incarnation += 1
        return Applied(False, (), self.own_claim())

    def _confirm(self, member: Member, accuser: NodeId) -> Applied:
        suspicion = self._suspicions.get(member.node_id)
        if suspicion is None or accuser in suspicion.accusers:
            return _IGNORED
        suspicion.accusers.add(accuser)
        return Applied(True)  # gossip it on: others count it too

    def _change(self, member: Member, claim: Claim, now: float) -> Applied:
        was = member.state
        live_before = was <= State.SUSPECT
        details_changed = claim.state is State.ALIVE and (
            member.address != claim.address or dict(member.tags) != dict(claim.tags)
        )
        member.incarnation = claim.incarnation
        member.state = claim.state
        if claim.address is not None:
            member.address = claim.address
            member.tags = claim.tags
        if claim.state is not was:
            member.since = now
        member.overdue = False
        self._suspicions.pop(member.node_id, None)
        self._tombstones.pop(member.node_id, None)
        self._stopped.pop(member.node_id, None)
        if claim.state is State.SUSPECT:
            assert claim.accuser is not None
            minimum, maximum, expected = self.suspicion_bounds()
            self._suspicions[member.node_id] = Suspicion(
                now, minimum, maximum, expected, {claim.accuser}
            )
        elif claim.state >= State.DEAD:
            self._tombstones[member.node_id] = now
            if claim.state is State.STOPPED:
                self._stopped[member.node_id] = now
        live_after = claim.state <= State.SUSPECT
        if live_after and not live_before:
            self._live[member.node_id] = None
        elif live_before and not live_after:
            del self._live[member.node_id]
        view = member.snapshot()
        event: Event | None = None
        if claim.state is State.ALIVE:
            if not live_before:
                event = Joined(view)
            elif details_changed or was is State.SUSPECT:
                event = Updated(view)
        elif claim.state is State.SUSPECT:
            event = Suspected(view) if was is not State.SUSPECT else None
        elif claim.state is State.DEAD:
            event = Died(view)
        elif claim.state is State.STOPPED:
            event = Stopped(view)
        else:
            event = Left(view)
        return Applied(True, () if event is None else (event,))

    @property
    def remembered_dead(self) -> int:
        """Members dead or left, still remembered (until their retention ends)."""
        return len(self._tombstones)

    def reap_oldest(self) -> Event | None:
        """Forget the member that died or left longest ago before its retention ends, to make
        room for a newcomer in a full table; None if no member is dead or left.

        Forgetting it early reopens, for that member alone, the window that retention closes:
        an old alive claim of it arriving later would be taken as a join again (and probed
        dead again). A full table of dead members locking every newcomer out is worse."""
        if not self._tombstones:
            return None
        node_id = next(iter(self._tombstones))
        del self._tombstones[node_id]
        self._stopped.pop(node_id, None)
        self.stats["reaped_early"] += 1
        return Reaped(self._members.pop(node_id).snapshot())

    # -- time ----------------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """The earliest time :meth:`expire` has something to do (suspicions, and stopped
        members not back within the restart grace)."""
        deadlines = [s.deadline() for s in self._suspicions.values()]
        if self._stopped:
            deadlines.append(next(iter(self._stopped.values())) + self.restart_grace)
        return min(deadlines, default=None)

    def last_calls(self, now: float, window: float) -> list[NodeId]:
        """The suspects whose time ran out and who have not had a last call yet: each gets
        `window` more seconds before :meth:`expire` declares it dead, for the driver to ping
        it once more.

        Gossip sends each claim a limited number of times, so now and then one member misses
        a suspect's refutation that everyone else heard; pinging the suspect with the
        accusation (which it answers with its current alive claim) before the verdict spares
        it a false death at that member. A driver that never asks for last calls gets the
        plain verdicts.
        """
        due: list[NodeId] = []
        for node_id, suspicion in self._suspicions.items():
            if suspicion.last_call_until is None and suspicion.deadline() <= now:
                suspicion.last_call_until = now + window
                due.append(node_id)
        return due

    def expire(self, now: float) -> tuple[list[Claim], list[Event]]:
        """Declare dead the suspects whose time ran out, show dead the stopped members not
        back within the restart grace, and reap old tombstones.

        Returns:
            The dead claims to broadcast (accused by us) and the events.
        """
        claims: list[Claim] = []
        events: list[Event] = []
        for node_id, suspicion in list(self._suspicions.items()):
            if suspicion.deadline() <= now:
                member = self._members[node_id]
                claim = Claim(node_id, member.incarnation, State.DEAD, accuser=self.own_id)
                outcome = self._change(member, claim, now)
                claims.append(claim)
                events.extend(outcome.events)
        while self._stopped:
            node_id, since = next(iter(self._stopped.items()))
            if now - since < self.restart_grace:
                break
            del self._stopped[node_id]
            member = self._members[node_id]
            member.overdue = True
            events.append(Died(member.snapshot()))
        while self._tombstones:
            node_id, since = next(iter(self._tombstones.items()))
            if now - since < self.retention:
                break
            del self._tombstones[node_id]
            self._stopped.pop(node_id, None)
            events.append(Reaped(self._members.pop(node_id).snapshot()))
        return claims, events
