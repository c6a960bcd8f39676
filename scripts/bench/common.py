"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import math
import os
import platform
import sys
import time
from collections.abc import Callable

# Simulations iterate over sets of node IDs, whose order follows the interpreter's hash seed:
# run every benchmark under a fixed one, so that a seed printed here replays exactly.
if os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable, *sys.argv])


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by nearest rank; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def per_op(fn: Callable[[], object], n: int) -> float:
    """Seconds per call of `fn`, best of 3 runs of `n` calls (the least disturbed run)."""
    best = math.inf
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - start) / n)
    return best


def rss_bytes() -> int:
    """Resident set size of this process (Linux)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def header(title: str) -> None:
    """Print what ran where."""
    print(f"# {title}")
    print(f"# python {sys.version.split()[0]} on {platform.machine()} {platform.system()}")
