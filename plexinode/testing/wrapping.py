"""Transports wrapped to watch, delay or alter what one node sends and receives.

:class:`DatagramWrappingTransport` passes every datagram socket a node binds through a function
(the fuzz capture is one); :class:`WrappedEndpoint` is the endpoint such wrappers return, with its
datagram socket (and, if given, its listener) replaced, which the transport hooks build on too.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import trio

from plexinode.net.address import Address
from plexinode.net.transport import DatagramSocket, Endpoint, Transport


class WrappedEndpoint:
    """`inner` with its datagram socket (and, if given, its listener) replaced."""

    def __init__(
        self,
        inner: Endpoint,
        datagrams: DatagramSocket,
        listener: trio.abc.Listener[trio.abc.Stream] | None = None,
    ) -> None:
        self._inner = inner
        self._datagrams = datagrams
        self._listener = inner.listener if listener is None else listener

    @property
    def address(self) -> Address:
        return self._inner.address

    @property
    def datagrams(self) -> DatagramSocket:
        return self._datagrams

    @property
    def listener(self) -> trio.abc.Listener[trio.abc.Stream]:
        return self._listener

    async def aclose(self) -> None:
        await self._inner.aclose()


class DatagramWrappingTransport:
    """A transport whose endpoints' datagram sockets pass through ``wrap(socket)`` (to watch,
    delay or alter the datagrams of one node); streams are untouched."""

    def __init__(self, inner: Transport, wrap: Callable[[DatagramSocket], DatagramSocket]) -> None:
        self._inner = inner
        self._wrap = wrap

    async def bind(self, address: Address) -> Endpoint:
        endpoint = await self._inner.bind(address)
        return WrappedEndpoint(endpoint, self._wrap(endpoint.datagrams))

    def rng(self, seed: bytes) -> random.Random:
        return self._inner.rng(seed)

    async def connect(self, address: Address) -> trio.abc.Stream:
        return await self._inner.connect(address)
