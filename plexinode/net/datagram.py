"""The datagram service: authenticated, encrypted request/response over UDP (or in memory).

Services register a handler per request type with :meth:`DatagramService.on` and call peers
with :meth:`DatagramService.request`. Inbound datagrams go through, in order of cost: the
per-host rate limit (every address but trusted networks), size and version checks, decryption
under one of the network's keys (its AEAD tag is the network check: nodes of other networks
stop here, for one Poly1305 per key), the recipient tag, strict envelope decoding, the host's
budget of failed signature checks, the signature, the replay guard, on a private network
whether the sender is a member (:attr:`DatagramService.admission`), and for requests the
per-peer, per-type rate limit (keyed on the authenticated node ID, so nobody can spend
another node's allowance).
Whatever fails is dropped and counted in :attr:`DatagramService.stats`; nothing from the
network can raise out of the receive loop.

Replies never make the node an amplifier: until a source address is validated (it answered a
request we sent there), everything sent to it because of one of its datagrams (the reply, the
DHT's ping-back) is at most three times that datagram's size; handlers shorten their answers to
:meth:`DatagramService.reply_room`, and a reply that would still exceed it is dropped and
counted. Requests that may draw a full datagram are padded until the responder has validated
us (see :mod:`plexinode.net.validation`).

A response is matched on (request ID, source address, node ID) rather than the request ID
alone, so a third party that learns a request ID cannot answer in the requester's name, and a
node that answers from an unexpected place is ignored. Handlers run in their own tasks, at most
``max_inflight_handlers`` at once; beyond that, requests are refused with a BUSY error (a sign
of overload that the caller can back off from) rather than queued without bound.
"""

from __future__ import annotations

import collections
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio

from plexinode.errors import AuthenticationError, DecodeError, PeerTimeout, RemoteProtocolError
from plexinode.identity import Identity, NodeId
from plexinode.net import packet
from plexinode.net.address import Address
from plexinode.net.admission import Admission
from plexinode.net.keyring import Keyring
from plexinode.net.ratelimit import TokenBuckets
from plexinode.net.settings import DatagramSettings
from plexinode.net.source_limits import SourceLimits
from plexinode.net.transport import DatagramSocket
from plexinode.net.validation import Validation
from plexinode.wire import envelope
from plexinode.wire.codec import DATAGRAM_LIMITS
from plexinode.wire.messages import ErrorReply
from plexinode.wire.schema import U64_MAX, Message

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, eq=False)
class Inbound:
    """An authenticated request, as handed to a handler.

    Compared by identity: two copies of one request (a retransmission) are two inbounds, each
    its own borrower of the handler limit.
    """

    message: Message
    request_id: int
    sender: NodeId
    public_key: bytes
    address: Address
    #: The datagram's size in bytes (what an unvalidated source's reply budget is made of).
    size: int = 0


@dataclass(frozen=True, slots=True)
class Reply:
    """The answer to :meth:`DatagramService.request`."""

    message: Message
    sender: NodeId
    address: Address
    rtt: float


Handler = Callable[[Inbound], Awaitable[Message | None]]


class _Pending:
    __slots__ = ("address", "event", "node_id", "reply", "sent_at")

    def __init__(self, address: Address, node_id: NodeId | None) -> None:
        self.address = address
        self.node_id = node_id
        self.event = trio.Event()
        self.reply: Reply | None = None
        self.sent_at = 0.0


