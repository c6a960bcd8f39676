"""This node's network: ``invite``, ``join``, and ``network key ...`` / ``network revoke``."""

from __future__ import annotations

from typing import Any

import click

from plexinode.cli.context import client
from plexinode.cli.output import emit


@click.command()
@click.option(
    "--expires",
    default="24h",
    show_default=True,
    metavar="DURATION",
    help="How long the token stays valid (30s, 15m, 24h, 7d; at most 30d).",
)
def invite(expires: str) -> None:
    """Print a one-line token that lets another node join this node's network."""
    from plexinode.config import parse_duration

    try:
        seconds = parse_duration(expires)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--expires") from None
    if not 0 < seconds <= 30 * 86_400:
        raise click.BadParameter("must be above 0 and at most 30d", param_hint="--expires")
    result = client().call("invite", expires=seconds)
    emit(result, lambda d: str(d["token"]))


@click.command()
@click.argument("token")
def join(token: str) -> None:
    """Join the network of an invite TOKEN now, through the inviter, and remember it."""
    result = client(timeout=120.0).call("join", token=token)
    emit(
        result,
        lambda d: (
            f"joined network {d['network']}: {d['bootstrapped']} DHT contacts, "
            f"{d['members']} members known"
        ),
    )


@click.group()
def network() -> None:
    """This node's network: its keys, and who may have them."""


@network.group("key")
def network_key() -> None:
    """The network keys: datagrams and streams from nodes without one of them are dropped."""


def _render_keys(doc: dict[str, Any]) -> str:
    kind = "private" if doc["private"] else "open (its key is derived from its name)"
    lines = [f"network {doc['network']}: {kind}"]
    for k in doc["keys"]:
        if k["retired"]:
            lines.append(f"  {k['key_id']}  retired")
            continue
        role = "primary" if k["primary"] else "       "
        spread = ""
        if "members" in k:
            spread = (
                f"  installed on {k['holders']}/{k['members']} live members,"
                f" primary on {k['senders']}"
            )
        lines.append(f"  {k['key_id']}  {role}{spread}")
    for pending in doc.get("pending", []):
        lines.append(f"  {pending}  in the network's plan, not received here yet")
    return "\n".join(lines)


@network_key.command("list")
def network_key_list() -> None:
    """List the installed keys (their ids, never the keys) and which one is primary."""
    emit(client().call("network_key", action="list"), _render_keys)


@network_key.command("generate")
def network_key_generate() -> None:
    """Print a new random network key (64 hex digits), to install on every member."""
    import os

    from plexinode.net.keyring import NETWORK_KEY_BYTES, key_id

    key = os.urandom(NETWORK_KEY_BYTES)
    emit({"key": key.hex(), "key_id": key_id(key)}, lambda d: str(d["key"]))


@network_key.command("install")
@click.argument("key")
def network_key_install(key: str) -> None:
    """Step 1: every member accepts KEY (64 hex digits) as well (it is sent to each, sealed)."""
    emit(client().call("network_key", action="install", key=key), _render_keys)


@network_key.command("use")
@click.argument("key")
@click.option("--force", is_flag=True, help="Even if some live members have not received KEY yet.")
def network_key_use(key: str, force: bool) -> None:
    """Step 2: every member sends with KEY (a key id or the key) from now on."""
    emit(client().call("network_key", action="use", key=key, force=force), _render_keys)


@network_key.command("remove")
@click.argument("key")
def network_key_remove(key: str) -> None:
    """Step 3: every member stops accepting KEY (a key id or the key)."""
    emit(client().call("network_key", action="remove", key=key), _render_keys)


@network.command("revoke")
@click.argument("node_id")
def network_revoke(node_id: str) -> None:
    """No member hands NODE_ID a network key again; then rotate the keys to cut it off."""
    emit(client().call("revoke", node_id=node_id), lambda d: f"revoked {d['revoked']}")
