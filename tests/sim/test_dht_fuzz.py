"""Hostile datagrams against a running DHT node on the in-memory network.

The generators are those of ``scripts/bench/bench_dht_fuzz.py`` (a million datagrams over real
UDP), from ``plexinode/testing/fuzz_datagrams.py``, at a size that fits CI. Everything runs
under the autojump MockClock from fixed seeds; the seed is printed (pytest shows it on failure).
"""

from __future__ import annotations

import collections
import contextlib
import random
from dataclasses import dataclass, field, replace

import pytest
import trio
import trio.lowlevel

from plexinode.dht.messages import Store
from plexinode.dht.record_types import PROVIDER
from plexinode.dht.records import InvalidRecord, Reason, sign_record
from plexinode.dht.serving import VERIFY_WORKERS
from plexinode.identity import NodeId
from plexinode.net import packet
from plexinode.net.address import Address
from plexinode.net.datagram import DatagramService, Inbound
from plexinode.net.keyring import Keyring
from plexinode.net.settings import DatagramSettings
from plexinode.net.transport import MAX_DATAGRAM, DatagramSocket
from plexinode.node import Node
from plexinode.testing.capture import Capture, capturing
from plexinode.testing.fuzz_datagrams import (
    CATEGORIES,
    OUTCOMES,
    Fuzzer,
    fuzz_identity,
    seal,
    solving_identity,
)
from plexinode.testing.network import MemoryNetwork, open_memory_network
from plexinode.testing.nodes import FAST, dht_network, seeded_identity
from plexinode.wire import envelope
from plexinode.wire.messages import Ping, Pong
from plexinode.wire.schema import Message

SEED = 20261128
NODES = 20
POOL = 300
#: Datagrams per category in the attribution phase, and in the mixed flood after it.
PER_CATEGORY = 150
MIXED = 20_000 - PER_CATEGORY * len(CATEGORIES)
#: Datagrams the fuzzer hands to the network at once (the victim's queue holds 256).
BATCH = 100


#: The network's ID puzzle: low, so that the identities solving it are quick to find, but on,
#: so that the check runs (its cost at the victim does not depend on the difficulty).
DIFFICULTY = 4
#: The per-host limits (datagram.host_datagram_rate, and the budget of failed signature checks,
#: datagram.host_failure_burst) would stop the fuzzer's one host early, its datagrams arriving
#: while simulated time stands still, and hide how every later datagram is classified: they
#: have their own tests (tests/sim/test_node_sim.py), so here they are out of the way.
SETTINGS = replace(
    FAST,
    dht=replace(FAST.dht, id_difficulty=DIFFICULTY),
    datagram=replace(FAST.datagram, host_datagram_rate=1_000_000, host_failure_burst=1_000_000),
)


def puzzle_network(
    net: MemoryNetwork, count: int, capture: Capture
) -> contextlib.AbstractAsyncContextManager[list[Node]]:
    """``plexinode.testing.nodes.dht_network`` with identities that solve the ID puzzle and every
    datagram the nodes send offered to `capture`."""
    return dht_network(
        net,
        count,
        SETTINGS,
        identity=lambda i: solving_identity(b"honest", SEED * 1000 + i, DIFFICULTY),
        wrap=lambda transport: capturing(transport, capture),
    )


def outcomes(node: Node) -> collections.Counter[str]:
    stats = node.datagrams.stats
    return collections.Counter({k: stats[k] for k in (*OUTCOMES, "received") if stats[k]})


async def settle() -> None:
    """Let handler tasks started by the datagrams just received run (simulated time stands)."""
    for _ in range(10):
        await trio.lowlevel.checkpoint()


