"""Reaching another node: ``ping``."""

from __future__ import annotations

from typing import Any

import click

from plexinode.cli.context import client
from plexinode.cli.nodeids import looks_like_node_id, node_id_argument
from plexinode.cli.output import emit
from plexinode.errors import NodeNotRunning, PlexinodeError
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
@click.option(
    "--node",
    "node_text",
    default=None,
    metavar="NODE_ID",
    help="Require the answer to come from this node ID (or a unique prefix of one).",
)
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

    TARGET is HOST:PORT (a name is resolved) or a node ID or a unique prefix of one (found
    through the DHT). Exit 1 with
    the reason when no ping is answered.
    """
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
        if not looks_like_node_id(target):
            raise click.BadParameter(str(address_error), param_hint="TARGET") from None
        try:
            args["node_id"] = node_id_argument(target, param_hint="TARGET")
        except NodeNotRunning:
            raise
        except PlexinodeError:
            raise PlexinodeError(
                f"{target!r} is not HOST:PORT and no node ID known to this node begins with it"
            ) from None
    if node_text is not None:
        wanted = node_id_argument(node_text, param_hint="--node")
        if args.setdefault("node_id", wanted) != wanted:
            raise click.BadParameter("TARGET is a node ID and --node names another one")
    # The node may take each ping's timeout, the waits, and a DHT lookup.
    per_round = (limit or 15.0) + float(args["interval_s"])
    result = client(timeout=60.0 + count * per_round).call("ping", **args)
    emit(result, _render)
