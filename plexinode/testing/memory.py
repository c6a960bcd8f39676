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

Determinism
-----------
Trio's scheduler deliberately does not promise an order between tasks that are runnable at the
same time: by default it reverses each batch of runnable tasks at random, from a generator seeded
by the operating system, so two runs of one seeded simulation drift apart after a few thousand
task switches. :func:`open_memory_network` therefore puts trio's scheduler in the deterministic
mode that trio itself uses under Hypothesis (each batch sorted by task creation order, then
shuffled by trio's generator) and seeds that generator from the network's seed (see
:func:`replayable_scheduling`). The rest is decided by our own code, at the moment of a call, in
call order:

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
Each bound socket owns a bounded trio memory channel (:data:`DEFAULT_QUEUE_SIZE` datagrams); a
full queue drops the datagram, as a full UDP receive buffer does. ``sendto`` decides a datagram's
fate in this order, and every datagram ends in exactly one counter of :class:`NetworkStats`:

1. larger than :data:`~plexinode.net.transport.MAX_DATAGRAM`: ``dropped_oversize``;
2. ``src -> dst`` cut by a partition or a directional block: ``dropped_partition``;
3. lost with the link's ``loss`` probability: ``dropped_loss``;
4. duplicated with the link's ``duplicate`` probability (``duplicated`` counts the extra copy;
   each copy then draws its own delay);
5. delay = ``latency + uniform(0, jitter)``, so jitter only ever adds delay and datagrams sent
   close together can be reordered;
6. on arrival: nothing bound (or closed) at the destination: ``dropped_unbound``; queue full:
   ``dropped_full``; otherwise ``delivered``.

So ``sent + duplicated == delivered + dropped + in_flight`` at all times. Partitions are checked
when a datagram is sent, not when it arrives: a datagram already on the wire when the partition
starts still arrives, as it would on a real network. Link settings are directional and default to
the network-wide ones given to :func:`open_memory_network`.

Streams
-------
``connect`` returns one end of a reliable, in-order, half-closeable byte stream
(:class:`MemoryStream`); ``listener.accept()`` returns the other. Each direction is a bounded pipe
(:data:`DEFAULT_STREAM_BUFFER` bytes), written here rather than borrowed from
:mod:`trio.testing`: ``memory_stream_pair`` buffers without limit, so a writer never feels
backpressure, and ``lockstep_stream_pair`` has no buffer at all, so two peers that both write a
greeting before reading (which TCP allows) would deadlock. The bounded pipe behaves like a pair of
socket buffers: ``send_all`` returns once its bytes fit in the buffer and blocks while the buffer
is full, until the reader catches up.

Latency applies to connection set-up only: ``connect`` takes the forward link latency to reach
the listener (or to fail with ``EHOSTUNREACH`` across a partition or block, or with
``ECONNREFUSED`` after the return latency when nothing listens) and the return latency to
complete. Bytes on an established stream arrive with no delay and are never lost; modelling
per-write delay would need a timer per write, and protocols over streams care about order and
backpressure, which are modelled, far more than about the exact transfer time.

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
free again once both are closed. Closing a stream ends the peer's reads with ``b""`` after the
data already sent, and the peer's writes raise :class:`trio.BrokenResourceError`.
:meth:`~MemoryNetwork.crash` models a power cut: every endpoint of the host is closed and every
stream touching the host is reset; the host can then bind again (a restart). Using a closed
datagram socket raises :class:`trio.ClosedResourceError`; the real socket would fail with an
``OSError`` that is logged and swallowed, but sending after close is always a bug, and a
simulation is the place to find it.

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
import operator
import random
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from plexinode.net.address import Address
from plexinode.net.transport import MAX_DATAGRAM

if TYPE_CHECKING:
    from plexinode.net.transport import Endpoint, Transport

log = logging.getLogger(__name__)

#: Datagrams queued per socket before new ones are dropped. 256 full-size datagrams are about
#: 300 KB, the order of a default Linux UDP receive buffer (``net.core.rmem_default``); a node that
#: falls further behind than that is overloaded, and dropping is what UDP would do.
DEFAULT_QUEUE_SIZE: int = 256

#: Bytes buffered per stream direction before ``send_all`` blocks: 64 KiB, the order of a default
#: TCP socket buffer. Large enough that request/response exchanges never stall on it, small enough
#: that a writer to a reader that stopped reading blocks instead of growing memory without bound.
DEFAULT_STREAM_BUFFER: int = 64 * 1024

