"""Secure streams: the handshake of :mod:`plexinode.net.handshake` driven over a trio stream,
then encrypted, authenticated frames.

:func:`secure_connect` (the side that dialled) and :func:`secure_accept` (the side that accepted)
turn any :class:`trio.abc.Stream` (TCP in production, memory streams in tests and simulations)
into a :class:`SecureStream`: a :class:`trio.abc.Channel` of byte frames, bound to the peer's
node key.

On the wire, in order::

    handshake   u16be length || msg1        I -> R   (length <= MAX_HANDSHAKE_MESSAGE)
                u16be length || msg2        R -> I   (or a cookie reply, then R closes)
                u16be length || msg3        I -> R
    headers     40 bytes each side -> the other: its 24-byte secretstream header sealed
                (XChaCha20-Poly1305, 16-byte tag) under a one-use key from the handshake,
                the transcript hash as associated data
    frames      u32be length || secretstream ciphertext (plaintext + 17 bytes), both ways
    close       one frame whose secretstream tag is TAG_FINAL and whose plaintext is empty

A responder under load may answer msg1 with a cookie reply (:mod:`plexinode.net.cookie`) and
close: :func:`secure_connect`, given a way to ``reconnect``, then opens one new connection and
starts again with the cookie, inside the caller's one timeout.

The initiator writes msg3 and its sealed header in one write. Each side then waits for the
other's header, and checks its seal (a header altered on the way fails the handshake at once,
rather than the first frame later), before :func:`secure_connect` / :func:`secure_accept`
return, so a responder that rejects msg3 (it just closes) makes :func:`secure_connect` fail
with HandshakeError instead of handing back a stream that is already dead. The cost is half a
round trip before the initiator's first frame; streams are long-lived, so clear errors win.

Frames use libsodium's crypto_secretstream_xchacha20poly1305, one direction per key from the
handshake. It numbers messages internally, so a frame that is dropped, replayed, reordered or
moved to the other direction fails to decrypt, and its TAG_FINAL tag lets the receiver tell a
clean close (:class:`trio.EndOfChannel`) from a truncation (RemoteProtocolError).

Limits and failures:

* A handshake message length above MAX_HANDSHAKE_MESSAGE, and a frame length below the 17-byte
  overhead or above ``max_frame_bytes + 17``, is refused from the length prefix alone, before any
  body byte is read or buffered: a peer cannot make us allocate more than it is allowed to send.
* Anything a peer can get wrong after the handshake (a bad length, a frame that does not decrypt,
  an unknown tag, a non-empty final frame, EOF without a final frame) raises RemoteProtocolError
  and breaks the receive side for good: later calls raise :class:`trio.BrokenResourceError`.
* A frame that has begun arriving must be complete within ``frame_timeout`` seconds (counted
  from the first :meth:`SecureStream.receive` call that finds any of its bytes, and kept across
  receive calls that are cancelled and retried): else receive raises RemoteProtocolError, sets
  :attr:`SecureStream.frame_timed_out` and frees the partial frame at once. A peer that
  trickles a large frame a byte at a time pins its buffer for that long at most. Waiting for
  the *first* byte of a frame has no deadline here (an idle stream is its owner's business).
* :func:`secure_connect` and :func:`secure_accept` own the stream they are given: if they fail
  for any reason, including cancellation by the caller's ``trio.fail_after(handshake_timeout)``,
  they close it before the exception propagates.
* Cancelling :meth:`SecureStream.send` mid-frame leaves a partial frame on the wire, so the send
  side is then broken; cancelling :meth:`SecureStream.receive` is safe (nothing is consumed until
  a whole frame has arrived).

Performance notes (scripts/bench/bench_stream.py measures them): a 64 KiB frame costs one
secretstream call, one transport call and at most one trio scheduling pass on each side. The
sender writes prefix and ciphertext with one ``send_all``; the receiver keeps received chunks
as they came, so a frame is copied at most once before decryption; an uncontended lock is taken
without a scheduling pass; and a frame that is already buffered is returned without one, within
a fairness budget (UNYIELDED_FRAMES_MAX). Measured against a bare trio loop that only does
push + ``send_all`` and ``receive_some`` + pull over the same socket, SecureStream runs at the
same speed.
"""

from __future__ import annotations

import contextlib
import logging
import math
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final

import nacl.bindings
import nacl.exceptions
import trio

