"""Tests of the configuration loader: layers, validation, messages and the default file."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plexinode import config as config_module
from plexinode.config import (
    CONFIG_FILE_NAME,
    SETTINGS,
    SETTINGS_BY_KEY,
    Settings,
    format_duration,
    format_size,
    load_config,
    parse_duration,
    parse_size,
    render_default_config,
    write_default_config,
)
from plexinode.config import defaults as config_defaults
from plexinode.config import table as config_table
from plexinode.errors import ConfigError, DataDirError
from plexinode.net.address import Address
from plexinode.net.settings import DatagramSettings


def _write(data_dir: Path, text: str) -> Path:
    path = data_dir / CONFIG_FILE_NAME
    path.write_text(text, encoding="utf-8")
    return path


def _load(
    data_dir: Path, env: dict[str, str] | None = None, **flags: object
) -> config_module.Config:
    return load_config(
        data_dir, env=env or {}, flags={k.replace("__", "."): v for k, v in flags.items()}
    )


def _sources(cfg: config_module.Config) -> dict[str, str]:
    return {row.key: row.source for row in cfg.show()}


# --- the table ------------------------------------------------------------------------------


def test_table_covers_every_dataclass_field_and_defaults_match() -> None:
    assert set(SETTINGS_BY_KEY) == set(config_table._dataclass_keys(Settings()))
    assert SETTINGS_BY_KEY["datagram.request_timeout"].default == DatagramSettings().request_timeout
    assert SETTINGS_BY_KEY["listen"].env_var == "PLEXINODE_LISTEN"
    assert (
        SETTINGS_BY_KEY["datagram.request_timeout"].env_var == "PLEXINODE_DATAGRAM_REQUEST_TIMEOUT"
    )


def test_a_setting_missing_from_the_table_fails_the_import_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config_table._check_table()  # the real table passes
    partial = {k: v for k, v in SETTINGS_BY_KEY.items() if k != "datagram.retries"}
    monkeypatch.setattr(config_table, "SETTINGS_BY_KEY", partial)
    with pytest.raises(RuntimeError, match=r"differ: \['datagram.retries'\]"):
        config_table._check_table()


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.key)
def test_every_default_round_trips_through_its_file_and_text_forms(
    setting: config_module.Setting,
) -> None:
    kind = setting.kind
    assert kind.from_value(kind.toml(setting.default)) == setting.default
    json.dumps(kind.json(setting.default))
    if setting.key not in ("bootstrap", "stream.trusted_hosts", "datagram.trusted_hosts"):
        # "(none)" is for people, the env form of an empty list is ""
        assert kind.from_text(kind.text(setting.default)) == setting.default


# --- layers ---------------------------------------------------------------------------------


def test_no_file_no_env_no_flags_gives_the_defaults(tmp_path: Path) -> None:
    cfg = _load(tmp_path)
    assert cfg.settings == Settings()
    assert cfg.path == tmp_path / CONFIG_FILE_NAME
    assert set(_sources(cfg).values()) == {"default"}


def test_missing_data_dir_gives_the_defaults(tmp_path: Path) -> None:
    assert _load(tmp_path / "not-yet").settings == Settings()


def test_file_overrides_defaults(tmp_path: Path) -> None:
    _write(
        tmp_path,
        """
        listen = "127.0.0.1:0"
        bootstrap = ["10.0.0.1:7420", "[::1]:7421"]
        network = "home-lab"
        log_level = "DEBUG"
        [datagram]
        request_timeout = "500ms"
        retries = 0
        replay_memory = 30
        [stream]
        max_frame_bytes = "64KiB"
        [storage]
        quota_bytes = 1048576
        owner_quota_bytes = "256KiB"
        """,
    )
    cfg = _load(tmp_path)
    s = cfg.settings
    assert s.listen == Address("127.0.0.1", 0)
    assert s.bootstrap == (Address("10.0.0.1", 7420), Address("::1", 7421))
    assert s.network == "home-lab"
    assert s.log_level == "debug"
    assert s.datagram == DatagramSettings(request_timeout=0.5, retries=0, replay_memory=30.0)
    assert s.stream.max_frame_bytes == 64 * 1024
    assert s.stream.handshake_timeout == Settings().stream.handshake_timeout
    assert s.storage.quota_bytes == 1 << 20
    assert s.storage.owner_quota_bytes == 256 << 10
    assert Settings().storage.owner_quota_bytes == 0
    sources = _sources(cfg)
    assert sources["datagram.retries"] == "file"
    assert sources["stream.handshake_timeout"] == "default"


def test_dotted_keys_in_the_file_work_like_tables(tmp_path: Path) -> None:
    _write(tmp_path, 'datagram.retries = 5\nstream.handshake_timeout = "1m"\n')
    s = _load(tmp_path).settings
    assert (s.datagram.retries, s.stream.handshake_timeout) == (5, 60.0)


def test_env_overrides_file(tmp_path: Path) -> None:
    _write(tmp_path, '[datagram]\nrequest_timeout = "5s"\nretries = 3\n')
    env = {
        "PLEXINODE_DATAGRAM_REQUEST_TIMEOUT": "250ms",
        "PLEXINODE_BOOTSTRAP": "10.0.0.1:1, 10.0.0.2:2,",
        "PLEXINODE_STORAGE_QUOTA_BYTES": "2GiB",
        "PLEXINODE_LOG_FORMAT": "json",
    }
    cfg = _load(tmp_path, env)
    s = cfg.settings
    assert s.datagram.request_timeout == 0.25
    assert s.datagram.retries == 3
    assert s.bootstrap == (Address("10.0.0.1", 1), Address("10.0.0.2", 2))
    assert s.storage.quota_bytes == 2 << 30
    assert s.log_format == "json"
    sources = _sources(cfg)
    assert sources["datagram.request_timeout"] == "env PLEXINODE_DATAGRAM_REQUEST_TIMEOUT"
    assert sources["datagram.retries"] == "file"


def test_flags_override_env(tmp_path: Path) -> None:
    _write(tmp_path, 'listen = "0.0.0.0:1"\n')
    env = {"PLEXINODE_LISTEN": "0.0.0.0:2", "PLEXINODE_DATAGRAM_RETRIES": "4"}
    cfg = _load(
        tmp_path,
        env,
        listen="127.0.0.1:3",  # text
        bootstrap=(Address("10.0.0.9", 9),),  # already parsed
        datagram__retries=None,  # not given
        datagram__request_timeout=1.5,
        stream__max_frame_bytes="2MiB",
    )
    s = cfg.settings
    assert s.listen == Address("127.0.0.1", 3)
    assert s.bootstrap == (Address("10.0.0.9", 9),)
    assert s.datagram.retries == 4
    assert s.datagram.request_timeout == 1.5
    assert s.stream.max_frame_bytes == 2 << 20
    sources = _sources(cfg)
    assert sources["listen"] == sources["bootstrap"] == "flag"
    assert sources["datagram.retries"] == "env PLEXINODE_DATAGRAM_RETRIES"


def test_unused_repeatable_flag_does_not_clear_bootstrap(tmp_path: Path) -> None:
    cfg = _load(tmp_path, {"PLEXINODE_BOOTSTRAP": "10.0.0.1:1"}, bootstrap=())
    assert cfg.settings.bootstrap == (Address("10.0.0.1", 1),)
    assert _sources(cfg)["bootstrap"] == "env PLEXINODE_BOOTSTRAP"


def test_empty_bootstrap_env_clears_the_file_list(tmp_path: Path) -> None:
    _write(tmp_path, 'bootstrap = ["10.0.0.1:1"]\n')
    assert _load(tmp_path, {"PLEXINODE_BOOTSTRAP": ""}).settings.bootstrap == ()


def test_env_defaults_to_os_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLEXINODE_NETWORK", "from-env")
    monkeypatch.setenv("PLEXINODE_HOME", str(tmp_path))  # the data dir, not a setting
    cfg = load_config(tmp_path)
    assert cfg.settings.network == "from-env"
    assert cfg.source("network") == "env PLEXINODE_NETWORK"


def test_show_rows_are_json_friendly_with_human_text(tmp_path: Path) -> None:
    rows = {row.key: row for row in _load(tmp_path, {"PLEXINODE_BOOTSTRAP": "[::1]:5"}).show()}
    assert [row.key for row in _load(tmp_path).show()] == [s.key for s in SETTINGS]
    assert (rows["listen"].value, rows["listen"].text) == ("0.0.0.0:7420", "0.0.0.0:7420")
    assert (rows["bootstrap"].value, rows["bootstrap"].text) == (["[::1]:5"], "[::1]:5")
    timeout = rows["datagram.request_timeout"]
    assert (timeout.value, timeout.text, timeout.source) == (2.0, "2s", "default")
    frame = rows["stream.max_frame_bytes"]
    assert (frame.value, frame.text) == (1 << 20, "1MiB")
    assert rows["storage.quota_bytes"].text == "10GiB"
    assert rows["datagram.replay_memory"].text == "10m"
    json.dumps([dataclasses.asdict(row) for row in rows.values()])


# --- bad input ------------------------------------------------------------------------------


def test_unknown_key_in_file_names_key_file_and_hint(tmp_path: Path) -> None:
    path = _write(tmp_path, '[datagram]\nrequest_timout = "3s"\n')
    with pytest.raises(ConfigError) as info:
        _load(tmp_path)
    assert str(info.value) == (
        f"unknown setting 'datagram.request_timout' in {path} "
        "(did you mean 'datagram.request_timeout'?)"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("retries = 3", "unknown setting 'retries' in .* \\(did you mean 'datagram.retries'\\?\\)"),
        ("[datagram]\nlisten = '1.2.3.4:5'", "unknown setting 'datagram.listen' .*'listen'"),
        (
            "[datagrams]\nretries = 3",
            "unknown table 'datagrams' .*\\(did you mean 'datagram'\\?\\)",
        ),
        ("[datagram.extra]\na = 1", "unknown table 'datagram.extra'"),
        ("colour = 'blue'", "unknown setting 'colour' in [^(]*$"),
        ("datagram = 5", "'datagram' in .* must be a table"),
    ],
)
def test_unknown_or_misplaced_names_in_file(tmp_path: Path, text: str, message: str) -> None:
    _write(tmp_path, text + "\n")
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path)


def test_unknown_env_var_is_an_error_with_hint(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, {"PLEXINODE_DATAGRAM_REQUEST_TIMOUT": "3s"})
    assert str(info.value) == (
        "unknown environment variable PLEXINODE_DATAGRAM_REQUEST_TIMOUT "
        "(did you mean PLEXINODE_DATAGRAM_REQUEST_TIMEOUT?)"
    )
    with pytest.raises(
        ConfigError, match=r"PLEXINODE_RETRIES \(did you mean PLEXINODE_DATAGRAM_RETRIES"
    ):
        _load(tmp_path, {"PLEXINODE_RETRIES": "3"})
    with pytest.raises(ConfigError, match=r"PLEXINODE_ZZZZ$"):
        _load(tmp_path, {"PLEXINODE_ZZZZ": "1"})


def test_other_env_vars_and_plexinode_home_are_ignored(tmp_path: Path) -> None:
    cfg = _load(tmp_path, {"PLEXINODE_HOME": "/elsewhere", "HOME": "/root", "PLEXINODEX": "1"})
    assert cfg.settings == Settings()


def test_unknown_flag_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"unknown setting 'listn' given as a flag \(did you mean 'listen'"
    ):
        load_config(tmp_path, env={}, flags={"listn": "1.2.3.4:5"})


def test_corrupt_toml_names_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path, 'network = "ok"\n\nlisten = = 3\n')
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))} is not valid TOML: .*line 3"):
        _load(tmp_path)


def test_non_utf8_file_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / CONFIG_FILE_NAME).write_bytes(b'network = "ok"\nlisten = "\xff"\n')
    with pytest.raises(ConfigError, match=r"is not valid TOML: not UTF-8 text \(at line 2\)"):
        _load(tmp_path)


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / CONFIG_FILE_NAME).mkdir()
    with pytest.raises(ConfigError, match=r"cannot read .*config.toml"):
        _load(tmp_path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "datagram.retries = '3'",
            r"invalid value '3' for 'datagram.retries' \(in .*\): expected an integer, got string",
        ),
        ("datagram.retries = true", r"'datagram.retries' .*expected an integer, got boolean"),
        ("datagram.retries = 2.0", r"expected an integer, got number"),
        ("datagram.retries = 11", r"invalid value 11 for 'datagram.retries' .*between 0 and 10"),
        ("datagram.max_inflight_handlers = 0", r"between 1 and 10000"),
        ("stream.max_pending_handshakes = 100001", r"between 1 and 100000"),
        ("stream.max_frame_bytes = 1023", r"between 1KiB and 16MiB"),
        ("stream.max_frame_bytes = '17MiB'", r"between 1KiB and 16MiB"),
        ("stream.max_frame_bytes = 1.5", r"expected a size"),
        ("storage.quota_bytes = '10XB'", r"unknown unit 'XB'"),
        ("storage.quota_bytes = -1", r"at least 0B"),
        (
            "datagram.request_timeout = '3x'",
            r"'datagram.request_timeout' .*expected a number with a unit",
        ),
        ("datagram.request_timeout = 0", r"must be a positive duration"),
        ("datagram.request_timeout = '0ms'", r"must be a positive duration"),
        ("datagram.request_timeout = -1", r"must be a positive duration"),
        ("datagram.replay_memory = inf", r"must be a positive duration"),
        ("stream.handshake_timeout = [1]", r"expected a duration .*got array"),
        ("listen = 7420", r"'listen' .*expected an address HOST:PORT, got integer"),
        ("listen = 'localhost'", r"'listen' .*expected HOST:PORT"),
        ("listen = '1.2.3.4:70000'", r"port out of range"),
        ("listen = '::1:5'", r"write IPv6 addresses as \[ADDR\]:PORT"),
        ("bootstrap = '1.2.3.4'", r"'bootstrap' .*expected HOST:PORT"),
        ("bootstrap = [1]", r"'bootstrap' .*expected an address HOST:PORT, got integer"),
        ("bootstrap = {a = 1}", r"expected a list of addresses"),
        ("network = 'Home Lab'", r"'network' .*1-64 characters"),
        ("network = ''", r"1-64 characters"),
        (f"network = '{'a' * 65}'", r"1-64 characters"),
        ("log_level = 'verbose'", r"'log_level' .*must be one of debug, info, warning, error"),
        ("log_format = 1", r"expected a string, got integer"),
    ],
)
def test_bad_values_in_file_name_key_value_and_source(
    tmp_path: Path, text: str, message: str
) -> None:
    path = _write(tmp_path, text + "\n")
    with pytest.raises(ConfigError, match=message) as info:
        _load(tmp_path)
    assert f"(in {path})" in str(info.value)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("PLEXINODE_DATAGRAM_RETRIES", "three", "expected an integer"),
        ("PLEXINODE_DATAGRAM_RETRIES", "-1", "between 0 and 10"),
        ("PLEXINODE_DATAGRAM_REQUEST_TIMEOUT", "1h30m", "expected a number with a unit"),
        ("PLEXINODE_STREAM_MAX_FRAME_BYTES", "1.5B", "not a whole number of bytes"),
        ("PLEXINODE_LISTEN", "", "expected HOST:PORT"),
        ("PLEXINODE_BOOTSTRAP", "1.2.3.4:1,nope", "expected HOST:PORT"),
        ("PLEXINODE_NETWORK", "UPPER_case", "1-64 characters"),
    ],
)
def test_bad_env_values_name_the_variable(
    tmp_path: Path, name: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        _load(tmp_path, {name: value})
    assert f"(environment variable {name})" in str(info.value)
    assert repr(value) in str(info.value)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("datagram.retries", "x", "expected an integer"),
        ("datagram.retries", 99, "between 0 and 10"),
        ("listen", 5, "expected an address"),
        ("datagram.request_timeout", -2.0, "positive duration"),
    ],
)
def test_bad_flag_values(tmp_path: Path, key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=rf"'{re.escape(key)}' \(flag\): .*{message}"):
        load_config(tmp_path, env={}, flags={key: value})


# --- durations and sizes --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30.0),
        ("15m", 900.0),
        ("24h", 86_400.0),
        ("7d", 604_800.0),
        ("1.5h", 5_400.0),
        ("30", 30.0),
        (" 2 s ", 2.0),
        ("2S", 2.0),
        ("0.25", 0.25),
        ("1e-05s", 1e-05),
        ("0s", 0.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "s", "30x", "-5s", "1h30m", "inf", "nan", "5 m s", "1e400s", "1,5s"]
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (2.0, "2s"),
        (0.5, "500ms"),
        (60, "1m"),
        (90, "90s"),
        (3600, "1h"),
        (604_800, "7d"),
        (0, "0s"),
        (1e-4, "0.0001s"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("seconds", [-1.0, float("inf"), float("nan")])
def test_format_duration_rejects(seconds: float) -> None:
    with pytest.raises(ValueError, match="cannot format duration"):
        format_duration(seconds)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512", 512),
        ("512B", 512),
        ("64KiB", 64 << 10),
        ("10MiB", 10 << 20),
        ("10GiB", 10 << 30),
        ("1TiB", 1 << 40),
        ("10KB", 10_000),
        ("10MB", 10_000_000),
        ("1GB", 10**9),
        ("1 mib", 1 << 20),
        ("1.5KiB", 1536),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "expected a number of bytes"),
        ("KiB", "expected a number of bytes"),
        ("-1", "expected a number of bytes"),
        ("1K", "unknown unit 'K'"),
        ("10XB", "unknown unit 'XB'"),
        ("1.5B", "not a whole number of bytes"),
        ("0.1KiB", "not a whole number of bytes"),
    ],
)
def test_parse_size_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=rf"invalid size {re.escape(repr(text))}: {message}"):
        parse_size(text)


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0B"),
        (1, "1B"),
        (1000, "1000B"),
        (1024, "1KiB"),
        (1536, "1536B"),
        (1 << 20, "1MiB"),
        (10 << 30, "10GiB"),
        (3 << 40, "3TiB"),
    ],
)
def test_format_size(size: int, text: str) -> None:
    assert format_size(size) == text
    with pytest.raises(ValueError, match="cannot format size"):
        format_size(-1)


@given(st.floats(min_value=0, max_value=1e15, allow_nan=False, allow_infinity=False))
def test_duration_round_trip(seconds: float) -> None:
    text = format_duration(seconds)
    assert parse_duration(text) == seconds
    assert format_duration(parse_duration(text)) == text


@given(st.integers(min_value=0, max_value=10**9), st.sampled_from(["ms", "s", "m", "h", "d"]))
def test_whole_unit_durations_format_exactly(count: int, unit: str) -> None:
    seconds = parse_duration(f"{count}{unit}")
    assert parse_duration(format_duration(seconds)) == seconds


@given(st.integers(min_value=0, max_value=1 << 62))
def test_size_round_trip(size: int) -> None:
    text = format_size(size)
    assert parse_size(text) == size
    assert format_size(parse_size(text)) == text


# --- the default file -----------------------------------------------------------------------


def test_default_file_loads_to_the_defaults(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    path = write_default_config(data_dir)
    assert path == data_dir / CONFIG_FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    cfg = _load(data_dir)
    assert cfg.settings == Settings()
    assert set(_sources(cfg).values()) == {"default"}


def test_default_file_with_network_sets_only_the_network(tmp_path: Path) -> None:
    write_default_config(tmp_path, network="home-lab")
    cfg = _load(tmp_path)
    assert cfg.settings == Settings(network="home-lab")
    assert {k for k, v in _sources(cfg).items() if v != "default"} == {"network"}


def test_uncommenting_every_default_in_the_file_still_gives_the_defaults(tmp_path: Path) -> None:
    text = render_default_config()
    setting_line = re.compile(r"^# ([a-z_]+ = .*)$", re.MULTILINE)
    uncommented = setting_line.sub(r"\1", text)
    assert len(setting_line.findall(text)) == len(SETTINGS)
    _write(tmp_path, uncommented)
    cfg = _load(tmp_path)
    assert cfg.settings == Settings()
    assert set(_sources(cfg).values()) == {"file"}
    for setting in SETTINGS:
        assert setting.env_var in text


def test_default_file_does_not_overwrite(tmp_path: Path) -> None:
    path = _write(tmp_path, 'network = "mine"\n')
    assert write_default_config(tmp_path, network="other") == path
    assert path.read_text() == 'network = "mine"\n'


def test_default_file_rejects_a_bad_network_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'network'.*1-64 characters"):
        write_default_config(tmp_path, network="Bad Name")
    assert not (tmp_path / CONFIG_FILE_NAME).exists()


def test_default_file_in_unusable_data_dir_is_a_data_dir_error(tmp_path: Path) -> None:
    regular = tmp_path / "file"
    regular.write_text("")
    with pytest.raises(
        DataDirError, match=f"data directory {re.escape(str(regular))} is not a directory"
    ):
        write_default_config(regular)
    with pytest.raises(DataDirError, match=r"cannot create data directory .*Not a directory"):
        write_default_config(regular / "data")


def test_default_file_without_write_permission_is_a_data_dir_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(path: Path, data: bytes, **kwargs: object) -> None:
        raise PermissionError(13, os.strerror(13), str(path))

    monkeypatch.setattr(config_defaults, "atomic_write", refuse)
    with pytest.raises(DataDirError, match=r"cannot write .*config.toml: Permission denied"):
        write_default_config(tmp_path)


def test_a_probe_timeout_not_below_the_period_is_refused_with_both_sources(
    tmp_path: Path,
) -> None:
    _write(tmp_path, '[membership]\nprobe_interval = "500ms"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path, env={"PLEXINODE_MEMBERSHIP_PROBE_TIMEOUT": "1s"})
    text = str(caught.value)
    assert "membership.probe_timeout (1s, env PLEXINODE_MEMBERSHIP_PROBE_TIMEOUT)" in text
    assert "membership.probe_interval (500ms, file)" in text


def test_trusted_hosts_are_networks(tmp_path: Path) -> None:
    _write(tmp_path, 'stream.trusted_hosts = ["10.1.2.3/16", "fd00::/8", "127.0.0.1"]\n')
    assert _load(tmp_path).settings.stream.trusted_hosts == (
        "10.1.0.0/16",
        "fd00::/8",
        "127.0.0.1/32",
    )
    env = {"PLEXINODE_STREAM_TRUSTED_HOSTS": "192.168.0.0/24, 10.0.0.1"}
    assert _load(tmp_path, env=env).settings.stream.trusted_hosts == (
        "192.168.0.0/24",
        "10.0.0.1/32",
    )
    for bad, message in (
        ('stream.trusted_hosts = ["example.org"]', "is not a network"),
        ("stream.trusted_hosts = 3", "expected a list of networks"),
        ("stream.trusted_hosts = [3]", "expected a network"),
    ):
        _write(tmp_path, bad + "\n")
        with pytest.raises(ConfigError, match=message):
            _load(tmp_path)
