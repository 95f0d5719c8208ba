// The diarist web page: plain functions over the public HTTP API, the same calls any client makes.
// No build step: this file and the vendored wavesurfer.js modules are served as they are.

import WaveSurfer from "./vendor/wavesurfer/wavesurfer.esm.js";
import TimelinePlugin from "./vendor/wavesurfer/plugins/timeline.esm.js";

const KEY_STORE = "diarist.key"; // sessionStorage only: the key goes when the tab goes
const TERMINAL = ["succeeded", "failed", "canceled"];
const POLL_BUSY_MS = 3000; // while a job is queued or running
const POLL_IDLE_MS = 15000; // when nothing moves, still notice jobs other clients start
const JOBS_PAGE = 20; // jobs listed at first, and added by each "Show more"
const MAX_PIXELS_PER_SECOND = 200; // zooming in stops about here: a word is then a few dozen pixels
// Twenty colours far apart in hue and lightness, each dark enough to read as text on white.
const PALETTE = [
  "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#e6550d", "#0f8f9e", "#8c564b", "#c2378f", "#5f6b00", "#393b79",
  "#a05d00", "#637939", "#7b4173", "#3182bd", "#b8262e", "#31a354", "#756bb1", "#636363", "#00796b", "#843c39",
];

const $ = (selector) => document.querySelector(selector);
const state = {
  key: sessionStorage.getItem(KEY_STORE),
  jobs: new Map(), // jobId -> {file, kind} learned from ?details=true, asked once per job
  pollTimer: null,
  jobsShown: JOBS_PAGE, // how many of the newest jobs the list holds
  result: null, // the open job: {id, job, names, turns, lines, wave, duration}
};

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// --- the API ------------------------------------------------------------------------------

/** Readable text of an error answer: the message, then each field's complaint. */
async function errorText(response) {
  try {
    const body = await response.json();
    const fields = (body.errors || []).map((e) => `${e.field}: ${e.message}`);
    return [body.message || response.statusText, ...fields].join(" — ");
  } catch {
    return `${response.status} ${response.statusText}`;
  }
}

/** Call the API with the key; waits as told on 429; throws ApiError with the server's message. */
async function api(path, { method = "GET", body, raw = false } = {}) {
  for (let attempt = 0; ; attempt++) {
    const headers = { Authorization: `Bearer ${state.key}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    if (response.status === 429 && attempt < 3) {
      const wait = Number(response.headers.get("Retry-After") || "1");
      await new Promise((resolve) => setTimeout(resolve, wait * 1000));
      continue;
    }
    if (!response.ok) {
      const error = new ApiError(response.status, await errorText(response));
      if (response.status === 401 && path !== "/v1/test") signOut(error.message);
      throw error;
    }
    return raw ? response : response.json();
  }
}

function showError(message) {
  const box = $("#error");
  box.textContent = message || "";
  box.hidden = !message;
}

/** Run an async action; a failure shows in the page's error box instead of the console. */
function guarded(action) {
  return (...args) =>
    action(...args).catch((error) => {
      console.error(error);
      showError(error.message);
    });
}

// --- signing in ---------------------------------------------------------------------------

async function signIn(event) {
  event.preventDefault();
  showError("");
  state.key = $("#key").value.trim();
  try {
    await api("/v1/test");
  } catch (error) {
    state.key = null;
    showError(error.status === 401 ? `Sign-in failed: ${error.message}` : error.message);
    return;
  }
  sessionStorage.setItem(KEY_STORE, state.key);
  $("#key").value = "";
  enter();
}

function signOut(message) {
  sessionStorage.removeItem(KEY_STORE);
  state.key = null;
  clearTimeout(state.pollTimer);
  closeResult();
  $("#work").hidden = true;
  $("#sign-out").hidden = true;
  $("#sign-in").hidden = false;
  showError(typeof message === "string" ? message : "");
}

function enter() {
  $("#sign-in").hidden = true;
  $("#work").hidden = false;
  $("#sign-out").hidden = false;
  pollJobs();
  const open = new URLSearchParams(location.hash.slice(1)).get("job");
  if (open) guarded(openResult)(open);
}

// --- uploads ------------------------------------------------------------------------------

/** The diarize options of the form, without the empty ones. */
function diarizeOptions() {
  const form = $("#options");
  const body = { model: form.model.value };
  for (const name of ["numSpeakers", "minSpeakers", "maxSpeakers"]) {
    if (form[name].value !== "") body[name] = Number(form[name].value);
  }
  for (const name of ["exclusive", "turnLevelConfidence", "transcription"]) {
    if (form[name].checked) body[name] = true;
  }
  return body;
}

/** A media:// name the server accepts (letters, digits, - _ . /), unique per upload. */
function mediaUrl(file) {
  const safe = file.name.replace(/[^a-zA-Z0-9\-_.]+/g, "_").slice(-120) || "audio";
  return `media://web/${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}-${safe}`;
}

/** PUT a file to a pre-signed URL with XMLHttpRequest, which, unlike fetch, reports upload progress. */
function put(url, file, onProgress) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open("PUT", url);
    request.upload.onprogress = (event) => event.lengthComputable && onProgress(event.loaded / event.total);
    request.onload = () => {
      if (request.status < 300) return resolve();
      let message = `${request.status} ${request.statusText}`;
      try {
        message = JSON.parse(request.responseText).message || message;
      } catch {}
      reject(new ApiError(request.status, message));
    };
    request.onerror = () => reject(new Error("The upload was interrupted (network error)."));
    request.send(file);
  });
}

