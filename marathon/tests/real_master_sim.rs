//! The Marathon scheduler in the simulator against the real master
//! ([`plateau_master::MasterProcess`] on a memory registry) and two real slaves
//! ([`plateau_slave::SlaveProcess`] with the simulated containerizer): an app of 3 instances
//! under UNIQUE hostname runs 2 and keeps 1 waiting, scaling to 4 without the constraint
//! spreads over both slaves, a task that fails is replaced, scaling down kills the surplus on
//! the slaves, and a crash of Marathon and a restart on the same store keeps the same tasks.
//!
//! Leader + standbys: three real masters on a replicated log and three Marathons with leader
//! election, the invariants checked after every step (one acting leader at most, never more
//! tasks of an app than asked, no task id launched twice): a standby takes over a crashed
//! leader and answers a write within 5 s, with every acknowledged write and the running
//! tasks kept; a paused leader that wakes up writes and launches nothing; a master failover
//! does not depose the leading Marathon.

use std::collections::BTreeSet;
use std::time::Duration;

use plateau_marathon::scheduler::{
    with_marathon, ApiAnswer, ApiCaller, MarathonConfig, MarathonScheduler,
};
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

// ---- leader + standbys: three replicated masters, three Marathons --------------------------

/// A cluster of three real masters on a replicated log, two real slaves (simulated machines)
/// and three Marathons run as leader + standbys, with the invariants checked after every step
/// of the simulation: at most one Marathon acting as leader, never more tasks of an app
/// running than were ever asked for it, no task id launched twice.
struct HaWorld {
    sim: Sim,
    masters: Vec<Upid>,
    marathons: Vec<Upid>,
    machines: Vec<SimMachine>,
    /// The most instances ever asked of each app (by its task id prefix).
    asked: std::collections::BTreeMap<String, u32>,
    /// Task ids seen running, and those seen gone after running.
    seen: BTreeSet<String>,
    gone: BTreeSet<String>,
}

/// The session ttl of the Marathons in these tests (the default).
const HA_TTL: Duration = plateau_marathon::limits::LEADER_SESSION_TTL_DEFAULT;

