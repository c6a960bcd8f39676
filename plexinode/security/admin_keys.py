"""Admin key files: the keys that sign a private network's grants and revocations.

A private network's **root key** is made by ``plexinode init --network NAME`` as
``DATA_DIR/root.key``; other admin keys by ``plexinode network admin-key generate FILE``, and
the root makes them admins with ``network grant admin``. The running node never reads one:
the CLI reads the file given with ``--admin-key`` (by default the data dir's ``root.key``),
signs the statement itself and hands the node only the signed statement, so an admin key can
live on a removable disk and be used only when needed (docs/operations.md).

The file is the same shape as a node's ``identity.key`` (a header line, then JSON with the
Ed25519 seed in base64) with its own ``type``, so that neither can be mistaken for the other::

    {"version": 1, "type": "plexinode-admin-key", "seed": "...", "public_key": "<64 hex>"}
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path
from typing import Final

from plexinode.errors import IdentityError
from plexinode.fsutil import atomic_write
from plexinode.identity import SEED_BYTES, Identity

#: The root key's file name in the data dir of the node that made the network.
ROOT_KEY_FILE: Final = "root.key"
#: The most an admin key file may hold (one is about 250 bytes). Only this much and one byte
#: more is read, so that ``--admin-key /dev/zero`` fails at once.
MAX_ADMIN_KEY_BYTES: Final = 4096
_TYPE: Final = "plexinode-admin-key"
_VERSION: Final = 1
_HEADER: Final = (
    "plexinode admin key. This file is secret: whoever has it administers the network.\n"
)


def admin_key_bytes(key: Identity) -> bytes:
    """The file contents for `key`."""
    doc = {
        "version": _VERSION,
        "type": _TYPE,
        "seed": base64.b64encode(key.seed()).decode("ascii"),
        "public_key": key.public_key.hex(),
    }
    return (_HEADER + json.dumps(doc, indent=2) + "\n").encode()


def write_admin_key(path: Path, key: Identity) -> None:
    """Write `key` to a new file at `path` (0600).

    Raises:
        IdentityError: The file exists (never overwritten) or cannot be written.
    """
    try:
        atomic_write(path, admin_key_bytes(key), mode=0o600, overwrite=False)
    except FileExistsError:
        raise IdentityError(f"{path} already exists: refusing to overwrite a key") from None
    except OSError as exc:
        raise IdentityError(f"cannot write {path}: {exc.strerror}") from None


def read_admin_key(path: Path) -> Identity:
    """The admin key in the file at `path`.

    Raises:
        IdentityError: Missing, unreadable, too large (over :data:`MAX_ADMIN_KEY_BYTES`), or
            not an admin key file (one line saying which).
    """
    try:
        with path.open("rb") as file:
            data = file.read(MAX_ADMIN_KEY_BYTES + 1)
    except FileNotFoundError:
        raise IdentityError(f"{path} does not exist (the admin key file)") from None
    except OSError as exc:
        raise IdentityError(f"cannot read {path}: {exc.strerror}") from None
    if len(data) > MAX_ADMIN_KEY_BYTES:
        raise IdentityError(
            f"{path} is too large to be an admin key ({MAX_ADMIN_KEY_BYTES} bytes at most)"
        )
    try:
        _header, _, body = data.decode("utf-8").partition("\n")
        doc = json.loads(body)
        if not isinstance(doc, dict) or doc.get("type") != _TYPE:
            raise IdentityError(f"{path} is not an admin key file")
        if doc.get("version") != _VERSION:
            raise IdentityError(f"{path}: unsupported admin key file version")
        seed = base64.b64decode(doc["seed"], validate=True)
        if len(seed) != SEED_BYTES:
            raise ValueError("seed length")
        key = Identity.from_seed(seed)
    except IdentityError:
        raise
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, binascii.Error):
        raise IdentityError(f"{path} is corrupt (cannot parse the admin key)") from None
    if doc.get("public_key") != key.public_key.hex():
        raise IdentityError(f"{path} is corrupt (its public key does not match its seed)")
    return key
