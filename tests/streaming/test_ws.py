"""``/ws``: the game-capture WebSocket transport against a live server (random engine, 127.0.0.1).

One module-wide server runs on an event loop in a background thread with one well-behaved capture session
streaming JPEG frames at 30 fps; every bad-input test opens its own connection, checks the documented error
message or close code, and then checks that the good session kept receiving 20 ms audio frames throughout.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from frieren_rt.client.protocol import (
    AudioFormat,
    CloseCode,
    ErrorCode,
    Hello,
    VideoFormat,
    frame_samples,
    pack_frame,
    unpack_audio,
)
from frieren_rt.client.ws import CaptureClient, FrameEncoder, ServerClosed
from frieren_rt.streaming.client import synthetic_frames
from frieren_rt.streaming.ws import FrameDecoder, PcmEncoder, audio_capture_time

TOKEN = "s3cret"
MAX_MESSAGE = 256 * 1024


class StallMeter:
    """A thread that wakes every 5 ms and records how late it woke: stalls of the whole test process (a garbage
    collection, the OS taking both cores), which hold up the good session's client as much as any server."""

    def __init__(self, tick_s: float = 0.005) -> None:
        self.tick_s, self.late = tick_s, []  # (woke at, seconds late)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            due = time.monotonic() + self.tick_s
            time.sleep(self.tick_s)
            now = time.monotonic()
            if now - due > 0.02:
                self.late.append((now, now - due))

    def stalled_s(self, start: float, end: float) -> float:
        """Seconds of process stall that ended within (start, end]."""
        return sum(d for t, d in self.late if start < t <= end)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(1)


class LiveServer:
    """A server on a background event loop plus one good session whose audio arrivals are recorded."""

    def __init__(self, **config: Any) -> None:
        from frieren_rt.streaming.builders import random_engine  # noqa: PLC0415
        from frieren_rt.streaming.server import ServerConfig, bound_port, create_app, start  # noqa: PLC0415

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.token = config.get("token")
        self.app = create_app(ServerConfig(port=0, **config), engine=random_engine)
        self.runner = self.run(start(self.app, "127.0.0.1", 0))
        port = bound_port(self.runner)
        self.base, self.url = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/ws"
        self.arrivals: list[float] = []
        self.stalls = StallMeter()
        self.good = self.run(CaptureClient.connect(self.url, Hello(client="good"), token=self.token,
                                                   on_audio=lambda c: self.arrivals.append(c.arrival)))
        self.feeder = asyncio.run_coroutine_threadsafe(self._feed(), self.loop)

    def run(self, coro: Any, timeout_s: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    async def _feed(self) -> None:
        frames = synthetic_frames(30, width=160, height=120)
        start, i = time.monotonic(), 0
        while True:
            await asyncio.sleep(max(0.0, start + i / 30 - time.monotonic()))
            self.good.submit(frames[i % 30], round(i * 1e6 / 30))
            i += 1

    def assert_good_session_streamed(self, since: float, min_s: float = 0.4) -> None:
        """The good session received 20 ms frames continuously since ``since`` (waits until ``min_s`` passed)."""
        time.sleep(max(0.0, since + min_s - time.monotonic()))
        now = time.monotonic()
        got = [since] + [a for a in self.arrivals if since <= a <= now] + [now]
        assert len(got) - 2 >= 0.6 * (now - since) / 0.02, f"{len(got) - 2} frames in {now - since:.2f} s"
        # 20 ms pacing; slack for the shared 2-core machine (a clean-clone CI run saw one 0.354 s gap while the
        # fuzzer kept both cores busy): a stall, not a lost session. Stalls of the whole process are not the
        # server's (another CI run saw one 0.65 s gap): the StallMeter's measure of them is taken off each gap.
        gaps = [b - a - self.stalls.stalled_s(a, b) for a, b in zip(got, got[1:])]
        assert max(gaps) < 0.5, f"{max(gaps):.3f} s without audio beyond process stalls"
        assert not self.good.closed

    def close(self) -> None:
        self.stalls.stop()
        self.feeder.cancel()
        self.run(self.good.close())
        self.run(self.runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(scope="module")
def live() -> Iterator[LiveServer]:
    server = LiveServer(token=TOKEN, handshake_timeout_s=0.5, idle_timeout_s=1.5, max_message_bytes=MAX_MESSAGE,
                        max_sessions=32)
    try:
        yield server
    finally:
        server.close()


# --- raw protocol helpers ---------------------------------------------------------------------------------------
async def raw_connect(url: str, hello: str | None = None, token: str | None = TOKEN) -> Any:
    """A websockets connection after the hello (and the config reply when ``hello`` is given)."""
    from websockets.asyncio.client import connect  # noqa: PLC0415

    headers = {"Authorization": f"Bearer {token}"} if token else None
    ws = await connect(url, compression=None, max_size=None, additional_headers=headers)
    if hello is not None:
        await ws.send(hello)
    return ws


async def next_control(ws: Any, kind: str, timeout_s: float = 3.0) -> dict:
    """The next JSON message of ``kind``, skipping audio and other control messages."""
    deadline = time.monotonic() + timeout_s
    while True:
        msg = await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic()))
        if isinstance(msg, str) and json.loads(msg)["type"] == kind:
            return json.loads(msg)


