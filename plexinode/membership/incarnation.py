"""This node's incarnation across restarts, kept in the database (trio, through the storage
worker).

A restarted node starts one above the last incarnation it used, so that its alive claim
outranks whatever the others remember of it (a tombstone, or a suspicion of its old life); each
new incarnation it takes later (a refutation, a new address, new tags) is written too. Without
a database (simulations) every start is at 0.
"""

from __future__ import annotations

from typing import Final

from plexinode.storage import Database

#: The database key of the last incarnation this node used.
INCARNATION_KEY: Final = "membership.incarnation"


class Incarnations:
    """Where this node's incarnation is kept.

    Args:
        db: The node's database, or None.
    """

    def __init__(self, db: Database | None) -> None:
        self.db = db

    async def first(self) -> int:
        """The incarnation to start at (and now the last one used)."""
        if self.db is None:
            return 0
        rows = await self.db.execute("SELECT value FROM meta WHERE key = ?", (INCARNATION_KEY,))
        incarnation = int(bytes(rows[0][0]).decode()) + 1 if rows else 0
        await self.save(incarnation)
        return incarnation

    async def save(self, incarnation: int) -> None:
        """Remember `incarnation` as the last one used."""
        if self.db is None:
            return
        await self.db.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
            (INCARNATION_KEY, str(incarnation).encode()),
        )
