"""Content-defined segments of a byte stream that arrives in pieces (FastCDC, keyed per owner).

The chunker is pyfastcdc's compiled FastCDC 2020 (decision 47): it cuts a buffer at positions
chosen by a rolling gear hash of the bytes just before them, so an insertion early in a file
moves the cuts near it and no later one — the later segments keep their content, hence their
IDs, hence a later backup skips them. Its gear table is XORed with a 64-bit seed, and the seed
is the owner's (`derive.chunker_seed`): without the backup secret a holder cannot compute where
a known file would be cut, which is what turns segment sizes into a fingerprint of known files
when the boundaries are public (docs/security.md says what a holder still learns).

pyfastcdc cuts a whole buffer; the data here arrives in pieces from a file reader. A cut is a
function of the bytes from the start of its segment up to at most ``max_size`` bytes on, so
cutting what has arrived gives every segment but the last exactly the cut the whole stream
would get: each of them ended at a hash match or at ``max_size``, neither of which depends on
bytes further on. Only the last one may have ended because the buffer did. So `Segmenter.feed`
keeps that last piece and cuts again when more has arrived, once at least two maximum segments
are waiting (so each byte is scanned at most a few times); `Segmenter.finish` cuts the rest,
and `Segmenter.boundary` (a file ended) cuts everything waiting once it is a minimum segment.
Memory is bounded by two maximum segments plus the piece being fed, whatever the stream's size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from pyfastcdc import FastCDC

#: The average segment size the issue asks for. pyfastcdc's segments average about
#: ``avg_size + min_size``, so the chunker is asked for 3/4 of the target with a minimum of 1/4.
DEFAULT_SEGMENT_BYTES: Final = 1 << 20
#: pyfastcdc's bounds: the average within 256 B..4 MiB, the maximum at most 16 MiB.
MIN_SEGMENT_BYTES: Final = 64 << 10
MAX_SEGMENT_BYTES: Final = 4 << 20


@dataclass(frozen=True, slots=True)
class SegmentSizes:
    """The chunker's three sizes for a target average (about ``average`` bytes a segment)."""

    average: int
    minimum: int
    maximum: int

    @classmethod
    def for_average(cls, average: int) -> SegmentSizes:
        """The sizes for segments of about `average` bytes (64 KiB..4 MiB)."""
        if not MIN_SEGMENT_BYTES <= average <= MAX_SEGMENT_BYTES:
            raise ValueError(
                f"the segment size must be within {MIN_SEGMENT_BYTES >> 10} KiB.."
                f"{MAX_SEGMENT_BYTES >> 20} MiB, not {average} bytes"
            )
        return cls(average=average, minimum=average // 4, maximum=average * 4)


class Segmenter:
    """Cuts a stream fed in pieces into content-defined segments.

    Args:
        sizes: the chunker's sizes.
        seed: the owner's 64-bit gear-table seed (`derive.chunker_seed`).
    """

    def __init__(self, sizes: SegmentSizes, seed: int) -> None:
        self._chunker = FastCDC(
            sizes.average - sizes.minimum,
            min_size=sizes.minimum,
            max_size=sizes.maximum,
            seed=seed,
        )
        self._maximum = sizes.maximum
        self._minimum = sizes.minimum
        self._pending = bytearray()
        self._finished = False

    @property
    def buffered(self) -> int:
        """Bytes fed that are not in a segment yet."""
        return len(self._pending)

    def feed(self, data: bytes | memoryview) -> list[bytes]:
        """Add the next bytes of the stream; returns the segments they completed, in order."""
        if self._finished:
            raise RuntimeError("the stream was finished")
        self._pending += data
        if len(self._pending) < 2 * self._maximum:
            return []
        return self._cut(keep_last=True)

    def boundary(self) -> list[bytes]:
        """A file of the stream ended here: cut, if at least a minimum segment is waiting.

        A segment then never spans the end of a file into the next one unless it is small, so
        a changed file changes its own segments (and the small neighbours it was packed with)
        and no other: restic restarts its chunker at every file for the same reason. Small files
        are still packed together, so a tree of tiny files does not become tiny segments.
        """
        if self._finished:
            raise RuntimeError("the stream was finished")
        if len(self._pending) < self._minimum:
            return []
        return self._cut(keep_last=False)

    def finish(self) -> list[bytes]:
        """The end of the stream: returns the remaining segments."""
        if self._finished:
            raise RuntimeError("the stream was finished")
        self._finished = True
        return self._cut(keep_last=False)

    def _cut(self, *, keep_last: bool) -> list[bytes]:
        view = memoryview(self._pending)
        try:
            cuts = [(chunk.offset, chunk.length) for chunk in self._chunker.cut_buf(view)]
        finally:
            view.release()
        if keep_last:
            cuts.pop()
        segments = [bytes(self._pending[offset : offset + length]) for offset, length in cuts]
        consumed = sum(length for _, length in cuts)
        del self._pending[:consumed]
        return segments
