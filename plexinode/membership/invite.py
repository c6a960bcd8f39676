"""Invite tokens of the open network: one line that lets a new node join through a node.

``plexinode invite`` on a node of an open network prints a token; ``plexinode join TOKEN`` (or
``start --join-file FILE``) on another machine uses it. A token says which network to join,
through which node and addresses, until when, and who vouches for it::

    plexinode-invite-2:<base64url(msgpack([network, addresses, expires_at, inviter,
                                           signature]))>

    network      the network's name (the node's ``network`` setting)
    addresses    1-8 [ip (4 or 16 bytes), port] where the inviter can be reached
    expires_at   Unix seconds after which the token is refused
    inviter      the inviter's Ed25519 public key: joining talks to that node only
    signature    the inviter's signature over "plexinode-invite-v2\0" || msgpack(the fields)

A token carries no key and may be used any number of times until it expires: an open network
admits anyone who can reach one of its nodes, and the token only says where. The signature
makes it tamper-evident (changing the network, an address or the expiry breaks it), and a node
that joins connects only to the inviter's node ID at the given addresses, so a token that names
someone else's address cannot point the newcomer at an impostor. A private network invites
with single-use tickets instead (plexinode.security.tickets).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final

from plexinode.errors import AuthenticationError, DecodeError, PlexinodeError
from plexinode.identity import PUBLIC_KEY_BYTES, SIGNATURE_BYTES, Identity, NodeId
from plexinode.net.address import Address, ip_text, packed_ip
from plexinode.signing.signed import Signed, domain
from plexinode.wire.codec import Limits
from plexinode.wire.schema import Bytes, Int, ListOf, Nested, Str, Struct, wire
from plexinode.wire.tokens import decode_token, encode_token

PREFIX: Final = "plexinode-invite-2:"
INVITE_DOMAIN: Final = domain(b"plexinode-invite-v2\x00")
#: Most addresses a token lists.
MAX_ADDRESSES: Final = 8
#: Longest token accepted, characters (a full one is about 600).
MAX_TOKEN: Final = 2048
_LIMITS: Final = Limits(max_buffer=MAX_TOKEN, max_str=64, max_bin=64, max_array=16, max_map=0)


class InviteError(PlexinodeError):
    """A token that cannot be used: malformed, tampered with, expired, or for another network."""


@dataclass(frozen=True, slots=True)
class InviteAddress(Struct):
    ip: bytes = wire(Bytes(4, 16))
    port: int = wire(Int(1, 65535))


@dataclass(frozen=True, slots=True)
class Invite(Signed):
    """A decoded invite token (see the module docstring): a signed statement of its inviter."""

    DOMAIN: ClassVar[bytes] = INVITE_DOMAIN
    SIGNER: ClassVar[str] = "inviter"

    network: str = wire(Str(64))
    addresses: tuple[InviteAddress, ...] = wire(ListOf(Nested(InviteAddress), MAX_ADDRESSES))
    expires_at: int = wire(Int())
    inviter: bytes = wire(Bytes(PUBLIC_KEY_BYTES, PUBLIC_KEY_BYTES))
    signature: bytes = wire(Bytes(SIGNATURE_BYTES, SIGNATURE_BYTES))

    @property
    def inviter_id(self) -> NodeId:
        return NodeId.from_public_key(self.inviter)

    def bootstrap(self) -> list[Address]:
        """The addresses to join through."""
        return [Address(ip_text(a.ip), a.port) for a in self.addresses]

    def encode(self) -> str:
        """The token's one-line text form."""
        return encode_token(PREFIX, self.to_bytes(_LIMITS))


def make_invite(
    identity: Identity, network: str, addresses: list[Address], expires_at: int
) -> Invite:
    """A signed invite to `network` through `addresses` (this node's), valid until `expires_at`.

    Raises:
        InviteError: No usable address.
    """
    packed = []
    for address in addresses[:MAX_ADDRESSES]:
        ip = packed_ip(address.host)
        if ip is not None and address.port:
            packed.append(InviteAddress(ip, address.port))
    if not packed:
        raise InviteError(
            "this node has no address other nodes can reach yet (it listens on a wildcard "
            "address and no peer has reported seeing it): listen on a specific address"
        )
    unsigned = Invite(network, tuple(packed), expires_at, identity.public_key, b"")
    return unsigned.signed_by(identity)


def parse_invite(token: str, now: float) -> Invite:
    """Decode and check a token: its form, its signature, its expiry.

    Raises:
        InviteError: With one line saying what is wrong.
    """
    raw = decode_token(token, PREFIX, max_chars=MAX_TOKEN, what="invite token", error=InviteError)
    try:
        invite = Invite.from_bytes(raw, _LIMITS)
    except (ValueError, DecodeError):
        raise InviteError("the invite token is damaged (was it copied whole?)") from None
    if not invite.addresses:
        raise InviteError("the invite token lists no address")
    try:
        invite.verify_signature()
    except AuthenticationError:
        raise InviteError(
            "the invite token was tampered with (its signature does not match)"
        ) from None
    if now >= invite.expires_at:
        raise InviteError("the invite token has expired: ask for a new one")
    if any(len(a.ip) not in (4, 16) for a in invite.addresses):
        raise InviteError("the invite token is damaged (a bad address)")
    return invite
