"""Holders auditing each other on the in-memory network: a holder whose share files were
damaged on disk, or one that serves other bytes than it was given, fails its co-holders'
audits, the share is regenerated on another member, and the backup restores from the repaired
set once two more holders are lost."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from plexinode.datadir import SHARES_NAME
from plexinode.shards import auditing
from plexinode.testing.network import open_memory_network
from tests.sim.test_repair_sim import cluster_with_backup, make_tree, tree

#: Audits far above 0.1% a day, so that the few hundred kilobytes each node holds here earn a
#: challenge every half minute or so (the budget's arithmetic is the unit tests').
FRACTION = 300.0
REFRESH = 20.0


@pytest.mark.parametrize("fault", ["damaged_files", "lying_holder"])
async def test_a_corrupt_holder_fails_its_audits_and_its_share_is_repaired_elsewhere(
    tmp_path: Path, autojump_clock, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    autojump_clock.autojump_threshold = 0.5  # file-backed databases (worker threads)
    monkeypatch.setattr(auditing, "AUDIT_FRACTION", FRACTION)
    monkeypatch.setattr(auditing, "REFRESH_INTERVAL", REFRESH)
    files = make_tree(tmp_path / "src")
    async with open_memory_network(seed=41) as net, trio.open_nursery() as nursery:
        cluster, created = await cluster_with_backup(net, tmp_path, nursery, 8)
        before = await cluster.holders(created.backup_id)
        assert sorted(len(v) for v in before.values()) == [1, 1, 1, 1]
        victim = before[0][0]
        if fault == "damaged_files":
            damaged = sorted((tmp_path / f"node{victim}" / SHARES_NAME).glob("*.share"))
            assert damaged
            for path in damaged:  # the disk returns zeros where the blocks were
                path.write_bytes(bytes(path.stat().st_size))
        else:
            # The holder keeps its share but serves (and proves) other bytes of the same size.
            holding = cluster.nodes[victim]._shards.holder.store
            honest = holding.read_block

            async def lie(owner: bytes, segment: bytes, index: int) -> bytes | None:
                block = await honest(owner, segment, index)
                return None if block is None else bytes(len(block))

            holding.read_block = lie
        with trio.fail_after(900):  # well before the hourly check: the audit's doing
            while True:
                holders = await cluster.holders(created.backup_id)
                if [node for node in holders[0] if node != victim]:
                    break
                await trio.sleep(10)
        assert await cluster.counter("audits_failed") >= 1
        assert await cluster.counter("repair_shares_placed") == 1
        status = (await cluster.nodes[victim].status())["shards"]
        assert status["audits_failed"] == 0  # the others failed it; it failed none
        (replacement,) = [node for node in holders[0] if node != victim]
        others = {holders[i][0] for i in (1, 2, 3)}
        assert replacement not in others

        # Two holders of other indices die: index 0 comes only from the replacement.
        assert await cluster.nodes[0].backups.renew() >= 4
        for index in (holders[1][0], holders[2][0]):
            cluster.kill(index)
        await cluster.nodes[0].backups.restore(created.backup_id, tmp_path / "out")
        assert tree(tmp_path / "out") == files
        nursery.cancel_scope.cancel()
