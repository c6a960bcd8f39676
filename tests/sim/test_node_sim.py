"""Nodes on the in-memory network: pings, bad input, stalls and floods, shutdown."""

from __future__ import annotations

import logging
import os
import random
from dataclasses import replace

import pytest
import trio
import trio.testing

from plexinode.dht.contact import Contact
from plexinode.dht.messages import FindNode, Nodes, WireContact
from plexinode.errors import (
    HandshakeError,
    IdentityError,
    PeerTimeout,
    PlexinodeError,
    RemoteProtocolError,
    WrongNode,
)
from plexinode.identity import Identity
from plexinode.net import packet
from plexinode.net.address import Address
from plexinode.net.datagram import Inbound
from plexinode.net.echo import ECHO_IDLE_TIMEOUT, ECHO_PROTOCOL
from plexinode.net.handshake import Initiator
from plexinode.net.keyring import Keyring
from plexinode.net.pinging import NoAnswer, Pinger, PingOptions
from plexinode.net.secure import SecureStream, secure_connect
from plexinode.net.settings import DatagramSettings, StreamSettings
from plexinode.node import Node
from plexinode.testing.fuzz_datagrams import seal, tagged, untagged
from plexinode.testing.network import open_memory_network
from plexinode.testing.nodes import FAST, running_nodes, seeded_identity
from plexinode.wire import envelope
from plexinode.wire.messages import Echo, ErrorReply, Ping, Pong, StreamOpen
from plexinode.wire.schema import Message


async def test_ping_over_datagrams_and_streams(autojump_clock) -> None:
    async with open_memory_network(seed=1, latency=0.01) as net, running_nodes(net, 2) as (a, b):
        assert b.address is not None
        result = await a.ping(b.address)
        assert result["node_id"] == str(b.node_id)
        assert result["rtt_ms"] == pytest.approx(20.0, abs=1.0)
        stream = PingOptions(via="stream")
        result = await a.ping(b.address, node_id=b.node_id, options=stream)
        assert result["node_id"] == str(b.node_id)
        other = seeded_identity(99).node_id
        with pytest.raises(NoAnswer, match="expected"):
            await a.ping(b.address, node_id=other, options=stream)
        # Over datagrams, whoever is at the address answers, and is named.
        with pytest.raises(WrongNode, match=f"is {b.node_id}, not {other}"):
            await a.ping(b.address, node_id=other)
        with pytest.raises(ValueError, match="unknown ping transport"):
            PingOptions(via="carrier-pigeon")
        with pytest.raises(ValueError, match="needs an address or a node ID"):
            await a.ping(None)
        with pytest.raises(PlexinodeError, match="own address"):
            await a.ping(a.address)
        with pytest.raises(PlexinodeError, match="own ID"):
            await a.ping(None, node_id=a.node_id)
        assert b.datagrams.stats["drop_misaddressed"] == 0
        assert b.streams.stats["accepted:echo/1"] == 1


async def test_retries_get_through_loss(autojump_clock) -> None:
    async with (
        open_memory_network(seed=7, latency=0.005, loss=0.3) as net,
        running_nodes(
            net, 2, replace(FAST, datagram=DatagramSettings(request_timeout=0.1, retries=20))
        ) as (a, b),
    ):
        assert b.address is not None
        for _ in range(50):
            await a.ping(b.address)
        assert a.datagrams.stats["request_retry"] > 0


async def test_timeout_when_nobody_answers(autojump_clock) -> None:
    async with open_memory_network(seed=2) as net, running_nodes(net, 1) as (a,):
        start = trio.current_time()
        with pytest.raises(
            NoAnswer, match=r"no answer from 10\.9\.9\.9:1 to 1 ping\(s\) over UDP or TCP"
        ):
            await a.ping(Address("10.9.9.9", 1))
        # Three attempts of 0.5 s, then a stream, which cannot reach the host either.
        assert trio.current_time() - start == pytest.approx(1.5)


