//! Plateau's framework SDK: write a framework as a [`Scheduler`], run it with a
//! [`SchedulerDriver`].
//!
//! A framework receives resource offers from the master and decides what to run on them. The
//! driver is a runtime process that does the talking: it finds the leading master of its list
//! (a [`MasterDetector`]; one master is the leader at once), registers with it (and
//! re-registers after a lost master, with backoff, or at once with a new leader), turns the
//! master's messages into [`Scheduler`] callbacks, and acknowledges status updates after the
//! callback returns (so an update is never lost: if the scheduler dies inside the callback, the
//! slave sends it again). The driver is pure of I/O like every process, so the same framework
//! runs on a real cluster and in the simulator.
//!
//! # Guide for framework developers
//!
//! 1. Describe the framework: [`FrameworkInfo::new`] with a name; set `role` and
//!    `failover_timeout_secs` (how long the master keeps your tasks running while your
//!    scheduler is away; 0 kills them as soon as it disconnects).
//! 2. Implement [`Scheduler`]: at least `resource_offers` (launch tasks with
//!    [`Driver::launch_tasks`], or [`Driver::decline_offer`]) and `status_update`.
//! 3. Spawn `SchedulerDriver::new(info, master_upid, your_scheduler)` on a node: a real
//!    [`plateau_runtime::Node`] with a QUIC transport, or a simulated node. With a group of
//!    masters, `SchedulerDriver::with_masters(info, Masters::parse("h1:5050,h2:5050,h3:5050")?,
//!    your_scheduler)`: the driver follows whichever leads. Protocol messages are accepted
//!    from the leader only.
//! 4. Remember what you launched: after a failover, call [`Driver::reconcile_tasks`] in
//!    `registered`/`reregistered` to learn the state of your tasks.
//!
//! The example `sdk/examples/run_tasks.rs` is a whole framework in under 100 lines: it runs N
//! short tasks and exits (`cargo run --example run_tasks -- --master 127.0.0.1:5050 ...`).
//!
//! # One leader and standbys (Marathon, Chronos)
//!
//! Run several instances of the framework against a group of masters; one leads, the others
//! stand by. The masters' coordination store elects the leader and keeps its state
//! ([`coord`] has the pieces; the driver wires them in):
//!
//! 1. **Start as a standby.** Build the driver as usual and add
//!    [`SchedulerDriver::with_leader_election`]`(LeaderConfig::new("marathon", "host:8080"))`.
//!    Set `failover_timeout_secs` well above the session ttl, so that the master keeps the
//!    tasks while the leadership moves. The driver campaigns and does **not** register with
//!    the master; [`Scheduler::leader_changed`] says where the leader is (standbys proxy their
//!    API to it; [`Driver::leader_address`] answers `/v2/leader`).
//! 2. **Elected: load, then lead.** The driver loads the state under the prefix, then calls
//!    [`Scheduler::elected`]: rebuild the in-memory model from [`Driver::state`] (its mirror of
//!    what committed). When it returns the driver registers with the master — re-registers as
//!    the framework id kept in the state, after the first leader — carrying the election's
//!    [`FencingToken`]; launches and kills carry its epoch from then on.
//! 3. **Write through the state.** Instead of a local store, [`Driver::write`] a list of
//!    [`StateOp`]s: one guarded transaction, which lands only while this leader's epoch holds.
//!    Values are limited to 256 KiB (one key per app, per task, per job).
//! 4. **Effects wait for commits, automatically.** Every call to the master made after a
//!    write (launch, kill, acknowledge, decline, reconcile, ...) is held until that write and
//!    every one before it commit, and sent in order then. Answer API requests in
//!    [`Scheduler::committed`] (keep the [`WriteId`] each one waits for). Acknowledge status
//!    updates after writing them (`acknowledges_explicitly`, or the implicit acknowledgement:
//!    both are held behind the write).
//! 5. **Deposed: stop everything.** [`Scheduler::deposed`] comes as soon as the leader can no
//!    longer be sure it leads (its lease unconfirmed for the ttl minus a margin, refused, its
//!    key gone, a write refused or lost). The driver has already dropped its held calls and
//!    stopped talking to the master; drop the leader's in-memory model and fail pending API
//!    requests. The driver campaigns again; `elected` comes again with the state reloaded.
//!
//! Safety does not rest on timing: a paused ex-leader that wakes up has its writes refused by
//! the store (stale guard) and its calls refused by the master (stale epoch).
//!
//! ```
//! use plateau_sdk::{Driver, FrameworkInfo, Offer, Scheduler, TaskStatus};
//!
//! /// Declines everything: the smallest possible framework.
//! struct Idle;
//! impl Scheduler for Idle {
//!     fn resource_offers(&mut self, driver: &mut Driver<'_, '_>, offers: Vec<Offer>) {
//!         for offer in offers {
//!             driver.decline_offer(&offer.id, Default::default());
//!         }
//!     }
//!     fn status_update(&mut self, _driver: &mut Driver<'_, '_>, _status: &TaskStatus) {}
//! }
//! let driver = plateau_sdk::SchedulerDriver::new(
//!     FrameworkInfo::new("idle"),
//!     "master@127.0.0.1:5050".parse().unwrap(),
//!     Idle,
//! );
//! # let _ = driver;
//! // The same framework following a group of three masters.
//! let group = "10.0.0.1:5050,10.0.0.2:5050,10.0.0.3:5050";
//! let masters = plateau_sdk::Masters::parse(group).unwrap();
//! let info = FrameworkInfo::new("idle");
//! let driver = plateau_sdk::SchedulerDriver::with_masters(info, masters, Idle);
//! assert_eq!(driver.state().master(), None, "not found yet");
//! ```
#![deny(missing_docs)]

pub mod coord;
mod ha;
pub mod limits;

use std::time::Duration;

