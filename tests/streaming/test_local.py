"""Local use (issue 6, item 3): file in -> WAV / clocked null sink out with the tiny random engine, the sinks'
clock and buffer behaviour, and the errors that say what is missing (PortAudio, a sound card, a camera)."""

import argparse
import asyncio
import importlib.abc
import sys
import time
import types
import wave
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from frieren_rt.cli import live
from frieren_rt.streaming.builders import random_engine
from frieren_rt.streaming.client import synthetic_frames
from frieren_rt.streaming.clock import ManualClock, MonotonicClock
from frieren_rt.streaming.local import (
    AudioOutputUnavailable,
    CameraUnavailable,
    ClockedNullSink,
    DeviceBuffer,
    SoundDeviceSink,
    load_sounddevice,
    open_source,
    run_local,
)

FPS = 30
RATE = 48000


def write_mp4(path: Path, frames: np.ndarray, fps: int = FPS) -> Path:
    import av  # noqa: PLC0415

    with av.open(str(path), "w", format="mp4") as out:
        s = out.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            vf.pts, vf.time_base = i, Fraction(1, fps)
            out.mux(s.encode(vf))
        out.mux(s.encode())
    return path


@pytest.fixture(scope="module")
def clip_mp4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mp4(tmp_path_factory.mktemp("local") / "clip.mp4", synthetic_frames(45))  # 1.5 s


