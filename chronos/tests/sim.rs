//! The Chronos scheduler in the simulator (virtual clock, calendar from 2026-01-01), against a
//! fake master (`common/mod.rs`): runs on time, dependencies, retries, run-now, DST, and
//! exactly one successful run per scheduled instant across crashes at every write.
mod common;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use common::FakeMaster;
use plateau_chronos::job::Job;
use plateau_chronos::scheduler::{ChronosConfig, ChronosProcess, ChronosScheduler, PostKind};
use plateau_chronos::store::{parse_task_id, MemoryStore, RunOutcomeKind};
use plateau_master::ids::SlaveId;
use plateau_master::messages::TaskState;
use plateau_runtime::sim::{Sim, SimConfig};
use plateau_runtime::{NodeAddr, Upid};

struct Harness {
    sim: Sim,
    master: Upid,
    chronos_node: NodeAddr,
    chronos: Upid,
    store: MemoryStore,
    config: ChronosConfig,
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

fn test_config() -> ChronosConfig {
    ChronosConfig {
        failure_retry: Duration::from_secs(5),
        ..ChronosConfig::default()
    }
}

impl Harness {
    fn new(seed: u64, start: Option<&str>, config: ChronosConfig) -> Harness {
        let mut sim_config = SimConfig::new(seed);
        if let Some(start) = start {
            sim_config.start_wall = SystemTime::from(at(start));
        }
        let mut sim = Sim::new(sim_config);
        let master_node = NodeAddr::new("10.0.0.1", 5050);
        let chronos_node = NodeAddr::new("10.0.0.2", 4400);
        sim.add_node(master_node.clone());
        sim.add_node(chronos_node.clone());
        let master = sim.spawn(&master_node, "master", FakeMaster::new(2));
        let store = MemoryStore::new();
        let mut h = Harness {
            sim,
            master,
            chronos: Upid::new("chronos", &chronos_node),
            chronos_node,
            store,
            config,
        };
        h.spawn_chronos();
        h
    }

    fn spawn_chronos(&mut self) {
        let scheduler =
            ChronosScheduler::new(self.config.clone(), Box::new(self.store.clone())).unwrap();
        let driver = scheduler.into_driver(self.master.clone());
        self.chronos = self.sim.spawn(&self.chronos_node, "chronos", driver);
    }

    /// Kills the Chronos node (no finalize, timers gone), keeps the store, brings it back
    /// after `down`. `down` is longer than the simulator's link timeout (1 s): the fake master
    /// learns of the broken link only then, and a notice arriving after the new scheduler
    /// registered would wrongly deactivate it (the real master must tell such stale notices
    /// apart).
    fn crash_and_restart(&mut self, down: Duration) {
        self.sim.crash(&self.chronos_node);
        self.sim.run_for(down);
        self.sim.restart(&self.chronos_node);
        self.store.fail_after(None);
        self.spawn_chronos();
    }

    fn post(&mut self, job: Job, kind: PostKind) {
        let result = self
            .sim
            .call(&self.chronos, |p: &mut ChronosProcess, ctx| {
                let (s, mut d) = p.scheduler_and_driver(ctx);
                s.upsert_job(&mut d, job, kind).map_err(|e| e.to_string())
            })
            .expect("chronos runs");
        result.unwrap();
    }

    fn job(&mut self, name: &str) -> Job {
        self.sim
            .inspect(&self.chronos, |p: &ChronosProcess| p.scheduler().job(name))
            .expect("chronos runs")
            .expect("job exists")
    }

    fn master<R>(&mut self, f: impl FnOnce(&FakeMaster) -> R) -> R {
        self.sim.inspect(&self.master.clone(), f).unwrap()
    }

