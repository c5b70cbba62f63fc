//! Plateau simulator: the whole cluster's real process code in one thread on a virtual clock, with seeded faults.
//!
//! `plateau sim --seed S` builds a cluster — the real [`MasterProcess`](plateau_master::MasterProcess),
//! real [`SlaveProcess`](plateau_slave::SlaveProcess)es with simulated machines, and
//! [`keeper::Keeper`] frameworks keeping apps running — inside the runtime's discrete-event
//! host ([`plateau_runtime::sim::Sim`]), injects faults drawn from the seed, checks invariants
//! as it goes, and at the end stops the faults, heals, restarts everything and checks that
//! the cluster converges. The same seed replays the same run bit for bit
//! ([`SimReport::trace_hash`]); a violation stops the run and reports the seed and the first
//! broken invariant.
//!
//! - [`cluster`]: builds the cluster; each node's disk lives outside its processes.
//! - [`faults`]: the fault plan drawn per run, and the injector.
//! - [`invariants`] and [`observe`]: what is checked, and where the harness watches.
//! - [`keeper`]: the simulated workload, a small Marathon-like framework.
//! - [`linearizability`]: a linearizability checker for recorded histories (Wing & Gong with
//!   Lowe's memoization), with the model of the masters' coordination store.
//! - [`masters`] and [`standbys`]: the checks of a group of masters, and of Marathon and
//!   Chronos as leader + standbys.
//! - [`marathon`] and [`chronos`]: the real Marathon and Chronos as workloads
//!   (`--marathon-apps N`, `--chronos-jobs N`), with their own invariants (Marathon apps
//!   converge with their constraints; exactly one Chronos run per scheduled instant).
//!
//! Workload mix: `--frameworks F --apps A` are Keeper frameworks, as before; `--marathon-apps M`
//! adds one real Marathon with `M` apps and `--chronos-jobs C` one real Chronos with `C` jobs
//! (both 0 by default, so a plain run is what it was). `--frameworks 0` without `--apps` runs
//! no Keeper at all, e.g. `plateau sim --frameworks 0 --marathon-apps 20 --chronos-jobs 20`.
//! Every framework node, Keeper, Marathon or Chronos, crashes and restarts at the plan's rate.
//!
//! High availability: `--masters 3` (or 5) runs the real replicated masters with their own
//! faults and per-event checks ([`masters`]); with it, `--marathons N` and `--chronoses N`
//! run Marathon and Chronos as leader + standbys on the masters' coordination store, a
//! framework crash fault on them crashes the acting instance, and at most one of each may act
//! at a time ([`standbys`]). `--measure-failover` crashes the acting master and reports how
//! long until another acts and every slave re-registered with it ([`measure_failover`]).
//!
//! Pure of I/O except [`run`]'s wall-clock measurement and peak-memory reading, the seed
//! drawn from the OS when none is given ([`cli_main`]), and [`check_determinism_in_children`].
//!
//! ```
//! use std::time::Duration;
//! use plateau_sim::{run, FaultLevel, SimOptions};
//!
//! let options = SimOptions {
//!     seed: 7,
//!     slaves: 5,
//!     frameworks: 1,
//!     apps: 2,
//!     instances: 3,
//!     duration: Duration::from_secs(30),
//!     faults: FaultLevel::None,
//!     ..SimOptions::default()
//! };
//! let report = run(options.clone());
//! assert!(report.invariant_violations.is_empty(), "{:?}", report.invariant_violations);
//! assert!(report.tasks_launched >= 6);
//! assert_eq!(run(options).trace_hash, report.trace_hash);
//! ```
#![deny(missing_docs)]

pub mod chronos;
pub mod cluster;
pub mod error;
pub mod faults;
pub mod invariants;
pub mod keeper;
pub mod limits;
pub mod linearizability;
pub mod marathon;
pub mod masters;
pub mod observe;
pub mod standbys;

// Linked for `keep_freed_memory`, whichever binary or test uses this crate.
extern crate mimalloc;

use std::time::Duration;

use plateau_runtime::sim::NetworkFaults;
use serde::Serialize;

pub use cluster::{Cluster, ClusterConfig, FrameworkKind, MasterPathCounts};
pub use error::SimError;
pub use faults::{FaultInjector, FaultLevel, FaultLog, FaultPlan};
pub use masters::GroupStats;
pub use observe::{InjectedBug, Violation};

use crate::limits::DURATION_MAX;

/// How to run one simulation.
#[derive(Debug, Clone, PartialEq)]
pub struct SimOptions {
    /// The seed: everything derives from it.
    pub seed: u64,
    /// Number of slaves.
    pub slaves: usize,
    /// Number of Keeper frameworks.
    pub frameworks: usize,
    /// Apps over all frameworks.
    pub apps: usize,
    /// Instances per app.
    pub instances: u32,
    /// Simulated time with faults (the convergence phase comes after).
    pub duration: Duration,
    /// Fault level.
    pub faults: FaultLevel,
    /// Period of the global checks (simulated time). A check due is skipped while fewer than
    /// [`CHECK_EVENTS_PER_TASK`] events per running task have passed since the last one: a
    /// check costs O(tasks), and this keeps it a bounded share of the run at any scale (at
    /// 1,000 slaves and 100,000 tasks it comes about every 100 simulated seconds, in small
    /// runs every period).
    pub check_every: Duration,
    /// Bound on the convergence phase (simulated time).
    pub converge_within: Duration,
    /// Skip the convergence phase (measurement runs).
    pub skip_convergence: bool,
    /// A bug to inject (tests of the harness only).
    pub bug: Option<InjectedBug>,
    /// Apps of one real Marathon framework (0: no Marathon), besides the Keeper frameworks.
    pub marathon_apps: usize,
    /// Jobs of one real Chronos framework (0: no Chronos), besides the Keeper frameworks.
    pub chronos_jobs: usize,
    /// Leave the cluster allocated at the end instead of freeing it: for a process that exits
    /// right after the run (freeing a million simulated tasks takes seconds).
    pub leak_at_end: bool,
    /// Masters: 1, a master alone (the default); 3 or 5, a group on a replicated log.
    pub masters: usize,
    /// Instances of the real Marathon (`--marathons`): 1 alone; more as leader + standbys
    /// (with a group of masters).
    pub marathons: usize,
    /// Instances of the real Chronos (`--chronoses`), as for [`SimOptions::marathons`].
    pub chronoses: usize,
}

