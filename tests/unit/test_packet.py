import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plexinode.dht.messages import FindNode
from plexinode.errors import AuthenticationError, DecodeError
from plexinode.identity import Identity
from plexinode.net import packet
from plexinode.net.keyring import Keyring
from plexinode.net.transport import MAX_DATAGRAM
from plexinode.wire import envelope

ALICE = Identity.from_seed(b"a" * 32)
BOB = Identity.from_seed(b"b" * 32)


OPEN = Keyring.open("open")


def test_seal_parse_verify_round_trip() -> None:
    sealer = packet.Sealer(ALICE, lambda: 1000)
    datagram = sealer.seal(b"payload", BOB.node_id)
    opened = packet.open_datagram(datagram, OPEN)
    assert opened.payload == b"payload"
    assert opened.verify() == ALICE.node_id
    assert packet.check_recipient(opened, BOB.node_id)
    assert not packet.check_recipient(opened, ALICE.node_id)
    anonymous = packet.open_datagram(sealer.seal(b"x", None), OPEN)
    assert packet.check_recipient(anonymous, ALICE.node_id)
    assert anonymous.recipient == packet.ANY_RECIPIENT


def test_counters_number_datagrams_from_1_under_the_boot_epoch() -> None:
    sealer = packet.Sealer(ALICE, lambda: (1 << 40) | 9)  # only the low 32 bits are used
    counters = [sealer.next_counter() for _ in range(3)]
    assert counters == [9 << 32 | 1, 9 << 32 | 2, 9 << 32 | 3]


def test_an_exhausted_epoch_is_followed_by_a_different_one() -> None:
    draws = iter([5, 5, 6])
    sealer = packet.Sealer(ALICE, lambda: next(draws))
    sealer._seq = packet.SEQ_MASK - 1
    assert sealer.next_counter() == 5 << 32 | packet.SEQ_MASK
    assert sealer.next_counter() == 6 << 32 | 1  # the draw repeated the epoch: the next one
    sealer._seq = packet.SEQ_MASK
    sealer._epochs = lambda: 3
    assert sealer.next_counter() == 3 << 32 | 1


def test_largest_payload_fits_and_larger_is_refused() -> None:
    sealer = packet.Sealer(ALICE, lambda: 1)
    assert len(sealer.seal(b"x" * packet.MAX_PAYLOAD, None)) == MAX_DATAGRAM
    with pytest.raises(ValueError, match="exceeds"):
        sealer.seal(b"x" * (packet.MAX_PAYLOAD + 1), None)


def inner(datagram: bytes, keyring: Keyring = OPEN) -> bytes:
    """The decrypted inner datagram (what a member of the network can read and re-seal)."""
    plain = packet.decrypt(datagram, keyring.by_preference())
    assert plain is not None
    return plain


def test_key_that_does_not_match_signature_is_rejected() -> None:
    plain = bytearray(inner(packet.Sealer(ALICE, lambda: 1).seal(b"hello", None)))
    plain[1:33] = BOB.public_key  # a member claims to be Bob, keeps Alice's signature
    forged = packet.encrypt(OPEN.primary, bytes(plain))
    with pytest.raises(AuthenticationError):
        packet.open_datagram(forged, OPEN).verify()


def admit(datagram: bytes, keyring: Keyring = OPEN) -> None:
    """What a receiver checks: the layout, the AEAD under a network key, the signature."""
    packet.open_datagram(datagram, keyring).verify()


@pytest.mark.parametrize("index", [0, 1, 24, 25, 40, 45, 50, -20, -1])
def test_any_flipped_byte_is_rejected(index: int) -> None:
    datagram = bytearray(packet.Sealer(ALICE, lambda: 1).seal(b"hello", BOB.node_id))
    admit(bytes(datagram))
    datagram[index] ^= 0x01
    with pytest.raises((AuthenticationError, DecodeError)):
        admit(bytes(datagram))


def test_the_network_tag_keeps_networks_apart_and_follows_rotation() -> None:
    home, work = Keyring.generate(), Keyring.generate()
    from_home = packet.Sealer(ALICE, lambda: 1, keyring=home).seal(b"hello", None)
    admit(from_home, home)
    with pytest.raises(AuthenticationError):
        admit(from_home, work)
    with pytest.raises(AuthenticationError):
        admit(from_home)  # the open network
    # Mid-rotation: a receiver with both keys accepts either primary.
    work.install(home.primary)
    admit(from_home, work)
    admit(packet.Sealer(ALICE, lambda: 1, keyring=work).seal(b"x", None), work)


