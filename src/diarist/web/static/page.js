// What every part of the page uses: the element query, the error box, and times as the page writes them.

export const $ = (selector) => document.querySelector(selector);

/** Show `message` in the page's error box; an empty one hides the box. */
export function showError(message) {
  const box = $("#error");
  box.textContent = message || "";
  box.hidden = !message;
}

/** Run an async action; a failure shows in the page's error box instead of the console. */
export function guarded(action) {
  return (...args) =>
    action(...args).catch((error) => {
      console.error(error);
      showError(error.message);
    });
}

/** `mm:ss`, or `h:mm:ss` from an hour on. */
export function formatTime(seconds) {
  const whole = Math.floor(seconds);
  const h = Math.floor(whole / 3600);
  const m = String(Math.floor((whole % 3600) / 60)).padStart(2, "0");
  const s = String(whole % 60).padStart(2, "0");
  return h ? `${h}:${m}:${s}` : `${m}:${s}`;
}
