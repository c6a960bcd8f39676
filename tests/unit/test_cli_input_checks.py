"""What the CLI checks before it writes anything or asks the node: network names, file names,
token and key files read within a bound, grant subjects and lifetimes, and the usage lines
that say which command's help to read."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from plexinode.cli.main import main
from plexinode.cli.start import MAX_TOKEN_FILE_BYTES
from plexinode.errors import PlexinodeError
from plexinode.identity import Identity
from plexinode.membership.invite import InviteError
from plexinode.security.admin_keys import (
    MAX_ADMIN_KEY_BYTES,
    ROOT_KEY_FILE,
    read_admin_key,
    write_admin_key,
)
from plexinode.security.tickets import parse_way_in


@pytest.fixture(autouse=True)
def small_id_puzzle(monkeypatch: pytest.MonkeyPatch) -> None:
    """`init` solves the configured ID puzzle; keep it small (the default takes seconds)."""
    monkeypatch.setenv("PLEXINODE_DHT_ID_DIFFICULTY", "8")


def run(capsys, data_dir: Path, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(["--data-dir", str(data_dir), *argv])
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


def usage_error(capsys, data_dir: Path, *argv: str) -> str:
    """The one line of a usage error (exit 2) that `argv` makes."""
    code, out, err = run(capsys, data_dir, *argv)
    assert (code, out, err.count("\n")) == (2, "", 1), (argv, err)
    return err


def test_init_refuses_a_bad_network_name_and_leaves_no_data_dir(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = tmp_path / "node"
    for name, reason in (
        ("", "a network name must be 1-64 characters of a-z, 0-9 and '-', not ''"),
        ("my net", "not 'my net'"),
        ("a" * 300, "(300 characters)"),
        ("open", "'open' is the open network's name"),
    ):
        err = usage_error(capsys, d, "init", "--network", name)
        assert reason in err
        assert err.endswith("(see 'plexinode init --help')\n")
        assert not d.exists()
    code, out, _ = run(capsys, d, "init", "--network", "open", "--json")
    assert (code, json.loads(out)["code"]) == (2, 2)
    # A failure after the data dir was made removes it (the next init starts afresh) ...
    import plexinode.cli.start

    def broken(*_args: object) -> None:
        raise PlexinodeError("cannot write the root key")

    monkeypatch.setattr(plexinode.cli.start, "_found_network", broken)
    code, _, err = run(capsys, d, "init", "--network", "lab")
    assert (code, err.endswith("plexinode: cannot write the root key\n")) == (1, True)
    assert not d.exists()
    # ... but never a data dir that was there before.
    d.mkdir()
    assert run(capsys, d, "init", "--network", "lab")[0] == 1
    assert d.is_dir()


def test_usage_errors_point_at_their_own_command_help(tmp_path: Path, capsys) -> None:
    for argv, where in (
        (("init", "--network"), "plexinode init"),
        (("join", "--file"), "plexinode join"),
        (("network", "grant", "admin", "--admin-key"), "plexinode network grant"),
        (("--bogus",), "plexinode"),
    ):
        assert usage_error(capsys, tmp_path, *argv).endswith(f"(see '{where} --help')\n")
    err = usage_error(capsys, tmp_path, "network", "admin-key", "generate", "")
    assert "expected the name of a file to make" in err
    code, out, _ = run(capsys, tmp_path, "--json", "network", "admin-key", "generate", "")
    assert (code, json.loads(out)["code"]) == (2, 2)
    token = tmp_path / "token"
    token.write_text("plexinode-invite-2:AAAA\n")
    err = usage_error(capsys, tmp_path, "join", "TOKEN", "--file", str(token))
    assert "give one of the token, '-' (standard input) or --file FILE, not both" in err
    assert "give the token, '-'" in usage_error(capsys, tmp_path, "join")
    # The usage lines name ROLE and NODE_ID, as the help text does.
    assert run(capsys, tmp_path, "network", "grant", "--help")[1].startswith(
        "Usage: plexinode network grant [OPTIONS] ROLE SUBJECT\n"
    )
    assert "ROLE is admin, inviter or member" in " ".join(
        run(capsys, tmp_path, "network", "grant", "--help")[1].split()
    )
    assert "--node NODE_ID" in run(capsys, tmp_path, "ping", "--help")[1]


def test_token_and_admin_key_files_are_read_within_a_bound(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = tmp_path / "big.txt"
    big.write_text("A" * (MAX_TOKEN_FILE_BYTES + 1))
    d = tmp_path / "node"
    too_large = f"is too large to be a token ({MAX_TOKEN_FILE_BYTES} bytes at most)\n"
    # Refused before the node is asked (none runs: that would be exit 3), and before `start`
    # makes a data dir.
    for argv in (("join", "--file", str(big)), ("start", "--join-file", str(big))):
        code, _, err = run(capsys, d, *argv)
        assert (code, err) == (1, f"plexinode: {big} {too_large}")
    assert not d.exists()
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(big.read_bytes())))
    code, _, err = run(capsys, d, "join", "-")
    assert (code, err) == (1, f"plexinode: standard input {too_large}")
    # At the bound, a file is read whole (then refused by the node, which is not running).
    big.write_text("A" * MAX_TOKEN_FILE_BYTES)
    assert run(capsys, d, "join", "--file", str(big))[0] == 3

    d.mkdir(mode=0o700)
    write_admin_key(d / ROOT_KEY_FILE, Identity.generate())
    padded = tmp_path / "padded.key"
    padded.write_bytes((d / ROOT_KEY_FILE).read_bytes() + b" " * MAX_ADMIN_KEY_BYTES)
    with pytest.raises(
        PlexinodeError, match=rf"too large to be an admin key \({MAX_ADMIN_KEY_BYTES}"
    ):
        read_admin_key(padded)
    code, _, err = run(
        capsys, d, "network", "grant", "member", "a" * 64, "--admin-key", str(padded)
    )
    assert (code, err.count("\n")) == (1, 1)
    assert "too large to be an admin key" in err


def test_grant_subjects_and_lifetimes_say_what_is_expected(tmp_path: Path, capsys) -> None:
    tmp_path.chmod(0o700)
    write_admin_key(tmp_path / ROOT_KEY_FILE, Identity.generate())
    forms = "is a node ID (58 characters), a unique prefix of one (8 or more), or a public key"
    for argv, hint in (
        (("network", "grant", "member", "a" * 63), "SUBJECT"),
        (("network", "grant", "admin", "zzzz"), "SUBJECT"),
        (("network", "revoke", "b" * 65), "NODE_ID"),
    ):
        err = usage_error(capsys, tmp_path, *argv)
        assert f"{hint} {forms} (64 hex digits), not '{argv[-1]}'" in err
    assert "(it has 63 hex digits)" in usage_error(
        capsys, tmp_path, "network", "grant", "member", "a" * 63
    )
    for role, article in (("admin", "an"), ("inviter", "an"), ("member", "a")):
        err = usage_error(capsys, tmp_path, "network", "grant", role, "a" * 64, "--expires", "0")
        assert f"{article} {role} grant runs above 0" in err


def test_a_line_that_is_neither_token_nor_ticket_names_both_forms() -> None:
    for text in ("hello", "plexinode-invite-1:AAAA", "x" * 5000):
        with pytest.raises(InviteError) as info:
            parse_way_in(text, 0.0)
        message = str(info.value)
        assert message.startswith("not an invite token or a ticket")
        assert "'plexinode-invite-2:'" in message
        assert "'plexinode-ticket-1:'" in message
