"""A real browser: headless Chromium with a fake camera fed from a .y4m clip opens the page, connects over
WebRTC, records the generated audio it receives and POSTs a summary back to the test server.

The sync test (issue 4, section 5, second test) runs the shipped model on the sync clip (tests/streaming/
test_sync.py) and has the page return the received samples with their play times and the preview's frame times
(``&samples=1``, streaming/static/app.js). Chromium's fake camera starts the .y4m (and loops it) when the page
opens it, at a moment the page only sees through its first presented frames: the clip's start is estimated as
the earliest ``frame time - (presentedFrames - 1) / fps``, events at ``start + n * clip + frame / fps`` are
expected ``latency_s`` later, and one global offset (the transport the reported latency does not cover, plus
the error of that estimate) is fitted and bounded, as in test_sync.

Needs Debian's chromium (.ci/install-browser.sh); skipped with the reason when /usr/bin/chromium is absent. As
root with ``unshare`` available, the server and browser run in a private network namespace with only loopback
up (../shared/reference/environment.md: otherwise Chromium gathers external addresses and sends mDNS there).
Run as a script (``python tests/streaming/test_browser.py OUT.json``) it performs one session and writes the
summary: that is what the test runs inside the namespace.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = Path("/usr/bin/chromium")
RECORD_S = 3.0
SYNC_RECORD_S = 16.0  # the sync test: the 16 s clip loops in the fake camera; events after the warm-up count
# Beyond the reported latency the browser adds its video capture/encode, NetEq's adaptive jitter buffer and
# WebAudio's output latency, and the clip-start estimate may be late by a frame or two: 0.19 s measured.
BROWSER_OFFSET_S = (0.0, 0.35)
# The page's browser shares the 2 cores with the model: at the default 92.9 ms hop the engine fell behind
# (305 underruns, 17 skipped hops in 16 s, compute p95 181 ms); every hop runs the whole 1.6 s window, so a
# 0.2 s hop halves the load (the hop is a server option, --hop; the model is the shipped one).
BROWSER_HOP_S = 0.2
BROWSER_SEARCH_S = 0.45  # wide enough to find the onsets before the offset is fitted
REPO = Path(__file__).resolve().parents[2]


def write_y4m(frames: np.ndarray, path: Path, fps: int = 30) -> None:
    """(N, H, W, 3) uint8 RGB -> YUV4MPEG2 4:2:0 (BT.601), the format Chromium's fake camera reads (and loops)."""
    n, h, w, _ = frames.shape
    x = frames.astype(np.float32)
    y = 16 + 0.257 * x[..., 0] + 0.504 * x[..., 1] + 0.098 * x[..., 2]
    u = 128 - 0.148 * x[..., 0] - 0.291 * x[..., 1] + 0.439 * x[..., 2]
    v = 128 + 0.439 * x[..., 0] - 0.368 * x[..., 1] - 0.071 * x[..., 2]
    sub = lambda c: c.reshape(n, h // 2, 2, w // 2, 2).mean(axis=(2, 4))  # noqa: E731  (N, H/2, W/2)
    planes = [np.clip(p, 0, 255).astype(np.uint8) for p in (y, sub(u), sub(v))]
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(n):
            f.write(b"FRAME\n")
            for p in planes:
                f.write(p[i].tobytes())


def chromium_command(url: str, y4m: Path, profile: Path) -> list[str]:
    return [str(CHROMIUM), "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--allow-loopback-in-peer-connection", "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream", f"--use-file-for-fake-video-capture={y4m}",
            "--autoplay-policy=no-user-gesture-required", "--disable-features=WebRtcHideLocalIpsWithMdns",
            f"--user-data-dir={profile}", url]


def clip_frames() -> np.ndarray:
    """A world clip when the asset cache is there, else synthetic frames (the transport is what is tested)."""
    from tests.world.conftest import assets_ready  # noqa: PLC0415

    if assets_ready():
        from frieren_rt.world import render_clip  # noqa: PLC0415

        frames = render_clip(200_000, duration=2.0).frames  # (60, 120, 160, 3)
        return np.repeat(np.repeat(frames, 2, axis=1), 2, axis=2)  # 320x240
    from frieren_rt.streaming.client import synthetic_frames  # noqa: PLC0415

    return synthetic_frames(60, width=320, height=240)


async def browser_session(work: Path, timeout_s: float = 40.0, *, sync: bool = False) -> dict:
    """Serve the page, let Chromium run it with ?autostart, return the page's report. Default: the random
    engine on :func:`clip_frames`; ``sync``: the shipped model on the sync test's clip, with the samples."""
    from aiohttp import web  # noqa: PLC0415

    from frieren_rt.streaming.builders import random_engine  # noqa: PLC0415
    from frieren_rt.streaming.server import ServerConfig, bound_port, create_app, start  # noqa: PLC0415

    y4m = work / "clip.y4m"
    if sync:
        from tests.streaming.test_sync import shipped_engine, sync_clip  # noqa: PLC0415

        frames = sync_clip().frames
        write_y4m(np.repeat(np.repeat(frames, 2, axis=1), 2, axis=2), y4m)  # 320x240, as the page asks
    else:
        write_y4m(clip_frames(), y4m)
    engine = (lambda: shipped_engine(BROWSER_HOP_S)) if sync else random_engine
    app = create_app(ServerConfig(port=0), engine=engine)
    report: asyncio.Future[dict] = asyncio.get_running_loop().create_future()

    async def receive(request: web.Request) -> web.Response:
        if not report.done():
            report.set_result(await request.json())
        return web.Response(text="ok")

    app.router.add_post("/test-report", receive)
    runner = await start(app, "127.0.0.1", 0)
    record = SYNC_RECORD_S if sync else RECORD_S
    url = (f"http://127.0.0.1:{bound_port(runner)}/?source=camera&autostart=1&record={record}"
           "&report=/test-report" + ("&samples=1" if sync else ""))
    return await chromium_report(url, y4m, work, report, runner, timeout_s)


async def chromium_report(url: str, y4m: Path, work: Path, report: asyncio.Future, runner, timeout_s: float
                          ) -> dict:
    """Run headless Chromium on ``url`` until the page posts its report (or ``timeout_s``), then kill it and
    stop the server ``runner``. Own process group: Chromium never exits by itself and leaves helper processes;
    the group is killed after."""
    proc = subprocess.Popen(chromium_command(url, y4m, work / "profile"), stdout=subprocess.DEVNULL,
                            stderr=open(work / "chromium.log", "wb"), start_new_session=True)
    try:
        return await asyncio.wait_for(report, timeout_s)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        await runner.cleanup()


def _isolated() -> bool:
    return os.geteuid() == 0 and shutil.which("unshare") is not None and shutil.which("ip") is not None and \
        subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0


def run_browser(tmp_path: Path, *, sync: bool = False) -> dict:
    """One page session, in a loopback-only network namespace when possible (see the module docstring)."""
    from tests.streaming.test_sync import cli_threads  # noqa: PLC0415

    if not _isolated():
        with cli_threads():
            return asyncio.run(browser_session(tmp_path, sync=sync))
    out = tmp_path / "report.json"
    cmd = f"ip link set lo up && exec {sys.executable} {Path(__file__)} {out}" + (" --sync" if sync else "")
    done = subprocess.run(["unshare", "-n", "sh", "-c", cmd], cwd=REPO, capture_output=True, text=True,
                          timeout=90)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.is_file(), reason="no /usr/bin/chromium: run .ci/install-browser.sh")
