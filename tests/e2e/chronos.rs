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
//!
//! A third, with its own cluster of three masters and two Chronos (leader + standby), kills the
//! leading Chronos with kill -9 and checks the standby's takeover: time to a write answered as
//! leader, no acknowledged write lost, every instant run exactly once
//! ([`chronos_ha_kill_9_of_the_leader`]).

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::rc::Rc;
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
/// Creates `file`, writable by everyone: the jobs run as the slave's default task user
/// (`nobody`), which may not create files in the test's directory.
fn append_command(file: &Path) -> String {
    use std::os::unix::fs::PermissionsExt;
    if !file.exists() {
        std::fs::write(file, "").unwrap();
    }
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o666)).unwrap();
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

// ----- leader + standbys -------------------------------------------------------------------

/// Jobs of the HA scenario, each every [`HA_PERIOD_MS`].
const HA_JOBS: usize = 3;
/// Their period: Chronos' schedules have a resolution of a second; 2 s puts several instants
/// into every failover.
const HA_PERIOD_MS: i64 = 2000;
/// A generous limit on kill -9 of the leader → the standby answers a write as leader (the
/// target is ≤ 5 s with `--session-ttl 3s`; this test checks behaviour, not timing).
const HA_FAILOVER_LIMIT: Duration = Duration::from_secs(60);

/// `GET url` as (status, body); None when nothing answers.
async fn get_text(url: &str) -> Option<(u16, String)> {
    let r = reqwest::get(url).await.ok()?;
    let status = r.status().as_u16();
    Some((status, r.text().await.unwrap_or_default()))
}

/// The leader `api` (HOST:PORT) names at `/scheduler/leader`, if any.
async fn leader_of(api: &str) -> Option<String> {
    let v = get_json(&format!("http://{api}/scheduler/leader")).await?;
    v["leader"].as_str().map(str::to_string)
}

/// `POST /scheduler/iso8601` of `job` to `api`: the status, None when nothing answered.
async fn post_iso8601(client: &reqwest::Client, api: &str, job: &Value) -> Option<u16> {
    let r = client
        .post(format!("http://{api}/scheduler/iso8601"))
        .json(job)
        .send()
        .await
        .ok()?;
    Some(r.status().as_u16())
}

/// The names of the jobs `api` lists (a standby proxies the list to the leader).
async fn job_names(api: &str) -> Option<BTreeSet<String>> {
    let jobs = get_json(&format!("http://{api}/scheduler/jobs")).await?;
    Some(
        jobs.as_array()?
            .iter()
            .filter_map(|j| j["name"].as_str().map(str::to_string))
            .collect(),
    )
}

/// A task that ran, from the Mesos task id it wrote (`ct:<instant ms>:<attempt>:<job>:<tag>`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct RanTask {
    job: String,
    instant_ms: i64,
    attempt: u32,
    tag: String,
}

fn parse_ran_task(id: &str) -> Option<RanTask> {
    let mut parts = id.trim().splitn(5, ':');
    (parts.next()? == "ct").then_some(())?;
    Some(RanTask {
        instant_ms: parts.next()?.parse().ok()?,
        attempt: parts.next()?.parse().ok()?,
        job: parts.next()?.to_string(),
        tag: parts.next()?.to_string(),
    })
}

/// The task ids written to `file`, one line per task process that ran; a line that is not a
/// Chronos task id makes the test fail.
fn ran_tasks(file: &Path) -> Vec<RanTask> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(|l| parse_ran_task(l).unwrap_or_else(|| panic!("not a Chronos task id: {l:?}")))
        .collect()
}

/// The instants of `job` from `start_ms` to `end_ms` (inclusive) that have no task in `ran`.
fn missing_instants(ran: &[RanTask], job: &str, start_ms: i64, end_ms: i64) -> Vec<i64> {
    let seen: BTreeSet<i64> = ran
        .iter()
        .filter(|t| t.job == job)
        .map(|t| t.instant_ms)
        .collect();
    (0..)
        .map(|i| start_ms + i * HA_PERIOD_MS)
        .take_while(|ms| *ms <= end_ms)
        .filter(|ms| !seen.contains(ms))
        .collect()
}

