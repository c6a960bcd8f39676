"""The backups' records in the DHT: the owner's list of its backups, the holders' provider records.

A node restored on a new machine has its identity and backup secret and nothing else. Two kinds
of records let it find its backups again (docs/protocol.md, "Backups in the DHT"):

* the owner's ``backups`` record (`dht.backup_records`), under a key derived from its node ID:
  its complete backups, newest first, signed by the owner, living until its leases end (the
  DHT's nodes republish it without the owner);
* each holder's ``provider`` record under `home_key(owner, home)`: "I hold share i of the
  segments `owner` placed under `home`", signed by the holder, republished while it holds them.

From the first the owner learns its backup IDs; from the second, who holds each home's shares
(also after a repair moved them, which the owner's own table cannot know), and so where to fetch
each manifest (stored by every holder of the backup's own home). Provider records are hints that
anyone may publish: what a reader fetches is checked against the owner-signed manifest.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Final, Protocol

from plexinode.dht.backup_records import (
    BACKUPS,
    BACKUPS_MAX_IDS,
    BACKUPS_MAX_TTL,
    backups_key,
    decode_backup_ids,
    decode_share_indices,
    encode_backup_ids,
    encode_share_indices,
    home_key,
)
from plexinode.dht.record_types import PROVIDER, PROVIDER_MAX_TTL
from plexinode.dht.records import InvalidRecord, Record, sign_record
from plexinode.identity import Identity, NodeId

log = logging.getLogger(__name__)

#: How often a holder republishes its provider records: three times in their lifetime, so a
#: record missed once or twice (a lookup that failed) does not lapse.
ANNOUNCE_INTERVAL: Final = PROVIDER_MAX_TTL / 3


class RecordDht(Protocol):
    """What these records need from the DHT (`dht.service.DhtService`)."""

    async def get(self, rtype: int, key: bytes) -> list[Record]:
        """Valid records of `rtype` under `key`."""

    async def put(self, record: Record) -> int:
        """Store `record` on the nodes closest to its key; how many took it."""

    def next_seq(self) -> int:
        """A sequence number above every one this node used."""


class BackupRecords:
    """Publishes and reads the backups' records for one node.

    Args:
        dht: the node's DHT.
        identity: this node (it signs what it publishes).
        wall_clock: Unix time (record expiries are Unix times).
    """

    def __init__(
        self,
        dht: RecordDht,
        identity: Identity,
        *,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._dht = dht
        self._identity = identity
        self._clock = wall_clock

    @property
    def node_id(self) -> NodeId:
        """The node these records are published by."""
        return self._identity.node_id

    async def publish_backups(self, backup_ids: Sequence[bytes], until: float) -> int:
        """Publish this owner's backups (newest first; only the newest 32 fit), living until
        `until` (the end of the last lease), at most `BACKUPS_MAX_TTL` from now. Returns how many
        DHT nodes took the record."""
        now = self._clock()
        expires = int(min(max(until, now + 1), now + BACKUPS_MAX_TTL))
        record = sign_record(
            self._identity,
            BACKUPS,
            backups_key(self._identity.node_id),
            seq=self._dht.next_seq(),
            expires_at=expires,
            value=encode_backup_ids(list(backup_ids)[:BACKUPS_MAX_IDS]),
        )
        return await self._dht.put(record)

    async def backup_ids(self, owner: NodeId) -> list[bytes] | None:
        """`owner`'s backups as its newest record lists them, or None when no record is
        found. Records under the key are the owner's alone (the record type checks that the key
        is the publisher's), so only their versions differ: the highest sequence wins."""
        key = backups_key(owner)
        newest: Record | None = None
        for record in await self._dht.get(BACKUPS, key):
            if (
                record.key == key
                and record.publisher_id == owner
                and (newest is None or record.seq > newest.seq)
            ):
                newest = record
        if newest is None:
            return None
        return decode_backup_ids(newest.value)

    async def announce(self, owner: bytes, home: bytes, indices: Sequence[int]) -> int:
        """Publish that this node holds shares `indices` of `owner`'s `home`."""
        record = sign_record(
            self._identity,
            PROVIDER,
            home_key(NodeId(owner), home),
            seq=self._dht.next_seq(),
            expires_at=int(self._clock() + PROVIDER_MAX_TTL),
            value=encode_share_indices(indices),
        )
        return await self._dht.put(record)

    async def holders(self, owner: NodeId, home: bytes) -> dict[int, list[NodeId]]:
        """Share index -> the nodes that say they hold it, from the provider records of
        `owner`'s `home` (a record with a malformed value is skipped and logged)."""
        key = home_key(owner, home)
        found: dict[int, list[NodeId]] = {}
        for record in await self._dht.get(PROVIDER, key):
            if record.key != key:
                continue
            try:
                indices = decode_share_indices(record.value)
            except InvalidRecord as exc:
                log.info("backups: skipping a provider record of %s: %s", home.hex(), exc)
                continue
            for index in indices:
                holders = found.setdefault(index, [])
                if record.publisher_id not in holders:
                    holders.append(record.publisher_id)
        return found
