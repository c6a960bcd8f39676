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
    seed: int, *, members: Callable[[int], bool] = lambda index: True, root: Identity = ROOT
) -> Callable[[int], Keyring]:
    """A cluster's `keyrings` argument: node `i` (seeded identity `i` of `seed`) holds the
    network key, the pinned root and, where ``members(i)``, a member grant from the root
    dated at time 0 (the simulations' clocks start there) for the role's longest."""

    def keyring(index: int) -> Keyring:
        identity = seeded_identity(index, seed)
        credentials: tuple[bytes, ...] = ()
        if members(index):
            grant = make_grant(root, authority(root), identity.public_key, MEMBER, now=0)
            credentials = (encode_statement(grant),)
        return Keyring([KEY], KEY, private=True, root=root.public_key, credentials=credentials)

    return keyring
