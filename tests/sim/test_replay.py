"""A simulation replays from its seed alone, whatever Python's hash seed.

Sets of node IDs iterate in an order that follows ``PYTHONHASHSEED``; wherever that order could
steer a node (whom to probe, which contact to ask, which claims to send first), the code
iterates in a defined order instead. This runs one CI-size simulation of full nodes
(plexinode/testing/replay.py) in two processes with different hash seeds and compares every
view, lookup result and counter it ended with.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

SEED = 7
_PROGRAM = (
    "import json, sys\n"
    "from plexinode.testing.replay import run\n"
    f"json.dump(run({SEED}), sys.stdout, sort_keys=True)\n"
)


def _outcome(hash_seed: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PLEXINODE_", "COV_"))}
    env["PYTHONHASHSEED"] = hash_seed
    done = subprocess.run(
        [sys.executable, "-c", _PROGRAM],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.mark.long
def test_a_simulation_replays_under_two_hash_seeds() -> None:
    first = _outcome("1")
    second = _outcome("2")
    # The simulation did something worth comparing: the survivors know each other and the two
    # that went away, and every lookup found nodes.
    live = first["views"]
    assert len(live) == first["nodes"] - 2
    for view in live.values():
        states = [state for _, state, _ in view]
        assert states.count("ALIVE") == first["nodes"] - 2
        assert len(view) == first["nodes"]
    assert all(first["lookups"].values())
    for key in first:
        assert first[key] == second[key], f"{key} differs between hash seeds 1 and 2"
