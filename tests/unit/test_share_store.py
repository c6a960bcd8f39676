"""The share store on a real SQLite file and a real directory: durability, quotas, GC, recovery."""

from __future__ import annotations

import errno
import itertools
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plexinode.shards import merkle, pipeline, share_sql
from plexinode.shards.share_files import write_all
from plexinode.shards.share_ledger import NodeFull, OwnerQuotaExceeded, ShareRejected
from plexinode.shards.share_open import open_share_store
from plexinode.shards.store import (
    DiskFull,
    Share,
    ShareNotHeld,
    ShareStore,
    Stored,
    UnknownLease,
)
from plexinode.storage import open_database

OWNER, OTHER = b"o" * 32, b"p" * 32
B1, B2, B3 = b"1" * 16, b"2" * 16, b"3" * 16
NOW, LATER = 1_000, 10_000
REPO_ROOT = Path(__file__).resolve().parents[2]


def segment(n: int) -> bytes:
    return n.to_bytes(32, "big")


def share(n: int, index: int = 0, size: int = 20_000) -> Share:
    block = random.Random(n * 1000 + index).randbytes(size)
    return Share(segment(n), index, pipeline.share_root(block), block)


@asynccontextmanager
async def opened(
    data_dir: Path, *, memory: bool = False, capacity: int = 1 << 30, **kw: Any
) -> AsyncIterator[ShareStore]:
    async with open_database(None if memory else data_dir / "node.db") as db:
        yield await open_share_store(db, data_dir, capacity=capacity, clock=lambda: NOW, **kw)


def share_files(data_dir: Path) -> list[str]:
    return sorted(p.name for p in (data_dir / "shares").iterdir())


def rows(data_dir: Path, sql: str = "SELECT count(*) FROM shard_shares") -> list[Any]:
    with closing(sqlite3.connect(data_dir / "node.db")) as conn:
        return conn.execute(sql).fetchall()


# --- put, read, idempotency ------------------------------------------------------------------


async def test_a_batch_is_stored_durably_and_read_back(tmp_path: Path) -> None:
    shares = [share(i) for i in range(5)]
    async with opened(tmp_path) as store:
        assert await store.put(OWNER, B1, B1, LATER, shares) == Stored(5, 0)
        assert store.usage().total_bytes == 5 * 20_000
        assert store.usage().owners == {OWNER: 100_000}
        for s in shares:
            assert await store.read_block(OWNER, s.segment_id, s.index) == s.block
        held = await store.held(OWNER, B1)
        assert [(h[0], h[1], h[2]) for h in held] == [(s.segment_id, 0, s.root) for s in shares]
        assert await store.held(OWNER, B2) == []
        assert await store.leases(OWNER) == [(B1, LATER, False)]
    # Committed before put returned: a fresh open sees every share and its file.
    assert rows(tmp_path) == [(5,)]
    assert len(share_files(tmp_path)) == 5
    async with opened(tmp_path) as store:
        assert store.recovery.orphan_files == store.recovery.dropped_rows == 0
        assert store.usage().total_bytes == 100_000
        assert await store.read_block(OWNER, segment(3), 0) == shares[3].block


async def test_a_retried_batch_is_a_no_op_and_another_root_is_refused(tmp_path: Path) -> None:
    async with opened(tmp_path) as store:
        await store.put(OWNER, B1, B1, LATER, [share(1), share(2)])
        assert await store.put(OWNER, B1, B1, LATER, [share(1), share(2), share(3)]) == Stored(1, 2)
        other = share(9)
        forged = Share(segment(1), 0, other.root, other.block)
        with pytest.raises(ShareRejected, match="another root"):
            await store.put(OWNER, B1, B1, LATER, [share(4), forged])
        assert store.usage().total_bytes == 3 * 20_000
        assert len(share_files(tmp_path)) == 3
        # The same key under another owner is another share.
        assert await store.put(OTHER, B1, B1, LATER, [forged]) == Stored(1, 0)


