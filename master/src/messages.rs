//! The wire protocol between master, slaves and frameworks (postcard, via the runtime).
//!
//! Names follow Mesos' internal protocol (`RegisterSlaveMessage`, `StatusUpdateMessage`, ...)
//! so that anyone who knows Mesos can read a trace. Each message's wire name is
//! `mesos.<Name>`; never change one once released. These are wire types: the JSON shapes of
//! the HTTP APIs live beside their routes.
//!
//! Reliability is built here, above the at-most-once runtime: registration is retried with
//! backoff until acknowledged; status updates carry a uuid and are retried by the slave until
//! the framework's acknowledgement comes back through the master.

use std::collections::BTreeMap;

use plateau_runtime::{Message, Upid};
use serde::{Deserialize, Serialize};

pub use crate::coord::FencingToken;
use crate::ids::{FrameworkId, OfferId, SlaveId, TaskId};
pub use crate::maintenance::Unavailability;
use crate::resources::{Attributes, Resources};

macro_rules! wire {
    ($($ty:ident => $name:literal),* $(,)?) => {
        $(impl Message for $ty { const NAME: &'static str = $name; })*
    };
}

// ---- shared types -------------------------------------------------------------------------

/// What a slave offers and how it is reached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlaveInfo {
    /// Host name (the listen IP unless `--hostname` says otherwise).
    pub hostname: String,
    /// The slave's HTTP/actor port.
    pub port: u16,
    /// Total resources.
    pub resources: Resources,
    /// Attributes (`rack:r1;zone:a`).
    pub attributes: Attributes,
}

/// A framework's registration data (Mesos' `FrameworkInfo`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameworkInfo {
    /// Set when re-registering (failover) — the id the master gave.
    pub id: Option<FrameworkId>,
    /// Display name.
    pub name: String,
    /// User the framework's tasks run as when their [`CommandInfo::user`] is not set; empty: the
    /// slave's default task user (`--default-task-user`, `nobody`). See [`TaskInfo::user`].
    pub user: String,
    /// The role the framework's resources are allocated to.
    pub role: String,
    /// How long the master keeps a disconnected framework's tasks running, in seconds.
    pub failover_timeout_secs: f64,
    /// Whether slaves checkpoint its tasks (always true in Plateau; kept for the API).
    pub checkpoint: bool,
    /// Host the scheduler runs on.
    pub hostname: String,
    /// Principal, for later authorization.
    pub principal: Option<String>,
    /// The framework's web UI.
    pub webui_url: Option<String>,
}

impl FrameworkInfo {
    /// A framework with Mesos' defaults: role `*`, no failover timeout; no user, so that its
    /// tasks run as each slave's default task user unless they name one (unlike Mesos, whose
    /// frameworks usually ask for the user running the scheduler).
    pub fn new(name: &str) -> Self {
        FrameworkInfo {
            id: None,
            name: name.to_string(),
            user: String::new(),
            role: "*".to_string(),
            failover_timeout_secs: 0.0,
            checkpoint: true,
            hostname: String::new(),
            principal: None,
            webui_url: None,
        }
    }
}

/// How to run a task's process (Mesos' `CommandInfo`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CommandInfo {
    /// Run `value` through `/bin/sh -c` (true) or exec `value` with `arguments` (false).
    pub shell: bool,
    /// The command line (shell) or the program (not shell).
    pub value: String,
    /// Arguments when not shell (argv[1..]).
    pub arguments: Vec<String>,
    /// Extra environment variables.
    pub environment: BTreeMap<String, String>,
    /// The user the process runs as (Marathon's app `user`, Chronos' `runAsUser`); `None` or
    /// empty: the framework's [`FrameworkInfo::user`], else the slave's default task user.
    /// Resolved on the slave, where a user that does not exist fails the task.
    pub user: Option<String>,
}

impl CommandInfo {
    /// A shell command.
    pub fn shell(value: &str) -> Self {
        CommandInfo {
            shell: true,
            value: value.to_string(),
            ..Default::default()
        }
    }
}

