"""Claim admission: what this node does with one signed claim it hears (sans-I/O).

Every claim that arrives (piggybacked on a probe, in a gossip message, in a push-pull) goes
through :meth:`Admission.hear`, which returns the verdict: dropped, with the reason (the name of
the counter the driver adds it to), or admitted and applied to the member table, with what the
driver must do next.

**Hearing a claim** costs, in order:

1. decoding with size limits (done by the wire layer before this);
2. the claim's shape, without its signature (:meth:`SignedClaim.unverified`): a ``left`` or an
   ``alive`` signed by someone other than the member is a forgery;
3. the network's ID puzzle on the member's ID;
4. :meth:`MemberTable.is_news`: most gossip repeats what we know and stops here, before any
   signature check;
5. the table's size cap, for a member we do not know (a full table still takes a newcomer
   while it remembers a dead member: the one dead longest makes room, below);
6. a rate limit per accuser, *checked* here but *charged* only once the signature holds, so that
   forgeries naming an honest accuser cannot use up its allowance;
7. only then the signature.

A claim that survives is applied to the table and kept as evidence
(:mod:`plexinode.membership.evidence`), so that push-pull can hand the member's own signed words
to others. The driver then gossips it on, broadcasts our refutation if it accused us, and
publishes the events.

**Accusations are rate-limited per accuser.** An honest node suspects at most the one member it
probes each period, so more new accusations than :data:`ACCUSATIONS_PER_PERIOD` (with a burst
of :data:`ACCUSATION_BURST`) is a flood. A suspicion, or a death out of the blue (of a member we
do not suspect), draws on its accuser's allowance; the death of a suspect (the usual way a member
dies, and many at once when a partition cuts off part of the network) does not.

**Suspicions are confirmed.** When we take another member's suspicion, we probe the suspect out
of turn with a chance that makes about :data:`CONFIRMERS` members of the network do so: enough
independent confirmations to bring the suspicion timeout down to its floor within a period or
two (Lifeguard), or to find the member well, for the cost of a few probes per suspicion.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from plexinode.errors import AuthenticationError, DecodeError
from plexinode.identity import NodeId
from plexinode.membership.beliefs import Claim, Event, State
from plexinode.membership.claims import SignedClaim
from plexinode.membership.evidence import Evidence
from plexinode.membership.members import Applied, MemberTable
from plexinode.net.ratelimit import TokenBuckets
from plexinode.randomness import Rng

#: New accusations accepted per accuser, per protocol period, and in a burst (module docstring).
ACCUSATIONS_PER_PERIOD: Final = 1.0
ACCUSATION_BURST: Final = 10
#: Accusers whose allowance is remembered at once (the least recently seen are forgotten).
MAX_ACCUSERS: Final = 4096
#: Members that probe a suspect out of turn when they hear of the suspicion (in expectation).
CONFIRMERS: Final = 4


class Drop(enum.Enum):
    """Why a claim was dropped; the value is the counter the driver adds it to."""

    #: Signed by a node that may not make it (a ``left`` signed by someone else).
    FORGED = "claims_forged"
    #: Fields that do not fit the claim's state.
    MALFORMED = "claims_malformed"
    #: About a member ID that fails the network's ID puzzle.
    ID_PUZZLE = "claims_id_puzzle"
    #: Nothing the table does not know already.
    KNOWN = "claims_known"
    #: About a new member, while the table is full of live members.
    TABLE_FULL = "claims_table_full"
    #: An accusation beyond its accuser's allowance.
    ACCUSER_LIMITED = "claims_accuser_limited"
    #: A signature that does not hold.
    BAD_SIGNATURE = "claims_bad_signature"


@dataclass(frozen=True, slots=True)
class Admitted:
    """A claim whose signature held, applied to the member table.

    Attributes:
        claim: The claim, as the table took it.
        signed: The claim as it travels (kept as evidence if accepted).
        outcome: What the table did: whether it accepted the claim (gossip it on, wake the
            prober), the events for subscribers, and our new alive claim if the claim accused
            us (sign it, broadcast it and persist the incarnation).
        made_room: The member reaped to make room for this one in a full table (its event is
            published before the outcome's), or None.
        confirm: Probe the suspect out of turn (module docstring: suspicions are confirmed).
    """

    claim: Claim
    signed: SignedClaim
    outcome: Applied
    made_room: Event | None = None
    confirm: bool = False

    @property
    def urgent(self) -> bool:
        """News that is not to wait for the next gossip tick: a death or a leave."""
        return self.claim.state >= State.DEAD


class Admission:
    """Decides, for each claim heard, whether the member table takes it (module docstring).

    Args:
        table: The member table the claims are applied to.
        evidence: Where the signed claims the table accepts are kept.
        rng: Draws which suspicions this node confirms.
        probe_interval: The protocol period, seconds (the accusers' allowance is per period).
        max_members: The table's size cap.
        id_difficulty: The network's ID puzzle (0: none).
    """

    def __init__(
        self,
        table: MemberTable,
        evidence: Evidence,
        rng: Rng,
        *,
        probe_interval: float,
        max_members: int,
        id_difficulty: int = 0,
    ) -> None:
        self.table = table
        self.evidence = evidence
        self.max_members = max_members
        self.id_difficulty = id_difficulty
        self._rng = rng
        self._accusers = TokenBuckets[NodeId](
            ACCUSATIONS_PER_PERIOD / probe_interval, ACCUSATION_BURST, max_keys=MAX_ACCUSERS
        )

    def hear(self, signed: SignedClaim, now: float) -> Drop | Admitted:
        """Consider one claim from the network, at time `now` (the checks in the module
        docstring's order); a claim admitted is already applied to the table."""
        table = self.table
        try:
            claim = signed.unverified()
        except AuthenticationError:
            return Drop.FORGED
        except (DecodeError, ValueError):
            return Drop.MALFORMED
        if self.id_difficulty and not claim.node_id.meets(self.id_difficulty):
            return Drop.ID_PUZZLE
        if not table.is_news(claim):
            return Drop.KNOWN
        full = claim.node_id not in table and len(table) >= self.max_members
        if full and not table.remembered_dead:
            return Drop.TABLE_FULL
        charged = self._charged_accuser(claim)
        if charged is not None and not self._accusers.would_allow(charged, now):
            return Drop.ACCUSER_LIMITED
        try:
            signed.verify()
        except AuthenticationError:
            return Drop.BAD_SIGNATURE
        if charged is not None:
            self._accusers.allow(charged, now)
        # A full table whose dead members would lock every newcomer out: the one dead longest
        # goes first (only for a claim whose signature holds).
        made_room = table.reap_oldest() if full else None
        outcome = table.apply(claim, now)
        confirm = False
        if outcome.accepted:
            if claim.state is State.SUSPECT and claim.node_id != table.own_id:
                confirm = self._rng.random() < CONFIRMERS / max(1, table.live_count - 2)
            self.evidence.keep(claim, signed)
        return Admitted(claim, signed, outcome, made_room, confirm)

    def _charged_accuser(self, claim: Claim) -> NodeId | None:
        """The accuser whose allowance `claim` draws on: another member's suspicion, or its
        verdict on a member we do not hold suspect (a dead claim confirming a suspicion we
        hold is free: it ends one)."""
        accuser = claim.accuser
        if accuser is None or accuser == self.table.own_id:
            return None
        known = self.table.get(claim.node_id)
        if claim.state is State.DEAD and known is not None and known.state is State.SUSPECT:
            return None
        return accuser
