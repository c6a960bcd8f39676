"""A share store in memory that keeps the store's contract (roots checked, one quota, leases
referencing segments, manifests under leases): for tests of what talks to a store."""

from __future__ import annotations

from collections.abc import Sequence

from plexinode.shards import messages, pipeline
from plexinode.shards.holding import Block


class MemoryStore:
    """Shares, leases and manifests in dicts; `quota` bytes in all."""

    def __init__(self, quota: int = 1 << 30) -> None:
        self.blocks: dict[tuple[bytes, bytes, int], bytes] = {}
        self.refs: dict[tuple[bytes, bytes], set[bytes]] = {}
        self.leases: dict[tuple[bytes, bytes], float] = {}
        self.manifests: dict[tuple[bytes, bytes], bytes] = {}
        self.homes: dict[tuple[bytes, bytes], bytes] = {}
        self.quota = quota

    def used(self) -> int:
        return sum(len(b) for b in self.blocks.values())

    async def can_accept(self, owner: bytes, size: int) -> str | None:
        return None if self.used() + size <= self.quota else messages.Reason.NODE_FULL

    async def put(self, blocks: Sequence[Block]) -> tuple[list[bytes], list[bytes], str]:
        stored, refused, reason = [], [], ""
        for b in blocks:
            if pipeline.share_root(b.data) != b.root:
                refused.append(b.segment)
                reason = messages.Reason.BAD_ROOT
            elif self.used() + len(b.data) > self.quota:
                refused.append(b.segment)
                reason = messages.Reason.NODE_FULL
            else:
                self.blocks[b.owner, b.segment, b.index] = b.data
                self.homes.setdefault((b.owner, b.segment), b.home)
                self.refs.setdefault((b.owner, b.backup_id), set()).add(b.segment)
                self.leases[b.owner, b.backup_id] = b.lease_expires
                stored.append(b.segment)
        return stored, refused, reason

    async def add_refs(
        self, owner: bytes, backup_id: bytes, lease_expires: float, segments: Sequence[bytes]
    ) -> tuple[list[bytes], list[bytes]]:
        held = [s for s in segments if any(k[0] == owner and k[1] == s for k in self.blocks)]
        self.refs.setdefault((owner, backup_id), set()).update(held)
        self.leases[owner, backup_id] = lease_expires
        return held, [s for s in segments if s not in held]

    async def put_manifest(
        self, owner: bytes, backup_id: bytes, data: bytes, lease_expires: float
    ) -> str | None:
        self.manifests[owner, backup_id] = data
        self.leases[owner, backup_id] = lease_expires
        return None

    async def renew(self, owner: bytes, backup_ids: Sequence[bytes], lease_expires: float) -> None:
        for b in backup_ids:
            if (owner, b) in self.leases:
                self.leases[owner, b] = lease_expires

    async def remove(self, owner: bytes, backup_id: bytes) -> None:
        gone = self.refs.pop((owner, backup_id), set())
        self.leases.pop((owner, backup_id), None)
        self.manifests.pop((owner, backup_id), None)
        still = set().union(*(v for (o, _), v in self.refs.items() if o == owner))
        for key in [k for k in self.blocks if k[0] == owner and k[1] in gone - still]:
            del self.blocks[key]

    async def read_block(self, owner: bytes, segment: bytes, index: int) -> bytes | None:
        return self.blocks.get((owner, segment, index))

    async def read_manifest(self, owner: bytes, backup_id: bytes) -> bytes | None:
        return self.manifests.get((owner, backup_id))

    async def holdings(self, owner: bytes, home: bytes) -> list[tuple[bytes, int]]:
        held = [(s, i) for (o, s, i) in self.blocks if o == owner and self.homes[o, s] == home]
        return sorted(held)

    async def list_backups(self, owner: bytes) -> list[bytes]:
        return sorted(b for (o, b) in self.manifests if o == owner)
