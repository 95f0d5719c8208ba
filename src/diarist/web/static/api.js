// The API client: this tab's key, and the calls to the public HTTP API that any client makes with it.

const KEY_STORE = "diarist.key"; // sessionStorage only: the key goes when the tab goes
let key = sessionStorage.getItem(KEY_STORE);
let unauthorized = () => {};

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** Whether this tab holds a key. */
export function signedIn() {
  return Boolean(key);
}

/** What to do when the server refuses the key (it was revoked, or expired): called with its message. */
export function onUnauthorized(handler) {
  unauthorized = handler;
}

/** Use `candidate` if the server accepts it, and keep it for this tab; throws ApiError if not. */
export async function useKey(candidate) {
  key = candidate;
  try {
    await api("/v1/test");
  } catch (error) {
    key = null;
    throw error;
  }
  sessionStorage.setItem(KEY_STORE, key);
}

/** Drop the key from this tab. */
export function forgetKey() {
  sessionStorage.removeItem(KEY_STORE);
  key = null;
}

/** Readable text of an error answer: the message, then each field's complaint. */
async function errorText(response) {
  try {
    const body = await response.json();
    const fields = (body.errors || []).map((e) => `${e.field}: ${e.message}`);
    return [body.message || response.statusText, ...fields].join(" — ");
  } catch {
    return `${response.status} ${response.statusText}`;
  }
}

/** Call the API with the key; waits as told on 429, calling `onWait(seconds)` first; throws ApiError with
the server's message. */
export async function api(path, { method = "GET", body, raw = false, onWait = () => {} } = {}) {
  for (let attempt = 0; ; attempt++) {
    const headers = { Authorization: `Bearer ${key}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    if (response.status === 429 && attempt < 3) {
      const wait = Number(response.headers.get("Retry-After") || "1");
      onWait(wait);
      await new Promise((resolve) => setTimeout(resolve, wait * 1000));
      continue;
    }
    if (!response.ok) {
      const error = new ApiError(response.status, await errorText(response));
      if (response.status === 401 && path !== "/v1/test") unauthorized(error.message);
      throw error;
    }
    return raw ? response : response.json();
  }
}
