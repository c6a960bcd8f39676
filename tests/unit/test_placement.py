"""Where a home's shares go (plexinode.shards.placement)."""

from __future__ import annotations

import hashlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plexinode.identity import NodeId
from plexinode.shards.placement import (
    Candidate,
    Coding,
    Offer,
    PlacementPlan,
    PlacementRequest,
    PlacementResult,
    default_happy,
    network_prefix,
    rank,
    score,
)
from tests.unit.ids import nid

KEY = bytes(range(16))
OWNER = nid(10_000)


def cand(i: int, host: str = "127.0.0.1", zone: str = "") -> Candidate:
    return Candidate(nid(i), host, zone)


def request(
    candidates: list[Candidate], n: int, happy: int | None = None, key: bytes = KEY
) -> PlacementRequest:
    return PlacementRequest(
        key=key,
        owner=OWNER,
        candidates=tuple(candidates),
        indices=tuple(range(n)),
        happy=default_happy(1, n) if happy is None else happy,
    )


def run(plan: PlacementPlan, refusers: frozenset[NodeId] = frozenset()) -> list[Offer]:
    """Answer every offer (refusers refuse, the rest accept) until the plan is finished."""
    made: list[Offer] = []
    while fresh := plan.offers():
        made += fresh
        for offer in fresh:
            if offer.holder.node_id in refusers:
                assert plan.refused(offer.holder.node_id)
            else:
                assert plan.accepted(offer.holder.node_id)
    assert plan.finished
    return made


def place(candidates: list[Candidate], n: int, **kwargs: int) -> PlacementResult:
    plan = PlacementPlan(request(candidates, n, **kwargs))
    run(plan)
    return plan.result()


# -- ranking -------------------------------------------------------------------------------


def test_the_score_as_documented() -> None:
    expected = hashlib.blake2b(
        nid(1).raw, digest_size=32, key=KEY, person=b"pxn-placement"
    ).digest()
    assert score(KEY, nid(1)) == expected
    assert score(bytes(16), nid(1)) != expected
    with pytest.raises(ValueError, match="16 bytes"):
        score(b"short", nid(1))


def test_rank_is_ascending_score_whatever_the_input_order() -> None:
    nodes = [nid(i) for i in range(20)]
    ranked = rank(KEY, nodes)
    assert [score(KEY, n) for n in ranked] == sorted(score(KEY, n) for n in nodes)
    assert rank(KEY, reversed(nodes)) == ranked
    assert rank(KEY, nodes + nodes) == ranked
    assert rank(bytes(16), nodes) != ranked  # another key, another order


# -- coding parameters -----------------------------------------------------------------------


def test_default_happiness_is_seven_tenths_rounded_up_and_at_least_k() -> None:
    assert default_happy(3, 10) == 7
    assert default_happy(1, 1) == 1
    assert default_happy(3, 6) == 5  # 4.2 rounds up
    assert default_happy(4, 4) == 4  # 2.8 -> 3, but a restore needs 4
    assert Coding.of(3, 10) == Coding(3, 10, 7)
    assert Coding.of(3, 10, 3).happy == 3
    assert Coding.of(1, 256, 256).happy == 256


@pytest.mark.parametrize(
    ("k", "n", "happy", "rule"),
    [
        (4, 3, None, "k must be within 1..n"),
        (0, 3, None, "k must be within 1..n"),
        (1, 257, None, "zfec's limit"),
        (1, 0, None, "zfec's limit"),
        (3, 10, 2, "happiness must be within k..n"),
        (3, 10, 11, "happiness must be within k..n"),
    ],
)
def test_bad_coding_names_the_rule(k: int, n: int, happy: int | None, rule: str) -> None:
    with pytest.raises(ValueError, match=rule):
        Coding.of(k, n, happy)


# -- sites -----------------------------------------------------------------------------------


