"""Typed message schemas, validated on decode.

A message is a frozen dataclass whose fields each carry a *check* (``Int``, ``Bytes``, ``Str``,
``ListOf`` ...). On the wire a message is a msgpack array of its field values in declaration
order; :func:`decode_fields` rebuilds the dataclass and rejects, with :class:`DecodeError`, any
value of the wrong type, range or size. Nested structures are ``Struct`` subclasses, encoded the
same way. No value from the network reaches a service before it has passed its checks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, Self, TypeVar

from plexinode.errors import DecodeError

U64_MAX: Final = (1 << 64) - 1


class Check:
    """Validates one decoded value and returns the value to store."""

    def __call__(self, value: Any) -> Any:
        raise NotImplementedError

    def encode(self, value: Any) -> Any:
        """The msgpack-ready form of a field value."""
        return value


@dataclass(frozen=True, slots=True)
class Int(Check):
    lo: int = 0
    hi: int = U64_MAX

    def __call__(self, value: Any) -> Any:
        if type(value) is not int or not self.lo <= value <= self.hi:
            raise DecodeError(f"expected an integer in [{self.lo}, {self.hi}]")
        return value


@dataclass(frozen=True, slots=True)
class Float(Check):
    lo: float = 0.0
    hi: float = 1e12

    def __call__(self, value: Any) -> Any:
        if type(value) not in (int, float) or not self.lo <= value <= self.hi:
            raise DecodeError(f"expected a number in [{self.lo}, {self.hi}]")
        return float(value)


@dataclass(frozen=True, slots=True)
class Bool(Check):
    def __call__(self, value: Any) -> Any:
        if type(value) is not bool:
            raise DecodeError("expected a boolean")
        return value


@dataclass(frozen=True, slots=True)
class Bytes(Check):
    min_len: int = 0
    max_len: int = 1024

    def __call__(self, value: Any) -> Any:
        if type(value) is not bytes or not self.min_len <= len(value) <= self.max_len:
            raise DecodeError(f"expected {self.min_len}..{self.max_len} bytes")
        return value


@dataclass(frozen=True, slots=True)
class Str(Check):
    max_len: int = 256

    def __call__(self, value: Any) -> Any:
        if type(value) is not str or len(value) > self.max_len:
            raise DecodeError(f"expected a string of at most {self.max_len} characters")
        return value


@dataclass(frozen=True, slots=True)
class Optional(Check):
    inner: Check

    def __call__(self, value: Any) -> Any:
        return None if value is None else self.inner(value)

    def encode(self, value: Any) -> Any:
        return None if value is None else self.inner.encode(value)


@dataclass(frozen=True, slots=True)
class ListOf(Check):
    item: Check
    max_items: int = 64

    def __call__(self, value: Any) -> Any:
        if type(value) is not list or len(value) > self.max_items:
            raise DecodeError(f"expected a list of at most {self.max_items} items")
        return tuple(self.item(v) for v in value)

    def encode(self, value: Any) -> Any:
        return [self.item.encode(v) for v in value]


S = TypeVar("S", bound="Struct")


@dataclass(frozen=True, slots=True)
class Nested(Check):
    struct: type[Struct]

    def __call__(self, value: Any) -> Any:
        return self.struct.from_wire(value)

    def encode(self, value: Any) -> Any:
        return value.to_wire()


def wire(check: Check, **kwargs: Any) -> Any:
    """Declare a dataclass field with its wire check."""
    return field(metadata={"check": check}, **kwargs)


_FIELD_CHECKS: dict[type, tuple[tuple[str, Check], ...]] = {}


class Struct:
    """Base of every wire structure: a frozen dataclass encoded as an array of its fields."""

    @classmethod
    def _field_checks(cls) -> tuple[tuple[str, Check], ...]:
        checks = _FIELD_CHECKS.get(cls)
        if checks is None:
            fields = dataclasses.fields(cls)  # type: ignore[arg-type]
            checks = tuple((f.name, f.metadata["check"]) for f in fields)
            _FIELD_CHECKS[cls] = checks
        return checks

    def to_wire(self) -> list[Any]:
        """The msgpack-ready array form."""
        return [check.encode(getattr(self, name)) for name, check in self._field_checks()]

    @classmethod
    def from_wire(cls, value: Any) -> Self:
        """Validate and build from the array form; raises DecodeError."""
        checks = cls._field_checks()
        if type(value) is not list or len(value) != len(checks):
            raise DecodeError(f"{cls.__name__}: expected an array of {len(checks)} fields")
        try:
            args = [check(item) for (_, check), item in zip(checks, value, strict=True)]
        except DecodeError:
            for (name, check), item in zip(checks, value, strict=True):
                try:
                    check(item)
                except DecodeError as exc:
                    raise DecodeError(f"{cls.__name__}.{name}: {exc}") from None
            raise  # pragma: no cover  (a check that fails only once cannot be named)
        return cls(*args)


class Message(Struct):
    """A top-level wire message; subclasses set TYPE (a unique small integer) and NAME."""

    TYPE: ClassVar[int]
    NAME: ClassVar[str]
    #: True for answers to a request (matched to a pending request, never dispatched).
    RESPONSE: ClassVar[bool] = False
    #: True for requests that may be sent to "whoever is at this address" (first contact).
    ANONYMOUS_OK: ClassVar[bool] = False
    #: Tokens one request of this type costs from the sender's per-type rate limit
    #: (``datagram.peer_request_rate``): expensive requests cost more.
    COST: ClassVar[int] = 1


M = TypeVar("M", bound=type[Message])


class Registry:
    """Maps wire type codes to message classes."""

    def __init__(self) -> None:
        self._by_type: dict[int, type[Message]] = {}

    def register(self, cls: M) -> M:
        """Class decorator: add a message class; type codes must be unique."""
        if cls.TYPE in self._by_type:
            raise ValueError(f"type {cls.TYPE} already used by {self._by_type[cls.TYPE].__name__}")
        self._by_type[cls.TYPE] = cls
        return cls

    def get(self, type_code: Any) -> type[Message]:
        """The class for a type code; DecodeError for an unknown one."""
        cls = self._by_type.get(type_code) if type(type_code) is int else None
        if cls is None:
            raise DecodeError(f"unknown message type {type_code!r}")
        return cls

    def __contains__(self, cls: object) -> bool:
        return isinstance(cls, type) and self._by_type.get(getattr(cls, "TYPE", -1)) is cls


#: Messages carried in datagrams and stream frames.
REGISTRY: Final = Registry()

register: Callable[[M], M] = REGISTRY.register
