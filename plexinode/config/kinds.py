"""Kinds of setting: how each is parsed from text or TOML, checked and shown."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

from plexinode.config.units import format_duration, format_size, parse_duration, parse_size
from plexinode.net.address import Address
from plexinode.net.stream_limits import parse_networks

JsonValue: TypeAlias = str | int | float | list[str]


def type_name(value: object) -> str:
    names = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array"}
    if isinstance(value, dict):
        return "table"
    return names.get(type(value), type(value).__name__)


@dataclass(frozen=True, slots=True)
class Kind:
    """How one kind of setting is parsed from text or TOML, validated and shown.

    The parse functions raise ValueError with a reason that does not repeat the value; the loader
    adds the key, the value and where it came from.

    Attributes:
        name: what the setting holds, for help and messages ("duration", "integer 0..10").
        from_text: parses an environment variable or a text flag.
        from_value: checks a TOML value or an already-parsed flag value.
        text: the human text form of a value.
        json: the JSON-friendly form of a value.
        toml: the value as written in config.toml.
    """

    name: str
    from_text: Callable[[str], Any]
    from_value: Callable[[object], Any]
    text: Callable[[Any], str]
    json: Callable[[Any], JsonValue]
    toml: Callable[[Any], Any]


def _reason(exc: ValueError) -> str:
    # parse_* and Address.parse say "invalid duration '30x': <reason>"; keep only the reason
    # since the loader names the value itself.
    message = str(exc)
    return (
        message.split(": ", 1)[1] if message.startswith("invalid ") and ": " in message else message
    )


def _expect(value: object, types: tuple[type, ...], what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, types):
        raise ValueError(f"expected {what}, got {type_name(value)}")


def integer(low: int, high: int) -> Kind:
    def check(n: int) -> int:
        if not low <= n <= high:
            raise ValueError(f"must be between {low} and {high}")
        return n

    def from_text(text: str) -> int:
        try:
            n = int(text.strip())
        except ValueError:
            raise ValueError("expected an integer") from None
        return check(n)

    def from_value(value: object) -> int:
        _expect(value, (int,), "an integer")
        assert isinstance(value, int)
        return check(value)

    return Kind(f"integer {low}..{high}", from_text, from_value, str, int, int)


def duration() -> Kind:
    def check(seconds: float) -> float:
        if not math.isfinite(seconds) or seconds <= 0:
            raise ValueError("must be a positive duration")
        return float(seconds)

    def from_text(text: str) -> float:
        try:
            return check(parse_duration(text))
        except ValueError as exc:
            raise ValueError(_reason(exc)) from None

    def from_value(value: object) -> float:
        if isinstance(value, str):
            return from_text(value)
        _expect(value, (int, float), "a duration such as '30s' or a number of seconds")
        assert isinstance(value, int | float)
        return check(value)

    return Kind("duration", from_text, from_value, format_duration, float, format_duration)


def size(low: int, high: int | None = None) -> Kind:
    def check(n: int) -> int:
        if n < low or (high is not None and n > high):
            if high is None:
                raise ValueError(f"must be at least {format_size(low)}")
            raise ValueError(f"must be between {format_size(low)} and {format_size(high)}")
        return n

    def from_text(text: str) -> int:
        try:
            return check(parse_size(text))
        except ValueError as exc:
            raise ValueError(_reason(exc)) from None

    def from_value(value: object) -> int:
        if isinstance(value, str):
            return from_text(value)
        _expect(value, (int,), "a size such as '10MiB' or a number of bytes")
        assert isinstance(value, int)
        return check(value)

    name = f"size {format_size(low)}..{format_size(high)}" if high is not None else "size"
    return Kind(name, from_text, from_value, format_size, int, format_size)


def _parse_address(value: object) -> Address:
    if isinstance(value, Address):
        return value
    _expect(value, (str,), "an address HOST:PORT")
    assert isinstance(value, str)
    try:
        return Address.parse(value, allow_zero_port=True)
    except ValueError as exc:
        raise ValueError(_reason(exc)) from None


def address() -> Kind:
    return Kind("address HOST:PORT", _parse_address, _parse_address, str, str, str)


def address_list() -> Kind:
    def from_text(text: str) -> tuple[Address, ...]:
        return tuple(_parse_address(item.strip()) for item in text.split(",") if item.strip())

    def from_value(value: object) -> tuple[Address, ...]:
        if isinstance(value, str):
            return from_text(value)
        if isinstance(value, Address):  # one address given where a list is expected
            return (value,)
        if not isinstance(value, list | tuple):
            raise ValueError(f"expected a list of addresses HOST:PORT, got {type_name(value)}")
        return tuple(_parse_address(item) for item in value)

    def text(addresses: tuple[Address, ...]) -> str:
        return ", ".join(map(str, addresses)) if addresses else "(none)"

    def as_list(addresses: tuple[Address, ...]) -> list[str]:
        return [str(a) for a in addresses]

    return Kind("list of addresses HOST:PORT", from_text, from_value, text, as_list, as_list)


def network_list() -> Kind:
    """CIDR networks (``10.0.0.0/8``, ``fd00::/8``; one address is a network of one), kept in
    their normal text form."""

    def one(item: object) -> str:
        _expect(item, (str,), "a network (CIDR)")
        assert isinstance(item, str)
        try:
            (network,) = parse_networks([item])
        except ValueError as exc:
            raise ValueError(str(exc)) from None
        return str(network)

    def from_text(text: str) -> tuple[str, ...]:
        return tuple(one(item.strip()) for item in text.split(",") if item.strip())

    def from_value(value: object) -> tuple[str, ...]:
        if isinstance(value, str):
            return from_text(value)
        if not isinstance(value, list | tuple):
            raise ValueError(f"expected a list of networks (CIDR), got {type_name(value)}")
        return tuple(one(item) for item in value)

    def text(networks: tuple[str, ...]) -> str:
        return ", ".join(networks) if networks else "(none)"

    return Kind("list of networks (CIDR)", from_text, from_value, text, list, list)


def string(pattern: str, name: str, rule: str, *, lower: bool = False) -> Kind:
    compiled = re.compile(pattern, re.ASCII)

    def from_value(value: object) -> str:
        _expect(value, (str,), "a string")
        assert isinstance(value, str)
        text = value.strip().lower() if lower else value.strip()
        if not compiled.fullmatch(text):
            raise ValueError(rule)
        return text

    return Kind(name, from_value, from_value, str, str, str)


def choice(*options: str) -> Kind:
    pattern = "|".join(map(re.escape, options))
    return string(pattern, " | ".join(options), "must be one of " + ", ".join(options), lower=True)
