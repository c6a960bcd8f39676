"""Everything the owner's backup secret derives: segment IDs, segment keys, chunker seeds.

The backup secret is 32 random bytes of the owner's, independent of its node keys (decision
47). Each derivation is a BLAKE2b keyed with the secret under its own personalisation, so no
output says anything about another:

================  ===========================  ====================================
output            input                        personalisation
================  ===========================  ====================================
segment ID        the segment's plaintext      ``pxn-seg-id``
segment key       the segment ID               ``pxn-seg-key``
chunker seed      nothing (empty input)        ``pxn-cdc-seed`` (63 of 64 bits)
manifest key      the backup ID                ``pxn-manifest``
================  ===========================  ====================================

Holders see segment IDs (they index shares by them). An ID is a keyed hash, so a holder that
does not have the secret can neither test a guess of the plaintext against it nor compute the
segment's key from it; two segments of one owner with the same plaintext have the same ID,
which is what lets a later backup skip a segment that is already placed (convergence within one
owner only: another owner's secret gives another ID and another key).

The segment key is a function of the segment's content (through its ID), so one key ever
encrypts one plaintext; that is why the cipher may use a fixed nonce (see `sealing`).
"""

from __future__ import annotations

import hashlib
from typing import Final

SECRET_BYTES: Final = 32
SEGMENT_ID_BYTES: Final = 32
KEY_BYTES: Final = 32

_SEGMENT_ID: Final = b"pxn-seg-id"
_SEGMENT_KEY: Final = b"pxn-seg-key"
_CHUNKER_SEED: Final = b"pxn-cdc-seed"
_MANIFEST_KEY: Final = b"pxn-manifest"


def _check(secret: bytes) -> None:
    if len(secret) != SECRET_BYTES:
        raise ValueError(f"a backup secret is {SECRET_BYTES} bytes")


def segment_id(secret: bytes, plaintext: bytes | memoryview) -> bytes:
    """The segment's identity: a keyed hash of its plaintext."""
    _check(secret)
    return hashlib.blake2b(
        plaintext, digest_size=SEGMENT_ID_BYTES, key=secret, person=_SEGMENT_ID
    ).digest()


def segment_key(secret: bytes, identity: bytes) -> bytes:
    """The key that encrypts the segment whose ID is `identity`."""
    _check(secret)
    if len(identity) != SEGMENT_ID_BYTES:
        raise ValueError(f"a segment ID is {SEGMENT_ID_BYTES} bytes")
    return hashlib.blake2b(
        identity, digest_size=KEY_BYTES, key=secret, person=_SEGMENT_KEY
    ).digest()


def chunker_seed(secret: bytes) -> int:
    """The owner's seed for the chunker's gear table: 63 bits, never 0 (0 is the public table).

    63, not 64: the compiled chunker shifts the seed left by one before it truncates to 64
    bits, so a seed with its top bit set overflows there.
    """
    _check(secret)
    raw = hashlib.blake2b(b"", digest_size=8, key=secret, person=_CHUNKER_SEED).digest()
    return (int.from_bytes(raw, "big") >> 1) or 1


def manifest_key(secret: bytes, backup_id: bytes) -> bytes:
    """The key of the owner-only part of the manifest of backup `backup_id`."""
    _check(secret)
    return hashlib.blake2b(
        backup_id, digest_size=KEY_BYTES, key=secret, person=_MANIFEST_KEY
    ).digest()
