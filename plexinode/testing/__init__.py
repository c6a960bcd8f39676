"""The test harness the suite and scripts/bench/ share: the in-memory network, MockClock helpers,
simulation scenarios and fuzz generators. Production code never imports it (an import-linter
contract in pyproject.toml), and scripts/ import it rather than tests/ (scripts/test checks).

The in-memory network, each module importing only the ones above it in this list:

* :mod:`~plexinode.testing.scheduling`: replayable trio scheduling and MockClock helpers
  (``wait_for``, ``sleep_or_checkpoint``).
* :mod:`~plexinode.testing.streams`: listeners, bounded pipes, stream connections.
* :mod:`~plexinode.testing.datagrams`: bound ports, their datagram sockets.
* :mod:`~plexinode.testing.network`: hosts, link conditions, partitions, stats, delivery, the
  per-host transport and ``open_memory_network``.

Simulations on it:

* :mod:`~plexinode.testing.nodes`: full nodes (fast settings, seeded identities).
* :mod:`~plexinode.testing.member_cluster`: membership-only nodes, killed and restarted.
* :mod:`~plexinode.testing.zombie_watch`: checks that no dead member comes back.
* :mod:`~plexinode.testing.wrapping`, :mod:`~plexinode.testing.transport_hooks`: transports
  that watch, count or stall what one node sends and receives.
* :mod:`~plexinode.testing.dht_scenarios`: the DHT lookup scenarios (healthy, churn, collusion).
* :mod:`~plexinode.testing.fuzz_datagrams`, :mod:`~plexinode.testing.capture`: hostile
  datagrams, and the honest traffic they replay.

Real processes: :mod:`~plexinode.testing.processes` (``plexinode start`` and the CLI).
"""