class DatagramService:
    """Authenticated datagrams with request/response, on one datagram socket."""

    def __init__(
        self,
        identity: Identity,
        sock: DatagramSocket,
        settings: DatagramSettings,
        *,
        epochs: Callable[[], int] | None = None,
        id_difficulty: int = 0,
        keyring: Keyring | None = None,
    ) -> None:
        self.identity = identity
        #: The network's ID puzzle (see NodeId.meets): datagrams from IDs that fail it are
        #: dropped before their signature is checked.
        self.id_difficulty = id_difficulty
        self.settings = settings
        self._sock = sock
        #: Boot epochs of our datagram counters (packet.Sealer): from the OS unless injected.
        self._sealer = packet.Sealer(
            identity, epochs or (lambda: secrets.randbits(packet.SEQ_BITS)), keyring
        )
        #: The network's keys: datagrams tagged under none of them are dropped.
        self.keyring = self._sealer.keyring
        self._guard = packet.ReplayGuard(settings.replay_window, memory=settings.replay_memory)
        self._handlers: dict[type[Message], Handler] = {}
        self._pending: dict[int, _Pending] = {}
        # (sender, request ID) of the requests whose handler is running (at most
        # max_inflight_handlers of them).
        self._handling: set[tuple[NodeId, int]] = set()
        self._limiter = trio.CapacityLimiter(settings.max_inflight_handlers)
        rate = settings.peer_request_rate
        #: (sender, message type) -> tokens; see DatagramSettings.peer_request_rate.
        self._peer_limits = TokenBuckets[tuple[NodeId, int]](rate, 2 * rate, max_keys=8192)
        #: At most one RATE_LIMITED reply per sender per second.
        self._limit_notices = TokenBuckets[NodeId](1.0, 1, max_keys=4096)
        #: Per-host budgets of datagrams and of failed signature checks.
        self.sources = SourceLimits(
            settings.host_datagram_rate,
            failure_rate=settings.host_failure_rate,
            failure_burst=settings.host_failure_burst,
            trusted=settings.trusted_hosts,
        )
        #: Which source addresses are validated (see plexinode.net.validation).
        self.validation = Validation[Address]()
        # The bytes each request from an unvalidated address may still cause us to send to it
        # (its reply, a ping-back), while it is being handled.
        self._budgets: dict[Inbound, int] = {}
        #: On a private network, who is a member now (a valid grant, not revoked): datagrams
        #: from other keys are dropped after their signature is checked (``drop_not_member``)
        #: and their senders reported (:meth:`Admission.met`). None: every key is heard.
        self.admission: Admission | None = None
        self._nursery: trio.Nursery | None = None
        self._request_observers: list[Callable[[Inbound], None]] = []
        self._reply_observers: list[Callable[[Reply], None]] = []
        #: Counters of what happened to datagrams, e.g. ``stats["drop_bad_signature"]``.
        self.stats: collections.Counter[str] = collections.Counter()

    def on(self, message_type: type[Message], handler: Handler) -> None:
        """Serve requests of `message_type` with `handler` (its return value is the reply)."""
        if message_type.RESPONSE:
            raise ValueError(f"{message_type.__name__} is a response type")
        self._handlers[message_type] = handler

    def handler(self, message_type: type[Message]) -> Handler | None:
        """The handler serving `message_type`, if any."""
        return self._handlers.get(message_type)

    def observe(
        self,
        *,
        requests: Callable[[Inbound], None] | None = None,
        replies: Callable[[Reply], None] | None = None,
    ) -> None:
        """Be told of every authenticated request and every matched reply (e.g. by the DHT,
        which learns of nodes this way). Observers are synchronous and must not raise."""
        if requests is not None:
            self._request_observers.append(requests)
        if replies is not None:
            self._reply_observers.append(replies)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Receive and dispatch datagrams until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            try:
                while True:
                    data, address = await self._sock.recvfrom()
                    self._receive(data, address)
            finally:
                self._nursery = None
                self._sock.close()

    # -- sending -------------------------------------------------------------------------------

    async def send(
        self,
        address: Address,
        message: Message,
        *,
        node_id: NodeId | None = None,
        request_id: int = 0,
    ) -> None:
        """Send one datagram (no answer expected unless `request_id` is pending)."""
        datagram = self._sealer.seal(envelope.encode(message, request_id), node_id)
        await self._transmit(datagram, address)

    async def _transmit(self, datagram: bytes, address: Address) -> None:
        self.stats["sent"] += 1
        self.stats["sent_bytes"] += len(datagram)
        await self._sock.sendto(datagram, address)

    @staticmethod
    def datagram_bytes(message: Message) -> int:
        """The size of the datagram carrying `message` as a request (the longest request ID)."""
        return packet.OVERHEAD + len(envelope.encode(message, U64_MAX))

    def _padded(self, address: Address, message: Message) -> Message:
        """`message`, padded if it may draw a full datagram and `address` has not validated
        us yet (see plexinode.net.validation): its answer is then not shortened."""
        pad = getattr(message, "with_padding", None)
        if pad is None:
            return message
        size = self.datagram_bytes(message)
        missing = self.validation.padding(address, size, trio.current_time())
        if not missing:
            return message
        padded: Message = pad(missing)
        over = self.datagram_bytes(padded) - size - missing  # a longer length header
        if over > 0:
            padded = pad(missing - over)
        self.stats["requests_padded"] += 1
        return padded

    async def request(
        self,
        address: Address,
        message: Message,
        *,
        node_id: NodeId | None = None,
        attempt_timeout: float | None = None,
        retries: int | None = None,
    ) -> Reply:
        """Send a request and wait for the matching reply.

        Args:
            address: where to send it.
            message: the request.
            node_id: the node expected to answer; None only for first-contact requests
                (``message.ANONYMOUS_OK``), where any node at `address` may answer.
            attempt_timeout: seconds to wait per attempt (default: the configured request timeout).
            retries: extra attempts after the first (default: configured).

        Raises:
            PeerTimeout: no matching reply after every attempt.
            RemoteProtocolError: the peer answered with an error reply.
        """
        if node_id is None and not message.ANONYMOUS_OK:
            raise ValueError(f"{message.NAME} requests must name the node they are for")
        timeout = self.settings.request_timeout if attempt_timeout is None else attempt_timeout
        retries = self.settings.retries if retries is None else retries
        message = self._padded(address, message)
        request_id = self._new_request_id()
        pending = _Pending(address, node_id)
        self._pending[request_id] = pending
        try:
            for _attempt in range(retries + 1):
                pending.sent_at = trio.current_time()
                await self.send(address, message, node_id=node_id, request_id=request_id)
                with trio.move_on_after(timeout):
                    await pending.event.wait()
                if pending.reply is not None:
                    break
                self.stats["request_retry"] += 1
        finally:
            del self._pending[request_id]
        reply = pending.reply
        if reply is None:
            self.stats["request_timeout"] += 1
            who = node_id.short() if node_id else "the node"
            raise PeerTimeout(f"no answer from {who} at {address} after {retries + 1} attempts")
        if isinstance(reply.message, ErrorReply):
            raise RemoteProtocolError(f"{address} refused: {reply.message.text}")
        return reply

    def _new_request_id(self) -> int:
        while True:
            request_id = secrets.randbits(64)
            if request_id and request_id not in self._pending:
                return request_id

    # -- receiving -----------------------------------------------------------------------------

    def _drop(self, reason: str, address: Address) -> None:
        self.stats["drop_" + reason] += 1
        log.debug("dropped datagram from %s: %s", address, reason)

    def _receive(self, data: bytes, address: Address) -> None:
        self.stats["received"] += 1
        now = trio.current_time()
        if not self.sources.allow(address.host, now):
            self._drop("host_rate_limited", address)
            return
        try:
            packet.check_layout(data)
        except DecodeError:
            self._drop("malformed", address)
            return
        inner = packet.decrypt(data, self.keyring.by_preference())
        if inner is None:
            self._drop("network_key", address)
            return
        opened = packet.parse(inner)
        if not packet.check_recipient(opened, self.identity.node_id):
            self._drop("misaddressed", address)
            return
        if self.id_difficulty and not NodeId.from_public_key(opened.public_key).meets(
            self.id_difficulty
        ):
            self._drop("id_puzzle", address)
            return
        try:
            env = envelope.decode(opened.payload, DATAGRAM_LIMITS)
        except DecodeError:
            self._drop("malformed", address)
            return
        if not self.sources.may_verify(address.host, now):
            self._drop("host_failures", address)
            return
        try:
            sender = opened.verify()
        except AuthenticationError:
            self.sources.failed(address.host, now)
            self._drop("bad_signature", address)
            return
        if sender == self.identity.node_id:
            self._drop("from_self", address)
            return
        if self.admission is not None and not self.admission.admits(opened.public_key):
            self._drop("not_member", address)
            self.admission.met(opened.public_key, address)
            return
        if not self._guard.accept(opened.public_key, opened.counter, now):
            self._drop("replay", address)
            return
        message = env.message
        if opened.recipient == packet.ANY_RECIPIENT and not message.ANONYMOUS_OK:
            self._drop("anonymous", address)
            return
        if message.RESPONSE:
            self._match_reply(message, env.request_id, sender, address)
            return
        if not self._peer_limits.allow((sender, message.TYPE), now, message.COST):
            self._drop("rate_limited", address)
            if env.request_id and self._limit_notices.allow(sender, now):
                inbound = Inbound(
                    message, env.request_id, sender, opened.public_key, address, len(data)
                )
                self._reply_error(inbound, ErrorReply.RATE_LIMITED, "rate limited")
            return
        self._dispatch(
            Inbound(message, env.request_id, sender, opened.public_key, address, len(data))
        )

    def _match_reply(
        self, message: Message, request_id: int, sender: NodeId, address: Address
    ) -> None:
        pending = self._pending.get(request_id)
        if (
            pending is None
            or pending.reply is not None
            or pending.address != address
            or (pending.node_id is not None and pending.node_id != sender)
        ):
            self._drop("unmatched_reply", address)
            return
        now = trio.current_time()
        # Only a receiver of our request knows its random ID: the address is validated.
        self.validation.validated.add(address, now)
        rtt = max(0.0, now - pending.sent_at)
        pending.reply = Reply(message, sender, address, rtt)
        pending.event.set()
        self.stats["replies"] += 1
        for observer in self._reply_observers:
            observer(pending.reply)

    def _dispatch(self, inbound: Inbound) -> None:
        budget = self.validation.budget(inbound.address, inbound.size, trio.current_time())
        if budget is not None:
            self._budgets[inbound] = budget
        handled = False
        try:
            for observer in self._request_observers:
                observer(inbound)
            handler = self._handlers.get(type(inbound.message))
            if handler is None:
                self._drop("unhandled", inbound.address)
                self._reply_error(inbound, ErrorReply.UNSUPPORTED, "unsupported request")
                return
            key = (inbound.sender, inbound.request_id)
            if inbound.request_id and key in self._handling:
                # A retransmission of a request still being handled: the first copy's reply
                # answers both (the requester accepts the first reply to its request ID).
                self._drop("duplicate", inbound.address)
                return
            try:
                self._limiter.acquire_on_behalf_of_nowait(inbound)
            except trio.WouldBlock:
                self._drop("busy", inbound.address)
                self._reply_error(inbound, ErrorReply.BUSY, "busy")
                return
            assert self._nursery is not None
            self.stats["requests"] += 1
            if inbound.request_id:
                self._handling.add(key)
            self._nursery.start_soon(self._handle, handler, inbound)
            handled = True
        finally:
            if not handled:
                self._budgets.pop(inbound, None)

    # -- the reply budget of unvalidated sources -----------------------------------------------

    def reply_room(self, inbound: Inbound) -> int | None:
        """Envelope bytes a reply to `inbound` may have, or None for no limit (its source is
        validated): handlers shorten what they answer an unvalidated source to fit."""
        budget = self._budgets.get(inbound)
        return None if budget is None else budget - packet.OVERHEAD

    def charge(self, inbound: Inbound, size: int) -> bool:
        """Take `size` bytes, to be sent to `inbound`'s source because of it (a ping-back),
        from its budget; False (and nothing taken) if they do not fit."""
        budget = self._budgets.get(inbound)
        if budget is None:
            return True
        if size > budget:
            return False
        self._budgets[inbound] = budget - size
        return True

    def _reply_error(self, inbound: Inbound, code: int, text: str) -> None:
        if inbound.request_id and self._nursery is not None:
            budget = self._budgets.get(inbound)
            if budget is None and inbound not in self._budgets:
                budget = self.validation.budget(inbound.address, inbound.size, trio.current_time())
            self._nursery.start_soon(self._send_reply, inbound, ErrorReply(code, text), budget)

    async def _send_reply(self, inbound: Inbound, reply: Message, budget: int | None) -> None:
        datagram = self._sealer.seal(envelope.encode(reply, inbound.request_id), inbound.sender)
        if budget is not None:
            if len(datagram) > budget:
                # A handler that did not shorten its answer: never amplify, drop it.
                self._drop("reply_over_budget", inbound.address)
                return
            self.stats["replies_unvalidated"] += 1
            self.stats["sent_unvalidated_bytes"] += len(datagram)
        # Our reply makes the requester validate this address of ours.
        self.validation.validates_us.add(inbound.address, trio.current_time())
        await self._transmit(datagram, inbound.address)

    async def _handle(self, handler: Handler, inbound: Inbound) -> None:
        try:
            try:
                reply = await handler(inbound)
            except RemoteProtocolError as exc:
                self.stats["handler_refused"] += 1
                reply = ErrorReply(ErrorReply.INVALID, str(exc)[:200])
            except Exception:
                self.stats["handler_error"] += 1
                log.exception("handler for %s failed", inbound.message.NAME)
                return
            if reply is not None and inbound.request_id:
                await self._send_reply(inbound, reply, self._budgets.get(inbound))
        finally:
            self._budgets.pop(inbound, None)
            self._handling.discard((inbound.sender, inbound.request_id))
            self._limiter.release_on_behalf_of(inbound)

    def summary(self) -> dict[str, Any]:
        """Counters and sizes for `status` and debugging."""
        return {
            "pending_requests": len(self._pending),
            "replay_senders": len(self._guard),
            "validated_addresses": len(self.validation.validated),
            "counters": dict(self.stats),
        }
