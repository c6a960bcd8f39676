"""Signed membership claims: round trips, forgeries, tampering, malformed fields, sizes."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plexinode.errors import AuthenticationError, DecodeError
from plexinode.identity import Identity
from plexinode.membership.claims import (
    CLAIM_SIGNATURES,
    MAX_TAG_BYTES,
    MAX_TAG_KEY,
    MAX_TAG_VALUE,
    MAX_TAGS,
    SignedClaim,
    Tag,
    sign_claim,
)
from plexinode.membership.members import MAX_INCARNATION, Claim, State
from plexinode.net.address import Address
from plexinode.wire.codec import DATAGRAM_LIMITS, pack, unpack

MEMBER = Identity.from_seed(bytes(31) + b"\x01")
OTHER = Identity.from_seed(bytes(31) + b"\x02")
HERE = Address("192.0.2.7", 7420)


def round_trip(signed: SignedClaim) -> Claim:
    return SignedClaim.from_wire(signed.to_wire()).verify()


@pytest.mark.parametrize(
    "claim",
    [
        Claim(MEMBER.node_id, 3, State.ALIVE, address=HERE, tags={"v": "0.1", "role": "relay"}),
        Claim(MEMBER.node_id, 0, State.ALIVE, address=Address("2001:db8::1", 1)),
        Claim(MEMBER.node_id, MAX_INCARNATION, State.LEFT),
    ],
)
def test_claims_of_the_member_itself_round_trip(claim: Claim) -> None:
    assert round_trip(sign_claim(MEMBER, claim)) == claim


@pytest.mark.parametrize("state", [State.SUSPECT, State.DEAD])
def test_accusations_round_trip(state: State) -> None:
    claim = Claim(MEMBER.node_id, 9, state, accuser=OTHER.node_id)
    assert round_trip(sign_claim(OTHER, claim)) == claim


def test_only_the_member_signs_alive_and_left_and_only_the_accuser_accuses() -> None:
    with pytest.raises(ValueError, match="member itself"):
        sign_claim(OTHER, Claim(MEMBER.node_id, 1, State.LEFT))
    with pytest.raises(ValueError, match="accuser"):
        sign_claim(MEMBER, Claim(MEMBER.node_id, 1, State.DEAD, accuser=OTHER.node_id))


def forge(identity: Identity, **fields: object) -> SignedClaim:
    """A claim with any fields, validly signed by `identity` (the forger's own key)."""
    base = SignedClaim(0, MEMBER.node_id.raw, 1, identity.public_key, HERE_IP, 7420, (), b"")
    unsigned = dataclasses.replace(base, **fields)  # type: ignore[arg-type]
    return dataclasses.replace(unsigned, signature=identity.sign(unsigned.signed_bytes()))


HERE_IP = bytes([192, 0, 2, 7])


def test_a_forged_left_or_alive_about_another_member_is_refused() -> None:
    with pytest.raises(AuthenticationError, match="member itself"):
        forge(OTHER, state=int(State.LEFT), ip=b"", port=0).verify()
    with pytest.raises(AuthenticationError, match="member itself"):
        forge(OTHER).verify()  # "MEMBER is alive at an address of my choosing"


def test_a_member_cannot_accuse_itself() -> None:
    with pytest.raises(AuthenticationError, match="another member"):
        forge(MEMBER, state=int(State.DEAD), ip=b"", port=0).verify()


@pytest.mark.parametrize(
    "change",
    [
        {"incarnation": 2},
        {"port": 7421},
        {"ip": bytes([192, 0, 2, 8])},
        {"tags": (Tag("v", "2"),)},
    ],
)
def test_any_tampered_field_breaks_the_signature(change: dict[str, object]) -> None:
    signed = forge(MEMBER)
    assert signed.verify().incarnation == 1
    with pytest.raises(AuthenticationError, match="bad signature"):
        dataclasses.replace(signed, **change).verify()  # type: ignore[arg-type]


def test_a_signature_from_another_domain_does_not_verify() -> None:
    signed = forge(MEMBER)
    fields = pack([signed.state, signed.subject, signed.incarnation, signed.signer])
    other_domain = MEMBER.sign(b"plexinode-record-v1\x00" + fields)
    with pytest.raises(AuthenticationError):
        dataclasses.replace(signed, signature=other_domain).verify()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"ip": b""}, "alive claim needs"),
        ({"ip": b"\x01\x02\x03"}, "alive claim needs"),
        ({"port": 0}, "alive claim needs"),
        ({"state": int(State.LEFT)}, "only alive claims"),
        ({"state": int(State.LEFT), "ip": b"", "port": 0, "tags": (Tag("a", "b"),)}, "only alive"),
        ({"tags": (Tag("a", "1"), Tag("a", "2"))}, "duplicate tag"),
        ({"tags": tuple(Tag(f"k{i}", "x" * 63) for i in range(5))}, "tags exceed"),
    ],
)
def test_malformed_claims_are_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        forge(MEMBER, **fields).verify()


