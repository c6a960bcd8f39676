"""An in-memory stand-in for the DHT's record interface (`shards.dht_records.RecordDht`): every
record is validated as a DHT node validates it, kept by (type, key, publisher), and returned
whole; `broken` makes every call fail as a DHT with no reachable node does."""

from __future__ import annotations

from collections.abc import Callable

from plexinode.dht.record_types import default_registry
from plexinode.dht.records import Record, newer, validate_record
from plexinode.errors import PeerTimeout


class RecordBoard:
    """Records by (type, key, publisher); see the module docstring."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.records: dict[tuple[int, bytes], dict[bytes, Record]] = {}
        self.broken = False
        self._clock = clock
        self._seq = 0
        self._registry = default_registry()

    async def get(self, rtype: int, key: bytes) -> list[Record]:
        """The valid records under (`rtype`, `key`)."""
        if self.broken:
            raise PeerTimeout("no DHT node answered")
        now = self._clock()
        return [r for r in self.records.get((rtype, key), {}).values() if r.expires_at > now]

    async def put(self, record: Record) -> int:
        """Validate and keep `record` (a newer version replaces an older one); 1."""
        if self.broken:
            raise PeerTimeout("no DHT node answered")
        validate_record(record, self._clock(), self._registry)
        slot = self.records.setdefault((record.rtype, record.key), {})
        held = slot.get(record.publisher)
        if held is None or newer(record, held):
            slot[record.publisher] = record
        return 1

    def next_seq(self) -> int:
        """1, 2, 3, ..."""
        self._seq += 1
        return self._seq
