import dataclasses
import hashlib
from typing import ClassVar

from hypothesis import given, settings
from hypothesis import strategies as st

from plexinode.dht.record_types import PEER, PROVIDER, default_registry, make_peer_record
from plexinode.dht.records import Reason, Record, RecordRegistry, RecordType, sign_record
from plexinode.dht.store import (
    KEY_FULL,
    KEY_TAKEN,
    PUBLISHER_OVER_QUOTA,
    STORE_FULL,
    SUBNET_FULL,
    RecordStore,
    Refused,
    Stored,
    Unchanged,
)
from plexinode.identity import Identity
from plexinode.net.address import Address

NOW = 1_700_000_000.0
ALICE = Identity.from_seed(b"a" * 32)
BOB = Identity.from_seed(b"b" * 32)
CAROL = Identity.from_seed(b"c" * 32)


def content_key(n: int) -> bytes:
    return hashlib.blake2b(n.to_bytes(8, "big"), digest_size=32).digest()


def provider(
    identity: Identity = ALICE,
    key: int = 0,
    *,
    seq: int = 1,
    ttl: int = 3600,
    value: bytes = b"",
    rtype: int = PROVIDER,
) -> Record:
    return sign_record(
        identity, rtype, content_key(key), seq=seq, expires_at=int(NOW) + ttl, value=value
    )


def peer(identity: Identity = ALICE, *, seq: int = 1, port: int = 4000, ttl: int = 3600) -> Record:
    return make_peer_record(identity, [Address("192.0.2.1", port)], seq=seq, now=NOW, ttl=ttl)


def new_store(**limits: int) -> RecordStore:
    return RecordStore(default_registry(), **limits)


def check_invariants(store: RecordStore) -> None:
    held = store.all_records()
    assert len(store) == len(held)
    assert store.bytes_used == sum(r.size for r in held)
    for publisher in {r.publisher for r in held}:
        expected = sum(r.publisher == publisher for r in held)
        assert store.by_publisher_count(publisher) == expected
    assert len(store) <= store.max_records
    assert store.bytes_used <= store.max_bytes


# -- storing and replacing ------------------------------------------------------------------


def test_store_then_get() -> None:
    store = new_store()
    record = peer()
    assert store.put(record, NOW) == Stored(record, replaced=None)
    assert store.get(PEER, ALICE.node_id.raw, NOW) == [record]
    assert store.get(PROVIDER, ALICE.node_id.raw, NOW) == []
    assert store.get(PEER, BOB.node_id.raw, NOW) == []
    assert store.get(77, ALICE.node_id.raw, NOW) == []
    assert len(store) == 1
    assert store.bytes_used == record.size
    assert store.by_publisher_count(ALICE.public_key) == 1
    assert store.by_publisher_count(BOB.public_key) == 0


def test_higher_seq_replaces() -> None:
    store = new_store()
    old, new = peer(seq=1, port=1), peer(seq=2, port=2)
    store.put(old, NOW)
    assert store.put(new, NOW) == Stored(new, replaced=old)
    assert store.get(PEER, ALICE.node_id.raw, NOW) == [new]
    assert len(store) == 1
    assert store.bytes_used == new.size
    check_invariants(store)


def test_older_or_same_seq_is_unchanged_and_names_the_record_held() -> None:
    store = new_store()
    old, new = peer(seq=1, port=1), peer(seq=2, port=2)
    store.put(new, NOW)
    assert store.put(old, NOW) == Unchanged(held=new)
    assert store.put(new, NOW) == Unchanged(held=new)
    assert store.get(PEER, ALICE.node_id.raw, NOW) == [new]
    assert not store.stats


def test_equal_seq_with_later_expiry_replaces() -> None:
    store = new_store()
    short, long = peer(seq=3, ttl=60), peer(seq=3, ttl=120)
    store.put(short, NOW)
    assert store.put(long, NOW) == Stored(long, replaced=short)
    assert store.put(short, NOW) == Unchanged(held=long)


