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


def test_prepare_reports_any_other_failure_in_one_line(tmp_path: Path) -> None:
    # /proc refuses new directories with ENOENT, which is neither of the cases above.
    with pytest.raises(DataDirError, match="cannot create data dir /proc/no-such-dir: No such"):
        datadir.prepare(Path("/proc/no-such-dir"))


def test_what_start_creates_and_discards(tmp_path: Path) -> None:
    assert datadir.first_missing(tmp_path) is None
    target = tmp_path / "a" / "b" / "node"
    assert datadir.first_missing(target) == tmp_path / "a"
    datadir.prepare(target)
    (target / "node.lock").write_text("1\n")
    (target / "identity.key").write_text("secret")
    datadir.discard(target, tmp_path / "a")
    assert list(tmp_path.iterdir()) == []
    # Something that start does not make (a subdirectory) keeps it and the dirs above.
    datadir.prepare(target)
    (target / "mine").mkdir()
    (target / "node.lock").write_text("1\n")
    datadir.discard(target, tmp_path / "a")
    assert [p.name for p in target.iterdir()] == ["mine"]
    datadir.discard(tmp_path / "missing", tmp_path / "missing")  # nothing there: nothing done


def test_socket_address_is_short_for_any_data_dir(tmp_path: Path, monkeypatch) -> None:
    short = tmp_path / "admin.sock"
    with datadir.socket_address(short) as address:
        assert address == str(short)
    deep = tmp_path / ("d" * 150)
    deep.mkdir()
    path = deep / "admin.sock"
    with datadir.socket_address(path) as address:
        assert len(address) <= datadir.MAX_SOCKET_PATH
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
            server.bind(address)
            server.listen(1)
            assert path.is_socket()  # the file is where it belongs
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                client.connect(address)
    with pytest.raises(FileNotFoundError), datadir.socket_address(tmp_path / ("m" * 150) / "s"):
        pass
    monkeypatch.setattr(datadir, "_FD_DIR", tmp_path / "no-proc")
    with pytest.raises(DataDirError, match="too long"), datadir.socket_address(path):
        pass


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


def test_logs_to_a_file(tmp_path: Path, capsys) -> None:
    path = tmp_path / "node.log"
    setup_logging("info", "text", path)
    log = logging.getLogger("plexinode.test")
    log.info("to the file")
    log.debug("not at info")
    setup_logging("info", "text")  # back to stderr; the file is closed
    log.info("to stderr")
    assert path.stat().st_mode & 0o777 == 0o600
    text = path.read_text()
    assert "INFO    plexinode.test: to the file" in text
    assert "not at info" not in text
    assert "to stderr" not in text
    assert "to stderr" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError):
        setup_logging("info", "text", tmp_path / "missing" / "node.log")


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
