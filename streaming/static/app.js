// frieren-rt page: send camera / screen / a world clip over WebRTC (POST /offer), play the generated audio that
// comes back on the same connection, and show latency, level and underruns.
// Automation (used by the browser test): ?source=camera|screen|clip&seed=N&autostart=1&record=SECONDS&report=URL
// records the received audio for SECONDS and POSTs a JSON summary to URL. With &samples=1 the summary also holds
// the received samples and their play times, and the preview's frame times (the sync test, issue 4 section 5).
"use strict";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
let pc = null, session = null, statsTimer = null, meterTimer = null, localStream = null;

function setStatus(text, error = false) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

async function listCameras() {
  try {
    const devices = await navigator.mediaDevices.enumerateDevices();
    $("camera").innerHTML = "";
    for (const d of devices.filter((d) => d.kind === "videoinput")) {
      const o = document.createElement("option");
      o.value = d.deviceId; o.textContent = d.label || "camera " + ($("camera").length + 1);
      $("camera").appendChild(o);
    }
  } catch (e) { /* no permission yet */ }
}

async function openSource(kind) {
  if (kind === "screen") return navigator.mediaDevices.getDisplayMedia({ video: { frameRate: 30 } });
  if (kind === "clip") {
    // A world clip rendered by the server, played in a <video> and captured as a live stream.
    const v = $("preview");
    v.srcObject = null;
    v.src = "/clip.mp4?seed=" + encodeURIComponent($("seed").value);
    v.loop = true;
    await v.play();
    return v.captureStream ? v.captureStream(30) : v.mozCaptureStream(30);
  }
  const id = $("camera").value;
  return navigator.mediaDevices.getUserMedia({
    video: { deviceId: id ? { exact: id } : undefined, width: 320, height: 240, frameRate: 30 }, audio: false,
  });
}

function waitForIce(pc) {
  // No trickle: the offer goes out with all candidates (the server gathers its own the same way).
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const check = () => { if (pc.iceGatheringState === "complete") { pc.removeEventListener("icegatheringstatechange", check); resolve(); } };
    pc.addEventListener("icegatheringstatechange", check);
    setTimeout(resolve, 3000);
  });
}

async function start() {
  $("start").disabled = true;
  const kind = document.querySelector("input[name=source]:checked").value;
  try {
    setStatus("opening " + kind + " ...");
    localStream = await openSource(kind);
    if (kind !== "clip") $("preview").srcObject = localStream;
    if (params.get("samples")) watchFrames($("preview"));
    await listCameras();
    pc = new RTCPeerConnection({ iceServers: [] });
    for (const track of localStream.getVideoTracks()) pc.addTrack(track, localStream);
    pc.addTransceiver("audio", { direction: "recvonly" });
    pc.ontrack = (ev) => {
      // Received audio only plays (and records) when attached to a media element.
      $("out").srcObject = ev.streams[0] || new MediaStream([ev.track]);
      $("out").play().catch(() => {});
      startMeter($("out").srcObject);
    };
    pc.onconnectionstatechange = () => setStatus("connection " + pc.connectionState + (session ? " (session " + session + ")" : ""),
                                                 pc.connectionState === "failed");
    await pc.setLocalDescription(await pc.createOffer());
    await waitForIce(pc);
    const r = await fetch("/offer", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ sdp: pc.localDescription.sdp, type: pc.localDescription.type }) });
    const answer = await r.json();
    if (!r.ok) throw new Error(answer.error || ("server answered " + r.status));
    session = answer.session;
    await pc.setRemoteDescription({ sdp: answer.sdp, type: answer.type });
    $("stop").disabled = false;
    statsTimer = setInterval(updateStats, 500);
    return true;
  } catch (e) {
    setStatus("error: " + e.message, true);
    await stop();
    throw e;
  }
}

async function stop() {
  clearInterval(statsTimer); clearInterval(meterTimer);
  if (pc) pc.close();
  if (localStream) localStream.getTracks().forEach((t) => t.stop());
  pc = null; session = null; localStream = null;
  $("start").disabled = false; $("stop").disabled = true;
}