async def test_a_block_that_does_not_match_its_root_stores_nothing(tmp_path: Path) -> None:
    good, bad = share(1), share(2)
    bad = Share(bad.segment_id, bad.index, bad.root, bad.block[:-1] + b"!")
    async with opened(tmp_path) as store:
        with pytest.raises(ShareRejected, match="do not match their roots"):
            await store.put(OWNER, B1, B1, LATER, [good, bad])
        with pytest.raises(ShareRejected, match="expired"):
            await store.put(OWNER, B1, B1, NOW, [good])
        with pytest.raises(ShareRejected, match="a block is"):
            await store.put(OWNER, B1, B1, LATER, [Share(segment(1), 0, good.root, b"")])
        assert store.usage().total_bytes == 0
        assert await store.leases(OWNER) == []
    assert share_files(tmp_path) == []
    assert rows(tmp_path) == [(0,)]


async def test_concurrent_puts_of_one_share_keep_one_file(tmp_path: Path) -> None:
    async with opened(tmp_path) as store:
        results: list[Stored] = []

        async def put() -> None:
            results.append(await store.put(OWNER, B1, B1, LATER, [share(1), share(2)]))

        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(put)
        assert sum(r.stored for r in results) == 2
        assert store.usage().total_bytes == 40_000
    assert len(share_files(tmp_path)) == 2


async def test_a_put_racing_garbage_collection_or_another_put_sees_their_commits(
    tmp_path: Path,
) -> None:
    # The writer seam runs on the worker thread between the batch's plan and its commit: there
    # it lets garbage collection free a share the plan took as held, or another put commit a
    # share of the batch under another root.
    race: list[Any] = []

    def writer(fd: int, data: bytes) -> None:
        if race:
            trio.from_thread.run(*race.pop())
        write_all(fd, data)

    async with opened(tmp_path, writer=writer) as store:
        await store.put(OWNER, B1, B1, LATER, [share(1)])
        race.append((store.remove_lease, OWNER, B1))
        assert await store.put(OWNER, B2, B2, LATER, [share(1), share(2)]) == Stored(2, 0)
        assert await store.read_block(OWNER, segment(1), 0) == share(1).block
        other = share(9)
        race.append(
            (store.put, OWNER, B3, B3, LATER, [Share(segment(3), 0, other.root, other.block)])
        )
        with pytest.raises(ShareRejected, match="another root"):
            await store.put(OWNER, B2, B2, LATER, [share(3)])
        assert await store.read_block(OWNER, segment(3), 0) == other.block
        assert store.usage().total_bytes == 3 * 20_000
    assert len(share_files(tmp_path)) == 3


# --- quotas and a full disk ------------------------------------------------------------------


async def test_quotas_refuse_with_the_reason_and_store_nothing(tmp_path: Path) -> None:
    async with opened(tmp_path, capacity=90_000, owner_quota=50_000) as store:
        await store.put(OWNER, B1, B1, LATER, [share(1), share(2)])
        with pytest.raises(OwnerQuotaExceeded) as over:
            await store.put(OWNER, B1, B1, LATER, [share(3)])
        assert (over.value.needed, over.value.available) == (20_000, 10_000)
        await store.put(OTHER, B1, B1, LATER, [share(1), share(2)])
        with pytest.raises(NodeFull) as full:
            await store.put(OTHER, B2, B2, LATER, [share(4)])
        assert (full.value.needed, full.value.available) == (20_000, 10_000)
        assert len(share_files(tmp_path)) == 4
        # A retry of what is held needs no room.
        assert await store.put(OWNER, B1, B1, LATER, [share(1)]) == Stored(0, 1)
        # Freeing makes room again.
        await store.remove_lease(OWNER, B1)
        assert await store.put(b"q" * 32, B2, B2, LATER, [share(4)]) == Stored(1, 0)


