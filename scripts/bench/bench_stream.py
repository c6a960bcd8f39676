"""Secure-stream throughput against the bare cost of its encryption, measured in the same run.

    python scripts/bench/bench_stream.py [--mib 256] [--frame 65536] [--repeat 3]

(a)  baseline: crypto_secretstream_xchacha20poly1305 push alone over the payload, in frames of
     `--frame` bytes, in this process: the fastest any encrypted stream can go on one core.
(b)  end to end: a SecureStream over real loopback TCP (trio.open_tcp_listeners on 127.0.0.1
     port 0, secure_accept on one end, secure_connect on the other) carrying the same frames of
     the same bytes, the receiver pull-decrypting every one. The two ends run in separate
     processes, as two nodes would: each does one side of the crypto (push or pull) plus the
     framing and the socket I/O, so (b) can approach (a) only if they run on two free cores.
(a2) for information: (a) in two processes at once, per process. On a machine whose two cores
     are really independent this equals (a); on a shared VM it shows how much slower the
     crypto itself gets when both cores are busy, which (b) cannot escape.
(c)  for information: (b) with both ends in one process, where one core does push AND pull, so
     its ratio to (a) cannot exceed about 0.5.

Every figure is MB/s (10^6 bytes of plaintext per second). Each run measures all four, one
after the other; the summary gives the best run of each and, because the speed of a shared
machine drifts within seconds, also the median of (b)/(a) over the runs, each pair measured
back to back. The target is (b)/(a) >= 0.70.
"""

from __future__ import annotations

import argparse
import multiprocessing
import multiprocessing.synchronize
import os
import random
import statistics
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path

import nacl.bindings as sodium
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import header

from plexinode.identity import Identity
from plexinode.net.secure import secure_accept, secure_connect

#: Distinct random bytes cycled through to make the frames, so the payload is not one frame
#: repeated; seeded, so that every process encrypts exactly the same bytes.
_POOL_BYTES = 4 << 20
_SEED = 20240601
_SPAWN = multiprocessing.get_context("spawn")


def make_frames(total: int, frame: int) -> list[bytes]:
    """`total` bytes of payload as `frame`-byte chunks (the last may be short); deterministic."""
    pool = random.Random(_SEED).randbytes(max(_POOL_BYTES, frame))
    frames = []
    offset = 0
    for start in range(0, total, frame):
        size = min(frame, total - start)
        if offset + size > len(pool):
            offset = 0
        frames.append(pool[offset : offset + size])
        offset += size
    return frames


def bench_push(frames: list[bytes]) -> float:
    """Seconds for secretstream push over every frame (a fresh stream per run)."""
    state = sodium.crypto_secretstream_xchacha20poly1305_state()
    sodium.crypto_secretstream_xchacha20poly1305_init_push(state, os.urandom(32))
    push = sodium.crypto_secretstream_xchacha20poly1305_push
    tag = sodium.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
    start = time.perf_counter()
    for frame in frames:
        push(state, frame, None, tag)
    return time.perf_counter() - start


def _push_process(
    total: int, frame: int, barrier: multiprocessing.synchronize.Barrier, result: Connection
) -> None:
    frames = make_frames(total, frame)
    barrier.wait()
    result.send(bench_push(frames))


def bench_push_two_processes(total: int, frame: int) -> float:
    """Seconds for (a) in each of two processes started together; the slower of the two."""
    barrier = _SPAWN.Barrier(2)
    pipes = [_SPAWN.Pipe(duplex=False) for _ in range(2)]
    children = [
        _SPAWN.Process(target=_push_process, args=(total, frame, barrier, sender), daemon=True)
        for _, sender in pipes
    ]
    for child in children:
        child.start()
    seconds = [float(receiver.recv()) for receiver, _ in pipes]
    for child in children:
        child.join()
    return max(seconds)


async def _send_frames(port: int, frames: list[bytes], identity: Identity) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    secure = await secure_connect(stream, identity, max_frame_bytes=max(map(len, frames)))
    async with secure:
        await secure.receive()  # "go": the receiver's clock has started
        for frame in frames:
            await secure.send(frame)


