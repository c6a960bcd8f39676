"""The repair claims a holder grants (sans-I/O)."""

from __future__ import annotations

from plexinode.shards.repair_intake import CLAIM_SECONDS, Claims

OWNER, H = b"o" * 32, b"h" * 16


def test_a_claim_holds_for_its_claimant_until_it_lapses_or_is_released() -> None:
    claims = Claims()
    assert claims.claim(OWNER, H, b"a", 0.0) is None
    assert claims.claim(OWNER, H, b"b", 1.0) == b"a"
    assert claims.claim(OWNER, H, b"a", 2.0) is None  # renewed
    assert claims.claim(OWNER, H, b"b", 2.0 + CLAIM_SECONDS) is None  # lapsed
    claims.release(OWNER, H, b"a")  # not its claim any more: nothing happens
    assert claims.claim(OWNER, H, b"a", 3.0 + CLAIM_SECONDS) == b"b"
    claims.release(OWNER, H, b"b")
    assert claims.claim(OWNER, H, b"a", 4.0 + CLAIM_SECONDS) is None


def test_a_full_table_forgets_lapsed_claims_first() -> None:
    claims = Claims(limit=2)
    assert claims.claim(OWNER, b"1" * 16, b"a", 0.0) is None
    assert claims.claim(OWNER, b"2" * 16, b"a", 10.0) is None
    assert claims.claim(OWNER, b"3" * 16, b"a", 20.0) == b""  # full, none lapsed
    assert claims.claim(OWNER, b"3" * 16, b"a", CLAIM_SECONDS + 5) is None  # the first lapsed
    assert claims.claim(OWNER, b"2" * 16, b"b", CLAIM_SECONDS + 5) == b"a"
