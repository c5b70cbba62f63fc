//! A small fake master (that also plays the slaves) for process-level tests of the Marathon
//! scheduler in the simulator: it registers the framework, offers each slave's free resources
//! (honouring decline filters, suppress and revive), "runs" launched tasks (RUNNING 100 ms
//! after the launch, then healthy after 300 ms when they have a health check and the test has
//! not said otherwise), kills, reconciles, and lets the test fail tasks or change their health.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use plateau_master::ids::{FrameworkId, OfferId, SlaveId, TaskId};
use plateau_master::messages::*;
use plateau_master::resources::{Attributes, Resources};
use plateau_runtime::{Context, Handlers, Message, Process, Upid};
use serde::{Deserialize, Serialize};

/// A task as the fake master knows it.
#[derive(Debug, Clone)]
pub struct FakeTask {
    pub info: TaskInfo,
    pub state: TaskState,
    pub healthy: Option<bool>,
    pub launched_at: Duration,
}

#[derive(Debug, Clone)]
pub struct FakeSlave {
    pub id: SlaveId,
    pub hostname: String,
    pub total: Resources,
    pub attributes: Attributes,
    /// Set: the slave's machine is scheduled for maintenance (its offers carry it).
    pub unavailability: Option<Unavailability>,
}

pub struct FakeMaster {
    pub slaves: Vec<FakeSlave>,
    pub framework: Option<(FrameworkId, Upid)>,
    pub tasks: BTreeMap<TaskId, FakeTask>,
    /// Every task id ever launched, with how many times (must stay 1).
    pub launches: BTreeMap<TaskId, u32>,
    /// Launch times per app prefix (task id before the last dot).
    pub launch_times: Vec<(String, Duration)>,
    pub offers: BTreeMap<OfferId, SlaveId>,
    pub filtered_until: BTreeMap<SlaveId, Duration>,
    pub suppressed: bool,
    pub revives: u32,
    pub next_offer: u64,
    /// Tasks that never become healthy.
    pub unhealthy: BTreeSet<TaskId>,
    pub kills: u32,
    /// Health checks of every task fail.
    pub never_healthy: bool,
    /// Acknowledgements received: (task, uuid).
    pub acked: Vec<(TaskId, [u8; 16])>,
    /// Launched tasks stay STAGING (the slave never starts them).
    pub stuck: bool,
    /// Inverse offers answered: (id, accepted).
    pub inverse_offer_answers: Vec<(OfferId, bool)>,
}

#[derive(Serialize, Deserialize)]
struct OfferTick;
impl Message for OfferTick {
    const NAME: &'static str = "test.OfferTick";
}
#[derive(Serialize, Deserialize)]
struct Progress(TaskId, u8);
impl Message for Progress {
    const NAME: &'static str = "test.Progress";
}

impl FakeMaster {
    pub fn new(slaves: Vec<FakeSlave>) -> Self {
        FakeMaster {
            slaves,
            framework: None,
            tasks: BTreeMap::new(),
            launches: BTreeMap::new(),
            launch_times: Vec::new(),
            offers: BTreeMap::new(),
            filtered_until: BTreeMap::new(),
            suppressed: false,
            revives: 0,
            next_offer: 0,
            unhealthy: BTreeSet::new(),
            kills: 0,
            never_healthy: false,
            acked: Vec::new(),
            stuck: false,
            inverse_offer_answers: Vec::new(),
        }
    }

    pub fn slave(i: usize, resources: &str) -> FakeSlave {
        FakeSlave {
            id: SlaveId::new(format!("S{i}")),
            hostname: format!("host-{i}"),
            total: Resources::parse(resources).unwrap(),
            attributes: Attributes::default(),
            unavailability: None,
        }
    }

