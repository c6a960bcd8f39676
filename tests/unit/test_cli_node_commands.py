"""CLI commands that talk to a running node, in-process, against an admin socket that serves
canned answers: argument handling, text rendering, JSON output, and error lines."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import trio

from plexinode.admin.reporting import Reporting
from plexinode.admin.server import AdminServer
from plexinode.cli.context import accept_global_options
from plexinode.cli.main import main
from plexinode.cli.nodeids import looks_like_node_id
from plexinode.datadir import socket_path
from plexinode.errors import AdminError
from plexinode.identity import Identity
from plexinode.net.certificates import Revocation
from plexinode.security.admin_keys import ROOT_KEY_FILE, write_admin_key
from plexinode.security.statements import decode_statement
from plexinode.shards.progress import Progress, Report

ME = str(Identity.from_seed(bytes(32)).node_id)
OTHER = str(Identity.from_seed(bytes([1]) * 32).node_id)
MEMBERS = [
    {
        "node_id": ME,
        "address": "127.0.0.1:7001",
        "state": "alive",
        "incarnation": 0,
        "tags": {"version": "0.1.0"},
        "self": True,
    },
    {
        "node_id": OTHER,
        "address": "127.0.0.1:7002",
        "state": "dead",
        "incarnation": 3,
        "tags": {},
        "self": False,
    },
]
ENTRY = {"key": "net.motd", "value": "hi", "deleted": False, "written_at": 1.5e9, "writer": ME}
KEYS = {
    "network": "home",
    "private": True,
    "keys": [
        {
            "key_id": "0123456789ab",
            "primary": True,
            "retired": False,
            "holders": 3,
            "senders": 2,
            "members": 3,
        },
        {
            "key_id": "ba9876543210",
            "primary": False,
            "retired": False,
            "holders": 3,
            "senders": 1,
            "members": 3,
        },
        {"key_id": "00000000aaaa", "primary": False, "retired": True},
    ],
    "pending": ["ffffffffffff"],
}


class Stub:
    """An admin socket in a thread, answering each command with ``answers[name](args)``."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        # An open network unless a test says otherwise: no root key.
        self.answers: dict[str, Any] = {
            "authority_info": lambda args: {"network": "open", "root": "", "public_key": ""}
        }
        self.calls: list[tuple[str, dict[str, Any]]] = []
        #: What the commands that report progress report before they answer.
        self.progress: dict[str, list[Progress]] = {}
        self._ready = threading.Event()
        self._stop: tuple[Any, trio.CancelScope] | None = None
        self._thread = threading.Thread(target=trio.run, args=(self._serve,))

    async def _serve(self) -> None:
        server = AdminServer(socket_path(self.data_dir))
        for name in (
            "status",
            "peers",
            "members",
            "state_list",
            "state_set",
            "tags_list",
            "tags_set",
            "invite",
            "join",
            "network_key",
            "leave",
            "revoke",
            "resolve",
            "dht_get",
            "authority_info",
            "authority_submit",
            "id",
            "backup_list",
            "backup_show",
            "backup_rm",
        ):
            server.command(name, self._handler(name))
        for name in ("backup_create", "backup_verify", "backup_restore"):
            server.command(name, Reporting(self._reporting(name)))
        async with trio.open_nursery() as nursery:
            self._stop = (trio.lowlevel.current_trio_token(), nursery.cancel_scope)
            await nursery.start(server.run)
            self._ready.set()

    def _handler(self, name: str) -> Any:
        async def handle(args: dict[str, Any]) -> Any:
            self.calls.append((name, args))
            answer = self.answers[name]
            if isinstance(answer, Exception):
                raise answer
            return answer(args) if callable(answer) else answer

        return handle

    def _reporting(self, name: str) -> Any:
        answer = self._handler(name)

        async def handle(args: dict[str, Any], report: Report) -> Any:
            for progress in self.progress.get(name, []):
                report(progress)
                await trio.lowlevel.checkpoint()
            return await answer(args)

        return handle

    def __enter__(self) -> Stub:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        token, scope = self._stop
        token.run_sync_soon(scope.cancel)
        self._thread.join(10)


