//! Run statistics for `GET /scheduler/job/stat/{name}` and `GET /scheduler/stats/{percentile}`,
//! in Chronos' JSON shapes.
//!
//! - [`JobStats`] keeps, per job, the most recent run durations (at most
//!   [`limits::RUN_DURATIONS_PER_JOB_MAX`]) and task records (at most
//!   [`limits::TASK_STAT_HISTORY_PER_JOB_MAX`]).
//! - The histogram holds durations in **milliseconds**, as Chronos' Dropwizard histogram did;
//!   `/stats/{p}` shows **seconds** (`ms / 1000`).
//! - Percentiles are computed exactly like Dropwizard's `Snapshot.getValue(q)`: position
//!   `q·(n+1)` in the sorted values, linearly interpolated, clamped to the first and last value.
//! - `mean` is the true mean. Chronos showed the median there (a bug clients do not check).
//! - A job without runs shows all values `0.0`, `count: 0` and `taskStatHistory: []`.
use std::collections::VecDeque;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::limits;

/// A task's status as the stats endpoint shows it (Chronos' `ChronosTaskStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum TaskStatus {
    /// Finished successfully.
    Success,
    /// Failed.
    Fail,
    /// Still running.
    Running,
    /// Not started.
    Idle,
}

impl TaskStatus {
    fn is_terminal(self) -> bool {
        matches!(self, TaskStatus::Success | TaskStatus::Fail)
    }
}

/// One task of a job, as recorded for `taskStatHistory`.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRecord {
    /// Mesos task ID (`ct:<dueMillis>:<attempt>:<job>:<arguments>`).
    pub task_id: String,
    /// The job's name.
    pub job_name: String,
    /// The agent the task ran on.
    pub slave_id: String,
    /// When the task started, if known.
    pub start: Option<DateTime<Utc>>,
    /// When the task ended, if it has.
    pub end: Option<DateTime<Utc>>,
    /// Current status.
    pub status: TaskStatus,
    /// Elements processed, for `dataProcessingJobType` jobs.
    pub num_elements_processed: Option<i64>,
}

/// The histogram object of `/job/stat/{name}`: durations in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Histogram {
    /// 75th percentile.
    #[serde(rename = "75thPercentile")]
    pub p75: f64,
    /// 95th percentile.
    #[serde(rename = "95thPercentile")]
    pub p95: f64,
    /// 98th percentile.
    #[serde(rename = "98thPercentile")]
    pub p98: f64,
    /// 99th percentile.
    #[serde(rename = "99thPercentile")]
    pub p99: f64,
    /// Median.
    pub median: f64,
    /// Mean.
    pub mean: f64,
    /// Number of durations the values are computed from.
    pub count: u64,
}

/// One `taskStatHistory` entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskStatView {
    /// Task ID.
    pub task_id: String,
    /// Job name.
    pub job_name: String,
    /// Agent ID.
    pub slave_id: String,
    /// `MM/dd/yy HH:mm:ss` (UTC) or `N/A`.
    pub start_time: String,
    /// `MM/dd/yy HH:mm:ss` (UTC) or `N/A`.
    pub end_time: String,
    /// Like `1h2m5s`, when both ends are known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// `Success`, `Fail`, `Running` or `Idle`.
    pub status: TaskStatus,
    /// Elements processed, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_elements_processed: Option<i64>,
}

/// The body of `GET /scheduler/job/stat/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobStatResponse {
    /// Duration histogram (milliseconds).
    pub histogram: Histogram,
    /// Recent tasks, oldest first.
    pub task_stat_history: Vec<TaskStatView>,
}

/// Which statistic `GET /scheduler/stats/{percentile}` ranks by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Percentile {
    /// `99thPercentile`.
    P99,
    /// `98thPercentile`.
    P98,
    /// `95thPercentile`.
    P95,
    /// `75thPercentile`.
    P75,
    /// `median`.
    Median,
    /// `mean`.
    Mean,
}

