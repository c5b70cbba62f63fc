// The balancer through /ui/proxy/balancer: its routing table (/table: TCP ports and HTTP
// hosts → apps) and its counters per app and backend (/stats), refreshed every few seconds.

import { html, Page, ErrorBox, useData, useInterval, Badge, href, get } from './ui.js';

const B = '/ui/proxy/balancer';

const appLink = (id) => html`<a href=${href('marathon', 'apps', String(id).replace(/^\/+/, ''))}>${id}</a>`;

export function BalancerPage() {
  const stats = useData((signal) => get(`${B}/stats`, signal), []);
  const table = useData((signal) => get(`${B}/table`, signal), []);
  useInterval(() => { stats.reload(); table.reload(); }, 3000);
  const s = stats.data;
  const t = table.data;
  const routes = [];
  if (t) {
    for (const [port, r] of Object.entries(t.tcp || {})) routes.push({ key: `tcp:${port}`, front: `TCP :${port}`, r });
    for (const [host, list] of Object.entries(t.http || {})) {
      for (const hr of list) routes.push({ key: `http:${host}${hr.path_prefix}`, front: `HTTP ${host}${hr.path_prefix}`, r: hr.route });
    }
  }
  const problems = [...((t && t.problems) || []), ...((s && s.problems) || [])];
  return html`<${Page} name="balancer" loaded=${stats.loaded && table.loaded} title="Balancer">
    <${ErrorBox} error=${stats.error} />
    <${ErrorBox} error=${table.error} />
    ${s && html`<p class="muted">table version ${s.table_version ?? '–'} · ${s.table_updates} updates · HTTP on ${s.http_listener || '–'} ·
      ${s.no_route} requests with no route</p>`}
    ${problems.length > 0 && html`<ul class="problems">${problems.map((p) => html`<li>${p.app_id}: ${p.message}</li>`)}</ul>`}
    <section>
      <h2>Routes</h2>
      <table class="grid">
        <thead><tr><th>Front</th><th>App</th><th>Port index</th><th>Balance</th><th>Backends</th></tr></thead>
        <tbody>
          ${routes.map(({ key, front, r }) => html`<tr data-route=${key}>
            <td class="mono">${front}</td><td>${appLink(r.app_id)}</td><td>${r.port_index}</td>
            <td>${typeof r.balance === 'string' ? r.balance : JSON.stringify(r.balance)}</td>
            <td class="small">${(r.backends || []).map((b) => `${b.host}:${b.port}`).join(', ') || '–'}</td>
          </tr>`)}
          ${table.loaded && routes.length === 0 && html`<tr><td colspan="5" class="muted">no route</td></tr>`}
        </tbody>
      </table>
    </section>
    <section>
      <h2>Backends</h2>
      <table class="grid">
        <thead><tr><th>App</th><th>Backend</th><th>Task</th><th>State</th><th>Active</th><th>Connections</th><th>Requests</th><th>Errors</th><th>Responses</th></tr></thead>
        <tbody>
          ${((s && s.apps) || []).map((a) => [
            ...a.backends.map((b) => html`<tr data-backend=${b.address} data-app=${a.app_id} data-requests=${b.requests}>
              <td>${appLink(a.app_id)}</td>
              <td class="mono">${b.address}</td><td class="mono small">${b.task_id}</td>
              <td><${Badge} state=${b.in_table ? 'up' : 'draining'} /></td>
              <td>${b.active}</td><td>${b.connections}</td><td data-testid="requests">${b.requests}</td>
              <td>${b.errors_connect + b.errors_timeout + b.errors_bad_response}</td>
              <td class="small">${Object.entries(b.responses || {}).filter(([, n]) => n).map(([k, n]) => `${k}: ${n}`).join(' · ') || '–'}</td>
            </tr>`),
            a.backends.length === 0 && html`<tr data-app=${a.app_id}><td>${appLink(a.app_id)}</td><td colspan="8" class="muted">no backend (${a.no_backend} requests found none)</td></tr>`,
          ])}
          ${stats.loaded && s && (s.apps || []).length === 0 && html`<tr><td colspan="9" class="muted">no app behind the balancer</td></tr>`}
        </tbody>
      </table>
    </section>
  </${Page}>`;
}
