"""Node commands: init, start, status, stop, id, ping, config show."""

from __future__ import annotations

import time
from typing import Any

import click

from plexinode import datadir
from plexinode.admin.client import AdminClient
from plexinode.cli.main import Globals, cli
from plexinode.cli.output import emit, note, table
from plexinode.errors import IdentityError, PlexinodeError
from plexinode.net.address import Address

# The heavy modules (trio, the node, PyNaCl, the config schema) are imported inside the commands
# that need them, so that `status`, `stop` and `ping`, which only talk to the admin socket, start
# fast (see scripts/bench/bench_cli.py).

#: How long `stop` waits for the node process to exit after it acknowledged the request.
STOP_WAIT = 15.0


def _globals() -> Globals:
    obj: Globals = click.get_current_context().find_root().obj
    return obj


@cli.command()
@click.option(
    "--network",
    default=None,
    help="Create a private network of this name (with a new network key) for this node.",
)
def init(network: str | None) -> None:
    """Create this node's identity and config (never overwrites an identity)."""
    from plexinode.identity import key_path

    g = _globals()
    if key_path(g.data_dir).exists():
        raise IdentityError(
            f"{key_path(g.data_dir)} already exists: refusing to overwrite this node's identity"
        )
    from plexinode.daemon import initialise

    identity = initialise(g.data_dir, network, {}, note)
    doc: dict[str, Any] = {"node_id": str(identity.node_id), "data_dir": str(g.data_dir)}
    if network is not None:
        # A named network is a private one: its first member makes its key. Others get it in
        # an invite (`plexinode invite`).
        from plexinode.net.keyring import Keyring, key_id, keyring_path, save_keyring

        if not keyring_path(g.data_dir).exists():
            keyring = Keyring.generate()
            save_keyring(g.data_dir, keyring)
            doc.update({"network": network, "key_id": key_id(keyring.primary)})
    emit(
        doc,
        lambda d: (
            f"created node {d['node_id']} in {d['data_dir']}"
            + (f" for private network {d['network']} (key {d['key_id']})" if "key_id" in d else "")
        ),
    )


@cli.command()
@click.option("--listen", default=None, metavar="HOST:PORT", help="Address for UDP and TCP.")
@click.option(
    "--bootstrap", multiple=True, metavar="HOST:PORT", help="A node to join through (repeatable)."
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override any setting for this run, e.g. --set datagram.retries=4.",
)
@click.option("--join", "join_token", default=None, metavar="TOKEN", help="An invite token.")
def start(
    listen: str | None,
    bootstrap: tuple[str, ...],
    overrides: tuple[str, ...],
    join_token: str | None,
) -> None:
    """Run the node in the foreground until SIGINT/SIGTERM or `plexinode stop`."""
    from plexinode import daemon

    flags: dict[str, str] = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--set")
        flags[key.strip()] = value.strip()
    g = _globals()
    start_options = daemon.StartOptions(
        listen=listen,
        bootstrap=bootstrap,
        overrides=flags,
        join_token=join_token,
        log_level=g.log_level,
        log_format=g.log_format,
    )

    def ready(started: daemon.Ready) -> None:
        doc = {
            "node_id": str(started.node_id),
            "address": str(started.address),
            "data_dir": str(started.data_dir),
        }
        emit(
            doc,
            lambda d: (
                f"plexinode {d['node_id']} listening on {d['address']} "
                f"(udp+tcp), data dir {d['data_dir']}"
            ),
        )

    daemon.run(g.data_dir, start_options, ready=ready, note=note)


def _client(timeout: float = 30.0) -> AdminClient:
    return AdminClient(_globals().data_dir, timeout=timeout)


def _render_status(d: dict[str, Any]) -> str:
    members = d["members"]
    storage = d["storage"]
    return "\n".join(
        [
            f"node      {d['node_id']}",
            f"version   {d['version']}",
            f"network   {d['network']}",
            f"address   {d['address']} (udp+tcp)",
            f"uptime    {d['uptime_s']:.0f}s",
            f"peers     {d['peers']}",
            f"members   {members['alive']} alive, {members['suspect']} suspect, "
            f"{members['dead']} dead, {members.get('left', 0)} left",
            f"storage   {storage['used_bytes']} of {storage['quota_bytes']} bytes",
        ]
    )


@cli.command()
def status() -> None:
    """Show the running node's status (exit 3 if none is running)."""
    emit(_client().call("status"), _render_status)


@cli.command()
def stop() -> None:
    """Stop the running node gracefully; returns once it has exited."""
    g = _globals()
    _client().call("stop")
    deadline = time.monotonic() + STOP_WAIT
    while datadir.is_locked(g.data_dir):
        if time.monotonic() > deadline:
            raise PlexinodeError(f"the node did not exit within {STOP_WAIT:.0f}s")
        time.sleep(0.02)
    emit({"stopped": True}, "node stopped")


@cli.command("id")
def show_id() -> None:
    """Print this node's ID (read from the data dir; no running node needed)."""
    from plexinode.identity import load_identity_file

    identity = load_identity_file(_globals().data_dir)
    emit({"node_id": str(identity.node_id)}, lambda d: str(d["node_id"]))


@cli.command()
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
    result = _client(timeout=60.0).call("ping", **args)
    emit(result, lambda d: f"{d['node_id']} at {d['address']}: {d['rtt_ms']:.2f} ms ({d['via']})")


@cli.command()
def peers() -> None:
    """List the DHT routing table: nodes this node has verified and can route through."""
    rows: list[dict[str, Any]] = _client().call("peers")
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


