//! Keeper: a small framework that keeps apps running — the simulated workload.
//!
//! A Keeper framework owns a few *apps*; an app wants `instances` copies of one task, with at
//! most `max_per_host` of them on one host (the constraint the harness checks). Keeper is a
//! plain [`Scheduler`] over the SDK, as Marathon is, and behaves like a tiny Marathon:
//!
//! - it launches on offers while an app has fewer live instances than wanted, respecting the
//!   per-host limit; it suppresses offers after a quiet spell with nothing missing. While
//!   instances come and go it stays unsuppressed and declines with a long filter: a filter
//!   refuses only what was declined, so the resources a finished task frees come back as
//!   fresh offers without a revive. It revives when something is missing while it is
//!   suppressed, or when something has been missing for a while with no launch (the offers
//!   it declined are held back until their filters expire); a revive clears every filter
//!   and makes the master offer every free slave again, so it is rare;
//! - it forgets a task when its status is terminal (or unknown to the master), so the next
//!   offers replace it;
//! - a task whose slave is unreachable still counts for a grace period, then is given up
//!   (killed, not counted); if it comes back, extras are killed;
//! - tasks it does not know (orphans after a crash) are killed;
//! - after (re-)registration it reconciles; tasks stuck without news are reconciled explicitly.
//!
//! What it must not forget across its own crash is on a [`KeeperDisk`] held by the harness:
//! its framework id, the next task number and the tasks it launched. Each write is written
//! before the message that depends on it is sent, and every write is synced (the simulated
//! disk has no write cache; see the crate docs).
//!
//! Task commands follow the simulated containerizer's syntax (`sim:run=30s;exit=1`,
//! `sim:run=5s;oom`): the [`Workload`] draws how long each task runs and how it ends, which is
//! how task failures and OOMs enter a run.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::Duration;

use plateau_runtime::{Context, Handlers, Message, Upid};
use plateau_sdk::{
    CommandInfo, Declines, Driver, Filters, FrameworkId, Offer, OfferId, Resources, Scheduler,
    SchedulerDriver, SlaveId, TaskId, TaskInfo, TaskState, TaskStatus,
};
use serde::{Deserialize, Serialize};

use crate::limits::{KEEPER_RECONCILE_BATCH_MAX, KEEPER_TASKS_PER_OFFER_MAX};

/// How often Keeper looks at its tasks.
pub const KEEPER_TICK: Duration = Duration::from_secs(5);
/// A task without news for this long is reconciled explicitly.
pub const KEEPER_STALE_AFTER: Duration = Duration::from_secs(30);
/// A task on an unreachable slave still counts for this long.
pub const KEEPER_UNREACHABLE_GRACE: Duration = Duration::from_secs(60);
/// A task still staging (its slave never reported it) after this long is given up on: the
/// launch may have been lost on its way to the slave.
pub const KEEPER_STAGING_TIMEOUT: Duration = Duration::from_secs(60);
/// A kill not answered is sent again after this long.
pub const KEEPER_KILL_RETRY: Duration = Duration::from_secs(15);
/// Nothing missing for this long: suppress offers.
pub const KEEPER_SUPPRESS_AFTER: Duration = Duration::from_secs(60);
/// At most one revive per this long (a revive makes the master offer every free slave again).
pub const KEEPER_REVIVE_INTERVAL: Duration = Duration::from_secs(5);
/// Something missing for this long, with no launch and no revive meanwhile: revive although
/// offers are not suppressed (what this framework declined is held back by its filters).
pub const KEEPER_STARVED_AFTER: Duration = Duration::from_secs(10);
/// Refuse filter of an offer declined while nothing is missing, seconds.
pub const KEEPER_DECLINE_SATISFIED_SECS: f64 = 60.0;
/// Refuse filter of an offer that fits nothing missing (constraints, size), seconds.
pub const KEEPER_DECLINE_UNFIT_SECS: f64 = 30.0;
/// Period of the implicit reconciliation: 10 minutes, Marathon's `--reconciliation_interval`
/// (each one answers every task of the framework, one status update each).
pub const KEEPER_RECONCILE_INTERVAL: Duration = Duration::from_secs(600);

