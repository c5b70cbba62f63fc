//! The real Chronos in the simulated cluster: jobs with drawn schedules, dependencies and task
//! outcomes, posted through Chronos' own API at the start of a run, and the exactly-once
//! invariant checked at every launch on a simulated machine.
//!
//! The scheduler is [`ChronosScheduler`] itself, on a [`MemoryStore`] held by the harness (the
//! node's disk). Chronos commits every change in one durable transaction before it acts (redb),
//! so the simulated disk has no unsynced writes a crash could cut short: a crash loses only
//! what Chronos had not committed yet. Like Marathon it is wrapped in [`Observed`] so the ledger
//! sees every status it receives (it acknowledges them itself, after storing their effect).
//!
//! # Jobs
//!
//! Job `job<k>` is either scheduled — `R/<start>/PT<p>S`, `p` drawn among 5 s to 2 min, the
//! start 10 to 70 simulated seconds after the run starts, half a second off the second so that
//! launches and ends never coincide with the harness's checks — or, for about a quarter of the
//! jobs, a dependent job of an earlier scheduled one. Its command is drawn once per job for the
//! simulated containerizer: mostly a success after a few seconds, some `exit=1` (Chronos
//! retries twice, then records a failure) and some OOMs.
//!
//! Every job is `concurrent: true` with `catchUp: "all"`: an instant that fell due while
//! Chronos was down, partitioned or short of offers runs when it can, whatever its lateness
//! (`epsilon` does not apply to `all`), and a busy job never passes an instant over. That makes
//! "every instant ran" checkable: with `once` or `skip` (the default `once` is Chronos 3.x's)
//! an outage legitimately drops instants.
//!
//! # The invariant: exactly one run per scheduled instant
//!
//! A run is one (job, instant, trigger); its attempts are tasks `ct:<ms>:<attempt>:<job>:<tag>`
//! (a retry is attempt `n + 1` of the same run). Checked at every launch on a machine, over the
//! whole run ([`ChronosWitness`], wrapped around every slave's containerizer):
//! - an attempt is never launched twice;
//! - an attempt is never launched while another attempt of the same run still runs on a
//!   machine, nor after an attempt of it succeeded (exit 0);
//! - a scheduled run's instant is an instant of its job's schedule.
//!
//! And after the convergence phase ([`ChronosWitness::check_converged`]): every instant of
//! every acknowledged scheduled job due before the faults stopped was launched.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, SecondsFormat, Utc};
use plateau_chronos::job::Job;
use plateau_chronos::scheduler::{ChronosConfig, ChronosScheduler, PostKind, Tick};
use plateau_chronos::store::{
    parse_task_id, MemoryStore, RunState, Snapshot, Store, StoreError, Trigger, Write,
};
use plateau_runtime::{Handlers, Rng, Upid};
use plateau_sdk::{Masters, SchedulerDriver};
use plateau_slave::containerizer::{
    Containerizer, ContainerizerError, LaunchInfo, RecoverInfo, RecoveredTask, SimMachine,
    TaskSpec, Termination, TerminationCallback, Usage,
};

use crate::invariants::Failure;
use crate::observe::{InjectedBug, Ledger, Observed, SimScheduler};

/// Process name of Chronos' scheduler.
pub const CHRONOS_PROCESS_NAME: &str = "chronos";

/// The invariant checked at launches.
pub const EXACTLY_ONCE: &str = "exactly one Chronos run per scheduled instant";

/// The hosted process: Chronos' scheduler, observed, in the SDK's driver.
pub type ChronosSimProcess = SchedulerDriver<Observed<ChronosScheduler>>;

/// Periods a scheduled job is drawn from, seconds.
pub const PERIODS_SECS: [u64; 7] = [5, 10, 15, 20, 30, 60, 120];

/// One job as the harness posts it and checks it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChronosJobSpec {
    /// Job name (`job<k>`).
    pub name: String,
    /// `(first instant, period)` of a scheduled job.
    pub schedule: Option<(DateTime<Utc>, Duration)>,
    /// The parent of a dependent job.
    pub parent: Option<String>,
    /// Its command (the simulated containerizer's syntax).
    pub command: String,
    /// Chronos answered the post with success: its instants must run.
    pub acknowledged: bool,
}

impl ChronosJobSpec {
    /// The Chronos job to post.
    pub fn job(&self) -> Job {
        let mut job = Job::new(&self.name, &self.command);
        if let Some((start, period)) = self.schedule {
            job.schedule = Some(format!(
                "R/{}/PT{}S",
                start.to_rfc3339_opts(SecondsFormat::Millis, true),
                period.as_secs()
            ));
        }
        job.parents = self.parent.clone().map(|p| vec![p]);
        job.cpus = 0.1;
        job.mem = 32.0;
        job.disk = 10.0;
        job.concurrent = true;
        job.catch_up = Some("all".to_string());
        job
    }

