"""How the text output shows values to a person: sizes, durations, times, short node IDs, and
tables that fit a terminal.

``--json`` output never goes through here: it keeps the full values (bytes, seconds, Unix
times, whole node IDs). Everything here is plain computation on its arguments (the current
time included), so that the renderings are tested exactly.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Final

#: The width every table fits: wide enough for an address, a state and a few tags beside a
#: short ID, narrow enough for a terminal split in two.
WIDTH: Final = 100
#: A short node ID is this many characters of the full one (40 bits: two IDs among a few
#: thousand share one by chance about once in a million), more when two shown IDs share them.
SHORT_ID: Final = 8
#: A column cut to fit the width keeps at least this many characters while another named
#: column can give way instead.
MIN_CUT: Final = 16
#: Times further back than this are shown as a local date and time rather than "... ago".
RECENT: Final = 7 * 86_400
_UNITS: Final = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
_ELLIPSIS: Final = "…"


def quoted(text: str, limit: int = 70) -> str:
    """`text` quoted for an error line, cut (saying how long it was) when over `limit`."""
    if len(text) <= limit:
        return repr(text)
    return repr(text[: limit - 6]) + f"... ({len(text)} characters)"


def size(n: int) -> str:
    """Bytes in binary units, one decimal: ``512 B``, ``1.5 KiB``, ``10.0 GiB``."""
    if n < 1024:
        return f"{n} B"
    value = float(n)
    unit = 0
    while value >= 1024 and unit < len(_UNITS) - 1:
        value /= 1024
        unit += 1
    if round(value, 1) >= 1024 and unit < len(_UNITS) - 1:
        value /= 1024
        unit += 1
    return f"{value:.1f} {_UNITS[unit]}"


def duration(seconds: float) -> str:
    """A duration in its two largest units, rounded down: ``45s``, ``3m12s``, ``2h59m``,
    ``3d4h`` (whole units alone: ``2h``)."""
    total = max(0, int(seconds))
    if total < 60:
        return f"{total}s"
    for unit, size_s, small, small_s in (
        ("d", 86_400, "h", 3_600),
        ("h", 3_600, "m", 60),
        ("m", 60, "s", 1),
    ):
        if total >= size_s:
            big, rest = divmod(total, size_s)
            rest //= small_s
            return f"{big}{unit}{rest}{small}" if rest else f"{big}{unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def local_time(then: float) -> str:
    """A Unix time as the local date and time, to the second: ``2024-05-01 14:03:05``."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(then))


def ago(then: float, now: float) -> str:
    """How long ago `then` was: ``just now``, ``12 s ago``, ``3 min ago``, ``2h59m ago``;
    a local date and time beyond :data:`RECENT`, and ``in ...`` for a time ahead of `now`
    (another machine's clock)."""
    delta = now - then
    if abs(delta) >= RECENT:
        return local_time(then)
    if -1 < delta < 1:
        return "just now"
    seconds = abs(delta)
    if seconds < 60:
        text = f"{int(seconds)} s"
    elif seconds < 3_600:
        text = f"{int(seconds // 60)} min"
    else:
        text = duration(seconds)
    return f"{text} ago" if delta > 0 else f"in {text}"


def short_ids(ids: Iterable[str], minimum: int = SHORT_ID) -> dict[str, str]:
    """Each ID's short form: its first `minimum` characters, or as many more as it takes for
    the shown IDs to stay distinct (one length for all, so that they line up)."""
    distinct = set(ids)
    longest = max((len(i) for i in distinct), default=0)
    length = minimum
    while length < longest and len({i[:length] for i in distinct}) < len(distinct):
        length += 1
    return {i: i[:length] for i in distinct}


def table(
    rows: Sequence[Sequence[str]],
    headers: Sequence[str],
    *,
    width: int = WIDTH,
    shrink: Sequence[int] = (),
) -> str:
    """Left-aligned columns two spaces apart, within `width` characters.

    A cell may hold several lines (a member's tags, one per line): its row takes as many
    lines. When the table is wider than `width`, the columns named in `shrink` (indices; by
    default the last one) are narrowed, in that order, and their longer lines are cut with an
    ellipsis; ``--json`` has the full values.
    """
    grid = [[cell.split("\n") for cell in row] for row in [list(headers), *rows]]
    widths = [max(len(line) for row in grid for line in row[i]) for i in range(len(headers))]
    shrinkable = list(shrink) or [len(headers) - 1]
    excess = sum(widths) + 2 * (len(widths) - 1) - width
    # First each column named, in order, down to a width that still reads (MIN_CUT); then, if
    # that is not enough, the widest of them down to their headers.
    for i in shrinkable:
        take = min(excess, widths[i] - max(MIN_CUT, len(headers[i])))
        if take > 0:
            widths[i] -= take
            excess -= take
    while excess > 0:
        narrowable = [i for i in shrinkable if widths[i] > max(len(headers[i]), 2)]
        if not narrowable:
            break  # nothing left to take: the table is wider than asked rather than unreadable
        widest = max(narrowable, key=lambda i: widths[i])
        widths[widest] -= 1
        excess -= 1
    lines = []
    for row in grid:
        height = max(len(cell) for cell in row)
        for n in range(height):
            parts = [
                _fit(cell[n] if n < len(cell) else "", w)
                for cell, w in zip(row, widths, strict=True)
            ]
            lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def _fit(text: str, width: int) -> str:
    if len(text) > width:
        return text[: width - 1] + _ELLIPSIS
    return text.ljust(width)
