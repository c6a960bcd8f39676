"""The block files of the share store: written durably, read, removed, listed at start-up.

Every block is one file in ``<data_dir>/shares/`` under a random name (``<32 hex>.share``), never
a name derived from the share: two writers of one share (a retry racing its original) then never
write the same file, and a file is only ever deleted by the one who knows no committed row names
it. A file is written as ``<name>.tmp``, fsynced, renamed to its name; the directory is fsynced
once per batch, after the last rename. Only then does the store commit the batch's rows, so a
row never names a file that a crash could lose. A crash in between leaves files no row names;
`ShareFiles.scan` finds them at the next start and the store removes them.

The methods block (file I/O and fsync): the store runs them in worker threads. The function that
writes the bytes is a parameter so that tests can make the disk fill up halfway through a batch.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Final

from plexinode.datadir import SHARES_NAME

DIRECTORY_NAME: Final = SHARES_NAME
SUFFIX: Final = ".share"
TEMP_SUFFIX: Final = ".tmp"

#: Writes all of `data` to the open file descriptor (the seam for a disk that fills up).
Writer = Callable[[int, bytes], None]


def new_name() -> str:
    """A fresh, random file name for a block."""
    return secrets.token_hex(16) + SUFFIX


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of `data` to `fd` (os.write may write fewer)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def fsync_directory(path: Path) -> None:
    """Make the directory's entries (created, renamed, removed files) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ShareFiles:
    """The directory of block files.

    Args:
        directory: where the files live (created 0700 if needed).
        writer: writes a block's bytes to an open file.
    """

    def __init__(self, directory: Path, writer: Writer = write_all) -> None:
        self.directory = directory
        self._writer = writer
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    def path(self, name: str) -> Path:
        """The path of the file `name`."""
        return self.directory / name

    def write_batch(self, blocks: Sequence[bytes]) -> list[str]:
        """Write each block to a new file, durably, and return their names (in order).

        On any error every file of the batch is removed again before the error propagates:
        nothing of a failed batch stays on disk.
        """
        names: list[str] = []
        try:
            for block in blocks:
                names.append(new_name())
                self.write_one(names[-1], block)
            if names:
                self.sync()
        except BaseException:
            self.remove(names)
            raise
        return names

    def sync(self) -> None:
        """Make the directory's entries durable (once per batch, after its last rename)."""
        fsync_directory(self.directory)

    def write_one(self, name: str, block: bytes) -> None:
        """Write one block to the file `name`: a temporary file, fsynced, then renamed (the
        temporary file is removed on error). The directory is not fsynced: see `sync`."""
        temp = self.path(name + TEMP_SUFFIX)
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            try:
                self._writer(fd, block)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(temp, self.path(name))
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
            raise

    def read(self, name: str) -> bytes:
        """The bytes of the file `name`."""
        return self.path(name).read_bytes()

    def remove(self, names: Iterable[str]) -> int:
        """Remove the files (those already gone are skipped); how many were removed."""
        removed = 0
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                self.path(name).unlink()
                removed += 1
        return removed

    def scan(self) -> tuple[list[str], dict[str, int]]:
        """Temporary files left by a crash, and every block file with its size.

        Anything else in the directory is not the store's and is left alone.
        """
        temporary: list[str] = []
        files: dict[str, int] = {}
        with os.scandir(self.directory) as entries:
            for entry in entries:
                if not entry.is_file(follow_symlinks=False):
                    continue
                if entry.name.endswith(TEMP_SUFFIX):
                    temporary.append(entry.name)
                elif entry.name.endswith(SUFFIX):
                    files[entry.name] = entry.stat(follow_symlinks=False).st_size
        return temporary, files
