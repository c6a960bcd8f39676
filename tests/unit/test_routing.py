"""The sans-I/O routing table: every transition, closest() against brute force, invariants."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
)

from plexinode.dht.contact import Contact, bucket_index, distance, is_public, is_routable, subnet
from plexinode.dht.routing import (
    DEFAULT_K,
    PENDING_PING_EXPIRY,
    Added,
    BucketFull,
    Cached,
    Entry,
    PingPending,
    RefusalReason,
    Refused,
    RoutingTable,
    Updated,
)
from plexinode.identity import NodeId
from plexinode.net.address import Address
from tests.unit.ids import nid

OWN = NodeId(bytes(32))


def in_bucket(index: int, n: int = 0) -> NodeId:
    """The `n`-th ID in bucket `index` of OWN's table (OWN is zero: the ID is the distance)."""
    assert 0 <= n < max(1, 1 << index)
    return nid((1 << index) | n)


def lan(n: int, port: int = 7000) -> Address:
    """A private IPv4 address, distinct for each `n` below 2**24."""
    return Address(f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}", port)


def public4(net: int, host: int) -> Address:
    """A global IPv4 address; `net` picks the /24."""
    return Address(f"8.8.{net}.{host}", 7000)


def public6(net: int, host: int) -> Address:
    """A global IPv6 address; `net` picks the /48."""
    return Address(f"2a00:1450:{net:x}::{host:x}", 7000)


def contact(node_id: NodeId, address: Address | None = None) -> Contact:
    return Contact(node_id, address or lan(int.from_bytes(node_id.raw[-3:], "big")))


def fill(table: RoutingTable, index: int, count: int, now: float = 0.0) -> list[Contact]:
    """Add `count` contacts to bucket `index`, one second apart."""
    contacts = [contact(in_bucket(index, n)) for n in range(count)]
    for offset, c in enumerate(contacts):
        assert table.observe(c, now + offset) == Added()
    return contacts


def check_invariants(table: RoutingTable) -> None:
    """Every invariant of the module docstring, checked from outside (plus the pending ping)."""
    seen: set[NodeId] = set()
    sizes = table.bucket_sizes()
    entries = table.entries()
    assert len(table) == len(entries) == sum(sizes.values()) == len(table.contacts())
    by_bucket: dict[int, list[Entry]] = {}
    for entry in entries:
        by_bucket.setdefault(entry.bucket, []).append(entry)
    assert {i: len(e) for i, e in by_bucket.items()} == sizes
    # Replacements only exist in buckets the table has created: no need to visit all 256.
    for index in sorted(set(by_bucket) | set(table._buckets)):
        members = by_bucket.get(index, [])
        replacements = table.replacements(index)
        assert len(members) <= table.k
        assert len(replacements) <= table.replacement_size
        if replacements:
            assert len(members) == table.k, "a replacement waits while a slot is free"
        stamps = [e.last_seen for e in members]
        assert stamps == sorted(stamps), "entries are least recently seen first"
        everyone = [e.contact for e in members] + replacements
        subnets: dict[str, int] = {}
        for c in everyone:
            assert c.node_id != table.own_id
            assert c.node_id not in seen, "duplicate node ID"
            seen.add(c.node_id)
            assert bucket_index(table.own_id, c.node_id) == index
            assert is_routable(c.address)
            if is_public(c.address):
                subnets[subnet(c.address)] = subnets.get(subnet(c.address), 0) + 1
        assert all(n <= table.subnet_limit for n in subnets.values())
        for e in members:
            assert e.stale == (e.failures >= table.max_failures)
            assert e.contact.node_id in table
            assert table.get(e.contact.node_id) == e
        for c in replacements:
            assert c.node_id not in table
        bucket = table._buckets.get(index)
        if bucket is not None and bucket.pending is not None:
            assert bucket.pending in bucket.entries
    assert table.own_id not in table


# -- Construction ---------------------------------------------------------------------------


def test_defaults() -> None:
    table = RoutingTable(OWN)
    assert (table.k, table.replacement_size, table.subnet_limit, table.max_failures) == (
        DEFAULT_K,
        DEFAULT_K,
        2,
        3,
    )
    assert len(table) == 0
    assert table.contacts() == []
    assert table.entries() == []
    assert table.bucket_sizes() == {}
    assert "contacts=0" in repr(table)


@pytest.mark.parametrize("name", ["k", "replacement_size", "subnet_limit", "max_failures"])
def test_sizes_must_be_positive(name: str) -> None:
    with pytest.raises(ValueError, match=name):
        RoutingTable(OWN, **{name: 0})


def test_pending_ping_expiry_must_be_positive() -> None:
    with pytest.raises(ValueError, match="expiry"):
        RoutingTable(OWN, pending_ping_expiry=0.0)


# -- Add and update -------------------------------------------------------------------------


