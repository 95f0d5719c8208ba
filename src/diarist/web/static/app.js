// The diarist web page: plain functions over the public HTTP API, the same calls any client makes.
// No build step: these modules and the vendored wavesurfer.js modules are served as they are.
// This one signs in and out and wires the page's controls to the modules that do the work:
// api.js (the client and the key), vocabulary.js (the names the server defines), upload.js,
// jobs.js (the job list), result.js with lanes.js, transcript.js, speakers.js and player.js (the
// result view), exports.js, live.js (the live view, with its audio worklet live-worklet.js).

import { forgetKey, onUnauthorized, signedIn, useKey } from "./api.js";
import { download } from "./exports.js";
import { pollJobs, showJobs, stopPolling } from "./jobs.js";
import { startFile, startMicrophone, stopLive } from "./live.js";
import { $, guarded, showError } from "./page.js";
import { onKey, setZoom } from "./player.js";
import { closeResult, openResult, shownResult } from "./result.js";
import { diarizeUrl, uploadAll } from "./upload.js";
import { loadVocabulary } from "./vocabulary.js";

async function signIn(event) {
  event.preventDefault();
  showError("");
  try {
    await useKey($("#key").value.trim());
  } catch (error) {
    showError(error.status === 401 ? `Sign-in failed: ${error.message}` : error.message);
    return;
  }
  $("#key").value = "";
  await enter();
}

function signOut(message) {
  stopLive();
  forgetKey();
  stopPolling();
  closeResult();
  $("#work").hidden = true;
  $("#sign-out").hidden = true;
  $("#sign-in").hidden = false;
  showError(typeof message === "string" ? message : "");
}

/** Show the work area once its choices have loaded, and the job in the address, if any. */
async function enter() {
  await loadVocabulary();
  $("#sign-in").hidden = true;
  $("#work").hidden = false;
  $("#sign-out").hidden = false;
  pollJobs();
  const open = new URLSearchParams(location.hash.slice(1)).get("job");
  if (open) guarded(openResult)(open);
}

/** The drop zone takes files dropped on it, and opens the file chooser on Enter or Space. */
function wireDrop() {
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
}

function start() {
  onUnauthorized(signOut);
  $("#sign-in-form").onsubmit = guarded(signIn);
  $("#sign-out").onclick = () => signOut();
  $("#status-filter").onchange = () => showJobs();
  $("#more-jobs").onclick = () => showJobs({ more: true });
  $("#zoom-in").onclick = () => setZoom(shownResult(), shownResult().zoom * 2);
  $("#zoom-out").onclick = () => setZoom(shownResult(), shownResult().zoom / 2);
  // wavesurfer's zoom and the time axis's steps are in pixels per second: a new width of the view needs them again.
  window.addEventListener("resize", () => shownResult() && setZoom(shownResult(), shownResult().zoom));
  $("#files").onchange = (event) => {
    uploadAll(event.target.files);
    event.target.value = "";
  };
  wireDrop();
  $("#url-form").onsubmit = guarded(async (event) => {
    event.preventDefault();
    await diarizeUrl($("#url").value.trim());
    $("#url").value = "";
  });
  $("#live-start").onclick = guarded(startMicrophone);
  $("#live-file").onchange = (event) => {
    const [file] = event.target.files;
    event.target.value = "";
    if (file) guarded(startFile)(file);
  };
  $("#live-stop").onclick = () => stopLive();
  $("#exports").onclick = (event) =>
    event.target.dataset.format && guarded(download)(shownResult(), event.target.dataset.format);
  window.onhashchange = () => {
    const id = new URLSearchParams(location.hash.slice(1)).get("job");
    if (id && signedIn()) guarded(openResult)(id);
    else closeResult();
  };
  document.addEventListener("keydown", (event) => onKey(event, shownResult()));
  guarded(loadVocabulary)(); // now, not at sign-in: the choices are there by the time the work area shows
  if (signedIn()) guarded(enter)();
}

start();
