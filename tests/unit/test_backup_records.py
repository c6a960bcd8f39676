"""The ``backups`` DHT record: only the owner publishes its list, and the list is well formed."""

from __future__ import annotations

import pytest

from plexinode.dht import backup_records as br
from plexinode.dht.record_types import default_registry
from plexinode.dht.records import InvalidRecord, Reason, sign_record, validate_record
from plexinode.identity import Identity
from plexinode.wire.codec import pack

OWNER = Identity.from_seed(bytes(32))
OTHER = Identity.from_seed(bytes([2]) * 32)
NOW = 1_000_000.0
IDS = [bytes([i]) * 16 for i in range(3)]


def record(identity: Identity, key: bytes, value: bytes, ttl: int = br.BACKUPS_MAX_TTL):
    return sign_record(identity, br.BACKUPS, key, seq=1, expires_at=int(NOW) + ttl, value=value)


def test_owner_publishes_its_list_for_the_lease_period() -> None:
    key = br.backups_key(OWNER.node_id)
    rec = record(OWNER, key, br.encode_backup_ids(IDS))
    validate_record(rec, NOW, default_registry())
    assert br.decode_backup_ids(rec.value) == IDS
    full = br.encode_backup_ids([bytes([i]) * 16 for i in range(br.BACKUPS_MAX_IDS)])
    assert len(full) == br.BACKUPS_MAX_VALUE_BYTES
    validate_record(record(OWNER, key, full), NOW, default_registry())
    assert br.backups_key(OWNER.node_id) != br.backups_key(OTHER.node_id)


def test_nobody_else_publishes_under_the_owners_key() -> None:
    rec = record(OTHER, br.backups_key(OWNER.node_id), br.encode_backup_ids(IDS))
    with pytest.raises(InvalidRecord) as caught:
        validate_record(rec, NOW, default_registry())
    assert caught.value.reason == Reason.KEY_MISMATCH


def test_a_record_beyond_the_lease_horizon_is_from_the_future() -> None:
    rec = record(OWNER, br.backups_key(OWNER.node_id), b"\x90", ttl=br.BACKUPS_MAX_TTL + 10 * 3600)
    with pytest.raises(InvalidRecord) as caught:
        validate_record(rec, NOW, default_registry())
    assert caught.value.reason == Reason.FROM_THE_FUTURE


@pytest.mark.parametrize(
    "value",
    [pack([b"short"]), pack([IDS[0], IDS[0]]), pack({"a": 1}), pack(["x" * 16]), b"\xc1", pack(3)],
)
def test_malformed_lists_are_bad_values(value: bytes) -> None:
    with pytest.raises(InvalidRecord) as caught:
        br.decode_backup_ids(value)
    assert caught.value.reason == Reason.BAD_VALUE


def test_encoding_refuses_what_a_receiver_would() -> None:
    with pytest.raises(ValueError, match="at most 32"):
        br.encode_backup_ids([bytes([i]) * 16 for i in range(33)])
    with pytest.raises(ValueError, match="distinct 16-byte"):
        br.encode_backup_ids([IDS[0], IDS[0]])
    with pytest.raises(ValueError, match="distinct 16-byte"):
        br.encode_backup_ids([b"x"])


def test_home_keys_differ_by_owner_and_home_and_from_the_backups_key() -> None:
    home = IDS[0]
    key = br.home_key(OWNER.node_id, home)
    assert len(key) == 32
    assert key != br.home_key(OTHER.node_id, home)
    assert key != br.home_key(OWNER.node_id, IDS[1])
    assert key != br.backups_key(OWNER.node_id)
    with pytest.raises(ValueError, match="16-byte"):
        br.home_key(OWNER.node_id, b"short")


def test_share_indices_round_trip_and_bad_values_are_refused() -> None:
    assert br.decode_share_indices(br.encode_share_indices([7, 0, 255])) == [0, 7, 255]
    full = list(range(br.MAX_SHARE_INDICES))
    assert br.decode_share_indices(br.encode_share_indices(full)) == full
    for bad in ([], [1, 1], [256], [-1], list(range(br.MAX_SHARE_INDICES + 1))):
        with pytest.raises(ValueError, match="share ind"):
            br.encode_share_indices(bad)
    for value in (b"", b"\x02\x01", b"\x01\x01", bytes(range(br.MAX_SHARE_INDICES + 1))):
        with pytest.raises(InvalidRecord) as info:
            br.decode_share_indices(value)
        assert info.value.reason == Reason.BAD_VALUE
