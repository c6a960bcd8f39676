"""Hostile datagrams for the robustness test and the fuzz benchmark.

Shared by ``tests/sim/test_dht_fuzz.py`` (in-memory network, a few ten thousand datagrams) and
``scripts/bench/bench_dht_fuzz.py`` (real UDP, a million). Everything random comes from one
``random.Random(seed)``, and Ed25519 signatures are deterministic, so a seed replays the same
bytes in the same order.

:class:`Fuzzer` draws datagrams aimed at one victim node from the categories of
:data:`CATEGORIES`, each with its share. The ones that matter most are *signed*: they carry a
valid signature of a fuzzer identity (a pool of a few hundred, see :func:`fuzz_identity`), the
victim's recipient tag and a fresh counter, so they pass every check of the datagram layer and
reach the envelope decoder, the schemas, the DHT handlers and the record validation. The others
stop earlier: random bytes, truncated, extended and bit-flipped copies of real datagrams,
forged signatures, replays.

Each category lists the :data:`OUTCOMES` its datagrams can end in: every datagram a
``DatagramService`` receives lands in exactly one of those counters (``drop_*``, ``requests``
for a request handed to a handler, ``replies`` for a matched reply), which is what the test
checks per category.

:meth:`Fuzzer.answer` plays the other side: given a request the victim sent to a fuzzer
identity (the victim pings back every requester it does not know), it builds hostile answers
(wrong types, lying contacts, invalid records, duplicates, answers signed by the wrong key).
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import random
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from plexinode.dht.messages import (
    MAX_CONTACTS,
    FindNode,
    FindValue,
    Nodes,
    Store,
    StoreResult,
    Value,
    WireContact,
)
from plexinode.dht.record_types import (
    PEER,
    PEER_MAX_TTL,
    PEER_MAX_VALUE_BYTES,
    PROVIDER,
    PROVIDER_MAX_VALUE_BYTES,
)
from plexinode.dht.records import CLOCK_SKEW_ALLOWANCE, MAX_VALUE_BYTES, Record, sign_record
from plexinode.errors import DecodeError
from plexinode.identity import Identity, NodeId
from plexinode.net import packet
from plexinode.net.keyring import Keyring
from plexinode.net.settings import DatagramSettings
from plexinode.wire import envelope
from plexinode.wire.codec import DATAGRAM_LIMITS, pack
from plexinode.wire.messages import Echo, ErrorReply, Ping, Pong, StreamOpen
from plexinode.wire.schema import (
    U64_MAX,
    Bool,
    Bytes,
    Check,
    Int,
    ListOf,
    Message,
    Nested,
    Str,
    Struct,
)

#: Every counter of ``DatagramService.stats`` that one received datagram can end in.
OUTCOMES: Final = (
    "drop_host_rate_limited",
    "drop_host_failures",
    "drop_not_member",
    "drop_malformed",
    "drop_misaddressed",
    "drop_network_key",
    "drop_id_puzzle",
    "drop_bad_signature",
    "drop_from_self",
    "drop_replay",
    "drop_anonymous",
    "drop_unmatched_reply",
    "drop_rate_limited",
    "drop_duplicate",
    "drop_unhandled",
    "drop_busy",
    "requests",
    "replies",
)

#: The default replay window (``datagram.replay_window``), in the sender's datagrams.
DEFAULT_WINDOW: Final = DatagramSettings().replay_window

_REQUEST: Final = frozenset({"requests", "drop_busy", "drop_rate_limited"})


@dataclass(frozen=True, slots=True)
class Category:
    """One kind of hostile datagram.

    Attributes:
        name: Short name, for counters and reports.
        share: Weight in the mix, per draw (the shares of :data:`CATEGORIES` add up to 100).
        outcomes: The counters of :data:`OUTCOMES` its datagrams can end in; None when any
            (replays of captured traffic depend on what was captured).
        what: One line for reports.
    """

    name: str
    share: int
    outcomes: frozenset[str] | None
    what: str


def _c(name: str, share: int, outcomes: set[str] | frozenset[str] | None, what: str) -> Category:
    return Category(name, share, None if outcomes is None else frozenset(outcomes), what)


CATEGORIES: Final = (
    _c(
        "random_bytes",
        6,
        {"drop_malformed", "drop_misaddressed", "drop_network_key"},
        "random bytes, 0..1500 long",
    ),
    _c(
        "random_header",
        5,
        {"drop_malformed", "drop_network_key", "drop_id_puzzle", "drop_bad_signature"},
        "the current version, victim or zero tag, random key, counter, payload and signature; "
        "encrypted under the network key four times in five (else under another key)",
    ),
    _c(
        "truncated",
        5,
        {"drop_malformed", "drop_misaddressed", "drop_network_key"},
        "a real signed datagram (captured or fresh) cut short",
    ),
    _c(
        "extended",
        3,
        {"drop_malformed", "drop_misaddressed", "drop_network_key", "drop_id_puzzle"},
        "a real signed datagram with bytes appended or inserted",
    ),
    _c(
        "bitflip_header",
        4,
        {
            "drop_malformed",
            "drop_misaddressed",
            "drop_network_key",
            "drop_id_puzzle",
            "drop_bad_signature",
        },
        "1-3 bits flipped in version, key, tag or counter of a fresh signed datagram "
        "(re-encrypted under the network key four times in five)",
    ),
    _c(
        "bitflip_payload",
        5,
        {"drop_malformed", "drop_network_key", "drop_bad_signature"},
        "1-3 bits flipped in the envelope of a fresh signed datagram (re-encrypted under "
        "the network key four times in five)",
    ),
    _c(
        "bitflip_signature",
        4,
        {"drop_network_key", "drop_bad_signature"},
        "1-3 bits flipped in the signature of a fresh signed datagram (re-encrypted under "
        "the network key four times in five)",
    ),
    _c(
        "forged_signature",
        4,
        {"drop_id_puzzle", "drop_bad_signature"},
        "valid envelope; random, zero or other-key signature, or an impersonated key",
    ),
    _c("replay_own", 4, {"drop_replay"}, "exact copy of a signed datagram sent earlier"),
    _c(
        "replay_stale",
        2,
        {"drop_replay"},
        "freshly signed, counter a replay window below the sender's earlier ones (or 0)",
    ),
    _c(
        "replay_captured",
        3,
        None,
        "exact copy of a datagram captured from the honest network (any node, any recipient)",
    ),
    _c(
        "signed_bad_envelope",
        4,
        {"drop_malformed"},
        "signed; payload not an envelope: scalars, wrong arity, version, request ID, body, "
        "deep nesting, ext types, bad UTF-8, huge declared lengths, trailing bytes",
    ),
    _c(
        "signed_unknown_type",
        3,
        {"drop_malformed"},
        "signed; envelope with an unknown or non-integer type code",
    ),
    _c(
        "signed_bad_fields",
        6,
        {"drop_malformed"},
        "signed; a known message whose body has a field of the wrong type, range or size, "
        "a missing or extra field (contacts and records included)",
    ),
    _c(
        "signed_find_node",
        7,
        _REQUEST,
        "signed FIND_NODE: random, zero, victim, own and honest targets, request ID 0 or max",
    ),
    _c(
        "signed_find_value",
        6,
        _REQUEST | {"drop_anonymous"},
        "signed FIND_VALUE: any rtype 0..65535, odd keys; sometimes with the zero tag",
    ),
    _c(
        "signed_store_invalid",
        12,
        _REQUEST | {"drop_anonymous"},
        "signed STORE of an invalid record: bad signature, expired, from the future, "
        "oversized, unknown type, key mismatch, bad peer addresses",
    ),
    _c(
        "signed_twin_request",
        2,
        _REQUEST | {"drop_duplicate"},
        "signed request sent twice back to back: same request ID and body, fresh counters "
        "(what a retransmission looks like); 2 datagrams per draw",
    ),
    _c(
        "signed_store_update",
        2,
        _REQUEST | {"drop_anonymous"},
        "signed STORE of a valid provider record, one slot per identity, seq growing",
    ),
    _c(
        "signed_unsolicited_reply",
        6,
        {"drop_unmatched_reply", "drop_anonymous"},
        "signed replies to requests never sent: nodes, value, store-result, pong, error",
    ),
    _c(
        "signed_misaddressed",
        2,
        {"drop_misaddressed"},
        "signed, valid, but tagged for another node",
    ),
    _c(
        "signed_unsolved_id",
        2,
        _REQUEST | {"drop_id_puzzle"},
        "signed FIND_NODE from an identity whose ID fails the network's ID puzzle "
        "(dropped before decoding when the network sets one)",
    ),
    _c(
        "signed_other_requests",
        3,
        _REQUEST | {"drop_unhandled", "drop_anonymous"},
        "signed ping, and stream-open / echo requests that no datagram handler serves",
    ),
)
assert sum(c.share for c in CATEGORIES) == 100

BY_NAME: Final = {c.name: c for c in CATEGORIES}

#: Categories whose datagrams pass the recipient, decoding and signature checks and therefore
#: reach the replay guard: an exact copy of one of them later is a replay.
_GUARDED: Final = frozenset(
    {
        "signed_find_node",
        "signed_find_value",
        "signed_store_invalid",
        "signed_store_update",
        "signed_twin_request",
        "signed_unsolicited_reply",
        "signed_other_requests",
    }
)

#: Reply kinds of :meth:`Fuzzer.answer`.
ANSWER_KINDS: Final = (
    "answer_wrong_type",
    "answer_lying_nodes",
    "answer_invalid_records",
    "answer_error",
    "answer_malformed",
    "answer_duplicate",
    "answer_wrong_signer",
)


def solving_identity(label: bytes, index: int, difficulty: int) -> Identity:
    """The first identity seeded by (`label`, `index`, 0, 1, ...) whose node ID solves the ID
    puzzle of `difficulty` bits (``NodeId.meets``): about ``2**difficulty`` tries of ~25 µs,
    and the same identity in every process and every run."""
    prefix = label[:16].ljust(16, b"\0") + index.to_bytes(8, "big")
    for attempt in range(1 << 40):
        identity = Identity.from_seed(prefix + attempt.to_bytes(8, "big"))
        if identity.node_id.meets(difficulty):
            return identity
    raise AssertionError("unreachable")


def fuzz_identity(index: int, difficulty: int = 0) -> Identity:
    """Fuzzer identity number `index`, solving the ID puzzle of `difficulty` bits."""
    return solving_identity(b"plexinode-fuzzer", index, difficulty)


def seal(identity: Identity, tag: bytes, counter: int, payload: bytes) -> bytes:
    """A datagram in the layout of ``plexinode.net.packet``, with the counter chosen by the
    caller (``packet.Sealer`` picks its own); ``tests/sim/test_dht_fuzz.py`` checks that both
    produce the same bytes."""
    header = struct.pack(
        f">B{len(identity.public_key)}s{packet.RECIPIENT_BYTES}sQ",
        packet.VERSION,
        identity.public_key,
        tag,
        counter,
    )
    signed = header + payload
    return tagged(signed + identity.sign(packet.DOMAIN + signed))


#: The victim's network: the open network ``open``, whose key anyone can derive, so a hostile
#: member tags its datagrams properly and they reach the later checks.
NETWORK = Keyring.open("open")


def tagged(body: bytes) -> bytes:
    """`body` (the inner datagram: header, payload, signature) encrypted under the network key,
    as a member would send it."""
    return packet.encrypt(NETWORK.primary, body)


def untagged(datagram: bytes) -> bytes:
    """The inner datagram of one of ours (a member can decrypt it)."""
    inner = packet.decrypt(datagram, [NETWORK.primary])
    assert inner is not None
    return inner


def decodes(payload: bytes) -> bool:
    """Whether the victim's decoder accepts `payload` as an envelope."""
    try:
        envelope.decode(payload, DATAGRAM_LIMITS)
    except DecodeError:
        return False
    return True