use plateau_master::coord::{
    CoordResponseMessage, FencingToken, LeaseKeepAliveResponseMessage, WatchEndedMessage,
    WatchEventsMessage,
};
use plateau_master::detector::MasterDetector;
pub use plateau_master::detector::Masters;
pub use plateau_master::ids::{FrameworkId, OfferId, SlaveId, TaskId};
pub use plateau_master::messages::{
    CommandInfo, Filters, FrameworkInfo, HealthCheck, HealthCheckKind, InverseOffer,
    InverseOfferStatus, Offer, Reason, StatusSource, TaskInfo, TaskState, TaskStatus,
    Unavailability,
};
use plateau_master::messages::{
    DeclineOffersMessage, FrameworkErrorMessage, FrameworkRegisteredMessage,
    FrameworkReregisteredMessage, InverseOffersMessage, KillTaskMessage, LaunchTasksMessage,
    LeaderQueryMessage, LostSlaveMessage, NewMasterDetectedMessage, ReconcileTasksMessage,
    RegisterFrameworkMessage, ReregisterFrameworkMessage, RescindInverseOfferMessage,
    RescindResourceOfferMessage, ResourceOffersMessage, RespondInverseOffersMessage,
    ReviveOffersMessage, StatusUpdateAcknowledgementMessage, StatusUpdateMessage,
    SuppressOffersMessage, UnregisterFrameworkMessage,
};
pub use plateau_master::resources::{Attributes, Ranges, Resources};
use plateau_runtime::{Context, Handlers, Message, Process, Role, RoleSet, TimerId, Upid};
use serde::{Deserialize, Serialize};

use coord::host::{self, CoordTimer, TimerSlot};
use coord::{
    ClientEvent, CoordClientConfig, Coordination, CoordinationEvent, ElectionConfig,
    ReplicatedState, StateError, StateOp, WriteId,
};
pub use ha::{HeldCalls, HeldCallsFull, LeaderConfig, FRAMEWORK_ID_KEY};
pub use limits::{REGISTRATION_BACKOFF_MAX, REGISTRATION_BACKOFF_MIN};

/// What a framework does. Every callback gets a [`Driver`] to act with.
pub trait Scheduler: 'static {
    /// The master registered the framework for the first time.
    fn registered(&mut self, _driver: &mut Driver<'_, '_>, _framework_id: &FrameworkId) {}
    /// The framework registered again (a new master, a lost link, a scheduler failover).
    fn reregistered(&mut self, _driver: &mut Driver<'_, '_>) {}
    /// Resources to use or decline. Unused offers keep their resources away from others.
    fn resource_offers(&mut self, driver: &mut Driver<'_, '_>, offers: Vec<Offer>);
    /// An offer is no longer valid.
    fn offer_rescinded(&mut self, _driver: &mut Driver<'_, '_>, _offer_id: &OfferId) {}
    /// Inverse offers: slaves this framework uses whose machines are scheduled for
    /// maintenance (DRAINING), with when they will be unavailable. Answer with
    /// [`Driver::accept_inverse_offers`] (the framework moves off in time) or
    /// [`Driver::decline_inverse_offers`]; unanswered, the master shows `UNKNOWN`. The default
    /// ignores them.
    fn inverse_offers(&mut self, _driver: &mut Driver<'_, '_>, _inverse_offers: Vec<InverseOffer>) {
    }
    /// An inverse offer is no longer valid: its machine is no longer draining (back UP, or
    /// DOWN), or the framework has nothing left there.
    fn inverse_offer_rescinded(&mut self, _driver: &mut Driver<'_, '_>, _id: &OfferId) {}
    /// A task's status changed. Acknowledged by the driver when this returns.
    fn status_update(&mut self, driver: &mut Driver<'_, '_>, status: &TaskStatus);
    /// A slave was lost.
    fn slave_lost(&mut self, _driver: &mut Driver<'_, '_>, _slave_id: &SlaveId) {}
    /// The driver lost its master: the link broke, or another master leads now (or none is
    /// known). It re-registers by itself.
    fn disconnected(&mut self, _driver: &mut Driver<'_, '_>) {}
    /// A process other than a master that the scheduler linked to (with
    /// `driver.ctx().link(..)`) may be gone; see [`plateau_runtime::Process::exited`].
    fn exited(&mut self, _driver: &mut Driver<'_, '_>, _upid: &Upid) {}
    /// The master refused the framework; the driver stops.
    fn error(&mut self, _driver: &mut Driver<'_, '_>, _message: &str) {}
    /// Install handlers for the framework's own messages (timers, HTTP requests posted through
    /// a mailbox). Handlers get the whole driver process; use
    /// [`SchedulerDriver::scheduler_and_driver`] to reach the scheduler with a [`Driver`].
    fn install(_handlers: &mut Handlers<SchedulerDriver<Self>>)
    where
        Self: Sized,
    {
    }
    /// Called once when the driver starts, before registering.
    fn initialize(&mut self, _driver: &mut Driver<'_, '_>) {}
    /// Leader + standbys ([`SchedulerDriver::with_leader_election`]): this instance was
    /// elected and its state is loaded ([`Driver::state`]); act as the leader from now on. The
    /// driver registers with the master when this returns, carrying `token`.
    fn elected(&mut self, _driver: &mut Driver<'_, '_>, _token: &FencingToken) {}
    /// Leader + standbys: this instance no longer leads. Stop acting at once and drop what
    /// was derived as the leader (pending API answers fail); the driver has stopped talking
    /// to the master and campaigns again ([`Scheduler::elected`] comes again with the state
    /// loaded afresh).
    fn deposed(&mut self, _driver: &mut Driver<'_, '_>, _why: &str) {}
    /// Leader + standbys: the leader changed; its advertised address (`None`: none now). For
    /// standbys that proxy to it.
    fn leader_changed(&mut self, _driver: &mut Driver<'_, '_>, _leader: Option<&str>) {}
    /// Leader + standbys: a state write ([`Driver::write`]) committed, and every one before
    /// it; the calls held for them went out before this is called. Answer the API requests
    /// that waited for it.
    fn committed(&mut self, _driver: &mut Driver<'_, '_>, _write: WriteId) {}
    /// Leader + standbys: an event of the coordination client for the scheduler's own
    /// requests and watches ([`Driver::coordination_request`]).
    fn coordination_event(&mut self, _driver: &mut Driver<'_, '_>, _event: &ClientEvent) {}
    /// True when the scheduler acknowledges status updates itself ([`Driver::acknowledge`]),
    /// e.g. once it has written a batch of them durably; the driver then does not acknowledge
    /// when [`Scheduler::status_update`] returns. Default false.
    fn acknowledges_explicitly(&self) -> bool {
        false
    }
}

