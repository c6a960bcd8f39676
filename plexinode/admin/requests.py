"""The admin commands' arguments: one typed request per command, checked before it runs.

Each request is built from the ``args`` map of an admin request (:meth:`Request.parse`) and
refuses, with the one-line message the CLI prints, anything the command could not run with:
values of the wrong type, unparsable node IDs and addresses, and the rules that need nothing
but the arguments (a ping needs a target, invites live at most 30 days, the ``net.`` state keys
belong to the node). Rules that need the node's state take it as an argument (the record
types a node knows, its tags, its installed keys), so that everything here is plain
computation: the command table (plexinode.admin.commands) only feeds it and runs the result.

The map keys are the admin socket's field names (docs/protocol.md); the CLI sends only the keys
it needs, and a key it leaves out takes its field's default.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, Self

from plexinode.admin.fields import TEXT, Fields, Refused, arg
from plexinode.dht.record_types import PEER
from plexinode.errors import AdminError, DecodeError, IdentityError
from plexinode.identity import NODE_ID_BYTES, TEXT_LENGTH, NodeId
from plexinode.membership.claims import MAX_TAG_BYTES, MAX_TAG_KEY, MAX_TAG_VALUE, MAX_TAGS
from plexinode.net.address import Address
from plexinode.net.keyring import NETWORK_KEY_BYTES, key_id, parse_key
from plexinode.net.pinging import PingOptions
from plexinode.security.rotation import RESERVED_STATE_PREFIX
from plexinode.wire.schema import Bool, Check, Float, Int, ListOf, Optional

#: The steps of ``network key``: show the keys, then install, use, remove one.
NETWORK_KEY_ACTIONS: Final = ("list", "install", "use", "remove")
#: Invites are valid for a day unless asked otherwise, and never longer than 30 days.
DEFAULT_INVITE_SECONDS: Final = 86_400.0
MAX_INVITE_SECONDS: Final = 30 * 86_400
_INVITE_RANGE: Final = "expires must be above 0 and at most 30 days"
_TAG_TYPES: Final = "a tag is a text key and a text value"
#: A node ID prefix is at least this many characters of the text form (CLI.md: "as git's short
#: hashes"): 40 bits, which few nodes share.
MIN_PREFIX: Final = 8
_BASE32: Final = frozenset("abcdefghijklmnopqrstuvwxyz234567")
#: What an operator's tag key is: lower-case letters, digits, ``.``, ``_`` and ``-``, starting
#: with a letter or digit, so that ``key=value`` lists (``members``) read one way only.
TAG_KEY_PATTERN: Final = re.compile(rf"[a-z0-9][a-z0-9._-]{{0,{MAX_TAG_KEY - 1}}}")


@dataclass(frozen=True, slots=True)
class NodeIdText(Check):
    """A node ID in its text form (plexinode.identity.NodeId.parse)."""

    def __call__(self, value: Any) -> Any:
        if type(value) is not str:
            raise DecodeError("expected a node ID")
        try:
            return NodeId.parse(value)
        except IdentityError as exc:
            raise Refused(str(exc)) from None

    def encode(self, value: Any) -> Any:
        return str(value)


@dataclass(frozen=True, slots=True)
class AddressText(Check):
    """``HOST:PORT`` or ``[IPv6]:PORT`` (plexinode.net.address.Address.parse)."""

    def __call__(self, value: Any) -> Any:
        if type(value) is not str:
            raise DecodeError("expected HOST:PORT")
        try:
            return Address.parse(value)
        except ValueError as exc:
            raise Refused(str(exc)) from None

    def encode(self, value: Any) -> Any:
        return str(value)


def node_id_prefix(text: str) -> str:
    """The node ID prefix `text` spells, in its canonical form (dashes, spaces and case are
    ignored, as in a full ID).

    Raises:
        ValueError: It is not at least :data:`MIN_PREFIX` characters of base32 text, at most a
            whole ID.
    """
    cleaned = "".join(text.split()).replace("-", "").lower()
    if not set(cleaned) <= _BASE32:
        raise ValueError(f"invalid node ID {text!r}: only letters a-z and digits 2-7 are allowed")
    if not MIN_PREFIX <= len(cleaned) <= TEXT_LENGTH:
        raise ValueError(
            f"invalid node ID {text!r}: a node ID is {TEXT_LENGTH} characters, a prefix of one "
            f"at least {MIN_PREFIX}"
        )
    return cleaned


def tag_problem(key: str, value: str) -> str | None:
    """What is wrong with the tag `key` = `value` on its own (None if nothing is): the rules an
    operator's tag follows whatever the node's other tags are.

    The key is 1 to :data:`~plexinode.membership.claims.MAX_TAG_KEY` characters of
    :data:`TAG_KEY_PATTERN`; the value at most
    :data:`~plexinode.membership.claims.MAX_TAG_VALUE` printable characters.
    """
    if not TAG_KEY_PATTERN.fullmatch(key):
        return (
            f"a tag key is 1-{MAX_TAG_KEY} characters of a-z, 0-9, '.', '_', '-' "
            f"(starting with a letter or digit), not {key!r}"
        )
    if len(value) > MAX_TAG_VALUE:
        return f"a tag value is at most {MAX_TAG_VALUE} characters, not {len(value)}"
    if not value.isprintable():
        return "a tag value is printable text (no newlines, tabs or other control characters)"
    return None


def tags_free(tags: Collection[str]) -> int:
    """How many more tags a member with `tags` may carry."""
    return max(0, MAX_TAGS - len(tags))


class Request(Fields):
    """Base of the requests."""

    @classmethod
    def parse(cls, command: str, args: Mapping[str, Any]) -> Self:
        """The request of `command` from its ``args`` map.

        Raises:
            AdminError: Arguments the command cannot run with, in one line.
        """
        return cls.from_map(args, where=f"invalid arguments for {command}")


@dataclass(frozen=True, slots=True)
class NoArguments(Request):
    """``status``, ``id``, ``stop``, ``config``, ``peers``, ``members``, ``leave``,
    ``state_list`` and ``tags_list`` take no arguments."""


@dataclass(frozen=True, slots=True)
class PingRequest(Request):
    """``ping``: the node at `address`, or the node `node_id` (found through the DHT), or the
    node `node_id` at `address` (the answer must come from it)."""

    # arg() declares a field, as wire() does; Address and NodeId are immutable.
    address: Address | None = arg(Optional(AddressText()), default=None)  # noqa: RUF009
    node_id: NodeId | None = arg(Optional(NodeIdText()), default=None)  # noqa: RUF009
    via: str = arg(TEXT, default="datagram")
    count: int = arg(Int(), default=1)
    interval_s: float = arg(Float(), default=1.0)
    timeout_s: float | None = arg(Optional(Float()), default=None)

    def __post_init__(self) -> None:
        if self.address is None and self.node_id is None:
            raise AdminError("ping needs an address or a node ID")
        try:
            PingOptions(self.via, self.count, self.interval_s, self.timeout_s)
        except ValueError as exc:
            raise AdminError(f"invalid arguments for ping: {exc}") from None

    @property
    def options(self) -> PingOptions:
        """How to ping."""
        return PingOptions(self.via, self.count, self.interval_s, self.timeout_s)


class RecordTypeName(Protocol):
    """What a request needs of a DHT record type (plexinode.dht.records.RecordType)."""

    @property
    def code(self) -> int: ...

    @property
    def name(self) -> str: ...


@dataclass(frozen=True, slots=True)
class DhtGetRequest(Request):
    """``dht_get``: the records of the type named `type` under `key` (a node ID for peer
    records, 64 hex digits for the others)."""

    type: str = arg(TEXT, default="")
    key: str = arg(TEXT, default="")

    def record_key(self, types: Sequence[RecordTypeName]) -> tuple[int, bytes]:
        """The type code and the key bytes, given the record types the node knows.

        Raises:
            AdminError: An unknown type, or a key that is not one of that type.
        """
        rtype = next((t for t in types if t.name == self.type), None)
        if rtype is None:
            names = ", ".join(t.name for t in types)
            raise AdminError(f"unknown record type {self.type!r} (known: {names})")
        if rtype.code == PEER:
            try:
                return rtype.code, NodeId.parse(self.key).raw
            except IdentityError as exc:
                raise AdminError(str(exc)) from None
        try:
            key = bytes.fromhex(self.key)
        except ValueError:
            key = b""
        if len(key) != NODE_ID_BYTES:
            raise AdminError(f"a {rtype.name} key is {NODE_ID_BYTES} bytes: 64 hex digits")
        return rtype.code, key


@dataclass(frozen=True, slots=True)
class StateSetRequest(Request):
    """``state_set``: write `value` under `key` in the cluster state; no value deletes it."""

    key: str = arg(TEXT, default="")
    value: str | None = arg(Optional(TEXT), default=None, error="a state value is text")

    def __post_init__(self) -> None:
        if self.key.startswith(RESERVED_STATE_PREFIX):
            raise AdminError(
                f"keys under {RESERVED_STATE_PREFIX!r} are the node's own (see `network key`)"
            )

    @property
    def encoded(self) -> bytes | None:
        """The value as the cluster state holds it (UTF-8), or None to delete."""
        return None if self.value is None else self.value.encode()


@dataclass(frozen=True, slots=True)
class TagsSetRequest(Request):
    """``tags_set``: set this node's tag `key` to `value`; no value removes it."""

    key: str = arg(TEXT, error=_TAG_TYPES)
    value: str | None = arg(Optional(TEXT), default=None, error=_TAG_TYPES)

    def apply(self, tags: Mapping[str, str], reserved: Collection[str]) -> dict[str, str]:
        """The node's tags after this change (the same tags if it changes nothing).

        Args:
            tags: the node's tags now.
            reserved: the tags the node sets itself, which an operator may not change.

        Raises:
            AdminError: A reserved tag, removing a tag the node does not have, or a tag that
                breaks a rule: its key or value (:func:`tag_problem`), the number of tags
                (:data:`~plexinode.membership.claims.MAX_TAGS`, the reserved ones included)
                or their size together (:data:`~plexinode.membership.claims.MAX_TAG_BYTES`),
                each with its own message.
        """
        if self.key in reserved:
            raise AdminError(
                f"the {self.key!r} tag is set by the node itself "
                f"(reserved: {', '.join(sorted(reserved))})"
            )
        changed = dict(tags)
        if self.value is None:
            if self.key not in changed:
                raise AdminError(f"this node has no {self.key!r} tag")
            del changed[self.key]
            return changed
        problem = tag_problem(self.key, self.value)
        if problem is not None:
            raise AdminError(problem)
        if self.key not in changed and not tags_free(changed):
            raise AdminError(
                f"this node has {len(changed)} tags, the most a member may carry "
                f"({MAX_TAGS}, of which {len(reserved)} are set by the node: "
                f"{MAX_TAGS - len(reserved)} are yours); remove one first"
            )
        changed[self.key] = self.value
        size = sum(len(k.encode()) + len(v.encode()) for k, v in changed.items())
        if size > MAX_TAG_BYTES:
            room = MAX_TAG_BYTES - sum(len(k.encode()) + len(v.encode()) for k, v in tags.items())
            raise AdminError(
                f"the tags would take {size} bytes, more than the {MAX_TAG_BYTES} a member's "
                f"tags may take together ({max(0, room)} bytes are free)"
            )
        return changed


