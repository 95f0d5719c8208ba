// The open result's speakers: their colours, the names users give them (kept on the server), and
// the list where those names are edited.

import { api } from "./api.js";
import { $, guarded } from "./page.js";

// Twenty colours far apart in hue and lightness, each dark enough to read as text on white.
const PALETTE = [
  "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#e6550d", "#0f8f9e", "#8c564b", "#c2378f", "#5f6b00", "#393b79",
  "#a05d00", "#637939", "#7b4173", "#3182bd", "#b8262e", "#31a354", "#756bb1", "#636363", "#00796b", "#843c39",
];

/** The colour of `speaker` in `result`'s lanes, list and transcript. */
export function color(result, speaker) {
  return PALETTE[result.speakers.indexOf(speaker) % PALETTE.length];
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
      return item;
    }),
  );
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
