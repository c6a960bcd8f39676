"""Node configuration: TOML file, PLEXINODE_* environment, command-line flags, defaults.

Every setting is one row of the declarative table `SETTINGS`: its dotted key (``table.key`` in
TOML), its kind (how text and TOML values are parsed, checked and shown) and its help text. The
default of each setting is the default of the matching field of the typed dataclasses below, so
there is exactly one place where a default lives; an import-time check keeps the table and the
dataclasses in step.

Four layers are merged, highest first:

1. command-line flags (``flags`` mapping of dotted keys; ``None`` means "not given"),
2. environment variables ``PLEXINODE_<KEY>`` (dots and dashes become ``_``, upper case; lists
   are comma-separated),
3. the file ``config.toml`` in the data dir,
4. the defaults.

Mistakes fail loudly and early, with one line that says what, where and what was probably
meant: an unknown key in the file or an unknown ``PLEXINODE_*`` variable is an error with a
did-you-mean hint (a typo must never silently fall back to a default), and a wrong type or an
out-of-range value names the key, the value and the layer it came from.

Durations are written ``500ms``, ``30s``, ``15m``, ``24h``, ``7d`` (a bare number is seconds);
sizes ``512``, ``64KiB``, ``10MiB``, ``10GiB``, ``1TiB`` (binary) or ``KB``, ``MB``, ``GB``,
``TB`` (decimal). `format_duration` and `format_size` print the shortest exact form, and parsing
what they print gives back exactly the same value.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import math
import os
import re
import textwrap
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, TypeAlias

import tomli_w

from plexinode.errors import ConfigError, DataDirError
from plexinode.fsutil import atomic_write, ensure_private_dir
from plexinode.net.address import Address

log = logging.getLogger(__name__)

CONFIG_FILE_NAME: Final = "config.toml"
ENV_PREFIX: Final = "PLEXINODE_"
# PLEXINODE_HOME names the data dir itself (it is where config.toml lives), so it cannot be a
# setting inside that file; it is allowed in the environment and ignored by the loader.
RESERVED_ENV: Final = frozenset({"PLEXINODE_HOME"})


# ---------------------------------------------------------------------------------------------
# Typed settings: the interface services use.


# All interfaces, so that other machines can reach the node; 7420 is unassigned by IANA. UDP and
# TCP share the port number.
DEFAULT_LISTEN: Final = Address("0.0.0.0", 7420)


@dataclass(frozen=True, slots=True)
class DatagramSettings:
    """Authenticated datagram transport and its request/response layer."""

    # A loopback or LAN round trip is well under a millisecond and a transatlantic one ~100 ms;
    # 2 s per attempt tolerates a loaded peer without making a dead peer slow to detect.
    request_timeout: float = 2.0
    # Two extra attempts ride out ordinary UDP loss (a few percent) at most tripling the wait.
    retries: int = 2
    # A datagram whose counter is this far below the newest one from the same sender is refused
    # as a possible replay; inside the window, a per-sender set of seen counters catches exact
    # repeats. The window is measured on the sender's own clock, so skew between hosts does not
    # matter; a minute tolerates any reordering the network produces.
    replay_window: float = 60.0
    # Bounds the tasks spawned for incoming requests so a flood cannot exhaust memory; requests
    # beyond it are answered with a BUSY error.
    max_inflight_handlers: int = 256
    # Requests per second one peer may make of each request type (an RPC's COST divides it;
    # a burst of twice the rate is allowed). Honest nodes stay far below it: a lookup asks a
    # given peer once, a join about a dozen times. Excess requests are dropped and counted,
    # with at most one RATE_LIMITED error reply per peer per second so an honest peer learns.
    peer_request_rate: int = 20
    # Datagrams per second accepted from one public IP address, checked before the signature
    # so that one host cannot make us spend all our CPU on verification; off for loopback and
    # private addresses (tests, LANs), where many nodes legitimately share an address.
    host_datagram_rate: int = 1000


@dataclass(frozen=True, slots=True)
class StreamSettings:
    """Secure streams."""

    # A handshake is two round trips; 10 s leaves room for slow links while freeing the slot
    # of a peer that opens a connection and stalls.
    handshake_timeout: float = 10.0
    # 1 MiB frames amortise per-frame overhead for shard transfers while bounding the buffer a
    # peer can make us allocate before the frame is authenticated.
    max_frame_bytes: int = 1 << 20
    # Bounds half-open handshakes (each holds a socket and a little crypto state); at the limit
    # a new connection evicts the oldest pending handshake.
    max_pending_handshakes: int = 256


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


@dataclass(frozen=True, slots=True)
class MembershipSettings:
    """SWIM/Lifeguard membership (the defaults are memberlist's LAN profile, except where
    noted)."""

    # The protocol period: one member probed per period. memberlist's LAN value; a failure is
    # first suspected about 1.5 periods after it happens.
    probe_interval: float = 1.0
    # How long a direct probe waits for its ack before asking relays; the rest of the period
    # is for the indirect probes. Far above a LAN round trip, below a period.
    probe_timeout: float = 0.5
    # k, the relays an indirect probe asks: enough that one bad path does not condemn a member.
    indirect_probes: int = 3
    # Who probes whom. "aligned": probes start on the wall clock's period boundaries and, in
    # period p, the member at position i of the ID-sorted view probes the one at
    # i + 1 + p mod (N - 1), so that every member is probed by exactly one other in every
    # period (when clocks and views agree) and a failure is suspected within about one period.
    # "random": SWIM's shuffled round robin, where a member goes unprobed for k periods with
    # probability about e^-k (the tail of the time to first suspicion).
    probe_order: str = "aligned"
    # The suspicion floor is suspicion_mult * log10(N) periods. memberlist uses 4 (12 s at
    # N = 1,000); Lifeguard's confirmations make 2 safe (6 s), and dead members are then known
    # within 10 s.
    suspicion_mult: int = 2
    # A lone accuser's suspicion lasts this many times the floor (Lifeguard): the accuser may
    # be the one in trouble, and the accused has time to hear of it and refute.
    suspicion_max_mult: int = 6
    # Each claim is piggybacked retransmit_mult * ceil(log10(N + 1)) times (memberlist's 4).
    retransmit_mult: int = 4
    # While there is news, it is also sent on its own to gossip_nodes random members this
    # often, besides riding on probes (news after a quiet spell, and deaths, leaves and a
    # node's own claims, go at once): a death is known everywhere within about half a second
    # of its first declaration. memberlist sends every 200 ms to
    # 3; every 500 ms keeps a busy node under 10 packets a second with its probes.
    gossip_interval: float = 0.5
    gossip_nodes: int = 3
    # Full-state exchange with one random member this often: partitions heal and missed
    # updates arrive within one interval. Digests keep it cheap, so it need not grow with N.
    push_pull_interval: float = 20.0
    # Dead and left members are remembered this long, so that old news cannot revive them.
    retention: float = 3600.0
    # Most members a node keeps; claims about new members beyond it are refused and counted.
    max_members: int = 10_000
    # The ceiling of Lifeguard's local health score: a degraded node's periods and timeouts
    # stretch up to max_awareness + 1 times (memberlist's 8).
    max_awareness: int = 8


@dataclass(frozen=True, slots=True)
class StorageSettings:
    """Local storage."""

    # Space offered to other nodes' encrypted shares: 10 GiB is a modest slice of a modern disk.
    quota_bytes: int = 10 << 30


@dataclass(frozen=True, slots=True)
class Settings:
    """Every effective setting of a node, typed."""

    listen: Address = DEFAULT_LISTEN
    bootstrap: tuple[Address, ...] = ()
    network: str = "open"
    log_level: str = "info"
    log_format: str = "text"
    datagram: DatagramSettings = field(default_factory=DatagramSettings)
    stream: StreamSettings = field(default_factory=StreamSettings)
    dht: DhtSettings = field(default_factory=DhtSettings)
    membership: MembershipSettings = field(default_factory=MembershipSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)


# ---------------------------------------------------------------------------------------------
# Durations and sizes.

_DURATION_UNITS: Final[tuple[tuple[str, int], ...]] = (
    ("d", 86_400),
    ("h", 3_600),
    ("m", 60),
    ("s", 1),
)
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_DURATION_RE: Final = re.compile(
    rf"\s*(?P<number>{_NUMBER})\s*(?P<unit>ms|s|m|h|d)?\s*", re.ASCII | re.IGNORECASE
)
_DURATION_HELP: Final = "expected a number with a unit: ms, s, m, h or d (e.g. 500ms, 30s, 15m)"


def parse_duration(text: str) -> float:
    """Parse a duration such as ``500ms``, ``30s``, ``15m``, ``24h``, ``7d`` into seconds.

    A bare number is seconds. Units are case-insensitive; decimals are allowed (``1.5h``).

    Args:
        text: the duration as written by a person.

    Returns:
        The duration in seconds.

    Raises:
        ValueError: the text is not a duration, or is negative or infinite.
    """
    match = _DURATION_RE.fullmatch(text)
    if match is None:
        raise ValueError(f"invalid duration {text!r}: {_DURATION_HELP}")
    number = float(match["number"])
    unit = (match["unit"] or "s").lower()
    seconds = number / 1000 if unit == "ms" else number * dict(_DURATION_UNITS)[unit]
    if not math.isfinite(seconds):
        raise ValueError(f"invalid duration {text!r}: too large")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest exact text form of a duration: ``2s``, ``500ms``, ``15m``, ``7d``.

    Whole multiples of a day, hour, minute, second or millisecond use that unit; anything else
    is written in seconds with every digit needed. `parse_duration` of the result is exactly
    `seconds`.

    Raises:
        ValueError: `seconds` is negative, infinite or NaN.
    """
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"cannot format duration {seconds!r}: must be finite and >= 0")
    seconds = float(seconds)
    if seconds == 0:
        return "0s"
    for unit, factor in _DURATION_UNITS:
        count = seconds / factor
        if count.is_integer() and count * factor == seconds:
            return f"{int(count)}{unit}"
    millis = seconds * 1000
    if millis.is_integer() and millis / 1000 == seconds:
        return f"{int(millis)}ms"
    return f"{seconds!r}s"


