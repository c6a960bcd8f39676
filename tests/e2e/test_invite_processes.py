"""Invites between real processes: `invite`, `start --join`, `join`, and bad tokens."""

from __future__ import annotations

import time

import pytest

from plexinode.testing.processes import cli, cli_json
from tests.e2e.test_membership_processes import states, wait_until

pytestmark = pytest.mark.e2e


def test_invite_then_join_at_start_and_at_run_time(start_node) -> None:
    inviter = start_node("inviter")
    issued = cli_json(inviter.data_dir, "invite", "--expires", "1h")
    assert issued["network"] == "open"
    assert issued["addresses"] == [inviter.address]
    assert issued["expires"] > time.time() + 3000
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
    assert refused.returncode == 1  # as `join`: the operation failed, the usage was fine
    assert "not an invite token" in refused.stderr


def test_a_private_network_admits_invited_nodes_only_and_rotates_its_key(
    start_node, tmp_path
) -> None:
    created = cli(tmp_path / "home0", "--json", "init", "--network", "home")
    assert created.returncode == 0, created.stderr
    first = start_node("home0")
    token = cli_json(first.data_dir, "invite", "--expires", "1h")["token"]
    member = start_node("home1", "--join", token)
    stranger = start_node("stranger", "--bootstrap", first.address)  # the open network

    def alive(node, other) -> bool:
        return states(node).get(other.node_id, ("", 0))[0] == "alive"

    wait_until(lambda: alive(member, first) and alive(first, member), 30, "members see each other")
    assert cli(stranger.data_dir, "ping", first.address).returncode == 1
    assert cli(stranger.data_dir, "ping", "--stream", first.address).returncode == 1
    status = cli_json(first.data_dir, "status")
    assert status["datagrams"]["drop_network_key"] >= 1
    assert status["streams"]["handshake_network_key"] >= 1
    assert stranger.node_id not in states(first)
    assert cli_json(member.data_dir, "status")["network"] == "home"

    # A third member, away for the whole rotation.
    away = start_node("home2", "--join", token)
    wait_until(lambda: alive(first, away) and alive(away, first), 30, "the third member joined")
    away.kill()
    wait_until(lambda: not alive(first, away), 30, "the third member is gone")

    # Rotation: each step runs on one member and the network carries it out.
    old = cli_json(first.data_dir, "network", "key", "list")
    assert old["private"] is True
    (old_id,) = [k["key_id"] for k in old["keys"]]
    new = cli_json(first.data_dir, "network", "key", "generate")
    cli_json(first.data_dir, "network", "key", "install", new["key"])

    def listed(node, key: str) -> dict:
        keys = cli_json(node.data_dir, "network", "key", "list")["keys"]
        return next((k for k in keys if k["key_id"] == key), {})

    wait_until(lambda: listed(member, new["key_id"]), 30, "the member fetched the new key")
    wait_until(lambda: listed(first, new["key_id"]).get("holders") == 2, 30, "progress shows 2/2")
    cli_json(first.data_dir, "network", "key", "use", new["key_id"])
    wait_until(lambda: listed(member, new["key_id"])["primary"], 30, "the member switched")
    cli_json(first.data_dir, "network", "key", "remove", old_id)
    wait_until(lambda: listed(member, old_id).get("retired"), 30, "the member retired the old key")
    assert cli(member.data_dir, "ping", first.address).returncode == 0
    assert cli(member.data_dir, "ping", "--stream", first.address).returncode == 0
    refused = cli(first.data_dir, "network", "key", "remove", new["key_id"])
    assert refused.returncode == 1
    assert "primary" in refused.stderr

    # The member that was away comes back with the old key only, and rejoins by itself.
    back = start_node("home2")
    wait_until(lambda: alive(first, back) and alive(back, first), 60, "it rejoined")
    assert listed(back, new["key_id"])["primary"] is True
