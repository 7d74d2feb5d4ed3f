"""The mel KL-VAE: shapes, posterior, loss, a few training steps, decoder receptive field, chunked decode."""

from __future__ import annotations

import pytest
import torch

from frieren_rt.audio.chunked import decode_chunked
from frieren_rt.audio.vae import MelVAE, edge_l1, mel_flux_l1, preset, vae_loss


def _vae(name: str = "small", **overrides) -> MelVAE:
    torch.manual_seed(0)
    return MelVAE(preset(name, **overrides))


def test_encode_decode_shapes():
    model = _vae()
    mel = torch.randn(2, 80, 36)
    posterior = model.encode(mel)
    assert posterior.mean.shape == posterior.logvar.shape == (2, 8, 18)
    assert model.decode(posterior.mean).shape == (2, 80, 36)
    with pytest.raises(ValueError, match="even"):
        model.encode(torch.randn(1, 80, 35))


def test_sampling_uses_the_explicit_generator_and_kl_is_finite():
    model = _vae()
    posterior = model.encode(torch.randn(2, 80, 16))
    a = posterior.sample(torch.Generator().manual_seed(3))
    b = posterior.sample(torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and not torch.equal(a, posterior.sample(torch.Generator().manual_seed(4)))
    kl = posterior.kl()
    assert torch.isfinite(kl).all() and (kl >= 0).all()


def test_latent_scale_round_trips():
    model = _vae(latent_scale=0.5)
    z = torch.randn(1, 8, 4)
    torch.testing.assert_close(model.from_flow(model.to_flow(z)), z)
    assert torch.equal(model.to_flow(z), 0.5 * z)


def test_loss_falls_over_a_few_steps_on_a_toy_batch():
    model = _vae()
    t = torch.linspace(0, 1, 32)
    mel = torch.stack(
        [torch.outer(torch.linspace(-1, 1, 80), torch.sin(6.28 * (k + 1) * t)) for k in range(4)]
    )
    mel = mel * 2 - 5  # (4, 80, 32), log-mel-like range
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(15):
        out = vae_loss(model, mel, generator=gen)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
        assert torch.isfinite(out["kl"])
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize("name", ["small", "base"])
def test_decoder_context_from_layers_equals_gradient_support(name):
    model = _vae(name)
    left, right = model.decoder.context_latents()
    z = torch.randn(1, 8, 40, requires_grad=True)
    model.decode(z)[0, :, 40:42].sum().backward()  # the two mel frames of latent 20
    support = torch.nonzero(z.grad[0].abs().sum(0)).flatten()
    assert (20 - int(support[0]), int(support[-1]) - 20) == (left, right)


def test_chunked_decode_with_stated_context_matches_full_decode():
    model = _vae().eval()
    left, right = model.decoder.context_latents()
    assert (left, right) == (5, 5)
    z = torch.randn(2, 8, 37)
    with torch.no_grad():
        full = model.decode(z)
        chunked = decode_chunked(model.decode, z, chunk=6, left=left, right=right, upsample=2)
        short = decode_chunked(model.decode, z, chunk=6, left=left - 1, right=right - 1, upsample=2)
    assert (chunked - full).abs().max() < 1e-5
    assert (short - full).abs().max() > 1e-3


def test_a_decoder_can_be_wider_than_its_encoder():
    narrow, wide = _vae(), _vae(decoder_widths=(128, 256), decoder_res_blocks=2)
    assert [p.shape for p in wide.encoder.parameters()] == [p.shape for p in narrow.encoder.parameters()]
    assert sum(p.numel() for p in wide.decoder.parameters()) > 4 * sum(p.numel() for p in narrow.decoder.parameters())
    z = torch.randn(1, 8, 40, requires_grad=True)
    wide.decode(z)[0, :, 40:42].sum().backward()  # the stated context still equals the gradient support
    support = torch.nonzero(z.grad[0].abs().sum(0)).flatten()
    assert (20 - int(support[0]), int(support[-1]) - 20) == wide.decoder.context_latents()


def test_causal_decoder_blocks_add_depth_and_left_context_but_no_look_ahead():
    plain = _vae(decoder_widths=(128, 256), decoder_res_blocks=1)
    deep = _vae(decoder_widths=(128, 256), decoder_res_blocks=1, decoder_causal_blocks=1)
    assert sum(p.numel() for p in deep.decoder.parameters()) > 1.3 * sum(p.numel() for p in plain.decoder.parameters())
    (pl, pr), (dl, dr) = plain.decoder.context_latents(), deep.decoder.context_latents()
    assert dr == pr and dl > pl
    z = torch.randn(1, 8, 40, requires_grad=True)
    deep.decode(z)[0, :, 40:42].sum().backward()  # the stated context is the gradient support
    support = torch.nonzero(z.grad[0].abs().sum(0)).flatten()
    assert (20 - int(support[0]), int(support[-1]) - 20) == (dl, dr)
    with torch.no_grad():  # and chunked decoding with it equals full decoding
        z = torch.randn(2, 8, 37)
        full = deep.eval().decode(z)
        chunked = decode_chunked(deep.decode, z, chunk=6, left=dl, right=dr, upsample=2)
    assert (chunked - full).abs().max() < 1e-5


def test_decoder_widths_need_one_width_per_level():
    with pytest.raises(ValueError, match="as many levels"):
        _vae(decoder_widths=(128, 256, 512))


def test_norm_over_time_has_no_finite_context():
    with pytest.raises(ValueError, match="whole chunk"):
        _vae(norm_over_time=True).decoder.context_latents()


def test_mel_flux_loss_is_zero_for_a_constant_offset_and_sees_a_smoothed_attack() -> None:
    mel = torch.zeros(1, 2, 8)
    mel[..., 4:] = 1.0  # an attack at frame 4
    assert float(mel_flux_l1(mel + 0.5, mel)) == 0.0
    smooth = mel.clone()
    smooth[..., 3], smooth[..., 4] = 0.33, 0.66
    assert float(mel_flux_l1(smooth, mel)) > 0.1


def test_vae_loss_adds_the_flux_term_at_its_weight():
    model, mel = _vae(), torch.randn(2, 80, 16)
    with torch.no_grad():
        plain = vae_loss(model, mel, generator=torch.Generator().manual_seed(0), kl_weight=0.0)
        with_flux = vae_loss(model, mel, generator=torch.Generator().manual_seed(0), kl_weight=0.0,
                             flux_weight=2.0)
    assert float(plain["loss"]) == pytest.approx(float(plain["recon"]))
    assert float(with_flux["loss"]) == pytest.approx(float(with_flux["recon"] + 2.0 * with_flux["flux"]))


def test_edge_loss_scores_the_newest_latents_as_a_prefix_decode_ends_them_not_as_the_whole_decode():
    model = _vae().eval()
    left, right = model.decoder.context_latents()
    z, mel = torch.randn(2, 8, 30), torch.randn(2, 80, 60)
    with torch.no_grad():
        edge = float(edge_l1(model.decoder, z, mel, [20]))
        prefix = model.decode(z[..., :20])[..., 2 * (20 - right) : 40]  # the stream so far, nothing after it
        whole = model.decode(z)[..., 2 * (20 - right) : 40]
        target = mel[..., 2 * (20 - right) : 40]
    assert edge == pytest.approx(float((prefix - target).abs().mean()), abs=1e-5)
    assert abs(edge - float((whole - target).abs().mean())) > 1e-3  # the look-ahead's latents change them
    assert 2 * right == prefix.shape[-1] and left + right == 10
    for bad in ([], [9], [31]):
        with pytest.raises(ValueError, match="must lie in"):
            edge_l1(model.decoder, z, mel, bad)
