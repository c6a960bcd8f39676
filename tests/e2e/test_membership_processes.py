"""Real processes on loopback: members see each other, a killed node is declared dead, a
restarted one is alive again, a node that leaves is seen as left."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from plexinode.testing.processes import NodeProcess, cli, cli_json

pytestmark = pytest.mark.e2e


def states(node: NodeProcess) -> dict[str, tuple[str, int]]:
    return {
        m["node_id"]: (m["state"], m["incarnation"]) for m in cli_json(node.data_dir, "members")
    }


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> float:
    """Poll a real cluster (wall-clock time) until `condition()`; returns the seconds taken."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout:.0f}s: {what}")
        time.sleep(0.25)
    return time.monotonic() - started


def test_five_nodes_detect_a_killed_node_and_see_it_again_after_a_restart(start_node) -> None:
    first = start_node("m0")
    nodes = [first] + [start_node(f"m{i}", "--bootstrap", first.address) for i in range(1, 5)]
    ids = {n.node_id for n in nodes}

    def everyone_alive(group: list[NodeProcess]) -> bool:
        return all(
            {i for i, (state, _) in states(n).items() if state == "alive"} >= ids for n in group
        )

    wait_until(lambda: everyone_alive(nodes), 30, "all five list each other alive")
    members = cli_json(first.data_dir, "members")
    assert all(set(m) >= {"node_id", "address", "state", "incarnation", "tags"} for m in members)
    assert cli_json(first.data_dir, "status")["members"]["alive"] == 5
    listing = cli(first.data_dir, "members")
    assert listing.returncode == 0
    assert listing.stdout.count("alive") == 5
    assert "(this node)" in listing.stdout

    # The cluster state: set on one node, listed on another.
    written = cli_json(first.data_dir, "state", "set", "site.motd", "hello")
    assert written["key"] == "site.motd"
    assert written["writer"] == first.node_id

    def motd(node: NodeProcess) -> str | None:
        rows = cli_json(node.data_dir, "state", "list")
        return next((r["value"] for r in rows if r["key"] == "site.motd"), None)

    wait_until(lambda: motd(nodes[4]) == "hello", 15, "the state reaches another node")
    bad = cli(first.data_dir, "state", "set", "Not A Key", "x")
    assert bad.returncode == 2  # a malformed argument
    assert "state key" in bad.stderr

    victim = nodes[2]
    before = states(first)[victim.node_id][1]
    victim.kill()
    others = [n for n in nodes if n is not victim]
    took = wait_until(
        lambda: all(states(n).get(victim.node_id, ("", 0))[0] == "dead" for n in others),
        15,
        "every other node lists the killed node dead",
    )
    print(f"killed node listed dead everywhere after {took:.1f}s")
    assert cli_json(first.data_dir, "status")["members"]["dead"] == 1

    # The same command line (as a service manager would): same identity, a new port.
    again = start_node("m2", "--bootstrap", first.address)
    assert again.node_id == victim.node_id
    wait_until(lambda: everyone_alive([*others, again]), 30, "the restarted node is alive again")
    assert states(first)[victim.node_id][1] > before
    assert motd(again) == "hello"  # the restarted node got the state in its first push-pull
    assert cli_json(nodes[1].data_dir, "state", "rm", "site.motd")["deleted"] is True
    wait_until(lambda: motd(again) is None, 15, "the delete reaches the restarted node")

    # A graceful leave: the others see `left`, not `dead`.
    leaver = others[-1]
    result = cli(leaver.data_dir, "--json", "leave", timeout=60)
    assert result.returncode == 0, result.stderr
    assert leaver.wait_exit() == 0
    wait_until(
        lambda: all(states(n)[leaver.node_id][0] == "left" for n in (first, again)),
        15,
        "the others list the leaver as left",
    )


def test_tags_set_at_run_time_reach_other_members_and_survive_a_restart(start_node) -> None:
    a = start_node("a")
    b = start_node("b", "--bootstrap", a.address)

    def tags_of(observer: NodeProcess, node: NodeProcess) -> dict[str, str]:
        listed = {m["node_id"]: m for m in cli_json(observer.data_dir, "members")}
        return listed[node.node_id]["tags"] if node.node_id in listed else {}

    wait_until(lambda: tags_of(a, b), 30, "a lists b")
    assert tags_of(a, b)["capacity"] == str(10 << 30)  # the default storage quota
    assert cli_json(b.data_dir, "tags", "set", "role", "relay")["role"] == "relay"
    wait_until(lambda: tags_of(a, b).get("role") == "relay", 15, "a sees b's new tag")
    refused = cli(b.data_dir, "tags", "set", "version", "9.9")
    assert refused.returncode == 1
    assert "set by the node itself" in refused.stderr
    too_long = cli(b.data_dir, "tags", "set", "site", "x" * 65)
    assert too_long.returncode == 2  # a malformed argument
    assert cli_json(b.data_dir, "tags", "set", "site", "attic")["site"] == "attic"
    assert "site" not in cli_json(b.data_dir, "tags", "rm", "site")
    assert cli(b.data_dir, "tags", "rm", "site").returncode == 1  # no such tag any more
    assert cli(b.data_dir, "stop").returncode == 0
    b.wait_exit()
    b = start_node("b", "--bootstrap", a.address)
    assert cli_json(b.data_dir, "tags", "list")["role"] == "relay"
    wait_until(lambda: tags_of(a, b).get("role") == "relay", 30, "a sees b's tag after restart")
