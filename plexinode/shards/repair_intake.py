"""A new holder's checks on a repaired share, and the repair claims it grants (sans-I/O).

A repairer is any member, and what it sends is another member's data: the owner's. So a holder
takes a repaired share only as far as the owner's signature proves it (docs/security.md):

* the offer (``shard-repair-offer``) names the owner O, a backup B, a home H and a share index
  i, and brings O's manifest of B. `RepairIntake.accept` checks that the manifest decodes, is
  signed by O (the offer's owner is the manifest's signer), is of B, lists H among its homes,
  and that i is below its n; the segments of the share are the manifest's segments whose home
  is H, each with its root for index i and its block size;
* each block (``shard-repair-put``) must be of one of those segments: `RepairIntake.put` gives
  the ``shard-put`` the holder's session assembles, with the manifest's root and size (the
  store then checks the block against that root), filed under O;
* the lease: the repairer's own expiry for B, but never more than `MAX_LEASE` from now (what an
  owner gives at a renewal), nor one already past. The owner's next renewal reaches the new
  holder through its provider record and sets the lease as on every other holder; without the
  owner, a repaired share does not outlive the lease that the repairer had.

`Claims` is the table of repair claims (``shard-repair-claim``) a holder grants: one claimant
per (owner, home) at a time, for `CLAIM_SECONDS`; the same claimant may renew its claim. A
repairer starts only with the grants of more than half of the home's holders it counts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from plexinode.identity import NodeId
from plexinode.shards.manifest import Manifest, ManifestError
from plexinode.shards.messages import Reason, ShardPut, ShardRepairOffer, ShardRepairPut

#: Longest lease a repaired share gets: the owner's lease period (30 days).
MAX_LEASE: Final = 30 * 86_400.0
#: How long a granted claim holds.
CLAIM_SECONDS: Final = 600.0
#: Claims one holder keeps at once (expired ones are forgotten first).
MAX_CLAIMS: Final = 4096


class RepairRefused(Exception):
    """The offer is refused: `reason` (a `messages.Reason`) and a one-line `detail`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class NotProven(Exception):
    """A repair block of a segment the manifest does not list under the home."""


@dataclass(frozen=True, slots=True)
class RepairIntake:
    """An accepted repair offer: what the holder takes on this stream until it is done.

    Attributes:
        offer: the offer.
        lease_expires: the lease the share is kept under.
        expected: segment ID -> (root of share `offer.index`, block size), the home's segments.
    """

    offer: ShardRepairOffer
    lease_expires: float
    expected: dict[bytes, tuple[bytes, int]]

    @classmethod
    def accept(cls, offer: ShardRepairOffer, data: bytes, now: float) -> RepairIntake:
        """Check an offer and its manifest (`data`) at Unix time `now`.

        Raises:
            RepairRefused: a manifest that is malformed, not signed by the offer's owner or not
                of its backup (``bad_manifest``); a home it does not list, an index not below
                its n, or a lease already past (``bad_request``).
        """
        try:
            manifest = Manifest.decode(data)
        except ManifestError as exc:
            raise RepairRefused(Reason.BAD_MANIFEST, str(exc)[:200]) from None
        if (
            NodeId.from_public_key(manifest.owner).raw != offer.owner
            or manifest.backup_id != offer.backup_id
        ):
            raise RepairRefused(Reason.BAD_MANIFEST, "not the owner's manifest of that backup")
        if offer.home not in manifest.homes:
            raise RepairRefused(Reason.BAD_REQUEST, "the manifest does not list that home")
        if offer.index >= manifest.n:
            raise RepairRefused(Reason.BAD_REQUEST, f"index {offer.index} is not below n")
        lease = min(offer.lease_expires, now + MAX_LEASE)
        if lease <= now:
            raise RepairRefused(Reason.BAD_REQUEST, "the lease has already expired")
        expected = {
            info.identity: (info.roots[offer.index], info.block_size)
            for info in manifest.segments()
            if info.home == offer.home
        }
        return cls(offer, lease, expected)

    @property
    def size(self) -> int:
        """The share's bytes (for the quota check)."""
        return sum(size for _, size in self.expected.values())

    def put(self, piece: ShardRepairPut) -> ShardPut:
        """The ``shard-put`` a repair piece stands for (root and size from the manifest).

        Raises:
            NotProven: the segment is not one of the home's in the manifest.
        """
        found = self.expected.get(piece.segment)
        if found is None:
            raise NotProven(f"segment {piece.segment.hex()} is not in the home")
        root, size = found
        offer = self.offer
        return ShardPut(
            backup_id=offer.backup_id,
            home=offer.home,
            lease_expires=self.lease_expires,
            segment=piece.segment,
            index=offer.index,
            root=root,
            size=size,
            offset=piece.offset,
            data=piece.data,
            flush=piece.flush,
        )

    def missing(self, held: Iterable[tuple[bytes, int]]) -> int:
        """How many of the share's segments are not among `held` (segment ID, index) pairs."""
        have = {segment for segment, index in held if index == self.offer.index}
        return sum(1 for segment in self.expected if segment not in have)


class Claims:
    """Repair claims granted by one holder (see the module docstring); times are the
    caller's clock."""

    def __init__(self, limit: int = MAX_CLAIMS) -> None:
        self._limit = limit
        self._held: dict[tuple[bytes, bytes], tuple[bytes, float]] = {}

    def claim(self, owner: bytes, home: bytes, claimant: bytes, now: float) -> bytes | None:
        """Grant (None) or refuse, returning the member holding the claim (or b"" when the
        table is full)."""
        key = (owner, home)
        held = self._held.get(key)
        if held is not None and held[0] != claimant and held[1] > now:
            return held[0]
        if held is None and len(self._held) >= self._limit:
            self._held = {k: v for k, v in self._held.items() if v[1] > now}
            if len(self._held) >= self._limit:
                return b""
        self._held[key] = (claimant, now + CLAIM_SECONDS)
        return None

    def release(self, owner: bytes, home: bytes, claimant: bytes) -> None:
        """Drop `claimant`'s claim on the home, if it holds it."""
        key = (owner, home)
        if self._held.get(key, (None, 0.0))[0] == claimant:
            del self._held[key]
