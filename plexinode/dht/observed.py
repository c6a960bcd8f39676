"""The observed-address quorum, sans I/O: which addresses our peer record announces.

A node does not always know the address others reach it at: it may be bound to 0.0.0.0, or sit
behind a NAT that rewrites its source address. Every pong tells it the address our datagram came
from (``Pong.observed_host`` and ``observed_port``), so the DHT service reports each pong here,
with the address of the node that sent it, and publishes what :meth:`ObservedAddresses.advertised`
returns.

One node alone must not be able to make us publish an address of its choosing, and identities
are cheap: a reported address is advertised only once ``quorum`` distinct *witnesses* reported
it. A witness is the reporter's /24 (IPv4) or /48 (IPv6) for a public address, its IP address
on a LAN (every node of a LAN shares its subnet, but two identities on one host are one
witness), and its address and port on the loopback (the one way to run several nodes on one
machine, where whoever reports is on this machine already). So a quorum must come from that
many networks, or hosts, not just that many keys.

Memory is bounded: at most ``max_observed`` addresses are remembered, each with at most
``max_reporters`` witnesses. When a new address arrives and the table is full, the address with
the fewest witnesses (the least recently reported of those) is forgotten, so that one node
inventing addresses cannot flush those that others confirmed.

Everything here is a function of the sequence of calls: no clock, no randomness, and no
iteration in hash order (witnesses are only ever counted).
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from typing import Final

from plexinode.dht.contact import is_public, is_routable, subnet
from plexinode.dht.record_types import PEER_MAX_ADDRESSES
from plexinode.net.address import Address, parse_ip

#: An address others see us at is advertised once this many distinct witnesses reported it: one
#: node alone cannot make us publish an address of its choosing.
OBSERVED_QUORUM: Final = 2
#: Reported addresses remembered (those with the fewest witnesses are forgotten first).
MAX_OBSERVED: Final = 16
#: Witnesses remembered per address: more than a quorum, so that a confirmed address outranks
#: one that only just reached it.
MAX_REPORTERS: Final = 8


class ObservedAddresses:
    """The addresses this node is reachable at: bound ones, and those a quorum reported.

    Args:
        bound: The addresses the node is bound to; the routable ones (not 0.0.0.0, say) are
            always advertised, first.
        quorum: Distinct witnesses an observed address needs before it is advertised.
        max_observed: Reported addresses remembered.
        max_reporters: Witnesses remembered per address.
        max_advertised: Most addresses advertised (a peer record holds at most this many).

    Raises:
        ValueError: A limit is below 1.
    """

    def __init__(
        self,
        bound: Sequence[Address] = (),
        *,
        quorum: int = OBSERVED_QUORUM,
        max_observed: int = MAX_OBSERVED,
        max_reporters: int = MAX_REPORTERS,
        max_advertised: int = PEER_MAX_ADDRESSES,
    ) -> None:
        for name, value in (
            ("quorum", quorum),
            ("max_observed", max_observed),
            ("max_reporters", max_reporters),
            ("max_advertised", max_advertised),
        ):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        self.bound: Final = tuple(a for a in bound if is_routable(a))
        self.quorum: Final = quorum
        self.max_observed: Final = max_observed
        self.max_reporters: Final = max_reporters
        self.max_advertised: Final = max_advertised
        # Least recently reported first; each address with the set of its witnesses.
        self._observed: collections.OrderedDict[Address, set[str]] = collections.OrderedDict()

    def __len__(self) -> int:
        """The number of reported addresses remembered (advertised or not)."""
        return len(self._observed)

    def witnesses(self, address: Address) -> int:
        """How many distinct witnesses reported `address` (0 if it is not remembered)."""
        return len(self._observed.get(address, ()))

    def report(self, observed: Address, reporter: Address) -> None:
        """The node at `reporter` told us, in a pong, that our datagram came from `observed`.

        Unroutable addresses (unspecified, multicast, port 0, names) are ignored.
        """
        witness = _witness(reporter)
        if not is_routable(observed):
            return
        reporters = self._observed.get(observed)
        if reporters is None:
            if len(self._observed) >= self.max_observed:
                fewest = min(self._observed, key=lambda a: len(self._observed[a]))
                del self._observed[fewest]
            reporters = self._observed[observed] = set()
        else:
            self._observed.move_to_end(observed)
        if len(reporters) < self.max_reporters:
            reporters.add(witness)

    def advertised(self) -> list[Address]:
        """The addresses to announce: the routable bound ones, then those reported by at least
        a quorum of witnesses (most witnesses first, then the least recently reported), at most
        ``max_advertised`` in all."""
        addresses = list(self.bound)
        reported = sorted(
            (a for a, who in self._observed.items() if len(who) >= self.quorum),
            key=lambda a: -len(self._observed[a]),
        )
        for address in reported:
            if address not in addresses:
                addresses.append(address)
        return addresses[: self.max_advertised]


def _witness(reporter: Address) -> str:
    """Who vouches for a report from `reporter` (module docstring)."""
    if is_public(reporter):
        return subnet(reporter)
    ip = parse_ip(reporter.host)
    if ip is not None and ip.is_loopback:
        return str(reporter)
    return reporter.host