/// What a health check probes (executed by the slave, next to the task).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum HealthCheckKind {
    /// HTTP GET on the task's host and `port`; 200-399 is healthy.
    Http {
        /// Port to probe.
        port: u16,
        /// Path, e.g. `/health`.
        path: String,
    },
    /// A TCP connect to `port`.
    Tcp {
        /// Port to probe.
        port: u16,
    },
    /// A command in the task's sandbox and environment; exit 0 is healthy.
    Command {
        /// The command.
        command: CommandInfo,
    },
}

/// A health check (Mesos' `HealthCheck`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// What to probe.
    pub kind: HealthCheckKind,
    /// Seconds before the first probe.
    pub delay_secs: f64,
    /// Seconds between probes.
    pub interval_secs: f64,
    /// Seconds a probe may take.
    pub timeout_secs: f64,
    /// Consecutive failures after which the task is reported unhealthy for good.
    pub consecutive_failures: u32,
    /// Seconds after start during which failures are not counted.
    pub grace_period_secs: f64,
}

/// A task to launch (Mesos' `TaskInfo`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskInfo {
    /// Display name.
    pub name: String,
    /// Unique id, chosen by the framework.
    pub task_id: TaskId,
    /// Where to run it: the slave of the offer.
    pub slave_id: SlaveId,
    /// Resources (cpus, mem, disk, ports), taken from the offer.
    pub resources: Resources,
    /// The process.
    pub command: CommandInfo,
    /// Optional health check, run by the slave.
    pub health_check: Option<HealthCheck>,
    /// Free-form labels.
    pub labels: BTreeMap<String, String>,
    /// Seconds between SIGTERM and SIGKILL when killed (default 3 s, as Mesos).
    pub kill_grace_period_secs: Option<f64>,
}

impl TaskInfo {
    /// A task running `command` with `resources` on `slave_id`, named after its id, with no
    /// health check, labels or custom grace period.
    pub fn new(
        task_id: TaskId,
        slave_id: SlaveId,
        resources: Resources,
        command: CommandInfo,
    ) -> Self {
        TaskInfo {
            name: task_id.to_string(),
            task_id,
            slave_id,
            resources,
            command,
            health_check: None,
            labels: BTreeMap::new(),
            kill_grace_period_secs: None,
        }
    }

    /// The user this task asks to run as, as Mesos decides it: its command's
    /// [`CommandInfo::user`], else its framework's [`FrameworkInfo::user`]; `None` when neither
    /// names one (empty names count as unset), and the slave then runs it as its default task
    /// user (`--default-task-user`, `nobody`).
    ///
    /// This is the user that authorization (a `run_tasks` ACL: may this principal run tasks as
    /// this user?) must check when the master accepts a launch; the slave resolves the same
    /// answer to a uid.
    ///
    /// ```
    /// use plateau_master::ids::{SlaveId, TaskId};
    /// use plateau_master::messages::{CommandInfo, FrameworkInfo, TaskInfo};
    /// use plateau_master::resources::Resources;
    /// let mut framework = FrameworkInfo::new("marathon");
    /// let mut task = TaskInfo::new(
    ///     TaskId::new("t"),
    ///     SlaveId::new("s"),
    ///     Resources::default(),
    ///     CommandInfo::shell("true"),
    /// );
    /// assert_eq!(task.user(&framework), None); // the slave's default task user
    /// framework.user = "batch".into();
    /// assert_eq!(task.user(&framework), Some("batch"));
    /// task.command.user = Some("web".into());
    /// assert_eq!(task.user(&framework), Some("web"));
    /// task.command.user = Some(String::new()); // empty: unset
    /// assert_eq!(task.user(&framework), Some("batch"));
    /// ```
    pub fn user<'a>(&'a self, framework: &'a FrameworkInfo) -> Option<&'a str> {
        self.command
            .user
            .as_deref()
            .filter(|u| !u.is_empty())
            .or_else(|| Some(framework.user.as_str()).filter(|u| !u.is_empty()))
    }
}

/// Mesos' task states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TaskState {
    /// Accepted by the master, on its way to the slave.
    Staging,
    /// The slave is starting it.
    Starting,
    /// Running.
    Running,
    /// Being killed.
    Killing,
    /// Exited with status 0.
    Finished,
    /// Exited non-zero, or was killed by a limit.
    Failed,
    /// Killed on request.
    Killed,
    /// Invalid launch: never started.
    Error,
    /// Lost (old frameworks; Plateau reports the partition-aware states below).
    Lost,
    /// Never reached the slave.
    Dropped,
    /// Its slave is out of touch; it may still be running.
    Unreachable,
    /// Its slave is gone for good; it is not running.
    Gone,
    /// An operator said its slave is gone.
    GoneByOperator,
    /// The master knows nothing of it.
    Unknown,
}

