"""A lost machine: the owner's identity and backup secret on a new node find its backups in the
DHT (its ``backups`` record, the holders' provider records), list and restore them."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import trio

from plexinode.dht.backup_records import BACKUPS, backups_key, decode_backup_ids
from plexinode.net.address import Address
from plexinode.node import Node
from plexinode.testing.network import open_memory_network
from plexinode.testing.nodes import FAST, seeded_identity


def make_tree(root: Path) -> dict[str, bytes]:
    rng = random.Random(11)
    (root / "docs").mkdir(parents=True)
    files = {}
    for i in range(6):
        relative = f"docs/f{i}" if i % 2 else f"f{i}"
        data = rng.randbytes(rng.randrange(1, 400_000))
        (root / relative).write_bytes(data)
        files[relative] = data
    return files


def tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


async def test_a_new_machine_with_the_owners_identity_lists_and_restores_its_backups(
    tmp_path: Path, autojump_clock
) -> None:
    autojump_clock.autojump_threshold = 0.5  # file-backed databases (worker threads)
    files = make_tree(tmp_path / "src")
    async with open_memory_network(seed=21) as net:
        hosts = [net.new_host() for _ in range(7)]
        first = Address(hosts[0], FAST.listen.port)

        def node(index: int, host: str, identity_index: int, seed: Address = first, **kw) -> Node:
            data_dir = tmp_path / f"node{index}"
            data_dir.mkdir(mode=0o700)
            settings = FAST if index == 0 else replace(FAST, bootstrap=(seed,))
            return Node(
                seeded_identity(identity_index),
                settings,
                net.transport(host),
                data_dir=data_dir,
                wall_clock=lambda: 1_000_000.0 + trio.current_time(),
                **kw,
            )

        members = [node(i, host, i) for i, host in enumerate(hosts[:6])]
        owner = members[0]
        async with trio.open_nursery() as nursery:
            for member in members:
                await nursery.start(member.run)
            with trio.fail_after(120):
                while len(owner.membership.members()) < 6:  # noqa: ASYNC110
                    await trio.sleep(0.5)
            created = await owner.backups.create(tmp_path / "src", k=2, n=4, name="laptop")
            await trio.sleep(5)  # the holders announce what they now hold
            announced = [(await m.status())["shards"]["announced"] for m in members[1:]]
            assert sum(announced) >= 4, announced  # at once, and again every few hours
            pointer = await members[3].dht.get(BACKUPS, backups_key(owner.node_id))
            assert [decode_backup_ids(r.value) for r in pointer] == [[created.backup_id]]

            # The machine is lost; a new one has the exported identity and backup secret.
            owner.stop()
            member = Address(hosts[1], FAST.listen.port)
            fresh = node(6, hosts[6], 0, member, backup_secret=owner.backup_secret)
            await nursery.start(fresh.run)
            with trio.fail_after(120):
                while len(fresh.dht.routing) < 3:  # noqa: ASYNC110
                    await trio.sleep(0.5)
            assert await fresh.backups.catalog.backups() == []
            listed = await fresh.backups.listing()
            assert [(b["backup_id"], b["name"], b["bytes"]) for b in listed] == [
                (created.backup_id.hex(), "laptop", created.bytes)
            ]
            await fresh.backups.restore(created.backup_id, tmp_path / "out")
            assert tree(tmp_path / "out") == files

            # What it adopted is a backup like any: reused by the next one, renewed, removed.
            again = await fresh.backups.create(tmp_path / "src", k=2, n=4)
            assert again.outcome.bytes_sent == 0
            assert await fresh.backups.renew() >= 4  # the holders of both backups
            await fresh.backups.remove(created.backup_id)
            await fresh.backups.restore(again.backup_id, tmp_path / "out2")
            assert tree(tmp_path / "out2") == files
            pointer = await members[3].dht.get(BACKUPS, backups_key(owner.node_id))
            newest = max(pointer, key=lambda r: r.seq)
            assert decode_backup_ids(newest.value) == [again.backup_id]
            nursery.cancel_scope.cancel()
