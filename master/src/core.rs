//! The master as a pure core: registries of slaves, frameworks, tasks and offers, the
//! allocator, and every decision of the protocol (`/work/briefs/protocol.md`).
//!
//! Inputs are `handle_*` methods taking `now` (monotonic time since an arbitrary origin), the
//! sender's [`Upid`] and a wire message. Outputs are [`Action`]s — send a message, persist a
//! registry change, link or unlink a process, wake the core up for an allocation — collected
//! in order and taken with [`MasterCore::drain_actions`]. The host (the
//! [`MasterProcess`](crate::process::MasterProcess)) must carry them out *in order*: a
//! [`Action::Persist`] comes before the reply that depends on it, and the reply must not be
//! sent unless the change was committed.
//!
//! No I/O, no clock, no randomness: the master run id is given to [`MasterCore::new`], and
//! calendar timestamps are `wall_origin_secs + now`.
//!
//! Timers are the host's: it calls [`MasterCore::handle_tick`] every
//! [`MasterConfig::tick_interval`] (agent-loss scan, O(slaves), and failover deadlines),
//! [`MasterCore::handle_allocation`] (a round over every slave) every
//! [`MasterConfig::allocation_interval`], and [`MasterCore::handle_batched_allocation`] (a
//! round over the slaves that changed) when the core asks with [`Action::AllocateAfter`]
//! (batched, soon after resources or demand were added).
//!
//! ```
//! use std::time::Duration;
//! use plateau_master::core::{Action, MasterConfig, MasterCore, Outgoing};
//! use plateau_master::messages::*;
//! use plateau_master::registry::RegistryState;
//! use plateau_master::resources::{Attributes, Resources};
//! use plateau_runtime::Upid;
//!
//! let master: Upid = "master@10.0.0.1:5050".parse().unwrap();
//! let mut core = MasterCore::new(MasterConfig::default(), RegistryState::default(),
//!                                "run".into(), master, 0.0);
//! let slave: Upid = "slave(1)@10.0.0.2:5051".parse().unwrap();
//! let info = SlaveInfo { hostname: "10.0.0.2".into(), port: 5051,
//!     resources: Resources::parse("cpus:2;mem:1024").unwrap(), attributes: Attributes::default() };
//! core.handle_register_slave(Duration::ZERO, &slave, RegisterSlaveMessage { slave: info });
//! let actions = core.drain_actions();
//! // The admission is persisted before the reply.
//! assert!(matches!(actions[0], Action::Persist(_)));
//! assert!(actions.iter().any(|a| matches!(a,
//!     Action::Send { message: Outgoing::SlaveRegistered(m), .. } if m.slave_id.as_str() == "run-S0")));
//! ```

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use plateau_security::Acls;

use plateau_runtime::rng::LookupMap;
use plateau_runtime::Upid;

use crate::allocator::{unused_part, Allocator, AllocatorConfig};
use crate::ids::{FrameworkId, OfferId, SlaveId, TaskId};
use crate::limits::{
    ACTIONS_RECYCLED_CAPACITY_MAX, ATTRIBUTES_LEN_MAX, ATTRIBUTE_TEXT_LEN_MAX,
    COMPLETED_FRAMEWORKS_MAX, COMPLETED_TASKS_PER_FRAMEWORK_MAX, FAILOVER_TIMEOUT_MAX, OFFERS_MAX,
    OFFERS_PER_DECLINE_MAX, OFFERS_PER_LAUNCH_MAX, RECONCILE_TASKS_MAX, REFUSE_DURATION_MAX,
    RUN_TASK_RESEND_INTERVAL_MAX, SLAVE_TASKS_MAX, STATUSES_PER_TASK_MAX, TASKS_MAX,
    TASKS_PER_LAUNCH_MAX, TASK_DURATION_MAX,
};
use crate::maintenance::{MachineId, MachineMode, MaintenanceError, MaintenanceState, Window};
use crate::messages::*;
use crate::registry::{RegisteredFramework, RegisteredSlave, RegistryOp, RegistryState};
use crate::resources::{AttributeValue, Resources};

/// Why an operator's teardown was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TeardownRefused {
    /// The ACLs do not allow this principal to tear that framework down (403).
    Unauthorized,
    /// No framework has that id (400, as Mesos answers).
    Unknown,
}

/// Settings of the master, with the defaults of the protocol.
#[derive(Debug, Clone, PartialEq)]
pub struct MasterConfig {
    /// A slave silent this long is marked unreachable (default 5 s).
    pub agent_timeout: Duration,
    /// How often slaves send heartbeats (default 1 s); told to each slave at registration.
    pub heartbeat_interval: Duration,
    /// Period of the allocation timer (default 1 s, as Mesos).
    pub allocation_interval: Duration,
    /// How soon after resources or demand are added an extra allocation runs (default 10 ms;
    /// events within it are batched into one round).
    pub allocation_batch_delay: Duration,
    /// Refuse filter applied to declined or unused offer resources when the framework's
    /// `refuse_seconds` is not a usable number (default 5 s).
    pub default_refuse: Duration,
    /// Role weights applied (and persisted) at start, over those already in the registry.
    pub role_weights: BTreeMap<String, f64>,
    /// Seed of the allocator's slave order.
    pub seed: u64,
    /// Host name shown in `/master/state`.
    pub hostname: String,
    /// A task still TASK_STAGING this long after its RunTaskMessage was sent (no status from
    /// its slave yet) gets its RunTaskMessage sent again, then after twice as long, up to
    /// [`RUN_TASK_RESEND_INTERVAL_MAX`] (default 5 s). The network may lose the message; the
    /// slave ignores a RunTask for a task it already has, and its own retried status updates
    /// end the resends. Mesos has no such flag: it relies on TCP and reconciliation.
    pub run_task_resend_timeout: Duration,
    /// Outstanding offers older than this are rescinded and their resources recovered
    /// (Mesos `--offer_timeout`; default none, as Mesos). Guards against frameworks that hold
    /// offers forever, or whose accept or decline was lost.
    pub offer_timeout: Option<Duration>,
    /// Slaves recovered from the registry after a master restart that have not re-registered
    /// this long after the master's first tick are marked unreachable (Mesos
    /// `--agent_reregister_timeout`; default 10 min, as Mesos).
    pub agent_reregister_timeout: Duration,
    /// The authorization rules (`--acls`): which principals may register frameworks in which
    /// roles (`register_frameworks`) and run tasks as which users (`run_tasks`). A framework's
    /// principal is the one its certificate names. Default: everything allowed.
    pub acls: Arc<Acls>,
}

impl Default for MasterConfig {
    fn default() -> Self {
        MasterConfig {
            agent_timeout: Duration::from_secs(5),
            heartbeat_interval: Duration::from_secs(1),
            allocation_interval: Duration::from_secs(1),
            allocation_batch_delay: Duration::from_millis(10),
            default_refuse: Duration::from_secs(5),
            role_weights: BTreeMap::new(),
            seed: 0,
            hostname: String::new(),
            run_task_resend_timeout: Duration::from_secs(5),
            offer_timeout: None,
            agent_reregister_timeout: Duration::from_secs(600),
            acls: Arc::default(),
        }
    }
}

impl MasterConfig {
    /// Period of [`MasterCore::handle_tick`]: 500 ms, or `agent_timeout / 10` when shorter,
    /// so a silent slave is found unreachable within 110 % of the timeout.
    pub fn tick_interval(&self) -> Duration {
        (self.agent_timeout / 10).clamp(Duration::from_millis(1), Duration::from_millis(500))
    }
}

/// A message the master sends.
#[derive(Debug, Clone)]
#[allow(missing_docs)] // each variant is named after the message it carries
pub enum Outgoing {
    SlaveRegistered(SlaveRegisteredMessage),
    SlaveReregistered(SlaveReregisteredMessage),
    ReregisterRequest(ReregisterRequestMessage),
    RunTask(Box<RunTaskMessage>),
    KillTask(KillTaskMessage),
    StatusUpdate(StatusUpdateMessage),
    StatusUpdateAcknowledgement(StatusUpdateAcknowledgementMessage),
    ShutdownFramework(ShutdownFrameworkMessage),
    FrameworkRegistered(FrameworkRegisteredMessage),
    FrameworkReregistered(FrameworkReregisteredMessage),
    ResourceOffers(ResourceOffersMessage),
    RescindResourceOffer(RescindResourceOfferMessage),
    LostSlave(LostSlaveMessage),
    FrameworkError(FrameworkErrorMessage),
    InverseOffers(InverseOffersMessage),
    RescindInverseOffer(RescindInverseOfferMessage),
}

/// What the core asks its host to do, in order.
#[derive(Debug, Clone)]
pub enum Action {
    /// Send `message` to `to`.
    Send {
        /// Receiver.
        to: Upid,
        /// The message.
        message: Outgoing,
    },
    /// Commit this change to the registry, durably, before carrying out any later action.
    Persist(RegistryOp),
    /// Watch this process (`exited` → [`MasterCore::handle_exited`]).
    Link(Upid),
    /// Stop watching this process.
    Unlink(Upid),
    /// Call [`MasterCore::handle_allocation`] after this delay.
    AllocateAfter(Duration),
}

/// Where a slave stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlaveStatus {
    /// Registered and heard from; its resources are offered.
    Connected,
    /// Its link broke: offers rescinded, not offered, but heartbeats may still come; it is
    /// asked to re-register. Becomes unreachable after the agent timeout of silence.
    Disconnected,
    /// Silent for the agent timeout: its tasks are TASK_UNREACHABLE, it is out of the
    /// allocator until it re-registers.
    Unreachable,
    /// Known from the registry after a master restart; not re-registered yet.
    Recovered,
}

/// A slave the master knows.
#[derive(Debug, Clone)]
pub struct Slave {
    /// Its id.
    pub id: SlaveId,
    /// What it reported.
    pub info: SlaveInfo,
    /// Its process address (none until it registers with this master run).
    pub pid: Option<Upid>,
    /// Where it stands.
    pub status: SlaveStatus,
    /// When it was last heard from (any message), monotonic.
    pub last_heard: Duration,
    /// Calendar time of its first registration with this master run.
    pub registered_time: Option<f64>,
    /// Calendar time of its latest re-registration.
    pub reregistered_time: Option<f64>,
    /// Calendar time it was marked unreachable.
    pub unreachable_time: Option<f64>,
    /// Its tasks known to the master.
    pub tasks: BTreeSet<(FrameworkId, TaskId)>,
    /// Outstanding offers of its resources.
    pub offers: BTreeSet<OfferId>,
}

impl Slave {
    /// True when its resources are in the allocator (connected or disconnected).
    pub fn is_in_allocator(&self) -> bool {
        matches!(
            self.status,
            SlaveStatus::Connected | SlaveStatus::Disconnected
        )
    }
}

/// Where a framework stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameworkStatus {
    /// Its scheduler is connected; it gets offers.
    Active,
    /// Its scheduler's link broke; removed at `failover_deadline` unless it re-registers.
    Disconnected,
    /// Known from the registry after a master restart; not re-registered yet.
    Recovered,
}

/// A framework the master knows.
#[derive(Debug, Clone)]
pub struct Framework {
    /// Its id.
    pub id: FrameworkId,
    /// Its info as (re-)registered, `id` set.
    pub info: FrameworkInfo,
    /// Its scheduler (none for a recovered framework).
    pub pid: Option<Upid>,
    /// Where it stands.
    pub status: FrameworkStatus,
    /// When a disconnected framework is removed (monotonic).
    pub failover_deadline: Option<Duration>,
    /// Calendar time of its registration with this master run.
    pub registered_time: Option<f64>,
    /// Calendar time of its latest re-registration.
    pub reregistered_time: Option<f64>,
    /// Calendar time it was removed.
    pub unregistered_time: Option<f64>,
    /// Its active tasks.
    pub tasks: BTreeSet<TaskId>,
    /// Its outstanding offers.
    pub offers: BTreeSet<OfferId>,
    /// Its latest terminal tasks, oldest first (bounded).
    pub completed_tasks: VecDeque<Box<Task>>,
    /// True when it is registered in the allocator (active or disconnected).
    pub in_allocator: bool,
    /// True when it asked for no offers.
    pub suppressed: bool,
}

/// A task the master knows.
#[derive(Debug, Clone)]
pub struct Task {
    /// What was launched (or reported by its slave).
    pub info: TaskInfo,
    /// Its framework.
    pub framework_id: FrameworkId,
    /// Its slave.
    pub slave_id: SlaveId,
    /// Latest state.
    pub state: TaskState,
    /// Latest statuses, oldest first (bounded).
    pub statuses: VecDeque<TaskStatus>,
    /// True when its slave reported it at its latest re-registration: what such tasks use is
    /// accounted as used even beyond the slave's total. False for a task this master launched
    /// since (see [`MasterCore::check_invariants`]).
    pub reported_by_slave: bool,
}

impl Task {
    fn push_status(&mut self, status: TaskStatus) {
        if self.statuses.len() >= STATUSES_PER_TASK_MAX {
            self.statuses.pop_front();
        }
        self.state = status.state;
        if self.statuses.len() == self.statuses.capacity() {
            // Grown one at a time: most tasks see three statuses (starting, running, their
            // end), and the default growth doubles from four (the master holds every task).
            self.statuses.reserve_exact(1);
        }
        self.statuses.push_back(status);
    }
}

/// An outstanding offer.
#[derive(Debug, Clone)]
pub struct OfferEntry {
    /// The offer as sent.
    pub offer: Offer,
}

/// An inverse offer of a slave to a framework (one per pair at most), and the framework's
/// latest answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InverseOfferEntry {
    /// The latest inverse offer sent for the pair.
    pub id: OfferId,
    /// True while it waits for an answer.
    pub outstanding: bool,
    /// The framework's latest answer.
    pub status: InverseOfferStatus,
    /// When to ask again after an answer (monotonic).
    pub ask_again_at: Duration,
}

