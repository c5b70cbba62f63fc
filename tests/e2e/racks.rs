//! Hosts and racks cut off the network, on the multi-host harness (`netns.rs`): every node in
//! its own network namespace with its own address on one bridge; the master and Marathon on
//! host `ctl`, four slaves on two racks (`--attributes rack:r1`, `rack:r2`), each with room for
//! two instances; tasks are real processes in real cgroups. A link is cut by setting the hub
//! end of the host's veth down, and restored by setting it up.
//!
//! - One slave cut off: its tasks are TASK_UNREACHABLE at the master within the agent timeout
//!   (`--agent-timeout 5s`, the default); Marathon (unreachableStrategy 0/0, its default)
//!   starts replacements on the other hosts with `GROUP_BY rack 2` keeping two instances per
//!   rack; once the slave, asked from inside its namespace, has lost its master too, the link
//!   is restored: the slave re-registers with its old tasks, which Marathon no longer knows
//!   and kills; exactly 4 instances in the end, in Marathon's view, at the master and as task
//!   cgroups on the slaves.
//! - A whole rack cut off (`GROUP_BY rack` without a count, so the only reachable rack takes
//!   them): all four instances end up on the other rack; restored, the extra copies are
//!   killed and exactly 4 remain. The times from the cut to the instances running elsewhere
//!   and from the restore to convergence are printed (`--nocapture`).
//! - A host drained through the master's maintenance endpoints with an app behind the
//!   balancer (in a namespace of its own): no request fails while the instances move.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::cli::cli_in;
use super::netns::{get_json_in, Hosts};
use super::support::{await_some, eventually, get_json, task_cgroups, Cluster};

/// Deadline for anything that involves launching processes on a slow, shared machine.
const SLOW: Duration = Duration::from_secs(90);

/// The master's `--agent-timeout` (Mesos' default).
const AGENT_TIMEOUT: Duration = Duration::from_secs(5);

/// Room for two instances of [`sleeper`] per slave.
const SLAVE_RESOURCES: &str = "cpus:0.2;mem:256;disk:100;ports:[31000-31099]";

/// `ctl` (master and Marathon) and four slaves on two racks.
const RACKS: &[(&str, Option<&str>)] = &[
    ("ctl", None),
    ("s1", Some("r1")),
    ("s2", Some("r1")),
    ("s3", Some("r2")),
    ("s4", Some("r2")),
];

/// A cluster on the harness. Field order is drop order: processes and task cgroups first,
/// then the namespaces.
struct Env {
    cluster: Cluster,
    hosts: Hosts,
    /// The master's HOST:PORT (on `ctl`).
    master: String,
    /// Marathon's HOST:PORT (on `ctl`).
    marathon: String,
    /// Slave host name → its work dir.
    slave_works: BTreeMap<String, PathBuf>,
    /// The balancer's address (on host `lb`, if the layout has one).
    balancer_ip: Option<String>,
}

impl Env {
    /// `plateau ARGS --context racks` run in the hub namespace (an operator's machine on the
    /// network), with a context for this cluster in a config dir of the test's own; its
    /// standard output as JSON.
    fn cli(&self, args: &[&str]) -> Value {
        let config = self.cluster.dir.join("cli-config");
        let hub = Some(self.hosts.hub());
        if !config.exists() {
            let marathon = format!("http://{}", self.marathon);
            cli_in(
                hub,
                &config,
                &[
                    "context",
                    "add",
                    "racks",
                    "--master",
                    &self.master,
                    "--marathon",
                    &marathon,
                ],
            )
            .ok();
        }
        let mut all = args.to_vec();
        all.extend(["--context", "racks"]);
        cli_in(hub, &config, &all).ok().json()
    }

