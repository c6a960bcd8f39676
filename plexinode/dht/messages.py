"""DHT wire messages (type codes 16-63), carried in authenticated datagrams.

A reply must fit in one datagram (1,200 bytes, 1,087 of envelope): a contact on the wire is
``[node_id (32 bytes), ip (4 or 16 bytes), port]``, 44 bytes for IPv4 and 56 for IPv6, so 20
IPv4 contacts (k = 20) fit with room to spare; a responder includes as many of its closest
contacts as fit (see :func:`fit_contacts`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Final

from plexinode.dht.contact import Contact
from plexinode.dht.records import Record
from plexinode.errors import DecodeError
from plexinode.identity import NODE_ID_BYTES, NodeId
from plexinode.net.address import Address, ip_text, packed_ip
from plexinode.wire.schema import (
    Bool,
    Bytes,
    Int,
    ListOf,
    Message,
    Nested,
    Str,
    Struct,
    register,
    wire,
)

#: Most padding a request may carry: enough to reach the padded size from the smallest request.
MAX_PADDING: Final = 512
#: Most contacts a reply may carry: k = 20 by default, with headroom for a larger k. A reply
#: that claims more is refused by the decoder before any of them is looked at.
MAX_CONTACTS: Final = 32


@dataclass(frozen=True, slots=True)
class WireContact(Struct):
    """A contact as it travels: node ID, binary IP address, port."""

    node_id: bytes = wire(Bytes(NODE_ID_BYTES, NODE_ID_BYTES))
    ip: bytes = wire(Bytes(4, 16))
    port: int = wire(Int(1, 65535))

    @classmethod
    def from_contact(cls, contact: Contact) -> WireContact:
        """Encode a contact (its host must be an IP address literal)."""
        packed = packed_ip(contact.address.host)
        if packed is None:
            raise ValueError(f"{contact.address.host!r} is not an IP address literal")
        return cls(contact.node_id.raw, packed, contact.address.port)

    def to_contact(self) -> Contact:
        """Decode; DecodeError if the IP is neither 4 nor 16 bytes."""
        if len(self.ip) not in (4, 16):
            raise DecodeError("contact IP must be 4 or 16 bytes")
        return Contact(NodeId(self.node_id), Address(ip_text(self.ip), self.port))


def wire_contacts(contacts: Sequence[Contact]) -> tuple[WireContact, ...]:
    """Encode contacts, skipping any whose host is not an IP literal."""
    out = []
    for contact in contacts:
        try:
            out.append(WireContact.from_contact(contact))
        except ValueError:
            continue
    return tuple(out)


@register
@dataclass(frozen=True, slots=True)
class FindNode(Message):
    """Which nodes do you know closest to `target`? Answered with :class:`Nodes`."""

    TYPE: ClassVar[int] = 16
    NAME: ClassVar[str] = "find-node"
    # A bootstrapping node may not know the ID of the node at a bootstrap address yet.
    ANONYMOUS_OK: ClassVar[bool] = True
    target: bytes = wire(Bytes(NODE_ID_BYTES, NODE_ID_BYTES))
    #: Zero bytes that make the request large enough for a full answer from a node that has
    #: not validated our address yet (see plexinode.net.validation); empty otherwise.
    padding: bytes = wire(Bytes(0, MAX_PADDING), default=b"")

    def with_padding(self, size: int) -> FindNode:
        """This request with `size` bytes of padding."""
        return FindNode(self.target, bytes(size))


@register
@dataclass(frozen=True, slots=True)
class Nodes(Message):
    """Answer to :class:`FindNode`: the responder's closest contacts to the target."""

    TYPE: ClassVar[int] = 17
    NAME: ClassVar[str] = "nodes"
    RESPONSE: ClassVar[bool] = True
    contacts: tuple[WireContact, ...] = wire(ListOf(Nested(WireContact), MAX_CONTACTS))


