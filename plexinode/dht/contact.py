"""Contacts, the XOR metric and address classes shared by the DHT cores.

A contact is a node ID with the address it was last verified at. The routing table only ever
holds contacts that answered an authenticated request themselves; contacts learned from other
nodes' replies ("hearsay") are only candidates to query.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass
from typing import Final

from plexinode.identity import NODE_ID_BYTES, NodeId
from plexinode.net.address import Address, IPAddress, is_public_host, parse_ip

ID_BITS: Final = NODE_ID_BYTES * 8


@dataclass(frozen=True, slots=True)
class Contact:
    """A node and the address to reach it at."""

    node_id: NodeId
    address: Address


def distance(a: NodeId, b: NodeId) -> int:
    """The XOR distance between two IDs, as an integer."""
    return int.from_bytes(a.raw, "big") ^ int.from_bytes(b.raw, "big")


def bucket_index(own: NodeId, other: NodeId) -> int:
    """Index (0..255) of the k-bucket `other` belongs to in `own`'s table; -1 for `own` itself.

    Bucket i holds the IDs at distance [2**i, 2**(i+1)): the length of the common prefix is
    ``255 - i``.
    """
    return distance(own, other).bit_length() - 1


_BROADCAST: Final = ipaddress.IPv4Address("255.255.255.255")


def _ip(address: Address) -> IPAddress | None:
    return parse_ip(address.host)


@functools.lru_cache(maxsize=4096)
def _routable_host(host: str) -> bool:
    ip = parse_ip(host)
    return ip is not None and not ip.is_unspecified and not ip.is_multicast and ip != _BROADCAST


def is_routable(address: Address) -> bool:
    """False for addresses no peer can be reached at: unspecified, multicast, port 0, names."""
    return 0 < address.port <= 65535 and _routable_host(address.host)


def is_public(address: Address) -> bool:
    """True for globally routable addresses (not loopback, private, link-local, reserved)."""
    return is_public_host(address.host)


def subnet(address: Address) -> str:
    """The /24 (IPv4) or /48 (IPv6) network of an address, for per-subnet limits."""
    ip = _ip(address)
    if ip is None:
        return address.host
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))