impl FromStr for Percentile {
    type Err = String;

    fn from_str(text: &str) -> Result<Percentile, String> {
        Ok(match text {
            "99thPercentile" => Percentile::P99,
            "98thPercentile" => Percentile::P98,
            "95thPercentile" => Percentile::P95,
            "75thPercentile" => Percentile::P75,
            "median" => Percentile::Median,
            "mean" => Percentile::Mean,
            other => {
                return Err(format!(
                    "unknown statistic '{other}': use 99thPercentile, 98thPercentile, \
                     95thPercentile, 75thPercentile, median or mean"
                ))
            }
        })
    }
}

impl Histogram {
    fn value(&self, which: Percentile) -> f64 {
        match which {
            Percentile::P99 => self.p99,
            Percentile::P98 => self.p98,
            Percentile::P95 => self.p95,
            Percentile::P75 => self.p75,
            Percentile::Median => self.median,
            Percentile::Mean => self.mean,
        }
    }
}

/// One entry of `GET /scheduler/stats/{percentile}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PercentileEntry {
    /// The job.
    pub job_name_label: String,
    /// The statistic, in seconds.
    pub time: f64,
}

/// Dropwizard's `Snapshot.getValue(quantile)` over sorted values; 0 when empty.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    assert!((0.0..=1.0).contains(&q), "quantile {q} outside [0, 1]");
    debug_assert!(sorted.windows(2).all(|w| w[0] <= w[1]));
    if sorted.is_empty() {
        return 0.0;
    }
    let position = q * (sorted.len() + 1) as f64;
    if position < 1.0 {
        return sorted[0];
    }
    if position >= sorted.len() as f64 {
        return sorted[sorted.len() - 1];
    }
    let index = position.floor() as usize;
    let lower = sorted[index - 1];
    let upper = sorted[index];
    lower + (position - position.floor()) * (upper - lower)
}

/// Formats a duration as Joda's period formatter in Chronos did: hours (unbounded), minutes when
/// not zero, seconds always (`26h3m4s`, `1h0s`, `5s`).
pub fn format_duration(duration: chrono::TimeDelta) -> String {
    let total = duration.num_seconds().max(0);
    let (hours, minutes, seconds) = (total / 3600, (total % 3600) / 60, total % 60);
    let mut out = String::new();
    if hours != 0 {
        out.push_str(&format!("{hours}h"));
    }
    if minutes != 0 {
        out.push_str(&format!("{minutes}m"));
    }
    out.push_str(&format!("{seconds}s"));
    out
}

fn format_time(instant: Option<DateTime<Utc>>) -> String {
    instant.map_or_else(
        || "N/A".to_string(),
        |t| t.format("%m/%d/%y %H:%M:%S").to_string(),
    )
}

/// Statistics of one job's runs, bounded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobStats {
    durations_ms: VecDeque<u64>,
    history: VecDeque<TaskRecord>,
}

impl JobStats {
    /// Empty statistics (a fresh job).
    pub fn new() -> JobStats {
        JobStats::default()
    }

    /// Records the duration of a successful run, in milliseconds; the oldest is dropped past
    /// [`limits::RUN_DURATIONS_PER_JOB_MAX`].
    pub fn record_duration_ms(&mut self, duration_ms: u64) {
        if self.durations_ms.len() == limits::RUN_DURATIONS_PER_JOB_MAX {
            self.durations_ms.pop_front();
        }
        self.durations_ms.push_back(duration_ms);
    }

