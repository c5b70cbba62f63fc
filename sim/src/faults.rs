//! Faults: what goes wrong in a run, drawn from the seed (VOPR style).
//!
//! A [`FaultLevel`] (`none`, `default`, `heavy`) gives *ranges*; [`FaultPlan::draw`] picks the
//! exact probabilities and rates of one run from the seed, so that different seeds explore
//! different mixes (a calm network with crashing slaves, a lossy network with a stable
//! master, ...). The [`FaultInjector`] then draws, from its own seeded generator, *when* each
//! fault happens (exponential inter-arrival times from the plan's rates) and carries it out on
//! the [`Cluster`]; every injection is logged.
//!
//! Faults:
//! - network: latency range at every level; per-message loss and duplication at `heavy` only,
//!   since the real transport loses messages only with a broken connection (modelled by the
//!   partitions) and never duplicates them — heavy runs probe the protocol beyond the
//!   transport's guarantees;
//! - partitions: one slave from the master, a rack from the master, the master from everyone,
//!   a framework from the master, one way (slave → master or master → slave); healed after a drawn duration (the
//!   simulator heals all cuts at once, so overlapping partitions heal together);
//! - crashes: a slave (restarted later, recovering its checkpoint), the master (restarted,
//!   recovering its registry), a framework (restarted, recovering its disk);
//! - shrinks: a slave running tasks restarted at once with less than they use, as an
//!   operator lowering its `--resources` would do (it re-registers over-committed, and the
//!   master must offer nothing its tasks use); its configured resources are given back by
//!   another restart later. Drawn from a generator of their own, so the other faults of a
//!   seed come at the same times with or without them;
//! - tasks: failures and OOMs, through the commands Keeper launches ([`Workload`]);
//! - a group of masters (`--masters N`, N > 1), drawn from a generator of their own (rates
//!   and times), so the other faults of a seed come at the same times with or without them:
//!   the acting master crashed (restarted after a drawn time), a follower crashed (likewise),
//!   the acting master cut from every node, one master cut from the other masters only (a
//!   minority partition; slaves and frameworks still reach it), the acting master paused as
//!   by SIGSTOP (resumed after a drawn time). The faults above that name "the master" take
//!   the acting master of a group for it (a crash, an isolation); those that cut a slave, a
//!   rack or a framework from "the master" cut it from every master.

use std::collections::BTreeMap;
use std::time::Duration;

use plateau_master::resources::{Ranges, Resources};
use plateau_runtime::sim::NetworkFaults;
use plateau_runtime::Rng;
use serde::Serialize;

use crate::cluster::Cluster;
use crate::keeper::Workload;
use crate::limits::FAULT_LOG_MAX;

/// How much goes wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultLevel {
    /// Nothing: a reliable network, no crash, tasks run until killed.
    None,
    /// Some of everything.
    Default,
    /// A lot of everything.
    Heavy,
}

impl std::str::FromStr for FaultLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(FaultLevel::None),
            "default" => Ok(FaultLevel::Default),
            "heavy" => Ok(FaultLevel::Heavy),
            other => Err(format!(
                "unknown fault level '{other}' (none, default or heavy)"
            )),
        }
    }
}

/// The exact fault settings of one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultPlan {
    /// The level the plan was drawn from.
    pub level: FaultLevel,
    /// Probability that a message between nodes is lost.
    pub loss: f64,
    /// Probability that a message between nodes is duplicated.
    pub duplicate: f64,
    /// Shortest one-way latency, microseconds.
    pub latency_min_us: u64,
    /// Longest one-way latency, microseconds.
    pub latency_max_us: u64,
    /// Partitions per simulated hour (cluster-wide).
    pub partitions_per_hour: f64,
    /// Longest partition, seconds (the shortest is 2 s).
    pub partition_secs_max: u64,
    /// Slave crashes per slave per simulated hour.
    pub slave_crashes_per_slave_hour: f64,
    /// Longest time a crashed slave stays down, seconds.
    pub slave_down_secs_max: u64,
    /// Master crashes per simulated hour.
    pub master_crashes_per_hour: f64,
    /// Longest time a crashed master stays down, seconds.
    pub master_down_secs_max: u64,
    /// Crashes per framework per simulated hour.
    pub framework_crashes_per_hour: f64,
    /// Longest time a crashed framework stays down, seconds.
    pub framework_down_secs_max: u64,
    /// How tasks behave (run time, failures, OOMs).
    pub task_run_secs_min: u64,
    /// Longest task run, seconds (0: forever).
    pub task_run_secs_max: u64,
    /// Probability that a task fails (non-zero exit).
    pub task_fail_probability: f64,
    /// Probability that a task is OOM-killed.
    pub task_oom_probability: f64,
    /// Slaves restarted with less than their running tasks use, per simulated hour
    /// (cluster-wide).
    pub slave_shrinks_per_hour: f64,
    /// Longest time a shrunk slave keeps its lowered resources, seconds (the shortest is 10 s).
    pub slave_shrunk_secs_max: u64,
    /// Faults of a group of masters (used with `--masters` > 1; drawn from their own
    /// generator, so the settings above are the same with or without a group).
    pub group: GroupFaultPlan,
}