    /// The namespaces of `layout`; the master and Marathon on `ctl`, a slave on every host with
    /// a rack, a balancer on `lb` if there is one.
    fn start(tag: &str, subnet: u8, layout: &[(&str, Option<&str>)]) -> Env {
        let hosts = Hosts::new(tag, subnet, layout);
        let mut cluster = Cluster::new(tag);
        let dir = cluster.dir.clone();
        let tls = cluster.tls().to_str().unwrap().to_string();
        let ctl = hosts.host("ctl").clone();
        let master = format!("{}:5050", ctl.ip);
        let marathon = format!("{}:8080", ctl.ip);
        let work = |name: &str| dir.join(name).to_str().unwrap().to_string();
        cluster.spawn_in_netns(
            "master",
            &ctl.netns,
            &[
                "master",
                "--listen",
                &master,
                "--work-dir",
                &work("master"),
                "--tls-dir",
                &tls,
                "--agent-timeout",
                &format!("{}s", AGENT_TIMEOUT.as_secs()),
                // Addresses on the bridge without credentials: open on purpose, these tests
                // are about placement (the refusal itself is tested in security.rs).
                "--insecure-open-api",
            ],
        );
        cluster.spawn_in_netns(
            "marathon",
            &ctl.netns,
            &[
                "marathon",
                "--master",
                &master,
                "--listen",
                &marathon,
                "--work-dir",
                &work("marathon"),
                "--tls-dir",
                &tls,
                "--insecure-open-api",
            ],
        );
        let mut slave_works = BTreeMap::new();
        for host in hosts.all().iter().filter(|h| h.rack.is_some()) {
            let slave_work = dir.join(&host.name);
            cluster.slave_dirs.push(slave_work.clone());
            let listen = format!("{}:5051", host.ip);
            let attributes = host.attributes().unwrap();
            cluster.spawn_in_netns(
                &host.name,
                &host.netns,
                &[
                    "slave",
                    "--master",
                    &master,
                    "--listen",
                    &listen,
                    "--work-dir",
                    slave_work.to_str().unwrap(),
                    "--tls-dir",
                    &tls,
                    "--resources",
                    SLAVE_RESOURCES,
                    "--attributes",
                    &attributes,
                    "--insecure-open-api",
                ],
            );
            slave_works.insert(host.name.clone(), slave_work);
        }
        let balancer_ip = hosts.all().iter().find(|h| h.name == "lb").cloned();
        if let Some(lb) = &balancer_ip {
            cluster.spawn_in_netns(
                "balancer",
                &lb.netns,
                &[
                    "balancer",
                    "--marathon",
                    &marathon,
                    "--listen-ip",
                    &lb.ip,
                    "--stats",
                    &format!("{}:9090", lb.ip),
                    "--tls-dir",
                    &tls,
                    "--insecure-open-api",
                ],
            );
        }
        Env {
            cluster,
            hosts,
            master,
            marathon,
            slave_works,
            balancer_ip: balancer_ip.map(|h| h.ip),
        }
    }

