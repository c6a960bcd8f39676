"""Member table digests: order independence, sensitivity to every belief, bucket diffs."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plexinode.membership.digest import (
    BUCKET_BYTES,
    BUCKETS,
    bucket_digests,
    bucket_of,
    differing_buckets,
    root_digest,
)
from plexinode.membership.members import State
from tests.unit.ids import nid

beliefs_strategy = st.lists(
    st.tuples(st.integers(0, 5000), st.integers(0, 2**64 - 1), st.sampled_from(list(State))),
    max_size=40,
    unique_by=lambda b: b[0],
)


@settings(max_examples=200, deadline=None)
@given(beliefs_strategy, st.randoms(use_true_random=False))
def test_digests_do_not_depend_on_the_order_members_were_learnt(
    raw: list[tuple[int, int, State]], rng: random.Random
) -> None:
    beliefs = [(nid(n), inc, state) for n, inc, state in raw]
    shuffled = beliefs[:]
    rng.shuffle(shuffled)
    assert bucket_digests(beliefs) == bucket_digests(shuffled)
    assert len(bucket_digests(beliefs)) == BUCKETS * BUCKET_BYTES


@settings(max_examples=200, deadline=None)
@given(beliefs_strategy.filter(bool), st.data())
def test_any_change_of_one_belief_changes_exactly_its_bucket(
    raw: list[tuple[int, int, State]], data: st.DataObject
) -> None:
    beliefs = [(nid(n), inc, state) for n, inc, state in raw]
    index = data.draw(st.integers(0, len(beliefs) - 1))
    node_id, inc, state = beliefs[index]
    change = data.draw(
        st.sampled_from(["incarnation", "state", "removed"]).filter(
            lambda c: c != "incarnation" or inc < 2**64 - 1
        )
    )
    changed = beliefs[:]
    if change == "incarnation":
        changed[index] = (node_id, inc + 1, state)
    elif change == "state":
        changed[index] = (node_id, inc, State((state + 1) % len(State)))
    else:
        del changed[index]
    ours, theirs = bucket_digests(beliefs), bucket_digests(changed)
    assert differing_buckets(ours, theirs) == {bucket_of(node_id)}
    assert root_digest(ours) != root_digest(theirs)


def test_equal_tables_have_equal_roots_and_no_differing_bucket() -> None:
    beliefs = [(nid(i), i, State.ALIVE) for i in range(100)]
    digests = bucket_digests(beliefs)
    assert root_digest(digests) == root_digest(bucket_digests(list(reversed(beliefs))))
    assert differing_buckets(digests, digests) == set()


def test_digests_of_different_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="lengths"):
        differing_buckets(bytes(16), bytes(24))
