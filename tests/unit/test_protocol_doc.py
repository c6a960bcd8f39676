"""docs/protocol.md states the versions and handshake sizes the code uses."""

from __future__ import annotations

import re
from pathlib import Path

from plexinode.net import cookie, handshake, packet
from plexinode.wire import envelope

DOC = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()


def test_the_versions_in_the_document_are_the_codes() -> None:
    assert (
        f"Versions: datagram packets {packet.VERSION}, stream handshakes {handshake.VERSION}" in DOC
    )
    assert f"message envelopes {envelope.PROTOCOL_VERSION}." in DOC
    assert f"0       1     version = {packet.VERSION}" in DOC
    assert f"| `VERSION` | `{handshake.VERSION}` (1 byte) |" in DOC
    assert f"| 4 | 1 | `VERSION` = `{handshake.VERSION}` |" in DOC


def test_the_handshake_message_sizes_in_the_document_are_the_codes() -> None:
    sizes = {
        int(name[-1]): int(size)
        for name, size in re.findall(r"#### (msg\d), \w+ → \w+ \((\d+) bytes\)", DOC)
    }
    assert sizes == {
        1: handshake.MSG1_BYTES,
        2: handshake.MSG2_BYTES,
        3: handshake.MSG3_BYTES,
    }
    assert f"all {handshake.MSG1_BYTES} bytes of msg1" in DOC
    assert f"msg1[0:{handshake.MSG1_BYTES - cookie.MAC2_BYTES}]" in DOC  # what mac2 covers
    assert f"#### cookie reply, responder → initiator ({cookie.COOKIE_REPLY_BYTES} bytes)" in DOC
    assert f"A {cookie.COOKIE_REPLY_BYTES}-byte message in place of msg2" in DOC