    /// Run `scenario` in the hub namespace; on failure print the end of every log first.
    fn run<F, Fut>(&self, scenario: F)
    where
        F: FnOnce() -> Fut + Send,
        Fut: std::future::Future<Output = ()>,
    {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.hosts.block_on(scenario)
        }));
        if let Err(panic) = result {
            for name in self.cluster.children.keys() {
                let log = self.cluster.log(name);
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!("---- {name} (last lines) ----");
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
            std::panic::resume_unwind(panic);
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.marathon)
    }

    async fn master_state(&self) -> Option<Value> {
        get_json(&format!("http://{}/master/state", self.master)).await
    }

    /// The master sees `n` slaves connected and none unreachable; Marathon answers.
    async fn wait_ready(&self) {
        let n = self.slave_works.len() as f64;
        eventually(SLOW, "all slaves registered", || async {
            self.master_state()
                .await
                .is_some_and(|s| s["activated_slaves"].as_f64() == Some(n))
        })
        .await;
        eventually(SLOW, "marathon answers", || async {
            get_json(&self.url("/v2/info")).await.is_some()
        })
        .await;
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        let response = client
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("marathon reachable");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Marathon's tasks of `app` (`GET /v2/apps/{app}/tasks`), or None.
    async fn tasks(&self, app: &str) -> Option<Vec<Value>> {
        get_json(&self.url(&format!("/v2/apps{app}/tasks")))
            .await?
            .get("tasks")?
            .as_array()
            .cloned()
    }

    /// Exactly `n` tasks, all RUNNING, and no deployment: the tasks.
    async fn settled(&self, app: &str, n: usize) -> Option<Vec<Value>> {
        let tasks = self.tasks(app).await?;
        let deployments = get_json(&self.url("/v2/deployments")).await?;
        (tasks.len() == n
            && tasks.iter().all(|t| t["state"] == "TASK_RUNNING")
            && deployments.as_array().is_some_and(|d| d.is_empty()))
        .then_some(tasks)
    }

    /// The slave host a Marathon task runs on.
    fn host_of(&self, task: &Value) -> String {
        let ip = task["host"].as_str().unwrap_or_default();
        self.hosts
            .by_ip(ip)
            .unwrap_or_else(|| panic!("a task on an unknown host: {task}"))
            .name
            .clone()
    }

    /// Instances per rack.
    fn per_rack(&self, tasks: &[Value]) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for task in tasks {
            let rack = self.hosts.host(&self.host_of(task)).rack.clone().unwrap();
            *counts.entry(rack).or_insert(0) += 1;
        }
        counts
    }

    /// Task ids the master holds as live (not terminal), reachable or not, and the ids it
    /// holds as TASK_UNREACHABLE.
    async fn master_tasks(&self) -> Option<(BTreeSet<String>, BTreeSet<String>)> {
        let state = self.master_state().await?;
        let (mut live, mut unreachable) = (BTreeSet::new(), BTreeSet::new());
        for f in state["frameworks"].as_array()? {
            for t in f["tasks"].as_array()? {
                let terminal = matches!(
                    t["state"].as_str().unwrap_or_default(),
                    "TASK_FINISHED"
                        | "TASK_FAILED"
                        | "TASK_KILLED"
                        | "TASK_ERROR"
                        | "TASK_LOST"
                        | "TASK_DROPPED"
                        | "TASK_GONE"
                        | "TASK_GONE_BY_OPERATOR"
                );
                if !terminal {
                    live.insert(t["id"].as_str()?.to_string());
                }
            }
            for t in f["unreachable_tasks"].as_array()? {
                let id = t["id"].as_str()?.to_string();
                live.insert(id.clone());
                unreachable.insert(id);
            }
        }
        Some((live, unreachable))
    }

    /// Task cgroups with a process in them, on every slave.
    fn cgroup_tasks(&self) -> BTreeSet<String> {
        self.slave_works
            .values()
            .flat_map(|work| task_cgroups(work).into_keys())
            .collect()
    }

    /// Converged on exactly `n` instances of `app`: all RUNNING with no deployment in Marathon,
    /// every slave connected and none unreachable, the master's live tasks and the task
    /// cgroups on the slaves exactly Marathon's. The tasks, when so.
    async fn converged(&self, app: &str, n: usize) -> Option<Vec<Value>> {
        let tasks = self.settled(app, n).await?;
        let ids: BTreeSet<String> = tasks
            .iter()
            .filter_map(|t| Some(t["id"].as_str()?.to_string()))
            .collect();
        let state = self.master_state().await?;
        let slaves = self.slave_works.len() as f64;
        if state["activated_slaves"].as_f64() != Some(slaves)
            || state["unreachable_slaves"].as_f64() != Some(0.0)
        {
            return None;
        }
        let (live, _) = self.master_tasks().await?;
        (live == ids && self.cgroup_tasks() == ids).then_some(tasks)
    }
}

/// An app of `n` `sleep` processes with `constraints`, each taking half a slave.
fn sleeper(id: &str, n: usize, constraints: Value) -> Value {
    json!({
        "id": id,
        "cmd": "sleep 3600",
        "cpus": 0.1,
        "mem": 32,
        "instances": n,
        "portDefinitions": [],
        "constraints": constraints,
        "backoffSeconds": 1,
    })
}

fn ids(tasks: &[Value]) -> BTreeSet<String> {
    tasks
        .iter()
        .filter_map(|t| Some(t["id"].as_str()?.to_string()))
        .collect()
}

