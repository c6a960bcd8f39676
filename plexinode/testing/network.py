"""An in-memory network with the interfaces of the real sockets, for deterministic simulation.

:class:`MemoryNetwork` implements :class:`~plexinode.net.transport.Transport`,
:class:`~plexinode.net.transport.Endpoint` and
:class:`~plexinode.net.transport.DatagramSocket` in one process, so that the same node code that
runs on :class:`~plexinode.net.transport.SocketTransport` runs hundreds to thousands of nodes in
one trio run under :class:`trio.testing.MockClock` (design principle 3). Each node gets its own
view with :meth:`MemoryNetwork.transport`, which fixes its host address::

    async with open_memory_network(seed=7, latency=0.02, jitter=0.01, loss=0.01) as net:
        alice = net.transport(net.new_host())
        endpoint = await alice.bind(Address("0.0.0.0", 0))

The network is the part that knows every host: it owns the host records, the link conditions,
partitions and blocks, the one random generator and the delivery of delayed datagrams, and it
creates the pieces below it, which know nothing of it: the bound ports
(:mod:`plexinode.testing.datagrams`) and the stream connections
(:mod:`plexinode.testing.streams`). Trio's own scheduling order is made replayable by
:mod:`plexinode.testing.scheduling`.

Determinism
-----------
:func:`open_memory_network` seeds trio's scheduler from the network's seed (see
:func:`~plexinode.testing.scheduling.replayable_scheduling`). The rest is decided by our own
code, at the moment of a call, in call order:

* All randomness (loss, duplication, jitter) comes from ONE ``random.Random(seed)`` owned by the
  network, drawn synchronously inside ``sendto``. A probability or jitter of zero draws nothing,
  so the outcome depends only on the seed, the configuration and the order of calls.
* Delayed datagrams wait in one heap ordered by ``(deliver_at, seq)``; ``seq`` is a counter, so
  datagrams due at the same instant leave in the order they were sent. ONE background task (see
  :meth:`MemoryNetwork.run`) sleeps until the earliest ``deliver_at`` and delivers everything due.
  It sleeps in a cancel scope whose deadline is moved earlier when an earlier datagram is pushed,
  so there is no task, timer or event per datagram, and under ``MockClock`` time jumps straight
  from one delivery to the next.
* A datagram whose delay is zero is delivered synchronously inside ``sendto`` (no heap, no task
  switch). Before doing so ``sendto`` first delivers every heap entry that is already due, so a
  zero-latency datagram can never overtake one that was due earlier but whose delivery task had
  not been scheduled yet.

Datagrams
---------
``sendto`` decides a datagram's fate in this order, and every datagram ends in exactly one
counter of :class:`NetworkStats`:

1. larger than :data:`~plexinode.net.transport.MAX_DATAGRAM`: ``dropped_oversize``;
2. ``src -> dst`` cut by a partition or a directional block: ``dropped_partition``;
3. lost with the link's ``loss`` probability: ``dropped_loss``;
4. duplicated with the link's ``duplicate`` probability (``duplicated`` counts the extra copy;
   each copy then draws its own delay);
5. delay = ``latency + uniform(0, jitter)``, so jitter only ever adds delay and datagrams sent
   close together can be reordered;
6. on arrival: nothing bound (or closed) at the destination: ``dropped_unbound``; the socket's
   queue full (:data:`~plexinode.testing.datagrams.DEFAULT_QUEUE_SIZE`): ``dropped_full``;
   otherwise ``delivered``.

So ``sent + duplicated == delivered + dropped + in_flight`` at all times. Partitions are checked
when a datagram is sent, not when it arrives: a datagram already on the wire when the partition
starts still arrives, as it would on a real network. Link settings are directional and default to
the network-wide ones given to :func:`open_memory_network`.

Connections
-----------
Latency applies to connection set-up only (the bytes of an established stream arrive with no
delay, see :mod:`plexinode.testing.streams`): ``connect`` takes the forward link latency to reach
the listener (or to fail with ``EHOSTUNREACH`` across a partition or block, or with
``ECONNREFUSED`` after the return latency when nothing listens) and the return latency to
complete.

Blocks follow a stateful firewall: a connection is allowed when its initiator may send to the
acceptor (``block(b, a)`` does not stop ``a`` from connecting to ``b``; replies on an established
connection pass), while datagrams are blocked purely per direction. A partition or block that
forbids an established connection resets it at once (both ends then raise
:class:`trio.BrokenResourceError`); a real network would stall it until a timeout, but a reset
makes the moment of failure deterministic and the recovery paths testable.
:meth:`~MemoryNetwork.heal` lifts partitions but not directional blocks, which usually model a
lasting property of a host (such as a NAT that drops unsolicited inbound datagrams) and are lifted
with :meth:`~MemoryNetwork.unblock`.

Closing and crashing
--------------------
Closing an endpoint closes its socket (a pending ``recvfrom`` raises
:class:`trio.ClosedResourceError`) and its listener (a pending ``accept`` raises the same, and
connections not yet accepted are reset); accepted streams stay open, as with TCP. The port is
free again once both are closed. :meth:`~MemoryNetwork.crash` models a power cut: every endpoint
of the host is closed and every stream touching the host is reset; the host can then bind again
(a restart).

Not modelled: bandwidth, MTU and fragmentation, address translation, loopback addresses, per-write
stream latency, and stalls. Everything per socket is lazy and slotted (no task per socket, a
stream's parking lots are made on first wait): a host with one bound endpoint costs about 2.4 KB,
most of it the datagram channel, so 10,000 nodes fit in one process.
"""