/// Counters since this master started (what `/metrics/snapshot` reports besides gauges).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MasterCounters {
    /// Slaves registered.
    pub slave_registrations: u64,
    /// Slaves re-registered.
    pub slave_reregistrations: u64,
    /// Slaves removed.
    pub slave_removals: u64,
    /// Slaves marked unreachable.
    pub slave_unreachable_completed: u64,
    /// Tasks that reached each terminal state (and TASK_ERROR from launches).
    pub tasks_terminal: BTreeMap<TaskState, u64>,
    /// Offers sent.
    pub offers_sent: u64,
    /// Offers rescinded.
    pub offers_rescinded: u64,
    /// Offers declined (a launch without tasks).
    pub offers_declined: u64,
    /// Offers used by a launch.
    pub offers_accepted: u64,
    /// Allocation rounds run.
    pub allocation_runs: u64,
    /// Messages ignored as invalid or from an unexpected sender.
    pub dropped_messages: u64,
    /// RunTaskMessages sent again for tasks their slave had not confirmed.
    pub run_task_resends: u64,
    /// Tasks of a launch ignored as a duplicate of a launch already carried out.
    pub duplicate_launch_tasks: u64,
    /// Offers rescinded because they were outstanding longer than the offer timeout.
    pub offers_expired: u64,
    /// Recovered slaves marked unreachable because they did not re-register in time.
    pub slaves_reregister_timed_out: u64,
    /// Slaves that re-registered over-committed: with tasks using more than their resources
    /// (e.g. restarted with less), all accounted as used.
    pub slave_reregistrations_overcommitted: u64,
    /// Tasks still staging (never confirmed by their slave) dropped when their slave
    /// re-registered with no room left for them beside the tasks it reported.
    pub staging_tasks_dropped: u64,
    /// Inverse offers sent.
    pub inverse_offers_sent: u64,
    /// Registrations refused because the slave's machine is DOWN for maintenance.
    pub slave_registrations_refused_down: u64,
}

/// A task staged on a slave that has not confirmed it yet: when its RunTaskMessage is sent
/// again.
#[derive(Debug, Clone, Copy)]
struct StagingResend {
    /// When to resend if still unconfirmed (monotonic).
    due: Duration,
    /// The wait that led to `due`; doubled at each resend.
    interval: Duration,
}

/// The master's pure core. See the [module docs](self).
#[derive(Debug)]
pub struct MasterCore {
    config: MasterConfig,
    run_id: String,
    upid: Upid,
    wall_origin_secs: f64,
    allocator: Allocator,
    slaves: BTreeMap<SlaveId, Slave>,
    slave_by_pid: BTreeMap<Upid, SlaveId>,
    frameworks: BTreeMap<FrameworkId, Framework>,
    framework_by_pid: BTreeMap<Upid, FrameworkId>,
    /// Boxed: a task is large, and a B-tree moves its values on every insert and removal.
    tasks: BTreeMap<(FrameworkId, TaskId), Box<Task>>,
    offers: BTreeMap<OfferId, OfferEntry>,
    completed_frameworks: VecDeque<Framework>,
    next_slave_number: u64,
    next_framework_number: u64,
    next_offer_number: u64,
    allocation_pending: bool,
    /// Tasks whose slave has not confirmed them (no status yet), with their resend deadline.
    /// Scanned at each tick: O(tasks in flight). Entries of tasks that left TASK_STAGING by
    /// another path are dropped at the next scan.
    staging: BTreeMap<(FrameworkId, TaskId), StagingResend>,
    /// Offers in creation order with their expiry (only with an offer timeout); entries of
    /// offers already gone are skipped when they come due.
    offer_expiry: VecDeque<(Duration, OfferId)>,
    /// When slaves recovered from the registry and not re-registered yet are marked
    /// unreachable (set at the first tick).
    recovered_slaves_deadline: Option<Duration>,
    /// The maintenance schedule and DOWN machines (as in the registry).
    maintenance: MaintenanceState,
    /// Inverse offers by slave and framework (slaves on DRAINING machines only).
    inverse_offers: BTreeMap<(SlaveId, FrameworkId), InverseOfferEntry>,
    next_inverse_offer_number: u64,
    counters: MasterCounters,
    actions: Vec<Action>,
}

/// A framework's failover timeout, at most [`FAILOVER_TIMEOUT_MAX`]. A value that is not a
/// finite number of seconds ≥ 0 is refused at registration ([`check_framework_info`]); one
/// recovered from a registry written before that check counts as no timeout.
fn failover_timeout(info: &FrameworkInfo) -> Duration {
    let secs = info.failover_timeout_secs;
    if secs.is_finite() && secs > 0.0 {
        Duration::from_secs_f64(secs.min(FAILOVER_TIMEOUT_MAX.as_secs_f64()))
    } else {
        Duration::ZERO
    }
}

/// What a scheduler's `FrameworkInfo` must satisfy before anything of it is persisted: numbers
/// from the network are checked at the edge, with an error that names the field.
fn check_framework_info(info: &FrameworkInfo) -> Result<(), String> {
    let secs = info.failover_timeout_secs;
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!(
            "framework refused: failover_timeout must be a finite number of seconds >= 0, got {secs}"
        ));
    }
    Ok(())
}

/// A framework's principal is fixed by its certificate. For a registration from another node
/// (`certificate` is `Some`, holding the principal its node certificate names, if any):
/// `info.principal` must be absent (it is then filled in with the certificate's) or equal to
/// it, and a framework id already registered under a principal (`registered`) can only be
/// taken over under that same principal. Local and simulated registrations (`None`) carry no
/// certificate and are not checked.
pub fn bind_principal(
    info: &mut FrameworkInfo,
    certificate: Option<Option<&str>>,
    registered: Option<&str>,
) -> Result<(), String> {
    let Some(proven) = certificate else {
        return Ok(());
    };
    match (info.principal.as_deref(), proven) {
        (Some(claimed), Some(proven)) if claimed != proven => {
            return Err(format!(
                "framework refused: principal '{claimed}' is not the one its certificate names ('{proven}')"
            ))
        }
        (Some(claimed), None) => {
            return Err(format!(
                "framework refused: principal '{claimed}' claimed, but its certificate names no principal (issue it with `plateau certs issue --principal`)"
            ))
        }
        _ => {}
    }
    if let Some(registered) = registered {
        if proven != Some(registered) {
            return Err(format!(
                "framework refused: this framework is registered under principal '{registered}', not '{}'",
                proven.unwrap_or("(none)")
            ));
        }
    }
    info.principal = proven.map(str::to_string);
    Ok(())
}