impl TaskState {
    /// Every state.
    pub const ALL: [TaskState; 14] = [
        TaskState::Staging,
        TaskState::Starting,
        TaskState::Running,
        TaskState::Killing,
        TaskState::Finished,
        TaskState::Failed,
        TaskState::Killed,
        TaskState::Error,
        TaskState::Lost,
        TaskState::Dropped,
        TaskState::Unreachable,
        TaskState::Gone,
        TaskState::GoneByOperator,
        TaskState::Unknown,
    ];

    /// True for states a task never leaves.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Finished
                | TaskState::Failed
                | TaskState::Killed
                | TaskState::Error
                | TaskState::Lost
                | TaskState::Dropped
                | TaskState::Gone
                | TaskState::GoneByOperator
        )
    }

    /// Mesos' name: `TASK_RUNNING`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Staging => "TASK_STAGING",
            TaskState::Starting => "TASK_STARTING",
            TaskState::Running => "TASK_RUNNING",
            TaskState::Killing => "TASK_KILLING",
            TaskState::Finished => "TASK_FINISHED",
            TaskState::Failed => "TASK_FAILED",
            TaskState::Killed => "TASK_KILLED",
            TaskState::Error => "TASK_ERROR",
            TaskState::Lost => "TASK_LOST",
            TaskState::Dropped => "TASK_DROPPED",
            TaskState::Unreachable => "TASK_UNREACHABLE",
            TaskState::Gone => "TASK_GONE",
            TaskState::GoneByOperator => "TASK_GONE_BY_OPERATOR",
            TaskState::Unknown => "TASK_UNKNOWN",
        }
    }
}

/// Who produced a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StatusSource {
    /// The master (invalid launches, unreachable slaves, reconciliation).
    Master,
    /// The slave.
    Slave,
    /// The executor (the slave's per-task supervision).
    Executor,
}

impl StatusSource {
    /// Mesos' name.
    pub fn as_str(self) -> &'static str {
        match self {
            StatusSource::Master => "SOURCE_MASTER",
            StatusSource::Slave => "SOURCE_SLAVE",
            StatusSource::Executor => "SOURCE_EXECUTOR",
        }
    }
}

/// Why a status happened (a subset of Mesos' reasons, with their names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reason {
    /// The task's process exited non-zero.
    CommandExecutorFailed,
    /// The task exceeded its memory and was killed by the kernel.
    ContainerLimitationMemory,
    /// The task could not be started.
    ContainerLaunchFailed,
    /// The launch was invalid.
    TaskInvalid,
    /// The offers of the launch were invalid or not held.
    InvalidOffers,
    /// The framework does not hold the resources.
    ResourcesUnknown,
    /// The slave was removed.
    SlaveRemoved,
    /// The slave is out of touch.
    SlaveDisconnected,
    /// The slave restarted and the task was lost.
    SlaveRestarted,
    /// Answer to reconciliation.
    Reconciliation,
    /// The master does not know the task.
    TaskUnknown,
    /// A kill arrived before the task started.
    TaskKilledDuringLaunch,
    /// Health changed.
    TaskHealthCheckStatusUpdated,
    /// The task's health check failed too often.
    TaskUnhealthy,
    /// The framework was removed.
    FrameworkRemoved,
    /// The executor (supervisor) ended unexpectedly.
    ExecutorTerminated,
    /// The ACLs do not let the framework's principal run the task (as its user).
    TaskUnauthorized,
}

