"""When a node checks its homes for repair, and how fast (plexinode.shards.repair_service)."""

from __future__ import annotations

import trio

from plexinode.errors import PlexinodeError
from plexinode.membership.beliefs import Died, Event, Joined, Left, MemberView, State
from plexinode.net.address import Address
from plexinode.shards.repair_plan import MemberState
from plexinode.shards.repair_service import (
    CHECK_INTERVAL,
    REPAIR_BURST,
    SETTLE,
    RepairService,
)
from plexinode.shards.repairing import RepairOutcome
from tests.unit.ids import nid

GRACE = 100.0


class FakeRepairer:
    def __init__(self) -> None:
        self.pace = None
        self.calls: list[tuple[bytes, float, frozenset]] = []
        self.outcomes: dict[bytes, RepairOutcome | Exception] = {}

    async def repair(self, owner, home, live, gone):  # type: ignore[no-untyped-def]
        self.calls.append((home, trio.current_time(), gone))
        outcome = self.outcomes.get(home, RepairOutcome("healthy"))
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


class FakeStore:
    def __init__(self, homes: list[bytes]) -> None:
        self._homes = homes

    async def homes(self) -> list[tuple[bytes, bytes, int]]:
        return [(b"o" * 32, home, 0) for home in self._homes]


def member(i: int, state: State, since: float) -> MemberView:
    return MemberView(nid(i), Address("10.0.0.1", 1), 1, state, since, {})


def service(repairer: FakeRepairer, homes: list[bytes], **kw) -> RepairService:
    members = [MemberState(nid(1), "alive", 0.0, "10.0.0.1"), MemberState(nid(2), "dead", 0.0, "h")]
    return RepairService(
        repairer,  # type: ignore[arg-type]
        FakeStore(homes),  # type: ignore[arg-type]
        members=lambda: members,
        grace=GRACE,
        **kw,
    )


async def test_a_round_checks_every_home_and_counts_the_backlog(autojump_clock) -> None:
    repairer = FakeRepairer()
    repairer.outcomes = {
        b"1": RepairOutcome("repaired", placed={3: nid(5)}, bytes_read=10, bytes_sent=5),
        b"2": RepairOutcome("not_elected"),
        b"3": PlexinodeError("boom"),
    }
    repairs = service(repairer, [b"1", b"2", b"3", b"4"])
    await trio.sleep(GRACE)
    await repairs.check()
    assert [home for home, _, _ in repairer.calls] == [b"1", b"2", b"3", b"4"]
    assert repairer.calls[0][2] == {nid(2)}  # dead for the grace: gone
    status = repairs.status()
    assert status["repair_backlog"] == 2
    assert status["repair_shares_placed"] == 1
    assert status["repair_repaired"] == 1
    assert status["repair_healthy"] == 1


async def test_pacing_keeps_to_the_rate_after_a_burst(autojump_clock) -> None:
    repairs = service(FakeRepairer(), [], rate=1000.0)
    assert repairs.repairer.pace == repairs.pace
    start = trio.current_time()
    await repairs.pace(REPAIR_BURST)  # within the burst: no wait
    assert trio.current_time() == start
    await repairs.pace(5000)
    assert trio.current_time() == start + 5.0
    assert repairs.status()["repair_bytes"] == REPAIR_BURST + 5000


async def test_deaths_are_checked_after_the_grace_departures_at_once(autojump_clock) -> None:
    repairer = FakeRepairer()
    send, receive = trio.open_memory_channel[Event](10)
    repairs = service(repairer, [b"1"], events=receive)
    async with trio.open_nursery() as nursery:
        await nursery.start(repairs.run)
        start = trio.current_time()
        await send.send(Died(member(2, State.DEAD, start)))
        await send.send(Joined(member(3, State.ALIVE, start)))  # no round
        await trio.sleep(GRACE + SETTLE + 1)
        assert [t - start for _, t, _ in repairer.calls] == [GRACE + SETTLE]
        await send.send(Left(member(4, State.LEFT, trio.current_time())))
        await trio.sleep(SETTLE + 1)
        assert len(repairer.calls) == 2
        await trio.sleep(CHECK_INTERVAL)  # and periodically
        assert len(repairer.calls) == 3
        nursery.cancel_scope.cancel()


async def test_without_events_rounds_are_periodic(autojump_clock) -> None:
    repairer = FakeRepairer()
    repairs = service(repairer, [b"1"])
    async with trio.open_nursery() as nursery:
        await nursery.start(repairs.run)
        repairs.schedule(trio.current_time() + 2 * CHECK_INTERVAL)  # later than due: no change
        await trio.sleep(CHECK_INTERVAL + 1)
        assert len(repairer.calls) == 1
        nursery.cancel_scope.cancel()