_SIZE_UNITS: Final[Mapping[str, int]] = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 1 << 10,
    "mib": 1 << 20,
    "gib": 1 << 30,
    "tib": 1 << 40,
}
# Largest first, so that format_size picks the biggest unit that divides exactly.
_SIZE_FORMAT_UNITS: Final = (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10))
_SIZE_RE: Final = re.compile(r"\s*(?P<number>\d+(?:\.\d+)?|\.\d+)\s*(?P<unit>[a-z]*)\s*", re.I)
_SIZE_HELP: Final = (
    "expected a number of bytes, optionally with a unit: KiB, MiB, GiB, TiB, KB, MB, GB"
)


def parse_size(text: str) -> int:
    """Parse a size such as ``512``, ``64KiB``, ``10MiB``, ``1.5GiB`` or ``10MB`` into bytes.

    Binary units (KiB, MiB, GiB, TiB) are powers of 1024, decimal ones (KB, MB, GB, TB) powers
    of 1000; units are case-insensitive. The result must be a whole number of bytes.

    Raises:
        ValueError: the text is not a size, or is not a whole number of bytes.
    """
    match = _SIZE_RE.fullmatch(text)
    if match is None:
        raise ValueError(f"invalid size {text!r}: {_SIZE_HELP}")
    unit = match["unit"].lower()
    factor = _SIZE_UNITS.get(unit)
    if factor is None:
        raise ValueError(f"invalid size {text!r}: unknown unit {match['unit']!r}; {_SIZE_HELP}")
    value = Fraction(match["number"]) * factor
    if value.denominator != 1:
        raise ValueError(f"invalid size {text!r}: not a whole number of bytes")
    return int(value)


