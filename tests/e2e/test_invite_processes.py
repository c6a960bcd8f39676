"""Invites between real processes: `invite`, `start --join-file`, `join`, tickets of private
networks, and bad tokens."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from plexinode.admin.client import AdminClient
from plexinode.security.tickets import parse_ticket
from plexinode.testing.processes import cli, cli_json, node_env
from tests.e2e.test_membership_processes import states, wait_until

pytestmark = pytest.mark.e2e


def write(tmp_path, name: str, token: str) -> str:
    path = tmp_path / name
    path.write_text(token + "\n")
    return str(path)


def test_invite_then_join_at_start_and_at_run_time(start_node, tmp_path) -> None:
    inviter = start_node("inviter")
    issued = cli_json(inviter.data_dir, "invite", "--expires", "1h")
    assert issued["network"] == "open"
    assert issued["addresses"] == [inviter.address]
    assert issued["expires"] > time.time() + 3000
    token = issued["token"]
    assert cli(inviter.data_dir, "invite").stdout.strip().startswith("plexinode-invite-2:")

    newcomer = start_node("newcomer", "--join-file", write(tmp_path, "t", token))
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
    # The CLI issues nothing shorter than a minute; the admin socket itself takes any lifetime.
    token = AdminClient(node.data_dir).call("invite", expires=1.0)["token"]
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
    for bad in ("0s", "1s", "500ms", "59s", "31d", "soon"):
        assert cli(node.data_dir, "invite", "--expires", bad).returncode == 2
    # From a file or standard input, as from the command line; the usage must say which.
    path = node.data_dir.parent / "bad.token"
    path.write_text("hello\n")
    from_file = cli(node.data_dir, "join", "--file", str(path))
    assert (from_file.returncode, from_file.stderr.count("\n")) == (1, 1)
    assert "not an invite token" in from_file.stderr
    empty = subprocess.run(
        [sys.executable, "-m", "plexinode", "--data-dir", str(node.data_dir), "join", "-"],
        input="",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=node_env(None),
    )
    assert (empty.returncode, empty.stderr.strip()) == (
        1,
        "plexinode: standard input holds no token",
    )
    assert cli(node.data_dir, "join").returncode == 2
    assert cli(node.data_dir, "join", "x", "--file", str(path)).returncode == 2
    damaged = cli(node.data_dir, "join", "plexinode-ticket-1:AAAA")
    assert (damaged.returncode, "damaged" in damaged.stderr) == (1, True)


def test_a_private_network_admits_ticket_holders_once_and_rotates_its_key(
    start_node, tmp_path
) -> None:
    created = cli(tmp_path / "home0", "--json", "init", "--network", "home")
    assert created.returncode == 0, created.stderr
    assert (tmp_path / "home0" / "root.key").exists()
    first = start_node("home0")
    ticket = cli_json(first.data_dir, "invite", "--expires", "1h")["token"]
    assert ticket.startswith("plexinode-ticket-1:")
    member = start_node("home1", "--join-file", write(tmp_path, "t1", ticket))
    # the same ticket again: refused, one line, and no data dir left behind
    again = cli(
        tmp_path / "again",
        "start",
        "--listen",
        "127.0.0.1:0",
        "--join-file",
        write(tmp_path, "t1b", ticket),
    )
    assert again.returncode == 1
    assert "refused the ticket" in again.stderr
    assert "Traceback" not in again.stderr
    stranger = start_node("stranger", "--bootstrap", first.address)  # the open network

    def alive(node, other) -> bool:
        return states(node).get(other.node_id, ("", 0))[0] == "alive"

    wait_until(lambda: alive(member, first) and alive(first, member), 30, "members see each other")
    assert cli(stranger.data_dir, "ping", first.address).returncode == 1
    assert cli(stranger.data_dir, "ping", "--stream", first.address).returncode == 1
    status = cli_json(first.data_dir, "status")
    assert status["datagrams"]["drop_network_key"] >= 1
    assert status["streams"]["handshake_network_key"] >= 1
    assert status["authority"]["tickets"] == {"issued": 1, "joined": 1}
    assert stranger.node_id not in states(first)
    assert cli_json(member.data_dir, "status")["network"] == "home"

    # A third member (its ticket read from standard input), away for the whole rotation.
    away_ticket = cli_json(first.data_dir, "invite", "--expires", "1h")["token"]
    away = start_node("home2", "--join-file", write(tmp_path, "t2", away_ticket))
    wait_until(lambda: alive(first, away) and alive(away, first), 30, "the third member joined")
    away.ready_line()  # it joined, and saved its DHT contacts, before it is killed
    away.kill()
    wait_until(lambda: not alive(first, away), 30, "the third member is gone")

    # Rotation: each step runs on one admin's node and the network carries it out. The
    # founder's node is a member and an inviter; the root key (its data dir's root.key, the
    # default --admin-key) makes it an admin for the rotation.
    refused = cli(first.data_dir, "network", "key", "install", "ab" * 32)
    assert refused.returncode == 1
    assert "does not hold the admin role" in refused.stderr
    cli_json(first.data_dir, "network", "grant", "admin", first.node_id, "--expires", "1h")
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


def test_a_founder_listening_on_every_address_can_invite(start_node, tmp_path) -> None:
    """No peer has told it yet where it is seen: its first ticket lists the addresses the host
    sends from (before, `invite` refused: no address others can reach)."""
    assert cli(tmp_path / "wild", "init", "--network", "lab").returncode == 0
    founder = start_node("wild", "--listen", "0.0.0.0:0")
    made = cli(founder.data_dir, "--json", "invite", "--expires", "1h")
    assert made.returncode == 0, made.stderr
    ticket = parse_ticket(json.loads(made.stdout)["token"], time.time())
    port = int(founder.address.rsplit(":", 1)[1])
    assert ticket.bootstrap()
    assert all(a.port == port and a.host not in ("0.0.0.0", "::") for a in ticket.bootstrap())