@pytest.fixture
def stub(tmp_path: Path) -> Iterator[Stub]:
    tmp_path.chmod(0o700)
    with Stub(tmp_path) as running:
        yield running


def run(capsys, stub: Stub, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(["--data-dir", str(stub.data_dir), *argv])
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


def test_members_text_and_json(stub: Stub, capsys) -> None:
    stub.answers["members"] = MEMBERS
    code, out, _ = run(capsys, stub, "members")
    assert code == 0
    assert f"{ME[:8]}  - (this node)" in out
    assert ME not in out  # the table shows short IDs; --json has them whole
    assert "0.1.0" in out
    assert "dead" in out
    code, out, _ = run(capsys, stub, "--json", "members")
    assert json.loads(out) == MEMBERS
    stub.answers["members"] = []
    assert "not ready" in run(capsys, stub, "members")[1]


def test_members_fit_100_columns_with_names_and_a_line_per_tag(stub: Stub, capsys) -> None:
    tags = {
        "name": "kitchen",
        "version": "0.1.0",
        "capacity": str(10 * 1024**3),
        "keys": "0123456789ab",
        "role": "relay",
        "site": "x" * 64,
    }
    stub.answers["members"] = [
        {**MEMBERS[0], "address": "[2001:db8::1]:7420", "tags": tags},
        {**MEMBERS[1], "node_id": ME[:8] + OTHER[8:]},  # shares ME's first 8 characters
    ]
    code, out, _ = run(capsys, stub, "members")
    assert code == 0
    lines = out.rstrip("\n").split("\n")
    assert max(map(len, lines)) <= 100
    assert lines[0].split() == [
        "node", "name", "address", "state", "inc", "version", "capacity", "tags"
    ]  # fmt: skip
    # Two shown IDs share 8 characters: both are shown with one more.
    assert lines[1].startswith(ME[:9] + "  kitchen (this node)  [2001:db8::1]:7420  alive")
    assert "10.0 GiB" in lines[1]
    assert lines[1].rstrip().endswith("keys=0123456789ab")
    assert lines[2].strip() == "role=relay"
    assert lines[3].strip().startswith("site=xxx")
    assert lines[3].endswith("…")  # cut to fit; --json has it whole
    assert lines[4].startswith(ME[:8] + OTHER[8])
    assert json.loads(run(capsys, stub, "members", "--json")[1])[0]["tags"] == tags


def test_state_commands(stub: Stub, capsys) -> None:
    stub.answers["state_list"] = [ENTRY, {**ENTRY, "key": "gone", "value": None, "deleted": True}]
    code, out, _ = run(capsys, stub, "state", "list")
    assert code == 0
    assert "net.motd" in out
    assert ME[:8] in out
    assert "gone" not in out
    assert len(json.loads(run(capsys, stub, "--json", "state", "list", "--all")[1])) == 2
    stub.answers["state_list"] = []
    assert "empty" in run(capsys, stub, "state", "list")[1]
    stub.answers["state_set"] = lambda args: {
        **ENTRY,
        "key": args["key"],
        "value": args["value"],
        "deleted": args["value"] is None,
    }
    assert "net.motd = on" in run(capsys, stub, "state", "set", "net.motd", "on")[1]
    assert "deleted" in run(capsys, stub, "state", "rm", "net.motd")[1]
    assert stub.calls[-1] == ("state_set", {"key": "net.motd", "value": None})
    stub.answers["state_set"] = AdminError("the cluster state has no key 'k'")
    code, out, err = run(capsys, stub, "state", "rm", "k")
    assert code == 1
    assert out == ""
    assert "no key 'k'" in err
    assert err.count("\n") == 1


def test_state_list_all_shows_the_tombstones_in_text_too(stub: Stub, capsys) -> None:
    gone = {**ENTRY, "key": "gone", "value": None, "deleted": True}
    stub.answers["state_list"] = [gone]
    code, out, _ = run(capsys, stub, "state", "list", "--all")
    assert code == 0
    assert "gone" in out
    assert "(deleted)" in out
    assert "empty" not in out
    code, out, _ = run(capsys, stub, "state", "list")
    assert "gone" not in out
    assert "1 deleted keys: `state list --all`" in out


def test_malformed_state_keys_and_values_are_usage_errors(stub: Stub, capsys) -> None:
    for argv in (
        ("state", "set", "Bad Key", "x"),
        ("state", "set", "k", "x" * 257),
        ("state", "rm", "a=b"),
    ):
        code, out, err = run(capsys, stub, *argv)
        assert (code, out) == (2, ""), argv
        assert "a state" in err
    assert stub.calls == []  # refused before the node is asked


def test_invite_and_join(stub: Stub, capsys) -> None:
    stub.answers["invite"] = lambda args: {
        "token": f"plexinode-invite-2:{int(args['expires'])}",
        "expires": 1.7e9 + args["expires"],
        "network": "home",
        "addresses": [],
    }
    code, out, err = run(capsys, stub, "invite", "--expires", "2h")
    assert (code, out.strip()) == (0, "plexinode-invite-2:7200")
    assert "valid until" in err
    for bad in ("0s", "1s", "500ms", "59s", "31d", "soon"):
        assert run(capsys, stub, "invite", "--expires", bad)[0] == 2, bad
    assert run(capsys, stub, "invite", "--expires", "1m")[0] == 0
    assert set(json.loads(run(capsys, stub, "invite", "--json")[1])) >= {"token", "expires"}
    stub.answers["join"] = {"network": "home", "bootstrapped": 4, "members": 3}
    code, out, _ = run(capsys, stub, "join", "TOKEN")
    assert code == 0
    assert "joined network home: 4 DHT contacts, 3 members" in out
    assert stub.calls[-1] == ("join", {"token": "TOKEN"})


def test_network_key_commands(stub: Stub, capsys) -> None:
    stub.answers["network_key"] = KEYS
    code, out, _ = run(capsys, stub, "network", "key", "list")
    assert code == 0
    assert "network home: private" in out
    assert "0123456789ab  primary  installed on 3/3 live members, primary on 2" in out
    assert "00000000aaaa  retired" in out
    assert "ffffffffffff  in the network's plan, not received here yet" in out
    key = "ab" * 32
    for action in ("install", "remove"):
        assert run(capsys, stub, "network", "key", action, key)[0] == 0
        assert stub.calls[-1] == ("network_key", {"action": action, "key": key})
    for flags, force in (((), False), (("--force",), True)):
        assert run(capsys, stub, "network", "key", "use", "0123456789ab", *flags)[0] == 0
        assert stub.calls[-1] == (
            "network_key",
            {"action": "use", "key": "0123456789ab", "force": force},
        )
    calls = len(stub.calls)
    for argv in (("install", "0123456789ab"), ("use", "K"), ("remove", "ab" * 31)):
        code, _, err = run(capsys, stub, "network", "key", *argv)
        assert code == 2, argv
        assert "hex digits" in err
    assert len(stub.calls) == calls  # malformed keys never reach the node
    # on an open network there is nobody to revoke
    code, _, err = run(capsys, stub, "network", "revoke", OTHER)
    assert code == 1
    assert "has no root key" in err
    # on a private network the CLI signs the revocation with the root key and submits it
    private_network(stub)
    out = run(capsys, stub, "network", "revoke", OTHER)[1]
    assert out.startswith(f"revoked {OTHER}: ")
    name, args = stub.calls[-1]
    assert name == "authority_submit"
    revocation = decode_statement(bytes.fromhex(args["statements"][0]))
    assert isinstance(revocation, Revocation)
    assert (revocation.issuer, revocation.subject) == (ROOT_KEY.public_key, OTHER_KEY)
    revocation.verify_signature()
    assert json.loads(run(capsys, stub, "network", "revoke", OTHER, "--json")[1]) == {
        "node_id": OTHER,
        "revoked": True,
    }
    stub.answers["authority_submit"] = lambda args: {"added": 0, "refused": ["it is late"]}
    code, _, err = run(capsys, stub, "network", "revoke", OTHER)
    assert (code, err.strip()) == (1, "plexinode: the node refused it: it is late")
    stub.answers["network_key"] = {**KEYS, "private": False}
    assert "open" in run(capsys, stub, "network", "key", "list")[1]
    generated = json.loads(run(capsys, stub, "--json", "network", "key", "generate")[1])
    assert len(bytes.fromhex(generated["key"])) == 32
    assert len(generated["key_id"]) == 12


def test_leave(stub: Stub, capsys) -> None:
    stub.answers["leave"] = {"left": True, "acknowledged_by": 2}
    code, out, _ = run(capsys, stub, "leave")
    assert code == 0
    assert "2 members acknowledged" in out


STATUS = {
    "node_id": ME,
    "version": "0.1.0",
    "network": "open",
    "address": "127.0.0.1:7001",
    "uptime_s": 2 * 3600 + 59 * 60 + 30.5,
    "peers": 2,
    "members": {"alive": 2, "suspect": 0, "dead": 1, "left": 0},
    "storage": {"used_bytes": 48 * 1024 + 300, "quota_bytes": 10 * 1024**3},
}


def test_status_reads_as_sizes_and_durations(stub: Stub, capsys) -> None:
    stub.answers["status"] = STATUS
    code, out, _ = run(capsys, stub, "status")
    assert code == 0
    assert "uptime    2h59m\n" in out
    assert "storage   48.3 KiB of 10.0 GiB\n" in out
    assert "members   2 alive, 0 suspect, 1 dead, 0 left\n" in out
    assert json.loads(run(capsys, stub, "status", "--json")[1]) == STATUS
    backlog = {**STATUS, "storage": {**STATUS["storage"], "repair_backlog": 2}}
    stub.answers["status"] = backlog
    assert "storage   48.3 KiB of 10.0 GiB, repair backlog 2\n" in run(capsys, stub, "status")[1]


def test_peers_show_short_ids_and_how_long_ago(stub: Stub, capsys) -> None:
    now = time.time()
    stub.answers["peers"] = [
        {"node_id": OTHER, "address": "127.0.0.1:7002", "last_seen": now - 200},
    ]
    code, out, _ = run(capsys, stub, "peers")
    assert code == 0
    assert out.split("\n")[1].split() == [OTHER[:8], "127.0.0.1:7002", "3", "min", "ago"]


@pytest.mark.parametrize(
    "argv",
    [
        ("--json", "members"),
        ("members", "--json"),
        ("--data-dir", "/nonexistent", "members", "--data-dir", "{dir}", "--json"),
        ("--json", "--log-level", "debug", "members", "--log-level", "info"),
    ],
)
def test_global_options_before_or_after_the_command(stub: Stub, capsys, argv) -> None:
    stub.answers["members"] = MEMBERS
    argv = [a.replace("{dir}", str(stub.data_dir)) for a in argv]
    with pytest.raises(SystemExit) as info:
        main(argv if "--data-dir" in argv else ["--data-dir", str(stub.data_dir), *argv])
    out, _ = capsys.readouterr()
    assert info.value.code == 0
    assert json.loads(out) == MEMBERS


def test_global_options_after_a_subcommand_of_a_group(stub: Stub, capsys) -> None:
    stub.answers["state_list"] = [ENTRY]
    assert json.loads(run(capsys, stub, "state", "list", "--json")[1]) == [ENTRY]
    assert json.loads(run(capsys, stub, "state", "--json", "list")[1]) == [ENTRY]
    stub.answers["network_key"] = KEYS
    assert json.loads(run(capsys, stub, "network", "key", "list", "--json")[1]) == KEYS


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (("bogus", "--json"), 2),
        (("members", "--bogus", "--json"), 2),
        (("state", "set", "--json"), 2),
        (("network", "revoke", "not-an-id", "--json"), 2),
        (("invite", "--expires", "soon", "--json"), 2),
        (("tags", "set", "a b", "x", "--json"), 2),
        (("state", "rm", "nosuch", "--json"), 1),
    ],
)
def test_json_errors_are_one_document_on_stdout(stub: Stub, capsys, argv, code) -> None:
    stub.answers["state_set"] = AdminError("the cluster state has no key 'nosuch'")
    got, out, err = run(capsys, stub, *argv)
    assert got == code
    doc = json.loads(out)
    assert set(doc) == {"error", "code"}
    assert doc["code"] == code
    assert doc["error"]
    assert doc["error"] in err  # and the line on stderr, for a person


