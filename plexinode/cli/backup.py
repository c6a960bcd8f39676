"""``backup create|list|show|verify|restore|rm``: the owner's backups (docs/cli.md, "backup")."""

from __future__ import annotations

import os
from typing import Any

import click

from plexinode.cli.context import client, options
from plexinode.cli.output import emit
from plexinode.cli.progress import shown
from plexinode.cli.readable import local_time, short_ids, size, table

#: How long the CLI waits for a backup or restore: they take as long as the data does.
LONG_CALL = 7 * 86_400.0
#: How long the CLI waits for a verify: kilobytes per holder, every exchange under a deadline
#: (shards/deadlines.py), so minutes even with every holder stalling; an hour leaves room.
VERIFY_CALL = 3600.0


def _absolute(path: str) -> str:
    """`path` as the node must see it: absolute, from where the operator typed it."""
    return os.path.abspath(os.path.expanduser(path))


@click.group(short_help="Back up files to the network's members, and restore them.")
def backup() -> None:
    """Encrypted, erasure-coded backups spread over the network's members (k of n shares
    restore one), listed, shown, restored and removed from this node."""


@backup.command(short_help="Back up a file or a directory.")
@click.argument("path", type=click.Path(exists=True, file_okay=True, dir_okay=True))
@click.option(
    "-k",
    "k",
    default=3,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Shares any restore needs.",
)
@click.option(
    "-n",
    "n",
    default=10,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Shares made (one per holder).",
)
@click.option(
    "--happy",
    default=None,
    type=click.IntRange(1, 256),
    metavar="H",
    help="Distinct holders a backup needs to succeed (default: 70% of n, at least k).",
)
@click.option(
    "--name",
    default=None,
    metavar="NAME",
    help="The backup's name (default: the file or directory's name).",
)
def create(path: str, k: int, n: int, happy: int | None, name: str | None) -> None:
    """Back up PATH (a file, or a directory with its names, modes and times): encrypted on this
    node, cut into segments, each erasure-coded into n shares of which any k restore it, placed
    on n distinct members. Fails, naming how many members were found, when fewer than the
    happiness accept shares. Progress goes to stderr (docs/cli.md, "Progress")."""
    if k > n:
        raise click.BadParameter(f"k ({k}) must not exceed n ({n})", param_hint="-k")
    if happy is not None and not k <= happy <= n:
        raise click.BadParameter(f"must be within k..n ({k}..{n})", param_hint="--happy")
    args: dict[str, Any] = {"path": _absolute(path), "k": k, "n": n}
    if happy is not None:
        args["happy"] = happy
    if name is not None:
        args["name"] = name
    with shown(
        options().json,
        "interrupted; the node goes on with the backup (`plexinode backup list` shows it once"
        " it is complete)",
    ) as progress:
        result = client(timeout=LONG_CALL).call("backup_create", on_progress=progress, **args)
    emit(
        result,
        lambda d: (
            f"backup {d['backup_id']}: {size(d['bytes'])} in {d['segments']} segments, "
            f"{d['k']} of {d['n']} shares on {len(d['holders'])} holders, "
            f"{size(d['bytes_sent'])} sent"
        ),
    )


@backup.command(name="list", short_help="List this node's backups.")
def list_() -> None:
    """List the complete backups this node made, oldest first."""
    rows = client().call("backup_list")

    def text(rows: list[dict[str, Any]]) -> str:
        if not rows:
            return "no backups"
        return table(
            [
                [
                    r["backup_id"][:12],
                    r["name"],
                    size(r["bytes"]),
                    f"{r['k']}/{r['n']}",
                    local_time(r["created"]),
                ]
                for r in rows
            ],
            ["ID", "NAME", "SIZE", "K/N", "CREATED"],
        )

    emit(rows, text)


