"""Authenticated, encrypted datagrams (sans-I/O): sealing, opening and replay protection.

Every datagram is signed with the sender's Ed25519 key and carries that key, so the receiver
learns who sent it from the datagram alone, with no handshake and no per-peer state to set up;
and everything after the version byte is encrypted under the network key, so that on a private
network a passive observer learns neither the envelope (message types, member lists, cluster
state) nor who sent it. The *inner* datagram, what is signed and then encrypted (big-endian)::

    offset  size  field
    0       1     version (4)
    1       32    sender's Ed25519 public key (the node ID is its BLAKE2b-256 hash)
    33      8     recipient: first 8 bytes of the recipient's node ID, or 8 zero bytes for
                  "whoever listens at this address" (allowed only for first-contact requests)
    41      8     counter: the sender's boot epoch (high 32 bits, random at each start) and
                  the number of this datagram since then (low 32 bits, from 1)
    49      n     payload: a msgpack envelope (plexinode.wire.envelope)
    49+n    64    Ed25519 signature over DOMAIN || bytes[0 : 49+n]

and on the wire::

    0       1     version (4), in clear
    1       24    nonce
    25      112+n XChaCha20-Poly1305 of inner[1:], associated data the version byte, under the
                  sender's primary network key (its datagram subkey)
    137+n   16    Poly1305 tag

The nonce is synthetic (SIV-style): a keyed BLAKE2b-192 of the whole inner datagram, under a
second subkey of the network key. Two datagrams share a nonce only if they are the same bytes
(the counter makes every honest datagram different), so nonces never repeat for different
plaintexts, and sealing needs no randomness (docs/decisions.md, "Datagrams encrypted").
A receiver tries its active network keys, primary first: the AEAD tag is the cheap check that
replaced the network tag (one Poly1305 per key tried), and comes before the signature. The open
network uses the same format with its public key: there encryption hides nothing from anyone
who knows the network's name, and costs the same 24 bytes.

Why signatures rather than a per-peer authenticated box (see docs/decisions.md): a signature
works for the first datagram to an address whose key we do not know yet (bootstrap), the
receiver keeps no per-peer key state that a flood of fresh identities could exhaust, and later
services need statements that third parties can verify anyway. The price, measured by
scripts/bench/bench_datagram.py, is one sign and one verify per datagram.

Replay protection compares no clocks: not the sender's with ours (nodes may be hours apart),
and not the sender's with its own earlier ones (a node may restart with its clock stepped back).
A sender numbers its datagrams from 1 at each start, under an epoch drawn at random at that
start; the pair is the counter. A receiver keeps, per sender and per epoch heard from it (at
most ``max_epochs``, least recently heard forgotten first), the highest number seen and the set
of numbers seen within the reordering window below it; a number at or below
``highest - window``, or already seen, is a replay. A restarted sender brings a fresh epoch and
is accepted at once, while the datagrams of its earlier life stay refused as long as that epoch
is remembered. The per-epoch set is capped; when it overflows, the oldest entry becomes a floor
below which everything is refused, so the cap never re-admits a replay. State is bounded in
senders and counters (least recently heard forgotten first) and expires by age: a sender not
heard from for ``memory`` seconds of the receiver's own monotonic clock is forgotten. A datagram
replayed to a node that has forgotten its sender (or that epoch), or never heard of it, is
accepted once, which costs at most one duplicate request: responses are only accepted for
requests still pending, and requests are idempotent.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

import nacl.bindings
import nacl.exceptions

from plexinode.errors import AuthenticationError, DecodeError
from plexinode.identity import (
    PUBLIC_KEY_BYTES,
    SIGNATURE_BYTES,
    Identity,
    NodeId,
    verify_signature,
)
from plexinode.net.keyring import Keyring
from plexinode.net.transport import MAX_DATAGRAM

VERSION: Final = 4
DOMAIN: Final = b"plexinode-datagram-v1\x00"
RECIPIENT_BYTES: Final = 8
ANY_RECIPIENT: Final = bytes(RECIPIENT_BYTES)
_HEADER: Final = struct.Struct(f">B{PUBLIC_KEY_BYTES}s{RECIPIENT_BYTES}sQ")
#: Size of the inner header (version, sender key, recipient, counter).
HEADER_BYTES: Final = _HEADER.size
NONCE_BYTES: Final = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
AEAD_TAG_BYTES: Final = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_ABYTES
#: What encryption adds to the inner datagram: the nonce and the Poly1305 tag.
SEAL_BYTES: Final = NONCE_BYTES + AEAD_TAG_BYTES
#: Everything but the payload: 153 bytes (header 49, signature 64, nonce 24, tag 16).
OVERHEAD: Final = HEADER_BYTES + SIGNATURE_BYTES + SEAL_BYTES
#: Largest envelope that fits in one datagram.
MAX_PAYLOAD: Final = MAX_DATAGRAM - OVERHEAD
#: The counter is ``epoch << SEQ_BITS | seq``: a boot epoch and a datagram number.
SEQ_BITS: Final = 32
SEQ_MASK: Final = (1 << SEQ_BITS) - 1

_PERSON_ENCRYPT: Final = b"px-dgram-enc-v4"
_PERSON_NONCE: Final = b"px-dgram-nonce4"


def recipient_tag(node_id: NodeId | None) -> bytes:
    """The 8-byte recipient field for `node_id` (None: any recipient)."""
    return ANY_RECIPIENT if node_id is None else node_id.raw[:RECIPIENT_BYTES]


@functools.lru_cache(maxsize=64)
def _subkeys(network_key: bytes) -> tuple[bytes, bytes]:
    """The datagram encryption key and nonce key of a network key (one per purpose)."""
    return (
        hashlib.blake2b(key=network_key, digest_size=32, person=_PERSON_ENCRYPT).digest(),
        hashlib.blake2b(key=network_key, digest_size=32, person=_PERSON_NONCE).digest(),
    )


def encrypt(network_key: bytes, inner: bytes) -> bytes:
    """The datagram on the wire for the inner datagram `inner` (module docstring)."""
    encryption_key, nonce_key = _subkeys(network_key)
    nonce = hashlib.blake2b(inner, key=nonce_key, digest_size=NONCE_BYTES).digest()
    version = inner[:1]
    return (
        version
        + nonce
        + nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
            inner[1:], version, nonce, encryption_key
        )
    )


def check_layout(datagram: bytes) -> None:
    """DecodeError unless `datagram` has a possible size and our version."""
    if len(datagram) > MAX_DATAGRAM:
        raise DecodeError(f"datagram of {len(datagram)} bytes exceeds {MAX_DATAGRAM}")
    if len(datagram) < OVERHEAD:
        raise DecodeError("datagram too short")
    if datagram[0] != VERSION:
        raise DecodeError(f"unsupported datagram version {datagram[0]}")


def decrypt(datagram: bytes, keys: Iterable[bytes]) -> bytes | None:
    """The inner datagram, decrypted under the first of `keys` that authenticates it; None if
    none does. Call :func:`check_layout` first. Costs one Poly1305 per key tried."""
    version, nonce = datagram[:1], datagram[1 : 1 + NONCE_BYTES]
    ciphertext = datagram[1 + NONCE_BYTES :]
    for key in keys:
        try:
            plain = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
                ciphertext, version, nonce, _subkeys(key)[0]
            )
        except nacl.exceptions.CryptoError:
            continue
        return version + bytes(plain)
    return None


@dataclass(frozen=True, slots=True)
class OpenedPacket:
    """A decrypted datagram whose layout has been parsed (its signature is not checked yet)."""

    public_key: bytes
    recipient: bytes
    counter: int
    payload: bytes
    signed: bytes
    signature: bytes

    def verify(self) -> NodeId:
        """Check the signature; returns the sender's node ID or raises AuthenticationError."""
        verify_signature(self.public_key, DOMAIN + self.signed, self.signature)
        return NodeId.from_public_key(self.public_key)


