"""Typed message schemas, validated on decode.

A message is a frozen dataclass whose fields each carry a *check* (``Int``, ``Bytes``, ``Str``,
``ListOf`` ...). On the wire a message is a msgpack array of its field values in declaration
order; :func:`decode_fields` rebuilds the dataclass and rejects, with :class:`DecodeError`, any
value of the wrong type, range or size. Nested structures are ``Struct`` subclasses, encoded the
same way. No value from the network reaches a service before it has passed its checks.

Messages are encoded and decoded on every datagram, so each struct class works out once, on
first use, how it goes to and from the wire (its ``_Plan``): its field values read in one call,
only the fields whose wire form differs from their value (nested structs, lists) encoded, and
each check as a plain function (:meth:`Check.validator`). The bytes and the checks are those of
:meth:`Check.encode` and :meth:`Check.__call__`; ``tests/unit/test_wire.py`` compares the two.
"""

from __future__ import annotations

import dataclasses
import operator
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

    def encoder(self) -> Callable[[Any], Any] | None:
        """:meth:`encode` as a function, or None where it returns the value as it is (so that
        :meth:`Struct.to_wire` can skip the call)."""
        return None if type(self).encode is Check.encode else self.encode

    def validator(self) -> Callable[[Any], Any]:
        """The check as a function (what :meth:`Struct.from_wire` calls for each field)."""
        return self.__call__


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

    def encoder(self) -> Callable[[Any], Any] | None:
        return None if self.inner.encoder() is None else self.encode


@dataclass(frozen=True, slots=True)
class ListOf(Check):
    item: Check
    max_items: int = 64

    def __call__(self, value: Any) -> Any:
        return self.validator()(value)

    def validator(self) -> Callable[[Any], Any]:
        item = self.item.validator()
        max_items = self.max_items

        def check(value: Any) -> Any:
            if type(value) is not list or len(value) > max_items:
                raise DecodeError(f"expected a list of at most {max_items} items")
            return tuple([item(v) for v in value])

        return check

    def encode(self, value: Any) -> Any:
        return [self.item.encode(v) for v in value]

    def encoder(self) -> Callable[[Any], Any] | None:
        return list if self.item.encoder() is None else self.encode


S = TypeVar("S", bound="Struct")


@dataclass(frozen=True, slots=True)
class Nested(Check):
    struct: type[Struct]

    def __call__(self, value: Any) -> Any:
        return self.struct.from_wire(value)

    def validator(self) -> Callable[[Any], Any]:
        return self.struct.from_wire

    def encode(self, value: Any) -> Any:
        return value.to_wire()


def wire(check: Check, **kwargs: Any) -> Any:
    """Declare a dataclass field with its wire check."""
    return field(metadata={"check": check}, **kwargs)


_FIELD_CHECKS: dict[type, tuple[tuple[str, Check], ...]] = {}


@dataclass(frozen=True, slots=True)
class _Plan:
    """How one struct class goes to and from the wire, worked out once per class.

    Attributes:
        checks: Each field's check as a function (:meth:`Check.validator`), in order.
        values: The field values of an instance, as a new list.
        encoders: ``(index, encode)`` of the fields whose wire form differs from their value.
    """

    checks: tuple[Callable[[Any], Any], ...]
    values: Callable[[Any], list[Any]]
    encoders: tuple[tuple[int, Callable[[Any], Any]], ...]


_PLANS: dict[type, _Plan] = {}


def _plan(cls: type[Struct]) -> _Plan:
    """Work out how `cls` goes to and from the wire, and remember it (callers look in
    :data:`_PLANS` first)."""
    names = [name for name, _ in cls._field_checks()]
    checks = [check for _, check in cls._field_checks()]
    encoders = tuple(
        (i, encode) for i, check in enumerate(checks) if (encode := check.encoder()) is not None
    )
    validators = tuple(check.validator() for check in checks)
    plan = _PLANS[cls] = _Plan(validators, _getter(names), encoders)
    return plan


def _getter(names: list[str]) -> Callable[[Any], list[Any]]:
    """A function that lists the values of the attributes `names` of an object (one C call,
    ``operator.attrgetter``, rather than a ``getattr`` per field)."""
    if not names:
        return lambda _obj: []
    if len(names) == 1:
        get_one = operator.attrgetter(names[0])
        return lambda obj: [get_one(obj)]
    get_all = operator.attrgetter(*names)
    return lambda obj: list(get_all(obj))


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
        plan = _PLANS.get(type(self)) or _plan(type(self))
        fields = plan.values(self)
        for i, encode in plan.encoders:
            fields[i] = encode(fields[i])
        return fields

    @classmethod
    def from_wire(cls, value: Any) -> Self:
        """Validate and build from the array form; raises DecodeError."""
        checks = (_PLANS.get(cls) or _plan(cls)).checks
        if type(value) is not list or len(value) != len(checks):
            raise DecodeError(f"{cls.__name__}: expected an array of {len(checks)} fields")
        try:
            args = [check(item) for check, item in zip(checks, value, strict=True)]
        except DecodeError:
            for (name, check), item in zip(cls._field_checks(), value, strict=True):
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
