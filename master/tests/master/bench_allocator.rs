//! The allocator benchmark's report is well formed. The measurement itself is
//! `plateau bench allocator --agents 10000 --frameworks 1000 --json` (release build).

use plateau_master::bench::bench_allocator;

#[test]
fn small_benchmark_reports_consistent_numbers() {
    let report = bench_allocator(200, 20, 3);
    assert_eq!(
        (report.agents, report.frameworks, report.offers),
        (200, 20, 200)
    );
    assert!(report.cycle_ms_median <= report.cycle_ms_p99);
    let json = serde_json::to_value(&report).unwrap();
    let keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys.len(),
        5,
        "exactly agents, frameworks, offers, cycle_ms_median, cycle_ms_p99: {keys:?}"
    );
}
