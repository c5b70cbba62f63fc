//! Process-level tests: the real `MasterProcess` inside the simulator, with small test
//! processes playing a slave and a framework (they speak the wire protocol and record what
//! comes back). Virtual time: no sleeps.

use std::collections::BTreeMap;
use std::time::Duration;

use plateau_master::core::{FrameworkStatus, SlaveStatus};
use plateau_master::ids::{FrameworkId, SlaveId, TaskId};
use plateau_master::messages::*;
use plateau_master::registry::{MemoryRegistry, Registry};
use plateau_master::resources::{Attributes, Resources};
use plateau_master::{MasterConfig, MasterProcess};
use plateau_runtime::sim::{Sim, SimConfig};
use plateau_runtime::{Context, Handlers, Message, NodeAddr, Process, Upid};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Beat;
impl Message for Beat {
    const NAME: &'static str = "test.Beat";
}

/// Plays a slave: registers, heartbeats every second (unless silenced), runs tasks by
/// answering RUNNING, records acknowledgements, re-registers with its tasks when asked or
/// when its link to the master breaks.
struct FakeSlave {
    master: Upid,
    info: SlaveInfo,
    id: Option<SlaveId>,
    silent: bool,
    tasks: BTreeMap<TaskId, SlaveTask>,
    frameworks: BTreeMap<FrameworkId, Upid>,
    acks: Vec<StatusUpdateAcknowledgementMessage>,
    reregistrations: u32,
    next_uuid: u8,
}

impl FakeSlave {
    fn new(master: Upid, node: &NodeAddr) -> Self {
        FakeSlave {
            master,
            info: SlaveInfo {
                hostname: node.host.to_string(),
                port: node.port,
                resources: Resources::parse("cpus:4;mem:4096;ports:[31000-31100]").unwrap(),
                attributes: Attributes::default(),
            },
            id: None,
            silent: false,
            tasks: BTreeMap::new(),
            frameworks: BTreeMap::new(),
            acks: Vec::new(),
            reregistrations: 0,
            next_uuid: 1,
        }
    }

    fn reregister(&mut self, ctx: &mut Context<'_>) {
        let Some(id) = self.id.clone() else { return };
        ctx.link(&self.master);
        ctx.send(
            &self.master,
            ReregisterSlaveMessage {
                slave_id: id,
                slave: self.info.clone(),
                tasks: self.tasks.values().cloned().collect(),
                frameworks: self.frameworks.clone().into_iter().collect(),
            },
        );
    }

    fn on_beat(&mut self, ctx: &mut Context<'_>, _: &Upid, _: Beat) {
        if let (Some(id), false) = (&self.id, self.silent) {
            ctx.send(
                &self.master,
                SlaveHeartbeatMessage {
                    slave_id: id.clone(),
                },
            );
        }
        ctx.delay(Duration::from_secs(1), Beat);
    }

    fn on_registered(&mut self, _: &mut Context<'_>, _: &Upid, m: SlaveRegisteredMessage) {
        assert_eq!(m.heartbeat_interval_ms, 1000);
        self.id = Some(m.slave_id);
    }

    fn on_reregistered(&mut self, _: &mut Context<'_>, _: &Upid, m: SlaveReregisteredMessage) {
        assert_eq!(Some(&m.slave_id), self.id.as_ref());
        self.reregistrations += 1;
    }

    fn on_reregister_request(
        &mut self,
        ctx: &mut Context<'_>,
        _: &Upid,
        _: ReregisterRequestMessage,
    ) {
        if !self.silent {
            self.reregister(ctx);
        }
    }

    fn on_run_task(&mut self, ctx: &mut Context<'_>, from: &Upid, m: RunTaskMessage) {
        self.frameworks
            .insert(m.framework_id.clone(), m.framework_pid.clone());
        let uuid = [self.next_uuid; 16];
        self.next_uuid += 1;
        self.tasks.insert(
            m.task.task_id.clone(),
            SlaveTask {
                framework_id: m.framework_id.clone(),
                task: m.task.clone(),
                state: TaskState::Running,
            },
        );
        ctx.send(
            from,
            StatusUpdateMessage {
                framework_id: m.framework_id,
                status: TaskStatus {
                    task_id: m.task.task_id,
                    state: TaskState::Running,
                    message: None,
                    source: StatusSource::Executor,
                    reason: None,
                    slave_id: self.id.clone(),
                    healthy: None,
                    timestamp: 0.0,
                    uuid: Some(uuid),
                },
                slave_pid: Some(ctx.self_upid().clone()),
            },
        );
    }

