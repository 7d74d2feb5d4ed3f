"""FoleyPipeline wiring: the event gate follows the options and the model (frieren_rt/windowing/gate.py)."""

import dataclasses

import pytest

from frieren_rt.pipeline import FoleyPipeline, GenerationOptions
from frieren_rt.windowing.gate import EventGate


def test_the_shipped_model_is_gated_by_default_and_not_when_asked() -> None:
    try:
        pipe = FoleyPipeline.from_dir(None, GenerationOptions(variant="distill"))
    except FileNotFoundError as err:
        pytest.skip(str(err))
    assert pipe.model.cfg.event_dim > 0  # it reads the detector's posteriors, which the gate reads too
    assert isinstance(pipe.generator().gate, EventGate)
    assert pipe.with_options(GenerationOptions(event_gate=False)).generator().gate is None
    holds = pipe.generator().gate.cfg.class_hold_s  # the shipped gate.json: one hold per detector class
    assert len(holds) == len(pipe.features.detector.cfg.classes) and min(holds) > 0


def test_a_gate_file_for_another_detector_is_refused_with_what_to_do(tmp_path) -> None:
    import json  # noqa: PLC0415
    from types import SimpleNamespace  # noqa: PLC0415

    from frieren_rt.pipeline import load_gate_config  # noqa: PLC0415

    (tmp_path / "gate.json").write_text(json.dumps({"classes": ["coin"], "class_hold_s": [0.3]}))
    detector = SimpleNamespace(cfg=SimpleNamespace(classes=("coin", "jump")))
    with pytest.raises(ValueError, match="re-run 'frieren-rt train export'"):
        load_gate_config(tmp_path / "gate.json", detector)
    assert load_gate_config(tmp_path / "missing.json", detector) is None


def test_cli_no_event_gate_reaches_the_options() -> None:
    import argparse  # noqa: PLC0415

    from frieren_rt.cli import generate  # noqa: PLC0415

    sub = argparse.ArgumentParser().add_subparsers()
    generate.register(sub)
    args = sub.choices["generate"].parse_args(["in.mp4", "-o", "out.mp4", "--no-event-gate"])
    assert args.event_gate is False
    assert sub.choices["generate"].parse_args(["in.mp4", "-o", "out.mp4"]).event_gate is True


def test_offline_generation_defaults_to_the_student_vocoder_after_the_offline_decoder() -> None:
    # On generated audio the student trained on the world's audio, after the offline decoder, keeps more class
    # and sync than HiFi-GAN universal there (MODEL_CARD.md, "Evaluation"), at a quarter of its time, so
    # HiFi-GAN universal (closer to real recordings by aiSFX FD) is opt-in; either gets the offline decoder.
    import argparse  # noqa: PLC0415

    from frieren_rt.cli import generate  # noqa: PLC0415

    sub = argparse.ArgumentParser().add_subparsers()
    generate.register(sub)
    assert sub.choices["generate"].parse_args(["in.mp4", "-o", "out.mp4"]).vocoder == "student"
    assert sub.choices["generate"].parse_args(["in.mp4", "-o", "o.mp4", "--vocoder", "hifigan"]).vocoder == "hifigan"
    for vocoder in ("student", "hifigan"):  # either vocoder after the offline decoder
        args = sub.choices["generate"].parse_args(["in.mp4", "-o", "o.mp4", "--vocoder", vocoder])
        assert (generate.generation_options(args).decoder, generate.generation_options(args).vocoder) == (
            "offline", vocoder)
    # the 0.1 s hop with 5 revised latents: the 9 unknown latents the field was trained on, video after each
    options = generate.generation_options(sub.choices["generate"].parse_args(["in.mp4", "-o", "o.mp4"]))
    assert (options.hop_s, options.lookahead, options.revise_lookahead) == (0.1, 5, True)
    kept = sub.choices["generate"].parse_args(["in.mp4", "-o", "o.mp4", "--no-revise-lookahead", "--lookahead", "0"])
    assert (generate.generation_options(kept).lookahead, generate.generation_options(kept).revise_lookahead) == (0, False)


