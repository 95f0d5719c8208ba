// The transcript of the open result (or its turns, without transcription): a line per turn, its
// speaker, its text and its confidence; a click plays from it.

import { $, formatTime } from "./page.js";
import { playFrom } from "./player.js";
import { color, nameOf } from "./speakers.js";

/** The diarization turn of `line`'s speaker that overlaps it most (a transcript line carries no confidence). */
function turnOf(result, line) {
  if (line.confidence) return line;
  let best = null;
  let most = 0;
  for (const turn of result.bySpeaker[line.speaker] || []) {
    if (turn.start >= line.end) break;
    const overlap = Math.min(turn.end, line.end) - Math.max(turn.start, line.start);
    if (overlap > most) [best, most] = [turn, overlap];
  }
  return best;
}

function confidenceOf(result, line) {
  const score = turnOf(result, line)?.confidence?.[line.speaker];
  return score === undefined ? "" : `${Math.round(score)}%`;
}

/** The lines of `result`, in time order. */
export function drawTranscript(result) {
  const scores = result.lines.map((line) => confidenceOf(result, line));
  $("#confidence-head").hidden = !scores.some(Boolean);
  $("#transcript").replaceChildren(
    ...result.lines.map((line, index) => {
      const item = document.createElement("li");
      item.dataset.index = index;
      item.dataset.start = line.start;
      item.tabIndex = -1;
      const time = document.createElement("time");
      time.textContent = formatTime(line.start);
      const who = document.createElement("span");
      who.className = "who";
      who.dataset.speaker = line.speaker;
      who.textContent = nameOf(result, line.speaker);
      who.style.color = color(result, line.speaker);
      const text = document.createElement("span");
      text.className = "text";
      text.textContent = line.text ?? "";
      item.append(time, who, text);
      const confidence = scores[index];
      if (confidence) {
        const score = document.createElement("span");
        score.className = "confidence";
        score.title = "Confidence of this turn";
        score.textContent = confidence;
        item.append(score);
      }
      item.onclick = () => playFrom(result, line.start, index);
      return item;
    }),
  );
}
