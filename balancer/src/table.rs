//! The routing table, as a pure core: no I/O, no clock.
//!
//! [`RoutingState`] follows Marathon's change feed ([`RoutesSnapshot`] then
//! [`RoutesChanged`] deltas, see [`crate::messages`]) and compiles it into an immutable
//! [`Table`], which the data plane swaps in atomically. What the table holds:
//! - one **TCP route per service port** (marathon-lb's `<bindAddr>:<servicePort>` frontends);
//! - **HTTP routes by virtual host and path prefix** (marathon-lb's `:80` frontend);
//! - the **balance algorithm** of each route.
//!
//! Which tasks get new connections: tasks in [`BackendState::Running`] and, for apps with
//! health checks, only those whose latest result is healthy (a task never seen healthy gets
//! nothing). [`BackendState::Draining`] tasks get no new connections; the data plane lets the
//! ones in flight finish.
//!
//! # Labels
//!
//! `{n}` is the port index. marathon-lb's names are read as it reads them; Plateau's own names
//! take precedence when both are set.
//!
//! | Label | Meaning |
//! |---|---|
//! | `HAPROXY_{n}_VHOST`, `PLATEAU_{n}_VHOST`, `PLATEAU_VHOST` (= port 0) | comma-separated virtual hosts routed to port `n` on the HTTP listener; matched case-insensitively, the request's port stripped |
//! | `HAPROXY_{n}_PATH`, `PLATEAU_{n}_PATH`, `PLATEAU_PATH` (= port 0) | path prefixes (comma- or space-separated, each starting with `/`) the vhost routes; needs a vhost. Plain prefixes as HAProxy's `path_beg`: `/api` also matches `/apix`. The longest matching prefix wins |
//! | `HAPROXY_{n}_BALANCE`, `PLATEAU_{n}_BALANCE`, `PLATEAU_BALANCE` (= port 0) | `roundrobin` (default) or `leastconn` |
//! | `HAPROXY_GROUP`, `HAPROXY_{n}_GROUP` | comma-separated balancer groups; the port is exposed by a balancer whose group is in the list. A balancer with no group, or group `*`, exposes every app |
//!
//! A bad label never freezes the table: it affects only its app's port and is listed in
//! [`Table::problems`]. Conflicts (two apps on one service port, or on one vhost + path) are
//! settled for the app whose id sorts first, and reported.
//!
//! ```
//! use plateau_balancer::messages::{AppRoutes, Backend, BackendState, RoutesSnapshot};
//! use plateau_balancer::table::RoutingState;
//!
//! let mut state = RoutingState::new(None);
//! let app = AppRoutes {
//!     app_id: "/web".into(),
//!     service_ports: vec![10000],
//!     labels: [("HAPROXY_0_VHOST".to_string(), "Web.Example.com".to_string())].into(),
//!     has_health_checks: false,
//!     backends: vec![Backend {
//!         task_id: "web.1".into(),
//!         host: "10.0.0.5".into(),
//!         ports: vec![31000],
//!         state: BackendState::Running,
//!         healthy: None,
//!     }],
//! };
//! state.handle_snapshot(RoutesSnapshot { leader_epoch: 0, version: 7, apps: vec![app] });
//! let table = state.table();
//! assert_eq!(table.tcp_route(10000).unwrap().backends[0].port, 31000);
//! assert_eq!(table.http_route("web.example.COM:80", "/x").unwrap().route.app_id, "/web");
//! ```

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Serialize;

use crate::limits::{
    APPS_MAX, BACKENDS_PER_APP_MAX, PATHS_PER_PORT_MAX, PATH_PREFIX_LEN_MAX, PORTS_PER_APP_MAX,
    PROBLEMS_MAX, VHOSTS_PER_PORT_MAX, VHOST_LEN_MAX,
};
use crate::messages::{AppRoutes, Backend, BackendState, RoutesChanged, RoutesSnapshot};

/// How a route picks a backend for a new connection or request.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Balance {
    /// In turn (HAProxy's `roundrobin`).
    #[default]
    RoundRobin,
    /// The one with the fewest active connections, in turn among equals (`leastconn`).
    LeastConn,
}

/// Where one backend of a route is reached.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Endpoint {
    /// The Marathon task.
    pub task_id: String,
    /// Its host.
    pub host: String,
    /// Its host port for this route's port index.
    pub port: u16,
}

/// A set of backends of one app port, and how to choose among them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Route {
    /// The app.
    pub app_id: String,
    /// The app's port index this route serves.
    pub port_index: usize,
    /// The balance algorithm.
    pub balance: Balance,
    /// Backends taking new connections, in the app's task order. May be empty (then HTTP
    /// answers 503 and TCP connections are closed).
    pub backends: Vec<Endpoint>,
}

