//! Chronos as leader + standbys in the simulator: three real masters on a replicated log (their
//! coordination store keeps Chronos' state and elects its leader), two real slaves, and two or
//! three real Chronos instances with the same master list. The leading Chronos' node is crashed,
//! or paused and resumed, at many points relative to the jobs' instants, and the witness around
//! the slaves' containerizers ([`ChronosWitness`], the simulator's exactly-once checker) sees
//! every task launch:
//!
//! - every scheduled instant is launched exactly once (attempt 0; the jobs succeed), none twice,
//!   none missed, and each success of the parent triggers exactly one run of its dependent job;
//! - a standby leads within 5 s of the leader's crash;
//! - the acknowledged job writes survive every failover; a write of a leader cut off from the
//!   masters is answered with an error and never lands.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use plateau_chronos::job::Job;
use plateau_chronos::scheduler::{
    ApiError, ChronosConfig, ChronosProcess, ChronosScheduler, PostKind, Role,
};
use plateau_chronos::store::{parse_task_id, Trigger};
use plateau_master::replicated::MasterState;
use plateau_master::resources::{Attributes, Resources};
use plateau_master::{MasterConfig, MasterProcess};
use plateau_replica::storage::MemoryDisk;
use plateau_replica::{Replica, ReplicaConfig};
use plateau_runtime::sim::{Sim, SimConfig};
use plateau_runtime::{Instant, NodeAddr, Upid};
use plateau_sdk::Masters;
use plateau_sim::chronos::{ChronosJobSpec, ChronosWitness};
use plateau_sim::observe::Ledger;
use plateau_slave::checkpoint::MemoryCheckpoint;
use plateau_slave::containerizer::{
    Containerizer, ContainerizerError, LaunchInfo, RecoverInfo, RecoveredTask, SimContainerizer,
    SimMachine, TaskSpec, Usage,
};
use plateau_slave::health::{ProbeScript, ScriptedProber};
use plateau_slave::process::{
    MailboxSlot, SlaveEffects, SlaveProcess, SlaveProcessConfig, SLAVE_PROCESS_NAME,
};

use super::{at, START_MS};

/// The session ttl of the Chronos instances (the default of `plateau chronos`).
const TTL: Duration = Duration::from_secs(3);

/// The longest a standby may take to lead after the leader's crash.
const FAILOVER_MAX: Duration = Duration::from_secs(5);

/// Jobs are due every 10 s, 12 times, from 20 s after the simulation's start.
const PERIOD_MS: i64 = 10_000;
const REPEATS: i64 = 12;
const FIRST_MS: i64 = 20_000;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A job of the test: name, phase (ms after [`FIRST_MS`]), `catchUp`.
const JOBS: [(&str, i64, &str); 3] = [("a", 0, "once"), ("b", 3_300, "all"), ("c", 6_600, "skip")];

struct HaWorld {
    sim: Sim,
    masters: Vec<Upid>,
    disks: Vec<MemoryDisk>,
    seed: u64,
    chronos: Vec<Upid>,
    witness: ChronosWitness,
    ledger: Ledger,
    /// Every task id launched on a machine, in order.
    launched: Launched,
}

type Launched = Arc<Mutex<Vec<String>>>;

/// A containerizer that records the task ids it launches.
struct Recording {
    inner: Box<dyn Containerizer>,
    launched: Launched,
}