@backup.command(short_help="Show one backup.")
@click.argument("backup_id", metavar="BACKUP_ID")
def show(backup_id: str) -> None:
    """Show BACKUP_ID (its 32 hex digits, or a unique prefix of at least 8): its size, code,
    segments, holders and lease."""
    shown = client().call("backup_show", backup_id=backup_id)

    def text(d: dict[str, Any]) -> str:
        short = short_ids(d["holders"])
        return "\n".join(
            [
                f"backup    {d['backup_id']}",
                f"name      {d['name']} (from {d['source']})",
                f"size      {size(d['bytes'])} in {d['segments']} segments",
                f"code      {d['k']} of {d['n']} shares, happiness {d['happy']}",
                f"holders   {' '.join(short[h] for h in d['holders'])}",
                f"created   {local_time(d['created'])}",
                f"lease     until {local_time(d['lease_expires'])}",
            ]
        )

    emit(shown, text)


@backup.command(short_help="Check that a backup's holders still have its shares.")
@click.argument("backup_id", metavar="BACKUP_ID")
def verify(backup_id: str) -> None:
    """Challenge every holder of BACKUP_ID to prove, with a few leaves of a sample of its
    blocks and their Merkle paths, that it still holds its shares (kilobytes per holder, not
    the backup). A holder that does not answer or proves something else counts as missing
    for every segment it holds. Healthy means every segment has all n shares reachable; the
    command succeeds either way (read "healthy" in --json). Progress goes to stderr."""
    with shown(options().json, "interrupted; the node finishes the verify on its own") as progress:
        result = client(timeout=VERIFY_CALL).call(
            "backup_verify", on_progress=progress, backup_id=backup_id
        )

    def text(d: dict[str, Any]) -> str:
        if d["healthy"]:
            head = f"healthy: every segment has all {d['n']} shares reachable (k = {d['k']})"
        else:
            state = "still restorable" if d["restorable"] else "NOT restorable"
            head = (
                f"NOT healthy: {d['short_segments']} of {d['segments']} segments have fewer "
                f"than {d['n']} shares reachable, the worst {d['min_available_shares']} "
                f"(k = {d['k']}: {state})"
            )
        short = short_ids(h["node_id"] for h in d["holders"])
        rows = [
            [
                short[h["node_id"]],
                ",".join(map(str, h["shares"])),
                f"{h['passed']}/{h['challenges']}",
                h["result"] + (f": {h['detail']}" if h["detail"] else ""),
            ]
            for h in d["holders"]
        ]
        holders = table(rows, ["HOLDER", "SHARES", "PROVED", "RESULT"])
        return f"backup {d['backup_id']}: {head}\n{holders}"

    emit(result, text)


@backup.command(short_help="Restore a backup to a new path.")
@click.argument("backup_id", metavar="BACKUP_ID")
@click.argument("dest", metavar="DEST")
@click.option(
    "--partial",
    is_flag=True,
    help="Restore what can be, leaving out (and naming) files whose segments cannot be fetched.",
)
def restore(backup_id: str, dest: str, partial: bool) -> None:
    """Restore BACKUP_ID at DEST, which must not exist: every block checked against the
    owner-signed manifest, written under a temporary name, then renamed into place. Without
    --partial, a segment with fewer than k shares reachable fails the restore, naming the
    segments and files affected, and DEST is not created. Progress goes to stderr."""
    path = _absolute(dest)
    if os.path.lexists(path):
        raise click.BadParameter(
            f"{path} already exists; a restore never overwrites", param_hint="DEST"
        )
    with shown(
        options().json,
        f"interrupted; the node goes on with the restore ({path} appears once it is complete)",
    ) as progress:
        result = client(timeout=LONG_CALL).call(
            "backup_restore", on_progress=progress, backup_id=backup_id, dest=path, partial=partial
        )

    def text(d: dict[str, Any]) -> str:
        line = f"restored {size(d['bytes'])} to {d['path']}"
        if d["damaged"]:
            line += f"; left out {len(d['damaged'])} files: " + ", ".join(d["damaged"][:5])
        return line

    emit(result, text)


@backup.command(name="rm", short_help="Delete a backup everywhere.")
@click.argument("backup_id", metavar="BACKUP_ID")
def rm(backup_id: str) -> None:
    """Delete BACKUP_ID: every holder drops its lease (freeing the shares no other backup of
    this node uses), then this node forgets it."""
    result = client(timeout=300.0).call("backup_rm", backup_id=backup_id)
    emit(
        {"removed": result["removed"], "backup_id": result["backup_id"]},
        lambda d: f"removed backup {d['backup_id']}",
    )