#: Connections waiting for ``accept`` before new ones are refused; the same backlog that
#: :class:`~plexinode.net.transport.SocketTransport` passes to ``listen``.
DEFAULT_BACKLOG: int = 512

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
        self.connections: set[_Connection] | None = None
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
        "_next_host",
        "_partitions",
        "_queue_size",
        "_rng",
        "_running",
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
            endpoint._abort()
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
        if endpoint is None or endpoint._datagrams._closed:
            self.stats.dropped_unbound += 1
            return
        try:
            endpoint._datagrams._queue_in.send_nowait((payload, src))
        except trio.WouldBlock:
            self.stats.dropped_full += 1
        else:
            self.stats.delivered += 1

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
        endpoint = MemoryEndpoint(self, host, Address(host.name, port))
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
        await _sleep_or_checkpoint(forward)
        self._check_open()
        if host.epoch != epoch:
            raise OSError(errno.ECONNABORTED, f"{host.name} crashed while connecting")
        target = self._hosts.get(address.host)
        if target is None or self.is_blocked(host.name, address.host):
            raise OSError(errno.EHOSTUNREACH, f"no route from {host.name} to {address.host}")
        endpoint = target.endpoints.get(address.port)
        listener = endpoint._listener if endpoint is not None else None
        if listener is None or listener._closed or listener._queued() >= self._backlog:
            await _sleep_or_checkpoint(backward)
            raise OSError(errno.ECONNREFUSED, f"connection refused by {address}")
        source = Address(host.name, host.next_source_port)
        host.next_source_port = source.port + 1 if source.port < LAST_PORT else FIRST_EPHEMERAL_PORT
        connection = _Connection(
            host, target, source, listener._endpoint._address, self._stream_buffer
        )
        listener._enqueue(connection)
        try:
            await _sleep_or_checkpoint(backward)
            if host.epoch != epoch:
                raise OSError(errno.ECONNABORTED, f"{host.name} crashed while connecting")
        except BaseException:
            connection.reset()
            raise
        return connection.client


async def _sleep_or_checkpoint(seconds: float) -> None:
    if seconds > 0:
        await trio.sleep(seconds)
    else:
        await trio.lowlevel.checkpoint()


def replayable_scheduling(seed: int) -> bool:
    """Make trio's order among tasks runnable at one instant a function of `seed`, for the rest of
    this process; return whether it could.

    Trio keeps its scheduling generator, and the switch that sorts each batch before shuffling
    it, in ``trio._core._run``; Hypothesis turns the switch on for its own examples through
    trio's plugin hook. Those are private names: if a trio release moves them, this logs a
    warning and returns False, and simulations still run, only without exact replay.
    """
    run_module = getattr(getattr(trio, "_core", None), "_run", None)
    generator = getattr(run_module, "_r", None)
    if not isinstance(generator, random.Random) or not hasattr(
        run_module, "_ALLOW_DETERMINISTIC_SCHEDULING"
    ):
        log.warning("this trio release hides its scheduler's generator: runs will not replay")
        return False
    setattr(run_module, "_ALLOW_DETERMINISTIC_SCHEDULING", True)  # noqa: B010 (a Final global)
    generator.seed(seed)
    return True


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


class MemoryEndpoint:
    """A bound port: one datagram socket and one stream listener (a drop-in ``Endpoint``)."""

    __slots__ = ("_address", "_datagrams", "_host", "_listener", "_network")

    def __init__(self, network: MemoryNetwork, host: _Host, address: Address) -> None:
        self._network = network
        self._host = host
        self._address = address
        self._datagrams = MemoryDatagramSocket(self, network._queue_size)
        self._listener = MemoryListener(self)

    @property
    def address(self) -> Address:
        """The bound address, with the real port even when 0 was asked for."""
        return self._address

    @property
    def datagrams(self) -> MemoryDatagramSocket:
        """The datagram socket."""
        return self._datagrams

    @property
    def listener(self) -> MemoryListener:
        """The stream listener."""
        return self._listener

    async def aclose(self) -> None:
        """Close the socket and the listener; the port is free again."""
        self._datagrams.close()
        await self._listener.aclose()

    def _abort(self) -> None:
        self._datagrams.close()
        self._listener._close()

    def _part_closed(self) -> None:
        # The port stays taken until both the socket and the listener are closed.
        if self._datagrams._closed and self._listener._closed:
            endpoints = self._host.endpoints
            if endpoints.get(self._address.port) is self:
                del endpoints[self._address.port]


