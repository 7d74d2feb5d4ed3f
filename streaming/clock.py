"""Injectable monotonic clocks: media pacing depends on one, so tests run faster than real time (pipecat)."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol

__all__ = ["Clock", "MonotonicClock", "ManualClock"]


class Clock(Protocol):
    """Seconds on a monotonic clock; ``sleep_until`` returns once ``now() >= deadline``."""

    def now(self) -> float: ...

    async def sleep_until(self, deadline: float) -> None: ...


class MonotonicClock:
    """The real clock: ``time.monotonic`` (never wall time, which jumps with NTP)."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep_until(self, deadline: float) -> None:
        delay = deadline - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


class ManualClock:
    """A clock that moves only when told: ``advance(dt)`` wakes every sleeper whose deadline has passed.

    With ``auto_advance=True`` a sleeper instead jumps the clock to its own deadline at once, so a single
    coroutine can be run against it at full speed.
    """

    def __init__(self, start: float = 0.0, *, auto_advance: bool = False) -> None:
        self._now = start
        self.auto_advance = auto_advance
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    async def sleep_until(self, deadline: float) -> None:
        if deadline <= self._now:
            return
        if self.auto_advance:
            self._now = deadline
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (deadline, next(self._seq), fut))
        await fut

    def advance(self, dt: float) -> None:
        """Move time forward by ``dt`` seconds and wake the sleepers that are due (in deadline order)."""
        if dt < 0:
            raise ValueError("a monotonic clock cannot go back")
        self._now += dt
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)
