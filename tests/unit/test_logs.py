"""Logging set-up: records go to the stderr of the moment they are emitted."""

from __future__ import annotations

import io
import logging
import sys

import pytest

from plexinode.logs import setup_logging


def test_a_replaced_stderr_is_followed_and_a_closed_one_is_never_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    setup_logging()
    log = logging.getLogger("plexinode.test")
    log.info("one")
    assert first.getvalue().endswith("plexinode.test: one\n")
    first.close()  # a test's captured stream, gone
    second = io.StringIO()
    monkeypatch.setattr(sys, "stderr", second)
    log.info("two")
    assert second.getvalue().endswith("plexinode.test: two\n")
    assert "Logging error" not in second.getvalue()
    handler = logging.getLogger("plexinode").handlers[0]
    handler.stream = io.StringIO()  # setting it (as logging may) changes nothing
    assert handler.stream is second
