"""One ``backup create`` from the owner's side, once placement has found the holders.

The job runs the pipeline (`backup_pipeline.run_pipeline`) over the source and fans every new
segment out to its holders, one `uploading.ShareUpload` per share index, all of a segment's
blocks sent concurrently, each holder's window applying backpressure. A segment the owner
placed before (in this backup or an earlier one, with the same k and n) is not sent: the job
lists it with its home, and `references` says which homes' holders must add this backup's
lease to which segments (``shard-ref``).

A share index whose holder refuses or fails midway is dropped from the upload (its blocks
already committed stay where they are; the index is reported in `BackupOutcome.lost_indices`
to be repaired); the backup fails if fewer than ``happy`` holders are left. Every segment
acknowledged by every remaining holder is recorded as placed in the owner's catalog as soon as
it is, so an interrupted backup resumes by running again: what was placed is skipped.

Progress is reported after each segment handed on, in stream order: the source's bytes through
(against `Source.estimate`, raised to what was read once the stream, with its index, outgrows
it) and the share bytes sent so far, to holders that failed since as well.

When the stream is done and every holder has acknowledged, the manifest is built, signed,
sent to every holder and recorded; only then is the backup ``complete``. No manifest exists
before every share it lists was acknowledged.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

import trio

from plexinode.errors import PlexinodeError
from plexinode.identity import Identity
from plexinode.shards import derive, manifest
from plexinode.shards.backup_pipeline import Result, Reused, run_pipeline
from plexinode.shards.catalog import Catalog, PlacedSegment
from plexinode.shards.manifest import Manifest, Private, SegmentTable
from plexinode.shards.pipeline import EncodedSegment
from plexinode.shards.progress import BACKUP, Progress, Report, ignore
from plexinode.shards.segmenter import SegmentSizes
from plexinode.shards.source import Source
from plexinode.shards.uploading import HolderRefused, ShareUpload

log = logging.getLogger(__name__)

#: Segments recorded as placed per catalog transaction.
RECORD_BATCH: Final = 16


class BackupFailed(PlexinodeError):
    """The backup could not be completed (the message says why)."""


@dataclass(slots=True)
class BackupOutcome:
    """What a backup did.

    Attributes:
        manifest: the signed manifest.
        holders: share index -> the holder link's name, for the indices still held.
        lost_indices: indices whose holder refused or failed (to repair).
        references: home -> segments of it this backup reuses.
        bytes_sent: block bytes sent.
    """

    manifest: Manifest
    holders: dict[int, str]
    lost_indices: list[int] = field(default_factory=list)
    references: dict[bytes, list[bytes]] = field(default_factory=dict)
    bytes_sent: int = 0


@dataclass(frozen=True, slots=True)
class HolderLink:
    """An open upload to one holder for one share index (named for reports)."""

    name: str
    upload: ShareUpload


class _Job:
    def __init__(
        self,
        links: Mapping[int, HolderLink],
        catalog: Catalog,
        backup_id: bytes,
        code: tuple[int, int, int],
        *,
        progress: Report = ignore,
        estimate: int = 0,
    ) -> None:
        self.links = dict(links)
        self.uploads = [link.upload for link in links.values()]
        self.progress = progress
        self.estimate = estimate
        self.done = 0
        self.catalog = catalog
        self.backup_id = backup_id
        self.k, self.n, self.happy = code
        self.lost: list[int] = []
        self.results: list[Reused | PlacedSegment] = []
        self.unrecorded: list[PlacedSegment] = []

    def check_happy(self) -> None:
        if len(self.links) < self.happy:
            raise BackupFailed(
                f"only {len(self.links)} holders still accept shares, {self.happy} needed"
            )

    async def _send(self, index: int, segment: EncodedSegment) -> None:
        link = self.links.get(index)
        if link is None:
            return
        try:
            await link.upload.send(segment, more_ready=False)
        except HolderRefused as exc:
            log.warning("backup: holder %s of share %d refused: %s", link.name, index, exc)
            self.links.pop(index, None)
            self.lost.append(index)

    def report(self, length: int) -> None:
        self.done += length
        sent = sum(upload.bytes_sent for upload in self.uploads)
        total = max(self.estimate, self.done)
        self.progress(Progress(BACKUP, self.done, total, sent_bytes=sent))

    async def deliver(self, result: Result) -> None:
        if isinstance(result, Reused):
            self.results.append(result)
            self.report(result.length)
            return
        async with trio.open_nursery() as nursery:
            for index in list(self.links):
                nursery.start_soon(self._send, index, result)
        self.check_happy()
        # Only what the manifest needs is kept, not the blocks: the owner's memory stays
        # bounded by the pipeline's window whatever the source's size.
        placed = PlacedSegment(
            result.identity, self.backup_id, result.length, len(result.blocks[0]), result.roots
        )
        self.results.append(placed)
        self.unrecorded.append(placed)
        if len(self.unrecorded) >= RECORD_BATCH:
            await self.record()
        self.report(result.length)

    async def record(self) -> None:
        """Record the segments every remaining holder acknowledged as placed."""
        acked = [set(link.upload.stored) for link in self.links.values()]
        done = [s for s in self.unrecorded if all(s.identity in a for a in acked)]
        if done:
            await self.catalog.record_placed(self.backup_id, self.k, self.n, done)
            recorded = {s.identity for s in done}
            self.unrecorded = [s for s in self.unrecorded if s.identity not in recorded]

    async def drain(self) -> None:
        for index, link in list(self.links.items()):
            try:
                await link.upload.drain()
            except HolderRefused as exc:
                log.warning("backup: holder %s of share %d failed: %s", link.name, index, exc)
                self.links.pop(index, None)
                self.lost.append(index)
        self.check_happy()
        await self.record()


async def run_backup(
    *,
    source: Source,
    identity: Identity,
    secret: bytes,
    catalog: Catalog,
    backup_id: bytes,
    links: Mapping[int, HolderLink],
    code: tuple[int, int, int],
    name: str,
    now: float,
    lease_expires: float,
    sizes: SegmentSizes,
    workers: int = 2,
    nonce: Callable[[], bytes] = lambda: os.urandom(manifest.NONCE_BYTES),
    reference: Callable[[dict[bytes, list[bytes]]], Awaitable[None]] | None = None,
    progress: Report = ignore,
    estimate: int = 0,
) -> BackupOutcome:
    """Back up `source` to the holders behind `links` (share index -> upload); see above.

    Args:
        code: (k, n, happy).
        reference: told, before the manifest is sent, which segments of earlier homes this
            backup reuses (home -> segment IDs), so their holders keep them under this backup's
            lease before any manifest claims them.
        progress: told how far the backup is after each segment.
        estimate: the source's size as walked before (`Source.estimate`), the total reported.

    Raises:
        BackupFailed: fewer than happy holders left, or the source or catalog failed.
        source.SourceError: the source could not be read as it was.
    """
    k, n, happy = code
    job = _Job(links, catalog, backup_id, code, progress=progress, estimate=estimate)
    job.check_happy()
    known = await catalog.known(k, n)
    await run_pipeline(
        source,
        secret=secret,
        k=k,
        n=n,
        sizes=sizes,
        known=known,
        deliver=job.deliver,
        workers=workers,
    )
    await job.drain()
    reused = [r.identity for r in job.results if isinstance(r, Reused)]
    placed = await catalog.placed(k, n, reused)
    fresh = {s.identity: s for s in job.results if isinstance(s, PlacedSegment)}
    table = SegmentTable(backup_id, n)
    references: dict[bytes, list[bytes]] = {}
    for result in job.results:
        new = fresh.get(result.identity)
        if new is not None:
            table.add(new.identity, backup_id, new.length, new.block_size, new.roots)
            continue
        old = placed.get(result.identity)
        if old is None:
            raise BackupFailed("a reused segment is missing from the catalog")
        table.add(old.identity, old.home, old.length, old.block_size, old.roots)
        if old.home != backup_id:
            references.setdefault(old.home, []).append(old.identity)
    await catalog.add_uses(backup_id, [r.identity for r in job.results])
    if reference is not None and references:
        await reference(references)
    private = Private.of(
        name, str(source.path), source.data_bytes, source.index_bytes, table.lengths
    )
    key = derive.manifest_key(secret, backup_id)
    sealing_nonce = nonce()
    built = manifest.build(
        owner=identity.public_key,
        backup_id=backup_id,
        created=now,
        lease_expires=lease_expires,
        k=k,
        n=n,
        table=table,
        nonce=sealing_nonce,
        sealed=manifest.seal_private(private, key, sealing_nonce, identity.public_key, backup_id),
    ).signed_by(identity)
    data = built.to_bytes_checked()
    unkept = await send_manifest(job.links.values(), identity, backup_id, data)
    if len(job.links) - len(unkept) < happy:
        raise BackupFailed(f"only {len(job.links) - len(unkept)} holders kept the manifest")
    await catalog.complete(backup_id, data, source.data_bytes)
    return BackupOutcome(
        manifest=built,
        holders={index: link.name for index, link in job.links.items()},
        lost_indices=sorted(job.lost),
        references=references,
        bytes_sent=sum(link.upload.bytes_sent for link in job.links.values()),
    )


async def send_manifest(
    links: Iterable[HolderLink], identity: Identity, backup_id: bytes, data: bytes
) -> list[str]:
    """Send a manifest to every holder; returns the names of those that did not keep it."""
    failed = []
    for link in links:
        try:
            await link.upload.put_manifest(identity.node_id.raw, data)
        except HolderRefused as exc:
            log.warning("backup: holder %s did not keep the manifest: %s", link.name, exc)
            failed.append(link.name)
    return failed
