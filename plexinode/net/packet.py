"""Authenticated datagrams (sans-I/O): sealing, opening and replay protection.

Every datagram is signed with the sender's Ed25519 key and carries that key, so the receiver
learns who sent it from the datagram alone, with no handshake and no per-peer state to set up.
Layout (big-endian)::

    offset  size  field
    0       1     version (1)
    1       32    sender's Ed25519 public key (the node ID is its BLAKE2b-256 hash)
    33      8     recipient: first 8 bytes of the recipient's node ID, or 8 zero bytes for
                  "whoever listens at this address" (allowed only for first-contact requests)
    41      8     counter: the sender's strictly increasing clock, in microseconds
    49      n     payload: a msgpack envelope (plexinode.wire.envelope)
    49+n    64    Ed25519 signature over DOMAIN || bytes[0 : 49+n]
    113+n   16    network tag: keyed BLAKE2b of bytes[0 : 113+n] under the sender's primary
                  network key (plexinode.net.keyring), checked before the signature

Why signatures rather than a per-peer authenticated box (see docs/decisions.md): a signature
works for the first datagram to an address whose key we do not know yet (bootstrap), the
receiver keeps no per-peer key state that a flood of fresh identities could exhaust, and later
services need statements that third parties can verify anyway. The price, measured by
scripts/bench/bench_datagram.py, is one sign and one verify per datagram.

Replay protection does not trust wall clocks to agree (nodes may be hours apart): the counter
is compared only with earlier counters *from the same sender*. A receiver keeps, per sender, the
highest counter seen and the set of counters seen within the replay window below it; a counter
at or below ``highest - window`` or already seen is a replay. The per-sender set is capped; when
it overflows, the oldest entry becomes a floor below which everything is refused, so the cap
never re-admits a replay. State is kept for a bounded number of senders (least recently heard
is forgotten first); a datagram replayed to a node that has forgotten its sender, or never heard
of it, is accepted once, which costs at most one duplicate request: responses are only accepted
for requests still pending, and requests are idempotent.
"""

from __future__ import annotations

import collections
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from plexinode.errors import AuthenticationError, DecodeError
from plexinode.identity import (
    PUBLIC_KEY_BYTES,
    SIGNATURE_BYTES,
    Identity,
    NodeId,
    verify_signature,
)
from plexinode.net.keyring import TAG_BYTES, Keyring
from plexinode.net.transport import MAX_DATAGRAM

VERSION: Final = 2
DOMAIN: Final = b"plexinode-datagram-v1\x00"
RECIPIENT_BYTES: Final = 8
ANY_RECIPIENT: Final = bytes(RECIPIENT_BYTES)
_HEADER: Final = struct.Struct(f">B{PUBLIC_KEY_BYTES}s{RECIPIENT_BYTES}sQ")
HEADER_BYTES: Final = _HEADER.size
OVERHEAD: Final = HEADER_BYTES + SIGNATURE_BYTES + TAG_BYTES
#: Largest envelope that fits in one datagram.
MAX_PAYLOAD: Final = MAX_DATAGRAM - OVERHEAD


def recipient_tag(node_id: NodeId | None) -> bytes:
    """The 8-byte recipient field for `node_id` (None: any recipient)."""
    return ANY_RECIPIENT if node_id is None else node_id.raw[:RECIPIENT_BYTES]


@dataclass(frozen=True, slots=True)
class OpenedPacket:
    """A datagram whose layout has been parsed (its signature is not checked yet)."""

    public_key: bytes
    recipient: bytes
    counter: int
    payload: bytes
    signed: bytes
    signature: bytes
    tagged: bytes = b""
    tag: bytes = b""

    def verify(self) -> NodeId:
        """Check the signature; returns the sender's node ID or raises AuthenticationError."""
        verify_signature(self.public_key, DOMAIN + self.signed, self.signature)
        return NodeId.from_public_key(self.public_key)


class Sealer:
    """Signs and tags outgoing datagrams, with a strictly increasing counter.

    Args:
        identity: The sender.
        clock: Unix time, for the counter.
        keyring: The network's keys (the primary one tags); default: the open network
            ``open``'s.
    """

    def __init__(
        self,
        identity: Identity,
        clock: Callable[[], float],
        keyring: Keyring | None = None,
    ) -> None:
        self._identity = identity
        self._clock = clock
        self._last = 0
        self.keyring = keyring or Keyring.open("open")

    def next_counter(self) -> int:
        """A counter larger than every earlier one, close to the clock in microseconds."""
        self._last = max(self._last + 1, int(self._clock() * 1_000_000))
        return self._last

    def seal(self, payload: bytes, recipient: NodeId | None) -> bytes:
        """The datagram carrying `payload` to `recipient`; ValueError if it does not fit."""
        if len(payload) > MAX_PAYLOAD:
            raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
        header = _HEADER.pack(
            VERSION, self._identity.public_key, recipient_tag(recipient), self.next_counter()
        )
        signed = header + payload
        body = signed + self._identity.sign(DOMAIN + signed)
        return body + self.keyring.tag(body)


