"""The driver of ``backup verify``: the plan's challenges sent to the holders, their answers
reported back.

`verify` builds a `verify_plan.VerifyPlan` (which shares of which segments to challenge, from
a fresh seed) and challenges the holders in parallel, at most `PARALLEL_HOLDERS` at once: one
``shards/1`` stream per holder, its challenges one after another on it, each under its deadline
(`fetching.challenge`; reaching the holder under `deadlines.CONNECT_SECONDS`). A holder that
cannot be reached, or whose stream breaks or stalls, fails every challenge not yet answered
(``unreachable``); one that answers something that is not a proof fails them as
``wrong_proof``; a ``shard-reply`` refusing one challenge (``not_held``, ``busy``) fails that
one and the holder is asked the next. The plan then says what each segment has left.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Final

import trio

from plexinode.errors import DecodeError, PlexinodeError
from plexinode.identity import NodeId
from plexinode.net.streams import STREAM_FAILURES
from plexinode.shards import fetching
from plexinode.shards.manifest import Manifest
from plexinode.shards.progress import CHALLENGES, VERIFY, Progress, Report, ignore
from plexinode.shards.verify_plan import (
    SEED_BYTES,
    Challenge,
    Outcome,
    VerifyPlan,
    VerifyReport,
)

log = logging.getLogger(__name__)

#: Holders challenged at once. Each is one stream and a few requests of kilobytes, so this
#: bounds the streams (and the holders' read budgets) a verify holds, not its time: n = 10
#: holders are done in about two rounds of one holder's challenges.
PARALLEL_HOLDERS: Final = 8

#: Opens a ``shards/1`` stream to a holder (and closes it on exit).
Connect = Callable[[NodeId], AbstractAsyncContextManager[trio.abc.Channel[bytes]]]


async def verify(
    manifest: Manifest,
    holders: Mapping[bytes, Mapping[int, bytes]],
    *,
    owner: bytes,
    connect: Connect,
    seed: bytes | None = None,
    parallel: int = PARALLEL_HOLDERS,
    progress: Report = ignore,
) -> VerifyReport:
    """Challenge every holder of `manifest`'s backup (see the module docstring).

    Args:
        manifest: the backup's manifest.
        holders: for each home, share index -> holder (raw node ID).
        owner: the owner's raw node ID (whose shares are asked about).
        connect: opens a stream to a holder.
        seed: the plan's seed (`verify_plan.SEED_BYTES` bytes); by default drawn fresh.
        parallel: holders challenged at once.
        progress: told the challenges decided (answered, refused, or given up with their
            holder) of all.
    """
    plan = VerifyPlan(manifest, holders, os.urandom(SEED_BYTES) if seed is None else seed)
    limiter = trio.CapacityLimiter(parallel)
    by_holder = plan.by_holder()
    counter = _Counter(sum(len(c) for c in by_holder.values()), progress)
    async with trio.open_nursery() as nursery:
        for node, challenges in by_holder.items():
            holder = _Holder(plan, owner, connect, limiter, counter)
            nursery.start_soon(holder.run, node, challenges)
    report = plan.report()
    log.info(
        "verify %s: %d of %d shares at least on every segment (%d holders)",
        manifest.backup_id.hex(),
        report.min_available_shares,
        report.n,
        len(report.holders),
    )
    return report


class _Counter:
    """Challenges decided of all, reported on each change."""

    def __init__(self, total: int, progress: Report) -> None:
        self.total = total
        self.done = 0
        self.progress = progress

    def add(self, count: int = 1) -> None:
        self.done += count
        self.progress(Progress(VERIFY, self.done, self.total, unit=CHALLENGES))


class _Holder:
    def __init__(
        self,
        plan: VerifyPlan,
        owner: bytes,
        connect: Connect,
        limiter: trio.CapacityLimiter,
        counter: _Counter,
    ) -> None:
        self.plan = plan
        self.owner = owner
        self.connect = connect
        self.limiter = limiter
        self.counter = counter

    async def run(self, node: bytes, challenges: list[Challenge]) -> None:
        """One holder's challenges, on one stream."""
        plan, name = self.plan, NodeId(node).short()
        decided = 0
        async with self.limiter:
            try:
                async with self.connect(NodeId(node)) as stream:
                    for challenge in challenges:
                        try:
                            proof = await fetching.challenge(
                                stream,
                                self.owner,
                                challenge.segment,
                                challenge.index,
                                leaves=challenge.leaves,
                                nonce=challenge.nonce,
                            )
                        except fetching.NotHeld as exc:
                            log.info("verify: %s refused share %d: %s", name, challenge.index, exc)
                            plan.refused(challenge, exc.reason)
                            decided += 1
                            self.counter.add()
                            continue
                        decided += 1
                        self.counter.add()
                        if not plan.answered(challenge, proof):
                            log.warning(
                                "verify: %s failed a challenge of share %d", name, challenge.index
                            )
            except DecodeError as exc:
                log.warning("verify: %s answered out of protocol: %s", name, exc)
                plan.failed(node, Outcome.WRONG, str(exc))
            except (PlexinodeError, *STREAM_FAILURES) as exc:
                detail = str(exc) or "no answer in time"
                log.info("verify: %s did not answer: %s", name, detail)
                plan.failed(node, Outcome.UNREACHABLE, detail)
        if decided < len(challenges):
            self.counter.add(len(challenges) - decided)