def test_add() -> None:
    table = RoutingTable(OWN)
    alice = contact(in_bucket(200, 5))

    assert table.observe(alice, 10.0, rtt=0.2) == Added()

    assert len(table) == 1
    assert alice.node_id in table
    assert table.contacts() == [alice]
    assert table.bucket_sizes() == {200: 1}
    assert table.get(alice.node_id) == Entry(
        contact=alice, bucket=200, last_seen=10.0, failures=0, stale=False, srtt=0.2, rttvar=0.1
    )
    assert table.stats["added"] == 1


def test_entry_is_a_snapshot() -> None:
    table = RoutingTable(OWN)
    alice = contact(in_bucket(7))
    table.observe(alice, 1.0)
    entry = table.get(alice.node_id)
    assert entry is not None
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.failures = 5  # type: ignore[misc]
    table.observe(alice, 2.0)
    assert entry.last_seen == 1.0


def test_update_refreshes_and_moves_to_tail() -> None:
    table = RoutingTable(OWN)
    first, second, third = fill(table, 255, 3)
    table.failed(first.node_id, 5.0)

    assert table.observe(first, 9.0) == Updated()

    assert table.contacts() == [second, third, first]
    entry = table.get(first.node_id)
    assert entry is not None
    assert (entry.last_seen, entry.failures) == (9.0, 0)
    assert len(table) == 3
    assert table.stats["updated"] == 1


def test_update_changes_the_address() -> None:
    table = RoutingTable(OWN)
    alice = contact(in_bucket(100), lan(1))
    table.observe(alice, 1.0)
    moved = Contact(alice.node_id, lan(2))

    assert table.observe(moved, 2.0) == Updated(previous_address=lan(1))

    assert table.contacts() == [moved]
    assert table.stats["address_changed"] == 1


def test_update_to_an_unroutable_address_is_refused_and_changes_nothing() -> None:
    table = RoutingTable(OWN)
    alice = contact(in_bucket(100), lan(1))
    table.observe(alice, 1.0)
    before = table.get(alice.node_id)

    result = table.observe(Contact(alice.node_id, Address("0.0.0.0", 7000)), 2.0)

    assert result == Refused(RefusalReason.UNROUTABLE)
    assert table.get(alice.node_id) == before


# -- Refusals -------------------------------------------------------------------------------


def test_own_id_is_refused() -> None:
    table = RoutingTable(OWN)
    assert table.observe(Contact(OWN, lan(1)), 1.0) == Refused(RefusalReason.OWN_ID)
    assert len(table) == 0
    assert OWN not in table
    assert table.stats["refused.own_id"] == 1


@pytest.mark.parametrize(
    "address",
    [
        Address("0.0.0.0", 7000),
        Address("::", 7000),
        Address("224.0.0.1", 7000),
        Address("ff02::1", 7000),
        Address("255.255.255.255", 7000),
        Address("10.0.0.1", 0),
        Address("example.org", 7000),
    ],
)
def test_unroutable_addresses_are_refused(address: Address) -> None:
    table = RoutingTable(OWN)
    assert table.observe(Contact(in_bucket(9), address), 1.0) == Refused(RefusalReason.UNROUTABLE)
    assert len(table) == 0
    assert table.replacements(9) == []
    assert table.stats["refused.unroutable"] == 1


def test_contains_rejects_other_types() -> None:
    table = RoutingTable(OWN)
    assert b"\x00" * 32 not in table


# -- Subnet limit ---------------------------------------------------------------------------


@pytest.mark.parametrize("public", [public4, public6], ids=["ipv4", "ipv6"])
def test_subnet_limit_on_public_addresses(public: Callable[[int, int], Address]) -> None:
    table = RoutingTable(OWN, subnet_limit=2)
    for n in range(2):
        assert table.observe(Contact(in_bucket(255, n), public(1, n + 1)), 1.0) == Added()

    crowded = Contact(in_bucket(255, 2), public(1, 3))
    assert table.observe(crowded, 1.0) == Refused(RefusalReason.SUBNET_LIMIT)
    assert crowded.node_id not in table
    assert table.stats["refused.subnet_limit"] == 1

    # Another subnet, or the same subnet in another bucket, is fine.
    assert table.observe(Contact(in_bucket(255, 3), public(2, 1)), 1.0) == Added()
    assert table.observe(Contact(in_bucket(254, 0), public(1, 4)), 1.0) == Added()


def test_ipv6_subnet_is_a_48() -> None:
    table = RoutingTable(OWN, subnet_limit=1)
    assert (
        table.observe(Contact(in_bucket(255, 0), Address("2a00:1450:1:ffff::1", 1)), 1.0) == Added()
    )
    same_48 = Contact(in_bucket(255, 1), Address("2a00:1450:1:1::1", 1))
    other_48 = Contact(in_bucket(255, 2), Address("2a00:1450:2::1", 1))
    assert table.observe(same_48, 1.0) == Refused(RefusalReason.SUBNET_LIMIT)
    assert table.observe(other_48, 1.0) == Added()


