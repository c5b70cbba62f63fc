// Chronos through /ui/proxy/chronos: jobs with their last success/error and next run; the new and
// edit form (a job with parents is posted to /dependency, else to /iso8601); run now, disable,
// delete; a job's page with its run history (/job/stat/{name}); the dependency graph laid out by
// dagre and drawn as SVG.

import { html, useState, Page, ErrorBox, useData, useInterval, useConfirm, fmt, Badge, href, go, get } from './ui.js';
import { request } from './api.js';

const C = '/ui/proxy/chronos/v1/scheduler';

/** The next run of a job: the start of its ISO 8601 schedule (Chronos moves it on each run). */
function nextRun(job) {
  if (job.disabled) return 'disabled';
  if ((job.parents || []).length) return 'after ' + job.parents.join(', ');
  const parts = String(job.schedule || '').split('/');
  if (parts.length < 3) return job.schedule || '–';
  if (parts[0] === 'R0') return 'no more runs';
  return parts[1] ? fmt.time(parts[1]) : 'now';
}

function lastStatus(job) {
  if (!job.lastSuccess && !job.lastError) return 'fresh';
  if (!job.lastError) return 'success';
  if (!job.lastSuccess) return 'failure';
  return new Date(job.lastSuccess) >= new Date(job.lastError) ? 'success' : 'failure';
}

/** Posts `job` to /dependency when it has parents, else to /iso8601. */
function save(job) {
  const kind = (job.parents || []).length ? 'dependency' : 'iso8601';
  return request(`${C}/${kind}`, { method: 'POST', body: job });
}

const jobPath = (name) => `${C}/job/${encodeURIComponent(name)}`;

export function JobsPage() {
  const jobs = useData((signal) => get(`${C}/jobs`, signal), []);
  const summary = useData((signal) => get(`${C}/jobs/summary`, signal).catch(() => null), []);
  useInterval(() => { jobs.reload(); summary.reload(); }, 5000);
  const { ask, dialog } = useConfirm();
  const [error, setError] = useState(null);
  const [filter, setFilter] = useState('');
  const states = {};
  for (const j of (summary.data && summary.data.jobs) || []) states[j.name] = j.state;
  const list = (Array.isArray(jobs.data) ? jobs.data : []).filter((j) => j.name.includes(filter))
    .sort((a, b) => a.name.localeCompare(b.name));
  const act = (f) => f().then(() => { setError(null); jobs.reload(); summary.reload(); }, setError);
  return html`<${Page} name="jobs" loaded=${jobs.loaded} title="Chronos jobs"
      actions=${html`<a class="button" href="#/chronos/graph">Graph</a> <a class="button primary" data-testid="job-new" href="#/chronos/new">New job</a>`}>
    <div class="toolbar"><input type="search" data-testid="filter" placeholder="Filter by name" value=${filter} onInput=${(e) => setFilter(e.target.value)} /></div>
    <${ErrorBox} error=${jobs.error} />
    <${ErrorBox} error=${error} />
    ${dialog}
    <table class="grid">
      <thead><tr><th>Name</th><th>Last</th><th>State</th><th>Last success</th><th>Last error</th><th>Runs ok / failed</th><th>Next run</th><th></th></tr></thead>
      <tbody>
        ${list.map((j) => html`<tr data-job=${j.name} class=${j.disabled ? 'disabled' : ''}>
          <td><a href=${href('chronos', 'jobs', j.name)}>${j.name}</a></td>
          <td><${Badge} state=${lastStatus(j)} /></td>
          <td>${states[j.name] || '–'}</td>
          <td data-testid="last-success">${fmt.time(j.lastSuccess)}</td>
          <td data-testid="last-error">${fmt.time(j.lastError)}</td>
          <td>${j.successCount || 0} / ${j.errorCount || 0}</td>
          <td data-testid="next-run">${nextRun(j)}</td>
          <td class="actions">
            <button data-testid="job-run" onClick=${() => act(() => request(jobPath(j.name), { method: 'PUT' }))}>Run now</button>
            <button data-testid="job-disable" onClick=${() => act(() => save({ ...j, disabled: !j.disabled }))}>${j.disabled ? 'Enable' : 'Disable'}</button>
            <a class="button" data-testid="job-edit" href=${href('chronos', 'edit', j.name)}>Edit</a>
            <button class="danger" data-testid="job-delete" onClick=${() => ask(`Delete job ${j.name}?`, () => request(jobPath(j.name), { method: 'DELETE' }).then(() => { jobs.reload(); summary.reload(); }))}>Delete</button>
          </td>
        </tr>`)}
        ${jobs.loaded && list.length === 0 && html`<tr><td colspan="8" class="muted">no job</td></tr>`}
      </tbody>
    </table>
  </${Page}>`;
}

