"""The admin commands' results: one typed result per command, as the CLI receives it.

Each result is a frozen dataclass whose :meth:`Result.to_result` is the msgpack-ready value
the admin socket sends back; its fields are the names scripts rely on (CLI.md, docs/cli.md),
in the order ``--json`` prints them. Results that a service describes itself (members, peers,
cluster-state entries, the records of a key, the keyring's plan) carry that description as it
is, in a field checked only as a map or a list of maps: its contents belong to the service.

Results built from a map the node returns (:meth:`Fields.from_map`) refuse keys they do not
declare, so that a new field is added here, on purpose, before the CLI can show it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Protocol

from plexinode.admin.fields import TEXT, Anything, Fields, MapOf, arg
from plexinode.net.pinging import MAX_COUNT
from plexinode.wire.schema import Bool, Float, Int, ListOf, Optional

#: Enough for the largest list a node describes (a routing table of 10,000 contacts and more).
MAX_ROWS: Final = 1_000_000
_ROWS: Final = ListOf(MapOf(), MAX_ROWS)
_COUNTS: Final = MapOf(Int())


class Result(Fields):
    """Base of the results."""

    EXTRA_KEYS: ClassVar[bool] = False

    def to_result(self) -> Any:
        """The value the admin socket sends back: by default the map of the fields."""
        return self.to_map()


@dataclass(frozen=True, slots=True)
class NodeIdResult(Result):
    """``id``."""

    node_id: str = arg(TEXT)


@dataclass(frozen=True, slots=True)
class Stopped(Result):
    """``stop``: the node is stopping; `pid` is its process, for the CLI to wait on."""

    stopped: bool = arg(Bool())
    pid: int = arg(Int())


@dataclass(frozen=True, slots=True)
class Status(Result):
    """``status``: what plexinode.node.Node.status reports (docs/cli.md lists each part)."""

    node_id: str = arg(TEXT)
    version: str = arg(TEXT)
    network: str = arg(TEXT)
    address: str | None = arg(Optional(TEXT))
    uptime_s: float = arg(Float())
    peers: int = arg(Int())
    members: Mapping[str, int] = arg(_COUNTS)
    storage: Mapping[str, int] = arg(_COUNTS)
    pid: int = arg(Int())
    data_dir: str | None = arg(Optional(TEXT))
    datagrams: Mapping[str, Any] = arg(MapOf())
    streams: Mapping[str, Any] = arg(MapOf())
    dht: Mapping[str, Any] = arg(MapOf())
    membership: Mapping[str, Any] = arg(MapOf())
    shards: Mapping[str, Any] = arg(MapOf())
    keyring: Mapping[str, Any] = arg(MapOf())
    authority: Mapping[str, Any] = arg(MapOf())


@dataclass(frozen=True, slots=True, kw_only=True)
class PingResult(Result):
    """``ping``: who answered, from where (the IP address, when a name was given), and the
    round trips: their median, each of them, and how many pings were sent and answered (after
    the handshake, which is timed on its own, over a stream)."""

    node_id: str = arg(TEXT)
    address: str = arg(TEXT)
    rtt_ms: float = arg(Float())
    rtts_ms: Sequence[float] = arg(ListOf(Float(), max_items=MAX_COUNT))
    sent: int = arg(Int())
    received: int = arg(Int())
    handshake_ms: float | None = arg(Optional(Float()), default=None)
    via: str = arg(TEXT)

    def to_result(self) -> Any:
        """The map, without ``handshake_ms`` for a datagram ping."""
        result = self.to_map()
        if self.handshake_ms is None:
            del result["handshake_ms"]
        return result


@dataclass(frozen=True, slots=True)
class Rows(Result):
    """``peers``, ``members``, ``state_list``, ``config``: a list of what a service describes,
    sent as the bare list."""

    rows: tuple[Mapping[str, Any], ...] = arg(_ROWS)

    def to_result(self) -> Any:
        """The list."""
        return list(self.to_map()["rows"])


@dataclass(frozen=True, slots=True)
class Document(Result):
    """``state_set`` (the entry written) and ``tags_set``, ``tags_list`` (the node's tags): one
    map, sent as it is."""

    document: Mapping[str, Any] = arg(MapOf())

    def to_result(self) -> Any:
        """The map."""
        return self.to_map()["document"]


@dataclass(frozen=True, slots=True)
class Records(Result):
    """``dht_get``: the valid records under a key, newest first."""

    records: tuple[Mapping[str, Any], ...] = arg(_ROWS)


@dataclass(frozen=True, slots=True)
class Invited(Result):
    """``invite``: the token, and what it holds in plain words (`expires` in Unix seconds)."""

    token: str = arg(TEXT)
    expires: float = arg(Float())
    network: str = arg(TEXT)
    addresses: tuple[str, ...] = arg(ListOf(TEXT))


@dataclass(frozen=True, slots=True)
class Joined(Result):
    """``join``: the DHT contacts made through the inviter, and the members now alive."""

    network: str = arg(TEXT)
    bootstrapped: int = arg(Int())
    members: int = arg(Int())


@dataclass(frozen=True, slots=True)
class Left(Result):
    """``leave``: how many members acknowledged the node's ``left`` claim."""

    left: bool = arg(Bool())
    acknowledged_by: int = arg(Int())


@dataclass(frozen=True, slots=True)
class NetworkKeys(Result):
    """``network_key``: the network, whether it is private, then the keyring service's own
    description (keys, plan, progress) merged in."""

    network: str = arg(TEXT)
    private: bool = arg(Bool())
    keyring: Mapping[str, Any] = arg(MapOf())

    def to_result(self) -> Any:
        """One map: `network`, `private`, then the keyring's fields."""
        return {"network": self.network, "private": self.private, **self.keyring}


@dataclass(frozen=True, slots=True)
class AuthorityInfo(Result):
    """``authority_info``: the private network's name and root key (hex), and the public key
    (hex) of the node asked about (empty when none was asked about)."""

    network: str = arg(TEXT)
    root: str = arg(TEXT)
    public_key: str = arg(TEXT, default="")


@dataclass(frozen=True, slots=True)
class AuthorityAdded(Result):
    """``authority_submit``: how many statements were new, and why any was refused."""

    added: int = arg(Int())
    refused: tuple[str, ...] = arg(ListOf(TEXT))


@dataclass(frozen=True, slots=True)
class Resolved(Result):
    """``resolve``: the node IDs this node knows that begin with a prefix (none, one, or the
    candidates of an ambiguous prefix)."""

    matches: tuple[str, ...] = arg(ListOf(TEXT, MAX_ROWS))


class ShownSetting(Protocol):
    """One effective setting (plexinode.config.ShowRow)."""

    @property
    def key(self) -> str: ...

    @property
    def value(self) -> Any: ...

    @property
    def text(self) -> str: ...

    @property
    def source(self) -> str: ...


@dataclass(frozen=True, slots=True)
class ConfigRow(Result):
    """One row of ``config``: a setting's key, value (JSON-friendly), text form and source."""

    key: str = arg(TEXT)
    value: Any = arg(Anything())  # noqa: RUF009 (arg() declares a field, as wire() does)
    text: str = arg(TEXT)
    source: str = arg(TEXT)


def config_rows(settings: Iterable[ShownSetting]) -> Rows:
    """The ``config`` result for the effective settings (``Config.show()``)."""
    return Rows(tuple(ConfigRow(s.key, s.value, s.text, s.source).to_map() for s in settings))
