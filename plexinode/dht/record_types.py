"""The record types of this release: ``peer`` (where a node can be reached) and ``provider``
(who holds some content), their caps and value formats, and the registry that knows them.

Each type is a :class:`~plexinode.dht.records.RecordType` with its own rules; later services
register theirs beside these in :func:`default_registry`. The generic record (signing, wire form,
validation, conflicts) is :mod:`plexinode.dht.records`.
"""

from __future__ import annotations

import ipaddress
from typing import Any, ClassVar, Final

from plexinode.dht.backup_records import BackupsRecordType
from plexinode.dht.contact import is_routable
from plexinode.dht.records import (
    InvalidRecord,
    Reason,
    Record,
    RecordRegistry,
    RecordType,
    sign_record,
)
from plexinode.errors import DecodeError
from plexinode.identity import Identity, NodeId
from plexinode.net.address import Address
from plexinode.wire.codec import Limits, pack, unpack

_HOUR: Final = 3600

#: Lifetime cap of peer records. The owner republishes its peer record well before it expires
#: (and at once when its addresses change); a node that left without notice stops
#: republishing, so its address disappears from the DHT within a day. Long enough that a
#: node offline for a few hours can still be found at its last address.
PEER_MAX_TTL: Final = 24 * _HOUR

#: Lifetime cap of provider records; the provider republishes them while it holds the content.
PROVIDER_MAX_TTL: Final = 24 * _HOUR

#: Most addresses in one peer record: a node has a few interfaces and address families; a list
#: longer than this is a node advertising addresses it does not have.
PEER_MAX_ADDRESSES: Final = 8

#: Largest peer value: a msgpack array header (1) and 8 entries ``[ip, port]`` of at most
#: 1 (array header) + 2 + 16 (bin8 IPv6) + 3 (u16 port) bytes each. Larger is refused as
#: oversized before it is parsed.
PEER_MAX_VALUE_BYTES: Final = 1 + PEER_MAX_ADDRESSES * (1 + 2 + 16 + 3)

#: Largest provider value: opaque, small (a hint such as a protocol or a size), never content.
PROVIDER_MAX_VALUE_BYTES: Final = 64

#: Decoder caps for a peer value: arrays of at most 8, bin of at most 16, no strings or maps.
_PEER_VALUE_LIMITS: Final = Limits(
    max_buffer=PEER_MAX_VALUE_BYTES,
    max_str=0,
    max_bin=16,
    max_array=PEER_MAX_ADDRESSES,
    max_map=0,
)


def encode_addresses(addresses: list[Address] | tuple[Address, ...]) -> bytes:
    """The peer-record value for `addresses`: ``msgpack([[ip_bytes, port], ...])``.

    IPv4 addresses (including IPv4-mapped IPv6 ones) are written as 4 bytes, IPv6 as 16.

    Raises:
        ValueError: Not 1 to 8 routable, distinct, literal IP addresses.
    """
    if not 1 <= len(addresses) <= PEER_MAX_ADDRESSES:
        raise ValueError(f"a peer record has 1 to {PEER_MAX_ADDRESSES} addresses")
    items: list[list[Any]] = []
    for address in addresses:
        try:
            ip = ipaddress.ip_address(address.host)
        except ValueError:
            raise ValueError(f"{address} is not an IP address literal") from None
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if not is_routable(Address(str(ip), address.port)):
            raise ValueError(f"{address} is not routable")
        items.append([ip.packed, address.port])
    if len({(ip, port) for ip, port in items}) != len(items):
        raise ValueError("duplicate addresses")
    return pack(items)


