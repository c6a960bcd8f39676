"""Admin key files (plexinode.security.admin_keys): written once, 0600, and every way a file
can be wrong is one line naming it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from plexinode.errors import IdentityError
from plexinode.identity import Identity
from plexinode.security.admin_keys import admin_key_bytes, read_admin_key, write_admin_key

KEY = Identity.from_seed(b"k" * 32)


def test_a_key_file_round_trips_and_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "admin.key"
    write_admin_key(path, KEY)
    assert path.stat().st_mode & 0o777 == 0o600
    assert read_admin_key(path).public_key == KEY.public_key
    with pytest.raises(IdentityError, match="already exists"):
        write_admin_key(path, Identity.from_seed(b"j" * 32))
    with pytest.raises(IdentityError, match="cannot write"):
        write_admin_key(tmp_path / "no" / "such" / "dir" / "admin.key", KEY)


def _doc(**changes: object) -> bytes:
    header, _, body = admin_key_bytes(KEY).decode().partition("\n")
    doc = {**json.loads(body), **changes}
    return (header + "\n" + json.dumps(doc)).encode()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"hello\n{}", "is not an admin key file"),
        (b"hello\n[1, 2]", "is not an admin key file"),
        (_doc(version=2), "unsupported admin key file version"),
        (_doc(seed="!!!"), "is corrupt"),
        (_doc(seed="AAAA"), "is corrupt"),
        (_doc(public_key="00" * 32), "does not match its seed"),
        (b"\xff\xfe", "is corrupt"),
    ],
)
def test_a_bad_key_file_is_one_line(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "admin.key"
    path.write_bytes(data)
    with pytest.raises(IdentityError, match=message):
        read_admin_key(path)


def test_a_missing_or_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(IdentityError, match="does not exist"):
        read_admin_key(tmp_path / "none.key")
    with pytest.raises(IdentityError, match="cannot read"):
        read_admin_key(tmp_path)  # a directory