/// Events per running task that must pass between two global checks (see
/// [`SimOptions::check_every`]).
pub const CHECK_EVENTS_PER_TASK: u64 = 4;

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            seed: 0,
            slaves: 100,
            frameworks: 4,
            apps: 20,
            instances: 500,
            duration: Duration::from_secs(600),
            faults: FaultLevel::Default,
            check_every: Duration::from_secs(30),
            converge_within: Duration::from_secs(300),
            skip_convergence: false,
            bug: None,
            marathon_apps: 0,
            chronos_jobs: 0,
            leak_at_end: false,
            masters: 1,
            marathons: 1,
            chronoses: 1,
        }
    }
}

/// What a run did. Serializes to JSON with the keys named in the issue (and a few more).
#[derive(Debug, Clone, Serialize)]
pub struct SimReport {
    /// The seed.
    pub seed: u64,
    /// Masters (1: a master alone; more: a group).
    pub masters: usize,
    /// Slaves.
    pub slaves: usize,
    /// Frameworks.
    pub frameworks: usize,
    /// Apps.
    pub apps: usize,
    /// Instances per app.
    pub instances: u32,
    /// Apps of the real Marathon.
    pub marathon_apps: usize,
    /// Jobs of the real Chronos.
    pub chronos_jobs: usize,
    /// Chronos tasks launched on machines (attempts of runs).
    pub chronos_launches: u64,
    /// Scheduled Chronos instants that ran (at least one attempt).
    pub chronos_instants_run: usize,
    /// Fingerprint of every delivery (same seed, same hash).
    pub trace_hash: u64,
    /// Simulated seconds (faults and convergence).
    pub sim_seconds: f64,
    /// Wall-clock seconds.
    pub wall_seconds: f64,
    /// Simulator events handled.
    pub events: u64,
    /// Tasks launched on machines.
    pub tasks_launched: u64,
    /// `tasks_launched / wall_seconds`.
    pub placements_per_wall_s: f64,
    /// Simulated seconds per wall second.
    pub speed_vs_real_time: f64,
    /// First time every wanted instance ran (simulated seconds), if it happened.
    pub fill_sim_seconds: Option<f64>,
    /// Wall seconds until then.
    pub fill_wall_seconds: Option<f64>,
    /// Placements per wall second while the cluster filled (the wanted instances over
    /// `fill_wall_seconds`): the rate of placing, without the quiet time after it.
    pub fill_placements_per_wall_s: Option<f64>,
    /// Simulated seconds the convergence phase took, if it converged.
    pub converged_after_secs: Option<f64>,
    /// The fault plan drawn for the run.
    pub fault_plan: FaultPlan,
    /// What was injected.
    pub faults_injected: FaultLog,
    /// Rare master paths the run took (e.g. slaves re-registering over-committed after a
    /// shrink), counted over every master of the run.
    pub master_paths: MasterPathCounts,
    /// What the checks of a group of masters saw (None with one master).
    pub group: Option<GroupStats>,
    /// What the checks of Marathon and Chronos as leader + standbys saw (None when each
    /// runs alone).
    pub standbys: Option<standbys::StandbyStats>,
    /// Broken invariants (empty when the run passed).
    pub invariant_violations: Vec<Violation>,
    /// Suspicious events that break no invariant by themselves (e.g. a slave reusing a status
    /// update uuid after a restart), the first few.
    pub warnings: Vec<Violation>,
    /// Setup error, if the run could not start.
    pub error: Option<String>,
    /// Peak resident memory of this process (VmHWM), bytes.
    pub peak_rss_bytes: u64,
}

impl SimReport {
    /// True when the run started and broke no invariant.
    pub fn passed(&self) -> bool {
        self.error.is_none() && self.invariant_violations.is_empty()
    }
}

/// Peak resident memory of this process (VmHWM from `/proc/self/status`), 0 if unknown.
pub fn peak_rss_bytes() -> u64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return 0;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

struct Runner {
    cluster: Cluster,
    injector: FaultInjector,
    violations: Vec<Violation>,
    warnings: Vec<Violation>,
    wanted: usize,
    fill: Option<(f64, f64)>,
    wall_start: std::time::Instant,
}

impl Runner {
    fn now(&self) -> Duration {
        self.cluster.sim.now().since_origin()
    }

    fn collect(&mut self, failures: Vec<(String, String)>) {
        let at_secs = self.now().as_secs_f64();
        for (invariant, detail) in failures {
            if self.violations.len() < limits::VIOLATIONS_KEPT_MAX {
                self.violations.push(Violation {
                    at_secs,
                    invariant,
                    detail,
                });
            }
        }
    }

