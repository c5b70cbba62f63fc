// Agents, asked page by page (/ui/api/agents?offset&limit&q&state), and an agent's page with its
// tasks (/ui/api/tasks?agent_id=..., also page by page).

import { html, useState, Page, ErrorBox, useData, useDebounced, useStream, Pager, fmt, Bar, Badge, href, get } from './ui.js';
import { withQuery } from './api.js';

export const PAGE_SIZE = 50;

function res(r, k) {
  return (r && r[k]) || 0;
}

// What the agent's tasks really use (the agents' statistics), when the master has it.
function measured(a) {
  return a.usage ? `${fmt.cpus(a.usage.cpus)} CPUs · ${fmt.mb(a.usage.mem)}` : '–';
}

export function AgentsPage() {
  const [offset, setOffset] = useState(0);
  const [text, setText] = useState('');
  const [q, setQ] = useState('');
  const [state, setState] = useState('');
  const applyFilter = useDebounced(() => {
    setOffset(0);
    setQ(text);
  }, 300);
  const list = useData(
    (signal) => get(withQuery('/ui/api/agents', { offset, limit: PAGE_SIZE, q, state }), signal),
    [offset, q, state],
  );
  // An agent event (registered, lost...) refreshes the page shown, debounced.
  const refresh = useDebounced(() => list.reload(), 1000);
  useStream('/ui/api/events', (name) => {
    if (name === 'agent') refresh();
  });
  const data = list.data || { agents: [], total: 0 };
  return html`<${Page} name="agents" loaded=${list.loaded} title="Agents">
    <div class="toolbar">
      <input data-testid="filter" type="search" placeholder="Filter by hostname, id or attribute" value=${text}
        onInput=${(e) => { setText(e.target.value); applyFilter(); }} />
      <select data-testid="state-filter" value=${state} onChange=${(e) => { setOffset(0); setState(e.target.value); }}>
        <option value="">all states</option>
        <option value="active">active</option>
        <option value="disconnected">disconnected</option>
        <option value="unreachable">unreachable</option>
        <option value="draining">draining</option>
      </select>
    </div>
    <${ErrorBox} error=${list.error} />
    <table class="grid">
      <thead><tr><th>Hostname</th><th>ID</th><th>Rack</th><th>State</th><th>Tasks</th><th>CPUs allocated</th><th>Mem allocated</th><th>Disk allocated</th><th>Used (measured)</th></tr></thead>
      <tbody>
        ${data.agents.map((a) => html`<tr data-agent-id=${a.id}>
          <td><a href=${href('agents', a.id)}>${a.hostname}</a></td>
          <td class="mono small">${a.id}</td>
          <td>${a.rack || '–'}</td>
          <td><${Badge} state=${a.state} /></td>
          <td>${a.tasks_running || 0}</td>
          <td><${Bar} used=${res(a.used_resources, 'cpus')} total=${res(a.resources, 'cpus')} label=${`${fmt.cpus(res(a.used_resources, 'cpus'))} / ${fmt.cpus(res(a.resources, 'cpus'))}`} /></td>
          <td><${Bar} used=${res(a.used_resources, 'mem')} total=${res(a.resources, 'mem')} label=${`${fmt.mb(res(a.used_resources, 'mem'))} / ${fmt.mb(res(a.resources, 'mem'))}`} /></td>
          <td><${Bar} used=${res(a.used_resources, 'disk')} total=${res(a.resources, 'disk')} label=${`${fmt.mb(res(a.used_resources, 'disk'))} / ${fmt.mb(res(a.resources, 'disk'))}`} /></td>
          <td class="small">${measured(a)}</td>
        </tr>`)}
        ${list.loaded && data.agents.length === 0 && html`<tr><td colspan="9" class="muted">no agent</td></tr>`}
      </tbody>
    </table>
    <${Pager} offset=${offset} limit=${PAGE_SIZE} total=${data.total} onOffset=${setOffset} />
  </${Page}>`;
}

