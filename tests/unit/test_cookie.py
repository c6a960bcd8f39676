"""The cookie a responder under load demands before any X25519 (plexinode.net.cookie), and the
handshake roles that use it: no sockets, no clocks (time is a number passed in)."""

from __future__ import annotations

import hashlib
import itertools

import nacl.bindings
import pytest

from plexinode.errors import HandshakeError
from plexinode.identity import Identity
from plexinode.net import handshake
from plexinode.net.cookie import (
    COOKIE_BYTES,
    COOKIE_REPLY_BYTES,
    COOKIE_ROTATION,
    MAC2_BYTES,
    ZERO_MAC2,
    ConnectionCookies,
    CookieGuard,
    CookieReply,
    mac2,
    open_cookie,
    seal_cookie,
)
from plexinode.net.handshake import (
    MSG1_BYTES,
    MSG2_BYTES,
    RETIRED,
    Initiator,
    PskMatch,
    Responder,
)
from plexinode.net.keyring import Keyring, network_tag, open_network_key
from plexinode.net.stream_limits import SeenMsg1

ALICE = Identity.from_seed(b"A" * 32)
BOB = Identity.from_seed(b"B" * 32)
OPEN = open_network_key("open")
HOST = "192.0.2.7"


def counting_random() -> tuple[CookieGuard, list[int]]:
    """A guard whose randomness is a counter (so secrets and nonces are known), always under
    load (a threshold of one pending handshake)."""
    drawn: list[int] = []
    counter = itertools.count(1)

    def random_bytes(size: int) -> bytes:
        drawn.append(size)
        return next(counter).to_bytes(size, "big")

    guard = CookieGuard(pending_threshold=1, exchange_rate=1000, random_bytes=random_bytes)
    return guard, drawn


def loaded(guard: CookieGuard, host: str = HOST, now: float = 0.0) -> ConnectionCookies:
    """One connection from `host` while one handshake (its own) is pending."""
    return ConnectionCookies(guard, host, lambda: now, lambda: 1)


def test_sizes_are_exact() -> None:
    assert COOKIE_BYTES == MAC2_BYTES == 16
    assert COOKIE_REPLY_BYTES == 24 + 16 + 16 == 56
    assert MSG1_BYTES == 4 + 1 + 32 + 16 + MAC2_BYTES == 69
    assert COOKIE_REPLY_BYTES not in (MSG2_BYTES, handshake.MSG3_BYTES)
    guard, _ = counting_random()
    assert len(guard.cookie(HOST, 0.0)) == COOKIE_BYTES
    msg1 = Initiator(ALICE).start()
    assert len(msg1) == MSG1_BYTES
    assert msg1[-MAC2_BYTES:] == ZERO_MAC2
    assert len(guard.reply(HOST, OPEN, msg1, 0.0)) == COOKIE_REPLY_BYTES


def test_cookies_follow_the_documented_derivation() -> None:
    """Recompute cookie, mac2 and the sealed reply from docs/protocol.md with plain libraries."""
    guard, drawn = counting_random()
    msg1 = Initiator(ALICE).start()
    reply = guard.reply("2001:db8:1:2::5", OPEN, msg1, 0.0)
    assert drawn == [32, 24]  # the first secret, then the nonce
    secret, nonce = (1).to_bytes(32, "big"), (2).to_bytes(24, "big")
    cookie = hashlib.blake2b(
        b"2001:db8:1:2::/64", key=secret, digest_size=16, person=b"pxn-hs-cookie"
    ).digest()
    key = hashlib.blake2b(b"", key=OPEN, digest_size=32, person=b"pxn-hs-cookie-k").digest()
    sealed = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(cookie, msg1, nonce, key)
    assert reply == nonce + sealed
    tagged = msg1[:53]
    assert (
        mac2(cookie, tagged)
        == hashlib.blake2b(tagged, key=cookie, digest_size=16, person=b"pxn-hs-mac2").digest()
    )
    assert Initiator(ALICE, cookie=cookie).start()[53:] != ZERO_MAC2


def test_a_cookie_is_bound_to_its_host() -> None:
    guard, _ = counting_random()
    tagged = Initiator(ALICE).start()[:-MAC2_BYTES]
    mine = mac2(guard.cookie(HOST, 0.0), tagged)
    assert guard.check(HOST, tagged, mine, 0.0)
    assert not guard.check("192.0.2.8", tagged, mine, 0.0)  # wrong host
    assert not guard.check(HOST, tagged[:-1] + b"\0", mine, 0.0)  # another msg1
    assert not guard.check(HOST, tagged, ZERO_MAC2, 0.0)
    # A host counts as the per-host limits count it: one IPv6 /64, an IPv4-mapped address.
    v6 = mac2(guard.cookie("2001:db8:1:2::5", 0.0), tagged)
    assert guard.check("2001:db8:1:2:ffff::9", tagged, v6, 0.0)
    assert not guard.check("2001:db8:1:3::5", tagged, v6, 0.0)
    assert guard.check("::ffff:192.0.2.7", tagged, mine, 0.0)


