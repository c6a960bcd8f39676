"""Wire formats: msgpack codec with strict limits, typed message schemas, envelopes."""