/// Cut `victims` (host names) off with `cut`, check their tasks go UNREACHABLE within the
/// agent timeout and are replaced on the other hosts (`placed_ok` on the new placement), heal
/// with `restore` and wait for exactly the app's instances. Prints the times.
async fn cut_and_heal(
    env: &Env,
    app: &str,
    victims: &[String],
    cut: impl FnOnce(),
    restore: impl FnOnce(),
    placed_ok: impl Fn(&BTreeMap<String, usize>) -> bool,
    what: &str,
) {
    let before = env.settled(app, 4).await.expect("four instances");
    let lost: BTreeSet<String> = ids(&before
        .iter()
        .filter(|t| victims.contains(&env.host_of(t)))
        .cloned()
        .collect::<Vec<_>>());
    assert!(!lost.is_empty(), "{what}: no instance on {victims:?}");

    cut();
    let cut_at = Instant::now(); // determinism-ok: a test measuring wall time
    eventually(
        AGENT_TIMEOUT * 4,
        "the cut-off tasks TASK_UNREACHABLE at the master",
        || async {
            env.master_tasks()
                .await
                .is_some_and(|(_, unreachable)| lost.is_subset(&unreachable))
        },
    )
    .await;
    let unreachable_after = cut_at.elapsed();
    // The operator's CLI, run from the hub like an operator's laptop, shows the hosts cut off
    // as unreachable and the others active.
    let agents = env.cli(&["agent", "list", "--json"]);
    let states: BTreeMap<String, String> = agents
        .as_array()
        .expect("agent list --json is an array")
        .iter()
        .filter_map(|a| {
            let host = env.hosts.by_ip(a["hostname"].as_str()?)?;
            Some((host.name.clone(), a["state"].as_str()?.to_string()))
        })
        .collect();
    for host in env.hosts.all().iter().filter(|h| h.rack.is_some()) {
        let want = if victims.contains(&host.name) {
            "unreachable"
        } else {
            "active"
        };
        assert_eq!(
            states.get(&host.name).map(String::as_str),
            Some(want),
            "{what}: plateau agent list: {agents}"
        );
    }
    let replaced = await_some(SLOW, "replacements running on the other hosts", || async {
        let tasks = env.settled(app, 4).await?;
        (tasks.iter().all(|t| !victims.contains(&env.host_of(t)))
            && placed_ok(&env.per_rack(&tasks)))
        .then_some(tasks)
    })
    .await;
    let replaced_after = cut_at.elapsed();
    let kept = ids(&replaced);
    // Cut off, the old tasks still run on their hosts (nobody could tell them to stop).
    let cgroups = env.cgroup_tasks();
    assert!(
        lost.is_subset(&cgroups),
        "{what}: {lost:?} still run while cut off: {cgroups:?}"
    );

    // A partition seen from both sides before it heals: each cut-off slave, asked from inside
    // its own namespace, has given up its master too (it will have to re-register).
    for name in victims {
        let host = env.hosts.host(name);
        let url = format!("http://{}:5051/state", host.ip);
        eventually(SLOW, "the cut-off slave has lost its master", || async {
            get_json_in(&host.netns, &url)
                .await
                .is_some_and(|s| s["registered"] == false)
        })
        .await;
    }
    let cut_for = cut_at.elapsed();

    restore();
    let restored_at = Instant::now(); // determinism-ok: a test measuring wall time
    let last = await_some(SLOW, "exactly 4 instances after the restore", || {
        env.converged(app, 4)
    })
    .await;
    let converged_after = restored_at.elapsed();
    assert_eq!(
        ids(&last),
        kept,
        "{what}: the replacements stay, the old copies go"
    );
    assert!(env.cgroup_tasks().is_disjoint(&lost));
    eprintln!(
        "{what}: {} instance(s) on {victims:?}; cut → TASK_UNREACHABLE at the master {:.1} s, \
         cut → replacements running elsewhere {:.1} s (placement {:?}); \
         restored after {:.1} s → converged on exactly 4 {:.1} s later",
        lost.len(),
        unreachable_after.as_secs_f64(),
        replaced_after.as_secs_f64(),
        env.per_rack(&replaced),
        cut_for.as_secs_f64(),
        converged_after.as_secs_f64(),
    );
}

