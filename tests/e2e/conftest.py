"""Real `plexinode` processes on 127.0.0.1 (plexinode.testing.processes): the fixture that
starts them and kills them at the end of each test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from plexinode.testing.processes import NodeProcess


@pytest.fixture
def start_node(tmp_path: Path) -> Iterator[Any]:
    """Start nodes named by data dir; all are killed at the end of the test."""
    nodes: list[NodeProcess] = []

    def start(
        name: str, *extra: str, env: dict[str, str] | None = None, wait: bool = True
    ) -> NodeProcess:
        node = NodeProcess(tmp_path / name, *extra, env=env)
        nodes.append(node)
        return node.wait_ready() if wait else node

    yield start
    for node in nodes:
        node.kill()