from __future__ import annotations

import dataclasses
import errno
import heapq
import ipaddress
import logging
import math
import random
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from plexinode.net.address import Address
from plexinode.net.transport import MAX_DATAGRAM
from plexinode.testing.datagrams import DEFAULT_QUEUE_SIZE, MemoryEndpoint, SendDatagram
from plexinode.testing.scheduling import replayable_scheduling, sleep_or_checkpoint
from plexinode.testing.streams import (
    DEFAULT_BACKLOG,
    DEFAULT_STREAM_BUFFER,
    MemoryStream,
    StreamConnection,
)

if TYPE_CHECKING:
    from plexinode.net.transport import Endpoint, Transport

log = logging.getLogger(__name__)

#: ``bind`` with port 0 allocates from the IANA dynamic range (49152-65535), lowest free port after
#: the previous allocation, wrapping around: deterministic, and ports are not reused immediately.
FIRST_EPHEMERAL_PORT: int = 49152
LAST_PORT: int = 65535

#: The first address :meth:`MemoryNetwork.new_host` hands out; 10.0.0.0/8 is private, so the
#: addresses can never be confused with real hosts and fit 16 million simulated nodes.
FIRST_HOST_ADDRESS: ipaddress.IPv4Address = ipaddress.IPv4Address("10.0.0.1")

#: Hosts that mean "every address of this machine" when binding (the config default is 0.0.0.0).
WILDCARD_HOSTS: frozenset[str] = frozenset({"0.0.0.0", "::", ""})

#: A delayed datagram in the heap: (deliver_at, seq, source, destination, payload).
_Scheduled = tuple[float, int, Address, Address, bytes]


