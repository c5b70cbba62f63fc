//! [`SlaveProcess`]: the slave as a Plateau process (`slave(1)`), talking to the leading master of
//! its `--master` list as `protocol.md` says. It owns the pure [`SlaveCore`] and carries out its
//! decisions through three side-effect traits: a [`Containerizer`] (tasks), a [`HealthProber`]
//! (health checks) and a [`CheckpointStore`] (durable state). Real implementations run real
//! processes and a redb file; the simulator plugs in [`crate::containerizer::SimContainerizer`],
//! [`crate::health::ScriptedProber`] and [`crate::checkpoint::MemoryCheckpoint`] and runs this very
//! code on its virtual clock.
//!
//! Life of a task: RunTaskMessage → the task is checkpointed with TASK_STARTING queued → launched
//! → TASK_RUNNING is queued (updates are checkpointed, then sent one at a time until
//! acknowledged) →
//! the containerizer reports its termination through its callback, which posts
//! [`TaskTerminated`] into this process's mailbox → TASK_FINISHED / FAILED / KILLED → after
//! the acknowledgement of that terminal update the task leaves the books and the checkpoint.
//!
//! Launches may take a while (the real containerizer creates cgroups and starts a supervisor
//! process): a containerizer may do them in the background ([`Containerizer::start_launch`]
//! answers [`LaunchStart::Pending`]) and report through its launch callback, which posts
//! [`LaunchFinished`]; only then is RUNNING queued. Meanwhile the task is in the books
//! (checkpointed, STARTING on its way) without a launch record: a kill of it is recorded and carried
//! out once the launch is over (the task is killed if it started, reported TASK_KILLED either
//! way, once). The simulated containerizer launches at once, so simulated runs stay
//! deterministic.
//!
//! Side-effect threads reach the process through a [`MailboxSlot`]: the callbacks of the
//! containerizer and the prober are built from it before the process exists, and post into
//! the process's mailbox once it runs.
//!
//! The leading master is found and followed by a [`MasterDetector`] (one master: that one, at
//! once). Registration, heartbeats and status updates go to the leader it follows, and the
//! master's messages are accepted from that leader only (the whole `name@host:port`). When
//! another master leads, the slave re-registers with it at once, with its tasks, as after a
//! lost master; while none is known it sends nothing but the detector's queries.
//!
//! One timer at a time: after every handler the process asks the core (and the containerizer,
//! whose simulated version keeps virtual time) when it next wants to act, and arms a single
//! [`Tick`] for that moment. The containerizer is asked again only when something may have
//! changed its answer (see [`Polled`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, UNIX_EPOCH};

use plateau_master::detector::{MasterDetector, Masters};
use plateau_master::ids::{FrameworkId, SlaveId, TaskId};
use plateau_master::messages::{
    FrameworkInfo, KillTaskMessage, LeaderQueryMessage, NewMasterDetectedMessage, Reason,
    RegisterSlaveMessage, ReregisterRequestMessage, ReregisterSlaveMessage, RunTaskMessage,
    ShutdownFrameworkMessage, SlaveHeartbeatMessage, SlaveInfo, SlaveRegisteredMessage,
    SlaveReregisteredMessage, SlaveTask, SlaveUsageMessage, StatusUpdateAcknowledgementMessage,
    StatusUpdateMessage, TaskInfo, TaskState, TaskStatus,
};
use plateau_master::resources::{Attributes, Resources};
use plateau_runtime::{Context, Handlers, Mailbox, Message, Process, Role, RoleSet, TimerId, Upid};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{Checkpoint, CheckpointStore, FrameworkRecord, SlaveRecord};
use crate::containerizer::{
    task_dir_name, CommandSpec, Containerizer, ContainerizerError, LaunchCallback, LaunchInfo,
    LaunchStart, RecoveredTask, TaskSpec, Termination, TerminationCallback,
};
use crate::core::{
    new_status, termination_status, AckOutcome, FrameworkEntry, HealthOutcome, KillCause,
    RegistrationAction, RestoredTask, SlaveCore,
};
use crate::error::SlaveError;
use crate::health::{HealthProber, ProbeCallback, ProbeRequest, ProbeResult};
use crate::limits;

/// The name of the slave process on its node.
pub const SLAVE_PROCESS_NAME: &str = "slave(1)";

// ---- messages to self ---------------------------------------------------------------------

/// The single timer of the slave: time to look at the core's deadlines.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tick;

/// A task ended (posted by the containerizer's callback).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskTerminated {
    /// The task.
    pub task_id: String,
    /// How it ended.
    pub termination: Termination,
}

/// A background launch ended (posted by the containerizer's launch callback).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LaunchFinished {
    /// The task.
    pub task_id: String,
    /// What was launched, or why the launch failed.
    pub result: Result<LaunchInfo, String>,
}

/// A health probe finished (posted by the prober's callback).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeFinished(pub ProbeResult);

impl Message for Tick {
    const NAME: &'static str = "plateau.slave.Tick";
}
impl Message for TaskTerminated {
    const NAME: &'static str = "plateau.slave.TaskTerminated";
}
impl Message for LaunchFinished {
    const NAME: &'static str = "plateau.slave.LaunchFinished";
}

/// To self: commit the task records changed since the last commit (group commit), then start
/// the launches and send the updates that waited for it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointFlush;
impl Message for CheckpointFlush {
    const NAME: &'static str = "plateau.slave.CheckpointFlush";
}
impl Message for ProbeFinished {
    const NAME: &'static str = "plateau.slave.ProbeFinished";
}

/// A late-bound handle on the slave's mailbox, for callbacks built before the process runs.
/// Messages posted before the process started are dropped (nothing can have been launched
/// by then).
#[derive(Debug, Clone, Default)]
pub struct MailboxSlot(Arc<OnceLock<Mailbox>>);

impl MailboxSlot {
    /// An empty slot.
    pub fn new() -> Self {
        Self::default()
    }

    fn set(&self, mailbox: Mailbox) {
        let _ = self.0.set(mailbox);
    }

    fn post<M: Message>(&self, msg: M) {
        match self.0.get() {
            Some(mailbox) => mailbox.post(msg),
            None => tracing::warn!(message = M::NAME, "slave not started yet: message dropped"),
        }
    }

    /// The containerizer callback: posts [`TaskTerminated`].
    pub fn termination_callback(&self) -> TerminationCallback {
        let slot = self.clone();
        Arc::new(move |task_id, termination| {
            slot.post(TaskTerminated {
                task_id,
                termination,
            })
        })
    }

    /// The containerizer's launch callback: posts [`LaunchFinished`].
    pub fn launch_callback(&self) -> LaunchCallback {
        let slot = self.clone();
        Arc::new(move |task_id, result| {
            slot.post(LaunchFinished {
                task_id,
                result: result.map_err(|e| e.to_string()),
            })
        })
    }

    /// The prober callback: posts [`ProbeFinished`].
    pub fn probe_callback(&self) -> ProbeCallback {
        let slot = self.clone();
        Arc::new(move |result| slot.post(ProbeFinished(result)))
    }
}

// ---- configuration ------------------------------------------------------------------------

