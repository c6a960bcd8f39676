"""Check that a benchmark scenario replays from its seed under any hash seed.

The suite checks one CI-size simulation this way (tests/sim/test_replay.py); the long
benchmark scenarios are too slow for the suite, so this runs one of them twice, under
``PYTHONHASHSEED=1`` and ``PYTHONHASHSEED=2``, and compares everything it printed except the
lines that report the run itself (``# ...``: the command, CPU time, memory). Usage, for the
slowest scenario (one false-positive seed at N = 200, about 6 minutes of CPU per run)::

    .venv/bin/python scripts/bench/replay_check.py -- \\
        scripts/bench/bench_membership.py --scenario falsepos --nodes 200 --seeds 1 --first-seed 21

Exit status 0 when both runs printed the same results, 1 (with a diff) otherwise.
"""

from __future__ import annotations

import difflib
import os
import subprocess
import sys
import time


def run(command: list[str], hash_seed: str) -> list[str]:
    env = dict(os.environ, PYTHONHASHSEED=hash_seed)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, *command], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        sys.exit(f"replay_check: the run under PYTHONHASHSEED={hash_seed} failed:\n{done.stderr}")
    print(f"# PYTHONHASHSEED={hash_seed}: {time.monotonic() - started:.0f} s", flush=True)
    return [line for line in done.stdout.splitlines() if not line.startswith("#")]


def main(argv: list[str]) -> int:
    if "--" not in argv or argv.index("--") == len(argv) - 1:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    command = argv[argv.index("--") + 1 :]
    first = run(command, "1")
    second = run(command, "2")
    if first != second:
        diff = difflib.unified_diff(first, second, "hash seed 1", "hash seed 2", lineterm="")
        sys.stdout.writelines(line + "\n" for line in diff)
        print("replay_check: the two runs differ")
        return 1
    print(f"replay_check: {len(first)} result lines, identical under hash seeds 1 and 2")
    print("\n".join(first))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