    /// Instants (ms) of `job`'s runs that finished successfully on the slaves, with counts.
    fn successes(&mut self, job: &str) -> BTreeMap<i64, usize> {
        let mut by_instant = BTreeMap::new();
        self.master(|m| {
            for e in m.events_of(job, TaskState::Finished) {
                let parsed = parse_task_id(&e.task_id).unwrap();
                *by_instant.entry(parsed.millis).or_insert(0) += 1;
            }
        });
        by_instant
    }
}

fn scheduled(name: &str, schedule: &str, command: &str) -> Job {
    let mut job = Job::new(name, command);
    job.schedule = Some(schedule.to_string());
    job
}

fn dependent(name: &str, parents: &[&str], command: &str) -> Job {
    let mut job = Job::new(name, command);
    job.parents = Some(parents.iter().map(|p| p.to_string()).collect());
    job
}

const START_MS: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

#[test]
fn ten_second_job_runs_on_time_for_an_hour_once_per_instant() {
    let mut h = Harness::new(1, None, test_config());
    h.post(
        scheduled("tick", "R/2026-01-01T00:00:10Z/PT10S", "sleep 2"),
        PostKind::Iso8601,
    );
    h.sim.run_for(Duration::from_secs(3600 + 5));
    let successes = h.successes("tick");
    let expected: Vec<i64> = (1..=360).map(|i| START_MS + i * 10_000).collect();
    assert_eq!(successes.keys().copied().collect::<Vec<_>>(), expected);
    assert!(successes.values().all(|&n| n == 1), "a duplicated instant");
    // On time: every task was launched within a second of its instant.
    let launches = h.master(|m| {
        m.events_of("tick", TaskState::Staging)
            .iter()
            .map(|e| (parse_task_id(&e.task_id).unwrap().millis, e.wall))
            .collect::<Vec<_>>()
    });
    assert_eq!(launches.len(), 360);
    for (millis, wall) in launches {
        let launched = DateTime::<Utc>::from(wall).timestamp_millis();
        assert!(
            (0..1000).contains(&(launched - millis)),
            "instant {millis} launched at {launched}"
        );
    }
    let job = h.job("tick");
    assert_eq!(job.success_count, 360);
    assert_eq!(job.error_count, 0);
    // The stored schedule moved on with the runs.
    assert_eq!(
        job.schedule.as_deref(),
        Some("R/2026-01-01T01:00:10.000Z/PT10S")
    );
}

/// A launch lost on its way: Chronos asks the master, hears "unknown" and launches the same
/// attempt again. A late duplicate of that answer (simulator seed 4) must not launch it a
/// second time (the master would refuse the task id, in use by the relaunched task), nor
/// count as news of the relaunch: when the relaunch is lost too, Chronos must ask again
/// (simulator seed 11), hear "unknown" again, and launch it a third time.
#[test]
fn late_duplicate_unknown_answers_neither_relaunch_nor_silence_a_lost_relaunch() {
    for lost in [1, 2] {
        relaunches_after_lost_launches(lost);
    }
}

fn relaunches_after_lost_launches(lost: u32) {
    let mut h = Harness::new(1, None, test_config());
    h.sim.call::<FakeMaster, _>(&h.master.clone(), |m, _| {
        m.launches_to_lose = lost;
        m.duplicate_reconcile_answers = true;
    });
    h.post(
        scheduled("once", "R1/2026-01-01T00:00:10Z/PT1H", "sleep 2"),
        PostKind::Iso8601,
    );
    h.sim.run_for(Duration::from_secs(400));
    assert!(h.master(|m| m.explicit_reconciliations) >= lost);
    assert_eq!(
        h.master(|m| m.duplicate_launches.clone()),
        Vec::<String>::new()
    );
    assert_eq!(
        h.master(|m| m.events_of("once", TaskState::Staging).len()),
        1
    );
    assert_eq!(
        h.successes("once").values().copied().collect::<Vec<_>>(),
        vec![1]
    );
    let job = h.job("once");
    assert_eq!((job.success_count, job.error_count), (1, 0));
}

#[test]
fn dependent_jobs_run_after_their_parents() {
    let mut h = Harness::new(2, None, test_config());
    h.post(
        scheduled("extract", "R3/2026-01-01T00:00:10Z/PT30S", "sleep 5"),
        PostKind::Iso8601,
    );
    h.post(
        scheduled("fetch", "R3/2026-01-01T00:00:10Z/PT30S", "sleep 2"),
        PostKind::Iso8601,
    );
    h.post(
        dependent("load", &["extract"], "sleep 1"),
        PostKind::Dependency,
    );
    h.post(
        dependent("report", &["extract", "fetch"], "sleep 1"),
        PostKind::Dependency,
    );
    h.sim.run_for(Duration::from_secs(200));
    let finished = |h: &mut Harness, job: &str| {
        h.master(|m| {
            m.events_of(job, TaskState::Finished)
                .iter()
                .map(|e| e.wall)
                .collect::<Vec<_>>()
        })
    };
    let extract_done = finished(&mut h, "extract");
    let load_started = h.master(|m| {
        m.events_of("load", TaskState::Staging)
            .iter()
            .map(|e| e.wall)
            .collect::<Vec<_>>()
    });
    assert_eq!(extract_done.len(), 3);
    assert_eq!(load_started.len(), 3);
    for (done, started) in extract_done.iter().zip(&load_started) {
        assert!(started >= done, "load started before extract finished");
    }
    // Two parents: the child runs once per round of both.
    assert_eq!(finished(&mut h, "report").len(), 3);
    assert_eq!(h.job("load").success_count, 3);
    assert_eq!(h.job("report").success_count, 3);
    // Exhausted finite jobs are disabled after their last run.
    assert!(h.job("extract").disabled);
    assert_eq!(
        h.job("extract").schedule.as_deref().map(|s| &s[..3]),
        Some("R0/")
    );
}

#[test]
fn failing_job_retries_then_is_marked_failed_and_skips_dependents() {
    let mut h = Harness::new(3, None, test_config());
    let mut job = scheduled("flaky", "R1/2026-01-01T00:00:10Z/PT1H", "exit 1");
    job.retries = 2;
    h.post(job, PostKind::Iso8601);
    h.post(dependent("after", &["flaky"], "true"), PostKind::Dependency);
    h.sim.run_for(Duration::from_secs(120));
    let failed = h.master(|m| {
        m.events_of("flaky", TaskState::Failed)
            .iter()
            .map(|e| parse_task_id(&e.task_id).unwrap().attempt)
            .collect::<Vec<_>>()
    });
    assert_eq!(failed, [0, 1, 2], "one try and two retries");
    let job = h.job("flaky");
    assert_eq!(job.error_count, 1);
    assert_eq!(job.errors_since_last_success, 1);
    assert_eq!(job.success_count, 0);
    assert!(job.last_error.starts_with("2026-01-01T00:00:"));
    let history = h
        .sim
        .inspect(&h.chronos, |p: &ChronosProcess| {
            p.scheduler().history("flaky")
        })
        .unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].outcome, RunOutcomeKind::Failure);
    assert_eq!(history[0].attempts, 3);
    assert_eq!(history[0].message.as_deref(), Some("exited with status 1"));
    // Retries wait failure_retry (5 s) between attempts.
    let launches = h.master(|m| {
        m.events_of("flaky", TaskState::Staging)
            .iter()
            .map(|e| e.wall)
            .collect::<Vec<_>>()
    });
    for pair in launches.windows(2) {
        assert!(pair[1].duration_since(pair[0]).unwrap() >= Duration::from_secs(5));
    }
    assert_eq!(
        h.master(|m| m.events_of("after", TaskState::Staging).len()),
        0
    );
}

