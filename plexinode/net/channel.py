"""The secure stream itself: encrypted, authenticated frames over a trio stream, once the
handshake of :mod:`plexinode.net.secure` has given both ends their keys.

:mod:`plexinode.net.secure` describes the bytes on the wire, the limits and the failures; this
module holds the channel that :func:`~plexinode.net.secure.secure_connect` and
:func:`~plexinode.net.secure.secure_accept` hand back, and the frame constants both share.
"""

from __future__ import annotations

import logging
import math
import struct
from typing import Final

import nacl.bindings
import nacl.exceptions
import trio

from plexinode.errors import RemoteProtocolError
from plexinode.identity import NodeId
from plexinode.net.handshake import HandshakeResult
from plexinode.net.reader import BufferedReader

log = logging.getLogger(__name__)

#: Default largest plaintext of one frame. Large enough for a 64 KiB shard piece or a chat
#: attachment chunk with room to spare, small enough that one frame never pins much memory per
#: connection. Both ends must use the same value (a larger frame is a protocol error).
DEFAULT_MAX_FRAME_BYTES: Final = 1 << 20
#: Bytes secretstream adds to each frame (1 encrypted tag byte + 16-byte Poly1305 MAC).
FRAME_OVERHEAD: Final = nacl.bindings.crypto_secretstream_xchacha20poly1305_ABYTES
#: Size of the secretstream header each side sends after the handshake.
STREAM_HEADER_BYTES: Final = nacl.bindings.crypto_secretstream_xchacha20poly1305_HEADERBYTES
#: Largest plaintext a frame length prefix (u32) can describe.
_MAX_FRAME_LIMIT: Final = min(
    (1 << 32) - 1 - FRAME_OVERHEAD,
    nacl.bindings.crypto_secretstream_xchacha20poly1305_MESSAGEBYTES_MAX,
)
#: Fairness budget of :meth:`SecureStream.receive`. Every call checks for cancellation, but a
#: call that finds its frame already buffered does not also yield to the scheduler (a trio
#: scheduling pass costs about a tenth of decrypting a 64 KiB frame) unless this many frames in
#: a row were served that way: a peer that floods tiny frames cannot starve the other tasks,
#: and large frames pay no extra pass. The same idea as tokio's cooperative budget.
UNYIELDED_FRAMES_MAX: Final = 16

_TAG_MESSAGE: Final = nacl.bindings.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
_TAG_FINAL: Final = nacl.bindings.crypto_secretstream_xchacha20poly1305_TAG_FINAL
_FRAME_LENGTH: Final = struct.Struct(">I")


async def _acquire(lock: trio.StrictFIFOLock) -> None:
    """Take `lock`, without the scheduler round trip of ``lock.acquire()`` when it is free.

    Each frame costs one pass through trio's scheduler anyway (the transport's send or receive,
    or an explicit checkpoint); a second one per frame for an uncontended lock measurably slows
    64 KiB frames.
    """
    try:
        lock.acquire_nowait()
    except trio.WouldBlock:
        await lock.acquire()