/// An HTTP route: a path prefix on a virtual host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HttpRoute {
    /// Requests whose path starts with this are routed here; empty matches every path.
    pub path_prefix: String,
    /// Where they go.
    pub route: Route,
}

/// A label or conflict that was ignored, reported rather than failing the table.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Problem {
    /// The app concerned.
    pub app_id: String,
    /// What is wrong and what was done instead.
    pub message: String,
}

/// The compiled routing table: immutable, shared with the data plane behind an `Arc`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Table {
    /// Version of the change feed this table reflects; `None` before the first snapshot.
    pub version: Option<u64>,
    /// Service port → route.
    pub tcp: BTreeMap<u16, Route>,
    /// Lower-case virtual host → its routes, longest path prefix first.
    pub http: BTreeMap<String, Vec<HttpRoute>>,
    /// Ignored labels and conflicts (at most [`PROBLEMS_MAX`]).
    pub problems: Vec<Problem>,
    /// Problems beyond [`PROBLEMS_MAX`], counted only.
    pub problems_dropped: u64,
}

impl Table {
    /// The route of a service port.
    pub fn tcp_route(&self, service_port: u16) -> Option<&Route> {
        self.tcp.get(&service_port)
    }

    /// The route of a request: `host` as in the `Host` header (any case, with or without
    /// port), `path` the request's path. The longest matching path prefix wins.
    pub fn http_route(&self, host: &str, path: &str) -> Option<&HttpRoute> {
        let host = normalize_host(host)?;
        self.http
            .get(host.as_ref())?
            .iter()
            .find(|r| path.starts_with(r.path_prefix.as_str()))
    }

    /// Every service port with a route.
    pub fn service_ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.tcp.keys().copied()
    }

    fn report(&mut self, app_id: &str, message: String) {
        if self.problems.len() < PROBLEMS_MAX {
            self.problems.push(Problem {
                app_id: app_id.to_string(),
                message,
            });
        } else {
            self.problems_dropped += 1;
        }
    }
}

/// A `Host` header value as a table key: lower case, without port and trailing dot.
/// `None` when nothing is left.
pub fn normalize_host(host: &str) -> Option<Cow<'_, str>> {
    let host = host.trim();
    let host = if let Some(rest) = host.strip_prefix('[') {
        // IPv6 literal: "[::1]:80" → "[::1]".
        let end = rest.find(']')?;
        &host[..end + 2]
    } else {
        match host.rfind(':') {
            Some(i) => &host[..i],
            None => host,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() {
        return None;
    }
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Some(Cow::Owned(host.to_ascii_lowercase()))
    } else {
        Some(Cow::Borrowed(host))
    }
}

/// True when `backend` of `app` may get new connections.
pub fn is_routable(app: &AppRoutes, backend: &Backend) -> bool {
    backend.state == BackendState::Running
        && (!app.has_health_checks || backend.healthy == Some(true))
        && !backend.host.is_empty()
}

/// What a delta did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeltaOutcome {
    /// Applied: the table changed version.
    Applied,
    /// Its version is not newer than the table's (a duplicate or late delta): ignored.
    Stale,
    /// One or more deltas are missing, or no snapshot came yet: the delta was ignored and the
    /// caller must subscribe again for a fresh snapshot.
    Resync,
}

/// The routes as Marathon last described them, kept up to date from its change feed.
#[derive(Clone, Debug, Default)]
pub struct RoutingState {
    group: Option<String>,
    version: Option<u64>,
    apps: BTreeMap<String, AppRoutes>,
    /// Apps refused because [`APPS_MAX`] was reached (since the last snapshot).
    apps_refused: u64,
}

impl RoutingState {
    /// An empty state for a balancer of `group` (`None` or `*`: every app).
    pub fn new(group: Option<String>) -> Self {
        RoutingState {
            group,
            ..Default::default()
        }
    }

    /// The version of the last snapshot or delta applied.
    pub fn version(&self) -> Option<u64> {
        self.version
    }

    /// The apps known, by id.
    pub fn apps(&self) -> &BTreeMap<String, AppRoutes> {
        &self.apps
    }

    /// Replace everything with a snapshot.
    pub fn handle_snapshot(&mut self, snapshot: RoutesSnapshot) {
        self.apps.clear();
        self.apps_refused = 0;
        self.version = Some(snapshot.version);
        for app in snapshot.apps {
            self.upsert(app);
        }
    }

    /// Apply a delta if it is the next one; see [`DeltaOutcome`].
    pub fn handle_changed(&mut self, delta: RoutesChanged) -> DeltaOutcome {
        let Some(current) = self.version else {
            return DeltaOutcome::Resync;
        };
        if delta.version <= current {
            return DeltaOutcome::Stale;
        }
        if delta.version != current + 1 {
            return DeltaOutcome::Resync;
        }
        self.version = Some(delta.version);
        for app_id in &delta.removed_apps {
            self.apps.remove(app_id);
        }
        for app in delta.upserts {
            self.upsert(app);
        }
        DeltaOutcome::Applied
    }

