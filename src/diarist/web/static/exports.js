// Exports of the open result (JSON, RTTM, subtitles, text), downloaded through the API.

import { api } from "./api.js";

/** Download `result` in `format` (the key travels in a header, so a plain link cannot do it). */
export async function download(result, format) {
  const response = await api(`/v1/jobs/${result.id}/export?format=${format}`, { raw: true });
  const link = document.createElement("a");
  link.href = URL.createObjectURL(await response.blob());
  link.download = `${result.id}.${format}`;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
}
