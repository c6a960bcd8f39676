"""The responder under load, sans I/O: a stateless cookie before it spends any X25519.

Adapted from WireGuard's cookie reply (Donenfeld, "WireGuard: Next Generation Kernel Network
Tunnel", section 5.4.7, "Under Load: Cookie Reply Message") to a handshake that runs over TCP.

A responder normally answers every msg1 whose network tag it accepts with msg2, which costs it
two X25519 operations (its ephemeral key and the shared secret) and one Ed25519 signature,
some 150 us, before the initiator has proved anything but that it holds a network key. On the
open network everyone holds that key; on a private one, every member does. So when the node is
*under load* (:meth:`CookieGuard.under_load`: many handshakes pending, or many exchanges spent in
the last second), it stops paying that price for a msg1 that does not carry a valid ``mac2``:

1. The responder answers such a msg1 with a *cookie reply* and closes the connection. The
   cookie is a keyed hash of the initiator's host (an IPv4 address, an IPv6 /64, as
   :func:`~plexinode.net.stream_limits.host_of` counts hosts) under a random secret that is
   replaced every :data:`COOKIE_ROTATION` seconds (the previous one is still accepted, so a
   cookie lives two to four minutes). Computing it needs no state per initiator: the reply
   costs one keyed hash, one key derivation and one AEAD seal of 16 bytes.
2. The reply seals the cookie under a key derived from the pre-shared key msg1 was tagged with,
   with the whole msg1 as associated data and a random nonce, so only a holder of that key who
   sent that very msg1 can read it: an outsider, or a member watching someone else's
   connection, learns nothing it could use from another host.
3. The initiator reconnects once and sends a new msg1 whose last field is
   ``mac2 = MAC(cookie, msg1 without mac2)``. Under load the responder serves it (the network
   tag, the replay memory and everything after are unchanged), because the cookie proves the
   initiator read a reply sent to its host within the last few minutes.

msg1 always carries the 16-byte ``mac2`` field (zeros while the initiator holds no cookie), so
its size stays fixed. ``mac2`` is not part of the transcript hash: it is a ticket for the
responder's CPU, not something either side proves, and an attacker on the path who alters it
can only make the responder answer with a cookie, which it could achieve by dropping the
connection anyway. When the node is not under load, ``mac2`` is not even looked at.

Over TCP the source address is already proved by TCP's own handshake, which WireGuard over UDP
has to get from the cookie; what the cookie adds here is that a flood of msg1s sent blind
(connect, write, hang up) costs the responder a keyed hash each instead of an X25519 and a
signature, and that a flooder must read an answer and pay a round trip before the responder
spends anything. A flooder that does read its cookies is then held to its host's connection
rate, as before (docs/decisions.md 44 weighs this).

:class:`CookieGuard` is the node's state (the secrets, the load meter and the counters); the
stream service hands each accepted connection a :class:`ConnectionCookies` bound to its host,
which the :class:`~plexinode.net.handshake.Responder` consults. Time and randomness are passed
in: ``now`` values, a clock, and a ``random_bytes`` function.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Final

import nacl.bindings
import nacl.exceptions
import nacl.utils

from plexinode.errors import HandshakeError
from plexinode.net.handshake_crypto import AEAD_TAG_BYTES, KEY_BYTES, kdf
from plexinode.net.stream_limits import host_of

#: Size of a cookie and of the ``mac2`` field at the end of msg1.
COOKIE_BYTES: Final = 16
MAC2_BYTES: Final = 16
#: The ``mac2`` of an initiator that holds no cookie.
ZERO_MAC2: Final = bytes(MAC2_BYTES)
#: XChaCha20-Poly1305's nonce: 24 random bytes, never repeated in practice.
COOKIE_NONCE_BYTES: Final = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#: nonce || the cookie sealed (16 + 16): 56 bytes, a size no other handshake message has.
COOKIE_REPLY_BYTES: Final = COOKIE_NONCE_BYTES + COOKIE_BYTES + AEAD_TAG_BYTES
#: Seconds a cookie secret is new for (WireGuard's two minutes); the previous secret is still
#: accepted for as long again, so an initiator's cookie is good for at least this long.
COOKIE_ROTATION: Final = 120.0
#: The window over which responder key exchanges are counted against the budget.
LOAD_WINDOW: Final = 1.0

# BLAKE2b personalisations, one per purpose (see plexinode.net.handshake_crypto).
PERSON_COOKIE: Final = b"pxn-hs-cookie"
PERSON_MAC2: Final = b"pxn-hs-mac2"
PERSON_COOKIE_KEY: Final = b"pxn-hs-cookie-k"

RandomBytes = Callable[[int], bytes]


class CookieReply(HandshakeError):
    """(Initiator) The responder is under load and answered msg1 with a cookie: reconnect and
    start a new handshake with ``cookie`` (``Initiator(cookie=...)``).

    Attributes:
        cookie: The 16-byte cookie, good for this host for two minutes at least.
    """

    def __init__(self, cookie: bytes) -> None:
        super().__init__("the responder is under load: it answered msg1 with a cookie")
        self.cookie = cookie


class CookieReplySent(HandshakeError):
    """(Responder) We were under load and answered msg1 with a cookie reply: the handshake
    ends here and the connection is closed (no state is kept for it)."""


def mac2(cookie: bytes, tagged: bytes) -> bytes:
    """``MAC(cookie, msg1 without mac2)``: BLAKE2b-128 keyed with the cookie."""
    return hashlib.blake2b(tagged, key=cookie, digest_size=MAC2_BYTES, person=PERSON_MAC2).digest()


def cookie_key(psk: bytes) -> bytes:
    """The key that seals a cookie reply: ``KDF(psk, "", "pxn-hs-cookie-k")``."""
    return kdf(psk, b"", PERSON_COOKIE_KEY)


def seal_cookie(psk: bytes, msg1: bytes, cookie: bytes, nonce: bytes) -> bytes:
    """A cookie reply: ``nonce || Seal(cookie_key(psk), nonce, ad = msg1, cookie)``."""
    sealed = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
        cookie, msg1, nonce, cookie_key(psk)
    )
    return nonce + bytes(sealed)


def open_cookie(psk: bytes, msg1: bytes, reply: bytes) -> bytes:
    """The cookie in a reply to our `msg1`; HandshakeError if it is not one (wrong size,
    altered, sealed under another key, or an answer to another msg1)."""
    if len(reply) != COOKIE_REPLY_BYTES:
        raise HandshakeError(f"cookie reply is {len(reply)} bytes, expected {COOKIE_REPLY_BYTES}")
    nonce, sealed = reply[:COOKIE_NONCE_BYTES], reply[COOKIE_NONCE_BYTES:]
    try:
        return bytes(
            nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
                sealed, msg1, nonce, cookie_key(psk)
            )
        )
    except nacl.exceptions.CryptoError:
        raise HandshakeError(
            "cannot open the cookie reply: altered, or not an answer to our msg1"
        ) from None


class CookieGuard:
    """One node's cookie secrets, its load, and what they did.

    Args:
        pending_threshold: Under load while at least this many handshakes are pending.
        exchange_rate: Under load while the responder made at least this many key exchanges
            in the current or the previous :data:`LOAD_WINDOW`.
        random_bytes: Where the secrets and nonces come from (libsodium's by default).

    Attributes:
        replies: Cookie replies sent.
        valid_mac2: msg1s that carried a valid ``mac2`` while under load (and were served).
        exchanges: Key exchanges the responder made (msg1s that reached X25519).
    """

    def __init__(
        self,
        *,
        pending_threshold: int,
        exchange_rate: int,
        random_bytes: RandomBytes = nacl.utils.random,
    ) -> None:
        if pending_threshold < 1 or exchange_rate < 1:
            raise ValueError("the load thresholds must be at least 1")
        self.pending_threshold = pending_threshold
        self.exchange_rate = exchange_rate
        self._random = random_bytes
        self._current = b""
        self._previous = b""
        self._born = -float("inf")
        self._window = -float("inf")
        self._in_window = 0
        self._in_last_window = 0
        self.replies = 0
        self.valid_mac2 = 0
        self.exchanges = 0

    # -- load ---------------------------------------------------------------------------------

    def under_load(self, pending: int, now: float) -> bool:
        """Whether a msg1 arriving now, with `pending` handshakes in progress, needs a cookie."""
        self._tick(now)
        busiest = max(self._in_window, self._in_last_window)
        return pending >= self.pending_threshold or busiest >= self.exchange_rate

    def exchanged(self, now: float) -> None:
        """The responder is about to spend a key exchange on a msg1."""
        self._tick(now)
        self._in_window += 1
        self.exchanges += 1

    def _tick(self, now: float) -> None:
        if now >= self._window + LOAD_WINDOW:
            recent = now < self._window + 2 * LOAD_WINDOW
            self._in_last_window = self._in_window if recent else 0
            self._in_window = 0
            self._window = now

    # -- cookies ------------------------------------------------------------------------------

    def cookie(self, host: str, now: float) -> bytes:
        """The cookie of `host` (counted as :func:`host_of` does) under the current secret."""
        self._rotate(now)
        return _cookie(self._current, host)

    def check(self, host: str, tagged: bytes, mac: bytes, now: float) -> bool:
        """Whether `mac` is ``mac2`` of `tagged` under `host`'s cookie, by the current or the
        previous secret."""
        self._rotate(now)
        for secret in (self._current, self._previous):
            if secret and hmac.compare_digest(mac, mac2(_cookie(secret, host), tagged)):
                return True
        return False

    def reply(self, host: str, psk: bytes, msg1: bytes, now: float) -> bytes:
        """The cookie reply to `msg1`, sealed under `psk` (counted in :attr:`replies`)."""
        self.replies += 1
        return seal_cookie(psk, msg1, self.cookie(host, now), self._random(COOKIE_NONCE_BYTES))

    def _rotate(self, now: float) -> None:
        if now >= self._born + COOKIE_ROTATION:
            # The previous secret stays only while its cookies are at most one period old.
            fresh = now < self._born + 2 * COOKIE_ROTATION
            self._previous = self._current if fresh else b""
            self._current = self._random(KEY_BYTES)
            self._born = now


def _cookie(secret: bytes, host: str) -> bytes:
    return hashlib.blake2b(
        host_of(host).encode(), key=secret, digest_size=COOKIE_BYTES, person=PERSON_COOKIE
    ).digest()


class ConnectionCookies:
    """What a :class:`~plexinode.net.handshake.Responder` asks about one inbound connection.

    Args:
        guard: The node's :class:`CookieGuard`.
        host: The connection's source address.
        clock: The time now, in seconds (any monotonic clock).
        pending: How many handshakes are in progress now.
    """

    def __init__(
        self,
        guard: CookieGuard,
        host: str,
        clock: Callable[[], float],
        pending: Callable[[], int],
    ) -> None:
        self.guard = guard
        self.host = host
        self._clock = clock
        self._pending = pending

    def required(self, tagged: bytes, mac: bytes) -> bool:
        """Whether this msg1 (`tagged`, its ``mac2`` `mac`) must get a cookie reply: the node is
        under load and `mac` is not valid for this host."""
        now = self._clock()
        if not self.guard.under_load(self._pending(), now):
            return False
        if self.guard.check(self.host, tagged, mac, now):
            self.guard.valid_mac2 += 1
            return False
        return True

    def reply(self, psk: bytes, msg1: bytes) -> bytes:
        """The cookie reply to `msg1`, sealed under `psk`."""
        return self.guard.reply(self.host, psk, msg1, self._clock())

    def exchanged(self) -> None:
        """The responder is about to spend a key exchange on this connection's msg1."""
        self.guard.exchanged(self._clock())
