//! Unit tests of the master core, driven with a fake `now`.

use super::*;
use crate::resources::Attributes;

fn upid(s: &str) -> Upid {
    s.parse().unwrap()
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// The core plus what came out of it: sends, and a registry state the persists were applied to.
struct Harness {
    core: MasterCore,
    sent: Vec<(Upid, Outgoing)>,
    registry: RegistryState,
    allocate_requests: usize,
}

impl Harness {
    fn new() -> Self {
        Self::with(MasterConfig::default(), RegistryState::default())
    }

    fn with(config: MasterConfig, registry: RegistryState) -> Self {
        let core = MasterCore::new(
            config,
            registry.clone(),
            "run".into(),
            upid("master@10.0.0.1:5050"),
            1_000_000.0,
        );
        let mut h = Harness {
            core,
            sent: Vec::new(),
            registry,
            allocate_requests: 0,
        };
        h.flush();
        h
    }

    /// Applies persists, records sends; asserts every reply comes after its persist (the
    /// actions are in order, so a registration reply must follow its AdmitSlave).
    fn flush(&mut self) {
        for action in self.core.drain_actions() {
            match action {
                Action::Persist(op) => self.registry.apply(&op),
                Action::Send { to, message } => {
                    match &message {
                        Outgoing::SlaveRegistered(m) => {
                            assert!(self.registry.slaves.contains_key(&m.slave_id))
                        }
                        Outgoing::FrameworkRegistered(m) => {
                            assert!(self.registry.frameworks.contains_key(&m.framework_id))
                        }
                        _ => {}
                    }
                    self.sent.push((to, message));
                }
                Action::AllocateAfter(d) => {
                    assert!(d <= Duration::from_millis(10));
                    self.allocate_requests += 1;
                }
                Action::Link(_) | Action::Unlink(_) => {}
            }
        }
        self.core.check_invariants().unwrap();
    }

    fn take(&mut self) -> Vec<(Upid, Outgoing)> {
        std::mem::take(&mut self.sent)
    }

    fn register_slave(&mut self, now: Duration, pid: &str, resources: &str) -> SlaveId {
        self.core.handle_register_slave(
            now,
            &upid(pid),
            RegisterSlaveMessage {
                slave: slave_info(pid, resources),
            },
        );
        self.flush();
        let sent = self.take();
        sent.into_iter()
            .find_map(|(to, m)| match m {
                Outgoing::SlaveRegistered(m) if to == upid(pid) => Some(m.slave_id),
                _ => None,
            })
            .expect("slave registered")
    }

    fn register_framework(&mut self, now: Duration, pid: &str, failover_secs: f64) -> FrameworkId {
        let mut info = FrameworkInfo::new(pid);
        info.failover_timeout_secs = failover_secs;
        self.core.handle_register_framework(
            now,
            &upid(pid),
            RegisterFrameworkMessage {
                framework: info,
                fencing: None,
            },
        );
        self.flush();
        self.take()
            .into_iter()
            .find_map(|(_, m)| match m {
                Outgoing::FrameworkRegistered(m) => Some(m.framework_id),
                _ => None,
            })
            .expect("framework registered")
    }

    fn allocate(&mut self, now: Duration) -> Vec<Offer> {
        self.core.handle_allocation(now);
        self.flush();
        let mut offers = Vec::new();
        self.sent.retain(|(_, m)| match m {
            Outgoing::ResourceOffers(m) => {
                offers.extend(m.offers.iter().cloned());
                false
            }
            _ => true,
        });
        offers
    }

    fn launch(
        &mut self,
        now: Duration,
        framework: &FrameworkId,
        pid: &str,
        offers: &[&OfferId],
        tasks: Vec<TaskInfo>,
    ) {
        self.core.handle_launch_tasks(
            now,
            &upid(pid),
            LaunchTasksMessage {
                framework_id: framework.clone(),
                offer_ids: offers.iter().map(|o| (*o).clone()).collect(),
                tasks,
                filters: Filters::default(),
                fencing_epoch: None,
            },
        );
        self.flush();
    }

    fn statuses(&mut self) -> Vec<TaskStatus> {
        let mut out = Vec::new();
        self.sent.retain(|(_, m)| match m {
            Outgoing::StatusUpdate(m) => {
                out.push(m.status.clone());
                false
            }
            _ => true,
        });
        out
    }

    fn status_update(&mut self, now: Duration, slave_pid: &str, f: &FrameworkId, s: TaskStatus) {
        self.core.handle_status_update(
            now,
            &upid(slave_pid),
            StatusUpdateMessage {
                framework_id: f.clone(),
                status: s,
                slave_pid: Some(upid(slave_pid)),
            },
        );
        self.flush();
    }

    /// The slave at `pid` re-registers as `id` (resources `BIG`) with these tasks.
    fn reregister_slave(
        &mut self,
        now: Duration,
        pid: &str,
        id: &SlaveId,
        tasks: Vec<SlaveTask>,
        frameworks: Vec<(FrameworkId, Upid)>,
    ) {
        self.reregister_slave_with(now, pid, id, BIG, tasks, frameworks);
    }

    /// The slave at `pid` re-registers as `id` with `resources` and these tasks.
    fn reregister_slave_with(
        &mut self,
        now: Duration,
        pid: &str,
        id: &SlaveId,
        resources: &str,
        tasks: Vec<SlaveTask>,
        frameworks: Vec<(FrameworkId, Upid)>,
    ) {
        self.core.handle_reregister_slave(
            now,
            &upid(pid),
            ReregisterSlaveMessage {
                slave_id: id.clone(),
                slave: slave_info(pid, resources),
                tasks,
                frameworks,
            },
        );
        self.flush();
    }

    /// The scheduler at `pid` declines offers, refused for `refuse_seconds`.
    fn decline_offers(
        &mut self,
        now: Duration,
        pid: &str,
        framework: &FrameworkId,
        offer_ids: Vec<OfferId>,
        refuse_seconds: f64,
    ) {
        self.core.handle_decline_offers(
            now,
            &upid(pid),
            DeclineOffersMessage {
                framework_id: framework.clone(),
                offer_ids,
                filters: Filters { refuse_seconds },
            },
        );
        self.flush();
    }

    fn heartbeat(&mut self, now: Duration, slave_pid: &str, id: &SlaveId) {
        self.core.handle_slave_heartbeat(
            now,
            &upid(slave_pid),
            SlaveHeartbeatMessage {
                slave_id: id.clone(),
            },
        );
        self.flush();
    }
}

fn slave_info(pid: &str, resources: &str) -> SlaveInfo {
    let pid = upid(pid);
    SlaveInfo {
        hostname: pid.host.to_string(),
        port: pid.port,
        resources: Resources::parse(resources).unwrap(),
        attributes: Attributes::default(),
    }
}

fn task(id: &str, slave: &SlaveId, resources: &str) -> TaskInfo {
    TaskInfo {
        name: id.into(),
        task_id: TaskId::new(id),
        slave_id: slave.clone(),
        resources: Resources::parse(resources).unwrap(),
        command: CommandInfo::shell("sleep 100"),
        health_check: None,
        labels: BTreeMap::new(),
        kill_grace_period_secs: None,
    }
}

fn slave_status(task: &str, slave: &SlaveId, state: TaskState, uuid: u8) -> TaskStatus {
    TaskStatus {
        task_id: TaskId::new(task),
        state,
        message: None,
        source: StatusSource::Slave,
        reason: None,
        slave_id: Some(slave.clone()),
        healthy: None,
        timestamp: 0.0,
        uuid: Some([uuid; 16]),
    }
}

const S1: &str = "slave(1)@10.0.0.2:5051";
const S2: &str = "slave(1)@10.0.0.3:5051";
const F1: &str = "scheduler@10.0.0.9:7000";
const F2: &str = "scheduler@10.0.0.10:7000";
const BIG: &str = "cpus:4;mem:4096;disk:1000;ports:[31000-31009]";

/// One slave, one framework, one offer of the whole slave.
fn offered() -> (Harness, SlaveId, FrameworkId, Offer) {
    let mut h = Harness::new();
    let slave = h.register_slave(Duration::ZERO, S1, BIG);
    let framework = h.register_framework(Duration::ZERO, F1, 60.0);
    let offers = h.allocate(secs(0.01));
    assert_eq!(offers.len(), 1);
    (h, slave, framework, offers[0].clone())
}

/// ... plus a task `t1` launched and RUNNING (ack not yet sent).
fn running() -> (Harness, SlaveId, FrameworkId) {
    let (mut h, slave, framework, offer) = offered();
    h.launch(
        secs(0.1),
        &framework,
        F1,
        &[&offer.id],
        vec![task("t1", &slave, "cpus:1;mem:512;ports:[31000-31000]")],
    );
    h.take();
    h.status_update(
        secs(0.2),
        S1,
        &framework,
        slave_status("t1", &slave, TaskState::Running, 1),
    );
    h.take();
    (h, slave, framework)
}

#[test]
fn slave_registration_is_persisted_before_the_reply_and_retries_get_the_same_id() {
    let mut h = Harness::new();
    let id = h.register_slave(Duration::ZERO, S1, BIG);
    assert_eq!(id.as_str(), "run-S0");
    assert_eq!(h.registry.next_slave_number, 1);
    assert_eq!(h.registry.master_run_id.as_deref(), Some("run"));
    assert!(!h.registry.slaves[&id].unreachable);
    // A retry from the same process: same id, no new slave.
    let again = h.register_slave(secs(1.0), S1, BIG);
    assert_eq!(again, id);
    assert_eq!(h.core.slaves().len(), 1);
    let other = h.register_slave(secs(1.0), S2, BIG);
    assert_eq!(other.as_str(), "run-S1");
    assert!(h.allocate_requests >= 1);
}

#[test]
fn framework_gets_id_and_one_offer_message_per_round() {
    let mut h = Harness::new();
    let s1 = h.register_slave(Duration::ZERO, S1, BIG);
    let s2 = h.register_slave(Duration::ZERO, S2, BIG);
    let f = h.register_framework(Duration::ZERO, F1, 0.0);
    assert_eq!(f.as_str(), "run-0000");
    assert!(h.registry.frameworks.contains_key(&f));
    h.core.handle_allocation(secs(0.01));
    h.flush();
    let messages: Vec<_> = h
        .take()
        .into_iter()
        .filter_map(|(to, m)| match m {
            Outgoing::ResourceOffers(m) => Some((to, m)),
            _ => None,
        })
        .collect();
    assert_eq!(messages.len(), 1, "one message per framework per round");
    assert_eq!(messages[0].0, upid(F1));
    let slaves: BTreeSet<_> = messages[0]
        .1
        .offers
        .iter()
        .map(|o| o.slave_id.clone())
        .collect();
    assert_eq!(slaves, BTreeSet::from([s1, s2]));
    for offer in &messages[0].1.offers {
        assert!(offer.id.as_str().starts_with("run-O"));
        assert_eq!(offer.resources, Resources::parse(BIG).unwrap());
    }
    // Everything is offered: nothing more next round.
    assert!(h.allocate(secs(1.0)).is_empty());
}

#[test]
fn valid_launch_stages_tasks_sends_run_task_and_returns_the_rest_with_a_filter() {
    let (mut h, slave, framework, offer) = offered();
    h.launch(
        secs(0.1),
        &framework,
        F1,
        &[&offer.id],
        vec![
            task("a", &slave, "cpus:1;mem:512;ports:[31000-31000]"),
            task("b", &slave, "cpus:1;mem:512"),
        ],
    );
    let sent = h.take();
    let runs: Vec<_> = sent
        .iter()
        .filter_map(|(to, m)| match m {
            Outgoing::RunTask(r) => Some((to.clone(), r.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(runs.len(), 2);
    assert!(runs
        .iter()
        .all(|(to, r)| *to == upid(S1) && r.framework_pid == upid(F1)));
    for id in ["a", "b"] {
        let t = &h.core.tasks()[&(framework.clone(), TaskId::new(id))];
        assert_eq!(t.state, TaskState::Staging);
    }
    assert!(h.core.offers().is_empty());
    // The remainder is filtered for 5 s for this framework.
    assert!(h.allocate(secs(1.0)).is_empty());
    let offers = h.allocate(secs(5.2));
    assert_eq!(offers.len(), 1);
    assert_eq!(
        offers[0].resources,
        Resources::parse("cpus:2;mem:3072;disk:1000;ports:[31001-31009]").unwrap()
    );
}

fn expect_errors(h: &mut Harness, expected: &[(&str, Reason)]) {
    expect_errors_with(h, expected, false)
}

fn expect_errors_with(h: &mut Harness, expected: &[(&str, Reason)], some_valid: bool) {
    let statuses = h.statuses();
    assert_eq!(statuses.len(), expected.len(), "{statuses:?}");
    for (status, (id, reason)) in statuses.iter().zip(expected) {
        assert_eq!(status.task_id.as_str(), *id);
        assert_eq!(status.state, TaskState::Error);
        assert_eq!(status.reason, Some(*reason));
        assert_eq!(status.source, StatusSource::Master);
        assert_eq!(status.uuid, None);
        assert!(status.message.as_ref().is_some_and(|m| !m.is_empty()));
    }
    if !some_valid {
        assert!(
            !h.sent
                .iter()
                .any(|(_, m)| matches!(m, Outgoing::RunTask(_))),
            "no invalid task reaches a slave"
        );
    }
}

#[test]
fn launch_with_unknown_offer_errors_every_task() {
    let (mut h, slave, framework, offer) = offered();
    h.launch(
        secs(0.1),
        &framework,
        F1,
        &[&offer.id, &OfferId::new("nope")],
        vec![task("a", &slave, "cpus:1"), task("b", &slave, "cpus:1")],
    );
    expect_errors(
        &mut h,
        &[("a", Reason::InvalidOffers), ("b", Reason::InvalidOffers)],
    );
    // The valid offer was taken back (filtered): no task uses anything.
    assert!(h.core.tasks().is_empty());
    assert!(h.core.offers().is_empty());
    assert_eq!(h.core.counters().tasks_terminal[&TaskState::Error], 2);
}

#[test]
fn launch_with_another_frameworks_offer_or_offers_on_two_slaves_errors() {
    let mut h = Harness::new();
    let s1 = h.register_slave(Duration::ZERO, S1, BIG);
    let _s2 = h.register_slave(Duration::ZERO, S2, BIG);
    let f1 = h.register_framework(Duration::ZERO, F1, 0.0);
    let f2 = h.register_framework(Duration::ZERO, F2, 0.0);
    let offers = h.allocate(secs(0.01));
    assert_eq!(offers.len(), 2);
    let of_f2 = offers
        .iter()
        .find(|o| o.framework_id == f2)
        .unwrap()
        .clone();
    let of_f1 = offers
        .iter()
        .find(|o| o.framework_id == f1)
        .unwrap()
        .clone();
    // f1 uses f2's offer.
    h.launch(
        secs(0.1),
        &f1,
        F1,
        &[&of_f2.id],
        vec![task("a", &s1, "cpus:1")],
    );
    expect_errors(&mut h, &[("a", Reason::InvalidOffers)]);
    assert!(
        h.core.offers().contains_key(&of_f2.id),
        "f2's offer is untouched"
    );
    let _ = of_f1;

    // Offers on two slaves, both f1's.
    let mut h = Harness::new();
    let s1 = h.register_slave(Duration::ZERO, S1, BIG);
    h.register_slave(Duration::ZERO, S2, BIG);
    let f1 = h.register_framework(Duration::ZERO, F1, 0.0);
    let offers = h.allocate(secs(0.01));
    assert_eq!(offers.len(), 2);
    h.launch(
        secs(0.1),
        &f1,
        F1,
        &[&offers[0].id, &offers[1].id],
        vec![task("a", &s1, "cpus:1")],
    );
    expect_errors(&mut h, &[("a", Reason::InvalidOffers)]);
    assert!(h.core.offers().is_empty());
    // The same offer twice.
    let mut h2 = offered();
    let (ref mut h2h, ref slave, ref f, ref offer) = h2;
    h2h.launch(
        secs(0.1),
        f,
        F1,
        &[&offer.id, &offer.id],
        vec![task("a", slave, "cpus:1")],
    );
    expect_errors(h2h, &[("a", Reason::InvalidOffers)]);
}

#[test]
fn launch_errors_each_invalid_task_and_runs_the_valid_ones() {
    let (mut h, slave, framework, offer) = offered();
    // t0 exists already.
    h.launch(
        secs(0.1),
        &framework,
        F1,
        &[&offer.id],
        vec![task("t0", &slave, "cpus:0.5")],
    );
    h.take();
    let offer = h
        .allocate(secs(6.0))
        .pop()
        .expect("remainder offered after the filter");

    let mut empty_command = task("cmd", &slave, "cpus:0.5");
    empty_command.command.value = "  ".into();
    let mut other_slave = task("where", &slave, "cpus:0.5");
    other_slave.slave_id = SlaveId::new("elsewhere");
    let no_resources = task("empty", &slave, "");
    h.launch(
        secs(6.1),
        &framework,
        F1,
        &[&offer.id],
        vec![
            task("t0", &slave, "cpus:0.5"), // id in use
            task("ok1", &slave, "cpus:1;mem:1000"),
            task("ok1", &slave, "cpus:0.1"), // duplicate within the launch
            other_slave,
            empty_command,
            no_resources,
            task("", &slave, "cpus:0.1"),  // empty id
            task("big", &slave, "cpus:3"), // 3.5 - 1 = 2.5 left: overdraws
            task("ok2", &slave, "cpus:2.5;mem:100;ports:[31005-31005]"),
            task("port", &slave, "cpus:0;mem:1;ports:[31005-31005]"), // port taken by ok2
        ],
    );
    expect_errors_with(
        &mut h,
        &[
            ("t0", Reason::TaskInvalid),
            ("ok1", Reason::TaskInvalid),
            ("where", Reason::TaskInvalid),
            ("cmd", Reason::TaskInvalid),
            ("empty", Reason::TaskInvalid),
            ("", Reason::TaskInvalid),
            ("big", Reason::ResourcesUnknown),
            ("port", Reason::ResourcesUnknown),
        ],
        true,
    );
    let runs: Vec<String> = h
        .take()
        .into_iter()
        .filter_map(|(_, m)| match m {
            Outgoing::RunTask(r) => Some(r.task.task_id.into_inner()),
            _ => None,
        })
        .collect();
    assert_eq!(runs, ["ok1", "ok2"]);
    let used = h.core.slave_used(&h.core.slaves()[&slave]);
    assert_eq!(used.cpus(), 4.0);
}

#[test]
fn empty_launch_declines_with_the_filter_and_revive_clears_it() {
    let (mut h, _slave, framework, offer) = offered();
    h.core.handle_launch_tasks(
        secs(0.1),
        &upid(F1),
        LaunchTasksMessage {
            framework_id: framework.clone(),
            offer_ids: vec![offer.id.clone()],
            tasks: vec![],
            filters: Filters {
                refuse_seconds: 30.0,
            },
            fencing_epoch: None,
        },
    );
    h.flush();
    assert!(h.core.offers().is_empty());
    assert!(h.allocate(secs(10.0)).is_empty(), "declined for 30 s");
    h.core.handle_revive_offers(
        secs(10.0),
        &upid(F1),
        ReviveOffersMessage {
            framework_id: framework.clone(),
        },
    );
    h.flush();
    assert_eq!(h.allocate(secs(10.01)).len(), 1, "revive clears filters");
    // Suppress: no offers until revived.
    let offer = h.core.offers().values().next().unwrap().offer.id.clone();
    h.launch(secs(10.1), &framework, F1, &[&offer], vec![]);
    h.core.handle_suppress_offers(
        secs(10.1),
        &upid(F1),
        SuppressOffersMessage {
            framework_id: framework.clone(),
        },
    );
    h.flush();
    assert!(h.allocate(secs(60.0)).is_empty());
}

#[test]
fn decline_offers_takes_offers_of_several_slaves_in_one_message() {
    let mut h = Harness::new();
    h.register_slave(Duration::ZERO, S1, BIG);
    h.register_slave(Duration::ZERO, S2, BIG);
    let f1 = h.register_framework(Duration::ZERO, F1, 60.0);
    let offers = h.allocate(secs(0.01));
    assert_eq!(offers.len(), 2, "one offer per slave");
    let f2 = h.register_framework(secs(0.02), F2, 60.0);
    // Another framework's decline of them, and unknown ids, change nothing.
    h.decline_offers(
        secs(0.05),
        F2,
        &f2,
        offers.iter().map(|o| o.id.clone()).collect(),
        5.0,
    );
    assert_eq!(h.core.offers().len(), 2);
    let mut ids: Vec<OfferId> = offers.iter().map(|o| o.id.clone()).collect();
    ids.push(OfferId::new("no-such-offer"));
    h.decline_offers(secs(0.1), F1, &f1, ids, 30.0);
    assert!(h.core.offers().is_empty(), "both offers declined");
    let again = h.allocate(secs(10.0));
    assert_eq!(again.len(), 2, "both slaves offered to the other framework");
    assert!(
        again.iter().all(|o| o.framework_id == f2),
        "declined by the first for 30 s: {again:?}"
    );
    h.decline_offers(
        secs(10.0),
        F2,
        &f2,
        again.iter().map(|o| o.id.clone()).collect(),
        60.0,
    );
    assert!(h.allocate(secs(10.005)).is_empty(), "both filtered");
    h.core.handle_revive_offers(
        secs(10.01),
        &upid(F1),
        ReviveOffersMessage {
            framework_id: f1.clone(),
        },
    );
    h.flush();
    let revived = h.allocate(secs(10.02));
    assert_eq!(
        revived.len(),
        2,
        "revive clears the first framework's filters"
    );
    assert!(revived.iter().all(|o| o.framework_id == f1));
}

#[test]
fn the_invariant_check_finds_a_task_missing_from_its_slave_or_framework() {
    let mut h = Harness::new();
    let s1 = h.register_slave(Duration::ZERO, S1, BIG);
    let s2 = h.register_slave(Duration::ZERO, S2, BIG);
    let f1 = h.register_framework(Duration::ZERO, F1, 60.0);
    let offers = h.allocate(secs(0.01));
    for (i, offer) in offers.iter().enumerate() {
        let tasks = (0..4)
            .map(|n| task(&format!("t{n}.{i}"), &offer.slave_id, "cpus:0.1;mem:16"))
            .collect();
        h.launch(secs(0.1), &f1, F1, &[&offer.id], tasks);
    }
    h.core.check_invariants().unwrap();
    assert_eq!(h.core.tasks().len(), 8);
    // Each task in turn: off its slave's list, then off its framework's.
    let keys: Vec<(FrameworkId, TaskId)> = h.core.tasks().keys().cloned().collect();
    for key in &keys {
        let slave_id = h.core.tasks()[key].slave_id.clone();
        assert!(slave_id == s1 || slave_id == s2);
        let slave = h.core.slaves.get_mut(&slave_id).unwrap();
        assert!(slave.tasks.remove(key));
        let err = h.core.check_invariants().unwrap_err();
        assert!(err.contains("missing from its slave"), "{err}");
        h.core
            .slaves
            .get_mut(&slave_id)
            .unwrap()
            .tasks
            .insert(key.clone());
        let framework = h.core.frameworks.get_mut(&key.0).unwrap();
        assert!(framework.tasks.remove(&key.1));
        let err = h.core.check_invariants().unwrap_err();
        assert!(err.contains("missing from its framework"), "{err}");
        h.core
            .frameworks
            .get_mut(&key.0)
            .unwrap()
            .tasks
            .insert(key.1.clone());
        h.core.check_invariants().unwrap();
    }
}

#[test]
fn launches_never_over_commit_a_slave() {
    // Two frameworks race for one slave with many small launches; at every step the
    // invariant check (run by flush) proves used + offered fits in the slave.
    let mut h = Harness::new();
    let slave = h.register_slave(Duration::ZERO, S1, "cpus:2;mem:1024");
    let f1 = h.register_framework(Duration::ZERO, F1, 0.0);
    let f2 = h.register_framework(Duration::ZERO, F2, 0.0);
    let mut n = 0;
    for round in 0..40 {
        let now = secs(round as f64 * 10.0);
        for offer in h.allocate(now) {
            let (f, pid) = if offer.framework_id == f1 {
                (&f1, F1)
            } else {
                (&f2, F2)
            };
            // Ask for more than offered on purpose: some tasks must be refused.
            let tasks = (0..3)
                .map(|_| {
                    n += 1;
                    task(&format!("t{n}"), &slave, "cpus:0.5;mem:128")
                })
                .collect();
            h.launch(now, f, pid, &[&offer.id], tasks);
        }
        // Finish one running task now and then so resources come back.
        let live: Vec<(FrameworkId, TaskId)> = h.core.tasks().keys().cloned().collect();
        if let Some((f, t)) = live.first().cloned().filter(|_| round % 3 == 0) {
            h.status_update(
                now,
                S1,
                &f,
                slave_status(t.as_str(), &slave, TaskState::Finished, round as u8),
            );
        }
        let used = h.core.slave_used(&h.core.slaves()[&slave]);
        assert!(used.cpus() <= 2.0 && used.mem_mb() <= 1024.0);
    }
    assert!(
        h.core
            .counters()
            .tasks_terminal
            .get(&TaskState::Error)
            .copied()
            .unwrap_or(0)
            > 0
    );
}

#[test]
fn status_updates_are_forwarded_with_the_slave_pid_and_acks_reach_the_slave() {
    let (mut h, slave, framework, offer) = offered();
    h.launch(
        secs(0.1),
        &framework,
        F1,
        &[&offer.id],
        vec![task("t1", &slave, "cpus:1")],
    );
    h.take();
    h.status_update(
        secs(0.2),
        S1,
        &framework,
        slave_status("t1", &slave, TaskState::Running, 7),
    );
    let sent = h.take();
    let (to, update) = sent
        .iter()
        .find_map(|(to, m)| match m {
            Outgoing::StatusUpdate(u) => Some((to.clone(), u.clone())),
            _ => None,
        })
        .unwrap();
    assert_eq!(to, upid(F1));
    assert_eq!(update.slave_pid, Some(upid(S1)));
    assert_eq!(update.status.uuid, Some([7; 16]));
    assert_eq!(
        h.core.tasks()[&(framework.clone(), TaskId::new("t1"))].state,
        TaskState::Running
    );
    let ack = StatusUpdateAcknowledgementMessage {
        slave_id: slave.clone(),
        framework_id: framework.clone(),
        task_id: TaskId::new("t1"),
        uuid: [7; 16],
    };
    h.core
        .handle_status_update_acknowledgement(secs(0.3), &upid(F1), ack.clone());
    h.flush();
    let sent = h.take();
    assert!(
        matches!(&sent[..], [(to, Outgoing::StatusUpdateAcknowledgement(a))] if *to == upid(S1) && a.uuid == [7; 16])
    );
    // An ack from someone else is not forwarded.
    h.core
        .handle_status_update_acknowledgement(secs(0.3), &upid(F2), ack);
    h.flush();
    assert!(h.take().is_empty());

    // Terminal: recorded, resources recovered (offered again, no filter).
    h.status_update(
        secs(1.0),
        S1,
        &framework,
        slave_status("t1", &slave, TaskState::Finished, 8),
    );
    assert!(h.core.tasks().is_empty());
    let f = &h.core.frameworks()[&framework];
    assert_eq!(f.completed_tasks.back().unwrap().state, TaskState::Finished);
    assert_eq!(h.core.counters().tasks_terminal[&TaskState::Finished], 1);
    let offers = h.allocate(secs(6.0));
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0].resources, Resources::parse(BIG).unwrap());
    // A duplicate of the terminal update is still forwarded (for its ack), changes nothing.
    h.take();
    h.status_update(
        secs(7.0),
        S1,
        &framework,
        slave_status("t1", &slave, TaskState::Finished, 8),
    );
    assert_eq!(h.statuses().len(), 1);
    assert_eq!(h.core.counters().tasks_terminal[&TaskState::Finished], 1);
}

#[test]
fn kill_forwards_to_the_slave_and_answers_unknown_tasks() {
    let (mut h, _slave, framework) = running();
    h.core.handle_kill_task(
        secs(1.0),
        &upid(F1),
        KillTaskMessage {
            framework_id: framework.clone(),
            task_id: TaskId::new("t1"),
            fencing_epoch: None,
        },
    );
    h.flush();
    let sent = h.take();
    assert!(
        matches!(&sent[..], [(to, Outgoing::KillTask(k))] if *to == upid(S1) && k.task_id.as_str() == "t1")
    );
    h.core.handle_kill_task(
        secs(1.0),
        &upid(F1),
        KillTaskMessage {
            framework_id: framework.clone(),
            task_id: TaskId::new("ghost"),
            fencing_epoch: None,
        },
    );
    h.flush();
    let statuses = h.statuses();
    assert_eq!(statuses.len(), 1);
    assert_eq!(statuses[0].state, TaskState::Unknown);
    assert_eq!(statuses[0].reason, Some(Reason::TaskUnknown));
    assert_eq!(statuses[0].uuid, None);
}

#[test]
fn silent_slave_goes_unreachable_within_the_timeout_and_reregistration_reconciles() {
    let (mut h, slave, framework) = running();
    // Another offer outstanding on the slave, to be rescinded.
    let offers = h.allocate(secs(5.5));
    assert_eq!(offers.len(), 1);
    // Heartbeats until 1 s; silence afterwards.
    h.heartbeat(secs(1.0), S1, &slave);
    let tick = h.core.config().tick_interval();
    let mut now = secs(1.0);
    while now + tick < secs(6.0) {
        now += tick;
        h.core.handle_tick(now);
        h.flush();
        assert_eq!(
            h.core.slaves()[&slave].status,
            SlaveStatus::Connected,
            "at {now:?}"
        );
    }
    // Within agent_timeout + one tick of the last heartbeat, it is unreachable.
    now += tick;
    h.core.handle_tick(now);
    h.flush();
    assert!(now <= secs(1.0) + h.core.config().agent_timeout + tick);
    assert_eq!(h.core.slaves()[&slave].status, SlaveStatus::Unreachable);
    assert!(h.registry.slaves[&slave].unreachable);
    let sent = h.take();
    let update = sent
        .iter()
        .find_map(|(to, m)| match m {
            Outgoing::StatusUpdate(u) if *to == upid(F1) => Some(u.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(update.status.state, TaskState::Unreachable);
    assert_eq!(update.status.reason, Some(Reason::SlaveDisconnected));
    assert_eq!(update.status.source, StatusSource::Master);
    assert_eq!(update.status.uuid, None);
    assert!(sent.iter().any(
        |(_, m)| matches!(m, Outgoing::RescindResourceOffer(r) if r.offer_id == offers[0].id)
    ));
    assert!(sent
        .iter()
        .any(|(_, m)| matches!(m, Outgoing::LostSlave(l) if l.slave_id == slave)));
    assert_eq!(h.core.allocator().slaves_len(), 0);
    assert!(h.core.offers().is_empty());

    // Reconciliation while it is away says UNREACHABLE.
    h.core.handle_reconcile_tasks(
        now,
        &upid(F1),
        ReconcileTasksMessage {
            framework_id: framework.clone(),
            tasks: vec![],
        },
    );
    h.flush();
    assert_eq!(h.statuses()[0].state, TaskState::Unreachable);

    // It comes back: its heartbeat is answered with a re-register request.
    h.heartbeat(now + secs(1.0), S1, &slave);
    assert!(matches!(&h.take()[..], [(to, Outgoing::ReregisterRequest(_))] if *to == upid(S1)));
    let t1 = h.core.tasks()[&(framework.clone(), TaskId::new("t1"))]
        .info
        .clone();
    h.reregister_slave(
        now + secs(1.1),
        S1,
        &slave,
        vec![SlaveTask {
            framework_id: framework.clone(),
            task: t1.clone(),
            state: TaskState::Running,
        }],
        vec![(framework.clone(), upid(F1))],
    );
    let sent = h.take();
    assert!(sent
        .iter()
        .any(|(to, m)| matches!(m, Outgoing::SlaveReregistered(_)) && *to == upid(S1)));
    let update = sent
        .iter()
        .find_map(|(_, m)| match m {
            Outgoing::StatusUpdate(u) => Some(u.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(update.status.state, TaskState::Running);
    assert_eq!(update.status.reason, Some(Reason::Reconciliation));
    assert_eq!(update.status.uuid, None);
    assert_eq!(h.core.slaves()[&slave].status, SlaveStatus::Connected);
    assert!(!h.registry.slaves[&slave].unreachable);
    // The task's resources count as used again: the offer is the rest.
    let offers = h.allocate(now + secs(2.0));
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0].resources.cpus(), 3.0);
}

#[test]
fn reregistration_kills_tasks_of_unknown_frameworks_and_forgets_unreported_tasks() {
    let (mut h, slave, framework) = running();
    let t1 = h.core.tasks()[&(framework.clone(), TaskId::new("t1"))]
        .info
        .clone();
    let stranger = FrameworkId::new("someone-else");
    h.reregister_slave(
        secs(1.0),
        S1,
        &slave,
        vec![SlaveTask {
            framework_id: stranger.clone(),
            task: task("x", &slave, "cpus:1"),
            state: TaskState::Running,
        }],
        vec![],
    );
    let sent = h.take();
    assert!(sent.iter().any(
        |(to, m)| matches!(m, Outgoing::ShutdownFramework(s) if s.framework_id == stranger)
            && *to == upid(S1)
    ));
    // t1 was not reported: gone.
    let gone = sent
        .iter()
        .find_map(|(_, m)| match m {
            Outgoing::StatusUpdate(u) if u.status.task_id == t1.task_id => Some(u.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(gone.status.state, TaskState::Gone);
    // The orphan's resources are held until it ends.
    assert_eq!(h.core.slave_used(&h.core.slaves()[&slave]).cpus(), 1.0);
    h.status_update(
        secs(2.0),
        S1,
        &stranger,
        slave_status("x", &slave, TaskState::Killed, 3),
    );
    assert!(h.core.tasks().is_empty());
    let offers = h.allocate(secs(3.0));
    assert_eq!(offers[0].resources.cpus(), 4.0);
}

/// A task still staging (no word of it from its slave yet) is not declared gone when its slave
/// re-registers without it: its RunTask may still arrive (delayed or duplicated by the
/// network), and its framework would then hear it start after being told it was gone. It is
/// sent again instead, and its resources stay taken.
#[test]
fn reregistration_without_a_staging_task_resends_it_instead_of_declaring_it_gone() {
    let (mut h, slave, framework, offer) = offered();
    h.launch(
        secs(0.1),
        &framework,
        F1,
        &[&offer.id],
        vec![task("t1", &slave, "cpus:1;mem:512")],
    );
    let sent = h.take();
    assert!(sent.iter().any(|(_, m)| matches!(m, Outgoing::RunTask(_))));
    h.reregister_slave(secs(1.0), S1, &slave, vec![], vec![]);
    let sent = h.take();
    assert!(
        !sent
            .iter()
            .any(|(_, m)| matches!(m, Outgoing::StatusUpdate(_))),
        "no status for the staging task: {sent:?}"
    );
    let key = (framework.clone(), TaskId::new("t1"));
    assert_eq!(h.core.tasks()[&key].state, TaskState::Staging);
    assert_eq!(h.core.slave_used(&h.core.slaves()[&slave]).cpus(), 1.0);
    h.core.handle_tick(secs(1.5));
    h.flush();
    let sent = h.take();
    assert!(
        sent.iter().any(|(to, m)| *to == upid(S1)
            && matches!(m, Outgoing::RunTask(r) if r.task.task_id.as_str() == "t1")),
        "RunTask sent again: {sent:?}"
    );
    // Once the slave has spoken of it, a re-registration without it means it is gone.
    h.status_update(
        secs(2.0),
        S1,
        &framework,
        slave_status("t1", &slave, TaskState::Running, 1),
    );
    h.take();
    h.reregister_slave(secs(3.0), S1, &slave, vec![], vec![]);
    let gone = h.take().into_iter().find_map(|(_, m)| match m {
        Outgoing::StatusUpdate(u) if u.status.task_id.as_str() == "t1" => Some(u.status.state),
        _ => None,
    });
    assert_eq!(gone, Some(TaskState::Gone));
    assert!(h.core.tasks().is_empty());
}

#[test]
fn disconnected_framework_is_removed_after_its_failover_timeout() {
    let (mut h, _slave, framework) = running();
    let offers = h.allocate(secs(6.0));
    assert_eq!(offers.len(), 1);
    h.core.handle_exited(secs(10.0), &upid(F1));
    h.flush();
    assert_eq!(
        h.core.frameworks()[&framework].status,
        FrameworkStatus::Disconnected
    );
    assert!(h.core.offers().is_empty(), "offers rescinded");
    // No offers while disconnected.
    assert!(h.allocate(secs(11.0)).is_empty());
    h.take();
    // 60 s failover timeout: still there at 69 s. (The slave keeps heartbeating.)
    h.heartbeat(secs(68.0), S1, &_slave);
    h.core.handle_tick(secs(69.0));
    h.flush();
    assert!(h.core.frameworks().contains_key(&framework));
    h.core.handle_tick(secs(70.0));
    h.flush();
    assert!(!h.core.frameworks().contains_key(&framework));
    assert!(!h.registry.frameworks.contains_key(&framework));
    let sent = h.take();
    assert!(sent.iter().any(
        |(to, m)| matches!(m, Outgoing::ShutdownFramework(s) if s.framework_id == framework)
            && *to == upid(S1)
    ));
    assert!(h.core.tasks().is_empty());
    assert_eq!(h.core.completed_frameworks().len(), 1);
    // Its resources are free again.
    let f2 = h.register_framework(secs(71.0), F2, 0.0);
    let offers = h.allocate(secs(71.01));
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0].framework_id, f2);
    assert_eq!(offers[0].resources, Resources::parse(BIG).unwrap());
    // The removed framework cannot come back.
    let mut info = FrameworkInfo::new(F1);
    info.id = Some(framework.clone());
    h.core.handle_reregister_framework(
        secs(72.0),
        &upid(F1),
        ReregisterFrameworkMessage {
            framework: info,
            failover: true,
            fencing: None,
        },
    );
    h.flush();
    assert!(matches!(&h.take()[..], [(_, Outgoing::FrameworkError(_))]));
}

#[test]
fn framework_reregistering_in_time_is_reactivated() {
    let (mut h, _slave, framework) = running();
    h.core.handle_exited(secs(10.0), &upid(F1));
    h.flush();
    let mut info = FrameworkInfo::new(F1);
    info.id = Some(framework.clone());
    info.failover_timeout_secs = 60.0;
    // A new scheduler instance takes over.
    h.core.handle_reregister_framework(
        secs(20.0),
        &upid(F2),
        ReregisterFrameworkMessage {
            framework: info,
            failover: true,
            fencing: None,
        },
    );
    h.flush();
    assert!(h
        .take()
        .iter()
        .any(|(to, m)| matches!(m, Outgoing::FrameworkReregistered(_)) && *to == upid(F2)));
    let f = &h.core.frameworks()[&framework];
    assert_eq!(f.status, FrameworkStatus::Active);
    assert_eq!(f.failover_deadline, None);
    h.heartbeat(secs(99.0), S1, &_slave);
    h.core.handle_tick(secs(100.0));
    h.flush();
    assert!(h.core.frameworks().contains_key(&framework));
    let offers = h.allocate(secs(100.0));
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0].framework_id, framework);
}

#[test]
fn a_new_scheduler_taking_over_gets_the_offers_held_by_the_old_one() {
    // The old scheduler holds an offer of the whole slave and dies; a new one takes the
    // framework over before the master sees the old one's link end.
    let (mut h, slave, framework, offer) = offered();
    let mut info = FrameworkInfo::new(F1);
    info.id = Some(framework.clone());
    info.failover_timeout_secs = 60.0;
    h.core.handle_reregister_framework(
        secs(1.0),
        &upid(F2),
        ReregisterFrameworkMessage {
            framework: info,
            failover: true,
            fencing: None,
        },
    );
    h.flush();
    let sent = h.take();
    assert!(sent.iter().any(|(to, m)| *to == upid(F1)
        && matches!(m, Outgoing::RescindResourceOffer(r) if r.offer_id == offer.id)));
    assert!(
        h.core.offers().is_empty(),
        "the old scheduler's offer is gone"
    );
    assert!(h.core.frameworks()[&framework].offers.is_empty());
    // The old scheduler's link ends later: nothing changes for the framework.
    h.core.handle_exited(secs(2.0), &upid(F1));
    h.flush();
    assert_eq!(
        h.core.frameworks()[&framework].status,
        FrameworkStatus::Active
    );
    // The slave's resources are offered again, to the new scheduler.
    h.core.handle_allocation(secs(2.01));
    h.flush();
    let offers: Vec<(Upid, Offer)> = h
        .take()
        .into_iter()
        .filter_map(|(to, m)| match m {
            Outgoing::ResourceOffers(m) => Some(m.offers.into_iter().map(move |o| (to.clone(), o))),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(offers.len(), 1, "{offers:?}");
    let (to, offer) = &offers[0];
    assert_eq!(*to, upid(F2));
    assert_eq!(offer.framework_id, framework);
    assert_eq!(offer.slave_id, slave);
    assert_eq!(offer.resources, Resources::parse(BIG).unwrap());
}

#[test]
fn framework_without_failover_timeout_is_removed_when_its_scheduler_goes() {
    let mut h = Harness::new();
    let framework = h.register_framework(Duration::ZERO, F1, 0.0);
    h.core.handle_exited(secs(1.0), &upid(F1));
    h.flush();
    assert!(!h.core.frameworks().contains_key(&framework));
    // Unregister removes at once too.
    let f2 = h.register_framework(secs(2.0), F2, 3600.0);
    h.core.handle_unregister_framework(
        secs(3.0),
        &upid(F2),
        UnregisterFrameworkMessage {
            framework_id: f2.clone(),
        },
    );
    h.flush();
    assert!(!h.core.frameworks().contains_key(&f2));
    assert!(h.registry.frameworks.is_empty());
}

#[test]
fn reconciliation_explicit_and_implicit() {
    let (mut h, slave, framework) = running();
    let offer = h.allocate(secs(6.0)).pop().unwrap();
    h.launch(
        secs(6.1),
        &framework,
        F1,
        &[&offer.id],
        vec![task("t2", &slave, "cpus:1")],
    );
    h.take();
    h.core.handle_reconcile_tasks(
        secs(7.0),
        &upid(F1),
        ReconcileTasksMessage {
            framework_id: framework.clone(),
            tasks: vec![
                (TaskId::new("t1"), Some(slave.clone())),
                (TaskId::new("ghost"), None),
            ],
        },
    );
    h.flush();
    let statuses = h.statuses();
    assert_eq!(statuses.len(), 2);
    assert_eq!(
        (statuses[0].task_id.as_str(), statuses[0].state),
        ("t1", TaskState::Running)
    );
    assert_eq!(
        (statuses[1].task_id.as_str(), statuses[1].state),
        ("ghost", TaskState::Unknown)
    );
    assert!(statuses
        .iter()
        .all(|s| s.reason == Some(Reason::Reconciliation) && s.uuid.is_none()));
    h.core.handle_reconcile_tasks(
        secs(7.0),
        &upid(F1),
        ReconcileTasksMessage {
            framework_id: framework.clone(),
            tasks: vec![],
        },
    );
    h.flush();
    let statuses: Vec<_> = h
        .statuses()
        .into_iter()
        .map(|s| (s.task_id.into_inner(), s.state))
        .collect();
    assert_eq!(
        statuses,
        [
            ("t1".to_string(), TaskState::Running),
            ("t2".to_string(), TaskState::Staging)
        ]
    );
}

#[test]
fn restarted_master_recovers_slaves_and_frameworks_from_the_registry() {
    let (h, slave, framework) = running();
    let t1 = h.core.tasks()[&(framework.clone(), TaskId::new("t1"))]
        .info
        .clone();
    let registry = h.registry.clone();
    // A new master on the same registry.
    let mut h = Harness::with(MasterConfig::default(), registry);
    assert_eq!(h.core.slaves()[&slave].status, SlaveStatus::Recovered);
    assert_eq!(
        h.core.frameworks()[&framework].status,
        FrameworkStatus::Recovered
    );
    // Ids keep counting.
    let s2 = h.register_slave(secs(0.5), S2, BIG);
    assert_eq!(s2.as_str(), "run-S1");
    h.heartbeat(secs(1.0), S1, &slave);
    assert!(matches!(
        &h.take()[..],
        [(_, Outgoing::ReregisterRequest(_))]
    ));
    h.reregister_slave(
        secs(1.1),
        S1,
        &slave,
        vec![SlaveTask {
            framework_id: framework.clone(),
            task: t1,
            state: TaskState::Running,
        }],
        vec![(framework.clone(), upid(F1))],
    );
    // The framework is known (recovered): its task is kept, nothing is shut down.
    assert!(!h
        .take()
        .iter()
        .any(|(_, m)| matches!(m, Outgoing::ShutdownFramework(_))));
    let mut info = FrameworkInfo::new(F1);
    info.id = Some(framework.clone());
    info.failover_timeout_secs = 60.0;
    h.core.handle_reregister_framework(
        secs(2.0),
        &upid(F1),
        ReregisterFrameworkMessage {
            framework: info,
            failover: false,
            fencing: None,
        },
    );
    h.flush();
    assert_eq!(
        h.core.frameworks()[&framework].status,
        FrameworkStatus::Active
    );
    assert!(h.core.frameworks()[&framework]
        .tasks
        .contains(&TaskId::new("t1")));
    // The framework's share counts its running task: the rest of S1 is what is offered.
    let offers = h.allocate(secs(2.01));
    let on_s1 = offers.iter().find(|o| o.slave_id == slave).unwrap();
    assert_eq!(on_s1.resources.cpus(), 3.0);
}

#[test]
fn slave_link_break_rescinds_offers_and_asks_for_reregistration() {
    let (mut h, slave, _framework, offer) = offered();
    h.core.handle_exited(secs(1.0), &upid(S1));
    h.flush();
    let sent = h.take();
    assert!(sent
        .iter()
        .any(|(_, m)| matches!(m, Outgoing::RescindResourceOffer(r) if r.offer_id == offer.id)));
    assert_eq!(h.core.slaves()[&slave].status, SlaveStatus::Disconnected);
    assert!(h.allocate(secs(2.0)).is_empty());
    h.heartbeat(secs(2.0), S1, &slave);
    assert!(matches!(
        &h.take()[..],
        [(_, Outgoing::ReregisterRequest(_))]
    ));
    // Still silent to the agent-loss check as long as heartbeats come.
    h.core.handle_tick(secs(6.5));
    h.flush();
    assert_eq!(h.core.slaves()[&slave].status, SlaveStatus::Disconnected);
    h.core.handle_tick(secs(7.1));
    h.flush();
    assert_eq!(h.core.slaves()[&slave].status, SlaveStatus::Unreachable);
}

#[test]
fn messages_from_strangers_are_ignored() {
    let (mut h, slave, framework, offer) = offered();
    h.launch(
        secs(0.1),
        &framework,
        F2,
        &[&offer.id],
        vec![task("a", &slave, "cpus:1")],
    );
    assert!(h.take().is_empty());
    assert!(h.core.offers().contains_key(&offer.id));
    h.status_update(
        secs(0.2),
        S2,
        &framework,
        slave_status("a", &slave, TaskState::Running, 1),
    );
    assert!(h.take().is_empty());
    assert!(h.core.counters().dropped_messages >= 2);
}

#[test]
fn configured_weights_are_persisted() {
    let mut config = MasterConfig::default();
    config.role_weights.insert("apps".into(), 3.0);
    let h = Harness::with(config, RegistryState::default());
    assert_eq!(h.registry.weights.get("apps"), Some(&3.0));
    assert_eq!(h.core.allocator().role_weight("apps"), 3.0);
    assert_eq!(
        MasterConfig::default().tick_interval(),
        Duration::from_millis(500)
    );
}

#[test]
fn a_recovered_framework_that_never_comes_back_is_removed_after_its_failover_timeout() {
    let (h, framework) = registered_with_failover(30.0);
    let registry = h.registry.clone();
    // A new master on the same registry; time on its clock starts anywhere.
    let mut h = Harness::with(MasterConfig::default(), registry);
    h.core.handle_tick(secs(100.0));
    assert!(
        h.core.frameworks().contains_key(&framework),
        "kept within the timeout"
    );
    h.core.handle_tick(secs(129.0));
    assert!(
        h.core.frameworks().contains_key(&framework),
        "kept within the timeout"
    );
    h.core.handle_tick(secs(131.0));
    h.flush();
    assert!(
        !h.core.frameworks().contains_key(&framework),
        "removed once its failover timeout passed without it re-registering"
    );
}

/// A slave and a framework with the given failover timeout, registered.
fn registered_with_failover(failover_secs: f64) -> (Harness, FrameworkId) {
    let mut h = Harness::new();
    h.register_slave(Duration::ZERO, S1, BIG);
    let framework = h.register_framework(secs(0.01), F1, failover_secs);
    h.take();
    (h, framework)
}

fn run_tasks(h: &mut Harness) -> Vec<RunTaskMessage> {
    let mut out = Vec::new();
    h.sent.retain(|(_, m)| match m {
        Outgoing::RunTask(r) => {
            out.push((**r).clone());
            false
        }
        _ => true,
    });
    out
}

#[test]
fn a_duplicated_launch_is_ignored_for_its_tasks_before_and_after_they_end() {
    let (mut h, slave, framework, offer) = offered();
    let t1 = task("t1", &slave, "cpus:1;mem:512");
    h.launch(secs(0.1), &framework, F1, &[&offer.id], vec![t1.clone()]);
    assert_eq!(run_tasks(&mut h).len(), 1);
    h.take();
    // The network delivers the same launch again: nothing for the live task.
    h.launch(secs(0.11), &framework, F1, &[&offer.id], vec![t1.clone()]);
    assert!(h.statuses().is_empty(), "no TASK_ERROR for a live task");
    assert!(run_tasks(&mut h).is_empty());
    let key = (framework.clone(), TaskId::new("t1"));
    assert_eq!(h.core.tasks()[&key].state, TaskState::Staging);
    assert_eq!(h.core.counters().duplicate_launch_tasks, 1);
    // A task not in the original launch, naming the used offer, is still an error.
    h.launch(
        secs(0.12),
        &framework,
        F1,
        &[&offer.id],
        vec![task("t2", &slave, "cpus:1")],
    );
    expect_errors(&mut h, &[("t2", Reason::InvalidOffers)]);
    // A task with the same id but another body is not a duplicate either.
    let mut other = t1.clone();
    other.command = CommandInfo::shell("sleep 1");
    h.launch(secs(0.13), &framework, F1, &[&offer.id], vec![other]);
    expect_errors(&mut h, &[("t1", Reason::InvalidOffers)]);
    // Once the task finished, a late copy is still ignored.
    h.status_update(
        secs(0.2),
        S1,
        &framework,
        slave_status("t1", &slave, TaskState::Finished, 1),
    );
    h.take();
    h.launch(secs(0.3), &framework, F1, &[&offer.id], vec![t1]);
    assert!(h.statuses().is_empty());
    assert!(h.core.tasks().is_empty());
    assert_eq!(h.core.counters().duplicate_launch_tasks, 2);
}

#[test]
fn a_task_its_slave_never_confirmed_gets_its_run_task_resent_with_backoff() {
    let (mut h, slave, framework, offer) = offered();
    let t1 = task("t1", &slave, "cpus:1;mem:512");
    h.launch(secs(0.1), &framework, F1, &[&offer.id], vec![t1.clone()]);
    assert_eq!(run_tasks(&mut h).len(), 1);
    h.take();
    // The RunTask was lost. Within the resend timeout (5 s) nothing happens.
    let tick = |h: &mut Harness, at: f64| -> Vec<RunTaskMessage> {
        h.heartbeat(secs(at), S1, &slave);
        h.core.handle_tick(secs(at));
        h.flush();
        let runs = run_tasks(h);
        h.take();
        runs
    };
    assert!(tick(&mut h, 3.0).is_empty());
    let resent = tick(&mut h, 5.2);
    assert_eq!(resent.len(), 1, "resent after the timeout");
    assert_eq!(resent[0].task, t1);
    assert_eq!(resent[0].framework_id, framework);
    assert_eq!(resent[0].framework_pid, upid(F1));
    // Then after twice as long (10 s), not before.
    assert!(tick(&mut h, 14.0).is_empty());
    assert_eq!(tick(&mut h, 15.3).len(), 1);
    assert_eq!(h.core.counters().run_task_resends, 2);
    // While the slave is disconnected, nothing is sent; the deadline moves on.
    h.core.handle_exited(secs(16.0), &upid(S1));
    h.flush();
    h.take();
    h.core.handle_tick(secs(36.0));
    h.flush();
    assert!(run_tasks(&mut h).is_empty());
    h.take();
    // The slave re-registers with the task still staging: it has it, resends are harmless
    // but still due; its first update ends them.
    h.reregister_slave(
        secs(37.0),
        S1,
        &slave,
        vec![SlaveTask {
            framework_id: framework.clone(),
            task: t1,
            state: TaskState::Staging,
        }],
        vec![(framework.clone(), upid(F1))],
    );
    h.take();
    h.status_update(
        secs(37.5),
        S1,
        &framework,
        slave_status("t1", &slave, TaskState::Starting, 1),
    );
    h.take();
    for at in [40.0, 60.0, 100.0, 200.0] {
        assert!(tick(&mut h, at).is_empty(), "no resend once confirmed");
    }
    assert_eq!(h.core.counters().run_task_resends, 2);
}

#[test]
fn resends_can_be_disabled_and_stop_for_tasks_that_left_staging_otherwise() {
    let config = MasterConfig {
        run_task_resend_timeout: Duration::ZERO,
        ..MasterConfig::default()
    };
    let mut h = Harness::with(config, RegistryState::default());
    let slave = h.register_slave(Duration::ZERO, S1, BIG);
    let framework = h.register_framework(Duration::ZERO, F1, 60.0);
    let offers = h.allocate(secs(0.01));
    h.launch(
        secs(0.1),
        &framework,
        F1,
        &[&offers[0].id],
        vec![task("t1", &slave, "cpus:1")],
    );
    h.take();
    for at in [2.0, 4.0, 6.0, 8.0, 10.0, 12.0] {
        h.heartbeat(secs(at), S1, &slave);
        h.core.handle_tick(secs(at));
        h.flush();
        assert!(run_tasks(&mut h).is_empty());
    }
    // With resends on, a task killed with its framework stops being resent.
    let (mut h, slave, framework, offer) = offered();
    h.launch(
        secs(0.1),
        &framework,
        F1,
        &[&offer.id],
        vec![task("t1", &slave, "cpus:1")],
    );
    h.core.handle_unregister_framework(
        secs(0.2),
        &upid(F1),
        UnregisterFrameworkMessage {
            framework_id: framework,
        },
    );
    h.flush();
    h.take();
    for at in [2.0, 4.0, 6.0, 8.0, 10.0, 12.0] {
        h.heartbeat(secs(at), S1, &slave);
        h.core.handle_tick(secs(at));
        h.flush();
        assert!(run_tasks(&mut h).is_empty());
    }
}

#[test]
fn offers_outstanding_past_the_offer_timeout_are_rescinded_and_offered_again() {
    let config = MasterConfig {
        offer_timeout: Some(Duration::from_secs(30)),
        ..MasterConfig::default()
    };
    let mut h = Harness::with(config, RegistryState::default());
    let slave = h.register_slave(Duration::ZERO, S1, BIG);
    let framework = h.register_framework(Duration::ZERO, F1, 60.0);
    let offers = h.allocate(secs(0.01));
    assert_eq!(offers.len(), 1);
    // The framework never answers (its decline was lost).
    for at in [10.0, 20.0, 29.9] {
        h.heartbeat(secs(at), S1, &slave);
        h.core.handle_tick(secs(at));
        h.flush();
        assert_eq!(h.core.offers().len(), 1, "kept within the timeout");
    }
    assert!(h.allocate(secs(29.95)).is_empty());
    h.heartbeat(secs(30.1), S1, &slave);
    h.core.handle_tick(secs(30.1));
    h.flush();
    assert!(h.core.offers().is_empty());
    assert_eq!(h.core.counters().offers_expired, 1);
    assert!(h.take().iter().any(|(to, m)| *to == upid(F1)
        && matches!(m, Outgoing::RescindResourceOffer(r) if r.offer_id == offers[0].id)));
    // Its resources are free again, without a filter.
    let again = h.allocate(secs(30.2));
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].resources, offers[0].resources);
    assert_eq!(again[0].framework_id, framework);
    // A used offer does not expire later.
    h.launch(
        secs(31.0),
        &framework,
        F1,
        &[&again[0].id],
        vec![task("t1", &slave, "cpus:1")],
    );
    h.take();
    h.heartbeat(secs(61.0), S1, &slave);
    h.core.handle_tick(secs(61.0));
    h.flush();
    assert_eq!(h.core.counters().offers_expired, 1);
}

#[test]
fn without_an_offer_timeout_offers_are_held() {
    let (mut h, slave, _framework, _offer) = offered();
    for at in [100.0, 1000.0, 5000.0] {
        h.heartbeat(secs(at), S1, &slave);
        h.core.handle_tick(secs(at));
        h.flush();
    }
    assert_eq!(h.core.offers().len(), 1);
    assert_eq!(h.core.counters().offers_expired, 0);
}

#[test]
fn a_recovered_slave_that_does_not_reregister_in_time_becomes_unreachable() {
    let mut h = Harness::new();
    let gone = h.register_slave(Duration::ZERO, S1, BIG);
    let back = h.register_slave(Duration::ZERO, S2, BIG);
    let registry = h.registry.clone();
    let mut h = Harness::with(MasterConfig::default(), registry);
    h.core.handle_tick(secs(50.0));
    h.reregister_slave(secs(60.0), S2, &back, vec![], vec![]);
    // Mesos' default --agent_reregister_timeout: 10 minutes from the first tick.
    for at in [100.0, 600.0, 649.0] {
        h.heartbeat(secs(at), S2, &back);
        h.core.handle_tick(secs(at));
        h.flush();
        assert_eq!(h.core.slaves()[&gone].status, SlaveStatus::Recovered);
    }
    h.heartbeat(secs(650.0), S2, &back);
    h.core.handle_tick(secs(650.0));
    h.flush();
    assert_eq!(h.core.slaves()[&gone].status, SlaveStatus::Unreachable);
    assert!(h.registry.slaves[&gone].unreachable);
    assert!(!h.registry.slaves[&back].unreachable);
    assert_eq!(h.core.slaves()[&back].status, SlaveStatus::Connected);
    assert_eq!(h.core.counters().slaves_reregister_timed_out, 1);
    // If it comes back after all, it is asked to re-register.
    h.take();
    h.heartbeat(secs(700.0), S1, &gone);
    assert!(matches!(
        &h.take()[..],
        [(_, Outgoing::ReregisterRequest(_))]
    ));
}

/// A slave restarted with less than its running tasks use (an operator shrank `--resources`)
/// re-registers with them: they are all accounted as used, whatever they sum to, and nothing
/// they use is offered until enough of them end (Mesos' accounting of a re-registering
/// agent's tasks).
#[test]
fn a_slave_reregistering_with_more_tasks_than_resources_offers_nothing_they_use() {
    let (mut h, slave, framework) = running();
    let t1 = h.core.tasks()[&(framework.clone(), TaskId::new("t1"))]
        .info
        .clone();
    let reported = |id: &str, resources: &str| SlaveTask {
        framework_id: framework.clone(),
        task: task(id, &slave, resources),
        state: TaskState::Running,
    };
    // t1 (cpus:1;mem:512;ports:[31000-31000]) and t2, t3 unknown to the master so far: 2.5
    // cpus on 1, 1 GB of 1 GB, and port 31020 outside the slave's ports.
    h.reregister_slave_with(
        secs(1.0),
        S1,
        &slave,
        "cpus:1;mem:1024;disk:1000;ports:[31000-31009]",
        vec![
            SlaveTask {
                framework_id: framework.clone(),
                task: t1,
                state: TaskState::Running,
            },
            reported("t2", "cpus:1;mem:256;ports:[31001-31001]"),
            reported("t3", "cpus:0.5;mem:256;ports:[31020-31020]"),
        ],
        vec![(framework.clone(), upid(F1))],
    );
    h.take();
    assert_eq!(h.core.tasks().len(), 3);
    assert!(h.core.tasks().values().all(|t| t.reported_by_slave));
    assert_eq!(h.core.counters().slave_reregistrations_overcommitted, 1);
    assert!(h.core.allocator().is_overcommitted(&slave));
    let used = h.core.slave_used(&h.core.slaves()[&slave]);
    assert_eq!((used.cpus(), used.mem_mb()), (2.5, 1024.0));
    // Every cpu and every MB is in use: only the disk and the free ports are left.
    let available = h.core.allocator().slave_available(&slave).unwrap().clone();
    assert_eq!(
        available,
        Resources::parse("disk:1000;ports:[31002-31009]").unwrap()
    );
    let offers = h.allocate(secs(2.0));
    assert!(
        offers
            .iter()
            .all(|o| o.resources.cpus() == 0.0 && o.resources.mem_mb() == 0.0),
        "{offers:?}"
    );
    // t2 ends: 1.5 cpus on 1 are still used, none comes back; its memory and port do.
    for o in &offers {
        h.decline_offers(secs(2.5), F1, &framework, vec![o.id.clone()], 0.0);
    }
    h.status_update(
        secs(3.0),
        S1,
        &framework,
        slave_status("t2", &slave, TaskState::Finished, 2),
    );
    let available = h.core.allocator().slave_available(&slave).unwrap().clone();
    assert_eq!(
        available,
        Resources::parse("mem:256;disk:1000;ports:[31001-31009]").unwrap()
    );
    // t3 ends: 1 cpu of 1 used, still none free; its port is not the slave's and stays out.
    h.status_update(
        secs(4.0),
        S1,
        &framework,
        slave_status("t3", &slave, TaskState::Finished, 3),
    );
    let available = h.core.allocator().slave_available(&slave).unwrap().clone();
    assert_eq!(
        available,
        Resources::parse("mem:512;disk:1000;ports:[31001-31009]").unwrap()
    );
    // t1 ends: the whole slave is free again, and offered.
    h.status_update(
        secs(5.0),
        S1,
        &framework,
        slave_status("t1", &slave, TaskState::Finished, 4),
    );
    let offers = h.allocate(secs(6.0));
    assert_eq!(
        offers
            .iter()
            .map(|o| o.resources.clone())
            .collect::<Vec<_>>(),
        vec![Resources::parse("cpus:1;mem:1024;disk:1000;ports:[31000-31009]").unwrap()]
    );
}

/// Over-commit is impossible across a master failover too: a new master knows none of the
/// tasks, and a slave restarted with less than they use re-registers with all of them.
#[test]
fn after_a_master_failover_an_overcommitted_slave_is_accounted_the_same() {
    let (h, slave, framework) = running();
    let t1 = h.core.tasks()[&(framework.clone(), TaskId::new("t1"))]
        .info
        .clone();
    let registry = h.registry.clone();
    let mut h = Harness::with(MasterConfig::default(), registry);
    h.core.handle_reregister_framework(
        secs(1.0),
        &upid(F1),
        ReregisterFrameworkMessage {
            framework: {
                let mut info = FrameworkInfo::new(F1);
                info.id = Some(framework.clone());
                info.failover_timeout_secs = 60.0;
                info
            },
            failover: false,
            fencing: None,
        },
    );
    h.flush();
    h.reregister_slave_with(
        secs(1.1),
        S1,
        &slave,
        "cpus:0.5;mem:256;ports:[31000-31009]",
        vec![SlaveTask {
            framework_id: framework.clone(),
            task: t1,
            state: TaskState::Running,
        }],
        vec![(framework.clone(), upid(F1))],
    );
    h.take();
    assert_eq!(h.core.counters().slave_reregistrations_overcommitted, 1);
    // 1 cpu and 512 MB used of 0.5 and 256: only the free ports are left, and no framework
    // wants a slave with no cpus and no memory (below the minimum allocatable).
    assert_eq!(
        h.core.allocator().slave_available(&slave),
        Some(&Resources::parse("ports:[31001-31009]").unwrap())
    );
    assert!(h.allocate(secs(2.0)).is_empty());
}

/// A launch the slave never confirmed is kept when its slave re-registers only as far as the
/// tasks it reports leave room: the master never over-commits a slave with its own launches.
#[test]
fn reregistering_with_less_room_drops_staging_tasks_that_no_longer_fit() {
    let (mut h, slave, framework, offer) = offered();
    h.launch(
        secs(0.1),
        &framework,
        F1,
        &[&offer.id],
        vec![
            task("t1", &slave, "cpus:1;mem:512;ports:[31000-31000]"),
            task("t2", &slave, "cpus:1;mem:512;ports:[31001-31001]"),
            task("t3", &slave, "cpus:1;mem:512;ports:[31002-31002]"),
        ],
    );
    h.take();
    // Only t1 reached the slave, which restarts with 2 cpus: t2 still fits beside t1 and is
    // kept (and sent again); t3 does not.
    h.reregister_slave_with(
        secs(1.0),
        S1,
        &slave,
        "cpus:2;mem:4096;disk:1000;ports:[31000-31009]",
        vec![SlaveTask {
            framework_id: framework.clone(),
            task: task("t1", &slave, "cpus:1;mem:512;ports:[31000-31000]"),
            state: TaskState::Running,
        }],
        vec![(framework.clone(), upid(F1))],
    );
    let sent = h.take();
    let dropped: Vec<&TaskStatus> = sent
        .iter()
        .filter_map(|(_, m)| match m {
            Outgoing::StatusUpdate(u) if u.status.state == TaskState::Dropped => Some(&u.status),
            _ => None,
        })
        .collect();
    assert_eq!(dropped.len(), 1, "{sent:?}");
    assert_eq!(dropped[0].task_id.as_str(), "t3");
    assert_eq!(dropped[0].reason, Some(Reason::SlaveRestarted));
    assert!(sent.iter().any(|(to, m)| *to == upid(S1)
        && matches!(m, Outgoing::KillTask(k) if k.task_id.as_str() == "t3")));
    assert_eq!(h.core.counters().staging_tasks_dropped, 1);
    assert_eq!(h.core.counters().slave_reregistrations_overcommitted, 0);
    let t2 = (framework.clone(), TaskId::new("t2"));
    assert_eq!(h.core.tasks()[&t2].state, TaskState::Staging);
    assert!(!h.core.tasks()[&t2].reported_by_slave);
    assert!(!h
        .core
        .tasks()
        .contains_key(&(framework.clone(), TaskId::new("t3"))));
    // Reconciliation answers its end.
    h.core.handle_reconcile_tasks(
        secs(1.2),
        &upid(F1),
        ReconcileTasksMessage {
            framework_id: framework.clone(),
            tasks: vec![(TaskId::new("t3"), None)],
        },
    );
    h.flush();
    assert_eq!(h.statuses()[0].state, TaskState::Dropped);
    h.core.handle_tick(secs(1.5));
    h.flush();
    let resent = run_tasks(&mut h);
    assert_eq!(resent.len(), 1);
    assert_eq!(resent[0].task.task_id.as_str(), "t2");
    // The slave is full: 2 cpus of 2.
    assert!(h
        .allocate(secs(2.0))
        .iter()
        .all(|o| o.resources.cpus() == 0.0));
}

/// The invariant check states what must hold of every slave: no offer of resources in use,
/// and usage above the total only from what the slave itself reported.
#[test]
fn the_invariant_check_finds_offers_of_resources_in_use_and_launches_beyond_the_total() {
    let (mut h, slave, framework) = running();
    let offers = h.allocate(secs(6.0));
    assert_eq!(offers.len(), 1);
    let key = (framework.clone(), TaskId::new("t1"));
    // t1 made to use 2 cpus: with the 3 offered, the offer holds resources in use.
    h.core.tasks.get_mut(&key).unwrap().info.resources =
        Resources::parse("cpus:2;mem:512;ports:[31000-31000]").unwrap();
    let err = h.core.check_invariants().unwrap_err();
    assert!(err.contains("offers resources in use"), "{err}");
    // Reported by the slave, a task may use more than the total, but still nothing it uses
    // may be offered.
    h.core.tasks.get_mut(&key).unwrap().reported_by_slave = true;
    let err = h.core.check_invariants().unwrap_err();
    assert!(err.contains("offers resources in use"), "{err}");
    h.core.tasks.get_mut(&key).unwrap().info.resources =
        Resources::parse("cpus:1;mem:512;ports:[31000-31000]").unwrap();
    h.decline_offers(secs(6.5), F1, &framework, vec![offers[0].id.clone()], 0.0);
    h.core.tasks.get_mut(&key).unwrap().info.resources =
        Resources::parse("cpus:8;mem:512;ports:[31000-31000]").unwrap();
    h.core.check_invariants().unwrap();
    // Launched by the master, it may not.
    h.core.tasks.get_mut(&key).unwrap().reported_by_slave = false;
    let err = h.core.check_invariants().unwrap_err();
    assert!(err.contains("over-committed by the master"), "{err}");
    // Nor may two of its launches share a port.
    h.core.tasks.get_mut(&key).unwrap().info.resources =
        Resources::parse("cpus:1;ports:[31000-31000]").unwrap();
    let mut t2 = h.core.tasks[&key].clone();
    t2.info.task_id = TaskId::new("t2");
    let key2 = (framework.clone(), TaskId::new("t2"));
    h.core.tasks.insert(key2.clone(), t2);
    h.core
        .slaves
        .get_mut(&slave)
        .unwrap()
        .tasks
        .insert(key2.clone());
    h.core
        .frameworks
        .get_mut(&framework)
        .unwrap()
        .tasks
        .insert(key2.1.clone());
    let err = h.core.check_invariants().unwrap_err();
    assert!(err.contains("over-committed by the master"), "{err}");
}

/// A re-registration the allocator has no room for (too many unregistered frameworks holding
/// resources) is refused before anything changes: the slave keeps its books, and nothing it
/// reported is offered as free.
#[test]
fn a_reregistration_without_room_in_the_allocator_is_refused_and_changes_nothing() {
    let (mut h, slave, framework) = running();
    let before = h.core.allocator().slave_available(&slave).cloned();
    let tasks: Vec<SlaveTask> = (0..=crate::limits::UNKNOWN_FRAMEWORKS_MAX)
        .map(|i| SlaveTask {
            framework_id: FrameworkId::new(format!("stranger-{i}")),
            task: task(&format!("x{i}"), &slave, "cpus:0.001"),
            state: TaskState::Running,
        })
        .collect();
    h.reregister_slave_with(
        secs(1.0),
        S1,
        &slave,
        "cpus:1;mem:64",
        tasks,
        vec![(framework.clone(), upid(F1))],
    );
    assert!(h.take().is_empty());
    assert_eq!(h.core.counters().dropped_messages, 1);
    assert_eq!(h.core.counters().slave_reregistrations, 0);
    assert_eq!(h.core.slaves()[&slave].status, SlaveStatus::Connected);
    assert_eq!(h.core.tasks().len(), 1);
    assert_eq!(h.core.allocator().slave_available(&slave).cloned(), before);
}

#[test]
fn a_failover_timeout_that_is_not_a_finite_number_is_refused_and_never_persisted() {
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -1.0] {
        let mut h = Harness::new();
        let mut info = FrameworkInfo::new(F1);
        info.failover_timeout_secs = bad;
        h.core.handle_register_framework(
            secs(0.0),
            &upid(F1),
            RegisterFrameworkMessage {
                framework: info.clone(),
                fencing: None,
            },
        );
        h.flush();
        match &h.take()[..] {
            [(to, Outgoing::FrameworkError(e))] => {
                assert_eq!(*to, upid(F1));
                assert!(e.message.contains("failover_timeout"), "{}", e.message);
            }
            other => panic!("{bad}: expected one FrameworkError, got {other:?}"),
        }
        assert!(h.registry.frameworks.is_empty(), "{bad}: nothing persisted");
        assert!(h.core.frameworks().is_empty());
        // A re-registration carrying it is refused the same way.
        info.id = Some(FrameworkId::new("run-0000"));
        h.core.handle_reregister_framework(
            secs(0.1),
            &upid(F1),
            ReregisterFrameworkMessage {
                framework: info,
                failover: true,
                fencing: None,
            },
        );
        h.flush();
        assert!(matches!(
            &h.take()[..],
            [(_, Outgoing::FrameworkError(e))] if e.message.contains("failover_timeout")
        ));
        assert!(h.registry.frameworks.is_empty(), "{bad}: nothing persisted");
    }
}

#[test]
fn a_registry_holding_a_nan_failover_timeout_recovers_as_no_timeout() {
    // A registry written before registrations were checked.
    let (h, framework) = registered_with_failover(30.0);
    let mut registry = h.registry.clone();
    registry
        .frameworks
        .get_mut(&framework)
        .unwrap()
        .info
        .failover_timeout_secs = f64::NAN;
    let mut h = Harness::with(MasterConfig::default(), registry);
    h.core.handle_tick(secs(100.0));
    h.flush();
    h.core.handle_tick(secs(100.5));
    h.flush();
    assert!(
        !h.core.frameworks().contains_key(&framework),
        "treated as no failover timeout: removed at once"
    );
}

#[test]
fn task_durations_that_are_not_finite_seconds_in_range_make_the_launch_invalid() {
    type SetField = fn(&mut TaskInfo, f64);
    let fields: [(&str, SetField); 5] = [
        ("health_check.delay_secs", |t, v| {
            t.health_check.as_mut().unwrap().delay_secs = v
        }),
        ("health_check.interval_secs", |t, v| {
            t.health_check.as_mut().unwrap().interval_secs = v
        }),
        ("health_check.timeout_secs", |t, v| {
            t.health_check.as_mut().unwrap().timeout_secs = v
        }),
        ("health_check.grace_period_secs", |t, v| {
            t.health_check.as_mut().unwrap().grace_period_secs = v
        }),
        ("kill_grace_period_secs", |t, v| {
            t.kill_grace_period_secs = Some(v)
        }),
    ];
    for (field, set) in fields {
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -1.0, 1e12] {
            let (mut h, slave, framework, offer) = offered();
            let mut t = task("t1", &slave, "cpus:1");
            t.health_check = Some(HealthCheck {
                kind: HealthCheckKind::Tcp { port: 31000 },
                delay_secs: 0.0,
                interval_secs: 10.0,
                timeout_secs: 5.0,
                consecutive_failures: 3,
                grace_period_secs: 30.0,
            });
            set(&mut t, bad);
            h.launch(secs(0.1), &framework, F1, &[&offer.id], vec![t]);
            let statuses = h.statuses();
            let message = statuses[0].message.clone().unwrap_or_default();
            assert!(message.contains(field), "{field}={bad}: {message}");
            expect_errors(&mut h, &[]);
            assert_eq!(statuses[0].reason, Some(Reason::TaskInvalid));
            assert_eq!(statuses[0].state, TaskState::Error);
        }
    }
    // In range: launched.
    let (mut h, slave, framework, offer) = offered();
    let mut t = task("t1", &slave, "cpus:1");
    t.kill_grace_period_secs = Some(0.0);
    h.launch(secs(0.1), &framework, F1, &[&offer.id], vec![t]);
    assert!(h.statuses().is_empty());
    assert!(h
        .sent
        .iter()
        .any(|(_, m)| matches!(m, Outgoing::RunTask(_))));
}

#[test]
fn a_slave_whose_attributes_hold_a_non_finite_number_is_refused_and_never_persisted() {
    use crate::resources::AttributeValue;
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        // Only the wire can carry such a value (the text form parses it as text).
        let wire = postcard::to_stdvec(&BTreeMap::from([(
            "level".to_string(),
            AttributeValue::Scalar(bad),
        )]))
        .unwrap();
        let attributes: Attributes = postcard::from_bytes(&wire).unwrap();
        let mut h = Harness::new();
        let mut info = slave_info(S1, BIG);
        info.attributes = attributes.clone();
        h.core.handle_register_slave(
            secs(0.0),
            &upid(S1),
            RegisterSlaveMessage {
                slave: info.clone(),
            },
        );
        h.flush();
        assert!(h.take().is_empty(), "{bad}: no reply");
        assert!(h.registry.slaves.is_empty(), "{bad}: nothing persisted");
        assert!(h.core.slaves().is_empty());
        assert_eq!(h.core.counters().dropped_messages, 1);
        // A re-registration carrying it is refused the same way.
        h.core.handle_reregister_slave(
            secs(0.1),
            &upid(S1),
            ReregisterSlaveMessage {
                slave_id: SlaveId::new("run-S0"),
                slave: info,
                tasks: vec![],
                frameworks: vec![],
            },
        );
        h.flush();
        assert!(h.registry.slaves.is_empty(), "{bad}: nothing persisted");
        assert_eq!(h.core.counters().dropped_messages, 2);
    }
}

/// ACLs of a cluster where principal `marathon` may register in role `web` only and run tasks
/// as `nobody` only; everything else is denied.
fn strict_acls() -> MasterConfig {
    let acls = plateau_security::Acls::from_json(
        r#"{
            "permissive": false,
            "register_frameworks": [
                {"principals": {"values": ["marathon"]}, "roles": {"values": ["web"]}}
            ],
            "run_tasks": [
                {"principals": {"values": ["marathon"]}, "users": {"values": ["nobody"]}}
            ],
            "teardown_frameworks": [
                {"principals": {"values": ["ops"]}, "framework_principals": {"values": ["marathon"]}}
            ]
        }"#,
    )
    .unwrap();
    MasterConfig {
        acls: std::sync::Arc::new(acls),
        ..MasterConfig::default()
    }
}

fn register_as(h: &mut Harness, pid: &str, principal: Option<&str>, role: &str) -> Outgoing {
    let mut info = FrameworkInfo::new(pid);
    info.principal = principal.map(str::to_string);
    info.role = role.to_string();
    h.core.handle_register_framework(
        Duration::ZERO,
        &upid(pid),
        RegisterFrameworkMessage {
            framework: info,
            fencing: None,
        },
    );
    h.flush();
    let mut sent = h.take();
    assert_eq!(sent.len(), 1, "{sent:?}");
    sent.remove(0).1
}

#[test]
fn the_acls_decide_who_registers_frameworks_in_which_roles() {
    let mut h = Harness::with(strict_acls(), RegistryState::default());
    for (principal, role) in [
        (None, "web"),
        (Some("intruder"), "web"),
        (Some("marathon"), "*"),
    ] {
        match register_as(&mut h, F1, principal, role) {
            Outgoing::FrameworkError(e) => {
                assert!(e.message.contains("register_frameworks"), "{}", e.message)
            }
            other => panic!("{principal:?} in {role}: registered: {other:?}"),
        }
    }
    assert!(
        h.registry.frameworks.is_empty(),
        "nothing refused is persisted"
    );
    assert!(matches!(
        register_as(&mut h, F1, Some("marathon"), "web"),
        Outgoing::FrameworkRegistered(_)
    ));
}

/// Under [`strict_acls`]: a slave, and `marathon` registered in `web` with its one offer.
fn marathon_with_an_offer() -> (Harness, SlaveId, FrameworkId, Vec<Offer>) {
    let mut h = Harness::with(strict_acls(), RegistryState::default());
    let slave = h.register_slave(Duration::ZERO, S1, BIG);
    let Outgoing::FrameworkRegistered(registered) =
        register_as(&mut h, F1, Some("marathon"), "web")
    else {
        panic!("registered")
    };
    let offers = h.allocate(secs(0.01));
    (h, slave, registered.framework_id, offers)
}

#[test]
fn the_acls_decide_which_users_a_framework_runs_tasks_as() {
    let (mut h, slave, framework, offers) = marathon_with_an_offer();
    assert_eq!(offers.len(), 1);
    let as_user = |id: &str, user: Option<&str>| {
        let mut t = task(id, &slave, "cpus:1;mem:128");
        t.command.user = user.map(str::to_string);
        t
    };
    h.launch(
        secs(0.1),
        &framework,
        F1,
        &[&offers[0].id],
        vec![
            as_user("as-root", Some("root")),
            as_user("as-nobody", Some("nobody")),
            // No user: the slave's --default-task-user, which the operator chose.
            as_user("as-default", None),
        ],
    );
    expect_errors_with(&mut h, &[("as-root", Reason::TaskUnauthorized)], true);
    let launched: Vec<String> = h
        .sent
        .iter()
        .filter_map(|(_, m)| match m {
            Outgoing::RunTask(r) => Some(r.task.task_id.as_str().to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(launched, ["as-nobody", "as-default"]);
}

#[test]
fn the_acls_decide_who_tears_down_which_framework_and_an_unknown_id_is_refused_alike() {
    let (mut h, slave, framework, offers) = marathon_with_an_offer();
    h.launch(
        secs(0.1),
        &framework,
        F1,
        &[&offers[0].id],
        vec![task("t1", &slave, "cpus:1;mem:128")],
    );
    h.flush();
    h.take();
    let unknown = FrameworkId::new("no-such-framework");
    for principal in [None, Some("dev")] {
        for id in [&framework, &unknown] {
            assert_eq!(
                h.core.teardown_framework(secs(1.0), principal, id),
                Err(crate::core::TeardownRefused::Unauthorized),
                "{principal:?} on {id}: refused, whether the framework exists or not"
            );
        }
    }
    assert!(h.core.frameworks().contains_key(&framework));
    assert_eq!(
        h.core.teardown_framework(secs(1.0), Some("ops"), &unknown),
        Err(crate::core::TeardownRefused::Unauthorized),
        "ops may tear down marathon's frameworks only, and an unknown one has no principal"
    );
    assert_eq!(
        h.core
            .teardown_framework(secs(1.0), Some("ops"), &framework),
        Ok(())
    );
    h.flush();
    let sent = h.take();
    assert!(
        sent.iter().any(|(to, m)| *to == upid(F1)
            && matches!(m, Outgoing::FrameworkError(e) if e.message.contains("teardown"))),
        "the scheduler is told: {sent:?}"
    );
    assert!(
        sent.iter().any(
            |(_, m)| matches!(m, Outgoing::ShutdownFramework(s) if s.framework_id == framework)
        ),
        "its slave shuts its tasks down: {sent:?}"
    );
    assert!(!h.core.frameworks().contains_key(&framework));
    assert!(
        !h.registry.frameworks.contains_key(&framework),
        "removed from the registry"
    );
}

mod maintenance;
