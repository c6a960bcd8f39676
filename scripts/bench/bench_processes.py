#!/usr/bin/env python3
"""CPU, memory and traffic of real `plexinode start` processes in a small network on loopback.

    python scripts/bench/bench_processes.py [--nodes 5] [--window 60]

Starts --nodes nodes on 127.0.0.1 with separate data dirs (the first alone, the others
bootstrapping from it, LAN profile), waits until each lists all of them alive, lets them settle,
then reads each process's CPU time (/proc/PID/stat) and its datagram counters at the start and
the end of a --window seconds window. The baseline, measured in the same window, is one more
node started alone (no bootstrap, no peers): what a node costs with nothing to talk to.
Prints, per node, CPU as a share of one core, datagrams and bytes sent per second, and RSS.
No CLI command reaches the nodes during the window.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from common import header

from plexinode.testing.processes import NodeProcess, cli_json

TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14, 15)


def rss_mib(pid: int) -> float:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE / 2**20


def sent(node: NodeProcess) -> tuple[int, int]:
    counters = cli_json(node.data_dir, "status")["datagrams"]
    return int(counters.get("sent", 0)), int(counters.get("sent_bytes", 0))


def alive_everywhere(nodes: list[NodeProcess]) -> bool:
    ids = {n.node_id for n in nodes}
    for node in nodes:
        listed = {m["node_id"] for m in cli_json(node.data_dir, "members") if m["state"] == "alive"}
        if not ids <= listed:
            return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--window", type=float, default=60.0, help="seconds measured")
    parser.add_argument("--settle", type=float, default=20.0, help="seconds before the window")
    args = parser.parse_args()
    header("real processes on loopback")
    print(f"# {' '.join(sys.argv)}")
    started: list[NodeProcess] = []
    with tempfile.TemporaryDirectory(prefix="plexinode-bench-") as tmp:
        root = Path(tmp)
        try:
            alone = NodeProcess(root / "alone")
            started.append(alone)
            first = NodeProcess(root / "n0")
            started.append(first)
            first.wait_ready()
            cluster = [first]
            for index in range(1, args.nodes):
                node = NodeProcess(root / f"n{index}", "--bootstrap", first.address)
                started.append(node)
                cluster.append(node)
            for node in started:
                node.wait_ready()
            deadline = time.monotonic() + 60
            while not alive_everywhere(cluster):
                if time.monotonic() > deadline:
                    print("the nodes did not all list each other alive within 60 s")
                    return 1
                time.sleep(0.5)
            time.sleep(args.settle)
            everyone = [alone, *cluster]
            before = {n.data_dir: (cpu_seconds(n.proc.pid), *sent(n)) for n in everyone}
            opened = time.monotonic()
            time.sleep(args.window)
            window = time.monotonic() - opened
            after = {n.data_dir: (cpu_seconds(n.proc.pid), *sent(n)) for n in everyone}
            rows = {}
            for node in everyone:
                cpu0, packets0, bytes0 = before[node.data_dir]
                cpu1, packets1, bytes1 = after[node.data_dir]
                rows[node.data_dir.name] = (
                    (cpu1 - cpu0) / window,
                    (packets1 - packets0) / window,
                    (bytes1 - bytes0) / window,
                    rss_mib(node.proc.pid),
                )
        finally:
            for node in started:
                node.kill()
    print(f"{args.nodes} nodes, LAN profile, {window:.0f} s window after {args.settle:.0f} s")
    print("node   CPU (% of a core)  datagrams/s sent  KB/s sent  RSS MiB")
    for name, (cpu, packets, volume, rss) in rows.items():
        print(f"{name:6} {cpu * 100:17.2f}  {packets:16.2f}  {volume / 1000:9.2f}  {rss:7.0f}")
    members = [row for name, row in rows.items() if name != "alone"]
    median_cpu = statistics.median(row[0] for row in members)
    baseline = rows["alone"][0]
    ratio = f"{median_cpu / baseline:.2f}" if baseline > 0 else "n/a (baseline 0)"
    print(
        f"median member CPU {median_cpu * 100:.2f}% of a core; a node alone (baseline) "
        f"{baseline * 100:.2f}%; ratio {ratio}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
