import numpy as np
import pytest
from scipy.signal import resample_poly

from frieren_rt.streaming import PolyphaseResampler


def _stream(x: np.ndarray, sizes: list[int]) -> np.ndarray:
    r = PolyphaseResampler(22050, 48000)
    out, i = [], 0
    for n in sizes:
        out.append(r.process(x[i : i + n]))
        i += n
    out.append(r.process(x[i:]))
    out.append(r.flush())
    return np.concatenate(out)


@pytest.mark.parametrize("sizes", [[4608] * 4, [1, 7, 441, 3000, 100, 5000], [22050]])
def test_chunked_resampling_matches_resample_poly(sizes: list[int]) -> None:
    x = np.random.default_rng(0).standard_normal(22050)
    ref = resample_poly(x, 320, 147)
    y = _stream(x, sizes)
    assert y.shape == ref.shape
    assert np.abs(y - ref).max() < 1e-5


def test_no_discontinuity_at_chunk_seams() -> None:
    t = np.arange(22050) / 22050
    x = 0.5 * np.sin(2 * np.pi * 440 * t)
    y = _stream(x, [4608] * 4)
    jumps = np.abs(np.diff(y[500:-500]))  # away from the signal's own start and end
    assert jumps.max() <= 1.01 * 0.5 * 2 * np.pi * 440 / 48000


def test_resampler_holds_back_only_its_filter_half_length() -> None:
    r = PolyphaseResampler()
    out = r.process(np.zeros(4608))
    assert r.lookahead_input_samples == 10
    assert len(out) == (4608 * 320 - 1 - r.half) // 147 + 1
