"""The holder service over shards/1, driven by the owner's and the restorer's own clients.

The share store here is a small in-memory one that keeps the store's contract (roots checked,
a quota, leases); the database-backed store has its own tests.
"""

from __future__ import annotations

import random

import pytest
import trio

from plexinode.identity import Identity, NodeId
from plexinode.shards import audit, derive, fetching, manifest, messages, pipeline
from plexinode.shards.fetching import NotHeld
from plexinode.shards.holder_service import HolderService
from plexinode.shards.holding import Block
from plexinode.shards.manifest import Private, SegmentTable
from plexinode.shards.uploading import HolderRefused, open_share_upload, request
from plexinode.testing.channels import ChannelEnd, channel_pair
from plexinode.testing.memory_store import MemoryStore
from plexinode.wire import envelope

OWNER = Identity.from_seed(bytes(32))
OTHER = Identity.from_seed(bytes([3]) * 32)
SECRET = bytes(range(32))
BACKUP = b"B" * 16


def segments(count: int, size: int = 200_000) -> list[pipeline.EncodedSegment]:
    rng = random.Random(count)
    return [pipeline.encode_segment(SECRET, rng.randbytes(size), 2, 4) for _ in range(count)]


async def with_holder(service: HolderService, peer: Identity, body) -> None:  # type: ignore[no-untyped-def]
    client, server = channel_pair()

    async def serve() -> None:  # the stream service closes a stream once its handler returns
        await service.serve(server, peer.node_id)
        await server.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        await body(client)
        await client.aclose()


def signed_manifest(segs: list[pipeline.EncodedSegment], owner: Identity = OWNER) -> bytes:
    table = SegmentTable(BACKUP, 4)
    for s in segs:
        table.add(s.identity, BACKUP, s.length, len(s.blocks[0]), s.roots)
    private = Private.of("n", "s", sum(s.length for s in segs), 0, table.lengths)
    key = derive.manifest_key(SECRET, BACKUP)
    built = manifest.build(
        owner=owner.public_key,
        backup_id=BACKUP,
        created=1.0,
        lease_expires=77.0,
        k=2,
        n=4,
        table=table,
        nonce=bytes(24),
        sealed=manifest.seal_private(private, key, bytes(24), owner.public_key, BACKUP),
    ).signed_by(owner)
    return built.to_bytes_checked()


async def send_manifest(
    client: ChannelEnd, data: bytes, owner: bytes, step: int = messages.PIECE_BYTES
) -> messages.ShardReply:
    for at in range(0, len(data), step):
        await client.send(
            envelope.encode(
                messages.ShardManifest(owner, BACKUP, at, len(data), data[at : at + step])
            )
        )
    from plexinode.shards.uploading import receive_message

    return await receive_message(client, messages.ShardReply)


