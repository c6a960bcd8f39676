#!/usr/bin/env python3
"""Add up the per-seed lines of the false-positive benchmark (bench_membership.py falsepos).

Reads docs/bench-results/membership-falsepos-n200.txt (or the file given) and prints, for the
batch that counts (the first section, whose heading says "these count"), the seeds covered,
the stalls, the healthy nodes declared dead and the suspicions with Lifeguard and with plain
SWIM, and the seeds in which any death occurred. A seed listed twice is an error: every seed
must count once.

Usage: scripts/bench/falsepos_totals.py [RESULTS_FILE]
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

LINE = re.compile(
    r"^seed (\d+): lifeguard (\d+) dead, (\d+) suspected; "
    r"swim (\d+) dead, (\d+) suspected; \(stalls (\d+)\)$"
)
DEFAULT = Path(__file__).resolve().parents[2] / "docs/bench-results/membership-falsepos-n200.txt"


def counted_lines(text: str) -> list[tuple[int, ...]]:
    """The parsed seed lines of the first section whose heading says they count."""
    rows: list[tuple[int, ...]] = []
    inside = False
    for line in text.splitlines():
        if line.startswith("#"):
            if inside and rows:
                break  # the next section's heading
            if "these count" in line:
                inside = True
            continue
        match = LINE.match(line.strip())
        if inside and match:
            rows.append(tuple(int(g) for g in match.groups()))
    return rows


def ranges(seeds: list[int]) -> str:
    """1, 2, 3, 7 -> '1-3, 7'."""
    spans: list[list[int]] = []
    for seed in sorted(seeds):
        if spans and seed == spans[-1][1] + 1:
            spans[-1][1] = seed
        else:
            spans.append([seed, seed])
    return ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in spans)


def where(seeds: list[int]) -> str:
    """' in seeds 3, 7' for the seeds with a death, or nothing when there are none."""
    return f" in seeds {', '.join(map(str, seeds))}" if seeds else ""


def main() -> int:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    rows = counted_lines(path.read_text())
    if not rows:
        print(f"{path}: no counted seed lines", file=sys.stderr)
        return 1
    seeds = [row[0] for row in rows]
    repeated = sorted(s for s, times in Counter(seeds).items() if times > 1)
    if repeated:
        print(f"{path}: seeds listed twice: {repeated}", file=sys.stderr)
        return 1
    lg_dead = sum(row[1] for row in rows)
    lg_susp = sum(row[2] for row in rows)
    swim_dead = sum(row[3] for row in rows)
    swim_susp = sum(row[4] for row in rows)
    stalls = sum(row[5] for row in rows)
    lg_seeds = [row[0] for row in rows if row[1]]
    swim_seeds = [row[0] for row in rows if row[3]]
    print(f"seeds: {ranges(seeds)} ({len(seeds)})")
    print(f"stalls: {stalls:,}")
    print(f"lifeguard: {lg_dead} dead{where(lg_seeds)}; {lg_susp:,} suspicions")
    print(f"swim: {swim_dead} dead{where(swim_seeds)}; {swim_susp:,} suspicions")
    print(
        f"| ... | {ranges(seeds)} ({len(seeds)}) | {stalls:,} | **{lg_dead}** | "
        f"{swim_dead} | {lg_susp:,} | {swim_susp:,} |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
