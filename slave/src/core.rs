//! The slave's pure core: registration with the master, heartbeats, the task books, the status
//! update manager and health-check bookkeeping. No I/O, no clock, no global randomness: time
//! comes in as `now` (time since an arbitrary origin), randomness as a `&mut impl RngCore`.
//!
//! The [`crate::process::SlaveProcess`] feeds it messages and timer firings and carries out
//! what it decides: sends, checkpoint writes, launches and kills.
//!
//! # Status updates (Mesos' status update manager)
//!
//! Every task has a queue of updates. Only the oldest unacknowledged one is in flight: it is
//! sent, then sent again after 1 s, 2 s, 4 s... (at most 10 s apart) until the framework's
//! acknowledgement for its uuid comes back through the master; then the next one goes out. So
//! the updates of one task reach the framework in order. A task leaves the books when its
//! terminal update is acknowledged. Updates are only sent while the slave is registered; on
//! (re-)registration every queue's head is sent again at once.
//!
//! # Registration
//!
//! [`Registration`] is `Registering` (no slave id yet), `Reregistering` (an id, but not
//! currently admitted) or `Registered`. Attempts go out at once, then after 1 s, 2 s, 4 s...
//! (at most 10 s, plus up to 10% jitter) until the master answers. A registered slave
//! heartbeats every interval the master gave. The master is the leader the slave's
//! [`plateau_master::detector::MasterDetector`] follows: when another one leads, the slave
//! re-registers with it at once ([`Registration::handle_new_master`]); while none is known it
//! makes no attempt ([`Registration::handle_master_unknown`]).
//!
//! ```
//! use std::time::Duration;
//! use plateau_slave::core::{Registration, RegistrationAction, RegistrationState};
//! use rand::SeedableRng;
//!
//! let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
//! let mut reg = Registration::new(false, Duration::ZERO);
//! assert_eq!(reg.poll_attempt(Duration::ZERO, &mut rng), Some(RegistrationAction::Register));
//! // Nothing more until the backoff expires.
//! assert_eq!(reg.poll_attempt(Duration::from_millis(500), &mut rng), None);
//! reg.handle_registered(Duration::from_secs(1), Duration::from_secs(1));
//! assert_eq!(reg.state(), RegistrationState::Registered);
//! assert!(reg.poll_heartbeat(Duration::from_secs(2)));
//! ```

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use plateau_master::ids::{FrameworkId, SlaveId, TaskId};
use plateau_master::messages::{
    FrameworkInfo, HealthCheck, Reason, StatusSource, TaskInfo, TaskState, TaskStatus,
};
use plateau_runtime::Upid;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::containerizer::{LaunchInfo, Termination};
use crate::limits;

/// Exponential backoff: `initial`, then doubling, capped at `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    /// A backoff starting at `initial`, capped at `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        assert!(initial <= max && !initial.is_zero());
        Backoff {
            initial,
            max,
            current: initial,
        }
    }

    /// The protocol's backoff: 1 s, ×2, at most 10 s.
    pub fn protocol() -> Self {
        Self::new(limits::RETRY_BACKOFF_INITIAL, limits::RETRY_BACKOFF_MAX)
    }

    /// The delay to wait now; the next call returns twice as much (capped).
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.current;
        self.current = (self.current * 2).min(self.max);
        delay
    }

    /// Back to `initial`.
    pub fn reset(&mut self) {
        self.current = self.initial;
    }
}

// ---- registration -------------------------------------------------------------------------

/// Where the slave stands with the master.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RegistrationState {
    /// No slave id yet: sending RegisterSlaveMessage.
    Registering,
    /// A slave id, not admitted now (restart, lost link, master asked): sending
    /// ReregisterSlaveMessage.
    Reregistering,
    /// Admitted; heartbeating.
    Registered,
}

/// What to send for a registration attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistrationAction {
    /// Send RegisterSlaveMessage.
    Register,
    /// Send ReregisterSlaveMessage with the tasks and frameworks.
    Reregister,
}

/// The registration state machine and the heartbeat schedule.
#[derive(Debug, Clone)]
pub struct Registration {
    state: RegistrationState,
    /// When the next attempt is due (not registered only).
    attempt_at: Option<Duration>,
    backoff: Backoff,
    heartbeat_interval: Duration,
    /// When the next heartbeat is due (registered only).
    heartbeat_at: Option<Duration>,
    attempts: u64,
}

impl Registration {
    /// Starts registering (or re-registering, with a known slave id); the first attempt is due
    /// at `now`.
    pub fn new(has_slave_id: bool, now: Duration) -> Self {
        Registration {
            state: if has_slave_id {
                RegistrationState::Reregistering
            } else {
                RegistrationState::Registering
            },
            attempt_at: Some(now),
            backoff: Backoff::protocol(),
            heartbeat_interval: limits::HEARTBEAT_INTERVAL_DEFAULT,
            heartbeat_at: None,
            attempts: 0,
        }
    }

    /// The current state.
    pub fn state(&self) -> RegistrationState {
        self.state
    }

    /// True when admitted by the master.
    pub fn is_registered(&self) -> bool {
        self.state == RegistrationState::Registered
    }

    /// Registration attempts made so far.
    pub fn attempts(&self) -> u64 {
        self.attempts
    }

    /// The heartbeat interval in force.
    pub fn heartbeat_interval(&self) -> Duration {
        self.heartbeat_interval
    }

    /// An attempt to make now, if one is due; the next is scheduled after the backoff plus a
    /// jitter of up to 10%.
    pub fn poll_attempt(
        &mut self,
        now: Duration,
        rng: &mut impl RngCore,
    ) -> Option<RegistrationAction> {
        let due = self.attempt_at?;
        if now < due || self.is_registered() {
            return None;
        }
        let delay = self.backoff.next_delay();
        let jitter_range_ms = (delay.as_millis() as u64 / 10).max(1);
        let jitter = Duration::from_millis(rng.next_u64() % jitter_range_ms);
        self.attempt_at = Some(now + delay + jitter);
        self.attempts += 1;
        Some(match self.state {
            RegistrationState::Registering => RegistrationAction::Register,
            _ => RegistrationAction::Reregister,
        })
    }

    /// The master admitted the slave (Slave(Re)RegisteredMessage): heartbeats start.
    pub fn handle_registered(&mut self, now: Duration, heartbeat_interval: Duration) {
        self.state = RegistrationState::Registered;
        self.attempt_at = None;
        self.backoff.reset();
        self.heartbeat_interval = heartbeat_interval.max(limits::HEARTBEAT_INTERVAL_MIN);
        self.heartbeat_at = Some(now + self.heartbeat_interval);
    }

    /// The link to the master broke: re-register (register, without an id). A slave already
    /// trying keeps its schedule and backoff, so a master that stays down is not hammered.
    pub fn handle_master_lost(&mut self, now: Duration, has_slave_id: bool) {
        let target = if has_slave_id {
            RegistrationState::Reregistering
        } else {
            RegistrationState::Registering
        };
        if self.is_registered() {
            self.backoff.reset();
            self.attempt_at = Some(now);
        }
        self.state = target;
        self.heartbeat_at = None;
        if self.attempt_at.is_none() {
            self.attempt_at = Some(now);
        }
    }