/// The faults of a group of masters in one run (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupFaultPlan {
    /// Crashes of the acting master per simulated hour.
    pub leader_crashes_per_hour: f64,
    /// Crashes of a master that does not act per simulated hour.
    pub follower_crashes_per_hour: f64,
    /// Longest time a crashed master of the group stays down, seconds.
    pub master_down_secs_max: u64,
    /// The acting master cut from every other node, per simulated hour.
    pub leader_isolations_per_hour: f64,
    /// One master cut from the other masters only, per simulated hour.
    pub minority_partitions_per_hour: f64,
    /// Longest cut of a master (isolation or minority partition), seconds (the shortest is
    /// 1 s).
    pub master_partition_secs_max: u64,
    /// The acting master paused (as by SIGSTOP), per simulated hour.
    pub leader_pauses_per_hour: f64,
    /// Longest pause, milliseconds (the shortest is 100 ms).
    pub leader_pause_ms_max: u64,
}

impl GroupFaultPlan {
    /// Draws the group's settings at `level` from `seed` (a generator of their own).
    pub fn draw(level: FaultLevel, seed: u64) -> Self {
        let mut rng = Rng::derive(seed, "sim.fault-plan.masters");
        let r = &mut rng;
        match level {
            FaultLevel::None => GroupFaultPlan {
                leader_crashes_per_hour: 0.0,
                follower_crashes_per_hour: 0.0,
                master_down_secs_max: 0,
                leader_isolations_per_hour: 0.0,
                minority_partitions_per_hour: 0.0,
                master_partition_secs_max: 0,
                leader_pauses_per_hour: 0.0,
                leader_pause_ms_max: 0,
            },
            FaultLevel::Default => GroupFaultPlan {
                leader_crashes_per_hour: uniform(r, 2.0, 8.0),
                follower_crashes_per_hour: uniform(r, 2.0, 8.0),
                master_down_secs_max: r.between(1, 30),
                leader_isolations_per_hour: uniform(r, 2.0, 8.0),
                minority_partitions_per_hour: uniform(r, 2.0, 8.0),
                master_partition_secs_max: r.between(2, 30),
                leader_pauses_per_hour: uniform(r, 2.0, 8.0),
                leader_pause_ms_max: r.between(500, 5_000),
            },
            FaultLevel::Heavy => GroupFaultPlan {
                leader_crashes_per_hour: uniform(r, 10.0, 40.0),
                follower_crashes_per_hour: uniform(r, 10.0, 40.0),
                master_down_secs_max: r.between(1, 60),
                leader_isolations_per_hour: uniform(r, 10.0, 40.0),
                minority_partitions_per_hour: uniform(r, 10.0, 40.0),
                master_partition_secs_max: r.between(2, 60),
                leader_pauses_per_hour: uniform(r, 10.0, 40.0),
                leader_pause_ms_max: r.between(1_000, 20_000),
            },
        }
    }
}

fn uniform(rng: &mut Rng, low: f64, high: f64) -> f64 {
    low + (high - low) * rng.next_f64()
}

