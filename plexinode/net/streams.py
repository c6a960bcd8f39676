"""The stream service: accepts secure streams and routes them to protocol handlers.

Every accepted connection first runs the mutual-authentication handshake
(:mod:`plexinode.net.secure`) and reads the dialer's first frame, a
:class:`~plexinode.wire.messages.StreamOpen` naming the protocol (``echo/1``,
``membership/1`` ...), under ``stream.handshake_timeout``; a peer that stalls is cut off when
the timeout expires and its task and socket are freed. The handler for that protocol then owns
the stream until it returns; the service closes it afterwards.

What one party can hold is bounded by :class:`~plexinode.net.stream_limits.StreamLimits`, the
sans-I/O core this service feeds (its docstring has the rules):

* an accepted connection from a host over its connection rate, or whose host (or the node)
  holds all the streams it may, is closed at once, before any handshake work;
* pending handshakes are capped per host and in total; at a cap a new connection evicts the
  oldest pending handshake of its own host, or else of the host holding the most, so a flood
  from one host (thousands of silent connections) only ever evicts its own;
* after the handshake and the opening frame, the stream is refused if its node ID, its host or
  the node holds all it may. The refused dialer sees a clean close (the final frame) where it
  expected its first answer, never a reset, and no side logs a traceback;
* an established stream on which no frame arrives and none is sent for ``stream.idle_timeout``
  is closed (``idle_closed``), and one on which a frame begun is not complete within
  ``stream.frame_timeout`` is closed with its buffer freed (``frame_timeout``).

Every refusal is counted in :attr:`StreamService.stats` (``refused_rate``,
``refused_host_streams``, ``refused_total_streams``, ``refused_node_streams``,
``handshake_evicted``), which ``status`` shows under ``streams``.

Under load (``stream.cookie_pending_threshold`` handshakes pending, or
``stream.cookie_handshake_rate`` key exchanges in a second), a msg1 without a valid cookie is
answered with a cookie reply and closed before any key exchange (:mod:`plexinode.net.cookie`);
:meth:`StreamService.open` then reconnects once with the cookie. ``status`` shows
``cookie_replies``, ``cookie_valid`` (msg1s served under load thanks to their cookie),
``responder_exchanges`` (msg1s that reached a key exchange) and ``under_load`` (0 or 1, now).

A peer whose handshake was tagged under a *retired* network key (it missed a key rotation) may
open only the protocols registered with ``retired_ok`` (the one that hands it the current
keys, if it is entitled to them); any other is refused and counted (``retired_key_refused``).
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Awaitable, Callable
from typing import Final

import trio

from plexinode.errors import HandshakeError, RemoteProtocolError
from plexinode.identity import Identity, NodeId
from plexinode.net.address import Address
from plexinode.net.admission import Admission
from plexinode.net.cookie import ConnectionCookies, CookieGuard, CookieReplySent
from plexinode.net.handshake import NETWORK, RETIRED, NetworkKeyError, PskLookup
from plexinode.net.keyring import Keyring
from plexinode.net.secure import SecureStream, secure_accept, secure_connect
from plexinode.net.settings import StreamSettings
from plexinode.net.stream_limits import Refusal, SeenMsg1, StreamLimits
from plexinode.net.transport import Transport
from plexinode.wire import envelope
from plexinode.wire.codec import FRAME_LIMITS
from plexinode.wire.messages import StreamOpen

log = logging.getLogger(__name__)

#: How an exchange with a peer over a secure stream can fail: unreachable, refused, slow,
#: broken or malformed. Services that talk to peers catch these and count a failure.
STREAM_FAILURES: Final = (
    trio.TooSlowError,
    OSError,
    RemoteProtocolError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    trio.EndOfChannel,
)

StreamHandler = Callable[[SecureStream], Awaitable[None]]


def peer_host(stream: trio.abc.Stream) -> str:
    """The address of the host at the other end of an accepted `stream` ("" if unknown): the
    in-memory network's streams say it, a socket stream asks its socket."""
    remote = getattr(stream, "remote_address", None)
    if isinstance(remote, Address):
        return remote.host
    if isinstance(stream, trio.SocketStream):
        try:
            name = stream.socket.getpeername()
        except OSError:  # already reset by the peer
            return ""
        if isinstance(name, tuple):
            return str(name[0])
    return ""


