"""Tests of the SQLite storage worker and its migrations."""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import trio

from plexinode.errors import StorageError
from plexinode.storage import MIGRATIONS, Migration, database, open_database
from plexinode.storage.migrations import check_migrations, latest_version, split_statements

REPO_ROOT = Path(__file__).resolve().parents[2]


def _meta_keys(conn: sqlite3.Connection) -> list[str]:
    return [row[0] for row in conn.execute("SELECT key FROM meta ORDER BY key")]


def _query(path: Path, sql: str) -> list[tuple[object, ...]]:
    """Run `sql` on the database file with a plain connection of its own."""
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql).fetchall()


def _file_size(path: Path) -> int:
    """Size of the file, 0 if it does not exist."""
    return path.stat().st_size if path.exists() else 0


# --- migrations -------------------------------------------------------------------------------


async def test_new_database_gets_every_migration(tmp_path: Path) -> None:
    async with open_database(tmp_path / "node.db") as db:
        assert db.schema_version == latest_version() == len(MIGRATIONS)
        assert db.path == tmp_path / "node.db"
        columns = await db.execute(
            "SELECT name, type, pk, \"notnull\" FROM pragma_table_info('meta')"
        )
        assert columns == [("key", "TEXT", 1, 0), ("value", "BLOB", 0, 1)]
        assert await db.execute("PRAGMA journal_mode") == [("wal",)]
        assert await db.execute("PRAGMA synchronous") == [(2,)]  # FULL
        assert await db.execute("PRAGMA foreign_keys") == [(1,)]


async def test_migrations_apply_once_and_reopen_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    # The second step would fail if it ran twice (the table exists) and counts its runs.
    migrations = (
        *MIGRATIONS,
        Migration(
            len(MIGRATIONS) + 1,
            "CREATE TABLE runs (n INTEGER); INSERT INTO runs VALUES (1)",
        ),
    )
    async with open_database(path, migrations=migrations) as db:
        assert db.schema_version == len(migrations)
        await db.execute("INSERT INTO meta VALUES ('kept', x'01')")
    for _ in range(2):
        async with open_database(path, migrations=migrations) as db:
            assert db.schema_version == len(migrations)
            assert await db.execute("SELECT count(*) FROM runs") == [(1,)]
            assert await db.execute("SELECT value FROM meta WHERE key = 'kept'") == [(b"\x01",)]


