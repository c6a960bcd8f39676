"""Node IDs for unit tests."""

from __future__ import annotations

from plexinode.identity import NodeId


def nid(value: int) -> NodeId:
    """The node ID whose 256-bit big-endian value is `value` (so XOR distances are plain)."""
    return NodeId(value.to_bytes(32, "big"))
