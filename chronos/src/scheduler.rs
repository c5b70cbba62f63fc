//! The Chronos scheduler: a [`plateau_sdk::Scheduler`] that runs jobs on their schedules,
//! exactly once per scheduled instant, across crashes.
//!
//! # Time
//!
//! Calendar time comes only from the runtime's wall clock (`ctx.wall_clock()`), never from the
//! operating system, so the simulator can drive it. A timer ([`Tick`]) wakes the scheduler at
//! the next due instant, and at least every [`ChronosConfig::tick_max`] (1 s) to notice clock
//! jumps and retry times.
//!
//! # A run's life, and what is written when
//!
//! Every step below is one atomic [`Store::commit`]; nothing is sent, launched or acknowledged
//! before the commit it depends on succeeded.
//!
//! 1. **Intent.** An instant falls due ([`crate::schedule::due_instants`]): a [`Run`] with id
//!    `<job>@<instant ms>` is written as *pending*, in the same transaction as the job's
//!    rewritten schedule (`R<n-1>/<next start>/…`) and its `last_scheduled` instant. An instant
//!    at or before `last_scheduled` is never created again.
//! 2. **Launch.** On an offer that fits (job `cpus`/`mem`/`disk` after the scheduler's
//!    defaults, and its `constraints`), the run is written *launched* with its slave, then the
//!    task is launched. The task id is derived from (job, instant, attempt)
//!    (`ct:<ms>:<attempt>:<job>:`), so a restarted scheduler finds a launched run's task by
//!    asking the master about that exact id (explicit reconciliation after (re)registration,
//!    and for a launch not heard of for [`ChronosConfig::launch_reconcile_after`], again while
//!    the answer is only `TASK_UNREACHABLE`) instead of launching a new one. If the master does
//!    not know the task (`TASK_UNKNOWN`: the launch never reached it), the run goes back to
//!    pending with the **same** attempt and task id; the master refuses a task id already in
//!    use, so one attempt never runs twice. Only the answer to a question still outstanding
//!    counts: a late duplicate of it, arriving after the relaunch, is ignored.
//! 3. **Running**, with its start time (for the duration).
//! 4. **Finished.** Status updates are acknowledged explicitly, *after* their effect is
//!    committed: an update whose effect was lost in a crash is sent again by the slave. A success
//!    updates the job's counters, appends to the history, removes the run and creates the runs
//!    of the dependent jobs that became due ([`JobGraph::handle_run_finished`], edge counters
//!    persisted) — all in one transaction, so a dependent runs exactly once per parent success.
//!    A failure (`TASK_FAILED`, `TASK_ERROR`, `TASK_LOST`, `TASK_DROPPED`, `TASK_GONE`) is
//!    retried as attempt `n+1` of the same instant after [`ChronosConfig::failure_retry`] while
//!    `n < retries` (default 2); after the last, the run is failed (`errorCount`, `lastError`,
//!    dependents only with `softError`). `TASK_KILLED` ends the run with no counters and no
//!    retry, as in Chronos. A finite job whose count reached `R0` is disabled after its last run
//!    succeeds.
//!
//! A store failure stops the scheduler at once (`driver.stop(true)`: its tasks keep running for
//! the failover timeout), exactly as a crash at that point would; a restarted scheduler resumes
//! from the store.
//!
//! # Missed instants and busy jobs (`catchUp`)
//!
//! A job's `catchUp` field (Plateau extension) says what happens to instants that fell due
//! while the scheduler was down (or more than `epsilon`, default 60 s, ago), and to instants
//! that fall due while the previous run of a job with `concurrent: false` is still pending or
//! running:
//!
//! | `catchUp` | missed instants | instant due while the job is busy |
//! |---|---|---|
//! | `"once"` (default) | the latest missed one runs once (Chronos 3.x) | waits, but at most one run waits; later ones are skipped |
//! | `"all"` | every missed instant runs, oldest first | waits in order (at most [`crate::limits::RUNS_WAITING_PER_JOB_MAX`]) |
//! | `"skip"` | dropped (only on-time instants run, Chronos 2.x) | skipped |
//!
//! Waiting runs are recorded (pending) at their instant and launched when the running one ends.
//! Skipped instants consume no `R<n>` repetition. A disabled job passes its instants over.
//!
//! # Other actions
//!
//! - **Run now** creates a run of attempt 0 at the current instant (ms), tagged `:now`; it does
//!   not change the schedule.
//! - **Kill** kills the launched and running tasks of a job; its pending runs stay.
//! - **Delete** kills the job's tasks and drops its runs; children are rewired as in Chronos.
//! - **Disable/enable**: the job's `disabled` field (posted with the job, or
//!   [`ChronosScheduler::set_disabled`]).
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use plateau_master::coord::FencingToken;
use plateau_runtime::{Context, Handlers, Instant, Message, TimerId, Upid};
use plateau_sdk::coord::WriteId;
use plateau_sdk::{
    CommandInfo, Declines, Driver, Filters, FrameworkId, FrameworkInfo, LeaderConfig, Masters,
    Offer, Resources, Scheduler, SchedulerDriver, SlaveId, TaskId, TaskInfo, TaskState, TaskStatus,
};
use serde::{Deserialize, Serialize};

use crate::backend::{Backend, CommitError, Reply};
use crate::constraints;
use crate::job::{CurrentState, Job, JobError, JobGraph, RunOutcome, TaskDefaults, Upserted};
use crate::limits;
use crate::replicated;
use crate::schedule::{due_instants, CatchUp, Schedule, DEFAULT_EPSILON};
use crate::stats::{
    percentile_ranking, JobStatResponse, JobStats, Percentile, PercentileEntry, TaskRecord,
    TaskStatus as StatStatus,
};
use crate::store::{
    parse_task_id, HistoryEntry, JobState, Run, RunOutcomeKind, RunState, Snapshot, Store,
    StoreError, Trigger, Write,
};

/// The process hosting the Chronos scheduler.
pub type ChronosProcess = SchedulerDriver<ChronosScheduler>;

/// Errors of the scheduler's API calls.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is invalid (the message names the field).
    #[error(transparent)]
    Invalid(#[from] JobError),
    /// No job has this name.
    #[error("Job '{0}' not found")]
    NotFound(String),
    /// The scheduler holds too many runs.
    #[error(
        "too many runs in progress: at most {} are allowed",
        limits::RUNS_ACTIVE_MAX
    )]
    TooManyRuns,
    /// The state store failed; the scheduler stopped.
    #[error("the scheduler stopped after a state store failure: {0}")]
    Stopped(String),
    /// This instance is a standby (or was deposed while the request waited): the leader, if
    /// known, serves it.
    #[error("this Chronos is not the leader{}", .leader.as_deref().map(|l| format!(" (the leader is {l})")).unwrap_or_default())]
    NotLeader {
        /// The leader's advertised address, if known.
        leader: Option<String>,
    },
    /// The state cannot take the change now (its writes are behind); ask again.
    #[error("the state store is busy: {0}")]
    Unavailable(String),
    /// A record is larger than the state may hold.
    #[error("{what} is {bytes} bytes stored, at most {max} are allowed")]
    TooLarge {
        /// What is too large.
        what: String,
        /// Its size.
        bytes: usize,
        /// The most allowed.
        max: usize,
    },
}

impl ApiError {
    /// The JSON field the error is about, if any.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            ApiError::Invalid(e) => e.field(),
            _ => None,
        }
    }
}

/// Which endpoint a job was posted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostKind {
    /// `/scheduler/iso8601`: any job (a job with neither schedule nor parents runs once, now).
    Iso8601,
    /// `/scheduler/dependency`: the job must have parents.
    Dependency,
}

