"""Replication choices: which records a new contact is handed, and which are republished."""

from __future__ import annotations

import dataclasses

import pytest

from plexinode.dht.contact import Contact
from plexinode.dht.record_types import PROVIDER, default_registry
from plexinode.dht.records import Record, sign_record
from plexinode.dht.replication import RADIUS_MAX_AGE, Replication, record_id
from plexinode.dht.routing import RoutingTable
from plexinode.dht.store import RecordStore
from plexinode.identity import Identity
from plexinode.net.address import Address
from tests.unit.ids import nid

NOW = 1_700_000_000.0
ALICE = Identity.from_seed(b"a" * 32)
BOB = Identity.from_seed(b"b" * 32)
OWN_KEY = bytes(range(32))  # our public key (only compared, never verified here)


def record(
    key: int, *, publisher: bytes = b"\x01" * 32, expires_at: float = NOW + 3600, seq: int = 1
) -> Record:
    """An unsigned record under ``nid(key)`` (this core never verifies signatures)."""
    return Record(PROVIDER, nid(key).raw, publisher, seq, int(expires_at), b"", bytes(64))


def table(own: int, *contacts: int) -> RoutingTable:
    routing = RoutingTable(nid(own), k=2)
    for value in contacts:
        routing.observe(Contact(nid(value), Address(f"10.0.{value >> 8}.{value & 255}", 7000)), NOW)
    return routing


def replication(routing: RoutingTable, **kwargs: float) -> Replication:
    return Replication(routing, OWN_KEY, k=2, **kwargs)


def test_record_id_is_type_key_and_publisher() -> None:
    held = record(5, publisher=b"\x02" * 32)
    assert record_id(held) == (PROVIDER, nid(5).raw, b"\x02" * 32)
    assert record_id(held) == held.slot()


# -- handoff ---------------------------------------------------------------------------------------
# Keys are 0 below, so a node's distance to the key is its ID.


def test_a_newcomer_closer_than_the_kth_contact_gets_records_we_are_closest_to() -> None:
    routing = table(1, 4, 8, 16, 2)  # we are at distance 1; 2 is the newcomer
    held = [record(0)]
    assert replication(routing).records_for(nid(2), held, NOW) == held


def test_a_newcomer_beyond_the_kth_closest_gets_nothing() -> None:
    routing = table(1, 4, 8, 32)
    assert replication(routing).records_for(nid(32), [record(0)], NOW) == []


def test_only_the_closest_holder_hands_records_over() -> None:
    routing = table(6, 4, 8, 2)  # contact 4 is closer to the key than we are
    assert replication(routing).records_for(nid(2), [record(0)], NOW) == []


def test_the_radius_is_infinite_while_we_know_fewer_than_k() -> None:
    routing = table(1, 4, 1000)
    assert replication(routing).radius_of(record(0), nid(1000), NOW) == (4, 1 << 256)
    assert replication(routing).records_for(nid(1000), [record(0)], NOW) == [record(0)]


def test_with_nobody_else_known_every_record_goes() -> None:
    routing = table(1, 1000)
    assert replication(routing).radius_of(record(0), nid(1000), NOW) == (1 << 256, 1 << 256)
    held = [record(0), record(7)]
    assert replication(routing).records_for(nid(1000), held, NOW) == held


def test_expired_records_and_the_newcomers_own_are_not_handed_over() -> None:
    newcomer = ALICE.node_id
    routing = RoutingTable(nid(1), k=2)
    routing.observe(Contact(newcomer, Address("10.0.0.1", 7000)), NOW)
    expired = record(0, expires_at=NOW)
    theirs = record(0, publisher=ALICE.public_key)
    kept = record(0)
    held = [expired, theirs, kept]
    assert replication(routing).records_for(newcomer, held, NOW) == [kept]


def test_the_radius_is_cached_per_record_for_its_max_age() -> None:
    routing = table(1, 8, 16)
    core = replication(routing)
    held = record(0)
    assert core.radius_of(held, nid(2), NOW) == (8, 16)
    routing.observe(Contact(nid(4), Address("10.0.0.4", 7000)), NOW)
    assert core.radius_of(held, nid(2), NOW + RADIUS_MAX_AGE - 1) == (8, 16)
    assert core.radius_of(record(1), nid(2), NOW) == (5, 9)  # another record: computed now
    assert core.radius_of(held, nid(2), NOW + RADIUS_MAX_AGE) == (4, 8)


