"""The segment cipher: XChaCha20-Poly1305 under the segment's own key.

A segment key is derived from the segment's content (`derive.segment_key`), so each key
encrypts exactly one plaintext, ever: the same plaintext gives the same key and the same
ciphertext, a different plaintext a different key. Nonce reuse, the failure that a fixed nonce
invites, needs two plaintexts under one key, which this construction never produces; the nonce
is therefore fixed (24 zero bytes) rather than random, which also makes a segment's ciphertext,
its zfec blocks and their Merkle roots a pure function of the plaintext and the secret — the
property that lets a repairer regenerate a lost share and check it against the manifest's root.

The segment ID is the associated data, so a ciphertext presented under another segment's ID
fails authentication even before the plaintext is checked against the ID.
"""

from __future__ import annotations

from typing import Final

import nacl.bindings
import nacl.exceptions

from plexinode.shards.derive import KEY_BYTES

TAG_BYTES: Final = 16
_NONCE: Final = bytes(24)


class SegmentAuthenticationError(Exception):
    """A segment's ciphertext does not authenticate under its key and ID."""


def seal(key: bytes, identity: bytes, plaintext: bytes | memoryview) -> bytes:
    """Encrypt `plaintext` (the segment whose ID is `identity`) under `key`."""
    if len(key) != KEY_BYTES:
        raise ValueError(f"a segment key is {KEY_BYTES} bytes")
    sealed: bytes = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
        bytes(plaintext), identity, _NONCE, key
    )
    return sealed


def unseal(key: bytes, identity: bytes, ciphertext: bytes) -> bytes:
    """Decrypt and authenticate a segment; `SegmentAuthenticationError` when it does not."""
    if len(key) != KEY_BYTES:
        raise ValueError(f"a segment key is {KEY_BYTES} bytes")
    try:
        plaintext: bytes = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
            ciphertext, identity, _NONCE, key
        )
    except nacl.exceptions.CryptoError as exc:
        raise SegmentAuthenticationError("the segment does not authenticate") from exc
    return plaintext
