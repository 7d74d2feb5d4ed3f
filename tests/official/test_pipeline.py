"""The official pipeline: seams sized from receptive fields, replacement continuity, drift-free timestamps over a
long stream, and generate / serve through the CLI on reduced-width files in the official layout."""

from __future__ import annotations

import argparse
import wave

import av
import numpy as np
import pytest
import torch

from frieren_rt.cli import main
from frieren_rt.flow import cfg_velocity, euler
from frieren_rt.model.timing import latent_times
from frieren_rt.model.vector_field import VectorField
from frieren_rt.official import apply_keyed_init
from frieren_rt.official.frames import grid_times
from frieren_rt.official.pipeline import ReplacementGuided, conv_reach, official_geometry
from frieren_rt.official.weights import SIZES
from frieren_rt.windowing import WindowedGenerator
from tests.official.official_folder import write_official_folder


@pytest.fixture(scope="module")
def reduced_folder(tmp_path_factory):
    return write_official_folder(tmp_path_factory.mktemp("official") / "weights", SIZES["reduced"])


def test_official_geometry_is_8_192_s_windows_at_31_25_latents_and_16_khz():
    g = official_geometry(SIZES["official"], hop_s=1.536)
    assert (g.window_latents, g.samples_per_latent, g.model_sample_rate, g.cond_slots) == (256, 512, 16000, 35)
    dec, voc = conv_reach(SIZES["official"].vae, SIZES["official"].vocoder)
    # VAE decoder convs: conv_in k5 + mid + 6 res convs at the latent rate, then the mel-rate ones (frieren.md).
    assert (dec, voc) == (23, 33)
    reach = dec + (voc + 1) // 2  # 40 latents = 1.28 s one side
    assert g.crossfade_samples >= reach * 512 and g.crossfade_samples % 320 == 0  # whole 20 ms frames
    assert g.context_latents * 512 >= g.crossfade_samples + reach * 512
    assert g.hop_samples >= g.crossfade_samples


def test_replacement_puts_emitted_latents_exactly_and_leaves_the_rest_to_cfg():
    field = apply_keyed_init(VectorField(SIZES["reduced"].field)).eval()
    g = torch.Generator().manual_seed(0)
    x0, known = torch.randn(1, 20, 64, generator=g), torch.randn(1, 20, 64, generator=g)
    cond, index = torch.randn(1, 10, 512, generator=g), (torch.arange(64) // 8)[None]
    mask = (torch.arange(64) < 40).float()[None, None]
    guided = ReplacementGuided(field)
    with torch.no_grad():
        for steps in (1, 25):
            x1 = euler(lambda x, t: guided(x, t, cond, cond_index=index, known=known, mask=mask), x0, steps)
            assert torch.allclose(x1[..., :40], known[..., :40], atol=1e-5)
        plain = cfg_velocity(field, cond, None, 4.5, cond_index=index)(x0, torch.zeros(1))
        assert torch.equal(guided(x0, torch.zeros(1), cond, cond_index=index), plain)


def test_timestamps_do_not_drift_over_a_60_s_stream():
    """Every latent of every window reads the 4 fps slot whose interval holds its own centre time. The official
    concatenation of 32-frame windows would be 0.192 s off per window, 1.34 s after 56 s."""
    geom = official_geometry(SIZES["reduced"], hop_s=1.536)
    gen = WindowedGenerator(geometry=geom, velocity=None, decoder=None, vocoder=None, latent_channels=20)
    t0 = 3.7
    slots = grid_times(62.0, start=t0)  # (K,) start times of the 4 fps slots
    feats = torch.arange(len(slots), dtype=torch.float32)[:, None].expand(-1, 4)  # feature = slot number
    state = gen.new_stream(start_time=t0)
    worst = 0.0
    while state.emitted_latents / geom.latent_rate < 60.0:
        inputs = gen.window_inputs(state, slots, feats)
        start = state.emitted_latents + geom.hop_latents - geom.window_latents
        lat = latent_times(geom.window_latents, geom.latent_rate, start=t0 + start / geom.latent_rate)
        slot = inputs.cond[inputs.cond_index, 0].long()  # (W,) slot each latent reads
        inside = lat >= t0
        off = (lat - (slots[slot] + 0.125))[inside].abs().max().item()  # distance from the slot's centre
        worst = max(worst, off)
        gen.commit(state, torch.zeros(20, geom.hop_latents))
    assert state.emitted_latents >= 60 * 31.25
    assert worst <= 0.125 + 1e-9  # within its own 250 ms slot, at 60 s as at 0 s


def _write_video(path, seconds: float = 2.0, fps: int = 10) -> None:
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(int(seconds * fps)):
            img = np.full((48, 64, 3), (i * 24) % 256, np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)


def test_generate_cli_runs_the_official_files_end_to_end(tmp_path, reduced_folder):
    _write_video(tmp_path / "in.mp4")
    rc = main(["generate", str(tmp_path / "in.mp4"), "-o", str(tmp_path / "out.mp4"), "--model", "official",
               "--weights", str(reduced_folder), "--official-sizes", "reduced", "--steps", "2",
               "--wav", str(tmp_path / "out.wav")])
    assert rc == 0
    with wave.open(str(tmp_path / "out.wav")) as w:
        assert w.getframerate() == 16000
        audio = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    assert len(audio) == 2 * 16000 and np.abs(audio).max() > 0
    with av.open(str(tmp_path / "out.mp4")) as c:
        assert c.streams.audio and c.streams.video


def test_generate_cli_lists_every_missing_official_file(tmp_path, capsys):
    _write_video(tmp_path / "in.mp4", seconds=0.5)
    rc = main(["generate", str(tmp_path / "in.mp4"), "-o", str(tmp_path / "o.mp4"), "--model", "official",
               "--weights", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2
    for name in ("frieren.ckpt", "vocoder/best_netG.pt", "vocoder/args.yml", "cavp_epoch66.ckpt"):
        assert f"missing   {name}" in err


def test_serve_factory_builds_an_official_engine_and_a_path_still_means_a_small_model_folder(reduced_folder,
                                                                                            tmp_path):
    from frieren_rt.cli.serve import add_engine_args, engine_factory, small_model_folder  # noqa: PLC0415

    p = argparse.ArgumentParser()
    add_engine_args(p)
    args = p.parse_args(["--model", "official", "--weights", str(reduced_folder), "--official-sizes", "reduced",
                         "--device", "cpu", "--hop", "1.5"])
    engine = engine_factory(args)()
    try:
        assert engine.generator.geometry.model_sample_rate == 16000
        assert engine.config.feature_dim == 512
    finally:
        engine.close()
    assert small_model_folder(str(tmp_path), None) == tmp_path
    assert small_model_folder("small", tmp_path) == tmp_path and small_model_folder(None, None) is None
    bad = p.parse_args(["--model", "official", "--weights", str(tmp_path)])
    with pytest.raises(FileNotFoundError, match="missing   frieren.ckpt"):
        engine_factory(bad)
