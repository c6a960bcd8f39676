"""The key export file (``keys export`` / ``init --import``): an owner's keys under a passphrase.

A sans-I/O core: it turns keys, a passphrase and the random bytes the caller drew into the
file's bytes, and those bytes and a passphrase back into keys. The CLI reads and writes files.

What the file holds is what makes a new machine the same owner, and nothing else (decision 48):

* the node's Ed25519 seed: the node ID, the signer of the owner's manifests and pointer
  records, the owner of its leases and of its shares on holders;
* the backup secret (plexinode.shards.secret): every segment ID and key and every manifest key.

The network's keys, certificates and the founder's root key are not in it: a new machine joins
by invite (the root key is a separate offline copy, ``init --network`` says so). Settings,
tags and the database are the machine's; the catalogue of backups comes back from the DHT.

The file is text, so that it survives being mailed or printed::

    plexinode key export: a node's identity and backup secret, sealed with a passphrase
    {"format": "plexinode-keys", "version": 1, "kdf": "argon2id", "opslimit": 3,
     "memlimit": 268435456, "salt": "<base64>", "cipher": "xchacha20poly1305",
     "nonce": "<base64>", "sealed": "<base64>"}

(the JSON on one line). The key is Argon2id(passphrase, salt, opslimit, memlimit); the cipher
is XChaCha20-Poly1305 with the format, version, limits and salt as associated data, over the
96 bytes seed || backup secret || node ID (the node ID checks the seed once more). A reader
refuses limits beyond :data:`MAX_MEMLIMIT` and :data:`MAX_WORK` before it derives anything,
so a hostile file cannot make an import allocate gigabytes or run for minutes.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Final

import nacl.bindings
import nacl.exceptions
from nacl.pwhash import argon2id

from plexinode.errors import PlexinodeError
from plexinode.identity import NODE_ID_BYTES, SEED_BYTES, Identity
from plexinode.shards.derive import SECRET_BYTES
from plexinode.shards.secret import BackupSecret

FORMAT: Final = "plexinode-keys"
VERSION: Final = 1
HEADER_LINE: Final = (
    "plexinode key export: a node's identity and backup secret, sealed with a passphrase"
)
SALT_BYTES: Final = argon2id.SALTBYTES
NONCE_BYTES: Final = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
_KEY_BYTES: Final = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_KEYBYTES
_PAYLOAD_BYTES: Final = SEED_BYTES + SECRET_BYTES + NODE_ID_BYTES
_SEALED_BYTES: Final = _PAYLOAD_BYTES + nacl.bindings.crypto_aead_xchacha20poly1305_ietf_ABYTES
#: A file is well under 1 KiB; a reader reads at most this much (and one byte more).
MAX_FILE_BYTES: Final = 4096
#: A passphrase's longest UTF-8 form.
MAX_PASSPHRASE_BYTES: Final = 1024
#: The most memory a file may ask Argon2id for: libsodium's "sensitive" preset, 1 GiB (a
#: file this plexinode writes asks 256 MiB).
MAX_MEMLIMIT: Final = argon2id.MEMLIMIT_SENSITIVE
#: The most passes a file may ask for, whatever its memory.
MAX_OPSLIMIT: Final = 64
#: The most work (passes x memory) a file may ask for: the "sensitive" preset's, 4 passes
#: over 1 GiB, a few seconds here. Beyond it a file is refused before anything is derived.
MAX_WORK: Final = argon2id.OPSLIMIT_SENSITIVE * argon2id.MEMLIMIT_SENSITIVE


class ExportError(PlexinodeError):
    """A key export file cannot be used: foreign, corrupt, of another version, or asking too
    much of the machine."""


class WrongPassphrase(ExportError):
    """The passphrase does not open the file (or the file was altered)."""


@dataclass(frozen=True, slots=True)
class KdfLimits:
    """Argon2id's cost: passes over memory (bytes)."""

    opslimit: int
    memlimit: int

    def check(self) -> None:
        """Raise ExportError when these limits are out of the bounds a reader accepts."""
        if not argon2id.OPSLIMIT_MIN <= self.opslimit <= MAX_OPSLIMIT:
            raise ExportError(
                f"Argon2id opslimit {self.opslimit} is out of bounds "
                f"({argon2id.OPSLIMIT_MIN}..{MAX_OPSLIMIT})"
            )
        if not argon2id.MEMLIMIT_MIN <= self.memlimit <= MAX_MEMLIMIT:
            raise ExportError(
                f"Argon2id memlimit {self.memlimit} bytes is out of bounds "
                f"({argon2id.MEMLIMIT_MIN}..{MAX_MEMLIMIT})"
            )
        if self.opslimit * self.memlimit > MAX_WORK:
            raise ExportError(
                f"Argon2id opslimit {self.opslimit} over memlimit {self.memlimit} bytes is more "
                f"work than this plexinode allows ({MAX_WORK} byte-passes)"
            )


#: What ``keys export`` uses: libsodium's "moderate" preset, 3 passes over 256 MiB (about a
#: second on a small machine; decision 48).
DEFAULT_LIMITS: Final = KdfLimits(argon2id.OPSLIMIT_MODERATE, argon2id.MEMLIMIT_MODERATE)


@dataclass(frozen=True, slots=True)
class OwnerKeys:
    """What a key export carries: the node's identity and the owner's backup secret."""

    identity: Identity = field(repr=False)
    backup_secret: BackupSecret = field(repr=False)


