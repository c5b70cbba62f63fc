//! The balancer process: follows Marathon's change feed and hands each new routing table to
//! the data plane.
//!
//! It subscribes ([`SubscribeRoutes`]) and links to Marathon, applies the snapshot and the
//! deltas to its [`RoutingState`], and publishes the compiled [`Table`] through a
//! [`TablePublisher`] (the real one is the [`DataPlane`]; tests record). It subscribes again:
//! - when the link to Marathon breaks (`exited`), after a backoff doubling from
//!   [`RESUBSCRIBE_BACKOFF_MIN`] to [`RESUBSCRIBE_BACKOFF_MAX`];
//! - when a delta shows a version gap, at once;
//! - when no snapshot answers a subscription within [`SUBSCRIBE_TIMEOUT`].
//!
//! Meanwhile the data plane keeps serving the last table: losing Marathon never empties it.

use std::sync::Arc;
use std::time::Duration;

use plateau_runtime::{Context, Handlers, Message, Node, Process, ProcessRef, Upid};
use serde::{Deserialize, Serialize};

use crate::dataplane::{DataPlane, DataPlaneConfig};
use crate::error::BalancerError;
use crate::limits::{RESUBSCRIBE_BACKOFF_MAX, RESUBSCRIBE_BACKOFF_MIN, SUBSCRIBE_TIMEOUT};
use crate::messages::{RoutesChanged, RoutesSnapshot, SubscribeRoutes};
use crate::table::{DeltaOutcome, RoutingState, Table};

/// Where the process sends each new table: the data plane, or a recorder in tests. Keeps the
/// process free of tokio and actix types.
pub trait TablePublisher: Send + Sync + 'static {
    /// Serve `table` from now on.
    fn publish(&self, table: Arc<Table>);
}

/// Timer: subscribe again if `seq` is still the current attempt.
#[derive(Debug, Serialize, Deserialize)]
struct Resubscribe {
    seq: u64,
}

impl Message for Resubscribe {
    const NAME: &'static str = "plateau.balancer.Resubscribe";
}

/// The balancer actor.
pub struct BalancerProcess {
    marathon: Upid,
    group: Option<String>,
    state: RoutingState,
    publisher: Arc<dyn TablePublisher>,
    table: Arc<Table>,
    /// Current subscription attempt; a timer carrying another value is stale.
    seq: u64,
    /// True from a subscription until its snapshot arrives.
    awaiting_snapshot: bool,
    backoff: Duration,
    subscriptions: u64,
}

impl BalancerProcess {
    /// A balancer following `marathon` for `group` (`None`: every app), publishing to
    /// `publisher`.
    pub fn new(marathon: Upid, group: Option<String>, publisher: Arc<dyn TablePublisher>) -> Self {
        BalancerProcess {
            marathon,
            state: RoutingState::new(group.clone()),
            group,
            publisher,
            table: Arc::new(Table::default()),
            seq: 0,
            awaiting_snapshot: false,
            backoff: RESUBSCRIBE_BACKOFF_MIN,
            subscriptions: 0,
        }
    }

    /// The table last published.
    pub fn table(&self) -> &Arc<Table> {
        &self.table
    }

    /// Version of the change feed applied (`None` before the first snapshot).
    pub fn version(&self) -> Option<u64> {
        self.state.version()
    }

    /// Subscriptions sent so far.
    pub fn subscriptions(&self) -> u64 {
        self.subscriptions
    }

    /// True while a subscription waits for its snapshot.
    pub fn is_awaiting_snapshot(&self) -> bool {
        self.awaiting_snapshot
    }

    /// The Marathon followed.
    pub fn marathon(&self) -> &Upid {
        &self.marathon
    }

    fn subscribe(&mut self, ctx: &mut Context<'_>) {
        self.seq += 1;
        self.awaiting_snapshot = true;
        self.subscriptions += 1;
        ctx.link(&self.marathon);
        ctx.send(
            &self.marathon,
            SubscribeRoutes {
                group: self.group.clone(),
            },
        );
        ctx.delay(SUBSCRIBE_TIMEOUT, Resubscribe { seq: self.seq });
        tracing::info!(marathon = %self.marathon, attempt = self.subscriptions, "subscribing to routes");
    }

    fn publish(&mut self) {
        let table = Arc::new(self.state.table());
        for p in &table.problems {
            tracing::warn!(app = %p.app_id, problem = %p.message, "route problem");
        }
        self.table = table.clone();
        self.publisher.publish(table);
    }

