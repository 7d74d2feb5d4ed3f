import torch

from frieren_rt.windowing import correlation, crossfade, fade_curves


def test_equal_power_gains_are_cos_sin() -> None:
    out, inn = fade_curves(441, "equal_power")
    assert torch.allclose(out.square() + inn.square(), torch.ones(441), atol=1e-6)
    assert out[0] > 0.999 and inn[-1] > 0.999 and out[-1] < 0.01


def test_equal_power_preserves_power_of_uncorrelated_signals() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(4000, 441, generator=g), torch.randn(4000, 441, generator=g)
    y = crossfade(a, b, "equal_power")
    power = y.square().mean(0)  # per position, averaged over many independent pairs
    assert torch.allclose(power, torch.ones(441), atol=0.1)
    # equal gain would dip by 3 dB in the middle of the same seam
    assert crossfade(a, b, "equal_gain").square().mean(0)[220] < 0.6


def test_adaptive_is_equal_power_when_uncorrelated_and_unity_when_identical() -> None:
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(2, 441, generator=g)
    out, inn = fade_curves(441, "adaptive", rho=0.0)
    ref_out, ref_in = fade_curves(441, "equal_power")
    assert torch.allclose(out, ref_out) and torch.allclose(inn, ref_in)
    assert torch.allclose(crossfade(a, a.clone(), "adaptive"), a, atol=1e-6)  # no +3 dB bump
    bump = crossfade(a, a.clone(), "equal_power") - a  # cos + sin = sqrt(2) at the midpoint
    assert bump.abs().max() > 0.2 * a.abs().max()


def test_crossfade_is_continuous_with_both_sides() -> None:
    t = torch.arange(2000, dtype=torch.float32)
    sig = torch.sin(2 * torch.pi * 440 * t / 22050)
    tail, head = sig[:441], 0.5 * sig[:441]
    y = crossfade(tail, head, "equal_power")
    assert (y[0] - tail[0]).abs() < 0.01 and (y[-1] - head[-1]).abs() < 0.01
    assert y.diff().abs().max() <= 1.2 * sig.diff().abs().max()


def test_crossfade_does_not_modify_inputs_and_checks_shapes() -> None:
    a, b = torch.ones(10), torch.zeros(10)
    crossfade(a, b, "adaptive")
    assert a.eq(1).all() and b.eq(0).all()
    assert correlation(a, b) == 0
    try:
        crossfade(a, torch.zeros(9))
    except ValueError:
        pass
    else:
        raise AssertionError("shape mismatch accepted")
