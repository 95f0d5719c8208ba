// The live view: the microphone (or a file played at real time) streamed to POST /v1/live's socket,
// speaker lanes that grow as the events arrive. The same protocol as any client: 100 ms frames of 16 kHz float32, then end_of_stream.

import { api } from "./api.js";
import { $, formatTime } from "./page.js";

const PIXELS_PER_SECOND = 12;
const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];
let live = null; // the running stream: its socket, audio graph, lanes and clock

function status(text) {
  $("#live-status").textContent = text;
}

/** The lane of `speaker`, made at its first event. */
function laneOf(speaker) {
  let lane = live.lanes.get(speaker);
  if (lane) return lane;
  const row = document.createElement("div");
  row.className = "lane live-lane";
  row.dataset.speaker = speaker;
  const label = document.createElement("span");
  label.className = "lane-name";
  label.textContent = speaker;
  const color = COLORS[live.lanes.size % COLORS.length];
  label.style.color = color;
  const track = document.createElement("div");
  track.className = "track live-track";
  row.append(label, track);
  $("#live-lanes").append(row);
  lane = { track, color, open: null };
  live.lanes.set(speaker, lane);
  return lane;
}

function onEvent(event) {
  if (event.type === "error") {
    status(`Server: ${event.message}`);
    return;
  }
  const { speaker, timestamp } = event.data;
  const lane = laneOf(speaker);
  if (event.type === "diarization_speaker_start") {
    const block = document.createElement("div");
    block.className = "turn";
    block.style.left = `${timestamp * PIXELS_PER_SECOND}px`;
    block.style.background = lane.color;
    block.dataset.start = timestamp;
    lane.track.append(block);
    lane.open = block;
  } else if (lane.open) {
    lane.open.style.width = `${(timestamp - Number(lane.open.dataset.start)) * PIXELS_PER_SECOND}px`;
    lane.open.title = `${speaker} ${formatTime(Number(lane.open.dataset.start))}–${formatTime(timestamp)}`;
    lane.open = null;
  }
}

/** Open turns grow to the time of the audio sent so far, so a lane moves while its speaker talks. */
function grow() {
  if (!live) return;
  const now = live.frames / 10;
  for (const lane of live.lanes.values()) {
    if (lane.open) lane.open.style.width = `${(now - Number(lane.open.dataset.start)) * PIXELS_PER_SECOND}px`;
  }
  status(`Streaming: ${formatTime(now)}`);
  live.timer = setTimeout(grow, 250);
}

/** Stream what `connect(context)` makes (an audio node, once the socket is open) until Stop or its end. */
async function start(connect, release) {
  if (live) return;
  const keep = $("#live-keep").checked;
  const { id, url } = await api("/v1/live", { method: "POST", body: keep ? { keepAudio: true } : {} });
  const context = new AudioContext();
  await context.audioWorklet.addModule("/static/live-worklet.js");
  await context.resume(); // a context made outside a click may start suspended
  const node = new AudioWorkletNode(context, "pcm-16k");
  const mute = context.createGain(); // the graph must reach the speakers for the worklet to run; silently
  mute.gain.value = 0;
  node.connect(mute).connect(context.destination);
  const socket = new WebSocket(url);
  socket.binaryType = "arraybuffer";
  live = { id, keep, socket, context, release, lanes: new Map(), frames: 0, timer: null };
  $("#live-lanes").replaceChildren();
  $("#live-start").disabled = true;
  $("#live-file").disabled = true;
  $("#live-stop").disabled = false;
  node.port.onmessage = (message) => {
    if (socket.readyState === WebSocket.OPEN) {
      socket.send(message.data);
      live.frames += 1;
    }
  };
  socket.onmessage = (message) => onEvent(JSON.parse(message.data));
  socket.onclose = (close) => finish(close.code === 1000 ? "Done." : `Closed (${close.code}).`);
  socket.onopen = async () => {
    (await connect(context)).connect(node); // audio flows from now: its timestamps start at the socket's
    grow();
  };
}

/** Ask for the microphone, and stream it until Stop. */
export async function startMicrophone() {
  const media = await navigator.mediaDevices.getUserMedia({
    audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
  });
  await start(
    (context) => context.createMediaStreamSource(media),
    () => media.getTracks().forEach((track) => track.stop()),
  );
}

/** Play `file` at real time, heard here and streamed, until it ends (or Stop). */
export async function startFile(file) {
  let source = null;
  await start(
    async (context) => {
      source = context.createBufferSource();
      source.buffer = await context.decodeAudioData(await file.arrayBuffer());
      source.connect(context.destination);
      source.onended = () => stopLive();
      source.start();
      return source;
    },
    () => source?.stop(),
  );
}

/** End the stream: the server sends its last events and closes. */
export function stopLive() {
  if (!live || live.ending) return;
  live.ending = true;
  live.release();
  if (live.socket.readyState === WebSocket.OPEN) live.socket.send(JSON.stringify({ type: "end_of_stream" }));
  status("Finishing…");
}

function finish(message) {
  if (!live) return;
  const { id, keep } = live;
  clearTimeout(live.timer);
  live.release();
  live.context.close();
  live = null;
  $("#live-start").disabled = false;
  $("#live-file").disabled = false;
  $("#live-stop").disabled = true;
  status(message);
  if (keep) offlineResult(id).catch((error) => status(`${message} ${error.message}`));
}

/** The kept recording's offline diarization: wait for its job, then open its result. */
async function offlineResult(id) {
  for (let wait = 0; wait < 1800; wait++) {
    const stream = await api(`/v1/live/${id}`);
    const job = stream.jobId ? await api(`/v1/jobs/${stream.jobId}`) : null;
    if (job?.status === "succeeded") {
      location.hash = `job=${stream.jobId}`;
      status("Done. The recording's diarization is open beside the job list.");
      return;
    }
    if (job && ["failed", "canceled"].includes(job.status)) {
      status(`Done. The recording's diarization ${job.status}.`);
      return;
    }
    status(job ? "Done. Diarizing the recording…" : "Done. Keeping the recording…");
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}
