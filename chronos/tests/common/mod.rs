//! A small fake Mesos master (with its slaves inside) for simulation tests of the Chronos
//! scheduler: it registers one framework, offers its slaves' free resources, "runs" tasks on a
//! virtual clock and reports their statuses like the real protocol (`shared/protocol.md`):
//! slave-generated updates carry a uuid and are resent every second until acknowledged, only the
//! oldest unacknowledged update of a task is in flight, a task is forgotten once its terminal
//! update is acknowledged, duplicate task ids are refused with TASK_ERROR, reconciliation answers
//! the latest state or TASK_UNKNOWN.
//!
//! A task's command decides what it does: `sleep <secs>` sets its run time (default 1 s) and
//! `exit <code>` its exit status (default 0).
#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, SystemTime};

use plateau_master::ids::{FrameworkId, OfferId, SlaveId, TaskId};
use plateau_master::messages::*;
use plateau_master::resources::{Attributes, Resources};
use plateau_runtime::{Context, Handlers, Message, Process, Upid};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct MasterTick;
impl Message for MasterTick {
    const NAME: &'static str = "fake.MasterTick";
}

#[derive(Serialize, Deserialize)]
struct TaskDone(String);
impl Message for TaskDone {
    const NAME: &'static str = "fake.TaskDone";
}

/// A fake slave.
#[derive(Debug, Clone)]
pub struct FakeSlave {
    pub id: SlaveId,
    pub hostname: String,
    pub attributes: Attributes,
    pub total: Resources,
    pub used: Resources,
    /// Outstanding offer on this slave.
    pub offer: Option<OfferId>,
    /// Not offered again before this (decline filter), unless revived.
    pub refused_until: Duration,
    /// Set while the slave's machine is scheduled for maintenance: its offers carry it.
    pub unavailability: Option<plateau_master::maintenance::Unavailability>,
}

#[derive(Debug, Clone)]
struct FakeTask {
    slave: SlaveId,
    resources: Resources,
    state: TaskState,
    run_for: Duration,
    exit_code: i32,
    updates: VecDeque<TaskStatus>,
}

/// What happened to a task, for assertions.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub task_id: String,
    /// The slave the task was launched on.
    pub slave: SlaveId,
    pub state: TaskState,
    pub wall: SystemTime,
}

/// The fake master.
#[derive(Debug, Default)]
pub struct FakeMaster {
    pub slaves: Vec<FakeSlave>,
    framework_id: Option<FrameworkId>,
    scheduler: Option<Upid>,
    connected: bool,
    next_offer: u64,
    next_uuid: u64,
    offers: BTreeMap<OfferId, (SlaveId, Resources)>,
    tasks: BTreeMap<TaskId, FakeTask>,
    /// Every launch accepted, finish, failure and kill, in order.
    pub events: Vec<Event>,
    /// Task ids refused as duplicates.
    pub duplicate_launches: Vec<String>,
    /// Launches with tasks to lose (as if lost on the way), before any is accepted.
    pub launches_to_lose: u32,
    /// Every answer to an explicit reconciliation is sent again when the next launch arrives,
    /// lost or not (a duplicated message that arrives late).
    pub duplicate_reconcile_answers: bool,
    late_answers: Vec<TaskStatus>,
    /// Explicit reconciliations received.
    pub explicit_reconciliations: u32,
    pub registrations: u32,
}

fn parse_command(command: &str) -> (Duration, i32) {
    let mut run_for = Duration::from_secs(1);
    let mut exit_code = 0;
    let words: Vec<&str> = command
        .split(|c: char| c.is_whitespace() || c == ';')
        .filter(|w| !w.is_empty())
        .collect();
    for pair in words.windows(2) {
        match pair[0] {
            "sleep" => run_for = Duration::from_secs_f64(pair[1].parse().unwrap_or(1.0)),
            "exit" => exit_code = pair[1].parse().unwrap_or(1),
            _ => {}
        }
    }
    (run_for, exit_code)
}

impl FakeMaster {
    /// A master with `n` slaves of 4 cpus, 4096 MB, 10000 MB disk; slave `i` has hostname
    /// `slave-<i>` and attribute `rack:r<i>`.
    pub fn new(n: usize) -> FakeMaster {
        let slaves = (1..=n)
            .map(|i| FakeSlave {
                id: SlaveId::new(format!("S{i}")),
                hostname: format!("slave-{i}"),
                attributes: Attributes::parse(&format!("rack:r{i}")).unwrap(),
                total: Resources::new(4.0, 4096.0, 10000.0).unwrap(),
                used: Resources::empty(),
                offer: None,
                refused_until: Duration::ZERO,
                unavailability: None,
            })
            .collect();
        FakeMaster {
            slaves,
            ..FakeMaster::default()
        }
    }

