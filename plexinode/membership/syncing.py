"""Push-pull, the trio driver: whom to exchange with, and moving the exchange's frames.

Every ``push_pull_interval`` (with 10% jitter) this node runs one exchange
(:mod:`plexinode.membership.sync`) with one random live member, and one with a member believed
dead or a seed not counted as a member (an *outsider*): after a partition heals, this is how the
two sides find each other again (memberlist's isolated nodes never do). While it knows nobody
alive, it joins instead: exchanges with up to :data:`JOIN_SEEDS` seeds at once (the bootstrap
nodes, the DHT's contacts), retried after :data:`JOIN_RETRY_FIRST` seconds, doubling up to the
push-pull interval.

The exchange itself is the :class:`~plexinode.membership.sync.PushPull` machine's; this driver
sends and receives the frames it asks for and hands what it received to the service: the
cluster-state entries, and the claims member by member (push-pull never revives the dead). A
node that joins (it knew no live member when the digests were exchanged) passes none of it on:
it learns the whole membership from one exchange, and all of it is news only to itself.
"""

from __future__ import annotations

import collections
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

import trio

from plexinode.identity import NodeId
from plexinode.membership.beliefs import State
from plexinode.membership.claims import SignedClaim
from plexinode.membership.evidence import Evidence
from plexinode.membership.members import MemberTable
from plexinode.membership.messages import SYNC_PROTOCOL
from plexinode.membership.settings import MembershipSettings
from plexinode.membership.state import StateEntry, StateMap
from plexinode.membership.sync import (
    ClaimsReceived,
    Compared,
    Expect,
    OversizedExchange,
    PushPull,
    Role,
    Send,
    StateReceived,
    by_member,
)
from plexinode.net.address import Address
from plexinode.net.secure import SecureStream
from plexinode.net.streams import STREAM_FAILURES, StreamService
from plexinode.wire import envelope
from plexinode.wire.codec import FRAME_LIMITS

log = logging.getLogger(__name__)

#: A push-pull exchange (connect, handshake, digests, claims) must finish within this.
SYNC_TIMEOUT: Final = 10.0
#: Seeds tried at once when this node knows no other live member.
JOIN_SEEDS: Final = 3
#: While alone, joining is retried after 1 s, doubling up to the push-pull interval.
JOIN_RETRY_FIRST: Final = 1.0


@dataclass(frozen=True, slots=True)
class Seed:
    """A node to join through: its address, and its ID when known (DHT contacts)."""

    address: Address
    node_id: NodeId | None = None


class Frames(Protocol):
    """A stream of frames, as a secure stream is."""

    async def send(self, value: bytes) -> None:
        """Send one frame."""

    async def receive(self) -> bytes:
        """Receive one frame."""


class HearClaim(Protocol):
    """Consider one claim (the membership service's ``hear``)."""

    def __call__(self, signed: SignedClaim, *, gossip: bool = True) -> bool: ...


class HearEntry(Protocol):
    """Consider one cluster-state entry (the membership service's ``hear_state``)."""

    def __call__(self, entry: StateEntry, *, gossip: bool = True) -> bool: ...


