"""Network addresses and their text form (``host:port``, ``[v6]:port``)."""

from __future__ import annotations

import functools
import ipaddress
from typing import NamedTuple, TypeAlias

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Distinct hosts whose parsed form is kept. The DHT looks at the same few thousand addresses
#: over and over (parsing one costs microseconds); a flood of new ones only evicts old entries.
_CACHE_SIZE = 4096


@functools.lru_cache(maxsize=_CACHE_SIZE)
def parse_ip(host: str) -> IPAddress | None:
    """The IP address `host` spells, or None if it is not an IP literal (cached)."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


@functools.lru_cache(maxsize=_CACHE_SIZE)
def packed_ip(host: str) -> bytes | None:
    """The 4- or 16-byte packed form of the IP address `host` spells, or None (cached)."""
    ip = parse_ip(host)
    return None if ip is None else ip.packed


@functools.lru_cache(maxsize=_CACHE_SIZE)
def is_public_host(host: str) -> bool:
    """True for a globally routable IP literal (not loopback, private, link-local, reserved)."""
    ip = parse_ip(host)
    return ip is not None and ip.is_global


@functools.lru_cache(maxsize=_CACHE_SIZE)
def ip_text(packed: bytes) -> str:
    """The text form of a 4- or 16-byte packed IP address (cached); ValueError otherwise."""
    return str(ipaddress.ip_address(packed))


class Address(NamedTuple):
    """A host and port; ``host`` is a literal IP address or a name."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str, *, allow_zero_port: bool = False) -> Address:
        """Parse ``host:port`` or ``[v6]:port``; ValueError with a clear message otherwise."""
        text = text.strip()
        host: str
        if text.startswith("["):
            host, sep, rest = text[1:].partition("]")
            if not sep or not rest.startswith(":"):
                raise ValueError(f"invalid address {text!r}: expected [IPv6]:PORT")
            port_text = rest[1:]
        else:
            host, sep, port_text = text.rpartition(":")
            if not sep or not host:
                raise ValueError(f"invalid address {text!r}: expected HOST:PORT")
            if ":" in host:
                raise ValueError(f"invalid address {text!r}: write IPv6 addresses as [ADDR]:PORT")
        if not port_text.isdigit():
            raise ValueError(f"invalid address {text!r}: the port must be a number")
        port = int(port_text)
        if not (0 if allow_zero_port else 1) <= port <= 65535:
            raise ValueError(f"invalid address {text!r}: port out of range")
        if ":" in host:
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                raise ValueError(f"invalid address {text!r}: bad IPv6 address") from None
        return cls(host, port)
