"""plexinode's DHT side by side with the `kademlia` package on loopback UDP, same churn, same pairs.

    python scripts/bench/bench_kademlia.py [--nodes 100] [--lookups 500] [--kill-fraction 0.2]
                                           [--seed 1] [--kademlia-python PATH] [--no-records]
                                           [--find-node]

Both implementations get the same plan, drawn from --seed: --nodes nodes on 127.0.0.1 (real UDP
sockets, OS-chosen ports, real time), node 0 first and every other node bootstrapping from it;
the same node indices (a --kill-fraction of them, never node 0) stopped without notice after the
network formed; then the same --lookups (querier, target) pairs, both alive, one lookup after
another, each timed with ``time.perf_counter``.

kademlia (bmuller/kademlia, asyncio): runs in a subprocess with the Python of its own virtualenv
(scripts/bench/kademlia_side.py; plexinode's .venv never holds the package). By default that
virtualenv is built in .bench-venv-kademlia/ from scripts/bench/requirements-kademlia.txt
(pinned with hashes), and rebuilt when that file changes; --kademlia-python uses another. Its
FIND_NODE never returns the requested ID itself, so it cannot resolve a node ID to an address;
each node stores its address under its own node ID instead, and a lookup is a FIND_VALUE of the
target's ID that must return the target's address (see kademlia_side.py).

plexinode: real ``Node``s with ``SocketTransport`` and default settings, in this process, except
the ID puzzle: ``dht.id_difficulty`` is 0, as in the simulations (plexinode/testing/nodes.py), so
that the seeded identities need no solving. They run the DHT without membership
(``Node(membership=False)``: datagrams, streams and the DHT), as kademlia runs nothing else
either: with membership, the one core that all the nodes of this process share went to its
probes, gossip and state sync instead of the lookups measured here, and at N = 100 the
plexinode side no longer finished. Every node joins (``dht.joined``); the network is then
left until it is quiet (tables no longer grow and fewer than 0.25 requests per node per second:
the join-time bucket refresh, peer-record publication and handoffs are over; the wait is
printed), the same nodes are stopped and the lookups run:
  locate      ``node.dht.locate(target_id)``, a success when ``found_target`` (the target itself
              answered, signed with its key): a node ID resolved to its address the way
              plexinode does it (``DhtService.resolve``): the target asked directly if it is a
              live contact of the querier's table, else one lookup path, else all disjoint
              paths. The primary measure;
  get(PEER)   (unless --no-records) ``node.dht.get(PEER, target_id)`` must return a valid peer
              record naming the target's address: a FIND_VALUE lookup like kademlia's, with
              every record validated. Nodes publish their own peer record after joining; any
              that has not by then gets it put for it by this script;
  find_node   (only with --find-node) ``node.dht.find_node(target_id)``, a plain lookup over
              all disjoint paths from the closest contacts, success as for locate; the cost
              that locate avoids when its direct or single-path stage succeeds.
Each row forms its own network from the same seed: lookups teach routing tables, so a second run
on one network would be flattered. The kademlia side runs first, alone; then the plexinode rows.
Each plexinode row also prints, for information, the network-wide sum of ``drop_duplicate``
(``node.datagrams.stats``) during its lookups: retransmitted requests that arrived while their
first copy was still being handled, and were dropped (the first copy's reply answers both).

Targets (issue: "side by side with the Python kademlia package"): success >= theirs, median
<= 2x theirs, p99 < 1 s. Each is printed beside its figure with "ok" or "MISSED".
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import os
import random
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from common import header, percentile

from plexinode.config import Settings
from plexinode.dht.record_types import PEER, make_peer_record, peer_addresses
from plexinode.identity import Identity
from plexinode.net.address import Address
from plexinode.net.transport import SocketTransport
from plexinode.node import Node

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
REQUIREMENTS = HERE / "requirements-kademlia.txt"
KADEMLIA_SIDE = HERE / "kademlia_side.py"
DEFAULT_VENV = REPO / ".bench-venv-kademlia"
HOST = "127.0.0.1"
#: The longest the network is left to settle after every node joined (see settle()).
SETTLE_MAX = 180.0
#: Requests per node per second below which the network counts as quiet.
QUIET_RATE = 0.25
#: Row labels of the plexinode lookup kinds.
LABELS = {
    "locate": "plexinode locate",
    "get": "plexinode get(PEER)",
    "find_node": "plexinode find_node",
}


# -- the plan --------------------------------------------------------------------------------------


def make_plan(nodes: int, lookups: int, kill_fraction: float, seed: int) -> dict[str, Any]:
    """Which node indices are stopped and which (querier, target) pairs look up; from `seed`."""
    rng = random.Random(seed)
    killed = sorted(rng.sample(range(1, nodes), round(kill_fraction * nodes)))
    gone = set(killed)
    alive = [i for i in range(nodes) if i not in gone]
    pairs = [rng.sample(alive, 2) for _ in range(lookups)]
    return {"nodes": nodes, "seed": seed, "killed": killed, "pairs": pairs, "settle": 1.0}


@dataclass
class Row:
    """The lookups of one implementation (or one plexinode lookup kind)."""

    label: str
    found: int = 0
    lookups: int = 0
    latencies: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.found / self.lookups if self.lookups else 0.0

    @property
    def median(self) -> float:
        return statistics.median(self.latencies)

    @property
    def p99(self) -> float:
        return percentile(self.latencies, 99)


# -- kademlia, in its own virtualenv and process ---------------------------------------------------


def median_ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.2f}" if values else "n/a"


def kademlia_python(venv: Path) -> Path:
    """The Python of a virtualenv holding the pinned `kademlia`; (re)built when the pins change."""
    python = venv / "bin" / "python"
    stamp = venv / ".requirements-sha256"
    want = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text().strip() == want:
        return python
    print(f"# building {venv} from {REQUIREMENTS.relative_to(REPO)}", file=sys.stderr)
    subprocess.run(["python3", "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run(
        [
            str(python),
            *("-m", "pip", "install", "--quiet", "--disable-pip-version-check"),
            *("--require-hashes", "-r", str(REQUIREMENTS)),
        ],
        check=True,
    )
    stamp.write_text(want + "\n")
    return python


def run_kademlia(python: Path, plan: dict[str, Any]) -> tuple[Row, dict[str, Any]]:
    done = subprocess.run(
        [str(python), str(KADEMLIA_SIDE)],
        input=json.dumps(plan),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        sys.exit(f"kademlia side failed ({done.returncode}):\n{done.stderr}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    row = Row("kademlia FIND_VALUE (own-ID record)", out["found"], out["lookups"])
    row.latencies = out["latencies"]
    slow = sum(x >= 5.0 for x in row.latencies)
    remote = [x for x, local in zip(row.latencies, out["local"], strict=True) if not local]
    local_count = len(row.latencies) - len(remote)
    row.notes += [
        f"answered from the querier's own store without any RPC: {local_count}; median of the "
        f"{len(remote)} others {median_ms(remote)}"
        f" ms; waited on at least one 5 s RPC timeout: {slow}",
        f"records stored: {out['stored']}/{plan['nodes']}; network formed in "
        f"{out['setup_wall']:.1f} s, lookups took {out['lookup_wall']:.1f} s",
    ]
    return row, out


# -- plexinode, in this process --------------------------------------------------------------------


def node_settings(bootstrap: Address | None) -> Settings:
    """Default settings on loopback, with the ID puzzle off (as in the simulations)."""
    settings = Settings(listen=Address(HOST, 0), bootstrap=(bootstrap,) if bootstrap else ())
    return dataclasses.replace(settings, dht=dataclasses.replace(settings.dht, id_difficulty=0))


def identity(seed: int, index: int) -> Identity:
    """The seeded identity of node `index` (the same network for every row of one seed)."""
    return Identity.from_seed(hashlib.sha256(f"bench-kademlia:{seed}:{index}".encode()).digest())


def stat_sum(nodes: list[Node], name: str) -> int:
    """``datagrams.stats[name]`` summed over the nodes still running."""
    total = 0
    for node in nodes:
        with contextlib.suppress(RuntimeError):  # stopped
            total += node.datagrams.stats[name]
    return total


async def settle(nodes: list[Node]) -> tuple[float, int]:
    """Wait until the network is quiet: no routing table grew and fewer than QUIET_RATE
    requests per node were handled network-wide in the last second (the join-time refresh,
    record publication and any handoffs are over). Returns the wait and the requests seen."""
    began = time.perf_counter()
    start = last_requests = stat_sum(nodes, "requests")
    last_size = -1
    while time.perf_counter() - began < SETTLE_MAX:
        await trio.sleep(1.0)
        size = sum(len(n.dht.routing) for n in nodes)
        requests = stat_sum(nodes, "requests")
        if size == last_size and requests - last_requests < QUIET_RATE * len(nodes):
            break
        last_size, last_requests = size, requests
    return time.perf_counter() - began, stat_sum(nodes, "requests") - start


async def publish_missing(nodes: list[Node]) -> int:
    """Put the peer record of every node that has not published its own yet; how many."""
    unpublished = [n for n in nodes if not n.dht.record_stats["published"]]
    for node in unpublished:
        assert node.address is not None
        record = make_peer_record(
            node.identity, [node.address], seq=int(time.time() * 1000), now=time.time()
        )
        await node.dht.put(record)
    return len(unpublished)


async def run_plexinode(plan: dict[str, Any], kind: str) -> Row:
    """Form a network of real nodes on loopback UDP and run the plan's lookups with `kind`."""
    count = plan["nodes"]
    row = Row(LABELS[kind])
    nodes: list[Node] = []
    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        first: Address | None = None
        for i in range(count):
            node = Node(
                identity(plan["seed"], i),
                node_settings(first),
                SocketTransport(),
                membership=False,  # DHT-only nodes: see the module docstring
            )
            address = await nursery.start(node.run)
            first = first or address
            nodes.append(node)
        for node in nodes:
            await node.dht.joined.wait()
        joined = time.perf_counter() - started
        waited, background = await settle(nodes)
        if kind == "get":
            put = await publish_missing(nodes)
            if put:
                more, extra = await settle(nodes)
                waited += more
                background += extra
            row.notes.append(
                f"peer records: {count - put} published by their nodes, {put} put by this script"
            )
        for index in plan["killed"]:
            nodes[index].stop()
        await trio.sleep(0.1)  # let the stopped nodes close their sockets
        # The counters during the lookups are those of the nodes left running: a stopped node
        # may take longer than the pause above to shut down (a loaded machine), and counting it
        # before the lookups but not after made the differences negative.
        killed = set(plan["killed"])
        running = [node for index, node in enumerate(nodes) if index not in killed]
        queries, failures, slow = [], [], []
        # Latencies of the lookups whose target was (or was not) in the querier's table.
        known: list[float] = []
        unknown: list[float] = []
        direct = 0  # locate: answered by the target asked directly (one query, found)
        held = 0  # get(PEER) lookups whose querier already held the target's record
        timeouts_before = stat_sum(running, "request_timeout")
        duplicates_before = stat_sum(running, "drop_duplicate")
        t0 = time.perf_counter()
        for querier, target in plan["pairs"]:
            a, b = nodes[querier], nodes[target]
            in_table = b.node_id in a.dht.routing
            if kind == "get":
                held += bool(a.dht.records.get(PEER, b.node_id.raw, time.time()))
            began = time.perf_counter()
            if kind == "get":
                records = await a.dht.get(PEER, b.node_id.raw)
                elapsed = time.perf_counter() - began
                row.found += any(
                    r.publisher_id == b.node_id and b.address in peer_addresses(r) for r in records
                )
            else:
                if kind == "locate":
                    result = await a.dht.locate(b.node_id)
                else:
                    result = await a.dht.find_node(b.node_id)
                elapsed = time.perf_counter() - began
                row.found += result.found_target
                direct += result.found_target and result.stats.queries == 1
                queries.append(result.stats.queries)
                failures.append(result.stats.failures)
                slow.append(result.stats.slow)
            row.latencies.append(elapsed)
            (known if in_table else unknown).append(elapsed)
            row.lookups += 1
        lookup_wall = time.perf_counter() - t0
        timeouts = stat_sum(running, "request_timeout") - timeouts_before
        duplicates = stat_sum(running, "drop_duplicate") - duplicates_before
        for node in nodes:
            node.stop()
    if queries:
        row.notes.append(
            f"queries/lookup median/p99 {statistics.median(queries):.0f} / "
            f"{percentile(queries, 99):.0f}; failed queries median/p99 "
            f"{statistics.median(failures):.0f} / {percentile(failures, 99):.0f}; slow "
            f"median/p99 {statistics.median(slow):.0f} / {percentile(slow, 99):.0f}"
        )
    if kind == "locate":
        row.notes.append(f"answered by the target asked directly (1 query): {direct}")
    if kind == "get":
        row.notes.append(f"querier already held the target's record (get still looks up): {held}")
    row.notes += [
        f"target already in the querier's routing table: {len(known)}/{row.lookups}, "
        f"median {median_ms(known)} ms; the others {median_ms(unknown)} ms",
        f"request timeouts network-wide during the lookups: {timeouts}",
        f"retransmitted requests dropped while their first copy was being handled "
        f"(drop_duplicate, network-wide, during the lookups): {duplicates}",
        f"joined in {joined:.1f} s, then {waited:.1f} s and {background} requests handled "
        f"until quiet; lookups took {lookup_wall:.1f} s",
    ]
    return row