    /// Another master leads now (or the same one, elected again): its predecessor's
    /// admission does not count with it. Re-register (register, without an id) at once, with
    /// a fresh backoff.
    pub fn handle_new_master(&mut self, now: Duration, has_slave_id: bool) {
        self.state = if has_slave_id {
            RegistrationState::Reregistering
        } else {
            RegistrationState::Registering
        };
        self.heartbeat_at = None;
        self.backoff.reset();
        self.attempt_at = Some(now);
    }

    /// No master is known to lead: not admitted, and no attempt until
    /// [`Self::handle_new_master`] names one.
    pub fn handle_master_unknown(&mut self, has_slave_id: bool) {
        self.state = if has_slave_id {
            RegistrationState::Reregistering
        } else {
            RegistrationState::Registering
        };
        self.heartbeat_at = None;
        self.attempt_at = None;
    }

    /// The master asked for re-registration (it lost track of this slave): attempt at once.
    pub fn handle_reregister_request(&mut self, now: Duration) {
        self.state = RegistrationState::Reregistering;
        self.heartbeat_at = None;
        self.backoff.reset();
        self.attempt_at = Some(now);
    }

    /// True when a heartbeat is due now; the next one is scheduled an interval later.
    pub fn poll_heartbeat(&mut self, now: Duration) -> bool {
        match self.heartbeat_at {
            Some(at) if self.is_registered() && now >= at => {
                // Skip beats missed while the process was busy rather than sending a burst.
                let mut next = at + self.heartbeat_interval;
                if next <= now {
                    next = now + self.heartbeat_interval;
                }
                self.heartbeat_at = Some(next);
                true
            }
            _ => false,
        }
    }

    /// When this machine next wants to act.
    pub fn next_deadline(&self) -> Option<Duration> {
        if self.is_registered() {
            self.heartbeat_at
        } else {
            self.attempt_at
        }
    }
}

// ---- health checks ------------------------------------------------------------------------

/// Health-check bookkeeping of one task (Mesos' health checker, on the slave's side).
#[derive(Debug, Clone, PartialEq)]
pub struct HealthState {
    check: HealthCheck,
    /// When the task started running.
    started_at: Duration,
    next_probe_at: Duration,
    /// The probe awaiting its result.
    in_flight: Option<u64>,
    next_probe_id: u64,
    consecutive_failures: u32,
    healthy: Option<bool>,
    /// A success ends the grace period early, as in Mesos.
    grace_over: bool,
}

/// What a probe result changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthOutcome {
    /// Nothing to report (same verdict, a failure within the grace period, a stale result).
    Unchanged,
    /// The verdict changed: send TASK_RUNNING with `healthy` and reason
    /// TaskHealthCheckStatusUpdated.
    Changed(bool),
    /// Too many consecutive failures: report the change (if any), then kill the task and
    /// report TASK_FAILED with reason TaskUnhealthy.
    Kill {
        /// The verdict changed to unhealthy with this result.
        changed: bool,
    },
}

fn secs(value: f64) -> Duration {
    if value.is_finite() && value > 0.0 {
        Duration::from_secs_f64(value.min(1e9))
    } else {
        Duration::ZERO
    }
}

impl HealthState {
    /// A health check for a task that started running at `now`: the first probe after
    /// `delay_secs`.
    pub fn new(check: HealthCheck, now: Duration) -> Self {
        HealthState {
            next_probe_at: now + secs(check.delay_secs),
            check,
            started_at: now,
            in_flight: None,
            next_probe_id: 1,
            consecutive_failures: 0,
            healthy: None,
            grace_over: false,
        }
    }

    /// The current verdict (None before the first conclusive probe).
    pub fn healthy(&self) -> Option<bool> {
        self.healthy
    }

    /// Consecutive failures counted so far.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// The health check.
    pub fn check(&self) -> &HealthCheck {
        &self.check
    }

    /// The timeout of one probe.
    pub fn timeout(&self) -> Duration {
        secs(self.check.timeout_secs).min(limits::HEALTH_CHECK_TIMEOUT_MAX)
    }

    fn interval(&self) -> Duration {
        secs(self.check.interval_secs).max(limits::HEALTH_CHECK_INTERVAL_MIN)
    }

    /// A probe to start now, if one is due and none is in flight.
    pub fn poll_probe(&mut self, now: Duration) -> Option<u64> {
        if self.in_flight.is_some() || now < self.next_probe_at {
            return None;
        }
        let id = self.next_probe_id;
        self.next_probe_id += 1;
        self.in_flight = Some(id);
        Some(id)
    }

    /// The result of probe `probe_id`; the next probe is due an interval from now.
    pub fn handle_result(&mut self, now: Duration, probe_id: u64, healthy: bool) -> HealthOutcome {
        if self.in_flight != Some(probe_id) {
            return HealthOutcome::Unchanged;
        }
        self.in_flight = None;
        self.next_probe_at = now + self.interval();
        if healthy {
            self.grace_over = true;
            self.consecutive_failures = 0;
            let changed = self.healthy != Some(true);
            self.healthy = Some(true);
            return if changed {
                HealthOutcome::Changed(true)
            } else {
                HealthOutcome::Unchanged
            };
        }
        let in_grace =
            !self.grace_over && now < self.started_at + secs(self.check.grace_period_secs);
        if in_grace {
            return HealthOutcome::Unchanged;
        }
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let changed = self.healthy != Some(false);
        self.healthy = Some(false);
        let limit = self.check.consecutive_failures;
        if limit > 0 && self.consecutive_failures >= limit {
            HealthOutcome::Kill { changed }
        } else if changed {
            HealthOutcome::Changed(false)
        } else {
            HealthOutcome::Unchanged
        }
    }

    fn next_deadline(&self) -> Option<Duration> {
        self.in_flight.is_none().then_some(self.next_probe_at)
    }
}

// ---- tasks and the status update manager --------------------------------------------------

/// Why the slave asked the containerizer to kill a task: decides the terminal state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KillCause {
    /// KillTaskMessage: TASK_KILLED.
    Requested,
    /// ShutdownFrameworkMessage: TASK_KILLED, reason FrameworkRemoved.
    FrameworkShutdown,
    /// The health check failed too often: TASK_FAILED, reason TaskUnhealthy.
    Unhealthy,
}

/// The unacknowledged updates of one task.
#[derive(Debug, Clone, PartialEq)]
struct UpdateStream {
    pending: VecDeque<TaskStatus>,
    /// When the head is (re)sent next; `None` while there is no head.
    send_at: Option<Duration>,
    /// The time under which the task is in the slave's retry index, if it is: set when its
    /// head is sent (its retry time), cleared when that entry leaves the index.
    retry_at: Option<Duration>,
    backoff: Backoff,
}

impl UpdateStream {
    fn new() -> Self {
        UpdateStream {
            pending: VecDeque::new(),
            send_at: None,
            retry_at: None,
            backoff: Backoff::protocol(),
        }
    }
}

/// A task in the slave's books.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskEntry {
    /// Its framework.
    pub framework_id: FrameworkId,
    /// The task as the framework described it; shared with its checkpoint record, which
    /// holds the same description (a slave holds a million of them in the simulator).
    pub info: Arc<TaskInfo>,
    /// The state of the latest update generated for it (Staging before any).
    pub state: TaskState,
    /// Its sandbox directory.
    pub sandbox: Arc<Path>,
    /// What the containerizer launched (None before the launch, or if it failed).
    pub launch: Option<LaunchInfo>,
    /// Set once a kill was asked of the containerizer.
    pub kill: Option<KillCause>,
    /// Health-check bookkeeping, while the task runs and has a check.
    pub health: Option<HealthState>,
    updates: UpdateStream,
}

