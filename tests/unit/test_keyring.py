"""Network keyrings: open and private networks, rotation steps, the keyring file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from plexinode.errors import DataDirError
from plexinode.net.keyring import (
    MAX_KEYS,
    Keyring,
    key_id,
    keyring_path,
    load_keyring,
    network_tag,
    open_network_key,
    parse_key,
    save_keyring,
)


def test_open_networks_are_kept_apart_by_name() -> None:
    a, b = Keyring.open("open"), Keyring.open("lab")
    assert not a.private
    assert a.primary == open_network_key("open") != b.primary
    assert a.match(b"data", b.tag(b"data")) is None
    assert a.match(b"data", a.tag(b"data")) == a.primary


def test_rotation_install_use_remove() -> None:
    ring = Keyring.generate()
    old, new = ring.primary, Keyring.generate().primary
    assert ring.install(new)
    assert not ring.install(new)  # already there
    assert ring.match(b"x", network_tag(new, b"x")) == new
    with pytest.raises(ValueError, match="primary key cannot be removed"):
        ring.remove(old)
    ring.use(new)
    assert ring.tag(b"x") == network_tag(new, b"x")
    ring.remove(old)
    assert list(ring) == [new]
    assert ring.match(b"x", network_tag(old, b"x")) is None
    with pytest.raises(ValueError, match="not installed"):
        ring.use(old)
    with pytest.raises(ValueError, match="not installed"):
        ring.remove(old)
    with pytest.raises(ValueError, match="32 bytes"):
        ring.install(b"short")


def test_the_keyring_is_bounded() -> None:
    ring = Keyring.generate()
    for _ in range(MAX_KEYS - 1):
        ring.install(Keyring.generate().primary)
    with pytest.raises(ValueError, match="full"):
        ring.install(Keyring.generate().primary)
    with pytest.raises(ValueError, match=f"1-{MAX_KEYS} keys"):
        Keyring([], b"x" * 32, private=True)


def test_listings_show_ids_never_keys() -> None:
    ring = Keyring.generate()
    shown = json.dumps(ring.describe())
    assert ring.primary.hex() not in shown
    assert key_id(ring.primary) in shown


def test_the_keyring_file_round_trips_and_corruption_is_reported(tmp_path: Path) -> None:
    assert load_keyring(tmp_path, "lab").primary == open_network_key("lab")  # no file: open
    ring = Keyring.generate()
    ring.install(Keyring.generate().primary)
    ring.root, ring.credentials = b"r" * 32, (b"\x00grant", b"\x00another")
    save_keyring(tmp_path, ring)
    assert keyring_path(tmp_path).stat().st_mode & 0o777 == 0o600
    loaded = load_keyring(tmp_path, "lab")
    assert loaded.private
    assert loaded.primary == ring.primary
    assert list(loaded) == list(ring)
    assert (loaded.root, loaded.credentials) == (ring.root, ring.credentials)
    keyring_path(tmp_path).write_text('{"primary": "00"}')
    with pytest.raises(DataDirError, match="corrupt"):
        load_keyring(tmp_path, "lab")
    # A private keyring from before root keys: refused with what to do, not run as it was.
    ring.root = None
    save_keyring(tmp_path, ring)
    with pytest.raises(DataDirError, match="no root key"):
        load_keyring(tmp_path, "lab")


def test_an_admitted_node_drops_its_open_key_for_the_private_network() -> None:
    ring = Keyring.open("lab")
    key = Keyring.generate().primary
    ring.become_private([key], key, b"r" * 32, (b"\x00grant",))
    assert (list(ring), ring.primary, ring.retired) == ([key], key, [])
    assert (ring.private, ring.root, ring.credentials) == (True, b"r" * 32, (b"\x00grant",))
    ring.tickets = [b"t" * 32]
    tag = network_tag(b"t" * 32, b"msg1")
    assert ring.match(b"msg1", tag) is None  # a ticket's key never admits a datagram
    assert ring.match_retired(b"msg1", tag) is None
    assert ring.match_ticket(b"msg1", tag) == b"t" * 32
    assert ring.match_ticket(b"msg1", network_tag(b"u" * 32, b"msg1")) is None


@pytest.mark.parametrize("text", ["", "zz" * 32, "00" * 31, "00" * 33])
def test_keys_are_64_hex_digits(text: str) -> None:
    with pytest.raises(ValueError, match="64 hex digits"):
        parse_key(text)
    assert parse_key(" " + "ab" * 32 + "\n") == bytes([0xAB]) * 32


def test_keys_are_tried_primary_first_and_retired_keys_never() -> None:
    ring = Keyring.generate()
    old, new = ring.primary, Keyring.generate().primary
    ring.install(new)
    assert ring.by_preference() == [old, new]
    ring.use(new)
    assert ring.by_preference() == [new, old]
    ring.remove(old)
    assert ring.by_preference() == [new]
