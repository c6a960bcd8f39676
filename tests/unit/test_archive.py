"""The backup stream's index: a tree a restore may write as it is."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plexinode.shards import archive
from plexinode.shards.archive import DIRECTORY, FILE, SYMLINK, ArchiveError, Entry
from plexinode.wire import codec


def e(path: bytes, kind: int = FILE, size: int = 0, target: bytes = b"") -> Entry:
    return Entry(path=path, kind=kind, mode=0o644, mtime_ns=-5, size=size, target=target)


TREE = [
    e(b"", DIRECTORY),
    e(b"a", FILE, 10),
    e(b"d", DIRECTORY),
    e(b"d/\xff-not-utf8", FILE, 0),
    e(b"d/b", FILE, 5),
    e(b"d/link", SYMLINK, target=b"../a"),
    e(b"c", FILE, 7),
]


def test_index_round_trip_and_layout() -> None:
    assert archive.decode_index(archive.encode_index(TREE)) == TREE
    assert archive.data_bytes(TREE) == 22
    assert [(entry.path, off) for entry, off in archive.file_offsets(TREE)] == [
        (b"a", 0),
        (b"d/\xff-not-utf8", 10),
        (b"d/b", 10),
        (b"c", 15),
    ]
    assert TREE[4].parent == b"d"
    assert TREE[1].parent == b""


def test_a_single_file_is_its_root() -> None:
    only = [e(b"", FILE, 3)]
    assert archive.decode_index(archive.encode_index(only)) == only
    with pytest.raises(ArchiveError, match="more than one entry"):
        archive.check_tree([*only, e(b"x")])


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([], "start with its root"),
        ([e(b"x")], "start with its root"),
        ([e(b"", SYMLINK, target=b"x")], "root is a symbolic link"),
        ([e(b"", DIRECTORY), e(b"../x")], "plain relative path"),
        ([e(b"", DIRECTORY), e(b"/x")], "plain relative path"),
        ([e(b"", DIRECTORY), e(b"a//b")], "plain relative path"),
        ([e(b"", DIRECTORY), e(b"./x")], "plain relative path"),
        ([e(b"", DIRECTORY), e(b"a\0b")], "plain relative path"),
        ([e(b"", DIRECTORY), e(b"a"), e(b"a")], "appears twice"),
        ([e(b"", DIRECTORY), e(b"d/x")], "not listed before it"),
        ([e(b"", DIRECTORY), e(b"f"), e(b"f/x")], "not listed before it"),
        ([e(b"", DIRECTORY), e(b"d", DIRECTORY, size=3)], "has a size"),
        ([e(b"", DIRECTORY), e(b"f", FILE, target=b"t")], "has a link target"),
    ],
)
def test_trees_a_restore_must_not_write(entries: list[Entry], message: str) -> None:
    with pytest.raises(ArchiveError, match=message):
        archive.check_tree(entries)
    with pytest.raises(ArchiveError, match=message):
        archive.encode_index(entries)


def test_too_many_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archive, "MAX_ENTRIES", 2)
    with pytest.raises(ArchiveError, match="more than 2 entries"):
        archive.encode_index(TREE)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([2, []], "known version"),
        ([1], "known version"),
        ("x", "malformed index"),
        ([[], []], "known version"),
        ([1, 5], "no entry list"),
        ([1, [[b"", 9, 0, 0, 0, b""]]], "malformed index"),
        ([1, []], "start with its root"),
    ],
)
def test_malformed_indexes(value: object, message: str) -> None:
    with pytest.raises(ArchiveError, match=message):
        archive.decode_index(codec.pack(value))


def test_garbage_is_malformed() -> None:
    with pytest.raises(ArchiveError, match="malformed index"):
        archive.decode_index(b"\xc1")


def test_files_in_ranges() -> None:
    assert archive.files_in_ranges(TREE, []) == []
    assert archive.files_in_ranges(TREE, [(0, 1)]) == [b"a"]
    assert archive.files_in_ranges(TREE, [(9, 2)]) == [b"a", b"d/b"]
    assert archive.files_in_ranges(TREE, [(14, 1), (16, 100)]) == [b"d/b", b"c"]
    assert archive.files_in_ranges(TREE, [(10, 0), (22, 5)]) == []


@given(
    sizes=st.lists(st.integers(0, 50), min_size=1, max_size=20),
    start=st.integers(0, 1200),
    length=st.integers(1, 300),
)
def test_files_in_ranges_is_overlap(sizes: list[int], start: int, length: int) -> None:
    tree = [e(b"", DIRECTORY)] + [e(b"f%d" % i, FILE, size) for i, size in enumerate(sizes)]
    expected = [
        entry.path
        for entry, offset in archive.file_offsets(tree)
        if entry.size and offset < start + length and start < offset + entry.size
    ]
    assert archive.files_in_ranges(tree, [(start, length)]) == expected
