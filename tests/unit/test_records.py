import contextlib
import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plexinode.dht.record_types import (
    PEER,
    PEER_MAX_ADDRESSES,
    PEER_MAX_TTL,
    PEER_MAX_VALUE_BYTES,
    PROVIDER,
    PROVIDER_MAX_VALUE_BYTES,
    PeerRecordType,
    ProviderRecordType,
    decode_addresses,
    default_registry,
    encode_addresses,
    make_peer_record,
    peer_addresses,
)
from plexinode.dht.records import (
    CLOCK_SKEW_ALLOWANCE,
    MAX_RECORD_BYTES,
    MAX_VALUE_BYTES,
    InvalidRecord,
    Reason,
    Record,
    RecordRegistry,
    RecordType,
    newer,
    sign_record,
    validate_record,
)
from plexinode.errors import DecodeError, RemoteProtocolError
from plexinode.identity import Identity
from plexinode.net import packet
from plexinode.net.address import Address
from plexinode.net.transport import MAX_DATAGRAM
from plexinode.signing import signed
from plexinode.wire import envelope
from plexinode.wire.codec import DATAGRAM_LIMITS, pack, unpack
from plexinode.wire.schema import U64_MAX, Bytes, ListOf, Message, Nested, Registry, wire

ALICE = Identity.from_seed(b"a" * 32)
BOB = Identity.from_seed(b"b" * 32)
NOW = 1_700_000_000.0
CONTENT = bytes(range(32))
ADDRESSES = [Address("192.0.2.1", 4000), Address("2001:db8::1", 4001)]
REGISTRY = default_registry()


def provider(
    identity: Identity = ALICE,
    key: bytes = CONTENT,
    *,
    seq: int = 1,
    ttl: int = 3600,
    value: bytes = b"",
    rtype: int = PROVIDER,
) -> Record:
    return sign_record(identity, rtype, key, seq=seq, expires_at=int(NOW) + ttl, value=value)


def reason_of(record: Record, now: float = NOW, registry: RecordRegistry = REGISTRY) -> str:
    with pytest.raises(InvalidRecord) as info:
        validate_record(record, now, registry)
    assert isinstance(info.value, RemoteProtocolError)
    return info.value.reason


