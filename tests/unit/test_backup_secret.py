"""The owner's backup secret in the data dir (plexinode.shards.secret)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from plexinode.errors import IdentityError
from plexinode.shards.secret import (
    BackupSecret,
    backup_key_path,
    ensure_backup_secret,
    load_backup_secret,
    write_backup_secret,
)


def test_made_once_then_loaded(tmp_path: Path) -> None:
    made = ensure_backup_secret(tmp_path)
    path = backup_key_path(tmp_path)
    assert path.read_bytes() == made.raw
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_backup_secret(tmp_path) == made
    assert load_backup_secret(tmp_path) == made
    other = tmp_path / "other"
    other.mkdir()
    assert ensure_backup_secret(other) != made  # random, per owner


def test_never_overwritten(tmp_path: Path) -> None:
    first = ensure_backup_secret(tmp_path)
    with pytest.raises(IdentityError, match="refusing to overwrite"):
        write_backup_secret(tmp_path, BackupSecret.generate())
    assert load_backup_secret(tmp_path) == first


def test_lost_race_loads_the_winners(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    winner = BackupSecret(b"\7" * 32)
    real_write = write_backup_secret

    def racing(data_dir: Path, secret: BackupSecret) -> None:
        real_write(data_dir, winner)  # the other process, just before us
        real_write(data_dir, secret)

    monkeypatch.setattr("plexinode.shards.secret.write_backup_secret", racing)
    assert ensure_backup_secret(tmp_path) == winner


def test_unwritable_data_dir(tmp_path: Path) -> None:
    with pytest.raises(IdentityError, match="cannot write"):
        ensure_backup_secret(tmp_path / "missing")
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize(
    ("content", "found"), [(b"", "0 found"), (b"x" * 31, "31"), (b"x" * 33, "more")]
)
def test_wrong_size(tmp_path: Path, content: bytes, found: str) -> None:
    backup_key_path(tmp_path).write_bytes(content)
    with pytest.raises(IdentityError, match=f"corrupt: a backup secret is 32 bytes, {found}"):
        load_backup_secret(tmp_path)
    with pytest.raises(IdentityError, match="corrupt"):
        ensure_backup_secret(tmp_path)


def test_missing_and_unreadable(tmp_path: Path) -> None:
    with pytest.raises(IdentityError, match="missing"):
        load_backup_secret(tmp_path)
    backup_key_path(tmp_path).mkdir()
    with pytest.raises(IdentityError, match="cannot read"):
        load_backup_secret(tmp_path)


def test_wide_permissions_are_fixed(tmp_path: Path) -> None:
    made = ensure_backup_secret(tmp_path)
    backup_key_path(tmp_path).chmod(0o644)
    assert load_backup_secret(tmp_path) == made
    assert stat.S_IMODE(backup_key_path(tmp_path).stat().st_mode) == 0o600


def test_the_secret_is_32_bytes_and_never_shown() -> None:
    with pytest.raises(IdentityError, match="32 bytes"):
        BackupSecret(b"short")
    secret = BackupSecret.generate()
    assert secret.raw.hex() not in repr(secret)
    assert repr(secret) == "BackupSecret()"
