//! The Marathon scheduler in the simulator against the real master
//! ([`plateau_master::MasterProcess`] on a memory registry) and two real slaves
//! ([`plateau_slave::SlaveProcess`] with the simulated containerizer): an app of 3 instances
//! under UNIQUE hostname runs 2 and keeps 1 waiting, scaling to 4 without the constraint
//! spreads over both slaves, a task that fails is replaced, scaling down kills the surplus on
//! the slaves, and a crash of Marathon and a restart on the same store keeps the same tasks.

use std::collections::BTreeSet;
use std::time::Duration;

use plateau_marathon::scheduler::{with_marathon, ApiCaller, MarathonConfig, MarathonScheduler};
use plateau_marathon::store::MemoryStore;
use plateau_master::messages::TaskState;
use plateau_master::registry::MemoryRegistry;
use plateau_master::resources::{Attributes, Resources};
use plateau_master::{MasterConfig, MasterProcess};
use plateau_runtime::sim::{Sim, SimConfig};
use plateau_runtime::{NodeAddr, Upid};
use plateau_sdk::{Driver, SchedulerDriver};
use plateau_slave::checkpoint::MemoryCheckpoint;
use plateau_slave::containerizer::{SimContainerizer, SimMachine};
use plateau_slave::health::{ProbeScript, ScriptedProber};
use plateau_slave::process::{MailboxSlot, SlaveEffects, SlaveProcessConfig};
use plateau_slave::{SlaveProcess, SLAVE_PROCESS_NAME};
use serde_json::{json, Value};

type Marathon = SchedulerDriver<MarathonScheduler>;

struct World {
    sim: Sim,
    master: Upid,
    marathon: Upid,
    marathon_node: NodeAddr,
    store: MemoryStore,
    machines: Vec<SimMachine>,
}

impl World {
    fn new(seed: u64) -> World {
        let mut sim = Sim::new(SimConfig::new(seed));
        let master_node = NodeAddr::new("10.0.0.1", 5050);
        let marathon_node = NodeAddr::new("10.0.0.9", 8080);
        sim.add_node(master_node.clone());
        sim.add_node(marathon_node.clone());
        let master = sim.spawn(
            &master_node,
            "master",
            MasterProcess::new(MasterConfig::default(), Box::new(MemoryRegistry::new())).unwrap(),
        );
        let mut machines = Vec::new();
        for i in 0..2u8 {
            let host = format!("10.0.1.{}", i + 1);
            let node = NodeAddr::new(&host, 5051);
            sim.add_node(node.clone());
            let machine = SimMachine::new();
            let slot = MailboxSlot::new();
            let effects = SlaveEffects {
                containerizer: Box::new(SimContainerizer::new(
                    machine.clone(),
                    slot.termination_callback(),
                )),
                prober: Box::new(ScriptedProber::new(
                    ProbeScript::new(true),
                    slot.probe_callback(),
                )),
                checkpoint: Box::new(MemoryCheckpoint::new()),
            };
            let config = SlaveProcessConfig {
                masters: master.clone().into(),
                work_dir: "/var/lib/plateau".into(),
                hostname: host.clone(),
                port: 5051,
                resources: Resources::parse("cpus:2;mem:1024;disk:1000;ports:[31000-31100]")
                    .unwrap(),
                attributes: Attributes::parse("rack:r1").unwrap(),
            };
            let slave = SlaveProcess::new(config, effects, slot).unwrap();
            sim.spawn(&node, SLAVE_PROCESS_NAME, slave);
            machines.push(machine);
        }
        let mut world = World {
            sim,
            master,
            marathon: Upid::new("marathon", &marathon_node),
            marathon_node,
            store: MemoryStore::new(),
            machines,
        };
        world.spawn_marathon();
        world
    }

    fn spawn_marathon(&mut self) {
        let driver = MarathonScheduler::driver(
            MarathonConfig::default(),
            Box::new(self.store.clone()),
            self.master.clone(),
        )
        .unwrap();
        self.marathon = self.sim.spawn(&self.marathon_node, "marathon", driver);
    }

    fn api<R>(&mut self, f: impl FnOnce(&mut MarathonScheduler, &mut Driver<'_, '_>) -> R) -> R {
        self.sim
            .call(&self.marathon, |p: &mut Marathon, ctx| {
                with_marathon(p, ctx, f)
            })
            .expect("marathon runs")
    }

    fn post(&mut self, body: Value) -> u16 {
        let bytes = body.to_string().into_bytes();
        self.api(move |s, d| s.create_app(d, &ApiCaller::default(), &bytes, false))
            .status
    }

    fn put(&mut self, id: &str, body: Value) -> u16 {
        let bytes = body.to_string().into_bytes();
        let id = id.to_string();
        self.api(move |s, d| s.put_app(d, &ApiCaller::default(), &id, &bytes, true, true))
            .status
    }

