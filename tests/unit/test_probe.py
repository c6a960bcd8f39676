"""The sans-I/O SWIM prober: round robin, direct and indirect probes, nacks, local health."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plexinode.membership.probe import (
    FORBIDDEN_ADDRESS,
    MAX_RELAYED,
    NOT_A_MEMBER,
    TARGET_UNKNOWN,
    WRONG_ADDRESS,
    Prober,
    SendAck,
    SendNack,
    SendPing,
    SendPingReq,
    SuspectMember,
    relay_refusal,
)
from plexinode.net.address import Address
from tests.unit.ids import nid

OWN = nid(1)
MEMBERS = [OWN] + [nid(n) for n in range(2, 8)]


def prober(**kwargs: object) -> Prober:
    return Prober(OWN, 0.0, random.Random(7), **kwargs)  # type: ignore[arg-type]


def start(p: Prober, now: float = 0.0) -> SendPing:
    (ping,) = p.tick(now, MEMBERS)
    assert isinstance(ping, SendPing)
    return ping


def test_a_direct_ack_ends_the_probe_and_the_next_waits_for_the_period() -> None:
    p = prober()
    ping = start(p)
    assert ping.target != OWN
    assert p.on_ack(ping.target, ping.seq, 0.1) == []
    assert p.stats["acked"] == 1
    assert p.tick(0.5, MEMBERS) == []  # no indirect probe, no suspicion
    assert p.next_deadline() == 1.0
    (following,) = p.tick(1.0, MEMBERS)
    assert isinstance(following, SendPing)
    assert following.seq != ping.seq


def test_every_member_is_probed_once_per_round_in_a_new_order_each_round() -> None:
    p = prober()
    rounds = []
    now = 0.0
    for _ in range(3):
        targets = []
        for _ in range(len(MEMBERS) - 1):
            ping = start(p, now)
            p.on_ack(ping.target, ping.seq, now + 0.01)
            targets.append(ping.target)
            now += 1.0
        assert sorted(targets) == sorted(MEMBERS[1:])
        rounds.append(targets)
    assert rounds[0] != rounds[1] or rounds[1] != rounds[2]


def test_members_that_left_the_live_set_are_skipped() -> None:
    p = prober()
    ping = start(p)
    p.on_ack(ping.target, ping.seq, 0.01)
    remaining = [OWN, ping.target]  # everyone else died since the round was drawn
    (following,) = p.tick(1.0, remaining)
    assert following == SendPing(ping.target, following.seq)


def test_alone_nothing_to_probe() -> None:
    p = prober()
    assert p.tick(0.0, [OWN]) == []
    assert p.next_deadline() == 1.0


def test_no_ack_then_indirect_probes_then_suspicion() -> None:
    p = prober(indirect_probes=3)
    ping = start(p)
    actions = p.tick(0.5, MEMBERS)
    assert len(actions) == 3
    assert all(isinstance(a, SendPingReq) and a.target == ping.target for a in actions)
    relays = {a.relay for a in actions if isinstance(a, SendPingReq)}
    assert OWN not in relays
    assert ping.target not in relays
    for relay in relays:
        p.on_nack(relay, ping.seq)
    assert p.tick(0.9, MEMBERS) == []
    actions = p.tick(1.0, MEMBERS)
    assert actions[0] == SuspectMember(ping.target, ping.seq)
    assert isinstance(actions[1], SendPing)  # the next period's probe
    assert p.awareness == 1  # a failed probe; every relay answered, so no extra point


def test_an_ack_relayed_by_a_relay_saves_the_target() -> None:
    p = prober()
    ping = start(p)
    req = p.tick(0.5, MEMBERS)[0]
    assert isinstance(req, SendPingReq)
    assert p.on_ack(req.relay, ping.seq, 0.7) == []
    assert p.stats["acked_indirect"] == 1
    assert not any(isinstance(a, SuspectMember) for a in p.tick(1.0, MEMBERS))


def test_missing_nacks_count_against_our_own_health() -> None:
    p = prober()
    ping = start(p)
    p.tick(0.5, MEMBERS)
    actions = p.tick(1.0, MEMBERS)
    assert SuspectMember(ping.target, ping.seq) in actions
    assert p.awareness == 2
    assert p.stats["missed_nacks"] == 1


def test_health_stretches_the_period_and_recovers_with_successes() -> None:
    p = prober(max_awareness=3)
    ping = start(p)
    now = 0.0
    for expected in (2, 3, 3):  # failed probes with missing nacks: +2 each, up to the cap
        m = p.multiplier
        p.tick(now + 0.5 * m, MEMBERS)  # the indirect probes go out; no nack comes back
        assert p.tick(now + 1.0 * m - 1e-6, MEMBERS) == []  # the period is stretched m times
        actions = p.tick(now + 1.0 * m, MEMBERS)
        assert actions[0] == SuspectMember(ping.target, ping.seq)
        assert isinstance(actions[1], SendPing)
        ping = actions[1]
        now += 1.0 * m
        assert p.awareness == expected
    assert p.next_deadline() == pytest.approx(now + 0.5 * 4)  # the direct timeout, 4 times
    p.on_ack(ping.target, ping.seq, now + 0.1)
    assert p.awareness == 2
    p.refuted()
    assert p.awareness == 3


def test_unexpected_acks_and_nacks_are_ignored_and_counted() -> None:
    p = prober()
    ping = start(p)
    stranger = nid(99)
    assert p.on_ack(stranger, ping.seq, 0.1) == []  # right seq, wrong node
    assert p.on_ack(ping.target, ping.seq + 1000, 0.1) == []  # a seq we never used
    p.on_nack(ping.target, ping.seq)  # the target is not a relay
    p.on_nack(stranger, 12345)
    assert p.stats["ack_unexpected"] == 2
    assert p.stats["nack_unexpected"] == 2
    p.on_ack(ping.target, ping.seq, 0.2)
    assert p.on_ack(ping.target, ping.seq, 0.3) == []  # a duplicate
    assert p.stats["acked"] == 1


def test_relaying_a_probe_answers_ack_or_nack() -> None:
    p = prober()
    requester, target = nid(5), nid(6)
    (ping,) = p.on_ping_req(requester, target, 77, 10.0)
    assert ping.target == target
    assert p.on_ack(nid(4), ping.seq, 10.1) == []  # only the target's ack counts
    assert p.on_ack(target, ping.seq, 10.1) == [SendAck(requester, 77)]
    (late,) = p.on_ping_req(requester, target, 78, 20.0)
    assert p.tick(20.0 + 0.5 * 0.8 - 0.01, MEMBERS[:1]) == []
    assert p.tick(20.0 + 0.5 * 0.8, MEMBERS[:1]) == [SendNack(requester, 78)]
    assert p.on_ack(target, late.seq, 20.9) == [SendAck(requester, 78)]  # late, still relayed


def test_a_nacked_relay_is_forgotten_at_the_end_of_its_period() -> None:
    p = prober()
    assert p.tick(0.0, MEMBERS[:1]) == []  # alone: the next probe is a period away
    (ping,) = p.on_ping_req(nid(5), nid(6), 9, 0.0)
    assert p.next_deadline() == pytest.approx(0.5 * 0.8)  # the nack is due first
    assert p.tick(0.4, MEMBERS[:1]) == [SendNack(nid(5), 9)]
    assert p.next_deadline() == pytest.approx(1.0)  # then it expires, with the period
    assert p.tick(1.0, MEMBERS[:1]) == []
    assert p.next_deadline() == pytest.approx(2.0)  # nothing left of it
    assert p.on_ack(nid(6), ping.seq, 1.1) == []  # too late: forgotten
    assert p.stats["ack_unexpected"] == 1


def test_relay_requests_about_ourselves_or_the_requester_or_beyond_the_cap_are_refused() -> None:
    p = prober()
    assert p.on_ping_req(nid(5), OWN, 1, 0.0) == []
    assert p.on_ping_req(nid(5), nid(5), 1, 0.0) == []
    for i in range(MAX_RELAYED):
        assert p.on_ping_req(nid(5), nid(6), i, 0.0)
    assert p.on_ping_req(nid(5), nid(6), 9999, 0.0) == []
    assert p.stats["ping_req_refused"] == 3
    p.tick(10.0, MEMBERS[:1])  # they expire after a period
    assert p.on_ping_req(nid(5), nid(6), 1, 10.0)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="probe_timeout"):
        prober(probe_timeout=1.0, probe_interval=1.0)
    with pytest.raises(ValueError, match="indirect_probes"):
        prober(indirect_probes=-1)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["ack", "nack", "silence"]), min_size=1, max_size=40))
def test_health_stays_within_its_bounds(outcomes: list[str]) -> None:
    p = prober(max_awareness=4)
    now = 0.0
    for outcome in outcomes:
        actions = p.tick(now, MEMBERS)
        ping = next((a for a in actions if isinstance(a, SendPing)), None)
        if ping is None:
            now = p.next_deadline()
            continue
        if outcome == "ack":
            p.on_ack(ping.target, ping.seq, now)
        else:
            for action in p.tick(now + p.probe_timeout * p.multiplier, MEMBERS):
                if isinstance(action, SendPingReq) and outcome == "nack":
                    p.on_nack(action.relay, action.seq)
        now = p.next_deadline()
        assert 0 <= p.awareness <= 4
        assert p.multiplier == p.awareness + 1


def test_a_refused_probe_fails_at_once_without_hurting_our_health() -> None:
    p = prober()
    ping = start(p)
    assert p.on_refused(ping.target, ping.seq + 1) == []  # not this probe
    assert p.on_refused(ping.target, ping.seq) == [SuspectMember(ping.target, ping.seq)]
    assert p.awareness == 0
    assert p.stats["refused"] == 1
    assert p.on_refused(ping.target, ping.seq) == []  # already over


def test_a_hurried_member_is_probed_next_and_still_in_its_round() -> None:
    p = prober()
    ping = start(p)
    p.on_ack(ping.target, ping.seq, 0.01)
    chosen = next(m for m in MEMBERS[1:] if m != ping.target)
    p.hurry(chosen)
    p.hurry(chosen)  # twice in a row is once
    p.hurry(OWN)  # never ourselves
    (following,) = p.tick(1.0, MEMBERS)
    assert isinstance(following, SendPing)
    assert following.target == chosen
    p.hurry(chosen)  # being probed now: nothing to hurry
    p.on_ack(chosen, following.seq, 1.01)
    targets = [ping.target, chosen]
    now = 2.0
    for _ in range(len(MEMBERS) - 2):
        nxt = start(p, now)
        p.on_ack(nxt.target, nxt.seq, now + 0.01)
        targets.append(nxt.target)
        now += 1.0
    # the round still covers every member, the hurried one included
    assert sorted(set(targets)) == sorted(MEMBERS[1:])
    assert targets.count(chosen) == 2


def test_a_hurried_member_no_longer_live_is_skipped() -> None:
    p = prober()
    ping = start(p)
    p.on_ack(ping.target, ping.seq, 0.01)
    gone, chosen = [m for m in MEMBERS[1:] if m != ping.target][:2]
    p.hurry(gone)
    p.hurry(chosen)
    live = [m for m in MEMBERS if m != gone]
    (following,) = p.tick(1.0, live)
    assert isinstance(following, SendPing)
    assert following.target == chosen
    assert p.stats["hurried"] == 1


@settings(max_examples=60, deadline=None)
@given(st.sets(st.integers(2, 10_000), min_size=2, max_size=40), st.integers(0, 10**9))
def test_aligned_probes_give_every_member_exactly_one_prober_per_period(
    numbers: set[int], period: int
) -> None:
    ids = [nid(n) for n in numbers]
    targets = []
    for own in ids:
        others = {m for m in ids if m != own}
        target = Prober(own, 0.0, random.Random(1)).aligned_target(others, period)
        assert target is not None
        assert target != own
        targets.append(target)
    assert sorted(t.raw for t in targets) == sorted(m.raw for m in ids)


def test_aligned_probes_visit_every_member_once_per_round() -> None:
    p = prober()
    others = set(MEMBERS[1:])
    round_ = [p.aligned_target(others, period) for period in range(100, 100 + len(others))]
    assert sorted(t.raw for t in round_) == sorted(m.raw for m in others)
    assert p.aligned_target(set(), 5) is None  # alone


def test_aligned_probes_start_on_the_wall_clocks_period_boundaries() -> None:
    p = prober()
    others = set(MEMBERS[1:])
    (ping,) = p.tick(0.0, others, wall=1000.3)  # late in period 1000
    assert isinstance(ping, SendPing)
    assert ping.target == p.aligned_target(others, 1000)
    p.on_ack(ping.target, ping.seq, 0.01)
    assert p.next_deadline() == pytest.approx(0.7)  # the boundary of period 1001
    assert p.tick(0.69, others, wall=1000.99) == []
    (following,) = p.tick(0.701, others, wall=1001.001)
    assert isinstance(following, SendPing)
    assert following.target == p.aligned_target(others, 1001)
    # a hurried member goes first
    p.on_ack(following.target, following.seq, 0.72)
    suspect = next(m for m in others if m != p.aligned_target(others, 1002))
    p.hurry(suspect)
    (hurried,) = p.tick(1.71, others, wall=1002.01)
    assert isinstance(hurried, SendPing)
    assert hurried.target == suspect
    assert p.stats["hurried"] == 1


MEMBER_AT = Address("198.51.100.7", 7420)


def refusal(target: Address | None, requested: Address, *, live: bool = True, lo: bool = False):
    return relay_refusal(
        requester_live=live, target_address=target, requested=requested, own_on_loopback=lo
    )


def test_relay_requests_only_from_a_live_member_for_a_member_at_its_known_address() -> None:
    assert refusal(MEMBER_AT, MEMBER_AT) is None
    assert refusal(MEMBER_AT, MEMBER_AT, live=False) == NOT_A_MEMBER
    assert refusal(None, MEMBER_AT) == TARGET_UNKNOWN
    assert refusal(MEMBER_AT, Address("198.51.100.8", 7420)) == WRONG_ADDRESS
    assert refusal(MEMBER_AT, Address("198.51.100.7", 53)) == WRONG_ADDRESS


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "::1",
        "::ffff:127.0.0.1",
        "169.254.1.1",
        "fe80::1",
        "224.0.0.1",
        "ff02::1",
        "0.0.0.0",
        "::",
        "255.255.255.255",
        "localhost",
    ],
)
def test_relay_requests_never_aim_at_this_host_its_link_or_a_group(host: str) -> None:
    there = Address(host, 7420)
    assert refusal(there, there) == FORBIDDEN_ADDRESS


def test_a_node_on_loopback_relays_to_loopback_members_only() -> None:
    for host in ("127.0.0.1", "::1", "::ffff:127.0.0.5"):
        there = Address(host, 7420)
        assert refusal(there, there, lo=True) is None
    for host in ("169.254.1.1", "224.0.0.1"):
        there = Address(host, 7420)
        assert refusal(there, there, lo=True) == FORBIDDEN_ADDRESS


def test_a_lagging_event_loop_is_ill_health_once_a_period() -> None:
    p = prober()
    p.lagged(0.05, 0.0)  # a loaded loop's jitter: nothing
    assert p.awareness == 0
    assert p.stats["lagged"] == 0
    assert not p.starved(0.0)
    p.lagged(0.3, 0.0)
    assert p.awareness == 1
    assert p.starved(1.9)  # no verdicts for a (now doubled) period
    assert p.starved_until == 2.0
    p.lagged(0.3, 1.9)  # the same (now doubled) period: counted, no further point
    assert p.awareness == 1
    assert p.stats["lagged"] == 2
    p.lagged(0.3, 2.0)
    assert p.awareness == 2
    assert not p.starved(5.0)


def test_a_probe_during_which_our_loop_lagged_suspects_nobody() -> None:
    p = prober()
    ping = start(p)
    p.tick(0.5, MEMBERS)
    p.lagged(0.4, 0.6)  # our own starvation: the ack may be unread in our socket buffer
    actions = p.tick(1.0, MEMBERS)
    assert not any(isinstance(a, SuspectMember) for a in actions)
    assert p.stats["inconclusive"] == 1
    assert p.stats["failed"] == 0
    assert p.awareness == 2  # the lag, and the probe that proved nothing
    # The next probe, without lag, suspects as before.
    following = next(a for a in actions if isinstance(a, SendPing))
    assert following.target != ping.target
    p.tick(1.0 + 0.5 * 3, MEMBERS)
    actions = p.tick(1.0 + 1.0 * 3, MEMBERS)
    assert SuspectMember(following.target, following.seq) in actions