#[test]
fn a_slave_cut_off_is_replaced_on_another_rack_and_the_cluster_converges_when_it_returns() {
    let env = Env::start("racks-host", 2, RACKS);
    env.run(|| async {
        env.wait_ready().await;
        let (status, body) = env
            .post(
                "/v2/apps",
                sleeper("/spread", 4, json!([["rack", "GROUP_BY", "2"]])),
            )
            .await;
        assert_eq!(status, 201, "create: {body}");
        let placed = await_some(SLOW, "four instances running", || env.settled("/spread", 4)).await;
        let balanced = BTreeMap::from([("r1".to_string(), 2), ("r2".to_string(), 2)]);
        assert_eq!(
            env.per_rack(&placed),
            balanced,
            "GROUP_BY rack 2: two per rack"
        );
        // The slave of the first instance (by task id) is cut off.
        let first = placed
            .iter()
            .min_by_key(|t| t["id"].as_str().unwrap_or_default().to_string())
            .unwrap();
        let victim = env.host_of(first);
        cut_and_heal(
            &env,
            "/spread",
            std::slice::from_ref(&victim),
            || env.hosts.cut(&victim),
            || env.hosts.restore(&victim),
            |per_rack| *per_rack == balanced,
            "one slave cut off",
        )
        .await;
        let end = env.settled("/spread", 4).await.unwrap();
        assert_eq!(env.per_rack(&end), balanced, "still two per rack");
    });
}

#[test]
fn a_whole_rack_cut_off() {
    let env = Env::start("racks-rack", 3, RACKS);
    env.run(|| async {
        env.wait_ready().await;
        let (status, body) = env
            .post(
                "/v2/apps",
                sleeper("/spread", 4, json!([["rack", "GROUP_BY"]])),
            )
            .await;
        assert_eq!(status, 201, "create: {body}");
        let placed = await_some(SLOW, "four instances running", || env.settled("/spread", 4)).await;
        // The rack with more instances (r1 on a tie) is cut off; the other takes them all.
        let per_rack = env.per_rack(&placed);
        let count = |r: &str| per_rack.get(r).copied().unwrap_or(0);
        let (cut, other) = if count("r1") >= count("r2") {
            ("r1", "r2")
        } else {
            ("r2", "r1")
        };
        let victims: Vec<String> = env.hosts.rack(cut).iter().map(|h| h.name.clone()).collect();
        cut_and_heal(
            &env,
            "/spread",
            &victims,
            || env.hosts.cut_rack(cut),
            || env.hosts.restore_rack(cut),
            |per_rack| per_rack.get(other) == Some(&4),
            &format!("rack {cut} cut off"),
        )
        .await;
    });
}

/// Every task has health results, all alive.
fn all_healthy(tasks: &[Value]) -> bool {
    tasks.iter().all(|t| {
        t["healthCheckResults"]
            .as_array()
            .is_some_and(|r| !r.is_empty() && r.iter().all(|h| h["alive"] == true))
    })
}

/// One `GET /` over a fresh connection with a deadline: Ok(status) or the error.
async fn get_status(client: &reqwest::Client, url: &str) -> Result<u16, String> {
    let response = client.get(url).send().await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    response.bytes().await.map_err(|e| format!("body: {e}"))?;
    Ok(status)
}

