"""A private network's statements as a set that members reconcile (sans-I/O).

The authority of a private network (:mod:`plexinode.net.authority`) decides from the grants and
revocations a node holds. For every member to decide alike, every member must come to hold the
same statements: they form a grow-only set that members reconcile in pairs, as the cluster
state is, but with no last-writer-wins anywhere: a statement, once held, is never replaced or
undone by another (a revocation in particular stays for good, docs/decisions.md 34).

:class:`StatementSet` wraps the authority with what reconciliation needs:

- each statement's **hash** (BLAKE2b-128 of its kind byte and its encoding), the name by which
  two members compare what they hold;
- a **summary**, the hash of every held statement's hash in order, so that two members that
  hold the same set learn it from 32 bytes;
- :meth:`StatementSet.add_many`, which adds statements in whatever order they arrive: an
  issuer's grant must be held before the statements it signed are accepted (so that nothing a
  stranger signed is ever kept), so it retries what was refused while anything new got in.

The exchange itself (``authority/1``, docs/protocol.md) is four messages on a secure stream::

    initiator -> responder   AuthorityDigest(summary, hashes=b"")
    responder -> initiator   AuthorityDigest(summary, hashes=b"" if the summaries match,
                                             else every hash it holds)
    initiator -> responder   AuthorityPush(statements the responder lacks, hashes it wants)
    responder -> initiator   AuthorityPush(the statements wanted, no wants)

At most :data:`MAX_BATCH` statements travel in one message; what is left goes in the next
round. The set only grows, but for *spent* grants (plexinode.net.authority: expired long
enough that no answer depends on them any more), which :meth:`StatementSet.prune` forgets and
:meth:`StatementSet.add_many` no longer takes back; it is capped by the authority's own limits
(grants and revocations each), and statements that cannot be verified are refused and
counted, never kept.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar, Final

from plexinode.errors import DecodeError
from plexinode.identity import Identity
from plexinode.net.authority import (
    MAX_GRANTS,
    MAX_REVOCATIONS,
    Authority,
    AuthorityError,
    is_spent,
)
from plexinode.net.certificates import (
    INVITER,
    LIMITS,
    MAX_LIFETIME,
    MAX_STATEMENT_BYTES,
    MEMBER,
    Grant,
    Revocation,
)
from plexinode.wire.schema import Bytes, ListOf, Message, register, wire

#: The stream protocol that reconciles statements.
AUTHORITY_PROTOCOL: Final = "authority/1"
#: Bytes of a statement's hash.
HASH_BYTES: Final = 16
#: Bytes of a set's summary.
SUMMARY_BYTES: Final = 32
#: Most statements in one message (the frame decoder's array cap is 256).
MAX_BATCH: Final = 256
#: Most hashes one digest lists: every statement the authority may hold.
MAX_HASHES: Final = MAX_GRANTS + MAX_REVOCATIONS
#: The first byte of an encoded statement says which kind it is.
GRANT_KIND: Final = 0
REVOCATION_KIND: Final = 1

Statement = Grant | Revocation


def encode_statement(statement: Statement) -> bytes:
    """A statement's bytes on the wire and in the database: its kind byte, then its msgpack."""
    kind = GRANT_KIND if isinstance(statement, Grant) else REVOCATION_KIND
    return bytes([kind]) + statement.to_bytes(LIMITS)


def decode_statement(data: bytes) -> Statement:
    """The statement `data` encodes (signature not checked yet).

    Raises:
        DecodeError: An unknown kind, or a malformed statement.
    """
    if not data or len(data) > MAX_STATEMENT_BYTES + 1:
        raise DecodeError(f"a statement is 2 to {MAX_STATEMENT_BYTES + 1} bytes")
    kind, body = data[0], data[1:]
    if kind == GRANT_KIND:
        return Grant.from_bytes(body, LIMITS)
    if kind == REVOCATION_KIND:
        return Revocation.from_bytes(body, LIMITS)
    raise DecodeError(f"unknown statement kind {kind}")


def statement_hash(encoded: bytes) -> bytes:
    """The hash of an encoded statement."""
    return hashlib.blake2b(encoded, digest_size=HASH_BYTES, person=b"px-statement").digest()


