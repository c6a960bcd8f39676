"""Messages of the node spine: liveness pings and error replies.

Type codes are grouped by service so that each service owns a range: 1-15 spine, 16-63 DHT,
64-127 membership, 128+ later services.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from plexinode.wire.schema import Bytes, Int, Message, Str, register, wire


@register
@dataclass(frozen=True, slots=True)
class Ping(Message):
    """Are you there? Answered with :class:`Pong`. May be sent to an unknown node."""

    TYPE: ClassVar[int] = 1
    NAME: ClassVar[str] = "ping"
    ANONYMOUS_OK: ClassVar[bool] = True


@register
@dataclass(frozen=True, slots=True)
class Pong(Message):
    """Answer to :class:`Ping`: tells the pinger the address its datagram came from."""

    TYPE: ClassVar[int] = 2
    NAME: ClassVar[str] = "pong"
    RESPONSE: ClassVar[bool] = True
    observed_host: str = wire(Str(64))
    observed_port: int = wire(Int(0, 65535))


@register
@dataclass(frozen=True, slots=True)
class ErrorReply(Message):
    """A request was understood but refused; `code` is machine-readable, `text` for humans."""

    TYPE: ClassVar[int] = 3
    NAME: ClassVar[str] = "error"
    RESPONSE: ClassVar[bool] = True
    code: int = wire(Int(0, 0xFFFF))
    text: str = wire(Str(200))

    # Codes shared by every service.
    UNSUPPORTED: ClassVar[int] = 1
    RATE_LIMITED: ClassVar[int] = 2
    BUSY: ClassVar[int] = 3
    INVALID: ClassVar[int] = 4


@register
@dataclass(frozen=True, slots=True)
class StreamOpen(Message):
    """First frame on a secure stream: which protocol the dialer wants to speak."""

    TYPE: ClassVar[int] = 4
    NAME: ClassVar[str] = "stream-open"
    protocol: str = wire(Str(64))


@register
@dataclass(frozen=True, slots=True)
class Echo(Message):
    """Payload of the `echo/1` stream protocol (used by `ping --stream` and benchmarks)."""

    TYPE: ClassVar[int] = 5
    NAME: ClassVar[str] = "echo"
    data: bytes = wire(Bytes(0, 1 << 20))
