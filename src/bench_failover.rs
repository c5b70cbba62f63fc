//! `plateau bench failover`: real separate processes on loopback — 3 masters, 3 slaves, 2
//! Marathons, 2 Chronos — with an app of 20 instances and 20 jobs due every 10 s; the leading
//! master, then the leading Marathon, then the leading Chronos are killed with SIGKILL in turn,
//! and the time each takes to be replaced is measured, with what was lost or done twice:
//!
//! - `master_failover_ms`: kill → a new leader elected and every slave re-registered with it;
//! - `marathon_failover_ms` / `chronos_failover_ms`: kill → the other instance answers a write
//!   as leader;
//! - `lost_acknowledged_writes`: apps and jobs whose creation was answered 2xx (written all
//!   along, across the kills) and that are missing at the end;
//! - `duplicate_tasks`: the most tasks of the 20-instance app seen running at once, beyond 20;
//! - `missed_runs` / `duplicated_runs`: scheduled instants of the jobs that ran no time, or more
//!   than once (each run appends its task id, which names its instant, to a file).
//!
//! A benchmark, not a test: it prints what it measured. Its HTTP client is a plain HTTP/1.0
//! exchange over a TCP stream (one request per connection), so it depends on nothing else.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde::Serialize;
use serde_json::{json, Value};

/// What the benchmark measured.
#[derive(Debug, Clone, Serialize)]
pub struct FailoverReport {
    /// Kill of the leading master → new leader elected and every slave re-registered.
    pub master_failover_ms: u64,
    /// Kill of the leading Marathon → the other answers a write as leader.
    pub marathon_failover_ms: u64,
    /// Kill of the leading Chronos → the other answers a write as leader.
    pub chronos_failover_ms: u64,
    /// Acknowledged app and job creations missing at the end.
    pub lost_acknowledged_writes: u64,
    /// Acknowledged app and job creations checked.
    pub acknowledged_writes: u64,
    /// Most running tasks of the 20-instance app seen at once, beyond 20.
    pub duplicate_tasks: u64,
    /// Scheduled instants that did not run.
    pub missed_runs: u64,
    /// Scheduled instants that ran more than once.
    pub duplicated_runs: u64,
    /// Scheduled instants checked.
    pub scheduled_runs_checked: u64,
}

impl std::fmt::Display for FailoverReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "kill -9 of the leader to a replacement (targets: master 3 s, Marathon and Chronos 5 s)")?;
        writeln!(
            f,
            "  master    {:>6} ms  (new leader elected, every slave re-registered)",
            self.master_failover_ms
        )?;
        writeln!(
            f,
            "  Marathon  {:>6} ms  (a standby answers a write as leader)",
            self.marathon_failover_ms
        )?;
        writeln!(
            f,
            "  Chronos   {:>6} ms  (a standby answers a write as leader)",
            self.chronos_failover_ms
        )?;
        writeln!(
            f,
            "lost acknowledged writes  {} of {}",
            self.lost_acknowledged_writes, self.acknowledged_writes
        )?;
        writeln!(f, "duplicate tasks           {}", self.duplicate_tasks)?;
        write!(
            f,
            "missed, duplicated runs   {}, {} of {} scheduled instants",
            self.missed_runs, self.duplicated_runs, self.scheduled_runs_checked
        )
    }
}

const APP_INSTANCES: u64 = 20;
const JOBS: usize = 20;
const JOB_PERIOD: Duration = Duration::from_secs(10);

/// The children of the benchmark; killed (and the slaves' tasks and cgroups removed) on drop.
struct Processes {
    dir: PathBuf,
    exe: PathBuf,
    children: BTreeMap<String, Child>,
    slave_dirs: Vec<PathBuf>,
    /// Keep the directory (the logs) when the children are gone: the run failed.
    keep_logs: bool,
}

impl Processes {
    fn spawn(&mut self, name: &str, args: &[String]) -> anyhow::Result<()> {
        let log = std::fs::File::create(self.dir.join(format!("{name}.log")))?;
        let child = Command::new(&self.exe)
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        self.children.insert(name.to_string(), child);
        Ok(())
    }