def test_subnet_keys() -> None:
    assert subnet(Address("8.8.4.4", 53)) == "8.8.4.0/24"
    assert subnet(Address("2a00:1450:1:ffff::1", 1)) == "2a00:1450:1::/48"
    assert subnet(Address("host.example", 1)) == "host.example"  # a name is its own key


@pytest.mark.parametrize(
    "host",
    [
        *("10.0.0.{}", "192.168.1.{}", "172.16.0.{}", "127.0.0.{}"),
        *("fd00::{}", "fe80::{}", "::ffff:10.0.0.{}", "::1"),
    ],
)
def test_no_subnet_limit_on_private_and_loopback(host: str) -> None:
    table = RoutingTable(OWN, subnet_limit=1)
    for n in range(5):
        address = Address(host.format(n + 1), 7000 + n)
        assert not is_public(address)
        assert table.observe(Contact(in_bucket(255, n), address), 1.0) == Added()
    assert len(table) == 5


def test_subnet_limit_counts_the_replacement_cache() -> None:
    table = RoutingTable(OWN, k=2, subnet_limit=2)
    for n in range(2):
        table.observe(Contact(in_bucket(255, n), public4(n + 1, 1)), 1.0)
    # Full bucket: two from subnet 9 may wait in the cache, but not a third.
    first = Contact(in_bucket(255, 2), public4(9, 1))
    assert isinstance(table.observe(first, 2.0), BucketFull)
    assert isinstance(table.observe(Contact(in_bucket(255, 3), public4(9, 2)), 3.0), PingPending)
    third = Contact(in_bucket(255, 4), public4(9, 3))
    assert table.observe(third, 4.0) == Refused(RefusalReason.SUBNET_LIMIT)
    assert third not in table.replacements(255)
    # A cached contact that answers again does not count against itself.
    assert isinstance(table.observe(first, 5.0), PingPending)
    check_invariants(table)


def test_address_change_into_a_crowded_subnet_is_refused() -> None:
    table = RoutingTable(OWN, subnet_limit=1)
    table.observe(Contact(in_bucket(255, 0), public4(1, 1)), 1.0)
    mover = Contact(in_bucket(255, 1), public4(2, 1))
    table.observe(mover, 1.0)

    assert table.observe(Contact(mover.node_id, public4(1, 2)), 2.0) == Refused(
        RefusalReason.SUBNET_LIMIT
    )
    entry = table.get(mover.node_id)
    assert entry is not None
    assert entry.contact == mover
    # Moving within its own subnet is fine: it does not count against itself.
    assert table.observe(Contact(mover.node_id, public4(2, 9)), 3.0) == Updated(public4(2, 1))


# -- Full bucket, ping of the oldest --------------------------------------------------------


def test_full_bucket_asks_for_no_ping_while_its_oldest_entry_is_fresh() -> None:
    table = RoutingTable(OWN, k=2, fresh_for=100.0)
    oldest, _ = fill(table, 255, 2, now=10.0)  # last seen at 10.0 and 11.0
    first = contact(in_bucket(255, 2))
    # Heard from 99.9 s ago: as good as alive; the newcomer waits in the cache.
    assert table.observe(first, 109.9) == Cached(oldest)
    assert table.replacements(255) == [first]
    assert table.stats["oldest_fresh"] == 1
    # Once it is fresh no longer, the ping is asked for.
    assert table.observe(first, 110.0) == BucketFull(oldest)
    check_invariants(table)


def test_full_bucket_asks_to_ping_the_oldest_once() -> None:
    table = RoutingTable(OWN, k=2)
    oldest, newest = fill(table, 255, 2)
    first = contact(in_bucket(255, 2))
    second = contact(in_bucket(255, 3))

    assert table.observe(first, 5.0) == BucketFull(oldest)
    assert table.observe(second, 6.0) == PingPending(oldest)

    assert table.contacts() == [oldest, newest]
    assert table.replacements(255) == [first, second]
    assert first.node_id not in table
    assert table.get(first.node_id) is None
    assert (table.stats["bucket_full"], table.stats["ping_pending"]) == (1, 1)
    check_invariants(table)


def test_oldest_alive_stays_and_newcomers_wait() -> None:
    table = RoutingTable(OWN, k=2)
    oldest, newest = fill(table, 255, 2)
    newcomer = contact(in_bucket(255, 2))
    table.observe(newcomer, 5.0)

    assert table.ping_result(oldest.node_id, True, 6.0, rtt=0.1) is None

    assert table.contacts() == [newest, oldest]
    entry = table.get(oldest.node_id)
    assert entry is not None
    assert (entry.last_seen, entry.srtt) == (6.0, 0.1)
    assert table.replacements(255) == [newcomer]
    # The ping is settled: the next newcomer asks for a ping of the new oldest.
    assert table.observe(contact(in_bucket(255, 3)), 7.0) == BucketFull(newest)
    check_invariants(table)


