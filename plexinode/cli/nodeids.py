"""Node IDs as a person types them: the whole ID, or a unique prefix of it.

Wherever a command takes a node ID it also takes the first 8 or more characters of one, as git
takes a short hash (CLI.md "Global"): :func:`node_id_argument` checks the text and, for a
prefix, asks the running node which of the IDs it knows (itself, its members, its DHT routing
table and remembered contacts; the admin command ``resolve``) begin with it:

- a malformed ID or prefix (a typo the checksum catches, a character outside base32, fewer
  than 8 characters): a usage error, exit 2, before the node is asked anything;
- a prefix that several known IDs share: exit 2, naming them (:class:`AmbiguousNodeId`; with
  ``--json`` the error document lists them as ``candidates``);
- a prefix that no known ID has: exit 1, like any other unknown thing;
- a whole ID is taken as it is, known or not (a node may be told about a node it has never
  heard of, such as one to revoke).

The tables show IDs cut to the same 8 characters or more (plexinode.cli.readable.short_ids),
which this accepts back.
"""

from __future__ import annotations

import click

from plexinode.cli.context import client
from plexinode.errors import IdentityError, PlexinodeError

#: At most this many candidates of an ambiguous prefix are named in its message (the JSON
#: error document lists every one).
NAMED_CANDIDATES = 5


class AmbiguousNodeId(click.BadParameter):
    """A node ID prefix that several known node IDs begin with (exit 2)."""

    def __init__(self, prefix: str, candidates: list[str], param_hint: str | None) -> None:
        named = ", ".join(candidates[:NAMED_CANDIDATES])
        more = len(candidates) - NAMED_CANDIDATES
        super().__init__(
            f"{prefix!r} is the beginning of {len(candidates)} known node IDs: {named}"
            + (f" and {more} more" if more > 0 else "")
            + " (type more of the ID)",
            param_hint=param_hint,
        )
        self.candidates = candidates


def node_id_argument(text: str, *, param_hint: str) -> str:
    """The whole node ID that `text` names: the ID itself, or the one known ID that begins
    with the prefix `text` (asking the running node).

    Args:
        text: what the person typed.
        param_hint: the argument or option it was given as, for the error message (``NODE_ID``,
            ``--node``).

    Raises:
        click.BadParameter: A malformed ID or prefix, or an ambiguous prefix (exit 2).
        PlexinodeError: No ID known to the node begins with the prefix (exit 1).
        NodeNotRunning: A prefix needs the running node, and none runs (exit 3).
    """
    from plexinode.admin.requests import node_id_prefix
    from plexinode.identity import TEXT_LENGTH, NodeId

    try:
        prefix = node_id_prefix(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=param_hint) from None
    if len(prefix) == TEXT_LENGTH:
        try:
            return str(NodeId.parse(text))
        except IdentityError as exc:
            raise click.BadParameter(str(exc), param_hint=param_hint) from None
    matches: list[str] = client().call("resolve", prefix=prefix)["matches"]
    if not matches:
        raise PlexinodeError(f"no node ID known to this node begins with {prefix!r}")
    if len(matches) > 1:
        raise AmbiguousNodeId(prefix, matches, param_hint)
    return matches[0]


def looks_like_node_id(text: str) -> bool:
    """Whether `text` could be a node ID or a prefix of one (to tell it from ``HOST:PORT``)."""
    from plexinode.admin.requests import node_id_prefix

    try:
        node_id_prefix(text)
    except ValueError:
        return False
    return True