let analyser = null, audioCtx = null;
function startMeter(stream) {
  audioCtx = audioCtx || new AudioContext();
  const src = audioCtx.createMediaStreamSource(stream);
  analyser = audioCtx.createAnalyser();
  analyser.fftSize = 1024;
  src.connect(analyser);
  const buf = new Float32Array(analyser.fftSize);
  meterTimer = setInterval(() => {
    analyser.getFloatTimeDomainData(buf);
    let s = 0; for (const x of buf) s += x * x;
    const db = 10 * Math.log10(s / buf.length + 1e-12);
    $("meter-bar").style.width = Math.max(0, Math.min(100, (db + 60) * 100 / 60)) + "%";
  }, 50);
}

const ms = (s) => (s == null ? "-" : (1000 * s).toFixed(0) + " ms");

async function browserStats() {
  const out = { jitter: null, rtt: null, packets: 0, samples: 0, concealed: 0 };
  if (!pc) return out;
  (await pc.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "audio") {
      if (s.jitterBufferEmittedCount) out.jitter = s.jitterBufferDelay / s.jitterBufferEmittedCount;
      out.packets = s.packetsReceived || 0;
      out.samples = s.totalSamplesReceived || 0;
      out.concealed = s.concealedSamples || 0;
    }
    if (s.type === "candidate-pair" && s.nominated && s.currentRoundTripTime != null) out.rtt = s.currentRoundTripTime;
  });
  return out;
}

async function updateStats() {
  if (!session) return;
  try {
    const [r, b] = await Promise.all([fetch("/stats/" + session), browserStats()]);
    if (!r.ok) return;
    const s = await r.json();
    $("s-engine").textContent = ms(s.latency_s);
    $("s-jitter").textContent = ms(b.jitter);
    $("s-rtt").textContent = ms(b.rtt);
    $("s-total").textContent = ms(s.latency_s + (b.jitter || 0) + (b.rtt || 0) / 2);
    $("s-underruns").textContent = s.underruns + " / " + s.late_samples;
    $("s-frames").textContent = s.frames_received + " / " + s.frames_dropped;
    $("s-compute").textContent = ms(s.compute_p50_s) + " / " + ms(s.compute_p95_s);
    $("s-level").textContent = s.level_db + " dBFS";
    $("s-packets").textContent = b.packets + " / " + b.concealed;
  } catch (e) { /* transient */ }
}

// Records the received audio through WebAudio for `seconds` and summarises it.
async function recordReceived(seconds) {
  const stream = await new Promise((resolve) => {
    const poll = () => ($("out").srcObject ? resolve($("out").srcObject) : setTimeout(poll, 50));
    poll();
  });
  audioCtx = audioCtx || new AudioContext();
  await audioCtx.resume();
  const src = audioCtx.createMediaStreamSource(stream);
  const proc = audioCtx.createScriptProcessor(4096, 1, 1);
  let n = 0, sumsq = 0, peak = 0, nonzero = 0;
  proc.onaudioprocess = (ev) => {
    const x = ev.inputBuffer.getChannelData(0);
    for (let i = 0; i < x.length; i++) {
      const v = x[i]; sumsq += v * v; if (Math.abs(v) > peak) peak = Math.abs(v); if (v !== 0) nonzero++;
    }
    n += x.length;
  };
  src.connect(proc); proc.connect(audioCtx.destination);
  const stopTap = params.get("samples") ? await tapSamples(audioCtx, src) : null;
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const tapped = stopTap ? stopTap() : {};
  src.disconnect(); proc.disconnect();
  const b = await browserStats();
  let server = null;  // the session's server stats (latency_s: the reported capture -> send latency)
  try { if (session) server = await (await fetch("/stats/" + session)).json(); } catch (e) { /* absent */ }
  return { samples: n, rate: audioCtx.sampleRate, seconds: n / audioCtx.sampleRate, rms: Math.sqrt(sumsq / Math.max(1, n)),
           peak, nonzero, packetsReceived: b.packets, totalSamplesReceived: b.samples, concealedSamples: b.concealed,
           session, connectionState: pc ? pc.connectionState : null, latencyS: server ? server.latency_s : null, server, ...tapped,
           ...(stopTap ? { frameTimes } : {}) };
}