def test_truncated_and_oversized() -> None:
    datagram = packet.Sealer(ALICE, lambda: 1).seal(b"hello", None)
    with pytest.raises(DecodeError, match="too short"):
        packet.open_datagram(datagram[: packet.OVERHEAD - 1], OPEN)
    with pytest.raises(DecodeError, match="exceeds"):
        packet.open_datagram(b"\x04" * (MAX_DATAGRAM + 1), OPEN)
    with pytest.raises(DecodeError, match="version 3"):
        packet.open_datagram(b"\x03" + datagram[1:], OPEN)
    with pytest.raises(AuthenticationError):
        admit(datagram[:-1] + bytes([datagram[-1] ^ 1]))


@given(st.binary(max_size=MAX_DATAGRAM + 10))
def test_random_bytes(data: bytes) -> None:
    try:
        packet.open_datagram(data, OPEN).verify()
    except (DecodeError, AuthenticationError):
        pass
    else:  # pragma: no cover - forging a signature by chance
        raise AssertionError("random bytes verified")


def test_a_private_networks_datagram_hides_its_envelope_and_its_sender() -> None:
    """A passive observer of a private network learns neither the envelope (message types,
    member lists, cluster state) nor who sent it to whom."""
    ring = Keyring.generate()
    payload = envelope.encode(FindNode(target=bytes(range(32))), request_id=0x0123456789ABCDEF)
    datagram = packet.Sealer(ALICE, lambda: 1, keyring=ring).seal(payload, BOB.node_id)
    for secret in (
        payload,
        payload[:8],
        payload[-8:],
        bytes(range(32))[:8],
        ALICE.public_key[:8],
        ALICE.node_id.raw[:8],
        BOB.node_id.raw[:8],
    ):
        assert secret not in datagram
    opened = packet.open_datagram(datagram, ring)
    assert opened.payload == payload
    assert opened.verify() == ALICE.node_id
    assert len(datagram) == packet.OVERHEAD + len(payload)


def test_equal_inner_datagrams_share_a_nonce_and_different_ones_never_do() -> None:
    """The nonce is synthetic: a keyed hash of the whole inner datagram, so it repeats only
    with the very same bytes (then the ciphertext is the same too, and reveals nothing more)."""
    ring = Keyring.generate()
    one = packet.Sealer(ALICE, lambda: 1, keyring=ring)
    again = packet.Sealer(ALICE, lambda: 1, keyring=ring)  # a restart that drew the same epoch
    first, repeat = one.seal(b"same", None), again.seal(b"same", None)
    assert first == repeat
    nonces = {one.seal(b"same", None)[1:25] for _ in range(50)}
    nonces |= {again.seal(b"other", None)[1:25]}
    assert len(nonces) == 51
    assert first[1:25] not in nonces


