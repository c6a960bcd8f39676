"""Lifeguard's suspicion timeout (section 4.2): how long a suspect has to refute, sans-I/O.

A suspect member is declared dead after

    ``timeout(C) = max(min, max - (max - min) * log(C + 1) / log(K + 1))``

seconds, where C is the number of distinct members other than the first accuser that suspected
it too (up to K, the confirmations expected). The member table sets the bounds:
``min = suspicion_mult * log10(max(N, 1)) * probe_interval`` grows with the network size N
because gossip takes longer to reach everyone (and the accused longer to hear and refute), and
``max = suspicion_max_mult * min``: a lone accuser, who may be the one in trouble, waits the
longest, while independent confirmations bring the timeout down to the floor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from plexinode.identity import NodeId


def suspicion_timeout(confirmations: int, minimum: float, maximum: float, expected: int) -> float:
    """Lifeguard's suspicion timeout after `confirmations` independent suspicions.

    Args:
        confirmations: Distinct members other than the first accuser that suspected it too.
        minimum: The floor, reached with `expected` confirmations.
        maximum: The timeout with no confirmation.
        expected: K, the confirmations after which the floor applies (0: always the floor).
    """
    if expected <= 0 or confirmations >= expected:
        return minimum
    fraction = math.log(confirmations + 1) / math.log(expected + 1)
    return max(minimum, maximum - (maximum - minimum) * fraction)


@dataclass(slots=True)
class Suspicion:
    """One member's suspicion, as the member table holds it.

    Attributes:
        started: When it was first suspected (the caller's clock).
        minimum: The timeout's floor.
        maximum: The lone accuser's timeout.
        expected: K, the confirmations that bring the timeout down to the floor.
        accusers: The distinct members that suspected it (the first accuser included).
        last_call_until: Set once the time ran out and the driver gave the suspect a last call:
            the verdict waits until then.
    """

    started: float
    minimum: float
    maximum: float
    expected: int
    accusers: set[NodeId]
    last_call_until: float | None = None

    def deadline(self) -> float:
        """When the suspect is declared dead, if nothing changes."""
        if self.last_call_until is not None:
            return self.last_call_until
        confirmations = len(self.accusers) - 1
        return self.started + suspicion_timeout(
            confirmations, self.minimum, self.maximum, self.expected
        )
