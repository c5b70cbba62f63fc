//! Process-level tests of the slave in the simulator: a [`SimContainerizer`], an in-memory
//! checkpoint, a scripted prober and a small fake master, on a virtual clock.

use std::sync::Mutex;
use std::time::Duration;

use plateau_master::ids::{FrameworkId, SlaveId, TaskId};
use plateau_master::messages::{
    CommandInfo, FrameworkInfo, HealthCheck, HealthCheckKind, KillTaskMessage, Reason,
    RegisterSlaveMessage, ReregisterRequestMessage, ReregisterSlaveMessage, RunTaskMessage,
    ShutdownFrameworkMessage, SlaveHeartbeatMessage, SlaveRegisteredMessage,
    SlaveReregisteredMessage, StatusUpdateAcknowledgementMessage, StatusUpdateMessage, TaskInfo,
    TaskState, TaskStatus,
};
use plateau_master::resources::{Attributes, Resources};
use plateau_runtime::sim::{Sim, SimConfig};
use plateau_runtime::{Context, Handlers, NodeAddr, Process, Upid};

use super::*;
use crate::checkpoint::MemoryCheckpoint;
use crate::containerizer::{RecoverInfo, SimContainerizer, SimMachine, Usage};
use crate::health::{ProbeScript, ScriptedProber};

/// A master that records what the slave sends, and answers as told.
#[derive(Default)]
struct FakeMaster {
    /// Answer registrations.
    reply: bool,
    /// Acknowledge status updates.
    ack: bool,
    registers: Vec<Duration>,
    reregisters: Vec<(Duration, ReregisterSlaveMessage)>,
    heartbeats: Vec<Duration>,
    updates: Vec<(Duration, TaskStatus)>,
}

impl FakeMaster {
    fn new(reply: bool, ack: bool) -> Self {
        FakeMaster {
            reply,
            ack,
            ..Default::default()
        }
    }

    fn handle_register(&mut self, ctx: &mut Context<'_>, from: &Upid, _msg: RegisterSlaveMessage) {
        self.registers.push(ctx.now().since_origin());
        if self.reply {
            ctx.send(
                from,
                SlaveRegisteredMessage {
                    slave_id: SlaveId::new("run-S1"),
                    heartbeat_interval_ms: 1000,
                },
            );
        }
    }

    fn handle_reregister(
        &mut self,
        ctx: &mut Context<'_>,
        from: &Upid,
        msg: ReregisterSlaveMessage,
    ) {
        let slave_id = msg.slave_id.clone();
        self.reregisters.push((ctx.now().since_origin(), msg));
        if self.reply {
            ctx.send(
                from,
                SlaveReregisteredMessage {
                    slave_id,
                    heartbeat_interval_ms: 1000,
                },
            );
        }
    }

    fn handle_heartbeat(&mut self, ctx: &mut Context<'_>, _from: &Upid, _m: SlaveHeartbeatMessage) {
        self.heartbeats.push(ctx.now().since_origin());
    }

    fn handle_update(&mut self, ctx: &mut Context<'_>, from: &Upid, msg: StatusUpdateMessage) {
        assert_eq!(msg.slave_pid.as_ref(), Some(from));
        self.updates
            .push((ctx.now().since_origin(), msg.status.clone()));
        if let (true, Some(uuid)) = (self.ack, msg.status.uuid) {
            ctx.send(
                from,
                StatusUpdateAcknowledgementMessage {
                    slave_id: msg.status.slave_id.clone().unwrap(),
                    framework_id: msg.framework_id,
                    task_id: msg.status.task_id,
                    uuid,
                },
            );
        }
    }
}

impl Process for FakeMaster {
    fn install(h: &mut Handlers<Self>) {
        h.on(Self::handle_register)
            .on(Self::handle_reregister)
            .on(Self::handle_heartbeat)
            .on(Self::handle_update);
    }
}

/// The launches a [`DeferredContainerizer`] holds until the test completes them, like the
/// real containerizer's launcher threads but at the test's command (and deterministic).
#[derive(Clone)]
struct Deferred {
    inner: Arc<Mutex<SimContainerizer>>,
    pending: Arc<Mutex<Vec<TaskSpec>>>,
    on_launch: LaunchCallback,
    /// How many times the slave polled.
    polls: Arc<Mutex<u32>>,
}

impl Deferred {
    fn pending_ids(&self) -> Vec<String> {
        let pending = self.pending.lock().unwrap();
        pending.iter().map(|s| s.task_id.clone()).collect()
    }