impl Reason {
    /// Mesos' name: `REASON_...`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::CommandExecutorFailed => "REASON_COMMAND_EXECUTOR_FAILED",
            Reason::ContainerLimitationMemory => "REASON_CONTAINER_LIMITATION_MEMORY",
            Reason::ContainerLaunchFailed => "REASON_CONTAINER_LAUNCH_FAILED",
            Reason::TaskInvalid => "REASON_TASK_INVALID",
            Reason::InvalidOffers => "REASON_INVALID_OFFERS",
            Reason::ResourcesUnknown => "REASON_RESOURCES_UNKNOWN",
            Reason::SlaveRemoved => "REASON_SLAVE_REMOVED",
            Reason::SlaveDisconnected => "REASON_SLAVE_DISCONNECTED",
            Reason::SlaveRestarted => "REASON_SLAVE_RESTARTED",
            Reason::Reconciliation => "REASON_RECONCILIATION",
            Reason::TaskUnknown => "REASON_TASK_UNKNOWN",
            Reason::TaskKilledDuringLaunch => "REASON_TASK_KILLED_DURING_LAUNCH",
            Reason::TaskHealthCheckStatusUpdated => "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED",
            Reason::TaskUnhealthy => "REASON_TASK_UNHEALTHY",
            Reason::FrameworkRemoved => "REASON_FRAMEWORK_REMOVED",
            Reason::ExecutorTerminated => "REASON_EXECUTOR_TERMINATED",
            Reason::TaskUnauthorized => "REASON_TASK_UNAUTHORIZED",
        }
    }
}

/// The status of a task (Mesos' `TaskStatus`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskStatus {
    /// The task.
    pub task_id: TaskId,
    /// Its state.
    pub state: TaskState,
    /// Human-readable detail.
    pub message: Option<String>,
    /// Who produced it.
    pub source: StatusSource,
    /// Why.
    pub reason: Option<Reason>,
    /// Where the task is.
    pub slave_id: Option<SlaveId>,
    /// Health check verdict, when the task has one.
    pub healthy: Option<bool>,
    /// Calendar time, seconds since the Unix epoch.
    pub timestamp: f64,
    /// Set on updates that must be acknowledged (slave-generated); `None` for master-generated
    /// and reconciliation answers, which need no acknowledgement.
    pub uuid: Option<[u8; 16]>,
}

/// A resource offer: all of a slave's free resources, for one framework, for a while.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Offer {
    /// The offer.
    pub id: OfferId,
    /// Whom it is for.
    pub framework_id: FrameworkId,
    /// Which slave.
    pub slave_id: SlaveId,
    /// The slave's host name.
    pub hostname: String,
    /// What is offered.
    pub resources: Resources,
    /// The slave's attributes (for constraints).
    pub attributes: Attributes,
    /// Set when the slave's machine is scheduled for maintenance (DRAINING): when it will be
    /// unavailable. Frameworks should not start long-lived work here (Mesos'
    /// `Offer.unavailability`).
    pub unavailability: Option<Unavailability>,
}

/// An inverse offer (Mesos' `InverseOffer`): the master asks a framework to give back what it
/// uses on a slave, whose machine is scheduled for maintenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InverseOffer {
    /// The inverse offer.
    pub id: OfferId,
    /// Whom it is for.
    pub framework_id: FrameworkId,
    /// Which slave.
    pub slave_id: SlaveId,
    /// The slave's host name.
    pub hostname: String,
    /// When the slave's machine will be unavailable.
    pub unavailability: Unavailability,
}

/// A framework's answer to an inverse offer, shown in `/master/maintenance/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InverseOfferStatus {
    /// No answer yet.
    Unknown,
    /// The framework will (or did) move off the slave in time.
    Accept,
    /// The framework will not move off the slave.
    Decline,
}

impl InverseOfferStatus {
    /// Mesos' name.
    pub fn as_str(self) -> &'static str {
        match self {
            InverseOfferStatus::Unknown => "UNKNOWN",
            InverseOfferStatus::Accept => "ACCEPT",
            InverseOfferStatus::Decline => "DECLINE",
        }
    }
}

/// Offer filters (Mesos' `Filters`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Filters {
    /// Do not offer these resources again to this framework for this long (default 5 s).
    pub refuse_seconds: f64,
}

impl Default for Filters {
    fn default() -> Self {
        Filters {
            refuse_seconds: 5.0,
        }
    }
}

/// A task as a slave reports it when re-registering.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlaveTask {
    /// Its framework.
    pub framework_id: FrameworkId,
    /// The task.
    pub task: TaskInfo,
    /// Its latest state on the slave.
    pub state: TaskState,
}

