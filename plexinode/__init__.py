"""plexinode: a pure peer-to-peer node daemon on trio."""

__version__ = "0.1.0"
