"""The keyring service: carries out network key rotations (trio driver of
:mod:`plexinode.security.rotation`, whose docstring explains the design).

It keeps the node's keyring in step with the network's key plan, answers other members'
``keyring/1`` requests (only for holders of a valid member grant, as the network's authority
says: plexinode.security.authority_service), and advertises the node's key ids in its
``keys`` tag. The operator's commands (``network key install|use|remove``) run on a node that
holds the admin role and rewrite the plan in the replicated cluster state, which members
accept only from such a node; every member then acts on it.
"""

from __future__ import annotations

import collections
import logging
import random
from collections.abc import Callable, Sequence
from typing import Any, Final

import trio

from plexinode.errors import AuthenticationError, DecodeError
from plexinode.identity import NodeId
from plexinode.membership.members import State
from plexinode.membership.service import MembershipService, Seed
from plexinode.membership.state import StateEntry
from plexinode.net.certificates import ADMIN
from plexinode.net.keyring import Keyring, key_id
from plexinode.net.secure import SecureStream
from plexinode.security.authority_service import EXCHANGE_FAILURES, AuthorityService
from plexinode.security.rotation import (
    KEYRING_PROTOCOL,
    KEYS_TAG,
    PLAN_KEY,
    REFUSED,
    RESERVED_STATE_PREFIX,
    KeyringReply,
    KeyringRequest,
    Plan,
    keys_tag,
    open_reply,
    progress,
    reconcile,
    reply_to,
    request_for,
    tagged_keys,
)
from plexinode.wire import envelope
from plexinode.wire.codec import FRAME_LIMITS

log = logging.getLogger(__name__)

#: How often the keyring is compared with the plan, seconds.
CHECK_INTERVAL: Final = 1.0
#: Longest one keyring/1 exchange may take, seconds.
FETCH_TIMEOUT: Final = 10.0
#: Members asked per attempt to fetch keys.
FETCH_PEERS: Final = 3
#: First and longest wait between attempts to fetch keys (doubling in between), seconds.
RETRY_FIRST: Final = 2.0
RETRY_MAX: Final = 30.0
#: How long a node that knows no live member waits before it asks whether it missed a
#: rotation, seconds.
ISOLATED_AFTER: Final = 3.0


