"""The ``backups`` record type: an owner's signed list of its backups, found from its ID alone.

A node restored on a new machine knows its identity and nothing else. To list its backups it
looks up this record: the key is derived from the owner's node ID (so the owner, and only the
owner, publishes under it), the value lists the owner's backup IDs, newest first. Each backup's
holders are then found through the provider records they publish for it, and any of them
serves the manifest (docs/protocol.md, "Backups").

The holders of a backup's shares say so with ``provider`` records (`home_key`): the key is
derived from the owner's ID and the home (the backup under which the segments were placed), the
value names the share indices the publisher holds (`encode_share_indices`). Anyone can publish
a provider record, so a reader treats one as a hint: what it fetches is checked against the
owner-signed manifest's roots.

The record must outlive the owner's machine for as long as its backups do: the owner signs it
with an expiry at the end of its leases (at most `BACKUPS_MAX_TTL`), and the DHT's holders
republish it until then without the owner. At most `BACKUPS_MAX_IDS` backups fit in one record
(the DHT caps a record near 880 bytes); an owner with more lists its newest, and the holders'
``shard-list`` answers name the rest.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from typing import ClassVar, Final

from plexinode.dht.records import InvalidRecord, Reason, Record, RecordType
from plexinode.errors import DecodeError
from plexinode.identity import NodeId
from plexinode.wire.codec import Limits, pack, unpack

BACKUPS: Final = 3
BACKUP_ID_BYTES: Final = 16
#: Longest life of the record: the default lease (30 days) plus two weeks, so a pointer signed
#: just before a lease renewal still outlives the lease it points to.
BACKUPS_MAX_TTL: Final = 44 * 24 * 3600
#: Most backup IDs in one record.
BACKUPS_MAX_IDS: Final = 32
#: Largest value: an array16 header (3) and 32 bin8 items of 2 + 16 bytes.
BACKUPS_MAX_VALUE_BYTES: Final = 3 + BACKUPS_MAX_IDS * (2 + BACKUP_ID_BYTES)
_PERSON: Final = b"pxn-backups-key"
_HOME_PERSON: Final = b"pxn-shard-home"
#: Most share indices one provider value names (a holder keeps one share of each home; more
#: after a repair that had no other candidate; never more than the 64-byte provider value).
MAX_SHARE_INDICES: Final = 64
_LIMITS: Final = Limits(
    max_buffer=BACKUPS_MAX_VALUE_BYTES,
    max_str=0,
    max_bin=BACKUP_ID_BYTES,
    max_array=BACKUPS_MAX_IDS,
    max_map=0,
)


def backups_key(owner: NodeId) -> bytes:
    """The DHT key of `owner`'s backups record."""
    return hashlib.blake2b(owner.raw, digest_size=32, person=_PERSON).digest()


def home_key(owner: NodeId, home: bytes) -> bytes:
    """The DHT key of the provider records of `owner`'s shares placed under `home`."""
    if len(home) != BACKUP_ID_BYTES:
        raise ValueError("a home is a 16-byte backup ID")
    return hashlib.blake2b(owner.raw + home, digest_size=32, person=_HOME_PERSON).digest()


def encode_share_indices(indices: Sequence[int]) -> bytes:
    """A provider value naming share `indices` (distinct, 0 to 255, at most 64): one byte
    each, ascending."""
    ordered = sorted(set(indices))
    if len(ordered) != len(indices) or not 1 <= len(ordered) <= MAX_SHARE_INDICES:
        raise ValueError(f"1 to {MAX_SHARE_INDICES} distinct share indices")
    if ordered[0] < 0 or ordered[-1] > 255:
        raise ValueError("a share index is 0 to 255")
    return bytes(ordered)


def decode_share_indices(value: bytes) -> list[int]:
    """The share indices of a provider value.

    Raises:
        InvalidRecord: :attr:`Reason.BAD_VALUE` unless 1 to 64 strictly ascending bytes.
    """
    indices = list(value)
    if not 1 <= len(indices) <= MAX_SHARE_INDICES or any(
        a >= b for a, b in itertools.pairwise(indices)
    ):
        raise InvalidRecord(Reason.BAD_VALUE, "expected 1 to 64 ascending share indices")
    return indices


def encode_backup_ids(backup_ids: Sequence[bytes]) -> bytes:
    """The record value listing `backup_ids` (newest first, distinct, at most 32)."""
    if len(backup_ids) > BACKUPS_MAX_IDS:
        raise ValueError(f"a backups record lists at most {BACKUPS_MAX_IDS} backups")
    if any(len(b) != BACKUP_ID_BYTES for b in backup_ids) or len(set(backup_ids)) != len(
        backup_ids
    ):
        raise ValueError("backup IDs are distinct 16-byte strings")
    return pack(list(backup_ids))


def decode_backup_ids(value: bytes) -> list[bytes]:
    """The backup IDs of a record value.

    Raises:
        InvalidRecord: :attr:`Reason.BAD_VALUE` for anything but distinct 16-byte IDs.
    """
    try:
        items = unpack(value, _LIMITS)
    except DecodeError as exc:
        raise InvalidRecord(Reason.BAD_VALUE, f"backup IDs: {exc}") from None
    if (
        type(items) is not list
        or any(type(i) is not bytes or len(i) != BACKUP_ID_BYTES for i in items)
        or len(set(items)) != len(items)
    ):
        raise InvalidRecord(Reason.BAD_VALUE, "expected distinct 16-byte backup IDs")
    return items


class BackupsRecordType(RecordType):
    """``backups`` (code 3): the publisher's own list of backups (see the module docstring)."""

    code: ClassVar[int] = BACKUPS
    name: ClassVar[str] = "backups"
    max_value_bytes: ClassVar[int] = BACKUPS_MAX_VALUE_BYTES
    max_ttl: ClassVar[int] = BACKUPS_MAX_TTL
    multi_publisher: ClassVar[bool] = False

    def validate(self, record: Record, now: float) -> None:
        """Check that the key is the publisher's backups key and the list is well formed."""
        if record.key != backups_key(record.publisher_id):
            raise InvalidRecord(Reason.KEY_MISMATCH, "a backups record's key is its owner's")
        decode_backup_ids(record.value)