def passphrase_bytes(text: str) -> bytes:
    """The bytes a passphrase stands for: its NFC form in UTF-8, so that the same passphrase
    typed on another system (which may compose accents differently) opens the file.

    Raises:
        ExportError: It is empty or longer than :data:`MAX_PASSPHRASE_BYTES`.
    """
    raw = unicodedata.normalize("NFC", text).encode("utf-8")
    if not raw:
        raise ExportError("the passphrase is empty")
    if len(raw) > MAX_PASSPHRASE_BYTES:
        raise ExportError(f"the passphrase is longer than {MAX_PASSPHRASE_BYTES} bytes")
    return raw


def _associated(version: int, limits: KdfLimits, salt: bytes) -> bytes:
    head = struct.pack(">HIQ", version, limits.opslimit, limits.memlimit)
    return FORMAT.encode("ascii") + b"\0" + head + salt


def _key(passphrase: bytes, salt: bytes, limits: KdfLimits) -> bytes:
    return bytes(
        argon2id.kdf(
            _KEY_BYTES, passphrase, salt, opslimit=limits.opslimit, memlimit=limits.memlimit
        )
    )


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def seal(
    keys: OwnerKeys,
    passphrase: bytes,
    *,
    salt: bytes,
    nonce: bytes,
    limits: KdfLimits = DEFAULT_LIMITS,
) -> bytes:
    """The export file's bytes for `keys` under `passphrase`.

    Args:
        keys: what to export.
        passphrase: from :func:`passphrase_bytes`.
        salt: :data:`SALT_BYTES` random bytes, new for each file.
        nonce: :data:`NONCE_BYTES` random bytes.
        limits: Argon2id's cost (within what a reader accepts).

    Raises:
        ValueError: The salt or nonce has the wrong size.
        ExportError: The limits are out of bounds.
    """
    if len(salt) != SALT_BYTES or len(nonce) != NONCE_BYTES:
        raise ValueError(f"the salt is {SALT_BYTES} bytes and the nonce {NONCE_BYTES}")
    limits.check()
    payload = keys.identity.seed() + keys.backup_secret.raw + keys.identity.node_id.raw
    sealed = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
        payload, _associated(VERSION, limits, salt), nonce, _key(passphrase, salt, limits)
    )
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "kdf": "argon2id",
        "opslimit": limits.opslimit,
        "memlimit": limits.memlimit,
        "salt": _b64(salt),
        "cipher": "xchacha20poly1305",
        "nonce": _b64(nonce),
        "sealed": _b64(sealed),
    }
    return (HEADER_LINE + "\n" + json.dumps(doc) + "\n").encode("ascii")


@dataclass(frozen=True, slots=True)
class _Header:
    limits: KdfLimits
    salt: bytes
    nonce: bytes
    sealed: bytes


def _document(data: bytes) -> dict[str, Any]:
    if len(data) > MAX_FILE_BYTES:
        raise ExportError(f"not a plexinode key export (larger than {MAX_FILE_BYTES} bytes)")
    first, newline, body = data.partition(b"\n")
    if first != HEADER_LINE.encode("ascii") or not newline:
        raise ExportError("not a plexinode key export")
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise ExportError("the key export is truncated or corrupt") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ExportError("the key export is corrupt (no format)")
    return doc


def _field(doc: dict[str, Any], name: str, size: int) -> bytes:
    try:
        raw = base64.b64decode(doc[name], validate=True)
    except (KeyError, TypeError, ValueError, binascii.Error):
        raise ExportError(f"the key export is corrupt ({name})") from None
    if len(raw) != size:
        raise ExportError(f"the key export is corrupt ({name} has {len(raw)} bytes)")
    return raw


def _header(data: bytes) -> _Header:
    doc = _document(data)
    version = doc.get("version")
    if version != VERSION:
        raise ExportError(
            f"the key export is format version {version!r}; this plexinode reads version "
            f"{VERSION} (a newer plexinode may read it)"
        )
    if doc.get("kdf") != "argon2id" or doc.get("cipher") != "xchacha20poly1305":
        raise ExportError(
            f"the key export uses {doc.get('kdf')!r}/{doc.get('cipher')!r}; "
            "this plexinode reads argon2id/xchacha20poly1305"
        )
    opslimit, memlimit = doc.get("opslimit"), doc.get("memlimit")
    if type(opslimit) is not int or type(memlimit) is not int:
        raise ExportError("the key export is corrupt (opslimit, memlimit)")
    limits = KdfLimits(opslimit, memlimit)
    limits.check()
    return _Header(
        limits,
        _field(doc, "salt", SALT_BYTES),
        _field(doc, "nonce", NONCE_BYTES),
        _field(doc, "sealed", _SEALED_BYTES),
    )


def open_sealed(data: bytes, passphrase: bytes) -> OwnerKeys:
    """The keys in an export file's bytes.

    Raises:
        ExportError: The bytes are not a key export, are truncated or corrupt, are of another
            version, or ask Argon2id for more than :data:`MAX_MEMLIMIT` / :data:`MAX_WORK`.
        WrongPassphrase: `passphrase` does not open it (or the sealed part was altered).
    """
    header = _header(data)
    key = _key(passphrase, header.salt, header.limits)
    try:
        payload = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
            header.sealed, _associated(VERSION, header.limits, header.salt), header.nonce, key
        )
    except nacl.exceptions.CryptoError:
        raise WrongPassphrase(
            "wrong passphrase (or the key export was altered after it was written)"
        ) from None
    seed, rest = payload[:SEED_BYTES], payload[SEED_BYTES:]
    secret, node_id = rest[:SECRET_BYTES], rest[SECRET_BYTES:]
    identity = Identity.from_seed(seed)
    if identity.node_id.raw != node_id:
        raise ExportError("the key export is corrupt (its node ID does not match its key)")
    return OwnerKeys(identity, BackupSecret(secret))