#[test]
fn run_now_runs_once_without_touching_the_schedule() {
    let mut h = Harness::new(4, None, test_config());
    h.post(
        scheduled("later", "R/2027-01-01T00:00:00Z/P1D", "sleep 1"),
        PostKind::Iso8601,
    );
    h.sim.run_for(Duration::from_secs(5));
    let run_id = h
        .sim
        .call(&h.chronos.clone(), |p: &mut ChronosProcess, ctx| {
            let (s, mut d) = p.scheduler_and_driver(ctx);
            s.run_now(&mut d, "later", "--verbose").unwrap()
        })
        .unwrap();
    assert!(run_id.ends_with(":now"));
    h.sim.run_for(Duration::from_secs(10));
    assert_eq!(
        h.master(|m| m.events_of("later", TaskState::Finished).len()),
        1
    );
    let job = h.job("later");
    assert_eq!(job.success_count, 1);
    assert_eq!(job.schedule.as_deref(), Some("R/2027-01-01T00:00:00Z/P1D"));
    // Launched within a second of the call.
    let launched = h.master(|m| m.events_of("later", TaskState::Staging)[0].wall);
    let asked = SystemTime::from(at("2026-01-01T00:00:05Z"));
    assert!(launched.duration_since(asked).unwrap() < Duration::from_secs(1));
}

