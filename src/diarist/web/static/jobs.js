// The job list: the key's newest jobs with their status, progress, model and options, kept fresh by
// polling, the open one marked.

import { api, signedIn } from "./api.js";
import { $, guarded, showError } from "./page.js";
import { hasSpeakers, isTerminal } from "./vocabulary.js";

const POLL_BUSY_MS = 3000; // while a job is queued or running
const POLL_IDLE_MS = 15000; // when nothing moves, still notice jobs other clients start
const JOBS_PAGE = 20; // jobs listed at first, and added by each "Show more"

const files = new Map(); // jobId -> the file name of a job this page uploaded (its media name is mangled)
const known = new Map(); // jobId -> its last ?details=true answer
let pollTimer = null;
let jobsShown = JOBS_PAGE; // how many of the newest jobs the list holds
let openJob = null; // the job whose result is open, marked in the list
let drawing = 0; // the latest refresh: an older one still under way (a filter or "Show more" came since) draws nothing

/** Remember the file name of a job this page created. */
export function remember(id, file) {
  files.set(id, file);
}

/** Mark job `id` (null: none) as the open one. */
export function markOpen(id) {
  openJob = id;
  for (const row of document.querySelectorAll("#job-rows li[data-job]")) {
    row.classList.toggle("open", row.dataset.job === id);
    if (row.dataset.job === id) row.setAttribute("aria-current", "true");
    else row.removeAttribute("aria-current");
  }
}

// The SDK names its uploads media://<32 hex digits>; the page names its own media://web/<time>-<random>-<file>.
const SDK_MEDIA = /^media:\/\/([0-9a-f]{32})$/;
const PAGE_MEDIA = /^media:\/\/web\/[0-9a-z]+-[0-9a-z]+-/;

