"""Join tickets, issued and redeemed (trio driver of :mod:`plexinode.security.tickets`, whose
docstring explains the design).

The inviting side (:class:`TicketService`) issues tickets, keeps the open ones in the database
and their keys in the keyring (so that the stream service admits a joiner's handshake for
``join/1``), and redeems each once. The joining side is :func:`redeem`.
"""

from __future__ import annotations

import collections
import logging
import secrets
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import trio

from plexinode.errors import (
    AuthenticationError,
    HandshakeRefused,
    PeerTimeout,
)
from plexinode.identity import Identity
from plexinode.net.address import Address, packed_ip
from plexinode.net.authority import Authority
from plexinode.net.certificates import ADMIN, INVITER, MEMBER
from plexinode.net.handshake import PskMatch, UnexpectedPeerError
from plexinode.net.keyring import Keyring
from plexinode.net.secure import SecureStream
from plexinode.net.streams import StreamService
from plexinode.security.authority_service import EXCHANGE_FAILURES, AuthorityService
from plexinode.security.rotation import KeyringReply, KeyringRequest, open_reply, reply_to
from plexinode.security.statements import StatementSet, encode_statement, make_grant
from plexinode.security.tickets import (
    JOIN_PROTOCOL,
    MAX_ADDRESSES,
    MAX_CHAIN,
    MAX_OPEN_TICKETS,
    SECRET_BYTES,
    JoinReply,
    JoinRequest,
    Ticket,
    TicketAddress,
    TicketError,
    redemption_refusal,
    ticket_kind,
)
from plexinode.storage import Database
from plexinode.wire import envelope
from plexinode.wire.codec import FRAME_LIMITS

log = logging.getLogger(__name__)

#: Longest one join/1 exchange may take, seconds.
JOIN_TIMEOUT: Final = 10.0
#: Most join/1 exchanges served at once.
MAX_SERVING: Final = 8
#: Redeemed or expired tickets are forgotten this long after they expire, seconds.
FORGET_AFTER: Final = 86_400
#: How far ahead of the joiner's clock the inviter's may run, seconds, for the grant the
#: joiner receives to count as valid on arrival.
MAX_CLOCK_SKEW: Final = 300


