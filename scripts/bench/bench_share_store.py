"""The share store's acknowledged puts against the raw cost of writing and fsyncing the same
files, in the same run: what the group commit saves.

    python scripts/bench/bench_share_store.py [--mib 256] [--block 350000] [--batches 1,8,32]
        [--rounds 3] [--dest DIR]

The baseline writes each block to its own file and fsyncs it (the least any durable store of one
file per block pays); rounds interleave it with the puts, and the best time of each counts. Then
`ShareStore.put` stores the same blocks in batches of 1, 8 and 32: each block is checked against
its Merkle root, written to a temporary file, fsynced and renamed; the directory is fsynced once
per batch and the batch's rows are committed in one SQLite transaction (WAL, synchronous=FULL)
before the put returns. With batches of 1 every block also pays a directory fsync and a commit;
the ratio to the baseline shows how much of that a batch amortises. The Merkle check alone is
timed too (it is CPU, not disk). DIR must be on the disk to measure (not a tmpfs); it defaults
to a temporary directory under /var/tmp.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import header

from plexinode.shards import pipeline
from plexinode.shards.share_open import open_share_store
from plexinode.shards.store import Share
from plexinode.storage import open_database

OWNER = bytes(32)
BACKUP = bytes(16)


def raw_write(blocks: list[bytes], where: Path) -> float:
    where.mkdir()
    start = time.perf_counter()
    for i, block in enumerate(blocks):
        fd = os.open(where / f"{i}.share", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, block)
            os.fsync(fd)
        finally:
            os.close(fd)
    return time.perf_counter() - start


async def store_puts(shares: list[Share], batch: int, where: Path) -> float:
    async with open_database(where / "node.db") as db:
        store = await open_share_store(db, where, capacity=1 << 40)
        expires = int(time.time()) + 86_400
        start = time.perf_counter()
        for at in range(0, len(shares), batch):
            await store.put(OWNER, BACKUP, BACKUP, expires, shares[at : at + batch])
        elapsed = time.perf_counter() - start
        assert store.usage().total_bytes == sum(len(s.block) for s in shares)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--block", type=int, default=350_000)
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--dest", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    header("share store: acknowledged puts against raw write+fsync of the same files")
    count = (args.mib << 20) // args.block
    rng = random.Random(1)
    blocks = [rng.randbytes(args.block) for _ in range(count)]
    start = time.perf_counter()
    roots = [pipeline.share_root(b) for b in blocks]
    hashing = time.perf_counter() - start
    shares = [
        Share(i.to_bytes(32, "big"), 0, root, block)
        for i, (root, block) in enumerate(zip(roots, blocks, strict=True))
    ]
    total_mb = count * args.block / 1e6
    print(f"# {count} blocks of {args.block} bytes ({total_mb:.0f} MB)")
    base = Path(tempfile.mkdtemp(prefix="bench-share-store-", dir=args.dest or "/var/tmp"))
    try:
        batches = [int(b) for b in args.batches.split(",")]
        raws: list[float] = []
        puts: dict[int, list[float]] = {b: [] for b in batches}
        # Rounds interleave the baseline and the puts, and the best of each counts: a shared
        # disk's speed drifts during a run (by 4x on the development machine).
        for _ in range(args.rounds):
            where = base / "raw"
            raws.append(raw_write(blocks, where))
            shutil.rmtree(where)
            for batch in batches:
                where = base / f"batch-{batch}"
                where.mkdir()
                puts[batch].append(trio.run(store_puts, shares, batch, where))
                shutil.rmtree(where)
        raw = min(raws)
        every = ", ".join(f"{r:.2f}" for r in raws)
        print(
            f"{'raw write+fsync':>22}: {raw:6.2f} s {total_mb / raw:7.1f} MB/s   1.00x  ({every})"
        )
        print(f"{'Merkle check alone':>22}: {hashing:6.2f} s {total_mb / hashing:7.1f} MB/s")
        for batch, times in puts.items():
            best = min(times)
            every = ", ".join(f"{t:.2f}" for t in times)
            print(
                f"{f'put, batches of {batch}':>22}: {best:6.2f} s "
                f"{total_mb / best:7.1f} MB/s {best / raw:6.2f}x  ({every})"
            )
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
