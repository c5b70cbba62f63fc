//! Observation points: where the harness watches the real code without changing it.
//!
//! The simulated cluster plugs three thin wrappers into the real processes, and each reports
//! to one shared [`Ledger`]:
//!
//! - [`ObservedCheckpoint`] wraps a slave's in-memory checkpoint (its "disk"). The slave writes
//!   every status update to it before sending it, and removes it after the acknowledgement:
//!   the ledger learns, per task, the order in which the slave created updates and which ones
//!   were acknowledged. It also learns each task's resources before the launch.
//! - [`ObservedContainerizer`] wraps a slave's [`SimContainerizer`]: the ledger learns what
//!   each simulated machine really runs, and checks at each launch that the machine is not
//!   over-committed, that the task takes only what the resources its slave advertises leave
//!   free beside what runs (a slave may run more than it advertises, restarted with less
//!   than its tasks use, but never because of a launch), and that the task id runs nowhere
//!   else and never ran before.
//! - [`Observed`] wraps a framework's [`Scheduler`]: the ledger learns the statuses a framework
//!   receives, in order, and checks them at once (order, no gap, never terminal then live).
//!
//! Checks made here run inside the event that triggers them, so they hold after every event.
//! The [`crate::invariants`] module adds the checks that need a global view.
//!
//! The wrappers can also *inject* a bug ([`InjectedBug`]), only when a test asks for it: the
//! real code carries none.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use plateau_master::coord::FencingToken;
use plateau_master::ids::{FrameworkId, TaskId};
use plateau_master::messages::{Reason, TaskState, TaskStatus};
use plateau_master::resources::Resources;
use plateau_runtime::rng::{LookupMap, LookupSet};
use plateau_runtime::{Handlers, Upid};
use plateau_sdk::coord::{ClientEvent, WriteId};
use plateau_sdk::{Driver, Offer, OfferId, Scheduler, SchedulerDriver, SlaveId};
use plateau_slave::checkpoint::{
    Checkpoint, CheckpointStore, FrameworkRecord, MemoryCheckpoint, SlaveRecord, TaskRecordRef,
};
use plateau_slave::containerizer::{
    Containerizer, ContainerizerError, LaunchInfo, RecoverInfo, RecoveredTask, SimContainerizer,
    SimMachine, TaskSpec, TerminationCallback, Usage,
};
use plateau_slave::SlaveError;
use serde::Serialize;

use crate::limits::VIOLATIONS_KEPT_MAX;

/// A bug the harness can inject, to prove that the invariants catch it. Never on by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum InjectedBug {
    /// The status-update path to frameworks holds back a slave's update and delivers it after
    /// the next update of the same task (once per run).
    ReorderStatusUpdates,
    /// One slave advertises twice the resources its machine has, so it gets over-committed.
    SlaveOvercommit,
    /// Marathon is given its apps without their constraints (the harness still checks them);
    /// app 0 is made UNIQUE hostname with at least 2 instances so that it shows.
    MarathonIgnoresConstraints,
    /// Chronos' store forgets that a run was launched (its launched and running records are
    /// dropped), so the intent on disk stays "pending": a restarted Chronos launches the run
    /// again.
    ChronosForgetsIntent,
    /// The masters' disks do not survive a crash (a data directory on a tmpfs): a master
    /// restarts empty and, as on its first start, bootstraps its group again. A group whose
    /// majority restarts so forgets what it committed.
    MasterDiskNotDurable,
    /// The instances of Marathon are started without leader election (how a second Marathon
    /// ran before high availability): each registers and acts on its own.
    MarathonWithoutElection,
}

/// A broken invariant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Violation {
    /// Simulated time it was found at, in seconds.
    pub at_secs: f64,
    /// Which invariant.
    pub invariant: String,
    /// What exactly.
    pub detail: String,
}

