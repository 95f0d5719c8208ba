// The open result's speakers: their colours, the names users give them (kept on the server), and
// the list where those names are edited.

import { api } from "./api.js";
import { $, guarded } from "./page.js";

const LIGHTNESS = [28, 44, 36]; // cycled with the hue: neighbours in hue then differ in lightness too

/** The colour of `speaker` in `result`'s lanes, list and transcript. Hues a golden angle (137.5°) apart
never repeat, each falling in the widest gap the ones before left, so any number of speakers stay apart. */
export function color(result, speaker) {
  const index = result.speakers.indexOf(speaker);
  return `hsl(${((index * 137.508 + 210) % 360).toFixed(1)}, 75%, ${LIGHTNESS[index % LIGHTNESS.length]}%)`;
}

/** The name users gave `speaker`, or its label. */
export function nameOf(result, speaker) {
  return result.names[speaker] || speaker;
}

/** The list of speakers, each with its colour, its label and its name to edit. */
export function drawSpeakers(result) {
  $("#speakers").replaceChildren(
    ...result.speakers.map((speaker) => {
      const item = document.createElement("li");
      item.dataset.speaker = speaker;
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = color(result, speaker);
      const input = document.createElement("input");
      input.value = result.names[speaker] || "";
      input.placeholder = speaker;
      input.maxLength = 100;
      input.setAttribute("aria-label", `Name of ${speaker}`);
      input.onchange = guarded(() => rename(result, speaker, input.value.trim()));
      const label = document.createElement("code");
      label.textContent = speaker;
      item.append(swatch, label, input);
      const match = matchOf(result, speaker);
      if (match) item.append(match);
      return item;
    }),
  );
}

/** An identify job's match for `speaker` and its confidence (0-100), or its best score when none matched. */
function matchOf(result, speaker) {
  const found = (result.job.output.voiceprints || []).find((v) => v.speaker === speaker);
  if (!found) return null;
  const scores = Object.entries(found.confidence || {}).sort((a, b) => b[1] - a[1]);
  const line = document.createElement("span");
  line.className = "match";
  if (found.match) line.textContent = `matches ${found.match} (${Math.round(found.confidence[found.match])}% confidence)`;
  else if (scores.length) line.textContent = `no match (closest: ${scores[0][0]}, ${Math.round(scores[0][1])}%)`;
  else line.textContent = "no match";
  return line;
}

/** Store a name on the server (empty removes it), then show the names it answers everywhere. */
async function rename(result, speaker, name) {
  result.names = await api(`/v1/jobs/${result.id}/speakers`, { method: "PUT", body: { [speaker]: name || null } });
  for (const label of document.querySelectorAll(".lane")) {
    label.querySelector(".lane-name").textContent = nameOf(result, label.dataset.speaker);
  }
  for (const who of document.querySelectorAll("#transcript .who")) {
    who.textContent = nameOf(result, who.dataset.speaker);
  }
}
