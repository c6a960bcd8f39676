"""Progress of a long operation (a backup, a restore, a verify): what is reported, its rate and
time left, and how often it is worth telling anyone.

An operation reports a `Progress` as it goes (``done`` of ``total`` in its ``unit``) through a
`Report` callback it is handed; it never waits on whoever listens, and a report costs a few
attribute writes. Whoever listens times the reports (`RateEstimator`, fed the caller's clock:
nothing here reads a clock) and passes them on no more often than a `Throttle` allows: the
admin server sends at most a few progress frames a second to the CLI, which draws a bar, prints
a plain line every few seconds or a JSON line per frame (docs/cli.md).

The rate is measured over a moving window (`WINDOW_SECONDS`) rather than since the start, so it
follows a transfer that slows down or speeds up (the first seconds of a backup read from the
page cache, the last wait on the slowest holder), and the time left is what remains at that
rate. The window keeps at most `SAMPLES` points, however often reports arrive.

A new operation reports with one line: ``report(Progress("verify", done, total,
unit=CHALLENGES))``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from plexinode.errors import DecodeError

#: Units of ``done`` and ``total``.
BYTES: Final = "bytes"
CHALLENGES: Final = "challenges"
#: The phases reported today (a phase is free text of at most `MAX_NAME` characters).
BACKUP: Final = "backup"
RESTORE: Final = "restore"
VERIFY: Final = "verify"
#: Longest phase or unit name accepted from a frame.
MAX_NAME: Final = 32
_INF: Final = float("inf")
#: Seconds of reports the rate is measured over.
WINDOW_SECONDS: Final = 10.0
#: Points kept in that window at most (one per ``WINDOW_SECONDS / SAMPLES`` seconds).
SAMPLES: Final = 20


@dataclass(frozen=True, slots=True)
class Progress:
    """How far an operation is.

    Attributes:
        phase: what is being done (`BACKUP`, `RESTORE`, `VERIFY`).
        done: how much is done, in `unit`.
        total: how much there is in all, None when not known.
        unit: `BYTES` or `CHALLENGES`.
        sent_bytes: bytes sent to other nodes so far (a backup's shares).
        rate: `unit` per second lately, None until timed (`RateEstimator.timed`).
        eta_seconds: seconds left at that rate, None when unknown.
    """

    phase: str
    done: int
    total: int | None = None
    unit: str = BYTES
    sent_bytes: int = 0
    rate: float | None = None
    eta_seconds: float | None = None

    @property
    def fraction(self) -> float | None:
        """How much is done, from 0 to 1; None without a total (a total of 0 is all done)."""
        if self.total is None:
            return None
        if self.total <= 0:
            return 1.0
        return min(1.0, max(0.0, self.done / self.total))

    def to_map(self) -> dict[str, Any]:
        """The msgpack and JSON form (docs/protocol.md, docs/cli.md)."""
        return {
            "phase": self.phase,
            "unit": self.unit,
            "done": self.done,
            "total": self.total,
            "sent_bytes": self.sent_bytes,
            "rate": self.rate,
            "eta_seconds": self.eta_seconds,
        }

    @classmethod
    def from_map(cls, obj: object) -> Progress:
        """The progress in a frame; DecodeError when it is not a well-formed one."""
        if not isinstance(obj, Mapping):
            raise DecodeError("progress must be a map")
        return cls(
            phase=_name(obj, "phase", None),
            done=_count(obj, "done"),
            total=_optional_count(obj, "total"),
            unit=_name(obj, "unit", BYTES),
            sent_bytes=_count(obj, "sent_bytes", 0),
            rate=_seconds(obj, "rate"),
            eta_seconds=_seconds(obj, "eta_seconds"),
        )


def _name(obj: Mapping[Any, Any], key: str, default: str | None) -> str:
    value = obj.get(key, default)
    if not isinstance(value, str) or not 0 < len(value) <= MAX_NAME:
        raise DecodeError(f"progress {key} must be a name of 1-{MAX_NAME} characters")
    return value


def _count(obj: Mapping[Any, Any], key: str, default: int | None = None) -> int:
    value = obj.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise DecodeError(f"progress {key} must be a count")
    return value


def _optional_count(obj: Mapping[Any, Any], key: str) -> int | None:
    return None if obj.get(key) is None else _count(obj, key)


def _seconds(obj: Mapping[Any, Any], key: str) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value < _INF:
        raise DecodeError(f"progress {key} must be a non-negative number")
    return float(value)


#: What an operation is handed to report its progress with; it is called from the event
#: loop's thread (the admin server times reports on trio's clock), never from a worker thread.
Report = Callable[[Progress], None]


def ignore(progress: Progress) -> None:
    """The `Report` of an operation nobody watches."""


class RateEstimator:
    """The recent rate of one operation's reports, and its time left.

    Args:
        window: seconds the rate is measured over.
        samples: points kept in the window at most.
    """

    def __init__(self, window: float = WINDOW_SECONDS, samples: int = SAMPLES) -> None:
        if window <= 0 or samples < 2:
            raise ValueError("a rate needs a positive window and at least two samples")
        self.window = window
        self._spacing = window / samples
        self._points: deque[tuple[float, int]] = deque()
        self._latest: tuple[float, int] | None = None

    def observe(self, now: float, done: int) -> None:
        """`done` was reached at `now` (seconds on the caller's clock, never going back)."""
        self._latest = (now, done)
        if not self._points or now - self._points[-1][0] >= self._spacing:
            self._points.append((now, done))
        while len(self._points) > 1 and now - self._points[1][0] >= self.window:
            self._points.popleft()

    def rate(self) -> float | None:
        """Units per second over the window; None before two reports some time apart."""
        if self._latest is None:
            return None
        start, first = self._points[0]
        now, done = self._latest
        if now <= start:
            return None
        return max(0, done - first) / (now - start)

    def timed(self, now: float, progress: Progress) -> Progress:
        """`progress`, observed at `now`, with its rate and time left."""
        self.observe(now, progress.done)
        rate = self.rate()
        eta = None
        if progress.total is not None:
            left = max(0, progress.total - progress.done)
            if left == 0:
                eta = 0.0
            elif rate:
                eta = left / rate
        return replace(progress, rate=rate, eta_seconds=eta)


class Throttle:
    """At most one message every `interval` seconds.

    Args:
        interval: seconds between two messages at least (0: no limit).
        last: when the last one went (None: the first may go at once).
    """

    def __init__(self, interval: float, last: float | None = None) -> None:
        if interval < 0:
            raise ValueError("a throttle's interval cannot be negative")
        self.interval = interval
        self._last = last

    def delay(self, now: float) -> float:
        """Seconds from `now` until the next message may go (0: now)."""
        if self._last is None:
            return 0.0
        return max(0.0, self._last + self.interval - now)

    def sent(self, now: float) -> None:
        """A message went at `now`."""
        self._last = now
