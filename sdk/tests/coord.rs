//! The coordination SDK against three real replicated masters in the simulator: framework
//! drivers run as leader + standbys (one leader at a time, checked after every simulation
//! step; failover of the holder; a master failover does not depose it; a cut-off holder is
//! deposed before another is elected; a deposed leader's writes never land), and raw clients
//! (retried writes applied once under loss and duplication, watches across a master failover,
//! a linearizable history under loss and a master crash).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use plateau_master::coord::{
    CoordOp, CoordReply, CoordResponseMessage, Expect, FencingToken, KeySelector,
    LeaseKeepAliveResponseMessage, TxnOp, WatchEndedMessage, WatchEvent, WatchEventsMessage,
};
use plateau_master::messages::NewMasterDetectedMessage;
use plateau_master::replicated::MasterState;
use plateau_master::{MasterConfig, MasterProcess};
use plateau_replica::storage::MemoryDisk;
use plateau_replica::{Replica, ReplicaConfig};
use plateau_runtime::sim::{NetworkFaults, Sim, SimConfig};
use plateau_runtime::{Context, Handlers, Message, NodeAddr, Process, Upid};
use plateau_sdk::coord::host::{self, CoordTimer, TimerSlot};
use plateau_sdk::coord::{
    ClientEvent, CoordClient, CoordClientConfig, RequestError, RequestId, StateOp, WatchId, WriteId,
};
use plateau_sdk::{
    Driver, FrameworkId, FrameworkInfo, LeaderConfig, Masters, Offer, Scheduler, SchedulerDriver,
    TaskStatus,
};
use plateau_sim::linearizability::{
    check_coord_history, CoordOperation, Operation, Returned, Verdict,
};
use serde::{Deserialize, Serialize};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

// ---- a framework run as leader + standbys -----------------------------------------------------

/// Records what its driver tells it; writes `owner = name` when elected.
#[derive(Default)]
struct Recorder {
    name: String,
    elected: Vec<(Duration, u64)>,
    deposed: Vec<(Duration, String)>,
    leaders: Vec<Option<String>>,
    committed: Vec<WriteId>,
    registered: Vec<FrameworkId>,
    /// Calls held right after a reconcile made while the framework id write was in flight.
    held_after_reconcile: Vec<usize>,
}

impl Scheduler for Recorder {
    fn resource_offers(&mut self, driver: &mut Driver<'_, '_>, offers: Vec<Offer>) {
        for offer in offers {
            driver.decline_offer(&offer.id, Default::default());
        }
    }

    fn status_update(&mut self, _driver: &mut Driver<'_, '_>, _status: &TaskStatus) {}

    fn elected(&mut self, driver: &mut Driver<'_, '_>, token: &FencingToken) {
        self.elected
            .push((driver.ctx().now().since_origin(), token.epoch));
        let op = StateOp::Put {
            key: "owner".into(),
            value: self.name.clone().into_bytes(),
        };
        driver.write(vec![op]).expect("leading, loaded");
    }

    fn deposed(&mut self, driver: &mut Driver<'_, '_>, why: &str) {
        self.deposed
            .push((driver.ctx().now().since_origin(), why.to_string()));
    }

    fn leader_changed(&mut self, _driver: &mut Driver<'_, '_>, leader: Option<&str>) {
        self.leaders.push(leader.map(String::from));
    }

    fn committed(&mut self, _driver: &mut Driver<'_, '_>, write: WriteId) {
        self.committed.push(write);
    }

    fn registered(&mut self, driver: &mut Driver<'_, '_>, framework_id: &FrameworkId) {
        self.registered.push(framework_id.clone());
        // The driver is writing the framework id: this call waits for it.
        driver.reconcile_tasks(Vec::new());
        self.held_after_reconcile.push(driver.held_calls());
    }
}

type Framework = SchedulerDriver<Recorder>;

struct Cluster {
    sim: Sim,
    masters: Vec<Upid>,
    disks: Vec<MemoryDisk>,
    frameworks: Vec<Upid>,
    probes: Vec<Upid>,
}

impl Cluster {
    fn new(seed: u64) -> Self {
        Self::with_config(SimConfig::new(seed))
    }

    fn with_config(config: SimConfig) -> Self {
        let sim = Sim::new(config);
        let masters: Vec<Upid> = (1..=3)
            .map(|i| Upid::new("master", &NodeAddr::new(format!("10.0.0.{i}"), 5050)))
            .collect();
        let mut cluster = Cluster {
            sim,
            masters: masters.clone(),
            disks: vec![MemoryDisk::new(), MemoryDisk::new(), MemoryDisk::new()],
            frameworks: Vec::new(),
            probes: Vec::new(),
        };
        for (i, master) in masters.iter().enumerate() {
            cluster.sim.add_node(master.node());
            cluster.spawn_master(i, true);
        }
        cluster
    }

