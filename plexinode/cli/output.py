"""Rendering: the one place that writes to stdout."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import click

from plexinode.cli.readable import table

__all__ = ["emit", "note", "table"]


def emit(data: Any, text: Callable[[Any], str] | str | None = None) -> None:
    """Print `data` as one JSON document with ``--json``, else its text rendering."""
    ctx = click.get_current_context()
    if ctx.find_root().obj.json:
        click.echo(json.dumps(data, indent=2, sort_keys=False))
        return
    if text is None:
        rendered = json.dumps(data, indent=2)
    elif isinstance(text, str):
        rendered = text
    else:
        rendered = text(data)
    if rendered:
        click.echo(rendered)


def note(message: str) -> None:
    """A progress or informational line on stderr (never stdout)."""
    click.echo(message, file=sys.stderr)
