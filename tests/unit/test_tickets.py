"""Join tickets' text form, their checks, and the rule that redeems each once
(plexinode.security.tickets)."""

from __future__ import annotations

import dataclasses

import pytest

from plexinode.identity import Identity
from plexinode.membership.invite import Invite, make_invite
from plexinode.net.address import Address
from plexinode.security.rotation import SealedKey
from plexinode.security.tickets import (
    MAX_TICKET,
    PREFIX,
    JoinReply,
    JoinRequest,
    Ticket,
    TicketAddress,
    TicketError,
    is_ticket,
    parse_ticket,
    parse_way_in,
    redemption_refusal,
    ticket_id,
    ticket_key,
)
from plexinode.wire import envelope
from plexinode.wire.codec import FRAME_LIMITS

INVITER = Identity.from_seed(b"i" * 32)
ROOT = Identity.from_seed(b"r" * 32)
NOW = 1_800_000_000


def ticket(**changes: object) -> Ticket:
    made = Ticket(
        "home",
        ROOT.public_key,
        INVITER.public_key,
        (TicketAddress(bytes([127, 0, 0, 1]), 7420), TicketAddress(bytes(16), 7421)),
        NOW + 3600,
        b"s" * 32,
    )
    return dataclasses.replace(made, **changes)  # type: ignore[arg-type]


def test_a_ticket_round_trips_through_its_text_form() -> None:
    made = ticket()
    text = made.encode()
    assert text.startswith(PREFIX)
    assert len(text) < MAX_TICKET
    assert is_ticket("  " + text[:30] + "\n" + text[30:])
    parsed = parse_ticket(text[:40] + "\n  " + text[40:], NOW)
    assert parsed == made
    assert parsed.inviter_id == INVITER.node_id
    assert parsed.bootstrap() == [Address("127.0.0.1", 7420), Address("::", 7421)]
    assert parsed.id == ticket_id(made.secret)
    assert parsed.key == ticket_key(made.secret)
    assert parsed.key != made.secret
    assert len({parsed.id, parsed.key, ticket_id(b"t" * 32)}) == 3
    assert parse_way_in(text, NOW) == made


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("x" * (MAX_TICKET + 1), "at most"),
        ("plexinode-invite-2:abc", "not a ticket"),
        (PREFIX + "!!!!", "damaged"),
        (PREFIX + "AAAA", "damaged"),
        (ticket(addresses=()).encode(), "no address"),
        (ticket(expires_at=NOW).encode(), "expired"),
    ],
)
def test_bad_tickets_are_refused_in_one_line(text: str, message: str) -> None:
    with pytest.raises(TicketError, match=message):
        parse_ticket(text, NOW)


def test_an_open_networks_token_is_told_apart() -> None:
    token = make_invite(INVITER, "open", [Address("127.0.0.1", 7420)], NOW + 60).encode()
    assert not is_ticket(token)
    assert isinstance(parse_way_in(token, NOW), Invite)


def test_a_ticket_is_redeemed_once_and_only_before_it_expires() -> None:
    joiner = b"j" * 32
    assert redemption_refusal(None, joiner, NOW) == "this node issued no such ticket"
    assert redemption_refusal((NOW + 10, None), joiner, NOW) is None
    assert "already used" in str(redemption_refusal((NOW + 10, joiner), joiner, NOW))
    assert "expired" in str(redemption_refusal((NOW, None), joiner, NOW))


def test_join_messages_round_trip() -> None:
    for message in (
        JoinRequest(b"\x01" * 16),
        JoinReply(False, "the ticket was already used", (), (), b""),
        JoinReply(True, "", (b"\x00\x90",), (SealedKey(b"\x01" * 6, b"\x02" * 80),), b"\x01" * 6),
    ):
        assert envelope.decode(envelope.encode(message), FRAME_LIMITS).message == message


@pytest.mark.parametrize(("ahead", "admitted"), [(1, True), (299, True), (301, False)])
def test_a_grant_from_an_inviter_whose_clock_runs_ahead_admits_within_the_skew(
    ahead: int, admitted: bool
) -> None:
    from plexinode.net.authority import Authority
    from plexinode.net.certificates import MEMBER
    from plexinode.net.keyring import Keyring
    from plexinode.security.rotation import KeyringRequest, key_id, reply_to
    from plexinode.security.statements import encode_statement, make_grant
    from plexinode.security.ticket_service import _admitted
    from plexinode.security.tickets import JoinReply, TicketError

    joiner = Identity.from_seed(b"j" * 32)
    ticket = Ticket(
        "lab", ROOT.public_key, INVITER.public_key, (TicketAddress(bytes(4), 1),), NOW + 60, b""
    )
    grant = make_grant(
        ROOT, Authority("lab", ROOT.public_key), joiner.public_key, MEMBER, now=NOW + ahead
    )
    ring = Keyring.generate()
    keys = reply_to(ring, KeyringRequest(()), joiner.public_key)
    primary = bytes.fromhex(key_id(ring.primary))
    reply = JoinReply(True, "", (encode_statement(grant),), keys.keys, primary)
    if admitted:
        assert _admitted(joiner, ticket, reply, NOW).keys[key_id(ring.primary)] == ring.primary
    else:
        with pytest.raises(TicketError, match="dated in the future"):
            _admitted(joiner, ticket, reply, NOW)