    fn spawn_master(&mut self, i: usize, bootstrap: bool) {
        let mut replica = Replica::open(
            ReplicaConfig::new(self.masters[i].clone()),
            Box::new(self.disks[i].clone()),
            MasterState::default(),
            0,
        )
        .unwrap();
        if bootstrap {
            replica.bootstrap(&self.masters);
        }
        let config = MasterConfig {
            seed: i as u64,
            ..MasterConfig::default()
        };
        let node = self.masters[i].node();
        self.sim
            .spawn(&node, "master", MasterProcess::replicated(config, replica));
    }

    fn group(&self) -> Masters {
        Masters::new(self.masters.clone()).unwrap()
    }

    fn framework_node(i: usize) -> NodeAddr {
        NodeAddr::new(format!("10.2.0.{}", i + 1), 8080)
    }

    /// Starts framework instance `i` (a standby until elected).
    fn add_framework(&mut self, i: usize) -> Upid {
        let node = Self::framework_node(i);
        if !self.sim.nodes().any(|n| *n == node) {
            self.sim.add_node(node.clone());
        }
        let name = format!("instance-{i}");
        let scheduler = Recorder {
            name: name.clone(),
            ..Recorder::default()
        };
        let config = LeaderConfig::new("fw", node.to_string());
        // The master keeps the framework's tasks while its leader fails over.
        let mut info = FrameworkInfo::new("fw");
        info.failover_timeout_secs = 3600.0;
        let driver = SchedulerDriver::with_masters(info, self.group(), scheduler)
            .with_leader_election(config);
        let upid = self.sim.spawn(&node, "scheduler", driver);
        if i < self.frameworks.len() {
            self.frameworks[i] = upid.clone();
        } else {
            self.frameworks.push(upid.clone());
        }
        upid
    }

    fn add_probe(&mut self, i: usize, plan: Plan) -> Upid {
        let node = NodeAddr::new(format!("10.3.0.{}", i + 1), 9000);
        self.sim.add_node(node.clone());
        let upid = self
            .sim
            .spawn(&node, "probe", Probe::new(i as u64, self.group(), plan));
        self.probes.push(upid.clone());
        upid
    }

    fn master_leader(&mut self) -> Option<usize> {
        (0..3).find(|&i| {
            let m = self.masters[i].clone();
            self.sim
                .inspect(&m, |p: &MasterProcess| p.is_elected())
                .unwrap_or(false)
        })
    }

    /// Framework instances that believe they lead now.
    fn leading(&mut self) -> Vec<usize> {
        let now = self.sim.now().since_origin();
        (0..self.frameworks.len())
            .filter(|&i| {
                let f = self.frameworks[i].clone();
                self.sim
                    .inspect(&f, |p: &Framework| p.state().is_leading(now))
                    .unwrap_or(false)
            })
            .collect()
    }

    fn recorder<R>(&mut self, i: usize, f: impl FnOnce(&Recorder) -> R) -> R {
        let upid = self.frameworks[i].clone();
        self.sim
            .inspect(&upid, |p: &Framework| f(p.scheduler()))
            .unwrap()
    }

    fn probe<R>(&mut self, i: usize, f: impl FnOnce(&Probe) -> R) -> R {
        let upid = self.probes[i].clone();
        self.sim.inspect(&upid, f).unwrap()
    }

    /// Runs `d`, asserting after every event that at most one framework instance leads.
    fn run_checked(&mut self, d: Duration) {
        let until = self.sim.now() + d;
        while self.sim.next_event_at().is_some_and(|t| t <= until) {
            self.sim.step();
            let leading = self.leading();
            assert!(
                leading.len() <= 1,
                "two framework instances lead at once: {leading:?} at {:?}",
                self.sim.now()
            );
        }
        self.sim.run_until(until);
    }

    fn await_condition(&mut self, within: Duration, mut f: impl FnMut(&mut Self) -> bool) {
        let deadline = self.sim.now() + within;
        while !f(self) {
            assert!(
                self.sim.now() < deadline,
                "condition not met within {within:?} (at {:?})",
                self.sim.now()
            );
            self.run_checked(ms(10));
        }
    }

