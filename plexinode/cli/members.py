"""The network's members as this node sees them: ``members``, and ``leave``."""

from __future__ import annotations

from typing import Any

import click

from plexinode.cli.context import client, options, wait_for_exit
from plexinode.cli.output import emit, table
from plexinode.cli.readable import short_ids, size

#: Tags with a column of their own in the text table (the `name` tag names the member), in
#: this order; the others are listed one per line in the last column.
_COLUMNS = ("name", "version", "capacity")


def render_members(rows: list[dict[str, Any]]) -> str:
    """The members as a table that fits 100 columns: short IDs, the `name` tag, a line per
    other tag (``--json`` has every value in full)."""
    short = short_ids(r["node_id"] for r in rows)
    cells = []
    for r in rows:
        tags: dict[str, str] = r["tags"]
        name = tags.get("name", "-") + (" (this node)" if r.get("self") else "")
        capacity = tags.get("capacity", "")
        others = [f"{k}={v}" for k, v in sorted(tags.items()) if k not in _COLUMNS]
        cells.append(
            [
                short[r["node_id"]],
                name,
                r["address"],
                r["state"],
                str(r["incarnation"]),
                tags.get("version", "-"),
                size(int(capacity)) if capacity.isdigit() else capacity or "-",
                "\n".join(others) or "-",
            ]
        )
    return table(
        cells,
        ["node", "name", "address", "state", "inc", "version", "capacity", "tags"],
        shrink=(7, 1, 2),
    )


@click.command(short_help="List the members of this node's network.")
def members() -> None:
    """List the members of this node's network and what this node believes of each."""
    rows: list[dict[str, Any]] = client().call("members")
    emit(rows, render_members(rows) if rows else "membership is not ready yet (no address known)")


@click.command(short_help="Leave the network gracefully, then stop.")
def leave() -> None:
    """Leave the network gracefully (other members see `left`, not `dead`), then stop."""
    result = client(timeout=60.0).call("leave")
    wait_for_exit(options().data_dir)
    emit(
        result,
        f"left the network ({result.get('acknowledged_by', 0)} members acknowledged); node stopped",
    )
