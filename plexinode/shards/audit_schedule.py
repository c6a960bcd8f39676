"""Which co-holder a holder audits next, within its budget, and whom it holds failed (sans-I/O).

Every holder of a home audits the other holders of the same home (its *co-holders*, from the
home's provider records) without the owner: a ``shard-challenge`` on one segment's share,
checked against the root in the owner-signed manifest this holder keeps of the home.

**Budget.** A challenge asks `audit.DEFAULT_LEAVES` leaves of 8 KiB: the challenged holder
reads and sends at most 32 KiB (`CHALLENGE_COST`). A holder sends audits worth at most
`audit.DAILY_FRACTION` (0.1%) of the bytes it stores a day (`audit.AuditBudget`, a token bucket
holding at most one day's allowance, refilled continuously): storing 10 GiB, that is 10 MiB a
day, about 320 challenges, one every 4.5 minutes. A holder storing less than 32 MiB earns a
challenge less often than once a day.

**What a holder receives.** Each of its co-holders spends its own budget over all of its own
co-holders, so a holder that stores S bytes among co-holders storing about as much receives
about what it sends, 0.1% of S a day, read from its disk and sent; a co-holder that stores much
more than it shares with this holder may ask more, up to the holder's per-peer read limit
(``holder_service``; past it the holder answers ``busy``, which is not a failure).

**Spread.** The pair (home, co-holder, share index) audited longest ago goes next (never
audited first, then by key), so challenges go round every pair before any is asked twice. The
segment challenged is drawn from the challenge's nonce, which the driver draws fresh.

**Failures.** A co-holder that answers with a wrong proof, or says it does not hold a share the
records say it holds, *fails*: its failure score for the home rises by one, and decays by half
every `HALF_LIFE` (a day). While its score is at least `FAILED_SCORE` (one failure for two
days, two failures in a row for three) it is among the home's `failed_holders`, whose shares a
repair does not count, so the share is regenerated on another member. A holder that did not
answer is not failed by an audit: membership decides whether it is gone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from plexinode.identity import NodeId
from plexinode.shards import audit, pipeline

#: Bytes one challenge makes the challenged holder read and send (its leaves).
CHALLENGE_COST: Final = audit.DEFAULT_LEAVES * pipeline.LEAF_BYTES
#: A failure's weight halves every this many seconds.
HALF_LIFE: Final = 86_400.0
#: The decayed failure score from which a holder counts as failed.
FAILED_SCORE: Final = 0.25
_PICK: Final = b"pxn-audit-pick"


@dataclass(frozen=True, slots=True)
class HeldHome:
    """A home this node holds, as the scheduler needs it.

    Attributes:
        owner: the owner (raw node ID).
        home: the home's backup ID.
        stored: the bytes of it this node stores.
        segments: how many segments the home has (in the manifest kept here).
        holders: (co-holder, share index) pairs the records report, this node excluded.
    """

    owner: bytes
    home: bytes
    stored: int
    segments: int
    holders: tuple[tuple[NodeId, int], ...]


@dataclass(frozen=True, slots=True)
class AuditPick:
    """One challenge to send: share `index` of the home's `segment`-th segment, on `holder`."""

    owner: bytes
    home: bytes
    holder: NodeId
    index: int
    segment: int
    nonce: bytes


@dataclass(slots=True)
class _Failure:
    score: float
    at: float

    def decayed(self, now: float) -> float:
        return self.score * float(0.5 ** (max(0.0, now - self.at) / HALF_LIFE))


@dataclass(slots=True)
class AuditScheduler:
    """Picks challenges within the budget and remembers failures (module docstring)."""

    budget: audit.AuditBudget
    homes: dict[tuple[bytes, bytes], HeldHome] = field(default_factory=dict)
    _last: dict[tuple[bytes, bytes, NodeId, int], float] = field(default_factory=dict)
    _failures: dict[tuple[bytes, bytes, NodeId], _Failure] = field(default_factory=dict)

    @classmethod
    def start(cls, now: float, fraction: float = audit.DAILY_FRACTION) -> AuditScheduler:
        """A scheduler with an empty budget at `now` (it fills as homes are held)."""
        return cls(audit.AuditBudget(stored_bytes=0, now=now, fraction=fraction))

    def update(self, homes: Iterable[HeldHome], now: float) -> None:
        """What this node holds now: the budget's rate follows the bytes stored from `now`;
        what is remembered of homes no longer held is dropped, as are decayed failures."""
        self.budget.refill(now)
        self.homes = {(h.owner, h.home): h for h in homes}
        self.budget.stored_bytes = sum(h.stored for h in self.homes.values())
        pairs = {
            (h.owner, h.home, node, index) for h in self.homes.values() for node, index in h.holders
        }
        self._last = {key: at for key, at in self._last.items() if key in pairs}
        self._failures = {
            key: failure
            for key, failure in self._failures.items()
            if key[:2] in self.homes and failure.decayed(now) >= FAILED_SCORE / 2
        }

    def _pairs(self) -> list[tuple[bytes, bytes, NodeId, int]]:
        return sorted(
            (h.owner, h.home, node, index)
            for h in self.homes.values()
            if h.segments > 0
            for node, index in h.holders
        )

    def ready_at(self, now: float) -> float | None:
        """When the next challenge may be sent (`now` if it may now); None with nothing to
        audit or no budget accruing."""
        if not self._pairs() or self.budget.stored_bytes <= 0:
            return None
        self.budget.refill(now)
        missing = CHALLENGE_COST - self.budget.tokens
        if missing <= 0:
            return now
        rate = self.budget.stored_bytes * self.budget.fraction / audit.DAY
        return now + missing / rate

    def next(self, now: float, nonce: bytes) -> AuditPick | None:
        """The challenge to send now, its cost taken from the budget; None when the budget
        does not have it or there is nothing to audit."""
        pairs = self._pairs()
        if not pairs or not self.budget.spend(now, CHALLENGE_COST):
            return None
        owner, home, node, index = min(pairs, key=lambda key: (self._last.get(key, -1.0), key))
        self._last[owner, home, node, index] = now
        digest = hashlib.blake2b(nonce, digest_size=8, person=_PICK).digest()
        segment = int.from_bytes(digest, "big") % self.homes[owner, home].segments
        return AuditPick(owner, home, node, index, segment, nonce)

    def failed(self, pick: AuditPick, now: float) -> None:
        """`pick`'s holder answered wrong (or not holding what its record says)."""
        key = (pick.owner, pick.home, pick.holder)
        failure = self._failures.get(key)
        score = failure.decayed(now) if failure is not None else 0.0
        self._failures[key] = _Failure(score + 1.0, now)

    def failed_holders(self, owner: bytes, home: bytes, now: float) -> frozenset[NodeId]:
        """The holders of `owner`'s `home` whose failures still count at `now`."""
        return frozenset(
            node
            for (o, h, node), failure in self._failures.items()
            if (o, h) == (owner, home) and failure.decayed(now) >= FAILED_SCORE
        )

    def failed_count(self, now: float) -> int:
        """(home, holder) pairs currently held failed."""
        return sum(1 for f in self._failures.values() if f.decayed(now) >= FAILED_SCORE)