class SecureStream(trio.abc.Channel[bytes]):
    """An encrypted, authenticated, ordered channel of byte frames to one authenticated node.

    Made by :func:`secure_connect` or :func:`secure_accept`, never directly. Concurrent calls
    to :meth:`send` are serialised in FIFO order, and so are calls to :meth:`receive`; sending
    and receiving can happen at the same time in different tasks. Backpressure comes from the
    transport: :meth:`send` returns when the transport has taken the frame; there is no queue.

    Attributes:
        remote_public_key: The peer's Ed25519 public key, proven by the handshake.
        remote_node_id: The peer's node ID.
        transcript_hash: The handshake's transcript hash (same on both ends; a session id).
        max_frame_bytes: Largest plaintext :meth:`send` accepts and :meth:`receive` allows.
        transport_stream: The underlying stream (do not use it directly).
        last_activity: When (trio's clock) a frame last arrived or was sent, or the stream was
            established.
        frame_timed_out: A frame was not complete within the frame timeout (module docstring).
    """

    def __init__(
        self,
        transport_stream: trio.abc.Stream,
        *,
        reader: BufferedReader,
        result: HandshakeResult,
        push_state: nacl.bindings.crypto_secretstream_xchacha20poly1305_state,
        pull_state: nacl.bindings.crypto_secretstream_xchacha20poly1305_state,
        max_frame_bytes: int,
        frame_timeout: float = math.inf,
    ) -> None:
        self.transport_stream = transport_stream
        self.remote_public_key: bytes = result.remote_public_key
        #: (Accepted streams) the kind of pre-shared key the peer's handshake used: "network",
        #: "retired" (a key this node has retired), or a kind the caller's extra keys name.
        self.psk_kind: str = result.psk_kind
        #: The peer tagged its handshake under a network key this node has retired.
        self.retired_key: bool = result.retired_key
        self.remote_node_id: NodeId = result.remote_node_id
        self.transcript_hash: bytes = result.transcript_hash
        self.max_frame_bytes = max_frame_bytes
        self._reader = reader
        self._push_state = push_state
        self._pull_state = pull_state
        self._max_ciphertext = max_frame_bytes + FRAME_OVERHEAD
        self._send_lock = trio.StrictFIFOLock()
        self._receive_lock = trio.StrictFIFOLock()
        self._closed = False
        self._send_broken = False
        self._receive_broken = False
        self._end_of_channel = False
        self._frames_without_yield = 0
        self._frame_timeout = frame_timeout
        self._frame_deadline: float | None = None  # set while a frame is partly received
        self.frame_timed_out = False
        self.last_activity = trio.current_time()
        self._idle: tuple[trio.CancelScope, float] | None = None

    def cancel_when_idle(self, scope: trio.CancelScope, timeout: float) -> None:
        """Keep `scope`'s deadline `timeout` seconds after this stream's last activity (a frame
        received or sent): the scope is cancelled once the stream stays idle that long. One
        deadline moved per frame, no task or timer of its own."""
        self._idle = (scope, timeout)
        scope.deadline = self.last_activity + timeout

    def _active(self) -> None:
        now = self.last_activity = trio.current_time()
        if self._idle is not None:
            scope, timeout = self._idle
            scope.deadline = now + timeout

    def __repr__(self) -> str:
        return f"<SecureStream to {self.remote_node_id.short()}>"

    async def send(self, value: bytes) -> None:
        """Encrypt and send one frame.

        Args:
            value: The frame's plaintext, up to :attr:`max_frame_bytes` bytes (may be empty).

        Raises:
            ValueError: `value` is longer than :attr:`max_frame_bytes`.
            trio.ClosedResourceError: This stream was closed.
            trio.BrokenResourceError: The transport failed, or an earlier send was cancelled
                mid-frame.
        """
        if not isinstance(value, bytes):
            value = bytes(value)  # libsodium's binding takes bytes only
        if len(value) > self.max_frame_bytes:
            raise ValueError(f"frame of {len(value)} bytes exceeds {self.max_frame_bytes}")
        await _acquire(self._send_lock)
        try:
            self._check_send()
            ciphertext = nacl.bindings.crypto_secretstream_xchacha20poly1305_push(
                self._push_state, value, None, _TAG_MESSAGE
            )
            # One write of prefix + ciphertext: one copy of the frame, but one syscall and no
            # tiny segment for the prefix alone. send_all is this method's checkpoint.
            try:
                await self.transport_stream.send_all(
                    _FRAME_LENGTH.pack(len(ciphertext)) + ciphertext
                )
                self._active()
            except BaseException:
                # The push state has advanced and part of the frame may be on the wire; the
                # only safe thing left is to stop sending.
                self._send_broken = True
                raise
        finally:
            self._send_lock.release()

    def _check_send(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("secure stream is closed")
        if self._send_broken:
            raise trio.BrokenResourceError("secure stream's send side is broken")

    async def receive(self) -> bytes:
        """Wait for the next frame and return its plaintext (possibly empty).

        Returns:
            The plaintext of one frame, as the peer passed it to :meth:`send`.

        Every call checks for cancellation; it yields to the scheduler whenever it has to wait
        for the transport, and otherwise at least once every UNYIELDED_FRAMES_MAX calls.

        Raises:
            trio.EndOfChannel: The peer closed cleanly (sent its final frame); raised again on
                every later call.
            RemoteProtocolError: The peer sent a bad frame or closed without a final frame.
            trio.ClosedResourceError: This stream was closed.
            trio.BrokenResourceError: The transport failed, or an earlier receive failed.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        await _acquire(self._receive_lock)
        try:
            if self._closed:
                raise trio.ClosedResourceError("secure stream is closed")
            if self._end_of_channel:
                raise trio.EndOfChannel
            if self._receive_broken:
                raise trio.BrokenResourceError("secure stream's receive side is broken")
            receives = self._reader.receives
            try:
                frame = await self._receive_frame()
            except (RemoteProtocolError, trio.BrokenResourceError):
                self._receive_broken = True
                raise
        finally:
            self._receive_lock.release()
        self._active()
        if self._reader.receives != receives:
            self._frames_without_yield = 0  # the transport's receive_some yielded
        else:
            self._frames_without_yield += 1
            if self._frames_without_yield >= UNYIELDED_FRAMES_MAX:
                self._frames_without_yield = 0
                await trio.lowlevel.cancel_shielded_checkpoint()
        return frame

    async def _receive_frame(self) -> bytes:
        reader = self._reader
        if not len(reader) and not await reader.fill(1):  # idle until a frame begins
            raise RemoteProtocolError("peer closed the connection without a final frame")
        ciphertext = self._buffered_frame()
        if ciphertext is None:  # only part of the frame is here: wait, under its deadline
            if self._frame_deadline is None:
                self._frame_deadline = trio.current_time() + self._frame_timeout
            with trio.move_on_at(self._frame_deadline):
                ciphertext = await self._read_frame()
            if ciphertext is None:
                self.frame_timed_out = True
                buffered = len(reader)
                reader.clear()
                raise RemoteProtocolError(
                    f"frame not complete within {self._frame_timeout:g}s ({buffered} bytes "
                    "buffered)"
                )
        self._frame_deadline = None
        return self._open(ciphertext)

    def _frame_length(self) -> int:
        length = self._reader.peek(_FRAME_LENGTH)
        if not FRAME_OVERHEAD <= length <= self._max_ciphertext:
            raise RemoteProtocolError(
                f"frame length {length} is outside {FRAME_OVERHEAD}..{self._max_ciphertext}"
            )
        return length

    def _buffered_frame(self) -> bytes | None:
        """The next frame's ciphertext if all of it is buffered (consumed), else None."""
        reader = self._reader
        prefix = _FRAME_LENGTH.size
        if len(reader) < prefix:
            return None
        length = self._frame_length()
        if len(reader) < prefix + length:
            return None
        return reader.take(prefix, prefix + length)

    async def _read_frame(self) -> bytes:
        """Wait for the rest of the next frame and return its ciphertext (consumed)."""
        reader = self._reader
        prefix = _FRAME_LENGTH.size
        if not await reader.fill(prefix):
            raise RemoteProtocolError("connection closed in the middle of a frame length")
        length = self._frame_length()
        if not await reader.fill(prefix + length):
            raise RemoteProtocolError(
                f"connection closed in the middle of a frame ({len(reader) - prefix} of "
                f"{length} bytes)"
            )
        return reader.take(prefix, prefix + length)

    def _open(self, ciphertext: bytes) -> bytes:
        """Decrypt one frame: its plaintext, or EndOfChannel for the final frame."""
        try:
            plaintext, tag = nacl.bindings.crypto_secretstream_xchacha20poly1305_pull(
                self._pull_state, ciphertext, None
            )
        except nacl.exceptions.CryptoError:
            raise RemoteProtocolError(
                "frame failed authentication (tampered, replayed or reordered)"
            ) from None
        if tag == _TAG_MESSAGE:
            return bytes(plaintext)
        if tag == _TAG_FINAL and not plaintext:
            self._end_of_channel = True
            log.debug("%r: peer closed cleanly", self)
            raise trio.EndOfChannel
        raise RemoteProtocolError(f"unexpected frame tag {tag} with {len(plaintext)} bytes")

    async def aclose(self) -> None:
        """Send the final frame if the send side is idle and healthy, then close the transport.

        Idempotent. If the final frame cannot be sent (a send is in progress, the transport is
        broken, or we are cancelled) the transport is closed anyway; the peer then sees an
        unclean close rather than :class:`trio.EndOfChannel`.
        """
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._closed = True
        try:
            if not self._send_broken and not self._send_lock.locked():
                final = nacl.bindings.crypto_secretstream_xchacha20poly1305_push(
                    self._push_state, b"", None, _TAG_FINAL
                )
                self._send_broken = True  # nothing may follow the final frame
                await self.transport_stream.send_all(_FRAME_LENGTH.pack(len(final)) + final)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await self.transport_stream.aclose()