function defaultSchedule() {
  const start = new Date(Date.now() + 60000);
  start.setUTCSeconds(0, 0);
  return `R/${start.toISOString().replace('.000Z', 'Z')}/PT1H`;
}

function JobForm({ job }) {
  const [fields, setFields] = useState({
    name: (job && job.name) || '',
    command: (job && job.command) || '',
    schedule: (job && job.schedule) || (job ? '' : defaultSchedule()),
    parents: ((job && job.parents) || []).join(', '),
    owner: (job && job.owner) || '',
    cpus: String((job && job.cpus) ?? 0.1),
    mem: String((job && job.mem) ?? 128),
  });
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const set = (k) => (e) => setFields({ ...fields, [k]: e.target.value });
  const parents = fields.parents.split(',').map((p) => p.trim()).filter((p) => p);
  const submit = async (e) => {
    e.preventDefault();
    // The inputs' current values (not the last rendered state: a fast client may type and submit at once).
    const now = { ...fields, ...Object.fromEntries(new FormData(e.target)) };
    const parents = now.parents.split(',').map((p) => p.trim()).filter((p) => p);
    const body = { ...(job || {}), name: now.name.trim(), command: now.command, owner: now.owner,
      cpus: Number(now.cpus), mem: Number(now.mem) };
    if (parents.length) {
      body.parents = parents;
      delete body.schedule;
    } else {
      body.schedule = now.schedule.trim();
      delete body.parents;
    }
    setBusy(true);
    setError(null);
    try {
      await save(body);
      go(href('chronos', 'jobs', body.name));
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return html`<form class="form" data-testid="job-form" onSubmit=${submit}>
    <label>Name <input name="name" value=${fields.name} onInput=${set('name')} readonly=${!!job} required /></label>
    <label>Command <textarea name="command" rows="3" value=${fields.command} onInput=${set('command')} required></textarea></label>
    <label>Parents (comma separated; a job with parents runs after them instead of on a schedule)
      <input name="parents" value=${fields.parents} onInput=${set('parents')} placeholder="extract, load" /></label>
    <label>Schedule (ISO 8601 repeating interval: R[n]/start/period)
      <input name="schedule" value=${fields.schedule} onInput=${set('schedule')} disabled=${parents.length > 0} placeholder="R/2030-01-01T00:00:00Z/PT24H" /></label>
    <div class="row">
      <label>Owner <input name="owner" type="email" value=${fields.owner} onInput=${set('owner')} placeholder="ops@example.com" /></label>
      <label>CPUs <input name="cpus" type="number" step="0.01" min="0" value=${fields.cpus} onInput=${set('cpus')} /></label>
      <label>Memory (MB) <input name="mem" type="number" step="1" min="0" value=${fields.mem} onInput=${set('mem')} /></label>
    </div>
    <${ErrorBox} error=${error} />
    <div class="actions">
      <button type="submit" class="primary" data-testid="job-submit" disabled=${busy}>${job ? 'Change' : 'Create'}</button>
      <a class="button" href=${job ? href('chronos', 'jobs', job.name) : '#/chronos'}>Cancel</a>
    </div>
  </form>`;
}

/** The job named `name` (Chronos' search, narrowed to the exact name). */
async function findJob(name, signal) {
  const found = await get(`${C}/jobs/search?name=${encodeURIComponent(name)}`, signal);
  const job = (found || []).find((j) => j.name === name);
  if (!job) {
    const e = new Error(`no job named ${name}`);
    e.status = 404;
    throw e;
  }
  return job;
}

export function JobNewPage() {
  return html`<${Page} name="job-new" loaded=${true} title="New job"><${JobForm} job=${null} /></${Page}>`;
}

export function JobEditPage({ name }) {
  const job = useData((signal) => findJob(name, signal), [name]);
  return html`<${Page} name="job-edit" loaded=${job.loaded} title=${`Edit ${name}`}>
    <${ErrorBox} error=${job.error} />
    ${job.data && html`<${JobForm} job=${job.data} />`}
  </${Page}>`;
}

export function JobPage({ name }) {
  const job = useData((signal) => findJob(name, signal), [name]);
  const stat = useData((signal) => get(`${C}/job/stat/${encodeURIComponent(name)}`, signal), [name]);
  useInterval(() => { job.reload(); stat.reload(); }, 5000);
  const { ask, dialog } = useConfirm();
  const [error, setError] = useState(null);
  const j = job.data;
  const h = (stat.data && stat.data.histogram) || null;
  const history = [...((stat.data && stat.data.taskStatHistory) || [])].reverse();
  const act = (f) => f().then(() => { setError(null); job.reload(); stat.reload(); }, setError);
  const actions = j && html`
    <button data-testid="job-run" onClick=${() => act(() => request(jobPath(name), { method: 'PUT' }))}>Run now</button>
    <button data-testid="job-disable" onClick=${() => act(() => save({ ...j, disabled: !j.disabled }))}>${j.disabled ? 'Enable' : 'Disable'}</button>
    <a class="button" data-testid="job-edit" href=${href('chronos', 'edit', name)}>Edit</a>
    <button class="danger" data-testid="job-delete" onClick=${() => ask(`Delete job ${name}?`, async () => {
      await request(jobPath(name), { method: 'DELETE' });
      go('#/chronos');
    })}>Delete</button>`;
  return html`<${Page} name="job" loaded=${job.loaded} title=${`Job ${name}`} actions=${actions}>
    <${ErrorBox} error=${job.error} />
    <${ErrorBox} error=${error} />
    ${dialog}
    ${j && html`<section class="cols">
      <table class="grid narrow kv"><tbody>
        <tr><th>Command</th><td class="mono small">${j.command}</td></tr>
        <tr><th>Schedule</th><td>${(j.parents || []).length ? html`after ${j.parents.map((p) => html`<a href=${href('chronos', 'jobs', p)}>${p}</a> `)}` : j.schedule}</td></tr>
        <tr><th>Next run</th><td data-testid="next-run">${nextRun(j)}</td></tr>
        <tr><th>Last</th><td><${Badge} state=${lastStatus(j)} />${j.disabled ? ' (disabled)' : ''}</td></tr>
        <tr><th>Successes</th><td data-testid="success-count">${j.successCount || 0} · last ${fmt.time(j.lastSuccess)}</td></tr>
        <tr><th>Errors</th><td data-testid="error-count">${j.errorCount || 0} · last ${fmt.time(j.lastError)}${j.errorsSinceLastSuccess ? ` · ${j.errorsSinceLastSuccess} since the last success` : ''}</td></tr>
        <tr><th>Owner</th><td>${j.owner || '–'}</td></tr>
        <tr><th>Resources</th><td>${fmt.cpus(j.cpus)} CPUs · ${fmt.mb(j.mem)} · disk ${fmt.mb(j.disk)}</td></tr>
        <tr><th>Retries, epsilon</th><td>${j.retries ?? '–'} · ${j.epsilon || '–'}</td></tr>
      </tbody></table>
      ${h && html`<table class="grid narrow kv"><tbody>
        <tr><th>Runs measured</th><td>${h.count}</td></tr>
        <tr><th>Mean</th><td>${fmt.duration(h.mean / 1000)}</td></tr>
        <tr><th>Median</th><td>${fmt.duration(h.median / 1000)}</td></tr>
        <tr><th>75th / 95th / 99th</th><td>${fmt.duration(h['75thPercentile'] / 1000)} / ${fmt.duration(h['95thPercentile'] / 1000)} / ${fmt.duration(h['99thPercentile'] / 1000)}</td></tr>
      </tbody></table>`}
    </section>`}
    <section>
      <h2>Run history</h2>
      <${ErrorBox} error=${stat.error} />
      <table class="grid">
        <thead><tr><th>Task</th><th>Agent</th><th>Started (UTC)</th><th>Ended (UTC)</th><th>Duration</th><th>Status</th></tr></thead>
        <tbody>
          ${history.map((r) => html`<tr data-run=${r.taskId}>
            <td class="mono small">${r.taskId}</td>
            <td>${r.slaveId ? html`<a href=${href('agents', r.slaveId)}>${r.slaveId}</a>` : '–'}</td>
            <td>${r.startTime}</td><td>${r.endTime}</td><td>${r.duration || '–'}</td>
            <td><${Badge} state=${String(r.status).toLowerCase() === 'fail' ? 'failure' : r.status} /></td>
          </tr>`)}
          ${stat.loaded && history.length === 0 && html`<tr><td colspan="6" class="muted">no run recorded</td></tr>`}
        </tbody>
      </table>
    </section>
  </${Page}>`;
}

const NODE_HEIGHT = 36;

/** Lays out the jobs with dagre: parents left of their children. */
function layout(jobs) {
  const g = new window.dagre.graphlib.Graph();
  g.setGraph({ rankdir: 'LR', nodesep: 24, ranksep: 70, marginx: 16, marginy: 16 });
  g.setDefaultEdgeLabel(() => ({}));
  const names = new Set(jobs.map((j) => j.name));
  for (const j of jobs) g.setNode(j.name, { width: Math.max(90, 8 * j.name.length + 28), height: NODE_HEIGHT, job: j });
  const edges = [];
  for (const j of jobs) {
    for (const p of j.parents || []) {
      if (!names.has(p)) g.setNode(p, { width: Math.max(90, 8 * p.length + 28), height: NODE_HEIGHT, job: null });
      g.setEdge(p, j.name);
      edges.push([p, j.name]);
    }
  }
  window.dagre.layout(g);
  const nodes = g.nodes().map((n) => ({ name: n, ...g.node(n) }));
  const lines = edges.map(([v, w]) => ({ v, w, points: g.edge(v, w).points }));
  return { nodes, lines, width: g.graph().width || 0, height: g.graph().height || 0 };
}

export function GraphPage() {
  const jobs = useData((signal) => get(`${C}/jobs`, signal), []);
  useInterval(() => jobs.reload(), 10000);
  const list = Array.isArray(jobs.data) ? jobs.data : [];
  let graph = null;
  let error = jobs.error;
  if (list.length) {
    try {
      graph = layout(list);
    } catch (e) {
      error = { message: `cannot lay out the graph: ${e.message}` };
    }
  }
  return html`<${Page} name="graph" loaded=${jobs.loaded} title="Job dependencies">
    <${ErrorBox} error=${error} />
    ${jobs.loaded && list.length === 0 && html`<p class="muted">no job</p>`}
    ${graph && html`<div class="graph">
      <svg data-testid="graph" width=${graph.width} height=${graph.height} viewBox=${`0 0 ${graph.width} ${graph.height}`}>
        <defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse">
          <path d="M 0 0 L 10 5 L 0 10 z" fill="#6b7785" /></marker></defs>
        ${graph.lines.map((e) => html`<g data-edge=${`${e.v}->${e.w}`} class="edge">
          <path d=${'M ' + e.points.map((p) => `${p.x} ${p.y}`).join(' L ')} marker-end="url(#arrow)" /></g>`)}
        ${graph.nodes.map((n) => {
          const state = n.job ? (n.job.disabled ? 'disabled' : lastStatus(n.job)) : 'missing';
          return html`<g data-node=${n.name} class=${'node ' + state} transform=${`translate(${n.x - n.width / 2},${n.y - n.height / 2})`}
              onClick=${() => n.job && go(href('chronos', 'jobs', n.name))}>
            <rect width=${n.width} height=${n.height} rx="6" />
            <text x=${n.width / 2} y=${n.height / 2 + 5} text-anchor="middle">${n.name}</text>
          </g>`;
        })}
      </svg>
    </div>
    <p class="legend"><span class="key success"></span> last run succeeded <span class="key failure"></span> failed <span class="key fresh"></span> never ran <span class="key disabled"></span> disabled</p>`}
  </${Page}>`;
}