/// The driver's own bookkeeping.
#[derive(Debug)]
pub struct DriverState {
    info: FrameworkInfo,
    /// Which master leads: the one registered with and listened to.
    detector: MasterDetector,
    /// The armed wake-up for the detector's next round of queries, and when it is for.
    detector_timer: Option<(TimerId, Duration)>,
    framework_id: Option<FrameworkId>,
    connected: bool,
    stopped: bool,
    backoff: Duration,
    /// A registration retry is scheduled: at most one chain of retries runs at a time.
    retry_pending: bool,
    implicit_acknowledgements: bool,
    /// Leader election and the replicated state, when run as leader + standbys.
    ha: Option<Box<Ha>>,
}

/// The driver's part of running as leader + standbys (see [`LeaderConfig`]).
#[derive(Debug)]
struct Ha {
    config: LeaderConfig,
    /// Made at initialize (its generator is seeded from the process's RNG).
    coord: Option<Coordination>,
    timer: TimerSlot,
    held: HeldCalls,
    /// The token while leading.
    token: Option<FencingToken>,
    /// The next (re-)registration is the first of this leadership: a failover.
    first_registration: bool,
    /// Inside [`SchedulerDriver::drive_coordination`].
    driving: bool,
    /// A [`CoordinationPending`] is on its way to self.
    poke_pending: bool,
}

impl DriverState {
    /// True when the driver may act: always without leader election; with it, while elected,
    /// sure of the lease and with the state loaded (`now`: the runtime clock since its origin).
    pub fn is_leading(&self, now: Duration) -> bool {
        match &self.ha {
            None => true,
            Some(ha) => ha.token.is_some() && ha.coord.as_ref().is_some_and(|c| c.is_leading(now)),
        }
    }

    /// The election token while leading.
    pub fn fencing(&self) -> Option<&FencingToken> {
        self.ha.as_ref().and_then(|ha| ha.token.as_ref())
    }

    /// The leader's advertised address, as last seen (leader + standbys).
    pub fn leader_address(&self) -> Option<String> {
        let coord = self.ha.as_ref()?.coord.as_ref()?;
        let value = coord.election().leader()?;
        Some(String::from_utf8_lossy(value).into_owned())
    }

    /// The replicated state (leader + standbys; loaded while leading).
    pub fn replicated_state(&self) -> Option<&ReplicatedState> {
        Some(self.ha.as_ref()?.coord.as_ref()?.state())
    }

    /// The coordination (leader + standbys).
    pub fn coordination(&self) -> Option<&Coordination> {
        self.ha.as_ref()?.coord.as_ref()
    }

    /// Calls to the master held until state writes commit.
    pub fn held_calls(&self) -> usize {
        self.ha.as_ref().map_or(0, |ha| ha.held.len())
    }

    /// The framework id, once registered.
    pub fn framework_id(&self) -> Option<&FrameworkId> {
        self.framework_id.as_ref()
    }

    /// True while registered with a master.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// The leading master followed (registered with, or to register with), if one is known.
    pub fn master(&self) -> Option<&Upid> {
        self.detector.leader()
    }

    /// The masters the driver may follow.
    pub fn masters(&self) -> &Masters {
        self.detector.masters()
    }
}

/// What a scheduler acts with inside a callback.
pub struct Driver<'a, 'c> {
    state: &'a mut DriverState,
    ctx: &'a mut Context<'c>,
}

/// Offers to decline, gathered while a round of offers is gone through and sent at its end:
/// one message per distinct filter instead of one per offer.
#[derive(Debug, Default)]
pub struct Declines {
    by_filter: Vec<(Filters, Vec<OfferId>)>,
}

impl Declines {
    /// Nothing to decline yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decline `offer` with `filters` when sent.
    pub fn add(&mut self, offer: OfferId, filters: Filters) {
        match self.by_filter.iter_mut().find(|(f, _)| *f == filters) {
            Some((_, ids)) => ids.push(offer),
            None => self.by_filter.push((filters, vec![offer])),
        }
    }

    /// How many offers are gathered.
    pub fn len(&self) -> usize {
        self.by_filter.iter().map(|(_, ids)| ids.len()).sum()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.by_filter.is_empty()
    }

    /// Sends the declines, in the order their filters were first used.
    pub fn send(self, driver: &mut Driver<'_, '_>) {
        for (filters, ids) in self.by_filter {
            driver.decline_offers(ids, filters);
        }
    }
}

impl<'a, 'c> Driver<'a, 'c> {
    /// The framework id, once registered.
    pub fn framework_id(&self) -> Option<&FrameworkId> {
        self.state.framework_id.as_ref()
    }

    /// True while registered with a master.
    pub fn is_connected(&self) -> bool {
        self.state.connected
    }

