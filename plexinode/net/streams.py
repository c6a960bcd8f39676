"""The stream service: accepts secure streams and routes them to protocol handlers.

Every accepted connection first runs the mutual-authentication handshake
(:mod:`plexinode.net.secure`) under ``stream.handshake_timeout``; a peer that stalls is cut off
when the timeout expires and its task and socket are freed. At most
``stream.max_pending_handshakes`` handshakes run at once. When a new connection arrives at that
limit, the *oldest* pending handshake is cut off to make room, rather than the new one being
refused: an honest handshake finishes in a round trip or two, so a client that opens thousands
of silent connections only ever evicts its own, and costs the node a bounded number of sockets
and tasks. (Refusing new connections instead would let that client lock everyone out.)

After the handshake the dialer's first frame is a :class:`~plexinode.wire.messages.StreamOpen`
naming the protocol (``echo/1``, and later ``membership/1``, ``shards/1`` ...). The handler for
that protocol owns the stream until it returns; the service closes it afterwards.

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
from plexinode.net.handshake import NetworkKeyError
from plexinode.net.keyring import Keyring
from plexinode.net.secure import SecureStream, secure_accept, secure_connect
from plexinode.net.settings import StreamSettings
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
        self._pending: dict[int, trio.CancelScope] = {}
        self._next_key = 0
        self.stats: collections.Counter[str] = collections.Counter()

    @property
    def pending_handshakes(self) -> int:
        """Inbound handshakes in progress."""
        return len(self._pending)

    def on(self, protocol: str, handler: StreamHandler, *, retired_ok: bool = False) -> None:
        """Serve streams that open `protocol` with `handler`; with `retired_ok`, also for
        peers whose handshake used a retired network key (module docstring)."""
        self._handlers[protocol] = handler
        if retired_ok:
            self._retired_ok.add(protocol)

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
                    if len(self._pending) >= self.settings.max_pending_handshakes:
                        oldest = next(iter(self._pending))
                        self._pending.pop(oldest).cancel()
                        self.stats["handshake_evicted"] += 1
                    key, scope = self._next_key, trio.CancelScope()
                    self._next_key += 1
                    self._pending[key] = scope
                    nursery.start_soon(self._serve, stream, key, scope)
            finally:
                await self._listener.aclose()

    async def _serve(self, raw: trio.abc.Stream, key: int, scope: trio.CancelScope) -> None:
        opened = None
        try:
            with scope:
                opened = await self._accept(raw)
        finally:
            self._pending.pop(key, None)
        if opened is None:
            await trio.aclose_forcefully(raw)
            return
        secure, protocol = opened
        async with secure:
            if secure.retired_key and protocol not in self._retired_ok:
                self.stats["retired_key_refused"] += 1
                log.debug(
                    "%s used a retired network key for %r",
                    secure.remote_node_id.short(),
                    protocol,
                )
                return
            handler = self._handlers.get(protocol)
            if handler is None:
                self.stats["unknown_protocol"] += 1
                log.debug(
                    "%s asked for unknown protocol %r", secure.remote_node_id.short(), protocol
                )
                return
            self.stats["accepted"] += 1
            self.stats["accepted:" + protocol] += 1
            try:
                await handler(secure)
            except (RemoteProtocolError, trio.BrokenResourceError, trio.EndOfChannel) as exc:
                self.stats["stream_error"] += 1
                log.debug(
                    "stream %s from %s ended: %s", protocol, secure.remote_node_id.short(), exc
                )
            except Exception:
                # A bug in one handler ends that stream, not the node (as for datagram handlers).
                self.stats["handler_error"] += 1
                log.exception("handler for stream protocol %s failed", protocol)

    async def _accept(self, raw: trio.abc.Stream) -> tuple[SecureStream, str] | None:
        """Handshake and read the StreamOpen frame; None (counted) if either fails."""
        with trio.move_on_after(self.settings.handshake_timeout):
            try:
                secure = await secure_accept(
                    raw,
                    self.identity,
                    prologue=self._prologue,
                    keyring=self.keyring,
                    max_frame_bytes=self.settings.max_frame_bytes,
                )
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
            return secure, opening.protocol
        self.stats["handshake_timeout"] += 1
        return None

    async def open(
        self, address: Address, protocol: str, *, node_id: NodeId | None = None
    ) -> SecureStream:
        """Dial `address`, authenticate (requiring `node_id` if given) and open `protocol`.

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
                    network_key=self.keyring.primary,
                    max_frame_bytes=self.settings.max_frame_bytes,
                )
        except trio.TooSlowError:
            await trio.aclose_forcefully(raw)
            raise HandshakeError(f"handshake with {address} timed out") from None
        except BaseException:
            await trio.aclose_forcefully(raw)
            raise
        await secure.send(envelope.encode(StreamOpen(protocol)))
        return secure