async def send_raw(net, target: Address, datagrams: list[bytes]) -> None:
    transport = net.transport(net.new_host())
    endpoint = await transport.bind(Address("0.0.0.0", 0))
    for data in datagrams:
        await endpoint.datagrams.sendto(data, target)
    await trio.sleep(0.1)
    await endpoint.aclose()


async def test_bad_datagrams_are_dropped_and_counted(autojump_clock) -> None:
    async with open_memory_network(seed=3) as net, running_nodes(net, 2) as (a, b):
        assert b.address is not None
        mallory = Identity.generate()
        sealer = packet.Sealer(mallory, lambda: 1)
        ping = envelope.encode(Ping(), 5)
        good = sealer.seal(ping, b.node_id)
        forged_key = bytearray(sealer.seal(ping, b.node_id))
        forged_key[30:33] = bytes(3)  # altered ciphertext: the AEAD (network check) fails
        inner = bytearray(packet.decrypt(good, [Keyring.open("open").primary]) or b"")
        inner[1:33] = Identity.generate().public_key
        # A member forging (it can decrypt and re-encrypt): the signature fails.
        forged_retagged = packet.encrypt(Keyring.open("open").primary, bytes(inner))
        wrong_shape = sealer.seal(b"\x93\x01\x02\x03", b.node_id)  # valid msgpack, wrong shape
        unknown_type = sealer.seal(envelope.encode(Ping(), 5).replace(b"\x01", b"\x7f", 2), None)
        reply_never_asked = sealer.seal(envelope.encode(Pong("x", 1), 99), b.node_id)
        anonymous_echo = sealer.seal(envelope.encode(Echo(b""), 6), None)
        await send_raw(
            net,
            b.address,
            [
                # Garbage that does not start with the packet version (random bytes did, 1 in
                # 256, and were then counted as another network's datagram).
                b"\xfe" * 200,
                good[:50],
                good + b"x" * 1200,
                bytes(forged_key),
                forged_retagged,
                wrong_shape,
                unknown_type,
                reply_never_asked,
                anonymous_echo,
                good,
                good,  # replay
            ],
        )
        stats = b.datagrams.stats
        assert net.stats.dropped_oversize == 1  # the network itself refuses > 1200 bytes
        assert stats["drop_malformed"] == 4
        assert stats["drop_network_key"] == 1
        assert stats["drop_bad_signature"] == 1
        assert stats["drop_unmatched_reply"] == 1
        assert stats["drop_anonymous"] == 1
        assert stats["drop_replay"] == 1
        assert stats["requests"] == 1
        # The node keeps serving honest peers.
        assert (await a.ping(b.address))["node_id"] == str(b.node_id)
        status = await b.status()
        assert status["datagrams"]["drop_replay"] == 1


async def test_unsupported_and_failing_handlers(autojump_clock) -> None:
    async with open_memory_network(seed=4) as net, running_nodes(net, 2) as (a, b):
        assert b.address is not None
        with pytest.raises(RemoteProtocolError, match="unsupported"):
            await a.datagrams.request(b.address, Echo(b"x"), node_id=b.node_id)

        async def refuse(inbound: Inbound) -> Message:
            raise RemoteProtocolError("no thanks")

        async def crash(inbound: Inbound) -> Message:
            raise RuntimeError("bug")

        b.datagrams.on(Echo, refuse)
        with pytest.raises(RemoteProtocolError, match="no thanks"):
            await a.datagrams.request(b.address, Echo(b"x"), node_id=b.node_id)
        b.datagrams.on(Echo, crash)
        with pytest.raises(PeerTimeout):
            await a.datagrams.request(b.address, Echo(b"x"), node_id=b.node_id, retries=0)
        assert b.datagrams.stats["handler_error"] == 1
        with pytest.raises(ValueError, match="response type"):
            b.datagrams.on(Pong, refuse)
        with pytest.raises(ValueError, match="must name"):
            await a.datagrams.request(b.address, Echo(b"x"))

        # A stream handler with a bug ends its stream, not the node.
        async def broken(stream: SecureStream) -> None:
            raise RuntimeError("bug")

        b.streams.on("broken/1", broken)
        stream = await a.streams.open(b.address, "broken/1", node_id=b.node_id)
        async with stream:
            with pytest.raises((trio.EndOfChannel, trio.BrokenResourceError)):
                await stream.receive()
        assert b.streams.stats["handler_error"] == 1
        assert (await a.ping(b.address))["node_id"] == str(b.node_id)


