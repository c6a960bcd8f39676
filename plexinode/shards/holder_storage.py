"""The share store as the holder service uses it: per-segment answers, refusal reasons.

`holder_service.HolderService` speaks in ``shards/1`` terms (which segments were stored,
which refused and why); `store.ShareStore` in storage terms (a batch for one lease, or an
exception). `StoreHolding` translates: it groups a commit's blocks by lease, turns the store's
exceptions into the protocol's reasons (``node_full``, ``owner_quota``, ``disk_full``,
``bad_root``, ``conflict``), and answers reads with None where the store says "not held".
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from itertools import groupby

from plexinode.shards.holding import Block
from plexinode.shards.messages import Reason
from plexinode.shards.share_ledger import OwnerQuotaExceeded, QuotaExceeded, ShareRejected
from plexinode.shards.store import DiskFull, Share, ShareNotHeld, ShareStore, UnknownLease

log = logging.getLogger(__name__)


def quota_reason(exc: QuotaExceeded) -> str:
    """The ``shards/1`` reason for a quota refusal."""
    if isinstance(exc, DiskFull):
        return Reason.DISK_FULL
    if isinstance(exc, OwnerQuotaExceeded):
        return Reason.OWNER_QUOTA
    return Reason.NODE_FULL


class StoreHolding:
    """`holder_service.HolderStorage` over a `store.ShareStore`."""

    def __init__(self, store: ShareStore) -> None:
        self.store = store

    async def can_accept(self, owner: bytes, size: int) -> str | None:
        """None if the quotas have room for about `size` more bytes of `owner`'s."""
        usage = self.store.usage()
        if usage.total_bytes + size > usage.capacity_bytes:
            return Reason.NODE_FULL
        held = usage.owners.get(owner, 0)
        if usage.owner_quota_bytes and held + size > usage.owner_quota_bytes:
            return Reason.OWNER_QUOTA
        return None

    async def put(self, blocks: Sequence[Block]) -> tuple[list[bytes], list[bytes], str]:
        """Store blocks lease by lease; a lease's batch is stored whole or refused whole."""
        stored: list[bytes] = []
        refused: list[bytes] = []
        reason = ""

        def lease(block: Block) -> tuple[bytes, bytes, bytes, int]:
            return block.owner, block.backup_id, block.home, int(block.lease_expires)

        for (owner, backup_id, home, expires), group in groupby(blocks, key=lease):
            batch = list(group)
            shares = [Share(b.segment, b.index, b.root, b.data) for b in batch]
            try:
                await self.store.put(owner, backup_id, home, expires, shares)
            except QuotaExceeded as exc:
                reason = quota_reason(exc)
            except ShareRejected as exc:
                reason = Reason.BAD_ROOT if "root" in str(exc) else Reason.CONFLICT
                log.info("shards: refused a batch from %s: %s", owner.hex()[:12], exc)
            else:
                stored.extend(b.segment for b in batch)
                continue
            refused.extend(b.segment for b in batch)
        return stored, refused, reason

    async def add_refs(
        self, owner: bytes, backup_id: bytes, lease_expires: float, segments: Sequence[bytes]
    ) -> tuple[list[bytes], list[bytes]]:
        """Reference held segments from the backup's lease: (referenced, not held)."""
        try:
            missing = await self.store.add_references(
                owner, backup_id, int(lease_expires), segments
            )
        except ShareRejected:
            return [], list(segments)
        absent = set(missing)
        return [s for s in segments if s not in absent], list(missing)

    async def put_manifest(
        self, owner: bytes, backup_id: bytes, data: bytes, lease_expires: float
    ) -> str | None:
        """Keep a manifest under its backup's lease (made if the backup stored nothing here)."""
        try:
            try:
                await self.store.put_manifest(owner, backup_id, data)
            except UnknownLease:
                await self.store.add_references(owner, backup_id, int(lease_expires), [])
                await self.store.put_manifest(owner, backup_id, data)
        except QuotaExceeded as exc:
            return quota_reason(exc)
        except ShareRejected:
            return Reason.BAD_MANIFEST
        return None

    async def renew(self, owner: bytes, backup_ids: Sequence[bytes], lease_expires: float) -> None:
        """Extend the leases this node has (others are not here: nothing to renew)."""
        for backup_id in backup_ids:
            try:
                await self.store.renew(owner, backup_id, int(lease_expires))
            except UnknownLease:
                continue

    async def remove(self, owner: bytes, backup_id: bytes) -> None:
        """Drop the lease and what only it kept."""
        await self.store.remove_lease(owner, backup_id)

    async def read_block(self, owner: bytes, segment: bytes, index: int) -> bytes | None:
        """The block, or None when it is not held (or was found damaged and dropped)."""
        try:
            return await self.store.read_block(owner, segment, index)
        except ShareNotHeld:
            return None

    async def read_manifest(self, owner: bytes, backup_id: bytes) -> bytes | None:
        """The manifest kept for the backup, if any."""
        return await self.store.manifest(owner, backup_id)

    async def holdings(self, owner: bytes, home: bytes) -> list[tuple[bytes, int]]:
        """The shares of `owner`'s `home` held here: (segment ID, index)."""
        return [(segment, index) for segment, index, _, _ in await self.store.held(owner, home)]

    async def list_backups(self, owner: bytes) -> list[bytes]:
        """The owner's backups whose manifests are kept here."""
        return [backup_id for backup_id, _, kept in await self.store.leases(owner) if kept]