    fn kill(&mut self, name: &str) {
        if let Some(mut child) = self.children.remove(name) {
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
        }
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for child in self.children.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for dir in &self.slave_dirs {
            plateau_slave::destroy_leftover_tasks(dir);
        }
        if !self.keep_logs {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn free_port(ip: &str) -> anyhow::Result<u16> {
    Ok(TcpListener::bind((ip, 0))?.local_addr()?.port())
}

/// One HTTP/1.0 exchange: (status, body).
fn http(method: &str, addr: &str, path: &str, body: Option<&Value>) -> Option<(u16, String)> {
    let socket: SocketAddr = addr.parse().ok()?;
    let mut stream = TcpStream::connect_timeout(&socket, Duration::from_secs(2)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())?;
    Some((status, body))
}

fn get_json(addr: &str, path: &str) -> Option<Value> {
    let (status, body) = http("GET", addr, path, None)?;
    (status == 200)
        .then(|| serde_json::from_str(&body).ok())
        .flatten()
}

/// Polls `f` every 50 ms until it gives a value, for at most `limit`.
fn wait_for<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> anyhow::Result<T> {
    let deadline = Instant::now() + limit; // determinism-ok: a benchmark measures wall time
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The leader the live masters agree on (HOST:PORT).
fn agreed_master(masters: &[String]) -> Option<String> {
    let mut seen: Option<String> = None;
    for m in masters {
        let leader = get_json(m, "/master/members")?["leader"]
            .as_str()?
            .to_string();
        if seen.get_or_insert_with(|| leader.clone()) != &leader {
            return None;
        }
    }
    seen
}

/// The Marathon or Chronos instance of `instances` that says it leads: `/v2/leader` (Marathon)
/// or `/scheduler/leader` (Chronos) names its own address.
fn leading_instance(instances: &[String], leader_path: &str) -> Option<String> {
    instances.iter().find_map(|i| {
        let leader = get_json(i, leader_path)?["leader"].as_str()?.to_string();
        (leader == *i).then(|| i.clone())
    })
}

/// Runs the benchmark; the children's logs and work dirs go under a temporary directory,
/// removed at the end of a run that succeeds and kept (its path in the error) for one that
/// fails.
pub fn run() -> anyhow::Result<FailoverReport> {
    let dir = std::env::temp_dir().join(format!("plateau-bench-failover-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("runs"))?;
    let mut p = Processes {
        dir: dir.clone(),
        exe: std::env::current_exe()?,
        children: BTreeMap::new(),
        slave_dirs: Vec::new(),
        keep_logs: false,
    };
    let report = measure(&mut p, &dir);
    if report.is_err() {
        p.keep_logs = true;
    }
    report.with_context(|| format!("the processes' logs are in {}", dir.display()))
}

fn measure(p: &mut Processes, dir: &Path) -> anyhow::Result<FailoverReport> {
    let tls = dir.join("tls");
    let ca = plateau_runtime::tls::ClusterCa::generate()?;
    ca.save(&tls)?;
    let tls_s = tls.to_string_lossy().to_string();
    let arg = |s: &str| s.to_string();

    // Three masters, three slaves.
    let masters: Vec<String> = (0..3)
        .map(|_| free_port("127.0.0.1").map(|port| format!("127.0.0.1:{port}")))
        .collect::<anyhow::Result<_>>()?;
    let list = masters.join(",");
    for (i, m) in masters.iter().enumerate() {
        let work = dir.join(format!("master-{i}"));
        p.spawn(
            &format!("master-{i}"),
            &[
                arg("master"),
                arg("--listen"),
                m.clone(),
                arg("--peers"),
                list.clone(),
                arg("--work-dir"),
                work.to_string_lossy().to_string(),
                arg("--tls-dir"),
                tls_s.clone(),
            ],
        )?;
    }
    for i in 0..3 {
        let ip = format!("127.0.0.{}", i + 2);
        let listen = format!("{ip}:{}", free_port(&ip)?);
        let work = dir.join(format!("slave-{i}"));
        p.slave_dirs.push(work.clone());
        p.spawn(
            &format!("slave-{i}"),
            &[
                arg("slave"),
                arg("--master"),
                list.clone(),
                arg("--listen"),
                listen,
                arg("--work-dir"),
                work.to_string_lossy().to_string(),
                arg("--tls-dir"),
                tls_s.clone(),
                arg("--resources"),
                format!(
                    "cpus:4;mem:4096;disk:10000;ports:[{}-{}]",
                    31000 + i * 300,
                    31299 + i * 300
                ),
            ],
        )?;
    }
    let leader = wait_for(Duration::from_secs(60), "a leading master", || {
        agreed_master(&masters)
    })?;
    wait_for(Duration::from_secs(60), "three slaves registered", || {
        let state = get_json(&leader, "/master/state")?;
        (state["activated_slaves"].as_f64() == Some(3.0)).then_some(())
    })?;

    // Two Marathons, two Chronos.
    let marathons: Vec<String> = (0..2)
        .map(|_| free_port("127.0.0.1").map(|port| format!("127.0.0.1:{port}")))
        .collect::<anyhow::Result<_>>()?;
    let chronoses: Vec<String> = (0..2)
        .map(|_| free_port("127.0.0.1").map(|port| format!("127.0.0.1:{port}")))
        .collect::<anyhow::Result<_>>()?;
    for (kind, instances) in [("marathon", &marathons), ("chronos", &chronoses)] {
        for (i, listen) in instances.iter().enumerate() {
            let work = dir.join(format!("{kind}-{i}"));
            p.spawn(
                &format!("{kind}-{i}"),
                &[
                    arg(kind),
                    arg("--master"),
                    list.clone(),
                    arg("--listen"),
                    listen.clone(),
                    arg("--work-dir"),
                    work.to_string_lossy().to_string(),
                    arg("--tls-dir"),
                    tls_s.clone(),
                ],
            )?;
        }
    }
    let marathon = wait_for(Duration::from_secs(60), "a leading Marathon", || {
        leading_instance(&marathons, "/v2/leader")
    })?;
    let chronos = wait_for(Duration::from_secs(60), "a leading Chronos", || {
        leading_instance(&chronoses, "/scheduler/leader")
    })?;

    // The app and the jobs.
    let app = json!({"id": "/bench", "cmd": "sleep 3600", "instances": APP_INSTANCES,
                     "cpus": 0.01, "mem": 16});
    let created = http("POST", &marathon, "/v2/apps", Some(&app));
    if created.as_ref().is_none_or(|(s, _)| *s != 201) {
        bail!("creating the app: {created:?}");
    }
    wait_for(Duration::from_secs(120), "20 instances running", || {
        let app = get_json(&marathon, "/v2/apps/bench")?;
        (app["app"]["tasksRunning"].as_u64() == Some(APP_INSTANCES)).then_some(())
    })?;
    let first_instant = chrono::Utc::now() + chrono::TimeDelta::seconds(5);
    let first_instant = first_instant
        .with_timezone(&chrono::Utc)
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let runs = dir.join("runs");
    for j in 0..JOBS {
        let job = json!({
            "name": format!("tick-{j}"),
            "command": format!("echo $MESOS_TASK_ID >> {}/tick-{j}.log", runs.display()),
            "schedule": format!("R/{first_instant}/PT{}S", JOB_PERIOD.as_secs()),
            "cpus": 0.01, "mem": 16,
        });
        let answer = http("POST", &chronos, "/scheduler/iso8601", Some(&job));
        if answer.as_ref().is_none_or(|(s, _)| !(200..300).contains(s)) {
            bail!("creating job tick-{j}: {answer:?}");
        }
    }

    // Writers and a watcher that run through the kills.
    let stop = Arc::new(AtomicBool::new(false));
    let acked_apps = Arc::new(Mutex::new(Vec::new()));
    let acked_jobs = Arc::new(Mutex::new(Vec::new()));
    let most_running = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    {
        let (stop, acked, instances) = (stop.clone(), acked_apps.clone(), marathons.clone());
        threads.push(std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let id = format!("ack-{n}");
                let app = json!({"id": format!("/{id}"), "cmd": "sleep 3600", "instances": 0,
                                 "cpus": 0.01, "mem": 16});
                // Any instance: a standby proxies to the leader.
                let to = &instances[n % instances.len()];
                if http("POST", to, "/v2/apps", Some(&app)).is_some_and(|(s, _)| s == 201) {
                    acked.lock().expect("acked lock").push(id);
                }
                n += 1;
                std::thread::sleep(Duration::from_millis(200));
            }
        }));
    }
    {
        let (stop, acked, instances) = (stop.clone(), acked_jobs.clone(), chronoses.clone());
        threads.push(std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let name = format!("ack-{n}");
                let job = json!({"name": name, "command": "true", "cpus": 0.01, "mem": 16,
                                 "schedule": "R/2030-01-01T00:00:00Z/PT1H"});
                let to = &instances[n % instances.len()];
                if http("POST", to, "/scheduler/iso8601", Some(&job))
                    .is_some_and(|(s, _)| (200..300).contains(&s))
                {
                    acked.lock().expect("acked lock").push(name);
                }
                n += 1;
                std::thread::sleep(Duration::from_millis(200));
            }
        }));
    }
    {
        let (stop, most, masters) = (stop.clone(), most_running.clone(), masters.clone());
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let running = masters.iter().find_map(|m| {
                    let state = get_json(m, "/master/state")?;
                    let n = state["frameworks"]
                        .as_array()?
                        .iter()
                        .flat_map(|f| f["tasks"].as_array().cloned().unwrap_or_default())
                        .filter(|t| {
                            t["id"].as_str().is_some_and(|id| id.starts_with("bench."))
                                && t["state"] == "TASK_RUNNING"
                        })
                        .count();
                    Some(n as u64)
                });
                if let Some(n) = running {
                    most.fetch_max(n, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        }));
    }
    std::thread::sleep(Duration::from_secs(15));

    // 1. The leading master.
    let killed = masters
        .iter()
        .position(|m| *m == leader)
        .expect("a master leads");
    p.kill(&format!("master-{killed}"));
    let t0 = Instant::now(); // determinism-ok: a benchmark measures wall time
    let live: Vec<String> = masters.iter().filter(|m| **m != leader).cloned().collect();
    let new_leader = wait_for(Duration::from_secs(60), "a new leading master", || {
        agreed_master(&live).filter(|l| *l != leader)
    })?;
    wait_for(Duration::from_secs(60), "every slave re-registered", || {
        let state = get_json(&new_leader, "/master/state")?;
        (state["activated_slaves"].as_f64() == Some(3.0)).then_some(())
    })?;
    let master_failover_ms = t0.elapsed().as_millis() as u64;
    std::thread::sleep(Duration::from_secs(10));

    // 2. The leading Marathon (asked again: the master failover may have moved it).
    let marathon = wait_for(Duration::from_secs(60), "a leading Marathon", || {
        leading_instance(&marathons, "/v2/leader")
    })?;
    eprintln!("bench failover: the leading Marathon is {marathon}; killing it");
    let killed = marathons
        .iter()
        .position(|m| *m == marathon)
        .expect("a Marathon leads");
    p.kill(&format!("marathon-{killed}"));
    let t0 = Instant::now(); // determinism-ok: a benchmark measures wall time
    let other = marathons[1 - killed].clone();
    let mut probe = 0;
    wait_for(
        Duration::from_secs(60),
        "the other Marathon answers a write",
        || {
            probe += 1;
            let app = json!({"id": format!("/probe-{probe}"), "cmd": "sleep 3600", "instances": 0,
                         "cpus": 0.01, "mem": 16});
            http("POST", &other, "/v2/apps", Some(&app))
                .filter(|(s, _)| *s == 201)
                .map(|_| ())
        },
    )?;
    let marathon_failover_ms = t0.elapsed().as_millis() as u64;
    std::thread::sleep(Duration::from_secs(10));

    // 3. The leading Chronos (asked again, as above).
    let chronos = wait_for(Duration::from_secs(60), "a leading Chronos", || {
        leading_instance(&chronoses, "/scheduler/leader")
    })?;
    eprintln!("bench failover: the leading Chronos is {chronos}; killing it");
    let killed = chronoses
        .iter()
        .position(|c| *c == chronos)
        .expect("a Chronos leads");
    p.kill(&format!("chronos-{killed}"));
    let t0 = Instant::now(); // determinism-ok: a benchmark measures wall time
    let other = chronoses[1 - killed].clone();
    let mut probe = 0;
    wait_for(
        Duration::from_secs(60),
        "the other Chronos answers a write",
        || {
            probe += 1;
            let job = json!({"name": format!("probe-{probe}"), "command": "true", "cpus": 0.01,
                         "mem": 16, "schedule": "R/2030-01-01T00:00:00Z/PT1H"});
            http("POST", &other, "/scheduler/iso8601", Some(&job))
                .filter(|(s, _)| (200..300).contains(s))
                .map(|_| ())
        },
    )?;
    let chronos_failover_ms = t0.elapsed().as_millis() as u64;

    // Let the jobs run on the new leader, then stop and count.
    std::thread::sleep(Duration::from_secs(25));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let ended = chrono::Utc::now();
    let marathon_now =
        marathons[1 - marathons.iter().position(|m| *m == marathon).unwrap_or(0)].clone();
    let chronos_now =
        chronoses[1 - chronoses.iter().position(|c| *c == chronos).unwrap_or(0)].clone();
    let acked_apps = acked_apps.lock().expect("acked lock").clone();
    let acked_jobs = acked_jobs.lock().expect("acked lock").clone();
    let mut lost = 0;
    for id in &acked_apps {
        if get_json(&marathon_now, &format!("/v2/apps/{id}")).is_none() {
            lost += 1;
        }
    }
    let jobs = get_json(&chronos_now, "/scheduler/jobs").unwrap_or(Value::Null);
    let job_names: std::collections::BTreeSet<String> = jobs
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|j| j["name"].as_str().map(str::to_string))
        .collect();
    lost += acked_jobs
        .iter()
        .filter(|n| !job_names.contains(*n))
        .count() as u64;

    let (missed_runs, duplicated_runs, checked) = count_runs(&runs, &first_instant, ended)?;
    Ok(FailoverReport {
        master_failover_ms,
        marathon_failover_ms,
        chronos_failover_ms,
        lost_acknowledged_writes: lost,
        acknowledged_writes: (acked_apps.len() + acked_jobs.len()) as u64,
        duplicate_tasks: most_running
            .load(Ordering::Relaxed)
            .saturating_sub(APP_INSTANCES),
        missed_runs,
        duplicated_runs,
        scheduled_runs_checked: checked,
    })
}