impl FaultPlan {
    /// Draws the settings of a run at `level` from `seed`.
    pub fn draw(level: FaultLevel, seed: u64) -> Self {
        let mut rng = Rng::derive(seed, "sim.fault-plan");
        let r = &mut rng;
        match level {
            FaultLevel::None => FaultPlan {
                level,
                loss: 0.0,
                duplicate: 0.0,
                latency_min_us: 100,
                latency_max_us: 2_000,
                partitions_per_hour: 0.0,
                partition_secs_max: 0,
                slave_crashes_per_slave_hour: 0.0,
                slave_down_secs_max: 0,
                master_crashes_per_hour: 0.0,
                master_down_secs_max: 0,
                framework_crashes_per_hour: 0.0,
                framework_down_secs_max: 0,
                task_run_secs_min: 0,
                task_run_secs_max: 0,
                task_fail_probability: 0.0,
                task_oom_probability: 0.0,
                slave_shrinks_per_hour: 0.0,
                slave_shrunk_secs_max: 0,
                group: GroupFaultPlan::draw(level, seed),
            },
            FaultLevel::Default => FaultPlan {
                level,
                // The real transport never loses or duplicates a message on a live connection
                // (QUIC retransmits; a connection that cannot deliver breaks, and links fire
                // `exited`): at this level messages are lost only with broken connections,
                // which the partitions model. Per-message loss is a heavy fault.
                loss: 0.0,
                duplicate: 0.0,
                latency_min_us: 100,
                latency_max_us: r.between(1_000, 20_000),
                partitions_per_hour: uniform(r, 6.0, 30.0),
                partition_secs_max: r.between(5, 60),
                slave_crashes_per_slave_hour: uniform(r, 0.05, 0.5),
                slave_down_secs_max: r.between(1, 60),
                master_crashes_per_hour: uniform(r, 1.0, 6.0),
                master_down_secs_max: r.between(0, 10),
                framework_crashes_per_hour: uniform(r, 0.5, 4.0),
                framework_down_secs_max: r.between(1, 30),
                // Services: most run long; some fail or run out of memory early.
                task_run_secs_min: 60,
                task_run_secs_max: r.between(600, 3600),
                task_fail_probability: uniform(r, 0.0, 0.2),
                task_oom_probability: uniform(r, 0.0, 0.05),
                // Drawn last, so the settings above are what they were before shrinks.
                slave_shrinks_per_hour: uniform(r, 2.0, 8.0),
                slave_shrunk_secs_max: r.between(60, 600),
                group: GroupFaultPlan::draw(level, seed),
            },
            FaultLevel::Heavy => FaultPlan {
                level,
                loss: uniform(r, 0.002, 0.02),
                duplicate: uniform(r, 0.002, 0.02),
                latency_min_us: 100,
                latency_max_us: r.between(5_000, 100_000),
                partitions_per_hour: uniform(r, 30.0, 120.0),
                partition_secs_max: r.between(10, 120),
                slave_crashes_per_slave_hour: uniform(r, 0.5, 3.0),
                slave_down_secs_max: r.between(5, 120),
                master_crashes_per_hour: uniform(r, 6.0, 20.0),
                master_down_secs_max: r.between(1, 30),
                framework_crashes_per_hour: uniform(r, 4.0, 20.0),
                framework_down_secs_max: r.between(5, 60),
                task_run_secs_min: 5,
                task_run_secs_max: r.between(20, 120),
                task_fail_probability: uniform(r, 0.1, 0.5),
                task_oom_probability: uniform(r, 0.05, 0.2),
                slave_shrinks_per_hour: uniform(r, 8.0, 40.0),
                slave_shrunk_secs_max: r.between(20, 120),
                group: GroupFaultPlan::draw(level, seed),
            },
        }
    }

    /// The simulator's network settings.
    pub fn network(&self) -> NetworkFaults {
        NetworkFaults {
            latency_min: Duration::from_micros(self.latency_min_us),
            latency_max: Duration::from_micros(self.latency_max_us.max(self.latency_min_us)),
            loss: self.loss,
            duplicate: self.duplicate,
        }
    }

    /// The workload Keeper draws task commands from.
    pub fn workload(&self) -> Workload {
        Workload {
            run_secs_min: self.task_run_secs_min,
            run_secs_max: self.task_run_secs_max,
            fail_probability: self.task_fail_probability,
            oom_probability: self.task_oom_probability,
        }
    }
}

/// Counts of injected faults, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FaultCounts {
    /// Partitions of one slave from the master.
    pub partition_slave: u64,
    /// Partitions of a rack from the master.
    pub partition_rack: u64,
    /// The master cut from everyone.
    pub partition_master: u64,
    /// One-way cuts between a slave and the master.
    pub partition_one_way: u64,
    /// Partitions of a framework from the master.
    pub partition_framework: u64,
    /// Heals.
    pub heal: u64,
    /// Slave crashes.
    pub slave_crash: u64,
    /// Slave restarts.
    pub slave_restart: u64,
    /// Master crashes.
    pub master_crash: u64,
    /// Master restarts.
    pub master_restart: u64,
    /// Framework crashes.
    pub framework_crash: u64,
    /// Framework restarts.
    pub framework_restart: u64,
    /// Slaves restarted with less than their running tasks use.
    pub slave_shrink: u64,
    /// Shrunk slaves given their configured resources back.
    pub slave_restore: u64,
    /// A group's acting master crashed.
    pub leader_crash: u64,
    /// A group's master that did not act crashed.
    pub follower_crash: u64,
    /// A group's crashed master restarted.
    pub group_master_restart: u64,
    /// A group's acting master cut from every other node.
    pub leader_isolation: u64,
    /// A group's master cut from the other masters only.
    pub minority_partition: u64,
    /// A group master's cuts healed.
    pub master_heal: u64,
    /// A group's acting master paused.
    pub leader_pause: u64,
    /// A group's paused master resumed.
    pub master_resume: u64,
}

