"""`keys export` and `init --import`, run in-process (Argon2id at its smallest cost)."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import click.termui
import pytest
from nacl.pwhash import argon2id

from plexinode.cli.main import main
from plexinode.security import export
from plexinode.shards.secret import backup_key_path


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    """A small ID puzzle for `init`, and the smallest Argon2id cost for `keys export` (the
    format is the same; the end-to-end test runs the real cost)."""
    monkeypatch.setenv("PLEXINODE_DHT_ID_DIFFICULTY", "8")
    small = export.KdfLimits(argon2id.OPSLIMIT_MIN, argon2id.MEMLIMIT_MIN)
    monkeypatch.setattr(export, "DEFAULT_LIMITS", small)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


def fails(capsys, code: int, *argv: str) -> str:
    """Run `argv` expecting exit `code`: one line on stderr, and with --json the document."""
    got, out, err = run(capsys, *argv)
    assert got == code, err
    assert out == ""
    assert err.count("\n") == 1
    got, out, _ = run(capsys, *argv, "--json")
    assert got == code
    doc = json.loads(out)
    assert doc["code"] == code
    assert doc["error"]
    return err


@pytest.fixture
def node(tmp_path: Path, capsys) -> Path:
    data_dir = tmp_path / "old"
    assert run(capsys, "--data-dir", str(data_dir), "init")[0] == 0
    return data_dir


def passphrase(tmp_path: Path, text: str = "correct horse battery staple\n") -> str:
    path = tmp_path / f"pass{abs(hash(text))}"
    path.write_text(text)
    return str(path)


def test_export_then_import(tmp_path: Path, node: Path, capsys) -> None:
    out_file = tmp_path / "keys.txt"
    code, out, _ = run(
        capsys,
        *("--data-dir", str(node), "--json", "keys", "export", str(out_file)),
        *("--passphrase-file", passphrase(tmp_path)),
    )
    assert code == 0
    assert json.loads(out) == {"path": str(out_file)}
    assert stat.S_IMODE(out_file.stat().st_mode) == 0o600
    new = tmp_path / "new"
    code, out, _ = run(
        capsys,
        *("--data-dir", str(new), "--json", "init", "--import", str(out_file)),
        "--passphrase-file",
        passphrase(tmp_path, "correct horse battery staple\r\nand a second line"),
    )
    assert code == 0
    doc = json.loads(out)
    assert doc == {"node_id": doc["node_id"], "data_dir": str(new)}
    assert (
        run(capsys, "--data-dir", str(node), "id")[1]
        == run(capsys, "--data-dir", str(new), "id")[1]
    )
    assert doc["node_id"] == run(capsys, "--data-dir", str(node), "id")[1].strip()
    assert backup_key_path(new).read_bytes() == backup_key_path(node).read_bytes()
    assert (new / "config.toml").exists()
    # The text forms say what happened.
    code, out, _ = run(
        capsys,
        *("--data-dir", str(node), "keys", "export", str(out_file), "--force"),
        *("--passphrase-file", passphrase(tmp_path)),
    )
    assert code == 0
    assert out.startswith(f"wrote the keys of node {doc['node_id']} to {out_file}")


def test_export_refuses_to_overwrite_without_force(tmp_path: Path, node: Path, capsys) -> None:
    out_file = tmp_path / "keys.txt"
    out_file.write_text("precious")
    pw = passphrase(tmp_path)
    err = fails(
        capsys, 1, "--data-dir", str(node), "keys", "export", str(out_file), "--passphrase-file", pw
    )
    assert "refusing to overwrite" in err
    assert out_file.read_text() == "precious"
    code, _, _ = run(
        capsys,
        "--data-dir",
        str(node),
        "keys",
        "export",
        str(out_file),
        "--passphrase-file",
        pw,
        "--force",
    )
    assert code == 0
    assert out_file.read_bytes().startswith(export.HEADER_LINE.encode())
    assert stat.S_IMODE(out_file.stat().st_mode) == 0o600


def test_export_needs_an_identity_and_a_writable_place(tmp_path: Path, node: Path, capsys) -> None:
    pw = passphrase(tmp_path)
    err = fails(
        capsys,
        1,
        "--data-dir",
        str(tmp_path / "none"),
        "keys",
        "export",
        str(tmp_path / "k"),
        "--passphrase-file",
        pw,
    )
    assert "run `plexinode init` first" in err
    err = fails(
        capsys,
        1,
        "--data-dir",
        str(node),
        "keys",
        "export",
        str(tmp_path / "no" / "k"),
        "--passphrase-file",
        pw,
    )
    assert "cannot write" in err


def test_export_makes_the_backup_secret_of_an_older_data_dir(
    tmp_path: Path, node: Path, capsys
) -> None:
    backup_key_path(node).unlink()
    args = ("--data-dir", str(node), "keys", "export", str(tmp_path / "k"))
    assert run(capsys, *args, "--passphrase-file", passphrase(tmp_path))[0] == 0
    assert len(backup_key_path(node).read_bytes()) == 32


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "first line of .* is empty"),
        (b"\nsecret on the second line\n", "first line of .* is empty"),
        (b"x" * 5000, "too large to be a passphrase file"),
        (b"\xff\xfe\n", "not UTF-8 text"),
        ("\u00e9".encode() * 600, "longer than 1024 bytes"),
    ],
)
def test_bad_passphrase_files(
    tmp_path: Path, node: Path, capsys, content: bytes, message: str
) -> None:
    pw = tmp_path / "pw"
    pw.write_bytes(content)
    out_file = tmp_path / "k"
    err = fails(
        capsys,
        1,
        "--data-dir",
        str(node),
        "keys",
        "export",
        str(out_file),
        "--passphrase-file",
        str(pw),
    )
    assert re.search(message, err), err
    assert not out_file.exists()


def test_missing_passphrase_file(tmp_path: Path, node: Path, capsys) -> None:
    err = fails(
        capsys,
        1,
        "--data-dir",
        str(node),
        "keys",
        "export",
        str(tmp_path / "k"),
        "--passphrase-file",
        str(tmp_path / "nope"),
    )
    assert "cannot read the passphrase from" in err
    assert "No such file" in err


def test_no_terminal_and_no_file(tmp_path: Path, node: Path, capsys) -> None:
    err = fails(capsys, 1, "--data-dir", str(node), "keys", "export", str(tmp_path / "k"))
    assert "no passphrase: give --passphrase-file F" in err
    assert not (tmp_path / "k").exists()


class Terminal:
    """A terminal whose person types the strings of `typed`, in order."""

    def __init__(self) -> None:
        self.typed: list[str] = []
        self.prompts: list[str] = []

    def hidden(self, prompt: str) -> str:
        self.prompts.append(prompt)
        return self.typed.pop(0)


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> Terminal:
    term = Terminal()
    monkeypatch.setattr("plexinode.cli.keys._interactive", lambda: True)
    monkeypatch.setattr(click.termui, "hidden_prompt_func", term.hidden)
    return term


def test_prompts(tmp_path: Path, node: Path, capsys, terminal: Terminal) -> None:
    out_file = tmp_path / "k"
    export_args = ("--data-dir", str(node), "keys", "export", str(out_file))
    terminal.typed += ["one passphrase", "another"]
    code, out, err = run(capsys, *export_args)
    assert (code, out) == (1, "")
    assert "the two passphrases differ" in err
    assert not out_file.exists()
    terminal.typed += ["same", "same"]
    assert run(capsys, *export_args)[0] == 0
    assert terminal.prompts == ["Passphrase: ", "Passphrase again: "] * 2
    import_args = ("--data-dir", str(tmp_path / "new"), "init", "--import", str(out_file))
    terminal.typed += ["different"]
    code, _, err = run(capsys, *import_args)
    assert code == 1
    assert "wrong passphrase" in err
    assert not (tmp_path / "new").exists()
    terminal.typed += ["same"]
    assert run(capsys, *import_args)[0] == 0  # asked once
    assert terminal.typed == []
    terminal.typed += [""]
    code, _, err = run(capsys, *export_args, "--force")
    assert code == 1
    assert "the passphrase is empty" in err


def test_import_refusals_leave_nothing_behind(tmp_path: Path, node: Path, capsys) -> None:
    out_file = tmp_path / "k"
    pw = passphrase(tmp_path)
    run(capsys, "--data-dir", str(node), "keys", "export", str(out_file), "--passphrase-file", pw)
    new = tmp_path / "deep" / "new"
    # A wrong passphrase, a foreign file, a missing one, a truncated one: nothing is written.
    wrong = passphrase(tmp_path, "wrong\n")
    assert "wrong passphrase" in fails(
        capsys,
        1,
        "--data-dir",
        str(new),
        "init",
        "--import",
        str(out_file),
        "--passphrase-file",
        wrong,
    )
    foreign = tmp_path / "foreign"
    foreign.write_text("hello\n")
    assert "not a plexinode key export" in fails(
        capsys, 1, "--data-dir", str(new), "init", "--import", str(foreign), "--passphrase-file", pw
    )
    assert "cannot read" in fails(
        capsys,
        1,
        "--data-dir",
        str(new),
        "init",
        "--import",
        str(tmp_path / "nope"),
        "--passphrase-file",
        pw,
    )
    truncated = tmp_path / "truncated"
    truncated.write_bytes(out_file.read_bytes()[:-40])
    assert "truncated or corrupt" in fails(
        capsys,
        1,
        "--data-dir",
        str(new),
        "init",
        "--import",
        str(truncated),
        "--passphrase-file",
        pw,
    )
    assert not (tmp_path / "deep").exists()
    # An existing identity is never overwritten, exactly as `init` refuses.
    before = {p.name: p.read_bytes() for p in node.iterdir() if p.is_file()}
    err = fails(
        capsys,
        1,
        "--data-dir",
        str(node),
        "init",
        "--import",
        str(out_file),
        "--passphrase-file",
        pw,
    )
    assert "refusing to overwrite this node's identity" in err
    assert {p.name: p.read_bytes() for p in node.iterdir() if p.is_file()} == before


def test_a_failure_after_writing_removes_what_it_wrote(
    tmp_path: Path, node: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    out_file = tmp_path / "k"
    pw = passphrase(tmp_path)
    run(capsys, "--data-dir", str(node), "keys", "export", str(out_file), "--passphrase-file", pw)
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")
    # The imported ID does not solve a 30-bit puzzle (1 in 2**30): refused after the config
    # was written, which goes again; the operator's own file stays.
    monkeypatch.setenv("PLEXINODE_DHT_ID_DIFFICULTY", "30")
    err = fails(
        capsys,
        1,
        "--data-dir",
        str(existing),
        "init",
        "--import",
        str(out_file),
        "--passphrase-file",
        pw,
    )
    assert "does not solve the configured 30-bit ID puzzle" in err
    assert sorted(p.name for p in existing.iterdir()) == ["notes.txt"]
    # A stray backup secret without an identity is not overwritten either.
    monkeypatch.setenv("PLEXINODE_DHT_ID_DIFFICULTY", "0")
    backup_key_path(existing).write_bytes(b"\0" * 32)
    err = fails(
        capsys,
        1,
        "--data-dir",
        str(existing),
        "init",
        "--import",
        str(out_file),
        "--passphrase-file",
        pw,
    )
    assert "refusing to overwrite this owner's backup secret" in err
    assert sorted(p.name for p in existing.iterdir()) == ["backup.key", "notes.txt"]


def test_usage_errors(tmp_path: Path, capsys) -> None:
    d = str(tmp_path / "n")
    err = fails(capsys, 2, "--data-dir", d, "init", "--import", "f", "--network", "lab")
    assert "--import and --network do not go together" in err
    err = fails(capsys, 2, "--data-dir", d, "init", "--passphrase-file", "f")
    assert "--passphrase-file goes with --import" in err
    fails(capsys, 2, "--data-dir", d, "keys", "export")
    assert not (tmp_path / "n").exists()


def test_a_file_that_appears_while_asking_is_kept(
    tmp_path: Path, node: Path, capsys, terminal: Terminal, monkeypatch: pytest.MonkeyPatch
) -> None:
    out_file = tmp_path / "k"
    real = terminal.hidden

    def hidden(prompt: str) -> str:
        out_file.write_text("made meanwhile")
        return real(prompt)

    monkeypatch.setattr(click.termui, "hidden_prompt_func", hidden)
    terminal.typed += ["same", "same"]
    code, _, err = run(capsys, "--data-dir", str(node), "keys", "export", str(out_file))
    assert code == 1
    assert "refusing to overwrite" in err
    assert out_file.read_text() == "made meanwhile"