/// What a slave's `SlaveInfo` must satisfy before it is admitted or persisted: attribute
/// numbers are finite (a NaN compares false to everything and would make constraints lie), and
/// the attributes are as bounded as those parsed from text.
fn check_slave_info(info: &SlaveInfo) -> Result<(), String> {
    if info.attributes.len() > ATTRIBUTES_LEN_MAX {
        return Err(format!(
            "slave refused: {} attributes (maximum {ATTRIBUTES_LEN_MAX})",
            info.attributes.len()
        ));
    }
    for (name, value) in info.attributes.iter() {
        if name.is_empty() || name.len() > ATTRIBUTE_TEXT_LEN_MAX {
            return Err(format!(
                "slave refused: attribute name of {} bytes (1 to {ATTRIBUTE_TEXT_LEN_MAX})",
                name.len()
            ));
        }
        match value {
            AttributeValue::Scalar(number) if !number.is_finite() => {
                return Err(format!(
                    "slave refused: attribute {name} must be a finite number, got {number}"
                ));
            }
            AttributeValue::Text(text) if text.len() > ATTRIBUTE_TEXT_LEN_MAX => {
                return Err(format!(
                    "slave refused: attribute {name} has {} bytes (maximum {ATTRIBUTE_TEXT_LEN_MAX})",
                    text.len()
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The ACLs' `run_tasks`: may the framework's principal run `task` as the user it runs as (its
/// command's, else its framework's)? A task that names no user runs as the slave's
/// `--default-task-user`, which the operator chose: always allowed.
fn run_as_allowed(acls: &Acls, framework: &FrameworkInfo, task: &TaskInfo) -> Result<(), String> {
    match task.user(framework) {
        Some(user) if !acls.can_run_task(framework.principal.as_deref(), user) => Err(format!(
            "principal {} is not authorized to run tasks as user '{user}' (ACL run_tasks)",
            framework
                .principal
                .as_deref()
                .map(|p| format!("'{p}'"))
                .unwrap_or_else(|| "(none)".into())
        )),
        _ => Ok(()),
    }
}

/// The durations of a task that its slave will wait on (health check timings, the kill grace
/// period) must be finite numbers of seconds from 0 to [`TASK_DURATION_MAX`]: checked at the
/// master, the task's edge, with an error naming the field.
fn check_task_numbers(task: &TaskInfo) -> Result<(), String> {
    let max = TASK_DURATION_MAX.as_secs_f64();
    let check = |field: &str, secs: f64| {
        if secs.is_finite() && (0.0..=max).contains(&secs) {
            Ok(())
        } else {
            Err(format!(
                "{field} must be a finite number of seconds from 0 to {max}, got {secs}"
            ))
        }
    };
    if let Some(hc) = &task.health_check {
        check("health_check.delay_secs", hc.delay_secs)?;
        check("health_check.interval_secs", hc.interval_secs)?;
        check("health_check.timeout_secs", hc.timeout_secs)?;
        check("health_check.grace_period_secs", hc.grace_period_secs)?;
    }
    if let Some(secs) = task.kill_grace_period_secs {
        check("kill_grace_period_secs", secs)?;
    }
    Ok(())
}

fn refuse_duration(filters: &Filters, default: Duration) -> Duration {
    let secs = filters.refuse_seconds;
    if secs.is_finite() && secs >= 0.0 {
        Duration::from_secs_f64(secs.min(REFUSE_DURATION_MAX.as_secs_f64()))
    } else {
        default
    }
}

impl MasterCore {
    /// [`check_framework_info`], then the ACLs' `register_frameworks`: may the framework's
    /// principal (fixed by its certificate) register in its role?
    fn check_framework(&self, info: &FrameworkInfo) -> Result<(), String> {
        check_framework_info(info)?;
        if !self
            .config
            .acls
            .can_register_framework(info.principal.as_deref(), &info.role)
        {
            return Err(format!(
                "framework refused: principal {} is not authorized to register frameworks in role '{}' (ACL register_frameworks)",
                info.principal.as_deref().map(|p| format!("'{p}'")).unwrap_or_else(|| "(none)".into()),
                info.role
            ));
        }
        Ok(())
    }

    /// A master recovering from `registry`, with run id `run_id` (fresh per start), its own
    /// address `upid`, and the calendar time (Unix seconds) at monotonic time zero.
    ///
    /// The new run id, the configured weights and the counters are queued as
    /// [`Action::Persist`]; slaves and frameworks of the registry are known as recovered until
    /// they re-register.
    pub fn new(
        config: MasterConfig,
        registry: RegistryState,
        run_id: String,
        upid: Upid,
        wall_origin_secs: f64,
    ) -> Self {
        let mut allocator = Allocator::new(AllocatorConfig {
            seed: config.seed,
            ..AllocatorConfig::default()
        });
        let mut actions = vec![Action::Persist(RegistryOp::SetMasterRunId(run_id.clone()))];
        let mut weights = registry.weights.clone();
        for (role, weight) in &config.role_weights {
            weights.insert(role.clone(), *weight);
            actions.push(Action::Persist(RegistryOp::SetWeight {
                role: role.clone(),
                weight: *weight,
            }));
        }
        for (role, weight) in &weights {
            if let Err(e) = allocator.set_role_weight(role, *weight) {
                tracing::warn!(%role, error = %e, "ignoring role weight");
            }
        }
        let slaves = registry
            .slaves
            .values()
            .map(|s| {
                (
                    s.id.clone(),
                    Slave {
                        id: s.id.clone(),
                        info: s.info.clone(),
                        pid: None,
                        status: if s.unreachable {
                            SlaveStatus::Unreachable
                        } else {
                            SlaveStatus::Recovered
                        },
                        last_heard: Duration::ZERO,
                        registered_time: None,
                        reregistered_time: None,
                        unreachable_time: None,
                        tasks: BTreeSet::new(),
                        offers: BTreeSet::new(),
                    },
                )
            })
            .collect();
        let frameworks = registry
            .frameworks
            .values()
            .map(|f| {
                (
                    f.id.clone(),
                    Framework {
                        id: f.id.clone(),
                        info: f.info.clone(),
                        pid: None,
                        status: FrameworkStatus::Recovered,
                        failover_deadline: None,
                        registered_time: None,
                        reregistered_time: None,
                        unregistered_time: None,
                        tasks: BTreeSet::new(),
                        offers: BTreeSet::new(),
                        completed_tasks: VecDeque::new(),
                        in_allocator: false,
                        suppressed: false,
                    },
                )
            })
            .collect();
        MasterCore {
            config,
            run_id,
            upid,
            wall_origin_secs,
            allocator,
            slaves,
            slave_by_pid: BTreeMap::new(),
            frameworks,
            framework_by_pid: BTreeMap::new(),
            tasks: BTreeMap::new(),
            offers: BTreeMap::new(),
            completed_frameworks: VecDeque::new(),
            next_slave_number: registry.next_slave_number,
            next_framework_number: registry.next_framework_number,
            next_offer_number: 0,
            allocation_pending: false,
            staging: BTreeMap::new(),
            offer_expiry: VecDeque::new(),
            recovered_slaves_deadline: None,
            maintenance: registry.maintenance.clone(),
            inverse_offers: BTreeMap::new(),
            next_inverse_offer_number: 0,
            counters: MasterCounters::default(),
            actions,
        }
    }

    // ----- outputs and queries -------------------------------------------------------------

    /// Takes the actions decided so far, in the order they must be carried out.
    pub fn drain_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    /// Gives back a vector [`MasterCore::drain_actions`] returned, once carried out: the next
    /// actions go into it instead of a fresh allocation (a small one only, so that one large
    /// burst does not stay allocated).
    pub fn recycle_actions(&mut self, mut spent: Vec<Action>) {
        spent.clear();
        if self.actions.capacity() == 0 && spent.capacity() <= ACTIONS_RECYCLED_CAPACITY_MAX {
            self.actions = spent;
        }
    }

    /// The settings.
    pub fn config(&self) -> &MasterConfig {
        &self.config
    }

    /// This master run's id.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The master's address.
    pub fn upid(&self) -> &Upid {
        &self.upid
    }

    /// Calendar time (Unix seconds) at monotonic `now`.
    pub fn wall_secs(&self, now: Duration) -> f64 {
        self.wall_origin_secs + now.as_secs_f64()
    }

    /// Calendar time (Unix seconds) at monotonic zero.
    pub fn wall_origin_secs(&self) -> f64 {
        self.wall_origin_secs
    }

    /// All slaves known (connected, disconnected, unreachable, recovered).
    pub fn slaves(&self) -> &BTreeMap<SlaveId, Slave> {
        &self.slaves
    }

    /// All frameworks known and not removed.
    pub fn frameworks(&self) -> &BTreeMap<FrameworkId, Framework> {
        &self.frameworks
    }

    /// Removed frameworks, oldest first (bounded).
    pub fn completed_frameworks(&self) -> &VecDeque<Framework> {
        &self.completed_frameworks
    }

    /// Active tasks (non-terminal, or terminal but reported by a re-registering slave), by
    /// framework and task id. Tasks of unknown frameworks (orphans) are here too.
    pub fn tasks(&self) -> &BTreeMap<(FrameworkId, TaskId), Box<Task>> {
        &self.tasks
    }

    /// Outstanding offers.
    pub fn offers(&self) -> &BTreeMap<OfferId, OfferEntry> {
        &self.offers
    }

    /// The allocator (for its queries: totals, availability, shares).
    pub fn allocator(&self) -> &Allocator {
        &self.allocator
    }

    /// Counters since start.
    pub fn counters(&self) -> &MasterCounters {
        &self.counters
    }

    /// The maintenance schedule and DOWN machines.
    pub fn maintenance(&self) -> &MaintenanceState {
        &self.maintenance
    }

    /// Inverse offers by slave and framework, with the frameworks' answers.
    pub fn inverse_offers(&self) -> &BTreeMap<(SlaveId, FrameworkId), InverseOfferEntry> {
        &self.inverse_offers
    }

    /// The IP a slave is reached at (its process address' host; empty while unknown).
    pub fn slave_ip(slave: &Slave) -> &str {
        slave.pid.as_ref().map(|p| &*p.host).unwrap_or("")
    }

    /// The machine of the maintenance schedule `slave` is on, with its window's
    /// unavailability and its mode (DRAINING or DOWN); `None` when it is UP.
    pub fn slave_maintenance(
        &self,
        slave: &Slave,
    ) -> Option<(&MachineId, Unavailability, MachineMode)> {
        self.maintenance
            .machine_of(&slave.info.hostname, Self::slave_ip(slave))
    }

    /// Resources used by active tasks on `slave` (counted while the task is not terminal).
    pub fn slave_used(&self, slave: &Slave) -> Resources {
        Resources::sum(
            slave
                .tasks
                .iter()
                .filter_map(|key| self.tasks.get(key))
                .filter(|task| !task.state.is_terminal())
                .map(|task| &task.info.resources),
        )
    }

    /// Resources in outstanding offers of `offers`.
    pub fn offered(&self, offers: &BTreeSet<OfferId>) -> Resources {
        Resources::sum(
            offers
                .iter()
                .filter_map(|id| self.offers.get(id))
                .map(|entry| &entry.offer.resources),
        )
    }

    // ----- helpers -------------------------------------------------------------------------

    fn send(&mut self, to: &Upid, message: Outgoing) {
        self.actions.push(Action::Send {
            to: to.clone(),
            message,
        });
    }

    fn persist(&mut self, op: RegistryOp) {
        self.actions.push(Action::Persist(op));
    }

    fn request_allocation(&mut self) {
        if !self.allocation_pending {
            self.allocation_pending = true;
            self.actions
                .push(Action::AllocateAfter(self.config.allocation_batch_delay));
        }
    }

    fn master_status(
        &self,
        now: Duration,
        task_id: &TaskId,
        state: TaskState,
        reason: Reason,
        message: String,
        slave_id: Option<SlaveId>,
    ) -> TaskStatus {
        TaskStatus {
            task_id: task_id.clone(),
            state,
            message: Some(message),
            source: StatusSource::Master,
            reason: Some(reason),
            slave_id,
            healthy: None,
            timestamp: self.wall_secs(now),
            uuid: None,
        }
    }

    /// Sends a master-generated status to the framework's scheduler, if it is connected.
    fn send_status(&mut self, framework_id: &FrameworkId, status: TaskStatus) {
        let pid = self
            .frameworks
            .get(framework_id)
            .filter(|f| f.status == FrameworkStatus::Active)
            .and_then(|f| f.pid.clone());
        if let Some(pid) = pid {
            self.send(
                &pid,
                Outgoing::StatusUpdate(StatusUpdateMessage {
                    framework_id: framework_id.clone(),
                    status,
                    slave_pid: None,
                }),
            );
        }
    }

    fn count_terminal(&mut self, state: TaskState) {
        if state.is_terminal() {
            *self.counters.tasks_terminal.entry(state).or_default() += 1;
        }
    }

    /// The framework `id` if `from` is its connected scheduler.
    fn framework_of(&mut self, id: &FrameworkId, from: &Upid, what: &str) -> bool {
        let ok = self
            .frameworks
            .get(id)
            .is_some_and(|f| f.status == FrameworkStatus::Active && f.pid.as_ref() == Some(from));
        if !ok {
            self.counters.dropped_messages += 1;
            tracing::warn!(framework = %id, %from, what, "ignoring message from a scheduler that is not the framework's connected one");
        }
        ok
    }

    /// Removes an offer and sends its rescind; with `recover`, its resources go back to the
    /// allocator (without filter).
    fn rescind_offer(&mut self, now: Duration, offer_id: &OfferId, recover: bool) {
        let Some(entry) = self.offers.remove(offer_id) else {
            return;
        };
        let offer = entry.offer;
        if let Some(slave) = self.slaves.get_mut(&offer.slave_id) {
            slave.offers.remove(offer_id);
        }
        let pid = match self.frameworks.get_mut(&offer.framework_id) {
            Some(f) => {
                f.offers.remove(offer_id);
                f.pid.clone()
            }
            None => None,
        };
        if let Some(pid) = pid {
            self.send(
                &pid,
                Outgoing::RescindResourceOffer(RescindResourceOfferMessage {
                    offer_id: offer_id.clone(),
                }),
            );
        }
        self.counters.offers_rescinded += 1;
        if recover {
            self.recover(
                now,
                &offer.framework_id,
                &offer.slave_id,
                &offer.resources,
                None,
            );
        }
    }

    /// Takes an offer out of the books without a rescind (it was used or declined).
    fn take_offer(&mut self, offer_id: &OfferId) -> Option<Offer> {
        let entry = self.offers.remove(offer_id)?;
        if let Some(slave) = self.slaves.get_mut(&entry.offer.slave_id) {
            slave.offers.remove(offer_id);
        }
        if let Some(f) = self.frameworks.get_mut(&entry.offer.framework_id) {
            f.offers.remove(offer_id);
        }
        Some(entry.offer)
    }

    fn recover(
        &mut self,
        now: Duration,
        framework: &FrameworkId,
        slave: &SlaveId,
        resources: &Resources,
        refuse: Option<Duration>,
    ) {
        if resources.is_empty() {
            return;
        }
        if let Err(e) = self
            .allocator
            .recover_resources(framework, slave, resources, refuse, now)
        {
            // A bookkeeping slip would be a bug; it is logged rather than crashing a master.
            tracing::error!(%framework, %slave, error = %e, "cannot recover resources");
            debug_assert!(false, "cannot recover resources: {e}");
        } else if refuse.is_none() {
            self.request_allocation();
        }
    }

    /// Moves a task that reached a terminal state out of the active books: its resources go
    /// back to the allocator if its slave is in it.
    fn finish_task(&mut self, now: Duration, key: &(FrameworkId, TaskId)) {
        let Some(task) = self.tasks.remove(key) else {
            return;
        };
        let slave_in_allocator = match self.slaves.get_mut(&task.slave_id) {
            Some(slave) => {
                slave.tasks.remove(key);
                slave.is_in_allocator()
            }
            None => false,
        };
        if slave_in_allocator {
            let resources = task.info.resources.clone();
            self.recover(now, &key.0, &task.slave_id, &resources, None);
        }
        if let Some(f) = self.frameworks.get_mut(&key.0) {
            f.tasks.remove(&key.1);
            if f.completed_tasks.len() >= COMPLETED_TASKS_PER_FRAMEWORK_MAX {
                f.completed_tasks.pop_front();
            }
            f.completed_tasks.push_back(task);
        }
    }

    fn next_slave_id(&mut self) -> SlaveId {
        let id = SlaveId::new(format!("{}-S{}", self.run_id, self.next_slave_number));
        self.next_slave_number += 1;
        self.persist(RegistryOp::SetNextSlaveNumber(self.next_slave_number));
        id
    }

    // ----- slaves --------------------------------------------------------------------------

    /// A new slave asks to join (protocol 1): it is persisted, then told its id.
    pub fn handle_register_slave(&mut self, now: Duration, from: &Upid, msg: RegisterSlaveMessage) {
        if let Some(id) = self.slave_by_pid.get(from).cloned() {
            let slave = &self.slaves[&id];
            if slave.status == SlaveStatus::Connected {
                // A retry: the reply was lost or is on its way. Answer the same.
                let reply = SlaveRegisteredMessage {
                    slave_id: id.clone(),
                    heartbeat_interval_ms: self.config.heartbeat_interval.as_millis() as u64,
                };
                self.slaves.get_mut(&id).expect("indexed").last_heard = now;
                self.send(from, Outgoing::SlaveRegistered(reply));
                return;
            }
            // The process at this address restarted without its id: the old slave is gone.
            self.remove_slave(
                now,
                &id,
                Reason::SlaveRestarted,
                "the slave restarted without its state",
            );
        }
        if let Err(e) = check_slave_info(&msg.slave) {
            tracing::warn!(%from, error = %e, "refusing slave registration");
            self.counters.dropped_messages += 1;
            return;
        }
        if self.maintenance.is_down(&msg.slave.hostname, &from.host) {
            tracing::info!(%from, "refusing slave registration: its machine is DOWN for maintenance");
            self.counters.slave_registrations_refused_down += 1;
            return;
        }
        let id = self.next_slave_id();
        if let Err(e) = self
            .allocator
            .add_slave(id.clone(), msg.slave.resources.clone(), vec![])
        {
            tracing::warn!(%from, error = %e, "refusing slave registration");
            self.counters.dropped_messages += 1;
            return;
        }
        self.persist(RegistryOp::AdmitSlave(RegisteredSlave {
            id: id.clone(),
            info: msg.slave.clone(),
            unreachable: false,
            pid: Some(from.clone()),
        }));
        self.slaves.insert(
            id.clone(),
            Slave {
                id: id.clone(),
                info: msg.slave,
                pid: Some(from.clone()),
                status: SlaveStatus::Connected,
                last_heard: now,
                registered_time: Some(self.wall_secs(now)),
                reregistered_time: None,
                unreachable_time: None,
                tasks: BTreeSet::new(),
                offers: BTreeSet::new(),
            },
        );
        self.slave_by_pid.insert(from.clone(), id.clone());
        self.counters.slave_registrations += 1;
        let info = &self.slaves[&id].info;
        tracing::info!(slave_id = %id, %from, hostname = %info.hostname, resources = %info.resources, attributes = %info.attributes, "slave registered");
        self.actions.push(Action::Link(from.clone()));
        self.send(
            from,
            Outgoing::SlaveRegistered(SlaveRegisteredMessage {
                slave_id: id,
                heartbeat_interval_ms: self.config.heartbeat_interval.as_millis() as u64,
            }),
        );
        self.request_allocation();
    }

    /// A known slave re-registers with its tasks (protocol 2, 3): it is re-admitted, tasks of
    /// known frameworks are kept and their state sent to the framework, tasks of unknown or
    /// removed frameworks are killed.
    ///
    /// Every live task it reports is accounted as used, whatever they sum to (as Mesos does):
    /// a slave restarted with less than its tasks use (an operator shrank `--resources`) is
    /// re-admitted *over-committed*, with a warning, and nothing its tasks use is offered until
    /// enough of them end. Launches of this master it does not report and that are still
    /// staging are kept (and sent again) only as far as its report leaves room for them in its
    /// resources; the others are dropped (TASK_DROPPED, and a kill to the slave in case the
    /// launch still reaches it), so that what runs beyond a slave's total is only ever what
    /// the slave itself reported.
    pub fn handle_reregister_slave(
        &mut self,
        now: Duration,
        from: &Upid,
        msg: ReregisterSlaveMessage,
    ) {
        let id = msg.slave_id.clone();
        if let Err(e) = check_slave_info(&msg.slave) {
            tracing::warn!(slave = %id, %from, error = %e, "refusing slave re-registration");
            self.counters.dropped_messages += 1;
            return;
        }
        if self.maintenance.is_down(&msg.slave.hostname, &from.host) {
            tracing::info!(slave = %id, %from, "refusing slave re-registration: its machine is DOWN for maintenance");
            self.counters.slave_registrations_refused_down += 1;
            return;
        }
        // Refused before anything changes if the allocator has no room for what it reports.
        let known_frameworks = self
            .slaves
            .get(&id)
            .into_iter()
            .flat_map(|s| s.tasks.iter().map(|(f, _)| f));
        let reported_frameworks = msg
            .tasks
            .iter()
            .take(SLAVE_TASKS_MAX)
            .filter(|t| !t.state.is_terminal())
            .map(|t| &t.framework_id);
        if let Err(e) = self
            .allocator
            .check_room_for_slave(&id, known_frameworks.chain(reported_frameworks))
        {
            tracing::warn!(slave = %id, %from, error = %e, "refusing slave re-registration");
            self.counters.dropped_messages += 1;
            return;
        }
        // Out of the allocator first: it is re-added below with what its tasks use.
        if let Some(slave) = self.slaves.get(&id) {
            let offers: Vec<OfferId> = slave.offers.iter().cloned().collect();
            let in_allocator = slave.is_in_allocator();
            let old_pid = slave.pid.clone();
            for offer in offers {
                self.rescind_offer(now, &offer, false);
            }
            if in_allocator {
                self.allocator
                    .remove_slave(&id)
                    .expect("a connected slave is in the allocator");
            }
            if let Some(old) = old_pid.filter(|p| p != from) {
                self.slave_by_pid.remove(&old);
                self.actions.push(Action::Unlink(old));
            }
        }
        // Another slave registered at this address before is gone (the address was reused).
        if let Some(other) = self.slave_by_pid.get(from).cloned().filter(|o| *o != id) {
            self.remove_slave(
                now,
                &other,
                Reason::SlaveRestarted,
                "another slave registered at its address",
            );
        }

        let mut reported: BTreeMap<(FrameworkId, TaskId), SlaveTask> = BTreeMap::new();
        for task in msg.tasks.into_iter().take(SLAVE_TASKS_MAX) {
            reported.insert((task.framework_id.clone(), task.task.task_id.clone()), task);
        }

        // Tasks the master had on this slave that it no longer reports are gone, except those
        // still staging: their RunTask may be on its way (delayed, or a resend), and a slave
        // that gets it after this would run a task its framework was told is gone. They stay
        // staging (if the slave has room for them, decided below), and their RunTask is sent
        // again at the next tick (the slave ignores a RunTask for a task it already has).
        let previous: Vec<(FrameworkId, TaskId)> = self
            .slaves
            .get(&id)
            .map(|s| s.tasks.iter().cloned().collect())
            .unwrap_or_default();
        let mut staging: Vec<(FrameworkId, TaskId)> = Vec::new();
        for key in previous {
            if reported.contains_key(&key) {
                continue;
            }
            let Some(task) = self.tasks.get_mut(&key) else {
                continue;
            };
            if task.state == TaskState::Staging && self.staging.contains_key(&key) {
                staging.push(key);
                continue;
            }
            let status = TaskStatus {
                task_id: key.1.clone(),
                state: TaskState::Gone,
                message: Some("the slave re-registered without this task".into()),
                source: StatusSource::Master,
                reason: Some(Reason::SlaveRestarted),
                slave_id: Some(id.clone()),
                healthy: None,
                timestamp: self.wall_origin_secs + now.as_secs_f64(),
                uuid: None,
            };
            task.push_status(status.clone());
            // Not in the allocator any more: nothing to recover.
            self.tasks.remove(&key);
            if let Some(slave) = self.slaves.get_mut(&id) {
                slave.tasks.remove(&key);
            }
            if let Some(f) = self.frameworks.get_mut(&key.0) {
                f.tasks.remove(&key.1);
            }
            self.count_terminal(TaskState::Gone);
            self.send_status(&key.0, status);
        }

        // Decide, per reported task, whether to keep it; count what live ones use, task by
        // task (the allocator keeps a port two tasks claim held until both end).
        let mut shutdown: BTreeSet<FrameworkId> = BTreeSet::new();
        let mut kept: Vec<((FrameworkId, TaskId), SlaveTask)> = Vec::new();
        let mut terminal: Vec<((FrameworkId, TaskId), TaskState, TaskInfo)> = Vec::new();
        let mut used: Vec<(FrameworkId, Resources)> = Vec::new();
        for (key, task) in reported {
            let known = self.frameworks.contains_key(&key.0);
            if !known {
                shutdown.insert(key.0.clone());
            }
            if task.state.is_terminal() {
                // Its terminal update is still to be acknowledged; the slave resends it and
                // the master forwards it. Out of the active books now (its resources are not
                // counted as used below).
                terminal.push((key, task.state, task.task.clone()));
                continue;
            }
            used.push((key.0.clone(), task.task.resources.clone()));
            // Tasks of unknown frameworks are tracked as orphans until they end, so that
            // their resources are not offered while they are being killed.
            kept.push((key, task));
        }
        for (key, state, info) in terminal {
            let known_before = self.tasks.contains_key(&key);
            if !known_before {
                // Ended while this master did not know it (it restarted since): kept among
                // the completed tasks, so that reconciliation answers its terminal state.
                if let Some(f) = self.frameworks.get_mut(&key.0) {
                    if !f.completed_tasks.iter().any(|t| t.info.task_id == key.1) {
                        if f.completed_tasks.len() >= COMPLETED_TASKS_PER_FRAMEWORK_MAX {
                            f.completed_tasks.pop_front();
                        }
                        f.completed_tasks.push_back(Box::new(Task {
                            info,
                            framework_id: key.0.clone(),
                            slave_id: id.clone(),
                            state,
                            statuses: VecDeque::new(),
                            reported_by_slave: true,
                        }));
                    }
                }
                continue;
            }
            if let Some(mut task) = self.tasks.remove(&key) {
                if !task.state.is_terminal() {
                    self.count_terminal(state);
                }
                task.state = state;
                if let Some(slave) = self.slaves.get_mut(&task.slave_id) {
                    slave.tasks.remove(&key);
                }
                if let Some(f) = self.frameworks.get_mut(&key.0) {
                    f.tasks.remove(&key.1);
                    if f.completed_tasks.len() >= COMPLETED_TASKS_PER_FRAMEWORK_MAX {
                        f.completed_tasks.pop_front();
                    }
                    f.completed_tasks.push_back(task);
                }
            }
        }

        // The reported tasks are used whatever they sum to. What they leave of the slave's
        // resources is all that launches of this master may use: the staging ones that fit
        // in it are kept, in key order; the others are dropped.
        let total = &msg.slave.resources;
        let reported_used = Resources::sum(used.iter().map(|(_, r)| r));
        let overcommitted = !total.contains(&reported_used)
            || reported_used.ports().len() < used.iter().map(|(_, r)| r.ports().len()).sum();
        let mut room = unused_part(total, &reported_used);
        let mut still_staging: Vec<(FrameworkId, TaskId)> = Vec::new();
        let mut dropped: Vec<(FrameworkId, TaskId)> = Vec::new();
        for key in staging {
            let resources = &self.tasks[&key].info.resources;
            match room.checked_sub(resources) {
                Some(rest) => {
                    room = rest;
                    used.push((key.0.clone(), resources.clone()));
                    self.staging.get_mut(&key).expect("checked above").due = now;
                    still_staging.push(key);
                }
                None => dropped.push(key),
            }
        }
        for key in &dropped {
            let status = self.master_status(
                now,
                &key.1,
                TaskState::Dropped,
                Reason::SlaveRestarted,
                format!(
                    "slave {id} re-registered with resources its reported tasks leave no room in \
                     for this launch"
                ),
                Some(id.clone()),
            );
            tracing::info!(task = %key.1, slave = %id, "staging task dropped: its slave re-registered without room for it");
            let mut task = self.tasks.remove(key).expect("staging task is known");
            task.push_status(status.clone());
            self.staging.remove(key);
            if let Some(slave) = self.slaves.get_mut(&id) {
                slave.tasks.remove(key);
            }
            if let Some(f) = self.frameworks.get_mut(&key.0) {
                f.tasks.remove(&key.1);
                if f.completed_tasks.len() >= COMPLETED_TASKS_PER_FRAMEWORK_MAX {
                    f.completed_tasks.pop_front();
                }
                f.completed_tasks.push_back(task);
            }
            self.count_terminal(TaskState::Dropped);
            self.counters.staging_tasks_dropped += 1;
            self.send_status(&key.0, status);
        }
        if overcommitted {
            tracing::warn!(
                slave = %id,
                used = %reported_used,
                total = %total,
                "slave re-registered over-committed: the tasks it reports use more than its \
                 resources; they are accounted as used, and nothing they use is offered until \
                 enough of them end"
            );
            self.counters.slave_reregistrations_overcommitted += 1;
        }
        self.allocator
            .add_slave(id.clone(), msg.slave.resources.clone(), used)
            .expect("the allocator's room was checked above and the slave taken out");
        debug_assert_eq!(self.allocator.is_overcommitted(&id), overcommitted);

        self.persist(RegistryOp::AdmitSlave(RegisteredSlave {
            id: id.clone(),
            info: msg.slave.clone(),
            unreachable: false,
            pid: Some(from.clone()),
        }));
        let wall = self.wall_secs(now);
        let slave = self.slaves.entry(id.clone()).or_insert_with(|| Slave {
            id: id.clone(),
            info: msg.slave.clone(),
            pid: None,
            status: SlaveStatus::Recovered,
            last_heard: now,
            registered_time: Some(wall),
            reregistered_time: None,
            unreachable_time: None,
            tasks: BTreeSet::new(),
            offers: BTreeSet::new(),
        });
        slave.info = msg.slave;
        slave.pid = Some(from.clone());
        slave.status = SlaveStatus::Connected;
        slave.last_heard = now;
        slave.registered_time.get_or_insert(wall);
        slave.reregistered_time = Some(wall);
        slave.unreachable_time = None;
        slave.tasks.clear();
        slave.tasks.extend(still_staging);
        self.slave_by_pid.insert(from.clone(), id.clone());
        self.counters.slave_reregistrations += 1;
        tracing::info!(slave_id = %id, %from, hostname = %self.slaves[&id].info.hostname, tasks = kept.len(), "slave re-registered");

        for (key, reported) in kept {
            let mut status = TaskStatus {
                task_id: key.1.clone(),
                state: reported.state,
                message: Some("the slave re-registered with this task".into()),
                source: StatusSource::Master,
                reason: Some(Reason::Reconciliation),
                slave_id: Some(id.clone()),
                healthy: None,
                timestamp: wall,
                uuid: None,
            };
            let task = self.tasks.entry(key.clone()).or_insert_with(|| {
                Box::new(Task {
                    info: reported.task.clone(),
                    framework_id: key.0.clone(),
                    slave_id: id.clone(),
                    state: reported.state,
                    statuses: VecDeque::new(),
                    reported_by_slave: true,
                })
            });
            if let Some(last) = task.statuses.back() {
                status.healthy = last.healthy;
            }
            let moved_from = (task.slave_id != id).then(|| task.slave_id.clone());
            task.info = reported.task;
            task.slave_id = id.clone();
            task.reported_by_slave = true;
            task.push_status(status.clone());
            if let Some(old) = moved_from.and_then(|old| self.slaves.get_mut(&old)) {
                old.tasks.remove(&key);
            }
            self.slaves
                .get_mut(&id)
                .expect("inserted above")
                .tasks
                .insert(key.clone());
            if let Some(f) = self.frameworks.get_mut(&key.0) {
                f.tasks.insert(key.1.clone());
            }
            self.send_status(&key.0, status);
        }

        self.actions.push(Action::Link(from.clone()));
        self.send(
            from,
            Outgoing::SlaveReregistered(SlaveReregisteredMessage {
                slave_id: id,
                heartbeat_interval_ms: self.config.heartbeat_interval.as_millis() as u64,
            }),
        );
        for framework_id in shutdown {
            self.send(
                from,
                Outgoing::ShutdownFramework(ShutdownFrameworkMessage { framework_id }),
            );
        }
        // The slave does not report these launches: if one still reaches it, it is refused
        // (a kill of a task the slave does not have is remembered) or killed.
        for (framework_id, task_id) in dropped {
            self.send(
                from,
                Outgoing::KillTask(KillTaskMessage {
                    framework_id,
                    task_id,
                    fencing_epoch: None,
                }),
            );
        }
        self.request_allocation();
    }

    /// A slave is alive (protocol 2). One from a slave the master does not consider connected
    /// is answered with a request to re-register.
    pub fn handle_slave_heartbeat(
        &mut self,
        now: Duration,
        from: &Upid,
        msg: SlaveHeartbeatMessage,
    ) {
        match self.slaves.get_mut(&msg.slave_id) {
            Some(slave)
                if slave.status == SlaveStatus::Connected && slave.pid.as_ref() == Some(from) =>
            {
                slave.last_heard = now;
            }
            other => {
                if let Some(slave) = other {
                    if slave.status == SlaveStatus::Disconnected && slave.pid.as_ref() == Some(from)
                    {
                        slave.last_heard = now;
                    }
                }
                self.send(
                    from,
                    Outgoing::ReregisterRequest(ReregisterRequestMessage {
                        slave_id: msg.slave_id,
                    }),
                );
            }
        }
    }

    /// A slave leaves for good: its tasks are gone, it leaves the registry.
    pub fn handle_unregister_slave(
        &mut self,
        now: Duration,
        from: &Upid,
        msg: UnregisterSlaveMessage,
    ) {
        let ok = self
            .slaves
            .get(&msg.slave_id)
            .is_some_and(|s| s.pid.as_ref() == Some(from));
        if !ok {
            self.counters.dropped_messages += 1;
            return;
        }
        self.remove_slave(now, &msg.slave_id, Reason::SlaveRemoved, "the slave left");
    }

    /// Forgets a slave: its tasks go TASK_GONE, its offers are rescinded, it leaves the
    /// allocator and the registry, frameworks are told.
    fn remove_slave(&mut self, now: Duration, id: &SlaveId, reason: Reason, why: &str) {
        self.remove_slave_as(now, id, TaskState::Gone, reason, why);
    }

    /// [`Self::remove_slave`], its tasks ending in `state`.
    fn remove_slave_as(
        &mut self,
        now: Duration,
        id: &SlaveId,
        state: TaskState,
        reason: Reason,
        why: &str,
    ) {
        let Some(slave) = self.slaves.get(id) else {
            return;
        };
        let offers: Vec<OfferId> = slave.offers.iter().cloned().collect();
        let in_allocator = slave.is_in_allocator();
        for offer in offers {
            self.rescind_offer(now, &offer, false);
        }
        if in_allocator {
            self.allocator
                .remove_slave(id)
                .expect("a connected slave is in the allocator");
        }
        let slave = self.slaves.remove(id).expect("checked above");
        if let Some(pid) = &slave.pid {
            self.slave_by_pid.remove(pid);
            self.actions.push(Action::Unlink(pid.clone()));
        }
        for key in &slave.tasks {
            if let Some(mut task) = self.tasks.remove(key) {
                let status = self.master_status(
                    now,
                    &key.1,
                    state,
                    reason,
                    format!("slave {id} was removed: {why}"),
                    Some(id.clone()),
                );
                task.push_status(status.clone());
                self.count_terminal(state);
                if let Some(f) = self.frameworks.get_mut(&key.0) {
                    f.tasks.remove(&key.1);
                    if f.completed_tasks.len() >= COMPLETED_TASKS_PER_FRAMEWORK_MAX {
                        f.completed_tasks.pop_front();
                    }
                    f.completed_tasks.push_back(task);
                }
                self.send_status(&key.0, status);
            }
        }
        self.persist(RegistryOp::RemoveSlave(id.clone()));
        self.counters.slave_removals += 1;
        tracing::info!(slave_id = %id, hostname = %slave.info.hostname, reason = reason.as_str(), why, tasks = slave.tasks.len(), "slave removed");
        self.tell_frameworks_slave_lost(id);
    }

    fn tell_frameworks_slave_lost(&mut self, id: &SlaveId) {
        let pids: Vec<Upid> = self
            .frameworks
            .values()
            .filter(|f| f.status == FrameworkStatus::Active)
            .filter_map(|f| f.pid.clone())
            .collect();
        for pid in pids {
            self.send(
                &pid,
                Outgoing::LostSlave(LostSlaveMessage {
                    slave_id: id.clone(),
                }),
            );
        }
    }

    /// Marks a silent slave unreachable (protocol 2).
    fn mark_unreachable(&mut self, now: Duration, id: &SlaveId) {
        let slave = self.slaves.get(id).expect("caller checked");
        debug_assert!(slave.is_in_allocator());
        let offers: Vec<OfferId> = slave.offers.iter().cloned().collect();
        let tasks: Vec<(FrameworkId, TaskId)> = slave.tasks.iter().cloned().collect();
        let pid = slave.pid.clone();
        for offer in offers {
            self.rescind_offer(now, &offer, false);
        }
        self.allocator
            .remove_slave(id)
            .expect("a connected slave is in the allocator");
        let wall = self.wall_secs(now);
        {
            let slave = self.slaves.get_mut(id).expect("caller checked");
            slave.status = SlaveStatus::Unreachable;
            slave.unreachable_time = Some(wall);
        }
        if let Some(pid) = pid {
            self.actions.push(Action::Unlink(pid));
        }
        for key in tasks {
            let Some(task) = self.tasks.get(&key) else {
                continue;
            };
            if task.state.is_terminal() {
                continue;
            }
            let mut status = self.master_status(
                now,
                &key.1,
                TaskState::Unreachable,
                Reason::SlaveDisconnected,
                format!("slave {id} is unreachable"),
                Some(id.clone()),
            );
            status.healthy = task.statuses.back().and_then(|s| s.healthy);
            self.tasks
                .get_mut(&key)
                .expect("present")
                .push_status(status.clone());
            self.send_status(&key.0, status);
        }
        self.persist(RegistryOp::MarkSlaveUnreachable(id.clone()));
        self.counters.slave_unreachable_completed += 1;
        self.tell_frameworks_slave_lost(id);
    }

    /// A slave recovered from the registry that did not re-register within the agent
    /// re-registration timeout: marked unreachable in the registry, frameworks told. It has no
    /// tasks or offers at the master, and is not in the allocator; if it comes back, its
    /// heartbeat is answered with a re-registration request as for any unreachable slave.
    fn mark_recovered_unreachable(&mut self, now: Duration, id: &SlaveId) {
        let wall = self.wall_secs(now);
        let slave = self.slaves.get_mut(id).expect("caller checked");
        debug_assert_eq!(slave.status, SlaveStatus::Recovered);
        slave.status = SlaveStatus::Unreachable;
        slave.unreachable_time = Some(wall);
        self.persist(RegistryOp::MarkSlaveUnreachable(id.clone()));
        self.counters.slave_unreachable_completed += 1;
        self.counters.slaves_reregister_timed_out += 1;
        self.tell_frameworks_slave_lost(id);
    }

    /// Sends the RunTaskMessage again for tasks still TASK_STAGING past their resend deadline
    /// (see [`MasterConfig::run_task_resend_timeout`]): the first may have been lost. The
    /// slave ignores a RunTask for a task it already has, and its status updates (retried
    /// until acknowledged) end the resends, so resending is safe. Only while the slave is
    /// connected: a disconnected slave re-registers and reports its tasks, which settles them
    /// (those it does not report but are still staging are resent at once).
    /// O(tasks not confirmed yet).
    fn resend_unconfirmed_run_tasks(&mut self, now: Duration) {
        if self.staging.is_empty() {
            return;
        }
        let mut due: Vec<(FrameworkId, TaskId)> = Vec::new();
        let tasks = &self.tasks;
        self.staging.retain(|key, entry| {
            let staging = tasks
                .get(key)
                .is_some_and(|t| t.state == TaskState::Staging);
            if staging && entry.due <= now {
                due.push(key.clone());
            }
            staging
        });
        for key in due {
            let task = &self.tasks[&key];
            let slave_pid = self
                .slaves
                .get(&task.slave_id)
                .filter(|s| s.status == SlaveStatus::Connected)
                .and_then(|s| s.pid.clone());
            let framework = self
                .frameworks
                .get(&key.0)
                .and_then(|f| Some((f.pid.clone()?, f.info.clone())));
            let entry = self.staging.get_mut(&key).expect("kept above");
            match (slave_pid, framework) {
                (Some(slave_pid), Some((framework_pid, framework))) => {
                    entry.interval = (entry.interval * 2).min(RUN_TASK_RESEND_INTERVAL_MAX);
                    entry.due = now + entry.interval;
                    let message = RunTaskMessage {
                        framework_id: key.0.clone(),
                        framework,
                        framework_pid,
                        task: task.info.clone(),
                    };
                    tracing::info!(task = %key.1, slave = %task.slave_id, "task not confirmed by its slave: RunTask sent again");
                    self.counters.run_task_resends += 1;
                    self.send(&slave_pid, Outgoing::RunTask(Box::new(message)));
                }
                _ => entry.due = now + entry.interval,
            }
        }
    }

    /// Rescinds offers outstanding longer than the offer timeout, recovering their resources
    /// (Mesos `--offer_timeout`). Amortized O(1) per offer: the queue is in creation order.
    fn expire_offers(&mut self, now: Duration) {
        if self.config.offer_timeout.is_none() {
            return;
        }
        while let Some((due, _)) = self.offer_expiry.front() {
            if *due > now {
                break;
            }
            let (_, id) = self.offer_expiry.pop_front().expect("peeked");
            if self.offers.contains_key(&id) {
                tracing::info!(offer_id = %id, "offer timed out: rescinded");
                self.counters.offers_expired += 1;
                self.rescind_offer(now, &id, true);
            }
        }
    }

    /// Periodic check (every [`MasterConfig::tick_interval`]): slaves silent for the agent
    /// timeout become unreachable (an O(slaves) scan), as do slaves recovered from the
    /// registry that did not re-register within the agent re-registration timeout; tasks not
    /// confirmed by their slave get their RunTask sent again; offers past the offer timeout
    /// are rescinded; disconnected frameworks past their failover deadline are removed.
    pub fn handle_tick(&mut self, now: Duration) {
        let timeout = self.config.agent_timeout;
        // Slaves recovered from the registry get the re-registration timeout counted from the
        // master's first tick (Mesos `--agent_reregister_timeout`).
        let reregister_deadline = *self
            .recovered_slaves_deadline
            .get_or_insert(now + self.config.agent_reregister_timeout);
        let mut silent: Vec<SlaveId> = Vec::new();
        let mut not_back: Vec<SlaveId> = Vec::new();
        for s in self.slaves.values() {
            if s.is_in_allocator() && now.saturating_sub(s.last_heard) >= timeout {
                silent.push(s.id.clone());
            } else if s.status == SlaveStatus::Recovered && now >= reregister_deadline {
                not_back.push(s.id.clone());
            }
        }
        for id in silent {
            tracing::info!(slave_id = %id, "slave unreachable: nothing heard for the agent timeout");
            self.mark_unreachable(now, &id);
        }
        for id in not_back {
            tracing::info!(slave_id = %id, "recovered slave unreachable: it did not re-register in time");
            self.mark_recovered_unreachable(now, &id);
        }
        self.resend_unconfirmed_run_tasks(now);
        self.expire_offers(now);
        // Frameworks recovered from the registry after a master restart get their failover
        // timeout counted from the master's first tick: a framework that never comes back is
        // removed (and its tasks killed) as if it had disconnected at the restart.
        for f in self.frameworks.values_mut() {
            if f.status == FrameworkStatus::Recovered && f.failover_deadline.is_none() {
                f.failover_deadline = Some(now + failover_timeout(&f.info));
            }
        }
        let expired: Vec<FrameworkId> = self
            .frameworks
            .values()
            .filter(|f| f.failover_deadline.is_some_and(|d| d <= now))
            .map(|f| f.id.clone())
            .collect();
        for id in expired {
            tracing::info!(framework_id = %id, "framework failover timeout expired");
            self.remove_framework(now, &id);
        }
    }

    /// A linked process may be gone: a scheduler (the framework is deactivated, its failover
    /// timer starts) or a slave (its offers are rescinded and it is asked to re-register at
    /// its next heartbeat).
    pub fn handle_exited(&mut self, now: Duration, upid: &Upid) {
        if let Some(id) = self.framework_by_pid.get(upid).cloned() {
            self.deactivate_framework(now, &id);
        }
        if let Some(id) = self.slave_by_pid.get(upid).cloned() {
            let slave = self.slaves.get_mut(&id).expect("indexed");
            if slave.status == SlaveStatus::Connected {
                slave.status = SlaveStatus::Disconnected;
                let offers: Vec<OfferId> = slave.offers.iter().cloned().collect();
                self.allocator
                    .deactivate_slave(&id)
                    .expect("a connected slave is in the allocator");
                for offer in offers {
                    self.rescind_offer(now, &offer, true);
                }
            }
        }
    }

    // ----- status updates ------------------------------------------------------------------

    /// A status update from a slave (protocol 4): recorded and forwarded to the framework with
    /// `slave_pid` set. Updates from slaves that are not connected are dropped (the slave
    /// retries after re-registering).
    pub fn handle_status_update(&mut self, now: Duration, from: &Upid, msg: StatusUpdateMessage) {
        let Some(slave_id) = self.slave_by_pid.get(from).cloned() else {
            self.counters.dropped_messages += 1;
            tracing::debug!(%from, "status update from an unknown slave dropped");
            return;
        };
        let slave = &self.slaves[&slave_id];
        if !slave.is_in_allocator() {
            self.counters.dropped_messages += 1;
            return;
        }
        if msg.status.slave_id.as_ref().is_some_and(|s| *s != slave_id) {
            self.counters.dropped_messages += 1;
            tracing::warn!(%from, "status update names another slave; dropped");
            return;
        }
        self.slaves.get_mut(&slave_id).expect("present").last_heard = now;
        let key = (msg.framework_id.clone(), msg.status.task_id.clone());
        let mut status = msg.status;
        status.slave_id = Some(slave_id.clone());
        let mut finished = false;
        if let Some(task) = self.tasks.get_mut(&key) {
            if task.slave_id == slave_id {
                let was_terminal = task.state.is_terminal();
                task.push_status(status.clone());
                if status.state != TaskState::Staging && !self.staging.is_empty() {
                    // The slave has the task: no more resends.
                    self.staging.remove(&key);
                }
                if status.state.is_terminal() {
                    finished = true;
                    if !was_terminal {
                        *self
                            .counters
                            .tasks_terminal
                            .entry(status.state)
                            .or_default() += 1;
                    }
                }
            }
        }
        if finished {
            self.finish_task(now, &key);
        }
        let pid = self
            .frameworks
            .get(&key.0)
            .filter(|f| f.status == FrameworkStatus::Active)
            .and_then(|f| f.pid.clone());
        if let Some(pid) = pid {
            self.send(
                &pid,
                Outgoing::StatusUpdate(StatusUpdateMessage {
                    framework_id: key.0,
                    status,
                    slave_pid: Some(from.clone()),
                }),
            );
        }
    }

    /// The pid of a slave that is admitted and reachable (in the allocator), if any.
    fn reachable_slave_pid(&self, slave_id: &SlaveId) -> Option<Upid> {
        self.slaves
            .get(slave_id)
            .filter(|s| s.is_in_allocator())
            .and_then(|s| s.pid.clone())
    }

    /// A framework acknowledged an update: forwarded to the slave (protocol 4).
    pub fn handle_status_update_acknowledgement(
        &mut self,
        _now: Duration,
        from: &Upid,
        msg: StatusUpdateAcknowledgementMessage,
    ) {
        if !self.framework_of(&msg.framework_id, from, "acknowledgement") {
            return;
        }
        let pid = self.reachable_slave_pid(&msg.slave_id);
        match pid {
            Some(pid) => self.send(&pid, Outgoing::StatusUpdateAcknowledgement(msg)),
            None => {
                // The slave resends the update after it re-registers; the framework acks again.
                self.counters.dropped_messages += 1;
            }
        }
    }

    // ----- frameworks ----------------------------------------------------------------------

    /// A scheduler registers a new framework (protocol 8): persisted, then told its id.
    pub fn handle_register_framework(
        &mut self,
        now: Duration,
        from: &Upid,
        msg: RegisterFrameworkMessage,
    ) {
        if let Some(id) = self.framework_by_pid.get(from).cloned() {
            let f = &self.frameworks[&id];
            if f.status == FrameworkStatus::Active && f.info.name == msg.framework.name {
                // A retry of a registration already done.
                self.send(
                    from,
                    Outgoing::FrameworkRegistered(FrameworkRegisteredMessage {
                        framework_id: id,
                        master: self.upid.clone(),
                    }),
                );
                return;
            }
        }
        if let Err(message) = self.check_framework(&msg.framework) {
            tracing::info!(%from, name = %msg.framework.name, %message, "framework registration refused");
            self.counters.dropped_messages += 1;
            self.send(
                from,
                Outgoing::FrameworkError(FrameworkErrorMessage { message }),
            );
            return;
        }
        let id = FrameworkId::new(format!("{}-{:04}", self.run_id, self.next_framework_number));
        if let Err(e) = self
            .allocator
            .add_framework(id.clone(), &msg.framework.role)
        {
            self.counters.dropped_messages += 1;
            self.send(
                from,
                Outgoing::FrameworkError(FrameworkErrorMessage {
                    message: format!("framework refused: {e}"),
                }),
            );
            return;
        }
        self.next_framework_number += 1;
        self.persist(RegistryOp::SetNextFrameworkNumber(
            self.next_framework_number,
        ));
        let mut info = msg.framework;
        info.id = Some(id.clone());
        self.persist(RegistryOp::PutFramework(RegisteredFramework {
            id: id.clone(),
            info: info.clone(),
            pid: Some(from.clone()),
        }));
        self.frameworks.insert(
            id.clone(),
            Framework {
                id: id.clone(),
                info,
                pid: Some(from.clone()),
                status: FrameworkStatus::Active,
                failover_deadline: None,
                registered_time: Some(self.wall_secs(now)),
                reregistered_time: None,
                unregistered_time: None,
                tasks: BTreeSet::new(),
                offers: BTreeSet::new(),
                completed_tasks: VecDeque::new(),
                in_allocator: true,
                suppressed: false,
            },
        );
        self.framework_by_pid.insert(from.clone(), id.clone());
        self.actions.push(Action::Link(from.clone()));
        let info = &self.frameworks[&id].info;
        tracing::info!(framework_id = %id, %from, name = %info.name, role = %info.role, "framework registered");
        self.send(
            from,
            Outgoing::FrameworkRegistered(FrameworkRegisteredMessage {
                framework_id: id,
                master: self.upid.clone(),
            }),
        );
        self.request_allocation();
    }

    /// A scheduler re-registers an existing framework (failover, lost link, master restart).
    pub fn handle_reregister_framework(
        &mut self,
        now: Duration,
        from: &Upid,
        msg: ReregisterFrameworkMessage,
    ) {
        let Some(id) = msg.framework.id.clone() else {
            self.send(
                from,
                Outgoing::FrameworkError(FrameworkErrorMessage {
                    message: "re-registration without a framework id".into(),
                }),
            );
            return;
        };
        if let Err(message) = self.check_framework(&msg.framework) {
            self.counters.dropped_messages += 1;
            self.send(
                from,
                Outgoing::FrameworkError(FrameworkErrorMessage { message }),
            );
            return;
        }
        if self.completed_frameworks.iter().any(|f| f.id == id) {
            self.send(
                from,
                Outgoing::FrameworkError(FrameworkErrorMessage {
                    message: format!("framework {id} was removed"),
                }),
            );
            return;
        }
        let wall = self.wall_secs(now);
        let mut info = msg.framework;
        let known = self.frameworks.contains_key(&id);
        if known {
            let f = self.frameworks.get(&id).expect("known");
            if f.info.role != info.role {
                // The allocator has no role change; Mesos needs MULTI_ROLE for it too.
                info.role = f.info.role.clone();
            }
        }
        if !known {
            // Unknown to this master (a registry lost or never written): admit it anew.
            if let Err(e) = self.allocator.add_framework(id.clone(), &info.role) {
                self.send(
                    from,
                    Outgoing::FrameworkError(FrameworkErrorMessage {
                        message: format!("framework refused: {e}"),
                    }),
                );
                return;
            }
            self.frameworks.insert(
                id.clone(),
                Framework {
                    id: id.clone(),
                    info: info.clone(),
                    pid: None,
                    status: FrameworkStatus::Active,
                    failover_deadline: None,
                    registered_time: Some(wall),
                    reregistered_time: None,
                    unregistered_time: None,
                    tasks: BTreeSet::new(),
                    offers: BTreeSet::new(),
                    completed_tasks: VecDeque::new(),
                    in_allocator: true,
                    suppressed: false,
                },
            );
            // Tasks of this framework reported by slaves before it came back are its own.
            let orphans: Vec<TaskId> = self
                .tasks
                .keys()
                .filter(|(f, _)| *f == id)
                .map(|(_, t)| t.clone())
                .collect();
            self.frameworks
                .get_mut(&id)
                .expect("inserted")
                .tasks
                .extend(orphans);
        }
        let f = self.frameworks.get(&id).expect("known or inserted");
        let (old_pid, status, in_allocator) = (f.pid.clone(), f.status, f.in_allocator);
        if !in_allocator {
            if let Err(e) = self.allocator.add_framework(id.clone(), &info.role) {
                self.send(
                    from,
                    Outgoing::FrameworkError(FrameworkErrorMessage {
                        message: format!("framework refused: {e}"),
                    }),
                );
                return;
            }
        } else if status != FrameworkStatus::Active {
            self.allocator
                .activate_framework(&id)
                .expect("framework in allocator");
        }
        if let Some(old) = old_pid.filter(|p| p != from) {
            // The offers made to the old scheduler (it may have died a moment ago: its exit
            // is not seen once its pid is unlinked) go back to the allocator, to be offered
            // again — to the new scheduler too. Left alone they would hold their resources
            // for good, with no offer timeout (Mesos' `failoverFramework` does the same).
            let offers: Vec<OfferId> = self.frameworks[&id].offers.iter().cloned().collect();
            for offer in offers {
                self.rescind_offer(now, &offer, true);
            }
            self.framework_by_pid.remove(&old);
            self.actions.push(Action::Unlink(old.clone()));
            tracing::info!(framework_id = %id, %from, previous = %old, "framework failed over to a new scheduler");
            if status == FrameworkStatus::Active {
                self.send(
                    &old,
                    Outgoing::FrameworkError(FrameworkErrorMessage {
                        message: "framework failed over to another scheduler".into(),
                    }),
                );
            }
        }
        info.id = Some(id.clone());
        self.persist(RegistryOp::PutFramework(RegisteredFramework {
            id: id.clone(),
            info: info.clone(),
            pid: Some(from.clone()),
        }));
        let f = self.frameworks.get_mut(&id).expect("known or inserted");
        f.info = info;
        f.pid = Some(from.clone());
        f.status = FrameworkStatus::Active;
        f.failover_deadline = None;
        f.in_allocator = true;
        f.registered_time.get_or_insert(wall);
        f.reregistered_time = Some(wall);
        let suppressed = f.suppressed;
        if suppressed {
            let _ = self.allocator.suppress(&id);
        }
        self.framework_by_pid.insert(from.clone(), id.clone());
        self.actions.push(Action::Link(from.clone()));
        tracing::info!(framework_id = %id, %from, name = %self.frameworks[&id].info.name, known, "framework re-registered");
        self.send(
            from,
            Outgoing::FrameworkReregistered(FrameworkReregisteredMessage {
                framework_id: id,
                master: self.upid.clone(),
            }),
        );
        self.request_allocation();
    }

    /// The scheduler is done: the framework is removed at once.
    pub fn handle_unregister_framework(
        &mut self,
        now: Duration,
        from: &Upid,
        msg: UnregisterFrameworkMessage,
    ) {
        if !self.framework_of(&msg.framework_id, from, "unregister") {
            return;
        }
        self.remove_framework(now, &msg.framework_id);
    }

    /// An operator tears a framework down (Mesos' `/master/teardown`): its scheduler is told,
    /// its tasks are killed and it is removed, as when it unregisters itself. `principal` (the
    /// operator's, `None` without credentials) must be allowed `teardown_frameworks` on the
    /// framework's principal. An unknown id is judged as a framework whose principal nobody
    /// names, so that a principal allowed only some frameworks learns nothing of the others:
    /// it is refused as any of theirs would be.
    pub fn teardown_framework(
        &mut self,
        now: Duration,
        principal: Option<&str>,
        id: &FrameworkId,
    ) -> Result<(), TeardownRefused> {
        let framework_principal = self.frameworks.get(id).map(|f| f.info.principal.clone());
        let allowed = match &framework_principal {
            Some(Some(p)) => self.config.acls.can_teardown_framework(principal, p),
            Some(None) | None => self.config.acls.is_allowed(
                principal,
                plateau_security::Action::TeardownFrameworks,
                None,
            ),
        };
        if !allowed {
            tracing::info!(target: "audit", framework = %id, principal = principal.unwrap_or("-"), "teardown refused by the ACLs");
            return Err(TeardownRefused::Unauthorized);
        }
        if framework_principal.is_none() {
            return Err(TeardownRefused::Unknown);
        }
        let pid = self.frameworks.get(id).and_then(|f| f.pid.clone());
        if let Some(pid) = pid {
            self.send(
                &pid,
                Outgoing::FrameworkError(FrameworkErrorMessage {
                    message: "Framework removed by an operator (teardown)".to_string(),
                }),
            );
        }
        tracing::info!(framework = %id, principal = principal.unwrap_or("-"), "framework torn down by an operator");
        self.remove_framework(now, id);
        Ok(())
    }

    fn deactivate_framework(&mut self, now: Duration, id: &FrameworkId) {
        let Some(f) = self.frameworks.get_mut(id) else {
            return;
        };
        if f.status != FrameworkStatus::Active {
            return;
        }
        f.status = FrameworkStatus::Disconnected;
        let timeout = failover_timeout(&f.info);
        tracing::info!(framework_id = %id, failover_timeout_s = timeout.as_secs_f64(), "framework disconnected: removed unless it re-registers within its failover timeout");
        f.failover_deadline = Some(now + timeout);
        let offers: Vec<OfferId> = f.offers.iter().cloned().collect();
        if f.in_allocator {
            self.allocator
                .deactivate_framework(id)
                .expect("framework in allocator");
        }
        for offer in offers {
            self.rescind_offer(now, &offer, true);
        }
        // Its inverse offers went to a scheduler that is gone: the next one is asked again.
        for ((_, framework), entry) in self.inverse_offers.iter_mut() {
            if framework == id {
                entry.outstanding = false;
                entry.ask_again_at = now;
            }
        }
        if timeout.is_zero() {
            self.remove_framework(now, id);
        }
    }

    /// Removes a framework: offers rescinded, tasks killed (ShutdownFrameworkMessage to their
    /// slaves), resources recovered, registry updated.
    fn remove_framework(&mut self, now: Duration, id: &FrameworkId) {
        let Some(f) = self.frameworks.get(id) else {
            return;
        };
        tracing::info!(framework_id = %id, name = %f.info.name, tasks = f.tasks.len(), "framework removed: its tasks are killed");
        let offers: Vec<OfferId> = f.offers.iter().cloned().collect();
        let in_allocator = f.in_allocator;
        for offer in offers {
            // The allocator forgets the framework's allocations below.
            self.rescind_offer(now, &offer, !in_allocator);
        }
        let mut f = self.frameworks.remove(id).expect("checked above");
        let mut slaves_to_tell: BTreeSet<SlaveId> = BTreeSet::new();
        for task_id in std::mem::take(&mut f.tasks) {
            let key = (id.clone(), task_id);
            let Some(mut task) = self.tasks.remove(&key) else {
                continue;
            };
            let slave_in_allocator = match self.slaves.get_mut(&task.slave_id) {
                Some(slave) => {
                    slave.tasks.remove(&key);
                    slave.is_in_allocator()
                }
                None => false,
            };
            if slave_in_allocator {
                slaves_to_tell.insert(task.slave_id.clone());
                if !in_allocator && !task.state.is_terminal() {
                    let resources = task.info.resources.clone();
                    self.recover(now, id, &task.slave_id, &resources, None);
                }
            }
            let status = self.master_status(
                now,
                &key.1,
                TaskState::Killed,
                Reason::FrameworkRemoved,
                format!("framework {id} was removed"),
                Some(task.slave_id.clone()),
            );
            task.push_status(status);
            self.count_terminal(TaskState::Killed);
            if f.completed_tasks.len() >= COMPLETED_TASKS_PER_FRAMEWORK_MAX {
                f.completed_tasks.pop_front();
            }
            f.completed_tasks.push_back(task);
        }
        if in_allocator {
            self.allocator.remove_framework(id);
            self.request_allocation();
        }
        for slave_id in slaves_to_tell {
            if let Some(pid) = self.slaves[&slave_id].pid.clone() {
                self.send(
                    &pid,
                    Outgoing::ShutdownFramework(ShutdownFrameworkMessage {
                        framework_id: id.clone(),
                    }),
                );
            }
        }
        if let Some(pid) = f.pid.take() {
            self.framework_by_pid.remove(&pid);
            self.actions.push(Action::Unlink(pid));
        }
        self.persist(RegistryOp::RemoveFramework(id.clone()));
        f.unregistered_time = Some(self.wall_secs(now));
        f.failover_deadline = None;
        f.in_allocator = false;
        if self.completed_frameworks.len() >= COMPLETED_FRAMEWORKS_MAX {
            self.completed_frameworks.pop_front();
        }
        self.completed_frameworks.push_back(f);
    }

    /// The framework wants no offers until revived.
    pub fn handle_suppress_offers(
        &mut self,
        _now: Duration,
        from: &Upid,
        msg: SuppressOffersMessage,
    ) {
        if !self.framework_of(&msg.framework_id, from, "suppress") {
            return;
        }
        self.frameworks
            .get_mut(&msg.framework_id)
            .expect("checked")
            .suppressed = true;
        self.allocator
            .suppress(&msg.framework_id)
            .expect("framework in allocator");
    }

    /// The framework wants offers again; its filters are cleared.
    pub fn handle_revive_offers(&mut self, _now: Duration, from: &Upid, msg: ReviveOffersMessage) {
        if !self.framework_of(&msg.framework_id, from, "revive") {
            return;
        }
        self.frameworks
            .get_mut(&msg.framework_id)
            .expect("checked")
            .suppressed = false;
        self.allocator
            .revive(&msg.framework_id)
            .expect("framework in allocator");
        self.request_allocation();
    }

    // ----- maintenance ---------------------------------------------------------------------

    /// `POST /master/maintenance/schedule`: replaces the schedule. Machines new in it become
    /// DRAINING (their slaves' offers carry the window, frameworks with tasks there get inverse
    /// offers); machines left out of it are UP again. Refused, with nothing changed, when the
    /// schedule is invalid (see [`MaintenanceState::with_schedule`]).
    pub fn handle_update_maintenance_schedule(
        &mut self,
        now: Duration,
        windows: Vec<Window>,
    ) -> Result<(), MaintenanceError> {
        let next = self.maintenance.with_schedule(windows)?;
        self.set_maintenance(now, next);
        Ok(())
    }

    /// `POST /master/machine/down`: the machines (each DRAINING) go DOWN. Their slaves'
    /// tasks are killed (a kill to each connected slave) and end TASK_GONE_BY_OPERATOR for
    /// their frameworks; the slaves are removed and cannot register until the machine is UP.
    pub fn handle_machines_down(
        &mut self,
        now: Duration,
        machines: Vec<MachineId>,
    ) -> Result<(), MaintenanceError> {
        let next = self.maintenance.with_down(&machines)?;
        self.set_maintenance(now, next);
        let doomed: Vec<SlaveId> = self
            .slaves
            .values()
            .filter(|s| {
                machines
                    .iter()
                    .any(|m| m.matches(&s.info.hostname, Self::slave_ip(s)))
            })
            .map(|s| s.id.clone())
            .collect();
        for id in doomed {
            let slave = &self.slaves[&id];
            let pid = slave
                .pid
                .clone()
                .filter(|_| slave.status == SlaveStatus::Connected);
            let tasks: Vec<(FrameworkId, TaskId)> = slave.tasks.iter().cloned().collect();
            if let Some(pid) = pid {
                for (framework_id, task_id) in tasks {
                    self.send(
                        &pid,
                        Outgoing::KillTask(KillTaskMessage {
                            framework_id,
                            task_id,
                            fencing_epoch: None,
                        }),
                    );
                }
            }
            tracing::info!(slave = %id, "slave removed: its machine is DOWN for maintenance");
            self.remove_slave_as(
                now,
                &id,
                TaskState::GoneByOperator,
                Reason::SlaveRemoved,
                "its machine was taken down for maintenance",
            );
        }
        Ok(())
    }

    /// `POST /master/machine/up`: the machines (each DOWN) leave the schedule; their slaves
    /// may register again.
    pub fn handle_machines_up(
        &mut self,
        now: Duration,
        machines: Vec<MachineId>,
    ) -> Result<(), MaintenanceError> {
        let next = self.maintenance.with_up(&machines)?;
        self.set_maintenance(now, next);
        Ok(())
    }

    /// Persists `next`; the outstanding offers of slaves whose unavailability changed are
    /// rescinded (their next offers carry the new one); inverse offers follow.
    fn set_maintenance(&mut self, now: Duration, next: MaintenanceState) {
        let before: BTreeMap<SlaveId, Option<crate::maintenance::Unavailability>> = self
            .slaves
            .values()
            .map(|s| (s.id.clone(), self.slave_maintenance(s).map(|(_, u, _)| u)))
            .collect();
        self.maintenance = next.clone();
        self.persist(RegistryOp::SetMaintenance(next));
        let changed: Vec<SlaveId> = self
            .slaves
            .values()
            .filter(|s| {
                before.get(&s.id).copied().flatten() != self.slave_maintenance(s).map(|(_, u, _)| u)
            })
            .map(|s| s.id.clone())
            .collect();
        for id in changed {
            let offers: Vec<OfferId> = self.slaves[&id].offers.iter().cloned().collect();
            for offer in offers {
                self.rescind_offer(now, &offer, true);
            }
        }
        self.send_inverse_offers(now);
    }

    /// Keeps the inverse offers in line with the schedule: entries of slaves no longer
    /// connected on a DRAINING machine, or of frameworks gone, are dropped; an outstanding
    /// inverse offer of a framework that no longer runs anything on its slave is rescinded
    /// (its last answer is kept for `/master/maintenance/status`); then one is sent to each
    /// active framework with tasks on such a slave that has none outstanding and is not
    /// waiting to be asked again. O(slaves + tasks on draining slaves).
    fn send_inverse_offers(&mut self, now: Duration) {
        if self.maintenance.windows.is_empty() && self.inverse_offers.is_empty() {
            return;
        }
        let mut draining: BTreeMap<SlaveId, crate::maintenance::Unavailability> = BTreeMap::new();
        let mut wanted: BTreeMap<(SlaveId, FrameworkId), crate::maintenance::Unavailability> =
            BTreeMap::new();
        for slave in self.slaves.values() {
            let Some((_, unavailability, MachineMode::Draining)) = self.slave_maintenance(slave)
            else {
                continue;
            };
            if slave.status != SlaveStatus::Connected {
                continue;
            }
            draining.insert(slave.id.clone(), unavailability);
            for key in &slave.tasks {
                let live = self.tasks.get(key).is_some_and(|t| !t.state.is_terminal());
                let active = self
                    .frameworks
                    .get(&key.0)
                    .is_some_and(|f| f.status == FrameworkStatus::Active && f.pid.is_some());
                if live && active {
                    wanted.insert((slave.id.clone(), key.0.clone()), unavailability);
                }
            }
        }
        let mut rescinds: Vec<(FrameworkId, OfferId)> = Vec::new();
        let frameworks = &self.frameworks;
        self.inverse_offers
            .retain(|(slave_id, framework_id), entry| {
                let keep = draining.contains_key(slave_id) && frameworks.contains_key(framework_id);
                if entry.outstanding
                    && (!keep || !wanted.contains_key(&(slave_id.clone(), framework_id.clone())))
                {
                    rescinds.push((framework_id.clone(), entry.id.clone()));
                    entry.outstanding = false;
                }
                keep
            });
        for (framework_id, inverse_offer_id) in rescinds {
            if let Some(pid) = self
                .frameworks
                .get(&framework_id)
                .and_then(|f| f.pid.clone())
            {
                self.send(
                    &pid,
                    Outgoing::RescindInverseOffer(RescindInverseOfferMessage { inverse_offer_id }),
                );
            }
        }
        let mut by_framework: BTreeMap<FrameworkId, Vec<InverseOffer>> = BTreeMap::new();
        for ((slave_id, framework_id), unavailability) in wanted {
            let key = (slave_id, framework_id);
            let status = match self.inverse_offers.get(&key) {
                Some(e) if e.outstanding || e.ask_again_at > now => continue,
                Some(e) => e.status,
                None => InverseOfferStatus::Unknown,
            };
            let id = OfferId::new(format!(
                "{}-IO{}",
                self.run_id, self.next_inverse_offer_number
            ));
            self.next_inverse_offer_number += 1;
            self.inverse_offers.insert(
                key.clone(),
                InverseOfferEntry {
                    id: id.clone(),
                    outstanding: true,
                    status,
                    ask_again_at: now,
                },
            );
            let (slave_id, framework_id) = key;
            let hostname = self.slaves[&slave_id].info.hostname.clone();
            by_framework
                .entry(framework_id.clone())
                .or_default()
                .push(InverseOffer {
                    id,
                    framework_id,
                    slave_id,
                    hostname,
                    unavailability,
                });
        }
        for (framework_id, inverse_offers) in by_framework {
            let pid = self.frameworks[&framework_id]
                .pid
                .clone()
                .expect("checked above");
            self.counters.inverse_offers_sent += inverse_offers.len() as u64;
            self.send(
                &pid,
                Outgoing::InverseOffers(InverseOffersMessage { inverse_offers }),
            );
        }
    }

    /// A framework accepts or declines inverse offers: its answer is recorded (shown in
    /// `/master/maintenance/status`), and it is asked again after `refuse_seconds` while the
    /// machine still drains. Ids no longer valid are ignored.
    pub fn handle_respond_inverse_offers(
        &mut self,
        now: Duration,
        from: &Upid,
        msg: RespondInverseOffersMessage,
    ) {
        if !self.framework_of(&msg.framework_id, from, "respond to inverse offers") {
            return;
        }
        let refuse = refuse_duration(&msg.filters, self.config.default_refuse);
        let status = if msg.accept {
            InverseOfferStatus::Accept
        } else {
            InverseOfferStatus::Decline
        };
        let answered: BTreeSet<&OfferId> = msg
            .inverse_offer_ids
            .iter()
            .take(OFFERS_PER_DECLINE_MAX)
            .collect();
        for ((_, framework_id), entry) in self.inverse_offers.iter_mut() {
            if *framework_id == msg.framework_id
                && entry.outstanding
                && answered.contains(&entry.id)
            {
                entry.outstanding = false;
                entry.status = status;
                entry.ask_again_at = now + refuse;
            }
        }
    }

    // ----- offers and launches -------------------------------------------------------------

    /// Runs one allocation round over every slave (the periodic one): each allocation
    /// becomes an offer; one `ResourceOffersMessage` per framework.
    pub fn handle_allocation(&mut self, now: Duration) {
        self.allocation_pending = false;
        self.counters.allocation_runs += 1;
        let allocations = self.allocator.allocate(now);
        self.make_offers(now, allocations);
        self.send_inverse_offers(now);
    }

    /// Runs the batched round asked for with [`Action::AllocateAfter`]: only slaves whose
    /// resources came back since the last round are visited (all of them when demand grew),
    /// so a round costs O(changes), not O(slaves) — Mesos batches event-triggered allocations
    /// the same way. What it leaves (resources nobody took) waits for the periodic round.
    pub fn handle_batched_allocation(&mut self, now: Duration) {
        self.allocation_pending = false;
        self.counters.allocation_runs += 1;
        let allocations = self.allocator.allocate_changed(now);
        self.make_offers(now, allocations);
    }

    fn make_offers(&mut self, now: Duration, allocations: Vec<crate::allocator::Allocation>) {
        let mut by_framework: BTreeMap<FrameworkId, Vec<Offer>> = BTreeMap::new();
        for allocation in allocations {
            let slave = &self.slaves[&allocation.slave];
            let unavailability = self
                .slave_maintenance(slave)
                .map(|(_, unavailability, _)| unavailability);
            let framework_ok = self
                .frameworks
                .get(&allocation.framework)
                .is_some_and(|f| f.status == FrameworkStatus::Active && f.pid.is_some());
            if !framework_ok || self.offers.len() >= OFFERS_MAX {
                // Cannot happen for an active framework; give the resources back.
                let _ = self.allocator.recover_resources(
                    &allocation.framework,
                    &allocation.slave,
                    &allocation.resources,
                    None,
                    now,
                );
                continue;
            }
            let id = OfferId::new(format!("{}-O{}", self.run_id, self.next_offer_number));
            self.next_offer_number += 1;
            let offer = Offer {
                id: id.clone(),
                framework_id: allocation.framework.clone(),
                slave_id: allocation.slave.clone(),
                hostname: slave.info.hostname.clone(),
                resources: allocation.resources,
                attributes: slave.info.attributes.clone(),
                unavailability,
            };
            self.slaves
                .get_mut(&allocation.slave)
                .expect("allocated slave is known")
                .offers
                .insert(id.clone());
            self.frameworks
                .get_mut(&allocation.framework)
                .expect("checked")
                .offers
                .insert(id.clone());
            if let Some(timeout) = self.config.offer_timeout {
                self.offer_expiry.push_back((now + timeout, id.clone()));
            }
            self.offers.insert(
                id,
                OfferEntry {
                    offer: offer.clone(),
                },
            );
            by_framework
                .entry(allocation.framework)
                .or_default()
                .push(offer);
        }
        // Entries of offers used or declined long before their expiry would pile up with a
        // long timeout: keep the queue within a constant factor of the outstanding offers.
        if self.offer_expiry.len() > 2 * self.offers.len() + 1024 {
            let offers = &self.offers;
            self.offer_expiry.retain(|(_, id)| offers.contains_key(id));
        }
        for (framework, offers) in by_framework {
            let pid = self.frameworks[&framework]
                .pid
                .clone()
                .expect("checked above");
            self.counters.offers_sent += offers.len() as u64;
            self.send(
                &pid,
                Outgoing::ResourceOffers(ResourceOffersMessage { offers }),
            );
        }
    }

    /// Offers declined, on any slaves: each still valid offer of this framework goes back to
    /// the allocator filtered for `refuse_seconds`. Ids no longer valid are ignored (the offer
    /// was rescinded, or this is a duplicate).
    pub fn handle_decline_offers(&mut self, now: Duration, from: &Upid, msg: DeclineOffersMessage) {
        let framework_id = msg.framework_id;
        if !self.framework_of(&framework_id, from, "decline") {
            return;
        }
        let refuse = refuse_duration(&msg.filters, self.config.default_refuse);
        for offer_id in msg.offer_ids.iter().take(OFFERS_PER_DECLINE_MAX) {
            let mine = self
                .offers
                .get(offer_id)
                .is_some_and(|e| e.offer.framework_id == framework_id);
            if !mine {
                continue;
            }
            let offer = self.take_offer(offer_id).expect("present");
            self.counters.offers_declined += 1;
            self.recover(
                now,
                &framework_id,
                &offer.slave_id,
                &offer.resources,
                Some(refuse),
            );
        }
    }

    /// A framework uses offers (protocol 5): validates the offers and each task; valid tasks
    /// go TASK_STAGING to the slave, invalid ones get TASK_ERROR; the rest of the offers goes
    /// back to the allocator with the refuse filter. No tasks = a decline.
    pub fn handle_launch_tasks(&mut self, now: Duration, from: &Upid, msg: LaunchTasksMessage) {
        let framework_id = msg.framework_id.clone();
        if !self.framework_of(&framework_id, from, "launch") {
            return;
        }
        let refuse = refuse_duration(&msg.filters, self.config.default_refuse);

        // Offers: each must exist, be this framework's, and all be on one slave.
        let mut problem: Option<String> = None;
        let mut slave_id: Option<SlaveId> = None;
        let mut seen = BTreeSet::new();
        if msg.offer_ids.len() > OFFERS_PER_LAUNCH_MAX {
            problem = Some(format!(
                "too many offers: {} (maximum {OFFERS_PER_LAUNCH_MAX})",
                msg.offer_ids.len()
            ));
        } else if msg.offer_ids.is_empty() && !msg.tasks.is_empty() {
            problem = Some("no offers given".into());
        }
        for offer_id in msg.offer_ids.iter().take(OFFERS_PER_LAUNCH_MAX) {
            if !seen.insert(offer_id.clone()) {
                problem.get_or_insert(format!("offer {offer_id} is used twice"));
                continue;
            }
            match self.offers.get(offer_id) {
                None => {
                    problem.get_or_insert(format!("offer {offer_id} is no longer valid"));
                }
                Some(entry) if entry.offer.framework_id != framework_id => {
                    problem.get_or_insert(format!("offer {offer_id} belongs to another framework"));
                }
                Some(entry) => match &slave_id {
                    None => slave_id = Some(entry.offer.slave_id.clone()),
                    Some(s) if *s != entry.offer.slave_id => {
                        problem.get_or_insert(format!(
                            "offers are on different slaves ({s} and {})",
                            entry.offer.slave_id
                        ));
                    }
                    Some(_) => {}
                },
            }
        }
        // A launch naming only offers that are gone may be a copy of one already carried out
        // (the network duplicated it, or the scheduler retried): see below.
        let offers_all_gone = msg.offer_ids.iter().all(|o| !self.offers.contains_key(o));
        // Take this framework's valid offers out; their resources are either used or recovered.
        let mut offered_by_slave: BTreeMap<SlaveId, Resources> = BTreeMap::new();
        for offer_id in seen {
            let mine = self
                .offers
                .get(&offer_id)
                .is_some_and(|e| e.offer.framework_id == framework_id);
            if mine {
                let offer = self.take_offer(&offer_id).expect("present");
                *offered_by_slave.entry(offer.slave_id).or_default() += &offer.resources;
            }
        }
        if msg.tasks.len() > TASKS_PER_LAUNCH_MAX {
            problem.get_or_insert(format!(
                "too many tasks in one launch: {} (maximum {TASKS_PER_LAUNCH_MAX})",
                msg.tasks.len()
            ));
        }
        if let Some(problem) = problem {
            for task in msg.tasks.iter().take(TASKS_PER_LAUNCH_MAX) {
                if offers_all_gone && self.is_launched(&framework_id, task) {
                    // A duplicate of a launch already accepted: the task lives (or lived) as
                    // launched, and a TASK_ERROR would contradict its real state.
                    self.counters.duplicate_launch_tasks += 1;
                    tracing::debug!(task = %task.task_id, "duplicate launch of a task ignored");
                    continue;
                }
                self.task_error(now, &framework_id, task, Reason::InvalidOffers, &problem);
            }
            for (slave, resources) in offered_by_slave {
                self.recover(now, &framework_id, &slave, &resources, Some(refuse));
            }
            return;
        }
        let Some(slave_id) = slave_id else {
            return; // no offers and no tasks: nothing to do
        };
        let offered = offered_by_slave.remove(&slave_id).unwrap_or_default();
        debug_assert!(offered_by_slave.is_empty());
        if msg.tasks.is_empty() {
            // A decline: everything goes back, filtered.
            self.counters.offers_declined += msg.offer_ids.len() as u64;
            self.recover(now, &framework_id, &slave_id, &offered, Some(refuse));
            return;
        }
        self.counters.offers_accepted += msg.offer_ids.len() as u64;

        let (slave_pid, framework_info) = {
            let slave = &self.slaves[&slave_id];
            let f = &self.frameworks[&framework_id];
            (
                slave.pid.clone().expect("an offered slave is connected"),
                f.info.clone(),
            )
        };
        let mut used = Resources::empty();
        let mut ids_in_launch: BTreeSet<TaskId> = BTreeSet::new();
        for task in msg.tasks {
            let key = (framework_id.clone(), task.task_id.clone());
            let invalid = if task.task_id.as_str().is_empty() {
                Some((Reason::TaskInvalid, "the task id is empty".to_string()))
            } else if self.tasks.contains_key(&key) || ids_in_launch.contains(&task.task_id) {
                Some((
                    Reason::TaskInvalid,
                    format!("task id {} is already in use", task.task_id),
                ))
            } else if task.slave_id != slave_id {
                Some((
                    Reason::TaskInvalid,
                    format!(
                        "task is for slave {} but the offers are on slave {slave_id}",
                        task.slave_id
                    ),
                ))
            } else if task.command.value.trim().is_empty() {
                Some((
                    Reason::TaskInvalid,
                    "the command value is empty".to_string(),
                ))
            } else if task.resources.is_empty() {
                Some((Reason::TaskInvalid, "the task has no resources".to_string()))
            } else if let Err(problem) = check_task_numbers(&task) {
                Some((Reason::TaskInvalid, problem))
            } else if let Err(problem) = run_as_allowed(&self.config.acls, &framework_info, &task) {
                Some((Reason::TaskUnauthorized, problem))
            } else if self.tasks.len() >= TASKS_MAX {
                Some((
                    Reason::TaskInvalid,
                    format!("the master tracks the maximum of {TASKS_MAX} tasks"),
                ))
            } else {
                let wanted = used.clone() + &task.resources;
                let overlap = !used.ports().is_disjoint(task.resources.ports());
                if overlap || !offered.contains(&wanted) {
                    Some((
                        Reason::ResourcesUnknown,
                        format!(
                            "task resources {} are not contained in what is left of the offers ({})",
                            task.resources,
                            offered
                                .checked_sub(&used)
                                .map(|r| r.to_string())
                                .unwrap_or_default()
                        ),
                    ))
                } else {
                    used = wanted;
                    None
                }
            };
            if let Some((reason, problem)) = invalid {
                self.task_error(now, &framework_id, &task, reason, &problem);
                continue;
            }
            ids_in_launch.insert(task.task_id.clone());
            let status = TaskStatus {
                task_id: task.task_id.clone(),
                state: TaskState::Staging,
                message: None,
                source: StatusSource::Master,
                reason: None,
                slave_id: Some(slave_id.clone()),
                healthy: None,
                timestamp: self.wall_secs(now),
                uuid: None,
            };
            let mut entry = Task {
                info: task.clone(),
                framework_id: framework_id.clone(),
                slave_id: slave_id.clone(),
                state: TaskState::Staging,
                statuses: VecDeque::new(),
                reported_by_slave: false,
            };
            entry.push_status(status);
            self.tasks.insert(key.clone(), Box::new(entry));
            let resend = self.config.run_task_resend_timeout;
            if !resend.is_zero() {
                self.staging.insert(
                    key.clone(),
                    StagingResend {
                        due: now + resend,
                        interval: resend,
                    },
                );
            }
            self.slaves
                .get_mut(&slave_id)
                .expect("present")
                .tasks
                .insert(key.clone());
            self.frameworks
                .get_mut(&framework_id)
                .expect("present")
                .tasks
                .insert(key.1);
            self.send(
                &slave_pid,
                Outgoing::RunTask(Box::new(RunTaskMessage {
                    framework_id: framework_id.clone(),
                    framework: framework_info.clone(),
                    framework_pid: from.clone(),
                    task,
                })),
            );
        }
        let rest = offered
            .checked_sub(&used)
            .expect("used is contained in offered");
        self.recover(now, &framework_id, &slave_id, &rest, Some(refuse));
    }

    /// True when `task`, exactly as given, was launched by `framework` before: it is active,
    /// or among the framework's latest completed tasks.
    fn is_launched(&self, framework: &FrameworkId, task: &TaskInfo) -> bool {
        let key = (framework.clone(), task.task_id.clone());
        if let Some(known) = self.tasks.get(&key) {
            return known.info == *task;
        }
        self.frameworks.get(framework).is_some_and(|f| {
            f.completed_tasks
                .iter()
                .rev()
                .any(|t| t.info.task_id == task.task_id && t.info == *task)
        })
    }

    fn task_error(
        &mut self,
        now: Duration,
        framework_id: &FrameworkId,
        task: &TaskInfo,
        reason: Reason,
        problem: &str,
    ) {
        tracing::info!(%framework_id, task_id = %task.task_id, slave_id = %task.slave_id, reason = reason.as_str(), %problem, "task launch refused");
        let status = self.master_status(
            now,
            &task.task_id,
            TaskState::Error,
            reason,
            format!("task {} is invalid: {problem}", task.task_id),
            Some(task.slave_id.clone()),
        );
        self.count_terminal(TaskState::Error);
        self.send_status(framework_id, status);
    }

    /// Kill a task (protocol 6): forwarded to its slave; an unknown task is answered with
    /// TASK_UNKNOWN.
    pub fn handle_kill_task(&mut self, now: Duration, from: &Upid, msg: KillTaskMessage) {
        if !self.framework_of(&msg.framework_id, from, "kill") {
            return;
        }
        let key = (msg.framework_id.clone(), msg.task_id.clone());
        let Some(task) = self.tasks.get(&key) else {
            let status = self.master_status(
                now,
                &msg.task_id,
                TaskState::Unknown,
                Reason::TaskUnknown,
                format!("task {} is unknown to the master", msg.task_id),
                None,
            );
            self.send_status(&msg.framework_id, status);
            return;
        };
        let pid = self.reachable_slave_pid(&task.slave_id);
        match pid {
            Some(pid) => self.send(&pid, Outgoing::KillTask(msg)),
            None => {
                // Its slave is unreachable: the framework retries once it is back.
                tracing::info!(task = %msg.task_id, "kill of a task on an unreachable slave deferred to the framework");
            }
        }
    }

    /// Reconciliation (protocol 7): explicit (the tasks named) or implicit (all the
    /// framework's tasks), answered with the latest states, reason Reconciliation, no uuid.
    pub fn handle_reconcile_tasks(
        &mut self,
        now: Duration,
        from: &Upid,
        msg: ReconcileTasksMessage,
    ) {
        if !self.framework_of(&msg.framework_id, from, "reconcile") {
            return;
        }
        let framework_id = msg.framework_id;
        let mut statuses = Vec::new();
        if msg.tasks.is_empty() {
            // The framework's tasks are one run of the task map, keyed by framework first: a
            // range walk, not a search per task.
            let start = (framework_id.clone(), TaskId::default());
            for (_, task) in self
                .tasks
                .range(start..)
                .take_while(|((f, _), _)| *f == framework_id)
            {
                statuses.push(self.reconcile_status(now, task));
            }
        } else {
            for (task_id, slave_hint) in msg.tasks.into_iter().take(RECONCILE_TASKS_MAX) {
                let key = (framework_id.clone(), task_id.clone());
                // A task that ended is still known: its terminal state, not "unknown" (which a
                // framework reads as "the launch never arrived" and may launch it again, while
                // the terminal update itself may still be on its way, unacknowledged).
                let completed = || {
                    self.frameworks.get(&framework_id).and_then(|f| {
                        f.completed_tasks
                            .iter()
                            .rev()
                            .find(|t| t.info.task_id == task_id)
                    })
                };
                let status = match self.tasks.get(&key).or_else(completed) {
                    Some(task) => self.reconcile_status(now, task),
                    None => {
                        let hint = slave_hint.as_ref().and_then(|s| self.slaves.get(s));
                        // As Mesos: a task on a slave known from the registry but not
                        // re-registered yet gets no answer (the framework asks again); the
                        // slave reports its tasks when it re-registers. "Unknown" now would
                        // read as "the launch never arrived" while the task may run or have
                        // ended with its terminal update still unacknowledged.
                        if hint.is_some_and(|s| s.status == SlaveStatus::Recovered) {
                            continue;
                        }
                        let hint_unreachable =
                            hint.is_some_and(|s| s.status == SlaveStatus::Unreachable);
                        let state = if hint_unreachable {
                            TaskState::Unreachable
                        } else {
                            TaskState::Unknown
                        };
                        self.master_status(
                            now,
                            &task_id,
                            state,
                            Reason::Reconciliation,
                            "reconciliation".into(),
                            slave_hint,
                        )
                    }
                };
                statuses.push(status);
            }
        }
        for status in statuses {
            self.send_status(&framework_id, status);
        }
    }

    fn reconcile_status(&self, now: Duration, task: &Task) -> TaskStatus {
        let unreachable = self
            .slaves
            .get(&task.slave_id)
            .is_none_or(|s| s.status == SlaveStatus::Unreachable);
        let state = if unreachable && !task.state.is_terminal() {
            TaskState::Unreachable
        } else {
            task.state
        };
        let mut status = self.master_status(
            now,
            &task.info.task_id,
            state,
            Reason::Reconciliation,
            "reconciliation".into(),
            Some(task.slave_id.clone()),
        );
        status.healthy = task.statuses.back().and_then(|s| s.healthy);
        status
    }

    /// Checks the books (for tests and the simulator): every task is on its slave's and its
    /// framework's list, every offer on its slave's and framework's, and the allocator's
    /// invariants hold. For every slave in the allocator, with `T` its total, `R` what its
    /// live tasks reported at its latest re-registration use, `L` what the live tasks this
    /// master launched since use, and `O` its outstanding offers, where "what `U` leaves of
    /// `T`" is, per scalar, `T - U` (zero where `U` is more) and the ports of `T` not in `U`:
    /// - the master never offers resources in use: `O` is within what `R + L` leaves of `T`;
    /// - usage above a slave's total only ever comes from what the slave itself reported,
    ///   never from a launch the master made: `L + O` is within what `R` leaves of `T`, and no
    ///   port is in two of these launches and offers.
    ///
    /// `R` alone may exceed `T` (a slave restarted with less than its tasks use).
    pub fn check_invariants(&self) -> Result<(), String> {
        // One pass over the tasks in key order. A slave's and a framework's lists are in the
        // same order, so each is walked alongside (a step, not a search, per task); a slave's
        // entry also gathers what its live tasks use.
        struct SlaveWalk<'a> {
            listed:
                std::iter::Peekable<std::collections::btree_set::Iter<'a, (FrameworkId, TaskId)>>,
            /// Live tasks its slave reported at its latest re-registration.
            reported: Vec<&'a Resources>,
            /// Live tasks this master launched since.
            launched: Vec<&'a Resources>,
        }
        // Only looked up (each task finds its slave's walk), so hashed: a search of the
        // slaves' B-tree per task was most of this check.
        let mut slaves: LookupMap<&SlaveId, SlaveWalk<'_>> = self
            .slaves
            .iter()
            .map(|(id, slave)| {
                let walk = SlaveWalk {
                    listed: slave.tasks.iter().peekable(),
                    reported: Vec::new(),
                    launched: Vec::new(),
                };
                (id, walk)
            })
            .collect();
        // The framework of the current run of tasks (tasks are sorted by framework first).
        type FrameworkWalk<'a> = std::iter::Peekable<std::collections::btree_set::Iter<'a, TaskId>>;
        let mut framework: Option<(&FrameworkId, Option<FrameworkWalk<'_>>)> = None;
        for (key, task) in &self.tasks {
            let walk = slaves
                .get_mut(&task.slave_id)
                .ok_or_else(|| format!("task {key:?} on unknown slave"))?;
            while walk.listed.next_if(|listed| *listed < key).is_some() {}
            if walk.listed.next_if(|listed| *listed == key).is_none() {
                return Err(format!("task {key:?} missing from its slave"));
            }
            if !task.state.is_terminal() {
                if task.reported_by_slave {
                    walk.reported.push(&task.info.resources);
                } else {
                    walk.launched.push(&task.info.resources);
                }
            }
            if framework.as_ref().is_none_or(|(id, _)| **id != key.0) {
                let listed = self
                    .frameworks
                    .get(&key.0)
                    .map(|f| f.tasks.iter().peekable());
                framework = Some((&key.0, listed));
            }
            if let Some((_, Some(listed))) = framework.as_mut() {
                while listed.next_if(|listed| *listed < &key.1).is_some() {}
                if listed.next_if(|listed| *listed == &key.1).is_none() {
                    return Err(format!("task {key:?} missing from its framework"));
                }
            }
        }
        for (id, entry) in &self.offers {
            if !self.slaves[&entry.offer.slave_id].offers.contains(id) {
                return Err(format!("offer {id} missing from its slave"));
            }
            if !self.frameworks[&entry.offer.framework_id]
                .offers
                .contains(id)
            {
                return Err(format!("offer {id} missing from its framework"));
            }
        }
        for slave in self.slaves.values() {
            if !slave.is_in_allocator() {
                continue;
            }
            let total = self
                .allocator
                .slave_total(&slave.id)
                .ok_or_else(|| format!("slave {} not in the allocator", slave.id))?;
            let walk = &slaves[&slave.id];
            let reported = Resources::sum(walk.reported.iter().copied());
            let offers = slave.offers.iter().filter_map(|id| self.offers.get(id));
            let offers: Vec<&Resources> = offers.map(|entry| &entry.offer.resources).collect();
            let launched_and_offered =
                Resources::sum(walk.launched.iter().chain(offers.iter()).copied());
            let offered = Resources::sum(offers.iter().copied());
            let in_use = reported.clone() + &Resources::sum(walk.launched.iter().copied());
            let free = unused_part(total, &in_use);
            if !free.contains(&offered) {
                return Err(format!(
                    "slave {} offers resources in use: {offered} offered, {in_use} used of \
                     {total}",
                    slave.id
                ));
            }
            let ports_claimed: u32 = walk
                .launched
                .iter()
                .chain(offers.iter())
                .map(|r| r.ports().len())
                .sum();
            let room = unused_part(total, &reported);
            if !room.contains(&launched_and_offered)
                || ports_claimed != launched_and_offered.ports().len()
            {
                return Err(format!(
                    "slave {} over-committed by the master: {launched_and_offered} launched \
                     and offered beside {reported} reported in use, of {total}",
                    slave.id
                ));
            }
        }
        self.allocator.check_invariants()
    }
}

#[cfg(test)]
mod principal_tests;
#[cfg(test)]
mod tests;

#[cfg(test)]
mod fuzz;
