//! The Marathon scheduler in the simulator, against a fake master that also plays the slaves
//! (`tests/support`): launching, scaling, replacement with backoff, constraints, rolling
//! restarts, health, and a crash and restart of Marathon on the same store.

mod support;

use std::time::Duration;

use plateau_marathon::readiness::ScriptedReadiness;
use plateau_marathon::scheduler::{with_marathon, ApiCaller, MarathonConfig, MarathonScheduler};
use plateau_marathon::store::MemoryStore;
use plateau_master::ids::TaskId;
use plateau_master::messages::{HealthCheckKind, Reason, TaskState};
use plateau_runtime::sim::{Sim, SimConfig};
use plateau_runtime::{Context, NodeAddr, Upid};
use plateau_sdk::{Driver, SchedulerDriver};
use serde_json::{json, Value};
use support::{FakeMaster, FakeSlave};

type Marathon = SchedulerDriver<MarathonScheduler>;

struct Cluster {
    sim: Sim,
    master: Upid,
    marathon: Upid,
    node: NodeAddr,
    store: MemoryStore,
    readiness: ScriptedReadiness,
}

impl Cluster {
    fn new(slaves: Vec<FakeSlave>) -> Self {
        let mut sim = Sim::new(SimConfig::new(7));
        let master_node = NodeAddr::new("10.0.0.1", 5050);
        let node = NodeAddr::new("10.0.0.2", 8080);
        sim.add_node(master_node.clone());
        sim.add_node(node.clone());
        let master = sim.spawn(&master_node, "master", FakeMaster::new(slaves));
        let mut cluster = Cluster {
            sim,
            master,
            marathon: Upid::new("marathon", &node),
            node,
            store: MemoryStore::new(),
            readiness: ScriptedReadiness::new(200),
        };
        cluster.spawn_marathon();
        cluster
    }

    fn spawn_marathon(&mut self) {
        let scheduler =
            MarathonScheduler::new(MarathonConfig::default(), Box::new(self.store.clone()))
                .unwrap()
                .with_readiness_prober(Box::new(self.readiness.clone()));
        let driver =
            SchedulerDriver::new(scheduler.framework_info(), self.master.clone(), scheduler);
        self.marathon = self.sim.spawn(&self.node, "marathon", driver);
    }

    fn api<R>(&mut self, f: impl FnOnce(&mut MarathonScheduler, &mut Driver<'_, '_>) -> R) -> R {
        self.sim
            .call(&self.marathon, |p: &mut Marathon, ctx| {
                with_marathon(p, ctx, f)
            })
            .expect("marathon runs")
    }

    fn read<R>(&mut self, f: impl FnOnce(&MarathonScheduler) -> R) -> R {
        self.sim
            .inspect(&self.marathon, |p: &Marathon| f(p.scheduler()))
            .expect("marathon runs")
    }

    fn master<R>(&mut self, f: impl FnOnce(&FakeMaster) -> R) -> R {
        self.sim.inspect(&self.master, f).expect("master runs")
    }