    /// Runs until `until` or a violation; true when no violation.
    fn run_until(&mut self, until: Duration) -> bool {
        while self.now() < until {
            // At most a simulated second at a time, to notice the fill moment.
            let step = (until - self.now()).min(Duration::from_secs(1));
            self.cluster.run_checked(step);
            let ledger = self.cluster.ledger.clone();
            if std::env::var_os("PLATEAU_SIM_DEBUG").is_some() {
                let st = self.cluster.sim.stats().clone();
                eprintln!(
                    "t={:.1} events={} delivered={} dropped={} timers={} pending={} running={}",
                    self.now().as_secs_f64(),
                    st.events,
                    st.delivered,
                    st.dropped,
                    st.timers_fired,
                    self.cluster.sim.pending(),
                    ledger.running_count()
                );
            }
            if ledger.violation_count() > 0 {
                let found = ledger.take_violations();
                self.collect(found);
                return false;
            }
            let at_secs = self.now().as_secs_f64();
            for (invariant, detail) in ledger.take_warnings() {
                if self.warnings.len() < limits::VIOLATIONS_KEPT_MAX {
                    self.warnings.push(Violation {
                        at_secs,
                        invariant,
                        detail,
                    });
                }
            }
            if self.fill.is_none() && self.wanted > 0 && ledger.running_count() >= self.wanted {
                self.fill = Some((
                    self.now().as_secs_f64(),
                    self.wall_start.elapsed().as_secs_f64(), // determinism-ok: measurement only
                ));
            }
        }
        true
    }

    fn periodic(&mut self) -> bool {
        let failures = invariants::check_periodic(&mut self.cluster);
        let ok = failures.is_empty();
        self.collect(failures);
        ok
    }
}

fn failed_report(options: &SimOptions, plan: FaultPlan, error: String) -> SimReport {
    SimReport {
        seed: options.seed,
        masters: options.masters,
        slaves: options.slaves,
        frameworks: options.frameworks,
        apps: options.apps,
        instances: options.instances,
        marathon_apps: options.marathon_apps,
        chronos_jobs: options.chronos_jobs,
        chronos_launches: 0,
        chronos_instants_run: 0,
        trace_hash: 0,
        sim_seconds: 0.0,
        wall_seconds: 0.0,
        events: 0,
        tasks_launched: 0,
        placements_per_wall_s: 0.0,
        speed_vs_real_time: 0.0,
        fill_sim_seconds: None,
        fill_wall_seconds: None,
        fill_placements_per_wall_s: None,
        converged_after_secs: None,
        fault_plan: plan,
        faults_injected: FaultLog::default(),
        master_paths: MasterPathCounts::default(),
        group: None,
        standbys: None,
        invariant_violations: Vec::new(),
        warnings: Vec::new(),
        error: Some(error),
        peak_rss_bytes: peak_rss_bytes(),
    }
}

/// The cluster configuration a run of `options` builds, with its fault plan.
pub fn cluster_config(options: &SimOptions) -> (ClusterConfig, FaultPlan) {
    let plan = FaultPlan::draw(options.faults, options.seed);
    let mut config = ClusterConfig::new(
        options.seed,
        options.slaves,
        options.frameworks,
        options.apps,
        options.instances,
    );
    config.workload = plan.workload();
    config.network = plan.network();
    config.bug = options.bug;
    config.marathon_apps = options.marathon_apps;
    config.chronos_jobs = options.chronos_jobs;
    config.masters = options.masters;
    config.marathons = options.marathons;
    config.chronoses = options.chronoses;
    (config, plan)
}

