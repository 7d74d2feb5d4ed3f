"""Fréchet distance and paired KL (frieren_rt/eval/distances.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from frieren_rt.eval.distances import frechet_distance, kl_divergence, paired_kl


def test_frechet_self_is_zero_and_grows_with_shift():
    a = np.random.default_rng(0).standard_normal((400, 16))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    shifts = [frechet_distance(a, a + s) for s in (0.1, 0.5, 1.0)]
    # a pure shift leaves the covariance alone: FD = ||shift||^2 = D s^2
    np.testing.assert_allclose(shifts, [16 * 0.01, 16 * 0.25, 16 * 1.0], rtol=1e-6)


def test_frechet_matches_closed_form_for_diagonal_gaussians():
    # FD of N(m1, diag v1) and N(m2, diag v2) = |m1 - m2|^2 + sum (sqrt v1 - sqrt v2)^2
    rng = np.random.default_rng(1)
    a = rng.standard_normal((20000, 3)) * [1.0, 2.0, 0.5]
    b = rng.standard_normal((20000, 3)) * [1.0, 1.0, 1.0] + [1.0, 0.0, 0.0]
    expected = 1.0 + (2.0 - 1.0) ** 2 + (0.5 - 1.0) ** 2
    assert frechet_distance(a, b) == pytest.approx(expected, rel=0.05)


def test_frechet_accepts_tensors_and_fewer_samples_than_dims():
    a, b = torch.randn(10, 64), torch.randn(12, 64)  # rank-deficient covariances
    value = frechet_distance(a, b)
    assert np.isfinite(value) and value > 0


def test_kl_known_value_and_paired_mean():
    p = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    q = torch.tensor([[0.9, 0.1], [1.0, 0.0]])
    expected0 = 0.5 * np.log(0.5 / 0.9) + 0.5 * np.log(0.5 / 0.1)
    kl = kl_divergence(p, q, eps=0.0)
    assert kl[0].item() == pytest.approx(expected0) and kl[1].item() == pytest.approx(0.0)
    assert paired_kl(p, q, eps=0.0) == pytest.approx(expected0 / 2)
    assert paired_kl(p, p) == pytest.approx(0.0, abs=1e-9)
    assert np.isfinite(paired_kl(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])))  # smoothed
    with pytest.raises(ValueError):
        paired_kl(p, q[:1])
