"""Settings of the datagram transport and the secure streams (`config` composes them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DatagramSettings:
    """Authenticated datagram transport and its request/response layer."""

    # A loopback or LAN round trip is well under a millisecond and a transatlantic one ~100 ms;
    # 2 s per attempt tolerates a loaded peer without making a dead peer slow to detect.
    request_timeout: float = 2.0
    # Two extra attempts ride out ordinary UDP loss (a few percent) at most tripling the wait.
    retries: int = 2
    # A datagram whose counter is this far below the newest one from the same sender is refused
    # as a possible replay; inside the window, a per-sender set of seen counters catches exact
    # repeats. The window is measured on the sender's own clock, so skew between hosts does not
    # matter; a minute tolerates any reordering the network produces.
    replay_window: float = 60.0
    # Bounds the tasks spawned for incoming requests so a flood cannot exhaust memory; requests
    # beyond it are answered with a BUSY error.
    max_inflight_handlers: int = 256
    # Requests per second one peer may make of each request type (an RPC's COST divides it;
    # a burst of twice the rate is allowed). Honest nodes stay far below it: a lookup asks a
    # given peer once, a join about a dozen times. Excess requests are dropped and counted,
    # with at most one RATE_LIMITED error reply per peer per second so an honest peer learns.
    peer_request_rate: int = 20
    # Datagrams per second accepted from one public IP address, checked before the signature
    # so that one host cannot make us spend all our CPU on verification; off for loopback and
    # private addresses (tests, LANs), where many nodes legitimately share an address.
    host_datagram_rate: int = 1000


@dataclass(frozen=True, slots=True)
class StreamSettings:
    """Secure streams."""

    # A handshake is two round trips; 10 s leaves room for slow links while freeing the slot
    # of a peer that opens a connection and stalls.
    handshake_timeout: float = 10.0
    # 1 MiB frames amortise per-frame overhead for shard transfers while bounding the buffer a
    # peer can make us allocate before the frame is authenticated.
    max_frame_bytes: int = 1 << 20
    # Bounds half-open handshakes (each holds a socket and a little crypto state); at the limit
    # a new connection evicts the oldest pending handshake.
    max_pending_handshakes: int = 256