def format_size(n: int) -> str:
    """The exact text form of a size: the largest binary unit that divides it (``1MiB``).

    Sizes that are not a multiple of 1 KiB are written in bytes (``1000B``). `parse_size` of the
    result is exactly `n`.

    Raises:
        ValueError: `n` is negative.
    """
    if n < 0:
        raise ValueError(f"cannot format size {n!r}: must be >= 0")
    for unit, factor in _SIZE_FORMAT_UNITS:
        if n and n % factor == 0:
            return f"{n // factor}{unit}"
    return f"{n}B"


# ---------------------------------------------------------------------------------------------
# Kinds: how each kind of setting is read, checked and shown.

JsonValue: TypeAlias = str | int | float | list[str]


def _type_name(value: object) -> str:
    names = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array"}
    if isinstance(value, dict):
        return "table"
    return names.get(type(value), type(value).__name__)


@dataclass(frozen=True, slots=True)
class Kind:
    """How one kind of setting is parsed from text or TOML, validated and shown.

    The parse functions raise ValueError with a reason that does not repeat the value; the loader
    adds the key, the value and where it came from.

    Attributes:
        name: what the setting holds, for help and messages ("duration", "integer 0..10").
        from_text: parses an environment variable or a text flag.
        from_value: checks a TOML value or an already-parsed flag value.
        text: the human text form of a value.
        json: the JSON-friendly form of a value.
        toml: the value as written in config.toml.
    """

    name: str
    from_text: Callable[[str], Any]
    from_value: Callable[[object], Any]
    text: Callable[[Any], str]
    json: Callable[[Any], JsonValue]
    toml: Callable[[Any], Any]


