// The cluster page (counts from /ui/api/summary kept live by the summary events; charts of the
// last hour from /ui/api/history) and the frameworks page.

import { html, useState, useEffect, useRef, Page, ErrorBox, useData, useStream, fmt, Bar, Badge, get } from './ui.js';
import { TaskTable } from './agents.js';

const HOUR_SECS = 3600;

/**
 * A uPlot time series chart. `series`: [{label, color}], `data`: [times, ...values]. The chart is
 * made once and fed with setData afterwards.
 */
function Chart({ testid, title, series, data, unit }) {
  const box = useRef(null);
  const plot = useRef(null);
  useEffect(() => {
    const width = Math.max(280, box.current.clientWidth || 400);
    const opts = {
      title,
      width,
      height: 180,
      padding: [8, 28, 0, 0],
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(max * 1.1, 1)] } },
      axes: [
        { space: 70, values: (u, ticks) => ticks.map((t) => new Date(t * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })) },
        { values: (u, ticks) => ticks.map((v) => (unit ? unit(v) : v)), size: 72 }],
      series: [{}, ...series.map((s) => ({ label: s.label, stroke: s.color, width: 2, fill: s.fill }))],
      legend: { show: true },
    };
    plot.current = new window.uPlot(opts, data, box.current);
    const onResize = () => {
      if (plot.current && box.current) plot.current.setSize({ width: Math.max(280, box.current.clientWidth), height: 180 });
    };
    window.addEventListener('resize', onResize);
    return () => {
      window.removeEventListener('resize', onResize);
      plot.current.destroy();
      plot.current = null;
    };
  }, []);
  useEffect(() => {
    if (plot.current) plot.current.setData(data);
  }, [data]);
  return html`<div class="chart" data-testid=${testid} ref=${box}></div>`;
}

// A summary event's counts as a history sample.
function sampleOf(counts, t) {
  const r = counts.resources || {};
  return {
    t,
    cpus_total: r.total && r.total.cpus, cpus_allocated: r.allocated && r.allocated.cpus, cpus_used: r.used && r.used.cpus,
    mem_total: r.total && r.total.mem, mem_allocated: r.allocated && r.allocated.mem, mem_used: r.used && r.used.mem,
    tasks_running: counts.tasks && counts.tasks.running,
  };
}

function columns(samples, keys) {
  return [samples.map((s) => s.t), ...keys.map((k) => samples.map((s) => (s[k] === undefined ? null : s[k])))];
}

function Charts({ samples, error }) {
  const cpu = columns(samples, ['cpus_total', 'cpus_allocated', 'cpus_used']);
  const mem = columns(samples, ['mem_total', 'mem_allocated', 'mem_used']);
  const tasks = columns(samples, ['tasks_running']);
  const three = [
    { label: 'total', color: '#9aa5b1' },
    { label: 'allocated', color: '#2f6fdf', fill: 'rgba(47,111,223,0.08)' },
    { label: 'used', color: '#e8743b', fill: 'rgba(232,116,59,0.12)' },
  ];
  return html`<section>
    <h2>Last hour</h2>
    <${ErrorBox} error=${error} />
    <div class="charts">
      <${Chart} testid="chart-cpu" title="CPUs" series=${three} data=${cpu} />
      <${Chart} testid="chart-mem" title="Memory" series=${three} data=${mem} unit=${fmt.mb} />
      <${Chart} testid="chart-tasks" title="Tasks running" series=${[{ label: 'running', color: '#2a9d8f', fill: 'rgba(42,157,143,0.12)' }]} data=${tasks} />
    </div>
  </section>`;
}

function ResourceRow({ name, r, unit }) {
  const total = (r.total && r.total[name]) || 0;
  const allocated = (r.allocated && r.allocated[name]) || 0;
  const used = (r.used && r.used[name]) || 0;
  const offered = (r.offered && r.offered[name]) || 0;
  return html`<tr>
    <th>${name}</th>
    <td><${Bar} used=${allocated} total=${total} label=${`${unit(allocated)} / ${unit(total)} (${fmt.pct(allocated, total)})`} /></td>
    <td>${unit(used)}</td><td>${unit(offered)}</td>
  </tr>`;
}

