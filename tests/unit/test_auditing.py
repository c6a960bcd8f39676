"""The audit driver: challenges sent to co-holders, proofs checked against the manifest kept
here, failures remembered and handed to the repair."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import pytest
import trio

from plexinode.identity import NodeId
from plexinode.shards import audit, messages
from plexinode.shards.audit_schedule import AuditPick
from plexinode.shards.auditing import Auditor
from plexinode.shards.repairing import Repairer
from plexinode.testing.channels import channel_pair
from plexinode.wire import envelope
from tests.unit.test_repairing import HOME, OWNER, OwnStore, Scene

OWN = OWNER.node_id.raw


class HeldStore(OwnStore):
    """The auditor's own store: one home, its manifest, its shares."""

    async def homes(self) -> list[tuple[bytes, bytes, int]]:
        return [(OWN, HOME, self.index), (OWN, b"E" * 16, 0)]

    async def manifest(self, owner: bytes, backup_id: bytes) -> bytes | None:
        return self.data if backup_id == HOME else None

    async def held(self, owner: bytes, home: bytes) -> list[tuple[bytes, int, bytes, int]]:
        return [(s, self.index, b"", len(b)) for s, b in self.blocks.items()]


def auditor(scene: Scene, **kwargs) -> tuple[Auditor, list[int]]:
    calls: list[int] = []
    store = HeldStore(scene.data, dict(scene.own.blocks), 0)
    made = Auditor(
        node_id=scene.a,
        store=store,  # type: ignore[arg-type]
        holders=scene.holders,
        open_stream=scene.net.open,
        on_failure=lambda: calls.append(1),
        **kwargs,
    )
    return made, calls


def pick(node: NodeId, index: int, segment: int = 0, nonce: bytes = bytes(16)) -> AuditPick:
    return AuditPick(OWN, HOME, node, index, segment, nonce)


async def test_an_honest_co_holder_passes_and_a_corrupt_or_wiped_one_fails() -> None:
    async with trio.open_nursery() as nursery:
        scene = Scene(nursery)
        made, calls = auditor(scene)
        await made.refresh()
        assert set(made.scheduler.homes) == {(OWN, HOME)}  # the home without a manifest: skipped
        held = made.scheduler.homes[OWN, HOME]
        assert held.holders == tuple(sorted(((scene.b, 1), (scene.c, 2), (scene.d, 3))))
        assert held.segments == 3
        await made.audit(pick(scene.b, 1))
        assert made.stats["audits_passed"] == 1
        # B's block corrupted on disk: its proof does not match the manifest's root.
        store = scene.stores[scene.b]
        key = (OWN, scene.segs[2].identity, 1)
        store.blocks[key] = bytes(len(store.blocks[key]))
        await made.audit(pick(scene.b, 1, segment=2))
        # C's share deleted: it says it does not hold it.
        del scene.stores[scene.c].blocks[OWN, scene.segs[0].identity, 2]
        await made.audit(pick(scene.c, 2))
        # D does not answer at all: not a failure of the audit (membership decides).
        await made.audit(pick(scene.d, 3))
        assert made.stats["audits_failed"] == 2
        assert made.stats["audits_unreachable"] == 1
        assert made.failed_holders(OWN, HOME) == {scene.b, scene.c}
        assert calls == [1, 1]
        status = made.status()
        assert status["audits_sent"] == 4
        assert status["audit_failed_holders"] == 2
        nursery.cancel_scope.cancel()


def answering(reply: messages.ShardReply | messages.ShardListing, nursery: trio.Nursery):
    @contextlib.asynccontextmanager
    async def open_stream(node: NodeId) -> AsyncIterator[trio.abc.Channel[bytes]]:
        client, server = channel_pair()

        async def serve() -> None:
            await server.receive()
            await server.send(envelope.encode(reply))

        nursery.start_soon(serve)
        yield client

    return open_stream


