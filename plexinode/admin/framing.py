"""Admin socket framing: a 4-byte big-endian length, then a msgpack map.

Requests are ``{"command": str, "args": {...}}``; responses are ``{"ok": true, "result": ...}``
or ``{"ok": false, "error": str}``. Only local, authenticated (same uid or root) processes get
this far, but frames are still size-capped and strictly decoded.
"""

from __future__ import annotations

import struct
from typing import Any, Final

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


def parse_request(body: bytes) -> tuple[str, dict[str, Any]]:
    """Validate a request body; DecodeError when it is not a well-formed request."""
    obj = unpack(body, REQUEST_LIMITS)
    if not isinstance(obj, dict):
        raise DecodeError("admin request must be a map")
    command, args = obj.get("command"), obj.get("args", {})
    if not isinstance(command, str) or not isinstance(args, dict):
        raise DecodeError("admin request needs a string 'command' and a map 'args'")
    return command, args


def parse_response(obj: Any) -> Any:
    """The result of a decoded response; AdminError with the node's error, or when the
    response is not a well-formed one."""
    if not isinstance(obj, dict) or not isinstance(obj.get("ok"), bool):
        raise AdminError("malformed response from the node")
    if not obj["ok"]:
        raise AdminError(str(obj.get("error", "unknown error")))
    return obj.get("result")
