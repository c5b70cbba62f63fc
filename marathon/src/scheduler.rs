//! The Marathon scheduler: a [`plateau_sdk::Scheduler`] that keeps apps running.
//!
//! It owns the state (apps with their versions, instances, deployments, launch backoff) and
//! drives it toward the apps' definitions:
//!
//! - **Launch queue.** For each app, the number of instances to launch is computed from the
//!   state (`instances` minus active instances; during a restart, bounded by the upgrade
//!   strategy). Offers are matched against it: resources (cpus, mem, disk and
//!   `portDefinitions.len()` host ports — the service ports themselves with `requirePorts`),
//!   constraints ([`crate::constraints`]), backoff ([`crate::backoff`]). Unused offers are
//!   declined for Marathon's `--decline_offer_duration` (120 s); offers are suppressed when
//!   nothing is to be launched and revived when the launchable demand grows (new app, scale up,
//!   a failed task, the end of a backoff).
//! - **Replacement.** A task that ends (FAILED, FINISHED, KILLED, ERROR, DROPPED, GONE,
//!   UNKNOWN) is expunged; the app is then short of an instance and a replacement is queued.
//!   FAILED, FINISHED and ERROR (unless Marathon killed the task) count as launch failures for
//!   the backoff, which is reset by a healthy task (apps with health checks) or by a task
//!   running for [`MarathonConfig::backoff_reset_after_running`] (apps without), by a new
//!   version and by `DELETE /v2/queue/{id}/delay`. An UNREACHABLE (or LOST) task stops counting
//!   after `unreachableStrategy.inactiveAfterSeconds` (Marathon's default 0: at once) and is
//!   forgotten after `expungeAfterSeconds`; if it comes back while still known it counts again
//!   and the surplus is killed; if it was forgotten it is an unknown task and is killed.
//! - **Health.** The slave runs the first of the app's health checks (HTTP/HTTPS/MESOS_HTTP*
//!   → HTTP, TCP/MESOS_TCP → TCP, COMMAND → command; the port is `port` or the host port at
//!   `portIndex`) and reports verdicts in status updates; they become `healthCheckResults`.
//!   After `maxConsecutiveFailures` the slave kills the task (TASK_FAILED, TaskUnhealthy) and
//!   it is replaced.
//! - **Deployments.** Every change creates a deployment (a plan of steps of actions
//!   `StartApplication`, `ScaleApplication`, `RestartApplication`, `StopApplication`); a step
//!   is done when its apps have converged. A restart replaces instances whose config version
//!   differs from the app's (`versionInfo.lastConfigChangeAt`), never letting the number of
//!   ready instances (RUNNING, and healthy if the app has health checks) fall below
//!   `ceil(instances × minimumHealthCapacity)` by its own kills, and never running more than
//!   `floor(instances × (1 + maximumOverCapacity))` instances (one more if both are equal).
//!   A change to an app locked by a deployment is refused (409) unless `force=true`, which
//!   cancels the locking deployments. `DELETE /v2/deployments/{id}` rolls back (a new
//!   deployment to the apps' previous definitions); with `force=true` it only removes the
//!   deployment (the apps keep their new definition; no further rolling replacement happens
//!   for them, only scaling).
//! - **One instance per agent.** An app labelled `"PLATEAU_ONE_PER_AGENT": "true"`
//!   ([`ONE_PER_AGENT_LABEL`]) runs exactly one instance on every known slave that matches its
//!   constraints: `instances` is ignored. Slaves are known from offers (offers are never
//!   suppressed while such an app exists) and forgotten when lost.
//! - **Reconciliation.** On (re)registration, and every
//!   [`MarathonConfig::reconciliation_interval`], all live tasks are reconciled explicitly,
//!   then implicitly. Tasks reported that Marathon does not know are killed; known tasks the
//!   master reports as unknown are expunged and replaced.
//! - **Persistence.** Every change is written to the [`Store`] before the API answers and
//!   before a launch is sent (instances are recorded as STAGING, then launched), so a restarted
//!   Marathon re-registers as the same framework (`failover_timeout` one week, as Marathon)
//!   and launches nothing twice. A store that cannot be written stops the scheduler (failover:
//!   its tasks keep running), as Marathon abdicates.
//!
//! - **Readiness.** A task launched by a deployment of an app with a readiness check is probed
//!   by Marathon itself ([`crate::readiness`]: `GET http://host:<port named portName><path>`
//!   every `intervalSeconds` once it is RUNNING) until it answers one of
//!   `httpStatusCodesForReady`; until then it does not count as ready (the deployment waits,
//!   a rolling restart kills no old instance for it) and balancers get no traffic to it. The
//!   verdict is persisted with the instance; a restarted Marathon resumes the probes.
//!   Replacements outside deployments are not checked, as in Marathon.
//!
//! Not done: groups, pods, dependencies between apps (single-app plans
//! only), resident apps, container port mappings beyond counting their host ports.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use plateau_balancer::messages::SubscribeRoutes;
use plateau_master::resources::{Ranges, Resources};
use plateau_runtime::{Context, Handlers, Message, Upid};
use plateau_sdk::{
    CommandInfo, Driver, Filters, FrameworkId, FrameworkInfo, HealthCheck as WireHealthCheck,
    HealthCheckKind, Masters, Offer, Reason, Scheduler, SchedulerDriver, SlaveId, TaskId, TaskInfo,
    TaskState, TaskStatus,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::app::{AppCounts, UnreachableStrategy, VersionInfo};
use crate::app::{AppDefinition, AppWithStatus, DeploymentRef, EnvValue, HealthCheckProtocol};
use crate::backoff::{BackoffStrategy, LaunchBackoff};
use crate::constraints::{
    agent_matches, select_instances_to_kill, KillCandidate, KillPriority, Placement,
};
use crate::error::Error;
use crate::events::{EventBus, Subscription};
use crate::limits;
use crate::readiness::{HttpReadinessProber, ReadinessProber, ReadinessRequest, ReadinessResult};
use crate::state::{
    actions_json, app_id_of_task, task_id_for, ts, uuid_from_bytes, ActionKind, AppRecord,
    Deployment, DeploymentAction, HealthRecord, Instance, ReadinessRecord, TaskFailure,
};
use crate::store::{Store, StoreOp};
use crate::validation::{parse_app, parse_app_put, AppPut};

/// The label that makes an app run one instance on every matching slave.
pub const ONE_PER_AGENT_LABEL: &str = "PLATEAU_ONE_PER_AGENT";

/// Marathon's settings.
#[derive(Debug, Clone)]
pub struct MarathonConfig {
    /// Framework name (`--framework_name`, default `marathon`).
    pub framework_name: String,
    /// Role (`--mesos_role`, default `*`).
    pub role: String,
    /// This host's name (for `/v2/info`, `/v2/leader` and the framework info).
    pub hostname: String,
    /// HTTP port (`--http_port`, default 8080).
    pub http_port: u16,
    /// The master's address as given, `HOST:PORT` (a group: `HOST:PORT,HOST:PORT,...`), for
    /// `/v2/info`.
    pub master: String,
    /// How long declined offers are filtered (`--decline_offer_duration`, default 120 s).
    pub decline_offer_duration: Duration,
    /// Framework failover timeout (`--failover_timeout`, default 604800 s: one week).
    pub failover_timeout_secs: f64,
    /// Service ports range (`--local_port_min/max`, 10000-20000).
    pub local_port_min: u32,
    /// See `local_port_min`.
    pub local_port_max: u32,
    /// Periodic reconciliation (`--reconciliation_interval`, default 600 s).
    pub reconciliation_interval: Duration,
    /// Periodic housekeeping: overdue kills, backoff expiry, unreachable instances.
    pub tick_interval: Duration,
    /// A kill not confirmed after this long is sent again.
    pub kill_retry: Duration,
    /// A task not RUNNING this long after its launch is killed and replaced
    /// (`--task_launch_timeout`, default 300 s).
    pub task_launch_timeout: Duration,
    /// An app without health checks has its backoff reset once a task ran this long.
    pub backoff_reset_after_running: Duration,
}

impl Default for MarathonConfig {
    fn default() -> Self {
        MarathonConfig {
            framework_name: "marathon".into(),
            role: "*".into(),
            hostname: "localhost".into(),
            http_port: 8080,
            master: "127.0.0.1:5050".into(),
            decline_offer_duration: Duration::from_secs(120),
            failover_timeout_secs: 604_800.0,
            local_port_min: 10_000,
            local_port_max: 20_000,
            reconciliation_interval: Duration::from_secs(600),
            tick_interval: Duration::from_secs(5),
            kill_retry: Duration::from_secs(10),
            task_launch_timeout: Duration::from_secs(300),
            backoff_reset_after_running: Duration::from_secs(60),
        }
    }
}

/// The answer of an API call: status, JSON body (none: empty), extra headers.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiResponse {
    /// HTTP status.
    pub status: u16,
    /// JSON body; `None` for an empty body.
    pub body: Option<Value>,
    /// Extra headers (`Location`, `Marathon-Deployment-Id`).
    pub headers: Vec<(String, String)>,
}

impl ApiResponse {
    /// A JSON answer.
    pub fn json(status: u16, body: Value) -> Self {
        ApiResponse {
            status,
            body: Some(body),
            headers: Vec::new(),
        }
    }

    /// `{"message": ...}`.
    pub fn message(status: u16, message: impl Into<String>) -> Self {
        Self::json(status, json!({"message": message.into()}))
    }

    fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    fn deployment(status: u16, deployment: &Deployment) -> Self {
        Self::json(
            status,
            json!({"deploymentId": deployment.id, "version": deployment.version}),
        )
        .with_header("Marathon-Deployment-Id", deployment.id.clone())
    }
}

/// Who called the API (for `api_post_event`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiCaller {
    /// The client's IP address.
    pub client_ip: String,
    /// The request URI.
    pub uri: String,
}

/// What `embed` asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Embed {
    /// `apps.tasks`.
    pub tasks: bool,
    /// `apps.counts` (always on for app listings).
    pub counts: bool,
    /// `apps.deployments`.
    pub deployments: bool,
    /// `apps.readiness`.
    pub readiness: bool,
    /// `apps.lastTaskFailure`.
    pub last_task_failure: bool,
    /// `apps.taskStats`.
    pub task_stats: bool,
}

impl Embed {
    /// Parses `embed` values; the prefixes `apps.`, `app.`, `group.apps.` or none are accepted,
    /// unknown values ignored.
    pub fn parse<'a>(values: impl IntoIterator<Item = &'a str>) -> Self {
        let mut embed = Embed::default();
        for value in values {
            let name = ["group.apps.", "apps.", "app."]
                .iter()
                .find_map(|p| value.strip_prefix(p))
                .unwrap_or(value);
            match name {
                "tasks" => {
                    embed.tasks = true;
                    embed.deployments = true;
                }
                "counts" => embed.counts = true,
                "deployments" => embed.deployments = true,
                "readiness" => embed.readiness = true,
                "lastTaskFailure" => embed.last_task_failure = true,
                "taskStats" => embed.task_stats = true,
                "failures" => {
                    embed.tasks = true;
                    embed.last_task_failure = true;
                    embed.deployments = true;
                }
                _ => {}
            }
        }
        embed
    }
}

/// A slave seen in offers.
#[derive(Debug, Clone, PartialEq)]
struct SlaveSeen {
    placement: Placement,
}

/// Offer-matching statistics of one app (for `processedOffersSummary`).
#[derive(Debug, Clone, Default, PartialEq)]
struct OfferStats {
    processed: u64,
    unused: u64,
    last_unused_ms: Option<i64>,
    last_used_ms: Option<i64>,
    rejects: BTreeMap<&'static str, u64>,
}

const REJECT_REASONS: [&str; 10] = [
    "UnfulfilledRole",
    "UnfulfilledConstraint",
    "NoCorrespondingReservationFound",
    "AgentMaintenance",
    "InsufficientCpus",
    "InsufficientMemory",
    "InsufficientDisk",
    "InsufficientGpus",
    "InsufficientPorts",
    "DeclinedScarceResources",
];

/// What an app needs now.
#[derive(Debug, Clone, Default, PartialEq)]
struct AppPlan {
    kills: Vec<TaskId>,
    to_launch: u32,
    done: bool,
}

/// Timer: periodic housekeeping.
#[derive(Debug, Serialize, Deserialize)]
pub struct MarathonTick;
impl Message for MarathonTick {
    const NAME: &'static str = "plateau.marathon.Tick";
}

/// To self: commit the status updates handled so far (group commit).
#[derive(Debug, Serialize, Deserialize)]
pub struct MarathonFlush;
impl Message for MarathonFlush {
    const NAME: &'static str = "plateau.marathon.Flush";
}

/// Timer: probe a task's readiness again.
#[derive(Debug, Serialize, Deserialize)]
pub struct ReadinessDue {
    /// The task.
    pub task_id: TaskId,
}
impl Message for ReadinessDue {
    const NAME: &'static str = "plateau.marathon.ReadinessDue";
}

/// Timer: something is due (a backoff ends, an unreachable instance turns inactive).
#[derive(Debug, Serialize, Deserialize)]
pub struct MarathonWake;
impl Message for MarathonWake {
    const NAME: &'static str = "plateau.marathon.Wake";
}

/// Timer: periodic reconciliation.
#[derive(Debug, Serialize, Deserialize)]
pub struct MarathonReconcile;
impl Message for MarathonReconcile {
    const NAME: &'static str = "plateau.marathon.Reconcile";
}

