"""A real browser: headless Chromium with a fake camera fed from a .y4m clip opens the page, connects over
WebRTC, records the generated audio it receives and POSTs a summary back to the test server.

Needs Debian's chromium (.ci/install-browser.sh); skipped with the reason when /usr/bin/chromium is absent. As
root with ``unshare`` available, the server and browser run in a private network namespace with only loopback
up (../shared/reference/environment.md: otherwise Chromium gathers external addresses and sends mDNS there).
Run as a script (``python tests/streaming/test_browser.py OUT.json``) it performs one session and writes the
summary: that is what the test runs inside the namespace.
"""

from __future__ import annotations

import asyncio
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


async def browser_session(work: Path, timeout_s: float = 40.0) -> dict:
    """Serve the page (random engine), let Chromium run it with ?autostart, return the page's report."""
    from aiohttp import web  # noqa: PLC0415

    from frieren_rt.streaming.builders import random_engine  # noqa: PLC0415
    from frieren_rt.streaming.server import ServerConfig, bound_port, create_app, start  # noqa: PLC0415

    y4m = work / "clip.y4m"
    write_y4m(clip_frames(), y4m)
    app = create_app(ServerConfig(port=0), engine=random_engine)
    report: asyncio.Future[dict] = asyncio.get_running_loop().create_future()

    async def receive(request: web.Request) -> web.Response:
        if not report.done():
            report.set_result(await request.json())
        return web.Response(text="ok")

    app.router.add_post("/test-report", receive)
    runner = await start(app, "127.0.0.1", 0)
    url = (f"http://127.0.0.1:{bound_port(runner)}/?source=camera&autostart=1&record={RECORD_S}"
           "&report=/test-report")
    # Own process group: Chromium never exits by itself and leaves helper processes; the group is killed after.
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


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.is_file(), reason="no /usr/bin/chromium: run .ci/install-browser.sh")
def test_headless_chromium_page_sends_fake_camera_and_receives_generated_audio(tmp_path: Path) -> None:
    if _isolated():
        out = tmp_path / "report.json"
        cmd = f"ip link set lo up && exec {sys.executable} {Path(__file__)} {out}"
        done = subprocess.run(["unshare", "-n", "sh", "-c", cmd], cwd=REPO, capture_output=True, text=True,
                              timeout=90)
        assert done.returncode == 0, done.stderr[-3000:]
        result = json.loads(out.read_text())
    else:
        result = asyncio.run(browser_session(tmp_path))
    assert "error" not in result, result
    assert result["connectionState"] == "connected"
    assert result["packetsReceived"] > 50  # ~50 Opus packets per second
    assert result["totalSamplesReceived"] > 48000
    assert result["seconds"] >= 0.9 * RECORD_S  # recorded for the whole span
    assert result["nonzero"] > 0 and result["peak"] > 0  # the random model's audio, not digital silence


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    with tempfile.TemporaryDirectory() as tmp:
        summary = asyncio.run(browser_session(Path(tmp)))
    Path(sys.argv[1]).write_text(json.dumps(summary))
