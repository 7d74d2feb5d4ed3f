"""Bad input files get a clear error that says what is wrong; good ones round-trip through decode and mux."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from frieren_rt.cli import main
from frieren_rt.io.video import VideoInputError, mux_audio, read_video


def _write_video(path, frames: int = 15, fps: int = 30) -> None:
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(frames):
            img = np.full((48, 64, 3), (i * 16) % 256, np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)


def _write_audio_only(path) -> None:
    with av.open(str(path), "w") as c:
        s = c.add_stream("aac", rate=48000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 4800), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 48000, 0, Fraction(1, 48000)
        for p in [*s.encode(frame), *s.encode(None)]:
            c.mux(p)


def test_not_a_video_is_a_clear_error(tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("this is not a video")
    with pytest.raises(VideoInputError, match="not a readable video"):
        read_video(bad)


def test_audio_only_file_has_no_video_stream(tmp_path):
    path = tmp_path / "audio.m4a"
    _write_audio_only(path)
    with pytest.raises(VideoInputError, match="no video stream"):
        read_video(path)


def test_zero_length_file(tmp_path):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    with pytest.raises(VideoInputError):
        read_video(path)


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.mp4"):
        read_video(tmp_path / "nowhere.mp4")


def test_decode_gives_frames_times_and_duration(tmp_path):
    path = tmp_path / "v.mp4"
    _write_video(path, frames=15)
    video = read_video(path)
    assert video.frames.shape == (15, 48, 64, 3) and video.frames.dtype == np.uint8
    assert np.allclose(np.diff(video.times), 1 / 30, atol=1e-3) and video.times[0] == 0
    assert abs(video.duration - 0.5) < 1e-3


def test_mux_copies_video_and_adds_audio_of_the_same_length(tmp_path):
    path, out = tmp_path / "v.mp4", tmp_path / "out.mp4"
    _write_video(path, frames=30)
    mux_audio(path, np.zeros(22050, np.float32), 22050, out)
    with av.open(str(out)) as c:
        kinds = sorted(s.type for s in c.streams)
        audio = np.concatenate([f.to_ndarray().ravel() for f in c.decode(audio=0)])
    assert kinds == ["audio", "video"]
    assert abs(len(audio) / 48000 - 1.0) < 0.05


def test_generate_cli_reports_bad_input_without_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.mp4"
    bad.write_text("nope")
    weights = tmp_path / "weights"
    weights.mkdir()
    code = main(["generate", str(bad), "-o", str(tmp_path / "o.mp4"), "--weights", str(weights)])
    err = capsys.readouterr().err
    assert code == 2 and "error:" in err and "Traceback" not in err
