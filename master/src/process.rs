//! The master process: hosts a [`MasterCore`] on a node (real or simulated) and carries out
//! what it decides.
//!
//! It feeds the core every protocol message, every `exited` of a linked slave or scheduler,
//! and three timers of its own: the agent-loss tick ([`MasterConfig::tick_interval`]), the
//! periodic allocation over every slave ([`MasterConfig::allocation_interval`]) and the
//! batched allocation the core asks for ([`Action::AllocateAfter`]), over the slaves that
//! changed ([`MasterCore::handle_batched_allocation`]). Actions are carried out in order
//! through the [`Context`]; consecutive [`Action::Persist`] changes are committed in one batch
//! *before* any later action, so no reply leaves before its change is durable.
//!
//! Two ways to keep the registry:
//!
//! - **Alone** ([`MasterProcess::new`]): a [`Registry`] (redb on disk), written synchronously.
//!   A registry that cannot be written is fatal, as in Mesos: the process logs the error,
//!   carries out nothing more and terminates (a supervisor restarts the master, which
//!   recovers from what was committed).
//! - **In a group** ([`MasterProcess::replicated`]): a [`Replica`] of the masters' replicated
//!   log. Only the leader runs a core, and only while it holds its lease
//!   ([`Replica::is_leader_with_lease`], checked before every input it feeds the core). A
//!   newly elected leader commits [`MasterCommand::Elected`], builds its core from the
//!   replicated registry, and tells every slave and framework the registry knows
//!   ([`NewMasterDetectedMessage`]). A batch of registry changes is *proposed*, and the
//!   actions after it wait in a pipeline until it commits; a refused proposal or a lost lease
//!   drops the core and everything waiting (nothing uncommitted was told to anyone). A master
//!   that does not lead answers protocol messages with the leader it knows.
//!
//! It names no actix type: the same code runs on a [`plateau_runtime::Node`] and in
//! [`plateau_runtime::sim::Sim`].

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use plateau_replica::{HostsReplica, ProposeError, Replica, Role, Ticket};
use plateau_runtime::{Context, Handlers, Message, Process, Role as PeerRole, RoleSet, Upid};
use rand_core::RngCore;
use serde::{Deserialize, Serialize};

use crate::coord::{
    CoordOutcome, CoordRequestMessage, CoordResponseMessage, KeepAliveOutcome, LeaderHint,
    LeaseKeepAliveMessage, LeaseKeepAliveResponseMessage, UnwatchMessage, WatchEnd,
    WatchEndedMessage, WatchMessage,
};
pub use crate::core::MasterConfig;
use crate::core::{Action, MasterCore, Outgoing};
use crate::error::MasterError;
use crate::ids::FrameworkId;
use crate::maintenance::{MachineId, MaintenanceError, Window};
use crate::messages::*;
use crate::registry::{Registry, RegistryOp, RegistryState};
use crate::replicated::{MasterCommand, MasterState};

mod coordination;
use coordination::{CoordServer, LeaseExpiryTimer};

/// An operator's maintenance request ([`MasterProcess::handle_maintenance`]).
#[derive(Debug, Clone)]
pub enum MaintenanceRequest {
    /// Replace the schedule (`POST /master/maintenance/schedule`).
    Schedule(Vec<Window>),
    /// Take machines down (`POST /master/machine/down`).
    Down(Vec<MachineId>),
    /// Bring machines up (`POST /master/machine/up`).
    Up(Vec<MachineId>),
}

/// Timer: agent-loss scan and failover deadlines.
#[derive(Debug, Serialize, Deserialize)]
struct TickTimer;
/// Timer: the periodic allocation.
#[derive(Debug, Serialize, Deserialize)]
struct AllocationTimer;
/// Timer: an allocation soon after resources or demand were added.
#[derive(Debug, Serialize, Deserialize)]
struct AllocateSoonTimer;

impl Message for TickTimer {
    const NAME: &'static str = "plateau.master.TickTimer";
}
impl Message for AllocationTimer {
    const NAME: &'static str = "plateau.master.AllocationTimer";
}
impl Message for AllocateSoonTimer {
    const NAME: &'static str = "plateau.master.AllocateSoonTimer";
}

/// Where the registry lives.
enum Store {
    /// A master alone: written synchronously.
    Local(Box<dyn Registry>),
    /// A member of a group: proposed to the replicated log.
    Group(Box<Group>),
}

/// A group member's leadership bookkeeping.
struct Group {
    replica: Replica<MasterState>,
    /// The `Elected` proposal of the term this master leads, until it commits.
    election: Option<(Ticket, u64)>,
    /// The term whose core this master runs.
    acting_term: Option<u64>,
    /// A membership change this master (as leader) started, until it is decided.
    membership_change: Option<Ticket>,
    /// Masters to ask to be added by, until this one is a voter (`--join`).
    join_via: Vec<Upid>,
    /// The coordination service (served while leading).
    coord: CoordServer,
    /// Frameworks that registered with a fencing token, and their election key: their
    /// launches and kills must carry the key's current epoch.
    fenced: std::collections::BTreeMap<FrameworkId, String>,
    /// Framework calls refused for a stale epoch.
    stale_epoch_refusals: u64,
    /// Fenced framework calls accepted while acting, and the last one's key and epoch (an
    /// observation point: the simulator checks each against the newest epoch it saw granted).
    fenced_accepted: (u64, Option<(String, u64)>),
}

/// Registry changes proposed, and the actions that must wait for them.
struct Stage {
    ticket: Ticket,
    committed: bool,
    actions: Vec<Action>,
}

/// The master process (named `master` on its node).
pub struct MasterProcess {
    config: MasterConfig,
    store: Store,
    /// What the registry held at start, until `initialize` builds the core from it (alone).
    recovered: Option<RegistryState>,
    core: Option<MasterCore>,
    started_at: Duration,
    failed: Option<MasterError>,
    prometheus: crate::http::PrometheusMetrics,
    /// Proposed registry changes not yet committed, oldest first (group only).
    pipeline: VecDeque<Stage>,
    /// What the web console sees beside the core (not replicated).
    console: crate::ui::Console,
}

impl std::fmt::Debug for MasterProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterProcess")
            .field("run_id", &self.core.as_ref().map(|c| c.run_id()))
            .field("failed", &self.failed)
            .finish()
    }
}

