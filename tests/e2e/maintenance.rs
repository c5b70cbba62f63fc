//! Maintenance end to end: `plateau master`, two `plateau slave`s (A on 127.0.0.2, B on
//! 127.0.0.3) and `plateau marathon` as separate processes, driven through the master's
//! maintenance API and Marathon's REST API.
//!
//! An app of two instances runs on A (B joins after it was placed). A's machine is scheduled
//! for maintenance: its offers carry the window, Marathon gets an inverse offer, accepts it,
//! and moves both instances to B, one at a time, the count of RUNNING tasks never below the
//! app's minimum (`minimumHealthCapacity` 1.0: 2). Then `machine/down` removes A (nothing of
//! the app left there, no task process in its cgroups), A cannot register while down, and
//! `machine/up` lets it register again. Bad requests get a 400 naming the field.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

use super::support::{catch_panic, eventually, get_json, task_cgroups, Cluster};

/// Deadline for anything that involves launching processes on a slow, shared machine.
const SLOW: Duration = Duration::from_secs(120);

const A: &str = "127.0.0.2";
const B: &str = "127.0.0.3";

struct Env {
    cluster: Cluster,
    master: String,
    marathon: String,
    slaves: BTreeMap<String, PathBuf>,
    client: reqwest::Client,
}

impl Env {
    fn start() -> Env {
        let mut cluster = Cluster::new("maintenance");
        let master = cluster.start_master();
        let mut slaves = BTreeMap::new();
        let (_, work) = cluster.start_slave(
            "slave-a",
            A,
            &master,
            "cpus:1;mem:512;disk:1000;ports:[33100-33199]",
        );
        slaves.insert(A.to_string(), work);
        let marathon = cluster.start_marathon(&master);
        Env {
            cluster,
            master,
            marathon,
            slaves,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
        }
    }

    fn start_b(&mut self) {
        let master = self.master.clone();
        let (_, work) = self.cluster.start_slave(
            "slave-b",
            B,
            &master,
            "cpus:1;mem:512;disk:1000;ports:[33200-33299]",
        );
        self.slaves.insert(B.to_string(), work);
    }