    fn master_mut<R>(&mut self, f: impl FnOnce(&mut FakeMaster, &mut Context<'_>) -> R) -> R {
        self.sim.call(&self.master, f).expect("master runs")
    }

    fn post(&mut self, body: Value) -> plateau_marathon::scheduler::ApiResponse {
        let bytes = body.to_string().into_bytes();
        self.api(move |s, d| s.create_app(d, &ApiCaller::default(), &bytes, false))
    }

    fn put(
        &mut self,
        id: &str,
        body: Value,
        force: bool,
    ) -> plateau_marathon::scheduler::ApiResponse {
        let bytes = body.to_string().into_bytes();
        let id = id.to_string();
        self.api(move |s, d| s.put_app(d, &ApiCaller::default(), &id, &bytes, force, true))
    }

    /// Runs until `done` holds, checking it after every event; panics after `limit`.
    fn run_until(
        &mut self,
        limit: Duration,
        what: &str,
        mut done: impl FnMut(&mut Cluster) -> bool,
    ) {
        let deadline = self.sim.now() + limit;
        loop {
            if done(self) {
                return;
            }
            assert!(
                self.sim.now() < deadline,
                "not reached within {limit:?}: {what}"
            );
            if !self.sim.step() {
                self.sim.run_for(Duration::from_millis(100));
            }
        }
    }

    fn running(&mut self, prefix: &str) -> usize {
        let prefix = prefix.to_string();
        self.master(move |m| m.running_healthy(&prefix))
    }

    fn live_ids(&mut self, prefix: &str) -> Vec<TaskId> {
        let prefix = prefix.to_string();
        self.master(move |m| {
            m.live()
                .filter(|t| t.info.task_id.as_str().starts_with(&prefix))
                .map(|t| t.info.task_id.clone())
                .collect()
        })
    }

    fn deployments(&mut self) -> usize {
        self.read(|s| s.deployments().len())
    }
}

fn slaves(n: usize) -> Vec<FakeSlave> {
    (0..n)
        .map(|i| FakeMaster::slave(i, "cpus:8;mem:8192;disk:10000;ports:[31000-31100]"))
        .collect()
}

const MINUTE: Duration = Duration::from_secs(60);

#[test]
fn create_scale_up_and_down() {
    let mut c = Cluster::new(slaves(2));
    let r = c.post(
        json!({"id": "/web/api", "cmd": "sleep 1000", "cpus": 0.5, "mem": 64, "instances": 3}),
    );
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(
        r.body.as_ref().unwrap()["deployments"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    c.run_until(MINUTE, "3 running", |c| {
        c.running("web_api.") == 3 && c.deployments() == 0
    });
    // Task ids as Marathon: path without the leading slash, `/` as `_`, a uuid.
    for id in c.live_ids("web_api.") {
        let uuid = id.as_str().strip_prefix("web_api.").unwrap();
        assert_eq!(uuid.len(), 36, "{id}");
    }
    // A service port was assigned from 10000..20000.
    let port = c.read(|s| s.apps()["/web/api"].app.port_definitions[0].port);
    assert_eq!(port, 10000);

    let r = c.put("/web/api", json!({"instances": 5}), false);
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(r.body.as_ref().unwrap()["deploymentId"].is_string());
    c.run_until(MINUTE, "5 running", |c| {
        c.running("web_api.") == 5 && c.deployments() == 0
    });

    let r = c.put("/web/api", json!({"instances": 2}), false);
    assert_eq!(r.status, 200);
    c.run_until(MINUTE, "2 running", |c| {
        c.running("web_api.") == 2 && c.deployments() == 0
    });
    assert_eq!(c.read(|s| s.instances().len()), 2);
    // Scaling is not a config change: the instances kept are the original ones' version stamp.
    let (config, versions) = c.read(|s| {
        let r = &s.apps()["/web/api"];
        (r.config_version().to_string(), r.versions.len())
    });
    assert_eq!(versions, 3);
    assert!(c.read(|s| s.instances().values().all(|i| i.config_version == config)));
    // Nothing left to launch: offers are suppressed.
    c.run_until(MINUTE, "suppressed", |c| c.master(|m| m.suppressed));
}

#[test]
fn failed_task_is_replaced_with_backoff() {
    let mut c = Cluster::new(slaves(1));
    let r = c.post(json!({"id": "crashy", "cmd": "exit 1", "instances": 1,
                          "backoffSeconds": 4, "backoffFactor": 2.0, "maxLaunchDelaySeconds": 60}));
    assert_eq!(r.status, 201);
    c.run_until(MINUTE, "running", |c| c.running("crashy.") == 1);
    let mut last_failure = c.sim.now();
    for expected_delay in [4u64, 8, 16] {
        let id = c.live_ids("crashy.")[0].clone();
        last_failure = c.sim.now();
        c.master_mut(|m, ctx| {
            m.end_task(
                ctx,
                &id,
                TaskState::Failed,
                Some(Reason::CommandExecutorFailed),
            )
        });
        let launches_before = c.master(|m| m.launch_times.len());
        c.run_until(2 * MINUTE, "replacement", |c| {
            c.master(|m| m.launch_times.len()) > launches_before
        });
        let launched_at = c.master(|m| m.launch_times.last().unwrap().1);
        let waited = launched_at - last_failure.since_origin();
        assert!(
            waited >= Duration::from_secs(expected_delay),
            "relaunched after {waited:?}, backoff {expected_delay}s"
        );
        assert!(
            waited < Duration::from_secs(expected_delay + 2),
            "relaunched late: {waited:?}"
        );
        c.run_until(MINUTE, "running", |c| c.running("crashy.") == 1);
    }
    let _ = last_failure;
    // The failure is shown as lastTaskFailure.
    let app = c.read(|s| s.get_app("/crashy", Default::default()));
    assert_eq!(
        app.body.unwrap()["app"]["lastTaskFailure"]["state"],
        "TASK_FAILED"
    );
    // A task killed by someone else is replaced without backoff growth.
    let id = c.live_ids("crashy.")[0].clone();
    c.master_mut(|m, ctx| m.end_task(ctx, &id, TaskState::Killed, None));
    c.run_until(MINUTE, "replaced after kill", |c| {
        c.running("crashy.") == 1 && c.live_ids("crashy.")[0] != id
    });
}

#[test]
fn unique_hostname_on_two_slaves_queues_the_third() {
    let mut c = Cluster::new(slaves(2));
    let r = c.post(json!({"id": "uniq", "cmd": "sleep 1000", "instances": 3,
                          "constraints": [["hostname", "UNIQUE"]]}));
    assert_eq!(r.status, 201);
    c.run_until(MINUTE, "2 running", |c| c.running("uniq.") == 2);
    c.sim.run_for(Duration::from_secs(30));
    assert_eq!(c.running("uniq."), 2);
    let hosts: std::collections::BTreeSet<String> =
        c.read(|s| s.instances().values().map(|i| i.host.clone()).collect());
    assert_eq!(hosts.len(), 2);
    assert_eq!(c.read(|s| s.queued("/uniq")), 1);
    let now = c.sim.now().since_origin();
    let queue = c.read(|s| s.queue_json(now));
    assert_eq!(queue["queue"].as_array().unwrap().len(), 1, "{queue}");
    assert_eq!(queue["queue"][0]["count"], 1);
    assert_eq!(queue["queue"][0]["app"]["id"], "/uniq");
    let rejects = &queue["queue"][0]["processedOffersSummary"]["rejectSummaryLastOffers"];
    let constraint = rejects
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["reason"] == "UnfulfilledConstraint")
        .unwrap();
    assert!(constraint["declined"].as_u64().unwrap() > 0, "{rejects}");
    // The deployment is not done while an instance is missing.
    assert_eq!(c.deployments(), 1);
}

#[test]
fn one_instance_per_agent_follows_the_slaves() {
    let mut c = Cluster::new(slaves(3));
    let r = c.post(json!({"id": "agent", "cmd": "sleep 1000", "instances": 1,
                          "labels": {"PLATEAU_ONE_PER_AGENT": "true"}}));
    assert_eq!(r.status, 201);
    c.run_until(MINUTE, "one per slave", |c| c.running("agent.") == 3);
    let slaves: std::collections::BTreeSet<String> = c.read(|s| {
        s.instances()
            .values()
            .filter_map(|i| i.slave_id.as_ref().map(|x| x.to_string()))
            .collect()
    });
    assert_eq!(slaves.len(), 3);
}

#[test]
fn task_env_ports_and_health_check() {
    let mut c = Cluster::new(slaves(1));
    let r = c.post(json!({"id": "envy", "cmd": "serve", "instances": 1,
        "portDefinitions": [{"port": 0, "name": "http"}, {"port": 12345}],
        "env": {"FOO": "bar", "PORT1": "overridden"},
        "labels": {"team": "core"},
        "healthChecks": [{"protocol": "MESOS_HTTP", "path": "/health", "portIndex": 1,
                          "maxConsecutiveFailures": 2, "gracePeriodSeconds": 10}]}));
    assert_eq!(r.status, 201, "{:?}", r.body);
    c.run_until(MINUTE, "healthy", |c| {
        c.running("envy.") == 1
            && c.read(|s| s.get_app("/envy", Default::default()))
                .body
                .unwrap()["app"]["tasksHealthy"]
                == 1
    });
    let task = c.master(|m| m.live().next().unwrap().info.clone());
    let env = &task.command.environment;
    assert_eq!(env["PORT0"], "31000");
    assert_eq!(env["PORT"], "31000");
    assert_eq!(env["PORT_HTTP"], "31000");
    assert_eq!(env["PORT_12345"], "31001");
    assert_eq!(env["PORTS"], "31000,31001");
    assert_eq!(env["PORT1"], "overridden");
    assert_eq!(env["HOST"], "host-0");
    assert_eq!(env["MARATHON_APP_ID"], "/envy");
    assert_eq!(env["MARATHON_APP_RESOURCE_CPUS"], "1.0");
    assert_eq!(env["MARATHON_APP_RESOURCE_MEM"], "128.0");
    assert_eq!(env["MARATHON_APP_LABEL_TEAM"], "core");
    assert_eq!(env["FOO"], "bar");
    assert!(env["MARATHON_APP_VERSION"].ends_with('Z'));
    let hc = task.health_check.expect("health check sent to the slave");
    assert_eq!(
        hc.kind,
        HealthCheckKind::Http {
            port: 31001,
            path: "/health".into()
        }
    );
    assert_eq!(hc.consecutive_failures, 2);
    assert_eq!(task.resources.ports().len(), 2);
    // healthCheckResults after the slave's verdict.
    let tasks = c.read(|s| s.app_tasks("/envy")).body.unwrap();
    let result = &tasks["tasks"][0]["healthCheckResults"][0];
    assert_eq!(result["alive"], true);
    assert!(result["firstSuccess"].as_str().unwrap().ends_with('Z'));
    assert_eq!(result["taskId"], tasks["tasks"][0]["id"]);
    assert_eq!(tasks["tasks"][0]["servicePorts"], json!([10000, 12345]));
}

#[test]
fn unhealthy_task_is_replaced() {
    let mut c = Cluster::new(slaves(1));
    let r = c.post(json!({"id": "sick", "cmd": "serve", "instances": 2,
        "healthChecks": [{"protocol": "COMMAND", "command": {"value": "true"}}]}));
    assert_eq!(r.status, 201);
    c.run_until(MINUTE, "healthy", |c| {
        c.running("sick.") == 2 && c.deployments() == 0
    });
    let victim = c.live_ids("sick.")[0].clone();
    c.master_mut(|m, ctx| m.set_health(ctx, &victim, false));
    c.sim.run_for(Duration::from_millis(50));
    let app = c
        .read(|s| s.get_app("/sick", Default::default()))
        .body
        .unwrap();
    assert_eq!(
        (
            app["app"]["tasksHealthy"].as_u64(),
            app["app"]["tasksUnhealthy"].as_u64()
        ),
        (Some(1), Some(1))
    );
    // The slave kills it after maxConsecutiveFailures: TASK_FAILED, TaskUnhealthy.
    c.master_mut(|m, ctx| m.end_task(ctx, &victim, TaskState::Failed, Some(Reason::TaskUnhealthy)));
    c.run_until(MINUTE, "replaced", |c| {
        c.running("sick.") == 2 && !c.live_ids("sick.").contains(&victim)
    });
    assert_eq!(c.read(|s| s.instances().len()), 2);
}

/// Ready (running and healthy) instances at the master never drop below
/// ceil(instances × minimumHealthCapacity) during a rolling restart.
#[test]
fn rolling_restart_keeps_minimum_health_capacity() {
    for (min_health, max_over) in [(0.75_f64, 0.0_f64), (1.0, 0.5), (0.5, 0.25), (0.0, 0.0)] {
        let mut c = Cluster::new(slaves(2));
        let r = c.post(json!({"id": "roll", "cmd": "serve v1", "instances": 4,
            "upgradeStrategy": {"minimumHealthCapacity": min_health, "maximumOverCapacity": max_over},
            "healthChecks": [{"protocol": "COMMAND", "command": {"value": "true"}}]}));
        assert_eq!(r.status, 201);
        c.run_until(MINUTE, "4 healthy", |c| {
            c.running("roll.") == 4 && c.deployments() == 0
        });
        let old = c.live_ids("roll.");
        let r = c.put("/roll", json!({"cmd": "serve v2"}), false);
        assert_eq!(r.status, 200, "{:?}", r.body);
        let min_healthy = (4.0_f64 * min_health).ceil() as usize;
        let max_capacity = ((4.0 * (1.0 + max_over)) as usize).max(min_healthy + 1);
        let mut lowest = usize::MAX;
        let mut highest = 0;
        c.run_until(2 * MINUTE, "restart done", |c| {
            let ready = c.running("roll.");
            let live = c.live_ids("roll.").len();
            lowest = lowest.min(ready);
            highest = highest.max(live);
            c.deployments() == 0
        });
        assert!(
            lowest >= min_healthy,
            "{min_health}/{max_over}: {lowest} ready < {min_healthy}"
        );
        assert!(
            highest <= max_capacity,
            "{min_health}/{max_over}: {highest} live > {max_capacity}"
        );
        let new = c.live_ids("roll.");
        assert_eq!(new.len(), 4);
        assert!(new.iter().all(|id| !old.contains(id)), "all replaced");
        assert_eq!(c.running("roll."), 4);
        let cmds: Vec<String> =
            c.master(|m| m.live().map(|t| t.info.command.value.clone()).collect());
        assert!(cmds.iter().all(|cmd| cmd == "serve v2"), "{cmds:?}");
    }
}

#[test]
fn change_during_deployment_is_409_unless_forced_and_cancel_rolls_back() {
    let mut c = Cluster::new(slaves(1));
    let r = c.post(json!({"id": "locked", "cmd": "sleep 1000", "instances": 2,
        "healthChecks": [{"protocol": "COMMAND", "command": {"value": "true"}}]}));
    assert_eq!(r.status, 201);
    c.run_until(MINUTE, "running", |c| {
        c.running("locked.") == 2 && c.deployments() == 0
    });
    let original = c.live_ids("locked.");
    // Tasks of the new version never become healthy: the restart cannot finish.
    c.master_mut(|m, _| m.never_healthy = true);
    let r = c.put("/locked", json!({"cmd": "sleep 2000"}), false);
    assert_eq!(r.status, 200);
    let deployment = r.body.unwrap()["deploymentId"]
        .as_str()
        .unwrap()
        .to_string();
    c.run_until(MINUTE, "new tasks launched", |c| {
        c.live_ids("locked.").len() == 4
    });
    c.sim.run_for(Duration::from_secs(5));
    assert_eq!(c.deployments(), 1, "stuck on unhealthy new tasks");
    let r = c.put("/locked", json!({"instances": 3}), false);
    assert_eq!(r.status, 409);
    let body = r.body.unwrap();
    assert_eq!(body["deployments"][0]["id"], deployment.as_str());
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("locked by one or more deployments"));
    // Rollback: cancel the deployment; the app returns to its first config.
    let id = deployment.clone();
    let r = c.api(move |s, d| s.delete_deployment(d, &id, false));
    assert_eq!(r.status, 200, "{:?}", r.body);
    c.run_until(MINUTE, "rolled back", |c| {
        c.deployments() == 0 && c.running("locked.") == 2
    });
    let cmds: Vec<String> = c.master(|m| m.live().map(|t| t.info.command.value.clone()).collect());
    assert!(cmds.iter().all(|cmd| cmd == "sleep 1000"), "{cmds:?}");
    assert_eq!(
        c.read(|s| s.apps()["/locked"].app.cmd.clone()).as_deref(),
        Some("sleep 1000")
    );
    let mut live = c.live_ids("locked.");
    live.sort();
    let mut original = original;
    original.sort();
    assert_eq!(live, original, "the original instances were kept");
    c.master_mut(|m, _| m.never_healthy = false);
    // Forced change with force=true replaces the locking deployment.
    let r = c.put("/locked", json!({"cmd": "sleep 3000"}), false);
    assert_eq!(r.status, 200);
    let r = c.put("/locked", json!({"instances": 1}), true);
    assert_eq!(r.status, 200);
    assert_eq!(c.deployments(), 1);
    // Unknown deployment.
    let r = c.api(|s, d| s.delete_deployment(d, "nope", false));
    assert_eq!(r.status, 404);
}

#[test]
fn delete_app_kills_everything() {
    let mut c = Cluster::new(slaves(1));
    assert_eq!(
        c.post(json!({"id": "gone", "cmd": "sleep 1000", "instances": 3}))
            .status,
        201
    );
    c.run_until(MINUTE, "running", |c| c.running("gone.") == 3);
    let r = c.api(|s, d| s.delete_app(d, "/gone", true));
    assert_eq!(r.status, 200);
    c.run_until(MINUTE, "all killed", |c| {
        c.live_ids("gone.").is_empty() && c.deployments() == 0
    });
    assert_eq!(c.read(|s| s.instances().len()), 0);
    assert_eq!(
        c.read(|s| s.get_app("/gone", Default::default())).status,
        404
    );
}

/// Marathon crashes in the middle of a rolling restart and comes back on the same store: it
/// re-registers as the same framework, finishes the deployment, launches no task id twice
/// (the fake master asserts it) and loses no instance.
#[test]
fn crash_and_restart_mid_deployment_converges() {
    let mut c = Cluster::new(slaves(2));
    let r = c.post(json!({"id": "durable", "cmd": "serve v1", "instances": 4,
        "upgradeStrategy": {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0.0},
        "healthChecks": [{"protocol": "COMMAND", "command": {"value": "true"}}]}));
    assert_eq!(r.status, 201);
    c.run_until(MINUTE, "running", |c| {
        c.running("durable.") == 4 && c.deployments() == 0
    });
    let framework = c.read(|s| s.framework_id().cloned()).expect("registered");
    let r = c.put("/durable", json!({"cmd": "serve v2"}), false);
    assert_eq!(r.status, 200);
    // Let the restart start: some old instances are killed, some new ones staged.
    c.run_until(MINUTE, "restart under way", |c| {
        c.master(|m| m.launch_times.len()) > 4
    });
    c.sim.crash(&c.node.clone());
    c.sim.run_for(Duration::from_secs(5));
    c.sim.restart(&c.node.clone());
    c.spawn_marathon();
    assert_eq!(
        c.read(|s| s.framework_id().cloned()),
        Some(framework.clone())
    );
    assert_eq!(c.deployments(), 1, "the deployment survived");
    c.run_until(2 * MINUTE, "converged", |c| {
        c.deployments() == 0 && c.running("durable.") == 4
    });
    c.sim.run_for(Duration::from_secs(20));
    let live = c.live_ids("durable.");
    assert_eq!(live.len(), 4, "no lost and no surplus instance");
    let known: Vec<TaskId> = c.read(|s| s.instances().keys().cloned().collect());
    assert_eq!(known, live, "Marathon's instances are the master's tasks");
    let cmds: Vec<String> = c.master(|m| m.live().map(|t| t.info.command.value.clone()).collect());
    assert!(cmds.iter().all(|cmd| cmd == "serve v2"), "{cmds:?}");
    assert!(c.master(|m| m.launches.values().all(|&n| n == 1)));
    let state = c.store.snapshot();
    assert_eq!(state.framework_id, Some(framework));
    assert_eq!(state.instances.keys().cloned().collect::<Vec<_>>(), live);
}

#[test]
fn reconciliation_kills_unknown_tasks_and_replaces_lost_ones() {
    let mut c = Cluster::new(slaves(1));
    assert_eq!(
        c.post(json!({"id": "rec", "cmd": "sleep 1000", "instances": 2}))
            .status,
        201
    );
    c.run_until(MINUTE, "running", |c| c.running("rec.") == 2);
    c.sim.crash(&c.node.clone());
    // While Marathon is away: one of its tasks vanishes from the master, and a stranger appears.
    let ids = c.live_ids("rec.");
    let lost = ids[0].clone();
    c.master_mut(|m, _| {
        m.tasks.remove(&lost);
        let mut stranger = m.tasks.values().next().unwrap().clone();
        stranger.info.task_id = TaskId::new("rec.00000000-0000-4000-8000-000000000000");
        m.tasks.insert(stranger.info.task_id.clone(), stranger);
    });
    c.sim.run_for(Duration::from_secs(2));
    c.sim.restart(&c.node.clone());
    c.spawn_marathon();
    c.run_until(MINUTE, "reconciled", |c| {
        let live = c.live_ids("rec.");
        live.len() == 2
            && !live.contains(&TaskId::new("rec.00000000-0000-4000-8000-000000000000"))
            && c.running("rec.") == 2
    });
    assert!(!c.read(|s| s.instances().contains_key(&lost)));
}

#[test]
fn readiness_check_holds_the_deployment_and_the_old_instances() {
    let mut c = Cluster::new(slaves(2));
    let r = c.post(json!({"id": "ready", "cmd": "serve v1", "instances": 2,
        "portDefinitions": [{"port": 0, "name": "http"}],
        "upgradeStrategy": {"minimumHealthCapacity": 1.0, "maximumOverCapacity": 0.5},
        "readinessChecks": [{"portName": "http", "path": "/ready", "intervalSeconds": 5,
                             "timeoutSeconds": 1, "preserveLastResponse": true}]}));
    assert_eq!(r.status, 201, "{:?}", r.body);
    c.run_until(MINUTE, "deployed", |c| {
        c.running("ready.") == 2 && c.deployments() == 0
    });
    let probes = c.readiness.probes();
    assert!(probes >= 2, "each new task was probed: {probes}");
    let old = c.live_ids("ready.");

    // New tasks answer 503: the restart launches one (maximumOverCapacity 0.5 → 3 at most)
    // and kills no old one while it is not ready (minimumHealthCapacity 1.0).
    c.readiness.set("ready.", 503);
    let r = c.put("/ready", json!({"cmd": "serve v2"}), false);
    assert_eq!(r.status, 200, "{:?}", r.body);
    c.run_until(MINUTE, "a new task runs", |c| {
        c.live_ids("ready.").len() == 3
    });
    c.sim.run_for(Duration::from_secs(30));
    assert_eq!(c.deployments(), 1, "the deployment waits for readiness");
    let live = c.live_ids("ready.");
    assert_eq!(live.len(), 3);
    assert!(
        old.iter().all(|id| live.contains(id)),
        "no old instance killed"
    );
    let deployments = c.read(|s| s.deployments_json());
    let results = &deployments[0]["currentActions"][0]["readinessCheckResults"];
    let waiting: Vec<&Value> = results
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["ready"] == json!(false))
        .collect();
    assert_eq!(waiting.len(), 1, "{results}");
    assert_eq!(waiting[0]["name"], json!("readinessCheck"));
    assert_eq!(waiting[0]["lastResponse"]["status"], json!(503));
    assert!(c.readiness.probes() >= probes + 5, "probed every 5 s");
    // The balancers' feed has no backend for the task that is not ready.
    let not_ready = waiting[0]["taskId"].as_str().unwrap().to_string();
    let routed = c.read(move |s| {
        plateau_marathon::routes::routes_of(s.apps(), s.instances())
            .values()
            .flat_map(|a| a.backends.iter())
            .any(|b| b.task_id == not_ready)
    });
    assert!(!routed, "a task that is not ready gets no traffic");

