"""The default config.toml: every setting, commented out, with its help."""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path
from typing import Any, Final

import tomli_w

from plexinode.config.loading import CONFIG_FILE_NAME, convert
from plexinode.config.table import SETTINGS, SETTINGS_BY_KEY
from plexinode.errors import DataDirError
from plexinode.fsutil import atomic_write, ensure_private_dir

log = logging.getLogger(__name__)

_FILE_HEADER: Final = """\
# plexinode configuration (TOML).
#
# Every setting is listed below with its default value, commented out: remove the "# " in front
# of a line to change it. Precedence, highest first: command-line flag, environment variable
# (PLEXINODE_<KEY>, named beside each setting), this file, the built-in default.
#
# Durations: 500ms, 30s, 15m, 24h, 7d (a bare number is seconds).
# Sizes: 512, 64KiB, 10MiB, 10GiB, 1TiB (binary) or 10KB, 10MB, 10GB (decimal).
"""


def _toml_line(name: str, value: object) -> str:
    return tomli_w.dumps({name: value}).rstrip("\n")


def render_default_config(*, network: str | None = None) -> str:
    """The text of a default config.toml (see `write_default_config`).

    Raises:
        ConfigError: `network` is not a valid network name.
    """
    given: dict[str, Any] = {}
    if network is not None:
        setting = SETTINGS_BY_KEY["network"]
        given["network"] = convert(setting, network, "network name", text=False)
    blocks: dict[str, list[str]] = {"": []}
    for setting in SETTINGS:
        table, _, name = setting.key.rpartition(".")
        lines = [f"# {line}" for line in textwrap.wrap(setting.help, width=96)]
        lines.append(f"# ({setting.kind.name}; environment: {setting.env_var})")
        if setting.key in given:
            lines.append(_toml_line(name, setting.kind.toml(given[setting.key])))
        else:
            lines.append("# " + _toml_line(name, setting.kind.toml(setting.default)))
        blocks.setdefault(table, []).append("\n".join(lines))
    parts = [_FILE_HEADER.rstrip(), *blocks.pop("")]
    parts += [f"[{table}]\n" + "\n\n".join(entries) for table, entries in blocks.items()]
    return "\n\n".join(parts) + "\n"


def write_default_config(data_dir: Path, *, network: str | None = None) -> Path:
    """Write a commented default ``config.toml`` into `data_dir`, unless one exists.

    Every setting appears commented out with its default and help, except `network` when it is
    given. The file is written atomically with mode 0600; the data dir is created (0700) if
    needed.

    Args:
        data_dir: the data dir.
        network: the network name to set in the file, if any.

    Returns:
        The path of the config file (the existing one, untouched, if there was one).

    Raises:
        ConfigError: `network` is not a valid network name.
        DataDirError: the data dir cannot be created or written to.
    """
    path = data_dir / CONFIG_FILE_NAME
    text = render_default_config(network=network)
    if data_dir.exists() and not data_dir.is_dir():
        raise DataDirError(f"data directory {data_dir} is not a directory")
    try:
        ensure_private_dir(data_dir)
    except OSError as exc:
        raise DataDirError(
            f"cannot create data directory {data_dir}: {exc.strerror or exc}"
        ) from None
    if path.exists():
        log.debug("config file %s exists; not overwriting it", path)
        return path
    try:
        atomic_write(path, text.encode("utf-8"), mode=0o600, overwrite=False)
    except FileExistsError:
        return path
    except OSError as exc:
        raise DataDirError(f"cannot write {path}: {exc.strerror or exc}") from None
    log.info("wrote default configuration to %s", path)
    return path