def test_oldest_dead_is_evicted_and_the_most_recent_replacement_promoted() -> None:
    table = RoutingTable(OWN, k=2)
    oldest, newest = fill(table, 255, 2)
    earlier = contact(in_bucket(255, 2))
    later = contact(in_bucket(255, 3))
    table.observe(earlier, 5.0)
    table.observe(later, 6.0, rtt=0.3)

    assert table.ping_result(oldest.node_id, False, 7.0) == later

    assert oldest.node_id not in table
    assert table.contacts() == [newest, later]
    assert table.replacements(255) == [earlier]
    entry = table.get(later.node_id)
    assert entry is not None
    assert (entry.last_seen, entry.srtt) == (6.0, 0.3), "promotion keeps what was learnt"
    assert (table.stats["evicted"], table.stats["promoted"]) == (1, 1)
    # Nothing is pending any more.
    assert table.observe(contact(in_bucket(255, 4)), 8.0) == BucketFull(newest)
    check_invariants(table)


def test_promotion_keeps_last_seen_order() -> None:
    table = RoutingTable(OWN, k=3)
    a, b, c = fill(table, 255, 3, now=0.0)  # last seen 0, 1, 2
    newcomer = contact(in_bucket(255, 3))
    assert table.observe(newcomer, 1.5) == BucketFull(a)
    table.observe(c, 3.0)  # c moves to the tail

    assert table.ping_result(a.node_id, False, 4.0) == newcomer

    assert table.contacts() == [b, newcomer, c]
    check_invariants(table)


def test_oldest_dead_without_replacement_is_kept_stale() -> None:
    table = RoutingTable(OWN, k=1)
    (oldest,) = fill(table, 255, 1)
    newcomer = contact(in_bucket(255, 1))
    table.observe(newcomer, 5.0)
    table.remove(newcomer.node_id)

    assert table.ping_result(oldest.node_id, False, 6.0) is None

    entry = table.get(oldest.node_id)
    assert entry is not None
    assert entry.stale
    assert entry.failures == table.max_failures
    assert table.stats["stale"] == 1


def test_message_from_the_pinged_oldest_settles_the_ping() -> None:
    table = RoutingTable(OWN, k=2, max_failures=3)
    oldest, newest = fill(table, 255, 2)
    table.observe(contact(in_bucket(255, 2)), 5.0)

    assert table.observe(oldest, 6.0) == Updated()
    # The ping then times out (lost datagram): it only counts as one failure.
    assert table.ping_result(oldest.node_id, False, 7.0) is None

    entry = table.get(oldest.node_id)
    assert entry is not None
    assert (entry.failures, entry.stale) == (1, False)
    assert table.observe(contact(in_bucket(255, 3)), 8.0) == BucketFull(newest)


def test_unreported_ping_expires() -> None:
    table = RoutingTable(OWN, k=1)
    (oldest,) = fill(table, 255, 1)
    assert table.observe(contact(in_bucket(255, 1)), 10.0) == BucketFull(oldest)
    late = 10.0 + PENDING_PING_EXPIRY
    assert table.observe(contact(in_bucket(255, 2)), late - 0.1) == PingPending(oldest)
    assert table.observe(contact(in_bucket(255, 3)), late) == BucketFull(oldest)


def test_ping_result_for_unknown_ids_is_ignored() -> None:
    table = RoutingTable(OWN, k=1)
    (oldest,) = fill(table, 255, 1)
    newcomer = contact(in_bucket(255, 1))
    table.observe(newcomer, 1.0)
    assert table.ping_result(in_bucket(10), False, 2.0) is None
    assert table.ping_result(in_bucket(255, 7), True, 2.0) is None
    assert table.ping_result(newcomer.node_id, True, 2.0) is None  # a replacement
    assert table.contacts() == [oldest]
    # After a removal the pending ping is dropped, and its result ignored.
    table.remove(oldest.node_id)
    assert table.ping_result(oldest.node_id, False, 3.0) is None
    assert table.contacts() == [newcomer]


def test_ping_alive_for_an_entry_that_was_not_pending() -> None:
    table = RoutingTable(OWN)
    a, b = fill(table, 255, 2)
    assert table.ping_result(a.node_id, True, 5.0) is None
    assert table.contacts() == [b, a]


def test_replacement_cache_keeps_the_most_recent() -> None:
    table = RoutingTable(OWN, k=1, replacement_size=2)
    fill(table, 255, 1)
    waiting = [contact(in_bucket(255, n)) for n in range(1, 5)]
    for t, c in enumerate(waiting):
        table.observe(c, 10.0 + t)
    assert table.replacements(255) == waiting[-2:]
    assert table.stats["replacement_dropped"] == 2

    # A replacement that answers again becomes the most recent.
    table.observe(waiting[2], 20.0)
    assert table.replacements(255) == [waiting[3], waiting[2]]


# -- Failures -------------------------------------------------------------------------------


