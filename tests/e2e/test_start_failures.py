"""`plexinode start` with real processes: the common ways a start fails are one line and exit 1
(and leave no data dir behind when start made it), a data dir with a long path works for every
command, and what a start prints."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from plexinode.testing.processes import cli, cli_json, node_env

pytestmark = pytest.mark.e2e


@pytest.fixture
def taken_port() -> Iterator[tuple[int, socket.socket, socket.socket]]:
    """A port with a UDP socket bound on 127.0.0.1, and a TCP socket bound (not listening) on
    another free port: (the UDP port, the UDP socket, the TCP socket)."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    udp.bind(("127.0.0.1", 0))
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(1)
    try:
        yield udp.getsockname()[1], udp, tcp
    finally:
        udp.close()
        tcp.close()


def assert_one_line_failure(result: subprocess.CompletedProcess[str], expected: str) -> None:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("plexinode: ")]
    assert len(errors) == 1, result.stderr
    assert expected in errors[0]
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("udp-taken", "Address already in use"),
        ("tcp-taken", "Address already in use"),
        ("192.0.2.1:7420", "not an address of this machine"),  # TEST-NET-1: never local
        ("no-such-host.invalid:7420", "does not resolve"),
    ],
)
def test_an_address_that_cannot_be_bound_is_one_line_and_leaves_no_data_dir(
    tmp_path: Path, taken_port: tuple[int, socket.socket, socket.socket], listen: str, expected: str
) -> None:
    udp_port, _, tcp = taken_port
    if listen == "udp-taken":
        listen = f"127.0.0.1:{udp_port}"
    elif listen == "tcp-taken":
        listen = f"127.0.0.1:{tcp.getsockname()[1]}"
    data_dir = tmp_path / "new" / "node"
    result = cli(data_dir, "start", "--listen", listen, timeout=30)
    assert_one_line_failure(result, f"cannot listen on {listen}")
    assert expected in result.stderr
    # start made the data dir (and its parent), then failed: nothing of it is left.
    assert not (tmp_path / "new").exists()


def test_a_data_dir_that_cannot_be_created(tmp_path: Path) -> None:
    result = cli(Path("/proc/no-such-dir"), "start", "--listen", "127.0.0.1:0", timeout=30)
    assert_one_line_failure(result, "cannot create data dir /proc/no-such-dir")


def test_a_data_dir_with_a_long_path_works_for_every_command(start_node, tmp_path: Path) -> None:
    name = "n" * (120 - len(str(tmp_path)) + 20)
    data_dir = tmp_path / name
    assert len(str(data_dir / "admin.sock")) > 108  # beyond what a Unix socket address holds
    absent = cli(data_dir, "status")
    assert absent.returncode == 3, absent.stderr
    assert "no node is running" in absent.stderr
    node = start_node(name)  # waits until `status` answers through the admin socket
    assert (data_dir / "admin.sock").is_socket()  # where CLI.md says it is
    assert cli_json(data_dir, "status")["node_id"] == node.node_id
    assert cli_json(data_dir, "id")["node_id"] == node.node_id
    assert cli_json(data_dir, "members")[0]["node_id"] == node.node_id
    assert cli_json(data_dir, "stop") == {"stopped": True}
    assert node.wait_exit() == 0
    assert not (data_dir / "admin.sock").exists()
    assert cli(data_dir, "status").returncode == 3
    log = node.log()
    assert "Traceback" not in log
    # One ready line (on stdout); the log on stderr does not repeat it, and a new database's
    # migrations are not news at the default level.
    assert "node ready" not in log
    assert "migrated" not in log


def test_a_failed_start_join_leaves_no_data_dir(start_node, tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    bad = tmp_path / "bad.token"
    bad.write_text("hello\n")
    refused = cli(fresh, "start", "--listen", "127.0.0.1:0", "--join-file", str(bad), timeout=30)
    assert_one_line_failure(refused, "not an invite token")
    assert not fresh.exists()
    missing = cli(fresh, "start", "--listen", "127.0.0.1:0", "--join-file", str(tmp_path / "none"))
    assert_one_line_failure(missing, "cannot read the token")
    assert not fresh.exists()

    inviter = start_node("inviter")
    token = tmp_path / "invite.token"
    token.write_text(cli_json(inviter.data_dir, "invite")["token"])
    assert cli(inviter.data_dir, "stop").returncode == 0
    assert inviter.wait_exit() == 0
    quick = ("--set", "datagram.request_timeout=500ms", "--set", "datagram.retries=0")
    down = cli(
        fresh, "start", "--listen", "127.0.0.1:0", "--join-file", str(token), *quick, timeout=60
    )
    assert_one_line_failure(down, "did not answer")
    assert not fresh.exists()

    # A data dir that start did not make is kept, identity and all.
    assert cli(fresh, "init").returncode == 0
    again = cli(
        fresh, "start", "--listen", "127.0.0.1:0", "--join-file", str(token), *quick, timeout=60
    )
    assert_one_line_failure(again, "did not answer")
    assert (fresh / "identity.key").exists()


def test_log_file_takes_the_logs_and_the_ready_line_is_printed_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "node"
    log_file = data_dir / "node.log"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "plexinode",
            "--data-dir",
            str(data_dir),
            "start",
            "--listen",
            "127.0.0.1:0",
            "--log-file",
            str(log_file),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=node_env(None),
    )
    try:
        assert proc.stdout is not None
        ready = proc.stdout.readline()
        node_id = cli_json(data_dir, "id")["node_id"]
        assert ready.startswith(f"plexinode {node_id} listening on 127.0.0.1:")
        assert cli(data_dir, "stop").returncode == 0
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
    assert out == ""  # the one ready line, read above, and nothing else
    # stderr has the CLI's own progress line (a new data dir), and no log line.
    assert err.splitlines() == [f"initialised {data_dir} for new node {node_id}"]
    logged = log_file.read_text()
    assert logged.count("node ready") == 1
    assert "node stopped" in logged
    assert log_file.stat().st_mode & 0o777 == 0o600
