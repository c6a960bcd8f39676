import json
import logging
import os
import socket
from pathlib import Path

import pytest

from plexinode import datadir
from plexinode.daemon import notify_ready
from plexinode.errors import DataDirError
from plexinode.logs import JsonFormatter, setup_logging


def test_default_data_dir(monkeypatch) -> None:
    assert datadir.default_data_dir({"PLEXINODE_HOME": "~/x"}) == Path("~/x").expanduser()
    assert datadir.default_data_dir({}).name == "plexinode"
    monkeypatch.setenv("PLEXINODE_HOME", "/tmp/somewhere")
    assert datadir.default_data_dir() == Path("/tmp/somewhere")


def test_prepare_creates_a_private_dir(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b"
    datadir.prepare(target)
    assert target.stat().st_mode & 0o777 == 0o700
    target.chmod(0o755)
    datadir.prepare(target)
    assert target.stat().st_mode & 0o777 == 0o700


def test_prepare_refuses_unusable_paths(tmp_path: Path, monkeypatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DataDirError, match="not a directory"):
        datadir.prepare(blocker)
    with pytest.raises(DataDirError, match="parent is not a directory"):
        datadir.prepare(blocker / "sub")
    # Root ignores permission bits, so simulate a read-only directory.
    monkeypatch.setattr(os, "access", lambda *a: False)
    with pytest.raises(DataDirError, match="not writable"):
        datadir.prepare(tmp_path)


def test_prepare_reports_permission_errors(tmp_path: Path, monkeypatch) -> None:
    def deny(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "mkdir", deny)
    with pytest.raises(DataDirError, match="Permission denied"):
        datadir.prepare(tmp_path / "new")


def test_lock_is_exclusive_and_names_its_owner(tmp_path: Path) -> None:
    assert not datadir.is_locked(tmp_path)
    assert datadir.read_lock_owner(tmp_path) is None
    with datadir.DataDirLock(tmp_path):
        assert datadir.is_locked(tmp_path)
        assert datadir.read_lock_owner(tmp_path) == os.getpid()
        with pytest.raises(DataDirError, match=f"PID {os.getpid()}"):
            datadir.DataDirLock(tmp_path).acquire()
    assert not datadir.is_locked(tmp_path)
    datadir.DataDirLock(tmp_path).acquire()  # free again (and released by process exit)


def test_lock_in_a_missing_dir(tmp_path: Path) -> None:
    with pytest.raises(DataDirError, match="cannot open"):
        datadir.DataDirLock(tmp_path / "missing").acquire()


def test_json_logs(capsys) -> None:
    setup_logging("debug", "json")
    log = logging.getLogger("plexinode.test")
    log.info("hello %s", "world")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert lines[0]["message"] == "hello world"
    assert lines[0]["level"] == "info"
    assert "boom" in lines[1]["exception"]
    assert isinstance(JsonFormatter().format(logging.makeLogRecord({"msg": "x"})), str)
    setup_logging("warning", "text")
    log.warning("plain")
    assert "WARNING plexinode.test: plain" in capsys.readouterr().err.replace("  ", " ")


def test_notify_ready(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notify_ready()  # no systemd: nothing happens
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        notify_ready()
        assert sock.recv(64) == b"READY=1"
    monkeypatch.setenv("NOTIFY_SOCKET", "@plexinode-test-no-such-socket")
    notify_ready()  # unreachable: logged, not raised