/// The Marathon scheduler (hosted by a [`SchedulerDriver`]).
pub struct MarathonScheduler {
    config: MarathonConfig,
    store: Box<dyn Store>,
    failed: Option<String>,
    framework_id: Option<FrameworkId>,
    apps: BTreeMap<String, AppRecord>,
    instances: BTreeMap<TaskId, Instance>,
    deployments: BTreeMap<String, Deployment>,
    next_deployment_sequence: u64,
    backoffs: BTreeMap<String, LaunchBackoff>,
    queue_since: BTreeMap<String, i64>,
    offer_stats: BTreeMap<String, OfferStats>,
    last_failures: BTreeMap<String, TaskFailure>,
    slaves: BTreeMap<SlaveId, SlaveSeen>,
    suppressed: bool,
    last_demand: u64,
    mono: Duration,
    wall_ms: i64,
    started_wall_ms: Option<i64>,
    launched_total: u64,
    uuid_salt: u64,
    events: EventBus,
    routes: crate::routes::RouteFeed,
    prober: Box<dyn ReadinessProber>,
    /// Readiness probes in flight: task → probe id (a late answer to an older probe is
    /// ignored).
    readiness_in_flight: BTreeMap<TaskId, u64>,
    next_probe_id: u64,
    /// Status-update writes not yet committed, and the updates to acknowledge once they are
    /// (group commit: a burst of updates costs one fsync, not one each).
    pending_ops: Vec<StoreOp>,
    pending_acks: Vec<TaskStatus>,
    flush_scheduled: bool,
}

impl std::fmt::Debug for MarathonScheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MarathonScheduler")
            .field("framework_id", &self.framework_id)
            .field("apps", &self.apps.len())
            .field("instances", &self.instances.len())
            .field("deployments", &self.deployments.len())
            .field("failed", &self.failed)
            .finish()
    }
}

