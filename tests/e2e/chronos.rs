//! Chronos end to end: `plateau master`, a `plateau slave` and `plateau chronos` as separate
//! processes, driven through Chronos' HTTP API only. Jobs are real shell commands that append
//! their scheduled instant (`$CHRONOS_JOB_RUN_TIME`) and the time they ran to a file, so the
//! test can check "on time" and "exactly once per instant" from what actually ran.
//!
//! Two scenarios run in parallel (each with its own cluster): the main one (bad input → 400
//! naming the field; a job every 3 s runs on time; a dependent job runs after its parent;
//! run-now; kill -9 of Chronos at random points, several times, then restart on the same work
//! dir → one run per instant, no duplicates, no gaps) and the failing job (retries, then
//! `errorCount`), which has to wait for Chronos' failure-retry delay (60 s by default).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use super::support::{eventually, free_port, get_json, Cluster};

/// A master, one slave and Chronos, all on loopback addresses.
struct ChronosCluster {
    cluster: Cluster,
    chronos_args: Vec<String>,
    /// `http://host:port` of Chronos' API.
    api: String,
}

impl ChronosCluster {
    fn start(test: &str, slave_ip: &str) -> ChronosCluster {
        Self::start_with(test, slave_ip, &[])
    }

    /// A cluster whose Chronos gets `extra` flags.
    fn start_with(test: &str, slave_ip: &str, extra: &[&str]) -> ChronosCluster {
        let mut cluster = Cluster::new(test);
        let dir = cluster.dir.clone();
        let tls = cluster.tls().to_str().unwrap().to_string();
        let master = cluster.start_master();
        let listen = format!("{slave_ip}:{}", free_port(slave_ip));
        let work = dir.join("slave");
        cluster.slave_dirs.push(work.clone());
        cluster.spawn(
            "slave",
            &[
                "slave",
                "--master",
                &master,
                "--listen",
                &listen,
                "--work-dir",
                work.to_str().unwrap(),
                "--tls-dir",
                &tls,
                "--resources",
                "cpus:4;mem:2048;disk:1000;ports:[32000-32099]",
            ],
        );
        let chronos_listen = format!("127.0.0.1:{}", free_port("127.0.0.1"));
        let c_work = dir.join("chronos");
        let chronos_args: Vec<String> = [
            "chronos",
            "--master",
            &master,
            "--listen",
            &chronos_listen,
            "--work-dir",
            c_work.to_str().unwrap(),
            "--tls-dir",
            &tls,
        ]
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect();
        let mut c = ChronosCluster {
            cluster,
            chronos_args,
            api: format!("http://{chronos_listen}"),
        };
        c.spawn_chronos();
        c
    }

    fn dir(&self) -> &Path {
        &self.cluster.dir
    }

    fn spawn_chronos(&mut self) {
        let args: Vec<&str> = self.chronos_args.iter().map(String::as_str).collect();
        self.cluster.spawn("chronos", &args);
    }

    /// kill -9 Chronos and reap it.
    fn kill_chronos(&mut self) {
        self.cluster.signal("chronos", libc::SIGKILL);
        let mut child = self.cluster.children.remove("chronos").unwrap();
        let _ = child.wait();
    }

    async fn wait_up(&self) {
        let url = format!("{}/ping", self.api);
        eventually(Duration::from_secs(60), "Chronos answers /ping", || async {
            match reqwest::get(&url).await {
                Ok(r) => r.status().is_success(),
                Err(_) => false,
            }
        })
        .await;
    }

    async fn post_job(&self, path: &str, job: &Value) -> (u16, String) {
        let r = reqwest::Client::new()
            .post(format!("{}/scheduler/{path}", self.api))
            .json(job)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.text().await.unwrap_or_default())
    }

    async fn job_field(&self, name: &str, field: &str) -> Option<Value> {
        let jobs = get_json(&format!("{}/scheduler/jobs", self.api)).await?;
        jobs.as_array()?
            .iter()
            .find(|j| j["name"] == name)
            .map(|j| j[field].clone())
    }

    async fn count(&self, name: &str, field: &str) -> i64 {
        self.job_field(name, field)
            .await
            .and_then(|v| v.as_i64())
            .unwrap_or(-1)
    }

    fn logs(&self) -> String {
        format!(
            "--- chronos.log (last run) ---\n{}\n--- master.log ---\n{}",
            tail(&self.cluster.log("chronos"), 4000),
            tail(&self.cluster.log("master"), 2000)
        )
    }
}