async function uploadOne(file, options) {
  const row = document.createElement("li");
  row.textContent = `${file.name}: uploading…`;
  $("#uploads").prepend(row);
  try {
    const url = mediaUrl(file);
    const target = await api("/v1/media/input", { method: "POST", body: { url } });
    await put(target.url, file, (done) => (row.textContent = `${file.name}: uploading ${Math.round(done * 100)}%`));
    const created = await api("/v1/diarize", { method: "POST", body: { ...options, url } });
    state.jobs.set(created.jobId, { file: file.name, kind: "diarize" });
    row.textContent = `${file.name}: job ${created.jobId} created`;
    if (created.warning) row.textContent += ` (${created.warning})`;
  } catch (error) {
    row.className = "error";
    row.textContent = `${file.name}: ${error.message}`;
  }
  pollJobs();
}

function uploadAll(files) {
  const options = diarizeOptions();
  // In parallel: each file has its own row, its own upload and its own job.
  return Promise.all([...files].map((file) => uploadOne(file, options)));
}

// --- the jobs list ------------------------------------------------------------------------

/** Remember a job's file name (its upload's name, or its URL) and kind, from its ?details=true answer. */
function learn(job) {
  const file = (job.url || "").replace(/^media:\/\/(web\/[0-9a-z]+-[0-9a-z]+-)?/, "");
  state.jobs.set(job.jobId, { file: file || job.jobId, kind: job.kind || "diarize" });
  return state.jobs.get(job.jobId);
}

/** The file name and kind of a job, asked once (the list items carry neither). */
async function jobInfo(id) {
  return state.jobs.get(id) || learn(await api(`/v1/jobs/${id}?details=true`));
}

/** The newest `count` jobs (of `status`, if given), page after page; and whether there are more. */
async function listJobs(count, status) {
  const items = [];
  let cursor = null;
  do {
    const query = new URLSearchParams({ limit: String(Math.min(100, count - items.length)) });
    if (status) query.set("status", status);
    if (cursor) query.set("cursor", cursor);
    const page = await api(`/v2/jobs?${query}`);
    items.push(...page.items);
    cursor = page.nextCursor;
  } while (cursor && items.length < count);
  return { items, more: Boolean(cursor) };
}

async function refreshJobs() {
  const list = await listJobs(state.jobsShown, $("#status-filter").value);
  $("#more-jobs").hidden = !list.more;
  const rows = [];
  for (const item of list.items) {
    const info = await jobInfo(item.id).catch(() => ({ file: item.id, kind: "" }));
    let detail = item.status;
    if (item.status === "running") {
      const job = await api(`/v1/jobs/${item.id}`).catch(() => null);
      if (job && job.progress !== undefined) detail = `running ${job.progress}%`;
    }
    rows.push(jobRow(item, info, detail));
  }
  $("#job-rows").replaceChildren(...rows);
  if (!list.items.length) $("#job-rows").innerHTML = '<tr><td colspan="4" class="hint">No jobs yet.</td></tr>';
  return list.items.some((item) => !TERMINAL.includes(item.status));
}

