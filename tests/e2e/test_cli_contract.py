"""The CLI contract against real nodes: every command's exit code for bad input, its JSON
fields, and ``--json`` given after the command, errors included.

The commands run in this process (plexinode.cli.main.main, as the console script runs it)
against `plexinode start` processes on 127.0.0.1, so that one node serves many checks.

Exit codes (docs/cli.md): 2 for a malformed argument (a node ID, an address, a duration, a
key) wherever it is given, and for an ambiguous node ID prefix; 1 for a well-formed one that
names nothing known (a node, a tag, a state key, a network key) or that the node refuses;
3 when no node runs for the data dir.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from plexinode.cli.main import main
from plexinode.identity import NodeId
from plexinode.testing.processes import ID_DIFFICULTY, NodeProcess
from tests.e2e.test_membership_processes import wait_until

pytestmark = pytest.mark.e2e

# The fields ../shared/CLI.md (the CLI contract, outside this repository) promises for each
# command's --json output, copied from its "Node" table; scripts rely on them. Commands may
# print more.
CONTRACT: dict[str, set[str]] = {
    "init": {"node_id", "data_dir"},
    "status": {
        "node_id",
        "version",
        "network",
        "address",
        "uptime_s",
        "peers",
        "members",
        "storage",
    },
    "status.members": {"alive", "suspect", "dead", "left", "stopped"},
    "status.storage": {"used_bytes", "quota_bytes"},
    "stop": {"stopped"},
    "id": {"node_id"},
    "ping": {"node_id", "address", "rtt_ms", "rtts_ms", "sent", "received", "via"},
    "peers": {"node_id", "address", "last_seen"},
    "members": {"node_id", "address", "state", "incarnation", "tags"},
    "invite": {"token", "expires"},
    "join": {"network", "bootstrapped"},
    "network revoke": {"node_id", "revoked"},
    "network admit": {"node_id", "admitted"},
    "leave": {"left"},
}
# The commands docs/cli.md documents beyond CLI.md's table, with their fields.
DOCUMENTED: dict[str, set[str]] = {
    "state set": {"key", "value", "deleted", "written_at", "writer"},
    "tags set": {"role"},
    "network key list": {"network", "private", "keys"},
    "network key generate": {"key", "key_id"},
    "dht get": {"records"},
    "network grant": {"public_key", "role", "expires", "granted"},
    "network admin-key generate": {"file", "public_key"},
}
#: The commands of private networks only (test_private_network_commands_...).
PRIVATE = {"network revoke", "network admit", "network grant", "network admin-key generate"}


def run(capsys: pytest.CaptureFixture[str], data_dir: Path, *argv: str) -> tuple[int, str, str]:
    """`plexinode --data-dir DATA_DIR ARGV...`: its exit code, stdout and stderr."""
    with pytest.raises(SystemExit) as info:
        main(["--data-dir", str(data_dir), *argv])
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


def run_json(capsys: pytest.CaptureFixture[str], data_dir: Path, *argv: str) -> Any:
    """ARGV with ``--json`` after it: stdout must be exactly one JSON document."""
    code, out, err = run(capsys, data_dir, *argv, "--json")
    assert code == 0, f"{argv}: {err}"
    return json.loads(out)


def unknown_prefix(*known: str) -> str:
    """An 8-character node ID prefix that none of `known` begins with."""
    return next(p for p in ("22222222", "33333333", "44444444") if not any(
        k.startswith(p) for k in known
    ))  # fmt: skip


def check_exit_codes(
    capsys: pytest.CaptureFixture[str], data_dir: Path, table: list[tuple[tuple[str, ...], int]]
) -> list[str]:
    """Run each command of `table` as text and with ``--json`` after it; the mismatches."""
    wrong = []
    for argv, code in table:
        got, out, err = run(capsys, data_dir, *argv)
        if (got, out) != (code, "") or not err:
            wrong.append(f"{argv}: exit {got} (want {code}), stdout {out!r}, stderr {err!r}")
        got, out, err = run(capsys, data_dir, *argv, "--json")
        try:
            doc = json.loads(out)
        except ValueError:
            doc = None
        if got != code or not isinstance(doc, dict) or doc.get("code") != code:
            wrong.append(f"{argv} --json: exit {got} (want {code}), stdout {out!r}")
        elif not {"error", "code"} <= set(doc) or not doc["error"]:
            wrong.append(f"{argv} --json: not an error document: {doc}")
    return wrong


def test_every_command_exits_as_documented_for_bad_input(start_node, capsys) -> None:
    node: NodeProcess = start_node("node")
    me = node.node_id
    bad_checksum = me[:-1] + ("a" if me[-1] != "a" else "b")
    table: list[tuple[tuple[str, ...], int]] = [
        (("bogus",), 2),
        (("status", "--bogus"), 2),
        (("state", "set", "k"), 2),  # VALUE missing
        (("network", "revoke", "bogus"), 2),
        (("network", "revoke", bad_checksum), 2),
        (("network", "revoke", me[:7]), 2),  # too short a prefix
        (("network", "revoke", unknown_prefix(me)), 1),
        (("network", "revoke", me[:8]), 1),  # this node: refused
        (("dht", "get", "bogus"), 2),
        (("dht", "get", bad_checksum), 2),
        (("dht", "get", unknown_prefix(me)), 1),
        (("dht", "get", "--type", "nope", me), 2),
        (("dht", "get", "--type", "provider", "zz"), 2),
        (("ping", "127.0.0.1:notaport"), 2),
        (("ping", "--count", "0", "127.0.0.1:9"), 2),
        (("ping", "--interval", "soon", "127.0.0.1:9"), 2),
        (("ping", "--node", "bogus!", "127.0.0.1:9"), 2),
        (("ping", "--node", bad_checksum, "127.0.0.1:9"), 2),
        (("ping", unknown_prefix(me)), 1),
        (("ping", me), 1),  # this node
        (("invite", "--expires", "soon"), 2),
        (("invite", "--expires", "31d"), 2),
        (("join", "hello"), 1),  # not a token: docs/cli.md `join`
        (("tags", "rm", "nosuch"), 1),
        (("tags", "set", "my role", "x"), 2),
        (("tags", "set", "a=b", "x"), 2),
        (("tags", "set", "role", "x" * 65), 2),
        (("tags", "set", "version", "9"), 1),  # the node's own
        (("state", "rm", "nosuch"), 1),
        (("state", "rm", "Bad Key"), 2),
        (("state", "set", "Bad Key", "x"), 2),
        (("state", "set", "k", "x" * 257), 2),
        (("state", "set", "net.keyring", "x"), 1),  # the node's own
        (("network", "key", "install", "zz"), 2),
        (("network", "key", "use", "zz"), 2),
        (("network", "key", "use", "0123456789ab"), 1),  # no such key installed
        (("network", "key", "remove", "0123456789ab"), 1),
        (("config", "show", "--bogus"), 2),
        (("completion", "tcsh"), 2),
    ]
    assert check_exit_codes(capsys, node.data_dir, table) == []

    # `tags rm` and `state rm` of something that exists succeed, and then agree: exit 1.
    assert run(capsys, node.data_dir, "state", "set", "motd", "hi")[0] == 0
    assert run(capsys, node.data_dir, "state", "rm", "motd")[0] == 0
    assert run(capsys, node.data_dir, "state", "rm", "motd")[0] == 1
    assert run(capsys, node.data_dir, "tags", "set", "role", "relay")[0] == 0
    assert run(capsys, node.data_dir, "tags", "rm", "role")[0] == 0
    assert run(capsys, node.data_dir, "tags", "rm", "role")[0] == 1

    # A second `stop` finds no node: exit 3.
    assert run_json(capsys, node.data_dir, "stop") == {"stopped": True}
    code, out, _ = run(capsys, node.data_dir, "stop", "--json")
    assert code == 3
    assert json.loads(out)["code"] == 3


def test_every_command_without_a_node_exits_3_unless_its_argument_is_malformed(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLEXINODE_DHT_ID_DIFFICULTY", ID_DIFFICULTY)
    idle = tmp_path / "idle"
    me = run_json(capsys, idle, "init")["node_id"]
    table: list[tuple[tuple[str, ...], int]] = [
        (("status",), 3),
        (("stop",), 3),
        (("leave",), 3),
        (("members",), 3),
        (("peers",), 3),
        (("ping", "127.0.0.1:9"), 3),
        (("invite",), 3),
        (("join", "hello"), 3),
        (("tags", "list"), 3),
        (("tags", "set", "role", "x"), 3),
        (("tags", "set", "my role", "x"), 2),
        (("tags", "rm", "role"), 3),
        (("state", "list"), 3),
        (("state", "set", "k", "v"), 3),
        (("state", "set", "Bad Key", "v"), 2),
        (("state", "rm", "k"), 3),
        (("network", "key", "list"), 3),
        (("network", "key", "install", "ab" * 32), 3),
        (("network", "key", "install", "zz"), 2),
        (("network", "revoke", me), 3),
        (("network", "revoke", me[:8]), 3),  # a prefix is resolved by the node
        (("network", "revoke", "bogus"), 2),
        (("dht", "get", me), 3),
        (("dht", "get", "bogus"), 2),
        (("invite", "--expires", "soon"), 2),
        (("backup", "verify", "0123456789abcdef"), 3),
    ]
    assert check_exit_codes(capsys, idle, table) == []
    assert run(capsys, tmp_path / "empty", "id")[0] == 1  # no identity to read: failed
    shown = run_json(capsys, idle, "id")
    assert shown["node_id"] == me
    assert NodeId.from_public_key(bytes.fromhex(shown["public_key"])) == NodeId.parse(me)
    assert run(capsys, idle, "config", "show")[0] == 0


def test_setting_a_tag_to_its_value_changes_nothing(start_node, capsys) -> None:
    node: NodeProcess = start_node("node")

    def incarnation() -> int:
        code, out, _ = run(capsys, node.data_dir, "--json", "members")
        assert code == 0
        return int(next(r["incarnation"] for r in json.loads(out) if r["node_id"] == node.node_id))

    before = incarnation()
    assert run(capsys, node.data_dir, "tags", "set", "name", "kitchen")[0] == 0
    assert incarnation() == before + 1
    code, out, _ = run(capsys, node.data_dir, "tags", "set", "name", "kitchen")
    assert code == 0
    assert "name = kitchen" in out
    assert incarnation() == before + 1  # the same value again: no new incarnation
    assert "4 more tags can be set" in out  # 8 at most, 3 the node's own, `name` set
    for i in range(4):
        assert run(capsys, node.data_dir, "tags", "set", f"t{i}", "v")[0] == 0
    code, _, err = run(capsys, node.data_dir, "tags", "set", "one-more", "v")
    assert code == 1
    assert "the most a member may carry (8, of which 3 are set by the node: 5 are yours)" in err


def test_every_command_prints_the_contract_fields_with_json_after_it(
    start_node, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLEXINODE_DHT_ID_DIFFICULTY", ID_DIFFICULTY)
    a: NodeProcess = start_node("a")
    b: NodeProcess = start_node("b")
    docs: dict[str, Any] = {}

    docs["init"] = run_json(capsys, tmp_path / "fresh", "init")
    docs["invite"] = invited = run_json(capsys, a.data_dir, "invite", "--expires", "1h")
    assert invited["expires"] > time.time() + 3000
    docs["join"] = run_json(capsys, b.data_dir, "join", invited["token"])
    wait_until(
        lambda: {r["node_id"] for r in run_json(capsys, a.data_dir, "peers")} == {b.node_id},
        30,
        "a has b in its routing table",
    )
    docs["status"] = run_json(capsys, a.data_dir, "status")
    docs["id"] = run_json(capsys, a.data_dir, "id")
    docs["ping"] = run_json(capsys, a.data_dir, "ping", b.address)
    by_prefix = run_json(capsys, a.data_dir, "ping", b.node_id[:8], "--node", b.node_id[:10])
    assert by_prefix["node_id"] == b.node_id
    code, _, err = run(capsys, a.data_dir, "ping", "localhost")
    assert code == 1  # a host without its port, read as an ID prefix no known node has
    assert "is not HOST:PORT" in err
    docs["peers"] = run_json(capsys, a.data_dir, "peers")
    docs["members"] = run_json(capsys, a.data_dir, "members")
    docs["state set"] = run_json(capsys, a.data_dir, "state", "set", "motd", "hi")
    docs["tags set"] = run_json(capsys, a.data_dir, "tags", "set", "role", "relay")
    docs["network key list"] = run_json(capsys, a.data_dir, "network", "key", "list")
    docs["network key generate"] = run_json(capsys, a.data_dir, "network", "key", "generate")
    # b's ID shortened to 8 characters: a knows it (a member, a routing-table contact).
    docs["dht get"] = run_json(capsys, a.data_dir, "dht", "get", b.node_id[:8])
    docs["leave"] = run_json(capsys, b.data_dir, "leave")
    docs["stop"] = run_json(capsys, a.data_dir, "stop")

    missing = {}
    for command, fields in {**CONTRACT, **DOCUMENTED}.items():
        if command in PRIVATE:
            continue
        name, _, part = command.partition(".")
        doc = docs[name][part] if part else docs[name]
        rows = doc if isinstance(doc, list) else [doc]
        assert rows, command
        for row in rows:
            if not fields <= set(row):
                missing[command] = sorted(fields - set(row))
    assert missing == {}
    assert docs["leave"]["left"] is True
    assert docs["stop"] == {"stopped": True}
    assert docs["ping"]["node_id"] == b.node_id
    assert [r["publisher"] for r in docs["dht get"]["records"]] == [b.node_id]
    assert {m["node_id"] for m in docs["members"]} == {a.node_id, b.node_id}
    assert a.wait_exit() == 0
    assert b.wait_exit() == 0


def test_private_network_commands_print_the_contract_fields(
    start_node, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLEXINODE_DHT_ID_DIFFICULTY", ID_DIFFICULTY)
    created = run_json(capsys, tmp_path / "home0", "init", "--network", "home")
    assert {"node_id", "data_dir"} <= set(created)
    a: NodeProcess = start_node("home0")
    ticket = run_json(capsys, a.data_dir, "invite", "--expires", "1h")
    assert {"token", "expires"} <= set(ticket)
    path = tmp_path / "ticket"
    path.write_text(ticket["token"])
    b: NodeProcess = start_node("home1", "--join-file", str(path))
    # b is a member, not an inviter: it may invite only with an admin key's say-so
    code, _, err = run(capsys, b.data_dir, "invite")
    assert code == 1
    assert "may not admit members" in err
    root_key = str(a.data_dir / "root.key")
    delegated = run_json(capsys, b.data_dir, "invite", "--expires", "10m", "--admin-key", root_key)
    assert delegated["token"].startswith("plexinode-ticket-1:")
    docs: dict[str, Any] = {}
    key_file = tmp_path / "admin.key"
    docs["network admin-key generate"] = run_json(
        capsys, a.data_dir, "network", "admin-key", "generate", str(key_file)
    )
    admin = docs["network admin-key generate"]["public_key"]
    docs["network grant"] = run_json(capsys, a.data_dir, "network", "grant", "admin", admin)
    wait_until(
        lambda: run(capsys, a.data_dir, "network", "admit", b.node_id[:8])[0] == 0,
        30,
        "a knows b's key (b is a member a has heard from)",
    )
    docs["network admit"] = run_json(
        capsys, a.data_dir, "network", "admit", b.node_id[:8], "--admin-key", str(key_file)
    )
    docs["network revoke"] = run_json(
        capsys, a.data_dir, "network", "revoke", b.node_id[:8], "--admin-key", str(key_file)
    )
    # an admin key file is revoked by its public key, and only by the root
    code, _, err = run(capsys, a.data_dir, "network", "revoke", admin, "--admin-key", str(key_file))
    assert code == 1
    assert "only the root key revokes an admin" in err
    revoked_admin = run_json(capsys, a.data_dir, "network", "revoke", admin, "--void")
    assert revoked_admin["public_key"] == admin
    assert revoked_admin["revoked"] is True
    missing = {}
    for command in PRIVATE:
        fields = {**CONTRACT, **DOCUMENTED}[command]
        if not fields <= set(docs[command]):
            missing[command] = sorted(fields - set(docs[command]))
    assert missing == {}
    assert docs["network revoke"] == {"node_id": b.node_id, "revoked": True}
    assert docs["network admit"]["admitted"] is True
    # bad input: one line and the documented exit code
    table: list[tuple[tuple[str, ...], int]] = [
        (("network", "grant", "owner", admin), 2),
        (("network", "grant", "member", "zz"), 2),
        (("network", "grant", "member", admin, "--expires", "999d"), 2),
        (("network", "grant", "admin", admin, "--admin-key", str(key_file)), 1),  # not root
        (("network", "grant", "member", admin, "--admin-key", str(tmp_path / "none")), 1),
        (("network", "admit", unknown_prefix(a.node_id, b.node_id)), 1),
        (("network", "admin-key", "generate", str(key_file)), 1),  # never overwritten
        (("invite", "--admin-key", str(tmp_path / "none")), 1),
    ]
    assert check_exit_codes(capsys, a.data_dir, table) == []
