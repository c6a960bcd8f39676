"""Secure streams over in-memory trio streams: the handshake driver, framing, limits, close."""

from __future__ import annotations

import struct
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import nacl.bindings as sodium
import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plexinode.errors import HandshakeError, RemoteProtocolError
from plexinode.identity import Identity
from plexinode.net.handshake import (
    MSG1_BYTES,
    MSG2_BYTES,
    MSG3_BYTES,
    Initiator,
    Responder,
    UnexpectedPeerError,
)
from plexinode.net.handshake_crypto import SEALED_HEADER_BYTES, seal_stream_header
from plexinode.net.keyring import Keyring
from plexinode.net.reader import BufferedReader
from plexinode.net.secure import (
    DEFAULT_MAX_FRAME_BYTES,
    FRAME_OVERHEAD,
    UNYIELDED_FRAMES_MAX,
    SecureStream,
    secure_accept,
    secure_connect,
)

ALICE = Identity.from_seed(b"A" * 32)
BOB = Identity.from_seed(b"B" * 32)
CAROL = Identity.from_seed(b"C" * 32)

T = TypeVar("T")


async def both(left: Callable[[], Awaitable[T]], right: Callable[[], Awaitable[Any]]) -> T:
    """Run two coroutines concurrently; return the left one's result.

    A single failure is raised as itself rather than wrapped in an exception group.
    """
    results: dict[str, Any] = {}

    async def run_right() -> None:
        results["right"] = await right()

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_right)
            results["left"] = await left()
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
    return results["left"]  # type: ignore[no-any-return]


async def secure_pair(
    stream_pair: Callable[
        [], tuple[trio.abc.Stream, trio.abc.Stream]
    ] = trio.testing.memory_stream_pair,
    **kwargs: Any,
) -> tuple[SecureStream, SecureStream]:
    """ALICE connects to BOB; returns (alice's stream, bob's stream)."""
    left, right = stream_pair()
    accepted: list[SecureStream] = []

    async def accept() -> None:
        accepted.append(await secure_accept(right, BOB, **kwargs))

    client = await both(lambda: secure_connect(left, ALICE, **kwargs), accept)
    return client, accepted[0]


# A hand-written peer that speaks the wire format with the sans-I/O roles and raw secretstream,
# so that tests can put arbitrary bytes on the wire after a genuine handshake.