def test_failures_evict_when_a_replacement_exists() -> None:
    table = RoutingTable(OWN, k=2, max_failures=3)
    a, b = fill(table, 255, 2)
    newcomer = contact(in_bucket(255, 2))
    table.observe(newcomer, 5.0)

    for t in (6.0, 7.0):
        table.failed(b.node_id, t)
        entry = table.get(b.node_id)
        assert entry is not None
        assert not entry.stale
    table.failed(b.node_id, 8.0)

    assert b.node_id not in table
    assert table.contacts() == [a, newcomer]
    assert table.replacements(255) == []
    check_invariants(table)


def test_failures_without_replacement_keep_a_stale_entry() -> None:
    table = RoutingTable(OWN, max_failures=2)
    (a,) = fill(table, 40, 1)
    for t in (1.0, 2.0, 3.0):
        table.failed(a.node_id, t)
    entry = table.get(a.node_id)
    assert entry is not None
    assert (entry.failures, entry.stale) == (3, True)
    assert table.stats["stale"] == 1
    assert table.closest(a.node_id, 1) == [a], "stale entries are still returned"
    assert table.closest(a.node_id, 1, live_only=True) == [], "... unless only live ones are"

    assert table.observe(a, 4.0) == Updated()
    entry = table.get(a.node_id)
    assert entry is not None
    assert (entry.failures, entry.stale) == (0, False)
    assert table.closest(a.node_id, 1, live_only=True) == [a]


def test_success_resets_the_failure_count() -> None:
    table = RoutingTable(OWN, k=1, max_failures=2)
    (a,) = fill(table, 255, 1)
    table.observe(contact(in_bucket(255, 1)), 1.0)
    table.failed(a.node_id, 2.0)
    table.observe(a, 3.0)
    table.failed(a.node_id, 4.0)
    assert a.node_id in table


def test_newcomer_takes_the_place_of_a_stale_entry() -> None:
    table = RoutingTable(OWN, k=2, max_failures=1)
    a, b = fill(table, 255, 2)
    table.failed(b.node_id, 5.0)  # no replacement: b stays, stale
    newcomer = contact(in_bucket(255, 2))

    assert table.observe(newcomer, 6.0) == Added(replaced=b)

    assert table.contacts() == [a, newcomer]
    assert table.stats["replaced_stale"] == 1
    check_invariants(table)


def test_failed_replacement_is_dropped() -> None:
    table = RoutingTable(OWN, k=1, max_failures=2)
    fill(table, 255, 1)
    waiting = contact(in_bucket(255, 1))
    table.observe(waiting, 1.0)
    table.failed(waiting.node_id, 2.0)
    assert table.replacements(255) == [waiting]
    table.failed(waiting.node_id, 3.0)
    assert table.replacements(255) == []


def test_failed_unknown_id_is_ignored() -> None:
    table = RoutingTable(OWN)
    fill(table, 255, 1)
    table.failed(in_bucket(3), 1.0)
    table.failed(in_bucket(255, 9), 1.0)
    assert len(table) == 1


# -- Removal --------------------------------------------------------------------------------


def test_remove() -> None:
    table = RoutingTable(OWN, k=2)
    a, b = fill(table, 255, 2)
    waiting = contact(in_bucket(255, 2))
    table.observe(waiting, 5.0)

    assert table.remove(a.node_id)
    assert table.contacts() == [b, waiting], "the replacement takes the free slot"
    assert not table.remove(a.node_id)
    assert not table.remove(in_bucket(3))
    assert table.remove(b.node_id)
    assert table.contacts() == [waiting]
    assert table.stats["removed"] == 2

    table2 = RoutingTable(OWN, k=1)
    fill(table2, 255, 1)
    table2.observe(waiting, 1.0)
    assert table2.remove(waiting.node_id)
    assert table2.replacements(255) == []
    check_invariants(table)


# -- closest() ------------------------------------------------------------------------------


def test_closest_basics() -> None:
    table = RoutingTable(OWN)
    assert table.closest(in_bucket(5), 3) == []
    contacts = [contact(in_bucket(i)) for i in (0, 1, 2, 100, 255)]
    for c in contacts:
        table.observe(c, 1.0)
    assert table.closest(OWN, 10) == contacts
    assert table.closest(OWN, 0) == []
    assert table.closest(OWN, 2) == contacts[:2]
    target = contacts[3].node_id
    assert table.closest(target, 1) == [contacts[3]]
    assert table.closest(target, 1, exclude=[target]) == [contacts[0]]
    assert table.closest(target, 2, exclude={target, contacts[0].node_id}) == contacts[1:3]


def test_closest_sorts_the_entries_of_a_bucket_by_distance() -> None:
    table = RoutingTable(OWN)
    far, near = contact(in_bucket(100, 5), lan(1)), contact(in_bucket(100, 3), lan(2))
    table.observe(far, 1.0)
    table.observe(near, 2.0)  # the bucket holds them oldest first: far, near
    assert table.closest(in_bucket(100, 2), 2) == [near, far]
    assert table.closest(in_bucket(100, 4), 2) == [far, near]


