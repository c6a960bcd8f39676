"""Moving an identity to a new machine with real processes: `keys export` from a running
node's data dir, `init --import` into a new one, which starts as the same node."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from nacl.pwhash import argon2id

from plexinode.shards.secret import backup_key_path
from plexinode.testing.processes import cli_json

pytestmark = pytest.mark.e2e


def test_export_from_a_running_node_import_and_start(tmp_path: Path, start_node) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    made = cli_json(old, "init")
    backup_key_path(old).unlink()  # a data dir made before backups: its start makes the secret
    node = start_node("old")
    assert node.node_id == made["node_id"]
    secret = backup_key_path(old).read_bytes()
    assert len(secret) == 32

    passphrase = tmp_path / "passphrase"
    passphrase.write_text("a long passphrase for the new machine\n")
    export_file = tmp_path / "keys.export"
    done = cli_json(old, "keys", "export", str(export_file), "--passphrase-file", str(passphrase))
    assert done == {"path": str(export_file)}
    assert stat.S_IMODE(export_file.stat().st_mode) == 0o600
    doc = json.loads(export_file.read_text().splitlines()[1])
    # The CLI seals at no less than libsodium's "moderate" cost.
    assert doc["opslimit"] >= argon2id.OPSLIMIT_MODERATE
    assert doc["memlimit"] >= argon2id.MEMLIMIT_MODERATE
    assert cli_json(old, "stop") == {"stopped": True}

    imported = cli_json(
        new, "init", "--import", str(export_file), "--passphrase-file", str(passphrase)
    )
    assert imported == {"node_id": made["node_id"], "data_dir": str(new)}
    assert backup_key_path(new).read_bytes() == secret
    moved = start_node("new")
    assert moved.node_id == made["node_id"]
    assert cli_json(new, "id")["node_id"] == made["node_id"]
    assert cli_json(new, "status")["node_id"] == made["node_id"]