impl TaskEntry {
    /// The unacknowledged updates, oldest first.
    pub fn pending_updates(&self) -> impl Iterator<Item = &TaskStatus> {
        self.updates.pending.iter()
    }

    /// The task as a checkpoint record, borrowed.
    pub fn record(&self) -> crate::checkpoint::TaskRecordRef<'_> {
        let (front, back) = self.updates.pending.as_slices();
        crate::checkpoint::TaskRecordRef {
            framework_id: &self.framework_id,
            info: &self.info,
            state: self.state,
            sandbox: &self.sandbox,
            launch: self.launch.as_ref(),
            kill: self.kill,
            pending_updates: crate::checkpoint::PendingUpdates(front, back),
        }
    }

    /// True when the task's process may still run (launched or launching, no terminal update
    /// generated yet).
    pub fn is_live(&self) -> bool {
        !self.state.is_terminal()
    }
}

/// A framework with tasks on this slave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameworkEntry {
    /// Its registration data.
    pub info: FrameworkInfo,
    /// Its scheduler's address.
    pub pid: Upid,
}

/// Why a task cannot be added to the books.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddTaskError {
    /// A task with this id is already in the books.
    #[error("task '{0}' is already known to this slave")]
    Duplicate(TaskId),
    /// [`limits::SLAVE_TASKS_MAX`] tasks are in the books.
    #[error("too many tasks on this slave (at most {0})")]
    TooManyTasks(usize),
    /// [`limits::SLAVE_FRAMEWORKS_MAX`] frameworks are in the books.
    #[error("too many frameworks on this slave (at most {0})")]
    TooManyFrameworks(usize),
}

/// What an acknowledgement did.
#[derive(Debug, Clone, PartialEq)]
pub enum AckOutcome {
    /// No such task, or the uuid is not the one in flight (a duplicate or stale ack).
    Ignored,
    /// The head update was acknowledged; the next one (if any) is due now.
    Acknowledged,
    /// The terminal update was acknowledged: the task left the books (and its framework too,
    /// when it was the framework's last task).
    Removed {
        /// The removed task.
        task: Box<TaskEntry>,
        /// The framework left the books with it.
        framework_removed: bool,
    },
}

/// One status update to send to the master.
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingUpdate {
    /// The task's framework.
    pub framework_id: FrameworkId,
    /// The update.
    pub status: TaskStatus,
    /// True when this is a resend of an update already sent.
    pub retry: bool,
}

/// A health probe to start.
#[derive(Debug, Clone, PartialEq)]
pub struct DueProbe {
    /// The task.
    pub task_id: TaskId,
    /// The probe's id within the task's health check.
    pub probe_id: u64,
    /// The check.
    pub check: HealthCheck,
    /// The probe's timeout.
    pub timeout: Duration,
}

/// The terminal state, reason and message for a task's termination.
pub fn termination_status(
    kill: Option<KillCause>,
    termination: &Termination,
) -> (TaskState, Option<Reason>, String) {
    let detail = |what: &str| {
        let status = match (termination.exit_code, termination.signal) {
            (Some(code), _) => format!("exited with status {code}"),
            (None, Some(signal)) => format!("terminated by signal {signal}"),
            (None, None) => "ended with an unknown status".to_string(),
        };
        if termination.message.is_empty() {
            format!("{what}: {status}")
        } else {
            format!("{what}: {status} ({})", termination.message)
        }
    };
    match kill {
        Some(KillCause::Unhealthy) => (
            TaskState::Failed,
            Some(Reason::TaskUnhealthy),
            detail("Task killed because its health check failed"),
        ),
        Some(KillCause::Requested) => (TaskState::Killed, None, detail("Task killed")),
        Some(KillCause::FrameworkShutdown) => (
            TaskState::Killed,
            Some(Reason::FrameworkRemoved),
            detail("Task killed because its framework was removed"),
        ),
        None if termination.oom_killed => (
            TaskState::Failed,
            Some(Reason::ContainerLimitationMemory),
            detail("Memory limit exceeded"),
        ),
        None if termination.is_success() => (TaskState::Finished, None, detail("Command exited")),
        None => (
            TaskState::Failed,
            Some(Reason::CommandExecutorFailed),
            detail("Command failed"),
        ),
    }
}

/// The slave's books: frameworks, tasks with their update queues and health checks, and the
/// registration state.
#[derive(Debug, Clone)]
pub struct SlaveCore {
    /// Registration and heartbeats.
    pub registration: Registration,
    slave_id: Option<SlaveId>,
    frameworks: BTreeMap<FrameworkId, FrameworkEntry>,
    /// Boxed: a task entry is large, and a B-tree moves its values on every insert and
    /// removal.
    tasks: BTreeMap<TaskId, Box<TaskEntry>>,
    /// Kills that arrived before their task (bounded, oldest forgotten first).
    kills_before_launch: VecDeque<(FrameworkId, TaskId)>,
    /// No task's update is due before this (`None`: no update is queued). A lower bound kept
    /// on every change and made exact by [`SlaveCore::poll_updates`]: a slave's heartbeats and
    /// timer ticks then cost nothing per task.
    updates_due: Option<Duration>,
    /// The same for health probes ([`SlaveCore::poll_health`]).
    probes_due: Option<Duration>,
    /// How many tasks are live (kept on every change, read on every message).
    live: usize,
    /// How many tasks have updates not acknowledged: at none, no update can be due, whatever
    /// `updates_due` says (an acknowledged update leaves its retry time behind).
    streams_pending: usize,
    /// Tasks whose queue got a new head, due at once: [`SlaveCore::poll_updates`] sends
    /// these without looking at every task.
    fresh_heads: Vec<TaskId>,
    /// The tasks whose head was sent, by when it is due again. A head is mostly acknowledged
    /// well before: its entry then leaves. (A walk over every task at each retry time cost
    /// 2 % of a simulation.)
    retry_index: BTreeSet<(Duration, TaskId)>,
}

/// Lowers a due-time bound to `at`.
fn lower(bound: &mut Option<Duration>, at: Option<Duration>) {
    if let Some(at) = at {
        *bound = Some(bound.map_or(at, |b| b.min(at)));
    }
}

/// True when a bound says something may be due at `now`.
fn may_be_due(bound: Option<Duration>, now: Duration) -> bool {
    bound.is_some_and(|b| b <= now)
}

impl SlaveCore {
    /// Empty books; registration (or re-registration, with a known id) due at `now`.
    pub fn new(slave_id: Option<SlaveId>, now: Duration) -> Self {
        SlaveCore {
            registration: Registration::new(slave_id.is_some(), now),
            slave_id,
            frameworks: BTreeMap::new(),
            tasks: BTreeMap::new(),
            kills_before_launch: VecDeque::new(),
            updates_due: None,
            probes_due: None,
            live: 0,
            streams_pending: 0,
            fresh_heads: Vec::new(),
            retry_index: BTreeSet::new(),
        }
    }

    /// The id the master gave, if any.
    pub fn slave_id(&self) -> Option<&SlaveId> {
        self.slave_id.as_ref()
    }

    /// Records the id the master gave.
    pub fn set_slave_id(&mut self, id: SlaveId) {
        self.slave_id = Some(id);
    }

