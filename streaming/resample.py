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
        self.block = _block_matrix(self.phases, self.up, self.down, self.half)  # (down + taps, up)
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
        """Outputs _n_out..last. Computed a block of ``up`` outputs at a time (one block starts at every
        multiple of ``up``): each block reads ``down + taps`` consecutive inputs through the same fixed
        matrix, so a hop is one small matrix product instead of a (k, taps) gather (measured 0.75-1 ms per
        session per hop, which bounded sessions per GPU: BENCHMARKS.md)."""
        if last < self._n_out:
            return np.zeros(0, dtype=np.float32)
        b0, b1 = self._n_out // self.up, last // self.up
        first = np.arange(b0, b1 + 1) * self.down + self.half // self.up - self.taps + 1  # (nb,) first input
        idx = first[:, None] + np.arange(self.block.shape[0])[None, :] - self._buf_start  # (nb, down + taps)
        # Before the stream: zeros. Past the buffer: only outputs after ``last`` read there (dropped below).
        valid = (idx >= 0) & (idx < len(self._buf))
        buf = self._buf if len(self._buf) else np.zeros(1)
        x = np.where(valid, buf[np.clip(idx, 0, len(buf) - 1)], 0.0)
        y = (x @ self.block).reshape(-1)[self._n_out - b0 * self.up : last - b0 * self.up + 1]
        self._n_out = last + 1
        # Oldest input the next block needs (its block may start before the next output).
        keep_from = (self._n_out // self.up) * self.down + self.half // self.up - self.taps + 1
        drop = min(max(0, keep_from - self._buf_start), len(self._buf))
        self._buf, self._buf_start = self._buf[drop:], self._buf_start + drop
        return y.astype(np.float32)


def _block_matrix(phases: np.ndarray, up: int, down: int, half: int) -> np.ndarray:
    """(down + taps, up) W with block outputs = inputs @ W: output i of a block (its n = b * up + i) is the
    filter phase r_i over inputs m0_i, m0_i - 1, .., m0_i - taps + 1, where m0_i - (first input of the block)
    = taps - 1 + (i * down + half) // up - half // up lies in [taps - 1, down + taps)."""
    taps = phases.shape[1]
    w = np.zeros((down + taps, up))
    for i in range(up):
        j = i * down + half
        newest = taps - 1 + j // up - half // up  # column of m0_i
        w[newest - np.arange(taps), i] = phases[j % up]
    return w