    /// Carries out the launch of `task_id` and posts its outcome to the slave.
    fn complete(&self, task_id: &str) {
        let spec = {
            let mut pending = self.pending.lock().unwrap();
            let at = pending
                .iter()
                .position(|s| s.task_id == task_id)
                .expect("a pending launch");
            pending.remove(at)
        };
        let result = self.inner.lock().unwrap().launch(spec);
        (self.on_launch)(task_id.to_string(), result);
    }
}

/// A simulated containerizer whose `start_launch` answers Pending.
struct DeferredContainerizer(Deferred);

impl Containerizer for DeferredContainerizer {
    fn launch(&mut self, spec: TaskSpec) -> Result<LaunchInfo, ContainerizerError> {
        self.0.inner.lock().unwrap().launch(spec)
    }
    fn start_launch(&mut self, spec: TaskSpec) -> LaunchStart {
        self.0.pending.lock().unwrap().push(spec);
        LaunchStart::Pending
    }
    fn kill(&mut self, task_id: &str, grace: Duration) -> Result<(), ContainerizerError> {
        self.0.inner.lock().unwrap().kill(task_id, grace)
    }
    fn usage(&self, task_id: &str) -> Result<Usage, ContainerizerError> {
        self.0.inner.lock().unwrap().usage(task_id)
    }
    fn recover(&mut self, known: Vec<RecoverInfo>) -> Vec<RecoveredTask> {
        self.0.inner.lock().unwrap().recover(known)
    }
    fn forget(&mut self, task_id: &str) {
        self.0.inner.lock().unwrap().forget(task_id)
    }
    fn destroy_all(&mut self) {
        self.0.inner.lock().unwrap().destroy_all()
    }
    fn poll(&mut self, now: Duration) -> Option<Duration> {
        *self.0.polls.lock().unwrap() += 1;
        self.0.inner.lock().unwrap().poll(now)
    }
}

struct World {
    sim: Sim,
    master_node: NodeAddr,
    slave_node: NodeAddr,
    master: Upid,
    slave: Upid,
    machine: SimMachine,
    checkpoint: MemoryCheckpoint,
    script: ProbeScript,
    /// The slave launches in the background: each life of it gets a [`Deferred`].
    defer_launches: bool,
    /// The current slave's launches, waiting for [`Deferred::complete`].
    deferred: Option<Deferred>,
}

fn s(secs: f64) -> Duration {
    Duration::from_secs_f64(secs)
}

impl World {
    fn new(seed: u64, reply: bool, ack: bool) -> World {
        Self::build(seed, reply, ack, false)
    }

    /// A world whose slave launches in the background (see [`DeferredContainerizer`]).
    fn deferred(seed: u64) -> World {
        Self::build(seed, true, true, true)
    }

    fn build(seed: u64, reply: bool, ack: bool, defer_launches: bool) -> World {
        let mut sim = Sim::new(SimConfig::new(seed));
        let master_node = NodeAddr::new("10.0.0.1", 5050);
        let slave_node = NodeAddr::new("10.0.0.2", 5051);
        sim.add_node(master_node.clone());
        sim.add_node(slave_node.clone());
        let master = sim.spawn(&master_node, "master", FakeMaster::new(reply, ack));
        let mut world = World {
            sim,
            master_node,
            slave_node: slave_node.clone(),
            master,
            slave: Upid::new(SLAVE_PROCESS_NAME, &slave_node),
            machine: SimMachine::new(),
            checkpoint: MemoryCheckpoint::new(),
            script: ProbeScript::new(true),
            defer_launches,
            deferred: None,
        };
        world.spawn_slave();
        world
    }

    fn launches(&self) -> &Deferred {
        self.deferred.as_ref().expect("a deferred world")
    }

    /// Starts a slave process on the slave node with the world's machine and checkpoint.
    fn spawn_slave(&mut self) {
        let slot = MailboxSlot::new();
        let sim_containerizer =
            SimContainerizer::new(self.machine.clone(), slot.termination_callback());
        let containerizer: Box<dyn Containerizer> = if self.defer_launches {
            // A new life of the slave: launches under way in the old one are lost.
            let deferred = Deferred {
                inner: Arc::new(Mutex::new(sim_containerizer)),
                pending: Arc::default(),
                on_launch: slot.launch_callback(),
                polls: Arc::default(),
            };
            self.deferred = Some(deferred.clone());
            Box::new(DeferredContainerizer(deferred))
        } else {
            Box::new(sim_containerizer)
        };
        let effects = SlaveEffects {
            containerizer,
            prober: Box::new(ScriptedProber::new(
                self.script.clone(),
                slot.probe_callback(),
            )),
            checkpoint: Box::new(self.checkpoint.clone()),
        };
        let config = SlaveProcessConfig {
            masters: self.master.clone().into(),
            work_dir: "/var/lib/plateau".into(),
            hostname: "10.0.0.2".into(),
            port: 5051,
            resources: Resources::parse("cpus:4;mem:4096;ports:[31000-32000]").unwrap(),
            attributes: Attributes::parse("rack:r1").unwrap(),
        };
        let process = SlaveProcess::new(config, effects, slot).unwrap();
        self.slave = self
            .sim
            .spawn(&self.slave_node, SLAVE_PROCESS_NAME, process);
    }

