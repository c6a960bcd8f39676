"""Tests of the in-memory network: datagrams, determinism, faults, streams and closing.

Every test runs on trio's MockClock (the ``autojump_clock`` fixture, or ``trio.run`` with a
``MockClock`` for hypothesis and for runs compared with each other), so sleeps are free and
timings are exact.
"""

from __future__ import annotations

import dataclasses
import errno
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.lowlevel
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from plexinode.net.address import Address
from plexinode.net.transport import MAX_DATAGRAM
from plexinode.testing.datagrams import DEFAULT_QUEUE_SIZE, MemoryEndpoint
from plexinode.testing.network import (
    FIRST_EPHEMERAL_PORT,
    LinkConditions,
    MemoryNetwork,
    MemoryTransport,
    open_memory_network,
)
from plexinode.testing.scheduling import replayable_scheduling
from plexinode.testing.streams import MemoryStream

ANY = Address("0.0.0.0", 0)


async def new_endpoint(net: MemoryNetwork) -> tuple[MemoryTransport, MemoryEndpoint]:
    transport = net.transport(net.new_host())
    return transport, await transport.bind(ANY)


async def connected_pair(
    client: MemoryTransport, endpoint: MemoryEndpoint
) -> tuple[MemoryStream, MemoryStream]:
    stream = await client.connect(endpoint.address)
    return stream, await endpoint.listener.accept()


async def receive_all(endpoint: MemoryEndpoint) -> list[bytes]:
    """Everything already queued at `endpoint` (waits until nothing arrives for 1 s)."""
    payloads = []
    while True:
        with trio.move_on_after(1):
            payload, _ = await endpoint.datagrams.recvfrom()
            payloads.append(payload)
            continue
        return payloads


def accounted(net: MemoryNetwork) -> bool:
    stats = net.stats
    return stats.sent + stats.duplicated == stats.delivered + stats.dropped + net.in_flight


async def raises(exc_type: type[BaseException], afn: Callable[[], Awaitable[object]]) -> None:
    with pytest.raises(exc_type):
        await afn()


# ---- hosts, binding ------------------------------------------------------------------------------


async def test_new_host_allocates_sequential_addresses() -> None:
    async with open_memory_network(0) as net:
        net.transport("10.0.0.2")  # taken by hand: new_host skips it
        assert [net.new_host() for _ in range(3)] == ["10.0.0.1", "10.0.0.3", "10.0.0.4"]
        for _ in range(250):
            host = net.new_host()
            assert not host.endswith((".0", ".255"))
        assert net.new_host() == "10.0.1.1"  # after 10.0.0.254


async def test_bind_port_zero_allocates_sequential_ports() -> None:
    async with open_memory_network(0) as net:
        transport = net.transport("alice")
        first = await transport.bind(ANY)
        second = await transport.bind(Address("alice", 0))
        assert first.address == Address("alice", FIRST_EPHEMERAL_PORT)
        assert second.address == Address("alice", FIRST_EPHEMERAL_PORT + 1)
        # Ports are per host; an explicit port in the ephemeral range is skipped by port 0.
        assert (await net.transport("bob").bind(ANY)).address.port == FIRST_EPHEMERAL_PORT
        await transport.bind(Address("alice", FIRST_EPHEMERAL_PORT + 2))
        assert (await transport.bind(ANY)).address.port == FIRST_EPHEMERAL_PORT + 3


async def test_bind_taken_port_raises_eaddrinuse_until_both_sockets_close() -> None:
    async with open_memory_network(0) as net:
        transport = net.transport("alice")
        endpoint = await transport.bind(Address("0.0.0.0", 7420))
        assert endpoint.address == Address("alice", 7420)
        with pytest.raises(OSError, match="in use") as info:
            await transport.bind(Address("alice", 7420))
        assert info.value.errno == errno.EADDRINUSE
        endpoint.datagrams.close()
        with pytest.raises(OSError, match="in use"):
            await transport.bind(Address("alice", 7420))
        await endpoint.listener.aclose()
        assert (await transport.bind(Address("alice", 7420))).address.port == 7420


async def test_bind_rejects_other_hosts_addresses_and_bad_ports() -> None:
    async with open_memory_network(0) as net:
        transport = net.transport("alice")
        with pytest.raises(OSError, match="alice") as info:
            await transport.bind(Address("bob", 1))
        assert info.value.errno == errno.EADDRNOTAVAIL
        with pytest.raises(ValueError, match="port"):
            await transport.bind(Address("alice", 70000))
        with pytest.raises(ValueError, match="host address"):
            net.transport("0.0.0.0")


