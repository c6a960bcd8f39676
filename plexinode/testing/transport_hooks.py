"""Hooks around what one node's transport does: count its traffic, or stall it.

A hooked transport (:func:`starve`, :func:`meter`, :func:`share_core`) calls a
:class:`TransportHooks` around each datagram, each stream read or write and each connection of
one node, and waits for the hook to return: :class:`Meter` counts what the node sends,
:class:`Starvation` holds everything up while the node's event loop is stalled,
:class:`SharedCore` makes nodes share one CPU core.
"""

from __future__ import annotations

import random
from typing import Protocol

import trio
import trio.testing

from plexinode.net.address import Address
from plexinode.net.transport import DatagramSocket, Endpoint, Transport
from plexinode.testing.wrapping import WrappedEndpoint


class Starvation:
    """When a node's event loop stalls (CPU starvation, a long GC pause, a swapped-out
    process): stalls of up to `longest` seconds at random, every `every` seconds on average,
    drawn from `rng`. During a stall nothing the node sends leaves (datagrams, stream bytes,
    connections) and nothing sent to it is read; both happen when the stall ends, as with a
    real stalled process. `stalls` counts the stalls that held up at least one of them."""

    def __init__(self, rng: random.Random, longest: float = 2.0, every: float = 15.0) -> None:
        self.rng = rng
        self.longest = longest
        self.every = every
        self.stalls = 0
        self._start = rng.expovariate(1 / every)
        self._end = self._start + rng.uniform(0.1, longest)
        self._counted = -1.0

    async def wait(self) -> None:
        now = trio.current_time()
        while now >= self._end:
            self._start = self._end + self.rng.expovariate(1 / self.every)
            self._end = self._start + self.rng.uniform(0.1, self.longest)
        if now >= self._start:
            if self._counted != self._start:
                self._counted = self._start
                self.stalls += 1
            await trio.sleep_until(self._end)

    async def datagram_out(self, size: int) -> None:
        await self.wait()

    async def datagram_in(self, size: int) -> None:
        await self.wait()

    async def stream_out(self, size: int) -> None:
        await self.wait()

    async def stream_in(self, size: int) -> None:
        await self.wait()

    async def connecting(self) -> None:
        await self.wait()


class SharedCore:
    """Nodes sharing one CPU core (many nodes in one process, or a node whose core a flood
    saturates): every datagram a node sends or receives costs `cost` seconds of the core, and
    while the core works no timer of anyone fires. Simulated by jumping trio's MockClock by
    `cost` per datagram: with ``cost * datagrams per second`` near 1 the core is saturated,
    every timer wakes late and replies queue up, as in a real starved event loop.
    `busy` is the core time used so far."""

    def __init__(self, clock: trio.testing.MockClock, cost: float) -> None:
        self.clock = clock
        self.cost = cost
        self.busy = 0.0

    async def _work(self) -> None:
        self.busy += self.cost
        self.clock.jump(self.cost)

    async def datagram_out(self, size: int) -> None:
        await self._work()

    async def datagram_in(self, size: int) -> None:
        await self._work()

    async def stream_out(self, size: int) -> None:
        return None

    async def stream_in(self, size: int) -> None:
        return None

    async def connecting(self) -> None:
        await self._work()


class TransportHooks(Protocol):
    """What a hooked transport calls around each datagram, stream read or write, and
    connection of one node."""

    async def datagram_out(self, size: int) -> None: ...

    async def datagram_in(self, size: int) -> None: ...

    async def stream_out(self, size: int) -> None: ...

    async def stream_in(self, size: int) -> None: ...

    async def connecting(self) -> None: ...


class Meter:
    """Counts what a node sends: datagrams and their bytes, and bytes written to its streams."""

    def __init__(self) -> None:
        self.datagrams = 0
        self.datagram_bytes = 0
        self.stream_bytes = 0

    async def datagram_out(self, size: int) -> None:
        self.datagrams += 1
        self.datagram_bytes += size

    async def datagram_in(self, size: int) -> None:
        pass

    async def stream_out(self, size: int) -> None:
        self.stream_bytes += size

    async def stream_in(self, size: int) -> None:
        pass

    async def connecting(self) -> None:
        pass


class _HookedSocket:
    def __init__(self, inner: DatagramSocket, hooks: TransportHooks) -> None:
        self._inner = inner
        self._hooks = hooks

    async def sendto(self, data: bytes, address: Address) -> None:
        await self._hooks.datagram_out(len(data))
        await self._inner.sendto(data, address)

    async def recvfrom(self) -> tuple[bytes, Address]:
        received = await self._inner.recvfrom()
        await self._hooks.datagram_in(len(received[0]))
        return received

    def close(self) -> None:
        self._inner.close()


class _HookedStream(trio.abc.HalfCloseableStream):
    def __init__(self, inner: trio.abc.Stream, hooks: TransportHooks) -> None:
        self._inner = inner
        self._hooks = hooks

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._hooks.stream_out(len(data))
        await self._inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        data = await self._inner.receive_some(max_bytes)
        await self._hooks.stream_in(len(data))
        return data

    async def send_eof(self) -> None:
        if isinstance(self._inner, trio.abc.HalfCloseableStream):
            await self._inner.send_eof()

    async def aclose(self) -> None:
        await self._inner.aclose()


class _HookedListener(trio.abc.Listener[trio.abc.Stream]):
    def __init__(self, inner: trio.abc.Listener[trio.abc.Stream], hooks: TransportHooks) -> None:
        self._inner = inner
        self._hooks = hooks

    async def accept(self) -> trio.abc.Stream:
        stream = await self._inner.accept()
        await self._hooks.stream_in(0)
        return _HookedStream(stream, self._hooks)

    async def aclose(self) -> None:
        await self._inner.aclose()


class _HookedTransport:
    def __init__(self, inner: Transport, hooks: TransportHooks) -> None:
        self._inner = inner
        self._hooks = hooks

    async def bind(self, address: Address) -> Endpoint:
        endpoint = await self._inner.bind(address)
        return WrappedEndpoint(
            endpoint,
            _HookedSocket(endpoint.datagrams, self._hooks),
            _HookedListener(endpoint.listener, self._hooks),
        )

    def rng(self, seed: bytes) -> random.Random:
        return self._inner.rng(seed)

    async def connect(self, address: Address) -> trio.abc.Stream:
        await self._hooks.connecting()
        return _HookedStream(await self._inner.connect(address), self._hooks)


def starve(inner: Transport, starvation: Starvation) -> Transport:
    """`inner`, its datagrams, connections and stream bytes waiting out the stalls of
    `starvation`."""
    return _HookedTransport(inner, starvation)


def meter(inner: Transport, counts: Meter) -> Transport:
    """`inner`, with what it sends counted in `counts`."""
    return _HookedTransport(inner, counts)


def share_core(inner: Transport, core: SharedCore) -> Transport:
    """`inner`, its datagrams and connections costing time on `core`."""
    return _HookedTransport(inner, core)