    fn master<R>(&mut self, f: impl FnOnce(&mut FakeMaster) -> R) -> R {
        let upid = self.master.clone();
        self.sim
            .call(&upid, |m: &mut FakeMaster, _ctx| f(m))
            .expect("master runs")
    }

    fn slave<R>(&mut self, f: impl FnOnce(&SlaveProcess) -> R) -> R {
        let upid = self.slave.clone();
        self.sim.inspect(&upid, f).expect("slave runs")
    }

    fn run_until(&mut self, limit: f64, mut done: impl FnMut(&mut World) -> bool) {
        let deadline = self.sim.now() + s(limit);
        while !done(self) {
            assert!(
                self.sim.now() < deadline,
                "condition not met within {limit} s (seed {})",
                self.sim.seed()
            );
            let step = self
                .sim
                .next_event_at()
                .map_or(deadline, |at| at.min(deadline));
            self.sim.run_until(step);
        }
    }

    fn registered(&mut self) {
        self.run_until(30.0, |w| w.slave(|p| p.is_registered()));
    }

    fn run_task(&mut self, task: TaskInfo) {
        let msg = RunTaskMessage {
            framework_id: FrameworkId::new("fw"),
            framework: FrameworkInfo::new("marathon"),
            framework_pid: Upid::new("marathon", &self.master_node),
            task,
        };
        let (master, slave) = (self.master.clone(), self.slave.clone());
        self.sim.post(&master, &slave, msg);
        // Past the network's latency: the slave has the task.
        self.sim.run_for(s(0.01));
    }

    fn states_of(&mut self, task: &str) -> Vec<TaskState> {
        self.master(|m| {
            m.updates
                .iter()
                .filter(|(_, u)| u.task_id.as_str() == task)
                .map(|(_, u)| u.state)
                .collect()
        })
    }

    fn updates_of(&mut self, task: &str) -> Vec<TaskStatus> {
        self.master(|m| {
            m.updates
                .iter()
                .filter(|(_, u)| u.task_id.as_str() == task)
                .map(|(_, u)| u.clone())
                .collect()
        })
    }
}

fn task(id: &str, command: &str) -> TaskInfo {
    TaskInfo {
        name: id.into(),
        task_id: TaskId::new(id),
        slave_id: SlaveId::new("run-S1"),
        resources: Resources::parse("cpus:1;mem:128;ports:[31000-31001]").unwrap(),
        command: CommandInfo::shell(command),
        health_check: None,
        labels: Default::default(),
        kill_grace_period_secs: None,
    }
}

/// Distinct states in order of first appearance (retries collapse).
fn distinct(states: &[TaskState]) -> Vec<TaskState> {
    let mut out: Vec<TaskState> = Vec::new();
    for s in states {
        if out.last() != Some(s) {
            out.push(*s);
        }
    }
    out
}

#[test]
fn registration_is_retried_with_backoff_while_the_master_is_silent() {
    let mut w = World::new(1, false, true);
    w.sim.run_for(s(40.0));
    let attempts = w.master(|m| m.registers.clone());
    assert!(attempts.len() >= 6, "{attempts:?}");
    let gaps: Vec<f64> = attempts
        .windows(2)
        .map(|p| (p[1] - p[0]).as_secs_f64())
        .collect();
    for (gap, base) in gaps.iter().zip([1.0, 2.0, 4.0, 8.0, 10.0, 10.0]) {
        assert!(
            *gap >= base - 0.01 && *gap <= base * 1.1 + 0.01,
            "gaps {gaps:?}"
        );
    }
    assert!(!w.slave(|p| p.is_registered()));

    // The master answers: registration, then a heartbeat every second.
    w.master(|m| m.reply = true);
    w.registered();
    let registered_at = w.sim.now().since_origin();
    assert_eq!(
        w.slave(|p| p.slave_id().cloned()),
        Some(SlaveId::new("run-S1"))
    );
    assert_eq!(
        w.checkpoint.snapshot().slave.map(|r| r.slave_id),
        Some(SlaveId::new("run-S1")),
        "the id is checkpointed"
    );
    w.sim.run_for(s(10.0));
    let beats: Vec<Duration> = w.master(|m| {
        m.heartbeats
            .iter()
            .copied()
            .filter(|t| *t > registered_at)
            .collect()
    });
    assert!((9..=11).contains(&beats.len()), "{beats:?}");
    let registrations = w.master(|m| m.registers.len());
    w.sim.run_for(s(30.0));
    assert_eq!(
        w.master(|m| m.registers.len()),
        registrations,
        "no more attempts once registered"
    );
}

