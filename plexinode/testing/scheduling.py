"""Time and task order in a simulation: replayable scheduling and MockClock helpers.

Simulations run on :class:`trio.testing.MockClock` (usually with ``autojump_threshold=0``, so
time jumps to the next timer as soon as every task is blocked), and their outcome must be a
function of their seed. Two things stand in the way, and this module handles both:

* Trio's scheduler deliberately does not promise an order between tasks that are runnable at
  the same time: by default it reverses each batch of runnable tasks at random, from a generator
  seeded by the operating system, so two runs of one seeded simulation drift apart after a few
  thousand task switches. :func:`replayable_scheduling` puts the scheduler in the deterministic
  mode that trio itself uses under Hypothesis (each batch sorted by task creation order, then
  shuffled by trio's generator) and seeds that generator;
  :func:`~plexinode.testing.network.open_memory_network` calls it with the network's seed.
* A simulation has no event for "every node believes X": :func:`wait_for` samples a condition
  in simulated time, and :func:`sleep_or_checkpoint` waits a delay that may be zero without
  skipping the checkpoint that a zero delay would otherwise skip.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

import trio

log = logging.getLogger(__name__)


def replayable_scheduling(seed: int) -> bool:
    """Make trio's order among tasks runnable at one instant a function of `seed`, for the rest of
    this process; return whether it could.

    Trio keeps its scheduling generator, and the switch that sorts each batch before shuffling
    it, in ``trio._core._run``; Hypothesis turns the switch on for its own examples through
    trio's plugin hook. Those are private names: if a trio release moves them, this logs a
    warning and returns False, and simulations still run, only without exact replay.
    """
    run_module = getattr(getattr(trio, "_core", None), "_run", None)
    generator = getattr(run_module, "_r", None)
    if not isinstance(generator, random.Random) or not hasattr(
        run_module, "_ALLOW_DETERMINISTIC_SCHEDULING"
    ):
        log.warning("this trio release hides its scheduler's generator: runs will not replay")
        return False
    setattr(run_module, "_ALLOW_DETERMINISTIC_SCHEDULING", True)  # noqa: B010 (a Final global)
    generator.seed(seed)
    return True


async def sleep_or_checkpoint(seconds: float) -> None:
    """Sleep `seconds` if positive, else only checkpoint (a zero delay still yields)."""
    if seconds > 0:
        await trio.sleep(seconds)
    else:
        await trio.lowlevel.checkpoint()


async def wait_for(condition: Callable[[], bool], step: float = 0.1) -> float:
    """Sleep (simulated time) until `condition()` holds; returns how long that took.

    The simulation has no event for "every node believes X", so it is sampled every `step`
    seconds: measurements are exact to `step`.
    """
    started = trio.current_time()
    while not condition():  # noqa: ASYNC110 (sampling the simulation's state)
        await trio.sleep(step)
    return trio.current_time() - started