    /// The process context (clock, RNG, timers, sends).
    pub fn ctx(&mut self) -> &mut Context<'c> {
        self.ctx
    }

    /// Sends `msg` to the leading master; dropped (as Mesos' driver does while disconnected)
    /// when none is known. With leader election: dropped unless leading, and held while a
    /// state write made before it has not committed.
    fn send_master<M: Message>(&mut self, msg: M) {
        let now = self.ctx.now().since_origin();
        if !self.state.is_leading(now) {
            tracing::warn!(message = M::NAME, "not the leader: message dropped");
            return;
        }
        if let Some(ha) = self.state.ha.as_deref_mut() {
            let state = ha.coord.as_ref().expect("made at initialize").state();
            if state.has_uncommitted() {
                let after = state.last_write().expect("a write was made");
                if ha.held.hold(after, Box::new(msg)).is_err() {
                    tracing::warn!(
                        message = M::NAME,
                        max = limits::HELD_CALLS_MAX,
                        "too many calls wait for state writes: message dropped"
                    );
                }
                return;
            }
        }
        match self.state.detector.leader() {
            Some(master) => self.ctx.send(master, msg),
            None => tracing::warn!(
                message = M::NAME,
                "no leading master known: message dropped"
            ),
        }
    }

    fn id(&self) -> FrameworkId {
        self.state
            .framework_id
            .clone()
            .unwrap_or_else(|| FrameworkId::new(""))
    }

    /// Launch tasks on offers (all of one slave); what is left is declined with `filters`.
    pub fn launch_tasks(&mut self, offer_ids: &[OfferId], tasks: Vec<TaskInfo>, filters: Filters) {
        let msg = LaunchTasksMessage {
            framework_id: self.id(),
            offer_ids: offer_ids.to_vec(),
            tasks,
            filters,
            fencing_epoch: self.state.fencing().map(|t| t.epoch),
        };
        self.send_master(msg);
    }

    /// Launch tasks on one offer; what is left is declined with the default filters.
    pub fn launch_on(&mut self, offer: &Offer, tasks: Vec<TaskInfo>) {
        self.launch_tasks(std::slice::from_ref(&offer.id), tasks, Filters::default());
    }

    /// Decline an offer: its resources are not offered to this framework again for
    /// `filters.refuse_seconds`.
    pub fn decline_offer(&mut self, offer_id: &OfferId, filters: Filters) {
        self.decline_offers(vec![offer_id.clone()], filters);
    }

    /// Decline offers, of any slaves, in one message: their resources are not offered to this
    /// framework again for `filters.refuse_seconds`.
    pub fn decline_offers(&mut self, offer_ids: Vec<OfferId>, filters: Filters) {
        if offer_ids.is_empty() {
            return;
        }
        let msg = DeclineOffersMessage {
            framework_id: self.id(),
            offer_ids,
            filters,
        };
        self.send_master(msg);
    }

    /// Accept inverse offers: the framework will move off their slaves in time. The master
    /// asks again after `filters.refuse_seconds` while their machines still drain.
    pub fn accept_inverse_offers(&mut self, ids: Vec<OfferId>, filters: Filters) {
        self.respond_inverse_offers(ids, true, filters);
    }

    /// Decline inverse offers: the framework will not move off their slaves.
    pub fn decline_inverse_offers(&mut self, ids: Vec<OfferId>, filters: Filters) {
        self.respond_inverse_offers(ids, false, filters);
    }

    fn respond_inverse_offers(&mut self, ids: Vec<OfferId>, accept: bool, filters: Filters) {
        if ids.is_empty() {
            return;
        }
        let msg = RespondInverseOffersMessage {
            framework_id: self.id(),
            inverse_offer_ids: ids,
            accept,
            filters,
        };
        self.send_master(msg);
    }

    /// Kill a task: SIGTERM, then SIGKILL after its grace period.
    pub fn kill_task(&mut self, task_id: &TaskId) {
        let msg = KillTaskMessage {
            framework_id: self.id(),
            task_id: task_id.clone(),
            fencing_epoch: self.state.fencing().map(|t| t.epoch),
        };
        self.send_master(msg);
    }

    /// Ask for the state of tasks (empty: all of this framework's tasks). Answers arrive as
    /// status updates with reason `Reconciliation`.
    pub fn reconcile_tasks(&mut self, tasks: Vec<(TaskId, Option<SlaveId>)>) {
        let msg = ReconcileTasksMessage {
            framework_id: self.id(),
            tasks,
        };
        self.send_master(msg);
    }

    /// Acknowledge a status update (only needed with implicit acknowledgements off).
    pub fn acknowledge(&mut self, status: &TaskStatus) {
        if let (Some(uuid), Some(slave_id)) = (status.uuid, status.slave_id.clone()) {
            let msg = StatusUpdateAcknowledgementMessage {
                slave_id,
                framework_id: self.id(),
                task_id: status.task_id.clone(),
                uuid,
            };
            self.send_master(msg);
        }
    }

    /// Resume offers and clear filters.
    pub fn revive_offers(&mut self) {
        let msg = ReviveOffersMessage {
            framework_id: self.id(),
        };
        self.send_master(msg);
    }

    /// Stop offers until revived.
    pub fn suppress_offers(&mut self) {
        let msg = SuppressOffersMessage {
            framework_id: self.id(),
        };
        self.send_master(msg);
    }

    // ---- leader + standbys -------------------------------------------------------------------

    /// Writes the framework's state ([`SchedulerDriver::with_leader_election`]): one guarded
    /// transaction, committed after every write before it ([`Scheduler::committed`] tells
    /// when). From now until it commits, every call to the master waits for it. A failed
    /// write deposes the framework. `Err` when the write is not taken: not leading, not loaded,
    /// too large (see [`StateError`]).
    pub fn write(&mut self, ops: Vec<StateOp>) -> Result<WriteId, StateError> {
        let now = self.ctx.now().since_origin();
        if !self.state.is_leading(now) {
            return Err(StateError::NotLoaded);
        }
        let Some(coord) = self
            .state
            .ha
            .as_deref_mut()
            .and_then(|ha| ha.coord.as_mut())
        else {
            return Err(StateError::NotLoaded);
        };
        let write = coord.write(now, ops);
        self.flush_coordination();
        write
    }

    /// The replicated state as committed (leader + standbys; loaded while leading).
    pub fn state(&self) -> Option<&ReplicatedState> {
        self.state.replicated_state()
    }

    /// True when this instance may act (see [`DriverState::is_leading`]).
    pub fn is_leading(&self) -> bool {
        self.state.is_leading(self.ctx.now().since_origin())
    }

    /// The leader's advertised address, as last seen (leader + standbys).
    pub fn leader_address(&self) -> Option<String> {
        self.state.leader_address()
    }

    /// The election token while leading.
    pub fn fencing(&self) -> Option<&FencingToken> {
        self.state.fencing()
    }

    /// Calls to the master held until state writes commit.
    pub fn held_calls(&self) -> usize {
        self.state.held_calls()
    }

    /// Resigns the leadership (the lease is revoked: a standby takes over at once) and stops
    /// campaigning.
    pub fn resign(&mut self) {
        let now = self.ctx.now().since_origin();
        if let Some(coord) = self
            .state
            .ha
            .as_deref_mut()
            .and_then(|ha| ha.coord.as_mut())
        {
            coord.resign(now);
        }
        self.flush_coordination();
    }

    /// Sends a request of the scheduler's own to the coordination store (leader + standbys);
    /// the answer comes to [`Scheduler::coordination_event`].
    pub fn coordination_request(
        &mut self,
        op: plateau_master::coord::CoordOp,
    ) -> Result<coord::RequestId, coord::ClientError> {
        let now = self.ctx.now().since_origin();
        let Some(coord) = self
            .state
            .ha
            .as_deref_mut()
            .and_then(|ha| ha.coord.as_mut())
        else {
            return Err(coord::ClientError::Unavailable);
        };
        let request = coord.client_mut().request(now, op);
        self.flush_coordination();
        request
    }

    /// Sends what the coordination wants sent; its events are handled by the driver after
    /// the current callback (a message to self asks for it when called from the framework's
    /// own handlers).
    fn flush_coordination(&mut self) {
        let Some(ha) = self.state.ha.as_deref_mut() else {
            return;
        };
        let Some(coord) = ha.coord.as_mut() else {
            return;
        };
        host::flush(self.ctx, coord, &mut ha.timer);
        if coord.has_events() && !ha.driving && !ha.poke_pending {
            ha.poke_pending = true;
            let me = self.ctx.self_upid().clone();
            self.ctx.send(&me, CoordinationPending);
        }
    }

    /// Stop the driver. With `failover` false the framework is unregistered and its tasks are
    /// killed; with `failover` true they keep running for the failover timeout. With leader
    /// election it resigns first (a standby takes over at once).
    pub fn stop(&mut self, failover: bool) {
        if !failover && self.state.framework_id.is_some() {
            let msg = UnregisterFrameworkMessage {
                framework_id: self.id(),
            };
            self.send_master(msg);
        }
        if self.state.ha.is_some() {
            self.resign();
        }
        self.state.stopped = true;
        self.state.connected = false;
        if let Some(master) = self.state.detector.leader() {
            self.ctx.unlink(master);
        }
        self.ctx.terminate();
    }
}