#[test]
fn kill_ends_a_run_without_retry_or_counters() {
    let mut h = Harness::new(5, None, test_config());
    h.post(
        scheduled("long", "R1/2026-01-01T00:00:02Z/PT1H", "sleep 600"),
        PostKind::Iso8601,
    );
    h.sim.run_for(Duration::from_secs(10));
    let killed = h
        .sim
        .call(&h.chronos.clone(), |p: &mut ChronosProcess, ctx| {
            let (s, mut d) = p.scheduler_and_driver(ctx);
            s.kill_tasks(&mut d, "long").unwrap()
        })
        .unwrap();
    assert_eq!(killed, 1);
    h.sim.run_for(Duration::from_secs(30));
    assert_eq!(
        h.master(|m| m.events_of("long", TaskState::Killed).len()),
        1
    );
    assert_eq!(
        h.master(|m| m.events_of("long", TaskState::Staging).len()),
        1
    );
    let job = h.job("long");
    assert_eq!((job.success_count, job.error_count), (0, 0));
    let runs = h
        .sim
        .inspect(&h.chronos, |p: &ChronosProcess| {
            p.scheduler().runs().count()
        })
        .unwrap();
    assert_eq!(runs, 0);
}

#[test]
fn daily_new_york_job_runs_once_on_the_spring_forward_day() {
    let config = ChronosConfig {
        tick_max: Duration::from_secs(60),
        ..test_config()
    };
    let mut h = Harness::new(6, Some("2026-03-07T00:00:00Z"), config);
    let mut job = scheduled("nightly", "R/2026-03-07T02:30:00.000-05:00/P1D", "sleep 60");
    job.schedule_time_zone = Some("America/New_York".into());
    h.post(job, PostKind::Iso8601);
    h.sim.run_for(Duration::from_secs(3 * 86_400));
    let launches: Vec<DateTime<Utc>> = h.master(|m| {
        m.events_of("nightly", TaskState::Staging)
            .iter()
            .map(|e| {
                DateTime::from_timestamp_millis(parse_task_id(&e.task_id).unwrap().millis).unwrap()
            })
            .collect()
    });
    // 02:30 EST, then 02:30 on the spring-forward day (does not exist) runs once at 03:30 EDT,
    // then 02:30 EDT.
    assert_eq!(
        launches,
        [
            at("2026-03-07T07:30:00Z"),
            at("2026-03-08T07:30:00Z"),
            at("2026-03-09T06:30:00Z"),
        ]
    );
    assert_eq!(h.job("nightly").success_count, 3);
}

#[test]
fn busy_non_concurrent_job_waits_once_and_skips_the_rest() {
    let mut h = Harness::new(7, None, test_config());
    // Runs 25 s, due every 10 s: with catchUp "once" one run waits, the others are skipped.
    h.post(
        scheduled("slow", "R/2026-01-01T00:00:10Z/PT10S", "sleep 25"),
        PostKind::Iso8601,
    );
    h.sim.run_for(Duration::from_secs(125));
    let launched: Vec<i64> = h.master(|m| {
        m.events_of("slow", TaskState::Staging)
            .iter()
            .map(|e| (parse_task_id(&e.task_id).unwrap().millis - START_MS) / 1000)
            .collect()
    });
    // 10 runs 10..35 while 20 waits and 30 is skipped; 20 runs 35..60 (40 waits, 50 and 60
    // skipped); 40 runs 60..85 (70 waits, 80 skipped); 70 runs 85..110; 90 runs from 110.
    assert_eq!(launched, [10, 20, 40, 70, 90]);
    let running = h.master(|m| m.known_tasks());
    assert_eq!(running, 1);
}