function jobRow(item, info, detail) {
  const row = document.createElement("tr");
  row.dataset.job = item.id;
  row.dataset.status = item.status;
  const name = document.createElement("td");
  const label = info.kind && info.kind !== "diarize" ? `${info.file} (${info.kind})` : info.file;
  if (item.status === "succeeded" && info.kind !== "voiceprint") {
    const link = document.createElement("a");
    link.href = `#job=${item.id}`;
    link.textContent = label;
    name.append(link);
  } else {
    name.textContent = label;
  }
  const status = document.createElement("td");
  status.className = `status ${item.status}`;
  status.textContent = detail;
  if (item.status === "failed" || item.status === "canceled") failureReason(item.id, status);
  const created = document.createElement("td");
  created.textContent = new Date(item.createdAt).toLocaleString();
  const actions = document.createElement("td");
  if (!TERMINAL.includes(item.status)) {
    const cancel = document.createElement("button");
    cancel.type = "button";
    cancel.textContent = "Cancel";
    cancel.onclick = guarded(async () => {
      await api(`/v1/jobs/${item.id}`, { method: "DELETE" });
      pollJobs();
    });
    actions.append(cancel);
  }
  row.append(name, status, created, actions);
  return row;
}

const reasons = new Map(); // jobId -> why it failed: an ended job does not change
async function failureReason(id, cell) {
  if (!reasons.has(id)) {
    const job = await api(`/v1/jobs/${id}`).catch(() => null);
    reasons.set(id, job?.output?.error || "");
  }
  if (reasons.get(id)) {
    const why = document.createElement("div");
    why.className = "reason";
    why.textContent = reasons.get(id);
    cell.append(why);
  }
}

/** Refresh the list now, then again soon while jobs move, less often when none does. */
function pollJobs() {
  clearTimeout(state.pollTimer);
  if (!state.key) return;
  refreshJobs()
    .then((busy) => (state.pollTimer = setTimeout(pollJobs, busy ? POLL_BUSY_MS : POLL_IDLE_MS)))
    .catch((error) => {
      if (!state.key) return;
      showError(error.message);
      state.pollTimer = setTimeout(pollJobs, POLL_IDLE_MS);
    });
}

// --- the result view ----------------------------------------------------------------------

function closeResult() {
  state.result?.wave?.destroy();
  delete $("#result").dataset.rendered;
  state.result = null;
  $("#result").hidden = true;
}

/** The diarization turns in time order; an identify job's matched names come from its speakers' names. */
function speakerTurns(output) {
  const turns = output.diarization || [];
  return [...turns].sort((a, b) => a.start - b.start || a.end - b.end);
}

