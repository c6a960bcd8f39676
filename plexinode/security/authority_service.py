"""The authority service: a private network's grants and revocations, kept and spread (trio
driver of :mod:`plexinode.security.statements`, whose docstring explains the design).

It keeps every statement it accepts in the database (table ``authority``), reconciles them
with one random live member every :data:`SYNC_INTERVAL` seconds over ``authority/1``, and,
when it learns something new (from the operator's command or from another member), at once
with :data:`FANOUT` more, which do the same: a new revocation reaches every member in a few
exchanges, like an epidemic, and the periodic rounds repair whatever a lost exchange missed.
"""

from __future__ import annotations

import collections
import logging
import random
from collections.abc import Callable, Iterable, Sequence
from typing import Final, TypeVar

import trio

from plexinode.errors import AuthenticationError, DecodeError, HandshakeError
from plexinode.identity import NodeId
from plexinode.membership.members import State
from plexinode.membership.service import MembershipService, Seed
from plexinode.net.address import Address
from plexinode.net.authority import Verdict
from plexinode.net.certificates import ADMIN, INVITER, MEMBER, Grant
from plexinode.net.secure import SecureStream
from plexinode.security.statements import (
    AUTHORITY_PROTOCOL,
    Added,
    AuthorityDigest,
    AuthorityPush,
    StatementSet,
    decode_statement,
    encode_statement,
    make_grant,
    split_hashes,
    statement_hash,
)
from plexinode.storage import Database
from plexinode.wire import envelope
from plexinode.wire.codec import FRAME_LIMITS
from plexinode.wire.schema import Message

log = logging.getLogger(__name__)

#: Seconds between two reconciliations with a random live member.
SYNC_INTERVAL: Final = 5.0
#: Members told at once when this node learns a new statement.
FANOUT: Final = 3
#: Longest one authority/1 exchange may take, seconds.
EXCHANGE_TIMEOUT: Final = 10.0
#: Most exchanges served at once (each holds at most two frames of ~1 MiB).
MAX_SERVING: Final = 8
#: How long an answer of :meth:`AuthorityService.admits` is kept, seconds, and for how many
#: keys at most.
VERDICT_TTL: Final = 10.0
MAX_VERDICTS: Final = 16_384
#: A node that may admit members renews a live member's grant this long before it expires,
#: seconds, at most :data:`RENEWALS` per round: members stay in while an admin key is offline.
RENEW_BEFORE: Final = 30 * 86_400
RENEWALS: Final = 16
#: How often spent grants are forgotten, seconds (they stay spent: no hurry).
PRUNE_INTERVAL: Final = 3600.0
#: Nodes met but not admitted that are remembered to be asked, and how often each is asked
#: (seconds).
MAX_STRANGERS: Final = 64
STRANGER_INTERVAL: Final = 30.0
#: Strangers asked per round.
STRANGERS_PER_ROUND: Final = 4

#: What one exchange with another member may fail with (each counted, none fatal): the
#: keyring, authority and ticket services all catch these.
EXCHANGE_FAILURES: Final = (
    trio.TooSlowError,
    OSError,
    DecodeError,
    AuthenticationError,
    HandshakeError,  # refused (another network, or the peer's stream limits) or failed
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    trio.EndOfChannel,
)


