"""The primitives of the stream handshake (:mod:`plexinode.net.handshake`), sans I/O.

The transcript hash, the key derivation, the one-shot AEAD, the X25519 exchange, the identity
payloads, and the sealing of each side's secretstream header after the handshake. Every
derivation here is spelled out in docs/protocol.md ("Secure streams"), and
tests/unit/test_handshake.py recomputes them from that page with plain hashlib and libsodium.
"""

from __future__ import annotations

import hashlib
from typing import Final

import nacl.bindings
import nacl.exceptions
import nacl.public

from plexinode.errors import AuthenticationError, HandshakeError, IdentityError
from plexinode.identity import PUBLIC_KEY_BYTES, Identity, NodeId, verify_signature

#: Hashed into h0: names every primitive, so a change of any of them changes every key.
PROTOCOL_NAME: Final = (
    b"plexinode-stream/2 SIGMA-I+psk X25519 Ed25519 XChaCha20-Poly1305 BLAKE2b-256"
)
#: Size of X25519 public keys, transcript hashes, AEAD keys, pre-shared and session keys.
KEY_BYTES: Final = 32
#: Poly1305 tag size of XChaCha20-Poly1305.
AEAD_TAG_BYTES: Final = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_ABYTES
#: Each handshake AEAD key encrypts exactly one message, so a constant nonce is safe.
_ZERO_NONCE: Final = bytes(nacl.bindings.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES)
#: Size of a secretstream header, and of one sealed for the peer (the header and an AEAD tag).
STREAM_HEADER_BYTES: Final = nacl.bindings.crypto_secretstream_xchacha20poly1305_HEADERBYTES
SEALED_HEADER_BYTES: Final = STREAM_HEADER_BYTES + AEAD_TAG_BYTES

# BLAKE2b personalisations (at most 16 bytes): one per purpose, so the same inputs can never
# yield the same key for two purposes.
PERSON_TRANSCRIPT: Final = b"pxn-hs-transcrpt"
PERSON_PSK: Final = b"pxn-hs-psk-mix"
PERSON_MSG2: Final = b"pxn-hs-msg2-key"
PERSON_MSG3: Final = b"pxn-hs-msg3-key"
PERSON_I2R: Final = b"pxn-stream-i2r"
PERSON_R2I: Final = b"pxn-stream-r2i"
PERSON_HEADER_I2R: Final = b"pxn-header-i2r"
PERSON_HEADER_R2I: Final = b"pxn-header-r2i"


def mix(transcript: bytes, data: bytes) -> bytes:
    """One step of the transcript hash: ``H(transcript || data)``."""
    return hashlib.blake2b(
        transcript + data, digest_size=KEY_BYTES, person=PERSON_TRANSCRIPT
    ).digest()


def kdf(secret: bytes, data: bytes, person: bytes) -> bytes:
    """``KDF(secret, data, person)``: keyed BLAKE2b-256 with one personalisation per purpose."""
    return hashlib.blake2b(data, digest_size=KEY_BYTES, key=secret, person=person).digest()


def mix_psk(shared_secret: bytes, psk: bytes) -> bytes:
    """The chaining key every handshake key is derived from: ``KDF(ss, psk, "pxn-hs-psk-mix")``.

    Whoever lacks `psk` cannot compute it, even when it made the Diffie-Hellman itself."""
    return kdf(shared_secret, psk, PERSON_PSK)


def initial_transcript(prologue: bytes) -> bytes:
    """``h1 = H(H(PROTOCOL_NAME) || prologue)``."""
    if not isinstance(prologue, bytes):
        raise TypeError("prologue must be bytes")
    h0 = hashlib.blake2b(PROTOCOL_NAME, digest_size=KEY_BYTES, person=PERSON_TRANSCRIPT).digest()
    return mix(h0, prologue)


def new_ephemeral(secret: bytes | None) -> nacl.public.PrivateKey:
    """A fresh X25519 key, or the one `secret` gives (deterministic simulations)."""
    return nacl.public.PrivateKey.generate() if secret is None else nacl.public.PrivateKey(secret)


def dh(private: nacl.public.PrivateKey, remote_public: bytes) -> bytes:
    """X25519; a low-order remote key is refused (HandshakeError)."""
    try:
        return bytes(nacl.bindings.crypto_scalarmult(bytes(private), remote_public))
    except nacl.exceptions.CryptoError:
        # libsodium refuses low-order points (the result would be all zeros, a key that any
        # attacker knows).
        raise HandshakeError("peer sent an invalid ephemeral key") from None


def seal(key: bytes, transcript: bytes, payload: bytes) -> bytes:
    """XChaCha20-Poly1305 under a one-use key, the transcript as associated data."""
    return bytes(
        nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
            payload, transcript, _ZERO_NONCE, key
        )
    )


def open_sealed(key: bytes, transcript: bytes, ciphertext: bytes, what: str) -> bytes:
    """Undo :func:`seal`; HandshakeError naming `what` when it does not authenticate."""
    try:
        return bytes(
            nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
                ciphertext, transcript, _ZERO_NONCE, key
            )
        )
    except nacl.exceptions.CryptoError:
        raise HandshakeError(
            f"cannot decrypt {what}: tampered, from another session, or the peer lacks the "
            "network key (or uses a different prologue)"
        ) from None


def identity_payload(identity: Identity, label: bytes, transcript: bytes) -> bytes:
    """``s || Sign(s, label || transcript || s)``."""
    signature = identity.sign(label + transcript + identity.public_key)
    return identity.public_key + signature


def verify_identity_payload(
    payload: bytes, label: bytes, transcript: bytes, own: Identity, what: str
) -> tuple[bytes, NodeId]:
    """The key and node ID an identity payload proves; HandshakeError if it proves nothing, or
    proves our own identity."""
    public_key = payload[:PUBLIC_KEY_BYTES]
    signature = payload[PUBLIC_KEY_BYTES:]
    try:
        verify_signature(public_key, label + transcript + public_key, signature)
        node_id = NodeId.from_public_key(public_key)
    except (AuthenticationError, IdentityError):
        raise HandshakeError(f"bad signature in {what}") from None
    if node_id == own.node_id:
        raise HandshakeError("connected to ourselves (our own address, or a copy of our key)")
    return public_key, node_id


def seal_stream_header(header_key: bytes, transcript_hash: bytes, header: bytes) -> bytes:
    """A secretstream header sealed for the peer under this direction's header key (which is
    used once: the constant nonce is safe), bound to the whole handshake transcript."""
    return seal(header_key, transcript_hash, header)


def open_stream_header(header_key: bytes, transcript_hash: bytes, sealed: bytes) -> bytes:
    """The peer's secretstream header; HandshakeError if it was altered on the way."""
    if len(sealed) != SEALED_HEADER_BYTES:
        raise HandshakeError(
            f"stream header is {len(sealed)} bytes, expected {SEALED_HEADER_BYTES}"
        )
    try:
        return bytes(
            nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
                sealed, transcript_hash, _ZERO_NONCE, header_key
            )
        )
    except nacl.exceptions.CryptoError:
        raise HandshakeError(
            "the peer's stream header failed authentication (altered on the way)"
        ) from None
