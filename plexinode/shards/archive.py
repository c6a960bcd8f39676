"""The backup stream's layout: file contents one after another, then an index of the tree.

A backup is one byte stream cut into segments. For a single file the stream is the file's
bytes; for a directory it is the bytes of every regular file in walk order, and after them
the *index*: one entry per file, directory and symbolic link, with its path, kind, permission
bits and modification time, and for a file its size (its offset in the stream is the sum of the
sizes before it, so it is not stored). The index is in the stream, not in the manifest, so it
is encrypted, erasure-coded and deduplicated like the data, and the manifest stays small
whatever the number of files. The manifest's owner-only part says where the index starts.

The first entry is the root (an empty path): the backed-up file itself, or the top directory.
Every later entry's parent is a directory entry listed before it, so a restore creates
directories before their contents and never follows a path outside its destination: paths are
relative, their components are neither empty, ``.`` nor ``..``, and hold no NUL. Paths and link
targets are bytes (``os.fsencode``), so a file name that is not valid UTF-8 survives.

This is a sans-I/O core; the walk that produces entries and the writer that restores them are
drivers.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from plexinode.errors import DecodeError
from plexinode.wire import codec
from plexinode.wire.schema import Bytes, Int, Struct, wire

FILE: Final = 0
DIRECTORY: Final = 1
SYMLINK: Final = 2
KIND_NAMES: Final = {FILE: "file", DIRECTORY: "directory", SYMLINK: "symbolic link"}
MAX_PATH_BYTES: Final = 4096
#: A tree of a million entries has an index of about 100 MB, held in memory by a restore.
MAX_ENTRIES: Final = 1_000_000
_INDEX_VERSION: Final = 1
_I64: Final = 1 << 63


class ArchiveError(Exception):
    """An index that is not a well-formed tree."""


@dataclass(frozen=True, slots=True)
class Entry(Struct):
    """One file, directory or symbolic link of the backed-up tree.

    Attributes:
        path: relative path (``/``-separated bytes); empty for the root.
        kind: `FILE`, `DIRECTORY` or `SYMLINK`.
        mode: permission bits (``st_mode & 0o7777``).
        mtime_ns: modification time.
        size: file size in bytes (0 for the other kinds).
        target: a symbolic link's target (empty for the other kinds).
    """

    path: bytes = wire(Bytes(0, MAX_PATH_BYTES))
    kind: int = wire(Int(0, 2))
    mode: int = wire(Int(0, 0o7777))
    mtime_ns: int = wire(Int(-_I64, _I64 - 1))
    size: int = wire(Int(0, _I64 - 1))
    target: bytes = wire(Bytes(0, MAX_PATH_BYTES))

    @property
    def parent(self) -> bytes:
        """The path of the directory holding this entry (the root's is itself)."""
        return self.path.rpartition(b"/")[0]


def _check_path(path: bytes) -> None:
    parts = path.split(b"/")
    if any(part in (b"", b".", b"..") or b"\0" in part for part in parts):
        raise ArchiveError(f"path {path!r} is not a plain relative path")


def check_tree(entries: Sequence[Entry]) -> None:
    """Raise `ArchiveError` unless `entries` form a tree a restore may write as it is."""
    if not entries or entries[0].path != b"":
        raise ArchiveError("the index does not start with its root")
    root = entries[0]
    if root.kind == SYMLINK:
        raise ArchiveError("the root is a symbolic link")
    if root.kind == FILE and len(entries) > 1:
        raise ArchiveError("a file backup has more than one entry")
    directories = {b""}
    seen = {b""}
    for entry in entries[1:]:
        _check_path(entry.path)
        if entry.path in seen:
            raise ArchiveError(f"path {entry.path!r} appears twice")
        if entry.parent not in directories:
            raise ArchiveError(f"the directory of {entry.path!r} is not listed before it")
        seen.add(entry.path)
        if entry.kind == DIRECTORY:
            directories.add(entry.path)
    for entry in entries:
        if entry.kind != FILE and entry.size:
            raise ArchiveError(f"{KIND_NAMES[entry.kind]} {entry.path!r} has a size")
        if entry.kind != SYMLINK and entry.target:
            raise ArchiveError(f"{KIND_NAMES[entry.kind]} {entry.path!r} has a link target")


def data_bytes(entries: Iterable[Entry]) -> int:
    """The length of the stream before the index: the files' sizes added up."""
    return sum(entry.size for entry in entries if entry.kind == FILE)


def encode_index(entries: Sequence[Entry]) -> bytes:
    """The index's bytes (checked first: a backup never stores an index a restore refuses)."""
    check_tree(entries)
    if len(entries) > MAX_ENTRIES:
        raise ArchiveError(f"more than {MAX_ENTRIES:,} entries")
    return codec.pack([_INDEX_VERSION, [entry.to_wire() for entry in entries]])


def decode_index(data: bytes) -> list[Entry]:
    """The entries of an index; `ArchiveError` for anything but a well-formed tree."""
    limits = codec.Limits(
        max_buffer=len(data), max_str=0, max_bin=MAX_PATH_BYTES, max_array=MAX_ENTRIES, max_map=0
    )
    try:
        value = codec.unpack(data, limits)
        if type(value) is not list or len(value) != 2 or value[0] != _INDEX_VERSION:
            raise ArchiveError("not an index of a known version")
        if type(value[1]) is not list:
            raise ArchiveError("the index holds no entry list")
        entries = [Entry.from_wire(item) for item in value[1]]
    except DecodeError as exc:
        raise ArchiveError(f"malformed index: {exc}") from None
    check_tree(entries)
    return entries


def file_offsets(entries: Sequence[Entry]) -> list[tuple[Entry, int]]:
    """Each file entry with its offset in the stream."""
    placed = []
    offset = 0
    for entry in entries:
        if entry.kind == FILE:
            placed.append((entry, offset))
            offset += entry.size
    return placed


def files_in_ranges(entries: Sequence[Entry], ranges: Iterable[tuple[int, int]]) -> list[bytes]:
    """The paths of the files that overlap any (offset, length) range of the stream, in order."""
    placed = [(offset, entry) for entry, offset in file_offsets(entries) if entry.size]
    starts = [offset for offset, _ in placed]
    hit: set[int] = set()
    for start, length in ranges:
        if length <= 0:
            continue
        first = max(0, bisect.bisect_right(starts, start) - 1)
        for i in range(first, len(placed)):
            offset, entry = placed[i]
            if offset >= start + length:
                break
            if offset + entry.size > start:
                hit.add(i)
    return [placed[i][1].path for i in sorted(hit)]
