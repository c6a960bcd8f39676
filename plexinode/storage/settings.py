"""Settings of local storage (`config` composes them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StorageSettings:
    """Local storage."""

    # Space offered to other nodes' encrypted shares: 10 GiB is a modest slice of a modern disk.
    quota_bytes: int = 10 << 30
