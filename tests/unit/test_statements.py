"""The set of a private network's statements that members reconcile (plexinode.security
.statements): encodings, hashes, summaries, and adding in any order."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plexinode.errors import DecodeError
from plexinode.identity import Identity
from plexinode.net.authority import SPENT_MARGIN, Authority
from plexinode.net.certificates import ADMIN, INVITER, MEMBER, Grant
from plexinode.security import statements as statements_module
from plexinode.security.statements import (
    HASH_BYTES,
    MAX_BATCH,
    Added,
    AuthorityDigest,
    AuthorityPush,
    StatementSet,
    decode_statement,
    encode_statement,
    founding,
    make_grant,
    make_revocation,
    split_hashes,
    statement_hash,
)
from plexinode.wire import envelope
from plexinode.wire.codec import FRAME_LIMITS

ROOT = Identity.from_seed(b"r" * 32)
ADMIN_KEY = Identity.from_seed(b"a" * 32)
INVITER_KEY = Identity.from_seed(b"i" * 32)
MEMBERS = [Identity.from_seed(bytes([n]) * 32) for n in range(5)]
NOW = 1_800_000_000


def authority() -> Authority:
    return Authority("home", ROOT.public_key)


def chain() -> list[bytes]:
    """Root -> admin -> inviter -> five members, and the admin revoking the last member."""
    a = authority()
    statements = [
        make_grant(ROOT, a, ADMIN_KEY.public_key, ADMIN, now=NOW),
        make_grant(ADMIN_KEY, a, INVITER_KEY.public_key, INVITER, now=NOW + 1),
        *(make_grant(INVITER_KEY, a, m.public_key, MEMBER, now=NOW + 2) for m in MEMBERS),
        make_revocation(ADMIN_KEY, a, MEMBERS[4].public_key, NOW + 3),
    ]
    return [encode_statement(s) for s in statements]


def test_encodings_round_trip_and_are_named_by_their_hash() -> None:
    for data in chain():
        statement = decode_statement(data)
        assert encode_statement(statement) == data
        assert len(statement_hash(data)) == HASH_BYTES
    assert len({statement_hash(d) for d in chain()}) == len(chain())


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "a statement is"),
        (b"\x00" * 600, "a statement is"),
        (b"\x07\x90", "unknown statement kind"),
        (b"\x00\x90", None),
        (b"\x01\xc1", None),
    ],
)
def test_malformed_statements_are_decode_errors(data: bytes, message: str | None) -> None:
    with pytest.raises(DecodeError, match=message):
        decode_statement(data)


@settings(max_examples=50, deadline=None)
@given(st.randoms(use_true_random=False))
def test_any_arrival_order_gives_the_same_set(rng: random.Random) -> None:
    """An issuer's grant may arrive after what it signed: the set retries until nothing new
    gets in, so every order ends with the same statements and the same answers."""
    encoded = chain()
    expected = StatementSet(authority())
    assert len(expected.add_many(encoded).new) == len(encoded)
    shuffled = StatementSet(authority())
    order = encoded[:]
    rng.shuffle(order)
    added = shuffled.add_many(order)
    assert sorted(added.new) == sorted(encoded)
    assert added.refused == ()
    assert shuffled.summary() == expected.summary()
    assert shuffled.authority.is_revoked(MEMBERS[4].public_key)
    assert shuffled.authority.holds(MEMBERS[0].public_key, MEMBER, NOW + 10)


def test_what_nobody_entitled_signed_is_refused_and_not_kept() -> None:
    stranger = Identity.from_seed(b"s" * 32)
    forged = make_grant(stranger, authority(), stranger.public_key, ADMIN, now=NOW)
    held = StatementSet(authority())
    added = held.add_many([encode_statement(forged), b"\x09junk"])
    assert added.new == ()
    assert len(added.refused) == 2
    assert len(held) == 0
    # the same statement again is not new
    held.add_many(chain())
    assert held.add_many(chain()).new == ()


def test_summaries_hashes_wants_and_lacking() -> None:
    encoded = chain()
    full = StatementSet(authority())
    full.add_many(encoded)
    part = StatementSet(authority())
    part.add_many(encoded[:3])
    assert full.summary() != part.summary()
    theirs = split_hashes(full.hashes())
    assert len(theirs) == len(encoded)
    assert statement_hash(encoded[0]) in full
    wanted = split_hashes(part.wants(theirs))
    assert wanted == theirs - split_hashes(part.hashes())
    sent = full.lacking(split_hashes(part.hashes()))
    assert sorted(sent) == sorted(encoded[3:])
    part.add_many(sent)
    assert part.summary() == full.summary()
    assert full.encoded([b"\x00" * HASH_BYTES]) == []


def test_a_batch_is_capped() -> None:
    a = authority()
    grants = [
        encode_statement(
            make_grant(
                ROOT, a, Identity.from_seed(n.to_bytes(32, "big")).public_key, MEMBER, now=NOW
            )
        )
        for n in range(MAX_BATCH + 3)
    ]
    held = StatementSet(a)
    held.add_many(grants)
    assert len(held.lacking(set())) == MAX_BATCH
    assert len(split_hashes(StatementSet(a).wants(split_hashes(held.hashes())))) == MAX_BATCH


def test_hash_lists_are_whole_hashes() -> None:
    with pytest.raises(DecodeError, match="multiple"):
        split_hashes(b"\x00" * (HASH_BYTES + 1))


def test_messages_round_trip() -> None:
    encoded = chain()
    for message in (
        AuthorityDigest(b"\x01" * 32, b"\x02" * (2 * HASH_BYTES)),
        AuthorityPush(tuple(encoded), b"\x03" * HASH_BYTES),
    ):
        assert envelope.decode(envelope.encode(message), FRAME_LIMITS).message == message


def test_founding_gives_the_first_node_member_and_inviter_grants() -> None:
    node = MEMBERS[0]
    held = StatementSet(authority())
    added = held.add_many(founding(ROOT, "home", node.public_key, NOW))
    assert len(added.new) == 2
    assert held.authority.holds(node.public_key, MEMBER, NOW + 1)
    assert held.authority.holds(node.public_key, INVITER, NOW + 1)
    assert not held.authority.holds(node.public_key, ADMIN, NOW + 1)
    grant = decode_statement(added.new[0])
    assert isinstance(grant, Grant)
    assert grant.issuer == ROOT.public_key


def test_a_chain_climbs_to_the_root_once_and_stops_at_its_limit() -> None:
    held = StatementSet(authority())
    held.add_many(chain())
    member = MEMBERS[0].public_key
    climbed = [decode_statement(s) for s in held.chain(member, NOW + 10, 16)]
    # the member's grant, the inviter's, the admin's: each issuer's grants once
    assert [(s.subject, s.issuer) for s in climbed] == [
        (member, INVITER_KEY.public_key),
        (INVITER_KEY.public_key, ADMIN_KEY.public_key),
        (ADMIN_KEY.public_key, ROOT.public_key),
    ]
    assert len(held.chain(member, NOW + 10, 2)) == 2
    assert held.chain(member, NOW - 1, 16) == []  # nothing valid yet
    # an inviter that admitted itself twice over: its grants are climbed once
    a = authority()
    twice = [
        make_grant(ROOT, a, INVITER_KEY.public_key, INVITER, now=NOW),
        make_grant(ROOT, a, INVITER_KEY.public_key, MEMBER, now=NOW),
        make_grant(INVITER_KEY, a, member, MEMBER, now=NOW + 1),
        make_grant(INVITER_KEY, a, member, MEMBER, now=NOW + 2),
    ]
    again = StatementSet(a)
    again.add_many([encode_statement(s) for s in twice])
    assert len(again.chain(member, NOW + 10, 16)) == 4


def test_spent_grants_are_forgotten_and_not_taken_back() -> None:
    a = authority()
    admin = make_grant(ROOT, a, ADMIN_KEY.public_key, ADMIN, now=NOW)
    short = make_grant(ADMIN_KEY, a, MEMBERS[0].public_key, MEMBER, now=NOW, lifetime=86_400)
    long = make_grant(ADMIN_KEY, a, MEMBERS[1].public_key, MEMBER, now=NOW)
    encoded = [encode_statement(g) for g in (admin, short, long)]
    held = StatementSet(authority())
    assert len(held.add_many(encoded, NOW).new) == 3
    before = held.summary()
    later = short.expires_at + SPENT_MARGIN
    assert held.prune(later - 1) == []
    assert held.prune(later) == [statement_hash(encoded[1])]
    assert len(held) == 2
    assert held.summary() != before
    assert held.prune(later) == []
    # A member that still holds it offers it: it is neither asked for nor taken back.
    theirs = {statement_hash(d) for d in encoded}
    assert held.wants(theirs) == b""
    again = held.add_many(encoded, later)
    assert again == Added((), (), 1)
    fresh = StatementSet(authority())
    added = fresh.add_many(encoded, later)
    assert set(added.new) == {encoded[0], encoded[2]}
    assert added.spent == 1
    assert fresh.wants(theirs) == b""
    assert fresh.summary() == held.summary()


def test_the_memory_of_spent_hashes_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(statements_module, "MAX_HASHES", 2)
    a = authority()
    admin = make_grant(ROOT, a, ADMIN_KEY.public_key, ADMIN, now=NOW)
    short = [make_grant(ADMIN_KEY, a, m.public_key, MEMBER, now=NOW, lifetime=60) for m in MEMBERS]
    encoded = [encode_statement(g) for g in (admin, *short)]
    held = StatementSet(authority())
    held.add_many(encoded, NOW)
    assert split_hashes(held.hashes()) == {statement_hash(d) for d in encoded}
    gone = held.prune(NOW + 60 + SPENT_MARGIN)
    assert len(gone) == len(MEMBERS)
    assert split_hashes(held.hashes()) == {statement_hash(encoded[0])}
    # Only the last ones are remembered: the others may be asked for again (and passed over).
    assert len(held.wants(set(gone))) // HASH_BYTES == len(MEMBERS) - 1
