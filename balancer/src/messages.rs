//! The wire types between the balancer and Marathon (postcard, through the runtime).
//!
//! The protocol is a versioned change feed, so that a balancer never refetches the whole
//! cluster on every event (marathon-lb's `GET /v2/apps?embed=apps.tasks` per event):
//! 1. the balancer sends [`SubscribeRoutes`] to Marathon and links to it;
//! 2. Marathon answers with a full [`RoutesSnapshot`] at some version `v`;
//! 3. Marathon then sends [`RoutesChanged`] deltas at `v + 1`, `v + 2`, ... in order;
//! 4. on a version gap, a delta before any snapshot, or a broken link (`exited`), the
//!    balancer subscribes again and gets a fresh snapshot. Its data plane keeps serving the
//!    last table meanwhile.
//!
//! With several Marathons (one leader, standbys) the balancer subscribes to each: a standby
//! answers [`RoutesNotLeader`] (naming the leader it knows) and keeps the subscription, so
//! that it sends its [`RoutesSnapshot`] as soon as it is elected; a deposed leader sends
//! [`RoutesNotLeader`] to its subscribers. A snapshot carries the sender's leadership epoch:
//! the balancer switches to a snapshot's sender only if its epoch is not older than the one it
//! follows.
//!
//! Marathon implements the sending side; these types are the contract.

use std::collections::BTreeMap;

use plateau_runtime::Message;
use serde::{Deserialize, Serialize};

/// Balancer → Marathon: send me a full snapshot of the routes, then every change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscribeRoutes {
    /// The balancer group (marathon-lb's `--group`); `None` takes every app. Marathon may
    /// filter on it; the balancer filters again on the `HAPROXY_GROUP` labels.
    pub group: Option<String>,
}

impl Message for SubscribeRoutes {
    const NAME: &'static str = "plateau.balancer.SubscribeRoutes";
}

/// Marathon → balancer: every app's routes at `version` (the answer to a subscription, or
/// sent by a Marathon when it is elected to whoever subscribed while it stood by).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutesSnapshot {
    /// Version of the change feed this snapshot is at; the next delta has `version + 1`.
    pub version: u64,
    /// The sender's leadership epoch (its election's fencing epoch; 0 for a Marathon that
    /// runs alone). A balancer following several Marathons takes a snapshot only from an
    /// epoch at least as recent as the one it follows, so a late snapshot of a deposed leader
    /// never replaces its successor's.
    pub leader_epoch: u64,
    /// Every app that has routes.
    pub apps: Vec<AppRoutes>,
}

impl Message for RoutesSnapshot {
    const NAME: &'static str = "plateau.balancer.RoutesSnapshot";
}

/// Marathon → balancer: this Marathon does not lead (a standby answering a subscription, or a
/// leader that was deposed); `leader` is the leader's advertised address (`host:port`) as it
/// last saw it, `None` when none is known. The subscription is kept: the Marathon sends its
/// snapshot if it is elected.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutesNotLeader {
    /// The leader's `host:port`, if known.
    pub leader: Option<String>,
}

impl Message for RoutesNotLeader {
    const NAME: &'static str = "plateau.balancer.RoutesNotLeader";
}

/// Marathon → balancer: what changed since `version - 1`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutesChanged {
    /// Exactly one more than the previous snapshot's or delta's version.
    pub version: u64,
    /// Apps whose routes are new or changed, each in full (replacing the previous entry).
    pub upserts: Vec<AppRoutes>,
    /// Ids of apps that are gone.
    pub removed_apps: Vec<String>,
}

impl Message for RoutesChanged {
    const NAME: &'static str = "plateau.balancer.RoutesChanged";
}

/// One app as the balancer needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRoutes {
    /// Marathon app id, e.g. `/web`.
    pub app_id: String,
    /// Service ports, one per port index (`portDefinitions[n].port`); 0 means none.
    pub service_ports: Vec<u16>,
    /// The app's labels that concern the balancer (`HAPROXY_*`, `PLATEAU_*`).
    pub labels: BTreeMap<String, String>,
    /// True when the app defines health checks: then only tasks known healthy get traffic.
    pub has_health_checks: bool,
    /// The app's tasks.
    pub backends: Vec<Backend>,
}

/// One task of an app.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backend {
    /// Marathon task id.
    pub task_id: String,
    /// The host (an IP address or a resolvable name) the task's ports are on.
    pub host: String,
    /// Host ports, one per port index of the app.
    pub ports: Vec<u16>,
    /// Whether it may get new connections.
    pub state: BackendState,
    /// Latest health check result; `None` when not known (yet).
    pub healthy: Option<bool>,
}

/// Whether a task takes new connections.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum BackendState {
    /// Running: gets new connections (if healthy, for apps with health checks).
    Running,
    /// About to be killed (TASK_KILLING, or the scheduler intends to kill it): no new
    /// connections; the ones in flight finish.
    Draining,
}
