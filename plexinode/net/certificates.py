"""The statements of a private network's authority: grants and revocations.

A private network is identified by its **root key**, an Ed25519 key made by ``init --network``
whose public half every member pins. Who belongs to the network, and who may administer it, is
said by statements signed along a short chain that starts at the root (docs/decisions.md, 34):

- a :class:`Grant` gives a role to a key until an expiry. ``admin`` grants are signed by the root
  only, so a stolen admin key cannot mint admins; ``inviter`` grants by the root or an admin;
  ``member`` grants (a member's *admission certificate*) by the root, an admin or an inviter;
- a :class:`Revocation` takes a key out for good. The root may revoke any key but its own; an
  admin may revoke inviters and members. A revocation with ``void`` also voids everything the
  revoked key ever signed (for a stolen key: the grants it minted and the revocations it made
  fall with it); without it, what the key signed before it was revoked stands (a key retired
  in good order).

Both are signed statements (plexinode.signing): the signature covers a domain string and the
canonical msgpack of every field but the signature, and every field is checked on decode before
the signature is. This module only defines their shapes and limits; what they mean together is
decided by :mod:`plexinode.net.authority`, from the pinned root and the statements alone, so
that every node that holds the same statements decides alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Final

from plexinode.errors import DecodeError
from plexinode.identity import PUBLIC_KEY_BYTES, SIGNATURE_BYTES
from plexinode.signing.signed import Signed, domain
from plexinode.wire.codec import Limits
from plexinode.wire.schema import Bool, Bytes, Check, Int, Str, wire

#: Roles a grant can give, from the most to the least powerful.
ADMIN: Final = "admin"
INVITER: Final = "inviter"
MEMBER: Final = "member"
ROLES: Final = (ADMIN, INVITER, MEMBER)

#: Which roles may sign a grant of each role (the root may sign any).
ISSUERS: Final[dict[str, tuple[str, ...]]] = {
    ADMIN: (),
    INVITER: (ADMIN,),
    MEMBER: (ADMIN, INVITER),
}

#: The longest a grant of each role may run, seconds: an admin grant ten years (it names a
#: person's key, kept off the network); an inviter or member grant 400 days, so that a key lost
#: without anyone noticing stops counting within about a year even if nobody revokes it.
MAX_LIFETIME: Final[dict[str, int]] = {
    ADMIN: 10 * 365 * 86_400,
    INVITER: 400 * 86_400,
    MEMBER: 400 * 86_400,
}

#: Longest network name, characters (the ``network`` setting's limit).
MAX_NETWORK_NAME: Final = 64
#: A grant or a revocation encoded on its own is at most this many bytes (a grant is about 220).
MAX_STATEMENT_BYTES: Final = 512
LIMITS: Final = Limits(
    max_buffer=MAX_STATEMENT_BYTES, max_str=MAX_NETWORK_NAME, max_bin=64, max_array=16, max_map=0
)

GRANT_DOMAIN: Final = domain(b"plexinode-grant-v1\x00")
REVOCATION_DOMAIN: Final = domain(b"plexinode-revocation-v1\x00")

_KEY: Final = Bytes(PUBLIC_KEY_BYTES, PUBLIC_KEY_BYTES)


@dataclass(frozen=True, slots=True)
class _Role(Check):
    """One of :data:`ROLES`."""

    def __call__(self, value: Any) -> Any:
        if value not in ROLES:
            raise DecodeError(f"expected a role ({', '.join(ROLES)})")
        return value


@dataclass(frozen=True, slots=True)
class Grant(Signed):
    """`issuer` gives `role` in the network of `root` to the key `subject`, from `issued_at`
    until `expires_at` (Unix seconds). A member's grant is its admission certificate."""

    DOMAIN: ClassVar[bytes] = GRANT_DOMAIN
    SIGNER: ClassVar[str] = "issuer"

    network: str = wire(Str(MAX_NETWORK_NAME))
    root: bytes = wire(_KEY)
    subject: bytes = wire(_KEY)
    role: str = wire(_Role())
    issued_at: int = wire(Int())
    expires_at: int = wire(Int())
    issuer: bytes = wire(_KEY)
    signature: bytes = wire(Bytes(SIGNATURE_BYTES, SIGNATURE_BYTES))


@dataclass(frozen=True, slots=True)
class Revocation(Signed):
    """`issuer` takes the key `subject` out of the network of `root` for good, from
    `issued_at`; with `void`, everything `subject` signed falls with it (module docstring)."""

    DOMAIN: ClassVar[bytes] = REVOCATION_DOMAIN
    SIGNER: ClassVar[str] = "issuer"

    network: str = wire(Str(MAX_NETWORK_NAME))
    root: bytes = wire(_KEY)
    subject: bytes = wire(_KEY)
    void: bool = wire(Bool())
    issued_at: int = wire(Int())
    issuer: bytes = wire(_KEY)
    signature: bytes = wire(Bytes(SIGNATURE_BYTES, SIGNATURE_BYTES))
