"""Durability of a k-of-n backup: any n - k holders may die at once (before any repair) and the
owner still restores it, here the holders of every primary block, so that the restore decodes
from parity blocks only."""

from __future__ import annotations

from pathlib import Path

import trio

from plexinode.identity import NodeId
from plexinode.testing.network import open_memory_network
from tests.sim.test_repair_sim import cluster_with_backup, make_tree, tree


async def test_the_backup_survives_n_minus_k_holders_dying_at_once(
    tmp_path: Path, autojump_clock
) -> None:
    autojump_clock.autojump_threshold = 0.5  # file-backed databases (worker threads)
    files = make_tree(tmp_path / "src")
    async with open_memory_network(seed=41) as net, trio.open_nursery() as nursery:
        cluster, created = await cluster_with_backup(net, tmp_path, nursery, 8)
        owner = cluster.nodes[0]
        placed = await owner.backups.catalog.holders(created.backup_id)  # type: ignore[union-attr]
        assert sorted(placed) == [0, 1, 2, 3]
        # k = 2 of n = 4: the holders of shares 0 and 1 (the primary blocks) die together,
        # well within the restart grace, so no repair runs before the restore.
        for share in (0, 1):
            cluster.kill(cluster.index_of(NodeId(placed[share])))
        result = await owner.backups.restore(created.backup_id, tmp_path / "out")
        assert result.missing_segments == []
        assert tree(tmp_path / "out") == files
        assert await cluster.counter("repair_bytes") == 0
        nursery.cancel_scope.cancel()
