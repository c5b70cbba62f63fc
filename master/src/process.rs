//! The master process: hosts a [`MasterCore`] on a node (real or simulated) and carries out
//! what it decides.
//!
//! It feeds the core every protocol message, every `exited` of a linked slave or scheduler,
//! and three timers of its own: the agent-loss tick ([`MasterConfig::tick_interval`]), the
//! periodic allocation over every slave ([`MasterConfig::allocation_interval`]) and the
//! batched allocation the core asks for ([`Action::AllocateAfter`]), over the slaves that
//! changed ([`MasterCore::handle_batched_allocation`]). Actions are carried out in order
//! through the [`Context`]; consecutive [`Action::Persist`] changes are committed to the
//! [`Registry`] in one batch *before* any later action, so no reply leaves before its change
//! is durable.
//!
//! A registry that cannot be written is fatal, as in Mesos: the process logs the error,
//! carries out nothing more and terminates (a supervisor restarts the master, which recovers
//! from what was committed).
//!
//! It names no actix type: the same code runs on a [`plateau_runtime::Node`] and in
//! [`plateau_runtime::sim::Sim`].

use std::time::{Duration, SystemTime};

use plateau_runtime::{Context, Handlers, Message, Process, Upid};
use rand_core::RngCore;
use serde::{Deserialize, Serialize};

pub use crate::core::MasterConfig;
use crate::core::{Action, MasterCore, Outgoing};
use crate::error::MasterError;
use crate::messages::*;
use crate::registry::{Registry, RegistryOp, RegistryState};

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

/// The master process (named `master` on its node).
pub struct MasterProcess {
    config: MasterConfig,
    registry: Box<dyn Registry>,
    /// What the registry held at start, until `initialize` builds the core from it.
    recovered: Option<RegistryState>,
    core: Option<MasterCore>,
    started_at: Duration,
    failed: Option<MasterError>,
    prometheus: crate::http::PrometheusMetrics,
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
    /// A master on `registry`, which is read now (so a broken registry fails here, before the
    /// process is spawned).
    pub fn new(config: MasterConfig, registry: Box<dyn Registry>) -> Result<Self, MasterError> {
        let recovered = registry.load()?;
        Ok(MasterProcess {
            config,
            registry,
            recovered: Some(recovered),
            core: None,
            started_at: Duration::ZERO,
            failed: None,
            prometheus: crate::http::PrometheusMetrics::new(),
        })
    }

    /// The core (for HTTP handlers and tests). Panics before `initialize` ran, which the hosts
    /// guarantee never happens for messages and calls.
    pub fn core(&self) -> &MasterCore {
        self.core.as_ref().expect("master initialized")
    }

    /// The core, or `None` before `initialize` or after a registry failure stopped it.
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

    /// Carries out the core's actions in order; persists before anything that follows.
    fn carry_out(&mut self, ctx: &mut Context<'_>) {
        let Some(core) = self.core.as_mut() else {
            return;
        };
        let mut actions = core.drain_actions();
        let mut batch: Vec<RegistryOp> = Vec::new();
        for action in actions.drain(..) {
            if let Action::Persist(op) = action {
                batch.push(op);
                continue;
            }
            if !self.commit(ctx, &mut batch) {
                return;
            }
            match action {
                Action::Persist(_) => unreachable!("handled above"),
                Action::Send { to, message } => send_outgoing(ctx, &to, message),
                Action::Link(upid) => ctx.link(&upid),
                Action::Unlink(upid) => ctx.unlink(&upid),
                Action::AllocateAfter(after) => {
                    ctx.delay(after, AllocateSoonTimer);
                }
            }
        }
        if self.commit(ctx, &mut batch) {
            if let Some(core) = self.core.as_mut() {
                core.recycle_actions(actions);
            }
        }
    }

    /// Commits `batch`; false (and the process terminating) if the registry failed.
    fn commit(&mut self, ctx: &mut Context<'_>, batch: &mut Vec<RegistryOp>) -> bool {
        if batch.is_empty() {
            return true;
        }
        match self.registry.apply(batch) {
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
        }
    }

    fn now(ctx: &Context<'_>) -> Duration {
        ctx.now().since_origin()
    }