    fn await_leader(&mut self, within: Duration) -> usize {
        let mut found = None;
        self.await_condition(within, |c| {
            found = c.leading().first().copied();
            found.is_some()
        });
        found.unwrap()
    }

    /// The coordination store of the leading master.
    fn store<R>(&mut self, f: impl FnOnce(&plateau_master::coord::CoordStore) -> R) -> R {
        let leader = self.master_leader().expect("a leading master");
        let m = self.masters[leader].clone();
        self.sim
            .inspect(&m, |p: &MasterProcess| {
                p.replica().unwrap().with_state(|s| f(&s.coord))
            })
            .unwrap()
    }

    /// The frameworks the leading master knows, with their scheduler's pid.
    fn registered_frameworks(&mut self) -> Vec<(FrameworkId, Option<Upid>)> {
        let leader = self.master_leader().expect("a leading master");
        let m = self.masters[leader].clone();
        self.sim
            .inspect(&m, |p: &MasterProcess| {
                p.try_core().map_or(Vec::new(), |core| {
                    core.frameworks()
                        .values()
                        .map(|f| (f.id.clone(), f.pid.clone()))
                        .collect()
                })
            })
            .unwrap()
    }

    fn cut_from_masters(&mut self, node: &NodeAddr) {
        for m in self.masters.clone() {
            self.sim.partition(node, &m.node());
        }
    }
}

/// Two instances; the first is started first so that it wins.
fn two_instances(seed: u64) -> (Cluster, usize) {
    let mut c = Cluster::new(seed);
    c.add_framework(0);
    c.run_checked(ms(300));
    c.add_framework(1);
    let leader = c.await_leader(secs(15));
    c.run_checked(secs(2));
    (c, leader)
}

#[test]
fn of_two_instances_exactly_one_leads_registers_and_writes() {
    let (mut c, leader) = two_instances(1);
    let standby = 1 - leader;
    c.run_checked(secs(20));
    assert_eq!(c.leading(), vec![leader]);
    // Only the leader registered with the master, with the token; its write committed.
    let frameworks = c.registered_frameworks();
    assert_eq!(frameworks.len(), 1, "{frameworks:?}");
    assert_eq!(frameworks[0].1.as_ref(), Some(&c.frameworks[leader]));
    let (elected, registered, committed, held) = c.recorder(leader, |r| {
        (
            r.elected.clone(),
            r.registered.clone(),
            r.committed.clone(),
            r.held_after_reconcile.clone(),
        )
    });
    assert_eq!(elected.len(), 1);
    assert_eq!(registered, vec![frameworks[0].0.clone()]);
    assert_eq!(committed.len(), 2, "owner, then the framework id");
    assert_eq!(
        held,
        vec![1],
        "the reconcile waited for the framework id write"
    );
    let held_now = c
        .sim
        .inspect(&c.frameworks[leader].clone(), |p: &Framework| {
            p.state().held_calls()
        });
    assert_eq!(held_now, Some(0));
    let epoch = elected[0].1;
    let (owner, holder_epoch, id) = c.store(|s| {
        (
            s.get("/fw/state/owner").map(|e| e.value.clone()),
            s.fencing().holder("/fw/leader").map(|h| h.epoch),
            s.get("/fw/state/driver/framework-id")
                .map(|e| e.value.clone()),
        )
    });
    assert_eq!(owner, Some(format!("instance-{leader}").into_bytes()));
    assert_eq!(holder_epoch, Some(epoch));
    assert_eq!(id, Some(frameworks[0].0.as_str().as_bytes().to_vec()));
    // The leader's kills carry its epoch: the master, which pinned the framework to the
    // election key, accepts them (an unstamped kill would be refused and counted).
    let upid = c.frameworks[leader].clone();
    c.sim
        .call(&upid, |p: &mut Framework, ctx| {
            let (_, mut d) = p.scheduler_and_driver(ctx);
            d.kill_task(&plateau_sdk::TaskId::new("no-such-task"));
        })
        .unwrap();
    c.run_checked(secs(1));
    let m = c.master_leader().unwrap();
    let refusals = c.sim.inspect(&c.masters[m].clone(), |p: &MasterProcess| {
        p.stale_epoch_refusals()
    });
    assert_eq!(refusals, Some(0));
    // The standby never registered and knows where the leader is.
    assert!(c.recorder(standby, |r| r.registered.is_empty() && r.elected.is_empty()));
    let leader_address = Cluster::framework_node(leader).to_string();
    let seen = c.recorder(standby, |r| r.leaders.last().cloned().flatten());
    assert_eq!(seen, Some(leader_address));
}

