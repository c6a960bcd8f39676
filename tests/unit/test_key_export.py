"""The key export file (plexinode.security.export): round trips and every refusal."""

from __future__ import annotations

import base64
import json

import nacl.bindings
import nacl.pwhash.argon2id as argon2id
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plexinode.identity import Identity
from plexinode.security import export
from plexinode.security.export import (
    DEFAULT_LIMITS,
    MAX_MEMLIMIT,
    MAX_OPSLIMIT,
    ExportError,
    KdfLimits,
    OwnerKeys,
    WrongPassphrase,
    open_sealed,
    passphrase_bytes,
    seal,
)
from plexinode.shards.secret import BackupSecret

#: Tests use Argon2id's smallest cost: the format is the same, the work is not.
SMALL = KdfLimits(argon2id.OPSLIMIT_MIN, argon2id.MEMLIMIT_MIN)
SALT = bytes(range(16))
NONCE = bytes(range(24))


def keys(seed: bytes = b"\1" * 32, secret: bytes = b"\2" * 32) -> OwnerKeys:
    return OwnerKeys(Identity.from_seed(seed), BackupSecret(secret))


def sealed(passphrase: bytes = b"correct horse", limits: KdfLimits = SMALL) -> bytes:
    return seal(keys(), passphrase, salt=SALT, nonce=NONCE, limits=limits)


def edit(data: bytes, **changes: object) -> bytes:
    header, _, body = data.partition(b"\n")
    doc = json.loads(body)
    for name, value in changes.items():
        if value is None:
            del doc[name]
        else:
            doc[name] = value
    return header + b"\n" + json.dumps(doc).encode()


@settings(max_examples=25, deadline=None)
@given(
    st.binary(min_size=32, max_size=32),
    st.binary(min_size=32, max_size=32),
    st.text(min_size=1, max_size=40),
    st.binary(min_size=16, max_size=16),
    st.binary(min_size=24, max_size=24),
)
def test_round_trip(seed: bytes, secret: bytes, text: str, salt: bytes, nonce: bytes) -> None:
    phrase = passphrase_bytes(text)
    data = seal(keys(seed, secret), phrase, salt=salt, nonce=nonce, limits=SMALL)
    assert len(data) <= export.MAX_FILE_BYTES
    opened = open_sealed(data, phrase)
    assert opened.identity.seed() == seed
    assert opened.backup_secret.raw == secret
    assert opened.identity.node_id == Identity.from_seed(seed).node_id


def test_the_file_states_its_format_version_and_limits() -> None:
    first, _, body = sealed().partition(b"\n")
    assert first.decode() == export.HEADER_LINE
    doc = json.loads(body)
    assert doc["format"] == "plexinode-keys"
    assert doc["version"] == 1
    assert (doc["kdf"], doc["opslimit"], doc["memlimit"]) == ("argon2id", 1, 8192)
    assert doc["cipher"] == "xchacha20poly1305"
    # The secrets are not in the clear.
    assert base64.b64encode(b"\2" * 32) not in body
    assert base64.b64encode(b"\1" * 32) not in body


def test_repr_shows_no_secret() -> None:
    shown = repr(keys()) + repr(BackupSecret(b"\2" * 32))
    assert "\\x02" not in shown
    assert "x02" not in shown


def test_wrong_passphrase() -> None:
    with pytest.raises(WrongPassphrase, match="wrong passphrase"):
        open_sealed(sealed(b"right"), b"wrong")


@pytest.mark.parametrize(
    "changes",
    [
        {"salt": base64.b64encode(bytes(16)).decode()},
        {"nonce": base64.b64encode(bytes(24)).decode()},
        {"opslimit": 2},
        {"memlimit": 16384},
    ],
)
def test_an_altered_header_does_not_open(changes: dict[str, object]) -> None:
    with pytest.raises(WrongPassphrase):
        open_sealed(edit(sealed(), **changes), b"correct horse")


def test_an_altered_seal_does_not_open() -> None:
    doc = json.loads(sealed().partition(b"\n")[2])
    raw = bytearray(base64.b64decode(doc["sealed"]))
    raw[0] ^= 1
    with pytest.raises(WrongPassphrase):
        open_sealed(edit(sealed(), sealed=base64.b64encode(bytes(raw)).decode()), b"x")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not a plexinode key export"),
        (b"PK\x03\x04 a zip file", "not a plexinode key export"),
        (export.HEADER_LINE.encode(), "not a plexinode key export"),
        (b"x" * (export.MAX_FILE_BYTES + 1), "larger than"),
        (export.HEADER_LINE.encode() + b"\n[1, 2]", "corrupt \\(no format\\)"),
        (export.HEADER_LINE.encode() + b'\n{"format": "other"}', "no format"),
        (export.HEADER_LINE.encode() + b"\n\xff\xfe", "truncated or corrupt"),
    ],
)
def test_foreign_and_corrupt_files(data: bytes, message: str) -> None:
    with pytest.raises(ExportError, match=message):
        open_sealed(data, b"x")