fn tail(s: &str, n: usize) -> &str {
    let mut start = s.len().saturating_sub(n);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

fn epoch_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// RFC 3339 (UTC, milliseconds) of `ms` since the epoch, as Chronos writes instants.
fn rfc3339(ms: i64) -> String {
    // Days-to-civil (Howard Hinnant), to avoid a chrono dev-dependency in the root crate.
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// The command of a job that appends "<scheduled instant> <ms since the epoch now>" to `file`.
fn append_command(file: &Path) -> String {
    format!(
        "echo \"$CHRONOS_JOB_RUN_TIME $(date +%s%3N)\" >> {}",
        file.display()
    )
}

/// The lines of `file` as (instant, ran-at ms) pairs.
fn runs(file: &Path) -> Vec<(String, i64)> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (instant, ran) = l.split_once(' ')?;
            Some((instant.to_string(), ran.trim().parse().ok()?))
        })
        .collect()
}

/// A cheap pseudo-random number from the clock (no rand dev-dependency needed here).
fn jitter(max_ms: u64, salt: u64) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    let x = (nanos ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_mul(0x2545_F491_4F6C_DD1D);
    Duration::from_millis((x >> 11) % max_ms.max(1))
}

fn job(name: &str, command: String, schedule: Option<String>) -> Value {
    let mut j = json!({
        "name": name,
        "command": command,
        "cpus": 0.1,
        "mem": 32,
        "disk": 0,
        "retries": 0,
        "catchUp": "all",
    });
    if let Some(s) = schedule {
        j["schedule"] = json!(s);
    }
    j
}

