"""What the commands share: the global options, the admin client, waiting for the node to exit.

The heavy modules (trio, the node, PyNaCl, the config schema) are imported inside the commands
that need them, so that the commands that only talk to the admin socket (``status``, ``stop``,
``ping`` ...) start fast (scripts/bench/bench_cli.py): nothing here imports them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import click

from plexinode import datadir
from plexinode.admin.client import AdminClient
from plexinode.errors import PlexinodeError

#: How long `stop` and `leave` wait for the node process to exit after it acknowledged.
STOP_WAIT = 15.0


@dataclass
class Globals:
    """Options given before the command."""

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
