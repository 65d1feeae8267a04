// The --serve page: records from the browser's microphone, streams the samples to the server
// over a WebSocket (/ws/live), shows each judged utterance as it comes and draws the session's
// timeline; judges a chosen file through POST /api/predict. No library, nothing from elsewhere.
"use strict";

const BLOCK = 4096;              // samples per block sent (~85 ms at 48 kHz)
const MAX_PENDING = 256;         // blocks kept while the session starts (~20 s)
const $ = (id) => document.getElementById(id);

const state = {
  info: null,          // GET /api/info
  ws: null,
  ctx: null,
  node: null,
  media: null,
  rate: 0,
  ready: false,
  pending: [],
  sent: 0,             // samples sent this session
  rows: [],            // the session's judged utterances (the --json rows)
  regions: [],         // the detector's speech regions so far
  judgedUntil: 0,      // seconds of audio the server has analysed
  recording: false,
};

// ------------------------------------------------------------------------------------------
// Words and numbers
// ------------------------------------------------------------------------------------------
function colour(label) {
  return (state.info && state.info.colours[label]) || "#444444";
}

function ranked(probs) {
  return Object.entries(probs || {}).sort((a, b) => b[1] - a[1]);
}

// The answer as the command line names it: "angry", or "uncertain: angry" below
// --min-confidence (the emotion whose probability the confidence is).
function headline(row) {
  if (row.emotion === "uncertain") {
    const best = ranked(row.probabilities)[0];
    return best ? "uncertain: " + best[0] : "uncertain";
  }
  return row.emotion;
}

function othersText(row, top) {
  return ranked(row.probabilities).slice(1, top)
    .map(([k, v]) => k + " " + v.toFixed(2)).join(", ");
}

function clock(t) {
  return t.toFixed(2) + " s";
}

function setStatus(text, isError) {
  const el = $("status");
  el.textContent = text;
  el.classList.toggle("error", Boolean(isError));
}

// ------------------------------------------------------------------------------------------
// The model's description
// ------------------------------------------------------------------------------------------
async function loadInfo() {
  $("origin").textContent = window.location.host;
  try {
    const response = await fetch("/api/info", { cache: "no-store" });
    state.info = await response.json();
  } catch (e) {
    setStatus("cannot reach the server: " + e, true);
    return;
  }
  const info = state.info;
  $("model-name").textContent = info.model;
  const adapt = info.adaptation === "speaker"
    ? "; adapts to the speaker" + (info.limits.enrolled ? " (enrolled)" : " as it listens")
    : "";
  $("model-kind").textContent = "(" + info.kind + " on " + info.feature + " features" + adapt + ")";
  const list = $("figures");
  list.replaceChildren(...info.figures.map((text) => {
    const li = document.createElement("li");
    li.textContent = text;
    return li;
  }));
  $("confidence-note").textContent = info.confidence_note;
  if (!window.isSecureContext || !navigator.mediaDevices || !window.AudioWorkletNode) {
    setStatus("this browser gives no microphone to a page opened as " + window.location.origin +
      ": open it as http://localhost:PORT or http://127.0.0.1:PORT (from another machine: " +
      "ssh -L PORT:127.0.0.1:PORT server, then that address); the file picker works anyway", true);
    return;
  }
  $("record").disabled = false;
  setStatus("ready: press Record and speak");
}

// ------------------------------------------------------------------------------------------
// Live mode
// ------------------------------------------------------------------------------------------
async function startRecording() {
  const button = $("record");
  button.disabled = true;
  try {
    state.media = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false,
               channelCount: 1 } });
  } catch (e) {
    setStatus("no microphone: " + e.message, true);
    button.disabled = false;
    return;
  }
  state.ctx = new AudioContext();
  await state.ctx.audioWorklet.addModule("/static/capture.js");
  const source = state.ctx.createMediaStreamSource(state.media);
  state.node = new AudioWorkletNode(state.ctx, "ser-capture",
    { numberOfInputs: 1, numberOfOutputs: 0, processorOptions: { blockSize: BLOCK } });
  Object.assign(state, { rate: state.ctx.sampleRate, ready: false, pending: [], sent: 0,
                         rows: [], regions: [], judgedUntil: 0, recording: true });
  $("utterances").replaceChildren();
  state.node.port.onmessage = (event) => onBlock(event.data);
  source.connect(state.node);
  openSocket();
  button.textContent = "Stop";
  button.classList.add("recording");
  button.disabled = false;
  setStatus("connecting…");
  requestAnimationFrame(animate);
}

function openSocket() {
  const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
  const ws = new WebSocket(scheme + window.location.host + "/ws/live");
  ws.binaryType = "arraybuffer";
  ws.onopen = () => ws.send(JSON.stringify({ type: "start", rate: state.rate }));
  ws.onmessage = (event) => onMessage(JSON.parse(event.data));
  ws.onclose = (event) => {
    if (state.ws === ws) { state.ws = null; }
    if (state.recording) {
      stopCapture();
      setStatus("the server closed the session" + (event.reason ? ": " + event.reason : ""),
        true);
    }
  };
  state.ws = ws;
}