impl MasterProcess {
    /// A master alone on `registry`, which is read now (so a broken registry fails here,
    /// before the process is spawned).
    pub fn new(config: MasterConfig, registry: Box<dyn Registry>) -> Result<Self, MasterError> {
        let recovered = registry.load()?;
        Ok(MasterProcess {
            config,
            store: Store::Local(registry),
            recovered: Some(recovered),
            core: None,
            started_at: Duration::ZERO,
            failed: None,
            prometheus: crate::http::PrometheusMetrics::new(),
            pipeline: VecDeque::new(),
            console: Default::default(),
        })
    }

    /// A member of a group of masters on `replica` (opened on its disk; given the group's
    /// members with [`Replica::bootstrap`] when the group is new). It leads only when elected.
    pub fn replicated(config: MasterConfig, replica: Replica<MasterState>) -> Self {
        MasterProcess {
            config,
            store: Store::Group(Box::new(Group {
                replica,
                election: None,
                acting_term: None,
                membership_change: None,
                join_via: Vec::new(),
                coord: CoordServer::new(),
                fenced: std::collections::BTreeMap::new(),
                stale_epoch_refusals: 0,
                fenced_accepted: (0, None),
            })),
            recovered: None,
            core: None,
            started_at: Duration::ZERO,
            failed: None,
            prometheus: crate::http::PrometheusMetrics::new(),
            pipeline: VecDeque::new(),
            console: Default::default(),
        }
    }

    /// A group member that is not yet part of its group asks `via` (the group's masters)
    /// to add it, until it is a voter (`plateau master --join`).
    pub fn joining(mut self, via: Vec<Upid>) -> Self {
        if let Store::Group(group) = &mut self.store {
            group.join_via = via;
        }
        self
    }

    /// An operator tears framework `id` down (`POST /master/teardown`), as `principal`. `None`
    /// when this master is not the acting one (the HTTP handler then redirects).
    pub fn teardown(
        &mut self,
        ctx: &mut Context<'_>,
        principal: Option<&str>,
        id: &crate::ids::FrameworkId,
    ) -> Option<Result<(), crate::core::TeardownRefused>> {
        if !self.is_acting(ctx) {
            return None;
        }
        let now = Self::now(ctx);
        let outcome = self
            .core
            .as_mut()
            .expect("acting")
            .teardown_framework(now, principal, id);
        self.carry_out(ctx);
        self.settle(ctx);
        Some(outcome)
    }

    /// As leader, replaces the voting members with `voters`, adding `add` (as a learner that
    /// catches up first) if given. Refused (false) when this master does not lead with a lease
    /// or another change is under way. The outcome shows in the replica's status.
    pub fn change_members(
        &mut self,
        ctx: &mut Context<'_>,
        add: Option<Upid>,
        voters: Vec<Upid>,
    ) -> bool {
        if !self.is_acting(ctx) {
            return false;
        }
        let Store::Group(group) = &mut self.store else {
            return false;
        };
        if group.membership_change.is_some() || voters.is_empty() {
            return false;
        }
        tracing::info!(?add, ?voters, "changing the masters' membership");
        group.membership_change = Some(group.replica.change_membership(ctx, add, &voters));
        self.settle(ctx);
        true
    }

    /// An operator's maintenance request (from the HTTP API), fed to the core and carried out
    /// like any input: `None` when this master does not act (it does not lead), else whether
    /// the request was valid. In a group, the change is proposed to the replicated log when
    /// this returns, and acted on (offers rescinded, slaves removed) only once it commits.
    pub fn handle_maintenance(
        &mut self,
        ctx: &mut Context<'_>,
        request: MaintenanceRequest,
    ) -> Option<Result<(), MaintenanceError>> {
        if !self.is_acting(ctx) {
            return None;
        }
        let now = Self::now(ctx);
        let core = self.core.as_mut().expect("acting");
        let result = match request {
            MaintenanceRequest::Schedule(windows) => {
                core.handle_update_maintenance_schedule(now, windows)
            }
            MaintenanceRequest::Down(machines) => core.handle_machines_down(now, machines),
            MaintenanceRequest::Up(machines) => core.handle_machines_up(now, machines),
        };
        self.carry_out(ctx);
        self.settle(ctx);
        Some(result)
    }

    /// What the web console sees beside the core.
    pub fn console(&self) -> &crate::ui::Console {
        &self.console
    }

    /// The core (for HTTP handlers and tests). Panics when the master does not run one.
    pub fn core(&self) -> &MasterCore {
        self.core.as_ref().expect("master initialized")
    }

    /// The core, or `None` when this master does not act (before `initialize`, after a
    /// registry failure, or while it does not lead its group).
    pub fn try_core(&self) -> Option<&MasterCore> {
        self.core.as_ref()
    }

    /// Monotonic time the process started at.
    pub fn started_at(&self) -> Duration {
        self.started_at
    }

    /// The registry error that stopped this master, if any.
    pub fn failure(&self) -> Option<&MasterError> {
        self.failed.as_ref()
    }

    /// The Prometheus registry of this master (one per master, not global).
    pub fn prometheus_mut(&mut self) -> &mut crate::http::PrometheusMetrics {
        &mut self.prometheus
    }

    /// The replica, for a member of a group.
    pub fn replica(&self) -> Option<&Replica<MasterState>> {
        match &self.store {
            Store::Group(g) => Some(&g.replica),
            Store::Local(_) => None,
        }
    }

    /// True when this master acts as the leading master (always, for a master alone that
    /// runs).
    pub fn is_elected(&self) -> bool {
        self.core.is_some()
    }

    /// True when this master may act as the leading master at `now`: it runs a core and, in a
    /// group, still holds its lease for the term it took office in. (A paused leader keeps its
    /// core until its next handler, which steps it down: it never acts past its lease.)
    pub fn acts_at(&self, now: Duration) -> bool {
        if self.core.is_none() {
            return false;
        }
        match &self.store {
            Store::Local(_) => true,
            Store::Group(group) => {
                group.replica.is_leader_with_lease(now)
                    && Some(group.replica.status().term) == group.acting_term
            }
        }
    }