class StreamService:
    """Secure-stream listener and dialer for one node."""

    def __init__(
        self,
        identity: Identity,
        listener: trio.abc.Listener[trio.abc.Stream],
        transport: Transport,
        settings: StreamSettings,
        *,
        prologue: bytes = b"",
        id_difficulty: int = 0,
        keyring: Keyring | None = None,
    ) -> None:
        self.identity = identity
        #: The network's keys: handshakes tagged under none of them are refused at once.
        self.keyring = keyring or Keyring.open("open")
        self.id_difficulty = id_difficulty
        self.settings = settings
        self._listener = listener
        self._transport = transport
        self._prologue = prologue
        self._handlers: dict[str, StreamHandler] = {}
        self._retired_ok: set[str] = set()
        self._extra_key_ok: set[str] = set()
        #: Pre-shared keys accepted besides the keyring's (a join ticket's key, see
        #: plexinode.security.ticket_service); such sessions may open only the protocols
        #: registered ``extra_key_ok``.
        self.extra_keys: PskLookup | None = None
        #: On a private network, who is a member now: streams with other keys are refused
        #: after the handshake (``refused_not_member``), except for the protocols registered
        #: ``retired_ok``, which check who asks themselves; a responder that is not a member is
        #: reported (:meth:`Admission.met`) and refused. None: every key is served.
        self.admission: Admission | None = None
        #: Who may hold which connections and streams (raises ValueError on a bad
        #: ``trusted_hosts``).
        self.limits: StreamLimits[int, NodeId] = StreamLimits(settings)
        # The cancel scope of each inbound connection still in its handshake, by key.
        self._pending: dict[int, trio.CancelScope] = {}
        self._next_key = 0
        #: Initiators' ephemeral keys of recent handshakes: a replayed msg1 is refused.
        self._seen_msg1 = SeenMsg1()
        #: The node's load and cookie secrets (plexinode.net.cookie).
        self.cookies = CookieGuard(
            pending_threshold=settings.cookie_pending_threshold,
            exchange_rate=settings.cookie_handshake_rate,
        )
        self.stats: collections.Counter[str] = collections.Counter()

    @property
    def pending_handshakes(self) -> int:
        """Inbound handshakes in progress."""
        return self.limits.pending

    @property
    def inbound_streams(self) -> int:
        """Inbound streams established (handshake and opening frame done) and not yet closed."""
        return self.limits.established

    def summary(self) -> dict[str, int]:
        """The counters, and how many handshakes and inbound streams are open now (for
        ``status``)."""
        cookies = self.cookies
        return {
            **self.stats,
            "pending_handshakes": self.pending_handshakes,
            "inbound_streams": self.inbound_streams,
            "cookie_replies": cookies.replies,
            "cookie_valid": cookies.valid_mac2,
            "responder_exchanges": cookies.exchanges,
            "under_load": int(cookies.under_load(self.pending_handshakes, trio.current_time())),
        }

    def on(
        self,
        protocol: str,
        handler: StreamHandler,
        *,
        retired_ok: bool = False,
        extra_key_ok: bool = False,
    ) -> None:
        """Serve streams that open `protocol` with `handler`; with `retired_ok`, also for
        peers whose handshake used a retired network key (module docstring); with
        `extra_key_ok`, also (and only such protocols) for peers whose handshake used one of
        :attr:`extra_keys` (a join ticket's key)."""
        self._handlers[protocol] = handler
        if retired_ok:
            self._retired_ok.add(protocol)
        if extra_key_ok:
            self._extra_key_ok.add(protocol)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Accept connections until cancelled."""
        async with trio.open_nursery() as nursery:
            task_status.started()
            try:
                while True:
                    try:
                        stream = await self._listener.accept()
                    except OSError as exc:  # e.g. EMFILE: back off instead of spinning
                        self.stats["accept_error"] += 1
                        log.warning("accept failed: %s", exc)
                        await trio.sleep(0.1)
                        continue
                    key = self._next_key
                    self._next_key += 1
                    host = peer_host(stream)
                    decision = self.limits.connect(key, host, trio.current_time())
                    if isinstance(decision, Refusal):
                        self.stats[decision.value] += 1
                        log.debug("connection from %s refused (%s)", host, decision.value)
                        await trio.aclose_forcefully(stream)
                        continue
                    if decision.evicted is not None:
                        self._pending.pop(decision.evicted).cancel()
                        self.stats["handshake_evicted"] += 1
                    scope = trio.CancelScope()
                    self._pending[key] = scope
                    nursery.start_soon(self._serve, stream, key, host, scope)
            finally:
                await self._listener.aclose()

    async def _serve(
        self, raw: trio.abc.Stream, key: int, host: str, scope: trio.CancelScope
    ) -> None:
        opened = None
        try:
            try:
                with scope:
                    opened = await self._accept(raw, key, host)
            finally:
                self._pending.pop(key, None)
            if opened is None:
                await trio.aclose_forcefully(raw)
                return
            secure, protocol = opened
            try:
                await self._run_handler(secure, protocol)
            finally:
                # The peer gets the final frame, unless it stopped reading (then it gets less).
                with trio.move_on_after(self.settings.handshake_timeout):
                    await secure.aclose()
                await trio.aclose_forcefully(secure)
        finally:
            self.limits.release(key)

    async def _run_handler(self, secure: SecureStream, protocol: str) -> None:
        if secure.psk_kind not in (NETWORK, RETIRED):
            if protocol not in self._extra_key_ok:
                self.stats["extra_key_refused"] += 1
                return
        elif secure.retired_key and protocol not in self._retired_ok:
            self.stats["retired_key_refused"] += 1
            log.debug(
                "%s used a retired network key for %r", secure.remote_node_id.short(), protocol
            )
            return
        if (
            self.admission is not None
            and protocol not in self._retired_ok
            and protocol not in self._extra_key_ok
            and not self.admission.admits(secure.remote_public_key)
        ):
            self.stats["refused_not_member"] += 1
            log.debug("%s is not a member: refused %r", secure.remote_node_id.short(), protocol)
            return
        handler = self._handlers.get(protocol)
        if handler is None:
            self.stats["unknown_protocol"] += 1
            log.debug("%s asked for unknown protocol %r", secure.remote_node_id.short(), protocol)
            return
        self.stats["accepted"] += 1
        self.stats["accepted:" + protocol] += 1
        with trio.CancelScope() as idle:
            # Cancelled once no frame has moved either way for idle_timeout.
            secure.cancel_when_idle(idle, self.settings.idle_timeout)
            try:
                await handler(secure)
            except (RemoteProtocolError, trio.BrokenResourceError, trio.EndOfChannel) as exc:
                if not secure.frame_timed_out:  # counted below
                    self.stats["stream_error"] += 1
                log.debug(
                    "stream %s from %s ended: %s", protocol, secure.remote_node_id.short(), exc
                )
            except Exception:
                # A bug in one handler ends that stream, not the node (as for datagram handlers).
                self.stats["handler_error"] += 1
                log.exception("handler for stream protocol %s failed", protocol)
        if idle.cancelled_caught:
            self.stats["idle_closed"] += 1
            log.debug("closed idle stream %s from %s", protocol, secure.remote_node_id.short())
        if secure.frame_timed_out:
            self.stats["frame_timeout"] += 1
            log.debug("%s did not finish a frame in time", secure.remote_node_id.short())

    async def _accept(
        self, raw: trio.abc.Stream, key: int, host: str
    ) -> tuple[SecureStream, str] | None:
        """Handshake, read the StreamOpen frame and ask the limits; None (counted) if any of
        them fails or refuses."""
        with trio.move_on_after(self.settings.handshake_timeout):
            try:
                secure = await secure_accept(
                    raw,
                    self.identity,
                    prologue=self._prologue,
                    keyring=self.keyring,
                    max_frame_bytes=self.settings.max_frame_bytes,
                    frame_timeout=self.settings.frame_timeout,
                    seen=self._seen_msg1,
                    extra_keys=self.extra_keys,
                    cookies=ConnectionCookies(
                        self.cookies, host, trio.current_time, lambda: self.limits.pending
                    ),
                )
            except CookieReplySent:  # counted by the guard
                return None
            except NetworkKeyError as exc:
                self.stats["handshake_network_key"] += 1
                log.debug("inbound handshake refused: %s", exc)
                return None
            except (RemoteProtocolError, trio.BrokenResourceError, trio.EndOfChannel) as exc:
                self.stats["handshake_failed"] += 1
                log.debug("inbound handshake failed: %s", exc)
                return None
            if not secure.remote_node_id.meets(self.id_difficulty):
                self.stats["id_puzzle_failed"] += 1
                await trio.aclose_forcefully(secure)
                return None
            try:
                opening = envelope.decode(await secure.receive(), FRAME_LIMITS).message
            except (RemoteProtocolError, trio.BrokenResourceError, trio.EndOfChannel) as exc:
                self.stats["bad_open"] += 1
                log.debug("bad stream opening from %s: %s", secure.remote_node_id.short(), exc)
                return None
            if not isinstance(opening, StreamOpen):
                self.stats["bad_open"] += 1
                return None
            refusal = self.limits.authenticated(key, secure.remote_node_id)
            if refusal is not None:
                if refusal is not Refusal.GONE:
                    self.stats[refusal.value] += 1
                    log.debug(
                        "stream %s from %s refused (%s)",
                        opening.protocol,
                        secure.remote_node_id.short(),
                        refusal.value,
                    )
                await secure.aclose()  # a clean close: the final frame, then EOF
                return None
            return secure, opening.protocol
        self.stats["handshake_timeout"] += 1
        return None

    async def open(
        self,
        address: Address,
        protocol: str,
        *,
        node_id: NodeId | None = None,
        network_key: bytes | None = None,
        member_only: bool = True,
    ) -> SecureStream:
        """Dial `address`, authenticate (requiring `node_id` if given) and open `protocol`,
        with the keyring's primary key or `network_key` (a join ticket's key). On a private
        network the responder must be a member, unless not `member_only` (for the protocol
        that exchanges the statements saying who is one).

        Raises:
            HandshakeError: the peer failed authentication, is not `node_id`, or timed out.
            OSError: the address cannot be reached.
        """
        raw = await self._transport.connect(address)
        try:
            with trio.fail_after(self.settings.handshake_timeout):
                secure = await secure_connect(
                    raw,
                    self.identity,
                    expected_node_id=node_id,
                    prologue=self._prologue,
                    network_key=network_key or self.keyring.primary,
                    max_frame_bytes=self.settings.max_frame_bytes,
                    frame_timeout=self.settings.frame_timeout,
                    reconnect=lambda: self._transport.connect(address),
                )
        except trio.TooSlowError:
            await trio.aclose_forcefully(raw)
            raise HandshakeError(f"handshake with {address} timed out") from None
        except BaseException:
            await trio.aclose_forcefully(raw)
            raise
        admission = self.admission if network_key is None and member_only else None
        if admission is not None and not admission.admits(secure.remote_public_key):
            admission.met(secure.remote_public_key, address)
            await trio.aclose_forcefully(secure)
            raise HandshakeError(
                f"{address} answered as {secure.remote_node_id.short()}, which is not a "
                "member of this network (as far as this node knows yet)"
            )
        await secure.send(envelope.encode(StreamOpen(protocol)))
        return secure
