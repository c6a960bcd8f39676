"""A node with a data dir holds shares over shards/1, on the in-memory network."""

from __future__ import annotations

import random

import trio

from plexinode.net.address import Address
from plexinode.node import Node
from plexinode.shards import fetching, pipeline
from plexinode.shards.messages import SHARDS_PROTOCOL
from plexinode.shards.uploading import open_share_upload
from plexinode.testing.network import open_memory_network
from plexinode.testing.nodes import FAST, seeded_identity


async def test_a_node_holds_and_serves_shares_and_reports_them(tmp_path, autojump_clock) -> None:
    autojump_clock.autojump_threshold = 0.5  # the holder's database is a file (worker threads)
    async with open_memory_network(seed=5) as net:
        hosts = [net.new_host() for _ in range(2)]
        (tmp_path / "holder").mkdir(mode=0o700)
        owner = Node(
            seeded_identity(0), FAST, net.transport(hosts[0]), wall_clock=trio.current_time
        )
        holder = Node(
            seeded_identity(1),
            FAST,
            net.transport(hosts[1]),
            data_dir=tmp_path / "holder",
            wall_clock=lambda: 1_000_000.0 + trio.current_time(),
        )
        seg = pipeline.encode_segment(bytes(32), random.Random(1).randbytes(200_000), 2, 3)
        async with trio.open_nursery() as nursery:
            await nursery.start(owner.run)
            await nursery.start(holder.run)
            address = Address(hosts[1], FAST.listen.port)
            stream = await owner.streams.open(address, SHARDS_PROTOCOL, node_id=holder.node_id)
            async with open_share_upload(
                stream, backup_id=b"B" * 16, home=b"B" * 16, lease_expires=2e6, index=1
            ) as up:
                await up.send(seg)
                await up.drain()
                assert up.stored == [seg.identity]
            await stream.aclose()
            status = await holder.status()
            assert status["storage"]["used_bytes"] == len(seg.blocks[1])
            assert status["shards"]["blocks_stored"] == 1
            assert status["shards"]["owners"] == 1
            stream = await owner.streams.open(address, SHARDS_PROTOCOL, node_id=holder.node_id)
            block = await fetching.fetch_block(stream, owner.node_id.raw, seg.identity, 1)
            assert block == seg.blocks[1]
            await stream.aclose()
            owner.stop()
            holder.stop()