#[test]
fn leadership_stays_exclusive_under_loss_and_duplication() {
    for seed in [41, 42] {
        let mut c = Cluster::with_config(lossy(seed, 0.05, 0.05));
        c.add_framework(0);
        c.add_framework(1);
        c.add_framework(2);
        // run_checked: never two leaders at any step.
        c.await_leader(secs(60));
        c.run_checked(secs(180));
        let m = c.master_leader().unwrap();
        c.sim.crash(&c.masters[m].node());
        c.run_checked(secs(30));
        c.await_leader(secs(60));
        let elections: usize = (0..3).map(|i| c.recorder(i, |r| r.elected.len())).sum();
        let depositions: usize = (0..3).map(|i| c.recorder(i, |r| r.deposed.len())).sum();
        for i in 0..3 {
            for (at, why) in c.recorder(i, |r| r.deposed.clone()) {
                eprintln!("seed {seed}: instance {i} deposed at {at:?}: {why}");
            }
        }
        eprintln!(
            "seed {seed}: {elections} elections, {depositions} depositions, {:?}",
            c.sim.stats()
        );
        assert!(elections >= 1 && elections - depositions == 1);
    }
}

#[test]
fn a_crashed_leader_is_replaced_within_its_ttl_and_a_few_seconds() {
    for seed in [2, 3] {
        let (mut c, leader) = two_instances(seed);
        let standby = 1 - leader;
        let node = Cluster::framework_node(leader);
        c.sim.crash(&node);
        let crashed_at = c.sim.now();
        let next = c.await_leader(secs(30));
        assert_eq!(next, standby);
        let took = c.sim.now() - crashed_at;
        eprintln!("seed {seed}: framework failover took {took:?}");
        assert!(took <= secs(10) + secs(4), "took {took:?}");
        // The new leader re-registered as the same framework, from the state.
        c.await_condition(secs(10), |c| {
            c.registered_frameworks()
                .first()
                .is_some_and(|(_, pid)| pid.as_ref() == Some(&c.frameworks[standby]))
        });
        assert_eq!(c.registered_frameworks().len(), 1);
        // Its first write (in `elected`) commits.
        c.await_condition(secs(5), |c| {
            c.recorder(standby, |r| !r.committed.is_empty())
        });
        let owner = c.store(|s| s.get("/fw/state/owner").map(|e| e.value.clone()));
        assert_eq!(owner, Some(format!("instance-{standby}").into_bytes()));
    }
}

#[test]
fn a_master_failover_does_not_depose_a_healthy_leader() {
    for seed in [4, 5, 6] {
        let (mut c, leader) = two_instances(seed);
        let before = c.recorder(leader, |r| r.elected.clone());
        let m = c.master_leader().unwrap();
        let node = c.masters[m].node();
        c.sim.crash(&node);
        c.run_checked(secs(30));
        let other = c.master_leader().unwrap();
        assert_ne!(other, m);
        assert_eq!(c.leading(), vec![leader], "seed {seed}");
        let (elected, deposed) = c.recorder(leader, |r| (r.elected.clone(), r.deposed.clone()));
        assert_eq!(elected, before, "seed {seed}");
        assert!(deposed.is_empty(), "seed {seed}: {deposed:?}");
        // The restarted master comes back as a follower; still the same leader.
        c.sim.restart(&node);
        c.spawn_master(m, false);
        c.run_checked(secs(5));
        assert_eq!(c.leading(), vec![leader]);
    }
}

#[test]
fn a_cut_off_leader_is_deposed_before_the_other_is_elected_and_its_writes_never_land() {
    let (mut c, leader) = two_instances(7);
    let standby = 1 - leader;
    let old_epoch = c.recorder(leader, |r| r.elected[0].1);
    let node = Cluster::framework_node(leader);
    c.cut_from_masters(&node);
    let cut_at = c.sim.now();
    // While cut off it still believes it leads for a while, and writes.
    let upid = c.frameworks[leader].clone();
    let write = c
        .sim
        .call(&upid, |p: &mut Framework, ctx| {
            let (_, mut d) = p.scheduler_and_driver(ctx);
            d.write(vec![StateOp::Put {
                key: "owner".into(),
                value: b"stale".to_vec(),
            }])
        })
        .unwrap();
    assert!(write.is_ok(), "{write:?}");
    // run_checked: never two leaders at one instant.
    c.await_condition(secs(30), |c| c.leading() == vec![standby]);
    let deposed = c.recorder(leader, |r| r.deposed.clone());
    let elected = c.recorder(standby, |r| r.elected.clone());
    assert_eq!(deposed.len(), 1, "{deposed:?}");
    assert!(
        deposed[0].0 < elected[0].0,
        "deposed at {:?}, the other elected at {:?}",
        deposed[0].0,
        elected[0].0
    );
    assert!(deposed[0].0 - cut_at.since_origin() < secs(10));
    // Heal: the old leader's retried write reaches the masters, with a stale guard.
    c.sim.heal();
    c.run_checked(secs(40));
    let owner = c.store(|s| s.get("/fw/state/owner").map(|e| e.value.clone()));
    assert_eq!(owner, Some(format!("instance-{standby}").into_bytes()));
    // The old leader is a standby following the new one; its old epoch is refused.
    assert_eq!(c.leading(), vec![standby]);
    let stale = c.store(|s| s.fencing().check("/fw/leader", old_epoch).is_err());
    assert!(stale);
}

