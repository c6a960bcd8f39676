"""A node's security services, started together: the keyring service (every network) and, on
a private network with a root key, the authority service and the ticket service.

The node starts them once membership runs (:meth:`SecurityServices.start`); a node that joins
a private network at run time starts the authority and ticket services then
(:meth:`SecurityServices.adopt`). The admin commands reach them through the node.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import trio

from plexinode.identity import Identity
from plexinode.membership.service import MembershipService
from plexinode.net.authority import Authority
from plexinode.net.keyring import Keyring
from plexinode.security.authority_service import AuthorityService
from plexinode.security.service import KeyringService
from plexinode.security.statements import StatementSet
from plexinode.security.ticket_service import Redeemed, TicketService
from plexinode.security.tickets import Ticket, TicketError
from plexinode.storage import Database


class SecurityServices:
    """The keyring service, and the authority and ticket services when the network has a root
    key.

    Args:
        keyring: This node's keyring (its root and credentials decide the authority).
        network: The network's name.
        membership: The running membership service.
        save: Writes the keyring to the data dir after a change.
        db: The node's database (None: in memory).
        wall_clock: Unix time.
        rng: Makes each service's random source from a label.
    """

    def __init__(
        self,
        keyring: Keyring,
        network: str,
        membership: MembershipService,
        *,
        save: Callable[[Keyring], None],
        db: Database | None,
        wall_clock: Callable[[], float],
        rng: Callable[[bytes], random.Random],
    ) -> None:
        self._keyring = keyring
        self._save = save
        self._network = network
        self._membership = membership
        self._db = db
        self._wall_clock = wall_clock
        self._rng = rng
        self._nursery: trio.Nursery | None = None
        self.keyring = KeyringService(keyring, membership, save=save, rng=rng(b"/keyring"))
        self.authority: AuthorityService | None = None
        self.tickets: TicketService | None = None

    async def start(self, nursery: trio.Nursery) -> None:
        """Start every service in `nursery` (each ready when this returns)."""
        self._nursery = nursery
        await nursery.start(self.keyring.run)
        if self._keyring.private and self._keyring.root is not None:
            await self.adopt()

    async def adopt(self) -> None:
        """Start the authority and ticket services for the keyring's root and credentials
        (at start, or once this node joined a private network)."""
        assert self._nursery is not None
        assert self._keyring.root is not None
        if self.authority is not None:
            return
        statements = StatementSet(Authority(self._network, self._keyring.root))
        membership = self._membership
        self.authority = AuthorityService(
            statements,
            membership,
            own=self._keyring.credentials,
            db=self._db,
            wall_clock=self._wall_clock,
            rng=self._rng(b"/authority"),
        )
        await self._nursery.start(self.authority.run)
        # From now on only members are heard, and only they get keys (docs/security.md).
        self.keyring.authority = self.authority
        membership.datagrams.admission = self.authority
        membership.streams.admission = self.authority
        identity: Identity = membership.identity
        self.tickets = TicketService(
            identity,
            self._keyring,
            self.authority,
            membership.streams,
            db=self._db,
            wall_clock=self._wall_clock,
        )
        await self._nursery.start(self.tickets.run)

    async def join_private(self, ticket: Ticket, redeemed: Redeemed) -> None:
        """Become a member of the private network of a redeemed `ticket`: hold its keys, root
        and this node's credentials (saved), and start the authority and ticket services.

        Raises:
            TicketError: This node already belongs to a private network.
        """
        self.check_can_join(ticket)
        self._keyring.become_private(
            list(redeemed.keys.values()),
            redeemed.keys[redeemed.primary],
            ticket.root,
            redeemed.credentials,
        )
        self._save(self._keyring)
        await self.adopt()

    def check_can_join(self, ticket: Ticket) -> None:
        """Raise TicketError, before the ticket is spent, if this node cannot use `ticket`: it
        already belongs to a private network."""
        if self._keyring.root is None:
            return
        if self._keyring.root == ticket.root:
            raise TicketError(
                "this node is already a member of this network; the ticket was not used: give "
                "it to a node that is not a member yet"
            )
        raise TicketError(
            "this node already belongs to another private network; the ticket was not used: "
            "join with a new data dir (`start --join-file FILE`)"
        )

    def status(self) -> dict[str, object]:
        """The ``keyring`` and ``authority`` sections of ``status``."""
        authority: dict[str, object] = {}
        if self.authority is not None:
            authority = self.authority.describe()
        if self.tickets is not None:
            authority["tickets"] = dict(self.tickets.stats)
        return {"keyring": dict(self.keyring.stats), "authority": authority}
