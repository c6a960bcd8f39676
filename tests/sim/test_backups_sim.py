"""Backups among nodes on the in-memory network: placement among members, refusals, restore."""

from __future__ import annotations

import functools
import random
from dataclasses import replace
from pathlib import Path

import pytest
import trio

from plexinode.admin.backup_commands import BackupCommands
from plexinode.admin.backup_fields import (
    BackupCreateRequest,
    BackupIdRequest,
    BackupRestoreRequest,
)
from plexinode.admin.requests import NoArguments
from plexinode.membership.members import State
from plexinode.net.address import Address
from plexinode.node import Node
from plexinode.shards import service
from plexinode.shards.backups import BackupError
from plexinode.shards.holder_service import HolderService
from plexinode.shards.progress import BACKUP, RESTORE, Progress
from plexinode.shards.restore_pipeline import RestoreIncomplete
from plexinode.testing.network import open_memory_network
from plexinode.testing.nodes import FAST, seeded_identity


def make_tree(root: Path) -> None:
    rng = random.Random(7)
    (root / "sub").mkdir(parents=True)
    for i in range(8):
        (root / ("sub" if i % 2 else ".") / f"f{i}").write_bytes(
            rng.randbytes(rng.randrange(1, 300_000))
        )


def tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


async def test_a_backup_among_members_and_its_restore(tmp_path: Path, autojump_clock) -> None:
    autojump_clock.autojump_threshold = 0.5  # every node's database is a file (worker threads)
    make_tree(tmp_path / "src")
    async with open_memory_network(seed=9) as net:
        hosts = [net.new_host() for _ in range(6)]
        first = Address(hosts[0], FAST.listen.port)
        nodes = []
        for i, host in enumerate(hosts):
            data_dir = tmp_path / f"node{i}"
            data_dir.mkdir(mode=0o700)
            settings = FAST if i == 0 else replace(FAST, bootstrap=(first,))
            if i == 5:  # a member with no room: placement takes the next candidate
                settings = replace(settings, storage=replace(settings.storage, quota_bytes=1000))
            nodes.append(
                Node(
                    seeded_identity(i),
                    settings,
                    net.transport(host),
                    data_dir=data_dir,
                    wall_clock=lambda: 1_000_000.0 + trio.current_time(),
                )
            )
        async with trio.open_nursery() as nursery:
            for node in nodes:
                await nursery.start(node.run)
            owner = nodes[0]
            with trio.fail_after(120):
                while len([m for m in owner.membership.members() if m.state is State.ALIVE]) < 6:  # noqa: ASYNC110
                    await trio.sleep(0.5)
            backups = owner.backups
            with pytest.raises(BackupError, match="5 other live members found, 6 needed"):
                await backups.create(tmp_path / "src", k=2, n=6, happy=6)
            created = await backups.create(tmp_path / "src", k=2, n=4)
            assert len(created.holders) == 4
            assert nodes[5].node_id not in created.holders or created.outcome.lost_indices
            held = sum([(await n.status())["storage"]["used_bytes"] for n in nodes[1:]])
            assert held >= created.bytes * 4 // 2  # n / k times the data, and manifests
            result = await backups.restore(created.backup_id, tmp_path / "out")
            assert tree(tmp_path / "out") == tree(tmp_path / "src")
            assert result.bytes_written == created.bytes

            # Renewal reaches every holder and moves the leases a full period on.
            before = (await backups.catalog.get(created.backup_id)).lease_expires
            await trio.sleep(1)
            assert await backups.renew() == 4
            after = (await backups.catalog.get(created.backup_id)).lease_expires
            assert after > before

            # A second backup of the same tree, through the admin commands: nothing is sent.
            commands = BackupCommands(owner)
            reports: list[Progress] = []
            again = await commands.create(
                BackupCreateRequest(path=str(tmp_path / "src"), k=2, n=4, name="again"),
                reports.append,
            )
            assert again.bytes_sent == 0
            assert reports[-1].phase == BACKUP
            assert reports[-1].done == reports[-1].total >= created.bytes
            assert reports[-1].sent_bytes == 0
            listed = (await commands.listing(NoArguments())).to_result()
            assert [b["name"] for b in listed] == ["src", "again"]
            shown = await commands.show(BackupIdRequest(again.backup_id[:8]))
            assert len(shown.holders) == 4  # the first backup's holders keep its segments
            reports.clear()
            restored = await commands.restore(
                BackupRestoreRequest(again.backup_id, str(tmp_path / "out2")), reports.append
            )
            assert restored.bytes == created.bytes
            assert {(p.phase, p.total) for p in reports} == {(RESTORE, created.bytes)}
            assert reports[-1].done == created.bytes
            assert tree(tmp_path / "out2") == tree(tmp_path / "src")
            for wrong, words in (("zz", "not a backup ID"), ("ffffffffff", "no backup")):
                with pytest.raises(BackupError, match=words):
                    await backups.find(wrong)
            removed = await commands.remove(BackupIdRequest(created.backup_id.hex()))
            assert removed.to_result()["removed"] is True
            await backups.restore(bytes.fromhex(again.backup_id), tmp_path / "out3")
            assert tree(tmp_path / "out3") == tree(tmp_path / "src")  # its segments stayed
            for node in nodes:
                node.stop()


async def test_a_restore_waits_for_holders_at_their_read_rate(
    tmp_path: Path, autojump_clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A holder past its read rate for the owner answers busy: the restore waits and asks again
    (it is not a failed holder), so a backup larger than the holders' bursts still restores."""
    autojump_clock.autojump_threshold = 0.5  # every node's database is a file (worker threads)
    monkeypatch.setattr(
        service,
        "HolderService",
        functools.partial(
            HolderService,
            read_rate=1e6,
            read_burst=1e5,
            owner_read_rate=1e6,  # the owner's own budget, as small: it restores here
            owner_read_burst=1e5,
        ),
    )
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "big").write_bytes(random.Random(3).randbytes(1 << 20))
    async with open_memory_network(seed=4) as net:
        hosts = [net.new_host() for _ in range(4)]
        first = Address(hosts[0], FAST.listen.port)
        nodes = []
        for i, host in enumerate(hosts):
            data_dir = tmp_path / f"node{i}"
            data_dir.mkdir(mode=0o700)
            settings = FAST if i == 0 else replace(FAST, bootstrap=(first,))
            nodes.append(Node(seeded_identity(i), settings, net.transport(host), data_dir=data_dir))
        async with trio.open_nursery() as nursery:
            for node in nodes:
                await nursery.start(node.run)
            owner = nodes[0]
            with trio.fail_after(120):
                while len([m for m in owner.membership.members() if m.state is State.ALIVE]) < 4:  # noqa: ASYNC110
                    await trio.sleep(0.5)
            created = await owner.backups.create(tmp_path / "src", k=2, n=3, segment_bytes=64 << 10)
            result = await owner.backups.restore(created.backup_id, tmp_path / "out")
            assert result.missing_segments == []
            assert tree(tmp_path / "out") == tree(tmp_path / "src")
            refused = [(await n.status())["shards"].get("reads_refused_rate", 0) for n in nodes]
            assert sum(refused) > 0  # the holders did answer busy
            # A holder that stays busy counts as failed in the end: no restore waits forever.
            monkeypatch.setattr("plexinode.shards.segment_fetch.BUSY_RETRIES", 0)
            with pytest.raises(RestoreIncomplete, match="fewer than k shares reachable"):
                await owner.backups.restore(created.backup_id, tmp_path / "out2")
            for node in nodes:
                node.stop()
