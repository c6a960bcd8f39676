"""This node's tags: ``tags list``, ``tags set``, ``tags rm``."""

from __future__ import annotations

import click

from plexinode.cli.context import client
from plexinode.cli.output import emit


@click.group()
def tags() -> None:
    """This node's tags: short facts other members see beside it in `members` (a role, a
    site). `version`, `capacity` (the storage quota, bytes) and `keys` are set by the node."""


def _render_tags(result: dict[str, str]) -> str:
    return "\n".join(f"{k} = {v}" for k, v in sorted(result.items()))


@tags.command("list")
def tags_list() -> None:
    """Show this node's tags."""
    result: dict[str, str] = client().call("tags_list")
    emit(result, _render_tags(result))


@tags.command("set")
@click.argument("key")
@click.argument("value")
def tags_set(key: str, value: str) -> None:
    """Set tag KEY to VALUE (at most 8 tags, 256 bytes in all): gossiped to every member at
    once, and kept across restarts."""
    result: dict[str, str] = client().call("tags_set", key=key, value=value)
    emit(result, _render_tags(result))


@tags.command("rm")
@click.argument("key")
def tags_rm(key: str) -> None:
    """Remove tag KEY."""
    result: dict[str, str] = client().call("tags_set", key=key, value=None)
    emit(result, _render_tags(result))
