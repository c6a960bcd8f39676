import contextlib
from dataclasses import dataclass
from typing import ClassVar

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from plexinode.errors import DecodeError
from plexinode.wire import codec, envelope
from plexinode.wire.codec import (
    DATAGRAM_LIMITS,
    FRAME_LIMITS,
    Limits,
    bin_size,
    int_size,
    pack,
    str_size,
    unpack,
)
from plexinode.wire.messages import Echo, ErrorReply, Ping, Pong
from plexinode.wire.schema import (
    Bool,
    Bytes,
    Float,
    Int,
    ListOf,
    Message,
    Nested,
    Optional,
    Registry,
    Str,
    Struct,
    wire,
)

registry = Registry()


@dataclass(frozen=True, slots=True)
class Point(Struct):
    x: int = wire(Int(0, 100))
    label: str = wire(Str(8))


@registry.register
@dataclass(frozen=True, slots=True)
class Everything(Message):
    TYPE: ClassVar[int] = 99
    NAME: ClassVar[str] = "everything"
    n: int = wire(Int(-5, 5))
    f: float = wire(Float(0.0, 10.0))
    b: bool = wire(Bool())
    data: bytes = wire(Bytes(1, 4))
    maybe: str | None = wire(Optional(Str(3)))
    points: tuple[Point, ...] = wire(ListOf(Nested(Point), max_items=2))


SAMPLE = Everything(1, 2.5, True, b"ab", None, (Point(3, "p"),))


def test_round_trip_through_envelope() -> None:
    data = envelope.encode(SAMPLE, request_id=7)
    decoded = envelope.decode(data, FRAME_LIMITS, registry)
    assert decoded.message == SAMPLE
    assert decoded.request_id == 7


@pytest.mark.parametrize(
    "fields",
    [
        [9, 2.5, True, b"ab", None, []],  # int out of range
        [True, 2.5, True, b"ab", None, []],  # bool is not an int
        [1, "x", True, b"ab", None, []],  # float expected
        [1, 20.0, True, b"ab", None, []],  # float out of range
        [1, 2.5, 1, b"ab", None, []],  # bool expected
        [1, 2.5, True, b"", None, []],  # bytes too short
        [1, 2.5, True, "ab", None, []],  # str instead of bytes
        [1, 2.5, True, b"ab", "long", []],  # optional string too long
        [1, 2.5, True, b"ab", None, [[1, "a"]] * 3],  # too many items
        [1, 2.5, True, b"ab", None, [[1]]],  # nested wrong arity
        [1, 2.5, True, b"ab", None, {}],  # map instead of list
        [1, 2.5, True, b"ab", None],  # missing field
        [1, 2.5, True, b"ab", None, [], 5],  # extra field
    ],
)
def test_wrong_shapes_are_decode_errors(fields: list[object]) -> None:
    data = pack([envelope.PROTOCOL_VERSION, Everything.TYPE, 0, fields])
    with pytest.raises(DecodeError):
        envelope.decode(data, FRAME_LIMITS, registry)


@pytest.mark.parametrize(
    "obj",
    [
        {"a": 1},
        [1, 1, 0],
        [2, Ping.TYPE, 0, []],
        ["1", Ping.TYPE, 0, []],
        [1, 12345, 0, []],
        [1, "ping", 0, []],
        [1, Ping.TYPE, -1, []],
        [1, Ping.TYPE, "x", []],
    ],
)
def test_bad_envelopes(obj: object) -> None:
    with pytest.raises(DecodeError):
        envelope.decode(pack(obj), DATAGRAM_LIMITS)


def test_limits_are_enforced_before_allocation() -> None:
    limits = Limits(max_buffer=100, max_str=4, max_bin=4, max_array=3, max_map=1)
    for obj in (["x" * 5], [b"12345"], [1, 2, 3, 4], {"a": 1, "b": 2}):
        with pytest.raises(DecodeError):
            unpack(pack(obj), limits)
    with pytest.raises(DecodeError, match="exceeds"):
        unpack(b"\x00" * 101, limits)
    # A header that declares a 4 GiB binary is refused without reading further.
    with pytest.raises(DecodeError):
        unpack(b"\xc6\xff\xff\xff\xff", limits)


def test_trailing_bytes_and_ext_types_are_rejected() -> None:
    with pytest.raises(DecodeError):
        unpack(pack(1) + pack(2), DATAGRAM_LIMITS)
    with pytest.raises(DecodeError):
        unpack(msgpack.packb(msgpack.ExtType(1, b"x")), DATAGRAM_LIMITS)
    with pytest.raises(DecodeError):
        unpack(msgpack.packb({1: 2}), DATAGRAM_LIMITS)  # non-string map key


@given(st.binary(max_size=1300))
def test_random_bytes_never_raise_anything_but_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        envelope.decode(data, DATAGRAM_LIMITS)


@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-(2**63), 2**64 - 1)
        | st.binary(max_size=20)
        | st.text(max_size=20),
        lambda children: (
            st.lists(children, max_size=5)
            | st.dictionaries(st.text(max_size=5), children, max_size=5)
        ),
        max_leaves=30,
    )
)
def test_valid_msgpack_of_any_shape_is_handled(obj: object) -> None:
    with contextlib.suppress(DecodeError):
        envelope.decode(pack(obj), DATAGRAM_LIMITS)


def test_spine_messages() -> None:
    for message in (Ping(), Pong("127.0.0.1", 9), ErrorReply(ErrorReply.BUSY, "busy")):
        assert envelope.decode(envelope.encode(message, 3), DATAGRAM_LIMITS).message == message
    assert Pong.RESPONSE
    assert ErrorReply.RESPONSE
    assert not Ping.RESPONSE
    assert Ping.ANONYMOUS_OK


