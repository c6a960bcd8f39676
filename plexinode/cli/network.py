"""This node's network: ``invite``, ``join``, and ``network key ...`` / ``network revoke``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from plexinode.cli.authority import admin_key_option
from plexinode.cli.context import client, options
from plexinode.cli.output import emit, note
from plexinode.cli.readable import duration, local_time

#: The argument that reads a token from standard input.
STDIN = "-"
#: A key id: 12 hex digits (plexinode.net.keyring.key_id); a key: 64.
_KEY_ID_DIGITS = 12
_KEY_DIGITS = 64
#: ``invite --expires``'s range, seconds: a shorter ticket would expire before it could be
#: copied to the joiner (the admin command itself takes any positive lifetime), a longer one
#: stays usable by whoever finds it long after it was needed.
MIN_INVITE_LIFETIME = 60
MAX_INVITE_LIFETIME = 30 * 86_400


@click.command(short_help="Print a ticket or token that lets another node join.")
@click.option(
    "--expires",
    default="24h",
    show_default=True,
    metavar="DURATION",
    help="How long it stays valid (15m, 24h, 7d; at least 1m, at most 30d).",
)
@click.option(
    "--admin-key",
    "admin_key",
    default=None,
    metavar="FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Private network: an admin key lets this node admit the joiner until the ticket expires.",
)
def invite(expires: str, admin_key: Path | None) -> None:
    """Print one line that lets another node join this node's network: on a private network a
    single-use ticket (this node needs the inviter or admin role, or --admin-key), on an open
    network a reusable invite token. Neither holds a network key."""
    from plexinode.config import parse_duration

    try:
        seconds = parse_duration(expires)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--expires") from None
    if not MIN_INVITE_LIFETIME <= seconds <= MAX_INVITE_LIFETIME:
        raise click.BadParameter("must be at least 1m and at most 30d", param_hint="--expires")
    if admin_key is not None:
        from plexinode.cli.authority import delegate_inviting

        delegate_inviting(admin_key, int(seconds))
    result = client().call("invite", expires=seconds)
    if not options().json:
        left = duration(result["expires"] - time.time())
        note(f"valid until {local_time(result['expires'])} (for {left})")
    emit(result, lambda d: str(d["token"]))


@click.command(short_help="Join the network of an invite token or a ticket.")
@click.argument("token", required=False)
@click.option("--file", "file", default=None, metavar="FILE", help="Read the token from FILE.")
def join(token: str | None, file: str | None) -> None:
    """Join the network of TOKEN now (an invite token or a ticket), through its inviter, and
    remember it. `join -` reads the token from standard input, `join --file FILE` from a file,
    so that it never appears in a command line."""
    from plexinode.cli.start import read_token

    if token is None and file is None:
        raise click.UsageError("give the token, '-' (standard input) or --file FILE")
    if token is not None and file is not None:
        raise click.UsageError(
            "give one of the token, '-' (standard input) or --file FILE, not both"
        )
    source = file if file is not None else token if token == STDIN else None
    if source is not None:
        token = read_token(source)
    result = client(timeout=120.0).call("join", token=token)
    emit(
        result,
        lambda d: (
            f"joined network {d['network']}: {d['bootstrapped']} DHT contacts, "
            f"{d['members']} members known"
        ),
    )


@click.group(short_help="This node's network: its keys, and who may have them.")
def network() -> None:
    """This node's network: its keys, and who may have them."""


@network.group("key", short_help="The network keys: list, generate, install, use, remove.")
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


def _key_argument(key: str, *, ids: bool) -> str:
    """`key` checked: 64 hex digits, or (where `ids`) a key id of 12."""
    digits = key.strip().lower()
    sizes = (_KEY_ID_DIGITS, _KEY_DIGITS) if ids else (_KEY_DIGITS,)
    if len(digits) not in sizes or any(c not in "0123456789abcdef" for c in digits):
        expected = "a key id (12 hex digits) or a key (64)" if ids else "a key: 64 hex digits"
        raise click.BadParameter(f"expected {expected}, not {key!r}", param_hint="KEY")
    return key


@network_key.command("list", short_help="List the installed keys and which one is primary.")
def network_key_list() -> None:
    """List the installed keys (their ids, never the keys) and which one is primary."""
    emit(client().call("network_key", action="list"), _render_keys)


@network_key.command("generate", short_help="Print a new random network key.")
def network_key_generate() -> None:
    """Print a new random network key (64 hex digits), to install on every member."""
    import os

    from plexinode.net.keyring import NETWORK_KEY_BYTES, key_id

    key = os.urandom(NETWORK_KEY_BYTES)
    emit({"key": key.hex(), "key_id": key_id(key)}, lambda d: str(d["key"]))


@network_key.command("install", short_help="Step 1: every member accepts KEY as well.")
@click.argument("key")
def network_key_install(key: str) -> None:
    """Step 1: every member accepts KEY (64 hex digits) as well (it is sent to each, sealed)."""
    key = _key_argument(key, ids=False)
    emit(client().call("network_key", action="install", key=key), _render_keys)


@network_key.command("use", short_help="Step 2: every member sends with KEY.")
@click.argument("key")
@click.option("--force", is_flag=True, help="Even if some live members have not received KEY yet.")
def network_key_use(key: str, force: bool) -> None:
    """Step 2: every member sends with KEY (a key id or the key) from now on."""
    key = _key_argument(key, ids=True)
    emit(client().call("network_key", action="use", key=key, force=force), _render_keys)


@network_key.command("remove", short_help="Step 3: every member stops accepting KEY.")
@click.argument("key")
def network_key_remove(key: str) -> None:
    """Step 3: every member stops accepting KEY (a key id or the key)."""
    key = _key_argument(key, ids=True)
    emit(client().call("network_key", action="remove", key=key), _render_keys)


@network.command("revoke", short_help="Take NODE_ID out of the network for good.")
@click.argument("node_id")
@admin_key_option
@click.option("--void", is_flag=True, help="Also void every grant and revocation it signed.")
def network_revoke(node_id: str, admin_key: Path | None, void: bool) -> None:
    """Take NODE_ID out of the private network for good: members stop hearing it at once and
    never hand it a network key again (then rotate the keys). The revocation is signed with an
    admin key and no later grant undoes it; only a --void revocation of the admin key that
    signed it (by the root, for a stolen admin key) makes it fall.

    NODE_ID may be shortened to a unique prefix (8 characters or more) of an ID this node
    knows, or be a public key (64 hex digits), e.g. an admin key file's.
    """
    from plexinode.cli.authority import is_public_key, revoke_with_key, subject_argument

    if not is_public_key(node_id):
        node_id = subject_argument(node_id, param_hint="NODE_ID")
    emit(
        revoke_with_key(node_id, admin_key, void),
        lambda d: (
            f"revoked {d['node_id']}: no member hands it a network key again "
            "(rotate the keys to cut it off: `network key install`, `use`, `remove`)"
        ),
    )


def _add_authority_commands() -> None:
    from plexinode.cli import authority

    for command in (authority.admin_key, authority.grant, authority.admit):
        network.add_command(command)


_add_authority_commands()