def _flip(data: bytes, start: int, end: int, rng: random.Random) -> bytes:
    """`data` with 1-3 distinct bits flipped within ``data[start:end]``."""
    out = bytearray(data)
    bits = rng.sample(range(start * 8, end * 8), rng.randint(1, 3))
    for bit in bits:
        out[bit // 8] ^= 0x80 >> (bit % 8)
    return bytes(out)


_IP_CHOICES: Final = (
    b"\x7f\x00\x00\x01",  # 127.0.0.1
    b"\x0a\x00\x00\x01",  # 10.0.0.1
    b"\x00\x00\x00\x00",  # unspecified
    b"\xff\xff\xff\xff",  # broadcast
    b"\xe0\x00\x00\x01",  # multicast
    bytes(16),  # ::
    bytes(15) + b"\x01",  # ::1
    bytes(10) + b"\xff\xff\x01\x02\x03\x04",  # IPv4-mapped
    b"\xff\x02" + bytes(13) + b"\x01",  # IPv6 multicast
)

#: Values of every msgpack type; the wrong ones for a field are drawn from here.
_ANY_VALUES: Final[tuple[Any, ...]] = (
    None,
    True,
    False,
    0,
    1,
    -1,
    1.5,
    "",
    "x",
    b"",
    b"\x00",
    [],
    [0],
    {"a": 1},
)


class Fuzzer:
    """Draws hostile datagrams for one victim; see the module docstring.

    Args:
        victim_key: The victim's Ed25519 public key.
        seed: Seed of the one random generator.
        identities: Size of the pool of fuzzer identities.
        first_identity: Index of the first pool identity (several fuzzers, e.g. one per sender
            process, take disjoint ranges so that their counters never collide).
        clock: Unix time as the victim sees it, for record expiry (the node's wall clock).
        known_keys: Public keys of honest nodes (targets, tags, impersonations).
        captured: Datagrams captured from the honest network (see
            :class:`~plexinode.testing.capture.Capture`).
        id_difficulty: The network's ID puzzle: pool identities solve it (``signed_unsolved_id``
            uses a few that do not).
        dense_counters: Counters advance by 1 from datagram to datagram of one identity, instead
            of following ``clock`` in microseconds as a real sender does. Dense counters are
            what an attacker uses to make the victim remember the most counters per identity.
        window: The victim's replay window (for stale counters).
    """

    def __init__(
        self,
        victim_key: bytes,
        *,
        seed: int,
        identities: int = 300,
        first_identity: int = 0,
        clock: Callable[[], float],
        known_keys: Sequence[bytes] = (),
        captured: Sequence[bytes] = (),
        id_difficulty: int = 0,
        dense_counters: bool = False,
        window: int = DEFAULT_WINDOW,
    ) -> None:
        if identities < 2:
            raise ValueError("the pool needs at least 2 identities")
        self.rng = random.Random(seed)
        self.victim_key = victim_key
        self.victim = NodeId.from_public_key(victim_key)
        self.victim_tag = packet.recipient_tag(self.victim)
        self.pool = [fuzz_identity(first_identity + i, id_difficulty) for i in range(identities)]
        unsolved = (
            Identity.from_seed(b"plexinode-unsolved" + i.to_bytes(14, "big")) for i in range(1000)
        )
        self.unsolved = [
            ident
            for ident in unsolved
            if not id_difficulty or not ident.node_id.meets(id_difficulty)
        ][:8]
        self._unsolved_last = [0] * len(self.unsolved)
        self._by_tag = {packet.recipient_tag(ident.node_id): i for i, ident in enumerate(self.pool)}
        self.clock = clock
        self.known_keys = [k for k in known_keys if k != victim_key]
        self.known_ids = [NodeId.from_public_key(k) for k in self.known_keys]
        self.captured = list(captured)
        self.dense_counters = dense_counters
        self.window = window
        self._last = [0] * identities
        self._first = [0] * identities
        self._guarded: list[int] = []  # identities the victim has (probably) heard from
        self._guarded_set: set[int] = set()
        self._ring: collections.deque[bytes] = collections.deque(maxlen=256)
        self._seq = [0] * identities
        self._queued: collections.deque[tuple[str, bytes]] = collections.deque()
        self._names = [c.name for c in CATEGORIES]
        self._weights = [c.share for c in CATEGORIES]
        self._makers: dict[str, Callable[[], bytes]] = {
            name: getattr(self, "_" + name) for name in self._names
        }
        #: Datagrams made, by category (answers included).
        self.counts: collections.Counter[str] = collections.Counter()

    # -- drawing -------------------------------------------------------------------------------

    def next(self) -> tuple[str, bytes]:
        """A datagram of a category drawn by share (or the second half of a pair)."""
        if self._queued:
            name, data = self._queued.popleft()
            self.counts[name] += 1
            return name, data
        name = self.rng.choices(self._names, self._weights)[0]
        return name, self.make(name)

    def make(self, name: str) -> bytes:
        """A datagram of category `name`. Categories that make pairs (``signed_twin_request``)
        return the second datagram of the pair from the next call of :meth:`next` or of
        ``make`` with the same name."""
        self.counts[name] += 1
        if self._queued and self._queued[0][0] == name:
            return self._queued.popleft()[1]
        return self._makers[name]()

    # -- identities and counters ---------------------------------------------------------------

    def _pick(self) -> int:
        return self.rng.randrange(len(self.pool))

    def _counter(self, i: int) -> int:
        last = self._last[i]
        if self.dense_counters and last:
            counter = last + 1
        else:
            counter = max(last + 1, int(self.clock() * 1_000_000))
        self._last[i] = counter
        if not self._first[i]:
            self._first[i] = counter
        return counter

    def _tag(self, zero_share: float = 0.0) -> bytes:
        return packet.ANY_RECIPIENT if self.rng.random() < zero_share else self.victim_tag

    def _signed(self, payload: bytes, *, guarded: bool, tag: bytes | None = None) -> bytes:
        """`payload` signed by a pool identity with a fresh counter."""
        i = self._pick()
        return self._signed_by(i, payload, guarded=guarded, tag=tag)

    def _signed_by(self, i: int, payload: bytes, *, guarded: bool, tag: bytes | None) -> bytes:
        data = seal(
            self.pool[i], self.victim_tag if tag is None else tag, self._counter(i), payload
        )
        if guarded:
            self._ring.append(data)
            if i not in self._guarded_set:
                self._guarded_set.add(i)
                self._guarded.append(i)
        return data

    def _fresh_valid(self) -> bytes:
        """A valid signed request for the victim (never sent as such: a base for mutations)."""
        i = self._pick()
        payload = envelope.encode(self._valid_request(), self._request_id())
        return seal(self.pool[i], self.victim_tag, self._counter(i), payload)

    def _request_id(self) -> int:
        r = self.rng.random()
        if r < 0.05:
            return 0
        if r < 0.1:
            return U64_MAX
        return self.rng.getrandbits(64) or 1

    # -- values --------------------------------------------------------------------------------

    def _bytes(self, n: int) -> bytes:
        return self.rng.randbytes(n)

    def _id(self) -> bytes:
        r = self.rng.random()
        if r < 0.4:
            return self._bytes(32)
        if r < 0.55:
            return self.victim.raw
        if r < 0.65 and self.known_ids:
            return self.rng.choice(self.known_ids).raw
        if r < 0.75:
            return self.rng.choice(self.pool).node_id.raw
        if r < 0.82:
            return bytes(32)
        if r < 0.88:
            return b"\xff" * 32
        raw = bytearray(self.victim.raw)
        bit = self.rng.randrange(256)
        raw[bit // 8] ^= 0x80 >> (bit % 8)
        return bytes(raw)

    def _contact(self) -> WireContact:
        r = self.rng.random()
        if r < 0.4:
            ip = self.rng.choice(_IP_CHOICES)
        elif r < 0.7:
            ip = self._bytes(self.rng.choice((4, 16)))
        else:
            ip = self._bytes(self.rng.randint(5, 15))  # the schema allows 4..16 bytes
        port = self.rng.choice((1, 7420, 65535, self.rng.randint(1, 65535)))
        return WireContact(self._id(), ip, port)

    def _contacts(self, most: int = 20) -> tuple[WireContact, ...]:
        n = self.rng.randint(0, most)
        contacts = [self._contact() for _ in range(n)]
        if contacts and self.rng.random() < 0.3:
            contacts.append(contacts[0])  # a duplicate
        return tuple(contacts)

    def _now(self) -> int:
        return int(self.clock())

    def _invalid_record(self) -> Record:
        """A record every node must refuse, of one of several kinds."""
        i = self._pick()
        identity = self.pool[i]
        now = self._now()
        kind = self.rng.randrange(9)
        key = self._id()
        fine_expiry = now + self.rng.randint(600, 3600)
        if kind == 0:  # bad signature
            good = sign_record(
                identity, PROVIDER, key, seq=1, expires_at=fine_expiry, value=self._bytes(8)
            )
            other = self.pool[(i + 1) % len(self.pool)]  # never the publisher
            sig = self.rng.choice(
                (
                    _flip(good.signature, 0, 64, self.rng),
                    self._bytes(64),
                    bytes(64),
                    other.sign(good.signed_bytes()),
                )
            )
            return dataclasses.replace(good, signature=sig)
        if kind == 1:  # expired
            expires = max(0, now - self.rng.choice((0, 1, 3600, 10**6, now)))
            return sign_record(identity, PROVIDER, key, seq=2, expires_at=expires, value=b"")
        if kind == 2:  # from the future
            expires = self.rng.choice(
                (
                    now + PEER_MAX_TTL + CLOCK_SKEW_ALLOWANCE + 3600 + self.rng.randint(0, 10**6),
                    U64_MAX,
                )
            )
            return sign_record(identity, PROVIDER, key, seq=3, expires_at=expires, value=b"")
        if kind == 3:  # oversized provider value
            value = self._bytes(self.rng.randint(PROVIDER_MAX_VALUE_BYTES + 1, MAX_VALUE_BYTES))
            return Record(PROVIDER, key, identity.public_key, 4, fine_expiry, value, bytes(64))
        if kind == 4:  # oversized peer value
            value = self._bytes(self.rng.randint(PEER_MAX_VALUE_BYTES + 1, MAX_VALUE_BYTES))
            own = identity.node_id.raw
            return Record(PEER, own, identity.public_key, 5, fine_expiry, value, bytes(64))
        if kind == 5:  # unknown type
            rtype = self.rng.choice((0, 3, 64, 0xFFFF, self.rng.randint(3, 0xFFFF)))
            return sign_record(identity, rtype, key, seq=6, expires_at=fine_expiry, value=b"x")
        if kind == 6:  # a peer record under someone else's ID
            value = pack([[b"\x7f\x00\x00\x01", 7420]])
            if key == identity.node_id.raw:
                key = self.victim.raw
            return sign_record(identity, PEER, key, seq=7, expires_at=fine_expiry, value=value)
        # kinds 7, 8: a peer record with bad addresses (signed: the value is checked first)
        value = self._bad_peer_value()
        own = identity.node_id.raw
        return sign_record(identity, PEER, own, seq=8, expires_at=fine_expiry, value=value)

    def _bad_peer_value(self) -> bytes:
        lo = b"\x7f\x00\x00\x01"
        choices: list[Callable[[], bytes]] = [
            lambda: self._bytes(self.rng.randint(0, PEER_MAX_VALUE_BYTES)),
            lambda: pack([]),
            lambda: pack([[lo, p] for p in range(1, 10)]),  # 9 addresses
            lambda: pack([[lo, 7420], [lo, 7420]]),  # duplicate
            lambda: pack([[b"\x00\x00\x00\x00", 7420]]),  # unspecified
            lambda: pack([[b"\xe0\x00\x00\x01", 7420]]),  # multicast
            lambda: pack([[b"\xff\xff\xff\xff", 7420]]),  # broadcast
            lambda: pack([[bytes(10) + b"\xff\xff" + lo, 7420]]),  # IPv4-mapped
            lambda: pack([[lo, 0]]),
            lambda: pack([[lo, 65536]]),
            lambda: pack([[lo, -1]]),
            lambda: pack([[lo, "7420"]]),
            lambda: pack([[b"\x7f\x00\x00", 7420]]),  # 3-byte IP
            lambda: pack([[lo]]),
            lambda: pack([[lo, 7420, 1]]),
            lambda: pack([lo, 7420]),
            lambda: pack({"ip": lo}),
            lambda: pack("127.0.0.1:7420"),
            lambda: pack([[lo, 7420]]) + b"\x00",  # trailing byte
            lambda: b"\x91" * 40 + b"\xc0",  # nested too deep for an address list
        ]
        return self.rng.choice(choices)()

    def _valid_record(self, i: int) -> Record:
        """A valid provider record of pool identity `i`, always in the same slot."""
        identity = self.pool[i]
        self._seq[i] += 1
        key = hashlib.blake2b(identity.public_key, digest_size=32).digest()
        return sign_record(
            identity,
            PROVIDER,
            key,
            seq=self._seq[i],
            expires_at=self._now() + self.rng.randint(600, 3600),
            value=self._bytes(self.rng.randint(0, PROVIDER_MAX_VALUE_BYTES)),
        )

    def _valid_request(self) -> Message:
        r = self.rng.random()
        if r < 0.4:
            return FindNode(self._id())
        if r < 0.7:
            return FindValue(self.rng.choice((PEER, PROVIDER, 0, 0xFFFF)), self._id())
        if r < 0.9:
            return Store(self._invalid_record())
        return Ping()

    def _valid_response(self) -> Message:
        r = self.rng.randrange(5)
        if r == 0:
            return Nodes(self._contacts())
        if r == 1:
            records = tuple(self._invalid_record() for _ in range(self.rng.randint(0, 1)))
            return Value(records, self._contacts(10))
        if r == 2:
            return StoreResult(
                self.rng.random() < 0.5, self.rng.getrandbits(64), "x" * self.rng.randint(0, 64)
            )
        if r == 3:
            host = self.rng.choice(("127.0.0.1", "", "::1", "x" * 64, "\u00e9\u00e9", "a:b:c"))
            return Pong(host, self.rng.randint(0, 65535))
        return ErrorReply(self.rng.randint(0, 0xFFFF), "e" * self.rng.randint(0, 200))

    def _any_message(self) -> Message:
        r = self.rng.random()
        if r < 0.45:
            return self._valid_request()
        if r < 0.85:
            return self._valid_response()
        if r < 0.93:
            return StreamOpen("p" * self.rng.randint(0, 64))
        return Echo(self._bytes(self.rng.randint(0, 200)))

    def _envelope(self, message: Message, request_id: int | None = None) -> bytes:
        """The envelope of `message`, trimmed (contacts dropped) until it fits a datagram."""
        rid = self._request_id() if request_id is None else request_id
        payload = envelope.encode(message, rid)
        while len(payload) > packet.MAX_PAYLOAD:
            if isinstance(message, Nodes) and message.contacts:
                message = Nodes(message.contacts[:-1])
            elif isinstance(message, Value) and message.contacts:
                message = Value(message.records, message.contacts[:-1])
            elif isinstance(message, Value) and message.records:
                message = Value(message.records[:-1], message.contacts)
            else:
                break
            payload = envelope.encode(message, rid)
        return payload

    # -- categories: unsigned or broken ---------------------------------------------------------

    def _random_bytes(self) -> bytes:
        return self._bytes(self.rng.randint(0, 1500))

    def _random_header(self) -> bytes:
        header = struct.pack(
            ">B32s8sQ",
            packet.VERSION,
            self.rng.choice((self._bytes(32), self.rng.choice(self.pool).public_key)),
            self._tag(0.3),
            self.rng.getrandbits(64),
        )
        body = header + self._bytes(self.rng.randint(0, packet.MAX_PAYLOAD)) + self._bytes(64)
        return tagged(body) if self.rng.random() < 0.8 else packet.encrypt(self._bytes(32), body)

    def _base(self) -> bytes:
        if self.captured and self.rng.random() < 0.5:
            return self.rng.choice(self.captured)
        return self._fresh_valid()

    def _truncated(self) -> bytes:
        base = self._base()
        return base[: self.rng.randrange(len(base))]

    def _extended(self) -> bytes:
        base = self._base()
        extra = self._bytes(self.rng.randint(1, 300))
        if self.rng.random() < 0.5:
            return base + extra
        at = self.rng.randint(0, len(base) - 1)
        return base[:at] + extra[: self.rng.randint(1, 8)] + base[at:]

    # Flips are re-encrypted under the network key (a member knows it) four times in five, so
    # that they reach the checks after it; the rest, under another key, stop at the AEAD.
    def _retag(self, body: bytes) -> bytes:
        return tagged(body) if self.rng.random() < 0.8 else packet.encrypt(self._bytes(32), body)

    def _bitflip_header(self) -> bytes:
        return self._retag(_flip(untagged(self._fresh_valid()), 0, packet.HEADER_BYTES, self.rng))

    def _bitflip_payload(self) -> bytes:
        body = untagged(self._fresh_valid())
        return self._retag(_flip(body, packet.HEADER_BYTES, len(body) - 64, self.rng))

    def _bitflip_signature(self) -> bytes:
        body = untagged(self._fresh_valid())
        return self._retag(_flip(body, len(body) - 64, len(body), self.rng))

    def _forged_signature(self) -> bytes:
        i = self._pick()
        payload = self._envelope(self._valid_request())
        header_key = self.pool[i].public_key
        kind = self.rng.randrange(6)
        if kind == 0:  # someone else's key in the header: impersonation
            header_key = self.rng.choice([self.victim_key, *self.known_keys])
        elif kind == 1:  # a key that is not a valid point, or the identity point
            header_key = self.rng.choice((bytes(32), b"\x01" + bytes(31), b"\xff" * 32))
        header = struct.pack(
            ">B32s8sQ", packet.VERSION, header_key, self._tag(0.2), self._counter(i)
        )
        signed = header + payload
        if kind in (0, 2):  # signed by a pool key, which is not the one in the header
            other = self.pool[(i + 1) % len(self.pool)]
            signature = other.sign(packet.DOMAIN + signed)
        elif kind == 3:
            signature = self._bytes(64)
        elif kind == 4:  # a valid signature of other bytes
            signature = self.pool[i].sign(packet.DOMAIN + signed + b"\x00")
        else:
            signature = bytes(64)
        return tagged(signed + signature)

    def _replay_own(self) -> bytes:
        if not self._ring:
            return self._replay_stale()
        return self.rng.choice(self._ring)

    def _replay_stale(self) -> bytes:
        if not self._guarded:
            i, counter = self._pick(), 0  # 0 is at or below every sender's floor
        else:
            i = self.rng.choice(self._guarded)
            # In the epoch (the high half of the counter) of the sender's first datagram, a
            # number (the low half) a window below it; or number 0, which is never sent.
            first = self._first[i]
            epoch, number = first >> packet.SEQ_BITS, first & packet.SEQ_MASK
            below = number - self.window - 1 - self.rng.randint(0, 10**6)
            stale = epoch << packet.SEQ_BITS | max(0, below)
            counter = stale if self.rng.random() < 0.8 else epoch << packet.SEQ_BITS
        payload = self._envelope(self._valid_request())
        return seal(self.pool[i], self._tag(0.1), counter, payload)

    def _replay_captured(self) -> bytes:
        if not self.captured:
            return self._replay_own()
        return self.rng.choice(self.captured)

    # -- categories: signed, valid signature ----------------------------------------------------

    def _signed_bad_envelope(self) -> bytes:
        for _ in range(10):
            payload = self._bad_envelope()
            if not decodes(payload):
                return self._signed(payload, guarded=False, tag=self._tag(0.1))
        return self._signed(b"", guarded=False)

    def _bad_envelope(self) -> bytes:
        rng = self.rng
        rid = self._request_id()
        valid = self._envelope(self._valid_request(), rid)
        prefix = b"\x94\x01\x10\x01"  # [1, 16 (find-node), 1, ...
        kind = rng.randrange(16)
        if kind == 0:
            return pack(rng.choice(_ANY_VALUES))
        if kind == 1:
            return pack([1, 16, rid, [self._id()], 0][: rng.choice((0, 1, 2, 3, 5))])
        if kind == 2:
            version = rng.choice((0, 2, 255, -1, True, False, "1", 1.0, None, b"\x01", [1]))
            return pack([version, 16, rid, [self._id()]])
        if kind == 3:
            request_id: object = rng.choice((-1, -(2**63), "1", 1.5, None, b"\x00", [], True))
            return pack([1, 16, request_id, [self._id()]])
        if kind == 4:
            return pack([1, 16, rid, rng.choice((None, 0, "x", b"x", {"a": 1}, True))])
        if kind == 5:
            return prefix + b"\x91" * rng.randint(10, 1000) + b"\xc0"
        if kind == 6:
            return pack([1, 16, rid, {1: 2}])
        if kind == 7:
            return prefix + rng.choice(
                (b"\xd4\x01\x00", b"\xc7\x01\x05\x00", b"\xd8\x00" + bytes(16))
            )
        if kind == 8:
            return valid + self._bytes(rng.randint(1, 16))
        if kind == 9:
            return valid[: rng.randrange(len(valid))]
        if kind == 10:
            huge = (b"\xdd", b"\xc6", b"\xdb", b"\xdf", b"\xdc", b"\xc5", b"\xda", b"\xde")
            return prefix + rng.choice(huge) + b"\xff\xff\xff\xff"
        if kind == 11:
            return prefix + b"\x91\xa2\xff\xfe"  # invalid UTF-8
        if kind == 12:
            return prefix + b"\xc1"  # the reserved byte
        if kind == 13:
            return b""
        if kind == 14:
            return pack([1, 16, rid, [float("nan")]])
        return self._bytes(rng.randint(1, 200))

    def _signed_unknown_type(self) -> bytes:
        rng = self.rng
        type_code = rng.choice(
            (
                0,
                rng.randint(6, 15),
                rng.randint(22, 63),
                rng.randint(64, 0xFFFF),
                2**32,
                U64_MAX,
                -1,
                -(2**63),
                "16",
                16.0,
                None,
                True,
                b"\x10",
                [16],
            )
        )
        body = rng.choice(([], [self._id()], [1, 2, 3]))
        return self._signed(pack([1, type_code, self._request_id(), body]), guarded=False)

    def _signed_bad_fields(self) -> bytes:
        for _ in range(10):
            message = self._any_message()
            body = self._break_struct(type(message), message.to_wire())
            payload = pack([1, message.TYPE, self._request_id(), body])
            if not decodes(payload):
                return self._signed(payload, guarded=False, tag=self._tag(0.1))
        return self._signed(b"", guarded=False)

    def _break_struct(self, cls: type[Struct], value: list[Any]) -> list[Any]:
        """`value` (a valid wire form of `cls`) changed so that `cls.from_wire` refuses it."""
        checks = cls._field_checks()
        value = list(value)
        r = self.rng.random()
        if not checks or r < 0.1:
            return [*value, self.rng.choice(_ANY_VALUES)]  # an extra field
        if r < 0.2:
            del value[self.rng.randrange(len(value))]  # a missing field
            return value
        j = self.rng.randrange(len(checks))
        value[j] = self._break_value(checks[j][1], value[j])
        return value

    def _wrong(self, *right: type) -> Any:
        return self.rng.choice([v for v in _ANY_VALUES if type(v) not in right])

    def _break_value(self, check: Check, value: Any) -> Any:
        rng = self.rng
        if isinstance(check, Nested):
            if type(value) is list and rng.random() < 0.8:
                return self._break_struct(check.struct, value)
            return self._wrong(list)
        if isinstance(check, ListOf):
            if type(value) is list and value and rng.random() < 0.8:
                items = list(value)
                at = rng.randrange(len(items))
                items[at] = self._break_value(check.item, items[at])
                return items
            if rng.random() < 0.3:
                return [None] * (check.max_items + 1)
            return self._wrong(list)
        if isinstance(check, Int):
            out_of_range = [v for v in (check.lo - 1, check.hi + 1) if -(2**63) <= v <= U64_MAX]
            if out_of_range and rng.random() < 0.5:
                return rng.choice(out_of_range)
            return self._wrong(int)
        if isinstance(check, Bytes):
            lengths = [n for n in (check.min_len - 1, check.max_len + 1) if 0 <= n <= 900]
            if lengths and rng.random() < 0.6:
                return self._bytes(rng.choice(lengths))
            return self._wrong(bytes)
        if isinstance(check, Str):
            if check.max_len < 600 and rng.random() < 0.5:
                return "s" * (check.max_len + 1)
            return self._wrong(str)
        if isinstance(check, Bool):
            return self._wrong(bool)
        return self._wrong(type(value))

    def _signed_find_node(self) -> bytes:
        payload = self._envelope(FindNode(self._id()))
        return self._signed(payload, guarded=True, tag=self._tag(0.15))

    def _signed_find_value(self) -> bytes:
        rtype = self.rng.choice((PEER, PROVIDER, 0, 0xFFFF, self.rng.randint(0, 0xFFFF)))
        payload = self._envelope(FindValue(rtype, self._id()))
        return self._signed(payload, guarded=True, tag=self._tag(0.15))

    def _signed_store_invalid(self) -> bytes:
        payload = self._envelope(Store(self._invalid_record()))
        return self._signed(payload, guarded=True, tag=self._tag(0.1))

    def _signed_twin_request(self) -> bytes:
        i = self._pick()
        message = self.rng.choice((FindNode(self._id()), Ping(), FindValue(PEER, self._id())))
        payload = self._envelope(message, self.rng.getrandbits(64) or 1)
        first = self._signed_by(i, payload, guarded=True, tag=None)
        self._queued.append(
            ("signed_twin_request", self._signed_by(i, payload, guarded=True, tag=None))
        )
        return first

    def _signed_store_update(self) -> bytes:
        i = self._pick()
        payload = self._envelope(Store(self._valid_record(i)))
        return self._signed_by(i, payload, guarded=True, tag=self._tag(0.05))

    def _signed_unsolicited_reply(self) -> bytes:
        payload = self._envelope(self._valid_response())
        return self._signed(payload, guarded=True, tag=self._tag(0.15))

    def _signed_misaddressed(self) -> bytes:
        others = [packet.recipient_tag(n) for n in self.known_ids]
        tag = self.rng.choice([*others, self._bytes(8)])
        if tag in (self.victim_tag, packet.ANY_RECIPIENT):
            tag = bytes(7) + b"\x01"
        return self._signed(self._envelope(self._valid_request()), guarded=False, tag=tag)

    def _signed_unsolved_id(self) -> bytes:
        j = self.rng.randrange(len(self.unsolved))
        counter = max(self._unsolved_last[j] + 1, int(self.clock() * 1_000_000))
        self._unsolved_last[j] = counter
        payload = self._envelope(FindNode(self._id()))
        return seal(self.unsolved[j], self._tag(0.15), counter, payload)

    def _signed_other_requests(self) -> bytes:
        r = self.rng.random()
        if r < 0.5:
            message: Message = Ping()
        elif r < 0.75:
            message = StreamOpen(self.rng.choice(("echo/1", "", "x" * 64)))
        else:
            message = Echo(self._bytes(self.rng.randint(0, 900)))
        return self._signed(self._envelope(message), guarded=True, tag=self._tag(0.2))

    # -- answering the victim's requests --------------------------------------------------------

    def answer(self, data: bytes) -> list[tuple[str, bytes]]:
        """Hostile answers to `data`, if it is a request to a pool identity (else none).

        The answers carry the request's ID and are addressed to the requester, so a hostile
        answer that passes the checks is matched to the victim's pending request and reaches
        the code that made it.
        """
        try:
            packet.check_layout(data)
            inner = packet.decrypt(data, [NETWORK.primary])
            if inner is None:
                return []
            opened = packet.parse(inner)
            request = envelope.decode(opened.payload, DATAGRAM_LIMITS)
        except DecodeError:
            return []
        i = self._by_tag.get(opened.recipient)
        if i is None or request.message.RESPONSE or not request.request_id:
            return []
        requester = packet.recipient_tag(NodeId.from_public_key(opened.public_key))
        rid = request.request_id
        kind = self.rng.choice(ANSWER_KINDS)
        self.counts[kind] += 1
        if kind == "answer_wrong_type":
            wrong = [
                m
                for m in (self._valid_response() for _ in range(3))
                if not isinstance(m, type(request.message))
            ]
            message = wrong[0] if wrong else ErrorReply(ErrorReply.INVALID, "?")
            return [(kind, self._reply(i, message, rid, requester))]
        if kind == "answer_lying_nodes":
            liars = [
                WireContact(self.rng.choice(self.pool).node_id.raw, b"\x7f\x00\x00\x01", 1)
                for _ in range(self.rng.randint(0, 10))
            ]
            contacts = tuple(liars) + self._contacts(MAX_CONTACTS - len(liars))
            return [(kind, self._reply(i, Nodes(contacts), rid, requester))]
        if kind == "answer_invalid_records":
            records = tuple(self._invalid_record() for _ in range(self.rng.randint(1, 2)))
            return [(kind, self._reply(i, Value(records, self._contacts(8)), rid, requester))]
        if kind == "answer_error":
            error = ErrorReply(self.rng.randint(0, 0xFFFF), "e" * self.rng.randint(0, 200))
            return [(kind, self._reply(i, error, rid, requester))]
        if kind == "answer_malformed":
            message = self._valid_response()
            body = self._break_struct(type(message), message.to_wire())
            payload = pack([1, message.TYPE, rid, body])
            return [(kind, self._signed_by(i, payload, guarded=False, tag=requester))]
        if kind == "answer_duplicate":
            first = self._reply(i, self._valid_response(), rid, requester)
            second = self._reply(i, self._valid_response(), rid, requester)
            return [(kind, first), (kind, second), (kind, first)]
        other = (i + 1 + self.rng.randrange(len(self.pool) - 1)) % len(self.pool)
        return [(kind, self._reply(other, Pong("127.0.0.1", 1), rid, requester))]

    def _reply(self, i: int, message: Message, request_id: int, tag: bytes) -> bytes:
        return self._signed_by(i, self._envelope(message, request_id), guarded=False, tag=tag)
