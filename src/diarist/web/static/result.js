// The result view of one job: its waveform (server-computed peaks, audio streamed by the player),
// speaker lanes, speakers and transcript. One result is open at a time.

import WaveSurfer from "./vendor/wavesurfer/wavesurfer.esm.js";
import { api } from "./api.js";
import { fileName, markOpen } from "./jobs.js";
import { drawLanes } from "./lanes.js";
import { $, formatTime, showError } from "./page.js";
import { follow, showZoom, timeAxis } from "./player.js";
import { drawSpeakers } from "./speakers.js";
import { drawTranscript } from "./transcript.js";

let shown = null; // the open job: {id, job, names, turns, bySpeaker, speakers, lines, duration, wave, ...}
// A job id is a UUID. Ids come from the address too (#job=), which any link sets: anything else there, such
// as "../media/download/<token>?", would make the page fetch another path with the user's key.
const JOB_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The open result, or null. */
export function shownResult() {
  return shown;
}

/** Show the result in the panel instead of the new-job forms, or (false) the forms again. */
function showPanel(result) {
  $("#result").hidden = !result;
  $("#upload").hidden = result;
  $("#live").hidden = result;
}

/** Close the open result, if any. */
export function closeResult() {
  shown?.wave?.destroy();
  delete $("#result").dataset.rendered;
  shown = null;
  showPanel(false);
  markOpen(null);
}

/** The diarization turns in time order; an identify job's matched names come from its speakers' names. */
function speakerTurns(output) {
  const turns = output.diarization || [];
  return [...turns].sort((a, b) => a.start - b.start || a.end - b.end);
}

/** Open the result of job `id`: throws if it has none to show. */
export async function openResult(id) {
  closeResult();
  showError("");
  if (!JOB_ID.test(id)) throw new Error(`The address names no job: ${id} is not a job id.`);
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
  const result = { id, job, names, turns, bySpeaker, speakers, lines, duration, current: -1, zoom: 1, shift: 0 };
  shown = result;

  showPanel(true);
  markOpen(id);
  $("#result-title").textContent = fileName(job);
  $("#result-note").textContent = [
    `${speakers.length} speakers, ${formatTime(peaks.duration)}`,
    job.kind === "identify" ? "speakers named after their matched voiceprints" : "",
    audio ? "" : "no playback: the audio came from a URL, not an upload",
    output.warning || "",
  ]
    .filter(Boolean)
    .join(" · ");
  drawWave(result, peaks, audio);
  drawLanes(result);
  drawSpeakers(result);
  drawTranscript(result);
  showZoom(result);
  followWave(result);
  $("#result").scrollIntoView({ block: "start" });
}

/** The waveform of `peaks` over the player of `audio` (none for a job made from a web URL). */
function drawWave(result, peaks, audio) {
  const player = $("#player");
  player.hidden = !audio;
  if (!audio) player.removeAttribute("src"); // not the previous job's audio
  result.wave = WaveSurfer.create({
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
  });
  result.axis = result.wave.registerPlugin(timeAxis($("#waveform").clientWidth / peaks.duration));
}

/** Keep the lanes and the transcript with the waveform and the player, once all are drawn. */
function followWave(result) {
  const player = $("#player");
  // The lanes scroll with the waveform (which scrolls itself to keep the playing position in view).
  result.wave.on("scroll", (_start, _end, left) => {
    result.shift = left;
    $("#lanes").style.setProperty("--shift", `${left}px`);
    follow(result, player.currentTime);
  });
  player.ontimeupdate = () => follow(shown, player.currentTime);
  // A mark for tests and bench/web_render.py: the waveform is on screen along with the lanes.
  result.wave.once("redrawcomplete", () => ($("#result").dataset.rendered = result.id));
}