/// Runs one simulation (see the [crate docs](crate)): faults for `options.duration`, then
/// heal, restart and converge within `options.converge_within`; invariants checked all along.
pub fn run(options: SimOptions) -> SimReport {
    let wall_start = std::time::Instant::now(); // determinism-ok: measurement only
    let (config, plan) = cluster_config(&options);
    if options.duration > DURATION_MAX {
        return failed_report(
            &options,
            plan,
            format!("duration must be at most {DURATION_MAX:?}"),
        );
    }
    let wanted = options.apps * options.instances as usize;
    let cluster = match Cluster::new(config) {
        Ok(c) => c,
        Err(e) => return failed_report(&options, plan, e.to_string()),
    };
    // Every framework node crashes at the plan's rate: Keepers, Marathon and Chronos.
    let injector = FaultInjector::new(
        plan.clone(),
        options.seed,
        options.slaves,
        cluster.framework_count(),
        cluster.master_count(),
    );
    let mut runner = Runner {
        cluster,
        injector,
        violations: Vec::new(),
        warnings: Vec::new(),
        wanted,
        fill: None,
        wall_start,
    };
    let end = options.duration;
    let mut next_check = options.check_every;
    let mut events_at_check = 0u64;
    let mut ok = true;
    while ok && runner.now() < end {
        let mut next = end.min(next_check);
        if let Some(at) = runner.injector.next_at() {
            next = next.min(at.max(runner.now()));
        }
        ok = runner.run_until(next);
        if !ok {
            break;
        }
        let now = runner.now();
        let Runner {
            cluster, injector, ..
        } = &mut runner;
        injector.inject_due(cluster, now);
        if cluster.ledger.violation_count() > 0 {
            // A check made after a fault (the group's) found something.
            let found = cluster.ledger.take_violations();
            runner.collect(found);
            ok = false;
            break;
        }
        if now >= next_check {
            next_check = now + options.check_every;
            let events = runner.cluster.sim.stats().events;
            let running = runner.cluster.ledger.running_count() as u64;
            if events - events_at_check >= CHECK_EVENTS_PER_TASK * running {
                events_at_check = events;
                ok = runner.periodic();
            }
        }
    }
    let mut converged_after_secs = None;
    if ok && !options.skip_convergence {
        let now = runner.now();
        runner.injector.stop(now);
        if let Some(witness) = &runner.cluster.chronos_witness {
            witness.set_fault_end(runner.cluster.sim.wall_clock());
        }
        let latency = NetworkFaults {
            loss: 0.0,
            duplicate: 0.0,
            ..runner.cluster.sim.faults().clone()
        };
        runner.cluster.sim.set_faults(latency);
        runner.cluster.heal();
        runner.cluster.restart_all();
        // Task failures and ends are faults too: from now on the Keepers' tasks, launched
        // before or after, run until killed (a cluster still churning through the last runs
        // would only converge by luck, at an instant when no replacement is on its way).
        // Chronos' runs still end, so the bound covers the longest run.
        runner.cluster.set_workload(&keeper::Workload::forever());
        runner.cluster.keeper_tasks_run_until_killed();
        let start = runner.now();
        let deadline = start
            + options.converge_within
            + Duration::from_secs(runner.injector.plan().task_run_secs_max);
        let mut last = None;
        while ok && runner.now() < deadline {
            let next = runner.now() + Duration::from_secs(1);
            ok = runner.run_until(next);
            if !ok {
                break;
            }
            match invariants::check_converged(&mut runner.cluster) {
                Ok(()) => {
                    converged_after_secs = Some((runner.now() - start).as_secs_f64());
                    last = None;
                    break;
                }
                Err(failure) => {
                    if std::env::var_os("PLATEAU_SIM_DEBUG_CONVERGE").is_some() {
                        eprintln!(
                            "t={:.0} not converged: {failure:?}",
                            runner.now().as_secs_f64()
                        );
                    }
                    last = Some(failure)
                }
            }
        }
        if ok {
            if let Some(failure) = last {
                let (invariant, detail) = failure;
                runner.collect(vec![(
                    invariant,
                    format!(
                        "not converged {:?} after the faults stopped: {detail}",
                        deadline - start
                    ),
                )]);
            }
            runner.periodic();
        }
    }
    let wall_seconds = wall_start.elapsed().as_secs_f64(); // determinism-ok: measurement only
    let sim_seconds = runner.now().as_secs_f64();
    let leak = options.leak_at_end;
    let tasks_launched = runner.cluster.ledger.tasks_launched();
    let master_paths = runner.cluster.master_path_counts();
    let group = runner
        .cluster
        .watch
        .as_ref()
        .map(masters::GroupWatch::stats);
    let (chronos_launches, chronos_instants_run) = runner
        .cluster
        .chronos_witness
        .as_ref()
        .map_or((0, 0), |w| (w.launches(), w.scheduled_runs()));
    let report = SimReport {
        seed: options.seed,
        masters: options.masters,
        slaves: options.slaves,
        frameworks: options.frameworks,
        apps: options.apps,
        instances: options.instances,
        marathon_apps: options.marathon_apps,
        chronos_jobs: options.chronos_jobs,
        chronos_launches,
        chronos_instants_run,
        trace_hash: runner.cluster.sim.trace_hash(),
        sim_seconds,
        wall_seconds,
        events: runner.cluster.sim.stats().events,
        tasks_launched,
        placements_per_wall_s: tasks_launched as f64 / wall_seconds.max(1e-9),
        speed_vs_real_time: sim_seconds / wall_seconds.max(1e-9),
        fill_sim_seconds: runner.fill.map(|f| f.0),
        fill_wall_seconds: runner.fill.map(|f| f.1),
        fill_placements_per_wall_s: runner.fill.map(|f| wanted as f64 / f.1.max(1e-9)),
        converged_after_secs,
        fault_plan: plan,
        faults_injected: runner.injector.log().clone(),
        master_paths,
        group,
        standbys: runner
            .cluster
            .standbys
            .as_ref()
            .map(standbys::StandbyWatch::stats),
        invariant_violations: std::mem::take(&mut runner.violations),
        warnings: std::mem::take(&mut runner.warnings),
        error: None,
        peak_rss_bytes: peak_rss_bytes(),
    };
    if leak {
        std::mem::forget(runner);
    }
    report
}

/// Runs `options` twice in this process and compares the trace hashes: the first report when
/// they match.
pub fn check_determinism(options: SimOptions) -> Result<SimReport, SimError> {
    let first = run(options.clone());
    let second = run(options);
    if first.trace_hash != second.trace_hash
        || first.events != second.events
        || first.invariant_violations != second.invariant_violations
    {
        return Err(SimError::Nondeterministic {
            seed: first.seed,
            first: first.trace_hash,
            second: second.trace_hash,
        });
    }
    Ok(first)
}

