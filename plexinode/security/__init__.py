"""Security: network keys (this package grows rate limits, reputation and audit logs later)."""