/// What the slave process needs to know about itself.
#[derive(Debug, Clone)]
pub struct SlaveProcessConfig {
    /// The masters (`master@HOST:PORT` each); the slave follows the one that leads.
    pub masters: Masters,
    /// The work directory: sandboxes live under `<work_dir>/slaves/<slave-id>/...`.
    pub work_dir: PathBuf,
    /// The hostname reported to the master and given to tasks as `HOST`.
    pub hostname: String,
    /// The slave's port (HTTP and actor).
    pub port: u16,
    /// Resources offered.
    pub resources: Resources,
    /// Attributes.
    pub attributes: Attributes,
}

/// The side effects of a slave.
pub struct SlaveEffects {
    /// Runs tasks; its callback must come from the slave's [`MailboxSlot`].
    pub containerizer: Box<dyn Containerizer>,
    /// Runs health probes; its callback must come from the slave's [`MailboxSlot`].
    pub prober: Box<dyn HealthProber>,
    /// Durable state.
    pub checkpoint: Box<dyn CheckpointStore>,
}

// ---- metrics ------------------------------------------------------------------------------

type StateLabels = Vec<(String, String)>;

/// The slave's Prometheus metrics, in a registry of its own.
struct SlaveMetrics {
    registry: Registry,
    registered: Gauge,
    registration_attempts: Counter,
    status_updates_sent: Counter,
    status_update_retries: Counter,
    acknowledgements: Counter,
    tasks_launched: Counter,
    launch_failures: Counter,
    tasks_terminal: Family<StateLabels, Counter>,
    tasks_live: Gauge,
    checkpoint_errors: Counter,
    health_probes: Counter,
}

impl SlaveMetrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("slave");
        let m = SlaveMetrics {
            registered: Gauge::default(),
            registration_attempts: Counter::default(),
            status_updates_sent: Counter::default(),
            status_update_retries: Counter::default(),
            acknowledgements: Counter::default(),
            tasks_launched: Counter::default(),
            launch_failures: Counter::default(),
            tasks_terminal: Family::default(),
            tasks_live: Gauge::default(),
            checkpoint_errors: Counter::default(),
            health_probes: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "registered",
            "1 when the master admitted this slave",
            m.registered.clone(),
        );
        registry.register(
            "registration_attempts",
            "(Re-)registration messages sent",
            m.registration_attempts.clone(),
        );
        registry.register(
            "status_updates_sent",
            "Status update messages sent (retries included)",
            m.status_updates_sent.clone(),
        );
        registry.register(
            "status_update_retries",
            "Status updates sent again for want of an acknowledgement",
            m.status_update_retries.clone(),
        );
        registry.register(
            "status_update_acknowledgements",
            "Acknowledgements that removed an update",
            m.acknowledgements.clone(),
        );
        registry.register("tasks_launched", "Tasks launched", m.tasks_launched.clone());
        registry.register(
            "task_launch_failures",
            "Tasks that could not be launched",
            m.launch_failures.clone(),
        );
        registry.register(
            "tasks_terminal",
            "Tasks that reached a terminal state, by state",
            m.tasks_terminal.clone(),
        );
        registry.register(
            "tasks_live",
            "Tasks launched and not terminal",
            m.tasks_live.clone(),
        );
        registry.register(
            "checkpoint_errors",
            "Failed checkpoint writes",
            m.checkpoint_errors.clone(),
        );
        registry.register(
            "health_probes",
            "Health probes started",
            m.health_probes.clone(),
        );
        SlaveMetrics { registry, ..m }
    }
}

// ---- the process --------------------------------------------------------------------------

/// The containerizer and the answer of its last [`Containerizer::poll`]: it is polled again
/// when the time it named comes, after the slave called it, or after an event it posted (a
/// launch finished, a task ended); not after every handler. A slave's heartbeat tick then
/// costs no look at the containerizer's books.
struct Polled {
    inner: Box<dyn Containerizer>,
    /// The last poll's answer; None when something may have changed it.
    next: Option<Option<Duration>>,
}

impl Polled {
    fn new(inner: Box<dyn Containerizer>) -> Self {
        Polled { inner, next: None }
    }

    fn get(&self) -> &dyn Containerizer {
        self.inner.as_ref()
    }

    /// The containerizer, to call: it is polled again after this.
    fn get_mut(&mut self) -> &mut dyn Containerizer {
        self.next = None;
        self.inner.as_mut()
    }

    /// What the containerizer has due may have changed without a call of the slave's.
    fn changed(&mut self) {
        self.next = None;
    }

    /// When the containerizer next wants to be polled, polling it if that is now (or unknown).
    fn poll(&mut self, now: Duration) -> Option<Duration> {
        match self.next {
            Some(next) if next.is_none_or(|at| at > now) => next,
            _ => {
                let next = self.inner.poll(now);
                self.next = Some(next);
                next
            }
        }
    }
}

/// The slave process (see the [module docs](self)).
pub struct SlaveProcess {
    config: SlaveProcessConfig,
    info: SlaveInfo,
    containerizer: Polled,
    prober: Box<dyn HealthProber>,
    checkpoint: Box<dyn CheckpointStore>,
    slot: MailboxSlot,
    /// The checkpoint read at construction, consumed by `initialize`.
    recovered: Option<Checkpoint>,
    core: SlaveCore,
    /// Which master leads: the one registered with, heartbeaten and listened to.
    detector: MasterDetector,
    upid: Option<Upid>,
    /// The armed [`Tick`] and the deadline it is for.
    timer: Option<(TimerId, Duration)>,
    /// Tasks whose launch goes on in the background (a [`LaunchFinished`] will come); each is
    /// in the books, so this is bounded like them.
    launching: BTreeSet<TaskId>,
    /// Tasks whose record changed since the last commit (group commit: the messages queued
    /// now are handled first, then one [`CheckpointFlush`] writes them all). No update of
    /// any task goes out while a change waits.
    dirty: BTreeSet<TaskId>,
    /// Launches waiting for their task's record to be written.
    deferred_launches: Vec<(TaskId, TaskSpec)>,
    flush_scheduled: bool,
    metrics: SlaveMetrics,
    /// The gauges' values as last set (registered, live tasks): set again only on a change,
    /// since every message drives the slave and the gauges are shared atomics.
    gauges_shown: Option<(bool, usize)>,
    /// The user of tasks that name none (`--default-task-user`).
    default_task_user: String,
    /// Reports of the tasks' real use to the master (for the web console), if on.
    usage_reports: Option<UsageReports>,
}

/// When the next use report is due, and the CPU time counted at the last one.
#[derive(Debug, Clone, Copy)]
struct UsageReports {
    interval: Duration,
    next: Duration,
    last: Option<(Duration, f64)>,
}

/// A task as `/state` and the HTTP layer see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskView {
    /// The task.
    pub task_id: TaskId,
    /// Its framework.
    pub framework_id: FrameworkId,
    /// Its name.
    pub name: String,
    /// Latest state.
    pub state: TaskState,
    /// Its sandbox (as launched, canonical when known).
    pub sandbox: Arc<Path>,
    /// Last health verdict.
    pub healthy: Option<bool>,
}