    fn upsert(&mut self, app: AppRoutes) {
        if self.apps.len() >= APPS_MAX && !self.apps.contains_key(&app.app_id) {
            self.apps_refused += 1;
            return;
        }
        self.apps.insert(app.app_id.clone(), app);
    }

    /// Compile the routes into a table. Deterministic: the same state gives the same table.
    pub fn table(&self) -> Table {
        let mut table = Table {
            version: self.version,
            ..Default::default()
        };
        if self.apps_refused > 0 {
            table.report(
                "",
                format!(
                    "{} apps refused: the table holds at most {APPS_MAX}",
                    self.apps_refused
                ),
            );
        }
        for app in self.apps.values() {
            self.compile_app(app, &mut table);
        }
        for routes in table.http.values_mut() {
            // Longest prefix first; the stable sort keeps the app-id order among equals,
            // which were refused as conflicts anyway.
            routes.sort_by_key(|r| std::cmp::Reverse(r.path_prefix.len()));
        }
        table
    }

    fn compile_app(&self, app: &AppRoutes, table: &mut Table) {
        if app.service_ports.len() > PORTS_PER_APP_MAX {
            table.report(
                &app.app_id,
                format!(
                    "{} ports; only the first {PORTS_PER_APP_MAX} are routed",
                    app.service_ports.len()
                ),
            );
        }
        if app.backends.len() > BACKENDS_PER_APP_MAX {
            table.report(
                &app.app_id,
                format!(
                    "{} tasks; only the first {BACKENDS_PER_APP_MAX} are routed",
                    app.backends.len()
                ),
            );
        }
        let labels = Labels(&app.labels);
        for (index, &service_port) in app.service_ports.iter().enumerate() {
            if index >= PORTS_PER_APP_MAX {
                break;
            }
            if !self.is_exposed(&labels, index) {
                continue;
            }
            let balance = match labels.get(index, "BALANCE") {
                None => Balance::RoundRobin,
                Some(v) => match v.trim().to_ascii_lowercase().as_str() {
                    "roundrobin" | "" => Balance::RoundRobin,
                    "leastconn" => Balance::LeastConn,
                    other => {
                        table.report(
                            &app.app_id,
                            format!(
                                "port {index}: balance algorithm '{other}' is not supported \
                                 (roundrobin, leastconn); using roundrobin"
                            ),
                        );
                        Balance::RoundRobin
                    }
                },
            };
            let mut missing_ports = 0;
            let backends: Vec<Endpoint> = app
                .backends
                .iter()
                .take(BACKENDS_PER_APP_MAX)
                .filter(|b| is_routable(app, b))
                .filter_map(|b| match b.ports.get(index) {
                    Some(&port) if port != 0 => Some(Endpoint {
                        task_id: b.task_id.clone(),
                        host: b.host.clone(),
                        port,
                    }),
                    _ => {
                        missing_ports += 1;
                        None
                    }
                })
                .collect();
            if missing_ports > 0 {
                table.report(
                    &app.app_id,
                    format!("port {index}: {missing_ports} tasks have no host port for it"),
                );
            }
            let route = Route {
                app_id: app.app_id.clone(),
                port_index: index,
                balance,
                backends,
            };
            if service_port != 0 {
                match table.tcp.get(&service_port) {
                    Some(other) => {
                        let message = format!(
                            "port {index}: service port {service_port} is already taken by {}",
                            other.app_id
                        );
                        table.report(&app.app_id, message);
                    }
                    None => {
                        table.tcp.insert(service_port, route.clone());
                    }
                }
            }
            self.compile_vhosts(app, &labels, index, route, table);
        }
    }

