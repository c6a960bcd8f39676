"""Signed statements: domains, signed bytes, signing and checking, encoding within limits."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plexinode.errors import AuthenticationError, DecodeError
from plexinode.identity import Identity
from plexinode.signing.cache import VerifiedSignatures
from plexinode.signing.signed import Signed, domain
from plexinode.wire.codec import Limits, pack
from plexinode.wire.schema import Bytes, Int, ListOf, Nested, Str, Struct, wire

AUTHOR = Identity.from_seed(b"n" * 32)
OTHER = Identity.from_seed(b"o" * 32)
NOTE_DOMAIN = domain(b"plexinode-test-note-v1\x00")
LIMITS = Limits(max_buffer=300, max_str=40, max_bin=64, max_array=8, max_map=0)


@dataclass(frozen=True, slots=True)
class Part(Struct):
    name: str = wire(Str(8))
    size: int = wire(Int(0, 1000))


@dataclass(frozen=True, slots=True)
class Note(Signed):
    DOMAIN: ClassVar[bytes] = NOTE_DOMAIN
    SIGNER: ClassVar[str] = "author"

    text: str = wire(Str(40))
    count: int = wire(Int())
    author: bytes = wire(Bytes(32, 32))
    parts: tuple[Part, ...] = wire(ListOf(Nested(Part), 4))
    signature: bytes = wire(Bytes(64, 64))


@dataclass(frozen=True, slots=True)
class Memo(Signed):
    """The same fields as :class:`Note` under another domain, its checks remembered."""

    DOMAIN: ClassVar[bytes] = domain(b"plexinode-test-memo-v1\x00")
    SIGNER: ClassVar[str] = "author"
    SIGNATURES: ClassVar[VerifiedSignatures | None] = VerifiedSignatures(8)

    text: str = wire(Str(40))
    count: int = wire(Int())
    author: bytes = wire(Bytes(32, 32))
    parts: tuple[Part, ...] = wire(ListOf(Nested(Part), 4))
    signature: bytes = wire(Bytes(64, 64))


def note(text: str = "hello", count: int = 300, parts: tuple[Part, ...] = ()) -> Note:
    return Note(text, count, b"", parts or (Part("a", 1), Part("b", 999)), b"").signed_by(AUTHOR)


# -- domains ----------------------------------------------------------------------------------


def test_a_domain_is_declared_once() -> None:
    assert domain(b"plexinode-test-once-v1\x00") == b"plexinode-test-once-v1\x00"
    with pytest.raises(ValueError, match="taken"):
        domain(b"plexinode-test-once-v1\x00")
    with pytest.raises(ValueError, match="taken"):
        domain(NOTE_DOMAIN)


@pytest.mark.parametrize(
    "prefix",
    [
        b"plexinode-test-v1",  # no NUL at the end
        b"\x00",  # nothing before it
        b"plexinode\x00test-v1\x00",  # a NUL inside: "plexinode\0" would be a prefix of it
        b"plexinode-test-v1\n\x00",  # not printable
        "plexinode-tést-v1\x00".encode(),  # not ASCII
    ],
)
def test_a_domain_is_printable_ascii_ending_in_one_nul(prefix: bytes) -> None:
    with pytest.raises(ValueError, match="NUL"):
        domain(prefix)


# -- signed bytes, signing, checking ----------------------------------------------------------


def test_the_signature_covers_the_domain_then_every_other_field_as_msgpack() -> None:
    signed = note()
    fields = ["hello", 300, AUTHOR.public_key, [["a", 1], ["b", 999]]]
    assert signed.signed_bytes() == b"plexinode-test-note-v1\x00" + pack(fields)
    assert signed.author == signed.signer_key == AUTHOR.public_key
    assert len(signed.signature) == 64
    signed.verify_signature()


def test_signing_sets_the_signer_whatever_the_field_held() -> None:
    claimed = Note("x", 1, OTHER.public_key, (), bytes(64)).signed_by(AUTHOR)
    assert claimed.author == AUTHOR.public_key
    assert claimed == Note("x", 1, b"", (), b"").signed_by(AUTHOR)
    claimed.verify_signature()


@pytest.mark.parametrize(
    "change",
    [
        {"text": "hellO"},
        {"count": 301},
        {"author": OTHER.public_key},
        {"parts": (Part("a", 1),)},
        {"signature": bytes(64)},
        {"signature": b"short"},
    ],
)
def test_any_changed_field_breaks_the_signature(change: dict[str, object]) -> None:
    with pytest.raises(AuthenticationError):
        dataclasses.replace(note(), **change).verify_signature()  # type: ignore[arg-type]


def test_a_signature_from_another_domain_never_verifies() -> None:
    signed = note()
    memo = Memo(signed.text, signed.count, signed.author, signed.parts, signed.signature)
    assert memo.signed_bytes()[len(Memo.DOMAIN) :] == signed.signed_bytes()[len(NOTE_DOMAIN) :]
    with pytest.raises(AuthenticationError):
        memo.verify_signature()
    memo.signed_by(AUTHOR).verify_signature()


def test_a_kind_with_a_cache_checks_each_signature_once() -> None:
    cache = Memo.SIGNATURES
    assert cache is not None
    memo = Memo("m", 1, b"", (), b"").signed_by(AUTHOR)
    hits, misses = cache.hits, cache.misses
    memo.verify_signature()
    memo.verify_signature()
    assert (cache.hits - hits, cache.misses - misses) == (1, 1)
    with pytest.raises(AuthenticationError):
        dataclasses.replace(memo, count=2).verify_signature()
    assert cache.misses - misses == 2


@dataclass(frozen=True, slots=True)
class SignatureFirst(Signed):
    DOMAIN: ClassVar[bytes] = domain(b"plexinode-test-first-v1\x00")
    SIGNER: ClassVar[str] = "author"

    signature: bytes = wire(Bytes(64, 64))
    author: bytes = wire(Bytes(32, 32))


@dataclass(frozen=True, slots=True)
class NoSigner(Signed):
    DOMAIN: ClassVar[bytes] = domain(b"plexinode-test-nosigner-v1\x00")
    SIGNER: ClassVar[str] = "signature"

    text: str = wire(Str(8))
    signature: bytes = wire(Bytes(64, 64))


@pytest.mark.parametrize(
    "statement", [SignatureFirst(bytes(64), bytes(32)), NoSigner("x", bytes(64))]
)
def test_a_class_without_the_shape_of_a_statement_is_refused(statement: Signed) -> None:
    with pytest.raises(TypeError, match="ends with its signature"):
        statement.signed_bytes()


# -- encoding ---------------------------------------------------------------------------------


def test_a_statement_round_trips_within_its_limits() -> None:
    signed = note()
    data = signed.to_bytes(LIMITS)
    assert data == pack(signed.to_wire())
    decoded = Note.from_bytes(data, LIMITS)
    assert decoded == signed
    decoded.verify_signature()


def test_nothing_is_encoded_beyond_the_limits() -> None:
    big = note(parts=tuple(Part("p" * 8, 1000) for _ in range(4)), text="t" * 40)
    with pytest.raises(ValueError, match="exceeds 100"):
        big.to_bytes(dataclasses.replace(LIMITS, max_buffer=100))


def test_the_buffer_size_is_checked_before_anything_is_parsed() -> None:
    with pytest.raises(DecodeError, match="exceeds 300"):
        Note.from_bytes(b"\xc1" * 301, LIMITS)  # not even msgpack: never looked at
    with pytest.raises(DecodeError, match="malformed"):
        Note.from_bytes(b"\xc1", LIMITS)
    tight = dataclasses.replace(LIMITS, max_str=4)
    with pytest.raises(DecodeError, match="malformed"):
        Note.from_bytes(note(text="long text").to_bytes(LIMITS), tight)  # msgpack's str cap
    with pytest.raises(DecodeError, match=r"Note\.count"):
        Note.from_bytes(pack(["x", -1, bytes(32), [], bytes(64)]), LIMITS)  # the schema


@given(st.text(max_size=40), st.integers(0, 2**64 - 1))
def test_any_note_round_trips_and_verifies(text: str, count: int) -> None:
    signed = Note(text, count, b"", (), b"").signed_by(AUTHOR)
    limits = dataclasses.replace(LIMITS, max_str=160)  # 40 characters of up to 4 bytes
    decoded = Note.from_bytes(signed.to_bytes(limits), limits)
    assert decoded == signed
    decoded.verify_signature()