async function openResult(id) {
  closeResult();
  showError("");
  const job = await api(`/v1/jobs/${id}?details=true`);
  if (job.status !== "succeeded") throw new Error(`Job ${id} is ${job.status}; only a finished job has a result.`);
  if (!job.output.diarization) throw new Error(`Job ${id} is a ${job.kind} job: it has no speaker turns to show.`);
  const [names, peaks, audio] = await Promise.all([
    api(`/v1/jobs/${id}/speakers`),
    api(`/v1/jobs/${id}/peaks`),
    // Only an upload can be played back: for a job made from a web URL the server keeps no copy.
    job.url?.startsWith("media://") ? api("/v1/media/output", { method: "POST", body: { url: job.url } }) : null,
  ]);
  const output = job.output;
  const turns = speakerTurns(output);
  const speakers = [...new Set(turns.map((t) => t.speaker))].sort();
  const transcript = output.turnLevelTranscription;
  const lines = transcript ? [...transcript].sort((a, b) => a.start - b.start) : turns;
  const bySpeaker = Object.fromEntries(speakers.map((s) => [s, turns.filter((t) => t.speaker === s)]));
  // `zoom`: the waveform and the lanes are that many times the width of the view; `shift`: the
  // pixels of them scrolled out of view on the left.
  const duration = peaks.duration;
  state.result = { id, job, names, turns, bySpeaker, speakers, lines, duration, current: -1, zoom: 1, shift: 0 };

  $("#result").hidden = false;
  $("#result-title").textContent = learn(job).file;
  $("#result-note").textContent = [
    `${speakers.length} speakers, ${formatTime(peaks.duration)}`,
    job.kind === "identify" ? "speakers named after their matched voiceprints" : "",
    audio ? "" : "no playback: the audio came from a URL, not an upload",
    output.warning || "",
  ]
    .filter(Boolean)
    .join(" · ");
  const player = $("#player");
  player.hidden = !audio;
  if (!audio) player.removeAttribute("src"); // not the previous job's audio
  state.result.wave = WaveSurfer.create({
    container: "#waveform",
    media: player,
    url: audio?.url, // the <audio> element streams it with range requests; nothing is decoded here
    peaks: [Float32Array.from(peaks.peaks, (v) => v / 127)],
    duration: peaks.duration,
    height: 72,
    normalize: true, // quiet recordings still show their shape; the peaks' scale is the file's loudest moment
    waveColor: "#9aa5b1",
    progressColor: "#4a5563",
    cursorColor: "#c1121f",
    cursorWidth: 2,
    dragToSeek: true,
    plugins: [TimelinePlugin.create({ height: 16 })],
  });
  drawLanes();
  drawSpeakers();
  drawTranscript();
  showZoom();
  // The lanes scroll with the waveform (which scrolls itself to keep the playing position in view).
  state.result.wave.on("scroll", (_start, _end, left) => {
    state.result.shift = left;
    $("#lanes").style.setProperty("--shift", `${left}px`);
    follow(player.currentTime);
  });
  player.ontimeupdate = () => follow(player.currentTime);
  // A mark for tests and bench/web_render.py: the waveform is on screen along with the lanes.
  state.result.wave.once("redrawcomplete", () => ($("#result").dataset.rendered = id));
  $("#result").scrollIntoView({ block: "start" });
}

function color(speaker) {
  return PALETTE[state.result.speakers.indexOf(speaker) % PALETTE.length];
}

function nameOf(speaker) {
  return state.result.names[speaker] || speaker;
}

/** One lane per speaker under the waveform, on the same time axis: overlapping speech shows as blocks in two lanes. */
function drawLanes() {
  const { turns, speakers, duration } = state.result;
  const lanes = speakers.map((speaker) => {
    const lane = document.createElement("div");
    lane.className = "lane";
    lane.dataset.speaker = speaker;
    const label = document.createElement("span");
    label.className = "lane-name";
    label.textContent = nameOf(speaker);
    label.style.color = color(speaker);
    const track = document.createElement("div");
    track.className = "track";
    const blocks = document.createElement("div"); // as wide as the zoomed waveform, scrolled with it
    blocks.className = "track-inner";
    turns.forEach((turn, index) => {
      if (turn.speaker !== speaker) return;
      const block = document.createElement("div");
      block.className = "turn";
      block.dataset.start = turn.start;
      block.dataset.end = turn.end;
      block.dataset.index = index;
      block.style.left = `${(100 * turn.start) / duration}%`;
      block.style.width = `${(100 * (turn.end - turn.start)) / duration}%`;
      block.style.background = color(speaker);
      block.title = `${nameOf(speaker)} ${formatTime(turn.start)}–${formatTime(turn.end)}`;
      blocks.append(block);
    });
    track.append(blocks);
    track.onclick = (event) => {
      const start = event.target.dataset.start;
      const box = blocks.getBoundingClientRect();
      playFrom(start !== undefined ? Number(start) : (duration * (event.clientX - box.left)) / box.width);
    };
    lane.append(label, track);
    return lane;
  });
  const head = document.createElement("div");
  head.className = "playhead";
  $("#lanes").replaceChildren(...lanes, head);
}

