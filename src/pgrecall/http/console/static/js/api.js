// The REST API, called with the key kept in this tab's session storage (never elsewhere).

const KEY = "pgrecall.key";
// The API sits beside /console/; relative, so a reverse proxy's prefix is kept.
const BASE = new URL("../v1/", document.baseURI);

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** The key entered in this tab: null before one was entered, "" for a server without keys. */
export function savedKey() {
  return sessionStorage.getItem(KEY);
}

export function saveKey(key) {
  sessionStorage.setItem(KEY, key);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY);
}

/** JSON from ``path`` (relative to /v1/), or an ApiError carrying the API's code and message. */
export async function call(method, path, body) {
  const headers = { Accept: "application/json" };
  const key = savedKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  const init = { method, headers, cache: "no-store", credentials: "omit" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(new URL(path, BASE), init);
  } catch {
    throw new ApiError(0, "unreachable", "the server did not answer");
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = data && data.error ? data.error : {};
    throw new ApiError(
      response.status,
      error.code || "http_error",
      error.message || `HTTP ${response.status}`,
    );
  }
  return data;
}

/** A query string from pairs; a list value repeats its name. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    for (const item of Array.isArray(value) ? value : [value]) {
      if (item !== undefined && item !== null) search.append(name, String(item));
    }
  }
  return search.toString();
}

export function memoryPath(id) {
  return `memories/${encodeURIComponent(id)}`;
}
