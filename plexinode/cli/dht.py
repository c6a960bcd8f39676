"""The DHT as an operator sees it: ``peers`` (the routing table) and ``dht get``."""

from __future__ import annotations

import time
from typing import Any

import click

from plexinode.cli.context import client
from plexinode.cli.nodeids import node_id_argument
from plexinode.cli.output import emit, table
from plexinode.cli.readable import ago, duration, short_ids


@click.command(short_help="List the DHT routing table.")
def peers() -> None:
    """List the DHT routing table: nodes this node has verified and can route through."""
    rows: list[dict[str, Any]] = client().call("peers")
    now = time.time()
    short = short_ids(r["node_id"] for r in rows)
    emit(
        rows,
        table(
            [[short[r["node_id"]], r["address"], ago(r["last_seen"], now)] for r in rows],
            ["node", "address", "last seen"],
            shrink=(1,),
        )
        if rows
        else "no peers yet",
    )


@click.group(short_help="Inspect the DHT: what the network holds under a key.")
def dht() -> None:
    """Inspect the DHT (for operators: what the network holds under a key)."""


@dht.command("get", short_help="Show the records of a type under a key.")
@click.option(
    "--type",
    "type_name",
    default="peer",
    show_default=True,
    help="Record type: peer (KEY is a node ID), provider or backups (KEY is 64 hex digits).",
)
@click.argument("key")
def dht_get(type_name: str, key: str) -> None:
    """Show the valid records of a type under KEY, from this node and the network.

    `plexinode dht get NODE_ID` shows which addresses the network has for a node, who signed
    them and when they expire: the first thing to look at when `ping NODE_ID` fails. A node ID
    may be shortened to a unique prefix (8 characters or more) of an ID this node knows.
    """
    from plexinode.dht.record_types import PEER, default_registry

    types = {t.name: t.code for t in default_registry().types()}
    if type_name not in types:
        raise click.BadParameter(
            f"unknown record type {type_name!r} (known: {', '.join(types)})", param_hint="--type"
        )
    if types[type_name] == PEER:
        key = node_id_argument(key, param_hint="KEY")
    elif not _is_hex(key, 32):
        raise click.BadParameter(f"a {type_name} key is 32 bytes: 64 hex digits", param_hint="KEY")
    result: dict[str, Any] = client(timeout=60.0).call("dht_get", type=type_name, key=key)
    rows = result["records"]

    def text(doc: dict[str, Any]) -> str:
        if not rows:
            return f"no {type_name} record found under {key}"
        short = short_ids(r["publisher"] for r in rows)
        return table(
            [
                [
                    short[r["publisher"]],
                    str(r["seq"]),
                    duration(r["expires_in_s"]),
                    "\n".join(r["addresses"]) if "addresses" in r else r["value"] or "-",
                ]
                for r in rows
            ],
            ["publisher", "seq", "expires in", "addresses" if type_name == "peer" else "value"],
        )

    emit(result, text)


def _is_hex(text: str, size: int) -> bool:
    """Whether `text` is `size` bytes written as hex digits."""
    try:
        return len(bytes.fromhex(text)) == size
    except ValueError:
        return False