@pytest.fixture
def no_verify(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if a signature is verified: the check must refuse earlier."""

    def explode(*args: object) -> None:
        raise AssertionError("signature verified before a cheaper check refused the record")

    monkeypatch.setattr(signed, "verify_signature", explode)


# -- round trips ----------------------------------------------------------------------------


def test_peer_record_round_trip() -> None:
    record = make_peer_record(ALICE, ADDRESSES, seq=7, now=NOW)
    validate_record(record, NOW, REGISTRY)
    assert record.rtype == PEER
    assert record.key == ALICE.node_id.raw
    assert record.publisher == ALICE.public_key
    assert record.publisher_id == ALICE.node_id
    assert record.expires_at == int(NOW) + PEER_MAX_TTL
    assert peer_addresses(record) == ADDRESSES
    wire_form = pack(record.to_wire())
    assert record.size == len(wire_form)
    decoded = Record.from_wire(unpack(wire_form, DATAGRAM_LIMITS))
    assert decoded == record
    validate_record(decoded, NOW, REGISTRY)


def test_provider_record_round_trip() -> None:
    record = provider(value=b"hint")
    validate_record(record, NOW, REGISTRY)
    assert Record.from_wire(unpack(pack(record.to_wire()), DATAGRAM_LIMITS)) == record
    assert record.publisher_id == ALICE.node_id
    assert record.slot() == (PROVIDER, CONTENT, ALICE.public_key)


def test_signed_bytes_layout_is_domain_then_canonical_msgpack() -> None:
    record = provider(value=b"v")
    fields = [PROVIDER, CONTENT, ALICE.public_key, 1, int(NOW) + 3600, b"v"]
    assert record.signed_bytes() == b"plexinode-record-v1\x00" + pack(fields)


def test_peer_record_ipv4_mapped_address_is_written_as_ipv4() -> None:
    record = make_peer_record(ALICE, [Address("::ffff:192.0.2.9", 9)], seq=1, now=NOW)
    assert peer_addresses(record) == [Address("192.0.2.9", 9)]


def test_loopback_and_private_addresses_are_allowed() -> None:
    local = [Address("127.0.0.1", 1), Address("10.1.2.3", 2), Address("::1", 3)]
    record = make_peer_record(ALICE, local, seq=1, now=NOW, ttl=60)
    validate_record(record, NOW, REGISTRY)
    assert peer_addresses(record) == local


# -- sizes ----------------------------------------------------------------------------------


def test_largest_record_is_exactly_the_cap() -> None:
    big = Record(
        0xFFFF, CONTENT, ALICE.public_key, U64_MAX, U64_MAX, bytes(MAX_VALUE_BYTES), bytes(64)
    )
    assert big.size == len(pack(big.to_wire())) == MAX_RECORD_BYTES


@dataclass(frozen=True, slots=True)
class StoreLike(Message):
    """A stand-in for a DHT message carrying a record with room for other fields."""

    TYPE: ClassVar[int] = 20
    NAME: ClassVar[str] = "store-like"
    records: tuple[Record, ...] = wire(ListOf(Nested(Record), max_items=1))
    extra: bytes = wire(Bytes(0, 200))


def test_largest_record_fits_one_datagram_with_its_message() -> None:
    registry = Registry()
    registry.register(StoreLike)
    big = Record(
        0xFFFF, CONTENT, ALICE.public_key, U64_MAX, U64_MAX, bytes(MAX_VALUE_BYTES), bytes(64)
    )
    # 150 bytes of other message fields on top of the largest record and the envelope.
    message = StoreLike((big,), bytes(150))
    payload = envelope.encode(message, request_id=U64_MAX)
    assert len(payload) <= packet.MAX_PAYLOAD
    assert envelope.decode(payload, DATAGRAM_LIMITS, registry).message == message
    datagram = packet.Sealer(ALICE, lambda: 7).seal(payload, BOB.node_id)
    assert len(datagram) <= MAX_DATAGRAM


def test_wire_refuses_a_value_larger_than_any_record_can_hold() -> None:
    fields = provider().to_wire()
    fields[5] = bytes(MAX_VALUE_BYTES + 1)
    with pytest.raises(DecodeError, match="value"):
        Record.from_wire(fields)


@given(
    rtype=st.integers(0, 0xFFFF),
    key=st.binary(max_size=40),
    seq=st.integers(0, U64_MAX),
    expires_at=st.integers(0, U64_MAX),
    value=st.binary(max_size=70_000),
    signature=st.binary(max_size=300),
)
def test_size_is_the_encoded_length(
    rtype: int, key: bytes, seq: int, expires_at: int, value: bytes, signature: bytes
) -> None:
    record = Record(rtype, key, ALICE.public_key, seq, expires_at, value, signature)
    assert record.size == len(pack(record.to_wire()))


# -- refusals -------------------------------------------------------------------------------


def peer_and_provider() -> RecordRegistry:
    """A registry of peer and provider only (code 3, ``backups``, is left free for Lenient)."""
    registry = RecordRegistry()
    registry.register(PeerRecordType())
    registry.register(ProviderRecordType())
    return registry


class Lenient(RecordType):
    """Like provider, under code 3: flipping provider's rtype bit 0 lands on a valid type."""

    code: ClassVar[int] = 3
    name: ClassVar[str] = "lenient"
    max_value_bytes: ClassVar[int] = 64
    max_ttl: ClassVar[int] = 24 * 3600
    multi_publisher: ClassVar[bool] = True


def _flips(record: Record) -> list[tuple[str, Record]]:
    """Every single-bit change of every field (low 8 bits of the integers)."""
    out: list[tuple[str, Record]] = [("rtype", dataclasses.replace(record, rtype=record.rtype ^ 1))]
    for name in ("seq", "expires_at"):
        for bit in range(8):
            value = getattr(record, name) ^ (1 << bit)
            out.append((f"{name} bit {bit}", dataclasses.replace(record, **{name: value})))
    for name in ("key", "publisher", "value", "signature"):
        data: bytes = getattr(record, name)
        for i in range(len(data) * 8):
            flipped = bytearray(data)
            flipped[i // 8] ^= 1 << (i % 8)
            out.append((f"{name} bit {i}", dataclasses.replace(record, **{name: bytes(flipped)})))
    return out


def test_any_flipped_bit_in_any_field_is_a_bad_signature() -> None:
    registry = peer_and_provider()
    registry.register(Lenient())
    record = provider(seq=1000, value=b"some opaque hint")
    validate_record(record, NOW, registry)
    flips = _flips(record)
    assert len(flips) > 1000
    for where, bad in flips:
        assert reason_of(bad, registry=registry) == Reason.BAD_SIGNATURE, where


def test_peer_record_with_a_flipped_address_bit_is_a_bad_signature() -> None:
    record = make_peer_record(ALICE, [Address("192.0.2.1", 4000)], seq=1, now=NOW)
    value = bytearray(record.value)
    value[-4] ^= 1  # inside the IP bytes: still a well-formed, routable address
    assert reason_of(dataclasses.replace(record, value=bytes(value))) == Reason.BAD_SIGNATURE


def test_signature_of_another_publisher_is_refused() -> None:
    alice = provider(ALICE)
    bob = provider(BOB)
    assert reason_of(dataclasses.replace(alice, signature=bob.signature)) == Reason.BAD_SIGNATURE


def test_expired() -> None:
    record = provider(ttl=60)
    validate_record(record, NOW + 59.9, REGISTRY)
    assert reason_of(record, now=NOW + 60) == Reason.EXPIRED
    assert reason_of(record, now=NOW + 10_000) == Reason.EXPIRED


def test_expired_is_refused_before_verifying(no_verify: None) -> None:
    assert reason_of(provider(ttl=60), now=NOW + 61) == Reason.EXPIRED


def test_from_the_future() -> None:
    limit = ProviderRecordType.max_ttl + CLOCK_SKEW_ALLOWANCE
    validate_record(provider(ttl=limit), NOW, REGISTRY)
    assert reason_of(provider(ttl=limit + 1)) == Reason.FROM_THE_FUTURE
    assert reason_of(provider(ttl=10 * 365 * 24 * 3600)) == Reason.FROM_THE_FUTURE
    far = sign_record(ALICE, PROVIDER, CONTENT, seq=1, expires_at=U64_MAX, value=b"")
    assert reason_of(far) == Reason.FROM_THE_FUTURE


def test_oversized_value_is_refused_before_verifying(no_verify: None) -> None:
    fake = Record(PROVIDER, CONTENT, ALICE.public_key, 1, int(NOW) + 60, b"", bytes(64))
    too_big = dataclasses.replace(fake, value=bytes(PROVIDER_MAX_VALUE_BYTES + 1))
    assert reason_of(too_big) == Reason.OVERSIZED
    peer = dataclasses.replace(
        fake, rtype=PEER, key=ALICE.node_id.raw, value=bytes(PEER_MAX_VALUE_BYTES + 1)
    )
    assert reason_of(peer) == Reason.OVERSIZED
    with pytest.raises(InvalidRecord) as info:  # and on its own, before it is parsed
        decode_addresses(b"\xc1" * (PEER_MAX_VALUE_BYTES + 1))
    assert info.value.reason == Reason.OVERSIZED


def test_oversized_record_is_refused_before_verifying(no_verify: None) -> None:
    class Roomy(RecordType):
        code: ClassVar[int] = 0xFFFF
        name: ClassVar[str] = "roomy"
        max_value_bytes: ClassVar[int] = MAX_VALUE_BYTES
        max_ttl: ClassVar[int] = 3600

    registry = RecordRegistry()
    registry.register(Roomy())
    # Built locally (say, read back from a corrupt database): no wire check ever saw it.
    huge = Record(0xFFFF, CONTENT, ALICE.public_key, 1, int(NOW) + 60, bytes(1 << 20), bytes(64))
    with pytest.raises(InvalidRecord, match="oversized: record of"):
        validate_record(huge, NOW, registry)
    # One byte over the total, with a value the type alone would accept.
    fits = dataclasses.replace(huge, seq=U64_MAX, expires_at=U64_MAX, value=bytes(MAX_VALUE_BYTES))
    assert fits.size == MAX_RECORD_BYTES
    over = dataclasses.replace(fits, signature=bytes(65))  # malformed wins: cheapest check
    assert reason_of(over, registry=registry) == Reason.MALFORMED
    validate_oversized = dataclasses.replace(fits, value=bytes(MAX_VALUE_BYTES + 1))
    with pytest.raises(InvalidRecord, match=f"oversized: record of {MAX_RECORD_BYTES + 1} bytes"):
        validate_record(validate_oversized, NOW, registry)


def test_oversized_value_detail_names_the_type(no_verify: None) -> None:
    fake = Record(PROVIDER, CONTENT, ALICE.public_key, 1, int(NOW) + 60, bytes(65), bytes(64))
    with pytest.raises(InvalidRecord, match="oversized: provider value of 65 bytes"):
        validate_record(fake, NOW, REGISTRY)


def test_unknown_type(no_verify: None) -> None:
    assert reason_of(provider(rtype=99)) == Reason.UNKNOWN_TYPE


@pytest.mark.parametrize(
    "change",
    [
        {"key": bytes(31)},
        {"publisher": bytes(33)},
        {"signature": bytes(63)},
        {"seq": -1},
        {"expires_at": U64_MAX + 1},
        {"rtype": 1 << 16},
        {"value": "not bytes"},
        {"seq": 1.5},
    ],
)
def test_malformed_fields(no_verify: None, change: dict[str, Any]) -> None:
    assert reason_of(dataclasses.replace(provider(), **change)) == Reason.MALFORMED


def test_peer_record_under_another_key_is_a_key_mismatch() -> None:
    value = encode_addresses(ADDRESSES)
    for key in (BOB.node_id.raw, CONTENT, ALICE.public_key):
        record = sign_record(ALICE, PEER, key, seq=1, expires_at=int(NOW) + 60, value=value)
        assert reason_of(record) == Reason.KEY_MISMATCH


def _peer_with_value(value: bytes) -> Record:
    return sign_record(ALICE, PEER, ALICE.node_id.raw, seq=1, expires_at=int(NOW) + 60, value=value)


V4 = b"\xc0\x00\x02\x01"


@pytest.mark.parametrize(
    "value",
    [
        pack([[bytes([192, 0, 2, i]), 80] for i in range(PEER_MAX_ADDRESSES + 1)]),  # too many
        pack([]),  # none
        pack([[bytes(4), 80]]),  # 0.0.0.0
        pack([[bytes(16), 80]]),  # ::
        pack([[b"\xe0\x00\x00\x01", 80]]),  # multicast
        pack([[b"\xff\xff\xff\xff", 80]]),  # broadcast
        pack([[V4, 0]]),  # port 0
        pack([[V4, 65536]]),  # port out of range
        pack([[V4, -1]]),
        pack([[V4, "80"]]),  # port not an int
        pack([[V4, None]]),
        pack([[V4, 80.0]]),
        pack([[bytes(5), 80]]),  # wrong lengths
        pack([[bytes(15), 80]]),
        pack([[b"", 80]]),
        pack([["192.0.2.1", 80]]),  # text, not bytes
        pack([[V4]]),  # not a pair
        pack([[V4, 80, 1]]),
        pack([V4]),
        pack([[V4, 80], [V4, 80]]),  # duplicate
        pack([[b"\x00" * 10 + b"\xff\xff" + V4, 80]]),  # IPv4-mapped IPv6
        pack({"a": 1}),  # not a list
        pack(V4),
        b"",  # not msgpack
        b"\xc1",
        pack([[V4, 80]]) + b"\x00",  # trailing bytes
        pack([[V4, 80]])[:-1],  # truncated
    ],
)
def test_bad_address_lists_are_bad_values(value: bytes) -> None:
    assert reason_of(_peer_with_value(value)) == Reason.BAD_VALUE
    with pytest.raises(InvalidRecord):
        decode_addresses(value)


def test_peer_value_is_checked_before_the_signature(no_verify: None) -> None:
    fake = Record(PEER, ALICE.node_id.raw, ALICE.public_key, 1, int(NOW) + 60, b"\xc1", bytes(64))
    assert reason_of(fake) == Reason.BAD_VALUE
    assert reason_of(dataclasses.replace(fake, key=CONTENT)) == Reason.KEY_MISMATCH


def test_peer_addresses_of_a_provider_record_is_refused() -> None:
    with pytest.raises(InvalidRecord, match="not a peer record"):
        peer_addresses(provider())


@pytest.mark.parametrize(
    ("addresses", "match"),
    [
        ([], "1 to 8 addresses"),
        ([Address(f"192.0.2.{i}", 1) for i in range(9)], "1 to 8 addresses"),
        ([Address("example.org", 1)], "not an IP address"),
        ([Address("0.0.0.0", 1)], "not routable"),
        ([Address("192.0.2.1", 0)], "not routable"),
        ([Address("192.0.2.1", 1), Address("::ffff:192.0.2.1", 1)], "duplicate"),
    ],
)
def test_make_peer_record_refuses_bad_addresses(addresses: list[Address], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_peer_record(ALICE, addresses, seq=1, now=NOW)


@pytest.mark.parametrize("ttl", [0, -5, PEER_MAX_TTL + 1])
def test_make_peer_record_refuses_bad_ttl(ttl: int) -> None:
    with pytest.raises(ValueError, match="seconds"):
        make_peer_record(ALICE, ADDRESSES, seq=1, now=NOW, ttl=ttl)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"rtype": -1}, "type"),
        ({"rtype": 1 << 16}, "type"),
        ({"key": bytes(31)}, "key"),
        ({"seq": -1}, "64-bit"),
        ({"expires_at": U64_MAX + 1}, "64-bit"),
        ({"value": bytes(MAX_VALUE_BYTES + 1)}, "value"),
    ],
)
def test_sign_record_refuses_out_of_range_fields(change: dict[str, Any], match: str) -> None:
    args: dict[str, Any] = {
        "rtype": PROVIDER,
        "key": CONTENT,
        "seq": 1,
        "expires_at": int(NOW) + 60,
        "value": b"",
    }
    args.update(change)
    with pytest.raises(ValueError, match=match):
        sign_record(ALICE, **args)


