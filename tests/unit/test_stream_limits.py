"""The stream service's limits (sans-I/O): rates, pending handshakes, stream caps, trust."""

from __future__ import annotations

import collections
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plexinode.net.settings import StreamSettings
from plexinode.net.stream_limits import (
    Admitted,
    Refusal,
    StreamLimits,
    host_of,
    parse_networks,
)

SMALL = StreamSettings(
    max_pending_handshakes=6,
    max_pending_per_host=3,
    max_streams=6,
    max_streams_per_host=4,
    max_streams_per_node=2,
    host_connection_rate=1,
    host_connection_burst=100,
)


def limits(**changes: object) -> StreamLimits[int, str]:
    return StreamLimits(replace(SMALL, **changes))  # type: ignore[arg-type]


def establish(lim: StreamLimits[int, str], key: int, host: str, node: str) -> None:
    assert lim.connect(key, host, 0.0) == Admitted()
    assert lim.authenticated(key, node) is None


def test_host_of() -> None:
    assert host_of("192.0.2.7") == "192.0.2.7"
    assert host_of("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    assert host_of("2001:db8:1:2::99") == host_of("2001:db8:1:2:ffff::1")
    assert host_of("2001:db8:1:3::1") != host_of("2001:db8:1:2::1")
    assert host_of("::ffff:192.0.2.7") == "192.0.2.7"
    assert host_of("alice") == "alice"  # the in-memory network's names


def test_parse_networks() -> None:
    assert [str(n) for n in parse_networks(["10.1.2.3/16", " fd00::/8", "127.0.0.1"])] == [
        "10.1.0.0/16",
        "fd00::/8",
        "127.0.0.1/32",
    ]
    with pytest.raises(ValueError, match="not a network"):
        parse_networks(["10.0.0.0/33"])
    with pytest.raises(ValueError, match="not a network"):
        StreamLimits(replace(SMALL, trusted_hosts=("example.org",)))


def test_a_flood_from_one_host_evicts_only_its_own_pending_handshakes() -> None:
    lim = limits()
    assert lim.connect(0, "192.0.2.1", 0.0) == Admitted()  # the honest handshake
    for key in range(1, 4):
        assert lim.connect(key, "198.51.100.9", 0.0) == Admitted()
    assert lim.pending_of("198.51.100.9") == 3
    for key in range(4, 100):  # the flood: each new one evicts the host's own oldest
        assert lim.connect(key, "198.51.100.9", 0.0) == Admitted(evicted=key - 3)
    assert lim.pending_of("198.51.100.9") == 3
    assert lim.pending == 4
    assert lim.authenticated(0, "honest") is None  # never evicted
    assert lim.established == 1


def test_at_the_total_the_busiest_host_loses_its_oldest() -> None:
    lim = limits(max_pending_per_host=5, max_pending_handshakes=6)
    assert lim.connect(0, "192.0.2.1", 0.0) == Admitted()
    assert lim.connect(1, "192.0.2.2", 0.0) == Admitted()
    for key in range(2, 6):
        assert lim.connect(key, "198.51.100.9", 0.0) == Admitted()
    assert lim.pending == 6
    # A newcomer from a quiet host: the busiest host (4 pending) gives up its oldest.
    assert lim.connect(6, "192.0.2.3", 0.0) == Admitted(evicted=2)
    # Even a newcomer from the busiest host evicts its own.
    assert lim.connect(7, "198.51.100.9", 0.0) == Admitted(evicted=3)
    assert lim.pending_of("192.0.2.1") == lim.pending_of("192.0.2.2") == 1


def test_connection_rate_per_host() -> None:
    lim = limits(host_connection_rate=2, host_connection_burst=3)
    for key in range(3):
        assert isinstance(lim.connect(key, "192.0.2.1", 0.0), Admitted)
    assert lim.connect(3, "192.0.2.1", 0.0) is Refusal.RATE
    assert isinstance(lim.connect(4, "192.0.2.2", 0.0), Admitted)  # another host
    assert lim.connect(5, "192.0.2.1", 0.4) is Refusal.RATE
    assert isinstance(lim.connect(6, "192.0.2.1", 0.5), Admitted)  # one token refilled
    # IPv6 hosts are limited per /64.
    assert isinstance(lim.connect(7, "2001:db8::1", 0.0), Admitted)
    assert isinstance(lim.connect(8, "2001:db8::2", 0.0), Admitted)
    assert isinstance(lim.connect(9, "2001:db8::3", 0.0), Admitted)
    assert lim.connect(10, "2001:db8::ffff:4", 0.0) is Refusal.RATE
    assert isinstance(lim.connect(11, "2001:db8:0:1::1", 0.0), Admitted)


def test_stream_caps_refuse_the_newcomer() -> None:
    lim = limits()
    establish(lim, 0, "192.0.2.1", "a")
    establish(lim, 1, "192.0.2.1", "a")
    assert lim.connect(2, "192.0.2.1", 0.0) == Admitted()
    assert lim.authenticated(2, "a") is Refusal.NODE_STREAMS  # per node ID
    assert lim.streams_of_node("a") == 2
    assert lim.pending == 0  # the refused one is forgotten
    establish(lim, 3, "192.0.2.1", "b")
    establish(lim, 4, "192.0.2.1", "c")
    assert lim.streams_of_host("192.0.2.1") == 4
    # Per host: refused before the handshake, and after it (if streams were made meanwhile).
    assert lim.connect(5, "192.0.2.1", 0.0) is Refusal.HOST_STREAMS
    lim.release(4)
    assert lim.connect(6, "192.0.2.1", 0.0) == Admitted()
    assert lim.connect(7, "192.0.2.1", 0.0) == Admitted()
    assert lim.authenticated(6, "d") is None
    assert lim.authenticated(7, "e") is Refusal.HOST_STREAMS
    # In total.
    establish(lim, 8, "192.0.2.2", "f")
    assert lim.connect(9, "192.0.2.3", 0.0) == Admitted()
    establish(lim, 10, "192.0.2.2", "g")
    assert lim.established == 6
    assert lim.authenticated(9, "h") is Refusal.TOTAL_STREAMS
    assert lim.connect(11, "192.0.2.3", 0.0) is Refusal.TOTAL_STREAMS
    # Established streams were never cut.
    assert lim.established == 6
    for key in (0, 1, 3, 6, 8, 10):
        lim.release(key)
    assert (lim.established, lim.pending) == (0, 0)
    assert lim.streams_of_node("a") == lim.streams_of_host("192.0.2.1") == 0


def test_trusted_hosts_skip_the_per_host_limits_but_not_the_totals() -> None:
    lim = limits(trusted_hosts=("127.0.0.0/8",), host_connection_burst=1)
    assert lim.is_trusted("127.0.0.5")
    assert lim.is_trusted("::ffff:127.0.0.5")  # as a dual-stack socket reports it
    assert not lim.is_trusted("::1")
    assert not lim.is_trusted("192.0.2.1")
    assert not lim.is_trusted("alice")
    for key in range(6):  # no rate limit, no per-host pending cap (3)
        assert lim.connect(key, "127.0.0.1", 0.0) == Admitted()
    assert lim.connect(6, "127.0.0.1", 0.0) == Admitted(evicted=0)  # the total still applies
    for key, node in zip(range(1, 6), "abcde", strict=True):
        assert lim.authenticated(key, node) is None  # beyond the per-host cap (4)
    assert lim.streams_of_host("127.0.0.1") == 0  # not counted per host
    assert lim.authenticated(6, "a") is None
    assert lim.connect(7, "127.0.0.1", 0.0) is Refusal.TOTAL_STREAMS  # the total applies
    assert lim.connect(8, "192.0.2.1", 0.0) is Refusal.TOTAL_STREAMS
    lim.release(6)
    lim.release(2)
    assert lim.connect(9, "127.0.0.2", 0.0) == Admitted()
    assert lim.connect(10, "127.0.0.2", 0.0) == Admitted()
    assert lim.authenticated(9, "a") is None
    assert lim.authenticated(10, "a") is Refusal.NODE_STREAMS  # the per-node cap applies


def test_events_for_unknown_or_known_keys() -> None:
    lim = limits()
    assert lim.authenticated(1, "a") is Refusal.GONE
    lim.release(1)  # ignored
    assert lim.connect(1, "192.0.2.1", 0.0) == Admitted()
    with pytest.raises(ValueError, match="already known"):
        lim.connect(1, "192.0.2.1", 0.0)
    lim.release(1)
    assert lim.authenticated(1, "a") is Refusal.GONE
    establish(lim, 2, "192.0.2.1", "a")
    with pytest.raises(ValueError, match="already known"):
        lim.connect(2, "192.0.2.1", 0.0)


# -- any sequence of events -------------------------------------------------------------------

HOSTS = ["192.0.2.1", "192.0.2.2", "2001:db8::1", "2001:db8::2", "127.0.0.1", "alice"]
NODES = ["a", "b", "c", "d"]

event = st.one_of(
    st.tuples(st.just("connect"), st.sampled_from(HOSTS)),
    st.tuples(st.just("authenticated"), st.integers(0, 40), st.sampled_from(NODES)),
    st.tuples(st.just("release"), st.integers(0, 40)),
    st.tuples(st.just("tick"), st.floats(0.0, 2.0)),
)


@settings(max_examples=300, deadline=None)
@given(
    caps=st.tuples(
        st.integers(1, 5),
        st.integers(1, 5),
        st.integers(1, 6),
        st.integers(1, 5),
        st.integers(1, 3),
    ),
    trusted=st.booleans(),
    events=st.lists(event, max_size=120),
)
def test_counts_stay_within_the_caps_under_any_events(
    caps: tuple[int, int, int, int, int], trusted: bool, events: list[tuple[object, ...]]
) -> None:
    pending_total, pending_host, streams, streams_host, streams_node = caps
    lim: StreamLimits[int, str] = StreamLimits(
        StreamSettings(
            max_pending_handshakes=pending_total,
            max_pending_per_host=pending_host,
            max_streams=streams,
            max_streams_per_host=streams_host,
            max_streams_per_node=streams_node,
            host_connection_rate=1,
            host_connection_burst=4,
            trusted_hosts=("127.0.0.0/8",) if trusted else (),
        )
    )
    now = 0.0
    next_key = 0
    # The model: what each known connection is, as the caller sees it.
    pending: dict[int, str] = {}
    established: dict[int, tuple[str, str]] = {}
    for ev in events:
        if ev[0] == "connect":
            host = str(ev[1])
            key, next_key = next_key, next_key + 1
            decision = lim.connect(key, host, now)
            if isinstance(decision, Admitted):
                if decision.evicted is not None:
                    assert decision.evicted in pending
                    del pending[decision.evicted]
                pending[key] = host
        elif ev[0] == "authenticated":
            key, node = int(str(ev[1])), str(ev[2])
            host_or_none = pending.pop(key, None)
            refusal = lim.authenticated(key, node)
            if host_or_none is None:
                assert refusal is Refusal.GONE
            elif refusal is None:
                established[key] = (host_or_none, node)
        elif ev[0] == "release":
            key = int(str(ev[1]))
            pending.pop(key, None)
            established.pop(key, None)
            lim.release(key)
        else:
            now += float(str(ev[1]))
        # The core agrees with the model, and every count is within its cap.
        assert lim.pending == len(pending) <= pending_total
        assert lim.established == len(established) <= streams
        by_host = collections.Counter(host_of(h) for h in pending.values())
        for host in HOSTS:
            if not lim.is_trusted(host):
                assert lim.pending_of(host) == by_host[host_of(host)] <= pending_host
                count = sum(1 for h, _ in established.values() if host_of(h) == host_of(host))
                assert lim.streams_of_host(host) == count <= streams_host
            else:
                assert lim.streams_of_host(host) == 0
        for node in NODES:
            count = sum(1 for _, n in established.values() if n == node)
            assert lim.streams_of_node(node) == count <= streams_node
    for key in list(pending) + list(established):
        lim.release(key)
    assert (lim.pending, lim.established) == (0, 0)