async def test_handler_concurrency_is_capped(autojump_clock) -> None:
    settings = replace(FAST, datagram=DatagramSettings(max_inflight_handlers=2, retries=0))
    async with open_memory_network(seed=5) as net, running_nodes(net, 2, settings) as (a, b):
        assert b.address is not None
        release = trio.Event()

        async def slow(inbound: Inbound) -> Message:
            await release.wait()
            return ErrorReply(0, "done")

        b.datagrams.on(Echo, slow)
        outcomes: list[str] = []

        async def call() -> None:
            try:
                await a.datagrams.request(
                    b.address, Echo(b""), node_id=b.node_id, attempt_timeout=5
                )
            except RemoteProtocolError as exc:
                outcomes.append(str(exc))

        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(call)
            await trio.sleep(1)
            release.set()
        assert b.datagrams.stats["drop_busy"] >= 2  # (+ the DHT checking a back, if it lands then)
        assert sum("busy" in o for o in outcomes) == 2


async def test_stalled_handshakes_time_out_and_free_resources(autojump_clock) -> None:
    async with open_memory_network(seed=6) as net, running_nodes(net, 2) as (a, b):
        assert b.address is not None
        client = net.transport(net.new_host())
        idle = [await client.connect(b.address) for _ in range(10)]
        # One sends only the first handshake message and stalls halfway.
        half = await client.connect(b.address)
        first = Initiator(Identity.generate(), expected_node_id=b.node_id).start()
        await half.send_all(len(first).to_bytes(2, "big") + first)
        # One completes the handshake but never says which protocol it wants.
        silent = await secure_connect(await client.connect(b.address), Identity.generate())
        await trio.testing.wait_all_tasks_blocked()
        assert b.streams.pending_handshakes == 12
        await trio.sleep(FAST.stream.handshake_timeout + 0.1)
        assert b.streams.pending_handshakes == 0
        assert b.streams.stats["handshake_timeout"] == 12
        with pytest.raises((trio.BrokenResourceError, trio.EndOfChannel, RemoteProtocolError)):
            await silent.receive()
        assert (await a.ping(b.address, options=PingOptions(via="stream")))["node_id"] == str(
            b.node_id
        )
        for stream in idle:
            await stream.aclose()


async def test_a_thousand_silent_connections(autojump_clock) -> None:
    settings = replace(
        FAST, stream=StreamSettings(handshake_timeout=2.0, max_pending_handshakes=64)
    )
    async with open_memory_network(seed=8) as net, running_nodes(net, 2, settings) as (a, b):
        assert b.address is not None
        client = net.transport(net.new_host())
        idle = [await client.connect(b.address) for _ in range(1000)]
        await trio.testing.wait_all_tasks_blocked()
        # One host may hold max_pending_per_host handshakes; beyond its connection burst it is
        # refused outright, and within it each new connection evicts its own oldest.
        per_host = settings.stream.max_pending_per_host
        assert b.streams.pending_handshakes == per_host
        stats = b.streams.stats
        assert stats["handshake_evicted"] == settings.stream.host_connection_burst - per_host
        assert stats["refused_rate"] == 1000 - settings.stream.host_connection_burst
        # Datagram pings and status keep working during the flood.
        assert (await a.ping(b.address))["node_id"] == str(b.node_id)
        assert (await b.status())["node_id"] == str(b.node_id)
        await trio.sleep(3)
        assert b.streams.pending_handshakes == 0
        assert (await a.ping(b.address, options=PingOptions(via="stream")))["node_id"] == str(
            b.node_id
        )
        for stream in idle:
            await stream.aclose()