from plexinode.errors import HandshakeError, HandshakeRefused
from plexinode.identity import Identity, NodeId
from plexinode.net.channel import (
    _MAX_FRAME_LIMIT,
    DEFAULT_MAX_FRAME_BYTES,
    FRAME_OVERHEAD,
    STREAM_HEADER_BYTES,
    UNYIELDED_FRAMES_MAX,
    SecureStream,
)
from plexinode.net.cookie import ConnectionCookies, CookieReply, CookieReplySent
from plexinode.net.handshake import (
    MAX_HANDSHAKE_MESSAGE,
    HandshakeResult,
    Initiator,
    PskLookup,
    Responder,
)
from plexinode.net.handshake_crypto import (
    SEALED_HEADER_BYTES,
    open_stream_header,
    seal_stream_header,
)
from plexinode.net.keyring import Keyring
from plexinode.net.reader import BufferedReader
from plexinode.net.stream_limits import SeenMsg1

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "FRAME_OVERHEAD",
    "STREAM_HEADER_BYTES",
    "UNYIELDED_FRAMES_MAX",
    "SecureStream",
    "secure_accept",
    "secure_connect",
]

log = logging.getLogger(__name__)

_HANDSHAKE_LENGTH: Final = struct.Struct(">H")


async def _read_handshake_message(reader: BufferedReader, step: str) -> bytes:
    if not await reader.fill(_HANDSHAKE_LENGTH.size):
        if step == "msg2":  # the responder read our msg1 and hung up: it refuses us
            raise HandshakeRefused(f"peer closed the connection before {step}")
        raise HandshakeError(f"peer closed the connection before {step}")
    length = reader.peek(_HANDSHAKE_LENGTH)
    if not 0 < length <= MAX_HANDSHAKE_MESSAGE:
        raise HandshakeError(f"{step} length {length} is outside 1..{MAX_HANDSHAKE_MESSAGE}")
    if not await reader.fill(_HANDSHAKE_LENGTH.size + length):
        raise HandshakeError(f"peer closed the connection in the middle of {step}")
    return reader.take(_HANDSHAKE_LENGTH.size, _HANDSHAKE_LENGTH.size + length)


def _handshake_frame(message: bytes) -> bytes:
    return _HANDSHAKE_LENGTH.pack(len(message)) + message


def _check_max_frame_bytes(max_frame_bytes: int) -> None:
    if not 0 <= max_frame_bytes <= _MAX_FRAME_LIMIT:
        raise ValueError(f"max_frame_bytes must be within 0..{_MAX_FRAME_LIMIT}")


@contextlib.asynccontextmanager
async def _closed_on_failure(stream: trio.abc.Stream) -> AsyncIterator[None]:
    """Close `stream` if the block fails in any way, cancellation included.

    A transport failure (the peer reset the connection) becomes HandshakeError, so that callers
    of the handshake have one error type for "this peer could not be reached securely".
    """
    try:
        yield
    except trio.BrokenResourceError as exc:
        await trio.aclose_forcefully(stream)
        raise HandshakeError(f"connection lost during the handshake: {exc}") from exc
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise


async def secure_connect(
    stream: trio.abc.Stream,
    identity: Identity,
    *,
    expected_node_id: NodeId | None = None,
    prologue: bytes = b"",
    network_key: bytes | None = None,
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    frame_timeout: float = math.inf,
    reconnect: Callable[[], Awaitable[trio.abc.Stream]] | None = None,
) -> SecureStream:
    """Run the initiator's side of the handshake over `stream`.

    Callers bound the time it may take: ``with trio.fail_after(timeout): await
    secure_connect(...)``.

    Args:
        stream: A freshly opened stream; this function owns it from now on.
        identity: This node's identity.
        expected_node_id: The node we mean to reach; None accepts any node. A mismatch fails
            before we reveal our identity.
        prologue: Context both sides must agree on.
        network_key: The pre-shared key (the primary network key), which tags msg1 and is mixed
            into every key (default: the open network's).
        max_frame_bytes: Largest frame plaintext either side may send; must match the peer's.
        frame_timeout: Seconds a frame that has begun arriving may take to complete.
        reconnect: Opens a new connection to the same responder. When given, a cookie reply
            (the responder is under load) makes us close `stream` and run the handshake once
            more, on the connection it returns (which we then own), with the cookie.

    Returns:
        The secure stream, authenticated to the responder's key.

    Raises:
        HandshakeError: The handshake failed (bad message, wrong peer, the peer closed or
            reset the connection; :class:`~plexinode.net.cookie.CookieReply` if the responder
            answered with a cookie and there is no `reconnect`, or it did so twice). The
            streams are closed.
        ValueError: `max_frame_bytes` is out of range. `stream` is closed.
    """

    async def attempt(raw: trio.abc.Stream, cookie: bytes | None) -> SecureStream:
        async with _closed_on_failure(raw):
            _check_max_frame_bytes(max_frame_bytes)
            initiator = Initiator(
                identity, expected_node_id, prologue, network_key=network_key, cookie=cookie
            )
            reader = BufferedReader(raw)
            await raw.send_all(_handshake_frame(initiator.start()))
            msg3 = initiator.receive(await _read_handshake_message(reader, "msg2"))
            return await _establish(
                raw,
                reader,
                initiator.result,
                max_frame_bytes,
                _handshake_frame(msg3),
                frame_timeout=frame_timeout,
            )

    try:
        return await attempt(stream, None)
    except CookieReply as reply:
        if reconnect is None:
            raise
        cookie = reply.cookie
    log.debug("responder under load: reconnecting with its cookie")
    return await attempt(await reconnect(), cookie)