    /// Schedules slave `i` for maintenance, as the real master does: its offers carry an
    /// unavailability from now on, its outstanding offers are rescinded, and the framework
    /// gets an inverse offer for it.
    pub fn drain(&mut self, ctx: &mut Context<'_>, i: usize) {
        let unavailability = Unavailability {
            start_nanos: 1_000_000_000_000_000_000,
            duration_nanos: Some(3_600_000_000_000),
        };
        let slave = &mut self.slaves[i];
        slave.unavailability = Some(unavailability);
        let slave_id = slave.id.clone();
        let hostname = slave.hostname.clone();
        let Some((framework_id, upid)) = self.framework.clone() else {
            return;
        };
        let rescinded: Vec<OfferId> = self
            .offers
            .iter()
            .filter(|(_, s)| **s == slave_id)
            .map(|(o, _)| o.clone())
            .collect();
        for offer_id in rescinded {
            self.offers.remove(&offer_id);
            ctx.send(&upid, RescindResourceOfferMessage { offer_id });
        }
        self.next_offer += 1;
        ctx.send(
            &upid,
            InverseOffersMessage {
                inverse_offers: vec![InverseOffer {
                    id: OfferId::new(format!("IO{}", self.next_offer)),
                    framework_id,
                    slave_id,
                    hostname,
                    unavailability,
                }],
            },
        );
    }

    fn handle_inverse_answer(
        &mut self,
        _ctx: &mut Context<'_>,
        _from: &Upid,
        m: RespondInverseOffersMessage,
    ) {
        for id in m.inverse_offer_ids {
            self.inverse_offer_answers.push((id, m.accept));
        }
    }

    /// Live tasks (not terminal).
    pub fn live(&self) -> impl Iterator<Item = &FakeTask> {
        self.tasks.values().filter(|t| !t.state.is_terminal())
    }

    pub fn running_healthy(&self, prefix: &str) -> usize {
        self.live()
            .filter(|t| t.info.task_id.as_str().starts_with(prefix))
            .filter(|t| t.state == TaskState::Running)
            .filter(|t| t.info.health_check.is_none() || t.healthy == Some(true))
            .count()
    }

    fn used(&self, slave: &SlaveId) -> Resources {
        let mut used = Resources::empty();
        for t in self.live().filter(|t| &t.info.slave_id == slave) {
            used += &t.info.resources;
        }
        used
    }

    fn status(&self, ctx: &mut Context<'_>, task: &FakeTask, reason: Option<Reason>, uuid: bool) {
        let Some((framework_id, upid)) = self.framework.clone() else {
            return;
        };
        let mut bytes = [0u8; 16];
        if uuid {
            bytes[..8].copy_from_slice(&ctx.rng().between(0, u64::MAX).to_le_bytes());
        }
        let status = TaskStatus {
            task_id: task.info.task_id.clone(),
            state: task.state,
            message: None,
            source: StatusSource::Slave,
            reason,
            slave_id: Some(task.info.slave_id.clone()),
            healthy: task.healthy,
            timestamp: 0.0,
            uuid: uuid.then_some(bytes),
        };
        let me = ctx.self_upid().clone();
        ctx.send(
            &upid,
            StatusUpdateMessage {
                framework_id,
                status,
                slave_pid: Some(me),
            },
        );
    }

    fn send_offers(&mut self, ctx: &mut Context<'_>) {
        let Some((framework_id, upid)) = self.framework.clone() else {
            return;
        };
        if self.suppressed {
            return;
        }
        let now = ctx.now().since_origin();
        let mut offers = Vec::new();
        for slave in self.slaves.clone() {
            if self.offers.values().any(|s| *s == slave.id) {
                continue;
            }
            if self.filtered_until.get(&slave.id).is_some_and(|&t| t > now) {
                continue;
            }
            let Some(free) = slave.total.checked_sub(&self.used(&slave.id)) else {
                continue;
            };
            self.next_offer += 1;
            let id = OfferId::new(format!("O{}", self.next_offer));
            self.offers.insert(id.clone(), slave.id.clone());
            offers.push(Offer {
                id,
                framework_id: framework_id.clone(),
                slave_id: slave.id.clone(),
                hostname: slave.hostname.clone(),
                resources: free,
                attributes: slave.attributes.clone(),
                unavailability: slave.unavailability,
            });
        }
        if !offers.is_empty() {
            ctx.send(&upid, ResourceOffersMessage { offers });
        }
    }

