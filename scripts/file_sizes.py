"""Hold the rule that one source file holds one idea: at most two product files over 500 lines.

    python scripts/file_sizes.py

The product is ``plexinode/`` without the test harness (``plexinode/testing/``). A file past
500 lines usually holds a driver that grew protocol logic, which belongs in a core of its own
(docs/architecture.md). The files allowed past it are listed below, each opening with why it is
one idea; a third one fails, naming every file over the limit.
"""

from __future__ import annotations

import sys
from pathlib import Path

LIMIT = 500
#: The files allowed past the limit, each one idea that does not split well.
ALLOWED = frozenset({"plexinode/dht/routing.py", "plexinode/dht/lookup.py"})


def main() -> int:
    root = Path(__file__).resolve().parents[1]
    over = {}
    for path in sorted((root / "plexinode").rglob("*.py")):
        relative = path.relative_to(root).as_posix()
        if relative.startswith("plexinode/testing/"):
            continue
        lines = len(path.read_text().splitlines())
        if lines > LIMIT:
            over[relative] = lines
    unexpected = {name: lines for name, lines in over.items() if name not in ALLOWED}
    if unexpected:
        for name, lines in unexpected.items():
            print(f"{name}: {lines} lines (more than {LIMIT}; split it by idea)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
