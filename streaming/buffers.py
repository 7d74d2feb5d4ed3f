"""Buffers with an explicit policy per direction: video latest-wins, audio a sample-indexed FIFO.

Unbounded media queues accumulate delay without bound when the consumer is slower than real time (aiortc
issues 1192, 104, 64; ../shared/reference/environment.md): every buffer here is bounded and counts what it
drops.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Generic, TypeVar

import numpy as np

__all__ = ["LatestFrameBuffer", "AudioFifo"]

T = TypeVar("T")


class LatestFrameBuffer(Generic[T]):
    """Bounded, latest-wins: holds the newest ``capacity`` items; a put beyond that drops the oldest.

    Thread-safe (frames are put on the event loop and taken by the inference worker). ``newest_time`` is the
    capture time of the newest frame ever put, dropped or not: hops fall due by video time, not by what the
    worker had time to look at.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self._items: deque[tuple[float, T]] = deque()
        self._capacity = capacity
        self._lock = threading.Lock()
        self.dropped = 0
        self.received = 0
        self.newest_time: float | None = None

    def put(self, item: T, capture_time: float) -> None:
        with self._lock:
            if self.newest_time is not None and capture_time <= self.newest_time:
                self.dropped += 1  # out of order or duplicate: older than what was already seen
                return
            self._items.append((capture_time, item))
            self.received += 1
            self.newest_time = capture_time
            while len(self._items) > self._capacity:
                self._items.popleft()
                self.dropped += 1

    def drain(self, before: float | None = None) -> list[tuple[float, T]]:
        """Everything held (or only the items captured before ``before``), oldest first, removed."""
        with self._lock:
            if before is None:
                items = list(self._items)
                self._items.clear()
            else:
                items = []
                while self._items and self._items[0][0] < before:
                    items.append(self._items.popleft())
        return items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


class AudioFifo:
    """Mono float32 samples addressed by absolute sample index, read in fixed frames; never blocks.

    ``write`` appends (or starts at a later index after a gap); ``read(index, n)`` returns samples
    [index, index + n): silence with ``underruns += 1`` when they are not all there yet (only once audio has
    started; before that it is the pre-roll), zeros for negative indices, and samples older than ``index`` are
    discarded as late. Capacity is bounded: overflow discards the oldest samples (``overflow_samples``).
    """

    def __init__(self, *, capacity: int) -> None:
        self._buf = np.zeros(0, dtype=np.float32)
        self._start = 0  # absolute index of _buf[0]
        self.capacity = capacity
        self.underruns = 0
        self.late_samples = 0
        self.overflow_samples = 0
        self.started = False

    @property
    def end(self) -> int:
        """Absolute index one past the newest sample held."""
        return self._start + len(self._buf)

    @property
    def depth(self) -> int:
        return len(self._buf)

    def write(self, samples: np.ndarray, at: int | None = None) -> None:
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        if at is None or at == self.end:
            self._buf = np.concatenate([self._buf, samples])
        elif at > self.end:
            self._buf, self._start = samples.copy(), at  # a gap: the reader sees silence there
        else:
            raise ValueError(f"write at {at} overlaps samples already held (end {self.end})")
        self.started = self.started or len(samples) > 0
        extra = len(self._buf) - self.capacity
        if extra > 0:
            self._buf, self._start = self._buf[extra:], self._start + extra
            self.overflow_samples += extra

    def read(self, index: int, n: int) -> np.ndarray:
        """Samples [index, index + n) as a new (n,) float32 array."""
        if index > self._start:  # held samples the reader has moved past can never play on time
            late = min(index, self.end) - self._start
            self.late_samples += late
            self._buf, self._start = self._buf[late:], self._start + late
        if index + n <= 0:
            return np.zeros(n, dtype=np.float32)
        if index < 0:  # frame straddles the stream start: leading zeros, then the first samples
            if self.end < index + n or self._start > 0:
                return self._silence(n)
            out = np.zeros(n, dtype=np.float32)
            out[-index:] = self._buf[: n + index]
            self._buf, self._start = self._buf[n + index :], n + index
            return out
        if self._start > index or self.end < index + n:
            return self._silence(n)
        lo = index - self._start
        out = self._buf[lo : lo + n].copy()
        self._buf, self._start = self._buf[lo + n :], index + n
        return out

    def _silence(self, n: int) -> np.ndarray:
        if self.started:
            self.underruns += 1
        return np.zeros(n, dtype=np.float32)