def test_invalid_record_message_includes_the_detail() -> None:
    assert str(InvalidRecord(Reason.EXPIRED)) == "expired"
    error = InvalidRecord(Reason.OVERSIZED, "record of 1000 bytes")
    assert str(error) == "oversized: record of 1000 bytes"
    assert error.reason == "oversized"
    assert error.detail == "record of 1000 bytes"


# -- registry -------------------------------------------------------------------------------


def test_default_registry_has_peer_provider_and_backups() -> None:
    registry = default_registry()
    assert [t.name for t in registry.types()] == ["peer", "provider", "backups"]
    peer, prov = registry.get(PEER), registry.get(PROVIDER)
    assert isinstance(peer, PeerRecordType)
    assert not peer.multi_publisher
    assert isinstance(prov, ProviderRecordType)
    assert prov.multi_publisher
    assert PEER in registry
    assert 99 not in registry
    assert registry.get(99) is None
    assert default_registry() is not REGISTRY  # each node gets its own


def test_registry_refuses_clashes_and_bad_caps() -> None:
    registry = peer_and_provider()
    with pytest.raises(ValueError, match="code 1"):
        registry.register(PeerRecordType())

    class SameName(Lenient):
        code: ClassVar[int] = 50
        name: ClassVar[str] = "peer"

    with pytest.raises(ValueError, match="name"):
        registry.register(SameName())

    for attrs, match in [
        ({"code": -1}, "code"),
        ({"code": 1 << 16}, "code"),
        ({"max_value_bytes": MAX_VALUE_BYTES + 1}, "max_value_bytes"),
        ({"max_value_bytes": -1}, "max_value_bytes"),
        ({"max_ttl": 0}, "max_ttl"),
    ]:
        bad = type("Bad", (Lenient,), {"name": "bad", **attrs})
        with pytest.raises(ValueError, match=match):
            registry.register(bad())
    assert registry.register(Lenient()).code == 3