/// Runs `program args... --json` twice as child processes (fresh address spaces, so nothing
/// of one run can leak into the other) and compares the `trace_hash` of their JSON reports.
/// Returns the hash.
pub fn check_determinism_in_children(
    program: &std::path::Path,
    args: &[String],
) -> Result<u64, SimError> {
    let run_child = || -> Result<u64, SimError> {
        let output = std::process::Command::new(program)
            .args(args)
            .arg("--json")
            .output()
            .map_err(|e| SimError::Child(format!("cannot run {}: {e}", program.display())))?;
        let text = String::from_utf8_lossy(&output.stdout);
        let report: serde_json::Value = text
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str(l).ok())
            .ok_or_else(|| {
                SimError::Child(format!(
                    "no JSON report from {} (status {})",
                    program.display(),
                    output.status
                ))
            })?;
        report["trace_hash"]
            .as_u64()
            .ok_or_else(|| SimError::Child("report without trace_hash".into()))
    };
    let first = run_child()?;
    let second = run_child()?;
    if first != second {
        let seed = args
            .iter()
            .position(|a| a == "--seed")
            .and_then(|i| args.get(i + 1))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        return Err(SimError::Nondeterministic {
            seed,
            first,
            second,
        });
    }
    Ok(first)
}

/// What a master failover measurement found.
#[derive(Debug, Clone, Serialize)]
pub struct FailoverReport {
    /// The seed.
    pub seed: u64,
    /// Masters (1: the master is restarted at once; more: the acting one is crashed and the
    /// others elect a new one).
    pub masters: usize,
    /// Slaves.
    pub slaves: usize,
    /// Tasks running when the master crashed.
    pub tasks: usize,
    /// Simulated seconds (1 ms resolution) from the crash until a master acted again (the
    /// restarted one, or a newly elected one), worst of [`FAILOVER_ROUNDS`] failovers.
    pub acting_after_secs: Option<f64>,
    /// Simulated seconds from the crash until every slave was re-registered with the acting
    /// master, worst of [`FAILOVER_ROUNDS`] failovers.
    pub reregistered_after_secs: Option<f64>,
    /// Simulated seconds until the acting master knew every running task (worst).
    pub tasks_known_after_secs: Option<f64>,
    /// Each failover's time until a master acted.
    pub acting_each_secs: Vec<Option<f64>>,
    /// Each failover's re-registration time.
    pub reregistered_each_secs: Vec<Option<f64>>,
    /// Each failover's time until every task was known.
    pub tasks_known_each_secs: Vec<Option<f64>>,
    /// Wall seconds the failover phase took to simulate.
    pub wall_seconds: f64,
    /// Peak resident memory, bytes.
    pub peak_rss_bytes: u64,
}

impl std::fmt::Display for FailoverReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = |v: Option<f64>| v.map_or("never".to_string(), |s| format!("{s:.3} s"));
        let each = |v: &[Option<f64>]| v.iter().map(|s| secs(*s)).collect::<Vec<_>>().join(", ");
        writeln!(
            f,
            "failover of the acting master: {} masters, {} slaves, {} tasks, seed {}; worst of {} (simulated time from the crash)",
            self.masters,
            self.slaves,
            self.tasks,
            self.seed,
            self.acting_each_secs.len()
        )?;
        writeln!(
            f,
            "  a master acting again      {}  (each: {})",
            secs(self.acting_after_secs),
            each(&self.acting_each_secs)
        )?;
        writeln!(
            f,
            "  every slave re-registered  {}  (each: {})",
            secs(self.reregistered_after_secs),
            each(&self.reregistered_each_secs)
        )?;
        writeln!(
            f,
            "  every task known           {}  (each: {})",
            secs(self.tasks_known_after_secs),
            each(&self.tasks_known_each_secs)
        )?;
        write!(
            f,
            "simulated in {:.1} s wall, peak memory {:.2} GB",
            self.wall_seconds,
            self.peak_rss_bytes as f64 / 1e9
        )
    }
}

