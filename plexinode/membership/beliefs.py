"""What a node believes of each member, and the words for it (sans-I/O): the states, the
claims that gossip carries, the immutable view of a member that queries return, and the
events that say how a belief changed. The rules that merge claims into beliefs are the member
table's (:mod:`plexinode.membership.members`).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from plexinode.identity import NodeId
from plexinode.net.address import Address
from plexinode.wire.schema import U64_MAX

#: Highest incarnation number (the wire carries it as an unsigned 64-bit integer).
MAX_INCARNATION: Final = U64_MAX


class State(enum.IntEnum):
    """What we believe of a member (the values are the wire's). At one incarnation a state
    overrides those before it in :data:`PRECEDENCE`."""

    ALIVE = 0
    SUSPECT = 1
    DEAD = 2
    LEFT = 3
    #: A planned stop: the member said so itself, and is expected back (with a higher
    #: incarnation) within the restart grace; one that is not is then shown dead.
    STOPPED = 4


#: The order of states at one incarnation: alive < suspect < dead < stopped < left. A member's
#: own word outranks an accusation of the same life (a node that stopped is listed stopped even
#: where its silence got it declared dead), and leaving is final.
PRECEDENCE: Final = {
    State.ALIVE: 0,
    State.SUSPECT: 1,
    State.DEAD: 2,
    State.STOPPED: 3,
    State.LEFT: 4,
}


def rank(incarnation: int, state: State) -> tuple[int, int]:
    """A belief's place in the order of beliefs (the member table's invariant 1)."""
    return (incarnation, PRECEDENCE[state])


@dataclass(frozen=True, slots=True)
class Claim:
    """One statement about a member, as gossip carries it.

    Attributes:
        node_id: The member the claim is about.
        incarnation: The member's incarnation the claim refers to.
        state: What the claim says.
        accuser: For ``suspect`` and ``dead``: the node that says so (it signed the claim).
            None for ``alive``, ``left`` and ``stopped``, which the member itself signed.
        address: For ``alive``: where the member listens.
        tags: For ``alive``: the member's tags (version, roles, capacity...).
    """

    node_id: NodeId
    incarnation: int
    state: State
    accuser: NodeId | None = None
    address: Address | None = None
    tags: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0 <= self.incarnation <= MAX_INCARNATION:
            raise ValueError(f"incarnation {self.incarnation} outside 0..2**64-1")
        accusation = self.state in (State.SUSPECT, State.DEAD)
        if accusation != (self.accuser is not None):
            raise ValueError("suspect and dead claims have an accuser; the others do not")
        if self.state is State.ALIVE and self.address is None:
            raise ValueError("an alive claim carries the member's address")

    @property
    def rank(self) -> tuple[int, int]:
        """The claim's place in the order of beliefs (the member table's invariant 1)."""
        return rank(self.incarnation, self.state)


@dataclass(frozen=True, slots=True)
class MemberView:
    """An immutable copy of what we believe about a member, as events and queries return it."""

    node_id: NodeId
    address: Address
    incarnation: int
    state: State
    since: float
    tags: Mapping[str, str]


# -- events ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Joined:
    """A member we did not know, or knew as dead or left, is alive."""

    member: MemberView


@dataclass(frozen=True, slots=True)
class Updated:
    """A live member changed its address or tags, or refuted a suspicion."""

    member: MemberView


@dataclass(frozen=True, slots=True)
class Suspected:
    """A member is suspected of having failed."""

    member: MemberView


@dataclass(frozen=True, slots=True)
class Died:
    """A member was declared dead (or stopped and did not come back within the restart
    grace)."""

    member: MemberView


@dataclass(frozen=True, slots=True)
class Left:
    """A member left the network gracefully (it said so itself)."""

    member: MemberView


@dataclass(frozen=True, slots=True)
class Stopped:
    """A member stopped on purpose (it said so itself) and is expected back."""

    member: MemberView


@dataclass(frozen=True, slots=True)
class Reaped:
    """A dead or left member's tombstone expired; it is forgotten."""

    member: MemberView


Event = Joined | Updated | Suspected | Died | Left | Stopped | Reaped
