"""A backup that fails or is interrupted leaves nothing behind: its shares are removed from the
holders it reached (at once when it fails, at the next renewal after a crash), and no manifest
ever claims them."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import pytest
import trio

from plexinode.errors import StorageError
from plexinode.net.address import Address
from plexinode.node import Node
from plexinode.shards.catalog import UPLOADING
from plexinode.testing.network import open_memory_network
from plexinode.testing.nodes import FAST, seeded_identity


async def held(nodes: list[Node]) -> int:
    return sum([(await n.status())["storage"]["used_bytes"] for n in nodes])


async def test_failed_and_interrupted_backups_are_removed_from_their_holders(
    tmp_path: Path, autojump_clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    autojump_clock.autojump_threshold = 0.5  # file-backed databases (worker threads)
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(random.Random(3).randbytes(900_000))
    async with open_memory_network(seed=5) as net:
        hosts = [net.new_host() for _ in range(5)]
        first = Address(hosts[0], FAST.listen.port)
        nodes = []
        for i, host in enumerate(hosts):
            data_dir = tmp_path / f"node{i}"
            data_dir.mkdir(mode=0o700)
            nodes.append(
                Node(
                    seeded_identity(i),
                    FAST if i == 0 else replace(FAST, bootstrap=(first,)),
                    net.transport(host),
                    data_dir=data_dir,
                    wall_clock=lambda: 1_000_000.0 + trio.current_time(),
                )
            )
        async with trio.open_nursery() as nursery:
            for node in nodes:
                await nursery.start(node.run)
            owner, holders = nodes[0], nodes[1:]
            with trio.fail_after(120):
                while len(owner.membership.members()) < 5:  # noqa: ASYNC110
                    await trio.sleep(0.5)
            catalog = owner.backups.catalog

            # The owner's database fails at the very end: every share and the manifest were
            # sent, and are taken back before the error is reported.
            real_complete = catalog.complete

            async def failing(backup_id: bytes, manifest: bytes, size: int) -> None:
                raise StorageError("disk full")

            monkeypatch.setattr(catalog, "complete", failing)
            with pytest.raises(StorageError, match="disk full"):
                await owner.backups.create(src, k=2, n=4)
            assert await held(holders) == 0
            assert await catalog.backups() == []
            monkeypatch.setattr(catalog, "complete", real_complete)

            # A crash before the end (the row stays `uploading`): the next renewal removes it.
            done = await owner.backups.create(src, k=2, n=4)
            assert await held(holders) > 0
            await owner._db.execute(  # as a SIGKILL before `complete` leaves it
                "UPDATE backups SET state = ? WHERE backup_id = ?", (UPLOADING, done.backup_id)
            )
            assert await owner.backups.renew() == 0
            assert await held(holders) == 0
            assert await catalog.backups() == []
            # Unreachable holders keep it listed, for the next renewal.
            again = await owner.backups.create(src, k=2, n=4)
            await owner._db.execute(
                "UPDATE backups SET state = ? WHERE backup_id = ?", (UPLOADING, again.backup_id)
            )
            holders[0].stop()  # n = 4 of 4 members: it is one of the holders
            assert await owner.backups.clean_interrupted() == 0
            assert [(r.backup_id, r.state) for r in await catalog.backups()] == [
                (again.backup_id, UPLOADING)
            ]
            nursery.cancel_scope.cancel()