def test_a_gate_file_can_set_the_class_confidence_floor(tmp_path) -> None:
    import json  # noqa: PLC0415
    from types import SimpleNamespace  # noqa: PLC0415

    from frieren_rt.pipeline import load_gate_config  # noqa: PLC0415

    detector = SimpleNamespace(cfg=SimpleNamespace(classes=("coin", "jump")))
    (tmp_path / "gate.json").write_text(json.dumps({"classes": ["coin", "jump"], "class_hold_s": [0.3, 0.2]}))
    assert load_gate_config(tmp_path / "gate.json", detector).min_class_confidence == 0.0  # the default: off
    (tmp_path / "gate.json").write_text(json.dumps({"classes": ["coin", "jump"], "class_hold_s": [0.3, 0.2],
                                                    "min_class_confidence": 0.8}))
    assert load_gate_config(tmp_path / "gate.json", detector).min_class_confidence == 0.8


def test_a_gate_file_sets_the_threshold_chosen_for_its_detector(tmp_path) -> None:
    import json  # noqa: PLC0415
    from types import SimpleNamespace  # noqa: PLC0415

    from frieren_rt.pipeline import load_gate_config  # noqa: PLC0415
    from frieren_rt.windowing.gate import GateConfig  # noqa: PLC0415

    detector = SimpleNamespace(cfg=SimpleNamespace(classes=("coin", "jump")))
    holds = {"classes": ["coin", "jump"], "class_hold_s": [0.3, 0.2]}
    (tmp_path / "gate.json").write_text(json.dumps(holds))
    assert load_gate_config(tmp_path / "gate.json", detector).threshold == GateConfig.threshold  # older files
    (tmp_path / "gate.json").write_text(json.dumps({**holds, "threshold": 0.9}))
    assert load_gate_config(tmp_path / "gate.json", detector).threshold == 0.9
    (tmp_path / "gate.json").write_text(json.dumps({**holds, "threshold": 1.5}))
    with pytest.raises(ValueError, match="threshold"):
        load_gate_config(tmp_path / "gate.json", detector)


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA device (benchmarks/gpu_check.sh)")
def test_gated_generation_on_cuda_matches_the_cpu() -> None:
    """The gate reads the detector's posteriors on the device and gates on the host's capture times: a GPU
    pipeline gives the CPU's audio (fp32 eager), muted in the same places."""
    import numpy as np  # noqa: PLC0415

    try:
        cpu = FoleyPipeline.from_dir(None, GenerationOptions(variant="distill"))
    except FileNotFoundError as err:
        pytest.skip(str(err))
    gpu = FoleyPipeline.from_dir(None, GenerationOptions(variant="distill"), device="cuda")
    rng = np.random.default_rng(0)
    frames = np.zeros((60, 96, 96, 3), dtype=np.uint8)  # 2 s at 30 fps: a block that flashes and moves
    for i in range(20, 40):
        frames[i, 10 + i:40 + i, 20:50] = 255
    frames += rng.integers(0, 8, frames.shape, dtype=np.uint8)
    times = np.arange(60) / 30.0
    # The shipped gate (threshold 0.9) opens on none of these synthetic frames, and two silent outputs would
    # match vacuously: open it at half the frames' highest P(event) (about 0.3; 43 % of the samples muted).
    p_event = 1.0 - cpu.frame_features(frames)[:, -1]  # the detector's "no event" posterior is the last column
    gate = dataclasses.replace(cpu.gate, threshold=float(p_event.max().clamp(2e-3, 1.0)) / 2)
    cpu.gate = gpu.gate = gate
    a = cpu.generate(frames, times, 2.0, seed=3)
    b = gpu.generate(frames, times, 2.0, seed=3)
    assert a.shape == b.shape
    muted = np.mean(a == 0.0)
    assert 0.05 < muted < 0.95  # the gate did something, both ways
    assert np.array_equal(a == 0.0, b == 0.0)  # the same muted samples
    rel = np.linalg.norm(a - b) / max(np.linalg.norm(a), 1e-6)
    print(f"cuda vs cpu: relative L2 {rel:.2e}, muted {muted:.2f} at threshold {gate.threshold:.3f}")
    assert rel <= 5e-2  # TF32 convolutions and Triton's dots on the GPU