/// What a framework received about one task, and what its slave created.
#[derive(Debug, Default)]
struct UpdateTrail {
    /// Uuids of the slave-created updates, in creation order.
    created: Vec<[u8; 16]>,
    /// Uuids the slave still has unacknowledged (as last checkpointed).
    pending: Vec<[u8; 16]>,
    /// How many of `created` the framework received (always a prefix).
    received: usize,
    /// The framework received a terminal state for the task (with its message).
    terminal_seen: Option<(TaskState, String)>,
}

/// One simulated machine as the ledger sees it.
#[derive(Debug, Default)]
struct MachineBooks {
    capacity: Resources,
    /// What its slave advertises to the master (it may be less than what runs).
    advertised: Resources,
    /// Resources of each task, from the slave's checkpoint (written before the launch).
    booked: LookupMap<String, Resources>,
    /// What runs on the machine.
    running: BTreeMap<String, Resources>,
    used: Resources,
}

#[derive(Debug, Default)]
struct LedgerState {
    machines: Vec<MachineBooks>,
    /// Task id -> machine index, for every task running somewhere.
    running_on: LookupMap<String, usize>,
    /// Task ids that ran and ended.
    ended: LookupSet<String>,
    trails: LookupMap<TaskId, UpdateTrail>,
    violations: Vec<(String, String)>,
    warnings: Vec<(String, String)>,
    tasks_launched: u64,
    statuses_received: u64,
    /// The id each machine's slave was last told it registered with (and wrote down), by
    /// machine.
    acked_slaves: Vec<Option<SlaveId>>,
    /// Machines whose slave wrote down a new id since [`Ledger::take_new_acks`], when
    /// registrations are tracked.
    new_acks: Vec<usize>,
    /// True when new registrations are queued for the group checks.
    track_registrations: bool,
}

/// The app of a task id `<app>.<n>` (an id without a dot is its own app).
pub fn app_of(task_id: &str) -> &str {
    task_id.rsplit_once('.').map_or(task_id, |(app, _)| app)
}

