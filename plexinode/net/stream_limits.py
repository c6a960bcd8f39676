"""Who may hold which inbound connections and streams (sans-I/O): the stream service's limits.

The stream service asks :class:`StreamLimits` three questions and tells it one thing:

* :meth:`~StreamLimits.connect`: a connection was accepted from a host. It is refused if the
  host is over its connection rate (a token bucket per host), or if the host, or the node in
  total, already holds as many established streams as allowed (a handshake would be wasted).
  Otherwise it becomes a *pending handshake*, which may evict another: when the host already
  has ``max_pending_per_host`` pending, its own oldest; else, when the node has
  ``max_pending_handshakes`` pending in total, the oldest of the host holding the most. A flood
  from one host therefore only ever evicts that host's own handshakes, and a flood from many
  hosts evicts from the busiest first; an honest handshake from a quiet host is never the one
  cut off (while the flooders hold more than it does).
* :meth:`~StreamLimits.authenticated`: the handshake finished and proved a node ID. The stream
  is refused if that node ID already holds ``max_streams_per_node`` streams, its host
  ``max_streams_per_host``, or the node ``max_streams`` in total. At a cap the *newcomer* is
  refused: an established stream is never cut to make room (an idle one is closed by the
  stream service's idle deadline, not here), so honest peers that hold a stream keep it.
* :meth:`~StreamLimits.release`: the connection closed, whatever stage it reached.

A *host* is an IPv4 address (/32), or an IPv6 /64 (what one customer of a provider usually
gets, so one attacker cannot multiply its share by using many addresses of its prefix); an
IPv4-mapped IPv6 address counts as its IPv4 address, and a host that is not an IP literal (the
in-memory network's names) as itself. Hosts inside ``trusted_hosts`` (CIDR networks) are
exempt from the per-host limits (rate, pending, streams) but still count toward the totals and
the per-node cap; each trusted address is its own host.

Invariants, whatever the sequence of events (tests/unit/test_stream_limits.py checks them with
hypothesis): every count is >= 0 and equals the connections it counts; pending handshakes never
exceed ``max_pending_handshakes`` in total nor, for an untrusted host, ``max_pending_per_host``;
established streams never exceed ``max_streams`` in total, ``max_streams_per_host`` for an
untrusted host, nor ``max_streams_per_node`` for a node ID.
"""

from __future__ import annotations

import collections
import enum
import ipaddress
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from plexinode.net.address import parse_ip
from plexinode.net.ratelimit import TokenBuckets
from plexinode.net.settings import StreamSettings

K = TypeVar("K", bound=Hashable)
N = TypeVar("N", bound=Hashable)
H = TypeVar("H", bound=Hashable)

#: The prefix length that makes one IPv6 host (a /64 is the usual customer allocation).
IPV6_HOST_PREFIX: Final = 64
#: Hosts whose connection rate is remembered (least recently seen forgotten first); well above
#: the number of hosts that connect to one node in a rate window.
RATE_HOSTS: Final = 4096

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Refusal(enum.Enum):
    """Why a connection or a stream was refused; the value is the counter it adds to."""

    RATE = "refused_rate"
    HOST_STREAMS = "refused_host_streams"
    TOTAL_STREAMS = "refused_total_streams"
    NODE_STREAMS = "refused_node_streams"
    #: The connection is no longer pending (it was evicted, or released): not a new refusal.
    GONE = "gone"


@dataclass(frozen=True, slots=True)
class Admitted(Generic[K]):
    """A connection admitted as a pending handshake.

    Attributes:
        evicted: The pending handshake cut off to make room for it, if any (the caller closes
            it; it is already forgotten here).
    """

    evicted: K | None = None


def host_of(host: str) -> str:
    """The host a connection from `host` counts against: an IPv4 address, an IPv6 /64 (written
    as a network), or `host` itself when it is not an IP literal."""
    ip = parse_ip(host)
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped
        if mapped is not None:
            return str(mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_HOST_PREFIX), strict=False))
    return host if ip is None else str(ip)


def parse_networks(texts: Iterable[str]) -> tuple[Network, ...]:
    """CIDR networks from their text (``10.0.0.0/8``, ``fd00::/8``, or one address).

    Raises:
        ValueError: A text is not a network.
    """
    networks = []
    for text in texts:
        try:
            networks.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{text!r} is not a network (CIDR, such as 10.0.0.0/8)") from None
    return tuple(networks)


@dataclass(frozen=True, slots=True)
class _Conn:
    bucket: str  # the host it counts against
    trusted: bool


