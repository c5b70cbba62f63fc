//! Chronos in the simulator against the real master ([`MasterProcess`] with a
//! [`MemoryRegistry`]) and a real slave ([`SlaveProcess`] with a [`SimContainerizer`] and a
//! [`MemoryCheckpoint`]): jobs run on time, dependents after their parents, and exactly one
//! task per scheduled instant is launched on the slave across repeated crashes of Chronos with
//! short downtimes.
//!
//! The witness is the slave's containerizer: every launch it is asked for is recorded (task id
//! and virtual time), independently of what Chronos or the master believe.
//!
//! [`ha`]: the same with three replicated masters and several Chronos as leader + standbys.

#[path = "real_cluster_sim/ha.rs"]
mod ha;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use plateau_chronos::job::Job;
use plateau_chronos::scheduler::{ChronosConfig, ChronosProcess, ChronosScheduler, PostKind};
use plateau_chronos::store::{parse_task_id, MemoryStore};
use plateau_master::registry::MemoryRegistry;
use plateau_master::resources::{Attributes, Resources};
use plateau_master::{MasterConfig, MasterProcess};
use plateau_runtime::sim::{Sim, SimConfig};
use plateau_runtime::{NodeAddr, Upid};
use plateau_slave::checkpoint::MemoryCheckpoint;
use plateau_slave::containerizer::{
    Containerizer, ContainerizerError, LaunchInfo, RecoverInfo, RecoveredTask, SimContainerizer,
    SimMachine, TaskSpec, Usage,
};
use plateau_slave::health::{ProbeScript, ScriptedProber};
use plateau_slave::process::{
    MailboxSlot, SlaveEffects, SlaveProcess, SlaveProcessConfig, SLAVE_PROCESS_NAME,
};

/// Launches seen by the slave's containerizer: (task id, virtual time since the sim's origin).
type Launches = Arc<Mutex<Vec<(String, Duration)>>>;

/// A [`SimContainerizer`] that records every launch. The slave polls its containerizer in the
/// same handler as a launch, on the same virtual time: the poll stamps the launches before it.
struct Witness {
    inner: SimContainerizer,
    launches: Launches,
    unstamped: Vec<String>,
}

impl Containerizer for Witness {
    fn launch(&mut self, spec: TaskSpec) -> Result<LaunchInfo, ContainerizerError> {
        self.unstamped.push(spec.task_id.to_string());
        self.inner.launch(spec)
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
        let mut launches = self.launches.lock().unwrap();
        launches.extend(self.unstamped.drain(..).map(|id| (id, now)));
        drop(launches);
        self.inner.poll(now)
    }
}

struct World {
    sim: Sim,
    master: Upid,
    chronos_node: NodeAddr,
    chronos: Upid,
    store: MemoryStore,
    launches: Launches,
}

const START_MS: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

impl World {
    fn new(seed: u64) -> World {
        let mut config = SimConfig::new(seed);
        config.start_wall = SystemTime::from(at("2026-01-01T00:00:00Z"));
        let mut sim = Sim::new(config);
        let master_node = NodeAddr::new("10.0.0.1", 5050);
        let slave_node = NodeAddr::new("10.0.0.2", 5051);
        let chronos_node = NodeAddr::new("10.0.0.3", 4400);
        for n in [&master_node, &slave_node, &chronos_node] {
            sim.add_node(n.clone());
        }
        let master_process = MasterProcess::new(
            MasterConfig {
                seed,
                hostname: "10.0.0.1".into(),
                ..MasterConfig::default()
            },
            Box::new(MemoryRegistry::new()),
        )
        .unwrap();
        let master = sim.spawn(&master_node, "master", master_process);

        let launches: Launches = Arc::default();
        let slot = MailboxSlot::new();
        let effects = SlaveEffects {
            containerizer: Box::new(Witness {
                inner: SimContainerizer::new(SimMachine::new(), slot.termination_callback()),
                launches: launches.clone(),
                unstamped: Vec::new(),
            }),
            prober: Box::new(ScriptedProber::new(
                ProbeScript::new(true),
                slot.probe_callback(),
            )),
            checkpoint: Box::new(MemoryCheckpoint::new()),
        };
        let slave_config = SlaveProcessConfig {
            masters: master.clone().into(),
            work_dir: "/var/lib/plateau".into(),
            hostname: "10.0.0.2".into(),
            port: 5051,
            // Chronos jobs ask for disk (256 MB by default).
            resources: Resources::parse("cpus:4;mem:4096;disk:10000;ports:[31000-32000]").unwrap(),
            attributes: Attributes::parse("rack:r1").unwrap(),
        };
        let slave = SlaveProcess::new(slave_config, effects, slot).unwrap();
        sim.spawn(&slave_node, SLAVE_PROCESS_NAME, slave);

        let mut w = World {
            sim,
            master,
            chronos: Upid::new("chronos", &chronos_node),
            chronos_node,
            store: MemoryStore::new(),
            launches,
        };
        w.spawn_chronos();
        w
    }