/// The scheduler's settings (Chronos' flags and Plateau's timers).
#[derive(Debug, Clone, PartialEq)]
pub struct ChronosConfig {
    /// Framework name (`--mesos_framework_name`, `chronos`).
    pub framework_name: String,
    /// Role (`--mesos_role`, `*`).
    pub role: String,
    /// User of the framework (`--user`): the user of tasks whose job names none. Empty by
    /// default (Chronos' default is `root`): such tasks run as the slave's default task user.
    pub user: String,
    /// Host the scheduler runs on (shown to the master).
    pub hostname: String,
    /// Where its REST API is, `http://host:port` (Mesos' `webui_url`: the web console reaches
    /// Chronos through it). Set by [`crate::http::start`].
    pub webui_url: Option<String>,
    /// How long the master keeps the tasks running while the scheduler is away
    /// (`--failover_timeout`, one week).
    pub failover_timeout_secs: f64,
    /// Resources and user for jobs that leave them at 0 or empty.
    pub defaults: TaskDefaults,
    /// How late an instant may run and still be on time (`--task_epsilon`, 60 s), unless the job
    /// sets `epsilon`.
    pub epsilon: Duration,
    /// Delay before a failed attempt is retried (`--failure_retry`, 60 s).
    pub failure_retry: Duration,
    /// Longest sleep between two evaluations of the schedules.
    pub tick_max: Duration,
    /// Shortest interval between two offer revivals for runs that wait for resources
    /// (`--min_revive_offers_interval`, 5 s). New runs revive at once.
    pub revive_interval: Duration,
    /// How long an offer declined while runs wait is refused, in seconds.
    pub decline_refuse_secs: f64,
    /// How long an offer declined with nothing to run is refused, in seconds.
    pub idle_refuse_secs: f64,
    /// Interval between repeated explicit reconciliations of tasks the master has not answered
    /// for yet.
    pub reconcile_retry: Duration,
    /// A launched task with no status at all after this long is reconciled explicitly: if the
    /// launch was lost on its way, the master answers that it does not know the task, and the
    /// run is launched again (instead of waiting for it forever).
    pub launch_reconcile_after: Duration,
}

impl Default for ChronosConfig {
    fn default() -> Self {
        ChronosConfig {
            framework_name: "chronos".to_string(),
            role: "*".to_string(),
            user: String::new(),
            hostname: String::new(),
            webui_url: None,
            failover_timeout_secs: 604_800.0,
            defaults: TaskDefaults::default(),
            epsilon: DEFAULT_EPSILON,
            failure_retry: Duration::from_secs(60),
            tick_max: Duration::from_secs(1),
            revive_interval: Duration::from_secs(5),
            decline_refuse_secs: 5.0,
            idle_refuse_secs: 30.0,
            reconcile_retry: Duration::from_secs(10),
            launch_reconcile_after: Duration::from_secs(60),
        }
    }
}

/// The scheduler's timer: evaluate the schedules now.
#[derive(Debug, Serialize, Deserialize)]
pub struct Tick;
impl Message for Tick {
    const NAME: &'static str = "chronos.Tick";
}

/// What this instance is, for the REST API: the leader serves it, a standby proxies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// It acts: a single Chronos on its own store, or the elected leader of several.
    Leader,
    /// One of several instances, standing by.
    Standby {
        /// The leader's advertised address (`host:port` of its REST API), if known.
        leader: Option<String>,
    },
}

/// Counters for `/metrics` (since the process started).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Runs created (scheduled, dependency and run-now).
    pub runs_created: u64,
    /// Tasks launched (attempts).
    pub tasks_launched: u64,
    /// Runs that succeeded.
    pub runs_succeeded: u64,
    /// Runs that failed after their retries.
    pub runs_failed: u64,
    /// Runs ended by a kill.
    pub runs_killed: u64,
    /// Attempts retried.
    pub retries: u64,
    /// Instants passed over (disabled job, busy job, skip policy).
    pub instants_skipped: u64,
    /// Offers declined because their slave's machine is scheduled for maintenance.
    pub offers_declined_maintenance: u64,
}

/// A consistent view of the scheduler's gauges and counters, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Jobs defined.
    pub jobs: u64,
    /// Runs waiting to be launched.
    pub runs_pending: u64,
    /// Runs launched or running.
    pub runs_active: u64,
    /// True while registered with a master.
    pub connected: bool,
    /// True while this instance leads (always with a store of its own).
    pub leading: bool,
    /// True after a store failure stopped the scheduler.
    pub stopped: bool,
    /// Counters.
    pub counters: Counters,
}

/// Converts the runtime's calendar time.
fn wall(ctx: &Context<'_>) -> DateTime<Utc> {
    DateTime::<Utc>::from(ctx.wall_clock())
}

fn to_std(delta: TimeDelta) -> Duration {
    delta.to_std().unwrap_or(Duration::ZERO)
}

/// The Chronos scheduler. Create it with [`ChronosScheduler::new`], host it with
/// [`ChronosScheduler::into_driver`].
pub struct ChronosScheduler {
    config: ChronosConfig,
    backend: Backend,
    graph: JobGraph,
    states: BTreeMap<String, JobState>,
    runs: BTreeMap<String, Run>,
    history: BTreeMap<String, VecDeque<(u64, HistoryEntry)>>,
    stats: BTreeMap<String, JobStats>,
    framework_id: Option<String>,
    stopped: Option<String>,
    timer: Option<TimerId>,
    /// Task ids asked about in the last explicit reconciliation and not answered yet.
    unreconciled: BTreeSet<String>,
    last_reconcile: Option<Instant>,
    /// Launched tasks that have not had any status yet, with when they were launched.
    awaiting_status: BTreeMap<String, Instant>,
    last_revive: Option<Instant>,
    connected: bool,
    counters: Counters,
}

impl std::fmt::Debug for ChronosScheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChronosScheduler")
            .field("jobs", &self.graph.len())
            .field("runs", &self.runs.len())
            .field("stopped", &self.stopped)
            .field("backend", &self.backend)
            .finish()
    }
}

impl ChronosScheduler {
    /// A scheduler with the state in `store` (jobs, runs, history, framework id): the only
    /// instance, acting from the start.
    pub fn new(config: ChronosConfig, store: Box<dyn Store>) -> Result<Self, StoreError> {
        let snapshot = store.load()?;
        let mut scheduler = Self::empty(config, Backend::Local(store));
        scheduler.restore(snapshot);
        Ok(scheduler)
    }

    /// One of several instances run as leader + standbys against a group of masters, with the
    /// state in the masters' coordination store (see [`crate::replicated`] for the keys). It
    /// starts as a standby; `address` is its REST API's `host:port` (standbys proxy to the
    /// leader's), `session_ttl` how long a crashed leader keeps the leadership.
    pub fn replicated(config: ChronosConfig, address: &str, session_ttl: Duration) -> Self {
        let leader = replicated::leader_config(&config.framework_name, address, session_ttl);
        Self::empty(config, Backend::replicated(leader))
    }

    fn empty(config: ChronosConfig, backend: Backend) -> Self {
        ChronosScheduler {
            config,
            backend,
            graph: JobGraph::new(),
            states: BTreeMap::new(),
            runs: BTreeMap::new(),
            history: BTreeMap::new(),
            stats: BTreeMap::new(),
            framework_id: None,
            stopped: None,
            timer: None,
            unreconciled: BTreeSet::new(),
            last_reconcile: None,
            awaiting_status: BTreeMap::new(),
            last_revive: None,
            connected: false,
            counters: Counters::default(),
        }
    }

    /// Drops the model (jobs, runs, history and what derives from them): a deposed leader's,
    /// or before an elected one loads the state.
    fn clear_model(&mut self, driver: &mut Driver<'_, '_>) {
        if let Some(timer) = self.timer.take() {
            driver.ctx().cancel(timer);
        }
        self.graph = JobGraph::new();
        self.states.clear();
        self.runs.clear();
        self.history.clear();
        self.stats.clear();
        self.unreconciled.clear();
        self.awaiting_status.clear();
        self.last_reconcile = None;
        self.last_revive = None;
        self.connected = false;
    }