/// The harness's shared record of what happened (see the [module docs](self)). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    state: Arc<Mutex<LedgerState>>,
    found: Arc<AtomicUsize>,
    /// Length of `LedgerState::new_acks` (read at every event of a group run, without the
    /// lock).
    new_acks: Arc<AtomicUsize>,
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, LedgerState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers machine `index` with its real capacity and the resources its slave
    /// advertises (indexes are given in order).
    pub fn add_machine(&self, index: usize, capacity: Resources, advertised: Resources) {
        let mut s = self.lock();
        assert_eq!(s.machines.len(), index, "machines are added in order");
        s.machines.push(MachineBooks {
            capacity,
            advertised,
            ..MachineBooks::default()
        });
        s.acked_slaves.push(None);
    }

    /// From now on, queue every registration a slave writes down for
    /// [`Ledger::take_new_acks`] (the group checks).
    pub fn track_registrations(&self) {
        self.lock().track_registrations = true;
    }

    /// Registrations written down since the last call (cheap: no lock).
    pub fn new_ack_count(&self) -> usize {
        self.new_acks.load(Ordering::Relaxed)
    }

    /// The registrations slaves wrote down since the last call: (machine, slave id).
    pub fn take_new_acks(&self) -> Vec<(usize, SlaveId)> {
        let mut s = self.lock();
        self.new_acks.store(0, Ordering::Relaxed);
        let machines = std::mem::take(&mut s.new_acks);
        machines
            .into_iter()
            .filter_map(|m| s.acked_slaves[m].clone().map(|id| (m, id)))
            .collect()
    }

    /// The id each slave was last told it registered with: (machine, slave id).
    pub fn acked_slaves(&self) -> Vec<(usize, SlaveId)> {
        self.lock()
            .acked_slaves
            .iter()
            .enumerate()
            .filter_map(|(m, id)| id.clone().map(|id| (m, id)))
            .collect()
    }

    /// Machine `machine`'s slave wrote down that the master registered it as `id` (it does so
    /// when told, before acting on it).
    fn on_put_slave(&self, machine: usize, id: &SlaveId) {
        let mut s = self.lock();
        if s.acked_slaves[machine].as_ref() == Some(id) {
            return;
        }
        s.acked_slaves[machine] = Some(id.clone());
        if s.track_registrations {
            s.new_acks.push(machine);
            self.new_acks.store(s.new_acks.len(), Ordering::Relaxed);
        }
    }

    /// Machine `index`'s slave advertises `advertised` from now on (it restarts with it).
    pub fn set_advertised(&self, index: usize, advertised: Resources) {
        self.lock().machines[index].advertised = advertised;
    }

    /// Violations found so far (cheap: no lock).
    pub fn violation_count(&self) -> usize {
        self.found.load(Ordering::Relaxed)
    }

    /// Takes the violations recorded since the last call.
    pub fn take_violations(&self) -> Vec<(String, String)> {
        std::mem::take(&mut self.lock().violations)
    }

    /// Takes the warnings recorded since the last call: suspicious events that do not break
    /// an invariant by themselves (see [`Ledger`] docs on uuid reuse).
    pub fn take_warnings(&self) -> Vec<(String, String)> {
        std::mem::take(&mut self.lock().warnings)
    }

    /// Tasks launched on machines so far.
    pub fn tasks_launched(&self) -> u64 {
        self.lock().tasks_launched
    }

    /// Statuses frameworks received so far.
    pub fn statuses_received(&self) -> u64 {
        self.lock().statuses_received
    }

    /// What machine `index` runs: task id -> resources.
    pub fn running_on(&self, index: usize) -> BTreeMap<String, Resources> {
        self.lock().machines[index].running.clone()
    }

    /// True when machine `index` runs at least one task.
    pub fn runs_tasks(&self, index: usize) -> bool {
        !self.lock().machines[index].running.is_empty()
    }

    /// Every running task id with its machine index.
    pub fn running(&self) -> BTreeMap<String, usize> {
        self.lock()
            .running_on
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    /// Running tasks per app (a task id is `<app>.<n>`; an id without a dot is its own app).
    /// Cheaper than [`Ledger::running`]: no copy of the ids.
    pub fn running_per_app(&self) -> BTreeMap<String, u32> {
        let s = self.lock();
        let mut count: BTreeMap<&str, u32> = BTreeMap::new();
        for id in s.running_on.keys() {
            *count.entry(app_of(id)).or_default() += 1;
        }
        count
            .into_iter()
            .map(|(app, n)| (app.to_string(), n))
            .collect()
    }

    /// Number of tasks running on all machines.
    pub fn running_count(&self) -> usize {
        self.lock().running_on.len()
    }

    /// Checks every machine's books against its capacity (the incremental check made at each
    /// launch, redone from scratch).
    pub fn check_machines(&self) -> Result<(), String> {
        let s = self.lock();
        for (i, m) in s.machines.iter().enumerate() {
            // Every task's port ranges, sorted: two tasks share a port exactly when a range
            // starts before the previous one (in this order) ends.
            let mut ranges: Vec<(u16, u16, &str)> = Vec::new();
            for (id, r) in &m.running {
                ranges.extend(r.ports().iter().map(|(a, b)| (a, b, id.as_str())));
                if s.running_on.get(id) != Some(&i) {
                    return Err(format!("machine {i}: task {id} is not indexed here"));
                }
            }
            ranges.sort_unstable();
            for pair in ranges.windows(2) {
                let ((_, last, a), (first, _, b)) = (pair[0], pair[1]);
                if first <= last {
                    let (a, b) = if a <= b { (a, b) } else { (b, a) };
                    return Err(format!("machine {i}: tasks {a} and {b} share a port"));
                }
            }
            let sum = Resources::sum(m.running.values());
            if !m.capacity.contains(&sum) {
                return Err(format!(
                    "machine {i} runs {sum}, more than its {}",
                    m.capacity
                ));
            }
        }
        Ok(())
    }

    fn violation(&self, s: &mut LedgerState, invariant: &str, detail: String) {
        self.found.fetch_add(1, Ordering::Relaxed);
        if s.violations.len() < VIOLATIONS_KEPT_MAX {
            s.violations.push((invariant.to_string(), detail));
        }
    }

    /// Records a violation found elsewhere.
    pub fn report(&self, invariant: &str, detail: String) {
        let mut s = self.lock();
        self.violation(&mut s, invariant, detail);
    }

    // ---- slave side: checkpoint ----

    fn on_put_task(&self, machine: usize, record: &TaskRecordRef<'_>) {
        let mut guard = self.lock();
        let s = &mut *guard;
        let id = &record.info.task_id;
        // A task's resources never change: only its first write books them.
        let booked = &mut s.machines[machine].booked;
        if !booked.contains_key(id.as_str()) {
            booked.insert(id.as_str().to_string(), record.info.resources.clone());
        }
        let trail = s.trails.entry(id.clone()).or_default();
        let new_pending: Vec<[u8; 16]> = record
            .pending_updates
            .iter()
            .filter_map(|u| u.uuid)
            .collect();
        let mut problems = Vec::new();
        let mut warnings = Vec::new();
        for uuid in &trail.pending {
            if !new_pending.contains(uuid) {
                problems.extend(Self::acknowledged(trail, id, uuid));
            }
        }
        for uuid in &new_pending {
            if trail.pending.contains(uuid) {
                continue;
            }
            if trail.created.contains(uuid) {
                // A reused uuid makes a stale acknowledgement of the earlier update acknowledge
                // this one. Only a lost update breaks the protocol (checked at the
                // acknowledgement); the reuse itself is reported as a warning.
                warnings.push((
                    "status update uuids are unique".to_string(),
                    format!(
                        "task {id}: the slave created a new update with the uuid of an earlier one ({})",
                        hex(uuid)
                    ),
                ));
                continue;
            }
            trail.created.push(*uuid);
        }
        trail.pending = new_pending;
        for (invariant, detail) in problems {
            self.violation(s, invariant, detail);
        }
        for w in warnings {
            if s.warnings.len() < VIOLATIONS_KEPT_MAX {
                s.warnings.push(w);
            }
        }
    }

    fn acknowledged(
        trail: &UpdateTrail,
        id: &TaskId,
        uuid: &[u8; 16],
    ) -> Option<(&'static str, String)> {
        let index = trail.created.iter().position(|u| u == uuid)?;
        (index >= trail.received).then(|| {
            (
                "no status update is lost once acknowledged",
                format!(
                    "task {id}: update #{index} ({}) was acknowledged but its framework never received it",
                    hex(uuid)
                ),
            )
        })
    }

    fn on_remove_task(&self, machine: usize, id: &TaskId) {
        let mut guard = self.lock();
        let s = &mut *guard;
        s.machines[machine].booked.remove(id.as_str());
        let mut problems = Vec::new();
        if let Some(trail) = s.trails.get_mut(id) {
            for uuid in std::mem::take(&mut trail.pending) {
                problems.extend(Self::acknowledged(trail, id, &uuid));
            }
        }
        for (invariant, detail) in problems {
            self.violation(s, invariant, detail);
        }
    }

    // ---- slave side: machine ----

    fn on_launch(&self, machine: usize, task_id: &str) {
        let mut guard = self.lock();
        let s = &mut *guard;
        s.tasks_launched += 1;
        let resources = s.machines[machine]
            .booked
            .get(task_id)
            .cloned()
            .unwrap_or_default();
        let mut problems = Vec::new();
        if let Some(other) = s.running_on.get(task_id) {
            problems.push((
                "no task id runs twice",
                format!(
                    "task {task_id} launched on machine {machine} while it runs on machine {other}"
                ),
            ));
        } else if s.ended.contains(task_id) {
            problems.push((
                "no task id runs twice",
                format!("task {task_id} launched on machine {machine} after it ended"),
            ));
        }
        let m = &mut s.machines[machine];
        let overlap = !m.used.ports().is_disjoint(resources.ports());
        let used = m.used.clone() + &resources;
        if overlap || !m.capacity.contains(&used) {
            problems.push((
                "no slave is allocated more than its resources",
                format!(
                    "machine {machine} launched {task_id} ({resources}) on top of {} (capacity {})",
                    m.used, m.capacity
                ),
            ));
        }
        if !unused_part(&m.advertised, &m.used).contains(&resources) {
            problems.push((
                "a launch takes only what its slave's resources leave free",
                format!(
                    "machine {machine} launched {task_id} ({resources}) on top of {} (its slave advertises {})",
                    m.used, m.advertised
                ),
            ));
        }
        m.used = used;
        m.running.insert(task_id.to_string(), resources);
        s.running_on.insert(task_id.to_string(), machine);
        for (invariant, detail) in problems {
            self.violation(s, invariant, detail);
        }
    }

    fn on_end(&self, machine: usize, task_id: &str) {
        let mut s = self.lock();
        let m = &mut s.machines[machine];
        if let Some(r) = m.running.remove(task_id) {
            m.used = m.used.checked_sub(&r).unwrap_or_default();
            s.running_on.remove(task_id);
            s.ended.insert(task_id.to_string());
        }
    }

    /// After a recovery: what the machine runs is the truth.
    fn sync_machine(&self, machine: usize, ids: &[String]) {
        let gone: Vec<String> = {
            let s = self.lock();
            s.machines[machine]
                .running
                .keys()
                .filter(|id| !ids.contains(id))
                .cloned()
                .collect()
        };
        for id in gone {
            self.on_end(machine, &id);
        }
    }

    // ---- framework side ----

    /// A framework received `status`; checks order, gaps and terminal-then-live.
    fn on_status(&self, status: &TaskStatus) {
        let mut guard = self.lock();
        let s = &mut *guard;
        s.statuses_received += 1;
        let id = &status.task_id;
        let trail = s.trails.entry(id.clone()).or_default();
        let mut problems = Vec::new();
        if let Some((terminal, why)) = &trail.terminal_seen {
            if is_live(status.state) {
                problems.push((
                    "a task's status never goes from terminal back to live",
                    format!(
                        "task {id}: the framework received {} after {} ({why})",
                        status.state.as_str(),
                        terminal.as_str()
                    ),
                ));
            }
        } else if status.state.is_terminal() && status.reason != Some(Reason::Reconciliation) {
            // A reconciliation answer is a snapshot of the latest state the master knows (a
            // re-registered slave reports its tasks' current states), and may overtake the
            // slave's ordered stream of updates still being retried: only the stream's own
            // terminal states (and the master's) end a task as the framework sees it.
            let why = format!(
                "{}, {}: {}",
                status.source.as_str(),
                status.reason.map_or("no reason", |r| r.as_str()),
                status.message.as_deref().unwrap_or("")
            );
            trail.terminal_seen = Some((status.state, why));
        }
        if let Some(uuid) = status.uuid {
            match trail.created.iter().position(|u| *u == uuid) {
                None => problems.push((
                    "status updates reach frameworks in order",
                    format!(
                        "task {id}: the framework received an update ({}) its slave never created",
                        hex(&uuid)
                    ),
                )),
                Some(index) if index > trail.received => problems.push((
                    "status updates reach frameworks in order",
                    format!(
                        "task {id}: the framework received update #{index} ({}) before update #{}",
                        status.state.as_str(),
                        trail.received
                    ),
                )),
                Some(index) if index == trail.received => trail.received += 1,
                Some(_) => {} // a duplicate of one already received
            }
        }
        for (invariant, detail) in problems {
            self.violation(s, invariant, detail);
        }
    }
}