async def test_a_disk_that_fills_up_mid_batch_keeps_nothing_and_the_store_works(
    tmp_path: Path,
) -> None:
    calls = itertools.count(1)  # next() is atomic: the writer runs on several threads
    full = True

    def writer(fd: int, data: bytes) -> None:
        if next(calls) == 3 and full:
            write_all(fd, data[:100])
            raise OSError(errno.ENOSPC, "No space left on device")
        write_all(fd, data)

    async with opened(tmp_path, writer=writer) as store:
        with pytest.raises(DiskFull) as exc:
            await store.put(OWNER, B1, B1, LATER, [share(i) for i in range(5)])
        assert isinstance(exc.value, NodeFull)
        assert share_files(tmp_path) == []
        assert store.usage().total_bytes == 0
        assert await store.leases(OWNER) == []
        full = False
        assert await store.put(OWNER, B1, B1, LATER, [share(i) for i in range(5)]) == Stored(5, 0)


async def test_other_write_errors_are_storage_errors(tmp_path: Path) -> None:
    def writer(fd: int, data: bytes) -> None:
        raise OSError(errno.EIO, "I/O error")

    async with opened(tmp_path, writer=writer) as store:
        with pytest.raises(Exception, match="cannot write shares") as exc:
            await store.put(OWNER, B1, B1, LATER, [share(1)])
        assert type(exc.value).__name__ == "StorageError"
        assert share_files(tmp_path) == []


# --- crash safety ----------------------------------------------------------------------------


async def test_a_crash_between_the_files_and_the_commit_leaves_no_trace(tmp_path: Path) -> None:
    async with opened(tmp_path) as store:
        await store.put(OWNER, B1, B1, LATER, [share(1)])
        kept = share_files(tmp_path)
        # What a kill after the renames and before the commit leaves: files no row names, and
        # a temporary file of a write cut short.
        store._files.write_batch([share(2).block, share(3).block])
        (tmp_path / "shares" / "abc.share.tmp").write_bytes(b"partial")
        (tmp_path / "shares" / "notes.txt").write_bytes(b"not the store's")
    async with opened(tmp_path) as store:
        assert (store.recovery.temporary_files, store.recovery.orphan_files) == (1, 2)
        assert store.recovery.dropped_rows == 0
        assert store.usage().total_bytes == 20_000
    assert share_files(tmp_path) == sorted([*kept, "notes.txt"])


async def test_rows_whose_file_is_lost_or_truncated_are_dropped(tmp_path: Path) -> None:
    async with opened(tmp_path) as store:
        await store.put(OWNER, B1, B1, LATER, [share(1), share(2), share(3)])
    names = [str(r[0]) for r in rows(tmp_path, "SELECT file FROM shard_shares ORDER BY segment_id")]
    (tmp_path / "shares" / names[0]).unlink()
    (tmp_path / "shares" / names[1]).write_bytes(b"short")
    async with opened(tmp_path) as store:
        assert store.recovery.dropped_rows == 2
        assert store.usage().total_bytes == 20_000
        for n in (1, 2):
            with pytest.raises(ShareNotHeld):
                await store.read_block(OWNER, segment(n), 0)
        assert await store.read_block(OWNER, segment(3), 0) == share(3).block
    assert share_files(tmp_path) == [names[2]]


async def test_a_block_damaged_on_disk_is_dropped_when_read(tmp_path: Path) -> None:
    async with opened(tmp_path) as store:
        await store.put(OWNER, B1, B1, LATER, [share(1), share(2)])
        (name,) = rows(
            tmp_path, f"SELECT file FROM shard_shares WHERE segment_id = x'{segment(1).hex()}'"
        )
        block = bytearray(share(1).block)
        block[5] ^= 1
        (tmp_path / "shares" / name[0]).write_bytes(bytes(block))
        with pytest.raises(ShareNotHeld, match="damaged"):
            await store.read_leaves(OWNER, segment(1), 0, [0])
        with pytest.raises(ShareNotHeld, match="not held"):
            await store.read_block(OWNER, segment(1), 0)
        assert store.usage().total_bytes == 20_000
        (tmp_path / "shares" / rows(tmp_path, "SELECT file FROM shard_shares")[0][0]).unlink()
        with pytest.raises(ShareNotHeld, match="damaged"):
            await store.read_block(OWNER, segment(2), 0)
        assert store.usage().total_bytes == 0