    fn kind(&self) -> PostKind {
        if self.parent.is_some() {
            PostKind::Dependency
        } else {
            PostKind::Iso8601
        }
    }
}

/// The Chronos node: its jobs and its disk.
#[derive(Debug, Clone)]
pub struct ChronosNodeConfig {
    /// Framework name.
    pub name: String,
    /// Its jobs.
    pub jobs: Vec<ChronosJobSpec>,
    /// Its disk (shared with every incarnation of the node).
    pub store: MemoryStore,
    /// One of several instances (leader + standbys, [`crate::standbys`]): the state in the
    /// masters' coordination store instead of `store`.
    pub ha: bool,
}

/// Draws `count` jobs for a run whose calendar starts at `start_wall`.
pub fn draw_jobs(seed: u64, count: usize, start_wall: SystemTime) -> Vec<ChronosJobSpec> {
    let mut rng = Rng::derive(seed, "sim.chronos-jobs");
    let origin = DateTime::<Utc>::from(start_wall);
    let mut scheduled: Vec<String> = Vec::new();
    (0..count)
        .map(|k| {
            let name = format!("job{k}");
            let dependent = !scheduled.is_empty() && rng.chance(0.25);
            let period = PERIODS_SECS[rng.between(0, PERIODS_SECS.len() as u64 - 1) as usize];
            let (schedule, parent) = if dependent {
                let p = rng.between(0, scheduled.len() as u64 - 1) as usize;
                (None, Some(scheduled[p].clone()))
            } else {
                let offset = Duration::from_secs(rng.between(10, 70)) + Duration::from_millis(500);
                let start = origin + chrono::TimeDelta::from_std(offset).unwrap_or_default();
                scheduled.push(name.clone());
                (Some((start, Duration::from_secs(period))), None)
            };
            let run = rng.between(1, period.min(20));
            let command = match rng.between(0, 99) {
                0..=79 => format!("sim:run={run}s;exit=0"),
                80..=91 => format!("sim:run={run}s;exit=1"),
                _ => format!("sim:run={run}s;oom"),
            };
            ChronosJobSpec {
                name,
                schedule,
                parent,
                command,
                acknowledged: false,
            }
        })
        .collect()
}

/// A store that forgets that runs were launched ([`InjectedBug::ChronosForgetsIntent`]): a
/// run's writes as launched or running are dropped, so on disk it stays pending for its whole
/// life, and a Chronos restarted from it launches the run again.
struct ForgetfulStore(MemoryStore);

impl Store for ForgetfulStore {
    fn load(&self) -> Result<Snapshot, StoreError> {
        self.0.load()
    }
    fn commit(&mut self, writes: &[Write]) -> Result<(), StoreError> {
        let kept: Vec<Write> = writes
            .iter()
            .filter(|w| !matches!(w, Write::Run(r) if r.state != RunState::Pending))
            .cloned()
            .collect();
        self.0.commit(&kept)
    }
}

/// The Chronos driver process on the node's store, registering with whichever of `masters`
/// leads.
pub fn process(
    config: &ChronosNodeConfig,
    hostname: &str,
    masters: &Masters,
    ledger: &Ledger,
    bug: Option<InjectedBug>,
) -> ChronosSimProcess {
    let chronos_config = ChronosConfig {
        framework_name: config.name.clone(),
        hostname: hostname.to_string(),
        ..ChronosConfig::default()
    };
    if config.ha {
        let address = format!("{hostname}:4400");
        let scheduler = ChronosScheduler::replicated(
            chronos_config,
            &address,
            plateau_chronos::limits::LEADER_SESSION_TTL_DEFAULT,
        );
        let info = scheduler.framework_info();
        let leader = scheduler
            .leader_config()
            .cloned()
            .expect("a replicated Chronos has an election");
        return SchedulerDriver::with_masters(
            info,
            masters.clone(),
            Observed::new(scheduler, ledger.clone(), bug),
        )
        .with_explicit_acknowledgements()
        .with_leader_election(leader);
    }
    let store: Box<dyn Store> = if bug == Some(InjectedBug::ChronosForgetsIntent) {
        Box::new(ForgetfulStore(config.store.clone()))
    } else {
        Box::new(config.store.clone())
    };
    let scheduler =
        ChronosScheduler::new(chronos_config, store).expect("an in-memory Chronos store loads");
    let info = scheduler.framework_info();
    SchedulerDriver::with_masters(
        info,
        masters.clone(),
        Observed::new(scheduler, ledger.clone(), bug),
    )
    .with_explicit_acknowledgements()
}

