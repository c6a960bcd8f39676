"""The holder's share store: blocks in files, rows in the node's database, acknowledged durable.

What a holder keeps for an owner (docs/architecture.md, "The share store"):

* a **share** (owner, segment ID, share index) -> its block (a file under ``shares/``), the
  block's Merkle root, its size and its *home* (the backup under which it was placed);
* a **lease** (owner, backup ID) -> its expiry, with the segments that backup references and,
  if the owner sent it, the backup's manifest (opaque bytes here);
* a share is kept while some lease of its owner references its segment.

Durability of an acknowledgement: `ShareStore.put` returns only once every block is in its file
(fsynced, renamed, the directory fsynced) and the batch's rows are committed in ONE transaction
(WAL, ``synchronous=FULL``): a batch of 32 shares pays 32 file fsyncs, one directory fsync and
one commit, not 32 of each (scripts/bench/bench_share_store.py measures it). Rows are committed
after their files exist and deleted before their files are, so at any kill point the only
inconsistency is files no row names, which `open_share_store` removes. A row whose file is gone
or has the wrong size (a disk that lost it) is dropped at the same time, and counted.

Garbage collection deletes a lease (on `backup rm`, `remove_lease`, or when it expires,
`expire`), then for each segment it referenced asks the ``(owner, segment_id)`` index whether any
other lease of the owner still does; the shares of segments nobody references are deleted in the
same transaction and their files unlinked after the commit. Expired leases are found by the
index on expiry: the work is in proportion to what expired, never a scan of what is held.

Concurrency: several puts may run at once (one per sender's stream). Quota is reserved in the
`Ledger` before any file is written, so concurrent batches cannot overshoot it together; the
commit checks again what the batch's plan assumed (a share another put committed meanwhile is a
retry; one that garbage collection freed meanwhile makes the put plan again).
"""

from __future__ import annotations

import errno
import logging
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import trio

from plexinode.errors import PlexinodeError, StorageError
from plexinode.shards import pipeline, share_sql
from plexinode.shards.share_files import (
    ShareFiles,
    new_name,
)
from plexinode.shards.share_ledger import (
    Ledger,
    NodeFull,
    ShareClaim,
    ShareRejected,
    Usage,
    check_claim,
    check_lease_key,
    check_manifest,
    check_segment_id,
    plan_batch,
)
from plexinode.storage import Database

log = logging.getLogger(__name__)

#: Leases one `expire` call removes in one transaction; the caller calls again while it gets
#: a full batch, so a mass expiry never holds the database's write lock for long.
EXPIRE_BATCH: Final = 256
#: Block files written at once (threads), across all puts.
WRITE_WORKERS: Final = 4
_DISK_FULL: Final = frozenset({errno.ENOSPC, errno.EDQUOT})
_PLAN_ATTEMPTS: Final = 3


class DiskFull(NodeFull):
    """The disk filled up while a batch was written: nothing of it is kept."""

    reason = "disk full"


class ShareNotHeld(PlexinodeError):
    """No such share here (never stored, freed, or dropped because its file was damaged)."""


class UnknownLease(PlexinodeError):
    """No such lease here: nothing of it to renew, reference or attach a manifest to."""


@dataclass(frozen=True, slots=True)
class Share:
    """A share as a sender hands it over: its key, the root it claims, and its block."""

    segment_id: bytes
    index: int
    root: bytes
    block: bytes


@dataclass(frozen=True, slots=True)
class Stored:
    """What a put did: shares newly stored and shares already held (a retry)."""

    stored: int
    already_held: int


@dataclass(frozen=True, slots=True)
class Freed:
    """What garbage collection did: leases removed, shares and files deleted, bytes freed."""

    leases: int = 0
    shares: int = 0
    files: int = 0
    bytes: int = 0


@dataclass(frozen=True, slots=True)
class Recovery:
    """What opening the store repaired after a crash or a damaged disk.

    Attributes:
        temporary_files: unfinished writes removed.
        orphan_files: block files no committed row named (a batch killed before its commit).
        dropped_rows: shares whose file was missing or of the wrong size.
    """

    temporary_files: int
    orphan_files: int
    dropped_rows: int


