"""The restore pipeline's driver: fetch, verify, decode and decrypt segments in parallel, write
them in order.

The stream's index is at its end (`archive`), so a restore first fetches the segments that
hold the index and decodes the tree, then creates the `restore_target.RestoreTarget` (which
checks the destination before any data moves), then fetches the data segments, up to
``window`` at once, decoding in worker threads (`pipeline.decode_segment`: each block checked
against its root, the ciphertext against its tag, the plaintext against its ID) and writing in
stream order. Memory: at most ``window`` segments and their blocks.

Blocks come from ``fetch(index, info, excluded)``, which returns at least k blocks of segment
``index`` from share indices not in ``excluded``, or raises `SegmentUnavailable`. A block that
fails its root is reported to ``on_corrupt`` (the holder's share counts as missing) and its
share excluded, and the segment is fetched again from the others.

A segment that cannot be had leaves a hole: with ``partial`` the files it touches are left out
and named; without, the restore fails once every segment was tried, naming the segments and
the files affected, and the destination is never created.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import trio

from plexinode.errors import PlexinodeError
from plexinode.shards import archive, pipeline
from plexinode.shards.manifest import Manifest, Private, SegmentInfo
from plexinode.shards.progress import RESTORE, Progress, Report, ignore
from plexinode.shards.restore_target import RestoreTarget

log = logging.getLogger(__name__)


class SegmentUnavailable(PlexinodeError):
    """Fewer than k verified blocks of a segment can be fetched."""


class RestoreIncomplete(PlexinodeError):
    """Segments could not be fetched.

    Attributes:
        segments: their indices.
        files: the paths of the files they touch.
    """

    def __init__(self, message: str, segments: list[int], files: list[bytes]) -> None:
        super().__init__(message)
        self.segments = segments
        self.files = files


Fetch = Callable[[int, SegmentInfo, frozenset[int]], Awaitable[dict[int, bytes]]]


@dataclass(slots=True)
class RestoreResult:
    """What a restore wrote.

    Attributes:
        path: the destination.
        bytes_written: bytes of file contents written.
        missing_segments: segments that could not be fetched (only with ``partial``).
        damaged: files left out (only with ``partial``).
    """

    path: Path
    bytes_written: int = 0
    missing_segments: list[int] = field(default_factory=list)
    damaged: list[bytes] = field(default_factory=list)


def _describe(segments: list[int], files: list[bytes]) -> str:
    shown = ", ".join(os.fsdecode(f) or "(the file itself)" for f in files[:5])
    more = f" and {len(files) - 5} more" if len(files) > 5 else ""
    return (
        f"{len(segments)} segment(s) have fewer than k shares reachable "
        f"(segments {', '.join(map(str, segments[:10]))}); files affected: {shown or 'none'}{more}"
    )


class _Restore:
    def __init__(
        self,
        manifest: Manifest,
        private: Private,
        *,
        secret: bytes,
        fetch: Fetch,
        on_corrupt: Callable[[int, tuple[int, ...]], None],
        workers: int,
    ) -> None:
        self.manifest = manifest
        self.secret = secret
        self.fetch = fetch
        self.on_corrupt = on_corrupt
        self.limiter = trio.CapacityLimiter(workers)
        self.lengths = private.segment_lengths()
        self.offsets = [0]
        for length in self.lengths:
            self.offsets.append(self.offsets[-1] + length)

    async def segment(self, index: int) -> bytes:
        """Segment `index`'s plaintext, verified; `SegmentUnavailable` when it cannot be had."""
        info = self.manifest.segment(index)
        excluded: frozenset[int] = frozenset()
        while True:
            blocks = await self.fetch(index, info, excluded)
            try:
                decode = functools.partial(
                    pipeline.decode_segment,
                    self.secret,
                    info.identity,
                    self.lengths[index],
                    k=self.manifest.k,
                    roots=info.roots,
                    blocks=blocks,
                )
                return await trio.to_thread.run_sync(decode, limiter=self.limiter)
            except pipeline.CorruptBlocksError as exc:
                self.on_corrupt(index, exc.indices)
                excluded |= set(exc.indices)
            except pipeline.SegmentMismatchError as exc:
                raise SegmentUnavailable(f"segment {index}: {exc}") from None

    def covering(self, start: int, end: int) -> range:
        """The segments that hold stream bytes [start, end)."""
        first = next(
            (i for i in range(len(self.lengths)) if self.offsets[i + 1] > start), len(self.lengths)
        )
        last = next(
            (i for i in range(first, len(self.lengths)) if self.offsets[i + 1] >= end), first
        )
        return range(first, last + 1) if end > start else range(first, first)