// ---- finding the leading master ------------------------------------------------------------

/// Asks a master which master of its group leads (slaves, schedulers and tools send it to
/// any master of their `--master A,B,C` list). Answered with [`NewMasterDetectedMessage`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LeaderQueryMessage {}

/// Who leads the masters, as far as the sender knows (Mesos' `NewMasterDetectedMessage`).
///
/// Sent (1) as the answer to a [`LeaderQueryMessage`]; (2) by a newly elected leader to every
/// slave and framework its registry knows, so they follow it without waiting for a lost link;
/// (3) by a master that does not lead, in answer to a protocol message it will not handle (a
/// redirect). A receiver follows `leader` only if `term` is at least the term of the leader it
/// follows: a deposed master's stale news never wins over a newer election.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewMasterDetectedMessage {
    /// The leading master process (`master@host:port`), if one is known.
    pub leader: Option<Upid>,
    /// The election term of that leader (0 for a master that runs alone).
    pub term: u64,
}

/// A master started with `--join` asks the group to add it (sent to every master it was
/// given until it is a voting member; the leader adds it, the others redirect).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct JoinMastersMessage {}

// ---- slave <-> master ---------------------------------------------------------------------

/// A new slave asks to join.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisterSlaveMessage {
    /// What it offers.
    pub slave: SlaveInfo,
}

/// A known slave (restarted, or after a lost link or a master restart) asks to rejoin with
/// the tasks it runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReregisterSlaveMessage {
    /// Its id.
    pub slave_id: SlaveId,
    /// What it offers.
    pub slave: SlaveInfo,
    /// Its tasks (live and terminal-but-unacknowledged).
    pub tasks: Vec<SlaveTask>,
    /// The frameworks of its tasks and their schedulers' addresses.
    pub frameworks: Vec<(FrameworkId, Upid)>,
}

/// The master admitted a new slave.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SlaveRegisteredMessage {
    /// The id the master gave it.
    pub slave_id: SlaveId,
    /// How often to send heartbeats, in milliseconds.
    pub heartbeat_interval_ms: u64,
}

/// The master re-admitted a known slave.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SlaveReregisteredMessage {
    /// Its id.
    pub slave_id: SlaveId,
    /// How often to send heartbeats, in milliseconds.
    pub heartbeat_interval_ms: u64,
}

/// A slave is alive (sent every heartbeat interval). The master answers with
/// [`ReregisterRequestMessage`] when it does not know the slave as connected.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SlaveHeartbeatMessage {
    /// Its id.
    pub slave_id: SlaveId,
}

/// The master asks a slave it considers unreachable or unknown to re-register.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReregisterRequestMessage {
    /// Its id.
    pub slave_id: SlaveId,
}

/// A slave leaves for good (orderly shutdown).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UnregisterSlaveMessage {
    /// Its id.
    pub slave_id: SlaveId,
}

/// Run a task (master → slave).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunTaskMessage {
    /// The framework.
    pub framework_id: FrameworkId,
    /// Its registration data.
    pub framework: FrameworkInfo,
    /// Where its scheduler is (status updates go through the master).
    pub framework_pid: Upid,
    /// The task.
    pub task: TaskInfo,
}

/// Kill a task (framework → master → slave).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KillTaskMessage {
    /// The framework.
    pub framework_id: FrameworkId,
    /// The task.
    pub task_id: TaskId,
    /// The epoch of the framework's leadership (see [`RegisterFrameworkMessage::fencing`]).
    pub fencing_epoch: Option<u64>,
}

/// A status update (slave → master → framework).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusUpdateMessage {
    /// The framework.
    pub framework_id: FrameworkId,
    /// The status.
    pub status: TaskStatus,
    /// The slave that sent it (acknowledgements go back to it through the master).
    pub slave_pid: Option<Upid>,
}

/// The framework received a status update (framework → master → slave).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusUpdateAcknowledgementMessage {
    /// The slave.
    pub slave_id: SlaveId,
    /// The framework.
    pub framework_id: FrameworkId,
    /// The task.
    pub task_id: TaskId,
    /// The update's uuid.
    pub uuid: [u8; 16],
}

/// Stop all tasks of a framework that was removed (master → slave).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShutdownFrameworkMessage {
    /// The framework.
    pub framework_id: FrameworkId,
}