@dataclass
class Attack:
    """The fuzzer's socket on the network, and what it sent."""

    fuzzer: Fuzzer
    sock: DatagramSocket
    victim: Node
    answering: bool = False
    oversize: int = 0
    sent: collections.Counter[str] = field(default_factory=collections.Counter)

    async def deliver(self, batch: list[tuple[str, bytes]]) -> int:
        """Send `batch`; return once the victim has received all of it, with how many that is.

        The in-memory network drops datagrams larger than ``MAX_DATAGRAM`` when they are sent
        (``dropped_oversize``), where a real socket would deliver them and the node would drop
        them as malformed; they are counted in :attr:`oversize`.
        """
        assert self.victim.address is not None
        fits = [(name, data) for name, data in batch if len(data) <= MAX_DATAGRAM]
        self.oversize += len(batch) - len(fits)
        target = self.victim.datagrams.stats["received"] + len(fits)
        for name, data in batch:
            self.sent[name] += 1
            await self.sock.sendto(data, self.victim.address)
        for _ in range(100 * len(batch) + 100):
            if self.victim.datagrams.stats["received"] >= target:
                return len(fits)
            await trio.lowlevel.checkpoint()
        raise AssertionError("the victim did not receive the batch")

    async def respond(self) -> None:
        """Read what the victim sends the fuzzer identities; answer it while `answering`."""
        while True:
            data, address = await self.sock.recvfrom()
            if not self.answering:
                continue
            for name, reply in self.fuzzer.answer(data):
                self.sent[name] += 1
                self.oversize += len(reply) > MAX_DATAGRAM
                await self.sock.sendto(reply, address)


def test_seal_matches_the_packet_layer() -> None:
    identity = fuzz_identity(7)
    victim = seeded_identity(1)
    payload = envelope.encode(Ping(), 42)
    sealer = packet.Sealer(identity, lambda: 3)  # epoch 3, first datagram: counter 3 << 32 | 1
    expected = sealer.seal(payload, victim.node_id)
    assert seal(identity, packet.recipient_tag(victim.node_id), 3 << 32 | 1, payload) == expected
    opened = packet.open_datagram(expected, Keyring.open("open"))
    assert opened.verify() == identity.node_id


def test_generators_are_seeded_and_cover_every_category() -> None:
    victim = seeded_identity(1)

    def draw(seed: int) -> list[tuple[str, bytes]]:
        fuzzer = Fuzzer(victim.public_key, seed=seed, identities=20, clock=lambda: 1e9)
        return [fuzzer.next() for _ in range(3000)]

    first = draw(SEED)
    assert first == draw(SEED)
    assert first != draw(SEED + 1)
    assert {name for name, _ in first} == {c.name for c in CATEGORIES}
    assert max(len(data) for _, data in first) <= 1500


