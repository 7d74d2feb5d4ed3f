"""The student vocoder's training losses (frieren_rt/train/vocoder.py): regression and the spectrogram GAN."""

from __future__ import annotations

import pytest
import torch

from frieren_rt.train.vocoder import (SpectrogramDiscriminator, adversarial_losses, discriminator_loss,
                                      stft_loss)


def test_stft_loss_is_zero_on_identical_audio_and_positive_otherwise():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4096, generator=gen)
    assert float(stft_loss(x, x)) < 1e-6
    assert float(stft_loss(0.5 * x, x)) > 0.1


def test_the_discriminator_scores_every_resolution_and_reports_its_features():
    disc = SpectrogramDiscriminator(channels=8)
    outs = disc(torch.randn(2, 4096))
    assert len(outs) == 3
    for logits, feats in outs:
        assert logits.shape[:2] == (2, 1) and len(feats) == 5 and feats[-1] is not None


def test_a_few_discriminator_steps_tell_noise_from_smoothed_noise():
    # The students' failure (MODEL_CARD.md): the random fine structure of noisy sounds averaged out. A
    # discriminator must learn to see it, and the generator's losses must then be higher for the smooth audio.
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    real = torch.randn(4, 4096, generator=gen)
    smooth = torch.nn.functional.avg_pool1d(torch.randn(4, 1, 4096, generator=gen), 9, 1, 4)[:, 0] * 3.0
    disc = SpectrogramDiscriminator(channels=8)
    opt = torch.optim.Adam(disc.parameters(), lr=2e-3)
    first = discriminator_loss(disc, real, smooth).item()
    for _ in range(30):
        opt.zero_grad()
        discriminator_loss(disc, real, smooth).backward()
        opt.step()
    assert discriminator_loss(disc, real, smooth).item() < 0.5 * first
    on_smooth, on_real = adversarial_losses(disc, real, smooth), adversarial_losses(disc, real, real)
    assert on_smooth["adv"].item() > on_real["adv"].item() and on_smooth["fm"].item() > on_real["fm"].item()
    assert on_real["fm"].item() < 1e-6


def test_the_generator_side_leaves_the_discriminators_real_branch_without_gradient():
    disc = SpectrogramDiscriminator(channels=8)
    real, fake = torch.randn(1, 4096), torch.randn(1, 4096, requires_grad=True)
    out = adversarial_losses(disc, real, fake)
    (out["adv"] + out["fm"]).backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0


def test_the_band_loss_charges_a_level_error_more_than_unpredictable_texture_unlike_the_per_bin_loss():
    # MultiScaleMelLoss's reason to exist: another draw of the same noise (texture a small student cannot
    # predict) should cost less than the right texture 6 dB too quiet; per-bin log magnitudes rank them the
    # other way, which pulls a student toward flat, quiet output.
    from frieren_rt.train.vocoder import MultiScaleMelLoss

    gen = torch.Generator().manual_seed(0)
    x, other = torch.randn(2, 8192, generator=gen), torch.randn(2, 8192, generator=gen)
    bands = MultiScaleMelLoss()
    assert float(bands(x, x)) < 1e-6
    assert abs(float(bands(0.5 * x, x)) - 0.693) < 0.01  # ln 2 in every band
    assert float(bands(other, x)) < float(bands(0.5 * x, x))
    assert float(stft_loss(other, x)) > float(stft_loss(0.5 * x, x))


def test_world_audio_is_the_rendered_clips_audio_whose_mel_the_cache_holds():
    import numpy as np

    from frieren_rt.audio.mel import LogMel
    from frieren_rt.train.vocoder import world_audio
    from frieren_rt.world import render_clip

    (wav,) = world_audio([3], "small", 2.0)
    clip = render_clip(3, duration=2.0)
    assert np.array_equal(wav.numpy(), clip.audio)  # the plan re-mixed without frames: the same samples
    assert LogMel()(wav).shape[1] * 256 <= wav.numel()  # every mel frame's crop has its audio


def test_aligned_frames_marks_where_both_mels_sound_or_both_are_silent():
    from frieren_rt.train.vocoder import SOUNDING_LEVEL, aligned_frames

    silent, loud = SOUNDING_LEVEL - 3.0, SOUNDING_LEVEL + 3.0
    true = torch.full((80, 4), silent)
    true[10, 1], true[10, 2] = loud, loud  # one loud band is enough to sound
    generated = torch.full((80, 4), silent)
    generated[:, 2], generated[:, 3] = loud, loud  # a missed frame (1) and an invented one (3)
    assert aligned_frames(true, generated).tolist() == [True, False, True, False]


