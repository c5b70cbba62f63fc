//! `plateau bench chronos`: many jobs due every minute on a local in-process cluster (a
//! master, one real slave running real processes in cgroups, Chronos), measuring how late each
//! scheduled instant's task starts and whether every instant ran exactly once.
//!
//! This is a benchmark: it reads the real clock and touches the file system, unlike the pure
//! cores. The cluster lives on one node without network transport (the processes talk among
//! themselves), so the figures are Chronos', the master's and the slave's, not QUIC's.
//!
//! The instants of the jobs are spread evenly over each minute (job `i` of `n` is due at
//! `:00 + i·60/n s`), as cron jobs of many users are. The lag of an instant is the time from
//! the instant to Chronos learning that its task is running (`TASK_RUNNING`). An instant is
//! missed when no successful run of it is in the job's history once the schedule window is
//! over (plus a grace period); duplicated when it has more than one history entry, or when
//! the slave launched more tasks than Chronos has runs (each launched task has its own sandbox
//! directory, counted on disk).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use plateau_runtime::{Node, NodeConfig, Upid};
use serde::Serialize;

use crate::http::{start, StartConfig};
use crate::job::{format_timestamp, Job};
use crate::scheduler::{ChronosProcess, PostKind};
use crate::store::{RunOutcomeKind, Trigger};

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Number of jobs, each due once a minute.
    pub jobs: usize,
    /// Minutes of schedule measured.
    pub minutes: u32,
    /// Scratch directory (created; removed at the end).
    pub work_dir: PathBuf,
    /// The slave's task supervisor program (the `plateau` binary).
    pub supervisor: PathBuf,
    /// Its arguments before the task's (`supervise`).
    pub supervisor_args: Vec<std::ffi::OsString>,
}

/// The figures, as `plateau bench chronos --json` prints them.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Jobs.
    pub jobs: usize,
    /// Minutes of schedule.
    pub minutes: u32,
    /// Scheduled instants in the window (jobs × minutes).
    pub instants: usize,
    /// Median lag from an instant to its task running, in ms.
    pub lag_ms_p50: f64,
    /// 99th percentile of that lag, in ms.
    pub lag_ms_p99: f64,
    /// Largest lag, in ms.
    pub lag_ms_max: f64,
    /// Instants without a successful run.
    pub missed: usize,
    /// Instants that ran more than once (see the module docs).
    pub duplicated: usize,
    /// Tasks the slave launched (sandbox directories).
    pub launched: usize,
    /// Wall time of the whole benchmark, in seconds.
    pub wall_s: f64,
}

/// Benchmark failures.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Setting up the cluster failed.
    #[error("setting up the cluster: {0}")]
    Setup(String),
}

fn setup<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> BenchError + '_ {
    move |e| BenchError::Setup(format!("{what}: {e}"))
}

fn wall_now() -> DateTime<Utc> {
    DateTime::<Utc>::from(SystemTime::now()) // determinism-ok: benchmark
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Counts the task sandboxes under a slave's work dir
/// (`slaves/*/frameworks/*/executors/<task>`).
fn count_sandboxes(slave_work: &Path) -> usize {
    let list = |p: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(p)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    };
    let mut n = 0;
    for slave in list(&slave_work.join("slaves")) {
        for fw in list(&slave.join("frameworks")) {
            n += list(&fw.join("executors")).len();
        }
    }
    n
}

