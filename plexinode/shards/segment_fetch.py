"""A restore's fetch of one segment: k verified-later blocks from k holders, at once.

For each segment the restore pipeline asks for k blocks (`restore_pipeline.Fetch`). The
segment's home has a `fetch_plan.FetchPlan`; its k best holders (by time, weighed by the fetches
each has in flight) are asked at the same time, one block each, over the restore's streams
(`restore_streams.RestoreStreams`). A holder that fails is not asked again in this restore (the
share index may have another holder, which the next round picks); a holder that answers
``busy`` (its read budget for this node is spent for now) is not a failure: it is charged
`BUSY_WAIT` in the plan's timing so the plan turns to holders with budget left, and asked again;
a segment that meets ``busy`` in more than one round waits `BUSY_WAIT` first, and after
`BUSY_RETRIES` such answers the holder counts as failed, so one that is always busy slows a
restore but cannot stall it. Fewer than k shares reachable raises
`restore_pipeline.SegmentUnavailable`.

A block that fails its root comes back as an excluded share index (`restore_pipeline`): the
holder that served it counts as failed, and the index is asked of its other holders if it has
any (a repair may have placed it twice, or a holder that lies may still hold a copy of it).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

import trio

from plexinode.errors import PlexinodeError
from plexinode.identity import NodeId
from plexinode.net.streams import STREAM_FAILURES
from plexinode.shards import fetching, messages
from plexinode.shards.fetch_plan import FetchPlan
from plexinode.shards.manifest import SegmentInfo
from plexinode.shards.restore_pipeline import SegmentUnavailable
from plexinode.shards.restore_streams import RestoreStreams

log = logging.getLogger(__name__)

#: What a ``busy`` answer costs a holder in the plan's timing, and how long a segment that
#: meets ``busy`` again waits before asking.
BUSY_WAIT: Final = 0.1
#: ``busy`` answers one segment takes from a holder before that holder counts as failed.
BUSY_RETRIES: Final = 50
#: Segments whose holders are remembered, for a block found corrupt after the fetch: more than
#: the restore pipeline decodes at once.
REMEMBERED: Final = 64


def _busy(exc: BaseException) -> bool:
    """Whether a fetch failed only because the holder is busy (try it again later)."""
    return isinstance(exc, fetching.NotHeld) and exc.reason == messages.Reason.BUSY


class SegmentFetcher:
    """The restore pipeline's `fetch` (see the module docstring).

    Args:
        plans: each home's fetch plan.
        pool: the restore's streams.
        k: blocks a segment needs.
    """

    def __init__(self, plans: Mapping[bytes, FetchPlan], pool: RestoreStreams, k: int) -> None:
        self._plans = plans
        self._pool = pool
        self._k = k
        # Segment index -> share index -> the holder that served it, for the latest segments.
        self._served: OrderedDict[int, dict[int, bytes]] = OrderedDict()

    async def __call__(
        self, index: int, info: SegmentInfo, excluded: frozenset[int]
    ) -> dict[int, bytes]:
        """k blocks of segment `index`, by share index (`excluded`: shares not to ask for)."""
        segment = _Segment(self._plans[info.home], index, info)
        served = self._served.pop(index, {})
        for share in excluded & served.keys():
            segment.plan.failed(served[share])  # it served a corrupt block: not its share
        # Shares excluded whose holder is not known any more stay excluded.
        skip = excluded - served.keys()
        rounds_busy = 0
        while len(segment.blocks) < self._k:
            chosen = [c for c in segment.plan.choose(self._k, skip) if c[0] not in segment.blocks]
            if not chosen or len(chosen) + len(segment.blocks) < self._k:
                raise SegmentUnavailable(f"segment {index}: fewer than k shares reachable")
            before = segment.busy
            async with trio.open_nursery() as nursery:
                for share, holder in chosen[: self._k - len(segment.blocks)]:
                    nursery.start_soon(self._one, segment, share, holder)
            if segment.busy > before:
                rounds_busy += 1
                if rounds_busy > 1:
                    await trio.sleep(BUSY_WAIT)
        self._served[index] = segment.served
        while len(self._served) > REMEMBERED:
            self._served.popitem(last=False)
        return segment.blocks

    async def _one(self, segment: _Segment, share: int, holder: bytes) -> None:
        plan = segment.plan
        started = trio.current_time()
        plan.started(holder)
        try:
            block = await self._pool.fetch(NodeId(holder), segment.info.identity, share)
        except (PlexinodeError, *STREAM_FAILURES) as exc:
            if _busy(exc):
                segment.busy += 1
                if segment.busy <= BUSY_RETRIES:
                    plan.measured(holder, BUSY_WAIT)
                    return
            log.info("restore: share %d of segment %d: %s", share, segment.index, exc)
            plan.failed(holder)  # the share may have another holder
            return
        finally:
            plan.finished(holder)
        segment.blocks[share] = block
        segment.served[share] = holder
        plan.measured(holder, trio.current_time() - started)


@dataclass(slots=True)
class _Segment:
    """One segment's fetch under way."""

    plan: FetchPlan
    index: int
    info: SegmentInfo
    blocks: dict[int, bytes] = field(default_factory=dict)
    served: dict[int, bytes] = field(default_factory=dict)
    busy: int = 0
