"""The running node itself: ``status``, ``stop``, ``id``."""

from __future__ import annotations

from typing import Any

import click

from plexinode.cli.context import client, options, wait_for_exit
from plexinode.cli.output import emit


def _render_status(d: dict[str, Any]) -> str:
    members = d["members"]
    storage = d["storage"]
    return "\n".join(
        [
            f"node      {d['node_id']}",
            f"version   {d['version']}",
            f"network   {d['network']}",
            f"address   {d['address']} (udp+tcp)",
            f"uptime    {d['uptime_s']:.0f}s",
            f"peers     {d['peers']}",
            f"members   {members['alive']} alive, {members['suspect']} suspect, "
            f"{members['dead']} dead, {members.get('left', 0)} left",
            f"storage   {storage['used_bytes']} of {storage['quota_bytes']} bytes",
        ]
    )


@click.command()
def status() -> None:
    """Show the running node's status (exit 3 if none is running)."""
    emit(client().call("status"), _render_status)


@click.command()
def stop() -> None:
    """Stop the running node gracefully; returns once it has exited."""
    client().call("stop")
    wait_for_exit(options().data_dir)
    emit({"stopped": True}, "node stopped")


@click.command("id")
def show_id() -> None:
    """Print this node's ID (read from the data dir; no running node needed)."""
    from plexinode.identity import load_identity_file

    identity = load_identity_file(options().data_dir)
    emit({"node_id": str(identity.node_id)}, lambda d: str(d["node_id"]))