    /// Task ids Marathon has RUNNING for `app`, with their hosts.
    fn running(&mut self, app: &str) -> Vec<(String, String)> {
        let app = app.to_string();
        self.sim
            .inspect(&self.marathon, move |p: &Marathon| {
                p.scheduler()
                    .instances()
                    .values()
                    .filter(|i| i.app_id == app && i.state == TaskState::Running)
                    .map(|i| (i.task_id.as_str().to_string(), i.host.clone()))
                    .collect()
            })
            .expect("marathon runs")
    }

    /// Instances Marathon knows of `app` (any state).
    fn known(&mut self, app: &str) -> usize {
        let app = app.to_string();
        self.sim
            .inspect(&self.marathon, move |p: &Marathon| {
                p.scheduler()
                    .instances()
                    .values()
                    .filter(|i| i.app_id == app)
                    .count()
            })
            .expect("marathon runs")
    }

    /// Task ids running on the simulated machines.
    fn on_machines(&self) -> BTreeSet<String> {
        self.machines
            .iter()
            .flat_map(|m| m.task_ids())
            .filter(|t| self.machines.iter().any(|m| m.is_running(t.as_str())))
            .map(|t| t.as_str().to_string())
            .collect()
    }

    fn run_until(&mut self, limit: Duration, what: &str, mut done: impl FnMut(&mut World) -> bool) {
        let deadline = self.sim.now() + limit;
        loop {
            if done(self) {
                return;
            }
            assert!(
                self.sim.now() < deadline,
                "not reached within {limit:?}: {what}"
            );
            let step = self
                .sim
                .next_event_at()
                .map_or(deadline, |at| at.min(deadline));
            self.sim.run_until(step);
        }
    }
}

fn ids(tasks: &[(String, String)]) -> BTreeSet<String> {
    tasks.iter().map(|(id, _)| id.clone()).collect()
}

#[test]
fn marathon_on_the_real_master_and_slaves() {
    let mut w = World::new(11);
    let s = Duration::from_secs;

    // UNIQUE hostname, 3 instances, 2 slaves: 2 run, on different hosts; the third waits.
    let status = w.post(json!({
        "id": "/unique",
        "cmd": "sleep 600",
        "cpus": 0.1,
        "mem": 32,
        "instances": 3,
        "constraints": [["hostname", "UNIQUE"]]
    }));
    assert_eq!(status, 201);
    w.run_until(s(30), "2 unique RUNNING", |w| {
        w.running("/unique").len() == 2
    });
    let hosts: BTreeSet<String> = w.running("/unique").into_iter().map(|(_, h)| h).collect();
    assert_eq!(hosts.len(), 2, "one per host");
    w.sim.run_for(s(10));
    assert_eq!(w.running("/unique").len(), 2, "the third never runs");
    assert_eq!(w.on_machines().len(), 2, "the slaves run exactly 2");

    // Without the constraint, 4 instances: all run, on the real slaves.
    assert_eq!(
        w.put("/unique", json!({"constraints": [], "instances": 4})),
        200
    );
    w.run_until(s(60), "4 RUNNING", |w| w.running("/unique").len() == 4);
    w.sim.run_for(s(5));
    assert_eq!(w.known("/unique"), 4, "{:?}", w.running("/unique"));
    assert_eq!(w.on_machines(), ids(&w.running("/unique")));

    // A task that exits 1 after a second: each failure reported by its slave, replaced.
    let status = w.post(json!({
        "id": "/flaky",
        "cmd": "sim:run=1s;exit=1",
        "cpus": 0.1,
        "mem": 32,
        "instances": 1,
        "backoffSeconds": 1
    }));
    assert_eq!(status, 201);
    let mut seen = BTreeSet::new();
    w.run_until(s(120), "flaky replaced twice", |w| {
        seen.extend(ids(&w.running("/flaky")));
        seen.len() >= 3
    });
    let r = w.api(|s, d| s.delete_app(d, "/flaky", true));
    assert_eq!(r.status, 200);
    w.run_until(s(60), "flaky gone", |w| w.known("/flaky") == 0);

    // Scale down to 1: the slaves kill the surplus.
    assert_eq!(w.put("/unique", json!({"instances": 1})), 200);
    w.run_until(s(60), "1 left, everywhere", |w| {
        w.running("/unique").len() == 1 && w.known("/unique") == 1 && w.on_machines().len() == 1
    });
    let survivor = ids(&w.running("/unique"));

    // Marathon crashes and restarts on the same store: the same task, nothing launched twice.
    let node = w.marathon_node.clone();
    w.sim.crash(&node);
    w.sim.run_for(s(5));
    w.sim.restart(&node);
    w.spawn_marathon();
    w.run_until(s(60), "reconciled after restart", |w| {
        ids(&w.running("/unique")) == survivor
    });
    w.sim.run_for(s(10));
    assert_eq!(ids(&w.running("/unique")), survivor);
    assert_eq!(w.on_machines(), survivor);
}
