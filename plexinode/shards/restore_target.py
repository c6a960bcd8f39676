"""Writing a restore: the tree of a backup, whole or not at all, at a path that did not exist.

`RestoreTarget` refuses a destination that exists (a restore never overwrites) or whose parent
is not a writable directory, before anything is fetched. It builds the tree under a temporary
name beside the destination (same directory, so the final step is a rename on one file
system): directories first, then each file as the stream's bytes arrive in order, each file
fsynced when complete. `finish` creates the symbolic links, sets modes and times (directories
last and deepest first, so a read-only directory does not block its own contents), fsyncs the
directories and renames the whole into place: until that rename, the destination does not
exist; after it, it is complete. `abort` removes the temporary tree.

A partial restore (`--partial`) passes the ranges of the stream that could not be fetched to
`skip`; the files they touch are not restored at all (never a file with a hole in it) and are
listed in `damaged`.

Every path comes from an index that `archive.check_tree` accepted (relative, no ``..``, each
parent a directory listed before), files are opened with ``O_EXCL | O_NOFOLLOW`` and links are
made only after every file is written, so nothing is written outside the temporary tree.
Blocking file I/O: a driver runs these calls in a worker thread.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from plexinode.errors import PlexinodeError
from plexinode.shards import archive
from plexinode.shards.archive import Entry

_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


class RestoreTargetError(PlexinodeError):
    """The destination cannot take the restore."""


def check_destination(dest: Path) -> None:
    """Raise `RestoreTargetError` unless `dest` does not exist and its parent is writable."""
    if os.path.lexists(dest):
        raise RestoreTargetError(f"{dest} already exists; a restore never overwrites")
    parent = dest.parent
    if not parent.is_dir():
        raise RestoreTargetError(f"{parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise RestoreTargetError(f"{parent} is not writable")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class RestoreTarget:
    """The destination of one restore (see the module docstring)."""

    def __init__(self, dest: Path, entries: list[Entry]) -> None:
        archive.check_tree(entries)
        check_destination(dest)
        self.dest = dest
        self.damaged: list[bytes] = []
        self._entries = entries
        self._files = [(e, offset) for e, offset in archive.file_offsets(entries)]
        self._next = 0  # the next file not finished
        self._fd: int | None = None
        self._left = 0  # bytes of the current file still to come
        self._hurt = False  # the current file lost bytes
        self._root_is_file = entries[0].kind == archive.FILE
        try:
            if self._root_is_file:
                fd, name = tempfile.mkstemp(
                    prefix=f".{dest.name}.", suffix=".restore", dir=dest.parent
                )
                os.close(fd)
                os.unlink(name)
            else:
                name = tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".restore", dir=dest.parent)
        except OSError as exc:
            raise RestoreTargetError(f"cannot write in {dest.parent}: {exc.strerror}") from None
        self._temp = Path(name)
        for entry in entries[1:]:
            if entry.kind == archive.DIRECTORY:
                os.mkdir(self._path(entry), 0o700)

    def _path(self, entry: Entry) -> Path:
        return self._temp / os.fsdecode(entry.path) if entry.path else self._temp

    def write(self, data: bytes) -> None:
        """The next bytes of the stream's data part."""
        self._advance(memoryview(data), len(data))

    def skip(self, length: int) -> None:
        """The next `length` bytes of the data part are lost: the files they touch are damaged."""
        self._advance(None, length)

    def _advance(self, data: memoryview | None, length: int) -> None:
        at = 0
        while at < length:
            if self._fd is None:
                self._open_next()
            take = min(self._left, length - at)
            if data is None:
                self._hurt = True
            elif not self._hurt:
                self._write_all(data[at : at + take])
            at += take
            self._left -= take
            if self._left == 0:
                self._close_current()

    def _open_next(self) -> None:
        while True:
            if self._next >= len(self._files):
                raise RestoreTargetError("more data than the index's files hold")
            entry, _ = self._files[self._next]
            self._fd = os.open(self._path(entry), _OPEN_FLAGS, 0o600)
            self._left = entry.size
            self._hurt = False
            if entry.size:
                return
            self._close_current()  # an empty file is complete as soon as it exists

    def _write_all(self, view: memoryview) -> None:
        assert self._fd is not None
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    def _close_current(self) -> None:
        assert self._fd is not None
        entry, _ = self._files[self._next]
        try:
            if not self._hurt:
                os.fsync(self._fd)
        finally:
            os.close(self._fd)
            self._fd = None
        if self._hurt:
            os.unlink(self._path(entry))
            self.damaged.append(entry.path)
        self._next += 1

    def finish(self) -> Path:
        """Complete the tree and rename it into place; returns the destination."""
        while self._next < len(self._files):
            entry, _ = self._files[self._next]
            if entry.size:
                raise RestoreTargetError(f"the stream ended before {os.fsdecode(entry.path)!r}")
            os.close(os.open(self._path(entry), _OPEN_FLAGS, 0o600))  # a trailing empty file
            self._next += 1
        if self._root_is_file and self.damaged:
            raise RestoreTargetError(f"{self.dest} cannot be restored: part of it is missing")
        damaged = set(self.damaged)
        for entry in self._entries:
            path = self._path(entry)
            if entry.kind == archive.SYMLINK:
                os.symlink(entry.target, path)
            if entry.kind != archive.DIRECTORY and entry.path not in damaged:
                self._set_metadata(entry, path)
        directories = [e for e in self._entries if e.kind == archive.DIRECTORY]
        for entry in sorted(
            directories, key=lambda e: e.path.count(b"/") + bool(e.path), reverse=True
        ):
            path = self._path(entry)
            _fsync_dir(path)
            self._set_metadata(entry, path)
        if os.path.lexists(self.dest):
            raise RestoreTargetError(
                f"{self.dest} appeared during the restore; left at {self._temp}"
            )
        os.rename(self._temp, self.dest)
        _fsync_dir(self.dest.parent)
        return self.dest

    @staticmethod
    def _set_metadata(entry: Entry, path: Path) -> None:
        if entry.kind != archive.SYMLINK:
            os.chmod(path, entry.mode)
        with contextlib.suppress(NotImplementedError):
            os.utime(path, ns=(entry.mtime_ns, entry.mtime_ns), follow_symlinks=False)

    def abort(self) -> None:
        """Remove the temporary tree (the destination was never created)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._root_is_file:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._temp)
        else:
            for root, dirs, _ in os.walk(self._temp):
                for name in dirs:
                    with contextlib.suppress(OSError):
                        os.chmod(os.path.join(root, name), 0o700, follow_symlinks=False)
            shutil.rmtree(self._temp, ignore_errors=True)
