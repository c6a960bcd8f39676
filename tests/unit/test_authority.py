"""The private network's authority: grants, revocations and what they decide."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plexinode.errors import DecodeError
from plexinode.identity import Identity
from plexinode.net.authority import (
    MAX_GRANTS,
    SPENT_MARGIN,
    Authority,
    AuthorityError,
    is_spent,
    spent_at,
)
from plexinode.net.certificates import (
    ADMIN,
    INVITER,
    LIMITS,
    MAX_LIFETIME,
    MEMBER,
    ROLES,
    Grant,
    Revocation,
)
from plexinode.wire.codec import pack

NETWORK = "lab"
DAY = 86_400
T0 = 1_800_000_000  # a fixed "now" for the statements' dates

KEYS = {
    name: Identity.from_seed(bytes([i + 1]) * 32)
    for i, name in enumerate(
        ["root", "admin", "admin2", "inviter", "inviter2", "alice", "bob", "mallory"]
    )
}


def key(name: str) -> bytes:
    return KEYS[name].public_key


def grant(
    issuer: str,
    subject: str,
    role: str,
    issued_at: int = T0,
    days: int = 30,
    *,
    network: str = NETWORK,
    root: str = "root",
) -> Grant:
    unsigned = Grant(
        network, key(root), key(subject), role, issued_at, issued_at + days * DAY, b"", b""
    )
    return unsigned.signed_by(KEYS[issuer])


def revocation(issuer: str, subject: str, issued_at: int = T0, *, void: bool = False) -> Revocation:
    unsigned = Revocation(NETWORK, key("root"), key(subject), void, issued_at, b"", b"")
    return unsigned.signed_by(KEYS[issuer])


def authority(*statements: Grant | Revocation) -> Authority:
    held = Authority(NETWORK, key("root"))
    for statement in statements:
        if isinstance(statement, Grant):
            held.add_grant(statement)
        else:
            held.add_revocation(statement)
    return held


def test_the_root_holds_every_role_and_cannot_be_revoked() -> None:
    held = authority()
    for role in ROLES:
        assert held.holds(key("root"), role, T0)
    with pytest.raises(AuthorityError, match="root key cannot be revoked"):
        held.add_revocation(revocation("root", "root"))
    assert not held.holds(key("alice"), MEMBER, T0)
    assert held.holds(key("alice"), MEMBER, T0).reason == "it holds no member grant"


def test_a_chain_from_the_root_admits_a_member_until_it_expires() -> None:
    held = authority(
        grant("root", "admin", ADMIN, days=3650),
        grant("admin", "inviter", INVITER, T0 + 10),
        grant("inviter", "alice", MEMBER, T0 + 20, days=365),
        grant("admin", "bob", MEMBER, T0 + 30, days=1),
    )
    assert held.holds(key("alice"), MEMBER, T0 + 20)
    assert held.holds(key("bob"), MEMBER, T0 + 30)
    assert held.holds(key("inviter"), INVITER, T0 + 10)
    # A member grant is its own role: the inviter is not a member by its inviter grant.
    assert not held.holds(key("inviter"), MEMBER, T0 + 10)
    assert held.holds(key("bob"), MEMBER, T0 + 30 + DAY).reason == "its grant has expired"
    assert held.holds(key("alice"), MEMBER, T0).reason == "its grant is dated in the future"
    # The member outlives its inviter's grant: what an issuer signed while entitled stands.
    assert held.holds(key("alice"), MEMBER, T0 + 100 * DAY)
    assert not held.holds(key("inviter"), INVITER, T0 + 100 * DAY)
    assert sorted(g.subject for g in held.grants()) == sorted(
        key(n) for n in ("admin", "inviter", "alice", "bob")
    )


@pytest.mark.parametrize(
    ("statement", "reason"),
    [
        (grant("admin", "mallory", ADMIN), "only the root key grants the admin role"),
        (grant("mallory", "alice", MEMBER), "neither this network's root key nor a key granted"),
        (grant("inviter", "mallory", INVITER), "its issuer held no admin grant then"),
        (grant("root", "alice", MEMBER, network="other"), "another network"),
        (grant("root", "alice", MEMBER, root="mallory"), "another network"),
        (grant("root", "alice", MEMBER, days=401), "at most 400 days"),
        (grant("root", "alice", MEMBER, days=0), "at most 400 days"),
        # The inviter's grant starts at T0: it cannot sign anything dated before.
        (grant("inviter", "alice", MEMBER, T0 - 1), "held no admin or inviter grant then"),
    ],
)
def test_grants_that_are_refused(statement: Grant, reason: str) -> None:
    held = authority(grant("root", "admin", ADMIN), grant("admin", "inviter", INVITER))
    with pytest.raises(AuthorityError, match=reason):
        held.add_grant(statement)
    assert not held.holds(statement.subject, statement.role, T0 + 1)


def test_a_forged_signature_is_refused() -> None:
    forged = dataclasses.replace(grant("root", "alice", MEMBER), subject=key("mallory"))
    with pytest.raises(AuthorityError, match="signature does not match"):
        authority().add_grant(forged)
    forged_revocation = dataclasses.replace(revocation("root", "alice"), subject=key("bob"))
    with pytest.raises(AuthorityError, match="signature does not match"):
        authority().add_revocation(forged_revocation)


def test_a_revocation_wins_over_any_grant_of_the_key_and_nothing_undoes_it() -> None:
    held = authority(
        grant("root", "admin", ADMIN),
        grant("admin", "alice", MEMBER),
        revocation("admin", "alice", T0 + 5),
        # A grant dated after the revocation (a re-admission) does not undo it either.
        grant("root", "alice", MEMBER, T0 + 10),
    )
    assert held.holds(key("alice"), MEMBER, T0 + 1).reason == "revoked"
    assert held.is_revoked(key("alice"))
    assert held.revoked_keys() == [key("alice")]
    assert not held.add_revocation(revocation("admin", "alice", T0 + 5))  # held already
    assert not held.add_grant(grant("root", "alice", MEMBER, T0 + 10))
    assert len(list(held.revocations())) == 1
    assert held.revocations_of(key("alice")) == (revocation("admin", "alice", T0 + 5),)
    assert held.revocations_of(key("admin")) == ()
    assert [g.issuer for g in held.grants_of(key("alice"))] == [key("admin"), key("root")]
    assert held.grants_of(key("bob")) == ()


def test_only_the_root_revokes_an_admin_and_members_cannot_revoke() -> None:
    held = authority(
        grant("root", "admin", ADMIN),
        grant("root", "admin2", ADMIN),
        grant("admin", "alice", MEMBER),
        grant("admin", "inviter", INVITER),
    )
    with pytest.raises(AuthorityError, match="only the root key revokes an admin"):
        held.add_revocation(revocation("admin2", "admin"))
    with pytest.raises(AuthorityError, match="held no admin grant"):
        held.add_revocation(revocation("alice", "bob"))
    with pytest.raises(AuthorityError, match="held no admin grant"):
        held.add_revocation(revocation("inviter", "alice"))
    assert held.add_revocation(revocation("admin2", "inviter", T0 + 1))
    assert held.add_revocation(revocation("root", "admin2", T0 + 2))
    assert not held.holds(key("admin2"), ADMIN, T0 + 3)
    # admin2 was revoked after it revoked the inviter, without void: its act stands.
    assert held.is_revoked(key("inviter"))
    assert held.holds(key("admin"), ADMIN, T0 + 3)


def test_a_revocation_by_an_admin_falls_when_the_key_turns_out_to_be_an_admin() -> None:
    """Decided from the statements held, not from the order they came in."""
    held = authority(grant("root", "admin", ADMIN), grant("admin", "admin2", MEMBER))
    held.add_revocation(revocation("admin", "admin2", T0 + 1))
    assert held.is_revoked(key("admin2"))
    held.add_grant(grant("root", "admin2", ADMIN, T0 + 2))
    assert not held.is_revoked(key("admin2"))
    assert held.holds(key("admin2"), ADMIN, T0 + 3)


def test_a_retired_issuer_keeps_what_it_signed_before_a_void_one_loses_everything() -> None:
    held = authority(
        grant("root", "admin", ADMIN),
        grant("root", "inviter", INVITER),
        grant("inviter", "alice", MEMBER, T0 + 10),
        grant("inviter", "bob", MEMBER, T0 + 30),
        revocation("root", "inviter", T0 + 20),
    )
    # Retired at T0 + 20: alice (before) stays, bob (after) falls.
    assert held.holds(key("alice"), MEMBER, T0 + 40)
    assert held.holds(key("bob"), MEMBER, T0 + 40).reason.startswith("its issuer is revoked")
    with pytest.raises(AuthorityError, match="its issuer is revoked"):
        held.add_grant(grant("inviter", "mallory", MEMBER, T0 + 50))
    # The admin's key was stolen: the thief admitted mallory and revoked alice. The root voids
    # the key, and every act signed with it falls, whatever its date.
    held.add_grant(grant("admin", "mallory", MEMBER, T0 + 5))
    held.add_revocation(revocation("admin", "alice", T0 + 60))
    assert held.is_revoked(key("alice"))
    assert held.holds(key("mallory"), MEMBER, T0 + 60)
    held.add_revocation(revocation("root", "admin", T0 + 70, void=True))
    assert not held.is_revoked(key("alice"))
    assert held.holds(key("alice"), MEMBER, T0 + 80)
    verdict = held.holds(key("mallory"), MEMBER, T0 + 80)
    assert verdict.reason == "its issuer is revoked (revoked with everything it signed)"
    assert held.revoked_keys() == sorted([key("inviter"), key("admin")])


def test_voiding_an_admin_takes_down_the_inviters_it_appointed_and_their_members() -> None:
    held = authority(
        grant("root", "admin", ADMIN),
        grant("admin", "inviter", INVITER),
        grant("inviter", "alice", MEMBER, T0 + 1),
    )
    assert held.holds(key("alice"), MEMBER, T0 + 2)
    held.add_revocation(revocation("root", "admin", T0 + 3, void=True))
    assert not held.holds(key("inviter"), INVITER, T0 + 4)
    assert held.holds(key("alice"), MEMBER, T0 + 4).reason == (
        "its issuer held no admin or inviter grant then"
    )
    # Asked directly: nobody but the root may revoke the root.
    assert held.may_revoke(key("admin"), key("root"), T0).reason == (
        "the root key cannot be revoked"
    )
    assert held.may_revoke(key("root"), key("admin"), T0)


def test_statements_round_trip_and_decoding_is_strict() -> None:
    g = grant("root", "alice", MEMBER)
    r = revocation("root", "alice", void=True)
    assert Grant.from_bytes(g.to_bytes(LIMITS), LIMITS) == g
    assert Revocation.from_bytes(r.to_bytes(LIMITS), LIMITS) == r
    assert len(g.to_bytes(LIMITS)) < 256
    bad_role = g.to_wire()
    bad_role[3] = "owner"
    with pytest.raises(DecodeError, match="expected a role"):
        Grant.from_bytes(pack(bad_role), LIMITS)
    with pytest.raises(DecodeError):
        Grant.from_bytes(b"\x00" * 600, LIMITS)
    # A revocation's signature is not a grant's: the domains differ.
    as_grant = Grant(
        NETWORK, key("root"), key("alice"), MEMBER, T0, T0 + DAY, key("root"), r.signature
    )
    with pytest.raises(AuthorityError, match="signature"):
        authority().add_grant(as_grant)


def test_the_number_of_grants_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    import plexinode.net.authority as module

    monkeypatch.setattr(module, "MAX_GRANTS", 2)
    held = authority(grant("root", "alice", MEMBER), grant("root", "bob", MEMBER))
    with pytest.raises(AuthorityError, match="most grants"):
        held.add_grant(grant("root", "mallory", MEMBER))
    monkeypatch.setattr(module, "MAX_REVOCATIONS", 1)
    held.add_revocation(revocation("root", "alice"))
    with pytest.raises(AuthorityError, match="most revocations"):
        held.add_revocation(revocation("root", "bob"))
    assert MAX_GRANTS > 1000
    assert MAX_LIFETIME[MEMBER] == 400 * DAY


# -- the same statements decide the same, whatever their order --------------------------------

_NAMES = sorted(KEYS)
_statement = st.one_of(
    st.builds(
        grant,
        issuer=st.sampled_from(_NAMES),
        subject=st.sampled_from(_NAMES),
        role=st.sampled_from(ROLES),
        issued_at=st.integers(T0, T0 + 100),
        days=st.integers(1, 30),
    ),
    st.builds(
        revocation,
        issuer=st.sampled_from(_NAMES),
        subject=st.sampled_from(_NAMES),
        issued_at=st.integers(T0, T0 + 100),
        void=st.booleans(),
    ),
)


def _add_until_settled(statements: list[Grant | Revocation]) -> Authority:
    """Add what can be added, over and over, as sync rounds would, until nothing changes."""
    held = Authority(NETWORK, key("root"))
    progress = True
    while progress:
        progress = False
        for statement in statements:
            try:
                if isinstance(statement, Grant):
                    progress |= held.add_grant(statement)
                else:
                    progress |= held.add_revocation(statement)
            except AuthorityError:
                pass
    return held


def _answers(held: Authority) -> tuple[object, ...]:
    return (
        tuple(held.revoked_keys()),
        tuple(
            bool(held.holds(key(name), role, at))
            for name in _NAMES
            for role in ROLES
            for at in (T0 + 50, T0 + 200, T0 + 20 * DAY)
        ),
    )


@settings(max_examples=150, deadline=None)
@given(st.lists(_statement, max_size=14), st.randoms(use_true_random=False))
def test_the_answers_depend_on_the_statements_not_their_order(
    statements: list[Grant | Revocation], rng: object
) -> None:
    shuffled = list(statements)
    rng.shuffle(shuffled)  # type: ignore[attr-defined]
    forward = _add_until_settled(statements)
    backward = _add_until_settled(shuffled)
    assert _answers(forward) == _answers(backward)
    for name in _NAMES:
        if forward.is_revoked(key(name)):
            assert not any(forward.holds(key(name), role, T0 + 50) for role in ROLES)


# -- spent grants are forgotten without changing any answer ------------------------------------


def _answers_from(held: Authority, at: int) -> tuple[object, ...]:
    times = (at, at + DAY, at + 100 * DAY)
    return (
        tuple(held.revoked_keys()),
        tuple(
            (
                bool(held.holds(key(name), role, t)),
                bool(held.may_issue(key(name), role, t)),
                bool(held.may_revoke(key(name), key(other), t)),
            )
            for name in _NAMES
            for other in _NAMES
            for role in ROLES
            for t in times
        ),
    )


# Mostly chains that hold (root -> admins -> inviters -> members), at dates far apart.
_long_grant = st.sampled_from(
    [
        ("root", "admin", ADMIN),
        ("admin", "inviter", INVITER),
        ("admin", "admin2", INVITER),
        ("inviter", "alice", MEMBER),
        ("inviter", "bob", MEMBER),
        ("admin2", "mallory", MEMBER),
        ("inviter2", "bob", MEMBER),
    ]
).flatmap(
    lambda chain: st.builds(
        grant,
        issuer=st.just(chain[0]),
        subject=st.just(chain[1]),
        role=st.just(chain[2]),
        issued_at=st.integers(T0, T0 + 300 * DAY),
        days=st.integers(1, 400),
    )
)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.one_of(_statement, _long_grant, _long_grant), max_size=14),
    st.integers(T0, T0 + 1200 * DAY),
)
def test_forgetting_spent_grants_changes_no_answer_from_then_on(
    statements: list[Grant | Revocation], now: int
) -> None:
    full = _add_until_settled(statements)
    pruned = _add_until_settled(statements)
    gone = pruned.prune(now)
    assert all(is_spent(g, now) for g in gone)
    assert not any(is_spent(g, now) for g in pruned.grants())
    assert _answers_from(pruned, now) == _answers_from(full, now)


def test_when_grants_are_spent() -> None:
    member = grant("inviter", "alice", MEMBER, days=30)
    inviter = grant("admin", "inviter", INVITER, days=30)
    admin = grant("root", "admin", ADMIN, days=30)
    assert spent_at(member) == member.expires_at + SPENT_MARGIN
    assert spent_at(inviter) == inviter.expires_at + MAX_LIFETIME[MEMBER] + SPENT_MARGIN
    assert spent_at(admin) is None
    assert not is_spent(admin, T0 + 10_000 * DAY)
    assert not is_spent(member, member.expires_at + SPENT_MARGIN - 1)
    assert is_spent(member, member.expires_at + SPENT_MARGIN)
    held = Authority(NETWORK, key("root"))
    late = grant("inviter", "bob", MEMBER, issued_at=inviter.expires_at - 1, days=400)
    for statement in (admin, inviter, member, late):
        held.add_grant(statement)
    # The inviter's grant has expired, but a member grant it entitled has not: it stays.
    assert held.prune(inviter.expires_at + SPENT_MARGIN + DAY) == [member]
    assert held.holds(key("bob"), MEMBER, inviter.expires_at + SPENT_MARGIN + DAY)
    assert held.grants_of(key("alice")) == ()
    assert held.prune(member.expires_at + SPENT_MARGIN) == []
    assert held.prune(late.expires_at + SPENT_MARGIN) == [late]
    assert held.prune(spent_at(inviter) or 0) == [inviter]
    assert list(held.grants()) == [admin]
