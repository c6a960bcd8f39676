"""CLI responsiveness: wall time of `plexinode status --json` against a running node.

    python scripts/bench/bench_cli.py [--runs 10]

Starts a real node on 127.0.0.1 in a temporary data dir, runs the command --runs times and
prints the median and max, beside the start-up time of a bare `python -c pass` measured in
the same run (the floor any Python CLI pays). Target: median under 0.5 s.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import header


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    header("CLI responsiveness")
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "node"
        base = [sys.executable, "-m", "plexinode", "--data-dir", str(data_dir)]
        node = subprocess.Popen(
            [*base, "start", "--listen", "127.0.0.1:0"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30
            while subprocess.run([*base, "status"], capture_output=True, check=False).returncode:
                if time.monotonic() > deadline:
                    raise SystemExit("node did not start")
                time.sleep(0.1)
            bare = [timed([sys.executable, "-c", "pass"]) for _ in range(args.runs)]
            status = [timed([*base, "--json", "status"]) for _ in range(args.runs)]
        finally:
            subprocess.run([*base, "stop"], capture_output=True, check=False)
            node.wait(timeout=15)
    med, floor = statistics.median(status), statistics.median(bare)
    print(
        f"plexinode --json status: median {med * 1e3:.0f} ms, max {max(status) * 1e3:.0f} ms "
        f"over {args.runs} runs (target < 500 ms)"
    )
    print(f"python -c pass:          median {floor * 1e3:.0f} ms")
    print(f"ratio status / bare interpreter: {med / floor:.1f}x")


if __name__ == "__main__":
    main()
