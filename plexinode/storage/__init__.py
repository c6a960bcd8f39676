"""Local storage: the node's one SQLite database and its schema migrations.

See `plexinode.storage.database` for how trio code uses the database (one worker thread, explicit
write transactions, WAL with full fsync) and `plexinode.storage.migrations` for how a service adds
its tables.
"""

from plexinode.storage.database import DATABASE_FILE_NAME, Database, open_database
from plexinode.storage.migrations import MIGRATIONS, Migration

__all__ = ["DATABASE_FILE_NAME", "MIGRATIONS", "Database", "Migration", "open_database"]