@dataclass(frozen=True, slots=True)
class LinkConditions:
    """How one direction of a link treats datagrams.

    Attributes:
        latency: Seconds every datagram (and each leg of a stream connection set-up) takes.
        jitter: Extra delay drawn uniformly from ``[0, jitter]`` seconds per datagram.
        loss: Probability that a datagram is lost.
        duplicate: Probability that a datagram that was not lost arrives twice.
    """

    latency: float = 0.0
    jitter: float = 0.0
    loss: float = 0.0
    duplicate: float = 0.0

    def __post_init__(self) -> None:
        for name in ("latency", "jitter"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, not {value!r}")
        for name in ("loss", "duplicate"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be a probability in [0, 1], not {value!r}")


@dataclass(slots=True)
class NetworkStats:
    """Datagram counters of one network (streams are reliable and not counted).

    ``sent + duplicated == delivered + dropped + in_flight`` holds at all times.

    Attributes:
        sent: ``sendto`` calls on open sockets.
        duplicated: Extra copies created by the duplicate probability.
        delivered: Datagrams put into a receiving socket's queue.
        dropped_loss: Lost to the link's loss probability.
        dropped_partition: Sent across a partition or a directional block.
        dropped_full: Arrived at a socket whose queue was full.
        dropped_oversize: Larger than ``MAX_DATAGRAM``.
        dropped_unbound: Arrived where no socket was bound (or it was closed meanwhile).
    """

    sent: int = 0
    duplicated: int = 0
    delivered: int = 0
    dropped_loss: int = 0
    dropped_partition: int = 0
    dropped_full: int = 0
    dropped_oversize: int = 0
    dropped_unbound: int = 0

    @property
    def dropped(self) -> int:
        """All drops, whatever the reason."""
        return (
            self.dropped_loss
            + self.dropped_partition
            + self.dropped_full
            + self.dropped_oversize
            + self.dropped_unbound
        )


class _Host:
    """Everything the network knows about one host address (lazy: most of it stays empty)."""

    __slots__ = ("connections", "endpoints", "epoch", "name", "next_port", "next_source_port")

    def __init__(self, name: str) -> None:
        self.name = name
        self.endpoints: dict[int, MemoryEndpoint] = {}
        self.connections: set[StreamConnection] | None = None
        #: Bumped by a crash, so that a connect in progress across the crash fails.
        self.epoch = 0
        self.next_port = FIRST_EPHEMERAL_PORT
        self.next_source_port = FIRST_EPHEMERAL_PORT


class MemoryNetwork:
    """A simulated network of hosts exchanging datagrams and streams; see the module docstring.

    Create it with :func:`open_memory_network`, which also runs its delivery task. Without that
    task only zero-delay datagrams can be sent.

    Args:
        seed: Seed of the one random generator that decides loss, duplication and jitter.
        latency: Default one-way latency of every link, in seconds.
        jitter: Default extra delay per datagram, uniform in ``[0, jitter]`` seconds.
        loss: Default probability that a datagram is lost.
        duplicate: Default probability that a datagram arrives twice.
        queue_size: Datagrams each socket queues before dropping.
        stream_buffer: Bytes each stream direction buffers before ``send_all`` blocks.
        backlog: Connections each listener queues before refusing.
    """

    __slots__ = (
        "_backlog",
        "_blocks",
        "_closed",
        "_default_link",
        "_heap",
        "_hosts",
        "_links",
        "_names",
        "_next_host",
        "_partitions",
        "_queue_size",
        "_rng",
        "_running",
        "_send",
        "_seq",
        "_stream_buffer",
        "_timer",
        "stats",
    )

    def __init__(
        self,
        seed: int,
        *,
        latency: float = 0.0,
        jitter: float = 0.0,
        loss: float = 0.0,
        duplicate: float = 0.0,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        stream_buffer: int = DEFAULT_STREAM_BUFFER,
        backlog: int = DEFAULT_BACKLOG,
    ) -> None:
        if queue_size < 1 or stream_buffer < 1 or backlog < 1:
            raise ValueError("queue_size, stream_buffer and backlog must be at least 1")
        self._rng = random.Random(seed)
        self._default_link = LinkConditions(latency, jitter, loss, duplicate)
        self._links: dict[tuple[str, str], LinkConditions] = {}
        self._blocks: set[tuple[str, str]] = set()
        #: One dict per partition, mapping each host in it to the index of its group.
        self._partitions: list[dict[str, int]] = []
        self._hosts: dict[str, _Host] = {}
        self._names: dict[str, list[str]] = {}
        self._next_host = 0
        self._queue_size = queue_size
        self._stream_buffer = stream_buffer
        self._backlog = backlog
        self._heap: list[_Scheduled] = []
        self._seq = 0
        self._timer: trio.CancelScope | None = None
        self._running = False
        self._closed = False
        #: Datagram counters; see :class:`NetworkStats`.
        self.stats = NetworkStats()
        #: What every bound socket sends through (one bound method, shared by all of them).
        self._send: SendDatagram = self._send_datagram

    # ---- hosts and transports ------------------------------------------------------------------

    def new_host(self) -> str:
        """Allocate the next unused host address: ``10.0.0.1``, ``10.0.0.2``, ...

        Addresses ending in .0 or .255 are skipped so that none looks like a network or a
        broadcast address.
        """
        while True:
            address = FIRST_HOST_ADDRESS + self._next_host
            self._next_host += 1
            name = str(address)
            if address.packed[-1] not in (0, 255) and name not in self._hosts:
                self._hosts[name] = _Host(name)
                return name

    def add_name(self, name: str, *hosts: str) -> None:
        """Make `name` resolve to `hosts` (in that order) for :attr:`resolver`; no hosts
        removes the name."""
        if hosts:
            self._names[name] = list(hosts)
        else:
            self._names.pop(name, None)

    @property
    def resolver(self) -> MemoryResolver:
        """A name resolver (plexinode.net.names.Resolver) that knows the names given to
        :meth:`add_name`."""
        return MemoryResolver(self._names)

    def transport(self, host: str) -> MemoryTransport:
        """The view of the network of a node whose address is `host`.

        Any non-empty string is a valid host; it need not come from :meth:`new_host`. Several
        transports for one host share its ports.
        """
        if not host or host in WILDCARD_HOSTS:
            raise ValueError(f"{host!r} cannot be a host address")
        return MemoryTransport(self, self._host(host))

    def _host(self, name: str) -> _Host:
        host = self._hosts.get(name)
        if host is None:
            host = self._hosts[name] = _Host(name)
        return host

    # ---- link conditions, partitions, crashes --------------------------------------------------

    @property
    def rng(self) -> random.Random:
        """The network's random generator; simulations may draw from it to stay reproducible."""
        return self._rng

    @property
    def in_flight(self) -> int:
        """Datagrams sent but not yet arrived."""
        return len(self._heap)

    def link(self, src_host: str, dst_host: str) -> LinkConditions:
        """The conditions datagrams from `src_host` to `dst_host` meet."""
        return self._links.get((src_host, dst_host), self._default_link)

    def set_link(
        self,
        src_host: str,
        dst_host: str,
        *,
        latency: float | None = None,
        jitter: float | None = None,
        loss: float | None = None,
        duplicate: float | None = None,
    ) -> None:
        """Override the conditions of the direction `src_host` -> `dst_host` only.

        Arguments left as None keep their current value for that direction. Datagrams already in
        flight keep the delay they were given.
        """
        changes = {
            name: value
            for name, value in (
                ("latency", latency),
                ("jitter", jitter),
                ("loss", loss),
                ("duplicate", duplicate),
            )
            if value is not None
        }
        conditions = dataclasses.replace(self.link(src_host, dst_host), **changes)
        self._links[src_host, dst_host] = conditions
        log.debug("link %s -> %s: %s", src_host, dst_host, conditions)

    def clear_link(self, src_host: str, dst_host: str) -> None:
        """Return the direction `src_host` -> `dst_host` to the network's default conditions."""
        self._links.pop((src_host, dst_host), None)

    def partition(self, *groups: Iterable[str]) -> None:
        """Cut every link between hosts of different groups, in both directions.

        ``partition(["a", "b"], ["c"])`` separates a and b from c; hosts named in no group are
        not affected. Partitions add up until :meth:`heal`. Established streams across the cut
        are reset.

        Raises:
            ValueError: Fewer than two groups, or a host in two groups.
        """
        host_groups = [sorted(set(group)) for group in groups]
        if len(host_groups) < 2:
            raise ValueError("a partition needs at least two groups")
        group_of: dict[str, int] = {}
        for index, group in enumerate(host_groups):
            for host in group:
                if group_of.setdefault(host, index) != index:
                    raise ValueError(f"host {host!r} is in two groups")
        self._partitions.append(group_of)
        log.info("partition: %s", host_groups)
        self._reset_forbidden_connections(group_of)

    def heal(self) -> None:
        """Lift every partition (directional blocks stay; see :meth:`unblock`)."""
        self._partitions.clear()
        log.info("partitions healed")

    def block(self, src_host: str, dst_host: str) -> None:
        """Drop everything `src_host` sends to `dst_host`, but not the other direction.

        Streams follow a stateful firewall: `src_host` can no longer connect to `dst_host`
        (established connections it opened are reset), while `dst_host` can still connect to
        `src_host` and get replies.
        """
        self._blocks.add((src_host, dst_host))
        log.info("block %s -> %s", src_host, dst_host)
        self._reset_forbidden_connections((src_host,))

    def unblock(self, src_host: str, dst_host: str) -> None:
        """Lift a :meth:`block`."""
        self._blocks.discard((src_host, dst_host))
        log.info("unblock %s -> %s", src_host, dst_host)

    def is_blocked(self, src_host: str, dst_host: str) -> bool:
        """Whether a partition or block stops traffic from `src_host` to `dst_host`."""
        if self._blocks and (src_host, dst_host) in self._blocks:
            return True
        for group_of in self._partitions:
            src_group = group_of.get(src_host)
            if src_group is not None:
                dst_group = group_of.get(dst_host)
                if dst_group is not None and dst_group != src_group:
                    return True
        return False

    def crash(self, host: str) -> None:
        """Close every endpoint of `host` and reset every stream touching it, abruptly.

        Models a power cut: the peers' stream operations raise :class:`trio.BrokenResourceError`,
        the host's own blocked ``recvfrom`` and ``accept`` calls raise
        :class:`trio.ClosedResourceError`, and datagrams still in flight to it are dropped as
        unbound. The host can bind again afterwards.
        """
        state = self._hosts.get(host)
        if state is None:
            return
        log.info("crash %s", host)
        state.epoch += 1
        for endpoint in list(state.endpoints.values()):
            endpoint.close()
        state.endpoints.clear()
        for connection in list(state.connections or ()):
            connection.reset()

    def close(self) -> None:
        """Crash every host and drop the datagrams in flight; the network cannot be used again."""
        if self._closed:
            return
        self._closed = True
        for host in list(self._hosts):
            self.crash(host)
        self._heap.clear()

    def _reset_forbidden_connections(self, hosts: Iterable[str]) -> None:
        for name in hosts:
            state = self._hosts.get(name)
            for connection in list(state.connections or ()) if state else ():
                if self.is_blocked(connection.client_host.name, connection.server_host.name):
                    connection.reset()

    # ---- datagrams -----------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Deliver delayed datagrams when they are due; runs until cancelled.

        :func:`open_memory_network` runs this; call it yourself only to run the network in a
        nursery of your own (``await nursery.start(net.run)``).
        """
        if self._running:
            raise RuntimeError("the memory network's delivery task is already running")
        self._running = True
        task_status.started()
        try:
            while True:
                deadline = self._heap[0][0] if self._heap else math.inf
                with trio.CancelScope(deadline=deadline) as timer:
                    self._timer = timer
                    await trio.sleep_forever()
                self._timer = None
                self._deliver_due()
        finally:
            self._timer = None
            self._running = False

    def _send_datagram(self, src: Address, payload: bytes, dst: Address) -> None:
        stats = self.stats
        stats.sent += 1
        if len(payload) > MAX_DATAGRAM:
            stats.dropped_oversize += 1
            log.debug("dropped oversize datagram (%d bytes) %s -> %s", len(payload), src, dst)
            return
        if self.is_blocked(src.host, dst.host):
            stats.dropped_partition += 1
            return
        link = self._links.get((src.host, dst.host), self._default_link)
        rng = self._rng
        if link.loss and rng.random() < link.loss:
            stats.dropped_loss += 1
            return
        copies = 1
        if link.duplicate and rng.random() < link.duplicate:
            stats.duplicated += 1
            copies = 2
        for _ in range(copies):
            delay = link.latency + (rng.uniform(0.0, link.jitter) if link.jitter else 0.0)
            if delay > 0:
                self._schedule(trio.current_time() + delay, src, dst, payload)
            else:
                if self._heap and self._heap[0][0] <= trio.current_time():
                    self._deliver_due()
                self._deliver(src, dst, payload)

    def _schedule(self, deliver_at: float, src: Address, dst: Address, payload: bytes) -> None:
        if not self._running:
            raise RuntimeError(
                "datagrams with latency need the delivery task: use open_memory_network()"
            )
        self._seq += 1
        heapq.heappush(self._heap, (deliver_at, self._seq, src, dst, payload))
        timer = self._timer
        if timer is not None and deliver_at < timer.deadline:
            timer.deadline = deliver_at

    def _deliver_due(self) -> None:
        heap = self._heap
        now = trio.current_time()
        while heap and heap[0][0] <= now:
            _, _, src, dst, payload = heapq.heappop(heap)
            self._deliver(src, dst, payload)

    def _deliver(self, src: Address, dst: Address, payload: bytes) -> None:
        host = self._hosts.get(dst.host)
        endpoint = host.endpoints.get(dst.port) if host is not None else None
        if endpoint is None or endpoint.datagrams.closed:
            self.stats.dropped_unbound += 1
        elif endpoint.datagrams.deliver(payload, src):
            self.stats.delivered += 1
        else:
            self.stats.dropped_full += 1

    # ---- binding and connecting ----------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the memory network is closed")

    def _bind(self, host: _Host, address: Address) -> MemoryEndpoint:
        self._check_open()
        if address.host != host.name and address.host not in WILDCARD_HOSTS:
            raise OSError(
                errno.EADDRNOTAVAIL, f"cannot bind {address}: this host's address is {host.name}"
            )
        port = address.port
        if not 0 <= port <= LAST_PORT:
            raise ValueError(f"port must be 0-{LAST_PORT}, not {port}")
        if port == 0:
            port = self._free_port(host)
        elif port in host.endpoints:
            raise OSError(errno.EADDRINUSE, f"address already in use: {host.name}:{port}")
        endpoint = MemoryEndpoint(host, Address(host.name, port), self._send, self._queue_size)
        host.endpoints[port] = endpoint
        return endpoint

    @staticmethod
    def _free_port(host: _Host) -> int:
        span = LAST_PORT - FIRST_EPHEMERAL_PORT + 1
        for _ in range(span):
            port = host.next_port
            host.next_port = port + 1 if port < LAST_PORT else FIRST_EPHEMERAL_PORT
            if port not in host.endpoints:
                return port
        raise OSError(errno.EADDRINUSE, f"no free port left on {host.name}")

    async def _connect(self, host: _Host, address: Address) -> MemoryStream:
        self._check_open()
        epoch = host.epoch
        forward = self.link(host.name, address.host).latency
        backward = self.link(address.host, host.name).latency
        await sleep_or_checkpoint(forward)
        self._check_open()
        if host.epoch != epoch:
            raise OSError(errno.ECONNABORTED, f"{host.name} crashed while connecting")
        target = self._hosts.get(address.host)
        if target is None or self.is_blocked(host.name, address.host):
            raise OSError(errno.EHOSTUNREACH, f"no route from {host.name} to {address.host}")
        endpoint = target.endpoints.get(address.port)
        listener = endpoint.listener if endpoint is not None else None
        if listener is None or listener.closed or listener.queued >= self._backlog:
            await sleep_or_checkpoint(backward)
            raise OSError(errno.ECONNREFUSED, f"connection refused by {address}")
        source = Address(host.name, host.next_source_port)
        host.next_source_port = source.port + 1 if source.port < LAST_PORT else FIRST_EPHEMERAL_PORT
        connection = StreamConnection(host, target, source, listener.address, self._stream_buffer)
        listener.enqueue(connection)
        try:
            await sleep_or_checkpoint(backward)
            if host.epoch != epoch:
                raise OSError(errno.ECONNABORTED, f"{host.name} crashed while connecting")
        except BaseException:
            connection.reset()
            raise
        return connection.client


class MemoryResolver:
    """The names of a :class:`MemoryNetwork` (:meth:`MemoryNetwork.add_name`)."""

    __slots__ = ("_names",)

    def __init__(self, names: dict[str, list[str]]) -> None:
        self._names = names

    async def lookup(self, host: str) -> list[str]:
        """The hosts `host` was given, or [] (it does not resolve)."""
        await trio.lowlevel.checkpoint()
        return list(self._names.get(host, ()))


class MemoryTransport:
    """One host's view of a :class:`MemoryNetwork`; a drop-in :class:`Transport`."""

    __slots__ = ("_host", "_network")

    def __init__(self, network: MemoryNetwork, host: _Host) -> None:
        self._network = network
        self._host = host

    @property
    def host(self) -> str:
        """This host's address."""
        return self._host.name

    @property
    def network(self) -> MemoryNetwork:
        """The network this transport belongs to."""
        return self._network

    def rng(self, seed: bytes) -> random.Random:
        """Seeded by `seed` alone (the node's ID and the job's name), so that a simulation
        replays whatever the hash seed or the order the nodes started in."""
        return random.Random(seed)

    async def bind(self, address: Address) -> MemoryEndpoint:
        """Bind a datagram socket and a stream listener on one port of this host.

        Args:
            address: This host's address or a wildcard (``0.0.0.0``, ``::``), and a port; port 0
                allocates a free one.

        Raises:
            OSError: ``EADDRINUSE`` if the port is taken, ``EADDRNOTAVAIL`` for another host.
        """
        await trio.lowlevel.checkpoint()
        return self._network._bind(self._host, address)

    async def connect(self, address: Address) -> MemoryStream:
        """Open a stream to a listener, after the round-trip latency.

        Raises:
            OSError: ``EHOSTUNREACH`` across a partition or block, or to an unknown host;
                ``ECONNREFUSED`` if nothing listens there (or its backlog is full).
        """
        return await self._network._connect(self._host, address)


@asynccontextmanager
async def open_memory_network(
    seed: int,
    *,
    latency: float = 0.0,
    jitter: float = 0.0,
    loss: float = 0.0,
    duplicate: float = 0.0,
    queue_size: int = DEFAULT_QUEUE_SIZE,
    stream_buffer: int = DEFAULT_STREAM_BUFFER,
    backlog: int = DEFAULT_BACKLOG,
) -> AsyncIterator[MemoryNetwork]:
    """Open a :class:`MemoryNetwork` and run its delivery task for the duration of the block.

    The arguments are those of :class:`MemoryNetwork`. On exit the network is closed: every host
    crashes and the datagrams still in flight are dropped.
    """
    replayable_scheduling(seed)
    network = MemoryNetwork(
        seed,
        latency=latency,
        jitter=jitter,
        loss=loss,
        duplicate=duplicate,
        queue_size=queue_size,
        stream_buffer=stream_buffer,
        backlog=backlog,
    )
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(network.run)
            try:
                yield network
            finally:
                network.close()
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # The delivery task never raises, so the group holds exactly what the block raised:
        # re-raise that as it is, as any context manager without a nursery would.
        if len(group.exceptions) != 1:
            raise
        error = group.exceptions[0]
        raise error from error.__cause__


if TYPE_CHECKING:

    def _conforms(
        transport: MemoryTransport, endpoint: MemoryEndpoint
    ) -> tuple[Transport, Endpoint]:
        """Make mypy prove that the memory classes are drop-in replacements for the protocols."""
        return transport, endpoint
