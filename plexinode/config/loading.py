"""Loading: the file, the environment and the flags merged over the defaults."""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from plexinode.config.kinds import JsonValue, type_name
from plexinode.config.settings import Settings
from plexinode.config.table import (
    ENV_PREFIX,
    SETTINGS,
    SETTINGS_BY_ENV,
    SETTINGS_BY_KEY,
    TABLES,
    Setting,
)
from plexinode.config.units import format_duration
from plexinode.errors import ConfigError

log = logging.getLogger(__name__)

CONFIG_FILE_NAME: Final = "config.toml"
# PLEXINODE_HOME names the data dir itself (it is where config.toml lives), so it cannot be a
# setting inside that file; it is allowed in the environment and ignored by the loader.
RESERVED_ENV: Final = frozenset({"PLEXINODE_HOME"})


@dataclass(frozen=True, slots=True)
class ShowRow:
    """One effective setting as `plexinode config show` prints it.

    Attributes:
        key: the dotted key (``datagram.request_timeout``).
        value: the JSON-friendly value (seconds for durations, bytes for sizes).
        text: the human form (``2s``, ``1MiB``, ``0.0.0.0:7420``).
        source: ``default``, ``file``, ``env PLEXINODE_X`` or ``flag``.
    """

    key: str
    value: JsonValue
    text: str
    source: str


@dataclass(frozen=True, slots=True)
class Config:
    """The effective configuration of a node and where each value came from.

    Attributes:
        settings: the typed settings.
        path: the config file (it may not exist).
        values: the effective value of each setting by dotted key (the typed values above).
        sources: where each value came from by dotted key (see `ShowRow.source`).
    """

    settings: Settings
    path: Path
    values: Mapping[str, Any] = field(repr=False)
    sources: Mapping[str, str] = field(repr=False)

    def source(self, key: str) -> str:
        """Where the value of `key` came from (see `ShowRow.source`)."""
        return self.sources[key]

    def show(self) -> list[ShowRow]:
        """Every setting, in table order, with its value, text form and source."""
        rows = []
        for setting in SETTINGS:
            value = self.values[setting.key]
            rows.append(
                ShowRow(
                    key=setting.key,
                    value=setting.kind.json(value),
                    text=setting.kind.text(value),
                    source=self.sources[setting.key],
                )
            )
        return rows


def _did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest candidate, or an empty string."""
    candidates = [c for c in candidates if c != name]
    # A key written in the wrong table ([datagram] listen) or outside its table (retries = 3):
    # its last part is the last part of exactly one known key.
    tail = name.rsplit(".", 1)[-1]
    same_tail = [c for c in candidates if c.rsplit(".", 1)[-1] == tail]
    if len(same_tail) == 1:
        return f" (did you mean {same_tail[0]!r}?)"
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def convert(setting: Setting, raw: object, where: str, *, text: bool) -> Any:
    """Parse `raw` (text if `text`, else a TOML or already-parsed value) or say what is wrong."""
    try:
        if text and isinstance(raw, str):
            return setting.kind.from_text(raw)
        return setting.kind.from_value(raw)
    except ValueError as exc:
        raise ConfigError(f"invalid value {raw!r} for {setting.key!r} ({where}): {exc}") from None


def _read_file(path: Path) -> dict[str, object]:
    """The settings in the config file, flattened to dotted keys; empty if there is no file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{path} is not valid TOML: not UTF-8 text (at line {line})") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None

    found: dict[str, object] = {}
    known = list(SETTINGS_BY_KEY) + list(TABLES)
    for name, value in document.items():
        if name in TABLES:
            if not isinstance(value, dict):
                raise ConfigError(
                    f"{name!r} in {path} must be a table ([{name}]), not {type_name(value)}"
                )
            for sub, sub_value in value.items():
                key = f"{name}.{sub}"
                if key not in SETTINGS_BY_KEY:
                    what = "table" if isinstance(sub_value, dict) else "setting"
                    hint = _did_you_mean(key, SETTINGS_BY_KEY)
                    raise ConfigError(f"unknown {what} {key!r} in {path}{hint}")
                found[key] = sub_value
        elif name in SETTINGS_BY_KEY:
            found[name] = value
        elif isinstance(value, dict):
            hint = _did_you_mean(name, known)
            raise ConfigError(f"unknown table {name!r} in {path}{hint}")
        else:
            hint = _did_you_mean(name, known)
            raise ConfigError(f"unknown setting {name!r} in {path}{hint}")
    return found