def distances_with_any_prefix() -> st.SearchStrategy[int]:
    """XOR offsets from a reference ID, spread over every bucket (random IDs fill only the top)."""
    return st.integers(0, 256).flatmap(
        lambda bits: st.integers(1 << (bits - 1), (1 << bits) - 1) if bits else st.just(0)
    )


@settings(max_examples=200, deadline=None)
@given(
    own=st.integers(0, 2**256 - 1),
    offsets=st.lists(distances_with_any_prefix(), max_size=300),
    target_offset=distances_with_any_prefix(),
    count=st.integers(0, 40),
    k=st.integers(1, 20),
    exclude_every=st.integers(0, 5),
)
def test_closest_matches_brute_force(
    own: int, offsets: list[int], target_offset: int, count: int, k: int, exclude_every: int
) -> None:
    own_id = nid(own)
    table = RoutingTable(own_id, k=k)
    for n, offset in enumerate(offsets):
        table.observe(Contact(nid(own ^ offset), lan(n)), float(n))
    target = nid(own ^ target_offset)
    members = table.contacts()
    exclude = {c.node_id for c in members[::exclude_every]} if exclude_every else set()
    candidates = [c for c in members if c.node_id not in exclude]
    expected = sorted(candidates, key=lambda c: distance(c.node_id, target))[:count]

    assert table.closest(target, count, exclude=exclude) == expected
    assert table.closest(target, count, exclude=list(exclude)) == expected


# -- Round-trip times -----------------------------------------------------------------------


def test_rtt_estimator() -> None:
    table = RoutingTable(OWN)
    a = contact(in_bucket(30))
    assert table.timeout_for(a.node_id, default=2.0) == 2.0  # unknown
    table.observe(a, 1.0)
    assert table.timeout_for(a.node_id, default=2.0) == 2.0  # no sample yet
    assert table.median_rtt() is None

    table.observe(a, 2.0, rtt=0.1)  # srtt 0.1, rttvar 0.05
    assert table.timeout_for(a.node_id, default=2.0) == pytest.approx(0.3)

    table.observe(a, 3.0, rtt=0.2)
    entry = table.get(a.node_id)
    assert entry is not None
    assert entry.rttvar == pytest.approx(0.75 * 0.05 + 0.25 * 0.1)
    assert entry.srtt == pytest.approx(0.875 * 0.1 + 0.125 * 0.2)
    assert table.timeout_for(a.node_id, default=2.0) == pytest.approx(0.1125 + 4 * 0.0625)
    assert table.median_rtt() == pytest.approx(0.1125)


def test_rtt_converges_to_a_steady_link() -> None:
    table = RoutingTable(OWN)
    a = contact(in_bucket(30))
    for t in range(200):
        table.observe(a, float(t), rtt=0.5 if t < 20 else 0.08)
    assert table.timeout_for(a.node_id, default=1.0) == pytest.approx(0.08, rel=1e-3)


def test_timeout_is_clamped() -> None:
    table = RoutingTable(OWN)
    fast, slow = contact(in_bucket(1)), contact(in_bucket(2))
    table.observe(fast, 1.0, rtt=0.001)
    table.observe(slow, 1.0, rtt=30.0)
    assert table.timeout_for(fast.node_id, default=1.0) == 0.05
    assert table.timeout_for(slow.node_id, default=1.0) == 5.0
    assert table.timeout_for(fast.node_id, default=1.0, floor=0.0) == pytest.approx(0.003)
    assert table.timeout_for(slow.node_id, default=1.0, ceiling=100.0) == pytest.approx(90.0)
    assert table.timeout_for(slow.node_id, default=1.0, floor=0.2, ceiling=0.2) == 0.2
    with pytest.raises(ValueError, match="ceiling"):
        table.timeout_for(slow.node_id, default=1.0, floor=2.0, ceiling=1.0)


def test_median_rtt() -> None:
    table = RoutingTable(OWN)
    for n, rtt in enumerate([0.3, 0.1, None, 0.2, 0.9]):
        table.observe(contact(in_bucket(10 + n)), 1.0, rtt=rtt)
    assert table.median_rtt() == pytest.approx(0.25)


def test_replacements_have_timeouts_too() -> None:
    table = RoutingTable(OWN, k=1)
    fill(table, 255, 1)
    waiting = contact(in_bucket(255, 1))
    table.observe(waiting, 1.0, rtt=0.1)
    assert table.timeout_for(waiting.node_id, default=9.0) == pytest.approx(0.3)
    assert table.median_rtt() is None, "only entries count for the median"


