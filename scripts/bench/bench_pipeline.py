"""The backup pipeline against the sum of its primitives, and the restore pipeline against
the sum of its own, on the same bytes in the same run.

    python scripts/bench/bench_pipeline.py [--mib 256] [-k 3] [-n 10] [--workers 2] [--dest DIR]

Backup: the primitives run alone, stage by stage, on the segments the chunker cuts: the chunker
(pyfastcdc), the segment ID (keyed BLAKE2b of the plaintext), the cipher (XChaCha20-Poly1305),
zfec encode with the same k and n, and the Merkle roots of the n blocks. Then the pipeline
(`plexinode.shards.backup_pipeline.run_pipeline`) on one thread and with worker threads. Targets:
one thread at most 1.15x the sum; worker threads at least 1.5x faster than one thread.

Restore: the primitives are zfec decode (from k parity blocks, the worst case, and from the k
primary blocks), the Merkle check of the k blocks, the cipher and the ID check, and writing the
bytes to a file in DIR with an fsync; the restore pipeline runs on the same blocks (served from
memory) into DIR. Target: at most 1.15x the sum, for both cases. DIR defaults to a temporary
directory under /tmp.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import header

from plexinode.identity import Identity
from plexinode.shards import coding, derive, manifest, pipeline, sealing
from plexinode.shards.backup_pipeline import Result, run_pipeline
from plexinode.shards.manifest import Private, SegmentInfo, SegmentTable
from plexinode.shards.restore_pipeline import run_restore
from plexinode.shards.segmenter import DEFAULT_SEGMENT_BYTES, Segmenter, SegmentSizes

SECRET = bytes(range(32))
PIECE = 1 << 20


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def pieces(data: bytes) -> Iterator[bytes]:
    view = memoryview(data)
    for at in range(0, len(data), PIECE):
        yield bytes(view[at : at + PIECE])


def backup_primitives(
    data: bytes, sizes: SegmentSizes, k: int, n: int
) -> tuple[dict[str, float], list[bytes]]:
    segmenter = Segmenter(sizes, derive.chunker_seed(SECRET))
    segments: list[bytes] = []

    def chunk() -> None:
        for piece in pieces(data):
            segments.extend(segmenter.feed(piece))
        segments.extend(segmenter.finish())

    stages = {"chunker": timed(chunk)}
    ids: list[bytes] = []
    stages["segment ID"] = timed(lambda: ids.extend(derive.segment_id(SECRET, s) for s in segments))
    keys = [derive.segment_key(SECRET, i) for i in ids]
    sealed: list[bytes] = []
    stages["cipher"] = timed(
        lambda: sealed.extend(
            sealing.seal(kk, i, s) for kk, i, s in zip(keys, ids, segments, strict=True)
        )
    )
    blocks: list[list[bytes]] = []
    stages["zfec encode"] = timed(lambda: blocks.extend(coding.encode(c, k, n) for c in sealed))
    stages["Merkle"] = timed(lambda: [pipeline.share_root(b) for bs in blocks for b in bs])
    return stages, segments


async def backup_pipeline(
    data: bytes,
    sizes: SegmentSizes,
    k: int,
    n: int,
    *,
    threads: bool,
    workers: int,
    keep: list[Result] | None = None,
) -> float:
    async def deliver(result: Result) -> None:
        if keep is not None:
            keep.append(result)

    start = time.perf_counter()
    await run_pipeline(
        pieces(data),
        secret=SECRET,
        k=k,
        n=n,
        sizes=sizes,
        known=frozenset(),
        deliver=deliver,
        workers=workers,
        threads=threads,
    )
    return time.perf_counter() - start


def restore_primitives(
    encoded: list[pipeline.EncodedSegment], k: int, n: int, chosen: list[int], dest: Path
) -> dict[str, float]:
    stages: dict[str, float] = {}
    stages["Merkle check"] = timed(
        lambda: [pipeline.share_root(seg.blocks[i]) for seg in encoded for i in chosen]
    )
    ciphertexts: list[bytes] = []
    stages["zfec decode"] = timed(
        lambda: ciphertexts.extend(
            coding.decode(
                {i: seg.blocks[i] for i in chosen}, k, n, pipeline.ciphertext_length(seg.length)
            )
            for seg in encoded
        )
    )
    plain: list[bytes] = []
    stages["cipher"] = timed(
        lambda: plain.extend(
            sealing.unseal(derive.segment_key(SECRET, seg.identity), seg.identity, c)
            for seg, c in zip(encoded, ciphertexts, strict=True)
        )
    )
    stages["ID check"] = timed(lambda: [derive.segment_id(SECRET, p) for p in plain])

    def write() -> None:
        path = dest / "primitive-write"
        with open(path, "wb") as f:
            for p in plain:
                f.write(p)
            f.flush()
            os.fsync(f.fileno())
        path.unlink()

    stages["file write"] = timed(write)
    return stages


async def restore_run(
    encoded: list[pipeline.EncodedSegment],
    data_len: int,
    k: int,
    n: int,
    chosen: list[int],
    dest: Path,
    workers: int,
) -> float:
    from plexinode.shards import archive

    owner = Identity.from_seed(bytes(32))
    backup_id = b"R" * 16
    index = archive.encode_index([archive.Entry(b"", archive.FILE, 0o644, 0, data_len, b"")])
    # The restore needs the index segment too: the benchmark appends it as its own segment.
    index_seg = pipeline.encode_segment(SECRET, index, k, n)
    segments = [*encoded, index_seg]
    table = SegmentTable(backup_id, n)
    for seg in segments:
        table.add(seg.identity, backup_id, seg.length, len(seg.blocks[0]), seg.roots)
    private = Private.of("bench", "-", data_len, len(index), table.lengths)
    key = derive.manifest_key(SECRET, backup_id)
    built = manifest.build(
        owner=owner.public_key,
        backup_id=backup_id,
        created=0.0,
        lease_expires=0.0,
        k=k,
        n=n,
        table=table,
        nonce=bytes(24),
        sealed=manifest.seal_private(private, key, bytes(24), owner.public_key, backup_id),
    ).signed_by(owner)
    by_id = {seg.identity: seg for seg in segments}

    async def fetch(index: int, info: SegmentInfo, excluded: frozenset[int]) -> dict[int, bytes]:
        seg = by_id[info.identity]
        return {i: seg.blocks[i] for i in chosen}

    target = dest / f"restored-{chosen[0]}"
    start = time.perf_counter()
    await run_restore(
        built,
        private,
        secret=SECRET,
        dest=target,
        fetch=fetch,
        workers=workers,
        window=2 * workers + 2,
    )
    elapsed = time.perf_counter() - start
    target.unlink()
    return elapsed


def show(title: str, stages: dict[str, float], mib: float) -> float:
    total = sum(stages.values())
    print(f"\n{title}: sum of primitives {total:.2f} s ({mib / total:.0f} MiB/s)")
    for name, seconds in stages.items():
        share = 100 * seconds / total
        print(f"  {name:<14} {seconds:6.2f} s  {share:5.1f}%  {mib / seconds:7.0f} MiB/s")
    return total


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("-k", type=int, default=3)
    parser.add_argument("-n", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--dest", type=Path, default=None)
    args = parser.parse_args()
    header("backup and restore pipelines against their primitives")
    k, n, mib = args.k, args.n, args.mib
    rng = random.Random(1)
    data = b"".join(rng.randbytes(1 << 20) for _ in range(mib))
    sizes = SegmentSizes.for_average(DEFAULT_SEGMENT_BYTES)

    stages, segments = backup_primitives(data, sizes, k, n)
    print(f"{mib} MiB, {len(segments)} segments, k = {k}, n = {n}, {args.workers} workers")
    total = show("backup", stages, mib)
    one = trio.run(lambda: backup_pipeline(data, sizes, k, n, threads=False, workers=1))
    many = trio.run(lambda: backup_pipeline(data, sizes, k, n, threads=True, workers=args.workers))
    print(f"  pipeline, one thread      {one:6.2f} s  {one / total:.2f}x the sum (target <= 1.15x)")
    speedup = one / many
    print(
        f"  pipeline, {args.workers} threads {many:6.2f} s  {speedup:.2f}x faster (target >= 1.5x)"
    )

    encoded = [pipeline.encode_segment(SECRET, s, k, n) for s in segments]
    del segments
    with tempfile.TemporaryDirectory(dir=args.dest) as where:
        dest = Path(where)
        for label, chosen in (
            ("parity blocks", list(range(n - k, n))),
            ("primary blocks", list(range(k))),
        ):
            total = show(
                f"restore from {label}", restore_primitives(encoded, k, n, chosen, dest), mib
            )
            one = trio.run(restore_run, encoded, len(data), k, n, chosen, dest, 1)
            many = trio.run(restore_run, encoded, len(data), k, n, chosen, dest, args.workers)
            print(
                f"  pipeline, 1 worker  {one:6.2f} s  {one / total:.2f}x the sum (target <= 1.15x)"
            )
            print(
                f"  pipeline, {args.workers} workers    {many:6.2f} s  {many / total:.2f}x the sum"
            )


if __name__ == "__main__":
    main()