class Syncing:
    """Runs this node's push-pull exchanges and serves those of others (module docstring).

    Args:
        streams: Where exchanges are opened and served.
        settings: The push-pull interval and the member cap.
        table: The member table.
        evidence: The signed claims behind it.
        state: The cluster state.
        rng: Picks partners, seeds and the jitter.
        stats: The membership counters.
        seeds: The nodes to join through (this node's own address may be among them).
        hear: Hear a claim received.
        hear_state: Hear a cluster-state entry received.
        left: Whether this node has left (it then starts no more exchanges, and counts itself
            as left in those it serves).
    """

    def __init__(
        self,
        streams: StreamService,
        settings: MembershipSettings,
        *,
        table: MemberTable,
        evidence: Evidence,
        state: StateMap,
        rng: random.Random,
        stats: collections.Counter[str],
        seeds: Callable[[], Sequence[Seed]],
        hear: HearClaim,
        hear_state: HearEntry,
        left: Callable[[], bool],
    ) -> None:
        self._streams = streams
        self._settings = settings
        self._table = table
        self._evidence = evidence
        self._state = state
        self._rng = rng
        self._stats = stats
        self._seeds = seeds
        self._hear = hear
        self._hear_state = hear_state
        self._left = left
        self._node_id = table.own_id

    # -- whom with -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Push-pull every interval, or join while alone, until this node leaves."""
        table = self._table
        delay = JOIN_RETRY_FIRST
        while not self._left():
            if not table.others_live:
                if await self.join():
                    delay = JOIN_RETRY_FIRST
                    continue
                await trio.sleep(delay)
                delay = min(delay * 2, self._settings.push_pull_interval)
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
            await trio.sleep(self._settings.push_pull_interval * jitter)

    def _the_dead(self) -> list[Seed]:
        return [
            Seed(m.address, m.node_id)
            for m in self._table.members()
            if m.state is State.DEAD and m.node_id != self._node_id
        ]

    def _pick_outsider(self) -> Seed | None:
        """A node we believe dead, or a seed we do not count as a member."""
        candidates = self._the_dead()
        others_live = self._table.others_live
        candidates += [s for s in self.seeds() if s.node_id is None or s.node_id not in others_live]
        return self._rng.choice(candidates) if candidates else None

    def seeds(self) -> list[Seed]:
        """The seeds, less any that is this node."""
        own = self._table.get(self._node_id)
        return [
            s
            for s in self._seeds()
            if s.node_id != self._node_id and (own is None or s.address != own.address)
        ]

    async def join(self, seeds: Sequence[Seed] | None = None) -> bool:
        """Push-pull with up to :data:`JOIN_SEEDS` of `seeds` at once (default: this node's
        seeds, else the members believed dead); True if one of them answered."""
        if seeds is None:
            seeds = self.seeds() or self._the_dead()
        chosen = self._rng.sample(list(seeds), min(JOIN_SEEDS, len(seeds)))
        results: list[bool] = []

        async def attempt(seed: Seed) -> None:
            results.append(await self.sync_with(seed))

        async with trio.open_nursery() as nursery:
            for seed in chosen:
                nursery.start_soon(attempt, seed)
        return any(results)

    # -- the exchange ----------------------------------------------------------------------------

    async def sync_with(self, seed: Seed) -> bool:
        """One push-pull exchange with the node at `seed`; False if it failed."""
        try:
            with trio.fail_after(SYNC_TIMEOUT):
                stream = await self._streams.open(seed.address, SYNC_PROTOCOL, node_id=seed.node_id)
                async with stream:
                    await self.exchange(stream, Role.INITIATOR)
        except STREAM_FAILURES as exc:
            self._stats["sync_failed"] += 1
            log.debug("push-pull with %s failed: %s", seed.address, exc)
            return False
        except Exception:
            # A bug in one exchange must not take the node down (as for datagram handlers).
            self._stats["sync_error"] += 1
            log.exception("push-pull with %s failed", seed.address)
            return False
        self._stats["sync_done"] += 1
        return True

    async def serve(self, stream: SecureStream) -> None:
        """Serve an exchange another member opened."""
        with trio.move_on_after(SYNC_TIMEOUT):
            await self.exchange(stream, Role.RESPONDER)

    async def exchange(self, stream: Frames, role: Role) -> None:
        """Run one exchange over `stream`, as `role`: move the frames the machine asks for, and
        hear what it received (module docstring).

        Raises:
            RemoteProtocolError: The other side broke the protocol (a wrong or malformed frame,
                or more than this node may hold: counted in ``sync_too_large``).
        """
        machine = PushPull(
            role,
            self._table,
            self._evidence,
            self._state,
            max_members=self._settings.max_members,
            left=self._left(),
        )
        gossip = True
        while True:
            step = machine.next_step()
            if isinstance(step, Send):
                await stream.send(envelope.encode(step.message))
            elif isinstance(step, Expect):
                message = envelope.decode(await stream.receive(), FRAME_LIMITS).message
                try:
                    machine.receive(message)
                except OversizedExchange:
                    self._stats["sync_too_large"] += 1
                    raise
            elif isinstance(step, Compared):
                gossip = bool(self._table.others_live)  # a node that joins passes nothing on
            elif isinstance(step, StateReceived):
                for entry in step.entries:
                    self._hear_state(entry, gossip=gossip)
            elif isinstance(step, ClaimsReceived):
                self._merge(step.claims, gossip=gossip)
            else:
                if step.in_sync:
                    self._stats["sync_equal"] += 1
                return

    def _merge(self, received: Sequence[SignedClaim], *, gossip: bool) -> None:
        """Hear pushed claims member by member, skipping tombstones we do not hold."""
        for group in by_member(received):
            if group.revives_the_dead(group.node_id() in self._table):
                self._stats["sync_tombstones_skipped"] += 1
                continue
            for signed in group.claims:
                self._hear(signed, gossip=gossip)