def test_tail_guidance_equal_to_the_scale_is_plain_guidance_and_a_lower_one_changes_only_tails() -> None:
    import torch  # noqa: PLC0415

    from frieren_rt.model.foley import FoleyModel  # noqa: PLC0415
    from frieren_rt.pipeline import GuidedModel, default_weights_dir  # noqa: PLC0415

    model = FoleyModel.from_pretrained(default_weights_dir() / "base.safetensors")
    k = model.cfg.event_classes
    torch.manual_seed(0)
    cond = torch.randn(1, 12, model.cfg.feature_dim) * 0.1
    cond[..., -(k + 1):] = 0.0
    cond[..., -1] = 1.0  # no event anywhere ...
    x, t, index = torch.randn(1, model.latent_channels, 24), torch.tensor([0.3]), torch.arange(24) // 2
    kw = {"cond_index": index}
    with torch.no_grad():
        plain = GuidedModel(model, 4.5)(x, t, cond, **kw)
        torch.testing.assert_close(GuidedModel(model, 4.5, 4.5)(x, t, cond, **kw), plain)
        torch.testing.assert_close(GuidedModel(model, 4.5, 1.0)(x, t, cond, **kw), plain)  # ... so no tail
        cond[0, 2, -(k + 1):] = 0.0
        cond[0, 2, -(k + 1)] = 1.0  # an onset of class 0 on frame 2: latents 8 on read frames >= 4, the tail
        plain = GuidedModel(model, 4.5)(x, t, cond, **kw)
        tail = GuidedModel(model, 4.5, 1.0)(x, t, cond, **kw)
    torch.testing.assert_close(tail[..., :6], plain[..., :6])  # frames 0-2 and the attack: full guidance
    assert not torch.allclose(tail[..., 8:], plain[..., 8:])


def test_the_offline_decoder_goes_with_offline_generation_and_only_when_present(tmp_path) -> None:  # noqa: ANN001
    from frieren_rt.pipeline import vae_file

    (tmp_path / "vae.safetensors").touch()
    assert vae_file(tmp_path, use_student=False) == tmp_path / "vae.safetensors"  # none trained: the one VAE
    (tmp_path / "vae_offline.safetensors").touch()
    assert vae_file(tmp_path, use_student=False) == tmp_path / "vae_offline.safetensors"
    assert vae_file(tmp_path, use_student=True) == tmp_path / "vae.safetensors"  # streaming keeps its look-ahead
    assert vae_file(tmp_path, use_student=True, decoder="offline") == tmp_path / "vae_offline.safetensors"
    assert vae_file(tmp_path, use_student=False, decoder="streaming") == tmp_path / "vae.safetensors"
    from frieren_rt.pipeline import GenerationOptions

    with pytest.raises(ValueError, match="unknown VAE decoder 'wide'"):
        GenerationOptions(decoder="wide")


@pytest.mark.parametrize(("variant", "steps"), [("single", 1), ("distill", 2)])
def test_script_backend_gives_eager_audio_on_a_test_clip(variant: str, steps: int) -> None:
    """The "script" backend (frozen graphs for features, field, VAE decoder and vocoder; the streaming engine's
    default on CPU) generates what eager does: folded BatchNorm moves the image features by ~1e-5, nothing more.
    Two distilled steps cover guidance and a t other than 0."""
    import numpy as np  # noqa: PLC0415

    from frieren_rt.backends import Scripted  # noqa: PLC0415
    from frieren_rt.world import render_clip  # noqa: PLC0415
    from frieren_rt.world.config import SPLITS  # noqa: PLC0415

    try:
        eager = FoleyPipeline.from_dir(None, GenerationOptions(variant=variant, steps=steps, hop_s=0.1))
    except FileNotFoundError as err:
        pytest.skip(str(err))
    script = FoleyPipeline.from_dir(None, GenerationOptions(variant=variant, steps=steps, hop_s=0.1,
                                                            backend="script"))
    assert isinstance(script.decode_flow, Scripted) and isinstance(script.run_vocoder, Scripted)
    assert script.features._image is not None and script.features._detect is not None
    # Options are per pipeline: an eager one made from it runs eager features, and it keeps its own graphs.
    assert script.with_options(GenerationOptions(variant=variant, backend="eager")).features._image is None
    assert script.features._image is not None and eager.features._image is None
    clip = render_clip(next(iter(SPLITS["test"])))
    n = 3 * clip.fps  # 3 s: 30 hops
    frames, times = clip.frames[:n], np.arange(n) / clip.fps
    a = eager.generate(frames, times, 3.0, seed=5)
    b = script.generate(frames, times, 3.0, seed=5)
    assert np.sqrt(np.mean(a ** 2)) > 1e-3  # not vacuous: the clip makes sound
    assert np.abs(a - b).max() <= 1e-3


