"""The per-host budgets of inbound datagrams: the rate for every address but trusted networks,
IPv6 per /64, IPv4-mapped as IPv4, and the budget of failed signature checks."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plexinode.net import source_limits
from plexinode.net.source_limits import TRUSTED, SourceLimits


def limits(**kwargs: object) -> SourceLimits:
    options: dict[str, object] = {"failure_rate": 1, "failure_burst": 2, **kwargs}
    return SourceLimits(5, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("host", ["127.0.0.1", "10.1.2.3", "192.168.0.7", "::1", "fd00::1"])
def test_loopback_and_private_addresses_are_limited_like_any_other(host: str) -> None:
    lim = limits()
    assert [lim.allow(host, 0.0) for _ in range(11)] == [True] * 10 + [False]
    assert lim.allow(host, 0.2)  # the rate refills it


def test_ipv6_addresses_of_one_slash_64_share_one_budget() -> None:
    lim = limits()
    for i in range(10):
        assert lim.allow(f"2001:db8:1:2::{i + 1:x}", 0.0)
    assert not lim.allow("2001:db8:1:2:ffff::1", 0.0)
    assert lim.allow("2001:db8:1:3::1", 0.0)  # the next /64 is another host


def test_an_ipv4_mapped_address_counts_as_its_ipv4_address() -> None:
    lim = limits()
    for _ in range(10):
        assert lim.allow("::ffff:203.0.113.9", 0.0)
    assert not lim.allow("203.0.113.9", 0.0)
    assert lim.key("::ffff:203.0.113.9") == "203.0.113.9"


def test_trusted_networks_are_exempt_from_the_rate_but_not_from_the_failure_budget() -> None:
    lim = limits(trusted=("127.0.0.0/8", "fd00::/8"))
    assert all(lim.allow("127.0.0.5", 0.0) for _ in range(1000))
    assert lim.key("::ffff:127.0.0.5") == TRUSTED
    assert lim.is_trusted("fd00::9")
    assert not lim.is_trusted("fe80::1")
    assert not lim.is_trusted("example.org")
    lim.failed("127.0.0.5", 0.0)
    lim.failed("127.0.0.5", 0.0)
    assert not lim.may_verify("127.0.0.5", 0.0)
    assert lim.may_verify("127.0.0.6", 0.0)  # each trusted address is its own source


def test_a_host_that_keeps_failing_signatures_is_not_verified_until_its_budget_refills() -> None:
    lim = limits()
    assert lim.may_verify("198.51.100.1", 0.0)
    lim.failed("198.51.100.1", 0.0)
    assert lim.may_verify("198.51.100.1", 0.0)
    lim.failed("198.51.100.1", 0.0)
    assert not lim.may_verify("198.51.100.1", 0.0)
    assert not lim.may_verify("198.51.100.1", 0.5)
    assert lim.may_verify("198.51.100.1", 1.0)  # one failure a second
    assert lim.may_verify("198.51.100.2", 0.0)  # another host is not affected


def test_a_name_that_is_no_ip_literal_is_its_own_host() -> None:
    assert limits().key("node.example") == "node.example"


def test_a_trusted_setting_that_is_not_a_network_is_refused() -> None:
    with pytest.raises(ValueError, match="not a network"):
        limits(trusted=("example.org",))


def test_the_key_cache_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(source_limits, "KEY_CACHE", 4)
    lim = limits()
    for i in range(10):
        assert lim.key(f"10.0.0.{i}") == f"10.0.0.{i}"
    assert len(lim._keys) <= 4


@given(st.integers(1, 2**64 - 1), st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1))
def test_any_two_addresses_of_one_slash_64_count_as_one_host(
    prefix: int, low: int, other: int
) -> None:
    lim = limits()
    first = str(ipaddress.IPv6Address(prefix << 64 | low))
    second = str(ipaddress.IPv6Address(prefix << 64 | other))
    assert lim.key(first) == lim.key(second)
    assert lim.key(first) != lim.key(str(ipaddress.IPv6Address((prefix - 1) << 64 | low)))
