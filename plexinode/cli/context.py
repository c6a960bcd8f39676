"""What the commands share: the global options, the admin client, waiting for the node to exit.

The global options (``--data-dir``, ``--json``, ``--log-level``, ``--log-format``) are the root
command's, and every command and group accepts them too (:func:`accept_global_options`), so
that ``plexinode status --json`` and ``plexinode state list --json`` mean what they say: an
option given after the command overrides the same option given before it.

The heavy modules (trio, the node, PyNaCl, the config schema) are imported inside the commands
that need them, so that the commands that only talk to the admin socket (``status``, ``stop``,
``ping`` ...) start fast (scripts/bench/bench_cli.py): nothing here imports them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from plexinode import datadir
from plexinode.admin.client import AdminClient
from plexinode.errors import PlexinodeError
from plexinode.logs import FORMATS, LEVELS

#: How long `stop` and `leave` wait for the node process to exit after it acknowledged.
STOP_WAIT = 15.0

DATA_DIR_HELP = "Node data directory [default: $PLEXINODE_HOME, else the user data dir]."
JSON_HELP = "Print one JSON document on stdout (errors too: {error, code})."
LOG_LEVEL_HELP = "Log verbosity (of `start`)."
LOG_FORMAT_HELP = "Log line format (of `start`)."


@dataclass
class Globals:
    """The global options, given before or after the command."""

    data_dir: Path
    json: bool
    log_level: str | None
    log_format: str | None


def options() -> Globals:
    """The global options of the command being run."""
    obj: Globals = click.get_current_context().find_root().obj
    return obj


def client(timeout: float = 30.0) -> AdminClient:
    """A client of the running node's admin socket."""
    return AdminClient(options().data_dir, timeout=timeout)


def _setter(name: str, convert: Callable[[Any], Any]) -> Callable[..., None]:
    """The callback of a global option given after a command: it overrides the root's value
    (a flag or an option left out changes nothing)."""

    def callback(ctx: click.Context, _param: click.Parameter, value: Any) -> None:
        obj = ctx.find_root().obj
        if value and isinstance(obj, Globals):  # no Globals while completing a command line
            setattr(obj, name, convert(value))

    return callback


def _global_options() -> list[click.Option]:
    """The global options as a command after the root accepts them (not shown in its help:
    the root's help lists them once)."""
    return [
        click.Option(
            ["--data-dir"],
            type=click.Path(path_type=Path, file_okay=False),
            expose_value=False,
            hidden=True,
            help=DATA_DIR_HELP,
            callback=_setter("data_dir", lambda p: Path(p).absolute()),
        ),
        click.Option(
            ["--json"],
            is_flag=True,
            expose_value=False,
            hidden=True,
            help=JSON_HELP,
            callback=_setter("json", bool),
        ),
        click.Option(
            ["--log-level"],
            type=click.Choice(LEVELS),
            expose_value=False,
            hidden=True,
            help=LOG_LEVEL_HELP,
            callback=_setter("log_level", str),
        ),
        click.Option(
            ["--log-format"],
            type=click.Choice(FORMATS),
            expose_value=False,
            hidden=True,
            help=LOG_FORMAT_HELP,
            callback=_setter("log_format", str),
        ),
    ]


def _usage_errors_name_their_command(command: click.Command) -> None:
    """Let a usage error that click's parser raises without a context (an option missing its
    value, an unknown option) carry `command`'s, so that its line points at that command's
    help (``see 'plexinode init --help'``), not the root's."""
    parse_args = command.parse_args

    def parse_args_in_context(ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return parse_args(ctx, args)
        except click.UsageError as exc:
            if exc.ctx is None:
                exc.ctx = ctx
            raise

    command.parse_args = parse_args_in_context  # type: ignore[method-assign]


def accept_global_options(command: click.Command) -> None:
    """Let `command`, and every command under it if it is a group, take the global options
    (and name itself in its usage errors)."""
    command.params.extend(_global_options())
    _usage_errors_name_their_command(command)
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            accept_global_options(sub)


def wait_for_exit(data_dir: Path) -> None:
    """Return once the node of `data_dir` has exited (it released the data dir's lock).

    Raises:
        PlexinodeError: It is still running after :data:`STOP_WAIT` seconds.
    """
    deadline = time.monotonic() + STOP_WAIT
    while datadir.is_locked(data_dir):
        if time.monotonic() > deadline:
            raise PlexinodeError(f"the node did not exit within {STOP_WAIT:.0f}s")
        time.sleep(0.02)
