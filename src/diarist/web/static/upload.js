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

/** Upload `file` and start its job, showing how far it got in a row of its own. */
async function uploadOne(file, options) {
  const row = document.createElement("li");
  row.textContent = `${file.name}: uploading…`;
  $("#uploads").prepend(row);
  try {
    const url = mediaUrl(file);
    const target = await api("/v1/media/input", { method: "POST", body: { url } });
    await put(target.url, file, (done) => (row.textContent = `${file.name}: uploading ${Math.round(done * 100)}%`));
    const created = await api("/v1/diarize", { method: "POST", body: { ...options, url } });
    remember(created.jobId, { file: file.name, kind: "diarize" });
    row.textContent = `${file.name}: job ${created.jobId} created`;
    if (created.warning) row.textContent += ` (${created.warning})`;
  } catch (error) {
    row.className = "error";
    row.textContent = `${file.name}: ${error.message}`;
  }
  pollJobs();
}

/** Upload `files` and diarize each with the form's options as they are now. */
export function uploadAll(files) {
  const options = diarizeOptions();
  // In parallel: each file has its own row, its own upload and its own job.
  return Promise.all([...files].map((file) => uploadOne(file, options)));
}