async def test_bad_stream_openings(autojump_clock) -> None:
    async with open_memory_network(seed=9) as net, running_nodes(net, 2) as (a, b):
        assert b.address is not None
        stranger = Identity.generate()
        for first_frame in (
            envelope.encode(Ping()),
            envelope.encode(StreamOpen("nope/1")),
            b"garbage",
        ):
            raw = await net.transport(net.new_host()).connect(b.address)
            secure = await secure_connect(raw, stranger, expected_node_id=b.node_id)
            await secure.send(first_frame)
            await trio.sleep(0.1)
            await secure.aclose()
        garbage = await net.transport(net.new_host()).connect(b.address)
        await garbage.send_all(os.urandom(300))
        await trio.sleep(0.1)
        stats = b.streams.stats
        assert stats["bad_open"] == 2  # a Ping instead of StreamOpen, and a garbage frame
        assert stats["unknown_protocol"] == 1
        assert stats["handshake_failed"] == 1  # random bytes instead of a handshake
        # An echo stream that sends a non-echo frame is closed by the node.
        stream = await a.streams.open(b.address, ECHO_PROTOCOL, node_id=b.node_id)
        await stream.send(envelope.encode(Ping()))
        await trio.sleep(0.1)
        assert b.streams.stats["stream_error"] == 1
        await stream.aclose()


async def test_stream_pings_are_not_stream_errors_and_an_idle_echo_stream_is_closed(
    autojump_clock, caplog
) -> None:
    """`ping --stream` closes its stream cleanly after one echo: the target counts no
    `stream_error` (the counter operators watch), and an echo stream that stays silent is
    closed without a handler failure."""
    async with open_memory_network(seed=12) as net, running_nodes(net, 2) as (a, b):
        assert b.address is not None
        for _ in range(3):
            await a.ping(b.address, node_id=b.node_id, options=PingOptions(via="stream"))
        await trio.sleep(0.1)
        assert b.streams.stats["accepted:echo/1"] == 3
        assert b.streams.stats["stream_error"] == 0
        with caplog.at_level(logging.DEBUG, logger="plexinode.net.streams"):
            stream = await a.streams.open(b.address, ECHO_PROTOCOL, node_id=b.node_id)
            await trio.sleep(ECHO_IDLE_TIMEOUT + 1)
            with pytest.raises(trio.EndOfChannel):  # b closed it, cleanly
                await stream.receive()
            await stream.aclose()
        assert b.streams.stats["handler_error"] == 0
        assert b.streams.stats["stream_error"] == 0
        assert "failed" not in caplog.text


async def test_stop_is_prompt_and_closes_everything(autojump_clock) -> None:
    async with open_memory_network(seed=10) as net:
        async with running_nodes(net, 2) as (a, b):
            assert b.address is not None
            stream = await a.streams.open(b.address, ECHO_PROTOCOL)
            address = a.address
            started = trio.current_time()
        assert trio.current_time() - started < 0.01  # no grace period is waited out
        with pytest.raises(RuntimeError, match="not running"):
            _ = a.datagrams
        with pytest.raises(RuntimeError, match="not running"):
            _ = a.streams
        with pytest.raises(RuntimeError, match="not running"):
            _ = a.dht
        with pytest.raises(RuntimeError, match="not running"):
            _ = a.membership
        with pytest.raises(RuntimeError, match="not running"):
            _ = a.keyring_service

        async def echo_once() -> None:
            await stream.send(envelope.encode(Echo(b"x")))
            await stream.receive()

        with pytest.raises((trio.BrokenResourceError, trio.EndOfChannel, RemoteProtocolError)):
            await echo_once()
        # The port is free again: a node restarted on the same host binds the same address.
        assert address is not None
        again = Node(
            seeded_identity(0),
            replace(FAST, listen=address),
            net.transport(address.host),
            wall_clock=trio.current_time,
        )
        async with trio.open_nursery() as nursery:
            assert await nursery.start(again.run) == address
            again.stop()


