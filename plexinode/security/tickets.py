"""Single-use join tickets of a private network (sans-I/O).

``plexinode invite`` on a member of a private network that may admit others (it holds the
``inviter`` or ``admin`` role, plexinode.net.authority) prints a **ticket**::

    plexinode-ticket-1:<base64url(msgpack([network, root, inviter, addresses, expires_at,
                                           secret]))>

    network      the network's name
    root         the network's root public key: the joiner pins it
    inviter      the inviting node's Ed25519 public key: the joiner talks to that node only
    addresses    1-8 [ip, port] where the inviter can be reached
    expires_at   Unix seconds after which the inviter refuses the ticket
    secret       32 random bytes

A ticket carries **no network key**. Its secret gives a 32-byte **ticket key**
(:func:`ticket_key`) that the joiner uses in place of a network key for one stream handshake
with the inviter, protocol :data:`JOIN_PROTOCOL`: the inviter accepts a handshake under a
ticket key only for that protocol, and only while the ticket is open, so the secret proves the
joiner holds the ticket and nobody without it gets past msg1. The joiner sends the ticket's id
(:func:`ticket_id`); the inviter **redeems** the ticket in its database (a ticket is redeemed
once: a second use is refused, whoever makes it), then answers with the joiner's member grant
(signed with the inviter's own key under its role), the grants above it, and the network keys
sealed to the joiner's key. Only the node that issued a ticket can redeem it: the secret never
leaves the inviter and the joiner.

Whoever holds a ticket until it is redeemed or expires may join once: send it over a channel
you trust, with a short expiry, or read it from a file (``join --file``) so that it never
appears in a command line.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import ClassVar, Final

from plexinode.errors import DecodeError, PlexinodeError
from plexinode.identity import PUBLIC_KEY_BYTES, NodeId
from plexinode.membership.invite import PREFIX as INVITE_PREFIX
from plexinode.membership.invite import Invite, InviteError, parse_invite
from plexinode.net.address import Address, ip_text
from plexinode.net.certificates import MAX_NETWORK_NAME, MAX_STATEMENT_BYTES
from plexinode.net.keyring import MAX_KEYS
from plexinode.security.rotation import KEY_ID_BYTES, SealedKey
from plexinode.wire.codec import Limits, pack, unpack
from plexinode.wire.schema import (
    Bool,
    Bytes,
    Int,
    ListOf,
    Message,
    Nested,
    Str,
    Struct,
    register,
    wire,
)
from plexinode.wire.tokens import decode_token, encode_token

PREFIX: Final = "plexinode-ticket-1:"
#: The stream protocol that redeems a ticket.
JOIN_PROTOCOL: Final = "join/1"
#: The kind of pre-shared key a ticket's handshake uses (plexinode.net.handshake.PskMatch),
#: followed by the ticket's id in hex (:func:`ticket_kind`): the stream service serves such a
#: session ``join/1`` alone, and ``join/1`` redeems only the ticket the session proved.
TICKET: Final = "ticket"
SECRET_BYTES: Final = 32
TICKET_ID_BYTES: Final = 16
#: Most addresses a ticket lists.
MAX_ADDRESSES: Final = 8
#: Longest ticket accepted, characters (a full one is about 500).
MAX_TICKET: Final = 1024
#: Most tickets one node keeps open at once: every stranger's msg1 is checked against each
#: open ticket's key, so this bounds what a junk handshake costs.
MAX_OPEN_TICKETS: Final = 32
#: Longest a ticket may be valid, seconds.
MAX_TICKET_LIFETIME: Final = 30 * 86_400
#: Most statements a join reply carries: the joiner's grant and the chain above it.
MAX_CHAIN: Final = 16
_LIMITS: Final = Limits(
    max_buffer=MAX_TICKET, max_str=MAX_NETWORK_NAME, max_bin=64, max_array=16, max_map=0
)


class TicketError(PlexinodeError):
    """A ticket that cannot be used: malformed, expired, already used, or for another node."""


@dataclass(frozen=True, slots=True)
class TicketAddress(Struct):
    ip: bytes = wire(Bytes(4, 16))
    port: int = wire(Int(1, 65535))


@dataclass(frozen=True, slots=True)
class Ticket(Struct):
    """A decoded ticket (module docstring)."""

    network: str = wire(Str(MAX_NETWORK_NAME))
    root: bytes = wire(Bytes(PUBLIC_KEY_BYTES, PUBLIC_KEY_BYTES))
    inviter: bytes = wire(Bytes(PUBLIC_KEY_BYTES, PUBLIC_KEY_BYTES))
    addresses: tuple[TicketAddress, ...] = wire(ListOf(Nested(TicketAddress), MAX_ADDRESSES))
    expires_at: int = wire(Int())
    secret: bytes = wire(Bytes(SECRET_BYTES, SECRET_BYTES))

    @property
    def inviter_id(self) -> NodeId:
        return NodeId.from_public_key(self.inviter)

    @property
    def id(self) -> bytes:
        return ticket_id(self.secret)

    @property
    def key(self) -> bytes:
        return ticket_key(self.secret)

    def bootstrap(self) -> list[Address]:
        """The inviter's addresses."""
        return [Address(ip_text(a.ip), a.port) for a in self.addresses]

    def encode(self) -> str:
        """The ticket's one-line text form."""
        return encode_token(PREFIX, pack(self.to_wire()))


