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
//! - **Maintenance.** Unless `--disable_maintenance_mode`, offers of slaves whose machines are
//!   scheduled for maintenance (their offers carry an unavailability, or an inverse offer
//!   names them) are declined, and the instances running there are moved: as in a rolling
//!   restart, a replacement is started elsewhere (within `maximumOverCapacity`, respecting the
//!   constraints), and an instance on a draining slave is killed only while the app keeps at
//!   least `ceil(instances × minimumHealthCapacity)` ready instances without it. Inverse
//!   offers are accepted. Instances killed because their machine went DOWN are replaced as
//!   usual.
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
//! # Where the code is
//!
//! | module | responsibility |
//! |---|---|
//! | `mod.rs` | the scheduler's state, its configuration, persistence, the [`Scheduler`] callbacks and Marathon's own messages |
//! | `plan` | what each app needs (launch count, kills, restart bounds) and convergence |
//! | `offers` | offer matching and the Mesos task of an instance ([`build_task`]) |
//! | `maintenance` | draining slaves: inverse offers, which instances must move |
//! | `status` | status updates, registration, reconciliation, the housekeeping tick |
//! | `readiness_checks` | readiness probes during deployments |
//! | `api` | the API's changes (apps, tasks, deployments, the launch queue) |
//! | `views` | the API's read views and their JSON |
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

mod api;
mod maintenance;
mod offers;
mod persistence;
mod plan;
mod readiness_checks;
mod status;
mod views;

pub use offers::build_task;
pub use persistence::{ApiAnswer, PendingAnswer, Role};
use persistence::{Backend, PendingAnswers};
pub use plan::restart_bounds;
pub use views::label_selector_matches;
use views::root_group_json;
pub(crate) use views::service_ports_of;

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
    /// The API is served over HTTPS on `http_port` (the framework's `webui_url` says so).
    pub https: bool,
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
    /// Run as one of several Marathons (leader + standbys): the state lives in the masters'
    /// coordination store (the masters must run as a group), the leader is elected there, and
    /// standbys proxy the API to it. False: the only Marathon, on a local store.
    pub ha: bool,
    /// With `ha`: the session ttl, how long a crashed leader keeps the leadership before a
    /// standby takes over (Marathon's `--zk_session_timeout`).
    pub session_ttl: Duration,
    /// Marathon's `--disable_maintenance_mode` (default false): when false, offers of slaves
    /// whose machines are scheduled for maintenance are declined and instances on them are
    /// moved elsewhere; when true, maintenance is ignored.
    pub disable_maintenance_mode: bool,
}

