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
    # A datagram numbered this far below the newest one from the same sender (in that sender's
    # current boot) is refused as a possible replay; inside the window, a per-sender set of seen
    # numbers catches exact repeats. A sender numbers every datagram it sends, to anyone, so
    # the gap one receiver sees grows with the sender's whole traffic: a million datagrams is
    # minutes of a busy node's sending, far beyond any reordering the network produces.
    replay_window: int = 1 << 20
    # Replay state of a sender not heard from for this long (on this node's monotonic clock) is
    # forgotten, so the state of a crowd of identities that spoke once does not stay forever.
    # Ten minutes is many probe and refresh periods: a sender we talk to is never forgotten.
    replay_memory: float = 600.0
    # Bounds the tasks spawned for incoming requests so a flood cannot exhaust memory; requests
    # beyond it are answered with a BUSY error.
    max_inflight_handlers: int = 256
    # Requests per second one peer may make of each request type (an RPC's COST divides it;
    # a burst of twice the rate is allowed). Honest nodes stay far below it: a lookup asks a
    # given peer once, a join about a dozen times. Excess requests are dropped and counted,
    # with at most one RATE_LIMITED error reply per peer per second so an honest peer learns.
    peer_request_rate: int = 20
    # Datagrams per second accepted from one host (an IPv4 address, an IPv6 /64; burst twice
    # that), checked before anything else so that one host cannot make us spend all our CPU
    # on parsing and verification. It applies to every address, loopback and private ones
    # included, except the trusted_hosts below. 32 nodes on one host (a test network on
    # 127.0.0.1) send a node about 31 x 2.5 = 80 datagrams/s at idle and a few hundred while
    # they all join at once, well under 1,000; an attacker's host gets at most 1,000 x ~100 us
    # of our CPU, a tenth of a core, per second.
    host_datagram_rate: int = 1000
    # Networks (CIDR, e.g. "10.1.0.0/16") exempt from host_datagram_rate: one machine or LAN
    # that runs more nodes than the rate allows. Empty by default: loopback and private
    # addresses are limited like any other.
    trusted_hosts: tuple[str, ...] = ()
    # Failed signature checks per second one host may cause (burst host_failure_burst); beyond
    # it, its datagrams are dropped before the check until its budget refills. An honest node
    # never fails the check (corruption fails the network tag or the decoding first), so a
    # small budget costs honest hosts nothing and caps what a forger gets of the most
    # expensive step (an Ed25519 verification) at 2 a second.
    host_failure_rate: int = 2
    host_failure_burst: int = 20


@dataclass(frozen=True, slots=True)
class StreamSettings:
    """Secure streams, and the limits that keep an attacker from exhausting them.

    The caps below are sized together (plexinode.net.stream_limits explains the rules). What
    one attacker can hold at once is bounded by file descriptors, the scarcest of the node's
    resources (1,024 by default on Linux): at most ``max_pending_handshakes`` half-open
    connections plus ``max_streams`` established inbound streams, 128 + 256 = 384 sockets, plus
    about 30 of the node's own (its outbound streams, the database, the log, the UDP socket and
    trio's wakeup pipe) stays under 600, with room to spare under the usual limit.
    """

    # A handshake is two round trips; 10 s leaves room for slow links while freeing the slot
    # of a peer that opens a connection and stalls.
    handshake_timeout: float = 10.0
    # 1 MiB frames amortise per-frame overhead for shard transfers while bounding the buffer a
    # peer can make us allocate before the frame is authenticated.
    max_frame_bytes: int = 1 << 20
    # Bounds half-open handshakes in total (each holds a socket and a little crypto state). At
    # the limit a new connection evicts the oldest pending handshake of the host holding the
    # most, so a flood from one host evicts only its own. An honest handshake finishes in a
    # round trip or two, so 128 at once is far more than honest peers ever need.
    max_pending_handshakes: int = 128
    # Half-open handshakes one host (an IPv4 address, an IPv6 /64) may have at once; its next
    # connection evicts its own oldest. 32 lets 31 other nodes on one host (a test network on
    # 127.0.0.1) all join through this node at the same instant.
    max_pending_per_host: int = 32
    # Established inbound streams in total (see the class docstring for the descriptor budget).
    # Honest streams are short (a push-pull, a stream ping, a key pull), so a node with a few
    # hundred peers has a few open at a time.
    max_streams: int = 256
    # Established inbound streams from one host (an IPv4 address, an IPv6 /64): half the
    # total, so that one host can never hold every slot, yet 31 other nodes on one host (32 on
    # 127.0.0.1) can each hold four at once.
    max_streams_per_host: int = 128
    # Established inbound streams one node ID may hold: an honest node has at most a few open
    # to us at once (a push-pull, a stream ping, a key pull, later shard transfers), so 8 bounds
    # what one identity can take (an attacker then needs 16 identities, each paying the ID
    # puzzle, to fill a host's share).
    max_streams_per_node: int = 8
    # New connections per second accepted from one host (IPv4 address, IPv6 /64), with a burst
    # of host_connection_burst: every connection costs a handshake (an X25519 and two Ed25519
    # operations). 32 nodes on one host open a few connections a minute each (push-pull every
    # 20 s, stream pings only when a probe fails), far below 20 per second; the burst lets all
    # of them join through this node at once.
    host_connection_rate: int = 20
    host_connection_burst: int = 64
    # An established inbound stream on which no frame arrives and none is sent for this long
    # is closed. Every protocol so far finishes in seconds; one that keeps a stream open sends
    # something at least this often. It frees the slots of peers that went silent or hold
    # streams open on purpose.
    idle_timeout: float = 60.0
    # A frame whose first bytes have arrived must be complete within this time, or the stream
    # is closed and its buffer freed: a peer that trickles a 1 MiB frame a byte at a time
    # cannot pin the buffer for long. 1 MiB in 30 s needs 280 kbit/s; slower links should
    # carry smaller frames.
    frame_timeout: float = 30.0
    # The node is *under load* (plexinode.net.cookie) while this many handshakes are pending:
    # a msg1 must then carry a cookie, which costs an honest initiator one more round trip
    # and spares the node the key exchange of every msg1 sent blind. Half of
    # max_pending_handshakes, and more than max_pending_per_host, so that one host alone (32
    # nodes on 127.0.0.1 all joining through this node at once) never puts the node under
    # load; WireGuard uses an eighth of its queue, but its queue is 4,096 deep.
    cookie_pending_threshold: int = 64
    # ... or while the node made this many responder key exchanges (X25519 and a signature,
    # ~150 us) in the current or the previous second: 200 is 3% of a core, ten hosts at their
    # full connection rate, and far beyond honest use (32 nodes make a few a minute each).
    cookie_handshake_rate: int = 200
    # Networks (CIDR, e.g. "10.1.0.0/16") exempt from the per-host limits above (connection
    # rate, pending handshakes, streams per host) but not from the totals nor from the per-node
    # cap. Empty by default: loopback and private addresses are limited like any other.
    trusted_hosts: tuple[str, ...] = ()