async def _receive_frames(
    listener: trio.SocketListener, identity: Identity, total: int, frame_bytes: int
) -> float:
    stream = await listener.accept()
    secure = await secure_accept(stream, identity, max_frame_bytes=frame_bytes)
    received = 0
    async with secure:
        start = time.perf_counter()
        await secure.send(b"go")
        async for frame in secure:
            received += len(frame)
        elapsed = time.perf_counter() - start
    if received != total:
        raise SystemExit(f"received {received} bytes, expected {total}")
    return elapsed


def _sender_process(port: int, total: int, frame: int) -> None:
    trio.run(_send_frames, port, make_frames(total, frame), Identity.generate())


async def bench_tcp(frames: list[bytes], *, same_process: bool) -> float:
    """Seconds to carry every frame over a secure loopback TCP stream."""
    total, frame_bytes = sum(map(len, frames)), max(map(len, frames))
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    listener = listeners[0]
    port = listener.socket.getsockname()[1]
    async with listener:
        if same_process:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_send_frames, port, frames, Identity.generate())
                return await _receive_frames(listener, Identity.generate(), total, frame_bytes)
        # The child makes the same frames itself (make_frames is deterministic).
        child = _SPAWN.Process(target=_sender_process, args=(port, total, frame_bytes), daemon=True)
        child.start()
        try:
            return await _receive_frames(listener, Identity.generate(), total, frame_bytes)
        finally:
            await trio.to_thread.run_sync(child.join)
            if child.exitcode != 0:
                raise SystemExit(f"sender process failed with exit code {child.exitcode}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=256, help="payload per run, MiB")
    parser.add_argument("--frame", type=int, default=65536, help="frame plaintext size, bytes")
    parser.add_argument("--repeat", type=int, default=5, help="interleaved runs of all four")
    args = parser.parse_args()

    total = args.mib << 20
    frames = make_frames(total, args.frame)
    header(
        f"secure stream throughput: {args.mib} MiB in {len(frames)} frames of {args.frame} bytes,"
        f" {args.repeat} interleaved runs"
    )
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"# {os.cpu_count()} CPUs, load average {load} (other work skews (b), (a2) and (c))")

    # Interleaved rather than one measurement after the other, so that a burst of load from
    # elsewhere on the machine cannot favour one of them.
    mb = total / 1e6
    runs: list[tuple[float, float, float, float]] = []
    print("# run      (a)      (b)     (a2)      (c)   MB/s     (b)/(a)")
    for number in range(1, args.repeat + 1):
        push = bench_push(frames)
        tcp = trio.run(lambda: bench_tcp(frames, same_process=False))
        push2 = bench_push_two_processes(total, args.frame)
        one = trio.run(lambda: bench_tcp(frames, same_process=True))
        runs.append((push, tcp, push2, one))
        rates = "".join(f"{mb / seconds:9.1f}" for seconds in runs[-1])
        print(f"# {number:3d}{rates}          {push / tcp:6.2f}")

    push, tcp, push2, one = (min(column) for column in zip(*runs, strict=True))
    rows = [
        ("(a)  secretstream push alone (baseline)", push),
        ("(b)  SecureStream, loopback TCP, 2 processes", tcp),
        ("(a2) push alone, 2 processes at once (info)", push2),
        ("(c)  SecureStream, both ends in 1 process (info)", one),
    ]
    print(f"best of {args.repeat}:")
    for label, seconds in rows:
        print(f"{label:<50} {mb / seconds:9.1f} MB/s")
    ratio = push / tcp
    paired = statistics.median(run[0] / run[1] for run in runs)
    verdict = "meets" if ratio >= 0.70 else "BELOW"
    print(
        f"ratio (b)/(a)  = {ratio:.2f} ({verdict} the 0.70 target);"
        f" median of the paired runs {paired:.2f}"
    )
    print(f"ratio (b)/(a2) = {push2 / tcp:.2f} (stream cost with both cores busy)")
    print(f"ratio (c)/(a)  = {push / one:.2f} (one core does push and pull: ceiling ~0.5)")


if __name__ == "__main__":
    main()
