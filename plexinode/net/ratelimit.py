"""Token-bucket rate limits keyed by peer (sans-I/O).

Each key (a node ID, a host, a pair of them) has a bucket of at most `burst` tokens that refills
at `rate` tokens per second; an event that finds a token takes it and is allowed, any other is
refused. Over any interval of t seconds a key is therefore allowed at most ``burst + rate * t``
events, and a key that stays under `rate` is never refused.

Memory is bounded: at most `max_keys` buckets are kept, the least recently used forgotten first.
A forgotten key starts again with a full bucket, so an attacker who cycles through more keys
than that gains at most one burst per key per cycle; that is the price of bounded state, and
callers pick `max_keys` well above the number of peers a node talks to.
"""

from __future__ import annotations

import collections
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

_EPSILON = 1e-9


class TokenBuckets(Generic[K]):
    """Per-key token buckets with a shared rate and burst."""

    __slots__ = ("_buckets", "burst", "max_keys", "rate")

    def __init__(self, rate: float, burst: float, *, max_keys: int = 4096) -> None:
        if rate < 0 or burst < 1 or max_keys < 1:
            raise ValueError("rate must be >= 0, burst >= 1 and max_keys >= 1")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        # key -> [tokens, time of the last update]; most recently used last.
        self._buckets: collections.OrderedDict[K, list[float]] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def would_allow(self, key: K, now: float, cost: float = 1.0) -> bool:
        """Whether :meth:`allow` would, without taking anything: for a check that must come
        before expensive work whose outcome decides whether the event counts at all."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return self.burst >= cost - _EPSILON
        tokens = min(self.burst, bucket[0] + max(0.0, now - bucket[1]) * self.rate)
        return tokens >= cost - _EPSILON

    def allow(self, key: K, now: float, cost: float = 1.0) -> bool:
        """Take `cost` tokens from `key`'s bucket if it has them; True if it had."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = [float(self.burst), now]
            self._buckets[key] = bucket
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            elapsed = now - bucket[1]
            if elapsed > 0:
                bucket[0] = min(self.burst, bucket[0] + elapsed * self.rate)
                bucket[1] = now
        if bucket[0] >= cost - _EPSILON:  # refills are floats: i / rate * rate may be 0.999...
            bucket[0] = max(0.0, bucket[0] - cost)
            return True
        return False