class MemoryDatagramSocket:
    """A bound datagram socket with a bounded receive queue (a drop-in ``DatagramSocket``)."""

    __slots__ = ("_closed", "_endpoint", "_queue_in", "_queue_out")

    def __init__(self, endpoint: MemoryEndpoint, queue_size: int) -> None:
        self._endpoint = endpoint
        self._closed = False
        self._queue_in, self._queue_out = trio.open_memory_channel[tuple[bytes, Address]](
            queue_size
        )

    async def sendto(self, data: bytes, address: Address) -> None:
        """Send one datagram; losses and drops are silent (counted in ``network.stats``).

        Raises:
            trio.ClosedResourceError: This socket is closed.
        """
        await trio.lowlevel.checkpoint()
        if self._closed:
            raise trio.ClosedResourceError("the datagram socket is closed")
        self._endpoint._network._send_datagram(self._endpoint._address, bytes(data), address)

    async def recvfrom(self) -> tuple[bytes, Address]:
        """Wait for the next datagram and its source address.

        Raises:
            trio.ClosedResourceError: The socket is closed, before or during the wait.
        """
        return await self._queue_out.receive()

    def close(self) -> None:
        """Close the socket; queued datagrams are discarded."""
        if self._closed:
            return
        self._closed = True
        self._queue_out.close()
        self._queue_in.close()
        self._endpoint._part_closed()


class MemoryListener(trio.abc.Listener["MemoryStream"]):
    """The stream listener of a :class:`MemoryEndpoint`."""

    __slots__ = ("_closed", "_endpoint", "_lot", "_pending")

    def __init__(self, endpoint: MemoryEndpoint) -> None:
        self._endpoint = endpoint
        self._closed = False
        self._pending: list[_Connection] | None = None
        self._lot: trio.lowlevel.ParkingLot | None = None

    async def accept(self) -> MemoryStream:
        """Wait for the next incoming connection and return our end of it.

        Raises:
            trio.ClosedResourceError: The listener is closed, before or during the wait.
        """
        await trio.lowlevel.checkpoint()
        while True:
            if self._closed:
                raise trio.ClosedResourceError("the listener is closed")
            if self._pending:
                return self._pending.pop(0).server
            if self._lot is None:
                self._lot = trio.lowlevel.ParkingLot()
            await self._lot.park()

    async def aclose(self) -> None:
        """Stop listening; connections not yet accepted are reset."""
        self._close()
        await trio.lowlevel.checkpoint()

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        pending, self._pending = self._pending or [], None
        for connection in pending:
            connection.reset()
        if self._lot is not None:
            self._lot.unpark_all()
        self._endpoint._part_closed()

    def _queued(self) -> int:
        return len(self._pending) if self._pending else 0

    def _enqueue(self, connection: _Connection) -> None:
        if self._pending is None:
            self._pending = []
        self._pending.append(connection)
        if self._lot is not None:
            self._lot.unpark()


class _Pipe:
    """One direction of a stream: a bounded byte buffer between one writer and one reader."""

    __slots__ = ("buffer", "capacity", "eof", "lot", "reader_closed", "reset")

    def __init__(self, capacity: int) -> None:
        self.buffer = bytearray()
        self.capacity = capacity
        #: The writer will write no more (``send_eof`` or ``aclose``): reads end with b"".
        self.eof = False
        #: The reader closed its end: writes raise BrokenResourceError.
        self.reader_closed = False
        #: The connection was aborted: both ends raise BrokenResourceError.
        self.reset = False
        self.lot: trio.lowlevel.ParkingLot | None = None

    async def wait(self) -> None:
        """Block until the state changes (any waiter re-checks what it waits for)."""
        if self.lot is None:
            self.lot = trio.lowlevel.ParkingLot()
        await self.lot.park()

    def changed(self) -> None:
        if self.lot is not None:
            self.lot.unpark_all()


class _Connection:
    """A stream connection: two pipes and the two :class:`MemoryStream` ends that share them."""

    __slots__ = ("client", "client_host", "open_ends", "server", "server_host")

    def __init__(
        self,
        client_host: _Host,
        server_host: _Host,
        client_address: Address,
        server_address: Address,
        buffer: int,
    ) -> None:
        self.client_host = client_host
        self.server_host = server_host
        upstream, downstream = _Pipe(buffer), _Pipe(buffer)
        self.client = MemoryStream(self, upstream, downstream, client_address, server_address)
        self.server = MemoryStream(self, downstream, upstream, server_address, client_address)
        self.open_ends = 2
        for host in (client_host, server_host):
            if host.connections is None:
                host.connections = set()
            host.connections.add(self)

    def end_closed(self) -> None:
        self.open_ends -= 1
        if self.open_ends == 0:
            self._forget()

    def reset(self) -> None:
        """Abort the connection: both ends raise BrokenResourceError from now on."""
        for pipe in (self.client._send_pipe, self.server._send_pipe):
            pipe.reset = True
            pipe.buffer.clear()
            pipe.changed()
        self._forget()

    def _forget(self) -> None:
        for host in (self.client_host, self.server_host):
            if host.connections is not None:
                host.connections.discard(self)