#[test]
fn updates_are_retried_in_order_until_acknowledged() {
    let mut w = World::new(2, true, false);
    w.registered();
    w.run_task(task("web", "sim:run=30s;exit=0"));
    w.sim.run_for(s(12.0));
    // Not acknowledged: STARTING only, sent again at ~1, 3, 7 s after the first.
    let states = w.states_of("web");
    assert!(states.len() >= 4, "{states:?}");
    assert!(
        states.iter().all(|s| *s == TaskState::Starting),
        "{states:?}"
    );
    let first = w.updates_of("web");
    assert!(
        first.windows(2).all(|p| p[0].uuid == p[1].uuid),
        "the same update is retried"
    );
    // The checkpoint holds both queued updates.
    let ckpt = w.checkpoint.snapshot();
    let record = &ckpt.tasks[&TaskId::new("web")];
    assert_eq!(record.state, TaskState::Running);
    assert_eq!(record.pending_updates.len(), 2);
    assert!(record.launch.is_some());

    w.master(|m| m.ack = true);
    w.run_until(60.0, |w| w.slave(|p| p.core().tasks().is_empty()));
    let states = w.states_of("web");
    assert_eq!(
        distinct(&states),
        vec![TaskState::Starting, TaskState::Running, TaskState::Finished]
    );
    let ckpt = w.checkpoint.snapshot();
    assert!(ckpt.tasks.is_empty(), "terminal ack removes the task");
    assert!(ckpt.frameworks.is_empty());
    // Updates carry the slave id, and FINISHED says how it exited.
    let finished = w.updates_of("web").pop().unwrap();
    assert_eq!(finished.slave_id, Some(SlaveId::new("run-S1")));
    assert!(finished.message.unwrap().contains("status 0"));
}

#[test]
fn kill_and_framework_shutdown_report_killed() {
    let mut w = World::new(3, true, true);
    w.registered();
    w.run_task(task("a", "sleep 1000"));
    w.run_task(task("b", "sleep 1000"));
    w.run_until(10.0, |w| w.states_of("a").contains(&TaskState::Running));
    let (master, slave) = (w.master.clone(), w.slave.clone());
    w.sim.post(
        &master,
        &slave,
        KillTaskMessage {
            framework_id: FrameworkId::new("fw"),
            task_id: TaskId::new("a"),
            fencing_epoch: None,
        },
    );
    w.run_until(10.0, |w| w.states_of("a").contains(&TaskState::Killed));
    assert!(w.machine.is_running("b") && !w.machine.is_running("a"));
    w.sim.post(
        &master,
        &slave,
        ShutdownFrameworkMessage {
            framework_id: FrameworkId::new("fw"),
        },
    );
    w.run_until(10.0, |w| w.slave(|p| p.core().tasks().is_empty()));
    let b = w.updates_of("b").pop().unwrap();
    assert_eq!(
        (b.state, b.reason),
        (TaskState::Killed, Some(Reason::FrameworkRemoved))
    );
    // A kill overtaking its task: the task is killed as soon as it arrives.
    w.sim.post(
        &master,
        &slave,
        KillTaskMessage {
            framework_id: FrameworkId::new("fw"),
            task_id: TaskId::new("late"),
            fencing_epoch: None,
        },
    );
    w.run_task(task("late", "sleep 1000"));
    w.run_until(10.0, |w| !w.states_of("late").is_empty());
    let late = w.updates_of("late");
    assert_eq!(
        (late[0].state, late[0].reason),
        (TaskState::Killed, Some(Reason::TaskKilledDuringLaunch))
    );
    assert!(!w.machine.is_running("late"));
}

