"""Host names turned into the IP addresses a node talks to (plexinode.net.names)."""

from __future__ import annotations

import pytest

from plexinode.errors import NameNotResolved
from plexinode.net.address import Address
from plexinode.net.names import SystemResolver, ip_version, listen_address, resolve, resolve_all


class Table:
    """A resolver that answers from a dict, and counts the lookups."""

    def __init__(self, names: dict[str, list[str]]) -> None:
        self.names = names
        self.lookups = 0

    async def lookup(self, host: str) -> list[str]:
        self.lookups += 1
        return list(self.names.get(host, []))


NAMES = Table({"both": ["::1", "127.0.0.1"], "six": ["::1"], "four": ["10.0.0.1", "10.0.0.2"]})


def test_ip_version() -> None:
    assert ip_version("127.0.0.1") == ip_version("0.0.0.0") == 4
    assert ip_version("::1") == ip_version("::") == 6
    assert ip_version("localhost") is None


async def test_a_literal_is_kept_without_a_lookup() -> None:
    table = Table({})
    assert await resolve(table, Address("10.1.2.3", 7), version=6) == [Address("10.1.2.3", 7)]
    assert table.lookups == 0


async def test_a_name_gives_the_addresses_of_the_nodes_family_in_order() -> None:
    assert await resolve(NAMES, Address("both", 7), version=4) == [Address("127.0.0.1", 7)]
    assert await resolve(NAMES, Address("both", 7), version=6) == [Address("::1", 7)]
    assert await resolve(NAMES, Address("four", 7), version=None) == [
        Address("10.0.0.1", 7),
        Address("10.0.0.2", 7),
    ]


async def test_a_name_without_a_usable_address_says_which() -> None:
    with pytest.raises(NameNotResolved, match="nowhere does not resolve"):
        await resolve(NAMES, Address("nowhere", 7), version=4)
    with pytest.raises(NameNotResolved, match=r"six resolves only to ::1, .* listens on IPv4"):
        await resolve(NAMES, Address("six", 7), version=4)


async def test_resolve_all_keeps_what_resolves_and_reports_the_rest() -> None:
    addresses = [Address("four", 1), Address("nowhere", 2), Address("10.0.0.1", 1)]
    resolved, problems = await resolve_all(NAMES, addresses, version=4)
    assert resolved == [Address("10.0.0.1", 1), Address("10.0.0.2", 1)]
    assert problems == ["nowhere:2: nowhere does not resolve (no A or AAAA record)"]


async def test_a_listen_name_binds_its_first_ipv4_address() -> None:
    assert await listen_address(NAMES, Address("both", 0)) == Address("127.0.0.1", 0)
    assert await listen_address(NAMES, Address("six", 0)) == Address("::1", 0)
    assert await listen_address(NAMES, Address("::", 5)) == Address("::", 5)
    with pytest.raises(NameNotResolved):
        await listen_address(NAMES, Address("nowhere", 0))


async def test_the_system_resolver_knows_localhost_and_not_an_invalid_name() -> None:
    # /etc/hosts names localhost; .invalid never resolves (RFC 2606), not even through DNS.
    assert "127.0.0.1" in await SystemResolver().lookup("localhost")
    assert await SystemResolver().lookup("no-such-host.invalid") == []
    assert await SystemResolver().lookup("a" * 300) == []  # longer than a DNS name may be
