"""Two real nodes on 127.0.0.1: ping, status, stop, and the CLI's refusals."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import pytest

from plexinode.identity import Identity
from plexinode.testing.processes import cli, cli_json, environ

pytestmark = pytest.mark.e2e


def test_two_nodes_ping_status_stop(start_node) -> None:
    alice = start_node("alice")
    bob = start_node("bob")

    status = cli_json(bob.data_dir, "status")
    assert set(status) >= {
        "node_id",
        "version",
        "network",
        "address",
        "uptime_s",
        "peers",
        "members",
        "storage",
    }
    assert set(status["members"]) >= {"alive", "suspect", "dead"}
    assert set(status["storage"]) == {
        "used_bytes",
        "quota_bytes",
        "database_bytes",
        "repair_backlog",
    }
    assert status["storage"]["repair_backlog"] == 0
    # What the node holds for others (nothing yet) against its quota, and the database beside.
    assert status["storage"]["used_bytes"] == status["shards"]["held_bytes"] == 0
    assert status["storage"]["database_bytes"] > 0
    assert status["node_id"] == cli_json(bob.data_dir, "id")["node_id"]

    for src, dst in ((alice, bob), (bob, alice)):
        pong = cli_json(src.data_dir, "ping", dst.address)
        assert pong["node_id"] == dst.node_id
        assert pong["address"] == dst.address
        assert pong["rtt_ms"] > 0
    over_stream = cli_json(alice.data_dir, "ping", "--stream", "--node", bob.node_id, bob.address)
    assert over_stream["node_id"] == bob.node_id
    assert cli_json(alice.data_dir, "ping", "--node", bob.node_id, bob.address)["node_id"] == (
        bob.node_id
    )

    # Dialing bob's address while requiring another ID must fail the handshake.
    other = str(Identity.generate().node_id)
    wrong = cli(alice.data_dir, "ping", "--stream", "--node", other, bob.address)
    assert wrong.returncode == 1
    assert "expected" in wrong.stderr
    assert len(wrong.stderr.strip().splitlines()) == 1

    assert cli_json(bob.data_dir, "status")["peers"] >= 1

    started = time.monotonic()
    assert cli_json(alice.data_dir, "stop") == {"stopped": True}
    assert alice.wait_exit() == 0
    assert time.monotonic() - started < 5.0
    assert not (alice.data_dir / "admin.sock").exists()

    gone = cli(bob.data_dir, "ping", alice.address, timeout=60)
    assert gone.returncode == 1
    assert "no answer" in gone.stderr

    bob.proc.send_signal(signal.SIGTERM)
    assert bob.wait_exit() == 0
    assert "node stopped" in bob.log()


def test_status_without_a_node_exits_3(tmp_path: Path) -> None:
    result = cli(tmp_path / "nothing", "status")
    assert result.returncode == 3
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert "no node is running" in result.stderr


def test_second_start_and_init_refuse(start_node) -> None:
    node = start_node("solo")
    second = cli(node.data_dir, "start", "--listen", "127.0.0.1:0", timeout=30)
    assert second.returncode == 1
    assert f"PID {node.proc.pid}" in second.stderr
    assert "admin.sock" in second.stderr
    before = (node.data_dir / "identity.key").read_bytes()
    init = cli(node.data_dir, "init")
    assert init.returncode == 1
    assert "refusing to overwrite" in init.stderr
    assert (node.data_dir / "identity.key").read_bytes() == before
    assert cli_json(node.data_dir, "status")["node_id"] == node.node_id


def test_sigkill_then_restart_cleanly(start_node) -> None:
    node = start_node("crashy")
    node_id = node.node_id
    node.kill(signal.SIGKILL)
    assert (node.data_dir / "admin.sock").exists()  # left behind by the crash
    again = start_node("crashy")
    assert again.node_id == node_id
    assert cli(again.data_dir, "stop").returncode == 0
    assert again.wait_exit() == 0


def test_readiness_is_signalled_to_systemd(start_node, tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(30)
        start_node("notified", env=environ(NOTIFY_SOCKET=str(path)))
        assert sock.recv(64) == b"READY=1"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"listen = [", "config.toml"),
        (b'lisen = "127.0.0.1:1"\n', "did you mean 'listen'"),
        (b'[datagram]\nretries = "many"\n', "datagram.retries"),
    ],
)
def test_bad_config_file_is_a_clear_error(tmp_path: Path, content: bytes, expected: str) -> None:
    data_dir = tmp_path / "node"
    assert cli(data_dir, "init").returncode == 0
    (data_dir / "config.toml").write_bytes(content)
    result = cli(data_dir, "start", "--listen", "127.0.0.1:0", timeout=30)
    assert result.returncode == 1
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("content", [None, b"garbage", b"x\n{}"])
def test_missing_or_corrupt_key_file(tmp_path: Path, content: bytes | None) -> None:
    data_dir = tmp_path / "node"
    assert cli(data_dir, "init").returncode == 0
    key = data_dir / "identity.key"
    if content is None:
        key.unlink()
        # start re-initialises an empty data dir, but `id` must say the key is missing
        result = cli(data_dir, "id")
        assert result.returncode == 1
        assert "missing" in result.stderr
        return
    key.write_bytes(content)
    result = cli(data_dir, "start", "--listen", "127.0.0.1:0", timeout=30)
    assert result.returncode == 1
    assert "corrupt" in result.stderr
    assert key.read_bytes() == content  # never replaced


def test_data_dir_that_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = cli(blocker / "node", "start", "--listen", "127.0.0.1:0", timeout=30)
    assert result.returncode == 1
    assert "data dir" in result.stderr
    assert "Traceback" not in result.stderr


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert cli(tmp_path, "no-such-command").returncode == 2
    assert cli(tmp_path, "ping", "not.an.address").returncode == 2