    fn master_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.master)
    }

    async fn post(&self, url: &str, body: Value) -> (u16, Value) {
        let resp = self
            .client
            .post(url)
            .json(&body)
            .send()
            .await
            .expect("reachable");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn state(&self) -> Option<Value> {
        get_json(&self.master_url("/master/state")).await
    }

    /// The slave objects of `/master/state` by host name.
    async fn slaves_by_host(&self) -> Option<BTreeMap<String, Value>> {
        let state = self.state().await?;
        Some(
            state["slaves"]
                .as_array()?
                .iter()
                .map(|s| {
                    (
                        s["hostname"].as_str().unwrap_or_default().to_string(),
                        s.clone(),
                    )
                })
                .collect(),
        )
    }

    /// RUNNING tasks at the master: (task id, slave host).
    async fn running(&self) -> Option<Vec<(String, String)>> {
        let state = self.state().await?;
        let hosts: BTreeMap<String, String> = state["slaves"]
            .as_array()?
            .iter()
            .map(|s| {
                (
                    s["id"].as_str().unwrap_or_default().to_string(),
                    s["hostname"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        let mut out = Vec::new();
        for f in state["frameworks"].as_array()? {
            for t in f["tasks"].as_array().cloned().unwrap_or_default() {
                if t["state"] == "TASK_RUNNING" {
                    let slave = t["slave_id"].as_str().unwrap_or_default();
                    out.push((
                        t["id"].as_str().unwrap_or_default().to_string(),
                        hosts.get(slave).cloned().unwrap_or_default(),
                    ));
                }
            }
        }
        Some(out)
    }

    async fn marathon_tasks(&self) -> Vec<Value> {
        get_json(&format!("http://{}/v2/apps/web/tasks", self.marathon))
            .await
            .and_then(|v| v["tasks"].as_array().cloned())
            .unwrap_or_default()
    }

    fn dump_logs(&self) {
        for name in ["marathon", "master", "slave-a", "slave-b"] {
            let log = self.cluster.log(name);
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("---- {name} log (last lines) ----");
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

#[test]
fn draining_moves_marathon_instances_then_down_and_up() {
    let mut env = Env::start();
    let result = actix_rt::System::new().block_on(async {
        let test = std::panic::AssertUnwindSafe(scenario(&mut env));
        catch_panic(test).await
    });
    if let Err(panic) = result {
        env.dump_logs();
        std::panic::resume_unwind(panic);
    }
}

fn machine_a() -> Value {
    json!({"hostname": A, "ip": A})
}

async fn scenario(env: &mut Env) {
    eventually(SLOW, "slave A registered", || async {
        env.state()
            .await
            .is_some_and(|s| s["activated_slaves"].as_f64() == Some(1.0))
    })
    .await;
    let marathon = format!("http://{}/v2/apps", env.marathon);
    eventually(SLOW, "marathon answers", || async {
        get_json(&format!("http://{}/v2/info", env.marathon))
            .await
            .is_some()
    })
    .await;
    let app = json!({"id": "web", "cmd": "sleep 600", "cpus": 0.1, "mem": 32, "instances": 2,
        "upgradeStrategy": {"minimumHealthCapacity": 1.0, "maximumOverCapacity": 0.5}});
    let (status, body) = env.post(&marathon, app).await;
    assert_eq!(status, 201, "{body}");
    eventually(SLOW, "2 instances RUNNING on A", || async {
        env.running()
            .await
            .is_some_and(|r| r.len() == 2 && r.iter().all(|(_, h)| h == A))
    })
    .await;
    env.start_b();
    eventually(SLOW, "slave B registered", || async {
        env.state()
            .await
            .is_some_and(|s| s["activated_slaves"].as_f64() == Some(2.0))
    })
    .await;

    // Bad requests: 400 naming the field, nothing scheduled.
    let schedule_url = env.master_url("/master/maintenance/schedule");
    let (status, body) = env
        .post(
            &schedule_url,
            json!({"windows": [{"machine_ids": [{"hostname": A, "ip": "not-an-ip"}],
                "unavailability": {"start": {"nanoseconds": 0}}}]}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["field"], "windows[0].machine_ids[0].ip", "{body}");
    let (status, body) = env
        .post(&env.master_url("/master/machine/up"), json!([machine_a()]))
        .await;
    assert_eq!(status, 400, "UP of a machine that is not DOWN: {body}");
    assert_eq!(body["field"], "machine_ids[0]", "{body}");

    // Schedule A: DRAINING.
    let start_nanos = (std::time::SystemTime::now() // determinism-ok: a real-time test
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        + 3_600_000_000_000) as i64;
    let schedule = json!({"windows": [{"machine_ids": [machine_a()],
        "unavailability": {"start": {"nanoseconds": start_nanos},
                           "duration": {"nanoseconds": 3_600_000_000_000i64}}}]});
    let (status, body) = env.post(&schedule_url, schedule.clone()).await;
    assert_eq!(status, 200, "{body}");
    let got = get_json(&schedule_url).await.expect("schedule");
    assert_eq!(got, schedule);
    let slaves = env.slaves_by_host().await.expect("state");
    assert_eq!(slaves[A]["maintenance_mode"], "DRAINING");
    assert_eq!(
        slaves[A]["unavailability"]["start"]["nanoseconds"],
        start_nanos
    );
    assert_eq!(slaves[B]["maintenance_mode"], "UP");

    // Marathon moves both instances to B; RUNNING never below 2.
    let mut lowest = usize::MAX;
    let deadline = tokio::time::Instant::now() + SLOW;
    loop {
        if let Some(running) = env.running().await {
            lowest = lowest.min(running.len());
            if running.len() == 2 && running.iter().all(|(_, h)| h == B) {
                let tasks = env.marathon_tasks().await;
                if tasks.len() == 2 && tasks.iter().all(|t| t["host"] == B) {
                    break;
                }
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "instances not moved to B in time"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(lowest >= 2, "RUNNING dropped to {lowest} during the move");
    let status_url = env.master_url("/master/maintenance/status");
    let status = get_json(&status_url).await.expect("status");
    let draining = status["draining_machines"].as_array().expect("draining");
    assert_eq!(draining.len(), 1, "{status}");
    assert_eq!(draining[0]["id"], machine_a());
    let statuses = draining[0]["statuses"].as_array().expect("statuses");
    assert!(
        statuses.iter().any(|s| s["status"] == "ACCEPT"),
        "Marathon accepted the inverse offer: {status}"
    );

    // DOWN: A is removed, nothing of the app left on it.
    let (status, body) = env
        .post(
            &env.master_url("/master/machine/down"),
            json!([machine_a()]),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    eventually(SLOW, "A removed", || async {
        env.slaves_by_host()
            .await
            .is_some_and(|s| !s.contains_key(A) && s.contains_key(B))
    })
    .await;
    let a_work = env.slaves[A].clone();
    eventually(SLOW, "no task process on A", || async {
        task_cgroups(&a_work).is_empty()
    })
    .await;
    let status = get_json(&status_url).await.expect("status");
    assert_eq!(status["down_machines"], json!([machine_a()]), "{status}");
    assert_eq!(status["draining_machines"], json!([]), "{status}");
    // While DOWN, A does not come back (it keeps asking).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let slaves = env.slaves_by_host().await.expect("state");
    assert!(!slaves.contains_key(A), "A registered while DOWN");
    assert_eq!(env.running().await.map(|r| r.len()), Some(2));

    // UP: out of the schedule, A registers again, offered as usual.
    let (status, body) = env
        .post(&env.master_url("/master/machine/up"), json!([machine_a()]))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        get_json(&schedule_url).await.expect("schedule"),
        json!({"windows": []})
    );
    eventually(SLOW, "A registered again, UP", || async {
        env.slaves_by_host()
            .await
            .is_some_and(|s| s.get(A).is_some_and(|a| a["maintenance_mode"] == "UP"))
    })
    .await;
}