@register
@dataclass(frozen=True, slots=True)
class AuthorityDigest(Message):
    """``authority/1``: what a member holds, as a summary and, when asked for, every hash
    (concatenated, :data:`HASH_BYTES` each)."""

    TYPE: ClassVar[int] = 75
    NAME: ClassVar[str] = "authority-digest"
    summary: bytes = wire(Bytes(SUMMARY_BYTES, SUMMARY_BYTES))
    hashes: bytes = wire(Bytes(0, MAX_HASHES * HASH_BYTES))


@register
@dataclass(frozen=True, slots=True)
class AuthorityPush(Message):
    """``authority/1``: statements the other side lacks, and the hashes this side wants."""

    TYPE: ClassVar[int] = 76
    NAME: ClassVar[str] = "authority-push"
    statements: tuple[bytes, ...] = wire(ListOf(Bytes(2, MAX_STATEMENT_BYTES + 1), MAX_BATCH))
    wants: bytes = wire(Bytes(0, MAX_BATCH * HASH_BYTES))


def split_hashes(data: bytes) -> set[bytes]:
    """The hashes of a digest or a want list.

    Raises:
        DecodeError: Its length is not a multiple of :data:`HASH_BYTES`.
    """
    if len(data) % HASH_BYTES:
        raise DecodeError(f"a hash list is a multiple of {HASH_BYTES} bytes")
    return {data[i : i + HASH_BYTES] for i in range(0, len(data), HASH_BYTES)}


@dataclass(frozen=True, slots=True)
class Added:
    """What :meth:`StatementSet.add_many` did: the statements it kept (encoded, new ones only),
    and why each refused one was refused."""

    new: tuple[bytes, ...]
    refused: tuple[str, ...]
    #: Spent grants passed over (not kept, not refused: they no longer matter).
    spent: int = 0