# --- challenges ------------------------------------------------------------------------------


async def test_leaves_are_answered_with_paths_that_verify(tmp_path: Path) -> None:
    s = share(1, size=5 * pipeline.LEAF_BYTES + 17)
    async with opened(tmp_path) as store:
        await store.put(OWNER, B1, B1, LATER, [s])
        proof = await store.read_leaves(OWNER, s.segment_id, 0, [0, 5, 2])
        assert proof.count == 6
        assert [i for i, _, _ in proof.leaves] == [0, 5, 2]
        for i, leaf, path in proof.leaves:
            assert merkle.verify(s.root, proof.count, i, leaf, path)
        with pytest.raises(ShareRejected, match="leaf index"):
            await store.read_leaves(OWNER, s.segment_id, 0, [6])


# --- leases, references, garbage collection --------------------------------------------------


async def test_a_segment_is_kept_while_any_lease_of_its_owner_references_it(
    tmp_path: Path,
) -> None:
    async with opened(tmp_path) as store:
        await store.put(OWNER, B1, B1, LATER, [share(1), share(2)])
        # A later backup reuses segment 1 (no bytes sent) and names one not held here.
        assert await store.add_references(OWNER, B2, LATER, [segment(1), segment(7)]) == [
            segment(7)
        ]
        # Another owner's lease on the same segment ID does not keep this owner's share.
        await store.put(OTHER, B1, B1, LATER, [share(1)])
        freed = await store.remove_lease(OWNER, B1)
        assert (freed.leases, freed.shares, freed.files, freed.bytes) == (1, 1, 1, 20_000)
        assert await store.read_block(OWNER, segment(1), 0) == share(1).block
        with pytest.raises(ShareNotHeld):
            await store.read_block(OWNER, segment(2), 0)
        freed = await store.remove_lease(OWNER, B2)
        assert (freed.leases, freed.shares) == (1, 1)
        assert await store.remove_lease(OWNER, B2) == type(freed)()
        assert store.usage().owners == {OTHER: 20_000}
    assert len(share_files(tmp_path)) == 1


async def test_renewed_leases_outlive_expiry_and_unknown_ones_are_refused(
    tmp_path: Path,
) -> None:
    async with opened(tmp_path) as store:
        await store.put(OWNER, B1, B1, 2_000, [share(1)])
        await store.put(OWNER, B2, B2, 2_000, [share(2)])
        await store.renew(OWNER, B1, 5_000)
        # A put with an earlier expiry never shortens a lease.
        await store.put(OWNER, B1, B1, 1_500, [share(3)])
        with pytest.raises(UnknownLease):
            await store.renew(OWNER, B3, 5_000)
        freed = await store.expire(3_000)
        assert (freed.leases, freed.shares) == (1, 1)
        assert await store.leases(OWNER) == [(B1, 5_000, False)]
        assert (await store.expire(3_000)).leases == 0
        with pytest.raises(ShareRejected, match="expired"):
            await store.add_references(OWNER, B1, NOW, [segment(1)])


async def test_manifests_go_with_their_lease_and_count_toward_the_quota(tmp_path: Path) -> None:
    async with opened(tmp_path, capacity=50_000) as store:
        with pytest.raises(UnknownLease):
            await store.put_manifest(OWNER, B1, b"m" * 100)
        await store.put(OWNER, B1, B1, LATER, [share(1)])
        await store.put_manifest(OWNER, B1, b"m" * 100)
        await store.put_manifest(OWNER, B1, b"n" * 300)
        assert await store.manifest(OWNER, B1) == b"n" * 300
        assert await store.leases(OWNER) == [(B1, LATER, True)]
        assert store.usage().total_bytes == 20_300
        with pytest.raises(NodeFull):
            await store.put_manifest(OWNER, B1, b"x" * 40_000)
        with pytest.raises(ShareRejected):
            await store.put_manifest(OWNER, B1, b"")
        assert store.usage().total_bytes == 20_300
    async with opened(tmp_path, capacity=50_000) as store:
        assert store.usage().total_bytes == 20_300
        await store.remove_lease(OWNER, B1)
        assert await store.manifest(OWNER, B1) is None
        assert store.usage().total_bytes == 0


