"""The admin socket: framing, uid checks, errors, and the blocking client."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import trio

from plexinode.admin.client import AdminClient
from plexinode.admin.framing import LENGTH, MAX_REQUEST_BYTES, frame
from plexinode.admin.server import AdminServer
from plexinode.errors import AdminError, IdentityError, NodeNotRunning
from plexinode.wire.codec import pack


async def start_server(nursery: trio.Nursery, data_dir: Path, **kwargs) -> AdminServer:
    server = AdminServer(data_dir / "admin.sock", **kwargs)

    async def echo(args: dict) -> object:
        return args

    async def fails(args: dict) -> object:
        raise IdentityError("bad id")

    async def bug(args: dict) -> object:
        raise ZeroDivisionError

    async def bad_args(args: dict) -> object:
        return args["missing"]

    async def unencodable(args: dict) -> object:
        return {"when": object()}

    handlers = {
        "echo": echo,
        "fails": fails,
        "bug": bug,
        "bad_args": bad_args,
        "unencodable": unencodable,
    }
    for name, handler in handlers.items():
        server.command(name, handler)
    await nursery.start(server.run)
    return server


async def call(data_dir: Path, command: str, **args: object) -> object:
    client = AdminClient(data_dir, timeout=5)
    return await trio.to_thread.run_sync(lambda: client.call(command, **args))


async def raw_exchange(path: Path, data: bytes) -> bytes:
    def run() -> bytes:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(path))
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            chunks = b""
            while chunk := sock.recv(65536):
                chunks += chunk
            return chunks

    return await trio.to_thread.run_sync(run)


async def test_commands_and_errors(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, tmp_path)
        assert oct(server.path.stat().st_mode & 0o777) == "0o600"
        assert await call(tmp_path, "echo", x=1, y=[1, 2]) == {"x": 1, "y": [1, 2]}
        with pytest.raises(AdminError, match="bad id"):
            await call(tmp_path, "fails")
        with pytest.raises(AdminError, match="internal error in bug"):
            await call(tmp_path, "bug")
        with pytest.raises(AdminError, match="invalid arguments"):
            await call(tmp_path, "bad_args")
        with pytest.raises(AdminError, match="unknown command"):
            await call(tmp_path, "nope")
        # A result msgpack cannot encode is an error for that call, not the end of the node.
        with pytest.raises(AdminError, match="result cannot be encoded"):
            await call(tmp_path, "unencodable")
        assert await call(tmp_path, "echo", x=2) == {"x": 2}
        nursery.cancel_scope.cancel()
    assert not (tmp_path / "admin.sock").exists()


async def test_malformed_frames_do_not_hurt_the_server(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, tmp_path)
        replies = [
            await raw_exchange(server.path, LENGTH.pack(MAX_REQUEST_BYTES + 1)),
            await raw_exchange(server.path, LENGTH.pack(10) + b"abc"),
            await raw_exchange(server.path, frame([1, 2, 3])),
            await raw_exchange(server.path, frame({"command": 5})),
            await raw_exchange(server.path, LENGTH.pack(3) + b"\xc1\xc1\xc1"),
            await raw_exchange(server.path, b"\x00"),
        ]
        assert b"exceeds" in replies[0]
        assert b"truncated" in replies[1]
        assert b"must be a map" in replies[2]
        assert b"needs a string" in replies[3]
        assert b"bad request" in replies[4]
        assert await call(tmp_path, "echo", ok=True) == {"ok": True}
        nursery.cancel_scope.cancel()


async def test_other_uids_are_refused(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, tmp_path, allowed_uids=frozenset({os.getuid() + 1}))
        with pytest.raises(AdminError, match="closed the connection"):
            await call(tmp_path, "echo")
        assert server.refused == 1
        nursery.cancel_scope.cancel()


async def test_a_data_dir_with_a_long_path(tmp_path: Path) -> None:
    """A Unix socket address holds about 100 bytes of path: the socket stays at
    DATA_DIR/admin.sock and both ends reach it through a short path."""
    data_dir = tmp_path / ("x" * 120)
    data_dir.mkdir()
    async with trio.open_nursery() as nursery:
        server = await start_server(nursery, data_dir)
        assert server.path == data_dir / "admin.sock"
        assert server.path.is_socket()
        assert await call(data_dir, "echo", long=True) == {"long": True}
        nursery.cancel_scope.cancel()
    assert not server.path.exists()
    with pytest.raises(NodeNotRunning, match="no node is running"):
        AdminClient(data_dir).call("status")
    with pytest.raises(NodeNotRunning, match="no node is running"):
        AdminClient(tmp_path / ("y" * 120)).call("status")  # not even a data dir


async def test_an_admin_socket_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    server = AdminServer(tmp_path / "missing" / "admin.sock")
    with pytest.raises(AdminError, match=r"cannot create the admin socket .*missing/admin.sock"):
        await server.run()


def test_client_without_a_node(tmp_path: Path) -> None:
    with pytest.raises(NodeNotRunning, match="no node is running"):
        AdminClient(tmp_path).call("status")
    # A stale socket file with nobody listening counts as "not running" too.
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(tmp_path / "admin.sock"))
    stale.close()
    with pytest.raises(NodeNotRunning):
        AdminClient(tmp_path).call("status")


async def test_client_handles_bad_responses(tmp_path: Path) -> None:
    path = tmp_path / "admin.sock"
    listener = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await listener.bind(str(path))
    listener.listen(8)
    responses = [
        LENGTH.pack(5) + pack(1),  # length says 5, body is 1 byte, then EOF
        LENGTH.pack(1 << 30),  # far too large
        LENGTH.pack(1) + b"\xc1",  # not msgpack
        frame([1]),  # not a response map
        frame({"ok": False}),  # error without text
        None,  # never answers
    ]

    async def serve() -> None:
        for response in responses:
            conn, _ = await listener.accept()
            await conn.recv(65536)
            if response is None:
                await trio.sleep_forever()
            await conn.send(response)
            conn.close()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        client = AdminClient(tmp_path, timeout=0.5)
        for expected in (
            "closed the connection",
            "too large",
            "malformed",
            "malformed",
            "unknown error",
            "did not answer",
        ):
            with pytest.raises(AdminError, match=expected):
                await trio.to_thread.run_sync(client.call, "status")
        nursery.cancel_scope.cancel()
    listener.close()


async def test_a_system_without_peer_credentials_is_refused_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import plexinode.admin.server as server

    monkeypatch.delattr(server.stdlib_socket, "SO_PEERCRED")
    with pytest.raises(AdminError, match="no SO_PEERCRED"):
        await AdminServer(tmp_path / "admin.sock").run()
    assert not (tmp_path / "admin.sock").exists()