impl FaultCounts {
    /// All injections.
    pub fn total(&self) -> u64 {
        self.partition_slave
            + self.partition_rack
            + self.partition_master
            + self.partition_one_way
            + self.partition_framework
            + self.heal
            + self.slave_crash
            + self.slave_restart
            + self.master_crash
            + self.master_restart
            + self.framework_crash
            + self.framework_restart
            + self.slave_shrink
            + self.slave_restore
            + self.leader_crash
            + self.follower_crash
            + self.group_master_restart
            + self.leader_isolation
            + self.minority_partition
            + self.master_heal
            + self.leader_pause
            + self.master_resume
    }
}

/// One injection, for the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InjectedFault {
    /// Simulated time, seconds.
    pub at_secs: f64,
    /// What was done.
    pub what: String,
}

/// What was injected in a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FaultLog {
    /// Counts by kind.
    pub counts: FaultCounts,
    /// The injections, in order (the first [`FAULT_LOG_MAX`]).
    pub events: Vec<InjectedFault>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Action {
    Partition,
    Heal,
    CrashSlave,
    RestartSlave(usize),
    CrashMaster,
    RestartMaster,
    CrashFramework,
    RestartFramework(usize),
    ShrinkSlave,
    RestoreSlave(usize),
    CrashLeader,
    CrashFollower,
    RestartGroupMaster(usize),
    IsolateLeader,
    PartitionMinority,
    /// Heal master `k`'s cuts: from every node (true) or from the other masters (false).
    HealMaster(usize, bool),
    PauseLeader,
    ResumeMaster(usize),
}

/// Draws fault times and carries faults out on a cluster.
#[derive(Debug)]
pub struct FaultInjector {
    plan: FaultPlan,
    rng: Rng,
    /// Draws the shrinks (times, slaves, sizes): apart from `rng`, so that the other faults
    /// of a seed do not move when shrinks are added.
    shrink_rng: Rng,
    /// Draws the faults of a group of masters, apart from the others for the same reason.
    group_rng: Rng,
    /// Masters in the cluster.
    masters: usize,
    /// The single-master crash fault's master is down (with a group: the master it crashed,
    /// if any, to restart).
    master_down: bool,
    master_crashed: Option<usize>,
    queue: BTreeMap<(Duration, u64), Action>,
    seq: u64,
    log: FaultLog,
    stopped: bool,
}

fn exponential(rng: &mut Rng, per_hour: f64) -> Option<Duration> {
    if per_hour <= 0.0 {
        return None;
    }
    let u = rng.next_f64().max(1e-12);
    let hours = -u.ln() / per_hour;
    Some(Duration::from_secs_f64((hours * 3600.0).min(1e9)))
}

impl FaultInjector {
    /// An injector for `plan`, its times drawn from `seed`; `slaves` and `frameworks` scale
    /// the per-node rates; with `masters` > 1, the faults of a group are drawn too.
    pub fn new(
        plan: FaultPlan,
        seed: u64,
        slaves: usize,
        frameworks: usize,
        masters: usize,
    ) -> Self {
        let mut injector = FaultInjector {
            plan,
            rng: Rng::derive(seed, "sim.faults"),
            shrink_rng: Rng::derive(seed, "sim.faults.shrink"),
            group_rng: Rng::derive(seed, "sim.faults.masters"),
            masters,
            master_down: false,
            master_crashed: None,
            queue: BTreeMap::new(),
            seq: 0,
            log: FaultLog::default(),
            stopped: false,
        };
        let now = Duration::ZERO;
        injector.schedule_next(now, Action::Partition, slaves, frameworks);
        injector.schedule_next(now, Action::CrashSlave, slaves, frameworks);
        injector.schedule_next(now, Action::CrashMaster, slaves, frameworks);
        injector.schedule_next(now, Action::CrashFramework, slaves, frameworks);
        injector.schedule_next(now, Action::ShrinkSlave, slaves, frameworks);
        if masters > 1 {
            for action in [
                Action::CrashLeader,
                Action::CrashFollower,
                Action::IsolateLeader,
                Action::PartitionMinority,
                Action::PauseLeader,
            ] {
                injector.schedule_next(now, action, slaves, frameworks);
            }
        }
        injector
    }

    /// The plan.
    pub fn plan(&self) -> &FaultPlan {
        &self.plan
    }

    /// What was injected so far.
    pub fn log(&self) -> &FaultLog {
        &self.log
    }

    fn push(&mut self, at: Duration, action: Action) {
        self.queue.insert((at, self.seq), action);
        self.seq += 1;
    }

