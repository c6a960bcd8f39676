"""A bounded memory of the Ed25519 signatures already verified (sans-I/O).

Checking an Ed25519 signature costs some 50 to 100 µs, more than anything else a node does with
a membership claim. The same signed statement can reach one process many times: in a
simulation, hundreds of nodes share one process, and every one of them hears every claim. A
:class:`VerifiedSignatures` remembers the signatures that verified, so that a statement is
checked once per process rather than once per hearing.

Invariants it keeps:

1. **Nothing unverified is ever accepted.** Only a signature that verified is remembered; a
   failure is not (the next attempt checks again, and fails again).
2. **A hit needs the same key, the same message and the same signature.** An entry is the
   BLAKE2b-256 hash (personalised for this use) of the 32-byte public key, the 64-byte signature
   and the message, in that order: the two fixed lengths make the concatenation unambiguous,
   and a different key, message or signature shares an entry only through a BLAKE2b collision
   (some 2**128 work to find). A key or signature of any other length is never looked up (it
   cannot verify) and is refused at once, as the real check would refuse it.
3. **Bounded memory.** At most ``capacity`` entries, the least recently used leaving first; an
   entry is a 32-byte digest, some 150 bytes with its bookkeeping (600 KB for 4,096 entries),
   whatever the length of the message.
"""

from __future__ import annotations

import collections
import hashlib
from typing import Final

from plexinode.errors import AuthenticationError
from plexinode.identity import PUBLIC_KEY_BYTES, SIGNATURE_BYTES, verify_signature

_PERSON: Final = b"plexinode-sigok"


class VerifiedSignatures:
    """An LRU set of verified ``(public key, message, signature)`` triples.

    Args:
        capacity: Most triples remembered (at least 1).

    Attributes:
        hits: Checks answered from memory.
        misses: Checks that ran the real verification (whether or not it passed).
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("a signature cache holds at least one entry")
        self.capacity = capacity
        self._seen: collections.OrderedDict[bytes, None] = collections.OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._seen)

    def verify(self, public_key: bytes, message: bytes, signature: bytes) -> None:
        """Check `signature` of `message` by `public_key`, from memory if it verified before.

        Raises:
            AuthenticationError: The signature is not valid.
        """
        if len(public_key) != PUBLIC_KEY_BYTES or len(signature) != SIGNATURE_BYTES:
            self.misses += 1
            raise AuthenticationError("bad signature")  # what the real check says of it
        digest = hashlib.blake2b(public_key, digest_size=32, person=_PERSON)
        digest.update(signature)
        digest.update(message)
        entry = digest.digest()
        if entry in self._seen:
            self._seen.move_to_end(entry)
            self.hits += 1
            return
        self.misses += 1
        verify_signature(public_key, message, signature)
        self._seen[entry] = None
        if len(self._seen) > self.capacity:
            self._seen.popitem(last=False)

    def clear(self) -> None:
        """Forget every signature (the counters stay)."""
        self._seen.clear()
