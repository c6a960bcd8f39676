"""The frame deadline of a secure stream, and the activity time the idle deadline reads."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from plexinode.errors import RemoteProtocolError
from plexinode.identity import Identity
from plexinode.net.secure import FRAME_OVERHEAD, SecureStream, secure_accept, secure_connect

ALICE = Identity.from_seed(b"A" * 32)
BOB = Identity.from_seed(b"B" * 32)


async def pair(frame_timeout: float) -> tuple[SecureStream, SecureStream]:
    left, right = trio.testing.memory_stream_pair()
    accepted: list[SecureStream] = []

    async def accept() -> None:
        accepted.append(await secure_accept(right, BOB, frame_timeout=frame_timeout))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(accept)
        client = await secure_connect(left, ALICE, frame_timeout=frame_timeout)
    return client, accepted[0]


async def test_a_trickled_frame_times_out_and_frees_its_buffer(autojump_clock) -> None:
    client, server = await pair(frame_timeout=5.0)
    raw = client.transport_stream
    await raw.send_all((1 << 20).to_bytes(4, "big"))  # a 1 MiB frame begins
    started = trio.current_time()

    async def trickle() -> None:
        for _ in range(100):
            await raw.send_all(bytes(1000))
            await trio.sleep(0.1)

    async def keep_receiving() -> None:
        # Cancelled and retried receives keep the frame's deadline: it does not restart.
        while True:
            with trio.move_on_after(1):
                await server.receive()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trickle)
        with pytest.raises(RemoteProtocolError, match=r"not complete within 5s"):
            await keep_receiving()
        nursery.cancel_scope.cancel()
    assert trio.current_time() - started == pytest.approx(5.0, abs=0.01)
    assert server.frame_timed_out
    assert len(server._reader) == 0  # the partial frame is freed at once
    with pytest.raises(trio.BrokenResourceError):  # and the receive side is broken for good
        await server.receive()


async def test_frames_within_the_deadline_and_idle_gaps_are_fine(autojump_clock) -> None:
    client, server = await pair(frame_timeout=5.0)
    established = server.last_activity
    await trio.sleep(100)  # idle: waiting for a frame to begin has no deadline here
    await client.send(b"x" * 100)
    assert await server.receive() == b"x" * 100
    assert server.last_activity == established + 100
    # A frame that arrives in two halves, 4 s apart, is within its 5 s.
    frame = bytearray()

    class Capture(trio.abc.SendStream):
        async def send_all(self, data: bytes | bytearray | memoryview) -> None:
            frame.extend(data)

        async def wait_send_all_might_not_block(self) -> None:
            raise NotImplementedError

        async def aclose(self) -> None:
            raise NotImplementedError

    real, client.transport_stream = client.transport_stream, Capture()  # type: ignore[assignment]
    await client.send(b"y" * 1000)
    client.transport_stream = real
    assert len(frame) == 4 + 1000 + FRAME_OVERHEAD
    await real.send_all(bytes(frame[:500]))

    async def rest() -> None:
        await trio.sleep(4)
        await real.send_all(bytes(frame[500:]))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(rest)
        assert await server.receive() == b"y" * 1000
    assert not server.frame_timed_out
    sent_at = trio.current_time()
    await trio.sleep(1)
    await server.send(b"z")
    assert server.last_activity == sent_at + 1