def test_the_secret_rotates_and_the_previous_one_is_still_accepted() -> None:
    guard, drawn = counting_random()
    tagged = Initiator(ALICE).start()[:-MAC2_BYTES]
    first = guard.cookie(HOST, 0.0)
    assert guard.cookie(HOST, COOKIE_ROTATION - 0.001) == first  # the same secret
    assert drawn == [32]
    second = guard.cookie(HOST, COOKIE_ROTATION)  # a new secret ...
    assert second != first
    assert drawn == [32, 32]
    old = mac2(first, tagged)
    assert guard.check(HOST, tagged, old, 2 * COOKIE_ROTATION - 1)  # ... the old one still holds
    assert guard.check(HOST, tagged, mac2(second, tagged), 2 * COOKIE_ROTATION - 1)
    assert not guard.check(HOST, tagged, old, 2 * COOKIE_ROTATION)  # two rotations: gone
    # After a long quiet spell the secret in use is replaced and not kept as the previous one:
    # its cookies would be far older than a period.
    third = guard.cookie(HOST, 2 * COOKIE_ROTATION)
    assert guard.check(HOST, tagged, mac2(third, tagged), 3 * COOKIE_ROTATION - 1)
    assert not guard.check(HOST, tagged, mac2(third, tagged), 10 * COOKIE_ROTATION)


def test_a_reply_opens_only_for_the_msg1_and_key_it_answers() -> None:
    msg1, other = Initiator(ALICE).start(), Initiator(ALICE).start()
    cookie, nonce = b"\x07" * 16, b"\x09" * 24
    reply = seal_cookie(OPEN, msg1, cookie, nonce)
    assert open_cookie(OPEN, msg1, reply) == cookie
    with pytest.raises(HandshakeError, match="cannot open the cookie reply"):
        open_cookie(Keyring.generate().primary, msg1, reply)  # wrong psk
    with pytest.raises(HandshakeError, match="cannot open the cookie reply"):
        open_cookie(OPEN, other, reply)  # an answer to another msg1
    for position in range(COOKIE_REPLY_BYTES):  # any altered byte
        tampered = bytearray(reply)
        tampered[position] ^= 1
        with pytest.raises(HandshakeError, match="cannot open the cookie reply"):
            open_cookie(OPEN, msg1, bytes(tampered))
    with pytest.raises(HandshakeError, match="expected 56"):
        open_cookie(OPEN, msg1, reply[:-1])


def test_load_comes_from_pending_handshakes_or_recent_exchanges() -> None:
    guard = CookieGuard(pending_threshold=3, exchange_rate=2)
    assert not guard.under_load(2, 0.0)
    assert guard.under_load(3, 0.0)
    guard.exchanged(10.0)
    assert not guard.under_load(0, 10.5)
    guard.exchanged(10.5)
    assert guard.under_load(0, 10.9)  # two in the current window
    assert guard.under_load(0, 11.5)  # and in the previous one
    assert not guard.under_load(0, 12.6)  # two windows later: quiet again
    guard.exchanged(20.0)
    guard.exchanged(20.1)
    assert not guard.under_load(0, 25.0)  # a window long past does not count as the last one
    assert guard.exchanges == 4
    with pytest.raises(ValueError, match="at least 1"):
        CookieGuard(pending_threshold=0, exchange_rate=1)
    with pytest.raises(ValueError, match="at least 1"):
        CookieGuard(pending_threshold=1, exchange_rate=0)


def test_a_connection_needs_a_cookie_only_under_load() -> None:
    guard = CookieGuard(pending_threshold=5, exchange_rate=100)
    tagged = Initiator(ALICE).start()[:-MAC2_BYTES]
    calm = ConnectionCookies(guard, HOST, lambda: 0.0, lambda: 1)
    assert not calm.required(tagged, ZERO_MAC2)  # mac2 is not even looked at
    busy = ConnectionCookies(guard, HOST, lambda: 0.0, lambda: 5)
    assert busy.required(tagged, ZERO_MAC2)
    assert not busy.required(tagged, mac2(guard.cookie(HOST, 0.0), tagged))
    assert guard.valid_mac2 == 1


# -- the handshake roles under load -----------------------------------------------------------


