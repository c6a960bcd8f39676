"""Suite-wide test configuration."""

from __future__ import annotations

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
