"""The manifest: columns that agree, the owner's signature, a private part only it opens."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plexinode.identity import Identity
from plexinode.shards import derive, manifest, pipeline
from plexinode.shards.manifest import Manifest, ManifestError, Private, SegmentTable
from plexinode.wire import codec

OWNER = Identity.from_seed(bytes(32))
STRANGER = Identity.from_seed(bytes([1]) * 32)
SECRET = bytes(range(32))
BACKUP = b"B" * 16
EARLIER = b"E" * 16
NONCE = bytes(range(24))


def make(
    plaintexts: list[bytes], k: int = 2, n: int = 4, reused: int = 0
) -> tuple[Manifest, list[pipeline.EncodedSegment]]:
    table = SegmentTable(BACKUP, n)
    encoded = [pipeline.encode_segment(SECRET, p, k, n) for p in plaintexts]
    for i, seg in enumerate(encoded):
        home = EARLIER if i < reused else BACKUP
        table.add(seg.identity, home, seg.length, len(seg.blocks[0]), seg.roots)
    private = Private.of(
        "photos", "/home/me/photos", sum(map(len, plaintexts)) - 3, 3, table.lengths
    )
    key = derive.manifest_key(SECRET, BACKUP)
    sealed = manifest.seal_private(private, key, NONCE, OWNER.public_key, BACKUP)
    built = manifest.build(
        owner=OWNER.public_key,
        backup_id=BACKUP,
        created=1000.0,
        lease_expires=2000.0,
        k=k,
        n=n,
        table=table,
        nonce=NONCE,
        sealed=sealed,
    ).signed_by(OWNER)
    return built, encoded


PLAINTEXTS = [b"first segment" * 50, b"second" * 70, b"third!" * 9]


def test_round_trip_through_bytes_and_segment_access() -> None:
    built, encoded = make(PLAINTEXTS, reused=1)
    decoded = Manifest.decode(built.to_bytes_checked())
    assert decoded == built
    assert decoded.segment_count == 3
    assert decoded.homes == (BACKUP, EARLIER)
    first = decoded.segment(0)
    assert first.home == EARLIER
    assert first.identity == encoded[0].identity
    assert first.roots == encoded[0].roots
    assert first.block_size == len(encoded[0].blocks[0])
    assert [s.home for s in decoded.segments()] == [EARLIER, BACKUP, BACKUP]
    with pytest.raises(IndexError):
        decoded.segment(3)
    with pytest.raises(IndexError):
        decoded.segment(-1)


def test_private_part_opens_with_the_owners_key_only() -> None:
    built, _ = make(PLAINTEXTS)
    private = built.open_private(derive.manifest_key(SECRET, BACKUP))
    assert private.name == "photos"
    assert private.segment_lengths() == [len(p) for p in PLAINTEXTS]
    assert b"photos" not in built.to_bytes_checked()
    with pytest.raises(ManifestError, match="does not open"):
        built.open_private(derive.manifest_key(bytes(32), BACKUP))
    moved = dataclasses.replace(built, backup_id=EARLIER)  # the sealed part is bound to its ID
    with pytest.raises(ManifestError, match="does not open"):
        moved.open_private(derive.manifest_key(SECRET, BACKUP))


def reseal(built: Manifest, private: object) -> Manifest:
    key = derive.manifest_key(SECRET, BACKUP)
    raw = codec.pack(private)
    import nacl.bindings

    sealed = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
        raw, built.owner + built.backup_id, NONCE, key
    )
    return dataclasses.replace(built, sealed=sealed)


def test_private_parts_that_disagree_with_the_table() -> None:
    built, _ = make(PLAINTEXTS)
    key = derive.manifest_key(SECRET, BACKUP)
    good = built.open_private(key)
    with pytest.raises(ManifestError, match="malformed private part"):
        reseal(built, ["x"]).open_private(key)
    short = dataclasses.replace(good, lengths=good.lengths[:-4])
    with pytest.raises(ManifestError, match="does not match the segment table"):
        reseal(built, short.to_wire()).open_private(key)
    wrong_total = dataclasses.replace(good, data_bytes=good.data_bytes + 1)
    with pytest.raises(ManifestError, match="does not match the segment table"):
        reseal(built, wrong_total.to_wire()).open_private(key)
    lengths = good.segment_lengths()
    lengths[0] += 10
    lengths[2] -= 10
    swapped = Private.of(good.name, good.source, good.data_bytes, good.index_bytes, lengths)
    with pytest.raises(ManifestError, match="segment 0's length"):
        reseal(built, swapped.to_wire()).open_private(key)


def test_seal_private_checks_sizes() -> None:
    with pytest.raises(ValueError, match="24-byte nonce"):
        manifest.seal_private(Private.of("", "", 0, 0, []), bytes(32), b"n", b"o", b"b")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"k": 5}, "exceeds n"),
        ({"identities": b"x" * 33}, "not whole"),
        ({"home_of": b"\0"}, "disagree in length"),
        ({"block_sizes": b"\0"}, "disagree in length"),
        ({"roots": b""}, "do not match n"),
        ({"homes": ()}, "start with the backup"),
        ({"homes": (EARLIER, BACKUP)}, "start with the backup"),
        ({"homes": (BACKUP, BACKUP)}, "start with the backup"),
        ({"home_of": b"\0\x05" * 3}, "does not list"),
        ({"block_sizes": b"\0\0\0\0" * 3}, "empty blocks"),
        ({"created": 5.0}, "not signed by its owner"),
    ],
)
def test_inconsistent_or_forged_manifests_are_refused(
    change: dict[str, object], message: str
) -> None:
    built, _ = make(PLAINTEXTS)
    forged = dataclasses.replace(built, **change)  # type: ignore[arg-type]
    with pytest.raises(ManifestError, match=message):
        forged.check()


def test_a_manifest_signed_by_another_key_is_that_keys_not_the_owners() -> None:
    built, _ = make(PLAINTEXTS)
    resigned = built.signed_by(STRANGER)
    resigned.check()  # valid, but its owner is now the stranger: callers compare owners
    assert resigned.owner == STRANGER.public_key


def test_malformed_bytes() -> None:
    with pytest.raises(ManifestError, match="malformed manifest"):
        Manifest.decode(b"\x93\x01")


def test_builder_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    table = SegmentTable(BACKUP, 2)
    with pytest.raises(ValueError, match="n roots"):
        table.add(bytes(32), BACKUP, 1, 9, [bytes(32)])
    monkeypatch.setattr(manifest, "MAX_HOMES", 2)
    table.add(bytes(32), EARLIER, 1, 9, [bytes(32)] * 2)
    table.add(bytes(32), EARLIER, 1, 9, [bytes(32)] * 2)
    assert len(table) == 2
    with pytest.raises(ManifestError, match="at most 1 others"):
        table.add(bytes(32), b"X" * 16, 1, 9, [bytes(32)] * 2)


@settings(max_examples=15, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 3000), min_size=0, max_size=6),
    k=st.integers(1, 5),
    extra=st.integers(0, 4),
)
def test_manifests_round_trip_over_random_shapes(sizes: list[int], k: int, extra: int) -> None:
    plaintexts = [bytes([i]) * size for i, size in enumerate(sizes)]
    n = k + extra
    table = SegmentTable(BACKUP, n)
    for p in plaintexts:
        seg = pipeline.encode_segment(SECRET, p, k, n)
        table.add(seg.identity, BACKUP, seg.length, len(seg.blocks[0]), seg.roots)
    private = Private.of("n", "s", sum(sizes), 0, table.lengths)
    key = derive.manifest_key(SECRET, BACKUP)
    sealed = manifest.seal_private(private, key, NONCE, OWNER.public_key, BACKUP)
    built = manifest.build(
        owner=OWNER.public_key,
        backup_id=BACKUP,
        created=1.0,
        lease_expires=2.0,
        k=k,
        n=n,
        table=table,
        nonce=NONCE,
        sealed=sealed,
    ).signed_by(OWNER)
    decoded = Manifest.decode(built.to_bytes_checked())
    assert decoded.open_private(key) == private
    assert decoded.segment_count == len(sizes)
