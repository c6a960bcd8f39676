"""The backup commands' CLI (against a stub admin socket) and their admin arguments."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from plexinode.admin.backup_fields import (
    BackupCreateRequest,
    BackupIdRequest,
    BackupRestoreRequest,
    BackupShown,
    BackupVerified,
)
from plexinode.admin.client import AdminClient
from plexinode.cli.progress import BAR, PLAIN, ProgressView, bar_line, plain_line, view_for
from plexinode.errors import AdminError
from plexinode.shards.progress import BACKUP, CHALLENGES, RESTORE, VERIFY, Progress
from tests.unit.test_cli_node_commands import Stub, run

ID = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def stub(tmp_path: Path) -> Iterator[Stub]:
    (tmp_path / "node").mkdir(mode=0o700)
    with Stub(tmp_path / "node") as running:
        yield running


HOLDER = "a" * 58
CREATED = {
    "backup_id": ID,
    "bytes": 3 << 20,
    "k": 2,
    "n": 4,
    "holders": [HOLDER],
    "happy": 3,
    "segments": 3,
    "bytes_sent": 6 << 20,
    "lost_indices": [],
}
SHOWN = {
    "backup_id": ID,
    "name": "photos",
    "source": "/home/me/photos",
    "bytes": 3 << 20,
    "created": 1_700_000_000.0,
    "k": 2,
    "n": 4,
    "happy": 3,
    "segments": 3,
    "holders": [HOLDER],
    "lease_expires": 1_702_592_000.0,
}


def test_create_sends_an_absolute_path_and_prints_what_it_did(
    stub: Stub, capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "photos").mkdir()
    monkeypatch.chdir(tmp_path)
    stub.answers["backup_create"] = lambda args: CREATED
    code, out, _ = run(
        capsys,
        stub,
        "backup",
        "create",
        "photos",
        "-k",
        "2",
        "-n",
        "4",
        "--happy",
        "3",
        "--name",
        "p",
    )
    assert code == 0
    assert out.startswith(f"backup {ID}: 3.0 MiB in 3 segments, 2 of 4 shares on 1 holders")
    name, args = stub.calls[-1]
    assert (name, args) == (
        "backup_create",
        {"path": str(tmp_path / "photos"), "k": 2, "n": 4, "happy": 3, "name": "p"},
    )
    code, out, _ = run(capsys, stub, "backup", "create", "photos", "--json")
    assert json.loads(out) == CREATED


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (("-k", "5", "-n", "4"), "must not exceed"),
        (("-k", "2", "-n", "4", "--happy", "1"), "within k..n"),
        (("-n", "0"), "1<=x<=256"),
    ],
)
def test_create_refuses_codes_before_asking_the_node(
    stub: Stub, capsys, tmp_path: Path, argv: tuple[str, ...], words: str
) -> None:
    code, _, err = run(capsys, stub, "backup", "create", str(tmp_path), *argv)
    assert code == 2
    assert words in err
    assert not [c for c in stub.calls if c[0] == "backup_create"]


def test_list_show_restore_rm(stub: Stub, capsys, tmp_path: Path) -> None:
    stub.answers["backup_list"] = lambda args: []
    assert run(capsys, stub, "backup", "list")[1] == "no backups\n"
    row = {k: SHOWN[k] for k in ("backup_id", "name", "bytes", "created", "k", "n")}
    stub.answers["backup_list"] = lambda args: [row]
    code, out, _ = run(capsys, stub, "backup", "list")
    assert code == 0
    assert out.split("\n")[1].split()[:5] == [ID[:12], "photos", "3.0", "MiB", "2/4"]
    stub.answers["backup_show"] = lambda args: SHOWN
    code, out, _ = run(capsys, stub, "backup", "show", ID[:8])
    assert "code      2 of 4 shares, happiness 3" in out
    assert stub.calls[-1] == ("backup_show", {"backup_id": ID[:8]})
    restored = {
        "backup_id": ID,
        "path": str(tmp_path / "out"),
        "bytes": 10,
        "missing_segments": [1],
        "damaged": ["a", "b"],
    }
    stub.answers["backup_restore"] = lambda args: restored
    code, out, _ = run(capsys, stub, "backup", "restore", ID, str(tmp_path / "out"), "--partial")
    assert out == f"restored 10 B to {tmp_path / 'out'}; left out 2 files: a, b\n"
    assert stub.calls[-1][1]["partial"] is True
    stub.answers["backup_restore"] = lambda args: {
        **restored,
        "damaged": [],
        "missing_segments": [],
    }
    code, out, _ = run(capsys, stub, "backup", "restore", ID, str(tmp_path / "out2"))
    assert out == f"restored 10 B to {tmp_path / 'out'}\n"
    code, _, err = run(capsys, stub, "backup", "restore", ID, str(tmp_path))
    assert code == 2
    assert "already exists" in err
    stub.answers["backup_rm"] = lambda args: {"removed": True, "backup_id": ID, "holders_told": 4}
    code, out, _ = run(capsys, stub, "backup", "rm", ID, "--json")
    assert json.loads(out) == {"removed": True, "backup_id": ID}


OTHER = "b" * 58
VERIFIED = {
    "backup_id": ID,
    "healthy": True,
    "min_available_shares": 4,
    "k": 2,
    "n": 4,
    "restorable": True,
    "segments": 3,
    "short_segments": 0,
    "holders": [
        {
            "node_id": HOLDER,
            "shares": [0],
            "challenges": 3,
            "passed": 3,
            "result": "ok",
            "detail": "",
        }
    ],
}


def test_verify(stub: Stub, capsys) -> None:
    stub.answers["backup_verify"] = lambda args: VERIFIED
    code, out, _ = run(capsys, stub, "backup", "verify", ID[:8])
    assert code == 0
    assert stub.calls[-1] == ("backup_verify", {"backup_id": ID[:8]})
    lines = out.splitlines()
    assert lines[0] == f"backup {ID}: healthy: every segment has all 4 shares reachable (k = 2)"
    assert lines[2].split() == [HOLDER[:8], "0", "3/3", "ok"]
    code, out, _ = run(capsys, stub, "backup", "verify", ID, "--json")
    assert json.loads(out) == VERIFIED
    assert list(json.loads(out))[:5] == ["backup_id", "healthy", "min_available_shares", "k", "n"]

    gone = {
        "node_id": OTHER,
        "shares": [1, 3],
        "challenges": 6,
        "passed": 0,
        "result": "unreachable",
        "detail": "connection refused",
    }
    unhealthy = {
        **VERIFIED,
        "healthy": False,
        "min_available_shares": 1,
        "restorable": False,
        "short_segments": 3,
        "holders": [*VERIFIED["holders"], gone],  # type: ignore[list-item]
    }
    stub.answers["backup_verify"] = lambda args: unhealthy
    code, out, _ = run(capsys, stub, "backup", "verify", ID)
    assert code == 0  # the check ran: its finding is in the output, not the exit code
    assert out.splitlines()[0] == (
        f"backup {ID}: NOT healthy: 3 of 3 segments have fewer than 4 shares reachable, the "
        "worst 1 (k = 2: NOT restorable)"
    )
    assert out.splitlines()[3].split(maxsplit=3) == [
        OTHER[:8],
        "1,3",
        "0/6",
        "unreachable: connection refused",
    ]
    assert BackupVerified.from_map(unhealthy, where="backup verify").to_result() == unhealthy

    stub.answers["backup_verify"] = AdminError("no backup 0123456789 on this node")
    code, _, err = run(capsys, stub, "backup", "verify", "0123456789")
    assert code == 1
    assert err == "plexinode: no backup 0123456789 on this node\n"


def test_admin_arguments() -> None:
    assert BackupCreateRequest.parse("backup_create", {"path": "/x"}).n == 10
    for args, words in [
        ({"path": "x"}, "absolute"),
        ({"path": "/x", "k": 5, "n": 4}, "must not exceed"),
        ({"path": "/x", "k": 2, "n": 4, "happy": 5}, "within k..n"),
        ({"path": "/x", "k": 0}, "k is an integer"),
    ]:
        with pytest.raises(AdminError, match=words):
            BackupCreateRequest.parse("backup_create", args)
    with pytest.raises(AdminError, match="absolute"):
        BackupRestoreRequest.parse("backup_restore", {"backup_id": ID, "dest": "rel"})
    assert (
        BackupRestoreRequest.parse("backup_restore", {"backup_id": ID, "dest": "/d"}).dest == "/d"
    )
    assert BackupIdRequest.parse("backup_show", {"backup_id": ID}).backup_id == ID
    assert BackupShown.of(SHOWN).to_result() == SHOWN


GiB = 1 << 30
STEPS = [
    Progress(BACKUP, 0, 3 << 20),
    Progress(BACKUP, 1 << 20, 3 << 20, sent_bytes=2 << 20),
    Progress(BACKUP, 3 << 20, 3 << 20, sent_bytes=6 << 20),
]


def test_create_with_json_keeps_stdout_one_document_and_progress_on_stderr(
    stub: Stub, capsys, tmp_path: Path
) -> None:
    stub.answers["backup_create"] = lambda args: CREATED
    stub.progress["backup_create"] = STEPS
    code, out, err = run(capsys, stub, "--json", "backup", "create", str(tmp_path))
    assert code == 0
    assert json.loads(out) == CREATED
    lines = [json.loads(line) for line in err.splitlines()]
    assert lines, "at least the last report"
    assert all(set(line) == set(STEPS[0].to_map()) for line in lines)
    assert lines[-1]["phase"] == "backup"
    assert lines[-1]["done"] == lines[-1]["total"] == 3 << 20
    assert lines[-1]["sent_bytes"] == 6 << 20
    assert lines[-1]["eta_seconds"] == 0.0


def test_restore_with_json_and_without(stub: Stub, capsys, tmp_path: Path) -> None:
    restored = {"backup_id": ID, "path": "p", "bytes": 10, "missing_segments": [], "damaged": []}
    stub.answers["backup_restore"] = lambda args: restored
    stub.progress["backup_restore"] = [Progress(RESTORE, 4, 10), Progress(RESTORE, 10, 10)]
    code, out, err = run(capsys, stub, "backup", "restore", ID, str(tmp_path / "a"), "--json")
    assert code == 0
    assert json.loads(out) == restored
    assert json.loads(err.splitlines()[-1])["done"] == 10
    # Without --json, on stderr that is no terminal: plain lines, never JSON, never stdout.
    code, out, err = run(capsys, stub, "backup", "restore", ID, str(tmp_path / "b"))
    assert (code, out) == (0, "restored 10 B to p\n")
    assert "{" not in err


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (("create", "."), "the node goes on with the backup (`plexinode backup list`"),
        (("restore", ID, "out"), "the node goes on with the restore ("),
    ],
)
def test_ctrl_c_is_one_line_that_says_the_node_goes_on(
    stub: Stub,
    capsys,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    argv: tuple[str, ...],
    words: str,
) -> None:
    monkeypatch.chdir(tmp_path)

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(AdminClient, "call", interrupted)
    code, out, err = run(capsys, stub, "backup", *argv)
    assert code == 130
    assert out == ""
    assert err.startswith("plexinode: interrupted; ")
    assert words in err
    assert err.count("\n") == 1
    code, out, err = run(capsys, stub, "backup", *argv, "--json")
    assert code == 130
    assert json.loads(out)["code"] == 130
    assert words in json.loads(out)["error"]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_bar_is_one_line_redrawn_in_place_and_erased_at_the_end() -> None:
    screen = Terminal()
    view = view_for(False, screen)
    assert view.mode == BAR
    view._width = 80
    view.show(Progress(BACKUP, GiB // 4, GiB, rate=10 * 2**20, eta_seconds=76.8))
    view.show(Progress(BACKUP, GiB // 2, GiB, sent_bytes=GiB, rate=10 * 2**20, eta_seconds=51.2))
    drawn = screen.getvalue().split("\r\x1b[K")
    assert drawn[0] == ""
    assert len(drawn) == 3
    assert drawn[1].startswith("backup  25% [#")
    assert drawn[2] == (
        "backup  50% [##########..........] 512.0 MiB / 1.0 GiB  10.0 MiB/s  ETA 51s"
    )
    assert all(len(line) <= 79 and "\n" not in line for line in drawn)
    view.close()
    assert screen.getvalue().endswith("\r\x1b[K")
    view.close()  # once is enough
    assert screen.getvalue().count("\r\x1b[K") == 3


@pytest.mark.parametrize(
    ("width", "bar", "sent"),
    [(40, False, False), (70, False, True), (79, True, False), (100, True, True)],
)
def test_the_bar_fits_the_terminal(width: int, bar: bool, sent: bool) -> None:
    """On a narrow terminal the bar gives up the bytes sent beside it, then goes itself."""
    progress = Progress(BACKUP, 7 * GiB, 9 * GiB, sent_bytes=21 * GiB, rate=1e8, eta_seconds=1e4)
    line = bar_line(progress, width)
    assert len(line) <= width
    assert line.startswith("backup  77%")
    assert ("[" in line) == bar
    assert ("sent" in line) == sent


def test_lines_without_a_total_and_in_other_units() -> None:
    unknown = Progress(BACKUP, 5 << 20, None, rate=2**20)
    assert bar_line(unknown, 80) == "backup 5.0 MiB  1.0 MiB/s"
    assert plain_line(unknown) == "backup: 5.0 MiB, 1.0 MiB/s"
    checks = Progress(VERIFY, 12, 40, unit=CHALLENGES, rate=3.0, eta_seconds=9.4)
    assert plain_line(checks) == "verify: 30%, 12 / 40 challenges, 3.0 challenges/s, ETA 9s"
    assert plain_line(Progress(VERIFY, 2, None, unit=CHALLENGES)) == "verify: 2 challenges"
    assert plain_line(Progress(RESTORE, 10, 10, eta_seconds=0.0)) == "restore: 100%, 10 B / 10 B"


def test_plain_lines_come_every_few_seconds_at_most() -> None:
    now = [100.0]
    log = io.StringIO()
    view = ProgressView(log, PLAIN, clock=lambda: now[0])
    for second in range(0, 12):
        now[0] = 100.0 + second
        view.show(Progress(RESTORE, second, 20))
    view.close()
    assert log.getvalue() == "restore: 25%, 5 B / 20 B\nrestore: 50%, 10 B / 20 B\n"
    assert view_for(False, log).mode == PLAIN


def test_json_lines() -> None:
    log = io.StringIO()
    view = view_for(True, log)
    view.show(Progress(BACKUP, 1, 2))
    view.show(Progress(BACKUP, 2, 2, rate=1.5, eta_seconds=0.0))
    view.close()
    assert [json.loads(line) for line in log.getvalue().splitlines()] == [
        {
            "phase": "backup",
            "unit": "bytes",
            "done": 1,
            "total": 2,
            "sent_bytes": 0,
            "rate": None,
            "eta_seconds": None,
        },
        {
            "phase": "backup",
            "unit": "bytes",
            "done": 2,
            "total": 2,
            "sent_bytes": 0,
            "rate": 1.5,
            "eta_seconds": 0.0,
        },
    ]


class ClosedPipe(io.StringIO):
    writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        raise BrokenPipeError


def test_a_closed_stderr_stops_the_progress_not_the_command() -> None:
    pipe = ClosedPipe()
    view = view_for(True, pipe)
    view.show(Progress(BACKUP, 1, 2))
    view.show(Progress(BACKUP, 2, 2))
    view.close()
    assert pipe.writes == 1
