"""Admin socket framing: a 4-byte big-endian length, then a msgpack map.

Requests are ``{"command": str, "args": {...}}``, with ``"progress": true`` beside them to ask a
long command for progress; responses are ``{"ok": true, "result": ...}`` or
``{"ok": false, "error": str}``, which a command asked for progress may precede with progress
frames, ``{"progress": {...}}`` (`plexinode.shards.progress.Progress.to_map`). Only local,
authenticated (same uid or root) processes get this far, but frames are still size-capped and
strictly decoded.
"""

from __future__ import annotations

import struct
from typing import Any, Final, NamedTuple

from plexinode.errors import AdminError, DecodeError
from plexinode.wire.codec import Limits, pack, unpack

LENGTH: Final = struct.Struct(">I")
#: Requests are small; responses (e.g. a 10,000-contact routing table) can be larger.
MAX_REQUEST_BYTES: Final = 1 << 20
MAX_RESPONSE_BYTES: Final = 64 << 20
REQUEST_LIMITS: Final = Limits(max_buffer=MAX_REQUEST_BYTES, max_array=10_000, max_map=256)
RESPONSE_LIMITS: Final = Limits(
    max_buffer=MAX_RESPONSE_BYTES, max_array=1_000_000, max_map=1_000_000
)


def frame(obj: Any) -> bytes:
    """Length-prefixed msgpack encoding of `obj`."""
    body = pack(obj)
    return LENGTH.pack(len(body)) + body


class AdminRequest(NamedTuple):
    """A decoded request.

    Attributes:
        command: the command's name.
        args: its arguments.
        progress: whether the caller wants progress frames before the response.
    """

    command: str
    args: dict[str, Any]
    progress: bool = False


def parse_request(body: bytes) -> AdminRequest:
    """Validate a request body; DecodeError when it is not a well-formed request."""
    obj = unpack(body, REQUEST_LIMITS)
    if not isinstance(obj, dict):
        raise DecodeError("admin request must be a map")
    command, args, progress = obj.get("command"), obj.get("args", {}), obj.get("progress", False)
    if not isinstance(command, str) or not isinstance(args, dict):
        raise DecodeError("admin request needs a string 'command' and a map 'args'")
    if not isinstance(progress, bool):
        raise DecodeError("admin request's 'progress' must be true or false")
    return AdminRequest(command, args, progress)


def is_progress(obj: Any) -> bool:
    """Whether a decoded frame from the node is a progress frame (not the response)."""
    return isinstance(obj, dict) and "progress" in obj and "ok" not in obj


def parse_response(obj: Any) -> Any:
    """The result of a decoded response; AdminError with the node's error, or when the
    response is not a well-formed one."""
    if not isinstance(obj, dict) or not isinstance(obj.get("ok"), bool):
        raise AdminError("malformed response from the node")
    if not obj["ok"]:
        raise AdminError(str(obj.get("error", "unknown error")))
    return obj.get("result")
