"""What a repair of one home must do, and who does it (plexinode.shards.repair_plan)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plexinode.identity import NodeId
from plexinode.shards.placement import Candidate, rank
from plexinode.shards.repair_plan import (
    Holding,
    Move,
    RepairPlan,
    RepairRequest,
    elect_repairer,
    plan_repair,
)
from tests.unit.ids import nid

KEY = bytes(range(16))
OWNER = nid(10_000)


def live(*ids: int) -> tuple[Candidate, ...]:
    return tuple(Candidate(nid(i), "127.0.0.1") for i in ids)


def holdings(*pairs: tuple[int, int]) -> tuple[Holding, ...]:
    return tuple(Holding(index, nid(node)) for index, node in pairs)


def plan(
    n: int,
    held: tuple[Holding, ...],
    members: tuple[Candidate, ...],
    gone: frozenset[int] = frozenset(),
) -> RepairPlan:
    return plan_repair(RepairRequest(KEY, OWNER, n, held, members, frozenset(nid(i) for i in gone)))


def targets(repair: RepairPlan) -> dict[int, NodeId]:
    return {o.index: o.holder.node_id for o in repair.start().offers()}


# -- election --------------------------------------------------------------------------------


def test_the_repairer_is_the_live_holder_of_lowest_rank() -> None:
    holders = [nid(i) for i in range(8)]
    ranked = rank(KEY, holders)
    assert elect_repairer(KEY, holders, set(holders)) == ranked[0]
    assert elect_repairer(KEY, reversed(holders), set(holders)) == ranked[0]
    assert elect_repairer(KEY, holders, set(holders) - {ranked[0]}) == ranked[1]
    assert elect_repairer(KEY, holders, {nid(99)}) is None
    assert elect_repairer(KEY, [], set(holders)) is None


def test_members_with_different_views_agree_once_their_views_agree() -> None:
    holders = [nid(i) for i in range(6)]
    ranked = rank(KEY, holders)
    # Member X still believes the best-ranked holder alive; member Y has seen it die.
    view_x = set(holders)
    view_y = set(holders) - {ranked[0]}
    x, y = elect_repairer(KEY, holders, view_x), elect_repairer(KEY, holders, view_y)
    assert (x, y) == (ranked[0], ranked[1])  # each its own view's choice: the claim settles it
    # Once X hears of the death, both name the same repairer, whatever order each lists.
    assert elect_repairer(KEY, reversed(holders), view_y) == y
    assert elect_repairer(KEY, sorted(holders), view_y | {nid(77)}) == y  # a non-holder


# -- plans -----------------------------------------------------------------------------------


def test_a_healthy_home_needs_nothing() -> None:
    repair = plan(3, holdings((0, 1), (1, 2), (2, 3)), live(1, 2, 3, 4))
    assert repair.healthy
    assert repair.keep == {0: nid(1), 1: nid(2), 2: nid(3)}
    assert repair.surplus == ()
    assert repair.start().offers() == ()


def test_a_gone_holders_index_is_regenerated_elsewhere() -> None:
    repair = plan(3, holdings((0, 1), (1, 2), (2, 3)), live(1, 3, 4, 5), gone=frozenset({2}))
    assert repair.keep == {0: nid(1), 2: nid(3)}
    assert repair.moves == (Move(1, None),)
    new = targets(repair)
    assert set(new) == {1}
    assert new[1] in {nid(4), nid(5)}
    assert new[1] == next(n for n in rank(KEY, [nid(4), nid(5)]))


def test_an_index_moves_off_a_node_holding_two() -> None:
    # Tahoe-LAFS's leftover: indices 0 and 1 both on node 1.
    repair = plan(3, holdings((0, 1), (1, 1), (2, 2)), live(1, 2, 3))
    assert repair.keep == {0: nid(1), 2: nid(2)}
    assert repair.moves == (Move(1, nid(1)),)
    assert repair.surplus == (Holding(1, nid(1)),)
    assert targets(repair) == {1: nid(3)}


def test_a_second_copy_elsewhere_keeps_both_in_place() -> None:
    # Node 1 holds 0 and 1, node 2 holds 1 as well: 0 stays on 1, 1 on 2, nothing moves.
    repair = plan(2, holdings((0, 1), (1, 1), (1, 2)), live(1, 2, 3))
    assert repair.healthy
    assert repair.keep == {0: nid(1), 1: nid(2)}
    assert repair.surplus == (Holding(1, nid(1)),)


def test_a_waiting_holder_keeps_its_index_and_is_not_asked() -> None:
    # Node 2 is neither live nor gone (stopped, inside its grace period): no repair traffic.
    repair = plan(3, holdings((0, 1), (1, 2), (2, 3)), live(1, 3, 4))
    assert repair.healthy
    assert repair.keep[1] == nid(2)
    # A doubled index whose only other copy waits: the live one is the source.
    repair = plan(3, holdings((0, 1), (1, 1), (1, 2), (2, 2)), live(1, 4))
    assert repair.keep == {0: nid(1), 1: nid(2)} or repair.keep == {0: nid(1), 2: nid(2)}
    assert all(m.source in {None, nid(1)} for m in repair.moves)


def test_lost_indices_come_before_doubled_ones() -> None:
    held = holdings((0, 1), (1, 1), (2, 2))  # 3 lost, 1 doubled on node 1
    repair = plan(4, held, live(1, 2, 5))
    assert repair.moves == (Move(3, None), Move(1, nid(1)))
    assert targets(repair) == {3: nid(5)}  # one member to spare: the lost index gets it
    result = repair.start()
    result.accepted(nid(5))
    assert result.result().unplaced == (1,)


def test_what_does_not_count() -> None:
    held = holdings((0, 1), (1, 2), (7, 3), (-1, 3), (2, 4))
    held += (Holding(2, OWNER),)
    repair = plan(3, held, (*live(1, 2, 3, 5), Candidate(OWNER, "127.0.0.1")), gone=frozenset({4}))
    assert repair.ignored == 2
    assert repair.keep == {0: nid(1), 1: nid(2)}
    assert repair.moves == (Move(2, None),)
    assert OWNER not in targets(repair).values()
    assert set(targets(repair).values()) <= {nid(3), nid(5)}


def test_a_refused_target_moves_on() -> None:
    repair = plan(2, holdings((0, 1)), live(1, 2, 3))
    placement = repair.start()
    (first,) = placement.offers()
    assert placement.refused(first.holder.node_id)
    (second,) = placement.offers()
    assert second.index == 1
    assert second.holder.node_id not in {first.holder.node_id, nid(1)}


def test_n_is_checked() -> None:
    for n in (0, 257):
        with pytest.raises(ValueError, match="zfec's limit"):
            plan(n, (), live(1))


# -- properties ------------------------------------------------------------------------------


@st.composite
def homes(draw: st.DrawFn) -> tuple[int, tuple[Holding, ...], set[int], frozenset[int]]:
    n = draw(st.integers(1, 12))
    nodes = list(range(25))
    held = tuple(
        Holding(draw(st.integers(-1, n)), nid(draw(st.sampled_from(nodes))))
        for _ in range(draw(st.integers(0, 2 * n)))
    )
    members = draw(st.sets(st.sampled_from(nodes)))
    gone = frozenset(draw(st.sets(st.sampled_from(nodes))))
    return n, held, members, gone


@settings(max_examples=300, deadline=None)
@given(homes())
def test_a_repair_restores_the_spread(
    home: tuple[int, tuple[Holding, ...], set[int], frozenset[int]],
) -> None:
    n, held, members, gone = home
    candidates = live(*sorted(members))
    repair = plan(n, held, candidates, gone)
    keepers = list(repair.keep.values())
    assert len(keepers) == len(set(keepers))  # no keeper keeps two indices
    assert not {nid(i) for i in gone} & set(keepers)
    assert set(repair.keep) | {m.index for m in repair.moves} == set(range(n))
    assert not set(repair.keep) & {m.index for m in repair.moves}
    counted = {h for h in held if 0 <= h.index < n and h.holder not in {nid(i) for i in gone}}
    assert all(repair.keep.get(h.index) == h.holder or h in repair.surplus for h in counted)
    # Place everything (every target accepts), drop the surplus, and plan again.
    placement = repair.start()
    offers = placement.offers()
    for offer in offers:
        placement.accepted(offer.holder.node_id)
    result = placement.result()
    new = list(result.holders.values())
    assert not set(new) & ({nid(i) for i in gone} | {h.holder for h in counted} | {OWNER})
    assert len(set(new) | set(keepers)) == len(new) + len(keepers)
    after = holdings() + tuple(Holding(i, node) for i, node in repair.keep.items())
    after += tuple(Holding(i, node) for i, node in result.holders.items())
    again = plan(n, after, candidates, gone)
    assert {m.index for m in again.moves} == set(result.unplaced)
    assert again.surplus == ()
    # The same plan whatever order the holdings come in.
    assert plan(n, held[::-1], candidates[::-1], gone).moves == repair.moves


def test_keepers_are_a_maximum_matching_not_a_greedy_one() -> None:
    best, other = rank(KEY, [nid(1), nid(2)])
    # Index 0 sits on both nodes, index 1 only on the better-ranked one: a greedy choice would
    # keep 0 on `best` and move 1; the matching keeps 0 on `other` and moves nothing.
    held = (Holding(0, best), Holding(0, other), Holding(1, best))
    repair = plan(2, held, live(1, 2, 3))
    assert repair.healthy
    assert repair.keep == {0: other, 1: best}


def test_a_live_copy_is_kept_before_a_waiting_one() -> None:
    best, other = rank(KEY, [nid(1), nid(2)])
    # `best` waits (neither live nor gone); `other` is live: the live copy is the keeper.
    waiting, alive = best, other
    held = (Holding(0, waiting), Holding(0, alive))
    repair = plan(1, held, (Candidate(alive, "127.0.0.1"),))
    assert repair.keep == {0: alive}
    assert repair.surplus == (Holding(0, waiting),)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 4),
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 4)), max_size=10),
)
def test_as_many_indices_stay_in_place_as_can(n: int, pairs: list[tuple[int, int]]) -> None:
    held = holdings(*[(i, node) for i, node in pairs if i < n])
    repair = plan(n, held, live(0, 1, 2, 3, 4))
    choices = [[None, *sorted({node for i, node in pairs if i == index})] for index in range(n)]
    best = max(
        sum(node is not None for node in pick)
        for pick in itertools.product(*choices)
        if len([x for x in pick if x is not None]) == len({x for x in pick if x is not None})
    )
    assert len(repair.keep) == best


def test_the_repair_view_waits_the_grace_for_the_dead_but_not_for_those_who_left() -> None:
    from plexinode.shards.repair_plan import MemberState, repair_view

    members = [
        MemberState(nid(1), "alive", 0.0, "10.0.0.1", "z"),
        MemberState(nid(2), "dead", 50.0, "10.0.0.2"),  # dead for 50 s: waiting
        MemberState(nid(3), "dead", 0.0, "10.0.0.3"),  # dead for 100 s: gone
        MemberState(nid(4), "left", 99.0, "10.0.0.4"),
        MemberState(nid(5), "stopped", 0.0, "10.0.0.5"),
        MemberState(nid(6), "suspect", 0.0, "10.0.0.6"),
    ]
    candidates, gone = repair_view(members, now=100.0, grace=60.0)
    assert candidates == (Candidate(nid(1), "10.0.0.1", "z"),)
    assert gone == {nid(3), nid(4)}


def test_a_claim_is_won_by_more_than_half_of_the_holders_counted() -> None:
    from plexinode.shards.repair_plan import claim_won

    assert claim_won(1, 1)
    assert not claim_won(1, 2)
    assert claim_won(2, 3)
    assert not claim_won(2, 4)
