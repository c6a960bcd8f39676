"""Who the datagram and stream services hear on a private network (an interface).

The services below the authority know nothing of grants: they ask an :class:`Admission`
whether a public key is a member's now, and report the members they could not admit at an
address they can reach, so that the authority service asks that node for the statements it
lacks (a new member's grant may not have reached this node yet). The authority service
(plexinode.security.authority_service) is the one implementation.
"""

from __future__ import annotations

from typing import Protocol

from plexinode.net.address import Address


class Admission(Protocol):
    """Membership of a private network, as the datagram and stream services ask it."""

    def admits(self, public_key: bytes) -> bool:
        """Whether the node of `public_key` is a member now (a valid grant, not revoked)."""

    def met(self, public_key: bytes, address: Address) -> None:
        """A node that is not a member as far as we know (yet) reached us from, or answered
        us at, `address`: find out whether we lack its grant. Never blocks."""