/// One app: `instances` copies of a task.
#[derive(Debug, Clone, PartialEq)]
pub struct AppSpec {
    /// Its id; task ids are `<id>.<n>`.
    pub id: String,
    /// Instances wanted.
    pub instances: u32,
    /// At most this many instances on one host (the constraint).
    pub max_per_host: u32,
    /// Scalar resources of one instance.
    pub resources: Resources,
    /// Ports of one instance.
    pub ports: u32,
}

/// How tasks behave once launched (drawn per task from the framework's seeded RNG).
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    /// Shortest run of a task, in seconds; with `run_secs_max` 0 tasks run until killed.
    pub run_secs_min: u64,
    /// Longest run of a task, in seconds; 0 means forever.
    pub run_secs_max: u64,
    /// Probability that a task ends with a non-zero exit code.
    pub fail_probability: f64,
    /// Probability that a task is OOM-killed at the end of its run.
    pub oom_probability: f64,
}

impl Workload {
    /// Tasks that run until killed.
    pub fn forever() -> Self {
        Workload {
            run_secs_min: 0,
            run_secs_max: 0,
            fail_probability: 0.0,
            oom_probability: 0.0,
        }
    }

    /// A command for one task, drawn from `rng`.
    pub fn command(&self, rng: &mut plateau_runtime::Rng) -> String {
        if self.run_secs_max == 0 {
            return "sim:exit=0".to_string();
        }
        let secs = rng.between(self.run_secs_min.min(self.run_secs_max), self.run_secs_max);
        if rng.chance(self.oom_probability) {
            format!("sim:run={secs}s;oom")
        } else if rng.chance(self.fail_probability) {
            format!("sim:run={secs}s;exit=1")
        } else {
            format!("sim:run={secs}s;exit=0")
        }
    }
}

/// Settings of one Keeper framework.
#[derive(Debug, Clone, PartialEq)]
pub struct KeeperConfig {
    /// Framework name (unique in a cluster: task ids start with app ids, which start with it).
    pub name: String,
    /// Its apps.
    pub apps: Vec<AppSpec>,
    /// How its tasks behave.
    pub workload: Workload,
    /// Failover timeout given to the master, seconds.
    pub failover_timeout_secs: f64,
}

/// A task as stored on Keeper's disk.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredTask {
    /// Index of its app.
    pub app: usize,
    /// Its slave.
    pub slave_id: SlaveId,
    /// Its slave's host name.
    pub hostname: String,
}

/// What Keeper keeps on disk.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeeperStore {
    /// The framework id, once registered.
    pub framework_id: Option<FrameworkId>,
    /// Next task number.
    pub next_task: u64,
    /// Tasks launched and not known to be over.
    pub tasks: BTreeMap<TaskId, StoredTask>,
}

/// Keeper's simulated disk, shared between the harness and the framework's incarnations.
/// Every write is synced: a crash loses nothing written before it.
#[derive(Debug, Clone, Default)]
pub struct KeeperDisk(Rc<RefCell<KeeperStore>>);

impl KeeperDisk {
    /// An empty disk.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of what is stored.
    pub fn snapshot(&self) -> KeeperStore {
        self.0.borrow().clone()
    }

    fn with<R>(&self, f: impl FnOnce(&mut KeeperStore) -> R) -> R {
        f(&mut self.0.borrow_mut())
    }
}