/** A page of tasks (agent_id or framework_id filter), with links to each task's page. */
export function TaskTable({ filter, showAgent }) {
  const [offset, setOffset] = useState(0);
  const [state, setState] = useState('');
  const [text, setText] = useState('');
  const [q, setQ] = useState('');
  const applyFilter = useDebounced(() => {
    setOffset(0);
    setQ(text);
  }, 300);
  const list = useData(
    (signal) => get(withQuery('/ui/api/tasks', { ...filter, offset, limit: PAGE_SIZE, state, q, order: 'des' }), signal),
    [offset, state, q, JSON.stringify(filter)],
  );
  const refresh = useDebounced(() => list.reload(), 1000);
  useStream('/ui/api/events', (name, data) => {
    if (name !== 'task' || typeof data !== 'object') return;
    if (filter.agent_id && data.agent_id !== filter.agent_id) return;
    if (filter.framework_id && data.framework_id !== filter.framework_id) return;
    refresh();
  });
  const data = list.data || { tasks: [], total: 0 };
  return html`<section>
    <div class="toolbar">
      <h2>Tasks</h2>
      <input data-testid="task-filter" type="search" placeholder="Filter by task id or name" value=${text}
        onInput=${(e) => { setText(e.target.value); applyFilter(); }} />
      <select data-testid="task-state-filter" value=${state} onChange=${(e) => { setOffset(0); setState(e.target.value); }}>
        <option value="">all states</option>
        ${['TASK_STAGING', 'TASK_STARTING', 'TASK_RUNNING', 'TASK_KILLING', 'TASK_FINISHED', 'TASK_FAILED', 'TASK_KILLED', 'TASK_LOST']
          .map((s) => html`<option value=${s}>${s.slice(5).toLowerCase()}</option>`)}
      </select>
    </div>
    <${ErrorBox} error=${list.error} />
    <table class="grid">
      <thead><tr><th>Task</th><th>Name</th><th>Framework</th>${showAgent && html`<th>Agent</th>`}<th>State</th><th>Health</th><th>CPUs</th><th>Mem</th><th>Updated</th></tr></thead>
      <tbody>
        ${data.tasks.map((t) => {
          const last = (t.statuses || [])[Math.max(0, (t.statuses || []).length - 1)];
          return html`<tr data-task-id=${t.id}>
            <td><a data-testid="task-link" href=${href('tasks', t.framework_id, t.id)} class="mono small">${t.id}</a></td>
            <td>${t.name}</td>
            <td>${t.framework_name || t.framework_id}</td>
            ${showAgent && html`<td><a href=${href('agents', t.slave_id)}>${t.agent_hostname || t.slave_id}</a></td>`}
            <td><${Badge} state=${t.state} /></td>
            <td>${t.healthy === undefined || t.healthy === null ? '–' : t.healthy ? 'healthy' : 'unhealthy'}</td>
            <td>${fmt.cpus(t.resources && t.resources.cpus)}</td>
            <td>${fmt.mb(t.resources && t.resources.mem)}</td>
            <td>${last ? fmt.time(last.timestamp) : '–'}</td>
          </tr>`;
        })}
        ${list.loaded && data.tasks.length === 0 && html`<tr><td colspan="9" class="muted">no task</td></tr>`}
      </tbody>
    </table>
    <${Pager} offset=${offset} limit=${PAGE_SIZE} total=${data.total} onOffset=${setOffset} />
  </section>`;
}

export function AgentPage({ id }) {
  const agent = useData((signal) => get(withQuery('/ui/api/agents', { id }), signal), [id]);
  const a = agent.data && (agent.data.agents ? agent.data.agents[0] : agent.data);
  const attributes = (a && a.attributes) || {};
  return html`<${Page} name="agent" loaded=${agent.loaded} title=${a ? `Agent ${a.hostname}` : 'Agent'}>
    <${ErrorBox} error=${agent.error} />
    ${a && html`<section>
      <table class="grid narrow kv"><tbody>
        <tr><th>ID</th><td class="mono">${a.id}</td></tr>
        <tr><th>PID</th><td class="mono">${a.pid}</td></tr>
        <tr><th>HTTP</th><td class="mono">${a.http || `${a.hostname}:${a.port}`}</td></tr>
        <tr><th>State</th><td><${Badge} state=${a.state} />${a.maintenance_mode ? ` maintenance: ${a.maintenance_mode}` : ''}</td></tr>
        <tr><th>Rack</th><td>${a.rack || '–'}</td></tr>
        <tr><th>Used (measured)</th><td>${measured(a)}</td></tr>
        <tr><th>Attributes</th><td>${Object.entries(attributes).map(([k, v]) => html`<span class="tag">${k}=${String(v)}</span>`)}</td></tr>
        ${['cpus', 'mem', 'disk'].map((k) => html`<tr><th>${k}</th><td>
          <${Bar} used=${res(a.used_resources, k)} total=${res(a.resources, k)}
            label=${`${k === 'cpus' ? fmt.cpus(res(a.used_resources, k)) : fmt.mb(res(a.used_resources, k))} allocated of ${k === 'cpus' ? fmt.cpus(res(a.resources, k)) : fmt.mb(res(a.resources, k))}`} />
        </td></tr>`)}
      </tbody></table>
    </section>
    <${TaskTable} filter=${{ agent_id: a.id }} showAgent=${false} />`}
  </${Page}>`;
}
