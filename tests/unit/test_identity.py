import os
import stat

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plexinode.errors import AuthenticationError, IdentityError
from plexinode.identity import (
    TEXT_LENGTH,
    Identity,
    NodeId,
    create_identity_file,
    key_path,
    load_identity_file,
    verify_signature,
)


@given(st.binary(min_size=32, max_size=32))
def test_text_form_round_trips(raw: bytes) -> None:
    node_id = NodeId(raw)
    text = str(node_id)
    assert len(text) == TEXT_LENGTH
    assert text == text.lower()
    assert NodeId.parse(text) == node_id
    assert NodeId.parse(text.upper()) == node_id
    grouped = "-".join(text[i : i + 6] for i in range(0, len(text), 6))
    assert NodeId.parse(grouped) == node_id


@given(st.binary(min_size=32, max_size=32), st.integers(0, TEXT_LENGTH - 1), st.data())
def test_any_single_typo_is_rejected(raw: bytes, index: int, data: st.DataObject) -> None:
    text = str(NodeId(raw))
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    replacement = data.draw(st.sampled_from([c for c in alphabet if c != text[index]]))
    typo = text[:index] + replacement + text[index + 1 :]
    with pytest.raises(IdentityError):
        NodeId.parse(typo)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "expected 58 characters"),
        ("abc", "expected 58 characters"),
        ("1" * TEXT_LENGTH, "only letters"),
    ],
)
def test_parse_errors_are_clear(text: str, reason: str) -> None:
    with pytest.raises(IdentityError, match=reason):
        NodeId.parse(text)


def test_node_id_is_hash_of_public_key_and_has_fixed_size() -> None:
    identity = Identity.generate()
    assert identity.node_id == NodeId.from_public_key(identity.public_key)
    assert identity.node_id != NodeId(identity.public_key)
    with pytest.raises(IdentityError):
        NodeId(b"short")
    with pytest.raises(IdentityError):
        NodeId.from_public_key(b"short")
    assert identity.node_id.short() in repr(identity.node_id)


def test_signatures_verify_and_tampering_fails() -> None:
    identity = Identity.from_seed(bytes(32))
    signature = identity.sign(b"hello")
    verify_signature(identity.public_key, b"hello", signature)
    with pytest.raises(AuthenticationError):
        verify_signature(identity.public_key, b"hellO", signature)
    with pytest.raises(AuthenticationError):
        verify_signature(b"\x00" * 31, b"hello", signature)


def test_key_file_is_private_and_never_overwritten(tmp_path) -> None:
    identity = create_identity_file(tmp_path)
    mode = stat.S_IMODE(os.stat(key_path(tmp_path)).st_mode)
    assert mode == 0o600
    assert load_identity_file(tmp_path).node_id == identity.node_id
    with pytest.raises(IdentityError, match="refusing to overwrite"):
        create_identity_file(tmp_path)
    assert load_identity_file(tmp_path).node_id == identity.node_id
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_loose_permissions_are_tightened(tmp_path) -> None:
    create_identity_file(tmp_path)
    key_path(tmp_path).chmod(0o644)
    load_identity_file(tmp_path)
    assert stat.S_IMODE(os.stat(key_path(tmp_path)).st_mode) == 0o600


def test_missing_key_file(tmp_path) -> None:
    with pytest.raises(IdentityError, match="missing"):
        load_identity_file(tmp_path)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\xff\xfe garbage",
        b"header\nnot json",
        b"header\n[]",
        b'header\n{"version": 1, "type": "ed25519", "seed": "!!!", "node_id": "x"}',
        b'header\n{"version": 1, "type": "ed25519", "seed": "AAAA", "node_id": "x"}',
        b'header\n{"version": 1, "type": "ed25519"}',
    ],
)
def test_corrupt_key_file(tmp_path, content: bytes) -> None:
    key_path(tmp_path).write_bytes(content)
    with pytest.raises(IdentityError, match="corrupt"):
        load_identity_file(tmp_path)


def test_key_file_with_wrong_node_id_or_version(tmp_path) -> None:
    good = Identity.generate().to_file_bytes()
    other = str(Identity.generate().node_id)
    text = good.decode()
    start = text.index('"node_id": "') + len('"node_id": "')
    key_path(tmp_path).write_text(text[:start] + other + text[start + len(other) :])
    with pytest.raises(IdentityError, match="does not match"):
        load_identity_file(tmp_path)
    key_path(tmp_path).write_text(text.replace('"version": 1', '"version": 9'))
    with pytest.raises(IdentityError, match="unsupported"):
        load_identity_file(tmp_path)


def test_unwritable_data_dir(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises((IdentityError, OSError)):
        create_identity_file(blocker)


def test_id_puzzle() -> None:
    solved = Identity.generate(difficulty=8)
    assert solved.node_id.meets(8)
    assert solved.node_id.meets(0)
    assert all(Identity.generate().node_id.meets(0) for _ in range(3))
    # About one random ID in 256 solves 8 bits: among 64, most fail.
    assert sum(Identity.generate().node_id.meets(8) for _ in range(64)) < 16
    # The check is the puzzle hash's leading bits: an ID solving d bits solves fewer too.
    assert all(solved.node_id.meets(d) for d in range(9))


@pytest.mark.parametrize("difficulty", [-1, 33])
def test_id_puzzle_difficulty_is_bounded(difficulty: int) -> None:
    with pytest.raises(ValueError, match="difficulty"):
        Identity.generate(difficulty=difficulty)