# -- report ----------------------------------------------------------------------------------------


def check(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def show(row: Row) -> None:
    print(
        f"{row.label}: success {row.found}/{row.lookups} = {row.rate:.1%}; latency median "
        f"{row.median * 1000:.2f} ms, p99 {row.p99 * 1000:.1f} ms, max "
        f"{max(row.latencies) * 1000:.1f} ms"
    )
    for note in row.notes:
        print(f"    {note}")


def compare(ours: Row, theirs: Row) -> None:
    median_ratio = ours.median / theirs.median
    p99_ratio = ours.p99 / theirs.p99
    print(f"{ours.label} vs kademlia:")
    print(
        f"    success {ours.rate:.1%} vs {theirs.rate:.1%}  target >= theirs: "
        f"{check(ours.rate >= theirs.rate)}"
    )
    print(
        f"    median {ours.median * 1000:.2f} vs {theirs.median * 1000:.2f} ms, ratio "
        f"{median_ratio:.2f}x  target <= 2x: {check(median_ratio <= 2.0)}"
    )
    print(
        f"    p99 {ours.p99 * 1000:.1f} vs {theirs.p99 * 1000:.1f} ms, ratio {p99_ratio:.3f}x  "
        f"target < 1000 ms: {check(ours.p99 < 1.0)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--lookups", type=int, default=500)
    parser.add_argument("--kill-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--kademlia-python",
        type=Path,
        help=f"a Python that can import kademlia (default: build/reuse {DEFAULT_VENV.name}/)",
    )
    parser.add_argument(
        "--no-records", action="store_true", help="skip the plexinode get(PEER) row"
    )
    parser.add_argument(
        "--find-node",
        action="store_true",
        help="add a plexinode find_node row (a plain lookup over all disjoint paths)",
    )
    args = parser.parse_args()
    if args.nodes < 3 or not 0 <= args.kill_fraction < 1:
        parser.error("need at least 3 nodes and a kill fraction in [0, 1)")
    python = args.kademlia_python or kademlia_python(DEFAULT_VENV)
    header("DHT lookups side by side with the kademlia package, loopback UDP")
    print(f"# {' '.join(sys.argv)}")
    plan = make_plan(args.nodes, args.lookups, args.kill_fraction, args.seed)
    print(
        f"# seed={args.seed} N={args.nodes} killed={len(plan['killed'])} "
        f"({args.kill_fraction:.0%}, never node 0) lookups={args.lookups}; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    sys.stdout.flush()
    begun = time.perf_counter()
    theirs, info = run_kademlia(python, plan)
    print(f"# kademlia {info['version']} on python {info['python']} ({python})")
    show(theirs)
    sys.stdout.flush()
    kinds = ["locate"] + ["get"] * (not args.no_records) + ["find_node"] * args.find_node
    for kind in kinds:
        ours = trio.run(run_plexinode, plan, kind)
        show(ours)
        compare(ours, theirs)
        sys.stdout.flush()
    print(f"# total wall time {time.perf_counter() - begun:.1f} s")


if __name__ == "__main__":
    main()