/// Runs the benchmark (see the module docs). Must be called inside an actix system; takes
/// about `minutes + 1` minutes of wall time.
pub async fn run(config: BenchConfig) -> Result<BenchReport, BenchError> {
    let began = std::time::Instant::now(); // determinism-ok: benchmark
    std::fs::create_dir_all(&config.work_dir).map_err(setup("creating the work dir"))?;
    let node = Node::start(NodeConfig::local("127.0.0.1", 15050, 1)).map_err(setup("node"))?;
    let master_upid = Upid::new("master", node.addr());
    let master_config = plateau_master::MasterConfig {
        hostname: "127.0.0.1".into(),
        seed: 1,
        ..Default::default()
    };
    let _master = plateau_master::start(&node, master_config, &config.work_dir.join("master"))
        .await
        .map_err(setup("master"))?;
    let slave_work = config.work_dir.join("slave");
    let mut slave_config =
        plateau_slave::SlaveConfig::new(master_upid.clone(), &slave_work, &config.supervisor);
    slave_config.supervisor_args = config.supervisor_args.clone();
    slave_config.hostname = Some("127.0.0.1".into());
    slave_config.resources = Some("cpus:64;mem:65536;disk:100000;ports:[31000-31099]".into());
    let slave = plateau_slave::start(&node, slave_config).map_err(setup("slave"))?;
    let mut start_config = StartConfig::new(config.work_dir.join("chronos"), master_upid);
    start_config.http_listen = "127.0.0.1:0".parse().expect("a socket address");
    let chronos = start(&node, start_config).map_err(setup("chronos"))?;

    // The first instants 20 s from now (time to create the jobs), rounded to the second.
    let now_ms = wall_now().timestamp_millis();
    let base_ms = (now_ms / 1000 + 20) * 1000;
    let spacing_ms = 60_000 / config.jobs.max(1) as i64;
    let mut starts = BTreeMap::new();
    for i in 0..config.jobs {
        let name = format!("bench-{i:04}");
        let first = DateTime::<Utc>::from_timestamp_millis(base_ms + i as i64 * spacing_ms)
            .expect("a valid instant");
        let mut job = Job::new(&name, "true");
        job.schedule = Some(format!(
            "R{}/{}/PT1M",
            config.minutes,
            format_timestamp(first)
        ));
        job.cpus = 0.01;
        job.mem = 32.0;
        job.disk = 0.0;
        let posted = chronos
            .scheduler
            .call(move |p: &mut ChronosProcess, ctx| {
                let (s, mut d) = p.scheduler_and_driver(ctx);
                s.upsert_job(&mut d, job, PostKind::Iso8601)
                    .map_err(|e| e.to_string())
            })
            .await
            .map_err(setup("posting a job"))?;
        posted.map_err(setup("posting a job"))?;
        starts.insert(name, first);
    }

    // Each job repeats `minutes` times. Wait for the window (the last instant of the last minute)
    // plus a grace period, or until no run of the window is active any more.
    let window_end_ms = base_ms + i64::from(config.minutes) * 60_000;
    let grace = Duration::from_secs(60);
    let instants = config.jobs * config.minutes as usize;
    loop {
        actix_web::rt::time::sleep(Duration::from_secs(1)).await;
        let now = wall_now().timestamp_millis();
        if now > window_end_ms + grace.as_millis() as i64 {
            break;
        }
        if now > window_end_ms {
            let limit = window_end_ms;
            let done = chronos
                .scheduler
                .call(move |p: &mut ChronosProcess, _| {
                    p.scheduler()
                        .runs()
                        .all(|r| r.instant.timestamp_millis() >= limit)
                })
                .await
                .unwrap_or(false);
            if done {
                break;
            }
        }
    }

    let window_end = DateTime::<Utc>::from_timestamp_millis(window_end_ms).expect("an instant");
    let histories = chronos
        .scheduler
        .call(move |p: &mut ChronosProcess, _| {
            let s = p.scheduler();
            s.jobs()
                .iter()
                .map(|j| (j.name.clone(), s.history(&j.name)))
                .collect::<BTreeMap<_, _>>()
        })
        .await
        .map_err(setup("reading the history"))?;
    let mut lags = Vec::new();
    let mut missed = 0;
    let mut duplicated = 0;
    let mut runs_in_history = 0;
    for (name, first) in &starts {
        let history = histories.get(name).cloned().unwrap_or_default();
        runs_in_history += history.len();
        let mut by_instant: BTreeMap<DateTime<Utc>, Vec<_>> = BTreeMap::new();
        for h in history.iter().filter(|h| h.trigger == Trigger::Schedule) {
            by_instant.entry(h.instant).or_default().push(h);
        }
        for k in 0..config.minutes {
            let instant = *first + chrono::Duration::minutes(i64::from(k));
            if instant >= window_end {
                break;
            }
            match by_instant.get(&instant) {
                Some(entries) => {
                    if entries.len() > 1 {
                        duplicated += 1;
                    }
                    match entries
                        .iter()
                        .find(|e| e.outcome == RunOutcomeKind::Success)
                    {
                        Some(e) => {
                            if let Some(started) = e.started_at {
                                lags.push((started - instant).num_milliseconds() as f64);
                            }
                        }
                        None => missed += 1,
                    }
                }
                None => missed += 1,
            }
        }
    }
    let launched = count_sandboxes(&slave_work);
    // Launches the history does not account for (at most one per run, counting retries).
    duplicated += launched.saturating_sub(runs_in_history);
    lags.sort_by(|a, b| a.total_cmp(b));

    let _ = slave.call(|s, _| s.destroy_all_tasks()).await;
    chronos.server.stop(true).await;
    node.shutdown();
    plateau_slave::remove_slave_cgroups(&slave_work);
    let _ = std::fs::remove_dir_all(&config.work_dir);

    Ok(BenchReport {
        jobs: config.jobs,
        minutes: config.minutes,
        instants,
        lag_ms_p50: percentile(&lags, 50.0),
        lag_ms_p99: percentile(&lags, 99.0),
        lag_ms_max: lags.last().copied().unwrap_or(0.0),
        missed,
        duplicated,
        launched,
        wall_s: began.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }
}
