"""Real processes find each other by node ID through the DHT."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import cli, cli_json

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
