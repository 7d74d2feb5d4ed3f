// frieren-rt page: send camera / screen / a world clip over WebRTC (POST /offer), play the generated audio that
// comes back on the same connection, and show latency, level and underruns.
// Automation (used by the browser test): ?source=camera|screen|clip&seed=N&autostart=1&record=SECONDS&report=URL
// records the received audio for SECONDS and POSTs a JSON summary to URL.
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
  await new Promise((r) => setTimeout(r, seconds * 1000));
  src.disconnect(); proc.disconnect();
  const b = await browserStats();
  return { samples: n, rate: audioCtx.sampleRate, seconds: n / audioCtx.sampleRate, rms: Math.sqrt(sumsq / Math.max(1, n)),
           peak, nonzero, packetsReceived: b.packets, totalSamplesReceived: b.samples, concealedSamples: b.concealed,
           session, connectionState: pc ? pc.connectionState : null };
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