@pytest.mark.parametrize(
    "wire",
    [
        [5, bytes(32), 1, bytes(32), b"", 0, [], bytes(64)],  # no such state
        [0, bytes(31), 1, bytes(32), b"", 0, [], bytes(64)],  # short subject
        [0, bytes(32), 1 << 64, bytes(32), b"", 0, [], bytes(64)],  # incarnation overflow
        [0, bytes(32), 1, bytes(32), bytes(17), 0, [], bytes(64)],  # IP too long
        [0, bytes(32), 1, bytes(32), b"", 0, [["a", "b"]] * (MAX_TAGS + 1), bytes(64)],
        [0, bytes(32), 1, bytes(32), b"", 0, [["k" * (MAX_TAG_KEY + 1), ""]], bytes(64)],
    ],
)
def test_wire_forms_out_of_range_are_refused_by_the_decoder(wire: list[object]) -> None:
    with pytest.raises(DecodeError):
        SignedClaim.from_wire(wire)


def test_tags_beyond_the_caps_cannot_be_signed() -> None:
    too_many = {f"k{i}": "v" for i in range(MAX_TAGS + 1)}
    too_long = {"k": "v" * (MAX_TAG_VALUE + 1)}
    too_big = {f"k{i}": "v" * 60 for i in range(5)}
    for tags in (too_many, too_long, too_big):
        with pytest.raises(ValueError, match="tags"):
            sign_claim(MEMBER, Claim(MEMBER.node_id, 1, State.ALIVE, address=HERE, tags=tags))
    with pytest.raises(ValueError, match="IP address literal"):
        sign_claim(MEMBER, Claim(MEMBER.node_id, 1, State.ALIVE, address=Address("host", 1)))


def test_the_largest_claim_leaves_room_in_a_datagram() -> None:
    key = "k" * 24
    tags = {f"{key}{i}": "v" * (MAX_TAG_BYTES // 4 - 26) for i in range(4)}
    claim = Claim(
        MEMBER.node_id,
        MAX_INCARNATION,
        State.ALIVE,
        address=Address("2001:db8::1", 65535),
        tags=tags,
    )
    size = len(pack(sign_claim(MEMBER, claim).to_wire()))
    assert size <= 480  # two fit in a datagram's 1,087 bytes of payload with room to spare


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 2**64 - 1),
    st.sampled_from(["10.0.0.1", "2001:db8::1"]),
    st.integers(1, 65535),
    st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=40), max_size=4).filter(
        lambda t: sum(len(k.encode()) + len(v.encode()) for k, v in t.items()) <= 256
    ),
    st.sampled_from(list(State)),
)
def test_wire_size_is_the_encoded_length(
    incarnation: int, host: str, port: int, tags: dict[str, str], state: State
) -> None:
    if state is State.ALIVE:
        claim = Claim(MEMBER.node_id, incarnation, state, address=Address(host, port), tags=tags)
        signed = sign_claim(MEMBER, claim)
    elif state in (State.LEFT, State.STOPPED):
        signed = sign_claim(MEMBER, Claim(MEMBER.node_id, incarnation, state))
    else:
        claim = Claim(MEMBER.node_id, incarnation, state, accuser=OTHER.node_id)
        signed = sign_claim(OTHER, claim)
    assert signed.wire_size() == len(pack(signed.to_wire()))