def test_generated_mels_are_the_shipped_fields_mels_on_the_true_grid_and_teacher_forcing_changes_them():
    from frieren_rt.audio.mel import LogMel
    from frieren_rt.train.vocoder import aligned_frames, generated_mels, world_audio

    true = LogMel()(world_audio([200_000], "small", 2.0)[0])  # the first test clip, 2 s
    n = true.shape[1]
    free, = generated_mels(None, [200_000], "small", 2.0, [n])
    forced, = generated_mels(None, [200_000], "small", 2.0, [n], teacher_forced=True)
    assert free.shape == forced.shape == (80, n)
    assert torch.isfinite(free).all() and torch.isfinite(forced).all()
    assert not torch.equal(free, forced)  # later hops continue the true past, not the field's own
    # Both are the clip's sound on its frame grid: most frames sound (or are silent) where the truth does.
    assert float(aligned_frames(true, free).float().mean()) > 0.7
    assert float(aligned_frames(true, forced).float().mean()) > 0.7


def test_the_peak_loss_charges_an_attack_spread_over_time_that_keeps_its_energy():
    # PeakLevelLoss's reason to exist: the same burst of energy smeared over 40 ms has the same mean level but a
    # lower peak, which is how a regression-trained student flattens attacks (MODEL_CARD.md, "What was tried").
    from frieren_rt.train.vocoder import PeakLevelLoss

    gen = torch.Generator().manual_seed(0)
    sharp = torch.zeros(1, 8192)
    sharp[0, 4000:4100] = torch.randn(100, generator=gen)
    smeared = torch.zeros(1, 8192)
    smeared[0, 3600:4500] = torch.randn(900, generator=gen) * (100 / 900) ** 0.5  # same energy, 9x as long
    peak = PeakLevelLoss()
    assert float(peak(sharp, sharp)) < 1e-6
    assert float(peak(smeared, sharp)) > 0.3  # ln magnitude: about 4 dB lower peaks
    assert abs(float(peak(0.5 * sharp, sharp)) - 0.693) < 0.01  # ln 2 in every band


def test_the_regression_loss_adds_the_peak_term_only_when_weighted():
    from frieren_rt.audio.mel import LogMel
    from frieren_rt.train.vocoder import PeakLevelLoss, regression_loss

    gen = torch.Generator().manual_seed(0)
    wav, target = torch.randn(2, 32 * 256, generator=gen), torch.randn(2, 32 * 256, generator=gen)
    logmel = LogMel()
    mel = logmel(target)[..., :32]
    plain = regression_loss(wav, logmel, mel, target)
    peaked = regression_loss(wav, logmel, mel, target, None, {"peak": (PeakLevelLoss(), 2.0)})
    assert "peak" not in plain and "peak" in peaked
    assert torch.allclose(peaked["loss"], plain["loss"] + 2.0 * peaked["peak"])


def test_the_mixed_loss_compares_own_mel_crops_with_their_mel_alone_and_the_rest_as_the_regression_does():
    from frieren_rt.audio.mel import LogMel
    from frieren_rt.train.vocoder import PeakLevelLoss, mixed_regression_loss, regression_loss

    gen = torch.Generator().manual_seed(0)
    wav, target = torch.randn(4, 32 * 256, generator=gen), torch.randn(4, 32 * 256, generator=gen)
    logmel = LogMel()
    mel = logmel(target)[..., :32]
    terms = {"peak": (PeakLevelLoss(), 1.0)}
    none = torch.zeros(4, dtype=torch.bool)
    plain = regression_loss(wav, logmel, mel, target, None, terms)
    mixed = mixed_regression_loss(wav, logmel, mel, target, none, None, terms)
    assert torch.allclose(mixed["loss"], plain["loss"]) and float(mixed["self_mel"]) == 0.0
    own = torch.tensor([True, False, True, False])
    own_mel = logmel(wav[own])[..., :32]  # a mel the vocoder's audio renders exactly: no self term
    mel_in = mel.clone()
    mel_in[own] = own_mel
    mixed = mixed_regression_loss(wav, logmel, mel_in, target, own, None, terms)
    rest = regression_loss(wav[~own], logmel, mel[~own], target[~own], None, terms)
    assert float(mixed["self_mel"]) < 1e-5
    assert torch.allclose(mixed["loss"], rest["loss"] / 2, atol=1e-5)  # half the batch, and no audio term on own
    every = mixed_regression_loss(wav, logmel, logmel(wav)[..., :32], target, torch.ones(4, dtype=torch.bool),
                                  None, terms)
    assert set(every) == set(mixed)  # the training loop averages every key each step
    assert float(every["loss"]) < 1e-5


