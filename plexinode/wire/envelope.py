"""Versioned envelopes around messages.

On the wire an envelope is the msgpack array ``[version, type, request_id, body]`` where
``body`` is the message's field array. ``request_id`` is 0 for one-way messages and a random
non-zero 64-bit value for requests; a response carries the ID of its request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from plexinode.errors import DecodeError
from plexinode.wire.codec import Limits, pack, unpack
from plexinode.wire.schema import REGISTRY, U64_MAX, Message, Registry

PROTOCOL_VERSION: Final = 1


@dataclass(frozen=True, slots=True)
class Envelope:
    """A decoded envelope: the message and the request ID it belongs to."""

    message: Message
    request_id: int = 0


def encode(message: Message, request_id: int = 0) -> bytes:
    """Serialise a message in an envelope."""
    return pack([PROTOCOL_VERSION, message.TYPE, request_id, message.to_wire()])


def decode(data: bytes, limits: Limits, registry: Registry = REGISTRY) -> Envelope:
    """Decode and validate an envelope; raises DecodeError for anything malformed."""
    obj: Any = unpack(data, limits)
    if type(obj) is not list or len(obj) != 4:
        raise DecodeError("envelope: expected [version, type, request_id, body]")
    version, type_code, request_id, body = obj
    if version != PROTOCOL_VERSION or type(version) is not int:
        raise DecodeError(f"envelope: unsupported protocol version {version!r}")
    if type(request_id) is not int or not 0 <= request_id <= U64_MAX:
        raise DecodeError("envelope: bad request ID")
    cls = registry.get(type_code)
    return Envelope(cls.from_wire(body), request_id)
