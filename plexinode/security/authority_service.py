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
from plexinode.net.authority import Verdict
from plexinode.net.certificates import MEMBER
from plexinode.net.secure import SecureStream
from plexinode.security.statements import (
    AUTHORITY_PROTOCOL,
    Added,
    AuthorityDigest,
    AuthorityPush,
    StatementSet,
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

_FAILURES: Final = (
    trio.TooSlowError,
    OSError,
    DecodeError,
    AuthenticationError,
    HandshakeError,
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
        #: Exchanges, statements added and refused, for status and tests.
        self.stats: collections.Counter[str] = collections.Counter()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Load, serve and reconcile until cancelled."""
        await self._load()
        self.membership.streams.on(AUTHORITY_PROTOCOL, self._serve)
        task_status.started()
        await self.membership.ready.wait()
        while True:
            with trio.move_on_after(SYNC_INTERVAL * (0.5 + self._rng.random())):
                await self._news.wait()
            fanout = FANOUT if self._news.is_set() else 1
            self._news = trio.Event()
            for peer in self._peers(fanout):
                await self.reconcile(peer)

    async def _load(self) -> None:
        stored: list[bytes] = []
        if self._db is not None:
            rows = await self._db.execute("SELECT statement FROM authority")
            stored = [bytes(row[0]) for row in rows]
        added = self.statements.add_many([*self._own, *stored])
        for reason in added.refused:
            self.stats["load_refused"] += 1
            log.warning("a stored statement of the network's authority is refused: %s", reason)
        # Own statements not yet in the database are kept there too.
        await self._store(added.new)
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

    async def add(self, encoded: Sequence[bytes], *, source: str) -> Added:
        """Verify and keep `encoded` statements, store the new ones, and spread them."""
        added = self.statements.add_many(encoded)
        self.stats["added"] += len(added.new)
        self.stats["refused"] += len(added.refused)
        for reason in added.refused:
            log.info("refused a statement from %s: %s", source, reason)
        if added.new:
            await self._store(added.new)
            self._news.set()
        return added

    # -- questions ---------------------------------------------------------------------------

    def member(self, public_key: bytes) -> Verdict:
        """Whether `public_key` holds a valid member grant now."""
        return self.authority.holds(public_key, MEMBER, self._wall_clock())

    def holds(self, public_key: bytes, role: str) -> Verdict:
        return self.authority.holds(public_key, role, self._wall_clock())

    # -- reconciling -------------------------------------------------------------------------

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
                    peer.address, AUTHORITY_PROTOCOL, node_id=peer.node_id
                )
                async with stream:
                    await self._exchange(stream, peer.node_id)
        except _FAILURES as exc:
            self.stats["exchange_failed"] += 1
            log.debug("authority/1 with %s failed: %s", peer.address, exc)
            return False
        self.stats["exchanges"] += 1
        return True

    async def _exchange(self, stream: SecureStream, node_id: NodeId | None) -> None:
        summary = self.statements.summary()
        await stream.send(envelope.encode(AuthorityDigest(summary, b"")))
        theirs = await _receive(stream, AuthorityDigest)
        if theirs.summary == summary:
            return
        their_hashes = split_hashes(theirs.hashes)
        push = AuthorityPush(
            tuple(self.statements.lacking(their_hashes)), self.statements.wants(their_hashes)
        )
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
        except _FAILURES as exc:
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
        answer = AuthorityPush(tuple(self.statements.encoded(wanted)), b"")
        await stream.send(envelope.encode(answer))
        await self.add(push.statements, source=stream.remote_node_id.short())

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