function drawSpeakers() {
  const { speakers } = state.result;
  $("#speakers").replaceChildren(
    ...speakers.map((speaker) => {
      const item = document.createElement("li");
      item.dataset.speaker = speaker;
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = color(speaker);
      const input = document.createElement("input");
      input.value = state.result.names[speaker] || "";
      input.placeholder = speaker;
      input.maxLength = 100;
      input.setAttribute("aria-label", `Name of ${speaker}`);
      input.onchange = guarded(() => rename(speaker, input.value.trim()));
      const label = document.createElement("code");
      label.textContent = speaker;
      item.append(swatch, label, input);
      return item;
    }),
  );
}

/** Store a name on the server (empty removes it), then show the names it answers everywhere. */
async function rename(speaker, name) {
  const result = state.result;
  result.names = await api(`/v1/jobs/${result.id}/speakers`, { method: "PUT", body: { [speaker]: name || null } });
  for (const label of document.querySelectorAll(".lane")) {
    label.querySelector(".lane-name").textContent = nameOf(label.dataset.speaker);
  }
  for (const who of document.querySelectorAll("#transcript .who")) who.textContent = nameOf(who.dataset.speaker);
}

/** The diarization turn of `line`'s speaker that overlaps it most (a transcript line carries no confidence). */
function turnOf(line) {
  if (line.confidence) return line;
  let best = null;
  let most = 0;
  for (const turn of state.result.bySpeaker[line.speaker] || []) {
    if (turn.start >= line.end) break;
    const overlap = Math.min(turn.end, line.end) - Math.max(turn.start, line.start);
    if (overlap > most) [best, most] = [turn, overlap];
  }
  return best;
}

function confidenceOf(line) {
  const score = turnOf(line)?.confidence?.[line.speaker];
  return score === undefined ? "" : `${Math.round(score)}%`;
}

function drawTranscript() {
  const { lines } = state.result;
  $("#transcript").replaceChildren(
    ...lines.map((line, index) => {
      const item = document.createElement("li");
      item.dataset.index = index;
      item.dataset.start = line.start;
      item.tabIndex = -1;
      const time = document.createElement("time");
      time.textContent = formatTime(line.start);
      const who = document.createElement("span");
      who.className = "who";
      who.dataset.speaker = line.speaker;
      who.textContent = nameOf(line.speaker);
      who.style.color = color(line.speaker);
      const text = document.createElement("span");
      text.className = "text";
      text.textContent = line.text ?? "";
      item.append(time, who, text);
      const confidence = confidenceOf(line);
      if (confidence) {
        const score = document.createElement("span");
        score.className = "confidence";
        score.title = "Confidence of this turn";
        score.textContent = confidence;
        item.append(score);
      }
      item.onclick = () => playFrom(line.start, index);
      return item;
    }),
  );
}

function playFrom(seconds, index) {
  const player = $("#player");
  player.currentTime = seconds;
  follow(seconds, index);
  player.play().catch(() => {}); // autoplay rules may refuse before the first click; the seek stands
}

/** The line being played (the last that started by `seconds`), highlighted and kept in view. */
function follow(seconds, index) {
  const result = state.result;
  if (!result) return;
  const lines = result.lines;
  if (index === undefined) {
    let low = 0;
    let high = lines.length - 1;
    index = -1;
    while (low <= high) {
      const middle = (low + high) >> 1;
      // A seek to a line's start may read back a hair earlier: that still is the line.
      if (lines[middle].start <= seconds + 0.01) {
        index = middle;
        low = middle + 1;
      } else high = middle - 1;
    }
  }
  const share = Math.min(1, seconds / result.duration);
  const width = $("#lanes .track")?.clientWidth || 0;
  const x = share * width * result.zoom - result.shift;
  const head = $("#lanes .playhead");
  head.hidden = x < 0 || x > width; // scrolled out of view
  head.style.left = `calc(var(--label) + ${x}px)`;
  if (index === result.current) return;
  document.querySelector("#transcript .current")?.classList.remove("current");
  result.current = index;
  const item = document.querySelector(`#transcript li[data-index="${index}"]`);
  if (item) {
    item.classList.add("current");
    item.scrollIntoView({ block: "nearest" });
  }
}

/** The widest zoom: about MAX_PIXELS_PER_SECOND, and never below 1. */
function mostZoom() {
  return Math.max(1, (MAX_PIXELS_PER_SECOND * state.result.duration) / $("#waveform").clientWidth);
}

