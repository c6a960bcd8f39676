"""Replicated cluster state: a last-writer-wins map with hybrid logical clocks (sans-I/O).

A small map of network-wide settings (later, blocklists) that every member holds a copy of.
Writes are gossiped with the membership claims and exchanged in push-pull; copies converge
without coordination because merging is a join in a total order:

1. **Every write is stamped** ``(wall_ms, counter, writer)`` by a hybrid logical clock
   (Kulkarni et al., 2014): ``wall_ms`` follows the writer's wall clock, ``counter`` orders
   writes within one millisecond and after observing a stamp from a clock that runs ahead, and
   the writer's public key breaks ties (then the signature, so that the order is total even
   between two writes one writer stamped alike). A node's clock never goes below a stamp it
   has seen, so a write made after seeing another always outranks it, whatever the wall
   clocks say.
2. **Merging keeps the greatest stamp per key.** A delete is a write of a tombstone. Merging
   is therefore commutative, associative and idempotent (the tests check it with hypothesis),
   and any two nodes that heard the same writes, in any order, any number of times, in any
   batches, hold the same map.
3. **Tombstones are kept.** A deleted key keeps its tombstone until a newer write replaces
   it, so no old write arriving late can undo a delete. Forgetting tombstones after a while
   would need every node to refuse writes older than that, and a node that had missed a
   still-live old write would then never accept it: the copies would stay apart. The map is
   small (:data:`MAX_ENTRIES` keys, tombstones included), so keeping them costs little.
4. **Every write is signed** by its writer (domain ``plexinode-state-v1\\0``; a signed statement,
   :class:`~plexinode.signing.signed.Signed`): gossip relays it untrusted, forgeries are
   refused, and every value is attributable.

Clock skew: a node whose clock runs hours ahead stamps its writes hours ahead, and they win
conflicts with writes made elsewhere until the other clocks pass them. That is the price of
last-writer-wins without a coordinator; writes stamped more than ``max_drift`` ahead of the
receiver's clock are still accepted (refusing them would split the network's view for hours)
but counted, so that ``status`` shows the skewed writer. Writes stamped more than
:data:`FUTURE_LIMIT_MS` (a day) ahead are refused and counted, and never move the receiver's
clock: a member that stamped a write near the end of time would otherwise freeze that key,
and through the clock every key, for good. A copy that refused such a write takes it once its
own clock comes within a day of the stamp (push-pull offers it again), so the copies still
converge; a writer can hold a key against later writes for at most a day.
"""

from __future__ import annotations

import collections
import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import ClassVar, Final

from plexinode.errors import DecodeError
from plexinode.identity import PUBLIC_KEY_BYTES, SIGNATURE_BYTES, Identity
from plexinode.signing.signed import Signed, domain
from plexinode.wire.schema import Bool, Bytes, Int, Str, wire

STATE_DOMAIN: Final = domain(b"plexinode-state-v1\x00")
#: Longest key, and what a key may contain (dotted or slashed names of settings).
MAX_KEY: Final = 64
KEY_PATTERN: Final = re.compile(r"[a-z0-9][a-z0-9._/-]{0,63}")
#: Largest value, bytes: an entry must fit beside membership claims in one datagram.
MAX_VALUE: Final = 256
#: Most keys the map holds (tombstones included); writes of new keys beyond it are refused.
MAX_ENTRIES: Final = 256
#: Writes stamped further ahead of the receiver's clock than this (ms) are refused: hours of
#: skew between honest clocks pass, a stamp near the end of time does not.
FUTURE_LIMIT_MS: Final = 24 * 3600 * 1000
#: Largest counter: the clock's logical part.
MAX_COUNTER: Final = (1 << 32) - 1


@dataclass(frozen=True, slots=True)
class StateEntry(Signed):
    """One signed write (or delete) of a key, as it travels and as it is kept.

    Attributes:
        key: The key (:data:`KEY_PATTERN`).
        value: The value (empty for a delete).
        deleted: A tombstone: the key was deleted.
        wall_ms: The stamp's wall-clock part (Unix milliseconds of the writer's clock).
        counter: The stamp's logical part.
        writer: The writer's Ed25519 public key.
        signature: The writer's signature (module docstring, point 4).
    """

    DOMAIN: ClassVar[bytes] = STATE_DOMAIN
    SIGNER: ClassVar[str] = "writer"

    key: str = wire(Str(MAX_KEY))
    value: bytes = wire(Bytes(0, MAX_VALUE))
    deleted: bool = wire(Bool())
    wall_ms: int = wire(Int(0, (1 << 63) - 1))
    counter: int = wire(Int(0, MAX_COUNTER))
    writer: bytes = wire(Bytes(PUBLIC_KEY_BYTES, PUBLIC_KEY_BYTES))
    signature: bytes = wire(Bytes(SIGNATURE_BYTES, SIGNATURE_BYTES))

    @property
    def stamp(self) -> tuple[int, int, bytes, bytes]:
        """The entry's place in the total order of writes. The signature comes last: a writer
        that restarted with its clock set back could stamp two different writes alike, and
        every node must still pick the same one."""
        return (self.wall_ms, self.counter, self.writer, self.signature)

    def check(self) -> None:
        """Check the entry's shape and signature.

        Raises:
            DecodeError: A malformed key, or a delete that carries a value.
            AuthenticationError: The signature does not verify.
        """
        if not KEY_PATTERN.fullmatch(self.key):
            raise DecodeError(f"bad state key {self.key!r}")
        if self.deleted and self.value:
            raise DecodeError("a delete carries no value")
        self.verify_signature()


