"""The memory of verified signatures: it never accepts what did not verify, hits only on the
same key, message and signature, and stays within its capacity."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plexinode.errors import AuthenticationError
from plexinode.identity import Identity, verify_signature
from plexinode.signing.cache import VerifiedSignatures

ALICE = Identity.from_seed(b"a" * 32)
BOB = Identity.from_seed(b"b" * 32)
MESSAGE = b"plexinode-test\x00a statement"
SIGNATURE = ALICE.sign(MESSAGE)


def test_a_verified_signature_is_remembered() -> None:
    cache = VerifiedSignatures(4)
    cache.verify(ALICE.public_key, MESSAGE, SIGNATURE)
    assert (cache.hits, cache.misses, len(cache)) == (0, 1, 1)
    cache.verify(ALICE.public_key, MESSAGE, SIGNATURE)
    cache.verify(ALICE.public_key, bytes(MESSAGE), bytes(SIGNATURE))  # equal bytes, new objects
    assert (cache.hits, cache.misses, len(cache)) == (2, 1, 1)


def test_a_bad_signature_is_refused_every_time_and_never_remembered() -> None:
    cache = VerifiedSignatures(4)
    forged = BOB.sign(MESSAGE)
    for _ in range(2):
        with pytest.raises(AuthenticationError, match="bad signature"):
            cache.verify(ALICE.public_key, MESSAGE, forged)
    assert (cache.hits, cache.misses, len(cache)) == (0, 2, 0)


@pytest.mark.parametrize(
    ("public_key", "message", "signature"),
    [
        (BOB.public_key, MESSAGE, SIGNATURE),  # another key
        (ALICE.public_key, MESSAGE + b"!", SIGNATURE),  # another message
        (ALICE.public_key, MESSAGE[:-1], SIGNATURE),  # a prefix of the message
        (ALICE.public_key, MESSAGE, SIGNATURE[:-1] + bytes([SIGNATURE[-1] ^ 1])),  # signature
        (ALICE.public_key, SIGNATURE[32:] + MESSAGE, SIGNATURE[:32] + bytes(32)),  # shifted
        (ALICE.public_key + SIGNATURE[:1], MESSAGE, SIGNATURE[1:]),  # lengths moved about
        (ALICE.public_key, MESSAGE, SIGNATURE + b"\x00"),
        (b"", MESSAGE, SIGNATURE),
    ],
)
def test_a_hit_needs_the_same_key_message_and_signature(
    public_key: bytes, message: bytes, signature: bytes
) -> None:
    cache = VerifiedSignatures(4)
    cache.verify(ALICE.public_key, MESSAGE, SIGNATURE)
    with pytest.raises(AuthenticationError):
        cache.verify(public_key, message, signature)
    assert (cache.hits, cache.misses, len(cache)) == (0, 2, 1)


def test_the_least_recently_used_signature_leaves_first() -> None:
    cache = VerifiedSignatures(2)
    signed = [(m, ALICE.sign(m)) for m in (b"one", b"two", b"three")]
    for message, signature in signed[:2]:
        cache.verify(ALICE.public_key, message, signature)
    cache.verify(ALICE.public_key, *signed[0])  # "one" is now the most recent
    cache.verify(ALICE.public_key, *signed[2])  # so "two" leaves
    assert (cache.hits, cache.misses, len(cache)) == (1, 3, 2)
    cache.verify(ALICE.public_key, *signed[0])
    cache.verify(ALICE.public_key, *signed[2])
    assert (cache.hits, cache.misses) == (3, 3)
    cache.verify(ALICE.public_key, *signed[1])  # checked again
    assert (cache.hits, cache.misses, len(cache)) == (3, 4, 2)


def test_capacity_and_clearing() -> None:
    with pytest.raises(ValueError, match="at least one"):
        VerifiedSignatures(0)
    cache = VerifiedSignatures(1000)
    for i in range(1500):
        message = i.to_bytes(2, "big")
        cache.verify(ALICE.public_key, message, ALICE.sign(message))
    assert len(cache) == 1000
    cache.clear()
    assert len(cache) == 0
    cache.verify(ALICE.public_key, MESSAGE, SIGNATURE)
    assert (cache.hits, cache.misses) == (0, 1501)


@given(st.binary(max_size=64), st.binary(max_size=64), st.booleans())
def test_the_cache_agrees_with_the_real_check(message: bytes, other: bytes, genuine: bool) -> None:
    cache = VerifiedSignatures(2)
    cache.verify(ALICE.public_key, other, ALICE.sign(other))  # something in memory already
    signature = (ALICE if genuine else BOB).sign(message)
    try:
        verify_signature(ALICE.public_key, message, signature)
        valid = True
    except AuthenticationError:
        valid = False
    for _ in range(2):
        try:
            cache.verify(ALICE.public_key, message, signature)
            assert valid
        except AuthenticationError:
            assert not valid
