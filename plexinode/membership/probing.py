"""Failure detection: the trio driver of the prober, and the member table's clock.

The :class:`~plexinode.membership.probe.Prober` decides whom to probe and when a probe failed;
the :class:`~plexinode.membership.members.MemberTable` decides when a suspicion becomes a
death. :class:`Probing` feeds them the clock and the network and carries out what they say::

    probe loop ── Prober.tick ──> member-ping / member-ping-req (datagrams, claims piggybacked)
               ├─ MemberTable.last_calls ──> one more ping to each suspect whose time ran out
               └─ MemberTable.expire ──> dead claims (gossiped), events (to subscribers)
    handlers   ── member-ping ──> claims heard, member-ack (with claims)
               ├─ member-ping-req ──> relayed ping (a live member's request, for a live member
               │                        at its known address: probe.relay_refusal), then the
               │                        target's ack or a nack
               └─ member-ping/1 stream ──> as a member-ping (the fallback of a failed probe)

When a direct probe gets no ack in time, the prober asks relays (``ping-req``), and this driver
also pings the target over a secure stream, so that a member whose inbound datagrams are
blocked is not declared dead while its streams work; a refused connection fails the probe at
once (nothing listens there any more).

A ping to a member we suspect carries our accusation first (Lifeguard's buddy system), and a
ping that accuses us is answered with our current alive claim first (a rebuttal), so that a
suspicion can be refuted even when gossip no longer carries the accusation or the refutation.

The probe loop measures how late its timer wakes it and tells the prober (a starved event loop
is a sign of this node's own ill health: plexinode.membership.probe). It also checks, every
:data:`ADDRESS_CHECK_INTERVAL` seconds, that the address this node advertises is still the one
in its alive claim, and announces a new incarnation if not.
"""

from __future__ import annotations

import collections
import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final, TypeVar

import trio

from plexinode.errors import DecodeError, PeerTimeout, RemoteProtocolError
from plexinode.identity import NodeId
from plexinode.membership.beliefs import Claim, Event, State
from plexinode.membership.claims import SignedClaim
from plexinode.membership.evidence import Evidence
from plexinode.membership.gossiping import Gossip
from plexinode.membership.members import MemberTable
from plexinode.membership.messages import (
    PING_PROTOCOL,
    MemberAck,
    MemberGossip,
    MemberNack,
    MemberPing,
    MemberPingReq,
)
from plexinode.membership.probe import (
    Action,
    Prober,
    SendAck,
    SendNack,
    SendPing,
    SendPingReq,
    SuspectMember,
    relay_refusal,
)
from plexinode.membership.settings import MembershipSettings
from plexinode.membership.tasks import Tasks
from plexinode.net.address import Address, ip_text, packed_ip, parse_ip
from plexinode.net.datagram import DatagramService, Inbound
from plexinode.net.secure import SecureStream
from plexinode.net.streams import STREAM_FAILURES, StreamService
from plexinode.wire import envelope
from plexinode.wire.codec import FRAME_LIMITS
from plexinode.wire.schema import U64_MAX, Message

log = logging.getLogger(__name__)

M = TypeVar("M", bound=Message)

#: How often the advertised address is compared with the one in our alive claim, seconds.
ADDRESS_CHECK_INTERVAL: Final = 5.0
#: Recent pings whose target incarnation is remembered (a probe and its relayed pings take a
#: handful per period; older ones are long finished).
MAX_PINGS_REMEMBERED: Final = 256
#: A stream ping's ack must arrive within this, on the serving side.
STREAM_PING_TIMEOUT: Final = 10.0

#: A message that carries claims and cluster-state entries to hear.
Carrier = MemberPing | MemberAck | MemberPingReq | MemberGossip


@dataclass(slots=True)
class _RelayWaiter:
    """A relay request we serve, waiting for the prober's verdict on the ping we made."""

    answered: trio.Event = field(default_factory=trio.Event)
    acked: bool = False