impl HaWorld {
    fn new(seed: u64, marathons: usize) -> HaWorld {
        use plateau_master::replicated::MasterState;
        use plateau_replica::storage::MemoryDisk;
        use plateau_replica::{Replica, ReplicaConfig};

        let mut sim = Sim::new(SimConfig::new(seed));
        let masters: Vec<Upid> = (1..=3)
            .map(|i| Upid::new("master", &NodeAddr::new(format!("10.0.0.{i}"), 5050)))
            .collect();
        for (i, master) in masters.iter().enumerate() {
            sim.add_node(master.node());
            let mut replica = Replica::open(
                ReplicaConfig::new(master.clone()),
                Box::new(MemoryDisk::new()),
                MasterState::default(),
                0,
            )
            .unwrap();
            replica.bootstrap(&masters);
            let config = MasterConfig {
                seed: i as u64,
                ..MasterConfig::default()
            };
            sim.spawn(
                &master.node(),
                "master",
                MasterProcess::replicated(config, replica),
            );
        }
        let group = plateau_sdk::Masters::new(masters.clone()).unwrap();
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
                masters: group.clone(),
                work_dir: "/var/lib/plateau".into(),
                hostname: host.clone(),
                port: 5051,
                resources: Resources::parse("cpus:4;mem:4096;disk:1000;ports:[31000-31100]")
                    .unwrap(),
                attributes: Attributes::parse("rack:r1").unwrap(),
            };
            let slave = SlaveProcess::new(config, effects, slot).unwrap();
            sim.spawn(&node, SLAVE_PROCESS_NAME, slave);
            machines.push(machine);
        }
        let mut world = HaWorld {
            sim,
            masters,
            marathons: Vec::new(),
            machines,
            asked: Default::default(),
            seen: BTreeSet::new(),
            gone: BTreeSet::new(),
        };
        for i in 0..marathons {
            let node = Self::marathon_node(i);
            world.sim.add_node(node.clone());
            let upid = world.spawn_marathon(i);
            world.marathons.push(upid);
        }
        world
    }

    fn marathon_node(i: usize) -> NodeAddr {
        NodeAddr::new(format!("10.0.2.{}", i + 1), 8080)
    }

    fn spawn_marathon(&mut self, i: usize) -> Upid {
        let node = Self::marathon_node(i);
        let config = MarathonConfig {
            hostname: node.host.to_string(),
            http_port: node.port,
            ha: true,
            ..MarathonConfig::default()
        };
        let group = plateau_sdk::Masters::new(self.masters.clone()).unwrap();
        let driver = MarathonScheduler::driver_with_leader_election(config, group, HA_TTL);
        self.sim.spawn(&node, "marathon", driver)
    }

    /// Marathons that act as the leader now (elected, state loaded, sure of their lease).
    fn acting(&mut self) -> Vec<usize> {
        let now = self.sim.now().since_origin();
        (0..self.marathons.len())
            .filter(|&i| {
                let upid = self.marathons[i].clone();
                self.sim
                    .inspect(&upid, |p: &Marathon| {
                        p.state().is_leading(now) && p.scheduler().is_acting()
                    })
                    .unwrap_or(false)
            })
            .collect()
    }

    fn scheduler<R>(&mut self, i: usize, f: impl FnOnce(&MarathonScheduler) -> R) -> Option<R> {
        let upid = self.marathons[i].clone();
        self.sim.inspect(&upid, |p: &Marathon| f(p.scheduler()))
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

    fn running_of(&self, prefix: &str) -> BTreeSet<String> {
        self.on_machines()
            .into_iter()
            .filter(|t| t.rsplit_once('.').is_some_and(|(p, _)| p == prefix))
            .collect()
    }

    /// The invariants, after one step.
    fn check(&mut self) {
        let acting = self.acting();
        assert!(
            acting.len() <= 1,
            "two Marathons act as leader at once: {acting:?} at {:?}",
            self.sim.now()
        );
        let running = self.on_machines();
        for task in &running {
            assert!(
                !self.gone.contains(task),
                "task {task} runs again after it ended: launched twice"
            );
        }
        for task in self.seen.difference(&running) {
            self.gone.insert(task.clone());
        }
        self.seen.extend(running.iter().cloned());
        let mut per_app: std::collections::BTreeMap<&str, u32> = Default::default();
        for task in &running {
            if let Some((prefix, _)) = task.rsplit_once('.') {
                *per_app.entry(prefix).or_default() += 1;
            }
        }
        for (prefix, n) in per_app {
            let asked = self.asked.get(prefix).copied().unwrap_or(0);
            assert!(
                n <= asked,
                "app {prefix} runs {n} tasks, more than the {asked} ever asked, at {:?}",
                self.sim.now()
            );
        }
    }

    /// One event (or a little time when none is due), then the invariants.
    fn step(&mut self) {
        if !self.sim.step() {
            self.sim.run_for(Duration::from_millis(10));
        }
        self.check();
    }

    fn run_for(&mut self, d: Duration) {
        let until = self.sim.now() + d;
        while self.sim.now() < until {
            match self.sim.next_event_at() {
                Some(at) if at <= until => {
                    self.sim.step();
                }
                _ => self.sim.run_until(until),
            }
            self.check();
        }
    }

    fn run_until(
        &mut self,
        limit: Duration,
        what: &str,
        mut done: impl FnMut(&mut HaWorld) -> bool,
    ) {
        let deadline = self.sim.now() + limit;
        while !done(self) {
            assert!(
                self.sim.now() < deadline,
                "not reached within {limit:?}: {what}"
            );
            self.step();
        }
    }

    /// Waits for a Marathon other than `not` to act as the leader.
    fn await_leader(&mut self, limit: Duration, not: Option<usize>) -> usize {
        let mut leader = None;
        self.run_until(limit, "a Marathon leads", |w| {
            leader = w.acting().first().copied().filter(|l| Some(*l) != not);
            leader.is_some()
        });
        leader.unwrap()
    }

    /// Calls the API of Marathon `i` and waits for the answer (until its writes commit).
    fn api(
        &mut self,
        i: usize,
        limit: Duration,
        f: impl FnOnce(
                &mut MarathonScheduler,
                &mut Driver<'_, '_>,
            ) -> plateau_marathon::scheduler::ApiResponse
            + 'static,
    ) -> plateau_marathon::scheduler::ApiResponse {
        let mut answer = self.api_start(i, f);
        let mut response = None;
        self.run_until(limit, "the API answers", |_| {
            response = answer.try_take();
            response.is_some()
        });
        response.unwrap()
    }

    /// Calls the API of Marathon `i`; the answer may wait for commits.
    fn api_start(
        &mut self,
        i: usize,
        f: impl FnOnce(
                &mut MarathonScheduler,
                &mut Driver<'_, '_>,
            ) -> plateau_marathon::scheduler::ApiResponse
            + 'static,
    ) -> ApiAnswer {
        let upid = self.marathons[i].clone();
        self.sim
            .call(&upid, |p: &mut Marathon, ctx| {
                with_marathon(p, ctx, |s, d| {
                    if !s.serves_api() {
                        return ApiAnswer::Ready(
                            plateau_marathon::scheduler::ApiResponse::message(503, "standby"),
                        );
                    }
                    let response = f(s, d);
                    s.answer(d, response)
                })
            })
            .expect("marathon runs")
    }

    /// Asks for `instances` of app `id` (a task id prefix of `id` without the slash): the
    /// bound of the invariant grows before the request is made.
    fn ask(&mut self, id: &str, instances: u32) {
        let prefix = id.trim_start_matches('/').replace('/', "_");
        let asked = self.asked.entry(prefix).or_default();
        *asked = (*asked).max(instances);
    }

    fn post(&mut self, i: usize, id: &str, instances: u32) -> u16 {
        self.ask(id, instances);
        let body = sleeper(id, instances);
        self.api(i, Duration::from_secs(10), move |s, d| {
            s.create_app(d, &ApiCaller::default(), &body, false)
        })
        .status
    }

    fn scale(&mut self, i: usize, id: &str, instances: u32) -> u16 {
        self.ask(id, instances);
        let body = json!({ "instances": instances }).to_string().into_bytes();
        let id = id.to_string();
        self.api(i, Duration::from_secs(10), move |s, d| {
            s.put_app(d, &ApiCaller::default(), &id, &body, true, true)
        })
        .status
    }

    /// (app id → instances asked) as Marathon `i` has them.
    fn apps_of(&mut self, i: usize) -> Vec<(String, u32)> {
        self.scheduler(i, |s| {
            s.apps()
                .values()
                .map(|r| (r.app.id.clone(), r.app.instances))
                .collect()
        })
        .unwrap_or_default()
    }

    /// Task ids Marathon `i` knows of `app`.
    fn instances_of(&mut self, i: usize, app: &str) -> BTreeSet<String> {
        let app = app.to_string();
        self.scheduler(i, move |s| {
            s.app_instances(&app)
                .map(|inst| inst.task_id.as_str().to_string())
                .collect()
        })
        .unwrap_or_default()
    }
}