/// Fills a cluster of `slaves` slaves with `apps × instances` tasks (no faults), then fails
/// the master over [`FAILOVER_ROUNDS`] times and measures how long (simulated) until a master
/// acts again, every slave re-registered with it and it knows every running task.
///
/// With one master (`masters` = 1) the master is crashed and restarted at once, on its
/// registry. A slave learns of the crash from its link's `exited` (the runtime's link
/// timeout, standing for the transport's idle timeout) or, sooner, from the restarted
/// master's answer to its next heartbeat (a re-registration request). With a group, the
/// acting master is crashed and stays down while the others elect a new leader, which tells
/// every slave and framework of its registry (`NewMasterDetectedMessage`); the crashed one is
/// restarted (as a follower) after the round.
pub fn measure_failover(
    seed: u64,
    masters: usize,
    slaves: usize,
    frameworks: usize,
    apps: usize,
    instances: u32,
) -> Result<FailoverReport, SimError> {
    let options = SimOptions {
        seed,
        masters,
        slaves,
        frameworks,
        apps,
        instances,
        faults: FaultLevel::None,
        ..SimOptions::default()
    };
    let (config, _) = cluster_config(&options);
    let mut cluster = Cluster::new(config)?;
    let wanted = apps * instances as usize;
    let ledger = cluster.ledger.clone();
    let mut placed = false;
    for _ in 0..600 {
        cluster.sim.run_for(Duration::from_secs(1));
        if ledger.running_count() >= wanted {
            placed = true;
            break;
        }
    }
    if !placed {
        return Err(SimError::Config(format!(
            "only {} of {wanted} tasks placed in 10 simulated minutes",
            ledger.running_count()
        )));
    }
    // Crash half-way between two heartbeats: slaves all registered at about the same time, so
    // their heartbeats are in phase, and a crash just before them would be found at once.
    cluster.sim.run_for(Duration::from_millis(5_500));
    let tasks = ledger.running_count();
    let wall = std::time::Instant::now(); // determinism-ok: measurement only
    let all = cluster.slaves.len();
    let mut acting_each = Vec::new();
    let mut reregistered_each = Vec::new();
    let mut known_each = Vec::new();
    // Four failovers, each a quarter of a heartbeat interval later in the heartbeat phase, so
    // that the worst case (a crash just after the slaves' heartbeats) is among them.
    for round in 0..FAILOVER_ROUNDS {
        let crash_at = cluster.sim.now();
        let crashed = cluster
            .acting_master()
            .ok_or_else(|| SimError::Config("no master acts before the failover".into()))?;
        cluster.crash_master(crashed);
        if masters == 1 {
            cluster.restart_master(crashed);
        }
        let mut acting = None;
        let mut reregistered = None;
        let mut known = None;
        loop {
            cluster.sim.run_for(Duration::from_millis(1));
            let since = cluster.sim.now().saturating_duration_since(crash_at);
            let Some(k) = cluster.acting_master() else {
                if since > Duration::from_secs(120) {
                    break;
                }
                continue;
            };
            if acting.is_none() {
                acting = Some(since.as_secs_f64());
            }
            let (connected, active) = cluster
                .with_master_core(k, |c| {
                    let connected = c
                        .slaves()
                        .values()
                        .filter(|s| s.status == plateau_master::core::SlaveStatus::Connected)
                        .count();
                    (connected, c.tasks().len())
                })
                .unwrap_or((0, 0));
            if reregistered.is_none() && connected == all {
                reregistered = Some(since.as_secs_f64());
            }
            if known.is_none() && active >= tasks {
                known = Some(since.as_secs_f64());
            }
            if reregistered.is_some() && known.is_some() || since > Duration::from_secs(120) {
                break;
            }
        }
        acting_each.push(acting);
        reregistered_each.push(reregistered);
        known_each.push(known);
        if !cluster.is_master_up(crashed) {
            cluster.restart_master(crashed);
        }
        // Settle, then move the next crash a quarter interval further in the phase.
        let settle = Duration::from_secs(5) + Duration::from_millis(250 * (round as u64 + 1));
        let next =
            crash_at + Duration::from_secs(10) + Duration::from_millis(250 * (round as u64 + 1));
        cluster.sim.run_until(next.max(cluster.sim.now() + settle));
    }
    let worst = |v: &[Option<f64>]| -> Option<f64> {
        v.iter().try_fold(0.0f64, |acc, x| x.map(|x| acc.max(x)))
    };
    Ok(FailoverReport {
        seed,
        masters,
        slaves,
        tasks,
        acting_after_secs: worst(&acting_each),
        reregistered_after_secs: worst(&reregistered_each),
        tasks_known_after_secs: worst(&known_each),
        acting_each_secs: acting_each,
        reregistered_each_secs: reregistered_each,
        tasks_known_each_secs: known_each,
        wall_seconds: wall.elapsed().as_secs_f64(), // determinism-ok: measurement only
        peak_rss_bytes: peak_rss_bytes(),
    })
}

/// Failovers measured by [`measure_failover`], at different points of the heartbeat phase.
pub const FAILOVER_ROUNDS: usize = 4;

// ---- command line -------------------------------------------------------------------------