@pytest.mark.long
async def test_a_thousand_nodes_in_one_process(autojump_clock) -> None:
    async with (
        open_memory_network(seed=11, latency=0.002) as net,
        running_nodes(net, 1000) as nodes,
    ):
        rng = random.Random(11)
        for _ in range(200):
            a, b = rng.sample(nodes, 2)
            assert b.address is not None
            assert (await a.ping(b.address, node_id=b.node_id))["node_id"] == str(b.node_id)
        assert net.stats.dropped == 0


async def test_requests_beyond_a_peers_rate_are_dropped_and_counted(autojump_clock) -> None:
    settings = replace(FAST, datagram=DatagramSettings(peer_request_rate=5, retries=0))
    async with open_memory_network(seed=9) as net, running_nodes(net, 3, settings) as (a, b, c):
        assert b.address is not None

        async def echo(inbound: Inbound) -> Message:
            return Pong(inbound.address.host, inbound.address.port)

        b.datagrams.on(Echo, echo)
        outcomes: list[str] = []

        async def call(node: Node) -> None:
            try:
                await node.datagrams.request(
                    b.address, Echo(b""), node_id=b.node_id, attempt_timeout=1
                )
                outcomes.append("ok")
            except RemoteProtocolError as exc:
                outcomes.append(str(exc))
            except PeerTimeout:
                outcomes.append("timeout")

        async with trio.open_nursery() as nursery:
            for _ in range(15):  # a burst of 10 is allowed at 5/s
                nursery.start_soon(call, a)
        assert outcomes.count("ok") == 10
        assert sum("rate limited" in o for o in outcomes) == 1  # one notice per second
        assert outcomes.count("timeout") == 4  # the rest are dropped silently
        assert b.datagrams.stats["drop_rate_limited"] == 5
        # Another peer, and another request type from the same peer, have their own allowance.
        await call(c)
        pong = await a.datagrams.request(b.address, Ping(), node_id=b.node_id)
        assert isinstance(pong.message, Pong)
        assert outcomes[-1] == "ok"
        # The allowance refills with time.
        await trio.sleep(1)
        await call(a)
        assert outcomes[-1] == "ok"


async def test_any_host_beyond_its_datagram_rate_is_dropped_before_verification(
    autojump_clock,
) -> None:
    settings = replace(FAST, datagram=DatagramSettings(host_datagram_rate=10))
    async with open_memory_network(seed=10) as net, running_nodes(net, 1, settings) as (b,):
        assert b.address is not None
        public = "1.2.3.4"  # a global address (inside the in-memory network only)
        private = net.new_host()  # 10.0.0.x: private addresses are limited too
        sender = Identity.generate()
        sealer = packet.Sealer(sender, lambda: 1)
        datagram = sealer.seal(envelope.encode(Ping(), 0), b.node_id)
        for host in (public, private):
            endpoint = await net.transport(host).bind(Address(host, 0))
            for _ in range(50):
                await endpoint.datagrams.sendto(datagram, b.address)
        await trio.sleep(1)
        # From each host, 20 (the burst) got through to the replay guard; the other 30 were
        # dropped first.
        assert b.datagrams.stats["drop_host_rate_limited"] == 30 + 30
        assert b.datagrams.stats["drop_replay"] == 19 + 20


async def test_trusted_networks_are_exempt_from_the_host_datagram_rate(autojump_clock) -> None:
    async with open_memory_network(seed=10) as net:
        trusted = net.new_host()
        settings = replace(
            FAST, datagram=DatagramSettings(host_datagram_rate=10, trusted_hosts=(trusted,))
        )
        async with running_nodes(net, 1, settings) as (b,):
            assert b.address is not None
            sealer = packet.Sealer(Identity.generate(), lambda: 1)
            datagram = sealer.seal(envelope.encode(Ping(), 0), b.node_id)
            endpoint = await net.transport(trusted).bind(Address(trusted, 0))
            for _ in range(50):
                await endpoint.datagrams.sendto(datagram, b.address)
            await trio.sleep(1)
            assert b.datagrams.stats["drop_host_rate_limited"] == 0
            assert b.datagrams.stats["drop_replay"] == 49