# -- conflicts ------------------------------------------------------------------------------


def test_higher_seq_wins() -> None:
    old, new = provider(seq=1, ttl=7200), provider(seq=2, ttl=60)
    assert newer(new, old)
    assert not newer(old, new)


def test_equal_seq_later_expiry_wins() -> None:
    short, long = provider(seq=5, ttl=60), provider(seq=5, ttl=120)
    assert newer(long, short)
    assert not newer(short, long)


def test_equal_seq_and_expiry_tie_break_is_deterministic() -> None:
    a, b = provider(seq=5, value=b"a"), provider(seq=5, value=b"b")
    assert a != b
    assert newer(a, b) != newer(b, a)
    winner = a if newer(a, b) else b
    assert winner.signature == max(a.signature, b.signature)
    same_signature = dataclasses.replace(a, value=b"z")  # invalid, but ordering is total
    assert newer(same_signature, a)


def test_a_record_is_not_newer_than_itself() -> None:
    a = provider()
    assert not newer(a, a)
    assert not newer(a, dataclasses.replace(a))


def test_newer_refuses_records_of_different_slots() -> None:
    with pytest.raises(ValueError, match="versions"):
        newer(provider(ALICE), provider(BOB))
    with pytest.raises(ValueError, match="versions"):
        newer(provider(key=bytes(32)), provider(key=CONTENT))


