"""The network's members as this node sees them: ``members``, and ``leave``."""

from __future__ import annotations

from typing import Any

import click

from plexinode.cli.context import client, options, wait_for_exit
from plexinode.cli.output import emit, table


@click.command()
def members() -> None:
    """List the members of this node's network and what this node believes of each."""
    rows: list[dict[str, Any]] = client().call("members")

    def text(rows: list[dict[str, Any]]) -> str:
        return table(
            [
                [
                    r["node_id"] + (" (this node)" if r.get("self") else ""),
                    r["address"],
                    r["state"],
                    str(r["incarnation"]),
                    ",".join(f"{k}={v}" for k, v in sorted(r["tags"].items())),
                ]
                for r in rows
            ],
            ["node_id", "address", "state", "incarnation", "tags"],
        )

    emit(rows, text(rows) if rows else "membership is not ready yet (no address known)")


@click.command()
def leave() -> None:
    """Leave the network gracefully (other members see `left`, not `dead`), then stop."""
    result = client(timeout=60.0).call("leave")
    wait_for_exit(options().data_dir)
    emit(
        result,
        f"left the network ({result.get('acknowledged_by', 0)} members acknowledged); node stopped",
    )
