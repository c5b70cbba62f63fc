// Marathon through /ui/proxy/marathon: apps (kept live by refetching, debounced, on /v2/events),
// the new/edit form with its JSON editor, an app's page with scale/restart/suspend/destroy,
// deployments (cancel, rollback) and the launch queue.

import { html, useState, Page, ErrorBox, useData, useMarathonEvents, useConfirm, fmt, Badge, href, go, get } from './ui.js';
import { request, services } from './api.js';

const M = '/ui/proxy/marathon';

/** `/a/b` → `a/b` (routes hold app ids without the leading slash). */
const bare = (id) => String(id).replace(/^\/+/, '');
const appPath = (id) => `${M}/v2/apps/${bare(id).split('/').map(encodeURIComponent).join('/')}`;

function status(app) {
  if ((app.deployments || []).length) return 'deploying';
  if (app.instances === 0) return (app.tasksRunning || 0) > 0 ? 'suspending' : 'suspended';
  if ((app.tasksRunning || 0) < app.instances) return 'waiting';
  return 'running';
}

function Health({ app }) {
  const running = app.tasksRunning || 0;
  const healthy = app.tasksHealthy || 0;
  const unhealthy = app.tasksUnhealthy || 0;
  if (!(app.healthChecks || []).length) return html`<span class="muted">no checks</span>`;
  return html`<span class="health"><span class="ok">${healthy} healthy</span>${unhealthy ? html` · <span class="bad">${unhealthy} unhealthy</span>` : ''}${
    running - healthy - unhealthy > 0 ? html` · ${running - healthy - unhealthy} unknown` : ''}</span>`;
}

export function AppsPage() {
  const apps = useData((signal) => get(`${M}/v2/apps?embed=apps.deployments&embed=apps.counts`, signal), []);
  const [filter, setFilter] = useState('');
  useMarathonEvents(() => apps.reload());
  const list = ((apps.data && apps.data.apps) || []).filter((a) => a.id.includes(filter));
  return html`<${Page} name="apps" loaded=${apps.loaded} title="Marathon apps"
      actions=${html`<a class="button primary" data-testid="app-new" href="#/marathon/new">New app</a>`}>
    <div class="toolbar"><input type="search" data-testid="filter" placeholder="Filter by id" value=${filter} onInput=${(e) => setFilter(e.target.value)} /></div>
    <${ErrorBox} error=${apps.error} />
    <table class="grid">
      <thead><tr><th>ID</th><th>Status</th><th>Running / wanted</th><th>Health</th><th>CPUs</th><th>Mem</th><th>Version</th></tr></thead>
      <tbody>
        ${list.map((a) => html`<tr data-app-id=${a.id} data-instances=${a.instances} data-running=${a.tasksRunning || 0} data-healthy=${a.tasksHealthy || 0}>
          <td><a href=${href('marathon', 'apps', bare(a.id))}>${a.id}</a></td>
          <td><${Badge} state=${status(a)} /></td>
          <td>${a.tasksRunning || 0} / ${a.instances}${a.tasksStaged ? ` (${a.tasksStaged} staged)` : ''}</td>
          <td><${Health} app=${a} /></td>
          <td>${fmt.cpus(a.cpus)}</td><td>${fmt.mb(a.mem)}</td>
          <td class="small">${fmt.time(a.version)}</td>
        </tr>`)}
        ${apps.loaded && list.length === 0 && html`<tr><td colspan="7" class="muted">no app</td></tr>`}
      </tbody>
    </table>
  </${Page}>`;
}

// Fields Marathon answers with that are not part of an app definition.
const READ_ONLY = ['version', 'versionInfo', 'tasks', 'tasksStaged', 'tasksRunning', 'tasksHealthy', 'tasksUnhealthy',
  'deployments', 'lastTaskFailure', 'taskStats', 'readinessCheckResults', 'counts'];

function definitionOf(app) {
  const d = { ...app };
  for (const k of READ_ONLY) delete d[k];
  return d;
}

