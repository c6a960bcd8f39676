"""``shards/1``: the messages between an owner, its holders, repairers and restorers.

One secure stream per peer carries a conversation of frames, each one message in an envelope.
The stream is mutually authenticated, so the holder knows who is speaking: an owner's requests
about its own backups (store, reference, renew, remove) are accepted only from the owner's
node, and its shares are filed under that node's ID, never under an ID a message claims.

Storing (owner -> holder)::

    shard-offer      "will you hold share index i of home H under lease L?"  -> shard-reply
    shard-put        a block in pieces of at most PIECE_BYTES, with its root; the last piece of
                     a window has ``flush`` set                              -> shard-stored
    shard-ref        "these segments you hold belong to backup B too" (no bytes move)
                                                                              -> shard-stored
    shard-manifest   the manifest in pieces                                  -> shard-reply
    shard-renew      new lease expiry for backups                            -> shard-reply
    shard-remove     backup B is deleted: drop its lease                     -> shard-reply

``shard-stored`` acknowledges after the blocks (or references) are committed to disk, for many
segments at once: a holder groups commits, and the owner keeps a window of segments in flight
rather than waiting a round trip per segment.

Reading (any member of the network -> holder)::

    shard-get        one block                               -> shard-block pieces | shard-reply
    shard-challenge  chosen leaves of a block and a nonce    -> shard-proof | shard-reply
    shard-manifest-get   an owner's manifest                 -> shard-manifest pieces | reply
    shard-list       the backups of an owner a holder keeps  -> shard-listing

Blocks are ciphertext checked against the owner-signed roots, so reading needs no secret and
proves nothing to the reader but integrity; reads are bounded per peer by the service.

Repairing (a holder of the home, the elected repairer -> another member)::

    shard-repair-claim   "I repair owner O's home H now"                    -> shard-reply
    shard-repair-offer   "will you hold share index i of O's home H, proven by O's manifest
                         of backup B (which lists H), under lease L?"; the manifest follows in
                         shard-manifest pieces                               -> shard-reply
    shard-repair-put     a block of that share in pieces; the root and size are the
                         manifest's, never the sender's                      -> shard-stored
    shard-repair-done    "every segment of H is sent": the holder checks it holds them all,
                         then publishes its provider record                  -> shard-reply

A repaired share is filed under the owner O (the manifest's signer), never under the repairer;
nothing that the owner's signature does not prove is accepted (docs/security.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar, Final

from plexinode.errors import DecodeError
from plexinode.identity import NODE_ID_BYTES
from plexinode.shards import merkle, pipeline
from plexinode.shards.derive import SEGMENT_ID_BYTES
from plexinode.shards.manifest import BACKUP_ID_BYTES, MAX_MANIFEST_BYTES
from plexinode.wire.schema import Bool, Bytes, Float, Int, ListOf, Message, Str, register, wire

SHARDS_PROTOCOL: Final = "shards/1"
#: Largest piece of a block or manifest in one frame: a quarter of the stream's frame limit,
#: so a frame never pins much memory, and a 1 MiB segment's block (about 350 KB at k = 3)
#: travels in two frames.
PIECE_BYTES: Final = 256 << 10
#: Largest block: a maximum segment (4 MiB) at k = 1, with its tag.
MAX_BLOCK_BYTES: Final = (4 << 20) + 16
#: Most segment IDs one ``shard-ref`` or ``shard-stored`` carries (128 KiB of IDs).
MAX_IDS: Final = 4096
#: Most leaves one challenge asks for.
MAX_CHALLENGE_LEAVES: Final = 16
#: Deepest Merkle path: a maximum block has 513 leaves of 8 KiB, so 10 levels; room to spare.
MAX_PATH: Final = 32
#: Most backup IDs one ``shard-renew`` or ``shard-listing`` carries (a frame's array limit).
MAX_BACKUPS: Final = 256

_ID = Bytes(SEGMENT_ID_BYTES, SEGMENT_ID_BYTES)
_NODE = Bytes(NODE_ID_BYTES, NODE_ID_BYTES)
_BACKUP = Bytes(BACKUP_ID_BYTES, BACKUP_ID_BYTES)
_HASH = Bytes(merkle.HASH_BYTES, merkle.HASH_BYTES)
_SIZE = Int(1, MAX_BLOCK_BYTES)
_INDEX = Int(0, 255)
_TIME = Float(0.0, 1e11)


class Reason:
    """Why a holder refused (``shard-reply.reason`` and ``shard-stored.reason``)."""

    NODE_FULL: Final = "node_full"
    OWNER_QUOTA: Final = "owner_quota"
    DISK_FULL: Final = "disk_full"
    BAD_ROOT: Final = "bad_root"
    CONFLICT: Final = "conflict"
    NOT_HELD: Final = "not_held"
    BAD_MANIFEST: Final = "bad_manifest"
    BAD_REQUEST: Final = "bad_request"
    BUSY: Final = "busy"
    #: A repair claim refused: another member's claim on the home is held (``detail``: it).
    CLAIMED: Final = "claimed"
    #: Never sent: what the owner records when a holder's stream broke (it died, or the
    #: connection did).
    UNREACHABLE: Final = "unreachable"
    #: Refusals that mean "this holder has no room": placement takes the next candidate.
    NO_ROOM: Final = frozenset({NODE_FULL, OWNER_QUOTA, DISK_FULL})


@register
@dataclass(frozen=True, slots=True)
class ShardReply(Message):
    """The answer to a request that returns nothing else: done, or refused and why."""

    TYPE: ClassVar[int] = 96
    NAME: ClassVar[str] = "shard-reply"
    RESPONSE: ClassVar[bool] = True
    ok: bool = wire(Bool())
    reason: str = wire(Str(32))
    detail: str = wire(Str(256))


@register
@dataclass(frozen=True, slots=True)
class ShardOffer(Message):
    """Owner: "will you hold share `index` of the segments of `home`, about `size` bytes?"."""

    TYPE: ClassVar[int] = 97
    NAME: ClassVar[str] = "shard-offer"
    backup_id: bytes = wire(_BACKUP)
    home: bytes = wire(_BACKUP)
    index: int = wire(_INDEX)
    lease_expires: float = wire(_TIME)
    size: int = wire(Int())


@register
@dataclass(frozen=True, slots=True)
class ShardPut(Message):
    """Owner: a piece of the block of share `index` of `segment` (home `home`, lease of
    `backup_id`), whose whole is `size` bytes with Merkle root `root`."""

    TYPE: ClassVar[int] = 98
    NAME: ClassVar[str] = "shard-put"
    backup_id: bytes = wire(_BACKUP)
    home: bytes = wire(_BACKUP)
    lease_expires: float = wire(_TIME)
    segment: bytes = wire(_ID)
    index: int = wire(_INDEX)
    root: bytes = wire(_HASH)
    size: int = wire(_SIZE)
    offset: int = wire(Int(0, MAX_BLOCK_BYTES))
    data: bytes = wire(Bytes(0, PIECE_BYTES))
    flush: bool = wire(Bool())


@register
@dataclass(frozen=True, slots=True)
class ShardStored(Message):
    """Holder: the segments now committed (`stored`, 32-byte IDs concatenated) and those
    refused (`refused`) with the `reason` of the first refusal."""

    TYPE: ClassVar[int] = 99
    NAME: ClassVar[str] = "shard-stored"
    RESPONSE: ClassVar[bool] = True
    stored: bytes = wire(Bytes(0, MAX_IDS * SEGMENT_ID_BYTES))
    refused: bytes = wire(Bytes(0, MAX_IDS * SEGMENT_ID_BYTES))
    reason: str = wire(Str(32))


@register
@dataclass(frozen=True, slots=True)
class ShardRef(Message):
    """Owner: the segments (held already) that backup `backup_id` uses too."""

    TYPE: ClassVar[int] = 100
    NAME: ClassVar[str] = "shard-ref"
    backup_id: bytes = wire(_BACKUP)
    lease_expires: float = wire(_TIME)
    segments: bytes = wire(Bytes(0, MAX_IDS * SEGMENT_ID_BYTES))


@register
@dataclass(frozen=True, slots=True)
class ShardManifest(Message):
    """A piece of `owner`'s manifest of `backup_id` (`total` bytes in all)."""

    TYPE: ClassVar[int] = 101
    NAME: ClassVar[str] = "shard-manifest"
    owner: bytes = wire(_NODE)
    backup_id: bytes = wire(_BACKUP)
    offset: int = wire(Int(0, MAX_MANIFEST_BYTES))
    total: int = wire(Int(1, MAX_MANIFEST_BYTES))
    data: bytes = wire(Bytes(0, PIECE_BYTES))