    /// The frameworks in the books.
    pub fn frameworks(&self) -> &BTreeMap<FrameworkId, FrameworkEntry> {
        &self.frameworks
    }

    /// The tasks in the books.
    pub fn tasks(&self) -> &BTreeMap<TaskId, Box<TaskEntry>> {
        &self.tasks
    }

    /// How many tasks are live (not terminal).
    pub fn live_task_count(&self) -> usize {
        self.live
    }

    /// One task.
    pub fn task(&self, task_id: &TaskId) -> Option<&TaskEntry> {
        self.tasks.get(task_id).map(|t| &**t)
    }

    /// One task, to change it (launch info, kill cause).
    pub fn task_mut(&mut self, task_id: &TaskId) -> Option<&mut TaskEntry> {
        self.tasks.get_mut(task_id).map(|t| &mut **t)
    }

    /// Adds or updates a framework (its scheduler may have moved).
    pub fn upsert_framework(
        &mut self,
        id: FrameworkId,
        entry: FrameworkEntry,
    ) -> Result<(), AddTaskError> {
        if !self.frameworks.contains_key(&id)
            && self.frameworks.len() >= limits::SLAVE_FRAMEWORKS_MAX
        {
            return Err(AddTaskError::TooManyFrameworks(
                limits::SLAVE_FRAMEWORKS_MAX,
            ));
        }
        self.frameworks.insert(id, entry);
        Ok(())
    }

    /// Removes a framework without tasks. Returns whether it was removed.
    pub fn remove_framework_if_idle(&mut self, id: &FrameworkId) -> bool {
        if self.tasks.values().any(|t| &t.framework_id == id) {
            return false;
        }
        self.frameworks.remove(id).is_some()
    }

    /// Adds a task (state Staging, nothing queued). Its framework must be in the books.
    pub fn add_task(
        &mut self,
        framework_id: FrameworkId,
        info: TaskInfo,
        sandbox: Arc<Path>,
    ) -> Result<(), AddTaskError> {
        assert!(
            self.frameworks.contains_key(&framework_id),
            "framework of a task is added first"
        );
        if self.tasks.contains_key(&info.task_id) {
            return Err(AddTaskError::Duplicate(info.task_id.clone()));
        }
        if self.tasks.len() >= limits::SLAVE_TASKS_MAX {
            return Err(AddTaskError::TooManyTasks(limits::SLAVE_TASKS_MAX));
        }
        self.live += 1;
        self.tasks.insert(
            info.task_id.clone(),
            Box::new(TaskEntry {
                framework_id,
                info: Arc::new(info),
                state: TaskState::Staging,
                sandbox,
                launch: None,
                kill: None,
                health: None,
                updates: UpdateStream::new(),
            }),
        );
        Ok(())
    }

    /// Restores a checkpointed task with its latest state and unacknowledged updates; the
    /// updates are sent once the slave is registered.
    pub fn restore_task(&mut self, entry: RestoredTask) {
        let mut updates = UpdateStream::new();
        updates.pending = entry.pending_updates.into();
        if !updates.pending.is_empty() {
            updates.send_at = Some(Duration::ZERO);
            lower(&mut self.updates_due, updates.send_at);
            self.fresh_heads.push(entry.info.task_id.clone());
        }
        let task = Box::new(TaskEntry {
            framework_id: entry.framework_id,
            info: entry.info,
            state: entry.state,
            sandbox: entry.sandbox,
            launch: entry.launch,
            kill: entry.kill,
            health: None,
            updates,
        });
        self.live += usize::from(task.is_live());
        self.streams_pending += usize::from(!task.updates.pending.is_empty());
        if let Some(mut old) = self.tasks.insert(task.info.task_id.clone(), task) {
            self.live -= usize::from(old.is_live());
            self.streams_pending -= usize::from(!old.updates.pending.is_empty());
            Self::unindex_retry(&mut self.retry_index, &mut old);
        }
    }

    /// Remembers a kill for a task not (yet) in the books.
    pub fn remember_kill_before_launch(&mut self, framework_id: FrameworkId, task_id: TaskId) {
        if self.kills_before_launch.len() >= limits::KILLS_BEFORE_LAUNCH_MAX {
            self.kills_before_launch.pop_front();
        }
        self.kills_before_launch.push_back((framework_id, task_id));
    }

    /// True (once) when a kill for this task arrived before it.
    pub fn take_kill_before_launch(
        &mut self,
        framework_id: &FrameworkId,
        task_id: &TaskId,
    ) -> bool {
        let before = self.kills_before_launch.len();
        self.kills_before_launch
            .retain(|(f, t)| !(f == framework_id && t == task_id));
        self.kills_before_launch.len() != before
    }

    /// Queues a slave-generated update (it must carry a uuid) and makes it the task's latest
    /// state. A terminal update ends the health check. Returns false when the update was
    /// dropped because the queue is full (never for a terminal update).
    pub fn record_update(&mut self, now: Duration, status: TaskStatus) -> bool {
        assert!(
            status.uuid.is_some(),
            "slave updates are acknowledged by uuid"
        );
        let Some(task) = self.tasks.get_mut(&status.task_id) else {
            return false;
        };
        debug_assert!(
            !task.state.is_terminal(),
            "no update after a terminal update ({:?} after {:?})",
            status.state,
            task.state
        );
        if !status.state.is_terminal()
            && task.updates.pending.len() >= limits::TASK_UPDATES_PENDING_MAX
        {
            return false;
        }
        if status.state.is_terminal() {
            task.health = None;
            self.live -= usize::from(task.is_live());
        }
        task.state = status.state;
        if task.updates.pending.is_empty() {
            task.updates.send_at = Some(now);
            task.updates.backoff.reset();
            lower(&mut self.updates_due, Some(now));
            self.streams_pending += 1;
            self.fresh_heads.push(status.task_id.clone());
        }
        if task.updates.pending.len() == task.updates.pending.capacity() {
            // Grown one at a time: a queue mostly holds one update (the default growth
            // starts at four, on every task of the slave).
            task.updates.pending.reserve_exact(1);
        }
        task.updates.pending.push_back(status);
        true
    }

    /// The updates to send now: each task's head, when due. Nothing while unregistered.
    pub fn poll_updates(&mut self, now: Duration) -> Vec<OutgoingUpdate> {
        self.forget_due_times_if_nothing_pending();
        if !self.registration.is_registered() || !may_be_due(self.updates_due, now) {
            return Vec::new();
        }
        let mut out = Vec::new();
        // New heads first (a task may be listed twice: once sent, it is not due).
        for task_id in std::mem::take(&mut self.fresh_heads) {
            if let Some(task) = self.tasks.get_mut(&task_id) {
                if let Some(update) = Self::send_head_if_due(&mut self.retry_index, task, now) {
                    out.push(update);
                }
            }
        }
        // Then the retries due, in task order.
        let mut due = Vec::new();
        while may_be_due(self.retry_due(), now) {
            let (_, task_id) = self.retry_index.pop_first().expect("one is due");
            due.push(task_id);
        }
        due.sort_unstable();
        for task_id in due {
            if let Some(task) = self.tasks.get_mut(&task_id) {
                task.updates.retry_at = None;
                if let Some(update) = Self::send_head_if_due(&mut self.retry_index, task, now) {
                    out.push(update);
                }
            }
        }
        self.updates_due = self.retry_due();
        out
    }