class Sealer:
    """Signs and encrypts outgoing datagrams, each with a counter never used before by this
    sender.

    Args:
        identity: The sender.
        epochs: Draws a boot epoch (any integer; its low 32 bits are used): once now, and again
            in the unlikely case that 2**32 - 1 datagrams exhaust one epoch. Production code
            draws from the OS; simulations inject a seeded generator.
        keyring: The network's keys (the primary one encrypts); default: the open network
            ``open``'s.
    """

    def __init__(
        self,
        identity: Identity,
        epochs: Callable[[], int],
        keyring: Keyring | None = None,
    ) -> None:
        self._identity = identity
        self._epochs = epochs
        self.epoch = epochs() & SEQ_MASK
        self._seq = 0
        self.keyring = keyring or Keyring.open("open")

    def next_counter(self) -> int:
        """The next counter: this boot's epoch and the next datagram number."""
        if self._seq >= SEQ_MASK:
            fresh = self._epochs() & SEQ_MASK
            self.epoch = fresh if fresh != self.epoch else (fresh + 1) & SEQ_MASK
            self._seq = 0
        self._seq += 1
        return self.epoch << SEQ_BITS | self._seq

    def seal(self, payload: bytes, recipient: NodeId | None) -> bytes:
        """The datagram carrying `payload` to `recipient`; ValueError if it does not fit."""
        if len(payload) > MAX_PAYLOAD:
            raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
        header = _HEADER.pack(
            VERSION, self._identity.public_key, recipient_tag(recipient), self.next_counter()
        )
        signed = header + payload
        return encrypt(self.keyring.primary, signed + self._identity.sign(DOMAIN + signed))


def parse(inner: bytes) -> OpenedPacket:
    """Split a decrypted inner datagram into its fields (its size was checked on the wire)."""
    _, public_key, recipient, counter = _HEADER.unpack_from(inner)
    signed = inner[:-SIGNATURE_BYTES]
    return OpenedPacket(
        public_key=public_key,
        recipient=recipient,
        counter=counter,
        payload=signed[HEADER_BYTES:],
        signed=signed,
        signature=inner[-SIGNATURE_BYTES:],
    )


