"""Progress frames on the admin socket: a request that asks for progress of a command that
reports it gets frames, then its response; every other request is answered as before; a CLI
that reads slowly or goes away never holds the command up."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.lowlevel
import trio.testing

from plexinode.admin.client import AdminClient
from plexinode.admin.framing import LENGTH, RESPONSE_LIMITS, frame, is_progress, parse_request
from plexinode.admin.reporting import FRAME_INTERVAL, ProgressFrames, Reporting
from plexinode.admin.requests import NoArguments
from plexinode.admin.results import Document
from plexinode.admin.server import AdminServer
from plexinode.admin.typed import reporting
from plexinode.errors import AdminError, DecodeError
from plexinode.shards.progress import BACKUP, Progress, Report
from plexinode.wire.codec import pack, unpack

TOTAL = 1000


class Commands:
    """A server's commands for these tests: ``count`` reports `reports` steps of progress."""

    def __init__(self, reports: int = 10) -> None:
        self.reports = reports
        self.finished = trio.Event()
        self.release = trio.Event()
        self.release.set()

    async def count(self, args: dict[str, Any], report: Report) -> Any:
        await self.release.wait()
        for i in range(1, self.reports + 1):
            report(Progress(BACKUP, i * TOTAL // self.reports, TOTAL, sent_bytes=i))
            if i % 50 == 0:
                await trio.lowlevel.checkpoint()
        self.finished.set()
        return {"counted": self.reports, **args}

    async def echo(self, args: dict[str, Any]) -> Any:
        return args


async def start(
    nursery: trio.Nursery, data_dir: Path, commands: Commands, interval: float = 0.0
) -> AdminServer:
    server = AdminServer(data_dir / "admin.sock", progress_interval=interval)
    server.command("count", Reporting(commands.count))
    server.command("echo", commands.echo)
    await nursery.start(server.run)
    return server


async def call(data_dir: Path, command: str, **args: Any) -> tuple[Any, list[Progress]]:
    seen: list[Progress] = []
    client = AdminClient(data_dir, timeout=10)
    result = await trio.to_thread.run_sync(
        lambda: client.call(command, on_progress=seen.append, **args)
    )
    return result, seen


def read_frames(sock: socket.socket) -> list[Any]:
    """Every frame until the response (included)."""
    frames: list[Any] = []
    buffer = b""
    while True:
        while (
            len(buffer) < LENGTH.size or len(buffer) < LENGTH.size + LENGTH.unpack_from(buffer)[0]
        ):
            chunk = sock.recv(65536)
            assert chunk, "the server closed the connection before its response"
            buffer += chunk
        (length,) = LENGTH.unpack_from(buffer)
        frames.append(unpack(buffer[LENGTH.size : LENGTH.size + length], RESPONSE_LIMITS))
        buffer = buffer[LENGTH.size + length :]
        if not is_progress(frames[-1]):
            return frames


def test_requests_and_frames() -> None:
    assert parse_request(frame({"command": "x"})[LENGTH.size :]) == ("x", {}, False)
    assert parse_request(pack({"command": "x", "args": {}, "progress": True})).progress
    with pytest.raises(DecodeError, match="'progress' must be true or false"):
        parse_request(pack({"command": "x", "progress": 1}))
    assert is_progress({"progress": {}})
    assert not is_progress({"ok": True, "result": {"progress": 1}})
    assert not is_progress({"ok": True, "progress": {}})
    assert not is_progress([1])


async def test_a_progress_request_gets_frames_then_its_response(tmp_path: Path) -> None:
    commands = Commands(reports=10)
    async with trio.open_nursery() as nursery:
        await start(nursery, tmp_path, commands)
        result, seen = await call(tmp_path, "count", x=1)
        assert result == {"counted": 10, "x": 1}
        assert seen, "at least the last report is sent"
        assert seen[-1].done == TOTAL == seen[-1].total
        assert seen[-1].sent_bytes == 10
        assert seen[-1].eta_seconds == 0.0  # all done
        assert [p.done for p in seen] == sorted(p.done for p in seen)
        nursery.cancel_scope.cancel()


async def test_other_requests_are_answered_as_before(tmp_path: Path) -> None:
    commands = Commands(reports=10)
    async with trio.open_nursery() as nursery:
        await start(nursery, tmp_path, commands)
        # A command that reports nothing, asked for progress: its response alone.
        assert await call(tmp_path, "echo", y=2) == ({"y": 2}, [])
        # A command that reports, not asked: its response alone (the client would take a
        # progress frame for a malformed response).
        client = AdminClient(tmp_path, timeout=10)
        assert await trio.to_thread.run_sync(lambda: client.call("count")) == {"counted": 10}
        assert await trio.to_thread.run_sync(lambda: client.call("echo", z=3)) == {"z": 3}
        # An unknown command asked for progress is the usual error.
        with pytest.raises(AdminError, match="unknown command"):
            await call(tmp_path, "nope")
        nursery.cancel_scope.cancel()


async def test_a_slow_reader_never_holds_the_command_up(tmp_path: Path) -> None:
    """The CLI reads nothing until the command has finished: the command is not held up by
    the frames it cannot send (the socket's buffer fills), the frames not sent are replaced
    by newer ones (one kept, not a queue), and the last report still arrives before the
    response."""
    commands = Commands(reports=50_000)
    commands.release = trio.Event()
    async with trio.open_nursery() as nursery:
        server = await start(nursery, tmp_path, commands)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(30)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        await trio.to_thread.run_sync(sock.connect, str(server.path))
        sock.sendall(frame({"command": "count", "args": {}, "progress": True}))
        commands.release.set()
        await commands.finished.wait()  # finished while nobody read a byte
        frames = await trio.to_thread.run_sync(read_frames, sock)
        sock.close()
        assert frames[-1] == {"ok": True, "result": {"counted": 50_000}}
        progress = [Progress.from_map(f["progress"]) for f in frames[:-1]]
        assert progress[-1].done == TOTAL
        assert progress[-1].sent_bytes == 50_000
        assert len(progress) < 50_000  # most were replaced while the socket was full
        nursery.cancel_scope.cancel()


async def test_a_client_that_leaves_does_not_stop_the_command(tmp_path: Path) -> None:
    commands = Commands(reports=2_000)
    commands.release = trio.Event()
    async with trio.open_nursery() as nursery:
        server = await start(nursery, tmp_path, commands)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        await trio.to_thread.run_sync(sock.connect, str(server.path))
        sock.sendall(frame({"command": "count", "args": {}, "progress": True}))
        sock.close()  # Ctrl-C: the request was sent, nobody reads the frames or the response
        commands.release.set()
        await commands.finished.wait()
        assert await call(tmp_path, "echo", after=True) == ({"after": True}, [])
        nursery.cancel_scope.cancel()


async def test_frames_are_limited_to_a_few_a_second(autojump_clock: trio.testing.MockClock) -> None:
    """With the default interval, a command reporting a hundred times a second for ten
    seconds sends about four frames a second, and its last report as the last frame."""
    sender, receiver = trio.testing.memory_stream_pair()
    frames = ProgressFrames(sender)
    got: list[Any] = []

    async def read() -> None:
        buffer = b""
        while chunk := await receiver.receive_some():
            buffer += chunk
            while len(buffer) >= LENGTH.size and len(buffer) >= (
                LENGTH.size + LENGTH.unpack_from(buffer)[0]
            ):
                (length,) = LENGTH.unpack_from(buffer)
                got.append(unpack(buffer[LENGTH.size : LENGTH.size + length], RESPONSE_LIMITS))
                buffer = buffer[LENGTH.size + length :]

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read)
        async with trio.open_nursery() as inner:
            inner.start_soon(frames.run)
            for i in range(1, 1001):
                frames.report(Progress(BACKUP, i, 1000))
                await trio.sleep(0.01)
            frames.finish()
        await sender.aclose()
    seconds = 10.0
    assert len(got) <= seconds / FRAME_INTERVAL + 2
    assert len(got) >= seconds / FRAME_INTERVAL / 2
    assert got[-1]["progress"]["done"] == 1000
    assert frames.sent == len(got)
    assert frames.replaced == 1000 - len(got)
    rates = [f["progress"]["rate"] for f in got[1:]]
    assert all(r == pytest.approx(100.0, rel=0.2) for r in rates)  # 100 a second (simulated)


async def test_a_command_that_reports_nothing_sends_no_frame() -> None:
    sender, receiver = trio.testing.memory_stream_pair()
    frames = ProgressFrames(sender)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(frames.run)
        await trio.lowlevel.checkpoint()
        frames.finish()
    assert frames.sent == 0
    await sender.aclose()
    assert await receiver.receive_some() == b""


async def test_frames_stop_when_the_client_is_gone() -> None:
    sender, receiver = trio.testing.memory_stream_pair()
    await receiver.aclose()
    frames = ProgressFrames(sender)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(frames.run)
        frames.report(Progress(BACKUP, 1, 2))
        await trio.sleep(0.01)
        assert frames.broken
        frames.report(Progress(BACKUP, 2, 2))  # dropped: nobody to send it to
        frames.finish()
    assert frames.sent == 0


async def test_the_client_skips_malformed_progress_frames(tmp_path: Path) -> None:
    path = tmp_path / "admin.sock"
    listener = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await listener.bind(str(path))
    listener.listen(1)

    async def serve() -> None:
        conn, _ = await listener.accept()
        request = unpack((await conn.recv(65536))[LENGTH.size :], RESPONSE_LIMITS)
        assert request["progress"] is True
        await conn.send(frame({"progress": {"phase": BACKUP, "done": -5}}))
        await conn.send(frame({"progress": Progress(BACKUP, 3, 4).to_map()}))
        await conn.send(frame({"ok": True, "result": "done"}))
        conn.close()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        client = AdminClient(tmp_path, timeout=5)
        seen: list[Progress] = []
        result = await trio.to_thread.run_sync(
            lambda: client.call("count", on_progress=seen.append)
        )
    listener.close()
    assert result == "done"
    assert seen == [Progress(BACKUP, 3, 4)]
    assert client.malformed_progress == 1


async def test_a_typed_command_that_reports(tmp_path: Path) -> None:
    """`typed.reporting`: the request parsed, the report handed on, the result's value sent."""

    async def run(request: NoArguments, report: Report) -> Document:
        report(Progress(BACKUP, 1, 1))
        return Document({"ran": True})

    async with trio.open_nursery() as nursery:
        server = AdminServer(tmp_path / "admin.sock", progress_interval=0.0)
        server.command("typed", reporting("typed", NoArguments, run))
        await nursery.start(server.run)
        result, seen = await call(tmp_path, "typed")
        assert result == {"ran": True}
        assert [(p.done, p.total) for p in seen] == [(1, 1)]
        nursery.cancel_scope.cancel()
