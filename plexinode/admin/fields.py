"""Typed maps: the admin socket's arguments and results as frozen dataclasses.

The admin socket speaks msgpack maps keyed by field name (plexinode.admin.framing), where
wire messages are arrays in field order; otherwise an admin structure is declared like a wire
message (plexinode.wire.schema): a frozen dataclass whose fields each carry a *check*. What
differs is the map form, defaults for the fields a map leaves out (the CLI sends only what it
needs), and the error that a bad value gets, always one line:

- a value of the wrong type or range, or a required field left out: ``WHERE: FIELD: what was
  expected`` (``invalid arguments for ping: via: expected text``), or the field's own message
  where one is declared (``arg(..., error=...)``);
- a value of the right type that its parser refused (a node ID with a typo, an address without
  a port): the parser's own message, unchanged (:class:`Refused`).

Requests ignore keys that no field names, so that a newer CLI may send an argument that an
older node does not know yet; results refuse them (:attr:`Fields.EXTRA_KEYS`), so that a field
the node adds to a result without declaring it fails the tests instead of silently vanishing
from the CLI's output.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field
from typing import Any, ClassVar, Final, Self

from plexinode.errors import AdminError, DecodeError
from plexinode.wire.schema import Check


class Refused(DecodeError):
    """A value of the right type that its parser refused; its message is the whole answer."""


@dataclass(frozen=True, slots=True)
class Text(Check):
    """Any text. Requests are at most 1 MiB (plexinode.admin.framing), and the services check
    the lengths that matter to them, each with its own message."""

    def __call__(self, value: Any) -> Any:
        if type(value) is not str:
            raise DecodeError("expected text")
        return value


@dataclass(frozen=True, slots=True)
class Anything(Check):
    """Any msgpack value: the contents of a service's own description of something."""

    def __call__(self, value: Any) -> Any:
        return value


@dataclass(frozen=True, slots=True)
class MapOf(Check):
    """A map with text keys, each value passing `value` (stored as a new dict)."""

    value: Check = Anything()

    def __call__(self, value: Any) -> Any:
        if type(value) is not dict or not all(type(k) is str for k in value):
            raise DecodeError("expected a map with text keys")
        return {k: self.value(v) for k, v in value.items()}

    def encode(self, value: Any) -> Any:
        return {k: self.value.encode(v) for k, v in value.items()}


TEXT: Final = Text()


def arg(check: Check, *, default: Any = MISSING, error: str | None = None) -> Any:
    """Declare a field: its check, its value when a map leaves it out (no default: the field
    is required), and the message a bad or missing value gets instead of the generic one."""
    metadata = {"check": check, "error": error}
    if default is MISSING:
        return field(metadata=metadata)
    return field(default=default, metadata=metadata)


class Fields:
    """Base of the admin structures: frozen dataclasses whose fields are declared with `arg`."""

    #: Whether a map may hold keys that no field names (they are ignored).
    EXTRA_KEYS: ClassVar[bool] = True

    @classmethod
    def from_map(cls, value: Mapping[str, Any], *, where: str) -> Self:
        """Check the map's values and build the structure.

        Args:
            value: the map (the arguments of a request, or a result).
            where: what the map is, to begin an error message with (``invalid arguments for
                ping``).

        Raises:
            AdminError: A value of the wrong type, a refused value, a missing required field or
                (where refused) an unknown key, in one line saying which and why.
        """
        fields = dataclasses.fields(cls)  # type: ignore[arg-type]
        if not cls.EXTRA_KEYS:
            unknown = sorted(set(value) - {f.name for f in fields})
            if unknown:
                raise AdminError(f"{where}: unexpected {', '.join(map(str, unknown))}")
        values = {}
        for f in fields:
            error: str | None = f.metadata["error"]
            if f.name not in value:
                if f.default is MISSING:
                    raise AdminError(error or f"{where}: {f.name} is missing")
                continue
            try:
                values[f.name] = f.metadata["check"](value[f.name])
            except Refused as exc:
                raise AdminError(str(exc)) from None
            except DecodeError as exc:
                raise AdminError(error or f"{where}: {f.name}: {exc}") from None
        return cls(**values)

    def to_map(self) -> dict[str, Any]:
        """The msgpack-ready map, in field order."""
        return {
            f.name: f.metadata["check"].encode(getattr(self, f.name))
            for f in dataclasses.fields(self)  # type: ignore[arg-type]
        }