/// Keeper's view of one task.
#[derive(Debug, Clone)]
struct KeeperTask {
    app: usize,
    hostname: String,
    state: TaskState,
    /// True once a status about it arrived in this incarnation.
    confirmed: bool,
    /// Last status (or launch, or recovery) time.
    last_news: Duration,
    /// When `state` last changed.
    state_since: Duration,
    unreachable_since: Option<Duration>,
    /// Given up on (unreachable too long, an extra, or an orphan): killed, not counted.
    killing: bool,
    last_kill: Option<Duration>,
    counted: bool,
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

/// Keeper's periodic timer.
#[derive(Debug, Serialize, Deserialize)]
pub struct KeeperTick;
impl Message for KeeperTick {
    const NAME: &'static str = "sim.KeeperTick";
}

/// Counters of one Keeper incarnation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeeperCounters {
    /// Tasks sent in launches.
    pub launched: u64,
    /// Kills sent.
    pub kills: u64,
    /// Offers declined.
    pub declined: u64,
    /// Revives sent (each makes the master offer every free slave again).
    pub revives: u64,
}

/// The Keeper scheduler (see the [module docs](self)).
pub struct Keeper {
    config: KeeperConfig,
    disk: KeeperDisk,
    tasks: BTreeMap<TaskId, KeeperTask>,
    /// Counted instances per app.
    live: Vec<u32>,
    /// Counted instances per (app, host).
    per_host: BTreeMap<(usize, String), u32>,
    /// Apps with fewer counted instances than wanted.
    short: BTreeSet<usize>,
    /// Apps to look at for extras at the next tick.
    dirty: BTreeSet<usize>,
    /// Tasks to look at at each tick (not running, or being killed).
    attention: BTreeSet<TaskId>,
    suppressed: bool,
    last_offer: Duration,
    last_revive: Option<Duration>,
    /// When the last task was launched.
    last_launch: Duration,
    /// Since when nothing is missing.
    satisfied_since: Option<Duration>,
    /// Since when something is missing.
    short_since: Option<Duration>,
    last_reconcile: Duration,
    cursor: usize,
    counters: KeeperCounters,
}

impl Keeper {
    /// A Keeper recovering from `disk` (empty on first start).
    pub fn new(config: KeeperConfig, disk: KeeperDisk) -> Self {
        let apps = config.apps.len();
        let mut keeper = Keeper {
            config,
            disk,
            tasks: BTreeMap::new(),
            live: vec![0; apps],
            per_host: BTreeMap::new(),
            short: (0..apps).collect(),
            dirty: BTreeSet::new(),
            attention: BTreeSet::new(),
            suppressed: false,
            last_offer: Duration::ZERO,
            last_revive: None,
            last_launch: Duration::ZERO,
            satisfied_since: None,
            short_since: None,
            last_reconcile: Duration::ZERO,
            cursor: 0,
            counters: KeeperCounters::default(),
        };
        let stored = keeper.disk.snapshot();
        for (id, t) in stored.tasks {
            if t.app >= apps {
                continue;
            }
            keeper.tasks.insert(
                id.clone(),
                KeeperTask {
                    app: t.app,
                    hostname: t.hostname,
                    state: TaskState::Staging,
                    confirmed: false,
                    last_news: Duration::ZERO,
                    state_since: Duration::ZERO,
                    unreachable_since: None,
                    killing: false,
                    last_kill: None,
                    counted: false,
                },
            );
            keeper.recount(&id);
            keeper.attention.insert(id);
        }
        keeper
    }

    /// Its configuration.
    pub fn config(&self) -> &KeeperConfig {
        &self.config
    }

    /// Counted (live, not given up) instances of app `app`.
    pub fn live_instances(&self, app: usize) -> u32 {
        self.live.get(app).copied().unwrap_or(0)
    }

    /// Tasks Keeper believes are running, per app.
    pub fn running_instances(&self, app: usize) -> u32 {
        self.tasks
            .values()
            .filter(|t| t.app == app && t.counted && t.state == TaskState::Running)
            .count() as u32
    }

    /// Changes how tasks launched from now on behave (the harness stops task failures when
    /// faults stop).
    pub fn set_workload(&mut self, workload: Workload) {
        self.config.workload = workload;
    }