async def test_a_host_whose_datagrams_keep_failing_the_signature_is_dropped_unverified(
    autojump_clock,
) -> None:
    settings = replace(FAST, datagram=DatagramSettings(host_failure_rate=1, host_failure_burst=5))
    async with open_memory_network(seed=10) as net, running_nodes(net, 1, settings) as (b,):
        assert b.address is not None
        forger = Identity.generate()
        body = untagged(seal(forger, b.node_id.raw[:8], 1, envelope.encode(Ping(), 7)))
        forged = tagged(body[: -len(bytes(64))] + bytes(64))  # a zero signature, tagged right
        host = net.new_host()
        endpoint = await net.transport(host).bind(Address(host, 0))
        for _ in range(40):
            await endpoint.datagrams.sendto(forged, b.address)
        await trio.sleep(0.5)
        stats = b.datagrams.stats
        # The burst of failures was verified; the rest dropped before the check.
        assert stats["drop_bad_signature"] == 5
        assert stats["drop_host_failures"] == 35
        # Honest datagrams from that host are dropped unverified too, until the budget refills.
        honest = packet.Sealer(Identity.generate(), lambda: 1)
        ping = honest.seal(envelope.encode(Ping(), 8), b.node_id)
        await endpoint.datagrams.sendto(ping, b.address)
        await trio.sleep(0.1)
        assert stats["drop_host_failures"] == 36
        await trio.sleep(2)
        served = stats["requests"]
        await endpoint.datagrams.sendto(ping, b.address)
        with trio.fail_after(1):
            await endpoint.datagrams.recvfrom()  # the pong
        assert stats["requests"] == served + 1
        assert stats["drop_host_failures"] == 36


async def test_the_id_puzzle_is_enforced_on_datagrams_streams_and_contacts(
    autojump_clock,
) -> None:
    puzzle = replace(FAST, dht=replace(FAST.dht, id_difficulty=8))
    async with open_memory_network(seed=11) as net, trio.open_nursery() as nursery:
        nodes = []
        for _ in range(2):
            node = Node(
                Identity.generate(difficulty=8),
                puzzle,
                net.transport(net.new_host()),
                wall_clock=trio.current_time,
            )
            await nursery.start(node.run)
            nodes.append(node)
        a, b = nodes
        assert b.address is not None
        # Solvers talk as usual.
        await a.ping(b.address, node_id=b.node_id)
        await a.ping(b.address, node_id=b.node_id, options=PingOptions(via="stream"))
        # A node with an unsolved ID cannot even start on this network ...
        cheap = Identity.generate()
        while cheap.node_id.meets(8):
            cheap = Identity.generate()
        with pytest.raises(IdentityError, match="8-bit ID puzzle"):
            Node(cheap, puzzle, net.transport(net.new_host()))
        # ... and what it sends is dropped before any signature check, on both transports.
        outsider = Node(cheap, FAST, net.transport(net.new_host()), wall_clock=trio.current_time)
        await nursery.start(outsider.run)
        with pytest.raises(PeerTimeout):
            await outsider.datagrams.request(b.address, Ping(), node_id=b.node_id, retries=0)
        assert b.datagrams.stats["drop_id_puzzle"] == 1
        with pytest.raises((HandshakeError, NoAnswer)):  # a clean failure, whichever side
            await outsider.ping(b.address, node_id=b.node_id, options=PingOptions(via="stream"))
        assert b.streams.stats["id_puzzle_failed"] == 1
        # Contacts with unsolved IDs in a reply are not even queried.
        fake = Contact(cheap.node_id, Address("10.9.9.9", 7420))

        async def offer_fake(inbound: Inbound) -> Message:
            return Nodes((WireContact.from_contact(fake),))

        b.datagrams.on(FindNode, offer_fake)
        await a.dht.find_node(cheap.node_id)
        assert a.dht.routing.stats["ignored_id_puzzle"] >= 1
        for node in (*nodes, outsider):
            node.stop()