#[test]
fn failures_oom_and_launch_errors_are_reported() {
    let mut w = World::new(4, true, true);
    w.registered();
    w.run_task(task("exit3", "sim:run=1s;exit=3"));
    w.run_task(task("hog", "sim:run=2s;oom;exit=0"));
    w.run_task(task("broken", "sim:launch-fail"));
    w.run_until(20.0, |w| w.slave(|p| p.core().tasks().is_empty()));
    let last = |w: &mut World, id: &str| w.updates_of(id).pop().unwrap();
    let exit3 = last(&mut w, "exit3");
    assert_eq!(
        (exit3.state, exit3.reason),
        (TaskState::Failed, Some(Reason::CommandExecutorFailed))
    );
    assert!(exit3.message.unwrap().contains("status 3"));
    let hog = last(&mut w, "hog");
    assert_eq!(
        (hog.state, hog.reason),
        (TaskState::Failed, Some(Reason::ContainerLimitationMemory))
    );
    let broken = distinct(&w.states_of("broken"));
    assert_eq!(broken, vec![TaskState::Starting, TaskState::Failed]);
    assert_eq!(
        last(&mut w, "broken").reason,
        Some(Reason::ContainerLaunchFailed)
    );
}

#[test]
fn failing_health_check_kills_the_task_as_unhealthy() {
    let mut w = World::new(5, true, true);
    w.registered();
    let mut t = task("sick", "sleep 1000");
    t.health_check = Some(HealthCheck {
        kind: HealthCheckKind::Http {
            port: 31000,
            path: "/health".into(),
        },
        delay_secs: 1.0,
        interval_secs: 1.0,
        timeout_secs: 1.0,
        consecutive_failures: 3,
        grace_period_secs: 0.0,
    });
    let mut healthy = t.clone();
    healthy.task_id = TaskId::new("fine");
    w.script.set("sick", false);
    w.run_task(t);
    w.run_task(healthy);
    w.run_until(30.0, |w| w.states_of("sick").contains(&TaskState::Failed));
    let updates = w.updates_of("sick");
    let summary: Vec<(TaskState, Option<bool>, Option<Reason>)> = updates
        .iter()
        .map(|u| (u.state, u.healthy, u.reason))
        .collect();
    assert_eq!(
        summary,
        vec![
            (TaskState::Starting, None, None),
            (TaskState::Running, None, None),
            (
                TaskState::Running,
                Some(false),
                Some(Reason::TaskHealthCheckStatusUpdated)
            ),
            (TaskState::Failed, None, Some(Reason::TaskUnhealthy)),
        ]
    );
    // ~3 probes 1 s apart after a 1 s delay.
    let failed_at = w.master(|m| {
        m.updates
            .iter()
            .find(|(_, u)| u.state == TaskState::Failed)
            .map(|(t, _)| *t)
            .unwrap()
    });
    assert!(failed_at < s(10.0), "{failed_at:?}");
    let fine = w.updates_of("fine");
    assert_eq!(fine.last().map(|u| u.healthy), Some(Some(true)));
    assert!(w.machine.is_running("fine"));
}

#[test]
fn a_crashed_slave_restarts_with_its_tasks_and_reregisters() {
    let mut w = World::new(6, true, true);
    w.registered();
    w.run_task(task("long", "sleep 1000"));
    w.run_task(task("short", "sim:run=20s"));
    w.run_until(10.0, |w| {
        w.slave(|p| {
            p.core()
                .tasks()
                .values()
                .all(|t| t.state == TaskState::Running && t.pending_updates().count() == 0)
        })
    });
    let slave_node = w.slave_node.clone();
    w.sim.crash(&slave_node);
    w.sim.run_for(s(30.0));
    assert!(w.machine.is_running("long"), "tasks survive the slave");
    w.sim.restart(&slave_node);
    w.spawn_slave();
    w.run_until(30.0, |w| !w.master(|m| m.reregisters.is_empty()));
    let (_, rereg) = w.master(|m| m.reregisters[0].clone());
    assert_eq!(rereg.slave_id, SlaveId::new("run-S1"));
    let mut reported: Vec<(String, TaskState)> = rereg
        .tasks
        .iter()
        .map(|t| (t.task.task_id.as_str().to_string(), t.state))
        .collect();
    reported.sort();
    // "short" ended while the slave was away: its termination comes with the first poll
    // after recovery, so at re-registration it may still be reported running.
    assert_eq!(reported[0], ("long".to_string(), TaskState::Running));
    assert_eq!(reported[1].0, "short");
    assert_eq!(rereg.frameworks.len(), 1);
    assert_eq!(rereg.frameworks[0].0, FrameworkId::new("fw"));
    w.run_until(20.0, |w| {
        w.states_of("short").contains(&TaskState::Finished)
    });
    w.run_until(20.0, |w| w.slave(|p| p.core().tasks().len() == 1));
    assert!(w.machine.is_running("long"));
    assert!(w.slave(|p| p.is_registered()));
    assert_eq!(
        w.master(|m| m.registers.len()),
        1,
        "a restarted slave never registers anew"
    );
}

