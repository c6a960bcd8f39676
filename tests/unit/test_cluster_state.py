"""The replicated cluster state: the hybrid clock, signed entries, and the merge laws
(commutative, associative, idempotent, so copies converge) checked with hypothesis."""

from __future__ import annotations

import dataclasses
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plexinode.errors import AuthenticationError, DecodeError
from plexinode.identity import Identity
from plexinode.membership.state import (
    FUTURE_LIMIT_MS,
    MAX_COUNTER,
    MAX_VALUE,
    HybridClock,
    Merged,
    StateEntry,
    StateMap,
    sign_entry,
    state_digest,
)
from plexinode.wire.codec import DATAGRAM_LIMITS, pack, unpack

WRITERS = [Identity.from_seed(bytes(31) + bytes([i])) for i in range(1, 4)]
KEYS = ["net.name", "blocklist/a", "x"]


def test_the_clock_never_goes_back_and_passes_what_it_observes() -> None:
    wall = [1000]
    clock = HybridClock(lambda: wall[0])
    assert clock.now() == (1000, 0)
    assert clock.now() == (1000, 1)  # same millisecond
    wall[0] = 900  # the wall clock steps back
    assert clock.now() == (1000, 2)
    clock.observe(5000, 7)  # a node five seconds ahead
    assert clock.now() == (5000, 8)
    wall[0] = 6000
    assert clock.now() == (6000, 0)
    clock.observe(6000, MAX_COUNTER)
    assert clock.now() == (6001, 0)


def test_entries_are_signed_and_checked() -> None:
    entry = sign_entry(WRITERS[0], "net.motd", b"hello", (10, 0))
    entry.check()
    again = StateEntry.from_wire(entry.to_wire())
    assert again == entry
    with pytest.raises(AuthenticationError):
        dataclasses.replace(entry, value=b"forged").check()
    with pytest.raises(AuthenticationError):
        dataclasses.replace(entry, writer=WRITERS[1].public_key).check()
    with pytest.raises(DecodeError, match="key"):
        dataclasses.replace(entry, key="Bad Key").check()
    tombstone = sign_entry(WRITERS[0], "net.motd", None, (11, 0))
    tombstone.check()
    with pytest.raises(DecodeError, match="no value"):
        dataclasses.replace(tombstone, value=b"x").check()
    with pytest.raises(ValueError, match="key"):
        sign_entry(WRITERS[0], "-leading-dash", b"", (1, 0))
    with pytest.raises(ValueError, match="at most"):
        sign_entry(WRITERS[0], "k", b"v" * (MAX_VALUE + 1), (1, 0))


def test_the_greatest_stamp_wins_and_deletes_are_writes() -> None:
    m = StateMap()
    first = sign_entry(WRITERS[0], "k", b"1", (10, 0))
    later = sign_entry(WRITERS[1], "k", b"2", (10, 1))
    delete = sign_entry(WRITERS[2], "k", None, (11, 0))
    assert m.merge(later, 0).accepted
    assert not m.would_accept(first)
    assert m.merge(first, 0).reason == "stale"
    assert m.items() == {"k": b"2"}
    assert m.merge(delete, 0).accepted
    assert m.items() == {}
    assert m.get("k") == delete  # the tombstone is kept
    assert not m.merge(later, 0).accepted  # so the old write cannot come back


def test_a_full_map_refuses_new_keys_but_takes_updates() -> None:
    m = StateMap(max_entries=2)
    for i, key in enumerate(["a", "b"]):
        assert m.merge(sign_entry(WRITERS[0], key, b"v", (i, 0)), 0).accepted
    newcomer = sign_entry(WRITERS[0], "c", b"v", (5, 0))
    assert not m.would_accept(newcomer)
    assert m.merge(newcomer, 0).reason == "full"
    assert m.merge(sign_entry(WRITERS[0], "a", b"w", (6, 0)), 0).accepted
    assert m.stats["refused_full"] == 1


def test_writes_from_far_ahead_are_accepted_and_counted() -> None:
    m = StateMap(max_drift=60)
    ahead = sign_entry(WRITERS[0], "k", b"v", (10_000_000, 0))
    assert m.merge(ahead, now_ms=1_000).accepted
    assert m.stats["from_the_future"] == 1


def test_writes_more_than_a_day_ahead_are_refused_until_the_clock_comes_near() -> None:
    m = StateMap()
    far = sign_entry(WRITERS[0], "k", b"v", (FUTURE_LIMIT_MS + 1_001, 0))
    assert m.merge(far, now_ms=1_000) == Merged(False, "far future")
    assert m.stats["refused_far_future"] == 1
    assert m.get("k") is None
    # Offered again (push-pull) once this clock is within a day of the stamp: taken.
    assert m.merge(far, now_ms=1_001).accepted
    assert m.get("k") == far


# -- the laws ----------------------------------------------------------------------------------


@st.composite
def writes(draw: st.DrawFn) -> list[StateEntry]:
    out = []
    for _ in range(draw(st.integers(0, 14))):
        writer = draw(st.sampled_from(WRITERS))
        key = draw(st.sampled_from(KEYS))
        value = draw(st.one_of(st.none(), st.binary(max_size=4)))
        stamp = (draw(st.integers(0, 4)), draw(st.integers(0, 2)))
        out.append(sign_entry(writer, key, value, stamp))
    return out