/// Per scalar `total - used` (zero where `used` is more), and the ports of `total` not in
/// `used`: what `used` leaves free of `total`.
fn unused_part(total: &Resources, used: &Resources) -> Resources {
    Resources::from_milli(
        total.cpus_milli().saturating_sub(used.cpus_milli()),
        total.mem_milli().saturating_sub(used.mem_milli()),
        total.disk_milli().saturating_sub(used.disk_milli()),
    )
    .with_ports(total.ports().difference(used.ports()))
}

fn is_live(state: TaskState) -> bool {
    matches!(
        state,
        TaskState::Staging
            | TaskState::Starting
            | TaskState::Running
            | TaskState::Killing
            | TaskState::Unreachable
    )
}

fn hex(uuid: &[u8; 16]) -> String {
    uuid.iter().map(|b| format!("{b:02x}")).collect()
}

// ---- slave wrappers -----------------------------------------------------------------------

/// A slave's checkpoint (its simulated disk) that reports to the [`Ledger`].
///
/// The disk model: every write is synced when the call returns (as a redb commit is), so a
/// crash loses nothing the slave wrote; the slave's own protocol writes before it acts.
pub struct ObservedCheckpoint {
    inner: MemoryCheckpoint,
    ledger: Ledger,
    machine: usize,
}

