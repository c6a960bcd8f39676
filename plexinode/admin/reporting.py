"""Progress frames: how a long admin command (``backup_create``, ``backup_restore``) tells the
CLI how far it is, on the connection that will carry its response.

A command that reports progress is registered as a `Reporting` handler: it is given its
arguments and a `plexinode.shards.progress.Report` to call as it goes. When the request asked
for progress (``"progress": true``), the server runs one `ProgressFrames` beside the command:

* ``report`` (called by the command, never blocking it) times the report
  (`progress.RateEstimator`, on trio's clock) and keeps it as the one pending frame, replacing
  any that was not sent yet: memory is one frame, whatever the command reports;
* the sending task sends the pending frame, then waits out `progress.Throttle`'s interval
  (`FRAME_INTERVAL`) before the next, so the CLI gets at most a few frames a second;
* when the command returns, the last report still pending is sent at once, then the server
  sends the response: the last frame before a response shows where the command ended.

A CLI that reads slowly (a stalled terminal, a paused pipe) only holds up the sending task in
``send_all``; the command goes on, reports replace the pending frame (counted in ``replaced``).
A CLI that goes away (Ctrl-C) breaks the connection: the sending task stops, reports are
dropped, and the command still runs to its end in the node, as it did before progress existed;
its response then has nowhere to go.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import trio

from plexinode.admin.framing import frame
from plexinode.shards.progress import Progress, RateEstimator, Report, Throttle

log = logging.getLogger(__name__)

#: Seconds between two progress frames at least: four a second redraw a bar smoothly, and
#: cost the node nothing next to the work they report.
FRAME_INTERVAL: Final = 0.25


@dataclass(frozen=True, slots=True)
class Reporting:
    """A command that reports progress: ``run(args, report)`` returns its result."""

    run: Callable[[dict[str, Any], Report], Awaitable[Any]]


class ProgressFrames:
    """The progress frames of one request (see the module docstring).

    Args:
        stream: the connection the response will go on.
        interval: seconds between two frames at least.
    """

    def __init__(self, stream: trio.abc.SendStream, interval: float = FRAME_INTERVAL) -> None:
        self._stream = stream
        self._throttle = Throttle(interval)
        self._rates = RateEstimator()
        self._pending: Progress | None = None
        self._wake = trio.Event()
        self._finished = trio.Event()
        self.sent = 0
        self.replaced = 0
        self.broken = False

    def report(self, progress: Progress) -> None:
        """Keep `progress` as the next frame to send (the command's `Report`)."""
        if self.broken:
            return
        if self._pending is not None:
            self.replaced += 1
        self._pending = self._rates.timed(trio.current_time(), progress)
        self._wake.set()

    def finish(self) -> None:
        """The command returned: send what is pending now, then stop."""
        self._finished.set()
        self._wake.set()

    async def run(self) -> None:
        """Send frames until `finish` (the task beside the command)."""
        try:
            while True:
                if self._pending is None:
                    if self._finished.is_set():
                        return
                    self._wake = trio.Event()
                    await self._wake.wait()
                    continue
                delay = self._throttle.delay(trio.current_time())
                if delay > 0 and not self._finished.is_set():
                    with trio.move_on_after(delay):
                        await self._finished.wait()
                    continue
                progress, self._pending = self._pending, None
                self._throttle.sent(trio.current_time())
                await self._stream.send_all(frame({"progress": progress.to_map()}))
                self.sent += 1
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            # The CLI went away: the command goes on without anyone watching.
            log.debug("admin: progress frames stopped, the client left")
            self.broken = True
            self._pending = None