/// One scenario: jobs `every10` (R20, every 10 s, catchUp all, 3 s) and its dependent `next`;
/// the scheduler crashes at the `k`-th commit (before it, or right after it when `after`), is
/// down for `down`, and restarts on the same store. Returns whether the crash happened.
fn crash_scenario(seed: u64, k: u64, after: bool, down: Duration) -> bool {
    let mut h = Harness::new(seed, None, test_config());
    let mut job = scheduled("every10", "R20/2026-01-01T00:00:10Z/PT10S", "sleep 3");
    job.catch_up = Some("all".into());
    h.post(job, PostKind::Iso8601);
    h.post(
        dependent("next", &["every10"], "sleep 1"),
        PostKind::Dependency,
    );
    if after {
        h.store.crash_after_commit(k);
    } else {
        h.store.fail_after(Some(k));
    }
    let store = h.store.clone();
    let crashed = h
        .sim
        .run_until_condition(Duration::from_secs(400), |_| store.is_tripped());
    if crashed {
        h.crash_and_restart(down);
    }
    h.sim.run_for(Duration::from_secs(400));
    let context = format!("seed {seed}, crash at commit {k} (after: {after}), down {down:?}");
    let every10 = h.successes("every10");
    let expected: Vec<i64> = (1..=20).map(|i| START_MS + i * 10_000).collect();
    assert_eq!(
        every10.keys().copied().collect::<Vec<_>>(),
        expected,
        "{context}: missing instants"
    );
    assert!(
        every10.values().all(|&n| n == 1),
        "{context}: duplicated runs {every10:?}"
    );
    let next_runs = h.master(|m| m.events_of("next", TaskState::Finished).len());
    assert_eq!(next_runs, 20, "{context}: dependent runs");
    assert_eq!(h.job("every10").success_count, 20, "{context}");
    assert_eq!(h.job("next").success_count, 20, "{context}");
    let (runs, stopped) = h
        .sim
        .inspect(&h.chronos, |p: &ChronosProcess| {
            (
                p.scheduler().runs().count(),
                p.scheduler().stopped().is_some(),
            )
        })
        .unwrap();
    assert_eq!((runs, stopped), (0, false), "{context}");
    assert_eq!(
        h.master(|m| m.known_tasks()),
        0,
        "{context}: unacknowledged tasks"
    );
    crashed
}

#[test]
fn exactly_one_run_per_instant_across_a_crash_at_every_write() {
    let mut crashes = 0;
    for k in 0.. {
        let mut any = false;
        for after in [false, true] {
            let down = Duration::from_millis(1_500 + (k * 1_700) % 15_000);
            if crash_scenario(100 + k, k, after, down) {
                crashes += 1;
                any = true;
            }
        }
        if !any {
            break;
        }
    }
    // 20 runs of two jobs write well over a hundred times.
    assert!(crashes > 150, "only {crashes} crash points");
}

#[test]
fn exactly_one_run_per_instant_across_repeated_random_crashes() {
    for seed in 0..10u64 {
        let mut h = Harness::new(1000 + seed, None, test_config());
        let mut job = scheduled("every10", "R30/2026-01-01T00:00:10Z/PT10S", "sleep 4");
        job.catch_up = Some("all".into());
        h.post(job, PostKind::Iso8601);
        h.post(
            dependent("next", &["every10"], "sleep 2"),
            PostKind::Dependency,
        );
        // Five crashes at seeded virtual times, each down for a seeded while.
        for i in 0..5u64 {
            let mix = (seed * 7919 + i * 104_729) % 10_007;
            h.sim.run_for(Duration::from_millis(20_000 + mix * 5));
            h.crash_and_restart(Duration::from_millis(1_500 + mix % 20_000));
        }
        h.sim.run_for(Duration::from_secs(600));
        let every10 = h.successes("every10");
        let expected: Vec<i64> = (1..=30).map(|i| START_MS + i * 10_000).collect();
        assert_eq!(
            every10.keys().copied().collect::<Vec<_>>(),
            expected,
            "seed {seed}"
        );
        assert!(
            every10.values().all(|&n| n == 1),
            "seed {seed}: {every10:?}"
        );
        let next = h.master(|m| m.events_of("next", TaskState::Finished).len());
        assert_eq!(next, 30, "seed {seed}");
        assert_eq!(h.job("every10").success_count, 30, "seed {seed}");
    }
}