class AuthorityService:
    """Keeps and spreads this node's private network's statements.

    Args:
        statements: The network's statements (and its authority) held in memory.
        membership: Whom to reconcile with, and the stream service.
        own: Encoded statements this node was given to belong (from ``network.keys``): its
            own grant and the chain above it, added first.
        db: Where statements are kept (None: in memory, for simulations).
        wall_clock: Unix time, for grant validity.
        rng: Whom to reconcile with.
    """

    def __init__(
        self,
        statements: StatementSet,
        membership: MembershipService,
        *,
        own: Sequence[bytes] = (),
        db: Database | None = None,
        wall_clock: Callable[[], float],
        rng: random.Random | None = None,
    ) -> None:
        self.statements = statements
        self.authority = statements.authority
        self.membership = membership
        self._own = list(own)
        self._db = db
        self._wall_clock = wall_clock
        self._rng = rng or random.Random()
        self._news = trio.Event()
        self._serving = 0
        self._next_prune = 0.0
        #: Nodes met but not admitted, to ask: key -> address; and when each may be asked
        #: again.
        self._strangers: collections.OrderedDict[bytes, Address] = collections.OrderedDict()
        self._next_ask: dict[bytes, float] = {}
        #: Verdicts of :meth:`admits`: key -> (member, statements held then, until when).
        self._verdicts: dict[bytes, tuple[bool, int, float]] = {}
        #: Exchanges, statements added and refused, for status and tests.
        self.stats: collections.Counter[str] = collections.Counter()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Load, serve and reconcile until cancelled."""
        await self._load()
        # Any holder of the network key may reconcile (statements are public to members and
        # verified on receipt): that is how a node learns a new member's grant.
        self.membership.streams.on(AUTHORITY_PROTOCOL, self._serve, retired_ok=True)
        task_status.started()
        await self.membership.ready.wait()
        while True:
            with trio.move_on_after(SYNC_INTERVAL * (0.5 + self._rng.random())):
                await self._news.wait()
            fanout = FANOUT if self._news.is_set() else 1
            self._news = trio.Event()
            await self.renew()
            if trio.current_time() >= self._next_prune:
                self._next_prune = trio.current_time() + PRUNE_INTERVAL
                await self.prune()
            for peer in self._strangers_to_ask() + self._peers(fanout):
                await self.reconcile(peer)

    async def _load(self) -> None:
        stored: list[bytes] = []
        if self._db is not None:
            rows = await self._db.execute("SELECT statement FROM authority")
            stored = [bytes(row[0]) for row in rows]
        added = self.statements.add_many([*self._own, *stored], self._wall_clock())
        for reason in added.refused:
            self.stats["load_refused"] += 1
            log.warning("a stored statement of the network's authority is refused: %s", reason)
        # Own statements not yet in the database are kept there too; spent ones go.
        await self._store(added.new)
        await self.prune()
        if added.spent and self._db is not None:
            rows = await self._db.execute("SELECT hash FROM authority")
            await self._delete([bytes(r[0]) for r in rows if bytes(r[0]) not in self.statements])
        log.info("holding %d statements of the network's authority", len(self.statements))

    async def _store(self, encoded: Iterable[bytes]) -> None:
        if self._db is None:
            return
        for data in encoded:
            await self._db.execute(
                "INSERT OR IGNORE INTO authority (hash, statement) VALUES (?, ?)",
                (statement_hash(data), data),
            )

    # -- adding ------------------------------------------------------------------------------

    async def _delete(self, hashes: Sequence[bytes]) -> None:
        if self._db is None:
            return
        for digest in hashes:
            await self._db.execute("DELETE FROM authority WHERE hash = ?", (digest,))

    async def prune(self) -> int:
        """Forget the spent grants (plexinode.net.authority), here and in the database; how
        many."""
        gone = self.statements.prune(self._wall_clock())
        await self._delete(gone)
        if gone:
            self.stats["pruned"] += len(gone)
            log.info("forgot %d spent grants of the network's authority", len(gone))
        return len(gone)

    async def add(self, encoded: Sequence[bytes], *, source: str) -> Added:
        """Verify and keep `encoded` statements, store the new ones, and spread them."""
        added = self.statements.add_many(encoded, self._wall_clock())
        self.stats["added"] += len(added.new)
        self.stats["refused"] += len(added.refused)
        for reason in added.refused:
            log.info("refused a statement from %s: %s", source, reason)
        if added.new:
            await self._store(added.new)
            self._news.set()
        return added

    async def renew(self) -> int:
        """If this node may admit members, renew the grants of live members that expire within
        :data:`RENEW_BEFORE` (at most :data:`RENEWALS`); how many were renewed."""
        identity = self.membership.identity
        now = self._wall_clock()
        if not (self.holds(identity.public_key, INVITER) or self.holds(identity.public_key, ADMIN)):
            return 0
        due = []
        for member in self.membership.members():
            key = self.membership.evidence.public_key(member.node_id)
            if member.state is not State.ALIVE or key is None or not self.member(key):
                continue
            grants = [g for g in self.authority.grants_of(key) if g.role == MEMBER]
            if grants and max(g.expires_at for g in grants) - now < RENEW_BEFORE:
                due.append(key)
        renewed = [
            encode_statement(make_grant(identity, self.authority, key, MEMBER, now=int(now)))
            for key in due[:RENEWALS]
        ]
        if renewed:
            await self.add(renewed, source="renewal")
            self.stats["renewed"] += len(renewed)
            log.info("renewed the grants of %d members", len(renewed))
        return len(renewed)

    # -- questions ---------------------------------------------------------------------------

    def grants_revoked_key(self, encoded: bytes) -> bool:
        """Whether `encoded` is a grant whose subject is revoked (a malformed statement is
        not: :meth:`add` refuses it with its reason)."""
        try:
            statement = decode_statement(encoded)
        except DecodeError:
            return False
        return isinstance(statement, Grant) and self.authority.is_revoked(statement.subject)

    def member(self, public_key: bytes) -> Verdict:
        """Whether `public_key` holds a valid member grant now."""
        return self.authority.holds(public_key, MEMBER, self._wall_clock())

    def met(self, public_key: bytes, address: Address) -> None:
        """A node this node does not admit reached it from `address` (or answered there):
        ask it soon for the statements this node lacks, unless its key is revoked or was
        asked about in the last :data:`STRANGER_INTERVAL` seconds (at most
        :data:`MAX_STRANGERS` waiting)."""
        now = trio.current_time()
        if now < self._next_ask.get(public_key, 0.0) or self.authority.is_revoked(public_key):
            return
        if len(self._next_ask) >= 4 * MAX_STRANGERS:
            self._next_ask = {k: t for k, t in self._next_ask.items() if t > now}
        if len(self._strangers) >= MAX_STRANGERS:
            self._strangers.popitem(last=False)
        self._next_ask[public_key] = now + STRANGER_INTERVAL
        self._strangers[public_key] = address
        self._news.set()

    def admits(self, public_key: bytes) -> bool:
        """Whether `public_key` is a member now: asked for every datagram and stream of a
        private network, so answers are kept until a statement arrives or for
        :data:`VERDICT_TTL` seconds (a grant may expire meanwhile)."""
        now = self._wall_clock()
        cached = self._verdicts.get(public_key)
        if cached is not None and cached[1] == len(self.statements) and now < cached[2]:
            return cached[0]
        verdict = bool(self.authority.holds(public_key, MEMBER, now))
        if len(self._verdicts) >= MAX_VERDICTS:
            self._verdicts.clear()
        self._verdicts[public_key] = (verdict, len(self.statements), now + VERDICT_TTL)
        return verdict

    def holds(self, public_key: bytes, role: str) -> Verdict:
        return self.authority.holds(public_key, role, self._wall_clock())

    # -- reconciling -------------------------------------------------------------------------

    def _strangers_to_ask(self) -> list[Seed]:
        asked: list[Seed] = []
        while self._strangers and len(asked) < STRANGERS_PER_ROUND:
            key, address = self._strangers.popitem(last=False)
            asked.append(Seed(address, NodeId.from_public_key(key)))
        return asked

    def _peers(self, count: int) -> list[Seed]:
        table = self.membership.table
        if table is None:
            return []
        live = [m for m in table.members() if m.state is State.ALIVE and m.node_id != table.own_id]
        self._rng.shuffle(live)
        return [Seed(m.address, m.node_id) for m in live[:count]]

    async def reconcile(self, peer: Seed) -> bool:
        """One ``authority/1`` exchange with `peer`; True if it completed."""
        try:
            with trio.fail_after(EXCHANGE_TIMEOUT):
                stream = await self.membership.streams.open(
                    peer.address, AUTHORITY_PROTOCOL, node_id=peer.node_id, member_only=False
                )
                async with stream:
                    await self._exchange(stream, peer.node_id)
        except EXCHANGE_FAILURES as exc:
            self.stats["exchange_failed"] += 1
            log.debug("authority/1 with %s failed: %s", peer.address, exc)
            return False
        self.stats["exchanges"] += 1
        return True

    def _shown(self, peer_key: bytes, hashes: set[bytes] | None, wanted: bool) -> list[bytes]:
        """What this node sends a peer: to a member, the statements it lacks (or wants); to a
        node it does not admit (yet), only this node's own grants and the chain above them,
        so that the two can admit each other, and the revocations of the peer's own key, so
        that a revoked node learns why it is no longer heard; nothing else about the network's
        members."""
        theirs = hashes or set()
        if self.admits(peer_key):
            return self.statements.encoded(theirs) if wanted else self.statements.lacking(theirs)
        own = self.statements.chain(self.membership.identity.public_key, self._wall_clock(), 16)
        own += [encode_statement(r) for r in self.authority.revocations_of(peer_key)]
        return [s for s in own if (statement_hash(s) in theirs) == wanted]

    async def _exchange(self, stream: SecureStream, node_id: NodeId | None) -> None:
        summary = self.statements.summary()
        await stream.send(envelope.encode(AuthorityDigest(summary, b"")))
        theirs = await _receive(stream, AuthorityDigest)
        if theirs.summary == summary:
            return
        their_hashes = split_hashes(theirs.hashes)
        shown = self._shown(stream.remote_public_key, their_hashes, wanted=False)
        push = AuthorityPush(tuple(shown), self.statements.wants(their_hashes))
        await stream.send(envelope.encode(push))
        reply = await _receive(stream, AuthorityPush)
        await self.add(reply.statements, source=str(node_id))

    async def _serve(self, stream: SecureStream) -> None:
        if self._serving >= MAX_SERVING:
            self.stats["serve_busy"] += 1
            return
        self._serving += 1
        try:
            with trio.move_on_after(EXCHANGE_TIMEOUT):
                await self._answer(stream)
        except EXCHANGE_FAILURES as exc:
            self.stats["serve_failed"] += 1
            log.debug("authority/1 from %s failed: %s", stream.remote_node_id.short(), exc)
        finally:
            self._serving -= 1

    async def _answer(self, stream: SecureStream) -> None:
        asked = await _receive(stream, AuthorityDigest)
        summary = self.statements.summary()
        if asked.summary == summary:
            await stream.send(envelope.encode(AuthorityDigest(summary, b"")))
            return
        await stream.send(envelope.encode(AuthorityDigest(summary, self.statements.hashes())))
        push = await _receive(stream, AuthorityPush)
        wanted = split_hashes(push.wants)
        # What the asker pushed first: its own grants may be what admits it.
        await self.add(push.statements, source=stream.remote_node_id.short())
        shown = self._shown(stream.remote_public_key, wanted, wanted=True)
        await stream.send(envelope.encode(AuthorityPush(tuple(shown), b"")))

    def describe(self) -> dict[str, object]:
        """For ``status``: how many statements, revoked keys, and the exchanges."""
        return {
            "statements": len(self.statements),
            "revoked": len(self.authority.revoked_keys()),
            "stats": dict(self.stats),
        }


M = TypeVar("M", bound=Message)


async def _receive(stream: SecureStream, kind: type[M]) -> M:
    message = envelope.decode(await stream.receive(), FRAME_LIMITS).message
    if not isinstance(message, kind):
        raise DecodeError(f"{AUTHORITY_PROTOCOL} expected {kind.NAME}, got {message.NAME}")
    return message
