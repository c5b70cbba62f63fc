//! A slave and a framework's scheduler driver following the leader of a group of three masters,
//! in the simulator (virtual clock, reliable network, 1 s link timeout).
//!
//! The masters are [`GroupMaster`]s, a small fake of what a replicated group does at its edge:
//! each believes some master leads in some term and answers `LeaderQuery` with it; the leader
//! admits registrations, the others answer any protocol message with a `NewMasterDetected`
//! redirect; an "election" (the test's doing) changes what they believe, and the winner may push
//! the news to the slave and the framework. The tests check what the slave and the driver do
//! with it, not when: every wait is a condition with a deadline in virtual time.

use std::time::Duration;

use plateau_master::ids::{FrameworkId, OfferId, SlaveId, TaskId};
use plateau_master::messages::{
    CommandInfo, FrameworkInfo, FrameworkRegisteredMessage, FrameworkReregisteredMessage,
    LeaderQueryMessage, NewMasterDetectedMessage, Offer, RegisterFrameworkMessage,
    RegisterSlaveMessage, ReregisterFrameworkMessage, ReregisterSlaveMessage,
    ResourceOffersMessage, RunTaskMessage, SlaveHeartbeatMessage, SlaveRegisteredMessage,
    SlaveReregisteredMessage, StatusUpdateAcknowledgementMessage, StatusUpdateMessage, TaskInfo,
    TaskState,
};
use plateau_master::resources::{Attributes, Resources};
use plateau_runtime::sim::{Sim, SimConfig};
use plateau_runtime::{Context, Handlers, NodeAddr, Process, Upid};
use plateau_sdk::{Driver, Masters, Scheduler, SchedulerDriver, TaskStatus};
use plateau_slave::checkpoint::MemoryCheckpoint;
use plateau_slave::containerizer::{SimContainerizer, SimMachine};
use plateau_slave::health::{ProbeScript, ScriptedProber};
use plateau_slave::process::{MailboxSlot, SlaveEffects, SlaveProcessConfig};
use plateau_slave::{SlaveProcess, SLAVE_PROCESS_NAME};

/// Longest wait for anything, in virtual time (the detector's backoff is at most 8 s, the
/// registration's 10 s).
const WAIT: Duration = Duration::from_secs(60);

