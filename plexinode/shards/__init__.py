"""The shard store: encrypted, erasure-coded backups spread over the network's members."""