    fn compile_vhosts(
        &self,
        app: &AppRoutes,
        labels: &Labels<'_>,
        index: usize,
        route: Route,
        table: &mut Table,
    ) {
        let Some(vhosts) = labels.get(index, "VHOST") else {
            if labels.get(index, "PATH").is_some() {
                table.report(
                    &app.app_id,
                    format!("port {index}: a PATH label needs a VHOST label; ignored"),
                );
            }
            return;
        };
        let mut hosts = Vec::new();
        for raw in vhosts.split(',').map(str::trim).filter(|h| !h.is_empty()) {
            match validate_vhost(raw) {
                Ok(h) if hosts.len() < VHOSTS_PER_PORT_MAX => hosts.push(h),
                Ok(_) => {
                    table.report(
                        &app.app_id,
                        format!(
                            "port {index}: more than {VHOSTS_PER_PORT_MAX} vhosts; '{raw}' ignored"
                        ),
                    );
                }
                Err(why) => table.report(
                    &app.app_id,
                    format!("port {index}: vhost '{raw}' ignored: {why}"),
                ),
            }
        }
        let mut prefixes = Vec::new();
        match labels.get(index, "PATH") {
            None => prefixes.push(String::new()),
            Some(paths) => {
                for p in paths
                    .split(|c: char| c == ',' || c.is_whitespace())
                    .filter(|p| !p.is_empty())
                {
                    if !p.starts_with('/') {
                        table.report(
                            &app.app_id,
                            format!("port {index}: path '{p}' ignored: it must start with '/'"),
                        );
                    } else if p.len() > PATH_PREFIX_LEN_MAX {
                        table.report(
                            &app.app_id,
                            format!(
                                "port {index}: a path longer than {PATH_PREFIX_LEN_MAX} bytes ignored"
                            ),
                        );
                    } else if prefixes.len() >= PATHS_PER_PORT_MAX {
                        table.report(
                            &app.app_id,
                            format!(
                                "port {index}: more than {PATHS_PER_PORT_MAX} paths; '{p}' ignored"
                            ),
                        );
                    } else if !prefixes.iter().any(|q| q == p) {
                        prefixes.push(p.to_string());
                    }
                }
            }
        }
        for host in hosts {
            let routes = table.http.entry(host.clone()).or_default();
            let mut conflicts = Vec::new();
            for prefix in &prefixes {
                if let Some(other) = routes.iter().find(|r| &r.path_prefix == prefix) {
                    conflicts.push(format!(
                        "port {index}: vhost '{host}' path '{prefix}' is already routed to {}",
                        other.route.app_id
                    ));
                    continue;
                }
                routes.push(HttpRoute {
                    path_prefix: prefix.clone(),
                    route: route.clone(),
                });
            }
            for message in conflicts {
                table.report(&app.app_id, message);
            }
        }
    }

    fn is_exposed(&self, labels: &Labels<'_>, index: usize) -> bool {
        let Some(mine) = self.group.as_deref() else {
            return true;
        };
        if mine == "*" {
            return true;
        }
        let groups = labels
            .0
            .get(&format!("HAPROXY_{index}_GROUP"))
            .or_else(|| labels.0.get("HAPROXY_GROUP"));
        groups.is_some_and(|g| g.split(',').any(|g| g.trim() == mine))
    }
}

/// An app's labels, looked up the way [the module docs](self) describe.
struct Labels<'a>(&'a BTreeMap<String, String>);

impl Labels<'_> {
    fn get(&self, index: usize, key: &str) -> Option<&str> {
        let plateau = self.0.get(&format!("PLATEAU_{index}_{key}"));
        let plateau_short = if index == 0 {
            self.0.get(&format!("PLATEAU_{key}"))
        } else {
            None
        };
        plateau
            .or(plateau_short)
            .or_else(|| self.0.get(&format!("HAPROXY_{index}_{key}")))
            .map(String::as_str)
    }
}

