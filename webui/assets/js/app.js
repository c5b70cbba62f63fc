// The console: hash routes → pages, the navigation bar, and the login form shown when the
// cluster answers 401.

import { html, render, useState, useEffect } from '../vendor/preact-htm.module.js';
import { request, onUnauthorized, setCredentials, clearCredentials, hasCredentials } from './api.js';
import { Page, ErrorBox } from './ui.js';
import { ClusterPage, FrameworksPage } from './cluster.js';
import { AgentsPage, AgentPage } from './agents.js';
import { TaskPage } from './task.js';
import { AppsPage, AppNewPage, AppPage, AppEditPage, DeploymentsPage, QueuePage } from './marathon.js';
import { JobsPage, JobNewPage, JobPage, JobEditPage, GraphPage } from './chronos.js';
import { BalancerPage } from './balancer.js';

// [pattern, page name, component]; `*` takes the rest of the path (app ids contain `/`).
const ROUTES = [
  [[], 'cluster', ClusterPage],
  [['agents'], 'agents', AgentsPage],
  [['agents', ':id'], 'agent', AgentPage],
  [['frameworks'], 'frameworks', FrameworksPage],
  [['tasks', ':frameworkId', '*taskId'], 'task', TaskPage],
  [['marathon'], 'apps', AppsPage],
  [['marathon', 'new'], 'app-new', AppNewPage],
  [['marathon', 'apps', '*id'], 'app', AppPage],
  [['marathon', 'edit', '*id'], 'app-edit', AppEditPage],
  [['marathon', 'deployments'], 'deployments', DeploymentsPage],
  [['marathon', 'queue'], 'queue', QueuePage],
  [['chronos'], 'jobs', JobsPage],
  [['chronos', 'new'], 'job-new', JobNewPage],
  [['chronos', 'jobs', '*name'], 'job', JobPage],
  [['chronos', 'edit', '*name'], 'job-edit', JobEditPage],
  [['chronos', 'graph'], 'graph', GraphPage],
  [['balancer'], 'balancer', BalancerPage],
];

export function match(hash) {
  const path = hash.replace(/^#\/?/, '').split('?')[0];
  const parts = path === '' ? [] : path.split('/').map(decodeURIComponent);
  for (const [pattern, name, component] of ROUTES) {
    const params = {};
    let ok = true;
    for (let i = 0; i < pattern.length && ok; i++) {
      const p = pattern[i];
      if (p.startsWith('*')) {
        if (parts.length <= i) ok = false;
        else params[p.slice(1)] = parts.slice(i).join('/');
        if (ok) return { name, component, params };
      } else if (parts[i] === undefined) ok = false;
      else if (p.startsWith(':')) params[p.slice(1)] = parts[i];
      else if (p !== parts[i]) ok = false;
    }
    if (ok && parts.length === pattern.length) return { name, component, params };
  }
  return null;
}

const NAV = [
  ['cluster', '#/', 'Cluster'],
  ['agents', '#/agents', 'Agents'],
  ['frameworks', '#/frameworks', 'Frameworks'],
  ['apps', '#/marathon', 'Apps'],
  ['deployments', '#/marathon/deployments', 'Deployments'],
  ['queue', '#/marathon/queue', 'Queue'],
  ['jobs', '#/chronos', 'Jobs'],
  ['graph', '#/chronos/graph', 'Job graph'],
  ['balancer', '#/balancer', 'Balancer'],
];

// Which nav entry a page belongs to.
const SECTION = {
  agent: 'agents', task: 'agents', 'app-new': 'apps', app: 'apps', 'app-edit': 'apps',
  'job-new': 'jobs', job: 'jobs', 'job-edit': 'jobs',
};

function Nav({ current, loggedIn, onLogout }) {
  const section = SECTION[current] || current;
  return html`<nav class="top">
    <a class="brand" href="#/">Plateau</a>
    ${NAV.map(([name, target, label]) =>
      html`<a data-nav=${name} href=${target} class=${section === name ? 'current' : ''}>${label}</a>`)}
    <span class="spacer"></span>
    ${loggedIn && html`<button class="link" data-testid="logout" onClick=${onLogout}>Sign out</button>`}
  </nav>`;
}

function Login({ onDone }) {
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    const form = new FormData(e.target);
    const user = form.get('user');
    const password = form.get('password');
    setBusy(true);
    setError(null);
    try {
      setCredentials(user, password);
      await request('/ui/api/summary');
      onDone();
    } catch (err) {
      clearCredentials();
      setError(err.status === 401 ? { message: 'wrong user or password' } : err);
    } finally {
      setBusy(false);
    }
  };
  return html`<${Page} name="login" loaded=${true} title="Sign in">
    <p>The cluster asks for credentials.</p>
    <form class="form narrow" data-testid="login-form" onSubmit=${submit}>
      <label>User <input name="user" autocomplete="username" required /></label>
      <label>Password <input name="password" type="password" autocomplete="current-password" /></label>
      <${ErrorBox} error=${error} />
      <button type="submit" class="primary" data-testid="login-submit" disabled=${busy}>Sign in</button>
    </form>
  </${Page}>`;
}

function NotFound() {
  return html`<${Page} name="not-found" loaded=${true} title="Not found">
    <${ErrorBox} error=${{ message: `no page at ${location.hash}` }} />
  </${Page}>`;
}

function App() {
  const [hash, setHash] = useState(location.hash || '#/');
  const [needLogin, setNeedLogin] = useState(false);
  const [session, setSession] = useState(0);
  useEffect(() => {
    const onHash = () => setHash(location.hash || '#/');
    window.addEventListener('hashchange', onHash);
    const off = onUnauthorized(() => setNeedLogin(true));
    return () => {
      window.removeEventListener('hashchange', onHash);
      off();
    };
  }, []);
  const route = match(hash);
  const logout = () => {
    clearCredentials();
    setNeedLogin(true);
  };
  let body;
  if (needLogin) {
    body = html`<${Login} onDone=${() => { setNeedLogin(false); setSession((s) => s + 1); }} />`;
  } else if (!route) {
    body = html`<${NotFound} />`;
  } else {
    const C = route.component;
    // Keyed by the hash (and the session): a new route, or a login, starts the page afresh.
    body = html`<${C} key=${hash + '|' + session} ...${route.params} />`;
  }
  return html`<${Nav} current=${needLogin ? 'login' : route && route.name} loggedIn=${hasCredentials()} onLogout=${logout} />${body}`;
}

render(html`<${App} />`, document.getElementById('app'));