    fn restore(&mut self, snapshot: Snapshot) {
        self.framework_id = snapshot.framework_id;
        // Parents before children: insert whatever has all its parents, until nothing moves.
        let mut left: BTreeMap<String, Job> = snapshot.jobs;
        loop {
            let ready: Vec<String> = left
                .iter()
                .filter(|(_, job)| {
                    job.parents
                        .iter()
                        .flatten()
                        .all(|p| self.graph.get(p).is_some())
                })
                .map(|(name, _)| name.clone())
                .collect();
            if ready.is_empty() {
                break;
            }
            for name in ready {
                let job = left.remove(&name).expect("listed above");
                // The stored schedule has its start pinned, so `now` is not used for it.
                if let Err(e) = self.graph.upsert(job, DateTime::UNIX_EPOCH) {
                    tracing::error!(job = %name, error = %e, "stored job does not load; ignored");
                }
            }
        }
        for name in left.keys() {
            tracing::error!(job = %name, "stored job names missing parents; ignored");
        }
        for (name, state) in snapshot.job_states {
            if self.graph.get(&name).is_none() {
                continue;
            }
            for (parent, count) in &state.edge_counts {
                let _ = self.graph.set_edge_count(parent, &name, *count);
            }
            self.states.insert(name, state);
        }
        self.runs = snapshot
            .runs
            .into_iter()
            .filter(|(_, run)| self.graph.get(&run.job).is_some())
            .collect();
        for (job, entries) in snapshot.history {
            if self.graph.get(&job).is_none() {
                continue;
            }
            let mut stats = JobStats::new();
            let mut kept = VecDeque::new();
            for (seq, entry) in entries {
                record_stats(&mut stats, &entry);
                kept.push_back((seq, entry));
            }
            self.stats.insert(job.clone(), stats);
            self.history.insert(job, kept);
        }
    }

    /// The framework as registered with the master: with the stored id, if any, so that a
    /// restarted scheduler re-registers as the same framework.
    pub fn framework_info(&self) -> FrameworkInfo {
        let mut info = FrameworkInfo::new(&self.config.framework_name);
        info.id = self.framework_id.clone().map(FrameworkId::new);
        info.role = self.config.role.clone();
        info.user = self.config.user.clone();
        info.hostname = self.config.hostname.clone();
        info.webui_url = self.config.webui_url.clone();
        info.failover_timeout_secs = self.config.failover_timeout_secs;
        info.checkpoint = true;
        info
    }

    /// The driver process hosting this scheduler, registering with the leader of `masters`
    /// (one master, a `Upid`, or a [`Masters`] group). Status updates are acknowledged
    /// explicitly, after their effect is stored. A [`ChronosScheduler::replicated`] one
    /// campaigns for the leadership and registers only while it leads.
    pub fn into_driver(self, masters: impl Into<Masters>) -> ChronosProcess {
        let info = self.framework_info();
        let leader = self.backend.leader_config().cloned();
        let driver = SchedulerDriver::with_masters(info, masters.into(), self)
            .with_explicit_acknowledgements();
        match leader {
            Some(config) => driver.with_leader_election(config),
            None => driver,
        }
    }

    // ---- reading ------------------------------------------------------------------------

    /// The settings.
    pub fn config(&self) -> &ChronosConfig {
        &self.config
    }

    /// Whether this instance serves the REST API itself or a standby proxies it. A leader
    /// whose lease is no longer sure (paused, cut off) is a standby already, before the
    /// driver's `deposed` comes.
    pub fn role(&self, driver: &Driver<'_, '_>) -> Role {
        if self.backend.is_leading() && driver.is_leading() {
            Role::Leader
        } else {
            Role::Standby {
                leader: self.backend.leader().map(str::to_string),
            }
        }
    }

    /// True with the state in the masters' coordination store (leader + standbys).
    pub fn is_replicated(&self) -> bool {
        self.backend.leader_config().is_some()
    }

    /// The election's settings (leader + standbys).
    pub fn leader_config(&self) -> Option<&LeaderConfig> {
        self.backend.leader_config()
    }

    /// API answers waiting for their state writes to commit.
    pub fn replies_waiting(&self) -> usize {
        self.backend.replies_waiting()
    }

    /// Ok when this instance serves the API: it acts (it leads, sure of its lease, and no
    /// store failure stopped it). Reads check it too: a standby's model is empty.
    pub fn check_serving(&self, driver: &Driver<'_, '_>) -> Result<(), ApiError> {
        self.check_running()?;
        if !driver.is_leading() {
            return Err(self.not_leader());
        }
        Ok(())
    }

    /// Calls `reply` once every state write made so far (by the call being answered, and
    /// before it) has committed, so that an answer never shows or acknowledges a change that
    /// may not land: at once with a local store (commits are durable when made), when the
    /// driver reports the commit with the replicated state, or with
    /// [`ApiError::NotLeader`] if this instance is deposed first.
    pub fn reply_when_committed(&mut self, driver: &Driver<'_, '_>, reply: Reply) {
        self.backend.reply_when_committed(driver, reply);
    }

    /// The job graph.
    pub fn graph(&self) -> &JobGraph {
        &self.graph
    }

    /// A job as `GET /scheduler/jobs` shows it.
    pub fn job(&self, name: &str) -> Option<Job> {
        self.graph.get(name).map(Job::api_view)
    }

    /// All jobs as `GET /scheduler/jobs` shows them, by name.
    pub fn jobs(&self) -> Vec<Job> {
        self.graph.jobs().map(Job::api_view).collect()
    }

    /// `GET /scheduler/jobs/search`: every given term (lower-cased) is a substring of the name
    /// (`name`) or the command (`command`); a job failing them still matches when `any` is a
    /// substring of its name or command. Then `offset` and `limit` slice the result.
    pub fn search(
        &self,
        name: Option<&str>,
        command: Option<&str>,
        any: Option<&str>,
        offset: usize,
        limit: usize,
    ) -> Vec<Job> {
        let lower = |s: Option<&str>| s.map(str::to_lowercase).filter(|s| !s.is_empty());
        let (name, command, any) = (lower(name), lower(command), lower(any));
        self.graph
            .jobs()
            .filter(|job| {
                let job_name = job.name.to_lowercase();
                let job_command = job.command.to_lowercase();
                let terms = name.as_ref().is_none_or(|n| job_name.contains(n))
                    && command.as_ref().is_none_or(|c| job_command.contains(c));
                let any_match = any
                    .as_ref()
                    .is_some_and(|a| job_name.contains(a) || job_command.contains(a));
                terms || any_match
            })
            .skip(offset)
            .take(limit.min(limits::SEARCH_RESULTS_MAX))
            .map(Job::api_view)
            .collect()
    }

    /// Unfinished runs, by run id.
    pub fn runs(&self) -> impl Iterator<Item = &Run> {
        self.runs.values()
    }

    /// A job's finished runs, oldest first (at most [`limits::RUN_HISTORY_PER_JOB_MAX`]).
    pub fn history(&self, job: &str) -> Vec<HistoryEntry> {
        self.history
            .get(job)
            .map(|h| h.iter().map(|(_, e)| e.clone()).collect())
            .unwrap_or_default()
    }

    /// The job's scheduling state (last scheduled instant, edge counters).
    pub fn job_state(&self, job: &str) -> Option<&JobState> {
        self.states.get(job)
    }

    /// `GET /scheduler/job/stat/{name}`.
    pub fn job_stat(&self, name: &str) -> Result<JobStatResponse, ApiError> {
        if self.graph.get(name).is_none() {
            return Err(ApiError::NotFound(name.to_string()));
        }
        Ok(self
            .stats
            .get(name)
            .map(JobStats::to_response)
            .unwrap_or_else(|| JobStats::new().to_response()))
    }

    /// `GET /scheduler/stats/{percentile}`: every job, largest first.
    pub fn stats(&self, which: Percentile) -> Vec<PercentileEntry> {
        percentile_ranking(
            self.graph
                .jobs()
                .map(|j| (j.name.as_str(), self.stats.get(&j.name))),
            which,
        )
    }

    /// What a job is doing: `running` when a task of it is launched, else `queued` when a run
    /// waits, else `idle`.
    pub fn current_state(&self, job: &str) -> CurrentState {
        let (mut running, mut queued) = (0u32, false);
        for run in self.runs.values().filter(|r| r.job == job) {
            match run.state {
                RunState::Pending => queued = true,
                RunState::Launched | RunState::Running => running += 1,
            }
        }
        if running > 0 {
            CurrentState::Running(running)
        } else if queued {
            CurrentState::Queued
        } else {
            CurrentState::Idle
        }
    }

    /// `GET /scheduler/graph/csv`.
    pub fn graph_csv(&self) -> String {
        self.graph.graph_csv(|name| self.current_state(name))
    }