# -- hostile input --------------------------------------------------------------------------

msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(1 << 63), U64_MAX)
    | st.floats(allow_nan=True)
    | st.binary(max_size=80)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=8),
    max_leaves=30,
)


def _near_record(draw: st.DrawFn) -> list[Any]:
    fields = provider().to_wire()
    index = draw(st.integers(0, len(fields) - 1))
    fields[index] = draw(msgpack_values)
    return fields


near_records = st.composite(_near_record)()


@given(st.one_of(msgpack_values, near_records))
def test_from_wire_raises_only_decode_error(value: Any) -> None:
    try:
        record = Record.from_wire(value)
    except DecodeError:
        return
    assert isinstance(record, Record)
    with contextlib.suppress(InvalidRecord):
        validate_record(record, NOW, REGISTRY)


@given(st.binary(max_size=1300))
def test_random_bytes_raise_only_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        Record.from_wire(unpack(data, DATAGRAM_LIMITS))


@given(st.one_of(st.binary(max_size=200), msgpack_values.map(pack)))
def test_random_peer_values_raise_only_invalid_record(value: bytes) -> None:
    reason = None
    try:
        addresses = decode_addresses(value)
    except InvalidRecord as exc:
        reason = exc.reason
    else:
        assert 1 <= len(addresses) <= PEER_MAX_ADDRESSES
    assert reason in (None, Reason.BAD_VALUE, Reason.OVERSIZED)