/// Posts `job` to the Chronos process `upid`; true when Chronos accepted it.
pub fn post_job(sim: &mut plateau_runtime::sim::Sim, upid: &Upid, job: &ChronosJobSpec) -> bool {
    let (body, kind) = (job.job(), job.kind());
    sim.call(upid, move |p: &mut ChronosSimProcess, ctx| {
        let (s, mut d) = p.scheduler_and_driver(ctx);
        s.inner_mut().upsert_job(&mut d, body, kind).is_ok()
    }) == Some(true)
}

/// Posts `job` to the leading Chronos `upid` (leader + standbys); the answer lands in the
/// returned slot once the job's writes commit (true: accepted). None when the instance does
/// not lead.
pub fn post_job_to_leader(
    sim: &mut plateau_runtime::sim::Sim,
    upid: &Upid,
    job: &ChronosJobSpec,
) -> Option<Arc<Mutex<Option<bool>>>> {
    let (body, kind) = (job.job(), job.kind());
    let slot: Arc<Mutex<Option<bool>>> = Arc::default();
    let answer = slot.clone();
    let posted = sim.call(upid, move |p: &mut ChronosSimProcess, ctx| {
        let (s, mut d) = p.scheduler_and_driver(ctx);
        let c = s.inner_mut();
        if c.role(&d) != plateau_chronos::scheduler::Role::Leader {
            return false;
        }
        let result = c.upsert_job(&mut d, body, kind).is_ok();
        c.reply_when_committed(
            &d,
            Box::new(move |committed| {
                *answer.lock().expect("answer slot") = Some(committed.is_ok() && result);
            }),
        );
        true
    }) == Some(true);
    posted.then_some(slot)
}

impl SimScheduler for ChronosScheduler {
    fn install_observed(h: &mut Handlers<ChronosSimProcess>) {
        h.on(|p: &mut ChronosSimProcess, ctx, from, _m: Tick| {
            if from != ctx.self_upid() {
                return;
            }
            let (s, mut d) = p.scheduler_and_driver(ctx);
            s.inner_mut().on_tick_message(&mut d);
        });
    }
}

// ---- the witness ---------------------------------------------------------------------------

/// What the machines saw of one run.
#[derive(Debug, Default)]
struct RunSeen {
    /// Launched attempts: attempt → (machine, task id).
    attempts: BTreeMap<u32, (usize, String)>,
    /// An attempt exited 0.
    succeeded: bool,
}

#[derive(Debug, Default)]
struct WitnessState {
    machines: Vec<SimMachine>,
    /// Runs by run id (`<job>@<ms>[:tag]`).
    runs: BTreeMap<String, RunSeen>,
    /// Scheduled, acknowledged jobs: name → (first instant ms, period ms).
    schedules: BTreeMap<String, (i64, i64)>,
    /// Calendar time the faults stopped, ms since the epoch.
    fault_end_ms: Option<i64>,
    launches: u64,
}

/// Watches every Chronos task launched on the simulated machines and checks exactly-once
/// (see the [module docs](self)). Cheap to clone; shared by every slave's containerizer.
#[derive(Debug, Clone, Default)]
pub struct ChronosWitness {
    state: Arc<Mutex<WitnessState>>,
    ledger: Ledger,
}

impl ChronosWitness {
    /// A witness reporting violations to `ledger`.
    pub fn new(ledger: Ledger) -> Self {
        ChronosWitness {
            state: Arc::default(),
            ledger,
        }
    }

    fn lock(&self) -> MutexGuard<'_, WitnessState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers machine `index` (indexes are given in order).
    pub fn add_machine(&self, index: usize, machine: SimMachine) {
        let mut s = self.lock();
        assert_eq!(s.machines.len(), index, "machines are added in order");
        s.machines.push(machine);
    }

    /// The jobs whose instants must all run (the acknowledged scheduled ones).
    pub fn set_jobs(&self, jobs: &[ChronosJobSpec]) {
        let mut s = self.lock();
        s.schedules = jobs
            .iter()
            .filter(|j| j.acknowledged)
            .filter_map(|j| {
                j.schedule.map(|(start, period)| {
                    (
                        j.name.clone(),
                        (start.timestamp_millis(), period.as_millis() as i64),
                    )
                })
            })
            .collect();
    }