def test_replicas_converge_whatever_the_arrival_order() -> None:
    versions = [
        provider(seq=s, ttl=t, value=v) for s in (1, 2) for t in (60, 90) for v in (b"x", b"y")
    ]
    held = []
    for order in (versions, versions[::-1], versions[1::2] + versions[::2]):
        store = new_store()
        for record in order:
            store.put(record, NOW)
        held.append(store.get(PROVIDER, content_key(0), NOW))
    assert held[0] == held[1] == held[2]
    assert len(held[0]) == 1
    assert held[0][0].seq == 2
    assert held[0][0].expires_at == int(NOW) + 90


def test_invalid_records_are_refused_and_counted() -> None:
    store = new_store()
    good = provider()
    forged = dataclasses.replace(good, value=b"forged")
    result = store.put(forged, NOW)
    assert result == Refused(Reason.BAD_SIGNATURE, invalid=True)
    assert store.put(provider(ttl=10), NOW + 10) == Refused(Reason.EXPIRED, invalid=True)
    assert store.put(provider(rtype=99), NOW) == Refused(Reason.UNKNOWN_TYPE, invalid=True)
    assert len(store) == 0
    assert store.stats == {"bad signature": 1, "expired": 1, "unknown type": 1}


def test_records_too_malformed_to_index_are_refused() -> None:
    store = new_store()
    store.put(provider(), NOW)
    good = provider()
    for change in ({"key": [1, 2]}, {"rtype": [2]}, {"publisher": bytearray(32)}):
        bad = dataclasses.replace(good, **change)  # type: ignore[arg-type]
        assert store.put(bad, NOW) == Refused(Reason.MALFORMED, invalid=True)
    assert len(store) == 1


def test_a_forged_version_never_replaces_a_valid_one() -> None:
    store = new_store()
    good = provider(seq=1)
    store.put(good, NOW)
    forged = dataclasses.replace(good, seq=2)  # signature no longer matches
    assert store.put(forged, NOW) == Refused(Reason.BAD_SIGNATURE, invalid=True)
    assert store.get(PROVIDER, content_key(0), NOW) == [good]


def test_an_expired_version_is_replaced_even_by_an_older_seq() -> None:
    store = new_store()
    stale = provider(seq=9, ttl=60)
    store.put(stale, NOW)
    revived = provider(seq=1, ttl=7200)
    assert store.put(revived, NOW + 100) == Stored(revived, replaced=stale)
    assert len(store) == 1
    check_invariants(store)


def test_resending_an_expired_record_held_is_refused() -> None:
    store = new_store()
    record = provider(ttl=60)
    store.put(record, NOW)
    assert store.put(record, NOW + 60) == Refused(Reason.EXPIRED, invalid=True)


# -- providers ------------------------------------------------------------------------------


def test_many_providers_under_one_key() -> None:
    store = new_store()
    records = [provider(p, ttl=t) for p, t in ((ALICE, 100), (BOB, 300), (CAROL, 100))]
    for record in records:
        assert isinstance(store.put(record, NOW), Stored)
    got = store.get(PROVIDER, content_key(0), NOW)
    assert len(got) == 3
    assert got[0].publisher == BOB.public_key  # freshest first
    assert got[1].publisher < got[2].publisher  # then by publisher: deterministic
    assert store.get(PROVIDER, content_key(0), NOW + 150) == [got[0]]
    # Each provider updates only its own record.
    update = provider(ALICE, seq=2, ttl=100)
    assert store.put(update, NOW) == Stored(update, replaced=records[0])
    assert len(store) == 3


