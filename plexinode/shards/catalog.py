"""The owner's record of its backups: what it made, what it placed, what each backup uses.

Four tables (storage migrations 7 and 9), all in the node's one database:

* ``backups``: one row per backup: its name and source, when it was made, its code (k, n,
  happiness), its state (``uploading`` until every segment is placed and the manifest is
  signed, then ``complete``), its size, its lease, and its manifest once complete. A backup
  that fails is removed from its holders at once; one interrupted by a crash stays
  ``uploading`` until the next renewal (a minute after the node starts, then daily) removes
  it from the holders it reached (`BackupService.clean_interrupted`). No manifest exists
  until the end, so none can claim shares that were never stored.
* ``placed_segments``: every segment the owner has placed, by ID and code, with its home, its
  plaintext length, its block size and its n roots: what a later backup needs to list a reused
  segment in its own manifest without reading or sending it again. A segment counts as placed
  only once it was acknowledged by enough holders.
* ``placements`` (migration 9): which holder took which share index of each home.
* ``backup_segments``: which backups use which segments. Deleting a backup forgets the
  segments no other backup of the owner uses (`Catalog.remove`), so a later backup does not
  skip a segment whose shares were freed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from plexinode.shards import merkle
from plexinode.storage.database import Database

UPLOADING: Final = "uploading"
COMPLETE: Final = "complete"


@dataclass(frozen=True, slots=True)
class PlacedSegment:
    """A segment the owner has placed.

    Attributes:
        identity: the segment ID.
        home: the backup under which it was placed.
        length: its plaintext length.
        block_size: the size of each of its blocks.
        roots: its n Merkle roots.
    """

    identity: bytes
    home: bytes
    length: int
    block_size: int
    roots: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class BackupRow:
    """One backup as the owner records it (`size`: bytes of the stream)."""

    backup_id: bytes
    name: str
    source: str
    created: float
    k: int
    n: int
    happy: int
    state: str
    size: int
    lease_expires: float
    manifest: bytes | None


_SELECT: Final = (
    "SELECT backup_id, name, source, created, k, n, happy, state, bytes, lease_expires, manifest"
    " FROM backups"
)


def _split_roots(raw: bytes) -> tuple[bytes, ...]:
    size = merkle.HASH_BYTES
    return tuple(raw[i : i + size] for i in range(0, len(raw), size))


class Catalog:
    """The owner's backups in the node's database (see the module docstring)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def begin(
        self,
        backup_id: bytes,
        *,
        name: str,
        source: str,
        created: float,
        k: int,
        n: int,
        happy: int,
        lease_expires: float,
    ) -> None:
        """Record a backup that is starting (state ``uploading``)."""
        await self._db.execute(
            "INSERT INTO backups (backup_id, name, source, created, k, n, happy, state, bytes,"
            " lease_expires, manifest) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, NULL)",
            (backup_id, name, source, created, k, n, happy, UPLOADING, lease_expires),
        )

    async def adopt(
        self,
        row: BackupRow,
        segments: Iterable[PlacedSegment],
        homes: dict[bytes, dict[int, bytes]],
    ) -> bool:
        """Record a complete backup found elsewhere (its manifest fetched from a holder, on a
        new machine), with its segments and where its homes' shares are, in one transaction.
        False if the backup was known already (nothing changes)."""
        placed = [
            (s.identity, row.k, row.n, s.home, s.length, s.block_size, b"".join(s.roots))
            for s in segments
        ]
        holders = [(home, i, h) for home, by_index in homes.items() for i, h in by_index.items()]

        def write(conn: sqlite3.Connection) -> bool:
            if conn.execute(
                "SELECT 1 FROM backups WHERE backup_id = ?", (row.backup_id,)
            ).fetchone():
                return False
            conn.execute(
                "INSERT INTO backups (backup_id, name, source, created, k, n, happy, state, bytes,"
                " lease_expires, manifest) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    row.backup_id,
                    row.name,
                    row.source,
                    row.created,
                    row.k,
                    row.n,
                    row.happy,
                    COMPLETE,
                    row.size,
                    row.lease_expires,
                    row.manifest,
                ),
            )
            conn.executemany(
                "INSERT OR IGNORE INTO placed_segments"
                " (segment_id, k, n, home, length, block_size, roots) VALUES (?, ?, ?, ?, ?, ?, ?)",
                placed,
            )
            conn.executemany(
                "INSERT OR IGNORE INTO backup_segments (backup_id, segment_id) VALUES (?, ?)",
                [(row.backup_id, p[0]) for p in placed],
            )
            conn.executemany(
                "INSERT OR IGNORE INTO placements (home, share_index, holder) VALUES (?, ?, ?)",
                holders,
            )
            return True

        return await self._db.write(write)

    async def known(self, k: int, n: int) -> frozenset[bytes]:
        """IDs of the segments placed with code (k, n): a backup with that code skips them."""
        rows = await self._db.execute(
            "SELECT segment_id FROM placed_segments WHERE k = ? AND n = ?", (k, n)
        )
        return frozenset(row[0] for row in rows)

    async def placed(
        self, k: int, n: int, identities: Iterable[bytes]
    ) -> dict[bytes, PlacedSegment]:
        """The placed segments among `identities` with code (k, n)."""
        wanted = list(identities)

        def read(conn: sqlite3.Connection) -> dict[bytes, PlacedSegment]:
            found = {}
            for identity in wanted:
                row = conn.execute(
                    "SELECT home, length, block_size, roots FROM placed_segments"
                    " WHERE segment_id = ? AND k = ? AND n = ?",
                    (identity, k, n),
                ).fetchone()
                if row is not None:
                    found[identity] = PlacedSegment(
                        identity, row[0], row[1], row[2], _split_roots(row[3])
                    )
            return found

        return await self._db.read(read)

    async def record_placed(
        self, backup_id: bytes, k: int, n: int, segments: Iterable[PlacedSegment]
    ) -> None:
        """Segments of `backup_id` now placed (new ones), in one transaction."""
        rows = [
            (s.identity, k, n, s.home, s.length, s.block_size, b"".join(s.roots)) for s in segments
        ]

        def write(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT OR IGNORE INTO placed_segments"
                " (segment_id, k, n, home, length, block_size, roots) VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            conn.executemany(
                "INSERT OR IGNORE INTO backup_segments (backup_id, segment_id) VALUES (?, ?)",
                [(backup_id, row[0]) for row in rows],
            )

        await self._db.write(write)

    async def add_uses(self, backup_id: bytes, identities: Iterable[bytes]) -> None:
        """`backup_id` uses these segments too (placed before, by it or another backup)."""
        rows = [(backup_id, identity) for identity in identities]

        def write(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT OR IGNORE INTO backup_segments (backup_id, segment_id) VALUES (?, ?)", rows
            )

        await self._db.write(write)

    async def complete(self, backup_id: bytes, manifest: bytes, size: int) -> None:
        """The backup is complete: its manifest is signed and every segment placed."""
        await self._db.execute(
            "UPDATE backups SET state = ?, manifest = ?, bytes = ? WHERE backup_id = ?",
            (COMPLETE, manifest, size, backup_id),
        )

    async def renew(self, backup_ids: Iterable[bytes], lease_expires: float) -> None:
        """Record the new lease expiry of backups."""
        rows = [(lease_expires, backup_id) for backup_id in backup_ids]

        def write(conn: sqlite3.Connection) -> None:
            conn.executemany("UPDATE backups SET lease_expires = ? WHERE backup_id = ?", rows)

        await self._db.write(write)

    async def get(self, backup_id: bytes) -> BackupRow | None:
        """One backup, or None."""
        rows = await self._db.execute(_SELECT + " WHERE backup_id = ?", (backup_id,))
        return BackupRow(*rows[0]) if rows else None

    async def backups(self, state: str | None = None) -> list[BackupRow]:
        """The backups (of one state, if given), oldest first."""
        if state is None:
            rows = await self._db.execute(_SELECT + " ORDER BY created, backup_id")
        else:
            rows = await self._db.execute(
                _SELECT + " WHERE state = ? ORDER BY created, backup_id", (state,)
            )
        return [BackupRow(*row) for row in rows]

    async def record_holders(self, home: bytes, holders: dict[int, bytes]) -> None:
        """Where `home`'s share indices were placed (holder node IDs)."""
        rows = [(home, index, holder) for index, holder in holders.items()]

        def write(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT OR REPLACE INTO placements (home, share_index, holder) VALUES (?, ?, ?)",
                rows,
            )

        await self._db.write(write)

    async def holders(self, home: bytes) -> dict[int, bytes]:
        """Share index -> holder node ID of `home`, as placed (or last repaired)."""
        rows = await self._db.execute(
            "SELECT share_index, holder FROM placements WHERE home = ?", (home,)
        )
        return {index: holder for index, holder in rows}

    async def remove(self, backup_id: bytes) -> list[bytes]:
        """Forget a backup; returns the segments no other backup uses (forgotten too)."""

        def write(conn: sqlite3.Connection) -> list[bytes]:
            used = [
                row[0]
                for row in conn.execute(
                    "SELECT segment_id FROM backup_segments WHERE backup_id = ?", (backup_id,)
                )
            ]
            conn.execute("DELETE FROM backup_segments WHERE backup_id = ?", (backup_id,))
            conn.execute("DELETE FROM backups WHERE backup_id = ?", (backup_id,))
            freed = [
                segment
                for segment in used
                if conn.execute(
                    "SELECT 1 FROM backup_segments WHERE segment_id = ? LIMIT 1", (segment,)
                ).fetchone()
                is None
            ]
            conn.executemany(
                "DELETE FROM placed_segments WHERE segment_id = ?", [(s,) for s in freed]
            )
            return freed

        return await self._db.write(write)
