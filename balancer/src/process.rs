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
//!
//! # Several Marathons (leader + standbys)
//!
//! Given several Marathons it follows whichever leads, and only it:
//! - it subscribes to each of them; the leader answers with a snapshot, a standby with
//!   [`RoutesNotLeader`] — and keeps the subscription, so that it sends its snapshot as soon
//!   as it is elected;
//! - it takes a snapshot from any of them whose leadership epoch is not older than the one it
//!   follows (a late snapshot of a deposed leader is ignored), and from then on deltas from
//!   that one only;
//! - when the leader it follows says it no longer leads ([`RoutesNotLeader`]) or its link
//!   breaks, it follows nobody for a while: it subscribes to every Marathon again (at once,
//!   or after the backoff) and keeps serving its last table until the next leader's snapshot
//!   replaces it in one piece;
//! - a standby whose link breaks (it restarted) is subscribed to again after
//!   [`RESUBSCRIBE_BACKOFF_MAX`].

use std::sync::Arc;
use std::time::Duration;

use plateau_runtime::{Context, Handlers, Message, Node, Process, ProcessRef, Upid};
use serde::{Deserialize, Serialize};

use crate::dataplane::{DataPlane, DataPlaneConfig};
use crate::error::BalancerError;
use crate::limits::{RESUBSCRIBE_BACKOFF_MAX, RESUBSCRIBE_BACKOFF_MIN, SUBSCRIBE_TIMEOUT};
use crate::messages::{RoutesChanged, RoutesNotLeader, RoutesSnapshot, SubscribeRoutes};
use crate::table::{DeltaOutcome, RoutingState, Table};

/// Where the process sends each new table: the data plane, or a recorder in tests. Keeps the
/// process free of tokio and actix types.
pub trait TablePublisher: Send + Sync + 'static {
    /// Serve `table` from now on.
    fn publish(&self, table: Arc<Table>);
}

/// Timer: subscribe again to every Marathon if `seq` is still the current attempt.
#[derive(Debug, Serialize, Deserialize)]
struct Resubscribe {
    seq: u64,
}

impl Message for Resubscribe {
    const NAME: &'static str = "plateau.balancer.Resubscribe";
}

/// Timer: subscribe again to one Marathon (a standby whose link broke).
#[derive(Debug, Serialize, Deserialize)]
struct ResubscribeStandby {
    marathon: Upid,
}

impl Message for ResubscribeStandby {
    const NAME: &'static str = "plateau.balancer.ResubscribeStandby";
}

/// Timer: announce the admin API to the masters again.
#[derive(Debug, Serialize, Deserialize)]
struct AnnounceTimer;

impl Message for AnnounceTimer {
    const NAME: &'static str = "plateau.balancer.AnnounceTimer";
}

/// How often the balancer announces its admin API to the masters (they forget it after
/// three silent intervals).
pub const ANNOUNCE_INTERVAL: Duration = Duration::from_secs(10);

/// The balancer actor.
pub struct BalancerProcess {
    /// The Marathons to follow (one, or the instances of a leader + standbys).
    marathons: Vec<Upid>,
    group: Option<String>,
    state: RoutingState,
    publisher: Arc<dyn TablePublisher>,
    table: Arc<Table>,
    /// The Marathon whose feed is applied: the leader, once its snapshot came.
    following: Option<Upid>,
    /// The leadership epoch of the last snapshot taken (never goes down).
    epoch: u64,
    /// Current subscription attempt; a timer carrying another value is stale.
    seq: u64,
    /// True from a subscription until its snapshot arrives.
    awaiting_snapshot: bool,
    backoff: Duration,
    subscriptions: u64,
    /// The masters to announce the admin API to, and its URL (for the web console).
    announce: Option<(Vec<Upid>, String)>,
}

impl BalancerProcess {
    /// A balancer following `marathon` for `group` (`None`: every app), publishing to
    /// `publisher`.
    pub fn new(marathon: Upid, group: Option<String>, publisher: Arc<dyn TablePublisher>) -> Self {
        Self::following(vec![marathon], group, publisher)
    }

    /// A balancer following whichever of `marathons` leads (see the module docs).
    pub fn following(
        marathons: Vec<Upid>,
        group: Option<String>,
        publisher: Arc<dyn TablePublisher>,
    ) -> Self {
        assert!(
            !marathons.is_empty(),
            "a balancer follows at least one Marathon"
        );
        BalancerProcess {
            marathons,
            state: RoutingState::new(group.clone()),
            group,
            publisher,
            table: Arc::new(Table::default()),
            following: None,
            epoch: 0,
            seq: 0,
            awaiting_snapshot: false,
            backoff: RESUBSCRIBE_BACKOFF_MIN,
            subscriptions: 0,
            announce: None,
        }
    }

