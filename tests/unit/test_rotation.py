"""Key rotation's sans-I/O core: plans, reconciling a keyring with a plan, progress from tags,
and keys sealed to one member."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plexinode.errors import AuthenticationError, DecodeError
from plexinode.identity import Identity, seal_to
from plexinode.net.keyring import MAX_KEYS, MAX_RETIRED, Keyring, key_id
from plexinode.security.rotation import (
    KEYS_TAG,
    REFUSED,
    KeyringReply,
    KeyringRequest,
    Plan,
    SealedKey,
    keys_tag,
    open_reply,
    progress,
    reconcile,
    reply_to,
    request_for,
    tagged_keys,
)
from plexinode.wire import envelope
from plexinode.wire.codec import FRAME_LIMITS

ALICE = Identity.from_seed(bytes(32))
MALLORY = Identity.from_seed(bytes([1]) * 32)
K0, K1, K2 = (bytes([i]) * 32 for i in range(3))
I0, I1, I2 = (key_id(k) for k in (K0, K1, K2))


def ring(*keys: bytes, primary: bytes | None = None) -> Keyring:
    return Keyring(list(keys), primary or keys[0], private=True)


def test_plans_round_trip_and_change_step_by_step() -> None:
    plan = Plan.of(ring(K0))
    assert Plan.decode(plan.encode()) == plan == Plan((I0,), I0)
    assert plan.with_key(I1) == Plan((I0, I1), I0)
    assert plan.with_key(I0) is plan
    assert Plan((I0, I1), I1).without_key(I0) == Plan((I1,), I1)
    with pytest.raises(ValueError, match="primary"):
        plan.without_key(I0)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b"[]",
        b'{"keys": []}',
        b'{"keys": [], "primary": ""}',
        b'{"keys": ["0123456789ab"], "primary": "ba9876543210"}',  # primary not among keys
        b'{"keys": ["0123456789ab", "0123456789ab"], "primary": "0123456789ab"}',
        b'{"keys": ["0123456789AB"], "primary": "0123456789AB"}',  # not our id form
        b'{"keys": [7], "primary": 7}',
        b'{"keys": "0123456789ab", "primary": "0123456789ab"}',
        b'{"keys": ['
        + b",".join([b'"%012x"' % i for i in range(MAX_KEYS + 1)])
        + b'], "primary": "000000000000"}',
    ],
)
def test_malformed_plans_are_refused(data: bytes) -> None:
    with pytest.raises(DecodeError):
        Plan.decode(data)


@given(st.binary(max_size=300))
def test_any_bytes_decode_to_a_plan_or_a_decode_error(data: bytes) -> None:
    try:
        plan = Plan.decode(data)
    except DecodeError:
        return
    assert plan.primary in plan.keys


def test_reconcile_fetches_then_switches_then_retires() -> None:
    # nothing to do
    assert not reconcile(ring(K0), Plan((I0,), I0))
    # step 1: a key to fetch, nothing else
    steps = reconcile(ring(K0), Plan((I0, I1), I0))
    assert (steps.fetch, steps.use, steps.retire) == ((I1,), None, ())
    # step 2 before the key arrived: keep sending with K0 and keep K0
    steps = reconcile(ring(K0), Plan((I0, I1), I1))
    assert (steps.fetch, steps.use, steps.retire) == ((I1,), None, ())
    # ... and after
    steps = reconcile(ring(K0, K1), Plan((I0, I1), I1))
    assert (steps.fetch, steps.use, steps.retire) == ((), K1, ())
    # step 3: retire K0
    steps = reconcile(ring(K0, K1, primary=K1), Plan((I1,), I1))
    assert (steps.fetch, steps.use, steps.retire) == ((), None, (K0,))
    # a member that missed steps 1-2 must not retire the only key it can send with
    steps = reconcile(ring(K0), Plan((I1,), I1))
    assert (steps.fetch, steps.use, steps.retire) == ((I1,), None, ())
    # all three at once for a member that holds K1 already
    steps = reconcile(ring(K0, K2, K1), Plan((I1,), I1))
    assert (steps.fetch, steps.use, set(steps.retire)) == ((), K1, {K0, K2})


def test_progress_counts_holders_and_senders_from_tags() -> None:
    tags = [
        {KEYS_TAG: keys_tag(ring(K0, K1, primary=K1))},
        {KEYS_TAG: keys_tag(ring(K0, K1))},
        {KEYS_TAG: keys_tag(ring(K0))},
        {KEYS_TAG: "garbage,,0123"},
        {"version": "1"},
    ]
    assert tagged_keys(tags[0]) == (I1, I0)
    assert tagged_keys(tags[3]) == ()
    assert progress(Plan((I0, I1), I1), tags) == {
        I0: {"holders": 3, "senders": 2, "members": 5},
        I1: {"holders": 2, "senders": 1, "members": 5},
    }


def test_the_keys_tag_fits_a_claim_tag_even_for_a_full_keyring() -> None:
    full = ring(*(bytes([i]) * 32 for i in range(MAX_KEYS)))
    assert len(keys_tag(full)) <= 64


def test_keys_are_sealed_to_the_asker_alone() -> None:
    holder = ring(K0, K1, primary=K1)
    asker = Keyring([K0], K0, private=True)
    request = request_for(asker)
    assert request.have == (bytes.fromhex(I0),)
    reply = reply_to(holder, request, ALICE.public_key)
    assert reply.granted
    assert reply.primary.hex() == I1
    assert [item.key_id.hex() for item in reply.keys] == [I1]  # not what it has already
    wire = envelope.encode(reply)
    decoded = envelope.decode(wire, FRAME_LIMITS).message
    assert open_reply(ALICE, decoded) == {I1: K1}
    with pytest.raises(AuthenticationError):
        open_reply(MALLORY, decoded)  # an eavesdropper, or the wrong member
    # a key that is not the one its id names is refused
    swapped = KeyringReply(
        True, reply.primary, (SealedKey(bytes.fromhex(I2), reply.keys[0].sealed),)
    )
    with pytest.raises(AuthenticationError, match="does not match"):
        open_reply(ALICE, swapped)
    short = KeyringReply(
        True,
        b"",
        (SealedKey(bytes.fromhex(I1), seal_to(ALICE.public_key, K1[:16]).ljust(80, b"\0")),),
    )
    with pytest.raises(AuthenticationError):
        open_reply(ALICE, short)
    assert open_reply(ALICE, REFUSED) == {}


def test_the_request_names_retired_keys_too() -> None:
    asker = ring(K0, K1, primary=K1)
    asker.remove(K0)
    assert set(request_for(asker).have) == {bytes.fromhex(I0), bytes.fromhex(I1)}
    assert envelope.decode(envelope.encode(request_for(asker)), FRAME_LIMITS).message == (
        KeyringRequest(request_for(asker).have)
    )


def test_sealing_to_something_that_is_not_a_key_fails_clearly() -> None:
    with pytest.raises(AuthenticationError, match="not an Ed25519"):
        seal_to(b"\x01" * 31, b"x")


def test_retired_keys_admit_nothing_but_are_recognised() -> None:
    keys = ring(K0, K1, primary=K1)
    tag = keys.tag(b"data")
    keys.remove(K0)
    assert keys.retired == [K0]
    old = ring(K0)
    assert keys.match(b"data", old.tag(b"data")) is None
    assert keys.match_retired(b"data", old.tag(b"data")) == K0
    assert keys.match_retired(b"data", tag) is None
    keys.install(K0)  # installing a retired key brings it back
    assert keys.retired == []
    assert K0 in keys
    for i in range(MAX_RETIRED + 2):
        extra = bytes([100 + i]) * 32
        keys.install(extra)
        keys.remove(extra)
    assert len(keys.retired) == MAX_RETIRED
    assert keys.retired[-1] == bytes([100 + MAX_RETIRED + 1]) * 32