    /// The faults stopped at calendar time `wall`: instants up to it must all run.
    pub fn set_fault_end(&self, wall: SystemTime) {
        self.lock().fault_end_ms = Some(DateTime::<Utc>::from(wall).timestamp_millis());
    }

    /// Chronos tasks launched on machines so far.
    pub fn launches(&self) -> u64 {
        self.lock().launches
    }

    /// Scheduled instants launched so far (at least one attempt).
    pub fn scheduled_runs(&self) -> usize {
        self.lock()
            .runs
            .keys()
            .filter(|id| parse_run_id(id).is_some_and(|(_, _, t)| t == Trigger::Schedule))
            .count()
    }

    /// Checks a launch of `task_id` on `machine` before it happens; a problem is reported to
    /// the ledger.
    fn before_launch(&self, machine: usize, task_id: &str) {
        let Some(parsed) = parse_task_id(task_id) else {
            return;
        };
        let run_id = parsed.run_id();
        let problem = {
            let s = self.lock();
            let seen = s.runs.get(&run_id);
            let twice = seen.and_then(|r| r.attempts.get(&parsed.attempt));
            let live = seen.and_then(|r| {
                r.attempts
                    .iter()
                    .find(|(_, (m, id))| s.machines[*m].is_running(id))
            });
            if let Some((m, _)) = twice {
                Some(format!(
                    "task {task_id} (attempt {} of run {run_id}) launched on machine {machine} \
                     after it was launched on machine {m}",
                    parsed.attempt
                ))
            } else if let Some((a, (m, id))) = live {
                Some(format!(
                    "task {task_id} of run {run_id} launched on machine {machine} while attempt \
                     {a} ({id}) still runs on machine {m}"
                ))
            } else if seen.is_some_and(|r| r.succeeded) {
                Some(format!(
                    "task {task_id} of run {run_id} launched on machine {machine} after an \
                     attempt of the run succeeded"
                ))
            } else if parsed.trigger == Trigger::Schedule {
                s.schedules.get(&parsed.job).and_then(|(start, period)| {
                    let off_grid = parsed.millis < *start || (parsed.millis - start) % period != 0;
                    off_grid.then(|| {
                        format!(
                            "task {task_id}: {} is not an instant of job {}'s schedule",
                            parsed.millis, parsed.job
                        )
                    })
                })
            } else {
                None
            }
        };
        if let Some(detail) = problem {
            self.ledger.report(EXACTLY_ONCE, detail);
        }
    }

    fn launched(&self, machine: usize, task_id: &str) {
        let Some(parsed) = parse_task_id(task_id) else {
            return;
        };
        let mut s = self.lock();
        s.launches += 1;
        s.runs
            .entry(parsed.run_id())
            .or_default()
            .attempts
            .insert(parsed.attempt, (machine, task_id.to_string()));
    }

    fn ended(&self, task_id: &str, termination: &Termination) {
        if termination.exit_code != Some(0) || termination.oom_killed {
            return;
        }
        let Some(parsed) = parse_task_id(task_id) else {
            return;
        };
        if let Some(run) = self.lock().runs.get_mut(&parsed.run_id()) {
            run.succeeded = true;
        }
    }

    /// A termination callback that tells the witness, then `next`.
    pub fn termination_callback(&self, next: TerminationCallback) -> TerminationCallback {
        let witness = self.clone();
        Arc::new(move |task_id, termination| {
            witness.ended(&task_id, &termination);
            next(task_id, termination)
        })
    }

    /// `inner` (machine `machine`'s containerizer), watched.
    pub fn containerizer(
        &self,
        inner: Box<dyn Containerizer>,
        machine: usize,
    ) -> WitnessedContainerizer {
        WitnessedContainerizer {
            inner,
            witness: self.clone(),
            machine,
        }
    }

    /// After the convergence phase: every instant of every acknowledged scheduled job due at
    /// or before the end of the faults was launched.
    pub fn check_converged(&self) -> Result<(), Failure> {
        let s = self.lock();
        let Some(end) = s.fault_end_ms else {
            return Ok(());
        };
        for (job, (start, period)) in &s.schedules {
            let mut instant = *start;
            while instant <= end {
                let run_id = format!("{job}@{instant}");
                if !s.runs.contains_key(&run_id) {
                    return Err((
                        "every Chronos instant due before the faults stopped ran".into(),
                        format!(
                            "job {job}: the instant {} ({run_id}) never ran",
                            DateTime::<Utc>::from_timestamp_millis(instant)
                                .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
                                .unwrap_or_default()
                        ),
                    ));
                }
                instant += period;
            }
        }
        Ok(())
    }
}