    /// Events of tasks whose id starts with `ct:` and names `job`.
    pub fn events_of(&self, job: &str, state: TaskState) -> Vec<&Event> {
        self.events
            .iter()
            .filter(|e| e.state == state && e.task_id.split(':').nth(3) == Some(job))
            .collect()
    }

    /// Tasks the master knows (live or terminal-unacknowledged).
    pub fn known_tasks(&self) -> usize {
        self.tasks.len()
    }

    fn uuid(&mut self) -> [u8; 16] {
        self.next_uuid += 1;
        let mut u = [0u8; 16];
        u[..8].copy_from_slice(&self.next_uuid.to_le_bytes());
        u
    }

    // A status has this many fields; a builder would be more code than the fake is worth.
    #[allow(clippy::too_many_arguments)]
    fn status(
        &mut self,
        ctx: &Context<'_>,
        task_id: &TaskId,
        state: TaskState,
        slave: Option<SlaveId>,
        reason: Option<Reason>,
        message: Option<String>,
        acked: bool,
    ) -> TaskStatus {
        let timestamp = ctx
            .wall_clock()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        TaskStatus {
            task_id: task_id.clone(),
            state,
            message,
            source: if acked {
                StatusSource::Slave
            } else {
                StatusSource::Master
            },
            reason,
            slave_id: slave,
            healthy: None,
            timestamp,
            uuid: if acked { Some(self.uuid()) } else { None },
        }
    }

    fn send_status(&mut self, ctx: &mut Context<'_>, status: TaskStatus) {
        if let (true, Some(pid), Some(fid)) = (
            self.connected,
            self.scheduler.clone(),
            self.framework_id.clone(),
        ) {
            ctx.send(
                &pid,
                StatusUpdateMessage {
                    framework_id: fid,
                    status,
                    slave_pid: None,
                },
            );
        }
    }

    /// Queues a reliable (slave-generated) update; sends it if it is the task's oldest.
    fn queue_update(&mut self, ctx: &mut Context<'_>, task_id: &TaskId, status: TaskStatus) {
        let task = self.tasks.get_mut(task_id).expect("known task");
        task.updates.push_back(status.clone());
        if task.updates.len() == 1 {
            self.send_status(ctx, status);
        }
    }

    fn allocate(&mut self, ctx: &mut Context<'_>, ignore_filters: bool) {
        let (true, Some(pid), Some(fid)) = (
            self.connected,
            self.scheduler.clone(),
            self.framework_id.clone(),
        ) else {
            return;
        };
        let now = ctx.now().since_origin();
        let mut offers = Vec::new();
        for i in 0..self.slaves.len() {
            let slave = &self.slaves[i];
            if slave.offer.is_some() || (!ignore_filters && slave.refused_until > now) {
                continue;
            }
            let Some(free) = slave.total.checked_sub(&slave.used) else {
                continue;
            };
            if free.cpus_milli() == 0 {
                continue;
            }
            self.next_offer += 1;
            let id = OfferId::new(format!("O{}", self.next_offer));
            let slave = &mut self.slaves[i];
            slave.offer = Some(id.clone());
            self.offers
                .insert(id.clone(), (slave.id.clone(), free.clone()));
            offers.push(Offer {
                id,
                framework_id: fid.clone(),
                slave_id: slave.id.clone(),
                hostname: slave.hostname.clone(),
                resources: free,
                attributes: slave.attributes.clone(),
                unavailability: slave.unavailability,
            });
        }
        if !offers.is_empty() {
            ctx.send(&pid, ResourceOffersMessage { offers });
        }
    }

    fn slave_mut(&mut self, id: &SlaveId) -> &mut FakeSlave {
        self.slaves.iter_mut().find(|s| s.id == *id).expect("slave")
    }

    fn on_tick(&mut self, ctx: &mut Context<'_>, _from: &Upid, _m: MasterTick) {
        ctx.delay(Duration::from_secs(1), MasterTick);
        // Resend the oldest unacknowledged update of every task.
        let heads: Vec<TaskStatus> = self
            .tasks
            .values()
            .filter_map(|t| t.updates.front().cloned())
            .collect();
        for status in heads {
            self.send_status(ctx, status);
        }
        self.allocate(ctx, false);
    }

    fn on_register(&mut self, ctx: &mut Context<'_>, from: &Upid, _m: RegisterFrameworkMessage) {
        let id = self
            .framework_id
            .get_or_insert_with(|| FrameworkId::new("F-0001"))
            .clone();
        self.attach(ctx, from);
        ctx.send(
            from,
            FrameworkRegisteredMessage {
                framework_id: id,
                master: ctx.self_upid().clone(),
            },
        );
        self.allocate(ctx, true);
    }

