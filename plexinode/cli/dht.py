"""The DHT as an operator sees it: ``peers`` (the routing table) and ``dht get``."""

from __future__ import annotations

import time
from typing import Any

import click

from plexinode.cli.context import client
from plexinode.cli.output import emit, table


@click.command()
def peers() -> None:
    """List the DHT routing table: nodes this node has verified and can route through."""
    rows: list[dict[str, Any]] = client().call("peers")
    now = time.time()
    emit(
        rows,
        table(
            [
                [r["node_id"], r["address"], f"{max(0.0, now - r['last_seen']):.0f}s ago"]
                for r in rows
            ],
            ["node_id", "address", "last seen"],
        )
        if rows
        else "no peers yet",
    )


@click.group()
def dht() -> None:
    """Inspect the DHT (for operators: what the network holds under a key)."""


@dht.command("get")
@click.option(
    "--type",
    "type_name",
    default="peer",
    show_default=True,
    help="Record type: peer (KEY is a node ID) or provider (KEY is 64 hex digits).",
)
@click.argument("key")
def dht_get(type_name: str, key: str) -> None:
    """Show the valid records of a type under KEY, from this node and the network.

    `plexinode dht get NODE_ID` shows which addresses the network has for a node, who signed
    them and when they expire: the first thing to look at when `ping NODE_ID` fails.
    """
    result: dict[str, Any] = client(timeout=60.0).call("dht_get", type=type_name, key=key)
    rows = result["records"]

    def text(doc: dict[str, Any]) -> str:
        if not rows:
            return f"no {type_name} record found under {key}"
        return table(
            [
                [
                    r["publisher"],
                    str(r["seq"]),
                    f"{r['expires_in_s']:.0f}s",
                    ", ".join(r["addresses"]) if "addresses" in r else r["value"] or "-",
                ]
                for r in rows
            ],
            ["publisher", "seq", "expires in", "addresses" if type_name == "peer" else "value"],
        )

    emit(result, text)
