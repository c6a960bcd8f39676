"""The addresses of this host that other machines can probably reach, found without sending.

A node listening on a wildcard address (``0.0.0.0``, ``::``) does not know which of its
addresses others reach it at until peers tell it (the observed-address quorum of the DHT). A
founder that has no peer yet still needs one for its first invite: this module asks the
operating system which source address it would use toward the outside, for IPv4 and IPv6,
by "connecting" an unbound UDP socket (which sends nothing) to a documentation address.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Final

from plexinode.net.address import Address

#: Documentation addresses (RFC 5737, RFC 3849): only the route to them is looked up.
_PROBES: Final = ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1"))


def outward_addresses(bound: Address) -> list[Address]:
    """For a node bound to the wildcard address `bound`, this host's source addresses toward
    the outside, with its port: IPv4 for ``0.0.0.0``, IPv4 and IPv6 for ``::`` (IPv4 first);
    none that is loopback, link-local or unspecified, none without a route, and none for a
    node bound to one address (it is reached there)."""
    if not is_wildcard(bound.host):
        return []
    families = (socket.AF_INET,) if ":" not in bound.host else (socket.AF_INET, socket.AF_INET6)
    found: list[Address] = []
    for family, probe in _PROBES:
        if family not in families:
            continue
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                sock.connect((probe, 9))
                host = sock.getsockname()[0]
        except OSError:
            continue
        ip = ipaddress.ip_address(host.split("%", 1)[0])
        if not (ip.is_loopback or ip.is_link_local or ip.is_unspecified):
            found.append(Address(str(ip), bound.port))
    return found


def is_wildcard(host: str) -> bool:
    """Whether `host` is the unspecified address (``0.0.0.0``, ``::``): bound everywhere."""
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_unspecified
    except ValueError:
        return False