impl ObservedCheckpoint {
    /// `inner` (shared with the harness, so a restarted slave reads it back) observed as
    /// machine `machine`.
    pub fn new(inner: MemoryCheckpoint, ledger: Ledger, machine: usize) -> Self {
        ObservedCheckpoint {
            inner,
            ledger,
            machine,
        }
    }
}

impl CheckpointStore for ObservedCheckpoint {
    fn load(&self) -> Result<Checkpoint, SlaveError> {
        self.inner.load()
    }
    fn put_slave(&mut self, record: &SlaveRecord) -> Result<(), SlaveError> {
        self.inner.put_slave(record)?;
        self.ledger.on_put_slave(self.machine, &record.slave_id);
        Ok(())
    }
    fn put_framework(&mut self, record: &FrameworkRecord) -> Result<(), SlaveError> {
        self.inner.put_framework(record)
    }
    fn remove_framework(&mut self, id: &FrameworkId) -> Result<(), SlaveError> {
        self.inner.remove_framework(id)
    }
    fn put_task(&mut self, record: &TaskRecordRef<'_>) -> Result<(), SlaveError> {
        self.inner.put_task(record)?;
        self.ledger.on_put_task(self.machine, record);
        Ok(())
    }
    fn remove_task(&mut self, id: &TaskId) -> Result<(), SlaveError> {
        self.inner.remove_task(id)?;
        self.ledger.on_remove_task(self.machine, id);
        Ok(())
    }
}

