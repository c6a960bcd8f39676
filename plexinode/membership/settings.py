"""Settings of SWIM/Lifeguard membership (`config` composes them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class MembershipSettings:
    """SWIM/Lifeguard membership (the defaults are memberlist's LAN profile, except where
    noted)."""

    # The protocol period: one member probed per period. memberlist's LAN value; a failure is
    # first suspected about 1.5 periods after it happens.
    probe_interval: float = 1.0
    # How long a direct probe waits for its ack before asking relays; the rest of the period
    # is for the indirect probes. Far above a LAN round trip, below a period.
    probe_timeout: float = 0.5
    # k, the relays an indirect probe asks: enough that one bad path does not condemn a member.
    indirect_probes: int = 3
    # Who probes whom. "aligned": probes start on the wall clock's period boundaries and, in
    # period p, the member at position i of the ID-sorted view probes the one at
    # i + 1 + p mod (N - 1), so that every member is probed by exactly one other in every
    # period (when clocks and views agree) and a failure is suspected within about one period.
    # "random": SWIM's shuffled round robin, where a member goes unprobed for k periods with
    # probability about e^-k (the tail of the time to first suspicion).
    probe_order: str = "aligned"
    # The suspicion floor is suspicion_mult * log10(N) periods. memberlist uses 4 (12 s at
    # N = 1,000); Lifeguard's confirmations make 2 safe (6 s), and dead members are then known
    # within 10 s.
    suspicion_mult: int = 2
    # A lone accuser's suspicion lasts this many times the floor (Lifeguard): the accuser may
    # be the one in trouble, and the accused has time to hear of it and refute.
    suspicion_max_mult: int = 6
    # Each claim is piggybacked retransmit_mult * ceil(log10(N + 1)) times (memberlist's 4).
    retransmit_mult: int = 4
    # While there is news, it is also sent on its own to gossip_nodes random members this
    # often, besides riding on probes (news after a quiet spell, and deaths, leaves and a
    # node's own claims, go at once): a death is known everywhere within about half a second
    # of its first declaration. memberlist sends every 200 ms to
    # 3; every 500 ms keeps a busy node under 10 packets a second with its probes.
    gossip_interval: float = 0.5
    gossip_nodes: int = 3
    # Full-state exchange with one random member this often: partitions heal and missed
    # updates arrive within one interval. Digests keep it cheap, so it need not grow with N.
    push_pull_interval: float = 20.0
    # Dead, stopped and left members are remembered this long, so that old news cannot revive
    # them.
    retention: float = 3600.0
    # A member that stopped on purpose (plexinode stop, SIGTERM: a service manager's restart)
    # is listed "stopped", not dead, for this long; one not back by then is shown dead.
    restart_grace: float = 900.0
    # Most members a node keeps; claims about new members beyond it are refused and counted.
    max_members: int = 10_000
    # The ceiling of Lifeguard's local health score: a degraded node's periods and timeouts
    # stretch up to max_awareness + 1 times (memberlist's 8).
    max_awareness: int = 8
