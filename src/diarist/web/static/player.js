// Playing the open result: the player, the line and playhead that follow it, the zoom of the
// waveform and lanes, and the keys that drive them.

import TimelinePlugin from "./vendor/wavesurfer/plugins/timeline.esm.js";
import { $ } from "./page.js";

const MAX_PIXELS_PER_SECOND = 200; // zooming in stops about here: a word is then a few dozen pixels
const LABEL_SPACING_PX = 70; // labels on the time axis at least this far apart, at every zoom
const LABEL_STEPS = [0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600]; // seconds

/** The time axis over the waveform at `pixelsPerSecond`: a labelled notch every round step that
 * leaves room for its label (the plugin's own steps leave none in view once zoomed). */
export function timeAxis(pixelsPerSecond) {
  const step = LABEL_STEPS.find((s) => s * pixelsPerSecond >= LABEL_SPACING_PX) ?? LABEL_STEPS.at(-1);
  return TimelinePlugin.create({
    height: 18,
    timeInterval: step,
    primaryLabelInterval: 1,
    secondaryLabelInterval: 1,
    style: { fontSize: "12px", color: "#3d4650" },
  });
}

/** Play `result` from `seconds` (the start of line `index`, if known). */
export function playFrom(result, seconds, index) {
  const player = $("#player");
  player.currentTime = seconds;
  follow(result, seconds, index);
  player.play().catch(() => {}); // autoplay rules may refuse before the first click; the seek stands
}

/** The index of the last of `lines` that started by `seconds`, or -1. */
function lineAt(lines, seconds) {
  let low = 0;
  let high = lines.length - 1;
  let index = -1;
  while (low <= high) {
    const middle = (low + high) >> 1;
    // A seek to a line's start may read back a hair earlier: that still is the line.
    if (lines[middle].start <= seconds + 0.01) {
      index = middle;
      low = middle + 1;
    } else high = middle - 1;
  }
  return index;
}

/** The playhead at `seconds`, and the line being played (line `index`, or the last that started by
 * then) highlighted and kept in view. Nothing when no result is open. */
export function follow(result, seconds, index) {
  if (!result) return;
  if (index === undefined) index = lineAt(result.lines, seconds);
  const share = Math.min(1, seconds / result.duration);
  const width = $("#lanes .track")?.clientWidth || 0;
  const x = share * width * result.zoom - result.shift;
  const head = $("#lanes .playhead");
  head.hidden = x < 0 || x > width; // scrolled out of view
  head.style.left = `calc(var(--label) + ${x}px)`;
  if (index === result.current) return;
  document.querySelector("#transcript .current")?.classList.remove("current");
  result.current = index;
  const item = document.querySelector(`#transcript li[data-index="${index}"]`);
  if (item) {
    item.classList.add("current");
    item.scrollIntoView({ block: "nearest" });
  }
}

/** The widest zoom: about MAX_PIXELS_PER_SECOND, and never below 1. */
function mostZoom(result) {
  return Math.max(1, (MAX_PIXELS_PER_SECOND * result.duration) / $("#waveform").clientWidth);
}

/** Show the waveform and the lanes together at `zoom` times the width of the view (1 to mostZoom()). */
export function setZoom(result, zoom) {
  if (!result) return;
  result.zoom = Math.min(Math.max(zoom, 1), mostZoom(result));
  // wavesurfer's zoom is in pixels per second; 0 is its own default, filling the view.
  const pixelsPerSecond = (result.zoom * $("#waveform").clientWidth) / result.duration;
  result.wave.zoom(result.zoom === 1 ? 0 : pixelsPerSecond);
  result.axis.destroy();
  result.axis = result.wave.registerPlugin(timeAxis(pixelsPerSecond));
  if (result.zoom === 1) result.shift = 0;
  showZoom(result);
}

/** The lanes at the waveform's zoom and scroll, and the zoom controls as they now apply. */
export function showZoom(result) {
  $("#lanes").style.setProperty("--zoom", result.zoom);
  $("#lanes").style.setProperty("--shift", `${result.shift}px`);
  $("#zoom-level").textContent = `${Math.round(result.zoom * 10) / 10}×`;
  $("#zoom-out").disabled = result.zoom <= 1;
  $("#zoom-in").disabled = result.zoom >= mostZoom(result);
  follow(result, $("#player").currentTime);
}

/** Space plays or pauses, the arrows move between lines, + and − zoom; not while typing. */
export function onKey(event, result) {
  if (!result || event.target.closest("input, select, textarea")) return;
  const player = $("#player");
  if (event.key === " " && !event.target.closest("button, a")) {
    event.preventDefault();
    if (player.paused) player.play().catch(() => {});
    else player.pause();
  } else if (["+", "=", "-"].includes(event.key)) {
    setZoom(result, result.zoom * (event.key === "-" ? 0.5 : 2));
  } else if (["ArrowRight", "ArrowDown", "ArrowLeft", "ArrowUp"].includes(event.key)) {
    event.preventDefault();
    const step = event.key === "ArrowRight" || event.key === "ArrowDown" ? 1 : -1;
    const next = Math.min(Math.max(result.current + step, 0), result.lines.length - 1);
    playFrom(result, result.lines[next].start, next);
  }
}
