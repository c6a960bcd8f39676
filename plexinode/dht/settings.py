"""Settings of the Kademlia DHT (`config` composes them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DhtSettings:
    """Kademlia DHT."""

    # Bucket size and replication factor. Kademlia's paper and Mainline use 8; 20 (libp2p,
    # S/Kademlia) keeps lookups reliable when many nodes leave without notice.
    k: int = 20
    # Queries in flight per lookup path: 3 is the paper's value, a balance of latency and load.
    alpha: int = 3
    # Disjoint lookup paths (S/Kademlia): a set of colluding liars must capture every path to
    # defeat a lookup. 4 keeps >99% success at 20% adversaries in S/Kademlia's evaluation.
    paths: int = 4
    # A bucket with no lookup or new contact for this long is refreshed with a random lookup
    # into it (the paper's hour); quiet tables cost almost no traffic.
    refresh_interval: float = 3600.0
    # Records are republished this often: by their owner (re-signed, with a lifetime of three
    # intervals, so two missed rounds are survivable) and by each node holding them that has
    # not seen them stored in the meantime (the paper's hour, and its optimisation).
    republish_interval: float = 3600.0
    # A contact not heard from for this long is pinged (one at a time, spread over the
    # interval): one that does not answer is no longer handed to other nodes, so replies stay
    # useful after many nodes left at once. Mainline's 15 minutes; about 0.2 pings/s per node
    # with a full table.
    liveness_interval: float = 900.0
    # A network parameter, the same on every node of a network: node IDs must solve a puzzle of
    # this many bits (S/Kademlia's static puzzle), so that making many identities, to surround
    # a key or flood routing tables, costs about 2**bits key pairs each. 16 bits is a few
    # seconds once per node; datagrams and contacts with IDs that fail it are dropped.
    id_difficulty: int = 16
