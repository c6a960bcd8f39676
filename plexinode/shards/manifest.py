"""The manifest: what a backup is made of, signed by its owner, readable in part only by it.

A manifest names the backup (a random 16-byte ID), its code (k of n), when it was made and
the lease it was made with, and every segment in stream order: the segment's ID, its *home*
(the backup under which it was first placed, and so whose holders keep it: a segment reused
from an earlier backup is not moved, and the placement rule finds its holders by that ID), the
size of its blocks and the n Merkle roots of its shares. That public part is what holders and
repairers need: to check each block they store or fetch, and to regenerate a lost share and
check it against its root, with neither the owner nor any plaintext.

The owner's signature covers the content only. Who holds which share changes through repair
without the owner, so holders are named by provider records that the holders sign, never here.

The rest is the owner's alone (`Private`, sealed with XChaCha20-Poly1305 under
`derive.manifest_key`, the owner's key and the backup ID as associated data): the backup's
name, where it was read from, the length of every segment (so the exact sizes, the stream's
data and index lengths) — so a holder learns no name and no exact size (docs/security.md).

The segment table is stored by column (`SegmentTable`): IDs, home numbers, block sizes and
roots as four byte strings rather than one small array per segment, so a manifest of tens of
thousands of segments decodes in a few allocations and is checked by arithmetic on lengths.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Final

import nacl.bindings
import nacl.exceptions

from plexinode.errors import AuthenticationError, DecodeError
from plexinode.identity import PUBLIC_KEY_BYTES, SIGNATURE_BYTES
from plexinode.shards import coding, merkle, pipeline
from plexinode.shards.derive import KEY_BYTES, SEGMENT_ID_BYTES
from plexinode.signing.signed import Signed, domain
from plexinode.wire import codec
from plexinode.wire.schema import Bytes, Float, Int, ListOf, Str, Struct, wire

BACKUP_ID_BYTES: Final = 16
NONCE_BYTES: Final = 24
VERSION: Final = 1
#: The largest encoded manifest: about 170,000 segments at n = 10 (some 170 GiB of 1 MiB
#: segments). Every holder keeps the manifest and a restore decodes it whole, so it is bounded.
MAX_MANIFEST_BYTES: Final = 64 << 20
#: Distinct homes one manifest may name (backups whose segments it reuses, and itself).
MAX_HOMES: Final = 4096
MAX_NAME_CHARS: Final = 255
MAX_SOURCE_CHARS: Final = 4096
_U16: Final = struct.Struct(">H")
_U32: Final = struct.Struct(">I")
_LIMITS: Final = codec.Limits(
    max_buffer=MAX_MANIFEST_BYTES,
    max_str=MAX_SOURCE_CHARS,
    max_bin=MAX_MANIFEST_BYTES,
    max_array=MAX_HOMES,
    max_map=0,
)


class ManifestError(Exception):
    """A manifest (or its private part) that is malformed, inconsistent or not the owner's."""


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    """One segment as the manifest lists it (`length` only where the private part is known)."""

    identity: bytes
    home: bytes
    block_size: int
    roots: tuple[bytes, ...]


class SegmentTable:
    """Builds the four columns of a manifest's segment table, one segment at a time."""

    def __init__(self, backup_id: bytes, n: int) -> None:
        self._n = n
        self.homes: list[bytes] = [backup_id]
        self._home_numbers = {backup_id: 0}
        self._identities = bytearray()
        self._home_of = bytearray()
        self._block_sizes = bytearray()
        self._roots = bytearray()
        self.lengths: list[int] = []

    def __len__(self) -> int:
        return len(self.lengths)

    def add(
        self, identity: bytes, home: bytes, length: int, block_size: int, roots: Sequence[bytes]
    ) -> None:
        """Append a segment (`home` is the backup whose holders keep it)."""
        if len(identity) != SEGMENT_ID_BYTES or len(roots) != self._n:
            raise ValueError("a segment has a 32-byte ID and n roots")
        number = self._home_numbers.get(home)
        if number is None:
            if len(self.homes) >= MAX_HOMES:
                raise ManifestError(f"a backup reuses segments of at most {MAX_HOMES - 1} others")
            number = self._home_numbers[home] = len(self.homes)
            self.homes.append(home)
        self._identities += identity
        self._home_of += _U16.pack(number)
        self._block_sizes += _U32.pack(block_size)
        self._roots += b"".join(roots)
        self.lengths.append(length)

    def columns(self) -> tuple[tuple[bytes, ...], bytes, bytes, bytes, bytes]:
        """The columns, as the manifest's fields: homes, IDs, home numbers, block sizes, roots."""
        return (
            tuple(self.homes),
            bytes(self._identities),
            bytes(self._home_of),
            bytes(self._block_sizes),
            bytes(self._roots),
        )