    /// Gauges and counters for `/metrics`.
    pub fn metrics(&self) -> MetricsSnapshot {
        let pending = self
            .runs
            .values()
            .filter(|r| r.state == RunState::Pending)
            .count() as u64;
        MetricsSnapshot {
            jobs: self.graph.len() as u64,
            runs_pending: pending,
            runs_active: self.runs.len() as u64 - pending,
            connected: self.connected,
            leading: self.backend.is_leading(),
            stopped: self.stopped.is_some(),
            counters: self.counters,
        }
    }

    /// Why the scheduler stopped, if a store failure stopped it.
    pub fn stopped(&self) -> Option<&str> {
        self.stopped.as_deref()
    }

    // ---- changing (API) -------------------------------------------------------------------

    fn check_running(&self) -> Result<(), ApiError> {
        if let Some(reason) = &self.stopped {
            return Err(ApiError::Stopped(reason.clone()));
        }
        if !self.backend.is_leading() {
            return Err(self.not_leader());
        }
        Ok(())
    }

    fn not_leader(&self) -> ApiError {
        ApiError::NotLeader {
            leader: self.backend.leader().map(str::to_string),
        }
    }

    /// True while the scheduler acts on its model: it leads, and no store failure stopped it.
    fn is_acting(&self) -> bool {
        self.stopped.is_none() && self.backend.is_leading()
    }

    /// Commits `writes` (see [`Backend::commit`]); false when they were not taken (then
    /// nothing was written, and the caller changes nothing).
    fn commit(&mut self, driver: &mut Driver<'_, '_>, writes: &[Write]) -> bool {
        self.commit_or_stopped(driver, writes).is_ok()
    }

    /// Commits `writes`, or says why not. A failure of the local store stops the scheduler,
    /// as a crash would; with the replicated state, a write is not taken while this instance
    /// does not lead or while too many writes wait.
    fn commit_or_stopped(
        &mut self,
        driver: &mut Driver<'_, '_>,
        writes: &[Write],
    ) -> Result<(), ApiError> {
        self.check_running()?;
        if writes.is_empty() {
            return Ok(());
        }
        match self.backend.commit(driver, writes) {
            Ok(()) => Ok(()),
            Err(CommitError::Store(e)) => {
                tracing::error!(error = %e, "state store failed: the Chronos scheduler stops");
                self.stopped = Some(e.to_string());
                if let Some(timer) = self.timer.take() {
                    driver.ctx().cancel(timer);
                }
                // Tasks keep running for the failover timeout; a restarted scheduler resumes.
                driver.stop(true);
                Err(ApiError::Stopped(e.to_string()))
            }
            Err(CommitError::NotLeading) => Err(self.not_leader()),
            Err(e @ (CommitError::Behind { .. } | CommitError::Refused(_))) => {
                tracing::warn!(error = %e, "state write not taken");
                Err(ApiError::Unavailable(e.to_string()))
            }
            Err(CommitError::Ops(e)) => {
                tracing::error!(error = %e, "state write cannot be stored");
                Err(ApiError::Unavailable(e.to_string()))
            }
        }
    }

