"""Signed statements: one shape for what a node signs for others to relay, and a bounded memory
of the signatures already verified."""
