//! A group of three real `MasterProcess`es on a replicated log, in the simulator, with small
//! test slaves that follow the leading master: election, failover, isolation of the leader,
//! the registry replicated, determinism.

use std::time::Duration;

use plateau_master::ids::SlaveId;
use plateau_master::messages::*;
use plateau_master::replicated::MasterState;
use plateau_master::resources::{Attributes, Resources};
use plateau_master::{MasterConfig, MasterProcess};
use plateau_replica::storage::MemoryDisk;
use plateau_replica::{Replica, ReplicaConfig};
use plateau_runtime::sim::{Sim, SimConfig};
use plateau_runtime::{Context, Handlers, Message, NodeAddr, Process, Upid};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Beat;
impl Message for Beat {
    const NAME: &'static str = "test.group.Beat";
}

/// A slave that follows the leading master: asks every master who leads, registers with the
/// leader, switches when told of a newer one, heartbeats every second.
struct FollowingSlave {
    masters: Vec<Upid>,
    leader: Option<Upid>,
    term: u64,
    info: SlaveInfo,
    id: Option<SlaveId>,
    /// (master, term) of every (re-)registration acknowledged.
    admitted_by: Vec<(Upid, u64)>,
}

impl FollowingSlave {
    fn new(masters: Vec<Upid>, node: &NodeAddr) -> Self {
        FollowingSlave {
            masters,
            leader: None,
            term: 0,
            info: SlaveInfo {
                hostname: node.host.to_string(),
                port: node.port,
                resources: Resources::parse("cpus:4;mem:4096;ports:[31000-31100]").unwrap(),
                attributes: Attributes::default(),
            },
            id: None,
            admitted_by: Vec::new(),
        }
    }

    fn register(&mut self, ctx: &mut Context<'_>) {
        let Some(leader) = self.leader.clone() else {
            return;
        };
        ctx.link(&leader);
        match &self.id {
            None => ctx.send(
                &leader,
                RegisterSlaveMessage {
                    slave: self.info.clone(),
                },
            ),
            Some(id) => ctx.send(
                &leader,
                ReregisterSlaveMessage {
                    slave_id: id.clone(),
                    slave: self.info.clone(),
                    tasks: Vec::new(),
                    frameworks: Vec::new(),
                },
            ),
        }
    }

    fn on_detected(&mut self, ctx: &mut Context<'_>, _: &Upid, m: NewMasterDetectedMessage) {
        if m.term < self.term {
            return;
        }
        self.term = m.term;
        if m.leader.is_some() && m.leader != self.leader {
            self.leader = m.leader;
            self.register(ctx);
        }
    }

    fn on_beat(&mut self, ctx: &mut Context<'_>, _: &Upid, _: Beat) {
        ctx.delay(Duration::from_secs(1), Beat);
        match (&self.leader, &self.id) {
            (Some(leader), Some(id)) => ctx.send(
                leader,
                SlaveHeartbeatMessage {
                    slave_id: id.clone(),
                },
            ),
            (None, _) => {
                for m in &self.masters {
                    ctx.send(m, LeaderQueryMessage {});
                }
            }
            (Some(_), None) => self.register(ctx),
        }
    }

    fn on_registered(&mut self, _: &mut Context<'_>, from: &Upid, m: SlaveRegisteredMessage) {
        if Some(from) == self.leader.as_ref() {
            self.id = Some(m.slave_id);
            self.admitted_by.push((from.clone(), self.term));
        }
    }

    fn on_reregistered(&mut self, _: &mut Context<'_>, from: &Upid, _: SlaveReregisteredMessage) {
        if Some(from) == self.leader.as_ref() {
            self.admitted_by.push((from.clone(), self.term));
        }
    }

    fn on_reregister_request(
        &mut self,
        ctx: &mut Context<'_>,
        from: &Upid,
        _: ReregisterRequestMessage,
    ) {
        if Some(from) == self.leader.as_ref() {
            self.register(ctx);
        }
    }
}

impl Process for FollowingSlave {
    fn install(h: &mut Handlers<Self>) {
        h.on(Self::on_detected)
            .on(Self::on_beat)
            .on(Self::on_registered)
            .on(Self::on_reregistered)
            .on(Self::on_reregister_request);
    }

    fn initialize(&mut self, ctx: &mut Context<'_>) {
        for m in &self.masters {
            ctx.send(m, LeaderQueryMessage {});
        }
        ctx.delay(Duration::from_secs(1), Beat);
    }

