"""Durations and sizes as people write them: ``500ms``, ``15m``, ``64KiB``, ``10GB``."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from fractions import Fraction
from typing import Final

_DURATION_UNITS: Final[tuple[tuple[str, int], ...]] = (
    ("d", 86_400),
    ("h", 3_600),
    ("m", 60),
    ("s", 1),
)
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_DURATION_RE: Final = re.compile(
    rf"\s*(?P<number>{_NUMBER})\s*(?P<unit>ms|s|m|h|d)?\s*", re.ASCII | re.IGNORECASE
)
_DURATION_HELP: Final = "expected a number with a unit: ms, s, m, h or d (e.g. 500ms, 30s, 15m)"


def parse_duration(text: str) -> float:
    """Parse a duration such as ``500ms``, ``30s``, ``15m``, ``24h``, ``7d`` into seconds.

    A bare number is seconds. Units are case-insensitive; decimals are allowed (``1.5h``).

    Args:
        text: the duration as written by a person.

    Returns:
        The duration in seconds.

    Raises:
        ValueError: the text is not a duration, or is negative or infinite.
    """
    match = _DURATION_RE.fullmatch(text)
    if match is None:
        raise ValueError(f"invalid duration {text!r}: {_DURATION_HELP}")
    number = float(match["number"])
    unit = (match["unit"] or "s").lower()
    seconds = number / 1000 if unit == "ms" else number * dict(_DURATION_UNITS)[unit]
    if not math.isfinite(seconds):
        raise ValueError(f"invalid duration {text!r}: too large")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest exact text form of a duration: ``2s``, ``500ms``, ``15m``, ``7d``.

    Whole multiples of a day, hour, minute, second or millisecond use that unit; anything else
    is written in seconds with every digit needed. `parse_duration` of the result is exactly
    `seconds`.

    Raises:
        ValueError: `seconds` is negative, infinite or NaN.
    """
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"cannot format duration {seconds!r}: must be finite and >= 0")
    seconds = float(seconds)
    if seconds == 0:
        return "0s"
    for unit, factor in _DURATION_UNITS:
        count = seconds / factor
        if count.is_integer() and count * factor == seconds:
            return f"{int(count)}{unit}"
    millis = seconds * 1000
    if millis.is_integer() and millis / 1000 == seconds:
        return f"{int(millis)}ms"
    return f"{seconds!r}s"


_SIZE_UNITS: Final[Mapping[str, int]] = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 1 << 10,
    "mib": 1 << 20,
    "gib": 1 << 30,
    "tib": 1 << 40,
}
# Largest first, so that format_size picks the biggest unit that divides exactly.
_SIZE_FORMAT_UNITS: Final = (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10))
_SIZE_RE: Final = re.compile(r"\s*(?P<number>\d+(?:\.\d+)?|\.\d+)\s*(?P<unit>[a-z]*)\s*", re.I)
_SIZE_HELP: Final = (
    "expected a number of bytes, optionally with a unit: KiB, MiB, GiB, TiB, KB, MB, GB"
)


def parse_size(text: str) -> int:
    """Parse a size such as ``512``, ``64KiB``, ``10MiB``, ``1.5GiB`` or ``10MB`` into bytes.

    Binary units (KiB, MiB, GiB, TiB) are powers of 1024, decimal ones (KB, MB, GB, TB) powers
    of 1000; units are case-insensitive. The result must be a whole number of bytes.

    Raises:
        ValueError: the text is not a size, or is not a whole number of bytes.
    """
    match = _SIZE_RE.fullmatch(text)
    if match is None:
        raise ValueError(f"invalid size {text!r}: {_SIZE_HELP}")
    unit = match["unit"].lower()
    factor = _SIZE_UNITS.get(unit)
    if factor is None:
        raise ValueError(f"invalid size {text!r}: unknown unit {match['unit']!r}; {_SIZE_HELP}")
    value = Fraction(match["number"]) * factor
    if value.denominator != 1:
        raise ValueError(f"invalid size {text!r}: not a whole number of bytes")
    return int(value)


def format_size(n: int) -> str:
    """The exact text form of a size: the largest binary unit that divides it (``1MiB``).

    Sizes that are not a multiple of 1 KiB are written in bytes (``1000B``). `parse_size` of the
    result is exactly `n`.

    Raises:
        ValueError: `n` is negative.
    """
    if n < 0:
        raise ValueError(f"cannot format size {n!r}: must be >= 0")
    for unit, factor in _SIZE_FORMAT_UNITS:
        if n and n % factor == 0:
            return f"{n // factor}{unit}"
    return f"{n}B"