@register
@dataclass(frozen=True, slots=True)
class Store(Message):
    """Keep this signed record. Answered with :class:`StoreResult` or an `error` (INVALID)."""

    TYPE: ClassVar[int] = 18
    NAME: ClassVar[str] = "store"
    # A signature check and a database-bound record: half the rate of a lookup query.
    COST: ClassVar[int] = 2
    record: Record = wire(Nested(Record))  # noqa: RUF009 (wire() is dataclasses.field)


@register
@dataclass(frozen=True, slots=True)
class StoreResult(Message):
    """Answer to :class:`Store`: `stored` is False when we already hold a newer version (its
    sequence number is `held_seq`) or refused it for a limit (`reason`)."""

    TYPE: ClassVar[int] = 19
    NAME: ClassVar[str] = "store-result"
    RESPONSE: ClassVar[bool] = True
    stored: bool = wire(Bool())
    held_seq: int = wire(Int())
    reason: str = wire(Str(64))


@register
@dataclass(frozen=True, slots=True)
class FindValue(Message):
    """Which records of type `rtype` do you hold under `key`? Answered with :class:`Value`."""

    TYPE: ClassVar[int] = 20
    NAME: ClassVar[str] = "find-value"
    rtype: int = wire(Int(0, 0xFFFF))
    key: bytes = wire(Bytes(NODE_ID_BYTES, NODE_ID_BYTES))
    #: As :attr:`FindNode.padding`.
    padding: bytes = wire(Bytes(0, MAX_PADDING), default=b"")

    def with_padding(self, size: int) -> FindValue:
        """This request with `size` bytes of padding."""
        return FindValue(self.rtype, self.key, bytes(size))


@register
@dataclass(frozen=True, slots=True)
class Value(Message):
    """Answer to :class:`FindValue`: records if the responder holds any (as many as fit in one
    datagram), else its closest contacts to the key."""

    TYPE: ClassVar[int] = 21
    NAME: ClassVar[str] = "value"
    RESPONSE: ClassVar[bool] = True
    records: tuple[Record, ...] = wire(ListOf(Nested(Record), 8))
    contacts: tuple[WireContact, ...] = wire(ListOf(Nested(WireContact), MAX_CONTACTS))


def fit_records(records: Sequence[Record], budget: int | None = None) -> tuple[Record, ...]:
    """The longest prefix of `records` whose `Value` reply fits in one datagram (or in
    `budget` bytes of envelope, for an unvalidated requester)."""
    from plexinode.net.packet import MAX_PAYLOAD

    room = (MAX_PAYLOAD if budget is None else min(budget, MAX_PAYLOAD)) - _NODES_FRAMING - 2
    out: list[Record] = []
    for record in records[:8]:
        room -= record.size
        if room < 0:
            break
        out.append(record)
    return tuple(out)


def packed_size(contact: WireContact) -> int:
    """Bytes of ``pack(contact.to_wire())``, computed without packing (a hot path).

    A 3-element fixarray header, two bin8 fields (a 2-byte header each) and a positive int
    (fixint below 128, uint8 below 256, else uint16).
    """
    port = contact.port
    return (
        5 + len(contact.node_id) + len(contact.ip) + (1 if port < 128 else 2 if port < 256 else 3)
    )


#: Bytes of a `Nodes` envelope besides its contacts: array headers, version, type, a 64-bit
#: request ID (9 bytes), the list header (up to 3 bytes).
_NODES_FRAMING: Final = 16


def fit_contacts(contacts: Sequence[Contact], budget: int | None = None) -> tuple[WireContact, ...]:
    """The longest prefix of `contacts` whose `Nodes` reply fits in one datagram (or in
    `budget` bytes of envelope, for an unvalidated requester)."""
    from plexinode.net.packet import MAX_PAYLOAD

    room = (MAX_PAYLOAD if budget is None else min(budget, MAX_PAYLOAD)) - _NODES_FRAMING
    out: list[WireContact] = []
    for wire_contact in wire_contacts(contacts)[:MAX_CONTACTS]:
        room -= packed_size(wire_contact)
        if room < 0:
            break
        out.append(wire_contact)
    return tuple(out)