/// One master of the fake group.
#[derive(Default)]
struct GroupMaster {
    /// Who this master believes leads, and in which term.
    leader: Option<Upid>,
    term: u64,
    /// Leader queries received.
    queries: u32,
    /// Protocol messages admitted as the leader: (sender, message name).
    admitted: Vec<(Upid, &'static str)>,
    /// Protocol messages answered with a redirect as a follower.
    redirected: Vec<(Upid, &'static str)>,
    /// The tasks each re-registration of a slave listed.
    reregistered_tasks: Vec<Vec<TaskId>>,
}

impl GroupMaster {
    fn believing(leader: &Upid, term: u64) -> Self {
        GroupMaster {
            leader: Some(leader.clone()),
            term,
            ..GroupMaster::default()
        }
    }

    fn news(&self) -> NewMasterDetectedMessage {
        NewMasterDetectedMessage {
            leader: self.leader.clone(),
            term: self.term,
        }
    }

    /// True when this master leads and handles `what`; otherwise `from` is redirected.
    fn leads(&mut self, ctx: &mut Context<'_>, from: &Upid, what: &'static str) -> bool {
        if self.leader.as_ref() == Some(ctx.self_upid()) {
            self.admitted.push((from.clone(), what));
            true
        } else {
            self.redirected.push((from.clone(), what));
            ctx.send(from, self.news());
            false
        }
    }

    fn handle_query(&mut self, ctx: &mut Context<'_>, from: &Upid, _m: LeaderQueryMessage) {
        self.queries += 1;
        ctx.send(from, self.news());
    }

    fn handle_register_slave(
        &mut self,
        ctx: &mut Context<'_>,
        from: &Upid,
        _m: RegisterSlaveMessage,
    ) {
        if self.leads(ctx, from, "RegisterSlave") {
            let msg = SlaveRegisteredMessage {
                slave_id: SlaveId::new("S1"),
                heartbeat_interval_ms: 1000,
            };
            ctx.send(from, msg);
        }
    }

    fn handle_reregister_slave(
        &mut self,
        ctx: &mut Context<'_>,
        from: &Upid,
        m: ReregisterSlaveMessage,
    ) {
        if self.leads(ctx, from, "ReregisterSlave") {
            let tasks = m.tasks.iter().map(|t| t.task.task_id.clone()).collect();
            self.reregistered_tasks.push(tasks);
            let msg = SlaveReregisteredMessage {
                slave_id: m.slave_id,
                heartbeat_interval_ms: 1000,
            };
            ctx.send(from, msg);
        }
    }

    fn handle_heartbeat(&mut self, ctx: &mut Context<'_>, from: &Upid, _m: SlaveHeartbeatMessage) {
        self.leads(ctx, from, "SlaveHeartbeat");
    }

    fn handle_update(&mut self, ctx: &mut Context<'_>, from: &Upid, m: StatusUpdateMessage) {
        if !self.leads(ctx, from, "StatusUpdate") {
            return;
        }
        if let (Some(uuid), Some(slave_id)) = (m.status.uuid, m.status.slave_id.clone()) {
            let ack = StatusUpdateAcknowledgementMessage {
                slave_id,
                framework_id: m.framework_id,
                task_id: m.status.task_id,
                uuid,
            };
            ctx.send(from, ack);
        }
    }

    fn handle_register_framework(
        &mut self,
        ctx: &mut Context<'_>,
        from: &Upid,
        _m: RegisterFrameworkMessage,
    ) {
        if self.leads(ctx, from, "RegisterFramework") {
            let msg = FrameworkRegisteredMessage {
                framework_id: FrameworkId::new("F1"),
                master: ctx.self_upid().clone(),
            };
            ctx.send(from, msg);
        }
    }

    fn handle_reregister_framework(
        &mut self,
        ctx: &mut Context<'_>,
        from: &Upid,
        m: ReregisterFrameworkMessage,
    ) {
        if self.leads(ctx, from, "ReregisterFramework") {
            let msg = FrameworkReregisteredMessage {
                framework_id: m.framework.id.unwrap_or_else(|| FrameworkId::new("F1")),
                master: ctx.self_upid().clone(),
            };
            ctx.send(from, msg);
        }
    }
}

impl Process for GroupMaster {
    fn install(h: &mut Handlers<Self>) {
        h.on(Self::handle_query)
            .on(Self::handle_register_slave)
            .on(Self::handle_reregister_slave)
            .on(Self::handle_heartbeat)
            .on(Self::handle_update)
            .on(Self::handle_register_framework)
            .on(Self::handle_reregister_framework);
    }
}

/// A scheduler that counts what its driver tells it.
#[derive(Default)]
struct Recorder {
    registered: u32,
    reregistered: u32,
    disconnected: u32,
    offers: u32,
}

impl Scheduler for Recorder {
    fn registered(&mut self, _driver: &mut Driver<'_, '_>, _framework_id: &FrameworkId) {
        self.registered += 1;
    }
    fn reregistered(&mut self, _driver: &mut Driver<'_, '_>) {
        self.reregistered += 1;
    }
    fn disconnected(&mut self, _driver: &mut Driver<'_, '_>) {
        self.disconnected += 1;
    }
    fn resource_offers(&mut self, _driver: &mut Driver<'_, '_>, offers: Vec<Offer>) {
        self.offers += offers.len() as u32;
    }
    fn status_update(&mut self, _driver: &mut Driver<'_, '_>, _status: &TaskStatus) {}
}

type Framework = SchedulerDriver<Recorder>;

struct Group {
    sim: Sim,
    nodes: Vec<NodeAddr>,
    masters: Vec<Upid>,
    slave: Upid,
    framework: Upid,
}

impl Group {
    /// Three masters believing the first leads in term 1; a slave and a framework given all
    /// three.
    fn new(seed: u64) -> Group {
        let mut sim = Sim::new(SimConfig::new(seed));
        let nodes: Vec<NodeAddr> = (1..=3)
            .map(|i| NodeAddr::new(format!("10.0.0.{i}"), 5050))
            .collect();
        let masters: Vec<Upid> = nodes.iter().map(|n| Upid::new("master", n)).collect();
        for node in &nodes {
            sim.add_node(node.clone());
            sim.spawn(node, "master", GroupMaster::believing(&masters[0], 1));
        }
        let list = Masters::new(masters.clone()).unwrap();

        let slave_node = NodeAddr::new("10.0.1.1", 5051);
        sim.add_node(slave_node.clone());
        let slot = MailboxSlot::new();
        let effects = SlaveEffects {
            containerizer: Box::new(SimContainerizer::new(
                SimMachine::new(),
                slot.termination_callback(),
            )),
            prober: Box::new(ScriptedProber::new(
                ProbeScript::new(true),
                slot.probe_callback(),
            )),
            checkpoint: Box::new(MemoryCheckpoint::new()),
        };
        let config = SlaveProcessConfig {
            masters: list.clone(),
            work_dir: "/var/lib/plateau".into(),
            hostname: "10.0.1.1".into(),
            port: 5051,
            resources: Resources::parse("cpus:4;mem:4096;ports:[31000-32000]").unwrap(),
            attributes: Attributes::default(),
        };
        let process = SlaveProcess::new(config, effects, slot).unwrap();
        let slave = sim.spawn(&slave_node, SLAVE_PROCESS_NAME, process);

        let framework_node = NodeAddr::new("10.0.2.1", 8080);
        sim.add_node(framework_node.clone());
        let driver = SchedulerDriver::with_masters(
            FrameworkInfo::new("follower"),
            list,
            Recorder::default(),
        );
        let framework = sim.spawn(&framework_node, "follower", driver);
        Group {
            sim,
            nodes,
            masters,
            slave,
            framework,
        }
    }

    /// Runs until `done` holds, failing after [`WAIT`] of virtual time.
    fn run_until(&mut self, what: &str, mut done: impl FnMut(&mut Group) -> bool) {
        let deadline = self.sim.now() + WAIT;
        while !done(self) {
            assert!(
                self.sim.now() < deadline,
                "{what}: not within {WAIT:?} (seed {})",
                self.sim.seed()
            );
            let next = self
                .sim
                .next_event_at()
                .map_or(deadline, |at| at.min(deadline));
            self.sim.run_until(next);
        }
    }

    fn master<R>(&mut self, i: usize, f: impl FnOnce(&GroupMaster) -> R) -> R {
        let upid = self.masters[i].clone();
        self.sim.inspect(&upid, f).expect("the master runs")
    }

    fn slave<R>(&mut self, f: impl FnOnce(&SlaveProcess) -> R) -> R {
        let upid = self.slave.clone();
        self.sim.inspect(&upid, f).expect("the slave runs")
    }

    fn framework<R>(&mut self, f: impl FnOnce(&Framework) -> R) -> R {
        let upid = self.framework.clone();
        self.sim.inspect(&upid, f).expect("the framework runs")
    }

    /// True when the slave is registered with master `i` and the framework connected to it.
    fn both_follow(&mut self, i: usize) -> bool {
        let leader = Some(self.masters[i].clone());
        self.slave(|p| p.is_registered() && p.leader().cloned() == leader)
            && self.framework(|d| d.state().is_connected() && d.state().master().cloned() == leader)
    }

    fn wait_until_both_follow(&mut self, i: usize) {
        self.run_until(&format!("slave and framework following master {i}"), |g| {
            g.both_follow(i)
        });
    }

    /// Master `leader` wins the election of `term`: every running master believes it from now
    /// on; with `push`, the winner tells the slave and the framework.
    fn elect(&mut self, leader: usize, term: u64, push: bool) {
        let winner = self.masters[leader].clone();
        for upid in self.masters.clone() {
            let winner = winner.clone();
            self.sim.call(&upid, move |m: &mut GroupMaster, _ctx| {
                m.leader = Some(winner);
                m.term = term;
            });
        }
        if push {
            let followers = [self.slave.clone(), self.framework.clone()];
            self.sim.call(&winner, move |m: &mut GroupMaster, ctx| {
                for follower in &followers {
                    ctx.send(follower, m.news());
                }
            });
        }
    }

    /// How many protocol messages master `i` admitted from `from` under `name`.
    fn admitted(&mut self, i: usize, from: &Upid, name: &str) -> usize {
        self.master(i, |m| {
            m.admitted
                .iter()
                .filter(|(who, what)| who == from && *what == name)
                .count()
        })
    }

    /// Launches task `id` on the slave, sent as by master `i`.
    fn run_task_from(&mut self, i: usize, id: &str) {
        let task = TaskInfo::new(
            TaskId::new(id),
            SlaveId::new("S1"),
            Resources::parse("cpus:0.5;mem:64").unwrap(),
            CommandInfo::shell("sleep 1000"),
        );
        let msg = RunTaskMessage {
            framework_id: FrameworkId::new("F1"),
            framework: FrameworkInfo::new("follower"),
            framework_pid: self.framework.clone(),
            task,
        };
        let (from, slave) = (self.masters[i].clone(), self.slave.clone());
        self.sim.post(&from, &slave, msg);
    }

    fn task_state(&mut self, id: &str) -> Option<TaskState> {
        self.slave(|p| {
            p.tasks()
                .into_iter()
                .find(|t| t.task_id.as_str() == id)
                .map(|t| t.state)
        })
    }
}

#[test]
fn the_slave_and_the_framework_find_the_leader_among_three() {
    let mut g = Group::new(1);
    g.wait_until_both_follow(0);
    let (slave, framework) = (g.slave.clone(), g.framework.clone());
    assert_eq!(g.admitted(0, &slave, "RegisterSlave"), 1);
    assert_eq!(g.admitted(0, &framework, "RegisterFramework"), 1);
    assert_eq!(g.framework(|d| d.scheduler().registered), 1);
    for i in 0..3 {
        // Every master was asked; the followers were sent nothing else (the leader was known
        // before any registration went out) and admitted nothing.
        assert!(g.master(i, |m| m.queries) >= 2, "master {i} not queried");
        assert!(
            g.master(i, |m| m.redirected.is_empty()),
            "master {i} redirected"
        );
    }
    for i in 1..3 {
        assert!(
            g.master(i, |m| m.admitted.is_empty()),
            "follower {i} admitted"
        );
    }
    // The leader found, no more queries: a while later the counts have not moved.
    let queries: Vec<u32> = (0..3).map(|i| g.master(i, |m| m.queries)).collect();
    g.sim.run_for(Duration::from_secs(30));
    assert_eq!(
        queries,
        (0..3)
            .map(|i| g.master(i, |m| m.queries))
            .collect::<Vec<_>>()
    );
    // Heartbeats went to the leader only.
    assert!(g.admitted(0, &slave, "SlaveHeartbeat") > 0);
}

#[test]
fn a_pushed_leadership_change_is_followed_with_the_tasks_kept() {
    let mut g = Group::new(2);
    g.wait_until_both_follow(0);
    g.run_task_from(0, "t1");
    g.run_until("t1 running", |g| {
        g.task_state("t1") == Some(TaskState::Running)
    });

    g.elect(1, 2, true);
    g.wait_until_both_follow(1);
    let (slave, framework) = (g.slave.clone(), g.framework.clone());
    // Re-registered (not registered anew) with the new leader, listing the task.
    assert_eq!(g.admitted(1, &slave, "ReregisterSlave"), 1);
    assert_eq!(g.admitted(1, &slave, "RegisterSlave"), 0);
    let listed = g.master(1, |m| m.reregistered_tasks.clone());
    assert_eq!(listed, vec![vec![TaskId::new("t1")]]);
    assert_eq!(g.task_state("t1"), Some(TaskState::Running));
    assert_eq!(g.admitted(1, &framework, "ReregisterFramework"), 1);
    let (disconnected, reregistered) =
        g.framework(|d| (d.scheduler().disconnected, d.scheduler().reregistered));
    assert_eq!((disconnected, reregistered), (1, 1));
    // From now on the new leader hears the heartbeats; the old one, a follower, hears
    // nothing (before the news arrived, an update in flight may have reached it).
    let (heartbeats, redirected) = (
        g.admitted(0, &slave, "SlaveHeartbeat"),
        g.master(0, |m| m.redirected.len()),
    );
    g.sim.run_for(Duration::from_secs(5));
    assert!(g.admitted(1, &slave, "SlaveHeartbeat") > 0);
    assert_eq!(g.admitted(0, &slave, "SlaveHeartbeat"), heartbeats);
    assert_eq!(g.master(0, |m| m.redirected.len()), redirected);
}

#[test]
fn a_crashed_leader_is_noticed_and_the_next_one_found_by_querying() {
    let mut g = Group::new(3);
    g.wait_until_both_follow(0);
    let queries_before: Vec<u32> = (1..3).map(|i| g.master(i, |m| m.queries)).collect();
    // The leader's node crashes; the others elect master 2 and tell no one.
    let node = g.nodes[0].clone();
    g.sim.crash(&node);
    g.elect(2, 2, false);
    g.wait_until_both_follow(2);
    let (slave, framework) = (g.slave.clone(), g.framework.clone());
    assert_eq!(g.admitted(2, &slave, "ReregisterSlave"), 1);
    assert_eq!(g.admitted(2, &framework, "ReregisterFramework"), 1);
    // They found it by asking: the surviving masters were queried again.
    for (i, before) in (1..3).zip(queries_before) {
        assert!(
            g.master(i, |m| m.queries) > before,
            "master {i} not queried"
        );
    }
    assert_eq!(g.framework(|d| d.scheduler().disconnected), 1);
}

#[test]
fn a_stale_announcement_of_a_lower_term_is_ignored() {
    let mut g = Group::new(4);
    g.wait_until_both_follow(0);
    g.elect(1, 5, true);
    g.wait_until_both_follow(1);
    // Master 0, deposed but not told, believes it still leads in term 1 and says so.
    let (m0, followers) = (g.masters[0].clone(), [g.slave.clone(), g.framework.clone()]);
    g.sim.call(&m0, move |m: &mut GroupMaster, ctx| {
        m.leader = Some(ctx.self_upid().clone());
        m.term = 1;
        for follower in &followers {
            ctx.send(follower, m.news());
        }
    });
    let admitted_by_0 = g.master(0, |m| m.admitted.len());
    g.sim.run_for(Duration::from_secs(20));
    assert!(g.both_follow(1), "the stale news was followed");
    assert_eq!(g.master(0, |m| m.admitted.len()), admitted_by_0);
    assert_eq!(g.framework(|d| d.scheduler().disconnected), 1);
}

#[test]
fn protocol_messages_from_a_master_that_does_not_lead_are_ignored() {
    let mut g = Group::new(5);
    g.wait_until_both_follow(0);
    // A follower sends a task and an offer: neither is taken.
    g.run_task_from(1, "rogue");
    let offer = |id: &str| ResourceOffersMessage {
        offers: vec![Offer {
            id: OfferId::new(id),
            framework_id: FrameworkId::new("F1"),
            slave_id: SlaveId::new("S1"),
            hostname: "10.0.1.1".into(),
            resources: Resources::parse("cpus:1;mem:128").unwrap(),
            attributes: Attributes::default(),
            unavailability: None,
        }],
    };
    let (m0, m1, framework) = (
        g.masters[0].clone(),
        g.masters[1].clone(),
        g.framework.clone(),
    );
    g.sim.post(&m1, &framework, offer("o-follower"));
    g.sim.run_for(Duration::from_secs(5));
    assert_eq!(g.task_state("rogue"), None);
    assert_eq!(g.framework(|d| d.scheduler().offers), 0);
    // The same from the leader is taken.
    g.run_task_from(0, "real");
    g.sim.post(&m0, &framework, offer("o-leader"));
    g.run_until("the leader's task and offer taken", |g| {
        g.task_state("real").is_some() && g.framework(|d| d.scheduler().offers) == 1
    });
    assert_eq!(g.task_state("rogue"), None);
}

#[test]
fn same_seed_same_trace() {
    let run = |seed| {
        let mut g = Group::new(seed);
        g.wait_until_both_follow(0);
        let node = g.nodes[0].clone();
        g.sim.crash(&node);
        g.elect(1, 2, false);
        g.wait_until_both_follow(1);
        g.sim.trace_hash()
    };
    assert_eq!(run(9), run(9));
}