/** The definition from the form's fields, over `base` (the app being edited, or nothing). */
function fromForm(fields, base) {
  const d = { ...(base || {}) };
  d.id = fields.id.trim();
  if (fields.cmd.trim()) d.cmd = fields.cmd;
  else delete d.cmd;
  d.cpus = Number(fields.cpus);
  d.mem = Number(fields.mem);
  d.instances = Number(fields.instances);
  const ports = Number(fields.ports);
  const old = d.portDefinitions || [];
  if (!base || ports !== old.length) {
    d.portDefinitions = Array.from({ length: ports }, (_, i) => old[i] || { port: 0 });
    delete d.ports;
  }
  const path = fields.healthPath.trim();
  if (path) {
    const others = (d.healthChecks || []).filter((c) => !(c.protocol === 'HTTP' && (c.portIndex || 0) === 0));
    const mine = (d.healthChecks || []).find((c) => c.protocol === 'HTTP' && (c.portIndex || 0) === 0);
    d.healthChecks = [{ ...(mine || { protocol: 'HTTP', portIndex: 0 }), path }, ...others];
  } else if (!base) {
    delete d.healthChecks;
  } else {
    d.healthChecks = (d.healthChecks || []).filter((c) => !(c.protocol === 'HTTP' && (c.portIndex || 0) === 0));
  }
  return d;
}

function fieldsOf(app) {
  const http = (app.healthChecks || []).find((c) => c.protocol === 'HTTP' && (c.portIndex || 0) === 0);
  return {
    id: app.id || '',
    cmd: app.cmd || '',
    cpus: String(app.cpus ?? 1),
    mem: String(app.mem ?? 128),
    instances: String(app.instances ?? 1),
    ports: String((app.portDefinitions || app.ports || [0]).length),
    healthPath: (http && http.path) || '',
  };
}

const EMPTY = { id: '', cmd: '', cpus: '1', mem: '128', instances: '1', ports: '1', healthPath: '' };