def test_sites_are_hosts_prefixes_and_zones() -> None:
    assert network_prefix("192.0.2.77") == "192.0.2.0/24"
    assert network_prefix("2001:db8:1:2:3::9") == "2001:db8:1:2::/64"
    assert network_prefix("node.example") == "node.example"
    c = Candidate(nid(1), "2001:db8:0:0::1", "rack-1")
    assert (c.host, c.prefix, c.zone) == ("2001:db8::1", "2001:db8::/64", "rack-1")
    assert Candidate(nid(1), "name").prefix == "name"
    mapped = Candidate(nid(1), "::ffff:192.0.2.9")
    assert (mapped.host, mapped.prefix) == ("192.0.2.9", "192.0.2.0/24")


def test_on_one_host_the_choice_is_plain_rank_order_whatever_the_zones() -> None:
    candidates = [cand(i, zone=f"z{i % 3}") for i in range(12)]
    expected = rank(KEY, [c.node_id for c in candidates])[:5]
    result = place(candidates, 5)
    assert list(result.holders.values()) == expected


def test_distinct_hosts_are_preferred_then_rank() -> None:
    ranked = rank(KEY, [nid(i) for i in range(6)])
    # The three best-ranked share one host; n = 3 takes the best of them, then the others.
    hosts = {ranked[0]: "10.0.0.1", ranked[1]: "10.0.0.1", ranked[2]: "10.0.0.1"}
    hosts |= {ranked[3]: "10.1.0.1", ranked[4]: "10.2.0.1", ranked[5]: "10.2.0.1"}
    candidates = [Candidate(node, host) for node, host in hosts.items()]
    result = place(candidates, 3)
    assert list(result.holders.values()) == [ranked[0], ranked[3], ranked[4]]
    # A fourth and fifth index: no new host is left, so the least loaded hosts, then rank: the
    # fourth goes to 10.0.0.1 (a tie of one holder each, rank decides), the fifth to 10.2.0.1
    # (one holder) rather than 10.0.0.1 (two).
    result = place(candidates, 5)
    assert list(result.holders.values()) == [ranked[0], ranked[3], ranked[4], ranked[1], ranked[5]]


def test_shares_never_pile_up_on_one_of_two_hosts() -> None:
    candidates = [cand(i, "10.0.0.1" if i % 2 else "10.0.1.1") for i in range(18)]
    host_of = {c.node_id: c.host for c in candidates}
    for seed in range(40):
        plan = PlacementPlan(request(candidates, 10, key=bytes([seed]) * 16))
        run(plan)
        hosts = [host_of[node] for node in plan.result().holders.values()]
        assert sorted(hosts.count(h) for h in set(hosts)) == [5, 5]


def test_a_new_prefix_beats_a_new_zone_and_a_new_zone_beats_rank() -> None:
    ranked = rank(KEY, [nid(i) for i in range(4)])
    candidates = [
        Candidate(ranked[0], "10.0.0.1", "a"),
        Candidate(ranked[1], "10.0.0.2", "b"),  # same /24, new zone
        Candidate(ranked[2], "10.0.0.3", "a"),  # same /24, same zone
        Candidate(ranked[3], "10.9.0.1", "a"),  # new /24, same zone
    ]
    result = place(candidates, 4)
    assert list(result.holders.values()) == [ranked[0], ranked[3], ranked[1], ranked[2]]


def test_the_owner_is_never_chosen_and_its_site_counts_as_used() -> None:
    ranked = rank(KEY, [nid(i) for i in range(4)] + [OWNER])
    at = {node: ("10.0.0.1" if i % 2 else "10.5.0.1") for i, node in enumerate(ranked)}
    candidates = [Candidate(node, at[node]) for node in ranked]
    result = place(candidates, 2, happy=2)
    assert OWNER not in result.holders.values()
    owner_host = at[OWNER]
    first = result.holders[0]
    assert at[first] != owner_host
    assert first == next(node for node in ranked if at[node] != owner_host)


# -- offers and answers ----------------------------------------------------------------------