async def secure_accept(
    stream: trio.abc.Stream,
    identity: Identity,
    *,
    prologue: bytes = b"",
    keyring: Keyring | None = None,
    extra_keys: PskLookup | None = None,
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    frame_timeout: float = math.inf,
    seen: SeenMsg1 | None = None,
    cookies: ConnectionCookies | None = None,
) -> SecureStream:
    """Run the responder's side of the handshake over `stream`.

    Callers bound the time it may take: ``with trio.fail_after(timeout): await
    secure_accept(...)``; a peer that stalls would otherwise hold the connection open.

    Args:
        stream: A freshly accepted stream; this function owns it from now on.
        identity: This node's identity.
        prologue: Context both sides must agree on.
        keyring: The network keys msg1 may be tagged with (default: the open network's).
        extra_keys: Further pre-shared keys to accept (:class:`~plexinode.net.handshake.Responder`);
            the stream's ``psk_kind`` says which kind matched.
        max_frame_bytes: Largest frame plaintext either side may send; must match the peer's.
        frame_timeout: Seconds a frame that has begun arriving may take to complete.
        seen: The node's memory of recent msg1s (a replayed msg1 is refused).
        cookies: The node's load and cookies for this connection: under load, a msg1 without
            a valid ``mac2`` is answered with a cookie reply (:mod:`plexinode.net.cookie`).

    Returns:
        The secure stream, authenticated to the initiator's key.

    Raises:
        HandshakeError: The handshake failed (bad message, the peer closed or reset the
            connection; :class:`~plexinode.net.cookie.CookieReplySent` when we answered with
            a cookie). `stream` is closed.
        ValueError: `max_frame_bytes` is out of range. `stream` is closed.
    """
    async with _closed_on_failure(stream):
        _check_max_frame_bytes(max_frame_bytes)
        responder = Responder(
            identity,
            prologue,
            keyring=keyring,
            extra_keys=extra_keys,
            seen=seen,
            cookies=cookies,
        )
        reader = BufferedReader(stream)
        msg2 = responder.receive(await _read_handshake_message(reader, "msg1"))
        assert msg2 is not None
        await stream.send_all(_handshake_frame(msg2))
        if responder.cookie_sent:
            raise CookieReplySent("under load: answered msg1 with a cookie reply")
        responder.receive(await _read_handshake_message(reader, "msg3"))
        return await _establish(
            stream, reader, responder.result, max_frame_bytes, b"", frame_timeout=frame_timeout
        )


async def _establish(
    stream: trio.abc.Stream,
    reader: BufferedReader,
    result: HandshakeResult,
    max_frame_bytes: int,
    pending: bytes,
    *,
    frame_timeout: float,
) -> SecureStream:
    """Exchange sealed secretstream headers (after `pending`, the last handshake bytes, if
    any): a header altered on the way fails here, at once, with HandshakeError."""
    push_state = nacl.bindings.crypto_secretstream_xchacha20poly1305_state()
    header = nacl.bindings.crypto_secretstream_xchacha20poly1305_init_push(
        push_state, result.send_key
    )
    sealed = seal_stream_header(result.send_header_key, result.transcript_hash, header)
    await stream.send_all(pending + sealed)
    if not await reader.fill(SEALED_HEADER_BYTES):
        raise HandshakeError("peer closed the connection at the end of the handshake (rejected?)")
    peer_header = open_stream_header(
        result.recv_header_key, result.transcript_hash, reader.take(0, SEALED_HEADER_BYTES)
    )
    pull_state = nacl.bindings.crypto_secretstream_xchacha20poly1305_state()
    nacl.bindings.crypto_secretstream_xchacha20poly1305_init_pull(
        pull_state, peer_header, result.recv_key
    )
    log.debug("secure stream established with %s", result.remote_node_id.short())
    return SecureStream(
        stream,
        reader=reader,
        result=result,
        push_state=push_state,
        pull_state=pull_state,
        max_frame_bytes=max_frame_bytes,
        frame_timeout=frame_timeout,
    )
