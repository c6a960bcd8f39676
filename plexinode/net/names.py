"""Host names: what an operator types (``--listen``, ``--bootstrap``, ``ping HOST:PORT``) turned
into the IP addresses the node talks to.

Services only ever send to and match replies from IP literals: a reply comes from an address,
never from a name, so a request sent to ``localhost:7002`` would wait for an answer from
``localhost`` that can never come. Names are therefore resolved at the edges, when they are
used, and again on each use (a bootstrap name is resolved on every retry, so a DNS change is
picked up without a restart):

- :func:`resolve` gives the addresses of one name of the family the node is bound to (a node on
  IPv4 cannot send to ``::1``), in the resolver's order of preference;
- :func:`listen_address` picks the address to bind for a name (IPv4 first: ``localhost``
  resolves to ``::1`` and ``127.0.0.1``, and most peers are on IPv4).

The :class:`Resolver` is the operating system's (``getaddrinfo``: A and AAAA records, and
``/etc/hosts``) in a real node; simulations pass a table of their own
(plexinode.testing.network).
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Protocol

import trio

from plexinode.errors import NameNotResolved
from plexinode.net.address import Address, parse_ip


class Resolver(Protocol):
    """Turns a host name into IP addresses."""

    async def lookup(self, host: str) -> list[str]:
        """The IP addresses (text form) `host` names, most preferred first; [] if none."""
        ...


class SystemResolver:
    """The operating system's resolver (``getaddrinfo``, run on a worker thread by trio)."""

    async def lookup(self, host: str) -> list[str]:
        try:
            infos = await trio.socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM)
        except (socket.gaierror, UnicodeError):
            return []
        found = (str(info[4][0]) for info in infos if info[0] in (socket.AF_INET, socket.AF_INET6))
        return list(dict.fromkeys(found))


def ip_version(host: str) -> int | None:
    """4 or 6 for an IP literal (``0.0.0.0`` and ``::`` included), None for a name."""
    ip = parse_ip(host)
    return None if ip is None else ip.version


async def resolve(resolver: Resolver, address: Address, *, version: int | None) -> list[Address]:
    """The addresses `address` stands for that a node bound to IPv`version` can reach.

    An IP literal is returned as it is; a name is looked up now.

    Raises:
        NameNotResolved: The name has no address, or none of that family.
    """
    if parse_ip(address.host) is not None:
        return [address]
    found = await resolver.lookup(address.host)
    if not found:
        raise NameNotResolved(f"{address.host} does not resolve (no A or AAAA record)")
    usable = [ip for ip in found if version is None or ip_version(ip) == version]
    if not usable:
        raise NameNotResolved(
            f"{address.host} resolves only to {', '.join(found)}, and this node listens on "
            f"IPv{version}"
        )
    return [Address(ip, address.port) for ip in usable]


async def resolve_all(
    resolver: Resolver, addresses: Sequence[Address], *, version: int | None
) -> tuple[list[Address], list[str]]:
    """Every address of `addresses` resolved (names dropped when they do not resolve), and a
    line for each name that did not."""
    resolved: list[Address] = []
    problems: list[str] = []
    for address in addresses:
        try:
            resolved.extend(await resolve(resolver, address, version=version))
        except NameNotResolved as exc:
            problems.append(f"{address}: {exc}")
    return list(dict.fromkeys(resolved)), problems


async def listen_address(resolver: Resolver, address: Address) -> Address:
    """The address to bind for `address`: itself for an IP literal, else the name's first
    IPv4 address, else its first IPv6 one.

    Raises:
        NameNotResolved: The name does not resolve.
    """
    if parse_ip(address.host) is not None:
        return address
    found = await resolve(resolver, address, version=None)
    found.sort(key=lambda a: ip_version(a.host) != 4)  # stable: IPv4 first, in their order
    return found[0]