@register
@dataclass(frozen=True, slots=True)
class ShardRenew(Message):
    """Owner: the leases of `backup_ids` now run until `lease_expires`."""

    TYPE: ClassVar[int] = 102
    NAME: ClassVar[str] = "shard-renew"
    backup_ids: tuple[bytes, ...] = wire(ListOf(_BACKUP, MAX_BACKUPS))
    lease_expires: float = wire(_TIME)


@register
@dataclass(frozen=True, slots=True)
class ShardRemove(Message):
    """Owner: backup `backup_id` is deleted; drop its lease (and what only it used)."""

    TYPE: ClassVar[int] = 103
    NAME: ClassVar[str] = "shard-remove"
    backup_id: bytes = wire(_BACKUP)


@register
@dataclass(frozen=True, slots=True)
class ShardGet(Message):
    """Anyone: the block of share `index` of `owner`'s segment `segment`."""

    TYPE: ClassVar[int] = 104
    NAME: ClassVar[str] = "shard-get"
    owner: bytes = wire(_NODE)
    segment: bytes = wire(_ID)
    index: int = wire(_INDEX)


@register
@dataclass(frozen=True, slots=True)
class ShardBlock(Message):
    """Holder: a piece of a block (`total` bytes in all)."""

    TYPE: ClassVar[int] = 105
    NAME: ClassVar[str] = "shard-block"
    RESPONSE: ClassVar[bool] = True
    segment: bytes = wire(_ID)
    index: int = wire(_INDEX)
    offset: int = wire(Int(0, MAX_BLOCK_BYTES))
    total: int = wire(_SIZE)
    data: bytes = wire(Bytes(0, PIECE_BYTES))


