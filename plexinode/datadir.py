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

A Unix socket's address holds about 100 bytes of path, and a data dir may have a longer one:
the admin socket is then bound and reached through a short path to the same file
(:func:`socket_address`; docs/decisions.md, 33).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
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
#: Where a node keeps the blocks it holds for others (plexinode.shards.share_files).
SHARES_NAME = "shares"
#: The longest path a Unix socket address holds with its terminating NUL (``sun_path`` is 108
#: bytes on Linux).
MAX_SOCKET_PATH = 107
#: Where a process reaches its own open file descriptors by path (Linux).
_FD_DIR = Path("/proc/self/fd")


def default_data_dir(env: dict[str, str] | None = None) -> Path:
    """``$PLEXINODE_HOME``, else the platform's user data dir."""
    environ = os.environ if env is None else env
    home = environ.get(HOME_ENV)
    if home:
        return Path(home).expanduser()
    return Path(platformdirs.user_data_dir("plexinode", appauthor=False))


def prepare(data_dir: Path) -> Path:
    """Create the data dir (0700) if needed and check that it is a writable directory.

    Raises:
        DataDirError: It cannot be created (a parent is a file, is missing and cannot be made,
            is read-only ...), or it is not a writable directory.
    """
    try:
        ensure_private_dir(data_dir)
    except FileExistsError:
        raise DataDirError(f"data dir {data_dir} exists and is not a directory") from None
    except NotADirectoryError:
        raise DataDirError(f"data dir {data_dir}: a parent is not a directory") from None
    except OSError as exc:  # e.g. permission denied, a read-only file system, /proc/...
        raise DataDirError(f"cannot create data dir {data_dir}: {exc.strerror or exc}") from None
    if not os.access(data_dir, os.W_OK | os.X_OK):
        raise DataDirError(f"data dir {data_dir} is not writable")
    return data_dir


def first_missing(data_dir: Path) -> Path | None:
    """The outermost directory of `data_dir` (itself or a parent) that does not exist yet:
    what :func:`prepare` will create. None if `data_dir` exists."""
    if data_dir.exists() or data_dir.is_symlink():
        return None
    missing = data_dir
    while not missing.parent.exists() and missing.parent != missing:
        missing = missing.parent
    return missing


def discard(data_dir: Path, created: Path) -> None:
    """Remove a data dir that was created by a ``start`` that then failed: the files in it,
    then each directory from `data_dir` up to `created` (what :func:`first_missing` said would
    be created). Anything else found there (a subdirectory) is left, and with it the
    directories above it. The node's own empty share directory goes too (a failed start held
    nothing for anyone)."""
    with contextlib.suppress(OSError):
        for entry in data_dir.iterdir():
            if entry.is_file() or entry.is_socket() or entry.is_symlink():
                entry.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        (data_dir / SHARES_NAME).rmdir()
    directory = data_dir
    while True:
        try:
            directory.rmdir()
        except OSError:
            return
        if directory in (created, directory.parent):
            return
        directory = directory.parent


def socket_path(data_dir: Path) -> Path:
    """The admin socket of the node in `data_dir`."""
    return data_dir / SOCKET_NAME


@contextlib.contextmanager
def socket_address(path: Path) -> Iterator[str]:
    """An address to bind or connect the Unix socket at `path` with, valid in the block.

    `path` itself when it fits in a socket address (:data:`MAX_SOCKET_PATH`); else a short
    path to the same file, ``/proc/self/fd/N/NAME``, where N is a descriptor of the socket's
    directory held open (``O_PATH``: it needs no read permission) for the block. The socket
    file is still created and found at `path`, so that ``DATA_DIR/admin.sock`` works for every
    data dir (docs/decisions.md, 33).

    Raises:
        FileNotFoundError: The directory of a long `path` does not exist.
        NotADirectoryError: ... is not a directory.
        PermissionError: ... cannot be searched.
        DataDirError: `path` is too long and this system has no ``/proc/self/fd``.
    """
    if len(os.fsencode(path)) <= MAX_SOCKET_PATH:
        yield str(path)
        return
    if not _FD_DIR.is_dir():
        raise DataDirError(
            f"the path of {path} is too long for a Unix socket ({len(os.fsencode(path))} "
            f"bytes, at most {MAX_SOCKET_PATH}) and /proc is not available: use a data dir "
            "with a shorter path"
        )
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        yield str(_FD_DIR / str(fd) / path.name)
    finally:
        os.close(fd)


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
