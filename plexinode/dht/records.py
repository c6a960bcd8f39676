"""DHT records: typed, signed, versioned, expiring values, and the validators of each type.

Every value the DHT stores is a :class:`Record`. A record says "publisher P states that, under
key K, the value of type T is V, version S, until time E", and carries P's Ed25519 signature of
that statement. Nodes that store or relay a record therefore need not trust whoever handed it
to them: they check the statement itself.

Invariants this module keeps:

1. **No record is trusted before** :func:`validate_record` **accepted it** against a
   :class:`RecordRegistry`: its type is known, its sizes are within the caps, it has not
   expired, it does not claim to live longer than its type allows, its type-specific rules hold
   (for example "a peer record is stored under its publisher's node ID") and its signature is
   valid. The checks run cheapest first; the Ed25519 verification, by far the most expensive,
   runs last, so garbage costs us almost nothing.
2. **Sizes are checked before anything proportional to a claim is allocated.** On the wire a
   record's fields are checked by :meth:`Record.from_wire` (each ``bytes`` field has a length
   cap, enforced by the msgpack decoder before it allocates). :attr:`Record.size` is computed
   arithmetically from the field lengths, without encoding anything.
3. **Every node picks the same winner between two versions of one record** (:func:`newer`), so
   replicas converge whatever order the versions arrive in.

Signed bytes
------------
A record is a signed statement (:class:`~plexinode.signing.signed.Signed`): the signature covers
``RECORD_DOMAIN || msgpack([rtype, key, publisher, seq, expires_at, value])``, the domain string
``b"plexinode-record-v1\\x00"`` (so that a record signature can never be replayed as a datagram
or any other signed statement, and vice versa), then a msgpack array of the six other fields in
that order, integers in their shortest msgpack form, byte strings as msgpack ``bin``. This is
canonical: a verifier rebuilds it from the decoded fields rather than from the bytes it
received, and a record re-encoded differently on the wire still verifies.

Wire form
---------
A record is a :class:`~plexinode.wire.schema.Struct`: on the wire it is the msgpack array
``[rtype, key, publisher, seq, expires_at, value, signature]``, so DHT messages embed it with
``Nested(Record)``.

Conflicts
---------
Two records with the same ``(rtype, key, publisher)`` are versions of one statement; only one is
kept. :func:`newer` orders them: higher ``seq`` wins; at equal ``seq`` the later ``expires_at``
wins (the publisher re-signed the same version to extend its life); at equal ``seq`` and
``expires_at`` the greater signature wins, then the greater value. Ed25519 signatures are
deterministic, so two different statements at the same ``(seq, expires_at)`` almost surely
have different signatures, and comparing bytes is an arbitrary but *global* rule: every node
keeps the same one. Only the publisher can sign a version, so a publisher who signs two values
with one ``seq`` only confuses itself.

Record types
------------
A :class:`RecordType` describes one type: its code, caps (value size, lifetime), whether one
key holds records from many publishers, and any type-specific rule. The types of this release
(``peer`` and ``provider``) are in :mod:`plexinode.dht.record_types`; later services add theirs
to the same :class:`RecordRegistry`.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import ClassVar, Final

from plexinode.errors import AuthenticationError, RemoteProtocolError
from plexinode.identity import NODE_ID_BYTES, PUBLIC_KEY_BYTES, SIGNATURE_BYTES, Identity, NodeId
from plexinode.signing.signed import Signed, domain
from plexinode.wire.codec import bin_size, int_size
from plexinode.wire.schema import U64_MAX, Bytes, Int, wire

#: Prefix of every signed record statement; never used for anything else.
RECORD_DOMAIN: Final = domain(b"plexinode-record-v1\x00")

#: Record keys are points of the 256-bit ID space, like node IDs.
KEY_BYTES: Final = NODE_ID_BYTES

#: Largest record type code (codes are u16 so that a later type never runs out of room).
MAX_RTYPE: Final = 0xFFFF

#: Largest encoded record, in bytes. A record must travel in one datagram together with its DHT
#: message: a datagram is at most 1200 bytes (``net.transport.MAX_DATAGRAM``), of which the
#: authenticated, encrypted datagram layer takes 153 (``net.packet.OVERHEAD``: 49-byte header,
#: 64-byte signature, 24-byte nonce, 16-byte AEAD tag), leaving 1047 for the envelope. The
#: envelope (``[version, type, request_id, body]``) takes up to 13 bytes, and the DHT message
#: around the record needs room for its other fields (a 34-byte key echo, a token, flags); 880
#: leaves 154 bytes for all of that. ``tests/unit/test_records.py`` checks the arithmetic
#: against the real constants.
MAX_RECORD_BYTES: Final = 880

#: Encoded size of every field but the value, at its largest: the 7-element array header (1),
#: rtype (u16: 3), key and publisher (bin8 header 2 + 32, twice), seq and expires_at (u64: 9
#: each), the value's bin16 header (3) and the signature (2 + 64).
_MAX_FIXED_BYTES: Final = 1 + 3 + 2 * (2 + KEY_BYTES) + 9 + 9 + 3 + (2 + SIGNATURE_BYTES)

#: Largest value any record type may carry: a record whose value fits this cap always fits
#: :data:`MAX_RECORD_BYTES`, whatever its other fields are. The wire check of the value field
#: uses it, so the decoder refuses a longer value before allocating it.
MAX_VALUE_BYTES: Final = MAX_RECORD_BYTES - _MAX_FIXED_BYTES

#: How far a record's expiry may lie beyond ``now + max_ttl`` before it counts as "from the
#: future". Expiry times are absolute, so they depend on the publisher's clock agreeing with
#: ours. The costs are lopsided: too tight, and every node refuses the records of a publisher
#: whose clock runs a little fast (a laptop without NTP, a resumed VM), which makes that
#: publisher unfindable; too loose, and a record outlives its publisher's intent by at most this
#: much. One hour is generous for drifting clocks and small against the 24 h lifetimes.
CLOCK_SKEW_ALLOWANCE: Final = 3600


class Reason(enum.StrEnum):
    """Why a record was refused; the string is what counters and error replies show."""

    MALFORMED = "malformed"
    UNKNOWN_TYPE = "unknown type"
    OVERSIZED = "oversized"
    EXPIRED = "expired"
    FROM_THE_FUTURE = "from the future"
    KEY_MISMATCH = "key mismatch"
    BAD_VALUE = "bad value"
    BAD_SIGNATURE = "bad signature"


class InvalidRecord(RemoteProtocolError):
    """A record failed validation.

    Attributes:
        reason: One of :class:`Reason` (a ``str``), for counters and error replies.
        detail: A human-readable precision, possibly empty.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclasses.dataclass(frozen=True, slots=True)
