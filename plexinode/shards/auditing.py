"""Holders auditing each other: the challenges `audit_schedule` picks, sent and checked.

`Auditor.run` runs in the node beside the repairs (`service.ShardService.start_repairs`). Every
`REFRESH_INTERVAL` it reads what this node holds: each (owner, home), the manifest it keeps of
the home (the owner signed it: the segments, their block sizes and roots), the bytes it stores
of it, and the home's co-holders from their provider records. Then, paced by the budget
(`audit_schedule.AuditScheduler.ready_at`), it sends one challenge at a time: a fresh nonce
drawn here, the leaves it names (`audit.challenged_leaves`), ``shard-challenge`` to the
co-holder (reaching it and its answer within `deadlines.CONNECT_SECONDS` more than the
challenge's own deadline, `fetching.challenge`), and the proof checked against the root in
the manifest kept here (`audit.check_proof`): nothing the co-holder says is trusted.

What an answer comes to:

* a valid proof: ``audits_passed``;
* a wrong proof, an answer out of protocol, or ``not_held`` for a share its record names:
  ``audits_failed``; the co-holder is held failed for the home (`failed_holders`, decaying,
  see `audit_schedule`) and `on_failure` is called (the repair service runs a round soon, in
  which the failed holder's shares do not count);
* ``busy`` or any other refusal: ``audits_refused`` (its read limit, not a failure);
* no stream, a broken one, or no answer in time: ``audits_unreachable``. Membership, not an
  audit, decides when a holder that does not answer is gone.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable
from typing import Any, Final

import trio

from plexinode.errors import DecodeError, PlexinodeError
from plexinode.identity import NodeId
from plexinode.net.streams import STREAM_FAILURES
from plexinode.shards import audit, deadlines, fetching, pipeline
from plexinode.shards.audit_schedule import AuditPick, AuditScheduler, HeldHome
from plexinode.shards.manifest import Manifest, ManifestError, SegmentInfo
from plexinode.shards.messages import Reason
from plexinode.shards.repairing import Lookup, Opener
from plexinode.shards.store import ShareStore

log = logging.getLogger(__name__)

#: How often the homes held and their co-holders are read again.
REFRESH_INTERVAL: Final = 3600.0
#: Share of the bytes stored that audits may make co-holders read a day (`audit.AuditBudget`).
AUDIT_FRACTION: Final = audit.DAILY_FRACTION


class Auditor:
    """Audits the co-holders of the homes this node holds (see the module docstring).

    Args:
        node_id: this node.
        store: its share store.
        holders: the provider records of (owner, home): index -> nodes.
        open_stream: a ``shards/1`` stream to a member.
        on_failure: called after each failed audit.
        fraction: of the bytes stored, what audits may read a day.
        refresh: seconds between readings of the homes held.
        nonces: draws a challenge's nonce (`audit.NONCE_BYTES` bytes).
    """

    def __init__(
        self,
        *,
        node_id: NodeId,
        store: ShareStore,
        holders: Lookup,
        open_stream: Opener,
        on_failure: Callable[[], None],
        fraction: float = AUDIT_FRACTION,
        refresh: float = REFRESH_INTERVAL,
        nonces: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.node_id = node_id
        self._store = store
        self._holders = holders
        self._open = open_stream
        self._on_failure = on_failure
        self._fraction = fraction
        self._refresh = refresh
        self._nonces = nonces
        self.scheduler = AuditScheduler.start(0.0, fraction)
        self._segments: dict[tuple[bytes, bytes], list[SegmentInfo]] = {}
        self.stats: Counter[str] = Counter()

    def failed_holders(self, owner: bytes, home: bytes) -> frozenset[NodeId]:
        """The holders of `owner`'s `home` that failed an audit recently."""
        return self.scheduler.failed_holders(owner, home, trio.current_time())

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Audit, paced by the budget, until cancelled."""
        self.scheduler = AuditScheduler.start(trio.current_time(), self._fraction)
        task_status.started()
        refreshed = float("-inf")
        while True:
            now = trio.current_time()
            if now - refreshed >= self._refresh:
                await self.refresh()
                refreshed = now
            ready = self.scheduler.ready_at(now)
            due = refreshed + self._refresh
            if ready is None or ready > now:
                await trio.sleep_until(due if ready is None else min(ready, due))
                continue
            pick = self.scheduler.next(now, self._nonces(audit.NONCE_BYTES))
            assert pick is not None  # ready now: the budget has its cost
            await self.audit(pick)

    async def refresh(self) -> None:
        """Read the homes held, their manifests and co-holders again."""
        homes: list[HeldHome] = []
        segments: dict[tuple[bytes, bytes], list[SegmentInfo]] = {}
        for owner, home, _ in await self._store.homes():
            data = await self._store.manifest(owner, home)
            try:
                built = Manifest.decode(data) if data is not None else None
            except ManifestError as exc:  # kept only after the same check: a damaged database
                log.warning("audit: the manifest of %s does not decode: %s", home.hex(), exc)
                built = None
            if built is None:
                continue
            try:
                announced = await self._holders(NodeId(owner), home)
            except PlexinodeError as exc:
                log.info("audit: provider records of %s: %s", home.hex(), exc)
                announced = {}
            pairs = {
                (node, index)
                for index, nodes in announced.items()
                if 0 <= index < built.n
                for node in nodes
                if node != self.node_id and node.raw != owner
            }
            stored = sum(size for *_, size in await self._store.held(owner, home))
            infos = [info for info in built.segments() if info.home == home]
            segments[owner, home] = infos
            homes.append(HeldHome(owner, home, stored, len(infos), tuple(sorted(pairs))))
        self._segments = segments
        self.scheduler.update(homes, trio.current_time())

    async def audit(self, pick: AuditPick) -> None:
        """Send one challenge and judge its answer."""
        info = self._segments[pick.owner, pick.home][pick.segment]
        leaves = audit.challenged_leaves(pick.nonce, info.block_size)
        cost = len(leaves) * pipeline.LEAF_BYTES
        name = pick.holder.short()
        self.stats["audits_sent"] += 1
        try:
            with trio.fail_after(deadlines.CONNECT_SECONDS + deadlines.transfer(cost)):
                async with self._open(pick.holder) as stream:
                    proof = await fetching.challenge(
                        stream,
                        pick.owner,
                        info.identity,
                        pick.index,
                        leaves=leaves,
                        nonce=pick.nonce,
                    )
        except fetching.NotHeld as exc:
            if exc.reason != Reason.NOT_HELD:
                self.stats["audits_refused"] += 1
                log.info("audit: %s refused a challenge: %s", name, exc.reason)
                return
            detail = "says it does not hold the share"
        except DecodeError as exc:
            detail = f"answered out of protocol: {exc}"
        except (PlexinodeError, trio.TooSlowError, *STREAM_FAILURES) as exc:
            self.stats["audits_unreachable"] += 1
            log.info("audit: %s did not answer: %s", name, str(exc) or "no answer in time")
            return
        else:
            root = info.roots[pick.index]
            if audit.check_proof(root, info.block_size, pick.nonce, leaves, proof):
                self.stats["audits_passed"] += 1
                return
            detail = "sent a wrong proof"
        self.stats["audits_failed"] += 1
        log.warning(
            "audit: %s failed share %d of %s: %s", name, pick.index, pick.home.hex(), detail
        )
        self.scheduler.failed(pick, trio.current_time())
        self._on_failure()

    def status(self) -> dict[str, Any]:
        """What ``status`` shows under ``shards``: the audit counters."""
        counters = {
            key: self.stats[key]
            for key in (
                "audits_sent",
                "audits_passed",
                "audits_failed",
                "audits_refused",
                "audits_unreachable",
            )
        }
        counters["audit_failed_holders"] = self.scheduler.failed_count(trio.current_time())
        counters["audit_budget_bytes"] = int(self.scheduler.budget.tokens)
        return counters
