"""The network's replicated cluster state: ``state list``, ``state set``, ``state rm``."""

from __future__ import annotations

from typing import Any

import click

from plexinode.cli.context import client
from plexinode.cli.output import emit, table


@click.group()
def state() -> None:
    """The network's replicated cluster state: small settings every member holds a copy of."""


def _render_entries(rows: list[dict[str, Any]]) -> str:
    live = [r for r in rows if not r["deleted"]]
    if not live:
        return "the cluster state is empty"
    return table(
        [[r["key"], r["value"], r["writer"][:12], f"{r['written_at']:.0f}"] for r in live],
        ["key", "value", "writer", "written (unix s)"],
    )


@state.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include deleted keys (tombstones).")
def state_list(show_all: bool) -> None:
    """List the keys of the cluster state and their values."""
    rows: list[dict[str, Any]] = client().call("state_list")
    if not show_all:
        rows = [r for r in rows if not r["deleted"]]
    emit(rows, _render_entries(rows))


@state.command("set")
@click.argument("key")
@click.argument("value")
def state_set(key: str, value: str) -> None:
    """Set KEY to VALUE (text, at most 256 bytes) on every member of the network."""
    row = client().call("state_set", key=key, value=value)
    emit(row, f"{row['key']} = {row['value']} (spreading to every member)")


@state.command("rm")
@click.argument("key")
def state_rm(key: str) -> None:
    """Delete KEY on every member of the network."""
    row = client().call("state_set", key=key, value=None)
    emit(row, f"{row['key']} deleted (spreading to every member)")
