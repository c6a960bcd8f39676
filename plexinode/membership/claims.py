"""Membership claims on the wire: each one signed, so that gossip can relay it untrusted.

A claim travels far from the node that made it (piggybacked on probes, exchanged in push-pull),
so the datagram's own signature, which proves only who *relayed* it, is not enough. Every claim
therefore carries the signature of the node it speaks for:

- ``alive`` and ``left`` are signed by the member itself: nobody else can announce an address
  or tags for it, raise its incarnation, or say that it left (issue 4's "forged left");
- ``suspect`` and ``dead`` are signed by the accuser: an accusation is attributable, so a node
  that floods them can be rate-limited and, later, lose reputation; and a member refutes it
  with its own signed ``alive`` at a higher incarnation.

A claim is a signed statement (:class:`~plexinode.signing.signed.Signed`). Signed bytes:
``CLAIM_DOMAIN || msgpack([state, subject, incarnation, signer, ip, port, [[key, value], ...]])``,
the fields as decoded (a verifier rebuilds them; it never trusts the bytes it received), with the
domain string keeping a claim signature from ever passing for a datagram or a DHT record
signature, and vice versa.

Every claim's signature is checked through one process-wide memory of the signatures that
verified (:data:`CLAIM_SIGNATURES`), whoever checks it: a node checks a given claim once (the
table ignores what it already knows), but the nodes of a simulation share a process, and each of
them hears every claim.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final

from plexinode.errors import AuthenticationError, DecodeError
from plexinode.identity import NODE_ID_BYTES, PUBLIC_KEY_BYTES, SIGNATURE_BYTES, Identity, NodeId
from plexinode.membership.members import Claim, State
from plexinode.net.address import Address, ip_text, packed_ip
from plexinode.signing.cache import VerifiedSignatures
from plexinode.signing.signed import Signed, domain
from plexinode.wire.codec import bin_size, int_size, str_size
from plexinode.wire.schema import Bytes, Int, ListOf, Nested, Str, Struct, wire

#: Prefix of every signed membership claim; never used for anything else.
CLAIM_DOMAIN: Final = domain(b"plexinode-member-v1\x00")
#: Claim signatures remembered once verified. A network holds one alive claim per member and a
#: few accusations at a time; 4,096 covers the claims in flight in a simulation of a thousand
#: nodes, in some 600 KB. (A real node hears each claim it accepts once: there the memory only
#: ever holds what it checked.)
CLAIM_SIGNATURES: Final = VerifiedSignatures(4096)
#: Most tags a member may carry, and their longest key and value (characters).
MAX_TAGS: Final = 8
MAX_TAG_KEY: Final = 32
MAX_TAG_VALUE: Final = 64
#: Most bytes of tag keys and values together (UTF-8): a claim must fit in a datagram beside
#: others, so tags are for short facts (a version, a role, a capacity), as in Serf.
MAX_TAG_BYTES: Final = 256


@dataclass(frozen=True, slots=True)
class Tag(Struct):
    """One ``key = value`` tag of a member."""

    key: str = wire(Str(MAX_TAG_KEY))
    value: str = wire(Str(MAX_TAG_VALUE))


@dataclass(frozen=True, slots=True)
class SignedClaim(Signed):
    """A :class:`~plexinode.membership.members.Claim` as it travels.

    Attributes:
        state: The claim's :class:`~plexinode.membership.members.State` (0-3).
        subject: The member's node ID.
        incarnation: The member's incarnation the claim refers to.
        signer: The Ed25519 public key of the node that signed: the member for alive and
            left, the accuser for suspect and dead.
        ip: The member's packed IP address (alive), else empty.
        port: The member's port (alive), else 0.
        tags: The member's tags (alive), else empty.
        signature: The signer's signature of the claim (see the module docstring).
    """

    DOMAIN: ClassVar[bytes] = CLAIM_DOMAIN
    SIGNER: ClassVar[str] = "signer"
    SIGNATURES: ClassVar[VerifiedSignatures | None] = CLAIM_SIGNATURES

    state: int = wire(Int(0, len(State) - 1))
    subject: bytes = wire(Bytes(NODE_ID_BYTES, NODE_ID_BYTES))
    incarnation: int = wire(Int())
    signer: bytes = wire(Bytes(PUBLIC_KEY_BYTES, PUBLIC_KEY_BYTES))
    ip: bytes = wire(Bytes(0, 16))
    port: int = wire(Int(0, 65535))
    tags: tuple[Tag, ...] = wire(ListOf(Nested(Tag), MAX_TAGS))
    signature: bytes = wire(Bytes(SIGNATURE_BYTES, SIGNATURE_BYTES))

    def wire_size(self) -> int:
        """The length of ``pack(self.to_wire())``, computed without encoding (gossip queues ask
        for it for every claim they hold)."""
        tags = sum(
            1 + str_size(len(t.key.encode())) + str_size(len(t.value.encode())) for t in self.tags
        )
        return (
            1  # the array header (8 fields)
            + int_size(self.state)
            + bin_size(len(self.subject))
            + int_size(self.incarnation)
            + bin_size(len(self.signer))
            + bin_size(len(self.ip))
            + int_size(self.port)
            + 1  # at most 8 tags: a fixarray header
            + tags
            + bin_size(len(self.signature))
        )

    def verify(self) -> Claim:
        """Check the claim's shape and signature; return it as a table claim.

        Raises:
            DecodeError: The fields do not fit the claim's state.
            AuthenticationError: The signer may not make this claim, or the signature is bad.
        """
        claim = self.unverified()
        self.verify_signature()
        return claim

    def unverified(self) -> Claim:
        """The claim, its shape checked but *not* its signature: only to decide whether it
        would be news (a claim the table would ignore need not cost a signature check).

        Raises:
            DecodeError: The fields do not fit the claim's state.
            AuthenticationError: The signer may not make this claim.
        """
        state = State(self.state)
        subject = NodeId(self.subject)
        signer = NodeId.from_public_key(self.signer)
        tags = _check_tags(self.tags)
        address = None
        if state is State.ALIVE:
            if len(self.ip) not in (4, 16) or self.port == 0:
                raise DecodeError("an alive claim needs a 4- or 16-byte IP and a port")
            address = Address(ip_text(self.ip), self.port)
        elif self.ip or self.port or self.tags:
            raise DecodeError("only alive claims carry an address and tags")
        accusation = state in (State.SUSPECT, State.DEAD)
        if accusation == (signer == subject):
            who = "another member" if accusation else "the member itself"
            raise AuthenticationError(f"a {state.name.lower()} claim is signed by {who}")
        return Claim(
            subject,
            self.incarnation,
            state,
            accuser=signer if accusation else None,
            address=address,
            tags=tags,
        )


def _check_tags(tags: tuple[Tag, ...]) -> dict[str, str]:
    result = {t.key: t.value for t in tags}
    if len(result) != len(tags):
        raise DecodeError("duplicate tag key")
    if sum(len(k.encode()) + len(v.encode()) for k, v in result.items()) > MAX_TAG_BYTES:
        raise DecodeError(f"tags exceed {MAX_TAG_BYTES} bytes")
    return result


def sign_claim(identity: Identity, claim: Claim) -> SignedClaim:
    """Sign `claim` as `identity` (the member for alive and left, the accuser otherwise).

    Raises:
        ValueError: `identity` may not sign this claim, or its tags or address do not fit.
    """
    if claim.accuser is not None:
        if claim.accuser != identity.node_id:
            raise ValueError("an accusation is signed by its accuser")
    elif claim.node_id != identity.node_id:
        raise ValueError("alive and left claims are signed by the member itself")
    ip, port = b"", 0
    if claim.address is not None:
        packed = packed_ip(claim.address.host)
        if packed is None:
            raise ValueError(f"{claim.address.host!r} is not an IP address literal")
        ip, port = packed, claim.address.port
    tags = tuple(Tag(k, v) for k, v in sorted(claim.tags.items()))
    try:
        _check_tags(tags)
    except DecodeError as exc:
        raise ValueError(str(exc)) from None
    if len(tags) > MAX_TAGS or any(
        len(t.key) > MAX_TAG_KEY or len(t.value) > MAX_TAG_VALUE for t in tags
    ):
        raise ValueError(
            f"at most {MAX_TAGS} tags, keys of {MAX_TAG_KEY}, values of {MAX_TAG_VALUE}"
        )
    unsigned = SignedClaim(
        int(claim.state),
        claim.node_id.raw,
        claim.incarnation,
        identity.public_key,
        ip,
        port,
        tags,
        b"",
    )
    return unsigned.signed_by(identity)
