"""Reading a tree into a backup stream and writing it back: whole, atomic, changes detected."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from plexinode.shards import archive, restore_target, source
from plexinode.shards.restore_target import RestoreTarget, RestoreTargetError
from plexinode.shards.source import Source, SourceChanged, SourceError


def make_tree(root: Path) -> None:
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "a.txt").write_bytes(b"alpha" * 1000)
    (root / "empty").write_bytes(b"")
    (root / "sub" / "big.bin").write_bytes(os.urandom(source.READ_BYTES * 2 + 5))
    (root / "sub" / "deeper" / "z").write_bytes(b"zz")
    (root / "sub" / os.fsdecode(b"\xff-name")).write_bytes(b"odd name")
    os.symlink("../a.txt", root / "sub" / "link")
    os.mkfifo(root / "pipe")
    os.chmod(root / "a.txt", 0o640)
    os.chmod(root / "sub" / "deeper", 0o500)
    os.utime(root / "a.txt", ns=(1_000_000_000, 1_234_567_891_000))


def read_all(src: Source) -> tuple[bytes, bytes]:
    stream = b"".join(src)
    return stream[: src.data_bytes], stream[src.data_bytes :]


def snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(dirpath) / name
            st = os.lstat(path)
            rel = str(path.relative_to(root))
            if path.is_fifo():
                out[rel] = ("fifo",)
            elif os.path.islink(path):
                out[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                out[rel] = ("dir", st.st_mode & 0o7777, st.st_mtime_ns)
            else:
                out[rel] = ("file", st.st_mode & 0o7777, st.st_mtime_ns, path.read_bytes())
    return out


def test_a_tree_round_trips(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    make_tree(tree)
    src = Source(tree)
    data, index = read_all(src)
    assert src.skipped == [b"pipe"]
    entries = archive.decode_index(index)
    assert entries == src.entries
    assert len(index) == src.index_bytes
    assert [e.path for e in entries][:3] == [b"", b"a.txt", b"empty"]
    dest = tmp_path / "restored"
    target = RestoreTarget(dest, entries)
    for i in range(0, len(data), 70_000):
        target.write(data[i : i + 70_000])
    assert not dest.exists()  # nothing at the destination until it is complete
    assert target.finish() == dest
    expected = snapshot(tree)
    del expected["pipe"]
    assert snapshot(dest) == expected
    assert os.lstat(dest).st_mtime_ns == os.lstat(tree).st_mtime_ns
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".restore")]


def test_an_unchanged_tree_gives_the_same_stream(tmp_path: Path) -> None:
    make_tree(tmp_path)
    assert read_all(Source(tmp_path)) == read_all(Source(tmp_path))


def test_a_single_file_and_a_link_to_it(tmp_path: Path) -> None:
    file = tmp_path / "f"
    file.write_bytes(b"contents")
    os.symlink(file, tmp_path / "via")
    src = Source(tmp_path / "via")
    data, index = read_all(src)
    assert data == b"contents"
    entries = archive.decode_index(index)
    assert entries[0].kind == archive.FILE
    dest = tmp_path / "back"
    target = RestoreTarget(dest, entries)
    target.write(data)
    target.finish()
    assert dest.read_bytes() == b"contents"


def test_empty_file_and_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "e").write_bytes(b"")
    data, index = read_all(Source(tmp_path / "e"))
    target = RestoreTarget(tmp_path / "e2", archive.decode_index(index))
    target.finish()
    assert (tmp_path / "e2").read_bytes() == b""
    (tmp_path / "d").mkdir()
    data, index = read_all(Source(tmp_path / "d"))
    assert data == b""
    RestoreTarget(tmp_path / "d2", archive.decode_index(index)).finish()
    assert (tmp_path / "d2").is_dir()


def test_sources_that_cannot_be_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SourceError, match="cannot read"):
        Source(tmp_path / "missing")
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(SourceError, match="neither a regular file nor a directory"):
        Source(tmp_path / "fifo")
    os.unlink(tmp_path / "fifo")
    (tmp_path / "f").write_bytes(b"x")
    real_open = os.open

    def refuse(path: object, *args: object, **kwargs: object) -> int:
        if str(path).endswith("/f"):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_open(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(source.os, "open", refuse)
    with pytest.raises(SourceError, match=r"cannot read .*f: Permission denied"):
        read_all(Source(tmp_path))


def test_unlistable_and_unstatable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x").write_bytes(b"x")
    src = Source(tmp_path)

    def no_list(path: object) -> list[str]:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(source.os, "listdir", no_list)
    with pytest.raises(SourceError, match="cannot list"):
        read_all(src)
    monkeypatch.undo()
    real_lstat = os.lstat

    def lstat(path: object) -> os.stat_result:
        if str(path).endswith("/x"):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_lstat(path)  # type: ignore[arg-type]

    monkeypatch.setattr(source.os, "lstat", lstat)
    with pytest.raises(SourceError, match="cannot read"):
        read_all(Source(tmp_path))


def test_a_file_removed_after_the_listing_is_not_part_of_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "gone").write_bytes(b"x")
    (tmp_path / "kept").write_bytes(b"y")
    real_listdir = os.listdir

    def listdir(path: object) -> list[str]:
        names = real_listdir(path)  # type: ignore[arg-type]
        with __import__("contextlib").suppress(FileNotFoundError):
            os.unlink(tmp_path / "gone")
        return names

    monkeypatch.setattr(source.os, "listdir", listdir)
    src = Source(tmp_path)
    data, _ = read_all(src)
    assert data == b"y"
    assert [e.path for e in src.entries] == [b"", b"kept"]


@pytest.mark.parametrize("change", ["grow", "shrink", "touch", "replace", "remove"])
def test_a_file_that_changes_while_read_fails_the_backup(tmp_path: Path, change: str) -> None:
    big = tmp_path / "big"
    big.write_bytes(b"a" * (source.READ_BYTES * 3))
    (tmp_path / "next").write_bytes(b"b")
    src = iter(Source(tmp_path))
    if change in ("replace", "remove"):
        # Between the walk's lstat and the open: the file is gone or is a link now.
        src_obj = Source(tmp_path)
        it = iter(src_obj)
        real_open = os.open

        def swap(path: object, *args: object, **kwargs: object) -> int:
            if str(path).endswith("/big"):
                os.unlink(big)
                if change == "replace":
                    os.symlink("next", big)
            return real_open(path, *args, **kwargs)  # type: ignore[arg-type]

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(source.os, "open", swap)
            with pytest.raises(SourceChanged, match="changed while it was being read"):
                list(it)
        return
    next(src)  # the first piece of "big" is read
    with open(big, "r+b") as f:
        if change == "grow":
            f.seek(0, 2)
            f.write(b"more")
            os.utime(big, ns=(0, os.lstat(tmp_path / "next").st_mtime_ns))
        elif change == "shrink":
            f.truncate(10)
        else:
            os.utime(big, ns=(0, 5))
    with pytest.raises(SourceChanged, match="changed while it was being read"):
        list(src)


def test_a_file_grown_with_its_time_put_back_is_caught_by_the_read_past_the_end(
    tmp_path: Path,
) -> None:
    big = tmp_path / "big"
    big.write_bytes(b"a" * (source.READ_BYTES + 1))
    st = os.lstat(big)
    pieces = iter(Source(big))
    next(pieces)
    with open(big, "ab") as f:
        f.write(b"!")
    os.utime(big, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(SourceChanged, match="grew"):
        list(pieces)


def test_destinations_that_cannot_take_a_restore(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entries = [archive.Entry(b"", archive.FILE, 0o644, 0, 1, b"")]
    (tmp_path / "exists").write_bytes(b"")
    with pytest.raises(RestoreTargetError, match="already exists"):
        RestoreTarget(tmp_path / "exists", entries)
    os.symlink("nowhere", tmp_path / "dangling")
    with pytest.raises(RestoreTargetError, match="already exists"):
        RestoreTarget(tmp_path / "dangling", entries)
    with pytest.raises(RestoreTargetError, match="is not a directory"):
        RestoreTarget(tmp_path / "exists" / "x", entries)
    monkeypatch.setattr(restore_target.os, "access", lambda *a: False)
    with pytest.raises(RestoreTargetError, match="is not writable"):
        RestoreTarget(tmp_path / "new", entries)
    monkeypatch.undo()

    def full(*args: object, **kwargs: object) -> str:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(restore_target.tempfile, "mkstemp", full)
    with pytest.raises(RestoreTargetError, match="No space left"):
        RestoreTarget(tmp_path / "new", entries)


def dir_entries() -> list[archive.Entry]:
    E = archive.Entry
    return [
        E(b"", archive.DIRECTORY, 0o755, 0, 0, b""),
        E(b"a", archive.FILE, 0o644, 0, 4, b""),
        E(b"b", archive.FILE, 0o644, 0, 4, b""),
        E(b"c", archive.FILE, 0o644, 0, 4, b""),
        E(b"e", archive.FILE, 0o644, 0, 0, b""),
    ]


def test_a_partial_restore_leaves_out_the_files_it_cannot_complete(tmp_path: Path) -> None:
    target = RestoreTarget(tmp_path / "out", dir_entries())
    target.write(b"aaaab")
    target.skip(4)  # b's last three bytes and c's first
    target.write(b"ccc")
    target.finish()
    assert target.damaged == [b"b", b"c"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a", "e"]
    assert (tmp_path / "out" / "a").read_bytes() == b"aaaa"


def test_a_single_file_with_a_hole_is_not_restored(tmp_path: Path) -> None:
    target = RestoreTarget(tmp_path / "f", [archive.Entry(b"", archive.FILE, 0o644, 0, 4, b"")])
    target.skip(4)
    with pytest.raises(RestoreTargetError, match="part of it is missing"):
        target.finish()
    target.abort()
    assert list(tmp_path.iterdir()) == []


def test_streams_that_disagree_with_the_index(tmp_path: Path) -> None:
    target = RestoreTarget(tmp_path / "out", dir_entries())
    with pytest.raises(RestoreTargetError, match="more data"):
        target.write(b"x" * 13)
    target.abort()
    target = RestoreTarget(tmp_path / "out", dir_entries())
    target.write(b"aaaa")
    with pytest.raises(RestoreTargetError, match="ended before 'b'"):
        target.finish()
    target.abort()
    assert list(tmp_path.iterdir()) == []


def test_abort_removes_a_half_written_tree_even_read_only(tmp_path: Path) -> None:
    entries = [
        archive.Entry(b"", archive.DIRECTORY, 0o755, 0, 0, b""),
        archive.Entry(b"ro", archive.DIRECTORY, 0o500, 0, 0, b""),
        archive.Entry(b"ro/f", archive.FILE, 0o400, 0, 10, b""),
    ]
    target = RestoreTarget(tmp_path / "out", entries)
    target.write(b"12345")
    target.abort()
    target.abort()  # twice is harmless
    assert list(tmp_path.iterdir()) == []
    single = RestoreTarget(tmp_path / "f", [archive.Entry(b"", archive.FILE, 0o644, 0, 4, b"")])
    single.write(b"ab")
    single.abort()
    assert list(tmp_path.iterdir()) == []


def test_a_destination_that_appears_meanwhile_is_not_replaced(tmp_path: Path) -> None:
    target = RestoreTarget(tmp_path / "out", dir_entries()[:1])
    (tmp_path / "out").mkdir()
    with pytest.raises(RestoreTargetError, match="appeared during the restore"):
        target.finish()
    target.abort()
