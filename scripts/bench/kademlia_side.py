"""The `kademlia` package's half of bench_kademlia.py (run by it, in its own virtualenv).

    .bench-venv-kademlia/bin/python scripts/bench/kademlia_side.py < plan.json

Imports only the `kademlia` package (bmuller/kademlia, asyncio) and the standard library, so it
runs in a virtualenv of its own; plexinode's virtualenv never holds `kademlia`. The plan comes
on stdin as JSON, made by bench_kademlia.py from its seed so that both implementations kill the
same node indices and look up the same (querier, target) pairs::

    {"nodes": 100, "seed": 1, "killed": [3, ...], "pairs": [[5, 17], ...], "settle": 1.0}

What it does, all in one asyncio loop on 127.0.0.1 (real UDP, OS-chosen ports):

1. starts `nodes` ``kademlia.network.Server``s with IDs derived from the seed; node 0 listens
   first and every other node bootstraps from it, one after the other;
2. each node stores its peer record, the text ``"127.0.0.1:PORT"``, under **its own node ID**:
   ``Server.set_digest(server.node.id, value)``. ``Server.set(key)`` would store under
   ``sha1(key)``, a key with no relation to the node's ID; ``set_digest`` takes the 20-byte key
   as is, so the record lives on the k nodes closest to the node's ID (and on the node itself);
3. waits `settle` seconds, then stops the `killed` nodes (``Server.stop()``: the socket closes,
   nobody is told);
4. runs the lookups one after another: querier ``q`` asks for target ``t``'s ID with a FIND_VALUE
   lookup. ``Server.get(key)`` hashes its key, so this calls the same code as ``Server.get``
   with the digest step left out (:func:`get_by_id`): the local store first, then
   ``ValueSpiderCrawl``. A lookup succeeds when it returns exactly the target's address.
   ``FIND_NODE`` is not usable for this: a ``kademlia`` node never returns the requested ID
   itself (``find_neighbors`` skips it), so it cannot resolve a node ID to an address.

Prints one JSON line: latencies (seconds, ``time.perf_counter`` around each lookup), successes,
and which lookups were answered from the querier's own store without any RPC (the querier is
among the k nodes closest to the target, about k / N of the lookups).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import sys
import time
from importlib.metadata import version

from kademlia.crawling import ValueSpiderCrawl
from kademlia.network import Server
from kademlia.node import Node

HOST = "127.0.0.1"


async def get_by_id(server: Server, dkey: bytes) -> tuple[object, bool]:
    """``Server.get`` for a key that is already a 20-byte ID; also says if it was local."""
    local = server.storage.get(dkey)
    if local is not None:
        return local, True
    node = Node(dkey)
    nearest = server.protocol.router.find_neighbors(node)
    if not nearest:
        return None, False
    spider = ValueSpiderCrawl(server.protocol, node, nearest, server.ksize, server.alpha)
    return await spider.find(), False


async def run(plan: dict) -> dict:
    count = plan["nodes"]
    seed = plan["seed"]
    random.seed(seed)  # kademlia draws refresh IDs from the global RNG
    servers: list[Server] = []
    ports: list[int] = []
    started = time.perf_counter()
    for i in range(count):
        node_id = hashlib.sha1(f"bench-kademlia:{seed}:{i}".encode()).digest()
        server = Server(node_id=node_id)
        await server.listen(0, interface=HOST)
        ports.append(server.transport.get_extra_info("sockname")[1])
        servers.append(server)
        if i > 0:
            await server.bootstrap([(HOST, ports[0])])
    joined = time.perf_counter()
    stored = 0
    for server, port in zip(servers, ports, strict=True):
        stored += bool(await server.set_digest(server.node.id, f"{HOST}:{port}"))
    setup_wall = time.perf_counter() - started
    await asyncio.sleep(plan["settle"])
    for index in plan["killed"]:
        servers[index].stop()
    latencies: list[float] = []
    local_flags: list[bool] = []
    found = 0
    t0 = time.perf_counter()
    for querier, target in plan["pairs"]:
        began = time.perf_counter()
        value, local = await get_by_id(servers[querier], servers[target].node.id)
        latencies.append(time.perf_counter() - began)
        found += value == f"{HOST}:{ports[target]}"
        local_flags.append(local)
    lookup_wall = time.perf_counter() - t0
    killed = set(plan["killed"])
    for index, server in enumerate(servers):
        if index not in killed:
            server.stop()
    await asyncio.sleep(0)
    return {
        "implementation": "kademlia",
        "found": found,
        "lookups": len(plan["pairs"]),
        "latencies": latencies,
        "local": local_flags,
        "stored": stored,
        "join_wall": joined - started,
        "setup_wall": setup_wall,
        "lookup_wall": lookup_wall,
    }


def main() -> None:
    # kademlia and rpcudp log every timeout and missed reply; only the JSON goes to stdout.
    logging.disable(logging.CRITICAL)
    plan = json.load(sys.stdin)
    result = asyncio.run(run(plan))
    result["version"] = version("kademlia")
    result["python"] = sys.version.split()[0]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
