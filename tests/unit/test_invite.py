"""Invite tokens: round trip, and every way a token can be unusable."""

from __future__ import annotations

import base64
import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plexinode.identity import Identity
from plexinode.membership.invite import (
    MAX_TOKEN,
    PREFIX,
    InviteAddress,
    InviteError,
    make_invite,
    parse_invite,
)
from plexinode.net.address import Address
from plexinode.wire.codec import pack

INVITER = Identity.from_seed(bytes(31) + b"\x09")
ADDRESSES = [Address("192.0.2.7", 7420), Address("2001:db8::7", 7421)]


def token(**changes: object) -> str:
    invite = make_invite(INVITER, "home", ADDRESSES, expires_at=2_000)
    return dataclasses.replace(invite, **changes).encode() if changes else invite.encode()  # type: ignore[arg-type]


def test_a_token_round_trips_and_names_its_inviter() -> None:
    text = token()
    assert text.startswith(PREFIX)
    assert len(text) < 400
    invite = parse_invite(text, now=1_000)
    assert invite.network == "home"
    assert invite.bootstrap() == ADDRESSES
    assert invite.inviter_id == INVITER.node_id
    # Whitespace from a terminal or an e-mail is ignored.
    spaced = " ".join(text[i : i + 60] for i in range(0, len(text), 60))
    assert parse_invite("\n" + spaced + "\n", now=1_000) == invite


@pytest.mark.parametrize(
    "change",
    [
        {"network": "other"},
        {"expires_at": 10**9},
        {"addresses": ()},
        {"inviter": Identity.from_seed(bytes(32)).public_key},
    ],
)
def test_any_tampered_field_is_refused(change: dict[str, object]) -> None:
    with pytest.raises(InviteError, match=r"tampered|no address"):
        parse_invite(token(**change), now=1_000)


def test_an_expired_token_is_refused() -> None:
    with pytest.raises(InviteError, match="expired"):
        parse_invite(token(), now=2_000)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("hello", "not an invite token"),
        (PREFIX + "!!!!", "damaged"),
        (PREFIX + base64.urlsafe_b64encode(pack([1, 2, 3])).decode(), "damaged"),
        (PREFIX + "A" * MAX_TOKEN, "at most"),
        (PREFIX, "damaged"),
    ],
)
def test_malformed_tokens_are_refused_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(InviteError, match=message):
        parse_invite(text, now=0)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_no_corruption_of_a_token_is_accepted_as_another(data: st.DataObject) -> None:
    text = token()
    body = bytearray(text[len(PREFIX) :].encode())
    index = data.draw(st.integers(0, len(body) - 1))
    replacement = data.draw(
        st.sampled_from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    )
    body[index] = replacement
    corrupted = PREFIX + body.decode()
    try:
        invite = parse_invite(corrupted, now=1_000)
    except InviteError:
        return
    assert invite == parse_invite(text, now=1_000)  # only padding bits changed, if anything


def test_an_invite_needs_a_reachable_address() -> None:
    with pytest.raises(InviteError, match="no address other nodes can reach"):
        make_invite(INVITER, "home", [Address("0.0.0.0", 0)], expires_at=1)


# Tokens signed by earlier releases must parse in later ones, and the other way round: the
# signed bytes and the whole token (signature included: Ed25519 is deterministic) are pinned.
PINNED_SIGNED = bytes.fromhex(
    "706c6578696e6f64652d696e766974652d76320094a4686f6d659292c404c0000207cd1cfc92c41020010db8"
    "000000000000000000000007cd1cfdcd07d0c420dd7e84d010aed28a416e928f50c4c09ac0f94a8f5b346548"
    "168bddb61cdb7263"
)
PINNED_TOKEN = (
    "plexinode-invite-2:laRob21lkpLEBMAAAgfNHPySxBAgAQ24AAAAAAAAAAAAAAAHzRz9zQfQxCDdfoTQEK7SikFuko9Q"
    "xMCawPlKj1s0ZUgWi922HNtyY8RAoulOvYbM8q8FZmiPMeEChRpJINxtuyB1TZZwpxh9zU19T1Jpg6gkK2GpGq8G4zUTupf"
    "ILkpPSmBk7iLLo5V-Bg"
)


def test_token_bytes_are_pinned() -> None:
    invite = make_invite(INVITER, "home", ADDRESSES, expires_at=2_000)
    assert invite.signed_bytes() == PINNED_SIGNED
    assert invite.encode() == PINNED_TOKEN
    assert parse_invite(PINNED_TOKEN, now=1_000) == invite


def test_a_signed_token_with_a_bad_address_is_refused() -> None:
    invite = make_invite(INVITER, "home", ADDRESSES, expires_at=2_000)
    odd = dataclasses.replace(invite, addresses=(InviteAddress(bytes(5), 7420),))
    with pytest.raises(InviteError, match="a bad address"):
        parse_invite(odd.signed_by(INVITER).encode(), now=1_000)
