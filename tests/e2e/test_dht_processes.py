"""Real processes find each other by node ID through the DHT."""

from __future__ import annotations

import time

import pytest

from plexinode.testing.processes import cli, cli_json

pytestmark = pytest.mark.e2e


def test_nine_nodes_find_each_other_by_id(start_node) -> None:
    first = start_node("n0")
    nodes = [first]
    for i in range(1, 8):
        nodes.append(start_node(f"n{i}", "--bootstrap", first.address))
    assert cli_json(first.data_dir, "stop") == {"stopped": True}
    assert first.wait_exit() == 0
    survivors = nodes[1:]
    ninth = start_node("n8", "--bootstrap", survivors[2].address)
    everyone = [*survivors, ninth]
    for node in everyone:
        for other in everyone:
            if other is node:
                continue
            result = cli(node.data_dir, "--json", "ping", other.node_id)
            assert result.returncode == 0, (node.data_dir.name, other.data_dir.name, result.stderr)
    peers = cli_json(ninth.data_dir, "peers")
    assert {p["node_id"] for p in peers} <= {n.node_id for n in nodes}
    assert len(peers) >= 1
    assert all(set(p) == {"node_id", "address", "last_seen"} for p in peers)
    gone = cli(ninth.data_dir, "ping", first.node_id, timeout=120)
    assert gone.returncode == 1


def test_dht_get_shows_the_peer_records_the_network_holds(start_node) -> None:
    first = start_node("first")
    # One node listens on every address: it learns its own from what the others report.
    wildcard = start_node("wildcard", "--bootstrap", first.address, "--listen", "0.0.0.0:0")
    others = [start_node(f"n{i}", "--bootstrap", first.address) for i in range(3)]
    port = wildcard.address.rsplit(":", 1)[1]
    for node in (first, *others):
        shown = cli_json(node.data_dir, "dht", "get", others[0].node_id)
        assert [r["addresses"] for r in shown["records"]][:1] == [[others[0].address]]
        assert shown["records"][0]["publisher"] == others[0].node_id
        assert shown["records"][0]["expires_in_s"] > 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the pongs that report its address come in
        status = cli_json(wildcard.data_dir, "status")
        if status["dht"]["addresses"]:
            break
        time.sleep(0.5)
    assert status["dht"]["addresses"] == [f"127.0.0.1:{port}"]
    text = cli(first.data_dir, "dht", "get", others[1].node_id)
    assert text.returncode == 0
    assert others[1].address in text.stdout
    missing = cli(first.data_dir, "dht", "get", "--type", "provider", "00" * 32)
    assert missing.returncode == 0
    assert "no provider record" in missing.stdout
    for argv, message in (
        (["dht", "get", "--type", "nope", others[1].node_id], "unknown record type"),
        (["dht", "get", "not_a_node_id"], "invalid node ID"),
        (["dht", "get", "--type", "provider", "abc"], "64 hex digits"),
    ):
        bad = cli(first.data_dir, *argv)
        assert bad.returncode == 2, bad.stderr  # malformed: a usage error
        assert message in bad.stderr