#[derive(Serialize, Deserialize)]
struct RetryRegistration;
impl Message for RetryRegistration {
    const NAME: &'static str = "sdk.RetryRegistration";
}

/// To self: the coordination has events to handle (after a call from the framework's own
/// handler).
#[derive(Serialize, Deserialize)]
struct CoordinationPending;
impl Message for CoordinationPending {
    const NAME: &'static str = "sdk.CoordinationPending";
}

/// To self: the detector's next round of leader queries is due.
#[derive(Serialize, Deserialize)]
struct DetectLeader;
impl Message for DetectLeader {
    const NAME: &'static str = "sdk.DetectLeader";
}

/// The scheduler driver: a process that hosts a [`Scheduler`].
pub struct SchedulerDriver<S> {
    state: DriverState,
    scheduler: S,
}

impl<S: Scheduler> SchedulerDriver<S> {
    /// A driver for `scheduler`, registering `info` with the master at `master`. With
    /// `info.id` set it re-registers as that framework (scheduler failover).
    pub fn new(info: FrameworkInfo, master: Upid, scheduler: S) -> Self {
        Self::with_masters(info, Masters::one(master), scheduler)
    }

    /// A driver for `scheduler`, registering `info` with whichever of `masters` leads, and
    /// following the leadership as it moves (one master: that one, as [`Self::new`]).
    pub fn with_masters(info: FrameworkInfo, masters: Masters, scheduler: S) -> Self {
        SchedulerDriver {
            state: DriverState {
                framework_id: info.id.clone(),
                info,
                detector: MasterDetector::new(masters),
                detector_timer: None,
                connected: false,
                stopped: false,
                backoff: REGISTRATION_BACKOFF_MIN,
                retry_pending: false,
                implicit_acknowledgements: true,
                ha: None,
            },
            scheduler,
        }
    }

    /// Run as one of several instances of which one leads: the driver campaigns for
    /// `config.election_key`, registers with the master only while elected (with the
    /// election's fencing token), keeps the framework's state under `config.state_prefix`
    /// ([`Driver::write`], [`Driver::state`]) and holds its calls to the master until the
    /// writes before them commit. See [`LeaderConfig`] and the crate docs' recipe.
    pub fn with_leader_election(mut self, config: LeaderConfig) -> Self {
        self.state.ha = Some(Box::new(Ha {
            config,
            coord: None,
            timer: TimerSlot::new(),
            held: HeldCalls::new(),
            token: None,
            first_registration: false,
            driving: false,
            poke_pending: false,
        }));
        self
    }

    /// Turn off implicit acknowledgements: the scheduler calls [`Driver::acknowledge`].
    pub fn with_explicit_acknowledgements(mut self) -> Self {
        self.state.implicit_acknowledgements = false;
        self
    }

    /// The scheduler.
    pub fn scheduler(&self) -> &S {
        &self.scheduler
    }

    /// The driver's state.
    pub fn state(&self) -> &DriverState {
        &self.state
    }

    /// The scheduler and a driver to act with (for the framework's own handlers).
    pub fn scheduler_and_driver<'a, 'c>(
        &'a mut self,
        ctx: &'a mut Context<'c>,
    ) -> (&'a mut S, Driver<'a, 'c>) {
        (
            &mut self.scheduler,
            Driver {
                state: &mut self.state,
                ctx,
            },
        )
    }

    fn with<R>(
        &mut self,
        ctx: &mut Context<'_>,
        f: impl FnOnce(&mut S, &mut Driver<'_, '_>) -> R,
    ) -> R {
        let mut driver = Driver {
            state: &mut self.state,
            ctx,
        };
        let result = f(&mut self.scheduler, &mut driver);
        self.drive_coordination(ctx);
        result
    }

    /// Sends what the coordination wants sent and handles its events (leadership, commits),
    /// until none is left.
    fn drive_coordination(&mut self, ctx: &mut Context<'_>) {
        match self.state.ha.as_deref_mut() {
            Some(ha) if !ha.driving => ha.driving = true,
            _ => return,
        }
        loop {
            let ha = self.state.ha.as_deref_mut().expect("checked");
            let Some(coord) = ha.coord.as_mut() else {
                break;
            };
            host::flush(ctx, coord, &mut ha.timer);
            let Some(event) = coord.poll_event() else {
                break;
            };
            self.handle_coordination_event(ctx, event);
        }
        self.state.ha.as_deref_mut().expect("checked").driving = false;
    }