async def test_gc_statements_use_indexes(tmp_path: Path) -> None:
    async with open_database(tmp_path / "node.db") as db:
        for sql in share_sql.GC_STATEMENTS:
            params = (b"x",) * sql.count("?")
            plan = await db.execute(f"EXPLAIN QUERY PLAN {sql}", params)
            details = [str(row[-1]) for row in plan]
            assert all(d.startswith("SEARCH") for d in details), (sql, details)


async def test_gc_work_is_proportional_to_what_expired(tmp_path: Path) -> None:
    """Expiring one lease costs the same whether 10 or 300 other leases and shares are held:
    SQLite's virtual machine steps are counted, not time."""

    async def steps_to_expire_one(data_dir: Path, others: int) -> tuple[int, Any]:
        async with open_database(data_dir / "node.db") as db:
            store = await open_share_store(db, data_dir, capacity=1 << 30, clock=lambda: NOW)
            await store.put(OWNER, B1, B1, 2_000, [share(0, size=100)])
            for i in range(1, others + 1):
                backup = i.to_bytes(16, "big")
                await store.put(OWNER, backup, backup, LATER, [share(i, size=100)])
            counted = [0]

            def count() -> int:
                counted[0] += 1
                return 0

            db._conn.set_progress_handler(count, 1)
            freed = await store.expire(3_000)
            db._conn.set_progress_handler(None, 1)
            return counted[0], freed

    (tmp_path / "small").mkdir()
    small, freed_small = await steps_to_expire_one(tmp_path / "small", 10)
    (tmp_path / "big").mkdir()
    big, freed_big = await steps_to_expire_one(tmp_path / "big", 300)
    assert (freed_small.leases, freed_small.files) == (freed_big.leases, freed_big.files) == (1, 1)
    assert big < small * 1.5, (small, big)


# --- a model of what must be held ------------------------------------------------------------

_op = st.one_of(
    st.tuples(
        st.just("put"),
        st.sampled_from([OWNER, OTHER]),
        st.sampled_from([B1, B2, B3]),
        st.sets(st.integers(0, 5), min_size=1, max_size=3),
        st.integers(1, 5),
    ),
    st.tuples(
        st.just("ref"),
        st.sampled_from([OWNER, OTHER]),
        st.sampled_from([B1, B2, B3]),
        st.sets(st.integers(0, 5), min_size=1, max_size=3),
        st.integers(1, 5),
    ),
    st.tuples(st.just("rm"), st.sampled_from([OWNER, OTHER]), st.sampled_from([B1, B2, B3])),
    st.tuples(st.just("expire"), st.integers(0, 5)),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_op, max_size=25))