fn sleeper(id: &str, instances: u32) -> Vec<u8> {
    json!({"id": id, "cmd": "sleep 600", "cpus": 0.1, "mem": 32, "instances": instances})
        .to_string()
        .into_bytes()
}

#[test]
fn a_standby_marathon_takes_over_a_crashed_leader_with_every_acknowledged_write() {
    for seed in [21, 22] {
        let mut w = HaWorld::new(seed, 3);
        let s = Duration::from_secs;
        let leader = w.await_leader(s(30), None);
        w.run_until(s(30), "the leader registered", |w| {
            let upid = w.marathons[leader].clone();
            w.sim
                .inspect(&upid, |p: &Marathon| p.state().is_connected())
                .unwrap_or(false)
        });
        // The standbys know the leader and do not serve the API themselves.
        let leader_address = HaWorld::marathon_node(leader).to_string();
        w.run_until(s(10), "the standbys know the leader", |w| {
            (0..3).all(|i| {
                w.scheduler(i, |s| s.leader()).flatten().as_deref() == Some(leader_address.as_str())
            })
        });
        for i in (0..3).filter(|&i| i != leader) {
            let (serves, seen) = w.scheduler(i, |s| (s.serves_api(), s.leader())).unwrap();
            assert!(!serves, "seed {seed}: standby {i} serves the API");
            assert_eq!(
                seen.as_deref(),
                Some(leader_address.as_str()),
                "seed {seed}"
            );
        }

        assert_eq!(w.post(leader, "/web", 3), 201);
        assert_eq!(w.post(leader, "/db", 1), 201);
        w.run_until(s(60), "4 tasks running", |w| w.on_machines().len() == 4);
        let web_before = w.running_of("web");
        let db_before = w.running_of("db");
        // Acknowledged just before the crash: a scale-up and a new app.
        assert_eq!(w.scale(leader, "/web", 4), 200);
        assert_eq!(w.post(leader, "/cache", 2), 201);
        // Not acknowledged (in flight at the crash): may or may not land.
        w.ask("/late", 1);
        let _late = w.api_start(leader, |s, d| {
            s.create_app(d, &ApiCaller::default(), &sleeper("/late", 1), false)
        });

        let node = HaWorld::marathon_node(leader);
        w.sim.crash(&node);
        let crashed_at = w.sim.now();
        let next = w.await_leader(s(30), Some(leader));
        assert_ne!(next, leader);
        // The new leader answers a write.
        assert_eq!(w.scale(next, "/db", 2), 200, "seed {seed}");
        let took = w.sim.now() - crashed_at;
        eprintln!("seed {seed}: a standby answered a write {took:?} after the leader crashed");
        assert!(took <= s(5), "seed {seed}: took {took:?}");

        // Every acknowledged write is there; the running tasks were kept.
        let apps = w.apps_of(next);
        for (id, n) in [("/web", 4), ("/db", 2), ("/cache", 2)] {
            assert!(
                apps.contains(&(id.to_string(), n)),
                "seed {seed}: {id} with {n} instances missing from {apps:?}"
            );
        }
        let known_web = w.instances_of(next, "/web");
        assert!(
            web_before.is_subset(&known_web),
            "seed {seed}: {web_before:?} not all in {known_web:?}"
        );
        w.run_until(s(60), "every app converged", |w| {
            w.running_of("web").len() == 4
                && w.running_of("db").len() == 2
                && w.running_of("cache").len() == 2
        });
        w.run_for(s(10));
        assert!(web_before.is_subset(&w.running_of("web")), "seed {seed}");
        assert!(db_before.is_subset(&w.running_of("db")), "seed {seed}");
        assert_eq!(w.running_of("web").len(), 4);
        assert_eq!(w.running_of("db").len(), 2);
        assert_eq!(w.running_of("cache").len(), 2);
        // One framework at the master, run by the new leader.
        let m = (0..3)
            .find(|&m| {
                let upid = w.masters[m].clone();
                w.sim
                    .inspect(&upid, |p: &MasterProcess| p.is_elected())
                    .unwrap_or(false)
            })
            .unwrap();
        let upid = w.masters[m].clone();
        let frameworks = w
            .sim
            .inspect(&upid, |p: &MasterProcess| {
                p.try_core().map_or(Vec::new(), |c| {
                    c.frameworks()
                        .values()
                        .map(|f| f.pid.clone())
                        .collect::<Vec<_>>()
                })
            })
            .unwrap();
        assert_eq!(
            frameworks,
            vec![Some(w.marathons[next].clone())],
            "seed {seed}"
        );
    }
}