    // Marathon crashes and comes back while the check fails: the probes resume, and once the
    // tasks answer 200 the restart completes.
    c.sim.crash(&c.node.clone());
    c.sim.run_for(Duration::from_secs(5));
    c.sim.restart(&c.node.clone());
    c.spawn_marathon();
    c.sim.run_for(Duration::from_secs(20));
    assert_eq!(c.deployments(), 1, "still waiting after the restart");
    c.readiness.set("ready.", 200);
    c.run_until(2 * MINUTE, "restart done", |c| {
        c.deployments() == 0 && c.running("ready.") == 2
    });
    let new = c.live_ids("ready.");
    assert_eq!(new.len(), 2);
    assert!(new.iter().all(|id| !old.contains(id)), "all replaced");
    let cmds: Vec<String> = c.master(|m| m.live().map(|t| t.info.command.value.clone()).collect());
    assert!(cmds.iter().all(|cmd| cmd == "serve v2"), "{cmds:?}");
}

#[test]
fn status_updates_are_acknowledged_once_and_only_after_they_are_written() {
    let mut c = Cluster::new(slaves(1));
    let r = c.post(json!({"id": "acks", "cmd": "serve", "instances": 3}));
    assert_eq!(r.status, 201);
    c.run_until(MINUTE, "running", |c| {
        c.running("acks.") == 3 && c.deployments() == 0
    });
    // The acknowledgements follow the commit (a message to self behind the updates).
    c.sim.run_for(Duration::from_secs(1));
    let acked = c.master(|m| m.acked.clone());
    let uuids: std::collections::BTreeSet<[u8; 16]> = acked.iter().map(|(_, u)| *u).collect();
    assert_eq!(uuids.len(), acked.len(), "each update acknowledged once");
    let tasks: std::collections::BTreeSet<&TaskId> = acked.iter().map(|(t, _)| t).collect();
    assert_eq!(tasks.len(), 3, "every task's updates acknowledged");
    // Writes fail from now on: an update Marathon cannot write is not acknowledged (the
    // master will redeliver it to the next Marathon).
    c.store.set_failing(true);
    let id = c.live_ids("acks.")[0].clone();
    c.master_mut(move |m, ctx| m.end_task(ctx, &id, TaskState::Failed, None));
    c.sim.run_for(Duration::from_secs(5));
    assert_eq!(
        c.master(|m| m.acked.len()),
        acked.len(),
        "no ack without the write"
    );
    let marathon = c.marathon.clone();
    let stopped = c
        .sim
        .inspect(&marathon, |p: &Marathon| p.scheduler().failure().is_some())
        .unwrap_or(true);
    assert!(stopped, "Marathon stopped");
}