    /// Until when (monotonic time, since the clock's origin) this master may act as it stands
    /// now: `None` when it runs no core, or runs one for a term that is no longer its
    /// replica's; [`Duration::MAX`] for a master alone that runs. Read-only, for observers
    /// (the simulator): with no event at this master in between, [`MasterProcess::acts_at`]
    /// at a later `now` is `acts_until() > now`.
    pub fn acts_until(&self) -> Option<Duration> {
        self.core.as_ref()?;
        match &self.store {
            Store::Local(_) => Some(Duration::MAX),
            Store::Group(group) => {
                if Some(group.replica.status().term) != group.acting_term {
                    return None;
                }
                group.replica.lease_until()
            }
        }
    }

    /// The term this master acts in (took office in and still runs a core for), if any.
    /// Read-only, for observers.
    pub fn acting_term(&self) -> Option<u64> {
        match &self.store {
            Store::Group(group) if self.core.is_some() => group.acting_term,
            _ => None,
        }
    }

    /// The leading master as this one knows it: itself when it acts, else the leader its
    /// replica follows (None while there is none, or while it is itself still taking office).
    pub fn leading_master(&self, me: &Upid) -> Option<Upid> {
        if self.core.is_some() {
            return Some(me.clone());
        }
        match &self.store {
            Store::Group(g) => g.replica.status().leader.clone().filter(|l| l != me),
            Store::Local(_) => None,
        }
    }

    /// The election term of the leader this master knows (0 alone).
    pub fn term(&self) -> u64 {
        match &self.store {
            Store::Group(g) => g.replica.status().term,
            Store::Local(_) => 0,
        }
    }

    /// Carries out the core's actions in order; persists before anything that follows.
    fn carry_out(&mut self, ctx: &mut Context<'_>) {
        let Some(core) = self.core.as_mut() else {
            return;
        };
        let mut actions = core.drain_actions();
        let mut batch: Vec<RegistryOp> = Vec::new();
        for action in actions.drain(..) {
            self.console.observe(&action);
            if let Action::Persist(op) = action {
                batch.push(op);
                continue;
            }
            if !self.commit(ctx, &mut batch) {
                return;
            }
            match self.pipeline.back_mut() {
                Some(stage) => stage.actions.push(action),
                None => perform(ctx, action),
            }
        }
        if self.commit(ctx, &mut batch) {
            if let Some(core) = self.core.as_mut() {
                core.recycle_actions(actions);
            }
        }
    }

    /// Commits `batch` (alone) or proposes it, the actions after it waiting in the pipeline
    /// (group); false (and the core dropped) if that failed.
    fn commit(&mut self, ctx: &mut Context<'_>, batch: &mut Vec<RegistryOp>) -> bool {
        if batch.is_empty() {
            return true;
        }
        match &mut self.store {
            Store::Local(registry) => match registry.apply(batch) {
                Ok(()) => {
                    batch.clear();
                    true
                }
                Err(e) => {
                    tracing::error!(error = %e, "registry write failed; the master stops");
                    self.failed = Some(e);
                    self.core = None;
                    ctx.terminate();
                    false
                }
            },
            Store::Group(group) => {
                let command = MasterCommand::Registry(std::mem::take(batch)).encode();
                let ticket = group.replica.propose(ctx, command);
                self.pipeline.push_back(Stage {
                    ticket,
                    committed: false,
                    actions: Vec::new(),
                });
                true
            }
        }
    }

    fn now(ctx: &Context<'_>) -> Duration {
        ctx.now().since_origin()
    }

    /// True when the core may act now. A group member whose lease lapsed (no majority heard
    /// within the election timeout: partitioned, or paused and woken) steps down here, before
    /// acting on anything.
    fn is_acting(&mut self, ctx: &mut Context<'_>) -> bool {
        if self.core.is_none() {
            return false;
        }
        if let Store::Group(group) = &self.store {
            let status = group.replica.status();
            let holds = group.replica.is_leader_with_lease(Self::now(ctx))
                && Some(status.term) == group.acting_term;
            if !holds {
                self.step_down(ctx, "the lease lapsed or another term began");
                return false;
            }
        }
        true
    }

    /// Stops acting as leader: the core and everything waiting for a commit are dropped. The
    /// slaves and frameworks the core knew are told it no longer leads (the leader its replica
    /// knows, if another, else none): they look for the leader again and register with it,
    /// even if it is this master taking office again in the same term (after its lease lapsed
    /// while it still led its group's term), which runs a new core.
    fn step_down(&mut self, ctx: &mut Context<'_>, why: &str) {
        let hint = self.hint(ctx);
        if let Store::Group(group) = &mut self.store {
            group.coord.step_down(ctx, hint);
            if let Some(core) = &self.core {
                tracing::warn!(term = ?group.acting_term, why, "master no longer leads");
                let status = group.replica.status();
                let me = ctx.self_upid().clone();
                let news = NewMasterDetectedMessage {
                    leader: status.leader.clone().filter(|l| *l != me),
                    term: status.term,
                };
                let pids: Vec<Upid> = core
                    .slaves()
                    .values()
                    .filter_map(|s| s.pid.clone())
                    .chain(core.frameworks().values().filter_map(|f| f.pid.clone()))
                    .collect();
                for pid in pids {
                    ctx.send(&pid, news.clone());
                }
            }
            group.acting_term = None;
            group.election = None;
            group.membership_change = None;
            group.fenced.clear();
        }
        self.core = None;
        self.pipeline.clear();
    }

    /// After the replica handled something: take outcomes, follow leadership.
    fn settle(&mut self, ctx: &mut Context<'_>) {
        loop {
            let Store::Group(group) = &mut self.store else {
                return;
            };
            group.coord.after_apply(ctx, &group.replica);
            let done = group.replica.drain_completions();
            if done.is_empty() {
                break;
            }
            for (ticket, outcome) in done {
                self.handle_outcome(ctx, ticket, outcome);
            }
        }
        self.follow_leadership(ctx);
    }

    /// What a master that does not act tells a client: the leader it knows. None when acting.
    fn hint(&mut self, ctx: &mut Context<'_>) -> LeaderHint {
        let me = ctx.self_upid().clone();
        LeaderHint {
            leader: self
                .leading_master(&me)
                .filter(|l| *l != me || self.core.is_some()),
            term: self.term(),
        }
    }

    /// True for a group member that leads its replica's term without acting (taking office,
    /// or its lease lapsed): it does not answer coordination clients, as it does not redirect
    /// (they retry after their timeout). "Not the leader, no one leads" from the leader of the
    /// term would send a client that another member told it leads straight back to it, with
    /// the same answer — a loop that burned a request's attempts in an instant.
    fn leads_without_acting(&mut self, ctx: &mut Context<'_>) -> bool {
        if self.is_acting(ctx) {
            return false;
        }
        matches!(&self.store, Store::Group(group) if group.replica.status().role == Role::Leader)
    }