# -- pinned bytes ---------------------------------------------------------------------------
# Records signed by earlier releases must verify in later ones, and the other way round: the
# signed bytes, the (deterministic Ed25519) signature and the wire form are pinned here.

PINNED_PEER_SIGNED = bytes.fromhex(
    "706c6578696e6f64652d7265636f72642d7631009601c4203ac2a451eaf43783802f2d9594a9d4a8d3a9629d"
    "64c840c103dc62851ec6eacdc420af06a3e3291714e4f356c19c9b15cd1951ec6e6662aa77be07547f289383"
    "341d07ce65554280c4219292c404c0000201cd0fa092c41020010db8000000000000000000000001cd0fa1"
)
PINNED_PEER_WIRE = bytes.fromhex(
    "9701c4203ac2a451eaf43783802f2d9594a9d4a8d3a9629d64c840c103dc62851ec6eacdc420af06a3e32917"
    "14e4f356c19c9b15cd1951ec6e6662aa77be07547f289383341d07ce65554280c4219292c404c0000201cd0f"
    "a092c41020010db8000000000000000000000001cd0fa1c440bd429b15aadeb5e16bef34eee5d7fb876955f9"
    "d58391960eb47039edba9d332fbf6613cc05ccd60c9eda6d104810856a62c1d8acce256b2cbd3f7eaa19b298"
    "08"
)
PINNED_PROVIDER_SIGNED = bytes.fromhex(
    "706c6578696e6f64652d7265636f72642d7631009602c420000102030405060708090a0b0c0d0e0f10111213"
    "1415161718191a1b1c1d1e1fc420af06a3e3291714e4f356c19c9b15cd1951ec6e6662aa77be07547f289383"
    "341d01ce6553ff10c40468696e74"
)
PINNED_PROVIDER_WIRE = bytes.fromhex(
    "9702c420000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1fc420af06a3e32917"
    "14e4f356c19c9b15cd1951ec6e6662aa77be07547f289383341d01ce6553ff10c40468696e74c4409f9b9785"
    "70dfc01677defb3d8bbebe13243df899a282421dbc1095f83489208192c29c4e16900ddbd08855212c23eb50"
    "1b58d2ae8fda2cb9492d20562109cf07"
)


@pytest.mark.parametrize(
    ("make", "signed", "wire_form"),
    [
        (
            lambda: make_peer_record(ALICE, ADDRESSES, seq=7, now=NOW),
            PINNED_PEER_SIGNED,
            PINNED_PEER_WIRE,
        ),
        (lambda: provider(value=b"hint"), PINNED_PROVIDER_SIGNED, PINNED_PROVIDER_WIRE),
    ],
)
def test_record_bytes_are_pinned(make: Any, signed: bytes, wire_form: bytes) -> None:
    record = make()
    assert record.signed_bytes() == signed
    assert record.signature == wire_form[-64:]
    assert pack(record.to_wire()) == wire_form
    # What an earlier release sent still decodes to the same record and verifies.
    decoded = Record.from_wire(unpack(wire_form, DATAGRAM_LIMITS))
    assert decoded == record
    validate_record(decoded, NOW, REGISTRY)
