"""The share store's statements (migration 7's tables), run on the storage thread.

Each function takes the connection `Database.read` or `Database.write` hands it; those passed to
`write` run inside one transaction. Every statement that garbage collection runs is a lookup by
primary key or by an index (the expiry, ``(owner, segment_id)``), never a scan: tests check the
query plans and count the work.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Final

from plexinode.shards.share_ledger import ShareClaim, ShareKey, ShareRejected

UPSERT_LEASE = (
    "INSERT INTO shard_leases (owner, backup_id, expires) VALUES (?, ?, ?)"
    " ON CONFLICT (owner, backup_id) DO UPDATE SET expires = max(expires, excluded.expires)"
)
INSERT_REF = "INSERT OR IGNORE INTO shard_refs (owner, backup_id, segment_id) VALUES (?, ?, ?)"
SHARE_ROOT = "SELECT root FROM shard_shares WHERE owner = ? AND segment_id = ? AND share_index = ?"
SEGMENT_HELD = "SELECT 1 FROM shard_shares WHERE owner = ? AND segment_id = ? LIMIT 1"
EXPIRED = "SELECT owner, backup_id FROM shard_leases WHERE expires <= ? ORDER BY expires LIMIT ?"
LEASE_REFS = "SELECT segment_id FROM shard_refs WHERE owner = ? AND backup_id = ?"
MANIFEST_SIZE = "SELECT length(manifest) FROM shard_manifests WHERE owner = ? AND backup_id = ?"
DELETE_LEASE = "DELETE FROM shard_leases WHERE owner = ? AND backup_id = ?"
SEGMENT_REFERENCED = "SELECT 1 FROM shard_refs WHERE owner = ? AND segment_id = ? LIMIT 1"
SEGMENT_SHARES = "SELECT file, size FROM shard_shares WHERE owner = ? AND segment_id = ?"
DELETE_SEGMENT = "DELETE FROM shard_shares WHERE owner = ? AND segment_id = ?"
#: The statements garbage collection runs (each checked to use an index).
GC_STATEMENTS = (EXPIRED, LEASE_REFS, MANIFEST_SIZE, DELETE_LEASE, SEGMENT_REFERENCED,
                 SEGMENT_SHARES, DELETE_SEGMENT)  # fmt: skip


def held_roots(
    conn: sqlite3.Connection, owner: bytes, claims: Sequence[ShareClaim]
) -> dict[ShareKey, bytes]:
    """The roots of the shares of `claims` already held."""
    held = {}
    for claim in claims:
        row = conn.execute(SHARE_ROOT, (owner, claim.segment_id, claim.index)).fetchone()
        if row is not None:
            held[owner, claim.segment_id, claim.index] = bytes(row[0])
    return held


def commit_put(
    conn: sqlite3.Connection,
    owner: bytes,
    backup_id: bytes,
    *,
    home: bytes,
    expires: int,
    rows: Sequence[tuple[ShareClaim, str]],
    skipped: Sequence[ShareClaim],
    vanished: type[Exception],
) -> list[tuple[str, int]]:
    """Commit a batch: the lease, its references, the new shares' rows.

    Returns:
        The files written for shares another put committed meanwhile (same root): surplus.

    Raises:
        ShareRejected: a share committed meanwhile under another root.
        vanished: a share the plan took as held is gone (freed meanwhile).
    """
    for claim in skipped:
        if conn.execute(SHARE_ROOT, (owner, claim.segment_id, claim.index)).fetchone() is None:
            raise vanished
    surplus = []
    for claim, name in rows:
        inserted = conn.execute(
            "INSERT OR IGNORE INTO shard_shares (owner, segment_id, share_index, home, size,"
            " root, file) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (owner, claim.segment_id, claim.index, home, claim.size, claim.root, name),
        ).rowcount
        if not inserted:
            root = conn.execute(SHARE_ROOT, (owner, claim.segment_id, claim.index)).fetchone()[0]
            if bytes(root) != claim.root:
                raise ShareRejected(
                    f"share {claim.index} of segment {claim.segment_id.hex()} is held with "
                    "another root"
                )
            surplus.append((name, claim.size))
    conn.execute(UPSERT_LEASE, (owner, backup_id, expires))
    segments = dict.fromkeys(c.segment_id for c, _ in rows) | dict.fromkeys(
        c.segment_id for c in skipped
    )
    conn.executemany(INSERT_REF, [(owner, backup_id, s) for s in segments])
    return surplus


def add_references(
    conn: sqlite3.Connection,
    owner: bytes,
    backup_id: bytes,
    expires: int,
    segment_ids: Sequence[bytes],
) -> list[bytes]:
    """Reference the held ones of `segment_ids` from the lease; return the others."""
    conn.execute(UPSERT_LEASE, (owner, backup_id, expires))
    missing = []
    for segment_id in dict.fromkeys(segment_ids):
        if conn.execute(SEGMENT_HELD, (owner, segment_id)).fetchone() is None:
            missing.append(segment_id)
        else:
            conn.execute(INSERT_REF, (owner, backup_id, segment_id))
    return missing


def renew(conn: sqlite3.Connection, owner: bytes, backup_id: bytes, expires: int) -> bool:
    """Set a lease's expiry; whether it exists."""
    return bool(
        conn.execute(
            "UPDATE shard_leases SET expires = ? WHERE owner = ? AND backup_id = ?",
            (expires, owner, backup_id),
        ).rowcount
    )