fn validate_vhost(raw: &str) -> Result<String, &'static str> {
    let host = normalize_host(raw).ok_or("empty")?;
    if host.len() > VHOST_LEN_MAX {
        return Err("longer than 253 bytes");
    }
    let ok = host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'[' | b']' | b':'));
    if !ok {
        return Err("not a host name");
    }
    Ok(host.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn backend(task: &str, port: u16) -> Backend {
        Backend {
            task_id: task.into(),
            host: "10.0.0.1".into(),
            ports: vec![port],
            state: BackendState::Running,
            healthy: None,
        }
    }

    fn app(
        id: &str,
        service_port: u16,
        labels: &[(&str, &str)],
        backends: Vec<Backend>,
    ) -> AppRoutes {
        AppRoutes {
            app_id: id.into(),
            service_ports: vec![service_port],
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            has_health_checks: false,
            backends,
        }
    }

    fn state_with(apps: Vec<AppRoutes>) -> RoutingState {
        let mut s = RoutingState::new(None);
        s.handle_snapshot(RoutesSnapshot {
            leader_epoch: 0,
            version: 1,
            apps,
        });
        s
    }

    #[test]
    fn tcp_route_per_service_port_with_running_backends_only() {
        let mut draining = backend("b", 2);
        draining.state = BackendState::Draining;
        let t = state_with(vec![app("/a", 10000, &[], vec![backend("a", 1), draining])]).table();
        let r = t.tcp_route(10000).unwrap();
        assert_eq!(r.backends.len(), 1);
        assert_eq!(r.backends[0].task_id, "a");
        assert!(t.tcp_route(10001).is_none());
    }

    #[test]
    fn health_checked_apps_route_only_healthy_tasks() {
        let mut a = app("/a", 10000, &[], vec![]);
        a.has_health_checks = true;
        for (i, h) in [None, Some(false), Some(true)].into_iter().enumerate() {
            let mut b = backend(&format!("t{i}"), 1000 + i as u16);
            b.healthy = h;
            a.backends.push(b);
        }
        let t = state_with(vec![a]).table();
        let ids: Vec<_> = t
            .tcp_route(10000)
            .unwrap()
            .backends
            .iter()
            .map(|b| b.task_id.as_str())
            .collect();
        assert_eq!(ids, vec!["t2"]);
    }

    #[test]
    fn vhost_matching_is_case_insensitive_and_strips_port() {
        let t = state_with(vec![app(
            "/a",
            10000,
            &[("HAPROXY_0_VHOST", "a.example.com, B.example.com")],
            vec![backend("a", 1)],
        )])
        .table();
        for host in [
            "a.example.com",
            "A.EXAMPLE.COM:8080",
            "b.example.com.",
            "B.Example.Com:80",
        ] {
            assert_eq!(
                t.http_route(host, "/").unwrap().route.app_id,
                "/a",
                "{host}"
            );
        }
        assert!(t.http_route("c.example.com", "/").is_none());
        assert!(t.http_route("", "/").is_none());
    }

    #[test]
    fn longest_path_prefix_wins() {
        let t = state_with(vec![
            app(
                "/root",
                10000,
                &[("HAPROXY_0_VHOST", "h")],
                vec![backend("r", 1)],
            ),
            app(
                "/api",
                10001,
                &[("HAPROXY_0_VHOST", "h"), ("HAPROXY_0_PATH", "/api")],
                vec![backend("a", 2)],
            ),
            app(
                "/v2",
                10002,
                &[("PLATEAU_VHOST", "h"), ("PLATEAU_PATH", "/api/v2")],
                vec![backend("v", 3)],
            ),
        ])
        .table();
        assert_eq!(t.http_route("h", "/api/v2/x").unwrap().route.app_id, "/v2");
        assert_eq!(t.http_route("h", "/api/v1").unwrap().route.app_id, "/api");
        assert_eq!(t.http_route("h", "/other").unwrap().route.app_id, "/root");
    }

    #[test]
    fn plateau_labels_take_precedence() {
        let t = state_with(vec![app(
            "/a",
            10000,
            &[
                ("HAPROXY_0_VHOST", "old"),
                ("PLATEAU_VHOST", "new"),
                ("HAPROXY_0_BALANCE", "roundrobin"),
                ("PLATEAU_0_BALANCE", "leastconn"),
            ],
            vec![backend("a", 1)],
        )])
        .table();
        assert!(t.http_route("old", "/").is_none());
        assert_eq!(
            t.http_route("new", "/").unwrap().route.balance,
            Balance::LeastConn
        );
        assert_eq!(t.tcp_route(10000).unwrap().balance, Balance::LeastConn);
    }

    #[test]
    fn bad_labels_affect_only_their_app_and_are_reported() {
        let t = state_with(vec![
            app(
                "/bad",
                10000,
                &[
                    ("HAPROXY_0_BALANCE", "source"),
                    ("HAPROXY_0_VHOST", "bad host!"),
                    ("HAPROXY_0_PATH", "nope"),
                ],
                vec![backend("b", 1)],
            ),
            app(
                "/good",
                10001,
                &[("HAPROXY_0_VHOST", "good")],
                vec![backend("g", 2)],
            ),
        ])
        .table();
        assert_eq!(t.tcp_route(10000).unwrap().balance, Balance::RoundRobin);
        assert!(t.http_route("good", "/").is_some());
        assert!(!t.http.contains_key("bad host!"));
        assert_eq!(
            t.problems.iter().filter(|p| p.app_id == "/bad").count(),
            3,
            "{:?}",
            t.problems
        );
        assert!(t.problems.iter().all(|p| p.app_id == "/bad"));
    }

    #[test]
    fn conflicts_go_to_the_first_app_id_and_are_reported() {
        let t = state_with(vec![
            app(
                "/b",
                10000,
                &[("HAPROXY_0_VHOST", "h")],
                vec![backend("b", 1)],
            ),
            app(
                "/a",
                10000,
                &[("HAPROXY_0_VHOST", "h")],
                vec![backend("a", 2)],
            ),
        ])
        .table();
        assert_eq!(t.tcp_route(10000).unwrap().app_id, "/a");
        assert_eq!(t.http_route("h", "/").unwrap().route.app_id, "/a");
        assert_eq!(t.problems.len(), 2);
        assert!(t.problems.iter().all(|p| p.app_id == "/b"));
    }

    #[test]
    fn groups_filter_apps() {
        let apps = vec![
            app(
                "/ext",
                10000,
                &[("HAPROXY_GROUP", "external,internal")],
                vec![backend("a", 1)],
            ),
            app(
                "/int",
                10001,
                &[("HAPROXY_GROUP", "internal")],
                vec![backend("b", 2)],
            ),
            app("/none", 10002, &[], vec![backend("c", 3)]),
            app(
                "/port",
                10003,
                &[
                    ("HAPROXY_GROUP", "internal"),
                    ("HAPROXY_0_GROUP", "external"),
                ],
                vec![backend("d", 4)],
            ),
        ];
        let ports = |group: Option<&str>| {
            let mut s = RoutingState::new(group.map(str::to_string));
            s.handle_snapshot(RoutesSnapshot {
                leader_epoch: 0,
                version: 1,
                apps: apps.clone(),
            });
            s.table().service_ports().collect::<Vec<_>>()
        };
        assert_eq!(ports(Some("external")), vec![10000, 10003]);
        assert_eq!(ports(Some("internal")), vec![10000, 10001]);
        assert_eq!(ports(Some("*")), vec![10000, 10001, 10002, 10003]);
        assert_eq!(ports(None), vec![10000, 10001, 10002, 10003]);
    }

    #[test]
    fn multiple_ports_use_their_own_host_ports() {
        let mut a = app("/a", 10000, &[("HAPROXY_1_VHOST", "h")], vec![]);
        a.service_ports.push(10001);
        a.backends.push(Backend {
            ports: vec![31000, 31001],
            ..backend("t", 0)
        });
        a.backends.push(backend("short", 32000)); // one host port only
        let t = state_with(vec![a]).table();
        assert_eq!(t.tcp_route(10000).unwrap().backends.len(), 2);
        let r1 = t.tcp_route(10001).unwrap();
        assert_eq!(r1.backends.len(), 1);
        assert_eq!(r1.backends[0].port, 31001);
        assert_eq!(t.http_route("h", "/").unwrap().route.port_index, 1);
        assert_eq!(t.problems.len(), 1);
    }

    #[test]
    fn deltas_need_consecutive_versions() {
        let mut s = RoutingState::new(None);
        assert_eq!(
            s.handle_changed(RoutesChanged {
                version: 1,
                ..Default::default()
            }),
            DeltaOutcome::Resync
        );
        s.handle_snapshot(RoutesSnapshot {
            leader_epoch: 0,
            version: 5,
            apps: vec![],
        });
        assert_eq!(
            s.handle_changed(RoutesChanged {
                version: 5,
                ..Default::default()
            }),
            DeltaOutcome::Stale
        );
        assert_eq!(
            s.handle_changed(RoutesChanged {
                version: 7,
                ..Default::default()
            }),
            DeltaOutcome::Resync
        );
        assert_eq!(s.version(), Some(5));
        let up = RoutesChanged {
            version: 6,
            upserts: vec![app("/a", 10000, &[], vec![backend("a", 1)])],
            removed_apps: vec![],
        };
        assert_eq!(s.handle_changed(up), DeltaOutcome::Applied);
        assert_eq!(s.version(), Some(6));
        assert!(s.table().tcp_route(10000).is_some());
        let rm = RoutesChanged {
            version: 7,
            upserts: vec![],
            removed_apps: vec!["/a".into()],
        };
        assert_eq!(s.handle_changed(rm), DeltaOutcome::Applied);
        assert!(s.table().tcp_route(10000).is_none());
    }

    #[test]
    fn normalize_host_cases() {
        assert_eq!(normalize_host("[::1]:8080").as_deref(), Some("[::1]"));
        assert_eq!(
            normalize_host("Example.COM.").as_deref(),
            Some("example.com")
        );
        assert_eq!(normalize_host(":80"), None);
        assert_eq!(normalize_host("[::1"), None);
    }

    fn arb_backend() -> impl Strategy<Value = Backend> {
        (
            0u8..6,
            1u16..5,
            any::<bool>(),
            prop::option::of(any::<bool>()),
        )
            .prop_map(|(t, p, draining, healthy)| Backend {
                task_id: format!("t{t}"),
                host: "10.0.0.1".into(),
                ports: vec![30000 + p],
                state: if draining {
                    BackendState::Draining
                } else {
                    BackendState::Running
                },
                healthy,
            })
    }

    fn arb_app() -> impl Strategy<Value = AppRoutes> {
        (
            0u8..5,
            10000u16..10004,
            any::<bool>(),
            prop::option::of(prop::sample::select(vec![
                "a.com",
                "A.com,b.com",
                "b.com",
                "bad host",
            ])),
            prop::option::of(prop::sample::select(vec![
                "/", "/api", "/api/v2", "/api /x", "x",
            ])),
            prop::collection::vec(arb_backend(), 0..5),
        )
            .prop_map(|(id, port, checks, vhost, path, mut backends)| {
                for (i, b) in backends.iter_mut().enumerate() {
                    b.task_id = format!("t{i}");
                }
                let mut labels = BTreeMap::new();
                if let Some(v) = vhost {
                    labels.insert("HAPROXY_0_VHOST".into(), v.into());
                }
                if let Some(p) = path {
                    labels.insert("HAPROXY_0_PATH".into(), p.into());
                }
                AppRoutes {
                    app_id: format!("/app{id}"),
                    service_ports: vec![port],
                    labels,
                    has_health_checks: checks,
                    backends,
                }
            })
    }

    #[derive(Debug, Clone)]
    enum Change {
        Upsert(AppRoutes),
        Remove(u8),
    }

    fn arb_change() -> impl Strategy<Value = Change> {
        prop_oneof![
            arb_app().prop_map(Change::Upsert),
            (0u8..5).prop_map(Change::Remove)
        ]
    }

    proptest! {
        /// No route ever holds a draining, unhealthy (for checked apps) or unknown task.
        #[test]
        fn routes_hold_only_routable_tasks(apps in prop::collection::vec(arb_app(), 0..8)) {
            let s = state_with(apps);
            let t = s.table();
            let all_routes = t.tcp.values().chain(t.http.values().flatten().map(|r| &r.route));
            for r in all_routes {
                let app = &s.apps()[&r.app_id];
                for e in &r.backends {
                    let b = app.backends.iter().find(|b| b.task_id == e.task_id && b.ports[0] == e.port).unwrap();
                    prop_assert!(is_routable(app, b));
                }
                let expected = app.backends.iter().filter(|b| is_routable(app, b)).count();
                prop_assert_eq!(r.backends.len(), expected);
            }
        }

        /// Applying deltas one by one gives the same table as a snapshot of the end state.
        #[test]
        fn deltas_equal_snapshot(initial in prop::collection::vec(arb_app(), 0..5), changes in prop::collection::vec(prop::collection::vec(arb_change(), 0..4), 0..6)) {
            let mut incremental = RoutingState::new(None);
            incremental.handle_snapshot(RoutesSnapshot { leader_epoch: 0, version: 10, apps: initial.clone() });
            let mut model: BTreeMap<String, AppRoutes> = BTreeMap::new();
            for a in initial { model.insert(a.app_id.clone(), a); }
            for (i, batch) in changes.into_iter().enumerate() {
                let mut delta = RoutesChanged { version: 11 + i as u64, ..Default::default() };
                for c in batch {
                    match c {
                        Change::Upsert(a) => { delta.upserts.retain(|u| u.app_id != a.app_id); delta.removed_apps.retain(|r| r != &a.app_id); delta.upserts.push(a) }
                        Change::Remove(id) => { let id = format!("/app{id}"); delta.upserts.retain(|u| u.app_id != id); delta.removed_apps.push(id) }
                    }
                }
                for r in &delta.removed_apps { model.remove(r); }
                for u in &delta.upserts { model.insert(u.app_id.clone(), u.clone()); }
                prop_assert_eq!(incremental.handle_changed(delta), DeltaOutcome::Applied);
            }
            let mut full = RoutingState::new(None);
            full.handle_snapshot(RoutesSnapshot { leader_epoch: 0, version: incremental.version().unwrap(), apps: model.into_values().collect() });
            prop_assert_eq!(incremental.table(), full.table());
        }

        /// The chosen HTTP route has the longest matching prefix, whatever the host's case or port.
        #[test]
        fn http_route_is_longest_prefix(apps in prop::collection::vec(arb_app(), 0..8), path in prop::sample::select(vec!["/", "/api", "/api/v2/x", "/apix", "/x/y", ""]), upper in any::<bool>(), port in prop::option::of(1u16..)) {
            let t = state_with(apps).table();
            for host in ["a.com", "b.com"] {
                let mut asked = if upper { host.to_ascii_uppercase() } else { host.to_string() };
                if let Some(p) = port { asked = format!("{asked}:{p}"); }
                let got = t.http_route(&asked, path);
                let best = t.http.get(host).and_then(|rs| rs.iter().filter(|r| path.starts_with(r.path_prefix.as_str())).map(|r| r.path_prefix.len()).max());
                prop_assert_eq!(got.map(|r| r.path_prefix.len()), best);
                if let Some(r) = got { prop_assert!(path.starts_with(r.path_prefix.as_str())); }
            }
        }

        /// The version never goes back, and only the next version is applied.
        #[test]
        fn version_is_monotonic(start in 0u64..100, versions in prop::collection::vec(0u64..120, 0..30)) {
            let mut s = RoutingState::new(None);
            s.handle_snapshot(RoutesSnapshot { leader_epoch: 0, version: start, apps: vec![] });
            for v in versions {
                let before = s.version().unwrap();
                let out = s.handle_changed(RoutesChanged { version: v, ..Default::default() });
                let after = s.version().unwrap();
                prop_assert!(after >= before);
                match out {
                    DeltaOutcome::Applied => prop_assert_eq!(after, before + 1),
                    DeltaOutcome::Stale => { prop_assert!(v <= before); prop_assert_eq!(after, before) }
                    DeltaOutcome::Resync => { prop_assert!(v > before + 1); prop_assert_eq!(after, before) }
                }
            }
        }
    }
}

