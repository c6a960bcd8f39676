"""The running node itself: ``status``, ``stop``, ``id``."""

from __future__ import annotations

from typing import Any

import click

from plexinode.cli.context import client, options, wait_for_exit
from plexinode.cli.output import emit
from plexinode.cli.readable import duration, size

#: The member states ``status`` names first, in this order; any other state it reports
#: follows them.
_STATES = ("alive", "suspect", "dead", "left")


def _render_status(d: dict[str, Any]) -> str:
    members: dict[str, int] = d["members"]
    storage = d["storage"]
    states = [*_STATES, *(s for s in members if s not in _STATES)]
    address = f"{d['address']} (udp+tcp)" if d["address"] else "none yet"
    return "\n".join(
        [
            f"node      {d['node_id']}",
            f"version   {d['version']}",
            f"network   {d['network']}",
            f"address   {address}",
            f"uptime    {duration(d['uptime_s'])}",
            f"peers     {d['peers']}",
            "members   " + ", ".join(f"{members.get(s, 0)} {s}" for s in states),
            f"storage   {size(storage['used_bytes'])} of {size(storage['quota_bytes'])}"
            + (f", repair backlog {backlog}" if (backlog := storage.get("repair_backlog")) else ""),
        ]
    )


@click.command(short_help="Show the running node's status.")
def status() -> None:
    """Show the running node's status (exit 3 if none is running). `--json` has every
    counter."""
    emit(client().call("status"), _render_status)


@click.command(short_help="Stop the running node gracefully.")
def stop() -> None:
    """Stop the running node gracefully; returns once it has exited."""
    client().call("stop")
    wait_for_exit(options().data_dir)
    emit({"stopped": True}, "node stopped")


@click.command("id", short_help="Print this node's ID.")
def show_id() -> None:
    """Print this node's ID (read from the data dir; no running node needed). With --json, its
    public key too: what an admin grants a role to (`network grant member PUBLIC_KEY`)."""
    from plexinode.identity import load_identity_file

    identity = load_identity_file(options().data_dir)
    emit(
        {"node_id": str(identity.node_id), "public_key": identity.public_key.hex()},
        lambda d: str(d["node_id"]),
    )
