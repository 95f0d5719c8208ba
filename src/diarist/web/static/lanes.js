// The speaker lanes under the waveform: one per speaker, on the waveform's time axis.

import { $, formatTime } from "./page.js";
import { playFrom } from "./player.js";
import { color, nameOf } from "./speakers.js";

/** One lane per speaker of `result`: overlapping speech shows as blocks in two lanes. */
export function drawLanes(result) {
  const { turns, speakers, duration } = result;
  const lanes = speakers.map((speaker) => {
    const lane = document.createElement("div");
    lane.className = "lane";
    lane.dataset.speaker = speaker;
    const label = document.createElement("span");
    label.className = "lane-name";
    label.textContent = nameOf(result, speaker);
    label.style.color = color(result, speaker);
    const track = document.createElement("div");
    track.className = "track";
    const blocks = document.createElement("div"); // as wide as the zoomed waveform, scrolled with it
    blocks.className = "track-inner";
    turns.forEach((turn, index) => {
      if (turn.speaker !== speaker) return;
      const block = document.createElement("div");
      block.className = "turn";
      block.dataset.start = turn.start;
      block.dataset.end = turn.end;
      block.dataset.index = index;
      block.style.left = `${(100 * turn.start) / duration}%`;
      block.style.width = `${(100 * (turn.end - turn.start)) / duration}%`;
      block.style.background = color(result, speaker);
      block.title = `${nameOf(result, speaker)} ${formatTime(turn.start)}–${formatTime(turn.end)}`;
      blocks.append(block);
    });
    track.append(blocks);
    track.onclick = (event) => {
      const start = event.target.dataset.start;
      const box = blocks.getBoundingClientRect();
      playFrom(result, start !== undefined ? Number(start) : (duration * (event.clientX - box.left)) / box.width);
    };
    lane.append(label, track);
    return lane;
  });
  const head = document.createElement("div");
  head.className = "playhead";
  $("#lanes").replaceChildren(...lanes, head);
}
