"""The network's replicated cluster state: ``state list``, ``state set``, ``state rm``."""

from __future__ import annotations

import time
from typing import Any

import click

from plexinode.cli.context import client
from plexinode.cli.output import emit, table
from plexinode.cli.readable import ago, short_ids


@click.group(short_help="The network's replicated cluster state.")
def state() -> None:
    """The network's replicated cluster state: small settings every member holds a copy of."""


def render_entries(rows: list[dict[str, Any]], hidden: int = 0) -> str:
    """The entries as a table, deleted ones (tombstones) included if `rows` holds them;
    `hidden` deleted keys were left out."""
    if not rows:
        if hidden:
            return f"the cluster state is empty ({hidden} deleted keys: `state list --all`)"
        return "the cluster state is empty"
    now = time.time()
    short = short_ids(r["writer"] for r in rows)
    return table(
        [
            [
                r["key"],
                "(deleted)" if r["deleted"] else r["value"],
                short[r["writer"]],
                ago(r["written_at"], now),
            ]
            for r in rows
        ],
        ["key", "value", "writer", "written"],
        shrink=(1, 0),
    )


@state.command("list", short_help="List the keys of the cluster state.")
@click.option("--all", "show_all", is_flag=True, help="Include deleted keys (tombstones).")
def state_list(show_all: bool) -> None:
    """List the keys of the cluster state and their values (`--all`: deleted keys too)."""
    rows: list[dict[str, Any]] = client().call("state_list")
    shown = rows if show_all else [r for r in rows if not r["deleted"]]
    emit(shown, render_entries(shown, hidden=len(rows) - len(shown)))


def _check_key(key: str) -> None:
    from plexinode.membership.state import KEY_PATTERN, MAX_KEY

    if not KEY_PATTERN.fullmatch(key):
        raise click.BadParameter(
            f"a state key is 1-{MAX_KEY} characters of a-z, 0-9, '.', '_', '/', '-' "
            f"(starting with a letter or digit), not {key!r}",
            param_hint="KEY",
        )


@state.command("set", short_help="Set a key on every member of the network.")
@click.argument("key")
@click.argument("value")
def state_set(key: str, value: str) -> None:
    """Set KEY to VALUE (text, at most 256 bytes) on every member of the network."""
    from plexinode.membership.state import MAX_VALUE

    _check_key(key)
    if len(value.encode()) > MAX_VALUE:
        raise click.BadParameter(
            f"a state value is at most {MAX_VALUE} bytes, not {len(value.encode())}",
            param_hint="VALUE",
        )
    row = client().call("state_set", key=key, value=value)
    emit(row, f"{row['key']} = {row['value']} (spreading to every member)")


@state.command("rm", short_help="Delete a key on every member of the network.")
@click.argument("key")
def state_rm(key: str) -> None:
    """Delete KEY on every member of the network (exit 1 if the cluster state has no KEY)."""
    _check_key(key)
    row = client().call("state_set", key=key, value=None)
    emit(row, f"{row['key']} deleted (spreading to every member)")
