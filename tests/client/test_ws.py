"""frieren_rt.client.ws against a live server (random engine on 127.0.0.1): the blocking wrapper, a whole clip
with aligned recording, and the ``capture`` command's WAV output and its --play error without PortAudio."""

from __future__ import annotations

import argparse
import time
import wave
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from frieren_rt.client.protocol import AUDIO_FLAG_TIMED, AudioFormat, AudioHeader, Hello, VideoFormat
from frieren_rt.client.ws import AudioChunk, BlockingCaptureClient, FrameEncoder, aligned_audio, stream_frames
from frieren_rt.streaming.client import synthetic_frames
from tests.streaming.test_ws import LiveServer


@pytest.fixture(scope="module")
def live() -> Iterator[LiveServer]:
    server = LiveServer()
    try:
        yield server
    finally:
        server.close()


def test_blocking_client_sends_frames_and_reads_tagged_audio(live: LiveServer) -> None:
    frames = synthetic_frames(30, width=96, height=64)
    with BlockingCaptureClient(live.url, Hello(channels=2), encoder=FrameEncoder("i420")) as c:
        assert c.config.channels == 2 and c.config.session
        start = time.monotonic()
        for i in range(36):
            time.sleep(max(0.0, start + i / 30 - time.monotonic()))
            c.submit(frames[i % 30], round(i * 1e6 / 30))
        chunks = [c.read_audio(1.0) for _ in range(40)]
    assert all(ch is not None and ch.samples.shape == (960, 2) for ch in chunks)
    assert any(ch.header.timed for ch in chunks)


def test_stream_frames_sends_every_frame_in_real_time_and_receives_audio(live: LiveServer) -> None:
    result = live.run(stream_frames(live.url, synthetic_frames(30, width=96, height=64), 30, fmt="h264",
                                    tail_s=0.8))
    assert result.frames_sent + result.frames_replaced == 30 and result.frames_sent >= 25
    assert result.close_code == 1000 and not result.errors
    assert 1.4 < result.audio_s < 2.5  # paced: about 1 s of clip + the tail
    assert result.stats["frames_decoded"] >= 20


def test_aligned_audio_places_each_chunk_at_its_video_timestamp() -> None:
    def chunk(ts_us: int, value: float, timed: bool = True) -> AudioChunk:
        h = AudioHeader(AudioFormat.F32LE, AUDIO_FLAG_TIMED if timed else 0, 1, 960, ts_us, 0, 48000)
        return AudioChunk(h, np.full((960, 1), value, dtype=np.float32), 0.0)

    out = aligned_audio([chunk(-10_000, 0.1), chunk(20_000, 0.5), chunk(40_000, 0.7, timed=False)], 48000, 0.05)
    assert out.shape == (2400, 1)
    assert np.all(out[:480] == 0.1) and np.all(out[480:960] == 0) and np.all(out[960:1920] == 0.5)
    assert np.all(out[1920:] == 0)  # untimed chunks are not placed


def test_frame_encoder_h264_emits_annex_b_units_starting_with_a_keyframe() -> None:
    enc = FrameEncoder(VideoFormat.H264, fps=30)
    units = [enc(f)[0] for f in synthetic_frames(3, width=64, height=48)]
    assert all(u.startswith((b"\x00\x00\x00\x01", b"\x00\x00\x01")) for u in units)
    assert b"\x00\x00\x01\x65" in units[0] or b"\x00\x00\x00\x01\x65" in units[0]  # IDR slice (NAL type 5)


# --- the command -----------------------------------------------------------------------------------------------
def capture(argv: list[str]) -> int:
    from frieren_rt.cli import capture as cmd  # noqa: PLC0415

    parser = argparse.ArgumentParser()
    cmd.register(parser.add_subparsers())
    args = parser.parse_args(["capture", *argv])
    return args.func(args)


def write_mp4(path: Path, frames: np.ndarray, fps: int = 30) -> None:
    import av  # noqa: PLC0415

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.codec_context.time_base = Fraction(1, fps)
        for f in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        out.mux(stream.encode())


def test_capture_command_records_a_wav_on_the_video_timeline(live: LiveServer, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    video, wav = tmp_path / "in.mp4", tmp_path / "out.wav"
    write_mp4(video, synthetic_frames(30, width=96, height=64))
    assert capture(["--server", live.base, "--input", str(video), "--record", str(wav), "--sample-rate", "24000"]) == 0
    out = capsys.readouterr().out
    assert "30 of 30 frames" in out or "of 30 frames sent" in out
    with wave.open(str(wav)) as w:
        assert w.getframerate() == 24000 and w.getnframes() == 24000  # exactly the clip's second
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    assert np.abs(pcm).max() > 0  # the random engine's noise, placed on the timeline


def test_capture_play_without_portaudio_says_what_is_missing(live: LiveServer, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    try:
        import sounddevice as sd  # noqa: PLC0415

        sd.query_devices(kind="output")
        pytest.skip("this machine has PortAudio and an output device")
    except (OSError, ValueError, ImportError, Exception):  # noqa: BLE001 - PortAudioError too
        pass
    video = tmp_path / "in.mp4"
    write_mp4(video, synthetic_frames(3, width=32, height=32))
    assert capture(["--server", live.base, "--input", str(video), "--play"]) == 2
    err = capsys.readouterr().out
    assert "cannot play" in err and ("PortAudio" in err or "output device" in err) and "--record" in err


def test_capture_refused_token_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server = LiveServer(token="right")
    try:
        video = tmp_path / "in.mp4"
        write_mp4(video, synthetic_frames(3, width=32, height=32))
        assert capture(["--server", server.url, "--input", str(video), "--token", "wrong"]) == 2
        assert "refused" in capsys.readouterr().out
    finally:
        server.close()
