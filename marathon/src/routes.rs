//! The routes change feed for balancers (`plateau balancer`): a balancer sends
//! [`SubscribeRoutes`], gets a full [`RoutesSnapshot`], then one [`RoutesChanged`] delta (at the
//! next version) whenever an app's routes change.
//!
//! Routes are derived from the scheduler's apps and instances by a pure function
//! ([`routes_of`]); the feed remembers what it last sent and, on [`RouteFeed::flush`], sends
//! only the apps whose routes differ. The scheduler flushes after every handled message and
//! right before it sends kills, so a balancer sees a task as `Draining` before the task gets
//! its kill (new requests stop going there first).
//!
//! With leader + standbys only the leader feeds routes. A standby keeps its subscribers and
//! answers them [`RoutesNotLeader`] (with the leader it knows, and again whenever that
//! changes); when elected it sends each of them a snapshot stamped with its epoch; when
//! deposed it tells them [`RoutesNotLeader`]. A balancer that follows several Marathons thus
//! switches to the new leader as soon as it leads, and keeps serving its last table meanwhile.
//! The leader sends a change only once the state writes it follows from have committed (the
//! scheduler holds it until then: [`RoutesWaiting`]), so a balancer never routes by a state a
//! new leader could lack: the next leader's snapshot holds at least what was sent.

use std::collections::BTreeMap;

use plateau_balancer::messages::{
    AppRoutes, Backend, BackendState, RoutesChanged, RoutesNotLeader, RoutesSnapshot,
    SubscribeRoutes,
};
use plateau_runtime::{Context, Upid};
use plateau_sdk::{TaskId, TaskState};

use plateau_sdk::coord::WriteId;

use crate::limits::{ROUTES_WAITING_MAX, ROUTE_SUBSCRIBERS_MAX};
use crate::state::{AppRecord, Instance};
use crate::AppDefinition;

/// Label prefixes that concern a balancer.
const LABEL_PREFIXES: [&str; 2] = ["HAPROXY_", "PLATEAU_"];

/// The routes of every app, by app id: service ports, balancer labels, health-check flag,
/// and the tasks that run (TASK_RUNNING or TASK_KILLING), each `Draining` once Marathon
/// asked for its kill.
pub fn routes_of(
    apps: &BTreeMap<String, AppRecord>,
    instances: &BTreeMap<TaskId, Instance>,
) -> BTreeMap<String, AppRoutes> {
    let mut out: BTreeMap<String, AppRoutes> = apps
        .iter()
        .map(|(id, record)| (id.clone(), app_routes(&record.app)))
        .collect();
    for i in instances.values() {
        let Some(routes) = out.get_mut(&i.app_id) else {
            continue;
        };
        if let Some(backend) = backend_of(i) {
            routes.backends.push(backend);
        }
    }
    out
}