def test_truncated_file() -> None:
    data = sealed()
    for cut in (len(data) - 1 - 10, len(data) // 2, len(export.HEADER_LINE) + 5):
        with pytest.raises(ExportError, match="truncated or corrupt"):
            open_sealed(data[:cut], b"correct horse")


def test_other_version_and_algorithms() -> None:
    with pytest.raises(ExportError, match="format version 2; this plexinode reads version 1"):
        open_sealed(edit(sealed(), version=2), b"x")
    with pytest.raises(ExportError, match="format version None"):
        open_sealed(edit(sealed(), version=None), b"x")
    with pytest.raises(ExportError, match="'scrypt'"):
        open_sealed(edit(sealed(), kdf="scrypt"), b"x")
    with pytest.raises(ExportError, match="'aes'"):
        open_sealed(edit(sealed(), cipher="aes"), b"x")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("salt", None, "corrupt \\(salt\\)"),
        ("salt", 5, "corrupt \\(salt\\)"),
        ("nonce", "!!!", "corrupt \\(nonce\\)"),
        ("salt", base64.b64encode(bytes(15)).decode(), "salt has 15 bytes"),
        ("sealed", base64.b64encode(bytes(200)).decode(), "sealed has 200 bytes"),
        ("opslimit", "3", "corrupt \\(opslimit, memlimit\\)"),
        ("memlimit", 8192.0, "corrupt \\(opslimit, memlimit\\)"),
        ("opslimit", True, "corrupt \\(opslimit, memlimit\\)"),
    ],
)
def test_corrupt_fields(name: str, value: object, message: str) -> None:
    with pytest.raises(ExportError, match=message):
        open_sealed(edit(sealed(), **{name: value}), b"correct horse")


@pytest.mark.parametrize(
    ("opslimit", "memlimit", "message"),
    [
        (0, 8192, "opslimit 0 is out of bounds"),
        (MAX_OPSLIMIT + 1, 8192, "opslimit 65 is out of bounds"),
        (1, 4096, "memlimit 4096 bytes is out of bounds"),
        (1, MAX_MEMLIMIT + 1, "is out of bounds"),
        (1, 2**40, "is out of bounds"),
        (5, MAX_MEMLIMIT, "more work than this plexinode allows"),
    ],
)
def test_a_hostile_file_cannot_ask_for_unbounded_work(
    opslimit: int, memlimit: int, message: str
) -> None:
    # Refused before anything is derived: this test would allocate a terabyte otherwise.
    with pytest.raises(ExportError, match=message):
        open_sealed(edit(sealed(), opslimit=opslimit, memlimit=memlimit), b"x")
    with pytest.raises(ExportError, match=message):
        seal(keys(), b"x", salt=SALT, nonce=NONCE, limits=KdfLimits(opslimit, memlimit))


def test_the_default_limits_are_readable_and_moderate() -> None:
    DEFAULT_LIMITS.check()
    assert DEFAULT_LIMITS.opslimit >= argon2id.OPSLIMIT_MODERATE
    assert DEFAULT_LIMITS.memlimit >= argon2id.MEMLIMIT_MODERATE
    KdfLimits(4, MAX_MEMLIMIT).check()  # the "sensitive" preset is accepted


def test_salt_and_nonce_sizes() -> None:
    with pytest.raises(ValueError, match="salt"):
        seal(keys(), b"x", salt=bytes(15), nonce=NONCE, limits=SMALL)
    with pytest.raises(ValueError, match="nonce"):
        seal(keys(), b"x", salt=SALT, nonce=bytes(12), limits=SMALL)


def test_a_seed_that_does_not_match_its_node_id() -> None:
    # Only a writer with the passphrase can make this file (or a bug): still refused.
    payload = b"\1" * 32 + b"\2" * 32 + bytes(32)
    limits = SMALL
    box = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
        payload,
        export._associated(1, limits, SALT),
        NONCE,
        export._key(b"pw", SALT, limits),
    )
    data = edit(sealed(b"pw"), sealed=base64.b64encode(box).decode())
    with pytest.raises(ExportError, match="node ID does not match"):
        open_sealed(data, b"pw")


def test_passphrases() -> None:
    # One passphrase, however its accents were composed.
    assert passphrase_bytes("caf\u00e9") == passphrase_bytes("cafe\u0301")
    assert passphrase_bytes(" spaces count ") == b" spaces count "
    with pytest.raises(ExportError, match="empty"):
        passphrase_bytes("")
    assert len(passphrase_bytes("x" * 1024)) == 1024
    with pytest.raises(ExportError, match="longer than 1024 bytes"):
        passphrase_bytes("\u00e9" * 513)
