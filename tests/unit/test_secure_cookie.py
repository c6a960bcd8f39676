"""secure_connect and secure_accept when the responder is under load: the cookie round trip
over memory streams."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from plexinode.errors import HandshakeError
from plexinode.identity import Identity
from plexinode.net.cookie import ConnectionCookies, CookieGuard, CookieReply, CookieReplySent
from plexinode.net.secure import SecureStream, secure_accept, secure_connect

ALICE = Identity.from_seed(b"A" * 32)
BOB = Identity.from_seed(b"B" * 32)


class Listener:
    """A responder under load (one pending handshake is enough) on memory streams: every
    connection the initiator opens is accepted here, and what became of it is recorded."""

    def __init__(self, nursery: trio.Nursery, guard: CookieGuard | None = None) -> None:
        self.nursery = nursery
        self.guard = guard or CookieGuard(pending_threshold=1, exchange_rate=1000)
        self.outcomes: list[object] = []
        self.connections = 0

    async def connect(self) -> trio.abc.Stream:
        self.connections += 1
        left, right = trio.testing.memory_stream_pair()
        self.nursery.start_soon(self._accept, right)
        return left

    async def _accept(self, stream: trio.abc.Stream) -> None:
        cookies = ConnectionCookies(self.guard, "192.0.2.7", trio.current_time, lambda: 1)
        try:
            secure = await secure_accept(stream, BOB, cookies=cookies)
        except HandshakeError as exc:
            self.outcomes.append(type(exc))
            return
        self.outcomes.append(secure)


async def test_an_initiator_that_can_reconnect_gets_through_with_the_cookie() -> None:
    async with trio.open_nursery() as nursery:
        listener = Listener(nursery)
        client = await secure_connect(
            await listener.connect(),
            ALICE,
            expected_node_id=BOB.node_id,
            reconnect=listener.connect,
        )
        await trio.testing.wait_all_tasks_blocked()
        assert listener.connections == 2
        assert listener.outcomes[0] is CookieReplySent
        server = listener.outcomes[1]
        assert isinstance(server, SecureStream)
        await client.send(b"hello")
        assert await server.receive() == b"hello"
        assert (listener.guard.replies, listener.guard.valid_mac2, listener.guard.exchanges) == (
            1,
            1,
            1,
        )
        await client.aclose()
        await server.aclose()


async def test_without_reconnect_the_cookie_reply_is_the_error() -> None:
    async with trio.open_nursery() as nursery:
        listener = Listener(nursery)
        raw = await listener.connect()
        with pytest.raises(CookieReply) as caught:
            await secure_connect(raw, ALICE)
        assert len(caught.value.cookie) == 16
        assert listener.guard.exchanges == 0
        with pytest.raises(trio.ClosedResourceError):  # the stream was closed
            await raw.send_all(b"x")


async def test_a_second_cookie_reply_fails_the_handshake() -> None:
    """The initiator reconnects once: a responder that answers the cookie's msg1 with another
    cookie (here its host changed, as behind a NAT that moved) fails the handshake."""

    class Moving(Listener):
        async def _accept(self, stream: trio.abc.Stream) -> None:
            host = f"192.0.2.{self.connections}"
            cookies = ConnectionCookies(self.guard, host, trio.current_time, lambda: 1)
            with pytest.raises(CookieReplySent):
                await secure_accept(stream, BOB, cookies=cookies)
            self.outcomes.append(CookieReplySent)

    async with trio.open_nursery() as nursery:
        listener = Moving(nursery)
        with pytest.raises(CookieReply):
            await secure_connect(await listener.connect(), ALICE, reconnect=listener.connect)
        await trio.testing.wait_all_tasks_blocked()
        assert listener.outcomes == [CookieReplySent, CookieReplySent]
        assert listener.guard.exchanges == 0