    fn is_from_marathon(&self, from: &Upid) -> bool {
        if from == &self.marathon {
            return true;
        }
        tracing::warn!(%from, marathon = %self.marathon, "routes from a process that is not the followed Marathon; ignored");
        false
    }

    fn handle_snapshot(&mut self, _ctx: &mut Context<'_>, from: &Upid, snapshot: RoutesSnapshot) {
        if !self.is_from_marathon(from) {
            return;
        }
        tracing::info!(
            version = snapshot.version,
            apps = snapshot.apps.len(),
            "routes snapshot"
        );
        self.state.handle_snapshot(snapshot);
        self.awaiting_snapshot = false;
        self.seq += 1; // the subscription timeout is moot
        self.backoff = RESUBSCRIBE_BACKOFF_MIN;
        self.publish();
    }

    fn handle_changed(&mut self, ctx: &mut Context<'_>, from: &Upid, delta: RoutesChanged) {
        if !self.is_from_marathon(from) {
            return;
        }
        let version = delta.version;
        match self.state.handle_changed(delta) {
            DeltaOutcome::Applied => self.publish(),
            DeltaOutcome::Stale => {
                tracing::debug!(version, current = ?self.state.version(), "stale routes delta ignored")
            }
            DeltaOutcome::Resync => {
                // While a subscription is pending its snapshot will resync us; its timeout
                // covers a lost one. Subscribing on every delta would flood Marathon.
                if !self.awaiting_snapshot {
                    tracing::warn!(version, current = ?self.state.version(), "routes delta out of sequence; resubscribing");
                    self.subscribe(ctx);
                }
            }
        }
    }

    fn handle_resubscribe(&mut self, ctx: &mut Context<'_>, from: &Upid, timer: Resubscribe) {
        if from != ctx.self_upid() || timer.seq != self.seq {
            return;
        }
        self.subscribe(ctx);
    }
}

impl Process for BalancerProcess {
    fn install(handlers: &mut Handlers<Self>) {
        handlers
            .on(Self::handle_snapshot)
            .on(Self::handle_changed)
            .on(Self::handle_resubscribe);
    }

    fn initialize(&mut self, ctx: &mut Context<'_>) {
        self.subscribe(ctx);
    }

    fn exited(&mut self, ctx: &mut Context<'_>, upid: &Upid) {
        if upid != &self.marathon {
            return;
        }
        tracing::warn!(marathon = %upid, retry_in = ?self.backoff, "lost Marathon; serving the last table and resubscribing");
        self.seq += 1;
        self.awaiting_snapshot = false;
        ctx.delay(self.backoff, Resubscribe { seq: self.seq });
        self.backoff = (self.backoff * 2).min(RESUBSCRIBE_BACKOFF_MAX);
    }
}

/// How to start a balancer on a node.
#[derive(Clone, Debug)]
pub struct BalancerConfig {
    /// The Marathon to follow.
    pub marathon: Upid,
    /// Balancer group (marathon-lb's `--group`); `None` or `*` exposes every app.
    pub group: Option<String>,
    /// Name of the balancer process on the node.
    pub process_name: String,
    /// Listeners and timeouts of the data plane.
    pub data_plane: DataPlaneConfig,
}

impl BalancerConfig {
    /// Production defaults (process `balancer`, HTTP on :80, admin on :9090) following
    /// `marathon`.
    pub fn new(marathon: Upid) -> Self {
        BalancerConfig {
            marathon,
            group: None,
            process_name: "balancer".into(),
            data_plane: DataPlaneConfig::default(),
        }
    }
}

/// A running balancer: its process and its data plane.
pub struct Balancer {
    /// The process following Marathon.
    pub process: ProcessRef<BalancerProcess>,
    /// The data plane serving the table.
    pub data_plane: DataPlane,
}

/// Start the data plane and spawn the balancer process on `node`. Must be called on the
/// node's actix system thread (as [`Node::spawn`]).
pub fn start(node: &Node, config: BalancerConfig) -> Result<Balancer, BalancerError> {
    let data_plane = DataPlane::start(config.data_plane)?;
    let publisher: Arc<dyn TablePublisher> = Arc::new(data_plane.clone());
    let process = node.spawn(
        &config.process_name,
        BalancerProcess::new(config.marathon, config.group, publisher),
    )?;
    Ok(Balancer {
        process,
        data_plane,
    })
}
