"""A holder's accounting of the shares it keeps (sans-I/O): quotas, and what a batch adds.

The share store (`plexinode.shards.store`) is the driver: it keeps the bytes in files and the
rows in SQLite, and asks this core two questions before it writes anything.

* **Which shares of a batch are new?** `plan_batch` checks the shape of each share (sizes of
  IDs, the share index within zfec's limit, a block no larger than the largest segment's) and
  compares the batch with what is already held: a share held with the same Merkle root is a
  retry and is skipped (so a sender that lost an acknowledgement can resend), a share held with
  another root is a conflict and refuses the whole batch (`ShareRejected`), since one key can
  only ever name one block.
* **Is there room?** `Ledger` counts the bytes each owner takes (shares and manifests) and the
  total. `Ledger.reserve` either takes the bytes at once or refuses with the reason placement
  acts on: `NodeFull` (the node's `capacity`, what it offers to everyone, is used up) or
  `OwnerQuotaExceeded` (this owner has its share of it). Reserving before any file is written,
  and counting reservations as used, is what keeps concurrent batches from overshooting the
  quota together; the driver gives back what a batch did not use with `Ledger.free`.

Invariant: `Ledger.total` is the sum of `Ledger.owner_bytes` over all owners, and neither is
ever negative; once the driver settles, both equal what the database holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from plexinode.errors import PlexinodeError
from plexinode.identity import NODE_ID_BYTES
from plexinode.shards.coding import MAX_SHARES
from plexinode.shards.derive import SEGMENT_ID_BYTES
from plexinode.shards.manifest import BACKUP_ID_BYTES, MAX_MANIFEST_BYTES
from plexinode.shards.merkle import HASH_BYTES
from plexinode.shards.sealing import TAG_BYTES
from plexinode.shards.segmenter import MAX_SEGMENT_BYTES

#: The largest block: the largest segment's ciphertext at k = 1 (one block is the whole of it).
MAX_BLOCK_BYTES: Final = MAX_SEGMENT_BYTES + TAG_BYTES

#: A share's key: (owner, segment ID, share index).
ShareKey = tuple[bytes, bytes, int]


class QuotaExceeded(PlexinodeError):
    """No room for a batch: placement takes the next candidate.

    Attributes:
        needed: bytes the batch needs.
        available: bytes left under the limit that refused it.
    """

    reason = "quota"

    def __init__(self, needed: int, available: int) -> None:
        self.needed = needed
        self.available = available
        super().__init__(f"{self.reason}: {needed} bytes needed, {available} available")


class NodeFull(QuotaExceeded):
    """The node's capacity (what it offers to all owners) is used up."""

    reason = "node full"


class OwnerQuotaExceeded(QuotaExceeded):
    """This owner has taken its quota of the node's capacity."""

    reason = "owner quota exceeded"


class ShareRejected(PlexinodeError):
    """A share refused for what it is: a block that does not match its root, a size or an ID out
    of bounds, or another block under a key already held. Nothing of its batch is stored."""


@dataclass(frozen=True, slots=True)
class ShareClaim:
    """One share a sender asks the holder to keep (the block itself stays with the driver).

    Attributes:
        segment_id: the segment's ID.
        index: the share index (the block's position among the segment's n blocks).
        root: the Merkle root the block is claimed to have (checked by the driver).
        size: the block's length in bytes.
    """

    segment_id: bytes
    index: int
    root: bytes
    size: int


def check_lease_key(owner: bytes, backup_id: bytes) -> None:
    """Raise `ShareRejected` unless `owner` is a node ID and `backup_id` a backup ID."""
    if len(owner) != NODE_ID_BYTES:
        raise ShareRejected(f"an owner is a {NODE_ID_BYTES}-byte node ID")
    if len(backup_id) != BACKUP_ID_BYTES:
        raise ShareRejected(f"a backup ID is {BACKUP_ID_BYTES} bytes")


def check_segment_id(segment_id: bytes) -> None:
    """Raise `ShareRejected` unless `segment_id` is a segment ID."""
    if len(segment_id) != SEGMENT_ID_BYTES:
        raise ShareRejected(f"a segment ID is {SEGMENT_ID_BYTES} bytes")


def check_manifest(data: bytes) -> None:
    """Raise `ShareRejected` if a manifest is empty or larger than any manifest can be."""
    if not 0 < len(data) <= MAX_MANIFEST_BYTES:
        raise ShareRejected(f"a manifest is 1..{MAX_MANIFEST_BYTES} bytes, not {len(data)}")