function onBlock(data) {
  if (data === "flushed") { finishSession(); return; }
  const block = data;
  showLevel(block);
  if (!state.ready) {
    if (state.pending.length < MAX_PENDING) { state.pending.push(block); }
    return;
  }
  sendBlock(block);
}

function sendBlock(block) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) {
    state.ws.send(block.buffer);
    state.sent += block.length;
  }
}

function showLevel(block) {
  let sum = 0;
  for (let i = 0; i < block.length; i++) { sum += block[i] * block[i]; }
  const db = 10 * Math.log10(sum / Math.max(1, block.length) + 1e-12);
  const width = Math.max(0, Math.min(1, (db + 60) / 60));
  $("level").style.width = (100 * width).toFixed(1) + "%";
}

function onMessage(msg) {
  if (msg.event === "ready") {
    state.ready = true;
    state.pending.splice(0).forEach(sendBlock);
    setStatus("listening: each utterance is judged when you pause");
  } else if (msg.event === "utterance") {
    addRegions(msg.regions, msg.duration);
    state.rows.push(msg.row);
    showCurrent(msg.row);
    addListItem(msg.row, state.rows.length);
    drawTimeline();
  } else if (msg.event === "end") {
    addRegions(msg.regions, msg.duration);
    const n = msg.utterances;
    setStatus("stopped: " + n + " utterance" + (n === 1 ? "" : "s") + " in " +
      msg.duration.toFixed(1) + " s");
    drawTimeline();
  } else if (msg.event === "error") {
    setStatus(msg.error, true);
  }
}

function addRegions(regions, duration) {
  (regions || []).forEach((r) => state.regions.push(r));
  state.judgedUntil = Math.max(state.judgedUntil, duration || 0);
}

function stopRecording() {
  const button = $("record");
  button.disabled = true;
  setStatus("judging what was heard last…");
  if (state.node) { state.node.port.postMessage("flush"); } else { finishSession(); }
}

// after the worklet's last samples: end the session (the server judges the rest and closes)
function finishSession() {
  stopCapture();
  if (state.ws && state.ws.readyState === WebSocket.OPEN) {
    state.ws.send(JSON.stringify({ type: "stop" }));
  }
}

function stopCapture() {
  state.recording = false;
  if (state.media) { state.media.getTracks().forEach((t) => t.stop()); }
  if (state.ctx) { state.ctx.close(); }
  state.media = state.ctx = state.node = null;
  $("level").style.width = "0";
  const button = $("record");
  button.textContent = "Record";
  button.classList.remove("recording");
  button.disabled = false;
}

function animate() {
  drawTimeline();
  if (state.recording) { requestAnimationFrame(animate); }
}

// ------------------------------------------------------------------------------------------
// Showing answers
// ------------------------------------------------------------------------------------------
function showCurrent(row) {
  const current = $("current");
  current.dataset.emotion = row.emotion || "";
  current.dataset.confidence = row.confidence === null ? "" : String(row.confidence);
  if (row.emotion === null) {
    $("emotion").textContent = "–";
    $("emotion").style.color = "";
    $("confidence").textContent = "";
    $("confidence-bar").style.width = "0";
    $("detail").textContent = "not judged: " + row.error;
    return;
  }
  const best = ranked(row.probabilities)[0][0];
  $("emotion").textContent = row.emotion === "uncertain" ? "uncertain" : row.emotion;
  $("emotion").style.color = row.emotion === "uncertain" ? "" : colour(row.emotion);
  $("confidence").textContent = row.confidence.toFixed(2);
  $("confidence-bar").style.width = (100 * row.confidence).toFixed(0) + "%";
  $("confidence-bar").style.background = colour(best);
  const others = othersText(row, 3);
  const most = row.emotion === "uncertain" ? "most likely " + best + "; " : "";
  $("detail").textContent = most + (others ? "then " + others : "") +
    " (utterance " + clock(row.start) + "–" + clock(row.end) + ")";
}

function addListItem(row, n) {
  const li = document.createElement("li");
  li.dataset.emotion = row.emotion || "";
  li.dataset.start = String(row.start);
  li.dataset.end = String(row.end);
  const span = clock(row.start) + "–" + clock(row.end) + "  ";
  if (row.emotion === null) {
    li.className = "failed";
    li.textContent = span + "not judged (" + row.error + ")";
  } else {
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = colour(ranked(row.probabilities)[0][0]);
    li.append(swatch, span + headline(row) + " " + row.confidence.toFixed(2));
  }
  $("utterances").append(li);
  li.scrollIntoView({ block: "nearest" });
}

