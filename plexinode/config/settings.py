"""Every effective setting of a node, typed: each service's settings, composed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from plexinode.dht.settings import DhtSettings
from plexinode.membership.settings import MembershipSettings
from plexinode.net.address import Address
from plexinode.net.settings import DatagramSettings, StreamSettings
from plexinode.storage.settings import StorageSettings

# All interfaces, so that other machines can reach the node; 7420 is unassigned by IANA. UDP and
# TCP share the port number.
DEFAULT_LISTEN: Final = Address("0.0.0.0", 7420)


@dataclass(frozen=True, slots=True)
class Settings:
    """Every effective setting of a node, typed."""

    listen: Address = DEFAULT_LISTEN
    bootstrap: tuple[Address, ...] = ()
    network: str = "open"
    log_level: str = "info"
    log_format: str = "text"
    datagram: DatagramSettings = field(default_factory=DatagramSettings)
    stream: StreamSettings = field(default_factory=StreamSettings)
    dht: DhtSettings = field(default_factory=DhtSettings)
    membership: MembershipSettings = field(default_factory=MembershipSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
