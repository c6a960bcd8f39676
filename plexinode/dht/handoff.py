"""Handing records to a node that joins closer to their key than the holders knew of.

Each contact newly added to the routing table is queued here (at most
``MAX_PENDING_HANDOFFS``; more are counted in ``handoff_queue_full`` and skipped), and one worker
stores on it the records the replication core picks (:meth:`Replication.records_for
<plexinode.dht.replication.Replication.records_for>`): the Kademlia paper's rule, so that
records follow their keys as nodes join, without waiting for the next republish.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Final

import trio

from plexinode.dht.contact import Contact
from plexinode.dht.messages import Store
from plexinode.dht.replication import Replication
from plexinode.dht.store import RecordStore
from plexinode.errors import PeerTimeout, RemoteProtocolError
from plexinode.net.datagram import DatagramService

#: Records handed to one newly added contact at most.
MAX_HANDOFF_RECORDS: Final = 64
#: New contacts waiting for a handoff.
MAX_PENDING_HANDOFFS: Final = 256


class Handoff:
    """The handoff queue and its worker: call :meth:`offer` for each contact added to the
    table; the owner runs :meth:`run`.

    Args:
        datagrams: The authenticated datagram service.
        records: The records held.
        replication: Which records a contact gets.
        clock: The clock records are judged by.
        record_stats: The service's counters (``handed_off``, ``handoff_queue_full``).
    """

    def __init__(
        self,
        datagrams: DatagramService,
        records: RecordStore,
        replication: Replication,
        *,
        clock: Callable[[], float],
        record_stats: collections.Counter[str],
    ) -> None:
        self._datagrams = datagrams
        self._records = records
        self._replication = replication
        self._clock = clock
        self._record_stats = record_stats
        self._send, self._receive = trio.open_memory_channel[Contact](MAX_PENDING_HANDOFFS)

    def offer(self, contact: Contact) -> None:
        """Queue `contact`, just added to the table, for a handoff (if there is room)."""
        try:
            self._send.send_nowait(contact)
        except trio.WouldBlock:
            self._record_stats["handoff_queue_full"] += 1

    async def run(self) -> None:
        """Store on each queued contact the records it should now hold (until one fails)."""
        async for contact in self._receive:
            records = self._replication.records_for(
                contact.node_id, self._records.all_records(), self._clock()
            )
            for record in records[:MAX_HANDOFF_RECORDS]:
                try:
                    await self._datagrams.request(
                        contact.address, Store(record), node_id=contact.node_id, retries=1
                    )
                except (PeerTimeout, RemoteProtocolError):
                    break
                self._record_stats["handed_off"] += 1