#[test]
fn a_lost_master_is_reregistered_with_and_requests_are_honoured() {
    let mut w = World::new(7, true, true);
    w.registered();
    w.run_task(task("t", "sleep 1000"));
    w.run_until(10.0, |w| w.states_of("t").contains(&TaskState::Running));
    // The master's node dies and comes back empty: the link breaks, the slave re-registers.
    let master_node = w.master_node.clone();
    w.sim.crash(&master_node);
    w.sim.run_for(s(5.0));
    assert!(!w.slave(|p| p.is_registered()));
    w.sim.restart(&master_node);
    w.master = w
        .sim
        .spawn(&master_node, "master", FakeMaster::new(true, true));
    w.run_until(30.0, |w| w.slave(|p| p.is_registered()));
    let rereg = w.master(|m| m.reregisters.clone());
    assert_eq!(rereg.len(), 1);
    assert_eq!(rereg[0].1.tasks.len(), 1);
    assert!(w.master(|m| m.registers.is_empty()));
    // The master asks again (it thought the slave unreachable): at once.
    let (master, slave) = (w.master.clone(), w.slave.clone());
    let asked_at = w.sim.now().since_origin();
    w.sim.post(
        &master,
        &slave,
        ReregisterRequestMessage {
            slave_id: SlaveId::new("run-S1"),
        },
    );
    w.run_until(5.0, |w| w.master(|m| m.reregisters.len() == 2));
    let at = w.master(|m| m.reregisters[1].0);
    assert!(at - asked_at < s(0.1), "{:?}", at - asked_at);
    w.sim.run_for(s(1.0));
    assert!(w.slave(|p| p.is_registered()));
}

#[test]
fn same_seed_same_trace() {
    let run = |seed| {
        let mut w = World::new(seed, true, true);
        w.registered();
        w.run_task(task("a", "sim:run=3s"));
        w.sim.run_for(s(20.0));
        w.sim.trace_hash()
    };
    assert_eq!(run(11), run(11));
}

#[test]
fn background_launches_report_starting_and_running_once_launched() {
    let mut w = World::deferred(21);
    w.registered();
    w.run_task(task("a", "sleep 1000"));
    w.run_task(task("b", "sleep 1000"));
    w.sim.run_for(s(1.0));
    assert_eq!(
        distinct(&w.states_of("a")),
        vec![TaskState::Starting],
        "STARTING while the launch goes on, RUNNING only after it"
    );
    assert_eq!(w.launches().pending_ids(), vec!["a", "b"]);
    // The task is in the books and checkpointed (no launch record) meanwhile.
    let record = w.checkpoint.snapshot().tasks[&TaskId::new("a")].clone();
    assert!(record.launch.is_none());
    // Launches may end in any order.
    w.launches().complete("b");
    w.launches().complete("a");
    w.run_until(10.0, |w| {
        w.slave(|p| {
            p.core()
                .tasks()
                .values()
                .all(|t| t.state == TaskState::Running && t.pending_updates().count() == 0)
        })
    });
    for id in ["a", "b"] {
        assert_eq!(
            distinct(&w.states_of(id)),
            vec![TaskState::Starting, TaskState::Running]
        );
        assert!(w.machine.is_running(id));
        let record = w.checkpoint.snapshot().tasks[&TaskId::new(id)].clone();
        assert!(record.launch.is_some(), "the launch record is checkpointed");
    }
    assert!(w.slave(|p| p.launching.is_empty()));
}