def count_exchanges(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every responder ephemeral key made and every X25519 computed, through hooks."""
    calls: list[object] = []
    make, dh = handshake._ephemeral, handshake.dh
    monkeypatch.setattr(handshake, "_ephemeral", lambda key: calls.append("e") or make(key))
    monkeypatch.setattr(handshake, "dh", lambda a, b: calls.append("dh") or dh(a, b))
    return calls


def test_under_load_a_msg1_without_a_cookie_costs_no_x25519(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    guard, _ = counting_random()
    seen = SeenMsg1()
    flood = [Initiator(ALICE).start() for _ in range(50)]  # made before counting
    calls = count_exchanges(monkeypatch)
    for msg1 in flood:
        responder = Responder(BOB, seen=seen, cookies=loaded(guard))
        reply = responder.receive(msg1)
        assert responder.cookie_sent
        assert reply is not None
        assert len(reply) == COOKIE_REPLY_BYTES
        with pytest.raises(RuntimeError, match="cookie-sent"):
            responder.receive(msg1)
    assert calls == []
    assert (guard.replies, guard.exchanges, len(seen)) == (50, 0, 0)  # and nothing remembered


def test_the_cookie_round_trip_then_serves_the_initiator(monkeypatch: pytest.MonkeyPatch) -> None:
    guard, _ = counting_random()
    seen = SeenMsg1()
    first = Initiator(ALICE, expected_node_id=BOB.node_id)
    reply = Responder(BOB, seen=seen, cookies=loaded(guard)).receive(first.start())
    assert reply is not None
    with pytest.raises(CookieReply) as caught:
        first.receive(reply)
    assert repr(caught.value.cookie) not in repr(caught.value)  # not in the message
    calls = count_exchanges(monkeypatch)
    again = Initiator(ALICE, expected_node_id=BOB.node_id, cookie=caught.value.cookie)
    responder = Responder(BOB, seen=seen, cookies=loaded(guard))
    msg2 = responder.receive(again.start())
    assert msg2 is not None
    assert len(msg2) == MSG2_BYTES
    assert not responder.cookie_sent
    assert responder.receive(again.receive(msg2)) is None
    assert again.result.remote_node_id == BOB.node_id
    assert responder.result.remote_node_id == ALICE.node_id
    assert again.result.transcript_hash == responder.result.transcript_hash
    assert sorted(calls) == ["dh", "dh", "e", "e"]  # one handshake: its two sides, once
    assert (guard.replies, guard.valid_mac2, guard.exchanges, len(seen)) == (1, 1, 1, 1)


def test_a_cookie_from_another_host_earns_only_another_cookie_reply() -> None:
    guard, _ = counting_random()
    stolen = guard.cookie("192.0.2.99", 0.0)
    responder = Responder(BOB, cookies=loaded(guard, HOST))
    responder.receive(Initiator(ALICE, cookie=stolen).start())
    assert responder.cookie_sent
    assert guard.exchanges == 0


def test_a_tampered_or_foreign_cookie_reply_fails_the_initiator() -> None:
    guard, _ = counting_random()
    initiator = Initiator(ALICE)
    msg1 = initiator.start()
    reply = guard.reply(HOST, OPEN, Initiator(ALICE).start(), 0.0)  # answers another msg1
    with pytest.raises(HandshakeError, match="cannot open the cookie reply"):
        initiator.receive(reply)
    tampered = bytearray(guard.reply(HOST, OPEN, msg1, 0.0))
    tampered[-1] ^= 1
    fresh = Initiator(ALICE)
    fresh.start()
    with pytest.raises(HandshakeError, match="cannot open the cookie reply"):
        fresh.receive(bytes(tampered))
    with pytest.raises(ValueError, match="16 bytes"):
        Initiator(ALICE, cookie=b"short")


@pytest.mark.parametrize("kind", ["retired", "ticket"])
def test_retired_and_ticket_keys_work_under_load(kind: str) -> None:
    """The reply is sealed under the key msg1 was tagged with, whatever its kind."""
    guard, _ = counting_random()
    keyring = Keyring.generate()
    ticket = b"\x42" * 32
    psk = keyring.primary if kind == "retired" else ticket
    if kind == "retired":
        new = Keyring.generate().primary
        keyring.install(new)
        keyring.use(new)
        keyring.remove(psk)  # psk is now a retired key

    def extra(body: bytes, tag: bytes) -> PskMatch | None:
        return PskMatch(ticket, "ticket") if network_tag(ticket, body) == tag else None

    def responder() -> Responder:
        return Responder(BOB, keyring=keyring, extra_keys=extra, cookies=loaded(guard))

    first = Initiator(ALICE, network_key=psk)
    reply = responder().receive(first.start())
    assert reply is not None
    with pytest.raises(CookieReply) as caught:
        first.receive(reply)
    again = Initiator(ALICE, network_key=psk, cookie=caught.value.cookie)
    serving = responder()
    msg2 = serving.receive(again.start())
    assert msg2 is not None
    serving.receive(again.receive(msg2))
    assert serving.result.psk_kind == (RETIRED if kind == "retired" else "ticket")
