import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plexinode.errors import AuthenticationError, DecodeError
from plexinode.identity import Identity
from plexinode.net import packet
from plexinode.net.keyring import Keyring
from plexinode.net.transport import MAX_DATAGRAM

ALICE = Identity.from_seed(b"a" * 32)
BOB = Identity.from_seed(b"b" * 32)


def test_seal_parse_verify_round_trip() -> None:
    sealer = packet.Sealer(ALICE, clock=lambda: 1000.0)
    datagram = sealer.seal(b"payload", BOB.node_id)
    opened = packet.parse(datagram)
    assert opened.payload == b"payload"
    assert opened.verify() == ALICE.node_id
    assert packet.check_recipient(opened, BOB.node_id)
    assert not packet.check_recipient(opened, ALICE.node_id)
    anonymous = packet.parse(sealer.seal(b"x", None))
    assert packet.check_recipient(anonymous, ALICE.node_id)
    assert anonymous.recipient == packet.ANY_RECIPIENT


def test_counters_strictly_increase_even_if_the_clock_stalls_or_goes_back() -> None:
    times = iter([5.0, 5.0, 4.0, 6.0])
    sealer = packet.Sealer(ALICE, clock=lambda: next(times))
    counters = [sealer.next_counter() for _ in range(4)]
    assert counters == sorted(set(counters))
    assert counters[-1] == 6_000_000


def test_largest_payload_fits_and_larger_is_refused() -> None:
    sealer = packet.Sealer(ALICE, time.time)
    assert len(sealer.seal(b"x" * packet.MAX_PAYLOAD, None)) == MAX_DATAGRAM
    with pytest.raises(ValueError, match="exceeds"):
        sealer.seal(b"x" * (packet.MAX_PAYLOAD + 1), None)


def test_key_that_does_not_match_signature_is_rejected() -> None:
    datagram = bytearray(packet.Sealer(ALICE, time.time).seal(b"hello", None))
    datagram[1:33] = BOB.public_key  # claim to be Bob, keep Alice's signature
    with pytest.raises(AuthenticationError):
        packet.parse(bytes(datagram)).verify()


OPEN = Keyring.open("open")


def admit(datagram: bytes, keyring: Keyring = OPEN) -> None:
    """What a receiver checks: the layout, the network tag, the signature."""
    opened = packet.parse(datagram)
    if keyring.match(opened.tagged, opened.tag) is None:
        raise AuthenticationError("no network key matches")
    opened.verify()


@pytest.mark.parametrize("index", [0, 1, 40, 45, 50, -20, -1])
def test_any_flipped_byte_is_rejected(index: int) -> None:
    datagram = bytearray(packet.Sealer(ALICE, time.time).seal(b"hello", BOB.node_id))
    admit(bytes(datagram))
    datagram[index] ^= 0x01
    with pytest.raises((AuthenticationError, DecodeError)):
        admit(bytes(datagram))


def test_the_network_tag_keeps_networks_apart_and_follows_rotation() -> None:
    home, work = Keyring.generate(), Keyring.generate()
    from_home = packet.Sealer(ALICE, time.time, keyring=home).seal(b"hello", None)
    admit(from_home, home)
    with pytest.raises(AuthenticationError):
        admit(from_home, work)
    with pytest.raises(AuthenticationError):
        admit(from_home)  # the open network
    # Mid-rotation: a receiver with both keys accepts either primary.
    work.install(home.primary)
    admit(from_home, work)
    admit(packet.Sealer(ALICE, time.time, keyring=work).seal(b"x", None), work)


def test_truncated_and_oversized() -> None:
    datagram = packet.Sealer(ALICE, time.time).seal(b"hello", None)
    with pytest.raises(DecodeError, match="too short"):
        packet.parse(datagram[: packet.OVERHEAD - 1])
    with pytest.raises(DecodeError, match="exceeds"):
        packet.parse(b"\x01" * (MAX_DATAGRAM + 1))
    with pytest.raises(AuthenticationError):
        admit(datagram[:-1] + bytes([datagram[-1] ^ 1]))


@given(st.binary(max_size=MAX_DATAGRAM + 10))
def test_random_bytes(data: bytes) -> None:
    try:
        packet.parse(data).verify()
    except (DecodeError, AuthenticationError):
        pass
    else:  # pragma: no cover - forging a signature by chance
        raise AssertionError("random bytes verified")


def test_replay_guard_refuses_duplicates_and_old_counters() -> None:
    guard = packet.ReplayGuard(window_us=1000)
    assert guard.accept(b"k", 5000)
    assert not guard.accept(b"k", 5000)  # exact replay
    assert guard.accept(b"k", 4500)  # reordered, inside the window
    assert not guard.accept(b"k", 4500)
    assert guard.accept(b"k", 7000)
    assert not guard.accept(b"k", 5999)  # older than the window below 7000
    assert not guard.accept(b"k", 6000)
    assert guard.accept(b"k", 6001)
    assert guard.accept(b"other", 1)  # independent per sender
    assert len(guard) == 2


def test_replay_guard_overflow_raises_the_floor_instead_of_forgetting() -> None:
    guard = packet.ReplayGuard(window_us=10**9, max_per_sender=4)
    for counter in range(1, 9):
        assert guard.accept(b"k", counter)
    for counter in range(1, 9):
        assert not guard.accept(b"k", counter)  # none of them can be replayed


def test_replay_guard_forgets_least_recent_sender_first() -> None:
    guard = packet.ReplayGuard(window_us=10, max_senders=2)
    guard.accept(b"a", 100)
    guard.accept(b"b", 100)
    guard.accept(b"a", 101)  # a is now the most recent
    guard.accept(b"c", 100)  # evicts b
    assert len(guard) == 2
    assert not guard.accept(b"a", 100)
    assert guard.accept(b"b", 100)  # b was forgotten: first contact again


def test_replay_state_is_bounded_in_total() -> None:
    guard = packet.ReplayGuard(window_us=10**9, max_per_sender=100, max_counters=250)
    for sender in (b"a", b"b", b"c"):
        for counter in range(1, 101):
            assert guard.accept(sender, counter)
    # 300 counters would be remembered; the least recently heard sender was forgotten.
    assert guard.counters <= 250
    assert len(guard) == 2
    assert not guard.accept(b"c", 50)  # still remembered: a replay
    assert guard.accept(b"a", 50)  # forgotten: accepted once (the documented gap)


@given(st.lists(st.tuples(st.sampled_from([b"a", b"b", b"c", b"d"]), st.integers(1, 60))))
def test_replay_counter_total_matches_the_state(events: list[tuple[bytes, int]]) -> None:
    guard = packet.ReplayGuard(window_us=20, max_senders=3, max_per_sender=8, max_counters=12)
    for sender, counter in events:
        guard.accept(sender, counter)
        assert guard.counters <= 12
        assert guard.counters == sum(len(w.order) for w in guard._senders.values())