    fn schedule_next(&mut self, now: Duration, action: Action, slaves: usize, frameworks: usize) {
        let rate = match action {
            Action::Partition => self.plan.partitions_per_hour,
            Action::CrashSlave => self.plan.slave_crashes_per_slave_hour * slaves as f64,
            Action::CrashMaster => self.plan.master_crashes_per_hour,
            Action::CrashFramework => self.plan.framework_crashes_per_hour * frameworks as f64,
            Action::ShrinkSlave => self.plan.slave_shrinks_per_hour,
            Action::CrashLeader => self.plan.group.leader_crashes_per_hour,
            Action::CrashFollower => self.plan.group.follower_crashes_per_hour,
            Action::IsolateLeader => self.plan.group.leader_isolations_per_hour,
            Action::PartitionMinority => self.plan.group.minority_partitions_per_hour,
            Action::PauseLeader => self.plan.group.leader_pauses_per_hour,
            _ => 0.0,
        };
        let rng = match action {
            Action::ShrinkSlave => &mut self.shrink_rng,
            Action::CrashLeader
            | Action::CrashFollower
            | Action::IsolateLeader
            | Action::PartitionMinority
            | Action::PauseLeader => &mut self.group_rng,
            _ => &mut self.rng,
        };
        if let Some(after) = exponential(rng, rate) {
            // At least a second apart, so a fault never lands on the instant of the previous.
            self.push(now + after.max(Duration::from_secs(1)), action);
        }
    }

    /// When the next fault is due.
    pub fn next_at(&self) -> Option<Duration> {
        if self.stopped {
            return None;
        }
        self.queue.keys().next().map(|(at, _)| *at)
    }

    fn record(&mut self, now: Duration, what: String) {
        if self.log.events.len() < FAULT_LOG_MAX {
            self.log.events.push(InjectedFault {
                at_secs: now.as_secs_f64(),
                what,
            });
        }
    }

    fn draw_secs(&mut self, low: u64, high: u64) -> Duration {
        Duration::from_secs(self.rng.between(low.min(high), high))
            + Duration::from_millis(self.rng.between(0, 999))
    }

    /// [`FaultInjector::draw_secs`] from the group's generator.
    fn draw_group_secs(&mut self, low: u64, high: u64) -> Duration {
        Duration::from_secs(self.group_rng.between(low.min(high), high))
            + Duration::from_millis(self.group_rng.between(0, 999))
    }

    /// Carries out every fault due at or before `now`.
    pub fn inject_due(&mut self, cluster: &mut Cluster, now: Duration) {
        while let Some((&(at, seq), &action)) = self.queue.iter().next() {
            if at > now || self.stopped {
                break;
            }
            self.queue.remove(&(at, seq));
            self.apply(cluster, now, action);
            // A fault changes the masters outside any event: the group is checked now.
            cluster.observe_masters();
        }
    }

