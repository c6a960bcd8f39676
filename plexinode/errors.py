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


class PeerTimeout(PlexinodeError):
    """A peer did not answer within the allowed time (after retries)."""


class AdminError(PlexinodeError):
    """The admin socket refused a request or the request failed inside the node."""


class NodeNotRunning(PlexinodeError):
    """No node is running for the given data dir (the CLI exits 3)."""
