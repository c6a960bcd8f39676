"""The table of settings: one row per setting, its key, kind and help."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from plexinode.config.kinds import (
    Kind,
    address,
    address_list,
    choice,
    duration,
    integer,
    network_list,
    size,
    string,
)
from plexinode.config.settings import Settings

ENV_PREFIX: Final = "PLEXINODE_"


@dataclass(frozen=True, slots=True)
class Setting:
    """One configurable setting: its dotted key, kind and help text."""

    key: str
    kind: Kind
    help: str

    @property
    def env_var(self) -> str:
        """The environment variable that sets it: ``PLEXINODE_DATAGRAM_REQUEST_TIMEOUT``."""
        return env_var_for(self.key)

    @property
    def default(self) -> Any:
        """The default: the matching dataclass field of a default `Settings`."""
        value: Any = Settings()
        for part in self.key.split("."):
            value = getattr(value, part)
        return value


def env_var_for(key: str) -> str:
    """The environment variable name of a dotted setting key."""
    return ENV_PREFIX + re.sub(r"[.-]", "_", key).upper()


NETWORK_NAME_RULE: Final = "must be 1-64 characters of a-z, 0-9 and '-'"

SETTINGS: Final[tuple[Setting, ...]] = (
    Setting(
        "listen",
        address(),
        "Address to listen on, HOST:PORT (UDP and TCP share the port); port 0 picks a free one.",
    ),
    Setting(
        "bootstrap",
        address_list(),
        "Addresses of known nodes to contact at start-up (comma-separated in the environment).",
    ),
    Setting(
        "network",
        string(r"[a-z0-9-]{1,64}", "name of 1-64 characters a-z, 0-9, -", NETWORK_NAME_RULE),
        "Name of the network this node belongs to; nodes only talk to nodes of the same network.",
    ),
    Setting("log_level", choice("debug", "info", "warning", "error"), "Least severe log level."),
    Setting("log_format", choice("text", "json"), "Log line format: text or json (one object)."),
    Setting(
        "datagram.request_timeout",
        duration(),
        "How long to wait for the answer to a datagram request before retrying.",
    ),
    Setting(
        "datagram.retries",
        integer(0, 10),
        "Extra attempts of a datagram request after the first one times out.",
    ),
    Setting(
        "datagram.replay_window",
        integer(1, 1 << 31),
        "How many of a sender's datagrams below its newest one a datagram is still accepted.",
    ),
    Setting(
        "datagram.replay_memory",
        duration(),
        "How long replay state is kept for a sender no longer heard from.",
    ),
    Setting(
        "datagram.max_inflight_handlers",
        integer(1, 10_000),
        "Most incoming datagram requests handled at once; more get a BUSY error.",
    ),
    Setting(
        "datagram.peer_request_rate",
        integer(1, 1_000_000),
        "Requests per second one peer may make of each request type; excess ones are dropped.",
    ),
    Setting(
        "datagram.host_datagram_rate",
        integer(1, 10_000_000),
        "Datagrams per second accepted from one host (IPv4 address, IPv6 /64), any address "
        "but the trusted networks.",
    ),
    Setting(
        "datagram.trusted_hosts",
        network_list(),
        "Networks (CIDR) exempt from the per-host datagram rate (comma-separated in the "
        "environment).",
    ),
    Setting(
        "datagram.host_failure_rate",
        integer(0, 1_000_000),
        "Failed signature checks per second one host may cause before its datagrams are "
        "dropped unchecked.",
    ),
    Setting(
        "datagram.host_failure_burst",
        integer(1, 1_000_000),
        "Failed signature checks one host may cause at once.",
    ),
    Setting(
        "stream.handshake_timeout",
        duration(),
        "How long a secure-stream handshake may take before the connection is dropped.",
    ),
    Setting(
        "stream.max_frame_bytes",
        size(1 << 10, 16 << 20),
        "Largest frame accepted on a secure stream.",
    ),
    Setting(
        "stream.max_pending_handshakes",
        integer(1, 100_000),
        "Most secure-stream handshakes in progress at once; at the limit a new connection "
        "evicts the oldest of the host holding the most.",
    ),
    Setting(
        "stream.max_pending_per_host",
        integer(1, 100_000),
        "Most handshakes in progress from one host (IPv4 address, IPv6 /64); its next "
        "connection evicts its own oldest.",
    ),
    Setting(
        "stream.max_streams",
        integer(1, 100_000),
        "Most established inbound secure streams in total; more are refused.",
    ),
    Setting(
        "stream.max_streams_per_host",
        integer(1, 100_000),
        "Most established inbound secure streams from one host (IPv4 address, IPv6 /64).",
    ),
    Setting(
        "stream.max_streams_per_node",
        integer(1, 100_000),
        "Most established inbound secure streams one node ID may hold.",
    ),
    Setting(
        "stream.host_connection_rate",
        integer(1, 1_000_000),
        "New connections per second accepted from one host; excess ones are closed at once.",
    ),
    Setting(
        "stream.host_connection_burst",
        integer(1, 1_000_000),
        "Connections one host may open at once above its rate (the token bucket's size).",
    ),
    Setting(
        "stream.cookie_pending_threshold",
        integer(1, 100_000),
        "Pending handshakes at which the node is under load: a handshake must then first "
        "fetch a cookie (one more round trip), which spares the node a key exchange.",
    ),
    Setting(
        "stream.cookie_handshake_rate",
        integer(1, 1_000_000),
        "Responder key exchanges per second at which the node is under load (as above).",
    ),
    Setting(
        "stream.idle_timeout",
        duration(),
        "An inbound stream on which no frame arrives and none is sent for this long is closed.",
    ),
    Setting(
        "stream.frame_timeout",
        duration(),
        "A stream frame that has begun arriving must be complete within this time.",
    ),
    Setting(
        "stream.trusted_hosts",
        network_list(),
        "Networks (CIDR) exempt from the per-host stream limits, not from the totals "
        "(comma-separated in the environment).",
    ),
    Setting("dht.k", integer(2, 64), "Kademlia bucket size and replication factor."),
    Setting("dht.alpha", integer(1, 16), "Queries in flight per lookup path."),
    Setting("dht.paths", integer(1, 16), "Disjoint paths per lookup (S/Kademlia)."),
    Setting(
        "dht.refresh_interval",
        duration(),
        "A routing-table bucket idle this long is refreshed by a lookup into it.",
    ),
    Setting(
        "dht.republish_interval",
        duration(),
        "Records are republished this often (by their owner, and by the nodes that hold them).",
    ),
    Setting(
        "dht.liveness_interval",
        duration(),
        "A routing-table contact not heard from for this long is pinged to check it is alive.",
    ),
    Setting(
        "dht.id_difficulty",
        integer(0, 32),
        "Network parameter: leading zero bits node IDs must solve (S/Kademlia puzzle).",
    ),
    Setting(
        "membership.probe_interval",
        duration(),
        "The protocol period: each node probes one member per period.",
    ),
    Setting(
        "membership.probe_timeout",
        duration(),
        "How long a direct probe waits before relays are asked (less than the period).",
    ),
    Setting("membership.indirect_probes", integer(0, 16), "Relays asked by an indirect probe."),
    Setting(
        "membership.suspicion_mult",
        integer(1, 100),
        "Suspicion floor, in periods times log10 of the member count.",
    ),
    Setting(
        "membership.suspicion_max_mult",
        integer(1, 100),
        "A lone accuser's suspicion timeout, as a multiple of the floor.",
    ),
    Setting(
        "membership.retransmit_mult",
        integer(1, 100),
        "Each membership change is piggybacked this many times log10 of the member count.",
    ),
    Setting(
        "membership.gossip_interval",
        duration(),
        "While there is news, it is sent to a few random members this often, besides probes.",
    ),
    Setting(
        "membership.gossip_nodes",
        integer(0, 16),
        "Members each gossip round sends news to (0: news rides on probes only).",
    ),
    Setting(
        "membership.push_pull_interval",
        duration(),
        "How often the full membership state is compared with one random member.",
    ),
    Setting(
        "membership.retention",
        duration(),
        "How long dead and left members are remembered (old news cannot revive them).",
    ),
    Setting(
        "membership.restart_grace",
        duration(),
        "How long a member that stopped on purpose is listed stopped (expected back) before "
        "it is shown dead.",
    ),
    Setting(
        "membership.max_members",
        integer(2, 1_000_000),
        "Most members a node keeps; claims about further new members are refused.",
    ),
    Setting(
        "membership.probe_order",
        choice("aligned", "random"),
        "Who probes whom: aligned on the wall clock (every member probed every period), or "
        "SWIM's shuffled round robin.",
    ),
    Setting(
        "membership.max_awareness",
        integer(0, 64),
        "Ceiling of the local health score that stretches a degraded node's timeouts.",
    ),
    Setting(
        "storage.quota_bytes",
        size(0),
        "Disk space offered to other nodes' encrypted backup shares.",
    ),
    Setting(
        "storage.owner_quota_bytes",
        size(0),
        "Most of storage.quota_bytes that one owner's shares may take; 0 means no limit of its "
        "own (up to the whole quota).",
    ),
)
SETTINGS_BY_KEY: Final[Mapping[str, Setting]] = {s.key: s for s in SETTINGS}
SETTINGS_BY_ENV: Final[Mapping[str, Setting]] = {s.env_var: s for s in SETTINGS}
TABLES: Final = tuple(dict.fromkeys(s.key.split(".")[0] for s in SETTINGS if "." in s.key))


def _dataclass_keys(obj: object, prefix: str = "") -> list[str]:
    keys = []
    for f in dataclasses.fields(obj):  # type: ignore[arg-type]
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            keys.extend(_dataclass_keys(value, f"{prefix}{f.name}."))
        else:
            keys.append(prefix + f.name)
    return keys


def _check_table() -> None:
    """Fail at import if the table and the dataclasses disagree (a setting added to one only)."""
    fields = set(_dataclass_keys(Settings()))
    if fields != set(SETTINGS_BY_KEY):
        raise RuntimeError(
            f"config table and Settings differ: {sorted(fields ^ set(SETTINGS_BY_KEY))}"
        )


_check_table()