    fn handle_coordination_event(&mut self, ctx: &mut Context<'_>, event: CoordinationEvent) {
        let ha = self.state.ha.as_deref_mut().expect("coordination runs");
        match event {
            CoordinationEvent::Leading { token } => {
                ha.token = Some(token.clone());
                ha.first_registration = true;
                let state = ha.coord.as_ref().expect("made").state();
                let stored = state
                    .get(FRAMEWORK_ID_KEY)
                    .and_then(|id| std::str::from_utf8(id).ok())
                    .map(FrameworkId::new);
                self.state.framework_id = stored.or_else(|| self.state.info.id.clone());
                self.state.connected = false;
                self.state.backoff = REGISTRATION_BACKOFF_MIN;
                tracing::info!(epoch = token.epoch, framework = ?self.state.framework_id, "leading: registering with the master");
                self.with(ctx, |s, d| s.elected(d, &token));
                self.register(ctx);
            }
            CoordinationEvent::Deposed { epoch, reason } => {
                let was_leading = ha.token.take().is_some();
                let dropped = ha.held.drop_all();
                tracing::warn!(epoch, %reason, dropped, "deposed: standing by");
                if let Some(master) = self.state.detector.leader() {
                    ctx.unlink(master);
                }
                self.state.connected = false;
                self.state.framework_id = self.state.info.id.clone();
                if was_leading {
                    let why = reason.to_string();
                    self.with(ctx, |s, d| s.deposed(d, &why));
                }
            }
            CoordinationEvent::LeaderChanged { leader } => {
                let leader = leader.map(|v| String::from_utf8_lossy(&v).into_owned());
                self.with(ctx, |s, d| s.leader_changed(d, leader.as_deref()));
            }
            CoordinationEvent::Committed { write, .. } => {
                let calls = ha.held.release(write);
                for call in calls {
                    match self.state.detector.leader() {
                        Some(master) => ctx.send_boxed(master, call),
                        None => tracing::warn!(
                            message = call.name(),
                            "no leading master known: message dropped"
                        ),
                    }
                }
                self.with(ctx, |s, d| s.committed(d, write));
            }
            CoordinationEvent::WriteFailed { write, error } => {
                // Deposed follows (unless already).
                tracing::warn!(%write, %error, "state write failed");
            }
            CoordinationEvent::Client(event) => {
                self.with(ctx, |s, d| s.coordination_event(d, &event));
            }
        }
    }

    fn register(&mut self, ctx: &mut Context<'_>) {
        if self.state.stopped || self.state.connected {
            return;
        }
        // A standby never registers: only the leader talks to the master.
        if !self.state.is_leading(ctx.now().since_origin()) {
            return;
        }
        // No leader known: the detector's answer starts registration again.
        let Some(master) = self.state.detector.leader().cloned() else {
            return;
        };
        ctx.link(&master);
        let fencing = self.state.fencing().cloned();
        let failover = self
            .state
            .ha
            .as_ref()
            .is_some_and(|ha| ha.first_registration);
        match &self.state.framework_id {
            Some(id) => {
                let mut framework = self.state.info.clone();
                framework.id = Some(id.clone());
                ctx.send(
                    &master,
                    ReregisterFrameworkMessage {
                        framework,
                        failover,
                        fencing,
                    },
                );
            }
            None => ctx.send(
                &master,
                RegisterFrameworkMessage {
                    framework: self.state.info.clone(),
                    fencing,
                },
            ),
        }
        self.schedule_retry(ctx);
    }

    /// Schedule the next registration attempt unless one is scheduled already.
    fn schedule_retry(&mut self, ctx: &mut Context<'_>) {
        if self.state.retry_pending {
            return;
        }
        self.state.retry_pending = true;
        // Jitter so that many frameworks do not retry in lockstep.
        let jitter_ms = ctx
            .rng()
            .between(0, self.state.backoff.as_millis() as u64 / 4);
        ctx.delay(
            self.state.backoff + Duration::from_millis(jitter_ms),
            RetryRegistration,
        );
        self.state.backoff = (self.state.backoff * 2).min(REGISTRATION_BACKOFF_MAX);
    }

    /// True when `from` is the leading master followed (the whole `name@host:port`) and this
    /// instance acts (a standby, or a deposed leader, ignores the master: updates it does not
    /// acknowledge go to the next leader).
    fn is_from_master(&self, ctx: &Context<'_>, from: &Upid) -> bool {
        if !self.state.is_leading(ctx.now().since_origin()) {
            return false;
        }
        let ok = self.state.detector.is_leader(from);
        if !ok {
            let leader = self.state.detector.leader().map(Upid::to_string);
            tracing::warn!(%from, ?leader, "message from a process that is not the leading master; ignored");
        }
        ok
    }

    /// Sends the detector's due queries, follows a change of leader (the scheduler is told
    /// it is disconnected; registration with a new leader goes out at once) and arms the
    /// wake-up for the next round of queries.
    fn follow_leader(&mut self, ctx: &mut Context<'_>) {
        if self.state.stopped {
            return;
        }
        let now = ctx.now().since_origin();
        for master in self.state.detector.poll_queries(now, ctx.rng()) {
            ctx.send(&master, LeaderQueryMessage {});
        }
        if let Some(change) = self.state.detector.poll_change() {
            if let Some(previous) = &change.previous {
                if change.leader.as_ref() != Some(previous) {
                    ctx.unlink(previous);
                }
            }
            let was_connected = self.state.connected;
            self.state.connected = false;
            if was_connected {
                self.with(ctx, |s, d| s.disconnected(d));
            }
            match &change.leader {
                Some(leader) => {
                    tracing::info!(%leader, term = change.term, "following a new leading master");
                    self.state.backoff = REGISTRATION_BACKOFF_MIN;
                    self.register(ctx);
                }
                None => tracing::warn!("no leading master known: looking for one"),
            }
        }
        let next = self.state.detector.next_deadline();
        if self.state.detector_timer.map(|(_, at)| at) != next {
            if let Some((id, _)) = self.state.detector_timer.take() {
                ctx.cancel(id);
            }
            if let Some(at) = next {
                let id = ctx.delay(at.saturating_sub(now), DetectLeader);
                self.state.detector_timer = Some((id, at));
            }
        }
    }

