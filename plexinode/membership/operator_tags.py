"""The tags an operator set with ``plexinode tags set``, kept in the database across restarts.

They live in one row of the ``meta`` table, as a JSON object, so that a restarted node
advertises them again. The tags the node sets itself (its version, capacity and keys) are never
stored: they are worked out afresh at every start.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Mapping
from typing import Final

from plexinode.storage import Database

log = logging.getLogger(__name__)

#: The meta row that keeps the operator's tags, as a JSON object.
OPERATOR_TAGS: Final = "member_tags"


async def load_operator_tags(db: Database, reserved: Collection[str]) -> dict[str, str]:
    """The stored tags, without the `reserved` ones; unreadable ones are ignored (logged)."""
    rows = await db.execute("SELECT value FROM meta WHERE key = ?", (OPERATOR_TAGS,))
    if not rows:
        return {}
    try:
        stored = json.loads(bytes(rows[0][0]))
    except ValueError:
        log.warning("ignoring unreadable stored tags")
        return {}
    if not isinstance(stored, dict):
        return {}
    return {str(k): str(v) for k, v in stored.items() if k not in reserved}


async def save_operator_tags(
    db: Database, tags: Mapping[str, str], reserved: Collection[str]
) -> None:
    """Store `tags`, without the `reserved` ones."""
    own = {k: v for k, v in tags.items() if k not in reserved}
    await db.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
        (OPERATOR_TAGS, json.dumps(own, sort_keys=True).encode()),
    )
