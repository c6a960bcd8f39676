"""Setting a node up and running it: ``init`` and ``start``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from plexinode.cli.context import options
from plexinode.cli.output import emit, note
from plexinode.errors import IdentityError, PlexinodeError

if TYPE_CHECKING:
    from plexinode.security.export import OwnerKeys

#: The open network's name (the ``network`` setting's default): a private network may not
#: take it, or its nodes would look like the open network's.
OPEN_NETWORK = "open"
#: The most a token file (or standard input) may hold: a token is at most 2 KiB of text
#: (plexinode.membership.invite.MAX_TOKEN; a ticket 1 KiB), with room for wrapping. Only this
#: much and one byte more is read, so that `--file /dev/zero` fails at once.
MAX_TOKEN_FILE_BYTES = 8192


def _network_name(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """Check ``init --network`` as it is given: a malformed name is a usage error (exit 2),
    before anything is written."""
    from plexinode.cli.readable import quoted
    from plexinode.config import NETWORK_NAME_RULE, SETTINGS_BY_KEY

    if value is None:
        return None
    try:
        name = str(SETTINGS_BY_KEY["network"].kind.from_text(value))
    except ValueError:
        raise click.BadParameter(
            f"a network name {NETWORK_NAME_RULE}, not {quoted(value)}"
        ) from None
    if name == OPEN_NETWORK:
        raise click.BadParameter(
            f"{OPEN_NETWORK!r} is the open network's name: choose another for a private network"
        )
    return name


@click.command()
@click.option(
    "--network",
    default=None,
    metavar="NAME",
    callback=_network_name,
    help="Create a private network of this name (1-64 characters of a-z, 0-9 and '-'; not "
    "'open') with a new network key for this node.",
)
@click.option(
    "--import",
    "import_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    metavar="FILE",
    help="Take the identity and backup secret of a `keys export` FILE instead of new ones "
    "(a new machine for the same owner; it then joins by invite).",
)
@click.option(
    "--passphrase-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    metavar="F",
    help="With --import: read the passphrase from the first line of F instead of asking.",
)
def init(network: str | None, import_file: Path | None, passphrase_file: Path | None) -> None:
    """Create this node's identity and config (never overwrites an identity)."""
    import shutil

    from plexinode.datadir import first_missing
    from plexinode.identity import key_path

    if import_file is not None and network is not None:
        raise click.UsageError(
            "--import and --network do not go together: an imported node joins its network "
            "by invite"
        )
    if passphrase_file is not None and import_file is None:
        raise click.UsageError("--passphrase-file goes with --import")
    g = options()
    if key_path(g.data_dir).exists():
        raise IdentityError(
            f"{key_path(g.data_dir)} already exists: refusing to overwrite this node's identity"
        )
    imported = None
    if import_file is not None:
        from plexinode.cli.keys import read_export

        # Opened before anything is written: a wrong passphrase leaves the data dir as it was.
        imported = read_export(import_file, passphrase_file)
    created = first_missing(g.data_dir)
    before = _entries(g.data_dir)
    try:
        doc = _initialise(g.data_dir, network, imported)
    except BaseException:
        # A failed init leaves nothing behind: the next one starts afresh.
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        else:
            for name in _entries(g.data_dir) - before:
                (g.data_dir / name).unlink(missing_ok=True)
        raise
    emit(
        doc,
        lambda d: (
            f"created node {d['node_id']} in {d['data_dir']}"
            + (f" for private network {d['network']} (key {d['key_id']})" if "key_id" in d else "")
            + (f"\nits root key is {d['root_key']}: keep a copy offline" if "root_key" in d else "")
        ),
    )


def _entries(data_dir: Path) -> set[str]:
    """The names of the files in `data_dir` (none if it is not a directory)."""
    try:
        return {entry.name for entry in data_dir.iterdir() if not entry.is_dir()}
    except OSError:
        return set()


def _initialise(data_dir: Path, network: str | None, imported: OwnerKeys | None) -> dict[str, Any]:
    """Write the config and the identity (new, or `imported`), and found the private network
    `network` if named."""
    from plexinode.daemon import initialise

    identity = initialise(data_dir, network, {}, note, imported)
    doc: dict[str, Any] = {"node_id": str(identity.node_id), "data_dir": str(data_dir)}
    if network is not None:
        # A named network is a private one: its first member makes its key. Others get it in
        # an invite (`plexinode invite`).
        from plexinode.net.keyring import keyring_path

        if not keyring_path(data_dir).exists():
            doc.update(_found_network(data_dir, network, identity.public_key))
    return doc