    /// Announces `url` (the admin API) to `masters` every [`ANNOUNCE_INTERVAL`], so the web
    /// console finds the balancer.
    pub fn announcing(mut self, masters: Vec<Upid>, url: String) -> Self {
        self.announce = (!masters.is_empty()).then_some((masters, url));
        self
    }

    fn handle_announce(&mut self, ctx: &mut Context<'_>, from: &Upid, _: AnnounceTimer) {
        if from != ctx.self_upid() {
            return;
        }
        self.send_announcements(ctx);
    }

    fn send_announcements(&mut self, ctx: &mut Context<'_>) {
        let Some((masters, url)) = &self.announce else {
            return;
        };
        for master in masters {
            ctx.send(
                master,
                plateau_master::messages::AnnounceServiceMessage {
                    kind: "balancer".to_string(),
                    url: url.clone(),
                },
            );
        }
        ctx.delay(ANNOUNCE_INTERVAL, AnnounceTimer);
    }

    /// The table last published.
    pub fn table(&self) -> &Arc<Table> {
        &self.table
    }

    /// Version of the change feed applied (`None` before the first snapshot).
    pub fn version(&self) -> Option<u64> {
        self.state.version()
    }

    /// Rounds of subscriptions sent so far.
    pub fn subscriptions(&self) -> u64 {
        self.subscriptions
    }

    /// True while a subscription waits for its snapshot.
    pub fn is_awaiting_snapshot(&self) -> bool {
        self.awaiting_snapshot
    }

    /// The Marathons it may follow.
    pub fn marathons(&self) -> &[Upid] {
        &self.marathons
    }

    /// The Marathon followed (the leader whose snapshot was taken), if any now.
    pub fn followed(&self) -> Option<&Upid> {
        self.following.as_ref()
    }