def test_the_store_holds_exactly_what_live_leases_reference(ops: list[tuple[Any, ...]]) -> None:
    leases: dict[tuple[bytes, bytes], tuple[int, set[int]]] = {}
    shares: set[tuple[bytes, int]] = set()

    def prune() -> None:
        for owner, seg in list(shares):
            if not any(o == owner and seg in refs for (o, _), (_, refs) in leases.items()):
                shares.discard((owner, seg))

    async def run(data_dir: Path) -> None:
        async with open_database(None) as db:
            store = await open_share_store(db, data_dir, capacity=1 << 30, clock=lambda: 0)
            for op in ops:
                if op[0] == "put":
                    _, owner, backup, segs, exp = op
                    await store.put(owner, backup, backup, exp, [share(s, size=64) for s in segs])
                    old = leases.get((owner, backup), (0, set()))
                    leases[owner, backup] = (max(old[0], exp), old[1] | segs)
                    shares.update((owner, s) for s in segs)
                elif op[0] == "ref":
                    _, owner, backup, segs, exp = op
                    missing = await store.add_references(
                        owner, backup, exp, [segment(s) for s in sorted(segs)]
                    )
                    held = {s for s in segs if (owner, s) in shares}
                    assert {int.from_bytes(m, "big") for m in missing} == segs - held
                    old = leases.get((owner, backup), (0, set()))
                    leases[owner, backup] = (max(old[0], exp), old[1] | held)
                elif op[0] == "rm":
                    await store.remove_lease(op[1], op[2])
                    leases.pop((op[1], op[2]), None)
                else:
                    await store.expire(op[1])
                    for key in [k for k, (e, _) in leases.items() if e <= op[1]]:
                        del leases[key]
                prune()
                got = {
                    (owner, int.from_bytes(h[0], "big"))
                    for owner in (OWNER, OTHER)
                    for backup in (B1, B2, B3)
                    for h in await store.held(owner, backup)
                }
                assert got == shares
                assert store.usage().total_bytes == 64 * len(shares)
                assert len(list(store.directory.iterdir())) == len(shares)
                for owner in (OWNER, OTHER):
                    live = {b for (o, b) in leases if o == owner}
                    assert {b for b, _, _ in await store.leases(owner)} == live

    with tempfile.TemporaryDirectory() as data_dir:
        trio.run(run, Path(data_dir))


# --- a real kill -----------------------------------------------------------------------------

KILL_CHILD = """
import sys, random, trio
from pathlib import Path
from plexinode.shards import pipeline
from plexinode.shards.share_open import open_share_store
from plexinode.shards.store import Share
from plexinode.storage import open_database

async def main(data_dir):
    async with open_database(data_dir / "node.db") as db:
        store = await open_share_store(db, data_dir, capacity=1 << 40)
        for n in range(1_000_000):
            block = random.Random(n).randbytes(4096)
            share = Share(n.to_bytes(32, "big"), 0, pipeline.share_root(block), block)
            await store.put(b"o" * 32, b"1" * 16, b"1" * 16, 2**40, [share])
            print(n + 1, flush=True)

trio.run(main, Path(sys.argv[1]))
"""


async def test_sigkill_mid_put_keeps_every_acknowledged_share(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), *sys.path])}
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-c", KILL_CHILD, str(tmp_path)], stdout=subprocess.PIPE, env=env
    )
    assert proc.stdout is not None
    output = b""
    try:
        while output.count(b"\n") < 50:
            chunk = await proc.stdout.receive_some()
            assert chunk, "the child exited early"
            output += chunk
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    while chunk := await proc.stdout.receive_some():
        output += chunk
    await proc.stdout.aclose()
    acked = int(output[: output.rfind(b"\n")].split()[-1])
    async with opened(tmp_path) as store:
        assert store.recovery.dropped_rows == 0
        held = await store.held(OWNER, B1)
        assert acked <= len(held) <= acked + 1
        for n in (0, acked - 1):
            block = random.Random(n).randbytes(4096)
            assert await store.read_block(OWNER, segment(n), 0) == block
        assert store.usage().total_bytes == 4096 * len(held)
    assert len(share_files(tmp_path)) == len(held)


async def test_homes_are_walked_by_the_index_one_lookup_each(tmp_path: Path) -> None:
    async with opened(tmp_path) as store:
        assert await store.homes() == []
        await store.put(OWNER, B1, B1, LATER, [share(1, 4), share(2, 4)])
        await store.put(OWNER, B2, B2, LATER, [share(3, 1)])
        await store.put(OTHER, B1, B1, LATER, [share(4, 9)])
        assert await store.homes() == [(OWNER, B1, 4), (OWNER, B2, 1), (OTHER, B1, 9)]
    async with open_database(tmp_path / "node.db") as db:
        plan = await db.execute(f"EXPLAIN QUERY PLAN {share_sql.NEXT_HOME}", (b"", b""))
        assert all(str(row[-1]).startswith("SEARCH") for row in plan), plan
