"""The `plexinode` command: a thin client of the running node's admin socket.

Each group of commands lives in its own module (``start``, ``status``, ``ping``, ``dht``,
``network``, ``keys``, ``members``, ``state``, ``tags``, ``config``, ``completion``); this one
defines the global options, registers the commands, and maps errors to exit codes.

Exit codes (CLI.md, docs/cli.md): 0 success; 1 the operation failed (one line on stderr);
2 usage error: an unknown command or option, or an argument that is malformed (a node ID, an
address, a duration, a key) or ambiguous (a node ID prefix shared by several nodes), wherever
it is given; 3 no node is running for the data dir. With ``--json`` (before or after the
command) every error is also one JSON document on stdout, ``{"error": ..., "code": N}``, so
that a script always has a document to parse.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from plexinode import __version__
from plexinode.cli import (
    backup,
    completion,
    config,
    dht,
    keys,
    members,
    network,
    ping,
    start,
    state,
    status,
    tags,
)
from plexinode.cli.context import (
    DATA_DIR_HELP,
    JSON_HELP,
    LOG_FORMAT_HELP,
    LOG_LEVEL_HELP,
    Globals,
    accept_global_options,
)
from plexinode.cli.progress import Interrupted
from plexinode.datadir import default_data_dir
from plexinode.errors import NodeNotRunning, PlexinodeError
from plexinode.logs import FORMATS, LEVELS

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_RUNNING = 3
EXIT_INTERRUPTED = 130


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="The global options are accepted after the command too (`plexinode status --json`).",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help=DATA_DIR_HELP,
)
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@click.option("--log-level", type=click.Choice(LEVELS), default=None, help=LOG_LEVEL_HELP)
@click.option("--log-format", type=click.Choice(FORMATS), default=None, help=LOG_FORMAT_HELP)
@click.version_option(__version__, prog_name="plexinode")
@click.pass_context
def cli(
    ctx: click.Context,
    data_dir: Path | None,
    as_json: bool,
    log_level: str | None,
    log_format: str | None,
) -> None:
    """plexinode: a peer-to-peer node. Run `plexinode start`, then administer it from here."""
    ctx.obj = Globals(
        data_dir=(data_dir or default_data_dir()).absolute(),
        json=as_json,
        log_level=log_level,
        log_format=log_format,
    )


for command in (
    start.init,
    start.start,
    status.status,
    status.stop,
    status.show_id,
    ping.ping,
    dht.peers,
    dht.dht,
    network.invite,
    network.join,
    network.network,
    keys.keys,
    backup.backup,
    members.members,
    members.leave,
    state.state,
    tags.tags,
    config.config,
    completion.completion,
):
    accept_global_options(command)
    cli.add_command(command)


def _whole_short_help(command: click.Command) -> None:
    """Give `command` (and the commands under it) a short help that is the first sentence of
    its help, whole, where it has none of its own: click would cut it to fit the terminal,
    mid-sentence; the help formatter wraps it instead."""
    if command.short_help is None and command.help:
        first = command.help.split("\n\n")[0]
        command.short_help = " ".join(first.split(". ")[0].split()).rstrip(".") + "."
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _whole_short_help(sub)


for command in cli.commands.values():
    _whole_short_help(command)


def json_requested(argv: list[str]) -> bool:
    """Whether the command line asks for ``--json`` (before ``--``, which ends the options),
    known even when the command line does not parse."""
    for arg in argv:
        if arg == "--":
            return False
        if arg == "--json":
            return True
    return False


def _fail(message: str, code: int, as_json: bool, **extra: Any) -> NoReturn:
    """One line on stderr; with ``--json``, the error as the one document on stdout."""
    click.echo(f"plexinode: {message}", err=True)
    if as_json:
        click.echo(json.dumps({"error": message, "code": code, **extra}))
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: maps errors to the documented exit codes."""
    args = sys.argv[1:] if argv is None else list(argv)
    as_json = json_requested(args)
    try:
        result = cli.main(args=args, prog_name="plexinode", standalone_mode=False)
    except click.UsageError as exc:  # click.BadParameter and ours (plexinode.cli.nodeids) too
        # One line, as every other failure, with where to read more (not click's usage block).
        where = exc.ctx.command_path if exc.ctx is not None else "plexinode"
        extra = {"candidates": exc.candidates} if hasattr(exc, "candidates") else {}
        message = exc.format_message().rstrip(".")
        _fail(f"{message} (see '{where} --help')", EXIT_USAGE, as_json, **extra)
    except click.ClickException as exc:
        if not as_json:
            exc.show()
            sys.exit(exc.exit_code)
        _fail(exc.format_message(), exc.exit_code, as_json)
    except click.Abort as exc:  # click turns Ctrl-C (KeyboardInterrupt) and EOF into Abort
        if isinstance(exc.__cause__, KeyboardInterrupt):
            _fail("interrupted", EXIT_INTERRUPTED, as_json)
        _fail("aborted", EXIT_FAILED, as_json)
    except Interrupted as exc:  # Ctrl-C while the node works on (backup create, restore)
        _fail(str(exc), EXIT_INTERRUPTED, as_json)
    except NodeNotRunning as exc:
        _fail(str(exc), EXIT_NOT_RUNNING, as_json)
    except PlexinodeError as exc:
        _fail(str(exc), EXIT_FAILED, as_json)
    sys.exit(result if isinstance(result, int) else 0)
