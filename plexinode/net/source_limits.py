"""What a datagram's source address may cost this node before its signature is checked
(sans-I/O).

Two budgets per source host (an IPv4 address, an IPv6 /64, an IPv4-mapped IPv6 address as its
IPv4 address: :func:`~plexinode.net.stream_limits.host_of`), both token buckets
(:class:`~plexinode.net.ratelimit.TokenBuckets`, least recently used hosts forgotten first, so
the state is bounded):

- **datagrams**: at most ``rate`` datagrams per second (burst twice that) are looked at, from
  any address, loopback and private ones included: one host cannot make the node spend all
  its CPU on parsing, hashing and verifying. Hosts inside the trusted networks are exempt
  (one machine or LAN that runs many nodes of its own).
- **failed signatures**: a datagram that reaches the signature check but fails it costs the
  sender nothing and the node an Ed25519 verification (the most expensive step, tens of
  microseconds), and anyone can make one with a valid network tag on the open network. Each
  failure takes a token from its host's budget of ``failure_rate`` per second (burst
  ``failure_burst``); while a host's budget is empty, its datagrams are dropped *before* the
  check, so a host whose datagrams keep failing gets at most ``failure_rate`` verifications a
  second. Honest nodes never fail it (a corrupted datagram fails the network tag or the
  decoding first), so an honest host loses nothing; an honest node behind one address with
  a forger is dropped along with it until the forger stops, the price of keying on the host
  the forger controls. Trusted hosts have this budget too: trust is about how many nodes a
  host runs, not about accepting forgeries.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Final

from plexinode.net.address import parse_ip
from plexinode.net.ratelimit import TokenBuckets
from plexinode.net.stream_limits import host_of, parse_networks

#: Hosts whose key (its /32, /64, or trust) is remembered; the cache is emptied when full.
KEY_CACHE: Final = 4096
#: The key of hosts inside a trusted network (exempt from the datagram rate).
TRUSTED: Final = ""


class SourceLimits:
    """The per-host budgets of inbound datagrams (module docstring).

    Args:
        rate: Datagrams per second looked at from one untrusted host (burst twice that).
        failure_rate: Failed signature checks per second one host may cause.
        failure_burst: Failed signature checks one host may cause at once.
        trusted: Networks (CIDR text) exempt from the datagram rate.
        max_keys: Hosts each budget remembers.

    Raises:
        ValueError: A trusted network is not a network, or a rate or burst is out of range.
    """

    def __init__(
        self,
        rate: float,
        *,
        failure_rate: float,
        failure_burst: float,
        trusted: Iterable[str] = (),
        max_keys: int = 4096,
    ) -> None:
        self.trusted = parse_networks(trusted)
        self._datagrams = TokenBuckets[str](rate, 2 * rate, max_keys=max_keys)
        self._failures = TokenBuckets[str](failure_rate, failure_burst, max_keys=max_keys)
        self._keys: dict[str, str] = {}

    def key(self, host: str) -> str:
        """The host `host` counts against (its /32 or /64), or :data:`TRUSTED`."""
        key = self._keys.get(host)
        if key is None:
            key = TRUSTED if self.is_trusted(host) else host_of(host)
            if len(self._keys) >= KEY_CACHE:
                self._keys.clear()
            self._keys[host] = key
        return key

    def is_trusted(self, host: str) -> bool:
        """Whether `host` lies in a trusted network (IPv4-mapped IPv6 as IPv4)."""
        ip = parse_ip(host)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return ip is not None and any(ip in network for network in self.trusted)

    def allow(self, host: str, now: float) -> bool:
        """Take a datagram token for `host`; False if its host is over the rate."""
        key = self.key(host)
        return key == TRUSTED or self._datagrams.allow(key, now)

    def may_verify(self, host: str, now: float) -> bool:
        """Whether a datagram from `host` may have its signature checked (its host has not
        used up its budget of failures)."""
        return self._failures.would_allow(self._failure_key(host), now)

    def failed(self, host: str, now: float) -> None:
        """A datagram from `host` failed its signature check: charge its host."""
        self._failures.allow(self._failure_key(host), now)

    def _failure_key(self, host: str) -> str:
        key = self.key(host)
        return host if key == TRUSTED else key