// ---- framework <-> master -----------------------------------------------------------------

/// A scheduler registers a new framework.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisterFrameworkMessage {
    /// Its data.
    pub framework: FrameworkInfo,
    /// For a framework run as several instances of which one leads (elected through the
    /// masters' coordination store): its election key and the epoch it won it at. A group of
    /// masters then refuses this registration, and every launch and kill of the framework,
    /// unless that epoch is the key's current one — a deposed leader that wakes up cannot act.
    pub fencing: Option<FencingToken>,
}

/// A scheduler registers again as an existing framework (failover, lost link).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReregisterFrameworkMessage {
    /// Its data, with `id` set.
    pub framework: FrameworkInfo,
    /// True when this is a new scheduler instance taking over (Mesos' failover flag).
    pub failover: bool,
    /// See [`RegisterFrameworkMessage::fencing`].
    pub fencing: Option<FencingToken>,
}

/// The master registered a framework.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FrameworkRegisteredMessage {
    /// The id it was given.
    pub framework_id: FrameworkId,
    /// The master's address.
    pub master: Upid,
}

/// The master re-registered a framework.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FrameworkReregisteredMessage {
    /// Its id.
    pub framework_id: FrameworkId,
    /// The master's address.
    pub master: Upid,
}

/// The scheduler is done: the framework and its tasks are removed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UnregisterFrameworkMessage {
    /// The framework.
    pub framework_id: FrameworkId,
}

/// Offers for a framework.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResourceOffersMessage {
    /// The offers.
    pub offers: Vec<Offer>,
}

/// An offer is withdrawn (its slave was lost, or it timed out).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RescindResourceOfferMessage {
    /// The offer.
    pub offer_id: OfferId,
}

/// Use offers: launch tasks on them; what is not used goes back, filtered for
/// `filters.refuse_seconds`. With no tasks this declines the offers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LaunchTasksMessage {
    /// The framework.
    pub framework_id: FrameworkId,
    /// Offers used (all on one slave).
    pub offer_ids: Vec<OfferId>,
    /// Tasks to launch.
    pub tasks: Vec<TaskInfo>,
    /// Filters for the unused remainder.
    pub filters: Filters,
    /// The epoch of the framework's leadership (see [`RegisterFrameworkMessage::fencing`]).
    pub fencing_epoch: Option<u64>,
}

/// Decline offers, on any slaves: their resources are not offered to this framework again for
/// `filters.refuse_seconds` (the v1 API's DECLINE with several `offer_ids`). One message for
/// what a framework leaves of a whole round of offers, rather than one launch each.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeclineOffersMessage {
    /// The framework.
    pub framework_id: FrameworkId,
    /// Offers declined; ids no longer valid (or another framework's) are ignored.
    pub offer_ids: Vec<OfferId>,
    /// Filters for the declined resources.
    pub filters: Filters,
}

/// Ask for the state of tasks; empty `tasks` asks for all (implicit reconciliation).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReconcileTasksMessage {
    /// The framework.
    pub framework_id: FrameworkId,
    /// Tasks to reconcile, with the slave the framework believes each is on.
    pub tasks: Vec<(TaskId, Option<SlaveId>)>,
}

/// Resume offers (and clear filters).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReviveOffersMessage {
    /// The framework.
    pub framework_id: FrameworkId,
}

/// Stop sending offers until revived.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SuppressOffersMessage {
    /// The framework.
    pub framework_id: FrameworkId,
}

/// Inverse offers for a framework (master → scheduler): slaves it uses whose machines are
/// scheduled for maintenance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InverseOffersMessage {
    /// The inverse offers.
    pub inverse_offers: Vec<InverseOffer>,
}

/// An inverse offer is withdrawn: its machine is no longer scheduled (or went down).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RescindInverseOfferMessage {
    /// The inverse offer.
    pub inverse_offer_id: OfferId,
}