    /// The hint to answer a coordination client with, or None when this master serves it.
    fn coord_hint(&mut self, ctx: &mut Context<'_>) -> Option<LeaderHint> {
        if self.is_acting(ctx) {
            None
        } else {
            let mut hint = self.hint(ctx);
            if hint.leader.as_ref() == Some(ctx.self_upid()) {
                hint.leader = None;
            }
            Some(hint)
        }
    }

    fn on_coord_request(&mut self, ctx: &mut Context<'_>, from: &Upid, msg: CoordRequestMessage) {
        if self.leads_without_acting(ctx) {
            return;
        }
        let hint = self.coord_hint(ctx);
        match &mut self.store {
            Store::Group(group) => {
                group
                    .coord
                    .handle_request(ctx, &mut group.replica, hint, from, msg)
            }
            Store::Local(_) => ctx.send(
                from,
                CoordResponseMessage {
                    request_id: msg.request_id,
                    outcome: CoordOutcome::NotLeader(LeaderHint {
                        leader: None,
                        term: 0,
                    }),
                },
            ),
        }
        self.settle(ctx);
    }

    fn on_keep_alive(&mut self, ctx: &mut Context<'_>, from: &Upid, msg: LeaseKeepAliveMessage) {
        if self.leads_without_acting(ctx) {
            return;
        }
        let hint = self.coord_hint(ctx);
        match &mut self.store {
            Store::Group(group) => group.coord.handle_keep_alive(ctx, hint, from, msg),
            Store::Local(_) => ctx.send(
                from,
                LeaseKeepAliveResponseMessage {
                    lease: msg.lease,
                    outcome: KeepAliveOutcome::NotLeader(LeaderHint {
                        leader: None,
                        term: 0,
                    }),
                },
            ),
        }
    }

    fn on_watch(&mut self, ctx: &mut Context<'_>, from: &Upid, msg: WatchMessage) {
        if self.leads_without_acting(ctx) {
            return;
        }
        let hint = self.coord_hint(ctx);
        match &mut self.store {
            Store::Group(group) => group.coord.handle_watch(ctx, hint, from, msg),
            Store::Local(_) => ctx.send(
                from,
                WatchEndedMessage {
                    watch_id: msg.watch_id,
                    reason: WatchEnd::NotLeader(LeaderHint {
                        leader: None,
                        term: 0,
                    }),
                },
            ),
        }
    }

    fn on_unwatch(&mut self, _ctx: &mut Context<'_>, from: &Upid, msg: UnwatchMessage) {
        if let Store::Group(group) = &mut self.store {
            group.coord.handle_unwatch(from, msg);
        }
    }

    fn on_lease_expiry(&mut self, ctx: &mut Context<'_>, from: &Upid, _: LeaseExpiryTimer) {
        if from != ctx.self_upid() {
            return;
        }
        if !self.is_acting(ctx) {
            return;
        }
        if let Store::Group(group) = &mut self.store {
            group.coord.handle_timer(ctx, &mut group.replica);
        }
        self.settle(ctx);
    }

    /// Live coordination watches served by this master.
    pub fn coordination_watches(&self) -> usize {
        match &self.store {
            Store::Group(group) => group.coord.watches(),
            Store::Local(_) => 0,
        }
    }

    fn handle_outcome(
        &mut self,
        ctx: &mut Context<'_>,
        ticket: Ticket,
        outcome: Result<plateau_replica::Committed, ProposeError>,
    ) {
        let Store::Group(group) = &mut self.store else {
            return;
        };
        if group.coord.handle_outcome(ctx, ticket, &outcome) {
            return;
        }
        if group.membership_change == Some(ticket) {
            group.membership_change = None;
            match outcome {
                Ok(_) => {
                    tracing::info!(voters = ?group.replica.status().voters, "membership changed")
                }
                Err(e) => tracing::warn!(error = %e, "membership change failed"),
            }
            return;
        }
        if let Some((election, term)) = group.election {
            if election == ticket {
                group.election = None;
                match outcome {
                    Ok(_) => self.take_office(ctx, term),
                    Err(e) => tracing::info!(error = %e, "election not committed"),
                }
                return;
            }
        }
        let Some(stage) = self.pipeline.iter_mut().find(|s| s.ticket == ticket) else {
            return; // a stage dropped by a step-down
        };
        match outcome {
            Ok(_) => stage.committed = true,
            Err(e) => {
                self.step_down(ctx, &format!("a registry change did not commit: {e}"));
                return;
            }
        }
        // Committed, but acting on it needs the lease still (it steps down otherwise).
        if !self.is_acting(ctx) {
            return;
        }
        while self.pipeline.front().is_some_and(|s| s.committed) {
            let stage = self.pipeline.pop_front().expect("front");
            for action in stage.actions {
                perform(ctx, action);
            }
        }
    }

    /// Starts an election commit when this replica leads with a lease and runs no core; steps
    /// down when it no longer leads.
    fn follow_leadership(&mut self, ctx: &mut Context<'_>) {
        let now = Self::now(ctx);
        let Store::Group(group) = &mut self.store else {
            return;
        };
        let status = group.replica.status();
        let leads = group.replica.is_leader_with_lease(now);
        if self.core.is_some() {
            if !leads || Some(status.term) != group.acting_term {
                self.step_down(ctx, "the lease lapsed or another term began");
            }
            return;
        }
        if status.role != Role::Leader {
            group.election = None;
            return;
        }
        if leads && group.election.is_none_or(|(_, term)| term != status.term) {
            let term = status.term;
            let command = MasterCommand::Elected {
                leader: ctx.self_upid().clone(),
                term,
            }
            .encode();
            let ticket = group.replica.propose(ctx, command);
            group.election = Some((ticket, term));
            tracing::info!(term, "elected: committing the election before acting");
        }
    }

