"""The node's one SQLite database, used from trio through a single worker thread.

Why a thread and not an async driver: sqlite3 calls block (they do file I/O and fsync), and
aiosqlite is an asyncio bridge that does not run in a trio nursery. So the stdlib connection is
opened with ``check_same_thread=False`` and every call that touches it goes through
``trio.to_thread.run_sync`` with a ``CapacityLimiter(1)``: trio may pick any worker thread, but
only one at a time ever holds the connection, so callers never interleave statements and no
lock is needed in the code that uses it.

Durability: the connection is in autocommit mode (``isolation_level=None``) and `Database.write`
wraps the caller's function in ``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on any
exception), so a write is all or nothing and takes the write lock up front (no deadlock-prone
upgrade from a read lock). The journal is in WAL mode (readers never block the writer and a
commit is one append) with ``synchronous=FULL``: the WAL is fsynced at every commit, so once
`write` returns the data survives a power cut, and a peer is only told "stored" after that.

In-memory databases (``path=None``, used by simulations) do no file I/O, so their calls run
inline on the trio thread instead: a thread hop per call would make thousands of simulated nodes
slow (under trio's MockClock the event loop busy-polls while a worker thread runs, starving it of
the GIL) and would make simulations depend on thread scheduling.

Lifetime: `open_database` is an async context manager. Opening (connect, pragmas, migrations)
happens in one uncancellable thread call that closes the connection itself if anything fails,
and the connection is owned by a ``try``/``finally`` from the moment that call returns, so
cancelling an open never leaks a connection. Closing checkpoints the WAL into the main file
(``wal_checkpoint(TRUNCATE)``, leaving an empty WAL) and closes, shielded from cancellation.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any, Final, TypeVar

import trio

from plexinode.errors import StorageError
from plexinode.storage.migrations import (
    MIGRATIONS,
    Migration,
    NewerSchemaError,
    apply_migrations,
    check_migrations,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

DATABASE_FILE_NAME: Final = "node.db"
# One node process owns the file (the data dir is locked), so the lock is only ever contended by
# a short checkpoint or by an operator's sqlite3 shell; 5 s rides that out instead of failing a
# write with "database is locked".
BUSY_TIMEOUT_MS: Final = 5_000

_Params = Sequence[Any] | Mapping[str, Any]


class Database:
    """An open database. Use `open_database` to get one.

    Every method runs its work on the storage thread; the functions passed to `read` and `write`
    run there too and receive the `sqlite3.Connection`. They must not call back into trio.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        path: Path | None,
        limiter: trio.CapacityLimiter,
        schema_version: int,
    ) -> None:
        self._conn = conn
        self._path = path
        self._limiter = limiter
        self._schema_version = schema_version
        self._closed = False

    def __repr__(self) -> str:
        where = self._path or ":memory:"
        return f"<Database {where} v{self._schema_version}{' closed' if self._closed else ''}>"

    @property
    def path(self) -> Path | None:
        """The database file, or None for an in-memory database."""
        return self._path

    @property
    def schema_version(self) -> int:
        """The schema version (``PRAGMA user_version``) after migrations."""
        return self._schema_version

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            # Checked on the storage thread, so a call queued behind close() sees the flag.
            if self._closed:
                raise StorageError(f"database {self._path or ':memory:'} is closed")
            return fn(self._conn)

        return await _offload(self._path, self._limiter, call)

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` on the storage thread and return its result.

        `fn` should only read; it runs outside an explicit transaction (each statement sees the
        latest committed state, and no other statement of this process runs in between).
        """
        return await self._run(fn)

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` in one write transaction and return its result once committed.

        The transaction is ``BEGIN IMMEDIATE`` ... ``COMMIT``; if `fn` (or the commit) raises,
        it is rolled back and the exception propagates unchanged.
        """

        def transaction(conn: sqlite3.Connection) -> T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result

        return await self._run(transaction)

    async def execute(self, sql: str, params: _Params = ()) -> list[tuple[Any, ...]]:
        """Run one statement (committed on its own if it writes) and return all its rows."""

        def run(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            return [tuple(row) for row in conn.execute(sql, params).fetchall()]

        return await self._run(run)

    async def size_bytes(self) -> int:
        """Bytes the database takes on disk: the main file plus its WAL.

        For an in-memory database, the size of its pages.
        """
        path = self._path
        if path is None:

            def pages(conn: sqlite3.Connection) -> int:
                count = conn.execute("PRAGMA page_count").fetchone()[0]
                size = conn.execute("PRAGMA page_size").fetchone()[0]
                return int(count) * int(size)

            return await self._run(pages)

        def files() -> int:
            total = 0
            for file in (path, Path(f"{path}-wal")):
                with suppress(FileNotFoundError):
                    total += file.stat().st_size
            return total

        return await trio.to_thread.run_sync(files)

    async def _close(self) -> None:
        def close(conn: sqlite3.Connection) -> None:
            self._closed = True
            try:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if self._path is not None:
                    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            except sqlite3.Error as exc:
                # The data is safe in the WAL either way; the next open replays it.
                log.warning("checkpoint of %s on close failed: %s", self._path, exc)
            finally:
                conn.close()

        if self._closed:
            return
        with trio.CancelScope(shield=True):
            await _offload(self._path, self._limiter, close, self._conn)
        log.debug("closed database %s", self._path or ":memory:")


async def _offload(
    path: Path | None, limiter: trio.CapacityLimiter, fn: Callable[..., T], *args: Any
) -> T:
    """Run a blocking database call: on the storage thread, or inline for in-memory databases."""
    if path is None:
        await trio.lowlevel.checkpoint()
        return fn(*args)
    return await trio.to_thread.run_sync(fn, *args, limiter=limiter)


def _connect(path: Path | None, migrations: Sequence[Migration]) -> tuple[sqlite3.Connection, int]:
    """Open, configure and migrate the database (on a worker thread).

    On any failure the connection is closed before the exception leaves, so the caller only ever
    owns a connection that is fully set up.
    """
    where = str(path) if path is not None else ":memory:"
    try:
        conn = sqlite3.connect(
            where,
            timeout=BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,
            check_same_thread=False,
        )
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open database {where}: {exc}") from None
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if path is not None and str(mode).lower() != "wal":
            log.warning("database %s: WAL journal not available, using %s", where, mode)
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        version = apply_migrations(conn, migrations)
    except NewerSchemaError as exc:
        conn.close()
        raise StorageError(
            f"database {where} was created by a newer plexinode (schema version {exc.found}, "
            f"this version knows up to {exc.latest}); upgrade plexinode to use it"
        ) from None
    except sqlite3.Error as exc:
        conn.close()
        raise StorageError(f"cannot open database {where}: {exc}") from None
    except BaseException:
        conn.close()
        raise
    return conn, version


@asynccontextmanager
async def open_database(
    path: Path | None,
    *,
    migrations: Sequence[Migration] = MIGRATIONS,
) -> AsyncIterator[Database]:
    """Open (creating if needed) and migrate the database at `path`; close it on exit.

    Args:
        path: the database file (its directory must exist), or None for a private in-memory
            database (simulations, tests).
        migrations: the schema steps; the default is the project's `MIGRATIONS`.

    Yields:
        The open database.

    Raises:
        StorageError: the file cannot be opened, is not a SQLite database, or was created by a
            newer plexinode.
    """
    check_migrations(migrations)
    limiter = trio.CapacityLimiter(1)
    # Not abandoned on cancel: if the task is cancelled meanwhile, the call still returns the
    # connection, the try below owns it, and the checkpoint right after delivers the cancel.
    conn, version = await _offload(path, limiter, _connect, path, migrations)
    db = Database(conn, path, limiter, version)
    try:
        await trio.lowlevel.checkpoint_if_cancelled()
        log.debug("opened database %s (schema version %d)", path or ":memory:", version)
        yield db
    finally:
        await db._close()