async def test_adding_a_migration_upgrades_an_existing_database(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    async with open_database(path) as db:
        await db.execute("INSERT INTO meta VALUES ('kept', x'02')")
    upgraded = (*MIGRATIONS, Migration(len(MIGRATIONS) + 1, "CREATE TABLE extra (a INTEGER)"))
    async with open_database(path, migrations=upgraded) as db:
        assert db.schema_version == len(upgraded)
        assert await db.execute("SELECT value FROM meta") == [(b"\x02",)]
        assert await db.execute("SELECT count(*) FROM extra") == [(0,)]


async def test_migrations_are_news_only_when_they_upgrade_a_database(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A new database's migrations are logged at debug level (a first start has nothing to
    report); an upgrade of an existing one at info level."""
    path = tmp_path / "node.db"
    with caplog.at_level(logging.DEBUG, logger="plexinode.storage"):
        async with open_database(path):
            pass
        built = [r for r in caplog.records if "migrated" in r.getMessage()]
        assert len(built) == len(MIGRATIONS)
        assert {r.levelno for r in built} == {logging.DEBUG}
        caplog.clear()
        upgraded = (*MIGRATIONS, Migration(len(MIGRATIONS) + 1, "CREATE TABLE extra (a)"))
        async with open_database(path, migrations=upgraded):
            pass
    [upgrade] = [r for r in caplog.records if "migrated" in r.getMessage()]
    assert upgrade.levelno == logging.INFO
    assert upgrade.getMessage() == f"database schema migrated to version {len(upgraded)}"


async def test_a_failing_migration_is_rolled_back(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    async with open_database(path):
        pass
    broken = (
        *MIGRATIONS,
        Migration(len(MIGRATIONS) + 1, "CREATE TABLE half (a); INSERT INTO missing VALUES (1)"),
    )
    with pytest.raises(StorageError, match=r"cannot open database .*no such table: missing"):
        async with open_database(path, migrations=broken):
            pytest.fail("opened a database whose migration failed")
    assert _query(path, "PRAGMA user_version") == [(len(MIGRATIONS),)]
    assert _query(path, "SELECT name FROM sqlite_master WHERE name = 'half'") == []


async def test_database_from_a_newer_plexinode_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    newer = (*MIGRATIONS, Migration(len(MIGRATIONS) + 1, "CREATE TABLE future (a)"))
    async with open_database(path, migrations=newer):
        pass
    with pytest.raises(StorageError, match="created by a newer plexinode") as info:
        async with open_database(path):
            pytest.fail("opened a database from the future")
    assert str(path) in str(info.value)
    # Refusing must not touch the data.
    assert _query(path, "PRAGMA user_version") == [(len(newer),)]


async def test_garbage_file_is_refused_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    garbage = b"this is not a database\x00\xff" * 500
    path.write_bytes(garbage)
    with pytest.raises(StorageError, match="file is not a database") as info:
        async with open_database(path):
            pytest.fail("opened garbage")
    assert str(path) in str(info.value)
    assert path.read_bytes() == garbage


async def test_missing_directory_is_a_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "node.db"
    with pytest.raises(StorageError, match="cannot open database"):
        async with open_database(path):
            pytest.fail("opened a database in a missing directory")


def test_migration_versions_must_be_consecutive() -> None:
    check_migrations(MIGRATIONS)
    with pytest.raises(ValueError, match=r"1\.\.N"):
        check_migrations([Migration(1, "SELECT 1"), Migration(3, "SELECT 1")])
    with pytest.raises(ValueError, match=r"1\.\.N"):
        check_migrations([Migration(2, "SELECT 1")])


def test_split_statements_keeps_semicolons_in_strings_and_triggers() -> None:
    sql = """
        CREATE TABLE t (a TEXT);
        INSERT INTO t VALUES ('x;y');
        CREATE TRIGGER trg AFTER INSERT ON t BEGIN
            INSERT INTO t VALUES ('from trigger;');
        END;
    """
    statements = list(split_statements(sql))
    assert len(statements) == 3
    assert "'x;y'" in statements[1]
    assert statements[2].strip().startswith("CREATE TRIGGER")
    with pytest.raises(ValueError, match="incomplete"):
        list(split_statements("CREATE TRIGGER trg AFTER INSERT ON t BEGIN SELECT 1;"))


# --- reads and writes -------------------------------------------------------------------------


async def test_write_commits_and_returns_the_result() -> None:
    async with open_database(None) as db:
        assert db.path is None

        def insert(conn: sqlite3.Connection) -> int:
            conn.execute("INSERT INTO meta VALUES ('a', x'00')")
            return 42

        assert await db.write(insert) == 42
        assert await db.read(_meta_keys) == ["a"]


async def test_write_rolls_back_on_exception(tmp_path: Path) -> None:
    class Boom(Exception):
        pass

    def insert_then_fail(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO meta VALUES ('lost', x'00')")
        raise Boom

    async with open_database(tmp_path / "node.db") as db:
        with pytest.raises(Boom):
            await db.write(insert_then_fail)
        assert await db.read(_meta_keys) == []
        assert not await db.read(lambda conn: conn.in_transaction)
        # The connection is usable afterwards.
        await db.write(lambda conn: conn.execute("INSERT INTO meta VALUES ('kept', x'00')"))
        assert await db.read(_meta_keys) == ["kept"]


async def test_write_rolls_back_when_a_statement_fails() -> None:
    def two_inserts(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO meta VALUES ('first', x'00')")
        conn.execute("INSERT INTO meta VALUES ('second', NULL)")  # NOT NULL

    async with open_database(None) as db:
        with pytest.raises(sqlite3.IntegrityError):
            await db.write(two_inserts)
        assert await db.read(_meta_keys) == []


async def test_concurrent_writes_are_serialised(tmp_path: Path) -> None:
    lock = threading.Lock()
    active = 0
    most_active = 0

    def increment(conn: sqlite3.Connection) -> None:
        nonlocal active, most_active
        with lock:
            active += 1
            most_active = max(most_active, active)
        try:
            (value,) = conn.execute("SELECT value FROM meta WHERE key = 'counter'").fetchone()
            os.sched_yield()  # invite another thread in, were one allowed to run
            conn.execute("UPDATE meta SET value = ? WHERE key = 'counter'", (value + 1,))
        finally:
            with lock:
                active -= 1

    tasks, rounds = 20, 10
    async with open_database(tmp_path / "node.db") as db:
        await db.execute("INSERT INTO meta VALUES ('counter', 0)")

        async def worker() -> None:
            for _ in range(rounds):
                await db.write(increment)
                await db.read(_meta_keys)

        async with trio.open_nursery() as nursery:
            for _ in range(tasks):
                nursery.start_soon(worker)
        assert await db.execute("SELECT value FROM meta WHERE key = 'counter'") == [
            (tasks * rounds,)
        ]
    assert most_active == 1


async def test_size_bytes_counts_the_database_and_its_wal(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    async with open_database(path) as db:
        before = await db.size_bytes()
        assert before > 0
        await db.write(
            lambda conn: conn.executemany(
                "INSERT INTO meta VALUES (?, ?)", [(str(i), bytes(1000)) for i in range(100)]
            )
        )
        after = await db.size_bytes()
        assert after >= before + 100 * 1000
        assert after == _file_size(path) + _file_size(Path(f"{path}-wal"))
    async with open_database(None) as memory:
        assert await memory.size_bytes() > 0


async def test_close_checkpoints_the_wal(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    async with open_database(path) as db:
        await db.execute("INSERT INTO meta VALUES ('a', x'00')")
        assert _file_size(Path(f"{path}-wal")) > 0
    assert _file_size(Path(f"{path}-wal")) == 0
    assert _query(path, "SELECT key FROM meta") == [("a",)]


async def test_using_a_closed_database_is_a_storage_error() -> None:
    async with open_database(None) as db:
        pass
    assert "closed" in repr(db)
    with pytest.raises(StorageError, match="closed"):
        await db.execute("SELECT 1")


async def test_cancelling_open_does_not_leak_the_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    connect_started = trio.Event()
    release = threading.Event()
    connections: list[sqlite3.Connection] = []
    real_connect = database._connect

    def slow_connect(
        path: Path | None, migrations: tuple[Migration, ...]
    ) -> tuple[sqlite3.Connection, int]:
        conn, version = real_connect(path, migrations)
        connections.append(conn)
        trio.from_thread.run_sync(connect_started.set)
        release.wait()
        return conn, version

    monkeypatch.setattr(database, "_connect", slow_connect)
    entered = False

    async def opener() -> None:
        nonlocal entered
        async with open_database(tmp_path / "node.db"):
            entered = True

    async with trio.open_nursery() as nursery:
        nursery.start_soon(opener)
        await connect_started.wait()
        nursery.cancel_scope.cancel()
        release.set()

    assert not entered
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        connections[0].execute("SELECT 1")


async def test_write_propagates_the_error_of_a_function_that_ended_the_transaction() -> None:
    class Boom(Exception):
        pass

    def insert_rollback_then_fail(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO meta VALUES ('lost', x'00')")
        conn.execute("ROLLBACK")
        raise Boom

    async with open_database(None) as db:
        # Not masked by "cannot rollback - no transaction is active".
        with pytest.raises(Boom):
            await db.write(insert_rollback_then_fail)
        assert await db.read(_meta_keys) == []
        await db.write(lambda conn: conn.execute("INSERT INTO meta VALUES ('kept', x'00')"))
        assert await db.read(_meta_keys) == ["kept"]


async def test_close_rolls_back_an_open_transaction_and_checkpoints(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "node.db"

    def begin_and_insert(conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN")
        conn.execute("INSERT INTO meta VALUES ('uncommitted', x'00')")

    with caplog.at_level(logging.WARNING, logger="plexinode.storage.database"):
        async with open_database(path) as db:
            await db.execute("INSERT INTO meta VALUES ('committed', x'00')")
            await db.read(begin_and_insert)
            assert await db.read(lambda conn: conn.in_transaction)
    # A checkpoint inside the transaction would fail ("database table is locked").
    assert caplog.records == []
    assert _query(path, "SELECT key FROM meta") == [("committed",)]
    assert _file_size(Path(f"{path}-wal")) == 0


async def test_failed_checkpoint_on_close_is_logged_and_still_closes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "node.db"

    def deny_checkpoints(conn: sqlite3.Connection) -> sqlite3.Connection:
        def authorize(action: int, arg1: str | None, *_: object) -> int:
            if action == sqlite3.SQLITE_PRAGMA and arg1 == "wal_checkpoint":
                return sqlite3.SQLITE_DENY
            return sqlite3.SQLITE_OK

        conn.set_authorizer(authorize)
        return conn

    with caplog.at_level(logging.WARNING, logger="plexinode.storage.database"):
        async with open_database(path) as db:
            await db.execute("INSERT INTO meta VALUES ('a', x'00')")
            conn = await db.read(deny_checkpoints)
    assert f"checkpoint of {path} on close failed" in caplog.text
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        conn.execute("SELECT 1")
    # The commit is in the WAL, which the next open replays.
    assert _query(path, "SELECT key FROM meta") == [("a",)]


async def test_closing_twice_is_a_no_op(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="plexinode.storage.database"):
        async with open_database(tmp_path / "node.db") as db:
            pass
        caplog.clear()
        await db._close()
    assert caplog.records == []
    assert "closed" in repr(db)


async def test_missing_wal_support_is_logged_and_the_database_still_opens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    class NoWal(sqlite3.Connection):
        """A connection whose file system does not support WAL: the journal stays as it is."""

        def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
            if sql == "PRAGMA journal_mode = WAL":
                sql = "PRAGMA journal_mode"
            return super().execute(sql, *args)

    real_connect = sqlite3.connect
    monkeypatch.setattr(
        sqlite3, "connect", lambda *args, **kwargs: real_connect(*args, **kwargs, factory=NoWal)
    )
    path = tmp_path / "node.db"
    with caplog.at_level(logging.WARNING, logger="plexinode.storage.database"):
        async with open_database(path) as db:
            assert await db.execute("PRAGMA journal_mode") == [("delete",)]
            await db.execute("INSERT INTO meta VALUES ('a', x'00')")
    assert f"database {path}: WAL journal not available, using delete" in caplog.text
    assert _query(path, "SELECT key FROM meta") == [("a",)]


async def test_unexpected_error_while_opening_closes_the_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Boom(Exception):
        pass

    connections: list[sqlite3.Connection] = []

    def failing_migrations(conn: sqlite3.Connection, migrations: object) -> int:
        connections.append(conn)
        raise Boom

    monkeypatch.setattr(database, "apply_migrations", failing_migrations)
    with pytest.raises(Boom):
        async with open_database(tmp_path / "node.db"):
            pytest.fail("opened")
    assert len(connections) == 1
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        connections[0].execute("SELECT 1")


# --- crash safety -----------------------------------------------------------------------------

# Commits pairs of rows in a loop and reports each commit on stdout once `write` has returned.
CRASH_CHILD = """
import sys
from pathlib import Path

import trio

from plexinode.storage import open_database


async def main() -> None:
    async with open_database(Path(sys.argv[1])) as db:
        n = 0
        while True:
            n += 1

            def commit(conn, n=n):
                conn.execute("INSERT INTO meta VALUES (?, ?)", (f"a{n:08}", bytes(3000)))
                conn.execute("INSERT INTO meta VALUES (?, ?)", (f"b{n:08}", str(n).encode()))

            await db.write(commit)
            sys.stdout.write(f"{n}\\n")
            sys.stdout.flush()


trio.run(main)
"""

# Commits the child must report before it is killed: enough that the kill lands in a busy loop
# of real transactions with a WAL well past its first page.
CRASH_COMMITS_BEFORE_KILL = 200


def _reported_count(output: bytes) -> int:
    complete = output[: output.rfind(b"\n") + 1].split()
    return int(complete[-1]) if complete else 0


async def test_sigkill_mid_write_loses_no_reported_commit(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    stderr_path = tmp_path / "child.stderr"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), *sys.path])}
    output = b""
    with stderr_path.open("wb") as stderr:
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-c", CRASH_CHILD, str(path)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
        )
        assert proc.stdout is not None
        try:
            while _reported_count(output) < CRASH_COMMITS_BEFORE_KILL:
                chunk = await proc.stdout.receive_some()
                if not chunk:
                    pytest.fail(f"child exited early:\n{stderr_path.read_text()}")
                output += chunk
        finally:
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
        # Whatever the child printed before it died is still in the pipe.
        while chunk := await proc.stdout.receive_some():
            output += chunk
        await proc.stdout.aclose()
    assert proc.returncode == -signal.SIGKILL
    reported = _reported_count(output)
    assert reported >= CRASH_COMMITS_BEFORE_KILL

    async with open_database(path) as db:
        assert await db.execute("PRAGMA integrity_check") == [("ok",)]
        keys = await db.read(_meta_keys)
    committed = [int(key[1:]) for key in keys if key.startswith("a")]
    # Every reported commit is there, each transaction is whole, and at most the one commit the
    # child made but had no time to report is extra.
    assert committed == list(range(1, len(committed) + 1))
    assert len(committed) in (reported, reported + 1)
    assert sorted(key[1:] for key in keys if key.startswith("b")) == [
        key[1:] for key in keys if key.startswith("a")
    ]