class KeyringService:
    """Rotations of the network keys, carried out on this node.

    Args:
        keyring: This node's keyring (shared with its datagram and stream services, so a
            change applies at once).
        membership: The membership service (plan, tags, members).
        save: Called after every change of the keyring (writes it to the data dir).
        rng: Which members to ask.
    """

    def __init__(
        self,
        keyring: Keyring,
        membership: MembershipService,
        *,
        save: Callable[[Keyring], None] = lambda keyring: None,
        rng: random.Random | None = None,
    ) -> None:
        self.keyring = keyring
        self.membership = membership
        self.streams = membership.streams
        self.identity = membership.identity
        #: A private network's authority (set once it runs): who may have the keys, and who
        #: may write the key plan. None: nobody (an open network has no secret keys).
        self.authority: AuthorityService | None = None
        self._save = save
        self._rng = rng or random.Random()
        self._retry_at = 0.0
        self._retry_delay = RETRY_FIRST
        self._alone_since: float | None = None
        #: Fetches, grants, refusals and plan changes carried out, for status and tests.
        self.stats: collections.Counter[str] = collections.Counter()
        membership.state_guard = self.guard_state

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve and reconcile until cancelled."""
        self.streams.on(KEYRING_PROTOCOL, self._serve, retired_ok=True)
        task_status.started()
        await self.membership.ready.wait()
        while True:
            try:
                await self.step()
            except Exception:
                # A bug in one step must not take the node down; the next step retries.
                self.stats["step_error"] += 1
                log.exception("keyring step failed")
            await trio.sleep(CHECK_INTERVAL)

    # -- reconciling ---------------------------------------------------------------------------

    def guard_state(self, entry: StateEntry) -> str | None:
        """Why a ``net.`` entry heard from the network must not be merged, or None: only a
        private network's admins write there (an admin's node, signing with its own key),
        so no member can steer the key plan."""
        if not entry.key.startswith(RESERVED_STATE_PREFIX):
            return None
        if not self._is_admin(entry.writer):
            self.stats["state_not_admin"] += 1
            return "a write by a node that does not hold the admin role"
        return None

    def _is_admin(self, key: bytes) -> bool:
        return self.authority is not None and bool(self.authority.holds(key, ADMIN))

    def plan(self) -> Plan | None:
        """The network's key plan, if one was written (and is well formed) by a node that
        holds the admin role now (so a plan written by a node revoked since is dropped)."""
        entry = self.membership.state.get(PLAN_KEY)
        if entry is None or entry.deleted:
            return None
        if not self._is_admin(entry.writer):
            self.stats["plan_not_admin"] += 1
            return None
        try:
            return Plan.decode(entry.value)
        except DecodeError:
            self.stats["plan_malformed"] += 1
            return None

    async def step(self) -> None:
        """Bring the keyring one step closer to the plan, advertise it, and ask for the current
        keys when this node seems cut off by a rotation it missed."""
        now = trio.current_time()
        plan = self.plan()
        if plan is not None:
            steps = reconcile(self.keyring, plan)
            if steps.fetch and now >= self._retry_at:
                await self.fetch(self._holders(steps.fetch))
                steps = reconcile(self.keyring, plan)
            changed = False
            if steps.use is not None:
                self.keyring.use(steps.use)
                log.info("now sending with network key %s", key_id(steps.use))
                changed = True
            for key in steps.retire:
                self.keyring.remove(key)
                log.info("retired network key %s", key_id(key))
                changed = True
            if changed:
                self._changed()
        await self._rescue_if_isolated(now)
        self._advertise()

    def _changed(self) -> None:
        self.stats["keyring_changed"] += 1
        self._save(self.keyring)

    def _advertise(self) -> None:
        tag = keys_tag(self.keyring)
        tags = self.membership.tags
        if tags.get(KEYS_TAG) != tag:
            self.membership.set_tags({**tags, KEYS_TAG: tag})

    def _holders(self, wanted: Sequence[str]) -> list[Seed]:
        """Members to ask for `wanted` keys: live ones that list one of them, else any live."""
        table = self.membership.table
        if table is None:
            return []
        live = [m for m in table.members() if m.state is State.ALIVE and m.node_id != table.own_id]
        having = [m for m in live if set(wanted) & set(tagged_keys(m.tags))]
        chosen = having or live
        self._rng.shuffle(chosen)
        return [Seed(m.address, m.node_id) for m in chosen[:FETCH_PEERS]]

    async def _rescue_if_isolated(self, now: float) -> None:
        """A private network's member that knows no live member for a while may have missed a
        whole rotation: ask members it believes dead, and its seeds, for the current keys."""
        table = self.membership.table
        if table is None or not self.keyring.private or table.others_live:
            self._alone_since = None
            return
        if self._alone_since is None:
            self._alone_since = now
        if now - self._alone_since < ISOLATED_AFTER or now < self._retry_at:
            return
        candidates = [
            Seed(m.address, m.node_id)
            for m in table.members()
            if m.node_id != table.own_id and m.state is not State.LEFT
        ]
        candidates += [s for s in self.membership.seeds() if s.node_id != table.own_id]
        self._rng.shuffle(candidates)
        if await self.fetch(candidates[:FETCH_PEERS], adopt_primary=True):
            self.stats["rescued"] += 1
            log.info("fetched the current network keys after missing a rotation")

    # -- fetching ------------------------------------------------------------------------------

    async def fetch(self, peers: Sequence[Seed], *, adopt_primary: bool = False) -> bool:
        """Ask `peers` in turn for the keys this node lacks (keyring/1).

        Each outcome is counted in :attr:`stats` (``fetch_failed``, ``fetch_refused``,
        ``fetch_bad_key``, ``fetched``); after a round that got nothing, the next is put off
        with a doubling delay.

        Args:
            peers: Whom to ask, in order.
            adopt_primary: Also send with the granting peer's primary key.

        Returns:
            True once one peer granted new keys.
        """
        for peer in peers:
            if adopt_primary and self.authority is not None:
                # The plan may have been written by a node made admin while this one was away:
                # learn the statements first, so that the plan can be judged.
                await self.authority.reconcile(peer)
            try:
                reply = await self._ask(peer)
            except EXCHANGE_FAILURES as exc:
                self.stats["fetch_failed"] += 1
                log.debug("keyring/1 with %s failed: %s", peer.address, exc)
                continue
            if not reply.granted:
                self.stats["fetch_refused"] += 1
                continue
            try:
                keys = open_reply(self.identity, reply)
            except AuthenticationError as exc:
                self.stats["fetch_bad_key"] += 1
                log.warning("%s delivered a bad network key: %s", peer.address, exc)
                continue
            plan = self._plan_for(reply, rescue=adopt_primary)
            if plan is None:
                self.stats["fetch_no_plan"] += 1
                continue
            # Only the keys an admin's plan names: a member cannot slip in a key of its own.
            keys = {ident: key for ident, key in keys.items() if ident in plan.keys}
            if self._install(keys, plan.primary if adopt_primary else None):
                self.stats["fetched"] += 1
                self._retry_delay = RETRY_FIRST
                return True
        self._retry_at = trio.current_time() + self._retry_delay
        self._retry_delay = min(self._retry_delay * 2, RETRY_MAX)
        return False

    def _plan_for(self, reply: KeyringReply, *, rescue: bool) -> Plan | None:
        """The plan the keys of `reply` must belong to: this node's own, or, for a member that
        missed a rotation, the newer plan the reply carries if an admin signed it."""
        own = self.plan()
        if not rescue or not reply.plan:
            return own
        entry = reply.plan[0]
        current = self.membership.state.get(PLAN_KEY)
        if current is not None and (current.wall_ms, current.counter) >= (
            entry.wall_ms,
            entry.counter,
        ):
            return own
        try:
            entry.verify_signature()
            if entry.key != PLAN_KEY or entry.deleted or not self._is_admin(entry.writer):
                raise AuthenticationError("not an admin's key plan")
            return Plan.decode(entry.value)
        except (AuthenticationError, DecodeError) as exc:
            self.stats["fetch_bad_plan"] += 1
            log.warning("a keyring/1 reply carried a key plan that is refused: %s", exc)
            return own

    async def _ask(self, peer: Seed) -> KeyringReply:
        with trio.fail_after(FETCH_TIMEOUT):
            stream = await self.streams.open(peer.address, KEYRING_PROTOCOL, node_id=peer.node_id)
            async with stream:
                await stream.send(envelope.encode(request_for(self.keyring)))
                message = envelope.decode(await stream.receive(), FRAME_LIMITS).message
        if not isinstance(message, KeyringReply):
            raise DecodeError(f"keyring/1 expected keyring-reply, got {message.NAME}")
        return message

    def _install(self, keys: dict[str, bytes], primary: str | None) -> bool:
        new = [k for k in keys.values() if k not in self.keyring]
        for key in new:
            try:
                self.keyring.install(key)
            except ValueError as exc:  # full: the plan will retire old keys first
                log.warning("cannot install network key %s: %s", key_id(key), exc)
                break
        target = next((k for k in self.keyring if key_id(k) == primary), None)
        if target is not None and target != self.keyring.primary:
            self.keyring.use(target)
        changed = bool(new) or target is not None
        if changed:
            log.info("received network keys %s", ", ".join(key_id(k) for k in new) or "none new")
            self._changed()
        return bool(new)

    async def _serve(self, stream: SecureStream) -> None:
        with trio.move_on_after(FETCH_TIMEOUT):
            message = envelope.decode(await stream.receive(), FRAME_LIMITS).message
            if not isinstance(message, KeyringRequest):
                self.stats["request_malformed"] += 1
                return
            asker = stream.remote_node_id
            if self.entitled(stream.remote_public_key):
                plan = self.membership.state.get(PLAN_KEY)
                reply = reply_to(self.keyring, message, stream.remote_public_key, plan)
                self.stats["granted"] += 1
                if reply.keys:
                    log.info("sent %d network key(s) to %s", len(reply.keys), asker.short())
            else:
                reply = REFUSED
                self.stats["refused"] += 1
                log.info("refused network keys to %s (not a member, or revoked)", asker.short())
            await stream.send(envelope.encode(reply))

    def entitled(self, public_key: bytes) -> bool:
        """Whether the node of `public_key` may have the network's keys: it holds a valid
        member grant and is not revoked."""
        return self.authority is not None and self.authority.admits(public_key)

    def revoked(self, node_id: NodeId) -> bool:
        """Whether the member `node_id` is revoked (as far as this node knows its key)."""
        key = self.membership.evidence.public_key(node_id)
        return (
            self.authority is not None
            and key is not None
            and self.authority.authority.is_revoked(key)
        )

    # -- the operator's commands ---------------------------------------------------------------

    def _write_plan(self, plan: Plan) -> None:
        self.membership.set_state(PLAN_KEY, plan.encode())
        self.stats["plan_written"] += 1
        log.info("new network key plan: keys %s, primary %s", ", ".join(plan.keys), plan.primary)

    def _current_plan(self) -> Plan:
        return self.plan() or Plan.of(self.keyring)

    def install(self, key: bytes) -> None:
        """Step 1: this node accepts `key` now; every member fetches it.

        Raises:
            ValueError: The keyring is full, or the plan would name too many keys.
        """
        plan = self._current_plan().with_key(key_id(key))
        if self.keyring.install(key):
            self._changed()
        self._write_plan(plan)
        self._advertise()

    def use(self, key: bytes, *, force: bool = False) -> None:
        """Step 2: every member sends with `key` (installed on every live member first, unless
        `force`).

        Raises:
            ValueError: The key is not installed here, or not yet on every live member.
        """
        ident = key_id(key)
        plan = self._current_plan().with_key(ident)
        counts = self.progress(plan)[ident]
        if not force and counts["holders"] < counts["members"]:
            raise ValueError(
                f"key {ident} is installed on {counts['holders']} of {counts['members']} live "
                "members: wait until `network key list` shows all of them (or use --force; "
                "members without it are cut off until they fetch it)"
            )
        self.keyring.use(key)
        self._changed()
        self._write_plan(Plan(plan.keys, ident))
        self._advertise()

    def remove(self, key: bytes) -> None:
        """Step 3: every member stops accepting `key` (it keeps it retired).

        Raises:
            ValueError: It is the primary key here or in the plan.
        """
        plan = self._current_plan().without_key(key_id(key))
        self.keyring.remove(key)
        self._changed()
        self._write_plan(plan)
        self._advertise()

    def progress(self, plan: Plan | None = None) -> dict[str, dict[str, int]]:
        """Per key of the plan: live, unrevoked members holding it and sending with it."""
        plan = plan or self._current_plan()
        members = [
            m.tags
            for m in self.membership.members()
            if m.state is State.ALIVE and not self.revoked(m.node_id)
        ]
        return progress(plan, members)

    def describe(self) -> dict[str, Any]:
        """The keyring, the plan and its progress, as ``network key list`` shows them."""
        plan = self.plan()
        counts = self.progress(plan)
        keys = self.keyring.describe()
        held = {entry["key_id"] for entry in keys}
        for entry in keys:
            entry.update(counts.get(str(entry["key_id"]), {}))
        return {
            "plan": None if plan is None else {"keys": list(plan.keys), "primary": plan.primary},
            "keys": keys,
            "pending": [k for k in (plan.keys if plan else ()) if k not in held],
            "stats": dict(self.stats),
        }
