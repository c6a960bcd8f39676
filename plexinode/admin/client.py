"""The admin client used by the CLI: blocking, one request at a time."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from plexinode.admin.framing import (
    LENGTH,
    MAX_RESPONSE_BYTES,
    RESPONSE_LIMITS,
    frame,
    is_progress,
    parse_response,
)
from plexinode.datadir import socket_address, socket_path
from plexinode.errors import AdminError, DecodeError, NodeNotRunning
from plexinode.shards.progress import Progress
from plexinode.wire.codec import unpack

log = logging.getLogger(__name__)


class AdminClient:
    """Talks to the node whose data dir is `data_dir`."""

    def __init__(self, data_dir: Path, *, timeout: float = 30.0) -> None:
        self.path = socket_path(data_dir)
        self.timeout = timeout
        #: Progress frames that did not decode (skipped: the response still counts).
        self.malformed_progress = 0

    def call(
        self,
        command: str,
        timeout: float | None = None,
        *,
        on_progress: Callable[[Progress], None] | None = None,
        **args: Any,
    ) -> Any:
        """Run `command` in the node and return its result. With `on_progress`, the node is
        asked for progress, and each progress frame it sends before the result is handed to
        `on_progress` (a command that reports none sends only the result). `timeout` is how
        long the node may stay silent: a progress frame restarts it.

        Raises:
            NodeNotRunning: nothing listens on the admin socket.
            AdminError: the node answered with an error, or the connection broke.
        """
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout if timeout is None else timeout)
        try:
            try:
                # A data dir with a long path is reached through a short one (datadir).
                with socket_address(self.path) as address:
                    sock.connect(address)
            except (FileNotFoundError, NotADirectoryError, ConnectionRefusedError):
                raise NodeNotRunning(f"no node is running for {self.path.parent}") from None
            except PermissionError:
                raise AdminError(f"permission denied on {self.path}") from None
            request: dict[str, Any] = {"command": command, "args": args}
            if on_progress is not None:
                request["progress"] = True
            sock.sendall(frame(request))
            response = self._read(sock)
            while on_progress is not None and is_progress(response):
                self._progress(response, on_progress)
                response = self._read(sock)
        except TimeoutError:
            raise AdminError(f"the node did not answer {command!r} in time") from None
        except (ConnectionResetError, BrokenPipeError):
            raise AdminError(f"the node closed the connection during {command!r}") from None
        finally:
            sock.close()
        return parse_response(response)

    def _progress(self, response: dict[str, Any], on_progress: Callable[[Progress], None]) -> None:
        try:
            progress = Progress.from_map(response["progress"])
        except DecodeError as exc:
            self.malformed_progress += 1
            log.debug("malformed progress frame skipped: %s", exc)
            return
        on_progress(progress)

    @staticmethod
    def _recv_exact(sock: socket.socket, n: int) -> bytes:
        chunks = bytearray()
        while len(chunks) < n:
            chunk = sock.recv(min(n - len(chunks), 1 << 20))
            if not chunk:
                raise AdminError("the node closed the connection before answering")
            chunks += chunk
        return bytes(chunks)

    def _read(self, sock: socket.socket) -> Any:
        (length,) = LENGTH.unpack(self._recv_exact(sock, LENGTH.size))
        if length > MAX_RESPONSE_BYTES:
            raise AdminError(f"response of {length} bytes is too large")
        try:
            return unpack(self._recv_exact(sock, length), RESPONSE_LIMITS)
        except DecodeError as exc:
            raise AdminError(f"malformed response from the node: {exc}") from None