def open_datagram(datagram: bytes, keyring: Keyring) -> OpenedPacket:
    """Check, decrypt (under an active key of `keyring`, primary first) and parse a datagram.

    Raises:
        DecodeError: Wrong size or version.
        AuthenticationError: No key of `keyring` authenticates it.
    """
    check_layout(datagram)
    inner = decrypt(datagram, keyring.by_preference())
    if inner is None:
        raise AuthenticationError("no network key authenticates the datagram")
    return parse(inner)


class _EpochWindow:
    """What one sender's one boot has sent us: the highest number, recent numbers, a floor."""

    __slots__ = ("floor", "highest", "order", "seen")

    def __init__(self) -> None:
        self.highest = 0
        self.floor = 0  # numbers at or below it are refused (seq 0 is never sent)
        self.seen: set[int] = set()
        self.order: collections.deque[int] = collections.deque()


class _Sender:
    __slots__ = ("epochs", "heard")

    def __init__(self, now: float) -> None:
        self.heard = now
        self.epochs: collections.OrderedDict[int, _EpochWindow] = collections.OrderedDict()

    def counters(self) -> int:
        return sum(len(w.order) for w in self.epochs.values())


class ReplayGuard:
    """Remembers recent counters per sender and boot, and refuses repeats (module docstring).

    Args:
        window: How far below a sender's highest datagram number (in its current epoch) one
            may still arrive: the reordering tolerance, in the sender's datagrams.
        memory: Seconds (of the receiver's monotonic clock) after which a sender not heard
            from is forgotten.
        max_senders: Senders remembered at once (least recently heard forgotten first).
        max_epochs: Boots remembered per sender (least recently heard forgotten first): the
            current one and a few earlier ones whose datagrams stay refused.
        max_per_sender: Numbers remembered per sender and epoch within the window.
        max_counters: Numbers remembered in all (about 90 bytes each): when a new one would
            exceed it, the least recently heard senders are forgotten first. Without it, many
            identities each sending many datagrams could pin max_senders * max_per_sender
            numbers (gigabytes); with it, the state is bounded whatever they do.
    """

    def __init__(
        self,
        window: int,
        *,
        memory: float = 600.0,
        max_senders: int = 65_536,
        max_epochs: int = 4,
        max_per_sender: int = 4096,
        max_counters: int = 262_144,
    ) -> None:
        self.window = window
        self.memory = memory
        self.max_senders = max_senders
        self.max_epochs = max_epochs
        self.max_per_sender = max_per_sender
        self.max_counters = max_counters
        self._senders: collections.OrderedDict[bytes, _Sender] = collections.OrderedDict()
        self._counters = 0

    def __len__(self) -> int:
        return len(self._senders)

    @property
    def counters(self) -> int:
        """Datagram numbers remembered across all senders and epochs."""
        return self._counters

    def _forget_oldest(self) -> None:
        _, oldest = self._senders.popitem(last=False)
        self._counters -= oldest.counters()

    def expire(self, now: float) -> None:
        """Forget the senders not heard from for ``memory`` seconds by `now`."""
        senders = self._senders
        while senders and next(iter(senders.values())).heard + self.memory <= now:
            self._forget_oldest()

    def accept(self, sender: bytes, counter: int, now: float) -> bool:
        """Record `counter` from `sender` at `now` (the receiver's monotonic clock, in
        seconds); False if it is a replay (or too old)."""
        self.expire(now)
        state = self._senders.get(sender)
        if state is None:
            state = _Sender(now)
            self._senders[sender] = state
            if len(self._senders) > self.max_senders:
                self._forget_oldest()
        else:
            state.heard = now
            self._senders.move_to_end(sender)
        epoch, seq = counter >> SEQ_BITS, counter & SEQ_MASK
        window = state.epochs.get(epoch)
        if window is None:
            window = _EpochWindow()
            state.epochs[epoch] = window
            if len(state.epochs) > self.max_epochs:
                _, old = state.epochs.popitem(last=False)
                self._counters -= len(old.order)
        else:
            state.epochs.move_to_end(epoch)
        if seq <= window.floor or seq <= window.highest - self.window or seq in window.seen:
            return False
        window.seen.add(seq)
        window.order.append(seq)
        self._counters += 1
        window.highest = max(window.highest, seq)
        horizon = window.highest - self.window
        while window.order and (
            window.order[0] <= horizon or len(window.order) > self.max_per_sender
        ):
            old_seq = window.order.popleft()
            self._counters -= 1
            window.seen.discard(old_seq)
            if old_seq > horizon:
                window.floor = max(window.floor, old_seq)
        while self._counters > self.max_counters and len(self._senders) > 1:
            self._forget_oldest()  # never `sender` itself: it was just moved to the end
        return True


def check_recipient(packet: OpenedPacket, me: NodeId) -> bool:
    """True if the datagram is addressed to `me` or to any node."""
    return packet.recipient in (ANY_RECIPIENT, me.raw[:RECIPIENT_BYTES])


__all__ = [
    "MAX_PAYLOAD",
    "AuthenticationError",
    "OpenedPacket",
    "ReplayGuard",
    "Sealer",
    "check_layout",
    "check_recipient",
    "decrypt",
    "encrypt",
    "open_datagram",
    "parse",
    "recipient_tag",
]