#[test]
fn state_in_redb_survives_a_restart_of_the_scheduler() {
    use plateau_chronos::store::{RedbStore, Store};
    let dir = tempfile::tempdir().unwrap();
    {
        let mut sim = Sim::new(SimConfig::new(9));
        let (m, c) = (
            NodeAddr::new("10.0.0.1", 5050),
            NodeAddr::new("10.0.0.2", 4400),
        );
        sim.add_node(m.clone());
        sim.add_node(c.clone());
        let master = sim.spawn(&m, "master", FakeMaster::new(1));
        let store = RedbStore::open_in(dir.path()).unwrap();
        let scheduler = ChronosScheduler::new(test_config(), Box::new(store)).unwrap();
        let chronos = sim.spawn(&c, "chronos", scheduler.into_driver(master));
        sim.call(&chronos, |p: &mut ChronosProcess, ctx| {
            let (s, mut d) = p.scheduler_and_driver(ctx);
            let job = scheduled("tick", "R/2026-01-01T00:00:10Z/PT10S", "sleep 2");
            s.upsert_job(&mut d, job, PostKind::Iso8601).unwrap();
        })
        .unwrap();
        sim.run_for(Duration::from_secs(35));
        // Dropping the simulator drops the scheduler and closes the database.
    }
    let store = RedbStore::open_in(dir.path()).unwrap();
    let snapshot = store.load().unwrap();
    assert_eq!(snapshot.framework_id.as_deref(), Some("F-0001"));
    assert_eq!(snapshot.jobs["tick"].success_count, 3);
    assert_eq!(
        snapshot.job_states["tick"].last_scheduled,
        Some(at("2026-01-01T00:00:30Z"))
    );
    assert!(snapshot.runs.is_empty());
    let scheduler = ChronosScheduler::new(test_config(), Box::new(store)).unwrap();
    assert_eq!(scheduler.framework_info().id.unwrap().as_str(), "F-0001");
    assert_eq!(scheduler.framework_info().failover_timeout_secs, 604_800.0);
    let history = scheduler.history("tick");
    assert_eq!(history.len(), 3);
    assert!(history.iter().all(|e| e.outcome == RunOutcomeKind::Success));
    assert_eq!(history[0].duration_ms(), 2000);
    let stat = scheduler.job_stat("tick").unwrap();
    assert_eq!(stat.histogram.count, 3);
    assert_eq!(
        scheduler.job("tick").unwrap().schedule.as_deref(),
        Some("R/2026-01-01T00:00:40.000Z/PT10S")
    );
}

/// A slave whose machine is scheduled for maintenance (its offers carry an unavailability)
/// gets no new runs: every run of a job goes to the other slave, and Chronos counts the
/// offers it declined for maintenance.
#[test]
fn no_new_runs_on_a_slave_in_maintenance() {
    let mut h = Harness::new(1, None, test_config());
    let master = h.master.clone();
    h.sim
        .call(&master, |m: &mut FakeMaster, _ctx| {
            m.slaves[0].unavailability = Some(plateau_master::maintenance::Unavailability {
                start_nanos: 0,
                duration_nanos: None,
            });
        })
        .unwrap();
    h.post(
        scheduled("tick", "R/2026-01-01T00:00:10Z/PT10S", "sleep 1"),
        PostKind::Iso8601,
    );
    h.sim.run_for(Duration::from_secs(300));
    let slaves: Vec<SlaveId> = h.master(|m| {
        m.events_of("tick", TaskState::Staging)
            .iter()
            .map(|e| e.slave.clone())
            .collect()
    });
    assert!(slaves.len() >= 25, "the job ran: {} launches", slaves.len());
    assert!(
        slaves.iter().all(|s| s.as_str() == "S2"),
        "runs on the slave in maintenance: {slaves:?}"
    );
    let declined = h
        .sim
        .inspect(&h.chronos.clone(), |p: &ChronosProcess| {
            p.scheduler().metrics().counters.offers_declined_maintenance
        })
        .unwrap();
    assert!(declined > 0, "offers of S1 declined for maintenance");
}
