"""The membership service: SWIM with Lifeguard for the nodes of one network, and its replicated
cluster state. This module holds the life cycle and the service's public face; the work is done
by sans-I/O cores and by jobs that feed them (each job a module, imported one way)::

    MembershipService ─┬─ Probing  (probing.py)   probe loop, pings, relays, last calls
       life cycle,     ├─ Syncing  (syncing.py)   push-pull loop, joining, serving exchanges
       hearing claims, └─ Gossip   (gossiping.py) gossip queues, piggybacks, the gossip loop
       our own claims,
       cluster state,   cores: MemberTable (members.py), Prober (probe.py),
       events, views           Admission (admission.py), Evidence (evidence.py),
                               PushPull (sync.py), Replica (replica.py), views (views.py)

**Hearing a claim** (:meth:`MembershipService.hear`): the :class:`~.admission.Admission` core
decides (drop it, with a counter, or apply it to the table); the service then carries out what
follows: it gossips the claim on, broadcasts a refutation if the claim accused us, probes a
suspect out of turn when asked to confirm, wakes the probe loop and publishes the events.

**The node's own claims** (:meth:`MembershipService._announce`) are signed, kept as evidence and
gossiped: its alive claims, its accusations and verdicts, its leave.

**The node's own incarnation** starts one above the last one it used
(:mod:`plexinode.membership.incarnation`); each refutation, address change and tag change is
written too.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import trio

from plexinode.membership import views
from plexinode.membership.admission import Admission, Drop
from plexinode.membership.beliefs import (
    Claim,
    Died,
    Event,
    Joined,
    Left,
    MemberView,
    Reaped,
    State,
)
from plexinode.membership.claims import SignedClaim, sign_claim
from plexinode.membership.departing import tell_members
from plexinode.membership.evidence import Evidence
from plexinode.membership.gossiping import Gossip
from plexinode.membership.incarnation import Incarnations
from plexinode.membership.members import MemberTable
from plexinode.membership.messages import (
    PING_PROTOCOL,
    SYNC_PROTOCOL,
    MemberGossip,
    MemberPing,
    MemberPingReq,
)
from plexinode.membership.probe import Prober
from plexinode.membership.probing import Carrier, Probing
from plexinode.membership.replica import Guard, Heard, Replica
from plexinode.membership.settings import MembershipSettings
from plexinode.membership.state import StateEntry, StateMap
from plexinode.membership.subscribers import EVENT_BUFFER, Subscribers
from plexinode.membership.syncing import Seed, Syncing
from plexinode.membership.tasks import Tasks
from plexinode.net.address import Address
from plexinode.net.datagram import DatagramService, Inbound
from plexinode.net.streams import StreamService
from plexinode.storage import Database

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Running:
    """What exists once this node knows its address: the table, and what works on it."""

    table: MemberTable
    admission: Admission
    probing: Probing
    syncing: Syncing


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
        self._rng = rng or random.Random()
        self._tags = dict(tags or {})
        self._id_difficulty = id_difficulty
        self._wall_clock = wall_clock
        #: The replicated cluster state (module plexinode.membership.state).
        self.state = StateMap()
        self._replica = Replica(self.identity, self.state, self._wall_ms)
        #: The failure detector (its counters and local health appear in ``status``).
        self.prober = Prober(
            self.node_id,
            0.0,
            self._rng,
            probe_interval=settings.probe_interval,
            probe_timeout=settings.probe_timeout,
            indirect_probes=settings.indirect_probes,
            max_awareness=settings.max_awareness,
        )
        #: The signed claims behind our beliefs (read-only for everyone but this service).
        self.evidence = Evidence()
        #: What happened to claims, probes' relays and push-pulls, for status and tests.
        self.stats: collections.Counter[str] = collections.Counter()
        #: The claims and cluster-state entries waiting to be gossiped.
        self.gossip = Gossip(
            datagrams,
            settings,
            self._rng,
            self.stats,
            live=self._live,
            left=self._departing,
            slowdown=self._slowdown,
        )
        self._subscribers = Subscribers(self.stats)
        self._incarnations = Incarnations(db)
        #: Starts tasks in the service's nursery, and drops requests once it is closing.
        self._tasks = Tasks(self.stats)
        self._running: _Running | None = None
        self._left = False
        self._stopping = False
        #: Set once this node knows its address and takes part (probes, answers, gossips).
        self.ready = trio.Event()

    def _slowdown(self) -> int:
        """Lifeguard's local health multiplier: gossip slows down with probes."""
        return self.prober.multiplier

    # -- life cycle ----------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Take part in membership until cancelled."""
        async with trio.open_nursery() as nursery:
            self._tasks.open(nursery)
            try:
                task_status.started()
                address = self._advertise()
                while address is None:
                    await trio.sleep(self.settings.probe_interval)
                    address = self._advertise()
                incarnation = await self._incarnations.first()
                table = MemberTable(
                    self.node_id,
                    address,
                    trio.current_time(),
                    incarnation=incarnation,
                    tags=self._tags,
                    probe_interval=self.settings.probe_interval,
                    suspicion_mult=self.settings.suspicion_mult,
                    suspicion_max_mult=self.settings.suspicion_max_mult,
                    retention=self.settings.retention,
                    restart_grace=self.settings.restart_grace,
                )
                running = self._running = self._start(table)
                self._announce(table.own_claim())
                self.datagrams.on(MemberPing, running.probing.on_ping)
                self.datagrams.on(MemberPingReq, running.probing.on_ping_req)
                self.datagrams.on(MemberGossip, self._on_gossip)
                self.streams.on(SYNC_PROTOCOL, running.syncing.serve)
                self.streams.on(PING_PROTOCOL, running.probing.serve_stream_ping)
                log.info("membership: %s at %s, incarnation %d", self.node_id, address, incarnation)
                self.ready.set()
                nursery.start_soon(running.probing.run)
                nursery.start_soon(running.syncing.run)
                if self.settings.gossip_nodes:
                    nursery.start_soon(self.gossip.run, table)
                await trio.sleep_forever()
            finally:
                self._tasks.close()  # requests from now on are dropped and counted

    def _start(self, table: MemberTable) -> _Running:
        """The cores and jobs that work on `table`, wired to this service."""
        settings = self.settings
        admission = Admission(
            table,
            self.evidence,
            self._rng,
            probe_interval=settings.probe_interval,
            max_members=settings.max_members,
            id_difficulty=self._id_difficulty,
        )
        probing = Probing(
            self.datagrams,
            self.streams,
            settings,
            table=table,
            prober=self.prober,
            evidence=self.evidence,
            gossip=self.gossip,
            stats=self.stats,
            tasks=self._tasks,
            hear=self._hear_message,
            announce=self._announce,
            renew=self._renew,
            publish=self._publish,
            advertise=self._advertise,
            left=self._departing,
            wall_clock=self._wall_clock if settings.probe_order == "aligned" else None,
        )
        syncing = Syncing(
            self.streams,
            settings,
            table=table,
            evidence=self.evidence,
            state=self.state,
            rng=self._rng,
            stats=self.stats,
            seeds=self._seeds,
            hear=self.hear,
            hear_state=self.hear_state,
            left=self._departing,
            datagrams=self.datagrams,
        )
        return _Running(table, admission, probing, syncing)

    def _ready(self) -> _Running:
        if self._running is None:
            raise RuntimeError("membership is not ready")
        return self._running

    @property
    def table(self) -> MemberTable | None:
        """The member table, once this node knows its address (None before)."""
        return None if self._running is None else self._running.table

    @property
    def probing(self) -> Probing:
        """The failure-detection job (raises RuntimeError until ready)."""
        return self._ready().probing

    @property
    def syncing(self) -> Syncing:
        """The push-pull job (raises RuntimeError until ready)."""
        return self._ready().syncing

    def _live(self) -> int:
        table = self.table
        return table.live_count if table is not None else 1

    def _persist_incarnation(self) -> None:
        table = self.table
        if self._incarnations.db is not None and table is not None:
            self._tasks.start_soon(self._incarnations.save, table.incarnation)

    # -- events --------------------------------------------------------------------------------

    def subscribe(self, buffer: int = EVENT_BUFFER) -> trio.MemoryReceiveChannel[Event]:
        """A channel of membership events (joined, updated, suspected, died, left, stopped,
        reaped).

        The subscriber must keep reading: beyond `buffer` unread events, new ones are dropped
        for it (and counted in ``stats["events_dropped"]``). Closing the channel unsubscribes.
        """
        return self._subscribers.subscribe(buffer)

    def _publish(self, events: Iterable[Event]) -> None:
        for event in events:
            member = event.member
            level = logging.INFO if isinstance(event, Joined | Died | Left) else logging.DEBUG
            log.log(level, "member %s %s", member.node_id.short(), type(event).__name__.lower())
            if isinstance(event, Reaped):
                self.evidence.forget(member.node_id)
            self._subscribers.publish(event)

    # -- claims --------------------------------------------------------------------------------

    def _announce(self, claim: Claim) -> None:
        """Sign one of our own claims (alive, left, or an accusation we make), keep it and
        gossip it (at once, but for a suspicion)."""
        signed = sign_claim(self.identity, claim)
        self.evidence.keep(claim, signed)
        self.gossip.queue_claim(claim.node_id, signed, urgent=claim.state is not State.SUSPECT)

    def _renew(self, claim: Claim) -> None:
        """Announce a new alive claim of ours, and keep its incarnation."""
        self._announce(claim)
        self._persist_incarnation()

    def hear(self, signed: SignedClaim, *, gossip: bool = True) -> bool:
        """Consider one claim from the network; True if it changed or confirmed a belief.

        With `gossip` false, an accepted claim is not passed on: a node that joins learns the
        whole membership from one push-pull, and all of it is news only to itself.
        """
        running = self._ready()
        verdict = running.admission.hear(signed, trio.current_time())
        if isinstance(verdict, Drop):
            self.stats[verdict.value] += 1
            return False
        claim, outcome = verdict.claim, verdict.outcome
        if verdict.made_room is not None:
            self.stats["claims_made_room"] += 1
            self._publish([verdict.made_room])
        if outcome.refutation is not None:
            self.stats["refuted"] += 1
            self.prober.refuted()
            self._renew(outcome.refutation)
            log.info(
                "refuted %s about us with incarnation %d",
                claim.state.name.lower(),
                outcome.refutation.incarnation,
            )
        if outcome.accepted:
            self.stats["claims_accepted"] += 1
            if verdict.confirm:
                self.stats["confirm_probes"] += 1
                self.prober.hurry(claim.node_id)
            if gossip:
                self.gossip.queue_claim(claim.node_id, signed, urgent=verdict.urgent)
            running.probing.wake()
        self._publish(outcome.events)
        return outcome.accepted

    def _hear_message(self, message: Carrier) -> None:
        for claim in message.claims:
            self.hear(claim)
        for entry in message.state:
            self.hear_state(entry)

    async def _on_gossip(self, inbound: Inbound) -> None:
        message = inbound.message
        assert isinstance(message, MemberGossip)
        if self._tasks.drop_if_stopping():
            return
        self._hear_message(message)

    # -- cluster state -------------------------------------------------------------------------

    def _wall_ms(self) -> int:
        return int(self._wall_clock() * 1000)

    @property
    def state_guard(self) -> Guard | None:
        """Decides whether an entry heard from the network may be merged: the reason to refuse
        it, or None (set by the services that own part of the key space; the keyring service
        guards ``net.``). Not applied to this node's own writes."""
        return self._replica.guard

    @state_guard.setter
    def state_guard(self, guard: Guard | None) -> None:
        self._replica.guard = guard

    def set_state(self, key: str, value: bytes | None) -> StateEntry:
        """Write `value` under `key` in the replicated cluster state (None deletes the key);
        the write is signed by this node and gossiped to every member.

        Raises:
            ValueError: A malformed key, an oversized value, or a full map.
        """
        entry = self._replica.write(key, value)
        self.gossip.queue_state(key, entry)
        return entry

    def hear_state(self, entry: StateEntry, *, gossip: bool = True) -> bool:
        """Consider one cluster-state entry from the network; True if it was merged."""
        heard = self._replica.hear(entry)
        if heard.value is not None:
            self.stats[heard.value] += 1
        if heard is not Heard.ACCEPTED:
            return False
        if gossip:
            self.gossip.queue_state(entry.key, entry)
        return True

    # -- joining, leaving, tags ----------------------------------------------------------------

    def _departing(self) -> bool:
        """This node left or is stopping: it probes, gossips and syncs no more."""
        return self._left or self._stopping

    async def join(self, seeds: Sequence[Seed] | None = None) -> bool:
        """Push-pull with up to three seeds (default: this node's seeds, then the members
        believed dead); True if one of them answered."""
        return await self._ready().syncing.join(seeds)

    def seeds(self) -> list[Seed]:
        """The nodes this node joins through (itself excluded)."""
        return self._ready().syncing.seeds()

    async def leave(self) -> int:
        """Leave gracefully: stop probing, gossip our signed ``left`` claim and tell up to
        :data:`LEAVE_FANOUT` live members directly. Returns how many acknowledged it."""
        table = self._ready().table
        self._left = True
        return await self._depart(table.leave(trio.current_time()), "left the network")

    async def announce_stop(self) -> int:
        """Before a planned stop (the node means to come back): stop probing, gossip our
        signed ``stopped`` claim and tell up to :data:`LEAVE_FANOUT` live members directly, so
        that members list this node ``stopped``, not dead. Returns how many acknowledged it
        (0 if it already left or is not running)."""
        if self._left or self._stopping or self._running is None:
            return 0
        self._stopping = True
        table = self._running.table
        return await self._depart(table.stop(trio.current_time()), "announced a planned stop")

    async def _depart(self, claim: Claim, what: str) -> int:
        table = self._ready().table
        self._announce(claim)
        signed = self.evidence.overriding(self.node_id)
        assert signed is not None  # just kept
        ping = MemberPing(self.gossip.piggyback((signed,)), self.gossip.state_piggyback())
        acked, told = await tell_members(self.datagrams, table, self._rng, ping)
        log.info("%s: %d of %d members told acknowledged", what, acked, told)
        return acked

    def set_tags(self, tags: dict[str, str]) -> None:
        """Replace this node's tags: a new incarnation, gossiped to every member.

        Raises:
            ValueError: The tags do not fit a claim (see plexinode.membership.claims).
        """
        table = self._ready().table
        sign_claim(self.identity, dataclasses.replace(table.own_claim(), tags=dict(tags)))
        self._tags = dict(tags)
        self._renew(table.update_self(trio.current_time(), tags=tags))

    @property
    def tags(self) -> dict[str, str]:
        """This node's tags."""
        return dict(self._tags)

    # -- views ---------------------------------------------------------------------------------

    def members(self) -> list[MemberView]:
        """Every member we know of (tombstones included), ourselves first."""
        table = self.table
        return [] if table is None else views.ordered(table.members(), self.node_id)

    def state_of(self, member: MemberView) -> State:
        """The state to show for a member (our own is ``left`` once we left)."""
        return views.shown_state(member, self.node_id, self._left)

    def counts(self) -> dict[str, int]:
        """Members by state, ourselves included (``status``)."""
        members = None if self.table is None else self.members()
        return views.counts(members, self.node_id, self._left)

    def describe(self, member: MemberView) -> dict[str, Any]:
        """A member as ``plexinode members --json`` prints it."""
        return views.describe(member, self.node_id, self._left)

    def describe_entry(self, entry: StateEntry) -> dict[str, Any]:
        """A cluster-state entry as ``plexinode state list --json`` prints it."""
        return views.describe_entry(entry)

    def summary(self) -> dict[str, Any]:
        """Counters for ``status``."""
        return views.summary(self.stats, self.prober, len(self.gossip.claims), self.state)


__all__ = ["MembershipService", "Seed"]