/// Parses a duration like `90s`, `10m`, `1h`, `500ms` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("bad duration '{text}'"))?;
    let factor = match unit {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        _ => return Err(format!("bad duration unit in '{text}' (ms, s, m, h, d)")),
    };
    let secs = value * factor;
    if !secs.is_finite() || secs < 0.0 || secs > DURATION_MAX.as_secs_f64() {
        return Err(format!("duration '{text}' out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// What the command line asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct CliArgs {
    /// The run's options (`seed` drawn when not given).
    pub options: SimOptions,
    /// True when `--seed` was given.
    pub seed_given: bool,
    /// Print the report as one JSON line.
    pub json: bool,
    /// Run twice and compare (`--check-determinism`; `--check-determinism=child` runs two
    /// child processes).
    pub check_determinism: Option<DeterminismMode>,
    /// Measure a master failover instead of a run (`--measure-failover`).
    pub measure_failover: bool,
}

/// Where the two runs of a determinism check happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeterminismMode {
    /// Both in this process.
    InProcess,
    /// Each in a child process (`<current exe> sim <args> --json`).
    Children,
}

const USAGE: &str = "usage: plateau sim [--seed S] [--masters 1|3|5] [--slaves N] [--frameworks F] [--apps A] \
[--instances K] [--marathon-apps M] [--marathons 1|2|3] [--chronos-jobs C] [--chronoses 1|2|3] [--duration 10m] [--faults none|default|heavy] [--check-every 10s] \
[--converge-within 5m] [--no-converge] [--json] [--check-determinism[=child]] [--measure-failover]";

/// Parses the flags of `plateau sim` (without the subcommand name).
pub fn parse_args(args: &[String]) -> Result<CliArgs, String> {
    let mut cli = CliArgs {
        options: SimOptions::default(),
        seed_given: false,
        json: false,
        check_determinism: None,
        measure_failover: false,
    };
    let mut instances_given = false;
    let mut apps_given = false;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        let number = |name: &str, v: String| -> Result<u64, String> {
            v.parse::<u64>()
                .map_err(|_| format!("{name}: '{v}' is not a whole number"))
        };
        let o = &mut cli.options;
        match flag.as_str() {
            "--seed" => {
                o.seed = number("--seed", value("--seed")?)?;
                cli.seed_given = true;
            }
            "--masters" => o.masters = number("--masters", value("--masters")?)? as usize,
            "--marathons" => o.marathons = number("--marathons", value("--marathons")?)? as usize,
            "--chronoses" => o.chronoses = number("--chronoses", value("--chronoses")?)? as usize,
            "--slaves" => o.slaves = number("--slaves", value("--slaves")?)? as usize,
            "--frameworks" => {
                o.frameworks = number("--frameworks", value("--frameworks")?)? as usize
            }
            "--apps" => {
                apps_given = true;
                o.apps = number("--apps", value("--apps")?)? as usize
            }
            "--marathon-apps" => {
                o.marathon_apps = number("--marathon-apps", value("--marathon-apps")?)? as usize
            }
            "--chronos-jobs" => {
                o.chronos_jobs = number("--chronos-jobs", value("--chronos-jobs")?)? as usize
            }
            "--instances" => {
                instances_given = true;
                o.instances = number("--instances", value("--instances")?)?
                    .try_into()
                    .map_err(|_| "--instances is too large".to_string())?
            }
            "--duration" => o.duration = parse_duration(&value("--duration")?)?,
            "--check-every" => o.check_every = parse_duration(&value("--check-every")?)?,
            "--converge-within" => {
                o.converge_within = parse_duration(&value("--converge-within")?)?
            }
            "--no-converge" => o.skip_convergence = true,
            "--faults" => o.faults = value("--faults")?.parse()?,
            "--json" => cli.json = true,
            "--check-determinism" => cli.check_determinism = Some(DeterminismMode::InProcess),
            "--check-determinism=child" => cli.check_determinism = Some(DeterminismMode::Children),
            "--measure-failover" => cli.measure_failover = true,
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown flag '{other}'\n{USAGE}")),
        }
    }
    if cli.options.frameworks == 0 && !apps_given {
        // `--frameworks 0` (e.g. only Marathon and Chronos): no Keeper apps either.
        cli.options.apps = 0;
    }
    if cli.options.check_every.is_zero() {
        return Err("--check-every must be positive".into());
    }
    if cli.options.masters == 0 || cli.options.masters > limits::MASTERS_MAX {
        return Err(format!(
            "--masters must be 1..={} (1: a master alone; 3 or 5: a group)",
            limits::MASTERS_MAX
        ));
    }
    if !instances_given {
        // Without --instances: about 100 tasks per slave in all (Nomad's C1M shape: the
        // 10,000-slave, 2,000-app run places 1,000,000 tasks), at least one per app.
        let per_app = (cli.options.slaves * 100 / cli.options.apps.max(1)).max(1);
        cli.options.instances = u32::try_from(per_app).unwrap_or(u32::MAX);
    }
    Ok(cli)
}

fn os_seed() -> u64 {
    // determinism-ok: the one place a seed comes from outside, and it is printed.
    let nanos = std::time::SystemTime::now() // determinism-ok: the seed drawn from outside
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut bytes = [0u8; 8];
    let random = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .is_ok();
    let from_os = if random { u64::from_le_bytes(bytes) } else { 0 };
    from_os ^ nanos ^ u64::from(std::process::id()).rotate_left(32)
}

fn print_human(report: &SimReport) {
    let masters = if report.masters == 1 {
        "1 master".to_string()
    } else {
        format!("a group of {} masters", report.masters)
    };
    println!(
        "seed {}: {masters}, {} slaves, {} frameworks, {} apps x {} instances",
        report.seed, report.slaves, report.frameworks, report.apps, report.instances
    );
    if report.marathon_apps > 0 || report.chronos_jobs > 0 {
        println!(
            "real frameworks: Marathon with {} apps, Chronos with {} jobs ({} Chronos tasks \
             launched, {} scheduled instants ran)",
            report.marathon_apps,
            report.chronos_jobs,
            report.chronos_launches,
            report.chronos_instants_run
        );
    }
    let p = &report.fault_plan;
    println!(
        "fault plan ({:?}): loss {:.4}, duplicate {:.4}, latency {}-{} us, partitions {:.1}/h (<= {} s), \
         slave crashes {:.2}/slave/h (down <= {} s), master crashes {:.1}/h (down <= {} s), \
         framework crashes {:.1}/h (down <= {} s), tasks run {}-{} s, fail {:.3}, oom {:.3}, \
         slave shrinks {:.1}/h (shrunk <= {} s)",
        p.level,
        p.loss,
        p.duplicate,
        p.latency_min_us,
        p.latency_max_us,
        p.partitions_per_hour,
        p.partition_secs_max,
        p.slave_crashes_per_slave_hour,
        p.slave_down_secs_max,
        p.master_crashes_per_hour,
        p.master_down_secs_max,
        p.framework_crashes_per_hour,
        p.framework_down_secs_max,
        p.task_run_secs_min,
        p.task_run_secs_max,
        p.task_fail_probability,
        p.task_oom_probability,
        p.slave_shrinks_per_hour,
        p.slave_shrunk_secs_max
    );
    if report.masters > 1 {
        let g = &p.group;
        println!(
            "group faults: leader crashes {:.1}/h, follower crashes {:.1}/h (down <= {} s), \
             leader isolations {:.1}/h, minority partitions {:.1}/h (<= {} s), leader pauses \
             {:.1}/h (<= {} ms)",
            g.leader_crashes_per_hour,
            g.follower_crashes_per_hour,
            g.master_down_secs_max,
            g.leader_isolations_per_hour,
            g.minority_partitions_per_hour,
            g.master_partition_secs_max,
            g.leader_pauses_per_hour,
            g.leader_pause_ms_max
        );
    }
    for event in &report.faults_injected.events {
        println!("  [{:>10.3} s] {}", event.at_secs, event.what);
    }
    println!("injected: {:?}", report.faults_injected.counts);
    println!("master paths: {:?}", report.master_paths);
    if let Some(g) = &report.group {
        println!(
            "group checks: {} terms with a leader, {} offices taken, {} applied digests \
             compared across copies (last index {}), {} acknowledged registrations checked, \
             {} fenced framework calls checked against the newest epoch",
            g.leader_terms,
            g.offices_taken,
            g.digests_compared,
            g.last_applied_index,
            g.registrations_checked,
            g.fenced_calls_checked
        );
    }
    if let Some(s) = &report.standbys {
        println!(
            "leader + standbys: {} Marathons ({} times one took the lead), {} Chronoses ({} \
             times), at most one of each acting checked {} times",
            s.marathons, s.marathon_leaders, s.chronoses, s.chronos_leaders, s.checks
        );
    }
    println!(
        "{:.1} simulated s in {:.2} wall s ({:.0}x real time), {} events, {} tasks launched \
         ({:.0} placements/wall s), trace {:016x}, peak RSS {} MB",
        report.sim_seconds,
        report.wall_seconds,
        report.speed_vs_real_time,
        report.events,
        report.tasks_launched,
        report.placements_per_wall_s,
        report.trace_hash,
        report.peak_rss_bytes >> 20
    );
    if let (Some(s), Some(w), Some(rate)) = (
        report.fill_sim_seconds,
        report.fill_wall_seconds,
        report.fill_placements_per_wall_s,
    ) {
        println!(
            "every instance ran after {s:.1} simulated s ({w:.2} wall s, {rate:.0} placements/wall s)"
        );
    }
    if let Some(c) = report.converged_after_secs {
        println!("converged {c:.1} simulated s after the faults stopped");
    }
    if let Some(e) = &report.error {
        println!("ERROR: {e}");
    }
    for w in &report.warnings {
        println!(
            "warning at {:.3} s: {}: {}",
            w.at_secs, w.invariant, w.detail
        );
    }
    for v in &report.invariant_violations {
        println!(
            "VIOLATION at {:.3} s: {}: {}",
            v.at_secs, v.invariant, v.detail
        );
    }
    if !report.invariant_violations.is_empty() {
        println!("replay with: plateau sim --seed {} ...", report.seed);
    }
}