    fn on_ack(&mut self, _: &mut Context<'_>, _: &Upid, m: StatusUpdateAcknowledgementMessage) {
        self.acks.push(m);
    }
}

impl Process for FakeSlave {
    fn install(h: &mut Handlers<Self>) {
        h.on(Self::on_beat)
            .on(Self::on_registered)
            .on(Self::on_reregistered)
            .on(Self::on_reregister_request)
            .on(Self::on_run_task)
            .on(Self::on_ack);
    }

    fn initialize(&mut self, ctx: &mut Context<'_>) {
        ctx.link(&self.master);
        ctx.send(
            &self.master,
            RegisterSlaveMessage {
                slave: self.info.clone(),
            },
        );
        ctx.delay(Duration::from_secs(1), Beat);
    }

    fn exited(&mut self, ctx: &mut Context<'_>, upid: &Upid) {
        if *upid == self.master && !self.silent {
            self.reregister(ctx);
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Retry;
impl Message for Retry {
    const NAME: &'static str = "test.Retry";
}

/// Plays a framework: registers, launches one task on its first offer, declines the rest,
/// acknowledges every update with a uuid, re-registers (retrying every second) when its link
/// to the master breaks.
struct FakeFramework {
    master: Upid,
    id: Option<FrameworkId>,
    connected: bool,
    launched: bool,
    updates: Vec<TaskStatus>,
}

impl FakeFramework {
    fn info(&self) -> FrameworkInfo {
        let mut info = FrameworkInfo::new("fake");
        info.id = self.id.clone();
        info.failover_timeout_secs = 3600.0;
        info
    }

    fn on_registered(&mut self, _: &mut Context<'_>, _: &Upid, m: FrameworkRegisteredMessage) {
        self.id = Some(m.framework_id);
        self.connected = true;
    }

    fn on_reregistered(&mut self, _: &mut Context<'_>, _: &Upid, _: FrameworkReregisteredMessage) {
        self.connected = true;
    }

    fn on_offers(&mut self, ctx: &mut Context<'_>, _: &Upid, m: ResourceOffersMessage) {
        let framework_id = self.id.clone().unwrap();
        for offer in m.offers {
            let tasks = if self.launched {
                vec![]
            } else {
                self.launched = true;
                vec![TaskInfo {
                    name: "t1".into(),
                    task_id: TaskId::new("t1"),
                    slave_id: offer.slave_id.clone(),
                    resources: Resources::parse("cpus:1;mem:128;ports:[31000-31000]").unwrap(),
                    command: CommandInfo::shell("sleep 1000"),
                    health_check: None,
                    labels: BTreeMap::new(),
                    kill_grace_period_secs: None,
                }]
            };
            ctx.send(
                &self.master,
                LaunchTasksMessage {
                    framework_id: framework_id.clone(),
                    offer_ids: vec![offer.id],
                    tasks,
                    filters: Filters::default(),
                    fencing_epoch: None,
                },
            );
        }
    }

    fn on_update(&mut self, ctx: &mut Context<'_>, _: &Upid, m: StatusUpdateMessage) {
        if let (Some(uuid), Some(slave_id)) = (m.status.uuid, m.status.slave_id.clone()) {
            ctx.send(
                &self.master,
                StatusUpdateAcknowledgementMessage {
                    slave_id,
                    framework_id: m.framework_id.clone(),
                    task_id: m.status.task_id.clone(),
                    uuid,
                },
            );
        }
        self.updates.push(m.status);
    }

    fn on_retry(&mut self, ctx: &mut Context<'_>, _: &Upid, _: Retry) {
        if !self.connected {
            ctx.link(&self.master);
            ctx.send(
                &self.master,
                ReregisterFrameworkMessage {
                    framework: self.info(),
                    failover: false,
                    fencing: None,
                },
            );
            ctx.delay(Duration::from_secs(1), Retry);
        }
    }

    fn on_rescind(&mut self, _: &mut Context<'_>, _: &Upid, _: RescindResourceOfferMessage) {}
    fn on_lost(&mut self, _: &mut Context<'_>, _: &Upid, _: LostSlaveMessage) {}
}

impl Process for FakeFramework {
    fn install(h: &mut Handlers<Self>) {
        h.on(Self::on_registered)
            .on(Self::on_reregistered)
            .on(Self::on_offers)
            .on(Self::on_update)
            .on(Self::on_retry)
            .on(Self::on_rescind)
            .on(Self::on_lost);
    }

    fn initialize(&mut self, ctx: &mut Context<'_>) {
        ctx.link(&self.master);
        ctx.send(
            &self.master,
            RegisterFrameworkMessage {
                framework: self.info(),
                fencing: None,
            },
        );
    }

    fn exited(&mut self, ctx: &mut Context<'_>, upid: &Upid) {
        if *upid == self.master {
            self.connected = false;
            ctx.delay(Duration::from_millis(100), Retry);
        }
    }
}

fn task_state(sim: &mut Sim, master: &Upid, task: &str) -> Option<TaskState> {
    sim.inspect(master, |p: &MasterProcess| {
        p.core()
            .tasks()
            .iter()
            .find(|((_, t), _)| t.as_str() == task)
            .map(|(_, t)| t.state)
    })
    .flatten()
}

#[test]
fn launch_status_ack_agent_loss_and_master_restart() {
    let mut sim = Sim::new(SimConfig::new(7));
    let master_node = NodeAddr::new("10.0.0.1", 5050);
    let slave_node = NodeAddr::new("10.0.0.2", 5051);
    let framework_node = NodeAddr::new("10.0.0.9", 7000);
    for n in [&master_node, &slave_node, &framework_node] {
        sim.add_node(n.clone());
    }
    let registry = MemoryRegistry::new();
    let master = sim.spawn(
        &master_node,
        "master",
        MasterProcess::new(MasterConfig::default(), Box::new(registry.clone())).unwrap(),
    );
    let slave = sim.spawn(
        &slave_node,
        "slave(1)",
        FakeSlave::new(master.clone(), &slave_node),
    );
    let framework = sim.spawn(
        &framework_node,
        "scheduler",
        FakeFramework {
            master: master.clone(),
            id: None,
            connected: false,
            launched: false,
            updates: vec![],
        },
    );

    // Register, offer (soon after the registrations, not after a whole allocation interval),
    // launch, RUNNING, ack back to the slave.
    let start = sim.now();
    assert!(sim.run_until_condition(Duration::from_secs(5), |sim| {
        sim.inspect(&slave, |s: &FakeSlave| !s.acks.is_empty())
            .unwrap()
    }));
    assert!(
        sim.now() - start < Duration::from_millis(500),
        "launch waited for the allocation timer: {:?}",
        sim.now() - start
    );
    let acks = sim.inspect(&slave, |s: &FakeSlave| s.acks.clone()).unwrap();
    assert_eq!(acks[0].task_id.as_str(), "t1");
    assert_eq!(acks[0].uuid, [1; 16]);
    let updates = sim
        .inspect(&framework, |f: &FakeFramework| f.updates.clone())
        .unwrap();
    assert_eq!(updates[0].state, TaskState::Running);
    assert_eq!(
        task_state(&mut sim, &master, "t1"),
        Some(TaskState::Running)
    );
    let slave_id = sim
        .inspect(&slave, |s: &FakeSlave| s.id.clone())
        .unwrap()
        .unwrap();
    assert!(registry.load().unwrap().slaves.contains_key(&slave_id));

    // Quiet time: heartbeats keep it connected well past the agent timeout.
    sim.run_for(Duration::from_secs(20));
    assert_eq!(
        task_state(&mut sim, &master, "t1"),
        Some(TaskState::Running)
    );

    // The slave goes silent: TASK_UNREACHABLE within the agent timeout (+ one heartbeat
    // interval since its last heartbeat, + one tick).
    sim.call(&slave, |s: &mut FakeSlave, _| s.silent = true);
    let silent_at = sim.now();
    assert!(sim.run_until_condition(Duration::from_secs(10), |sim| {
        sim.inspect(&framework, |f: &FakeFramework| {
            f.updates.iter().any(|u| u.state == TaskState::Unreachable)
        })
        .unwrap()
    }));
    let took = sim.now() - silent_at;
    assert!(took >= Duration::from_secs(4), "too early: {took:?}");
    assert!(took <= Duration::from_millis(6_600), "too late: {took:?}");
    let unreachable = sim
        .inspect(&framework, |f: &FakeFramework| f.updates.last().cloned())
        .unwrap()
        .unwrap();
    assert_eq!(unreachable.reason, Some(Reason::SlaveDisconnected));
    assert_eq!(unreachable.uuid, None);
    assert!(registry.load().unwrap().slaves[&slave_id].unreachable);

    // It speaks again: asked to re-register, its task is RUNNING again.
    sim.call(&slave, |s: &mut FakeSlave, _| s.silent = false);
    assert!(sim.run_until_condition(Duration::from_secs(5), |sim| {
        task_state(sim, &master, "t1") == Some(TaskState::Running)
    }));
    assert!(!registry.load().unwrap().slaves[&slave_id].unreachable);
    // The framework learns it from the master (the update is on the wire).
    assert!(sim.run_until_condition(Duration::from_secs(1), |sim| {
        sim.inspect(&framework, |f: &FakeFramework| {
            f.updates
                .last()
                .is_some_and(|u| u.state == TaskState::Running)
        })
        .unwrap()
    }));
    let last = sim
        .inspect(&framework, |f: &FakeFramework| f.updates.last().cloned())
        .unwrap()
        .unwrap();
    assert_eq!(
        (last.state, last.reason),
        (TaskState::Running, Some(Reason::Reconciliation))
    );

    // The master crashes and comes back on the same registry.
    sim.crash(&master_node);
    sim.run_for(Duration::from_secs(2));
    sim.restart(&master_node);
    let master = sim.spawn(
        &master_node,
        "master",
        MasterProcess::new(MasterConfig::default(), Box::new(registry.clone())).unwrap(),
    );
    assert!(sim.run_until_condition(Duration::from_secs(15), |sim| {
        sim.inspect(&master, |p: &MasterProcess| {
            let core = p.core();
            let slave_ok = core
                .slaves()
                .values()
                .any(|s| s.status == SlaveStatus::Connected);
            let framework_ok = core
                .frameworks()
                .values()
                .any(|f| f.status == FrameworkStatus::Active && f.tasks.len() == 1);
            slave_ok && framework_ok
        })
        .unwrap()
    }));
    assert_eq!(
        task_state(&mut sim, &master, "t1"),
        Some(TaskState::Running)
    );
    // The task was not disturbed: the slave never saw another RunTask.
    assert_eq!(
        sim.inspect(&slave, |s: &FakeSlave| s.tasks.len()).unwrap(),
        1
    );
    let state = sim
        .inspect(&master, |p: &MasterProcess| {
            plateau_master::http::state_json(p.core(), p.started_at(), Duration::ZERO)
        })
        .unwrap();
    assert_eq!(state["activated_slaves"], 1);
    assert_eq!(state["frameworks"][0]["tasks"][0]["state"], "TASK_RUNNING");
    assert_eq!(
        state["frameworks"][0]["tasks"][0]["slave_id"],
        slave_id.as_str()
    );
    // Ids keep counting across the restart; the run id changed.
    let run_ids: Vec<String> = registry.load().unwrap().master_run_id.into_iter().collect();
    assert_eq!(run_ids.len(), 1);
    assert_eq!(
        sim.inspect(&master, |p: &MasterProcess| p.core().run_id().to_string()),
        Some(run_ids[0].clone())
    );
    assert!(!slave_id.as_str().starts_with(&run_ids[0]));
}

#[test]
fn same_seed_same_trace() {
    fn run(seed: u64) -> u64 {
        let mut sim = Sim::new(SimConfig::new(seed));
        let m = NodeAddr::new("10.0.0.1", 5050);
        let s = NodeAddr::new("10.0.0.2", 5051);
        let f = NodeAddr::new("10.0.0.9", 7000);
        for n in [&m, &s, &f] {
            sim.add_node(n.clone());
        }
        let master = sim.spawn(
            &m,
            "master",
            MasterProcess::new(MasterConfig::default(), Box::new(MemoryRegistry::new())).unwrap(),
        );
        sim.spawn(&s, "slave(1)", FakeSlave::new(master.clone(), &s));
        sim.spawn(
            &f,
            "scheduler",
            FakeFramework {
                master,
                id: None,
                connected: false,
                launched: false,
                updates: vec![],
            },
        );
        sim.run_for(Duration::from_secs(30));
        sim.trace_hash()
    }
    assert_eq!(run(3), run(3));
}
