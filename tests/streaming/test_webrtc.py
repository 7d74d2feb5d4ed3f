"""Media stages of the WebRTC transport and the latency measurement functions (no network)."""

import asyncio

import aioice.ice
import numpy as np
import pytest

from frieren_rt.streaming.latency import ReceivedAudio, first_audio_latency, onset_offsets, summarize
from frieren_rt.streaming.webrtc import CaptureTimeMapper, LevelMeter, ice_host_addresses, to_s16_stereo


def test_s16_stereo_frame_is_what_aiortc_expects() -> None:
    x = np.linspace(-1.5, 1.5, 960, dtype=np.float32)
    f = to_s16_stereo(x, index=3)
    a = f.to_ndarray()  # packed: (1, 2 * 960)
    assert f.format.name == "s16" and f.layout.name == "stereo" and f.sample_rate == 48000 and f.samples == 960
    assert f.pts == 3 * 960 and float(f.time_base) == 1 / 48000
    assert np.array_equal(a[0, 0::2], a[0, 1::2])  # both channels carry the mono signal
    assert a.max() == 32767 and a.min() == -32767  # clipped, not wrapped


def test_capture_times_follow_pts_anchored_at_first_arrival_and_never_lie_in_the_future() -> None:
    m = CaptureTimeMapper(max_lag_s=0.5)
    assert m.map(10.0, arrival=100.0) == 100.0
    assert m.map(10.1, arrival=100.13) == pytest.approx(100.1)  # network jitter: pts spacing kept
    assert m.map(10.2, arrival=100.15) == pytest.approx(100.15)  # earlier than the anchor implies: re-anchored
    assert m.map(10.3, arrival=100.25) == pytest.approx(100.25)
    assert m.map(10.35, arrival=101.5) == pytest.approx(101.0)  # sender clock stalled: lag capped at 0.5 s


def test_a_late_first_frame_is_revised_by_the_on_time_frames_after_it() -> None:
    """The sender's first encode held frame 0 for 130 ms; frames 1.. arrive on time (seen with aiortc's VP8)."""
    m = CaptureTimeMapper()
    assert m.revision_s == 0.0
    assert m.map(0.0, arrival=100.13) == 100.13  # mapped late: nothing tells yet
    assert m.revision_s == 0.0
    for k in range(1, 6):
        m.map(k / 30, arrival=100.0 + k / 30 + 0.002)
    assert m.revision_s == pytest.approx(0.128)  # frame 0 was captured 128 ms before its mapped time
    assert m.map(6 / 30, arrival=100.0 + 6 / 30 + 0.002) == pytest.approx(100.202)  # later frames mapped right


def test_ice_host_addresses_restricts_and_restores_aioice_gathering() -> None:
    original = aioice.ice.get_host_addresses
    with ice_host_addresses(["127.0.0.1"]):
        assert aioice.ice.get_host_addresses(True, True) == ["127.0.0.1"]
        assert aioice.ice.get_host_addresses(False, True) == []
    assert aioice.ice.get_host_addresses is original


def test_level_meter_reports_dbfs_and_silent_frames() -> None:
    m = LevelMeter()
    m.update(np.full(960, 0.5, np.float32), silent=False)
    assert m.rms_db == pytest.approx(-6.02, abs=0.01) and m.peak == 0.5
    m.update(np.zeros(960, np.float32), silent=True)
    assert m.silent_frames == 1 and m.frames == 2 and m.rms_db <= -120


def _received(samples: np.ndarray, t0: float) -> ReceivedAudio:
    n = len(samples) // 960
    return ReceivedAudio(samples[: n * 960], t0 + 0.02 * np.arange(n))


def test_first_audio_latency_reads_the_first_nonsilent_sample() -> None:
    x = np.zeros(48000, np.float32)
    x[9600 + 480 :] = 0.1  # audio starts half-way into frame 10
    audio = _received(x, t0=5.0)
    lat = first_audio_latency(audio, first_capture=4.8, stream_delay_s=0.02)
    assert lat == pytest.approx(5.0 + 0.21 - 4.78)
    assert first_audio_latency(_received(np.zeros(9600, np.float32), 0.0), 0.0) is None


def test_onset_offsets_measure_each_events_sync_error() -> None:
    rate, latency = 48000, 0.4
    captures = [1.0, 2.0, 3.0]
    errors = [0.0, 0.03, -0.015]
    x = np.zeros(5 * rate, np.float32)
    for c, e in zip(captures, errors):
        start = round((c + latency + e) * rate)
        x[start : start + 2400] = np.sin(np.arange(2400) * 0.3)  # a 50 ms burst
    audio = _received(x, t0=0.0)
    got = onset_offsets(audio, captures + [4.0], latency, threshold=0.1, search_s=0.1)
    assert got[3] is None  # no sound for an event that made none
    assert np.allclose(got[:3], errors, atol=0.006)  # within one 5 ms envelope block
    assert summarize(got)["n"] == 3 and summarize(got)["max"] == pytest.approx(0.03, abs=0.006)


# --- receive path: frames leave the video jitter buffer when complete (issue 4) ----------------------------------

from aiortc.jitterbuffer import JitterBuffer  # noqa: E402
from aiortc.rtp import RtpPacket  # noqa: E402

from frieren_rt.streaming.webrtc import MarkerJitterBuffer, low_latency_video_receiver, new_peer_connection  # noqa: E402


def _packet(seq: int, ts: int, marker: int, data: bytes) -> RtpPacket:
    p = RtpPacket(sequence_number=seq, timestamp=ts, marker=marker)
    p._data = data  # aiortc sets the depayloaded bytes here
    return p


def test_marker_jitter_buffer_releases_a_frame_at_its_marked_last_packet() -> None:
    jb = MarkerJitterBuffer()
    assert jb.add(_packet(10, 3000, 0, b"a"))[1] is None  # the frame's first packet: not complete yet
    _, frame = jb.add(_packet(11, 3000, 1, b"b"))  # marked last packet: out at once
    assert frame is not None and frame.data == b"ab" and frame.timestamp == 3000
    # aiortc's own buffer holds the same frame until the next frame's first packet arrives (one frame later)
    plain = JitterBuffer(capacity=512, is_video=True)
    assert plain.add(_packet(10, 3000, 0, b"a"))[1] is None and plain.add(_packet(11, 3000, 1, b"b"))[1] is None
    assert plain.add(_packet(12, 6000, 0, b"c"))[1].data == b"ab"


def test_marker_jitter_buffer_waits_for_gaps_and_falls_back_without_markers() -> None:
    jb = MarkerJitterBuffer()
    assert jb.add(_packet(20, 100, 0, b"x"))[1] is None
    assert jb.add(_packet(22, 100, 1, b"z"))[1] is None  # packet 21 missing: the marked frame is incomplete
    assert jb.add(_packet(21, 100, 0, b"y"))[1].data == b"xyz"
    unmarked = MarkerJitterBuffer()
    assert unmarked.add(_packet(5, 1, 0, b"p"))[1] is None
    assert unmarked.add(_packet(6, 2, 0, b"q"))[1].data == b"p"  # a new timestamp completes the previous frame


def test_low_latency_video_receiver_swaps_the_receivers_buffer() -> None:
    async def scenario() -> None:
        pc = new_peer_connection()
        try:
            receiver = pc.addTransceiver("video", direction="recvonly").receiver
            assert low_latency_video_receiver(pc, receiver.track)
            assert isinstance(receiver._RTCRtpReceiver__jitter_buffer, MarkerJitterBuffer)
        finally:
            await pc.close()

    asyncio.run(scenario())
