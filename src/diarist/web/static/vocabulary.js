// The names the page offers and reads (models, job statuses, export formats), from the server,
// which derives them from the Python definitions: the page holds no copy of them.

import { $ } from "./page.js";

let loading = null; // the one request for them, shared by whoever asks first
let terminal = [];
let kinds = {};

/** Option elements for `names`, with `selected` chosen. */
function options(names, selected) {
  return names.map((name) => {
    const option = document.createElement("option");
    option.value = option.textContent = name;
    option.selected = name === selected;
    return option;
  });
}

/** Fill the model choice, the status filter and the export buttons from `words`. */
function show(words) {
  $("#options select[name=model]").replaceChildren(...options(words.models, words.defaultModel));
  $("#transcribing-models").textContent = words.transcribingModels.join(", ");
  $("#status-filter").append(...options(words.statuses)); // after "all", which is the page's own
  $("#exports").replaceChildren(
    ...words.exportFormats.map((format) => {
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.format = format;
      button.textContent = format.toUpperCase();
      return button;
    }),
  );
}

async function fetchVocabulary() {
  const response = await fetch("/web/vocabulary"); // no key: names only, the same for everyone
  if (!response.ok) throw new Error(`The page could not load its choices: ${response.status} ${response.statusText}`);
  const words = await response.json();
  terminal = words.terminalStatuses;
  kinds = words.jobKinds;
  show(words);
}

/** Load the vocabulary into the page, once; later calls wait for the same load (or try again after a failure). */
export function loadVocabulary() {
  loading ??= fetchVocabulary().catch((error) => {
    loading = null;
    throw error;
  });
  return loading;
}

/** Whether a job in `status` has ended (known once the vocabulary has loaded). */
export function isTerminal(status) {
  return terminal.includes(status);
}

/** Whether a job of `kind` has speakers: turns to show, name and export (not a voiceprint's). */
export function hasSpeakers(kind) {
  return Boolean(kinds[kind]?.hasSpeakers);
}