#[test]
fn a_task_stuck_staging_is_killed_and_replaced_after_the_launch_timeout() {
    let mut c = Cluster::new(slaves(1));
    c.master_mut(|m, _| m.stuck = true);
    let r = c.post(json!({"id": "stuck", "cmd": "serve", "instances": 1}));
    assert_eq!(r.status, 201);
    c.run_until(MINUTE, "launched", |c| c.live_ids("stuck.").len() == 1);
    let first = c.live_ids("stuck.")[0].clone();
    c.sim.run_for(Duration::from_secs(240));
    assert_eq!(c.master(|m| m.kills), 0, "not before the timeout (300 s)");
    c.master_mut(|m, _| m.stuck = false);
    c.run_until(2 * MINUTE, "killed and replaced", |c| {
        c.running("stuck.") == 1 && !c.live_ids("stuck.").contains(&first)
    });
    assert!(c.master(|m| m.kills) >= 1);
}

#[test]
fn instances_move_off_a_draining_slave_keeping_minimum_health_capacity() {
    for (min_health, max_over) in [(1.0_f64, 0.0_f64), (0.5, 0.0), (1.0, 1.0)] {
        let mut c = Cluster::new(slaves(3));
        // UNIQUE hostname: two instances on two of the three slaves; the one moved off a
        // draining slave can only go to the third.
        let r = c.post(json!({"id": "drain", "cmd": "serve", "instances": 2, "cpus": 0.5,
            "constraints": [["hostname", "UNIQUE"]],
            "upgradeStrategy": {"minimumHealthCapacity": min_health, "maximumOverCapacity": max_over},
            "healthChecks": [{"protocol": "COMMAND", "command": {"value": "true"}}]}));
        assert_eq!(r.status, 201, "{:?}", r.body);
        c.run_until(MINUTE, "2 healthy", |c| {
            c.running("drain.") == 2 && c.deployments() == 0
        });
        let hosts_before: std::collections::BTreeSet<String> =
            c.master(|m| m.live().map(|t| t.info.slave_id.to_string()).collect());
        assert_eq!(hosts_before.len(), 2, "UNIQUE: {hosts_before:?}");
        let drained = hosts_before.iter().next().unwrap().clone();
        let index: usize = drained.trim_start_matches('S').parse().unwrap();
        let on_drained = |c: &mut Cluster, slave: &str| -> Vec<TaskId> {
            let slave = slave.to_string();
            c.master(move |m| {
                m.live()
                    .filter(|t| t.info.slave_id.as_str() == slave)
                    .map(|t| t.info.task_id.clone())
                    .collect()
            })
        };
        let before = on_drained(&mut c, &drained);
        assert_eq!(before.len(), 1);
        c.master_mut(|m, ctx| m.drain(ctx, index));
        let min_healthy = (2.0_f64 * min_health).ceil() as usize;
        let max_capacity = ((2.0 * (1.0 + max_over)) as usize).max(min_healthy + 1);
        let mut lowest = usize::MAX;
        let mut highest = 0;
        let mut new_on_drained = Vec::new();
        c.run_until(2 * MINUTE, "moved off the draining slave", |c| {
            lowest = lowest.min(c.running("drain."));
            highest = highest.max(c.live_ids("drain.").len());
            for id in on_drained(c, &drained) {
                if !before.contains(&id) && !new_on_drained.contains(&id) {
                    new_on_drained.push(id);
                }
            }
            c.running("drain.") == 2
                && on_drained(c, &drained).is_empty()
                && c.live_ids("drain.").len() == 2
        });
        assert!(
            lowest >= min_healthy,
            "{min_health}/{max_over}: {lowest} ready < {min_healthy}"
        );
        assert!(
            highest <= max_capacity,
            "{min_health}/{max_over}: {highest} live > {max_capacity}"
        );
        assert!(
            new_on_drained.is_empty(),
            "nothing new on a draining slave: {new_on_drained:?}"
        );
        assert!(
            c.master(|m| m
                .inverse_offer_answers
                .iter()
                .any(|(_, accepted)| *accepted)),
            "the inverse offer is accepted"
        );
        // UNIQUE still holds: one instance on each of the two other slaves.
        let hosts_after: Vec<String> =
            c.master(|m| m.live().map(|t| t.info.slave_id.to_string()).collect());
        let distinct: std::collections::BTreeSet<&String> = hosts_after.iter().collect();
        assert_eq!(distinct.len(), 2, "{hosts_after:?}");
        assert!(!distinct.contains(&drained), "{hosts_after:?}");
    }
}
