// The query API, with the signed-in key. The key lives in this tab's sessionStorage only and
// travels as a header (never in a URL, so never in access logs or history).
const KEY = "llmscope.apiKey";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export const session = {
  key: () => sessionStorage.getItem(KEY),
  set: (key) => sessionStorage.setItem(KEY, key),
  clear: () => sessionStorage.removeItem(KEY),
};

let onUnauthorized = () => {};
export function whenUnauthorized(handler) { onUnauthorized = handler; }

export function query(params) {
  const q = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === "") continue;
    for (const v of Array.isArray(value) ? value : [value]) q.append(name, v);
  }
  const text = q.toString();
  return text ? `?${text}` : "";
}

export async function api(path, params = {}, { key = session.key(), signal } = {}) {
  let response;
  try {
    response = await fetch(`/api/v1${path}${query(params)}`, {
      headers: { Authorization: `Bearer ${key}`, Accept: "application/json" },
      signal,
    });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "network", "Cannot reach the LLMScope query API. Is it running?");
  }
  let body = null;
  try { body = await response.json(); } catch { /* an empty or non-JSON answer */ }
  if (!response.ok) {
    const error = body && body.error ? body.error : { code: "http_error", message: response.statusText };
    const failure = new ApiError(response.status, error.code, error.message);
    if (response.status === 401 && key === session.key()) onUnauthorized(failure);
    throw failure;
  }
  return body;
}

// The range chosen in the top bar, as the API's start/end.
export const RANGES = { "1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400 };
export function window_(range) {
  const end = new Date();
  const start = new Date(end.getTime() - (RANGES[range] || RANGES["24h"]) * 1000);
  return { start: start.toISOString(), end: end.toISOString() };
}
