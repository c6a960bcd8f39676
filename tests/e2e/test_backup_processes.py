"""Backups among real processes on loopback: create, list, show, verify, restore, a holder
killed, remove; and bad input to each command."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest

from plexinode.testing.processes import NodeProcess, cli, cli_json
from tests.e2e.test_membership_processes import wait_until

pytestmark = pytest.mark.e2e


def digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_backup_restore_and_remove_among_five_processes(start_node, tmp_path: Path) -> None:
    first = start_node("b0")
    nodes: list[NodeProcess] = [first] + [
        start_node(f"b{i}", "--bootstrap", first.address) for i in range(1, 6)
    ]

    def alive(node: NodeProcess) -> int:
        return sum(m["state"] == "alive" for m in cli_json(node.data_dir, "members"))

    wait_until(lambda: alive(first) == 6, 30, "the owner sees six members alive")
    src = tmp_path / "src"
    (src / "photos").mkdir(parents=True)
    rng = random.Random(4)
    for i in range(6):
        (src / ("photos" if i % 2 else ".") / f"file{i}").write_bytes(
            rng.randbytes(rng.randrange(0, 900_000))
        )

    done = cli(
        first.data_dir,
        "--json",
        "backup",
        "create",
        str(src),
        "-k",
        "2",
        "-n",
        "4",
        "--name",
        "mine",
    )
    assert done.returncode == 0, done.stderr
    created = json.loads(done.stdout)  # stdout is one JSON document; progress is on stderr
    progress = [json.loads(line) for line in done.stderr.splitlines()]
    assert progress, "at least the last progress line"
    assert {p["phase"] for p in progress} == {"backup"}
    assert progress[-1]["done"] == progress[-1]["total"] >= created["bytes"]
    assert progress[-1]["sent_bytes"] == created["bytes_sent"]
    assert set(created) >= {"backup_id", "bytes", "k", "n", "holders"}
    assert (created["k"], created["n"], len(created["holders"])) == (2, 4, 4)
    assert first.node_id not in created["holders"]
    backup_id = created["backup_id"]
    listed = cli_json(first.data_dir, "backup", "list")
    assert [(b["backup_id"], b["name"]) for b in listed] == [(backup_id, "mine")]
    assert set(listed[0]) >= {"backup_id", "name", "bytes", "created", "k", "n"}
    shown = cli_json(first.data_dir, "backup", "show", backup_id[:10])
    assert set(shown) >= {
        "backup_id",
        "name",
        "bytes",
        "k",
        "n",
        "segments",
        "holders",
        "lease_expires",
    }
    held = sum(cli_json(n.data_dir, "status")["storage"]["used_bytes"] for n in nodes[1:])
    assert held >= created["bytes"] * 2  # n / k = 2 times the data (and the manifests)
    verified = cli_json(first.data_dir, "backup", "verify", backup_id)
    assert {k: verified[k] for k in ("backup_id", "healthy", "min_available_shares", "k", "n")} == {
        "backup_id": backup_id,
        "healthy": True,
        "min_available_shares": 4,
        "k": 2,
        "n": 4,
    }

    # Two of the four holders killed (k = 2 are left): the restore still compares equal.
    by_id = {n.node_id: n for n in nodes}
    for holder in created["holders"][:2]:
        by_id[holder].kill()
    done = cli(first.data_dir, "--json", "backup", "restore", backup_id, str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    restored = json.loads(done.stdout)
    assert restored["bytes"] == created["bytes"]
    last = json.loads(done.stderr.splitlines()[-1])
    assert (last["phase"], last["done"], last["total"]) == ("restore", *[created["bytes"]] * 2)
    assert digest(tmp_path / "out") == digest(src)
    verified = cli_json(first.data_dir, "backup", "verify", backup_id)
    assert (verified["healthy"], verified["min_available_shares"]) == (False, 2)
    gone = {h["node_id"]: h["result"] for h in verified["holders"]}
    assert [gone[h] for h in created["holders"][:2]] == ["unreachable"] * 2

    # Bad input: each one clear line and its exit code.
    for args, code, words in [
        (("backup", "create", str(tmp_path / "missing")), 2, "does not exist"),
        (("backup", "create", str(src), "-k", "5", "-n", "4"), 2, "must not exceed"),
        (("backup", "create", str(src), "-n", "300"), 2, "1<=x<=256"),
        (("backup", "create", str(src), "-k", "2", "-n", "6", "--happy", "6"), 1, "needed"),
        (("backup", "show", "zz"), 1, "not a backup ID"),
        (("backup", "show", "0123456789"), 1, "no backup"),
        (("backup", "verify", "zz"), 1, "not a backup ID"),
        (("backup", "verify", "0123456789"), 1, "no backup"),
        (("backup", "restore", backup_id, str(tmp_path / "out")), 2, "already exists"),
    ]:
        done = cli(first.data_dir, *args)
        assert done.returncode == code, (args, done.stderr)
        assert words in done.stderr, (args, done.stderr)
        assert done.stderr.count("\n") == 1, done.stderr
        assert "Traceback" not in done.stderr

    removed = cli_json(first.data_dir, "backup", "rm", backup_id)
    assert removed["removed"] is True
    assert cli_json(first.data_dir, "backup", "list") == []