@register
@dataclass(frozen=True, slots=True)
class ShardChallenge(Message):
    """Anyone: prove you hold share `index` of `owner`'s `segment`: send these leaves."""

    TYPE: ClassVar[int] = 106
    NAME: ClassVar[str] = "shard-challenge"
    owner: bytes = wire(_NODE)
    segment: bytes = wire(_ID)
    index: int = wire(_INDEX)
    leaves: tuple[int, ...] = wire(ListOf(Int(0, MAX_BLOCK_BYTES), MAX_CHALLENGE_LEAVES))
    nonce: bytes = wire(Bytes(16, 16))


@register
@dataclass(frozen=True, slots=True)
class ShardProof(Message):
    """Holder: the leaves asked for and their Merkle paths (`count` leaves in the tree)."""

    TYPE: ClassVar[int] = 107
    NAME: ClassVar[str] = "shard-proof"
    RESPONSE: ClassVar[bool] = True
    nonce: bytes = wire(Bytes(16, 16))
    count: int = wire(Int(1, MAX_BLOCK_BYTES))
    leaves: tuple[bytes, ...] = wire(ListOf(Bytes(0, pipeline.LEAF_BYTES), MAX_CHALLENGE_LEAVES))
    paths: tuple[tuple[bytes, ...], ...] = wire(
        ListOf(ListOf(_HASH, MAX_PATH), MAX_CHALLENGE_LEAVES)
    )