fn wall_secs(ctx: &Context<'_>) -> f64 {
    ctx.wall_clock()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn now_of(ctx: &Context<'_>) -> Duration {
    ctx.now().since_origin()
}

/// The end of a task whose process the slave never saw end (it was not running, or not known
/// to the containerizer): no exit status, `message` says why.
fn unknown_end(message: String) -> Termination {
    Termination {
        exit_code: None,
        signal: None,
        oom_killed: false,
        message,
    }
}

/// The ports of a task's resources, ascending.
fn task_ports(resources: &Resources) -> Vec<u16> {
    let mut ports = Vec::new();
    for (first, last) in resources.ports().iter() {
        for port in first..=last {
            if ports.len() > limits::TASK_PORTS_MAX {
                return ports;
            }
            ports.push(port);
        }
    }
    ports
}

impl SlaveProcess {
    /// A slave with its side effects; reads the checkpoint now (what it finds is recovered
    /// when the process starts). `slot` must be the one the effects' callbacks were built from.
    pub fn new(
        config: SlaveProcessConfig,
        effects: SlaveEffects,
        slot: MailboxSlot,
    ) -> Result<Self, SlaveError> {
        let recovered = effects.checkpoint.load()?;
        let info = SlaveInfo {
            hostname: config.hostname.clone(),
            port: config.port,
            resources: config.resources.clone(),
            attributes: config.attributes.clone(),
        };
        let slave_id = recovered.slave.as_ref().map(|s| s.slave_id.clone());
        let detector = MasterDetector::new(config.masters.clone());
        Ok(SlaveProcess {
            config,
            info,
            containerizer: Polled::new(effects.containerizer),
            prober: effects.prober,
            checkpoint: effects.checkpoint,
            slot,
            recovered: Some(recovered),
            core: SlaveCore::new(slave_id, Duration::ZERO),
            detector,
            upid: None,
            timer: None,
            launching: BTreeSet::new(),
            dirty: BTreeSet::new(),
            deferred_launches: Vec::new(),
            flush_scheduled: false,
            metrics: SlaveMetrics::new(),
            gauges_shown: None,
            default_task_user: crate::user::DEFAULT_TASK_USER.to_string(),
            usage_reports: None,
        })
    }

    /// Reports what the tasks use (CPU, resident memory, from their cgroups) to the master
    /// every `interval`, with a heartbeat: the web console's charts of real use.
    pub fn with_usage_reports(mut self, interval: Duration) -> Self {
        self.usage_reports = Some(UsageReports {
            interval,
            next: Duration::ZERO,
            last: None,
        });
        self
    }

    /// The use report due at `now`, if one is (CPU: seconds used per second since the last).
    fn usage_report(&mut self, now: Duration) -> Option<SlaveUsageMessage> {
        let reports = self.usage_reports.as_mut()?;
        if now < reports.next {
            return None;
        }
        reports.next = now + reports.interval;
        let slave_id = self.core.slave_id()?.clone();
        let (mut cpu_secs, mut rss, mut tasks) = (0.0, 0u64, 0u32);
        for (tid, t) in self.core.tasks() {
            if !t.is_live() || t.launch.is_none() {
                continue;
            }
            tasks += 1;
            if let Ok(u) = self.containerizer.get().usage(tid.as_str()) {
                cpu_secs += u.cpus_user_time_secs + u.cpus_system_time_secs;
                rss += u.mem_rss_bytes;
            }
        }
        let cpus_used = match reports.last {
            Some((at, before)) if now > at => {
                ((cpu_secs - before) / (now - at).as_secs_f64()).max(0.0)
            }
            _ => 0.0,
        };
        reports.last = Some((now, cpu_secs));
        Some(SlaveUsageMessage {
            slave_id,
            cpus_used,
            mem_used_mb: rss as f64 / (1024.0 * 1024.0),
            tasks,
        })
    }

    /// Sets the user of tasks that name none, neither in their command nor in their
    /// framework's info (`--default-task-user`; [`crate::user::DEFAULT_TASK_USER`] unless set).
    pub fn with_default_task_user(mut self, user: impl Into<String>) -> Self {
        self.default_task_user = user.into();
        self
    }

    /// The user a task of `framework_id` runs as: its own ([`TaskInfo::user`]: its command's,
    /// else its framework's), else this slave's default task user.
    ///
    /// Whether the task's principal may run tasks as that user is the master's decision (its
    /// `run_tasks` authorization, made before the launch reaches a slave); the slave only
    /// resolves the name to a uid, and fails the task if it does not exist here.
    pub fn task_user(&self, framework_id: &FrameworkId, info: &TaskInfo) -> String {
        let requested = match self.core.frameworks().get(framework_id) {
            Some(framework) => info.user(&framework.info),
            None => info.command.user.as_deref().filter(|u| !u.is_empty()),
        };
        requested.unwrap_or(&self.default_task_user).to_string()
    }

    /// The pure core (for tests and the HTTP layer).
    pub fn core(&self) -> &SlaveCore {
        &self.core
    }

    /// What the slave registers with.
    pub fn info(&self) -> &SlaveInfo {
        &self.info
    }

    /// The configuration.
    pub fn config(&self) -> &SlaveProcessConfig {
        &self.config
    }

    /// Kill every task at once (SIGKILL) and remove their cgroups: for `plateau dev`'s Ctrl-C,
    /// where the whole cluster goes away. A production slave never does this on shutdown —
    /// its tasks outlive it.
    pub fn destroy_all_tasks(&mut self) {
        self.containerizer.get_mut().destroy_all();
    }

    /// Tasks whose launch is under way in the background.
    pub fn launches_in_flight(&self) -> usize {
        self.launching.len()
    }

    /// The containerizer (for usage statistics).
    pub fn containerizer(&self) -> &dyn Containerizer {
        self.containerizer.get()
    }

    /// This process's address, once started.
    pub fn upid(&self) -> Option<&Upid> {
        self.upid.as_ref()
    }

    /// The sandbox directories of the tasks in the books (as configured and, once launched,
    /// as the containerizer resolved them), with their task ids.
    pub fn sandboxes(&self) -> Vec<(TaskId, Arc<Path>)> {
        let mut out = Vec::new();
        for (id, task) in self.core.tasks() {
            out.push((id.clone(), task.sandbox.clone()));
            if let Some(launch) = &task.launch {
                if launch.sandbox != task.sandbox {
                    out.push((id.clone(), launch.sandbox.clone()));
                }
            }
        }
        out
    }

    /// The leading master the slave follows, if one is known.
    pub fn leader(&self) -> Option<&Upid> {
        self.detector.leader()
    }

    /// The id the master gave, if registered once.
    pub fn slave_id(&self) -> Option<&SlaveId> {
        self.core.slave_id()
    }

    /// True when the master admitted the slave and the link holds.
    pub fn is_registered(&self) -> bool {
        self.core.registration.is_registered()
    }

    /// The tasks in the books.
    pub fn tasks(&self) -> Vec<TaskView> {
        self.core
            .tasks()
            .iter()
            .map(|(id, t)| TaskView {
                task_id: id.clone(),
                framework_id: t.framework_id.clone(),
                name: t.info.name.clone(),
                state: t.state,
                sandbox: t
                    .launch
                    .as_ref()
                    .map_or_else(|| t.sandbox.clone(), |l| l.sandbox.clone()),
                healthy: t.health.as_ref().and_then(|h| h.healthy()),
            })
            .collect()
    }

    /// The sandbox directory of a task of `framework_id`:
    /// `<work_dir>/slaves/<slave-id>/frameworks/<fid>/executors/<task-id>/runs/latest`.
    pub fn sandbox_path(&self, framework_id: &FrameworkId, task_id: &TaskId) -> Arc<Path> {
        let slave = self.core.slave_id().map_or("unregistered", |s| s.as_str());
        self.config
            .work_dir
            .join("slaves")
            .join(task_dir_name(slave))
            .join("frameworks")
            .join(task_dir_name(framework_id.as_str()))
            .join("executors")
            .join(task_dir_name(task_id.as_str()))
            .join("runs")
            .join("latest")
            .into()
    }

    /// The Prometheus text of the slave's metrics.
    pub fn metrics_text(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.metrics.registry)
        {
            tracing::error!(error = %e, "metrics do not encode");
        }
        out
    }

    // ---- helpers ----

    /// True when `from` is the leading master followed (the whole `name@host:port`).
    fn is_from_master(&self, from: &Upid) -> bool {
        let ok = self.detector.is_leader(from);
        if !ok {
            let leader = self.detector.leader().map(Upid::to_string);
            tracing::warn!(%from, ?leader, "message not from the leading master: ignored");
        }
        ok
    }

    fn checkpoint_error(&mut self, what: &str, e: SlaveError) {
        self.metrics.checkpoint_errors.inc();
        tracing::error!(error = %e, "checkpoint: {what} failed");
    }

    /// Writes a task's record (state, launch info, pending updates).
    /// The task's record is to be written by the next group commit ([`CheckpointFlush`]);
    /// nothing that depends on it (its launch, its updates) happens before that commit.
    fn persist_task(&mut self, task_id: &TaskId) {
        self.dirty.insert(task_id.clone());
    }

    /// The group commit: writes the changed task records in one transaction, then starts the
    /// launches that waited for it (or fails them when the write failed); [`Self::drive`]
    /// then sends the updates.
    fn flush(&mut self, ctx: &mut Context<'_>) {
        self.flush_scheduled = false;
        let dirty = std::mem::take(&mut self.dirty);
        let records: Vec<_> = dirty
            .iter()
            .filter_map(|id| self.core.task(id))
            .map(crate::core::TaskEntry::record)
            .collect();
        let result = self.checkpoint.put_tasks(&records);
        drop(records);
        let written = match result {
            Ok(()) => true,
            Err(e) => {
                self.checkpoint_error("task write", e);
                false
            }
        };
        for (task_id, spec) in std::mem::take(&mut self.deferred_launches) {
            // Killed (and reported) while it waited: nothing to launch.
            if !self
                .core
                .task(&task_id)
                .is_some_and(|t| t.is_live() && t.kill.is_none())
            {
                continue;
            }
            if !written {
                self.metrics.launch_failures.inc();
                self.update(
                    ctx,
                    &task_id,
                    TaskState::Failed,
                    Some(Reason::ContainerLaunchFailed),
                    Some("The slave cannot checkpoint the task".into()),
                    None,
                );
                continue;
            }
            match self.containerizer.get_mut().start_launch(spec) {
                LaunchStart::Done(result) => {
                    self.launch_over(ctx, &task_id, result.map_err(|e| e.to_string()))
                }
                LaunchStart::Pending => {
                    self.launching.insert(task_id);
                }
            }
        }
    }

    fn handle_checkpoint_flush(&mut self, ctx: &mut Context<'_>, from: &Upid, _m: CheckpointFlush) {
        if Some(from) != self.upid.as_ref() {
            return;
        }
        self.flush(ctx);
        self.drive(ctx);
    }

    fn status(
        &self,
        ctx: &mut Context<'_>,
        task_id: &TaskId,
        state: TaskState,
        reason: Option<Reason>,
        message: Option<String>,
        healthy: Option<bool>,
    ) -> TaskStatus {
        let timestamp = wall_secs(ctx);
        new_status(
            task_id.clone(),
            state,
            reason,
            message,
            healthy,
            self.core.slave_id().cloned(),
            timestamp,
            ctx.rng(),
        )
    }

    /// Queues an update and checkpoints it (before it is sent, after the handler).
    fn update(
        &mut self,
        ctx: &mut Context<'_>,
        task_id: &TaskId,
        state: TaskState,
        reason: Option<Reason>,
        message: Option<String>,
        healthy: Option<bool>,
    ) {
        if self.queue_update(ctx, task_id, state, reason, message, healthy) {
            self.persist_task(task_id);
        }
    }

    /// Queues an update without checkpointing it: the caller checkpoints the task before the
    /// handler ends (one write for several updates). False when the queue refused it.
    fn queue_update(
        &mut self,
        ctx: &mut Context<'_>,
        task_id: &TaskId,
        state: TaskState,
        reason: Option<Reason>,
        message: Option<String>,
        healthy: Option<bool>,
    ) -> bool {
        let status = self.status(ctx, task_id, state, reason, message, healthy);
        let was_live = self.core.task(task_id).is_some_and(|t| t.is_live());
        if !self.core.record_update(now_of(ctx), status) {
            tracing::warn!(%task_id, ?state, "update queue full: update dropped");
            return false;
        }
        if state.is_terminal() && was_live {
            self.metrics
                .tasks_terminal
                .get_or_create(&vec![("state".to_string(), state.as_str().to_string())])
                .inc();
        }
        true
    }

    /// An update that needs no acknowledgement, for a task that is not in the books.
    fn send_unbooked_update(
        &self,
        ctx: &mut Context<'_>,
        framework_id: &FrameworkId,
        task_id: &TaskId,
        state: TaskState,
        reason: Reason,
        message: String,
    ) {
        let mut status = self.status(ctx, task_id, state, Some(reason), Some(message), None);
        status.uuid = None;
        let msg = StatusUpdateMessage {
            framework_id: framework_id.clone(),
            status,
            slave_pid: self.upid.clone(),
        };
        match self.detector.leader() {
            Some(leader) => ctx.send(leader, msg),
            None => tracing::warn!(%task_id, "no leading master known: update dropped"),
        }
    }

    fn reregister_message(&self) -> ReregisterSlaveMessage {
        let slave_id = self
            .core
            .slave_id()
            .cloned()
            .expect("re-registration needs an id");
        ReregisterSlaveMessage {
            slave_id,
            slave: self.info.clone(),
            tasks: self
                .core
                .tasks()
                .values()
                .map(|t| SlaveTask {
                    framework_id: t.framework_id.clone(),
                    task: TaskInfo::clone(&t.info),
                    state: t.state,
                })
                .collect(),
            frameworks: self
                .core
                .frameworks()
                .iter()
                .map(|(id, f)| (id.clone(), f.pid.clone()))
                .collect(),
        }
    }

    /// Carries out what is due, then arms the one timer for the next deadline.
    fn drive(&mut self, ctx: &mut Context<'_>) {
        if !self.dirty.is_empty() || !self.deferred_launches.is_empty() {
            // Updates wait for the group commit of their records.
            if !self.flush_scheduled {
                self.flush_scheduled = true;
                let me = ctx.self_upid().clone();
                ctx.send(&me, CheckpointFlush);
            }
        }
        let now = now_of(ctx);
        self.follow_leader(ctx, now);
        // While no leader is known nothing is due for a master: the registration waits for
        // one, and updates are sent only while registered. Tasks and their health checks go on.
        if let Some(master) = self.detector.leader().cloned() {
            self.talk_to_master(ctx, now, &master);
        }
        for due in self.core.poll_health(now) {
            let Some(task) = self.core.task(&due.task_id) else {
                continue;
            };
            let sandbox = task
                .launch
                .as_ref()
                .map_or_else(|| task.sandbox.clone(), |l| l.sandbox.clone());
            let env = self.task_env(&task.info, &sandbox);
            let user = self.task_user(&task.framework_id, &task.info);
            self.metrics.health_probes.inc();
            self.prober.probe(ProbeRequest {
                task_id: due.task_id.as_str().to_string(),
                probe_id: due.probe_id,
                kind: due.check.kind,
                host: self.config.hostname.clone(),
                timeout: due.timeout,
                sandbox,
                env,
                user,
            });
        }
        let containerizer_next = self.containerizer.poll(now);
        let next = [
            self.core.next_deadline(),
            containerizer_next,
            self.detector.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min();
        let gauges = (self.is_registered(), self.core.live_task_count());
        if self.gauges_shown != Some(gauges) {
            self.gauges_shown = Some(gauges);
            self.metrics.registered.set(i64::from(gauges.0));
            self.metrics.tasks_live.set(gauges.1 as i64);
        }
        if self.timer.map(|(_, at)| at) != next {
            if let Some((id, _)) = self.timer.take() {
                ctx.cancel(id);
            }
            if let Some(at) = next {
                let id = ctx.delay(at.saturating_sub(now), Tick);
                self.timer = Some((id, at));
            }
        }
    }

    /// Sends the detector's due queries, and follows a change of leader: re-registration at
    /// once with a new leader (as after a lost master, the tasks kept), none while no leader
    /// is known.
    fn follow_leader(&mut self, ctx: &mut Context<'_>, now: Duration) {
        for master in self.detector.poll_queries(now, ctx.rng()) {
            ctx.send(&master, LeaderQueryMessage {});
        }
        let Some(change) = self.detector.poll_change() else {
            return;
        };
        if let Some(previous) = &change.previous {
            if change.leader.as_ref() != Some(previous) {
                ctx.unlink(previous);
            }
        }
        let has_id = self.core.slave_id().is_some();
        match &change.leader {
            Some(leader) => {
                tracing::info!(%leader, term = change.term, "following a new leading master");
                self.core.registration.handle_new_master(now, has_id);
            }
            None => {
                let previous = change.previous.as_ref().map(Upid::to_string);
                tracing::warn!(?previous, "no leading master known: looking for one");
                self.core.registration.handle_master_unknown(has_id);
            }
        }
    }

    /// What is due for the leading master: a registration attempt, a heartbeat, updates.
    fn talk_to_master(&mut self, ctx: &mut Context<'_>, now: Duration, master: &Upid) {
        if let Some(action) = self.core.registration.poll_attempt(now, ctx.rng()) {
            self.metrics.registration_attempts.inc();
            // A link per attempt: its `exited` is how a lost master is noticed.
            ctx.link(master);
            match action {
                RegistrationAction::Register => {
                    tracing::info!(%master, "registering");
                    let msg = RegisterSlaveMessage {
                        slave: self.info.clone(),
                    };
                    ctx.send(master, msg);
                }
                RegistrationAction::Reregister => {
                    let msg = self.reregister_message();
                    tracing::info!(%master, tasks = msg.tasks.len(), "re-registering");
                    ctx.send(master, msg);
                }
            }
        }
        if self.core.registration.poll_heartbeat(now) {
            if let Some(slave_id) = self.core.slave_id().cloned() {
                ctx.send(master, SlaveHeartbeatMessage { slave_id });
            }
            if let Some(report) = self.usage_report(now) {
                ctx.send(master, report);
            }
        }
        let updates = if self.dirty.is_empty() {
            self.core.poll_updates(now)
        } else {
            Vec::new()
        };
        for update in updates {
            tracing::debug!(task_id = %update.status.task_id, state = update.status.state.as_str(), retry = update.retry, "sending a status update");
            self.metrics.status_updates_sent.inc();
            if update.retry {
                self.metrics.status_update_retries.inc();
            }
            let msg = StatusUpdateMessage {
                framework_id: update.framework_id,
                status: update.status,
                slave_pid: self.upid.clone(),
            };
            ctx.send(master, msg);
        }
    }

    /// The environment a task (and its COMMAND health checks) sees, besides what the
    /// containerizer adds.
    fn task_env(&self, info: &TaskInfo, sandbox: &Path) -> BTreeMap<String, String> {
        let mut env = info.command.environment.clone();
        env.insert("MESOS_TASK_ID".into(), info.task_id.as_str().to_string());
        env.insert(
            "MESOS_SANDBOX".into(),
            sandbox.to_string_lossy().into_owned(),
        );
        env.insert("HOST".into(), self.config.hostname.clone());
        let ports = task_ports(&info.resources);
        for (i, port) in ports.iter().enumerate() {
            env.insert(format!("PORT{i}"), port.to_string());
        }
        if let Some(first) = ports.first() {
            env.insert("PORT".into(), first.to_string());
        }
        env
    }

    fn task_spec(
        &self,
        framework_id: &FrameworkId,
        info: &TaskInfo,
        sandbox: &Arc<Path>,
    ) -> TaskSpec {
        let command = &info.command;
        let arguments = if command.shell {
            Vec::new()
        } else {
            // TaskInfo's arguments are argv[1..]; the containerizer wants the whole argv.
            std::iter::once(command.value.clone())
                .chain(command.arguments.iter().cloned())
                .collect()
        };
        TaskSpec {
            task_id: info.task_id.as_str().to_string(),
            command: CommandSpec {
                shell: command.shell,
                value: command.value.clone(),
                arguments,
            },
            env: self.task_env(info, sandbox),
            // A task without cpus or mem still needs a sane cgroup.
            cpus: info.resources.cpus().max(0.01),
            mem_mb: info
                .resources
                .mem_mb()
                .max((limits::TASK_MEMORY_LIMIT_MIN_BYTES >> 20) as f64),
            ports: task_ports(&info.resources),
            sandbox: Arc::clone(sandbox),
            hostname: self.config.hostname.clone(),
            user: Some(self.task_user(framework_id, info)),
        }
    }

    fn kill_grace(info: &TaskInfo) -> Duration {
        match info.kill_grace_period_secs {
            Some(secs) if secs.is_finite() && secs >= 0.0 => {
                Duration::from_secs_f64(secs.min(3600.0))
            }
            _ => limits::KILL_GRACE_PERIOD_DEFAULT,
        }
    }

    /// Asks the containerizer to kill a live task; a task it does not know is reported at once.
    fn kill_task(&mut self, ctx: &mut Context<'_>, task_id: &TaskId, cause: KillCause) {
        let Some(task) = self.core.task_mut(task_id) else {
            return;
        };
        if !task.is_live() {
            return;
        }
        let first_kill = task.kill.is_none();
        if first_kill {
            task.kill = Some(cause);
        }
        let grace = Self::kill_grace(&task.info);
        let launched = task.launch.is_some();
        self.persist_task(task_id);
        if !first_kill {
            return;
        }
        if !launched && self.launching.contains(task_id) {
            // Carried out when the launch is over (`launch_over`).
            tracing::info!(%task_id, "kill during the launch: the task is killed once launched");
            return;
        }
        let result = if launched {
            self.containerizer.get_mut().kill(task_id.as_str(), grace)
        } else {
            Err(ContainerizerError::UnknownTask(
                task_id.as_str().to_string(),
            ))
        };
        if let Err(e) = result {
            tracing::warn!(%task_id, error = %e, "kill: the containerizer does not run the task; reporting it killed");
            let termination = unknown_end(e.to_string());
            let (state, reason, message) = termination_status(Some(cause), &termination);
            self.update(ctx, task_id, state, reason, Some(message), None);
        }
    }

    // ---- recovery ----

    fn recover(&mut self, ctx: &mut Context<'_>, checkpoint: Checkpoint) {
        let now = now_of(ctx);
        let slave_id = checkpoint.slave.as_ref().map(|s| s.slave_id.clone());
        self.core = SlaveCore::new(slave_id, now);
        for (id, record) in &checkpoint.frameworks {
            let entry = FrameworkEntry {
                info: record.info.clone(),
                pid: record.pid.clone(),
            };
            if let Err(e) = self.core.upsert_framework(id.clone(), entry) {
                tracing::error!(framework_id = %id, error = %e, "recovery: framework dropped");
            }
        }
        let mut known = Vec::new();
        for (task_id, record) in checkpoint.tasks {
            if !self.core.frameworks().contains_key(&record.framework_id) {
                // A task whose framework record is missing (a crash between the two writes is
                // impossible, the framework is written first; but be lenient).
                let placeholder = FrameworkEntry {
                    info: FrameworkInfo::new("unknown"),
                    pid: self.config.masters.first().clone(),
                };
                let _ = self
                    .core
                    .upsert_framework(record.framework_id.clone(), placeholder);
            }
            if !record.state.is_terminal() {
                if let Some(launch) = &record.launch {
                    known.push(launch.clone());
                }
            }
            self.core.restore_task(RestoredTask {
                framework_id: record.framework_id,
                info: record.info,
                state: record.state,
                sandbox: record.sandbox,
                launch: record.launch,
                kill: record.kill,
                pending_updates: record.pending_updates,
            });
            let _ = task_id;
        }
        let recovered = self.containerizer.get_mut().recover(known);
        tracing::info!(
            tasks = self.core.tasks().len(),
            recovered = recovered.len(),
            "recovered from the checkpoint"
        );
        for outcome in recovered {
            match outcome {
                RecoveredTask::Running(info) => {
                    let task_id = TaskId::new(info.task_id.clone());
                    if let Some(task) = self.core.task_mut(&task_id) {
                        task.launch = Some(info);
                        let (state, kill) = (task.state, task.kill);
                        if state == TaskState::Running && kill.is_none() {
                            self.core.start_health_check(now, &task_id);
                        }
                        if let Some(cause) = kill {
                            // The kill may not have reached the containerizer before the
                            // restart: ask again.
                            if let Some(task) = self.core.task_mut(&task_id) {
                                task.kill = None;
                            }
                            self.kill_task(ctx, &task_id, cause);
                        }
                    }
                }
                RecoveredTask::Terminated { info, termination } => {
                    let task_id = TaskId::new(info.task_id.clone());
                    self.handle_termination(ctx, &task_id, termination);
                }
            }
        }
        // Live tasks without a launch record: the slave stopped during their launch.
        let interrupted: Vec<TaskId> = self
            .core
            .tasks()
            .iter()
            .filter(|(_, t)| t.is_live() && t.launch.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        for task_id in interrupted {
            // Whatever the launch started is gone: the containerizer's recovery removed the
            // cgroups (and so the processes) of tasks it was not given.
            let message = "The slave restarted while launching the task";
            match self.core.task(&task_id).and_then(|t| t.kill) {
                Some(cause) => {
                    let termination = unknown_end(message.into());
                    let (state, reason, message) = termination_status(Some(cause), &termination);
                    self.update(ctx, &task_id, state, reason, Some(message), None);
                }
                None => self.update(
                    ctx,
                    &task_id,
                    TaskState::Failed,
                    Some(Reason::SlaveRestarted),
                    Some(message.into()),
                    None,
                ),
            }
        }
        let idle: Vec<FrameworkId> = self
            .core
            .frameworks()
            .keys()
            .filter(|id| !self.core.tasks().values().any(|t| &t.framework_id == *id))
            .cloned()
            .collect();
        for id in idle {
            self.core.remove_framework_if_idle(&id);
            if let Err(e) = self.checkpoint.remove_framework(&id) {
                self.checkpoint_error("framework removal", e);
            }
        }
    }

    fn handle_termination(&mut self, ctx: &mut Context<'_>, task_id: &TaskId, t: Termination) {
        let Some(task) = self.core.task(task_id) else {
            tracing::debug!(%task_id, "termination of a task not in the books");
            return;
        };
        if !task.is_live() {
            return;
        }
        let (state, reason, message) = termination_status(task.kill, &t);
        tracing::info!(%task_id, framework_id = %task.framework_id, state = state.as_str(), exit_code = t.exit_code, signal = t.signal, oom_killed = t.oom_killed, %message, "task terminated");
        self.update(ctx, task_id, state, reason, Some(message), None);
        // The termination is durable now: the containerizer may drop its own record.
        self.containerizer.get_mut().forget(task_id.as_str());
    }

    // ---- handlers ----

    fn handle_tick(&mut self, ctx: &mut Context<'_>, _from: &Upid, _tick: Tick) {
        self.timer = None;
        self.drive(ctx);
    }

    /// Who leads the masters: an answer to a query, a new leader's announcement, or a
    /// redirect from a master that does not lead. The detector judges it; `drive` follows.
    fn handle_new_master_detected(
        &mut self,
        ctx: &mut Context<'_>,
        from: &Upid,
        msg: NewMasterDetectedMessage,
    ) {
        let news = self
            .detector
            .handle_new_master_detected(now_of(ctx), from, &msg);
        let leader = msg.leader.as_ref().map(Upid::to_string);
        tracing::debug!(%from, ?leader, term = msg.term, ?news, "news of the leading master");
        self.drive(ctx);
    }

    fn handle_slave_registered(
        &mut self,
        ctx: &mut Context<'_>,
        from: &Upid,
        msg: SlaveRegisteredMessage,
    ) {
        if !self.is_from_master(from) {
            return;
        }
        match self.core.slave_id() {
            Some(id) if *id != msg.slave_id => {
                tracing::warn!(ours = %id, theirs = %msg.slave_id, "SlaveRegistered with another id: ignored");
                return;
            }
            Some(_) if self.is_registered() => return,
            _ => {}
        }
        // Write before acting: the id must survive a crash right after.
        let record = SlaveRecord {
            slave_id: msg.slave_id.clone(),
            info: self.info.clone(),
        };
        if let Err(e) = self.checkpoint.put_slave(&record) {
            self.checkpoint_error("slave id write", e);
        }
        tracing::info!(slave_id = %msg.slave_id, "registered with the master");
        self.core.set_slave_id(msg.slave_id);
        self.on_admitted(ctx, msg.heartbeat_interval_ms);
    }

    fn handle_slave_reregistered(
        &mut self,
        ctx: &mut Context<'_>,
        from: &Upid,
        msg: SlaveReregisteredMessage,
    ) {
        if !self.is_from_master(from) {
            return;
        }
        if self.core.slave_id() != Some(&msg.slave_id) {
            tracing::warn!(theirs = %msg.slave_id, "SlaveReregistered for another id: ignored");
            return;
        }
        if self.is_registered() {
            return;
        }
        tracing::info!(slave_id = %msg.slave_id, "re-registered with the master");
        self.on_admitted(ctx, msg.heartbeat_interval_ms);
    }

    fn on_admitted(&mut self, ctx: &mut Context<'_>, heartbeat_interval_ms: u64) {
        let now = now_of(ctx);
        self.core
            .registration
            .handle_registered(now, Duration::from_millis(heartbeat_interval_ms));
        self.core.resend_all_updates(now);
        self.drive(ctx);
    }

    fn handle_reregister_request(
        &mut self,
        ctx: &mut Context<'_>,
        from: &Upid,
        msg: ReregisterRequestMessage,
    ) {
        if !self.is_from_master(from) || self.core.slave_id() != Some(&msg.slave_id) {
            return;
        }
        tracing::info!("the master asks this slave to re-register");
        self.core
            .registration
            .handle_reregister_request(now_of(ctx));
        self.drive(ctx);
    }

    fn handle_run_task(&mut self, ctx: &mut Context<'_>, from: &Upid, msg: RunTaskMessage) {
        if !self.is_from_master(from) {
            return;
        }
        self.run_task(ctx, msg);
        self.drive(ctx);
    }

    fn run_task(&mut self, ctx: &mut Context<'_>, msg: RunTaskMessage) {
        let RunTaskMessage {
            framework_id,
            framework,
            framework_pid,
            task,
        } = msg;
        let task_id = task.task_id.clone();
        if self.core.slave_id().is_none() {
            tracing::warn!(%task_id, "RunTask before registration: dropped");
            return;
        }
        if let Some(existing) = self.core.task(&task_id) {
            tracing::warn!(%task_id, framework = %existing.framework_id, "RunTask for a task already on this slave: ignored");
            return;
        }
        // The framework first: a task record never points at an unknown framework. Written
        // only when new or changed: a framework launching many tasks costs one write.
        let unchanged = self
            .core
            .frameworks()
            .get(&framework_id)
            .is_some_and(|f| f.info == framework && f.pid == framework_pid);
        let entry = FrameworkEntry {
            info: framework.clone(),
            pid: framework_pid.clone(),
        };
        if let Err(e) = self.core.upsert_framework(framework_id.clone(), entry) {
            self.send_unbooked_update(
                ctx,
                &framework_id,
                &task_id,
                TaskState::Failed,
                Reason::ContainerLaunchFailed,
                e.to_string(),
            );
            return;
        }
        let record = FrameworkRecord {
            id: framework_id.clone(),
            info: framework,
            pid: framework_pid,
        };
        if !unchanged {
            if let Err(e) = self.checkpoint.put_framework(&record) {
                self.checkpoint_error("framework write", e);
            }
        }
        let sandbox = self.sandbox_path(&framework_id, &task_id);
        if let Err(e) = self
            .core
            .add_task(framework_id.clone(), task.clone(), sandbox.clone())
        {
            self.core.remove_framework_if_idle(&framework_id);
            self.send_unbooked_update(
                ctx,
                &framework_id,
                &task_id,
                TaskState::Failed,
                Reason::ContainerLaunchFailed,
                e.to_string(),
            );
            return;
        }
        if self.core.take_kill_before_launch(&framework_id, &task_id) {
            self.update(
                ctx,
                &task_id,
                TaskState::Killed,
                Some(Reason::TaskKilledDuringLaunch),
                Some("Killed before it was launched".into()),
                None,
            );
            return;
        }
        // TASK_STARTING goes out now, in the same write as the task record (write before
        // acting: the task is recorded before it is launched). Its round trip to the framework
        // and back overlaps the launch, so TASK_RUNNING need not wait for it afterwards.
        self.queue_update(ctx, &task_id, TaskState::Starting, None, None, None);
        self.persist_task(&task_id);
        let spec = self.task_spec(&framework_id, &task, &sandbox);
        self.deferred_launches.push((task_id, spec));
    }

    /// The outcome of a task's launch: RUNNING (checkpointed with the launch record), or
    /// TASK_FAILED; a task killed meanwhile is killed now and reported TASK_KILLED.
    fn launch_over(
        &mut self,
        ctx: &mut Context<'_>,
        task_id: &TaskId,
        result: Result<LaunchInfo, String>,
    ) {
        let Some(task) = self.core.task_mut(task_id) else {
            // Cannot happen (a launching task leaves the books only after a terminal update,
            // which waits for the launch); a task launched for nobody must not run on.
            tracing::error!(%task_id, "launch outcome of a task not in the books");
            if result.is_ok() {
                let _ = self
                    .containerizer
                    .get_mut()
                    .kill(task_id.as_str(), Duration::ZERO);
            }
            return;
        };
        let kill = task.kill;
        match result {
            Ok(info) => {
                tracing::info!(%task_id, pid = info.pid, "task launched");
                self.metrics.tasks_launched.inc();
                task.launch = Some(info);
                if let Some(cause) = kill {
                    // Killed during the launch: now the containerizer can kill it; its
                    // termination reports TASK_KILLED.
                    task.kill = None;
                    self.kill_task(ctx, task_id, cause);
                    return;
                }
                // One checkpoint write for the launch record and the update.
                self.queue_update(ctx, task_id, TaskState::Running, None, None, None);
                self.persist_task(task_id);
                self.core.start_health_check(now_of(ctx), task_id);
            }
            Err(e) => {
                self.metrics.launch_failures.inc();
                match kill {
                    Some(cause) => {
                        tracing::info!(%task_id, error = %e, "launch of a killed task failed");
                        let termination =
                            unknown_end(format!("Killed during its launch, which failed: {e}"));
                        let (state, reason, message) =
                            termination_status(Some(cause), &termination);
                        self.update(ctx, task_id, state, reason, Some(message), None);
                    }
                    None => {
                        tracing::warn!(%task_id, error = %e, "launch failed");
                        self.update(
                            ctx,
                            task_id,
                            TaskState::Failed,
                            Some(Reason::ContainerLaunchFailed),
                            Some(format!("Failed to launch the task: {e}")),
                            None,
                        );
                    }
                }
            }
        }
    }

    fn handle_kill_task(&mut self, ctx: &mut Context<'_>, from: &Upid, msg: KillTaskMessage) {
        if !self.is_from_master(from) {
            return;
        }
        match self.core.task(&msg.task_id) {
            None => {
                tracing::info!(task_id = %msg.task_id, "kill of a task not (yet) here: remembered");
                self.core
                    .remember_kill_before_launch(msg.framework_id, msg.task_id);
            }
            Some(task) if task.framework_id != msg.framework_id => {
                tracing::warn!(task_id = %msg.task_id, "kill from another framework: ignored");
            }
            Some(_) => self.kill_task(ctx, &msg.task_id, KillCause::Requested),
        }
        self.drive(ctx);
    }

    fn handle_shutdown_framework(
        &mut self,
        ctx: &mut Context<'_>,
        from: &Upid,
        msg: ShutdownFrameworkMessage,
    ) {
        if !self.is_from_master(from) {
            return;
        }
        let tasks: Vec<TaskId> = self
            .core
            .tasks()
            .iter()
            .filter(|(_, t)| t.framework_id == msg.framework_id && t.is_live())
            .map(|(id, _)| id.clone())
            .collect();
        tracing::info!(framework_id = %msg.framework_id, tasks = tasks.len(), "shutting down a framework");
        for task_id in tasks {
            self.kill_task(ctx, &task_id, KillCause::FrameworkShutdown);
        }
        self.drive(ctx);
    }

    fn handle_acknowledgement(
        &mut self,
        ctx: &mut Context<'_>,
        from: &Upid,
        msg: StatusUpdateAcknowledgementMessage,
    ) {
        if !self.is_from_master(from) {
            return;
        }
        if self.core.slave_id() != Some(&msg.slave_id) {
            tracing::warn!(slave_id = %msg.slave_id, "acknowledgement for another slave: ignored");
            return;
        }
        match self.core.acknowledge(now_of(ctx), &msg.task_id, msg.uuid) {
            AckOutcome::Ignored => {
                tracing::debug!(task_id = %msg.task_id, "stale or unknown acknowledgement")
            }
            AckOutcome::Acknowledged => {
                tracing::debug!(task_id = %msg.task_id, "status update acknowledged");
                self.metrics.acknowledgements.inc();
                self.persist_task(&msg.task_id);
            }
            AckOutcome::Removed {
                task,
                framework_removed,
            } => {
                self.metrics.acknowledgements.inc();
                tracing::info!(task_id = %msg.task_id, state = task.state.as_str(), "terminal update acknowledged: task removed");
                if let Err(e) = self.checkpoint.remove_task(&msg.task_id) {
                    self.checkpoint_error("task removal", e);
                }
                if framework_removed {
                    if let Err(e) = self.checkpoint.remove_framework(&task.framework_id) {
                        self.checkpoint_error("framework removal", e);
                    }
                }
                self.containerizer.get_mut().forget(msg.task_id.as_str());
            }
        }
        self.drive(ctx);
    }

    fn handle_task_terminated(&mut self, ctx: &mut Context<'_>, from: &Upid, msg: TaskTerminated) {
        if Some(from) != self.upid.as_ref() {
            tracing::warn!(%from, "TaskTerminated from outside: ignored");
            return;
        }
        // Posted by the containerizer: what it has due may have changed.
        self.containerizer.changed();
        self.handle_termination(ctx, &TaskId::new(msg.task_id), msg.termination);
        self.drive(ctx);
    }

    fn handle_launch_finished(&mut self, ctx: &mut Context<'_>, from: &Upid, msg: LaunchFinished) {
        if Some(from) != self.upid.as_ref() {
            tracing::warn!(%from, "LaunchFinished from outside: ignored");
            return;
        }
        // Posted by the containerizer: what it has due may have changed.
        self.containerizer.changed();
        let task_id = TaskId::new(msg.task_id);
        if !self.launching.remove(&task_id) {
            tracing::error!(%task_id, "outcome of a launch this slave did not start: ignored");
            return;
        }
        self.launch_over(ctx, &task_id, msg.result);
        self.drive(ctx);
    }

    fn handle_probe_finished(&mut self, ctx: &mut Context<'_>, from: &Upid, msg: ProbeFinished) {
        if Some(from) != self.upid.as_ref() {
            tracing::warn!(%from, "ProbeFinished from outside: ignored");
            return;
        }
        let result = msg.0;
        let task_id = TaskId::new(result.task_id);
        let outcome =
            self.core
                .handle_probe_result(now_of(ctx), &task_id, result.probe_id, result.healthy);
        let health_update = |this: &mut Self, ctx: &mut Context<'_>, healthy: bool| {
            this.update(
                ctx,
                &task_id,
                TaskState::Running,
                Some(Reason::TaskHealthCheckStatusUpdated),
                Some(result.message.clone()),
                Some(healthy),
            );
        };
        match outcome {
            HealthOutcome::Unchanged => {}
            HealthOutcome::Changed(healthy) => {
                tracing::info!(%task_id, healthy, message = %result.message, "health changed");
                health_update(self, ctx, healthy);
            }
            HealthOutcome::Kill { changed } => {
                tracing::warn!(%task_id, message = %result.message, "health check failed too often: killing the task");
                if changed {
                    health_update(self, ctx, false);
                }
                self.kill_task(ctx, &task_id, KillCause::Unhealthy);
            }
        }
        self.drive(ctx);
    }
}

impl Process for SlaveProcess {
    fn install(h: &mut Handlers<Self>) {
        h.on(Self::handle_tick)
            .on(Self::handle_new_master_detected)
            .on(Self::handle_slave_registered)
            .on(Self::handle_slave_reregistered)
            .on(Self::handle_reregister_request)
            .on(Self::handle_run_task)
            .on(Self::handle_kill_task)
            .on(Self::handle_shutdown_framework)
            .on(Self::handle_acknowledgement)
            .on(Self::handle_task_terminated)
            .on(Self::handle_launch_finished)
            .on(Self::handle_checkpoint_flush)
            .on(Self::handle_probe_finished);
        // From other nodes, only a master may send anything (the rest is local).
        h.allow_roles(
            RoleSet::of(&[Role::Master]),
            &[
                NewMasterDetectedMessage::NAME,
                SlaveRegisteredMessage::NAME,
                SlaveReregisteredMessage::NAME,
                ReregisterRequestMessage::NAME,
                RunTaskMessage::NAME,
                KillTaskMessage::NAME,
                ShutdownFrameworkMessage::NAME,
                StatusUpdateAcknowledgementMessage::NAME,
            ],
        )
        .allow_others(RoleSet::NONE);
    }

    fn initialize(&mut self, ctx: &mut Context<'_>) {
        self.upid = Some(ctx.self_upid().clone());
        self.slot.set(ctx.mailbox());
        let checkpoint = self.recovered.take().unwrap_or_default();
        self.recover(ctx, checkpoint);
        if self.detector.leader().is_none() {
            // Several masters: registration waits until one is found to lead.
            let has_id = self.core.slave_id().is_some();
            self.core.registration.handle_master_unknown(has_id);
        }
        self.drive(ctx);
    }

    fn exited(&mut self, ctx: &mut Context<'_>, upid: &Upid) {
        let now = now_of(ctx);
        if !self.detector.handle_exited(now, upid) {
            return;
        }
        tracing::warn!(master = %upid, "lost the leading master: re-registering");
        let has_id = self.core.slave_id().is_some();
        self.core.registration.handle_master_lost(now, has_id);
        // With several masters the detector forgot it: `drive` makes the registration wait
        // for the next leader.
        self.drive(ctx);
    }
}

#[cfg(test)]
mod tests;