    fn handle_detect_leader(&mut self, ctx: &mut Context<'_>, from: &Upid, _m: DetectLeader) {
        if from != ctx.self_upid() {
            return;
        }
        self.state.detector_timer = None;
        self.follow_leader(ctx);
    }

    /// Who leads the masters: an answer to a query, a new leader's announcement, or a
    /// redirect from a master that does not lead.
    fn handle_new_master_detected(
        &mut self,
        ctx: &mut Context<'_>,
        from: &Upid,
        m: NewMasterDetectedMessage,
    ) {
        if self.state.stopped {
            return;
        }
        let now = ctx.now().since_origin();
        let news = self
            .state
            .detector
            .handle_new_master_detected(now, from, &m);
        let leader = m.leader.as_ref().map(Upid::to_string);
        tracing::debug!(%from, ?leader, term = m.term, ?news, "news of the leading master");
        if let Some(coord) = self.coordination_mut() {
            coord.handle_new_master_detected(now, from, &m);
        }
        self.drive_coordination(ctx);
        self.follow_leader(ctx);
    }

    fn coordination_mut(&mut self) -> Option<&mut Coordination> {
        self.state.ha.as_deref_mut()?.coord.as_mut()
    }

    fn handle_coord_response(
        &mut self,
        ctx: &mut Context<'_>,
        from: &Upid,
        m: CoordResponseMessage,
    ) {
        let now = ctx.now().since_origin();
        if let Some(coord) = self.coordination_mut() {
            coord.handle_response(now, from, m);
        }
        self.drive_coordination(ctx);
    }

    fn handle_keep_alive_response(
        &mut self,
        ctx: &mut Context<'_>,
        from: &Upid,
        m: LeaseKeepAliveResponseMessage,
    ) {
        let now = ctx.now().since_origin();
        if let Some(coord) = self.coordination_mut() {
            coord.handle_keep_alive_response(now, from, m);
        }
        self.drive_coordination(ctx);
    }

    fn handle_watch_events(&mut self, ctx: &mut Context<'_>, from: &Upid, m: WatchEventsMessage) {
        let now = ctx.now().since_origin();
        if let Some(coord) = self.coordination_mut() {
            coord.handle_watch_events(now, from, m);
        }
        self.drive_coordination(ctx);
    }

    fn handle_watch_ended(&mut self, ctx: &mut Context<'_>, from: &Upid, m: WatchEndedMessage) {
        let now = ctx.now().since_origin();
        if let Some(coord) = self.coordination_mut() {
            coord.handle_watch_ended(now, from, m);
        }
        self.drive_coordination(ctx);
    }

    fn handle_coord_timer(&mut self, ctx: &mut Context<'_>, from: &Upid, _m: CoordTimer) {
        if from != ctx.self_upid() {
            return;
        }
        let now = ctx.now().since_origin();
        if let Some(ha) = self.state.ha.as_deref_mut() {
            ha.timer.fired();
            if let Some(coord) = ha.coord.as_mut() {
                coord.handle_timeout(now);
            }
        }
        self.drive_coordination(ctx);
    }

    fn handle_coordination_pending(
        &mut self,
        ctx: &mut Context<'_>,
        from: &Upid,
        _m: CoordinationPending,
    ) {
        if from != ctx.self_upid() {
            return;
        }
        if let Some(ha) = self.state.ha.as_deref_mut() {
            ha.poke_pending = false;
        }
        self.drive_coordination(ctx);
    }

    fn handle_retry(&mut self, ctx: &mut Context<'_>, _from: &Upid, _m: RetryRegistration) {
        self.state.retry_pending = false;
        self.register(ctx);
    }

    fn handle_registered(
        &mut self,
        ctx: &mut Context<'_>,
        from: &Upid,
        m: FrameworkRegisteredMessage,
    ) {
        if !self.is_from_master(ctx, from) || self.state.connected {
            return;
        }
        self.state.connected = true;
        self.state.backoff = REGISTRATION_BACKOFF_MIN;
        self.state.framework_id = Some(m.framework_id.clone());
        if let Some(ha) = self.state.ha.as_deref_mut() {
            ha.first_registration = false;
        }
        let id = m.framework_id.clone();
        self.with(ctx, |s, d| {
            if d.state.ha.is_some() {
                // The next leader re-registers as this framework. Every call after this waits
                // for the write to commit.
                let op = StateOp::Put {
                    key: FRAMEWORK_ID_KEY.to_string(),
                    value: id.as_str().as_bytes().to_vec(),
                };
                if let Err(e) = d.write(vec![op]) {
                    tracing::warn!(error = %e, "cannot keep the framework id in the state");
                }
            }
            s.registered(d, &id)
        });
    }

    fn handle_reregistered(
        &mut self,
        ctx: &mut Context<'_>,
        from: &Upid,
        _m: FrameworkReregisteredMessage,
    ) {
        if !self.is_from_master(ctx, from) || self.state.connected {
            return;
        }
        self.state.connected = true;
        self.state.backoff = REGISTRATION_BACKOFF_MIN;
        if let Some(ha) = self.state.ha.as_deref_mut() {
            ha.first_registration = false;
        }
        self.with(ctx, |s, d| s.reregistered(d));
    }

    fn handle_offers(&mut self, ctx: &mut Context<'_>, from: &Upid, m: ResourceOffersMessage) {
        if !self.is_from_master(ctx, from) || self.state.stopped {
            return;
        }
        self.with(ctx, |s, d| s.resource_offers(d, m.offers));
    }

    fn handle_rescind(
        &mut self,
        ctx: &mut Context<'_>,
        from: &Upid,
        m: RescindResourceOfferMessage,
    ) {
        if self.is_from_master(ctx, from) {
            self.with(ctx, |s, d| s.offer_rescinded(d, &m.offer_id));
        }
    }

    fn handle_inverse_offers(
        &mut self,
        ctx: &mut Context<'_>,
        from: &Upid,
        m: InverseOffersMessage,
    ) {
        if !self.is_from_master(ctx, from) || self.state.stopped {
            return;
        }
        self.with(ctx, |s, d| s.inverse_offers(d, m.inverse_offers));
    }

