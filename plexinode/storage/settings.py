"""Settings of local storage (`config` composes them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StorageSettings:
    """Local storage."""

    # Space offered to other nodes' encrypted shares: 10 GiB is a modest slice of a modern disk.
    quota_bytes: int = 10 << 30
    # The most one owner's shares and manifests may take of `quota_bytes`; 0 means no limit of
    # its own (up to the whole quota). In the networks plexinode is made for (a household, a team,
    # a private network of known members) one member's large backup may use a holder's whole
    # offer, and placement takes the next candidate when a node is full; a node on an open
    # network, where any stranger can place shares, sets it to bound what each owner can take.
    owner_quota_bytes: int = 0