#[test]
fn a_task_killed_during_its_launch_is_killed_once_launched() {
    let mut w = World::deferred(22);
    w.registered();
    w.run_task(task("a", "sleep 1000"));
    w.run_task(task("b", "sleep 1000"));
    let (master, slave) = (w.master.clone(), w.slave.clone());
    for id in ["a", "b", "a"] {
        w.sim.post(
            &master,
            &slave,
            KillTaskMessage {
                framework_id: FrameworkId::new("fw"),
                task_id: TaskId::new(id),
                fencing_epoch: None,
            },
        );
    }
    w.sim.run_for(s(1.0));
    assert_eq!(
        distinct(&w.states_of("a")),
        vec![TaskState::Starting],
        "no report but STARTING before the launch is over"
    );
    assert_eq!(
        w.checkpoint.snapshot().tasks[&TaskId::new("a")].kill,
        Some(KillCause::Requested),
        "the kill is checkpointed"
    );
    // "a" starts: it is killed at once, never reported RUNNING.
    w.launches().complete("a");
    w.run_until(10.0, |w| w.states_of("a").contains(&TaskState::Killed));
    // "b" fails to start: reported killed all the same.
    w.launches().pending.lock().unwrap()[0].command.value = "sim:launch-fail".into();
    w.launches().complete("b");
    w.run_until(10.0, |w| w.slave(|p| p.core().tasks().is_empty()));
    assert_eq!(
        distinct(&w.states_of("a")),
        vec![TaskState::Starting, TaskState::Killed]
    );
    assert_eq!(
        distinct(&w.states_of("b")),
        vec![TaskState::Starting, TaskState::Killed]
    );
    let b = w.updates_of("b").pop().unwrap();
    assert!(b.message.unwrap().contains("launch"), "the failure is told");
    assert!(!w.machine.is_running("a"));
    assert!(!w.machine.is_running("b"));
}

#[test]
fn a_failed_background_launch_is_reported_failed() {
    let mut w = World::deferred(23);
    w.registered();
    w.run_task(task("broken", "sim:launch-fail"));
    w.launches().complete("broken");
    w.run_until(10.0, |w| w.slave(|p| p.core().tasks().is_empty()));
    let updates = w.updates_of("broken");
    assert_eq!(updates.len(), 2, "{updates:?}");
    assert_eq!(updates[0].state, TaskState::Starting);
    assert_eq!(
        (updates[1].state, updates[1].reason),
        (TaskState::Failed, Some(Reason::ContainerLaunchFailed))
    );
}

#[test]
fn a_launch_cut_short_by_a_slave_restart_ends_in_a_terminal_update() {
    let mut w = World::deferred(24);
    w.registered();
    w.run_task(task("lost", "sleep 1000"));
    w.run_task(task("killed", "sleep 1000"));
    let (master, slave) = (w.master.clone(), w.slave.clone());
    w.sim.post(
        &master,
        &slave,
        KillTaskMessage {
            framework_id: FrameworkId::new("fw"),
            task_id: TaskId::new("killed"),
            fencing_epoch: None,
        },
    );
    w.sim.run_for(s(0.5));
    let slave_node = w.slave_node.clone();
    w.sim.crash(&slave_node);
    w.sim.restart(&slave_node);
    w.spawn_slave();
    w.run_until(30.0, |w| w.slave(|p| p.core().tasks().is_empty()));
    let lost = w.updates_of("lost");
    let last = lost.last().unwrap();
    assert_eq!(
        (distinct(&w.states_of("lost")), last.reason),
        (
            vec![TaskState::Starting, TaskState::Failed],
            Some(Reason::SlaveRestarted)
        )
    );
    assert_eq!(
        distinct(&w.states_of("killed")),
        vec![TaskState::Starting, TaskState::Killed]
    );
    assert!(w.launches().pending_ids().is_empty());
}

#[test]
fn the_containerizer_is_polled_when_its_answer_may_have_changed_and_only_then() {
    let machine = SimMachine::new();
    let ended: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = Arc::clone(&ended);
    let polls = Arc::new(Mutex::new(0));
    let mut polled = Polled::new(Box::new(DeferredContainerizer(Deferred {
        inner: Arc::new(Mutex::new(SimContainerizer::new(
            machine.clone(),
            Arc::new(move |id, _| sink.lock().unwrap().push(id)),
        ))),
        pending: Arc::default(),
        on_launch: Arc::new(|_, _| {}),
        polls: Arc::clone(&polls),
    })));
    let count = || *polls.lock().unwrap();

    // Nothing known yet: polled; nothing runs, so nothing is due and it is not polled again.
    assert_eq!(polled.poll(s(0.0)), None);
    assert_eq!(polled.poll(s(5.0)), None);
    assert_eq!(count(), 1);

    // A launch: polled after it, and the end it names is the task's.
    let spec = TaskSpec {
        task_id: "t1".into(),
        command: crate::containerizer::CommandSpec {
            shell: true,
            value: "sim:run=10s".into(),
            arguments: vec![],
        },
        env: BTreeMap::new(),
        cpus: 1.0,
        mem_mb: 64.0,
        ports: vec![],
        sandbox: Path::new("/sandbox").into(),
        hostname: "h".into(),
        user: None,
    };
    polled.get_mut().launch(spec).expect("launched");
    assert_eq!(polled.poll(s(5.0)), Some(s(15.0)));
    assert_eq!(count(), 2);

    // Before that time: the answer stands, no poll (reading it changes nothing either).
    assert_eq!(polled.poll(s(14.9)), Some(s(15.0)));
    assert!(polled.get().usage("t1").is_ok());
    assert_eq!(polled.poll(s(14.95)), Some(s(15.0)));
    assert_eq!(count(), 2);
    assert!(ended.lock().unwrap().is_empty());

    // An event the containerizer posted: polled again.
    polled.changed();
    assert_eq!(polled.poll(s(14.95)), Some(s(15.0)));
    assert_eq!(count(), 3);

    // The time comes: polled, and the task ends.
    assert_eq!(polled.poll(s(15.0)), None);
    assert_eq!(count(), 4);
    assert_eq!(*ended.lock().unwrap(), vec!["t1".to_string()]);
    assert!(!machine.is_running("t1"));
}

