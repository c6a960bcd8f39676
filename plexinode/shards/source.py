"""Reading what to back up: a file or a directory tree as one stream, changes detected.

`Source` walks its path once, in a fixed order (names sorted bytewise, so an unchanged tree
gives an identical stream and a later backup of it places nothing new), and yields the stream
of `archive`: the contents of every regular file, in 1 MiB pieces, each file followed by an
empty piece (`FILE_END`: the segmenter may cut there), then the index. Symbolic
links are recorded, never followed; sockets, FIFOs and devices are skipped and listed in
`Source.skipped` (a backup of them would restore nothing useful).

A file that changes while it is read would give a backup that matches no state the file was
ever in. Each file is therefore checked three ways: its size and modification time from the
walk are compared with those of the open file before and after reading; it must yield exactly
its size; and one read past the end must find nothing. Any difference fails the backup with
`SourceChanged` naming the file, so the owner retries (as restic reports and Tahoe-LAFS
uploads a snapshot of what it read). An unreadable file fails it too: a backup that silently
left files out would be discovered at the worst moment.

Blocking file I/O: a driver runs the iterator's steps in a worker thread.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from plexinode.errors import PlexinodeError
from plexinode.shards import archive
from plexinode.shards.archive import Entry

log = logging.getLogger(__name__)

READ_BYTES: Final = 1 << 20
#: The piece that marks the end of a file's contents in the stream.
FILE_END: Final = b""


class SourceError(PlexinodeError):
    """The path to back up cannot be read as it is."""


class SourceChanged(SourceError):
    """A file changed while it was being read."""


def _entry(path: bytes, st: os.stat_result, target: bytes = b"") -> Entry:
    if stat.S_ISDIR(st.st_mode):
        kind, size = archive.DIRECTORY, 0
    elif stat.S_ISLNK(st.st_mode):
        kind, size = archive.SYMLINK, 0
    else:
        kind, size = archive.FILE, st.st_size
    return Entry(path, kind, stat.S_IMODE(st.st_mode), st.st_mtime_ns, size, target)


class Source:
    """The stream of a file or directory (see the module docstring).

    Attributes:
        entries: the tree, complete once the stream has been read to its end.
        skipped: paths of special files left out.
        data_bytes: bytes of file contents in the stream.
        index_bytes: bytes of the index that ends the stream.
    """

    def __init__(self, path: Path) -> None:
        # A link given as the path itself is followed (its target is what was meant); links
        # inside a directory are recorded as links.
        self.path = Path(os.path.realpath(path))
        self.entries: list[Entry] = []
        self.skipped: list[bytes] = []
        self.data_bytes = 0
        self.index_bytes = 0
        try:
            self._root = os.lstat(self.path)
        except OSError as exc:
            raise SourceError(f"cannot read {path}: {exc.strerror}") from None
        if not (stat.S_ISREG(self._root.st_mode) or stat.S_ISDIR(self._root.st_mode)):
            raise SourceError(f"{path} is neither a regular file nor a directory")

    def estimate(self) -> int:
        """Bytes of file contents, from a walk of sizes only (what an offer asks room for);
        the stream read later is what counts."""
        if stat.S_ISREG(self._root.st_mode):
            return self._root.st_size
        total = 0
        for directory, _, files in os.walk(self.path):
            for name in files:
                try:
                    st = os.lstat(os.path.join(directory, name))
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    total += st.st_size
        return total

    def __iter__(self) -> Iterator[bytes]:
        """The stream's pieces: file contents, then the index."""
        self.entries = [_entry(b"", self._root)]
        if stat.S_ISREG(self._root.st_mode):
            yield from self._read(self.path, self.entries[0])
        else:
            yield from self._walk(self.path, b"")
        index = archive.encode_index(self.entries)
        self.data_bytes = archive.data_bytes(self.entries)
        self.index_bytes = len(index)
        yield index

    def _walk(self, directory: Path, prefix: bytes) -> Iterator[bytes]:
        try:
            names = sorted(os.fsencode(name) for name in os.listdir(directory))
        except OSError as exc:
            raise SourceError(f"cannot list {directory}: {exc.strerror}") from None
        for name in names:
            path = directory / os.fsdecode(name)
            relative = prefix + b"/" + name if prefix else name
            try:
                st = os.lstat(path)
                target = os.fsencode(os.readlink(path)) if stat.S_ISLNK(st.st_mode) else b""
            except FileNotFoundError:
                continue  # removed since the listing: it is not part of the backup
            except OSError as exc:
                raise SourceError(f"cannot read {path}: {exc.strerror}") from None
            if not (
                stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode)
            ):
                log.info("backup: skipping %s (not a file, directory or link)", path)
                self.skipped.append(relative)
                continue
            entry = _entry(relative, st, target)
            self.entries.append(entry)
            if entry.kind == archive.FILE:
                yield from self._read(path, entry)
            elif entry.kind == archive.DIRECTORY:
                yield from self._walk(path, relative)

    def _read(self, path: Path, entry: Entry) -> Iterator[bytes]:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOENT):  # replaced by a link, or gone
                raise SourceChanged(f"{path} changed while it was being read") from None
            raise SourceError(f"cannot read {path}: {exc.strerror}") from None
        with os.fdopen(fd, "rb", buffering=0) as file:
            self._same(path, entry, os.fstat(fd))
            left = entry.size
            while left:
                piece = file.read(min(READ_BYTES, left))
                if not piece:
                    raise SourceChanged(f"{path} changed while it was being read (it shrank)")
                left -= len(piece)
                yield piece
            if file.read(1):
                raise SourceChanged(f"{path} changed while it was being read (it grew)")
            self._same(path, entry, os.fstat(fd))
        yield FILE_END

    @staticmethod
    def _same(path: Path, entry: Entry, st: os.stat_result) -> None:
        if st.st_size != entry.size or st.st_mtime_ns != entry.mtime_ns:
            raise SourceChanged(f"{path} changed while it was being read")