class HybridClock:
    """A hybrid logical clock: ``(wall_ms, counter)`` pairs that never go backwards and never
    fall behind a pair observed from elsewhere.

    Args:
        wall_ms: This node's wall clock, Unix milliseconds.
    """

    def __init__(self, wall_ms: Callable[[], int]) -> None:
        self._wall_ms = wall_ms
        self.last = (0, 0)

    def now(self) -> tuple[int, int]:
        """A new stamp, above every stamp made or observed so far."""
        wall = self._wall_ms()
        last_wall, last_counter = self.last
        if wall > last_wall:
            self.last = (wall, 0)
        elif last_counter < MAX_COUNTER:
            self.last = (last_wall, last_counter + 1)
        else:
            self.last = (last_wall + 1, 0)
        return self.last

    def observe(self, wall_ms: int, counter: int) -> None:
        """Take a stamp heard from another node into account."""
        self.last = max(self.last, (wall_ms, counter))


@dataclass(frozen=True, slots=True)
class Merged:
    """The outcome of :meth:`StateMap.merge`: `accepted` if the entry is now the key's."""

    accepted: bool
    reason: str = ""


class StateMap:
    """The replicated map, as one node holds it.

    Args:
        max_drift: Writes stamped further ahead of our clock than this are counted.
        max_entries: Most keys held (tombstones included).
    """

    def __init__(self, *, max_drift: float = 60.0, max_entries: int = MAX_ENTRIES) -> None:
        self.max_drift_ms = int(max_drift * 1000)
        self.max_entries = max_entries
        self._entries: dict[str, StateEntry] = {}
        #: Entries refused (by reason) or accepted from the future, for status.
        self.stats: collections.Counter[str] = collections.Counter()

    def __len__(self) -> int:
        return len(self._entries)

    def entries(self) -> Iterator[StateEntry]:
        """Every entry held, tombstones included, in key order."""
        return (self._entries[k] for k in sorted(self._entries))

    def get(self, key: str) -> StateEntry | None:
        """The entry of `key`, if any (a tombstone if it was deleted)."""
        return self._entries.get(key)

    def items(self) -> dict[str, bytes]:
        """The live keys and their values."""
        return {k: e.value for k, e in sorted(self._entries.items()) if not e.deleted}

    def would_accept(self, entry: StateEntry) -> bool:
        """Whether :meth:`merge` would take `entry` (checked before its signature is)."""
        current = self._entries.get(entry.key)
        if current is not None:
            return entry.stamp > current.stamp
        return len(self._entries) < self.max_entries

    def merge(self, entry: StateEntry, now_ms: int) -> Merged:
        """Merge one entry whose signature the caller checked (module docstring, point 2)."""
        current = self._entries.get(entry.key)
        if current is not None and entry.stamp <= current.stamp:
            return Merged(False, "stale")
        if current is None and len(self._entries) >= self.max_entries:
            self.stats["refused_full"] += 1
            return Merged(False, "full")
        if entry.wall_ms > now_ms + FUTURE_LIMIT_MS:
            self.stats["refused_far_future"] += 1
            return Merged(False, "far future")
        if entry.wall_ms > now_ms + self.max_drift_ms:
            self.stats["from_the_future"] += 1
        self._entries[entry.key] = entry
        return Merged(True)


def state_digest(entries: Iterator[StateEntry]) -> bytes:
    """A 16-byte digest of a map's entries (in key order, as :meth:`StateMap.entries` gives):
    equal digests mean equal maps, and push-pull skips the state."""
    digest = hashlib.blake2b(digest_size=16)
    for entry in entries:
        digest.update(entry.key.encode() + b"\0" + entry.signature)
    return digest.digest()


def sign_entry(
    identity: Identity, key: str, value: bytes | None, stamp: tuple[int, int]
) -> StateEntry:
    """A write of `value` under `key` (None: a delete), stamped and signed by `identity`.

    Raises:
        ValueError: A malformed key or an oversized value.
    """
    if not KEY_PATTERN.fullmatch(key):
        raise ValueError(
            f"a state key is 1-{MAX_KEY} characters of a-z, 0-9, '.', '_', '/', '-' "
            f"(starting with a letter or digit), not {key!r}"
        )
    if value is not None and len(value) > MAX_VALUE:
        raise ValueError(f"a state value is at most {MAX_VALUE} bytes, not {len(value)}")
    writer = identity.public_key
    unsigned = StateEntry(key, value or b"", value is None, stamp[0], stamp[1], writer, b"")
    return unsigned.signed_by(identity)