def test_providers_per_key_are_capped_and_existing_ones_kept() -> None:
    store = new_store(max_providers_per_key=2)
    first, second = provider(ALICE, ttl=100), provider(BOB, ttl=200)
    store.put(first, NOW)
    store.put(second, NOW)
    assert store.put(provider(CAROL, ttl=5000), NOW) == Refused(KEY_FULL)
    # Those already in keep their place and can still update it.
    assert isinstance(store.put(provider(ALICE, seq=2, ttl=100), NOW), Stored)
    # Other keys are unaffected.
    assert isinstance(store.put(provider(CAROL, key=1), NOW), Stored)
    # Once a provider expires, a newcomer gets its place.
    assert isinstance(store.put(provider(CAROL, ttl=5000), NOW + 150), Stored)
    assert len(store.get(PROVIDER, content_key(0), NOW + 150)) == 2
    assert store.stats == {KEY_FULL: 1}
    check_invariants(store)


class Unbound(RecordType):
    """A single-publisher type that does not bind keys to publishers (a type bug)."""

    code: ClassVar[int] = 7
    name: ClassVar[str] = "unbound"
    max_value_bytes: ClassVar[int] = 16
    max_ttl: ClassVar[int] = 3600


def test_single_publisher_key_is_not_taken_over_by_another_publisher() -> None:
    registry = RecordRegistry()
    registry.register(Unbound())
    store = RecordStore(registry)
    alice = provider(ALICE, rtype=7, ttl=60)
    bob = provider(BOB, rtype=7, seq=99, ttl=600)
    store.put(alice, NOW)
    assert store.put(bob, NOW) == Refused(KEY_TAKEN)
    assert store.get(7, content_key(0), NOW) == [alice]
    # Once Alice's record is stale, Bob's takes the key.
    assert isinstance(store.put(bob, NOW + 60), Stored)
    assert store.get(7, content_key(0), NOW + 60) == [bob]
    assert len(store) == 1
    check_invariants(store)


# -- limits ---------------------------------------------------------------------------------


def test_per_publisher_quota() -> None:
    store = new_store(max_per_publisher=3)
    for key in range(3):
        assert isinstance(store.put(provider(ALICE, key), NOW), Stored)
    assert store.put(provider(ALICE, 3), NOW) == Refused(PUBLISHER_OVER_QUOTA)
    assert store.put(peer(ALICE), NOW) == Refused(PUBLISHER_OVER_QUOTA)
    # Updating a record already held is not a new record.
    assert isinstance(store.put(provider(ALICE, 0, seq=2), NOW), Stored)
    assert store.by_publisher_count(ALICE.public_key) == 3
    assert isinstance(store.put(provider(BOB, 3), NOW), Stored)
    assert store.stats == {PUBLISHER_OVER_QUOTA: 2}


def test_total_record_cap() -> None:
    store = new_store(max_records=3)
    for key in range(3):
        assert isinstance(store.put(provider(BOB, key, ttl=100 + key), NOW), Stored)
    assert store.put(provider(CAROL, 9), NOW) == Refused(STORE_FULL)
    assert isinstance(store.put(provider(BOB, 0, seq=2), NOW), Stored)  # replacement: fine
    assert len(store) == 3
    # Expired records are swept to make room.
    assert isinstance(store.put(provider(CAROL, 9, ttl=500), NOW + 101), Stored)
    assert len(store) == 3
    check_invariants(store)


def test_total_byte_cap() -> None:
    small = provider(ALICE, 0)
    store = new_store(max_bytes=small.size * 2 + 10)
    assert isinstance(store.put(small, NOW), Stored)
    assert isinstance(store.put(provider(BOB, 0), NOW), Stored)
    assert store.put(provider(CAROL, 0), NOW) == Refused(STORE_FULL)
    # A replacement that grows past the cap is refused too; the old version stays.
    grown = provider(ALICE, 0, seq=2, value=bytes(64))
    assert store.put(grown, NOW) == Refused(STORE_FULL)
    assert small in store.get(PROVIDER, content_key(0), NOW)
    assert store.bytes_used <= store.max_bytes
    check_invariants(store)


