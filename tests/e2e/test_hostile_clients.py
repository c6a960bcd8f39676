"""A real node under hostile input keeps serving honest peers and its admin socket."""

from __future__ import annotations

import os
import random
import socket
import time

import pytest

from plexinode.identity import Identity
from plexinode.net import packet
from plexinode.testing.processes import ID_DIFFICULTY, cli_json
from plexinode.wire import envelope
from plexinode.wire.messages import Ping

pytestmark = pytest.mark.e2e


def host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def test_a_thousand_silent_connections(start_node) -> None:
    target = start_node("target", "--set", "stream.handshake_timeout=3s")
    honest = start_node("honest")
    sockets = []
    try:
        for _ in range(1000):  # from another host than the honest node's (127.0.0.1)
            sock = socket.create_connection(
                host_port(target.address), timeout=10, source_address=("127.0.0.2", 0)
            )
            sockets.append(sock)
        status = cli_json(target.data_dir, "status")
        assert status["node_id"] == target.node_id
        assert cli_json(honest.data_dir, "ping", target.address)["node_id"] == target.node_id
        over_stream = cli_json(honest.data_dir, "ping", "--stream", target.address)
        assert over_stream["node_id"] == target.node_id
    finally:
        for sock in sockets:
            sock.close()
    streams = cli_json(target.data_dir, "status")["streams"]
    # Beyond its connection burst the flooding host is refused outright; within it, each new
    # connection evicts its own oldest pending handshake (32 are kept).
    assert streams.get("refused_rate", 0) + streams.get("handshake_evicted", 0) >= 1000 - 32


def test_garbage_datagrams(start_node) -> None:
    target = start_node("target")
    honest = start_node("honest")
    rng = random.Random(1234)
    mallory = Identity.generate(difficulty=int(ID_DIFFICULTY))  # solves the network's puzzle
    sealer = packet.Sealer(mallory, lambda: 1)
    valid = sealer.seal(envelope.encode(Ping(), 1), None)
    unsolved = Identity.generate()
    while unsolved.node_id.meets(int(ID_DIFFICULTY)):
        unsolved = Identity.generate()
    cheap = packet.Sealer(unsolved, lambda: 1).seal(envelope.encode(Ping(), 1), None)
    datagrams: list[bytes] = [valid, valid, cheap]  # a replay; an ID that fails the puzzle
    for _ in range(2000):
        kind = rng.randrange(4)
        if kind == 0:
            datagrams.append(os.urandom(rng.randrange(0, 1300)))
        elif kind == 1:
            datagrams.append(valid[: rng.randrange(len(valid))])
        elif kind == 2:
            mutated = bytearray(sealer.seal(envelope.encode(Ping(), 2), None))
            mutated[rng.randrange(len(mutated))] ^= 1 << rng.randrange(8)
            datagrams.append(bytes(mutated))
        else:
            datagrams.append(b"\x01" * 1500)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for i, data in enumerate(datagrams):
            sock.sendto(data, host_port(target.address))
            if i % 50 == 49:  # pace, so the kernel's receive buffer does not overflow
                time.sleep(0.02)
    assert cli_json(honest.data_dir, "ping", target.address)["node_id"] == target.node_id
    counters = cli_json(target.data_dir, "status")["datagrams"]
    assert counters["drop_replay"] == 1
    assert counters["drop_id_puzzle"] >= 1  # (bit flips in a public key count here too)
    dropped = sum(v for k, v in counters.items() if k.startswith("drop_"))
    handled = counters.get("requests", 0) + counters.get("replies", 0)
    assert dropped + handled == counters["received"]  # every datagram is accounted for
    assert counters["received"] > 1000