def merged(entries: list[StateEntry]) -> dict[str, StateEntry]:
    m = StateMap()
    for entry in entries:
        m.merge(entry, 0)
    return {e.key: e for e in m.entries()}


@settings(max_examples=300, deadline=None)
@given(writes(), st.integers(0, 2**32), st.integers(1, 3))
def test_merging_is_commutative_idempotent_and_associative(
    entries: list[StateEntry], seed: int, repeats: int
) -> None:
    rng = random.Random(seed)
    reordered = entries * repeats
    rng.shuffle(reordered)
    assert merged(reordered) == merged(entries)  # any order, any repetition
    # Two copies that heard different halves, merged into each other, agree with one that
    # heard everything.
    split = rng.randrange(len(entries) + 1)
    left, right = StateMap(), StateMap()
    for entry in entries[:split]:
        left.merge(entry, 0)
    for entry in entries[split:]:
        right.merge(entry, 0)
    for entry in list(right.entries()):
        left.merge(entry, 0)
    for entry in list(left.entries()):
        right.merge(entry, 0)
    everything = merged(entries)
    assert {e.key: e for e in left.entries()} == everything
    assert {e.key: e for e in right.entries()} == everything


@settings(max_examples=200, deadline=None)
@given(writes(), writes())
def test_would_accept_predicts_merge(held: list[StateEntry], offered: list[StateEntry]) -> None:
    m = StateMap(max_entries=2)
    for entry in held:
        m.merge(entry, 0)
    for entry in offered:
        predicted = m.would_accept(entry)
        assert m.merge(entry, 0).accepted == predicted


# -- pinned bytes ------------------------------------------------------------------------------
# Entries signed by earlier releases must verify in later ones, and the other way round: the
# signed bytes, the (deterministic Ed25519) signature and the wire form are pinned here.

PINNED_WRITE_SIGNED = bytes.fromhex(
    "706c6578696e6f64652d73746174652d76310096a86e65742e6d6f7464c40568656c6c6fc2cf0000018bcfe5"
    "687b04c4204cb5abf6ad79fbf5abbccafcc269d85cd2651ed4b885b5869f241aedf0a5ba29"
)
PINNED_WRITE_WIRE = bytes.fromhex(
    "97a86e65742e6d6f7464c40568656c6c6fc2cf0000018bcfe5687b04c4204cb5abf6ad79fbf5abbccafcc269"
    "d85cd2651ed4b885b5869f241aedf0a5ba29c440bcd1e1bbf655e46efdeff2d3a42a62064079c47a8812784e"
    "0dbc5cd4e9cc370841ec66edf32d7a14915ec1f82362bd93413d11a21588eb1eda25e69c7fac6f0e"
)
PINNED_DELETE_SIGNED = bytes.fromhex(
    "706c6578696e6f64652d73746174652d76310096a86e65742e6d6f7464c400c3cf0000018bcfe5687c00c420"
    "4cb5abf6ad79fbf5abbccafcc269d85cd2651ed4b885b5869f241aedf0a5ba29"
)
PINNED_DELETE_WIRE = bytes.fromhex(
    "97a86e65742e6d6f7464c400c3cf0000018bcfe5687c00c4204cb5abf6ad79fbf5abbccafcc269d85cd2651e"
    "d4b885b5869f241aedf0a5ba29c440db94d6df538a2825ad636166e4aa12d596f2f6fc2180a53ac4bfaedf24"
    "e2d2b418ec36ecbc534d5536bf3e380c46576c474f4776b5211e183a99a8a795c9bd0f"
)


@pytest.mark.parametrize(
    ("value", "stamp", "signed", "wire_form"),
    [
        (b"hello", (1_700_000_000_123, 4), PINNED_WRITE_SIGNED, PINNED_WRITE_WIRE),
        (None, (1_700_000_000_124, 0), PINNED_DELETE_SIGNED, PINNED_DELETE_WIRE),
    ],
)
def test_entry_bytes_are_pinned(
    value: bytes | None, stamp: tuple[int, int], signed: bytes, wire_form: bytes
) -> None:
    entry = sign_entry(WRITERS[0], "net.motd", value, stamp)
    assert entry.signed_bytes() == signed
    assert entry.signature == wire_form[-64:]
    assert pack(entry.to_wire()) == wire_form
    # What an earlier release sent still decodes to the same entry and verifies.
    decoded = StateEntry.from_wire(unpack(wire_form, DATAGRAM_LIMITS))
    assert decoded == entry
    decoded.check()


def test_equal_maps_have_equal_digests() -> None:
    first, second = StateMap(), StateMap()
    made = [sign_entry(WRITERS[i], key, b"v", (i, 0)) for i, key in enumerate(KEYS)]
    for entry in made:
        first.merge(entry, 0)
    for entry in reversed(made):
        second.merge(entry, 0)
    assert len(first) == len(second) == 3
    assert state_digest(first.entries()) == state_digest(second.entries())
    second.merge(sign_entry(WRITERS[0], KEYS[0], None, (9, 0)), 0)  # a delete
    assert len(second) == 3  # the tombstone is held
    assert state_digest(first.entries()) != state_digest(second.entries())
    assert state_digest(StateMap().entries()) != state_digest(first.entries())
