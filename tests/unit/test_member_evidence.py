"""The signed claims kept behind the member table's beliefs."""

from __future__ import annotations

from plexinode.identity import Identity
from plexinode.membership.claims import SignedClaim, sign_claim
from plexinode.membership.evidence import Evidence
from plexinode.membership.members import Claim, State
from plexinode.net.address import Address

MEMBER = Identity.from_seed(b"member".ljust(32, b"\0"))
ACCUSER = Identity.from_seed(b"accuser".ljust(32, b"\0"))
OTHER = Identity.from_seed(b"other".ljust(32, b"\0"))


def kept(evidence: Evidence, claim: Claim, by: Identity) -> SignedClaim:
    signed = sign_claim(by, claim)
    evidence.keep(claim, signed)
    return signed


def alive(inc: int) -> Claim:
    return Claim(MEMBER.node_id, inc, State.ALIVE, address=Address("10.0.0.1", 7420))


def accusation(inc: int, state: State = State.SUSPECT) -> Claim:
    return Claim(MEMBER.node_id, inc, state, accuser=ACCUSER.node_id)


def test_nothing_is_held_about_an_unknown_member() -> None:
    evidence = Evidence()
    assert len(evidence) == 0
    assert evidence.alive(MEMBER.node_id) is None
    assert evidence.overriding(MEMBER.node_id) is None
    assert evidence.about(MEMBER.node_id) == ()


def test_the_alive_claim_then_the_accusation_that_overrides_it() -> None:
    evidence = Evidence()
    first = kept(evidence, alive(0), MEMBER)
    assert evidence.about(MEMBER.node_id) == (first,)
    suspicion = kept(evidence, accusation(0), ACCUSER)
    assert evidence.alive(MEMBER.node_id) == first
    assert evidence.overriding(MEMBER.node_id) == suspicion
    assert evidence.about(MEMBER.node_id) == (first, suspicion)
    assert len(evidence) == 1


def test_of_two_overriding_claims_the_higher_rank_is_kept() -> None:
    evidence = Evidence()
    kept(evidence, alive(3), MEMBER)
    death = kept(evidence, accusation(3, State.DEAD), ACCUSER)
    kept(evidence, accusation(3), ACCUSER)  # a suspicion arriving late: below the death
    kept(evidence, accusation(2, State.DEAD), ACCUSER)  # an older life's death
    assert evidence.overriding(MEMBER.node_id) == death
    leave = kept(evidence, Claim(MEMBER.node_id, 3, State.LEFT), MEMBER)
    assert evidence.overriding(MEMBER.node_id) == leave


def test_a_newer_alive_claim_clears_the_accusation() -> None:
    evidence = Evidence()
    kept(evidence, alive(0), MEMBER)
    kept(evidence, accusation(0), ACCUSER)
    refutation = kept(evidence, alive(1), MEMBER)
    assert evidence.about(MEMBER.node_id) == (refutation,)


def test_a_forgotten_member_leaves_nothing_behind() -> None:
    evidence = Evidence()
    kept(evidence, alive(0), MEMBER)
    kept(evidence, accusation(0), ACCUSER)
    other = kept(
        evidence, Claim(OTHER.node_id, 0, State.ALIVE, address=Address("10.0.0.2", 1)), OTHER
    )
    evidence.forget(MEMBER.node_id)
    evidence.forget(MEMBER.node_id)  # twice: nothing to do
    assert evidence.about(MEMBER.node_id) == ()
    assert evidence.about(OTHER.node_id) == (other,)
    assert len(evidence) == 1