def _found_network(data_dir: Path, network: str, node_key: bytes) -> dict[str, Any]:
    """Make a new private network: its key, its root key (``root.key``), and this node's
    member and inviter grants, signed by the root."""
    import time

    from plexinode.identity import Identity
    from plexinode.net.keyring import Keyring, key_id, save_keyring
    from plexinode.security.admin_keys import ROOT_KEY_FILE, write_admin_key
    from plexinode.security.statements import founding

    root = Identity.generate()
    root_path = data_dir / ROOT_KEY_FILE
    write_admin_key(root_path, root)
    keyring = Keyring.generate()
    keyring.root = root.public_key
    keyring.credentials = founding(root, network, node_key, int(time.time()))
    save_keyring(data_dir, keyring)
    return {
        "network": network,
        "key_id": key_id(keyring.primary),
        "root": root.public_key.hex(),
        "root_key": str(root_path),
    }


def read_token(source: str) -> str:
    """An invite token or a ticket from the file `source` ('-': standard input), so that it
    never appears in a command line.

    Raises:
        PlexinodeError: The file cannot be read, is too large to hold a token (more than
            :data:`MAX_TOKEN_FILE_BYTES`), or holds no token.
    """
    where = "standard input" if source == "-" else source
    try:
        if source == "-":
            data = sys.stdin.buffer.read(MAX_TOKEN_FILE_BYTES + 1)
        else:
            with Path(source).open("rb") as file:
                data = file.read(MAX_TOKEN_FILE_BYTES + 1)
        if len(data) > MAX_TOKEN_FILE_BYTES:
            raise PlexinodeError(
                f"{where} is too large to be a token ({MAX_TOKEN_FILE_BYTES} bytes at most)"
            )
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise PlexinodeError(f"cannot read the token from {source}: {reason}") from None
    token = "".join(text.split())
    if not token:
        raise PlexinodeError(f"{where} holds no token")
    return token


def _addresses(
    ctx: click.Context, param: click.Parameter, value: str | tuple[str, ...] | None
) -> str | tuple[str, ...] | None:
    """Check ``--listen`` and ``--bootstrap`` as they are given: a malformed address is a
    usage error (exit 2), not a failed start."""
    from plexinode.net.address import Address

    for text in (value,) if isinstance(value, str) else value or ():
        try:
            Address.parse(text, allow_zero_port=param.name == "listen")
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
    return value


@click.command()
@click.option(
    "--listen",
    default=None,
    metavar="HOST:PORT",
    callback=_addresses,
    help="Address for UDP and TCP.",
)
@click.option(
    "--bootstrap",
    multiple=True,
    metavar="HOST:PORT",
    callback=_addresses,
    help="A node to join through (repeatable).",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override any setting for this run, e.g. --set datagram.retries=4.",
)
@click.option(
    "--join-file",
    "join_file",
    default=None,
    metavar="FILE",
    help="Join through the invite token or ticket in FILE ('-': standard input) at start.",
)
@click.option(
    "--log-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Append the logs to this file instead of stderr (e.g. DATA_DIR/node.log).",
)
def start(
    listen: str | None,
    bootstrap: tuple[str, ...],
    overrides: tuple[str, ...],
    join_file: str | None,
    log_file: Path | None,
) -> None:
    """Run the node in the foreground until SIGINT/SIGTERM or `plexinode stop`."""
    from plexinode import daemon

    flags: dict[str, str] = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--set")
        flags[key.strip()] = value.strip()
    g = options()
    start_options = daemon.StartOptions(
        listen=listen,
        bootstrap=bootstrap,
        overrides=flags,
        join_token=None if join_file is None else read_token(join_file),
        log_level=g.log_level,
        log_format=g.log_format,
        log_file=log_file.absolute() if log_file is not None else None,
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
        # A pipe is block-buffered: whoever waits for this line must get it now, not at exit.
        sys.stdout.flush()

    daemon.run(g.data_dir, start_options, ready=ready, note=note)
