"""``plexinode ping``: rounds of pings to one node, and a reason when none came back.

A round is one ping (plexinode.net.echo): a signed datagram and its pong, or an ``echo/1``
stream. :class:`Pinger` runs ``count`` rounds ``interval`` apart and reports the round trips
(the median, each one, how many were sent and answered). Whatever the outcome, it says what it
knows as soon as it knows it:

- a name is resolved first (plexinode.net.names), and a name that does not resolve fails at
  once; the first of its addresses that answers is the one pinged from then on;
- this node's own ID or address fails at once (nothing to measure);
- when a node ID is required (``--node``), the datagram ping is sent to whoever is there and
  the pong's signer compared: another node answering fails at once, naming it (an addressed
  ping would be ignored by that node, and look like silence);
- when every round failed, the failure is explained: a handshake the other side hung up on is
  another network, or a private network whose key this node lacks; after datagram silence one
  stream is tried, to tell "nothing listens there" (refused), "UDP is dropped on the way" (the
  stream works) and "no answer at all" apart.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import trio

from plexinode.errors import (
    HandshakeError,
    HandshakeRefused,
    NameNotResolved,
    PeerTimeout,
    PlexinodeError,
    RemoteProtocolError,
    WrongNode,
)
from plexinode.identity import NodeId
from plexinode.net import echo
from plexinode.net.address import Address, parse_ip
from plexinode.net.datagram import DatagramService
from plexinode.net.names import Resolver, ip_version, resolve
from plexinode.net.streams import StreamService
from plexinode.wire.messages import Ping

#: How a ping travels: a signed datagram and its pong, or an ``echo/1`` stream.
VIAS: Final = ("datagram", "stream")
#: At most this many rounds in one ``ping``.
MAX_COUNT: Final = 1000

#: What a failed round can raise: the node is silent, refuses us, or cannot be reached.
_ROUND_FAILURES: Final = (PeerTimeout, RemoteProtocolError, OSError)

_REFUSED_HANDSHAKE: Final = (
    "the node at {address} hung up on our handshake: it belongs to another network, or to a "
    "private network whose key this node does not hold, or it takes no more connections from "
    "this host for now (its stream limits)"
)


class NoAnswer(PlexinodeError):
    """No round of a ping was answered (the message says why, as far as it can be told)."""


@dataclass(frozen=True)
class PingOptions:
    """How to ping.

    Attributes:
        via: ``datagram`` or ``stream``.
        count: Rounds, 1 to :data:`MAX_COUNT`.
        interval: Seconds to wait after one round before the next.
        timeout: Seconds a round may take (None: the datagram service's own retries, or the
            stream handshake's timeout).
    """

    via: str = "datagram"
    count: int = 1
    interval: float = 1.0
    timeout: float | None = None

    def __post_init__(self) -> None:
        if self.via not in VIAS:
            raise ValueError(f"unknown ping transport {self.via!r}")
        if not 1 <= self.count <= MAX_COUNT:
            raise ValueError(f"count must be within 1..{MAX_COUNT}")
        if self.interval < 0:
            raise ValueError("interval must not be negative")
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError("timeout must be above 0")


class Pinger:
    """Pings other nodes from this one.

    Args:
        datagrams: This node's datagram service (its identity and socket).
        streams: This node's stream service.
        resolver: Resolves names given as the address.
        own_address: The address this node is bound to.
    """

    def __init__(
        self,
        datagrams: DatagramService,
        streams: StreamService,
        resolver: Resolver,
        own_address: Address,
    ) -> None:
        self._datagrams = datagrams
        self._streams = streams
        self._resolver = resolver
        self._own_address = own_address
        self._own_id = datagrams.identity.node_id

    async def ping(
        self, target: Address, node_id: NodeId | None = None, options: PingOptions | None = None
    ) -> dict[str, Any]:
        """Ping the node at `target` (which must be `node_id`, if given) `options.count` times.

        Returns:
            ``{"node_id", "address", "rtt_ms", "rtts_ms", "sent", "received", "via"}``
            (``rtt_ms`` the median; ``address`` the IP address that answered) and, over a
            stream, ``handshake_ms`` (the median).

        Raises:
            NameNotResolved: `target` is a name with no usable address.
            WrongNode: Another node than `node_id` answered.
            NoAnswer: No round was answered (the message says why, as far as it can be told).
            PlexinodeError: `target` or `node_id` is this node.
        """
        options = options or PingOptions()
        if node_id == self._own_id:
            raise PlexinodeError(f"{node_id} is this node's own ID")
        candidates = await resolve(
            self._resolver, target, version=ip_version(self._own_address.host)
        )
        for candidate in candidates:
            if self._is_own(candidate):
                raise PlexinodeError(f"{target} is this node's own address")
        rtts: list[float] = []
        handshakes: list[float] = []
        answered: tuple[str, Address] | None = None
        failure: BaseException | None = None
        for round_number in range(options.count):
            if round_number:
                await trio.sleep(options.interval)
            addresses = [answered[1]] if answered else candidates
            try:
                who, where, rtt, handshake = await self._round(addresses, node_id, options)
            except _ROUND_FAILURES as exc:
                failure = exc
                continue
            answered = (who, where)
            rtts.append(rtt)
            if handshake is not None:
                handshakes.append(handshake)
        if answered is None:
            assert failure is not None
            raise await self._explain(failure, target, candidates, options)
        report: dict[str, Any] = {
            "node_id": answered[0],
            "address": str(answered[1]),
            "rtt_ms": round(statistics.median(rtts), 3),
            "rtts_ms": rtts,
            "sent": options.count,
            "received": len(rtts),
            "via": options.via,
        }
        if handshakes:
            report["handshake_ms"] = round(statistics.median(handshakes), 3)
        return report

    def _is_own(self, address: Address) -> bool:
        own = self._own_address
        if address == own:
            return True
        ip = parse_ip(address.host)
        own_ip = parse_ip(own.host)
        # Bound to every address (0.0.0.0 or ::): the loopback at our port is us too.
        return (
            address.port == own.port
            and ip is not None
            and ip.is_loopback
            and own_ip is not None
            and own_ip.is_unspecified
        )

    async def _round(
        self, addresses: list[Address], node_id: NodeId | None, options: PingOptions
    ) -> tuple[str, Address, float, float | None]:
        """One ping, to the first of `addresses` that answers: (who, where, rtt_ms,
        handshake_ms)."""
        failure: BaseException | None = None
        for address in addresses:
            try:
                if options.via == "stream":
                    return await self._stream_round(address, node_id, options.timeout)
                return await self._datagram_round(address, node_id, options.timeout)
            except WrongNode:
                raise
            except _ROUND_FAILURES as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def _datagram_round(
        self, address: Address, node_id: NodeId | None, limit: float | None
    ) -> tuple[str, Address, float, None]:
        retries = self._datagrams.settings.retries
        attempt = None if limit is None else limit / (retries + 1)
        # Sent to whoever is there, so that another node answers (and is named) rather than
        # ignoring a ping addressed to someone else.
        reply = await self._datagrams.request(address, Ping(), attempt_timeout=attempt)
        if reply.sender == self._own_id:
            raise PlexinodeError(f"{address} is this node's own address")
        if node_id is not None and reply.sender != node_id:
            raise WrongNode(f"the node at {address} is {reply.sender}, not {node_id}")
        return str(reply.sender), address, round(reply.rtt * 1000, 3), None

    async def _stream_round(
        self, address: Address, node_id: NodeId | None, limit: float | None
    ) -> tuple[str, Address, float, float]:
        # Connecting has no deadline of its own (the handshake has): bound the whole round.
        if limit is None:
            limit = 2 * self._streams.settings.handshake_timeout
        with trio.move_on_after(limit) as scope:
            report = await echo.ping_stream(self._streams, address, node_id)
        if scope.cancelled_caught:
            raise PeerTimeout(f"no echo from {address} within {limit:g}s")
        if report["node_id"] == str(self._own_id):
            raise PlexinodeError(f"{address} is this node's own address")
        return report["node_id"], address, report["rtt_ms"], report["handshake_ms"]

    async def _explain(
        self,
        failure: BaseException,
        target: Address,
        candidates: list[Address],
        options: PingOptions,
    ) -> NoAnswer:
        """Why no round was answered, in one line."""
        where = ", ".join(str(a) for a in candidates)
        shown = f"{target} ({where})" if [target] != candidates else str(target)
        if isinstance(failure, HandshakeRefused):
            return NoAnswer(_REFUSED_HANDSHAKE.format(address=shown))
        if isinstance(failure, ConnectionRefusedError):
            return NoAnswer(f"nothing listens at {shown} (connection refused)")
        if isinstance(failure, HandshakeError | RemoteProtocolError):
            return NoAnswer(f"{shown}: {failure}")
        if isinstance(failure, OSError):
            return NoAnswer(f"cannot reach {shown}: {failure.strerror or failure}")
        silence = f"no answer from {shown} to {options.count} ping(s)"
        if options.via == "stream":
            return NoAnswer(silence)
        # Datagrams met silence: a stream tells whether anything listens there.
        try:
            with trio.fail_after(self._streams.settings.handshake_timeout):
                await echo.ping_stream(self._streams, candidates[0])
        except trio.TooSlowError:
            return NoAnswer(f"{silence} over UDP or TCP")
        except HandshakeRefused:
            return NoAnswer(_REFUSED_HANDSHAKE.format(address=shown))
        except ConnectionRefusedError:
            return NoAnswer(
                f"{silence}: nothing listens there (TCP connection refused); is the node "
                "running, and is the port right?"
            )
        except _ROUND_FAILURES:
            return NoAnswer(f"{silence} over UDP or TCP")
        return NoAnswer(
            f"{silence} over UDP, but it answers over TCP: something on the way drops UDP "
            "datagrams (a firewall?); `ping --stream` works"
        )


__all__ = ["MAX_COUNT", "VIAS", "NameNotResolved", "NoAnswer", "PingOptions", "Pinger"]


async def unanswered(pinger: Pinger, node_id: NodeId, addresses: Sequence[Address]) -> str | None:
    """None if the node `node_id` answers a ping at one of `addresses` at least (all pinged at
    once), else why it did not: one reason per address, as :meth:`Pinger.ping` tells them."""
    reasons: dict[Address, str] = {}
    answered = False

    async def ping(address: Address) -> None:
        nonlocal answered
        try:
            await pinger.ping(address, node_id)
        except PlexinodeError as exc:
            reasons[address] = str(exc)
            return
        answered = True

    async with trio.open_nursery() as nursery:
        for address in dict.fromkeys(addresses):
            nursery.start_soon(ping, address)
    if answered:
        return None
    return "; ".join(reasons[a] for a in dict.fromkeys(addresses))
