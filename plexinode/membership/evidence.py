"""The signed claims behind this node's beliefs (sans-I/O).

The member table (:mod:`plexinode.membership.members`) keeps beliefs, not the words they came
from. Other members need those words, signed by whoever spoke them: push-pull hands a member's
own signed claims to a node that missed them, a ping to a suspect carries the accusation
(Lifeguard's buddy system), an accused member rebuts with its current alive claim, and a
leaving member repeats its signed leave. So, for each member, this keeps:

1. **Its latest alive claim**, signed by the member itself. A newer alive claim replaces it and
   clears the overriding claim below: the table took the alive claim, so it outranks that one.
2. **The claim that overrides it**, if any: an accusation (suspect, dead) signed by the accuser,
   or the member's own leave. Of two, the one of higher rank is kept.
3. **Nothing about a member the table forgot** (reaped): :meth:`Evidence.forget`.

Only claims the table accepted (or this node's own) are kept: :meth:`Evidence.keep` trusts its
caller on that.
"""

from __future__ import annotations

from plexinode.identity import NodeId
from plexinode.membership.beliefs import Claim, State
from plexinode.membership.claims import SignedClaim


class Evidence:
    """Each member's latest signed alive claim, and the signed claim that overrides it."""

    def __init__(self) -> None:
        self._alive: dict[NodeId, SignedClaim] = {}
        self._overriding: dict[NodeId, SignedClaim] = {}

    def __len__(self) -> int:
        """How many members we hold an alive claim of."""
        return len(self._alive)

    def keep(self, claim: Claim, signed: SignedClaim) -> None:
        """Keep `signed` (whose meaning is `claim`), accepted by the table or made by us."""
        if claim.state is State.ALIVE:
            self._alive[claim.node_id] = signed
            self._overriding.pop(claim.node_id, None)
            return
        current = self._overriding.get(claim.node_id)
        if current is None or (current.incarnation, current.state) < claim.rank:
            self._overriding[claim.node_id] = signed

    def alive(self, node_id: NodeId) -> SignedClaim | None:
        """The member's latest alive claim, if we hold one."""
        return self._alive.get(node_id)

    def public_key(self, node_id: NodeId) -> bytes | None:
        """The member's public key, from its latest alive claim (which it signed), if held."""
        claim = self._alive.get(node_id)
        return None if claim is None else claim.signer

    def overriding(self, node_id: NodeId) -> SignedClaim | None:
        """The accusation or leave that overrides the member's alive claim, if any."""
        return self._overriding.get(node_id)

    def about(self, node_id: NodeId) -> tuple[SignedClaim, ...]:
        """What we hold about the member, as push-pull sends it: the alive claim, then the
        claim overriding it."""
        held = (self._alive.get(node_id), self._overriding.get(node_id))
        return tuple(claim for claim in held if claim is not None)

    def forget(self, node_id: NodeId) -> None:
        """Drop everything about a member the table forgot."""
        self._alive.pop(node_id, None)
        self._overriding.pop(node_id, None)