impl Default for MarathonConfig {
    fn default() -> Self {
        MarathonConfig {
            framework_name: "marathon".into(),
            role: "*".into(),
            hostname: "localhost".into(),
            http_port: 8080,
            https: false,
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
            ha: false,
            session_ttl: limits::LEADER_SESSION_TTL_DEFAULT,
            disable_maintenance_mode: false,
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
    backend: Backend,
    /// The only Marathon, a standby, or the leader.
    role: Role,
    /// The leader's advertised address as last seen (standby).
    leader: Option<String>,
    /// API answers waiting for state writes to commit (leader + standbys).
    answers: PendingAnswers,
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
    /// Slaves whose machines are scheduled for maintenance (DRAINING), as offers carrying an
    /// unavailability and inverse offers tell: nothing new is placed there, and what runs
    /// there is moved. Forgotten when an offer of the slave comes without an unavailability,
    /// when its inverse offer is rescinded or when it is lost. Not persisted: a new leader
    /// learns it again from the master.
    draining: BTreeSet<SlaveId>,
    /// The slave of each inverse offer received and not rescinded (bounded by
    /// `SLAVES_SEEN_MAX`).
    inverse_offer_slaves: BTreeMap<plateau_sdk::OfferId, SlaveId>,
    suppressed: bool,
    last_demand: u64,
    mono: Duration,
    wall_ms: i64,
    started_wall_ms: Option<i64>,
    launched_total: u64,
    uuid_salt: u64,
    events: EventBus,
    routes: crate::routes::RouteFeed,
    /// Routes waiting for their writes to commit (leader + standbys).
    routes_waiting: crate::routes::RoutesWaiting,
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
            .field("role", &self.role)
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
    /// A scheduler on `store`, recovering what it holds: the only Marathon.
    pub fn new(config: MarathonConfig, store: Box<dyn Store>) -> Result<Self, Error> {
        let state = store.load()?;
        let mut scheduler = Self::empty(config, Backend::Local(store), Role::Single);
        scheduler.install_state(state);
        Ok(scheduler)
    }

    /// A scheduler that is one of several (leader + standbys): it starts as a standby with no
    /// model; when elected it loads the replicated state
    /// ([`Scheduler::elected`](plateau_sdk::Scheduler::elected)). Host it with
    /// [`MarathonScheduler::driver_with_leader_election`].
    pub fn standby(config: MarathonConfig) -> Self {
        let mut scheduler = Self::empty(
            config,
            Backend::Replicated(crate::replicated::StateLayout::default()),
            Role::Standby,
        );
        scheduler.routes = crate::routes::RouteFeed::standby();
        scheduler
    }

    fn empty(config: MarathonConfig, backend: Backend, role: Role) -> Self {
        MarathonScheduler {
            config,
            backend,
            role,
            leader: None,
            answers: PendingAnswers::default(),
            failed: None,
            framework_id: None,
            apps: BTreeMap::new(),
            instances: BTreeMap::new(),
            deployments: BTreeMap::new(),
            next_deployment_sequence: 0,
            backoffs: BTreeMap::new(),
            queue_since: BTreeMap::new(),
            offer_stats: BTreeMap::new(),
            last_failures: BTreeMap::new(),
            slaves: BTreeMap::new(),
            draining: BTreeSet::new(),
            inverse_offer_slaves: BTreeMap::new(),
            suppressed: false,
            last_demand: 0,
            mono: Duration::ZERO,
            wall_ms: 0,
            started_wall_ms: None,
            launched_total: 0,
            uuid_salt: 0,
            events: EventBus::default(),
            routes: crate::routes::RouteFeed::default(),
            routes_waiting: Default::default(),
            prober: Box::new(HttpReadinessProber::new()),
            readiness_in_flight: BTreeMap::new(),
            next_probe_id: 0,
            pending_ops: Vec::new(),
            pending_acks: Vec::new(),
            flush_scheduled: false,
        }
    }

    /// Takes `state` as the model (at start, or when elected).
    fn install_state(&mut self, state: crate::store::StoredState) {
        self.next_deployment_sequence = state
            .deployments
            .values()
            .map(|d| d.sequence + 1)
            .max()
            .unwrap_or(0);
        if state.framework_id.is_some() {
            self.framework_id = state.framework_id;
        }
        self.apps = state.apps;
        self.instances = state.instances;
        self.deployments = state.deployments;
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
            "{}://{}:{}",
            if self.config.https { "https" } else { "http" },
            self.config.hostname,
            self.config.http_port
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

    /// A driver hosting a standby scheduler ([`MarathonScheduler::standby`]) that campaigns
    /// for the leadership of the Marathons named `config.framework_name` among `masters` (a
    /// group: the masters keep the election and the state), advertising
    /// `config.hostname:config.http_port`, with session ttl `session_ttl` (how long a crashed
    /// leader keeps the leadership).
    pub fn driver_with_leader_election(
        config: MarathonConfig,
        masters: impl Into<Masters>,
        session_ttl: Duration,
    ) -> SchedulerDriver<MarathonScheduler> {
        let scheduler = MarathonScheduler::standby(config);
        let leader = crate::replicated::leader_config(
            &scheduler.config.framework_name,
            &scheduler.advertised_address(),
            session_ttl,
        );
        SchedulerDriver::with_masters(scheduler.framework_info(), masters.into(), scheduler)
            .with_leader_election(leader)
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
        // Leader + standbys: the routes sent so far (what committed); the rest follows.
        let current =
            (!self.is_replicated()).then(|| crate::routes::routes_of(&self.apps, &self.instances));
        self.routes.subscribe(d.ctx(), from, m, current);
    }

    /// Send balancers what changed in the routes since the last flush (nothing if nothing did).
    /// Leader + standbys: once the writes made so far commit (changes not yet written wait for
    /// the group commit that writes them).
    pub fn flush_routes(&mut self, d: &mut Driver<'_, '_>) {
        if self.routes.subscribers() == 0 || !self.is_acting() {
            return;
        }
        if self.is_replicated() {
            if !self.pending_ops.is_empty() {
                return; // `on_flush_message` writes them, then flushes.
            }
            if let Some(after) = d
                .state()
                .filter(|s| s.has_uncommitted())
                .and_then(|s| s.last_write())
            {
                let current = crate::routes::routes_of(&self.apps, &self.instances);
                self.routes_waiting.push(after, current);
                return;
            }
            self.routes_waiting.clear();
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
}

fn rand_bytes(d: &mut Driver<'_, '_>, out: &mut [u8]) {
    for chunk in out.chunks_mut(8) {
        let v = d.ctx().rng().between(0, u64::MAX).to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
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

    fn inverse_offers(
        &mut self,
        driver: &mut Driver<'_, '_>,
        inverse_offers: Vec<plateau_sdk::InverseOffer>,
    ) {
        self.handle_inverse_offers(driver, inverse_offers);
        self.flush_routes(driver);
    }

    fn inverse_offer_rescinded(&mut self, driver: &mut Driver<'_, '_>, id: &plateau_sdk::OfferId) {
        self.handle_inverse_offer_rescinded(driver, id);
        self.flush_routes(driver);
    }

    fn slave_lost(&mut self, driver: &mut Driver<'_, '_>, slave_id: &SlaveId) {
        self.touch(driver);
        self.slaves.remove(slave_id);
        self.draining.remove(slave_id);
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
        handlers.allow_roles(
            plateau_runtime::RoleSet::of(&[plateau_runtime::Role::Balancer]),
            &[SubscribeRoutes::NAME],
        );
    }

    fn elected(
        &mut self,
        driver: &mut Driver<'_, '_>,
        token: &plateau_master::coord::FencingToken,
    ) {
        self.handle_elected(driver, token);
    }

    fn deposed(&mut self, driver: &mut Driver<'_, '_>, why: &str) {
        self.handle_deposed(driver, why);
    }

    fn committed(&mut self, driver: &mut Driver<'_, '_>, write: plateau_sdk::coord::WriteId) {
        self.handle_committed(driver, write);
    }

    fn leader_changed(&mut self, driver: &mut Driver<'_, '_>, leader: Option<&str>) {
        self.handle_leader_changed(driver, leader);
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