@dataclass(frozen=True, slots=True)
class LeafProof:
    """Leaves of a block with their Merkle paths: a challenge's answer.

    Attributes:
        count: leaves in the block's tree.
        leaves: (leaf index, leaf bytes, path) for each leaf asked for.
    """

    count: int
    leaves: tuple[tuple[int, bytes, tuple[bytes, ...]], ...]


class _Vanished(Exception):
    """A share the plan took as held was freed before the batch committed: plan again."""


class ShareStore:
    """The share store over an open database. Use `open_share_store` to get one."""

    def __init__(
        self,
        db: Database,
        files: ShareFiles,
        ledger: Ledger,
        recovery: Recovery,
        clock: Callable[[], float],
    ) -> None:
        self._db = db
        self._files = files
        self._ledger = ledger
        self.recovery = recovery
        self._clock = clock
        self._writers = trio.CapacityLimiter(WRITE_WORKERS)

    @property
    def directory(self) -> Path:
        """Where the block files are."""
        return self._files.directory

    def usage(self) -> Usage:
        """Bytes held, in total and per owner (reservations of puts in flight included)."""
        return self._ledger.usage()

    async def put(
        self, owner: bytes, backup_id: bytes, home: bytes, expires: int, shares: Sequence[Share]
    ) -> Stored:
        """Store a batch of shares of `owner` for the lease (owner, `backup_id`); return once
        durable (the acknowledgement).

        The lease is created, or its expiry raised to `expires`; the backup references every
        segment of the batch. Each share's block must match its root. A share already held with
        the same root is not written again (a retried batch succeeds).

        Raises:
            ShareRejected: a bad root, size or ID, a share held with another root, or a lease
                already expired; nothing of the batch is stored.
            NodeFull: the node's quota (or its disk, `DiskFull`) has no room for the batch.
            OwnerQuotaExceeded: the owner's quota has no room for it.
        """
        check_lease_key(owner, backup_id)
        check_lease_key(owner, home)
        if expires <= self._clock():
            raise ShareRejected("the lease has already expired")
        claims = [ShareClaim(s.segment_id, s.index, s.root, len(s.block)) for s in shares]
        for claim in claims:
            check_claim(claim)
        bad = await trio.to_thread.run_sync(_mismatched, shares)
        if bad:
            raise ShareRejected(f"{len(bad)} blocks do not match their roots: {bad[0]}")
        for _ in range(_PLAN_ATTEMPTS):
            try:
                return await self._put_once(
                    owner, backup_id, home=home, expires=expires, shares=shares, claims=claims
                )
            except _Vanished:
                continue
        raise StorageError("shares kept vanishing under a put; try again")

    async def _put_once(
        self,
        owner: bytes,
        backup_id: bytes,
        *,
        home: bytes,
        expires: int,
        shares: Sequence[Share],
        claims: Sequence[ShareClaim],
    ) -> Stored:
        held = await self._db.read(lambda conn: share_sql.held_roots(conn, owner, claims))
        new = plan_batch(owner, claims, held)
        reserved = sum(claims[i].size for i in new)
        self._ledger.reserve(owner, reserved)
        names: list[str] = []
        try:
            names = await self._write_blocks([shares[i].block for i in new])
            rows = [(claims[i], name) for i, name in zip(new, names, strict=True)]
            fresh = set(new)
            skipped = [c for i, c in enumerate(claims) if i not in fresh]
            surplus = await self._db.write(
                lambda conn: share_sql.commit_put(
                    conn,
                    owner,
                    backup_id,
                    home=home,
                    expires=expires,
                    rows=rows,
                    skipped=skipped,
                    vanished=_Vanished,
                )
            )
        except BaseException:
            self._ledger.free(owner, reserved)
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self._files.remove, names)
            raise
        # Committed: from here on nothing may undo it (shares racing in from another put of the
        # same batch were kept there; ours for them are surplus).
        if surplus:
            self._ledger.free(owner, sum(size for _, size in surplus))
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self._files.remove, [n for n, _ in surplus])
        return Stored(len(new) - len(surplus), len(claims) - len(new) + len(surplus))

    async def _write_blocks(self, blocks: Sequence[bytes]) -> list[str]:
        """Write a batch's blocks durably, several at once; nothing stays on any error.

        Why several at once: a new file's fsync waits for a journal commit, and fsyncs issued
        together share one, so `WRITE_WORKERS` threads write a batch about twice as fast as one
        (docs/benchmarks.md). The directory is fsynced once, after the last rename.
        """
        names = [new_name() for _ in blocks]
        failures: list[OSError] = []

        async def write(name: str, block: bytes) -> None:
            try:
                await trio.to_thread.run_sync(
                    self._files.write_one, name, block, limiter=self._writers
                )
            except OSError as exc:
                failures.append(exc)

        try:
            async with trio.open_nursery() as nursery:
                for name, block in zip(names, blocks, strict=True):
                    nursery.start_soon(write, name, block)
            if not failures and names:
                try:
                    await trio.to_thread.run_sync(self._files.sync)
                except OSError as exc:
                    failures.append(exc)
            if failures:
                first = failures[0]
                if first.errno in _DISK_FULL:
                    raise DiskFull(sum(map(len, blocks)), 0) from None
                raise StorageError(f"cannot write shares in {self.directory}: {first}") from None
        except BaseException:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self._files.remove, names)
            raise
        return names

    async def add_references(
        self, owner: bytes, backup_id: bytes, expires: int, segment_ids: Sequence[bytes]
    ) -> list[bytes]:
        """Make the lease (owner, `backup_id`) reference segments already held (a later backup
        reusing them: no bytes are sent); create the lease or raise its expiry.

        Returns:
            The segments of `segment_ids` of which no share is held here (not referenced).
        """
        check_lease_key(owner, backup_id)
        for segment_id in segment_ids:
            check_segment_id(segment_id)
        if expires <= self._clock():
            raise ShareRejected("the lease has already expired")
        return await self._db.write(
            lambda conn: share_sql.add_references(conn, owner, backup_id, expires, segment_ids)
        )

    async def renew(self, owner: bytes, backup_id: bytes, expires: int) -> None:
        """Set the lease's expiry.

        Raises:
            UnknownLease: no such lease.
        """
        if not await self._db.write(lambda conn: share_sql.renew(conn, owner, backup_id, expires)):
            raise UnknownLease(f"no lease {backup_id.hex()} of {owner.hex()}")

    async def remove_lease(self, owner: bytes, backup_id: bytes) -> Freed:
        """Delete a lease (``backup rm``) and the shares no other lease of the owner references."""
        return await self._drop(lambda conn: [(owner, backup_id)])

    async def expire(self, now: float, limit: int = EXPIRE_BATCH) -> Freed:
        """Delete up to `limit` leases expired at `now` (oldest first) and the shares only they
        referenced. A result with ``leases == limit`` means more may be due: call again."""
        return await self._drop(lambda conn: share_sql.expired(conn, int(now), limit))

    async def _drop(self, pick: Callable[[sqlite3.Connection], list[tuple[bytes, bytes]]]) -> Freed:
        def drop(
            conn: sqlite3.Connection,
        ) -> tuple[int, list[tuple[bytes, str, int]], list[tuple[bytes, int]]]:
            return share_sql.drop_leases(conn, pick(conn))

        leases, files, manifests = await self._db.write(drop)
        for owner, _, size in files:
            self._ledger.free(owner, size)
        for owner, size in manifests:
            self._ledger.free(owner, size)
        with trio.CancelScope(shield=True):
            removed = await trio.to_thread.run_sync(self._files.remove, [n for _, n, _ in files])
        freed = Freed(leases, len(files), removed, sum(s for *_, s in files))
        if freed.leases:
            log.debug("freed %d leases, %d shares (%d bytes)", leases, len(files), freed.bytes)
        return freed

    async def read_block(self, owner: bytes, segment_id: bytes, index: int) -> bytes:
        """The block of a share, checked against its root.

        Raises:
            ShareNotHeld: no such share, or its block no longer matches its root (the share is
                dropped then, so that it is reported missing and repaired).
        """
        block, _ = await self._read(owner, segment_id, index, leaves=())
        return block

    async def read_leaves(
        self, owner: bytes, segment_id: bytes, index: int, leaves: Sequence[int]
    ) -> LeafProof:
        """Chosen leaves of a share's block with their Merkle paths (a challenge's answer).

        Raises:
            ShareNotHeld: as `read_block`.
            ShareRejected: a leaf index outside the block.
        """
        _, proof = await self._read(owner, segment_id, index, leaves=leaves)
        return proof

    async def _read(
        self, owner: bytes, segment_id: bytes, index: int, leaves: Sequence[int]
    ) -> tuple[bytes, LeafProof]:
        row = await self._db.read(lambda conn: share_sql.share_row(conn, owner, segment_id, index))
        if row is None:
            raise ShareNotHeld(f"share {index} of segment {segment_id.hex()} is not held")
        name, root = row

        def load() -> tuple[bytes, LeafProof] | None:
            try:
                block = self._files.read(name)
            except FileNotFoundError:
                return None
            tree = pipeline.share_tree(block)
            if tree.root != root:
                return None
            if any(not 0 <= i < tree.count for i in leaves):
                raise ShareRejected(f"a leaf index is within 0..{tree.count - 1}")
            chosen = pipeline.leaves(block)
            return block, LeafProof(tree.count, tuple((i, chosen[i], tree.path(i)) for i in leaves))

        loaded = await trio.to_thread.run_sync(load)
        if loaded is None:
            # Missing or not matching its root: dropped, unless garbage collection freed it
            # between the row and the file (then there is nothing left to drop).
            if await self._forget(owner, segment_id, index, name):
                log.warning("share %d of segment %s is damaged; dropped", index, segment_id.hex())
            raise ShareNotHeld(f"share {index} of segment {segment_id.hex()} is damaged")
        return loaded

    async def _forget(self, owner: bytes, segment_id: bytes, index: int, name: str) -> bool:
        size = await self._db.write(
            lambda conn: share_sql.delete_share(conn, owner, segment_id, index, name)
        )
        if size is None:
            return False
        self._ledger.free(owner, size)
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(self._files.remove, [name])
        return True

    async def held(self, owner: bytes, home: bytes) -> list[tuple[bytes, int, bytes, int]]:
        """The shares of `owner` placed under `home`: (segment ID, index, root, size), sorted."""
        return await self._db.read(lambda conn: share_sql.held(conn, owner, home))

    async def homes(self) -> list[tuple[bytes, bytes, int]]:
        """Each (owner, home) this node holds shares of, with a share index it holds."""
        return await self._db.read(share_sql.homes)

    async def index_held(self, owner: bytes, home: bytes) -> int | None:
        """A share index this node holds of `owner`'s `home`, or None."""
        return await self._db.read(lambda conn: share_sql.index_held(conn, owner, home))

    async def put_manifest(self, owner: bytes, backup_id: bytes, data: bytes) -> None:
        """Keep (or replace) the manifest of a lease; it goes when the lease goes.

        Raises:
            UnknownLease: no such lease.
            ShareRejected: an empty or oversized manifest.
            NodeFull, OwnerQuotaExceeded: no room for it (manifests count toward the quotas).
        """
        check_lease_key(owner, backup_id)
        check_manifest(data)
        self._ledger.reserve(owner, len(data))
        try:
            old = await self._db.write(
                lambda conn: share_sql.put_manifest(conn, owner, backup_id, data)
            )
        except BaseException:
            self._ledger.free(owner, len(data))
            raise
        if old is None:
            self._ledger.free(owner, len(data))
            raise UnknownLease(f"no lease {backup_id.hex()} of {owner.hex()}")
        self._ledger.free(owner, old)

    async def manifest(self, owner: bytes, backup_id: bytes) -> bytes | None:
        """The manifest kept for a lease, if any."""
        return await self._db.read(lambda conn: share_sql.manifest(conn, owner, backup_id))

    async def leases(self, owner: bytes) -> list[tuple[bytes, int, bool]]:
        """The leases of `owner`: (backup ID, expiry, whether a manifest is kept), sorted."""
        return await self._db.read(lambda conn: share_sql.leases(conn, owner))


def _mismatched(shares: Sequence[Share]) -> list[str]:
    return [
        f"share {s.index} of segment {s.segment_id.hex()}"
        for s in shares
        if pipeline.share_root(s.block) != s.root
    ]