# --- end to end ---------------------------------------------------------------------------------------------
def test_a_video_file_plays_through_the_engine_into_a_wav_in_real_time(clip_mp4: Path,
                                                                       tmp_path: Path) -> None:
    out = tmp_path / "out.wav"
    t0 = time.monotonic()
    r = run_local(str(clip_mp4), str(out), engine=random_engine)
    wall = time.monotonic() - t0
    assert r.frames_in == 45
    assert 1.5 + r.latency_s <= r.seconds < 1.5 + r.latency_s + 0.6  # real time, never faster
    assert r.seconds <= wall
    with wave.open(str(out)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (RATE, 1, 2)
        x = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32767.0
    assert len(x) == r.audio_frames * 960  # every released 20 ms frame, nothing else
    assert abs(len(x) / RATE - r.seconds) < 0.1
    start = round(r.video_start_s * RATE)
    assert 0.5 * r.latency_s < r.video_start_s < r.latency_s + 0.1  # the pre-roll is about the engine latency
    assert not x[: start - round(0.05 * RATE)].any()  # silence before the video's sound (minus crossfade)
    assert np.abs(x[start : start + RATE]).max() > 0.01  # the generated sound for the first second
    assert r.engine_underruns <= 2 and r.sink_underruns == 0


def test_live_cli_file_to_the_clocked_null_sink_reports_its_numbers(clip_mp4: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    parser = argparse.ArgumentParser()
    live.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["live", "-i", str(clip_mp4), "-o", "null", "--random-model", "--duration", "1"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "30 video frames in" in out and "underruns: engine" in out and "latency" in out


# --- sinks --------------------------------------------------------------------------------------------------
def test_clocked_null_sink_takes_one_frame_per_20ms_of_its_clock_and_counts_underruns() -> None:
    async def scenario() -> None:
        clock = ManualClock(0.0)
        sink = ClockedNullSink(clock, record=True)
        await sink.start()
        for k in range(5):
            await sink.write(np.full(960, k + 1, np.float32))
        await asyncio.sleep(0)
        assert sink.buffer.played == 1  # frame 0 at start: primed (2 frames held), plays frame 1
        for _ in range(9):  # 180 ms more: frames 1..9 (a hair over 20 ms: float sums of 0.02 fall short)
            clock.advance(0.020001)
            for _ in range(3):
                await asyncio.sleep(0)
        assert sink.buffer.played == 10 and sink.underruns == 5  # 5 written, then 5 periods with nothing
        assert [float(f[0]) for f in sink.recorded[:6]] == [1, 2, 3, 4, 5, 0]
        clock.advance(0.0199)
        for _ in range(3):
            await asyncio.sleep(0)
        assert sink.buffer.played == 10  # never early: no frame before its period
        await sink.close()

    asyncio.run(scenario())


def test_clocked_null_sink_keeps_real_time_pace_unlike_alsas_null_device() -> None:
    async def scenario() -> tuple[int, int, float]:
        clock = MonotonicClock()
        sink = ClockedNullSink(clock)
        t0 = clock.now()
        await sink.start()

        async def produce() -> None:  # a producer on its own 20 ms grid, like the engine's pacer
            for n in range(60):
                await clock.sleep_until(t0 + n * 0.02)
                await sink.write(np.ones(960, np.float32))

        await produce()
        await asyncio.sleep(0.03)
        played, elapsed = sink.buffer.played, clock.now() - t0
        await sink.close()
        return played, sink.underruns, elapsed

    played, underruns, elapsed = asyncio.run(scenario())
    assert abs(played - (int(elapsed / 0.02) + 1)) <= 2  # one frame per 20 ms of wall clock
    assert 1.15 < elapsed < 1.6 and underruns <= 1


def test_device_buffer_primes_before_playing_and_drops_the_oldest_when_full() -> None:
    b = DeviceBuffer(capacity=3, prefill=2)
    b.put(np.full(960, 1, np.float32))
    assert not b.take().any() and b.underruns == 0  # pre-roll: not yet primed, not an underrun
    for k in (2, 3, 4):
        b.put(np.full(960, k, np.float32))
    assert b.overflows == 1 and len(b) == 3  # frame 1 dropped: bounded
    assert [b.take()[0] for _ in range(4)] == [2, 3, 4, 0] and b.underruns == 1


def test_sound_device_sink_fills_any_block_size_from_20ms_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", _fake_sounddevice(devices=1))
    sink = SoundDeviceSink(buffer=DeviceBuffer(prefill=1))
    for k in (1, 2):
        sink.buffer.put(np.full(960, k, np.float32))
    out = np.zeros((512, 1), np.float32)
    got = []
    for _ in range(3):  # PortAudio asking for 512-sample blocks
        sink._callback(out, 512, None, types.SimpleNamespace(output_underflow=False))
        got.append(out[:, 0].copy())
    x = np.concatenate(got)
    assert (x[:960] == 1).all() and (x[960:1536] == 2).all()


# --- what is missing ----------------------------------------------------------------------------------------
class _NoPortAudio(importlib.abc.MetaPathFinder):
    """``import sounddevice`` fails the way it does without libportaudio2: OSError, not ImportError."""

    def find_spec(self, name: str, path: object, target: object = None) -> None:
        if name == "sounddevice":
            raise OSError("PortAudio library not found")


def _fake_sounddevice(devices: int) -> types.ModuleType:
    sd = types.ModuleType("sounddevice")
    sd.PortAudioError = type("PortAudioError", (Exception,), {})

    def query_devices(device: object = None, kind: object = None) -> dict:
        if not devices:
            raise sd.PortAudioError("Error querying device -1")
        return {"name": "fake", "max_output_channels": 2}

    sd.query_devices = query_devices
    return sd


def test_missing_portaudio_names_the_package_to_install(monkeypatch: pytest.MonkeyPatch, clip_mp4: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_NoPortAudio(), *sys.meta_path])
    missing = r"PortAudio library not found.*apt install libportaudio2"
    with pytest.raises(AudioOutputUnavailable, match=missing):
        load_sounddevice()
    parser = argparse.ArgumentParser()
    live.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["live", "-i", str(clip_mp4), "--random-model"])  # --output device by default
    assert args.func(args) == 2
    err = capsys.readouterr().err
    assert "libportaudio2" in err and "--output FILE.wav" in err


def test_no_output_device_says_so_and_points_to_a_wav(monkeypatch: pytest.MonkeyPatch,
                                                      clip_mp4: Path) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", _fake_sounddevice(devices=0))
    built = []
    with pytest.raises(AudioOutputUnavailable, match=r"no audio output device.*--output FILE\.wav"):
        run_local(str(clip_mp4), "device", engine=lambda: built.append(1))
    assert not built  # checked before the model loads


def test_absent_camera_and_bad_inputs_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(CameraUnavailable, match=r"no camera at /dev/video-none.*--input FILE"):
        open_source("camera:/dev/video-none")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_source(str(tmp_path / "missing.mp4"))
    (tmp_path / "text.mp4").write_text("not a video")
    with pytest.raises(ValueError, match="cannot read"):
        open_source(str(tmp_path / "text.mp4"))
    with pytest.raises(ValueError, match="world:SEED"):
        open_source("world:abc")
    with pytest.raises(ValueError, match="FILE.wav"):
        run_local(str(tmp_path / "missing.mp4"), "out.mp3", engine=lambda: None)