    fn on_reregister(&mut self, ctx: &mut Context<'_>, from: &Upid, m: ReregisterFrameworkMessage) {
        let id = m
            .framework
            .id
            .clone()
            .expect("re-registration carries the id");
        self.framework_id = Some(id.clone());
        self.attach(ctx, from);
        ctx.send(
            from,
            FrameworkReregisteredMessage {
                framework_id: id,
                master: ctx.self_upid().clone(),
            },
        );
        self.allocate(ctx, true);
    }

    fn attach(&mut self, ctx: &mut Context<'_>, from: &Upid) {
        self.registrations += 1;
        self.scheduler = Some(from.clone());
        self.connected = true;
        ctx.link(from);
        // Unacknowledged updates go to the new scheduler at once.
        let heads: Vec<TaskStatus> = self
            .tasks
            .values()
            .filter_map(|t| t.updates.front().cloned())
            .collect();
        for status in heads {
            self.send_status(ctx, status);
        }
    }

    fn recover_offers(&mut self) {
        self.offers.clear();
        for s in &mut self.slaves {
            s.offer = None;
        }
    }

    fn on_decline(&mut self, ctx: &mut Context<'_>, _from: &Upid, m: DeclineOffersMessage) {
        let now = ctx.now().since_origin();
        let refuse = Duration::from_secs_f64(m.filters.refuse_seconds.max(0.0));
        for id in &m.offer_ids {
            if let Some((slave, _)) = self.offers.remove(id) {
                let slave = self.slave_mut(&slave);
                slave.offer = None;
                slave.refused_until = now + refuse;
            }
        }
    }

    fn on_launch(&mut self, ctx: &mut Context<'_>, _from: &Upid, m: LaunchTasksMessage) {
        let mut total = Resources::empty();
        let mut slave_id = None;
        let mut valid = true;
        for id in &m.offer_ids {
            match self.offers.remove(id) {
                Some((slave, resources)) => {
                    total += &resources;
                    self.slave_mut(&slave).offer = None;
                    slave_id = Some(slave);
                }
                None => valid = false,
            }
        }
        let now = ctx.now().since_origin();
        if !m.tasks.is_empty() {
            for status in std::mem::take(&mut self.late_answers) {
                self.send_status(ctx, status);
            }
        }
        if !m.tasks.is_empty() && self.launches_to_lose > 0 {
            self.launches_to_lose -= 1;
            return;
        }
        if m.tasks.is_empty() {
            if let Some(slave) = &slave_id {
                let refuse = Duration::from_secs_f64(m.filters.refuse_seconds.max(0.0));
                self.slave_mut(slave).refused_until = now + refuse;
            }
            return;
        }
        for task in m.tasks {
            let error = if !valid || slave_id.as_ref() != Some(&task.slave_id) {
                Some((Reason::InvalidOffers, "invalid offers".to_string()))
            } else if self.tasks.contains_key(&task.task_id) {
                self.duplicate_launches.push(task.task_id.to_string());
                Some((Reason::TaskInvalid, "task id already in use".to_string()))
            } else if !total.contains(&task.resources) {
                Some((Reason::ResourcesUnknown, "not enough resources".to_string()))
            } else {
                None
            };
            if let Some((reason, message)) = error {
                let status = self.status(
                    ctx,
                    &task.task_id,
                    TaskState::Error,
                    Some(task.slave_id.clone()),
                    Some(reason),
                    Some(message),
                    false,
                );
                self.send_status(ctx, status);
                continue;
            }
            total = total.checked_sub(&task.resources).unwrap();
            let (run_for, exit_code) = parse_command(&task.command.value);
            self.slave_mut(&task.slave_id).used += &task.resources;
            self.tasks.insert(
                task.task_id.clone(),
                FakeTask {
                    slave: task.slave_id.clone(),
                    resources: task.resources.clone(),
                    state: TaskState::Running,
                    run_for,
                    exit_code,
                    updates: VecDeque::new(),
                },
            );
            self.events.push(Event {
                task_id: task.task_id.to_string(),
                slave: task.slave_id.clone(),
                state: TaskState::Staging,
                wall: ctx.wall_clock(),
            });
            let status = self.status(
                ctx,
                &task.task_id,
                TaskState::Running,
                Some(task.slave_id.clone()),
                None,
                None,
                true,
            );
            self.queue_update(ctx, &task.task_id, status);
            ctx.delay(run_for, TaskDone(task.task_id.to_string()));
        }
    }

