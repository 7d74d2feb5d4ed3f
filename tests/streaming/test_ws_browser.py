"""PROTOCOL.md's browser example, verbatim, in headless Chromium against a live /ws: an animated canvas goes
out as JPEG frames under credit flow control, the generated audio comes back tagged and is scheduled on
WebAudio; the page POSTs what it got to the test server.

Needs Debian's chromium (.ci/install-browser.sh); skipped with the reason when /usr/bin/chromium is absent.
Chromium is launched as in test_browser.py (own process group, killed after: it never exits by itself).
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]
RUN_S = 3.0

PAGE = """<!doctype html><html><body><canvas id="c" width="160" height="120"></canvas><script>
%(example)s
const canvas = document.getElementById("c"), g = canvas.getContext("2d");
let x = 0;
setInterval(() => { g.fillStyle = "#123"; g.fillRect(0, 0, 160, 120); g.fillStyle = "#fc3";
                    g.fillRect(x = (x + 4) %% 160, 40, 30, 30); }, 33);
const s = frierenCapture(`ws://${location.host}/ws`, canvas);
setTimeout(async () => {
  s.stop();
  const report = {chunks: s.chunks, timed: s.timed, peak: s.peak, frames: s.seq, errors: s.errors,
                  closed: s.closed, config: !!s.config, decoded: s.stats ? s.stats.frames_decoded : 0};
  await fetch("/test-report", {method: "POST", body: JSON.stringify(report)});
}, %(run_ms)d);
</script></body></html>"""


def protocol_example() -> str:
    text = (REPO / "PROTOCOL.md").read_text()
    blocks = re.findall(r"```js\n(.*?)```", text, flags=re.S)
    assert blocks, "PROTOCOL.md has no ```js example"
    return blocks[0]


async def browser_session(work: Path, timeout_s: float = 30.0) -> dict:
    from aiohttp import web  # noqa: PLC0415

    from frieren_rt.streaming.builders import random_engine  # noqa: PLC0415
    from frieren_rt.streaming.server import ServerConfig, bound_port, create_app, start  # noqa: PLC0415
    from tests.streaming.test_browser import chromium_report  # noqa: PLC0415

    app = create_app(ServerConfig(port=0), engine=random_engine)
    report: asyncio.Future[dict] = asyncio.get_running_loop().create_future()
    page = PAGE % {"example": protocol_example(), "run_ms": int(RUN_S * 1000)}

    async def serve_page(request: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html")

    async def receive(request: web.Request) -> web.Response:
        if not report.done():
            report.set_result(json.loads(await request.text()))
        return web.Response(text="ok")

    app.router.add_get("/ws-example", serve_page)
    app.router.add_post("/test-report", receive)
    runner = await start(app, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{bound_port(runner)}/ws-example"
    y4m = work / "unused.y4m"  # the command's fake-camera flag needs a path; this page opens no camera
    y4m.write_bytes(b"")
    return await chromium_report(url, y4m, work, report, runner, timeout_s)


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.is_file(), reason="no /usr/bin/chromium: run .ci/install-browser.sh")
def test_protocol_md_browser_example_sends_canvas_frames_and_receives_audio(tmp_path: Path) -> None:
    result = asyncio.run(browser_session(tmp_path))
    assert result["config"] and not result["errors"], result
    assert result["frames"] >= 0.5 * 30 * RUN_S  # credits came back: the canvas kept flowing
    assert result["decoded"] >= 20
    assert result["chunks"] >= 0.8 * 50 * (RUN_S - 0.5)  # 20 ms frames, about 50 a second
    assert result["timed"] > 30 and result["peak"] > 0  # tagged, and the random engine's audio is not silence