#[test]
fn a_guarded_write_with_a_stale_token_is_refused_by_the_store() {
    let (mut c, leader) = two_instances(8);
    let token = FencingToken {
        key: "/fw/leader".into(),
        epoch: c.recorder(leader, |r| r.elected[0].1),
    };
    // A probe writes with the leader's token: it lands. The leader crashes; the standby takes
    // over; the same write with the old token is refused.
    c.add_probe(0, Plan::none());
    let txn = |value: &str| CoordOp::Txn {
        guard: Some(token.clone()),
        ops: vec![TxnOp::Put {
            key: "/fw/state/probe".into(),
            value: value.as_bytes().to_vec(),
        }],
    };
    let first = probe_request(&mut c, 0, txn("1"));
    assert!(matches!(first, Ok(CoordReply::Txn { .. })), "{first:?}");
    c.sim.crash(&Cluster::framework_node(leader));
    c.await_leader(secs(30));
    let second = probe_request(&mut c, 0, txn("2"));
    assert!(
        matches!(
            second,
            Err(RequestError::Refused(
                plateau_master::coord::CoordError::StaleGuard { .. }
            ))
        ),
        "{second:?}"
    );
    let value = c.store(|s| s.get("/fw/state/probe").map(|e| e.value.clone()));
    assert_eq!(value, Some(b"1".to_vec()));
}

// ---- raw clients ------------------------------------------------------------------------------

/// What a probe does on its own.
#[derive(Debug, Clone)]
struct Plan {
    /// Random operations to make.
    ops: usize,
    /// Keys to use.
    keys: Vec<&'static str>,
    /// Most operations in flight at once.
    concurrency: usize,
}

