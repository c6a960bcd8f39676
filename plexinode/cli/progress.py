"""Progress of ``backup create`` and ``backup restore`` on stderr (docs/cli.md, "Progress").

The node sends progress frames while it works (plexinode.admin.reporting, at most four a
second); this module shows them, in one of three ways chosen once per command (`view_for`):

* ``--json``: each frame as one JSON object on its own line (`Progress.to_map`), so that a
  script reads stdout's one document and, if it likes, stderr's lines;
* stderr a terminal: one line redrawn in place (``\\r``, then erase to the end of the line):
  phase, percentage, a bar, bytes done of the total, rate, time left, bytes sent; erased when
  the command ends, so that the result follows on a clean line;
* stderr not a terminal (a log file, a pipe): a plain line at most every `PLAIN_INTERVAL`
  seconds, the first after that long, so that a short operation prints nothing and a long one
  leaves a trace a log can keep.

Ctrl-C while the node works ends the command with one line (`Interrupted`, exit 130) saying
that the node goes on with the work: closing the admin connection does not stop it.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Final, TextIO

from plexinode.cli.readable import duration, size
from plexinode.errors import PlexinodeError
from plexinode.shards.progress import BYTES, Progress, Throttle

#: Seconds between two plain progress lines at least (stderr not a terminal).
PLAIN_INTERVAL: Final = 5.0
#: Characters of the bar between its brackets.
BAR_WIDTH: Final = 20
JSON: Final = "json"
BAR: Final = "bar"
PLAIN: Final = "plain"
_ERASE: Final = "\r\x1b[K"


class Interrupted(PlexinodeError):
    """Ctrl-C while the node was working (exit 130; the message says what goes on)."""


def amount(progress: Progress) -> str:
    """How much is done, of how much: ``460.8 MiB / 1.0 GiB``, ``12 / 40 challenges``."""
    if progress.unit == BYTES:
        done = size(progress.done)
        return done if progress.total is None else f"{done} / {size(progress.total)}"
    done = str(progress.done) if progress.total is None else f"{progress.done} / {progress.total}"
    return f"{done} {progress.unit}"


def pieces(progress: Progress) -> list[str]:
    """The parts of a progress line after its percentage: amount, rate, time left, sent."""
    parts = [amount(progress)]
    if progress.rate is not None:
        if progress.unit == BYTES:
            parts.append(f"{size(int(progress.rate))}/s")
        else:
            parts.append(f"{progress.rate:.1f} {progress.unit}/s")
    if progress.eta_seconds is not None and progress.eta_seconds > 0:
        parts.append(f"ETA {duration(progress.eta_seconds)}")
    if progress.sent_bytes:
        parts.append(f"{size(progress.sent_bytes)} sent")
    return parts


def percent(progress: Progress) -> str:
    """``45%``, or empty without a total."""
    fraction = progress.fraction
    return "" if fraction is None else f"{int(fraction * 100)}%"


def plain_line(progress: Progress) -> str:
    """``backup: 45%, 460.8 MiB / 1.0 GiB, 12.3 MiB/s, ETA 40s, 1.4 GiB sent``."""
    share = percent(progress)
    return f"{progress.phase}: " + ", ".join(
        [share, *pieces(progress)] if share else pieces(progress)
    )


def bar_line(progress: Progress, width: int) -> str:
    """One terminal line of at most `width` characters:
    ``backup  45% [#########...........] 460.8 MiB / 1.0 GiB  12.3 MiB/s  ETA 40s  1.4 GiB sent``;
    on a narrow terminal the bar gives up the bytes sent beside it, then goes itself, then the
    line is cut."""
    head = f"{progress.phase} {percent(progress):>4}".rstrip()
    parts = pieces(progress)
    lines = []
    fraction = progress.fraction
    if fraction is not None:
        filled = int(fraction * BAR_WIDTH)
        bar = f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}]"
        lines.append(f"{head} {bar} {'  '.join(parts)}")
        if progress.sent_bytes:
            lines.append(f"{head} {bar} {'  '.join(parts[:-1])}")
    lines.append(f"{head} {'  '.join(parts)}")
    return next((line for line in lines if len(line) <= width), lines[-1][:width])


class ProgressView:
    """Shows the progress frames of one command on `stream` (see the module docstring).

    Args:
        stream: stderr.
        mode: `JSON`, `BAR` or `PLAIN`.
        clock: seconds, for the plain lines' interval.
        width: the terminal's width (default: asked of the terminal).
    """

    def __init__(
        self,
        stream: TextIO,
        mode: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        width: int | None = None,
    ) -> None:
        self.stream = stream
        self.mode = mode
        self._clock = clock
        self._width = width
        self._throttle = Throttle(PLAIN_INTERVAL, last=clock())
        self._drawn = False
        self._broken = False

    def show(self, progress: Progress) -> None:
        """Show one frame."""
        if self.mode == JSON:
            self._write(json.dumps(progress.to_map()) + "\n")
        elif self.mode == BAR:
            width = self._width or shutil.get_terminal_size().columns
            self._write(_ERASE + bar_line(progress, width - 1))
            self._drawn = True
        else:
            now = self._clock()
            if self._throttle.delay(now) == 0:
                self._throttle.sent(now)
                self._write(plain_line(progress) + "\n")

    def close(self) -> None:
        """Erase the bar, if one was drawn."""
        if self._drawn:
            self._write(_ERASE)
            self._drawn = False

    def _write(self, text: str) -> None:
        if self._broken:
            return
        try:
            self.stream.write(text)
            self.stream.flush()
        except OSError:  # stderr closed (a pipe whose reader left): the command goes on
            self._broken = True


def view_for(as_json: bool, stream: TextIO) -> ProgressView:
    """The view for a command: JSON lines with ``--json``, a bar on a terminal, else plain
    lines."""
    if as_json:
        return ProgressView(stream, JSON)
    return ProgressView(stream, BAR if stream.isatty() else PLAIN)


@contextmanager
def shown(as_json: bool, interrupted: str) -> Iterator[Callable[[Progress], None]]:
    """Show progress on stderr while the block runs (it is given the function to show a
    frame with); Ctrl-C in it raises `Interrupted` with `interrupted` as its line."""
    view = view_for(as_json, sys.stderr)
    try:
        yield view.show
    except KeyboardInterrupt:
        view.close()
        raise Interrupted(interrupted) from None
    finally:
        view.close()