    /// Counters of this incarnation.
    pub fn counters(&self) -> &KeeperCounters {
        &self.counters
    }

    /// True when no app misses an instance.
    pub fn is_satisfied(&self) -> bool {
        self.short.is_empty()
    }

    fn should_count(t: &KeeperTask) -> bool {
        !t.killing && is_live(t.state)
    }

    /// Brings the counters in line with the task's current fields.
    fn recount(&mut self, id: &TaskId) {
        let Some(t) = self.tasks.get_mut(id) else {
            return;
        };
        let want = Self::should_count(t);
        if want == t.counted {
            return;
        }
        t.counted = want;
        let (app, host) = (t.app, t.hostname.clone());
        let entry = self.per_host.entry((app, host.clone())).or_insert(0);
        if want {
            *entry += 1;
            self.live[app] += 1;
        } else {
            *entry -= 1;
            if *entry == 0 {
                self.per_host.remove(&(app, host));
            }
            self.live[app] -= 1;
        }
        self.refresh_app(app);
    }

    fn refresh_app(&mut self, app: usize) {
        let wanted = self.config.apps[app].instances;
        if self.live[app] < wanted {
            self.short.insert(app);
        } else {
            self.short.remove(&app);
        }
        if self.live[app] > wanted {
            self.dirty.insert(app);
        }
    }

    fn forget(&mut self, id: &TaskId) {
        if let Some(t) = self.tasks.get_mut(id) {
            t.killing = true;
        }
        self.recount(id);
        self.tasks.remove(id);
        self.attention.remove(id);
        self.disk.with(|d| d.tasks.remove(id));
    }

    fn kill(&mut self, driver: &mut Driver<'_, '_>, id: &TaskId, now: Duration) {
        if let Some(t) = self.tasks.get_mut(id) {
            t.killing = true;
            t.last_kill = Some(now);
        }
        self.recount(id);
        self.attention.insert(id.clone());
        self.counters.kills += 1;
        driver.kill_task(id);
    }

    fn now(driver: &mut Driver<'_, '_>) -> Duration {
        driver.ctx().now().since_origin()
    }

    /// Notes since when something is missing or nothing is, and revives if something is
    /// missing and offers are suppressed, or nothing was launched for
    /// [`KEEPER_STARVED_AFTER`] (rate-limited; the tick retries).
    fn wants_offers(&mut self, driver: &mut Driver<'_, '_>, now: Duration) {
        if self.short.is_empty() {
            self.satisfied_since.get_or_insert(now);
            self.short_since = None;
            return;
        }
        self.satisfied_since = None;
        let short_since = *self.short_since.get_or_insert(now);
        let progress = short_since
            .max(self.last_launch)
            .max(self.last_revive.unwrap_or_default());
        if self.suppressed || now >= progress + KEEPER_STARVED_AFTER {
            self.revive(driver, now);
        }
    }

    fn revive(&mut self, driver: &mut Driver<'_, '_>, now: Duration) {
        if self
            .last_revive
            .is_some_and(|at| now < at + KEEPER_REVIVE_INTERVAL)
        {
            return;
        }
        self.last_revive = Some(now);
        self.suppressed = false;
        self.counters.revives += 1;
        driver.revive_offers();
    }