/// Fuzz target of the routes feed as a balancer receives it: damaged snapshots and deltas,
/// decoded as the runtime decodes them, applied and compiled into a table that is then
/// queried. Never a panic; the table's problems stay bounded.
#[cfg(test)]
mod fuzz {
    use super::*;
    use crate::messages::{Backend, BackendState, RoutesChanged, RoutesSnapshot};
    use plateau_runtime::fuzzing::{check_message_decoding, fuzz_cases, mutate};
    use plateau_runtime::message::{decode_body, AnyMessage};
    use proptest::prelude::*;

    fn app(id: &str, port: u16, labels: &[(&str, &str)]) -> AppRoutes {
        AppRoutes {
            app_id: id.into(),
            service_ports: vec![port, port + 1],
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            has_health_checks: true,
            backends: vec![
                Backend {
                    task_id: format!("{id}.1"),
                    host: "10.0.0.2".into(),
                    ports: vec![31000, 31001],
                    state: BackendState::Running,
                    healthy: Some(true),
                },
                Backend {
                    task_id: format!("{id}.2"),
                    host: "10.0.0.3".into(),
                    ports: vec![31002],
                    state: BackendState::Draining,
                    healthy: None,
                },
            ],
        }
    }

    fn snapshot() -> RoutesSnapshot {
        RoutesSnapshot {
            version: 4,
            leader_epoch: 2,
            apps: vec![
                app(
                    "/web",
                    10000,
                    &[
                        ("HAPROXY_GROUP", "external"),
                        ("HAPROXY_0_VHOST", "Web.Example.com,www.example.com"),
                        ("HAPROXY_0_PATH", "/api"),
                        ("HAPROXY_0_BALANCE", "leastconn"),
                    ],
                ),
                app("/db", 10002, &[("HAPROXY_GROUP", "external")]),
            ],
        }
    }

