"""The local control plane: a Unix socket in the data dir, and the CLI's client for it."""