class StreamLimits(Generic[K, N]):
    """The stream service's connection and stream limits (module docstring).

    `K` is the caller's key for one connection (unique while the connection is known), `N` a
    node ID. Time is passed in (``now``, in seconds on any monotonic clock).
    """

    __slots__ = (
        "_by_host",
        "_by_node",
        "_established",
        "_pending",
        "_pending_by_host",
        "_rates",
        "settings",
        "trusted",
    )

    def __init__(self, settings: StreamSettings) -> None:
        """Raises ValueError if ``settings.trusted_hosts`` holds something not a network."""
        self.settings = settings
        self.trusted = parse_networks(settings.trusted_hosts)
        self._rates: TokenBuckets[str] = TokenBuckets(
            settings.host_connection_rate, settings.host_connection_burst, max_keys=RATE_HOSTS
        )
        # Arrival order is dict order, for every dict of pending handshakes.
        self._pending: dict[K, _Conn] = {}
        self._pending_by_host: dict[str, dict[K, None]] = {}
        self._established: dict[K, tuple[_Conn, N]] = {}
        self._by_host: collections.Counter[str] = collections.Counter()  # untrusted only
        self._by_node: collections.Counter[N] = collections.Counter()

    # -- counts ------------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Handshakes in progress."""
        return len(self._pending)

    @property
    def established(self) -> int:
        """Established streams."""
        return len(self._established)

    def pending_of(self, host: str) -> int:
        """Handshakes in progress from `host`'s host (its /64 for IPv6)."""
        return len(self._pending_by_host.get(self._conn(host).bucket, ()))

    def streams_of_host(self, host: str) -> int:
        """Established streams from `host`'s host; 0 for a trusted host (not counted)."""
        return self._by_host[self._conn(host).bucket]

    def streams_of_node(self, node: N) -> int:
        """Established streams held by `node`."""
        return self._by_node[node]

    def is_trusted(self, host: str) -> bool:
        """Whether `host` lies in one of the trusted networks (an IPv4-mapped IPv6 address as
        its IPv4 address)."""
        ip = parse_ip(host)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return ip is not None and any(ip in network for network in self.trusted)

    # -- events ------------------------------------------------------------------------------

    def connect(self, key: K, host: str, now: float) -> Admitted[K] | Refusal:
        """A connection `key` was accepted from `host`: admit it as a pending handshake, or
        refuse it (the caller closes it at once).

        Raises:
            ValueError: `key` is already known.
        """
        if key in self._pending or key in self._established:
            raise ValueError(f"connection {key!r} is already known")
        settings = self.settings
        conn = self._conn(host)
        if not conn.trusted:
            if not self._rates.allow(conn.bucket, now):
                return Refusal.RATE
            if self._by_host[conn.bucket] >= settings.max_streams_per_host:
                return Refusal.HOST_STREAMS
        if len(self._established) >= settings.max_streams:
            return Refusal.TOTAL_STREAMS
        evicted = None
        own = self._pending_by_host.get(conn.bucket)
        if not conn.trusted and own is not None and len(own) >= settings.max_pending_per_host:
            evicted = next(iter(own))
        elif len(self._pending) >= settings.max_pending_handshakes:
            busiest = max(self._pending_by_host.values(), key=len)
            evicted = next(iter(busiest))
        if evicted is not None:
            self._forget_pending(evicted)
        self._pending[key] = conn
        self._pending_by_host.setdefault(conn.bucket, {})[key] = None
        return Admitted(evicted)

    def authenticated(self, key: K, node: N) -> Refusal | None:
        """The handshake of pending connection `key` proved `node`: None if the stream is
        established, else why it is refused (the caller closes it; it is forgotten here).
        :attr:`Refusal.GONE` if `key` is no longer pending (evicted or released meanwhile)."""
        conn = self._pending.get(key)
        if conn is None:
            return Refusal.GONE
        self._forget_pending(key)
        settings = self.settings
        if self._by_node[node] >= settings.max_streams_per_node:
            return Refusal.NODE_STREAMS
        if not conn.trusted and self._by_host[conn.bucket] >= settings.max_streams_per_host:
            return Refusal.HOST_STREAMS
        if len(self._established) >= settings.max_streams:
            return Refusal.TOTAL_STREAMS
        self._established[key] = (conn, node)
        self._by_node[node] += 1
        if not conn.trusted:
            self._by_host[conn.bucket] += 1
        return None

    def release(self, key: K) -> None:
        """Connection `key` closed, at whatever stage (unknown keys are ignored)."""
        if key in self._pending:
            self._forget_pending(key)
            return
        entry = self._established.pop(key, None)
        if entry is None:
            return
        conn, node = entry
        _decrement(self._by_node, node)
        if not conn.trusted:
            _decrement(self._by_host, conn.bucket)

    # -- internals ---------------------------------------------------------------------------

    def _conn(self, host: str) -> _Conn:
        if self.is_trusted(host):
            return _Conn("trusted " + host, trusted=True)
        return _Conn(host_of(host), trusted=False)

    def _forget_pending(self, key: K) -> None:
        conn = self._pending.pop(key)
        own = self._pending_by_host[conn.bucket]
        del own[key]
        if not own:
            del self._pending_by_host[conn.bucket]


def _decrement(counter: collections.Counter[H], key: H) -> None:
    if counter[key] <= 1:
        del counter[key]
    else:
        counter[key] -= 1


__all__ = [
    "IPV6_HOST_PREFIX",
    "Admitted",
    "Refusal",
    "StreamLimits",
    "host_of",
    "parse_networks",
]


class SeenMsg1:
    """The initiators' ephemeral keys of the last `capacity` msg1s a node accepted.

    An initiator draws a fresh ephemeral key for every handshake, so a msg1 whose key was seen
    before is a replay: someone captured it and sends it again to make the responder compute
    an X25519 and an Ed25519 signature for a handshake it can never finish. Oldest forgotten
    first; at 32 bytes a key, the default holds the last 16,384 in about 1 MiB.
    """

    def __init__(self, capacity: int = 16_384) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._capacity = capacity
        self._keys: dict[bytes, None] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def first(self, ephemeral: bytes) -> bool:
        """Remember `ephemeral`; True if it was not remembered already."""
        if ephemeral in self._keys:
            return False
        if len(self._keys) >= self._capacity:
            del self._keys[next(iter(self._keys))]
        self._keys[ephemeral] = None
        return True
