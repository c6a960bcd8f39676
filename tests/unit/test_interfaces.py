"""This host's outward addresses (plexinode.net.interfaces): what a founder listening on a
wildcard address puts in its first invite."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import pytest

from plexinode.net import interfaces
from plexinode.net.address import Address
from plexinode.net.interfaces import is_wildcard, outward_addresses


def test_outward_addresses_are_routable_and_carry_the_port() -> None:
    assert outward_addresses(Address("127.0.0.1", 7420)) == []
    for address in outward_addresses(Address("::", 7420)):
        ip = ipaddress.ip_address(address.host)
        assert address.port == 7420
        assert not ip.is_loopback
        assert not ip.is_link_local
        assert not ip.is_unspecified


class _FakeSocket:
    def __init__(self, source: str | None) -> None:
        self.source = source

    def __enter__(self) -> _FakeSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def connect(self, target: Any) -> None:
        if self.source is None:
            raise OSError("Network is unreachable")

    def getsockname(self) -> tuple[str, int]:
        assert self.source is not None
        return (self.source, 5555)


@pytest.mark.parametrize(
    ("sources", "expected"),
    [
        ({socket.AF_INET: None, socket.AF_INET6: None}, []),
        ({socket.AF_INET: "127.0.0.1", socket.AF_INET6: "fe80::1%eth0"}, []),
        ({socket.AF_INET: "0.0.0.0", socket.AF_INET6: "2001:db8::7"}, ["2001:db8::7"]),
        ({socket.AF_INET: "10.1.2.3", socket.AF_INET6: None}, ["10.1.2.3"]),
    ],
)
def test_no_route_and_unusable_sources_give_no_address(
    monkeypatch: pytest.MonkeyPatch, sources: dict[int, str | None], expected: list[str]
) -> None:
    monkeypatch.setattr(
        interfaces.socket, "socket", lambda family, kind: _FakeSocket(sources[family])
    )
    assert [a.host for a in outward_addresses(Address("::", 1))] == expected
    v4 = [a.host for a in outward_addresses(Address("0.0.0.0", 1))]
    assert v4 == [h for h in expected if ":" not in h]


def test_wildcards() -> None:
    assert is_wildcard("0.0.0.0")
    assert is_wildcard("::")
    assert not is_wildcard("127.0.0.1")
    assert not is_wildcard("fe80::1%eth0")
    assert not is_wildcard("example.org")
