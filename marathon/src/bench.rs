//! `plateau bench launch`: launch latency of a running Marathon, measured through its REST API
//! only — from `POST /v2/apps` of an app of `instances` trivial tasks (`sleep 600`) to each task
//! RUNNING (its `startedAt`, stamped by Marathon when the RUNNING update arrives), then the app
//! is deleted and its tasks killed.
//!
//! This is a benchmark driver, not a pure core: it reads the wall clock (the same clock
//! Marathon stamps `startedAt` with, on the same host) and does HTTP.

use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};

use crate::error::Error;

/// What `plateau bench launch` reports.
#[derive(Debug, Clone, Serialize)]
pub struct LaunchReport {
    /// Tasks launched.
    pub instances: u32,
    /// Median time from `POST /v2/apps` to a task RUNNING, in milliseconds.
    pub p50_ms: f64,
    /// 99th percentile of the same.
    pub p99_ms: f64,
    /// The slowest task.
    pub max_ms: f64,
    /// Median time from `POST /v2/apps` to Marathon's launch of a task (its `stagedAt`: the
    /// offer came and LaunchTasks went to the master), in milliseconds. The rest of `p50_ms`
    /// is the launch on the slave and the status updates back.
    pub staged_p50_ms: f64,
    /// 99th percentile of the same.
    pub staged_p99_ms: f64,
}

fn err(message: impl Into<String>) -> Error {
    Error::Bench {
        message: message.into(),
    }
}

fn now_unix_ms() -> i64 {
    std::time::SystemTime::now() // determinism-ok: benchmark timing
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The `q`-quantile (0..=1) of sorted `values`, nearest rank.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn get_json(url: &str) -> Option<Value> {
    reqwest::get(url).await.ok()?.json().await.ok()
}

/// Wait (at most `limit`) until the Marathon at `base` answers and is registered with its
/// master (`GET /v2/info` shows a framework id) and the master at `master` (`http://host:port`)
/// has `slaves` activated slaves.
pub async fn wait_ready(
    base: &str,
    master: &str,
    slaves: usize,
    limit: Duration,
) -> Result<(), Error> {
    let deadline = bench_now() + limit;
    loop {
        let registered = get_json(&format!("{base}/v2/info"))
            .await
            .is_some_and(|i| i["frameworkId"].as_str().is_some_and(|id| !id.is_empty()));
        let slaves_up = get_json(&format!("{master}/master/state"))
            .await
            .is_some_and(|s| s["activated_slaves"].as_f64() == Some(slaves as f64));
        if registered && slaves_up {
            return Ok(());
        }
        if bench_now() >= deadline {
            return Err(err(format!("Marathon at {base} not ready after {limit:?}")));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Launch `instances` tasks of `sleep 600` on the Marathon at `base` (`http://host:port`),
/// wait (at most `limit`) until all are RUNNING, report the latencies, delete the app and
/// wait until its tasks are gone.
pub async fn launch(base: &str, instances: u32, limit: Duration) -> Result<LaunchReport, Error> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| err(e.to_string()))?;
    let app_id = format!("/bench-launch-{}", now_unix_ms());
    let tasks_url = format!("{base}/v2/apps{app_id}/tasks");
    let app = json!({
        "id": app_id,
        "cmd": "sleep 600",
        "cpus": 0.01,
        "mem": 8,
        "disk": 0,
        "instances": instances,
        "portDefinitions": [],
    });
    let posted_ms = now_unix_ms();
    let resp = client
        .post(format!("{base}/v2/apps"))
        .json(&app)
        .send()
        .await
        .map_err(|e| err(format!("POST /v2/apps: {e}")))?;
    if resp.status().as_u16() != 201 {
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        return Err(err(format!("POST /v2/apps answered {status}: {body}")));
    }
    let deadline = bench_now() + limit;
    let result = loop {
        let tasks: Vec<Value> = match client.get(&tasks_url).send().await {
            Ok(r) => r
                .json::<Value>()
                .await
                .ok()
                .and_then(|v| v["tasks"].as_array().cloned())
                .unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        let running: Vec<&Value> = tasks
            .iter()
            .filter(|t| t["state"] == "TASK_RUNNING")
            .collect();
        let since_post = |field: &str| -> Vec<f64> {
            let mut ms: Vec<f64> = running
                .iter()
                .filter_map(|t| t[field].as_str())
                .filter_map(|s| crate::time::parse_timestamp(s).ok())
                .map(|at| (at - posted_ms).max(0) as f64)
                .collect();
            ms.sort_by(f64::total_cmp);
            ms
        };
        let started = since_post("startedAt");
        if started.len() >= instances as usize {
            let staged = since_post("stagedAt");
            break Ok(LaunchReport {
                instances,
                p50_ms: quantile(&started, 0.50),
                p99_ms: quantile(&started, 0.99),
                max_ms: started.last().copied().unwrap_or(0.0),
                staged_p50_ms: quantile(&staged, 0.50),
                staged_p99_ms: quantile(&staged, 0.99),
            });
        }
        if bench_now() >= deadline {
            break Err(err(format!(
                "only {} of {instances} tasks RUNNING after {limit:?}",
                started.len()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Clean up whatever happened: scale to 0 (kills the tasks), wait until Marathon has seen
    // them all die, then delete the app.
    let _ = client
        .put(format!("{base}/v2/apps{app_id}?force=true"))
        .json(&json!({"instances": 0}))
        .send()
        .await;
    let cleanup_deadline = bench_now() + Duration::from_secs(60);
    while bench_now() < cleanup_deadline {
        let gone = match client.get(&tasks_url).send().await {
            Ok(r) if r.status().as_u16() == 404 => true,
            Ok(r) => r
                .json::<Value>()
                .await
                .ok()
                .is_some_and(|v| v["tasks"].as_array().is_some_and(|t| t.is_empty())),
            Err(_) => false,
        };
        if gone {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = client
        .delete(format!("{base}/v2/apps{app_id}?force=true"))
        .send()
        .await;
    result
}

/// The clock of the benchmark (real time, measured).
fn bench_now() -> tokio::time::Instant {
    tokio::time::Instant::now() // determinism-ok: benchmark timing
}

#[cfg(test)]
mod tests {
    use super::quantile;

    #[test]
    fn nearest_rank_quantiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 50.0);
        assert_eq!(quantile(&v, 0.99), 99.0);
        assert_eq!(quantile(&v, 1.0), 100.0);
        assert_eq!(quantile(&[7.0], 0.99), 7.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }
}
