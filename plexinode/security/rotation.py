"""Network key rotation, propagated by gossip (sans-I/O).

A rotation is three steps, as in Serf: install the new key on every member, make it primary on
every member, remove the old one. Here the operator runs each step once, on any member, and
the network carries it out:

1. **The plan.** Each step rewrites one cluster-state entry, :data:`PLAN_KEY` (a
   :class:`Plan`: the ids of the keys the network should accept, and the id of the one to send
   with). Only a node that holds the admin role writes it, and members accept it only from
   such a node. The replicated cluster state (:mod:`plexinode.membership.state`) gossips it to
   every member and hands it to late joiners in push-pull; two admins' concurrent plans
   resolve as any write does, last writer wins.
2. **Reconciling.** Every member compares its keyring with the plan (:func:`reconcile`):
   it fetches the keys it lacks, switches to the plan's primary once it holds it, and retires
   the keys the plan dropped. It never gives up the key it sends with before it holds the
   plan's primary, so a member that cannot fetch yet stays reachable.
3. **Delivery.** Keys never travel in the plan. A member that lacks one asks another member
   that has it over a secure stream of protocol :data:`KEYRING_PROTOCOL`; the answer holds
   each key sealed to the asker's own public key (:func:`plexinode.identity.seal_to`), and is
   given only to a node whose key holds a valid member grant and is not revoked
   (:mod:`plexinode.net.authority`). A member offline during the whole rotation comes back
   with only a retired key: its datagrams are dropped, but the stream handshake is let through
   for this one protocol (:mod:`plexinode.net.keyring`), so it fetches the current keys
   and rejoins without operator action. A revoked member never gets them.
4. **Progress.** Every member advertises the ids of its keys in its ``keys`` tag (primary
   first), which gossip spreads like any tag change; :func:`progress` counts, per key, the
   alive members that hold it and that send with it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import ClassVar, Final

from plexinode.errors import AuthenticationError, DecodeError
from plexinode.identity import SEAL_OVERHEAD, Identity, seal_to
from plexinode.membership.state import StateEntry
from plexinode.net.keyring import MAX_KEYS, MAX_RETIRED, NETWORK_KEY_BYTES, Keyring, key_id
from plexinode.wire.schema import Bool, Bytes, ListOf, Message, Nested, Struct, register, wire

#: Cluster-state keys under this prefix are written only by the node's own commands.
RESERVED_STATE_PREFIX: Final = "net."
#: The cluster-state key of the network's key plan.
PLAN_KEY: Final = "net.keyring"
#: The member tag that lists a member's key ids, primary first.
KEYS_TAG: Final = "keys"
#: The secure-stream protocol that hands a member the keys it lacks.
KEYRING_PROTOCOL: Final = "keyring/1"
#: Bytes of a key id on the wire (:func:`plexinode.net.keyring.key_id` is their hex).
KEY_ID_BYTES: Final = 6
#: Bytes of a network key sealed to a member.
SEALED_KEY_BYTES: Final = NETWORK_KEY_BYTES + SEAL_OVERHEAD


@dataclass(frozen=True, slots=True)
class Plan:
    """What keys the network should hold: `keys` (ids), sending with `primary` (one of them)."""

    keys: tuple[str, ...]
    primary: str

    def __post_init__(self) -> None:
        if not 1 <= len(self.keys) <= MAX_KEYS or self.primary not in self.keys:
            raise ValueError(f"a key plan names 1-{MAX_KEYS} keys, the primary among them")
        if len(set(self.keys)) != len(self.keys) or not all(map(_is_key_id, self.keys)):
            raise ValueError("a key plan names distinct key ids (12 hex digits)")

    def encode(self) -> bytes:
        return json.dumps({"keys": list(self.keys), "primary": self.primary}).encode()

    @classmethod
    def decode(cls, data: bytes) -> Plan:
        """Raises DecodeError for anything but an encoded plan."""
        try:
            doc = json.loads(data)
            return cls(tuple(doc["keys"]), doc["primary"])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DecodeError(f"malformed key plan: {exc}") from None

    @classmethod
    def of(cls, keyring: Keyring) -> Plan:
        """The plan a keyring already fulfils."""
        return cls(tuple(key_id(k) for k in keyring), key_id(keyring.primary))

    def with_key(self, key: str) -> Plan:
        return self if key in self.keys else Plan((*self.keys, key), self.primary)

    def without_key(self, key: str) -> Plan:
        if key == self.primary:
            raise ValueError(f"key {key} is the network's primary key: make another primary first")
        return Plan(tuple(k for k in self.keys if k != key), self.primary)


def _is_key_id(text: object) -> bool:
    return (
        isinstance(text, str)
        and len(text) == 2 * KEY_ID_BYTES
        and all(c in "0123456789abcdef" for c in text)
    )


@dataclass(frozen=True, slots=True)
class Steps:
    """What a member must do to fulfil a plan.

    Attributes:
        fetch: Ids of the plan's keys it lacks.
        use: The key to send with from now on (None: keep the current one).
        retire: Keys the plan dropped.
    """

    fetch: tuple[str, ...]
    use: bytes | None
    retire: tuple[bytes, ...]

    def __bool__(self) -> bool:
        return bool(self.fetch or self.use or self.retire)


def reconcile(keyring: Keyring, plan: Plan) -> Steps:
    """The steps that bring `keyring` to `plan` (module docstring, point 2)."""
    held = {key_id(k): k for k in keyring}
    fetch = tuple(k for k in plan.keys if k not in held)
    new_primary = held.get(plan.primary)
    use = new_primary if new_primary is not None and new_primary != keyring.primary else None
    sending = new_primary if new_primary is not None else keyring.primary
    retire = tuple(k for i, k in held.items() if i not in plan.keys and k != sending)
    return Steps(fetch, use, retire)


def keys_tag(keyring: Keyring) -> str:
    """The ``keys`` tag of a member with `keyring`: its key ids, primary first."""
    ids = [key_id(keyring.primary)] + [key_id(k) for k in keyring if k != keyring.primary]
    return ",".join(ids)


def tagged_keys(tags: Mapping[str, str]) -> tuple[str, ...]:
    """The key ids a member's tags list, primary first (none if it lists none)."""
    value = tags.get(KEYS_TAG, "")
    return tuple(k for k in value.split(",") if _is_key_id(k))