fn app_routes(app: &AppDefinition) -> AppRoutes {
    AppRoutes {
        app_id: app.id.clone(),
        service_ports: crate::scheduler::service_ports_of(app)
            .into_iter()
            .map(|p| u16::try_from(p).unwrap_or(0))
            .collect(),
        labels: app
            .labels
            .iter()
            .filter(|(k, _)| LABEL_PREFIXES.iter().any(|p| k.starts_with(p)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        has_health_checks: !app.health_checks.is_empty(),
        backends: Vec::new(),
    }
}

fn backend_of(i: &Instance) -> Option<Backend> {
    let state = match i.state {
        // Not ready yet (a deployment waits for its readiness check): no traffic.
        TaskState::Running if i.awaits_readiness() => return None,
        TaskState::Running if !i.is_killing() => BackendState::Running,
        TaskState::Running | TaskState::Killing => BackendState::Draining,
        _ => return None,
    };
    if i.ports.is_empty() {
        return None;
    }
    Some(Backend {
        task_id: i.task_id.as_str().to_string(),
        host: i.host.clone(),
        ports: i
            .ports
            .iter()
            .map(|p| u16::try_from(*p).unwrap_or(0))
            .collect(),
        state,
        healthy: if i.has_health_check {
            i.health.as_ref().map(|h| h.alive)
        } else {
            None
        },
    })
}

/// The subscribers and what they were last sent.
#[derive(Debug)]
pub struct RouteFeed {
    /// Subscribers in subscription order (oldest first), with their group.
    subscribers: Vec<(Upid, Option<String>)>,
    /// Routes as of `version` (what every subscriber holds).
    sent: BTreeMap<String, AppRoutes>,
    version: u64,
    /// This Marathon feeds routes (it runs alone, or leads).
    leading: bool,
    /// The leadership epoch its snapshots carry (0: alone).
    epoch: u64,
    /// The leader as last seen, while standing by.
    leader: Option<String>,
}

impl Default for RouteFeed {
    /// The feed of a Marathon that runs alone.
    fn default() -> Self {
        RouteFeed {
            subscribers: Vec::new(),
            sent: BTreeMap::new(),
            version: 0,
            leading: true,
            epoch: 0,
            leader: None,
        }
    }
}

impl RouteFeed {
    /// The feed of a standby: it answers [`RoutesNotLeader`] until elected.
    pub fn standby() -> Self {
        RouteFeed {
            leading: false,
            ..RouteFeed::default()
        }
    }

    /// True while this feed sends routes.
    pub fn is_leading(&self) -> bool {
        self.leading
    }

    /// This Marathon was elected at `epoch`: every subscriber gets a snapshot of `current`.
    pub fn elected(
        &mut self,
        ctx: &mut Context<'_>,
        epoch: u64,
        current: BTreeMap<String, AppRoutes>,
    ) {
        self.leading = true;
        self.epoch = epoch;
        self.leader = None;
        self.sent = current;
        self.version += 1;
        let snapshot = RoutesSnapshot {
            version: self.version,
            leader_epoch: self.epoch,
            apps: self.sent.values().cloned().collect(),
        };
        for (to, _) in &self.subscribers {
            ctx.send(to, snapshot.clone());
        }
    }

    /// This Marathon no longer leads (`leader`: who does, if known): subscribers are told and
    /// kept.
    pub fn deposed(&mut self, ctx: &mut Context<'_>, leader: Option<&str>) {
        self.leading = false;
        self.sent.clear();
        self.leader_changed(ctx, leader);
    }

    /// While standing by: the leader changed; subscribers are told.
    pub fn leader_changed(&mut self, ctx: &mut Context<'_>, leader: Option<&str>) {
        if self.leading {
            return;
        }
        self.leader = leader.map(str::to_string);
        let notice = RoutesNotLeader {
            leader: self.leader.clone(),
        };
        for (to, _) in &self.subscribers {
            ctx.send(to, notice.clone());
        }
    }

    /// Current version of the feed.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Number of subscribers.
    pub fn subscribers(&self) -> usize {
        self.subscribers.len()
    }

    /// Handle a subscription from `from`: bring the feed up to date (with `current`, if
    /// given: else the snapshot is what was sent last), link, and answer with a snapshot (a
    /// standby answers [`RoutesNotLeader`]). A subscriber that subscribes again (it
    /// resynchronizes) replaces its entry; past [`ROUTE_SUBSCRIBERS_MAX`] the oldest
    /// subscriber is dropped.
    pub fn subscribe(
        &mut self,
        ctx: &mut Context<'_>,
        from: &Upid,
        m: SubscribeRoutes,
        current: Option<BTreeMap<String, AppRoutes>>,
    ) {
        if let Some(current) = current {
            self.flush(ctx, current);
        }
        self.subscribers.retain(|(u, _)| u != from);
        if self.subscribers.len() >= ROUTE_SUBSCRIBERS_MAX {
            let (dropped, _) = self.subscribers.remove(0);
            tracing::warn!(%dropped, "too many route subscribers; dropping the oldest");
            ctx.unlink(&dropped);
        }
        tracing::info!(subscriber = %from, group = ?m.group, version = self.version, leading = self.leading, "routes subscriber");
        self.subscribers.push((from.clone(), m.group));
        ctx.link(from);
        if !self.leading {
            let notice = RoutesNotLeader {
                leader: self.leader.clone(),
            };
            ctx.send(from, notice);
            return;
        }
        ctx.send(
            from,
            RoutesSnapshot {
                leader_epoch: self.epoch,
                version: self.version,
                apps: self.sent.values().cloned().collect(),
            },
        );
    }

    /// Forget a subscriber (its link broke).
    pub fn exited(&mut self, upid: &Upid) {
        self.subscribers.retain(|(u, _)| u != upid);
    }

    /// Send one delta with every app whose routes differ from what was last sent (nothing
    /// when nothing changed). Without subscribers only the remembered state moves on.
    pub fn flush(&mut self, ctx: &mut Context<'_>, current: BTreeMap<String, AppRoutes>) {
        if !self.leading {
            return;
        }
        let delta = diff(&self.sent, &current);
        if delta.upserts.is_empty() && delta.removed_apps.is_empty() {
            return;
        }
        self.sent = current;
        self.version += 1;
        let delta = RoutesChanged {
            version: self.version,
            ..delta
        };
        for (to, _) in &self.subscribers {
            ctx.send(to, delta.clone());
        }
    }
}

/// The delta (version unset) from `old` to `new`.
pub fn diff(old: &BTreeMap<String, AppRoutes>, new: &BTreeMap<String, AppRoutes>) -> RoutesChanged {
    RoutesChanged {
        version: 0,
        upserts: new
            .iter()
            .filter(|(id, r)| old.get(*id) != Some(r))
            .map(|(_, r)| r.clone())
            .collect(),
        removed_apps: old
            .keys()
            .filter(|id| !new.contains_key(*id))
            .cloned()
            .collect(),
    }
}

/// Routes computed from a state whose writes have not committed yet (leader + standbys),
/// each waiting for the last write made before it was computed: released, newest first, when
/// it commits. Bounded by [`ROUTES_WAITING_MAX`]: past it the newest entry is replaced (it
/// waits for the newer write).
#[derive(Debug, Default)]
pub struct RoutesWaiting {
    queue: std::collections::VecDeque<(WriteId, BTreeMap<String, AppRoutes>)>,
}

impl RoutesWaiting {
    /// `routes` are released when `after` commits.
    pub fn push(&mut self, after: WriteId, routes: BTreeMap<String, AppRoutes>) {
        let full = self.queue.len() >= ROUTES_WAITING_MAX;
        match self.queue.back_mut() {
            Some((last, newest)) if *last == after || full => {
                *last = after;
                *newest = routes;
            }
            _ => self.queue.push_back((after, routes)),
        }
    }

    /// Every write up to `committed` committed: the newest routes that waited for them.
    pub fn release(&mut self, committed: WriteId) -> Option<BTreeMap<String, AppRoutes>> {
        let mut out = None;
        while self.queue.front().is_some_and(|(w, _)| *w <= committed) {
            out = self.queue.pop_front().map(|(_, routes)| routes);
        }
        out
    }

    /// Forgets everything (leadership ended, or everything committed).
    pub fn clear(&mut self) {
        self.queue.clear();
    }

    /// Entries waiting.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(id: &str, backends: usize) -> AppRoutes {
        AppRoutes {
            app_id: id.into(),
            service_ports: vec![10000],
            backends: (0..backends)
                .map(|n| Backend {
                    task_id: format!("{id}.{n}"),
                    host: "h".into(),
                    ports: vec![31000 + n as u16],
                    state: BackendState::Running,
                    healthy: None,
                })
                .collect(),
            ..Default::default()
        }
    }

    fn instance(n: u32, state: TaskState, killing: bool, alive: Option<bool>) -> Instance {
        Instance {
            task_id: TaskId::new(format!("web.{n}")),
            app_id: "/web".into(),
            version: String::new(),
            config_version: String::new(),
            state,
            slave_id: None,
            host: "127.0.0.2".into(),
            attributes: Default::default(),
            ports: vec![31000 + n],
            service_ports: vec![10000],
            staged_at_ms: 0,
            started_at_ms: None,
            has_health_check: true,
            health: alive.map(|alive| crate::state::HealthRecord {
                alive,
                ..Default::default()
            }),
            kill_requested_ms: killing.then_some(1),
            unreachable_since_ms: None,
            readiness: None,
        }
    }

    #[test]
    fn routes_follow_task_state_health_and_kills() {
        let app = crate::parse_app(
            br#"{"id": "web", "cmd": "sleep 60", "portDefinitions": [{"port": 10000}],
                 "labels": {"HAPROXY_0_VHOST": "w.test", "OTHER": "x"},
                 "healthChecks": [{"protocol": "HTTP", "portIndex": 0, "path": "/h"}]}"#,
        )
        .unwrap();
        let apps: BTreeMap<String, AppRecord> = [(
            "/web".to_string(),
            AppRecord {
                app,
                versions: BTreeMap::new(),
            },
        )]
        .into();
        let instances: BTreeMap<TaskId, Instance> = [
            instance(1, TaskState::Running, false, Some(true)),
            instance(2, TaskState::Running, true, Some(true)),
            instance(3, TaskState::Staging, false, None),
            instance(4, TaskState::Running, false, Some(false)),
            instance(5, TaskState::Killed, false, None),
            instance(6, TaskState::Killing, false, None),
        ]
        .into_iter()
        .map(|i| (i.task_id.clone(), i))
        .collect();
        let routes = routes_of(&apps, &instances);
        let web = &routes["/web"];
        assert_eq!(web.service_ports, [10000]);
        assert!(web.has_health_checks);
        assert_eq!(
            web.labels.keys().collect::<Vec<_>>(),
            ["HAPROXY_0_VHOST"],
            "only balancer labels"
        );
        let got: Vec<_> = web
            .backends
            .iter()
            .map(|b| (b.task_id.as_str(), b.state, b.healthy, b.ports[0]))
            .collect();
        assert_eq!(
            got,
            [
                ("web.1", BackendState::Running, Some(true), 31001),
                ("web.2", BackendState::Draining, Some(true), 31002),
                ("web.4", BackendState::Running, Some(false), 31004),
                ("web.6", BackendState::Draining, None, 31006),
            ]
        );
    }

    #[test]
    fn diff_sends_only_changed_and_removed_apps() {
        let old: BTreeMap<_, _> = [("/a", 1), ("/b", 1), ("/c", 1)]
            .into_iter()
            .map(|(id, n)| (id.to_string(), app(id, n)))
            .collect();
        let mut new = old.clone();
        new.remove("/c");
        new.insert("/b".into(), app("/b", 2));
        new.insert("/d".into(), app("/d", 0));
        let d = diff(&old, &new);
        let ids: Vec<_> = d.upserts.iter().map(|a| a.app_id.as_str()).collect();
        assert_eq!(ids, ["/b", "/d"]);
        assert_eq!(d.removed_apps, ["/c"]);
        assert!(diff(&new, &new).upserts.is_empty());
    }
}
