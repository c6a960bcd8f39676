"""One-line tokens (plexinode.wire.tokens): the shared text form of invites and tickets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plexinode.wire.tokens import decode_token, encode_token


class Bad(Exception):
    pass


def decode(text: str, what: str = "ticket") -> bytes:
    return decode_token(text, "px-1:", max_chars=40, what=what, error=Bad)


@given(st.binary(max_size=25))
def test_tokens_round_trip_and_ignore_whitespace(raw: bytes) -> None:
    token = encode_token("px-1:", raw)
    assert "=" not in token
    assert decode(token) == raw
    assert decode(" \n".join(token[i : i + 7] for i in range(0, len(token), 7))) == raw


@pytest.mark.parametrize(
    ("text", "what", "message"),
    [
        ("px-1:" + "A" * 40, "ticket", "a ticket is at most 40 characters"),
        ("px-2:AAAA", "ticket", "not a ticket (it should start with 'px-1:')"),
        ("px-2:AAAA", "invite token", "not an invite token"),
        ("px-1:A", "ticket", "the ticket is damaged"),
        ("px-1:AA*A", "invite token", "the invite token is damaged"),
    ],
)
def test_bad_tokens_are_one_line_errors(text: str, what: str, message: str) -> None:
    with pytest.raises(Bad, match=message.replace("(", r"\(").replace(")", r"\)")):
        decode(text, what)