/** Show the waveform and the lanes together at `zoom` times the width of the view (1 to mostZoom()). */
function setZoom(zoom) {
  const result = state.result;
  if (!result) return;
  result.zoom = Math.min(Math.max(zoom, 1), mostZoom());
  // wavesurfer's zoom is in pixels per second; 0 is its own default, filling the view.
  result.wave.zoom(result.zoom === 1 ? 0 : (result.zoom * $("#waveform").clientWidth) / result.duration);
  if (result.zoom === 1) result.shift = 0;
  showZoom();
}

function showZoom() {
  const result = state.result;
  $("#lanes").style.setProperty("--zoom", result.zoom);
  $("#lanes").style.setProperty("--shift", `${result.shift}px`);
  $("#zoom-level").textContent = `${Math.round(result.zoom * 10) / 10}×`;
  $("#zoom-out").disabled = result.zoom <= 1;
  $("#zoom-in").disabled = result.zoom >= mostZoom();
  follow($("#player").currentTime);
}

function onKey(event) {
  if (!state.result || event.target.closest("input, select, textarea")) return;
  const player = $("#player");
  if (event.key === " " && !event.target.closest("button, a")) {
    event.preventDefault();
    if (player.paused) player.play().catch(() => {});
    else player.pause();
  } else if (["+", "=", "-"].includes(event.key)) {
    setZoom(state.result.zoom * (event.key === "-" ? 0.5 : 2));
  } else if (["ArrowRight", "ArrowDown", "ArrowLeft", "ArrowUp"].includes(event.key)) {
    event.preventDefault();
    const step = event.key === "ArrowRight" || event.key === "ArrowDown" ? 1 : -1;
    const next = Math.min(Math.max(state.result.current + step, 0), state.result.lines.length - 1);
    playFrom(state.result.lines[next].start, next);
  }
}

/** Download an export through the API (the key travels in a header, so a plain link cannot do it). */
async function download(format) {
  const id = state.result.id;
  const response = await api(`/v1/jobs/${id}/export?format=${format}`, { raw: true });
  const link = document.createElement("a");
  link.href = URL.createObjectURL(await response.blob());
  link.download = `${id}.${format}`;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
}

function formatTime(seconds) {
  const whole = Math.floor(seconds);
  const h = Math.floor(whole / 3600);
  const m = String(Math.floor((whole % 3600) / 60)).padStart(2, "0");
  const s = String(whole % 60).padStart(2, "0");
  return h ? `${h}:${m}:${s}` : `${m}:${s}`;
}

// --- wiring -------------------------------------------------------------------------------

function start() {
  $("#sign-in-form").onsubmit = signIn;
  $("#sign-out").onclick = () => signOut();
  $("#status-filter").onchange = () => {
    state.jobsShown = JOBS_PAGE;
    pollJobs();
  };
  $("#zoom-in").onclick = () => setZoom(state.result.zoom * 2);
  $("#zoom-out").onclick = () => setZoom(state.result.zoom / 2);
  // wavesurfer's zoom is in pixels per second: a new width of the view needs it again.
  window.addEventListener("resize", () => state.result?.zoom > 1 && setZoom(state.result.zoom));
  $("#more-jobs").onclick = () => {
    state.jobsShown += JOBS_PAGE;
    pollJobs();
  };
  $("#files").onchange = (event) => {
    uploadAll(event.target.files);
    event.target.value = "";
  };
  const drop = $("#drop");
  drop.ondragover = (event) => {
    event.preventDefault();
    drop.classList.add("over");
  };
  drop.ondragleave = () => drop.classList.remove("over");
  drop.ondrop = (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    uploadAll(event.dataTransfer.files);
  };
  drop.onkeydown = (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      $("#files").click();
    }
  };
  $("#exports").onclick = (event) => event.target.dataset.format && guarded(download)(event.target.dataset.format);
  window.onhashchange = () => {
    const id = new URLSearchParams(location.hash.slice(1)).get("job");
    if (id && state.key) guarded(openResult)(id);
    else closeResult();
  };
  document.addEventListener("keydown", onKey);
  if (state.key) enter();
}

start();