    /// Tasks for one offer: apps short of instances, round robin, within the per-host limit.
    fn tasks_for(&mut self, driver: &mut Driver<'_, '_>, offer: &Offer) -> Vec<TaskInfo> {
        let mut left = offer.resources.clone();
        let mut tasks = Vec::new();
        let short: Vec<usize> = {
            let (after, before): (Vec<usize>, Vec<usize>) =
                self.short.iter().partition(|a| **a >= self.cursor);
            after.into_iter().chain(before).collect()
        };
        let now = Self::now(driver);
        for app in short {
            if tasks.len() >= KEEPER_TASKS_PER_OFFER_MAX {
                break;
            }
            let spec = self.config.apps[app].clone();
            loop {
                let wanted = spec.instances;
                let on_host = self
                    .per_host
                    .get(&(app, offer.hostname.clone()))
                    .copied()
                    .unwrap_or(0);
                if self.live[app] >= wanted
                    || on_host >= spec.max_per_host
                    || tasks.len() >= KEEPER_TASKS_PER_OFFER_MAX
                {
                    break;
                }
                let mut ports_left = left.ports().clone();
                let Some(ports) = ports_left.take_lowest(spec.ports) else {
                    break;
                };
                let resources = spec.resources.scalars().with_ports(ports);
                let Some(rest) = left.checked_sub(&resources) else {
                    break;
                };
                left = rest;
                let number = self.disk.with(|d| {
                    let n = d.next_task;
                    d.next_task += 1;
                    n
                });
                let task_id = TaskId::new(format!("{}.{number}", spec.id));
                let command = self.config.workload.command(driver.ctx().rng());
                // Written before the launch is sent: a crash right after still knows the task.
                self.disk.with(|d| {
                    d.tasks.insert(
                        task_id.clone(),
                        StoredTask {
                            app,
                            slave_id: offer.slave_id.clone(),
                            hostname: offer.hostname.clone(),
                        },
                    )
                });
                self.tasks.insert(
                    task_id.clone(),
                    KeeperTask {
                        app,
                        hostname: offer.hostname.clone(),
                        state: TaskState::Staging,
                        confirmed: true,
                        last_news: now,
                        state_since: now,
                        unreachable_since: None,
                        killing: false,
                        last_kill: None,
                        counted: false,
                    },
                );
                self.recount(&task_id);
                self.attention.insert(task_id.clone());
                tasks.push(TaskInfo::new(
                    task_id,
                    offer.slave_id.clone(),
                    resources,
                    CommandInfo::shell(&command),
                ));
            }
            self.cursor = app + 1;
        }
        tasks
    }

    /// Kills extras of dirty apps: instances above the wanted count, or above the per-host
    /// limit (newest first).
    fn kill_extras(&mut self, driver: &mut Driver<'_, '_>, now: Duration) {
        let dirty = std::mem::take(&mut self.dirty);
        for app in dirty {
            let spec = self.config.apps[app].clone();
            let mut counted: Vec<(u64, TaskId, String)> = self
                .tasks
                .iter()
                .filter(|(_, t)| t.app == app && t.counted)
                .map(|(id, t)| (task_number(id), id.clone(), t.hostname.clone()))
                .collect();
            counted.sort();
            let mut per_host: BTreeMap<String, u32> = BTreeMap::new();
            let mut kept = 0u32;
            for (_, id, host) in counted {
                let n = per_host.entry(host).or_insert(0);
                if *n >= spec.max_per_host || kept >= spec.instances {
                    self.kill(driver, &id, now);
                } else {
                    *n += 1;
                    kept += 1;
                }
            }
        }
    }