async def close_code(ws: Any, timeout_s: float = 3.0) -> tuple[int | None, str]:
    """Read until the server closes; its close code and reason."""
    from websockets.exceptions import ConnectionClosed  # noqa: PLC0415

    with pytest.raises(ConnectionClosed):
        async with asyncio.timeout(timeout_s):
            while True:
                await ws.recv()
    return ws.close_code, ws.close_reason


def good_frame(seq: int = 0, ts: int = 0, fmt: VideoFormat = VideoFormat.JPEG) -> bytes:
    payload, w, h = FrameEncoder(fmt)(synthetic_frames(1, width=64, height=48)[0])
    return pack_frame(payload, seq=seq, timestamp_us=ts, width=w, height=h, fmt=fmt)


def jpeg_bytes() -> bytes:
    return FrameEncoder("jpeg")(synthetic_frames(1, width=64, height=48)[0])[0]


def h264_units(n: int) -> list[bytes]:
    enc = FrameEncoder("h264")
    return [enc(f)[0] for f in synthetic_frames(n, width=64, height=48)]


HELLO = Hello().to_json()
BAD_FRAMES = {
    "short header": (b"FV\x01\x01", ErrorCode.BAD_HEADER),
    "wrong magic": (b"XX" + good_frame()[2:], ErrorCode.BAD_HEADER),
    "length mismatch": (good_frame()[:-1], ErrorCode.BAD_HEADER),
    "unknown format": (pack_frame(b"abc", seq=0, timestamp_us=0, width=1, height=1, fmt=77), ErrorCode.UNKNOWN_FORMAT),
    "oversized frame size": (pack_frame(bytes(10), seq=0, timestamp_us=0, width=9000, height=9000,
                                        fmt=VideoFormat.JPEG), ErrorCode.FRAME_TOO_LARGE),
    "raw size mismatch": (pack_frame(bytes(100), seq=0, timestamp_us=0, width=64, height=48, fmt=VideoFormat.RGBA),
                          ErrorCode.BAD_PAYLOAD),
    "corrupt jpeg": (pack_frame(jpeg_bytes()[: len(jpeg_bytes()) // 2], seq=0, timestamp_us=0, width=64, height=48,
                                fmt=VideoFormat.JPEG), ErrorCode.DECODE_FAILED),
    "random jpeg": (pack_frame(bytes(range(256)) * 8, seq=0, timestamp_us=0, width=0, height=0,
                               fmt=VideoFormat.JPEG), ErrorCode.DECODE_FAILED),
    "corrupt h264 unit": (pack_frame(b"\x00\x00\x00\x01\x65" + bytes(range(256)) * 4, seq=0, timestamp_us=0,
                                     width=64, height=48, fmt=VideoFormat.H264), ErrorCode.DECODE_FAILED),
}


@pytest.mark.parametrize("case", list(BAD_FRAMES))
def test_bad_frame_gets_its_error_and_the_session_and_others_go_on(live: LiveServer, case: str) -> None:
    message, code = BAD_FRAMES[case]

    async def scenario() -> tuple[dict, dict]:
        ws = await raw_connect(live.url, HELLO)
        await next_control(ws, "config")
        await ws.send(message)
        error = await next_control(ws, "error")
        await ws.send(good_frame(seq=1, ts=1000))  # the same session still takes good frames
        await next_control(ws, "credit")
        await next_control(ws, "credit")
        stats = await next_control(ws, "stats")
        await ws.close()
        return error, stats

    t0 = time.monotonic()
    error, stats = live.run(scenario())
    assert error["code"] == code.value and error["message"]
    assert stats["frames_decoded"] == 1 and stats["errors"] == 1
    live.assert_good_session_streamed(t0)


def test_text_where_a_frame_is_expected_gets_unexpected_text(live: LiveServer) -> None:
    async def scenario() -> dict:
        ws = await raw_connect(live.url, HELLO)
        await next_control(ws, "config")
        await ws.send('{"type": "frame"}')
        error = await next_control(ws, "error")
        await ws.close()
        return error

    t0 = time.monotonic()
    assert live.run(scenario())["code"] == ErrorCode.UNEXPECTED_TEXT.value
    live.assert_good_session_streamed(t0)


def test_non_increasing_capture_time_is_refused_as_stale(live: LiveServer) -> None:
    async def scenario() -> dict:
        ws = await raw_connect(live.url, HELLO)
        await next_control(ws, "config")
        await ws.send(good_frame(seq=0, ts=5000))
        await next_control(ws, "credit")  # decoded: otherwise the second would replace it (latest wins)
        await ws.send(good_frame(seq=1, ts=5000))
        error = await next_control(ws, "error")
        await ws.close()
        return error

    error = live.run(scenario())
    assert error["code"] == ErrorCode.STALE_TIMESTAMP.value and error["seq"] == 1


@pytest.mark.parametrize(("hello", "token", "code"), [
    (None, TOKEN, CloseCode.HANDSHAKE_TIMEOUT),  # nothing within handshake_timeout_s
    ("not json", TOKEN, CloseCode.BAD_HELLO),
    (b"FV binary first", TOKEN, CloseCode.BAD_HELLO),
    ('{"type": "hello", "version": 99}', TOKEN, CloseCode.UNSUPPORTED_VERSION),
    ('{"type": "hello", "version": 1, "audio": {"sample_rate": 44100}}', TOKEN, CloseCode.UNSUPPORTED_CONFIG),
    (Hello(token="wrong").to_json(), TOKEN, CloseCode.UNAUTHORIZED),
])
def test_bad_handshake_is_closed_with_the_documented_code(live: LiveServer, hello: Any, token: str,
                                                          code: CloseCode) -> None:
    async def scenario() -> tuple[int | None, str]:
        ws = await raw_connect(live.url, hello, token=token)
        return await close_code(ws)

    t0 = time.monotonic()
    got, reason = live.run(scenario())
    assert got == code and reason
    live.assert_good_session_streamed(t0)


def test_missing_or_wrong_bearer_token_is_refused_before_the_upgrade(live: LiveServer) -> None:
    for token in (None, "wrong"):
        with pytest.raises(ServerClosed) as info:
            live.run(CaptureClient.connect(live.url, Hello(), token=token))
        assert info.value.code == 401


def test_oversized_message_closes_with_1009_and_idle_session_with_4005(live: LiveServer) -> None:
    async def scenario() -> tuple[tuple, tuple]:
        big = await raw_connect(live.url, HELLO)
        await next_control(big, "config")
        await big.send(pack_frame(bytes(MAX_MESSAGE), seq=0, timestamp_us=0, width=0, height=0,
                                  fmt=VideoFormat.JPEG))
        idle = await raw_connect(live.url, HELLO)
        await next_control(idle, "config")
        return await close_code(big), await close_code(idle, timeout_s=4.0)

    t0 = time.monotonic()
    big, idle = live.run(scenario())
    assert big[0] == CloseCode.MESSAGE_TOO_BIG and idle[0] == CloseCode.IDLE_TIMEOUT
    live.assert_good_session_streamed(t0)


def test_a_flood_of_bad_frames_is_closed_with_4006(live: LiveServer) -> None:
    async def scenario() -> tuple[int | None, str]:
        ws = await raw_connect(live.url, HELLO)
        await next_control(ws, "config")
        for _ in range(40):
            await ws.send(b"garbage")
        return await close_code(ws)

    assert live.run(scenario())[0] == CloseCode.TOO_MANY_ERRORS


def test_frames_beyond_the_credit_drop_the_oldest_with_credit_exceeded(live: LiveServer) -> None:
    async def scenario() -> tuple[dict, dict]:
        ws = await raw_connect(live.url, Hello(credits=1).to_json())
        config = await next_control(ws, "config")
        for i in range(4):  # three more than the one credit granted
            await ws.send(good_frame(seq=i, ts=1000 * (i + 1)))
        error = await next_control(ws, "error")
        await ws.close()
        return config, error

    config, error = live.run(scenario())
    assert config["credits"] == 1 and error["code"] == ErrorCode.CREDIT_EXCEEDED.value


@pytest.mark.parametrize(("fmt", "rate", "channels"), [("s16le", 48000, 1), ("f32le", 16000, 2)])
def test_good_session_gets_20ms_frames_tagged_with_its_capture_times(live: LiveServer, fmt: str, rate: int,
                                                                     channels: int) -> None:
    async def scenario() -> tuple[Any, list, float, dict]:
        client = await CaptureClient.connect(live.url, Hello(audio_format=fmt, sample_rate=rate, channels=channels),
                                             token=TOKEN, encoder=FrameEncoder("h264"))
        frames = synthetic_frames(30, width=160, height=120)
        start = time.monotonic()
        for i in range(45):  # 1.5 s, capture timeline = seconds since start (us)
            await asyncio.sleep(max(0.0, start + i / 30 - time.monotonic()))
            client.submit(frames[i % 30], round((time.monotonic() - start) * 1e6))
        chunks = []
        while (c := await client.recv_audio(0.5)) is not None and c.arrival < start + 2.2:
            chunks.append(c)
        stats = dict(client.stats)  # the newest periodic stats (one a second)
        await client.close()
        return client.config, chunks, start, stats

    config, chunks, start, stats = live.run(scenario())
    n = frame_samples(rate)
    assert config.sample_rate == rate and config.frame_samples == n
    assert all(c.header.samples == n and c.header.channels == channels and c.samples.shape == (n, channels)
               and c.header.format == AudioFormat.parse(fmt) for c in chunks)
    assert [c.header.sample_index for c in chunks] == [i * n for i in range(len(chunks))]  # contiguous
    timed = [c for c in chunks if c.header.timed]
    assert len(timed) > 30
    ts = np.array([c.header.video_timestamp_us for c in timed])
    # 20 ms apart on the client's own timeline, except where the server's arrival mapping was corrected (a
    # frame arrived earlier than the first frames implied): then the tags jump forward by the correction.
    steps = np.diff(ts)
    assert np.all(steps >= 20_000) and np.mean(steps == 20_000) > 0.8 and np.sum(steps - 20_000) < 150_000
    # audio for capture time t arrives at about t + latency (engine latency; loopback transport adds ~ms)
    lag = np.array([c.arrival - start - c.header.video_timestamp_us / 1e6 for c in timed])
    assert np.all(lag > config.latency_s - 0.1) and np.median(lag) < config.latency_s + 0.15
    assert stats["frames_decoded"] >= 25 and stats["transport"] == "websocket" and stats["hops"] >= 3
    assert any(not c.header.silent and np.abs(c.samples).max() > 0 for c in timed)


def test_ws_sessions_count_against_the_shared_session_limit() -> None:
    from frieren_rt.streaming import client as webrtc_client  # noqa: PLC0415
    from frieren_rt.streaming.server import SESSIONS  # noqa: PLC0415
    from tests.streaming.test_server import get_json, running_server  # noqa: PLC0415

    async def scenario() -> None:
        async with running_server(max_sessions=1) as (app, base):
            url = base.replace("http", "ws") + "/ws"
            first = await CaptureClient.connect(url)
            with pytest.raises(ServerClosed) as info:
                await CaptureClient.connect(url)
            assert info.value.code == CloseCode.TRY_AGAIN_LATER
            with pytest.raises(ConnectionError, match="503"):  # WebRTC sees the same registry
                await webrtc_client.publish_offer(base, webrtc_client.synthetic_frames(30), 30)
            status, listing = await get_json(f"{base}/sessions")
            assert status == 200 and [s["transport"] for s in listing["sessions"]] == ["websocket"]
            status, one = await get_json(f"{base}/stats/{first.config.session}")
            assert status == 200 and one["id"] == first.config.session
            await first.close()
            for _ in range(50):
                if not app[SESSIONS].sessions:
                    break
                await asyncio.sleep(0.02)
            assert not app[SESSIONS].sessions  # the slot is free again
            second = await CaptureClient.connect(url)
            await second.close()

    asyncio.run(scenario())


# --- units ------------------------------------------------------------------------------------------------------
def test_frame_decoder_gives_rgb_at_the_engine_size_for_every_format() -> None:
    from frieren_rt.client.protocol import unpack_frame  # noqa: PLC0415
    from frieren_rt.streaming.webrtc import VideoSize  # noqa: PLC0415

    rgb = np.zeros((48, 64, 3), dtype=np.uint8)
    rgb[:, :32] = (200, 30, 30)
    for fmt in VideoFormat:
        decoder = FrameDecoder(VideoSize(32, 24))
        payload, w, h = FrameEncoder(fmt)(rgb)
        out = decoder(*unpack_frame(pack_frame(payload, seq=0, timestamp_us=0, width=w, height=h, fmt=fmt)))
        assert out.shape == (24, 32, 3) and out.dtype == np.uint8
        assert abs(int(out[12, 4, 0]) - 200) < 20 and int(out[12, 28, 0]) < 30, fmt  # left red, right dark


def test_pcm_encoder_resamples_into_exact_20ms_frames_keeping_each_frames_timestamp() -> None:
    enc = PcmEncoder(AudioFormat.S16LE, 16000, 2)
    t = np.arange(960 * 10) / 48000
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    messages = [m for i in range(10) for m in enc.push(tone[i * 960:(i + 1) * 960], i * 20_000, False)]
    heads = [unpack_audio(m) for m in messages]
    assert len(heads) == 9  # one frame behind: output frame m needs input m + 1 for its last taps
    assert [h.video_timestamp_us for h, _ in heads] == [i * 20_000 for i in range(9)]
    pcm = np.concatenate([np.frombuffer(p, "<i2").reshape(-1, 2)[:, 0] for _, p in heads]) / 32767
    want = 0.5 * np.sin(2 * np.pi * 440 * np.arange(len(pcm)) / 16000)
    assert np.abs(pcm[40:] - want[40:]).max() < 0.01  # same time axis: no delay


def test_audio_capture_time_inverts_the_pacers_fifo_mapping() -> None:
    # anchor 10.0: FIFO sample 0 plays then; latency 0.5; the pacer started 0.1 s after the anchor.
    t = audio_capture_time(10.0, 0.5, 10.1, 48000, 960, index=3)
    assert t == pytest.approx(10.0 + 0.1 + 3 * 0.02 - 0.5)


def test_whep_offer_for_a_websocket_session_is_refused_with_409(live: LiveServer) -> None:
    import aiohttp  # noqa: PLC0415

    async def scenario() -> int:
        sdp = ("v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
               "c=IN IP4 0.0.0.0\r\na=rtpmap:111 opus/48000/2\r\na=recvonly\r\n")
        async with aiohttp.ClientSession() as http, http.post(
                f"{live.base}/whep/{live.good.config.session}", data=sdp,
                headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {TOKEN}"}) as r:
            return r.status

    assert live.run(scenario()) == 409