    fn edge_counts_of(graph: &JobGraph, job: &str) -> BTreeMap<String, u64> {
        graph
            .parents(job)
            .map(|parents| {
                parents
                    .iter()
                    .filter_map(|p| Some((p.clone(), graph.edge_count(p, job)?)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `POST /scheduler/iso8601` and `/scheduler/dependency`: creates or replaces a job. The job
    /// is stored before this returns; nothing is stored on error.
    pub fn upsert_job(
        &mut self,
        driver: &mut Driver<'_, '_>,
        job: Job,
        kind: PostKind,
    ) -> Result<Upserted, ApiError> {
        self.check_running()?;
        if kind == PostKind::Dependency && job.parents.as_ref().is_none_or(|p| p.is_empty()) {
            return Err(JobError::Invalid {
                field: "parents",
                message: "a dependent job needs at least one parent".to_string(),
            }
            .into());
        }
        constraints::validate(&job.constraints)?;
        let now = wall(driver.ctx());
        let mut graph = self.graph.clone();
        let name = job.name.clone();
        let previous = self.graph.get(&name).cloned();
        let upserted = graph.upsert(job, now)?;
        let stored = graph.get(&name).expect("just upserted").clone();
        let mut state = self.states.get(&name).cloned().unwrap_or_default();
        let same_schedule = previous.as_ref().is_some_and(|p| {
            p.schedule == stored.schedule
                && p.cron == stored.cron
                && p.calendar == stored.calendar
                && p.schedule_time_zone == stored.schedule_time_zone
        });
        if !same_schedule {
            // Another schedule starts afresh from its own start.
            state.last_scheduled = None;
        }
        state.edge_counts = Self::edge_counts_of(&graph, &name);
        check_stored_size("the job", &stored, limits::JOB_STORED_BYTES_MAX)?;
        check_stored_size(
            "the job's state (its parent edges)",
            &state,
            limits::JOB_STATE_STORED_BYTES_MAX,
        )?;
        let writes = [
            Write::Job(Box::new(stored)),
            Write::JobState(name.clone(), state.clone()),
        ];
        self.commit_or_stopped(driver, &writes)?;
        self.graph = graph;
        self.states.insert(name, state);
        self.evaluate(driver);
        Ok(upserted)
    }

    /// `DELETE /scheduler/job/{name}`: removes the job, kills its tasks, drops its runs; its
    /// children are rewired as in Chronos.
    ///
    /// The writes are ordered so that any prefix of them is a valid state (with the replicated
    /// state a deletion too large for one transaction is written in several): the rewired
    /// children first, then the job's runs and history, the job itself last.
    pub fn delete_job(&mut self, driver: &mut Driver<'_, '_>, name: &str) -> Result<(), ApiError> {
        self.check_running()?;
        if self.graph.get(name).is_none() {
            return Err(ApiError::NotFound(name.to_string()));
        }
        let mut graph = self.graph.clone();
        let removed = graph.remove(name)?;
        let mut writes = Vec::new();
        let runs: Vec<Run> = self
            .runs
            .values()
            .filter(|r| r.job == name)
            .cloned()
            .collect();
        let removed_state = self.states.get(name).cloned().unwrap_or_default();
        let mut child_states = Vec::new();
        for child in &removed.rewired {
            let mut state = self.states.get(child).cloned().unwrap_or_default();
            if graph.schedule(child).is_some() {
                // The child took over the removed job's schedule, and where it stood.
                state.last_scheduled = removed_state.last_scheduled;
            }
            state.edge_counts = Self::edge_counts_of(&graph, child);
            writes.push(Write::Job(Box::new(
                graph.get(child).expect("rewired child").clone(),
            )));
            writes.push(Write::JobState(child.clone(), state.clone()));
            child_states.push((child.clone(), state));
        }
        writes.extend(runs.iter().map(|r| Write::DeleteRun(r.id.clone())));
        if let Some(history) = self.history.get(name) {
            let job = name.to_string();
            writes.extend(
                history
                    .iter()
                    .map(|(seq, _)| Write::DeleteHistory(job.clone(), *seq)),
            );
        }
        writes.push(Write::DeleteJob(name.to_string()));
        self.commit_or_stopped(driver, &writes)?;
        self.graph = graph;
        self.states.remove(name);
        self.states.extend(child_states);
        self.history.remove(name);
        self.stats.remove(name);
        for run in runs {
            self.runs.remove(&run.id);
            if run.state != RunState::Pending {
                driver.kill_task(&TaskId::new(run.task_id()));
            }
        }
        self.arm_timer(driver);
        Ok(())
    }

    /// `PUT /scheduler/job/{name}`: a run now (attempt 0), stored before this returns. A
    /// non-blank `arguments` is appended to the command after a space. Returns the run id.
    pub fn run_now(
        &mut self,
        driver: &mut Driver<'_, '_>,
        name: &str,
        arguments: &str,
    ) -> Result<String, ApiError> {
        self.check_running()?;
        if self.graph.get(name).is_none() {
            return Err(ApiError::NotFound(name.to_string()));
        }
        if self.runs.len() >= limits::RUNS_ACTIVE_MAX {
            return Err(ApiError::TooManyRuns);
        }
        let now = wall(driver.ctx());
        let mut run = self.new_run(name, now, Trigger::RunNow);
        run.arguments = arguments.trim().to_string();
        let id = run.id.clone();
        self.commit_or_stopped(driver, &[Write::Run(run.clone())])?;
        self.runs.insert(id.clone(), run);
        self.counters.runs_created += 1;
        self.revive(driver, true);
        Ok(id)
    }

    /// `DELETE /scheduler/task/kill/{name}`: kills the job's launched and running tasks.
    /// Returns how many kills were sent.
    pub fn kill_tasks(
        &mut self,
        driver: &mut Driver<'_, '_>,
        name: &str,
    ) -> Result<usize, ApiError> {
        self.check_running()?;
        if self.graph.get(name).is_none() {
            return Err(ApiError::NotFound(name.to_string()));
        }
        let tasks: Vec<String> = self
            .runs
            .values()
            .filter(|r| r.job == name && r.state != RunState::Pending)
            .map(Run::task_id)
            .collect();
        for task in &tasks {
            driver.kill_task(&TaskId::new(task.clone()));
        }
        Ok(tasks.len())
    }

    /// Disables or enables a job (stored before this returns).
    pub fn set_disabled(
        &mut self,
        driver: &mut Driver<'_, '_>,
        name: &str,
        disabled: bool,
    ) -> Result<(), ApiError> {
        self.check_running()?;
        let mut job = self
            .graph
            .get(name)
            .ok_or_else(|| ApiError::NotFound(name.to_string()))?
            .clone();
        job.disabled = disabled;
        self.commit_or_stopped(driver, &[Write::Job(Box::new(job))])?;
        self.graph.set_disabled(name, disabled)?;
        self.evaluate(driver);
        Ok(())
    }

    /// A pending run of `job` at `at` (ms precision). Dependency and run-now runs move forward
    /// by a millisecond until their id is free.
    fn new_run(&self, job: &str, at: DateTime<Utc>, trigger: Trigger) -> Run {
        let mut instant = DateTime::from_timestamp_millis(at.timestamp_millis()).expect("in range");
        if trigger != Trigger::Schedule {
            while self.runs.contains_key(&Run::id_of(job, instant, trigger)) {
                instant += TimeDelta::milliseconds(1);
            }
        } else {
            instant = at;
        }
        Run {
            id: Run::id_of(job, instant, trigger),
            job: job.to_string(),
            instant,
            trigger,
            attempt: 0,
            state: RunState::Pending,
            slave_id: None,
            not_before: None,
            launched_at: None,
            started_at: None,
            arguments: String::new(),
        }
    }

    // ---- schedules ------------------------------------------------------------------------

    fn on_tick(&mut self, driver: &mut Driver<'_, '_>) {
        if !self.is_acting() {
            return;
        }
        self.evaluate(driver);
        if !self.is_acting() {
            return;
        }
        let now = driver.ctx().now();
        // Launches that were never heard of again: ask the master about them.
        let silent: Vec<String> = self
            .awaiting_status
            .iter()
            .filter(|(_, at)| {
                now.saturating_duration_since(**at) >= self.config.launch_reconcile_after
            })
            .map(|(task, _)| task.clone())
            .collect();
        for task in silent {
            self.awaiting_status.remove(&task);
            tracing::info!(%task, "no status since the launch: reconciling it");
            self.unreconciled.insert(task);
        }
        if self.connected && !self.unreconciled.is_empty() {
            let due = self
                .last_reconcile
                .is_none_or(|t| now.saturating_duration_since(t) >= self.config.reconcile_retry);
            if due {
                let tasks: Vec<String> = self.unreconciled.iter().cloned().collect();
                self.send_reconcile(driver, tasks);
            }
        }
        if self.has_launchable(wall(driver.ctx())) {
            self.revive(driver, false);
        }
    }

    /// Creates the runs of every instant due now, then sets the timer.
    fn evaluate(&mut self, driver: &mut Driver<'_, '_>) {
        if !self.is_acting() {
            return;
        }
        let now = wall(driver.ctx());
        let names: Vec<String> = self
            .graph
            .jobs()
            .filter(|j| self.graph.schedule(&j.name).is_some())
            .map(|j| j.name.clone())
            .collect();
        let mut created = false;
        for name in names {
            created |= self.evaluate_job(driver, &name, now);
            if !self.is_acting() {
                return;
            }
        }
        if created {
            self.revive(driver, true);
        }
        self.arm_timer(driver);
    }

    /// Creates the runs of `name`'s due instants. True when it created any.
    fn evaluate_job(
        &mut self,
        driver: &mut Driver<'_, '_>,
        name: &str,
        now: DateTime<Utc>,
    ) -> bool {
        let (Some(job), Some(schedule)) = (self.graph.get(name), self.graph.schedule(name)) else {
            return false;
        };
        let job = job.clone();
        let schedule = schedule.clone();
        let state = self.states.get(name).cloned().unwrap_or_default();
        let policy = job.catch_up_policy().unwrap_or_default();
        let epsilon = job
            .epsilon_duration()
            .ok()
            .flatten()
            .unwrap_or(self.config.epsilon);
        let due = due_instants(
            &schedule,
            state.last_scheduled,
            now,
            epsilon,
            policy,
            limits::RUNS_CREATED_PER_TICK_PER_JOB_MAX,
        );
        if due.is_empty() {
            return false;
        }
        let mut active = self.runs.values().filter(|r| r.job == name).count();
        let mut waiting = self
            .runs
            .values()
            .filter(|r| r.job == name && r.state == RunState::Pending)
            .count();
        let mut next_schedule = schedule.clone();
        let mut last = state.last_scheduled;
        let mut new_runs = Vec::new();
        let mut skipped = 0u64;
        for t in due {
            if self.runs.len() + new_runs.len() >= limits::RUNS_ACTIVE_MAX {
                tracing::warn!(job = %name, "too many runs in progress; instant postponed");
                break;
            }
            last = Some(t);
            let busy = !job.concurrent && active > 0;
            let pass = job.disabled
                || (busy
                    && match policy {
                        CatchUp::Skip => true,
                        CatchUp::Once => waiting > 0,
                        CatchUp::All => waiting >= limits::RUNS_WAITING_PER_JOB_MAX,
                    });
            if pass {
                skipped += 1;
                continue;
            }
            new_runs.push(self.new_run(name, t, Trigger::Schedule));
            next_schedule = next_schedule.after_run(t);
            active += 1;
            waiting += 1;
        }
        if last == state.last_scheduled {
            return false;
        }
        let mut new_state = state;
        new_state.last_scheduled = last;
        let mut writes: Vec<Write> = new_runs.iter().cloned().map(Write::Run).collect();
        let schedule_changed = next_schedule != schedule;
        if schedule_changed {
            let mut stored = job.clone();
            if let Schedule::Iso(_) = next_schedule {
                stored.schedule = Some(next_schedule.to_chronos_string());
            }
            writes.push(Write::Job(Box::new(stored)));
        }
        writes.push(Write::JobState(name.to_string(), new_state.clone()));
        if !self.commit(driver, &writes) {
            return false;
        }
        if schedule_changed {
            self.graph
                .set_schedule(name, next_schedule)
                .expect("a scheduled job");
        }
        self.states.insert(name.to_string(), new_state);
        self.counters.instants_skipped += skipped;
        self.counters.runs_created += new_runs.len() as u64;
        let created = !new_runs.is_empty();
        for run in new_runs {
            tracing::debug!(run = %run.id, "run created");
            self.runs.insert(run.id.clone(), run);
        }
        created
    }

    /// Sets the timer to the next due instant or retry time, at most `tick_max` away.
    fn arm_timer(&mut self, driver: &mut Driver<'_, '_>) {
        if !self.is_acting() {
            return;
        }
        let now = wall(driver.ctx());
        let mut next: Option<DateTime<Utc>> = None;
        for job in self.graph.jobs().filter(|j| !j.disabled) {
            if let Some(schedule) = self.graph.schedule(&job.name) {
                if let Some(t) = schedule.next_after(now) {
                    next = Some(next.map_or(t, |n| n.min(t)));
                }
            }
        }
        for t in self.runs.values().filter_map(|r| r.not_before) {
            if t > now {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        }
        let delay = next
            .map(|t| to_std(t - now))
            .unwrap_or(self.config.tick_max)
            .min(self.config.tick_max);
        if let Some(timer) = self.timer.take() {
            driver.ctx().cancel(timer);
        }
        self.timer = Some(driver.ctx().delay(delay, Tick));
    }

    fn has_launchable(&self, now: DateTime<Utc>) -> bool {
        self.runs
            .values()
            .any(|r| r.state == RunState::Pending && r.not_before.is_none_or(|t| t <= now))
    }

    /// Asks the master for offers again: at once when `urgent` (new runs), else at most every
    /// `revive_interval`.
    fn revive(&mut self, driver: &mut Driver<'_, '_>, urgent: bool) {
        if !self.connected {
            return;
        }
        let now = driver.ctx().now();
        let recent = self
            .last_revive
            .is_some_and(|t| now.saturating_duration_since(t) < self.config.revive_interval);
        if urgent || !recent {
            self.last_revive = Some(now);
            driver.revive_offers();
        }
    }

    // ---- launching ------------------------------------------------------------------------

    /// Pending runs that may launch now, in launch order: high-priority jobs first, then by
    /// instant.
    fn launch_order(&self, now: DateTime<Utc>) -> Vec<String> {
        let mut order: Vec<(bool, DateTime<Utc>, &String)> = self
            .runs
            .values()
            .filter(|r| r.state == RunState::Pending && r.not_before.is_none_or(|t| t <= now))
            .map(|r| {
                let high = self.graph.get(&r.job).is_some_and(|j| j.high_priority);
                (!high, r.instant, &r.id)
            })
            .collect();
        order.sort();
        order.into_iter().map(|(_, _, id)| id.clone()).collect()
    }

    fn task_info(&self, run: &Run, job: &Job, offer: &Offer, resources: Resources) -> TaskInfo {
        let mut value = job.command.clone();
        if !run.arguments.is_empty() {
            value.push(' ');
            value.push_str(&run.arguments);
        }
        let mut environment: BTreeMap<String, String> = job
            .environment_variables
            .iter()
            .map(|v| (v.name.clone(), v.value.clone()))
            .collect();
        environment.insert("CHRONOS_JOB_NAME".into(), job.name.clone());
        environment.insert("CHRONOS_JOB_OWNER".into(), job.owner.clone());
        environment.insert(
            "CHRONOS_JOB_RUN_TIME".into(),
            crate::job::format_timestamp(run.instant),
        );
        environment.insert("CHRONOS_JOB_RUN_ATTEMPT".into(), run.attempt.to_string());
        let command = CommandInfo {
            shell: job.shell,
            value,
            arguments: if job.shell {
                Vec::new()
            } else {
                job.arguments.clone()
            },
            environment,
            // Empty: the framework's user, else the slave's default task user.
            user: Some(job.run_as_user.clone()).filter(|u| !u.is_empty()),
        };
        let mut task = TaskInfo::new(
            TaskId::new(run.task_id()),
            offer.slave_id.clone(),
            resources,
            command,
        );
        task.name = format!("ChronosTask:{}", job.name);
        task.labels.insert("chronos.job".into(), job.name.clone());
        task.labels.insert("chronos.run".into(), run.id.clone());
        task
    }

    fn launch_on_offer(
        &mut self,
        driver: &mut Driver<'_, '_>,
        offer: &Offer,
        now: DateTime<Utc>,
        declines: &mut Declines,
    ) {
        if offer.unavailability.is_some() {
            // The slave's machine is scheduled for maintenance: no new runs there (a run
            // started now could be cut short by the machine going down).
            self.counters.offers_declined_maintenance += 1;
            declines.add(
                offer.id.clone(),
                Filters {
                    refuse_seconds: self.config.decline_refuse_secs,
                },
            );
            return;
        }
        let mut left = offer.resources.clone();
        let mut busy: BTreeSet<String> = self
            .runs
            .values()
            .filter(|r| r.state != RunState::Pending)
            .map(|r| r.job.clone())
            .collect();
        let mut chosen: Vec<(Run, TaskInfo)> = Vec::new();
        let order = self.launch_order(now);
        let waiting = !order.is_empty();
        for id in order {
            if chosen.len() >= limits::LAUNCHES_PER_OFFER_MAX {
                break;
            }
            let run = &self.runs[&id];
            let Some(job) = self.graph.get(&run.job) else {
                continue;
            };
            if !job.concurrent && busy.contains(&job.name) {
                continue;
            }
            let mut job = job.clone();
            job.apply_defaults(&self.config.defaults);
            let resources = match Resources::new(job.cpus, job.mem, job.disk) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(job = %job.name, error = %e, "job resources unusable");
                    continue;
                }
            };
            if !left.contains(&resources)
                || !constraints::matches_all(&job.constraints, &offer.hostname, &offer.attributes)
            {
                continue;
            }
            left = left.checked_sub(&resources).expect("contained");
            let task = self.task_info(run, &job, offer, resources);
            let mut launched = run.clone();
            launched.state = RunState::Launched;
            launched.slave_id = Some(offer.slave_id.to_string());
            launched.launched_at = Some(now);
            launched.not_before = None;
            launched.started_at = None;
            if !job.concurrent {
                busy.insert(job.name.clone());
            }
            chosen.push((launched, task));
        }
        if chosen.is_empty() {
            let refuse_seconds = if waiting {
                self.config.decline_refuse_secs
            } else {
                self.config.idle_refuse_secs
            };
            declines.add(offer.id.clone(), Filters { refuse_seconds });
            return;
        }
        let writes: Vec<Write> = chosen.iter().map(|(r, _)| Write::Run(r.clone())).collect();
        // Recorded before the launch: a restarted scheduler reconciles these task ids.
        if !self.commit(driver, &writes) {
            if self.is_acting() {
                // Not taken now (the state's writes are behind): the next offer will do.
                declines.add(
                    offer.id.clone(),
                    Filters {
                        refuse_seconds: self.config.decline_refuse_secs,
                    },
                );
            }
            return;
        }
        let mut tasks = Vec::with_capacity(chosen.len());
        let launched_at = driver.ctx().now();
        for (run, task) in chosen {
            tracing::info!(job = %run.job, run = %run.id, attempt = run.attempt, task_id = %task.task_id, slave_id = %task.slave_id, "job run started");
            // A question about an earlier launch of this task id is moot now.
            self.unreconciled.remove(task.task_id.as_str());
            self.awaiting_status
                .insert(task.task_id.as_str().to_string(), launched_at);
            self.runs.insert(run.id.clone(), run);
            tasks.push(task);
        }
        self.counters.tasks_launched += tasks.len() as u64;
        driver.launch_on(offer, tasks);
    }

    // ---- status updates -------------------------------------------------------------------

    /// Applies a status update. False when the store failed (the update must not be
    /// acknowledged).
    fn handle_status(&mut self, driver: &mut Driver<'_, '_>, status: &TaskStatus) -> bool {
        let now = wall(driver.ctx());
        let task_id = status.task_id.as_str();
        let asked = self.unreconciled.remove(task_id);
        if status.state == TaskState::Unknown && !asked {
            // An answer to no question outstanding (see below): it says nothing about the
            // current launch, which is still awaited.
            return true;
        }
        self.awaiting_status.remove(task_id);
        let Some(parsed) = parse_task_id(task_id) else {
            tracing::warn!(task = %task_id, "status of a task Chronos did not launch; ignored");
            return true;
        };
        let run = self.runs.get(&parsed.run_id()).cloned();
        let live = !status.state.is_terminal()
            && !matches!(status.state, TaskState::Unknown | TaskState::Unreachable);
        let Some(run) = run.filter(|r| r.attempt == parsed.attempt) else {
            // A run already finished (a repeated update), a deleted job, or an older attempt.
            if live {
                tracing::warn!(task = %task_id, "a task of no current run is alive; killing it");
                driver.kill_task(&status.task_id);
            }
            return true;
        };
        let slave = status.slave_id.as_ref().map(SlaveId::to_string);
        match status.state {
            TaskState::Staging | TaskState::Starting | TaskState::Killing => {
                if run.state == RunState::Pending {
                    let mut next = run;
                    next.state = RunState::Launched;
                    next.slave_id = slave.or(next.slave_id);
                    return self.put_run(driver, next);
                }
                true
            }
            TaskState::Running => {
                if run.state == RunState::Running {
                    return true;
                }
                let mut next = run;
                next.state = RunState::Running;
                next.started_at = Some(now);
                next.slave_id = slave.or(next.slave_id);
                let record = TaskRecord {
                    task_id: next.task_id(),
                    job_name: next.job.clone(),
                    slave_id: next.slave_id.clone().unwrap_or_default(),
                    start: Some(now),
                    end: None,
                    status: StatStatus::Running,
                    num_elements_processed: None,
                };
                let ok = self.put_run(driver, next);
                if ok {
                    self.stats
                        .entry(record.job_name.clone())
                        .or_default()
                        .record_task(record);
                }
                ok
            }
            TaskState::Unreachable => {
                if run.state == RunState::Launched {
                    // No sign that the launch arrived: ask again later (once the slave is
                    // back, a task the master never got is "unknown" and launched again).
                    self.awaiting_status
                        .insert(task_id.to_string(), driver.ctx().now());
                }
                true
            }
            // The master answers "unknown" only to an explicit reconciliation. An answer to no
            // question outstanding (a duplicate, or one about a launch since made again) was
            // ignored above: acting on it would launch the same task id a second time, which
            // the master refuses while the first one runs.
            TaskState::Unknown => {
                if run.state == RunState::Running {
                    // It ran, and the master lost it: a failed attempt.
                    self.attempt_failed(driver, run, status, now)
                } else if run.state == RunState::Launched {
                    // The launch never reached the master: launch the same attempt again.
                    let mut next = run;
                    next.state = RunState::Pending;
                    next.slave_id = None;
                    next.launched_at = None;
                    let ok = self.put_run(driver, next);
                    if ok {
                        self.revive(driver, true);
                    }
                    ok
                } else {
                    true
                }
            }
            TaskState::Finished => {
                self.finish_run(driver, run, status, RunOutcomeKind::Success, now)
            }
            TaskState::Killed => self.finish_run(driver, run, status, RunOutcomeKind::Killed, now),
            TaskState::Failed
            | TaskState::Error
            | TaskState::Lost
            | TaskState::Dropped
            | TaskState::Gone
            | TaskState::GoneByOperator => self.attempt_failed(driver, run, status, now),
        }
    }

    fn put_run(&mut self, driver: &mut Driver<'_, '_>, run: Run) -> bool {
        if !self.commit(driver, &[Write::Run(run.clone())]) {
            return false;
        }
        self.runs.insert(run.id.clone(), run);
        true
    }

    fn attempt_failed(
        &mut self,
        driver: &mut Driver<'_, '_>,
        run: Run,
        status: &TaskStatus,
        now: DateTime<Utc>,
    ) -> bool {
        let retries = self
            .graph
            .get(&run.job)
            .map_or(0, |j| u32::try_from(j.retries.max(0)).unwrap_or(u32::MAX));
        if run.attempt >= retries {
            return self.finish_run(driver, run, status, RunOutcomeKind::Failure, now);
        }
        let record = TaskRecord {
            task_id: run.task_id(),
            job_name: run.job.clone(),
            slave_id: run.slave_id.clone().unwrap_or_default(),
            start: run.started_at,
            end: Some(now),
            status: StatStatus::Fail,
            num_elements_processed: None,
        };
        let mut next = run;
        next.attempt += 1;
        next.state = RunState::Pending;
        next.slave_id = None;
        next.launched_at = None;
        next.started_at = None;
        next.not_before =
            Some(now + TimeDelta::from_std(self.config.failure_retry).unwrap_or(TimeDelta::MAX));
        tracing::info!(job = %next.job, run = %next.id, attempt = next.attempt, retry_in_ms = self.config.failure_retry.as_millis() as u64, "job run failed; retrying");
        if !self.put_run(driver, next) {
            return false;
        }
        self.counters.retries += 1;
        self.stats
            .entry(record.job_name.clone())
            .or_default()
            .record_task(record);
        self.arm_timer(driver);
        true
    }

    /// Ends a run: history, job counters, dependents, all in one transaction.
    fn finish_run(
        &mut self,
        driver: &mut Driver<'_, '_>,
        run: Run,
        status: &TaskStatus,
        outcome: RunOutcomeKind,
        now: DateTime<Utc>,
    ) -> bool {
        let name = run.job.clone();
        let mut writes = vec![Write::DeleteRun(run.id.clone())];
        let mut graph = self.graph.clone();
        let mut states: BTreeMap<String, JobState> = BTreeMap::new();
        let mut new_runs = Vec::new();
        let mut state = self.states.get(&name).cloned().unwrap_or_default();
        let entry = HistoryEntry {
            run_id: run.id.clone(),
            job: name.clone(),
            instant: run.instant,
            trigger: run.trigger,
            attempts: run.attempt + 1,
            task_id: run.task_id(),
            slave_id: status
                .slave_id
                .as_ref()
                .map(SlaveId::to_string)
                .or(run.slave_id.clone())
                .unwrap_or_default(),
            started_at: run.started_at,
            finished_at: now,
            outcome,
            task_state: status.state.as_str().to_string(),
            message: status.message.clone(),
        };
        let seq = state.history_next;
        state.history_next += 1;
        writes.push(Write::History(seq, entry.clone()));
        let history_len = self.history.get(&name).map_or(0, VecDeque::len);
        let dropped_seq = (history_len >= limits::RUN_HISTORY_PER_JOB_MAX)
            .then(|| self.history[&name].front().map(|(s, _)| *s))
            .flatten();
        if let Some(old) = dropped_seq {
            writes.push(Write::DeleteHistory(name.clone(), old));
        }
        if graph.get(&name).is_some() && outcome != RunOutcomeKind::Killed {
            match outcome {
                RunOutcomeKind::Success => graph.record_success(&name, now),
                _ => graph.record_failure(&name, now),
            }
            .expect("job exists");
            let others_active = self.runs.values().any(|r| r.job == name && r.id != run.id);
            if outcome == RunOutcomeKind::Success
                && graph.schedule(&name).is_some_and(Schedule::is_exhausted)
                && !others_active
            {
                graph.set_disabled(&name, true).expect("job exists");
            }
            let run_outcome = if outcome == RunOutcomeKind::Success {
                RunOutcome::Success
            } else {
                RunOutcome::Failure
            };
            let due = graph
                .handle_run_finished(&name, run_outcome)
                .expect("job exists");
            for child in &due {
                if self.runs.len() + new_runs.len() >= limits::RUNS_ACTIVE_MAX {
                    tracing::warn!(job = %child, "too many runs in progress; dependent run dropped");
                    continue;
                }
                new_runs.push(self.new_run(child, now, Trigger::Dependency));
                graph.handle_job_started(child).expect("child exists");
            }
            for child in graph.children(&name) {
                let mut child_state = self.states.get(child).cloned().unwrap_or_default();
                child_state.edge_counts = Self::edge_counts_of(&graph, child);
                states.insert(child.to_string(), child_state);
            }
            writes.push(Write::Job(Box::new(
                graph.get(&name).expect("job exists").clone(),
            )));
        }
        writes.extend(new_runs.iter().cloned().map(Write::Run));
        writes.push(Write::JobState(name.clone(), state.clone()));
        writes.extend(
            states
                .iter()
                .map(|(n, s)| Write::JobState(n.clone(), s.clone())),
        );
        if !self.commit(driver, &writes) {
            return false;
        }
        tracing::info!(job = %run.job, run = %run.id, attempt = run.attempt, outcome = ?outcome, "job run finished");
        self.graph = graph;
        self.runs.remove(&run.id);
        self.states.insert(name.clone(), state);
        self.states.extend(states);
        let history = self.history.entry(name.clone()).or_default();
        if dropped_seq.is_some() {
            history.pop_front();
        }
        history.push_back((seq, entry.clone()));
        record_stats(self.stats.entry(name).or_default(), &entry);
        match outcome {
            RunOutcomeKind::Success => self.counters.runs_succeeded += 1,
            RunOutcomeKind::Failure => self.counters.runs_failed += 1,
            RunOutcomeKind::Killed => self.counters.runs_killed += 1,
        }
        self.counters.runs_created += new_runs.len() as u64;
        let created = !new_runs.is_empty();
        for r in new_runs {
            self.runs.insert(r.id.clone(), r);
        }
        // A waiting run of a non-concurrent job may launch now.
        if created || self.has_launchable(now) {
            self.revive(driver, true);
        }
        true
    }

    // ---- reconciliation -------------------------------------------------------------------

    fn send_reconcile(&mut self, driver: &mut Driver<'_, '_>, tasks: Vec<String>) {
        self.last_reconcile = Some(driver.ctx().now());
        for chunk in tasks.chunks(limits::RECONCILE_TASKS_PER_MESSAGE_MAX) {
            let list = chunk
                .iter()
                .map(|task| {
                    let slave = parse_task_id(task)
                        .and_then(|p| self.runs.get(&p.run_id()))
                        .and_then(|r| r.slave_id.clone())
                        .map(SlaveId::new);
                    (TaskId::new(task.clone()), slave)
                })
                .collect();
            driver.reconcile_tasks(list);
        }
    }

    /// After (re)registration: ask the master about every launched task, by its exact id.
    fn reconcile_all(&mut self, driver: &mut Driver<'_, '_>) {
        let tasks: Vec<String> = self
            .runs
            .values()
            .filter(|r| r.state != RunState::Pending)
            .map(Run::task_id)
            .collect();
        self.unreconciled = tasks.iter().cloned().collect();
        if !tasks.is_empty() {
            self.send_reconcile(driver, tasks);
        }
    }

    fn on_registered(&mut self, driver: &mut Driver<'_, '_>) {
        self.connected = true;
        self.reconcile_all(driver);
        self.last_revive = None;
        if self.has_launchable(wall(driver.ctx())) {
            self.revive(driver, true);
        }
    }

    /// What the [`Tick`] handler does once it checked the tick is its own; also called by a
    /// host that wraps the scheduler in another scheduler type (the simulator wraps it to
    /// observe every status it receives, so it installs its own [`Tick`] handler).
    pub fn on_tick_message(&mut self, driver: &mut Driver<'_, '_>) {
        self.timer = None;
        self.on_tick(driver);
    }

    fn handle_tick(process: &mut ChronosProcess, ctx: &mut Context<'_>, from: &Upid, _tick: Tick) {
        if from != ctx.self_upid() {
            return;
        }
        let (scheduler, mut driver) = process.scheduler_and_driver(ctx);
        scheduler.on_tick_message(&mut driver);
    }
}

/// Refuses a record whose stored JSON is larger than `max` bytes.
fn check_stored_size<T: Serialize>(what: &str, value: &T, max: usize) -> Result<(), ApiError> {
    let bytes = crate::store::encode(value).len();
    if bytes > max {
        return Err(ApiError::TooLarge {
            what: what.to_string(),
            bytes,
            max,
        });
    }
    Ok(())
}

fn record_stats(stats: &mut JobStats, entry: &HistoryEntry) {
    if entry.outcome == RunOutcomeKind::Success {
        stats.record_duration_ms(entry.duration_ms());
    }
    stats.record_task(TaskRecord {
        task_id: entry.task_id.clone(),
        job_name: entry.job.clone(),
        slave_id: entry.slave_id.clone(),
        start: entry.started_at,
        end: Some(entry.finished_at),
        status: if entry.outcome == RunOutcomeKind::Success {
            StatStatus::Success
        } else {
            StatStatus::Fail
        },
        num_elements_processed: None,
    });
}

impl Scheduler for ChronosScheduler {
    fn initialize(&mut self, driver: &mut Driver<'_, '_>) {
        self.evaluate(driver);
    }

    fn registered(&mut self, driver: &mut Driver<'_, '_>, framework_id: &FrameworkId) {
        if !self.is_acting() {
            return;
        }
        let id = framework_id.to_string();
        if self.framework_id.as_deref() != Some(id.as_str()) {
            // With the replicated state the driver keeps the id itself.
            if !self.is_replicated() && !self.commit(driver, &[Write::FrameworkId(id.clone())]) {
                return;
            }
            self.framework_id = Some(id);
        }
        self.on_registered(driver);
    }

    fn reregistered(&mut self, driver: &mut Driver<'_, '_>) {
        if self.is_acting() {
            self.on_registered(driver);
        }
    }

    fn disconnected(&mut self, _driver: &mut Driver<'_, '_>) {
        self.connected = false;
    }

    fn resource_offers(&mut self, driver: &mut Driver<'_, '_>, offers: Vec<Offer>) {
        if !self.is_acting() {
            return;
        }
        let now = wall(driver.ctx());
        let mut declines = Declines::new();
        for offer in offers {
            self.launch_on_offer(driver, &offer, now, &mut declines);
            if !self.is_acting() {
                break;
            }
        }
        declines.send(driver);
    }

    fn status_update(&mut self, driver: &mut Driver<'_, '_>, status: &TaskStatus) {
        if !self.is_acting() {
            return;
        }
        if self.handle_status(driver, status) {
            driver.acknowledge(status);
        }
    }

    fn error(&mut self, _driver: &mut Driver<'_, '_>, message: &str) {
        tracing::error!(%message, "the master refused the Chronos framework");
        self.connected = false;
    }

    fn install(handlers: &mut Handlers<ChronosProcess>) {
        handlers.on(ChronosScheduler::handle_tick);
    }

    /// Leader + standbys: elected, the state loaded. The model is rebuilt from it (every job,
    /// intent, launch and history entry a predecessor committed), what a cut-short deletion
    /// left behind is deleted, and the instants that fell due meanwhile are created per their
    /// job's `catchUp` from each job's last scheduled instant. When this returns the driver
    /// registers (as a failover of the same framework); `registered` then reconciles every
    /// launched run's task id with the master before anything is launched again.
    fn elected(&mut self, driver: &mut Driver<'_, '_>, token: &FencingToken) {
        let Some(state) = driver.state() else {
            return;
        };
        let keys = state.len();
        let (snapshot, bad) = replicated::snapshot_of(state.range(""));
        for b in &bad {
            tracing::error!(key = %b.key, reason = %b.reason, "a stored record does not decode: ignored");
        }
        let orphans = orphans_of(&snapshot);
        self.clear_model(driver);
        self.restore(snapshot);
        self.backend.handle_elected();
        tracing::info!(
            epoch = token.epoch,
            keys,
            jobs = self.graph.len(),
            runs = self.runs.len(),
            "elected: this Chronos leads"
        );
        if !orphans.is_empty() {
            tracing::info!(writes = orphans.len(), "deleting records of deleted jobs");
            self.commit(driver, &orphans);
        }
        self.evaluate(driver);
    }

    /// Leader + standbys: no longer the leader. The driver dropped the calls waiting for
    /// writes; the model goes too, and the API answers waiting for commits fail (503).
    fn deposed(&mut self, driver: &mut Driver<'_, '_>, why: &str) {
        tracing::warn!(%why, "deposed: this Chronos stands by");
        self.clear_model(driver);
        self.backend.handle_deposed();
    }

    fn leader_changed(&mut self, _driver: &mut Driver<'_, '_>, leader: Option<&str>) {
        tracing::info!(?leader, "the Chronos leader changed");
        self.backend.handle_leader_changed(leader);
    }

    fn committed(&mut self, _driver: &mut Driver<'_, '_>, write: WriteId) {
        self.backend.handle_committed(write);
    }
}

/// Deletes of what no job owns any more in `snapshot` (runs, scheduling states and history of
/// deleted jobs), left by a deletion split over several transactions and cut short.
fn orphans_of(snapshot: &Snapshot) -> Vec<Write> {
    let owned = |job: &str| snapshot.jobs.contains_key(job);
    let mut writes: Vec<Write> = snapshot
        .runs
        .values()
        .filter(|r| !owned(&r.job))
        .map(|r| Write::DeleteRun(r.id.clone()))
        .collect();
    let names: BTreeSet<&String> = snapshot
        .job_states
        .keys()
        .chain(snapshot.history.keys())
        .filter(|name| !owned(name))
        .collect();
    writes.extend(names.into_iter().map(|n| Write::DeleteJob(n.clone())));
    writes
}
