import pytest
from hypothesis import given
from hypothesis import strategies as st

from plexinode.net.address import Address


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:7420", Address("127.0.0.1", 7420)),
        (" example.org:1 ", Address("example.org", 1)),
        ("[::1]:9", Address("::1", 9)),
        ("[fe80::1]:65535", Address("fe80::1", 65535)),
    ],
)
def test_parse(text: str, expected: Address) -> None:
    assert Address.parse(text) == expected
    assert Address.parse(str(expected)) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("127.0.0.1", "HOST:PORT"),
        (":80", "HOST:PORT"),
        ("::1:80", "IPv6"),
        ("[::1]80", "IPv6"),
        ("[::1", "IPv6"),
        ("[zz::1]:80", "bad IPv6"),
        ("host:http", "number"),
        ("host:-1", "number"),
        ("host:65536", "range"),
        ("host:0", "range"),
    ],
)
def test_parse_errors(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        Address.parse(text)


def test_port_zero_only_when_allowed() -> None:
    assert Address.parse("127.0.0.1:0", allow_zero_port=True).port == 0


@given(st.ip_addresses(), st.integers(1, 65535))
def test_round_trip(ip, port: int) -> None:
    address = Address(str(ip), port)
    assert Address.parse(str(address)) == address
