"""Stateful polyphase resampler (22.05 kHz -> 48 kHz for Opus), identical to one-shot resampling.

The filter is ``scipy.signal.resample_poly``'s default: a Kaiser (beta 5) windowed sinc with cutoff at the
lower Nyquist and 10 zero crossings per side at the upsampled rate. Output n is the filter centred on input
time ``n * down / up``, so a chunk can be resampled as soon as its last input sample lies in the filter's
right half; the state is the input the next outputs still need. Concatenated chunk outputs equal the one-shot
result exactly, so chunk seams cannot add discontinuities. The resampler delays the output by
``lookahead_input_samples`` input samples (about 0.45 ms at 22.05 kHz).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["kaiser_sinc_filter", "PolyphaseResampler"]


def kaiser_sinc_filter(up: int, down: int, *, zero_crossings: int = 10, beta: float = 5.0) -> np.ndarray:
    """Anti-aliasing low-pass at the upsampled rate, DC gain ``up``. Returns (2 * half + 1,) float64."""
    max_rate = max(up, down)
    half = zero_crossings * max_rate
    cutoff = 1.0 / max_rate  # fraction of the upsampled Nyquist
    m = np.arange(2 * half + 1) - half
    h = cutoff * np.sinc(cutoff * m) * np.kaiser(2 * half + 1, beta)
    return h / h.sum() * up


class PolyphaseResampler:
    """Resample a mono stream by ``up / down`` (reduced by their gcd) in chunks of any size."""

    def __init__(self, in_rate: int = 22050, out_rate: int = 48000) -> None:
        g = math.gcd(in_rate, out_rate)
        self.up, self.down = out_rate // g, in_rate // g
        h = kaiser_sinc_filter(self.up, self.down)
        self.half = (len(h) - 1) // 2
        self.taps = math.ceil(len(h) / self.up)  # input samples per output
        padded = np.zeros(self.taps * self.up)
        padded[: len(h)] = h
        self.phases = padded.reshape(self.taps, self.up).T.copy()  # (up, taps): phases[r, i] = h[r + i * up]
        self._buf = np.zeros(0)  # inputs from absolute index _buf_start on
        self._buf_start = 0
        self._n_in = 0
        self._n_out = 0

    @property
    def lookahead_input_samples(self) -> int:
        return self.half // self.up

    @property
    def output_count(self) -> int:
        """Output samples produced so far: the absolute index of the next output sample."""
        return self._n_out

    def process(self, chunk: np.ndarray) -> np.ndarray:
        """Next input samples (n,) -> every output sample they complete, (k,) float32."""
        chunk = np.asarray(chunk, dtype=np.float64).reshape(-1)
        self._buf = np.concatenate([self._buf, chunk])
        self._n_in += len(chunk)
        last = (self._n_in * self.up - 1 - self.half) // self.down  # newest output whose taps are all in
        return self._emit(last)

    def flush(self) -> np.ndarray:
        """Remaining outputs up to the one-shot length ceil(n_in * up / down), reading zeros past the end."""
        total = -(-self._n_in * self.up // self.down)
        self._buf = np.concatenate([self._buf, np.zeros(self.taps + 1)])
        return self._emit(total - 1)

    def _emit(self, last: int) -> np.ndarray:
        if last < self._n_out:
            return np.zeros(0, dtype=np.float32)
        n = np.arange(self._n_out, last + 1)
        j = n * self.down + self.half  # centre of output n on the upsampled grid
        m0, r = j // self.up, j % self.up  # newest input sample read, filter phase
        idx = m0[:, None] - np.arange(self.taps)[None, :] - self._buf_start  # (k, taps) into _buf
        valid = idx >= 0  # negative: before the stream (zeros); nothing needed was trimmed away
        x = np.where(valid, self._buf[np.clip(idx, 0, None)], 0.0)
        y = (x * self.phases[r]).sum(axis=1)
        self._n_out = last + 1
        keep_from = (self._n_out * self.down + self.half) // self.up - self.taps + 1  # oldest input still needed
        drop = min(max(0, keep_from - self._buf_start), len(self._buf))
        self._buf, self._buf_start = self._buf[drop:], self._buf_start + drop
        return y.astype(np.float32)