    fn exited(&mut self, ctx: &mut Context<'_>, upid: &Upid) {
        if Some(upid) == self.leader.as_ref() {
            self.leader = None;
            for m in &self.masters {
                ctx.send(m, LeaderQueryMessage {});
            }
        }
    }
}

struct Cluster {
    sim: Sim,
    masters: Vec<Upid>,
    disks: Vec<MemoryDisk>,
    slaves: Vec<Upid>,
}

impl Cluster {
    fn new(seed: u64, slaves: usize) -> Self {
        let sim = Sim::new(SimConfig::new(seed));
        let masters: Vec<Upid> = (1..=3)
            .map(|i| Upid::new("master", &NodeAddr::new(format!("10.0.0.{i}"), 5050)))
            .collect();
        let mut cluster = Cluster {
            sim,
            masters: masters.clone(),
            disks: vec![MemoryDisk::new(), MemoryDisk::new(), MemoryDisk::new()],
            slaves: Vec::new(),
        };
        for (i, master) in masters.iter().enumerate() {
            cluster.sim.add_node(master.node());
            cluster.spawn_master(i, true);
        }
        for i in 0..slaves {
            let node = NodeAddr::new(format!("10.1.0.{}", i + 1), 5051);
            cluster.sim.add_node(node.clone());
            let upid = cluster.sim.spawn(
                &node,
                "slave(1)",
                FollowingSlave::new(masters.clone(), &node),
            );
            cluster.slaves.push(upid);
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

    /// Masters that may act as leader now.
    fn elected(&mut self) -> Vec<usize> {
        let now = self.sim.now().since_origin();
        (0..self.masters.len())
            .filter(|&i| {
                let m = self.masters[i].clone();
                self.sim
                    .inspect(&m, |p: &MasterProcess| p.acts_at(now))
                    .unwrap_or(false)
            })
            .collect()
    }

    /// Runs `d`, asserting after every event that at most one master acts.
    fn run_checked(&mut self, d: Duration) {
        let until = self.sim.now() + d;
        while self.sim.next_event_at().is_some_and(|t| t <= until) {
            self.sim.step();
            let elected = self.elected();
            assert!(
                elected.len() <= 1,
                "two masters act at once: {elected:?} at {:?}",
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
                "condition not met within {within:?}"
            );
            self.run_checked(Duration::from_millis(10));
        }
    }

    fn await_leader_other_than(&mut self, not: Option<usize>, within: Duration) -> usize {
        let mut found = None;
        self.await_condition(within, |c| {
            found = c.elected().into_iter().find(|&i| Some(i) != not);
            found.is_some()
        });
        found.unwrap()
    }

    /// Slaves the acting master `i` knows as connected.
    fn connected_slaves(&mut self, i: usize) -> usize {
        let m = self.masters[i].clone();
        self.sim
            .inspect(&m, |p: &MasterProcess| {
                p.try_core().map_or(0, |core| {
                    core.slaves()
                        .values()
                        .filter(|s| s.status == plateau_master::core::SlaveStatus::Connected)
                        .count()
                })
            })
            .unwrap_or(0)
    }

    fn replicated_slaves(&mut self, i: usize) -> Option<usize> {
        let m = self.masters[i].clone();
        self.sim.inspect(&m, |p: &MasterProcess| {
            p.replica().unwrap().with_state(|s| s.registry.slaves.len())
        })
    }
}

#[test]
fn three_masters_elect_one_and_the_registry_is_replicated() {
    let mut c = Cluster::new(1, 5);
    let leader = c.await_leader_other_than(None, Duration::from_secs(10));
    c.await_condition(Duration::from_secs(10), |c| c.connected_slaves(leader) == 5);
    c.run_checked(Duration::from_secs(1));
    for i in 0..3 {
        assert_eq!(c.replicated_slaves(i), Some(5), "master {i}");
    }
    // Followers answer who leads.
    let probe = c.slaves[0].clone();
    let follower = c.masters[(leader + 1) % 3].clone();
    let answer = c
        .sim
        .inspect(&follower, |p: &MasterProcess| p.leading_master(&follower))
        .unwrap();
    assert_eq!(answer, Some(c.masters[leader].clone()));
    let admitted = c
        .sim
        .inspect(&probe, |s: &FollowingSlave| s.admitted_by.clone())
        .unwrap();
    assert_eq!(admitted.len(), 1);
    assert_eq!(admitted[0].0, c.masters[leader]);
}

#[test]
fn a_killed_leader_is_replaced_and_every_slave_follows_within_3_seconds() {
    for seed in [2, 20, 21, 22] {
        killed_leader_replaced(seed);
    }
}

fn killed_leader_replaced(seed: u64) {
    let mut c = Cluster::new(seed, 8);
    let first = c.await_leader_other_than(None, Duration::from_secs(10));
    c.await_condition(Duration::from_secs(10), |c| c.connected_slaves(first) == 8);
    c.run_checked(Duration::from_secs(2));
    let node = c.masters[first].node();
    c.sim.crash(&node);
    let killed_at = c.sim.now();
    let second = c.await_leader_other_than(Some(first), Duration::from_secs(10));
    // Every slave was told it is re-admitted (after the commit), by the new leader.
    let new_leader = c.masters[second].clone();
    c.await_condition(Duration::from_secs(10), |c| {
        c.slaves.clone().iter().all(|s| {
            c.sim
                .inspect(s, |s: &FollowingSlave| {
                    s.admitted_by.last().map(|a| &a.0) == Some(&new_leader)
                })
                .unwrap()
        })
    });
    assert_eq!(c.connected_slaves(second), 8);
    let failover = c.sim.now() - killed_at;
    eprintln!("simulated master failover: {failover:?}");
    assert!(
        failover <= Duration::from_secs(3),
        "failover took {failover:?}"
    );
    // Slave ids survived the failover: re-registrations, not new registrations.
    for s in c.slaves.clone() {
        let admitted = c
            .sim
            .inspect(&s, |s: &FollowingSlave| s.admitted_by.clone())
            .unwrap();
        assert_eq!(admitted.last().unwrap().0, c.masters[second]);
    }
    let known = c.replicated_slaves(second).unwrap();
    assert_eq!(known, 8, "no slave admitted twice");
    // The killed master comes back as a follower.
    c.sim.restart(&node);
    c.spawn_master(first, false);
    c.run_checked(Duration::from_secs(3));
    assert_eq!(c.elected(), vec![second]);
    assert_eq!(c.replicated_slaves(first), Some(8));
}

#[test]
fn an_isolated_leader_stops_acting_and_a_new_one_takes_over() {
    let mut c = Cluster::new(3, 4);
    let first = c.await_leader_other_than(None, Duration::from_secs(10));
    c.await_condition(Duration::from_secs(10), |c| c.connected_slaves(first) == 4);
    let node = c.masters[first].node();
    // Cut the leader from the other masters (slaves still reach it).
    for other in 0..3 {
        if other != first {
            let o = c.masters[other].node();
            c.sim.partition(&node, &o);
        }
    }
    let cut_at = c.sim.now();
    // run_checked asserts the old leader stops before the new one acts.
    let second = c.await_leader_other_than(Some(first), Duration::from_secs(10));
    assert!(c.sim.now() - cut_at < Duration::from_secs(4));
    let m = c.masters[first].clone();
    let now = c.sim.now().since_origin();
    assert_eq!(
        c.sim.inspect(&m, |p: &MasterProcess| p.acts_at(now)),
        Some(false)
    );
    c.await_condition(Duration::from_secs(10), |c| c.connected_slaves(second) == 4);
    c.sim.heal();
    c.run_checked(Duration::from_secs(3));
    assert_eq!(c.elected(), vec![second]);
}

#[test]
fn the_same_seed_elects_the_same_way() {
    let run = |seed| {
        let mut c = Cluster::new(seed, 3);
        let first = c.await_leader_other_than(None, Duration::from_secs(10));
        c.run_checked(Duration::from_secs(2));
        let node = c.masters[first].node();
        c.sim.crash(&node);
        let second = c.await_leader_other_than(Some(first), Duration::from_secs(10));
        c.run_checked(Duration::from_secs(2));
        (first, second, c.sim.now(), c.sim.trace_hash())
    };
    assert_eq!(run(5), run(5));
}

#[test]
fn a_paused_leader_wakes_up_deposed_and_does_not_act() {
    let mut c = Cluster::new(4, 3);
    let first = c.await_leader_other_than(None, Duration::from_secs(10));
    c.await_condition(Duration::from_secs(10), |c| c.connected_slaves(first) == 3);
    let node = c.masters[first].node();
    c.sim.pause(&node);
    let second = c.await_leader_other_than(Some(first), Duration::from_secs(10));
    c.await_condition(Duration::from_secs(10), |c| c.connected_slaves(second) == 3);
    c.run_checked(Duration::from_secs(3));
    // It wakes with its old timers and messages: `run_checked` asserts it never acts beside
    // the new leader.
    c.sim.resume(&node);
    c.run_checked(Duration::from_secs(3));
    assert_eq!(c.elected(), vec![second]);
    assert_eq!(c.connected_slaves(second), 3);
    let m = c.masters[first].clone();
    assert_eq!(
        c.sim.inspect(&m, |p: &MasterProcess| p.is_elected()),
        Some(false),
        "the woken leader dropped its core"
    );
}

#[test]
fn a_master_joins_the_running_group_and_another_is_removed() {
    let mut c = Cluster::new(6, 2);
    let leader = c.await_leader_other_than(None, Duration::from_secs(10));
    c.await_condition(Duration::from_secs(10), |c| c.connected_slaves(leader) == 2);
    // A fourth master starts with --join and the group's list.
    let fourth = Upid::new("master", &NodeAddr::new("10.0.0.4", 5050));
    c.sim.add_node(fourth.node());
    c.masters.push(fourth.clone());
    c.disks.push(MemoryDisk::new());
    let replica = Replica::open(
        ReplicaConfig::new(fourth.clone()),
        Box::new(c.disks[3].clone()),
        MasterState::default(),
        0,
    )
    .unwrap();
    let joining = MasterProcess::replicated(MasterConfig::default(), replica)
        .joining(c.masters[..3].to_vec());
    c.sim.spawn(&fourth.node(), "master", joining);
    let leader_upid = c.masters[leader].clone();
    c.await_condition(Duration::from_secs(20), |c| {
        c.sim
            .inspect(&leader_upid, |p: &MasterProcess| {
                p.replica().unwrap().status().voters.len() == 4
            })
            .unwrap()
    });
    assert_eq!(
        c.replicated_slaves(3),
        Some(2),
        "the new master has the registry"
    );
    // The leader removes one of the others.
    let removed = (leader + 1) % 3;
    let voters: Vec<Upid> = (0..4)
        .filter(|&i| i != removed)
        .map(|i| c.masters[i].clone())
        .collect();
    let now_voters = voters.clone();
    let done = c
        .sim
        .call(&leader_upid, move |p: &mut MasterProcess, ctx| {
            p.change_members(ctx, None, now_voters)
        })
        .unwrap();
    assert!(done);
    c.await_condition(Duration::from_secs(20), |c| {
        c.sim
            .inspect(&leader_upid, |p: &MasterProcess| {
                p.replica().unwrap().status().voters.len() == 3
            })
            .unwrap()
    });
    // The new group of three survives losing its leader.
    let node = c.masters[leader].node();
    c.sim.crash(&node);
    let removed_node = c.masters[removed].node();
    c.sim.crash(&removed_node);
    let next = c.await_leader_other_than(Some(leader), Duration::from_secs(10));
    assert!(next != removed);
}

// ----- the coordination service, through its wire protocol ----------------------------------

use plateau_master::coord::{
    CoordOp, CoordOutcome, CoordReply, CoordRequestMessage, CoordResponseMessage, Expect,
    KeepAliveOutcome, LeaseId, LeaseKeepAliveMessage, LeaseKeepAliveResponseMessage,
};

#[derive(Serialize, Deserialize)]
struct Tick;
impl Message for Tick {
    const NAME: &'static str = "test.group.CoordTick";
}

/// A minimal coordination client: sends its script of ops one at a time to the leader it
/// knows (following redirects, retrying every 200 ms), keeps its lease alive every 300 ms.
struct Client {
    masters: Vec<Upid>,
    leader: usize,
    script: Vec<CoordOp>,
    next: usize,
    answers: Vec<CoordReply>,
    lease: Option<LeaseId>,
    lease_alive: bool,
    refused_keep_alives: u32,
}

impl Client {
    fn send_current(&mut self, ctx: &mut Context<'_>) {
        let Some(op) = self.script.get(self.next).cloned() else {
            return;
        };
        let op = match op {
            CoordOp::Put {
                key,
                value,
                expect,
                lease: Some(_),
            } => CoordOp::Put {
                key,
                value,
                expect,
                lease: self.lease,
            },
            op => op,
        };
        ctx.send(
            &self.masters[self.leader],
            CoordRequestMessage {
                request_id: self.next as u64,
                client: None,
                first_unanswered: 0,
                op,
            },
        );
    }

    fn on_response(&mut self, ctx: &mut Context<'_>, _: &Upid, m: CoordResponseMessage) {
        if m.request_id != self.next as u64 {
            return;
        }
        match m.outcome {
            CoordOutcome::Done(Ok(reply)) => {
                if let CoordReply::LeaseGranted { lease, .. } = &reply {
                    self.lease = Some(*lease);
                    self.lease_alive = true;
                }
                self.answers.push(reply);
                self.next += 1;
                self.send_current(ctx);
            }
            CoordOutcome::Done(Err(e)) => panic!("coordination op failed: {e}"),
            CoordOutcome::NotLeader(hint) => {
                if let Some(l) = hint
                    .leader
                    .and_then(|l| self.masters.iter().position(|m| *m == l))
                {
                    self.leader = l;
                }
            }
        }
    }

    fn on_keep_alive(&mut self, _: &mut Context<'_>, _: &Upid, m: LeaseKeepAliveResponseMessage) {
        match m.outcome {
            KeepAliveOutcome::Alive { .. } => {}
            KeepAliveOutcome::Refused(_) => {
                self.lease_alive = false;
                self.refused_keep_alives += 1;
            }
            KeepAliveOutcome::NotLeader(hint) => {
                if let Some(l) = hint
                    .leader
                    .and_then(|l| self.masters.iter().position(|m| *m == l))
                {
                    self.leader = l;
                }
            }
        }
    }

    fn on_tick(&mut self, ctx: &mut Context<'_>, _: &Upid, _: Tick) {
        ctx.delay(Duration::from_millis(300), Tick);
        if let Some(lease) = self.lease {
            ctx.send(&self.masters[self.leader], LeaseKeepAliveMessage { lease });
        }
        // Retry the current op (a lost answer, a dead leader): try the next master.
        self.send_current(ctx);
        self.leader = (self.leader + 1) % self.masters.len();
    }
}

impl Process for Client {
    fn install(h: &mut Handlers<Self>) {
        h.on(Self::on_response)
            .on(Self::on_keep_alive)
            .on(Self::on_tick);
    }
    fn initialize(&mut self, ctx: &mut Context<'_>) {
        self.send_current(ctx);
        ctx.delay(Duration::from_millis(300), Tick);
    }
}

#[test]
fn the_coordination_store_serves_through_a_master_failover_and_keeps_live_leases() {
    let mut c = Cluster::new(7, 1);
    let first = c.await_leader_other_than(None, Duration::from_secs(10));
    let node = NodeAddr::new("10.2.0.1", 7000);
    c.sim.add_node(node.clone());
    let script = vec![
        CoordOp::GrantLease {
            ttl_ms: 3_000,
            session: "client".into(),
        },
        CoordOp::Put {
            key: "/app/leader".into(),
            value: b"me".to_vec(),
            expect: Expect::Absent,
            lease: Some(LeaseId(0)),
        },
        CoordOp::Get {
            key: "/app/leader".into(),
        },
    ];
    let client = c.sim.spawn(
        &node,
        "client",
        Client {
            masters: c.masters.clone(),
            leader: 0,
            script,
            next: 0,
            answers: Vec::new(),
            lease: None,
            lease_alive: false,
            refused_keep_alives: 0,
        },
    );
    c.await_condition(Duration::from_secs(10), |c| {
        c.sim
            .inspect(&client, |cl: &Client| cl.answers.len())
            .unwrap()
            == 3
    });
    let answers = c
        .sim
        .inspect(&client, |cl: &Client| cl.answers.clone())
        .unwrap();
    let CoordReply::Value {
        entry: Some(entry), ..
    } = &answers[2]
    else {
        panic!("the key was not read back: {answers:?}");
    };
    assert_eq!(entry.value, b"me".to_vec());
    // The leading master dies: the lease outlives the failover (keep-alives reach the new
    // leader, which gave every lease a grace), and the key with it.
    let node_of_first = c.masters[first].node();
    c.sim.crash(&node_of_first);
    let second = c.await_leader_other_than(Some(first), Duration::from_secs(10));
    c.run_checked(Duration::from_secs(8));
    let (alive, refused) = c
        .sim
        .inspect(&client, |cl: &Client| {
            (cl.lease_alive, cl.refused_keep_alives)
        })
        .unwrap();
    assert!(alive && refused == 0, "the lease survived the failover");
    let m = c.masters[second].clone();
    let held = c
        .sim
        .inspect(&m, |p: &MasterProcess| {
            p.replica()
                .unwrap()
                .with_state(|s| s.coord.get("/app/leader").is_some())
        })
        .unwrap();
    assert!(held);
    // The client dies: its lease expires on the leader's clock and takes the key with it.
    c.sim.crash(&node);
    c.run_checked(Duration::from_secs(10));
    let held = c
        .sim
        .inspect(&m, |p: &MasterProcess| {
            p.replica()
                .unwrap()
                .with_state(|s| s.coord.get("/app/leader").is_some())
        })
        .unwrap();
    assert!(!held, "an expired lease deletes its keys");
}
