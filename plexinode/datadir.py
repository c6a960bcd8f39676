"""The data directory: where it is, what it holds, and the lock that allows one node in it.

Layout::

    DATA_DIR/            mode 0700
      identity.key       the node's secret key (0600)
      config.toml        settings (0600)
      node.db            SQLite database (+ -wal, -shm)
      node.lock          held (flock) by the running node; contains its PID
      admin.sock         the admin socket (0600) while the node runs

The lock is an advisory ``flock`` on node.lock: the kernel releases it when the process dies,
however it dies, so a crashed node never leaves the data dir stuck.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path
from types import TracebackType

import platformdirs

from plexinode.errors import DataDirError
from plexinode.fsutil import ensure_private_dir

HOME_ENV = "PLEXINODE_HOME"
LOCK_NAME = "node.lock"
DB_NAME = "node.db"
# The admin socket (../CLI.md promises it at DATA_DIR/admin.sock).
SOCKET_NAME = "admin.sock"


def default_data_dir(env: dict[str, str] | None = None) -> Path:
    """``$PLEXINODE_HOME``, else the platform's user data dir."""
    environ = os.environ if env is None else env
    home = environ.get(HOME_ENV)
    if home:
        return Path(home).expanduser()
    return Path(platformdirs.user_data_dir("plexinode", appauthor=False))


def prepare(data_dir: Path) -> Path:
    """Create the data dir (0700) if needed and check that it is a writable directory."""
    try:
        ensure_private_dir(data_dir)
    except FileExistsError:
        raise DataDirError(f"data dir {data_dir} exists and is not a directory") from None
    except NotADirectoryError:
        raise DataDirError(f"data dir {data_dir}: a parent is not a directory") from None
    except PermissionError as exc:
        raise DataDirError(f"cannot create data dir {data_dir}: {exc.strerror}") from None
    if not os.access(data_dir, os.W_OK | os.X_OK):
        raise DataDirError(f"data dir {data_dir} is not writable")
    return data_dir


def socket_path(data_dir: Path) -> Path:
    """The admin socket of the node in `data_dir`."""
    return data_dir / SOCKET_NAME


def read_lock_owner(data_dir: Path) -> int | None:
    """The PID recorded in the lock file, if any."""
    try:
        text = (data_dir / LOCK_NAME).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def is_locked(data_dir: Path) -> bool:
    """True while a running node holds the data dir lock."""
    try:
        fd = os.open(data_dir / LOCK_NAME, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


class DataDirLock:
    """Exclusive lock on a data dir, held for the life of the node."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise DataDirError naming the process that holds it."""
        path = self.data_dir / LOCK_NAME
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise DataDirError(f"cannot open {path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise DataDirError(f"cannot lock {path}: {exc.strerror}") from None
            pid = read_lock_owner(self.data_dir)
            owner = f"PID {pid}" if pid else "another process"
            raise DataDirError(
                f"a node is already running for {self.data_dir} "
                f"({owner}, admin socket {socket_path(self.data_dir)})"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        """Give the lock back (also happens when the process exits)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DataDirLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
