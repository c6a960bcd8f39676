"""Typed admin commands: a request class parses the arguments, a method runs them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from plexinode.admin.reporting import Reporting
from plexinode.admin.requests import Request
from plexinode.admin.results import Result
from plexinode.admin.server import Command
from plexinode.shards.progress import Report

R = TypeVar("R", bound=Request)


def typed(command: str, request: type[R], run: Callable[[R], Awaitable[Result]]) -> Command:
    """The server's handler for `command`: parse its arguments as `request`, `run` it, and
    send back the result's value."""

    async def handle(args: dict[str, Any]) -> Any:
        result = await run(request.parse(command, args))
        return result.to_result()

    return handle


def reporting(
    command: str, request: type[R], run: Callable[[R, Report], Awaitable[Result]]
) -> Reporting:
    """As `typed`, for a command that reports its progress: `run` is also given the `Report`
    that becomes progress frames when the request asked for them (plexinode.admin.reporting)."""

    async def handle(args: dict[str, Any], report: Report) -> Any:
        result = await run(request.parse(command, args), report)
        return result.to_result()

    return Reporting(handle)
