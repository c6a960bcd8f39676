"""A member places a repaired share on a holder: proven by the owner's manifest, filed under the
owner, refused when the manifest does not prove it (bad input)."""

from __future__ import annotations

import pytest
import trio

from plexinode.errors import DecodeError
from plexinode.shards import messages, repair_client
from plexinode.shards.holder_service import HolderService
from plexinode.shards.uploading import HolderRefused
from plexinode.testing.channels import ChannelEnd
from plexinode.testing.memory_store import MemoryStore
from plexinode.wire import envelope

from .test_holder_service import BACKUP, OTHER, OWNER, segments, signed_manifest, with_holder

NOW = 1_000.0


def offer_of(data: bytes, *, index: int = 3, home: bytes = BACKUP, lease: float = NOW + 500):
    return messages.ShardRepairOffer(OWNER.node_id.raw, BACKUP, home, index, lease, len(data))


def service(store: MemoryStore, **kw) -> HolderService:
    return HolderService(store, wall_clock=lambda: NOW, **kw)


async def test_a_repaired_share_is_filed_under_the_owner_and_announced() -> None:
    store = MemoryStore()
    kept: list[tuple[bytes, bytes]] = []
    holder = service(store, on_manifest=lambda o, h: kept.append((o, h)))
    segs = segments(3)
    data = signed_manifest(segs)
    owner = OWNER.node_id.raw

    async def repairer(client: ChannelEnd) -> None:
        await repair_client.claim(client, owner, BACKUP)
        await repair_client.offer(client, offer_of(data, lease=NOW + 10**9), data)
        await repair_client.put_blocks(client, [(s.identity, s.blocks[3]) for s in segs[:2]])
        with pytest.raises(HolderRefused, match="not_held"):  # a segment still missing
            await repair_client.done(client, owner, BACKUP)
        await repair_client.offer(client, offer_of(data), data)  # again: idempotent
        await repair_client.put_blocks(client, [(s.identity, s.blocks[3]) for s in segs])
        await repair_client.put_blocks(client, [])
        await repair_client.done(client, owner, BACKUP)

    await with_holder(holder, OTHER, repairer)
    assert sorted(store.blocks) == sorted((owner, s.identity, 3) for s in segs)
    assert store.manifests[owner, BACKUP] == data
    assert store.leases[owner, BACKUP] == NOW + 500  # the lease offered last (capped before)
    assert kept == [(owner, BACKUP)]
    assert holder.stats["repair_blocks_stored"] == 5
    assert holder.stats["repairs_taken"] == 1


async def test_the_lease_is_capped_to_a_lease_period() -> None:
    store = MemoryStore()
    segs = segments(1)
    data = signed_manifest(segs)

    async def repairer(client: ChannelEnd) -> None:
        await repair_client.offer(client, offer_of(data, lease=1e10), data)
        # A last block not flushed is committed by done.
        await send(client, messages.ShardRepairPut(segs[0].identity, 0, segs[0].blocks[3], False))
        await repair_client.done(client, OWNER.node_id.raw, BACKUP)

    await with_holder(service(store), OTHER, repairer)
    assert store.leases[OWNER.node_id.raw, BACKUP] == NOW + 30 * 86_400
    assert list(store.blocks) == [(OWNER.node_id.raw, segs[0].identity, 3)]


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("not the owner's", "bad_manifest"),
        ("garbage", "bad_manifest"),
        ("other backup", "bad_manifest"),
        ("home not listed", "bad_request"),
        ("index out of range", "bad_request"),
        ("lease past", "bad_request"),
        ("full", "node_full"),
        ("holds another index", "conflict"),
    ],
)
async def test_offers_the_owners_signature_does_not_prove_are_refused(
    case: str, reason: str
) -> None:
    store = MemoryStore(quota=10 if case == "full" else 1 << 30)
    holder = service(store)
    segs = segments(2)
    data = signed_manifest(segs, owner=OTHER if case == "not the owner's" else OWNER)
    if case == "garbage":
        data = b"\x93" + bytes(40)
    offered = offer_of(data)
    if case == "other backup":
        offered = messages.ShardRepairOffer(
            OWNER.node_id.raw, b"C" * 16, BACKUP, 3, NOW + 9, len(data)
        )
    elif case == "home not listed":
        offered = offer_of(data, home=b"H" * 16)
    elif case == "index out of range":
        offered = offer_of(data, index=4)
    elif case == "lease past":
        offered = offer_of(data, lease=NOW)
    elif case == "holds another index":
        store.blocks[OWNER.node_id.raw, segs[0].identity, 1] = segs[0].blocks[1]
        store.homes[OWNER.node_id.raw, segs[0].identity] = BACKUP

    async def repairer(client: ChannelEnd) -> None:
        with pytest.raises(HolderRefused, match=reason):
            await repair_client.offer(client, offered, data)
        with pytest.raises(trio.EndOfChannel):  # nothing accepted: a put ends the stream
            await repair_client.put_blocks(client, [(segs[0].identity, segs[0].blocks[3])])

    await with_holder(holder, OTHER, repairer)
    assert (OWNER.node_id.raw, segs[1].identity, 3) not in store.blocks
    assert (OWNER.node_id.raw, BACKUP) not in store.manifests
    assert holder.stats["repairs_refused"] == 1
    assert holder.stats["protocol_errors"] == 1