/// A slave's simulated containerizer that reports to the [`Ledger`].
pub struct ObservedContainerizer {
    inner: SimContainerizer,
    ledger: Ledger,
    machine_index: usize,
}

impl ObservedContainerizer {
    /// A containerizer of `machine` (index `machine_index` in the ledger); terminations go to
    /// the ledger, then to `on_termination` (the slave's mailbox).
    pub fn new(
        machine: SimMachine,
        machine_index: usize,
        ledger: Ledger,
        on_termination: TerminationCallback,
    ) -> Self {
        let observer = ledger.clone();
        let callback: TerminationCallback = Arc::new(move |task_id, termination| {
            observer.on_end(machine_index, &task_id);
            on_termination(task_id, termination)
        });
        ObservedContainerizer {
            inner: SimContainerizer::new(machine, callback),
            ledger,
            machine_index,
        }
    }
}

impl Containerizer for ObservedContainerizer {
    fn launch(&mut self, spec: TaskSpec) -> Result<LaunchInfo, ContainerizerError> {
        let task_id = spec.task_id.clone();
        let info = self.inner.launch(spec)?;
        self.ledger.on_launch(self.machine_index, &task_id);
        Ok(info)
    }
    fn kill(&mut self, task_id: &str, grace: Duration) -> Result<(), ContainerizerError> {
        self.inner.kill(task_id, grace)
    }
    fn usage(&self, task_id: &str) -> Result<Usage, ContainerizerError> {
        self.inner.usage(task_id)
    }
    fn recover(&mut self, known: Vec<RecoverInfo>) -> Vec<RecoveredTask> {
        let recovered = self.inner.recover(known);
        let ids = self.inner.machine().task_ids();
        self.ledger.sync_machine(self.machine_index, &ids);
        recovered
    }
    fn forget(&mut self, task_id: &str) {
        self.inner.forget(task_id)
    }
    fn destroy_all(&mut self) {
        self.inner.destroy_all()
    }
    fn poll(&mut self, now: Duration) -> Option<Duration> {
        self.inner.poll(now)
    }
}