    fn tick(&mut self, driver: &mut Driver<'_, '_>) {
        let now = Self::now(driver);
        let mut stale = Vec::new();
        let attention: Vec<TaskId> = self.attention.iter().cloned().collect();
        for id in attention {
            let Some(t) = self.tasks.get(&id).cloned() else {
                self.attention.remove(&id);
                continue;
            };
            if t.killing {
                if t.last_kill.is_none_or(|at| now >= at + KEEPER_KILL_RETRY) {
                    self.kill(driver, &id, now);
                    // Also ask: a task the master no longer knows is answered "unknown".
                    stale.push((id.clone(), t.state));
                }
                continue;
            }
            if let Some(since) = t.unreachable_since {
                if now >= since + KEEPER_UNREACHABLE_GRACE {
                    self.kill(driver, &id, now);
                }
                continue;
            }
            if t.state == TaskState::Running && t.confirmed {
                self.attention.remove(&id);
                continue;
            }
            if t.state == TaskState::Staging && now >= t.state_since + KEEPER_STAGING_TIMEOUT {
                self.kill(driver, &id, now);
                continue;
            }
            if now >= t.last_news + KEEPER_STALE_AFTER {
                stale.push((id.clone(), t.state));
            }
        }
        for (id, _) in &stale {
            if let Some(t) = self.tasks.get_mut(id) {
                t.last_news = now;
            }
        }
        if driver.is_connected() {
            for batch in stale.chunks(KEEPER_RECONCILE_BATCH_MAX) {
                driver.reconcile_tasks(batch.iter().map(|(id, _)| (id.clone(), None)).collect());
            }
            if now >= self.last_reconcile + KEEPER_RECONCILE_INTERVAL {
                self.last_reconcile = now;
                driver.reconcile_tasks(Vec::new());
            }
        }
        self.kill_extras(driver, now);
        if driver.is_connected() {
            self.wants_offers(driver, now);
            if let Some(since) = self.satisfied_since {
                if !self.suppressed && now >= since + KEEPER_SUPPRESS_AFTER {
                    self.suppressed = true;
                    driver.suppress_offers();
                }
            }
        }
        driver.ctx().delay(KEEPER_TICK, KeeperTick);
    }

    fn handle_tick(
        p: &mut SchedulerDriver<crate::observe::Observed<Keeper>>,
        ctx: &mut Context<'_>,
        from: &Upid,
        _m: KeeperTick,
    ) {
        if from != ctx.self_upid() {
            return;
        }
        let (s, mut d) = p.scheduler_and_driver(ctx);
        s.inner_mut().tick(&mut d);
    }

    fn on_registered(&mut self, driver: &mut Driver<'_, '_>) {
        let now = Self::now(driver);
        self.last_reconcile = now;
        self.suppressed = false;
        self.last_revive = Some(now);
        // Implicit reconciliation: the master's view of every task of the framework. Tasks the
        // master does not know are left to the stale check (the master may not have heard from
        // their slaves yet after its own failover).
        driver.reconcile_tasks(Vec::new());
        driver.revive_offers();
    }
}