    /// With no update pending, no update is due, whatever times were left behind.
    fn forget_due_times_if_nothing_pending(&mut self) {
        if self.streams_pending == 0 {
            debug_assert!(
                self.retry_index.is_empty(),
                "an acknowledged head leaves the index"
            );
            self.fresh_heads.clear();
            self.updates_due = None;
        }
    }

    /// When the first head already sent is due again (a retry), if one is.
    fn retry_due(&self) -> Option<Duration> {
        self.retry_index.first().map(|(at, _)| *at)
    }

    /// Takes `task` out of the retry index, if it is in.
    fn unindex_retry(index: &mut BTreeSet<(Duration, TaskId)>, task: &mut TaskEntry) {
        if let Some(at) = task.updates.retry_at.take() {
            index.remove(&(at, task.info.task_id.clone()));
        }
    }

    /// The head of `task`'s queue if it is due at `now`; its next retry is then set, and
    /// indexed.
    fn send_head_if_due(
        index: &mut BTreeSet<(Duration, TaskId)>,
        task: &mut TaskEntry,
        now: Duration,
    ) -> Option<OutgoingUpdate> {
        let (Some(head), Some(at)) = (task.updates.pending.front(), task.updates.send_at) else {
            return None;
        };
        if now < at {
            return None;
        }
        let head = head.clone();
        Self::unindex_retry(index, task);
        let stream = &mut task.updates;
        let retry = stream.backoff.current != stream.backoff.initial;
        let retry_at = now + stream.backoff.next_delay();
        stream.send_at = Some(retry_at);
        stream.retry_at = Some(retry_at);
        index.insert((retry_at, task.info.task_id.clone()));
        Some(OutgoingUpdate {
            framework_id: task.framework_id.clone(),
            status: head,
            retry,
        })
    }

    /// Makes every queue's head due now with a fresh backoff (after (re-)registration).
    pub fn resend_all_updates(&mut self, now: Duration) {
        for (task_id, task) in &mut self.tasks {
            if !task.updates.pending.is_empty() {
                Self::unindex_retry(&mut self.retry_index, task);
                task.updates.send_at = Some(now);
                task.updates.backoff.reset();
                lower(&mut self.updates_due, Some(now));
                self.fresh_heads.push(task_id.clone());
            }
        }
    }

    /// An acknowledgement for `uuid` of `task_id`'s update.
    pub fn acknowledge(&mut self, now: Duration, task_id: &TaskId, uuid: [u8; 16]) -> AckOutcome {
        let Some(task) = self.tasks.get_mut(task_id) else {
            return AckOutcome::Ignored;
        };
        if task.updates.pending.front().and_then(|s| s.uuid) != Some(uuid) {
            return AckOutcome::Ignored;
        }
        Self::unindex_retry(&mut self.retry_index, task);
        let stream = &mut task.updates;
        let acked = stream.pending.pop_front().expect("head checked above");
        stream.backoff.reset();
        stream.send_at = if stream.pending.is_empty() {
            self.streams_pending -= 1;
            None
        } else {
            self.fresh_heads.push(task_id.clone());
            Some(now)
        };
        lower(&mut self.updates_due, stream.send_at);
        debug_assert!(
            !acked.state.is_terminal() || stream.pending.is_empty(),
            "the terminal update is the last"
        );
        self.forget_due_times_if_nothing_pending();
        if acked.state.is_terminal() {
            let task = self.tasks.remove(task_id).expect("task present");
            let framework_removed = self.remove_framework_if_idle(&task.framework_id);
            return AckOutcome::Removed {
                task,
                framework_removed,
            };
        }
        AckOutcome::Acknowledged
    }

    /// Starts the health check of a task that just started running.
    pub fn start_health_check(&mut self, now: Duration, task_id: &TaskId) {
        if let Some(task) = self.tasks.get_mut(task_id) {
            if let Some(check) = task.info.health_check.clone() {
                if task.is_live() {
                    let health = HealthState::new(check, now);
                    lower(&mut self.probes_due, health.next_deadline());
                    task.health = Some(health);
                }
            }
        }
    }

