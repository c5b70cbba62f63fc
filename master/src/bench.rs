//! Allocator benchmark, shaped like Mesos' `HierarchicalAllocator_BENCHMARK_Test`.
//!
//! [`bench_allocator`] registers `agents` slaves of `cpus:24;mem:4096;disk:4096;ports:[31000-32000]`
//! and `frameworks` frameworks spread round-robin over [`BENCH_ROLES`] roles, then runs one
//! untimed warm-up cycle followed by `cycles` timed ones. In every cycle all agents are free and
//! every framework wants offers; the time of the single [`Allocator::allocate`] call is
//! measured, then every allocation is recovered without a filter. Mesos 1.8 needs about 1.1 s
//! for one cycle of 10,000 agents × 1,000 frameworks.
//!
//! This module reads the wall clock (it measures), so it is not part of the pure core; run it in
//! release builds.
//!
//! ```
//! let report = plateau_master::bench::bench_allocator(50, 5, 2);
//! assert_eq!(report.agents, 50);
//! assert_eq!(report.offers, 50); // every agent offered once per cycle
//! println!("{}", serde_json::to_string(&report).unwrap());
//! ```

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::allocator::{Allocator, AllocatorConfig};
use crate::ids::{FrameworkId, SlaveId, TaskId};
use crate::resources::{Ranges, Resources};

/// Number of roles the benchmark's frameworks are spread over.
pub const BENCH_ROLES: usize = 5;

/// What [`bench_allocator`] measured. Serializes to JSON with exactly these keys.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AllocatorBenchReport {
    /// Slaves registered.
    pub agents: usize,
    /// Frameworks registered.
    pub frameworks: usize,
    /// Offers made per timed cycle (mean over the cycles, rounded down).
    pub offers: usize,
    /// Median wall time of one `allocate` call, in milliseconds.
    pub cycle_ms_median: f64,
    /// 99th percentile (nearest rank) wall time of one `allocate` call, in milliseconds.
    pub cycle_ms_p99: f64,
}

/// Runs the allocator benchmark (see the [module docs](self)). `cycles` is at least 1.
pub fn bench_allocator(agents: usize, frameworks: usize, cycles: usize) -> AllocatorBenchReport {
    let cycles = cycles.max(1);
    let mut allocator = Allocator::new(AllocatorConfig::default());
    let agent = Resources::new(24.0, 4096.0, 4096.0)
        .expect("valid benchmark resources")
        .with_ports(Ranges::single(31000, 32000));
    for i in 0..agents {
        allocator
            .add_slave(SlaveId::new(format!("S{i}")), agent.clone(), Vec::new())
            .expect("benchmark slave registers");
    }
    for i in 0..frameworks {
        allocator
            .add_framework(
                FrameworkId::new(format!("F{i}")),
                &format!("role{}", i % BENCH_ROLES),
            )
            .expect("benchmark framework registers");
    }

    let mut times_ms = Vec::with_capacity(cycles);
    let mut offers_total = 0;
    for cycle in 0..=cycles {
        let now = Duration::from_secs(cycle as u64);
        // determinism-ok: benchmark timing
        let start = Instant::now(); // determinism-ok: benchmark timing
        let allocations = allocator.allocate(now);
        let elapsed = start.elapsed();
        if cycle > 0 {
            times_ms.push(elapsed.as_secs_f64() * 1000.0);
            offers_total += allocations.len();
        }
        for allocation in &allocations {
            allocator
                .recover_resources(
                    &allocation.framework,
                    &allocation.slave,
                    &allocation.resources,
                    None,
                    now,
                )
                .expect("recovering what was just allocated");
        }
    }
    times_ms.sort_by(f64::total_cmp);
    let rank = |q: f64| {
        times_ms[((q * times_ms.len() as f64).ceil() as usize).clamp(1, times_ms.len()) - 1]
    };
    AllocatorBenchReport {
        agents,
        frameworks,
        offers: offers_total / cycles,
        cycle_ms_median: rank(0.5),
        cycle_ms_p99: rank(0.99),
    }
}

/// What [`synthetic_cluster`] builds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntheticCluster {
    /// Agents, spread over 40 racks (`rack:rN`).
    pub agents: usize,
    /// Tasks, spread evenly over the agents and round-robin over the frameworks.
    pub tasks: usize,
    /// Frameworks (named `marathon`, `chronos`, then `framework-N`).
    pub frameworks: usize,
}

