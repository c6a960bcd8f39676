"""The test harness the suite and scripts/bench/ share: the in-memory network, MockClock helpers,
simulation scenarios and fuzz generators. Production code never imports it (an import-linter
contract in pyproject.toml).
"""