async def test_a_node_survives_hostile_datagrams(autojump_clock) -> None:
    print(f"seed {SEED}")
    rng = random.Random(SEED)
    capture = Capture(SEED)
    async with (
        open_memory_network(seed=SEED, latency=0.005) as net,
        puzzle_network(net, NODES, capture) as nodes,
    ):
        await trio.sleep(120)  # every node's first refresh pass is over; the next is 900 s away
        capture.enabled = False
        victim = rng.choice(nodes[1:])
        honest = [n for n in nodes if n is not victim]
        assert victim.address is not None
        fuzz_host = net.new_host()
        for a, b in ((fuzz_host, victim.address.host), (victim.address.host, fuzz_host)):
            net.set_link(a, b, latency=0.0)
        endpoint = await net.transport(fuzz_host).bind(Address("0.0.0.0", 0))
        fuzzer = Fuzzer(
            victim.identity.public_key,
            seed=SEED,
            identities=POOL,
            clock=trio.current_time,  # the simulated nodes' wall clock
            known_keys=[n.identity.public_key for n in nodes],
            captured=capture.samples,
            id_difficulty=DIFFICULTY,
        )
        attack = Attack(fuzzer, endpoint.datagrams, victim)
        pool_ids = {ident.node_id for ident in fuzzer.pool}

        async with trio.open_nursery() as nursery:
            nursery.start_soon(attack.respond)

            # 1. Each category alone, simulated time standing still (so no honest traffic):
            # every datagram ends in exactly one of the counters its category allows.
            replays_last = sorted(CATEGORIES, key=lambda c: c.name.startswith("replay"))
            for category in replays_last:
                before = outcomes(victim)
                received = 0
                refused_before = sum(victim.dht.records.stats[r] for r in Reason)
                invalid_before = victim.dht.invalid_from.total()
                for start in range(0, PER_CATEGORY, BATCH):
                    n = min(BATCH, PER_CATEGORY - start)
                    batch = [(category.name, fuzzer.make(category.name)) for _ in range(n)]
                    received += await attack.deliver(batch)
                await settle()
                delta = outcomes(victim) - before
                assert delta["received"] == received > 0, category.name
                del delta["received"]
                assert delta.total() == received, (category.name, delta)
                if category.outcomes is not None:
                    assert set(delta) <= category.outcomes, (category.name, delta)
                if category.name == "signed_unsolved_id":
                    assert set(delta) == {"drop_id_puzzle"}, delta
                refused = sum(victim.dht.records.stats[r] for r in Reason) - refused_before
                invalid = victim.dht.invalid_from.total() - invalid_before
                if category.name == "signed_store_invalid":
                    # Every invalid record that reached the handler was refused and counted
                    # against its sender.
                    assert refused == invalid == delta["requests"] > 0
                elif category.name != "replay_captured":
                    assert refused == invalid == 0, category.name

            # 2. The mix, while time runs, the fuzzer answers the victim's requests with lies,
            # and honest nodes keep looking each other (and the victim) up.
            attack.answering = True
            flood_done = trio.Event()
            during = collections.Counter[str]()

            async def lookups(worker: int) -> None:
                # One lookup per 0.2 s per kind, well under the rate limits of the nodes asked.
                worker_rng = random.Random(SEED + worker)
                kind = ("honest", "of_victim", "by_victim")[worker]
                while not flood_done.is_set():
                    await trio.sleep(0.2)
                    a, b = worker_rng.sample(honest, 2)
                    if kind == "of_victim":
                        b = victim
                    elif kind == "by_victim":
                        a = victim
                    result = await a.dht.find_node(b.node_id)
                    during[kind] += 1
                    during[kind + "_found"] += result.found_target

            async with trio.open_nursery() as lookers:
                for worker in range(3):
                    lookers.start_soon(lookups, worker)
                for start in range(0, MIXED, 4):
                    await attack.deliver([fuzzer.next() for _ in range(min(4, MIXED - start))])
                    await trio.sleep(0.001)
                flood_done.set()
            print(f"lookups during the flood: {dict(during)}")
            for kind in ("honest", "of_victim", "by_victim"):
                assert during[kind] >= 5, during
                assert during[kind + "_found"] == during[kind], during

            await trio.sleep(30)  # verification pings of the fuzzer identities time out
            nursery.cancel_scope.cancel()

        # 3. The victim still serves, and its state stayed bounded.
        print(f"victim counters: {dict(victim.datagrams.stats)}")
        print(f"sent by the fuzzer: {dict(attack.sent)}")
        stats = victim.datagrams.stats
        assert (
            sum(attack.sent[c.name] for c in CATEGORIES) == PER_CATEGORY * len(CATEGORIES) + MIXED
        )
        assert stats["received"] >= attack.sent.total() - attack.oversize
        assert net.stats.dropped_oversize == attack.oversize
        assert stats["received"] == sum(stats[k] for k in OUTCOMES)  # every one accounted for
        assert stats["handler_error"] == 0
        assert net.stats.dropped_full == 0
        for node in honest[:5]:
            pong = await node.ping(victim.address, node_id=victim.node_id)
            assert pong["node_id"] == str(victim.node_id)
            assert (await node.dht.find_node(victim.node_id)).found_target
            assert (await victim.dht.find_node(node.node_id)).found_target
        summary = victim.datagrams.summary()
        assert summary["replay_senders"] <= NODES - 1 + POOL
        assert summary["pending_requests"] <= VERIFY_WORKERS
        assert set(victim.dht.invalid_from) <= pool_ids
        # Valid records only: one slot per fuzzer identity, and the honest nodes' peer records.
        publishers = {r.publisher_id for r in victim.dht.records.all_records()}
        assert publishers <= pool_ids | {n.node_id for n in nodes}
        assert len(victim.dht.records) <= POOL + NODES
        assert len(victim.dht.routing) <= NODES - 1 + POOL


