"""One inference thread: all model work of every session runs here, batched, never on the event loop.

Jobs are queued per session (bounded); the thread takes up to ``max_batch`` jobs at a time, one per session per
round, in a service order where the sessions left out of a full batch go first next time (no session is always
in the later batch), and runs them in one ``run_batch`` call, i.e. one
batched forward pass of the single model instance. Between batches the thread runs ``idle`` work when poked
(the engine computes visual features of frames as they arrive there, off the hop's critical path; issue 4).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future, InvalidStateError
from typing import Generic, TypeVar

__all__ = ["InferenceWorker", "WorkerQueueFull"]

logger = logging.getLogger(__name__)

J = TypeVar("J")
R = TypeVar("R")


class WorkerQueueFull(RuntimeError):
    """A session already has ``max_pending`` jobs waiting."""


class InferenceWorker(Generic[J, R]):
    """run_batch(jobs) -> results (same order) runs on the worker thread; submit returns a Future per job.

    idle: optional ``idle() -> None`` run on the worker thread after :meth:`poke` whenever no job is queued
    (a queued job always goes first; idle work must be short, as a job that falls due waits for it)."""

    def __init__(
        self,
        run_batch: Callable[[list[J]], Sequence[R]],
        *,
        max_batch: int = 8,
        max_pending: int = 2,
        name: str = "frieren-inference",
        idle: Callable[[], None] | None = None,
    ) -> None:
        self._run_batch = run_batch
        self._idle = idle
        self.max_batch = max_batch
        self.max_pending = max_pending
        self._queues: dict[Hashable, deque[tuple[J, Future[R]]]] = {}
        self._served: OrderedDict[Hashable, None] = OrderedDict()  # least recently served first
        self._poked = False
        self._cond = threading.Condition()
        self._stopping = False
        self.batch_sizes: deque[int] = deque(maxlen=1024)  # recent batches, for stats and tests
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, session: Hashable, job: J) -> Future[R]:
        return self.submit_many([(session, job)])[0]

    def submit_many(self, items: Sequence[tuple[Hashable, J]]) -> list[Future[R]]:
        """Queue several sessions' jobs atomically, so jobs that fall due together share one batch."""
        futures: list[Future[R]] = []
        with self._cond:
            if self._stopping:
                raise RuntimeError("worker is stopped")
            for session, job in items:
                self._served.setdefault(session, None)  # a new session joins the back of the line
                q = self._queues.setdefault(session, deque())
                if len(q) >= self.max_pending:
                    raise WorkerQueueFull(f"session {session!r} has {len(q)} jobs pending")
                fut: Future[R] = Future()
                q.append((job, fut))
                futures.append(fut)
            self._cond.notify()
        return futures

    def poke(self) -> None:
        """Ask for one run of ``idle`` once no job is queued (thread-safe; cheap to call per frame)."""
        if self._idle is None:
            return
        with self._cond:
            self._poked = True
            self._cond.notify()

    def forget(self, session: Hashable) -> None:
        """Drop a closed session from the service order (its queued jobs, if any, still run)."""
        with self._cond:
            if session not in self._queues:
                self._served.pop(session, None)

    def _take_batch(self) -> list[tuple[J, Future[R]]]:
        """One job per session per round in service order. When the batch leaves a job behind, its sessions
        move to the back of the line, so the ones left out (served later, in the next batch) lead next time."""
        batch: list[tuple[J, Future[R]]] = []
        served: list[Hashable] = []
        while len(batch) < self.max_batch and self._queues:
            for session in [s for s in self._served if s in self._queues]:
                if len(batch) >= self.max_batch:
                    break
                q = self._queues[session]
                batch.append(q.popleft())
                served.append(session)
                if not q:
                    del self._queues[session]
        if self._queues:
            for session in served:
                self._served.move_to_end(session)
        return batch

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and not self._queues and not self._poked:
                    self._cond.wait()
                if self._stopping and not self._queues:
                    return
                if not self._queues:  # poked, nothing due: idle work between batches
                    self._poked = False
                    idle = self._idle
                else:
                    idle, batch = None, self._take_batch()
            if idle is not None:
                try:
                    idle()
                except Exception:  # noqa: BLE001 - the thread must keep serving hops
                    logger.exception("idle work failed")
                continue
            self.batch_sizes.append(len(batch))
            jobs = [job for job, _ in batch]
            try:
                results = self._run_batch(jobs)
            except BaseException as exc:  # noqa: BLE001 - every waiter must learn about the failure
                for _, fut in batch:
                    with contextlib.suppress(InvalidStateError):  # its waiter gave up (session closed)
                        fut.set_exception(exc)
                continue
            for (_, fut), result in zip(batch, results, strict=True):
                with contextlib.suppress(InvalidStateError):  # cancelled at shutdown: nobody waits for it
                    fut.set_result(result)

    def stop(self, timeout: float | None = 5.0) -> None:
        """Finish queued jobs, then end the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout)
