"""Claim admission, sans-I/O: the checks a heard claim goes through, in order, and what an
admitted claim does to the table and the evidence."""

from __future__ import annotations

import dataclasses
import random

import pytest

from plexinode.identity import Identity
from plexinode.membership.admission import (
    ACCUSATION_BURST,
    ACCUSATIONS_PER_PERIOD,
    CONFIRMERS,
    Admission,
    Admitted,
    Drop,
)
from plexinode.membership.claims import SignedClaim, sign_claim
from plexinode.membership.evidence import Evidence
from plexinode.membership.members import (
    Claim,
    Died,
    Joined,
    MemberTable,
    Reaped,
    State,
    Suspected,
)
from plexinode.net.address import Address

ME = Identity.from_seed(b"admission".ljust(32, b"\0"))


def identity(n: int) -> Identity:
    return Identity.from_seed(n.to_bytes(32, "big"))


A, B, C = identity(1), identity(2), identity(3)


class Draws(random.Random):
    """A generator whose every ``random()`` is `value` (to decide confirmations at will)."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value
        self.calls = 0

    def random(self) -> float:
        self.calls += 1
        return self.value


def here(n: int = 9) -> Address:
    return Address(f"10.0.0.{n}", 7420)


def alive(who: Identity, inc: int = 0) -> SignedClaim:
    return sign_claim(who, Claim(who.node_id, inc, State.ALIVE, address=here()))


def accuse(by: Identity, who: Identity, inc: int = 0, state: State = State.SUSPECT) -> SignedClaim:
    return sign_claim(by, Claim(who.node_id, inc, state, accuser=by.node_id))


def admission(
    *, max_members: int = 100, id_difficulty: int = 0, rng: Draws | None = None
) -> tuple[Admission, MemberTable, Evidence]:
    table = MemberTable(ME.node_id, here(1), 0.0)
    evidence = Evidence()
    core = Admission(
        table,
        evidence,
        rng or Draws(0.99),
        probe_interval=1.0,
        max_members=max_members,
        id_difficulty=id_difficulty,
    )
    return core, table, evidence


def admitted(verdict: Drop | Admitted) -> Admitted:
    assert isinstance(verdict, Admitted), verdict
    return verdict


def test_a_new_members_alive_claim_is_applied_and_kept() -> None:
    core, table, evidence = admission()
    claim = alive(A)
    verdict = admitted(core.hear(claim, 1.0))
    assert verdict.outcome.accepted
    assert [type(e) for e in verdict.outcome.events] == [Joined]
    assert (verdict.claim.node_id, verdict.signed) == (A.node_id, claim)
    assert verdict.made_room is None
    assert not verdict.confirm
    assert not verdict.urgent
    assert A.node_id in table
    assert evidence.alive(A.node_id) == claim


def test_what_the_table_knows_already_is_dropped_before_its_signature() -> None:
    core, _, _ = admission()
    admitted(core.hear(alive(A), 1.0))
    assert core.hear(alive(A), 2.0) is Drop.KNOWN
    # A stale copy with a broken signature is dropped as known, never checked.
    broken = dataclasses.replace(alive(A), signature=bytes(64))
    assert core.hear(broken, 2.0) is Drop.KNOWN


def test_a_left_signed_by_another_member_is_a_forgery() -> None:
    core, table, _ = admission()
    admitted(core.hear(alive(A), 1.0))
    left_by_b = sign_claim(B, Claim(B.node_id, 5, State.LEFT))
    forged = dataclasses.replace(left_by_b, subject=A.node_id.raw)
    assert core.hear(forged, 2.0) is Drop.FORGED
    assert table.get(A.node_id).state is State.ALIVE  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "change",
    [
        {"ip": b""},  # an alive claim without an address: a DecodeError
        {"state": 7},  # no such state: a ValueError
    ],
)
def test_malformed_claims_are_dropped(change: dict[str, object]) -> None:
    core, table, _ = admission()
    assert core.hear(dataclasses.replace(alive(A), **change), 1.0) is Drop.MALFORMED  # type: ignore[arg-type]
    assert A.node_id not in table


def test_claims_about_ids_that_fail_the_puzzle_are_dropped() -> None:
    core, table, _ = admission(id_difficulty=16)
    solved = next(i for i in (identity(n) for n in range(10, 1_000_000)) if i.node_id.meets(4))
    unsolved = next(i for i in (identity(n) for n in range(10, 100)) if not i.node_id.meets(16))
    assert core.hear(alive(unsolved), 1.0) is Drop.ID_PUZZLE
    easy, _, _ = admission(id_difficulty=4)
    admitted(easy.hear(alive(solved), 1.0))
    assert unsolved.node_id not in table


def test_a_bad_signature_is_dropped_and_changes_nothing() -> None:
    core, table, evidence = admission()
    assert core.hear(dataclasses.replace(alive(A), signature=bytes(64)), 1.0) is Drop.BAD_SIGNATURE
    assert A.node_id not in table
    assert len(evidence) == 0


def test_a_full_table_refuses_newcomers_until_a_member_is_dead() -> None:
    core, table, _ = admission(max_members=3)  # us, A and B
    admitted(core.hear(alive(A), 1.0))
    admitted(core.hear(alive(B), 1.0))
    assert core.hear(alive(C), 2.0) is Drop.TABLE_FULL
    # Members already known still change: A dies.
    verdict = admitted(core.hear(accuse(B, A, state=State.DEAD), 3.0))
    assert [type(e) for e in verdict.outcome.events] == [Died]
    assert verdict.urgent
    # A bad signature never makes room.
    assert core.hear(dataclasses.replace(alive(C), signature=bytes(64)), 4.0) is (
        Drop.BAD_SIGNATURE
    )
    assert A.node_id in table
    # A genuine newcomer takes the place of the one dead longest.
    verdict = admitted(core.hear(alive(C), 5.0))
    assert isinstance(verdict.made_room, Reaped)
    assert verdict.made_room.member.node_id == A.node_id
    assert A.node_id not in table
    assert len(table) == 3


def test_an_accusers_allowance_is_charged_only_once_its_signature_holds() -> None:
    accusers = ACCUSATION_BURST + 5
    victims = [identity(100 + i) for i in range(accusers + 5)]
    core, _, _ = admission()
    for victim in victims:
        admitted(core.hear(alive(victim), 0.0))
    # Forgeries in B's name, each news: dropped as such, B's allowance untouched.
    for victim in victims:
        forged = dataclasses.replace(accuse(B, victim), signature=bytes(64))
        assert core.hear(forged, 0.0) is Drop.BAD_SIGNATURE
    # B's genuine accusations: the burst, then the limit.
    verdicts = [core.hear(accuse(B, victim), 0.0) for victim in victims[:accusers]]
    assert sum(isinstance(v, Admitted) for v in verdicts) == ACCUSATION_BURST
    assert verdicts[-1] is Drop.ACCUSER_LIMITED
    # The allowance refills with time: one more per period.
    period = 1.0 / ACCUSATIONS_PER_PERIOD
    admitted(core.hear(accuse(B, victims[accusers]), period))
    assert core.hear(accuse(B, victims[accusers + 1]), period) is Drop.ACCUSER_LIMITED


def test_deaths_of_suspects_and_our_own_accusations_are_free() -> None:
    victims = [identity(200 + i) for i in range(ACCUSATION_BURST + 3)]
    core, _, _ = admission()
    for victim in victims:
        admitted(core.hear(alive(victim), 0.0))
    for victim in victims[:ACCUSATION_BURST]:  # B's whole burst
        admitted(core.hear(accuse(B, victim), 0.0))
    assert core.hear(accuse(B, victims[-1]), 0.0) is Drop.ACCUSER_LIMITED
    # B's verdicts on the members it suspected: deaths ending suspicions we hold are free.
    for victim in victims[:ACCUSATION_BURST]:
        assert admitted(core.hear(accuse(B, victim, state=State.DEAD), 0.0)).outcome.accepted
    # A death out of the blue is charged like a suspicion.
    out_of_the_blue = accuse(B, victims[-1], state=State.DEAD)
    assert core.hear(out_of_the_blue, 0.0) is Drop.ACCUSER_LIMITED
    # Our own accusations, coming back to us, are never limited.
    mine = [accuse(ME, victim) for victim in victims[-3:]]
    assert [admitted(core.hear(claim, 0.0)).outcome.accepted for claim in mine] == [True] * 3


def test_an_accusation_of_us_is_refuted_and_not_kept() -> None:
    core, table, evidence = admission()
    admitted(core.hear(alive(A), 0.0))
    verdict = admitted(core.hear(accuse(A, ME, inc=0), 1.0))
    assert not verdict.outcome.accepted
    assert verdict.outcome.refutation is not None
    assert verdict.outcome.refutation.incarnation == 1 == table.incarnation
    assert not verdict.confirm
    assert evidence.overriding(ME.node_id) is None


@pytest.mark.parametrize(("draw", "confirm"), [(0.0, True), (0.39, True), (0.4, False)])
def test_a_suspicion_of_another_member_is_confirmed_by_about_four_members(
    draw: float, confirm: bool
) -> None:
    core, table, evidence = admission(rng=Draws(draw))
    for n in range(10):
        admitted(core.hear(alive(identity(300 + n)), 0.0))
    admitted(core.hear(alive(A), 0.0))
    suspicion = accuse(B, A)
    verdict = admitted(core.hear(suspicion, 1.0))
    assert [type(e) for e in verdict.outcome.events] == [Suspected]
    # 12 live members: each of the 10 others that hear it confirms with a chance of 4 / 10.
    assert table.live_count == 12
    assert CONFIRMERS / 10 == 0.4
    assert verdict.confirm is confirm
    assert not verdict.urgent
    assert evidence.overriding(A.node_id) == suspicion


def test_in_a_small_network_every_member_confirms() -> None:
    core, _, _ = admission(rng=Draws(0.99))
    admitted(core.hear(alive(A), 0.0))
    assert admitted(core.hear(accuse(B, A), 1.0)).confirm


def test_no_draw_for_what_is_not_a_suspicion() -> None:
    rng = Draws(0.0)
    core, _, _ = admission(rng=rng)
    admitted(core.hear(alive(A), 0.0))
    admitted(core.hear(accuse(B, A, state=State.DEAD), 0.0))
    assert rng.calls == 0
