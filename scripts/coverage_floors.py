"""Hold a whole-suite run to its coverage floors (run by scripts/test after pytest).

Reads coverage's JSON report and checks, with branches counted as coverage counts them:

1. the product (every module of plexinode/ except the test harness, plexinode/testing/) is at or
   above ``fail_under`` in pyproject.toml's ``[tool.coverage.report]``;
2. every sans-I/O core is at 100% of its lines and of its branches. The cores are the
   ``source_modules`` of the import contract with ``id = "cores"`` in pyproject.toml, so the list
   of what counts as a core is written once, where import-linter also reads it.

The harness is reported on its own line and held to nothing.

Usage: python scripts/coverage_floors.py COVERAGE_JSON
Exit status: 0 when every floor holds, 1 otherwise (one line per failure on stderr).
"""

from __future__ import annotations

import json
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HARNESS = "plexinode/testing/"


@dataclass
class Tally:
    """Statements and branches, covered and in all, of a set of files."""

    statements: int = 0
    covered_statements: int = 0
    branches: int = 0
    covered_branches: int = 0

    def add(self, summary: dict[str, int]) -> None:
        self.statements += summary["num_statements"]
        self.covered_statements += summary["covered_lines"]
        self.branches += summary.get("num_branches", 0)
        self.covered_branches += summary.get("covered_branches", 0)

    @property
    def percent(self) -> float:
        total = self.statements + self.branches
        covered = self.covered_statements + self.covered_branches
        return 100.0 * covered / total if total else 100.0


def core_files(pyproject: dict, files: list[str]) -> dict[str, list[str]]:
    """The measured files of each core module named by the "cores" import contract."""
    contracts = pyproject["tool"]["importlinter"]["contracts"]
    (cores,) = [c for c in contracts if c.get("id") == "cores"]
    found: dict[str, list[str]] = {}
    for module in cores["source_modules"]:
        path = module.replace(".", "/")
        found[module] = [f for f in files if f == f"{path}.py" or f.startswith(f"{path}/")]
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-2], file=sys.stderr)
        return 2
    report = json.loads(Path(argv[1]).read_text())
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    floor = float(pyproject["tool"]["coverage"]["report"]["fail_under"])
    measured = {
        Path(name).resolve().relative_to(ROOT).as_posix(): data["summary"]
        for name, data in report["files"].items()
    }

    product, harness = Tally(), Tally()
    for name, summary in measured.items():
        (harness if name.startswith(HARNESS) else product).add(summary)
    failures = []
    if round(product.percent, 2) < floor:
        failures.append(
            f"product coverage {product.percent:.2f}% is below the floor {floor:g}% "
            "(fail_under in pyproject.toml)"
        )
    for module, names in core_files(pyproject, sorted(measured)).items():
        if not names:
            failures.append(f"core {module} was not measured (no such module, or never imported)")
        for name in names:
            summary = measured[name]
            missing = summary["missing_lines"]
            partial = summary.get("missing_branches", 0)
            if missing or partial:
                failures.append(
                    f"core {name} is not fully covered: {missing} lines and {partial} branches "
                    "missed (`coverage report -m` shows which)"
                )
    print(
        f"coverage: product {product.percent:.2f}% (floor {floor:g}%), "
        f"harness plexinode/testing/ {harness.percent:.2f}% (not counted)",
        file=sys.stderr,
    )
    for failure in failures:
        print(f"scripts/test: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