    fn spawn_chronos(&mut self) {
        let config = ChronosConfig {
            failure_retry: Duration::from_secs(5),
            ..ChronosConfig::default()
        };
        let scheduler = ChronosScheduler::new(config, Box::new(self.store.clone())).unwrap();
        let driver = scheduler.into_driver(self.master.clone());
        self.chronos = self.sim.spawn(&self.chronos_node, "chronos", driver);
    }

    fn crash_and_restart(&mut self, down: Duration) {
        self.sim.crash(&self.chronos_node);
        self.sim.run_for(down);
        self.sim.restart(&self.chronos_node);
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

    /// Launches of `job` on the slave: instant (ms since the epoch) → virtual launch times.
    fn launches_of(&self, job: &str) -> BTreeMap<i64, Vec<Duration>> {
        let mut by_instant: BTreeMap<i64, Vec<Duration>> = BTreeMap::new();
        for (task, when) in self.launches.lock().unwrap().iter() {
            let parsed = parse_task_id(task).unwrap();
            if parsed.job == job {
                by_instant.entry(parsed.millis).or_default().push(*when);
            }
        }
        by_instant
    }
}

fn scheduled(name: &str, schedule: &str, command: &str) -> Job {
    let mut job = Job::new(name, command);
    job.schedule = Some(schedule.to_string());
    job.cpus = 0.1;
    job.mem = 32.0;
    job
}

#[test]
fn real_master_and_slave_run_a_job_on_time_and_its_dependent() {
    let mut w = World::new(7);
    w.post(
        scheduled("tick", "R/2026-01-01T00:00:10Z/PT10S", "sim:run=2s"),
        PostKind::Iso8601,
    );
    let mut child = Job::new("child", "sim:run=1s");
    child.parents = Some(vec!["tick".into()]);
    child.cpus = 0.1;
    child.mem = 32.0;
    w.post(child, PostKind::Dependency);
    w.sim.run_for(Duration::from_secs(10 * 30 + 5));

    let launches = w.launches_of("tick");
    let expected: Vec<i64> = (1..=30).map(|i| START_MS + i * 10_000).collect();
    assert_eq!(launches.keys().copied().collect::<Vec<_>>(), expected);
    for (instant, times) in &launches {
        assert_eq!(times.len(), 1, "instant {instant} launched {times:?}");
        // On time: launched within 1.5 s of its instant (sim origin = START_MS).
        let lag = times[0].as_millis() as i64 - (instant - START_MS);
        assert!((0..1500).contains(&lag), "instant {instant} lag {lag} ms");
    }
    // Each tick success triggers one child run, launched after the tick's task ended (2 s).
    let children: Vec<Duration> = w.launches_of("child").values().flatten().copied().collect();
    assert!(children.len() >= 29, "{} child runs", children.len());
    let first_tick = launches.values().next().unwrap()[0];
    assert!(children[0] >= first_tick + Duration::from_secs(2));
    let tick = w.job("tick");
    assert_eq!(tick.success_count, 30);
    assert_eq!(tick.error_count, 0);
}

#[test]
fn real_master_and_slave_one_launch_per_instant_across_chronos_crashes() {
    for seed in 1..=4u64 {
        let mut w = World::new(seed);
        w.post(
            scheduled("tick", "R/2026-01-01T00:00:05Z/PT5S", "sim:run=3s"),
            PostKind::Iso8601,
        );
        // Crash Chronos at varied points of runs' lives (before, during and right after
        // launches and terminal updates), with short downtimes.
        w.sim.run_for(Duration::from_secs(12));
        for i in 0..8u64 {
            let up = Duration::from_millis(1_300 + (seed * 977 + i * 1_531) % 6_000);
            let down = Duration::from_millis(100 + (seed * 331 + i * 613) % 900);
            w.sim.run_for(up);
            w.crash_and_restart(down);
        }
        let crashed_until = w.sim.now();
        w.sim.run_for(Duration::from_secs(30));

        let launches = w.launches_of("tick");
        let last = *launches.keys().next_back().unwrap();
        // Past the crashes by several periods.
        assert!(
            Duration::from_millis((last - START_MS) as u64) > crashed_until.since_origin(),
            "seed {seed}: runs stopped after the crashes: {launches:?}"
        );
        let expected: Vec<i64> = (1..)
            .map(|i| START_MS + i * 5_000)
            .take_while(|&m| m <= last)
            .collect();
        assert_eq!(
            launches.keys().copied().collect::<Vec<_>>(),
            expected,
            "seed {seed}: an instant was never launched"
        );
        for (instant, times) in &launches {
            assert_eq!(
                times.len(),
                1,
                "seed {seed}: instant {instant} launched {times:?}"
            );
        }
        // Chronos' own count agrees once the last runs are acknowledged.
        w.sim.run_for(Duration::from_secs(5));
        let tick = w.job("tick");
        assert!(
            tick.success_count >= expected.len() as i64,
            "seed {seed}: successCount {} < {}",
            tick.success_count,
            expected.len()
        );
        assert_eq!(tick.error_count, 0, "seed {seed}");
    }
}
