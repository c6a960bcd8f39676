"""Reaching another node: ``ping``."""

from __future__ import annotations

from typing import Any

import click

from plexinode.cli.context import client
from plexinode.cli.output import emit
from plexinode.errors import IdentityError
from plexinode.net.address import Address

#: Most rounds one ``ping`` runs (plexinode.net.pinging.MAX_COUNT, not imported: it loads trio).
MAX_COUNT = 1000


def _seconds(text: str | None, option: str) -> float | None:
    from plexinode.config import parse_duration

    if text is None:
        return None
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None
    if seconds <= 0 and option == "--timeout":
        raise click.BadParameter("must be above 0", param_hint=option)
    return seconds


def _render(d: dict[str, Any]) -> str:
    line = f"{d['node_id']} at {d['address']}: {d['rtt_ms']:.2f} ms ({d['via']})"
    if d["sent"] > 1:
        rtts = d["rtts_ms"]
        lost = d["sent"] - d["received"]
        line += (
            f"\n{d['sent']} sent, {d['received']} answered ({100 * lost / d['sent']:.0f}% lost); "
            f"round trip min/median/max {min(rtts):.2f}/{d['rtt_ms']:.2f}/{max(rtts):.2f} ms"
        )
    return line


@click.command()
@click.argument("target")
@click.option("--stream", "via_stream", is_flag=True, help="Ping over a secure TCP stream.")
@click.option("--node", "node_text", default=None, help="Require the answer to come from this ID.")
@click.option(
    "--count",
    "-c",
    type=click.IntRange(1, MAX_COUNT),
    default=1,
    show_default=True,
    help="How many pings to send.",
)
@click.option(
    "--interval",
    default="1s",
    show_default=True,
    metavar="DURATION",
    help="Wait between pings (with --count).",
)
@click.option(
    "--timeout",
    default=None,
    metavar="DURATION",
    help="How long each ping may take [default: the datagram retries, about 6s].",
)
def ping(
    target: str,
    *,
    via_stream: bool,
    node_text: str | None,
    count: int,
    interval: str,
    timeout: str | None,
) -> None:
    """Authenticate another node and measure the round trip.

    TARGET is HOST:PORT (a name is resolved) or a node ID (found through the DHT). Exit 1 with
    the reason when no ping is answered.
    """
    from plexinode.identity import NodeId

    args: dict[str, Any] = {
        "via": "stream" if via_stream else "datagram",
        "count": count,
        "interval_s": _seconds(interval, "--interval"),
    }
    limit = _seconds(timeout, "--timeout")
    if limit is not None:
        args["timeout_s"] = limit
    try:
        args["address"] = str(Address.parse(target))
    except ValueError as address_error:
        try:
            args["node_id"] = str(NodeId.parse(target))
        except IdentityError as id_error:
            hint = id_error if len("".join(target.split()).replace("-", "")) > 50 else address_error
            raise click.BadParameter(str(hint), param_hint="TARGET") from None
    if node_text is not None:
        try:
            wanted = str(NodeId.parse(node_text))  # fail early, here, on a mistyped ID
        except IdentityError as exc:
            raise click.BadParameter(str(exc), param_hint="--node") from None
        if args.setdefault("node_id", wanted) != wanted:
            raise click.BadParameter("TARGET is a node ID and --node names another one")
    # The node may take each ping's timeout, the waits, and a DHT lookup.
    per_round = (limit or 15.0) + float(args["interval_s"])
    result = client(timeout=60.0 + count * per_round).call("ping", **args)
    emit(result, _render)