def test_registry_rejects_duplicate_type_codes() -> None:
    with pytest.raises(ValueError, match="already used"):
        registry.register(Everything)
    assert Everything in registry
    assert Ping not in registry


# -- the per-class plan gives what the checks say -----------------------------------------------


@dataclass(frozen=True, slots=True)
class Shapes(Struct):
    """Every way a field's wire form can differ from its value (or not)."""

    ints: tuple[int, ...] = wire(ListOf(Int(), max_items=3))
    maybe_point: Point | None = wire(Optional(Nested(Point)))  # noqa: RUF009 (a field)
    maybe_points: tuple[Point, ...] | None = wire(Optional(ListOf(Nested(Point), max_items=2)))
    lists: tuple[tuple[bytes, ...], ...] = wire(ListOf(ListOf(Bytes(0, 2), 2), 2))


@dataclass(frozen=True, slots=True)
class Single(Struct):
    point: Point = wire(Nested(Point))  # noqa: RUF009 (wire() is dataclasses.field)


def reference_to_wire(struct: Struct) -> list[object]:
    """What to_wire must give: each field's check's encode, field by field."""
    checks = type(struct)._field_checks()
    return [check.encode(getattr(struct, name)) for name, check in checks]


def reference_from_wire(cls: type[Struct], value: object) -> object:
    """What from_wire must give: each field's check, field by field (or the same error)."""
    checks = cls._field_checks()
    if type(value) is not list or len(value) != len(checks):
        raise DecodeError(f"{cls.__name__}: expected an array of {len(checks)} fields")
    args = []
    for (name, check), item in zip(checks, value, strict=True):
        try:
            args.append(check(item))
        except DecodeError as exc:
            raise DecodeError(f"{cls.__name__}.{name}: {exc}") from None
    return cls(*args)


points = st.builds(Point, st.integers(0, 100), st.text(max_size=2))
shapes = st.builds(
    Shapes,
    st.lists(st.integers(0, 2**64 - 1), max_size=3).map(tuple),
    st.none() | points,
    st.none() | st.lists(points, max_size=2).map(tuple),
    st.lists(st.lists(st.binary(max_size=2), max_size=2).map(tuple), max_size=2).map(tuple),
)


@pytest.mark.parametrize(
    "struct", [Ping(), Echo(b"x"), Single(Point(1, "a")), SAMPLE, Shapes((), None, None, ())]
)
def test_to_wire_is_each_fields_encoding(struct: Struct) -> None:
    assert struct.to_wire() == reference_to_wire(struct)
    assert type(struct).from_wire(struct.to_wire()) == struct


@given(shapes)
def test_any_struct_encodes_as_its_checks_say_and_round_trips(struct: Shapes) -> None:
    wire_form = struct.to_wire()
    assert wire_form == reference_to_wire(struct)
    assert all(type(v) is list for v in (wire_form[0], wire_form[3], *wire_form[3]))
    assert Shapes.from_wire(unpack(pack(wire_form), FRAME_LIMITS)) == struct


@given(
    st.recursive(
        st.none() | st.integers(-1, 2**64) | st.binary(max_size=3) | st.text(max_size=3),
        lambda children: st.lists(children, max_size=4),
        max_leaves=12,
    )
)
def test_any_value_is_accepted_or_refused_as_the_checks_say(value: object) -> None:
    for cls in (Shapes, Single, Point):
        try:
            expected: object = reference_from_wire(cls, value)
        except DecodeError as exc:
            expected = str(exc)
        try:
            got: object = cls.from_wire(value)
        except DecodeError as exc:
            got = str(exc)
        assert got == expected


# -- encoded sizes, without encoding ------------------------------------------------------------

_INT_BOUNDARIES = [0, 0x7F, 0xFF, 0xFFFF, 0xFFFFFFFF, 2**64 - 1, -32, -(1 << 7), -(1 << 15)]
_INT_BOUNDARIES += [-(1 << 31), -(1 << 63)]
_LENGTH_BOUNDARIES = [0, 31, 0xFF, 0xFFFF]


@pytest.mark.parametrize("n", sorted({b + d for b in _INT_BOUNDARIES for d in (-1, 0, 1)}))
def test_integer_sizes_match_msgpack_at_the_boundaries(n: int) -> None:
    if -(1 << 63) <= n <= 2**64 - 1:
        assert int_size(n) == len(pack(n))


@given(st.integers(-(1 << 63), 2**64 - 1))
def test_integer_sizes_match_msgpack(n: int) -> None:
    assert int_size(n) == len(pack(n))


@pytest.mark.parametrize("n", sorted({b + d for b in _LENGTH_BOUNDARIES for d in (0, 1)}))
def test_binary_and_string_sizes_match_msgpack(n: int) -> None:
    assert bin_size(n) == len(pack(b"x" * n))
    assert str_size(n) == len(pack("x" * n))
    assert str_size(len("é".encode()) * n) == len(pack("é" * n))  # UTF-8 bytes, not characters


@pytest.mark.parametrize("error", [RuntimeError("boom"), OverflowError(), KeyError(0)])
def test_an_undocumented_msgpack_failure_is_a_decode_error(
    monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    # Hostile input has made msgpack raise types it does not document; whatever it raises, the
    # caller sees DecodeError, the one error a decoder of network input may raise.
    def fail(*args: object, **kwargs: object) -> object:
        raise error

    monkeypatch.setattr(codec.msgpack, "unpackb", fail)
    with pytest.raises(DecodeError, match=type(error).__name__):
        codec.unpack(b"\x90", DATAGRAM_LIMITS)
