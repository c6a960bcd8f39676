"""Content-defined segments of a stream fed in pieces."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyfastcdc import FastCDC

from plexinode.shards.segmenter import (
    DEFAULT_SEGMENT_BYTES,
    MAX_SEGMENT_BYTES,
    MIN_SEGMENT_BYTES,
    Segmenter,
    SegmentSizes,
)

SMALL = SegmentSizes.for_average(MIN_SEGMENT_BYTES)  # 16 KiB..256 KiB: fast tests
SEED = 0x5EED


def whole(data: bytes, sizes: SegmentSizes, seed: int) -> list[bytes]:
    chunker = FastCDC(
        sizes.average - sizes.minimum, min_size=sizes.minimum, max_size=sizes.maximum, seed=seed
    )
    return [bytes(chunk.data) for chunk in chunker.cut_buf(data)]


def fed(
    data: bytes, pieces: list[int], sizes: SegmentSizes = SMALL, seed: int = SEED
) -> list[bytes]:
    segmenter = Segmenter(sizes, seed)
    out: list[bytes] = []
    at = 0
    for size in pieces:
        out += segmenter.feed(data[at : at + size])
        at += size
        assert segmenter.buffered <= 2 * sizes.maximum + size
    out += segmenter.feed(data[at:])
    return out + segmenter.finish()


def test_sizes_follow_the_target_and_are_bounded() -> None:
    sizes = SegmentSizes.for_average(DEFAULT_SEGMENT_BYTES)
    assert (sizes.minimum, sizes.maximum) == (DEFAULT_SEGMENT_BYTES // 4, DEFAULT_SEGMENT_BYTES * 4)
    for bad in (MIN_SEGMENT_BYTES - 1, MAX_SEGMENT_BYTES + 1):
        with pytest.raises(ValueError, match=r"segment size must be within 64 KiB\.\.4 MiB"):
            SegmentSizes.for_average(bad)


def test_a_stream_fed_in_pieces_is_cut_as_the_whole_buffer() -> None:
    data = random.Random(1).randbytes(3 << 20)
    expected = whole(data, SMALL, SEED)
    assert len(expected) > 20
    assert fed(data, [1, 7, 100_000, 65_536] * 10) == expected
    assert fed(data, [len(data)]) == expected
    assert b"".join(expected) == data


@settings(max_examples=25, deadline=None)
@given(
    size=st.integers(0, 1_500_000),
    pieces=st.lists(st.integers(1, 400_000), max_size=12),
    seed=st.integers(1, (1 << 63) - 1),
)
def test_pieces_never_change_the_cuts(size: int, pieces: list[int], seed: int) -> None:
    data = random.Random(size).randbytes(size)
    assert fed(data, pieces, seed=seed) == whole(data, SMALL, seed)


def test_an_insertion_moves_no_later_segment() -> None:
    data = random.Random(2).randbytes(2 << 20)
    before = fed(data, [50_000] * 50)
    after = fed(data[:1000] + b"inserted" + data[1000:], [50_000] * 50)
    assert before[0] != after[0]
    assert before[-(len(before) - 2) :] == after[-(len(before) - 2) :]


def test_the_owner_seed_moves_the_cuts() -> None:
    data = random.Random(3).randbytes(1 << 20)
    assert fed(data, []) != fed(data, [], seed=SEED + 1)


def test_empty_stream_and_use_after_finish() -> None:
    segmenter = Segmenter(SMALL, SEED)
    assert segmenter.finish() == []
    with pytest.raises(RuntimeError, match="finished"):
        segmenter.feed(b"x")
    with pytest.raises(RuntimeError, match="finished"):
        segmenter.finish()


def test_a_file_boundary_cuts_once_a_minimum_segment_waits() -> None:
    segmenter = Segmenter(SMALL, SEED)
    assert segmenter.feed(b"a" * (SMALL.minimum - 1)) == []
    assert segmenter.boundary() == []  # too small: packed with what follows
    assert segmenter.feed(b"b") == []
    assert segmenter.boundary() == [b"a" * (SMALL.minimum - 1) + b"b"]
    assert segmenter.buffered == 0
    segmenter.finish()
    with pytest.raises(RuntimeError, match="finished"):
        segmenter.boundary()


def test_a_changed_file_changes_only_its_own_segments() -> None:
    rng = random.Random(4)
    files = [rng.randbytes(rng.randrange(SMALL.minimum, 200_000)) for _ in range(12)]

    def cut(contents: list[bytes]) -> list[bytes]:
        segmenter = Segmenter(SMALL, SEED)
        out: list[bytes] = []
        for data in contents:
            out += segmenter.feed(data) + segmenter.boundary()
        return out + segmenter.finish()

    before = cut(files)
    files[5] = rng.randbytes(100_000)
    after = cut(files)
    assert len(set(after) - set(before)) == len(cut(files[5:6]))