def ticket_id(secret: bytes) -> bytes:
    """The public name of a ticket: what the joiner sends, and what the inviter stores."""
    return hashlib.blake2b(secret, digest_size=TICKET_ID_BYTES, person=b"px-ticket-id").digest()


def ticket_key(secret: bytes) -> bytes:
    """The key a ticket's joiner handshakes with in place of a network key."""
    return hashlib.blake2b(secret, digest_size=32, person=b"px-ticket-key").digest()


def ticket_kind(ticket: bytes) -> str:
    """The pre-shared key kind of a handshake made with the key of ticket `ticket` (its id)."""
    return f"{TICKET}:{ticket.hex()}"


def is_ticket(text: str) -> bool:
    """Whether `text` looks like a ticket (rather than an open network's invite token)."""
    return "".join(text.split()).startswith(PREFIX)


def parse_ticket(text: str, now: float) -> Ticket:
    """Decode and check a ticket's form and expiry (the inviter checks the rest).

    Raises:
        TicketError: One line saying what is wrong.
    """
    raw = decode_token(text, PREFIX, max_chars=MAX_TICKET, what="ticket", error=TicketError)
    try:
        ticket = Ticket.from_wire(unpack(raw, _LIMITS))
    except (ValueError, DecodeError):
        raise TicketError("the ticket is damaged (was it copied whole?)") from None
    if not ticket.addresses:
        raise TicketError("the ticket lists no address")
    if now >= ticket.expires_at:
        raise TicketError("the ticket has expired: ask for a new one")
    return ticket


def parse_way_in(text: str, now: float) -> Ticket | Invite:
    """A ticket (private network) or an open network's invite token, by its prefix.

    Raises:
        TicketError, InviteError: One line saying what is wrong.
    """
    if is_ticket(text):
        return parse_ticket(text, now)
    if not "".join(text.split()).startswith(INVITE_PREFIX):
        raise InviteError(
            f"not an invite token or a ticket (an invite token starts with {INVITE_PREFIX!r},"
            f" a private network's ticket with {PREFIX!r})"
        )
    return parse_invite(text, now)


def redemption_refusal(
    row: tuple[int, bytes | None] | None, joiner: bytes, now: float
) -> str | None:
    """Why a ticket cannot be redeemed by `joiner` now, from its stored row
    (``expires_at``, ``redeemed_by``), or None if it can."""
    if row is None:
        return "this node issued no such ticket"
    expires_at, redeemed_by = row
    if redeemed_by is not None:
        return "the ticket was already used"
    if now >= expires_at:
        return "the ticket has expired: ask for a new one"
    return None


@register
@dataclass(frozen=True, slots=True)
class JoinRequest(Message):
    """``join/1``, joiner to inviter: the ticket to redeem, by its id."""

    TYPE: ClassVar[int] = 77
    NAME: ClassVar[str] = "join-request"
    ticket: bytes = wire(Bytes(TICKET_ID_BYTES, TICKET_ID_BYTES))


@register
@dataclass(frozen=True, slots=True)
class JoinReply(Message):
    """``join/1``, inviter to joiner: refused (`reason` says why), or the joiner's grant and
    the chain above it (encoded statements), the network's keys sealed to the joiner, and the
    id of the key to send with."""

    TYPE: ClassVar[int] = 78
    NAME: ClassVar[str] = "join-reply"
    admitted: bool = wire(Bool())
    reason: str = wire(Str(256))
    statements: tuple[bytes, ...] = wire(ListOf(Bytes(2, MAX_STATEMENT_BYTES + 1), MAX_CHAIN))
    keys: tuple[SealedKey, ...] = wire(ListOf(Nested(SealedKey), MAX_KEYS))
    primary: bytes = wire(Bytes(0, KEY_ID_BYTES))
