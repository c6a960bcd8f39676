"""Which holders a restore asks for a segment's blocks: the fastest ones, k at a time.

Any k shares of a segment decode it, and each share index has a holder (sometimes several,
while repair moves one). A restore wants the k that answer soonest, so `FetchPlan` keeps a
smoothed round-trip time per holder (an exponentially weighted mean of block fetch times, as
TCP smooths its RTT) and picks, for each segment, the k share indices whose holders are
fastest, never two from one holder (a holder's blocks arrive one after another on its stream,
so two from it are slower than one each from two holders, and a holder that fails takes only
one block with it). Holders not measured yet rank by the median of those that are, so a new
holder gets tried without being assumed best or worst. A holder's time is weighed by the
fetches it has in flight (`started`, `finished`): a restore fetches several segments at once,
and a holder's blocks queue on its stream, so the fastest holder with three requests waiting
ranks behind an idle one a little slower, and the load spreads over the holders rather than
piling on the k fastest. A holder that fails (unreachable, not holding it, a corrupt block) is
avoided for the rest of the restore.

Sans-I/O: the driver reports times and failures and asks for choices.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Final

#: Weight of a new sample in the smoothed time (TCP's SRTT uses 1/8).
ALPHA: Final = 0.125
#: Time assumed for a holder when nothing has been measured at all.
DEFAULT_RTT: Final = 0.05


class FetchPlan:
    """Chooses holders for a restore.

    Args:
        holders: for each share index, the nodes that hold it.
    """

    def __init__(self, holders: Mapping[int, Iterable[bytes]]) -> None:
        self._holders = {index: list(nodes) for index, nodes in holders.items()}
        self._rtt: dict[bytes, float] = {}
        self._failed: set[bytes] = set()
        self._in_flight: Counter[bytes] = Counter()

    def started(self, holder: bytes) -> None:
        """A fetch from `holder` is under way."""
        self._in_flight[holder] += 1

    def finished(self, holder: bytes) -> None:
        """A fetch from `holder` ended (with a block or not)."""
        self._in_flight[holder] -= 1
        if self._in_flight[holder] <= 0:
            del self._in_flight[holder]

    def measured(self, holder: bytes, seconds: float) -> None:
        """A block fetch from `holder` took `seconds`."""
        old = self._rtt.get(holder)
        self._rtt[holder] = seconds if old is None else old + ALPHA * (seconds - old)

    def failed(self, holder: bytes) -> None:
        """`holder` failed: do not ask it again in this restore."""
        self._failed.add(holder)

    def rtt(self, holder: bytes) -> float:
        """The holder's smoothed time, or the median of the measured ones if it has none."""
        known = self._rtt.get(holder)
        if known is not None:
            return known
        return statistics.median(self._rtt.values()) if self._rtt else DEFAULT_RTT

    def choose(self, k: int, excluded: Iterable[int] = ()) -> list[tuple[int, bytes]]:
        """Up to k (share index, holder) pairs to ask, fastest first, one per holder.

        Share indices in `excluded` (they failed for this segment) are not chosen. Fewer than k
        pairs means the segment cannot be fetched from the holders left.
        """
        skip = set(excluded)
        options = sorted(
            (self.rtt(node) * (1 + self._in_flight[node]), index, node)
            for index, nodes in self._holders.items()
            if index not in skip
            for node in nodes
            if node not in self._failed
        )
        chosen: list[tuple[int, bytes]] = []
        used_nodes: set[bytes] = set()
        used_indices: set[int] = set()
        for _, index, node in options:
            if node in used_nodes or index in used_indices:
                continue
            chosen.append((index, node))
            used_nodes.add(node)
            used_indices.add(index)
            if len(chosen) == k:
                break
        return chosen