/** A readable name for a job's input `url` (from its ?details=true answer). */
export function fileName(job) {
  if (files.has(job.jobId)) return files.get(job.jobId);
  const url = job.url || "";
  const sdk = url.match(SDK_MEDIA);
  if (sdk) return `upload ${sdk[1].slice(0, 8)}`; // the SDK keeps no file name: a short, distinct id
  if (PAGE_MEDIA.test(url)) return url.replace(PAGE_MEDIA, "");
  return url.replace(/^media:\/\//, "") || job.jobId;
}

/** A job's ?details=true answer for list `item`: asked again only while it runs (for its progress) or
when its status changed, so that a long queue does not spend the key's rate limit at every refresh. */
async function details(item) {
  const last = known.get(item.id);
  if (last && last.status === item.status && item.status !== "running") return last;
  const job = await api(`/v1/jobs/${item.id}?details=true`);
  known.set(item.id, job);
  return job;
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

/** Redraw the list; whether any job in it has not ended, or null if a newer refresh replaced this one. */
async function refreshJobs() {
  const mine = ++drawing;
  const list = await listJobs(jobsShown, $("#status-filter").value);
  const rows = [];
  for (const item of list.items) {
    const job = await details(item).catch(() => ({ jobId: item.id, ...item }));
    rows.push(jobRow({ ...job, status: item.status, createdAt: item.createdAt }));
  }
  if (mine !== drawing) return null;
  $("#more-jobs").hidden = !list.more;
  $("#job-rows").replaceChildren(...rows);
  if (!list.items.length) $("#job-rows").innerHTML = '<li class="hint">No jobs yet.</li>';
  markOpen(openJob);
  return list.items.some((item) => !isTerminal(item.status));
}

/** "42 s", "3 min 5 s", "1 h 2 min". */
function formatSpan(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/** The time a job was created: the hour today, the day and hour before. */
function formatCreated(iso) {
  const date = new Date(iso);
  const time = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  if (date.toDateString() === new Date().toDateString()) return time;
  return `${date.toLocaleDateString([], { day: "numeric", month: "short" })} ${time}`;
}

/** The model, the options that differ from their defaults, how long it ran (or has run), and which
 * attempt it is when a worker died and another started it again (its progress started over). */
function jobFacts(job) {
  const options = Object.entries(job.options || {}).map(([name, value]) => (value === true ? name : `${name} ${value}`));
  const end = isTerminal(job.status) ? new Date(job.updatedAt) : new Date();
  const took = `${isTerminal(job.status) ? "took" : "for"} ${formatSpan((end - new Date(job.createdAt)) / 1000)}`;
  const attempt = job.attempt > 1 ? `attempt ${job.attempt}` : "";
  return [job.model, ...options, job.updatedAt ? took : "", attempt].filter(Boolean).join(" · ");
}

function jobRow(job) {
  const row = document.createElement("li");
  row.dataset.job = job.jobId;
  row.dataset.status = job.status;
  const kind = job.kind || "diarize";
  const file = fileName(job);
  const label = kind !== "diarize" ? `${file} (${kind})` : file;
  const name = document.createElement("span");
  name.className = "job-name";
  name.title = label;
  if (job.status === "succeeded" && hasSpeakers(kind)) {
    const link = document.createElement("a");
    link.href = `#job=${job.jobId}`;
    link.textContent = label;
    name.append(link);
  } else {
    name.textContent = label;
  }
  const created = document.createElement("time");
  created.dateTime = job.createdAt;
  created.title = new Date(job.createdAt).toLocaleString();
  created.textContent = formatCreated(job.createdAt);
  const top = document.createElement("div");
  top.className = "job-top";
  top.append(name, created);
  const facts = document.createElement("div");
  facts.className = "job-facts";
  facts.textContent = jobFacts(job);
  const status = document.createElement("span");
  status.className = `status ${job.status}`;
  status.textContent = job.status === "running" && job.progress !== undefined ? `running ${job.progress}%` : job.status;
  const bottom = document.createElement("div");
  bottom.className = "job-bottom";
  bottom.append(status);
  if (!isTerminal(job.status)) bottom.append(cancelButton(job.jobId, label));
  row.append(top, facts, bottom);
  if (job.status === "running") {
    const bar = document.createElement("progress");
    bar.max = 100;
    bar.value = job.progress || 0;
    bar.setAttribute("aria-label", `${label}: ${job.progress || 0}%`);
    row.append(bar);
  }
  const error = job.output?.error;
  if (error) {
    const why = document.createElement("div");
    why.className = "reason";
    // The server names the input by its media URL; the user knows it by the file's name.
    why.textContent = job.url ? error.replaceAll(job.url, file) : error;
    row.append(why);
  }
  return row;
}

/** A button that cancels job `id` once the user confirms it. */
function cancelButton(id, label) {
  const cancel = document.createElement("button");
  cancel.type = "button";
  cancel.textContent = "Cancel";
  cancel.onclick = guarded(async () => {
    if (!confirm(`Cancel the job of ${label}?`)) return;
    await api(`/v1/jobs/${id}`, { method: "DELETE" });
    pollJobs();
  });
  return cancel;
}

/** Refresh the list now, then again soon while jobs move, less often when none does. */
export function pollJobs() {
  clearTimeout(pollTimer);
  if (!signedIn()) return;
  refreshJobs()
    .then((busy) => busy !== null && (pollTimer = setTimeout(pollJobs, busy ? POLL_BUSY_MS : POLL_IDLE_MS)))
    .catch((error) => {
      if (!signedIn()) return;
      showError(error.message);
      pollTimer = setTimeout(pollJobs, POLL_IDLE_MS);
    });
}

/** Stop polling (on signing out). */
export function stopPolling() {
  clearTimeout(pollTimer);
}

/** List the first page again (for a new status filter), or `JOBS_PAGE` more jobs. */
export function showJobs({ more = false } = {}) {
  jobsShown = more ? jobsShown + JOBS_PAGE : JOBS_PAGE;
  pollJobs();
}
