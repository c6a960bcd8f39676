import errno
import logging

import pytest
import trio
import trio.testing

from plexinode.net.address import Address
from plexinode.net.transport import MAX_DATAGRAM, SocketTransport


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
async def test_bind_port_zero_gives_one_port_for_udp_and_tcp(host: str) -> None:
    transport = SocketTransport()
    a = await transport.bind(Address(host, 0))
    b = await transport.bind(Address(host, 0))
    try:
        assert a.address.port != 0
        await b.datagrams.sendto(b"hello", a.address)
        data, source = await a.datagrams.recvfrom()
        assert data == b"hello"
        assert source.port == b.address.port
        # Oversized datagrams arrive truncated to MAX_DATAGRAM + 1, so the receiver can tell.
        await b.datagrams.sendto(b"x" * (MAX_DATAGRAM + 100), a.address)
        data, _ = await a.datagrams.recvfrom()
        assert len(data) == MAX_DATAGRAM + 1
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_accept_one, a)
            client = await transport.connect(a.address)
            await client.send_all(b"ping")
            await client.aclose()
    finally:
        await a.aclose()
        await b.aclose()


async def _accept_one(endpoint) -> None:
    stream = await endpoint.listener.accept()
    assert await stream.receive_some(4) == b"ping"
    await stream.aclose()


async def test_binding_a_taken_port_fails() -> None:
    transport = SocketTransport()
    a = await transport.bind(Address("127.0.0.1", 0))
    try:
        with pytest.raises(OSError, match="in use") as info:
            await transport.bind(a.address)
        assert info.value.errno == errno.EADDRINUSE
    finally:
        await a.aclose()


async def test_send_errors_are_swallowed_like_udp(caplog: pytest.LogCaptureFixture) -> None:
    transport = SocketTransport()
    a = await transport.bind(Address("127.0.0.1", 0))
    b = await transport.bind(Address("127.0.0.1", 0))
    try:
        with caplog.at_level(logging.DEBUG, logger="plexinode.net.transport"):
            await a.datagrams.sendto(b"x", Address("::1", 9))  # wrong family: logged, not raised
        assert [r.getMessage() for r in caplog.records if "sendto [::1]:9 failed" in r.getMessage()]
        # The socket is still usable after the failed send.
        await a.datagrams.sendto(b"after", b.address)
        with trio.fail_after(5):
            data, source = await b.datagrams.recvfrom()
        assert (data, source.port) == (b"after", a.address.port)
    finally:
        await a.aclose()
        await b.aclose()


async def test_a_refused_connection_is_reported_as_refused() -> None:
    transport = SocketTransport()
    endpoint = await transport.bind(Address("127.0.0.1", 0))
    port = endpoint.address.port
    await endpoint.aclose()  # nothing listens on the port now
    with pytest.raises(ConnectionRefusedError):
        await transport.connect(Address("127.0.0.1", port))


def test_real_random_choices_come_from_the_os_and_simulated_ones_from_the_seed() -> None:
    """Which member to probe or gossip to must be unpredictable on a real network: the node's
    generators are seeded with its public ID only in simulations, where runs must replay."""
    from plexinode.testing.network import MemoryNetwork

    seed = b"\x01" * 32 + b"/membership"
    real = SocketTransport()
    assert real.rng(seed).getrandbits(128) != real.rng(seed).getrandbits(128)
    simulated = MemoryNetwork(seed=1).transport("10.0.0.1")
    assert simulated.rng(seed).getrandbits(128) == simulated.rng(seed).getrandbits(128)


async def test_a_wakeup_reads_a_batch_of_ready_datagrams_then_yields() -> None:
    """Datagrams already in the kernel are read a batch at a time: within a batch, no pass
    through the scheduler per datagram; between batches, one."""
    receiver = await SocketTransport(receive_batch=4).bind(Address("127.0.0.1", 0))
    sender = await SocketTransport().bind(Address("127.0.0.1", 0))
    try:
        for i in range(10):
            await sender.datagrams.sendto(b"%d" % i, receiver.address)
        got = []
        for i in range(10):
            if i % 4 == 0:
                with trio.testing.assert_checkpoints():
                    data, source = await receiver.datagrams.recvfrom()
            else:
                with trio.testing.assert_no_checkpoints():
                    data, source = await receiver.datagrams.recvfrom()
            assert source == sender.address
            got.append(data)
        assert got == [b"%d" % i for i in range(10)]
        # With nothing ready, the reader waits for the next datagram.
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sender.datagrams.sendto, b"late", receiver.address)
            with trio.fail_after(5):
                assert (await receiver.datagrams.recvfrom())[0] == b"late"
    finally:
        await receiver.aclose()
        await sender.aclose()


async def test_the_receive_buffer_asked_for_and_granted_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="plexinode.net.transport"):
        endpoint = await SocketTransport(receive_buffer=1 << 20).bind(Address("127.0.0.1", 0))
        await endpoint.aclose()
        asked = [r.getMessage() for r in caplog.records if "receive buffer" in r.getMessage()]
        assert len(asked) == 1
        assert "asked for 1048576 bytes, the kernel reports" in asked[0]
        caplog.clear()
        endpoint = await SocketTransport(receive_buffer=0).bind(Address("127.0.0.1", 0))
        await endpoint.aclose()
        assert not [r for r in caplog.records if "receive buffer" in r.getMessage()]


def test_a_batch_is_at_least_one_datagram() -> None:
    with pytest.raises(ValueError, match="receive_batch"):
        SocketTransport(receive_batch=0)