    fn end_task(
        &mut self,
        ctx: &mut Context<'_>,
        task_id: &TaskId,
        state: TaskState,
        message: Option<String>,
        reason: Option<Reason>,
    ) {
        let task = self.tasks.get_mut(task_id).expect("known task");
        task.state = state;
        let (slave, resources) = (task.slave.clone(), task.resources.clone());
        let used = self.slave_mut(&slave).used.checked_sub(&resources).unwrap();
        self.slave_mut(&slave).used = used;
        self.events.push(Event {
            task_id: task_id.to_string(),
            slave: slave.clone(),
            state,
            wall: ctx.wall_clock(),
        });
        let status = self.status(ctx, task_id, state, Some(slave), reason, message, true);
        self.queue_update(ctx, task_id, status);
    }

    fn on_task_done(&mut self, ctx: &mut Context<'_>, _from: &Upid, m: TaskDone) {
        let task_id = TaskId::new(m.0);
        let Some(task) = self.tasks.get(&task_id) else {
            return;
        };
        if task.state != TaskState::Running {
            return;
        }
        let code = task.exit_code;
        if code == 0 {
            self.end_task(
                ctx,
                &task_id,
                TaskState::Finished,
                Some("exited with status 0".into()),
                None,
            );
        } else {
            self.end_task(
                ctx,
                &task_id,
                TaskState::Failed,
                Some(format!("exited with status {code}")),
                Some(Reason::CommandExecutorFailed),
            );
        }
    }

    fn on_kill(&mut self, ctx: &mut Context<'_>, _from: &Upid, m: KillTaskMessage) {
        match self.tasks.get(&m.task_id) {
            Some(task) if task.state == TaskState::Running => {
                self.end_task(
                    ctx,
                    &m.task_id,
                    TaskState::Killed,
                    Some("killed".into()),
                    None,
                );
            }
            Some(_) => {}
            None => {
                let status = self.status(
                    ctx,
                    &m.task_id,
                    TaskState::Unknown,
                    None,
                    Some(Reason::TaskUnknown),
                    None,
                    false,
                );
                self.send_status(ctx, status);
            }
        }
    }

    fn on_reconcile(&mut self, ctx: &mut Context<'_>, _from: &Upid, m: ReconcileTasksMessage) {
        let explicit = !m.tasks.is_empty();
        let ids: Vec<TaskId> = if m.tasks.is_empty() {
            self.tasks.keys().cloned().collect()
        } else {
            self.explicit_reconciliations += 1;
            m.tasks.into_iter().map(|(id, _)| id).collect()
        };
        for id in ids {
            let (state, slave) = match self.tasks.get(&id) {
                Some(t) => (t.state, Some(t.slave.clone())),
                None => (TaskState::Unknown, None),
            };
            let status = self.status(
                ctx,
                &id,
                state,
                slave,
                Some(Reason::Reconciliation),
                None,
                false,
            );
            if explicit && self.duplicate_reconcile_answers {
                self.late_answers.push(status.clone());
            }
            self.send_status(ctx, status);
        }
    }

    fn on_revive(&mut self, ctx: &mut Context<'_>, _from: &Upid, _m: ReviveOffersMessage) {
        for s in &mut self.slaves {
            s.refused_until = Duration::ZERO;
        }
        self.allocate(ctx, true);
    }

    fn on_suppress(&mut self, _ctx: &mut Context<'_>, _from: &Upid, _m: SuppressOffersMessage) {}

    fn on_ack(
        &mut self,
        ctx: &mut Context<'_>,
        _from: &Upid,
        m: StatusUpdateAcknowledgementMessage,
    ) {
        let Some(task) = self.tasks.get_mut(&m.task_id) else {
            return;
        };
        if task.updates.front().and_then(|s| s.uuid) != Some(m.uuid) {
            return;
        }
        let acked = task.updates.pop_front().expect("checked");
        if let Some(next) = task.updates.front().cloned() {
            self.send_status(ctx, next);
        } else if acked.state.is_terminal() {
            self.tasks.remove(&m.task_id);
        }
    }

    fn on_unregister(
        &mut self,
        _ctx: &mut Context<'_>,
        _from: &Upid,
        _m: UnregisterFrameworkMessage,
    ) {
        self.connected = false;
    }
}

impl Process for FakeMaster {
    fn install(h: &mut Handlers<Self>) {
        h.on(Self::on_tick)
            .on(Self::on_register)
            .on(Self::on_reregister)
            .on(Self::on_launch)
            .on(Self::on_decline)
            .on(Self::on_task_done)
            .on(Self::on_kill)
            .on(Self::on_reconcile)
            .on(Self::on_revive)
            .on(Self::on_suppress)
            .on(Self::on_ack)
            .on(Self::on_unregister);
    }

    fn initialize(&mut self, ctx: &mut Context<'_>) {
        ctx.delay(Duration::from_secs(1), MasterTick);
    }

    fn exited(&mut self, _ctx: &mut Context<'_>, upid: &Upid) {
        if self.scheduler.as_ref() == Some(upid) {
            self.connected = false;
            self.recover_offers();
        }
    }
}