def progress(plan: Plan, members: Iterable[Mapping[str, str]]) -> dict[str, dict[str, int]]:
    """Per key of `plan`: of the `members` (their tags), how many hold it, how many send with
    it, and how many there are."""
    tagged = [tagged_keys(tags) for tags in members]
    return {
        key: {
            "holders": sum(key in keys for keys in tagged),
            "senders": sum(bool(keys) and keys[0] == key for keys in tagged),
            "members": len(tagged),
        }
        for key in plan.keys
    }


# -- delivery --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SealedKey(Struct):
    """A network key sealed to one member."""

    key_id: bytes = wire(Bytes(KEY_ID_BYTES, KEY_ID_BYTES))
    sealed: bytes = wire(Bytes(SEALED_KEY_BYTES, SEALED_KEY_BYTES))


@register
@dataclass(frozen=True, slots=True)
class KeyringRequest(Message):
    """``keyring/1``, asker to holder: the ids of the keys the asker holds (active or
    retired)."""

    TYPE: ClassVar[int] = 73
    NAME: ClassVar[str] = "keyring-request"
    have: tuple[bytes, ...] = wire(
        ListOf(Bytes(KEY_ID_BYTES, KEY_ID_BYTES), MAX_KEYS + MAX_RETIRED)
    )


@register
@dataclass(frozen=True, slots=True)
class KeyringReply(Message):
    """``keyring/1``, holder to asker: refused (`granted` false, nothing else), or the keys the
    asker lacks sealed to it, and the id of the key the holder sends with."""

    TYPE: ClassVar[int] = 74
    NAME: ClassVar[str] = "keyring-reply"
    granted: bool = wire(Bool())
    primary: bytes = wire(Bytes(0, KEY_ID_BYTES))
    keys: tuple[SealedKey, ...] = wire(ListOf(Nested(SealedKey), MAX_KEYS))
    #: The holder's key plan as an admin wrote it (the signed cluster-state entry), if it has
    #: one: a member that missed a rotation installs only the keys it names.
    plan: tuple[StateEntry, ...] = wire(ListOf(Nested(StateEntry), 1), default=())


def request_for(keyring: Keyring) -> KeyringRequest:
    """What a member with `keyring` asks."""
    held = [*keyring, *keyring.retired]
    return KeyringRequest(tuple(bytes.fromhex(key_id(k)) for k in held))


def reply_to(
    keyring: Keyring,
    request: KeyringRequest,
    asker_public_key: bytes,
    plan: StateEntry | None = None,
) -> KeyringReply:
    """A granted reply to an entitled asker: the keys it lacks, sealed to its key, and the
    key plan's signed entry, if any."""
    have = {k.hex() for k in request.have}
    sealed = tuple(
        SealedKey(bytes.fromhex(key_id(k)), seal_to(asker_public_key, k))
        for k in keyring
        if key_id(k) not in have
    )
    entries = () if plan is None else (plan,)
    return KeyringReply(True, bytes.fromhex(key_id(keyring.primary)), sealed, entries)


REFUSED: Final = KeyringReply(False, b"", ())


def open_reply(identity: Identity, reply: KeyringReply) -> dict[str, bytes]:
    """The keys of a granted reply, by id.

    Raises:
        AuthenticationError: A key is not sealed to `identity`, or is not the key its id names.
    """
    keys: dict[str, bytes] = {}
    for item in reply.keys:
        key = identity.unseal(item.sealed)
        if len(key) != NETWORK_KEY_BYTES or key_id(key) != item.key_id.hex():
            raise AuthenticationError("a delivered key does not match its id")
        keys[item.key_id.hex()] = key
    return keys
