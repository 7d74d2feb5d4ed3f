"""Stage configuration of the training recipe (frieren_rt.train.stages)."""

import json
from dataclasses import replace
from pathlib import Path

import pytest

from frieren_rt.model.foley import FoleyModel
from frieren_rt.train.stages import flow_model_config, geometry_of, load_stage_config, sampler_options

SIZES = {"latent_channels": 8, "window_latents": 69, "motion_width": 17 + 76, "motion_grid": 4}


def test_the_shipped_config_file_gives_the_shipped_base_models_shape() -> None:
    shipped = FoleyModel.from_pretrained("frieren_rt/weights/base.safetensors").cfg
    cfg = load_stage_config("flow", Path("frieren_rt/configs/small.json"))
    assert flow_model_config(cfg, **SIZES, event_classes=11) == shipped


def test_a_config_file_sizes_the_vector_field(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "big.json"
    path.write_text(json.dumps({"flow": {"field_hidden": 192, "field_heads": 3, "field_depth": 6}}))
    fcfg = flow_model_config(load_stage_config("flow", path), **SIZES)
    assert (fcfg.field.hidden, fcfg.field.heads, fcfg.field.depth) == (192, 3, 6)
    small = sum(p.numel() for p in FoleyModel(flow_model_config(load_stage_config("flow"), **SIZES)).parameters())
    big = sum(p.numel() for p in FoleyModel(fcfg).parameters())
    assert big > 2 * small


def test_a_field_size_the_heads_do_not_divide_is_refused() -> None:
    with pytest.raises(ValueError, match="divisible"):
        flow_model_config(load_stage_config("flow", None, field_hidden=100, field_heads=3), **SIZES)


def test_a_config_file_sets_the_detector_and_the_event_window_share(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"detector": {"detector_widths": [24, 48, 64, 96], "detector_none_weight": 0.1},
                                "flow": {"p_event": 0.35, "stream_hops_s": [0.1, 0.2]}}))
    det = load_stage_config("detector", path)
    assert det.detector_widths == (24, 48, 64, 96) and det.detector_none_weight == 0.1
    flow = load_stage_config("flow", path)
    assert flow.p_event == 0.35
    assert sampler_options(flow, geometry_of(flow)) == {"p_event": 0.35, "steady_hops": (4, 9)}
    assert load_stage_config("flow").p_event == 0.5  # the shipped recipe's


def test_silence_weight_finds_silent_latents_and_weighs_only_them() -> None:
    import torch

    from frieren_rt.audio import LogMel
    from frieren_rt.train.data import WindowBatch
    from frieren_rt.train.stages import load_vae, masked_flow_loss, silent_latents

    vae = load_vae("frieren_rt/weights/vae.safetensors")
    silent = silent_latents(vae)
    t = torch.arange(22050) / 22050
    loud = (0.5 * torch.sin(2 * torch.pi * 440 * t) * torch.linspace(1, 0.2, 22050)).float()
    audio = torch.cat([torch.zeros(22050), loud])
    with torch.no_grad():
        mel = LogMel()(audio)[None, :, :170]
        z = vae.to_flow(vae.encode(mel).mean)  # (1, C, 85)
    flags = silent(z)[0, 0]
    assert flags[5:35].mean() > 0.9 and flags[50:80].mean() < 0.1  # the silent second, the tone

    gen = torch.Generator().manual_seed(0)
    b, c, w = 2, z.shape[1], 12
    batch = WindowBatch(torch.randn(b, c, w), torch.zeros(b, 1, 4), torch.zeros(b, w, dtype=torch.long),
                        torch.zeros(b, c, w), torch.zeros(b, 1, w))
    x0, tt = torch.randn(b, c, w), torch.full((b,), 0.5)
    plain = masked_flow_loss(lambda x, t: torch.zeros_like(x), batch, gen, x0=x0, t=tt)
    ones = masked_flow_loss(lambda x, t: torch.zeros_like(x), batch, gen, x0=x0, t=tt,
                            latent_weight=torch.ones(b, 1, w))
    doubled = masked_flow_loss(lambda x, t: torch.zeros_like(x), batch, gen, x0=x0, t=tt,
                               latent_weight=torch.full((b, 1, w), 2.0))
    torch.testing.assert_close(ones, plain)
    torch.testing.assert_close(doubled, 2 * plain)


def test_the_teacher_eases_guidance_only_after_a_prefix_that_ends_in_sound() -> None:
    import torch

    from frieren_rt.audio import LogMel
    from frieren_rt.train.data import WindowBatch
    from frieren_rt.train.stages import StageConfig, load_vae, prefix_ends_in_sound, silent_latents, teacher_velocity

    vae = load_vae("frieren_rt/weights/vae.safetensors")
    silent = silent_latents(vae)
    t = torch.arange(22050) / 22050
    audio = torch.cat([torch.zeros(22050), (0.5 * torch.sin(2 * torch.pi * 440 * t)).float()])
    with torch.no_grad():
        z = vae.to_flow(vae.encode(LogMel()(audio)[None, :, :170]).mean)  # (1, C, 85): a silent second, a tone
    w = 12
    known = torch.stack([z[0, :, 20:20 + w], z[0, :, 60:60 + w], z[0, :, 60:60 + w]])  # silence, tone, tone
    mask = torch.zeros(3, 1, w)
    mask[:2, :, :4] = 1.0  # the third window has no prefix
    assert prefix_ends_in_sound(known, mask, silent).tolist() == [0.0, 1.0, 0.0]

    class Branches(torch.nn.Module):  # v_u = x, v_c = x + 1: guidance adds s to every latent
        cfg = None

        def guidance_scale(self, cond, cond_index, scale, tail_scale=None):  # noqa: ANN001, ANN202
            return scale

        def null_condition(self, cond):  # noqa: ANN001, ANN202
            return torch.zeros_like(cond)

        def forward(self, x, t, cond, **_):  # noqa: ANN001, ANN202
            return x + cond[:, :1, :1]

    batch = WindowBatch(known, torch.ones(3, 1, 1), torch.zeros(3, w, dtype=torch.long), known, mask)
    x = torch.zeros_like(known)
    v = teacher_velocity(Branches(), batch, StageConfig(teacher_prefix_cfg=1.0), silent)(x, torch.zeros(3))
    assert torch.equal(v[1, :, 4:], torch.ones_like(v[1, :, 4:]))  # eased to 1 after the tone
    assert torch.equal(v[1, :, :4], torch.full_like(v[1, :, :4], 4.5))
    assert torch.equal(v[0], torch.full_like(v[0], 4.5)) and torch.equal(v[2], torch.full_like(v[2], 4.5))
    plain = teacher_velocity(Branches(), batch, StageConfig(), silent)(x, torch.zeros(3))
    assert torch.equal(plain, torch.full_like(plain, 4.5))


