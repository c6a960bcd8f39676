"""When this node checks the homes it holds for repair, and how fast it repairs.

`RepairService` runs in the node beside `service.ShardService`. It checks every (owner, home)
this node holds shares of (`repairing.Repairer.repair`, which repairs only what needs it and
only where this node is the elected repairer):

* when membership reports a member dead, once the restart grace has passed since it was seen
  dead (a member that stopped and did not come back within the grace is reported dead when the
  grace ends: checked at once then); a member that left, at once (after `SETTLE` seconds, so
  that a burst of departures makes one round);
* and every `CHECK_INTERVAL` seconds, for what an event missed (an audit, a lost record).

A member that comes back within the grace is live again when the check runs, so a partition
that heals in time causes no repair traffic. Rounds run one at a time, homes one at a time,
and a repair's reads and puts are paced to `rate` bytes a second (`REPAIR_RATE`).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Final

import trio

from plexinode.errors import PlexinodeError
from plexinode.membership.beliefs import Died, Event, Left
from plexinode.shards.repair_plan import MemberState, repair_view
from plexinode.shards.repairing import Repairer
from plexinode.shards.store import ShareStore

log = logging.getLogger(__name__)

#: The periodic check of every home held.
CHECK_INTERVAL: Final = 3600.0
#: Wait after an event before a round, so that several departures make one round.
SETTLE: Final = 5.0
#: Bytes a second one node's repairs read and send (a quarter of a gigabit link).
REPAIR_RATE: Final = 32 << 20
#: Bytes a repair may run ahead of its rate.
REPAIR_BURST: Final = 16 << 20


class RepairService:
    """Triggers and paces repairs (see the module docstring).

    Args:
        repairer: repairs one home.
        store: the share store (the homes held).
        members: the membership view now.
        grace: ``membership.restart_grace``.
        events: membership's events (None: periodic checks only).
        rate: bytes a second.
    """

    def __init__(
        self,
        repairer: Repairer,
        store: ShareStore,
        *,
        members: Callable[[], Sequence[MemberState]],
        grace: float,
        events: trio.MemoryReceiveChannel[Event] | None = None,
        rate: float = REPAIR_RATE,
    ) -> None:
        self.repairer = repairer
        repairer.pace = self.pace
        self._store = store
        self._members = members
        self._grace = grace
        self._events = events
        self._rate = rate
        self._next_free = float("-inf")
        self._due: float | None = None
        self._wake = trio.Event()
        self.stats: Counter[str] = Counter()
        self.backlog = 0

    async def pace(self, size: int) -> None:
        """Wait as long as `size` more bytes need to keep within the rate."""
        now = trio.current_time()
        self._next_free = max(self._next_free, now - REPAIR_BURST / self._rate) + size / self._rate
        self.stats["repair_bytes"] += size
        if self._next_free > now:
            await trio.sleep(self._next_free - now)

    def schedule(self, at: float) -> None:
        """Run a round at `at` (membership's clock), or sooner if one is due sooner."""
        if self._due is None or at < self._due:
            self._due = at
            self._wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Watch membership and check the homes held, until cancelled."""
        async with trio.open_nursery() as nursery:
            if self._events is not None:
                nursery.start_soon(self._watch, self._events)
            self.schedule(trio.current_time() + CHECK_INTERVAL)
            task_status.started()
            while True:
                assert self._due is not None
                with trio.move_on_at(self._due):
                    await self._wake.wait()
                self._wake = trio.Event()
                if trio.current_time() >= self._due:
                    self._due = trio.current_time() + CHECK_INTERVAL
                    await self.check()

    async def _watch(self, events: trio.MemoryReceiveChannel[Event]) -> None:
        async for event in events:
            now = trio.current_time()
            if isinstance(event, Left):
                self.schedule(now + SETTLE)
            elif isinstance(event, Died):
                self.schedule(max(now, event.member.since + self._grace) + SETTLE)

    async def check(self) -> None:
        """One round: every home held, one at a time."""
        self.stats["repair_rounds"] += 1
        backlog = 0
        for owner, home, _ in await self._store.homes():
            live, gone = repair_view(self._members(), trio.current_time(), self._grace)
            try:
                outcome = await self.repairer.repair(owner, home, live, gone)
            except PlexinodeError as exc:
                log.warning("repair of %s failed: %s", home.hex(), exc)
                backlog += 1
                continue
            self.stats[f"repair_{outcome.state}"] += 1
            if outcome.state not in ("healthy", "repaired", "no_manifest"):
                backlog += 1
            if outcome.placed:
                log.info(
                    "repair: %s of %s: %d shares placed, %d bytes read, %d sent",
                    outcome.state,
                    home.hex(),
                    len(outcome.placed),
                    outcome.bytes_read,
                    outcome.bytes_sent,
                )
                self.stats["repair_shares_placed"] += len(outcome.placed)
        self.backlog = backlog

    def status(self) -> dict[str, Any]:
        """What ``status`` shows under ``shards``: the backlog and the counters."""
        return {"repair_backlog": self.backlog, **dict(sorted(self.stats.items()))}