export function ClusterPage() {
  const summary = useData((signal) => get('/ui/api/summary', signal), []);
  const history = useData((signal) => get('/ui/api/history', signal), []);
  const [counts, setCounts] = useState(null);
  const [live, setLive] = useState([]);
  const streamError = useStream('/ui/api/events', (name, data) => {
    if (name !== 'summary' || typeof data !== 'object') return;
    setCounts(data);
    const t = Date.now() / 1000;
    setLive((l) => [...l.filter((s) => s.t > t - HOUR_SECS), sampleOf(data, t)]);
  });
  const s = summary.data;
  const c = counts || s;
  const samples = (history.data && history.data.samples) || [];
  const lastHistory = samples.length ? samples[samples.length - 1].t : 0;
  const now = Date.now() / 1000;
  const all = [...samples, ...live.filter((x) => x.t > lastHistory)].filter((x) => x.t > now - HOUR_SECS);
  const loaded = summary.loaded && history.loaded;
  const agents = (c && c.agents) || {};
  const tasks = (c && c.tasks) || {};
  return html`<${Page} name="cluster" loaded=${loaded} title="Cluster">
    <${ErrorBox} error=${summary.error} />
    ${s && html`
      <section class="cards">
        <div class="card"><div class="label">Leader</div><div class="value small" data-testid="leader">${s.leader || 'none elected'}</div>
          <div class="sub">this master ${s.self}${s.elected ? ' (leading)' : ''} · v${s.version} · up ${fmt.duration(s.uptime_secs)}</div></div>
        <div class="card"><div class="label">Agents active</div><div class="value" data-testid="agents-active">${agents.active || 0}</div>
          <div class="sub">${agents.total || 0} total · ${agents.disconnected || 0} disconnected · ${agents.unreachable || 0} unreachable · ${agents.draining || 0} draining · ${agents.down || 0} down</div></div>
        <div class="card"><div class="label">Tasks running</div><div class="value" data-testid="tasks-running">${tasks.running || 0}</div>
          <div class="sub">${tasks.staging || 0} staging · ${tasks.starting || 0} starting · ${tasks.finished || 0} finished · ${tasks.failed || 0} failed · ${tasks.lost || 0} lost</div></div>
        <div class="card"><div class="label">Offers outstanding</div><div class="value" data-testid="offers">${c.offers || 0}</div>
          <div class="sub">${(s.frameworks || []).length} frameworks</div></div>
      </section>
      <section>
        <h2>Resources</h2>
        <table class="grid resources">
          <thead><tr><th></th><th>allocated / total</th><th>used</th><th>offered</th></tr></thead>
          <tbody>
            <${ResourceRow} name="cpus" r=${c.resources || {}} unit=${fmt.cpus} />
            <${ResourceRow} name="mem" r=${c.resources || {}} unit=${fmt.mb} />
            <${ResourceRow} name="disk" r=${c.resources || {}} unit=${fmt.mb} />
          </tbody>
        </table>
      </section>`}
    <${Charts} samples=${all} error=${history.error} />
    ${streamError && html`<p class="muted">Live updates paused: ${streamError.message}</p>`}
    ${s && html`<${FrameworkTable} frameworks=${s.frameworks || []} />
      <${RoleTable} roles=${s.roles || []} />
      <${Services} services=${s.services || {}} />`}
  </${Page}>`;
}

function FrameworkTable({ frameworks, onPick, picked }) {
  return html`<section>
    <h2>Frameworks</h2>
    <table class="grid">
      <thead><tr><th>Name</th><th>ID</th><th>Role</th><th>Principal</th><th>State</th><th>Tasks</th><th>CPUs</th><th>Mem</th><th>Offers</th></tr></thead>
      <tbody>
        ${frameworks.map((f) => html`<tr data-framework-id=${f.id} class=${picked === f.id ? 'picked' : ''}>
          <td>${onPick ? html`<button class="link" data-testid="framework-tasks" onClick=${() => onPick(f.id)}>${f.name}</button>` : f.name}
            ${f.webui_url && html` <a class="small" href=${f.webui_url} target="_blank" rel="noopener">web UI</a>`}</td>
          <td class="mono">${f.id}</td><td>${f.role}</td><td>${f.principal || '–'}</td>
          <td><${Badge} state=${f.active ? 'active' : 'inactive'} /></td>
          <td>${f.tasks}</td><td>${fmt.cpus(f.used_resources && f.used_resources.cpus)}</td>
          <td>${fmt.mb(f.used_resources && f.used_resources.mem)}</td><td>${f.offers}</td>
        </tr>`)}
        ${frameworks.length === 0 && html`<tr><td colspan="9" class="muted">no framework registered</td></tr>`}
      </tbody>
    </table>
  </section>`;
}

function RoleTable({ roles }) {
  return html`<section>
    <h2>Roles</h2>
    <table class="grid">
      <thead><tr><th>Role</th><th>Frameworks</th><th>CPUs allocated</th><th>Mem allocated</th><th>Disk allocated</th></tr></thead>
      <tbody>
        ${roles.map((r) => html`<tr data-role=${r.name}>
          <td>${r.name}</td><td>${(r.frameworks || []).length}</td>
          <td>${fmt.cpus(r.allocated && r.allocated.cpus)}</td><td>${fmt.mb(r.allocated && r.allocated.mem)}</td>
          <td>${fmt.mb(r.allocated && r.allocated.disk)}</td>
        </tr>`)}
        ${roles.length === 0 && html`<tr><td colspan="5" class="muted">no role</td></tr>`}
      </tbody>
    </table>
  </section>`;
}

function Services({ services }) {
  const row = (name, s, target) => html`<tr data-service=${name}><td>${name}</td>
    <td>${s ? html`<a href=${target}>${s.url}</a>` : html`<span class="muted">not registered</span>`}</td></tr>`;
  return html`<section>
    <h2>Services</h2>
    <table class="grid narrow"><tbody>
      ${row('Marathon', services.marathon, '#/marathon')}
      ${row('Chronos', services.chronos, '#/chronos')}
      ${row('Balancer', services.balancer, '#/balancer')}
    </tbody></table>
  </section>`;
}

export function FrameworksPage() {
  const summary = useData((signal) => get('/ui/api/summary', signal), []);
  useStream('/ui/api/events', (name) => {
    if (name === 'framework') summary.reload();
  });
  const [picked, setPicked] = useState(null);
  const s = summary.data;
  return html`<${Page} name="frameworks" loaded=${summary.loaded} title="Frameworks">
    <${ErrorBox} error=${summary.error} />
    ${s && html`<${FrameworkTable} frameworks=${s.frameworks || []} onPick=${setPicked} picked=${picked} />
      ${picked ? html`<${TaskTable} key=${picked} filter=${{ framework_id: picked }} showAgent=${true} />`
        : html`<p class="muted">Pick a framework to see its tasks.</p>`}
      <${RoleTable} roles=${s.roles || []} />`}
  </${Page}>`;
}