impl Plan {
    fn none() -> Self {
        Plan {
            ops: 0,
            keys: Vec::new(),
            concurrency: 0,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Tick;
impl Message for Tick {
    const NAME: &'static str = "test.coord.Tick";
}

/// A process hosting a raw coordination client: requests on demand or a random workload,
/// a recorded history, watches.
struct Probe {
    id: u64,
    masters: Masters,
    client: Option<CoordClient>,
    timer: TimerSlot,
    plan: Plan,
    history: Vec<CoordOperation>,
    in_flight: BTreeMap<RequestId, usize>,
    answers: BTreeMap<RequestId, Result<CoordReply, RequestError>>,
    watched: BTreeMap<WatchId, Vec<WatchEvent>>,
    watches_lost: u32,
    /// Revisions seen per key (for compare-and-set and guards).
    last_mod: BTreeMap<String, u64>,
    last_create: BTreeMap<String, u64>,
}

impl Probe {
    fn new(id: u64, masters: Masters, plan: Plan) -> Self {
        Probe {
            id,
            masters,
            client: None,
            timer: TimerSlot::new(),
            plan,
            history: Vec::new(),
            in_flight: BTreeMap::new(),
            answers: BTreeMap::new(),
            watched: BTreeMap::new(),
            watches_lost: 0,
            last_mod: BTreeMap::new(),
            last_create: BTreeMap::new(),
        }
    }

    fn client(&mut self) -> &mut CoordClient {
        self.client.as_mut().expect("initialized")
    }

    fn request(&mut self, ctx: &mut Context<'_>, op: CoordOp) -> RequestId {
        let now = ctx.now();
        let id = self
            .client()
            .request(now.since_origin(), op.clone())
            .unwrap();
        self.in_flight.insert(id, self.history.len());
        self.history.push(Operation {
            client: self.id,
            call: now.as_nanos(),
            input: op,
            result: None,
        });
        self.flush(ctx);
        id
    }

    fn watch(&mut self, ctx: &mut Context<'_>, selector: KeySelector, from: u64) -> WatchId {
        let now = ctx.now().since_origin();
        let id = self.client().watch(now, selector, from).unwrap();
        self.watched.insert(id, Vec::new());
        self.flush(ctx);
        id
    }

    fn flush(&mut self, ctx: &mut Context<'_>) {
        let client = self.client.as_mut().expect("initialized");
        host::flush_client(ctx, client, &mut self.timer);
        while let Some(event) = self.client().poll_event() {
            match event {
                ClientEvent::Answered { request, outcome } => {
                    if let Some(index) = self.in_flight.remove(&request) {
                        if let Ok(reply) = &outcome {
                            self.remember(index, reply);
                            self.history[index].result = Some(Returned {
                                at: ctx.now().as_nanos(),
                                output: Ok(reply.clone()),
                            });
                        } else if let Err(RequestError::Refused(e)) = &outcome {
                            self.history[index].result = Some(Returned {
                                at: ctx.now().as_nanos(),
                                output: Err(e.clone()),
                            });
                        }
                        // Unknown: the result stays unknown.
                    }
                    self.answers.insert(request, outcome);
                }
                ClientEvent::WatchEvents { watch, events } => {
                    self.watched.entry(watch).or_default().extend(events);
                }
                ClientEvent::WatchLost { .. } => self.watches_lost += 1,
                ClientEvent::SessionStarted { .. } | ClientEvent::SessionLost { .. } => {}
            }
        }
    }

    fn remember(&mut self, index: usize, reply: &CoordReply) {
        let op = &self.history[index].input;
        match (op, reply) {
            (
                CoordOp::Put { key, .. },
                CoordReply::Put {
                    revision,
                    create_revision,
                },
            ) => {
                self.last_mod.insert(key.clone(), *revision);
                self.last_create.insert(key.clone(), *create_revision);
            }
            (CoordOp::Get { key }, CoordReply::Value { entry: Some(e), .. }) => {
                self.last_mod.insert(key.clone(), e.mod_revision);
                self.last_create.insert(key.clone(), e.create_revision);
            }
            _ => {}
        }
    }

    /// A random operation of the plan.
    fn random_op(&mut self, ctx: &mut Context<'_>) -> CoordOp {
        let keys = self.plan.keys.clone();
        let rng = ctx.rng();
        let key = keys[rng.between(0, keys.len() as u64 - 1) as usize].to_string();
        let value = vec![rng.between(0, 3) as u8];
        match rng.between(0, 9) {
            0..=1 => CoordOp::Put {
                key,
                value,
                expect: Expect::Any,
                lease: None,
            },
            2 => CoordOp::Put {
                key,
                value,
                expect: Expect::Absent,
                lease: None,
            },
            3 => {
                let seen = self.last_mod.get(&key).copied().unwrap_or(1);
                CoordOp::Put {
                    key,
                    value,
                    expect: Expect::Version(seen),
                    lease: None,
                }
            }
            4 => CoordOp::Delete {
                key,
                expect: Expect::Any,
            },
            5..=6 => CoordOp::Get { key },
            7 => CoordOp::Range {
                prefix: String::new(),
                after: None,
                limit: 0,
            },
            _ => {
                let other = keys[ctx.rng().between(0, keys.len() as u64 - 1) as usize].to_string();
                let guard_key = keys[0].to_string();
                let guard = (ctx.rng().between(0, 1) == 0).then(|| FencingToken {
                    epoch: self.last_create.get(&guard_key).copied().unwrap_or(1),
                    key: guard_key,
                });
                let mut ops = vec![TxnOp::Put {
                    key: key.clone(),
                    value,
                }];
                if other != key {
                    ops.push(TxnOp::Delete { key: other });
                }
                CoordOp::Txn { guard, ops }
            }
        }
    }

    fn on_tick(&mut self, ctx: &mut Context<'_>, from: &Upid, _: Tick) {
        if from != ctx.self_upid() {
            return;
        }
        if self.plan.ops > 0 && self.in_flight.len() < self.plan.concurrency {
            self.plan.ops -= 1;
            let op = self.random_op(ctx);
            self.request(ctx, op);
        }
        if self.plan.ops > 0 {
            let wait = ctx.rng().between(20, 150);
            ctx.delay(ms(wait), Tick);
        }
    }

    fn on_response(&mut self, ctx: &mut Context<'_>, from: &Upid, m: CoordResponseMessage) {
        let now = ctx.now().since_origin();
        self.client().handle_response(now, from, m);
        self.flush(ctx);
    }

    fn on_keep_alive(
        &mut self,
        ctx: &mut Context<'_>,
        from: &Upid,
        m: LeaseKeepAliveResponseMessage,
    ) {
        let now = ctx.now().since_origin();
        self.client().handle_keep_alive_response(now, from, m);
        self.flush(ctx);
    }

    fn on_events(&mut self, ctx: &mut Context<'_>, from: &Upid, m: WatchEventsMessage) {
        let now = ctx.now().since_origin();
        self.client().handle_watch_events(now, from, m);
        self.flush(ctx);
    }

    fn on_ended(&mut self, ctx: &mut Context<'_>, from: &Upid, m: WatchEndedMessage) {
        let now = ctx.now().since_origin();
        self.client().handle_watch_ended(now, from, m);
        self.flush(ctx);
    }

    fn on_detected(&mut self, ctx: &mut Context<'_>, from: &Upid, m: NewMasterDetectedMessage) {
        let now = ctx.now().since_origin();
        self.client().handle_new_master_detected(now, from, &m);
        self.flush(ctx);
    }

    fn on_timer(&mut self, ctx: &mut Context<'_>, from: &Upid, _: CoordTimer) {
        if from != ctx.self_upid() {
            return;
        }
        self.timer.fired();
        let now = ctx.now().since_origin();
        self.client().handle_timeout(now);
        self.flush(ctx);
    }
}

impl Process for Probe {
    fn install(h: &mut Handlers<Self>) {
        h.on(Self::on_tick)
            .on(Self::on_response)
            .on(Self::on_keep_alive)
            .on(Self::on_events)
            .on(Self::on_ended)
            .on(Self::on_detected)
            .on(Self::on_timer);
    }

    fn initialize(&mut self, ctx: &mut Context<'_>) {
        self.client = Some(CoordClient::new(CoordClientConfig {
            masters: self.masters.clone(),
            label: ctx.self_upid().to_string(),
            seed: ctx.rng().between(0, u64::MAX),
        }));
        if self.plan.ops > 0 {
            ctx.delay(ms(10), Tick);
        }
        self.flush(ctx);
    }
}

/// Sends `op` from probe `i` and waits for its answer.
fn probe_request(c: &mut Cluster, i: usize, op: CoordOp) -> Result<CoordReply, RequestError> {
    let upid = c.probes[i].clone();
    let id = c
        .sim
        .call(&upid, |p: &mut Probe, ctx| p.request(ctx, op))
        .unwrap();
    let mut answer = None;
    c.await_condition(secs(60), |c| {
        answer = c.probe(i, |p| p.answers.get(&id).cloned());
        answer.is_some()
    });
    answer.unwrap()
}

fn lossy(seed: u64, loss: f64, duplicate: f64) -> SimConfig {
    let mut config = SimConfig::new(seed);
    config.faults = NetworkFaults {
        loss,
        duplicate,
        ..NetworkFaults::none()
    };
    config
}

#[test]
fn retried_writes_are_applied_once_under_loss_and_duplication() {
    let mut c = Cluster::with_config(lossy(11, 0.1, 0.1));
    c.add_probe(0, Plan::none());
    c.run_checked(secs(3));
    let mut answered = Vec::new();
    for i in 0..40 {
        let key = format!("once/{i}");
        let op = CoordOp::Put {
            key: key.clone(),
            value: b"v".to_vec(),
            expect: Expect::Absent,
            lease: None,
        };
        let upid = c.probes[0].clone();
        let id = c
            .sim
            .call(&upid, |p: &mut Probe, ctx| p.request(ctx, op))
            .unwrap();
        answered.push((key, id));
    }
    c.await_condition(secs(120), |c| c.probe(0, |p| p.in_flight.is_empty()));
    let (answers, sends) = c.probe(0, |p| (p.answers.clone(), p.history.len()));
    assert_eq!(sends, 40);
    let mut retried = 0;
    for (key, id) in &answered {
        // Every create answered Ok (a second apply would have failed its expectation), and the
        // key was modified exactly at the answer's revision.
        let Some(Ok(CoordReply::Put { revision, .. })) = answers.get(id) else {
            panic!("{key}: {:?}", answers.get(id));
        };
        let stored = c.store(|s| s.get(key).map(|e| e.mod_revision));
        assert_eq!(stored, Some(*revision), "{key}");
        retried += 1;
    }
    assert_eq!(retried, 40);
    assert!(c.sim.stats().dropped > 0 && c.sim.stats().duplicated > 0);
    let sent = c.probe(0, |p| p.client.as_ref().unwrap().requests_sent());
    eprintln!("40 writes (and a registration) took {sent} sends");
    assert!(sent > 41, "some requests were retried");
}

#[test]
fn a_watch_resumes_across_a_master_failover_without_losing_or_repeating_events() {
    let mut c = Cluster::new(12);
    c.add_probe(0, Plan::none());
    c.add_probe(1, Plan::none());
    c.run_checked(secs(3));
    let watcher = c.probes[1].clone();
    let watch = c
        .sim
        .call(&watcher, |p: &mut Probe, ctx| {
            p.watch(ctx, KeySelector::Prefix("w/".into()), 1)
        })
        .unwrap();
    c.run_checked(ms(500));
    let put = |i: usize| CoordOp::Put {
        key: format!("w/{i:02}"),
        value: vec![i as u8],
        expect: Expect::Any,
        lease: None,
    };
    for i in 0..5 {
        assert!(probe_request(&mut c, 0, put(i)).is_ok());
    }
    let m = c.master_leader().unwrap();
    c.sim.crash(&c.masters[m].node());
    for i in 5..10 {
        assert!(probe_request(&mut c, 0, put(i)).is_ok());
    }
    c.run_checked(secs(10));
    let (events, lost) = c.probe(1, |p| (p.watched[&watch].clone(), p.watches_lost));
    assert_eq!(lost, 0);
    let keys: Vec<String> = events.iter().map(|e| e.key.clone()).collect();
    let expected: Vec<String> = (0..10).map(|i| format!("w/{i:02}")).collect();
    assert_eq!(keys, expected);
    assert!(events.windows(2).all(|w| w[0].revision < w[1].revision));
}

#[test]
fn a_history_of_concurrent_clients_under_loss_and_a_master_crash_is_linearizable() {
    for seed in [21, 22] {
        let mut c = Cluster::with_config(lossy(seed, 0.05, 0.02));
        c.run_checked(secs(3));
        let plan = Plan {
            ops: 60,
            keys: vec!["a", "b", "c"],
            concurrency: 2,
        };
        for i in 0..3 {
            c.add_probe(i, plan.clone());
        }
        c.run_checked(secs(3));
        let m = c.master_leader().unwrap();
        let node = c.masters[m].node();
        c.sim.crash(&node);
        c.run_checked(secs(5));
        c.sim.restart(&node);
        c.spawn_master(m, false);
        c.await_condition(secs(120), |c| {
            (0..3).all(|i| c.probe(i, |p| p.plan.ops == 0 && p.in_flight.is_empty()))
        });
        let mut history: Vec<CoordOperation> = Vec::new();
        for i in 0..3 {
            history.extend(c.probe(i, |p| p.history.clone()));
        }
        let answered = history.iter().filter(|op| op.result.is_some()).count();
        let kinds: BTreeSet<&str> = history
            .iter()
            .map(|op| match op.input {
                CoordOp::Put { .. } => "put",
                CoordOp::Delete { .. } => "delete",
                CoordOp::Get { .. } => "get",
                CoordOp::Range { .. } => "range",
                CoordOp::Txn { .. } => "txn",
                _ => "other",
            })
            .collect();
        eprintln!(
            "seed {seed}: {} operations, {answered} answered, kinds {kinds:?}, {:?}",
            history.len(),
            c.sim.stats()
        );
        assert_eq!(history.len(), 180);
        assert!(answered > 150);
        let verdict = check_coord_history(&BTreeMap::new(), &history).unwrap();
        assert_eq!(verdict, Verdict::Linearizable, "seed {seed}");
        // The check is not vacuous: one read answer altered is caught.
        let read = history
            .iter()
            .position(|op| {
                matches!(
                    op.result,
                    Some(Returned {
                        output: Ok(CoordReply::Value { entry: Some(_), .. }),
                        ..
                    })
                )
            })
            .expect("some read saw a value");
        if let Some(Returned {
            output: Ok(CoordReply::Value {
                entry: Some(entry), ..
            }),
            ..
        }) = &mut history[read].result
        {
            entry.value = vec![99];
        }
        let verdict = check_coord_history(&BTreeMap::new(), &history).unwrap();
        assert!(matches!(verdict, Verdict::Violation { .. }), "{verdict:?}");
    }
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let run = |seed| {
        let (mut c, leader) = two_instances(seed);
        c.sim.crash(&Cluster::framework_node(leader));
        c.await_leader(secs(30));
        (leader, c.sim.now(), c.sim.trace_hash())
    };
    assert_eq!(run(31), run(31));
}