    /// The leadership epoch of the feed followed.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    fn send_subscription(&self, ctx: &mut Context<'_>, to: &Upid) {
        ctx.link(to);
        ctx.send(
            to,
            SubscribeRoutes {
                group: self.group.clone(),
            },
        );
    }

    /// A round: subscribes to the Marathon followed, or to every one while none is.
    fn subscribe(&mut self, ctx: &mut Context<'_>) {
        self.seq += 1;
        self.awaiting_snapshot = true;
        self.subscriptions += 1;
        match self.following.clone() {
            Some(leader) => self.send_subscription(ctx, &leader),
            None => {
                for m in self.marathons.clone() {
                    self.send_subscription(ctx, &m);
                }
            }
        }
        ctx.delay(SUBSCRIBE_TIMEOUT, Resubscribe { seq: self.seq });
        tracing::info!(followed = ?self.following.as_ref().map(Upid::to_string), attempt = self.subscriptions, "subscribing to routes");
    }

    /// Stop following the leader (it lost the leadership or its link): keep the table, look
    /// for the next leader after `delay`.
    fn lose_leader(&mut self, ctx: &mut Context<'_>, delay: Duration) {
        self.following = None;
        self.seq += 1;
        self.awaiting_snapshot = false;
        ctx.delay(delay, Resubscribe { seq: self.seq });
    }

    fn publish(&mut self) {
        let table = Arc::new(self.state.table());
        for p in &table.problems {
            tracing::warn!(app = %p.app_id, problem = %p.message, "route problem");
        }
        self.table = table.clone();
        self.publisher.publish(table);
    }

    fn handle_snapshot(&mut self, _ctx: &mut Context<'_>, from: &Upid, snapshot: RoutesSnapshot) {
        if !self.marathons.contains(from) {
            tracing::warn!(%from, "routes from a process that is not a followed Marathon; ignored");
            return;
        }
        let is_followed = self.following.as_ref() == Some(from);
        if !is_followed && snapshot.leader_epoch < self.epoch {
            tracing::info!(%from, epoch = snapshot.leader_epoch, followed_epoch = self.epoch, "snapshot of an older leadership ignored");
            return;
        }
        if !is_followed {
            tracing::info!(marathon = %from, epoch = snapshot.leader_epoch, "following a new leading Marathon");
        }
        tracing::info!(
            version = snapshot.version,
            apps = snapshot.apps.len(),
            "routes snapshot"
        );
        self.following = Some(from.clone());
        self.epoch = self.epoch.max(snapshot.leader_epoch);
        self.state.handle_snapshot(snapshot);
        self.awaiting_snapshot = false;
        self.seq += 1; // the subscription timeout is moot
        self.backoff = RESUBSCRIBE_BACKOFF_MIN;
        self.publish();
    }

    fn handle_changed(&mut self, ctx: &mut Context<'_>, from: &Upid, delta: RoutesChanged) {
        if self.following.as_ref() != Some(from) {
            tracing::debug!(%from, "routes delta from a Marathon not followed; ignored");
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

    fn handle_not_leader(&mut self, ctx: &mut Context<'_>, from: &Upid, m: RoutesNotLeader) {
        if self.following.as_ref() != Some(from) {
            // A standby: it keeps the subscription and sends its snapshot when elected.
            return;
        }
        tracing::warn!(marathon = %from, leader = ?m.leader, "the followed Marathon no longer leads; serving the last table and looking for the leader");
        self.lose_leader(ctx, Duration::ZERO);
    }

    fn handle_resubscribe(&mut self, ctx: &mut Context<'_>, from: &Upid, timer: Resubscribe) {
        if from != ctx.self_upid() || timer.seq != self.seq {
            return;
        }
        self.subscribe(ctx);
    }

    fn handle_resubscribe_standby(
        &mut self,
        ctx: &mut Context<'_>,
        from: &Upid,
        timer: ResubscribeStandby,
    ) {
        if from != ctx.self_upid() || self.following.as_ref() == Some(&timer.marathon) {
            return;
        }
        self.send_subscription(ctx, &timer.marathon);
    }
}

impl Process for BalancerProcess {
    fn install(handlers: &mut Handlers<Self>) {
        handlers
            .on(Self::handle_snapshot)
            .on(Self::handle_changed)
            .on(Self::handle_not_leader)
            .on(Self::handle_resubscribe)
            .on(Self::handle_resubscribe_standby)
            .on(Self::handle_announce);
        // The routes come from Marathon (a framework); the rest is local.
        handlers
            .allow_roles(
                plateau_runtime::RoleSet::of(&[plateau_runtime::Role::Framework]),
                &[
                    RoutesSnapshot::NAME,
                    RoutesChanged::NAME,
                    RoutesNotLeader::NAME,
                ],
            )
            .allow_others(plateau_runtime::RoleSet::NONE);
    }

    fn initialize(&mut self, ctx: &mut Context<'_>) {
        self.subscribe(ctx);
        self.send_announcements(ctx);
    }

    fn exited(&mut self, ctx: &mut Context<'_>, upid: &Upid) {
        if !self.marathons.contains(upid) {
            return;
        }
        match &self.following {
            // A standby went away (or restarted): it forgot the subscription.
            Some(leader) if leader != upid => {
                ctx.delay(
                    RESUBSCRIBE_BACKOFF_MAX,
                    ResubscribeStandby {
                        marathon: upid.clone(),
                    },
                );
            }
            _ => {
                tracing::warn!(marathon = %upid, retry_in = ?self.backoff, "lost Marathon; serving the last table and resubscribing");
                let delay = self.backoff;
                self.lose_leader(ctx, delay);
                self.backoff = (self.backoff * 2).min(RESUBSCRIBE_BACKOFF_MAX);
            }
        }
    }
}

/// How to start a balancer on a node.
#[derive(Clone, Debug)]
pub struct BalancerConfig {
    /// The Marathons to follow: one, or every instance of a leader + standbys (the balancer
    /// follows whichever leads).
    pub marathons: Vec<Upid>,
    /// Balancer group (marathon-lb's `--group`); `None` or `*` exposes every app.
    pub group: Option<String>,
    /// Name of the balancer process on the node.
    pub process_name: String,
    /// Listeners and timeouts of the data plane.
    pub data_plane: DataPlaneConfig,
    /// The masters to announce the admin API to, for the web console (none: no announcement).
    pub masters: Vec<Upid>,
}

impl BalancerConfig {
    /// Production defaults (process `balancer`, HTTP on :80, admin on :9090) following
    /// `marathon`.
    pub fn new(marathon: Upid) -> Self {
        Self::following(vec![marathon])
    }

    /// The same following whichever of `marathons` leads.
    pub fn following(marathons: Vec<Upid>) -> Self {
        BalancerConfig {
            marathons,
            group: None,
            process_name: "balancer".into(),
            data_plane: DataPlaneConfig::default(),
            masters: Vec::new(),
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
    // The admin API's URL, as the masters' console reaches it.
    let admin_url = config.data_plane.admin_addr.map(|addr| {
        let scheme = if config.data_plane.admin_security.tls.is_some() {
            "https"
        } else {
            "http"
        };
        if addr.ip().is_unspecified() {
            format!("{scheme}://{}:{}", node.addr().host, addr.port())
        } else {
            format!("{scheme}://{addr}")
        }
    });
    let data_plane = DataPlane::start(config.data_plane)?;
    let publisher: Arc<dyn TablePublisher> = Arc::new(data_plane.clone());
    let mut process = BalancerProcess::following(config.marathons, config.group, publisher);
    if let Some(url) = admin_url {
        process = process.announcing(config.masters, url);
    }
    let process = node.spawn(&config.process_name, process)?;
    Ok(Balancer {
        process,
        data_plane,
    })
}
