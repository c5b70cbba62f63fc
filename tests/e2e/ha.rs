//! Three masters as separate processes on a replicated log.
//!
//! - On loopback: two slaves and this test's framework follow the leader; the leader is
//!   killed with kill -9; a new one is elected, every slave re-registers with it, the tasks
//!   keep running (same processes, none launched twice), the framework launches again; the
//!   standbys redirect `/master/state` and report `master/elected` 0; the killed master
//!   comes back as a follower with the whole registry.
//! - On the multi-host harness (`netns.rs`: one network namespace per master on a bridge): the
//!   leader's link is cut; the other two elect a new leader and the old one, asked from inside
//!   its own namespace, stops acting (`master/elected` 0); healed, it follows the new leader.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use plateau_master::detector::Masters;
use plateau_runtime::tls::{ClusterCa, NodeIdentity};
use plateau_runtime::{Node, NodeConfig};
use plateau_sdk::*;

use super::netns::{get_json_in, Hosts};
use super::support::{
    agreed_master, await_some, eventually, free_port, get_json, task_pids, Cluster,
};

/// Tasks to launch, each on a given host or anywhere.
type Wanted = Arc<Mutex<Vec<(TaskId, Option<String>)>>>;

/// Launches the tasks it is asked for on the first offers that fit; records statuses.
#[derive(Default)]
struct Launcher {
    wanted: Wanted,
    statuses: Arc<Mutex<Vec<TaskStatus>>>,
}

impl Scheduler for Launcher {
    fn resource_offers(&mut self, driver: &mut Driver<'_, '_>, offers: Vec<Offer>) {
        let task_resources = Resources::parse("cpus:0.1;mem:32").unwrap();
        for offer in offers {
            let mut left = offer.resources.clone();
            let mut tasks = Vec::new();
            self.wanted.lock().unwrap().retain(|(id, host)| {
                let fits = host.as_ref().is_none_or(|h| *h == offer.hostname)
                    && left.contains(&task_resources);
                if fits {
                    left = left.checked_sub(&task_resources).unwrap();
                    tasks.push(TaskInfo::new(
                        id.clone(),
                        offer.slave_id.clone(),
                        task_resources.clone(),
                        CommandInfo::shell("sleep 600"),
                    ));
                }
                !fits
            });
            driver.launch_tasks(
                std::slice::from_ref(&offer.id),
                tasks,
                Filters {
                    refuse_seconds: 0.2,
                },
            );
        }
    }

    fn status_update(&mut self, _driver: &mut Driver<'_, '_>, status: &TaskStatus) {
        self.statuses.lock().unwrap().push(status.clone());
    }
}

fn running(statuses: &Arc<Mutex<Vec<TaskStatus>>>, task: &str) -> bool {
    statuses
        .lock()
        .unwrap()
        .iter()
        .any(|s| s.task_id.as_str() == task && s.state == TaskState::Running)
}

