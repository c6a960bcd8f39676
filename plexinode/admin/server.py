"""The admin server: serves the CLI over a Unix domain socket inside the data dir.

The socket file is created with mode 0600 inside the 0700 data dir, and every connection's
peer credentials (SO_PEERCRED) are checked as well: only the node's own uid or root may talk
to it, even if the file permissions were loosened by hand.

A request is answered by one response; a request that asks for progress of a command that
reports it (`reporting.Reporting`) gets progress frames before its response
(plexinode.admin.reporting).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket as stdlib_socket
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from plexinode.admin.framing import (
    LENGTH,
    MAX_REQUEST_BYTES,
    AdminRequest,
    frame,
    parse_request,
)
from plexinode.admin.reporting import FRAME_INTERVAL, ProgressFrames, Reporting
from plexinode.datadir import socket_address
from plexinode.errors import AdminError, DecodeError, PlexinodeError
from plexinode.shards.progress import Report, ignore

log = logging.getLogger(__name__)

#: A command's handler: its ``args`` map in, its msgpack-ready result out (typed commands are
#: adapted to this by plexinode.admin.commands).
Command = Callable[[dict[str, Any]], Awaitable[Any]]
#: What the server runs for a command: a `Command`, or one that reports progress.
Handler = Command | Reporting
_UCRED = struct.Struct("3i")  # pid, uid, gid


def peer_uid(sock: trio.socket.SocketType) -> int:
    """The uid of the process at the other end of a Unix socket."""
    creds = sock.getsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_PEERCRED, _UCRED.size)
    _pid, uid, _gid = _UCRED.unpack(creds)
    return int(uid)


class AdminServer:
    """Serves registered commands on a Unix socket.

    Args:
        path: the socket file.
        allowed_uids: who may connect (default: this process's user and root).
        progress_interval: seconds between two progress frames at least.
    """

    def __init__(
        self,
        path: Path,
        *,
        allowed_uids: frozenset[int] | None = None,
        progress_interval: float = FRAME_INTERVAL,
    ) -> None:
        self.path = path
        self.allowed_uids = allowed_uids if allowed_uids is not None else {os.getuid(), 0}
        self.progress_interval = progress_interval
        self._commands: dict[str, Handler] = {}
        self.refused = 0

    def command(self, name: str, handler: Handler) -> None:
        """Register `handler` for the command `name`."""
        self._commands[name] = handler

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Bind the socket, serve until cancelled, remove the socket file on exit.

        Raises:
            AdminError: The socket cannot be created, or this system cannot tell who connects
                to it (no ``SO_PEERCRED``: the node refuses to start rather than serve
                commands to any local user).
        """
        if not hasattr(stdlib_socket, "SO_PEERCRED"):
            raise AdminError(
                "this system cannot tell which user connects to a Unix socket (no SO_PEERCRED),"
                " so the admin socket could not be kept to this node's user: plexinode runs on"
                " Linux"
            )
        sock = trio.socket.socket(stdlib_socket.AF_UNIX, stdlib_socket.SOCK_STREAM)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # left by a crashed node; we hold the data dir lock
        old_umask = os.umask(0o177)
        try:
            # A data dir with a long path is bound through a short one (datadir).
            with socket_address(self.path) as address:
                await sock.bind(address)
        except OSError as exc:
            sock.close()
            raise AdminError(
                f"cannot create the admin socket {self.path}: {exc.strerror or exc}"
            ) from None
        finally:
            os.umask(old_umask)
        self.path.chmod(0o600)
        sock.listen(64)
        listener = trio.SocketListener(sock)
        try:
            async with trio.open_nursery() as nursery:
                log.info("admin socket %s", self.path)
                task_status.started()
                while True:
                    stream = await listener.accept()
                    nursery.start_soon(self._serve, stream)
        finally:
            with contextlib.suppress(OSError):
                self.path.unlink()
            await listener.aclose()

    async def _serve(self, stream: trio.SocketStream) -> None:
        async with stream:
            try:
                uid = peer_uid(stream.socket)
            except OSError:
                uid = -1
            if uid not in self.allowed_uids:
                self.refused += 1
                log.warning("admin connection from uid %d refused", uid)
                return
            reader = _FrameReader(stream)
            try:
                while True:
                    body = await reader.read()
                    if body is None:
                        return
                    await self._answer(stream, body)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            except DecodeError as exc:
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await stream.send_all(frame({"ok": False, "error": str(exc)}))

    async def _answer(self, stream: trio.SocketStream, body: bytes) -> None:
        """Run one request and send its response (after its progress frames, if it asked)."""
        try:
            request = parse_request(body)
        except DecodeError as exc:
            await stream.send_all(frame({"ok": False, "error": f"bad request: {exc}"}))
            return
        handler = self._commands.get(request.command)
        if request.progress and isinstance(handler, Reporting):
            frames = ProgressFrames(stream, self.progress_interval)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(frames.run)
                try:
                    response = await self._respond(request, handler, frames.report)
                finally:
                    frames.finish()
        else:
            response = await self._respond(request, handler, ignore)
        await stream.send_all(_encoded(response))

    async def _respond(
        self, request: AdminRequest, handler: Handler | None, report: Report
    ) -> dict[str, Any]:
        command, args = request.command, request.args
        if handler is None:
            return {"ok": False, "error": f"unknown command {command!r}"}
        try:
            if isinstance(handler, Reporting):
                result = await handler.run(args, report)
            else:
                result = await handler(args)
        except PlexinodeError as exc:
            return {"ok": False, "error": str(exc)}
        except (ValueError, TypeError, KeyError) as exc:
            return {"ok": False, "error": f"invalid arguments for {command}: {exc}"}
        except Exception as exc:  # a bug in a command must not take the node down
            log.exception("admin command %s failed", command)
            return {"ok": False, "error": f"internal error in {command}: {type(exc).__name__}"}
        return {"ok": True, "result": result}


def _encoded(response: dict[str, Any]) -> bytes:
    """`response` framed; a result that msgpack cannot encode (a bug in its command) becomes
    an error response instead of ending the node."""
    try:
        return frame(response)
    except (TypeError, ValueError, OverflowError) as exc:
        log.exception("admin response cannot be encoded")
        return frame(
            {"ok": False, "error": f"internal error: the result cannot be encoded ({exc})"}
        )


class _FrameReader:
    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buf = bytearray()

    async def _fill(self, n: int) -> bool:
        while len(self._buf) < n:
            chunk = await self._stream.receive_some(65536)
            if not chunk:
                return False
            self._buf += chunk
        return True

    async def read(self) -> bytes | None:
        if not await self._fill(LENGTH.size):
            if self._buf:
                raise DecodeError("truncated admin frame")
            return None
        (length,) = LENGTH.unpack_from(self._buf)
        if length > MAX_REQUEST_BYTES:
            raise DecodeError(f"admin frame of {length} bytes exceeds {MAX_REQUEST_BYTES}")
        if not await self._fill(LENGTH.size + length):
            raise DecodeError("truncated admin frame")
        body = bytes(self._buf[LENGTH.size : LENGTH.size + length])
        del self._buf[: LENGTH.size + length]
        return body