    fn registered(&mut self, ctx: &mut Context<'_>, from: &Upid, id: FrameworkId, re: bool) {
        self.framework = Some((id.clone(), from.clone()));
        self.offers.clear();
        self.suppressed = false;
        let master = ctx.self_upid().clone();
        if re {
            ctx.send(
                from,
                FrameworkReregisteredMessage {
                    framework_id: id,
                    master,
                },
            );
        } else {
            ctx.send(
                from,
                FrameworkRegisteredMessage {
                    framework_id: id,
                    master,
                },
            );
        }
        self.send_offers(ctx);
    }

    fn handle_register(
        &mut self,
        ctx: &mut Context<'_>,
        from: &Upid,
        _m: RegisterFrameworkMessage,
    ) {
        self.registered(ctx, from, FrameworkId::new("fw-0001"), false);
    }

    fn handle_reregister(
        &mut self,
        ctx: &mut Context<'_>,
        from: &Upid,
        m: ReregisterFrameworkMessage,
    ) {
        let id = m.framework.id.expect("re-registration carries the id");
        self.registered(ctx, from, id, true);
    }

    fn handle_decline(&mut self, ctx: &mut Context<'_>, _from: &Upid, m: DeclineOffersMessage) {
        let until = ctx.now().since_origin() + Duration::from_secs_f64(m.filters.refuse_seconds);
        for offer in &m.offer_ids {
            if let Some(slave) = self.offers.remove(offer) {
                self.filtered_until.insert(slave, until);
            }
        }
    }

    fn handle_launch(&mut self, ctx: &mut Context<'_>, _from: &Upid, m: LaunchTasksMessage) {
        let now = ctx.now().since_origin();
        let mut slave = None;
        for offer in &m.offer_ids {
            slave = self.offers.remove(offer).or(slave);
        }
        let Some(slave) = slave else {
            for task in m.tasks {
                let t = FakeTask {
                    info: task,
                    state: TaskState::Error,
                    healthy: None,
                    launched_at: now,
                };
                self.status(ctx, &t, Some(Reason::InvalidOffers), false);
            }
            return;
        };
        if m.tasks.is_empty() {
            let until = now + Duration::from_secs_f64(m.filters.refuse_seconds);
            self.filtered_until.insert(slave, until);
            return;
        }
        let total = self
            .slaves
            .iter()
            .find(|s| s.id == slave)
            .unwrap()
            .total
            .clone();
        for task in m.tasks {
            *self.launches.entry(task.task_id.clone()).or_default() += 1;
            assert_eq!(
                self.launches[&task.task_id], 1,
                "task id launched twice: {}",
                task.task_id
            );
            let mut used = self.used(&slave);
            used += &task.resources;
            assert!(total.contains(&used), "slave {slave} over-committed");
            let prefix = task
                .task_id
                .as_str()
                .rsplit_once('.')
                .unwrap()
                .0
                .to_string();
            self.launch_times.push((prefix, now));
            let id = task.task_id.clone();
            self.tasks.insert(
                id.clone(),
                FakeTask {
                    info: task,
                    state: TaskState::Staging,
                    healthy: None,
                    launched_at: now,
                },
            );
            if !self.stuck {
                ctx.delay(Duration::from_millis(100), Progress(id.clone(), 1));
            }
        }
    }

    fn handle_progress(&mut self, ctx: &mut Context<'_>, _from: &Upid, m: Progress) {
        let Some(task) = self.tasks.get_mut(&m.0) else {
            return;
        };
        if task.state.is_terminal() {
            return;
        }
        match m.1 {
            1 if task.state == TaskState::Staging => {
                task.state = TaskState::Running;
                let t = task.clone();
                self.status(ctx, &t, None, true);
                if t.info.health_check.is_some() {
                    ctx.delay(Duration::from_millis(300), Progress(m.0, 2));
                }
            }
            2 if task.state == TaskState::Running => {
                let healthy = !self.unhealthy.contains(&m.0) && !self.never_healthy;
                task.healthy = Some(healthy);
                let t = task.clone();
                self.status(ctx, &t, Some(Reason::TaskHealthCheckStatusUpdated), true);
            }
            _ => {}
        }
    }

