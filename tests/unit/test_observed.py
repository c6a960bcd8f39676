"""The observed-address quorum: what reports of our address make us advertise."""

from __future__ import annotations

import pytest

from plexinode.dht.observed import (
    MAX_OBSERVED,
    MAX_REPORTERS,
    OBSERVED_QUORUM,
    ObservedAddresses,
)
from plexinode.net.address import Address

BOUND = Address("192.0.2.10", 7420)
SEEN = Address("198.51.100.7", 4000)
OTHER = Address("198.51.100.9", 4000)


def public(net: int, host: int = 1) -> Address:
    """A global IPv4 reporter; `net` picks its /24."""
    return Address(f"8.8.{net}.{host}", 7420)


def lan(host: int, port: int = 7420) -> Address:
    """A private IPv4 reporter."""
    return Address(f"10.0.0.{host}", port)


def test_defaults_are_a_quorum_of_two() -> None:
    assert OBSERVED_QUORUM == 2
    observed = ObservedAddresses()
    assert observed.quorum == OBSERVED_QUORUM
    assert observed.max_observed == MAX_OBSERVED
    assert observed.max_reporters == MAX_REPORTERS
    assert observed.advertised() == []
    assert len(observed) == 0


def test_only_routable_bound_addresses_are_advertised_and_they_come_first() -> None:
    observed = ObservedAddresses([Address("0.0.0.0", 7420), BOUND, Address("224.0.0.1", 1)])
    assert observed.bound == (BOUND,)
    observed.report(SEEN, public(1))
    observed.report(SEEN, public(2))
    assert observed.advertised() == [BOUND, SEEN]


def test_an_address_needs_a_quorum_of_distinct_witnesses() -> None:
    observed = ObservedAddresses([BOUND])
    observed.report(SEEN, public(1))
    assert observed.advertised() == [BOUND]  # one report is not enough
    observed.report(SEEN, public(1))
    assert observed.advertised() == [BOUND]  # nor the same reporter twice
    assert observed.witnesses(SEEN) == 1
    observed.report(SEEN, public(2))
    assert observed.witnesses(SEEN) == 2
    assert observed.advertised() == [BOUND, SEEN]


def test_public_reporters_of_one_subnet_are_one_witness() -> None:
    observed = ObservedAddresses()
    observed.report(SEEN, public(1, 4))
    observed.report(SEEN, public(1, 5))
    assert observed.witnesses(SEEN) == 1
    assert observed.advertised() == []
    observed.report(SEEN, public(2, 4))
    assert observed.advertised() == [SEEN]


def test_two_identities_on_one_lan_host_are_one_witness() -> None:
    observed = ObservedAddresses()
    observed.report(SEEN, lan(1, 7420))
    observed.report(SEEN, lan(1, 7421))  # another identity on the same host
    assert observed.witnesses(SEEN) == 1
    assert observed.advertised() == []
    observed.report(SEEN, lan(2, 7420))
    assert observed.advertised() == [SEEN]


def test_nodes_on_the_loopback_are_told_apart_by_port() -> None:
    """Several nodes on one machine: the loopback is the only place they can be."""
    observed = ObservedAddresses()
    local = Address("127.0.0.1", 7001)
    observed.report(local, Address("127.0.0.1", 7002))
    observed.report(local, Address("127.0.0.1", 7003))
    assert observed.advertised() == [local]
    six = ObservedAddresses()
    observed_six = Address("::1", 7001)
    six.report(observed_six, Address("::1", 7002))
    six.report(observed_six, Address("::1", 7002))
    assert six.witnesses(observed_six) == 1


@pytest.mark.parametrize(
    "bad",
    [
        Address("0.0.0.0", 4000),
        Address("224.0.0.1", 4000),
        Address("255.255.255.255", 4000),
        Address("not-an-ip", 1),
        Address("198.51.100.7", 0),
    ],
)
def test_unroutable_reports_are_ignored(bad: Address) -> None:
    observed = ObservedAddresses()
    for net in range(4):
        observed.report(bad, public(net))
    assert len(observed) == 0
    assert observed.witnesses(bad) == 0
    assert observed.advertised() == []


def test_a_bound_address_reported_back_is_not_repeated() -> None:
    observed = ObservedAddresses([BOUND])
    observed.report(BOUND, public(1))
    observed.report(BOUND, public(2))
    assert observed.advertised() == [BOUND]


def test_most_witnessed_first_then_least_recently_reported() -> None:
    observed = ObservedAddresses()
    third = Address("198.51.100.11", 4000)
    for net in (1, 2):
        observed.report(OTHER, public(net))
    for net in (1, 2, 3):
        observed.report(SEEN, public(net))
    for net in (1, 2):
        observed.report(third, public(net))
    assert observed.advertised() == [SEEN, OTHER, third]
    observed.report(OTHER, public(1))  # a repeat moves OTHER behind third among equals
    assert observed.advertised() == [SEEN, third, OTHER]


def test_witnesses_per_address_are_capped() -> None:
    observed = ObservedAddresses(max_reporters=3)
    for net in range(10):
        observed.report(SEEN, public(net))
    assert observed.witnesses(SEEN) == 3


def test_a_flood_of_invented_addresses_cannot_flush_a_confirmed_one() -> None:
    observed = ObservedAddresses(max_observed=4)
    observed.report(SEEN, public(1))
    observed.report(SEEN, public(2))
    for i in range(100):
        observed.report(Address(f"10.1.{i // 250}.{i % 250}", 7000), public(3))
    assert len(observed) == 4
    assert observed.witnesses(SEEN) == 2
    assert observed.advertised() == [SEEN]
    # The invented addresses pushed each other out, the oldest first.
    assert observed.witnesses(Address("10.1.0.99", 7000)) == 1
    assert observed.witnesses(Address("10.1.0.96", 7000)) == 0


def test_eviction_takes_the_fewest_witnesses_then_the_least_recently_reported() -> None:
    observed = ObservedAddresses(max_observed=3)
    a, b, c, d = (Address(f"198.51.100.{i}", 4000) for i in (1, 2, 3, 4))
    observed.report(a, public(1))
    observed.report(b, public(1))
    observed.report(b, public(2))
    observed.report(c, public(1))
    observed.report(a, public(3))  # a: 2 witnesses, reported last; c has 1
    observed.report(d, public(1))  # the table is full: c goes
    assert observed.witnesses(c) == 0
    assert [observed.witnesses(x) for x in (a, b, d)] == [2, 2, 1]


def test_at_most_max_advertised_addresses() -> None:
    observed = ObservedAddresses([BOUND], max_advertised=3)
    for i in range(5):
        address = Address(f"198.51.100.{i + 1}", 4000)
        observed.report(address, public(1))
        observed.report(address, public(2))
    assert len(observed) == 5
    assert observed.advertised() == [
        BOUND,
        Address("198.51.100.1", 4000),
        Address("198.51.100.2", 4000),
    ]


@pytest.mark.parametrize("name", ["quorum", "max_observed", "max_reporters", "max_advertised"])
def test_limits_must_be_positive(name: str) -> None:
    with pytest.raises(ValueError, match=name):
        ObservedAddresses(**{name: 0})  # type: ignore[arg-type]
