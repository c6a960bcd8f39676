"""The segment pipeline: derivations, the cipher, zfec coding, encode and verified decode."""

from __future__ import annotations

import hashlib
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plexinode.shards import coding, derive, merkle, pipeline, sealing

SECRET = bytes(range(32))
OTHER = bytes(range(1, 33))


# -- derivations -----------------------------------------------------------------------------


def test_derivations_are_keyed_hashes_under_their_own_personalisations() -> None:
    plaintext = b"segment bytes"
    ident = derive.segment_id(SECRET, plaintext)
    # Computed here independently of the code under test.
    assert (
        ident
        == hashlib.blake2b(plaintext, key=SECRET, person=b"pxn-seg-id", digest_size=32).digest()
    )
    assert (
        derive.segment_key(SECRET, ident)
        == hashlib.blake2b(ident, key=SECRET, person=b"pxn-seg-key", digest_size=32).digest()
    )
    assert (
        derive.manifest_key(SECRET, b"b" * 16)
        == hashlib.blake2b(b"b" * 16, key=SECRET, person=b"pxn-manifest", digest_size=32).digest()
    )
    seed = hashlib.blake2b(b"", key=SECRET, person=b"pxn-cdc-seed", digest_size=8).digest()
    assert derive.chunker_seed(SECRET) == int.from_bytes(seed, "big") >> 1


def test_a_segment_id_is_not_its_key_and_another_owner_gets_other_ids() -> None:
    ident = derive.segment_id(SECRET, b"x")
    assert derive.segment_key(SECRET, ident) != ident
    assert derive.segment_id(OTHER, b"x") != ident
    assert derive.chunker_seed(SECRET) != derive.chunker_seed(OTHER)


def test_derivations_refuse_wrong_sizes() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        derive.segment_id(b"short", b"x")
    with pytest.raises(ValueError, match="segment ID"):
        derive.segment_key(SECRET, b"short")


def test_chunker_seed_is_never_the_public_table(monkeypatch: pytest.MonkeyPatch) -> None:
    class Zero:
        def digest(self) -> bytes:
            return bytes(8)

    monkeypatch.setattr(derive.hashlib, "blake2b", lambda *a, **k: Zero())
    assert derive.chunker_seed(SECRET) == 1


# -- the cipher ------------------------------------------------------------------------------


def test_seal_round_trip_and_authentication() -> None:
    ident = derive.segment_id(SECRET, b"hello")
    key = derive.segment_key(SECRET, ident)
    ciphertext = sealing.seal(key, ident, b"hello")
    assert len(ciphertext) == 5 + sealing.TAG_BYTES
    assert sealing.seal(key, ident, memoryview(b"hello")) == ciphertext  # deterministic
    assert sealing.unseal(key, ident, ciphertext) == b"hello"
    with pytest.raises(sealing.SegmentAuthenticationError):
        sealing.unseal(key, bytes(32), ciphertext)  # under another ID
    with pytest.raises(sealing.SegmentAuthenticationError):
        sealing.unseal(key, ident, ciphertext[:-1] + bytes([ciphertext[-1] ^ 1]))
    for bad in (lambda: sealing.seal(b"k", ident, b""), lambda: sealing.unseal(b"k", ident, b"")):
        with pytest.raises(ValueError, match="32 bytes"):
            bad()


# -- zfec ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("k", "n", "rule"), [(0, 3, "k must"), (4, 3, "k must"), (1, 0, "n must"), (3, 257, "n must")]
)
def test_parameters_outside_zfec_limits_are_named(k: int, n: int, rule: str) -> None:
    with pytest.raises(ValueError, match=rule):
        coding.check_parameters(k, n)


def test_any_k_blocks_decode() -> None:
    data = bytes(range(256)) * 5 + b"tail"
    blocks = coding.encode(data, 3, 6)
    assert len(blocks) == 6
    assert {len(b) for b in blocks} == {coding.block_size(len(data), 3)}
    assert b"".join(blocks[:3])[: len(data)] == data  # the primary blocks are the data
    for chosen in itertools.combinations(range(6), 3):
        assert coding.decode({i: blocks[i] for i in chosen}, 3, 6, len(data)) == data


def test_decode_refuses_too_few_wrong_sizes_and_bad_indices() -> None:
    blocks = coding.encode(b"abcdefgh", 2, 4)
    with pytest.raises(coding.CodingError, match="1 blocks given, 2 needed"):
        coding.decode({0: blocks[0]}, 2, 4, 8)
    with pytest.raises(coding.CodingError, match="not 4"):
        coding.decode({0: blocks[0], 1: blocks[1][:-1]}, 2, 4, 8)
    with pytest.raises(coding.CodingError, match="outside"):
        coding.decode({-1: blocks[0], 0: blocks[1]}, 2, 4, 8)


@settings(max_examples=60, deadline=None)
@given(
    data=st.binary(min_size=0, max_size=3000),
    k=st.integers(1, 12),
    extra=st.integers(0, 8),
    pick=st.randoms(use_true_random=False),
)
def test_coding_round_trips_over_random_sizes_and_parameters(
    data: bytes, k: int, extra: int, pick: object
) -> None:
    n = k + extra
    blocks = coding.encode(data, k, n)
    chosen = pick.sample(range(n), k)  # type: ignore[attr-defined]
    assert coding.decode({i: blocks[i] for i in chosen}, k, n, len(data)) == data