@dataclass(frozen=True, slots=True)
class Private(Struct):
    """The owner-only part of a manifest.

    Attributes:
        name: the backup's name.
        source: the path it was read from, as the owner gave it.
        data_bytes: the stream's length before its index (the files' contents).
        index_bytes: the index's length (`archive`), after the data.
        lengths: every segment's plaintext length, 4 bytes big-endian each, in stream order.
    """

    name: str = wire(Str(MAX_NAME_CHARS))
    source: str = wire(Str(MAX_SOURCE_CHARS))
    data_bytes: int = wire(Int())
    index_bytes: int = wire(Int())
    lengths: bytes = wire(Bytes(0, MAX_MANIFEST_BYTES))

    def segment_lengths(self) -> list[int]:
        """The lengths as integers."""
        return [value for (value,) in _U32.iter_unpack(self.lengths)]

    @classmethod
    def of(
        cls, name: str, source: str, data_bytes: int, index_bytes: int, lengths: Sequence[int]
    ) -> Private:
        """A private part listing `lengths`."""
        return cls(name, source, data_bytes, index_bytes, b"".join(_U32.pack(x) for x in lengths))


_DOMAIN: Final = domain(b"plexinode-manifest-v1\x00")


@dataclass(frozen=True, slots=True)
class Manifest(Signed):
    """A backup's manifest (see the module docstring). `check` before trusting one."""

    DOMAIN: ClassVar[bytes] = _DOMAIN
    SIGNER: ClassVar[str] = "owner"

    version: int = wire(Int(VERSION, VERSION))
    owner: bytes = wire(Bytes(PUBLIC_KEY_BYTES, PUBLIC_KEY_BYTES))
    backup_id: bytes = wire(Bytes(BACKUP_ID_BYTES, BACKUP_ID_BYTES))
    created: float = wire(Float())
    lease_expires: float = wire(Float())
    k: int = wire(Int(1, coding.MAX_SHARES))
    n: int = wire(Int(1, coding.MAX_SHARES))
    homes: tuple[bytes, ...] = wire(ListOf(Bytes(BACKUP_ID_BYTES, BACKUP_ID_BYTES), MAX_HOMES))
    identities: bytes = wire(Bytes(0, MAX_MANIFEST_BYTES))
    home_of: bytes = wire(Bytes(0, MAX_MANIFEST_BYTES))
    block_sizes: bytes = wire(Bytes(0, MAX_MANIFEST_BYTES))
    roots: bytes = wire(Bytes(0, MAX_MANIFEST_BYTES))
    nonce: bytes = wire(Bytes(NONCE_BYTES, NONCE_BYTES))
    sealed: bytes = wire(Bytes(0, MAX_MANIFEST_BYTES))
    signature: bytes = wire(Bytes(SIGNATURE_BYTES, SIGNATURE_BYTES), default=b"")

    @property
    def segment_count(self) -> int:
        """How many segments the backup has."""
        return len(self.identities) // SEGMENT_ID_BYTES

    def segment(self, index: int) -> SegmentInfo:
        """Segment `index` (0-based, stream order)."""
        if not 0 <= index < self.segment_count:
            raise IndexError(f"segment {index} of {self.segment_count}")
        at = index * SEGMENT_ID_BYTES
        roots_at = index * self.n * merkle.HASH_BYTES
        roots = self.roots[roots_at : roots_at + self.n * merkle.HASH_BYTES]
        return SegmentInfo(
            identity=self.identities[at : at + SEGMENT_ID_BYTES],
            home=self.homes[_U16.unpack_from(self.home_of, 2 * index)[0]],
            block_size=_U32.unpack_from(self.block_sizes, 4 * index)[0],
            roots=tuple(
                roots[i : i + merkle.HASH_BYTES] for i in range(0, len(roots), merkle.HASH_BYTES)
            ),
        )

    def segments(self) -> list[SegmentInfo]:
        """Every segment, in stream order."""
        return [self.segment(i) for i in range(self.segment_count)]

    def check(self) -> None:
        """Raise `ManifestError` unless the columns agree and the owner signed it."""
        count = self.segment_count
        if self.k > self.n:
            raise ManifestError(f"k ({self.k}) exceeds n ({self.n})")
        if len(self.identities) != count * SEGMENT_ID_BYTES:
            raise ManifestError("the segment IDs are not whole")
        if len(self.home_of) != 2 * count or len(self.block_sizes) != 4 * count:
            raise ManifestError("the segment columns disagree in length")
        if len(self.roots) != count * self.n * merkle.HASH_BYTES:
            raise ManifestError("the roots do not match n and the segment count")
        if (
            not self.homes
            or self.homes[0] != self.backup_id
            or len(set(self.homes)) != len(self.homes)
        ):
            raise ManifestError("the homes do not start with the backup itself, once each")
        if any(h >= len(self.homes) for (h,) in _U16.iter_unpack(self.home_of)):
            raise ManifestError("a segment names a home the manifest does not list")
        if any(size == 0 for (size,) in _U32.iter_unpack(self.block_sizes)):
            raise ManifestError("a segment has empty blocks")
        try:
            self.verify_signature()
        except AuthenticationError as exc:
            raise ManifestError("the manifest is not signed by its owner") from exc

    def to_bytes_checked(self) -> bytes:
        """The manifest as bytes (what holders store and send)."""
        return self.to_bytes(_LIMITS)

    @classmethod
    def decode(cls, data: bytes) -> Manifest:
        """Decode and `check` a manifest from bytes."""
        try:
            manifest = cls.from_bytes(data, _LIMITS)
        except DecodeError as exc:
            raise ManifestError(f"malformed manifest: {exc}") from None
        manifest.check()
        return manifest

    def open_private(self, key: bytes) -> Private:
        """The owner-only part, opened with `derive.manifest_key` (the owner only).

        Raises:
            ManifestError: the key is not this backup's, or the part does not agree with the
                segment table.
        """
        try:
            raw = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
                self.sealed, self.owner + self.backup_id, self.nonce, key
            )
            private = Private.from_wire(codec.unpack(raw, _LIMITS))
        except nacl.exceptions.CryptoError:
            raise ManifestError("the manifest's private part does not open with this key") from None
        except DecodeError as exc:
            raise ManifestError(f"malformed private part: {exc}") from None
        lengths = private.segment_lengths()
        if (
            len(private.lengths) != 4 * self.segment_count
            or sum(lengths) != private.data_bytes + private.index_bytes
        ):
            raise ManifestError("the private part does not match the segment table")
        for index, length in enumerate(lengths):
            expected = coding.block_size(pipeline.ciphertext_length(length), self.k)
            if _U32.unpack_from(self.block_sizes, 4 * index)[0] != expected:
                raise ManifestError(f"segment {index}'s length does not match its blocks")
        return private


def seal_private(
    private: Private, key: bytes, nonce: bytes, owner: bytes, backup_id: bytes
) -> bytes:
    """The sealed form of `private` for a manifest of `owner`'s backup `backup_id`."""
    if len(key) != KEY_BYTES or len(nonce) != NONCE_BYTES:
        raise ValueError("a 32-byte key and a 24-byte nonce")
    sealed: bytes = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
        codec.pack(private.to_wire()), owner + backup_id, nonce, key
    )
    return sealed


def build(
    *,
    owner: bytes,
    backup_id: bytes,
    created: float,
    lease_expires: float,
    k: int,
    n: int,
    table: SegmentTable,
    nonce: bytes,
    sealed: bytes,
) -> Manifest:
    """An unsigned manifest (sign it with ``signed_by``)."""
    coding.check_parameters(k, n)
    homes, identities, home_of, block_sizes, roots = table.columns()
    return Manifest(
        VERSION,
        owner,
        backup_id,
        created,
        lease_expires,
        k,
        n,
        homes,
        identities,
        home_of,
        block_sizes,
        roots,
        nonce,
        sealed,
    )