def test_store_flood_from_one_publisher_is_capped_while_others_get_in() -> None:
    attacker = Identity.from_seed(b"m" * 32)
    store = new_store(max_per_publisher=50, max_records=200)
    results = [store.put(provider(attacker, key), NOW) for key in range(300)]
    assert sum(isinstance(r, Stored) for r in results) == 50
    assert store.stats == {PUBLISHER_OVER_QUOTA: 250}
    honest = [Identity.from_seed(bytes([i]) * 32) for i in range(1, 11)]
    for identity in honest:
        assert isinstance(store.put(peer(identity), NOW), Stored)
        for key in range(5):
            assert isinstance(store.put(provider(identity, 1000 + key), NOW), Stored)
    assert len(store) == 50 + 10 * 6
    assert store.by_publisher_count(attacker.public_key) == 50
    check_invariants(store)


# -- expiry and republishing ----------------------------------------------------------------


def test_expire_drops_expired_records_only() -> None:
    store = new_store()
    short, long, their = provider(ALICE, 0, ttl=60), provider(ALICE, 1, ttl=600), peer(BOB, ttl=60)
    for record in (short, long, their):
        store.put(record, NOW)
    assert store.expire(NOW + 59) == 0
    assert store.get(PROVIDER, content_key(0), NOW + 60) == []  # hidden before the sweep
    assert len(store) == 3
    assert store.expire(NOW + 60) == 2
    assert store.all_records() == [long]
    assert store.bytes_used == long.size
    assert store.by_publisher_count(BOB.public_key) == 0
    assert store.expire(NOW + 600) == 1
    assert len(store) == 0
    assert store.bytes_used == 0
    assert store.expire(NOW + 10_000) == 0


def test_expire_skips_versions_that_were_replaced() -> None:
    store = new_store()
    store.put(provider(ttl=60), NOW)
    newer = provider(seq=2, ttl=600)
    store.put(newer, NOW)
    assert store.expire(NOW + 100) == 0
    assert store.all_records() == [newer]
    # Replaced by a version with the same expiry: the one sweep removes it once.
    same_expiry = provider(seq=3, ttl=600)
    store.put(same_expiry, NOW)
    assert store.expire(NOW + 600) == 1
    assert len(store) == 0


def test_records_to_republish() -> None:
    store = new_store()
    soon, later, much_later = (
        provider(ALICE, 0, ttl=100),
        peer(ALICE, ttl=200),
        provider(BOB, 1, ttl=3000),
    )
    for record in (much_later, later, soon):
        store.put(record, NOW)
    assert store.records_to_republish(NOW, 250) == [soon, later]
    assert store.records_to_republish(NOW, 50) == []
    assert store.records_to_republish(NOW + 150, 100) == [later]  # expired ones are not due
    mine = [r for r in store.records_to_republish(NOW, 5000) if r.publisher == ALICE.public_key]
    assert mine == [soon, later]


def test_all_records_is_a_snapshot() -> None:
    store = new_store()
    records = [provider(ALICE, k) for k in range(5)]
    for record in records:
        store.put(record, NOW)
    snapshot = store.all_records()
    store.expire(NOW + 10_000)
    assert sorted(snapshot, key=lambda r: r.key) == sorted(records, key=lambda r: r.key)
    assert store.all_records() == []


def test_expiry_heap_stays_bounded_under_replacement_churn() -> None:
    store = new_store()
    for seq in range(1, 1500):
        store.put(provider(seq=seq), NOW)
        assert len(store._expiry) <= 2 * len(store) + 1024 + 1
    assert len(store) == 1
    assert store.expire(NOW + 3600) == 1
    assert not store._expiry


# -- model check ----------------------------------------------------------------------------

POOL = [
    provider(identity, key, seq=seq, ttl=ttl)
    for identity in (ALICE, BOB, CAROL)
    for key in (0, 1)
    for seq in (1, 2)
    for ttl in (50, 150)
] + [peer(identity, seq=seq, ttl=100) for identity in (ALICE, BOB) for seq in (1, 2)]


