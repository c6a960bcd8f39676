"""What the stream handshake (:mod:`plexinode.net.handshake`) decides and yields, sans I/O.

The kinds of pre-shared key a responder may find for msg1's tag, the errors that name a
specific refusal, and :class:`HandshakeResult`. They live apart from the role objects so that
both :mod:`plexinode.net.handshake` and :mod:`plexinode.net.cookie` can use them;
:mod:`plexinode.net.handshake` re-exports every name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from plexinode.errors import HandshakeError
from plexinode.identity import NodeId
from plexinode.net.keyring import Keyring

#: The kinds of pre-shared key the responder finds for msg1's tag in its keyring.
NETWORK: Final = "network"
RETIRED: Final = "retired"


class UnexpectedPeerError(HandshakeError):
    """The responder proved an identity other than the one the initiator asked for.

    Raised by :meth:`plexinode.net.handshake.Initiator.receive` before msg3 exists, so the
    initiator has not revealed who it is. Typical cause: a stale address that now belongs to
    another node.

    Attributes:
        remote_node_id: The node that answered (its signature was valid).
        expected_node_id: The node the caller wanted to reach.
    """

    def __init__(self, remote_node_id: NodeId, expected_node_id: NodeId) -> None:
        super().__init__(f"connected to {remote_node_id} but expected {expected_node_id}")
        self.remote_node_id = remote_node_id
        self.expected_node_id = expected_node_id


class NetworkKeyError(HandshakeError):
    """msg1's network tag matches none of our network keys: the initiator is not a member."""


@dataclass(frozen=True, slots=True)
class PskMatch:
    """The pre-shared key a responder found for msg1's tag, and what kind of key it is.

    Attributes:
        key: The 32-byte key; it was mixed into every key of the handshake.
        kind: :data:`NETWORK` (an active network key), :data:`RETIRED` (a retired one), or
            whatever a caller's ``extra_keys`` lookup names (e.g. a ticket's key).
    """

    key: bytes = field(repr=False)
    kind: str


#: Extra pre-shared keys a responder may accept: called with msg1's tagged bytes and its tag
#: when no key of the keyring matches, it returns the matching key and its kind, or None.
PskLookup = Callable[[bytes, bytes], PskMatch | None]


def keyring_match(keyring: Keyring, body: bytes, tag: bytes) -> PskMatch | None:
    """The key of `keyring` (active first, then retired) under which `tag` tags `body`."""
    key = keyring.match(body, tag)
    if key is not None:
        return PskMatch(key, NETWORK)
    key = keyring.match_retired(body, tag)
    return None if key is None else PskMatch(key, RETIRED)


@dataclass(frozen=True, slots=True)
class HandshakeResult:
    """What a completed handshake proves and yields.

    Attributes:
        remote_public_key: The peer's Ed25519 public key; it signed this session's transcript.
        remote_node_id: The node ID of that key.
        send_key: 32-byte key for what this side sends (the peer's ``recv_key``).
        recv_key: 32-byte key for what this side receives (the peer's ``send_key``).
        transcript_hash: Hash of the whole handshake, equal on both sides and unique to the
            session; usable as a session id or for channel binding.
        send_header_key: One-use key that seals this side's secretstream header.
        recv_header_key: One-use key that opens the peer's secretstream header.
        psk_kind: (Responder) the kind of pre-shared key msg1 was tagged with (:class:`PskMatch`);
            the initiator's is always :data:`NETWORK`.
    """

    remote_public_key: bytes
    remote_node_id: NodeId
    send_key: bytes = field(repr=False)
    recv_key: bytes = field(repr=False)
    transcript_hash: bytes
    send_header_key: bytes = field(repr=False, default=b"")
    recv_header_key: bytes = field(repr=False, default=b"")
    psk_kind: str = NETWORK

    @property
    def retired_key(self) -> bool:
        """(Responder) msg1 was tagged under a retired network key."""
        return self.psk_kind == RETIRED