@settings(max_examples=60)
@given(
    payload=st.binary(max_size=packet.MAX_PAYLOAD),
    to_bob=st.booleans(),
    key=st.binary(min_size=32, max_size=32),
    epoch=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_round_trip_under_any_key(payload: bytes, to_bob: bool, key: bytes, epoch: int) -> None:
    ring = Keyring([key], key, private=True)
    recipient = BOB.node_id if to_bob else None
    datagram = packet.Sealer(ALICE, lambda: epoch, keyring=ring).seal(payload, recipient)
    assert len(datagram) == packet.OVERHEAD + len(payload) <= MAX_DATAGRAM
    opened = packet.open_datagram(datagram, ring)
    assert opened.payload == payload
    assert opened.recipient == packet.recipient_tag(recipient)
    assert opened.counter == epoch << packet.SEQ_BITS | 1
    assert opened.verify() == ALICE.node_id
    with pytest.raises(AuthenticationError):
        packet.open_datagram(datagram, OPEN if key != OPEN.primary else Keyring.generate())


def c(epoch: int, number: int) -> int:
    """A counter: a boot epoch and a datagram number."""
    return epoch << packet.SEQ_BITS | number


def test_replay_guard_refuses_duplicates_and_old_counters() -> None:
    guard = packet.ReplayGuard(window=1000)
    assert guard.accept(b"k", c(1, 5000), 0.0)
    assert not guard.accept(b"k", c(1, 5000), 0.0)  # exact replay
    assert guard.accept(b"k", c(1, 4500), 0.0)  # reordered, inside the window
    assert not guard.accept(b"k", c(1, 4500), 0.0)
    assert guard.accept(b"k", c(1, 7000), 0.0)
    assert not guard.accept(b"k", c(1, 5999), 0.0)  # older than the window below 7000
    assert not guard.accept(b"k", c(1, 6000), 0.0)
    assert guard.accept(b"k", c(1, 6001), 0.0)
    assert not guard.accept(b"k", c(1, 0), 0.0)  # number 0 is never sent
    assert guard.accept(b"other", c(1, 1), 0.0)  # independent per sender
    assert len(guard) == 2


def test_a_restarted_sender_is_accepted_and_its_earlier_life_stays_refused() -> None:
    guard = packet.ReplayGuard(window=1000)
    for number in range(1, 2001):
        assert guard.accept(b"k", c(7, number), 0.0)
    # A restart: a new epoch, numbers from 1 again (whatever its wall clock says).
    assert guard.accept(b"k", c(3, 1), 1.0)
    assert guard.accept(b"k", c(3, 2), 1.0)
    assert not guard.accept(b"k", c(3, 1), 1.0)
    # The datagrams of the earlier life recently seen are still replays.
    assert not guard.accept(b"k", c(7, 2000), 2.0)
    assert not guard.accept(b"k", c(7, 500), 2.0)
    assert guard.accept(b"k", c(3, 3), 2.0)


def test_replay_state_expires_by_age_on_the_receivers_clock() -> None:
    guard = packet.ReplayGuard(window=1000, memory=60.0)
    assert guard.accept(b"a", c(1, 10), 0.0)
    assert guard.accept(b"b", c(1, 10), 30.0)
    assert not guard.accept(b"a", c(1, 10), 59.0)  # heard (a replay) at 59: kept until 119
    guard.expire(100.0)
    assert len(guard) == 1  # b, silent since 30, is forgotten; a is not
    assert not guard.accept(b"a", c(1, 10), 100.0)
    assert not guard.accept(b"a", c(1, 10), 150.0)  # heard at 100: still remembered
    assert guard.accept(b"b", c(1, 10), 200.0)  # forgotten: accepted once (the known gap)
    assert guard.counters == 2


def test_only_the_most_recent_epochs_of_a_sender_are_remembered() -> None:
    guard = packet.ReplayGuard(window=1000, max_epochs=2)
    assert guard.accept(b"k", c(1, 1), 0.0)
    assert guard.accept(b"k", c(2, 1), 0.0)
    assert not guard.accept(b"k", c(1, 1), 0.0)  # epoch 1 is now the most recent again
    assert guard.accept(b"k", c(3, 1), 0.0)  # evicts epoch 2
    assert guard.accept(b"k", c(2, 1), 0.0)  # forgotten: accepted once
    assert not guard.accept(b"k", c(3, 1), 0.0)
    assert guard.counters == 2


def test_replay_guard_overflow_raises_the_floor_instead_of_forgetting() -> None:
    guard = packet.ReplayGuard(window=10**9, max_per_sender=4)
    for number in range(1, 9):
        assert guard.accept(b"k", c(1, number), 0.0)
    for number in range(1, 9):
        assert not guard.accept(b"k", c(1, number), 0.0)  # none of them can be replayed


def test_replay_guard_forgets_least_recent_sender_first() -> None:
    guard = packet.ReplayGuard(window=10, max_senders=2)
    guard.accept(b"a", c(0, 100), 0.0)
    guard.accept(b"b", c(0, 100), 0.0)
    guard.accept(b"a", c(0, 101), 0.0)  # a is now the most recent
    guard.accept(b"c", c(0, 100), 0.0)  # evicts b
    assert len(guard) == 2
    assert not guard.accept(b"a", c(0, 100), 0.0)
    assert guard.accept(b"b", c(0, 100), 0.0)  # b was forgotten: first contact again


def test_replay_state_is_bounded_in_total() -> None:
    guard = packet.ReplayGuard(window=10**9, max_per_sender=100, max_counters=250)
    for sender in (b"a", b"b", b"c"):
        for number in range(1, 101):
            assert guard.accept(sender, c(0, number), 0.0)
    # 300 counters would be remembered; the least recently heard sender was forgotten.
    assert guard.counters <= 250
    assert len(guard) == 2
    assert not guard.accept(b"c", c(0, 50), 0.0)  # still remembered: a replay
    assert guard.accept(b"a", c(0, 50), 0.0)  # forgotten: accepted once (the documented gap)


@given(
    st.lists(
        st.tuples(
            st.sampled_from([b"a", b"b", b"c", b"d"]),
            st.integers(0, 3),
            st.integers(0, 60),
            st.floats(0, 50),
        )
    )
)
def test_replay_counter_total_matches_the_state(
    events: list[tuple[bytes, int, int, float]],
) -> None:
    guard = packet.ReplayGuard(
        window=20, memory=100.0, max_senders=3, max_epochs=2, max_per_sender=8, max_counters=12
    )
    now = 0.0
    for sender, epoch, number, step in events:
        now += step
        guard.accept(sender, c(epoch, number), now)
        assert guard.counters <= 12
        assert guard.counters == sum(s.counters() for s in guard._senders.values())
        assert all(len(s.epochs) <= 2 for s in guard._senders.values())
