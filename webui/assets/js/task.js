// A task's page: its state history and health (/ui/api/tasks?framework_id&task_id), the resources
// it uses (the agent's /monitor/statistics, through the agent proxy), and its sandbox (the agent's
// /state names the directory; /files/browse lists it; stdout and stderr follow the files live by
// reading /files/read from the last offset every second).

import { html, useState, useEffect, useRef, Page, ErrorBox, useData, useInterval, useStream, fmt, Badge, href, get } from './ui.js';
import { withQuery, download, ApiError } from './api.js';

const TAIL_START_BYTES = 64 * 1024; // shown of a log at first
const READ_CHUNK_BYTES = 256 * 1024; // asked per /files/read
const TAIL_KEEP_CHARS = 512 * 1024; // kept in the page (older text is dropped)

function agentPath(agentId, path) {
  return `/ui/proxy/agent/${encodeURIComponent(agentId)}${path}`;
}

/** The sandbox directory of `taskId` from the agent's /state (executor id = task id). */
function sandboxOf(state, frameworkId, taskId) {
  const frameworks = [...(state.frameworks || []), ...(state.completed_frameworks || [])];
  let found = null;
  for (const f of frameworks) {
    for (const e of [...(f.executors || []), ...(f.completed_executors || [])]) {
      const matches = e.id === taskId || (e.tasks || []).concat(e.completed_tasks || []).some((t) => t.id === taskId);
      if (matches && (f.id === frameworkId || !found)) found = e.directory;
    }
  }
  return found;
}

function Usage({ agentId, frameworkId, taskId }) {
  const [usage, setUsage] = useState(null);
  const [error, setError] = useState(null);
  const previous = useRef(null);
  const poll = async () => {
    try {
      const all = await get(agentPath(agentId, '/monitor/statistics'));
      const mine = (all || []).find((x) => x.executor_id === taskId && (!x.framework_id || x.framework_id === frameworkId));
      if (!mine) {
        setUsage(null);
        setError(null);
        return;
      }
      const s = mine.statistics || {};
      const cpuSecs = (s.cpus_user_time_secs || 0) + (s.cpus_system_time_secs || 0);
      let cpuRate = null;
      if (previous.current && s.timestamp > previous.current.timestamp) {
        cpuRate = (cpuSecs - previous.current.cpuSecs) / (s.timestamp - previous.current.timestamp);
      }
      previous.current = { cpuSecs, timestamp: s.timestamp };
      setUsage({ ...s, cpuSecs, cpuRate });
      setError(null);
    } catch (e) {
      setError(e);
    }
  };
  useEffect(() => {
    poll();
  }, []);
  useInterval(poll, 3000);
  return html`<section>
    <h2>Resources used</h2>
    <${ErrorBox} error=${error} />
    <div data-testid="task-usage">
      ${usage
        ? html`<table class="grid narrow kv"><tbody>
            <tr><th>CPU</th><td>${usage.cpuRate === null ? 'measuring…' : `${usage.cpuRate.toFixed(3)} of ${fmt.cpus(usage.cpus_limit)} CPUs`}
              <span class="muted"> (${usage.cpuSecs.toFixed(2)} s user+system)</span></td></tr>
            <tr><th>Memory</th><td>${fmt.bytes(usage.mem_rss_bytes)} of ${fmt.bytes(usage.mem_limit_bytes)}</td></tr>
            <tr><th>Sampled</th><td>${fmt.time(usage.timestamp)}</td></tr>
          </tbody></table>`
        : html`<p class="muted">no statistics (the task is not running on its agent)</p>`}
    </div>
  </section>`;
}

/** Follows `path` on the agent: the end of the file at first, then what is appended. */
function Tail({ agentId, path, name }) {
  const [text, setText] = useState('');
  const [error, setError] = useState(null);
  const offset = useRef(null);
  const busy = useRef(false);
  const pre = useRef(null);
  const read = async () => {
    if (busy.current) return;
    busy.current = true;
    try {
      if (offset.current === null) {
        const size = await get(agentPath(agentId, withQuery('/files/read', { path, offset: -1 })));
        offset.current = Math.max(0, (size.offset || 0) - TAIL_START_BYTES);
      }
      let appended = '';
      for (let i = 0; i < 16; i++) {
        const chunk = await get(agentPath(agentId, withQuery('/files/read', { path, offset: offset.current, length: READ_CHUNK_BYTES })));
        const data = chunk.data || '';
        if (data.length === 0) break;
        appended += data;
        offset.current = chunk.offset + new TextEncoder().encode(data).length;
        if (data.length < READ_CHUNK_BYTES) break;
      }
      if (appended) {
        const el = pre.current;
        const atBottom = !el || el.scrollTop + el.clientHeight >= el.scrollHeight - 8;
        setText((t) => {
          const all = t + appended;
          return all.length > TAIL_KEEP_CHARS ? all.slice(all.length - TAIL_KEEP_CHARS) : all;
        });
        if (atBottom) setTimeout(() => { if (pre.current) pre.current.scrollTop = pre.current.scrollHeight; }, 0);
      }
      setError(null);
    } catch (e) {
      setError(e);
    } finally {
      busy.current = false;
    }
  };
  useEffect(() => {
    read();
  }, []);
  useInterval(read, 1000);
  const url = agentPath(agentId, withQuery('/files/download', { path }));
  const onDownload = (e) => {
    e.preventDefault();
    download(url, name).catch(setError);
  };
  return html`<div class="tail">
    <div class="tail-head"><h3>${name}</h3>
      <a data-testid=${'download-' + name} href=${url} download=${name} onClick=${onDownload}>Download</a></div>
    <${ErrorBox} error=${error} />
    <pre data-testid=${name} ref=${pre}>${text}</pre>
  </div>`;
}