def _check_env(env: Mapping[str, str]) -> None:
    # Compared without the shared prefix, which would make every name look alike.
    candidates = [n.removeprefix(ENV_PREFIX) for n in [*SETTINGS_BY_ENV, *sorted(RESERVED_ENV)]]
    for name in env:
        if name.startswith(ENV_PREFIX) and name not in SETTINGS_BY_ENV and name not in RESERVED_ENV:
            close = difflib.get_close_matches(name.removeprefix(ENV_PREFIX), candidates, n=1)
            hint = f" (did you mean {ENV_PREFIX}{close[0]}?)" if close else ""
            raise ConfigError(f"unknown environment variable {name}{hint}")


def _build(values: Mapping[str, Any]) -> Settings:
    top: dict[str, Any] = {}
    tables: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        table, dot, name = key.partition(".")
        if dot:
            tables.setdefault(table, {})[name] = value
        else:
            top[key] = value
    default = Settings()
    for table, fields in tables.items():
        top[table] = dataclasses.replace(getattr(default, table), **fields)
    return dataclasses.replace(default, **top)


def load_config(
    data_dir: Path,
    *,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> Config:
    """Load the effective configuration of the node whose data dir is `data_dir`.

    Args:
        data_dir: the data dir; ``config.toml`` inside it is read if it exists.
        env: the environment (default: `os.environ`); ``PLEXINODE_*`` variables other than the
            settings' and ``PLEXINODE_HOME`` are an error.
        flags: command-line values by dotted key, already parsed or as text; ``None`` (and, for
            ``bootstrap``, an empty sequence, which is what a repeatable option gives when it is
            not used) means "not given".

    Returns:
        The typed settings and the source of each value.

    Raises:
        ConfigError: an unknown key, table, variable or flag, a corrupt file, or a bad value.
    """
    path = data_dir / CONFIG_FILE_NAME
    env = os.environ if env is None else env
    values: dict[str, Any] = {s.key: s.default for s in SETTINGS}
    sources: dict[str, str] = dict.fromkeys(SETTINGS_BY_KEY, "default")

    for key, raw in _read_file(path).items():
        values[key] = convert(SETTINGS_BY_KEY[key], raw, f"in {path}", text=False)
        sources[key] = "file"

    _check_env(env)
    for setting in SETTINGS:
        text = env.get(setting.env_var)
        if text is not None:
            where = f"environment variable {setting.env_var}"
            values[setting.key] = convert(setting, text, where, text=True)
            sources[setting.key] = f"env {setting.env_var}"

    for key, raw in (flags or {}).items():
        flag_setting = SETTINGS_BY_KEY.get(key)
        if flag_setting is None:
            raise ConfigError(
                f"unknown setting {key!r} given as a flag{_did_you_mean(key, SETTINGS_BY_KEY)}"
            )
        if raw is None or (key == "bootstrap" and isinstance(raw, list | tuple) and not raw):
            continue
        values[key] = convert(flag_setting, raw, "flag", text=True)
        sources[key] = "flag"

    overridden = {k: s for k, s in sources.items() if s != "default"}
    log.debug("configuration from %s: %s", path, overridden or "all defaults")
    settings = _build(values)
    membership = settings.membership
    if not 0 < membership.probe_timeout < membership.probe_interval:
        raise ConfigError(
            f"membership.probe_timeout ({format_duration(membership.probe_timeout)}, "
            f"{sources['membership.probe_timeout']}) must be above zero and below "
            f"membership.probe_interval ({format_duration(membership.probe_interval)}, "
            f"{sources['membership.probe_interval']})"
        )
    return Config(
        settings=settings,
        path=path,
        values=MappingProxyType(values),
        sources=MappingProxyType(sources),
    )