// ---- framework wrapper --------------------------------------------------------------------

/// A scheduler the harness can host inside [`Observed`]: it installs its own handlers (timers)
/// on the observed driver. Keeper, Marathon and Chronos implement it.
pub trait SimScheduler: Scheduler + Sized {
    /// Install the scheduler's own handlers; reach the scheduler with
    /// `driver.scheduler_and_driver(ctx).0.inner_mut()`.
    fn install_observed(_handlers: &mut Handlers<SchedulerDriver<Observed<Self>>>) {}
}

/// A scheduler wrapped so that the [`Ledger`] sees every status it receives, before it does.
pub struct Observed<S> {
    inner: S,
    ledger: Ledger,
    bug: Option<InjectedBug>,
    /// A held-back update (with [`InjectedBug::ReorderStatusUpdates`]).
    held: Option<TaskStatus>,
    reordered: bool,
}

impl<S> Observed<S> {
    /// `inner`, observed by `ledger`, with an optional injected bug.
    pub fn new(inner: S, ledger: Ledger, bug: Option<InjectedBug>) -> Self {
        Observed {
            inner,
            ledger,
            bug,
            held: None,
            reordered: false,
        }
    }

    /// The wrapped scheduler.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The wrapped scheduler, mutably.
    pub fn inner_mut(&mut self) -> &mut S {
        &mut self.inner
    }
}