#[test]
fn a_paused_leader_that_wakes_up_cannot_write_or_launch() {
    let mut w = HaWorld::new(31, 2);
    let s = Duration::from_secs;
    let leader = w.await_leader(s(30), None);
    assert_eq!(w.post(leader, "/web", 2), 201);
    w.run_until(s(60), "2 tasks running", |w| w.running_of("web").len() == 2);
    let web_before = w.running_of("web");

    // SIGSTOP right after a change is asked: its write is on its way to the masters, its
    // answer waits for the commit.
    w.ask("/inflight", 1);
    let mut inflight = w.api_start(leader, |s, d| {
        s.create_app(d, &ApiCaller::default(), &sleeper("/inflight", 1), false)
    });
    assert!(
        inflight.try_take().is_none(),
        "answered before its write committed"
    );
    let node = HaWorld::marathon_node(leader);
    w.sim.pause(&node);
    let paused_at = w.sim.now();
    let next = w.await_leader(s(30), Some(leader));
    assert_ne!(next, leader);
    assert_eq!(w.scale(next, "/web", 3), 200);
    eprintln!(
        "a standby answered a write {:?} after the leader was paused",
        w.sim.now() - paused_at
    );
    w.run_until(s(60), "3 tasks running", |w| w.running_of("web").len() == 3);

    // SIGCONT: before it handles anything, the old leader is asked to create an app and to
    // scale /web to 10. Its lease is gone: nothing is written, nothing launched.
    w.sim.resume(&node);
    let mut create = w.api_start(leader, |s, d| {
        s.create_app(d, &ApiCaller::default(), &sleeper("/stale", 5), false)
    });
    let mut scale = w.api_start(leader, |s, d| {
        let body = json!({"instances": 10}).to_string().into_bytes();
        s.put_app(d, &ApiCaller::default(), "/web", &body, true, true)
    });
    w.run_until(s(10), "the old leader stands by", |w| {
        w.scheduler(leader, |s| !s.serves_api()).unwrap_or(false)
    });
    w.run_for(s(20));
    for answer in [&mut create, &mut scale] {
        let status = answer.try_take().map(|r| r.status);
        assert!(
            status.is_some_and(|s| s >= 500),
            "the paused leader's change was acknowledged: {status:?}"
        );
    }
    let apps = w.apps_of(next);
    // Acknowledged when it woke up: then the change is in the new leader's state.
    let inflight = inflight.try_take().map(|r| r.status);
    eprintln!("the change in flight at the pause was answered {inflight:?}");
    if inflight.is_some_and(|s| s < 300) {
        assert!(apps.contains(&("/inflight".to_string(), 1)), "{apps:?}");
    }
    assert!(
        apps.iter().all(|(id, _)| id != "/stale"),
        "the stale leader's app landed: {apps:?}"
    );
    assert!(apps.contains(&("/web".to_string(), 3)), "{apps:?}");
    // `check` ran after every step: never more than 3 /web tasks (the most asked of them by a
    // leader), and none of /stale.
    assert!(w.running_of("stale").is_empty());
    assert_eq!(w.running_of("web").len(), 3);
    assert!(web_before.is_subset(&w.running_of("web")));
    // The old leader follows the new one.
    let seen = w.scheduler(leader, |s| s.leader()).unwrap();
    assert_eq!(seen, Some(HaWorld::marathon_node(next).to_string()));
}