@settings(max_examples=200, deadline=None)
@given(
    ops=st.lists(
        st.tuples(st.integers(0, len(POOL)), st.integers(0, 200)),  # len(POOL) = sweep
        max_size=40,
    ),
    max_records=st.integers(1, 10),
    max_per_publisher=st.integers(1, 5),
    max_providers_per_key=st.integers(1, 3),
)
def test_random_operations_keep_the_invariants(
    ops: list[tuple[int, int]], max_records: int, max_per_publisher: int, max_providers_per_key: int
) -> None:
    store = new_store(
        max_records=max_records,
        max_per_publisher=max_per_publisher,
        max_providers_per_key=max_providers_per_key,
    )
    now = NOW
    for index, step in ops:
        now += step
        if index == len(POOL):
            store.expire(now)
        else:
            record = POOL[index]
            result = store.put(record, now)
            if isinstance(result, Stored):
                assert result.record in store.get(record.rtype, record.key, now)
            elif isinstance(result, Unchanged):
                assert result.held in store.get(record.rtype, record.key, now)
                assert result.held == record or result.held.seq >= record.seq
            else:
                assert result.reason in store.stats
        check_invariants(store)
        for rtype, key in {(r.rtype, r.key) for r in store.all_records()}:
            live = store.get(rtype, key, now)
            assert all(r.expires_at > now for r in live)
            assert len({r.publisher for r in live}) == len(live)
            if rtype == PEER:
                assert len(live) <= 1
            else:
                assert len(live) <= max_providers_per_key


# -- providers per source network -------------------------------------------------------------

NET_A = "198.51.100.0/24"
NET_B = "2001:db8:1::/48"


def test_providers_of_one_key_from_one_network_are_capped() -> None:
    store = new_store(max_providers_per_subnet=3)
    idents = [Identity.from_seed(bytes([i]) * 32) for i in range(1, 9)]
    for ident in idents[:3]:
        assert isinstance(store.put(provider(ident), NOW, NET_A), Stored)
    assert store.put(provider(idents[3]), NOW, NET_A) == Refused(SUBNET_FULL)
    assert store.stats == {SUBNET_FULL: 1}
    # Another network, another key, or a record of no network (the node's own, the database)
    # are not held back by it.
    assert isinstance(store.put(provider(idents[3]), NOW, NET_B), Stored)
    assert isinstance(store.put(provider(idents[4], key=1), NOW, NET_A), Stored)
    assert isinstance(store.put(provider(idents[5]), NOW), Stored)
    # A new version keeps its place and the network of the first, from wherever it comes.
    newer = provider(idents[0], seq=2)
    assert isinstance(store.put(newer, NOW, NET_B), Stored)
    assert store.put(provider(idents[6]), NOW, NET_A) == Refused(SUBNET_FULL)
    assert isinstance(store.put(provider(idents[7]), NOW, NET_B), Stored)
    check_invariants(store)


def test_a_network_gets_its_place_back_when_its_provider_expires() -> None:
    store = new_store(max_providers_per_subnet=1)
    assert isinstance(store.put(provider(ALICE, ttl=10), NOW, NET_A), Stored)
    assert store.put(provider(BOB), NOW, NET_A) == Refused(SUBNET_FULL)
    assert isinstance(store.put(provider(BOB), NOW + 11, NET_A), Stored)  # Alice's expired
    assert store.put(provider(CAROL), NOW + 11, NET_A) == Refused(SUBNET_FULL)
    assert store._per_source == {(PROVIDER, content_key(0), NET_A): 1}


def test_single_publisher_records_are_not_counted_per_network() -> None:
    store = new_store(max_providers_per_subnet=1)
    assert isinstance(store.put(peer(ALICE), NOW, NET_A), Stored)
    assert isinstance(store.put(peer(BOB), NOW, NET_A), Stored)
    assert store._per_source == {}
