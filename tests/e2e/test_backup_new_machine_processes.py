"""The lost machine, with real processes: eight nodes, 64 MiB backed up 3-of-6, three holders
killed with SIGKILL, restored equal; then the owner's machine is gone, its exported identity is
imported into a brand-new data dir that joins by invite, and `backup list` and `backup restore`
find the backup through the DHT and bring it back equal."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest

from plexinode.testing.processes import NodeProcess, cli_json
from tests.e2e.test_membership_processes import wait_until

pytestmark = pytest.mark.e2e

MIB = 1 << 20


def digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def make_source(src: Path) -> None:
    (src / "photos").mkdir(parents=True)
    rng = random.Random(64)
    (src / "photos" / "big.raw").write_bytes(rng.randbytes(60 * MIB))
    for i in range(8):
        (src / f"note{i}.txt").write_bytes(rng.randbytes(MIB // 2))


def test_kill_three_holders_then_lose_the_owner_and_restore_on_a_new_machine(
    start_node, tmp_path: Path
) -> None:
    first = start_node("n0")
    nodes: list[NodeProcess] = [first] + [
        start_node(f"n{i}", "--bootstrap", first.address) for i in range(1, 8)
    ]

    def alive(node: NodeProcess) -> int:
        return sum(m["state"] == "alive" for m in cli_json(node.data_dir, "members"))

    wait_until(lambda: alive(first) == 8, 60, "the owner sees eight members alive")
    src = tmp_path / "src"
    make_source(src)
    created = cli_json(
        first.data_dir, "backup", "create", str(src), "-k", "3", "-n", "6", "--name", "laptop"
    )
    assert (created["k"], created["n"], len(created["holders"])) == (3, 6, 6)
    backup_id = created["backup_id"]

    by_id = {n.node_id: n for n in nodes}
    killed = created["holders"][:3]
    for holder in killed:
        by_id[holder].kill()
    restored = cli_json(first.data_dir, "backup", "restore", backup_id, str(tmp_path / "out"))
    assert restored["bytes"] == created["bytes"]
    assert digest(tmp_path / "out") == digest(src)

    # The owner's machine is lost; its identity was exported beforehand.
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("correct horse battery staple\n")
    keys = tmp_path / "keys.export"
    cli_json(first.data_dir, "keys", "export", str(keys), "--passphrase-file", str(passphrase))
    assert cli_json(first.data_dir, "stop") == {"stopped": True}
    survivor = next(n for n in nodes[1:] if n.node_id not in killed)
    token = cli_json(survivor.data_dir, "invite", "--expires", "1h")["token"]
    invite = tmp_path / "invite.txt"
    invite.write_text(token + "\n")
    fresh = tmp_path / "fresh"
    imported = cli_json(fresh, "init", "--import", str(keys), "--passphrase-file", str(passphrase))
    assert imported["node_id"] == first.node_id
    new = start_node("fresh", "--join-file", str(invite))
    assert new.node_id == first.node_id

    listed: list[dict[str, object]] = []

    def found() -> bool:
        listed[:] = cli_json(new.data_dir, "backup", "list")
        return bool(listed)

    wait_until(found, 90, "the new machine finds its backup in the DHT")
    assert [(b["backup_id"], b["name"], b["bytes"]) for b in listed] == [
        (backup_id, "laptop", created["bytes"])
    ]
    again = cli_json(new.data_dir, "backup", "restore", backup_id[:12], str(tmp_path / "again"))
    assert again["bytes"] == created["bytes"]
    assert digest(tmp_path / "again") == digest(src)