def test_a_negative_peak_high_band_or_rise_weight_is_refused_before_any_data_is_read(tmp_path):
    from frieren_rt.train.stages import load_stage_config, stage_vocoder

    with pytest.raises(ValueError, match="vocoder_peak_weight"):
        stage_vocoder(tmp_path, load_stage_config("vocoder", vocoder_peak_weight=-1.0))
    with pytest.raises(ValueError, match="vocoder_high_weight"):
        stage_vocoder(tmp_path, load_stage_config("vocoder", vocoder_high_weight=-1.0))
    with pytest.raises(ValueError, match="vocoder_rise_weight"):
        stage_vocoder(tmp_path, load_stage_config("vocoder", vocoder_rise_weight=-1.0))
    with pytest.raises(ValueError, match="vocoder_generated_target"):
        stage_vocoder(tmp_path, load_stage_config("vocoder", vocoder_generated_target="truth"))


def test_the_high_band_loss_reads_only_the_band_above_the_mels_8_khz():
    # HighBandLoss's reason to exist: the mel stops at 8 kHz, so the band above is what the student infers.
    from frieren_rt.train.vocoder import HighBandLoss, regression_loss

    t = torch.arange(8192) / 22050.0
    low, high = torch.sin(2 * torch.pi * 1000 * t)[None], torch.sin(2 * torch.pi * 9500 * t)[None]
    loss = HighBandLoss()
    assert float(loss(low + high, low + high)) < 1e-6
    assert float(loss(2.0 * low + high, low + high)) < 0.05  # the band below 8 kHz is not its business
    assert float(loss(low + 0.25 * high, low + high)) > 0.3  # a quieter 9.5 kHz tone is
    from frieren_rt.audio.mel import LogMel

    logmel = LogMel()
    wav, target = low + 0.25 * high, low + high
    mel = logmel(target)[..., :32]
    plain = regression_loss(wav, logmel, mel, target)
    weighted = regression_loss(wav, logmel, mel, target, terms={"high": (loss, 2.0)})
    assert "high" not in plain and torch.allclose(weighted["loss"], plain["loss"] + 2.0 * weighted["high"])


def test_the_attack_rise_loss_charges_a_softened_rise_under_a_playing_sound_and_not_a_decay():
    # AttackRiseLoss's reason to exist: a new sound starting under one already playing is found by its rise,
    # and the student softens that rise (MODEL_CARD.md, "What was tried").
    from frieren_rt.train.vocoder import AttackRiseLoss

    gen = torch.Generator().manual_seed(0)
    bed = 0.1 * torch.randn(1, 16384, generator=gen)  # a sound already playing
    burst = torch.randn(1, 8192, generator=gen)
    sharp, soft = bed.clone(), bed.clone()
    sharp[0, 8192:] += burst[0]
    soft[0, 8192:] += burst[0] * torch.linspace(0, 1, 8192).clamp(max=1500 / 8192).mul(8192 / 1500)  # 68 ms ramp
    loss = AttackRiseLoss()
    assert float(loss(sharp, sharp)) < 1e-6
    assert float(loss(soft, sharp)) > 3 * float(loss(sharp + 1e-3 * torch.randn(1, 16384, generator=gen), sharp))
    # A faster decay rises no less: only rises are priced.
    early_end = sharp.clone()
    early_end[0, 12000:] *= 0.1
    assert float(loss(early_end, sharp)) < 0.5 * float(loss(soft, sharp))


def test_a_fine_tune_of_hifigan_universal_is_saved_as_an_int8_delta_and_loads_back(tmp_path):
    from frieren_rt.assets.paths import AssetMissingError
    from frieren_rt.train.vocoder import UNIVERSAL, delta_base, load_vocoder, save_vocoder

    try:
        tuned = load_vocoder(UNIVERSAL)
    except AssetMissingError as err:
        pytest.skip(f"HiFi-GAN universal not in the asset cache (run 'frieren-rt assets fetch'): {err}")
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # a fine-tune's worth of change: 2 % of each tensor's typical size
        for p in tuned.parameters():
            p.add_(0.02 * p.abs().mean() * torch.randn(p.shape, generator=gen))
    path = tmp_path / "tuned.safetensors"
    save_vocoder(tuned, path, delta_of=UNIVERSAL)
    assert path.stat().st_size < 0.3 * 4 * sum(p.numel() for p in tuned.parameters())  # int8, not float32
    assert delta_base(path) == UNIVERSAL and delta_base(UNIVERSAL) == UNIVERSAL and delta_base(None) is None
    back = load_vocoder(path)
    mel = torch.randn(1, 80, 20, generator=gen) - 5.0
    with torch.no_grad():
        a, b = tuned(mel), back(mel)
    assert (a - b).square().mean() < 1e-4 * a.square().mean()  # > 40 dB SNR
    with pytest.raises(ValueError, match="delta_of"):
        save_vocoder(tuned, path, delta_of="bigvgan")