#[test]
fn a_drained_host_loses_no_request_through_the_balancer() {
    let layout: &[(&str, Option<&str>)] = &[
        ("ctl", None),
        ("lb", None),
        ("s1", Some("r1")),
        ("s2", Some("r1")),
        ("s3", Some("r2")),
    ];
    let env = Env::start("racks-drain", 4, layout);
    let dir = env.cluster.dir.clone();
    std::fs::write(dir.join("server.py"), super::balancer::SERVER).unwrap();
    env.run(|| async {
        env.wait_ready().await;
        let app = json!({
            "id": "/web",
            "cmd": format!("exec python3 {}/server.py {}", dir.display(), dir.display()),
            "cpus": 0.1,
            "mem": 64,
            "instances": 2,
            "portDefinitions": [{"port": 0}],
            "backoffSeconds": 1,
            "taskKillGracePeriodSeconds": 5,
            "healthChecks": [{
                "protocol": "HTTP",
                "portIndex": 0,
                "path": "/health",
                "gracePeriodSeconds": 30,
                "intervalSeconds": 1,
                "timeoutSeconds": 2,
                "maxConsecutiveFailures": 3
            }],
            "upgradeStrategy": {"minimumHealthCapacity": 1.0, "maximumOverCapacity": 1.0}
        });
        let (status, body) = env.post("/v2/apps", app).await;
        assert_eq!(status, 201, "create: {body}");
        let placed = await_some(SLOW, "two healthy instances", || async {
            env.settled("/web", 2).await.filter(|t| all_healthy(t))
        })
        .await;
        let service_port = get_json(&env.url("/v2/apps/web")).await.unwrap()["app"]
            ["portDefinitions"][0]["port"]
            .as_u64()
            .unwrap();
        let front = format!(
            "http://{}:{service_port}/",
            env.balancer_ip.as_deref().unwrap()
        );
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        eventually(SLOW, "the app answers through the balancer", || async {
            get_status(&client, &front).await == Ok(200)
        })
        .await;

        // A steady client loop through the balancer while the host is drained.
        let stop = Arc::new(AtomicBool::new(false));
        let results: Arc<Mutex<Vec<Result<u16, String>>>> = Arc::default();
        let looper = {
            let (stop, results, client, front) =
                (stop.clone(), results.clone(), client.clone(), front.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let r = get_status(&client, &front).await;
                    results.lock().unwrap().push(r);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        let drained = env.host_of(&placed[0]);
        let ip = env.hosts.host(&drained).ip.clone();
        let machine = json!({"hostname": ip, "ip": ip});
        let now_ns = std::time::SystemTime::now() // determinism-ok: a real maintenance window
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        let master_post = |path: &'static str, body: Value| {
            let client = client.clone();
            let url = format!("http://{}{path}", env.master);
            async move {
                let response = client.post(url).json(&body).send().await.unwrap();
                let status = response.status().as_u16();
                (status, response.text().await.unwrap_or_default())
            }
        };
        let (status, body) = master_post(
            "/master/maintenance/schedule",
            json!({"windows": [{
                "machine_ids": [machine.clone()],
                "unavailability": {
                    "start": {"nanoseconds": now_ns},
                    "duration": {"nanoseconds": 3_600_000_000_000u64}
                }
            }]}),
        )
        .await;
        assert_eq!(status, 200, "schedule: {body}");
        eventually(SLOW, "the instances moved off the drained host", || async {
            env.settled("/web", 2).await.is_some_and(|tasks| {
                all_healthy(&tasks) && tasks.iter().all(|t| env.host_of(t) != drained)
            })
        })
        .await;
        let (status, body) = master_post("/master/machine/down", json!([machine.clone()])).await;
        assert_eq!(status, 200, "machine/down: {body}");
        let work = env.slave_works[&drained].clone();
        eventually(SLOW, "nothing runs on the drained host", || async {
            task_cgroups(&work).is_empty()
        })
        .await;
        // A few more requests once the old instances are gone.
        let more = results.lock().unwrap().len() + 50;
        eventually(SLOW, "50 more requests", || async {
            results.lock().unwrap().len() >= more
        })
        .await;
        stop.store(true, Ordering::Relaxed);
        looper.await.unwrap();
        let results = results.lock().unwrap().clone();
        let failed: Vec<_> = results.iter().filter(|r| **r != Ok(200)).collect();
        assert!(
            failed.is_empty(),
            "{} of {} requests failed during the drain: {failed:?}",
            failed.len(),
            results.len()
        );
        eprintln!("drain of {drained}: {} requests, all 200", results.len());
        let (status, body) = master_post("/master/machine/up", json!([machine])).await;
        assert_eq!(status, 200, "machine/up: {body}");
        eventually(SLOW, "the drained slave registers again", || async {
            env.master_state()
                .await
                .is_some_and(|s| s["activated_slaves"].as_f64() == Some(3.0))
        })
        .await;
    });
}
