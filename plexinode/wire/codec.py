"""msgpack encoding with strict unpack limits.

Every buffer from the network goes through :func:`unpack`, which never allocates more than the
limits allow: msgpack's unpacker checks declared string, binary, array and map lengths before it
allocates, and the buffer size caps the total. Any failure becomes :class:`DecodeError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import msgpack

from plexinode.errors import DecodeError


@dataclass(frozen=True, slots=True)
class Limits:
    """Caps applied while unpacking one buffer."""

    max_buffer: int
    max_str: int = 4096
    max_bin: int = 1 << 20
    max_array: int = 256
    max_map: int = 64


#: Limits for one datagram: it is at most 1200 bytes anyway.
DATAGRAM_LIMITS: Final = Limits(max_buffer=1200, max_str=512, max_bin=1200, max_array=128)
#: Limits for a stream frame or admin frame (the frame size cap is enforced before this).
FRAME_LIMITS: Final = Limits(max_buffer=1 << 20, max_str=64 * 1024, max_bin=1 << 20)


def pack(obj: Any) -> bytes:
    """Encode `obj` (ints, bytes, str, bool, None, float, lists, dicts)."""
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def int_size(n: int) -> int:
    """Bytes :func:`pack` spends on the integer `n` (its shortest form; `n` within
    ``[-2**63, 2**64)``): what a caller that must know a size without encoding adds up."""
    if n >= 0:
        if n <= 0x7F:
            return 1
        if n <= 0xFF:
            return 2
        if n <= 0xFFFF:
            return 3
        return 5 if n <= 0xFFFFFFFF else 9
    if n >= -32:
        return 1
    if n >= -(1 << 7):
        return 2
    if n >= -(1 << 15):
        return 3
    return 5 if n >= -(1 << 31) else 9


def bin_size(n: int) -> int:
    """Bytes :func:`pack` spends on `n` bytes of binary (``bin8``, ``bin16`` or ``bin32``)."""
    if n <= 0xFF:
        return 2 + n
    return (3 if n <= 0xFFFF else 5) + n


def str_size(n: int) -> int:
    """Bytes :func:`pack` spends on a string of `n` UTF-8 bytes (``fixstr`` to ``str32``)."""
    if n < 32:
        return 1 + n
    if n <= 0xFF:
        return 2 + n
    return (3 if n <= 0xFFFF else 5) + n


def unpack(data: bytes, limits: Limits) -> Any:
    """Decode one msgpack object that must fill `data` exactly."""
    if len(data) > limits.max_buffer:
        raise DecodeError(f"buffer of {len(data)} bytes exceeds {limits.max_buffer}")
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=True,
            max_str_len=limits.max_str,
            max_bin_len=limits.max_bin,
            max_array_len=limits.max_array,
            max_map_len=limits.max_map,
            max_ext_len=0,
        )
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
        raise DecodeError("malformed msgpack") from None
    except Exception as exc:  # msgpack raises a few more on hostile input
        raise DecodeError(f"malformed msgpack ({type(exc).__name__})") from None