def check_claim(claim: ShareClaim) -> None:
    """Raise `ShareRejected` unless the claim's fields are within bounds."""
    check_segment_id(claim.segment_id)
    if not 0 <= claim.index < MAX_SHARES:
        raise ShareRejected(f"a share index is within 0..{MAX_SHARES - 1}, not {claim.index}")
    if len(claim.root) != HASH_BYTES:
        raise ShareRejected(f"a Merkle root is {HASH_BYTES} bytes")
    if not 0 < claim.size <= MAX_BLOCK_BYTES:
        raise ShareRejected(f"a block is 1..{MAX_BLOCK_BYTES} bytes, not {claim.size}")


def plan_batch(
    owner: bytes, claims: Sequence[ShareClaim], held: Mapping[ShareKey, bytes]
) -> list[int]:
    """The positions in `claims` of the shares not held yet.

    Args:
        owner: the owner of every share of the batch.
        claims: the batch.
        held: the root of each share of the batch already held (others may be absent).

    Raises:
        ShareRejected: a claim out of bounds, a share named twice in the batch, or one held
            under another root.
    """
    seen: set[tuple[bytes, int]] = set()
    new = []
    for position, claim in enumerate(claims):
        check_claim(claim)
        key = (claim.segment_id, claim.index)
        if key in seen:
            raise ShareRejected(f"share {claim.index} of segment {claim.segment_id.hex()} twice")
        seen.add(key)
        root = held.get((owner, claim.segment_id, claim.index))
        if root is None:
            new.append(position)
        elif root != claim.root:
            raise ShareRejected(
                f"share {claim.index} of segment {claim.segment_id.hex()} is held with another root"
            )
    return new


@dataclass(frozen=True, slots=True)
class Usage:
    """What the holder keeps for others.

    Attributes:
        total_bytes: bytes of all owners (shares and manifests).
        capacity_bytes: the node's quota (its `capacity` tag).
        owner_quota_bytes: the most one owner may take (0: no limit of its own).
        owners: bytes per owner.
    """

    total_bytes: int
    capacity_bytes: int
    owner_quota_bytes: int
    owners: Mapping[bytes, int]


class Ledger:
    """Bytes used, per owner and in total, against the node's capacity and the owner quota.

    Args:
        capacity: the node's quota in bytes (``storage.quota_bytes``, its `capacity` tag).
        owner_quota: the most one owner may take; 0 means no limit of its own.
        used: bytes already used per owner (what the database holds at start).
    """

    def __init__(
        self, capacity: int, owner_quota: int = 0, used: Iterable[tuple[bytes, int]] = ()
    ) -> None:
        if capacity < 0 or owner_quota < 0:
            raise ValueError("quotas are at least 0")
        self.capacity = capacity
        self.owner_quota = owner_quota
        self._owners: dict[bytes, int] = {}
        self.total = 0
        for owner, nbytes in used:
            self.add(owner, nbytes)

    def owner_bytes(self, owner: bytes) -> int:
        """Bytes `owner` uses (reservations included)."""
        return self._owners.get(owner, 0)

    def add(self, owner: bytes, nbytes: int) -> None:
        """Count `nbytes` more for `owner`, whatever the quotas (what is already stored)."""
        if nbytes < 0:
            raise ValueError("bytes added are at least 0")
        if nbytes:
            self._owners[owner] = self.owner_bytes(owner) + nbytes
            self.total += nbytes

    def reserve(self, owner: bytes, nbytes: int) -> None:
        """Take `nbytes` for `owner` if both quotas allow it.

        Raises:
            NodeFull: the node's capacity would be exceeded (checked first: no other owner
                can place here either).
            OwnerQuotaExceeded: the owner's quota would be exceeded.
        """
        if nbytes < 0:
            raise ValueError("bytes reserved are at least 0")
        room = self.capacity - self.total
        if nbytes > room:
            raise NodeFull(nbytes, max(0, room))
        if self.owner_quota:
            left = self.owner_quota - self.owner_bytes(owner)
            if nbytes > left:
                raise OwnerQuotaExceeded(nbytes, max(0, left))
        self.add(owner, nbytes)

    def free(self, owner: bytes, nbytes: int) -> None:
        """Give back `nbytes` of `owner` (freed shares, or a reservation not used).

        Raises:
            ValueError: more than the owner uses (the driver's accounting is wrong).
        """
        used = self.owner_bytes(owner)
        if not 0 <= nbytes <= used:
            raise ValueError(f"cannot free {nbytes} of an owner's {used} bytes")
        if used == nbytes:
            self._owners.pop(owner, None)
        else:
            self._owners[owner] = used - nbytes
        self.total -= nbytes

    def usage(self) -> Usage:
        """A snapshot of what is used."""
        return Usage(self.total, self.capacity, self.owner_quota, dict(self._owners))
