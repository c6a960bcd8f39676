"""The `plexinode` command: a thin client of the running node's admin socket.

Each group of commands lives in its own module (``start``, ``status``, ``ping``, ``dht``,
``network``, ``members``, ``state``, ``tags``, ``config``); this one defines the global
options, registers the commands, and maps errors to exit codes.

Exit codes (CLI.md): 0 success; 1 the operation failed (one line on stderr); 2 usage error;
3 no node is running for the data dir.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from plexinode import __version__
from plexinode.cli import config, dht, members, network, ping, start, state, status, tags
from plexinode.cli.context import Globals
from plexinode.datadir import default_data_dir
from plexinode.errors import NodeNotRunning, PlexinodeError
from plexinode.logs import FORMATS, LEVELS

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_RUNNING = 3


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Node data directory [default: $PLEXINODE_HOME, else the user data dir].",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
@click.option("--log-level", type=click.Choice(LEVELS), default=None, help="Log verbosity.")
@click.option("--log-format", type=click.Choice(FORMATS), default=None, help="Log line format.")
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
    members.members,
    members.leave,
    state.state,
    tags.tags,
    config.config,
):
    cli.add_command(command)


def _fail(message: str, code: int) -> None:
    click.echo(f"plexinode: {message}", err=True)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: maps errors to the documented exit codes."""
    try:
        result = cli.main(args=argv, prog_name="plexinode", standalone_mode=False)
    except click.UsageError as exc:
        exc.show()
        sys.exit(EXIT_USAGE)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        _fail("aborted", EXIT_FAILED)
    except NodeNotRunning as exc:
        _fail(str(exc), EXIT_NOT_RUNNING)
    except PlexinodeError as exc:
        _fail(str(exc), EXIT_FAILED)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    sys.exit(result if isinstance(result, int) else 0)