fn unix_ms(wall: SystemTime) -> i64 {
    wall.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn is_one_per_agent(app: &AppDefinition) -> bool {
    app.labels
        .get(ONE_PER_AGENT_LABEL)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// The definition without what a scale or a new version changes: equal means "only scaled".
fn config_of(app: &AppDefinition) -> AppDefinition {
    AppDefinition {
        instances: 0,
        version: None,
        version_info: None,
        ..app.clone()
    }
}

/// `(minHealthy, maxCapacity)` of a rolling restart of `n` instances.
pub fn restart_bounds(
    n: u32,
    minimum_health_capacity: f64,
    maximum_over_capacity: f64,
) -> (u32, u32) {
    let n_f = f64::from(n);
    // The epsilon keeps 3 × 0.7 = 2.0999… from rounding the wrong way.
    let min_healthy = (n_f * minimum_health_capacity - 1e-9).ceil().max(0.0) as u32;
    let mut max_capacity = (n_f * (1.0 + maximum_over_capacity) + 1e-9).floor() as u32;
    if min_healthy >= max_capacity {
        max_capacity = min_healthy + 1;
    }
    (min_healthy.min(n), max_capacity)
}

/// The scheduler's view for a [`SchedulerDriver`] handler or an HTTP call: runs `f` with the
/// scheduler and a driver.
pub fn with_marathon<R>(
    process: &mut SchedulerDriver<MarathonScheduler>,
    ctx: &mut Context<'_>,
    f: impl FnOnce(&mut MarathonScheduler, &mut Driver<'_, '_>) -> R,
) -> R {
    let (scheduler, mut driver) = process.scheduler_and_driver(ctx);
    let r = f(scheduler, &mut driver);
    scheduler.flush_routes(&mut driver);
    r
}

impl MarathonScheduler {
    /// A scheduler on `store`, recovering what it holds.
    pub fn new(config: MarathonConfig, store: Box<dyn Store>) -> Result<Self, Error> {
        let state = store.load()?;
        let next_deployment_sequence = state
            .deployments
            .values()
            .map(|d| d.sequence + 1)
            .max()
            .unwrap_or(0);
        Ok(MarathonScheduler {
            config,
            store,
            failed: None,
            framework_id: state.framework_id,
            apps: state.apps,
            instances: state.instances,
            deployments: state.deployments,
            next_deployment_sequence,
            backoffs: BTreeMap::new(),
            queue_since: BTreeMap::new(),
            offer_stats: BTreeMap::new(),
            last_failures: BTreeMap::new(),
            slaves: BTreeMap::new(),
            suppressed: false,
            last_demand: 0,
            mono: Duration::ZERO,
            wall_ms: 0,
            started_wall_ms: None,
            launched_total: 0,
            uuid_salt: 0,
            events: EventBus::default(),
            routes: crate::routes::RouteFeed::default(),
            prober: Box::new(HttpReadinessProber::new()),
            readiness_in_flight: BTreeMap::new(),
            next_probe_id: 0,
            pending_ops: Vec::new(),
            pending_acks: Vec::new(),
            flush_scheduled: false,
        })
    }

    /// Readiness checks through `prober` instead of real HTTP (tests, simulation).
    pub fn with_readiness_prober(mut self, prober: Box<dyn ReadinessProber>) -> Self {
        self.prober = prober;
        self
    }

    /// The framework info to register with: Marathon's failover timeout, and the stored id
    /// so a restarted Marathon comes back as the same framework.
    pub fn framework_info(&self) -> FrameworkInfo {
        let mut info = FrameworkInfo::new(&self.config.framework_name);
        info.id = self.framework_id.clone();
        info.role = self.config.role.clone();
        info.failover_timeout_secs = self.config.failover_timeout_secs;
        info.hostname = self.config.hostname.clone();
        info.webui_url = Some(format!(
            "http://{}:{}",
            self.config.hostname, self.config.http_port
        ));
        info
    }

    /// A driver hosting a scheduler on `store`, registering with the leader of `masters` (one
    /// master, a `Upid`, or a [`Masters`] group).
    pub fn driver(
        config: MarathonConfig,
        store: Box<dyn Store>,
        masters: impl Into<Masters>,
    ) -> Result<SchedulerDriver<MarathonScheduler>, Error> {
        let scheduler = MarathonScheduler::new(config, store)?;
        Ok(SchedulerDriver::with_masters(
            scheduler.framework_info(),
            masters.into(),
            scheduler,
        ))
    }

    /// The configuration.
    pub fn config(&self) -> &MarathonConfig {
        &self.config
    }

    /// Why the scheduler stopped, if it did (a store failure).
    pub fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// The framework id, once registered.
    pub fn framework_id(&self) -> Option<&FrameworkId> {
        self.framework_id.as_ref()
    }

    /// Apps by id.
    pub fn apps(&self) -> &BTreeMap<String, AppRecord> {
        &self.apps
    }

    /// Instances by task id.
    pub fn instances(&self) -> &BTreeMap<TaskId, Instance> {
        &self.instances
    }

    /// Deployments by id.
    pub fn deployments(&self) -> &BTreeMap<String, Deployment> {
        &self.deployments
    }

    /// Instances of `app_id`.
    pub fn app_instances<'a>(&'a self, app_id: &'a str) -> impl Iterator<Item = &'a Instance> + 'a {
        self.instances.values().filter(move |i| i.app_id == app_id)
    }

    /// Number of instances of `app_id` waiting to be launched (the launch queue count).
    pub fn queued(&self, app_id: &str) -> u32 {
        if self.apps.contains_key(app_id) {
            self.app_plan(app_id).to_launch
        } else {
            0
        }
    }

    /// True while offers are suppressed.
    pub fn is_suppressed(&self) -> bool {
        self.suppressed
    }

    /// Subscribes to the event stream.
    pub fn subscribe(
        &mut self,
        subscription: Subscription,
    ) -> Option<tokio::sync::mpsc::Receiver<bytes::Bytes>> {
        self.events.subscribe(subscription)
    }

    /// Subscribes a `/v2/events` client and announces it (`event_stream_attached`); `None`
    /// when there are too many subscribers.
    pub fn attach_event_stream(
        &mut self,
        d: &mut Driver<'_, '_>,
        subscription: Subscription,
        remote_address: &str,
    ) -> Option<tokio::sync::mpsc::Receiver<bytes::Bytes>> {
        self.touch(d);
        let rx = self.events.subscribe(subscription)?;
        self.publish_stream_attached(remote_address, true);
        Some(rx)
    }

    /// Publishes `event_stream_attached` (or `_detached`) for a subscriber.
    pub fn publish_stream_attached(&mut self, remote_address: &str, attached: bool) {
        let kind = if attached {
            "event_stream_attached"
        } else {
            "event_stream_detached"
        };
        let event = json!({"eventType": kind, "timestamp": ts(self.wall_ms), "remoteAddress": remote_address});
        self.events.publish(kind, &event);
    }

    // ---- routes feed (balancers) -------------------------------------------------------------

    /// A balancer subscribes: it gets a snapshot now, then a delta per change.
    pub fn subscribe_routes(&mut self, d: &mut Driver<'_, '_>, from: &Upid, m: SubscribeRoutes) {
        let current = crate::routes::routes_of(&self.apps, &self.instances);
        self.routes.subscribe(d.ctx(), from, m, current);
    }

    /// Send balancers what changed in the routes since the last flush (nothing if nothing did).
    pub fn flush_routes(&mut self, d: &mut Driver<'_, '_>) {
        if self.routes.subscribers() == 0 {
            return;
        }
        let current = crate::routes::routes_of(&self.apps, &self.instances);
        self.routes.flush(d.ctx(), current);
    }

    /// The routes feed.
    pub fn routes(&self) -> &crate::routes::RouteFeed {
        &self.routes
    }

    // ---- time, persistence, failure --------------------------------------------------------

    fn touch(&mut self, d: &mut Driver<'_, '_>) {
        self.mono = d.ctx().now().since_origin();
        self.wall_ms = unix_ms(d.ctx().wall_clock());
        if self.started_wall_ms.is_none() {
            self.started_wall_ms = Some(self.wall_ms);
        }
    }

    /// Writes `ops` durably, with the status-update writes still pending before them, then
    /// acknowledges those updates. Every write that must be durable before Marathon acts (an
    /// API answer, a launch, a kill) goes through here.
    fn persist(&mut self, d: &mut Driver<'_, '_>, ops: &[StoreOp]) -> bool {
        if self.failed.is_some() {
            return false;
        }
        let result = if self.pending_ops.is_empty() {
            self.store.apply(ops)
        } else {
            let mut all = std::mem::take(&mut self.pending_ops);
            all.extend(ops.iter().cloned());
            self.store.apply(&all)
        };
        match result {
            Ok(()) => {
                for status in std::mem::take(&mut self.pending_acks) {
                    d.acknowledge(&status);
                }
                true
            }
            Err(e) => {
                let message = e.to_string();
                tracing::error!(error = %message, "cannot write Marathon's state; stopping (failover)");
                self.failed = Some(message);
                d.stop(true);
                false
            }
        }
    }

    /// Records a status update's writes for the next group commit and acknowledges the update
    /// only after it: the updates queued behind this one are handled first (a [`MarathonFlush`]
    /// to self comes after them), then one commit covers them all. Until then the change is in
    /// memory only; if Marathon dies first, the master redelivers the unacknowledged updates.
    fn persist_status(&mut self, d: &mut Driver<'_, '_>, ops: Vec<StoreOp>, status: &TaskStatus) {
        if self.failed.is_some() {
            return;
        }
        self.pending_ops.extend(ops);
        if status.uuid.is_some() {
            self.pending_acks.push(status.clone());
        }
        if !self.flush_scheduled {
            self.flush_scheduled = true;
            let me = d.ctx().self_upid().clone();
            d.ctx().send(&me, MarathonFlush);
        }
    }

    /// Commits what [`Self::persist_status`] collected (a [`MarathonFlush`] arrived).
    pub fn on_flush_message(&mut self, d: &mut Driver<'_, '_>) {
        self.flush_scheduled = false;
        if !self.pending_ops.is_empty() || !self.pending_acks.is_empty() {
            self.persist(d, &[]);
        }
        self.flush_routes(d);
    }

    fn unavailable(&self) -> ApiResponse {
        ApiResponse::message(
            503,
            format!(
                "Marathon cannot write its state: {}",
                self.failed.as_deref().unwrap_or("unknown")
            ),
        )
    }

    /// A fresh uuid from the process RNG, salted with this incarnation's start time: a
    /// restarted process gets the same RNG sequence (same node seed, same name) and must not
    /// hand out the same ids again.
    fn new_uuid(&self, d: &mut Driver<'_, '_>) -> String {
        let mut bytes = [0u8; 16];
        rand_bytes(d, &mut bytes);
        let salt = self.uuid_salt.to_le_bytes();
        for (b, s) in bytes.iter_mut().zip(salt) {
            *b ^= s;
        }
        uuid_from_bytes(bytes)
    }

    fn next_version(&self, previous: Option<&AppRecord>) -> String {
        let mut ms = self.wall_ms;
        if let Some(record) = previous {
            for version in record.versions.keys() {
                if let Ok(v) = crate::time::parse_timestamp(version) {
                    ms = ms.max(v + 1);
                }
            }
        }
        crate::time::format_timestamp(ms).unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".into())
    }

    // ---- what each app needs ---------------------------------------------------------------

    fn desired_instances(&self, record: &AppRecord) -> u32 {
        if is_one_per_agent(&record.app) {
            self.slaves
                .values()
                .filter(|s| agent_matches(&record.app.constraints, &s.placement, &[]))
                .count() as u32
        } else {
            record.app.instances
        }
    }

    fn is_inactive(&self, instance: &Instance, app: Option<&AppDefinition>) -> bool {
        if instance.state != TaskState::Unreachable {
            return false;
        }
        let strategy = app.map(|a| a.unreachable_strategy).unwrap_or_default();
        match strategy {
            UnreachableStrategy::Disabled => false,
            UnreachableStrategy::Enabled {
                inactive_after_seconds,
                ..
            } => {
                let since = instance.unreachable_since_ms.unwrap_or(self.wall_ms);
                self.wall_ms - since >= (inactive_after_seconds as i64).saturating_mul(1000)
            }
        }
    }

    /// Alive, not being killed, not inactive: counts toward `instances`.
    fn is_active(&self, instance: &Instance, app: &AppDefinition) -> bool {
        instance.is_alive() && !instance.is_killing() && !self.is_inactive(instance, Some(app))
    }

    /// True when a deployment's current step has an action on `app_id` that `matches`.
    fn has_current_action(&self, app_id: &str, matches: impl Fn(ActionKind) -> bool) -> bool {
        self.deployments.values().any(|d| {
            d.current_actions()
                .iter()
                .any(|a| a.app == app_id && matches(a.action))
        })
    }

    fn is_restarting(&self, app_id: &str) -> bool {
        self.has_current_action(app_id, |a| a == ActionKind::RestartApplication)
    }

    fn kill_candidates(instances: &[&Instance]) -> Vec<KillCandidate> {
        instances
            .iter()
            .map(|i| KillCandidate {
                placement: i.placement(),
                priority: match i.state {
                    TaskState::Unreachable => KillPriority::Unreachable,
                    TaskState::Staging => KillPriority::Staging,
                    TaskState::Starting => KillPriority::Starting,
                    _ => KillPriority::Running,
                },
                started_at_ms: i.started_at_ms.or(Some(i.staged_at_ms)),
            })
            .collect()
    }

    fn app_plan(&self, app_id: &str) -> AppPlan {
        let Some(record) = self.apps.get(app_id) else {
            return AppPlan::default();
        };
        let app = &record.app;
        let n = self.desired_instances(record);
        let alive: Vec<&Instance> = self
            .app_instances(app_id)
            .filter(|i| i.is_alive() && !self.is_inactive(i, Some(app)))
            .collect();
        let active: Vec<&Instance> = alive
            .iter()
            .copied()
            .filter(|i| self.is_active(i, app))
            .collect();
        let mut plan = AppPlan::default();
        if self.is_restarting(app_id) {
            let config_version = record.config_version();
            let (new, old): (Vec<&Instance>, Vec<&Instance>) = active
                .iter()
                .copied()
                .partition(|i| i.config_version == config_version);
            let old_alive = alive
                .iter()
                .filter(|i| i.config_version != config_version)
                .count() as u32;
            let new_alive = alive.len() as u32 - old_alive;
            let (min_healthy, max_capacity) = restart_bounds(
                n,
                app.upgrade_strategy.minimum_health_capacity,
                app.upgrade_strategy.maximum_over_capacity,
            );
            let mut ready = active.iter().filter(|i| i.is_ready()).count() as u32;
            // Old instances that are not ready do not hold capacity: replace them at once.
            for i in old.iter().filter(|i| !i.is_ready()) {
                plan.kills.push(i.task_id.clone());
            }
            let old_ready: Vec<&Instance> = old.iter().copied().filter(|i| i.is_ready()).collect();
            let order = crate::constraints::kill_order(
                &Self::kill_candidates(&old_ready),
                app.kill_selection,
            );
            for index in order {
                if ready <= min_healthy {
                    break;
                }
                plan.kills.push(old_ready[index].task_id.clone());
                ready -= 1;
            }
            if new.len() as u32 > n {
                let candidates = Self::kill_candidates(&new);
                for index in select_instances_to_kill(
                    &app.constraints,
                    &candidates,
                    new.len() - n as usize,
                    app.kill_selection,
                ) {
                    plan.kills.push(new[index].task_id.clone());
                }
            }
            let missing = n.saturating_sub(new.len() as u32);
            let room = max_capacity.saturating_sub(old_alive + new_alive);
            plan.to_launch = missing.min(room);
            plan.done = old_alive == 0
                && new.len() as u32 == n
                && new_alive == n
                && new.iter().all(|i| i.is_ready());
        } else {
            if active.len() as u32 > n {
                let candidates = Self::kill_candidates(&active);
                for index in select_instances_to_kill(
                    &app.constraints,
                    &candidates,
                    active.len() - n as usize,
                    app.kill_selection,
                ) {
                    plan.kills.push(active[index].task_id.clone());
                }
            }
            plan.to_launch = n.saturating_sub(active.len() as u32);
            plan.done = active.len() as u32 == n
                && alive.len() as u32 == n
                && active.iter().all(|i| i.is_ready());
        }
        plan
    }

    fn is_backed_off(&self, app_id: &str) -> bool {
        self.backoffs
            .get(app_id)
            .is_some_and(|b| b.is_backed_off(self.mono))
    }

    /// Instances to launch now, per app (backed-off apps excluded).
    fn launchable(&self) -> BTreeMap<String, u32> {
        self.apps
            .keys()
            .filter(|id| !self.is_backed_off(id))
            .map(|id| (id.clone(), self.app_plan(id).to_launch))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    // ---- convergence -----------------------------------------------------------------------

    /// Kills what must go, advances deployments, adjusts offer interest. Called after every
    /// change.
    fn converge(&mut self, d: &mut Driver<'_, '_>) {
        if self.failed.is_some() {
            return;
        }
        let mut kills: BTreeSet<TaskId> = BTreeSet::new();
        // Instances of apps that no longer exist.
        for i in self.instances.values() {
            if i.is_alive() && !i.is_killing() && !self.apps.contains_key(&i.app_id) {
                kills.insert(i.task_id.clone());
            }
        }
        let mut expunge = Vec::new();
        for i in self.instances.values() {
            if i.state == TaskState::Unreachable {
                let app = self.apps.get(&i.app_id).map(|r| &r.app);
                if let Some(UnreachableStrategy::Enabled {
                    expunge_after_seconds,
                    ..
                }) = app.map(|a| a.unreachable_strategy)
                {
                    let since = i.unreachable_since_ms.unwrap_or(self.wall_ms);
                    if self.wall_ms - since >= (expunge_after_seconds as i64).saturating_mul(1000) {
                        expunge.push(i.task_id.clone());
                    }
                }
            }
        }
        let app_ids: Vec<String> = self.apps.keys().cloned().collect();
        for app_id in &app_ids {
            kills.extend(self.app_plan(app_id).kills);
        }
        let mut ops = Vec::new();
        for id in &expunge {
            self.instances.remove(id);
            ops.push(StoreOp::DeleteInstance(id.clone()));
        }
        for id in &kills {
            if let Some(i) = self.instances.get_mut(id) {
                i.kill_requested_ms = Some(self.wall_ms);
                ops.push(StoreOp::PutInstance(Box::new(i.clone())));
            }
        }
        let events = self.advance_deployments(&mut ops);
        // Queue bookkeeping (`since`).
        for app_id in &app_ids {
            let queued = self.app_plan(app_id).to_launch > 0;
            if queued {
                self.queue_since
                    .entry(app_id.clone())
                    .or_insert(self.wall_ms);
            } else {
                self.queue_since.remove(app_id);
            }
        }
        if !ops.is_empty() && !self.persist(d, &ops) {
            return;
        }
        for (kind, event) in events {
            self.events.publish(kind, &event);
        }
        self.flush_routes(d); // balancers drain before the kills go out
        for id in &kills {
            if d.is_connected() {
                d.kill_task(id);
            }
        }
        self.update_offer_interest(d);
    }

    fn advance_deployments(&mut self, ops: &mut Vec<StoreOp>) -> Vec<(&'static str, Value)> {
        let mut events = Vec::new();
        let ids: Vec<String> = self.sorted_deployment_ids();
        for id in ids {
            while let Some(deployment) = self.deployments.get(&id) {
                if deployment.current_step >= deployment.steps.len() {
                    break;
                }
                let done = deployment.current_actions().iter().all(|a| match a.action {
                    ActionKind::StopApplication => !self
                        .instances
                        .values()
                        .any(|i| i.app_id == a.app && i.is_alive()),
                    _ => self.app_plan(&a.app).done,
                });
                if !done {
                    break;
                }
                let deployment = self.deployments.get_mut(&id).expect("present");
                let step_actions = deployment.current_actions().to_vec();
                deployment.current_step += 1;
                let plan = deployment.plan_json();
                events.push((
                    "deployment_step_success",
                    json!({"eventType": "deployment_step_success", "timestamp": ts(self.wall_ms),
                           "plan": plan, "currentStep": {"actions": actions_json(&step_actions)}}),
                ));
                if deployment.current_step >= deployment.steps.len() {
                    events.push((
                        "deployment_success",
                        json!({"eventType": "deployment_success", "timestamp": ts(self.wall_ms),
                               "id": deployment.id, "plan": plan}),
                    ));
                    self.deployments.remove(&id);
                    ops.push(StoreOp::DeleteDeployment(id.clone()));
                    break;
                }
                ops.push(StoreOp::PutDeployment(Box::new(deployment.clone())));
            }
        }
        events
    }

    fn sorted_deployment_ids(&self) -> Vec<String> {
        let mut ids: Vec<(u64, String)> = self
            .deployments
            .values()
            .map(|d| (d.sequence, d.id.clone()))
            .collect();
        ids.sort();
        ids.into_iter().map(|(_, id)| id).collect()
    }

    fn update_offer_interest(&mut self, d: &mut Driver<'_, '_>) {
        if !d.is_connected() {
            return;
        }
        let demand: u64 = self.launchable().values().map(|&n| u64::from(n)).sum();
        let discovering = self.apps.values().any(|r| is_one_per_agent(&r.app));
        let wants = demand > 0 || discovering;
        if wants && (self.suppressed || demand > self.last_demand) {
            d.revive_offers();
            self.suppressed = false;
        } else if !wants && !self.suppressed {
            d.suppress_offers();
            self.suppressed = true;
        }
        self.last_demand = demand;
    }

    // ---- offers ----------------------------------------------------------------------------

    fn handle_offers(&mut self, d: &mut Driver<'_, '_>, offers: Vec<Offer>) {
        self.touch(d);
        let decline = Filters {
            refuse_seconds: self.config.decline_offer_duration.as_secs_f64(),
        };
        if self.failed.is_some() {
            d.decline_offers(
                offers.iter().map(|o| o.id.clone()).collect(),
                Filters::default(),
            );
            return;
        }
        for offer in &offers {
            if self.slaves.len() < limits::SLAVES_SEEN_MAX
                || self.slaves.contains_key(&offer.slave_id)
            {
                let mut placement = Placement::on_host(&offer.hostname);
                for (name, value) in offer.attributes.iter() {
                    placement
                        .attributes
                        .insert(name.to_string(), crate::state::attr_value(value));
                }
                self.slaves
                    .insert(offer.slave_id.clone(), SlaveSeen { placement });
            }
        }
        // One-per-agent apps may want more now that a slave is known.
        self.converge(d);
        if self.failed.is_some() {
            return;
        }
        let mut launchable = self.launchable();
        let mut declined = Vec::new();
        let mut persisted = true;
        for offer in offers {
            let mut remaining = offer.resources.clone();
            let mut tasks = Vec::new();
            let mut ops = Vec::new();
            for (app_id, count) in launchable.iter_mut() {
                let mut used_any = false;
                while *count > 0 && tasks.len() < limits::INSTANCES_PER_OFFER_MAX {
                    match self.try_place(d, app_id, &offer, &remaining) {
                        Ok((task, instance)) => {
                            remaining = remaining
                                .checked_sub(&task.resources)
                                .expect("placement fits the remaining offer");
                            ops.push(StoreOp::PutInstance(Box::new(instance.clone())));
                            self.instances.insert(instance.task_id.clone(), instance);
                            tasks.push(task);
                            *count -= 1;
                            used_any = true;
                        }
                        Err(reason) => {
                            let stats = self.offer_stats.entry(app_id.clone()).or_default();
                            *stats.rejects.entry(reason).or_default() += 1;
                            break;
                        }
                    }
                }
                let stats = self.offer_stats.entry(app_id.clone()).or_default();
                stats.processed += 1;
                if used_any {
                    stats.last_used_ms = Some(self.wall_ms);
                } else {
                    stats.unused += 1;
                    stats.last_unused_ms = Some(self.wall_ms);
                }
            }
            launchable.retain(|_, n| *n > 0);
            if tasks.is_empty() {
                declined.push(offer.id.clone());
                continue;
            }
            // Recorded as STAGING before the launch leaves: a crash now cannot launch twice.
            if !self.persist(d, &ops) {
                persisted = false;
                break;
            }
            self.launched_total += tasks.len() as u64;
            for task in &tasks {
                if let Some(i) = self.instances.get(&task.task_id) {
                    let event = self.instance_changed_event(i);
                    self.events.publish("instance_changed_event", &event);
                }
            }
            d.launch_tasks(std::slice::from_ref(&offer.id), tasks, Filters::default());
        }
        d.decline_offers(declined, decline);
        if persisted {
            self.converge(d);
        }
    }

    fn try_place(
        &self,
        d: &mut Driver<'_, '_>,
        app_id: &str,
        offer: &Offer,
        remaining: &Resources,
    ) -> Result<(TaskInfo, Instance), &'static str> {
        let record = self.apps.get(app_id).ok_or("UnfulfilledRole")?;
        let app = &record.app;
        let placement = &self
            .slaves
            .get(&offer.slave_id)
            .ok_or("AgentMaintenance")?
            .placement;
        let placed: Vec<Placement> = self
            .app_instances(app_id)
            .filter(|i| self.is_active(i, app))
            .map(Instance::placement)
            .collect();
        if is_one_per_agent(app)
            && self
                .app_instances(app_id)
                .any(|i| self.is_active(i, app) && i.slave_id.as_ref() == Some(&offer.slave_id))
        {
            return Err("UnfulfilledConstraint");
        }
        if !agent_matches(&app.constraints, placement, &placed) {
            return Err("UnfulfilledConstraint");
        }
        let scalars =
            Resources::new(app.cpus, app.mem, app.disk).map_err(|_| "InsufficientCpus")?;
        if remaining.cpus_milli() < scalars.cpus_milli() {
            return Err("InsufficientCpus");
        }
        if remaining.mem_milli() < scalars.mem_milli() {
            return Err("InsufficientMemory");
        }
        if remaining.disk_milli() < scalars.disk_milli() {
            return Err("InsufficientDisk");
        }
        if app.gpus > 0 {
            return Err("InsufficientGpus");
        }
        let service_ports: Vec<u32> = app.port_definitions.iter().map(|p| p.port).collect();
        let port_count = app.port_count();
        let host_ports: Vec<u32> = if app.require_ports && app.is_host_networking() {
            let mut taken = Vec::new();
            for &port in &service_ports {
                let port16 = u16::try_from(port).map_err(|_| "InsufficientPorts")?;
                if !remaining.ports().contains_value(port16) || taken.contains(&port) {
                    return Err("InsufficientPorts");
                }
                taken.push(port);
            }
            taken
        } else {
            let mut free = remaining.ports().clone();
            let taken = free
                .take_lowest(port_count as u32)
                .ok_or("InsufficientPorts")?;
            taken
                .iter()
                .flat_map(|(a, b)| u32::from(a)..=u32::from(b))
                .collect()
        };
        let ranges = Ranges::new(
            host_ports
                .iter()
                .map(|&p| (p as u16, p as u16))
                .collect::<Vec<_>>(),
        )
        .map_err(|_| "InsufficientPorts")?;
        let resources = scalars.with_ports(ranges);
        let mut task_id = task_id_for(app_id, &self.new_uuid(d));
        while self.instances.contains_key(&task_id) {
            task_id = task_id_for(app_id, &self.new_uuid(d));
        }
        let version = app.version.clone().unwrap_or_default();
        let task = build_task(app, &task_id, offer, resources, &host_ports);
        let instance = Instance {
            task_id,
            app_id: app_id.to_string(),
            version,
            config_version: record.config_version().to_string(),
            state: TaskState::Staging,
            slave_id: Some(offer.slave_id.clone()),
            host: offer.hostname.clone(),
            attributes: offer.attributes.clone(),
            ports: host_ports,
            service_ports,
            staged_at_ms: self.wall_ms,
            started_at_ms: None,
            has_health_check: task.health_check.is_some(),
            health: None,
            kill_requested_ms: None,
            unreachable_since_ms: None,
            readiness: self.readiness_for_launch(app),
        };
        Ok((task, instance))
    }

    // ---- readiness checks ------------------------------------------------------------------

    /// A task launched while a deployment of its app is in progress waits for the app's
    /// readiness check (Marathon: "a deployment will only finish when all new tasks are
    /// ready"); replacements outside deployments do not.
    fn readiness_for_launch(&self, app: &AppDefinition) -> Option<ReadinessRecord> {
        let check = app.readiness_checks.first()?;
        let deploying = self.has_current_action(&app.id, |a| a != ActionKind::StopApplication);
        deploying.then(|| ReadinessRecord {
            name: check.name.clone(),
            ready: false,
            last_response: None,
        })
    }

    /// Starts a readiness probe of `task_id` if it awaits one and none is in flight.
    fn probe_readiness(&mut self, d: &mut Driver<'_, '_>, task_id: &TaskId) {
        if self.failed.is_some() || self.readiness_in_flight.contains_key(task_id) {
            return;
        }
        let Some(instance) = self.instances.get(task_id) else {
            return;
        };
        if !instance.awaits_readiness() {
            return;
        }
        let Some(app) = self.apps.get(&instance.app_id).map(|r| &r.app) else {
            return;
        };
        let Some(check) = app.readiness_checks.first() else {
            return;
        };
        let port = port_index_of(app, &check.port_name)
            .and_then(|index| instance.ports.get(index))
            .and_then(|port| u16::try_from(*port).ok());
        let request = port.map(|port| ReadinessRequest {
            task_id: task_id.clone(),
            probe_id: self.next_probe_id + 1,
            host: instance.host.clone(),
            port,
            path: check.path.clone(),
            timeout: Duration::from_secs(u64::from(check.timeout_seconds.max(1))),
        });
        let missing_port = format!("the task has no host port named {}", check.port_name);
        self.next_probe_id += 1;
        self.readiness_in_flight
            .insert(task_id.clone(), self.next_probe_id);
        let mailbox = d.ctx().mailbox();
        match request {
            Some(request) => self.prober.probe(request, mailbox),
            None => mailbox.post(ReadinessResult {
                task_id: task_id.clone(),
                probe_id: self.next_probe_id,
                outcome: Err(missing_port),
            }),
        }
    }

    fn handle_readiness_result(&mut self, d: &mut Driver<'_, '_>, result: ReadinessResult) {
        self.touch(d);
        if self.readiness_in_flight.get(&result.task_id) != Some(&result.probe_id) {
            return;
        }
        self.readiness_in_flight.remove(&result.task_id);
        if self.failed.is_some() {
            return;
        }
        let Some(mut instance) = self
            .instances
            .get(&result.task_id)
            .filter(|i| i.awaits_readiness())
            .cloned()
        else {
            return;
        };
        let Some(check) = self
            .apps
            .get(&instance.app_id)
            .and_then(|r| r.app.readiness_checks.first())
            .cloned()
        else {
            return;
        };
        let ready = matches!(&result.outcome,
            Ok(r) if check.http_status_codes_for_ready.contains(&r.status));
        let last_response = if check.preserve_last_response {
            result.outcome.as_ref().ok().cloned()
        } else {
            None
        };
        if let Err(why) = &result.outcome {
            tracing::debug!(task = %result.task_id, %why, "readiness probe failed");
        }
        let record = instance.readiness.as_mut().expect("awaits readiness");
        if record.ready != ready || record.last_response != last_response {
            record.ready = ready;
            record.last_response = last_response;
            if !self.persist(d, &[StoreOp::PutInstance(Box::new(instance.clone()))]) {
                return;
            }
            self.instances.insert(instance.task_id.clone(), instance);
        }
        if ready {
            tracing::info!(task = %result.task_id, "task is ready");
            self.converge(d);
        } else {
            let interval = Duration::from_secs(u64::from(check.interval_seconds.max(1)));
            d.ctx().delay(
                interval,
                ReadinessDue {
                    task_id: result.task_id,
                },
            );
        }
    }

    /// `readinessCheckResults` of an app's live instances that have a readiness check.
    fn readiness_results(&self, app_id: &str) -> Vec<Value> {
        self.app_instances(app_id)
            .filter(|i| i.is_alive())
            .filter_map(|i| i.readiness.as_ref().map(|r| r.to_json(&i.task_id)))
            .collect()
    }

    // ---- status updates --------------------------------------------------------------------

    fn handle_status(&mut self, d: &mut Driver<'_, '_>, status: &TaskStatus) {
        self.touch(d);
        if self.failed.is_some() {
            return;
        }
        let Some(mut instance) = self.instances.get(&status.task_id).cloned() else {
            if !status.state.is_terminal() && status.state != TaskState::Unknown {
                tracing::info!(task = %status.task_id, state = status.state.as_str(), "unknown task; killing it");
                d.kill_task(&status.task_id);
            }
            // Nothing to write: acknowledged with the next commit, after the updates before it.
            self.persist_status(d, Vec::new(), status);
            return;
        };
        let app = self.apps.get(&instance.app_id).map(|r| r.app.clone());
        let previous_state = instance.state;
        let previous_alive = instance.health.as_ref().map(|h| h.alive);
        let mut ops = Vec::new();
        let mut events: Vec<(&'static str, Value)> = Vec::new();
        if let Some(slave) = &status.slave_id {
            instance.slave_id = Some(slave.clone());
        }
        match status.state {
            TaskState::Staging | TaskState::Starting | TaskState::Running | TaskState::Killing => {
                instance.state = status.state;
                instance.unreachable_since_ms = None;
                if status.state == TaskState::Running && instance.started_at_ms.is_none() {
                    instance.started_at_ms = Some(self.wall_ms);
                }
                if let Some(healthy) = status.healthy {
                    let health = instance.health.get_or_insert_with(HealthRecord::default);
                    health.alive = healthy;
                    if healthy {
                        health.consecutive_failures = 0;
                        health.last_success_ms = Some(self.wall_ms);
                        health.first_success_ms.get_or_insert(self.wall_ms);
                    } else {
                        health.consecutive_failures += 1;
                        health.last_failure_ms = Some(self.wall_ms);
                        health.last_failure_cause = status.message.clone();
                    }
                    if previous_alive != Some(healthy) {
                        events.push((
                            "health_status_changed_event",
                            json!({"eventType": "health_status_changed_event", "timestamp": ts(self.wall_ms),
                                   "appId": instance.app_id, "instanceId": instance.instance_id(),
                                   "taskId": instance.task_id.as_str(), "version": instance.version, "alive": healthy}),
                        ));
                    }
                    if healthy {
                        self.backoffs.remove(&instance.app_id);
                    }
                }
                if instance.is_killing() && status.state == TaskState::Running {
                    // A kill is in flight; the task still counts as running until it ends.
                }
                ops.push(StoreOp::PutInstance(Box::new(instance.clone())));
                self.instances
                    .insert(instance.task_id.clone(), instance.clone());
            }
            TaskState::Unreachable | TaskState::Lost => {
                instance.state = TaskState::Unreachable;
                if instance.unreachable_since_ms.is_none() {
                    instance.unreachable_since_ms = Some(self.wall_ms);
                }
                if let Some(UnreachableStrategy::Enabled {
                    inactive_after_seconds,
                    expunge_after_seconds,
                }) = app.as_ref().map(|a| a.unreachable_strategy)
                {
                    for secs in [inactive_after_seconds, expunge_after_seconds] {
                        if secs > 0 {
                            d.ctx().delay(Duration::from_secs(secs), MarathonWake);
                        }
                    }
                }
                ops.push(StoreOp::PutInstance(Box::new(instance.clone())));
                self.instances
                    .insert(instance.task_id.clone(), instance.clone());
            }
            _ => {
                // Terminal (or unknown to the master): expunge; the app is short and queues a
                // replacement.
                instance.state = status.state;
                self.instances.remove(&instance.task_id);
                ops.push(StoreOp::DeleteInstance(instance.task_id.clone()));
                let is_failure = matches!(
                    status.state,
                    TaskState::Failed | TaskState::Finished | TaskState::Error
                ) && !instance.is_killing();
                if matches!(
                    status.state,
                    TaskState::Failed | TaskState::Error | TaskState::Lost | TaskState::Gone
                ) || is_failure
                {
                    self.last_failures.insert(
                        instance.app_id.clone(),
                        TaskFailure {
                            app_id: instance.app_id.clone(),
                            host: instance.host.clone(),
                            message: status.message.clone().unwrap_or_default(),
                            state: status.state.as_str().to_string(),
                            task_id: instance.task_id.to_string(),
                            timestamp_ms: self.wall_ms,
                            version: instance.version.clone(),
                            slave_id: instance.slave_id.as_ref().map(|s| s.to_string()),
                        },
                    );
                }
                if is_failure {
                    if let Some(app) = &app {
                        let strategy = BackoffStrategy::of_app(app);
                        let backoff = self.backoffs.entry(instance.app_id.clone()).or_default();
                        backoff.handle_failure(self.mono, &strategy);
                        let wait = backoff.delay_until.saturating_sub(self.mono);
                        d.ctx().delay(wait, MarathonWake);
                    }
                }
                if status.reason == Some(Reason::TaskUnhealthy) {
                    events.push((
                        "unhealthy_instance_kill_event",
                        json!({"eventType": "unhealthy_instance_kill_event", "timestamp": ts(self.wall_ms),
                               "appId": instance.app_id, "taskId": instance.task_id.as_str(),
                               "instanceId": instance.instance_id(), "version": instance.version,
                               "reason": status.message.clone().unwrap_or_default(),
                               "host": instance.host,
                               "slaveId": instance.slave_id.as_ref().map(|s| s.to_string())}),
                    ));
                }
            }
        }
        self.persist_status(d, ops, status);
        if self.failed.is_some() {
            return;
        }
        if previous_state != instance.state || status.state.is_terminal() {
            events.push((
                "status_update_event",
                self.status_update_event(&instance, status),
            ));
            events.push((
                "instance_changed_event",
                self.instance_changed_event(&instance),
            ));
        }
        for (kind, event) in events {
            self.events.publish(kind, &event);
        }
        if status.state == TaskState::Running {
            self.probe_readiness(d, &instance.task_id);
        }
        self.converge(d);
    }

    fn status_update_event(&self, i: &Instance, status: &TaskStatus) -> Value {
        json!({
            "eventType": "status_update_event",
            "timestamp": ts(self.wall_ms),
            "slaveId": i.slave_id.as_ref().map(|s| s.to_string()).unwrap_or_default(),
            "taskId": i.task_id.as_str(),
            "taskStatus": status.state.as_str(),
            "message": status.message.clone().unwrap_or_default(),
            "appId": i.app_id,
            "host": i.host,
            "ipAddresses": [{"ipAddress": i.host, "protocol": "IPv4"}],
            "ports": i.ports,
            "version": i.version,
        })
    }

    fn instance_changed_event(&self, i: &Instance) -> Value {
        json!({
            "eventType": "instance_changed_event",
            "timestamp": ts(self.wall_ms),
            "instanceId": i.instance_id(),
            "condition": i.condition(),
            "runSpecId": i.app_id,
            "agentId": i.slave_id.as_ref().map(|s| s.to_string()).unwrap_or_default(),
            "host": i.host,
            "runSpecVersion": i.version,
        })
    }

    // ---- registration, reconciliation, timers ----------------------------------------------

    fn handle_registered(&mut self, d: &mut Driver<'_, '_>, id: Option<&FrameworkId>) {
        self.touch(d);
        if let Some(id) = id {
            if self.framework_id.as_ref() != Some(id) {
                if !self.persist(d, &[StoreOp::PutFrameworkId(id.clone())]) {
                    return;
                }
                self.framework_id = Some(id.clone());
            }
        }
        self.suppressed = false;
        self.last_demand = 0;
        self.reconcile(d);
        // Kills that were never confirmed are sent again now that the master listens.
        let pending: Vec<TaskId> = self
            .instances
            .values()
            .filter(|i| i.is_alive() && i.is_killing())
            .map(|i| i.task_id.clone())
            .collect();
        self.flush_routes(d);
        for id in pending {
            d.kill_task(&id);
        }
        self.converge(d);
    }

    fn reconcile(&mut self, d: &mut Driver<'_, '_>) {
        let tasks: Vec<(TaskId, Option<SlaveId>)> = self
            .instances
            .values()
            .filter(|i| i.is_alive())
            .map(|i| (i.task_id.clone(), i.slave_id.clone()))
            .collect();
        if !tasks.is_empty() {
            d.reconcile_tasks(tasks);
        }
        d.reconcile_tasks(Vec::new());
    }

    fn handle_tick(&mut self, d: &mut Driver<'_, '_>) {
        self.touch(d);
        d.ctx().delay(self.config.tick_interval, MarathonTick);
        if self.failed.is_some() {
            return;
        }
        let mono = self.mono;
        let apps = &self.apps;
        self.backoffs.retain(|app_id, b| match apps.get(app_id) {
            Some(r) => !b.is_expired(mono, &BackoffStrategy::of_app(&r.app)),
            None => false,
        });
        // Apps without health checks: a task running long enough resets the backoff.
        let reset_ms = self.config.backoff_reset_after_running.as_millis() as i64;
        let reset: Vec<String> = self
            .backoffs
            .keys()
            .filter(|app_id| {
                self.app_instances(app_id).any(|i| {
                    i.state == TaskState::Running
                        && !i.has_health_check
                        && i.started_at_ms
                            .is_some_and(|s| self.wall_ms - s >= reset_ms)
                })
            })
            .cloned()
            .collect();
        for app_id in reset {
            self.backoffs.remove(&app_id);
        }
        // Launches that never reached RUNNING (a lost launch, a slave that cannot start it):
        // killed, and replaced once the kill is confirmed (Marathon's overdue tasks).
        let timeout_ms = self.config.task_launch_timeout.as_millis() as i64;
        let stuck: Vec<TaskId> = self
            .instances
            .values()
            .filter(|i| {
                i.is_staged() && !i.is_killing() && self.wall_ms - i.staged_at_ms >= timeout_ms
            })
            .map(|i| i.task_id.clone())
            .collect();
        if !stuck.is_empty() {
            let mut ops = Vec::new();
            for id in &stuck {
                if let Some(i) = self.instances.get_mut(id) {
                    tracing::warn!(task = %id, "not running within the task launch timeout: killing it");
                    i.kill_requested_ms = Some(self.wall_ms);
                    ops.push(StoreOp::PutInstance(Box::new(i.clone())));
                }
            }
            if !self.persist(d, &ops) {
                return;
            }
            if d.is_connected() {
                for id in &stuck {
                    d.kill_task(id);
                }
            }
        }
        if d.is_connected() {
            let retry_ms = self.config.kill_retry.as_millis() as i64;
            let overdue: Vec<TaskId> = self
                .instances
                .values()
                .filter(|i| {
                    i.is_alive()
                        && i.kill_requested_ms
                            .is_some_and(|at| self.wall_ms - at >= retry_ms)
                })
                .map(|i| i.task_id.clone())
                .collect();
            self.flush_routes(d);
            for id in overdue {
                d.kill_task(&id);
            }
        }
        self.converge(d);
    }

    // ---- the API ---------------------------------------------------------------------------

    fn conflicts(&self, app_ids: &[String]) -> Vec<String> {
        let ids: BTreeSet<String> = self
            .deployments
            .values()
            .filter(|d| app_ids.iter().any(|a| d.affects(a)))
            .map(|d| d.id.clone())
            .collect();
        ids.into_iter().collect()
    }

    fn conflict_response(ids: &[String]) -> ApiResponse {
        let first = ids.first().cloned().unwrap_or_default();
        ApiResponse::json(
            409,
            json!({
                "message": format!("App is locked by one or more deployments. Override with the option '?force=true'. View details at '/v2/deployments/{first}'."),
                "deployments": ids.iter().map(|id| json!({"id": id})).collect::<Vec<_>>(),
            }),
        )
    }

    /// Checks locks: `Err(409)` without force; with force, the locking deployments are
    /// cancelled (their removal is added to `ops`).
    fn take_locks(
        &mut self,
        app_ids: &[String],
        force: bool,
        ops: &mut Vec<StoreOp>,
    ) -> Result<(), ApiResponse> {
        let conflicting = self.conflicts(app_ids);
        if conflicting.is_empty() {
            return Ok(());
        }
        if !force {
            return Err(Self::conflict_response(&conflicting));
        }
        for id in conflicting {
            self.deployments.remove(&id);
            ops.push(StoreOp::DeleteDeployment(id));
        }
        Ok(())
    }

    fn new_deployment(
        &mut self,
        d: &mut Driver<'_, '_>,
        version: &str,
        actions: Vec<DeploymentAction>,
        original: BTreeMap<String, Option<AppDefinition>>,
    ) -> Deployment {
        let deployment = Deployment {
            id: self.new_uuid(d),
            version: version.to_string(),
            steps: vec![actions],
            current_step: 0,
            original,
            sequence: self.next_deployment_sequence,
        };
        self.next_deployment_sequence += 1;
        deployment
    }

    /// Service ports for `portDefinitions` (and port mappings) with port 0: the previous
    /// version's at the same index if it had one, else the lowest free one in
    /// `local_port_min..=local_port_max` (free: not used by another app).
    fn assign_service_ports(
        &self,
        app: &mut AppDefinition,
        previous: Option<&AppDefinition>,
    ) -> Result<(), ApiResponse> {
        let mut used: BTreeSet<u32> = BTreeSet::new();
        for (id, record) in &self.apps {
            if *id == app.id {
                continue;
            }
            used.extend(service_ports_of(&record.app));
        }
        used.extend(service_ports_of(app));
        let previous_ports: Vec<u32> = previous.map(service_ports_of).unwrap_or_default();
        let mut next = self.config.local_port_min;
        let mut pick = |index: usize, used: &mut BTreeSet<u32>| -> Option<u32> {
            if let Some(&p) = previous_ports.get(index) {
                if p != 0 && !used.contains(&p) {
                    used.insert(p);
                    return Some(p);
                }
            }
            while next <= self.config.local_port_max {
                let candidate = next;
                next += 1;
                if used.insert(candidate) {
                    return Some(candidate);
                }
            }
            None
        };
        let no_ports = || {
            ApiResponse::json(
                422,
                json!({"message": "Object is not valid", "details": [{"path": "/portDefinitions",
                      "errors": ["no free service port left in the local port range"]}]}),
            )
        };
        if app.is_host_networking() {
            for index in 0..app.port_definitions.len() {
                if app.port_definitions[index].port == 0 {
                    app.port_definitions[index].port =
                        pick(index, &mut used).ok_or_else(no_ports)?;
                }
            }
        } else if let Some(mappings) = app
            .container
            .as_mut()
            .and_then(|c| c.port_mappings.as_mut())
        {
            for (index, mapping) in mappings.iter_mut().enumerate() {
                if mapping.service_port == 0 {
                    mapping.service_port = pick(index, &mut used).ok_or_else(no_ports)?;
                }
            }
        }
        Ok(())
    }

    fn check_instances(app: &AppDefinition) -> Result<(), ApiResponse> {
        if app.instances > limits::INSTANCES_PER_APP_MAX {
            return Err(ApiResponse::json(
                422,
                json!({"message": "Object is not valid", "details": [{"path": "/instances",
                      "errors": [format!("must be less than or equal to {}", limits::INSTANCES_PER_APP_MAX)]}]}),
            ));
        }
        Ok(())
    }

    fn api_post_event(&mut self, caller: &ApiCaller, app: &AppDefinition) {
        if !self.events.has_subscribers() {
            return;
        }
        let event = json!({"eventType": "api_post_event", "timestamp": ts(self.wall_ms),
                           "clientIp": caller.client_ip, "uri": caller.uri,
                           "appDefinition": self.app_json(app, Embed::default())});
        self.events.publish("api_post_event", &event);
    }

    fn deployment_info_event(&mut self, deployment: &Deployment) {
        if !self.events.has_subscribers() {
            return;
        }
        let light = deployment.plan_json();
        let mut full = light.clone();
        let target: Vec<&AppDefinition> = self.apps.values().map(|r| &r.app).collect();
        let mut original: BTreeMap<String, AppDefinition> = self
            .apps
            .iter()
            .map(|(id, r)| (id.clone(), r.app.clone()))
            .collect();
        for (id, def) in &deployment.original {
            match def {
                Some(def) => original.insert(id.clone(), def.clone()),
                None => original.remove(id),
            };
        }
        full["original"] = root_group_json(original.values(), &deployment.version);
        full["target"] = root_group_json(target.into_iter(), &deployment.version);
        let current = json!({"actions": actions_json(deployment.current_actions())});
        let event = |plan: Value| {
            json!({"eventType": "deployment_info", "timestamp": ts(self.wall_ms), "plan": plan,
                   "currentStep": current})
        };
        let (full, light) = (event(full), event(light));
        self.events
            .publish_with_light("deployment_info", &full, Some(&light));
    }

    /// Stores an app change and its deployment, then converges. `record` is the new state of
    /// the app (`None`: deleted).
    fn commit_change(
        &mut self,
        d: &mut Driver<'_, '_>,
        mut ops: Vec<StoreOp>,
        changes: Vec<(String, Option<AppRecord>)>,
        deployment: &Deployment,
    ) -> bool {
        for (id, record) in &changes {
            match record {
                Some(r) => ops.push(StoreOp::PutApp(Box::new(r.clone()))),
                None => ops.push(StoreOp::DeleteApp(id.clone())),
            }
        }
        ops.push(StoreOp::PutDeployment(Box::new(deployment.clone())));
        if !self.persist(d, &ops) {
            return false;
        }
        for (id, record) in changes {
            match record {
                Some(r) => {
                    self.apps.insert(id, r);
                }
                None => {
                    self.apps.remove(&id);
                    self.backoffs.remove(&id);
                    self.offer_stats.remove(&id);
                    self.queue_since.remove(&id);
                    let event = json!({"eventType": "app_terminated_event", "timestamp": ts(self.wall_ms), "appId": id});
                    self.events.publish("app_terminated_event", &event);
                }
            }
        }
        self.deployments
            .insert(deployment.id.clone(), deployment.clone());
        self.deployment_info_event(deployment);
        self.converge(d);
        true
    }

    fn stamp(&self, app: &mut AppDefinition, previous: Option<&AppRecord>, config_changed: bool) {
        let version = self.next_version(previous);
        let last_config = match previous {
            Some(p) if !config_changed => p.config_version().to_string(),
            _ => version.clone(),
        };
        app.version = Some(version.clone());
        app.version_info = Some(VersionInfo {
            last_scaling_at: version,
            last_config_change_at: last_config,
        });
    }

    fn with_version(previous: Option<&AppRecord>, app: &AppDefinition) -> AppRecord {
        let mut versions = previous.map(|p| p.versions.clone()).unwrap_or_default();
        versions.insert(app.version.clone().unwrap_or_default(), app.clone());
        while versions.len() > limits::VERSIONS_PER_APP_MAX {
            let oldest = versions.keys().next().cloned().expect("non-empty");
            versions.remove(&oldest);
        }
        AppRecord {
            app: app.clone(),
            versions,
        }
    }

    fn guard(&mut self, d: &mut Driver<'_, '_>) -> Result<(), ApiResponse> {
        self.touch(d);
        if self.failed.is_some() {
            return Err(self.unavailable());
        }
        if self.deployments.len() >= limits::DEPLOYMENTS_MAX {
            return Err(ApiResponse::message(
                403,
                format!(
                    "Max number of running deployments is exceeded: {}",
                    limits::DEPLOYMENTS_MAX
                ),
            ));
        }
        Ok(())
    }

    /// `POST /v2/apps`: 201 with the app, `Location` and `Marathon-Deployment-Id`.
    pub fn create_app(
        &mut self,
        d: &mut Driver<'_, '_>,
        caller: &ApiCaller,
        body: &[u8],
        force: bool,
    ) -> ApiResponse {
        if let Err(r) = self.guard(d) {
            return r;
        }
        let app = match parse_app(body) {
            Ok(app) => app,
            Err(e) => return ApiResponse::json(e.status, e.body),
        };
        if self.apps.contains_key(&app.id) {
            return ApiResponse::message(
                409,
                format!("An app with id [{}] already exists.", app.id),
            );
        }
        self.create(d, caller, app, force, true)
    }

    fn create(
        &mut self,
        d: &mut Driver<'_, '_>,
        caller: &ApiCaller,
        mut app: AppDefinition,
        force: bool,
        post: bool,
    ) -> ApiResponse {
        if self.apps.len() >= limits::APPS_MAX {
            return ApiResponse::message(403, format!("at most {} apps", limits::APPS_MAX));
        }
        if let Err(r) = Self::check_instances(&app) {
            return r;
        }
        let mut ops = Vec::new();
        if let Err(r) = self.take_locks(std::slice::from_ref(&app.id), force, &mut ops) {
            return r;
        }
        if let Err(r) = self.assign_service_ports(&mut app, None) {
            return r;
        }
        self.stamp(&mut app, None, true);
        let record = Self::with_version(None, &app);
        let version = app.version.clone().unwrap_or_default();
        let deployment = self.new_deployment(
            d,
            &version,
            vec![DeploymentAction {
                action: ActionKind::StartApplication,
                app: app.id.clone(),
            }],
            BTreeMap::from([(app.id.clone(), None)]),
        );
        self.api_post_event(caller, &app);
        if !self.commit_change(d, ops, vec![(app.id.clone(), Some(record))], &deployment) {
            return self.unavailable();
        }
        let location = format!("/v2/apps{}", app.id);
        if post {
            let mut body = self.app_json(&app, Embed::default());
            body["deployments"] = json!([{"id": deployment.id}]);
            ApiResponse::json(201, body)
                .with_header("Location", location)
                .with_header("Marathon-Deployment-Id", deployment.id.clone())
        } else {
            ApiResponse::deployment(201, &deployment).with_header("Location", location)
        }
    }

    /// `PUT /v2/apps/{id}` (create, update, scale, rollback with `{"version": ...}`).
    pub fn put_app(
        &mut self,
        d: &mut Driver<'_, '_>,
        caller: &ApiCaller,
        url_id: &str,
        body: &[u8],
        force: bool,
        partial_update: bool,
    ) -> ApiResponse {
        if let Err(r) = self.guard(d) {
            return r;
        }
        let id = crate::app::canonical_path_id(url_id, "/");
        let existing = self.apps.get(&id).cloned();
        let mut rollback = false;
        let new_app = match parse_app_put(
            body,
            url_id,
            existing.as_ref().map(|r| &r.app),
            partial_update,
        ) {
            Err(e) => return ApiResponse::json(e.status, e.body),
            Ok(AppPut::App(app)) => *app,
            Ok(AppPut::Rollback { version }) => {
                rollback = true;
                let Some(record) = &existing else {
                    return ApiResponse::message(404, format!("App '{id}' does not exist"));
                };
                match record.versions.get(&version) {
                    Some(app) => app.clone(),
                    None => {
                        return ApiResponse::message(
                            404,
                            format!("App '{id}' does not exist in version {version}"),
                        )
                    }
                }
            }
        };
        let Some(existing) = existing else {
            return self.create(d, caller, new_app, force, false);
        };
        self.update(d, caller, existing, new_app, force, None, rollback)
    }

    #[allow(clippy::too_many_arguments)]
    fn update(
        &mut self,
        d: &mut Driver<'_, '_>,
        caller: &ApiCaller,
        existing: AppRecord,
        mut app: AppDefinition,
        force: bool,
        forced_action: Option<ActionKind>,
        rollback: bool,
    ) -> ApiResponse {
        if let Err(r) = Self::check_instances(&app) {
            return r;
        }
        let mut ops = Vec::new();
        if let Err(r) = self.take_locks(std::slice::from_ref(&app.id), force, &mut ops) {
            return r;
        }
        if let Err(r) = self.assign_service_ports(&mut app, Some(&existing.app)) {
            return r;
        }
        let config_changed = forced_action == Some(ActionKind::RestartApplication)
            || config_of(&app) != config_of(&existing.app);
        // A rollback to a version whose instances may still run keeps that version's config
        // stamp, so those instances count as current.
        let restored_stamp = app
            .version_info
            .as_ref()
            .map(|v| v.last_config_change_at.clone())
            .filter(|_| rollback && config_changed);
        self.stamp(&mut app, Some(&existing), config_changed);
        if let (Some(stamp), Some(info)) = (restored_stamp, app.version_info.as_mut()) {
            info.last_config_change_at = stamp;
        }
        let version = app.version.clone().unwrap_or_default();
        let action = forced_action.unwrap_or(if config_changed {
            ActionKind::RestartApplication
        } else {
            ActionKind::ScaleApplication
        });
        if config_changed {
            // A new version starts without the old one's backoff.
            self.backoffs.remove(&app.id);
        }
        let record = Self::with_version(Some(&existing), &app);
        let deployment = self.new_deployment(
            d,
            &version,
            vec![DeploymentAction {
                action,
                app: app.id.clone(),
            }],
            BTreeMap::from([(app.id.clone(), Some(existing.app.clone()))]),
        );
        self.api_post_event(caller, &app);
        if !self.commit_change(d, ops, vec![(app.id.clone(), Some(record))], &deployment) {
            return self.unavailable();
        }
        ApiResponse::deployment(200, &deployment)
    }

    /// `DELETE /v2/apps/{id}`.
    pub fn delete_app(&mut self, d: &mut Driver<'_, '_>, url_id: &str, force: bool) -> ApiResponse {
        if let Err(r) = self.guard(d) {
            return r;
        }
        let id = crate::app::canonical_path_id(url_id, "/");
        let Some(existing) = self.apps.get(&id).cloned() else {
            return ApiResponse::message(404, format!("App '{id}' does not exist"));
        };
        let mut ops = Vec::new();
        if let Err(r) = self.take_locks(std::slice::from_ref(&id), force, &mut ops) {
            return r;
        }
        let version = self.next_version(Some(&existing));
        let deployment = self.new_deployment(
            d,
            &version,
            vec![DeploymentAction {
                action: ActionKind::StopApplication,
                app: id.clone(),
            }],
            BTreeMap::from([(id.clone(), Some(existing.app.clone()))]),
        );
        if !self.commit_change(d, ops, vec![(id, None)], &deployment) {
            return self.unavailable();
        }
        ApiResponse::deployment(200, &deployment)
    }

    /// `POST /v2/apps/{id}/restart`.
    pub fn restart_app(
        &mut self,
        d: &mut Driver<'_, '_>,
        caller: &ApiCaller,
        url_id: &str,
        force: bool,
    ) -> ApiResponse {
        if let Err(r) = self.guard(d) {
            return r;
        }
        let id = crate::app::canonical_path_id(url_id, "/");
        let Some(existing) = self.apps.get(&id).cloned() else {
            return ApiResponse::message(404, format!("App '{id}' does not exist"));
        };
        let app = existing.app.clone();
        self.update(
            d,
            caller,
            existing,
            app,
            force,
            Some(ActionKind::RestartApplication),
            false,
        )
    }

    /// `DELETE /v2/apps/{id}/tasks[/{taskId}]` with `host`, `scale`, `wipe`, `force`.
    #[allow(clippy::too_many_arguments)]
    pub fn kill_app_tasks(
        &mut self,
        d: &mut Driver<'_, '_>,
        url_id: &str,
        task_id: Option<&str>,
        host: Option<&str>,
        scale: bool,
        wipe: bool,
        force: bool,
    ) -> ApiResponse {
        if let Err(r) = self.guard(d) {
            return r;
        }
        let id = crate::app::canonical_path_id(url_id, "/");
        if !self.apps.contains_key(&id) {
            return ApiResponse::message(404, format!("App '{id}' does not exist"));
        }
        if scale && wipe {
            return ApiResponse::message(400, "You cannot use scale and wipe at the same time.");
        }
        let selected: Vec<TaskId> = self
            .app_instances(&id)
            .filter(|i| i.is_alive())
            .filter(|i| task_id.is_none_or(|t| i.task_id.as_str() == t))
            .filter(|i| host.is_none_or(|h| i.host == h))
            .map(|i| i.task_id.clone())
            .collect();
        if let Some(t) = task_id {
            if selected.is_empty() {
                return ApiResponse::message(404, format!("Task '{t}' does not exist"));
            }
        }
        let response = self.kill_instances(d, selected, scale, wipe, force);
        match (task_id, response) {
            (Some(_), Ok(tasks)) => ApiResponse::json(
                200,
                json!({"task": tasks.first().cloned().unwrap_or(Value::Null)}),
            ),
            (None, Ok(tasks)) => ApiResponse::json(200, json!({"tasks": tasks})),
            (_, Err(r)) => r,
        }
    }

    /// `POST /v2/tasks/delete` with `{"ids": [...]}`.
    pub fn kill_tasks(
        &mut self,
        d: &mut Driver<'_, '_>,
        body: &[u8],
        scale: bool,
        wipe: bool,
        force: bool,
    ) -> ApiResponse {
        if let Err(r) = self.guard(d) {
            return r;
        }
        if scale && wipe {
            return ApiResponse::message(400, "You cannot use scale and wipe at the same time.");
        }
        #[derive(Deserialize)]
        struct Ids {
            ids: Vec<String>,
        }
        let ids: Ids = match serde_json::from_slice(body) {
            Ok(ids) => ids,
            Err(e) => {
                return ApiResponse::json(
                    400,
                    json!({"message": "Invalid JSON", "details": e.to_string()}),
                )
            }
        };
        if ids.ids.len() > limits::TASK_IDS_PER_KILL_MAX {
            return ApiResponse::message(
                400,
                format!("at most {} task ids", limits::TASK_IDS_PER_KILL_MAX),
            );
        }
        let mut selected = Vec::new();
        for id in &ids.ids {
            if app_id_of_task(id).is_none() {
                return ApiResponse::message(400, format!("Invalid task id '{id}'"));
            }
            if self
                .instances
                .get(id.as_str())
                .is_some_and(Instance::is_alive)
            {
                selected.push(TaskId::new(id.clone()));
            }
        }
        match self.kill_instances(d, selected, scale, wipe, force) {
            Ok(tasks) => ApiResponse::json(200, json!({"tasks": tasks})),
            Err(r) => r,
        }
    }

    /// Kills instances; with `scale`, lowers their apps' `instances` in one deployment (whose
    /// result is returned as `Err`, as it is the answer); with `wipe`, forgets them at once.
    fn kill_instances(
        &mut self,
        d: &mut Driver<'_, '_>,
        selected: Vec<TaskId>,
        scale: bool,
        wipe: bool,
        force: bool,
    ) -> Result<Vec<Value>, ApiResponse> {
        let mut ops = Vec::new();
        let tasks: Vec<Value> = selected
            .iter()
            .filter_map(|id| self.instances.get(id).map(Instance::task_json))
            .collect();
        if scale {
            let mut per_app: BTreeMap<String, u32> = BTreeMap::new();
            for id in &selected {
                if let Some(i) = self.instances.get(id) {
                    *per_app.entry(i.app_id.clone()).or_default() += 1;
                }
            }
            let app_ids: Vec<String> = per_app.keys().cloned().collect();
            self.take_locks(&app_ids, force, &mut ops)?;
            let mut changes = Vec::new();
            let mut original = BTreeMap::new();
            let mut actions = Vec::new();
            let mut version = String::new();
            for (app_id, count) in &per_app {
                let Some(existing) = self.apps.get(app_id).cloned() else {
                    continue;
                };
                let mut app = existing.app.clone();
                app.instances = app.instances.saturating_sub(*count);
                self.stamp(&mut app, Some(&existing), false);
                version = app.version.clone().unwrap_or_default();
                original.insert(app_id.clone(), Some(existing.app.clone()));
                actions.push(DeploymentAction {
                    action: ActionKind::ScaleApplication,
                    app: app_id.clone(),
                });
                changes.push((
                    app_id.clone(),
                    Some(Self::with_version(Some(&existing), &app)),
                ));
            }
            for id in &selected {
                if let Some(i) = self.instances.get_mut(id) {
                    i.kill_requested_ms = Some(self.wall_ms);
                    ops.push(StoreOp::PutInstance(Box::new(i.clone())));
                }
            }
            if version.is_empty() {
                version = self.next_version(None);
            }
            let deployment = self.new_deployment(d, &version, actions, original);
            if !self.commit_change(d, ops, changes, &deployment) {
                return Err(self.unavailable());
            }
            self.flush_routes(d);
            for id in &selected {
                d.kill_task(id);
            }
            return Err(ApiResponse::deployment(200, &deployment));
        }
        for id in &selected {
            if wipe {
                self.instances.remove(id);
                ops.push(StoreOp::DeleteInstance(id.clone()));
            } else if let Some(i) = self.instances.get_mut(id) {
                i.kill_requested_ms = Some(self.wall_ms);
                ops.push(StoreOp::PutInstance(Box::new(i.clone())));
            }
        }
        if !self.persist(d, &ops) {
            return Err(self.unavailable());
        }
        self.flush_routes(d);
        for id in &selected {
            d.kill_task(id);
        }
        self.converge(d);
        Ok(tasks)
    }

    /// `DELETE /v2/deployments/{id}`: a rollback deployment (200), or with `force` just
    /// removed (202, empty body).
    pub fn delete_deployment(
        &mut self,
        d: &mut Driver<'_, '_>,
        id: &str,
        force: bool,
    ) -> ApiResponse {
        self.touch(d);
        if self.failed.is_some() {
            return self.unavailable();
        }
        let Some(cancelled) = self.deployments.get(id).cloned() else {
            return ApiResponse::message(404, format!("DeploymentPlan {id} does not exist"));
        };
        let mut ops = vec![StoreOp::DeleteDeployment(id.to_string())];
        if force {
            if !self.persist(d, &ops) {
                return self.unavailable();
            }
            self.deployments.remove(id);
            let event = json!({"eventType": "deployment_failed", "timestamp": ts(self.wall_ms),
                               "id": id, "plan": cancelled.plan_json(), "reason": "cancelled"});
            self.events.publish("deployment_failed", &event);
            self.converge(d);
            return ApiResponse {
                status: 202,
                body: None,
                headers: Vec::new(),
            };
        }
        self.deployments.remove(id);
        let mut changes = Vec::new();
        let mut actions = Vec::new();
        let mut original = BTreeMap::new();
        let mut version = String::new();
        for (app_id, before) in &cancelled.original {
            let current = self.apps.get(app_id).cloned();
            original.insert(app_id.clone(), current.as_ref().map(|r| r.app.clone()));
            match (before, current) {
                (None, Some(_)) => {
                    actions.push(DeploymentAction {
                        action: ActionKind::StopApplication,
                        app: app_id.clone(),
                    });
                    changes.push((app_id.clone(), None));
                }
                (Some(before), current) => {
                    let mut app = before.clone();
                    let stamp = before
                        .version_info
                        .as_ref()
                        .map(|v| v.last_config_change_at.clone());
                    let config_changed = current
                        .as_ref()
                        .is_none_or(|c| config_of(&c.app) != config_of(before));
                    self.stamp(&mut app, current.as_ref(), !config_changed);
                    // Back to the old config stamp: instances of the old version count again.
                    if let (Some(stamp), Some(info)) = (stamp, app.version_info.as_mut()) {
                        info.last_config_change_at = stamp;
                    }
                    version = app.version.clone().unwrap_or_default();
                    let action = match &current {
                        None => ActionKind::StartApplication,
                        Some(_) if config_changed => ActionKind::RestartApplication,
                        Some(_) => ActionKind::ScaleApplication,
                    };
                    actions.push(DeploymentAction {
                        action,
                        app: app_id.clone(),
                    });
                    changes.push((
                        app_id.clone(),
                        Some(Self::with_version(current.as_ref(), &app)),
                    ));
                }
                (None, None) => {}
            }
        }
        if version.is_empty() {
            version = self.next_version(None);
        }
        // Other deployments on these apps are superseded by the rollback.
        let app_ids: Vec<String> = cancelled.original.keys().cloned().collect();
        let _ = self.take_locks(&app_ids, true, &mut ops);
        let deployment = self.new_deployment(d, &version, actions, original);
        if !self.commit_change(d, ops, changes, &deployment) {
            return self.unavailable();
        }
        ApiResponse::deployment(200, &deployment)
    }

    /// `DELETE /v2/queue/{id}/delay`: 204, or 404 when the app is not queued.
    pub fn reset_delay(&mut self, d: &mut Driver<'_, '_>, url_id: &str) -> ApiResponse {
        self.touch(d);
        let id = crate::app::canonical_path_id(url_id, "/");
        if !self.apps.contains_key(&id)
            || (self.queued(&id) == 0 && !self.backoffs.contains_key(&id))
        {
            return ApiResponse::message(
                404,
                format!("Application {id} not found in tasks queue."),
            );
        }
        self.backoffs.remove(&id);
        self.converge(d);
        ApiResponse {
            status: 204,
            body: None,
            headers: Vec::new(),
        }
    }

    // ---- read views ------------------------------------------------------------------------

    fn counts(&self, app_id: &str) -> AppCounts {
        let mut counts = AppCounts::default();
        for i in self.app_instances(app_id).filter(|i| i.is_alive()) {
            match i.state {
                TaskState::Staging | TaskState::Starting => counts.tasks_staged += 1,
                TaskState::Running | TaskState::Killing => counts.tasks_running += 1,
                _ => {}
            }
            match i.health.as_ref().map(|h| h.alive) {
                Some(true) => counts.tasks_healthy += 1,
                Some(false) => counts.tasks_unhealthy += 1,
                None => {}
            }
        }
        counts
    }

    fn app_deployments(&self, app_id: &str) -> Vec<DeploymentRef> {
        self.sorted_deployment_ids()
            .into_iter()
            .filter(|id| self.deployments[id].affects(app_id))
            .map(|id| DeploymentRef { id })
            .collect()
    }

    /// An app as the API shows it, with counts and deployments and the asked embeds.
    pub fn app_json(&self, app: &AppDefinition, embed: Embed) -> Value {
        let mut value = serde_json::to_value(AppWithStatus {
            app,
            counts: self.counts(&app.id),
            deployments: self.app_deployments(&app.id),
        })
        .unwrap_or(Value::Null);
        if embed.tasks {
            value["tasks"] = Value::Array(
                self.app_instances(&app.id)
                    .filter(|i| i.is_alive())
                    .map(Instance::task_json)
                    .collect(),
            );
        }
        if embed.last_task_failure {
            if let Some(f) = self.last_failures.get(&app.id) {
                value["lastTaskFailure"] = f.to_json();
            }
        }
        if embed.readiness {
            value["readinessCheckResults"] = Value::Array(self.readiness_results(&app.id));
        }
        value
    }

    /// `GET /v2/apps`: `{"apps": [...]}`, filtered by `id` (substring, case-insensitive),
    /// `cmd` (substring) and `label` (selector).
    pub fn apps_json(
        &self,
        embed: Embed,
        id: Option<&str>,
        cmd: Option<&str>,
        label: Option<&str>,
    ) -> Value {
        let id = id.map(str::to_ascii_lowercase);
        let apps: Vec<Value> = self
            .apps
            .values()
            .map(|r| &r.app)
            .filter(|a| {
                id.as_ref()
                    .is_none_or(|f| a.id.to_ascii_lowercase().contains(f.as_str()))
            })
            .filter(|a| cmd.is_none_or(|c| a.cmd.as_deref().is_some_and(|x| x.contains(c))))
            .filter(|a| label.is_none_or(|l| label_selector_matches(l, &a.labels)))
            .map(|a| self.app_json(a, embed))
            .collect();
        json!({"apps": apps})
    }

    /// `GET /v2/apps/{id}` (`{"app": ...}`) or `/v2/apps/{group}/*` (`{"*": [...]}`).
    pub fn get_app(&self, url_id: &str, embed: Embed) -> ApiResponse {
        if let Some(group) = url_id.strip_suffix("/*").or(url_id.strip_suffix("*")) {
            let prefix = crate::app::canonical_path_id(group, "/");
            let prefix = if prefix.ends_with('/') {
                prefix
            } else {
                format!("{prefix}/")
            };
            let apps: Vec<Value> = self
                .apps
                .values()
                .filter(|r| r.app.id.starts_with(&prefix))
                .map(|r| self.app_json(&r.app, embed))
                .collect();
            return ApiResponse::json(200, json!({"*": apps}));
        }
        let id = crate::app::canonical_path_id(url_id, "/");
        match self.apps.get(&id) {
            Some(r) => {
                let embed = Embed {
                    tasks: true,
                    last_task_failure: true,
                    deployments: true,
                    counts: true,
                    ..embed
                };
                ApiResponse::json(200, json!({"app": self.app_json(&r.app, embed)}))
            }
            None => ApiResponse::message(404, format!("App '{id}' does not exist")),
        }
    }

    /// `GET /v2/apps/{id}/tasks`.
    pub fn app_tasks(&self, url_id: &str) -> ApiResponse {
        let id = crate::app::canonical_path_id(url_id, "/");
        if !self.apps.contains_key(&id) {
            return ApiResponse::message(404, format!("App '{id}' does not exist"));
        }
        let tasks: Vec<Value> = self
            .app_instances(&id)
            .filter(|i| i.is_alive())
            .map(Instance::task_json)
            .collect();
        ApiResponse::json(200, json!({"tasks": tasks}))
    }

    /// `GET /v2/tasks[?status=running|staging]`.
    pub fn tasks_json(&self, statuses: &[String]) -> Value {
        let wanted: BTreeSet<String> = statuses.iter().map(|s| s.to_ascii_lowercase()).collect();
        let tasks: Vec<Value> = self
            .instances
            .values()
            .filter(|i| i.is_alive())
            .filter(|i| {
                wanted.is_empty()
                    || (wanted.contains("running") && i.state == TaskState::Running)
                    || (wanted.contains("staging") && i.is_staged())
            })
            .map(Instance::task_json)
            .collect();
        json!({"tasks": tasks})
    }

    /// `GET /v2/apps/{id}/versions`.
    pub fn versions(&self, url_id: &str) -> ApiResponse {
        let id = crate::app::canonical_path_id(url_id, "/");
        match self.apps.get(&id) {
            Some(r) => ApiResponse::json(
                200,
                json!({"versions": r.versions.keys().rev().collect::<Vec<_>>()}),
            ),
            None => ApiResponse::message(404, format!("App '{id}' does not exist")),
        }
    }

    /// `GET /v2/apps/{id}/versions/{version}`: the bare app.
    pub fn version(&self, url_id: &str, version: &str) -> ApiResponse {
        let id = crate::app::canonical_path_id(url_id, "/");
        let canonical =
            crate::time::canonical_timestamp(version).unwrap_or_else(|_| version.to_string());
        match self.apps.get(&id).and_then(|r| r.versions.get(&canonical)) {
            Some(app) => ApiResponse::json(200, serde_json::to_value(app).unwrap_or(Value::Null)),
            None => ApiResponse::message(
                404,
                format!("App '{id}' does not exist in version {version}"),
            ),
        }
    }

    /// `GET /v2/deployments`: a JSON array, oldest first.
    pub fn deployments_json(&self) -> Value {
        Value::Array(
            self.sorted_deployment_ids()
                .iter()
                .map(|id| self.deployments[id].to_json(&|app| self.readiness_results(app)))
                .collect(),
        )
    }

    /// `GET /v2/queue`.
    pub fn queue_json(&self, mono_now: Duration) -> Value {
        let mut items = Vec::new();
        for (id, record) in &self.apps {
            let count = self.app_plan(id).to_launch;
            if count == 0 {
                continue;
            }
            let delay = self
                .backoffs
                .get(id)
                .map(|b| b.queue_delay(mono_now))
                .unwrap_or(crate::backoff::QueueDelay {
                    time_left_seconds: 0,
                    overdue: true,
                });
            let stats = self.offer_stats.get(id).cloned().unwrap_or_default();
            let rejects: Vec<Value> = REJECT_REASONS
                .iter()
                .map(|r| {
                    let n = stats.rejects.get(r).copied().unwrap_or(0);
                    json!({"reason": r, "declined": n, "processed": stats.processed})
                })
                .collect();
            let mut summary = json!({
                "processedOffersCount": stats.processed,
                "unusedOffersCount": stats.unused,
                "rejectSummaryLastOffers": rejects,
                "rejectSummaryLaunchAttempt": rejects,
            });
            if let Some(at) = stats.last_unused_ms {
                summary["lastUnusedOfferAt"] = ts(at);
            }
            if let Some(at) = stats.last_used_ms {
                summary["lastUsedOfferAt"] = ts(at);
            }
            items.push(json!({
                "app": self.app_json(&record.app, Embed::default()),
                "count": count,
                "delay": delay,
                "since": ts(self.queue_since.get(id).copied().unwrap_or(self.wall_ms)),
                "processedOffersSummary": summary,
            }));
        }
        json!({"queue": items})
    }

    /// `GET /v2/info`.
    pub fn info_json(&self, connected: bool) -> Value {
        let c = &self.config;
        let leader = format!("{}:{}", c.hostname, c.http_port);
        let marathon_config = json!({
            "access_control_allow_origin": null,
            "checkpoint": true,
            "decline_offer_duration": c.decline_offer_duration.as_millis() as u64,
            "default_network_name": null,
            "env_vars_prefix": null,
            "executor": "//cmd",
            "failover_timeout": c.failover_timeout_secs as u64,
            "features": [],
            "framework_name": c.framework_name,
            "ha": false,
            "hostname": c.hostname,
            "launch_token": 100,
            "launch_token_refresh_interval": 30000,
            "leader_proxy_connection_timeout_ms": 5000,
            "leader_proxy_read_timeout_ms": 10000,
            "local_port_max": c.local_port_max,
            "local_port_min": c.local_port_min,
            "maintenance_mode": false,
            "master": c.master,
            "max_instances_per_offer": limits::INSTANCES_PER_OFFER_MAX,
            "mesos_bridge_name": "mesos-bridge",
            "mesos_heartbeat_failure_threshold": 5,
            "mesos_heartbeat_interval": 15000,
            "mesos_leader_ui_url": null,
            "mesos_role": c.role,
            "mesos_user": "root",
            "min_revive_offers_interval": 5000,
            "new_group_enforce_role": "Off",
            "offer_matching_timeout": 3000,
            "on_elected_prepare_timeout": 180000,
            "reconciliation_initial_delay": 0,
            "reconciliation_interval": c.reconciliation_interval.as_millis() as u64,
            "scale_apps_initial_delay": 0,
            "scale_apps_interval": c.tick_interval.as_millis() as u64,
            "store_cache": true,
            "task_launch_confirm_timeout": 300000,
            "task_launch_timeout": c.task_launch_timeout.as_millis() as u64,
            "task_lost_expunge_initial_delay": 300000,
            "task_lost_expunge_interval": 30000,
            "task_reservation_timeout": 20000,
            "webui_url": null,
        });
        json!({
            "name": "marathon",
            "version": "1.10.0-plateau",
            "buildref": env!("CARGO_PKG_VERSION"),
            "elected": true,
            "leader": leader,
            "frameworkId": self.framework_id.as_ref().map(|f| f.to_string()),
            "marathon_config": marathon_config,
            "zookeeper_config": {
                "zk": "",
                "zk_compression": false,
                "zk_compression_threshold": 65536,
                "zk_connection_timeout": 10000,
                "zk_max_node_size": 1024000,
                "zk_max_versions": limits::VERSIONS_PER_APP_MAX,
                "zk_session_timeout": 10000,
                "zk_timeout": 10000,
            },
            "http_config": {"http_port": c.http_port, "https_port": 8443},
            "connected_to_master": connected,
        })
    }

    /// `GET /metrics`: Dropwizard-shaped JSON.
    pub fn metrics_json(&self) -> Value {
        let running = self
            .instances
            .values()
            .filter(|i| i.state == TaskState::Running)
            .count();
        let staged = self.instances.values().filter(|i| i.is_staged()).count();
        let leadership =
            (self.wall_ms - self.started_wall_ms.unwrap_or(self.wall_ms)).max(0) / 1000;
        let gauge = |v: f64| json!({"value": v});
        json!({
            "version": "4.0.0",
            "counters": {
                "marathon.tasks.launched.counter": {"count": self.launched_total},
                "marathon.http.event-streams.dropped.counter": {"count": self.events.dropped_subscribers()},
                "marathon.events.published.counter": {"count": self.events.published()},
            },
            "gauges": {
                "marathon.apps.active.gauge": gauge(self.apps.len() as f64),
                "marathon.deployments.active.gauge": gauge(self.deployments.len() as f64),
                "marathon.instances.running.gauge": gauge(running as f64),
                "marathon.instances.staged.gauge": gauge(staged as f64),
                "marathon.instances.launch-overdue.gauge": gauge(self.launchable().values().sum::<u32>() as f64),
                "marathon.http.event-streams.active.gauge": gauge(self.events.subscriber_count() as f64),
                "marathon.leadership.duration.gauge.seconds": gauge(leadership as f64),
            },
            "histograms": {},
            "meters": {},
            "timers": {},
        })
    }
}

fn rand_bytes(d: &mut Driver<'_, '_>, out: &mut [u8]) {
    for chunk in out.chunks_mut(8) {
        let v = d.ctx().rng().between(0, u64::MAX).to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}

/// The index of the port named `name` (host networking: `portDefinitions`; otherwise the
/// container's `portMappings`), which is also the index of its host port in a task's ports.
fn port_index_of(app: &AppDefinition, name: &str) -> Option<usize> {
    if app.is_host_networking() {
        app.port_definitions
            .iter()
            .position(|p| p.name.as_deref() == Some(name))
    } else {
        app.container
            .as_ref()
            .and_then(|c| c.port_mappings.as_ref())
            .and_then(|m| m.iter().position(|p| p.name.as_deref() == Some(name)))
    }
}

pub(crate) fn service_ports_of(app: &AppDefinition) -> Vec<u32> {
    if app.is_host_networking() {
        app.port_definitions.iter().map(|p| p.port).collect()
    } else {
        app.container
            .as_ref()
            .and_then(|c| c.port_mappings.as_ref())
            .map(|m| m.iter().map(|p| p.service_port).collect())
            .unwrap_or_default()
    }
}

/// The root group `{id, apps, groups, pods, dependencies, version}` of deployment events.
fn root_group_json<'a>(apps: impl Iterator<Item = &'a AppDefinition>, version: &str) -> Value {
    let apps: Vec<Value> = apps
        .map(|a| serde_json::to_value(a).unwrap_or(Value::Null))
        .collect();
    json!({"id": "/", "apps": apps, "groups": [], "pods": [], "dependencies": [], "version": version})
}

/// Marathon's label selector: comma-separated terms (all must hold): `key`, `key==v`,
/// `key!=v`, `key in (a,b)`, `key notin (a,b)`.
pub fn label_selector_matches(selector: &str, labels: &BTreeMap<String, String>) -> bool {
    // Split on commas outside parentheses.
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in selector.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(&selector[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&selector[start..]);
    terms
        .into_iter()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .all(|term| {
            let set = |rest: &str| -> Vec<String> {
                rest.trim()
                    .trim_start_matches('(')
                    .trim_end_matches(')')
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .collect()
            };
            if let Some((k, v)) = term.split_once("==") {
                labels.get(k.trim()).is_some_and(|x| x == v.trim())
            } else if let Some((k, v)) = term.split_once("!=") {
                labels.get(k.trim()).is_none_or(|x| x != v.trim())
            } else if let Some((k, rest)) = term.split_once(" notin ") {
                labels.get(k.trim()).is_none_or(|x| !set(rest).contains(x))
            } else if let Some((k, rest)) = term.split_once(" in ") {
                labels.get(k.trim()).is_some_and(|x| set(rest).contains(x))
            } else {
                labels.contains_key(term)
            }
        })
}

/// Upper-cased, `[A-Z0-9_]` only (Marathon's env var name sanitizing).
fn env_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// The Mesos task of an instance: command, resources, environment, health check.
pub fn build_task(
    app: &AppDefinition,
    task_id: &TaskId,
    offer: &Offer,
    resources: Resources,
    host_ports: &[u32],
) -> TaskInfo {
    let mut command = match (&app.cmd, app.args.split_first()) {
        (Some(cmd), _) => CommandInfo::shell(cmd),
        (None, Some((program, rest))) => CommandInfo {
            shell: false,
            value: program.clone(),
            arguments: rest.to_vec(),
            environment: BTreeMap::new(),
        },
        (None, None) => CommandInfo::shell("true"),
    };
    let env = &mut command.environment;
    for (index, port) in host_ports.iter().enumerate() {
        env.insert(format!("PORT{index}"), port.to_string());
        if let Some(definition) = app.port_definitions.get(index) {
            if let Some(name) = &definition.name {
                env.insert(format!("PORT_{}", env_name(name)), port.to_string());
            }
            let requested = if definition.port == 0 {
                *port
            } else {
                definition.port
            };
            env.insert(format!("PORT_{requested}"), port.to_string());
        }
    }
    if let Some(first) = host_ports.first() {
        env.insert("PORT".into(), first.to_string());
    }
    env.insert(
        "PORTS".into(),
        host_ports
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(","),
    );
    env.insert("HOST".into(), offer.hostname.clone());
    env.insert("MARATHON_APP_ID".into(), app.id.clone());
    env.insert(
        "MARATHON_APP_VERSION".into(),
        app.version.clone().unwrap_or_default(),
    );
    env.insert(
        "MARATHON_APP_RESOURCE_CPUS".into(),
        format!("{:?}", app.cpus),
    );
    env.insert("MARATHON_APP_RESOURCE_MEM".into(), format!("{:?}", app.mem));
    env.insert(
        "MARATHON_APP_RESOURCE_DISK".into(),
        format!("{:?}", app.disk),
    );
    env.insert("MARATHON_APP_RESOURCE_GPUS".into(), app.gpus.to_string());
    if let Some(image) = app
        .container
        .as_ref()
        .and_then(|c| c.docker.as_ref())
        .map(|d| d.image.clone())
    {
        env.insert("MARATHON_APP_DOCKER_IMAGE".into(), image);
    }
    let labels: Vec<(&String, &String)> = app
        .labels
        .iter()
        .filter(|(k, v)| k.len() <= 512 && v.len() <= 512)
        .collect();
    env.insert(
        "MARATHON_APP_LABELS".into(),
        labels
            .iter()
            .map(|(k, _)| env_name(k))
            .collect::<Vec<_>>()
            .join(" "),
    );
    for (k, v) in labels {
        env.insert(format!("MARATHON_APP_LABEL_{}", env_name(k)), v.clone());
    }
    // The user's env is applied last and wins; secret references are not resolved here.
    for (k, v) in &app.env {
        if let EnvValue::Value(v) = v {
            env.insert(k.clone(), v.clone());
        }
    }
    let health_check = app.health_checks.first().and_then(|hc| {
        let port = hc
            .port
            .or_else(|| host_ports.get(hc.port_index.unwrap_or(0) as usize).copied());
        let kind = match hc.protocol {
            HealthCheckProtocol::Command => HealthCheckKind::Command {
                command: CommandInfo::shell(&hc.command.as_ref()?.value),
            },
            HealthCheckProtocol::Tcp | HealthCheckProtocol::MesosTcp => HealthCheckKind::Tcp {
                port: u16::try_from(port?).ok()?,
            },
            _ => HealthCheckKind::Http {
                port: u16::try_from(port?).ok()?,
                path: hc.path.clone().unwrap_or_else(|| "/".into()),
            },
        };
        Some(WireHealthCheck {
            kind,
            delay_secs: f64::from(hc.delay_seconds),
            interval_secs: f64::from(hc.interval_seconds),
            timeout_secs: f64::from(hc.timeout_seconds),
            consecutive_failures: hc.max_consecutive_failures,
            grace_period_secs: f64::from(hc.grace_period_seconds),
        })
    });
    let name = app
        .id
        .trim_start_matches('/')
        .split('/')
        .rev()
        .collect::<Vec<_>>()
        .join(".");
    TaskInfo {
        name,
        task_id: task_id.clone(),
        slave_id: offer.slave_id.clone(),
        resources,
        command,
        health_check,
        labels: app.labels.clone(),
        kill_grace_period_secs: app.task_kill_grace_period_seconds.map(f64::from),
    }
}

/// Entry points of Marathon's own messages: [`Scheduler::install`]'s handlers call them, and so
/// does a host that wraps the scheduler in another scheduler type (the simulator wraps it to
/// observe every status it receives, so it cannot use handlers typed by
/// `SchedulerDriver<MarathonScheduler>`). Each flushes the routes feed.
impl MarathonScheduler {
    /// What the [`MarathonTick`] handler does.
    pub fn on_tick_message(&mut self, d: &mut Driver<'_, '_>) {
        self.handle_tick(d);
        self.flush_routes(d);
    }

    /// What the [`MarathonWake`] handler does.
    pub fn on_wake_message(&mut self, d: &mut Driver<'_, '_>) {
        self.touch(d);
        self.converge(d);
        self.flush_routes(d);
    }

    /// What the [`MarathonReconcile`] handler does.
    pub fn on_reconcile_message(&mut self, d: &mut Driver<'_, '_>) {
        d.ctx()
            .delay(self.config.reconciliation_interval, MarathonReconcile);
        if d.is_connected() {
            self.reconcile(d);
        }
        self.flush_routes(d);
    }

    /// What the [`ReadinessResult`] handler does.
    pub fn on_readiness_result_message(&mut self, d: &mut Driver<'_, '_>, m: ReadinessResult) {
        self.handle_readiness_result(d, m);
        self.flush_routes(d);
    }

    /// What the [`ReadinessDue`] handler does.
    pub fn on_readiness_due_message(&mut self, d: &mut Driver<'_, '_>, m: ReadinessDue) {
        self.touch(d);
        self.probe_readiness(d, &m.task_id);
        self.flush_routes(d);
    }
}

/// A scheduler that is Marathon or wraps it (the simulator wraps it to observe its status
/// updates).
pub trait AsMarathon {
    /// Marathon inside.
    fn marathon(&mut self) -> &mut MarathonScheduler;
}

impl AsMarathon for MarathonScheduler {
    fn marathon(&mut self) -> &mut MarathonScheduler {
        self
    }
}

/// Installs the handlers of Marathon's own messages (timers, readiness results, the group
/// commit) on a driver of `S`: Marathon itself, or a scheduler wrapping it.
pub fn install_handlers<S: Scheduler + AsMarathon + 'static>(
    handlers: &mut Handlers<SchedulerDriver<S>>,
) {
    handlers
        .on(|p: &mut SchedulerDriver<S>, ctx, _from, _m: MarathonTick| {
            let (s, mut d) = p.scheduler_and_driver(ctx);
            s.marathon().on_tick_message(&mut d)
        })
        .on(|p: &mut SchedulerDriver<S>, ctx, _from, _m: MarathonWake| {
            let (s, mut d) = p.scheduler_and_driver(ctx);
            s.marathon().on_wake_message(&mut d)
        })
        .on(
            |p: &mut SchedulerDriver<S>, ctx, _from, _m: MarathonReconcile| {
                let (s, mut d) = p.scheduler_and_driver(ctx);
                s.marathon().on_reconcile_message(&mut d)
            },
        )
        .on(|p: &mut SchedulerDriver<S>, ctx, from, _m: MarathonFlush| {
            if from == ctx.self_upid() {
                let (s, mut d) = p.scheduler_and_driver(ctx);
                s.marathon().on_flush_message(&mut d)
            }
        })
        .on(
            |p: &mut SchedulerDriver<S>, ctx, _from, m: ReadinessResult| {
                let (s, mut d) = p.scheduler_and_driver(ctx);
                s.marathon().on_readiness_result_message(&mut d, m)
            },
        )
        .on(|p: &mut SchedulerDriver<S>, ctx, _from, m: ReadinessDue| {
            let (s, mut d) = p.scheduler_and_driver(ctx);
            s.marathon().on_readiness_due_message(&mut d, m)
        });
}

impl Scheduler for MarathonScheduler {
    fn registered(&mut self, driver: &mut Driver<'_, '_>, framework_id: &FrameworkId) {
        tracing::info!(%framework_id, "marathon registered");
        self.handle_registered(driver, Some(framework_id));
        self.flush_routes(driver);
    }

    fn reregistered(&mut self, driver: &mut Driver<'_, '_>) {
        tracing::info!("marathon re-registered");
        let id = driver.framework_id().cloned();
        self.handle_registered(driver, id.as_ref());
        self.flush_routes(driver);
    }

    fn resource_offers(&mut self, driver: &mut Driver<'_, '_>, offers: Vec<Offer>) {
        self.handle_offers(driver, offers);
        self.flush_routes(driver);
    }

    fn status_update(&mut self, driver: &mut Driver<'_, '_>, status: &TaskStatus) {
        self.handle_status(driver, status);
        self.flush_routes(driver);
    }

    fn slave_lost(&mut self, driver: &mut Driver<'_, '_>, slave_id: &SlaveId) {
        self.touch(driver);
        self.slaves.remove(slave_id);
        self.converge(driver);
        self.flush_routes(driver);
    }

    fn error(&mut self, _driver: &mut Driver<'_, '_>, message: &str) {
        tracing::error!(%message, "the master refused marathon");
    }

    fn acknowledges_explicitly(&self) -> bool {
        // After the group commit of the update's writes (`persist_status`).
        true
    }

    fn exited(&mut self, _driver: &mut Driver<'_, '_>, upid: &Upid) {
        // A balancer subscribed to the routes went away: stop feeding it.
        self.routes.exited(upid);
    }

    fn install(handlers: &mut Handlers<SchedulerDriver<Self>>) {
        install_handlers(handlers);
        handlers.on(
            |p: &mut SchedulerDriver<Self>, ctx, from, m: SubscribeRoutes| {
                with_marathon(p, ctx, |s, d| s.subscribe_routes(d, from, m))
            },
        );
    }

    fn initialize(&mut self, driver: &mut Driver<'_, '_>) {
        self.touch(driver);
        self.uuid_salt = plateau_runtime::rng::stable_hash(&self.wall_ms.to_le_bytes());
        driver.ctx().delay(self.config.tick_interval, MarathonTick);
        driver
            .ctx()
            .delay(self.config.reconciliation_interval, MarathonReconcile);
        // A restarted Marathon resumes the readiness checks that were not done.
        let waiting: Vec<TaskId> = self
            .instances
            .values()
            .filter(|i| i.awaits_readiness())
            .map(|i| i.task_id.clone())
            .collect();
        for task_id in &waiting {
            self.probe_readiness(driver, task_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_bounds_follow_marathon() {
        assert_eq!(restart_bounds(3, 1.0, 1.0), (3, 6));
        assert_eq!(restart_bounds(3, 1.0, 0.0), (3, 4));
        assert_eq!(restart_bounds(4, 0.5, 0.0), (2, 4));
        assert_eq!(restart_bounds(3, 0.0, 0.0), (0, 3));
        assert_eq!(restart_bounds(10, 0.7, 0.2), (7, 12));
    }

    #[test]
    fn label_selectors() {
        let labels = BTreeMap::from([
            ("env".to_string(), "prod".to_string()),
            ("tier".to_string(), "web".to_string()),
        ]);
        assert!(label_selector_matches("env", &labels));
        assert!(label_selector_matches("env==prod,tier", &labels));
        assert!(!label_selector_matches("env!=prod", &labels));
        assert!(label_selector_matches("tier in (web, db)", &labels));
        assert!(!label_selector_matches("tier notin (web,db)", &labels));
        assert!(!label_selector_matches("owner", &labels));
    }

    #[test]
    fn embed_values_with_and_without_prefix() {
        let e = Embed::parse([
            "apps.tasks",
            "lastTaskFailure",
            "group.apps.counts",
            "nonsense",
        ]);
        assert!(e.tasks && e.deployments && e.last_task_failure && e.counts);
        assert!(!e.readiness);
    }
}
