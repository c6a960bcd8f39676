"""The membership service: the trio driver around the member table, the prober and the gossip
queue.

It feeds the sans-I/O cores from the network and the clock, and carries out what they decide::

    probe loop ── Prober.tick ──> member-ping / member-ping-req (datagrams, claims piggybacked)
               └─ MemberTable.expire ──> dead claims (gossiped), events (to subscribers)
    handlers   ── member-ping ──> claims heard, member-ack (with claims)
               └─ member-ping-req ──> relayed ping, then the target's ack or a nack
    push-pull  ── every push_pull_interval: digests, then the differing members' claims,
                  with one random live member (and one member believed dead, which heals
                  partitions); with nobody known alive, with seeds (bootstrap, DHT contacts)

**Hearing a claim** costs, in order: decoding with size limits (done by the wire layer), the
network's ID puzzle on the member's ID, :meth:`MemberTable.is_news` (most gossip repeats what
we know and stops here, before any signature check), the table's size cap for new members, a
rate limit per accuser (checked here, charged only once the signature holds, so that forgeries
naming an honest accuser cannot use up its allowance), and only then the claim's signature. A
claim that survives is applied, stored (so that push-pull can hand the member's own signed
words to others) and gossiped on.

**Push-pull never revives the dead.** Claims arrive grouped by member; a member we do not know
whose best claim says dead or left is skipped, so a tombstone we already reaped (or never had)
does not come back to life through its old alive claim. Within ``retention`` the tombstone
itself refuses the old claim (the table's invariant 4).

**The node's own incarnation** is kept in the database and starts one above the last one used,
so that a restarted node's alive claim outranks whatever the others remember of it; each
refutation is written too.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import trio

from plexinode.errors import AuthenticationError, DecodeError, PeerTimeout, RemoteProtocolError
from plexinode.identity import NodeId
from plexinode.membership.claims import SignedClaim, sign_claim
from plexinode.membership.digest import bucket_digests, bucket_of, differing_buckets, root_digest
from plexinode.membership.gossip import GossipQueue
from plexinode.membership.members import (
    Claim,
    Died,
    Event,
    Joined,
    Left,
    MemberTable,
    MemberView,
    Reaped,
    State,
    Suspected,
    Updated,
)
from plexinode.membership.messages import (
    CLAIM_OVERHEAD,
    CLAIMS_BUDGET,
    MAX_PIGGYBACK,
    MAX_STATE_PIGGYBACK,
    PING_PROTOCOL,
    STATE_BUDGET,
    SYNC_BATCH,
    SYNC_PROTOCOL,
    SYNC_STATE_BATCH,
    MemberAck,
    MemberGossip,
    MemberNack,
    MemberPing,
    MemberPingReq,
    MemberSyncBuckets,
    MemberSyncClaims,
    MemberSyncDigest,
    MemberSyncState,
)
from plexinode.membership.probe import (
    Action,
    Prober,
    SendAck,
    SendNack,
    SendPing,
    SendPingReq,
    SuspectMember,
)
from plexinode.membership.settings import MembershipSettings
from plexinode.membership.state import (
    HybridClock,
    StateEntry,
    StateMap,
    sign_entry,
    state_digest,
)
from plexinode.net.address import Address, ip_text, packed_ip
from plexinode.net.datagram import DatagramService, Inbound
from plexinode.net.ratelimit import TokenBuckets
from plexinode.net.secure import SecureStream
from plexinode.net.streams import StreamService
from plexinode.storage import Database
from plexinode.wire import envelope
from plexinode.wire.codec import FRAME_LIMITS, pack
from plexinode.wire.schema import Message

log = logging.getLogger(__name__)

#: A push-pull exchange (connect, handshake, digests, claims) must finish within this.
SYNC_TIMEOUT: Final = 10.0
#: Seeds tried at once when this node knows no other live member.
JOIN_SEEDS: Final = 3
#: While alone, joining is retried after 1 s, doubling up to the push-pull interval.
JOIN_RETRY_FIRST: Final = 1.0
#: Events buffered per subscriber; a subscriber that falls further behind loses events
#: (counted), rather than stalling membership for everyone.
EVENT_BUFFER: Final = 1024
#: New accusations accepted per accuser, per protocol period, and in a burst: a suspicion, or
#: a death out of the blue (of a member we do not suspect). An honest node suspects at most the
#: one member it probes each period, so more is a flood; deaths of suspects (the usual way a
#: member dies, and many at once when a partition cuts off part of the network) are not
#: limited.
ACCUSATIONS_PER_PERIOD: Final = 1.0
ACCUSATION_BURST: Final = 10
#: How often the advertised address is compared with the one in our alive claim, seconds.
ADDRESS_CHECK_INTERVAL: Final = 5.0
#: Members told directly of our leaving (besides gossip), and how long we wait for their acks.
LEAVE_FANOUT: Final = 5
LEAVE_TIMEOUT: Final = 3.0
#: The database key of the last incarnation this node used.
INCARNATION_KEY: Final = "membership.incarnation"

M = TypeVar("M", bound=Message)

#: Members that probe a suspect out of turn when they hear of the suspicion (in expectation).
CONFIRMERS: Final = 4
#: Urgent gossip rounds (deaths, leaves, our own claims) are at least gossip_interval / this
#: apart.
URGENT_SPACING: Final = 5
#: Recent pings whose target incarnation is remembered (a probe and its relayed pings take a
#: handful per period; older ones are long finished).
MAX_PINGS_REMEMBERED: Final = 256
#: How a stream exchange with a peer can fail (unreachable, refused, slow, broken, malformed).
_STREAM_FAILURES: Final = (
    trio.TooSlowError,
    OSError,
    RemoteProtocolError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    trio.EndOfChannel,
)


@dataclass(frozen=True, slots=True)
class Seed:
    """A node to join through: its address, and its ID when known (DHT contacts)."""

    address: Address
    node_id: NodeId | None = None


def _claim_size(claim: SignedClaim) -> int:
    return claim.wire_size()


def _entry_size(entry: StateEntry) -> int:
    return len(pack(entry.to_wire()))


class MembershipService:
    """SWIM with Lifeguard over the datagram service, push-pull over secure streams.

    Args:
        datagrams: The datagram service (probes, acks, relays).
        streams: The stream service (push-pull).
        settings: Timing and limits.
        advertise: This node's address for its alive claims, or None while unknown (a node
            bound to a wildcard address learns its address from the DHT); asked again every
            few seconds, and a change is announced with a new incarnation.
        seeds: Nodes to join through when no other member is known alive.
        db: Where the incarnation is kept (None: start at 0, for simulations).
        rng: Probe order, relays, push-pull partners.
        tags: This node's tags.
        id_difficulty: The network's ID puzzle: claims about IDs that fail it are dropped.
        wall_clock: Unix time, for the cluster state's hybrid clock.
    """

    def __init__(
        self,
        datagrams: DatagramService,
        streams: StreamService,
        settings: MembershipSettings,
        *,
        advertise: Callable[[], Address | None],
        seeds: Callable[[], Sequence[Seed]] = lambda: (),
        db: Database | None = None,
        rng: random.Random | None = None,
        tags: dict[str, str] | None = None,
        id_difficulty: int = 0,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.datagrams = datagrams
        self.streams = streams
        self.settings = settings
        self.identity = datagrams.identity
        self.node_id = self.identity.node_id
        self._advertise = advertise
        self._seeds = seeds
        self._db = db
        self._rng = rng or random.Random()
        self._tags = dict(tags or {})
        self._id_difficulty = id_difficulty
        self._wall_clock = wall_clock
        self._aligned = settings.probe_order == "aligned"
        self.table: MemberTable | None = None
        #: The replicated cluster state (module plexinode.membership.state).
        self.state = StateMap()
        #: Decides whether an entry heard from the network may be merged: the reason to refuse
        #: it, or None (set by the services that own part of the key space; the keyring
        #: service guards ``net.``). Not applied to this node's own writes.
        self.state_guard: Callable[[StateEntry], str | None] | None = None
        self._hybrid = HybridClock(self._wall_ms)
        self._state_gossip: GossipQueue[StateEntry] = GossipQueue(
            _entry_size, retransmit_mult=settings.retransmit_mult
        )
        self.prober = Prober(
            self.node_id,
            0.0,
            self._rng,
            probe_interval=settings.probe_interval,
            probe_timeout=settings.probe_timeout,
            indirect_probes=settings.indirect_probes,
            max_awareness=settings.max_awareness,
        )
        self._gossip: GossipQueue[SignedClaim] = GossipQueue(
            _claim_size, retransmit_mult=settings.retransmit_mult
        )
        # The signed claims behind our beliefs: each member's latest alive claim, and the
        # accusation or leave that overrides it, if any.
        self._alive: dict[NodeId, SignedClaim] = {}
        self._overriding: dict[NodeId, SignedClaim] = {}
        self._accusers = TokenBuckets[NodeId](
            ACCUSATIONS_PER_PERIOD / settings.probe_interval, ACCUSATION_BURST, max_keys=4096
        )
        self._relay_waiters: dict[tuple[NodeId, int], list[Any]] = {}
        self._relay_keys = 0
        # The incarnation each recent ping (by sequence number) was sent to: a probe that fails
        # accuses that life only, never a newer one learned while it waited (a member back at
        # a new address would otherwise be suspected for silence at its old one).
        self._pinged: dict[int, int] = {}
        self._subscribers: list[trio.MemorySendChannel[Event]] = []
        self._wakeup = trio.Event()
        self._news = trio.Event()  # set when something is queued for gossip
        self._urgent = trio.Event()  # set when a death, a leave or our refutation is queued
        self._nursery: trio.Nursery | None = None
        self._left = False
        #: Set once this node knows its address and takes part (probes, answers, gossips).
        self.ready = trio.Event()
        #: What happened to claims, probes' relays and push-pulls, for status and tests.
        self.stats: collections.Counter[str] = collections.Counter()

    # -- life cycle ----------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Take part in membership until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            address = self._advertise()
            while address is None:
                await trio.sleep(self.settings.probe_interval)
                address = self._advertise()
            incarnation = await self._next_incarnation()
            now = trio.current_time()
            self.table = MemberTable(
                self.node_id,
                address,
                now,
                incarnation=incarnation,
                tags=self._tags,
                probe_interval=self.settings.probe_interval,
                suspicion_mult=self.settings.suspicion_mult,
                suspicion_max_mult=self.settings.suspicion_max_mult,
                retention=self.settings.retention,
            )
            self._announce(self.table.own_claim())
            self.datagrams.on(MemberPing, self._on_ping)
            self.datagrams.on(MemberPingReq, self._on_ping_req)
            self.datagrams.on(MemberGossip, self._on_gossip)
            self.streams.on(SYNC_PROTOCOL, self._serve_sync)
            self.streams.on(PING_PROTOCOL, self._serve_stream_ping)
            log.info("membership: %s at %s, incarnation %d", self.node_id, address, incarnation)
            self.ready.set()
            nursery.start_soon(self._probe_loop)
            nursery.start_soon(self._push_pull_loop)
            if self.settings.gossip_nodes:
                nursery.start_soon(self._gossip_loop)

    def _table(self) -> MemberTable:
        if self.table is None:
            raise RuntimeError("membership is not ready")
        return self.table

    async def _next_incarnation(self) -> int:
        if self._db is None:
            return 0
        rows = await self._db.execute("SELECT value FROM meta WHERE key = ?", (INCARNATION_KEY,))
        incarnation = int(bytes(rows[0][0]).decode()) + 1 if rows else 0
        await self._save_incarnation(incarnation)
        return incarnation

    async def _save_incarnation(self, incarnation: int) -> None:
        if self._db is None:
            return
        await self._db.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
            (INCARNATION_KEY, str(incarnation).encode()),
        )

    def _wake(self) -> None:
        self._wakeup.set()

    # -- events --------------------------------------------------------------------------------

    def subscribe(self, buffer: int = EVENT_BUFFER) -> trio.MemoryReceiveChannel[Event]:
        """A channel of membership events (joined, updated, suspected, died, left, reaped).

        The subscriber must keep reading: beyond `buffer` unread events, new ones are dropped
        for it (and counted in ``stats["events_dropped"]``). Closing the channel unsubscribes.
        """
        send, receive = trio.open_memory_channel[Event](buffer)
        self._subscribers.append(send)
        return receive

    def _publish(self, events: Iterable[Event]) -> None:
        for event in events:
            member = event.member
            level = logging.INFO if isinstance(event, Joined | Died | Left) else logging.DEBUG
            log.log(level, "member %s %s", member.node_id.short(), type(event).__name__.lower())
            if isinstance(event, Reaped):
                self._alive.pop(member.node_id, None)
                self._overriding.pop(member.node_id, None)
            for channel in list(self._subscribers):
                try:
                    channel.send_nowait(event)
                except trio.WouldBlock:
                    self.stats["events_dropped"] += 1
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    self._subscribers.remove(channel)

    # -- claims --------------------------------------------------------------------------------

    def _announce(self, claim: Claim) -> None:
        """Sign one of our own claims (alive, left, or an accusation we make), keep it and
        gossip it."""
        signed = sign_claim(self.identity, claim)
        self._store(claim, signed)
        self._gossip.add(claim.node_id, signed)
        self._queued(urgent=claim.state is not State.SUSPECT)

    def _queued(self, *, urgent: bool = False) -> None:
        """Something was queued for gossip; `urgent` news (a death, a leave, our own claims)
        goes out in a round of its own at once rather than at the next tick."""
        self._news.set()
        if urgent:
            self._urgent.set()

    def _store(self, claim: Claim, signed: SignedClaim) -> None:
        if claim.state is State.ALIVE:
            self._alive[claim.node_id] = signed
            self._overriding.pop(claim.node_id, None)
            return
        current = self._overriding.get(claim.node_id)
        if current is None or (current.incarnation, current.state) < claim.rank:
            self._overriding[claim.node_id] = signed

    def hear(self, signed: SignedClaim, *, gossip: bool = True) -> bool:
        """Consider one claim from the network; True if it changed or confirmed a belief.

        With `gossip` false, an accepted claim is not passed on: a node that joins learns the
        whole membership from one push-pull, and all of it is news only to itself.
        """
        table = self._table()
        try:
            claim = signed.unverified()
        except AuthenticationError:
            self.stats["claims_forged"] += 1  # e.g. a "left" signed by someone else
            return False
        except (DecodeError, ValueError):
            self.stats["claims_malformed"] += 1
            return False
        if self._id_difficulty and not claim.node_id.meets(self._id_difficulty):
            self.stats["claims_id_puzzle"] += 1
            return False
        if not table.is_news(claim):
            self.stats["claims_known"] += 1
            return False
        full = claim.node_id not in table and len(table) >= self.settings.max_members
        if full and not table.remembered_dead:
            self.stats["claims_table_full"] += 1
            return False
        now = trio.current_time()
        charged = self._rate_limited_accuser(claim, table)
        if charged is not None and not self._accusers.would_allow(charged, now):
            # Checked before the signature (cheap drop of a flood) but charged only after it:
            # a forgery that names an honest accuser must not spend that accuser's tokens.
            self.stats["claims_accuser_limited"] += 1
            return False
        try:
            signed.verify()
        except AuthenticationError:
            self.stats["claims_bad_signature"] += 1
            return False
        if charged is not None:
            self._accusers.allow(charged, now)
        if full:
            # A full table whose dead members would lock every newcomer out: the one dead
            # longest goes first (only for a claim whose signature holds).
            reaped = table.reap_oldest()
            if reaped is not None:
                self.stats["claims_made_room"] += 1
                self._publish([reaped])
        outcome = table.apply(claim, now)
        if outcome.refutation is not None:
            self.stats["refuted"] += 1
            self.prober.refuted()
            self._announce(outcome.refutation)
            self._persist_incarnation()
            log.info(
                "refuted %s about us with incarnation %d",
                claim.state.name.lower(),
                outcome.refutation.incarnation,
            )
        if outcome.accepted:
            self.stats["claims_accepted"] += 1
            if claim.state is State.SUSPECT and claim.node_id != self.node_id:
                self._maybe_confirm(claim.node_id, table.live_count)
            self._store(claim, signed)
            if gossip:
                self._gossip.add(claim.node_id, signed)
                self._queued(urgent=claim.state >= State.DEAD)
            self._wake()
        self._publish(outcome.events)
        return outcome.accepted

    def _rate_limited_accuser(self, claim: Claim, table: MemberTable) -> NodeId | None:
        """The accuser whose allowance `claim` draws on: another member's suspicion, or its
        verdict on a member we do not hold suspect (a dead claim confirming a suspicion we
        hold is free: it ends one)."""
        accuser = claim.accuser
        if accuser is None or accuser == self.node_id:
            return None
        known = table.get(claim.node_id)
        if claim.state is State.DEAD and known is not None and known.state is State.SUSPECT:
            return None
        return accuser

    def _maybe_confirm(self, suspect: NodeId, live: int) -> None:
        """Probe a member others suspect next, with a chance that makes about
        :data:`CONFIRMERS` members of the network do so: enough independent confirmations to
        bring the suspicion timeout down to its floor within a period or two (Lifeguard), or
        to find the member well, for the cost of a few probes per suspicion."""
        if self._rng.random() < CONFIRMERS / max(1, live - 2):
            self.stats["confirm_probes"] += 1
            self.prober.hurry(suspect)

    def _hear_message(self, message: MemberPing | MemberAck | MemberPingReq | MemberGossip) -> None:
        for claim in message.claims:
            self.hear(claim)
        for entry in message.state:
            self.hear_state(entry)

    def _persist_incarnation(self) -> None:
        if self._db is not None and self._nursery is not None and self.table is not None:
            self._nursery.start_soon(self._save_incarnation, self.table.incarnation)

    def _piggyback(self, first: Sequence[SignedClaim] = ()) -> tuple[SignedClaim, ...]:
        budget = CLAIMS_BUDGET - sum(_claim_size(c) for c in first)
        live = self._table().live_count
        taken = self._gossip.take(budget, live, overhead=CLAIM_OVERHEAD)
        if first:
            taken = [claim for claim in taken if claim not in first]
        return (*first, *taken)[:MAX_PIGGYBACK]

    # -- cluster state -------------------------------------------------------------------------

    def _wall_ms(self) -> int:
        return int(self._wall_clock() * 1000)

    def set_state(self, key: str, value: bytes | None) -> StateEntry:
        """Write `value` under `key` in the replicated cluster state (None deletes the key);
        the write is signed by this node and gossiped to every member.

        Raises:
            ValueError: A malformed key, an oversized value, or a full map.
        """
        entry = sign_entry(self.identity, key, value, self._hybrid.now())
        if not self.state.merge(entry, self._wall_ms()).accepted:
            raise ValueError(f"the cluster state is full ({self.state.max_entries} keys)")
        self._state_gossip.add(key, entry)
        self._news.set()
        return entry

    def hear_state(self, entry: StateEntry, *, gossip: bool = True) -> bool:
        """Consider one cluster-state entry from the network; True if it was merged."""
        if not self.state.would_accept(entry):
            self.stats["state_known"] += 1
            return False
        try:
            entry.check()
        except AuthenticationError:
            self.stats["state_bad_signature"] += 1
            return False
        except DecodeError:
            self.stats["state_malformed"] += 1
            return False
        refusal = self.state_guard(entry) if self.state_guard is not None else None
        if refusal is not None:
            self.stats["state_refused"] += 1
            log.debug("refused cluster-state entry %r: %s", entry.key, refusal)
            return False
        if not self.state.merge(entry, self._wall_ms()).accepted:
            return False
        self._hybrid.observe(entry.wall_ms, entry.counter)
        self.stats["state_accepted"] += 1
        if gossip:
            self._state_gossip.add(entry.key, entry)
            self._news.set()
        return True

    def _state_piggyback(self) -> tuple[StateEntry, ...]:
        live = self.table.live_count if self.table is not None else 1
        taken = self._state_gossip.take(STATE_BUDGET, live)
        return tuple(taken[:MAX_STATE_PIGGYBACK])

    # -- probing -------------------------------------------------------------------------------

    def _period(self) -> float:
        return self.prober.probe_interval * self.prober.multiplier

    async def _probe_loop(self) -> None:
        table = self._table()
        next_address_check = trio.current_time() + ADDRESS_CHECK_INTERVAL
        while True:
            now = trio.current_time()
            if not self._left:
                wall = self._wall_clock() if self._aligned else None
                self._execute(self.prober.tick(now, table.others_live, wall))
                if now >= next_address_check:
                    next_address_check = now + ADDRESS_CHECK_INTERVAL
                    self._check_address(now)
            assert self._nursery is not None
            for suspect in table.last_calls(now, self.settings.probe_timeout):
                self.stats["last_calls"] += 1
                self._nursery.start_soon(self._last_call, suspect)
            claims, events = table.expire(now)
            for claim in claims:
                self.stats["declared_dead"] += 1
                self._announce(claim)
            self._publish(events)
            deadline = min(table.next_deadline() or math.inf, now + self._period())
            if not self._left:
                deadline = min(deadline, self.prober.next_deadline())
            with trio.move_on_at(deadline):
                await self._wakeup.wait()
            self._wakeup = trio.Event()

    def _check_address(self, now: float) -> None:
        table = self._table()
        address = self._advertise()
        own = table.get(self.node_id)
        if address is None or own is None or address == own.address:
            return
        log.info("membership: our address changed to %s", address)
        self._announce(table.update_self(now, address=address))
        self._persist_incarnation()

    def _execute(self, actions: Iterable[Action]) -> None:
        assert self._nursery is not None
        fallback: SendPingReq | None = None
        for action in actions:
            if isinstance(action, SendPing):
                self._remember_ping(action.target, action.seq)
                self._nursery.start_soon(self._send_ping, action.target, action.seq, None)
            elif isinstance(action, SendPingReq):
                fallback = action
                self._nursery.start_soon(
                    self._send_ping_req, action.relay, action.target, action.seq
                )
            elif isinstance(action, SendAck | SendNack):
                waiter = self._relay_waiters.get((action.to, action.seq))
                if waiter is not None and not waiter[0].is_set():
                    waiter[1] = isinstance(action, SendAck)
                    waiter[0].set()
            elif isinstance(action, SuspectMember):
                self._suspect(action.target, self._pinged.pop(action.seq, None))
        if fallback is not None:
            self._nursery.start_soon(self._stream_ping, fallback.target, fallback.seq)

    def _remember_ping(self, target: NodeId, seq: int) -> None:
        member = self._table().get(target)
        if member is None:
            return
        self._pinged[seq] = member.incarnation
        while len(self._pinged) > MAX_PINGS_REMEMBERED:
            del self._pinged[next(iter(self._pinged))]  # the oldest (sequence numbers grow)

    def _suspect(self, target: NodeId, pinged: int | None = None) -> None:
        """Our probe of `target` failed; `pinged` is the incarnation it was sent to."""
        table = self._table()
        member = table.get(target)
        if member is None or member.state > State.SUSPECT:
            return
        if pinged is not None and pinged < member.incarnation:
            self.stats["suspicions_stale"] += 1  # it came back in a new life meanwhile
            return
        claim = Claim(target, member.incarnation, State.SUSPECT, accuser=self.node_id)
        outcome = table.apply(claim, trio.current_time())
        if outcome.accepted:
            self._announce(claim)
        self._publish(outcome.events)

    async def _send_ping(self, target: NodeId, seq: int, address: Address | None) -> None:
        """Ping `target` (our probe, or one a relay request asked for, at its `address`)."""
        member = self._table().get(target)
        if address is None:
            if member is None:
                return
            address = member.address
        first: tuple[SignedClaim, ...] = ()
        accusation = self._overriding.get(target)
        if member is not None and member.state is State.SUSPECT and accusation is not None:
            first = (accusation,)  # Lifeguard's buddy system: tell the suspect directly
        try:
            reply = await self.datagrams.request(
                address,
                MemberPing(self._piggyback(first), self._state_piggyback()),
                node_id=target,
                attempt_timeout=self._period(),
                retries=0,
            )
        except (PeerTimeout, RemoteProtocolError):
            return
        if isinstance(reply.message, MemberAck):
            self._acked(reply.message, target, seq)

    async def _last_call(self, target: NodeId) -> None:
        """A suspect's time ran out: ping it once more, with the accusation, before the
        verdict (twice within the probe timeout, which is all the verdict waits). A suspect
        that is well answers with its current alive claim, which ends the suspicion here even
        if this node missed the refutation the rest of the network heard."""
        member = self._table().get(target)
        accusation = self._overriding.get(target)
        if member is None or member.state is not State.SUSPECT or accusation is None:
            return
        try:
            reply = await self.datagrams.request(
                member.address,
                MemberPing(self._piggyback((accusation,)), self._state_piggyback()),
                node_id=target,
                attempt_timeout=self.settings.probe_timeout / 2,
                retries=1,
            )
        except (PeerTimeout, RemoteProtocolError):
            self.stats["last_calls_unanswered"] += 1
            return
        if isinstance(reply.message, MemberAck):
            self._hear_message(reply.message)
            after = self._table().get(target)
            spared = after is None or after.state is not State.SUSPECT
            self.stats["last_calls_spared" if spared else "last_calls_unrefuted"] += 1
            self._wake()

    def _acked(self, ack: MemberAck, sender: NodeId, seq: int) -> None:
        """An ack for our `seq` arrived from `sender` (the target, or a relay we asked)."""
        self._hear_message(ack)
        self._execute(self.prober.on_ack(sender, seq, trio.current_time()))
        self._wake()

    async def _stream_ping(self, target: NodeId, seq: int) -> None:
        """The direct probe failed: ping over a secure stream too, alongside the relays."""
        member = self._table().get(target)
        if member is None:
            return
        self.stats["stream_pings"] += 1
        try:
            with trio.fail_after(self._period()):
                stream = await self.streams.open(member.address, PING_PROTOCOL, node_id=target)
                async with stream:
                    await stream.send(
                        envelope.encode(MemberPing(self._piggyback(), self._state_piggyback()))
                    )
                    ack = await self._receive(stream, MemberAck)
        except ConnectionRefusedError:
            # Nothing listens there: a crashed process, not a lost packet.
            self.stats["stream_pings_refused"] += 1
            self._execute(self.prober.on_refused(target, seq))
            self._wake()
            return
        except _STREAM_FAILURES:
            return
        self.stats["stream_pings_acked"] += 1
        self._acked(ack, target, seq)

    async def _serve_stream_ping(self, stream: SecureStream) -> None:
        with trio.move_on_after(SYNC_TIMEOUT):
            ping = await self._receive(stream, MemberPing)
            self._hear_message(ping)
            ack = MemberAck(self._piggyback(self._rebuttal(ping)), self._state_piggyback())
            await stream.send(envelope.encode(ack))

    async def _send_ping_req(self, relay: NodeId, target: NodeId, seq: int) -> None:
        table = self._table()
        relay_member, target_member = table.get(relay), table.get(target)
        if relay_member is None or target_member is None:
            return
        ip = packed_ip(target_member.address.host)
        if ip is None:
            return
        request = MemberPingReq(
            target.raw, ip, target_member.address.port, self._piggyback(), self._state_piggyback()
        )
        try:
            reply = await self.datagrams.request(
                relay_member.address,
                request,
                node_id=relay,
                attempt_timeout=self._period(),
                retries=0,
            )
        except (PeerTimeout, RemoteProtocolError):
            return
        if isinstance(reply.message, MemberAck):
            self._acked(reply.message, relay, seq)
        elif isinstance(reply.message, MemberNack):
            self.prober.on_nack(relay, seq)

    async def _gossip_loop(self) -> None:
        """While news is queued, one round to `gossip_nodes` members every `gossip_interval`.
        News after a quiet spell goes out at once, and urgent news (a death, a leave, our own
        claims, such as a refutation) does not wait for the tick either, though rounds stay at
        least a fifth of the interval apart: each hop of a verdict costs a network delay, not
        also the wait for the next tick, which is what sets how long after the first member
        declares a death the last one knows."""
        table = self._table()
        interval = self.settings.gossip_interval
        last_round = -math.inf
        while True:
            if not (self._gossip or self._state_gossip) or self._left:
                self._news = trio.Event()
                await self._news.wait()
                continue
            with trio.move_on_at(last_round + interval):
                await self._urgent.wait()
                await trio.sleep_until(last_round + interval / URGENT_SPACING)
            self._urgent = trio.Event()
            if not (self._gossip or self._state_gossip) or self._left:
                continue
            last_round = trio.current_time()
            live = list(table.others_live)
            for node_id in self._rng.sample(live, min(self.settings.gossip_nodes, len(live))):
                member = table.get(node_id)
                claims, state = self._piggyback(), self._state_piggyback()
                if member is None or not (claims or state):
                    break
                self.stats["gossip_sent"] += 1
                message = MemberGossip(claims, state)
                await self.datagrams.send(member.address, message, node_id=node_id)

    async def _on_gossip(self, inbound: Inbound) -> None:
        message = inbound.message
        assert isinstance(message, MemberGossip)
        self._hear_message(message)

    async def _on_ping(self, inbound: Inbound) -> Message:
        message = inbound.message
        assert isinstance(message, MemberPing)
        self._hear_message(message)
        return MemberAck(self._piggyback(self._rebuttal(message)), self._state_piggyback())

    def _rebuttal(self, message: MemberPing) -> tuple[SignedClaim, ...]:
        """Our current alive claim, if `message` accuses us (Lifeguard's buddy system): a
        fresh accusation was just refuted, and an old one means its sender missed the
        refutation, which gossip may no longer carry."""
        own = self._alive.get(self.node_id)
        raw = self.node_id.raw
        accused = any(
            c.subject == raw and c.state in (State.SUSPECT, State.DEAD) for c in message.claims
        )
        if own is None or not accused:
            return ()
        self.stats["rebuttals"] += 1
        return (own,)

    async def _on_ping_req(self, inbound: Inbound) -> Message:
        message = inbound.message
        assert isinstance(message, MemberPingReq)
        self._hear_message(message)
        if len(message.ip) not in (4, 16):
            raise DecodeError("a ping-req's IP address is 4 or 16 bytes")
        target = NodeId(message.target)
        address = Address(ip_text(message.ip), message.port)
        self._relay_keys = (self._relay_keys + 1) & 0xFFFFFFFF
        key = (inbound.sender, self._relay_keys)
        actions = self.prober.on_ping_req(inbound.sender, target, key[1], trio.current_time())
        if not actions:
            raise RemoteProtocolError("ping-req refused")
        waiter: list[Any] = [trio.Event(), False]
        self._relay_waiters[key] = waiter
        try:
            assert self._nursery is not None
            for action in actions:
                if isinstance(action, SendPing):
                    self._nursery.start_soon(self._send_ping, action.target, action.seq, address)
            self._wake()  # the loop must wake for the nack deadline
            with trio.move_on_after(self._period()):
                await waiter[0].wait()
        finally:
            del self._relay_waiters[key]
        if waiter[1]:
            return MemberAck(self._piggyback(), self._state_piggyback())
        return MemberNack()

    # -- push-pull -----------------------------------------------------------------------------

    async def _push_pull_loop(self) -> None:
        table = self._table()
        delay = JOIN_RETRY_FIRST
        while not self._left:
            if not table.others_live:
                if await self.join():
                    delay = JOIN_RETRY_FIRST
                    continue
                await trio.sleep(delay)
                delay = min(delay * 2, self.settings.push_pull_interval)
                continue
            partners: list[Seed] = []
            live = list(table.others_live)
            partner = table.get(self._rng.choice(live))
            if partner is not None:
                partners.append(Seed(partner.address, partner.node_id))
            outsider = self._pick_outsider()
            if outsider is not None:
                partners.append(outsider)
            async with trio.open_nursery() as nursery:
                for seed in partners:
                    nursery.start_soon(self.sync_with, seed)
            jitter = self._rng.uniform(0.9, 1.1)
            await trio.sleep(self.settings.push_pull_interval * jitter)

    def _pick_outsider(self) -> Seed | None:
        """A node we believe dead, or a seed we do not count as a member: after a partition
        heals, this is how the two sides find each other again (memberlist's isolated nodes
        never do)."""
        table = self._table()
        candidates = [
            Seed(m.address, m.node_id)
            for m in table.members()
            if m.state is State.DEAD and m.node_id != self.node_id
        ]
        candidates += [
            s for s in self._own_seeds() if s.node_id is None or s.node_id not in table.others_live
        ]
        return self._rng.choice(candidates) if candidates else None

    def _own_seeds(self) -> list[Seed]:
        """The seeds, less any that is this node."""
        own = self._table().get(self.node_id)
        return [
            s
            for s in self._seeds()
            if s.node_id != self.node_id and (own is None or s.address != own.address)
        ]

    async def join(self, seeds: Sequence[Seed] | None = None) -> bool:
        """Push-pull with up to :data:`JOIN_SEEDS` seeds (default: this node's seeds, then the
        members believed dead); True if one of them answered."""
        table = self._table()
        if seeds is None:
            seeds = self._own_seeds()
            if not seeds:
                seeds = [
                    Seed(m.address, m.node_id)
                    for m in table.members()
                    if m.state is State.DEAD and m.node_id != self.node_id
                ]
        chosen = self._rng.sample(list(seeds), min(JOIN_SEEDS, len(seeds)))
        results: list[bool] = []

        async def attempt(seed: Seed) -> None:
            results.append(await self.sync_with(seed))

        async with trio.open_nursery() as nursery:
            for seed in chosen:
                nursery.start_soon(attempt, seed)
        return any(results)

    async def sync_with(self, seed: Seed) -> bool:
        """One push-pull exchange with the node at `seed`; False if it failed."""
        try:
            with trio.fail_after(SYNC_TIMEOUT):
                stream = await self.streams.open(seed.address, SYNC_PROTOCOL, node_id=seed.node_id)
                async with stream:
                    await self._sync(stream, initiator=True)
        except _STREAM_FAILURES as exc:
            self.stats["sync_failed"] += 1
            log.debug("push-pull with %s failed: %s", seed.address, exc)
            return False
        except Exception:
            # A bug in one exchange must not take the node down (as for datagram handlers).
            self.stats["sync_error"] += 1
            log.exception("push-pull with %s failed", seed.address)
            return False
        self.stats["sync_done"] += 1
        return True

    async def _serve_sync(self, stream: SecureStream) -> None:
        with trio.move_on_after(SYNC_TIMEOUT):
            await self._sync(stream, initiator=False)

    def _beliefs(self) -> Iterator[tuple[NodeId, int, State]]:
        for member in list(self._table().members()):
            state = member.state
            if member.node_id == self.node_id and self._left:
                state = State.LEFT
            yield member.node_id, member.incarnation, state

    async def _sync(self, stream: SecureStream, *, initiator: bool) -> None:
        """Digests first, then the claims of the differing buckets (module docstring)."""
        table = self._table()
        buckets = bucket_digests(self._beliefs())
        state_root = state_digest(self.state.entries())
        ours = MemberSyncDigest(root_digest(buckets), len(table), state_root)
        theirs = await self._exchange(stream, ours, MemberSyncDigest, initiator=initiator)
        joining = not table.others_live
        if theirs.state_root != state_root:
            await self._sync_state(stream, initiator=initiator, gossip=not joining)
        if theirs.root == ours.root:
            self.stats["sync_equal"] += 1
            return
        their_buckets = await self._exchange(
            stream, MemberSyncBuckets(buckets), MemberSyncBuckets, initiator=initiator
        )
        differing = differing_buckets(buckets, their_buckets.buckets)
        if initiator:
            await self._send_claims(stream, differing)
            received = await self._receive_claims(stream)
        else:
            received = await self._receive_claims(stream)
            await self._send_claims(stream, differing)
        self._merge(received, gossip=not joining)

    async def _sync_state(self, stream: SecureStream, *, initiator: bool, gossip: bool) -> None:
        """Both sides send every cluster-state entry they hold (at most MAX_ENTRIES), the
        initiator first; each merges what it receives."""
        if initiator:
            await self._send_state(stream)
            received = await self._receive_state(stream)
        else:
            received = await self._receive_state(stream)
            await self._send_state(stream)
        for entry in received:
            self.hear_state(entry, gossip=gossip)

    async def _send_state(self, stream: SecureStream) -> None:
        entries = list(self.state.entries())
        for start in range(0, len(entries), SYNC_STATE_BATCH):
            batch = tuple(entries[start : start + SYNC_STATE_BATCH])
            await stream.send(envelope.encode(MemberSyncState(batch, False)))
        await stream.send(envelope.encode(MemberSyncState((), True)))

    async def _receive_state(self, stream: SecureStream) -> list[StateEntry]:
        received: list[StateEntry] = []
        while True:
            message = await self._receive(stream, MemberSyncState)
            received.extend(message.entries)
            if len(received) > self.state.max_entries:
                self.stats["sync_too_large"] += 1
                raise RemoteProtocolError("push-pull cluster state of more entries than allowed")
            if message.last:
                return received

    async def _exchange(
        self, stream: SecureStream, ours: Message, kind: type[M], *, initiator: bool
    ) -> M:
        if initiator:
            await stream.send(envelope.encode(ours))
            return await self._receive(stream, kind)
        theirs = await self._receive(stream, kind)
        await stream.send(envelope.encode(ours))
        return theirs

    @staticmethod
    async def _receive(stream: SecureStream, kind: type[M]) -> M:
        message = envelope.decode(await stream.receive(), FRAME_LIMITS).message
        if not isinstance(message, kind):
            raise DecodeError(f"push-pull expected {kind.NAME}, got {message.NAME}")
        return message

    async def _send_claims(self, stream: SecureStream, buckets: set[int]) -> None:
        batch: list[SignedClaim] = []
        # A copy: the table changes while we wait for the stream (gossip keeps arriving).
        for member in list(self._table().members()):
            if bucket_of(member.node_id) not in buckets:
                continue
            for claim in (self._alive.get(member.node_id), self._overriding.get(member.node_id)):
                if claim is None:
                    continue
                batch.append(claim)
                if len(batch) == SYNC_BATCH:
                    await stream.send(envelope.encode(MemberSyncClaims(tuple(batch), False)))
                    batch = []
        await stream.send(envelope.encode(MemberSyncClaims(tuple(batch), True)))

    async def _receive_claims(self, stream: SecureStream) -> list[SignedClaim]:
        limit = 2 * self.settings.max_members + 2
        received: list[SignedClaim] = []
        while True:
            message = await self._receive(stream, MemberSyncClaims)
            received.extend(message.claims)
            if len(received) > limit:
                self.stats["sync_too_large"] += 1
                raise RemoteProtocolError(f"push-pull state of more than {limit} claims")
            if message.last:
                return received

    def _merge(self, received: list[SignedClaim], *, gossip: bool) -> None:
        """Hear pushed claims member by member, skipping tombstones we do not hold (module
        docstring: push-pull never revives the dead)."""
        table = self._table()
        by_member: dict[bytes, list[tuple[tuple[int, int], SignedClaim]]] = {}
        for signed in received:
            by_member.setdefault(signed.subject, []).append(
                ((signed.incarnation, signed.state), signed)
            )
        for subject, claims in by_member.items():
            claims.sort(key=lambda pair: pair[0])
            best_state = claims[-1][0][1]
            try:
                known = NodeId(subject) in table
            except ValueError:
                self.stats["claims_malformed"] += len(claims)
                continue
            if not known and best_state >= State.DEAD:
                self.stats["sync_tombstones_skipped"] += 1
                continue
            for _, signed in claims:
                self.hear(signed, gossip=gossip)

    # -- leaving, tags, queries ----------------------------------------------------------------

    async def leave(self) -> int:
        """Leave gracefully: stop probing, gossip our signed ``left`` claim and tell up to
        :data:`LEAVE_FANOUT` live members directly. Returns how many acknowledged it."""
        table = self._table()
        claim = table.leave(trio.current_time())
        self._left = True
        self._announce(claim)
        signed = self._overriding[self.node_id]
        live = list(table.others_live)
        told = self._rng.sample(live, min(LEAVE_FANOUT, len(live)))
        acked = 0

        async def tell(node_id: NodeId) -> None:
            nonlocal acked
            member = table.get(node_id)
            if member is None:
                return
            try:
                await self.datagrams.request(
                    member.address,
                    MemberPing(self._piggyback((signed,)), self._state_piggyback()),
                    node_id=node_id,
                    attempt_timeout=LEAVE_TIMEOUT / 3,
                    retries=2,
                )
            except (PeerTimeout, RemoteProtocolError):
                return
            acked += 1

        async with trio.open_nursery() as nursery:
            for node_id in told:
                nursery.start_soon(tell, node_id)
        log.info("left the network: %d of %d members told acknowledged", acked, len(told))
        return acked

    def set_tags(self, tags: dict[str, str]) -> None:
        """Replace this node's tags: a new incarnation, gossiped to every member.

        Raises:
            ValueError: The tags do not fit a claim (see plexinode.membership.claims).
        """
        table = self._table()
        sign_claim(self.identity, dataclasses.replace(table.own_claim(), tags=dict(tags)))
        self._announce(table.update_self(trio.current_time(), tags=tags))
        self._tags = dict(tags)
        self._persist_incarnation()

    @property
    def tags(self) -> dict[str, str]:
        """This node's tags."""
        return dict(self._tags)

    def seeds(self) -> list[Seed]:
        """The nodes this node joins through (itself excluded)."""
        return self._own_seeds()

    def members(self) -> list[MemberView]:
        """Every member we know of (tombstones included), ourselves first."""
        if self.table is None:
            return []
        views = list(self.table.members())
        views.sort(key=lambda m: (m.node_id != self.node_id, m.state, str(m.node_id)))
        return views

    def state_of(self, member: MemberView) -> State:
        """The state to show for a member (our own is ``left`` once we left)."""
        return State.LEFT if member.node_id == self.node_id and self._left else member.state

    def counts(self) -> dict[str, int]:
        """Members by state, ourselves included (``status``)."""
        counts = dict.fromkeys(("alive", "suspect", "dead", "left"), 0)
        for member in self.members():
            counts[self.state_of(member).name.lower()] += 1
        if self.table is None:
            counts["alive"] = 1
        return counts

    def describe(self, member: MemberView) -> dict[str, Any]:
        """A member as ``plexinode members --json`` prints it."""
        return {
            "node_id": str(member.node_id),
            "address": str(member.address),
            "state": self.state_of(member).name.lower(),
            "incarnation": member.incarnation,
            "tags": dict(member.tags),
            "self": member.node_id == self.node_id,
        }

    def describe_entry(self, entry: StateEntry) -> dict[str, Any]:
        """A cluster-state entry as ``plexinode state list --json`` prints it."""
        return {
            "key": entry.key,
            "value": None if entry.deleted else entry.value.decode(errors="replace"),
            "deleted": entry.deleted,
            "written_at": entry.wall_ms / 1000,
            "writer": str(NodeId.from_public_key(entry.writer)),
        }

    def summary(self) -> dict[str, Any]:
        """Counters for ``status``."""
        return {
            "claims": dict(self.stats),
            "probes": dict(self.prober.stats),
            "awareness": self.prober.awareness,
            "gossip_queued": len(self._gossip),
            "state_entries": len(self.state),
            "state": dict(self.state.stats),
        }


__all__ = [
    "Died",
    "Event",
    "Joined",
    "Left",
    "MembershipService",
    "Reaped",
    "Seed",
    "Suspected",
    "Updated",
]
