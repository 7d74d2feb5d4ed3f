"""One inference thread: all model work of every session runs here, batched, never on the event loop.

Jobs are queued per session (bounded); the thread takes up to ``max_batch`` jobs at a time, one per session per
round, starting after the session served first last time (round-robin), and runs them in one ``run_batch``
call, i.e. one batched forward pass of the single model instance.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future, InvalidStateError
from typing import Generic, TypeVar

__all__ = ["InferenceWorker", "WorkerQueueFull"]

J = TypeVar("J")
R = TypeVar("R")


class WorkerQueueFull(RuntimeError):
    """A session already has ``max_pending`` jobs waiting."""


class InferenceWorker(Generic[J, R]):
    """run_batch(jobs) -> results (same order) runs on the worker thread; submit returns a Future per job."""

    def __init__(
        self,
        run_batch: Callable[[list[J]], Sequence[R]],
        *,
        max_batch: int = 8,
        max_pending: int = 2,
        name: str = "frieren-inference",
    ) -> None:
        self._run_batch = run_batch
        self.max_batch = max_batch
        self.max_pending = max_pending
        self._queues: OrderedDict[Hashable, deque[tuple[J, Future[R]]]] = OrderedDict()
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
                q = self._queues.setdefault(session, deque())
                if len(q) >= self.max_pending:
                    raise WorkerQueueFull(f"session {session!r} has {len(q)} jobs pending")
                fut: Future[R] = Future()
                q.append((job, fut))
                futures.append(fut)
            self._cond.notify()
        return futures

    def _take_batch(self) -> list[tuple[J, Future[R]]]:
        """Round-robin: one job per session per round; sessions served rotate to the back."""
        batch: list[tuple[J, Future[R]]] = []
        while len(batch) < self.max_batch and any(self._queues.values()):
            for session in list(self._queues):
                if len(batch) >= self.max_batch:
                    break
                q = self._queues[session]
                if q:
                    batch.append(q.popleft())
                    self._queues.move_to_end(session)
                if not q:
                    del self._queues[session]
        return batch

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and not self._queues:
                    self._cond.wait()
                if self._stopping and not self._queues:
                    return
                batch = self._take_batch()
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