async def read_exactly(stream: trio.abc.ReceiveStream, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = await stream.receive_some(count - len(data))
        assert chunk, "unexpected EOF"
        data += chunk
    return data


async def read_handshake_message(stream: trio.abc.ReceiveStream) -> bytes:
    (length,) = struct.unpack(">H", await read_exactly(stream, 2))
    return await read_exactly(stream, length)


def handshake_frame(message: bytes) -> bytes:
    return struct.pack(">H", len(message)) + message


class RawPeer:
    def __init__(self, stream: trio.abc.Stream, send_key: bytes) -> None:
        self.stream = stream
        self.push = sodium.crypto_secretstream_xchacha20poly1305_state()
        self.header = sodium.crypto_secretstream_xchacha20poly1305_init_push(self.push, send_key)

    def frame(
        self, data: bytes, tag: int = sodium.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
    ) -> bytes:
        ciphertext = sodium.crypto_secretstream_xchacha20poly1305_push(self.push, data, None, tag)
        return struct.pack(">I", len(ciphertext)) + ciphertext


async def raw_accept(stream: trio.abc.Stream, identity: Identity = BOB) -> RawPeer:
    """The responder's side by hand; stops after sending its stream header."""
    responder = Responder(identity)
    msg2 = responder.receive(await read_handshake_message(stream))
    assert msg2 is not None
    await stream.send_all(handshake_frame(msg2))
    responder.receive(await read_handshake_message(stream))
    result = responder.result
    peer = RawPeer(stream, result.send_key)
    await stream.send_all(
        seal_stream_header(result.send_header_key, result.transcript_hash, peer.header)
    )
    await read_exactly(stream, SEALED_HEADER_BYTES)
    return peer


async def client_and_raw_peer(**kwargs: Any) -> tuple[SecureStream, RawPeer]:
    left, right = trio.testing.memory_stream_pair()
    peers: list[RawPeer] = []

    async def accept() -> None:
        peers.append(await raw_accept(right))

    client = await both(lambda: secure_connect(left, ALICE, **kwargs), accept)
    return client, peers[0]


async def is_closed(stream: trio.abc.SendStream) -> bool:
    try:
        await stream.send_all(b"x")
    except trio.ClosedResourceError:
        return True
    return False


# --- handshake over a stream -------------------------------------------------------------------


async def test_both_ends_know_who_they_talk_to() -> None:
    client, server = await secure_pair()
    assert client.remote_node_id == BOB.node_id
    assert client.remote_public_key == BOB.public_key
    assert server.remote_node_id == ALICE.node_id
    assert server.remote_public_key == ALICE.public_key
    assert client.transcript_hash == server.transcript_hash
    assert BOB.node_id.short() in repr(client)


async def test_expected_node_id_accepted() -> None:
    client, _ = await secure_pair_expecting(BOB)
    assert client.remote_node_id == BOB.node_id


async def secure_pair_expecting(identity: Identity) -> tuple[SecureStream, SecureStream]:
    left, right = trio.testing.memory_stream_pair()
    accepted: list[SecureStream] = []

    async def accept() -> None:
        accepted.append(await secure_accept(right, BOB))

    client = await both(
        lambda: secure_connect(left, ALICE, expected_node_id=identity.node_id), accept
    )
    return client, accepted[0]


async def test_wrong_expected_node_id_fails_on_both_sides_and_closes() -> None:
    left, right = trio.testing.memory_stream_pair()
    errors: dict[str, BaseException] = {}

    async def connect() -> None:
        try:
            await secure_connect(left, ALICE, expected_node_id=CAROL.node_id)
        except HandshakeError as exc:
            errors["initiator"] = exc

    async def accept() -> None:
        try:
            await secure_accept(right, BOB)
        except HandshakeError as exc:
            errors["responder"] = exc

    async with trio.open_nursery() as nursery:
        nursery.start_soon(connect)
        nursery.start_soon(accept)

    assert isinstance(errors["initiator"], UnexpectedPeerError)
    assert str(errors["initiator"]) == f"connected to {BOB.node_id} but expected {CAROL.node_id}"
    # The responder only saw the connection close: ALICE never revealed herself.
    assert "before msg3" in str(errors["responder"])
    assert await is_closed(left)
    assert await is_closed(right)


async def test_different_prologues_fail() -> None:
    left, right = trio.testing.memory_stream_pair()

    async def accept() -> None:
        with pytest.raises(HandshakeError):
            await secure_accept(right, BOB, prologue=b"net-b")

    with pytest.raises(HandshakeError, match="prologue"):
        await both(lambda: secure_connect(left, ALICE, prologue=b"net-a"), accept)


async def test_an_outsider_at_the_address_receives_msg1_and_nothing_else(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """A responder without the network key, even one that skips its tag check, makes
    secure_connect fail at msg2: all it ever receives is msg1 (no identity, no data)."""
    network, outsider = Keyring.generate(), Keyring.generate()
    monkeypatch.setattr(outsider, "match", lambda data, tag: outsider.primary)
    left, right = trio.testing.memory_stream_pair()
    received = bytearray()

    async def outsider_accepts() -> None:
        responder = Responder(BOB, keyring=outsider)
        msg1 = await read_handshake_message(right)
        received.extend(handshake_frame(msg1))
        msg2 = responder.receive(msg1)
        assert msg2 is not None
        await right.send_all(handshake_frame(msg2))
        while data := await right.receive_some():  # until the initiator hangs up
            received.extend(data)

    with trio.fail_after(60), pytest.raises(HandshakeError, match="cannot decrypt msg2"):
        await both(
            lambda: secure_connect(left, ALICE, network_key=network.primary), outsider_accepts
        )
    assert len(received) == 2 + MSG1_BYTES


async def test_garbage_instead_of_a_handshake() -> None:
    left, right = trio.testing.memory_stream_pair()
    await left.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    with pytest.raises(HandshakeError):
        await secure_accept(right, BOB)
    assert await is_closed(right)


async def test_oversized_handshake_length_is_refused_before_reading(
    autojump_clock: trio.testing.MockClock,
) -> None:
    left, right = trio.testing.memory_stream_pair()
    await left.send_all(b"\xff\xff")  # 65535 announced, nothing sent: must not wait for it
    with pytest.raises(HandshakeError, match="length 65535"), trio.fail_after(10):
        await secure_accept(right, BOB)


async def test_peer_closing_mid_handshake() -> None:
    left, right = trio.testing.memory_stream_pair()
    await left.send_all(handshake_frame(Initiator(ALICE).start())[:10])
    await left.aclose()
    with pytest.raises(HandshakeError, match="middle of msg1"):
        await secure_accept(right, BOB)


async def test_responder_that_rejects_msg3_fails_connect() -> None:
    left, right = trio.testing.memory_stream_pair()

    async def reject() -> None:
        responder = Responder(BOB)
        msg2 = responder.receive(await read_handshake_message(right))
        assert msg2 is not None
        await right.send_all(handshake_frame(msg2))
        await read_handshake_message(right)
        await right.aclose()  # e.g. ALICE is banned

    with pytest.raises(HandshakeError, match="rejected"):
        await both(lambda: secure_connect(left, ALICE), reject)
    assert await is_closed(left)


class FlipByte(trio.abc.Stream):
    """A stream that flips one bit of the byte at `position` of what it receives: an active
    attacker on the path."""

    def __init__(self, inner: trio.abc.Stream, position: int) -> None:
        self.inner = inner
        self.position = position
        self.received = 0

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        data = bytearray(await self.inner.receive_some(max_bytes))
        offset = self.position - self.received
        if 0 <= offset < len(data):
            data[offset] ^= 0x01
        self.received += len(data)
        return data

    async def aclose(self) -> None:
        await self.inner.aclose()


#: Where each side's stream header begins in what the other side receives: after the length
#: prefixed msg2 (initiator's view), after msg1 and msg3 (responder's view).
_RESPONDER_HEADER_AT = 2 + MSG2_BYTES
_INITIATOR_HEADER_AT = 2 + MSG1_BYTES + 2 + MSG3_BYTES


@pytest.mark.parametrize("byte", [0, 23])
@pytest.mark.parametrize("side", ["initiator", "responder"])
async def test_a_stream_header_altered_on_the_wire_fails_the_handshake_at_once(
    side: str, byte: int
) -> None:
    """Each side's secretstream header is bound to the handshake: an attacker who alters it
    makes secure_connect / secure_accept fail with a clear error, not the first frame later."""
    left, right = trio.testing.memory_stream_pair()
    if side == "initiator":  # the initiator receives the responder's header altered
        left = FlipByte(left, _RESPONDER_HEADER_AT + byte)  # type: ignore[assignment]
    else:
        right = FlipByte(right, _INITIATOR_HEADER_AT + byte)  # type: ignore[assignment]
    outcomes: dict[str, BaseException | SecureStream] = {}

    async def attempt(name: str, connect: Callable[[], Awaitable[SecureStream]]) -> None:
        try:
            outcomes[name] = await connect()
        except HandshakeError as exc:
            outcomes[name] = exc

    async with trio.open_nursery() as nursery:
        nursery.start_soon(attempt, "initiator", lambda: secure_connect(left, ALICE))
        nursery.start_soon(attempt, "responder", lambda: secure_accept(right, BOB))
    failed = outcomes[side]
    assert isinstance(failed, HandshakeError)
    assert "stream header failed authentication" in str(failed)


async def test_broken_transport_during_handshake_is_a_handshake_error() -> None:
    left, right = trio.testing.lockstep_stream_pair()
    await right.aclose()
    with pytest.raises(HandshakeError, match="connection lost") as info:
        await secure_connect(left, ALICE)
    assert isinstance(info.value.__cause__, trio.BrokenResourceError)
    assert await is_closed(left)


@pytest.mark.parametrize("stall_after", ["nothing", "msg1", "msg3"])
async def test_stalled_responder_times_out_and_closes(
    autojump_clock: trio.testing.MockClock, stall_after: str
) -> None:
    left, right = trio.testing.memory_stream_pair()

    async def stall() -> None:
        if stall_after != "nothing":
            responder = Responder(BOB)
            msg2 = responder.receive(await read_handshake_message(right))
            assert msg2 is not None
            if stall_after == "msg3":
                await right.send_all(handshake_frame(msg2))
                responder.receive(await read_handshake_message(right))
                # ... and never sends its stream header.
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(stall)
        with pytest.raises(trio.TooSlowError), trio.fail_after(10):
            await secure_connect(left, ALICE)
        assert await is_closed(left)
        nursery.cancel_scope.cancel()


async def test_stalled_initiator_times_out_and_closes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    left, right = trio.testing.memory_stream_pair()
    await left.send_all(handshake_frame(Initiator(ALICE).start()))  # then nothing more
    with pytest.raises(trio.TooSlowError), trio.fail_after(10):
        await secure_accept(right, BOB)
    assert await is_closed(right)
    assert await read_handshake_message(left)  # msg2 got out before the stall
    assert await left.receive_some() == b""  # then EOF: the responder closed


async def test_invalid_max_frame_bytes_closes_the_stream() -> None:
    left, _right = trio.testing.memory_stream_pair()
    with pytest.raises(ValueError, match="max_frame_bytes"):
        await secure_connect(left, ALICE, max_frame_bytes=-1)
    assert await is_closed(left)


# --- frames ------------------------------------------------------------------------------------


async def test_many_frames_both_ways_at_once() -> None:
    client, server = await secure_pair()
    frames = [bytes([i % 256]) * (i * 37 % 5000) for i in range(300)]

    async def pump(sender: SecureStream, receiver: SecureStream) -> None:
        async def send_all() -> None:
            for frame in frames:
                await sender.send(frame)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_all)
            for frame in frames:
                assert await receiver.receive() == frame

    async with trio.open_nursery() as nursery:
        nursery.start_soon(pump, client, server)
        nursery.start_soon(pump, server, client)


async def test_frames_over_a_lockstep_stream() -> None:
    client, server = await secure_pair(trio.testing.lockstep_stream_pair)
    await both(server.receive, lambda: client.send(b"hello"))
    assert await both(client.receive, lambda: server.send(b"x" * 100_000)) == (b"x" * 100_000)


async def test_empty_frame() -> None:
    client, server = await secure_pair()
    await client.send(b"")
    await client.send(b"after")
    assert await server.receive() == b""
    assert await server.receive() == b"after"


async def test_bytes_like_frames_are_accepted() -> None:
    client, server = await secure_pair()
    await client.send(bytearray(b"abc"))  # type: ignore[arg-type]
    await client.send(memoryview(b"defg"))  # type: ignore[arg-type]
    assert [await server.receive(), await server.receive()] == [b"abc", b"defg"]


@pytest.mark.parametrize("max_frame_bytes", [0, 1000, DEFAULT_MAX_FRAME_BYTES])
async def test_max_size_frame(max_frame_bytes: int) -> None:
    client, server = await secure_pair(max_frame_bytes=max_frame_bytes)
    frame = bytes(range(256)) * (max_frame_bytes // 256) + b"z" * (max_frame_bytes % 256)
    await client.send(frame)
    assert await server.receive() == frame


async def test_oversized_send_is_rejected_and_the_stream_stays_usable() -> None:
    client, server = await secure_pair(max_frame_bytes=1000)
    with pytest.raises(ValueError, match="exceeds 1000"):
        await client.send(b"x" * 1001)
    await client.send(b"ok")
    assert await server.receive() == b"ok"


async def test_receiver_rejects_frames_above_its_own_limit() -> None:
    left, right = trio.testing.memory_stream_pair()
    accepted: list[SecureStream] = []

    async def accept() -> None:
        accepted.append(await secure_accept(right, BOB, max_frame_bytes=100))

    client = await both(lambda: secure_connect(left, ALICE, max_frame_bytes=1000), accept)
    await client.send(b"x" * 101)
    with pytest.raises(RemoteProtocolError, match=f"length {101 + FRAME_OVERHEAD}"):
        await accepted[0].receive()


async def test_concurrent_senders_are_serialised() -> None:
    client, server = await secure_pair()
    frames = {bytes([i]) * 3000 for i in range(50)}
    async with trio.open_nursery() as nursery:
        for frame in frames:
            nursery.start_soon(client.send, frame)
    assert {await server.receive() for _ in frames} == frames


async def test_send_applies_backpressure_and_cancelled_send_breaks_the_send_side(
    autojump_clock: trio.testing.MockClock,
) -> None:
    client, server = await secure_pair(trio.testing.lockstep_stream_pair)
    with trio.move_on_after(5) as scope:
        await client.send(b"nobody is reading")
    assert scope.cancelled_caught  # blocked: no unbounded queue behind send()
    with pytest.raises(trio.BrokenResourceError):
        await client.send(b"more")
    # The receive direction is independent and still works.
    await both(client.receive, lambda: server.send(b"still here"))


async def test_cancelled_receive_loses_nothing(autojump_clock: trio.testing.MockClock) -> None:
    client, peer = await client_and_raw_peer()
    frame = peer.frame(b"one whole frame" * 100)
    await peer.stream.send_all(frame[:700])
    with trio.move_on_after(5) as scope:
        await client.receive()
    assert scope.cancelled_caught
    await peer.stream.send_all(frame[700:])
    assert await client.receive() == b"one whole frame" * 100


class Trickle(trio.abc.Stream):
    """A stream whose receive_some returns at most a few bytes at a time, cycling through sizes."""

    def __init__(self, inner: trio.abc.Stream, sizes: list[int]) -> None:
        self.inner = inner
        self.sizes = sizes
        self.calls = 0

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        size = self.sizes[self.calls % len(self.sizes)]
        self.calls += 1
        return await self.inner.receive_some(size if max_bytes is None else min(size, max_bytes))

    async def aclose(self) -> None:
        await self.inner.aclose()


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    frames=st.lists(st.binary(max_size=200), max_size=12),
    sizes=st.lists(st.integers(min_value=1, max_value=300), min_size=1, max_size=8),
)
async def test_frames_survive_any_chunking_of_the_byte_stream(
    autojump_clock: trio.testing.MockClock, frames: list[bytes], sizes: list[int]
) -> None:
    # With the autojump clock, a reader that lost track of its bytes and waits forever
    # fails at once with TooSlowError instead of hanging the test run.
    with trio.fail_after(60):
        await _check_chunking(frames, sizes)


async def _check_chunking(frames: list[bytes], sizes: list[int]) -> None:
    left, right = trio.testing.memory_stream_pair()
    trickle = Trickle(left, sizes)
    peers: list[RawPeer] = []

    async def accept() -> None:
        peers.append(await raw_accept(right))

    client = await both(lambda: secure_connect(trickle, ALICE), accept)
    peer = peers[0]
    await peer.stream.send_all(b"".join(peer.frame(frame) for frame in frames))
    await peer.stream.send_all(
        peer.frame(b"", tag=sodium.crypto_secretstream_xchacha20poly1305_TAG_FINAL)
    )
    assert [frame async for frame in client] == frames


async def test_a_frame_trickled_byte_by_byte_costs_memory_proportional_to_its_size() -> None:
    left, right = trio.testing.memory_stream_pair()
    trickle = Trickle(left, [1])
    peers: list[RawPeer] = []

    async def accept() -> None:
        peers.append(await raw_accept(right))

    client = await both(lambda: secure_connect(trickle, ALICE), accept)
    frame = bytes(range(256)) * 64  # 16 KiB, delivered in 16 401 one-byte reads
    await peers[0].stream.send_all(peers[0].frame(frame))
    tracemalloc.start()
    try:
        assert await client.receive() == frame
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # One small object per byte would be ~50 bytes each (about 800 KiB); gathered, the frame
    # costs a few copies of itself.
    assert peak < 8 * len(frame)


async def test_a_flood_of_buffered_frames_does_not_starve_other_tasks() -> None:
    client, peer = await client_and_raw_peer()
    count = 10 * UNYIELDED_FRAMES_MAX
    await peer.stream.send_all(b"".join(peer.frame(b"x") for _ in range(count)))
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        for _ in range(count):  # one transport read brings them all in
            assert await client.receive() == b"x"
        nursery.cancel_scope.cancel()
    assert ticks >= count // UNYIELDED_FRAMES_MAX


async def test_cancelled_receive_of_a_buffered_frame_raises_and_loses_nothing() -> None:
    client, peer = await client_and_raw_peer()
    await peer.stream.send_all(peer.frame(b"first") + peer.frame(b"second"))
    assert await client.receive() == b"first"  # "second" is now buffered
    with trio.CancelScope() as scope:
        scope.cancel()
        await client.receive()
    assert scope.cancelled_caught
    assert await client.receive() == b"second"


class Chunks(trio.abc.ReceiveStream):
    """Returns the given chunks, one per receive_some call, then EOF."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        return self.chunks.pop(0) if self.chunks else b""

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


async def read_frames(reader: BufferedReader) -> list[bytes]:
    frames = []
    while await reader.fill(4):
        length = reader.peek(struct.Struct(">I"))
        assert await reader.fill(4 + length)
        frames.append(reader.take(4, 4 + length))
    assert len(reader) == 0
    return frames


@pytest.mark.parametrize("cut_in_second_prefix", [1, 2, 3])
async def test_reader_handles_a_length_split_between_large_chunks(
    cut_in_second_prefix: int,
) -> None:
    big, small = bytes(range(256)) * 40, b"abc"  # the first frame is well above SMALL_CHUNK_BYTES
    wire = struct.pack(">I", len(big)) + big + struct.pack(">I", len(small)) + small
    cut = 4 + len(big) + cut_in_second_prefix
    reader = BufferedReader(Chunks([wire[:cut], wire[cut:]]))
    assert await read_frames(reader) == [big, small]


async def test_reader_keeps_order_when_small_and_large_chunks_mix() -> None:
    big = bytes(range(256)) * 40
    wire = struct.pack(">I", len(big)) + big + struct.pack(">I", 1) + b"z"
    chunks = [wire[:1], wire[1:3], wire[3:5000], wire[5000:5001], wire[5001:]]
    assert await read_frames(BufferedReader(Chunks(chunks))) == [big, b"z"]


async def test_reader_returns_a_whole_chunk_without_copying() -> None:
    chunk = bytes(range(256)) * 40
    reader = BufferedReader(Chunks([chunk]))
    assert await reader.fill(len(chunk))
    assert reader.take(0, len(chunk)) is chunk


# --- hostile or broken peers after the handshake -----------------------------------------------


async def test_oversized_length_prefix_fails_without_reading_or_allocating(
    autojump_clock: trio.testing.MockClock,
) -> None:
    client, peer = await client_and_raw_peer()
    await peer.stream.send_all(b"\xff\xff\xff\xff")  # 4 GiB announced, nothing follows
    tracemalloc.start()
    try:
        # fail_after: waiting for the body would show up as TooSlowError, not as a hang.
        with (
            pytest.raises(RemoteProtocolError, match="frame length 4294967295"),
            trio.fail_after(10),
        ):
            await client.receive()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024
    with pytest.raises(trio.BrokenResourceError):
        await client.receive()


@pytest.mark.parametrize("length", [0, FRAME_OVERHEAD - 1])
async def test_frame_shorter_than_its_overhead(length: int) -> None:
    client, peer = await client_and_raw_peer()
    await peer.stream.send_all(struct.pack(">I", length) + bytes(length))
    with pytest.raises(RemoteProtocolError, match="frame length"):
        await client.receive()


async def test_garbage_frame_after_handshake() -> None:
    client, peer = await client_and_raw_peer()
    await peer.stream.send_all(struct.pack(">I", 64) + bytes(range(64)))
    with pytest.raises(RemoteProtocolError, match="authentication"):
        await client.receive()
    with pytest.raises(trio.BrokenResourceError):
        await client.receive()


async def test_tampered_frame() -> None:
    client, peer = await client_and_raw_peer()
    frame = bytearray(peer.frame(b"pay 10 coins"))
    frame[-20] ^= 1
    await peer.stream.send_all(bytes(frame))
    with pytest.raises(RemoteProtocolError, match="authentication"):
        await client.receive()


@pytest.mark.parametrize("attack", ["replay", "reorder", "drop"])
async def test_replayed_reordered_or_dropped_frames_fail(attack: str) -> None:
    client, peer = await client_and_raw_peer()
    first, second = peer.frame(b"first"), peer.frame(b"second")
    wire = {"replay": first + first, "reorder": second + first, "drop": second}[attack]
    await peer.stream.send_all(wire)
    if attack == "replay":
        assert await client.receive() == b"first"
    with pytest.raises(RemoteProtocolError):
        await client.receive()


async def test_own_frame_reflected_back_fails() -> None:
    client, peer = await client_and_raw_peer()
    await client.send(b"to bob")
    reflected = await peer.stream.receive_some()  # the client's frame, reflected verbatim
    await peer.stream.send_all(reflected)
    with pytest.raises(RemoteProtocolError, match="authentication"):
        await client.receive()


async def test_truncated_frame_then_eof() -> None:
    client, peer = await client_and_raw_peer()
    await peer.stream.send_all(peer.frame(b"x" * 1000)[:600])
    await peer.stream.aclose()
    with pytest.raises(RemoteProtocolError, match="middle of a frame"):
        await client.receive()


async def test_truncated_length_prefix_then_eof() -> None:
    client, peer = await client_and_raw_peer()
    await peer.stream.send_all(b"\x00\x00")
    await peer.stream.aclose()
    with pytest.raises(RemoteProtocolError, match="middle of a frame length"):
        await client.receive()


async def test_eof_without_final_frame_is_not_a_clean_close() -> None:
    client, peer = await client_and_raw_peer()
    await peer.stream.send_all(peer.frame(b"last words"))
    await peer.stream.aclose()
    assert await client.receive() == b"last words"
    with pytest.raises(RemoteProtocolError, match="without a final frame"):
        await client.receive()


async def test_final_frame_with_data_is_refused() -> None:
    client, peer = await client_and_raw_peer()
    await peer.stream.send_all(
        peer.frame(b"sneaky", tag=sodium.crypto_secretstream_xchacha20poly1305_TAG_FINAL)
    )
    with pytest.raises(RemoteProtocolError, match="tag"):
        await client.receive()


async def test_unknown_tag_is_refused() -> None:
    client, peer = await client_and_raw_peer()
    await peer.stream.send_all(
        peer.frame(b"", tag=sodium.crypto_secretstream_xchacha20poly1305_TAG_PUSH)
    )
    with pytest.raises(RemoteProtocolError, match="tag"):
        await client.receive()


# --- closing -----------------------------------------------------------------------------------


async def test_clean_close_ends_the_channel_after_all_frames() -> None:
    client, server = await secure_pair()
    for i in range(3):
        await server.send(b"frame %d" % i)
    await server.aclose()
    assert [frame async for frame in client] == [b"frame 0", b"frame 1", b"frame 2"]
    with pytest.raises(trio.EndOfChannel):
        await client.receive()
    with pytest.raises(trio.EndOfChannel):
        await client.receive()
    # Our own direction is still open until we close it.
    await client.aclose()


async def test_closed_stream_refuses_use_and_close_is_idempotent() -> None:
    client, server = await secure_pair()
    await client.aclose()
    await client.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await client.send(b"x")
    with pytest.raises(trio.ClosedResourceError):
        await client.receive()
    assert await is_closed(client.transport_stream)
    with pytest.raises(trio.EndOfChannel):
        await server.receive()


async def test_close_wakes_a_blocked_receiver() -> None:
    client, _server = await secure_pair()

    async def receive_until_closed() -> None:
        with pytest.raises(trio.ClosedResourceError):
            await client.receive()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receive_until_closed)
        await trio.testing.wait_all_tasks_blocked()
        await client.aclose()


async def test_cancelled_close_still_closes(autojump_clock: trio.testing.MockClock) -> None:
    client, _server = await secure_pair(trio.testing.lockstep_stream_pair)
    with trio.CancelScope() as scope:
        scope.cancel()
        await client.aclose()  # the final frame cannot be sent: nobody reads a lockstep stream
    assert await is_closed(client.transport_stream)


async def test_close_during_a_blocked_send_skips_the_final_frame(
    autojump_clock: trio.testing.MockClock,
) -> None:
    client, server = await secure_pair(trio.testing.lockstep_stream_pair)

    async def send_until_closed() -> None:
        with pytest.raises((trio.ClosedResourceError, trio.BrokenResourceError)):
            await client.send(b"nobody is reading this")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send_until_closed)
        await trio.testing.wait_all_tasks_blocked()
        await client.aclose()
    # Whatever part of the blocked frame got through, no final frame follows it.
    with pytest.raises(RemoteProtocolError, match=r"without a final frame|middle of a frame"):
        async for _frame in server:
            pass
