"""One-line tokens a person copies between machines: a prefix, then unpadded base64url.

Invite tokens of the open network (plexinode.membership.invite) and join tickets of private
networks (plexinode.security.tickets) share this text form; each checks its own contents.
"""

from __future__ import annotations

import base64
import binascii


def encode_token(prefix: str, raw: bytes) -> str:
    """`raw` as a token: `prefix`, then base64url without padding."""
    return prefix + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(
    text: str, prefix: str, *, max_chars: int, what: str, error: type[Exception]
) -> bytes:
    """The bytes a token carries. Whitespace anywhere (a token wrapped by a mail client) is
    ignored.

    Args:
        text: The token as pasted or read from a file.
        prefix: What the token must start with.
        max_chars: The longest token accepted.
        what: What the token is called in errors ("invite token", "ticket").
        error: The exception to raise.

    Raises:
        error: One line: too long, not this kind of token, or not base64url.
    """
    text = "".join(text.split())
    article = "an" if what[:1] in "aeiou" else "a"
    if len(text) > max_chars:
        raise error(f"{article} {what} is at most {max_chars} characters")
    if not text.startswith(prefix):
        raise error(f"not {article} {what} (it should start with {prefix!r})")
    body = text[len(prefix) :]
    try:
        return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        raise error(f"the {what} is damaged (was it copied whole?)") from None