class Record(Signed):
    """One signed statement stored in the DHT.

    Attributes:
        rtype: Record type code (see :class:`RecordRegistry`).
        key: The 32-byte DHT key the record is stored under.
        publisher: The publisher's 32-byte Ed25519 public key.
        seq: Version number (u64); a higher one replaces a lower one.
        expires_at: Unix time, in seconds, at which the record stops being valid.
        value: Type-specific payload.
        signature: Ed25519 signature of :meth:`signed_bytes` by ``publisher``.
    """

    DOMAIN: ClassVar[bytes] = RECORD_DOMAIN
    SIGNER: ClassVar[str] = "publisher"

    rtype: int = wire(Int(0, MAX_RTYPE))
    key: bytes = wire(Bytes(KEY_BYTES, KEY_BYTES))
    publisher: bytes = wire(Bytes(PUBLIC_KEY_BYTES, PUBLIC_KEY_BYTES))
    seq: int = wire(Int(0, U64_MAX))
    expires_at: int = wire(Int(0, U64_MAX))
    value: bytes = wire(Bytes(0, MAX_VALUE_BYTES))
    signature: bytes = wire(Bytes(SIGNATURE_BYTES, SIGNATURE_BYTES))

    @property
    def publisher_id(self) -> NodeId:
        """The publisher's node ID."""
        return NodeId.from_public_key(self.publisher)

    @property
    def size(self) -> int:
        """Length of the msgpack encoding of :meth:`to_wire`, computed without encoding.

        Exact for any record whose integer fields fit msgpack (within ``[-2**63, 2**64)``).
        """
        return (
            1  # array of 7
            + int_size(self.rtype)
            + bin_size(len(self.key))
            + bin_size(len(self.publisher))
            + int_size(self.seq)
            + int_size(self.expires_at)
            + bin_size(len(self.value))
            + bin_size(len(self.signature))
        )

    def slot(self) -> tuple[int, bytes, bytes]:
        """``(rtype, key, publisher)``: records with equal slots are versions of each other."""
        return (self.rtype, self.key, self.publisher)


def sign_record(
    identity: Identity, rtype: int, key: bytes, *, seq: int, expires_at: int, value: bytes
) -> Record:
    """Build and sign a record published by `identity`.

    Args:
        identity: The publisher.
        rtype: Record type code.
        key: The 32-byte DHT key.
        seq: Version (u64).
        expires_at: Unix time, in seconds, when the record expires.
        value: Type-specific payload.

    Raises:
        ValueError: A field is out of range (not a valid record whatever the type rules are).
    """
    if not 0 <= rtype <= MAX_RTYPE:
        raise ValueError(f"record type {rtype} out of range")
    if len(key) != KEY_BYTES:
        raise ValueError(f"a record key is {KEY_BYTES} bytes")
    if not 0 <= seq <= U64_MAX or not 0 <= expires_at <= U64_MAX:
        raise ValueError("seq and expires_at are unsigned 64-bit integers")
    if len(value) > MAX_VALUE_BYTES:
        raise ValueError(f"a record value is at most {MAX_VALUE_BYTES} bytes")
    return Record(rtype, key, identity.public_key, seq, expires_at, value, b"").signed_by(identity)