    /// The election committed: every earlier change is applied; build the core from the
    /// replicated registry and tell every known slave and framework.
    fn take_office(&mut self, ctx: &mut Context<'_>, term: u64) {
        let now = Self::now(ctx);
        let Store::Group(group) = &mut self.store else {
            return;
        };
        if !group.replica.is_leader_with_lease(now) || group.replica.status().term != term {
            return;
        }
        group.acting_term = Some(term);
        let registry = group.replica.with_state(|s| s.registry.clone());
        let pids: Vec<Upid> = registry
            .slaves
            .values()
            .filter_map(|s| s.pid.clone())
            .chain(registry.frameworks.values().filter_map(|f| f.pid.clone()))
            .collect();
        tracing::info!(
            term,
            slaves = registry.slaves.len(),
            frameworks = registry.frameworks.len(),
            "leading the masters"
        );
        group.coord.become_leader(ctx, &group.replica);
        self.start_core(ctx, registry);
        let me = ctx.self_upid().clone();
        for pid in pids {
            ctx.send(
                &pid,
                NewMasterDetectedMessage {
                    leader: Some(me.clone()),
                    term,
                },
            );
        }
    }

    fn start_core(&mut self, ctx: &mut Context<'_>, registry: RegistryState) {
        let now = Self::now(ctx);
        let wall = wall_secs(ctx);
        let run_id = run_id(ctx);
        tracing::info!(%run_id, slaves = registry.slaves.len(), frameworks = registry.frameworks.len(), "master starting");
        self.core = Some(MasterCore::new(
            self.config.clone(),
            registry,
            run_id,
            ctx.self_upid().clone(),
            wall - now.as_secs_f64(),
        ));
        self.carry_out(ctx);
    }

    /// Replaces the core with a synthetic cluster of `spec` (the web console's benchmark:
    /// [`crate::bench::synthetic_cluster`]) and gives the console an hour of made-up history.
    /// Give this master an agent timeout longer than the run: the agents are made up.
    #[doc(hidden)]
    pub fn install_synthetic_cluster(
        &mut self,
        ctx: &mut Context<'_>,
        spec: &crate::bench::SyntheticCluster,
    ) {
        let now = Self::now(ctx);
        let wall = wall_secs(ctx);
        let core = crate::bench::synthetic_cluster(
            spec,
            self.config.clone(),
            ctx.self_upid().clone(),
            wall - now.as_secs_f64(),
        );
        self.console.fill_history_for_bench(&core, now);
        self.core = Some(core);
    }

    /// Changes the health of `count` tasks of the synthetic cluster (the web console's
    /// benchmark: live updates while a page stays open). The status updates go through the
    /// core as if their agents had sent them; what the core would send is noted by the console
    /// and dropped: the agents and frameworks are made up.
    #[doc(hidden)]
    pub fn churn_synthetic_cluster(&mut self, ctx: &mut Context<'_>, count: usize) {
        let now = Self::now(ctx);
        let wall = wall_secs(ctx);
        let Some(core) = self.core.as_mut() else {
            return;
        };
        let total = core.tasks().len();
        if total == 0 {
            return;
        }
        let start = (self.console.seq() as usize).wrapping_mul(count) % total;
        let picks: Vec<(FrameworkId, TaskStatus, Upid)> = core
            .tasks()
            .values()
            .cycle()
            .skip(start)
            .take(count.min(total))
            .filter_map(|task| {
                let pid = core.slaves().get(&task.slave_id)?.pid.clone()?;
                let healthy = task.statuses.back().and_then(|s| s.healthy);
                let mut uuid = [0u8; 16];
                ctx.rng().fill_bytes(&mut uuid);
                let status = TaskStatus {
                    task_id: task.info.task_id.clone(),
                    state: task.state,
                    message: None,
                    source: StatusSource::Slave,
                    reason: None,
                    slave_id: Some(task.slave_id.clone()),
                    healthy: Some(!healthy.unwrap_or(false)),
                    timestamp: wall,
                    uuid: Some(uuid),
                };
                Some((task.framework_id.clone(), status, pid))
            })
            .collect();
        for (framework_id, status, pid) in picks {
            core.handle_status_update(
                now,
                &pid,
                StatusUpdateMessage {
                    framework_id,
                    status,
                    slave_pid: Some(pid.clone()),
                },
            );
        }
        for action in core.drain_actions() {
            self.console.observe(&action);
        }
    }

    /// A protocol message reached a master that does not act: say who leads (a redirect),
    /// unless this master is itself taking office.
    fn redirect(&mut self, ctx: &mut Context<'_>, from: &Upid) {
        if let Store::Group(group) = &self.store {
            let status = group.replica.status();
            if status.role == Role::Leader {
                return;
            }
            ctx.send(
                from,
                NewMasterDetectedMessage {
                    leader: status.leader.clone(),
                    term: status.term,
                },
            );
        }
    }

    /// True while the timers must keep firing: a master alone that has not failed, or any
    /// member of a group (it may lead later).
    fn keeps_timers(&self) -> bool {
        match self.store {
            Store::Local(_) => self.core.is_some(),
            Store::Group(_) => true,
        }
    }

    fn on_tick(&mut self, ctx: &mut Context<'_>, from: &Upid, _: TickTimer) {
        if from != ctx.self_upid() || !self.keeps_timers() {
            return;
        }
        ctx.delay(self.config.tick_interval(), TickTimer);
        // A group member also checks its leadership here: a lease can lapse with no message.
        self.follow_leadership(ctx);
        self.ask_to_join(ctx);
        if !self.is_acting(ctx) {
            return;
        }
        let now = Self::now(ctx);
        self.core.as_mut().expect("acting").handle_tick(now);
        self.carry_out(ctx);
        self.settle(ctx);
        if let Some(core) = &self.core {
            self.console.tick(core, now);
            self.console.refresh_counts(core, now);
        }
    }

    /// A slave's use report, for the console.
    fn on_slave_usage(&mut self, _: &mut Context<'_>, from: &Upid, msg: SlaveUsageMessage) {
        if let Some(core) = &self.core {
            self.console.usage_report(core, from, &msg);
        }
    }

    /// A service's announcement, for the console.
    fn on_announce_service(
        &mut self,
        ctx: &mut Context<'_>,
        from: &Upid,
        msg: AnnounceServiceMessage,
    ) {
        let now = Self::now(ctx);
        self.console.announce(now, from, &msg);
    }