def decode_addresses(value: bytes) -> list[Address]:
    """Parse a peer-record value; the inverse of :func:`encode_addresses`.

    Raises:
        InvalidRecord: :attr:`Reason.OVERSIZED` or :attr:`Reason.BAD_VALUE`, with the detail.
    """
    if len(value) > PEER_MAX_VALUE_BYTES:
        raise InvalidRecord(Reason.OVERSIZED, f"peer value of {len(value)} bytes")
    try:
        items = unpack(value, _PEER_VALUE_LIMITS)
    except DecodeError as exc:
        raise InvalidRecord(Reason.BAD_VALUE, f"peer addresses: {exc}") from None
    if type(items) is not list or not 1 <= len(items) <= PEER_MAX_ADDRESSES:
        raise InvalidRecord(Reason.BAD_VALUE, f"expected 1 to {PEER_MAX_ADDRESSES} addresses")
    addresses: list[Address] = []
    for item in items:
        if type(item) is not list or len(item) != 2:
            raise InvalidRecord(Reason.BAD_VALUE, "an address is [ip, port]")
        raw, port = item
        if type(raw) is not bytes or len(raw) not in (4, 16):
            raise InvalidRecord(Reason.BAD_VALUE, "an IP address is 4 or 16 bytes")
        if type(port) is not int:
            raise InvalidRecord(Reason.BAD_VALUE, "a port is an integer")
        ip = ipaddress.ip_address(raw)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            # One spelling per address, so that duplicates cannot hide behind two forms.
            raise InvalidRecord(Reason.BAD_VALUE, "IPv4-mapped IPv6 address")
        address = Address(str(ip), port)
        if not is_routable(address):
            raise InvalidRecord(Reason.BAD_VALUE, f"unroutable address {address}")
        addresses.append(address)
    if len(set(addresses)) != len(addresses):
        raise InvalidRecord(Reason.BAD_VALUE, "duplicate addresses")
    return addresses


class PeerRecordType(RecordType):
    """``peer`` (code 1): where a node can be reached.

    The key is the publisher's node ID, so only a node itself can say where it is, and one key
    holds one record. The value is a msgpack array of 1 to 8 ``[ip, port]`` pairs, ``ip`` being
    4 (IPv4) or 16 (IPv6) bytes, every address routable and distinct. Loopback and private
    addresses are allowed (local networks, tests); whether to dial them is the caller's choice.
    """

    code: ClassVar[int] = 1
    name: ClassVar[str] = "peer"
    max_value_bytes: ClassVar[int] = PEER_MAX_VALUE_BYTES
    max_ttl: ClassVar[int] = PEER_MAX_TTL
    multi_publisher: ClassVar[bool] = False

    def validate(self, record: Record, now: float) -> None:
        """Check that the key is the publisher's node ID and the address list is well formed."""
        if record.key != NodeId.from_public_key(record.publisher).raw:
            raise InvalidRecord(Reason.KEY_MISMATCH, "a peer record's key is its publisher's ID")
        decode_addresses(record.value)


class ProviderRecordType(RecordType):
    """``provider`` (code 2): "the publisher holds the content under this key".

    The key is any 32-byte content key; the provider is the publisher (its node ID is
    :attr:`Record.publisher_id`, its address the one in its peer record). The value is empty or
    a small opaque hint. Many providers can publish under one key.
    """

    code: ClassVar[int] = 2
    name: ClassVar[str] = "provider"
    max_value_bytes: ClassVar[int] = PROVIDER_MAX_VALUE_BYTES
    max_ttl: ClassVar[int] = PROVIDER_MAX_TTL
    multi_publisher: ClassVar[bool] = True


PEER: Final = PeerRecordType.code
PROVIDER: Final = ProviderRecordType.code


def default_registry() -> RecordRegistry:
    """A new registry with the types of this release: ``peer``, ``provider`` and ``backups``."""
    registry = RecordRegistry()
    registry.register(PeerRecordType())
    registry.register(ProviderRecordType())
    registry.register(BackupsRecordType())
    return registry


def make_peer_record(
    identity: Identity,
    addresses: list[Address] | tuple[Address, ...],
    seq: int,
    now: float,
    ttl: int = PEER_MAX_TTL,
) -> Record:
    """The signed peer record of `identity`: "I can be reached at `addresses`".

    Args:
        identity: The node publishing its own addresses.
        addresses: 1 to 8 routable, distinct, literal IP addresses.
        seq: Version; must grow with every new record (Unix milliseconds work and need no
            persisted counter, as long as the clock does not step back).
        now: Current Unix time in seconds.
        ttl: Lifetime in seconds, at most :data:`PEER_MAX_TTL`.

    Raises:
        ValueError: Bad addresses or TTL.
    """
    if not 0 < ttl <= PEER_MAX_TTL:
        raise ValueError(f"a peer record lives 1 to {PEER_MAX_TTL} seconds")
    value = encode_addresses(addresses)
    return sign_record(
        identity, PEER, identity.node_id.raw, seq=seq, expires_at=int(now) + ttl, value=value
    )


def peer_addresses(record: Record) -> list[Address]:
    """The addresses in a peer record.

    Raises:
        InvalidRecord: Not a peer record, or its value is malformed.
    """
    if record.rtype != PEER:
        raise InvalidRecord(Reason.BAD_VALUE, f"not a peer record (type {record.rtype})")
    return decode_addresses(record.value)