# ---- datagrams -----------------------------------------------------------------------------------


async def test_datagram_arrives_with_the_senders_bound_address() -> None:
    async with open_memory_network(0) as net:
        _, alice = await new_endpoint(net)
        _, bob = await new_endpoint(net)
        await alice.datagrams.sendto(b"hello", bob.address)
        await alice.datagrams.sendto(bytearray(b"again"), bob.address)
        assert await bob.datagrams.recvfrom() == (b"hello", alice.address)
        payload, source = await bob.datagrams.recvfrom()
        assert (payload, type(payload), source) == (b"again", bytes, alice.address)
        assert dataclasses.asdict(net.stats) == dataclasses.asdict(type(net.stats)(2, 0, 2))


async def test_latency_delays_delivery_exactly(autojump_clock: trio.testing.MockClock) -> None:
    async with open_memory_network(0, latency=0.25) as net:
        _, alice = await new_endpoint(net)
        _, bob = await new_endpoint(net)
        start = trio.current_time()
        await alice.datagrams.sendto(b"x", bob.address)
        assert net.in_flight == 1
        await bob.datagrams.recvfrom()
        assert trio.current_time() - start == pytest.approx(0.25)
        assert net.in_flight == 0


async def test_jitter_reorders_within_its_window(autojump_clock: trio.testing.MockClock) -> None:
    async with open_memory_network(5, latency=0.1, jitter=0.05) as net:
        _, alice = await new_endpoint(net)
        _, bob = await new_endpoint(net)
        start = trio.current_time()
        for i in range(50):
            await alice.datagrams.sendto(bytes([i]), bob.address)
        arrivals = []
        for _ in range(50):
            payload, _ = await bob.datagrams.recvfrom()
            arrivals.append((payload[0], trio.current_time() - start))
        order = [i for i, _ in arrivals]
        assert sorted(order) == list(range(50))
        assert order != sorted(order)
        assert all(0.1 <= delay <= 0.15 + 1e-9 for _, delay in arrivals)


async def test_earlier_due_datagram_is_never_overtaken_by_an_immediate_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The clock jumps past the slow datagram's due time without letting the delivery task run;
    # the sender and the delivery task then become runnable together, in an order trio picks at
    # random. Whichever runs first, the datagram due earlier must be queued first.
    async with open_memory_network(0) as net:
        _, slow = await new_endpoint(net)
        _, fast = await new_endpoint(net)
        _, sink = await new_endpoint(net)
        net.set_link(slow.address.host, sink.address.host, latency=0.1)
        for _ in range(30):
            await slow.datagrams.sendto(b"slow", sink.address)
            autojump_clock.jump(0.1)
            await fast.datagrams.sendto(b"fast", sink.address)
            assert [(await sink.datagrams.recvfrom())[0] for _ in range(2)] == [b"slow", b"fast"]


async def test_loss_rate_is_close_to_configured() -> None:
    async with open_memory_network(1234, loss=0.2, queue_size=10_000) as net:
        _, alice = await new_endpoint(net)
        _, bob = await new_endpoint(net)
        for _ in range(5000):
            await alice.datagrams.sendto(b"x", bob.address)
        assert 0.17 <= net.stats.dropped_loss / 5000 <= 0.23
        assert net.stats.delivered + net.stats.dropped_loss == 5000


async def test_duplicates_arrive_twice() -> None:
    async with open_memory_network(3, duplicate=0.5, queue_size=10_000) as net:
        _, alice = await new_endpoint(net)
        _, bob = await new_endpoint(net)
        for _ in range(1000):
            await alice.datagrams.sendto(b"x", bob.address)
        assert 400 <= net.stats.duplicated <= 600
        assert net.stats.delivered == 1000 + net.stats.duplicated


