"""Node configuration: TOML file, PLEXINODE_* environment, command-line flags, defaults.

Every setting is one row of the declarative table `SETTINGS`: its dotted key (``table.key`` in
TOML), its kind (how text and TOML values are parsed, checked and shown) and its help text. The
default of each setting is the default of the matching field of the typed dataclasses below, so
there is exactly one place where a default lives; an import-time check keeps the table and the
dataclasses in step.

Four layers are merged, highest first:

1. command-line flags (``flags`` mapping of dotted keys; ``None`` means "not given"),
2. environment variables ``PLEXINODE_<KEY>`` (dots and dashes become ``_``, upper case; lists
   are comma-separated),
3. the file ``config.toml`` in the data dir,
4. the defaults.

Mistakes fail loudly and early, with one line that says what, where and what was probably
meant: an unknown key in the file or an unknown ``PLEXINODE_*`` variable is an error with a
did-you-mean hint (a typo must never silently fall back to a default), and a wrong type or an
out-of-range value names the key, the value and the layer it came from.

Durations are written ``500ms``, ``30s``, ``15m``, ``24h``, ``7d`` (a bare number is seconds);
sizes ``512``, ``64KiB``, ``10MiB``, ``10GiB``, ``1TiB`` (binary) or ``KB``, ``MB``, ``GB``,
``TB`` (decimal). `format_duration` and `format_size` print the shortest exact form, and parsing
what they print gives back exactly the same value.
"""

from __future__ import annotations

from plexinode.config.defaults import render_default_config, write_default_config
from plexinode.config.kinds import JsonValue, Kind
from plexinode.config.loading import CONFIG_FILE_NAME, Config, ShowRow, load_config
from plexinode.config.settings import DEFAULT_LISTEN, Settings
from plexinode.config.table import (
    ENV_PREFIX,
    NETWORK_NAME_RULE,
    SETTINGS,
    SETTINGS_BY_ENV,
    SETTINGS_BY_KEY,
    TABLES,
    Setting,
    env_var_for,
)
from plexinode.config.units import format_duration, format_size, parse_duration, parse_size

__all__ = [
    "CONFIG_FILE_NAME",
    "DEFAULT_LISTEN",
    "ENV_PREFIX",
    "NETWORK_NAME_RULE",
    "SETTINGS",
    "SETTINGS_BY_ENV",
    "SETTINGS_BY_KEY",
    "TABLES",
    "Config",
    "JsonValue",
    "Kind",
    "Setting",
    "Settings",
    "ShowRow",
    "env_var_for",
    "format_duration",
    "format_size",
    "load_config",
    "parse_duration",
    "parse_size",
    "render_default_config",
    "write_default_config",
]