    fn apply(&mut self, cluster: &mut Cluster, now: Duration, action: Action) {
        let slaves = cluster.slave_count();
        let frameworks = cluster.framework_count();
        match action {
            Action::Partition => {
                let kind = self.rng.between(0, 10);
                let what = match kind {
                    0..=4 => {
                        let i = self.rng.between(0, slaves as u64 - 1) as usize;
                        cluster.partition_slave(i);
                        self.log.counts.partition_slave += 1;
                        format!("partition slave {} from the master", cluster.slave_host(i))
                    }
                    5..=6 => {
                        let rack = self.rng.between(0, cluster.rack_count() as u64 - 1) as usize;
                        let n = cluster.partition_rack(rack);
                        self.log.counts.partition_rack += 1;
                        format!("partition rack r{rack} ({n} slaves) from the master")
                    }
                    7 => {
                        self.log.counts.partition_master += 1;
                        if cluster.master_count() == 1 {
                            cluster.isolate_master(0);
                            "partition the master from everyone".to_string()
                        } else if let Some(k) = cluster.acting_master() {
                            cluster.isolate_master(k);
                            format!(
                                "partition the acting master {} from everyone",
                                cluster.master_host(k)
                            )
                        } else {
                            "partition the acting master from everyone: none acts".to_string()
                        }
                    }
                    8 if frameworks > 0 => {
                        let j = self.rng.between(0, frameworks as u64 - 1) as usize;
                        cluster.partition_framework(j);
                        self.log.counts.partition_framework += 1;
                        format!(
                            "partition framework {} from the master",
                            cluster.framework_name(j)
                        )
                    }
                    _ => {
                        let i = self.rng.between(0, slaves as u64 - 1) as usize;
                        let to_master = self.rng.chance(0.5);
                        cluster.cut_one_way(i, to_master);
                        self.log.counts.partition_one_way += 1;
                        if to_master {
                            format!("cut slave {} -> master (one way)", cluster.slave_host(i))
                        } else {
                            format!("cut master -> slave {} (one way)", cluster.slave_host(i))
                        }
                    }
                };
                let heal_after = self.draw_secs(2, self.plan.partition_secs_max.max(2));
                self.record(now, format!("{what}, healing in {heal_after:?}"));
                self.push(now + heal_after, Action::Heal);
                self.schedule_next(now, Action::Partition, slaves, frameworks);
            }
            Action::Heal => {
                cluster.heal();
                self.log.counts.heal += 1;
                self.record(now, "heal all partitions".to_string());
            }
            Action::CrashSlave => {
                let i = self.rng.between(0, slaves as u64 - 1) as usize;
                if cluster.is_slave_up(i) {
                    cluster.crash_slave(i);
                    self.log.counts.slave_crash += 1;
                    let down = self.draw_secs(0, self.plan.slave_down_secs_max);
                    self.record(
                        now,
                        format!(
                            "crash slave {}, restarting in {down:?}",
                            cluster.slave_host(i)
                        ),
                    );
                    self.push(now + down, Action::RestartSlave(i));
                }
                self.schedule_next(now, Action::CrashSlave, slaves, frameworks);
            }
            Action::RestartSlave(i) => {
                if !cluster.is_slave_up(i) {
                    cluster.restart_slave(i);
                    self.log.counts.slave_restart += 1;
                    self.record(now, format!("restart slave {}", cluster.slave_host(i)));
                }
            }
            Action::CrashMaster => {
                // With a group: the acting master, if one acts (the draws are the same either
                // way, so the other faults keep their times).
                if !self.master_down {
                    self.master_down = true;
                    let target = if self.masters == 1 {
                        Some(0)
                    } else {
                        cluster.acting_master()
                    };
                    let down = self.draw_secs(0, self.plan.master_down_secs_max);
                    if let Some(k) = target.filter(|&k| cluster.is_master_up(k)) {
                        cluster.crash_master(k);
                        self.master_crashed = Some(k);
                        self.log.counts.master_crash += 1;
                        let what = if self.masters == 1 {
                            "the master".to_string()
                        } else {
                            format!("the acting master {}", cluster.master_host(k))
                        };
                        self.record(now, format!("crash {what}, restarting in {down:?}"));
                    }
                    self.push(now + down, Action::RestartMaster);
                }
                self.schedule_next(now, Action::CrashMaster, slaves, frameworks);
            }
            Action::RestartMaster => {
                self.master_down = false;
                if let Some(k) = self.master_crashed.take() {
                    if !cluster.is_master_up(k) {
                        cluster.restart_master(k);
                        self.log.counts.master_restart += 1;
                        let what = if self.masters == 1 {
                            "the master".to_string()
                        } else {
                            format!("master {}", cluster.master_host(k))
                        };
                        self.record(now, format!("restart {what}"));
                    }
                }
            }
            Action::CrashFramework => {
                if frameworks > 0 {
                    let j = self.rng.between(0, frameworks as u64 - 1) as usize;
                    // An instance of Marathon or Chronos run as leader + standbys: the one
                    // acting, if one does (a leader crash; the draws are the same either way).
                    let acting = cluster.acting_instance(j);
                    let j = acting.unwrap_or(j);
                    if cluster.is_framework_up(j) {
                        cluster.crash_framework(j);
                        self.log.counts.framework_crash += 1;
                        let down = self.draw_secs(1, self.plan.framework_down_secs_max.max(1));
                        let what = match acting {
                            Some(_) => format!("the acting {}", cluster.framework_label(j)),
                            None => format!("framework {}", cluster.framework_label(j)),
                        };
                        self.record(now, format!("crash {what}, restarting in {down:?}"));
                        self.push(now + down, Action::RestartFramework(j));
                    }
                }
                self.schedule_next(now, Action::CrashFramework, slaves, frameworks);
            }
            Action::RestartFramework(j) => {
                if !cluster.is_framework_up(j) {
                    cluster.restart_framework(j);
                    self.log.counts.framework_restart += 1;
                    self.record(
                        now,
                        format!("restart framework {}", cluster.framework_label(j)),
                    );
                }
            }
            Action::ShrinkSlave => {
                self.shrink_slave(cluster, now);
                self.schedule_next(now, Action::ShrinkSlave, slaves, frameworks);
            }
            Action::CrashLeader
            | Action::CrashFollower
            | Action::RestartGroupMaster(_)
            | Action::IsolateLeader
            | Action::PartitionMinority
            | Action::HealMaster(..)
            | Action::PauseLeader
            | Action::ResumeMaster(_) => {
                self.apply_group(cluster, now, action);
                if !matches!(
                    action,
                    Action::RestartGroupMaster(_)
                        | Action::HealMaster(..)
                        | Action::ResumeMaster(_)
                ) {
                    self.schedule_next(now, action, slaves, frameworks);
                }
            }
            Action::RestoreSlave(i) => {
                let full = cluster.slaves[i].configured.clone();
                if cluster.slaves[i].advertised != full {
                    // A slave down now gets them back at its pending restart.
                    let up = cluster.is_slave_up(i);
                    cluster.set_slave_resources(i, full.clone());
                    if up {
                        cluster.crash_slave(i);
                        cluster.restart_slave(i);
                    }
                    self.log.counts.slave_restore += 1;
                    self.record(
                        now,
                        format!(
                            "restart slave {} with its configured resources {full}",
                            cluster.slave_host(i)
                        ),
                    );
                }
            }
        }
    }