    fn is_running(&self) -> bool {
        self.core.is_some()
    }

    fn on_tick(&mut self, ctx: &mut Context<'_>, from: &Upid, _: TickTimer) {
        if from != ctx.self_upid() || !self.is_running() {
            return;
        }
        let now = Self::now(ctx);
        self.core.as_mut().expect("running").handle_tick(now);
        self.carry_out(ctx);
        ctx.delay(self.config.tick_interval(), TickTimer);
    }

    fn on_allocation(&mut self, ctx: &mut Context<'_>, from: &Upid, _: AllocationTimer) {
        if from != ctx.self_upid() || !self.is_running() {
            return;
        }
        let now = Self::now(ctx);
        self.core.as_mut().expect("running").handle_allocation(now);
        self.carry_out(ctx);
        ctx.delay(self.config.allocation_interval, AllocationTimer);
    }

    /// Any process may ask who leads; a master that runs alone always does (term 0).
    fn on_leader_query(&mut self, ctx: &mut Context<'_>, from: &Upid, _: LeaderQueryMessage) {
        let leader = self.is_running().then(|| ctx.self_upid().clone());
        ctx.send(from, NewMasterDetectedMessage { leader, term: 0 });
    }

    fn on_allocate_soon(&mut self, ctx: &mut Context<'_>, from: &Upid, _: AllocateSoonTimer) {
        if from != ctx.self_upid() || !self.is_running() {
            return;
        }
        let now = Self::now(ctx);
        self.core
            .as_mut()
            .expect("running")
            .handle_batched_allocation(now);
        self.carry_out(ctx);
    }
}

/// Defines a handler that feeds one message type to the core's `handle_*` method.
macro_rules! feed {
    ($($fn_name:ident: $msg:ty => $handle:ident),* $(,)?) => {
        impl MasterProcess {
            $(
                fn $fn_name(&mut self, ctx: &mut Context<'_>, from: &Upid, msg: $msg) {
                    let now = Self::now(ctx);
                    let Some(core) = self.core.as_mut() else { return };
                    core.$handle(now, from, msg);
                    self.carry_out(ctx);
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
    on_register_framework: RegisterFrameworkMessage => handle_register_framework,
    on_reregister_framework: ReregisterFrameworkMessage => handle_reregister_framework,
    on_unregister_framework: UnregisterFrameworkMessage => handle_unregister_framework,
    on_launch_tasks: LaunchTasksMessage => handle_launch_tasks,
    on_decline_offers: DeclineOffersMessage => handle_decline_offers,
    on_kill_task: KillTaskMessage => handle_kill_task,
    on_reconcile_tasks: ReconcileTasksMessage => handle_reconcile_tasks,
    on_revive_offers: ReviveOffersMessage => handle_revive_offers,
    on_suppress_offers: SuppressOffersMessage => handle_suppress_offers,
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
    }
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
        h.on(Self::on_tick)
            .on(Self::on_allocation)
            .on(Self::on_allocate_soon)
            .on(Self::on_leader_query)
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
            .on(Self::on_suppress_offers);
    }

    fn initialize(&mut self, ctx: &mut Context<'_>) {
        let now = Self::now(ctx);
        let wall = ctx
            .wall_clock()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let run_id = run_id(ctx);
        let registry = self.recovered.take().unwrap_or_default();
        tracing::info!(%run_id, slaves = registry.slaves.len(), frameworks = registry.frameworks.len(), "master starting");
        self.started_at = now;
        self.core = Some(MasterCore::new(
            self.config.clone(),
            registry,
            run_id,
            ctx.self_upid().clone(),
            wall - now.as_secs_f64(),
        ));
        self.carry_out(ctx);
        if self.is_running() {
            ctx.delay(self.config.tick_interval(), TickTimer);
            ctx.delay(self.config.allocation_interval, AllocationTimer);
        }
    }

    fn exited(&mut self, ctx: &mut Context<'_>, upid: &Upid) {
        let now = Self::now(ctx);
        let Some(core) = self.core.as_mut() else {
            return;
        };
        core.handle_exited(now, upid);
        self.carry_out(ctx);
    }
}