def _reason(exc: ValueError) -> str:
    # parse_* and Address.parse say "invalid duration '30x': <reason>"; keep only the reason
    # since the loader names the value itself.
    message = str(exc)
    return (
        message.split(": ", 1)[1] if message.startswith("invalid ") and ": " in message else message
    )


def _expect(value: object, types: tuple[type, ...], what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, types):
        raise ValueError(f"expected {what}, got {_type_name(value)}")


def _integer(low: int, high: int) -> Kind:
    def check(n: int) -> int:
        if not low <= n <= high:
            raise ValueError(f"must be between {low} and {high}")
        return n

    def from_text(text: str) -> int:
        try:
            n = int(text.strip())
        except ValueError:
            raise ValueError("expected an integer") from None
        return check(n)

    def from_value(value: object) -> int:
        _expect(value, (int,), "an integer")
        assert isinstance(value, int)
        return check(value)

    return Kind(f"integer {low}..{high}", from_text, from_value, str, int, int)


def _duration() -> Kind:
    def check(seconds: float) -> float:
        if not math.isfinite(seconds) or seconds <= 0:
            raise ValueError("must be a positive duration")
        return float(seconds)

    def from_text(text: str) -> float:
        try:
            return check(parse_duration(text))
        except ValueError as exc:
            raise ValueError(_reason(exc)) from None

    def from_value(value: object) -> float:
        if isinstance(value, str):
            return from_text(value)
        _expect(value, (int, float), "a duration such as '30s' or a number of seconds")
        assert isinstance(value, int | float)
        return check(value)

    return Kind("duration", from_text, from_value, format_duration, float, format_duration)


def _size(low: int, high: int | None = None) -> Kind:
    def check(n: int) -> int:
        if n < low or (high is not None and n > high):
            if high is None:
                raise ValueError(f"must be at least {format_size(low)}")
            raise ValueError(f"must be between {format_size(low)} and {format_size(high)}")
        return n

    def from_text(text: str) -> int:
        try:
            return check(parse_size(text))
        except ValueError as exc:
            raise ValueError(_reason(exc)) from None

    def from_value(value: object) -> int:
        if isinstance(value, str):
            return from_text(value)
        _expect(value, (int,), "a size such as '10MiB' or a number of bytes")
        assert isinstance(value, int)
        return check(value)

    name = f"size {format_size(low)}..{format_size(high)}" if high is not None else "size"
    return Kind(name, from_text, from_value, format_size, int, format_size)


def _parse_address(value: object) -> Address:
    if isinstance(value, Address):
        return value
    _expect(value, (str,), "an address HOST:PORT")
    assert isinstance(value, str)
    try:
        return Address.parse(value, allow_zero_port=True)
    except ValueError as exc:
        raise ValueError(_reason(exc)) from None


def _address() -> Kind:
    return Kind("address HOST:PORT", _parse_address, _parse_address, str, str, str)


