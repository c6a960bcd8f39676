"""Erasure coding of a segment's ciphertext into n blocks of which any k restore it (zfec).

zfec's encoder takes k primary blocks of equal size and returns n blocks: the k primary blocks
themselves (indices 0..k-1) followed by n - k parity blocks. So the ciphertext is padded with
zeros to a multiple of k, cut into k equal primary blocks, and the padding is cut off again
after decoding by the length the manifest records. Any k blocks with distinct indices decode;
decoding from the primary blocks alone is a copy, decoding from parity blocks is the work.

zfec's limits are 1 <= k <= n <= 256 (its field is GF(2^8)); `check_parameters` says so in
words before zfec would raise. zfec releases the GIL while it computes, so encoding and decoding
run in worker threads in parallel with the node's event loop.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Final

import zfec

MAX_SHARES: Final = 256


class CodingError(Exception):
    """Blocks that cannot decode: too few, wrong sizes, or indices out of range."""


def check_parameters(k: int, n: int) -> None:
    """Raise `ValueError` naming the rule when k-of-n is not a code zfec can make."""
    if not 1 <= n <= MAX_SHARES:
        raise ValueError(f"n must be within 1..{MAX_SHARES} (zfec's limit), not {n}")
    if not 1 <= k <= n:
        raise ValueError(f"k must be within 1..n ({n}), not {k}")


def block_size(length: int, k: int) -> int:
    """The size of each of the n blocks of a `length`-byte ciphertext."""
    return max(1, -(-length // k))


@functools.lru_cache(maxsize=64)
def _encoder(k: int, n: int) -> zfec.Encoder:
    return zfec.Encoder(k, n)


@functools.lru_cache(maxsize=64)
def _decoder(k: int, n: int) -> zfec.Decoder:
    return zfec.Decoder(k, n)


def encode(data: bytes, k: int, n: int) -> list[bytes]:
    """The n blocks of `data`; block i is share i of the segment."""
    check_parameters(k, n)
    size = block_size(len(data), k)
    padded = data + bytes(size * k - len(data))
    primary = [padded[i * size : (i + 1) * size] for i in range(k)]
    blocks: list[bytes] = _encoder(k, n).encode(primary)
    return blocks


def decode(blocks: Mapping[int, bytes], k: int, n: int, length: int) -> bytes:
    """The `length` bytes encoded in `blocks` (share index -> block); any k of them suffice."""
    check_parameters(k, n)
    size = block_size(length, k)
    chosen = sorted(blocks)[:k]
    if len(chosen) < k:
        raise CodingError(f"{len(chosen)} blocks given, {k} needed")
    for index in chosen:
        if not 0 <= index < n:
            raise CodingError(f"block index {index} is outside 0..{n - 1}")
        if len(blocks[index]) != size:
            raise CodingError(f"block {index} is {len(blocks[index])} bytes, not {size}")
    if chosen == list(range(k)):
        primary: Sequence[bytes] = [blocks[i] for i in chosen]
    else:
        primary = _decoder(k, n).decode([blocks[i] for i in chosen], chosen)
    return b"".join(primary)[:length]
