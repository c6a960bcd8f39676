"""How the text output shows values: sizes, durations, times, short IDs, tables that fit."""

from __future__ import annotations

import time

import pytest

from plexinode.cli.readable import WIDTH, ago, duration, local_time, short_ids, size, table


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (48 * 1024 + 300, "48.3 KiB"),
        (10 * 1024**3, "10.0 GiB"),
        (1024**2 - 1, "1.0 MiB"),  # not "1024.0 KiB"
        (3 * 1024**6, "3.0 EiB"),
    ],
)
def test_sizes_in_binary_units(n: int, text: str) -> None:
    assert size(n) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.9, "0s"),
        (45, "45s"),
        (60, "1m"),
        (192, "3m12s"),
        (3600, "1h"),
        (2 * 3600 + 59 * 60 + 59, "2h59m"),
        (86_400, "1d"),
        (3 * 86_400 + 4 * 3600 + 5, "3d4h"),
        (-5, "0s"),
    ],
)
def test_durations_in_their_two_largest_units(seconds: float, text: str) -> None:
    assert duration(seconds) == text


def test_times_ago_then_local() -> None:
    now = 1_700_000_000.0
    assert ago(now, now) == "just now"
    assert ago(now - 12.7, now) == "12 s ago"
    assert ago(now - 180, now) == "3 min ago"
    assert ago(now - (2 * 3600 + 59 * 60), now) == "2h59m ago"
    assert ago(now + 120, now) == "in 2 min"  # another machine's clock runs ahead
    old = now - 30 * 86_400
    assert ago(old, now) == local_time(old)
    assert local_time(old) == time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(old))


def test_short_ids_are_8_characters_unless_two_shown_ones_share_them() -> None:
    a, b, c = "abcdefghij" + "x" * 48, "abcdefghik" + "y" * 48, "zzzzzzzz" + "z" * 50
    assert short_ids([a, c]) == {a: a[:8], c: c[:8]}
    assert short_ids([a, b, c, a]) == {a: a[:10], b: b[:10], c: c[:10]}
    assert short_ids([]) == {}


def test_tables_align_cells_of_several_lines() -> None:
    text = table([["n1", "role=a\nsite=b"], ["n2", "-"]], ["node", "tags"])
    assert text.split("\n") == [
        "node  tags",
        "n1    role=a",
        "      site=b",
        "n2    -",
    ]


def test_tables_fit_the_width_by_cutting_the_columns_named() -> None:
    rows = [["x" * 30, "y" * 80, "z"]]
    text = table(rows, ["a", "b", "c"], shrink=(1,))
    lines = text.split("\n")
    assert max(map(len, lines)) == WIDTH
    assert lines[1].startswith("x" * 30 + "  " + "y" * 64 + "…  z")
    # By default the last column gives way.
    lines = table([["x" * 30, "y" * 80]], ["a", "b"]).split("\n")
    assert max(map(len, lines)) == WIDTH
    assert lines[1].endswith("…")
    # A column is never cut below its header: the table is wider than asked instead.
    assert table([["x" * 20, "long"]], ["a", "bbbb"], width=10).split("\n")[1] == (
        "x" * 20 + "  long"
    )


def test_a_column_at_its_floor_leaves_the_cutting_to_the_others() -> None:
    lines = table([["x" * 60, "y" * 60]], ["a", "b"], shrink=(0, 1)).split("\n")
    assert max(map(len, lines)) == WIDTH
    lines = table([["abc", "y" * 120]], ["abc", "b"], shrink=(0, 1)).split("\n")
    assert lines[1].startswith("abc  " + "y" * 10)
    assert max(map(len, lines)) == WIDTH


def test_when_cutting_to_a_floor_is_not_enough_the_widest_give_way_down_to_their_headers() -> None:
    lines = table([["x" * 50, "y" * 50, "z" * 90]], ["a", "b", "c"], shrink=(0, 1)).split("\n")
    assert max(map(len, lines)) == WIDTH
    assert lines[1].endswith("z" * 90)
    assert len(lines[1].split()[0]) == len(lines[1].split()[1]) == 3  # "xx…", "yy…"