@pytest.mark.parametrize(
    ("reply", "counter"),
    [
        (messages.ShardReply(False, messages.Reason.BUSY, ""), "audits_refused"),
        (messages.ShardReply(True, "", ""), "audits_refused"),
        (messages.ShardListing(()), "audits_failed"),
        (messages.ShardReply(False, messages.Reason.NOT_HELD, ""), "audits_failed"),
    ],
)
async def test_a_refusal_is_no_failure_but_an_answer_out_of_protocol_is(
    reply: messages.ShardReply | messages.ShardListing, counter: str
) -> None:
    async with trio.open_nursery() as nursery:
        scene = Scene(nursery)
        scene.net.open = answering(reply, nursery)  # type: ignore[method-assign]
        made, calls = auditor(scene)
        await made.refresh()
        await made.audit(pick(scene.b, 1))
        assert made.stats[counter] == 1
        assert len(calls) == made.stats["audits_failed"]
        nursery.cancel_scope.cancel()


async def test_without_records_or_with_a_damaged_manifest_nothing_is_audited(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with trio.open_nursery() as nursery:
        scene = Scene(nursery)
        scene.records = None  # the DHT fails
        made, _ = auditor(scene)
        await made.refresh()
        assert made.scheduler.homes[OWN, HOME].holders == ()
        assert made.scheduler.ready_at(trio.current_time()) is None
        made._store.data = b"\x00damaged"  # type: ignore[attr-defined]
        with caplog.at_level(logging.WARNING):
            await made.refresh()
        assert "does not decode" in caplog.text
        assert made.scheduler.homes == {}
        nursery.cancel_scope.cancel()


async def test_the_loop_paces_challenges_by_the_budget(autojump_clock) -> None:
    nonces = iter(range(1_000_000))
    async with trio.open_nursery() as nursery:
        scene = Scene(nursery)
        saved = scene.records
        scene.records = {}  # nothing known at first: the loop waits for the next refresh
        made, _ = auditor(
            scene,
            fraction=1.0,  # a day's allowance: the bytes stored (about 75 KB, 2 challenges)
            refresh=600.0,
            nonces=lambda size: next(nonces).to_bytes(size, "big"),
        )
        await nursery.start(made.run)
        await trio.sleep(300.0)
        assert made.stats["audits_sent"] == 0
        scene.records = saved
        await trio.sleep(2 * audit.DAY)
        stored = sum(len(s.blocks[0]) for s in scene.segs)
        # The first refresh at 600 s: since then, at most what accrued (the bucket starts
        # empty), and within one challenge of it.
        allowed = stored * (2 * audit.DAY - 300.0) / audit.DAY
        assert made.stats["audits_sent"] * 32768 <= allowed
        assert (made.stats["audits_sent"] + 1) * 32768 > allowed - 32768
        assert (
            made.stats["audits_passed"] + made.stats["audits_unreachable"]
            == (made.stats["audits_sent"])
        )
        nursery.cancel_scope.cancel()


async def test_a_holder_that_failed_an_audit_is_repaired_around_without_being_probed() -> None:
    """B failed an audit: its share counts as missing, the repairer (A) regenerates index 1 on
    a member that holds nothing of the home, and B, live, is not asked whether it answers."""
    async with trio.open_nursery() as nursery:
        scene = Scene(nursery)
        base = scene.repairer()
        repairer = Repairer(
            node_id=scene.a,
            store=scene.own,  # type: ignore[arg-type]
            holders=scene.holders,
            claim=lambda o, h, c: None,
            release=lambda o, h, c: None,
            open_stream=scene.net.open,
            pace=base.pace,
            failed=lambda owner, home: frozenset({scene.b, scene.a}),  # never itself
        )
        assert (await base.repair(OWN, HOME, scene.live(), frozenset())).state == "healthy"
        outcome = await repairer.repair(OWN, HOME, scene.live(), frozenset())
        assert outcome.state == "repaired"
        ((index, node),) = outcome.placed.items()
        assert index == 1
        assert node in (scene.e, scene.f)
        assert scene.placed(node, 1) == [s.blocks[1] for s in scene.segs]
        nursery.cancel_scope.cancel()