impl Containerizer for Recording {
    fn launch(&mut self, spec: TaskSpec) -> Result<LaunchInfo, ContainerizerError> {
        let task_id = spec.task_id.to_string();
        let info = self.inner.launch(spec)?;
        self.launched.lock().unwrap().push(task_id);
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

fn chronos_node(i: usize) -> NodeAddr {
    NodeAddr::new(format!("10.2.0.{}", i + 1), 4400)
}

impl HaWorld {
    fn new(seed: u64, instances: usize) -> HaWorld {
        let mut config = SimConfig::new(seed);
        config.start_wall = SystemTime::from(at("2026-01-01T00:00:00Z"));
        let sim = Sim::new(config);
        let masters: Vec<Upid> = (1..=3)
            .map(|i| Upid::new("master", &NodeAddr::new(format!("10.0.0.{i}"), 5050)))
            .collect();
        let ledger = Ledger::new();
        let mut w = HaWorld {
            sim,
            masters: masters.clone(),
            disks: vec![MemoryDisk::new(), MemoryDisk::new(), MemoryDisk::new()],
            seed,
            chronos: Vec::new(),
            witness: ChronosWitness::new(ledger.clone()),
            ledger,
            launched: Arc::default(),
        };
        for (i, master) in masters.iter().enumerate() {
            w.sim.add_node(master.node());
            w.spawn_master(i, true);
        }
        for i in 0..2 {
            w.add_slave(i);
        }
        for i in 0..instances {
            w.sim.add_node(chronos_node(i));
            w.chronos.push(Upid::new("chronos", &chronos_node(i)));
            w.spawn_chronos(i);
        }
        w
    }

    fn spawn_master(&mut self, i: usize, bootstrap: bool) {
        let master = self.masters[i].clone();
        let mut replica = Replica::open(
            ReplicaConfig::new(master.clone()),
            Box::new(self.disks[i].clone()),
            MasterState::default(),
            0,
        )
        .unwrap();
        if bootstrap {
            replica.bootstrap(&self.masters);
        }
        let config = MasterConfig {
            seed: self.seed * 10 + i as u64,
            hostname: master.node().host.to_string(),
            ..MasterConfig::default()
        };
        self.sim.spawn(
            &master.node(),
            "master",
            MasterProcess::replicated(config, replica),
        );
    }

    fn master_leader(&mut self) -> Option<usize> {
        (0..3).find(|&i| {
            let m = self.masters[i].clone();
            self.sim
                .inspect(&m, |p: &MasterProcess| p.is_elected())
                .unwrap_or(false)
        })
    }

    fn group(&self) -> Masters {
        Masters::new(self.masters.clone()).unwrap()
    }

    fn add_slave(&mut self, i: usize) {
        let node = NodeAddr::new(format!("10.1.0.{}", i + 1), 5051);
        self.sim.add_node(node.clone());
        let slot = MailboxSlot::new();
        let machine = SimMachine::new();
        self.witness.add_machine(i, machine.clone());
        let inner: Box<dyn Containerizer> = Box::new(SimContainerizer::new(
            machine,
            self.witness
                .termination_callback(slot.termination_callback()),
        ));
        let recording = Box::new(Recording {
            inner,
            launched: self.launched.clone(),
        });
        let effects = SlaveEffects {
            containerizer: Box::new(self.witness.containerizer(recording, i)),
            prober: Box::new(ScriptedProber::new(
                ProbeScript::new(true),
                slot.probe_callback(),
            )),
            checkpoint: Box::new(MemoryCheckpoint::new()),
        };
        let config = SlaveProcessConfig {
            masters: self.group(),
            work_dir: "/var/lib/plateau".into(),
            hostname: node.host.to_string(),
            port: node.port,
            resources: Resources::parse("cpus:4;mem:4096;disk:10000;ports:[31000-32000]").unwrap(),
            attributes: Attributes::parse(&format!("rack:r{i}")).unwrap(),
        };
        let slave = SlaveProcess::new(config, effects, slot).unwrap();
        self.sim.spawn(&node, SLAVE_PROCESS_NAME, slave);
    }

    /// Starts Chronos instance `i` (a standby until elected) on its node.
    fn spawn_chronos(&mut self, i: usize) {
        let config = ChronosConfig {
            failure_retry: secs(5),
            ..ChronosConfig::default()
        };
        let address = format!("{}:{}", chronos_node(i).host, chronos_node(i).port);
        let scheduler = ChronosScheduler::replicated(config, &address, TTL);
        let driver = scheduler.into_driver(self.group());
        self.chronos[i] = self.sim.spawn(&chronos_node(i), "chronos", driver);
    }

    /// What instance `i` is now (a paused instance answers what it was when paused).
    fn role(&mut self, i: usize) -> Option<Role> {
        let upid = self.chronos[i].clone();
        if self.sim.is_paused(&upid.node()) {
            let now = self.sim.now().since_origin();
            return self.sim.inspect(&upid, |p: &ChronosProcess| {
                if p.state().is_leading(now) {
                    Role::Leader
                } else {
                    Role::Standby { leader: None }
                }
            });
        }
        self.sim.call(&upid, |p: &mut ChronosProcess, ctx| {
            let (s, d) = p.scheduler_and_driver(ctx);
            s.role(&d)
        })
    }

    /// The instances that lead now (at most one, outside a failover's last moments).
    fn leaders(&mut self) -> Vec<usize> {
        (0..self.chronos.len())
            .filter(|&i| self.role(i) == Some(Role::Leader))
            .collect()
    }

    /// Runs until `f` holds, checking every 10 ms; how long it took.
    fn await_condition(
        &mut self,
        within: Duration,
        what: &str,
        mut f: impl FnMut(&mut Self) -> bool,
    ) -> Duration {
        let start = self.sim.now();
        while !f(self) {
            assert!(
                self.sim.now() - start < within,
                "{what}: not within {within:?} (at {:?})",
                self.sim.now()
            );
            self.sim.run_for(ms(10));
        }
        self.sim.now() - start
    }

    fn await_leader(&mut self, within: Duration) -> usize {
        let mut leader = None;
        self.await_condition(within, "a Chronos leader", |w| {
            let leaders = w.leaders();
            assert!(leaders.len() <= 1, "two Chronos lead: {leaders:?}");
            leader = leaders.first().copied();
            leader.is_some()
        });
        leader.unwrap()
    }

    /// Posts `job` to the leader and waits for the answer, which comes once the write
    /// committed: `Ok` when acknowledged.
    fn post(&mut self, job: Job, kind: PostKind) -> Result<(), String> {
        let leader = self.await_leader(secs(30));
        let upid = self.chronos[leader].clone();
        let answer: Arc<Mutex<Option<Result<(), String>>>> = Arc::default();
        let slot = answer.clone();
        let answered_at_once = self
            .sim
            .call(&upid, move |p: &mut ChronosProcess, ctx| {
                let (s, mut d) = p.scheduler_and_driver(ctx);
                let result = s.upsert_job(&mut d, job, kind).map(|_| ());
                s.reply_when_committed(
                    &d,
                    Box::new(move |committed| {
                        *slot.lock().unwrap() =
                            Some(committed.and(result).map_err(|e| e.to_string()));
                    }),
                );
                s.replies_waiting() == 0
            })
            .expect("the leader runs");
        assert!(
            !answered_at_once,
            "the answer waits for the write to commit"
        );
        self.await_condition(secs(30), "the post's answer", |_| {
            answer.lock().unwrap().is_some()
        });
        let result = answer.lock().unwrap().take().unwrap();
        result
    }

    /// The leader's view of job `name`.
    fn job(&mut self, name: &str) -> Option<Job> {
        let leader = self.await_leader(secs(30));
        let upid = self.chronos[leader].clone();
        self.sim
            .inspect(&upid, |p: &ChronosProcess| p.scheduler().job(name))
            .flatten()
    }

    /// Crashes instance `i`'s node; brings it back as a fresh standby after `down`. Returns
    /// how long it took another instance to lead.
    fn crash_leader(&mut self, i: usize, down: Duration) -> Duration {
        let node = chronos_node(i);
        self.sim.crash(&node);
        let took = self.await_condition(FAILOVER_MAX * 2, "a standby leads", |w| {
            let leaders = w.leaders();
            assert!(leaders.len() <= 1, "two Chronos lead: {leaders:?}");
            !leaders.is_empty()
        });
        if took < down {
            self.sim.run_for(down - took);
        }
        self.sim.restart(&node);
        self.spawn_chronos(i);
        took
    }

    /// Launches seen by the machines: run id → attempts launched, in order.
    fn launches(&self) -> BTreeMap<String, Vec<u32>> {
        let mut runs: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        for task in self.launched.lock().unwrap().iter() {
            let parsed = parse_task_id(task).unwrap();
            runs.entry(parsed.run_id())
                .or_default()
                .push(parsed.attempt);
        }
        runs
    }
}

/// The wall-clock ms of instant `k` (from 0) of the job with phase `phase_ms`.
fn instant_ms(phase_ms: i64, k: i64) -> i64 {
    START_MS + FIRST_MS + phase_ms + k * PERIOD_MS
}

/// The jobs posted: three scheduled (`R12`, every 10 s, phases 0, 3.3 and 6.6 s, one per
/// `catchUp` policy) and `child`, dependent on `a`; and the witness' view of the scheduled ones.
fn test_jobs() -> (Vec<(Job, PostKind)>, Vec<ChronosJobSpec>) {
    let mut jobs = Vec::new();
    let mut specs = Vec::new();
    for (name, phase, catch_up) in JOBS {
        let first = DateTime::<Utc>::from_timestamp_millis(instant_ms(phase, 0)).unwrap();
        let mut job = Job::new(name, "sim:run=3s");
        job.schedule = Some(format!(
            "R{REPEATS}/{}/PT10S",
            first.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        ));
        job.catch_up = Some(catch_up.to_string());
        job.cpus = 0.1;
        job.mem = 32.0;
        job.disk = 10.0;
        jobs.push((job.clone(), PostKind::Iso8601));
        specs.push(ChronosJobSpec {
            name: name.to_string(),
            schedule: Some((first, Duration::from_millis(PERIOD_MS as u64))),
            parent: None,
            command: job.command.clone(),
            acknowledged: true,
        });
    }
    let mut child = Job::new("child", "sim:run=1s");
    child.parents = Some(vec!["a".into()]);
    child.cpus = 0.1;
    child.mem = 32.0;
    child.disk = 10.0;
    jobs.push((child, PostKind::Dependency));
    (jobs, specs)
}

/// What happens to the leader at a point of the sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Its node crashes; it comes back 2 s later as a standby.
    Crash,
    /// Its node is paused for 5 s (longer than the ttl), then resumes.
    Pause,
}

/// One run of the sweep: `instances` Chronos, the jobs posted, then the leader crashed or
/// paused `offset_ms` after instants 2, 5 and 8 of job `a` (the same offset is 3.3 s and 6.6 s
/// earlier relative to `b` and `c`). Checks exactly once and the failover times; returns them.
fn failover_scenario(
    seed: u64,
    instances: usize,
    offset_ms: i64,
    faults: [Fault; 3],
) -> Vec<Duration> {
    let mut w = HaWorld::new(seed, instances);
    let first = w.await_leader(secs(30));
    // The standbys know where the leader is (they proxy the REST API there).
    let address = format!("{}:4400", chronos_node(first).host);
    w.await_condition(secs(10), "the standbys know the leader", |w| {
        (0..instances).filter(|&i| i != first).all(|i| {
            w.role(i)
                == Some(Role::Standby {
                    leader: Some(address.clone()),
                })
        })
    });
    let (jobs, specs) = test_jobs();
    for (job, kind) in jobs {
        let name = job.name.clone();
        w.post(job, kind)
            .unwrap_or_else(|e| panic!("seed {seed}: posting {name}: {e}"));
    }
    w.witness.set_jobs(&specs);
    let origin = Instant::ZERO;
    let mut failovers = Vec::new();
    for (k, fault) in [2i64, 5, 8].into_iter().zip(faults) {
        let at_ms = FIRST_MS + k * PERIOD_MS + offset_ms;
        w.sim.run_until(origin + ms(at_ms as u64));
        let leader = w.await_leader(FAILOVER_MAX * 2);
        match fault {
            Fault::Crash => {
                let took = w.crash_leader(leader, secs(2));
                assert!(
                    took <= FAILOVER_MAX,
                    "seed {seed} offset {offset_ms}: failover took {took:?}"
                );
                failovers.push(took);
            }
            Fault::Pause => {
                let node = chronos_node(leader);
                w.sim.pause(&node);
                // The paused process still believes it leads: it handles nothing.
                let took = w.await_condition(FAILOVER_MAX * 2, "a standby leads", |w| {
                    let others: Vec<usize> =
                        w.leaders().into_iter().filter(|&i| i != leader).collect();
                    assert!(others.len() <= 1, "two Chronos lead: {others:?}");
                    !others.is_empty()
                });
                assert!(
                    took <= FAILOVER_MAX,
                    "seed {seed} offset {offset_ms}: failover from a paused leader took {took:?}"
                );
                failovers.push(took);
                w.sim.run_for(secs(5).saturating_sub(took));
                w.sim.resume(&node);
                // The resumed ex-leader learns it was deposed: never two leaders.
                w.await_condition(secs(5), "the resumed leader stands by", |w| {
                    let leaders = w.leaders();
                    assert!(leaders.len() <= 1, "two Chronos lead: {leaders:?}");
                    w.role(leader) != Some(Role::Leader)
                });
            }
        }
    }
    // Past the last instant of every job and its run, then until the counters agree.
    let last_ms = FIRST_MS + JOBS.iter().map(|j| j.1).max().unwrap() + (REPEATS - 1) * PERIOD_MS;
    w.sim.run_until(origin + ms((last_ms + 8_000) as u64));
    let fault_end =
        SystemTime::UNIX_EPOCH + ms((START_MS + FIRST_MS + (REPEATS - 1) * PERIOD_MS) as u64);
    w.witness.set_fault_end(fault_end);
    let context = format!("seed {seed}, {instances} instances, offset {offset_ms} ms, {faults:?}");
    let violations = w.ledger.take_violations();
    assert!(violations.is_empty(), "{context}: {violations:?}");
    if let Err((what, detail)) = w.witness.check_converged() {
        panic!("{context}: {what}: {detail}");
    }
    // Exactly once: every instant of every job launched once, as attempt 0; nothing else.
    let launches = w.launches();
    for (name, phase, _) in JOBS {
        for k in 0..REPEATS {
            let run = format!("{name}@{}", instant_ms(phase, k));
            assert_eq!(
                launches.get(&run).map(Vec::as_slice),
                Some([0u32].as_slice()),
                "{context}: run {run}"
            );
        }
        let scheduled = launches
            .keys()
            .filter(|id| id.starts_with(&format!("{name}@")) && !id.contains(':'))
            .count();
        assert_eq!(scheduled, REPEATS as usize, "{context}: runs of {name}");
    }
    // One child run per success of `a`.
    let children: Vec<(&String, &Vec<u32>)> = launches
        .iter()
        .filter(|(id, _)| id.starts_with("child@"))
        .collect();
    assert_eq!(
        children.len(),
        REPEATS as usize,
        "{context}: child runs {children:?}"
    );
    assert!(
        children.iter().all(|(_, a)| **a == [0]),
        "{context}: {children:?}"
    );
    // The acknowledged jobs survived every failover, with counters that agree.
    w.await_condition(secs(30), "the counters agree", |w| {
        JOBS.iter()
            .map(|j| j.0)
            .chain(["child"])
            .all(|name| w.job(name).is_some_and(|j| j.success_count == REPEATS))
    });
    for task in w.launched.lock().unwrap().iter() {
        let parsed = parse_task_id(task).unwrap();
        assert!(
            parsed.trigger == Trigger::Schedule || parsed.job == "child",
            "{context}: unexpected task {task}"
        );
    }
    failovers
}

fn report(label: &str, failovers: &[Duration]) {
    let max = failovers.iter().max().copied().unwrap_or_default();
    let mean = failovers.iter().sum::<Duration>() / failovers.len().max(1) as u32;
    eprintln!(
        "{label}: {} failovers, mean {mean:?}, max {max:?}",
        failovers.len()
    );
}

#[test]
fn ha_exactly_once_with_the_leader_crashed_around_each_instant() {
    // Offsets after an instant of `a` where its intent, launch and running update are written
    // (a few ms), and after them; 3.3 s and 6.6 s before instants of `b` and `c`.
    let offsets = [-100, 0, 1, 2, 3, 5, 8, 12, 20, 30, 50, 80, 120, 200, 300];
    let mut all = Vec::new();
    for (i, offset) in offsets.into_iter().enumerate() {
        let instances = 2 + i % 2;
        let faults = [Fault::Crash, Fault::Crash, Fault::Pause];
        all.extend(failover_scenario(100 + i as u64, instances, offset, faults));
    }
    report("crashes near an instant", &all);
}

#[test]
fn ha_exactly_once_with_the_leader_crashed_or_paused_across_the_period() {
    // Every 400 ms across the period: before, during and after runs and their end (3 s).
    let mut all = Vec::new();
    for (i, offset) in (0..PERIOD_MS).step_by(400).enumerate() {
        let instances = 2 + i % 2;
        let faults = if i % 2 == 0 {
            [Fault::Crash, Fault::Pause, Fault::Crash]
        } else {
            [Fault::Pause, Fault::Crash, Fault::Pause]
        };
        all.extend(failover_scenario(200 + i as u64, instances, offset, faults));
    }
    report("crashes and pauses across the period", &all);
}

#[test]
fn ha_a_leader_cut_off_from_the_masters_fails_its_pending_answer_and_its_write_never_lands() {
    let mut w = HaWorld::new(7, 2);
    let (jobs, _) = test_jobs();
    let (job, kind) = jobs[0].clone();
    w.post(job, kind).unwrap();
    let leader = w.await_leader(secs(30));
    let node = chronos_node(leader);
    for m in w.masters.clone() {
        w.sim.partition(&node, &m.node());
    }
    let answer: Arc<Mutex<Option<Result<(), ApiError>>>> = Arc::default();
    let slot = answer.clone();
    let upid = w.chronos[leader].clone();
    let taken = w
        .sim
        .call(&upid, move |p: &mut ChronosProcess, ctx| {
            let (s, mut d) = p.scheduler_and_driver(ctx);
            let result = s
                .upsert_job(&mut d, Job::new("ghost", "sim:run=1s"), PostKind::Iso8601)
                .map(|_| ());
            let taken = result.is_ok();
            s.reply_when_committed(
                &d,
                Box::new(move |committed| {
                    *slot.lock().unwrap() = Some(committed.and(result));
                }),
            );
            taken
        })
        .unwrap();
    assert!(
        taken,
        "the write is taken while the leader believes it leads"
    );
    let cut_at = w.sim.now();
    w.await_condition(TTL * 2, "the pending answer fails", |_| {
        answer.lock().unwrap().is_some()
    });
    let deposed_after = w.sim.now() - cut_at;
    assert!(deposed_after <= TTL, "deposed after {deposed_after:?}");
    assert!(
        matches!(
            answer.lock().unwrap().take(),
            Some(Err(ApiError::NotLeader { .. }))
        ),
        "a deposed leader's pending answer is 'not the leader'"
    );
    assert_ne!(w.role(leader), Some(Role::Leader));
    // The other instance leads; the cut-off write never landed, the acknowledged one did.
    let next = w.await_leader(FAILOVER_MAX * 2);
    assert_ne!(next, leader);
    w.sim.heal();
    w.sim.run_for(secs(10));
    assert!(w.job("a").is_some());
    assert!(w.job("ghost").is_none());
    let role = w.role(leader);
    let address = format!("{}:4400", chronos_node(next).host);
    assert_eq!(
        role,
        Some(Role::Standby {
            leader: Some(address)
        })
    );
}

#[test]
fn ha_same_seed_same_run() {
    let run = || {
        let mut w = HaWorld::new(11, 2);
        let (jobs, _) = test_jobs();
        for (job, kind) in jobs {
            w.post(job, kind).unwrap();
        }
        w.sim.run_for(secs(35));
        let leader = w.await_leader(secs(10));
        w.crash_leader(leader, secs(1));
        w.sim.run_for(secs(20));
        let launched = w.launched.lock().unwrap().clone();
        (w.sim.trace_hash(), launched)
    };
    assert_eq!(run(), run());
}

/// Instants that fell due while no instance led (every one crashed for 50 s) run per their
/// job's `catchUp` when one leads again, each once: `all` runs every missed instant, `once`
/// only the latest of them, `skip` none; the instants after the outage all run.
#[test]
fn ha_instants_missed_while_no_instance_leads_run_per_catch_up_once() {
    let mut w = HaWorld::new(21, 2);
    let first = DateTime::<Utc>::from_timestamp_millis(START_MS + FIRST_MS).unwrap();
    let mut specs = Vec::new();
    for policy in ["once", "all", "skip"] {
        let mut job = Job::new(policy, "sim:run=1s");
        job.schedule = Some(format!(
            "R/{}/PT10S",
            first.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        ));
        job.catch_up = Some(policy.to_string());
        job.epsilon = Some("PT5S".into());
        job.cpus = 0.1;
        job.mem = 32.0;
        job.disk = 10.0;
        w.post(job, PostKind::Iso8601).unwrap();
        specs.push(ChronosJobSpec {
            name: policy.to_string(),
            schedule: Some((first, secs(10))),
            parent: None,
            command: "sim:run=1s".into(),
            acknowledged: true,
        });
    }
    w.witness.set_jobs(&specs);
    // Instants at 20, 30 and 40 s run; every instance crashes at 45 s and comes back at
    // 96.5 s, while no instant is within 5 s (the jobs' epsilon) of the new leader's election.
    w.sim.run_until(Instant::ZERO + ms(45_000));
    for i in 0..2 {
        w.sim.crash(&chronos_node(i));
    }
    w.sim.run_until(Instant::ZERO + ms(96_500));
    for i in 0..2 {
        w.sim.restart(&chronos_node(i));
        w.spawn_chronos(i);
    }
    let restarted = w.sim.now();
    w.await_leader(secs(10));
    let took = w.sim.now() - restarted;
    assert!(took < secs(2), "a leader after {took:?}");
    w.sim.run_until(Instant::ZERO + ms(125_000));

    let violations = w.ledger.take_violations();
    assert!(violations.is_empty(), "{violations:?}");
    let launches = w.launches();
    let ran = |job: &str| -> Vec<i64> {
        launches
            .iter()
            .filter_map(|(id, attempts)| {
                let (name, millis) = id.split_once('@')?;
                assert_eq!(attempts, &[0], "{id} launched {attempts:?}");
                (name == job).then(|| (millis.parse::<i64>().unwrap() - START_MS) / 1000)
            })
            .collect()
    };
    assert_eq!(ran("all"), [20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120]);
    assert_eq!(ran("once"), [20, 30, 40, 90, 100, 110, 120]);
    assert_eq!(ran("skip"), [20, 30, 40, 100, 110, 120]);
}

/// The leading master crashes (and comes back 5 s later) at several points around the jobs'
/// instants: Chronos keeps one run per instant through the masters' failover.
#[test]
fn ha_exactly_once_across_a_master_failover() {
    for (i, offset_ms) in [0i64, 5, 30, 1_500, 4_000].into_iter().enumerate() {
        let mut w = HaWorld::new(300 + i as u64, 2);
        let (jobs, specs) = test_jobs();
        for (job, kind) in jobs {
            w.post(job, kind).unwrap();
        }
        w.witness.set_jobs(&specs);
        for k in [2i64, 6] {
            w.sim
                .run_until(Instant::ZERO + ms((FIRST_MS + k * PERIOD_MS + offset_ms) as u64));
            let m = w.master_leader().expect("a leading master");
            let node = w.masters[m].node();
            w.sim.crash(&node);
            w.sim.run_for(secs(5));
            w.sim.restart(&node);
            w.spawn_master(m, false);
        }
        let last_ms =
            FIRST_MS + JOBS.iter().map(|j| j.1).max().unwrap() + (REPEATS - 1) * PERIOD_MS;
        w.sim
            .run_until(Instant::ZERO + ms((last_ms + 8_000) as u64));
        let context = format!("offset {offset_ms} ms");
        let violations = w.ledger.take_violations();
        assert!(violations.is_empty(), "{context}: {violations:?}");
        let launches = w.launches();
        for (name, phase, _) in JOBS {
            for k in 0..REPEATS {
                let run = format!("{name}@{}", instant_ms(phase, k));
                assert_eq!(
                    launches.get(&run).map(Vec::as_slice),
                    Some([0u32].as_slice()),
                    "{context}: run {run}"
                );
            }
        }
    }
}