def test_the_shipped_weights_fit_the_issues_50_mb() -> None:
    from frieren_rt.pipeline import default_weights_dir  # noqa: PLC0415

    files = list(default_weights_dir().glob("*.safetensors"))
    assert files, "no shipped weights"
    assert sum(f.stat().st_size for f in files) < 50e6  # issue 3, "Shipped weights": < 50 MB in all


def test_a_vocoder_that_reads_the_pictures_events_gets_them_in_generate_and_a_mismatched_one_is_refused(
        tmp_path) -> None:  # noqa: ANN001
    """A weights folder whose vocoder reads the detector's posteriors (frieren_rt.audio.condition): extended
    from the shipped one with its condition conv at zero it generates the shipped audio exactly (the condition
    arrives, through the script backend too, and changes nothing yet); with a non-zero conv the audio moves; a
    vocoder sized for another detector is refused at load with what to do."""
    import numpy as np  # noqa: PLC0415
    import torch  # noqa: PLC0415

    from frieren_rt.audio.condition import with_condition  # noqa: PLC0415
    from frieren_rt.pipeline import default_weights_dir  # noqa: PLC0415
    from frieren_rt.train.vocoder import load_vocoder, save_vocoder  # noqa: PLC0415
    from frieren_rt.world import render_clip  # noqa: PLC0415
    from frieren_rt.world.config import SPLITS  # noqa: PLC0415

    # Ungated, so that the vocoder's whole output is heard.
    options = GenerationOptions(variant="distill", hop_s=0.1, vocoder="student", event_gate=False)
    try:
        shipped = FoleyPipeline.from_dir(None, options)
    except FileNotFoundError as err:
        pytest.skip(str(err))
    for f in default_weights_dir().iterdir():
        (tmp_path / f.name).symlink_to(f)
    (tmp_path / "vocoder.safetensors").unlink()
    k = len(shipped.features.detector.cfg.classes)
    extended = with_condition(load_vocoder(default_weights_dir() / "vocoder.safetensors"), 1 + k)
    save_vocoder(extended, tmp_path / "vocoder.safetensors")
    clip = render_clip(next(iter(SPLITS["test"])))
    n = 3 * clip.fps
    frames, times = clip.frames[:n], np.arange(n) / clip.fps
    want = shipped.generate(frames, times, 3.0, seed=3)
    assert np.sqrt(np.mean(want ** 2)) > 1e-3  # not vacuous: the clip makes sound
    for backend in ("eager", "script"):
        pipe = FoleyPipeline.from_dir(tmp_path, dataclasses.replace(options, backend=backend))
        assert pipe.generator().vocoder_condition is not None
        assert np.abs(pipe.generate(frames, times, 3.0, seed=3) - want).max() <= 1e-3
    with torch.no_grad():
        extended.conv_cond.weight.normal_(std=0.05)
    save_vocoder(extended, tmp_path / "vocoder.safetensors")
    moved = FoleyPipeline.from_dir(tmp_path, options).generate(frames, times, 3.0, seed=3)
    assert np.abs(moved - want).max() > 1e-2
    save_vocoder(with_condition(load_vocoder(default_weights_dir() / "vocoder.safetensors"), k + 3),
                 tmp_path / "vocoder.safetensors")
    with pytest.raises(ValueError, match="use the vocoder trained with its detector"):
        FoleyPipeline.from_dir(tmp_path, options)