def _address_list() -> Kind:
    def from_text(text: str) -> tuple[Address, ...]:
        return tuple(_parse_address(item.strip()) for item in text.split(",") if item.strip())

    def from_value(value: object) -> tuple[Address, ...]:
        if isinstance(value, str):
            return from_text(value)
        if isinstance(value, Address):  # one address given where a list is expected
            return (value,)
        if not isinstance(value, list | tuple):
            raise ValueError(f"expected a list of addresses HOST:PORT, got {_type_name(value)}")
        return tuple(_parse_address(item) for item in value)

    def text(addresses: tuple[Address, ...]) -> str:
        return ", ".join(map(str, addresses)) if addresses else "(none)"

    def as_list(addresses: tuple[Address, ...]) -> list[str]:
        return [str(a) for a in addresses]

    return Kind("list of addresses HOST:PORT", from_text, from_value, text, as_list, as_list)


def _string(pattern: str, name: str, rule: str, *, lower: bool = False) -> Kind:
    compiled = re.compile(pattern, re.ASCII)

    def from_value(value: object) -> str:
        _expect(value, (str,), "a string")
        assert isinstance(value, str)
        text = value.strip().lower() if lower else value.strip()
        if not compiled.fullmatch(text):
            raise ValueError(rule)
        return text

    return Kind(name, from_value, from_value, str, str, str)


def _choice(*options: str) -> Kind:
    pattern = "|".join(map(re.escape, options))
    return _string(pattern, " | ".join(options), "must be one of " + ", ".join(options), lower=True)


