"""One node's replica of the cluster state: its writes, and what becomes of the entries it
hears (in the order of the checks)."""

from __future__ import annotations

import dataclasses
import logging

import pytest

from plexinode.identity import Identity
from plexinode.membership.replica import Heard, Replica
from plexinode.membership.state import FUTURE_LIMIT_MS, StateEntry, StateMap, sign_entry

ME = Identity.from_seed(b"replica".ljust(32, b"\0"))
WRITER = Identity.from_seed(b"writer".ljust(32, b"\0"))
NOW_MS = 1_000_000


def replica(max_entries: int = 256) -> Replica:
    return Replica(ME, StateMap(max_entries=max_entries), lambda: NOW_MS)


def test_a_write_is_stamped_signed_and_merged() -> None:
    r = replica()
    entry = r.write("net.motd", b"hello")
    assert (entry.key, entry.value, entry.writer) == ("net.motd", b"hello", ME.public_key)
    assert (entry.wall_ms, entry.counter) == (NOW_MS, 0)
    entry.check()
    assert r.state.get("net.motd") == entry
    again = r.write("net.motd", None)  # a delete, in the same millisecond
    assert (again.deleted, again.counter) == (True, 1)
    assert r.state.items() == {}


def test_a_write_to_a_full_map_is_refused() -> None:
    r = replica(max_entries=1)
    r.write("a", b"1")
    with pytest.raises(ValueError, match="full"):
        r.write("b", b"2")


def test_an_entry_heard_is_merged_and_moves_the_clock() -> None:
    r = replica()
    ahead = sign_entry(WRITER, "net.motd", b"from ahead", (NOW_MS + 5_000, 3))
    assert r.hear(ahead) is Heard.ACCEPTED
    assert r.state.get("net.motd") == ahead
    mine = r.write("net.motd", b"after it")  # our clock is behind: the stamp still outranks
    assert mine.stamp > ahead.stamp
    assert r.state.get("net.motd") == mine


def test_what_the_map_holds_already_is_known_before_its_signature() -> None:
    r = replica()
    entry = sign_entry(WRITER, "net.motd", b"hi", (NOW_MS, 0))
    assert r.hear(entry) is Heard.ACCEPTED
    assert r.hear(entry) is Heard.KNOWN
    older = dataclasses.replace(sign_entry(WRITER, "net.motd", b"old", (1, 0)), signature=bytes(64))
    assert r.hear(older) is Heard.KNOWN


def test_forged_and_malformed_entries_are_refused() -> None:
    r = replica()
    genuine = sign_entry(WRITER, "net.motd", b"hi", (NOW_MS, 0))
    assert r.hear(dataclasses.replace(genuine, value=b"pwned")) is Heard.BAD_SIGNATURE
    bad_key = dataclasses.replace(sign_entry(WRITER, "ok", b"x", (NOW_MS, 0)), key="NOT OK")
    assert r.hear(bad_key) is Heard.MALFORMED
    assert len(r.state) == 0


def test_the_guard_refuses_what_is_not_the_writers_to_make(
    caplog: pytest.LogCaptureFixture,
) -> None:
    r = replica()

    def only_mine(entry: StateEntry) -> str | None:
        return None if entry.writer == ME.public_key else "not an admin"

    r.guard = only_mine
    theirs = sign_entry(WRITER, "net.keys", b"k", (NOW_MS, 0))
    with caplog.at_level(logging.DEBUG, logger="plexinode.membership.replica"):
        assert r.hear(theirs) is Heard.REFUSED
    assert "not an admin" in caplog.text
    assert r.hear(sign_entry(ME, "net.keys", b"k", (NOW_MS, 0))) is Heard.ACCEPTED


def test_an_entry_the_map_refuses_is_unmerged_and_moves_no_clock() -> None:
    r = replica()
    far = sign_entry(WRITER, "net.motd", b"frozen", (NOW_MS + FUTURE_LIMIT_MS + 1, 0))
    assert r.hear(far) is Heard.UNMERGED
    assert Heard.UNMERGED.value is None
    assert r.state.stats["refused_far_future"] == 1
    assert r.write("net.motd", b"fine").wall_ms == NOW_MS