    /// Records or updates a task. An update keeps the earliest start and never leaves a terminal
    /// status (as Chronos' `TaskStat`); the oldest task is dropped past
    /// [`limits::TASK_STAT_HISTORY_PER_JOB_MAX`].
    pub fn record_task(&mut self, record: TaskRecord) {
        if let Some(existing) = self
            .history
            .iter_mut()
            .find(|r| r.task_id == record.task_id)
        {
            existing.start = match (existing.start, record.start) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            existing.end = record.end.or(existing.end);
            if !existing.status.is_terminal() {
                existing.status = record.status;
            }
            existing.num_elements_processed = record
                .num_elements_processed
                .or(existing.num_elements_processed);
            if !record.slave_id.is_empty() {
                existing.slave_id = record.slave_id;
            }
            return;
        }
        if self.history.len() == limits::TASK_STAT_HISTORY_PER_JOB_MAX {
            self.history.pop_front();
        }
        self.history.push_back(record);
    }

    /// The duration histogram (milliseconds).
    pub fn histogram(&self) -> Histogram {
        let mut sorted: Vec<f64> = self.durations_ms.iter().map(|&d| d as f64).collect();
        sorted.sort_by(f64::total_cmp);
        let count = sorted.len();
        let mean = if count == 0 {
            0.0
        } else {
            sorted.iter().sum::<f64>() / count as f64
        };
        Histogram {
            p75: quantile(&sorted, 0.75),
            p95: quantile(&sorted, 0.95),
            p98: quantile(&sorted, 0.98),
            p99: quantile(&sorted, 0.99),
            median: quantile(&sorted, 0.5),
            mean,
            count: count as u64,
        }
    }

    /// The body of `GET /scheduler/job/stat/{name}`.
    pub fn to_response(&self) -> JobStatResponse {
        JobStatResponse {
            histogram: self.histogram(),
            task_stat_history: self
                .history
                .iter()
                .map(|r| TaskStatView {
                    task_id: r.task_id.clone(),
                    job_name: r.job_name.clone(),
                    slave_id: r.slave_id.clone(),
                    start_time: format_time(r.start),
                    end_time: format_time(r.end),
                    duration: match (r.start, r.end) {
                        (Some(start), Some(end)) => Some(format_duration(end - start)),
                        _ => None,
                    },
                    status: r.status,
                    num_elements_processed: r.num_elements_processed,
                })
                .collect(),
        }
    }
}

