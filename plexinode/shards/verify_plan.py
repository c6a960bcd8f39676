"""``backup verify``: which holders to challenge on which shares, and what their answers say.

A backup's segments live in *homes* (the backup under which each was first placed), and every
segment of a home has share index i on the same holder. Verify asks each holder, for each home
and share index it holds, to prove it still has a sample of that share's blocks: a
``shard-challenge`` per sampled segment, naming a few leaves by a fresh nonce
(`audit.challenged_leaves`), answered by the leaves and their Merkle paths, which
`audit.check_proof` checks against the roots in the owner-signed manifest. A holder that does
not answer, says it does not hold the share, or proves something else (wrong bytes, another
block, another backup's data) counts as missing for *every* segment of that home it holds: it
is not trusted with the segments that were not sampled either.

From that, each segment's available shares are n minus the share indices of its home whose
holder failed or that have no holder at all (an index placement could not fill);
`min_available_shares` is the least over the segments, and the backup is ``healthy`` when it is
n, that is when every segment has all n shares reachable. (Below k, a segment cannot be
restored.)

**Sampling.** `SAMPLE_SEGMENTS` (8) segments of each home are challenged per share index, each
for `audit.DEFAULT_LEAVES` (4) leaves of 8 KiB: at most 256 KiB of leaves from a holder per home
(and a Merkle path of at most 10 hashes per leaf), whatever the backup's size, so a verify moves
kilobytes, not the backup, and stays far within a holder's read burst (32 MiB, so it never
meets ``busy`` on its own). The sample and the nonces derive from a 32-byte seed the caller
draws fresh for each verify (BLAKE2b keyed with it), so a holder cannot know beforehand which
segments or leaves will be asked, and this core needs no randomness of its own.

**Detection odds** of one verify, for a holder of a home with at least 8 segments:

- a holder that lost all its blocks of the home (wiped, or its lease dropped) fails every
  challenge: detected always;
- one that lost a fraction f of the blocks (whole blocks) escapes with probability (1 - f)^8:
  1/256 for f = 1/2, 10% for f = 1/4, 43% for f = 1/10. Each verify draws a new sample, so r
  verifies escape with ((1 - f)^8)^r;
- one that kept a fraction g of the leaves of every block answers one challenge with
  probability about g^4 (1/16 for g = 1/2), so it escapes a verify with about g^32;
- a home with fewer than 8 segments has all of them challenged.

Sans-I/O: the driver (`verifying`) sends the challenges and reports each answer.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from plexinode.shards import audit, messages
from plexinode.shards.derive import SEGMENT_ID_BYTES
from plexinode.shards.manifest import Manifest

#: Segments challenged per home and share index (module docstring: cost and odds).
SAMPLE_SEGMENTS: Final = 8
#: Bytes of the seed a verify draws fresh, from which its sample and nonces derive.
SEED_BYTES: Final = 32
_PICK: Final = b"pxn-verify-pick"
_NONCE: Final = b"pxn-verify-nonce"
_U16: Final = struct.Struct(">H")


class Outcome:
    """What a challenge (and a holder, by its first failed challenge) came to."""

    PASSED: Final = "ok"
    #: No stream, a broken one, or no answer before the deadline.
    UNREACHABLE: Final = "unreachable"
    #: The holder says it does not hold the share.
    NOT_HELD: Final = "not_held"
    #: The holder refused to read it now (its per-peer read limit).
    BUSY: Final = "busy"
    #: A proof that does not match the share's root, or an answer that breaks the protocol.
    WRONG: Final = "wrong_proof"


@dataclass(frozen=True, slots=True)
class Challenge:
    """One ``shard-challenge`` to send.

    Attributes:
        node: the holder (raw node ID).
        home: the home the share belongs to.
        index: the share index.
        segment: the segment ID.
        block_size: the size of the segment's blocks.
        root: the share's Merkle root, from the manifest.
        leaves: the leaves asked for.
        nonce: the challenge's nonce.
    """

    node: bytes
    home: bytes
    index: int
    segment: bytes
    block_size: int
    root: bytes
    leaves: tuple[int, ...]
    nonce: bytes


@dataclass(frozen=True, slots=True)
class HolderResult:
    """One holder's part in a verify.

    Attributes:
        node: the holder (raw node ID).
        shares: the share indices it holds of the backup's segments (of any home).
        challenges: how many were sent to it.
        passed: how many it answered with a valid proof.
        outcome: `Outcome.PASSED`, or its first failure's outcome.
        detail: what that failure said, if anything.
    """

    node: bytes
    shares: tuple[int, ...]
    challenges: int
    passed: int
    outcome: str
    detail: str


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The result of a verify.

    Attributes:
        backup_id: the backup.
        k: shares any restore needs.
        n: shares made of each segment.
        available: per segment (stream order), its share indices whose holder passed.
        holders: every holder challenged, in the order of the homes and share indices.
    """

    backup_id: bytes
    k: int
    n: int
    available: tuple[int, ...]
    holders: tuple[HolderResult, ...]

    @property
    def min_available_shares(self) -> int:
        """The fewest shares any segment has reachable (n for a backup of no segments)."""
        return min(self.available, default=self.n)

    @property
    def healthy(self) -> bool:
        """Every segment has all n shares reachable."""
        return self.min_available_shares >= self.n

    @property
    def restorable(self) -> bool:
        """Every segment has at least k shares reachable."""
        return self.min_available_shares >= self.k