    /// A fault of a group of masters (everything drawn from the group's generator).
    fn apply_group(&mut self, cluster: &mut Cluster, now: Duration, action: Action) {
        let g = self.plan.group.clone();
        // The acting master, unless it is paused (a paused one acts until its lease ends, but
        // is left alone: one fault at a time on it).
        let leader = cluster
            .acting_master()
            .filter(|&k| !cluster.is_master_paused(k));
        match action {
            Action::CrashLeader => {
                if let Some(k) = leader {
                    cluster.crash_master(k);
                    self.log.counts.leader_crash += 1;
                    let down = self.draw_group_secs(0, g.master_down_secs_max);
                    self.record(
                        now,
                        format!(
                            "crash the acting master {}, restarting in {down:?}",
                            cluster.master_host(k)
                        ),
                    );
                    self.push(now + down, Action::RestartGroupMaster(k));
                }
            }
            Action::CrashFollower => {
                let followers: Vec<usize> = (0..cluster.master_count())
                    .filter(|&k| Some(k) != leader && cluster.is_master_up(k))
                    .filter(|&k| !cluster.is_master_paused(k))
                    .collect();
                if !followers.is_empty() {
                    let k =
                        followers[self.group_rng.between(0, followers.len() as u64 - 1) as usize];
                    cluster.crash_master(k);
                    self.log.counts.follower_crash += 1;
                    let down = self.draw_group_secs(0, g.master_down_secs_max);
                    self.record(
                        now,
                        format!(
                            "crash master {} (not acting), restarting in {down:?}",
                            cluster.master_host(k)
                        ),
                    );
                    self.push(now + down, Action::RestartGroupMaster(k));
                }
            }
            Action::RestartGroupMaster(k) => {
                if !cluster.is_master_up(k) {
                    cluster.restart_master(k);
                    self.log.counts.group_master_restart += 1;
                    self.record(now, format!("restart master {}", cluster.master_host(k)));
                }
            }
            Action::IsolateLeader => {
                if let Some(k) = leader {
                    cluster.isolate_master(k);
                    self.log.counts.leader_isolation += 1;
                    let heal = self.draw_group_secs(1, g.master_partition_secs_max.max(1));
                    self.record(
                        now,
                        format!(
                            "cut the acting master {} from every node, healing in {heal:?}",
                            cluster.master_host(k)
                        ),
                    );
                    self.push(now + heal, Action::HealMaster(k, true));
                }
            }
            Action::PartitionMinority => {
                let up: Vec<usize> = (0..cluster.master_count())
                    .filter(|&k| cluster.is_master_up(k))
                    .collect();
                if !up.is_empty() {
                    let k = up[self.group_rng.between(0, up.len() as u64 - 1) as usize];
                    cluster.partition_from_masters(k);
                    self.log.counts.minority_partition += 1;
                    let heal = self.draw_group_secs(1, g.master_partition_secs_max.max(1));
                    let role = if Some(k) == leader {
                        "the acting master"
                    } else {
                        "master"
                    };
                    self.record(
                        now,
                        format!(
                            "cut {role} {} from the other masters (slaves and frameworks still                              reach it), healing in {heal:?}",
                            cluster.master_host(k)
                        ),
                    );
                    self.push(now + heal, Action::HealMaster(k, false));
                }
            }
            Action::HealMaster(k, everyone) => {
                if everyone {
                    cluster.heal_master(k);
                } else {
                    cluster.heal_from_masters(k);
                }
                self.log.counts.master_heal += 1;
                self.record(
                    now,
                    format!("heal master {}'s cuts", cluster.master_host(k)),
                );
            }
            Action::PauseLeader => {
                if let Some(k) = leader {
                    cluster.pause_master(k);
                    self.log.counts.leader_pause += 1;
                    let low = 100;
                    let ms = self.group_rng.between(low, g.leader_pause_ms_max.max(low));
                    let pause = Duration::from_millis(ms);
                    self.record(
                        now,
                        format!(
                            "pause the acting master {} (SIGSTOP), resuming in {pause:?}",
                            cluster.master_host(k)
                        ),
                    );
                    self.push(now + pause, Action::ResumeMaster(k));
                }
            }
            Action::ResumeMaster(k) => {
                if cluster.is_master_up(k) && cluster.is_master_paused(k) {
                    cluster.resume_master(k);
                    self.log.counts.master_resume += 1;
                    self.record(now, format!("resume master {}", cluster.master_host(k)));
                }
            }
            _ => unreachable!("not a fault of the group"),
        }
    }

