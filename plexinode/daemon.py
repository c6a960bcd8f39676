"""The daemon: a node process, composed from its data dir (what ``plexinode start`` runs).

This is the composition root: the one place that knows every piece and how they fit. Given a
data dir and the options of ``start``, :func:`run`:

1. takes the data dir's lock (one node per data dir) and holds it until the process is done;
2. initialises an empty data dir (config, then an identity that solves the configured ID
   puzzle and the owner's backup secret), or for ``--join TOKEN`` one for the token's network;
3. loads the identity, the backup secret (made now for a data dir that predates it), the
   effective configuration (file, environment, the options) and the network's keys, keeping a
   private network's key from the invite;
4. builds the :class:`~plexinode.node.Node` on real sockets, and the admin socket with its
   command table (plexinode.admin) beside it;
5. runs them in one trio run: the node starts its services, then the admin socket, last, so
   that a CLI that can connect finds every service ready; for ``--join TOKEN`` the node then
   joins through the inviter (as ``plexinode join``); then systemd is told (``READY=1``) and
   the caller's ``ready`` callback prints the node's address;
6. stops the node on SIGINT or SIGTERM (gracefully; a second signal stops it at once) or on
   the admin ``stop`` command.

A start that fails raises :class:`~plexinode.errors.PlexinodeError` with one line: trio
reports a failure inside the run wrapped in an exception group, which is unwrapped here (an
address that cannot be bound or resolved, an admin socket that cannot be made, an inviter that
does not answer). When ``start`` created the data dir itself and fails before the node is
ready, it removes the data dir again: a failed first start leaves nothing behind.

It never writes to stdout itself: the CLI passes ``ready`` and ``note`` (progress lines, for
stderr) and renders what they receive.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import trio

from plexinode import datadir
from plexinode.admin.commands import AdminCommands
from plexinode.admin.results import config_rows
from plexinode.admin.server import AdminServer
from plexinode.config import load_config, write_default_config
from plexinode.errors import IdentityError, PlexinodeError
from plexinode.identity import (
    Identity,
    NodeId,
    create_identity_file,
    key_path,
    load_identity_file,
    write_identity_file,
)
from plexinode.logs import setup_logging
from plexinode.membership.invite import Invite
from plexinode.net.address import Address
from plexinode.net.keyring import load_keyring
from plexinode.net.transport import SocketTransport
from plexinode.node import Node
from plexinode.security.export import OwnerKeys
from plexinode.security.tickets import Ticket, parse_way_in
from plexinode.shards.secret import ensure_backup_secret, write_backup_secret

log = logging.getLogger(__name__)

#: From this ID-puzzle difficulty on, making an identity takes long enough to say so.
SLOW_PUZZLE_BITS = 12

#: What to add to the reason the system gives when the listen address cannot be bound.
_BIND_HINTS: Final = {
    errno.EADDRINUSE: "another process uses this port for UDP or TCP; choose another with --listen",
    errno.EADDRNOTAVAIL: "it is not an address of this machine",
    errno.EACCES: "ports below 1024 need privileges",
}


@dataclass(frozen=True)
class StartOptions:
    """What ``plexinode start`` was asked for, parsed.

    Attributes:
        listen: ``--listen HOST:PORT`` (None: the configured address).
        bootstrap: ``--bootstrap HOST:PORT``, each time it was given.
        overrides: ``--set KEY=VALUE`` pairs, by dotted key.
        join_token: ``--join TOKEN``.
        log_level: the global ``--log-level``.
        log_format: the global ``--log-format``.
        log_file: ``--log-file PATH`` (None: logs go to stderr).
    """

    listen: str | None = None
    bootstrap: tuple[str, ...] = ()
    overrides: Mapping[str, str] = field(default_factory=dict)
    join_token: str | None = None
    log_level: str | None = None
    log_format: str | None = None
    log_file: Path | None = None


@dataclass(frozen=True)
class Ready:
    """The node is ready: every service and the admin socket serve."""

    node_id: NodeId
    address: Address
    data_dir: Path


def notify_ready() -> None:
    """Tell systemd (``Type=notify``) that the node is ready, if NOTIFY_SOCKET is set."""
    target = os.environ.get("NOTIFY_SOCKET")
    if not target:
        return
    if target.startswith("@"):
        target = "\0" + target[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(target)
            sock.sendall(b"READY=1")
    except OSError as exc:
        log.warning("cannot notify systemd at %s: %s", target, exc)


def initialise(
    data_dir: Path,
    network: str | None,
    flags: Mapping[str, Any],
    note: Callable[[str], None],
    imported: OwnerKeys | None = None,
) -> Identity:
    """Write the default config (if there is none), then make an identity that solves the
    configured ID puzzle (the config is read first: the difficulty is a network parameter)
    and the owner's backup secret, or write the `imported` ones.

    Args:
        data_dir: the data dir (created if needed).
        network: the network to write into a new config, if any.
        flags: the command-line settings, which may set the difficulty.
        note: where to say that making the identity will take a while.
        imported: keys from a key export (``init --import``), written instead of new ones.

    Raises:
        IdentityError: The data dir has an identity (or, for `imported`, a backup secret)
            already, or the imported identity does not solve the configured ID puzzle.
    """
    datadir.prepare(data_dir)
    write_default_config(data_dir, network=network)  # keeps an existing one
    difficulty = load_config(data_dir, flags=flags).settings.dht.id_difficulty
    if imported is not None:
        if not imported.identity.node_id.meets(difficulty):
            raise IdentityError(
                f"the imported node ID does not solve the configured {difficulty}-bit ID "
                "puzzle (dht.id_difficulty)"
            )
        write_backup_secret(data_dir, imported.backup_secret)
        return write_identity_file(data_dir, imported.identity)
    if difficulty >= SLOW_PUZZLE_BITS:
        note(
            f"making an identity: its node ID must solve the network's {difficulty}-bit ID "
            "puzzle, which makes node IDs costly to mass-produce (a few seconds, once; "
            "see 'ID puzzle' in docs/protocol.md)..."
        )
    identity = create_identity_file(data_dir, difficulty)
    ensure_backup_secret(data_dir)
    return identity


def run(
    data_dir: Path,
    options: StartOptions,
    *,
    ready: Callable[[Ready], None],
    note: Callable[[str], None],
) -> None:
    """Run the node of `data_dir` in the foreground until it is stopped.

    Args:
        data_dir: the node's data dir.
        options: what ``start`` was asked for.
        ready: called once the node and its admin socket serve (and, with a join token, the
            node has joined through the inviter).
        note: called with progress lines (initialising the data dir).

    Raises:
        PlexinodeError: The data dir is unusable or locked by a running node, the config, the
            key file or the invite token is invalid, the address cannot be bound, the log
            file cannot be opened, or the inviter does not answer.
    """
    created = datadir.first_missing(data_dir)
    went_ready = False

    def started(value: Ready) -> None:
        nonlocal went_ready
        went_ready = True
        ready(value)

    try:
        _run(data_dir, options, ready=started, note=note)
    except BaseException:
        if created is not None and not went_ready:
            # Nothing of this node was ever seen by anyone: leave no trace of it.
            datadir.discard(data_dir, created)
        raise


def _run(
    data_dir: Path,
    options: StartOptions,
    *,
    ready: Callable[[Ready], None],
    note: Callable[[str], None],
) -> None:
    invite = None
    if options.join_token is not None:
        # A bad token fails as `join TOKEN` does (exit 1, its reason on stderr), before the
        # data dir is touched.
        invite = parse_way_in(options.join_token, time.time())
    datadir.prepare(data_dir)
    lock = datadir.DataDirLock(data_dir)
    lock.acquire()
    try:
        node, admin = compose(data_dir, options, invite, note)
        went_ready = False

        def started(address: Address) -> None:
            nonlocal went_ready
            went_ready = True
            if options.log_file is not None:
                # The terminal shows the ready line (ready, below); the log file says it too.
                log.info("node ready: %s on udp+tcp %s", node.node_id, address)
            ready(Ready(node.node_id, address, data_dir))

        try:
            trio.run(serve, node, admin, started, options.join_token)
        except BaseExceptionGroup as group:
            # trio reports what failed in a task wrapped in a group: find the reason inside.
            failure = None if went_ready else start_failure(group, node.settings.listen)
            if failure is None:
                raise
            raise failure from None
    finally:
        lock.release()


def compose(
    data_dir: Path,
    options: StartOptions,
    invite: Invite | Ticket | None,
    note: Callable[[str], None],
) -> tuple[Node, AdminServer]:
    """Initialise `data_dir` if it is empty, load what it holds, set up logging, and build the
    node and its admin socket (steps 2 to 4 of the module docstring)."""
    flags: dict[str, Any] = dict(options.overrides)
    bootstrap = options.bootstrap
    if invite is not None:
        bootstrap = (*bootstrap, *(str(a) for a in invite.bootstrap()))
    flags.update(
        {
            "listen": options.listen,
            "bootstrap": list(bootstrap) if bootstrap else None,
            "log_level": options.log_level,
            "log_format": options.log_format,
        }
    )
    if not key_path(data_dir).exists():
        made = initialise(data_dir, invite.network if invite else None, flags, note)
        note(f"initialised {data_dir} for new node {made.node_id}")
    identity = load_identity_file(data_dir)
    backup_secret = ensure_backup_secret(data_dir)  # a data dir made before backups gets one
    config = load_config(data_dir, flags=flags)
    settings = config.settings
    if invite is not None and invite.network != settings.network:
        raise PlexinodeError(
            f"this node belongs to network {settings.network!r} and the invite is for "
            f"{invite.network!r}: use a new data dir to join that network"
        )
    try:
        setup_logging(settings.log_level, settings.log_format, options.log_file)
    except OSError as exc:
        raise PlexinodeError(
            f"cannot open the log file {options.log_file}: {exc.strerror or exc}"
        ) from None
    node = Node(
        identity,
        settings,
        SocketTransport(),
        data_dir=data_dir,
        keyring=load_keyring(data_dir, settings.network),
        backup_secret=backup_secret,
    )
    admin = AdminServer(datadir.socket_path(data_dir))
    AdminCommands(node, config=config_rows(config.show())).register(admin)
    return node, admin


def listen_failure(exc: OSError, listen: Address) -> PlexinodeError:
    """One line for an address that cannot be bound (or resolved)."""
    if isinstance(exc, socket.gaierror):
        return PlexinodeError(
            f"cannot listen on {listen}: the host name {listen.host!r} does not resolve "
            f"({exc.strerror or exc})"
        )
    reason = exc.strerror or str(exc)
    hint = _BIND_HINTS.get(exc.errno or 0)
    return PlexinodeError(f"cannot listen on {listen}: {reason}" + (f" ({hint})" if hint else ""))


def start_failure(group: BaseExceptionGroup[Any], listen: Address) -> PlexinodeError | None:
    """The one-line reason why a start failed, from the group trio reported it in: the first
    PlexinodeError inside, else the first OSError (binding the listen address is the one
    thing before ready that raises it). None when the group holds anything else, such as a
    bug, which is raised with its traceback."""
    leaves = list(_leaves(group))
    if not all(isinstance(e, PlexinodeError | OSError | trio.Cancelled) for e in leaves):
        return None
    for leaf in leaves:
        if isinstance(leaf, PlexinodeError):
            return leaf
    for leaf in leaves:
        if isinstance(leaf, OSError):
            return listen_failure(leaf, listen)
    return None


def _leaves(group: BaseExceptionGroup[Any]) -> list[BaseException]:
    leaves: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            leaves.extend(_leaves(exc))
        else:
            leaves.append(exc)
    return leaves


async def serve(
    node: Node,
    admin: AdminServer,
    ready: Callable[[Address], None],
    join_token: str | None = None,
) -> None:
    """Run `node` with `admin` beside it until the node stops or a second signal arrives.

    SIGINT or SIGTERM stops the node gracefully; a second one cancels everything at once.
    Once the node and the admin socket serve, and with `join_token` the node has joined
    through the inviter: ``READY=1`` to systemd, then ``ready(address)``.

    Raises:
        PlexinodeError: The join through the inviter failed (the node is stopped first).
    """
    failed: PlexinodeError | None = None
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def watch_signals() -> None:
                count = 0
                async for _signum in signals:
                    count += 1
                    if count == 1:
                        node.stop()
                    else:  # a second signal: stop waiting for anything
                        nursery.cancel_scope.cancel()

            async def run_node(*, task_status: trio.TaskStatus[Address]) -> None:
                await node.run(beside=(admin.run,), task_status=task_status)
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch_signals)
            address = await nursery.start(run_node)
            if join_token is not None:
                try:
                    await node.join(join_token)
                except PlexinodeError as exc:
                    failed = exc
            if failed is None:
                notify_ready()
                ready(address)
            else:
                node.stop()
    if failed is not None:
        raise failed