async def test_store_read_challenge_list_and_remove() -> None:
    store = MemoryStore()
    service = HolderService(store)
    segs = segments(5)
    owner = OWNER.node_id.raw

    async def owner_side(client: ChannelEnd) -> None:
        async with open_share_upload(
            client, backup_id=BACKUP, home=BACKUP, lease_expires=50.0, index=1, window=2
        ) as up:
            for i, s in enumerate(segs):
                await up.send(s, more_ready=i < 4)
            await up.drain()
            assert up.stored == [s.identity for s in segs]
        reply = await send_manifest(client, signed_manifest(segs), owner, step=100)
        assert reply.ok

    await with_holder(service, OWNER, owner_side)
    assert store.leases[owner, BACKUP] == 77.0
    assert service.stats["blocks_stored"] == 5

    async def reader(client: ChannelEnd) -> None:
        block = await fetching.fetch_block(client, owner, segs[0].identity, 1)
        assert block == segs[0].blocks[1]
        nonce = bytes(16)
        leaves = audit.challenged_leaves(nonce, len(block))
        proof = await fetching.challenge(
            client, owner, segs[0].identity, 1, leaves=leaves, nonce=nonce
        )
        assert audit.check_proof(segs[0].roots[1], len(block), nonce, leaves, proof)
        assert await fetching.list_backups(client, owner) == (BACKUP,)
        data = await fetching.fetch_manifest(client, owner, BACKUP)
        assert manifest.Manifest.decode(data).segment_count == 5
        with pytest.raises(NotHeld, match="not_held"):
            await fetching.fetch_block(client, owner, segs[0].identity, 2)
        with pytest.raises(NotHeld, match="not_held"):
            await fetching.challenge(client, owner, segs[0].identity, 1, leaves=(999,), nonce=nonce)
        with pytest.raises(NotHeld, match="not_held"):
            await fetching.fetch_manifest(client, owner, b"X" * 16)

    await with_holder(service, OTHER, reader)  # any member reads

    async def owner_again(client: ChannelEnd) -> None:
        await request(client, messages.ShardRenew((BACKUP,), 99.0))
        await client.send(
            envelope.encode(messages.ShardRef(b"C" * 16, 60.0, segs[0].identity + b"z" * 32))
        )
        from plexinode.shards.uploading import receive_message

        stored = await receive_message(client, messages.ShardStored)
        assert stored.stored == segs[0].identity
        assert stored.refused == b"z" * 32
        await request(client, messages.ShardRemove(BACKUP))

    await with_holder(service, OWNER, owner_again)
    assert list(store.blocks) == [(owner, segs[0].identity, 1)]  # still used by backup C


async def test_offers_over_quota_and_corrupt_blocks_are_refused() -> None:
    service = HolderService(MemoryStore(quota=100))

    async def offer(client: ChannelEnd) -> None:
        with pytest.raises(HolderRefused, match="node_full"):
            async with open_share_upload(
                client, backup_id=BACKUP, home=BACKUP, lease_expires=5.0, index=0, size_hint=1000
            ):
                pass

    await with_holder(service, OWNER, offer)
    assert service.stats["offers_refused"] == 1

    service = HolderService(MemoryStore())
    seg = segments(1)[0]
    forged = pipeline.EncodedSegment(seg.identity, seg.length, seg.blocks, (bytes(32),) * 4)

    async def corrupt(client: ChannelEnd) -> None:
        async with open_share_upload(
            client, backup_id=BACKUP, home=BACKUP, lease_expires=5.0, index=0
        ) as up:
            await up.send(forged)
            with pytest.raises(HolderRefused, match="bad_root"):
                await up.drain()

    await with_holder(service, OWNER, corrupt)
    assert service.stats["blocks_refused"] == 1


async def test_manifests_must_be_the_peers_and_well_formed() -> None:
    store = MemoryStore()
    service = HolderService(store)
    segs = segments(1)

    async def other_owner(client: ChannelEnd) -> None:
        # OTHER sends OWNER's manifest as its own: refused, the pieces must name the peer.
        reply = await send_manifest(client, signed_manifest(segs, owner=OWNER), OTHER.node_id.raw)
        assert (reply.ok, reply.reason) == (False, messages.Reason.BAD_MANIFEST)
        reply = await send_manifest(client, b"\x93garbage", OTHER.node_id.raw)
        assert (reply.ok, reply.reason) == (False, messages.Reason.BAD_MANIFEST)

    await with_holder(service, OTHER, other_owner)
    assert store.manifests == {}
    assert service.stats["manifests_refused"] == 2

    async def wrong_pieces(client: ChannelEnd) -> None:
        await client.send(
            envelope.encode(messages.ShardManifest(OWNER.node_id.raw, BACKUP, 0, 5, b"abc"))
        )

    async def past_the_total(client: ChannelEnd) -> None:
        piece = messages.ShardManifest(OTHER.node_id.raw, BACKUP, 0, 2, b"abc")
        await client.send(envelope.encode(piece))

    await with_holder(service, OTHER, wrong_pieces)
    await with_holder(service, OTHER, past_the_total)
    assert service.stats["protocol_errors"] == 2