    /// Restarts a slave that runs tasks (drawn among those up) at once with less than they
    /// use: every scalar and the ports cut to a drawn fraction (a quarter to nine tenths) of
    /// what its tasks use, so that it re-registers over-committed. Its configured resources
    /// come back within the plan's `slave_shrunk_secs_max`.
    fn shrink_slave(&mut self, cluster: &mut Cluster, now: Duration) {
        let candidates: Vec<usize> = (0..cluster.slave_count())
            .filter(|&i| cluster.is_slave_up(i) && cluster.ledger.runs_tasks(i))
            .collect();
        if candidates.is_empty() {
            return;
        }
        let pick = self.shrink_rng.between(0, candidates.len() as u64 - 1) as usize;
        let i = candidates[pick];
        let used = Resources::sum(cluster.ledger.running_on(i).values());
        let fraction = uniform(&mut self.shrink_rng, 0.25, 0.9);
        let cut = |milli: u64| (milli as f64 * fraction) as u64;
        let full = cluster.slaves[i].configured.clone();
        let ports = match (full.ports().iter().next(), used.ports().iter().last()) {
            (Some((first, _)), Some((_, last))) if last >= first => {
                let span = f64::from(last - first) * fraction;
                Ranges::single(first, first + span as u16)
            }
            _ => full.ports().clone(),
        };
        let shrunk = Resources::from_milli(
            cut(used.cpus_milli()),
            cut(used.mem_milli()),
            cut(used.disk_milli()),
        )
        .with_ports(ports);
        cluster.set_slave_resources(i, shrunk.clone());
        cluster.crash_slave(i);
        cluster.restart_slave(i);
        self.log.counts.slave_shrink += 1;
        let back_after = Duration::from_secs(
            self.shrink_rng
                .between(10, self.plan.slave_shrunk_secs_max.max(10)),
        );
        self.record(
            now,
            format!(
                "restart slave {} with {shrunk}, less than its tasks use ({used}), restoring in {back_after:?}",
                cluster.slave_host(i)
            ),
        );
        self.push(now + back_after, Action::RestoreSlave(i));
    }

    /// Stops injecting: clears pending faults (the harness heals and restarts everything).
    pub fn stop(&mut self, now: Duration) {
        self.stopped = true;
        self.queue.clear();
        self.record(
            now,
            "faults stop: heal, restart every node, converge".to_string(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_are_drawn_from_the_seed_within_their_level() {
        for seed in 0..200 {
            let a = FaultPlan::draw(FaultLevel::Default, seed);
            assert_eq!(a, FaultPlan::draw(FaultLevel::Default, seed));
            assert_eq!(a.loss, 0.0);
            assert_eq!(a.duplicate, 0.0);
            assert!((6.0..=30.0).contains(&a.partitions_per_hour));
            assert!((2.0..=8.0).contains(&a.slave_shrinks_per_hour));
            assert!((60..=600).contains(&a.slave_shrunk_secs_max));
            assert!(a.latency_max_us >= a.latency_min_us);
            let h = FaultPlan::draw(FaultLevel::Heavy, seed);
            assert!(h.loss >= 0.002 && h.loss <= 0.02);
            assert!(h.master_crashes_per_hour >= a.master_crashes_per_hour.min(6.0));
        }
        assert_ne!(
            FaultPlan::draw(FaultLevel::Default, 1),
            FaultPlan::draw(FaultLevel::Default, 2)
        );
        let none = FaultPlan::draw(FaultLevel::None, 3);
        assert_eq!(none.partitions_per_hour, 0.0);
        assert_eq!(none.slave_shrinks_per_hour, 0.0);
        assert_eq!(none.workload(), Workload::forever());
    }

    #[test]
    fn fault_times_follow_the_rates() {
        let mut rng = Rng::seed_from_u64(5);
        assert_eq!(exponential(&mut rng, 0.0), None);
        let n = 10_000;
        let total: f64 = (0..n)
            .map(|_| {
                exponential(&mut rng, 60.0)
                    .expect("positive rate")
                    .as_secs_f64()
            })
            .sum();
        // 60 per hour: one a minute on average.
        let mean = total / n as f64;
        assert!((54.0..66.0).contains(&mean), "mean {mean}");
    }

    #[test]
    fn levels_parse() {
        assert_eq!("none".parse::<FaultLevel>(), Ok(FaultLevel::None));
        assert_eq!("heavy".parse::<FaultLevel>(), Ok(FaultLevel::Heavy));
        assert!("loud".parse::<FaultLevel>().is_err());
    }
}