    fn handle_rescind_inverse_offer(
        &mut self,
        ctx: &mut Context<'_>,
        from: &Upid,
        m: RescindInverseOfferMessage,
    ) {
        if self.is_from_master(ctx, from) {
            self.with(ctx, |s, d| {
                s.inverse_offer_rescinded(d, &m.inverse_offer_id)
            });
        }
    }

    fn handle_status(&mut self, ctx: &mut Context<'_>, from: &Upid, m: StatusUpdateMessage) {
        if !self.is_from_master(ctx, from) || self.state.stopped {
            return;
        }
        let implicit =
            self.state.implicit_acknowledgements && !self.scheduler.acknowledges_explicitly();
        self.with(ctx, |s, d| {
            s.status_update(d, &m.status);
            if implicit {
                d.acknowledge(&m.status);
            }
        });
    }

    fn handle_lost_slave(&mut self, ctx: &mut Context<'_>, from: &Upid, m: LostSlaveMessage) {
        if self.is_from_master(ctx, from) {
            self.with(ctx, |s, d| s.slave_lost(d, &m.slave_id));
        }
    }

    fn handle_error(&mut self, ctx: &mut Context<'_>, from: &Upid, m: FrameworkErrorMessage) {
        if !self.is_from_master(ctx, from) {
            return;
        }
        if self.state.ha.is_some()
            && (m.message.starts_with("stale leadership epoch")
                || m.message.contains("failed over to another scheduler"))
        {
            // Another instance leads (or this one's epoch is not applied yet): stand by.
            tracing::warn!(message = %m.message, "the master refused this leader: stepping down");
            let now = ctx.now().since_origin();
            if let Some(coord) = self.coordination_mut() {
                coord.step_down(now, &m.message);
            }
            self.drive_coordination(ctx);
            return;
        }
        tracing::error!(message = %m.message, "framework refused by the master");
        self.with(ctx, |s, d| {
            s.error(d, &m.message);
            d.stop(true);
        });
    }
}

impl<S: Scheduler> Process for SchedulerDriver<S> {
    fn install(h: &mut Handlers<Self>) {
        h.on(Self::handle_retry)
            .on(Self::handle_detect_leader)
            .on(Self::handle_new_master_detected)
            .on(Self::handle_registered)
            .on(Self::handle_reregistered)
            .on(Self::handle_offers)
            .on(Self::handle_rescind)
            .on(Self::handle_inverse_offers)
            .on(Self::handle_rescind_inverse_offer)
            .on(Self::handle_status)
            .on(Self::handle_lost_slave)
            .on(Self::handle_error)
            .on(Self::handle_coord_response)
            .on(Self::handle_keep_alive_response)
            .on(Self::handle_watch_events)
            .on(Self::handle_watch_ended)
            .on(Self::handle_coord_timer)
            .on(Self::handle_coordination_pending);
        // From other nodes, only masters may send the driver anything; a scheduler that
        // handles messages from other roles allows them in its `install`.
        h.allow_roles(
            RoleSet::of(&[Role::Master]),
            &[
                NewMasterDetectedMessage::NAME,
                FrameworkRegisteredMessage::NAME,
                FrameworkReregisteredMessage::NAME,
                ResourceOffersMessage::NAME,
                RescindResourceOfferMessage::NAME,
                InverseOffersMessage::NAME,
                RescindInverseOfferMessage::NAME,
                StatusUpdateMessage::NAME,
                LostSlaveMessage::NAME,
                FrameworkErrorMessage::NAME,
                CoordResponseMessage::NAME,
                LeaseKeepAliveResponseMessage::NAME,
                WatchEventsMessage::NAME,
                WatchEndedMessage::NAME,
            ],
        )
        .allow_others(RoleSet::NONE);
        S::install(h);
    }

    fn initialize(&mut self, ctx: &mut Context<'_>) {
        if let Some(ha) = self.state.ha.as_deref_mut() {
            // A standby first: campaign; registration waits for the election.
            let client = CoordClientConfig {
                masters: self.state.detector.masters().clone(),
                label: ctx.self_upid().to_string(),
                seed: ctx.rng().between(0, u64::MAX),
            };
            let election = ElectionConfig::new(
                ha.config.election_key.clone(),
                ha.config.address.clone().into_bytes(),
            )
            .with_ttl(ha.config.session_ttl);
            let mut coord = Coordination::new(client, election, ha.config.state_prefix.clone());
            coord.campaign(ctx.now().since_origin());
            ha.coord = Some(coord);
        }
        self.with(ctx, |s, d| s.initialize(d));
        // One master: registers at once. Several: the first queries go out.
        self.register(ctx);
        self.follow_leader(ctx);
    }

    fn exited(&mut self, ctx: &mut Context<'_>, upid: &Upid) {
        if self.state.stopped {
            return;
        }
        let now = ctx.now().since_origin();
        if !self.state.detector.handle_exited(now, upid) {
            // A master followed before (its link was dropped when it stopped leading) is no
            // news for the scheduler.
            if !self.state.detector.masters().contains(upid) {
                self.with(ctx, |s, d| s.exited(d, upid));
            }
            return;
        }
        let was_connected = self.state.connected;
        self.state.connected = false;
        if was_connected {
            self.with(ctx, |s, d| s.disconnected(d));
            // The first attempt after losing a registered master goes out at once; a link
            // that breaks while registering (master unreachable) waits for the backoff.
            // With several masters the detector forgot it: registration waits for the next
            // leader (`follow_leader`).
            self.state.backoff = REGISTRATION_BACKOFF_MIN;
            self.register(ctx);
        } else {
            self.schedule_retry(ctx);
        }
        self.follow_leader(ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declines_are_grouped_by_filter_in_first_use_order() {
        let mut declines = Declines::new();
        assert!(declines.is_empty());
        let long = Filters {
            refuse_seconds: 60.0,
        };
        declines.add(OfferId::new("o1"), long);
        declines.add(OfferId::new("o2"), Filters::default());
        declines.add(OfferId::new("o3"), long);
        assert_eq!(declines.len(), 3);
        let groups: Vec<(f64, Vec<&str>)> = declines
            .by_filter
            .iter()
            .map(|(f, ids)| (f.refuse_seconds, ids.iter().map(OfferId::as_str).collect()))
            .collect();
        assert_eq!(groups, [(60.0, vec!["o1", "o3"]), (5.0, vec!["o2"])]);
    }
}
