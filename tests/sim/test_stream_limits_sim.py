"""The stream service's limits on the in-memory network: floods, caps, deadlines, an attacker
with many identities on one host while honest nodes keep working."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest
import trio
import trio.testing

from plexinode.errors import HandshakeError, RemoteProtocolError
from plexinode.identity import Identity
from plexinode.membership.syncing import Seed
from plexinode.net import echo
from plexinode.net.secure import SecureStream, secure_connect
from plexinode.net.settings import StreamSettings
from plexinode.net.transport import Transport
from plexinode.node import Node
from plexinode.testing.network import open_memory_network
from plexinode.testing.nodes import FAST, running_nodes, seeded_identity
from plexinode.wire import envelope
from plexinode.wire.messages import Echo, StreamOpen

HOLD = "hold/1"
SPEW = "spew/1"


async def hold(stream: SecureStream) -> None:
    """A protocol that reads frames until the dialer closes (as a slow exchange would)."""
    while True:
        try:
            await stream.receive()
        except trio.EndOfChannel:
            return


async def spew(stream: SecureStream) -> None:
    """A protocol that sends until the dialer stops reading."""
    while True:
        await stream.send(bytes(60_000))


def with_stream(**changes: object) -> object:
    return replace(FAST, stream=replace(FAST.stream, **changes))  # type: ignore[arg-type]


async def dial(
    transport: Transport, node: Node, identity: Identity, protocol: str = HOLD
) -> SecureStream:
    assert node.address is not None
    raw = await transport.connect(node.address)
    secure = await secure_connect(raw, identity, expected_node_id=node.node_id)
    await secure.send(envelope.encode(StreamOpen(protocol)))
    return secure


async def refused_cleanly(stream: SecureStream) -> bool:
    """Whether the node closed `stream` with its final frame (the clean close of a refusal)."""
    try:
        await stream.receive()
    except trio.EndOfChannel:
        return True
    finally:
        await stream.aclose()
    return False


class Gated(trio.abc.Stream):
    """A stream whose second write waits for `gate`: a handshake held between msg1 and msg3."""

    def __init__(self, inner: trio.abc.Stream, gate: trio.Event) -> None:
        self.inner = inner
        self.gate = gate
        self.writes = 0

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self.writes += 1
        if self.writes == 2:
            await self.gate.wait()
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_connection_flood_does_not_evict_an_honest_pending_handshake(
    autojump_clock,
) -> None:
    async with open_memory_network(seed=21) as net, running_nodes(net, 2) as (a, b):
        assert b.address is not None
        gate = trio.Event()
        outcome: list[object] = []

        async def honest() -> None:
            raw = await net.transport(net.new_host()).connect(b.address)  # type: ignore[arg-type]
            try:
                secure = await secure_connect(
                    Gated(raw, gate), a.identity, expected_node_id=b.node_id
                )
            except HandshakeError as exc:
                outcome.append(exc)
                return
            async with secure:  # and it is served
                await secure.send(envelope.encode(StreamOpen(echo.ECHO_PROTOCOL)))
                payload = envelope.encode(Echo(b"honest"))
                await secure.send(payload)
                assert await secure.receive() == payload
            outcome.append(secure.remote_node_id)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(honest)
            await trio.testing.wait_all_tasks_blocked()
            assert b.streams.pending_handshakes == 1  # the honest one, stopped before msg3
            flooder = net.transport(net.new_host())
            silent = [await flooder.connect(b.address) for _ in range(1000)]
            await trio.testing.wait_all_tasks_blocked()
            gate.set()
        assert outcome == [b.node_id]
        await trio.testing.wait_all_tasks_blocked()
        stats = b.streams.stats
        per_host = FAST.stream.max_pending_per_host
        assert b.streams.pending_handshakes == per_host  # the flooder's newest only
        assert stats["handshake_evicted"] + stats["refused_rate"] == 1000 - per_host
        assert stats["refused_rate"] == 1000 - FAST.stream.host_connection_burst
        for stream in silent:
            await stream.aclose()


async def test_each_stream_cap_refuses_the_newcomer_cleanly_and_counts_it(
    autojump_clock, caplog
) -> None:
    settings = with_stream(max_streams=4, max_streams_per_host=3, max_streams_per_node=2)
    caplog.set_level(logging.DEBUG)
    async with open_memory_network(seed=22) as net, running_nodes(net, 1, settings) as [b]:  # type: ignore[arg-type]
        b.streams.on(HOLD, hold)
        evil, other, third = (net.transport(net.new_host()) for _ in range(3))
        alice, bob, carol, dave = (seeded_identity(100 + i) for i in range(4))
        held = [await dial(evil, b, alice), await dial(evil, b, alice)]
        # A third stream for one node ID: refused after the handshake, with a clean close.
        assert await refused_cleanly(await dial(evil, b, alice))
        assert b.streams.stats["refused_node_streams"] == 1
        held.append(await dial(evil, b, bob))
        # The host holds 3: its next connection is closed before any handshake work.
        with pytest.raises(HandshakeError):  # closed before msg2
            await dial(evil, b, carol)
        assert b.streams.stats["refused_host_streams"] == 1
        held.append(await dial(other, b, carol))
        # The node holds 4 in total.
        with pytest.raises(HandshakeError):  # closed before msg2
            await dial(third, b, dave)
        assert b.streams.stats["refused_total_streams"] == 1
        assert b.streams.inbound_streams == 4
        shown = (await b.status())["streams"]
        assert (shown["inbound_streams"], shown["pending_handshakes"]) == (4, 0)
        assert shown["refused_total_streams"] == 1
        # No stream that was established was cut for the newcomers.
        for stream in held:
            await stream.send(b"still here")
        await trio.testing.wait_all_tasks_blocked()
        assert b.streams.inbound_streams == 4
        # One closes: a newcomer gets its place.
        await held.pop().aclose()
        await trio.testing.wait_all_tasks_blocked()
        held.append(await dial(third, b, dave))
        await held[-1].send(b"in")
        await trio.testing.wait_all_tasks_blocked()
        assert b.streams.inbound_streams == 4
        assert b.streams.stats["stream_error"] == b.streams.stats["handler_error"] == 0
        for stream in held:
            await stream.aclose()
        await trio.testing.wait_all_tasks_blocked()
        assert b.streams.inbound_streams == 0
    assert "Traceback" not in caplog.text


async def test_a_refused_stream_ping_is_a_clean_failure(autojump_clock) -> None:
    settings = with_stream(max_streams_per_node=1)
    async with open_memory_network(seed=23) as net, running_nodes(net, 2, settings) as (a, b):
        assert b.address is not None
        b.streams.on(HOLD, hold)
        held = await a.streams.open(b.address, HOLD, node_id=b.node_id)
        with pytest.raises(RemoteProtocolError, match="closed the stream without an echo"):
            await echo.ping_stream(a.streams, b.address, b.node_id)
        assert b.streams.stats["refused_node_streams"] == 1
        await held.aclose()
        await trio.testing.wait_all_tasks_blocked()
        assert (await echo.ping_stream(a.streams, b.address, b.node_id))["via"] == "stream"


async def test_the_connection_rate_is_per_host(autojump_clock) -> None:
    settings = with_stream(host_connection_rate=2, host_connection_burst=4)
    async with open_memory_network(seed=24) as net, running_nodes(net, 2, settings) as (a, b):
        assert b.address is not None
        evil = net.transport(net.new_host())
        ident = seeded_identity(50)
        for _ in range(4):
            await (await dial(evil, b, ident, echo.ECHO_PROTOCOL)).aclose()
        with pytest.raises(HandshakeError):  # closed before msg2
            await dial(evil, b, ident, echo.ECHO_PROTOCOL)
        assert b.streams.stats["refused_rate"] == 1
        # Another host is not affected, and the flooder gets a token back after 1/rate.
        assert (await echo.ping_stream(a.streams, b.address, b.node_id))["via"] == "stream"
        await trio.sleep(0.5)
        await (await dial(evil, b, ident, echo.ECHO_PROTOCOL)).aclose()


async def test_trusted_hosts_are_exempt_from_the_per_host_caps(autojump_clock) -> None:
    async with open_memory_network(seed=25) as net:
        trusted_host = net.new_host()
        settings = with_stream(
            host_connection_burst=2, max_streams_per_host=1, trusted_hosts=(trusted_host,)
        )
        async with running_nodes(net, 1, settings) as [b]:  # type: ignore[arg-type]
            b.streams.on(HOLD, hold)
            friend = net.transport(trusted_host)
            held = [await dial(friend, b, seeded_identity(60 + i)) for i in range(5)]
            await trio.testing.wait_all_tasks_blocked()
            assert b.streams.inbound_streams == 5
            assert b.streams.stats["refused_rate"] == b.streams.stats["refused_host_streams"] == 0
            for stream in held:
                await stream.aclose()


async def test_an_idle_stream_is_closed_and_counted(autojump_clock) -> None:
    settings = with_stream(idle_timeout=5.0)
    async with open_memory_network(seed=26) as net, running_nodes(net, 1, settings) as [b]:  # type: ignore[arg-type]
        b.streams.on(HOLD, hold)
        b.streams.on(SPEW, spew)
        client = net.transport(net.new_host())
        silent = await dial(client, b, seeded_identity(70))
        chatty = await dial(client, b, seeded_identity(71))
        deaf = await dial(client, b, seeded_identity(72), SPEW)  # never reads
        started = trio.current_time()
        for _ in range(5):  # a frame every 3 s keeps a stream open
            await trio.sleep(3)
            await chatty.send(b"tick")
        with pytest.raises(trio.EndOfChannel):  # closed cleanly, long ago
            await silent.receive()
        assert b.streams.stats["idle_closed"] == 2  # the silent one and the one that stopped
        assert b.streams.inbound_streams == 1  # reading
        await trio.sleep(6)
        assert b.streams.inbound_streams == 0
        assert b.streams.stats["idle_closed"] == 3
        assert trio.current_time() - started == pytest.approx(21, abs=0.1)
        assert b.streams.stats["stream_error"] == b.streams.stats["handler_error"] == 0
        for stream in (silent, chatty, deaf):
            await stream.aclose()


async def test_a_trickled_frame_is_cut_off_and_counted(autojump_clock) -> None:
    settings = with_stream(frame_timeout=5.0)
    async with open_memory_network(seed=27) as net, running_nodes(net, 1, settings) as [b]:  # type: ignore[arg-type]
        b.streams.on(HOLD, hold)
        client = net.transport(net.new_host())
        stream = await dial(client, b, seeded_identity(80))
        raw = stream.transport_stream
        # A frame announcing the largest ciphertext, then one byte a second.
        await raw.send_all((FAST.stream.max_frame_bytes + 17).to_bytes(4, "big"))

        async def trickle() -> None:
            for _ in range(20):
                await trio.sleep(1)
                await raw.send_all(b"x")

        with pytest.raises(trio.BrokenResourceError):  # the node closed the connection
            await trickle()
        await trio.testing.wait_all_tasks_blocked()
        assert b.streams.stats["frame_timeout"] == 1
        assert b.streams.stats["stream_error"] == 0
        assert b.streams.inbound_streams == 0
        assert 5 <= trio.current_time() <= 7


async def test_many_identities_on_one_host_cannot_starve_honest_nodes(autojump_clock) -> None:
    """An attacker host with 120 cheap identities holds every idle stream the caps allow and
    keeps opening more, plus thousands of connections that never finish a handshake; honest
    nodes on other hosts still complete every stream ping and push-pull."""
    async with (
        open_memory_network(seed=28, latency=0.005) as net,
        running_nodes(net, 4) as nodes,
    ):
        target, honest = nodes[0], nodes[1:]
        assert target.address is not None
        evil = net.transport(net.new_host())
        identities = [seeded_identity(1000 + i) for i in range(120)]
        held: list[SecureStream] = []
        attempts = {"streams": 0, "half_open": 0}

        async def hold_streams() -> None:
            while True:
                for identity in identities:
                    attempts["streams"] += 1
                    try:
                        held.append(await dial(evil, target, identity, echo.ECHO_PROTOCOL))
                    except (HandshakeError, trio.BrokenResourceError, OSError):
                        await trio.sleep(0.1)  # and try again

        async def half_open() -> None:
            silent = []
            for _ in range(4000):
                attempts["half_open"] += 1
                silent.append(await evil.connect(target.address))  # type: ignore[arg-type]
                await trio.sleep(0.001)
            await trio.sleep_forever()

        pings = syncs = 0
        peak_streams = peak_pending = 0
        async with trio.open_nursery() as nursery:
            nursery.start_soon(hold_streams)
            nursery.start_soon(half_open)
            await trio.sleep(5)  # the attacker fills what it can
            for _ in range(5):
                for node in honest:
                    await echo.ping_stream(node.streams, target.address, target.node_id)
                    pings += 1
                    seed = Seed(target.address, target.node_id)
                    assert await node.membership.syncing.sync_with(seed)
                    syncs += 1
                    peak_streams = max(peak_streams, target.streams.inbound_streams)
                    peak_pending = max(peak_pending, target.streams.pending_handshakes)
                await trio.sleep(13)  # across the attacker's idle-timeout cycle
            nursery.cancel_scope.cancel()
        assert pings == syncs == 15
        settings: StreamSettings = FAST.stream
        assert attempts["half_open"] >= 4000
        assert peak_streams <= settings.max_streams_per_host + len(honest)
        assert peak_pending <= settings.max_pending_per_host + len(honest)
        stats = target.streams.stats
        assert stats["refused_node_streams"] + stats["refused_host_streams"] > 0
        assert stats["refused_rate"] > 0
        assert stats["idle_closed"] > 0
        assert stats["handler_error"] == stats["stream_error"] == 0
        for stream in held:
            await stream.aclose()


async def test_a_key_pull_refused_by_the_limits_is_a_counted_failure(autojump_clock) -> None:
    """keyring/1 fetches meet the limits too: a refusal is a failure counted by the fetcher,
    not an error escaping its step."""
    settings = with_stream(host_connection_rate=1, host_connection_burst=1)
    async with open_memory_network(seed=29) as net, running_nodes(net, 2, settings) as (a, b):
        assert b.address is not None
        raw = await net.transport(a.address.host).connect(b.address)  # type: ignore[union-attr]
        # That used the burst of a's host: a's fetch is closed before the handshake.
        assert not await a.keyring_service.fetch([Seed(b.address, b.node_id)])
        assert a.keyring_service.stats["fetch_failed"] == 1
        assert b.streams.stats["refused_rate"] == 1
        await raw.aclose()