/// The body of `GET /scheduler/stats/{percentile}`: every given job (a job without stats counts
/// as 0), its statistic in seconds, largest first; ties in name order.
pub fn percentile_ranking<'a>(
    jobs: impl IntoIterator<Item = (&'a str, Option<&'a JobStats>)>,
    which: Percentile,
) -> Vec<PercentileEntry> {
    let mut entries: Vec<PercentileEntry> = jobs
        .into_iter()
        .map(|(name, stats)| PercentileEntry {
            job_name_label: name.to_string(),
            time: stats.map_or(0.0, |s| s.histogram().value(which)) / 1000.0,
        })
        .collect();
    entries.sort_by(|a, b| {
        b.time
            .total_cmp(&a.time)
            .then_with(|| a.job_name_label.cmp(&b.job_name_label))
    });
    entries
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn fresh_job_has_the_shape_clients_check() {
        let body = serde_json::to_value(JobStats::new().to_response()).unwrap();
        assert_eq!(
            body,
            json!({
                "histogram": {"75thPercentile": 0.0, "95thPercentile": 0.0, "98thPercentile": 0.0,
                              "99thPercentile": 0.0, "median": 0.0, "mean": 0.0, "count": 0},
                "taskStatHistory": []
            })
        );
        let ranking = percentile_ranking([("myjob", None)], Percentile::P99);
        assert_eq!(
            serde_json::to_value(ranking).unwrap(),
            json!([{"jobNameLabel": "myjob", "time": 0.0}])
        );
    }

    #[test]
    fn quantiles_follow_dropwizard() {
        let values = [1.0, 2.0, 3.0, 4.0];
        // position 0.5·5 = 2.5 → between 2 and 3.
        assert_eq!(quantile(&values, 0.5), 2.5);
        assert_eq!(quantile(&values, 0.75), 3.75);
        assert_eq!(quantile(&values, 0.99), 4.0);
        assert_eq!(quantile(&values, 0.1), 1.0);
        assert_eq!(quantile(&[7.0], 0.5), 7.0);
    }

    #[test]
    fn ranking_is_in_seconds_largest_first() {
        let mut slow = JobStats::new();
        slow.record_duration_ms(90_000);
        let mut quick = JobStats::new();
        quick.record_duration_ms(1_500);
        let ranking = percentile_ranking(
            [
                ("quick", Some(&quick)),
                ("slow", Some(&slow)),
                ("new", None),
            ],
            "median".parse().unwrap(),
        );
        let names: Vec<_> = ranking
            .iter()
            .map(|e| (e.job_name_label.as_str(), e.time))
            .collect();
        assert_eq!(names, [("slow", 90.0), ("quick", 1.5), ("new", 0.0)]);
        assert!("p42".parse::<Percentile>().is_err());
    }

    #[test]
    fn task_history_formats_like_chronos_and_is_bounded() {
        let start = DateTime::parse_from_rfc3339("2024-03-08T16:57:17Z")
            .unwrap()
            .to_utc();
        let mut stats = JobStats::new();
        stats.record_task(TaskRecord {
            task_id: "ct:1:0:job:".to_string(),
            job_name: "job".to_string(),
            slave_id: "s1".to_string(),
            start: Some(start),
            end: None,
            status: TaskStatus::Running,
            num_elements_processed: None,
        });
        stats.record_task(TaskRecord {
            task_id: "ct:1:0:job:".to_string(),
            job_name: "job".to_string(),
            slave_id: String::new(),
            start: None,
            end: Some(start + chrono::TimeDelta::seconds(3725)),
            status: TaskStatus::Success,
            num_elements_processed: Some(10),
        });
        let body = serde_json::to_value(stats.to_response()).unwrap();
        assert_eq!(
            body["taskStatHistory"],
            json!([{"taskId": "ct:1:0:job:", "jobName": "job", "slaveId": "s1",
                    "startTime": "03/08/24 16:57:17", "endTime": "03/08/24 17:59:22",
                    "duration": "1h2m5s", "status": "Success", "numElementsProcessed": 10}])
        );
        for i in 0..(limits::TASK_STAT_HISTORY_PER_JOB_MAX + 5) {
            stats.record_task(TaskRecord {
                task_id: format!("t{i}"),
                job_name: "job".to_string(),
                slave_id: String::new(),
                start: None,
                end: None,
                status: TaskStatus::Idle,
                num_elements_processed: None,
            });
        }
        let response = stats.to_response();
        assert_eq!(
            response.task_stat_history.len(),
            limits::TASK_STAT_HISTORY_PER_JOB_MAX
        );
        assert_eq!(response.task_stat_history[0].start_time, "N/A");
        assert_eq!(format_duration(chrono::TimeDelta::seconds(5)), "5s");
        assert_eq!(format_duration(chrono::TimeDelta::seconds(3600)), "1h0s");
        assert_eq!(
            format_duration(chrono::TimeDelta::seconds(93_784)),
            "26h3m4s"
        );
    }

    proptest! {
        #[test]
        fn histogram_is_ordered_and_bounded(durations in proptest::collection::vec(0u64..10_000_000, 0..2_000)) {
            let mut stats = JobStats::new();
            for d in &durations {
                stats.record_duration_ms(*d);
            }
            let h = stats.histogram();
            let kept = durations.len().min(limits::RUN_DURATIONS_PER_JOB_MAX);
            prop_assert_eq!(h.count, kept as u64);
            prop_assert!(h.median <= h.p75 && h.p75 <= h.p95 && h.p95 <= h.p98 && h.p98 <= h.p99);
            let recent = &durations[durations.len() - kept..];
            let max = recent.iter().copied().max().unwrap_or(0) as f64;
            let min = recent.iter().copied().min().unwrap_or(0) as f64;
            prop_assert!(h.p99 <= max && h.median >= min);
            prop_assert!(h.mean >= min && h.mean <= max);
        }
    }
}
