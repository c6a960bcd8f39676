"""This node's replica of the cluster state (sans-I/O): the writes it makes, stamped by its
hybrid clock and signed, and the entries it hears, checked before they are merged.

The map and its merge rules are :mod:`plexinode.membership.state`'s; this adds what one node
does around them. **Hearing an entry** costs, in order: whether the map would take it at all
(most gossip repeats what we hold and stops here, before any signature check), the entry's
shape and signature, then the *guard*: the services that own part of the key space (the
keyring service guards ``net.``) may refuse an entry that is well signed but not its writer's
to make. An entry merged also moves this node's hybrid clock up to its stamp, so that a write
made after hearing it outranks it whatever the wall clocks say.

The driver gossips the entries this returns as written or merged, and counts what happened
(:class:`Heard`).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable

from plexinode.errors import AuthenticationError, DecodeError
from plexinode.identity import Identity
from plexinode.membership.state import HybridClock, StateEntry, StateMap, sign_entry

log = logging.getLogger(__name__)

#: Decides whether an entry heard from the network may be merged: the reason to refuse it, or
#: None.
Guard = Callable[[StateEntry], str | None]


class Heard(enum.Enum):
    """What became of an entry heard; the value is the counter the driver adds it to (None:
    the map refused it and counted why itself)."""

    #: Nothing the map would take (already held, or older than what it holds).
    KNOWN = "state_known"
    #: A signature that does not hold.
    BAD_SIGNATURE = "state_bad_signature"
    #: A malformed key, or a delete that carries a value.
    MALFORMED = "state_malformed"
    #: Refused by the guard.
    REFUSED = "state_refused"
    #: Refused by the map (full, or stamped more than a day ahead: ``StateMap.stats``).
    UNMERGED = None
    #: Merged: gossip it on.
    ACCEPTED = "state_accepted"


class Replica:
    """One node's copy of the cluster state, and its hybrid clock.

    Args:
        identity: Signs this node's writes.
        state: The map.
        wall_ms: This node's wall clock, Unix milliseconds.
    """

    def __init__(self, identity: Identity, state: StateMap, wall_ms: Callable[[], int]) -> None:
        self.identity = identity
        self.state = state
        self.wall_ms = wall_ms
        #: The guard (module docstring), None: every well-signed entry. Not applied to this
        #: node's own writes.
        self.guard: Guard | None = None
        self.clock = HybridClock(wall_ms)

    def write(self, key: str, value: bytes | None) -> StateEntry:
        """Write `value` under `key` (None deletes the key): the entry, stamped, signed and
        merged, to gossip.

        Raises:
            ValueError: A malformed key, an oversized value, or a full map.
        """
        entry = sign_entry(self.identity, key, value, self.clock.now())
        if not self.state.merge(entry, self.wall_ms()).accepted:
            raise ValueError(f"the cluster state is full ({self.state.max_entries} keys)")
        return entry

    def hear(self, entry: StateEntry) -> Heard:
        """Consider one entry from the network (the checks in the module docstring's order)."""
        if not self.state.would_accept(entry):
            return Heard.KNOWN
        try:
            entry.check()
        except AuthenticationError:
            return Heard.BAD_SIGNATURE
        except DecodeError:
            return Heard.MALFORMED
        refusal = self.guard(entry) if self.guard is not None else None
        if refusal is not None:
            log.debug("refused cluster-state entry %r: %s", entry.key, refusal)
            return Heard.REFUSED
        if not self.state.merge(entry, self.wall_ms()).accepted:
            return Heard.UNMERGED
        self.clock.observe(entry.wall_ms, entry.counter)
        return Heard.ACCEPTED
