"""Repairing one home this node holds: plan, elect, claim, regenerate, place.

`Repairer.repair` runs for one (owner, home) whose share this node holds, with the membership
view of the moment (`repair_plan.repair_view`):

1. the home's own manifest, kept here as by every holder of the home (the owner signed it; it
   gives n, k, the home's segments and their roots); the holdings, from the holders' provider
   records and this node's own share;
2. the plan (`repair_plan.plan_repair`); a healthy home stops here, as does a node that is not
   the elected repairer (`repair_plan.elect_repairer`: the live holder of lowest rank);
3. the view is checked: a holder that the records name and the view holds gone is asked a
   harmless request (``shard-list``); if it answers, the view is stale (``stale_view``) and
   nothing is done now. Then the claim: granted here, then asked of every other live holder
   counted (``shard-repair-claim``); the repair goes on only with grants from more than half of
   the holders counted (`repair_plan.claim_won`). Two repairers whose views differ for a while
   thus do not both start: the one that holds a live holder gone finds it answering, and of
   two with the same holders, one has the grants. What is left is idempotent (a put of a share
   already held is not written again, and the same view places on the same targets);
4. the targets, by the plan's placement (``shard-repair-offer`` with the manifest; a refusal
   or an unreachable member moves the index to the next candidate);
5. for each segment of the home: k blocks from live keepers (this node's own first), each
   checked against its root, decoded and encoded again (zfec is deterministic: a regenerated
   block equals the original, and is checked against the manifest's root before it is sent),
   the moved indices' blocks sent to their targets (``shard-repair-put``), a byte rate paced by
   the caller (`Pacer`);
6. ``shard-repair-done`` to each target, which checks that it holds the whole share and
   publishes its own provider record.

Neither the owner nor any plaintext is needed: blocks are ciphertext and the roots are public.
A copy left doubled on a survivor (a plan's surplus) is not dropped: it is one extra copy, kept
until the owner's lease on it ends.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass, field
from typing import Final

import trio

from plexinode.errors import PlexinodeError
from plexinode.identity import NodeId
from plexinode.net.streams import STREAM_FAILURES
from plexinode.shards import coding, fetching, messages, pipeline, repair_client
from plexinode.shards.manifest import Manifest, ManifestError, SegmentInfo
from plexinode.shards.placement import Candidate
from plexinode.shards.repair_plan import (
    Holding,
    RepairPlan,
    RepairRequest,
    claim_won,
    elect_repairer,
    plan_repair,
)
from plexinode.shards.store import ShareNotHeld, ShareStore

log = logging.getLogger(__name__)

#: How long one member may take to answer one request of a repair (a claim, an offer with its
#: manifest, a block, a batch of puts).
STEP_DEADLINE: Final = 120.0
#: How long a holder the view holds gone may take to show it is not.
PROBE_DEADLINE: Final = 10.0
#: Blocks sent to a target before waiting for its acknowledgement.
PUT_BATCH: Final = 8

Opener = Callable[[NodeId], AbstractAsyncContextManager[trio.abc.Channel[bytes]]]
Pacer = Callable[[int], Awaitable[None]]
Lookup = Callable[[NodeId, bytes], Awaitable[dict[int, list[NodeId]]]]
_FAILURES: Final = (PlexinodeError, trio.TooSlowError, *STREAM_FAILURES)


@dataclass(slots=True)
class RepairOutcome:
    """What one repair did.

    Attributes:
        state: ``healthy``, ``not_elected``, ``stale_view``, ``not_claimed``, ``no_manifest``,
            ``unreadable``
            (fewer than k blocks of a segment), ``repaired`` or ``partial`` (some index found
            no member to take it).
        placed: index -> the member that took it.
        bytes_read: block bytes fetched from other holders.
        bytes_sent: block bytes sent to new holders.
    """

    state: str
    placed: dict[int, NodeId] = field(default_factory=dict)
    bytes_read: int = 0
    bytes_sent: int = 0


async def _no_pacing(size: int) -> None:
    return None


def _none_failed(owner: bytes, home: bytes) -> frozenset[NodeId]:
    return frozenset()


class Repairer:
    """Repairs the homes this node holds (see the module docstring).

    Args:
        node_id: this node.
        store: its share store.
        holders: the provider records of (owner, home): index -> nodes.
        claim: grants a claim here (`holder_service.HolderService.claim`).
        release: drops this node's claim here.
        open_stream: a ``shards/1`` stream to a member.
        pace: awaited with the bytes about to be read, to keep a byte rate.
        failed: the holders of (owner, home) that failed an audit recently
            (`auditing.Auditor.failed_holders`): their shares do not count, as a gone holder's.
    """

    def __init__(
        self,
        *,
        node_id: NodeId,
        store: ShareStore,
        holders: Lookup,
        claim: Callable[[bytes, bytes, bytes], bytes | None],
        release: Callable[[bytes, bytes, bytes], None],
        open_stream: Opener,
        pace: Pacer = _no_pacing,
        failed: Callable[[bytes, bytes], frozenset[NodeId]] = _none_failed,
    ) -> None:
        self.node_id = node_id
        self._store = store
        self._holders = holders
        self._claim = claim
        self._release = release
        self._open = open_stream
        self.pace = pace
        self._failed = failed

    async def repair(
        self, owner: bytes, home: bytes, live: Sequence[Candidate], gone: frozenset[NodeId]
    ) -> RepairOutcome:
        """Repair `owner`'s `home` if it needs it and this node is its repairer."""
        data = await self._store.manifest(owner, home)
        try:
            built = Manifest.decode(data) if data is not None else None
        except ManifestError as exc:  # kept only after the same check: a damaged database
            log.warning("repair: the manifest of %s does not decode: %s", home.hex(), exc)
            built = None
        if built is None:
            return RepairOutcome("no_manifest")
        holdings = await self._holdings(owner, home)
        # A holder that failed an audit counts as gone here, but is not asked whether it
        # answers (it may well: it is live, and does not keep its share).
        dropped = gone | (self._failed(owner, home) - {self.node_id})
        request = RepairRequest(home, NodeId(owner), built.n, holdings, tuple(live), dropped)
        plan = plan_repair(request)
        if plan.healthy:
            return RepairOutcome("healthy")
        live_ids = {c.node_id for c in live} - dropped
        counted = {h.holder for h in holdings if h.holder not in dropped and 0 <= h.index < built.n}
        if elect_repairer(home, counted, live_ids) != self.node_id:
            return RepairOutcome("not_elected")
        if await self._answers(owner, {h.holder for h in holdings if h.holder in gone}):
            return RepairOutcome("stale_view")
        if not await self._claim_all(owner, home, counted & live_ids, len(counted)):
            return RepairOutcome("not_claimed")
        try:
            return await self._run(owner, built, data or b"", plan, live_ids)
        finally:
            self._release(owner, home, self.node_id.raw)

    async def _holdings(self, owner: bytes, home: bytes) -> tuple[Holding, ...]:
        found: list[Holding] = []
        try:
            announced = await self._holders(NodeId(owner), home)
        except PlexinodeError as exc:
            log.info("repair: provider records of %s: %s", home.hex(), exc)
            announced = {}
        for index, nodes in announced.items():
            found.extend(Holding(index, node) for node in nodes)
        own = await self._store.index_held(owner, home)
        if own is not None:
            found.append(Holding(own, self.node_id))
        return tuple(dict.fromkeys(found))

    async def _answers(self, owner: bytes, nodes: set[NodeId]) -> bool:
        """Whether any of `nodes`, which this node's view holds gone, answers a harmless
        request (``shard-list``): then the view is stale, and another member may be repairing
        on a view in which this node's own choices would double up shares."""
        for node in sorted(nodes):
            try:
                with trio.fail_after(PROBE_DEADLINE):
                    async with self._open(node) as stream:
                        await fetching.list_backups(stream, owner)
            except _FAILURES:
                continue
            log.info("repair: %s, held gone, answers: not repairing now", node.short())
            return True
        return False

    async def _claim_all(
        self, owner: bytes, home: bytes, others: set[NodeId], counted: int
    ) -> bool:
        if self._claim(owner, home, self.node_id.raw) is not None:
            return False
        grants = 1
        for node in sorted(others - {self.node_id}):
            try:
                with trio.fail_after(STEP_DEADLINE):
                    async with self._open(node) as stream:
                        await repair_client.claim(stream, owner, home)
            except _FAILURES as exc:
                log.info(
                    "repair: %s did not grant the claim on %s: %s", node.short(), home.hex(), exc
                )
                continue
            grants += 1
        if claim_won(grants, counted):
            return True
        self._release(owner, home, self.node_id.raw)
        return False

    async def _run(
        self, owner: bytes, built: Manifest, data: bytes, plan: RepairPlan, live: set[NodeId]
    ) -> RepairOutcome:
        home = plan.placement.key
        lease = await self._lease(owner, built.backup_id)
        offered = {
            move.index: messages.ShardRepairOffer(
                owner, built.backup_id, home, move.index, lease, len(data)
            )
            for move in plan.moves
        }
        sources = [node for _, node in sorted(plan.keep.items()) if node in live]
        sources.sort(key=lambda node: node != self.node_id)  # this node's own block first
        outcome = RepairOutcome("repaired")
        async with AsyncExitStack() as stack:
            targets = await self._place(stack, plan, offered, data)
            outcome.placed = {index: node for index, (node, _) in targets.items()}
            if not targets:
                return RepairOutcome("partial")
            reader = _Reader(self, stack, owner, plan.keep, sources)
            segments = [info for info in built.segments() if info.home == home]
            for start in range(0, len(segments), PUT_BATCH):
                batch: dict[int, list[tuple[bytes, bytes]]] = {i: [] for i in targets}
                for info in segments[start : start + PUT_BATCH]:
                    blocks = await reader.regenerate(info, built.k, built.n, tuple(targets))
                    if blocks is None:
                        outcome.state = "unreadable"
                        return outcome
                    for index in targets:
                        batch[index].append((info.identity, blocks[index]))
                for index, (node, stream) in list(targets.items()):
                    await self.pace(sum(len(b) for _, b in batch[index]))
                    try:
                        with trio.fail_after(STEP_DEADLINE):
                            await repair_client.put_blocks(stream, batch[index])
                    except _FAILURES as exc:
                        log.info("repair: %s failed share %d: %s", node.short(), index, exc)
                        del targets[index], outcome.placed[index]
                        continue
                    outcome.bytes_sent += sum(len(b) for _, b in batch[index])
                if not targets:
                    break
            outcome.bytes_read = reader.bytes_read
            for index, (node, stream) in targets.items():
                try:
                    with trio.fail_after(STEP_DEADLINE):
                        await repair_client.done(stream, owner, home)
                except _FAILURES as exc:
                    log.info("repair: %s did not complete share %d: %s", node.short(), index, exc)
                    del outcome.placed[index]
        if len(outcome.placed) < len(plan.moves):
            outcome.state = "partial"
        return outcome

    async def _lease(self, owner: bytes, backup_id: bytes) -> float:
        for leased, expires, _ in await self._store.leases(owner):
            if leased == backup_id:
                return float(expires)
        return 0.0  # gone meanwhile: every offer is refused as past

    async def _place(
        self,
        stack: AsyncExitStack,
        plan: RepairPlan,
        offered: dict[int, messages.ShardRepairOffer],
        data: bytes,
    ) -> dict[int, tuple[NodeId, trio.abc.Channel[bytes]]]:
        placement = plan.start()
        targets: dict[int, tuple[NodeId, trio.abc.Channel[bytes]]] = {}
        while offers := placement.offers():
            for offer in offers:
                node = offer.holder.node_id
                try:
                    with trio.fail_after(STEP_DEADLINE):
                        stream = await stack.enter_async_context(self._open(node))
                        await repair_client.offer(stream, offered[offer.index], data)
                except _FAILURES as exc:
                    log.info("repair: %s refused share %d: %s", node.short(), offer.index, exc)
                    placement.refused(node)
                    continue
                placement.accepted(node)
                targets[offer.index] = (node, stream)
        return targets