fn task_states(state: &serde_json::Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = state["frameworks"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|f| f["tasks"].as_array().cloned().unwrap_or_default())
        .map(|t| {
            (
                t["id"].as_str().unwrap_or_default().to_string(),
                t["state"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

/// `GET url` without following redirects: (status, Location).
async fn get_raw(url: &str) -> Option<(u16, Option<String>)> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .ok()?;
    let response = client.get(url).send().await.ok()?;
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    Some((response.status().as_u16(), location))
}

#[test]
fn three_masters_survive_a_killed_leader() {
    let mut cluster = Cluster::new("ha-kill");
    let tls = cluster.tls();
    let masters: Vec<String> = (0..3)
        .map(|_| format!("127.0.0.1:{}", free_port("127.0.0.1")))
        .collect();
    let peers = masters.join(",");
    for i in 0..3 {
        cluster.spawn_master(i, &masters);
    }
    let mut slave_works = Vec::new();
    for i in 1..=2 {
        let ip = format!("127.0.0.{}", i + 1);
        let (_, work) = cluster.start_slave(
            &format!("slave-{i}"),
            &ip,
            &peers,
            &format!(
                "cpus:2;mem:1024;disk:1000;ports:[{}-{}]",
                31000 + i * 100,
                31099 + i * 100
            ),
        );
        slave_works.push((ip, work));
    }

    actix_rt::System::new().block_on(async {
        let leader = await_some(
            Duration::from_secs(60),
            "a leader all masters agree on",
            || agreed_master(&masters),
        )
        .await;
        let state_of = |m: &str| format!("http://{m}/master/state");
        eventually(Duration::from_secs(60), "two slaves registered", || async {
            get_json(&state_of(&leader))
                .await
                .is_some_and(|s| s["activated_slaves"].as_f64() == Some(2.0))
        })
        .await;

        // The standbys redirect and say they are not elected.
        for m in masters.iter().filter(|m| **m != leader) {
            let (status, location) = get_raw(&state_of(m)).await.unwrap();
            assert_eq!(status, 307, "{m} redirects /master/state");
            assert_eq!(
                location.as_deref(),
                Some(format!("http://{leader}/master/state").as_str())
            );
            let metrics = get_json(&format!("http://{m}/metrics/snapshot"))
                .await
                .unwrap();
            assert_eq!(metrics["master/elected"].as_f64(), Some(0.0));
        }
        let metrics = get_json(&format!("http://{leader}/metrics/snapshot"))
            .await
            .unwrap();
        assert_eq!(metrics["master/elected"].as_f64(), Some(1.0));

        // The web console works from any master: a standby serves its files and forwards its
        // data and event stream to the leader (a redirect would leave the browser's origin).
        for m in &masters {
            let page = reqwest::get(format!("http://{m}/")).await.unwrap();
            assert_eq!(page.status(), 200, "{m} serves the console");
            assert!(page.text().await.unwrap().contains("<main"), "{m}");
            let summary = get_json(&format!("http://{m}/ui/api/summary"))
                .await
                .unwrap();
            assert_eq!(
                summary["self"].as_str(),
                Some(leader.as_str()),
                "{m}: {summary}"
            );
            assert_eq!(summary["agents"]["active"].as_u64(), Some(2), "{m}");
            let agents = get_json(&format!("http://{m}/ui/api/agents?limit=1"))
                .await
                .unwrap();
            assert_eq!(agents["total"].as_u64(), Some(2), "{m}");
            assert_eq!(agents["agents"].as_array().unwrap().len(), 1, "{m}");
            let mut events = reqwest::get(format!("http://{m}/ui/api/events"))
                .await
                .unwrap();
            assert_eq!(events.status(), 200, "{m}");
            let first = tokio::time::timeout(Duration::from_secs(30), events.chunk())
                .await
                .expect("the event stream speaks at once")
                .unwrap()
                .unwrap();
            assert!(
                String::from_utf8_lossy(&first).starts_with("event: summary\n"),
                "{m}: {first:?}"
            );
        }

        // This test's framework follows the masters' list.
        let ca = ClusterCa::load(&tls).unwrap();
        let identity = NodeIdentity::self_issuing(
            &ca,
            "test-framework",
            plateau_runtime::Role::Framework,
            None,
        )
        .unwrap();
        let node = Node::start(NodeConfig::quic(
            "127.0.0.1:0".parse::<SocketAddr>().unwrap(),
            identity,
            7,
        ))
        .unwrap();
        let wanted = Arc::new(Mutex::new(vec![
            (TaskId::new("a"), Some(slave_works[0].0.clone())),
            (TaskId::new("b"), Some(slave_works[1].0.clone())),
        ]));
        let statuses = Arc::new(Mutex::new(Vec::new()));
        let mut info = FrameworkInfo::new("ha-test");
        info.failover_timeout_secs = 600.0;
        let list = Masters::parse(&peers).unwrap();
        let driver = SchedulerDriver::with_masters(
            info,
            list,
            Launcher {
                wanted: wanted.clone(),
                statuses: statuses.clone(),
            },
        );
        let _framework = node.spawn("ha-test", driver).unwrap();
        eventually(Duration::from_secs(60), "tasks a and b RUNNING", || async {
            running(&statuses, "a") && running(&statuses, "b")
        })
        .await;
        let pids_before: Vec<Vec<i32>> = slave_works
            .iter()
            .zip(["a", "b"])
            .map(|((_, work), task)| task_pids(work, task))
            .collect();
        assert!(pids_before.iter().all(|p| !p.is_empty()));

        // kill -9 the leader.
        let killed = masters.iter().position(|m| *m == leader).unwrap();
        cluster.signal(&format!("master-{killed}"), libc::SIGKILL);
        let killed_at = std::time::Instant::now(); // determinism-ok: a test measuring wall time
        let live: Vec<String> = masters.iter().filter(|m| **m != leader).cloned().collect();
        let new_leader = await_some(Duration::from_secs(30), "a new leader", || async {
            agreed_master(&live).await.filter(|l| *l != leader)
        })
        .await;
        eventually(
            Duration::from_secs(30),
            "both slaves re-registered with the new leader",
            || async {
                get_json(&state_of(&new_leader)).await.is_some_and(|s| {
                    s["activated_slaves"].as_f64() == Some(2.0)
                        && task_states(&s)
                            == vec![
                                ("a".to_string(), "TASK_RUNNING".to_string()),
                                ("b".to_string(), "TASK_RUNNING".to_string()),
                            ]
                })
            },
        )
        .await;
        eprintln!(
            "master failover (kill -9 to every slave re-registered): {:?}",
            killed_at.elapsed()
        );
        // The same task processes: nothing was launched again.
        let pids_after: Vec<Vec<i32>> = slave_works
            .iter()
            .zip(["a", "b"])
            .map(|((_, work), task)| task_pids(work, task))
            .collect();
        assert_eq!(pids_after, pids_before);
        // The framework follows: a new task launches through the new leader.
        wanted.lock().unwrap().push((TaskId::new("c"), None));
        eventually(
            Duration::from_secs(60),
            "task c RUNNING after the failover",
            || async { running(&statuses, "c") },
        )
        .await;
        let launched_a = statuses
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.task_id.as_str() == "a" && s.state == TaskState::Starting)
            .count();
        assert!(launched_a <= 1, "task a launched once");

        // The killed master comes back as a follower with the whole registry.
        cluster.spawn_master(killed, &masters);
        eventually(
            Duration::from_secs(60),
            "the restarted master follows",
            || async { agreed_master(&masters).await.as_deref() == Some(new_leader.as_str()) },
        )
        .await;
        let (status, _) = get_raw(&state_of(&leader)).await.unwrap();
        assert_eq!(status, 307);
        node.shutdown();
    });
}

// ----- a partition, in network namespaces ---------------------------------------------------

#[test]
fn an_isolated_leader_is_replaced_and_stops_acting() {
    // Hosts before the cluster: the cluster (processes) is dropped first, then the namespaces.
    let hosts = Hosts::new(
        "ha-partition",
        1,
        &[("m1", None), ("m2", None), ("m3", None)],
    );
    let mut cluster = Cluster::new("ha-partition");
    let dir = cluster.dir.clone();
    let tls = cluster.tls();
    let addrs: Vec<String> = hosts
        .all()
        .iter()
        .map(|h| format!("{}:5050", h.ip))
        .collect();
    let peers = addrs.join(",");
    for (i, addr) in addrs.iter().enumerate() {
        let work = dir.join(format!("master-{i}"));
        cluster.spawn_in_netns(
            &format!("master-{i}"),
            &hosts.all()[i].netns,
            &[
                "master",
                "--listen",
                addr,
                "--peers",
                &peers,
                "--work-dir",
                work.to_str().unwrap(),
                "--tls-dir",
                tls.to_str().unwrap(),
                // A network address without credentials: open on purpose, this test is about
                // leadership (the refusal itself is tested in security.rs).
                "--insecure-open-api",
            ],
        );
    }
    hosts.block_on(|| async {
        let leader = await_some(Duration::from_secs(60), "a leader", || {
            agreed_master(&addrs)
        })
        .await;
        let old = addrs.iter().position(|a| *a == leader).unwrap();
        let old_host = &hosts.all()[old];
        hosts.cut(&old_host.name);
        let others: Vec<String> = addrs.iter().filter(|a| **a != leader).cloned().collect();
        let new_leader = await_some(
            Duration::from_secs(30),
            "a new leader on the majority side",
            || async { agreed_master(&others).await.filter(|l| *l != leader) },
        )
        .await;
        // The old leader, asked from inside its own namespace, no longer acts.
        let ask_old = |path: &str| format!("http://{}{path}", addrs[old]);
        eventually(
            Duration::from_secs(10),
            "the isolated master stops acting",
            || async {
                get_json_in(&old_host.netns, &ask_old("/metrics/snapshot"))
                    .await
                    .is_some_and(|m| m["master/elected"].as_f64() == Some(0.0))
            },
        )
        .await;
        assert!(get_json_in(&old_host.netns, &ask_old("/master/state"))
            .await
            .is_none_or(|s| s.get("activated_slaves").is_none()));
        // Healed, it follows the new leader.
        hosts.restore(&old_host.name);
        eventually(
            Duration::from_secs(30),
            "the healed master follows the new leader",
            || async { agreed_master(&addrs).await.as_deref() == Some(new_leader.as_str()) },
        )
        .await;
    });
}