/** The form and its JSON editor, for a new app (`app` null) or an edit. */
function AppForm({ app }) {
  const [fields, setFields] = useState(app ? fieldsOf(app) : EMPTY);
  const [jsonMode, setJsonMode] = useState(false);
  const [json, setJson] = useState('');
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const base = app ? definitionOf(app) : null;
  const set = (k) => (e) => setFields({ ...fields, [k]: e.target.value });
  const toggle = () => {
    if (!jsonMode) {
      setJson(JSON.stringify(fromForm(fields, base), null, 2));
    } else {
      try {
        setFields(fieldsOf(JSON.parse(json)));
        setError(null);
      } catch (e) {
        setError({ message: `the JSON does not parse: ${e.message}` });
        return;
      }
    }
    setJsonMode(!jsonMode);
  };
  const submit = async (e) => {
    e.preventDefault();
    setError(null);
    let body;
    let id;
    if (jsonMode) {
      body = e.target.querySelector('textarea[data-testid=app-json]').value; // posted as is: Marathon tells what is wrong
      try {
        id = JSON.parse(body).id;
      } catch (err) {
        setError({ message: `the JSON does not parse: ${err.message}` });
        return;
      }
    } else {
      // The inputs' current values (not the last rendered state: a fast client may type and submit at once).
      const d = fromForm({ ...fields, ...Object.fromEntries(new FormData(e.target)) }, base);
      if (!d.id) {
        setError({ message: 'id: an app needs an id' });
        return;
      }
      body = d;
      id = d.id;
    }
    setBusy(true);
    try {
      if (app) await request(appPath(app.id), { method: 'PUT', body });
      else await request(`${M}/v2/apps`, { method: 'POST', body });
      go(href('marathon', 'apps', bare(app ? app.id : id || '')));
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return html`<form class="form" data-testid="app-form" onSubmit=${submit}>
    <div class="toolbar"><button type="button" data-testid="json-mode" onClick=${toggle}>${jsonMode ? 'Form' : 'JSON editor'}</button></div>
    ${jsonMode
      ? html`<textarea data-testid="app-json" rows="24" spellcheck="false" value=${json} onInput=${(e) => setJson(e.target.value)}></textarea>`
      : html`
        <label>ID <input name="id" value=${fields.id} onInput=${set('id')} placeholder="/group/app" readonly=${!!app} required /></label>
        <label>Command <textarea name="cmd" rows="3" value=${fields.cmd} onInput=${set('cmd')} placeholder="python3 -m http.server $PORT0"></textarea></label>
        <div class="row">
          <label>CPUs <input name="cpus" type="number" step="0.01" min="0" value=${fields.cpus} onInput=${set('cpus')} /></label>
          <label>Memory (MB) <input name="mem" type="number" step="1" min="0" value=${fields.mem} onInput=${set('mem')} /></label>
          <label>Instances <input name="instances" type="number" step="1" min="0" value=${fields.instances} onInput=${set('instances')} /></label>
          <label>Host ports <input name="ports" type="number" step="1" min="0" value=${fields.ports} onInput=${set('ports')} /></label>
        </div>
        <label>HTTP health check path (port index 0; empty: none) <input name="healthPath" value=${fields.healthPath} onInput=${set('healthPath')} placeholder="/health" /></label>`}
    <${ErrorBox} error=${error} />
    <div class="actions">
      <button type="submit" class="primary" data-testid="app-submit" disabled=${busy}>${app ? 'Change' : 'Create'}</button>
      <a class="button" href=${app ? href('marathon', 'apps', bare(app.id)) : '#/marathon'}>Cancel</a>
    </div>
  </form>`;
}

export function AppNewPage() {
  return html`<${Page} name="app-new" loaded=${true} title="New app"><${AppForm} app=${null} /></${Page}>`;
}

export function AppEditPage({ id }) {
  const app = useData((signal) => get(appPath(id), signal), [id]);
  return html`<${Page} name="app-edit" loaded=${app.loaded} title=${`Edit /${id}`}>
    <${ErrorBox} error=${app.error} />
    ${app.data && html`<${AppForm} app=${app.data.app} />`}
  </${Page}>`;
}

export function AppPage({ id }) {
  const app = useData((signal) => get(`${appPath(id)}?embed=app.tasks&embed=app.deployments&embed=app.lastTaskFailure`, signal), [id]);
  const svc = useData(() => services(), []);
  useMarathonEvents(() => app.reload());
  const { ask, dialog } = useConfirm();
  const [scaling, setScaling] = useState(false);
  const [scaleTo, setScaleTo] = useState('');
  const [error, setError] = useState(null);
  const a = app.data && app.data.app;
  const marathonFramework = svc.data && ((svc.data.services && svc.data.services.marathon && svc.data.services.marathon.framework_id)
    || ((svc.data.frameworks || []).find((f) => f.name === 'marathon') || {}).id);
  // `f(force)`; a change refused because a deployment holds the app (409) can be forced.
  const [retry, setRetry] = useState(null);
  const act = async (f, force = false) => {
    setError(null);
    setRetry(null);
    try {
      await f(force);
      app.reload();
    } catch (e) {
      setError(e);
      if (e.status === 409 && !force) setRetry(() => () => act(f, true));
    }
  };
  const scale = (n, force) => request(`${appPath(id)}${force ? '?force=true' : ''}`, { method: 'PUT', body: { instances: n } });
  const actions = a && html`
    <button data-testid="app-scale" onClick=${() => { setScaleTo(String(a.instances)); setScaling(!scaling); }}>Scale</button>
    <button data-testid="app-restart" onClick=${() => ask(`Restart every task of ${a.id}?`, () => request(`${appPath(id)}/restart`, { method: 'POST' }).then(app.reload))}>Restart</button>
    <button data-testid="app-suspend" onClick=${() => ask(`Suspend ${a.id} (scale it to 0)?`, () => scale(0).then(app.reload))}>Suspend</button>
    <a class="button" data-testid="app-edit" href=${href('marathon', 'edit', bare(a.id))}>Edit</a>
    <button class="danger" data-testid="app-destroy" onClick=${() => ask(`Destroy ${a.id} and kill its tasks?`, async () => {
      await request(appPath(id), { method: 'DELETE' });
      go('#/marathon');
    })}>Destroy</button>`;
  const tasks = (a && a.tasks) || [];
  return html`<${Page} name="app" loaded=${app.loaded} title=${a ? a.id : `/${id}`} actions=${actions}>
    <${ErrorBox} error=${app.error} />
    <${ErrorBox} error=${error} />
    ${retry && html`<p><button class="danger" data-testid="force" onClick=${retry}>Force it (the deployment in progress is replaced)</button></p>`}
    ${scaling && html`<form class="inline" onSubmit=${(e) => {
      e.preventDefault();
      const n = Number(e.target.querySelector('[data-testid=scale-input]').value);
      setScaling(false);
      act((force) => scale(n, force));
    }}>
      <label>Instances <input data-testid="scale-input" type="number" min="0" step="1" value=${scaleTo} onInput=${(e) => setScaleTo(e.target.value)} /></label>
      <button type="submit" class="primary" data-testid="scale-submit">Scale</button>
    </form>`}
    ${dialog}
    ${a && html`
      <section class="cols">
        <table class="grid narrow kv"><tbody>
          <tr><th>Status</th><td data-testid="app-status"><${Badge} state=${status(a)} /></td></tr>
          <tr><th>Instances</th><td data-testid="app-instances" data-instances=${a.instances} data-running=${a.tasksRunning || 0} data-healthy=${a.tasksHealthy || 0}>
            ${a.tasksRunning || 0} running of ${a.instances} · ${a.tasksStaged || 0} staged</td></tr>
          <tr><th>Health</th><td><${Health} app=${a} /></td></tr>
          <tr><th>Command</th><td class="mono small">${a.cmd || (a.args || []).join(' ') || '–'}</td></tr>
          <tr><th>Resources</th><td>${fmt.cpus(a.cpus)} CPUs · ${fmt.mb(a.mem)} · disk ${fmt.mb(a.disk)}</td></tr>
          <tr><th>Ports</th><td>${(a.portDefinitions || []).map((p) => p.port).join(', ') || '–'}</td></tr>
          <tr><th>Version</th><td>${fmt.time(a.version)}</td></tr>
          ${a.lastTaskFailure && html`<tr><th>Last failure</th><td>${a.lastTaskFailure.state} ${a.lastTaskFailure.message || ''} (${fmt.time(a.lastTaskFailure.timestamp)})</td></tr>`}
        </tbody></table>
        ${(a.deployments || []).length > 0 && html`<p>Deploying: <a href="#/marathon/deployments">${a.deployments.map((d) => d.id).join(', ')}</a></p>`}
      </section>
      <section>
        <h2>Tasks</h2>
        <table class="grid">
          <thead><tr><th>Task</th><th>Host</th><th>Ports</th><th>State</th><th>Health</th><th>Started</th></tr></thead>
          <tbody>
            ${tasks.map((t) => {
              const results = t.healthCheckResults || [];
              const health = results.length === 0 ? '–' : results.every((r) => r.alive) ? 'healthy' : 'unhealthy';
              return html`<tr data-task-id=${t.id}>
                <td>${marathonFramework
                  ? html`<a data-testid="task-link" class="mono small" href=${href('tasks', marathonFramework, t.id)}>${t.id}</a>`
                  : html`<span class="mono small">${t.id}</span>`}</td>
                <td>${t.host}</td><td>${(t.ports || []).join(', ')}</td>
                <td><${Badge} state=${t.state || (t.startedAt ? 'TASK_RUNNING' : 'TASK_STAGING')} /></td>
                <td>${health}</td><td>${fmt.time(t.startedAt)}</td>
              </tr>`;
            })}
            ${tasks.length === 0 && html`<tr><td colspan="6" class="muted">no task</td></tr>`}
          </tbody>
        </table>
      </section>
      <details><summary>Definition (JSON)</summary><pre class="json">${JSON.stringify(definitionOf(a), null, 2)}</pre></details>`}
  </${Page}>`;
}

export function DeploymentsPage() {
  const list = useData((signal) => get(`${M}/v2/deployments`, signal), []);
  useMarathonEvents(() => list.reload());
  const { ask, dialog } = useConfirm();
  const deployments = Array.isArray(list.data) ? list.data : [];
  const del = (id, force) => request(`${M}/v2/deployments/${encodeURIComponent(id)}?force=${force}`, { method: 'DELETE' }).then(list.reload);
  return html`<${Page} name="deployments" loaded=${list.loaded} title="Deployments">
    <${ErrorBox} error=${list.error} />
    ${dialog}
    <table class="grid">
      <thead><tr><th>ID</th><th>Apps</th><th>Started</th><th>Step</th><th>Steps</th><th></th></tr></thead>
      <tbody>
        ${deployments.map((d) => html`<tr data-deployment-id=${d.id}>
          <td class="mono small">${d.id}</td>
          <td>${(d.affectedApps || []).map((a) => html`<a href=${href('marathon', 'apps', bare(a))}>${a}</a> `)}</td>
          <td>${fmt.time(d.version)}</td>
          <td data-testid="current-step">${d.currentStep} of ${d.totalSteps}
            <div class="small">${(d.currentActions || []).map((x) => `${x.action} ${x.app}`).join(', ')}</div></td>
          <td><ol class="steps">${(d.steps || []).map((s, i) => html`<li class=${i + 1 === d.currentStep ? 'current' : i + 1 < d.currentStep ? 'done' : ''}>
            ${(s.actions || []).map((x) => `${x.action} ${x.app}`).join(', ')}</li>`)}</ol></td>
          <td class="actions">
            <button data-testid="deployment-rollback" onClick=${() => ask(`Roll back deployment ${d.id} (a new deployment returns the apps to their previous version)?`, () => del(d.id, false))}>Rollback</button>
            <button class="danger" data-testid="deployment-cancel" onClick=${() => ask(`Stop deployment ${d.id} where it is (no rollback)?`, () => del(d.id, true))}>Cancel</button>
          </td>
        </tr>`)}
        ${list.loaded && deployments.length === 0 && html`<tr><td colspan="6" class="muted">no deployment in progress</td></tr>`}
      </tbody>
    </table>
  </${Page}>`;
}

export function QueuePage() {
  const list = useData((signal) => get(`${M}/v2/queue`, signal), []);
  useMarathonEvents(() => list.reload());
  const [error, setError] = useState(null);
  const queue = (list.data && list.data.queue) || [];
  const reset = (id) => request(`${appPath(id)}/delay`.replace('/v2/apps/', '/v2/queue/'), { method: 'DELETE' })
    .then(list.reload, setError);
  return html`<${Page} name="queue" loaded=${list.loaded} title="Launch queue">
    <${ErrorBox} error=${list.error} />
    <${ErrorBox} error=${error} />
    <table class="grid">
      <thead><tr><th>App</th><th>Instances to launch</th><th>Waiting since</th><th>Delay</th><th>Last offers</th><th></th></tr></thead>
      <tbody>
        ${queue.map((q) => {
          const id = (q.app && q.app.id) || q.id;
          const delay = q.delay || {};
          const offers = q.processedOffersSummary;
          return html`<tr data-queue-app=${id}>
            <td><a href=${href('marathon', 'apps', bare(id))}>${id}</a></td>
            <td>${q.count}</td>
            <td>${fmt.time(q.since)}</td>
            <td data-testid="delay">${delay.overdue ? 'overdue' : fmt.duration(delay.timeLeftSeconds)}</td>
            <td class="small">${offers ? `${offers.processedOffersCount} processed, ${offers.unusedOffersCount} unused` : '–'}</td>
            <td><button data-testid="queue-reset-delay" onClick=${() => reset(id)}>Reset delay</button></td>
          </tr>`;
        })}
        ${list.loaded && queue.length === 0 && html`<tr><td colspan="6" class="muted">the queue is empty</td></tr>`}
      </tbody>
    </table>
  </${Page}>`;
}
