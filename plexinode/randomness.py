"""The randomness a sans-I/O core is handed, as a Protocol.

Cores never import `random`: the driver passes in a generator (a seeded `random.Random` in
simulations, so that a run replays from its seed), and the core names only the calls it makes.
`random.Random` satisfies this Protocol as it is.
"""

from __future__ import annotations

from collections.abc import MutableSequence, Sequence
from typing import Protocol, TypeVar

T = TypeVar("T")


class Rng(Protocol):
    """The calls that cores make on a random number generator."""

    def random(self) -> float:
        """A float in [0, 1)."""
        ...

    def getrandbits(self, k: int, /) -> int:
        """An integer of `k` random bits."""
        ...

    def shuffle(self, x: MutableSequence[T], /) -> None:
        """Shuffle `x` in place."""
        ...

    def sample(self, population: Sequence[T], k: int) -> list[T]:
        """`k` distinct elements of `population`."""
        ...
