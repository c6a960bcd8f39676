"""Signed statements: one shape for everything a node signs for other nodes to relay.

DHT records, membership claims, cluster-state entries and invite tokens travel far from their
author, through nodes that need not be trusted, so each carries its author's own Ed25519
signature (the datagram's signature proves only who *relayed* it). They share one shape, kept
here, so that each kind of statement only declares its fields:

1. **A statement is a wire struct** (:class:`Signed`, a :class:`~plexinode.wire.schema.Struct`)
   whose last field is ``signature`` and one of whose fields, named by :attr:`Signed.SIGNER`,
   holds the signer's Ed25519 public key.
2. **The signature covers** ``DOMAIN || msgpack(fields)``: the kind's domain string, then the
   msgpack array of every field but the signature, in declaration order and in wire form
   (integers in their shortest form, byte strings as ``bin``, nested structs as arrays). That is
   exactly what ``msgpack.packb(..., use_bin_type=True)`` produces, so the bytes are canonical:
   a verifier rebuilds them from the decoded fields rather than trusting bytes it received, and
   a statement re-encoded differently on the wire still verifies.
3. **Domains are separate.** Each kind has its own domain string, ``plexinode-<kind>-v<n>\\0``,
   declared once through :func:`domain`, which refuses a string another kind declared and any
   string with a NUL byte before its end. No domain is then a prefix of another, so a signature
   made for one kind of statement can never pass for another kind.
4. **Sizes come first.** A statement decoded on its own (:meth:`Signed.from_bytes`) has its
   buffer length checked against the limits before anything is parsed, msgpack's caps checked
   before anything is allocated, then every field checked by the schema; only then may a caller
   check the signature, the expensive step, last. :meth:`Signed.to_bytes` refuses to produce
   what a receiver with the same limits would refuse.

A kind of statement whose signatures are checked over and over can name a
:class:`~plexinode.signing.cache.VerifiedSignatures` in :attr:`Signed.SIGNATURES`: every check
of that kind then goes through it, whoever calls it.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, ClassVar, Final, Self

from plexinode.identity import Identity, verify_signature
from plexinode.signing.cache import VerifiedSignatures
from plexinode.wire.codec import Limits, pack, unpack
from plexinode.wire.schema import Struct

#: The byte that ends every domain string, and appears nowhere else in one.
_END: Final = b"\x00"

_DOMAINS: set[bytes] = set()
#: How many leading fields the signature covers, by class (checked once per class).
_SIGNED_FIELDS: dict[type, int] = {}


def domain(prefix: bytes) -> bytes:
    """Declare the domain string of one kind of signed statement, and return it.

    Args:
        prefix: ``b"plexinode-<kind>-v<n>\\x00"``: printable ASCII ending in one NUL byte.

    Raises:
        ValueError: Not of that form, or declared already (by this or another kind).
    """
    body = prefix[:-1]
    if not prefix.endswith(_END) or not body or not all(0x20 <= b < 0x7F for b in body):
        raise ValueError(f"a signing domain is printable ASCII ending in one NUL byte: {prefix!r}")
    if prefix in _DOMAINS:
        raise ValueError(f"the signing domain {prefix!r} is taken")
    _DOMAINS.add(prefix)
    return prefix


class Signed(Struct):
    """Base of every signed statement (see the module docstring).

    A subclass is a frozen dataclass whose last field is ``signature: bytes`` and sets:

    Attributes:
        DOMAIN: Its domain string, from :func:`domain`.
        SIGNER: The name of the field that holds the signer's Ed25519 public key.
        SIGNATURES: The cache its signature checks go through, or None to check every time.
    """

    DOMAIN: ClassVar[bytes]
    SIGNER: ClassVar[str]
    SIGNATURES: ClassVar[VerifiedSignatures | None] = None

    if TYPE_CHECKING:
        signature: bytes

    @classmethod
    def _fields_signed(cls) -> int:
        """How many leading fields the signature covers: all but the last, the signature.

        Raises:
            TypeError: The class does not have the shape of a signed statement.
        """
        count = _SIGNED_FIELDS.get(cls)
        if count is None:
            names = [name for name, _ in cls._field_checks()]
            if not names or names[-1] != "signature" or cls.SIGNER not in names[:-1]:
                raise TypeError(
                    f"{cls.__name__}: a signed statement ends with its signature field, and "
                    f"SIGNER names another of its fields"
                )
            count = _SIGNED_FIELDS[cls] = len(names) - 1
        return count

    @property
    def signer_key(self) -> bytes:
        """The signer's Ed25519 public key."""
        key: bytes = getattr(self, self.SIGNER)
        return key

    def signed_bytes(self) -> bytes:
        """What the signature covers: ``DOMAIN || msgpack(every field but the signature)``."""
        return self.DOMAIN + pack(self.to_wire()[: self._fields_signed()])

    def signed_by(self, identity: Identity) -> Self:
        """This statement with `identity` as its signer, signed by it.

        The signer field is set to the identity's public key (if it holds anything else) and
        the signature computed over the result; whatever the signature field held is ignored.
        """
        unsigned = self
        if self.signer_key != identity.public_key:
            fields: dict[str, Any] = {self.SIGNER: identity.public_key}
            unsigned = dataclasses.replace(self, **fields)  # type: ignore[type-var]
        signature = identity.sign(unsigned.signed_bytes())
        return dataclasses.replace(unsigned, signature=signature)  # type: ignore[type-var]

    def verify_signature(self) -> None:
        """Check the signature (through :attr:`SIGNATURES`, if set).

        Raises:
            AuthenticationError: It is not the signer's signature of :meth:`signed_bytes`.
        """
        cache = self.SIGNATURES
        if cache is None:
            verify_signature(self.signer_key, self.signed_bytes(), self.signature)
        else:
            cache.verify(self.signer_key, self.signed_bytes(), self.signature)

    def to_bytes(self, limits: Limits) -> bytes:
        """The statement on its own, as msgpack.

        Raises:
            ValueError: The encoding exceeds ``limits.max_buffer``: a receiver holding the same
                limits would refuse it.
        """
        data = pack(self.to_wire())
        if len(data) > limits.max_buffer:
            name = type(self).__name__
            raise ValueError(f"{name} of {len(data)} bytes exceeds {limits.max_buffer}")
        return data

    @classmethod
    def from_bytes(cls, data: bytes, limits: Limits) -> Self:
        """Decode a statement encoded on its own: the buffer's size, msgpack's caps, then the
        schema. The signature is *not* checked (:meth:`verify_signature` does that, last).

        Raises:
            DecodeError: Too large, malformed, or a field out of its schema.
        """
        return cls.from_wire(unpack(data, limits))
