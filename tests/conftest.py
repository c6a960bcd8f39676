"""Suite-wide test configuration."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the `long` simulations first: with one worker per core (scripts/test), each starts
    right away on a worker of its own while the other workers share out the rest."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)
