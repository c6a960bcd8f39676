"""Exception types of the project.

Every error that bad input can cause is one of these, so that callers can tell "the peer or the
user sent something wrong" (drop it, count it, or print one clear line) from a bug in plexinode.
"""


class PlexinodeError(Exception):
    """Base class for every error plexinode raises on purpose."""


class ConfigError(PlexinodeError):
    """The configuration (file, environment or flags) is invalid."""


class IdentityError(PlexinodeError):
    """A key file or a node ID text form is missing, corrupt or mistyped."""


class DataDirError(PlexinodeError):
    """The data directory is unusable (permissions, already locked by a running node)."""


class StorageError(PlexinodeError):
    """The local database cannot be opened or migrated."""


class RemoteProtocolError(PlexinodeError):
    """A peer sent something that violates the protocol (bad encoding, schema, signature)."""


class DecodeError(RemoteProtocolError):
    """Bytes from the network could not be decoded into a valid message."""


class AuthenticationError(RemoteProtocolError):
    """A signature, MAC or identity check failed."""


class HandshakeError(RemoteProtocolError):
    """A secure-stream handshake failed (bad message, wrong peer, timeout)."""


class HandshakeRefused(HandshakeError):
    """The peer closed the connection without answering the first handshake message: it does
    not accept us (another network, a private network's key we do not hold, or not a
    plexinode node)."""


class PeerTimeout(PlexinodeError):
    """A peer did not answer within the allowed time (after retries)."""


class NameNotResolved(PlexinodeError):
    """A host name has no address this node can use (no A or AAAA record of its family)."""


class WrongNode(PlexinodeError):
    """Another node than the one asked for answered at an address."""


class AdminError(PlexinodeError):
    """The admin socket refused a request or the request failed inside the node."""


class NodeNotRunning(PlexinodeError):
    """No node is running for the given data dir (the CLI exits 3)."""