async def test_invalid_from_stays_bounded_under_fresh_identities(autojump_clock) -> None:
    """``DhtService.invalid_from`` keeps one entry per sender of an invalid record; a stream of
    fresh identities (one key pair and one signature each) must not grow it without bound.

    Found by this fuzzing (the counter was never pruned); now capped by the service. The bound
    asserted is the replay guard's, the datagram layer's cap on per-sender state. The handler
    is called directly: driving 66,536 signed datagrams through the network would take a
    minute of signing and verifying for the same result.
    """
    async with open_memory_network(seed=SEED) as net, dht_network(net, 2) as nodes:
        victim = nodes[1]
        cap = packet.ReplayGuard(1).max_senders
        expired = Store(
            sign_record(fuzz_identity(0), PROVIDER, bytes(32), seq=1, expires_at=0, value=b"")
        )
        address = Address("10.1.2.3", 7420)
        on_store = victim.datagrams.handler(Store)
        assert on_store is not None
        for i in range(cap + 1000):
            sender = NodeId(i.to_bytes(32, "big"))
            with pytest.raises(InvalidRecord):
                await on_store(Inbound(expired, 1, sender, bytes(32), address))
        assert len(victim.dht.invalid_from) <= cap


async def test_a_retransmitted_request_while_its_handler_runs_does_not_crash(
    autojump_clock,
) -> None:
    """A retransmission must not kill the node that is still handling the original.

    Found by this fuzzing (plexinode/net/datagram.py, ``DatagramService._dispatch``): the
    handler slot was taken with ``self._limiter.acquire_on_behalf_of_nowait(inbound)`` and
    ``Inbound`` was a frozen dataclass, equal by value. A retransmission (same request ID,
    message, node and address; only the counter differs) arriving while the first handler
    still ran was an *equal* borrower: trio raised RuntimeError("this borrower is already
    holding one of this CapacityLimiter's tokens") out of ``_receive`` and the node died.
    bench_dht_fuzz.py saw honest nodes slowed by the load die this way. Fixed since: inbounds
    compare by identity, and a copy of a request being handled is dropped as a duplicate.
    """
    async with open_memory_network(seed=SEED, latency=0.01) as net:
        server_end = await net.transport(net.new_host()).bind(Address("0.0.0.0", 0))
        client_end = await net.transport(net.new_host()).bind(Address("0.0.0.0", 0))
        server_id, client_id = seeded_identity(1), seeded_identity(2)
        server = DatagramService(server_id, server_end.datagrams, DatagramSettings())
        client = DatagramService(client_id, client_end.datagrams, DatagramSettings())

        async def slow_pong(inbound: Inbound) -> Message:
            await trio.sleep(1.5)  # longer than the client's attempt timeout below
            return Pong(inbound.address.host, inbound.address.port)

        server.on(Ping, slow_pong)
        async with trio.open_nursery() as nursery:
            await nursery.start(server.run)
            await nursery.start(client.run)
            reply = await client.request(
                server_end.address, Ping(), node_id=server_id.node_id, attempt_timeout=1.0
            )
            assert isinstance(reply.message, Pong)
            assert server.stats["requests"] >= 1
            nursery.cancel_scope.cancel()


async def test_two_copies_of_one_signed_request_do_not_kill_a_node(autojump_clock) -> None:
    """The same bug on purpose: any identity killed an idle node with two datagrams, one signed
    request sent twice with fresh counters (the second arrived while the first one's handler
    held its slot, across the ``sendto`` of its reply)."""
    async with open_memory_network(seed=SEED, latency=0.005) as net, dht_network(net, 3) as nodes:
        victim = nodes[1]
        assert victim.address is not None
        attacker = await net.transport(net.new_host()).bind(Address("0.0.0.0", 0))
        identity = fuzz_identity(1)
        payload = envelope.encode(Ping(), 12345)
        tag = packet.recipient_tag(victim.node_id)
        stats = victim.datagrams.stats
        before = stats["requests"] + stats["drop_duplicate"]
        for counter in (10**15, 10**15 + 1):
            await attacker.datagrams.sendto(seal(identity, tag, counter, payload), victim.address)
        await trio.sleep(1)
        # Both reached dispatch: served, or the second dropped as a copy of one being served.
        assert stats["requests"] + stats["drop_duplicate"] >= before + 2
        pong = await nodes[0].ping(victim.address, node_id=victim.node_id)
        assert pong["node_id"] == str(victim.node_id)
