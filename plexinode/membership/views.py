"""What the admin commands show of membership: members, counts, cluster-state entries and
counters, as ``plexinode members``, ``status`` and ``state list`` print them (sans-I/O).

A node that left shows itself as ``left`` (its table keeps its own entry alive: nobody
accuses itself), and a node not ready yet counts itself alone, alive.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from plexinode.identity import NodeId
from plexinode.membership.beliefs import MemberView, State
from plexinode.membership.probe import Prober
from plexinode.membership.state import StateEntry, StateMap


def ordered(members: Iterable[MemberView], own_id: NodeId) -> list[MemberView]:
    """`members` as listed: ourselves first, then by state, then by node ID."""
    return sorted(members, key=lambda m: (m.node_id != own_id, m.state, str(m.node_id)))


def shown_state(member: MemberView, own_id: NodeId, left: bool) -> State:
    """The state to show for a member (our own is ``left`` once we left)."""
    return State.LEFT if member.node_id == own_id and left else member.state


def counts(members: Iterable[MemberView] | None, own_id: NodeId, left: bool) -> dict[str, int]:
    """Members by state, ourselves included (``status``); `members` None while not ready."""
    totals = dict.fromkeys(("alive", "suspect", "dead", "left", "stopped"), 0)
    if members is None:
        totals["alive"] = 1
        return totals
    for member in members:
        totals[shown_state(member, own_id, left).name.lower()] += 1
    return totals


def describe(member: MemberView, own_id: NodeId, left: bool) -> dict[str, Any]:
    """A member as ``plexinode members --json`` prints it."""
    return {
        "node_id": str(member.node_id),
        "address": str(member.address),
        "state": shown_state(member, own_id, left).name.lower(),
        "incarnation": member.incarnation,
        "tags": dict(member.tags),
        "self": member.node_id == own_id,
    }


def describe_entry(entry: StateEntry) -> dict[str, Any]:
    """A cluster-state entry as ``plexinode state list --json`` prints it."""
    return {
        "key": entry.key,
        "value": None if entry.deleted else entry.value.decode(errors="replace"),
        "deleted": entry.deleted,
        "written_at": entry.wall_ms / 1000,
        "writer": str(NodeId.from_public_key(entry.writer)),
    }


def summary(
    claims: Mapping[str, int], prober: Prober, gossip_queued: int, state: StateMap
) -> dict[str, Any]:
    """The counters ``status`` shows under ``membership``."""
    return {
        "claims": dict(claims),
        "probes": dict(prober.stats),
        "awareness": prober.awareness,
        "gossip_queued": gossip_queued,
        "state_entries": len(state),
        "state": dict(state.stats),
    }