@cli.command()
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
    result = _client().call("invite", expires=seconds)
    emit(result, lambda d: str(d["token"]))


@cli.group()
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
    emit(_client().call("network_key", action="list"), _render_keys)


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
    emit(_client().call("network_key", action="install", key=key), _render_keys)


@network_key.command("use")
@click.argument("key")
@click.option("--force", is_flag=True, help="Even if some live members have not received KEY yet.")
def network_key_use(key: str, force: bool) -> None:
    """Step 2: every member sends with KEY (a key id or the key) from now on."""
    emit(_client().call("network_key", action="use", key=key, force=force), _render_keys)


@network_key.command("remove")
@click.argument("key")
def network_key_remove(key: str) -> None:
    """Step 3: every member stops accepting KEY (a key id or the key)."""
    emit(_client().call("network_key", action="remove", key=key), _render_keys)


@network.command("revoke")
@click.argument("node_id")
def network_revoke(node_id: str) -> None:
    """No member hands NODE_ID a network key again; then rotate the keys to cut it off."""
    emit(_client().call("revoke", node_id=node_id), lambda d: f"revoked {d['revoked']}")


@cli.command()
@click.argument("token")
def join(token: str) -> None:
    """Join the network of an invite TOKEN now, through the inviter, and remember it."""
    result = _client(timeout=120.0).call("join", token=token)
    emit(
        result,
        lambda d: (
            f"joined network {d['network']}: {d['bootstrapped']} DHT contacts, "
            f"{d['members']} members known"
        ),
    )


@cli.command()
def members() -> None:
    """List the members of this node's network and what this node believes of each."""
    rows: list[dict[str, Any]] = _client().call("members")

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


@cli.command()
def leave() -> None:
    """Leave the network gracefully (other members see `left`, not `dead`), then stop."""
    g = _globals()
    result = _client(timeout=60.0).call("leave")
    deadline = time.monotonic() + STOP_WAIT
    while datadir.is_locked(g.data_dir):
        if time.monotonic() > deadline:
            raise PlexinodeError(f"the node did not exit within {STOP_WAIT:.0f}s")
        time.sleep(0.02)
    emit(
        result,
        f"left the network ({result.get('acknowledged_by', 0)} members acknowledged); node stopped",
    )


@cli.group()
def state() -> None:
    """The network's replicated cluster state: small settings every member holds a copy of."""


def _render_entries(rows: list[dict[str, Any]]) -> str:
    live = [r for r in rows if not r["deleted"]]
    if not live:
        return "the cluster state is empty"
    return table(
        [[r["key"], r["value"], r["writer"][:12], f"{r['written_at']:.0f}"] for r in live],
        ["key", "value", "writer", "written (unix s)"],
    )


@state.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include deleted keys (tombstones).")
def state_list(show_all: bool) -> None:
    """List the keys of the cluster state and their values."""
    rows: list[dict[str, Any]] = _client().call("state_list")
    if not show_all:
        rows = [r for r in rows if not r["deleted"]]
    emit(rows, _render_entries(rows))


@state.command("set")
@click.argument("key")
@click.argument("value")
def state_set(key: str, value: str) -> None:
    """Set KEY to VALUE (text, at most 256 bytes) on every member of the network."""
    row = _client().call("state_set", key=key, value=value)
    emit(row, f"{row['key']} = {row['value']} (spreading to every member)")


@state.command("rm")
@click.argument("key")
def state_rm(key: str) -> None:
    """Delete KEY on every member of the network."""
    row = _client().call("state_set", key=key, value=None)
    emit(row, f"{row['key']} deleted (spreading to every member)")


@cli.group()
def tags() -> None:
    """This node's tags: short facts other members see beside it in `members` (a role, a
    site). `version`, `capacity` (the storage quota, bytes) and `keys` are set by the node."""


def _render_tags(result: dict[str, str]) -> str:
    return "\n".join(f"{k} = {v}" for k, v in sorted(result.items()))


@tags.command("list")
def tags_list() -> None:
    """Show this node's tags."""
    result: dict[str, str] = _client().call("tags_list")
    emit(result, _render_tags(result))


@tags.command("set")
@click.argument("key")
@click.argument("value")
def tags_set(key: str, value: str) -> None:
    """Set tag KEY to VALUE (at most 8 tags, 256 bytes in all): gossiped to every member at
    once, and kept across restarts."""
    result: dict[str, str] = _client().call("tags_set", key=key, value=value)
    emit(result, _render_tags(result))


@tags.command("rm")
@click.argument("key")
def tags_rm(key: str) -> None:
    """Remove tag KEY."""
    result: dict[str, str] = _client().call("tags_set", key=key, value=None)
    emit(result, _render_tags(result))


@cli.group()
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
    result: dict[str, Any] = _client(timeout=60.0).call("dht_get", type=type_name, key=key)
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


@cli.group()
def config() -> None:
    """Inspect the configuration."""


@config.command("show")
def config_show() -> None:
    """Each effective setting with where it came from (the running node's if there is one)."""
    g = _globals()
    try:
        rows: list[dict[str, Any]] = _client(timeout=5.0).call("config")
    except PlexinodeError:
        from plexinode.admin.results import config_rows
        from plexinode.config import load_config

        rows = config_rows(load_config(g.data_dir).show()).to_result()
    doc = {row["key"]: {"value": row["value"], "source": row["source"]} for row in rows}
    emit(doc, table([[r["key"], r["text"], r["source"]] for r in rows], ["key", "value", "source"]))
