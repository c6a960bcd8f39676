"""The membership service's task starter: tasks start until its nursery is cancelled, then
requests and tasks are dropped and counted instead of failing on a closed nursery."""

from __future__ import annotations

import collections

import trio
import trio.testing

from plexinode.membership.tasks import DROPPED_STOPPING, Tasks


async def test_tasks_start_until_the_nursery_is_cancelled_then_are_counted() -> None:
    stats: collections.Counter[str] = collections.Counter()
    tasks = Tasks(stats)
    ran: list[int] = []

    async def work(n: int) -> None:
        ran.append(n)

    async with trio.open_nursery() as nursery:
        tasks.open(nursery)
        assert not tasks.stopping
        assert not tasks.drop_if_stopping()
        assert tasks.start_soon(work, 1)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
        tasks.close()  # what the service's own task does when it is cancelled
    # The nursery is closed now: trio would refuse a task ("closed to new arrivals").
    assert tasks.stopping
    assert not tasks.start_soon(work, 2)
    assert tasks.drop_if_stopping()
    assert ran == [1]
    assert stats[DROPPED_STOPPING] == 2
