"""DHT wire messages: contact encoding, reply sizing, and replies that claim too much."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plexinode.dht.contact import Contact
from plexinode.dht.messages import (
    MAX_CONTACTS,
    FindNode,
    FindValue,
    Nodes,
    Value,
    WireContact,
    fit_contacts,
    fit_records,
    packed_size,
)
from plexinode.dht.record_types import PROVIDER
from plexinode.dht.records import Record, sign_record
from plexinode.errors import DecodeError
from plexinode.identity import Identity, NodeId
from plexinode.net.address import Address
from plexinode.net.packet import MAX_PAYLOAD
from plexinode.wire import envelope
from plexinode.wire.codec import DATAGRAM_LIMITS, FRAME_LIMITS, pack

LIMITS = DATAGRAM_LIMITS

wire_contacts = st.builds(
    WireContact,
    node_id=st.binary(min_size=32, max_size=32),
    ip=st.sampled_from([b"\x0a\x00\x00\x01", bytes(range(16))]),
    port=st.integers(1, 65535),
)


@given(wire_contacts)
def test_packed_size_is_exact(contact: WireContact) -> None:
    assert packed_size(contact) == len(pack(contact.to_wire()))


def contact(i: int, host: str = "10.0.0.1") -> Contact:
    return Contact(NodeId(i.to_bytes(32, "big")), Address(host, 7000 + i))


@pytest.mark.parametrize("host", ["10.0.0.1", "2001:db8::1"])
def test_fit_contacts_fills_one_datagram(host: str) -> None:
    contacts = [contact(i, host) for i in range(1, 60)]
    fitted = fit_contacts(contacts)
    assert 0 < len(fitted) <= MAX_CONTACTS
    assert len(envelope.encode(Nodes(fitted), request_id=2**64 - 1)) <= MAX_PAYLOAD
    more = (*fitted, WireContact.from_contact(contacts[len(fitted)]))
    if len(fitted) < MAX_CONTACTS:  # it stopped for size, so one more would not fit
        assert len(envelope.encode(Nodes(more), request_id=2**64 - 1)) > MAX_PAYLOAD


def test_fit_contacts_skips_names() -> None:
    named = Contact(NodeId(bytes(32)), Address("example.org", 7000))
    assert fit_contacts([named, contact(1)]) == (WireContact.from_contact(contact(1)),)


def test_a_reply_with_ten_thousand_contacts_is_refused_by_the_decoder() -> None:
    one = WireContact.from_contact(contact(1)).to_wire()
    data = pack([envelope.PROTOCOL_VERSION, Nodes.TYPE, 1, [[one] * 10_000]])
    # In a datagram the buffer cap refuses it before msgpack looks inside ...
    with pytest.raises(DecodeError, match="exceeds"):
        envelope.decode(data, LIMITS)
    # ... and with room for the bytes, the array caps still refuse it.
    with pytest.raises(DecodeError):
        envelope.decode(data, FRAME_LIMITS)


def test_a_reply_just_over_the_contact_cap_is_refused() -> None:
    one = WireContact.from_contact(contact(1)).to_wire()
    body = [[one] * (MAX_CONTACTS + 1)]
    with pytest.raises(DecodeError, match="at most"):
        envelope.decode(pack([envelope.PROTOCOL_VERSION, Nodes.TYPE, 1, body]), FRAME_LIMITS)


@pytest.mark.parametrize(
    "fields",
    [
        [b"\x00" * 31, b"\x0a\x00\x00\x01", 7000],  # short node ID
        [b"\x00" * 32, b"\x0a\x00\x00", 7000],  # 3-byte IP
        [b"\x00" * 32, b"\x0a\x00\x00\x01", 0],  # port 0
        [b"\x00" * 32, b"\x0a\x00\x00\x01", 70000],  # port too large
        [b"\x00" * 32, "10.0.0.1", 7000],  # IP as text
    ],
)
def test_malformed_contacts_are_refused(fields: list[object]) -> None:
    with pytest.raises(DecodeError):
        envelope.decode(pack([envelope.PROTOCOL_VERSION, Nodes.TYPE, 1, [[fields]]]), LIMITS)


def test_contact_round_trip() -> None:
    original = contact(5, "2001:db8::5")
    assert WireContact.from_contact(original).to_contact() == original
    with pytest.raises(ValueError, match="not an IP"):
        WireContact.from_contact(Contact(NodeId(bytes(32)), Address("host.example", 1)))


def test_a_contact_with_an_ip_of_another_length_does_not_decode() -> None:
    for ip in (b"", b"\x0a\x00\x00", bytes(5), bytes(17)):
        with pytest.raises(DecodeError, match="4 or 16 bytes"):
            WireContact(bytes(32), ip, 7000).to_contact()


def test_fit_records_fills_one_datagram() -> None:
    publisher = Identity.from_seed(b"p" * 32)

    def reply_size(records: Sequence[Record]) -> int:
        return len(envelope.encode(Value(tuple(records), ()), request_id=2**64 - 1))

    for size in (0, 400):
        records = [
            sign_record(
                publisher,
                PROVIDER,
                n.to_bytes(32, "big"),
                seq=1,
                expires_at=2_000_000_000,
                value=bytes(size),
            )
            for n in range(12)
        ]
        fitted = fit_records(records)
        assert 0 < len(fitted) <= 8  # at most 8 records per reply
        assert fitted == tuple(records[: len(fitted)])
        assert reply_size(fitted) <= MAX_PAYLOAD
        assert reply_size(records[: len(fitted) + 1]) > MAX_PAYLOAD
    assert fit_records([]) == ()


def test_find_node_round_trip() -> None:
    message = FindNode(bytes(range(32)))
    assert envelope.decode(envelope.encode(message, 9), LIMITS) == envelope.Envelope(message, 9)


@pytest.mark.parametrize(
    "request_",
    [FindNode(bytes(range(32))), FindValue(PROVIDER, bytes(range(32)))],
    ids=["find-node", "find-value"],
)
def test_padding_grows_a_request_by_exactly_its_size_and_round_trips(
    request_: FindNode | FindValue,
) -> None:
    plain = envelope.encode(request_, 1 << 63)
    padded = request_.with_padding(200)
    assert padded.padding == bytes(200)
    encoded = envelope.encode(padded, 1 << 63)
    assert len(encoded) == len(plain) + 200
    assert envelope.decode(encoded, DATAGRAM_LIMITS).message == padded
    assert envelope.decode(plain, DATAGRAM_LIMITS).message == request_
