"""``frieren-rt world render`` round trip: mp4 with H.264 + AAC readable by PyAV, and the JSON event list."""

import json

import av
import numpy as np
import pytest

import frieren_rt.cli as cli
from tests.world.conftest import requires_assets


def _main(argv, monkeypatch):  # noqa: ARG001
    return cli.main(argv)


@requires_assets
def test_render_writes_mp4_and_json(tmp_path, monkeypatch):
    out = tmp_path / "clip.mp4"
    assert _main(["world", "render", "--seed", "22", "-o", str(out), "--duration", "2"], monkeypatch) == 0
    doc = json.loads(out.with_suffix(".json").read_text())
    assert doc["seed"] == 22 and doc["split"] == "train" and doc["fps"] == 30
    assert all({"time", "cls", "source_id", "loudness"} <= set(e) for e in doc["events"])
    with av.open(str(out)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        assert (v.codec_context.name, a.codec_context.name) == ("h264", "aac")
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(v)]
    assert len(frames) == 60 and frames[0].shape == (120, 160, 3)
    with av.open(str(out)) as c:
        audio = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)])
    assert audio.size >= 2 * 22050 * 0.95


@pytest.mark.parametrize(("argv", "message"), [
    (["--seed", "150000", "-o", "{d}/x.mp4"], "no split"),
    (["--seed", "1", "-o", "{d}/x.avi"], "must end in .mp4"),
    (["--seed", "1", "-o", "{d}/missing/x.mp4"], "does not exist"),
    (["--seed", "1", "-o", "{d}/x.mp4", "--duration", "-1"], "duration"),
    (["--seed", "1", "-o", "{d}/x.mp4", "--preset", "huge"], "unknown preset"),
])
def test_bad_arguments_give_one_clear_error(tmp_path, monkeypatch, capsys, argv, message):
    argv = [a.format(d=tmp_path) for a in argv]
    assert _main(["world", "render", *argv], monkeypatch) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
