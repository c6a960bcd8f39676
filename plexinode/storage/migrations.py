"""Versioned schema migrations, keyed on SQLite's ``PRAGMA user_version``.

The schema of the local database is the result of applying `MIGRATIONS` in order. A database
records how many it has seen in ``user_version`` (a field of the file header, changed inside the
same transaction as the migration's statements), so each migration runs exactly once, all or
nothing, and a node killed halfway through an upgrade simply redoes that step on the next start.

Rules for adding a migration (a service that needs tables adds one line to `MIGRATIONS`):

* append; never edit or reorder a migration that has shipped, since existing databases have
  already run it;
* the version is the next integer; an import-time check refuses gaps and duplicates;
* the SQL may hold several statements separated by ``;`` and must not contain transaction
  control (``BEGIN``, ``COMMIT``): the runner wraps each migration in its own transaction.

A database whose ``user_version`` is higher than the newest migration here was written by a newer
plexinode; it is refused rather than used with a schema this code does not understand.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Migration:
    """One step of the schema.

    Attributes:
        version: the ``user_version`` the database has once this step is applied (1, 2, ...).
        sql: the statements of the step, separated by ``;``.
    """

    version: int
    sql: str


MIGRATIONS: Final[tuple[Migration, ...]] = (
    # Small facts about this node's database (e.g. which node created it), keyed by name.
    Migration(1, "CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL)"),
    # The DHT routing table, so that a restarted node can rejoin through any known contact.
    Migration(
        2,
        "CREATE TABLE dht_contacts (node_id BLOB PRIMARY KEY, host TEXT NOT NULL,"
        " port INTEGER NOT NULL, last_seen REAL NOT NULL)",
    ),
    # Every node seen as a member of the network (dropped by migration 6).
    Migration(3, "CREATE TABLE roster (node_id BLOB PRIMARY KEY, first_seen REAL NOT NULL)"),
    # A private network's grants and revocations (plexinode.security.statements): a grow-only
    # set, each statement by its hash.
    Migration(4, "CREATE TABLE authority (hash BLOB PRIMARY KEY, statement BLOB NOT NULL)"),
    # The join tickets this node issued (plexinode.security.tickets): each redeemed once.
    Migration(
        5,
        "CREATE TABLE tickets (id BLOB PRIMARY KEY, key BLOB NOT NULL,"
        " expires_at INTEGER NOT NULL, redeemed_by BLOB)",
    ),
    # Who may have the network's keys is decided by the authority's grants now, not by a
    # roster of every node ever seen as a member.
    Migration(6, "DROP TABLE roster"),
    # The owner's side of backups (plexinode.shards.catalog): its backups, the segments it has
    # placed (so a later backup reuses them), and which backups use which segments.
    Migration(
        7,
        "CREATE TABLE backups (backup_id BLOB PRIMARY KEY, name TEXT NOT NULL,"
        " source TEXT NOT NULL, created REAL NOT NULL, k INTEGER NOT NULL, n INTEGER NOT NULL,"
        " happy INTEGER NOT NULL, state TEXT NOT NULL, bytes INTEGER NOT NULL,"
        " lease_expires REAL NOT NULL, manifest BLOB);"
        "CREATE TABLE placed_segments (segment_id BLOB NOT NULL, k INTEGER NOT NULL,"
        " n INTEGER NOT NULL, home BLOB NOT NULL, length INTEGER NOT NULL,"
        " block_size INTEGER NOT NULL, roots BLOB NOT NULL, PRIMARY KEY (segment_id, k, n));"
        "CREATE TABLE backup_segments (backup_id BLOB NOT NULL, segment_id BLOB NOT NULL,"
        " PRIMARY KEY (backup_id, segment_id));"
        "CREATE INDEX backup_segments_by_segment ON backup_segments (segment_id)",
    ),
    # What this node holds for other nodes' backups (plexinode.shards.store): each share's row
    # (its block is a file under shares/), the leases that keep shares, each lease's references
    # to segments, and the manifests holders keep. Expiry is indexed so garbage collection reads
    # only what expired; (owner, segment_id) is indexed so "does any lease of this owner still
    # reference this segment" is one index probe. A lease's references and manifest go with it.
    Migration(
        8,
        "CREATE TABLE shard_leases (owner BLOB NOT NULL, backup_id BLOB NOT NULL,"
        " expires INTEGER NOT NULL, PRIMARY KEY (owner, backup_id)) WITHOUT ROWID;"
        "CREATE INDEX shard_leases_expires ON shard_leases (expires);"
        "CREATE TABLE shard_refs (owner BLOB NOT NULL, backup_id BLOB NOT NULL,"
        " segment_id BLOB NOT NULL, PRIMARY KEY (owner, backup_id, segment_id),"
        " FOREIGN KEY (owner, backup_id) REFERENCES shard_leases (owner, backup_id)"
        " ON DELETE CASCADE) WITHOUT ROWID;"
        "CREATE INDEX shard_refs_segment ON shard_refs (owner, segment_id);"
        "CREATE TABLE shard_shares (owner BLOB NOT NULL, segment_id BLOB NOT NULL,"
        " share_index INTEGER NOT NULL, home BLOB NOT NULL, size INTEGER NOT NULL,"
        " root BLOB NOT NULL, file TEXT NOT NULL UNIQUE,"
        " PRIMARY KEY (owner, segment_id, share_index));"
        "CREATE INDEX shard_shares_home ON shard_shares (owner, home);"
        "CREATE TABLE shard_manifests (owner BLOB NOT NULL, backup_id BLOB NOT NULL,"
        " manifest BLOB NOT NULL, PRIMARY KEY (owner, backup_id),"
        " FOREIGN KEY (owner, backup_id) REFERENCES shard_leases (owner, backup_id)"
        " ON DELETE CASCADE)",
    ),
    # Where the owner placed each home's shares (plexinode.shards.catalog): share index ->
    # holder, so a restore, a deletion or a later backup's references reach them.
    Migration(
        9,
        "CREATE TABLE placements (home BLOB NOT NULL, share_index INTEGER NOT NULL,"
        " holder BLOB NOT NULL, PRIMARY KEY (home, share_index))",
    ),
)


def check_migrations(migrations: Sequence[Migration]) -> None:
    """Raise ValueError unless the versions are exactly 1, 2, ..., N in order."""
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"migration versions must be 1..N in order, got {versions}")


check_migrations(MIGRATIONS)


def latest_version(migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """The schema version a database has once every migration is applied."""
    return len(migrations)


def split_statements(sql: str) -> Iterator[str]:
    """The complete SQL statements of `sql`, in order.

    `sqlite3.Connection.executescript` would do this, but it commits any open transaction first,
    which would break "one transaction per migration". Splitting on ``;`` and gluing pieces back
    together until SQLite says the statement is complete keeps semicolons inside strings and
    trigger bodies intact.
    """
    pending = ""
    for piece in sql.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \t\r\n;"):
                yield pending
            pending = ""
    if pending.strip(" \t\r\n;"):
        raise ValueError(f"incomplete SQL statement in migration: {pending.strip()!r}")


def apply_migrations(conn: sqlite3.Connection, migrations: Sequence[Migration]) -> int:
    """Bring the database up to the newest version, one transaction per migration.

    Runs on the storage thread. The version is read again inside each write transaction, so two
    processes opening the same new file cannot both apply a step. Each step applied is logged:
    at info level when it upgrades an existing database, at debug level when it builds a new
    one (nothing an operator needs to hear about on a first start).

    Args:
        conn: a connection in autocommit mode (``isolation_level=None``).
        migrations: the migrations, checked with `check_migrations`.

    Returns:
        The schema version of the database afterwards.

    Raises:
        NewerSchemaError: the database was created by a newer plexinode.
        sqlite3.Error: a migration failed (its transaction is rolled back).
    """
    latest = latest_version(migrations)
    level = logging.DEBUG if current_version(conn) == 0 else logging.INFO
    for migration in migrations:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = current_version(conn)
            if version > latest:
                raise NewerSchemaError(version, latest)
            if version >= migration.version:
                conn.execute("ROLLBACK")
                continue
            for statement in split_statements(migration.sql):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {int(migration.version)}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        log.log(level, "database schema migrated to version %d", migration.version)
    version = current_version(conn)
    if version > latest:
        raise NewerSchemaError(version, latest)
    return version


def current_version(conn: sqlite3.Connection) -> int:
    """The ``user_version`` of the database."""
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


class NewerSchemaError(Exception):
    """The database's schema version is newer than this code knows (turned into StorageError)."""

    def __init__(self, found: int, latest: int) -> None:
        super().__init__(found, latest)
        self.found = found
        self.latest = latest
