"""Suite-wide test configuration."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import coverage
import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the `long` simulations first: with one worker per core (scripts/test), each starts
    right away on a worker of its own while the other workers share out the rest."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)


@pytest.fixture(autouse=True)
def _long_simulations_run_untraced(request: pytest.FixtureRequest) -> Iterator[None]:
    """Pause coverage during `long` simulations: they run the code the short tests cover, at
    scale, and line tracing would make them the slowest part of the suite by far (about
    twice as slow). Every other test is measured as usual. An xdist worker can hold more than
    one active ``Coverage`` (pytest-cov's and the subprocess patch's): all are paused."""
    paused: list[coverage.Coverage] = []
    if request.node.get_closest_marker("long") is not None:
        while (active := coverage.Coverage.current()) is not None and len(paused) < 8:
            active.stop()
            paused.append(active)
    try:
        yield
    finally:
        for active in reversed(paused):
            active.start()


@pytest.fixture(autouse=True)
def _logging_left_as_found() -> Iterator[None]:
    """Restore the ``plexinode`` logger after each test: a command run in this process (as
    `start`'s tests do) sets up logging, and its handler and level would otherwise reach every
    later test of the worker, whose output some tests count line by line."""
    root = logging.getLogger("plexinode")
    saved = (list(root.handlers), root.level, root.propagate)
    try:
        yield
    finally:
        root.handlers[:], root.level, root.propagate = saved[0], saved[1], saved[2]
