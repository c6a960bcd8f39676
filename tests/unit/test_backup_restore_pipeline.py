"""The backup and restore pipelines end to end, over shares kept in memory."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
import trio

from plexinode.identity import Identity
from plexinode.shards import backup_pipeline, derive, manifest, pipeline
from plexinode.shards.backup_pipeline import Reused, run_pipeline
from plexinode.shards.manifest import Manifest, Private, SegmentInfo, SegmentTable
from plexinode.shards.progress import RESTORE, Progress
from plexinode.shards.restore_pipeline import RestoreIncomplete, SegmentUnavailable, run_restore
from plexinode.shards.restore_target import RestoreTargetError
from plexinode.shards.segmenter import SegmentSizes
from plexinode.shards.source import Source

SECRET = bytes(range(32))
OWNER = Identity.from_seed(bytes(32))
SIZES = SegmentSizes.for_average(64 << 10)  # small segments: many of them in a small tree
K, N = 3, 5


class Holders:
    """Shares in memory: (segment ID, share index) -> block."""

    def __init__(self) -> None:
        self.blocks: dict[tuple[bytes, int], bytes] = {}
        self.homes: dict[bytes, bytes] = {}
        self.sent = 0

    async def deliver(self, result: backup_pipeline.Result) -> None:
        if isinstance(result, pipeline.EncodedSegment):
            for i, block in enumerate(result.blocks):
                self.blocks[result.identity, i] = block
                self.sent += len(block)

    async def fetch(
        self, index: int, info: SegmentInfo, excluded: frozenset[int]
    ) -> dict[int, bytes]:
        await trio.lowlevel.checkpoint()
        got = {
            i: self.blocks[info.identity, i]
            for i in range(N)
            if i not in excluded and (info.identity, i) in self.blocks
        }
        if len(got) < K:
            raise SegmentUnavailable(f"segment {index}: {len(got)} shares reachable")
        return dict(sorted(got.items())[:K])


async def back_up(
    path: Path,
    holders: Holders,
    backup_id: bytes,
    known: frozenset[bytes] = frozenset(),
    **kw: object,
) -> tuple[Manifest, Private, backup_pipeline.PipelineStats]:
    table = SegmentTable(backup_id, N)
    results: list[backup_pipeline.Result] = []

    async def deliver(result: backup_pipeline.Result) -> None:
        results.append(result)
        await holders.deliver(result)

    src = Source(path)
    stats = await run_pipeline(
        src,
        secret=SECRET,
        k=K,
        n=N,
        sizes=SIZES,
        known=known,
        deliver=deliver,
        **kw,  # type: ignore[arg-type]
    )
    for result in results:
        if isinstance(result, Reused):
            home = holders.homes[result.identity]
            roots = tuple(pipeline.share_root(holders.blocks[result.identity, i]) for i in range(N))
            size = len(holders.blocks[result.identity, 0])
        else:
            home = holders.homes.setdefault(result.identity, backup_id)
            roots, size = result.roots, len(result.blocks[0])
        table.add(result.identity, home, result.length, size, roots)
    private = Private.of("test", str(path), src.data_bytes, src.index_bytes, table.lengths)
    key = derive.manifest_key(SECRET, backup_id)
    nonce = bytes(24)
    built = manifest.build(
        owner=OWNER.public_key,
        backup_id=backup_id,
        created=1.0,
        lease_expires=2.0,
        k=K,
        n=N,
        table=table,
        nonce=nonce,
        sealed=manifest.seal_private(private, key, nonce, OWNER.public_key, backup_id),
    ).signed_by(OWNER)
    return Manifest.decode(built.to_bytes_checked()), private, stats


def make_tree(root: Path, files: int = 12, seed: int = 1) -> None:
    rng = random.Random(seed)
    (root / "d").mkdir(parents=True)
    for i in range(files):
        (root / ("d" if i % 2 else ".") / f"f{i}").write_bytes(
            rng.randbytes(rng.randrange(0, 90_000))
        )


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize("threads", [True, False])
async def test_a_tree_backs_up_and_restores(tmp_path: Path, threads: bool) -> None:
    make_tree(tmp_path / "src")
    holders = Holders()
    built, private, stats = await back_up(tmp_path / "src", holders, b"A" * 16, threads=threads)
    assert stats.segments == built.segment_count > 5
    assert stats.encoded == stats.segments
    assert stats.bytes_read == private.data_bytes + private.index_bytes
    opened = built.open_private(derive.manifest_key(SECRET, b"A" * 16))
    written: list[Progress] = []
    result = await run_restore(
        built,
        opened,
        secret=SECRET,
        dest=tmp_path / "out",
        fetch=holders.fetch,
        progress=written.append,
    )
    assert tree_bytes(tmp_path / "out") == tree_bytes(tmp_path / "src")
    assert result.bytes_written == private.data_bytes == written[-1].done
    assert {(p.phase, p.total) for p in written} == {(RESTORE, private.data_bytes)}
    assert [p.done for p in written] == sorted(p.done for p in written)
    assert result.missing_segments == []


async def test_an_unchanged_tree_sends_nothing_and_a_changed_file_little(tmp_path: Path) -> None:
    make_tree(tmp_path / "src", files=20)
    holders = Holders()
    first, _, _ = await back_up(tmp_path / "src", holders, b"A" * 16)
    known = frozenset(s.identity for s in first.segments())
    sent = holders.sent
    second, _, stats = await back_up(tmp_path / "src", holders, b"B" * 16, known=known)
    assert holders.sent == sent
    assert stats.encoded == 0
    assert {s.home for s in second.segments()} == {b"A" * 16}
    (tmp_path / "src" / "d" / "f5").write_bytes(random.Random(50).randbytes(50_000))
    known = known | frozenset(s.identity for s in second.segments())
    third, private, stats = await back_up(tmp_path / "src", holders, b"C" * 16, known=known)
    # The rewritten file's own segments and the index's: file boundaries keep the rest.
    assert stats.encoded_bytes == 50_000 + private.index_bytes
    assert holders.sent - sent == pytest.approx(stats.encoded_bytes * N / K, rel=0.05)
    result = await run_restore(
        third,
        third.open_private(derive.manifest_key(SECRET, b"C" * 16)),
        secret=SECRET,
        dest=tmp_path / "out",
        fetch=holders.fetch,
    )
    assert tree_bytes(tmp_path / "out") == tree_bytes(tmp_path / "src")
    assert result.bytes_written == private.data_bytes


async def test_a_repeated_segment_in_one_stream_is_encoded_once(tmp_path: Path) -> None:
    block = random.Random(5).randbytes(300_000)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a").write_bytes(block)
    (tmp_path / "src" / "b").write_bytes(block)
    holders = Holders()
    built, _, stats = await back_up(tmp_path / "src", holders, b"A" * 16)
    assert stats.reused > 0
    ids = [s.identity for s in built.segments()]
    assert len(set(ids)) < len(ids)


async def test_corrupt_blocks_are_reported_and_others_used(tmp_path: Path) -> None:
    make_tree(tmp_path / "src", files=4)
    holders = Holders()
    built, private, _ = await back_up(tmp_path / "src", holders, b"A" * 16)
    for (identity, i), block in list(holders.blocks.items()):
        if i == 0:
            holders.blocks[identity, i] = bytes(len(block))  # share 0 serves zeros everywhere
    corrupt: list[tuple[int, tuple[int, ...]]] = []
    await run_restore(
        built,
        private,
        secret=SECRET,
        dest=tmp_path / "out",
        fetch=holders.fetch,
        on_corrupt=lambda seg, shares: corrupt.append((seg, shares)),
    )
    assert tree_bytes(tmp_path / "out") == tree_bytes(tmp_path / "src")
    assert len(corrupt) == built.segment_count
    assert {shares for _, shares in corrupt} == {(0,)}


async def test_missing_segments_fail_the_restore_naming_files_or_leave_them_out(
    tmp_path: Path,
) -> None:
    make_tree(tmp_path / "src", files=12)
    holders = Holders()
    built, private, _ = await back_up(tmp_path / "src", holders, b"A" * 16)
    lost = built.segment(1).identity
    for i in range(N - K + 1):
        del holders.blocks[lost, i]
    with pytest.raises(RestoreIncomplete, match="1 segment\\(s\\) have fewer than k") as caught:
        await run_restore(built, private, secret=SECRET, dest=tmp_path / "out", fetch=holders.fetch)
    assert caught.value.segments == [1]
    assert caught.value.files
    assert "--partial" in str(caught.value)
    assert not (tmp_path / "out").exists()
    assert os.listdir(tmp_path) == ["src"]
    result = await run_restore(
        built, private, secret=SECRET, dest=tmp_path / "out", fetch=holders.fetch, partial=True
    )
    assert result.missing_segments == [1]
    assert result.damaged == caught.value.files
    restored = tree_bytes(tmp_path / "out")
    original = tree_bytes(tmp_path / "src")
    damaged = {os.fsdecode(p) for p in result.damaged}
    assert set(restored) == set(original) - damaged
    assert all(restored[name] == original[name] for name in restored)


async def test_a_lost_index_restores_nothing(tmp_path: Path) -> None:
    make_tree(tmp_path / "src", files=3)
    holders = Holders()
    built, private, _ = await back_up(tmp_path / "src", holders, b"A" * 16)
    last = built.segment(built.segment_count - 1).identity
    for i in range(N):
        del holders.blocks[last, i]
    with pytest.raises(RestoreIncomplete, match="index cannot be fetched"):
        await run_restore(
            built, private, secret=SECRET, dest=tmp_path / "out", fetch=holders.fetch, partial=True
        )
    assert not (tmp_path / "out").exists()


async def test_a_forged_segment_is_unavailable_not_written(tmp_path: Path) -> None:
    make_tree(tmp_path / "src", files=3)
    holders = Holders()
    built, private, _ = await back_up(tmp_path / "src", holders, b"A" * 16)
    first = built.segment(0)
    # Blocks that match the manifest's roots cannot be forged; blocks for another ID can.
    other = pipeline.encode_segment(SECRET, b"x" * private.segment_lengths()[0], K, N)
    forged = manifest.build(
        owner=OWNER.public_key,
        backup_id=b"A" * 16,
        created=1.0,
        lease_expires=2.0,
        k=K,
        n=N,
        table=_table_with(built, 0, other),
        nonce=built.nonce,
        sealed=built.sealed,
    ).signed_by(OWNER)
    for i, block in enumerate(other.blocks):
        holders.blocks[first.identity, i] = block
    with pytest.raises(RestoreIncomplete):
        await run_restore(
            forged, private, secret=SECRET, dest=tmp_path / "out", fetch=holders.fetch
        )


def _table_with(built: Manifest, index: int, seg: pipeline.EncodedSegment) -> SegmentTable:
    table = SegmentTable(built.backup_id, built.n)
    for i, info in enumerate(built.segments()):
        roots = seg.roots if i == index else info.roots
        table.add(info.identity, info.home, 0, info.block_size, roots)
    return table


async def test_an_existing_destination_is_refused_before_any_data(tmp_path: Path) -> None:
    make_tree(tmp_path / "src", files=2)
    holders = Holders()
    built, private, _ = await back_up(tmp_path / "src", holders, b"A" * 16)
    (tmp_path / "out").mkdir()
    with pytest.raises(RestoreTargetError, match="already exists"):
        await run_restore(built, private, secret=SECRET, dest=tmp_path / "out", fetch=holders.fetch)


async def test_a_single_file_and_an_empty_one(tmp_path: Path) -> None:
    for name, size in (("f", 200_000), ("e", 0)):
        (tmp_path / name).write_bytes(random.Random(size).randbytes(size))
        holders = Holders()
        built, private, _ = await back_up(tmp_path / name, holders, b"A" * 16)
        await run_restore(
            built, private, secret=SECRET, dest=tmp_path / (name + ".out"), fetch=holders.fetch
        )
        assert (tmp_path / (name + ".out")).read_bytes() == (tmp_path / name).read_bytes()


async def test_deliver_backpressure_bounds_what_is_held(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(random.Random(9).randbytes(2 << 20))
    started: list[int] = []
    gate = trio.Event()
    delivered = 0

    async def slow(result: backup_pipeline.Result) -> None:
        nonlocal delivered
        await gate.wait()
        delivered += 1

    real = backup_pipeline._work

    def counting(*args: object) -> backup_pipeline.Result:
        started.append(1)
        return real(*args)  # type: ignore[arg-type]

    async with trio.open_nursery() as nursery:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(backup_pipeline, "_work", counting)
            nursery.start_soon(
                lambda: run_pipeline(
                    Source(tmp_path / "f"),
                    secret=SECRET,
                    k=K,
                    n=N,
                    sizes=SIZES,
                    known=frozenset(),
                    deliver=slow,
                    workers=2,
                    window=3,
                )
            )
            await trio.sleep(0.5)
            assert len(started) <= 3  # the window, while deliver is blocked
            gate.set()
    assert delivered > 10