    fn delta() -> RoutesChanged {
        RoutesChanged {
            version: 5,
            upserts: vec![app(
                "/web",
                10000,
                &[("HAPROXY_0_VHOST", "web.example.com")],
            )],
            removed_apps: vec!["/db".into()],
        }
    }

    fn exercise(state: &RoutingState) {
        let table = state.table();
        assert!(table.problems.len() <= crate::limits::PROBLEMS_MAX);
        for port in table.service_ports().collect::<Vec<_>>() {
            let _ = table.tcp_route(port);
        }
        for host in [
            "web.example.com",
            "WWW.EXAMPLE.COM.",
            "",
            "[::1]:80",
            "a:b:c",
        ] {
            for path in ["/", "/api/x", ""] {
                let _ = table.http_route(host, path);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(fuzz_cases()))]

        #[test]
        fn fuzz_balancer_routes_feed(snapshot_edits in plateau_runtime::fuzzing::edits(0..6), delta_edits in plateau_runtime::fuzzing::edits(0..6), group in prop_oneof![Just(None), Just(Some("external".to_string())), Just(Some("*".to_string()))]) {
            let snapshot_bytes = mutate(&AnyMessage::encode(&snapshot()).unwrap(), &snapshot_edits);
            let delta_bytes = mutate(&AnyMessage::encode(&delta()).unwrap(), &delta_edits);
            for bytes in [&snapshot_bytes, &delta_bytes] {
                prop_assert!(check_message_decoding::<RoutesSnapshot>(bytes).is_ok());
                prop_assert!(check_message_decoding::<RoutesChanged>(bytes).is_ok());
                prop_assert!(check_message_decoding::<crate::messages::SubscribeRoutes>(bytes).is_ok());
                prop_assert!(check_message_decoding::<crate::messages::RoutesNotLeader>(bytes).is_ok());
            }
            let mut state = RoutingState::new(group);
            if let Ok(s) = decode_body::<RoutesSnapshot>(&snapshot_bytes) {
                state.handle_snapshot(s);
                exercise(&state);
            }
            if let Ok(d) = decode_body::<RoutesChanged>(&delta_bytes) {
                let _ = state.handle_changed(d);
                exercise(&state);
            }
        }
    }
}