class _Reader:
    """k verified blocks of each segment from the live keepers, over streams kept open."""

    def __init__(
        self,
        repairer: Repairer,
        stack: AsyncExitStack,
        owner: bytes,
        keep: Mapping[int, NodeId],
        sources: Sequence[NodeId],
    ) -> None:
        self._repairer = repairer
        self._stack = stack
        self._owner = owner
        self._index_of = {node: index for index, node in keep.items()}
        self._sources = sources
        self._streams: dict[NodeId, trio.abc.Channel[bytes]] = {}
        self._failed: set[NodeId] = set()
        self.bytes_read = 0

    async def regenerate(
        self, info: SegmentInfo, k: int, n: int, wanted: Sequence[int]
    ) -> dict[int, bytes] | None:
        """The blocks of `wanted` indices, regenerated and checked; None without k blocks."""
        blocks: dict[int, bytes] = {}
        for node in self._sources:
            if len(blocks) == k:
                break
            if node in self._failed:
                continue
            index = self._index_of[node]
            block = await self._read(node, info, index)
            if block is None:
                continue
            if not await trio.to_thread.run_sync(_matches, block, info.roots[index]):
                log.warning("repair: %s served a corrupt block", node.short())
                self._failed.add(node)
                continue
            blocks[index] = block
        if len(blocks) < k:
            return None
        return await trio.to_thread.run_sync(_regenerate, blocks, info, k, n, wanted)

    async def _read(self, node: NodeId, info: SegmentInfo, index: int) -> bytes | None:
        repairer = self._repairer
        if node == repairer.node_id:
            try:
                return await repairer._store.read_block(self._owner, info.identity, index)
            except ShareNotHeld:
                return None
        await repairer.pace(info.block_size)
        try:
            with trio.fail_after(STEP_DEADLINE):
                stream = self._streams.get(node)
                if stream is None:
                    stream = await self._stack.enter_async_context(repairer._open(node))
                    self._streams[node] = stream
                block = await fetching.fetch_block(stream, self._owner, info.identity, index)
        except fetching.NotHeld:
            return None
        except _FAILURES as exc:
            log.info("repair: reading from %s failed: %s", node.short(), exc)
            self._failed.add(node)
            self._streams.pop(node, None)
            return None
        self.bytes_read += len(block)
        return block


def _matches(block: bytes, root: bytes) -> bool:
    return pipeline.share_root(block) == root


def _regenerate(
    blocks: Mapping[int, bytes], info: SegmentInfo, k: int, n: int, wanted: Sequence[int]
) -> dict[int, bytes] | None:
    # The padded ciphertext (k whole blocks) encodes again to the same n blocks.
    padded = coding.decode(blocks, k, n, k * info.block_size)
    encoded = coding.encode(padded, k, n)
    if any(not _matches(encoded[i], info.roots[i]) for i in wanted):
        log.error("repair: regenerated blocks of %s do not match", info.identity.hex())
        return None
    return {i: encoded[i] for i in wanted}
