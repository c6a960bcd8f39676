"""Kademlia DHT: routing table, hardened lookups, signed records, and the trio service."""
