"""Real `plexinode` processes on 127.0.0.1, each with its own data dir, driven by the CLI.

:class:`NodeProcess` runs ``plexinode start`` in a process of its own; :func:`cli` and
:func:`cli_json` run one CLI command against a node's data dir. The end-to-end tests
(``tests/e2e``, whose ``start_node`` fixture kills every node a test started) and
``scripts/bench/bench_processes.py`` share them.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

#: Generous: CI machines are small and shared; nothing here is a performance assertion.
START_TIMEOUT = 30.0
#: The ID puzzle of the processes' network: real, but small (256 key pairs) so that the many
#: nodes these tests start do not each spend seconds on it. Tests may override it via `env`.
ID_DIFFICULTY = "8"


def node_env(env: dict[str, str] | None) -> dict[str, str]:
    """`env` (default: ours) with the tests' ID difficulty, unless it sets one itself."""
    merged = dict(os.environ if env is None else env)
    merged.setdefault("PLEXINODE_DHT_ID_DIFFICULTY", ID_DIFFICULTY)
    return merged


def cli(
    data_dir: Path, *args: str, timeout: float = 60.0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `plexinode --data-dir DATA_DIR ARGS...` and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "plexinode", "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=node_env(env),
        check=False,
    )


def cli_json(data_dir: Path, *args: str) -> Any:
    """Run a command with --json; fail the test if it does not exit 0."""
    result = cli(data_dir, "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


class NodeProcess:
    """A running `plexinode start`."""

    def __init__(self, data_dir: Path, *extra: str, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.log_path = data_dir.parent / f"{data_dir.name}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "plexinode",
                "--data-dir",
                str(data_dir),
                "--json",
                "start",
                "--listen",
                "127.0.0.1:0",
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=node_env(env),
        )
        self.address = ""
        self.node_id = ""

    def wait_ready(self) -> NodeProcess:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"node exited with {self.proc.returncode}: {self.log()}")
            result = cli(self.data_dir, "--json", "status")
            if result.returncode == 0:
                doc = json.loads(result.stdout)
                self.address, self.node_id = doc["address"], doc["node_id"]
                return self
            time.sleep(0.1)
        raise AssertionError(f"node did not become ready: {self.log()}")

    def ready_line(self, timeout: float = START_TIMEOUT) -> dict[str, Any]:
        """The ready line ``start --json`` prints once the node serves and, with
        ``--join-file``, has joined (the admin socket answers before that)."""
        assert self.proc.stdout is not None
        text = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            readable, _, _ = select.select([self.proc.stdout], [], [], 1.0)
            if readable:
                # The raw descriptor: a buffered readline could hide the rest in its buffer.
                text += os.read(self.proc.stdout.fileno(), 65536)
                try:
                    doc: dict[str, Any] = json.loads(text)
                except ValueError:
                    continue
                return doc
        raise AssertionError(f"no ready line within {timeout:.0f}s: {self.log()}")

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_exit(self, timeout: float = 10.0) -> int:
        code = self.proc.wait(timeout=timeout)
        self._log.close()
        return code

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=10)
        self._log.close()


def environ(**extra: str) -> dict[str, str]:
    """The current environment plus `extra`."""
    env = dict(os.environ)
    env.update(extra)
    return env
