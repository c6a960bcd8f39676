"""``backup verify`` and holders that stall, among nodes on the in-memory network (MockClock):
every holder proving, a holder proving another block or wrong bytes, one that stalls (restore
and a new backup go on without it), one stopped, one whose share files rotted; and backup IDs
that name nothing."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import pytest
import trio

from plexinode.admin.backup_commands import BackupCommands
from plexinode.admin.backup_fields import BackupIdRequest
from plexinode.identity import NodeId
from plexinode.membership.members import State
from plexinode.net.address import Address
from plexinode.net.channel import SecureStream
from plexinode.net.streams import StreamHandler
from plexinode.node import Node
from plexinode.shards import audit, deadlines, fetching, pipeline
from plexinode.shards.backups import BackupError
from plexinode.shards.messages import (
    SHARDS_PROTOCOL,
    Reason,
    ShardChallenge,
    ShardOffer,
    ShardReply,
)
from plexinode.shards.progress import CHALLENGES, Progress, ignore
from plexinode.testing.network import open_memory_network
from plexinode.testing.nodes import FAST, seeded_identity
from plexinode.wire import envelope
from plexinode.wire.codec import FRAME_LIMITS
from tests.sim.test_backups_sim import make_tree, tree

# Holder streams are never closed for idleness here, so that a stalled holder is ended by the
# owner's deadlines and nothing else.
SETTINGS = replace(FAST, stream=replace(FAST.stream, idle_timeout=86_400.0))


def liar(mode: str, blocks: dict[tuple[bytes, int], bytes], n: int) -> StreamHandler:
    """A holder's shards/1 handler that takes offers, then: "stall" answers nothing more;
    "flipped" proves challenges over the block with its bytes flipped; "elsewhere" over the
    block of the next share index of the segment (another block, of the right size); a
    challenge on a block it was not given is refused (not held)."""

    async def handle(stream: SecureStream) -> None:
        try:
            while True:
                message = envelope.decode(await stream.receive(), FRAME_LIMITS).message
                if isinstance(message, ShardOffer):
                    await stream.send(envelope.encode(ShardReply(True, "", "")))
                elif isinstance(message, ShardChallenge) and mode != "stall":
                    segment, index = message.segment, message.index
                    if (segment, index) not in blocks:
                        await stream.send(envelope.encode(ShardReply(False, Reason.NOT_HELD, "")))
                        continue
                    if mode == "flipped":
                        block = bytes(b ^ 0xFF for b in blocks[segment, index])
                    else:
                        block = blocks[segment, (index + 1) % n]
                    proof = audit.answer(block, message.nonce, message.leaves)
                    await stream.send(envelope.encode(proof))
        except (trio.EndOfChannel, trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    return handle


async def test_verify_counts_each_holder_and_a_stalled_holder_hangs_nothing(
    tmp_path: Path, autojump_clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    autojump_clock.autojump_threshold = 0.5  # every node's database is a file (worker threads)
    # Shorter deadlines, so that each stall costs seconds of this test's run, not a minute:
    # simulated time moves only in jumps after half a real second of idleness, and the
    # members' timers fire all along.
    monkeypatch.setattr(deadlines, "ANSWER_SECONDS", 5.0)
    monkeypatch.setattr(deadlines, "CONNECT_SECONDS", 5.0)
    make_tree(tmp_path / "src")
    (tmp_path / "src2").mkdir()
    (tmp_path / "src2" / "new").write_bytes(random.Random(5).randbytes(700_000))
    async with open_memory_network(seed=11) as net:
        hosts = [net.new_host() for _ in range(6)]
        first = Address(hosts[0], FAST.listen.port)
        nodes = []
        for i, host in enumerate(hosts):
            data_dir = tmp_path / f"node{i}"
            data_dir.mkdir(mode=0o700)
            settings = SETTINGS if i == 0 else replace(SETTINGS, bootstrap=(first,))
            nodes.append(
                Node(
                    seeded_identity(i, seed=3),
                    settings,
                    net.transport(host),
                    data_dir=data_dir,
                    wall_clock=lambda: 1_000_000.0 + trio.current_time(),
                )
            )
        by_id = {node.node_id: node for node in nodes}
        async with trio.open_nursery() as nursery:
            for node in nodes:
                await nursery.start(node.run)
            owner = nodes[0]
            with trio.fail_after(120):
                while len([m for m in owner.membership.members() if m.state is State.ALIVE]) < 6:  # noqa: ASYNC110
                    await trio.sleep(0.5)
            backups, commands = owner.backups, BackupCommands(owner)
            created = await backups.create(tmp_path / "src", k=2, n=4)
            backup_id = created.backup_id.hex()
            placed = {
                i: NodeId(h) for i, h in (await backups.catalog.holders(created.backup_id)).items()
            }

            async def verify() -> tuple[dict[str, object], dict[NodeId, dict[str, object]]]:
                reports: list[Progress] = []
                verified = await commands.verify(BackupIdRequest(backup_id[:10]), reports.append)
                result = verified.to_result()
                holders = {NodeId.parse(h["node_id"]): h for h in result["holders"]}
                # Progress counts every challenge decided, answered or given up, of all.
                assert (
                    reports[-1].done
                    == reports[-1].total
                    == sum(h["challenges"] for h in holders.values())
                )
                assert all(r.unit == CHALLENGES for r in reports)
                return result, holders

            # Every holder proves its shares.
            result, holders = await verify()
            assert {k: result[k] for k in ("healthy", "min_available_shares", "k", "n")} == {
                "healthy": True,
                "min_available_shares": 4,
                "k": 2,
                "n": 4,
            }
            assert result["backup_id"] == backup_id
            assert set(holders) == set(placed.values())
            assert all(
                h["result"] == "ok" and h["passed"] == h["challenges"] for h in holders.values()
            )

            # The blocks each share holds, read as any member may, for the liar to misuse.
            manifest = await backups.manifest(created.backup_id)
            blocks = {}
            for index, node_id in placed.items():
                stream = await owner.streams.open(
                    by_id[node_id].address, SHARDS_PROTOCOL, node_id=node_id
                )
                for info in manifest.segments():
                    blocks[info.identity, index] = await fetching.fetch_block(
                        stream, owner.node_id.raw, info.identity, index
                    )
                await stream.aclose()
            infos = {info.identity: info for info in manifest.segments()}
            for (segment, index), block in blocks.items():
                assert pipeline.share_root(block) == infos[segment].roots[index]

            # A holder that proves another block, or wrong bytes: its shares count as missing.
            liar_id = placed[1]
            for mode in ("elsewhere", "flipped"):
                by_id[liar_id].streams.on(SHARDS_PROTOCOL, liar(mode, blocks, 4))
                result, holders = await verify()
                assert (result["healthy"], result["min_available_shares"]) == (False, 3), mode
                assert holders[liar_id]["result"] == "wrong_proof"
                assert holders[liar_id]["passed"] == 0
                assert [h["result"] for n, h in holders.items() if n != liar_id] == ["ok"] * 3

            # A holder that takes streams and offers and then answers nothing: verify counts it
            # unreachable once its deadline passes, a restore fetches from the others, and a
            # new backup that places a share on it completes without it (happiness 4 of 5).
            by_id[liar_id].streams.on(SHARDS_PROTOCOL, liar("stall", blocks, 4))
            started = trio.current_time()
            result, holders = await verify()
            assert trio.current_time() - started >= deadlines.ANSWER_SECONDS
            assert (holders[liar_id]["result"], result["min_available_shares"]) == (
                "unreachable",
                3,
            )
            restored = await backups.restore(created.backup_id, tmp_path / "out")
            assert tree(tmp_path / "out") == tree(tmp_path / "src")
            assert restored.bytes_written == created.bytes
            second = await backups.create(tmp_path / "src2", k=2, n=5, happy=4)
            second_holders = await backups.catalog.holders(second.backup_id)
            lost = second.outcome.lost_indices
            assert [NodeId(second_holders[i]) for i in lost] == [liar_id]
            assert liar_id not in second.holders
            await backups.restore(second.backup_id, tmp_path / "out2")
            assert tree(tmp_path / "out2") == tree(tmp_path / "src2")
            by_id[liar_id].streams.on(SHARDS_PROTOCOL, liar("flipped", blocks, 4))  # no more stalls
            result = (
                await commands.verify(BackupIdRequest(second.backup_id.hex()), ignore)
            ).to_result()
            assert (result["healthy"], result["min_available_shares"], result["n"]) == (False, 4, 5)
            assert {h["node_id"]: h["result"] for h in result["holders"]}[
                str(liar_id)
            ] == "not_held"

            # A holder stopped: unreachable; with the liar, two shares are left (= k).
            stopped = placed[2]
            by_id[stopped].stop()
            result, holders = await verify()
            assert holders[stopped]["result"] == "unreachable"
            assert (result["min_available_shares"], result["restorable"]) == (2, True)

            # A holder whose share files rotted on disk: its store finds every block damaged,
            # drops it and says it does not hold it; one share is left, below k.
            rotted = placed[3]
            for path in (by_id[rotted].data_dir / "shares").glob("*.share"):
                data = bytearray(path.read_bytes())
                data[0] ^= 0xFF
                path.write_bytes(bytes(data))
            result, holders = await verify()
            assert holders[rotted]["result"] == "not_held"
            assert (result["min_available_shares"], result["restorable"]) == (1, False)
            assert result["short_segments"] == result["segments"] == manifest.segment_count

            # Backup IDs that name nothing: one clear error each.
            for wrong, words in (("zz", "not a backup ID"), ("ffffffffff", "no backup")):
                with pytest.raises(BackupError, match=words):
                    await commands.verify(BackupIdRequest(wrong), ignore)
            for node in nodes:
                node.stop()
