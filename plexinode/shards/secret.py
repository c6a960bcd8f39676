"""The owner's backup secret: 32 random bytes in ``DATA_DIR/backup.key`` (mode 0600).

The backup secret is its own key, independent of the node's Ed25519 identity and of the
network's keys (decision 47): every segment ID, segment key, manifest key and the chunker's
seed derive from it (plexinode.shards.derive, which holds every derivation; this module only
makes, stores and loads the bytes). It is made when a data dir is initialised, or by the first
start of a data dir that predates it, and it travels with the identity in ``keys export``
(plexinode.security.export): without it, a new machine cannot read its owner's backups.

The file holds the 32 bytes and nothing else; it is written atomically and never overwritten,
so two processes that both find it missing agree on one secret (the second one loads the
first one's).
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from plexinode.errors import IdentityError
from plexinode.fsutil import atomic_write
from plexinode.shards.derive import SECRET_BYTES

log = logging.getLogger(__name__)

BACKUP_KEY_NAME: Final = "backup.key"


@dataclass(frozen=True, slots=True)
class BackupSecret:
    """The owner's backup secret; its bytes never appear in its repr."""

    raw: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.raw, bytes) or len(self.raw) != SECRET_BYTES:
            raise IdentityError(f"a backup secret is {SECRET_BYTES} bytes")

    @classmethod
    def generate(cls) -> BackupSecret:
        """A new secret from the operating system's CSPRNG."""
        return cls(secrets.token_bytes(SECRET_BYTES))


def backup_key_path(data_dir: Path) -> Path:
    """Where the backup secret of a data dir lives."""
    return data_dir / BACKUP_KEY_NAME


def write_backup_secret(data_dir: Path, secret: BackupSecret) -> None:
    """Write `secret` as the data dir's backup secret (0600, atomically); never overwrites one.

    Raises:
        IdentityError: The data dir has a backup secret already, or it cannot be written.
    """
    path = backup_key_path(data_dir)
    try:
        atomic_write(path, secret.raw, mode=0o600, overwrite=False)
    except FileExistsError:
        raise IdentityError(
            f"{path} already exists: refusing to overwrite this owner's backup secret"
        ) from None
    except OSError as exc:
        raise IdentityError(f"cannot write {path}: {exc.strerror or exc}") from None


def load_backup_secret(data_dir: Path) -> BackupSecret:
    """The data dir's backup secret.

    Raises:
        IdentityError: The file is missing, cannot be read, or does not hold exactly
            :data:`~plexinode.shards.derive.SECRET_BYTES` bytes.
    """
    path = backup_key_path(data_dir)
    try:
        with path.open("rb") as file:
            data = file.read(SECRET_BYTES + 1)
    except FileNotFoundError:
        raise IdentityError(f"{path} is missing: run `plexinode init` first") from None
    except OSError as exc:
        raise IdentityError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) != SECRET_BYTES:
        raise IdentityError(
            f"{path} is corrupt: a backup secret is {SECRET_BYTES} bytes, "
            f"{'more' if len(data) > SECRET_BYTES else len(data)} found"
        )
    mode = path.stat().st_mode
    if mode & 0o077:
        log.warning("%s is readable by others (mode %o); fixing to 0600", path, mode & 0o777)
        path.chmod(0o600)
    return BackupSecret(data)


def ensure_backup_secret(data_dir: Path) -> BackupSecret:
    """The data dir's backup secret, made first if the data dir has none (a data dir made
    before backups existed gets one at its next start).

    Raises:
        IdentityError: The existing file is unreadable or corrupt, or a new one cannot be
            written.
    """
    if not backup_key_path(data_dir).exists():
        try:
            write_backup_secret(data_dir, BackupSecret.generate())
            log.info("created the backup secret %s", backup_key_path(data_dir))
        except IdentityError:
            # Another process made it first: use theirs. Anything else fails the load below.
            if not backup_key_path(data_dir).exists():
                raise
    return load_backup_secret(data_dir)
