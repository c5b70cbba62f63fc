// Talking to the cluster: one `request` for JSON calls (credentials, errors as ApiError with the
// server's message), one `stream` that reads Server-Sent Events with fetch() so that it can send
// the Authorization header (an EventSource cannot).

const AUTH_KEY = 'plateau.auth';

/** An answer that was not 2xx, or a network failure (status 0). */
export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

// Sent on every call: a server may leave out its `WWW-Authenticate` challenge for such requests,
// so that the browser shows the console's login form rather than its own prompt.
const CONSOLE_HEADER = { 'X-Requested-With': 'XMLHttpRequest' };

export function authHeader() {
  const token = sessionStorage.getItem(AUTH_KEY);
  return token ? { ...CONSOLE_HEADER, Authorization: 'Basic ' + token } : { ...CONSOLE_HEADER };
}

export function hasCredentials() {
  return sessionStorage.getItem(AUTH_KEY) !== null;
}

export function setCredentials(user, password) {
  const bytes = new TextEncoder().encode(user + ':' + password);
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  sessionStorage.setItem(AUTH_KEY, btoa(s));
}

export function clearCredentials() {
  sessionStorage.removeItem(AUTH_KEY);
}

// Listeners told when the cluster answers 401 (the app shows the login form).
const unauthorizedListeners = new Set();
export function onUnauthorized(f) {
  unauthorizedListeners.add(f);
  return () => unauthorizedListeners.delete(f);
}
function unauthorized() {
  for (const f of unauthorizedListeners) f();
}

/** The message of an error body: `message`, then Marathon's `details`, then the field. */
function messageOf(status, body, text) {
  if (body && typeof body === 'object') {
    let m = body.message || body.error || JSON.stringify(body);
    if (body.field) m += ` (field ${body.field})`;
    if (Array.isArray(body.details)) {
      const d = body.details
        .map((x) => (x.path ? x.path + ': ' : '') + (x.errors || []).join(', '))
        .filter((x) => x)
        .join('; ');
      if (d) m += ': ' + d;
    }
    return m;
  }
  return text ? text.slice(0, 300) : 'the server gave no message';
}

/**
 * Calls `path` (same origin) and returns its JSON (or text when it is not JSON; null when empty).
 * Options: method, body (an object is sent as JSON, a string as is), signal, credentials (a
 * token overriding the stored one, for the login form).
 */
export async function request(path, opts = {}) {
  const headers = { Accept: 'application/json', ...authHeader() };
  if (opts.token) headers.Authorization = 'Basic ' + opts.token;
  let body = opts.body;
  if (body !== undefined && typeof body !== 'string') body = JSON.stringify(body);
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(path, { method: opts.method || 'GET', headers, body, signal: opts.signal });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, `cannot reach the cluster: ${e.message}`);
  }
  const text = await response.text();
  let json = null;
  if (text) {
    try {
      json = JSON.parse(text);
    } catch (_) {
      json = undefined;
    }
  }
  if (!response.ok) {
    if (response.status === 401 && !opts.token) unauthorized();
    throw new ApiError(response.status, messageOf(response.status, json, text), json);
  }
  return json === undefined ? text : json;
}

/** `path` with the query `params` (empty and null values left out). */
export function withQuery(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

/**
 * Follows the Server-Sent Events at `path`, calling `onEvent(name, data)` per event (data parsed
 * as JSON when it is JSON). Reconnects after a failure (the delay doubles up to 30 s) until
 * `signal` aborts. `onState(ok, error)` is told when the stream opens or fails.
 */
export function stream(path, onEvent, signal, onState = () => {}) {
  let delayMs = 1000;
  const run = async () => {
    while (!signal.aborted) {
      try {
        const response = await fetch(path, {
          headers: { Accept: 'text/event-stream', ...authHeader() },
          signal,
        });
        if (!response.ok) {
          if (response.status === 401) unauthorized();
          const text = await response.text();
          let json = null;
          try {
            json = JSON.parse(text);
          } catch (_) {}
          throw new ApiError(response.status, messageOf(response.status, json, text), json);
        }
        onState(true, null);
        delayMs = 1000;
        const reader = response.body.getReader();
        const decoder = new TextDecoder();
        let buffer = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, '\n');
          let end;
          while ((end = buffer.indexOf('\n\n')) >= 0) {
            const frame = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            dispatchFrame(frame, onEvent);
          }
        }
        throw new ApiError(0, 'the event stream ended');
      } catch (e) {
        if (signal.aborted) return;
        onState(false, e);
        await new Promise((resolve) => setTimeout(resolve, delayMs));
        delayMs = Math.min(delayMs * 2, 30000);
      }
    }
  };
  run();
}

function dispatchFrame(frame, onEvent) {
  let name = 'message';
  const data = [];
  for (const line of frame.split('\n')) {
    if (line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') name = value;
    else if (field === 'data') data.push(value);
  }
  if (data.length === 0) return;
  const text = data.join('\n');
  let parsed = text;
  try {
    parsed = JSON.parse(text);
  } catch (_) {}
  onEvent(name, parsed);
}

/**
 * Downloads `path` as a file. A plain link cannot carry credentials, so with credentials the file
 * is fetched and handed to the browser as a blob.
 */
export async function download(path, filename) {
  const response = await fetch(path, { headers: authHeader() });
  if (!response.ok) throw new ApiError(response.status, `download failed: HTTP ${response.status}`);
  const blob = await response.blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = filename;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// The summary's services (Marathon's framework id...), asked once and shared by the pages.
let summaryPromise = null;
export function services() {
  if (!summaryPromise) {
    summaryPromise = request('/ui/api/summary').catch((e) => {
      summaryPromise = null;
      throw e;
    });
  }
  return summaryPromise;
}