/// A master core holding a cluster of `spec.agents` agents running `spec.tasks` tasks, for the
/// web console's benchmark: built through the core's own handlers (frameworks register and
/// suppress their offers; each agent re-registers reporting its tasks as running), with their
/// actions discarded, so no message goes anywhere. The agents' and frameworks' addresses are
/// made up (under 10.0.0.0/8 and 127.0.0.1 port 1): a master hosting this core must not try
/// to reach them, so give it an agent timeout longer than the run (`config.agent_timeout`).
pub fn synthetic_cluster(
    spec: &SyntheticCluster,
    config: crate::core::MasterConfig,
    upid: plateau_runtime::Upid,
    wall_origin_secs: f64,
) -> crate::core::MasterCore {
    use crate::core::MasterCore;
    use crate::messages::{
        CommandInfo, FrameworkInfo, RegisterFrameworkMessage, ReregisterSlaveMessage, SlaveInfo,
        SlaveTask, SuppressOffersMessage, TaskInfo, TaskState,
    };
    use crate::resources::Attributes;
    use plateau_runtime::Upid;

    let mut core = MasterCore::new(
        config,
        Default::default(),
        "bench".to_string(),
        upid,
        wall_origin_secs,
    );
    let now = Duration::ZERO;
    let mut frameworks: Vec<(FrameworkId, Upid)> = Vec::new();
    for i in 0..spec.frameworks.max(1) {
        let name = match i {
            0 => "marathon".to_string(),
            1 => "chronos".to_string(),
            n => format!("framework-{n}"),
        };
        let pid: Upid = format!("scheduler-{i}@127.0.0.1:1")
            .parse()
            .expect("valid made-up address");
        let mut info = FrameworkInfo::new(&name);
        info.failover_timeout_secs = 604_800.0;
        core.handle_register_framework(
            now,
            &pid,
            RegisterFrameworkMessage {
                framework: info,
                fencing: None,
            },
        );
        let id = core
            .frameworks()
            .values()
            .find(|f| f.pid.as_ref() == Some(&pid))
            .map(|f| f.id.clone())
            .expect("the framework registered");
        core.handle_suppress_offers(
            now,
            &pid,
            SuppressOffersMessage {
                framework_id: id.clone(),
            },
        );
        frameworks.push((id, pid));
        core.drain_actions();
    }
    let per_agent = spec.tasks.div_ceil(spec.agents.max(1));
    let mut launched = 0usize;
    let task_resources = Resources::new(0.1, 64.0, 0.0).expect("valid benchmark task resources");
    let agent_resources = Resources::new(24.0, 65536.0, 409_600.0)
        .expect("valid benchmark agent resources")
        .with_ports(Ranges::single(31000, 32000));
    for a in 0..spec.agents {
        let ip = 10 << 24 | (a as u32 + 1);
        let ip = std::net::Ipv4Addr::from(ip);
        let pid: Upid = format!("slave(1)@{ip}:5051")
            .parse()
            .expect("valid made-up address");
        let slave_id = SlaveId::new(format!("bench-S{a}"));
        let mut tasks = Vec::new();
        let mut used = std::collections::BTreeSet::new();
        for _ in 0..per_agent {
            if launched >= spec.tasks {
                break;
            }
            let (framework_id, framework_pid) = &frameworks[launched % frameworks.len()];
            used.insert((framework_id.clone(), framework_pid.clone()));
            let task_id = format!("app-{}.task-{launched}", launched % 500);
            tasks.push(SlaveTask {
                framework_id: framework_id.clone(),
                task: TaskInfo {
                    name: format!("app-{}", launched % 500),
                    task_id: TaskId::new(&task_id),
                    slave_id: slave_id.clone(),
                    resources: task_resources.clone(),
                    command: CommandInfo::shell("sleep 3600"),
                    health_check: None,
                    labels: Default::default(),
                    kill_grace_period_secs: None,
                },
                state: TaskState::Running,
            });
            launched += 1;
        }
        let attributes =
            Attributes::parse(&format!("rack:r{}", a % 40)).expect("valid benchmark attributes");
        core.handle_reregister_slave(
            now,
            &pid,
            ReregisterSlaveMessage {
                slave_id,
                slave: SlaveInfo {
                    hostname: format!("agent-{a}.bench"),
                    port: 5051,
                    resources: agent_resources.clone(),
                    attributes,
                },
                tasks,
                frameworks: used.into_iter().collect(),
            },
        );
        core.drain_actions();
    }
    core
}