    /// Health probes to start now.
    pub fn poll_health(&mut self, now: Duration) -> Vec<DueProbe> {
        if !may_be_due(self.probes_due, now) {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut next = None;
        for (task_id, task) in &mut self.tasks {
            if task.kill.is_some() {
                continue;
            }
            let Some(health) = task.health.as_mut() else {
                continue;
            };
            if let Some(probe_id) = health.poll_probe(now) {
                out.push(DueProbe {
                    task_id: task_id.clone(),
                    probe_id,
                    check: health.check.clone(),
                    timeout: health.timeout(),
                });
            }
            lower(&mut next, health.next_deadline());
        }
        self.probes_due = next;
        out
    }

    /// The result of a probe.
    pub fn handle_probe_result(
        &mut self,
        now: Duration,
        task_id: &TaskId,
        probe_id: u64,
        healthy: bool,
    ) -> HealthOutcome {
        match self
            .tasks
            .get_mut(task_id)
            .filter(|t| t.kill.is_none())
            .and_then(|t| t.health.as_mut())
        {
            Some(health) => {
                let outcome = health.handle_result(now, probe_id, healthy);
                lower(&mut self.probes_due, health.next_deadline());
                outcome
            }
            None => HealthOutcome::Unchanged,
        }
    }

    /// When the core next wants to act (registration attempt, heartbeat, update retry, probe).
    pub fn next_deadline(&self) -> Option<Duration> {
        // The bounds may be early (a spurious wake-up makes them exact), never late.
        let mut next = self.registration.next_deadline();
        if self.registration.is_registered() {
            lower(&mut next, self.updates_due);
        }
        lower(&mut next, self.probes_due);
        next
    }
}

/// A task as read back from the checkpoint.
#[derive(Debug, Clone)]
pub struct RestoredTask {
    /// Its framework.
    pub framework_id: FrameworkId,
    /// The task.
    pub info: Arc<TaskInfo>,
    /// Latest state.
    pub state: TaskState,
    /// Sandbox.
    pub sandbox: Arc<Path>,
    /// What the containerizer launched.
    pub launch: Option<LaunchInfo>,
    /// A kill asked before the restart.
    pub kill: Option<KillCause>,
    /// Unacknowledged updates, oldest first.
    pub pending_updates: Vec<TaskStatus>,
}

/// A slave-generated status (with a uuid drawn from `rng`).
#[allow(clippy::too_many_arguments)]
pub fn new_status(
    task_id: TaskId,
    state: TaskState,
    reason: Option<Reason>,
    message: Option<String>,
    healthy: Option<bool>,
    slave_id: Option<SlaveId>,
    timestamp: f64,
    rng: &mut impl RngCore,
) -> TaskStatus {
    let mut uuid = [0u8; 16];
    rng.fill_bytes(&mut uuid);
    TaskStatus {
        task_id,
        state,
        message,
        source: StatusSource::Slave,
        reason,
        slave_id,
        healthy,
        timestamp,
        uuid: Some(uuid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plateau_master::messages::{CommandInfo, HealthCheckKind};
    use plateau_master::resources::Resources;
    use plateau_runtime::NodeAddr;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    fn s(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }

    fn rng() -> SmallRng {
        SmallRng::seed_from_u64(1)
    }

    fn task_info(id: &str, health: Option<HealthCheck>) -> TaskInfo {
        TaskInfo {
            name: id.to_string(),
            task_id: TaskId::new(id),
            slave_id: SlaveId::new("S1"),
            resources: Resources::parse("cpus:1;mem:64").unwrap(),
            command: CommandInfo::shell("true"),
            health_check: health,
            labels: BTreeMap::new(),
            kill_grace_period_secs: None,
        }
    }

    fn core_with_task(id: &str, health: Option<HealthCheck>) -> SlaveCore {
        let mut core = SlaveCore::new(Some(SlaveId::new("S1")), Duration::ZERO);
        // Heartbeats far away, so that deadlines are those of updates and probes.
        core.registration
            .handle_registered(Duration::ZERO, s(1000.0));
        let fw = FrameworkId::new("fw");
        core.upsert_framework(
            fw.clone(),
            FrameworkEntry {
                info: FrameworkInfo::new("fw"),
                pid: Upid::new("sched", &NodeAddr::new("10.0.0.9", 1)),
            },
        )
        .unwrap();
        core.add_task(fw, task_info(id, health), Path::new("/sandbox").into())
            .unwrap();
        core
    }

    fn status(id: &str, state: TaskState, r: &mut SmallRng) -> TaskStatus {
        new_status(TaskId::new(id), state, None, None, None, None, 0.0, r)
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let mut b = Backoff::protocol();
        let delays: Vec<u64> = (0..6).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(delays, vec![1, 2, 4, 8, 10, 10]);
        b.reset();
        assert_eq!(b.next_delay(), s(1.0));
    }

    #[test]
    fn registration_retries_with_backoff_and_jitter_until_registered() {
        let mut r = rng();
        let mut reg = Registration::new(false, Duration::ZERO);
        assert_eq!(reg.state(), RegistrationState::Registering);
        let mut attempts = Vec::new();
        let mut now = Duration::ZERO;
        while now < s(40.0) {
            if reg.poll_attempt(now, &mut r).is_some() {
                attempts.push(now);
            }
            now += Duration::from_millis(10);
        }
        // At 0, then ~1, ~3, ~7, ~15, ~25, ~35 s (each gap the backoff plus < 10% jitter).
        let gaps: Vec<Duration> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
        let expected = [1.0, 2.0, 4.0, 8.0, 10.0, 10.0];
        assert_eq!(gaps.len(), expected.len(), "{attempts:?}");
        for (gap, base) in gaps.iter().zip(expected) {
            assert!(
                *gap >= s(base) && *gap <= s(base * 1.1 + 0.02),
                "{gap:?} vs {base}"
            );
        }
        assert_eq!(reg.attempts(), 7);
        reg.handle_registered(s(40.0), s(0.5));
        assert!(reg.is_registered());
        assert_eq!(reg.poll_attempt(s(100.0), &mut r), None);
        assert_eq!(reg.next_deadline(), Some(s(40.5)));
    }

    #[test]
    fn heartbeats_follow_the_interval_and_stop_when_disconnected() {
        let mut reg = Registration::new(true, Duration::ZERO);
        assert!(
            !reg.poll_heartbeat(s(5.0)),
            "no heartbeat before registration"
        );
        reg.handle_registered(s(1.0), s(1.0));
        assert!(!reg.poll_heartbeat(s(1.5)));
        assert!(reg.poll_heartbeat(s(2.0)));
        assert!(!reg.poll_heartbeat(s(2.5)));
        assert!(reg.poll_heartbeat(s(3.0)));
        // A late wake-up sends one beat, not a burst.
        assert!(reg.poll_heartbeat(s(10.0)));
        assert!(!reg.poll_heartbeat(s(10.5)));
        reg.handle_master_lost(s(11.0), true);
        assert_eq!(reg.state(), RegistrationState::Reregistering);
        assert!(!reg.poll_heartbeat(s(20.0)));
    }

    #[test]
    fn master_loss_reregisters_at_once_but_keeps_backoff_while_trying() {
        let mut r = rng();
        let mut reg = Registration::new(true, Duration::ZERO);
        reg.handle_registered(Duration::ZERO, s(1.0));
        reg.handle_master_lost(s(5.0), true);
        assert_eq!(
            reg.poll_attempt(s(5.0), &mut r),
            Some(RegistrationAction::Reregister)
        );
        assert!(reg.poll_attempt(s(5.5), &mut r).is_none());
        assert!(reg.poll_attempt(s(6.2), &mut r).is_some());
        // Losing the link again while trying does not reset the schedule.
        reg.handle_master_lost(s(6.3), true);
        assert!(reg.poll_attempt(s(6.4), &mut r).is_none());
        assert!(reg.next_deadline().unwrap() >= s(8.2));
        // The master asking resets it.
        reg.handle_reregister_request(s(6.5));
        assert!(reg.poll_attempt(s(6.5), &mut r).is_some());
    }

    #[test]
    fn a_new_master_is_reregistered_with_at_once_and_an_unknown_one_is_waited_for() {
        let mut r = rng();
        let mut reg = Registration::new(true, Duration::ZERO);
        reg.handle_registered(Duration::ZERO, s(1.0));
        // No master known to lead: not admitted, no attempt, no heartbeat, no deadline.
        reg.handle_master_unknown(true);
        assert_eq!(reg.state(), RegistrationState::Reregistering);
        assert_eq!(reg.poll_attempt(s(60.0), &mut r), None);
        assert!(!reg.poll_heartbeat(s(60.0)));
        assert_eq!(reg.next_deadline(), None);
        // One is found: re-register at once.
        reg.handle_new_master(s(61.0), true);
        assert_eq!(
            reg.poll_attempt(s(61.0), &mut r),
            Some(RegistrationAction::Reregister)
        );
        assert!(reg.poll_attempt(s(61.5), &mut r).is_none());
        // Another takes over while trying: at once again, from the shortest backoff.
        reg.handle_new_master(s(61.6), true);
        assert!(reg.poll_attempt(s(61.6), &mut r).is_some());
        assert!(reg.next_deadline().unwrap() <= s(62.7));
        // Admitted, then another leader: no longer admitted, re-register at once.
        reg.handle_registered(s(62.0), s(1.0));
        reg.handle_new_master(s(63.0), true);
        assert!(!reg.is_registered());
        assert!(!reg.poll_heartbeat(s(64.0)));
        // Without an id, it registers.
        let mut fresh = Registration::new(false, Duration::ZERO);
        fresh.handle_master_unknown(false);
        fresh.handle_new_master(s(1.0), false);
        assert_eq!(
            fresh.poll_attempt(s(1.0), &mut r),
            Some(RegistrationAction::Register)
        );
    }

    #[test]
    fn updates_are_sent_one_at_a_time_retried_and_removed_after_terminal_ack() {
        let mut r = rng();
        let mut core = core_with_task("t", None);
        let id = TaskId::new("t");
        let starting = status("t", TaskState::Starting, &mut r);
        let running = status("t", TaskState::Running, &mut r);
        let finished = status("t", TaskState::Finished, &mut r);
        assert!(core.record_update(Duration::ZERO, starting.clone()));
        assert!(core.record_update(Duration::ZERO, running.clone()));
        assert_eq!(core.task(&id).unwrap().state, TaskState::Running);

        let sent = core.poll_updates(Duration::ZERO);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].status, starting);
        assert!(!sent[0].retry);
        assert!(core.poll_updates(s(0.9)).is_empty());
        assert_eq!(core.next_deadline(), Some(s(1.0)));
        // Retries at 1, 3, 7 s: always the head, never the next one.
        for at in [1.0, 3.0, 7.0] {
            let again = core.poll_updates(s(at));
            assert_eq!(again.len(), 1);
            assert_eq!(again[0].status, starting);
            assert!(again[0].retry);
        }
        // A wrong uuid is ignored.
        assert_eq!(
            core.acknowledge(s(7.5), &id, running.uuid.unwrap()),
            AckOutcome::Ignored
        );
        assert_eq!(
            core.acknowledge(s(7.5), &id, starting.uuid.unwrap()),
            AckOutcome::Acknowledged
        );
        // The next is due at once, with a fresh backoff.
        let next = core.poll_updates(s(7.5));
        assert_eq!(next[0].status, running);
        assert!(!next[0].retry);
        assert_eq!(core.next_deadline(), Some(s(8.5)));
        // A duplicate ack of the old update changes nothing.
        assert_eq!(
            core.acknowledge(s(7.6), &id, starting.uuid.unwrap()),
            AckOutcome::Ignored
        );
        assert!(core.record_update(s(8.0), finished.clone()));
        assert_eq!(
            core.acknowledge(s(8.0), &id, running.uuid.unwrap()),
            AckOutcome::Acknowledged
        );
        assert_eq!(core.poll_updates(s(8.0))[0].status, finished);
        match core.acknowledge(s(8.1), &id, finished.uuid.unwrap()) {
            AckOutcome::Removed {
                task,
                framework_removed,
            } => {
                assert_eq!(task.state, TaskState::Finished);
                assert!(framework_removed);
            }
            other => panic!("expected removal: {other:?}"),
        }
        assert!(core.tasks().is_empty());
        assert!(core.frameworks().is_empty());
        // The removed task's retry time may linger as an early wake-up, which sends nothing
        // and leaves only the heartbeat.
        let early = core.next_deadline().expect("the heartbeat at least");
        assert!(early <= s(1000.0));
        assert!(core.poll_updates(early).is_empty());
        assert_eq!(
            core.next_deadline(),
            Some(s(1000.0)),
            "only the heartbeat is left"
        );
    }

    #[test]
    fn updates_wait_for_registration_and_are_resent_on_reregistration() {
        let mut r = rng();
        let mut core = core_with_task("t", None);
        core.registration.handle_master_lost(Duration::ZERO, true);
        core.record_update(Duration::ZERO, status("t", TaskState::Starting, &mut r));
        assert!(
            core.poll_updates(s(5.0)).is_empty(),
            "not sent while disconnected"
        );
        core.registration.handle_registered(s(6.0), s(1000.0));
        core.resend_all_updates(s(6.0));
        assert_eq!(core.poll_updates(s(6.0)).len(), 1);
        assert!(core.poll_updates(s(6.5)).is_empty());
    }

    #[test]
    fn update_queue_is_bounded_but_keeps_terminal_updates() {
        let mut r = rng();
        let mut core = core_with_task("t", None);
        for _ in 0..limits::TASK_UPDATES_PENDING_MAX {
            assert!(core.record_update(Duration::ZERO, status("t", TaskState::Running, &mut r)));
        }
        assert!(!core.record_update(Duration::ZERO, status("t", TaskState::Running, &mut r)));
        assert!(core.record_update(Duration::ZERO, status("t", TaskState::Failed, &mut r)));
        assert_eq!(
            core.task(&TaskId::new("t")).unwrap().state,
            TaskState::Failed
        );
    }

    fn check(grace: f64, failures: u32) -> HealthCheck {
        HealthCheck {
            kind: HealthCheckKind::Tcp { port: 1 },
            delay_secs: 1.0,
            interval_secs: 2.0,
            timeout_secs: 1.0,
            consecutive_failures: failures,
            grace_period_secs: grace,
        }
    }

    #[test]
    fn health_checks_count_failures_outside_the_grace_period() {
        let mut h = HealthState::new(check(5.0, 2), Duration::ZERO);
        assert_eq!(h.poll_probe(s(0.5)), None, "delay before the first probe");
        let p1 = h.poll_probe(s(1.0)).unwrap();
        assert_eq!(h.poll_probe(s(1.5)), None, "one probe in flight");
        // A failure within the grace period is not counted.
        assert_eq!(h.handle_result(s(1.2), p1, false), HealthOutcome::Unchanged);
        assert_eq!(h.consecutive_failures(), 0);
        assert_eq!(h.poll_probe(s(3.0)), None);
        let p2 = h.poll_probe(s(3.2)).unwrap();
        assert_eq!(
            h.handle_result(s(3.3), p2, true),
            HealthOutcome::Changed(true)
        );
        let p3 = h.poll_probe(s(5.3)).unwrap();
        // The success ended the grace period: this failure counts.
        assert_eq!(
            h.handle_result(s(5.4), p3, false),
            HealthOutcome::Changed(false)
        );
        // A stale result is ignored.
        assert_eq!(h.handle_result(s(5.5), p3, false), HealthOutcome::Unchanged);
        let p4 = h.poll_probe(s(7.4)).unwrap();
        assert_eq!(
            h.handle_result(s(7.5), p4, false),
            HealthOutcome::Kill { changed: false }
        );
    }

    #[test]
    fn zero_consecutive_failures_never_kills() {
        let mut h = HealthState::new(check(0.0, 0), Duration::ZERO);
        let mut now = s(1.0);
        for i in 0..10 {
            let p = h.poll_probe(now).unwrap();
            let expected = if i == 0 {
                HealthOutcome::Changed(false)
            } else {
                HealthOutcome::Unchanged
            };
            assert_eq!(h.handle_result(now, p, false), expected);
            now += s(2.0);
        }
    }

    #[test]
    fn health_probes_stop_once_a_kill_is_asked() {
        let mut core = core_with_task("t", Some(check(0.0, 1)));
        let id = TaskId::new("t");
        core.start_health_check(Duration::ZERO, &id);
        assert_eq!(core.next_deadline(), Some(s(1.0)));
        let due = core.poll_health(s(1.0));
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].timeout, s(1.0));
        core.task_mut(&id).unwrap().kill = Some(KillCause::Unhealthy);
        assert_eq!(
            core.handle_probe_result(s(1.1), &id, due[0].probe_id, false),
            HealthOutcome::Unchanged
        );
        assert!(core.poll_health(s(10.0)).is_empty());
    }

    #[test]
    fn terminations_map_to_mesos_states() {
        let t = |exit: Option<i32>, signal: Option<i32>, oom: bool| Termination {
            exit_code: exit,
            signal,
            oom_killed: oom,
            message: String::new(),
        };
        assert_eq!(
            termination_status(None, &t(Some(0), None, false)).0,
            TaskState::Finished
        );
        let (state, reason, message) = termination_status(None, &t(Some(3), None, false));
        assert_eq!(
            (state, reason),
            (TaskState::Failed, Some(Reason::CommandExecutorFailed))
        );
        assert!(message.contains("status 3"), "{message}");
        // OOM wins over the exit code.
        assert_eq!(
            termination_status(None, &t(Some(0), None, true)).1,
            Some(Reason::ContainerLimitationMemory)
        );
        assert_eq!(
            termination_status(Some(KillCause::Requested), &t(None, Some(15), false)).0,
            TaskState::Killed
        );
        assert_eq!(
            termination_status(Some(KillCause::Unhealthy), &t(None, Some(9), false)),
            (
                TaskState::Failed,
                Some(Reason::TaskUnhealthy),
                "Task killed because its health check failed: terminated by signal 9".into()
            )
        );
        assert_eq!(
            termination_status(
                Some(KillCause::FrameworkShutdown),
                &t(None, Some(15), false)
            )
            .1,
            Some(Reason::FrameworkRemoved)
        );
    }

    #[test]
    fn kills_before_launch_are_remembered_once_and_bounded() {
        let mut core = SlaveCore::new(None, Duration::ZERO);
        let fw = FrameworkId::new("fw");
        core.remember_kill_before_launch(fw.clone(), TaskId::new("a"));
        assert!(core.take_kill_before_launch(&fw, &TaskId::new("a")));
        assert!(!core.take_kill_before_launch(&fw, &TaskId::new("a")));
        for i in 0..=limits::KILLS_BEFORE_LAUNCH_MAX {
            core.remember_kill_before_launch(fw.clone(), TaskId::new(format!("t{i}")));
        }
        assert!(
            !core.take_kill_before_launch(&fw, &TaskId::new("t0")),
            "oldest forgotten"
        );
        assert!(core.take_kill_before_launch(&fw, &TaskId::new("t1")));
    }

    proptest::proptest! {
        /// Whatever the order of acks (right, wrong, duplicated) and the times of polls, the
        /// updates of a task go out in order, one at a time, and each is acknowledged once.
        #[test]
        fn updates_go_out_in_order(ops in proptest::collection::vec((0u8..4, 0u64..3000), 1..200)) {
            let mut r = rng();
            let mut core = core_with_task("t", None);
            let id = TaskId::new("t");
            let states = [TaskState::Starting, TaskState::Running, TaskState::Running, TaskState::Finished];
            let updates: Vec<TaskStatus> = states.iter().map(|st| status("t", *st, &mut r)).collect();
            for u in &updates {
                core.record_update(Duration::ZERO, u.clone());
            }
            let mut now = Duration::ZERO;
            let mut acked = 0usize;
            let mut last_sent: Option<usize> = None;
            for (op, advance_ms) in ops {
                now += Duration::from_millis(advance_ms);
                for out in core.poll_updates(now) {
                    let index = updates.iter().position(|u| *u == out.status).unwrap();
                    proptest::prop_assert_eq!(index, acked, "only the oldest unacked is sent");
                    last_sent = Some(index);
                }
                if acked == updates.len() { break; }
                match op {
                    0 if last_sent == Some(acked) => {
                        let outcome = core.acknowledge(now, &id, updates[acked].uuid.unwrap());
                        proptest::prop_assert!(outcome != AckOutcome::Ignored);
                        acked += 1;
                    }
                    1 if acked > 0 => {
                        let outcome = core.acknowledge(now, &id, updates[acked - 1].uuid.unwrap());
                        proptest::prop_assert_eq!(outcome, AckOutcome::Ignored);
                    }
                    _ => {}
                }
            }
            proptest::prop_assert_eq!(core.tasks().is_empty(), acked == updates.len());
        }

        /// The due-time bounds are never late: whatever happens to the tasks (updates, acks,
        /// polls, health results, resends), `next_deadline` is at or before the exact next
        /// deadline computed by walking every task, and a poll at the bound makes it exact.
        #[test]
        fn due_time_bounds_are_never_late(ops in proptest::collection::vec((0u8..7, 0u8..3, 0u64..4000), 1..150)) {
            let mut r = rng();
            let mut core = core_with_task("t0", Some(check(3.0, 2)));
            for id in ["t1", "t2"] {
                core.add_task(FrameworkId::new("fw"), task_info(id, Some(check(0.0, 1))), Path::new("/sandbox").into())
                    .unwrap();
            }
            let exact = |core: &SlaveCore| {
                let mut next = core.registration.next_deadline();
                for task in core.tasks.values() {
                    if core.registration.is_registered() && !task.updates.pending.is_empty() {
                        lower(&mut next, task.updates.send_at);
                    }
                    if task.kill.is_none() {
                        lower(&mut next, task.health.as_ref().and_then(HealthState::next_deadline));
                    }
                }
                next
            };
            let mut now = Duration::ZERO;
            let mut in_flight: Vec<(TaskId, u64)> = Vec::new();
            for (op, which, advance_ms) in ops {
                let id = TaskId::new(format!("t{which}"));
                match op {
                    0 => {
                        let live = core.task(&id).is_some_and(|t| !t.state.is_terminal());
                        if live {
                            let state = if advance_ms % 5 == 0 { TaskState::Finished } else { TaskState::Running };
                            core.record_update(now, status(id.as_str(), state, &mut r));
                        }
                    }
                    1 => {
                        let head = core.task(&id).and_then(|t| t.pending_updates().next().and_then(|u| u.uuid));
                        if let Some(uuid) = head {
                            core.acknowledge(now, &id, uuid);
                        }
                    }
                    2 => core.start_health_check(now, &id),
                    3 => {
                        if let Some(i) = in_flight.iter().position(|(t, _)| *t == id) {
                            let (task, probe) = in_flight.remove(i);
                            core.handle_probe_result(now, &task, probe, advance_ms % 2 == 0);
                        }
                    }
                    4 => core.resend_all_updates(now),
                    _ => {
                        now += Duration::from_millis(advance_ms);
                        core.poll_updates(now);
                        for due in core.poll_health(now) {
                            in_flight.push((due.task_id, due.probe_id));
                        }
                    }
                }
                proptest::prop_assert_eq!(
                    core.live_task_count(),
                    core.tasks.values().filter(|t| t.is_live()).count(),
                    "the live count follows every change"
                );
                proptest::prop_assert_eq!(
                    core.streams_pending,
                    core.tasks.values().filter(|t| !t.updates.pending.is_empty()).count(),
                    "the count of pending queues follows every change"
                );
                let mut indexed: Vec<(Duration, TaskId)> = core
                    .tasks
                    .iter()
                    .filter_map(|(id, t)| t.updates.retry_at.map(|at| (at, id.clone())))
                    .collect();
                indexed.sort();
                proptest::prop_assert_eq!(
                    core.retry_index.iter().cloned().collect::<Vec<_>>(),
                    indexed,
                    "the retry index lists each task whose head was sent, at its retry time"
                );
                for (id, t) in &core.tasks {
                    proptest::prop_assert!(
                        t.updates.pending.is_empty()
                            || t.updates.retry_at == t.updates.send_at
                            || core.fresh_heads.contains(id),
                        "a pending head is either new or indexed for its retry: {}",
                        id
                    );
                }
                let (bound, truth) = (core.next_deadline(), exact(&core));
                proptest::prop_assert!(
                    match (bound, truth) {
                        (Some(b), Some(t)) => b <= t,
                        (_, None) => true,
                        (None, Some(_)) => false,
                    },
                    "bound {:?} is later than the next deadline {:?}", bound, truth
                );
                // Waking up at the bound and polling makes it exact within one wake-up per
                // kind of bound (updates, probes): spurious wake-ups are few.
                for _ in 0..2 {
                    let Some(b) = core.next_deadline() else { break };
                    if Some(b) == exact(&core) {
                        break;
                    }
                    now = now.max(b);
                    core.poll_updates(now);
                    for due in core.poll_health(now) {
                        in_flight.push((due.task_id, due.probe_id));
                    }
                }
                proptest::prop_assert_eq!(core.next_deadline(), exact(&core));
            }
        }
    }
}