/// Fuzz target of the slave as the master's messages reach it: damaged `RunTask`, `KillTask`,
/// acknowledgements, shutdowns and registration answers, decoded as the runtime decodes them,
/// posted to a registered slave on the simulator. Never a panic. Each case runs a small
/// simulated cluster, so this target runs an eighth of the cases of the others.
mod fuzz {
    use super::*;
    use plateau_master::messages::UnregisterSlaveMessage;
    use plateau_runtime::fuzzing::{fuzz_cases, mutate};
    use plateau_runtime::message::{decode_body, AnyMessage};
    use proptest::prelude::*;

    fn inputs() -> Vec<(&'static str, Vec<u8>)> {
        fn one<M: Message>(m: M) -> (&'static str, Vec<u8>) {
            (M::NAME, AnyMessage::encode(&m).unwrap())
        }
        let mut checked = task("t1", "sleep 100");
        checked.health_check = Some(HealthCheck {
            kind: HealthCheckKind::Tcp { port: 31000 },
            delay_secs: 0.5,
            interval_secs: 1.0,
            timeout_secs: 1.0,
            consecutive_failures: 2,
            grace_period_secs: 1.0,
        });
        checked.kill_grace_period_secs = Some(1.5);
        vec![
            one(RunTaskMessage {
                framework_id: FrameworkId::new("fw"),
                framework: FrameworkInfo::new("marathon"),
                framework_pid: "marathon@10.0.0.1:5050".parse().unwrap(),
                task: checked,
            }),
            one(KillTaskMessage {
                framework_id: FrameworkId::new("fw"),
                task_id: TaskId::new("t1"),
                fencing_epoch: None,
            }),
            one(StatusUpdateAcknowledgementMessage {
                slave_id: SlaveId::new("run-S1"),
                framework_id: FrameworkId::new("fw"),
                task_id: TaskId::new("t1"),
                uuid: [1; 16],
            }),
            one(ShutdownFrameworkMessage {
                framework_id: FrameworkId::new("fw"),
            }),
            one(SlaveRegisteredMessage {
                slave_id: SlaveId::new("run-S1"),
                heartbeat_interval_ms: 1000,
            }),
            one(ReregisterRequestMessage {
                slave_id: SlaveId::new("run-S1"),
            }),
            one(UnregisterSlaveMessage {
                slave_id: SlaveId::new("run-S1"),
            }),
        ]
    }

    fn post(w: &mut World, name: &str, bytes: &[u8]) {
        let (master, slave) = (w.master.clone(), w.slave.clone());
        macro_rules! route {
            ($($ty:ty),* $(,)?) => {
                match name {
                    $(n if n == <$ty>::NAME => {
                        if let Ok(msg) = decode_body::<$ty>(bytes) {
                            w.sim.post(&master, &slave, msg);
                        }
                    })*
                    other => panic!("no route for {other}"),
                }
            };
        }
        route!(
            RunTaskMessage,
            KillTaskMessage,
            StatusUpdateAcknowledgementMessage,
            ShutdownFrameworkMessage,
            SlaveRegisteredMessage,
            ReregisterRequestMessage,
            UnregisterSlaveMessage,
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases((fuzz_cases() / 8).max(1)))]

        #[test]
        fn fuzz_slave_damaged_master_messages(steps in proptest::collection::vec((any::<prop::sample::Index>(), plateau_runtime::fuzzing::edits(0..5)), 1..5)) {
            let mut w = World::new(7, true, true);
            w.registered();
            let inputs = inputs();
            for (which, edits) in &steps {
                let (name, valid) = &inputs[which.index(inputs.len())];
                post(&mut w, name, &mutate(valid, edits));
                w.sim.run_for(s(2.0));
            }
            w.sim.run_for(s(30.0));
        }
    }
}