def test_a_refusal_moves_the_index_to_the_next_candidate_never_back() -> None:
    candidates = [cand(i) for i in range(6)]
    ranked = rank(KEY, [c.node_id for c in candidates])
    plan = PlacementPlan(request(candidates, 3, happy=3))
    first = plan.offers()
    assert [(o.index, o.holder.node_id) for o in first] == list(enumerate(ranked[:3]))
    assert plan.offers() == ()
    assert plan.refused(ranked[1])
    assert not plan.refused(ranked[1])  # answered already
    assert [(o.index, o.holder.node_id) for o in plan.offers()] == [(1, ranked[3])]
    assert plan.accepted(ranked[0])
    assert not plan.accepted(ranked[0])
    assert not plan.accepted(nid(999))  # never asked
    assert plan.refused(ranked[0])  # accepted, then failed: index 0 moves too
    assert [(o.index, o.holder.node_id) for o in plan.offers()] == [(0, ranked[4])]
    assert not plan.finished
    with pytest.raises(RuntimeError, match="outstanding"):
        plan.result()
    for node in (ranked[2], ranked[3], ranked[4]):
        assert plan.accepted(node)
    result = plan.result()
    assert result.holders == {0: ranked[4], 1: ranked[3], 2: ranked[2]}
    assert result.met
    assert result.refusal is None


def test_too_few_suitable_members_is_refused_naming_how_many_were_found() -> None:
    candidates = [cand(i) for i in range(6)] + [Candidate(OWNER, "127.0.0.1")]
    plan = PlacementPlan(request(candidates, 10))  # happy 7, 6 found (the owner is not one)
    assert plan.offers() == ()
    assert plan.finished
    assert plan.hopeless
    result = plan.result()
    assert not result.met
    assert result.holders == {}
    assert result.unplaced == tuple(range(10))
    assert result.found == 6
    assert result.refusal == "0 distinct holders, 7 needed (6 suitable members found)"


def test_fewer_members_than_n_but_happy_leaves_indices_for_repair() -> None:
    result = place([cand(i) for i in range(8)], 10)
    assert result.met
    assert result.distinct == 8
    assert len(result.unplaced) == 2
    assert set(result.holders) | set(result.unplaced) == set(range(10))


def test_refusals_can_make_a_plan_hopeless() -> None:
    candidates = [cand(i) for i in range(4)]
    plan = PlacementPlan(request(candidates, 4, happy=3))
    offers = plan.offers()
    assert not plan.hopeless
    plan.refused(offers[0].holder.node_id)
    assert not plan.hopeless
    plan.refused(offers[1].holder.node_id)
    assert plan.hopeless
    plan.accepted(offers[2].holder.node_id)
    plan.accepted(offers[3].holder.node_id)
    result = plan.result()
    assert not result.met
    assert result.refusal == "2 distinct holders, 3 needed (4 suitable members found)"
    assert result.unplaced == (0, 1)


def test_a_request_is_checked() -> None:
    base = request([cand(1)], 1, happy=1)
    with pytest.raises(ValueError, match="16 bytes"):
        request([cand(1)], 1, key=b"x")
    with pytest.raises(ValueError, match="listed twice"):
        request([cand(1), cand(1, "10.0.0.1")], 1)
    for indices, keep in (((0, 0), {}), ((0,), {0: nid(5)})):
        with pytest.raises(ValueError, match="index is listed twice"):
            PlacementRequest(base.key, OWNER, base.candidates, indices, 1, keep)
    with pytest.raises(ValueError, match="at least 1"):
        request([cand(1)], 1, happy=0)


def test_kept_and_avoided_holders_are_not_chosen_and_kept_ones_count() -> None:
    candidates = [cand(i) for i in range(5)]
    req = PlacementRequest(
        KEY, OWNER, tuple(candidates), (1, 2), happy=3, keep={0: nid(0)}, avoid=frozenset({nid(1)})
    )
    plan = PlacementPlan(req)
    run(plan)
    result = plan.result()
    assert set(result.holders) == {1, 2}
    assert not {nid(0), nid(1)} & set(result.holders.values())
    assert result.distinct == 3
    assert result.found == 3


