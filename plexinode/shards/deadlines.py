"""How long an owner, a restorer or a verifier waits for a holder over ``shards/1``.

A holder is another member's node: it may crash, lose its link, or accept a stream and then
never answer (issue 23's "a holder that stalls forever"), and a stream's own limits do not end
that on the side that opened it. So every exchange with a holder runs under a deadline, and a
holder past it is treated as one whose stream broke: the restore asks another holder, the
backup drops the share index and lets happiness decide, the verify counts its shares missing.

Deadlines come from what is asked: a fixed allowance to begin answering (`ANSWER_SECONDS`) and
the bytes the answer carries at the slowest rate still counted as working (`SLOWEST_RATE`):

    deadline = ANSWER_SECONDS + bytes / SLOWEST_RATE        (`transfer`)

A holder serves each peer at up to its read limit (`holder_service.READ_RATE`, 8 MiB/s); the
slowest rate allowed is 1/32 of that, 256 KiB/s, because one owner's link is shared by the
holders it reads from at once (a restore reads from k to n holders together, each with one
stream), and a home uplink of a few Mbit/s must not look like a stall. So a block of a 1 MiB
segment at k = 3 (about 350 KB) gets 21 seconds, the largest block (4 MiB) 36 seconds, and a
challenge answer (4 leaves, 32 KiB) 20 seconds. The allowance is generous because a deadline
that passes costs little: the holder is not asked again in that restore, so a stalled holder
costs one deadline, not one per block.
"""

from __future__ import annotations

from typing import Final

import trio

from plexinode.shards.holder_service import READ_RATE

#: Time a holder may take to begin answering any request: to find the share (a database
#: read), read it and check it against its root (a worker thread, behind other streams' reads
#: and group commits that fsync), over a link with a few round trips of latency.
ANSWER_SECONDS: Final = 20.0
#: The slowest transfer still counted as a holder answering: 1/32 of its per-peer read limit
#: (256 KiB/s), since the owner's link is shared by every holder it reads from at once.
SLOWEST_RATE: Final = READ_RATE / 32
#: Time to reach a holder: find its address (membership, else a DHT lookup) and open a stream
#: (the handshake has its own, shorter, timeout); a TCP connect to a host that is off can
#: otherwise wait minutes for the operating system to give up.
CONNECT_SECONDS: Final = 30.0
#: Time given to closing a stream politely (its final frame) before it is dropped.
CLOSE_SECONDS: Final = 1.0


def transfer(size: int) -> float:
    """The deadline of an exchange whose answer (or whose wait for an acknowledgement)
    carries `size` bytes, in seconds."""
    return ANSWER_SECONDS + max(0, size) / SLOWEST_RATE


async def close_soon(stream: trio.abc.AsyncResource) -> None:
    """Close `stream` within `CLOSE_SECONDS` (a holder that stopped reading cannot hold a
    close up: the final frame is given up and the connection dropped)."""
    with trio.move_on_after(CLOSE_SECONDS):
        await stream.aclose()