def test_forgetting_a_record_drops_its_cached_radius() -> None:
    routing = table(1, 8, 16)
    core = replication(routing, radius_max_age=1e9)
    held = record(0)
    assert core.radius_of(held, nid(2), NOW) == (8, 16)
    routing.observe(Contact(nid(4), Address("10.0.0.4", 7000)), NOW)
    core.forget_gone([held])
    assert core.radius_of(held, nid(2), NOW) == (8, 16)  # still held: still cached
    core.forget_gone([])
    assert core.radius_of(held, nid(2), NOW) == (4, 8)


# -- republishing ----------------------------------------------------------------------------------


def test_records_never_touched_are_due_unless_ours_or_expired() -> None:
    core = replication(table(1))
    assert core.republish_due(record(0), quiet_since=NOW - 3600, now=NOW)
    assert not core.republish_due(record(0, publisher=OWN_KEY), quiet_since=NOW - 3600, now=NOW)
    assert not core.republish_due(record(0, expires_at=NOW), quiet_since=NOW - 3600, now=NOW)


def test_a_record_touched_within_the_interval_is_not_due() -> None:
    core = replication(table(1))
    held = record(0)
    core.touched(held, NOW - 10)
    assert not core.republish_due(held, quiet_since=NOW - 11, now=NOW)
    assert core.republish_due(held, quiet_since=NOW - 10, now=NOW)
    assert not core.republish_due(held, quiet_since=NOW - 3600, now=NOW)
    core.forget_gone([held])
    assert not core.republish_due(held, quiet_since=NOW - 3600, now=NOW)
    core.forget_gone([])  # no longer held: its history goes
    assert core.republish_due(held, quiet_since=NOW - 3600, now=NOW)


def signed(identity: Identity, seq: int) -> Record:
    return sign_record(
        identity, PROVIDER, nid(0).raw, seq=seq, expires_at=int(NOW) + 3600, value=b""
    )


@pytest.mark.parametrize(
    ("offered", "touched"),
    [
        ("new", True),
        ("same version", True),  # someone else republished it
        ("older version", False),
        ("invalid", False),
    ],
)
def test_stores_that_count_as_a_republish(offered: str, touched: bool) -> None:
    store = RecordStore(default_registry())
    core = replication(table(1))
    if offered != "new":
        store.put(signed(ALICE, 2), NOW - 100)
    incoming = {
        "new": signed(ALICE, 2),
        "same version": signed(ALICE, 2),
        "older version": signed(ALICE, 1),
        "invalid": dataclasses.replace(signed(BOB, 1), seq=5),  # the signature fails
    }[offered]
    core.stored(incoming, store.put(incoming, NOW), NOW)
    assert core.republish_due(incoming, quiet_since=NOW - 1, now=NOW) is not touched


# -- which keys we store for --------------------------------------------------------------------


def test_a_node_stores_only_for_keys_it_is_among_the_k_closest_to() -> None:
    # k = 2; we are 0b1000 (8); contacts 9 and 10 are close to key 11, 1 and 2 close to key 3.
    rep = replication(table(8, 1, 2, 9, 10))
    assert not rep.among_closest(nid(3).raw)  # 1 and 2 are both closer to 3 than we are
    assert rep.among_closest(nid(8).raw)  # our own ID
    assert rep.among_closest(nid(12).raw)  # 8 ^ 12 = 4 < 10 ^ 12 = 6
    assert not rep.among_closest(nid(11).raw)  # 9 ^ 11 = 2, 10 ^ 11 = 1, 8 ^ 11 = 3
    # The node asking holds the record already: it does not take one of the k places.
    assert rep.among_closest(nid(11).raw, besides=nid(10))
    # While we know fewer than k nodes, we are among the k closest to everything.
    assert replication(table(8, 1)).among_closest(nid(1).raw)
