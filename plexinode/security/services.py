"""A node's security services, started together: the keyring service (every network) and, on
a private network with a root key, the authority service.

The node starts them once membership runs (:meth:`SecurityServices.start`); the admin commands
reach them through the node.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import trio

from plexinode.membership.service import MembershipService
from plexinode.net.authority import Authority
from plexinode.net.keyring import Keyring
from plexinode.security.authority_service import AuthorityService
from plexinode.security.service import KeyringService
from plexinode.security.statements import StatementSet
from plexinode.storage import Database


class SecurityServices:
    """The keyring service, and the authority service when the network has a root key.

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
        self.keyring = KeyringService(
            keyring, membership, save=save, db=db, wall_clock=wall_clock, rng=rng(b"/keyring")
        )
        self.authority: AuthorityService | None = None
        if keyring.private and keyring.root is not None:
            statements = StatementSet(Authority(network, keyring.root))
            self.authority = AuthorityService(
                statements,
                membership,
                own=keyring.credentials,
                db=db,
                wall_clock=wall_clock,
                rng=rng(b"/authority"),
            )

    async def start(self, nursery: trio.Nursery) -> None:
        """Start every service in `nursery` (each ready when this returns)."""
        await nursery.start(self.keyring.run)
        if self.authority is not None:
            await nursery.start(self.authority.run)

    def status(self) -> dict[str, object]:
        """The ``keyring`` and ``authority`` sections of ``status``."""
        return {
            "keyring": dict(self.keyring.stats),
            "authority": {} if self.authority is None else self.authority.describe(),
        }
