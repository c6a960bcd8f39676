"""Placing a backup's shares: offers to live members in the placement plan's order.

The candidates are the live members (the owner left out); the placement plan
(`placement.PlacementPlan`: rendezvous order on the backup's ID, spread over hosts) offers share
indices one by one. Each offer is a ``shards/1`` stream and a ``shard-offer``: a refusal (for
quota) or a member that cannot be reached moves the index to the next candidate. The streams
opened stay open on the caller's exit stack, for the upload that follows.
"""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Final

import trio

from plexinode.identity import NodeId
from plexinode.net.address import Address
from plexinode.net.streams import STREAM_FAILURES, StreamService
from plexinode.shards import deadlines, messages
from plexinode.shards.backup_job import BackupFailed, HolderLink
from plexinode.shards.placement import Candidate, Coding, PlacementPlan, PlacementRequest
from plexinode.shards.uploading import HolderRefused, open_share_upload

log = logging.getLogger(__name__)

#: Segments in flight per holder.
WINDOW: Final = 16


@dataclass(frozen=True, slots=True)
class Peer:
    """A live member: where to reach it, and its `zone` tag."""

    node_id: NodeId
    address: Address
    zone: str = ""


async def place_shares(
    stack: AsyncExitStack,
    streams: StreamService,
    backup_id: bytes,
    *,
    owner: NodeId,
    lease: float,
    coding: Coding,
    peers: dict[NodeId, Peer],
    share_bytes: int,
) -> dict[int, HolderLink]:
    plan = PlacementPlan(
        PlacementRequest(
            key=backup_id,
            owner=owner,
            candidates=tuple(Candidate(p.node_id, p.address.host, p.zone) for p in peers.values()),
            indices=tuple(range(coding.n)),
            happy=coding.happy,
        )
    )
    links: dict[int, HolderLink] = {}
    while offers := plan.offers():
        for offer in offers:
            node = offer.holder.node_id
            try:
                with trio.fail_after(deadlines.CONNECT_SECONDS):
                    stream = await streams.open(
                        peers[node].address, messages.SHARDS_PROTOCOL, node_id=node
                    )
                stack.push_async_callback(deadlines.close_soon, stream)
                upload = await stack.enter_async_context(
                    open_share_upload(
                        stream,
                        backup_id=backup_id,
                        home=backup_id,
                        lease_expires=lease,
                        index=offer.index,
                        window=WINDOW,
                        size_hint=share_bytes,
                    )
                )
            except (HolderRefused, *STREAM_FAILURES) as exc:
                log.info("backup: %s refused share %d: %s", node.short(), offer.index, exc)
                plan.refused(node)
                continue
            plan.accepted(node)
            links[offer.index] = HolderLink(str(node), upload)
    result = plan.result()
    if not result.met:
        raise BackupFailed(f"not enough members accept shares: {result.refusal}")
    return links
