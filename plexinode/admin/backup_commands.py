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
from plexinode.admin.server import Command
from plexinode.admin.typed import typed
from plexinode.identity import NodeId

if TYPE_CHECKING:
    from plexinode.node import Node


class BackupCommands:
    """``backup create|list|show|verify|restore|rm`` (docs/cli.md)."""

    def __init__(self, node: Node) -> None:
        self.node = node

    def table(self) -> dict[str, Command]:
        """The commands, for the admin server."""
        return {
            "backup_create": typed("backup_create", BackupCreateRequest, self.create),
            "backup_list": typed("backup_list", NoArguments, self.listing),
            "backup_show": typed("backup_show", BackupIdRequest, self.show),
            "backup_verify": typed("backup_verify", BackupIdRequest, self.verify),
            "backup_restore": typed("backup_restore", BackupRestoreRequest, self.restore),
            "backup_rm": typed("backup_rm", BackupIdRequest, self.remove),
        }

    async def create(self, request: BackupCreateRequest) -> BackupCreated:
        """Back up a file or directory among the network's members."""
        created = await self.node.backups.create(
            Path(request.path), k=request.k, n=request.n, happy=request.happy, name=request.name
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

    async def verify(self, request: BackupIdRequest) -> BackupVerified:
        """Challenge every holder of a backup: how many shares each segment has reachable."""
        backups = self.node.backups
        report = await backups.verify(await backups.find(request.backup_id))
        return BackupVerified(
            backup_id=report.backup_id.hex(),
            healthy=report.healthy,
            min_available_shares=report.min_available_shares,
            k=report.k,
            n=report.n,
            restorable=report.restorable,
            segments=len(report.available),
            short_segments=sum(1 for shares in report.available if shares < report.n),
            holders=tuple(
                {
                    "node_id": str(NodeId(holder.node)),
                    "shares": list(holder.shares),
                    "challenges": holder.challenges,
                    "passed": holder.passed,
                    "result": holder.outcome,
                    "detail": holder.detail,
                }
                for holder in report.holders
            ),
        )

    async def restore(self, request: BackupRestoreRequest) -> BackupRestored:
        """Restore a backup at a new path."""
        backups = self.node.backups
        backup_id = await backups.find(request.backup_id)
        result = await backups.restore(backup_id, Path(request.dest), partial=request.partial)
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