async def test_a_block_that_does_not_match_the_manifests_root_is_refused() -> None:
    store = MemoryStore()
    holder = service(store)
    segs = segments(2)
    data = signed_manifest(segs)

    async def repairer(client: ChannelEnd) -> None:
        await repair_client.offer(client, offer_of(data), data)
        with pytest.raises(HolderRefused, match="bad_root"):
            await repair_client.put_blocks(client, [(segs[0].identity, segs[0].blocks[2])])
        with pytest.raises(HolderRefused, match="not_held"):
            await repair_client.done(client, OWNER.node_id.raw, BACKUP)

    await with_holder(holder, OTHER, repairer)
    assert not store.blocks


async def send(client: ChannelEnd, *items: messages.Message) -> None:
    for item in items:
        await client.send(envelope.encode(item))


@pytest.mark.parametrize(
    "case",
    [
        "unlisted segment",
        "put first",
        "done first",
        "done other",
        "two offers",
        "pieces",
        "pieces of another backup",
    ],
)
async def test_repair_messages_out_of_order_end_the_stream(case: str) -> None:
    store = MemoryStore()
    holder = service(store)
    segs = segments(1)
    data = signed_manifest(segs)
    owner = OWNER.node_id.raw

    async def repairer(client: ChannelEnd) -> None:
        put = messages.ShardRepairPut(segs[0].identity, 0, segs[0].blocks[3], True)
        if case in ("put first", "done first"):
            first = put if case == "put first" else messages.ShardRepairDone(owner, BACKUP)
            await send(client, first)
        elif case == "two offers":
            await send(client, offer_of(data), offer_of(data))
        elif case == "pieces":  # the manifest's pieces must be the owner's named in the offer
            await send(
                client, offer_of(data), messages.ShardManifest(b"o" * 32, BACKUP, 0, 1, b"x")
            )
        elif case == "pieces of another backup":
            await send(
                client,
                offer_of(data),
                messages.ShardManifest(owner, b"C" * 16, 0, len(data), data),
            )
        else:
            await repair_client.offer(client, offer_of(data), data)
            if case == "unlisted segment":
                await send(client, messages.ShardRepairPut(b"u" * 32, 0, b"x", True))
            else:
                await send(client, messages.ShardRepairDone(owner, b"D" * 16))
        with pytest.raises(trio.EndOfChannel):
            await client.receive()

    await with_holder(holder, OTHER, repairer)
    assert holder.stats["protocol_errors"] == 1
    assert not store.blocks


async def test_one_claimant_per_home_at_a_time() -> None:
    clock = [0.0]
    holder = service(MemoryStore(), clock=lambda: clock[0])
    owner = OWNER.node_id.raw
    assert holder.claim(owner, BACKUP, b"a" * 32) is None

    async def other(client: ChannelEnd) -> None:
        with pytest.raises(HolderRefused, match="claimed"):
            await repair_client.claim(client, owner, BACKUP)

    await with_holder(holder, OTHER, other)
    assert holder.stats["repair_claims_refused"] == 1
    clock[0] = 601.0  # the claim lapsed

    async def again(client: ChannelEnd) -> None:
        await repair_client.claim(client, owner, BACKUP)
        await repair_client.claim(client, owner, BACKUP)  # renewed by its holder

    await with_holder(holder, OTHER, again)
    holder.claims = type(holder.claims)(limit=0)

    async def full(client: ChannelEnd) -> None:
        with pytest.raises(HolderRefused, match="busy"):
            await repair_client.claim(client, owner, BACKUP)

    await with_holder(holder, OTHER, full)


async def test_a_holder_that_answers_an_empty_shard_stored_is_a_protocol_error() -> None:
    from plexinode.testing.channels import channel_pair

    client, server = channel_pair()
    async with trio.open_nursery() as nursery:

        async def holder() -> None:
            await server.receive()
            await server.send(envelope.encode(messages.ShardStored(b"", b"", "")))

        nursery.start_soon(holder)
        with pytest.raises(DecodeError, match="empty"):
            await repair_client.put_blocks(client, [(b"s" * 32, b"x")])
