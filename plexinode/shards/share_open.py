"""Opening the holder's share store (`store.ShareStore`), repairing what a crash left."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import trio

from plexinode.shards import share_sql
from plexinode.shards.share_files import DIRECTORY_NAME, ShareFiles, Writer, write_all
from plexinode.shards.share_ledger import Ledger
from plexinode.shards.store import Recovery, ShareStore
from plexinode.storage import Database

log = logging.getLogger(__name__)


async def open_share_store(
    db: Database,
    data_dir: Path,
    *,
    capacity: int,
    owner_quota: int = 0,
    writer: Writer = write_all,
    clock: Callable[[], float] = time.time,
) -> ShareStore:
    """Open the share store in `data_dir` over `db`, repairing what a crash left.

    Files no committed row names and unfinished writes are removed; rows whose file is missing
    or of the wrong size are dropped (logged, counted in `ShareStore.recovery`). This reads
    every row and lists the directory once, at start-up only.

    Args:
        db: the node's open database (migrated).
        data_dir: the data dir; blocks go to ``data_dir/shares/``.
        capacity: the node's quota in bytes (``storage.quota_bytes``).
        owner_quota: the most one owner may take (``storage.owner_quota_bytes``; 0: no limit).
        writer: writes a block to an open file (a seam for tests of a full disk).
        clock: Unix time, to refuse leases that have already expired.
    """
    files = await trio.to_thread.run_sync(ShareFiles, data_dir / DIRECTORY_NAME, writer)
    temporary, on_disk = await trio.to_thread.run_sync(files.scan)
    rows = await db.read(share_sql.all_files)
    damaged = [name for name, size in rows.items() if on_disk.get(name) != size]
    if damaged:
        await db.write(lambda conn: share_sql.drop_files(conn, damaged))
        log.warning("dropped %d shares whose files were missing or damaged", len(damaged))
    lost = set(damaged)
    orphans = [name for name in on_disk if name not in rows or name in lost]
    await trio.to_thread.run_sync(files.remove, [*temporary, *orphans])
    if temporary or orphans:
        log.info("removed %d unfinished share files", len(temporary) + len(orphans))
    used = await db.read(share_sql.usage)
    return ShareStore(
        db,
        files,
        Ledger(capacity, owner_quota, used),
        Recovery(len(temporary), len(orphans), len(damaged)),
        clock,
    )