@register
@dataclass(frozen=True, slots=True)
class ShardManifestGet(Message):
    """Anyone: `owner`'s manifest of `backup_id`."""

    TYPE: ClassVar[int] = 108
    NAME: ClassVar[str] = "shard-manifest-get"
    owner: bytes = wire(_NODE)
    backup_id: bytes = wire(_BACKUP)


@register
@dataclass(frozen=True, slots=True)
class ShardList(Message):
    """Anyone: which of `owner`'s backups do you keep a manifest of?"""

    TYPE: ClassVar[int] = 109
    NAME: ClassVar[str] = "shard-list"
    owner: bytes = wire(_NODE)


@register
@dataclass(frozen=True, slots=True)
class ShardListing(Message):
    """Holder: the backups of the owner asked about whose manifests it keeps."""

    TYPE: ClassVar[int] = 110
    NAME: ClassVar[str] = "shard-listing"
    RESPONSE: ClassVar[bool] = True
    backup_ids: tuple[bytes, ...] = wire(ListOf(_BACKUP, MAX_BACKUPS))


@register
@dataclass(frozen=True, slots=True)
class ShardRepairClaim(Message):
    """Repairer: "I am repairing `owner`'s home `home` now" (granted unless another member's
    unexpired claim is held; see docs/protocol.md, "Repair")."""

    TYPE: ClassVar[int] = 111
    NAME: ClassVar[str] = "shard-repair-claim"
    owner: bytes = wire(_NODE)
    home: bytes = wire(_BACKUP)


@register
@dataclass(frozen=True, slots=True)
class ShardRepairOffer(Message):
    """Repairer: "hold share `index` of `owner`'s home `home` under the lease of `backup_id`
    until `lease_expires`"; `owner`'s manifest of `backup_id` (`total` bytes, listing `home`)
    follows in ``shard-manifest`` pieces."""

    TYPE: ClassVar[int] = 112
    NAME: ClassVar[str] = "shard-repair-offer"
    owner: bytes = wire(_NODE)
    backup_id: bytes = wire(_BACKUP)
    home: bytes = wire(_BACKUP)
    index: int = wire(_INDEX)
    lease_expires: float = wire(_TIME)
    total: int = wire(Int(1, MAX_MANIFEST_BYTES))


@register
@dataclass(frozen=True, slots=True)
class ShardRepairPut(Message):
    """Repairer: a piece of the block of `segment` for the share offered; its root and size
    are the manifest's."""

    TYPE: ClassVar[int] = 113
    NAME: ClassVar[str] = "shard-repair-put"
    segment: bytes = wire(_ID)
    offset: int = wire(Int(0, MAX_BLOCK_BYTES))
    data: bytes = wire(Bytes(0, PIECE_BYTES))
    flush: bool = wire(Bool())


@register
@dataclass(frozen=True, slots=True)
class ShardRepairDone(Message):
    """Repairer: every segment of the share offered is sent."""

    TYPE: ClassVar[int] = 114
    NAME: ClassVar[str] = "shard-repair-done"
    owner: bytes = wire(_NODE)
    home: bytes = wire(_BACKUP)


def split_ids(data: bytes) -> list[bytes]:
    """The 32-byte segment IDs concatenated in `data` (a whole number of them)."""
    if len(data) % SEGMENT_ID_BYTES:
        raise DecodeError("not a whole number of segment IDs")
    return [data[i : i + SEGMENT_ID_BYTES] for i in range(0, len(data), SEGMENT_ID_BYTES)]


def pieces(data: bytes) -> Iterator[tuple[int, bytes, bool]]:
    """`data` cut into pieces of at most `PIECE_BYTES`, in order: (offset, piece, last)."""
    for at in range(0, len(data), PIECE_BYTES):
        yield at, data[at : at + PIECE_BYTES], at + PIECE_BYTES >= len(data)


def manifest_pieces(owner: bytes, backup_id: bytes, data: bytes) -> Iterator[ShardManifest]:
    """The ``shard-manifest`` pieces carrying `owner`'s manifest `data` of `backup_id`."""
    for at, piece, _ in pieces(data):
        yield ShardManifest(owner, backup_id, at, len(data), piece)
