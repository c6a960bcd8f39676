"""Who a private network admits and who administers it, decided from its statements alone.

:class:`Authority` holds the network's pinned root key and the grants and revocations this
node has verified (plexinode.net.certificates), and answers: does this key hold this role now,
is it revoked, may it sign this statement. Every answer depends only on the root, the set of
statements held and the time asked about, never on the order in which statements arrived, so
nodes that hold the same statements agree (docs/decisions.md, 34). The rules:

1. **The root** holds every role, always; it cannot be revoked (a stolen root key means a new
   network).
2. **A grant** of role R to key K is *valid at time t* when its signature holds, it names this
   network and root, ``issued_at <= t < expires_at``, it runs no longer than R's
   ``MAX_LIFETIME``, K is not revoked (rule 4), and its issuer was *entitled* to grant R at
   ``issued_at`` (rule 3).
3. **An issuer is entitled** to grant R at time s when it is the root, or it holds a grant of a
   role allowed to issue R (``ISSUERS``) that is valid at s, and it is neither revoked with
   ``void`` nor revoked by a revocation issued at or before s.
4. **A key is revoked** when a *standing* revocation names it. A revocation stands when its
   signature holds, it names this network and root, and its issuer is the root, or is an admin
   entitled at the revocation's ``issued_at`` (as in rule 3) and the subject is not an admin
   or the root (only the root revokes admins). Revocations are a grow-only set: nothing removes
   one, and a revocation wins over any grant of the same key, however dated.
5. **void**: a standing revocation with ``void`` makes every grant and revocation its subject
   signed fall, whatever their dates (for a stolen key, whose thief could date anything).

Rule 4 refers back to rule 3 only through admins, and admins are revoked only by the root,
whose revocations depend on nothing: the rules never loop.

**Spent grants** are forgotten (:meth:`Authority.prune`), so that renewals do not pile up
for as long as a network lives. A grant matters to an answer at time t only while it is valid
at t (rule 2) or while a grant it entitled (rule 3) may still be: a member grant is spent once
it has expired, an inviter grant once every member grant it could have entitled has expired
(its expiry plus a member grant's longest lifetime), each plus :data:`SPENT_MARGIN` for the
members' clocks to disagree. An admin grant is never spent: it entitles revocations, which are
kept for good. So every answer at any time from the pruning on is the same with or without the
spent grants (tests/unit/test_authority.py checks this with hypothesis).

The caller passes the time; this module reads no clock. Statements are checked once, when
added (:meth:`Authority.add_grant`, :meth:`Authority.add_revocation`); questions are then
dictionary lookups.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Final

from plexinode.errors import AuthenticationError, PlexinodeError
from plexinode.net.certificates import (
    ADMIN,
    ISSUERS,
    MAX_LIFETIME,
    Grant,
    Revocation,
)

#: Most grants one authority keeps (members, their renewals, admins and inviters).
MAX_GRANTS: Final = 32_768
#: Most revocations one authority keeps: a grow-only set, so it needs a cap of its own.
MAX_REVOCATIONS: Final = 16_384
#: How long after it stops mattering a grant is still kept, seconds: more than members'
#: clocks may disagree, so that no member forgets a grant another can still find valid.
SPENT_MARGIN: Final = 7 * 86_400


def spent_at(grant: Grant) -> int | None:
    """When `grant` is spent (module docstring): no answer at that time or later depends on it;
    None for a role that may revoke (an admin grant is kept for good)."""
    if grant.role == ADMIN:
        return None
    entitled = [MAX_LIFETIME[role] for role, issuers in ISSUERS.items() if grant.role in issuers]
    return grant.expires_at + max(entitled, default=0) + SPENT_MARGIN


class AuthorityError(PlexinodeError):
    """A statement that this network's authority does not accept (the message says why)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Verdict:
    """Whether a key holds a role, and if not, why not (for logs and the CLI)."""

    ok: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


_YES: Final = Verdict(True)


