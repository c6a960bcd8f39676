"""The configuration: ``config show``."""

from __future__ import annotations

from typing import Any

import click

from plexinode.cli.context import client, options
from plexinode.cli.output import emit, table
from plexinode.errors import PlexinodeError


@click.group(short_help="Inspect the configuration.")
def config() -> None:
    """Inspect the configuration."""


@config.command("show", short_help="Each effective setting and where it came from.")
def config_show() -> None:
    """Each effective setting with where it came from (the running node's if there is one)."""
    g = options()
    try:
        rows: list[dict[str, Any]] = client(timeout=5.0).call("config")
    except PlexinodeError:
        from plexinode.admin.results import config_rows
        from plexinode.config import load_config

        rows = config_rows(load_config(g.data_dir).show()).to_result()
    doc = {row["key"]: {"value": row["value"], "source": row["source"]} for row in rows}
    emit(
        doc,
        table(
            [[r["key"], r["text"], r["source"]] for r in rows],
            ["key", "value", "source"],
            shrink=(1,),
        ),
    )
