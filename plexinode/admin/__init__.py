"""The local control plane: the admin socket in the data dir (server and framing), the typed
commands it serves (each request and result checked like a wire message), and the CLI's
client for it."""