def test_the_gate_file_holds_each_detector_class_for_its_training_sounds_median_length(tmp_path) -> None:  # noqa: ANN001
    from tests.world.conftest import assets_ready  # noqa: PLC0415

    if not assets_ready():
        pytest.skip("asset cache absent: run 'frieren-rt assets fetch' first")
    from frieren_rt.train.stages import GATE_THRESHOLD, write_gate_file  # noqa: PLC0415
    from frieren_rt.vision.events import DetectorConfig, EventDetector  # noqa: PLC0415

    classes = ("jump", "explosion", "engine")
    EventDetector(DetectorConfig(classes=classes)).save(tmp_path / "detector.safetensors")
    data = json.loads(write_gate_file(tmp_path, tmp_path / "detector.safetensors").read_text())
    holds = dict(zip(data["classes"], data["class_hold_s"], strict=True))
    assert tuple(data["classes"]) == classes
    assert holds["explosion"] > 2 * holds["jump"] and holds["engine"] > 1.0  # long classes hold longer
    assert data["threshold"] == GATE_THRESHOLD  # the threshold chosen for the shipped detector travels with it


def test_trace_decays_size_the_projection_and_need_the_detector(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "traced.json"
    path.write_text(json.dumps({"flow": {"trace_decays": [0.8, 0.93]}}))
    cfg = load_stage_config("flow", path)
    fcfg = flow_model_config(cfg, **SIZES, event_classes=11)
    assert fcfg.trace_decays == (0.8, 0.93) and fcfg.projection.motion_dim == 93 + 22
    assert fcfg.feature_dim == 1280 + 93  # what the cache holds per frame
    with pytest.raises(ValueError, match="detector"):
        flow_model_config(cfg, **SIZES)


def test_event_tail_latents_mark_the_third_of_a_second_after_a_detected_onset() -> None:
    import torch  # noqa: PLC0415

    from frieren_rt.train.data import WindowBatch  # noqa: PLC0415
    from frieren_rt.train.stages import event_tail_latents  # noqa: PLC0415

    k, slots = 2, 20
    cond = torch.zeros(1, slots, 4 + k + 1)
    cond[..., -1] = 1.0  # "no event" everywhere ...
    cond[0, 5, -3:] = torch.tensor([0.0, 1.0, 0.0])  # ... but a confident class-1 onset on frame 5
    index = torch.arange(slots)[None]  # one latent per frame
    batch = WindowBatch(torch.zeros(1, 8, slots), cond, index, torch.zeros(1, 8, slots), torch.zeros(1, 1, slots))
    tail = event_tail_latents(batch, k)[0, 0]
    # 0.8 ** 10 = 0.107 >= 0.1 > 0.8 ** 11: the onset frame and the 10 after it
    assert tail.tolist() == [0.0] * 5 + [1.0] * 11 + [0.0] * 4


def test_a_slower_tail_decay_marks_about_a_second_after_the_onset() -> None:
    import torch  # noqa: PLC0415

    from frieren_rt.train.data import WindowBatch  # noqa: PLC0415
    from frieren_rt.train.stages import event_tail_latents  # noqa: PLC0415

    k, slots = 2, 40
    cond = torch.zeros(1, slots, 4 + k + 1)
    cond[..., -1] = 1.0
    cond[0, 5, -3:] = torch.tensor([0.0, 1.0, 0.0])  # a confident class-1 onset on frame 5
    batch = WindowBatch(torch.zeros(1, 8, slots), cond, torch.arange(slots)[None], torch.zeros(1, 8, slots),
                        torch.zeros(1, 1, slots))
    tail = event_tail_latents(batch, k, decay=0.93)[0, 0]  # StageConfig.event_tail_decay
    # 0.93 ** 31 = 0.105 >= 0.1 > 0.93 ** 32: the onset frame and the 31 after it (1.05 s at 30 fps)
    assert tail.tolist() == [0.0] * 5 + [1.0] * 32 + [0.0] * 3

def _fake_cache(folder: Path, seeds: range, frames: int = 160) -> None:
    """A feature cache on disk with random mels (the decoder stage reads only mels)."""
    import torch

    from frieren_rt.data import ClipRecord, write_cache

    gen = torch.Generator().manual_seed(0)
    write_cache(folder, [ClipRecord(seed=s, mel=torch.randn(80, frames, generator=gen) - 4.0, image=torch.zeros(1, 4),
                                    motion=torch.zeros(1, 4), frame_ts=torch.zeros(1, dtype=torch.float64),
                                    events=[], silent_spans=[]) for s in seeds])


def test_the_decoder_stage_trains_a_wider_offline_decoder_on_the_bit_identical_encoder(tmp_path) -> None:  # noqa: ANN001
    import torch

    from frieren_rt.audio.vae import MelVAE, preset
    from frieren_rt.train.stages import load_vae, save_vae, stage_decoder

    _fake_cache(tmp_path / "cache_train", range(3))
    _fake_cache(tmp_path / "cache_val", range(3, 4))
    torch.manual_seed(0)
    save_vae(MelVAE(preset("small", latent_scale=0.7)), tmp_path / "vae.safetensors")
    streaming_bytes = (tmp_path / "vae.safetensors").read_bytes()
    cfg = load_stage_config("decoder", steps=3, batch_size=2, vae_decoder_widths=(32, 64),
                            vae_decoder_res_blocks=2)
    result = stage_decoder(tmp_path, cfg)
    source, wide = load_vae(tmp_path / "vae.safetensors"), load_vae(tmp_path / "vae_offline.safetensors")
    assert result["done"] and "streaming_val_mel_l1" in result and "val_mel_l1" in result
    assert (tmp_path / "vae.safetensors").read_bytes() == streaming_bytes  # the streaming VAE is untouched
    assert wide.cfg.decoder_widths == (32, 64) and wide.cfg.latent_scale == 0.7
    for a, b in zip(source.encoder.state_dict().values(), wide.encoder.state_dict().values(), strict=True):
        assert torch.equal(a, b)  # the cached latents and the flow models trained on them stay valid


def test_the_decoder_stage_can_fine_tune_the_runs_own_decoder_with_the_mel_flux_loss(tmp_path) -> None:  # noqa: ANN001
    import torch

    from frieren_rt.audio.vae import MelVAE, preset
    from frieren_rt.train.stages import load_vae, save_vae, stage_decoder

    _fake_cache(tmp_path / "cache_train", range(3))
    _fake_cache(tmp_path / "cache_val", range(3, 4))
    torch.manual_seed(0)
    save_vae(MelVAE(preset("small")), tmp_path / "vae.safetensors")
    source = load_vae(tmp_path / "vae.safetensors")
    cfg = load_stage_config("decoder", steps=1, batch_size=2, lr=0.0, decoder_init="run", vae_flux_weight=1.0)
    result = stage_decoder(tmp_path, cfg)
    start = load_vae(tmp_path / "vae_offline.safetensors")  # lr 0: the run's own decoder comes back
    assert result["done"] and start.cfg == source.cfg
    for a, b in zip(source.decoder.state_dict().values(), start.decoder.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert {"val_edge_l1", "streaming_val_edge_l1"} <= result.keys()  # chunk ends decoded as the engine does
    with pytest.raises(ValueError, match="decoder sizes"):
        stage_decoder(tmp_path, load_stage_config("decoder", decoder_init="run", vae_decoder_widths=(32, 64)))
    with pytest.raises(ValueError, match="'fresh' or 'run'"):
        stage_decoder(tmp_path, load_stage_config("decoder", decoder_init="teacher"))


def test_the_decoder_stage_trains_the_edge_loss_at_its_weight_and_refuses_segments_too_short(tmp_path) -> None:  # noqa: ANN001
    import torch

    from frieren_rt.audio.vae import MelVAE, preset
    from frieren_rt.train.stages import save_vae, stage_decoder

    _fake_cache(tmp_path / "cache_train", range(3))
    _fake_cache(tmp_path / "cache_val", range(3, 4))
    torch.manual_seed(0)
    save_vae(MelVAE(preset("small")), tmp_path / "vae.safetensors")
    cfg = load_stage_config("decoder", steps=2, batch_size=2, decoder_init="run", vae_decoder_edge_weight=1.0,
                            vae_segment_frames=32)
    assert stage_decoder(tmp_path, cfg)["done"]
    logged = (tmp_path / "decoder" / "losses.jsonl").read_text()
    assert '"edge"' in logged  # the term is trained and logged beside the reconstruction
    with pytest.raises(ValueError, match="fewer than the 10"):  # 5 + 5 latents of context; 16 frames hold 8
        stage_decoder(tmp_path, replace(cfg, vae_segment_frames=16))


def test_the_vae_stage_trains_the_latent_width_and_decoder_its_config_names(tmp_path) -> None:  # noqa: ANN001
    import torch

    from frieren_rt.train.stages import load_vae, stage_vae

    _fake_cache(tmp_path / "cache_train", range(3))
    _fake_cache(tmp_path / "cache_val", range(3, 4))
    torch.manual_seed(0)
    cfg = load_stage_config("vae", steps=2, batch_size=2, vae_segment_frames=32, vae_z_channels=16,
                            vae_decoder_widths=(32, 64), vae_decoder_res_blocks=1)
    result = stage_vae(tmp_path, cfg)
    vae = load_vae(tmp_path / "vae.safetensors")
    assert result["done"] and vae.cfg.z_channels == 16 and vae.cfg.decoder_widths == (32, 64)
    assert vae.encode(torch.zeros(1, 80, 32)).mean.shape == (1, 16, 16)  # (B, z, T / 2)


def test_the_decoder_stage_says_which_stage_comes_first(tmp_path) -> None:  # noqa: ANN001
    from frieren_rt.train.stages import stage_decoder

    with pytest.raises(FileNotFoundError, match="train vae"):
        stage_decoder(tmp_path, load_stage_config("decoder"))


def test_vae_reconstructions_keep_each_mels_shape_and_change_only_whole_latents() -> None:
    import torch

    from frieren_rt.audio.vae import MelVAE, preset
    from frieren_rt.train.stages import vae_reconstructions

    torch.manual_seed(0)
    mels = [torch.randn(80, 33) - 4.0, torch.randn(80, 20) - 4.0]
    out = vae_reconstructions(MelVAE(preset("small")), mels, seed=0)
    assert [m.shape for m in out] == [m.shape for m in mels]
    assert torch.equal(out[0][:, 32], mels[0][:, 32])  # the odd last frame is no whole latent: kept
    assert not torch.allclose(out[1], mels[1])


def test_vocoder_crops_feed_the_vae_mels_in_their_fraction_and_keep_true_mels_and_targets() -> None:
    import torch

    from frieren_rt.train.stages import vocoder_crops

    mels = [torch.arange(80 * 40, dtype=torch.float32).reshape(80, 40)]
    targets = [torch.arange(40 * 256, dtype=torch.float32)]
    vae_mels = [-mels[0]]
    gen = torch.Generator().manual_seed(0)
    mel, student_in, target, own = vocoder_crops(mels, targets, vae_mels, 64, 8, 1.0, gen)
    assert not own.any()
    assert mel.shape == student_in.shape == (64, 80, 8) and target.shape == (64, 8 * 256)
    assert torch.equal(student_in, -mel)  # fraction 1: every input from the VAE mels, the same crop
    start = mel[:, 0, 0].long()  # frame index of each crop (row 0 of the arange holds 0..39)
    assert torch.equal(target[:, 0].long(), start * 256)  # the teacher audio of that same crop
    _, student_in, _, _ = vocoder_crops(mels, targets, vae_mels, 400, 8, 0.25, gen)
    share = float((student_in[:, 0, 0] < 0).float().mean() + (student_in[:, 1, 0] < 0).float().mean()) / 2
    assert 0.18 < share < 0.32
    _, student_in, _, _ = vocoder_crops(mels, targets, None, 16, 8, 1.0, gen)
    assert (student_in >= 0).all()  # no VAE mels given: true mels only


def test_vocoder_crops_feed_generated_mels_only_where_they_are_aligned_and_keep_true_mels_and_targets() -> None:
    import torch

    from frieren_rt.train.stages import vocoder_crops

    mels = [torch.arange(80 * 40, dtype=torch.float32).reshape(80, 40)]
    targets = [torch.arange(40 * 256, dtype=torch.float32)]
    ok = torch.ones(40, dtype=torch.bool)
    ok[20:] = False  # the field's mel disagrees with the truth from frame 20 on
    generated = [(mels[0] + 1e4, ok)]
    vae_mels = [-mels[0]]
    gen = torch.Generator().manual_seed(0)
    mel, student_in, target, own = vocoder_crops(mels, targets, vae_mels, 200, 8, 1.0, gen, generated=generated,
                                                 generated_fraction=1.0)
    assert not own.any()  # the target stays the true audio's: no crop is its own mel target
    start = mel[:, 0, 0].long()
    assert torch.equal(target[:, 0].long(), start * 256)  # targets stay the true crop's
    from_generated = student_in[:, 0, 0] >= 1e4
    # A crop of frames s..s+7 holds >= 90 % aligned frames only when it ends before frame 20.
    assert torch.equal(from_generated, start + 8 <= 20)
    assert torch.equal(student_in[from_generated], mel[from_generated] + 1e4)
    assert torch.equal(student_in[~from_generated], -mel[~from_generated])  # the other input (VAE, fraction 1)


def test_vocoder_crops_with_generated_self_take_any_generated_crop_as_its_own_mel_target() -> None:
    import torch

    from frieren_rt.train.stages import vocoder_crops

    mels = [torch.arange(80 * 40, dtype=torch.float32).reshape(80, 40)]
    targets = [torch.arange(40 * 256, dtype=torch.float32)]
    ok = torch.zeros(40, dtype=torch.bool)  # nowhere aligned: "audio" would take none of them
    generated = [(mels[0] + 1e4, ok)]
    gen = torch.Generator().manual_seed(0)
    mel, student_in, target, own = vocoder_crops(mels, targets, None, 200, 8, 0.0, gen, generated=generated,
                                                 generated_fraction=0.5, generated_self=True)
    assert 0.35 < float(own.float().mean()) < 0.65
    assert torch.equal(own, student_in[:, 0, 0] >= 1e4)
    assert torch.equal(mel[own], student_in[own])  # its own mel is the mel loss's
    assert torch.equal(mel[~own], student_in[~own])  # the others: the true mel in and as the mel target
    start = (student_in[:, 0, 0] % 1e4).long()
    assert torch.equal(target[:, 0].long(), start * 256)  # the audio (the discriminator's real) stays the clip's


def test_the_vocoder_stage_reads_stored_generated_mels_and_refuses_ones_of_another_length(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    import torch
    from safetensors.torch import save_file

    from frieren_rt.train import vocoder as vocoder_module
    from frieren_rt.train.stages import stage_vocoder

    seeds = range(2)
    _fake_cache(tmp_path / "cache_train", seeds, frames=40)
    save_file({str(s): torch.zeros(40 * 256) for s in seeds}, str(tmp_path / "vocoder_targets.safetensors"))
    save_file({str(s): torch.full((80, 40), -4.0) for s in seeds}, str(tmp_path / "vocoder_generated.safetensors"))

    def no_generation(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("the stored generated mels should have been used")

    monkeypatch.setattr(vocoder_module, "generated_mels", no_generation)
    cfg = load_stage_config("vocoder", steps=2, batch_size=2, vocoder_preset="tiny", vocoder_clips=2,
                            vocoder_generated="shipped", vocoder_generated_fraction=1.0)
    assert stage_vocoder(tmp_path, cfg)["done"]
    save_file({str(s): torch.zeros(80, 39) for s in seeds}, str(tmp_path / "vocoder_generated.safetensors"))
    shutil.rmtree(tmp_path / "vocoder")  # its checkpoint: the stage would resume a finished run
    with pytest.raises(ValueError, match="delete the file"):
        stage_vocoder(tmp_path, cfg)


def test_vocoder_crops_append_the_same_crop_of_each_clips_condition_without_drawing_more() -> None:
    import torch

    from frieren_rt.train.stages import vocoder_crops

    mels = [torch.arange(80 * 40, dtype=torch.float32).reshape(80, 40)]
    targets = [torch.arange(40 * 256, dtype=torch.float32)]
    conds = [torch.arange(40, dtype=torch.float32).repeat(3, 1) + 1e4]  # (3, 40): frame index + 1e4
    plain = vocoder_crops(mels, targets, [-mels[0]], 32, 8, 0.5, torch.Generator().manual_seed(0))
    mel, student_in, target, own = vocoder_crops(mels, targets, [-mels[0]], 32, 8, 0.5,
                                                 torch.Generator().manual_seed(0), conds=conds)
    assert student_in.shape == (32, 83, 8)
    assert torch.equal(student_in[:, :80], plain[1]) and torch.equal(mel, plain[0]) and torch.equal(target, plain[2])
    start = mel[:, 0, 0].long()  # the crop's first frame
    assert torch.equal(student_in[:, 80:, 0], (start + 1e4)[:, None].expand(-1, 3).float())


def test_the_vocoder_stage_learns_to_read_the_detectors_posteriors_and_refuses_what_does_not_fit(
        tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    from frieren_rt.audio.student_vocoder import build_student
    from frieren_rt.data import ClipRecord, write_cache
    from frieren_rt.train.stages import stage_vocoder
    from frieren_rt.train.vocoder import load_vocoder, save_vocoder
    from frieren_rt.vision.events import DetectorConfig, EventDetector

    classes = ("coin", "laser")
    frames, gen = 12, torch.Generator().manual_seed(0)
    posteriors = torch.zeros(frames, 3)
    posteriors[:, -1] = 1.0
    posteriors[4] = torch.tensor([0.0, 1.0, 0.0])  # a laser on frame 4
    motion = torch.cat([torch.zeros(frames, 4), posteriors], dim=1)  # [motion cells | posteriors], as cached
    write_cache(tmp_path / "cache_train", [
        ClipRecord(seed=s, mel=torch.randn(80, 40, generator=gen) - 4.0, image=torch.zeros(frames, 4), motion=motion.clone(),
                   frame_ts=torch.arange(frames, dtype=torch.float64) / 25.0, events=[], silent_spans=[])
        for s in range(2)])
    save_file({str(s): torch.zeros(40 * 256) for s in range(2)}, str(tmp_path / "vocoder_targets.safetensors"))
    save_vocoder(build_student("tiny", generator=gen), tmp_path / "init.safetensors")
    cfg = load_stage_config("vocoder", steps=2, batch_size=2, vocoder_clips=2, vocoder_segment_frames=32,
                            vocoder_init=str(tmp_path / "init.safetensors"), vocoder_condition=True)
    with pytest.raises(FileNotFoundError, match="event detector"):
        stage_vocoder(tmp_path, cfg)
    EventDetector(DetectorConfig(classes=classes)).save(tmp_path / "detector.safetensors")
    assert stage_vocoder(tmp_path, cfg)["done"]
    trained = load_vocoder(tmp_path / "vocoder.safetensors")
    assert trained.cfg.cond_channels == 3  # P(event) + one hold per class
    assert trained.conv_cond.weight.abs().sum() > 0  # started at zero, moved by the loss
    other = tmp_path / "other"
    other.mkdir()
    (other / "cache_train").symlink_to(tmp_path / "cache_train")
    (other / "detector.safetensors").symlink_to(tmp_path / "detector.safetensors")
    with pytest.raises(ValueError, match="set vocoder_condition"):
        stage_vocoder(other, replace(cfg, vocoder_condition=False, vocoder_init=str(tmp_path / "vocoder.safetensors")))


def test_the_vocoder_stage_runs_with_vae_reconstructed_inputs(tmp_path) -> None:  # noqa: ANN001
    import torch
    from safetensors.torch import save_file

    from frieren_rt.audio.vae import MelVAE, preset
    from frieren_rt.train.stages import save_vae, stage_vocoder
    from frieren_rt.train.vocoder import load_vocoder

    seeds = range(2)
    _fake_cache(tmp_path / "cache_train", seeds, frames=40)
    # Teacher targets cached up front (the stage computes them with HiFi-GAN universal only when absent).
    save_file({str(s): torch.zeros(40 * 256) for s in seeds}, str(tmp_path / "vocoder_targets.safetensors"))
    save_vae(MelVAE(preset("small")), tmp_path / "vae.safetensors")
    cfg = load_stage_config("vocoder", steps=2, batch_size=2, vocoder_preset="tiny", vocoder_clips=2,
                            vocoder_vae=str(tmp_path / "vae.safetensors"), vocoder_vae_fraction=1.0)
    assert stage_vocoder(tmp_path, cfg)["done"]
    assert load_vocoder(tmp_path / "vocoder.safetensors").cfg.upsample_initial_channel == 128


def test_the_vocoder_stage_trains_on_the_worlds_own_audio_and_refuses_a_stale_cache_or_unknown_target(
        tmp_path: Path) -> None:
    import torch

    from frieren_rt.audio.mel import LogMel
    from frieren_rt.data import CacheConfig, ClipRecord, write_cache
    from frieren_rt.train.stages import stage_vocoder
    from frieren_rt.train.vocoder import world_audio

    seeds = [0, 1]
    mels = [LogMel()(w) for w in world_audio(seeds, "small", 2.0)]  # what 'train cache' stores for 2 s clips
    write_cache(tmp_path / "cache_train", [ClipRecord(seed=s, mel=m, image=torch.zeros(1, 4), motion=torch.zeros(1, 4),
                                                      frame_ts=torch.zeros(1, dtype=torch.float64), events=[],
                                                      silent_spans=[]) for s, m in zip(seeds, mels)],
                CacheConfig(duration=2.0))
    cfg = load_stage_config("vocoder", steps=2, batch_size=2, vocoder_preset="tiny", vocoder_clips=2,
                            vocoder_target="world")
    assert stage_vocoder(tmp_path, cfg)["done"]
    assert not (tmp_path / "vocoder_targets.safetensors").exists()  # no teacher audio computed
    with pytest.raises(ValueError, match="vocoder_target must be"):
        stage_vocoder(tmp_path, load_stage_config("vocoder", steps=2, vocoder_target="true"))
    stale = tmp_path / "stale"
    _fake_cache(stale / "cache_train", range(2), frames=40)  # mels of no world clip
    with pytest.raises(ValueError, match=r"clips \[0, 1\] does not give their cached mels.*rebuild"):
        stage_vocoder(stale, cfg)


def test_the_decoder_stage_judges_its_mels_as_audio_through_a_frozen_vocoder_against_the_clips_own(
        tmp_path: Path) -> None:
    import torch

    from frieren_rt.audio.mel import LogMel
    from frieren_rt.audio.vae import MelVAE, preset
    from frieren_rt.data import CacheConfig, ClipRecord, write_cache
    from frieren_rt.train.stages import load_vae, save_vae, stage_decoder
    from frieren_rt.train.vocoder import load_vocoder, new_student, save_vocoder, world_audio

    seeds = [0, 1]
    for split, part in (("train", seeds), ("val", [2])):
        write_cache(tmp_path / f"cache_{split}", [
            ClipRecord(seed=s, mel=LogMel()(w), image=torch.zeros(1, 4), motion=torch.zeros(1, 4),
                       frame_ts=torch.zeros(1, dtype=torch.float64), events=[], silent_spans=[])
            for s, w in zip(part, world_audio(part, "small", 2.0), strict=True)], CacheConfig(duration=2.0))
    torch.manual_seed(0)
    save_vae(MelVAE(preset("small")), tmp_path / "vae.safetensors")
    save_vocoder(new_student("tiny", 0), tmp_path / "student.safetensors")
    frozen = load_vocoder(tmp_path / "student.safetensors").state_dict()
    # 5 latents of decoder context each side = 10 frames: a 32-frame crop needs segments of 52 frames or more
    cfg = load_stage_config("decoder", steps=2, batch_size=2, decoder_init="run", vae_segment_frames=64,
                            decoder_vocoder=str(tmp_path / "student.safetensors"), decoder_vocoder_crops=2,
                            vocoder_peak_weight=1.0)
    assert stage_decoder(tmp_path, cfg)["done"]
    logged = json.loads((tmp_path / "decoder" / "losses.jsonl").read_text().splitlines()[-1])
    assert {"recon", "voc_loss", "voc_stft", "voc_peak"} <= logged.keys()  # trained beside the reconstruction
    after = load_vocoder(tmp_path / "student.safetensors").state_dict()
    assert all(torch.equal(frozen[k], after[k]) for k in frozen)  # the vocoder file is not touched
    # One step with and without the term draws the same segments and posterior sample (the crops are drawn
    # after them): the decoders differ only by the term's gradient.
    trained = {}
    for name, vocoder in (("with", cfg.decoder_vocoder), ("without", None)):
        folder = tmp_path / name
        folder.mkdir()
        for item in ("cache_train", "cache_val", "vae.safetensors"):
            (folder / item).symlink_to(tmp_path / item)
        stage_decoder(folder, replace(cfg, steps=1, decoder_vocoder=vocoder))
        trained[name] = load_vae(folder / "vae_offline.safetensors").decoder.state_dict()
    assert any(not torch.equal(trained["with"][k], trained["without"][k]) for k in trained["with"])
    with pytest.raises(ValueError, match="cannot hold a 32-frame vocoder crop 10 frames from each end"):
        stage_decoder(tmp_path, replace(cfg, vae_segment_frames=48))
    with pytest.raises(ValueError, match="one crop per segment"):
        stage_decoder(tmp_path, replace(cfg, decoder_vocoder_crops=3))


def _fake_flow_run(folder: Path, seeds: range = range(3), seconds: float = 4.0) -> None:
    """A run folder the vector-field stages can train on: a feature cache of random mels, image and motion
    features at 30 fps (motion: the 4 x 4 grid's 17 values) and a small VAE (no detector: no event traces)."""
    import torch

    from frieren_rt.audio.vae import MelVAE, preset
    from frieren_rt.data import CacheConfig, ClipRecord, write_cache
    from frieren_rt.train.stages import save_vae

    gen = torch.Generator().manual_seed(0)
    frames, mels = int(seconds * 30), int(seconds * 22050 / 256)
    for split, part in (("train", seeds), ("val", range(seeds.stop, seeds.stop + 1))):
        write_cache(folder / f"cache_{split}", [
            ClipRecord(seed=s, mel=torch.randn(80, mels, generator=gen) - 4.0,
                       image=torch.rand(frames, 1280, generator=gen).half(),
                       motion=torch.rand(frames, 17, generator=gen),
                       frame_ts=torch.arange(frames, dtype=torch.float64) / 30.0,
                       events=[{"time": 1.5, "class": "coin"}], silent_spans=[]) for s in part],
            CacheConfig(event_detector=False))
    torch.manual_seed(0)
    save_vae(MelVAE(preset("small")), folder / "vae.safetensors")


TINY_CHAIN = {"field_hidden": 32, "field_heads": 1, "field_depth": 1, "steps": 3, "batch_size": 2,
              "reflow_pairs": 64, "teacher_steps": 2, "stream_hops_s": (0.1, 0.2), "p_event": 0.5}


def _chain_losses(run: Path, device: str) -> dict[str, float]:
    """Run flow, reflow, distill and single for 3 steps each on ``device``; each stage's logged mean loss."""
    from frieren_rt.train.loop import LossLog
    from frieren_rt.train.stages import run_stage

    for stage in ("flow", "reflow", "distill", "single"):
        assert run_stage(stage, run, load_stage_config(stage, **TINY_CHAIN, device=device))["done"]
    return {s: LossLog(run / s).read()[-1]["loss"] for s in ("flow", "reflow", "distill", "single")}


def test_the_vector_field_chain_trains_on_the_configured_device(tmp_path) -> None:  # noqa: ANN001
    """flow -> reflow -> distill -> single end to end on a tiny field; each writes its model file. On a machine
    with CUDA the same config on the GPU sees the same windows and noise (host draws), so its losses match the
    CPU's to float tolerance (benchmarks/gpu_check.sh runs this there)."""
    import torch

    _fake_flow_run(tmp_path / "cpu")
    cpu = _chain_losses(tmp_path / "cpu", "cpu")
    for name in ("base", "reflow", "distill", "single"):
        assert FoleyModel.from_pretrained(tmp_path / "cpu" / f"{name}.safetensors").cfg.field.hidden == 32
    assert all(v > 0 for v in cpu.values())
    if torch.cuda.is_available():
        _fake_flow_run(tmp_path / "cuda")
        gpu = _chain_losses(tmp_path / "cuda", "cuda")
        print(f"cpu {cpu}\ncuda {gpu}")
        assert gpu == pytest.approx(cpu, rel=2e-2)  # TF32-free fp32, but different kernels and reductions
        a = FoleyModel.from_pretrained(tmp_path / "cpu" / "single.safetensors").state_dict()
        b = FoleyModel.from_pretrained(tmp_path / "cuda" / "single.safetensors").state_dict()
        assert all(v.device.type == "cpu" for v in b.values())  # saved from the host
        assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-3


def test_ema_update_averages_toward_the_model_and_skips_the_initialisation_at_first() -> None:
    import torch

    from frieren_rt.train.stages import ema_update

    ema, model = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    torch.nn.init.zeros_(ema.weight), torch.nn.init.ones_(model.weight)
    ema_update(ema, model, 0.999, step=0)  # d = min(0.999, 1 / 10): 90 % of the way at once
    assert torch.allclose(ema.weight, torch.full_like(ema.weight, 0.9))
    ema_update(ema, model, 0.5, step=10_000)  # late on, the configured decay
    assert torch.allclose(ema.weight, torch.full_like(ema.weight, 0.95))


def test_the_flow_stage_with_ema_saves_the_average_as_base_and_the_last_iterate_beside_it(tmp_path) -> None:  # noqa: ANN001
    from frieren_rt.train.stages import run_stage

    _fake_flow_run(tmp_path)
    assert run_stage("flow", tmp_path, load_stage_config("flow", **TINY_CHAIN, ema_decay=0.99))["done"]
    base = FoleyModel.from_pretrained(tmp_path / "base.safetensors").state_dict()
    last = FoleyModel.from_pretrained(tmp_path / "base_last.safetensors").state_dict()
    assert base.keys() == last.keys() and any(not (base[k] == last[k]).all() for k in base)


def test_the_flow_stage_continues_a_base_file_and_refuses_one_of_another_size(tmp_path) -> None:  # noqa: ANN001
    import torch

    from frieren_rt.train.stages import run_stage

    first, second, third = tmp_path / "first", tmp_path / "second", tmp_path / "third"
    for run in (first, second, third):
        _fake_flow_run(run)
    assert run_stage("flow", first, load_stage_config("flow", **TINY_CHAIN))["done"]
    init = str(first / "base.safetensors")
    # lr 0: the continued model is exactly the file it started from, so the file's weights, not a fresh
    # initialisation, are what trains on
    assert run_stage("flow", second, load_stage_config("flow", **{**TINY_CHAIN, "lr": 0.0}, flow_init=init))["done"]
    a = FoleyModel.from_pretrained(first / "base.safetensors").state_dict()
    b = FoleyModel.from_pretrained(second / "base.safetensors").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="flow_init"):
        run_stage("flow", third, load_stage_config("flow", **{**TINY_CHAIN, "field_hidden": 64},
                                                                flow_init=init))


def test_a_cuda_device_without_cuda_is_refused_with_what_to_do(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    import torch

    from frieren_rt.train.stages import stage_flow

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    _fake_flow_run(tmp_path)
    with pytest.raises(ValueError, match="--device cpu"):
        stage_flow(tmp_path, load_stage_config("flow", **TINY_CHAIN, device="cuda"))
    for bad in ("gpu", "mps"):  # not a device name; a device the stages do not run on
        with pytest.raises(ValueError, match="'cpu' or 'cuda"):
            stage_flow(tmp_path, load_stage_config("flow", **TINY_CHAIN, device=bad))


def test_evaluate_vae_reports_the_edge_l1_only_for_a_decoder_with_finite_context(tmp_path) -> None:  # noqa: ANN001
    import torch

    from frieren_rt.audio.vae import MelVAE, preset
    from frieren_rt.data import FeatureCache
    from frieren_rt.train.stages import evaluate_vae

    _fake_cache(tmp_path / "cache", range(2))
    torch.manual_seed(0)
    assert "val_edge_l1" in evaluate_vae(MelVAE(preset("small")).eval(), FeatureCache(tmp_path / "cache"))
    over_time = MelVAE(preset("small", norm_over_time=True)).eval()  # no finite context: no chunk ends to score
    assert "val_edge_l1" not in evaluate_vae(over_time, FeatureCache(tmp_path / "cache"))


def test_reflow_distils_the_runs_base_into_a_smaller_field_and_refuses_one_of_other_inputs(tmp_path) -> None:  # noqa: ANN001
    """reflow_init: the reflow student starts from another field file (a smaller one reading the same inputs) and
    learns the run's base's samples; distill and single keep its size. A field of other inputs is refused."""
    from frieren_rt.train.stages import run_stage

    teacher, small = tmp_path / "teacher", tmp_path / "small"
    for run in (teacher, small):
        _fake_flow_run(run)
    assert run_stage("flow", small, load_stage_config("flow", **TINY_CHAIN))["done"]
    assert run_stage("flow", teacher, load_stage_config("flow", **{**TINY_CHAIN, "field_hidden": 64}))["done"]
    init = str(small / "base.safetensors")
    assert run_stage("reflow", teacher, load_stage_config("reflow", **TINY_CHAIN, reflow_init=init))["done"]
    for stage in ("distill", "single"):
        assert run_stage(stage, teacher, load_stage_config(stage, **TINY_CHAIN))["done"]
    for name, hidden in (("base", 64), ("reflow", 32), ("distill", 32), ("single", 32)):
        assert FoleyModel.from_pretrained(teacher / f"{name}.safetensors").cfg.field.hidden == hidden

    from dataclasses import replace

    base = FoleyModel.from_pretrained(small / "base.safetensors")
    FoleyModel(replace(base.cfg, field=replace(base.cfg.field, latent_channels=4))).save(tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="reflow_init"):
        run_stage("reflow", teacher, load_stage_config("reflow", **TINY_CHAIN,
                                                       reflow_init=str(tmp_path / "other.safetensors")))
    with pytest.raises(FileNotFoundError, match="reflow_init"):
        run_stage("reflow", teacher, load_stage_config("reflow", **TINY_CHAIN,
                                                       reflow_init=str(tmp_path / "missing.safetensors")))


def test_the_students_train_the_envelope_loss_on_pairs_that_keep_the_true_latents(tmp_path) -> None:  # noqa: ANN001
    """envelope_weight: the reflow pairs keep each window's true latents (``target``), distill and single add the
    band-envelope L1 against them (the first step's loss, same model and batch, exceeds the one without it); pairs
    made before they kept them are refused with what to do."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from frieren_rt.train.loop import LossLog
    from frieren_rt.train.stages import run_stage

    run = tmp_path / "run"
    _fake_flow_run(run)
    for stage in ("flow", "reflow"):
        assert run_stage(stage, run, load_stage_config(stage, **TINY_CHAIN))["done"]
    pairs = load_file(str(run / "reflow_pairs.safetensors"))
    assert pairs["target"].shape == pairs["x1"].shape
    known = pairs["mask"].bool().expand_as(pairs["x1"])
    assert torch.equal(pairs["target"][known], pairs["x1"][known])  # the known prefix is the truth in both
    plain = tmp_path / "plain"
    shutil.copytree(run, plain)
    for stage in ("distill", "single"):
        first = {}
        for folder, weight in ((run, 1.0), (plain, 0.0)):
            cfg = load_stage_config(stage, **{**TINY_CHAIN, "steps": 1}, envelope_weight=weight)
            assert run_stage(stage, folder, cfg)["done"]
            first[weight] = LossLog(folder / stage).read()[0]["loss"]
        assert first[1.0] > first[0.0] > 0
        shutil.copy(run / f"{stage}.safetensors", plain)  # single starts from the same distilled student in both
    old = {k: v for k, v in pairs.items() if k != "target"}
    save_file(old, str(run / "reflow_pairs.safetensors"))
    with pytest.raises(ValueError, match="envelope_weight needs the windows' true latents"):
        run_stage("single", run, load_stage_config("single", **TINY_CHAIN, envelope_weight=1.0))


def test_the_reflow_pairs_keep_the_teacher_sample_the_class_probe_likes_best_for_windows_with_an_onset(
        tmp_path, monkeypatch) -> None:  # noqa: ANN001
    """pair_candidates: a window with a detected onset in its free latents gets the best of the candidates by the
    probe's score, each kept with its own noise (a valid reflow pair); a window without one keeps its first
    sample; fewer than one candidate is refused."""
    import torch

    from frieren_rt.train import stages
    from frieren_rt.train.class_probe import ProbeConfig
    from frieren_rt.train.data import WindowBatch
    from frieren_rt.train.stages import best_of_candidates, run_stage

    class Probe:  # "high" is channel 1's mean level after the onset, "low" channel 0's
        cfg = ProbeConfig(channels=4, classes=("low", "high"), max_len=4, min_len=2)

        def __call__(self, z, valid):  # noqa: ANN001, ANN204
            m = valid[:, None, :].to(z.dtype)
            return torch.stack([(z[:, 0] * m[:, 0]).sum(-1), (z[:, 1] * m[:, 0]).sum(-1)], dim=-1)

    def teacher_samples(teacher, batch, x0, cfg, silent=None):  # noqa: ANN001, ANN202
        return torch.where(batch.mask.bool(), batch.x1, 2.0 * x0)  # the "teacher" doubles its noise

    monkeypatch.setattr(stages, "_teacher_samples", teacher_samples)
    cond = torch.zeros(3, 6, 8)
    cond[..., -1] = 1.0  # "no event" everywhere but slot 3 of windows 0 and 1 ("high")
    cond[:2, 3, -3:] = torch.tensor([0.0, 0.9, 0.1])
    index = torch.arange(6).repeat_interleave(2).expand(3, -1)  # (3, 12): two latents per slot
    mask = torch.zeros(3, 1, 12)
    mask[..., :2] = 1.0
    x1_true = torch.randn(3, 4, 12)
    batch = WindowBatch(x1_true, cond, index, x1_true * mask, mask)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(3, 4, 12, generator=gen)
    x1 = teacher_samples(None, batch, x0, None)
    cfg = load_stage_config("reflow", pair_candidates=8)
    b0, b1 = best_of_candidates(None, batch, x0, x1, cfg, gen, Probe())
    torch.testing.assert_close(b1, teacher_samples(None, batch, b0, None))  # each sample with its own noise
    torch.testing.assert_close(b0[2], x0[2])  # no onset: the first sample stays
    for row in (0, 1):  # the onset at latent 6: "high" minus "low" over the 4 latents after it, a better pick
        margin = (lambda z: float((z[row, 1, 6:10] - z[row, 0, 6:10]).sum()))
        assert margin(b1) >= margin(x1)
    assert not torch.equal(b0[:2], x0[:2])  # with 8 candidates some window found a better one

    run = tmp_path / "run"
    _fake_flow_run(run)
    assert run_stage("flow", run, load_stage_config("flow", **TINY_CHAIN))["done"]
    with pytest.raises(ValueError, match="pair_candidates must be >= 1"):
        run_stage("reflow", run, load_stage_config("reflow", **TINY_CHAIN, pair_candidates=0))
