"""This node's tags: ``tags list``, ``tags set``, ``tags rm``."""

from __future__ import annotations

import click

from plexinode.cli.context import client
from plexinode.cli.output import emit


@click.group(short_help="This node's tags, which other members see.")
def tags() -> None:
    """This node's tags: short facts other members see beside it in `members` (a `name`, a
    role, a site). A member carries at most 8 tags; `version`, `capacity` (the storage quota,
    bytes) and `keys` are set by the node, so 5 are free for the operator."""


def render_tags(result: dict[str, str]) -> str:
    """One ``key = value`` line per tag, then how many more may be set."""
    from plexinode.admin.requests import tags_free

    lines = [f"{k} = {v}" for k, v in sorted(result.items())]
    free = tags_free(result)
    lines.append(f"({free} more {'tag' if free == 1 else 'tags'} can be set)")
    return "\n".join(lines)


@tags.command("list", short_help="Show this node's tags.")
def tags_list() -> None:
    """Show this node's tags, and how many more can be set."""
    result: dict[str, str] = client().call("tags_list")
    emit(result, render_tags)


@tags.command("set", short_help="Set one of this node's tags.")
@click.argument("key")
@click.argument("value")
def tags_set(key: str, value: str) -> None:
    """Set tag KEY to VALUE: gossiped to every member at once, and kept across restarts.

    KEY is 1-32 characters of a-z, 0-9, `.`, `_`, `-` (starting with a letter or digit),
    VALUE at most 64 printable characters; at most 8 tags (the node's own 3 included) of 256
    bytes in all. Setting a tag to the value it has changes nothing.
    """
    from plexinode.admin.requests import tag_problem

    problem = tag_problem(key, value)
    if problem is not None:
        raise click.BadParameter(
            problem, param_hint="KEY" if problem.startswith("a tag key") else "VALUE"
        )
    result: dict[str, str] = client().call("tags_set", key=key, value=value)
    emit(result, render_tags)


@tags.command("rm", short_help="Remove one of this node's tags.")
@click.argument("key")
def tags_rm(key: str) -> None:
    """Remove tag KEY (exit 1 if this node has no KEY tag)."""
    result: dict[str, str] = client().call("tags_set", key=key, value=None)
    emit(result, render_tags)
