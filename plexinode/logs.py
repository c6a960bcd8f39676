"""Logging set-up for the CLI: text or one JSON object per line, on stderr or in a file."""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import sys
import time
from pathlib import Path
from typing import Any

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message (+ exception)."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


class _TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{stamp}.{int(record.msecs):03d}Z"


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record is emitted, not when it was made: a
    process that replaces stderr (a test capturing output, a daemon redirecting it) never
    leaves this handler writing to a closed stream."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def setup_logging(level: str = "info", fmt: str = "text", file: Path | None = None) -> None:
    """Send the ``plexinode`` loggers to stderr, or appended to `file`, at `level` in format
    `fmt`.

    A new `file` is created with mode 0600. It is reopened when it is moved or removed
    (``WatchedFileHandler``), so that logrotate can rotate it without ``copytruncate``.

    Raises:
        OSError: `file` cannot be opened for appending.
    """
    handler: logging.Handler
    if file is None:
        handler = _StderrHandler()
    else:
        os.close(os.open(file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600))
        handler = logging.handlers.WatchedFileHandler(file, encoding="utf-8")
    handler.setFormatter(JsonFormatter() if fmt == "json" else _TextFormatter())
    root = logging.getLogger("plexinode")
    for old in root.handlers:
        old.close()  # a file it had open (closing a stream handler leaves stderr open)
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