// --- sync test instrumentation (&samples=1) ---------------------------------------------------------------------
// Times are on the page's performance.now() clock (ms). A received sample's play time is its render quantum's
// context time (AudioWorkletGlobalScope.currentFrame: exact, unlike a ScriptProcessor's buffered input) mapped
// through getOutputTimestamp(), which pairs the context time now leaving the output with its performance time.
const frameTimes = [];  // [performance ms (captureTime when given, else callback time), presentedFrames]
function watchFrames(video) {
  if (!video.requestVideoFrameCallback) return;
  const onFrame = (now, meta) => {
    frameTimes.push([meta.captureTime ?? now, meta.presentedFrames]);
    if (localStream) video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
}

// NetEq's time stretching, for the sync test (W3C webrtc-stats, RTCInboundRtpStreamStats): every sample it
// conceals while waiting for a late packet or inserts to slow down delays the audio after it by one sample, every
// sample it removes to catch up brings it earlier. [concealed, inserted, removed, samples received, seconds].
async function receiverStretch() {
  if (!pc) return null;
  let out = null;
  (await pc.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "audio" && s.totalSamplesReceived != null) {
      out = [s.concealedSamples || 0, s.insertedSamplesForDeceleration || 0, s.removedSamplesForAcceleration || 0,
             s.totalSamplesReceived, s.totalSamplesDuration || 0];
    }
  });
  return out;
}

const TAP = `registerProcessor("tap", class extends AudioWorkletProcessor {
  process(inputs) {
    const x = inputs[0][0];
    if (x) this.port.postMessage({ frame: currentFrame, x: x.slice() });
    return true;
  }
});`;

async function tapSamples(ctx, src) {
  await ctx.audioWorklet.addModule(URL.createObjectURL(new Blob([TAP], { type: "text/javascript" })));
  const node = new AudioWorkletNode(ctx, "tap", { numberOfOutputs: 0 });
  const chunks = [], clock = [];
  node.port.onmessage = (ev) => chunks.push(ev.data);
  const stretch = [];  // [performance ms, ...receiverStretch()]
  const timer = setInterval(async () => {
    const ts = ctx.getOutputTimestamp();
    if (ts.performanceTime > 0) clock.push(ts.performanceTime - 1000 * ts.contextTime);
    const now = performance.now(), s = await receiverStretch();
    if (s != null) stretch.push([now, ...s]);
  }, 100);
  src.connect(node);
  return () => {  // stop: samples from the first quantum on, contiguous (gaps zero-filled), and sample 0's time
    clearInterval(timer); src.disconnect(node); node.port.onmessage = null;
    if (!chunks.length) return { samplesB64: "", sample0Ms: null, clockSpreadMs: null };
    const f0 = chunks[0].frame, n = chunks[chunks.length - 1].frame + chunks[chunks.length - 1].x.length - f0;
    const all = new Float32Array(n);
    for (const c of chunks) all.set(c.x, c.frame - f0);
    clock.sort((a, b) => a - b);
    const offset = clock.length ? clock[clock.length >> 1] : performance.now() - 1000 * ctx.currentTime;
    let bin = ""; const bytes = new Uint8Array(all.buffer);
    for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    return { samplesB64: btoa(bin), sample0Ms: offset + 1000 * f0 / ctx.sampleRate, stretch,
             clockSpreadMs: clock.length ? clock[clock.length - 1] - clock[0] : null };
  };
}

$("start").onclick = () => start().catch(() => {});
$("stop").onclick = stop;
listCameras();

(async () => {
  if (params.get("seed")) $("seed").value = params.get("seed");
  if (params.get("source")) document.querySelector("input[name=source][value=" + params.get("source") + "]").checked = true;
  if (!params.get("autostart")) return;
  const report = params.get("report");
  let result;
  try {
    await start();
    result = await recordReceived(parseFloat(params.get("record") || "3"));
  } catch (e) {
    result = { error: String(e && e.message || e) };
  }
  if (report) await fetch(report, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(result) });
  await stop();
})();
