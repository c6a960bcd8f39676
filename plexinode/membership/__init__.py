"""Membership: SWIM + Lifeguard failure detection and gossip for the nodes of one network."""