fn task_number(id: &TaskId) -> u64 {
    id.as_str()
        .rsplit('.')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

impl Scheduler for Keeper {
    fn registered(&mut self, driver: &mut Driver<'_, '_>, framework_id: &FrameworkId) {
        self.disk
            .with(|d| d.framework_id = Some(framework_id.clone()));
        self.on_registered(driver);
    }

    fn reregistered(&mut self, driver: &mut Driver<'_, '_>) {
        self.on_registered(driver);
    }

    fn resource_offers(&mut self, driver: &mut Driver<'_, '_>, offers: Vec<Offer>) {
        let now = Self::now(driver);
        self.last_offer = now;
        let mut declines = Declines::new();
        for offer in offers {
            let tasks = if self.short.is_empty() {
                Vec::new()
            } else {
                self.tasks_for(driver, &offer)
            };
            if tasks.is_empty() {
                self.counters.declined += 1;
                let refuse_seconds = if self.short.is_empty() {
                    KEEPER_DECLINE_SATISFIED_SECS
                } else {
                    KEEPER_DECLINE_UNFIT_SECS
                };
                declines.add(offer.id.clone(), Filters { refuse_seconds });
            } else {
                self.counters.launched += tasks.len() as u64;
                self.last_launch = now;
                driver.launch_tasks(
                    std::slice::from_ref(&offer.id),
                    tasks,
                    Filters {
                        refuse_seconds: 1.0,
                    },
                );
            }
        }
        declines.send(driver);
        self.wants_offers(driver, now);
    }

    fn offer_rescinded(&mut self, _driver: &mut Driver<'_, '_>, _offer_id: &OfferId) {}

    fn status_update(&mut self, driver: &mut Driver<'_, '_>, status: &TaskStatus) {
        let now = Self::now(driver);
        let id = &status.task_id;
        let Some(t) = self.tasks.get_mut(id) else {
            // Not ours (any more): an orphan. Kill it if it is alive and reachable.
            if is_live(status.state) && status.state != TaskState::Unreachable {
                self.counters.kills += 1;
                driver.kill_task(id);
            }
            return;
        };
        let state = status.state;
        if state.is_terminal() || state == TaskState::Unknown {
            let app = t.app;
            self.forget(id);
            self.refresh_app(app);
            self.wants_offers(driver, now);
            return;
        }
        if t.state != state {
            t.state = state;
            t.state_since = now;
        }
        t.confirmed = true;
        t.last_news = now;
        if state == TaskState::Unreachable {
            t.unreachable_since.get_or_insert(now);
            self.attention.insert(id.clone());
        } else {
            t.unreachable_since = None;
            if t.killing {
                // Given up on but alive again: kill it (again) now.
                self.kill(driver, &id.clone(), now);
            } else if state != TaskState::Running {
                self.attention.insert(id.clone());
            }
        }
        self.recount(id);
        self.wants_offers(driver, now);
    }

    fn initialize(&mut self, driver: &mut Driver<'_, '_>) {
        let now = Self::now(driver);
        for t in self.tasks.values_mut() {
            t.last_news = now;
            t.state_since = now;
        }
        driver.ctx().delay(KEEPER_TICK, KeeperTick);
    }
}

impl crate::observe::SimScheduler for Keeper {
    fn install_observed(h: &mut Handlers<SchedulerDriver<crate::observe::Observed<Self>>>) {
        h.on(Keeper::handle_tick);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_commands_use_the_simulated_containerizer_syntax() {
        let mut rng = plateau_runtime::Rng::seed_from_u64(1);
        assert_eq!(Workload::forever().command(&mut rng), "sim:exit=0");
        let w = Workload {
            run_secs_min: 10,
            run_secs_max: 20,
            fail_probability: 0.5,
            oom_probability: 0.2,
        };
        let mut seen = BTreeSet::new();
        for _ in 0..500 {
            let c = w.command(&mut rng);
            let kind = if c.ends_with(";oom") {
                "oom"
            } else if c.ends_with(";exit=1") {
                "fail"
            } else {
                assert!(c.ends_with(";exit=0"), "{c}");
                "ok"
            };
            seen.insert(kind);
            let secs: u64 = c
                .strip_prefix("sim:run=")
                .and_then(|rest| rest.split_once("s;"))
                .and_then(|(n, _)| n.parse().ok())
                .unwrap_or_else(|| panic!("unexpected command {c}"));
            assert!((10..=20).contains(&secs), "{c}");
        }
        assert_eq!(seen.len(), 3);
    }

    #[test]
    fn task_numbers_come_from_ids() {
        assert_eq!(task_number(&TaskId::new("keeper0-app3.17")), 17);
        assert_eq!(task_number(&TaskId::new("odd")), 0);
    }

    #[test]
    fn the_disk_survives_a_new_keeper() {
        let disk = KeeperDisk::new();
        disk.with(|d| {
            d.next_task = 7;
            d.tasks.insert(
                TaskId::new("k-app0.3"),
                StoredTask {
                    app: 0,
                    slave_id: SlaveId::new("S1"),
                    hostname: "h1".into(),
                },
            );
        });
        let config = KeeperConfig {
            name: "k".into(),
            apps: vec![AppSpec {
                id: "k-app0".into(),
                instances: 2,
                max_per_host: 1,
                resources: Resources::new(0.1, 32.0, 0.0).unwrap(),
                ports: 0,
            }],
            workload: Workload::forever(),
            failover_timeout_secs: 60.0,
        };
        let keeper = Keeper::new(config, disk.clone());
        // The recovered task counts until reconciliation says otherwise.
        assert_eq!(keeper.live_instances(0), 1);
        assert!(!keeper.is_satisfied());
        assert_eq!(disk.snapshot().next_task, 7);
    }
}