    fn on_allocation(&mut self, ctx: &mut Context<'_>, from: &Upid, _: AllocationTimer) {
        if from != ctx.self_upid() || !self.keeps_timers() {
            return;
        }
        ctx.delay(self.config.allocation_interval, AllocationTimer);
        if !self.is_acting(ctx) {
            return;
        }
        let now = Self::now(ctx);
        self.core.as_mut().expect("acting").handle_allocation(now);
        self.carry_out(ctx);
        self.settle(ctx);
    }

    // ----- fencing: a deposed framework leader cannot act ----------------------------------

    /// Why a call stamped `epoch` under election key `key` must be refused, if it must. Only a
    /// group keeps the coordination store: a master alone accepts every call.
    fn stale_epoch(&mut self, key: &str, epoch: Option<u64>) -> Option<String> {
        let Store::Group(group) = &mut self.store else {
            return None;
        };
        let refusal = match epoch {
            None => Some(format!("no leadership epoch given for election key {key}")),
            Some(epoch) => group
                .replica
                .with_state(|s| s.coord.fencing().check(key, epoch))
                .err()
                .map(|e| e.to_string()),
        };
        if refusal.is_some() {
            group.stale_epoch_refusals += 1;
        }
        refusal
    }

    /// The election key a framework registered with, if any.
    fn fenced_key(&self, framework: &FrameworkId) -> Option<String> {
        match &self.store {
            Store::Group(group) => group.fenced.get(framework).cloned(),
            Store::Local(_) => None,
        }
    }

    /// Framework calls refused for a stale epoch since this master started.
    pub fn stale_epoch_refusals(&self) -> u64 {
        match &self.store {
            Store::Group(group) => group.stale_epoch_refusals,
            Store::Local(_) => 0,
        }
    }

    /// Fenced framework calls (registrations, launches, kills) accepted while acting since
    /// this master started, and the key and epoch of the last one. Read-only, for observers:
    /// one event handles one message, so an observer that looks after every event sees each.
    pub fn fenced_calls_accepted(&self) -> (u64, Option<(&str, u64)>) {
        match &self.store {
            Store::Group(group) => (
                group.fenced_accepted.0,
                group
                    .fenced_accepted
                    .1
                    .as_ref()
                    .map(|(k, e)| (k.as_str(), *e)),
            ),
            Store::Local(_) => (0, None),
        }
    }

    /// The epoch at which election key `key` is held in this master's copy of the
    /// coordination store, if it is. Read-only, for observers.
    pub fn fencing_epoch(&self, key: &str) -> Option<u64> {
        match &self.store {
            Store::Group(group) => group
                .replica
                .with_state(|s| s.coord.fencing().holder(key).map(|h| h.epoch)),
            Store::Local(_) => None,
        }
    }

    /// Records a fenced call accepted (see [`MasterProcess::fenced_calls_accepted`]).
    fn note_fenced(&mut self, ctx: &mut Context<'_>, key: &str, epoch: u64) {
        if !self.is_acting(ctx) {
            return;
        }
        if let Store::Group(group) = &mut self.store {
            group.fenced_accepted.0 += 1;
            group.fenced_accepted.1 = Some((key.to_string(), epoch));
        }
    }

    fn pin(&mut self, framework: Option<FrameworkId>, key: String) {
        if let (Store::Group(group), Some(framework)) = (&mut self.store, framework) {
            group.fenced.insert(framework, key);
        }
    }

    /// Fix the framework's principal from its certificate ([`crate::core::bind_principal`]);
    /// on refusal, tell the scheduler why and return false.
    fn bind_principal(
        &mut self,
        ctx: &mut Context<'_>,
        from: &Upid,
        info: &mut FrameworkInfo,
    ) -> bool {
        let certificate = ctx.peer().map(|p| p.principal.clone());
        let registered = info.id.as_ref().and_then(|id| {
            self.core
                .as_ref()
                .and_then(|core| core.frameworks().get(id))
                .and_then(|f| f.info.principal.clone())
        });
        match crate::core::bind_principal(
            info,
            certificate.as_ref().map(|p| p.as_deref()),
            registered.as_deref(),
        ) {
            Ok(()) => true,
            Err(message) => {
                tracing::warn!(%from, %message, "framework registration refused: principal");
                ctx.send(from, FrameworkErrorMessage { message });
                false
            }
        }
    }

    fn on_register_framework(
        &mut self,
        ctx: &mut Context<'_>,
        from: &Upid,
        mut msg: RegisterFrameworkMessage,
    ) {
        if !self.bind_principal(ctx, from, &mut msg.framework) {
            return;
        }
        let token = msg.fencing.clone();
        if let (true, Some(token)) = (self.is_acting(ctx), &token) {
            if let Some(why) = self.stale_epoch(&token.key, Some(token.epoch)) {
                tracing::warn!(%from, why, "framework registration refused: stale epoch");
                ctx.send(
                    from,
                    FrameworkErrorMessage {
                        message: format!("stale leadership epoch: {why}"),
                    },
                );
                return;
            }
            self.note_fenced(ctx, &token.key, token.epoch);
        }
        self.feed_register_framework(ctx, from, msg);
        if let Some(token) = token {
            let id = self.core.as_ref().and_then(|core| {
                core.frameworks()
                    .values()
                    .find(|f| f.pid.as_ref() == Some(from))
                    .map(|f| f.id.clone())
            });
            self.pin(id, token.key);
        }
    }

    fn on_reregister_framework(
        &mut self,
        ctx: &mut Context<'_>,
        from: &Upid,
        mut msg: ReregisterFrameworkMessage,
    ) {
        if !self.bind_principal(ctx, from, &mut msg.framework) {
            return;
        }
        let token = msg.fencing.clone();
        let id = msg.framework.id.clone();
        if self.is_acting(ctx) {
            let key = token
                .as_ref()
                .map(|t| t.key.clone())
                .or_else(|| id.as_ref().and_then(|id| self.fenced_key(id)));
            if let Some(key) = key {
                if let Some(why) = self.stale_epoch(&key, token.as_ref().map(|t| t.epoch)) {
                    tracing::warn!(%from, why, "framework re-registration refused: stale epoch");
                    ctx.send(
                        from,
                        FrameworkErrorMessage {
                            message: format!("stale leadership epoch: {why}"),
                        },
                    );
                    return;
                }
                if let Some(t) = &token {
                    self.note_fenced(ctx, &key, t.epoch);
                }
            }
        }
        self.feed_reregister_framework(ctx, from, msg);
        if let Some(token) = token {
            self.pin(id, token.key);
        }
    }