async def test_a_retransmitted_request_while_its_first_copy_is_handled(autojump_clock) -> None:
    """Two copies of one request (a retransmission, or an attacker's duplicate with a fresh
    counter) while the first is still being handled: the copy is dropped and counted, the
    node keeps serving, and the first copy's reply answers the requester."""
    async with open_memory_network(seed=12) as net, running_nodes(net, 2) as (a, b):
        assert b.address is not None
        release = trio.Event()

        async def slow(inbound: Inbound) -> Message:
            await release.wait()
            return Pong(inbound.address.host, inbound.address.port)

        b.datagrams.on(Echo, slow)
        async with trio.open_nursery() as nursery:
            replies: list[Message] = []

            async def call() -> None:
                reply = await a.datagrams.request(
                    b.address, Echo(b""), node_id=b.node_id, attempt_timeout=0.1, retries=3
                )
                replies.append(reply.message)

            nursery.start_soon(call)
            await trio.sleep(0.35)  # the request went out 4 times by now
            assert b.datagrams.stats["drop_duplicate"] >= 2
            release.set()
        assert len(replies) == 1
        # An attacker's exact duplicates with fresh counters: same outcome, no crash.
        mallory = Identity.generate()
        sealer = packet.Sealer(mallory, lambda: 1)
        release = trio.Event()
        endpoint = await net.transport(net.new_host()).bind(Address("0.0.0.0", 0))
        for _ in range(3):
            payload = envelope.encode(Echo(b"x"), 77)
            await endpoint.datagrams.sendto(sealer.seal(payload, b.node_id), b.address)
        await trio.sleep(0.1)
        assert b.datagrams.stats["drop_duplicate"] >= 4
        release.set()
        await trio.sleep(0.1)
        pong = await a.datagrams.request(b.address, Ping(), node_id=b.node_id)
        assert isinstance(pong.message, Pong)


async def test_a_ping_that_meets_udp_silence_tells_a_firewall_from_an_absent_node(
    autojump_clock,
) -> None:
    async with open_memory_network(seed=5, latency=0.01) as net, running_nodes(net, 2) as (a, b):
        assert a.address is not None
        assert b.address is not None
        # b's datagrams to a are lost (a firewall dropping UDP); its streams still work.
        net.set_link(b.address.host, a.address.host, loss=1.0)
        with pytest.raises(NoAnswer, match="answers over TCP"):
            await a.ping(b.address, options=PingOptions(timeout=1.0))
        # Three rounds, none answered: one reason, naming how many were sent.
        with pytest.raises(NoAnswer, match="to 3 ping"):
            await a.ping(b.address, options=PingOptions(count=3, interval=0.5, timeout=0.3))
        net.clear_link(b.address.host, a.address.host)
        pong = await a.ping(b.address, options=PingOptions(via="stream", count=2, interval=0))
        assert (pong["sent"], pong["received"]) == (2, 2)
        assert pong["handshake_ms"] > 0
        # For a node bound to every address, the loopback at its port is itself.
        wildcard = Pinger(a.datagrams, a.streams, net.resolver, Address("0.0.0.0", 7420))
        with pytest.raises(PlexinodeError, match="own address"):
            await wildcard.ping(Address("127.0.0.1", 7420))


def test_ping_options_are_checked() -> None:
    bad = (
        ({"count": 0}, "count must be within"),
        ({"count": 1001}, "count must be within"),
        ({"interval": -1.0}, "interval must not be negative"),
        ({"timeout": 0.0}, "timeout must be above 0"),
    )
    for options, reason in bad:
        with pytest.raises(ValueError, match=reason):
            PingOptions(**options)  # type: ignore[arg-type]