# ---------------------------------------------------------------------------------------------
# The table of settings.


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
        _address(),
        "Address to listen on, HOST:PORT (UDP and TCP share the port); port 0 picks a free one.",
    ),
    Setting(
        "bootstrap",
        _address_list(),
        "Addresses of known nodes to contact at start-up (comma-separated in the environment).",
    ),
    Setting(
        "network",
        _string(r"[a-z0-9-]{1,64}", "name of 1-64 characters a-z, 0-9, -", NETWORK_NAME_RULE),
        "Name of the network this node belongs to; nodes only talk to nodes of the same network.",
    ),
    Setting("log_level", _choice("debug", "info", "warning", "error"), "Least severe log level."),
    Setting("log_format", _choice("text", "json"), "Log line format: text or json (one object)."),
    Setting(
        "datagram.request_timeout",
        _duration(),
        "How long to wait for the answer to a datagram request before retrying.",
    ),
    Setting(
        "datagram.retries",
        _integer(0, 10),
        "Extra attempts of a datagram request after the first one times out.",
    ),
    Setting(
        "datagram.replay_window",
        _duration(),
        "How far below a sender's newest datagram (on its own clock) one is still accepted.",
    ),
    Setting(
        "datagram.max_inflight_handlers",
        _integer(1, 10_000),
        "Most incoming datagram requests handled at once; more get a BUSY error.",
    ),
    Setting(
        "datagram.peer_request_rate",
        _integer(1, 1_000_000),
        "Requests per second one peer may make of each request type; excess ones are dropped.",
    ),
    Setting(
        "datagram.host_datagram_rate",
        _integer(1, 10_000_000),
        "Datagrams per second accepted from one public IP address (not loopback or private).",
    ),
    Setting(
        "stream.handshake_timeout",
        _duration(),
        "How long a secure-stream handshake may take before the connection is dropped.",
    ),
    Setting(
        "stream.max_frame_bytes",
        _size(1 << 10, 16 << 20),
        "Largest frame accepted on a secure stream.",
    ),
    Setting(
        "stream.max_pending_handshakes",
        _integer(1, 100_000),
        "Most secure-stream handshakes in progress at once; a new one evicts the oldest.",
    ),
    Setting("dht.k", _integer(2, 64), "Kademlia bucket size and replication factor."),
    Setting("dht.alpha", _integer(1, 16), "Queries in flight per lookup path."),
    Setting("dht.paths", _integer(1, 16), "Disjoint paths per lookup (S/Kademlia)."),
    Setting(
        "dht.refresh_interval",
        _duration(),
        "A routing-table bucket idle this long is refreshed by a lookup into it.",
    ),
    Setting(
        "dht.republish_interval",
        _duration(),
        "Records are republished this often (by their owner, and by the nodes that hold them).",
    ),
    Setting(
        "dht.liveness_interval",
        _duration(),
        "A routing-table contact not heard from for this long is pinged to check it is alive.",
    ),
    Setting(
        "dht.id_difficulty",
        _integer(0, 32),
        "Network parameter: leading zero bits node IDs must solve (S/Kademlia puzzle).",
    ),
    Setting(
        "membership.probe_interval",
        _duration(),
        "The protocol period: each node probes one member per period.",
    ),
    Setting(
        "membership.probe_timeout",
        _duration(),
        "How long a direct probe waits before relays are asked (less than the period).",
    ),
    Setting("membership.indirect_probes", _integer(0, 16), "Relays asked by an indirect probe."),
    Setting(
        "membership.suspicion_mult",
        _integer(1, 100),
        "Suspicion floor, in periods times log10 of the member count.",
    ),
    Setting(
        "membership.suspicion_max_mult",
        _integer(1, 100),
        "A lone accuser's suspicion timeout, as a multiple of the floor.",
    ),
    Setting(
        "membership.retransmit_mult",
        _integer(1, 100),
        "Each membership change is piggybacked this many times log10 of the member count.",
    ),
    Setting(
        "membership.gossip_interval",
        _duration(),
        "While there is news, it is sent to a few random members this often, besides probes.",
    ),
    Setting(
        "membership.gossip_nodes",
        _integer(0, 16),
        "Members each gossip round sends news to (0: news rides on probes only).",
    ),
    Setting(
        "membership.push_pull_interval",
        _duration(),
        "How often the full membership state is compared with one random member.",
    ),
    Setting(
        "membership.retention",
        _duration(),
        "How long dead and left members are remembered (old news cannot revive them).",
    ),
    Setting(
        "membership.max_members",
        _integer(2, 1_000_000),
        "Most members a node keeps; claims about further new members are refused.",
    ),
    Setting(
        "membership.probe_order",
        _choice("aligned", "random"),
        "Who probes whom: aligned on the wall clock (every member probed every period), or "
        "SWIM's shuffled round robin.",
    ),
    Setting(
        "membership.max_awareness",
        _integer(0, 64),
        "Ceiling of the local health score that stretches a degraded node's timeouts.",
    ),
    Setting(
        "storage.quota_bytes",
        _size(0),
        "Disk space offered to other nodes' encrypted backup shares.",
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


# ---------------------------------------------------------------------------------------------
# Loading.


@dataclass(frozen=True, slots=True)
class ShowRow:
    """One effective setting as `plexinode config show` prints it.

    Attributes:
        key: the dotted key (``datagram.request_timeout``).
        value: the JSON-friendly value (seconds for durations, bytes for sizes).
        text: the human form (``2s``, ``1MiB``, ``0.0.0.0:7420``).
        source: ``default``, ``file``, ``env PLEXINODE_X`` or ``flag``.
    """

    key: str
    value: JsonValue
    text: str
    source: str


@dataclass(frozen=True, slots=True)
class Config:
    """The effective configuration of a node and where each value came from.

    Attributes:
        settings: the typed settings.
        path: the config file (it may not exist).
        values: the effective value of each setting by dotted key (the typed values above).
        sources: where each value came from by dotted key (see `ShowRow.source`).
    """

    settings: Settings
    path: Path
    values: Mapping[str, Any] = field(repr=False)
    sources: Mapping[str, str] = field(repr=False)

    def source(self, key: str) -> str:
        """Where the value of `key` came from (see `ShowRow.source`)."""
        return self.sources[key]

    def show(self) -> list[ShowRow]:
        """Every setting, in table order, with its value, text form and source."""
        rows = []
        for setting in SETTINGS:
            value = self.values[setting.key]
            rows.append(
                ShowRow(
                    key=setting.key,
                    value=setting.kind.json(value),
                    text=setting.kind.text(value),
                    source=self.sources[setting.key],
                )
            )
        return rows


def _did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest candidate, or an empty string."""
    candidates = [c for c in candidates if c != name]
    # A key written in the wrong table ([datagram] listen) or outside its table (retries = 3):
    # its last part is the last part of exactly one known key.
    tail = name.rsplit(".", 1)[-1]
    same_tail = [c for c in candidates if c.rsplit(".", 1)[-1] == tail]
    if len(same_tail) == 1:
        return f" (did you mean {same_tail[0]!r}?)"
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _convert(setting: Setting, raw: object, where: str, *, text: bool) -> Any:
    """Parse `raw` (text if `text`, else a TOML or already-parsed value) or say what is wrong."""
    try:
        if text and isinstance(raw, str):
            return setting.kind.from_text(raw)
        return setting.kind.from_value(raw)
    except ValueError as exc:
        raise ConfigError(f"invalid value {raw!r} for {setting.key!r} ({where}): {exc}") from None


def _read_file(path: Path) -> dict[str, object]:
    """The settings in the config file, flattened to dotted keys; empty if there is no file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{path} is not valid TOML: not UTF-8 text (at line {line})") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None

    found: dict[str, object] = {}
    known = list(SETTINGS_BY_KEY) + list(TABLES)
    for name, value in document.items():
        if name in TABLES:
            if not isinstance(value, dict):
                raise ConfigError(
                    f"{name!r} in {path} must be a table ([{name}]), not {_type_name(value)}"
                )
            for sub, sub_value in value.items():
                key = f"{name}.{sub}"
                if key not in SETTINGS_BY_KEY:
                    what = "table" if isinstance(sub_value, dict) else "setting"
                    hint = _did_you_mean(key, SETTINGS_BY_KEY)
                    raise ConfigError(f"unknown {what} {key!r} in {path}{hint}")
                found[key] = sub_value
        elif name in SETTINGS_BY_KEY:
            found[name] = value
        elif isinstance(value, dict):
            hint = _did_you_mean(name, known)
            raise ConfigError(f"unknown table {name!r} in {path}{hint}")
        else:
            hint = _did_you_mean(name, known)
            raise ConfigError(f"unknown setting {name!r} in {path}{hint}")
    return found


def _check_env(env: Mapping[str, str]) -> None:
    # Compared without the shared prefix, which would make every name look alike.
    candidates = [n.removeprefix(ENV_PREFIX) for n in [*SETTINGS_BY_ENV, *sorted(RESERVED_ENV)]]
    for name in env:
        if name.startswith(ENV_PREFIX) and name not in SETTINGS_BY_ENV and name not in RESERVED_ENV:
            close = difflib.get_close_matches(name.removeprefix(ENV_PREFIX), candidates, n=1)
            hint = f" (did you mean {ENV_PREFIX}{close[0]}?)" if close else ""
            raise ConfigError(f"unknown environment variable {name}{hint}")


def _build(values: Mapping[str, Any]) -> Settings:
    top: dict[str, Any] = {}
    tables: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        table, dot, name = key.partition(".")
        if dot:
            tables.setdefault(table, {})[name] = value
        else:
            top[key] = value
    default = Settings()
    for table, fields in tables.items():
        top[table] = dataclasses.replace(getattr(default, table), **fields)
    return dataclasses.replace(default, **top)


def load_config(
    data_dir: Path,
    *,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> Config:
    """Load the effective configuration of the node whose data dir is `data_dir`.

    Args:
        data_dir: the data dir; ``config.toml`` inside it is read if it exists.
        env: the environment (default: `os.environ`); ``PLEXINODE_*`` variables other than the
            settings' and ``PLEXINODE_HOME`` are an error.
        flags: command-line values by dotted key, already parsed or as text; ``None`` (and, for
            ``bootstrap``, an empty sequence, which is what a repeatable option gives when it is
            not used) means "not given".

    Returns:
        The typed settings and the source of each value.

    Raises:
        ConfigError: an unknown key, table, variable or flag, a corrupt file, or a bad value.
    """
    path = data_dir / CONFIG_FILE_NAME
    env = os.environ if env is None else env
    values: dict[str, Any] = {s.key: s.default for s in SETTINGS}
    sources: dict[str, str] = dict.fromkeys(SETTINGS_BY_KEY, "default")

    for key, raw in _read_file(path).items():
        values[key] = _convert(SETTINGS_BY_KEY[key], raw, f"in {path}", text=False)
        sources[key] = "file"

    _check_env(env)
    for setting in SETTINGS:
        text = env.get(setting.env_var)
        if text is not None:
            where = f"environment variable {setting.env_var}"
            values[setting.key] = _convert(setting, text, where, text=True)
            sources[setting.key] = f"env {setting.env_var}"

    for key, raw in (flags or {}).items():
        flag_setting = SETTINGS_BY_KEY.get(key)
        if flag_setting is None:
            raise ConfigError(
                f"unknown setting {key!r} given as a flag{_did_you_mean(key, SETTINGS_BY_KEY)}"
            )
        if raw is None or (key == "bootstrap" and isinstance(raw, list | tuple) and not raw):
            continue
        values[key] = _convert(flag_setting, raw, "flag", text=True)
        sources[key] = "flag"

    overridden = {k: s for k, s in sources.items() if s != "default"}
    log.debug("configuration from %s: %s", path, overridden or "all defaults")
    settings = _build(values)
    membership = settings.membership
    if not 0 < membership.probe_timeout < membership.probe_interval:
        raise ConfigError(
            f"membership.probe_timeout ({format_duration(membership.probe_timeout)}, "
            f"{sources['membership.probe_timeout']}) must be above zero and below "
            f"membership.probe_interval ({format_duration(membership.probe_interval)}, "
            f"{sources['membership.probe_interval']})"
        )
    return Config(
        settings=settings,
        path=path,
        values=MappingProxyType(values),
        sources=MappingProxyType(sources),
    )


# ---------------------------------------------------------------------------------------------
# The default file.

_FILE_HEADER: Final = """\
# plexinode configuration (TOML).
#
# Every setting is listed below with its default value, commented out: remove the "# " in front
# of a line to change it. Precedence, highest first: command-line flag, environment variable
# (PLEXINODE_<KEY>, named beside each setting), this file, the built-in default.
#
# Durations: 500ms, 30s, 15m, 24h, 7d (a bare number is seconds).
# Sizes: 512, 64KiB, 10MiB, 10GiB, 1TiB (binary) or 10KB, 10MB, 10GB (decimal).
"""


def _toml_line(name: str, value: object) -> str:
    return tomli_w.dumps({name: value}).rstrip("\n")


def render_default_config(*, network: str | None = None) -> str:
    """The text of a default config.toml (see `write_default_config`).

    Raises:
        ConfigError: `network` is not a valid network name.
    """
    given: dict[str, Any] = {}
    if network is not None:
        setting = SETTINGS_BY_KEY["network"]
        given["network"] = _convert(setting, network, "network name", text=False)
    blocks: dict[str, list[str]] = {"": []}
    for setting in SETTINGS:
        table, _, name = setting.key.rpartition(".")
        lines = [f"# {line}" for line in textwrap.wrap(setting.help, width=96)]
        lines.append(f"# ({setting.kind.name}; environment: {setting.env_var})")
        if setting.key in given:
            lines.append(_toml_line(name, setting.kind.toml(given[setting.key])))
        else:
            lines.append("# " + _toml_line(name, setting.kind.toml(setting.default)))
        blocks.setdefault(table, []).append("\n".join(lines))
    parts = [_FILE_HEADER.rstrip(), *blocks.pop("")]
    parts += [f"[{table}]\n" + "\n\n".join(entries) for table, entries in blocks.items()]
    return "\n\n".join(parts) + "\n"


def write_default_config(data_dir: Path, *, network: str | None = None) -> Path:
    """Write a commented default ``config.toml`` into `data_dir`, unless one exists.

    Every setting appears commented out with its default and help, except `network` when it is
    given. The file is written atomically with mode 0600; the data dir is created (0700) if
    needed.

    Args:
        data_dir: the data dir.
        network: the network name to set in the file, if any.

    Returns:
        The path of the config file (the existing one, untouched, if there was one).

    Raises:
        ConfigError: `network` is not a valid network name.
        DataDirError: the data dir cannot be created or written to.
    """
    path = data_dir / CONFIG_FILE_NAME
    text = render_default_config(network=network)
    if data_dir.exists() and not data_dir.is_dir():
        raise DataDirError(f"data directory {data_dir} is not a directory")
    try:
        ensure_private_dir(data_dir)
    except OSError as exc:
        raise DataDirError(
            f"cannot create data directory {data_dir}: {exc.strerror or exc}"
        ) from None
    if path.exists():
        log.debug("config file %s exists; not overwriting it", path)
        return path
    try:
        atomic_write(path, text.encode("utf-8"), mode=0o600, overwrite=False)
    except FileExistsError:
        return path
    except OSError as exc:
        raise DataDirError(f"cannot write {path}: {exc.strerror or exc}") from None
    log.info("wrote default configuration to %s", path)
    return path