class MemoryStream(trio.abc.HalfCloseableStream):
    """One end of a reliable, in-order, half-closeable byte stream with bounded buffering.

    Attributes:
        local_address: This end's address (for a connecting end, a notional source port).
        remote_address: The other end's address.
    """

    __slots__ = (
        "_closed",
        "_connection",
        "_receive_busy",
        "_receive_pipe",
        "_send_busy",
        "_send_pipe",
        "local_address",
        "remote_address",
    )

    def __init__(
        self,
        connection: _Connection,
        send_pipe: _Pipe,
        receive_pipe: _Pipe,
        local_address: Address,
        remote_address: Address,
    ) -> None:
        self._connection = connection
        self._send_pipe = send_pipe
        self._receive_pipe = receive_pipe
        self.local_address = local_address
        self.remote_address = remote_address
        self._closed = False
        self._send_busy = False
        self._receive_busy = False

    def _check_sendable(self) -> None:
        pipe = self._send_pipe
        if self._closed or (pipe.eof and not pipe.reset):
            raise trio.ClosedResourceError("this stream is closed for sending")
        if pipe.reset or pipe.reader_closed:
            raise trio.BrokenResourceError("the connection was closed or reset by the peer")

    def _claim_send(self) -> None:
        if self._send_busy:
            raise trio.BusyResourceError("another task is already sending on this stream")
        self._send_busy = True

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Write all of `data`, blocking while the buffer towards the peer is full.

        Raises:
            trio.BusyResourceError: Another task is sending on this stream.
            trio.BrokenResourceError: The peer closed its end, or the connection was reset.
            trio.ClosedResourceError: This end was closed, or ``send_eof`` was called.
        """
        self._claim_send()
        try:
            await trio.lowlevel.checkpoint()
            view = memoryview(data).cast("B")
            pipe = self._send_pipe
            while True:
                self._check_sendable()
                if not view:
                    return
                room = pipe.capacity - len(pipe.buffer)
                if room > 0:
                    pipe.buffer += view[:room]
                    view = view[room:]
                    pipe.changed()
                else:
                    await pipe.wait()
        finally:
            self._send_busy = False

    async def wait_send_all_might_not_block(self) -> None:
        """Block until the buffer towards the peer has room (or the stream broke)."""
        self._claim_send()
        try:
            await trio.lowlevel.checkpoint()
            pipe = self._send_pipe
            while True:
                self._check_sendable()
                if len(pipe.buffer) < pipe.capacity:
                    return
                await pipe.wait()
        finally:
            self._send_busy = False

    async def send_eof(self) -> None:
        """Tell the peer we will send no more; it reads b"" after the data already sent."""
        self._claim_send()
        try:
            await trio.lowlevel.checkpoint()
            if self._closed:
                raise trio.ClosedResourceError("this stream is closed")
            if self._send_pipe.reset:
                raise trio.BrokenResourceError("the connection was reset")
            self._send_pipe.eof = True
            self._send_pipe.changed()
        finally:
            self._send_busy = False

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Return up to `max_bytes` bytes (all that is buffered if None), or b"" at the end.

        Raises:
            trio.BusyResourceError: Another task is receiving on this stream.
            trio.BrokenResourceError: The connection was reset.
            trio.ClosedResourceError: This end was closed.
        """
        if max_bytes is not None:
            max_bytes = operator.index(max_bytes)
            if max_bytes < 1:
                raise ValueError("max_bytes must be >= 1")
        if self._receive_busy:
            raise trio.BusyResourceError("another task is already receiving on this stream")
        self._receive_busy = True
        try:
            await trio.lowlevel.checkpoint()
            pipe = self._receive_pipe
            while True:
                if self._closed:
                    raise trio.ClosedResourceError("this stream is closed")
                if pipe.reset:
                    raise trio.BrokenResourceError("the connection was reset")
                if pipe.buffer:
                    size = len(pipe.buffer) if max_bytes is None else max_bytes
                    chunk = bytes(pipe.buffer[:size])
                    del pipe.buffer[:size]
                    pipe.changed()
                    return chunk
                if pipe.eof:
                    return b""
                await pipe.wait()
        finally:
            self._receive_busy = False

    async def aclose(self) -> None:
        """Close this end: the peer reads the data already sent, then b""; its writes break."""
        if not self._closed:
            self._closed = True
            self._send_pipe.eof = True
            self._send_pipe.changed()
            self._receive_pipe.reader_closed = True
            self._receive_pipe.buffer.clear()
            self._receive_pipe.changed()
            self._connection.end_closed()
        await trio.lowlevel.checkpoint()


if TYPE_CHECKING:

    def _conforms(
        transport: MemoryTransport, endpoint: MemoryEndpoint
    ) -> tuple[Transport, Endpoint]:
        """Make mypy prove that the memory classes are drop-in replacements for the protocols."""
        return transport, endpoint