# Claims signed by earlier releases must verify in later ones, and the other way round: the
# signed bytes, the (deterministic Ed25519) signature and the wire form are pinned here.
PINNED_ALIVE_SIGNED = bytes.fromhex(
    "706c6578696e6f64652d6d656d6265722d7631009700c42042d83331774bd94fb8c0ce95b4b376115cd36579"
    "3d381eb33aac6972948c57a703c4204cb5abf6ad79fbf5abbccafcc269d85cd2651ed4b885b5869f241aedf0"
    "a5ba29c404c0000207cd1cfc9292a4726f6c65a572656c617992a176a3302e31"
)
PINNED_ALIVE_WIRE = bytes.fromhex(
    "9800c42042d83331774bd94fb8c0ce95b4b376115cd365793d381eb33aac6972948c57a703c4204cb5abf6ad"
    "79fbf5abbccafcc269d85cd2651ed4b885b5869f241aedf0a5ba29c404c0000207cd1cfc9292a4726f6c65a5"
    "72656c617992a176a3302e31c4400fdd6e6b1e50f1db62f1bb8c94077ae1ca71183ad94fbb0c71d59fb6b29f"
    "07d2d64e5213bae5d601c6d9d44431b07b4537ee8d9aa496f8baea46c88892278206"
)
PINNED_SUSPECT_SIGNED = bytes.fromhex(
    "706c6578696e6f64652d6d656d6265722d7631009701c42042d83331774bd94fb8c0ce95b4b376115cd36579"
    "3d381eb33aac6972948c57a709c4207422b9887598068e32c4448a949adb290d0f4e35b9e01b0ee5f1a1e600"
    "fe2674c4000090"
)
PINNED_SUSPECT_WIRE = bytes.fromhex(
    "9801c42042d83331774bd94fb8c0ce95b4b376115cd365793d381eb33aac6972948c57a709c4207422b98875"
    "98068e32c4448a949adb290d0f4e35b9e01b0ee5f1a1e600fe2674c4000090c440f2d9785366bc5a8e821c1a"
    "8da23dc2c75c1296f5fd1e11aa408d40cd710582df7cf19890367a476acda2dc9d733b075ffe9b9d52d85437"
    "8228d3b13ce92d220a"
)


@pytest.mark.parametrize(
    ("signer", "claim", "signed", "wire_form"),
    [
        (
            MEMBER,
            Claim(
                MEMBER.node_id,
                3,
                State.ALIVE,
                address=Address("192.0.2.7", 7420),
                tags={"v": "0.1", "role": "relay"},
            ),
            PINNED_ALIVE_SIGNED,
            PINNED_ALIVE_WIRE,
        ),
        (
            OTHER,
            Claim(MEMBER.node_id, 9, State.SUSPECT, accuser=OTHER.node_id),
            PINNED_SUSPECT_SIGNED,
            PINNED_SUSPECT_WIRE,
        ),
    ],
)
def test_claim_bytes_are_pinned(
    signer: Identity, claim: Claim, signed: bytes, wire_form: bytes
) -> None:
    made = sign_claim(signer, claim)
    assert made.signed_bytes() == signed
    assert made.signature == wire_form[-64:]
    assert pack(made.to_wire()) == wire_form
    # What an earlier release sent still decodes to the same claim and verifies.
    decoded = SignedClaim.from_wire(unpack(wire_form, DATAGRAM_LIMITS))
    assert decoded == made
    assert decoded.verify() == claim


def test_a_claim_heard_again_is_not_checked_again() -> None:
    signed = forge(MEMBER, incarnation=77)
    hits, misses = CLAIM_SIGNATURES.hits, CLAIM_SIGNATURES.misses
    relayed = SignedClaim.from_wire(signed.to_wire())  # the same claim, from another member
    assert signed.verify() == relayed.verify()
    relayed.verify_signature()
    assert (CLAIM_SIGNATURES.hits - hits, CLAIM_SIGNATURES.misses - misses) == (2, 1)
    # A claim that differs in anything is checked, and refused.
    with pytest.raises(AuthenticationError, match="bad signature"):
        dataclasses.replace(signed, incarnation=78).verify()
    with pytest.raises(AuthenticationError, match="bad signature"):
        dataclasses.replace(signed, signature=OTHER.sign(signed.signed_bytes())).verify()
    assert CLAIM_SIGNATURES.misses - misses == 3


def test_wire_size_counts_tag_bytes_not_characters() -> None:
    # 64 four-byte characters: a 256-byte value (str16), within MAX_TAG_BYTES with an empty key.
    claim = Claim(MEMBER.node_id, 1, State.ALIVE, address=HERE, tags={"": "\U0001f600" * 64})
    signed = sign_claim(MEMBER, claim)
    assert signed.wire_size() == len(pack(signed.to_wire()))