def expired(conn: sqlite3.Connection, now: int, limit: int) -> list[tuple[bytes, bytes]]:
    """Up to `limit` leases expired at `now`, oldest first."""
    return [(bytes(o), bytes(b)) for o, b in conn.execute(EXPIRED, (now, limit))]


def drop_leases(
    conn: sqlite3.Connection, leases: Iterable[tuple[bytes, bytes]]
) -> tuple[int, list[tuple[bytes, str, int]], list[tuple[bytes, int]]]:
    """Delete leases (their references and manifests go with them) and the shares of segments
    no remaining lease of the owner references.

    Returns:
        How many leases there were, the deleted shares as (owner, file, size), and the
        deleted manifests as (owner, size).
    """
    deleted = 0
    files: list[tuple[bytes, str, int]] = []
    manifests: list[tuple[bytes, int]] = []
    for owner, backup_id in leases:
        segments = [bytes(r[0]) for r in conn.execute(LEASE_REFS, (owner, backup_id))]
        size = conn.execute(MANIFEST_SIZE, (owner, backup_id)).fetchone()
        if size is not None:
            manifests.append((owner, int(size[0])))
        deleted += conn.execute(DELETE_LEASE, (owner, backup_id)).rowcount
        for segment_id in segments:
            if conn.execute(SEGMENT_REFERENCED, (owner, segment_id)).fetchone() is None:
                for name, nbytes in conn.execute(SEGMENT_SHARES, (owner, segment_id)).fetchall():
                    files.append((owner, str(name), int(nbytes)))
                conn.execute(DELETE_SEGMENT, (owner, segment_id))
    return deleted, files, manifests


def share_row(
    conn: sqlite3.Connection, owner: bytes, segment_id: bytes, index: int
) -> tuple[str, bytes] | None:
    """The file and root of a share, if held."""
    row = conn.execute(
        "SELECT file, root FROM shard_shares WHERE owner = ? AND segment_id = ?"
        " AND share_index = ?",
        (owner, segment_id, index),
    ).fetchone()
    return None if row is None else (str(row[0]), bytes(row[1]))


def delete_share(
    conn: sqlite3.Connection, owner: bytes, segment_id: bytes, index: int, name: str
) -> int | None:
    """Delete a share's row if it still names file `name`; its size, or None."""
    row = conn.execute(
        "DELETE FROM shard_shares WHERE owner = ? AND segment_id = ? AND share_index = ?"
        " AND file = ? RETURNING size",
        (owner, segment_id, index, name),
    ).fetchone()
    return None if row is None else int(row[0])