class TicketService:
    """Issues this node's join tickets and redeems them, each once.

    Args:
        identity: This node's identity: it signs the grants of the members it admits.
        keyring: This node's keyring: its network keys go to joiners, sealed; the open
            tickets' keys are kept in it.
        authority: The authority service (whether this node may admit, and where new grants
            go).
        streams: Where ``join/1`` is served.
        db: Where tickets are kept (None: in memory, for simulations).
        wall_clock: Unix time.
    """

    def __init__(
        self,
        identity: Identity,
        keyring: Keyring,
        authority: AuthorityService,
        streams: StreamService,
        *,
        db: Database | None,
        wall_clock: Callable[[], float],
    ) -> None:
        self.identity = identity
        self.keyring = keyring
        self.authority = authority
        self.streams = streams
        self._db = db
        self._wall_clock = wall_clock
        #: Tickets issued and not yet redeemed: id -> (key, expires_at); in memory, without
        #: a database, the redeemed ones too (id -> joiner).
        self._open: dict[bytes, tuple[bytes, int]] = {}
        self._redeemed: dict[bytes, bytes] = {}
        self._serving = 0
        self.stats: collections.Counter[str] = collections.Counter()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Load the open tickets and serve ``join/1`` (until cancelled)."""
        if self._db is not None:
            now = self._wall_clock()
            await self._db.execute(
                "DELETE FROM tickets WHERE expires_at < ?", (int(now) - FORGET_AFTER,)
            )
            rows = await self._db.execute(
                "SELECT id, key, expires_at FROM tickets WHERE redeemed_by IS NULL"
            )
            self._open = {bytes(r[0]): (bytes(r[1]), int(r[2])) for r in rows}
        self._sync_keys()
        self.streams.extra_keys = self._match
        self.streams.on(JOIN_PROTOCOL, self._serve, extra_key_ok=True)
        task_status.started()
        while True:
            await trio.sleep(60)
            self._sync_keys()

    def _match(self, body: bytes, tag: bytes) -> PskMatch | None:
        """The open ticket whose key tags a handshake's msg1 (the stream service asks), named
        by its id, so that the session redeems that ticket alone."""
        key = self.keyring.match_ticket(body, tag)
        if key is None:
            return None
        for ticket, (open_key, _) in self._open.items():
            if open_key == key:
                return PskMatch(key, ticket_kind(ticket))
        return None

    def _sync_keys(self) -> None:
        """Keep the keys of the open, unexpired tickets in the keyring (and only those)."""
        now = self._wall_clock()
        self._open = {i: (k, e) for i, (k, e) in self._open.items() if e > now}
        self.keyring.tickets = [key for key, _ in self._open.values()]

    def may_admit(self) -> bool:
        """Whether this node's own key may sign member grants now."""
        key = self.identity.public_key
        return bool(self.authority.holds(key, INVITER) or self.authority.holds(key, ADMIN))

    async def issue(self, addresses: Sequence[Address], lifetime: float) -> Ticket:
        """A new ticket to join through this node at `addresses`, valid for `lifetime` s.

        Raises:
            TicketError: This node may not admit members, has too many open tickets, or has no
                address others can reach.
        """
        if self.authority.authority.is_revoked(self.identity.public_key):
            raise TicketError("this node is revoked from the network: it cannot invite anyone")
        if not self.may_admit():
            raise TicketError(
                "this node may not admit members: it holds neither the inviter nor the admin "
                "role (give it one with `network grant inviter NODE_ID`, or sign this invite "
                "with `invite --admin-key FILE`)"
            )
        self._sync_keys()
        if len(self._open) >= MAX_OPEN_TICKETS:
            raise TicketError(
                f"this node has {MAX_OPEN_TICKETS} open tickets, the most it keeps: wait until "
                "some are used or expire"
            )
        packed = [
            TicketAddress(ip, a.port)
            for a in addresses[:MAX_ADDRESSES]
            if (ip := packed_ip(a.host)) is not None and a.port
        ]
        if not packed:
            raise TicketError(
                "this node has no address other nodes can reach yet (it listens on a wildcard "
                "address and no peer has reported seeing it): listen on a specific address"
            )
        secret = secrets.token_bytes(SECRET_BYTES)
        expires_at = int(self._wall_clock() + lifetime)
        authority = self.authority.authority
        ticket = Ticket(
            authority.network,
            authority.root,
            self.identity.public_key,
            tuple(packed),
            expires_at,
            secret,
        )
        if self._db is not None:
            await self._db.execute(
                "INSERT INTO tickets (id, key, expires_at) VALUES (?, ?, ?)",
                (ticket.id, ticket.key, expires_at),
            )
        self._open[ticket.id] = (ticket.key, expires_at)
        self._sync_keys()
        self.stats["issued"] += 1
        log.info("issued a join ticket valid until %d", expires_at)
        return ticket

    # -- redeeming ---------------------------------------------------------------------------

    async def _serve(self, stream: SecureStream) -> None:
        if self._serving >= MAX_SERVING:
            self.stats["join_busy"] += 1
            return
        self._serving += 1
        try:
            await self._serve_one(stream)
        finally:
            self._serving -= 1

    async def _serve_one(self, stream: SecureStream) -> None:
        with trio.move_on_after(JOIN_TIMEOUT):
            message = envelope.decode(await stream.receive(), FRAME_LIMITS).message
            if not isinstance(message, JoinRequest):
                self.stats["join_malformed"] += 1
                return
            if stream.psk_kind != ticket_kind(message.ticket):
                # The handshake proved another ticket's key: a joiner redeems only the ticket
                # whose secret it holds.
                self.stats["join_other_ticket"] += 1
                await stream.send(envelope.encode(_refusal("not the ticket this session used")))
                return
            reply = await self._redeem(message.ticket, stream.remote_public_key)
            await stream.send(envelope.encode(reply))

    async def _redeem(self, ticket: bytes, joiner: bytes) -> JoinReply:
        now = self._wall_clock()
        reason = None
        if not self.may_admit():
            reason = "the inviter no longer holds a role that admits members"
        elif self.authority.authority.is_revoked(joiner):
            reason = "this node's key is revoked from the network"
        else:
            reason = await self._commit(ticket, joiner, now)
        if reason is not None:
            self.stats["join_refused"] += 1
            log.info("refused a join ticket: %s", reason)
            return _refusal(reason)
        self._open.pop(ticket, None)
        self._sync_keys()
        grant = make_grant(self.identity, self.authority.authority, joiner, MEMBER, now=int(now))
        await self.authority.add([encode_statement(grant)], source="a join ticket")
        chain = self.authority.statements.chain(joiner, now, MAX_CHAIN)
        keys = reply_to(self.keyring, KeyringRequest(()), joiner)
        self.stats["joined"] += 1
        log.info("admitted a new member with a join ticket")
        return JoinReply(True, "", tuple(chain), keys.keys, keys.primary)

    async def _commit(self, ticket: bytes, joiner: bytes, now: float) -> str | None:
        """Redeem `ticket` for `joiner` in the database (or in memory), once: None when done,
        else why not."""
        if self._db is None:
            row: tuple[int, bytes | None] | None = None
            if ticket in self._open:
                row = (self._open[ticket][1], None)
            elif ticket in self._redeemed:
                row = (0, self._redeemed[ticket])
            reason = redemption_refusal(row, joiner, now)
            if reason is None:
                self._redeemed[ticket] = joiner
            return reason

        def commit(conn: sqlite3.Connection) -> str | None:
            found = conn.execute(
                "SELECT expires_at, redeemed_by FROM tickets WHERE id = ?", (ticket,)
            ).fetchone()
            row = None if found is None else (int(found[0]), found[1])
            reason = redemption_refusal(row, joiner, now)
            if reason is None:
                conn.execute("UPDATE tickets SET redeemed_by = ? WHERE id = ?", (joiner, ticket))
            return reason

        return await self._db.write(commit)


