"""The admin socket's ``backup_*`` commands, over the node's backup service."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from plexinode.admin.backup_fields import (
    BackupCreated,
    BackupCreateRequest,
    BackupIdRequest,
    BackupRestored,
    BackupRestoreRequest,
    BackupShown,
    BackupVerified,
)
from plexinode.admin.requests import NoArguments
from plexinode.admin.results import Document, Rows
from plexinode.admin.server import Handler
from plexinode.admin.typed import reporting, typed
from plexinode.identity import NodeId
from plexinode.shards.progress import Report

if TYPE_CHECKING:
    from plexinode.node import Node


class BackupCommands:
    """``backup create|list|show|verify|restore|rm`` (docs/cli.md).

    ``create``, ``verify`` and ``restore`` report their progress (`typed.reporting`): a command
    that should too takes a `Report` beside its request, hands it to the service, and is
    registered with `reporting` instead of `typed`.
    """

    def __init__(self, node: Node) -> None:
        self.node = node

    def table(self) -> dict[str, Handler]:
        """The commands, for the admin server."""
        return {
            "backup_create": reporting("backup_create", BackupCreateRequest, self.create),
            "backup_list": typed("backup_list", NoArguments, self.listing),
            "backup_show": typed("backup_show", BackupIdRequest, self.show),
            "backup_verify": reporting("backup_verify", BackupIdRequest, self.verify),
            "backup_restore": reporting("backup_restore", BackupRestoreRequest, self.restore),
            "backup_rm": typed("backup_rm", BackupIdRequest, self.remove),
        }

    async def create(self, request: BackupCreateRequest, report: Report) -> BackupCreated:
        """Back up a file or directory among the network's members."""
        created = await self.node.backups.create(
            Path(request.path),
            k=request.k,
            n=request.n,
            happy=request.happy,
            name=request.name,
            progress=report,
        )
        outcome = created.outcome
        return BackupCreated(
            backup_id=created.backup_id.hex(),
            bytes=created.bytes,
            k=created.k,
            n=created.n,
            holders=tuple(str(h) for h in created.holders),
            happy=created.happy,
            segments=outcome.manifest.segment_count,
            bytes_sent=outcome.bytes_sent,
            lost_indices=tuple(outcome.lost_indices),
        )

    async def listing(self, _: NoArguments) -> Rows:
        """The complete backups of this node, oldest first."""
        return Rows(tuple(await self.node.backups.listing()))

    async def show(self, request: BackupIdRequest) -> BackupShown:
        """One backup."""
        backups = self.node.backups
        return BackupShown.of(await backups.show(await backups.find(request.backup_id)))

    async def verify(self, request: BackupIdRequest, report: Report) -> BackupVerified:
        """Challenge every holder of a backup: how many shares each segment has reachable."""
        backups = self.node.backups
        verified = await backups.verify(await backups.find(request.backup_id), progress=report)
        return BackupVerified(
            backup_id=verified.backup_id.hex(),
            healthy=verified.healthy,
            min_available_shares=verified.min_available_shares,
            k=verified.k,
            n=verified.n,
            restorable=verified.restorable,
            segments=len(verified.available),
            short_segments=sum(1 for shares in verified.available if shares < verified.n),
            holders=tuple(
                {
                    "node_id": str(NodeId(holder.node)),
                    "shares": list(holder.shares),
                    "challenges": holder.challenges,
                    "passed": holder.passed,
                    "result": holder.outcome,
                    "detail": holder.detail,
                }
                for holder in verified.holders
            ),
        )

    async def restore(self, request: BackupRestoreRequest, report: Report) -> BackupRestored:
        """Restore a backup at a new path."""
        backups = self.node.backups
        backup_id = await backups.find(request.backup_id)
        result = await backups.restore(
            backup_id, Path(request.dest), partial=request.partial, progress=report
        )
        return BackupRestored(
            backup_id=backup_id.hex(),
            path=str(result.path),
            bytes=result.bytes_written,
            missing_segments=tuple(result.missing_segments),
            damaged=tuple(p.decode("utf-8", "surrogateescape") for p in result.damaged),
        )

    async def remove(self, request: BackupIdRequest) -> Document:
        """Delete a backup: its lease on every holder, then this node's record of it."""
        backups = self.node.backups
        backup_id = await backups.find(request.backup_id)
        freed = await backups.remove(backup_id)
        return Document({"removed": True, "backup_id": backup_id.hex(), "holders_told": freed})