impl<S: SimScheduler> Scheduler for Observed<S> {
    fn registered(&mut self, driver: &mut Driver<'_, '_>, framework_id: &FrameworkId) {
        self.inner.registered(driver, framework_id)
    }
    fn reregistered(&mut self, driver: &mut Driver<'_, '_>) {
        self.inner.reregistered(driver)
    }
    fn resource_offers(&mut self, driver: &mut Driver<'_, '_>, offers: Vec<Offer>) {
        self.inner.resource_offers(driver, offers)
    }
    fn offer_rescinded(&mut self, driver: &mut Driver<'_, '_>, offer_id: &OfferId) {
        self.inner.offer_rescinded(driver, offer_id)
    }
    fn status_update(&mut self, driver: &mut Driver<'_, '_>, status: &TaskStatus) {
        if self.bug == Some(InjectedBug::ReorderStatusUpdates) && !self.reordered {
            match self.held.take() {
                None if status.uuid.is_some() && status.state == TaskState::Starting => {
                    self.held = Some(status.clone());
                    return;
                }
                Some(held) if held.task_id == status.task_id && held.uuid != status.uuid => {
                    self.reordered = true;
                    self.ledger.on_status(status);
                    self.inner.status_update(driver, status);
                    self.ledger.on_status(&held);
                    self.inner.status_update(driver, &held);
                    return;
                }
                other => self.held = other,
            }
        }
        self.ledger.on_status(status);
        self.inner.status_update(driver, status)
    }
    fn slave_lost(&mut self, driver: &mut Driver<'_, '_>, slave_id: &SlaveId) {
        self.inner.slave_lost(driver, slave_id)
    }
    fn disconnected(&mut self, driver: &mut Driver<'_, '_>) {
        self.inner.disconnected(driver)
    }
    fn error(&mut self, driver: &mut Driver<'_, '_>, message: &str) {
        self.inner.error(driver, message)
    }
    fn exited(&mut self, driver: &mut Driver<'_, '_>, upid: &Upid) {
        self.inner.exited(driver, upid)
    }
    fn acknowledges_explicitly(&self) -> bool {
        self.inner.acknowledges_explicitly()
    }
    fn install(handlers: &mut Handlers<SchedulerDriver<Self>>) {
        S::install_observed(handlers)
    }
    fn initialize(&mut self, driver: &mut Driver<'_, '_>) {
        self.inner.initialize(driver)
    }
    // Leader + standbys: forwarded too, or a wrapped Marathon or Chronos would never learn
    // that it leads.
    fn elected(&mut self, driver: &mut Driver<'_, '_>, token: &FencingToken) {
        self.inner.elected(driver, token)
    }
    fn deposed(&mut self, driver: &mut Driver<'_, '_>, why: &str) {
        self.inner.deposed(driver, why)
    }
    fn leader_changed(&mut self, driver: &mut Driver<'_, '_>, leader: Option<&str>) {
        self.inner.leader_changed(driver, leader)
    }
    fn committed(&mut self, driver: &mut Driver<'_, '_>, write: WriteId) {
        self.inner.committed(driver, write)
    }
    fn coordination_event(&mut self, driver: &mut Driver<'_, '_>, event: &ClientEvent) {
        self.inner.coordination_event(driver, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(text: &str) -> Resources {
        Resources::parse(text).unwrap()
    }

    fn run(ledger: &Ledger, id: &str, resources: &str) {
        let mut s = ledger.lock();
        s.machines[0].running.insert(id.into(), res(resources));
        s.running_on.insert(id.into(), 0);
    }

    #[test]
    fn check_machines_names_two_tasks_that_share_a_port() {
        let ledger = Ledger::new();
        let machine = res("cpus:8;mem:8192;ports:[31000-32000]");
        ledger.add_machine(0, machine.clone(), machine);
        run(&ledger, "a", "cpus:1;mem:10;ports:[31000-31009]");
        run(&ledger, "b", "cpus:1;mem:10;ports:[31020-31020]");
        assert_eq!(ledger.check_machines(), Ok(()));
        // Inside a's range, not next to it in port order.
        run(
            &ledger,
            "c",
            "cpus:1;mem:10;ports:[31005-31005,31030-31030]",
        );
        let err = ledger.check_machines().unwrap_err();
        assert!(err.contains("tasks a and c share a port"), "{err}");
    }

    /// A slave restarted with less than its tasks use runs more than it advertises; a launch
    /// may only take what is still free of what it advertises.
    #[test]
    fn a_launch_beyond_what_the_slave_advertises_as_free_is_a_violation() {
        let ledger = Ledger::new();
        ledger.add_machine(
            0,
            res("cpus:8;mem:8192;ports:[31000-32000]"),
            res("cpus:8;mem:8192"),
        );
        ledger.set_advertised(0, res("cpus:1;mem:1024;ports:[31000-31001]"));
        let launch = |id: &str, resources: &str| {
            ledger.lock().machines[0]
                .booked
                .insert(id.into(), res(resources));
            ledger.on_launch(0, id);
        };
        launch("a", "cpus:2;mem:100;ports:[31000-31000]");
        assert_eq!(ledger.violation_count(), 1, "even the first task is over");
        ledger.take_violations();
        // Memory and a port are still free; a cpu is not.
        launch("b", "mem:100;ports:[31001-31001]");
        assert_eq!(ledger.violation_count(), 1);
        launch("c", "cpus:0.1;mem:10");
        let found = ledger.take_violations();
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].0,
            "a launch takes only what its slave's resources leave free"
        );
        // The machine itself is far from full.
        assert_eq!(ledger.check_machines(), Ok(()));
    }

    #[test]
    fn check_machines_finds_a_machine_running_more_than_its_capacity() {
        let ledger = Ledger::new();
        ledger.add_machine(0, res("cpus:2;mem:100"), res("cpus:2;mem:100"));
        run(&ledger, "a", "cpus:1.5;mem:10");
        assert_eq!(ledger.check_machines(), Ok(()));
        run(&ledger, "b", "cpus:1;mem:10");
        let err = ledger.check_machines().unwrap_err();
        assert!(err.contains("more than its"), "{err}");
    }
}
