"""What the admin commands show of membership: the members listing, the counts, cluster-state
entries and the counters of ``status``."""

from __future__ import annotations

import collections
import random

from plexinode.identity import Identity
from plexinode.membership import views
from plexinode.membership.members import MemberView, State
from plexinode.membership.probe import Prober
from plexinode.membership.state import StateMap, sign_entry
from plexinode.net.address import Address
from tests.unit.ids import nid

OWN = nid(5)


def view(n: int, state: State = State.ALIVE, **tags: str) -> MemberView:
    return MemberView(nid(n), Address(f"10.0.0.{n}", 7420), n, state, 0.0, tags)


def test_ourselves_first_then_by_state_then_by_id() -> None:
    members = [view(9, State.DEAD), view(7), view(5), view(3, State.SUSPECT), view(2)]
    ordered = views.ordered(members, OWN)
    assert [m.node_id for m in ordered] == [nid(5), nid(2), nid(7), nid(3), nid(9)]


def test_a_node_that_left_shows_itself_as_left() -> None:
    assert views.shown_state(view(5), OWN, left=True) is State.LEFT
    assert views.shown_state(view(5), OWN, left=False) is State.ALIVE
    assert views.shown_state(view(6), OWN, left=True) is State.ALIVE


def test_counts_by_state() -> None:
    members = [
        view(5),
        view(6),
        view(7, State.SUSPECT),
        view(8, State.DEAD),
        view(9, State.STOPPED),
    ]
    assert views.counts(members, OWN, left=False) == {
        "alive": 2,
        "suspect": 1,
        "dead": 1,
        "left": 0,
        "stopped": 1,
    }
    assert views.counts(members, OWN, left=True)["left"] == 1
    # Not ready yet: alone, alive.
    alone = {"alive": 1, "suspect": 0, "dead": 0, "left": 0, "stopped": 0}
    assert views.counts(None, OWN, left=False) == alone


def test_a_member_as_members_json_prints_it() -> None:
    described = views.describe(view(5, role="relay"), OWN, left=True)
    assert described == {
        "node_id": str(nid(5)),
        "address": "10.0.0.5:7420",
        "state": "left",
        "incarnation": 5,
        "tags": {"role": "relay"},
        "self": True,
    }
    assert views.describe(view(6), OWN, left=True)["self"] is False


def test_cluster_state_entries_as_state_list_prints_them() -> None:
    writer = Identity.from_seed(bytes(32))
    entry = sign_entry(writer, "net.motd", b"caf\xc3\xa9 \xff", (1_500, 0))
    assert views.describe_entry(entry) == {
        "key": "net.motd",
        "value": "café \ufffd",
        "deleted": False,
        "written_at": 1.5,
        "writer": str(writer.node_id),
    }
    tombstone = sign_entry(writer, "net.motd", None, (2_000, 0))
    assert views.describe_entry(tombstone)["value"] is None
    assert views.describe_entry(tombstone)["deleted"] is True


def test_the_counters_of_status() -> None:
    prober = Prober(OWN, 0.0, random.Random(1))
    prober.stats["probes"] += 3
    prober.refuted()
    state = StateMap()
    state.stats["refused_full"] += 1
    summary = views.summary(collections.Counter(claims_accepted=4), prober, 2, state)
    assert summary == {
        "claims": {"claims_accepted": 4},
        "probes": {"probes": 3},
        "awareness": 1,
        "gossip_queued": 2,
        "state_entries": 0,
        "state": {"refused_full": 1},
    }