def _refusal(reason: str) -> JoinReply:
    return JoinReply(False, reason, (), (), b"")


# -- the joining side ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Redeemed:
    """What a redeemed ticket gave: the network keys, the id of the one to send with, and
    the joiner's grant with the chain above it (encoded statements)."""

    keys: dict[str, bytes]
    primary: str
    credentials: tuple[bytes, ...]


async def redeem(
    streams: StreamService, identity: Identity, ticket: Ticket, now: float
) -> Redeemed:
    """Redeem `ticket` with its inviter, at each of its addresses in turn until one answers.

    Raises:
        TicketError: The inviter refused the ticket (already used, expired, not its own), or
            its answer does not admit this node.
        PeerTimeout: The inviter did not answer at any address.
    """
    why: list[str] = []
    for address in ticket.bootstrap():
        try:
            with trio.fail_after(JOIN_TIMEOUT):
                stream = await streams.open(
                    address, JOIN_PROTOCOL, node_id=ticket.inviter_id, network_key=ticket.key
                )
                async with stream:
                    await stream.send(envelope.encode(JoinRequest(ticket.id)))
                    reply = envelope.decode(await stream.receive(), FRAME_LIMITS).message
        except UnexpectedPeerError:
            raise TicketError(
                f"the node at {address} is not the ticket's inviter (was the ticket changed?)"
            ) from None
        except HandshakeRefused:
            # The inviter hung up after msg1: it holds no open ticket with this key.
            raise TicketError(
                "the inviter refused the ticket: it was already used, has expired, or was not "
                "issued by that node"
            ) from None
        except EXCHANGE_FAILURES as exc:
            why.append(f"{address}: {exc}")
            continue
        if not isinstance(reply, JoinReply):
            raise TicketError(f"the inviter answered {reply.NAME} instead of a join reply")
        if not reply.admitted:
            raise TicketError(f"the inviter refused the ticket: {reply.reason}")
        return _admitted(identity, ticket, reply, now)
    raise PeerTimeout(f"the inviter {ticket.inviter_id.short()} did not answer: {'; '.join(why)}")


def _admitted(identity: Identity, ticket: Ticket, reply: JoinReply, now: float) -> Redeemed:
    try:
        keys = open_reply(identity, KeyringReply(True, reply.primary, reply.keys))
    except AuthenticationError as exc:
        raise TicketError(f"the inviter's answer holds a bad network key: {exc}") from None
    statements = StatementSet(Authority(ticket.network, ticket.root))
    added = statements.add_many(reply.statements)
    # The inviter's clock may run ahead of ours (or just ticked past the second of `now`): a
    # grant it has just signed is judged at its own date, if within MAX_CLOCK_SKEW of ours.
    dates = [g.issued_at for g in statements.authority.grants_of(identity.public_key)]
    at = max([now, *(d for d in dates if d - now <= MAX_CLOCK_SKEW)])
    verdict = statements.authority.holds(identity.public_key, MEMBER, at)
    if not verdict:
        raise TicketError(f"the inviter's answer does not admit this node: {verdict.reason}")
    if not keys or reply.primary.hex() not in keys:
        raise TicketError("the inviter's answer holds no network key to send with")
    return Redeemed(keys, reply.primary.hex(), added.new)