class Probing:
    """Probes members, relays probes for others, and expires suspicions (module docstring).

    Args:
        datagrams: Pings, acks, relay requests.
        streams: The fallback stream ping.
        settings: Timing.
        table: The member table.
        prober: The failure detector's state machine.
        evidence: The signed claims behind the table (accusations to tell suspects, our own
            alive claim to rebut with).
        gossip: The claims and entries to piggyback.
        stats: The membership counters.
        tasks: Where pings, relays and last calls run (the service's nursery; requests are
            dropped once it is closing).
        hear: Hear the claims and entries a message carries.
        announce: Sign, keep and gossip a claim this node makes (a suspicion, a death).
        renew: Announce a new alive claim of ours and persist its incarnation.
        publish: Hand events to subscribers.
        advertise: This node's current address (None while unknown).
        left: Whether this node has left (it then probes no more).
        wall_clock: Unix time, for probes aligned on the wall clock's periods; None for the
            shuffled round robin.
    """

    def __init__(
        self,
        datagrams: DatagramService,
        streams: StreamService,
        settings: MembershipSettings,
        *,
        table: MemberTable,
        prober: Prober,
        evidence: Evidence,
        gossip: Gossip,
        stats: collections.Counter[str],
        tasks: Tasks,
        hear: Callable[[Carrier], None],
        announce: Callable[[Claim], None],
        renew: Callable[[Claim], None],
        publish: Callable[[Iterable[Event]], None],
        advertise: Callable[[], Address | None],
        left: Callable[[], bool],
        wall_clock: Callable[[], float] | None,
    ) -> None:
        self._datagrams = datagrams
        self._streams = streams
        self._settings = settings
        self._table = table
        self.prober = prober
        self._evidence = evidence
        self._gossip = gossip
        self._stats = stats
        self._tasks = tasks
        self._hear = hear
        self._announce = announce
        self._renew = renew
        self._publish = publish
        self._advertise = advertise
        self._left = left
        self._wall_clock = wall_clock
        self._node_id = table.own_id
        self._wakeup = trio.Event()
        self._relay_waiters: dict[tuple[NodeId, int], _RelayWaiter] = {}
        self._relay_keys = 0
        # The incarnation each recent ping (by sequence number) was sent to: a probe that fails
        # accuses that life only, never a newer one learned while it waited (a member back at
        # a new address would otherwise be suspected for silence at its old one).
        self._pinged: dict[int, int] = {}

    def wake(self) -> None:
        """Run the probe loop now (the table or the prober has something new)."""
        self._wakeup.set()

    def _period(self) -> float:
        return self.prober.probe_interval * self.prober.multiplier

    # -- the probe loop --------------------------------------------------------------------------

    async def run(self) -> None:
        """Probe, give last calls and declare the dead, until cancelled."""
        table = self._table
        next_address_check = trio.current_time() + ADDRESS_CHECK_INTERVAL
        while True:
            now = trio.current_time()
            if not self._left():
                wall = self._wall_clock() if self._wall_clock is not None else None
                self._execute(self.prober.tick(now, table.others_live, wall))
                if now >= next_address_check:
                    next_address_check = now + ADDRESS_CHECK_INTERVAL
                    self._check_address(now)
            for suspect in table.last_calls(now, self._settings.probe_timeout):
                self._stats["last_calls"] += 1
                self._tasks.start_soon(self._last_call, suspect)
            claims: list[Claim] = []
            events: list[Event] = []
            due = _or_never(table.next_deadline())
            if due <= now and self.prober.starved(now):
                # Our own loop lags: a suspect's silence may be our slowness. Verdicts wait
                # until we keep time again; members that do keep time declare the dead.
                self._stats["verdicts_deferred"] += 1
                due = self.prober.starved_until
            else:
                claims, events = table.expire(now)
                due = _or_never(table.next_deadline())
            for claim in claims:
                self._stats["declared_dead"] += 1
                self._announce(claim)
            self._publish(events)
            deadline = min(due, now + self._period())
            if not self._left():
                deadline = min(deadline, self.prober.next_deadline())
            slept = trio.current_time()
            with trio.move_on_at(deadline) as timer:
                await self._wakeup.wait()
            self._wakeup = trio.Event()
            if timer.cancelled_caught and not self._left():
                # How late the timer woke: a starved event loop is ill health (probe.py).
                woke = trio.current_time()
                self.prober.lagged(woke - max(deadline, slept), woke)

    def _check_address(self, now: float) -> None:
        address = self._advertise()
        own = self._table.get(self._node_id)
        if address is None or own is None or address == own.address:
            return
        log.info("membership: our address changed to %s", address)
        self._renew(self._table.update_self(now, address=address))

    def _execute(self, actions: Iterable[Action]) -> None:
        fallback: SendPingReq | None = None
        for action in actions:
            if isinstance(action, SendPing):
                self._remember_ping(action.target, action.seq)
                self._tasks.start_soon(self._send_ping, action.target, action.seq, None)
            elif isinstance(action, SendPingReq):
                fallback = action
                self._tasks.start_soon(self._send_ping_req, action.relay, action.target, action.seq)
            elif isinstance(action, SendAck | SendNack):
                waiter = self._relay_waiters.get((action.to, action.seq))
                if waiter is not None and not waiter.answered.is_set():
                    waiter.acked = isinstance(action, SendAck)
                    waiter.answered.set()
            elif isinstance(action, SuspectMember):
                self.suspect(action.target, self._pinged.pop(action.seq, None))
        if fallback is not None:
            self._tasks.start_soon(self._stream_ping, fallback.target, fallback.seq)

    def _remember_ping(self, target: NodeId, seq: int) -> None:
        member = self._table.get(target)
        if member is None:
            return
        self._pinged[seq] = member.incarnation
        while len(self._pinged) > MAX_PINGS_REMEMBERED:
            del self._pinged[next(iter(self._pinged))]  # the oldest (sequence numbers grow)

    def suspect(self, target: NodeId, pinged: int | None = None) -> None:
        """Our probe of `target` failed: suspect it (announce the suspicion and publish it).

        Args:
            target: The member probed.
            pinged: The incarnation the probe was sent to, if known: a member back in a newer
                life meanwhile is not suspected for the silence of the old one.
        """
        member = self._table.get(target)
        if member is None or member.state > State.SUSPECT:
            return
        if pinged is not None and pinged < member.incarnation:
            self._stats["suspicions_stale"] += 1  # it came back in a new life meanwhile
            return
        claim = Claim(target, member.incarnation, State.SUSPECT, accuser=self._node_id)
        outcome = self._table.apply(claim, trio.current_time())
        if outcome.accepted:
            self._announce(claim)
        self._publish(outcome.events)

    # -- probing others --------------------------------------------------------------------------

    async def _send_ping(self, target: NodeId, seq: int, address: Address | None) -> None:
        """Ping `target` (our probe, or one a relay request asked for, at its `address`)."""
        member = self._table.get(target)
        if address is None:
            if member is None:
                return
            address = member.address
        first: tuple[SignedClaim, ...] = ()
        accusation = self._evidence.overriding(target)
        if member is not None and member.state is State.SUSPECT and accusation is not None:
            first = (accusation,)  # Lifeguard's buddy system: tell the suspect directly
        try:
            reply = await self._datagrams.request(
                address,
                MemberPing(self._gossip.piggyback(first), self._gossip.state_piggyback()),
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
        member = self._table.get(target)
        accusation = self._evidence.overriding(target)
        if member is None or member.state is not State.SUSPECT or accusation is None:
            return
        try:
            reply = await self._datagrams.request(
                member.address,
                MemberPing(self._gossip.piggyback((accusation,)), self._gossip.state_piggyback()),
                node_id=target,
                attempt_timeout=self._settings.probe_timeout / 2,
                retries=1,
            )
        except (PeerTimeout, RemoteProtocolError):
            self._stats["last_calls_unanswered"] += 1
            return
        if isinstance(reply.message, MemberAck):
            self._hear(reply.message)
            after = self._table.get(target)
            spared = after is None or after.state is not State.SUSPECT
            self._stats["last_calls_spared" if spared else "last_calls_unrefuted"] += 1
            self.wake()

    def _acked(self, ack: MemberAck, sender: NodeId, seq: int) -> None:
        """An ack for our `seq` arrived from `sender` (the target, or a relay we asked)."""
        self._hear(ack)
        self._execute(self.prober.on_ack(sender, seq, trio.current_time()))
        self.wake()

    async def _stream_ping(self, target: NodeId, seq: int) -> None:
        """The direct probe failed: ping over a secure stream too, alongside the relays."""
        member = self._table.get(target)
        if member is None:
            return
        self._stats["stream_pings"] += 1
        try:
            with trio.fail_after(self._period()):
                stream = await self._streams.open(member.address, PING_PROTOCOL, node_id=target)
                async with stream:
                    ping = MemberPing(self._gossip.piggyback(), self._gossip.state_piggyback())
                    await stream.send(envelope.encode(ping))
                    ack = await _receive(stream, MemberAck)
        except ConnectionRefusedError:
            # Nothing listens there: a crashed process, not a lost packet.
            self._stats["stream_pings_refused"] += 1
            self._execute(self.prober.on_refused(target, seq))
            self.wake()
            return
        except STREAM_FAILURES:
            return
        self._stats["stream_pings_acked"] += 1
        self._acked(ack, target, seq)

    async def _send_ping_req(self, relay: NodeId, target: NodeId, seq: int) -> None:
        relay_member, target_member = self._table.get(relay), self._table.get(target)
        if relay_member is None or target_member is None:
            return
        ip = packed_ip(target_member.address.host)
        if ip is None:
            return
        request = MemberPingReq(
            target.raw,
            ip,
            target_member.address.port,
            self._gossip.piggyback(),
            self._gossip.state_piggyback(),
        )
        try:
            reply = await self._datagrams.request(
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

    # -- answering -------------------------------------------------------------------------------

    async def on_ping(self, inbound: Inbound) -> Message | None:
        """Serve a ``member-ping``: hear its claims, ack with ours (nothing while stopping)."""
        message = inbound.message
        assert isinstance(message, MemberPing)
        if self._tasks.drop_if_stopping():
            return None
        self._hear(message)
        room = self._datagrams.reply_room(inbound)
        if room is not None:
            return self._short_ack(self._rebuttal(message), room)
        return MemberAck(
            self._gossip.piggyback(self._rebuttal(message)), self._gossip.state_piggyback()
        )

    def _short_ack(self, first: tuple[SignedClaim, ...], room: int) -> MemberAck:
        """An ack for a source address not validated yet, within `room` envelope bytes (see
        plexinode.net.validation): no gossip, only our rebuttal if there is one and it fits.
        Such a source is a member we have not exchanged with yet, or a forged address."""
        self._stats["acks_shortened"] += 1
        ack = MemberAck(first, ())
        if first and len(envelope.encode(ack, U64_MAX)) > room:
            ack = MemberAck((), ())
        return ack

    async def serve_stream_ping(self, stream: SecureStream) -> None:
        """Serve a ``member-ping/1`` stream: one ping frame, one ack frame."""
        if self._tasks.drop_if_stopping():
            return
        with trio.move_on_after(STREAM_PING_TIMEOUT):
            ping = await _receive(stream, MemberPing)
            self._hear(ping)
            ack = MemberAck(
                self._gossip.piggyback(self._rebuttal(ping)), self._gossip.state_piggyback()
            )
            await stream.send(envelope.encode(ack))

    def _rebuttal(self, message: MemberPing) -> tuple[SignedClaim, ...]:
        """Our current alive claim, if `message` accuses us (Lifeguard's buddy system): a
        fresh accusation was just refuted, and an old one means its sender missed the
        refutation, which gossip may no longer carry."""
        own = self._evidence.alive(self._node_id)
        raw = self._node_id.raw
        accused = any(
            c.subject == raw and c.state in (State.SUSPECT, State.DEAD) for c in message.claims
        )
        if own is None or not accused:
            return ()
        self._stats["rebuttals"] += 1
        return (own,)

    async def on_ping_req(self, inbound: Inbound) -> Message | None:
        """Serve a ``member-ping-req``: ping the target for the requester, answer with the
        target's ack relayed, or a nack if it did not answer in time (nothing while
        stopping). Only from a live member, for a live member at its known address (see
        :func:`~plexinode.membership.probe.relay_refusal`); anything else is refused."""
        message = inbound.message
        assert isinstance(message, MemberPingReq)
        if self._tasks.drop_if_stopping():  # its ping could not be started
            return None
        self._hear(message)
        if len(message.ip) not in (4, 16):
            raise DecodeError("a ping-req's IP address is 4 or 16 bytes")
        target = NodeId(message.target)
        address = Address(ip_text(message.ip), message.port)
        live = self._table.others_live
        known = self._table.get(target) if target in live else None
        own = self._advertise()
        own_ip = parse_ip(own.host) if own is not None else None
        refusal = relay_refusal(
            requester_live=inbound.sender in live,
            target_address=known.address if known is not None else None,
            requested=address,
            own_on_loopback=own_ip is not None and own_ip.is_loopback,
        )
        if refusal is not None:
            self._stats["ping_req_refused"] += 1
            raise RemoteProtocolError(f"ping-req refused: {refusal}")
        self._relay_keys = (self._relay_keys + 1) & 0xFFFFFFFF
        key = (inbound.sender, self._relay_keys)
        actions = self.prober.on_ping_req(inbound.sender, target, key[1], trio.current_time())
        if not actions:
            raise RemoteProtocolError("ping-req refused")
        waiter = _RelayWaiter()
        self._relay_waiters[key] = waiter
        try:
            for action in actions:
                if isinstance(action, SendPing):
                    self._tasks.start_soon(self._send_ping, action.target, action.seq, address)
            self.wake()  # the loop must wake for the nack deadline
            with trio.move_on_after(self._period()):
                await waiter.answered.wait()
        finally:
            del self._relay_waiters[key]
        if not waiter.acked:
            return MemberNack()
        room = self._datagrams.reply_room(inbound)
        if room is not None:
            return self._short_ack((), room)
        return MemberAck(self._gossip.piggyback(), self._gossip.state_piggyback())


def _or_never(deadline: float | None) -> float:
    return math.inf if deadline is None else deadline


async def _receive(stream: SecureStream, kind: type[M]) -> M:
    message = envelope.decode(await stream.receive(), FRAME_LIMITS).message
    if not isinstance(message, kind):
        raise DecodeError(f"{PING_PROTOCOL} expected {kind.NAME}, got {message.NAME}")
    return message
