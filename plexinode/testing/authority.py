"""Private networks with a root key for simulations: every simulated member holds a member
grant signed by the root, as if it had been admitted (plexinode.net.authority)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from plexinode.identity import Identity
from plexinode.net.authority import Authority
from plexinode.net.certificates import MEMBER
from plexinode.net.keyring import Keyring
from plexinode.security.statements import encode_statement, make_grant
from plexinode.testing.member_cluster import NETWORK
from plexinode.testing.nodes import seeded_identity

#: The simulated networks' root key and first network key.
ROOT: Final = Identity.from_seed(b"plexinode simulated root key 01!")
KEY: Final = bytes(range(32))


def authority(root: Identity = ROOT) -> Authority:
    """An empty authority of the simulated network."""
    return Authority(NETWORK, root.public_key)


def founded(
    seed: int,
    *,
    roles: Callable[[int], tuple[str, ...]] = lambda index: (MEMBER,),
    root: Identity = ROOT,
) -> Callable[[int], Keyring]:
    """A cluster's or nodes' `keyrings` argument: node `i` (seeded identity `i` of `seed`)
    holds the network key, the pinned root and a grant from the root of each of
    ``roles(i)`` (none: the node holds the key but was never admitted), dated at time 0 (the
    simulations' clocks start there) for the role's longest."""

    def keyring(index: int) -> Keyring:
        identity = seeded_identity(index, seed)
        credentials = tuple(
            encode_statement(make_grant(root, authority(root), identity.public_key, role, now=0))
            for role in roles(index)
        )
        return Keyring([KEY], KEY, private=True, root=root.public_key, credentials=credentials)

    return keyring
