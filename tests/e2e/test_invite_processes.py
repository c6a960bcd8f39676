"""Invites between real processes: `invite`, `start --join`, `join`, and bad tokens."""

from __future__ import annotations

import time

import pytest

from tests.e2e.conftest import cli, cli_json
from tests.e2e.test_membership_processes import states, wait_until

pytestmark = pytest.mark.e2e


def test_invite_then_join_at_start_and_at_run_time(start_node) -> None:
    inviter = start_node("inviter")
    issued = cli_json(inviter.data_dir, "invite", "--expires", "1h")
    assert issued["network"] == "open"
    assert issued["addresses"] == [inviter.address]
    assert issued["expires_at"] > time.time() + 3000
    token = issued["token"]
    assert cli(inviter.data_dir, "invite").stdout.strip().startswith("plexinode-invite-1:")

    newcomer = start_node("newcomer", "--join", token)
    later = start_node("later")  # no bootstrap at all: it joins at run time
    joined = cli_json(later.data_dir, "join", token)
    assert joined["network"] == "open"
    assert joined["bootstrapped"] >= 1
    everyone = {inviter.node_id, newcomer.node_id, later.node_id}
    for node in (inviter, newcomer, later):
        wait_until(
            lambda node=node: {i for i, (s, _) in states(node).items() if s == "alive"} >= everyone,
            30,
            f"{node.data_dir.name} lists all three alive",
        )


def test_bad_tokens_are_refused_with_a_clear_error(start_node) -> None:
    node = start_node("node")
    token = cli_json(node.data_dir, "invite", "--expires", "1s")["token"]
    tampered = token[:-6] + ("A" if token[-6] != "A" else "B") + token[-5:]
    result = cli(node.data_dir, "join", tampered)
    assert result.returncode == 1
    assert "tampered" in result.stderr or "damaged" in result.stderr
    time.sleep(1.2)
    expired = cli(node.data_dir, "join", token)
    assert expired.returncode == 1
    assert "expired" in expired.stderr
    garbage = cli(node.data_dir, "join", "hello")
    assert garbage.returncode == 1
    assert "not an invite token" in garbage.stderr
    for bad in ("0s", "31d", "soon"):
        assert cli(node.data_dir, "invite", "--expires", bad).returncode == 2
    fresh = node.data_dir.parent / "fresh"
    refused = cli(fresh, "start", "--listen", "127.0.0.1:0", "--join", "hello")
    assert refused.returncode == 2
    assert "not an invite token" in refused.stderr