    fn on_launch_tasks(&mut self, ctx: &mut Context<'_>, from: &Upid, msg: LaunchTasksMessage) {
        if let Some(key) = self.fenced_key(&msg.framework_id) {
            if let Some(why) = self.stale_epoch(&key, msg.fencing_epoch) {
                tracing::warn!(%from, framework = %msg.framework_id, why, "launch refused: stale epoch");
                return;
            }
            if let Some(epoch) = msg.fencing_epoch {
                self.note_fenced(ctx, &key, epoch);
            }
        }
        self.feed_launch_tasks(ctx, from, msg);
    }

    fn on_kill_task(&mut self, ctx: &mut Context<'_>, from: &Upid, msg: KillTaskMessage) {
        if let Some(key) = self.fenced_key(&msg.framework_id) {
            if let Some(why) = self.stale_epoch(&key, msg.fencing_epoch) {
                tracing::warn!(%from, framework = %msg.framework_id, why, "kill refused: stale epoch");
                return;
            }
            if let Some(epoch) = msg.fencing_epoch {
                self.note_fenced(ctx, &key, epoch);
            }
        }
        self.feed_kill_task(ctx, from, msg);
    }

    /// A master asks to join the group: the leader adds it to the voters.
    fn on_join(&mut self, ctx: &mut Context<'_>, from: &Upid, _: JoinMastersMessage) {
        if from.name != ctx.self_upid().name {
            return;
        }
        if !self.is_acting(ctx) {
            self.redirect(ctx, from);
            return;
        }
        let Store::Group(group) = &self.store else {
            return;
        };
        let mut voters = group.replica.status().voters.clone();
        if voters.contains(from) {
            return;
        }
        voters.push(from.clone());
        self.change_members(ctx, Some(from.clone()), voters);
    }

    /// A joining master asks again until it is a voter.
    fn ask_to_join(&mut self, ctx: &mut Context<'_>) {
        let me = ctx.self_upid().clone();
        let Store::Group(group) = &mut self.store else {
            return;
        };
        if group.join_via.is_empty() {
            return;
        }
        if group.replica.status().voters.contains(&me) {
            tracing::info!("joined the masters' group as a voter");
            group.join_via.clear();
            return;
        }
        for m in &group.join_via {
            if *m != me {
                ctx.send(m, JoinMastersMessage {});
            }
        }
    }

    /// Any process may ask who leads: a master alone always does (term 0); a group member
    /// names itself only while it acts. A candidate, or a replica leading its term without
    /// acting (taking office, or its lease lapsed), does not answer, as [`Self::redirect`]: it
    /// may act in the very term it would give, and a querier that heard from a follower that
    /// it leads should not be told otherwise by it. A follower's "no leader" is true of its
    /// whole term: it can only lead in a later one.
    fn on_leader_query(&mut self, ctx: &mut Context<'_>, from: &Upid, _: LeaderQueryMessage) {
        let me = ctx.self_upid().clone();
        let leader = if self.is_acting(ctx) {
            Some(me)
        } else {
            if let Store::Group(group) = &self.store {
                if matches!(group.replica.status().role, Role::Candidate | Role::Leader) {
                    return;
                }
            }
            self.leading_master(&me)
        };
        let term = self.term();
        ctx.send(from, NewMasterDetectedMessage { leader, term });
    }

    fn on_allocate_soon(&mut self, ctx: &mut Context<'_>, from: &Upid, _: AllocateSoonTimer) {
        if from != ctx.self_upid() || !self.is_acting(ctx) {
            return;
        }
        let now = Self::now(ctx);
        self.core
            .as_mut()
            .expect("acting")
            .handle_batched_allocation(now);
        self.carry_out(ctx);
        self.settle(ctx);
    }
}

/// Defines a handler that feeds one message type to the core's `handle_*` method.
macro_rules! feed {
    ($($fn_name:ident: $msg:ty => $handle:ident),* $(,)?) => {
        impl MasterProcess {
            $(
                fn $fn_name(&mut self, ctx: &mut Context<'_>, from: &Upid, msg: $msg) {
                    if !self.is_acting(ctx) {
                        self.redirect(ctx, from);
                        return;
                    }
                    let now = Self::now(ctx);
                    let core = self.core.as_mut().expect("acting");
                    core.$handle(now, from, msg);
                    self.carry_out(ctx);
                    self.settle(ctx);
                }
            )*
        }
    };
}

feed! {
    on_register_slave: RegisterSlaveMessage => handle_register_slave,
    on_reregister_slave: ReregisterSlaveMessage => handle_reregister_slave,
    on_slave_heartbeat: SlaveHeartbeatMessage => handle_slave_heartbeat,
    on_unregister_slave: UnregisterSlaveMessage => handle_unregister_slave,
    on_status_update: StatusUpdateMessage => handle_status_update,
    on_status_update_ack: StatusUpdateAcknowledgementMessage => handle_status_update_acknowledgement,
    feed_register_framework: RegisterFrameworkMessage => handle_register_framework,
    feed_reregister_framework: ReregisterFrameworkMessage => handle_reregister_framework,
    on_unregister_framework: UnregisterFrameworkMessage => handle_unregister_framework,
    feed_launch_tasks: LaunchTasksMessage => handle_launch_tasks,
    on_decline_offers: DeclineOffersMessage => handle_decline_offers,
    feed_kill_task: KillTaskMessage => handle_kill_task,
    on_reconcile_tasks: ReconcileTasksMessage => handle_reconcile_tasks,
    on_revive_offers: ReviveOffersMessage => handle_revive_offers,
    on_suppress_offers: SuppressOffersMessage => handle_suppress_offers,
    on_respond_inverse_offers: RespondInverseOffersMessage => handle_respond_inverse_offers,
}

fn perform(ctx: &mut Context<'_>, action: Action) {
    match action {
        Action::Persist(_) => unreachable!("persisted by carry_out"),
        Action::Send { to, message } => send_outgoing(ctx, &to, message),
        Action::Link(upid) => ctx.link(&upid),
        Action::Unlink(upid) => ctx.unlink(&upid),
        Action::AllocateAfter(after) => {
            ctx.delay(after, AllocateSoonTimer);
        }
    }
}