def run_lossy_scenario(seed: int) -> tuple[list[tuple[bytes, Address]], dict[str, int]]:
    """Two senders, loss, duplication and jitter; returns what arrived, in order, and stats."""
    received: list[tuple[bytes, Address]] = []

    async def main() -> dict[str, int]:
        async with open_memory_network(
            seed, latency=0.05, jitter=0.05, loss=0.1, duplicate=0.05, queue_size=8
        ) as net:
            senders = [(await new_endpoint(net))[1] for _ in range(2)]
            _, sink = await new_endpoint(net)

            async def receive() -> None:
                while True:
                    received.append(await sink.datagrams.recvfrom())
                    if len(received) % 7 == 0:
                        await trio.sleep(0.03)  # fall behind sometimes: the queue overflows

            async with trio.open_nursery() as nursery:
                nursery.start_soon(receive)
                for i in range(300):
                    await senders[i % 2].datagrams.sendto(i.to_bytes(2, "big"), sink.address)
                    if i % 10 == 0:
                        await trio.sleep(0.01)
                await trio.sleep(5)
                nursery.cancel_scope.cancel()
            return dataclasses.asdict(net.stats)

    stats = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return received, stats


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_same_seed_gives_same_deliveries_and_drops(seed: int) -> None:
    received, stats = run_lossy_scenario(seed)
    assert stats["dropped_loss"] > 0
    assert stats["dropped_full"] > 0
    assert stats["duplicated"] > 0
    assert run_lossy_scenario(seed) == (received, stats)
    assert run_lossy_scenario(seed + 100)[0] != received


def test_simulations_may_share_the_network_rng() -> None:
    first, second = MemoryNetwork(9), MemoryNetwork(9)
    assert first.rng.random() == second.rng.random()


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    conditions=st.builds(
        LinkConditions,
        latency=st.sampled_from([0.0, 0.01, 0.1]),
        jitter=st.sampled_from([0.0, 0.05]),
        loss=st.floats(0, 1),
        duplicate=st.floats(0, 1),
    ),
    queue_size=st.integers(1, 4),
    sends=st.lists(
        st.tuples(
            st.integers(0, 2),  # sender
            st.integers(0, 3),  # destination; 3 is an unbound address
            st.sampled_from([0, 1, MAX_DATAGRAM, MAX_DATAGRAM + 1]),
            st.sampled_from(["send", "pause", "partition", "heal", "crash"]),
        ),
        max_size=40,
    ),
)
def test_every_datagram_is_accounted_for(
    seed: int,
    conditions: LinkConditions,
    queue_size: int,
    sends: list[tuple[int, int, int, str]],
) -> None:
    async def main() -> None:
        async with open_memory_network(
            seed, **dataclasses.asdict(conditions), queue_size=queue_size
        ) as net:
            transports = [net.transport(net.new_host()) for _ in range(3)]
            endpoints = [await transport.bind(ANY) for transport in transports]
            targets = [endpoint.address for endpoint in endpoints] + [Address("10.9.9.9", 9)]
            for src, dst, size, action in sends:
                if action == "pause":
                    await trio.sleep(0.02)
                elif action == "partition" and src != dst:
                    net.partition([targets[src].host], [targets[dst].host])
                elif action == "heal":
                    net.heal()
                elif action == "crash" and src == 2:
                    net.crash(transports[2].host)
                    endpoints[2] = await transports[2].bind(targets[2])
                await endpoints[src].datagrams.sendto(b"x" * size, targets[dst])
                assert accounted(net)
            await trio.sleep(1)
            assert net.in_flight == 0
            assert accounted(net)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


async def test_partition_drops_both_directions_until_healed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_memory_network(0, latency=0.01) as net:
        _, a = await new_endpoint(net)
        _, b = await new_endpoint(net)
        _, c = await new_endpoint(net)
        net.partition([a.address.host, b.address.host], [c.address.host])
        assert net.is_blocked(c.address.host, a.address.host)
        await a.datagrams.sendto(b"a->c", c.address)
        await c.datagrams.sendto(b"c->b", b.address)
        await a.datagrams.sendto(b"a->b", b.address)
        assert await receive_all(b) == [b"a->b"]
        assert await receive_all(c) == []
        assert net.stats.dropped_partition == 2
        net.heal()
        await a.datagrams.sendto(b"a->c", c.address)
        await c.datagrams.sendto(b"c->b", b.address)
        assert await receive_all(c) == [b"a->c"]
        assert await receive_all(b) == [b"c->b"]


async def test_partition_validates_groups() -> None:
    net = MemoryNetwork(0)
    with pytest.raises(ValueError, match="two groups"):
        net.partition(["a"])
    with pytest.raises(ValueError, match="two groups"):
        net.partition(["a", "b"], ["b"])