def newer(a: Record, b: Record) -> bool:
    """Whether `a` should replace `b`; both must be versions of one slot.

    Higher ``seq`` wins; then later ``expires_at``; then the greater signature, then the
    greater value (a deterministic tie-break so that all nodes keep the same version). A record
    is never newer than itself, and for two different versions exactly one is newer.

    Raises:
        ValueError: `a` and `b` have different ``(rtype, key, publisher)``.
    """
    if a.slot() != b.slot():
        raise ValueError("newer() compares versions of one (rtype, key, publisher)")
    return (a.seq, a.expires_at, a.signature, a.value) > (
        b.seq,
        b.expires_at,
        b.signature,
        b.value,
    )


class RecordType:
    """The rules of one record type. Subclass it and register an instance.

    Attributes:
        code: Wire code of the type (``Record.rtype``), unique in a registry.
        name: Short name for logs, counters and the CLI.
        max_value_bytes: Largest value; at most :data:`MAX_VALUE_BYTES`.
        max_ttl: Largest lifetime in seconds: ``expires_at`` may be at most
            ``now + max_ttl + CLOCK_SKEW_ALLOWANCE``.
        multi_publisher: True if one key holds one record per publisher (provider records);
            False if it holds one record in all (the type's :meth:`validate` must then bind the
            key to the publisher, as peer records do, or publishers would compete for keys).
    """

    code: ClassVar[int]
    name: ClassVar[str]
    max_value_bytes: ClassVar[int]
    max_ttl: ClassVar[int]
    multi_publisher: ClassVar[bool] = False

    def validate(self, record: Record, now: float) -> None:
        """Check the type-specific rules; called after the generic checks, before the signature.

        Raises:
            InvalidRecord: With :attr:`Reason.KEY_MISMATCH` or :attr:`Reason.BAD_VALUE`.
        """


class RecordRegistry:
    """The record types a node accepts, by code."""

    def __init__(self) -> None:
        self._by_code: dict[int, RecordType] = {}

    def register(self, validator: RecordType) -> RecordType:
        """Add a type.

        Raises:
            ValueError: Its code or name is taken, or its caps are out of range.
        """
        if not 0 <= validator.code <= MAX_RTYPE:
            raise ValueError(f"record type code {validator.code} out of range")
        if validator.code in self._by_code:
            raise ValueError(f"record type code {validator.code} is already registered")
        if any(t.name == validator.name for t in self._by_code.values()):
            raise ValueError(f"record type name {validator.name!r} is already registered")
        if not 0 <= validator.max_value_bytes <= MAX_VALUE_BYTES:
            raise ValueError(f"max_value_bytes must be within 0..{MAX_VALUE_BYTES}")
        if validator.max_ttl <= 0:
            raise ValueError("max_ttl must be positive")
        self._by_code[validator.code] = validator
        return validator

    def get(self, rtype: int) -> RecordType | None:
        """The type registered under `rtype`, or None."""
        return self._by_code.get(rtype)

    def __contains__(self, rtype: object) -> bool:
        return rtype in self._by_code

    def types(self) -> list[RecordType]:
        """Every registered type, by code."""
        return [self._by_code[code] for code in sorted(self._by_code)]


def validate_record(record: Record, now: float, registry: RecordRegistry) -> None:
    """Check a record from anywhere (a peer, the local database) before trusting it.

    Checks, cheapest first: field types and lengths, known type, sizes, expiry, lifetime, the
    type's own rules, and last the signature.

    Args:
        record: The record to check.
        now: Current Unix time in seconds.
        registry: The accepted record types.

    Raises:
        InvalidRecord: With the :class:`Reason` of the first failed check.
    """
    if (
        type(record.rtype) is not int
        or type(record.seq) is not int
        or type(record.expires_at) is not int
        or not 0 <= record.rtype <= MAX_RTYPE
        or not 0 <= record.seq <= U64_MAX
        or not 0 <= record.expires_at <= U64_MAX
        or type(record.key) is not bytes
        or type(record.publisher) is not bytes
        or type(record.value) is not bytes
        or type(record.signature) is not bytes
        or len(record.key) != KEY_BYTES
        or len(record.publisher) != PUBLIC_KEY_BYTES
        or len(record.signature) != SIGNATURE_BYTES
    ):
        raise InvalidRecord(Reason.MALFORMED)
    rtype = registry.get(record.rtype)
    if rtype is None:
        raise InvalidRecord(Reason.UNKNOWN_TYPE, f"type {record.rtype}")
    if record.size > MAX_RECORD_BYTES:
        raise InvalidRecord(Reason.OVERSIZED, f"record of {record.size} bytes")
    if len(record.value) > rtype.max_value_bytes:
        raise InvalidRecord(Reason.OVERSIZED, f"{rtype.name} value of {len(record.value)} bytes")
    if record.expires_at <= now:
        raise InvalidRecord(Reason.EXPIRED)
    if record.expires_at > now + rtype.max_ttl + CLOCK_SKEW_ALLOWANCE:
        raise InvalidRecord(
            Reason.FROM_THE_FUTURE, f"expires {record.expires_at - now:.0f} s from now"
        )
    rtype.validate(record, now)
    try:
        record.verify_signature()
    except AuthenticationError:
        raise InvalidRecord(Reason.BAD_SIGNATURE) from None