async function judgeFile(file) {
  const out = $("file-result");
  out.className = "file-result";
  out.dataset.emotion = "";
  out.textContent = "judging " + file.name + "…";
  let row;
  try {
    const response = await fetch("/api/predict?name=" + encodeURIComponent(file.name),
      { method: "POST", body: file, headers: { "Content-Type": "application/octet-stream" } });
    row = await response.json();
  } catch (e) {
    row = { file: file.name, error: file.name + ": " + e };
  }
  if (row.error) {
    out.className = "file-result error";
    out.textContent = row.error;
    return;
  }
  out.dataset.emotion = row.emotion;
  out.dataset.confidence = String(row.confidence);
  const name = document.createElement("span");
  name.textContent = row.file + ": ";
  const emotion = document.createElement("span");
  emotion.className = "emotion";
  emotion.textContent = headline(row);
  emotion.style.color = row.emotion === "uncertain" ? "" : colour(row.emotion);
  const rest = document.createElement("span");
  const others = othersText(row, 3);
  rest.textContent = " " + row.confidence.toFixed(2) + (others ? "  (" + others + ")" : "");
  out.replaceChildren(name, emotion, rest);
}

// ------------------------------------------------------------------------------------------
// The timeline: one band per emotion, bar height = probability (as the timeline PNG)
// ------------------------------------------------------------------------------------------
function drawTimeline() {
  const canvas = $("timeline");
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 960;
  const height = canvas.clientHeight || 300;
  if (canvas.width !== Math.round(width * ratio)) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
  }
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, width, height);
  const labels = state.info ? state.info.labels : [];
  const heard = state.rate ? state.sent / state.rate : 0;
  const now = Math.max(heard, state.judgedUntil);
  const span = Math.max(10, Math.ceil(now / 5) * 5);
  const left = 78, right = 12, top = 8, bottom = 26;
  const plotW = width - left - right, plotH = height - top - bottom;
  const band = plotH / Math.max(1, labels.length);
  const x = (t) => left + (t / span) * plotW;
  drawGaps(g, x, top, plotH);
  labels.forEach((label, row) => {
    const y0 = top + (row + 1) * band;
    g.strokeStyle = "#eeeeee";
    g.beginPath(); g.moveTo(left, y0); g.lineTo(left + plotW, y0); g.stroke();
    g.fillStyle = colour(label);
    g.font = "12px system-ui, sans-serif";
    g.textAlign = "right"; g.textBaseline = "middle";
    g.fillText(label, left - 6, y0 - band / 2);
    state.rows.forEach((r) => drawBar(g, r, label, x, y0, band));
  });
  state.rows.filter((r) => r.emotion === null).forEach((r) => {
    g.fillStyle = hatch(g);
    g.fillRect(x(r.start), top, Math.max(1, x(r.end) - x(r.start)), plotH);
  });
  drawAxis(g, x, span, top + plotH, left, plotW);
  if (state.recording) {
    g.strokeStyle = "#1f5f99";
    g.beginPath(); g.moveTo(x(heard), top); g.lineTo(x(heard), top + plotH); g.stroke();
  }
}

function drawGaps(g, x, top, plotH) {
  g.fillStyle = "#d9d9d9";
  let prev = 0;
  state.regions.concat([[state.judgedUntil, state.judgedUntil]]).forEach(([a, b]) => {
    if (a > prev) { g.fillRect(x(prev), top, x(a) - x(prev), plotH); }
    prev = Math.max(prev, b);
  });
}

function drawBar(g, r, label, x, y0, band) {
  if (r.emotion === null) { return; }
  const p = r.probabilities[label] || 0;
  if (p < 0.005) { return; }
  const w = Math.max(1, x(r.end) - x(r.start));
  const h = 0.9 * band * p;
  g.globalAlpha = 0.9;
  g.fillStyle = colour(label);
  g.fillRect(x(r.start), y0 - h, w, h);
  g.globalAlpha = 1;
  if (r.emotion === label) {
    g.strokeStyle = "#000000";
    g.lineWidth = 1;
    g.strokeRect(x(r.start) + 0.5, y0 - h + 0.5, w - 1, h - 1);
  }
}

function hatch(g) {
  const tile = document.createElement("canvas");
  tile.width = tile.height = 8;
  const t = tile.getContext("2d");
  t.strokeStyle = "#999999";
  t.beginPath(); t.moveTo(0, 8); t.lineTo(8, 0); t.stroke();
  return g.createPattern(tile, "repeat");
}

function drawAxis(g, x, span, y, left, plotW) {
  g.strokeStyle = "#888888";
  g.beginPath(); g.moveTo(left, y); g.lineTo(left + plotW, y); g.stroke();
  const step = span <= 20 ? 2 : span <= 60 ? 5 : span <= 300 ? 30 : 60;
  g.fillStyle = "#5c6670";
  g.textAlign = "center"; g.textBaseline = "top";
  for (let t = 0; t <= span + 1e-9; t += step) {
    g.beginPath(); g.moveTo(x(t), y); g.lineTo(x(t), y + 4); g.stroke();
    g.fillText(t + " s", x(t), y + 6);
  }
}

// ------------------------------------------------------------------------------------------
window.addEventListener("DOMContentLoaded", () => {
  $("record").addEventListener("click", () => {
    if (state.recording) { stopRecording(); } else { startRecording(); }
  });
  $("file-input").addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (file) { judgeFile(file); }
  });
  window.addEventListener("resize", drawTimeline);
  loadInfo().then(drawTimeline);
});
