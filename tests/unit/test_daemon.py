"""The daemon's start-up pieces that need no running node: what a failed start says, and the
note before a slow identity."""

from __future__ import annotations

import errno
import socket
from pathlib import Path

import pytest
import trio

from plexinode.daemon import initialise, listen_failure, start_failure
from plexinode.errors import IdentityError, PlexinodeError
from plexinode.net.address import Address

LISTEN = Address("127.0.0.1", 7420)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            OSError(errno.EADDRINUSE, "Address already in use"),
            "cannot listen on 127.0.0.1:7420: Address already in use (another process uses "
            "this port for UDP or TCP; choose another with --listen)",
        ),
        (
            OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address"),
            "cannot listen on 127.0.0.1:7420: Cannot assign requested address (it is not an "
            "address of this machine)",
        ),
        (
            OSError(errno.EACCES, "Permission denied"),
            "cannot listen on 127.0.0.1:7420: Permission denied (ports below 1024 need privileges)",
        ),
        (OSError(errno.EIO, "I/O error"), "cannot listen on 127.0.0.1:7420: I/O error"),
        (OSError("no errno"), "cannot listen on 127.0.0.1:7420: no errno"),
        (
            socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
            "cannot listen on 127.0.0.1:7420: the host name '127.0.0.1' does not resolve "
            "(Name or service not known)",
        ),
    ],
)
def test_listen_failures_are_one_line(error: OSError, expected: str) -> None:
    assert str(listen_failure(error, LISTEN)) == expected


def test_a_start_failure_is_found_inside_the_groups_trio_reports_it_in() -> None:
    bind = OSError(errno.EADDRINUSE, "Address already in use")
    nested = BaseExceptionGroup("outer", [BaseExceptionGroup("inner", [bind])])
    failure = start_failure(nested, LISTEN)
    assert failure is not None
    assert "Address already in use" in str(failure)
    # Our own errors come out as they are, before any OSError beside them.
    own = IdentityError("bad key")
    assert start_failure(BaseExceptionGroup("g", [bind, own]), LISTEN) is own
    # A bug is not a start failure: it keeps its traceback.
    assert start_failure(BaseExceptionGroup("g", [ZeroDivisionError()]), LISTEN) is None
    assert start_failure(BaseExceptionGroup("g", [own, KeyError("x")]), LISTEN) is None
    assert start_failure(BaseExceptionGroup("g", [trio.Cancelled._create()]), LISTEN) is None


def test_a_slow_identity_is_announced_with_what_the_puzzle_is_for(tmp_path: Path) -> None:
    notes: list[str] = []
    initialise(tmp_path / "node", None, {"dht.id_difficulty": 12}, notes.append)
    [note] = notes
    assert "12-bit ID puzzle" in note
    assert "costly to mass-produce" in note
    assert "docs/protocol.md" in note
    notes.clear()
    initialise(tmp_path / "quick", None, {"dht.id_difficulty": 4}, notes.append)
    assert notes == []


def test_start_failure_is_a_plexinode_error() -> None:
    failure = start_failure(BaseExceptionGroup("g", [OSError(errno.EIO, "I/O error")]), LISTEN)
    assert isinstance(failure, PlexinodeError)