async def test_block_is_directional() -> None:
    async with open_memory_network(0) as net:
        _, inside = await new_endpoint(net)
        _, outside = await new_endpoint(net)
        net.block(outside.address.host, inside.address.host)  # e.g. inbound UDP blocked
        await outside.datagrams.sendto(b"in", inside.address)
        await inside.datagrams.sendto(b"out", outside.address)
        assert await outside.datagrams.recvfrom() == (b"out", inside.address)
        assert net.stats.dropped_partition == 1
        net.heal()  # heal lifts partitions only
        await outside.datagrams.sendto(b"in", inside.address)
        assert net.stats.dropped_partition == 2
        net.unblock(outside.address.host, inside.address.host)
        await outside.datagrams.sendto(b"in", inside.address)
        assert await inside.datagrams.recvfrom() == (b"in", outside.address)


async def test_set_link_overrides_one_direction(autojump_clock: trio.testing.MockClock) -> None:
    async with open_memory_network(0, latency=0.1) as net:
        _, a = await new_endpoint(net)
        _, b = await new_endpoint(net)
        net.set_link(a.address.host, b.address.host, latency=0.5)
        net.set_link(a.address.host, b.address.host, loss=1.0)  # keeps latency=0.5
        assert net.link(a.address.host, b.address.host) == LinkConditions(0.5, 0, 1.0)
        assert net.link(b.address.host, a.address.host) == LinkConditions(0.1)
        start = trio.current_time()
        await b.datagrams.sendto(b"b->a", a.address)
        await a.datagrams.recvfrom()
        assert trio.current_time() - start == pytest.approx(0.1)
        await a.datagrams.sendto(b"a->b", b.address)
        assert net.stats.dropped_loss == 1
        net.clear_link(a.address.host, b.address.host)
        assert net.link(a.address.host, b.address.host) == LinkConditions(0.1)


def test_link_conditions_are_validated() -> None:
    with pytest.raises(ValueError, match="latency"):
        LinkConditions(latency=-1)
    with pytest.raises(ValueError, match="jitter"):
        LinkConditions(jitter=float("inf"))
    with pytest.raises(ValueError, match="loss"):
        LinkConditions(loss=1.5)
    with pytest.raises(ValueError, match="queue_size"):
        MemoryNetwork(0, queue_size=0)


async def test_oversize_datagram_is_dropped_on_send() -> None:
    async with open_memory_network(0) as net:
        _, a = await new_endpoint(net)
        _, b = await new_endpoint(net)
        await a.datagrams.sendto(b"x" * (MAX_DATAGRAM + 1), b.address)
        await a.datagrams.sendto(b"y" * MAX_DATAGRAM, b.address)
        assert (await b.datagrams.recvfrom())[0] == b"y" * MAX_DATAGRAM
        assert (net.stats.dropped_oversize, net.stats.delivered) == (1, 1)


async def test_full_queue_drops_new_datagrams() -> None:
    async with open_memory_network(0, queue_size=4) as net:
        _, a = await new_endpoint(net)
        _, b = await new_endpoint(net)
        for i in range(10):
            await a.datagrams.sendto(bytes([i]), b.address)
        assert (net.stats.delivered, net.stats.dropped_full) == (4, 6)
        assert [(await b.datagrams.recvfrom())[0] for _ in range(4)] == [
            bytes([i]) for i in range(4)
        ]
        assert DEFAULT_QUEUE_SIZE == 256


async def test_datagram_to_unbound_address_is_dropped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_memory_network(0, latency=0.1) as net:
        _, a = await new_endpoint(net)
        _, b = await new_endpoint(net)
        await a.datagrams.sendto(b"x", Address(b.address.host, b.address.port + 1))
        await a.datagrams.sendto(b"x", Address("nowhere", 1))
        await a.datagrams.sendto(b"x", b.address)
        await b.aclose()  # closed while the datagram is in flight
        await trio.sleep(1)
        assert net.stats.dropped_unbound == 3