/// Tells mimalloc (the global allocator of `plateau` and `plateau-sim`) never to give freed
/// memory back to the OS. A simulation frees and reallocates the same memory all the time;
/// giving it back made the kernel fault in and zero the same pages again and again (20
/// simulated minutes of 1,000 slaves: 1.3 s of system time instead of 0.5 s, and 10 % more
/// user time). The process lives for one run, so nothing is held for long. Harmless when
/// another allocator is the global one.
pub fn keep_freed_memory() {
    use std::ffi::{c_int, c_long};
    /// `mi_option_purge_delay` in the mimalloc v3 that libmimalloc-sys 0.1 builds
    /// (`include/mimalloc.h`); -1 means never purge.
    const MI_OPTION_PURGE_DELAY: c_int = 15;
    extern "C" {
        fn mi_option_set(option: c_int, value: c_long);
    }
    // SAFETY: sets one entry of mimalloc's option table; callable at any time, from any
    // thread, with any option and value.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}

/// `plateau sim`: parses `args` (the flags after the subcommand), runs, prints, and returns
/// the process exit code (0 passed, 1 an invariant failed or runs differed, 2 bad usage).
pub fn cli_main(args: &[String]) -> i32 {
    keep_freed_memory();
    let mut cli = match parse_args(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    if !cli.seed_given {
        cli.options.seed = os_seed();
        eprintln!("seed {} (drawn)", cli.options.seed);
    }
    let o = cli.options.clone();
    if cli.measure_failover {
        return match measure_failover(
            o.seed,
            o.masters,
            o.slaves,
            o.frameworks,
            o.apps,
            o.instances,
        ) {
            Ok(r) => {
                if cli.json {
                    println!("{}", serde_json::to_string(&r).unwrap_or_default());
                } else {
                    println!("{r}");
                }
                i32::from(r.reregistered_after_secs.is_none())
            }
            Err(e) => {
                eprintln!("{e}");
                1
            }
        };
    }
    let report = match cli.check_determinism {
        None => run(SimOptions {
            leak_at_end: true,
            ..o
        }),
        Some(DeterminismMode::InProcess) => match check_determinism(o) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{e}");
                return 1;
            }
        },
        Some(DeterminismMode::Children) => {
            let exe = match std::env::current_exe() {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("cannot find the current executable: {e}");
                    return 1;
                }
            };
            let mut child_args = vec!["sim".to_string()];
            child_args.extend(
                args.iter()
                    .filter(|a| !a.starts_with("--check-determinism") && *a != "--json")
                    .cloned(),
            );
            if !cli.seed_given {
                child_args.extend(["--seed".to_string(), o.seed.to_string()]);
            }
            return match check_determinism_in_children(&exe, &child_args) {
                Ok(hash) => {
                    println!("seed {}: deterministic, trace {hash:016x}", o.seed);
                    0
                }
                Err(e) => {
                    eprintln!("{e}");
                    1
                }
            };
        }
    };
    if cli.json {
        println!("{}", serde_json::to_string(&report).unwrap_or_default());
    } else {
        print_human(&report);
    }
    i32::from(!report.passed())
}
