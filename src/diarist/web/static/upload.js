// Uploads: each file to a pre-signed media URL, then a diarize job on it with the form's options.

import { ApiError, api } from "./api.js";
import { pollJobs, remember } from "./jobs.js";
import { $ } from "./page.js";

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

let created = 0; // jobs this page started since it loaded: one line says how many, not one line each

/** Count one more created job in the summary line. */
function countCreated() {
  created += 1;
  $("#upload-summary").textContent = `${created} job${created === 1 ? "" : "s"} created: see the job list.`;
}

/** Upload `file` and start its job, showing how far it got in a row of its own while it is under way. */
async function uploadOne(file, options) {
  const row = document.createElement("li");
  const show = (text) => (row.textContent = `${file.name}: ${text}`);
  const onWait = (seconds) => show(`waiting for the key's rate limit (${seconds} s)…`);
  show("uploading…");
  $("#uploads").prepend(row);
  try {
    const url = mediaUrl(file);
    const target = await api("/v1/media/input", { method: "POST", body: { url }, onWait });
    await put(target.url, file, (done) => show(`uploading ${Math.round(done * 100)}%`));
    show("creating its job…");
    const job = await api("/v1/diarize", { method: "POST", body: { ...options, url }, onWait });
    remember(job.jobId, file.name);
    countCreated();
    // A created job is in the job list: its row here goes, unless it carries a warning to read.
    if (job.warning) show(`job created (${job.warning})`);
    else row.remove();
  } catch (error) {
    row.className = "error";
    show(error.message);
  }
  pollJobs();
}

/** Upload `files` and diarize each with the form's options as they are now. */
export function uploadAll(files) {
  const options = diarizeOptions();
  // In parallel: each file has its own row, its own upload and its own job.
  return Promise.all([...files].map((file) => uploadOne(file, options)));
}

/** Diarize the audio at a web `url` with the form's options. */
export async function diarizeUrl(url) {
  const job = await api("/v1/diarize", { method: "POST", body: { ...diarizeOptions(), url } });
  countCreated();
  pollJobs();
  return job;
}