async def test_a_response_sent_as_a_request_or_garbage_ends_the_stream() -> None:
    service = HolderService(MemoryStore())
    for frame in (envelope.encode(messages.ShardReply(True, "", "")), b"\xc1"):

        async def send(client: ChannelEnd, frame: bytes = frame) -> None:
            await client.send(frame)
            with pytest.raises(trio.EndOfChannel):
                await client.receive()

        await with_holder(service, OWNER, send)
    assert service.stats["protocol_errors"] == 2


async def test_reads_are_rate_limited_per_peer() -> None:
    store = MemoryStore()
    clock = [0.0]
    service = HolderService(store, clock=lambda: clock[0], read_rate=1000, read_burst=150_000)
    seg = segments(1)[0]
    await store.put(
        [
            Block(
                OWNER.node_id.raw, BACKUP, BACKUP, 9.0, seg.identity, 0, seg.roots[0], seg.blocks[0]
            )
        ]
    )

    async def reader(client: ChannelEnd) -> None:
        owner = OWNER.node_id.raw
        assert await fetching.fetch_block(client, owner, seg.identity, 0) == seg.blocks[0]
        with pytest.raises(NotHeld, match="busy"):
            await fetching.fetch_block(client, owner, seg.identity, 0)
        with pytest.raises(NotHeld, match="busy"):
            await fetching.challenge(
                client, owner, seg.identity, 0, leaves=tuple(range(12)), nonce=bytes(16)
            )
        clock[0] = 1000.0
        assert await fetching.fetch_block(client, owner, seg.identity, 0) == seg.blocks[0]
        await store.put_manifest(owner, BACKUP, b"m" * 300_000, 1.0)
        with pytest.raises(NotHeld, match="busy"):
            await fetching.fetch_manifest(client, owner, BACKUP)

    await with_holder(service, OTHER, reader)
    assert service.stats["reads_refused_rate"] == 3


async def test_an_owner_reads_its_own_shares_at_its_own_higher_rate() -> None:
    store = MemoryStore()
    service = HolderService(
        store,
        clock=lambda: 0.0,
        read_rate=1000,
        read_burst=150_000,
        owner_read_rate=1000,
        owner_read_burst=10**7,
    )
    seg = segments(1)[0]
    owner = OWNER.node_id.raw
    await store.put(
        [Block(owner, BACKUP, BACKUP, 9.0, seg.identity, 0, seg.roots[0], seg.blocks[0])]
    )

    async def own(client: ChannelEnd) -> None:
        for _ in range(5):  # past a member's burst, within the owner's
            assert await fetching.fetch_block(client, owner, seg.identity, 0) == seg.blocks[0]

    async def member(client: ChannelEnd) -> None:
        assert await fetching.fetch_block(client, owner, seg.identity, 0) == seg.blocks[0]
        with pytest.raises(NotHeld, match="busy"):
            await fetching.fetch_block(client, owner, seg.identity, 0)

    await with_holder(service, OWNER, own)
    await with_holder(service, OTHER, member)  # the owner's reads took nothing of its budget
    assert service.stats["reads_refused_rate"] == 1


async def test_the_last_window_is_committed_when_the_stream_ends() -> None:
    store = MemoryStore()
    service = HolderService(store)
    seg = segments(1, size=1000)[0]

    async def no_flush(client: ChannelEnd) -> None:
        block = seg.blocks[0]
        put = messages.ShardPut(
            BACKUP, BACKUP, 5.0, seg.identity, 0, seg.roots[0], len(block), 0, block, False
        )
        await client.send(envelope.encode(put))

    await with_holder(service, OWNER, no_flush)
    assert (OWNER.node_id.raw, seg.identity, 0) in store.blocks


def test_peer_ids_are_node_ids() -> None:
    assert NodeId.from_public_key(OWNER.public_key) == OWNER.node_id
