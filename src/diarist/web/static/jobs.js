// The job list: the key's newest jobs with their status, kept fresh by polling, and what each job's
// file and kind are.

import { api, signedIn } from "./api.js";
import { $, guarded, showError } from "./page.js";
import { hasSpeakers, isTerminal } from "./vocabulary.js";

const POLL_BUSY_MS = 3000; // while a job is queued or running
const POLL_IDLE_MS = 15000; // when nothing moves, still notice jobs other clients start
const JOBS_PAGE = 20; // jobs listed at first, and added by each "Show more"

const jobs = new Map(); // jobId -> {file, kind} learned from ?details=true, asked once per job
const reasons = new Map(); // jobId -> why it failed: an ended job does not change
let pollTimer = null;
let jobsShown = JOBS_PAGE; // how many of the newest jobs the list holds

/** Remember the file and kind of a job this page created. */
export function remember(id, info) {
  jobs.set(id, info);
}

/** Remember a job's file name (its upload's name, or its URL) and kind, from its ?details=true answer. */
export function learn(job) {
  const file = (job.url || "").replace(/^media:\/\/(web\/[0-9a-z]+-[0-9a-z]+-)?/, "");
  jobs.set(job.jobId, { file: file || job.jobId, kind: job.kind || "diarize" });
  return jobs.get(job.jobId);
}

/** The file name and kind of a job, asked once (the list items carry neither). */
async function jobInfo(id) {
  return jobs.get(id) || learn(await api(`/v1/jobs/${id}?details=true`));
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

/** Redraw the list; whether any job in it has not ended. */
async function refreshJobs() {
  const list = await listJobs(jobsShown, $("#status-filter").value);
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
  return list.items.some((item) => !isTerminal(item.status));
}

function jobRow(item, info, detail) {
  const row = document.createElement("tr");
  row.dataset.job = item.id;
  row.dataset.status = item.status;
  const name = document.createElement("td");
  const label = info.kind && info.kind !== "diarize" ? `${info.file} (${info.kind})` : info.file;
  if (item.status === "succeeded" && hasSpeakers(info.kind)) {
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
  if (!isTerminal(item.status)) {
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
export function pollJobs() {
  clearTimeout(pollTimer);
  if (!signedIn()) return;
  refreshJobs()
    .then((busy) => (pollTimer = setTimeout(pollJobs, busy ? POLL_BUSY_MS : POLL_IDLE_MS)))
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
