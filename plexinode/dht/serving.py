"""Serving the DHT: answers to FIND_NODE, STORE and FIND_VALUE, and the verification of requesters.

Answers come from the routing table (the ``k`` live contacts closest to the target, never the
requester itself) and from the record store. A STORE is taken only for a key this node is among
the ``k`` closest to (:meth:`Replication.among_closest
<plexinode.dht.replication.Replication.among_closest>`), and validated by the store; an invalid
record gets an ``error`` INVALID reply and is counted against its sender in
:attr:`Server.invalid_from` (the input to reputation). A requester whose address is not
validated yet gets an answer shortened to the request's budget (see
:mod:`plexinode.net.validation`): fewer contacts, records only if they fit.

Who enters the routing table: only a node that answered one of *our* authenticated requests
(its reply is signed by the key its ID is derived from, addressed to us, and matched on request
ID, address and node ID). A node that sends us a request is not added on that basis alone: the
source address of a datagram is not covered by anything the sender proves, so we ping it back
at that address first (``VERIFY_WORKERS`` pings at a time from a queue of at most
``MAX_PENDING_VERIFICATIONS``; when the queue is full, new requesters wait for a later request)
and it is added when the pong arrives, like any other reply; to an address not validated yet,
the ping-back is charged to the request's budget and makes one attempt only. A requester is
pinged back once at a time, not again for a while after it answered or failed (longer after
each failure), and ping-backs start at a bounded rate (:mod:`plexinode.dht.verification`, which
says why: without that memory, ping-backs fed on themselves under load). Contacts in other
nodes' replies are only ever candidates to query.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Final

import trio

from plexinode.dht.contact import Contact, is_public, is_routable, subnet
from plexinode.dht.messages import (
    FindNode,
    FindValue,
    Nodes,
    Store,
    StoreResult,
    Value,
    fit_contacts,
    fit_records,
)
from plexinode.dht.records import InvalidRecord
from plexinode.dht.replication import Replication
from plexinode.dht.routing import RoutingTable
from plexinode.dht.store import RecordStore, Refused, Stored, Unchanged
from plexinode.dht.verification import Verifications
from plexinode.errors import PeerTimeout, RemoteProtocolError
from plexinode.identity import NodeId
from plexinode.net.datagram import DatagramService, Inbound
from plexinode.wire.messages import Ping
from plexinode.wire.schema import Message

#: The bytes of a ping-back to an address not validated yet: it makes one attempt only, so
#: that it and the reply fit the request's budget (a ping's pong, a padded request's full
#: answer); a ping-back to a validated address makes two.
PING_BACK_BYTES: Final = DatagramService.datagram_bytes(Ping())
#: Requesters being pinged back at once; beyond this, new requesters are not verified (yet).
VERIFY_WORKERS: Final = 32
#: Requesters waiting to be pinged back. A burst of joins (every new node asks its neighbours
#: about its own ID) must not be skipped, or the newcomers stay unknown to exactly the nodes
#: that lookups for them converge on; the cap bounds memory under a flood of fresh identities.
MAX_PENDING_VERIFICATIONS: Final = 1024
#: The reason of a STORE refused because this node is not among the k closest to the key.
NOT_CLOSEST: Final = "not among the k closest to the key"
#: Senders of invalid records remembered (see Server.invalid_from).
MAX_INVALID_SENDERS: Final = 4096


class Server:
    """The DHT's request handlers and the workers that verify unknown requesters.

    :meth:`register` installs the handlers and the request observer on the datagram service;
    the owner runs ``VERIFY_WORKERS`` tasks of :meth:`verify_worker`.

    Args:
        datagrams: The authenticated datagram service.
        routing: The routing table answers come from (and verified requesters enter).
        records: The record store.
        replication: Told about every store, for the republish choice.
        k: Contacts per answer.
        clock: The clock records are judged by.

    Attributes:
        invalid_from: Invalid records received, per sender; at most MAX_INVALID_SENDERS, the
            least recently offending forgotten first.
        verifications: Which requesters are pinged back, and its counters.
    """

    def __init__(
        self,
        datagrams: DatagramService,
        routing: RoutingTable,
        records: RecordStore,
        replication: Replication,
        *,
        k: int,
        clock: Callable[[], float],
    ) -> None:
        self._datagrams = datagrams
        self._routing = routing
        self._records = records
        self._replication = replication
        self._k = k
        self._clock = clock
        self.invalid_from: collections.Counter[NodeId] = collections.Counter()
        self.verifications = Verifications()
        # (requester, extra attempts of its ping-back)
        self._verify_send, self._verify_receive = trio.open_memory_channel[tuple[Contact, int]](
            MAX_PENDING_VERIFICATIONS
        )

    def register(self) -> None:
        """Answer FIND_NODE, STORE and FIND_VALUE from now on."""
        self._datagrams.on(FindNode, self.on_find_node)
        self._datagrams.on(Store, self.on_store)
        self._datagrams.on(FindValue, self.on_find_value)

    async def on_find_node(self, inbound: Inbound) -> Message:
        """The k live contacts closest to the target, the requester left out."""
        assert isinstance(inbound.message, FindNode)
        target = NodeId(inbound.message.target)
        closest = self._routing.closest(target, self._k, exclude=(inbound.sender,), live_only=True)
        return Nodes(fit_contacts(closest, self._datagrams.reply_room(inbound)))

    async def on_store(self, inbound: Inbound) -> Message:
        """Keep the record if it is valid and new, and this node is among the k closest to
        its key; an invalid one costs its sender. Provider records are counted per source
        network (/24, /48) of public addresses (see RecordStore.put)."""
        assert isinstance(inbound.message, Store)
        record = inbound.message.record
        if not self._replication.among_closest(record.key, besides=inbound.sender):
            self._records.stats[NOT_CLOSEST] += 1
            return StoreResult(False, 0, NOT_CLOSEST)
        now = self._clock()
        source = subnet(inbound.address) if is_public(inbound.address) else None
        outcome = self._records.put(record, now, source)
        self._replication.stored(record, outcome, now)
        if isinstance(outcome, Stored):
            return StoreResult(True, outcome.record.seq, "")
        if isinstance(outcome, Unchanged):
            return StoreResult(False, outcome.held.seq, "newer version held")
        assert isinstance(outcome, Refused)
        if outcome.invalid:
            self.note_invalid(inbound.sender)
            raise InvalidRecord(outcome.reason, "refused")  # an `error` INVALID reply
        return StoreResult(False, 0, outcome.reason[:64])

    async def on_find_value(self, inbound: Inbound) -> Message:
        """The records held under the key, or else the k live contacts closest to it."""
        assert isinstance(inbound.message, FindValue)
        query = inbound.message
        room = self._datagrams.reply_room(inbound)
        held = self._records.get(query.rtype, query.key, self._clock())
        records = fit_records(held, room)
        if records:
            return Value(records, ())
        # (Records that do not fit an unvalidated requester's budget are not sent: it pads its
        # request while we have not validated it, so only a forged source goes without.)
        closest = self._routing.closest(
            NodeId(query.key), self._k, exclude=(inbound.sender,), live_only=True
        )
        return Value((), fit_contacts(closest, None if room is None else room - 1))

    def note_invalid(self, sender: NodeId) -> None:
        """Count an invalid record from `sender`, keeping at most MAX_INVALID_SENDERS (the
        least recently offending forgotten first): fresh identities are cheap to make."""
        count = self.invalid_from.pop(sender, 0) + 1
        self.invalid_from[sender] = count
        if len(self.invalid_from) > MAX_INVALID_SENDERS:
            del self.invalid_from[next(iter(self.invalid_from))]

    def maybe_verify(self, inbound: Inbound) -> None:
        """Ping back a requester we do not know, at the address it wrote from (charged to the
        request's budget when that address is not validated: the ping-back goes to the
        request's source as much as the reply does), unless it was checked lately (see
        :class:`~plexinode.dht.verification.Verifications`)."""
        sender = inbound.sender
        if sender in self._routing or not is_routable(inbound.address):
            return
        if not self._routing.has_room_for(sender):
            self._routing.stats["verify_skipped_full"] += 1  # the table would not keep it
            return
        if not self.verifications.begin(sender, trio.current_time()):
            return
        validated = self._datagrams.reply_room(inbound) is None
        if not validated and not self._datagrams.charge(inbound, PING_BACK_BYTES):
            self._routing.stats["verify_over_budget"] += 1
            self.verifications.cancel(sender)
            return
        try:
            self._verify_send.send_nowait((Contact(sender, inbound.address), int(validated)))
        except trio.WouldBlock:
            self._routing.stats["verify_queue_full"] += 1
            self.verifications.cancel(sender)

    async def verify_worker(self) -> None:
        """Ping queued requesters, one at a time; the pong adds them (through the observer)."""
        async for contact, retries in self._verify_receive:
            answered = False
            try:
                await self._datagrams.request(
                    contact.address, Ping(), node_id=contact.node_id, retries=retries
                )
                answered = True
            except (PeerTimeout, RemoteProtocolError):
                pass
            finally:
                self.verifications.end(contact.node_id, trio.current_time(), answered=answered)