def parse(datagram: bytes) -> OpenedPacket:
    """Split a datagram into its fields; DecodeError when the layout is wrong."""
    if len(datagram) > MAX_DATAGRAM:
        raise DecodeError(f"datagram of {len(datagram)} bytes exceeds {MAX_DATAGRAM}")
    if len(datagram) < OVERHEAD:
        raise DecodeError("datagram too short")
    version, public_key, recipient, counter = _HEADER.unpack_from(datagram)
    if version != VERSION:
        raise DecodeError(f"unsupported datagram version {version}")
    body, tag = datagram[:-TAG_BYTES], datagram[-TAG_BYTES:]
    signed = body[:-SIGNATURE_BYTES]
    return OpenedPacket(
        public_key=public_key,
        recipient=recipient,
        counter=counter,
        payload=signed[HEADER_BYTES:],
        signed=signed,
        signature=body[-SIGNATURE_BYTES:],
        tagged=body,
        tag=tag,
    )


class _SenderWindow:
    __slots__ = ("floor", "highest", "order", "seen")

    def __init__(self) -> None:
        self.highest = 0
        self.floor = 0
        self.seen: set[int] = set()
        self.order: collections.deque[int] = collections.deque()


class ReplayGuard:
    """Remembers recent counters per sender and refuses repeats.

    Args:
        window_us: how far below a sender's highest counter a datagram may still arrive
            (reordering tolerance), in the sender's microseconds.
        max_senders: senders remembered at once (least recently heard forgotten first).
        max_per_sender: counters remembered per sender within the window.
        max_counters: counters remembered in all (about 90 bytes each): when a new one would
            exceed it, the least recently heard senders are forgotten first. Without it, many
            identities each sending many datagrams could pin max_senders * max_per_sender
            counters (gigabytes); with it, the state is bounded whatever they do.
    """

    def __init__(
        self,
        window_us: int,
        *,
        max_senders: int = 65_536,
        max_per_sender: int = 4096,
        max_counters: int = 262_144,
    ) -> None:
        self.window_us = window_us
        self.max_senders = max_senders
        self.max_per_sender = max_per_sender
        self.max_counters = max_counters
        self._senders: collections.OrderedDict[bytes, _SenderWindow] = collections.OrderedDict()
        self._counters = 0

    def __len__(self) -> int:
        return len(self._senders)

    @property
    def counters(self) -> int:
        """Counters remembered across all senders."""
        return self._counters

    def _forget_oldest(self) -> None:
        _, oldest = self._senders.popitem(last=False)
        self._counters -= len(oldest.order)

    def accept(self, sender: bytes, counter: int) -> bool:
        """Record `counter` from `sender`; False if it is a replay (or too old)."""
        state = self._senders.get(sender)
        if state is None:
            state = _SenderWindow()
            self._senders[sender] = state
            if len(self._senders) > self.max_senders:
                self._forget_oldest()
        else:
            self._senders.move_to_end(sender)
        if counter <= state.floor or counter <= state.highest - self.window_us:
            return False
        if counter in state.seen:
            return False
        state.seen.add(counter)
        state.order.append(counter)
        self._counters += 1
        state.highest = max(state.highest, counter)
        horizon = state.highest - self.window_us
        while state.order and (state.order[0] <= horizon or len(state.order) > self.max_per_sender):
            old = state.order.popleft()
            self._counters -= 1
            state.seen.discard(old)
            if old > horizon:
                state.floor = max(state.floor, old)
        while self._counters > self.max_counters and len(self._senders) > 1:
            self._forget_oldest()  # never `sender` itself: it was just moved to the end
        return True


def check_recipient(packet: OpenedPacket, me: NodeId) -> bool:
    """True if the datagram is addressed to `me` or to any node."""
    return packet.recipient in (ANY_RECIPIENT, me.raw[:RECIPIENT_BYTES])


__all__ = [
    "MAX_PAYLOAD",
    "TAG_BYTES",
    "AuthenticationError",
    "OpenedPacket",
    "ReplayGuard",
    "Sealer",
    "check_recipient",
    "parse",
    "recipient_tag",
]