async def test_delayed_datagrams_need_the_delivery_task() -> None:
    net = MemoryNetwork(0)
    a = await net.transport("a").bind(ANY)
    b = await net.transport("b").bind(ANY)
    await a.datagrams.sendto(b"now", b.address)  # zero delay: no task needed
    assert await b.datagrams.recvfrom() == (b"now", a.address)
    net.set_link("a", "b", latency=1)
    with pytest.raises(RuntimeError, match="open_memory_network"):
        await a.datagrams.sendto(b"later", b.address)
    async with trio.open_nursery() as nursery:
        await nursery.start(net.run)
        with pytest.raises(RuntimeError, match="already running"):
            await net.run()
        nursery.cancel_scope.cancel()


# ---- streams -------------------------------------------------------------------------------------


async def test_stream_round_trip_after_connect_latency(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_memory_network(0, latency=0.1) as net:
        client, _ = await new_endpoint(net)
        _, server = await new_endpoint(net)
        net.set_link(client.host, server.address.host, latency=0.3)
        start = trio.current_time()
        stream = await client.connect(server.address)
        assert trio.current_time() - start == pytest.approx(0.4)  # there and back
        accepted = await server.listener.accept()
        assert stream.remote_address == server.address == accepted.local_address
        assert accepted.remote_address == stream.local_address
        assert stream.local_address.host == client.host
        await stream.send_all(b"ping")
        assert await accepted.receive_some() == b"ping"
        await accepted.send_all(b"pong" * 3)
        assert await stream.receive_some(5) == b"pongp"
        assert await stream.receive_some() == b"ongpong"


async def test_stream_conforms_to_trio_half_closeable_stream(
    autojump_clock: trio.testing.MockClock,
) -> None:
    buffer = 1000
    async with open_memory_network(0, stream_buffer=buffer) as net:
        client, _ = await new_endpoint(net)
        _, server = await new_endpoint(net)

        async def make_pair() -> tuple[MemoryStream, MemoryStream]:
            return await connected_pair(client, server)

        async def make_clogged_pair() -> tuple[MemoryStream, MemoryStream]:
            one, two = await make_pair()
            await one.send_all(b"\0" * buffer)
            await two.send_all(b"\0" * buffer)
            return one, two

        await trio.testing.check_half_closeable_stream(make_pair, make_clogged_pair)


async def test_writer_blocks_while_reader_does_not_read(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_memory_network(0, stream_buffer=1024) as net:
        client, _ = await new_endpoint(net)
        _, server = await new_endpoint(net)
        stream, accepted = await connected_pair(client, server)
        done = trio.Event()

        async def write() -> None:
            await stream.send_all(b"x" * 5000)
            done.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(write)
            await trio.testing.wait_all_tasks_blocked()
            assert not done.is_set()
            assert await accepted.receive_some() == b"x" * 1024  # exactly one buffer
            received = 1024
            while received < 5000:
                received += len(await accepted.receive_some(700))
            await trio.testing.wait_all_tasks_blocked()
            assert done.is_set()


async def test_accept_waits_for_the_next_connection(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_memory_network(0, latency=0.1) as net:
        client, _ = await new_endpoint(net)
        _, server = await new_endpoint(net)
        assert client.network is net
        accepted: list[MemoryStream] = []

        async def serve() -> None:
            accepted.append(await server.listener.accept())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve)
            await trio.testing.wait_all_tasks_blocked()
            stream = await client.connect(server.address)
        assert accepted[0].remote_address == stream.local_address


async def test_send_eof_on_closed_or_reset_streams() -> None:
    async with open_memory_network(0) as net:
        client, _ = await new_endpoint(net)
        server_transport, server = await new_endpoint(net)
        stream, accepted = await connected_pair(client, server)
        await stream.aclose()
        with pytest.raises(trio.ClosedResourceError):
            await stream.send_eof()
        net.crash(server_transport.host)
        with pytest.raises(trio.BrokenResourceError):
            await accepted.send_eof()


async def test_connect_to_unbound_port_is_refused_after_round_trip(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_memory_network(0, latency=0.1) as net:
        client, _ = await new_endpoint(net)
        _, server = await new_endpoint(net)
        start = trio.current_time()
        with pytest.raises(ConnectionRefusedError) as info:
            await client.connect(Address(server.address.host, 1))
        assert info.value.errno == errno.ECONNREFUSED
        assert trio.current_time() - start == pytest.approx(0.2)
        with pytest.raises(OSError, match="no route") as unknown:
            await client.connect(Address("nowhere", 1))
        assert unknown.value.errno == errno.EHOSTUNREACH


async def test_connect_refused_when_backlog_is_full() -> None:
    async with open_memory_network(0, backlog=2) as net:
        client, _ = await new_endpoint(net)
        _, server = await new_endpoint(net)
        await client.connect(server.address)
        await client.connect(server.address)
        with pytest.raises(ConnectionRefusedError):
            await client.connect(server.address)
        await server.listener.accept()
        await client.connect(server.address)


async def test_partition_makes_hosts_unreachable_and_resets_streams(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_memory_network(0, latency=0.1) as net:
        client, _ = await new_endpoint(net)
        _, server = await new_endpoint(net)
        stream, accepted = await connected_pair(client, server)
        await stream.send_all(b"lost")
        net.partition([client.host], [server.address.host])
        with pytest.raises(trio.BrokenResourceError):
            await accepted.receive_some()
        with pytest.raises(trio.BrokenResourceError):
            await stream.send_all(b"x")
        start = trio.current_time()
        with pytest.raises(OSError, match="no route") as info:
            await client.connect(server.address)
        assert info.value.errno == errno.EHOSTUNREACH
        assert trio.current_time() - start == pytest.approx(0.1)  # the way there only
        net.heal()
        stream, accepted = await connected_pair(client, server)
        await stream.send_all(b"back")
        assert await accepted.receive_some() == b"back"


async def test_block_follows_a_stateful_firewall_for_streams() -> None:
    async with open_memory_network(0) as net:
        inside, inside_endpoint = await new_endpoint(net)
        outside, outside_endpoint = await new_endpoint(net)
        outbound, _ = await connected_pair(inside, outside_endpoint)
        inbound, _ = await connected_pair(outside, inside_endpoint)
        net.block(outside.host, inside.host)
        with pytest.raises(OSError, match="no route"):
            await outside.connect(inside_endpoint.address)
        with pytest.raises(trio.BrokenResourceError):
            await inbound.send_all(b"x")
        # The inside host still connects out and gets replies over the connection.
        await outbound.send_all(b"still up")
        stream, accepted = await connected_pair(inside, outside_endpoint)
        await accepted.send_all(b"reply")
        assert await stream.receive_some() == b"reply"


async def test_crash_breaks_streams_and_closes_sockets(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_memory_network(0, latency=0.1) as net:
        client, client_endpoint = await new_endpoint(net)
        victim, endpoint = await new_endpoint(net)
        stream, accepted = await connected_pair(client, endpoint)
        await stream.send_all(b"unread")
        await client_endpoint.datagrams.sendto(b"in flight", endpoint.address)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(raises, trio.ClosedResourceError, endpoint.datagrams.recvfrom)
            nursery.start_soon(raises, trio.ClosedResourceError, endpoint.listener.accept)
            nursery.start_soon(raises, trio.BrokenResourceError, stream.receive_some)
            await trio.testing.wait_all_tasks_blocked()
            net.crash(victim.host)
        with pytest.raises(trio.BrokenResourceError):
            await stream.send_all(b"x")
        with pytest.raises(trio.BrokenResourceError):
            await accepted.receive_some()
        await trio.sleep(1)
        assert net.stats.dropped_unbound == 1
        # The host restarts: its port is free and it is reachable again.
        restarted = await victim.bind(endpoint.address)
        stream, accepted = await connected_pair(client, restarted)
        await stream.aclose()
        assert await accepted.receive_some() == b""


async def test_crash_during_connect_aborts_it(autojump_clock: trio.testing.MockClock) -> None:
    async with open_memory_network(0, latency=0.1) as net:
        client, _ = await new_endpoint(net)
        _, server = await new_endpoint(net)
        for delay in (0.05, 0.15):  # on the way there, then on the way back
            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    raises, ConnectionAbortedError, lambda: client.connect(server.address)
                )
                await trio.sleep(delay)
                net.crash(client.host)
        accepted = await server.listener.accept()  # the second attempt reached the listener
        with pytest.raises(trio.BrokenResourceError):
            await accepted.receive_some()
        net.crash("never seen")  # unknown hosts are ignored


async def test_cancelled_connect_resets_the_accepted_end(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_memory_network(0, latency=0.1) as net:
        client, _ = await new_endpoint(net)
        _, server = await new_endpoint(net)
        with trio.move_on_after(0.15):
            await client.connect(server.address)
        accepted = await server.listener.accept()
        with pytest.raises(trio.BrokenResourceError):
            await accepted.send_all(b"x")


async def test_closing_an_endpoint_wakes_its_waiters_and_frees_the_port() -> None:
    async with open_memory_network(0) as net:
        client, client_endpoint = await new_endpoint(net)
        server_transport, endpoint = await new_endpoint(net)
        established, accepted = await connected_pair(client, endpoint)
        other_endpoint = await server_transport.bind(ANY)
        unaccepted = await client.connect(other_endpoint.address)
        await other_endpoint.listener.aclose()
        with pytest.raises(trio.BrokenResourceError):
            await unaccepted.receive_some()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(raises, trio.ClosedResourceError, endpoint.datagrams.recvfrom)
            nursery.start_soon(raises, trio.ClosedResourceError, endpoint.listener.accept)
            await trio.testing.wait_all_tasks_blocked()
            await endpoint.aclose()
        with pytest.raises(trio.ClosedResourceError):
            await endpoint.datagrams.recvfrom()
        with pytest.raises(trio.ClosedResourceError):
            await endpoint.listener.accept()
        with pytest.raises(trio.ClosedResourceError):
            await endpoint.datagrams.sendto(b"x", client_endpoint.address)
        endpoint.datagrams.close()  # closing twice is fine
        await endpoint.listener.aclose()
        # Accepted streams outlive the listener, as with TCP.
        await established.send_all(b"still")
        assert await accepted.receive_some() == b"still"
        await client_endpoint.datagrams.sendto(b"x", endpoint.address)
        assert net.stats.dropped_unbound == 1
        assert (await server_transport.bind(endpoint.address)).address == endpoint.address


async def test_closing_a_stream_ends_the_peers_reads_after_the_data() -> None:
    async with open_memory_network(0) as net:
        client, _ = await new_endpoint(net)
        _, server = await new_endpoint(net)
        stream, accepted = await connected_pair(client, server)
        await stream.send_all(b"last words")
        await stream.aclose()
        assert await accepted.receive_some() == b"last words"
        assert await accepted.receive_some() == b""
        with pytest.raises(trio.BrokenResourceError):
            await accepted.send_all(b"anyone?")
        with pytest.raises(trio.ClosedResourceError):
            await stream.receive_some()
        await accepted.aclose()


async def test_leaving_the_network_closes_everything() -> None:
    async with open_memory_network(0) as net:
        transport, endpoint = await new_endpoint(net)
        stream, accepted = await connected_pair(transport, endpoint)
    with pytest.raises(trio.ClosedResourceError):
        await endpoint.datagrams.recvfrom()
    with pytest.raises(trio.BrokenResourceError):
        await stream.receive_some()
    with pytest.raises(trio.ClosedResourceError):
        await transport.bind(ANY)
    with pytest.raises(trio.ClosedResourceError):
        await transport.connect(endpoint.address)
    net.close()  # idempotent
    assert accepted.remote_address == stream.local_address


async def test_errors_leave_the_network_block_unwrapped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cause = KeyError("cause")
    with pytest.raises(ValueError, match="from the block") as info:
        async with open_memory_network(0):
            raise ValueError("from the block") from cause
    assert info.value.__cause__ is cause
    with trio.move_on_after(1) as scope:
        async with open_memory_network(0):
            await trio.sleep_forever()
    assert scope.cancelled_caught


# -- replayable scheduling -----------------------------------------------------------------------


def scheduling_order(seed: int) -> list[int]:
    """The order in which 16 tasks, all runnable at the same instants, get to run."""
    order: list[int] = []

    async def task(index: int) -> None:
        for _ in range(4):
            await trio.lowlevel.checkpoint()
            order.append(index)

    async def main() -> None:
        async with open_memory_network(seed=seed), trio.open_nursery() as nursery:
            for index in range(16):
                nursery.start_soon(task, index)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return order


def test_a_network_seed_fixes_trios_order_among_runnable_tasks() -> None:
    assert replayable_scheduling(1)
    assert scheduling_order(3) == scheduling_order(3)
    # Different seeds give different orders: the order is shuffled, and by the seed.
    assert len({tuple(scheduling_order(seed)) for seed in range(4)}) > 1


def test_a_trio_without_the_scheduler_hook_still_simulates(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(trio._core._run, "_r", None)
    assert not replayable_scheduling(1)
    assert "will not replay" in caplog.text