class Authority:
    """The statements of one private network, and what they decide (module docstring).

    Args:
        network: The network's name.
        root: The network's pinned root public key.
    """

    def __init__(self, network: str, root: bytes) -> None:
        self.network = network
        self.root = root
        #: Every grant held, by subject key: a key may hold several (renewals, two roles).
        self._grants: dict[bytes, list[Grant]] = {}
        self._grant_count = 0
        #: Every revocation held whose signature holds, by subject key.
        self._revocations: dict[bytes, list[Revocation]] = {}
        self._revocation_count = 0

    # -- adding statements ---------------------------------------------------------------

    def _check_scope(self, statement: Grant | Revocation) -> None:
        if statement.network != self.network or statement.root != self.root:
            raise AuthorityError("it belongs to another network (name or root key)")
        try:
            statement.verify_signature()
        except AuthenticationError:
            raise AuthorityError("its signature does not match") from None

    def add_grant(self, grant: Grant) -> bool:
        """Keep `grant` if its signature holds, it names this network and its issuer is
        entitled to it (rule 3, by the statements held now); True if it is new.

        Whether it is *valid* is asked later (:meth:`holds`): validity changes with time and
        with the revocations that arrive, while the grant itself never does. A chain is added
        from the root down (an issuer's grant before the grants it signed), so that statements
        signed by strangers are never kept.

        Raises:
            AuthorityError: Another network's, a bad signature, an impossible lifetime, an
                issuer not entitled to it, or the cap of grants is reached.
        """
        self._check_scope(grant)
        if not grant.issued_at < grant.expires_at <= grant.issued_at + MAX_LIFETIME[grant.role]:
            raise AuthorityError(
                f"a {grant.role} grant runs from its issue for at most "
                f"{MAX_LIFETIME[grant.role] // 86_400} days"
            )
        held = self._grants.get(grant.subject, [])
        if grant in held:
            return False
        entitled = self.may_issue(grant.issuer, grant.role, grant.issued_at)
        if not entitled:
            raise AuthorityError(
                f"its issuer may not grant the {grant.role} role: {entitled.reason}"
            )
        if self._grant_count >= MAX_GRANTS:
            raise AuthorityError(f"this node holds the most grants it keeps ({MAX_GRANTS})")
        self._grants.setdefault(grant.subject, held).append(grant)
        self._grant_count += 1
        return True

    def add_revocation(self, revocation: Revocation) -> bool:
        """Keep `revocation` if its signature holds, it names this network and its issuer
        may revoke its subject (rule 4, by the statements held now); True if it is new.

        Whether it *stands* is decided when asked: a later void revocation of its issuer
        makes it fall (rule 5).

        Raises:
            AuthorityError: Another network's, a bad signature, revoking the root, an issuer
                that may not revoke that key, or the cap of revocations is reached.
        """
        self._check_scope(revocation)
        if revocation.subject == self.root:
            raise AuthorityError("the root key cannot be revoked")
        held = self._revocations.get(revocation.subject, [])
        if revocation in held:
            return False
        entitled = self.may_revoke(revocation.issuer, revocation.subject, revocation.issued_at)
        if not entitled:
            raise AuthorityError(f"its issuer may not revoke that key: {entitled.reason}")
        if self._revocation_count >= MAX_REVOCATIONS:
            raise AuthorityError(
                f"this node holds the most revocations it keeps ({MAX_REVOCATIONS})"
            )
        self._revocations.setdefault(revocation.subject, held).append(revocation)
        self._revocation_count += 1
        return True

    def prune(self, now: float) -> list[Grant]:
        """Forget the grants spent at `now` (:func:`spent_at`); the grants forgotten."""
        spent = [g for g in self.grants() if is_spent(g, now)]
        for grant in spent:
            held = self._grants[grant.subject]
            held.remove(grant)
            if not held:
                del self._grants[grant.subject]
            self._grant_count -= 1
        return spent

    def grants(self) -> Iterable[Grant]:
        """Every grant held (to hand to other members)."""
        for held in self._grants.values():
            yield from held

    def grants_of(self, key: bytes) -> tuple[Grant, ...]:
        """The grants held for `key`."""
        return tuple(self._grants.get(key, ()))

    def revocations_of(self, key: bytes) -> tuple[Revocation, ...]:
        """The revocations held that name `key`."""
        return tuple(self._revocations.get(key, ()))

    def revocations(self) -> Iterable[Revocation]:
        """Every revocation held."""
        for held in self._revocations.values():
            yield from held

    # -- questions -----------------------------------------------------------------------

    def holds(self, key: bytes, role: str, now: float) -> Verdict:
        """Whether `key` holds `role` at time `now` (by a grant of that role, or as the root).

        A grant of a stronger role does not imply a weaker one: an admin's own node is a member
        by a member grant like any other.
        """
        if key == self.root:
            return _YES
        revoked = self._standing_revocation(key)
        if revoked is not None:
            return Verdict(False, _revoked_reason(revoked))
        reasons = []
        for grant in self._grants.get(key, ()):
            if grant.role != role:
                continue
            verdict = self._grant_valid(grant, now)
            if verdict:
                return verdict
            reasons.append(verdict.reason)
        if not reasons:
            return Verdict(False, f"it holds no {role} grant")
        return Verdict(False, reasons[0])

    def is_revoked(self, key: bytes) -> bool:
        """Whether a standing revocation names `key` (rule 4)."""
        return self._standing_revocation(key) is not None

    def revoked_keys(self) -> list[bytes]:
        """Every key a standing revocation names, sorted."""
        return sorted(key for key in self._revocations if self.is_revoked(key))

    def is_admin_key(self, key: bytes) -> bool:
        """Whether the root ever granted `key` the admin role (expired or not): such a key is
        revoked by the root alone."""
        return any(g.role == ADMIN and g.issuer == self.root for g in self._grants.get(key, ()))

    def may_issue(self, issuer: bytes, role: str, at: float) -> Verdict:
        """Whether `issuer` may sign a grant of `role` dated `at` (rule 3)."""
        if issuer == self.root:
            return _YES
        if not ISSUERS[role]:
            return Verdict(False, f"only the root key grants the {role} role")
        return self._entitled(issuer, ISSUERS[role], at)

    def may_revoke(self, issuer: bytes, subject: bytes, at: float) -> Verdict:
        """Whether `issuer` may revoke `subject` by a revocation dated `at` (rule 4)."""
        if issuer == self.root:
            return _YES
        if subject == self.root:
            return Verdict(False, "the root key cannot be revoked")
        if self.is_admin_key(subject):
            return Verdict(False, "only the root key revokes an admin")
        return self._entitled(issuer, (ADMIN,), at)

    # -- the rules -----------------------------------------------------------------------

    def _grant_valid(self, grant: Grant, now: float) -> Verdict:
        """Rule 2, for a grant whose subject is not revoked."""
        if now < grant.issued_at:
            return Verdict(False, "its grant is dated in the future")
        if now >= grant.expires_at:
            return Verdict(False, "its grant has expired")
        return self.may_issue(grant.issuer, grant.role, grant.issued_at)

    def _entitled(self, issuer: bytes, roles: tuple[str, ...], at: float) -> Verdict:
        """Rule 3 for a key other than the root."""
        for revocation in self._revocations.get(issuer, ()):
            if self._stands(revocation) and (revocation.void or revocation.issued_at <= at):
                return Verdict(False, f"its issuer is revoked ({_revoked_reason(revocation)})")
        for grant in self._grants.get(issuer, ()):
            if (
                grant.role in roles
                and grant.issued_at <= at < grant.expires_at
                and self.may_issue(grant.issuer, grant.role, grant.issued_at)
            ):
                return _YES
        if issuer not in self._grants:
            return Verdict(
                False, "its issuer is neither this network's root key nor a key granted a role"
            )
        return Verdict(False, f"its issuer held no {' or '.join(roles)} grant then")

    def _stands(self, revocation: Revocation) -> bool:
        """Rule 4 for one revocation (rule 5: not voided by a revocation of its issuer)."""
        # may_revoke checks the issuer's own revocations: one dated up to this one, or a void
        # one of any date (rule 5), makes this one fall.
        return bool(self.may_revoke(revocation.issuer, revocation.subject, revocation.issued_at))

    def _standing_revocation(self, key: bytes) -> Revocation | None:
        for revocation in self._revocations.get(key, ()):
            if self._stands(revocation):
                return revocation
        return None


def is_spent(grant: Grant, now: float) -> bool:
    """Whether `grant` is spent at `now` (:func:`spent_at`)."""
    at = spent_at(grant)
    return at is not None and now >= at


def _revoked_reason(revocation: Revocation) -> str:
    return "revoked" + (" with everything it signed" if revocation.void else "")