class StatementSet:
    """The statements of one private network held by this node (module docstring)."""

    def __init__(self, authority: Authority) -> None:
        self.authority = authority
        #: Every held statement's encoding, by hash.
        self._held: dict[bytes, bytes] = {}
        self._summary: bytes | None = None
        #: Hashes of spent grants forgotten or passed over, not to be asked for again (at
        #: most MAX_HASHES remembered).
        self._spent: set[bytes] = set()
        #: The hash of every held grant, for pruning.
        self._grant_hashes: dict[Grant, bytes] = {}

    def __len__(self) -> int:
        return len(self._held)

    def __contains__(self, digest: object) -> bool:
        return digest in self._held

    def hashes(self) -> bytes:
        """Every held hash, sorted and concatenated (a digest's ``hashes``)."""
        return b"".join(sorted(self._held))

    def summary(self) -> bytes:
        """The summary of the held set (the same on every member that holds the same set)."""
        if self._summary is None:
            self._summary = hashlib.blake2b(
                self.hashes(), digest_size=SUMMARY_BYTES, person=b"px-stmt-summary"
            ).digest()
        return self._summary

    def encoded(self, hashes: Iterable[bytes]) -> list[bytes]:
        """The encodings of the held statements among `hashes`, at most :data:`MAX_BATCH`."""
        found = [self._held[h] for h in hashes if h in self._held]
        return sorted(found)[:MAX_BATCH]

    def lacking(self, theirs: set[bytes]) -> list[bytes]:
        """Encodings of held statements whose hashes are not in `theirs`, at most
        :data:`MAX_BATCH`: grants first, so that an issuer's grant travels before what it
        signed."""
        return self.encoded(h for h in self._held if h not in theirs)

    def wants(self, theirs: set[bytes]) -> bytes:
        """The hashes in `theirs` not held here (nor known to be spent), at most
        :data:`MAX_BATCH` (a want list)."""
        wanted = (h for h in theirs if h not in self._held and h not in self._spent)
        return b"".join(sorted(wanted)[:MAX_BATCH])

    def chain(self, key: bytes, now: float, limit: int) -> list[bytes]:
        """Encodings of the grants that make `key` hold its roles at `now`, and of the grants
        of their issuers up to the root (at most `limit`): what a joiner is handed with its
        own grant so that it can check it, and show it, before it has reconciled anything."""
        found: list[bytes] = []
        todo = [key]
        seen = {self.authority.root}
        while todo and len(found) < limit:
            subject = todo.pop()
            if subject in seen:
                continue
            seen.add(subject)
            for grant in self.authority.grants_of(subject):
                if grant.issued_at <= now < grant.expires_at and len(found) < limit:
                    found.append(encode_statement(grant))
                    todo.append(grant.issuer)
        return found

    def add_many(self, encoded: Iterable[bytes], now: float | None = None) -> Added:
        """Verify and keep what is new among `encoded` statements, in any order (module
        docstring). A statement refused for want of its issuer's grant is retried once any
        other statement got in. With `now`, grants spent at `now` are passed over."""
        pending: dict[bytes, bytes] = {}
        refused: list[str] = []
        for data in encoded:
            digest = statement_hash(data)
            if digest not in self._held:
                pending[digest] = data
        new: list[bytes] = []
        spent = 0
        while pending:
            reasons: dict[bytes, str] = {}
            progress = False
            for digest, data in sorted(pending.items(), key=lambda item: item[1]):
                try:
                    statement = decode_statement(data)
                    if (
                        now is not None
                        and isinstance(statement, Grant)
                        and is_spent(statement, now)
                    ):
                        self._forget(digest)
                        spent += 1
                        continue
                    self._add(statement)
                except (DecodeError, AuthorityError) as exc:
                    reasons[digest] = str(exc)
                    continue
                self._held[digest] = data
                if isinstance(statement, Grant):
                    self._grant_hashes[statement] = digest
                self._summary = None
                new.append(data)
                progress = True
            pending = {d: pending[d] for d in reasons}
            if not progress:
                refused.extend(reasons.values())
                break
        return Added(tuple(new), tuple(refused), spent)

    def prune(self, now: float) -> list[bytes]:
        """Forget the grants spent at `now`; the hashes of those forgotten."""
        digests = [self._grant_hashes.pop(grant) for grant in self.authority.prune(now)]
        for digest in digests:
            del self._held[digest]
            self._forget(digest)
        if digests:
            self._summary = None
        return digests

    def _forget(self, digest: bytes) -> None:
        if len(self._spent) >= MAX_HASHES:
            self._spent.clear()
        self._spent.add(digest)

    def _add(self, statement: Statement) -> None:
        if isinstance(statement, Grant):
            self.authority.add_grant(statement)
        else:
            self.authority.add_revocation(statement)


def make_grant(
    issuer: Identity,
    authority: Authority,
    subject: bytes,
    role: str,
    *,
    now: int,
    lifetime: int | None = None,
) -> Grant:
    """A grant of `role` to `subject` in `authority`'s network, signed by `issuer`, from `now`
    for `lifetime` seconds (the role's longest by default)."""
    lifetime = MAX_LIFETIME[role] if lifetime is None else lifetime
    unsigned = Grant(
        network=authority.network,
        root=authority.root,
        subject=subject,
        role=role,
        issued_at=now,
        expires_at=now + lifetime,
        issuer=issuer.public_key,
        signature=b"",
    )
    return unsigned.signed_by(issuer)


def make_revocation(
    issuer: Identity, authority: Authority, subject: bytes, now: int, *, void: bool = False
) -> Revocation:
    """A revocation of `subject` in `authority`'s network, signed by `issuer`, dated `now`."""
    unsigned = Revocation(
        authority.network, authority.root, subject, void, now, issuer.public_key, b""
    )
    return unsigned.signed_by(issuer)


def founding(root: Identity, network: str, node_key: bytes, now: int) -> tuple[bytes, ...]:
    """The statements a private network's first node holds, encoded: a member grant and an
    inviter grant for its key, signed by the network's new root key (so that it can invite
    with its own key while the root key is kept elsewhere)."""
    authority = Authority(network, root.public_key)
    return tuple(
        encode_statement(make_grant(root, authority, node_key, role, now=now))
        for role in (MEMBER, INVITER)
    )