    fn handle_kill(&mut self, ctx: &mut Context<'_>, _from: &Upid, m: KillTaskMessage) {
        self.kills += 1;
        match self.tasks.get_mut(&m.task_id) {
            Some(task) if !task.state.is_terminal() => {
                task.state = TaskState::Killed;
                let t = task.clone();
                self.status(ctx, &t, None, true);
            }
            _ => {
                let t = FakeTask {
                    info: TaskInfo::new(
                        m.task_id,
                        SlaveId::new("?"),
                        Resources::empty(),
                        CommandInfo::default(),
                    ),
                    state: TaskState::Unknown,
                    healthy: None,
                    launched_at: Duration::ZERO,
                };
                self.status(ctx, &t, Some(Reason::TaskUnknown), false);
            }
        }
        self.send_offers(ctx);
    }

    fn handle_reconcile(&mut self, ctx: &mut Context<'_>, _from: &Upid, m: ReconcileTasksMessage) {
        let answers: Vec<FakeTask> = if m.tasks.is_empty() {
            self.live().cloned().collect()
        } else {
            m.tasks
                .iter()
                .map(|(id, _)| match self.tasks.get(id) {
                    Some(t) => t.clone(),
                    None => FakeTask {
                        info: TaskInfo::new(
                            id.clone(),
                            SlaveId::new("?"),
                            Resources::empty(),
                            CommandInfo::default(),
                        ),
                        state: TaskState::Unknown,
                        healthy: None,
                        launched_at: Duration::ZERO,
                    },
                })
                .collect()
        };
        for t in answers {
            self.status(ctx, &t, Some(Reason::Reconciliation), false);
        }
    }

    fn handle_ack(
        &mut self,
        _ctx: &mut Context<'_>,
        _from: &Upid,
        m: StatusUpdateAcknowledgementMessage,
    ) {
        self.acked.push((m.task_id, m.uuid));
    }

    fn handle_suppress(&mut self, _ctx: &mut Context<'_>, _from: &Upid, _m: SuppressOffersMessage) {
        self.suppressed = true;
    }

    fn handle_revive(&mut self, ctx: &mut Context<'_>, _from: &Upid, _m: ReviveOffersMessage) {
        self.suppressed = false;
        self.revives += 1;
        self.filtered_until.clear();
        self.send_offers(ctx);
    }

    fn handle_tick(&mut self, ctx: &mut Context<'_>, _from: &Upid, _m: OfferTick) {
        ctx.delay(Duration::from_secs(1), OfferTick);
        self.send_offers(ctx);
    }

    /// Test control: the task ends with `state` (and `reason`).
    pub fn end_task(
        &mut self,
        ctx: &mut Context<'_>,
        id: &TaskId,
        state: TaskState,
        reason: Option<Reason>,
    ) {
        let task = self.tasks.get_mut(id).expect("known task");
        task.state = state;
        let t = task.clone();
        self.status(ctx, &t, reason, true);
    }

    /// Test control: change a task's health verdict.
    pub fn set_health(&mut self, ctx: &mut Context<'_>, id: &TaskId, healthy: bool) {
        let task = self.tasks.get_mut(id).expect("known task");
        task.healthy = Some(healthy);
        let t = task.clone();
        self.status(ctx, &t, Some(Reason::TaskHealthCheckStatusUpdated), true);
    }
}

impl Process for FakeMaster {
    fn install(h: &mut Handlers<Self>) {
        h.on(Self::handle_register)
            .on(Self::handle_reregister)
            .on(Self::handle_launch)
            .on(Self::handle_decline)
            .on(Self::handle_progress)
            .on(Self::handle_kill)
            .on(Self::handle_reconcile)
            .on(Self::handle_ack)
            .on(Self::handle_suppress)
            .on(Self::handle_revive)
            .on(Self::handle_inverse_answer)
            .on(Self::handle_tick);
    }

    fn initialize(&mut self, ctx: &mut Context<'_>) {
        ctx.delay(Duration::from_secs(1), OfferTick);
    }
}
