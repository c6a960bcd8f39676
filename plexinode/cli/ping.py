"""Reaching another node: ``ping``."""

from __future__ import annotations

from typing import Any

import click

from plexinode.cli.context import client
from plexinode.cli.output import emit
from plexinode.errors import IdentityError
from plexinode.net.address import Address


@click.command()
@click.argument("target")
@click.option("--stream", "via_stream", is_flag=True, help="Ping over a secure TCP stream.")
@click.option("--node", "node_text", default=None, help="Require the answer to come from this ID.")
def ping(target: str, via_stream: bool, node_text: str | None) -> None:
    """Authenticate another node and measure the round trip. TARGET is HOST:PORT or a node ID."""
    from plexinode.identity import NodeId

    args: dict[str, Any] = {"via": "stream" if via_stream else "datagram"}
    try:
        args["address"] = str(Address.parse(target))
    except ValueError as address_error:
        try:
            args["node_id"] = str(NodeId.parse(target))
        except IdentityError as id_error:
            hint = id_error if len("".join(target.split()).replace("-", "")) > 50 else address_error
            raise click.BadParameter(str(hint), param_hint="TARGET") from None
    if node_text is not None:
        wanted = str(NodeId.parse(node_text))  # fail early, here, on a mistyped ID
        if args.setdefault("node_id", wanted) != wanted:
            raise click.BadParameter("TARGET is a node ID and --node names another one")
    result = client(timeout=60.0).call("ping", **args)
    emit(result, lambda d: f"{d['node_id']} at {d['address']}: {d['rtt_ms']:.2f} ms ({d['via']})")