/// Three masters (`--peers`), two slaves and two Chronos (`--master A,B,C`), all separate
/// processes. Three jobs (catch-up `all`; `once` and `skip`, concurrent) run every 2 s, each
/// task appending its Mesos task id to a file. While a writer keeps creating jobs through both
/// instances, the leading Chronos is killed with kill -9, twice (each instance once, the killed
/// one restarted as a standby in between). After each kill the standby leads (its `/leader`
/// names itself) and answers writes — the time from the kill is printed; then: every
/// acknowledged job is there; every instant of every job from the first to after the last
/// failover ran exactly once (one task process, attempt 0, no instant missed, none twice), and
/// Chronos' own counts and task history and the tasks the master saw launched agree.
#[test]
fn chronos_ha_kill_9_of_the_leader() {
    actix_rt::System::new().block_on(async {
        let mut cluster = Cluster::new("chronos-ha");
        let dir = cluster.dir.clone();
        let tls = cluster.tls().to_str().unwrap().to_string();
        let masters: Vec<String> = (0..3)
            .map(|_| format!("127.0.0.1:{}", free_port("127.0.0.1")))
            .collect();
        let peers = masters.join(",");
        for (i, m) in masters.iter().enumerate() {
            let work = dir.join(format!("master-{i}"));
            cluster.spawn(
                &format!("master-{i}"),
                &[
                    "master",
                    "--listen",
                    m,
                    "--peers",
                    &peers,
                    "--work-dir",
                    work.to_str().unwrap(),
                    "--tls-dir",
                    &tls,
                ],
            );
        }
        for (i, ip) in ["127.0.0.4", "127.0.0.5"].iter().enumerate() {
            cluster.start_slave(
                &format!("slave-{i}"),
                ip,
                &peers,
                &format!(
                    "cpus:2;mem:1024;disk:1000;ports:[{}-{}]",
                    32100 + i * 100,
                    32199 + i * 100
                ),
            );
        }
        // Two Chronos with the same master list: the state goes to the masters' coordination
        // store (more than one master), one leads and the other stands by.
        let apis: Vec<String> = (0..2)
            .map(|_| format!("127.0.0.1:{}", free_port("127.0.0.1")))
            .collect();
        let chronos_args = |i: usize| -> Vec<String> {
            [
                "chronos",
                "--master",
                &peers,
                "--listen",
                &apis[i],
                "--work-dir",
                dir.join(format!("chronos-{i}")).to_str().unwrap(),
                "--tls-dir",
                &tls,
                "--session-ttl",
                "3s",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect()
        };
        let spawn_chronos = |cluster: &mut Cluster, i: usize| {
            let args = chronos_args(i);
            cluster.spawn(
                &format!("chronos-{i}"),
                &args.iter().map(String::as_str).collect::<Vec<_>>(),
            );
        };
        for i in 0..2 {
            spawn_chronos(&mut cluster, i);
        }
        let logs = |cluster: &Cluster| {
            let mut out = String::new();
            for name in ["chronos-0", "chronos-1", "master-0", "master-1", "master-2"] {
                out += &format!("--- {name}.log ---\n{}\n", tail(&cluster.log(name), 3000));
            }
            out
        };

        // Both instances name the same leader, one of them.
        let deadline = std::time::Instant::now() + Duration::from_secs(120); // determinism-ok: a test's deadline
        let leader = loop {
            let (a, b) = (leader_of(&apis[0]).await, leader_of(&apis[1]).await);
            match (a, b) {
                (Some(a), Some(b)) if a == b && apis.contains(&a) => break a,
                _ => {}
            }
            assert!(
                std::time::Instant::now() < deadline, // determinism-ok: a test's deadline
                "both Chronos agree on a leader\n{}",
                logs(&cluster)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let mut leader_index = apis.iter().position(|a| *a == leader).unwrap();
        let standby = apis[1 - leader_index].clone();
        let v1 = get_json(&format!("http://{standby}/v1/scheduler/leader"))
            .await
            .unwrap();
        assert_eq!(v1["leader"], json!(leader), "the standby names the leader");

        // The jobs, every 2 s, posted through the standby (which proxies to the leader). Each
        // task appends its task id, which names the job, the instant and the attempt.
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let start_ms = (epoch_ms() / 1000 + 4) * 1000;
        let file = dir.join("runs.txt");
        // Writable by the jobs, which run as nobody.
        std::fs::write(&file, "").unwrap();
        std::fs::set_permissions(
            &file,
            std::os::unix::fs::PermissionsExt::from_mode(0o666),
        )
        .unwrap();
        let names: Vec<String> = (0..HA_JOBS).map(|j| format!("tick-{j}")).collect();
        // Each catch-up policy once. With an epsilon far longer than a failover, the instants
        // a failover delays are on time for every policy, so each must run. A job that is not
        // `concurrent` runs one instant at a time: several instants due at once after a
        // failover then queue up with `all`, but `once` and `skip` fold or drop those behind a
        // waiting run (by design, as when a run outlasts the period) — hence `concurrent` for
        // those two.
        for (name, (catch_up, concurrent)) in names
            .iter()
            .zip([("all", false), ("once", true), ("skip", true)])
        {
            let mut tick = job(
                name,
                format!("echo \"$MESOS_TASK_ID\" >> {}", file.display()),
                Some(format!("R/{}/PT2S", rfc3339(start_ms))),
            );
            tick["catchUp"] = json!(catch_up);
            tick["concurrent"] = json!(concurrent);
            tick["epsilon"] = json!("PT5M");
            let status = post_iso8601(&client, &standby, &tick).await;
            assert_eq!(status, Some(204), "posting {name} through the standby");
        }
        let (status, body) = get_text(&format!("http://{standby}/scheduler/jobs/search?name=tick-1"))
            .await
            .unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("\"tick-1\""), "proxied search: {body}");
        eventually(
            Duration::from_secs(90),
            "2 runs of every job before the first kill",
            || async {
                let ran = ran_tasks(&file);
                names
                    .iter()
                    .all(|n| ran.iter().filter(|t| t.job == *n).count() >= 2)
            },
        )
        .await;

        // A writer that creates jobs through both instances all along the kills; it keeps the
        // names of those acknowledged (204).
        let acked = Rc::new(RefCell::new(Vec::<String>::new()));
        // Every write's outcome: (ms since the epoch, instance, status; None: no answer).
        let outcomes = Rc::new(RefCell::new(Vec::<(i64, usize, Option<u16>)>::new()));
        let stop = Rc::new(Cell::new(false));
        let writer = {
            let (acked, outcomes, stop) = (acked.clone(), outcomes.clone(), stop.clone());
            let (apis, client) = (apis.clone(), client.clone());
            actix_rt::spawn(async move {
                let mut n = 0usize;
                while !stop.get() {
                    let name = format!("ack-{n}");
                    let body = job(&name, "true".into(), Some("R1/2099-01-01T00:00:00Z/PT1H".into()));
                    let status = post_iso8601(&client, &apis[n % 2], &body).await;
                    outcomes.borrow_mut().push((epoch_ms(), n % 2, status));
                    if status == Some(204) {
                        acked.borrow_mut().push(name);
                    }
                    n += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        };

        // kill -9 the leader at a varied point of the period; the standby leads and answers a
        // write; the killed one comes back as a standby. Twice: each instance is killed once as
        // the leader.
        let mut failovers = Vec::new();
        let mut killed_at_ms = Vec::new();
        for round in 0..2u64 {
            tokio::time::sleep(Duration::from_millis(500) + jitter(HA_PERIOD_MS as u64, round)).await;
            let killed = leader_index;
            let standby = apis[1 - killed].clone();
            let name = format!("chronos-{killed}");
            cluster.signal(&name, libc::SIGKILL);
            let killed_at = std::time::Instant::now(); // determinism-ok: a test measuring wall time
            killed_at_ms.push(epoch_ms());
            let _ = cluster.children.get_mut(&name).unwrap().wait();
            let probe = job(
                &format!("probe-{round}"),
                "true".into(),
                Some("R1/2099-01-01T00:00:00Z/PT1H".into()),
            );
            let deadline = killed_at + HA_FAILOVER_LIMIT;
            loop {
                if leader_of(&standby).await.as_deref() == Some(standby.as_str())
                    && post_iso8601(&client, &standby, &probe).await == Some(204)
                {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline, // determinism-ok: a test's deadline
                    "round {round}: the standby {standby} did not lead and take a write within {HA_FAILOVER_LIMIT:?} of kill -9 of {}\n{}",
                    apis[killed],
                    logs(&cluster)
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let failover = killed_at.elapsed();
            eprintln!(
                "Chronos failover {round}: kill -9 of the leader {} → {standby} answers a write as leader: {} ms",
                apis[killed],
                failover.as_millis()
            );
            if failover > Duration::from_secs(5) {
                eprintln!("  (over the 5 s target)");
            }
            failovers.push(failover);
            spawn_chronos(&mut cluster, killed);
            eventually(
                Duration::from_secs(60),
                "the restarted instance follows the new leader",
                || async { leader_of(&apis[killed]).await.as_deref() == Some(standby.as_str()) },
            )
            .await;
            leader_index = 1 - killed;
        }
        let leader = apis[leader_index].clone();
        let standby = apis[1 - leader_index].clone();
        let last_failover_ms = epoch_ms();

        // A few more writes after the last failover, then stop the writer.
        let acked_before = acked.borrow().len();
        eventually(Duration::from_secs(60), "writes acknowledged after the failovers", || async {
            acked.borrow().len() >= acked_before + 5
        })
        .await;
        stop.set(true);
        writer.await.unwrap();

        // No acknowledged write lost: every acknowledged job is on the leader, and the standby
        // (proxying) shows the same.
        let acked = acked.borrow().clone();
        let outcomes = outcomes.borrow().clone();
        let failed: Vec<String> = outcomes
            .iter()
            .filter(|(_, _, status)| *status != Some(204))
            .map(|(at, i, status)| format!("{}ms@{i}:{status:?}", at - start_ms))
            .collect();
        eprintln!(
            "Chronos HA: {} of {} job writes acknowledged across the failovers (kills at {:?} ms); not acknowledged (ms from the first instant @ instance: status): {failed:?}",
            acked.len(),
            outcomes.len(),
            killed_at_ms.iter().map(|ms| ms - start_ms).collect::<Vec<_>>(),
        );
        for api in [&leader, &standby] {
            let listed = job_names(api).await.expect("the job list");
            let lost: Vec<&String> = acked.iter().filter(|n| !listed.contains(*n)).collect();
            assert!(lost.is_empty(), "acknowledged jobs lost (asked {api}): {lost:?}");
            for probe in ["probe-0", "probe-1"] {
                assert!(listed.contains(probe), "{probe} lost (asked {api})");
            }
        }

        // Every instant of every job, from the first to 3 periods after the last failover, ran.
        let end_ms = last_failover_ms + 3 * HA_PERIOD_MS;
        let deadline = std::time::Instant::now() + Duration::from_secs(90); // determinism-ok: a test's deadline
        loop {
            let ran = ran_tasks(&file);
            let missing: Vec<(String, Vec<i64>)> = names
                .iter()
                .map(|n| (n.clone(), missing_instants(&ran, n, start_ms, end_ms)))
                .filter(|(_, m)| !m.is_empty())
                .collect();
            if missing.is_empty() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline, // determinism-ok: a test's deadline
                "instants never ran (job, ms): {missing:?}\nran: {ran:?}\n{}",
                logs(&cluster)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        // Chronos' own counts catch up: at least one success per instant checked.
        let per_job = (end_ms - start_ms) / HA_PERIOD_MS + 1;
        for name in &names {
            eventually(Duration::from_secs(60), "successCount catches up", || async {
                get_json(&format!("http://{leader}/scheduler/job/{name}"))
                    .await
                    .and_then(|j| j["successCount"].as_i64())
                    .is_some_and(|c| c >= per_job)
            })
            .await;
        }

        // Exactly once: one task process per instant, attempt 0 of a scheduled run, no instant
        // twice and none outside the schedule; Chronos' task history shows each task once.
        let ran = ran_tasks(&file);
        for name in &names {
            let mine: Vec<&RanTask> = ran.iter().filter(|t| t.job == *name).collect();
            let mut instants: Vec<i64> = mine.iter().map(|t| t.instant_ms).collect();
            instants.sort_unstable();
            let unique: BTreeSet<i64> = instants.iter().copied().collect();
            assert_eq!(
                unique.len(),
                instants.len(),
                "{name}: an instant ran twice: {mine:?}\n{}",
                logs(&cluster)
            );
            assert!(
                mine.iter().all(|t| t.attempt == 0 && t.tag.is_empty()),
                "{name}: a retry or a non-scheduled run: {mine:?}"
            );
            let last = *unique.last().unwrap();
            assert!(
                missing_instants(&ran, name, start_ms, last).is_empty()
                    && unique.iter().all(|ms| *ms >= start_ms && (ms - start_ms) % HA_PERIOD_MS == 0),
                "{name}: the instants that ran are not the schedule's: {instants:?}"
            );
            let stat = get_json(&format!("http://{leader}/scheduler/job/stat/{name}"))
                .await
                .expect("job stat");
            let history: Vec<&str> = stat["taskStatHistory"]
                .as_array()
                .expect("taskStatHistory")
                .iter()
                .filter_map(|t| t["taskId"].as_str())
                .collect();
            let distinct: BTreeSet<&str> = history.iter().copied().collect();
            assert_eq!(
                distinct.len(),
                history.len(),
                "{name}: a task twice in Chronos' history: {history:?}"
            );
            for t in history.iter().filter_map(|id| parse_ran_task(id)) {
                assert!(
                    t.job == *name && t.attempt == 0 && unique.contains(&t.instant_ms),
                    "{name}: Chronos' history has a task that did not run: {t:?}; ran: {instants:?}"
                );
            }
        }

        // The master saw the same: every task of the jobs Chronos launched (running or
        // completed) once, attempt 0, and for the instants checked exactly those that ran.
        let state = get_json(&format!("http://{}/master/state", masters[0]))
            .await
            .expect("the master's state");
        let launched: Vec<RanTask> = state["frameworks"]
            .as_array()
            .expect("frameworks")
            .iter()
            .filter(|f| f["name"] == "chronos")
            .flat_map(|f| {
                let tasks = f["tasks"].as_array().cloned().unwrap_or_default();
                tasks.into_iter().chain(f["completed_tasks"].as_array().cloned().unwrap_or_default())
            })
            .filter_map(|t| parse_ran_task(t["id"].as_str()?))
            .filter(|t| t.job.starts_with("tick-"))
            .collect();
        let distinct: BTreeSet<&RanTask> = launched.iter().collect();
        assert_eq!(
            distinct.len(),
            launched.len(),
            "the master saw a task launched twice: {launched:?}"
        );
        assert!(
            launched.iter().all(|t| t.attempt == 0 && t.tag.is_empty()),
            "the master saw a retry or a non-scheduled run: {launched:?}"
        );
        let checked = |tasks: &[RanTask]| -> BTreeSet<(String, i64)> {
            tasks
                .iter()
                .filter(|t| t.instant_ms <= end_ms)
                .map(|t| (t.job.clone(), t.instant_ms))
                .collect()
        };
        assert_eq!(
            checked(&launched),
            checked(&ran),
            "the tasks the master saw launched are not those that ran"
        );
        let in_failovers = killed_at_ms
            .iter()
            .zip(&failovers)
            .map(|(at, took)| {
                let until = at + took.as_millis() as i64;
                (0..per_job)
                    .map(|i| start_ms + i * HA_PERIOD_MS)
                    .filter(|ms| (*at..=until).contains(ms))
                    .count()
            })
            .collect::<Vec<_>>();
        eprintln!(
            "Chronos HA: {} tasks ran ({per_job} instants per job checked, {HA_JOBS} jobs; instants per job due while no Chronos led: {in_failovers:?}), failovers {:?}",
            ran.len(),
            failovers
        );
    });
}
