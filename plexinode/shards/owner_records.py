"""The owner's side of the backups' DHT records (`dht_records`).

`publish_list` republishes the owner's ``backups`` record from its catalog after every change.
`all_holders` merges, for a restore, the catalog's placements with the holders' provider
records (a repair may have moved shares since the owner placed them).

`adopt_backups` finds this owner's backups again, on a machine whose catalog lacks them. The
owner's ``backups`` record lists its backup IDs; for each one the catalog does not know,
the provider records of the backup's own home name its holders, each of which keeps the
manifest. The first manifest that decodes, is signed by this owner, is of that backup and opens
with this owner's backup secret is adopted into the catalog (`Catalog.adopt`): its segments
(so a later backup reuses them and `backup rm` frees them), and where its homes' shares are,
from their provider records. A holder that answers with anything else is skipped and the next
one asked; a deadline bounds each.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Final

import trio

from plexinode.errors import PlexinodeError
from plexinode.identity import Identity, NodeId
from plexinode.net.streams import STREAM_FAILURES
from plexinode.shards import derive, fetching
from plexinode.shards.catalog import COMPLETE, BackupRow, Catalog, PlacedSegment
from plexinode.shards.dht_records import BackupRecords
from plexinode.shards.manifest import Manifest, ManifestError, Private
from plexinode.shards.placement import Coding

log = logging.getLogger(__name__)

#: How long one holder may take to send a manifest: a large one (a backup of millions of
#: files) is megabytes, at the holders' read rate of 8 MiB/s a few seconds; with margin.
MANIFEST_DEADLINE: Final = 60.0
#: Holders asked for one manifest before giving up on that backup for now.
MANIFEST_TRIES: Final = 4

Opener = Callable[[NodeId], AbstractAsyncContextManager[trio.abc.Channel[bytes]]]


async def adopt_backups(
    *,
    records: BackupRecords,
    identity: Identity,
    secret: bytes,
    catalog: Catalog,
    open_stream: Opener,
) -> list[bytes]:
    """Adopt every backup the owner's DHT record lists that the catalog lacks; returns the IDs
    adopted (those whose manifest no holder served are left for the next time)."""
    listed = await records.backup_ids(identity.node_id)
    if not listed:
        return []
    adopted = []
    for backup_id in listed:
        if await catalog.get(backup_id) is not None:
            continue
        found = await _fetch(records, identity, secret, backup_id, open_stream)
        if found is None:
            log.warning("backups: no holder served the manifest of %s", backup_id.hex())
            continue
        built, private, data = found
        homes = {home: await _holders(records, identity.node_id, home) for home in built.homes}
        if await catalog.adopt(_row(built, private, data), _segments(built, private), homes):
            log.info("backups: adopted %s (%r) from its holders", backup_id.hex(), private.name)
            adopted.append(backup_id)
    return adopted


async def _holders(records: BackupRecords, owner: NodeId, home: bytes) -> dict[int, bytes]:
    return {index: nodes[0].raw for index, nodes in (await records.holders(owner, home)).items()}


async def _fetch(
    records: BackupRecords,
    identity: Identity,
    secret: bytes,
    backup_id: bytes,
    open_stream: Opener,
) -> tuple[Manifest, Private, bytes] | None:
    async for node in _candidates(records, identity.node_id, backup_id):
        try:
            with trio.fail_after(MANIFEST_DEADLINE):
                async with open_stream(node) as stream:
                    data = await fetching.fetch_manifest(stream, identity.node_id.raw, backup_id)
            built = Manifest.decode(data)
            if built.owner != identity.public_key or built.backup_id != backup_id:
                raise ManifestError("not this owner's manifest of that backup")
            private = built.open_private(derive.manifest_key(secret, backup_id))
        except (PlexinodeError, ManifestError, trio.TooSlowError, *STREAM_FAILURES) as exc:
            log.info(
                "backups: %s did not serve manifest %s: %s", node.short(), backup_id.hex(), exc
            )
            continue
        return built, private, data
    return None


async def _candidates(
    records: BackupRecords, owner: NodeId, backup_id: bytes
) -> AsyncIterator[NodeId]:
    seen: set[NodeId] = set()
    for nodes in (await records.holders(owner, backup_id)).values():
        for node in nodes:
            if node not in seen and len(seen) < MANIFEST_TRIES:
                seen.add(node)
                yield node


async def publish_list(records: BackupRecords | None, catalog: Catalog, now: float) -> None:
    """Republish the owner's ``backups`` record: its complete backups, newest first, until its
    last lease ends. With no backup it says so only to take back an earlier list."""
    if records is None:
        return
    rows = await catalog.backups(COMPLETE)
    try:
        if not rows and not await records.backup_ids(records.node_id):
            return  # nothing to say, and nothing said before to take back
        until = max((row.lease_expires for row in rows), default=now)
        await records.publish_backups([row.backup_id for row in reversed(rows)], until)
    except PlexinodeError as exc:
        log.warning("backup: publishing this node's list of backups failed: %s", exc)


async def all_holders(
    catalog: Catalog, records: BackupRecords | None, owner: NodeId, home: bytes
) -> dict[int, list[bytes]]:
    """Share index -> holders of `owner`'s `home`: as placed, then those whose provider
    records say so."""
    found = {i: [h] for i, h in (await catalog.holders(home)).items()}
    if records is not None:
        try:
            announced = await records.holders(owner, home)
        except PlexinodeError as exc:
            log.info("restore: provider records of %s: %s", home.hex(), exc)
            announced = {}
        for index, nodes in announced.items():
            holders = found.setdefault(index, [])
            holders.extend(n.raw for n in nodes if n.raw not in holders)
    return found


def _row(built: Manifest, private: Private, data: bytes) -> BackupRow:
    return BackupRow(
        backup_id=built.backup_id,
        name=private.name,
        source=private.source,
        created=built.created,
        k=built.k,
        n=built.n,
        happy=Coding.of(built.k, built.n, None).happy,
        state=COMPLETE,
        size=private.data_bytes,
        lease_expires=built.lease_expires,
        manifest=data,
    )


def _segments(built: Manifest, private: Private) -> list[PlacedSegment]:
    return [
        PlacedSegment(info.identity, info.home, length, info.block_size, info.roots)
        for info, length in zip(built.segments(), private.segment_lengths(), strict=True)
    ]
