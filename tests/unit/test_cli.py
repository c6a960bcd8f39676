"""CLI commands that work without a running node, run in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from plexinode.cli.main import main


@pytest.fixture(autouse=True)
def small_id_puzzle(monkeypatch: pytest.MonkeyPatch) -> None:
    """`init` solves the configured ID puzzle; keep it small (the default takes seconds)."""
    monkeypatch.setenv("PLEXINODE_DHT_ID_DIFFICULTY", "8")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


def test_init_id_and_config_show(tmp_path: Path, capsys) -> None:
    d = str(tmp_path / "node")
    code, out, _ = run(capsys, "--data-dir", d, "--json", "init", "--network", "lab")
    assert code == 0
    created = json.loads(out)
    assert created["data_dir"] == d
    assert created["network"] == "lab"  # a private network: its key was made
    keys = json.loads((tmp_path / "node" / "network.keys").read_text())
    assert len(keys["keys"]) == 1
    assert created["key_id"]
    assert created["key_id"] not in keys["keys"][0]
    assert (tmp_path / "node" / "network.keys").stat().st_mode & 0o077 == 0
    code, out, _ = run(capsys, "--data-dir", d, "--json", "id")
    assert list(json.loads(out)) == ["node_id", "public_key"]
    assert json.loads(out)["node_id"] == created["node_id"]
    code, out, _ = run(capsys, "--data-dir", d, "id")
    assert out.strip() == created["node_id"]
    code, out, _ = run(capsys, "--data-dir", d, "--json", "config", "show")
    shown = json.loads(out)
    assert shown["network"] == {"value": "lab", "source": "file"}
    assert shown["datagram.retries"]["source"] == "default"
    code, out, _ = run(capsys, "--data-dir", d, "config", "show")
    assert "datagram.retries" in out
    assert "file" in out
    code, _, err = run(capsys, "--data-dir", d, "init")
    assert code == 1
    assert "refusing to overwrite" in err


def test_commands_that_need_a_node_exit_3(tmp_path: Path, capsys) -> None:
    for argv in (["status"], ["stop"], ["ping", "127.0.0.1:9"]):
        code, out, err = run(capsys, "--data-dir", str(tmp_path), *argv)
        assert code == 3
        assert out == ""
        assert err.count("\n") == 1


def test_ping_argument_errors(tmp_path: Path, capsys) -> None:
    d = str(tmp_path)
    code, _, err = run(capsys, "--data-dir", d, "ping", "nonsense:")
    assert code == 2
    code, _, err = run(capsys, "--data-dir", d, "ping", "nonsense")
    assert code == 3  # a node ID prefix (or a host without its port): the node must resolve it
    code, _, err = run(capsys, "--data-dir", d, "ping", "--node", "bogus", "127.0.0.1:9")
    assert code == 2  # a malformed node ID is a usage error wherever it is given
    assert "invalid node ID" in err
    node_id = "a" * 58
    code, _, err = run(capsys, "--data-dir", d, "ping", node_id)
    assert code == 2  # not a valid ID either (checksum)
    run(capsys, "--data-dir", d, "init")
    code, out, _ = run(capsys, "--data-dir", d, "id")
    code, _, err = run(capsys, "--data-dir", d, "ping", out.strip())
    assert code == 3  # a valid node ID: resolving it needs the running node
    code, _, err = run(capsys, "--data-dir", d, "ping", "--node", "a" * 58, out.strip())
    assert code == 2
    assert "invalid node ID" in err


def test_usage_and_version(tmp_path: Path, capsys) -> None:
    assert run(capsys, "--version")[0] == 0
    assert run(capsys, "--help")[0] == 0
    assert run(capsys, "bogus")[0] == 2
    # Usage errors are one line too, saying where to read more; a malformed listen or
    # bootstrap address is one (exit 2), found before anything starts.
    for argv in (
        ("bogus",),
        ("state", "set", "k"),
        ("start", "--listen", "127.0.0.1:80x"),
        ("start", "--bootstrap", "nohost"),
    ):
        code, out, err = run(capsys, "--data-dir", str(tmp_path / "none"), *argv)
        assert (code, out, err.count("\n")) == (2, "", 1), argv
        assert err.startswith("plexinode: ")
        assert "--help')" in err
    assert not (tmp_path / "none").exists()
    code, _, err = run(capsys, "--data-dir", str(tmp_path), "start", "--set", "novalue")
    assert code == 2
    assert "KEY=VALUE" in err
    code, _, err = run(capsys, "--data-dir", str(tmp_path), "start", "--set", "nope=1")
    assert code == 1
    assert "nope" in err


def test_config_errors_are_one_line(tmp_path: Path, capsys) -> None:
    run(capsys, "--data-dir", str(tmp_path), "init")
    (tmp_path / "config.toml").write_text("[datagram]\nrequest_timout = '1s'\n")
    code, _, err = run(capsys, "--data-dir", str(tmp_path), "config", "show")
    assert code == 1
    assert "did you mean 'datagram.request_timeout'" in err
    assert err.count("\n") == 1


def test_init_solves_the_configured_id_puzzle_and_start_checks_it(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    from plexinode.identity import NodeId

    d = str(tmp_path / "node")
    code, out, _ = run(capsys, "--data-dir", d, "--json", "init")
    assert code == 0
    node_id = NodeId.parse(json.loads(out)["node_id"])
    assert node_id.meets(8)
    # A network with a harder puzzle refuses this identity, with the reason.
    hard = next(bits for bits in range(9, 33) if not node_id.meets(bits))
    monkeypatch.setenv("PLEXINODE_DHT_ID_DIFFICULTY", str(hard))
    code, _, err = run(capsys, "--data-dir", d, "start", "--listen", "127.0.0.1:0")
    assert code == 1
    assert f"{hard}-bit ID puzzle" in err