#[test]
fn a_master_failover_keeps_the_leading_marathon() {
    for seed in [41, 42, 43] {
        let mut w = HaWorld::new(seed, 2);
        let s = Duration::from_secs;
        let leader = w.await_leader(s(30), None);
        assert_eq!(w.post(leader, "/web", 2), 201);
        w.run_until(s(60), "2 tasks running", |w| w.running_of("web").len() == 2);
        let m = (0..3)
            .find(|&m| {
                let upid = w.masters[m].clone();
                w.sim
                    .inspect(&upid, |p: &MasterProcess| p.is_elected())
                    .unwrap_or(false)
            })
            .unwrap();
        w.sim.crash(&w.masters[m].node());
        let mut deposed = false;
        let until = w.sim.now() + s(30);
        while w.sim.now() < until {
            w.step();
            deposed |= w.acting() != vec![leader];
        }
        assert!(
            !deposed,
            "seed {seed}: a master failover deposed the leading Marathon"
        );
        assert_eq!(w.acting(), vec![leader]);
        assert_eq!(w.scale(leader, "/web", 3), 200);
    }
}

/// Records the tables a balancer publishes.
#[derive(Default)]
struct Tables(std::sync::Mutex<Vec<std::sync::Arc<plateau_balancer::table::Table>>>);

