"""Audio pacing: one 20 ms frame per 20 ms of clock, on a fixed grid (start + n * 20 ms), never blocking on
generation. aiortc pulls ``recv()`` as fast as it returns, so the track must pace itself
(../shared/reference/environment.md); pacing against the injected clock lets tests run faster than real time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from frieren_rt.streaming.buffers import AudioFifo
from frieren_rt.streaming.clock import Clock

__all__ = ["AudioFrame", "AudioPacer"]


@dataclass(frozen=True)
class AudioFrame:
    """samples (n,) float32 mono; index: frame number n since the pacer started; silent: underrun/pre-roll."""

    samples: np.ndarray
    index: int
    silent: bool


class AudioPacer:
    """Frame n is released at ``start + n * frame_s`` (start = clock time of the first ``recv``) and carries
    FIFO samples ``[n * frame + offset, (n + 1) * frame + offset)``, where the integer offset places FIFO sample
    0 at clock time ``anchor`` (set once the stream's timeline is known). Integer indexing: no drift.
    """

    def __init__(self, fifo: AudioFifo, clock: Clock, *, sample_rate: int = 48000, frame_samples: int = 960) -> None:
        self.fifo = fifo
        self.clock = clock
        self.sample_rate = sample_rate
        self.frame_samples = frame_samples
        self.anchor: float | None = None
        self._start: float | None = None
        self._n = 0

    @property
    def frame_s(self) -> float:
        return self.frame_samples / self.sample_rate

    @property
    def start(self) -> float | None:
        """Clock time of the first ``recv`` (frame n leaves at ``start + n * frame_s``); None before it."""
        return self._start

    @property
    def frames_sent(self) -> int:
        return self._n

    def set_anchor(self, clock_time: float) -> None:
        """Clock time at which FIFO sample 0 must play (capture time of the timeline start + latency)."""
        self.anchor = clock_time

    async def recv(self) -> AudioFrame:
        if self._start is None:
            self._start = self.clock.now()
        n = self._n
        await self.clock.sleep_until(self._start + n * self.frame_s)
        self._n += 1
        if self.anchor is None:
            return AudioFrame(np.zeros(self.frame_samples, dtype=np.float32), n, True)
        offset = round((self._start - self.anchor) * self.sample_rate)
        before = self.fifo.underruns
        samples = self.fifo.read(n * self.frame_samples + offset, self.frame_samples)
        return AudioFrame(samples, n, self.fifo.underruns != before)