def _digest(seed: bytes, person: bytes, data: bytes, size: int) -> bytes:
    return hashlib.blake2b(data, digest_size=size, key=seed, person=person).digest()


def sample(seed: bytes, home: bytes, index: int, count: int, size: int) -> list[int]:
    """`size` distinct positions in range(`count`) (all of them if `count` <= `size`), drawn
    for share `index` of `home` from `seed`, in ascending order."""
    if count <= size:
        return list(range(count))
    chosen: set[int] = set()
    counter = 0
    while len(chosen) < size:
        data = home + bytes([index]) + counter.to_bytes(4, "big")
        chosen.add(int.from_bytes(_digest(seed, _PICK, data, 8), "big") % count)
        counter += 1
    return sorted(chosen)


class VerifyPlan:
    """The challenges of one verify and what came of them (see the module docstring).

    Args:
        manifest: the backup's manifest (checked).
        holders: for each home, share index -> holder (raw node ID); an index outside 0..n-1,
            or a home the manifest does not name, is ignored.
        seed: `SEED_BYTES` fresh random bytes.
        sample_segments: segments challenged per home and share index.
        leaves: leaves asked per challenge.
    """

    def __init__(
        self,
        manifest: Manifest,
        holders: Mapping[bytes, Mapping[int, bytes]],
        seed: bytes,
        *,
        sample_segments: int = SAMPLE_SEGMENTS,
        leaves: int = audit.DEFAULT_LEAVES,
    ) -> None:
        if len(seed) != SEED_BYTES:
            raise ValueError(f"a verify's seed is {SEED_BYTES} bytes")
        if sample_segments < 1:
            raise ValueError("a verify challenges at least one segment per share")
        self.manifest = manifest
        self._home_numbers = [number for (number,) in _U16.iter_unpack(manifest.home_of)]
        firsts: dict[bytes, int] = {}  # distinct segment ID -> its first position
        for position in range(manifest.segment_count):
            at = position * SEGMENT_ID_BYTES
            firsts.setdefault(manifest.identities[at : at + SEGMENT_ID_BYTES], position)
        distinct: dict[int, list[int]] = {}  # home number -> positions of its distinct segments
        for position in firsts.values():
            distinct.setdefault(self._home_numbers[position], []).append(position)
        self._challenges: list[Challenge] = []
        self._shares: dict[tuple[bytes, int], bytes] = {}  # (home, index) -> holder
        for number, home in enumerate(manifest.homes):
            positions = distinct.get(number)
            if positions is None:
                continue  # no segment of this backup lives there
            held = holders.get(home, {})
            for index in sorted(i for i in held if 0 <= i < manifest.n):
                node = held[index]
                self._shares[home, index] = node
                for pick in sample(seed, home, index, len(positions), sample_segments):
                    info = manifest.segment(positions[pick])
                    nonce = _digest(
                        seed,
                        _NONCE,
                        node + home + bytes([index]) + info.identity,
                        audit.NONCE_BYTES,
                    )
                    self._challenges.append(
                        Challenge(
                            node=node,
                            home=home,
                            index=index,
                            segment=info.identity,
                            block_size=info.block_size,
                            root=info.roots[index],
                            leaves=audit.challenged_leaves(nonce, info.block_size, leaves),
                            nonce=nonce,
                        )
                    )
        self._outcomes: dict[Challenge, tuple[str, str]] = {}

    @property
    def challenges(self) -> list[Challenge]:
        """Every challenge, in the order of the homes, share indices and segments."""
        return list(self._challenges)

    def by_holder(self) -> dict[bytes, list[Challenge]]:
        """The challenges grouped by holder (one stream each), holders in first-seen order."""
        grouped: dict[bytes, list[Challenge]] = {}
        for challenge in self._challenges:
            grouped.setdefault(challenge.node, []).append(challenge)
        return grouped

    def answered(self, challenge: Challenge, proof: messages.ShardProof) -> bool:
        """The holder answered `challenge` with `proof`; returns whether the proof holds."""
        valid = audit.check_proof(
            challenge.root, challenge.block_size, challenge.nonce, challenge.leaves, proof
        )
        if valid:
            self._settle(challenge, Outcome.PASSED, "")
        else:
            self._settle(challenge, Outcome.WRONG, "a proof that does not match the share")
        return valid

    def refused(self, challenge: Challenge, reason: str) -> None:
        """The holder refused `challenge` (``shard-reply`` with `reason`)."""
        outcome = Outcome.BUSY if reason == messages.Reason.BUSY else Outcome.NOT_HELD
        self._settle(challenge, outcome, reason)

    def failed(self, node: bytes, outcome: str, detail: str = "") -> None:
        """Every challenge of `node` not yet settled came to `outcome` (its stream failed,
        timed out, or broke the protocol)."""
        for challenge in self._challenges:
            if challenge.node == node:
                self._settle(challenge, outcome, detail)

    def _settle(self, challenge: Challenge, outcome: str, detail: str) -> None:
        self._outcomes.setdefault(challenge, (outcome, detail))

    def report(self) -> VerifyReport:
        """What the verify found; a challenge never settled counts as unreachable."""
        failed_shares: set[tuple[bytes, int]] = set()
        results: dict[bytes, list[tuple[int, str, str]]] = {}
        for challenge in self._challenges:
            outcome, detail = self._outcomes.get(challenge, (Outcome.UNREACHABLE, ""))
            results.setdefault(challenge.node, []).append((challenge.index, outcome, detail))
            if outcome != Outcome.PASSED:
                failed_shares.add((challenge.home, challenge.index))
        failed_homes = {(self._shares[share], share[0]) for share in failed_shares}
        available = {
            number: sum(
                1
                for index in range(self.manifest.n)
                if (home, index) in self._shares
                and (self._shares[home, index], home) not in failed_homes
            )
            for number, home in enumerate(self.manifest.homes)
        }
        holders = []
        for node, answers in results.items():
            failures = [(o, d) for _, o, d in answers if o != Outcome.PASSED]
            outcome, detail = failures[0] if failures else (Outcome.PASSED, "")
            holders.append(
                HolderResult(
                    node=node,
                    shares=tuple(sorted({index for index, _, _ in answers})),
                    challenges=len(answers),
                    passed=len(answers) - len(failures),
                    outcome=outcome,
                    detail=detail,
                )
            )
        return VerifyReport(
            backup_id=self.manifest.backup_id,
            k=self.manifest.k,
            n=self.manifest.n,
            available=tuple(available[number] for number in self._home_numbers),
            holders=tuple(holders),
        )