/// A framework accepts or declines inverse offers (Mesos' ACCEPT_INVERSE_OFFERS and
/// DECLINE_INVERSE_OFFERS calls). Its answer is shown in `/master/maintenance/status`; the
/// master asks again after `filters.refuse_seconds` while the machine is still draining.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RespondInverseOffersMessage {
    /// The framework.
    pub framework_id: FrameworkId,
    /// The inverse offers answered; ids no longer valid are ignored.
    pub inverse_offer_ids: Vec<OfferId>,
    /// True: accept; false: decline.
    pub accept: bool,
    /// When to ask again.
    pub filters: Filters,
}

/// A slave was lost (removed or unreachable).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LostSlaveMessage {
    /// The slave.
    pub slave_id: SlaveId,
}

/// The master refuses the framework (bad registration, removed).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FrameworkErrorMessage {
    /// Why.
    pub message: String,
}

/// What a slave's tasks use now, read from their cgroups (Plateau's, for the console's
/// charts; Mesos has the master poll no such thing). Sent every usage interval.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SlaveUsageMessage {
    /// The slave.
    pub slave_id: SlaveId,
    /// CPUs in use: CPU seconds its tasks spent per second since the previous report.
    pub cpus_used: f64,
    /// Resident memory of its tasks, in MB.
    pub mem_used_mb: f64,
    /// Its live tasks.
    pub tasks: u32,
}

/// A service announces the URL of its HTTP API to the masters, for the console (sent every
/// announce interval; forgotten after three intervals without one). The balancer sends it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AnnounceServiceMessage {
    /// What it is (`balancer`).
    pub kind: String,
    /// Its HTTP API, `http://host:port` or `https://host:port`.
    pub url: String,
}

wire! {
    SlaveUsageMessage => "plateau.master.SlaveUsageMessage",
    AnnounceServiceMessage => "plateau.master.AnnounceServiceMessage",
    LeaderQueryMessage => "plateau.master.LeaderQueryMessage",
    NewMasterDetectedMessage => "mesos.NewMasterDetectedMessage",
    JoinMastersMessage => "plateau.master.JoinMastersMessage",
    RegisterSlaveMessage => "mesos.RegisterSlaveMessage",
    ReregisterSlaveMessage => "mesos.ReregisterSlaveMessage",
    SlaveRegisteredMessage => "mesos.SlaveRegisteredMessage",
    SlaveReregisteredMessage => "mesos.SlaveReregisteredMessage",
    SlaveHeartbeatMessage => "mesos.SlaveHeartbeatMessage",
    ReregisterRequestMessage => "mesos.ReregisterRequestMessage",
    UnregisterSlaveMessage => "mesos.UnregisterSlaveMessage",
    RunTaskMessage => "mesos.RunTaskMessage",
    KillTaskMessage => "mesos.KillTaskMessage",
    StatusUpdateMessage => "mesos.StatusUpdateMessage",
    StatusUpdateAcknowledgementMessage => "mesos.StatusUpdateAcknowledgementMessage",
    ShutdownFrameworkMessage => "mesos.ShutdownFrameworkMessage",
    RegisterFrameworkMessage => "mesos.RegisterFrameworkMessage",
    ReregisterFrameworkMessage => "mesos.ReregisterFrameworkMessage",
    FrameworkRegisteredMessage => "mesos.FrameworkRegisteredMessage",
    FrameworkReregisteredMessage => "mesos.FrameworkReregisteredMessage",
    UnregisterFrameworkMessage => "mesos.UnregisterFrameworkMessage",
    ResourceOffersMessage => "mesos.ResourceOffersMessage",
    RescindResourceOfferMessage => "mesos.RescindResourceOfferMessage",
    LaunchTasksMessage => "mesos.LaunchTasksMessage",
    DeclineOffersMessage => "plateau.master.DeclineOffersMessage",
    ReconcileTasksMessage => "mesos.ReconcileTasksMessage",
    ReviveOffersMessage => "mesos.ReviveOffersMessage",
    SuppressOffersMessage => "mesos.SuppressOffersMessage",
    LostSlaveMessage => "mesos.LostSlaveMessage",
    FrameworkErrorMessage => "mesos.FrameworkErrorMessage",
    InverseOffersMessage => "mesos.InverseOffersMessage",
    RescindInverseOfferMessage => "mesos.RescindInverseOfferMessage",
    RespondInverseOffersMessage => "plateau.master.RespondInverseOffersMessage",
}

#[cfg(test)]
pub(crate) mod fuzz;