fn send_outgoing(ctx: &mut Context<'_>, to: &Upid, message: Outgoing) {
    match message {
        Outgoing::SlaveRegistered(m) => ctx.send(to, m),
        Outgoing::SlaveReregistered(m) => ctx.send(to, m),
        Outgoing::ReregisterRequest(m) => ctx.send(to, m),
        Outgoing::RunTask(m) => ctx.send(to, *m),
        Outgoing::KillTask(m) => ctx.send(to, m),
        Outgoing::StatusUpdate(m) => ctx.send(to, m),
        Outgoing::StatusUpdateAcknowledgement(m) => ctx.send(to, m),
        Outgoing::ShutdownFramework(m) => ctx.send(to, m),
        Outgoing::FrameworkRegistered(m) => ctx.send(to, m),
        Outgoing::FrameworkReregistered(m) => ctx.send(to, m),
        Outgoing::ResourceOffers(m) => ctx.send(to, m),
        Outgoing::RescindResourceOffer(m) => ctx.send(to, m),
        Outgoing::LostSlave(m) => ctx.send(to, m),
        Outgoing::FrameworkError(m) => ctx.send(to, m),
        Outgoing::InverseOffers(m) => ctx.send(to, m),
        Outgoing::RescindInverseOffer(m) => ctx.send(to, m),
    }
}

/// The calendar time by the runtime's clock, in seconds since the Unix epoch.
fn wall_secs(ctx: &Context<'_>) -> f64 {
    ctx.wall_clock()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// A fresh run id from the process's seeded RNG, shaped like a UUID as Mesos' master ids are.
///
/// The calendar time is mixed in: a node restarted with the same seed draws the same bytes,
/// and a restarted master must still get a new run id.
fn run_id(ctx: &mut Context<'_>) -> String {
    let mut b = [0u8; 16];
    ctx.rng().fill_bytes(&mut b);
    let wall_nanos = ctx
        .wall_clock()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    for (byte, w) in b.iter_mut().zip(wall_nanos.to_le_bytes()) {
        *byte ^= w;
    }
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

impl Process for MasterProcess {
    fn install(h: &mut Handlers<Self>) {
        plateau_replica::install(h);
        h.on(Self::on_tick)
            .on(Self::on_allocation)
            .on(Self::on_allocate_soon)
            .on(Self::on_leader_query)
            .on(Self::on_join)
            .on(Self::on_coord_request)
            .on(Self::on_keep_alive)
            .on(Self::on_watch)
            .on(Self::on_unwatch)
            .on(Self::on_lease_expiry)
            .on(Self::on_register_slave)
            .on(Self::on_reregister_slave)
            .on(Self::on_slave_heartbeat)
            .on(Self::on_unregister_slave)
            .on(Self::on_status_update)
            .on(Self::on_status_update_ack)
            .on(Self::on_register_framework)
            .on(Self::on_reregister_framework)
            .on(Self::on_unregister_framework)
            .on(Self::on_launch_tasks)
            .on(Self::on_decline_offers)
            .on(Self::on_kill_task)
            .on(Self::on_reconcile_tasks)
            .on(Self::on_revive_offers)
            .on(Self::on_suppress_offers)
            .on(Self::on_respond_inverse_offers)
            .on(Self::on_slave_usage)
            .on(Self::on_announce_service);
        // Who may send what from another node (the role its certificate names); anything
        // else, timers included, only from this node.
        h.allow_roles(RoleSet::ANY, &[LeaderQueryMessage::NAME])
            .allow_roles(
                RoleSet::of(&[PeerRole::Master]),
                &[
                    JoinMastersMessage::NAME,
                    plateau_replica::network::ReplicaRequestMessage::NAME,
                    plateau_replica::network::ReplicaResponseMessage::NAME,
                ],
            )
            .allow_roles(
                RoleSet::of(&[PeerRole::Slave]),
                &[
                    RegisterSlaveMessage::NAME,
                    ReregisterSlaveMessage::NAME,
                    SlaveHeartbeatMessage::NAME,
                    UnregisterSlaveMessage::NAME,
                    StatusUpdateMessage::NAME,
                    SlaveUsageMessage::NAME,
                ],
            )
            .allow_roles(
                RoleSet::of(&[PeerRole::Balancer]),
                &[AnnounceServiceMessage::NAME],
            )
            .allow_roles(
                RoleSet::of(&[PeerRole::Framework]),
                &[
                    RegisterFrameworkMessage::NAME,
                    ReregisterFrameworkMessage::NAME,
                    UnregisterFrameworkMessage::NAME,
                    LaunchTasksMessage::NAME,
                    DeclineOffersMessage::NAME,
                    KillTaskMessage::NAME,
                    ReconcileTasksMessage::NAME,
                    ReviveOffersMessage::NAME,
                    SuppressOffersMessage::NAME,
                    RespondInverseOffersMessage::NAME,
                    StatusUpdateAcknowledgementMessage::NAME,
                    CoordRequestMessage::NAME,
                    LeaseKeepAliveMessage::NAME,
                    WatchMessage::NAME,
                    UnwatchMessage::NAME,
                ],
            )
            .allow_others(RoleSet::NONE);
    }

    fn initialize(&mut self, ctx: &mut Context<'_>) {
        self.started_at = Self::now(ctx);
        match &mut self.store {
            Store::Local(_) => {
                let registry = self.recovered.take().unwrap_or_default();
                self.start_core(ctx, registry);
                if self.core.is_none() {
                    return;
                }
            }
            Store::Group(group) => {
                tracing::info!(members = ?group.replica.status().voters, "master joining its group");
                group.replica.start(ctx);
            }
        }
        ctx.delay(self.config.tick_interval(), TickTimer);
        ctx.delay(self.config.allocation_interval, AllocationTimer);
        self.settle(ctx);
    }

    fn exited(&mut self, ctx: &mut Context<'_>, upid: &Upid) {
        if !self.is_acting(ctx) {
            return;
        }
        let now = Self::now(ctx);
        self.core.as_mut().expect("acting").handle_exited(now, upid);
        self.carry_out(ctx);
        self.settle(ctx);
    }
}

impl HostsReplica for MasterProcess {
    type State = MasterState;

    fn replica(&mut self) -> Option<&mut Replica<MasterState>> {
        match &mut self.store {
            Store::Group(g) => Some(&mut g.replica),
            Store::Local(_) => None,
        }
    }

    fn replica_changed(&mut self, ctx: &mut Context<'_>) {
        self.settle(ctx);
    }
}