/// Counts, over every job's run file, the instants from the first one up to 15 s before
/// `ended` that did not run and those that ran more than once: (missed, duplicated, checked).
/// A run's line is its task id, `ct:<instant ms>:<attempt>:<job>:...`.
fn count_runs(
    runs: &Path,
    first_instant: &str,
    ended: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<(u64, u64, u64)> {
    let first = chrono::DateTime::parse_from_rfc3339(first_instant)?.timestamp_millis();
    let last = (ended - chrono::TimeDelta::seconds(15)).timestamp_millis();
    let period = JOB_PERIOD.as_millis() as i64;
    let (mut missed, mut duplicated, mut checked) = (0, 0, 0);
    for j in 0..JOBS {
        let text = std::fs::read_to_string(runs.join(format!("tick-{j}.log"))).unwrap_or_default();
        let mut seen: BTreeMap<i64, u64> = BTreeMap::new();
        for line in text.lines() {
            if let Some(ms) = line.split(':').nth(1).and_then(|ms| ms.parse::<i64>().ok()) {
                *seen.entry(ms).or_default() += 1;
            }
        }
        let mut instant = first;
        while instant <= last {
            checked += 1;
            match seen.get(&instant) {
                None => missed += 1,
                Some(n) if *n > 1 => duplicated += 1,
                Some(_) => {}
            }
            instant += period;
        }
    }
    Ok((missed, duplicated, checked))
}
