"""The backup pipeline's driver: a source's stream through segmenter, cipher, zfec and hashing,
in worker threads, in order, with bounded memory.

The stages are the cores' (`segmenter`, `pipeline`); this module only schedules them:

* the source is read in a worker thread (file I/O), one 1 MiB piece at a time, and fed to the
  segmenter on the trio thread (it cuts at several GB/s); an empty piece marks the end of a
  file (`source.FILE_END`), where the segmenter may cut;
* each complete segment goes to a worker thread that hashes it to its ID and, unless the owner
  already placed a segment with that ID (`known`, or earlier in this same stream), encrypts,
  erasure-codes and Merkle-hashes it. Hashing, the cipher and zfec release the GIL, so with
  ``workers`` threads up to that many segments are worked on at once while the event loop keeps
  answering probes;
* results are handed to ``deliver`` strictly in stream order: a `pipeline.EncodedSegment` for a
  new segment, a `Reused` for one already placed. ``deliver`` may block (the network's window
  is full): that stops new segments from being started, so at most ``window`` segments, each
  at most one maximum segment and its n blocks, are held at once, whatever the source's size.

What is read is what is backed up: a source that changes while read raises out of here
(`source.SourceChanged`), and the caller discards the backup.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Container, Iterable, Iterator
from dataclasses import dataclass, field

import trio

from plexinode.shards import derive, pipeline
from plexinode.shards.segmenter import Segmenter, SegmentSizes

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Reused:
    """A segment the owner has already placed: nothing to encode or send.

    Attributes:
        identity: its ID.
        length: its plaintext length.
    """

    identity: bytes
    length: int


Result = pipeline.EncodedSegment | Reused


@dataclass(slots=True)
class PipelineStats:
    """What one run did.

    Attributes:
        bytes_read: bytes of the stream.
        segments: segments cut.
        encoded: segments encrypted and encoded (new ones).
        reused: segments skipped because they were already placed.
        encoded_bytes: plaintext bytes of the new segments.
        lengths: every segment's plaintext length, in stream order.
    """

    bytes_read: int = 0
    segments: int = 0
    encoded: int = 0
    reused: int = 0
    encoded_bytes: int = 0
    lengths: list[int] = field(default_factory=list)


def _work(secret: bytes, plaintext: bytes, k: int, n: int, known: Container[bytes]) -> Result:
    identity = derive.segment_id(secret, plaintext)
    if identity in known:
        return Reused(identity, len(plaintext))
    return pipeline.encode_segment(secret, plaintext, k, n, identity=identity)


class _Run:
    """The state of one run of `run_pipeline`."""

    def __init__(
        self,
        *,
        secret: bytes,
        k: int,
        n: int,
        known: Container[bytes],
        deliver: Callable[[Result], Awaitable[None]],
        workers: int,
        window: int,
        threads: bool,
    ) -> None:
        self.secret, self.k, self.n, self.known = secret, k, n, known
        self.deliver = deliver
        self.threads = threads
        self.stats = PipelineStats()
        self.limiter = trio.CapacityLimiter(workers)
        self.slots = trio.Semaphore(window)
        self.send, self.receive = trio.open_memory_channel[trio.Event | None](window)
        self.results: dict[trio.Event, Result] = {}
        self.seen: set[bytes] = set()

    async def compute(self, plaintext: bytes, done: trio.Event) -> None:
        args = (self.secret, plaintext, self.k, self.n, self.known)
        if self.threads:
            result = await trio.to_thread.run_sync(_work, *args, limiter=self.limiter)
        else:
            result = _work(*args)
        self.results[done] = result
        done.set()

    async def in_order(self) -> None:
        stats = self.stats
        while (done := await self.receive.receive()) is not None:
            await done.wait()
            result = self.results.pop(done)
            if isinstance(result, pipeline.EncodedSegment) and result.identity in self.seen:
                result = Reused(result.identity, result.length)  # earlier in this stream
            self.seen.add(result.identity)
            stats.lengths.append(result.length)
            if isinstance(result, Reused):
                stats.reused += 1
            else:
                stats.encoded += 1
                stats.encoded_bytes += result.length
            await self.deliver(result)
            self.slots.release()

    async def start(self, nursery: trio.Nursery, segments: list[bytes]) -> None:
        for plaintext in segments:
            await self.slots.acquire()
            self.stats.segments += 1
            done = trio.Event()
            await self.send.send(done)
            nursery.start_soon(self.compute, plaintext, done)

    async def next_piece(self, pieces: Iterator[bytes]) -> bytes | None:
        if self.threads:
            return await trio.to_thread.run_sync(next, pieces, None)
        await trio.lowlevel.checkpoint()
        return next(pieces, None)


async def run_pipeline(
    stream: Iterable[bytes],
    *,
    secret: bytes,
    k: int,
    n: int,
    sizes: SegmentSizes,
    known: Container[bytes],
    deliver: Callable[[Result], Awaitable[None]],
    workers: int = 2,
    window: int | None = None,
    threads: bool = True,
) -> PipelineStats:
    """Run `stream` through the pipeline, handing each segment's result to `deliver` in order.

    Args:
        stream: the source's pieces (read in a worker thread when `threads`).
        secret: the owner's backup secret.
        k: segments decode from any k blocks...
        n: ...of n.
        sizes: the segmenter's sizes.
        known: IDs of segments already placed (read from worker threads: an immutable set).
        deliver: receives each result, in stream order; may block to apply backpressure.
        workers: segments worked on at once.
        window: segments between the reader and `deliver` at most (default: ``2 * workers``).
        threads: False runs every stage on the trio thread (the one-thread baseline).
    """
    run = _Run(
        secret=secret,
        k=k,
        n=n,
        known=known,
        deliver=deliver,
        workers=workers,
        window=window or 2 * workers,
        threads=threads,
    )
    segmenter = Segmenter(sizes, derive.chunker_seed(secret))
    pieces = iter(stream)
    # The first failure (the source changed, `deliver` refused) cancels the other tasks, so a
    # group holds that one exception: it is raised as itself, for the caller to catch.
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run.in_order)
            while (piece := await run.next_piece(pieces)) is not None:
                run.stats.bytes_read += len(piece)
                segments = segmenter.feed(piece) if piece else segmenter.boundary()
                await run.start(nursery, segments)
            await run.start(nursery, segmenter.finish())
            await run.send.send(None)
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise  # pragma: no cover  (two tasks failing at once)
    return run.stats
