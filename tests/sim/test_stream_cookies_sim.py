"""The stream service under load, on the in-memory network: msg1s without a cookie cost the
node no key exchange, honest dialers get through with one round trip more, and status says so."""

from __future__ import annotations

from dataclasses import replace

import trio
import trio.testing

from plexinode.config import Settings
from plexinode.identity import Identity
from plexinode.net import echo
from plexinode.net.cookie import COOKIE_REPLY_BYTES
from plexinode.net.handshake import MSG2_BYTES, Initiator
from plexinode.node import Node
from plexinode.testing.network import open_memory_network
from plexinode.testing.nodes import FAST, running_nodes, seeded_identity


def with_stream(**changes: object) -> Settings:
    return replace(FAST, stream=replace(FAST.stream, **changes))  # type: ignore[arg-type]


async def read_exactly(stream: trio.abc.Stream, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = await stream.receive_some(count - len(data))
        assert chunk, "closed early"
        data += chunk
    return data


async def send_msg1(stream: trio.abc.Stream, identity: Identity) -> bytes:
    """Send a valid, correctly tagged msg1 without a cookie; return the answer's body."""
    msg1 = Initiator(identity).start()
    await stream.send_all(len(msg1).to_bytes(2, "big") + msg1)
    length = int.from_bytes(await read_exactly(stream, 2), "big")
    return await read_exactly(stream, length)


async def streams_status(node: Node) -> dict[str, int]:
    shown: dict[str, int] = (await node.status())["streams"]
    return shown


async def test_a_flood_of_msg1s_spends_no_key_exchange_past_the_budget(autojump_clock) -> None:
    settings = with_stream(cookie_handshake_rate=5)
    async with open_memory_network(seed=31) as net, running_nodes(net, 2, settings) as (a, b):
        assert b.address is not None
        evil = net.transport(net.new_host())
        flooder = seeded_identity(80)
        answers = []
        for _ in range(30):
            raw = await evil.connect(b.address)
            answers.append(len(await send_msg1(raw, flooder)))
            if answers[-1] == COOKIE_REPLY_BYTES:  # the node closed it at once
                assert await raw.receive_some(1) == b""
            await raw.aclose()
        assert answers == [MSG2_BYTES] * 5 + [COOKIE_REPLY_BYTES] * 25
        shown = await streams_status(b)
        assert shown["responder_exchanges"] == 5  # the budget; none for the 25 without cookie
        assert (shown["cookie_replies"], shown["cookie_valid"], shown["under_load"]) == (25, 0, 1)
        # An honest node still gets through, with one round trip more, and is served.
        assert (await echo.ping_stream(a.streams, b.address, b.node_id))["via"] == "stream"
        shown = await streams_status(b)
        assert (shown["cookie_replies"], shown["cookie_valid"]) == (26, 1)
        assert shown["responder_exchanges"] == 6
        # Two quiet seconds later the node is no longer under load: msg2 at once again.
        await trio.sleep(2)
        assert (await streams_status(b))["under_load"] == 0
        raw = await evil.connect(b.address)
        assert len(await send_msg1(raw, flooder)) == MSG2_BYTES
        await raw.aclose()


async def test_pending_handshakes_put_the_node_under_load(autojump_clock) -> None:
    settings = with_stream(cookie_pending_threshold=4)
    async with open_memory_network(seed=32) as net, running_nodes(net, 2, settings) as (a, b):
        assert b.address is not None
        silent_host = net.transport(net.new_host())
        silent = [await silent_host.connect(b.address) for _ in range(3)]
        await trio.testing.wait_all_tasks_blocked()
        assert b.streams.pending_handshakes == 3
        assert (await streams_status(b))["under_load"] == 0
        # The honest dial makes the fourth pending handshake: it needs the cookie round trip.
        assert (await echo.ping_stream(a.streams, b.address, b.node_id))["via"] == "stream"
        shown = await streams_status(b)
        assert (shown["cookie_replies"], shown["cookie_valid"]) == (1, 1)
        assert shown["responder_exchanges"] == 1
        silent.append(await silent_host.connect(b.address))
        await trio.testing.wait_all_tasks_blocked()
        assert (await streams_status(b))["under_load"] == 1
        for stream in silent:
            await stream.aclose()
        await trio.testing.wait_all_tasks_blocked()
        assert (await streams_status(b))["under_load"] == 0


async def test_defaults_never_put_a_quiet_node_under_load(autojump_clock) -> None:
    async with open_memory_network(seed=33) as net, running_nodes(net, 2) as (a, b):
        assert b.address is not None
        for _ in range(10):
            assert (await echo.ping_stream(a.streams, b.address, b.node_id))["via"] == "stream"
        shown = await streams_status(b)
        assert (shown["cookie_replies"], shown["under_load"]) == (0, 0)
        assert shown["responder_exchanges"] >= 10
