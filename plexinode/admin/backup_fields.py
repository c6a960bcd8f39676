"""The ``backup`` commands' arguments and results (docs/cli.md, "backup").

Paths arrive absolute: the CLI resolves them where the operator typed them, since the node
runs elsewhere. A backup ID is its 32 hex digits or a unique prefix of at least 8 (the node
resolves it). The code's rules (1 <= k <= happy <= n <= 256) are checked here, before the node
reads anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from plexinode.admin.fields import TEXT, MapOf, arg
from plexinode.admin.requests import Request
from plexinode.admin.results import Result
from plexinode.errors import AdminError
from plexinode.wire.schema import Bool, Float, Int, ListOf, Optional

MAX_SHARES: Final = 256


@dataclass(frozen=True, slots=True)
class BackupCreateRequest(Request):
    """``backup_create``: back up `path` (absolute) with k-of-n, happiness `happy`."""

    path: str = arg(TEXT)
    k: int = arg(Int(1, MAX_SHARES), default=3, error="k is an integer within 1..256")
    n: int = arg(Int(1, MAX_SHARES), default=10, error="n is an integer within 1..256")
    happy: int | None = arg(Optional(Int(1, MAX_SHARES)), default=None)
    name: str | None = arg(Optional(TEXT), default=None)

    def __post_init__(self) -> None:
        if not self.path.startswith("/"):
            raise AdminError("the path to back up must be absolute")
        if self.k > self.n:
            raise AdminError(f"k ({self.k}) must not exceed n ({self.n})")
        if self.happy is not None and not self.k <= self.happy <= self.n:
            raise AdminError(f"happy must be within k..n ({self.k}..{self.n}), not {self.happy}")


@dataclass(frozen=True, slots=True)
class BackupIdRequest(Request):
    """``backup_show``, ``backup_verify``, ``backup_rm``: one backup, by ID or unique prefix."""

    backup_id: str = arg(TEXT)


@dataclass(frozen=True, slots=True)
class BackupRestoreRequest(Request):
    """``backup_restore``: restore a backup at `dest` (absolute, must not exist)."""

    backup_id: str = arg(TEXT)
    dest: str = arg(TEXT)
    partial: bool = arg(Bool(), default=False)

    def __post_init__(self) -> None:
        if not self.dest.startswith("/"):
            raise AdminError("the destination must be absolute")


@dataclass(frozen=True, slots=True)
class BackupCreated(Result):
    """``backup create``: the contract's fields, and what it sent."""

    backup_id: str = arg(TEXT)
    bytes: int = arg(Int())
    k: int = arg(Int())
    n: int = arg(Int())
    holders: tuple[str, ...] = arg(ListOf(TEXT, max_items=MAX_SHARES))
    happy: int = arg(Int())
    segments: int = arg(Int())
    bytes_sent: int = arg(Int())
    lost_indices: tuple[int, ...] = arg(ListOf(Int(), max_items=MAX_SHARES))


@dataclass(frozen=True, slots=True)
class BackupRestored(Result):
    """``backup restore``: where, how much, and what a partial restore left out."""

    backup_id: str = arg(TEXT)
    path: str = arg(TEXT)
    bytes: int = arg(Int())
    missing_segments: tuple[int, ...] = arg(ListOf(Int(), max_items=1 << 20))
    damaged: tuple[str, ...] = arg(ListOf(TEXT, max_items=1 << 20))


@dataclass(frozen=True, slots=True)
class BackupShown(Result):
    """``backup show``."""

    backup_id: str = arg(TEXT)
    name: str = arg(TEXT)
    source: str = arg(TEXT)
    bytes: int = arg(Int())
    created: float = arg(Float())
    k: int = arg(Int())
    n: int = arg(Int())
    happy: int = arg(Int())
    segments: int = arg(Int())
    holders: tuple[str, ...] = arg(ListOf(TEXT, max_items=1 << 16))
    lease_expires: float = arg(Float())

    @classmethod
    def of(cls, shown: Mapping[str, Any]) -> BackupShown:
        """From the service's map."""
        return cls.from_map(shown, where="backup show")


@dataclass(frozen=True, slots=True)
class BackupVerified(Result):
    """``backup verify``: the contract's fields (`healthy`: every segment has all n shares
    reachable), then whether every segment has at least k (`restorable`), how many segments
    have fewer than n (`short_segments`) out of `segments`, and each holder challenged:
    ``{"node_id", "shares", "challenges", "passed", "result", "detail"}``, `result` being
    ``ok``, ``unreachable``, ``not_held``, ``busy`` or ``wrong_proof``."""

    backup_id: str = arg(TEXT)
    healthy: bool = arg(Bool())
    min_available_shares: int = arg(Int())
    k: int = arg(Int())
    n: int = arg(Int())
    restorable: bool = arg(Bool())
    segments: int = arg(Int())
    short_segments: int = arg(Int())
    holders: Sequence[Mapping[str, Any]] = arg(ListOf(MapOf(), max_items=1 << 16))
