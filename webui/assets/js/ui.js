// Shared pieces of the pages: the page frame (`main#page` with data-page/data-loaded), errors,
// the confirmation dialog, paging, formatting and the data hooks.

import { html, useState, useEffect, useRef, useCallback } from '../vendor/preact-htm.module.js';
import { request, stream } from './api.js';

export { html, useState, useEffect, useRef, useCallback };

/** The page frame every route renders: the tests wait for data-loaded="true". */
export function Page({ name, loaded, title, actions, children }) {
  return html`<main id="page" data-page=${name} data-loaded=${loaded ? 'true' : 'false'}>
    ${title && html`<div class="page-head"><h1>${title}</h1><div class="actions">${actions}</div></div>`}
    ${children}
  </main>`;
}

/** An API error, with its message. */
export function ErrorBox({ error }) {
  if (!error) return null;
  const status = error.status ? ` (HTTP ${error.status})` : '';
  return html`<div class="error" data-testid="error" role="alert">${error.message}${status}</div>`;
}

/**
 * Calls `load(signal)` when `deps` change and again on `reload()`; keeps the last data while a new
 * call runs. `loaded` turns true at the first answer (data or error) and stays true.
 */
export function useData(load, deps) {
  const [state, setState] = useState({ data: null, error: null, loaded: false });
  const [tick, setTick] = useState(0);
  useEffect(() => {
    const controller = new AbortController();
    load(controller.signal).then(
      (data) => {
        if (!controller.signal.aborted) setState({ data, error: null, loaded: true });
      },
      (error) => {
        if (!controller.signal.aborted && error.name !== 'AbortError')
          setState((s) => ({ data: s.data, error, loaded: true }));
      },
    );
    return () => controller.abort();
  }, [...deps, tick]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { ...state, reload };
}

/** Calls `f` every `ms` while mounted. */
export function useInterval(f, ms) {
  const saved = useRef(f);
  saved.current = f;
  useEffect(() => {
    const id = setInterval(() => saved.current(), ms);
    return () => clearInterval(id);
  }, [ms]);
}

/** Follows an SSE stream while mounted; `onEvent(name, data)`. Returns the stream's error. */
export function useStream(path, onEvent) {
  const saved = useRef(onEvent);
  saved.current = onEvent;
  const [error, setError] = useState(null);
  useEffect(() => {
    if (!path) return undefined;
    const controller = new AbortController();
    stream(path, (n, d) => saved.current(n, d), controller.signal, (ok, e) => setError(ok ? null : e));
    return () => controller.abort();
  }, [path]);
  return error;
}

/** A function that calls `f` once, `ms` after the last of a burst of calls. */
export function useDebounced(f, ms) {
  const saved = useRef(f);
  saved.current = f;
  const timer = useRef(null);
  useEffect(() => () => clearTimeout(timer.current), []);
  return useCallback(() => {
    clearTimeout(timer.current);
    timer.current = setTimeout(() => saved.current(), ms);
  }, [ms]);
}

/**
 * Marathon's events (`/v2/events` through the proxy): `onChange` is called, debounced, after any
 * event, so that a page refetches what it shows instead of polling.
 */
export function useMarathonEvents(onChange) {
  const debounced = useDebounced(onChange, 400);
  const error = useStream('/ui/proxy/marathon/v2/events', (name) => {
    if (name !== 'event_stream_attached' && name !== 'event_stream_detached') debounced();
  });
  // While the stream is down (it reconnects by itself), fall back to asking every 5 s.
  useInterval(() => {
    if (error) onChange();
  }, 5000);
  return error;
}

/**
 * An in-page confirmation (no window.confirm): `ask(text, action)` opens it; the dialog element
 * is `dialog` in the returned object.
 */
export function useConfirm() {
  const [pending, setPending] = useState(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const ask = (text, action) => {
    setError(null);
    setPending({ text, action });
  };
  const confirm = async () => {
    setBusy(true);
    try {
      await pending.action();
      setPending(null);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  const dialog =
    pending &&
    html`<div class="overlay">
      <div class="dialog" role="dialog" aria-modal="true">
        <p>${pending.text}</p>
        <${ErrorBox} error=${error} />
        <div class="actions">
          <button class="danger" data-testid="confirm" disabled=${busy} onClick=${confirm}>Confirm</button>
          <button data-testid="cancel" onClick=${() => setPending(null)}>Cancel</button>
        </div>
      </div>
    </div>`;
  return { ask, dialog };
}

/** Previous/next for a list asked page by page. */
export function Pager({ offset, limit, total, onOffset }) {
  const last = Math.min(offset + limit, total);
  return html`<div class="pager">
    <button data-testid="prev-page" disabled=${offset === 0} onClick=${() => onOffset(Math.max(0, offset - limit))}>‹ Previous</button>
    <span>${total === 0 ? 'none' : `${offset + 1}–${last} of ${total}`}</span>
    <button data-testid="next-page" disabled=${last >= total} onClick=${() => onOffset(offset + limit)}>Next ›</button>
  </div>`;
}

export const fmt = {
  cpus: (x) => (x === undefined || x === null ? '–' : Number(x).toFixed(x >= 10 ? 1 : 2).replace(/\.?0+$/, '') || '0'),
  mb: (x) => {
    if (x === undefined || x === null) return '–';
    if (x >= 1024 * 1024) return (x / 1024 / 1024).toFixed(1) + ' TB';
    if (x >= 1024) return (x / 1024).toFixed(1) + ' GB';
    return Math.round(x) + ' MB';
  },
  bytes: (x) => {
    if (x === undefined || x === null) return '–';
    const units = ['B', 'KB', 'MB', 'GB', 'TB'];
    let i = 0;
    while (x >= 1024 && i < units.length - 1) {
      x /= 1024;
      i += 1;
    }
    return (i === 0 ? x : x.toFixed(1)) + ' ' + units[i];
  },
  // Seconds since the epoch, or an ISO string, as a local date and time.
  time: (t) => {
    if (t === undefined || t === null || t === '') return '–';
    const d = typeof t === 'number' ? new Date(t * 1000) : new Date(t);
    return isNaN(d.getTime()) ? String(t) : d.toLocaleString();
  },
  duration: (secs) => {
    if (secs === undefined || secs === null) return '–';
    secs = Math.max(0, Math.round(secs));
    const d = Math.floor(secs / 86400);
    const h = Math.floor((secs % 86400) / 3600);
    const m = Math.floor((secs % 3600) / 60);
    const s = secs % 60;
    if (d) return `${d}d ${h}h`;
    if (h) return `${h}h ${m}m`;
    if (m) return `${m}m ${s}s`;
    return `${s}s`;
  },
  pct: (part, whole) => (whole ? Math.round((100 * part) / whole) + '%' : '–'),
};

/** A used/total bar. */
export function Bar({ used, total, label }) {
  const p = total ? Math.min(100, (100 * used) / total) : 0;
  return html`<div class="bar" title=${label}><div class="fill" style=${`width:${p}%`}></div><span>${label}</span></div>`;
}

/** A state badge (TASK_RUNNING, active, ...). */
export function Badge({ state }) {
  const s = String(state || '').toLowerCase().replace(/^task_/, '');
  return html`<span class=${'badge ' + s}>${s || '–'}</span>`;
}

/** Hash link. */
export function href(...parts) {
  return '#/' + parts.map((p) => String(p).split('/').map(encodeURIComponent).join('/')).join('/');
}

/** Navigates to a route. */
export function go(hash) {
  location.hash = hash;
}

/** Fetches JSON; a thin alias so pages read as `get(path)`. */
export const get = (path, signal) => request(path, { signal });