fn parse_run_id(id: &str) -> Option<(&str, i64, Trigger)> {
    let (job, rest) = id.rsplit_once('@')?;
    let (millis, trigger) = match rest.split_once(':') {
        None => (rest, Trigger::Schedule),
        Some((m, "dep")) => (m, Trigger::Dependency),
        Some((m, _)) => (m, Trigger::RunNow),
    };
    Some((job, millis.parse().ok()?, trigger))
}

/// A slave's containerizer watched by the [`ChronosWitness`].
pub struct WitnessedContainerizer {
    inner: Box<dyn Containerizer>,
    witness: ChronosWitness,
    machine: usize,
}

impl Containerizer for WitnessedContainerizer {
    fn launch(&mut self, spec: TaskSpec) -> Result<LaunchInfo, ContainerizerError> {
        let task_id = spec.task_id.clone();
        self.witness.before_launch(self.machine, &task_id);
        let info = self.inner.launch(spec)?;
        self.witness.launched(self.machine, &task_id);
        Ok(info)
    }
    fn kill(&mut self, task_id: &str, grace: Duration) -> Result<(), ContainerizerError> {
        self.inner.kill(task_id, grace)
    }
    fn usage(&self, task_id: &str) -> Result<Usage, ContainerizerError> {
        self.inner.usage(task_id)
    }
    fn recover(&mut self, known: Vec<RecoverInfo>) -> Vec<RecoveredTask> {
        self.inner.recover(known)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn start() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600)
    }

    #[test]
    fn drawn_jobs_are_valid_chronos_jobs() {
        let jobs = draw_jobs(4, 40, start());
        assert_eq!(jobs, draw_jobs(4, 40, start()));
        let now = DateTime::<Utc>::from(start());
        let mut names = Vec::new();
        for spec in &jobs {
            assert!(spec.schedule.is_some() != spec.parent.is_some(), "{spec:?}");
            if let Some(parent) = &spec.parent {
                assert!(names.contains(parent), "{spec:?}");
            }
            let job = spec.job();
            if let Some((first, _)) = spec.schedule {
                job.validate(now).expect("a valid job");
                assert_eq!(first.timestamp_subsec_millis(), 500);
            }
            names.push(spec.name.clone());
        }
        assert!(jobs.iter().any(|j| j.parent.is_some()));
        assert!(jobs.iter().any(|j| j.command.ends_with("exit=1")));
    }

    #[test]
    fn run_ids_parse() {
        assert_eq!(
            parse_run_id("job3@1767225610500"),
            Some(("job3", 1_767_225_610_500, Trigger::Schedule))
        );
        assert_eq!(
            parse_run_id("a@b@12:dep"),
            Some(("a@b", 12, Trigger::Dependency))
        );
        assert_eq!(parse_run_id("nothing"), None);
    }

    #[test]
    fn the_witness_flags_a_second_launch_of_an_instant() {
        let ledger = Ledger::new();
        let witness = ChronosWitness::new(ledger.clone());
        let machine = SimMachine::new();
        witness.add_machine(0, machine);
        let spec = ChronosJobSpec {
            name: "j".into(),
            schedule: Some((DateTime::<Utc>::from(start()), Duration::from_secs(5))),
            parent: None,
            command: "sim:run=1s".into(),
            acknowledged: true,
        };
        witness.set_jobs(std::slice::from_ref(&spec));
        let t0 = "ct:1767225600000:0:j:";
        witness.before_launch(0, t0);
        witness.launched(0, t0);
        assert_eq!(ledger.violation_count(), 0);
        // The retry of a failed attempt is fine; the same attempt again is not.
        witness.before_launch(0, "ct:1767225600000:1:j:");
        assert_eq!(ledger.violation_count(), 0);
        witness.before_launch(0, t0);
        assert_eq!(ledger.violation_count(), 1);
        // An instant off the schedule's grid.
        witness.before_launch(0, "ct:1767225601000:0:j:");
        assert_eq!(ledger.violation_count(), 2);
        // After an exit 0, no more attempts.
        witness.ended(
            t0,
            &Termination {
                exit_code: Some(0),
                signal: None,
                oom_killed: false,
                message: String::new(),
            },
        );
        witness.before_launch(0, "ct:1767225600000:2:j:");
        assert_eq!(ledger.violation_count(), 3);
        // Missing instants after convergence.
        witness.set_fault_end(start() + Duration::from_secs(5));
        let missing = witness.check_converged().unwrap_err();
        assert!(missing.1.contains("j@1767225605000"), "{missing:?}");
    }
}
