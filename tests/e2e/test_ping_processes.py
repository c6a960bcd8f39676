"""`plexinode ping` between real nodes on 127.0.0.1: names, rounds, and a reason for each way a
ping can fail, given at once where the cause is known."""

from __future__ import annotations

import socket

import pytest

from plexinode.testing.processes import cli, cli_json

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    """A port nothing listens on (TCP and UDP), for as long as the test needs it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _fails(result, *words: str) -> str:
    """`result` failed with exit 1 and one line on stderr that holds every word."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def test_ping_resolves_names_counts_rounds_and_says_why_it_failed(start_node, tmp_path) -> None:
    bob = start_node("bob")
    bob_port = bob.address.rpartition(":")[2]
    # Alice listens on a name and bootstraps from one: both resolve to 127.0.0.1.
    alice = start_node("alice", "--listen", "localhost:0", "--bootstrap", f"localhost:{bob_port}")
    assert alice.address.startswith("127.0.0.1:")

    # A name is resolved, and the reply is matched to the address it was sent to.
    pong = cli_json(alice.data_dir, "ping", f"localhost:{bob_port}")
    assert pong["node_id"] == bob.node_id
    assert pong["address"] == bob.address
    assert (pong["sent"], pong["received"], len(pong["rtts_ms"])) == (1, 1, 1)
    # The DHT joined through the name: no reply was dropped as unmatched.
    status = cli_json(alice.data_dir, "status")
    assert status["peers"] >= 1
    assert status["datagrams"].get("drop_unmatched_reply", 0) == 0

    # --count: one object with the median and every round trip.
    rounds = cli_json(alice.data_dir, "ping", "--count", "3", "--interval", "50ms", bob.address)
    assert (rounds["sent"], rounds["received"], len(rounds["rtts_ms"])) == (3, 3, 3)
    assert sorted(rounds["rtts_ms"])[1] == rounds["rtt_ms"]
    text = cli(alice.data_dir, "ping", "-c", "2", "--interval", "0s", "--stream", bob.address)
    assert text.returncode == 0, text.stderr
    assert "2 sent, 2 answered (0% lost)" in text.stdout

    # Failures, each with its own reason.
    _fails(cli(alice.data_dir, "ping", "no-such-host.invalid:7000"), "does not resolve")
    _fails(cli(alice.data_dir, "ping", alice.address), "this node's own address")
    _fails(cli(alice.data_dir, "ping", alice.node_id), "this node's own ID")
    # Another node at the address than --node asks for: named, over datagrams and streams.
    assert cli(tmp_path / "carol", "init", "--network", "secret").returncode == 0
    carol = start_node("carol")
    line = _fails(cli(alice.data_dir, "ping", "--node", carol.node_id, bob.address))
    assert f"is {bob.node_id}, not {carol.node_id}" in line
    line = _fails(cli(alice.data_dir, "ping", "--stream", "--node", carol.node_id, bob.address))
    assert bob.node_id[:8] in line or "expected" in line
    nobody = f"127.0.0.1:{_free_port()}"
    _fails(cli(alice.data_dir, "ping", "--timeout", "1s", nobody), "nothing listens there")
    _fails(cli(alice.data_dir, "ping", "--stream", nobody), "nothing listens at")

    # A node of a private network drops our datagrams and hangs up on our handshake.
    for via in ((), ("--stream",)):
        _fails(
            cli(alice.data_dir, "ping", "--timeout", "1s", *via, carol.address),
            "hung up on our handshake",
            "private network",
        )

    # Bad options are usage errors (exit 2), with --json too.
    for bad in (("--count", "0"), ("--timeout", "soon"), ("--node", "nonsense!")):
        result = cli(alice.data_dir, "ping", *bad, bob.address)
        assert result.returncode == 2, (bad, result.stderr)
    assert cli(alice.data_dir, "ping", "--timeout", "0s", bob.address).returncode == 2