def held(
    conn: sqlite3.Connection, owner: bytes, home: bytes
) -> list[tuple[bytes, int, bytes, int]]:
    """The shares of `owner` placed under `home`: (segment ID, index, root, size), sorted."""
    return [
        (bytes(s), int(i), bytes(r), int(n))
        for s, i, r, n in conn.execute(
            "SELECT segment_id, share_index, root, size FROM shard_shares"
            " WHERE owner = ? AND home = ? ORDER BY segment_id, share_index",
            (owner, home),
        )
    ]


#: The next (owner, home) after a given one, by the ``shard_shares_home`` index: walking the
#: homes costs a lookup per home, not a scan of every share.
NEXT_HOME: Final = (
    "SELECT owner, home, share_index FROM shard_shares WHERE (owner, home) > (?, ?)"
    " ORDER BY owner, home LIMIT 1"
)


def homes(conn: sqlite3.Connection) -> list[tuple[bytes, bytes, int]]:
    """Every (owner, home) with shares held, and one share index held of it, sorted."""
    found: list[tuple[bytes, bytes, int]] = []
    after = (b"", b"")
    while (row := conn.execute(NEXT_HOME, after).fetchone()) is not None:
        owner, home, index = bytes(row[0]), bytes(row[1]), int(row[2])
        found.append((owner, home, index))
        after = (owner, home)
    return found


def index_held(conn: sqlite3.Connection, owner: bytes, home: bytes) -> int | None:
    """A share index held of `owner`'s `home`, or None."""
    row = conn.execute(
        "SELECT share_index FROM shard_shares WHERE owner = ? AND home = ? LIMIT 1", (owner, home)
    ).fetchone()
    return None if row is None else int(row[0])


def put_manifest(
    conn: sqlite3.Connection, owner: bytes, backup_id: bytes, data: bytes
) -> int | None:
    """Keep a lease's manifest; the size of the one it replaces (0 if none), None if no lease."""
    lease = conn.execute(
        "SELECT 1 FROM shard_leases WHERE owner = ? AND backup_id = ?", (owner, backup_id)
    ).fetchone()
    if lease is None:
        return None
    old = conn.execute(MANIFEST_SIZE, (owner, backup_id)).fetchone()
    conn.execute(
        "INSERT OR REPLACE INTO shard_manifests (owner, backup_id, manifest) VALUES (?, ?, ?)",
        (owner, backup_id, data),
    )
    return 0 if old is None else int(old[0])


def manifest(conn: sqlite3.Connection, owner: bytes, backup_id: bytes) -> bytes | None:
    """A lease's manifest, if kept."""
    row = conn.execute(
        "SELECT manifest FROM shard_manifests WHERE owner = ? AND backup_id = ?",
        (owner, backup_id),
    ).fetchone()
    return None if row is None else bytes(row[0])


def leases(conn: sqlite3.Connection, owner: bytes) -> list[tuple[bytes, int, bool]]:
    """The leases of `owner`: (backup ID, expiry, whether a manifest is kept)."""
    return [
        (bytes(b), int(e), bool(m))
        for b, e, m in conn.execute(
            "SELECT l.backup_id, l.expires, m.owner IS NOT NULL FROM shard_leases AS l"
            " LEFT JOIN shard_manifests AS m USING (owner, backup_id)"
            " WHERE l.owner = ? ORDER BY l.backup_id",
            (owner,),
        )
    ]


def all_files(conn: sqlite3.Connection) -> dict[str, int]:
    """Every share's file and size (read once at start-up)."""
    return {str(f): int(s) for f, s in conn.execute("SELECT file, size FROM shard_shares")}


def drop_files(conn: sqlite3.Connection, names: Sequence[str]) -> None:
    """Delete the rows of shares whose files are damaged."""
    conn.executemany("DELETE FROM shard_shares WHERE file = ?", [(n,) for n in names])


def usage(conn: sqlite3.Connection) -> list[tuple[bytes, int]]:
    """Bytes per owner: shares and manifests (read once at start-up)."""
    return [
        (bytes(o), int(n))
        for o, n in conn.execute(
            "SELECT owner, sum(n) FROM (SELECT owner, size AS n FROM shard_shares"
            " UNION ALL SELECT owner, length(manifest) FROM shard_manifests) GROUP BY owner"
        )
    ]