#[test]
fn chronos_runs_jobs_on_time_exactly_once_across_kill_9() {
    actix_rt::System::new().block_on(async {
        let mut c = ChronosCluster::start("chronos-main", "127.0.0.2");
        c.wait_up().await;
        let dir: PathBuf = c.dir().to_path_buf();

        // Bad input: 400 naming the field.
        let (status, body) = c
            .post_job(
                "iso8601",
                &json!({"name": "bad", "command": "true", "schedule": "nonsense"}),
            )
            .await;
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("schedule"), "{body}");
        let (status, body) = c
            .post_job(
                "iso8601",
                &json!({"command": "true", "schedule": "R/2030-01-01T00:00:00Z/PT1M"}),
            )
            .await;
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("name"), "{body}");
        let (status, body) = c
            .post_job(
                "dependency",
                &json!({"name": "orphan", "command": "true", "parents": ["nope"]}),
            )
            .await;
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("parents"), "{body}");

        // A job every 3 s, starting 3 s from now; a dependent job; a run-now job.
        let period_ms = 3000;
        let start_ms = (epoch_ms() / 1000 + 3) * 1000;
        let tick_file = dir.join("tick.txt");
        let child_file = dir.join("child.txt");
        let manual_file = dir.join("manual.txt");
        let tick = job(
            "tick",
            append_command(&tick_file),
            Some(format!("R/{}/PT3S", rfc3339(start_ms))),
        );
        let (status, body) = c.post_job("iso8601", &tick).await;
        assert!(status < 300, "{status} {body}");
        let mut child = job("child", append_command(&child_file), None);
        child["parents"] = json!(["tick"]);
        let (status, body) = c.post_job("dependency", &child).await;
        assert!(status < 300, "{status} {body}");
        let manual = job(
            "manual",
            append_command(&manual_file),
            Some("R1/2099-01-01T00:00:00Z/PT1H".to_string()),
        );
        let (status, body) = c.post_job("iso8601", &manual).await;
        assert!(status < 300, "{status} {body}");

        // Run now.
        let r = reqwest::Client::new()
            .put(format!("{}/scheduler/job/manual", c.api))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "run-now: {}", r.status());
        eventually(Duration::from_secs(60), "the run-now job ran", || async {
            !runs(&manual_file).is_empty() && c.count("manual", "successCount").await == 1
        })
        .await;

        // On time: the first 4 instants ran, each within a few seconds of its instant.
        eventually(Duration::from_secs(90), "4 runs of tick", || async {
            runs(&tick_file).len() >= 4
        })
        .await;
        let first = runs(&tick_file);
        for (i, (instant, ran)) in first.iter().take(4).enumerate() {
            let due = start_ms + i as i64 * period_ms;
            assert_eq!(*instant, rfc3339(due), "run {i} of tick: {first:?}");
            let lag = ran - due;
            assert!(
                (-50..8000).contains(&lag),
                "run {i} of tick ran {lag} ms after its instant: {first:?}"
            );
        }
        eventually(
            Duration::from_secs(30),
            "successCount of tick ≥ 4",
            || async { c.count("tick", "successCount").await >= 4 },
        )
        .await;

        // The dependent job ran after its parent.
        eventually(Duration::from_secs(60), "the dependent job ran", || async {
            !runs(&child_file).is_empty()
        })
        .await;
        let child_runs = runs(&child_file);
        assert!(
            child_runs[0].1 >= first[0].1,
            "child ran before its parent: {child_runs:?} {first:?}"
        );

        // kill -9 Chronos at random points, several times, and restart it on the same work dir.
        for round in 0..4u64 {
            tokio::time::sleep(Duration::from_millis(300) + jitter(3500, round)).await;
            c.kill_chronos();
            tokio::time::sleep(jitter(2500, round + 100)).await;
            c.spawn_chronos();
            c.wait_up().await;
        }
        let restarted_ms = epoch_ms();
        let wanted_last = restarted_ms + 2 * period_ms;
        eventually(
            Duration::from_secs(120),
            "tick runs past the last restart",
            || async {
                runs(&tick_file)
                    .iter()
                    .any(|(i, _)| i.as_str() >= rfc3339(wanted_last).as_str())
            },
        )
        .await;

        // Exactly once per instant: no duplicates, no gaps from the first to the last.
        let all = runs(&tick_file);
        let instants: Vec<&str> = all.iter().map(|(i, _)| i.as_str()).collect();
        let unique: BTreeSet<&str> = instants.iter().copied().collect();
        assert_eq!(
            unique.len(),
            instants.len(),
            "duplicated instants in {all:?}\n{}",
            c.logs()
        );
        let last = unique.iter().next_back().unwrap().to_string();
        let expected: Vec<String> = (0..)
            .map(|i| rfc3339(start_ms + i * period_ms))
            .take_while(|s| s.as_str() <= last.as_str())
            .collect();
        let got: Vec<String> = unique.iter().map(|s| s.to_string()).collect();
        assert_eq!(got, expected, "gaps in the runs of tick\n{}", c.logs());

        // Chronos' own count agrees (it may lag the file by the runs still being acknowledged).
        let n = expected.len() as i64;
        eventually(
            Duration::from_secs(60),
            "successCount catches up",
            || async { c.count("tick", "successCount").await >= n },
        )
        .await;
    });
}

#[test]
fn chronos_retries_a_failing_job_then_counts_the_error() {
    actix_rt::System::new().block_on(async {
        // Chronos' --failure_retry, 3 s instead of 60 s.
        let c =
            ChronosCluster::start_with("chronos-fail", "127.0.0.3", &["--failure-retry", "3000"]);
        c.wait_up().await;
        let file = c.dir().join("fail.txt");
        let start_ms = (epoch_ms() / 1000 + 2) * 1000;
        let mut failing = job(
            "failing",
            format!("{}; exit 1", append_command(&file)),
            Some(format!("R1/{}/PT1H", rfc3339(start_ms))),
        );
        failing["retries"] = json!(1);
        let (status, body) = c.post_job("iso8601", &failing).await;
        assert!(status < 300, "{status} {body}");
        // The first attempt, then a retry after the failure-retry delay, then errorCount 1 and
        // no third attempt.
        eventually(
            Duration::from_secs(180),
            "errorCount of the failing job is 1",
            || async { c.count("failing", "errorCount").await == 1 },
        )
        .await;
        let attempts = runs(&file);
        assert_eq!(attempts.len(), 2, "{attempts:?}\n{}", c.logs());
        assert!(attempts.iter().all(|(i, _)| *i == rfc3339(start_ms)));
        let gap = attempts[1].1 - attempts[0].1;
        assert!(
            gap >= 3000,
            "retried {gap} ms after the failure, not after 3 s"
        );
        assert_eq!(c.count("failing", "successCount").await, 0);
    });
}