# -- properties ------------------------------------------------------------------------------

HOSTS = ["127.0.0.1", "10.0.0.1", "10.0.0.2", "10.0.1.1", "2001:db8::1", "2001:db8::2"]


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[Candidate], int, int, frozenset[NodeId]]:
    ids = draw(st.lists(st.integers(0, 60), min_size=1, max_size=30, unique=True))
    candidates = [
        Candidate(nid(i), draw(st.sampled_from(HOSTS)), draw(st.sampled_from(["", "a", "b"])))
        for i in ids
    ]
    if draw(st.booleans()):
        candidates.append(Candidate(OWNER, draw(st.sampled_from(HOSTS))))
    n = draw(st.integers(1, 20))
    happy = draw(st.integers(1, n))
    refusers = frozenset(draw(st.sets(st.sampled_from([c.node_id for c in candidates]))))
    return candidates, n, happy, refusers


@settings(max_examples=200, deadline=None)
@given(scenarios(), st.randoms(use_true_random=False))
def test_placement_properties(
    scenario: tuple[list[Candidate], int, int, frozenset[NodeId]], rnd: random.Random
) -> None:
    candidates, n, happy, refusers = scenario
    plan = PlacementPlan(request(candidates, n, happy))
    made = run(plan, refusers)
    result = plan.result()
    offered = [o.holder.node_id for o in made]
    assert len(offered) == len(set(offered))  # nobody is asked twice, a refuser never again
    assert OWNER not in offered
    holders = list(result.holders.values())
    assert len(holders) == len(set(holders))  # no member holds two indices
    assert not set(holders) & refusers
    assert set(result.holders) | set(result.unplaced) == set(range(n))
    assert not set(result.holders) & set(result.unplaced)
    suitable = {c.node_id for c in candidates} - {OWNER}
    assert result.found == len(suitable)
    assert result.distinct == len(holders)
    assert result.met == (len(holders) >= happy)
    if result.found < happy:
        assert made == []
    else:
        assert len(holders) == min(n, len(suitable - refusers))
    # The same plan from the candidates in another order.
    shuffled = list(candidates)
    rnd.shuffle(shuffled)
    again = PlacementPlan(request(shuffled, n, happy))
    assert run(again, refusers) == made


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 200), min_size=1, max_size=40, unique=True),
    st.integers(201, 400),
    st.integers(1, 15),
    st.booleans(),
)
def test_a_new_member_moves_at_most_one_holder(
    ids: list[int], newcomer: int, n: int, one_host: bool
) -> None:
    # Minimal disruption: on one host (tests) or on distinct hosts (a real network), the
    # chosen set gains at most the newcomer and loses at most one member.
    def site(i: int) -> Candidate:
        return cand(i) if one_host else cand(i, f"10.{i // 256}.{i % 256}.1")

    before = set(place([site(i) for i in ids], n, happy=1).holders.values())
    after = set(place([site(i) for i in [*ids, newcomer]], n, happy=1).holders.values())
    assert after - before <= {nid(newcomer)}
    assert len(before - after) <= 1
    assert len(after) >= len(before)


def test_a_refused_holder_frees_its_site() -> None:
    ranked = rank(KEY, [nid(i) for i in range(4)])
    at = {
        ranked[0]: "10.0.0.1",
        ranked[1]: "10.1.0.1",
        ranked[2]: "10.1.0.2",
        ranked[3]: "10.0.0.2",
    }
    plan = PlacementPlan(request([Candidate(node, host) for node, host in at.items()], 2, 2))
    assert [o.holder.node_id for o in plan.offers()] == ranked[:2]
    plan.refused(ranked[0])
    # 10.0.0.0/24 is free again: index 0 goes to the other member there, not to rank 2.
    assert [(o.index, o.holder.node_id) for o in plan.offers()] == [(0, ranked[3])]
