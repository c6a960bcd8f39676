"""Networking: transports (real sockets and the in-memory network), datagrams, secure streams."""