@pytest.mark.parametrize("rtt", [-0.1, float("nan"), float("inf")])
def test_bad_rtt_sample(rtt: float) -> None:
    table = RoutingTable(OWN)
    with pytest.raises(ValueError, match="RTT"):
        table.observe(contact(in_bucket(3)), 1.0, rtt=rtt)


# -- Refresh --------------------------------------------------------------------------------


def test_stale_buckets() -> None:
    table = RoutingTable(OWN)
    assert table.stale_buckets(1000.0, 60.0) == []
    table.observe(contact(in_bucket(250)), 100.0)
    table.observe(contact(in_bucket(253)), 100.0)
    # Buckets 250..255: the two active ones are fresh, the others never saw activity.
    assert table.stale_buckets(100.0, 60.0) == [251, 252, 254, 255]
    table.touch_bucket(255, 120.0)
    assert table.stale_buckets(159.9, 60.0) == [251, 252, 254]
    assert table.stale_buckets(160.0, 60.0) == [250, 251, 252, 253, 254]
    assert table.stale_buckets(180.0, 60.0) == list(range(250, 256))
    # Anything that refreshes an entry is activity.
    table.observe(contact(in_bucket(250)), 170.0)
    assert 250 not in table.stale_buckets(180.0, 60.0)


def test_touch_bucket_range() -> None:
    table = RoutingTable(OWN)
    for index in (-1, 256):
        with pytest.raises(ValueError, match="bucket index"):
            table.touch_bucket(index, 1.0)
        with pytest.raises(ValueError, match="bucket index"):
            table.random_id_in_bucket(index, random.Random(1))
        with pytest.raises(ValueError, match="bucket index"):
            table.replacements(index)


@given(own=st.binary(min_size=32, max_size=32), index=st.integers(0, 255), seed=st.integers())
def test_random_id_lands_in_the_bucket(own: bytes, index: int, seed: int) -> None:
    table = RoutingTable(NodeId(own))
    node_id = table.random_id_in_bucket(index, random.Random(seed))
    assert bucket_index(NodeId(own), node_id) == index


def test_random_ids_in_a_bucket_differ() -> None:
    table = RoutingTable(OWN)
    rng = random.Random(7)
    assert len({table.random_id_in_bucket(200, rng) for _ in range(50)}) == 50
    assert table.random_id_in_bucket(0, rng) == in_bucket(0)


# -- Invariants under random operation sequences --------------------------------------------

_BUCKETS_USED = (255, 254, 250, 3, 0)
_IDS = [in_bucket(i, n) for i in _BUCKETS_USED for n in range(min(6, 1 << i))]
_ADDRESSES = (
    [public4(net, host) for net in range(2) for host in range(1, 4)]
    + [public6(net, host) for net in range(2) for host in range(1, 3)]
    + [lan(n) for n in range(4)]
    + [Address("127.0.0.1", 7000 + n) for n in range(2)]
    + [Address("0.0.0.0", 1)]
)


class RoutingTableMachine(RuleBasedStateMachine):
    """Random observe / ping / fail / remove / touch sequences; every invariant after each step."""

    pinged = Bundle("pinged")

    @initialize(
        k=st.integers(1, 4),
        replacement_size=st.integers(1, 3),
        subnet_limit=st.integers(1, 2),
        max_failures=st.integers(1, 3),
    )
    def setup(self, k: int, replacement_size: int, subnet_limit: int, max_failures: int) -> None:
        self.table = RoutingTable(
            OWN,
            k=k,
            replacement_size=replacement_size,
            subnet_limit=subnet_limit,
            max_failures=max_failures,
        )
        self.now = 0.0

    def tick(self, delta: float) -> float:
        self.now += delta
        return self.now

    @rule(
        target=pinged,
        node_id=st.sampled_from([*_IDS, OWN]),
        address=st.sampled_from(_ADDRESSES),
        rtt=st.none() | st.floats(0, 10),
        delta=st.floats(0, 100),
    )
    def observe(self, node_id: NodeId, address: Address, rtt: float | None, delta: float) -> object:
        before = self.table.get(node_id)
        now = self.tick(delta)
        result = self.table.observe(Contact(node_id, address), now, rtt=rtt)
        entry = self.table.get(node_id)
        if isinstance(result, Added | Updated):
            assert entry is not None
            assert (entry.contact.address, entry.last_seen, entry.failures) == (address, now, 0)
            assert isinstance(result, Updated) == (before is not None)
        elif isinstance(result, Refused):
            assert entry == before
        else:
            assert entry is None
            assert Contact(node_id, address) in self.table.replacements(bucket_index(OWN, node_id))
            assert result.oldest.node_id in self.table
        if isinstance(result, BucketFull):
            return result.oldest.node_id
        return multiple()

    @rule(node_id=pinged, alive=st.booleans(), delta=st.floats(0, 10))
    def ping_result(self, node_id: NodeId, alive: bool, delta: float) -> None:
        promoted = self.table.ping_result(node_id, alive, self.tick(delta))
        if promoted is not None:
            assert promoted.node_id in self.table
            assert node_id not in self.table

    @rule(node_id=st.sampled_from(_IDS), delta=st.floats(0, 10))
    def failed(self, node_id: NodeId, delta: float) -> None:
        self.table.failed(node_id, self.tick(delta))

    @rule(node_id=st.sampled_from(_IDS))
    def remove(self, node_id: NodeId) -> None:
        self.table.remove(node_id)
        assert node_id not in self.table
        waiting = self.table.replacements(bucket_index(OWN, node_id))
        assert node_id not in {c.node_id for c in waiting}

    @rule(index=st.sampled_from(_BUCKETS_USED), delta=st.floats(0, 10))
    def touch(self, index: int, delta: float) -> None:
        self.table.touch_bucket(index, self.tick(delta))

    @invariant()
    def invariants_hold(self) -> None:
        if hasattr(self, "table"):
            check_invariants(self.table)

    @invariant()
    def least_recently_seen_matches_brute_force(self) -> None:
        if not hasattr(self, "table"):
            return
        skipped = {i for i in _IDS if i.raw[-1] % 2 == 0}
        for before in (self.now / 2, self.now + 1):
            live = [
                e
                for e in self.table.entries()
                if not e.stale and e.last_seen < before and e.contact.node_id not in skipped
            ]
            got = self.table.least_recently_seen(before, skip=skipped)
            if not live:
                assert got is None
            else:
                assert got is not None
                assert got.contact.node_id not in skipped
                assert not got.stale
                assert got.last_seen == min(e.last_seen for e in live)