@dataclass(frozen=True, slots=True)
class InviteRequest(Request):
    """``invite``: an invite token valid for `expires` seconds."""

    expires: float = arg(
        Float(0.0, MAX_INVITE_SECONDS), default=DEFAULT_INVITE_SECONDS, error=_INVITE_RANGE
    )

    def __post_init__(self) -> None:
        if not 0 < self.expires <= MAX_INVITE_SECONDS:
            raise AdminError(_INVITE_RANGE)


@dataclass(frozen=True, slots=True)
class JoinRequest(Request):
    """``join``: join the network of the invite `token` (checked by the node)."""

    token: str = arg(TEXT, default="")


@dataclass(frozen=True, slots=True)
class NetworkKeyRequest(Request):
    """``network_key``: `action` is one of :data:`NETWORK_KEY_ACTIONS`; every action but
    ``list`` names a `key`, by its id or in full (``install`` needs it in full); `force` uses a
    key that some live members have not received yet."""

    action: str = arg(TEXT, default="list")
    key: str | None = arg(Optional(TEXT), default=None)
    force: bool = arg(Bool(), default=False)

    def __post_init__(self) -> None:
        if self.action not in NETWORK_KEY_ACTIONS:
            raise AdminError(f"unknown network key action {self.action!r}")
        if self.action != "list" and self.key is None:
            raise AdminError(f"network key {self.action} needs a key")

    def find_key(self, installed: Iterable[bytes]) -> bytes:
        """The key the request names: parsed from its 64 hex digits, or, given by its id, the
        installed key with that id.

        Raises:
            AdminError: Not a key, or no installed key has that id.
        """
        text = (self.key or "").strip().lower()
        if self.action == "install" or len(text) == 2 * NETWORK_KEY_BYTES:
            try:
                return parse_key(text)
            except ValueError as exc:
                raise AdminError(str(exc)) from None
        for key in installed:
            if key_id(key) == text:
                return key
        raise AdminError(f"no installed key has the id {text!r} (see `network key list`)")


