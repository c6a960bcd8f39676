"""The secure-stream handshake, sans I/O: mutual authentication and session keys.

Every TCP stream between two nodes starts with this three-message handshake. It is SIGMA-I
(Krawczyk's "SIGn-and-MAc", the variant that protects the initiator's identity) expressed in the
style of Noise XX with a pre-shared key (Noise's ``psk`` modifier, WireGuard's PSK): one
ephemeral X25519 exchange for forward secrecy, the network key mixed into every key, Ed25519
signatures over a running transcript hash for authentication, and each static identity sent
encrypted. This module does no I/O: :class:`Initiator` and :class:`Responder` take the bytes of
a received handshake message and return the bytes to send next, like h11 and wsproto;
:mod:`plexinode.net.secure` moves those bytes over a trio stream, and
:mod:`plexinode.net.handshake_crypto` holds the primitives.

The exchange (``||`` is concatenation, sizes in bytes)::

    msg1  I -> R   MAGIC(4) || VERSION(1) || e_I(32) || tag(16) || mac2(16)       69 bytes
    msg2  R -> I   e_R(32) || AEAD(k2, s_R(32) || sig_R(64))                     144 bytes
    msg3  I -> R   AEAD(k3, s_I(32) || sig_I(64))                                112 bytes

(or, from a responder under load, a 56-byte cookie reply instead of msg2, after which it
closes; :mod:`plexinode.net.cookie` explains it and ``mac2``, which is zeros until then.)

``tag`` is the network tag (:mod:`plexinode.net.keyring`) of ``MAGIC || VERSION || e_I``
under the initiator's pre-shared key ``psk`` (its primary network key). The responder picks
``psk`` by that tag among its keys before any Diffie-Hellman, so a node of another network
costs it one keyed hash per key. A *retired* key is let through too, marked on the result
(``psk_kind``): the stream service then serves that session only the protocol that hands a
member that missed a key rotation the current keys. A caller may offer further keys
(``extra_keys``, e.g. single-use tickets) and learns which kind matched.
``e_I``/``e_R`` are fresh X25519 public keys, ``s_I``/``s_R`` the nodes' long-term Ed25519 public
keys. Both sides keep a transcript hash ``h``, a BLAKE2b-256 chain where every step is
``h = H(h || data)`` (``h`` has a fixed size, so each step is unambiguous)::

    h0 = H(PROTOCOL_NAME)          h1 = H(h0 || prologue)      h2 = H(h1 || msg1[:53])
    h3 = H(h2 || e_R)              h4 = H(h3 || c2)            h5 = H(h4 || c3)

``ss = X25519(e_I, e_R)`` is the one Diffie-Hellman secret and ``ck = KDF(ss, psk)`` the
chaining key. Every key is keyed BLAKE2b-256 of the transcript hash with ``ck`` as the key and a
personalisation naming its one purpose, so no two purposes can ever share a key:
``k2 = KDF(ck, h3, "msg2")``, ``k3 = KDF(ck, h4, "msg3")``, the two session keys
``KDF(ck, h5, "i->r")`` and ``KDF(ck, h5, "r->i")``, and the two keys that seal each side's
secretstream header after the handshake. The handshake keys are used exactly once, so the AEAD
(XChaCha20-Poly1305) nonce is the constant zero; the transcript hash is also the AEAD's
associated data.

Why it is safe:

* **Both sides hold the network key.** The initiator proves it with msg1's tag; the responder
  proves it with msg2, which only a holder of ``psk`` can seal under ``k2``. A responder without
  the key (an outsider answering at a bootstrap address) fails the initiator at msg2, before
  msg3: the initiator reveals neither its identity nor any byte of data.
* **Authentication.** ``sig_R`` signs ``RESPONDER_LABEL || h3 || s_R`` and ``sig_I`` signs
  ``INITIATOR_LABEL || h4 || s_I``. The transcript hashes cover both ephemerals, so a signature
  is worth nothing outside the session it was made for (a replayed msg2 fails); the role labels
  differ, so a signature cannot be reflected back to its maker; and each signer signs its own key,
  and sends it encrypted under a key bound to ``ss``, so no third node can claim a signature as its
  own (SIGMA's defence against identity misbinding).
* **Identity hiding.** The responder reveals its identity only encrypted; the initiator, only
  once it has checked the responder's signature and, if given, ``expected_node_id``.
* **Forward secrecy.** The session keys depend on ephemeral keys, which are dropped when the
  handshake ends: a stolen identity key, or network key, does not decrypt recorded traffic.

``msg1[:53]`` is msg1 without ``mac2``: the cookie is a ticket for the responder's CPU, not
part of what either side proves, so the transcript does not depend on it.

Every parse is strict: exact message lengths, the magic, the version byte. Any failure raises
:class:`~plexinode.errors.HandshakeError` and leaves the role object failed; there is no partial
success. Calling a method in the wrong state is a bug of the caller and raises RuntimeError.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from typing import Final

from plexinode.errors import HandshakeError
from plexinode.identity import PUBLIC_KEY_BYTES, SIGNATURE_BYTES, Identity, NodeId
from plexinode.net.cookie import (
    COOKIE_BYTES,
    COOKIE_REPLY_BYTES,
    MAC2_BYTES,
    ZERO_MAC2,
    ConnectionCookies,
    CookieReply,
    mac2,
    open_cookie,
)
from plexinode.net.handshake_crypto import (
    AEAD_TAG_BYTES,
    KEY_BYTES,
    PERSON_HEADER_I2R,
    PERSON_HEADER_R2I,
    PERSON_I2R,
    PERSON_MSG2,
    PERSON_MSG3,
    PERSON_R2I,
    dh,
    identity_payload,
    initial_transcript,
    kdf,
    mix,
    mix_psk,
    open_sealed,
    seal,
    verify_identity_payload,
)
from plexinode.net.handshake_crypto import new_ephemeral as _ephemeral
from plexinode.net.handshake_types import (
    NETWORK,
    RETIRED,
    HandshakeResult,
    NetworkKeyError,
    PskLookup,
    PskMatch,
    UnexpectedPeerError,
    keyring_match,
)
from plexinode.net.keyring import TAG_BYTES, Keyring, network_tag, open_network_key
from plexinode.net.stream_limits import SeenMsg1

__all__ = [
    "MAGIC",
    "MAX_HANDSHAKE_MESSAGE",
    "MSG1_BYTES",
    "MSG2_BYTES",
    "MSG3_BYTES",
    "NETWORK",
    "RETIRED",
    "VERSION",
    "CookieReply",
    "HandshakeResult",
    "Initiator",
    "NetworkKeyError",
    "PskLookup",
    "PskMatch",
    "Responder",
    "UnexpectedPeerError",
    "keyring_match",
]

log = logging.getLogger(__name__)

#: The first bytes of msg1, so that a plexinode node talking to something else (an HTTP client,
#: a port scanner, an old build speaking another protocol) fails at once with a clear error.
MAGIC: Final = b"PXHS"
#: The handshake version, in msg1 right after the magic. Bumped whenever any byte layout, label
#: or derivation in this module changes; a responder only answers the version it speaks.
VERSION: Final = 4

#: Exact sizes of the three messages; anything else is rejected before any cryptography.
#: (The cookie reply, :data:`~plexinode.net.cookie.COOKIE_REPLY_BYTES`, differs from all.)
MSG1_BYTES: Final = len(MAGIC) + 1 + KEY_BYTES + TAG_BYTES + MAC2_BYTES
_IDENTITY_PAYLOAD_BYTES: Final = PUBLIC_KEY_BYTES + SIGNATURE_BYTES
MSG2_BYTES: Final = KEY_BYTES + _IDENTITY_PAYLOAD_BYTES + AEAD_TAG_BYTES
MSG3_BYTES: Final = _IDENTITY_PAYLOAD_BYTES + AEAD_TAG_BYTES
#: Upper bound on any handshake message, checked before anything else (and, by the stream
#: driver, before a body is read): room for later fields, yet little to buffer per stranger.
MAX_HANDSHAKE_MESSAGE: Final = 512

#: Signature contexts. They have the same length (so the signed layout is fixed) and differ, so
#: a responder's signature can never pass as an initiator's, or the reverse.
RESPONDER_LABEL: Final = b"plexinode handshake v2 responder"
INITIATOR_LABEL: Final = b"plexinode handshake v2 initiator"


class _State(enum.Enum):
    """Where a role object is. Transitions (anything else is a RuntimeError)::

    Initiator: START --start()--> WAIT_MSG2 --receive(msg2)--> DONE
               (a cookie reply instead of msg2 raises CookieReply: FAILED)
    Responder: START --receive(msg1)--> WAIT_MSG3 --receive(msg3)--> DONE
               START --receive(msg1) under load, no valid mac2--> COOKIE_SENT (final)
    both:      any state --HandshakeError--> FAILED
    """

    START = "start"
    WAIT_MSG2 = "wait-msg2"
    WAIT_MSG3 = "wait-msg3"
    COOKIE_SENT = "cookie-sent"
    DONE = "done"
    FAILED = "failed"


def _check_size(message: bytes, expected: int, what: str) -> None:
    if not isinstance(message, bytes):
        raise TypeError(f"{what} must be bytes")
    if len(message) > MAX_HANDSHAKE_MESSAGE:
        raise HandshakeError(f"{what} of {len(message)} bytes exceeds {MAX_HANDSHAKE_MESSAGE}")
    if len(message) != expected:
        raise HandshakeError(f"{what} is {len(message)} bytes, expected {expected}")


class _Role:
    """State shared by both roles: the transcript and the state machine."""

    def __init__(
        self, identity: Identity, prologue: bytes, key: bytes | None, *, lazy: bool = False
    ) -> None:
        if key is not None and len(key) != KEY_BYTES:
            raise ValueError(f"an ephemeral X25519 secret is {KEY_BYTES} bytes")
        self._identity = identity
        self._transcript = initial_transcript(prologue)
        # lazy: made once needed (the responder's: after msg1 passed its cheap checks).
        self._ephemeral_key = key
        self._ephemeral = None if lazy else _ephemeral(key)
        # The chaining key: KDF(ss, psk), so every key below depends on the pre-shared key.
        self._chaining_key = b""
        self._state = _State.START
        self._result: HandshakeResult | None = None
        self._psk_kind = NETWORK

    @property
    def is_complete(self) -> bool:
        """True once the handshake succeeded and :attr:`result` is available."""
        return self._state is _State.DONE

    @property
    def result(self) -> HandshakeResult:
        """The outcome; RuntimeError until the handshake is complete."""
        if self._result is None:
            raise RuntimeError(f"handshake not complete (state {self._state.value})")
        return self._result

    def _expect(self, state: _State, action: str) -> None:
        if self._state is not state:
            raise RuntimeError(f"cannot {action} in handshake state {self._state.value}")

    def _fail(self, exc: HandshakeError) -> HandshakeError:
        self._state = _State.FAILED
        self._forget_secrets()
        log.debug("handshake failed: %s", exc)
        return exc

    def _forget_secrets(self) -> None:
        # Python cannot wipe memory, but dropping the references lets the ephemeral secret and
        # the chaining key be freed as soon as the handshake ends.
        self._ephemeral = None
        self._ephemeral_key = None
        self._chaining_key = b""

    def _finish(self, remote_public_key: bytes, remote_node_id: NodeId, initiator: bool) -> None:
        ck, h = self._chaining_key, self._transcript
        i2r, r2i = kdf(ck, h, PERSON_I2R), kdf(ck, h, PERSON_R2I)
        header_i2r, header_r2i = kdf(ck, h, PERSON_HEADER_I2R), kdf(ck, h, PERSON_HEADER_R2I)
        self._result = HandshakeResult(
            remote_public_key=remote_public_key,
            remote_node_id=remote_node_id,
            send_key=i2r if initiator else r2i,
            recv_key=r2i if initiator else i2r,
            transcript_hash=h,
            send_header_key=header_i2r if initiator else header_r2i,
            recv_header_key=header_r2i if initiator else header_i2r,
            psk_kind=self._psk_kind,
        )
        self._state = _State.DONE
        self._forget_secrets()


class Initiator(_Role):
    """The side that opened the connection.

    Usage: send :meth:`start`'s bytes, pass the reply to :meth:`receive`, send what it returns;
    :attr:`result` is then available.

    Args:
        identity: This node's identity.
        expected_node_id: The node we mean to reach, or None to accept whoever answers. When
            given, a different responder fails the handshake before we reveal our identity.
        prologue: Context both sides must agree on; not sent.
        network_key: The pre-shared key: it tags msg1 and is mixed into every key, so only a
            responder that holds it can answer (default: the open network ``open``'s). The
            primary network key, or any other key the responder accepts (e.g. a ticket's).
        ephemeral_key: A 32-byte X25519 secret for deterministic simulations; None (the default)
            draws a fresh random one. Never reuse one.
        cookie: The cookie a responder under load sent us (:class:`CookieReply`), which makes
            msg1's ``mac2``; None sends zeros there.
    """

    def __init__(
        self,
        identity: Identity,
        expected_node_id: NodeId | None = None,
        prologue: bytes = b"",
        *,
        network_key: bytes | None = None,
        ephemeral_key: bytes | None = None,
        cookie: bytes | None = None,
    ) -> None:
        super().__init__(identity, prologue, ephemeral_key)
        self._expected = expected_node_id
        self._psk = open_network_key("open") if network_key is None else network_key
        if len(self._psk) != KEY_BYTES:
            raise ValueError(f"a pre-shared key is {KEY_BYTES} bytes")
        if cookie is not None and len(cookie) != COOKIE_BYTES:
            raise ValueError(f"a cookie is {COOKIE_BYTES} bytes")
        self._cookie = cookie
        self._msg1 = b""

    def start(self) -> bytes:
        """Return msg1, the first message to send."""
        self._expect(_State.START, "start")
        assert self._ephemeral is not None
        body = MAGIC + bytes([VERSION]) + bytes(self._ephemeral.public_key)
        tagged = body + network_tag(self._psk, body)
        self._msg1 = tagged + (ZERO_MAC2 if self._cookie is None else mac2(self._cookie, tagged))
        self._transcript = mix(self._transcript, tagged)
        self._state = _State.WAIT_MSG2
        return self._msg1

    def receive(self, message: bytes) -> bytes:
        """Process msg2 and return msg3; the handshake is then complete.

        Args:
            message: The body of msg2 (or of a cookie reply) as received.

        Returns:
            msg3, to send to the responder.

        Raises:
            HandshakeError: msg2 is malformed, tampered, from another session, signed by a bad
                key, or made by a responder without the pre-shared key.
                :class:`UnexpectedPeerError` (a subclass) when the responder is not
                ``expected_node_id``. :class:`CookieReply` (a subclass) when it is a cookie
                reply to our msg1: start again, on a new connection, with its cookie.
        """
        self._expect(_State.WAIT_MSG2, "receive msg2")
        try:
            return self._receive_msg2(message)
        except HandshakeError as exc:
            raise self._fail(exc) from None

    def _receive_msg2(self, message: bytes) -> bytes:
        assert self._ephemeral is not None
        if isinstance(message, bytes) and len(message) == COOKIE_REPLY_BYTES:
            raise CookieReply(open_cookie(self._psk, self._msg1, message))
        _check_size(message, MSG2_BYTES, "msg2")
        remote_ephemeral, sealed = message[:KEY_BYTES], message[KEY_BYTES:]
        self._chaining_key = mix_psk(dh(self._ephemeral, remote_ephemeral), self._psk)
        self._transcript = mix(self._transcript, remote_ephemeral)
        key2 = kdf(self._chaining_key, self._transcript, PERSON_MSG2)
        payload = open_sealed(key2, self._transcript, sealed, "msg2")
        remote_key, remote_id = verify_identity_payload(
            payload, RESPONDER_LABEL, self._transcript, self._identity, "msg2"
        )
        if self._expected is not None and remote_id != self._expected:
            raise UnexpectedPeerError(remote_id, self._expected)
        self._transcript = mix(self._transcript, sealed)
        key3 = kdf(self._chaining_key, self._transcript, PERSON_MSG3)
        reply = seal(
            key3,
            self._transcript,
            identity_payload(self._identity, INITIATOR_LABEL, self._transcript),
        )
        self._transcript = mix(self._transcript, reply)
        self._finish(remote_key, remote_id, initiator=True)
        return reply


class Responder(_Role):
    """The side that accepted the connection.

    Usage: pass msg1 to :meth:`receive` and send the msg2 it returns; pass msg3 to
    :meth:`receive` (it returns None: nothing more to send); :attr:`result` is then available.

    The pre-shared key is chosen by msg1's tag: an active key of `keyring` (kind
    :data:`NETWORK`), else a retired one (:data:`RETIRED`), else whatever `extra_keys` finds.
    The key is mixed into every key of the handshake, so an initiator that tagged msg1 with a
    key we lack fails at msg2. ``result.psk_kind`` says which kind matched, so the caller can
    limit what the session may do (a retired key: only the protocol that hands out the current
    keys; a ticket's key: only the protocol that redeems it).

    Args:
        identity: This node's identity.
        prologue: Context both sides must agree on; not sent.
        keyring: The network keys msg1's tag may be made with (default: the open network
            ``open``'s).
        extra_keys: Further candidate keys (:data:`PskLookup`), consulted only when no key of
            `keyring` matches: called with msg1's tagged bytes and its tag, it returns the
            matching :class:`PskMatch` (its ``kind`` is the caller's to name) or None. Each
            candidate it tries costs one keyed hash per junk msg1.
        ephemeral_key: A 32-byte X25519 secret for deterministic simulations; None draws a
            fresh one (never reuse one), once msg1 passed its size, magic, version and tag.
        seen: The node's memory of recent msg1s: a replayed one is refused before any X25519.
        cookies: The node's load and cookies, for this connection: while under load, a msg1
            without a valid ``mac2`` gets a cookie reply (:attr:`cookie_sent`) and costs no
            X25519 (:mod:`plexinode.net.cookie`). None: every msg1 is answered with msg2.
    """

    def __init__(
        self,
        identity: Identity,
        prologue: bytes = b"",
        *,
        keyring: Keyring | None = None,
        extra_keys: PskLookup | None = None,
        ephemeral_key: bytes | None = None,
        seen: SeenMsg1 | None = None,
        cookies: ConnectionCookies | None = None,
    ) -> None:
        super().__init__(identity, prologue, ephemeral_key, lazy=True)
        self._keyring = keyring or Keyring.open("open")
        self._extra_keys = extra_keys
        self._seen = seen
        self._cookies = cookies

    @property
    def cookie_sent(self) -> bool:
        """What :meth:`receive` returned for msg1 is a cookie reply: send it and close."""
        return self._state is _State.COOKIE_SENT

    def receive(self, message: bytes) -> bytes | None:
        """Process the next handshake message from the initiator.

        Args:
            message: The body of msg1 (first call) or msg3 (second call).

        Returns:
            msg2 after msg1 (or, under load, a cookie reply: :attr:`cookie_sent`); None after
            msg3, when the handshake is complete.

        Raises:
            HandshakeError: The message is malformed, of another protocol or version, tampered,
                from another session, or signed by a bad key. :class:`NetworkKeyError` (a
                subclass) when msg1 is tagged with no key we hold.
        """
        handler: Callable[[bytes], bytes | None]
        if self._state is _State.START:
            handler = self._receive_msg1
        elif self._state is _State.WAIT_MSG3:
            handler = self._receive_msg3
        else:
            raise RuntimeError(f"cannot receive in handshake state {self._state.value}")
        try:
            return handler(message)
        except HandshakeError as exc:
            raise self._fail(exc) from None

    def _find_psk(self, body: bytes, tag: bytes) -> PskMatch:
        found = keyring_match(self._keyring, body, tag)
        if found is None and self._extra_keys is not None:
            found = self._extra_keys(body, tag)
        if found is None:
            raise NetworkKeyError("not a member of this network (no network key matches)")
        return found

    def _receive_msg1(self, message: bytes) -> bytes:
        _check_size(message, MSG1_BYTES, "msg1")
        if message[: len(MAGIC)] != MAGIC:
            raise HandshakeError("not a plexinode handshake (bad magic)")
        version = message[len(MAGIC)]
        if version != VERSION:
            raise HandshakeError(f"unsupported handshake version {version} (we speak {VERSION})")
        tagged, mac = message[:-MAC2_BYTES], message[-MAC2_BYTES:]
        body, tag = tagged[:-TAG_BYTES], tagged[-TAG_BYTES:]
        psk = self._find_psk(body, tag)
        self._psk_kind = psk.kind
        if self._cookies is not None and self._cookies.required(tagged, mac):
            # Stateless: nothing about this msg1 is remembered, not even as seen.
            self._state = _State.COOKIE_SENT
            return self._cookies.reply(psk.key, message)
        remote_ephemeral = body[len(MAGIC) + 1 :]
        if self._seen is not None and not self._seen.first(remote_ephemeral):
            raise HandshakeError("msg1 replayed (its ephemeral key was seen before)")
        if self._cookies is not None:
            self._cookies.exchanged()
        self._ephemeral = _ephemeral(self._ephemeral_key)
        self._chaining_key = mix_psk(dh(self._ephemeral, remote_ephemeral), psk.key)
        self._transcript = mix(self._transcript, tagged)
        own_ephemeral = bytes(self._ephemeral.public_key)
        self._transcript = mix(self._transcript, own_ephemeral)
        key2 = kdf(self._chaining_key, self._transcript, PERSON_MSG2)
        sealed = seal(
            key2,
            self._transcript,
            identity_payload(self._identity, RESPONDER_LABEL, self._transcript),
        )
        self._transcript = mix(self._transcript, sealed)
        self._ephemeral = None  # only the chaining key is needed from here on
        self._state = _State.WAIT_MSG3
        return own_ephemeral + sealed

    def _receive_msg3(self, message: bytes) -> None:
        _check_size(message, MSG3_BYTES, "msg3")
        key3 = kdf(self._chaining_key, self._transcript, PERSON_MSG3)
        payload = open_sealed(key3, self._transcript, message, "msg3")
        remote_key, remote_id = verify_identity_payload(
            payload, INITIATOR_LABEL, self._transcript, self._identity, "msg3"
        )
        self._transcript = mix(self._transcript, message)
        self._finish(remote_key, remote_id, initiator=False)