RoutingTableMachine.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_routing_table_machine = RoutingTableMachine.TestCase


def test_least_recently_seen() -> None:
    table = RoutingTable(OWN, k=3, max_failures=1)
    a, b, c = fill(table, 200, 3, now=10.0)  # seen at 10, 11, 12
    (d,) = fill(table, 100, 1, now=5.0)
    assert table.least_recently_seen(100.0) == table.get(d.node_id)
    assert table.least_recently_seen(5.0) is None  # nobody seen before 5
    skip = {d.node_id, a.node_id}
    assert table.least_recently_seen(100.0, skip=skip) == table.get(b.node_id)
    table.failed(b.node_id, 20.0)  # stale: passed over
    assert table.least_recently_seen(100.0, skip=skip) == table.get(c.node_id)
    assert table.least_recently_seen(12.0, skip=skip) is None


def test_has_room_for() -> None:
    table = RoutingTable(OWN, k=2, replacement_size=1, max_failures=1)
    a, _b = fill(table, 200, 2)
    newcomer, other = in_bucket(200, 10), in_bucket(200, 11)
    assert table.has_room_for(in_bucket(100))  # another, empty bucket
    assert table.has_room_for(a.node_id)  # known
    assert table.has_room_for(newcomer)  # the replacement cache has room
    table.observe(contact(newcomer), 1.0)  # bucket full: it goes to the cache
    assert table.has_room_for(newcomer)  # known (as a replacement)
    assert not table.has_room_for(other)  # entries and cache full
    table.failed(a.node_id, 2.0)  # `a` is stale: its replacement takes its place ...
    assert newcomer in table
    assert table.has_room_for(other)  # ... which frees the cache
    full = RoutingTable(OWN, k=1, replacement_size=1, max_failures=2)
    (c,) = fill(full, 10, 1)
    full.observe(contact(in_bucket(10, 1)), 1.0)
    assert not full.has_room_for(in_bucket(10, 2))
    full.failed(c.node_id, 2.0)  # one failure: not stale yet
    assert not full.has_room_for(in_bucket(10, 2))


# -- Copies ---------------------------------------------------------------------------------


def _state(table: RoutingTable) -> tuple[object, ...]:
    buckets = table._buckets
    return (
        len(table),
        table.entries(),
        {i: table.replacements(i) for i in buckets},
        {i: (b.pending, b.pending_since) for i, b in buckets.items()},
        dict(table.stats),
        dict(table._activity),
        (table.k, table.replacement_size, table.subnet_limit, table.max_failures),
        table.pending_ping_expiry,
    )


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 40), st.booleans()), max_size=80))
def test_a_copy_is_equal_and_independent(events: list[tuple[int, int, bool]]) -> None:
    table = RoutingTable(OWN, k=2, replacement_size=2, max_failures=2)
    for step, (bucket, n, fail) in enumerate(events):
        node = contact(in_bucket(250 + bucket, n))
        if fail:
            table.failed(node.node_id, float(step))
        else:
            table.observe(node, float(step), rtt=0.01 * n)
    before = _state(table)
    copied = table.copy()
    assert _state(copied) == before
    for step, (bucket, n, _fail) in enumerate(events):
        node = contact(in_bucket(250 + bucket, n + 1))
        copied.observe(node, 1000.0 + step, rtt=0.5)
        copied.failed(node.node_id, 1000.0 + step)
    assert _state(table) == before
