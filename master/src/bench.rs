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
use crate::ids::{FrameworkId, SlaveId};
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