async def run_restore(
    manifest: Manifest,
    private: Private,
    *,
    secret: bytes,
    dest: Path,
    fetch: Fetch,
    on_corrupt: Callable[[int, tuple[int, ...]], None] = lambda segment, shares: None,
    partial: bool = False,
    workers: int = 2,
    window: int = 4,
    progress: Report = ignore,
) -> RestoreResult:
    """Restore the backup described by `manifest` at `dest` (see the module docstring),
    reporting the bytes of file contents written (or skipped, for a missing segment) after
    each segment to `progress`."""
    run = _Restore(
        manifest, private, secret=secret, fetch=fetch, on_corrupt=on_corrupt, workers=workers
    )
    data_end = private.data_bytes
    index_end = data_end + private.index_bytes
    index_segments = run.covering(data_end, index_end)
    plain: dict[int, bytes] = {}
    try:
        for i in index_segments:
            plain[i] = await run.segment(i)
    except SegmentUnavailable as exc:
        raise RestoreIncomplete(
            f"the backup's index cannot be fetched, so nothing can be restored ({exc})", [i], []
        ) from None
    index_bytes = b"".join(plain[i] for i in index_segments)
    start = run.offsets[index_segments.start] if index_segments else data_end
    entries = archive.decode_index(index_bytes[data_end - start : index_end - start])
    target = await trio.to_thread.run_sync(RestoreTarget, dest, entries)
    result = RestoreResult(path=dest)
    try:
        await _write_data(
            run,
            target,
            plain=plain,
            data_end=data_end,
            window=window,
            result=result,
            progress=progress,
        )
        if result.missing_segments and not partial:
            files = archive.files_in_ranges(
                entries, [(run.offsets[i], run.lengths[i]) for i in result.missing_segments]
            )
            raise RestoreIncomplete(
                _describe(result.missing_segments, files) + "; --partial restores the rest",
                result.missing_segments,
                files,
            )
        await trio.to_thread.run_sync(target.finish)
    except BaseException:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(target.abort)
        raise
    result.damaged = list(target.damaged)
    return result


async def _write_data(
    run: _Restore,
    target: RestoreTarget,
    *,
    plain: dict[int, bytes],
    data_end: int,
    window: int,
    result: RestoreResult,
    progress: Report,
) -> None:
    segments = run.covering(0, data_end)
    slots = trio.Semaphore(window)
    ready: dict[int, trio.Event] = {i: trio.Event() for i in segments}
    got: dict[int, bytes | None] = {}

    async def one(i: int) -> None:
        try:
            got[i] = plain[i] if i in plain else await run.segment(i)
        except SegmentUnavailable as exc:
            log.warning("restore: %s", exc)
            got[i] = None
        ready[i].set()

    async def feeder(nursery: trio.Nursery) -> None:
        for i in segments:
            await slots.acquire()
            nursery.start_soon(one, i)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(feeder, nursery)
        for i in segments:
            await ready[i].wait()
            data = got.pop(i)
            take = min(run.offsets[i + 1], data_end) - run.offsets[i]
            if data is None:
                result.missing_segments.append(i)
                await trio.to_thread.run_sync(target.skip, take)
            else:
                await trio.to_thread.run_sync(target.write, data[:take])
                result.bytes_written += take
            progress(Progress(RESTORE, run.offsets[i] + take, data_end))
            slots.release()