def test_headless_chromium_page_sends_fake_camera_and_receives_generated_audio(tmp_path: Path) -> None:
    result = run_browser(tmp_path)
    assert "error" not in result, result
    assert result["connectionState"] == "connected"
    assert result["packetsReceived"] > 50  # ~50 Opus packets per second
    assert result["totalSamplesReceived"] > 48000
    assert result["seconds"] >= 0.9 * RECORD_S  # recorded for the whole span
    assert result["nonzero"] > 0 and result["peak"] > 0  # the random model's audio, not digital silence


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    from tests.streaming.test_sync import cli_threads

    with tempfile.TemporaryDirectory() as tmp, cli_threads():
        summary = asyncio.run(browser_session(Path(tmp), sync="--sync" in sys.argv[2:]))
    Path(sys.argv[1]).write_text(json.dumps(summary))


def received_audio(result: dict):
    """The page's samples as ReceivedAudio on the page clock (seconds); contiguous, so arrivals are exact."""
    from frieren_rt.streaming.latency import ReceivedAudio  # noqa: PLC0415

    x = np.frombuffer(base64.b64decode(result["samplesB64"]), np.float32)  # (n,) mono
    rate = int(result["rate"])
    frame = rate // 50
    arrivals = result["sample0Ms"] / 1000 + np.arange(len(x) // frame + 1) * frame / rate
    return ReceivedAudio(x, arrivals, rate=rate, frame=frame)


def clip_start(frame_times: list, fps: int = 30) -> float:
    """Page-clock seconds at which the fake camera showed the clip's frame 0: frames are presented at most
    as early as their capture, so the earliest ``t - (presentedFrames - 1) / fps`` over the frames is the
    estimate (presentedFrames counts from the first frame the element showed; skipped frames still count)."""
    t = np.asarray(frame_times, dtype=np.float64)  # (N, 2): [ms, presentedFrames]
    return float(np.min(t[:, 0] / 1000 - (t[:, 1] - 1) / fps))


def neteq_stretch(stretch: list, times: np.ndarray) -> np.ndarray:
    """Seconds by which Chromium's NetEq had delayed the received audio at page-clock ``times`` (seconds), from
    the page's 100 ms samples of its counters (app.js receiverStretch: [ms, concealed, inserted, removed,
    samples received, seconds]). NetEq is adaptive: it conceals while a late packet is awaited and stretches or
    compresses speech-free audio to move its buffer, so the received timeline moves by tens of ms during a
    session (a loaded 2-core run: 88 -> 30 ms over 5 s). Only its changes matter: the offset fit takes the rest."""
    s = np.asarray(stretch, dtype=np.float64)  # (N, 6)
    if not len(s):
        return np.zeros_like(times)
    rate = s[-1, 4] / s[-1, 5] if s[-1, 5] > 0 else 48000.0
    moved = (s[:, 1] + s[:, 2] - s[:, 3]) / rate
    i = np.searchsorted(s[:, 0] / 1000, times, side="right") - 1  # the last sample at or before each time
    return np.where(i >= 0, moved[np.clip(i, 0, None)], 0.0)


def expected_in_recording(events, start: float, audio, latency_s: float, clip_s: float,
                          stretch: list | None = None) -> np.ndarray:
    """Expected play times of ``events`` over the looping clip that fall inside the recording, after the
    stream's warm-up and before its last half second; moved by NetEq's measured stretching when given."""
    from tests.streaming.test_sync import END_S, FPS, WARMUP_S  # noqa: PLC0415

    first, last = float(audio.play_time(0)) + WARMUP_S, float(audio.play_time(len(audio.samples) - 1)) - END_S
    times = np.asarray([start + n * clip_s + e.frame / FPS + latency_s for n in range(4) for e in events])
    times = times[(first <= times) & (times <= last)]
    moved = neteq_stretch(stretch or [], times)
    return times + moved - (np.median(moved) if len(moved) else 0.0)  # its changes over the counted events


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.is_file(), reason="no /usr/bin/chromium: run .ci/install-browser.sh")
def test_headless_chromium_hears_the_clips_events_in_sync_and_not_another_clips(tmp_path: Path) -> None:
    """The same check as test_sync on what the page heard (the tolerance, MIN_MATCHED and the clip rule are
    explained there). Measured (shipped weights of 2026-11-26 12:00, "single", hop 0.2 s, 1 torch thread, this
    2-core CPU with two training jobs running): reported latency 316 ms, fitted offset 66-68 ms, matched
    0.91 / 0.82 of 11 (residuals -16..+51 ms, median ~0), mismatched clip 0.10, 0-2 underruns; 35-37 s.
    A quiet run once matched 0.36: the residuals fell in two groups ~85 ms apart, NetEq having moved its buffer
    mid-session; the expected times now follow its measured stretching (neteq_stretch). Four runs beside a
    training job (17-48 underruns): matched 0.82-0.91, spread of the matched residuals 5-26 ms (8-33 without).
    The weights of 20:35 (runs/small11, event gate on), quiet: latency 326 ms, offset 64 ms, matched 0.82,
    mismatched clip 0.00, 1 underrun."""
    from frieren_rt.streaming.latency import onset_play_times  # noqa: PLC0415
    from tests.streaming import test_sync as sync  # noqa: PLC0415
    from tests.world.conftest import assets_ready  # noqa: PLC0415

    if not assets_ready():
        pytest.skip("asset cache absent: run 'frieren-rt assets fetch' first")
    result = run_browser(tmp_path, sync=True)
    assert "error" not in result, result
    audio = received_audio(result)
    assert len(audio.samples) >= 0.9 * SYNC_RECORD_S * audio.rate
    start, latency_s = clip_start(result["frameTimes"]), result["latencyS"]
    onsets = onset_play_times(audio)
    (_, clip), (_, other) = sync.qualifying_seeds(2)
    stretch = result.get("stretch")
    events = expected_in_recording(sync.separable_events(clip.events, sync.CLIP_S), start, audio, latency_s,
                                   sync.CLIP_S, stretch)
    truth = sync.check_events(onsets, events, search_s=BROWSER_SEARCH_S)
    wrong = sync.check_events(onsets, expected_in_recording(sync.separable_events(other.events, sync.CLIP_S),
                                                            start, audio, latency_s, sync.CLIP_S, stretch),
                              truth.transport_s, search_s=BROWSER_SEARCH_S)
    print(f"\nbrowser sync: latency {1000 * latency_s:.0f} ms, offset {1000 * truth.transport_s:.0f} ms, "
          f"residual ms {np.round(1000 * truth.residual).tolist()}, matched {truth.matched:.2f}; "
          f"mismatched clip matched {wrong.matched:.2f}; underruns {result['server'].get('underruns')}")
    assert len(events) >= sync.MIN_EVENTS
    lo, hi = BROWSER_OFFSET_S
    assert lo <= truth.transport_s <= hi, truth
    assert truth.matched >= sync.MIN_MATCHED, np.round(1000 * truth.residual)
    assert -sync.ATSC_EARLY_S <= truth.median_matched_s <= sync.ATSC_LATE_S, np.round(1000 * truth.residual)
    assert wrong.matched < sync.MIN_MATCHED, np.round(1000 * wrong.residual)


def test_neteq_stretch_reads_concealed_and_inserted_minus_removed_samples_as_the_delay_at_each_time() -> None:
    # [ms, concealed, inserted, removed, samples received, seconds]: 48 kHz; 4800 concealed by 1 s, 2400
    # removed again by 2 s.
    stretch = [[0, 0, 0, 0, 0, 0], [1000, 4800, 0, 0, 48000, 1.0], [2000, 4800, 0, 2400, 96000, 2.0]]
    got = neteq_stretch(stretch, np.asarray([-0.5, 0.5, 1.0, 1.5, 2.5]))
    np.testing.assert_allclose(got, [0.0, 0.0, 0.1, 0.1, 0.05])
    assert neteq_stretch([], np.asarray([1.0])).tolist() == [0.0]