function Sandbox({ agentId, frameworkId, taskId }) {
  const sandbox = useData(async (signal) => {
    const state = await get(agentPath(agentId, '/state'), signal);
    const dir = sandboxOf(state, frameworkId, taskId);
    if (!dir) throw new ApiError(404, `the agent does not know the sandbox of ${taskId}`);
    return dir;
  }, [agentId]);
  const root = sandbox.data;
  const [dir, setDir] = useState(null);
  const current = dir || root;
  const listing = useData(
    (signal) => (current ? get(agentPath(agentId, withQuery('/files/browse', { path: current })), signal) : Promise.resolve(null)),
    [current],
  );
  const entries = [...(listing.data || [])].sort((a, b) => a.path.localeCompare(b.path));
  const base = (p) => p.slice(p.lastIndexOf('/') + 1);
  const isDir = (e) => String(e.mode || '').startsWith('d');
  return html`<section>
    <h2>Sandbox</h2>
    <${ErrorBox} error=${sandbox.error} />
    ${root && html`
      <p class="mono small" data-testid="sandbox-path">${current}
        ${current !== root && html` <button class="link" onClick=${() => setDir(current.slice(0, current.lastIndexOf('/')) || root)}>up</button>`}</p>
      <${ErrorBox} error=${listing.error} />
      <table class="grid">
        <thead><tr><th>Name</th><th>Mode</th><th>Size</th><th>Modified</th><th></th></tr></thead>
        <tbody>
          ${entries.map((e) => {
            const name = base(e.path);
            const url = agentPath(agentId, withQuery('/files/download', { path: e.path }));
            return html`<tr data-file=${name}>
              <td>${isDir(e) ? html`<button class="link" onClick=${() => setDir(e.path)}>${name}/</button>` : name}</td>
              <td class="mono small">${e.mode}</td><td>${fmt.bytes(e.size)}</td><td>${fmt.time(e.mtime)}</td>
              <td>${!isDir(e) && html`<a href=${url} download=${name} onClick=${(ev) => { ev.preventDefault(); download(url, name).catch(() => {}); }}>download</a>`}</td>
            </tr>`;
          })}
        </tbody>
      </table>
      <div class="tails">
        <${Tail} agentId=${agentId} path=${root + '/stdout'} name="stdout" />
        <${Tail} agentId=${agentId} path=${root + '/stderr'} name="stderr" />
      </div>`}
  </section>`;
}

export function TaskPage({ frameworkId, taskId }) {
  const task = useData(
    (signal) => get(withQuery('/ui/api/tasks', { framework_id: frameworkId, task_id: taskId }), signal),
    [frameworkId, taskId],
  );
  // The task's state changes come as events; refetch when one is about this task.
  const t = task.data && (task.data.tasks ? task.data.tasks[0] : task.data);
  useStream('/ui/api/events', (name, data) => {
    if (name === 'task' && data && data.task_id === taskId) task.reload();
  });
  const statuses = (t && t.statuses) || [];
  // The task's health: its own field, else the last status that carried one.
  let health = t && t.healthy;
  if (t && (health === undefined || health === null)) {
    const last = [...statuses].reverse().find((s) => s.healthy === true || s.healthy === false);
    health = last ? last.healthy : null;
  }
  return html`<${Page} name="task" loaded=${task.loaded} title=${`Task ${taskId}`}>
    <${ErrorBox} error=${task.error} />
    ${t && html`
      <section class="cols">
        <table class="grid narrow kv"><tbody>
          <tr><th>State</th><td><${Badge} state=${t.state} /> <span data-testid="task-state" data-state=${t.state}>${t.state}</span></td></tr>
          <tr><th>Health</th><td data-testid="task-health" data-healthy=${health === true ? 'true' : health === false ? 'false' : ''}>
            ${health === true ? 'healthy' : health === false ? 'unhealthy' : 'no health check result'}</td></tr>
          <tr><th>Name</th><td>${t.name}</td></tr>
          <tr><th>Framework</th><td>${t.framework_name || ''} <span class="mono small">${t.framework_id}</span></td></tr>
          <tr><th>Agent</th><td><a href=${href('agents', t.slave_id)}>${t.agent_hostname || t.slave_id}</a></td></tr>
          <tr><th>Resources</th><td>${fmt.cpus(t.resources && t.resources.cpus)} CPUs · ${fmt.mb(t.resources && t.resources.mem)} · disk ${fmt.mb(t.resources && t.resources.disk)}${t.resources && t.resources.ports ? ` · ports ${t.resources.ports}` : ''}</td></tr>
          ${(t.labels && t.labels.labels || []).map((l) => html`<tr><th>label ${l.key}</th><td>${l.value}</td></tr>`)}
        </tbody></table>
        <div>
          <h2>State history</h2>
          <ol class="history">
            ${statuses.map((s) => html`<li data-state=${s.state}><${Badge} state=${s.state} /> ${fmt.time(s.timestamp)}
              ${s.healthy !== undefined && s.healthy !== null ? (s.healthy ? ' · healthy' : ' · unhealthy') : ''}${s.message ? ` · ${s.message}` : ''}</li>`)}
          </ol>
        </div>
      </section>
      <${Usage} agentId=${t.slave_id} frameworkId=${frameworkId} taskId=${taskId} />
      <${Sandbox} agentId=${t.slave_id} frameworkId=${frameworkId} taskId=${taskId} />`}
  </${Page}>`;
}

