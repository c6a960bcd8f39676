"""Network addresses and their text form (``host:port``, ``[v6]:port``)."""

from __future__ import annotations

import ipaddress
from typing import NamedTuple


class Address(NamedTuple):
    """A host and port; ``host`` is a literal IP address or a name."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str, *, allow_zero_port: bool = False) -> Address:
        """Parse ``host:port`` or ``[v6]:port``; ValueError with a clear message otherwise."""
        text = text.strip()
        host: str
        if text.startswith("["):
            host, sep, rest = text[1:].partition("]")
            if not sep or not rest.startswith(":"):
                raise ValueError(f"invalid address {text!r}: expected [IPv6]:PORT")
            port_text = rest[1:]
        else:
            host, sep, port_text = text.rpartition(":")
            if not sep or not host:
                raise ValueError(f"invalid address {text!r}: expected HOST:PORT")
            if ":" in host:
                raise ValueError(f"invalid address {text!r}: write IPv6 addresses as [ADDR]:PORT")
        if not port_text.isdigit():
            raise ValueError(f"invalid address {text!r}: the port must be a number")
        port = int(port_text)
        if not (0 if allow_zero_port else 1) <= port <= 65535:
            raise ValueError(f"invalid address {text!r}: port out of range")
        if ":" in host:
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                raise ValueError(f"invalid address {text!r}: bad IPv6 address") from None
        return cls(host, port)