def test_json_errors_without_a_node(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--data-dir", str(tmp_path), "status", "--json"])
    out, _ = capsys.readouterr()
    assert info.value.code == 3
    assert json.loads(out) == {"error": f"no node is running for {tmp_path}", "code": 3}
    with pytest.raises(SystemExit) as info:
        main(["--data-dir", str(tmp_path), "status", "--", "--json"])  # an argument, not --json
    out, _ = capsys.readouterr()
    assert (info.value.code, out) == (2, "")


ROOT_KEY = Identity.from_seed(b"r" * 32)
OTHER_KEY = b"o" * 32


def private_network(stub: Stub) -> None:
    """The stub answers as a node of a private network whose root key is in its data dir."""
    write_admin_key(stub.data_dir / ROOT_KEY_FILE, ROOT_KEY)
    stub.answers["authority_info"] = lambda args: {
        "network": "home",
        "root": ROOT_KEY.public_key.hex(),
        "public_key": OTHER_KEY.hex() if "node_id" in args else "",
    }
    stub.answers["id"] = lambda args: {"node_id": ME}
    stub.answers["authority_submit"] = lambda args: {"added": 1, "refused": []}


def test_node_id_prefixes_resolve_through_the_node(stub: Stub, capsys) -> None:
    known = [ME, OTHER, OTHER[:10] + ME[10:]]
    stub.answers["resolve"] = lambda args: {
        "matches": [k for k in known if k.startswith(args["prefix"])]
    }
    private_network(stub)
    code, out, _ = run(capsys, stub, "network", "revoke", OTHER[:8].upper() + OTHER[8:11], "--json")
    assert (code, json.loads(out)) == (0, {"node_id": OTHER, "revoked": True})
    assert stub.calls[-4][0] == "resolve"
    assert stub.calls[-4][1] == {"prefix": OTHER[:11]}
    assert stub.calls[-3] == ("authority_info", {"node_id": OTHER})
    # Ambiguous: exit 2, naming the candidates (all of them in the JSON error).
    code, out, err = run(capsys, stub, "network", "revoke", OTHER[:8])
    assert (code, out) == (2, "")
    assert "is the beginning of 2 known node IDs" in err
    assert OTHER in err
    assert OTHER[:10] + ME[10:] in err
    code, out, _ = run(capsys, stub, "network", "revoke", OTHER[:9], "--json")
    assert code == 2
    assert json.loads(out)["candidates"] == sorted([OTHER, OTHER[:10] + ME[10:]])
    # One more character tells them apart.
    assert run(capsys, stub, "network", "revoke", OTHER[:11])[0] == 0
    assert stub.calls[-1][0] == "authority_submit"
    # Unknown: exit 1. Malformed (too short, not base32, a bad checksum): exit 2, no call.
    unknown = next(p for p in ("22222222", "33333333") if not any(k.startswith(p) for k in known))
    code, _, err = run(capsys, stub, "network", "revoke", unknown)
    assert code == 1
    assert f"no node ID known to this node begins with {unknown!r}" in err
    calls = len(stub.calls)
    for bad in (ME[:7], "abcdefg1", ME[:-1] + ("a" if ME[-1] != "a" else "b"), ME + "a"):
        assert run(capsys, stub, "network", "revoke", bad)[0] == 2, bad
    assert len(stub.calls) == calls
    # dht get takes a prefix too, for peer records.
    stub.answers["dht_get"] = {"records": []}
    code, out, _ = run(capsys, stub, "dht", "get", ME[:12])
    assert code == 0
    assert stub.calls[-1] == ("dht_get", {"type": "peer", "key": ME})
    assert f"no peer record found under {ME}" in out


def test_dht_get_checks_its_type_and_key_first(stub: Stub, capsys) -> None:
    now = time.time()
    record = {
        "type": "peer",
        "key": "00",
        "publisher": OTHER,
        "seq": 5,
        "expires_at": now + 3 * 3600,
        "expires_in_s": 3 * 3600 - 30,
        "addresses": ["127.0.0.1:7002", "[::1]:7002"],
    }
    stub.answers["dht_get"] = {"records": [record]}
    code, out, _ = run(capsys, stub, "dht", "get", OTHER)
    assert code == 0
    assert out.split("\n")[1].split() == [OTHER[:8], "5", "2h59m", "127.0.0.1:7002"]
    assert out.split("\n")[2].strip() == "[::1]:7002"
    calls = len(stub.calls)
    for argv in (("--type", "nope", OTHER), ("--type", "provider", "zz"), ("bogus",)):
        assert run(capsys, stub, "dht", "get", *argv)[0] == 2, argv
    assert len(stub.calls) == calls


def test_tags_say_how_many_more_can_be_set(stub: Stub, capsys) -> None:
    tags = {"version": "0.1.0", "capacity": "1024", "keys": "0123456789ab", "name": "kitchen"}
    stub.answers["tags_list"] = tags
    code, out, _ = run(capsys, stub, "tags", "list")
    assert code == 0
    assert "name = kitchen\n" in out
    assert out.endswith("(4 more tags can be set)\n")
    stub.answers["tags_set"] = lambda args: {**tags, args["key"]: args["value"]}
    assert run(capsys, stub, "tags", "set", "role", "relay")[1].endswith(
        "(3 more tags can be set)\n"
    )
    calls = len(stub.calls)
    for key, value, says in (
        ("my role", "x", "a tag key is 1-32 characters"),
        ("a=b", "x", "a tag key"),
        ("a,b", "x", "a tag key"),
        ("Role", "x", "a tag key"),
        ("k" * 33, "x", "a tag key"),
        ("role", "x" * 65, "a tag value is at most 64 characters, not 65"),
        ("role", "two\nlines", "a tag value is printable text"),
    ):
        code, out, err = run(capsys, stub, "tags", "set", key, value)
        assert (code, out) == (2, ""), key
        assert says in err
    assert len(stub.calls) == calls


def test_root_help_lines_are_whole(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    out, _ = capsys.readouterr()
    assert info.value.code == 0
    assert "..." not in out.split("Commands:")[1]  # click cuts a long first sentence so
    assert "Run the node in the foreground until SIGINT/SIGTERM or" in out
    assert "accepted after the command too" in out
    for group in ("network", "state", "tags", "dht", "config"):
        with pytest.raises(SystemExit):
            main([group, "--help"])
        assert "..." not in capsys.readouterr()[0].split("Commands:")[1]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_the_shell_script(shell: str, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["completion", shell])
    out, _ = capsys.readouterr()
    assert info.value.code == 0
    assert "_PLEXINODE_COMPLETE" in out
    assert f"{shell}_complete" in out
    with pytest.raises(SystemExit) as info:
        main(["completion", "tcsh"])
    assert info.value.code == 2


@pytest.mark.parametrize(
    ("raised", "code", "message"),
    [
        (click.Abort(), 1, "aborted"),
        (KeyboardInterrupt(), 130, "interrupted"),
        (click.ClickException("no such file"), 1, "no such file"),
    ],
)
def test_other_failures_are_one_line_and_json_too(
    monkeypatch: pytest.MonkeyPatch, capsys, raised: BaseException, code: int, message: str
) -> None:
    from plexinode.cli.main import cli

    @click.command()
    def boom() -> None:
        raise raised

    monkeypatch.setitem(cli.commands, "boom", boom)
    accept_global_options(boom)
    for argv in (["boom"], ["boom", "--json"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        out, err = capsys.readouterr()
        assert info.value.code == code
        assert message in err
        if "--json" in argv:
            assert json.loads(out) == {"error": message, "code": code}
        else:
            assert out == ""


def test_a_node_id_or_a_prefix_is_told_from_an_address() -> None:
    assert looks_like_node_id(ME)
    assert looks_like_node_id(ME[:8].upper())
    assert looks_like_node_id("abcd-efgh")
    assert not looks_like_node_id(ME[:7])
    assert not looks_like_node_id("127.0.0.1:7001")
    assert not looks_like_node_id("localhost:7001")
