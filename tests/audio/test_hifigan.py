"""HiFi-GAN universal: strict loading from the package, output length, re-analysis error, receptive field."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from frieren_rt.assets.paths import AssetMissingError
from frieren_rt.audio.chunked import decode_chunked
from frieren_rt.audio.hifigan import HifiganGenerator, fold_weight_norm
from frieren_rt.audio.mel import log_mel
from frieren_rt.audio.student_vocoder import build_student


def _test_signal(seconds: float = 0.6, sr: int = 22050) -> torch.Tensor:
    """A sound-effect-like test signal: a decaying noise impact, then a harmonic tone over a noise swell. (L,)

    (Pure sine sweeps are avoided: HiFi-GAN fills the quiet bins between their partials with noise, so their
    log-mel error says little about how it renders effects.)
    """
    g = torch.Generator().manual_seed(0)
    t = torch.arange(int(seconds * sr)) / sr
    impact = torch.randn(t.shape, generator=g) * torch.exp(-t / 0.05) * 0.5
    tone = sum(0.15 / k * torch.sin(2 * torch.pi * 330.0 * k * t) for k in range(1, 6)) * (t > 0.15)
    swell = torch.randn(t.shape, generator=g) * 0.1 * torch.clamp((t - 0.3) / 0.3, 0, 1)
    return (impact + tone + swell).float()


@pytest.mark.filterwarnings("ignore:.*weight_norm.*:FutureWarning")
def test_fold_weight_norm_equals_torch_weight_norm():
    for conv in (nn.Conv1d(6, 4, 5), nn.ConvTranspose1d(6, 4, 8, 4)):
        # The deprecated API writes weight_g / weight_v keys, as in the checkpoint.
        normed = nn.utils.weight_norm(conv)
        with torch.no_grad():
            normed.weight_g.mul_(torch.rand_like(normed.weight_g) + 0.5)
            expected = torch._weight_norm(normed.weight_v, normed.weight_g, 0)
        folded = fold_weight_norm(dict(normed.state_dict()))
        assert set(folded) == {"weight", "bias"}
        torch.testing.assert_close(folded["weight"], expected)


def test_missing_cache_raises_naming_the_fetch_command(tmp_path):
    with pytest.raises(AssetMissingError, match="frieren-rt assets fetch"):
        HifiganGenerator.from_package(root=tmp_path)


def test_receptive_field_from_layers_equals_the_gradient_support():
    """The span derived from the layers is exactly the set of mel frames an output sample depends on."""
    model = build_student("tiny", generator=torch.Generator().manual_seed(0))
    mel = torch.randn(1, 80, 30, requires_grad=True)
    n = 15 * model.hop + 17  # a sample inside frame 15
    model(mel)[0, n].backward()
    support = torch.nonzero(mel.grad[0].abs().sum(0)).flatten()
    assert (int(support[0]), int(support[-1])) == model.input_span(n, n)


def test_universal_loads_strictly_with_v1_shape(universal_hifigan):
    cfg = universal_hifigan.cfg
    assert (
        cfg.upsample_rates == (8, 8, 2, 2)
        and cfg.upsample_initial_channel == 512
        and cfg.mel.sample_rate == 22050
    )
    assert sum(p.numel() for p in universal_hifigan.parameters()) == 13_926_017  # 13.9 M (assets.md)
    assert not any(p.requires_grad for p in universal_hifigan.parameters())


def test_vocoded_test_signal_has_right_length_and_low_reanalysis_error(universal_hifigan):
    wave = _test_signal()[: 256 * 50]
    mel = log_mel(wave)[None]  # (1, 80, 50)
    with torch.inference_mode():
        audio = universal_hifigan(mel)
    assert audio.shape == (1, 50 * 256) and audio.abs().max() <= 1.0
    error = (log_mel(audio) - mel).abs().mean().item()
    silence_error = (log_mel(torch.zeros_like(audio)) - mel).abs().mean().item()
    assert error < 0.5, error  # measured about 0.3 (natural-log mel units)
    assert error < 0.1 * silence_error


def test_chunked_decode_with_stated_context_matches_full_decode(universal_hifigan):
    left, right = universal_hifigan.context_frames()
    assert (left, right) == (13, 13)  # 151 ms each side at 86.1 frames/s
    mel = log_mel(_test_signal(0.5)[: 256 * 40])[None]  # (1, 80, 40): each chunk lacks 7 frames of the whole
    with torch.inference_mode():
        full = universal_hifigan(mel)
        chunked = decode_chunked(universal_hifigan, mel, chunk=20, left=left, right=right, upsample=256)
    assert (chunked - full).abs().max() < 1e-4