# -- the segment pipeline --------------------------------------------------------------------


def test_leaves_and_roots() -> None:
    assert pipeline.leaves(b"") == [b""]
    block = bytes(pipeline.LEAF_BYTES * 2 + 1)
    assert [len(leaf) for leaf in pipeline.leaves(block)] == [pipeline.LEAF_BYTES] * 2 + [1]
    assert pipeline.leaf_count(len(block)) == 3
    assert pipeline.leaf_count(0) == 1
    tree = merkle.MerkleTree([merkle.leaf_hash(leaf) for leaf in pipeline.leaves(block)])
    assert pipeline.share_root(block) == tree.root == pipeline.share_tree(block).root
    last = pipeline.leaves(block)[2]
    assert merkle.verify(tree.root, 3, 2, last, pipeline.share_tree(block).path(2))


def test_encode_is_a_pure_function_of_plaintext_and_secret() -> None:
    plaintext = b"p" * 50_000
    one = pipeline.encode_segment(SECRET, plaintext, 3, 10)
    assert one == pipeline.encode_segment(SECRET, plaintext, 3, 10, identity=one.identity)
    assert one.identity == derive.segment_id(SECRET, plaintext)
    assert len(one.blocks) == len(one.roots) == 10
    assert one.length == 50_000
    assert pipeline.encode_segment(OTHER, plaintext, 3, 10).blocks[0] != one.blocks[0]
    assert plaintext[:100] not in b"".join(one.blocks)  # encrypted


def test_decode_from_parity_blocks_verifies_every_step() -> None:
    plaintext = bytes(range(256)) * 300
    seg = pipeline.encode_segment(SECRET, plaintext, 3, 10)
    parity = {i: seg.blocks[i] for i in (7, 8, 9)}
    assert (
        pipeline.decode_segment(
            SECRET, seg.identity, seg.length, k=3, roots=seg.roots, blocks=parity
        )
        == plaintext
    )


def test_a_corrupt_block_is_named_and_nothing_is_decoded() -> None:
    seg = pipeline.encode_segment(SECRET, b"q" * 30_000, 3, 5)
    blocks = {0: seg.blocks[0], 1: seg.blocks[1][:-1] + b"X", 4: seg.blocks[4], 9: b"y"}
    with pytest.raises(pipeline.CorruptBlocksError) as caught:
        pipeline.decode_segment(
            SECRET, seg.identity, seg.length, k=3, roots=seg.roots, blocks=blocks
        )
    assert caught.value.indices == (1, 9)
    assert "1, 9" in str(caught.value)


def test_blocks_of_another_segment_or_a_forged_length_do_not_restore() -> None:
    seg = pipeline.encode_segment(SECRET, b"a" * 20_000, 2, 4)
    other = pipeline.encode_segment(SECRET, b"b" * 20_000, 2, 4)
    blocks = dict(enumerate(other.blocks[:2]))
    # Another segment's blocks under their own roots but this segment's ID: the tag fails.
    with pytest.raises(pipeline.SegmentMismatchError, match="decrypt"):
        pipeline.decode_segment(
            SECRET, seg.identity, seg.length, k=2, roots=other.roots, blocks=blocks
        )
    with pytest.raises(pipeline.SegmentMismatchError, match="decrypt"):
        pipeline.decode_segment(
            SECRET,
            seg.identity,
            seg.length - 1,
            k=2,
            roots=seg.roots,
            blocks=dict(enumerate(seg.blocks[:2])),
        )
    with pytest.raises(coding.CodingError):
        pipeline.decode_segment(
            SECRET, seg.identity, seg.length, k=2, roots=seg.roots, blocks={0: seg.blocks[0]}
        )


def test_a_segment_sealed_over_other_plaintext_is_refused_by_its_id() -> None:
    ident = derive.segment_id(SECRET, b"claimed")
    ciphertext = sealing.seal(derive.segment_key(SECRET, ident), ident, b"swapped")
    blocks = coding.encode(ciphertext, 1, 2)
    roots = tuple(pipeline.share_root(b) for b in blocks)
    with pytest.raises(pipeline.SegmentMismatchError, match="does not match its ID"):
        pipeline.decode_segment(SECRET, ident, 7, k=1, roots=roots, blocks={1: blocks[1]})


@settings(max_examples=40, deadline=None)
@given(
    plaintext=st.binary(min_size=0, max_size=40_000),
    k=st.integers(1, 8),
    extra=st.integers(0, 6),
    pick=st.randoms(use_true_random=False),
)
def test_pipeline_round_trips_from_any_k_shares(
    plaintext: bytes, k: int, extra: int, pick: object
) -> None:
    n = k + extra
    seg = pipeline.encode_segment(SECRET, plaintext, k, n)
    chosen = pick.sample(range(n), k)  # type: ignore[attr-defined]
    blocks = {i: seg.blocks[i] for i in chosen}
    assert (
        pipeline.decode_segment(
            SECRET, seg.identity, len(plaintext), k=k, roots=seg.roots, blocks=blocks
        )
        == plaintext
    )