impl plateau_balancer::TablePublisher for Tables {
    fn publish(&self, table: std::sync::Arc<plateau_balancer::table::Table>) {
        self.0.lock().unwrap().push(table);
    }
}

impl Tables {
    /// Task ids routed on `service_port` by the last table.
    fn routed(&self, service_port: u16) -> BTreeSet<String> {
        self.0
            .lock()
            .unwrap()
            .last()
            .and_then(|t| t.tcp_route(service_port).cloned())
            .map(|r| r.backends.iter().map(|b| b.task_id.clone()).collect())
            .unwrap_or_default()
    }

    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

#[test]
fn a_balancer_follows_the_leading_marathon_across_a_failover() {
    for seed in [51, 52] {
        balancer_follows_the_leader(seed);
    }
}

/// A balancer follows two Marathons; the leader crashes; the routes of the running tasks are
/// served throughout, and the new leader's changes flow.
fn balancer_follows_the_leader(seed: u64) {
    use plateau_balancer::BalancerProcess;
    let mut w = HaWorld::new(seed, 2);
    let s = Duration::from_secs;
    let tables = std::sync::Arc::new(Tables::default());
    let node = NodeAddr::new("10.0.3.1", 9090);
    w.sim.add_node(node.clone());
    let balancer = w.sim.spawn(
        &node,
        "balancer",
        BalancerProcess::following(w.marathons.clone(), None, tables.clone()),
    );
    let leader = w.await_leader(s(30), None);
    w.ask("/web", 3);
    let body = json!({"id": "/web", "cmd": "sleep 600", "cpus": 0.1, "mem": 32, "instances": 2,
                      "portDefinitions": [{"port": 10000}]})
    .to_string()
    .into_bytes();
    let status = w
        .api(leader, s(10), move |s, d| {
            s.create_app(d, &ApiCaller::default(), &body, false)
        })
        .status;
    assert_eq!(status, 201);
    w.run_until(s(60), "2 backends routed", |_| {
        tables.routed(10000).len() == 2
    });
    let routed = tables.routed(10000);
    assert_eq!(routed, w.running_of("web"));
    let followed = |w: &mut HaWorld| {
        w.sim
            .inspect(&balancer, |p: &BalancerProcess| p.followed().cloned())
            .unwrap()
    };
    assert_eq!(followed(&mut w), Some(w.marathons[leader].clone()));

    // The leader crashes: the table is kept (never emptied) until the next leader's snapshot.
    w.sim.crash(&HaWorld::marathon_node(leader));
    let published = tables.count();
    let next = leader ^ 1;
    w.run_until(s(30), "the balancer follows the new leader", |w| {
        assert!(
            routed.is_subset(&tables.routed(10000)),
            "the routes of the running tasks were dropped: {:?} at {:?}",
            tables.routed(10000),
            w.sim.now()
        );
        followed(w) == Some(w.marathons[next].clone())
    });
    assert!(tables.count() > published, "the new leader's snapshot came");
    assert_eq!(tables.routed(10000), routed, "the same tasks, routed");
    // The new leader's changes flow to the balancer.
    assert_eq!(w.scale(next, "/web", 3), 200);
    w.run_until(s(60), "3 backends routed", |_| {
        tables.routed(10000).len() == 3
    });
    assert!(routed.is_subset(&tables.routed(10000)));
}