@dataclass(frozen=True, slots=True)
class AuthorityInfoRequest(Request):
    """``authority_info``: the network's name and root key, and the public key of the node
    `node_id` (None: only the network), for the CLI to sign a statement about it."""

    node_id: NodeId | None = arg(Optional(NodeIdText()), default=None)  # noqa: RUF009


#: Most statements one ``authority_submit`` carries (the CLI signs one at a time).
MAX_SUBMITTED: Final = 16


@dataclass(frozen=True, slots=True)
class AuthoritySubmitRequest(Request):
    """``authority_submit``: grants or revocations the CLI signed with an admin key, each as
    hex of its encoding (plexinode.security.statements)."""

    statements: tuple[str, ...] = arg(
        ListOf(TEXT, MAX_SUBMITTED), error="statements are a list of hex texts"
    )

    def encoded(self) -> list[bytes]:
        """The statements' bytes.

        Raises:
            AdminError: One is not hex.
        """
        try:
            return [bytes.fromhex(text) for text in self.statements]
        except ValueError:
            raise AdminError("a statement is not hex") from None


@dataclass(frozen=True, slots=True)
class ResolveRequest(Request):
    """``resolve``: the node IDs this node knows that begin with `prefix` (at least
    :data:`MIN_PREFIX` characters of a node ID's text form)."""

    prefix: str = arg(TEXT, error="a node ID prefix is text")

    def __post_init__(self) -> None:
        try:
            node_id_prefix(self.prefix)
        except ValueError as exc:
            raise AdminError(str(exc)) from None

    def matches(self, known: Iterable[NodeId]) -> list[str]:
        """The IDs among `known` that begin with the prefix, sorted, each once."""
        prefix = node_id_prefix(self.prefix)
        return sorted({text for text in map(str, known) if text.startswith(prefix)})
