"""The holder's side of a shards/1 conversation: pieces to blocks, blocks to group commits."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plexinode.errors import RemoteProtocolError
from plexinode.shards import holding
from plexinode.shards.holding import HolderSession
from plexinode.shards.messages import ShardPut

OWNER = b"o" * 32


def pieces(
    segment: bytes, data: bytes, size: int = 0, *, flush: bool = False, step: int = 4
) -> list[ShardPut]:
    size = size or len(data)
    out = [
        ShardPut(
            b"B" * 16, b"H" * 16, 99.0, segment, 2, b"r" * 32, size, at, data[at : at + step], False
        )
        for at in range(0, len(data), step)
    ]
    if flush:
        out[-1] = dataclasses.replace(out[-1], flush=True)
    return out


def feed(session: HolderSession, puts: list[ShardPut]) -> list[holding.Commit]:
    return [c for c in (session.put(p) for p in puts) if c is not None]


def test_pieces_assemble_and_a_flush_commits_the_window() -> None:
    session = HolderSession(OWNER)
    assert feed(session, pieces(b"1" * 32, b"abcdefghij")) == []
    assert session.buffered_bytes == 10
    commits = feed(session, pieces(b"2" * 32, b"klmnop", flush=True))
    assert len(commits) == 1
    blocks = commits[0].blocks
    assert [b.data for b in blocks] == [b"abcdefghij", b"klmnop"]
    assert blocks[0].owner == OWNER
    assert (blocks[0].backup_id, blocks[0].home, blocks[0].index, blocks[0].lease_expires) == (
        b"B" * 16,
        b"H" * 16,
        2,
        99.0,
    )
    assert session.buffered_bytes == 0
    assert session.take() is None


def test_the_pending_caps_force_a_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(holding, "MAX_PENDING_BLOCKS", 2)
    session = HolderSession(OWNER)
    assert feed(session, pieces(b"1" * 32, b"a" * 8)) == []
    assert [len(c.blocks) for c in feed(session, pieces(b"2" * 32, b"b" * 8))] == [2]
    monkeypatch.setattr(holding, "MAX_PENDING_BLOCKS", 99)
    monkeypatch.setattr(holding, "MAX_PENDING_BYTES", 16)
    assert [len(c.blocks) for c in feed(session, pieces(b"3" * 32, b"c" * 16))] == [1]
    with pytest.raises(RemoteProtocolError, match="more than the stream may buffer"):
        feed(session, pieces(b"4" * 32, b"d" * 20))


def test_take_returns_what_waits_when_the_stream_ends() -> None:
    session = HolderSession(OWNER)
    feed(session, pieces(b"1" * 32, b"abc"))
    commit = session.take()
    assert commit is not None
    assert [b.data for b in commit.blocks] == [b"abc"]


@pytest.mark.parametrize(
    ("puts", "message"),
    [
        (lambda: pieces(b"1" * 32, b"abcdefgh")[1:], "starts at offset 0"),
        (
            lambda: [pieces(b"1" * 32, b"abcdefgh")[0], pieces(b"2" * 32, b"abcdefgh")[0]],
            "new block began",
        ),
        (
            lambda: [
                pieces(b"1" * 32, b"abcdefgh")[0],
                dataclasses.replace(pieces(b"1" * 32, b"abcdefgh")[1], offset=5),
            ],
            "expected 4",
        ),
        (lambda: pieces(b"1" * 32, b"abcdefgh", size=6), "past the block's size"),
        (
            lambda: [dataclasses.replace(pieces(b"1" * 32, b"abcdefgh")[0], flush=True)],
            "flush in the middle",
        ),
    ],
)
def test_pieces_that_break_the_rules_are_protocol_errors(puts: object, message: str) -> None:
    session = HolderSession(OWNER)
    with pytest.raises(RemoteProtocolError, match=message):
        feed(session, puts())  # type: ignore[operator]


def test_empty_pieces_are_allowed_and_change_nothing() -> None:
    session = HolderSession(OWNER)
    first = pieces(b"1" * 32, b"abcd")[0]
    assert session.put(dataclasses.replace(first, data=b"", size=4)) is None
    assert session.buffered_bytes == 0
    assert session.put(first) is None
    assert session.take() is not None


@given(
    blocks=st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=8),
    step=st.integers(1, 9),
)
def test_any_split_gives_back_the_blocks(blocks: list[bytes], step: int) -> None:
    session = HolderSession(OWNER)
    puts = [p for i, data in enumerate(blocks) for p in pieces(bytes([i]) * 32, data, step=step)]
    puts[-1] = dataclasses.replace(puts[-1], flush=True)
    commits = feed(session, puts)
    assert [b.data for c in commits for b in c.blocks] == blocks
