//! Fuzz target of the master core: damaged protocol messages, decoded as a receiving master
//! decodes them, fed to a master that has a slave, a framework and an outstanding offer. The
//! core must never panic, its invariants must hold after every message, and a master
//! restarted from what it persisted must recover and run (a NaN failover timeout once made
//! every restart panic).

use plateau_runtime::fuzzing::{fuzz_cases, mutate, Edit};
use plateau_runtime::message::decode_body;
use plateau_runtime::Message;
use proptest::prelude::*;

use super::*;
use crate::messages::fuzz::{
    sample_framework_info, sample_slave_info, sample_status, sample_task, upid,
};

const MASTER: &str = "master@10.0.0.1:5050";
const SLAVE: &str = "slave(1)@10.0.0.2:5051";
const FRAMEWORK: &str = "fw@10.0.0.3:6000";

struct Fixture {
    core: MasterCore,
    registry: RegistryState,
    slave_id: SlaveId,
    framework_id: FrameworkId,
    offer_id: OfferId,
}

impl Fixture {
    fn new() -> Self {
        let mut fixture = Fixture {
            core: MasterCore::new(
                MasterConfig::default(),
                RegistryState::default(),
                "run".into(),
                upid(MASTER),
                1_000_000.0,
            ),
            registry: RegistryState::default(),
            slave_id: SlaveId::default(),
            framework_id: FrameworkId::default(),
            offer_id: OfferId::default(),
        };
        let now = Duration::from_secs(1);
        fixture.core.handle_register_slave(
            now,
            &upid(SLAVE),
            RegisterSlaveMessage {
                slave: sample_slave_info(),
            },
        );
        fixture.core.handle_register_framework(
            now,
            &upid(FRAMEWORK),
            RegisterFrameworkMessage {
                framework: sample_framework_info(None),
                fencing: None,
            },
        );
        fixture.core.handle_allocation(now);
        for action in fixture.flush() {
            if let Action::Send { message, .. } = action {
                match message {
                    Outgoing::SlaveRegistered(m) => fixture.slave_id = m.slave_id,
                    Outgoing::FrameworkRegistered(m) => fixture.framework_id = m.framework_id,
                    Outgoing::ResourceOffers(m) => fixture.offer_id = m.offers[0].id.clone(),
                    _ => {}
                }
            }
        }
        assert!(
            !fixture.offer_id.as_str().is_empty(),
            "the fixture has an offer"
        );
        fixture
    }

    /// Applies persists to the registry; returns the actions.
    fn flush(&mut self) -> Vec<Action> {
        let actions = self.core.drain_actions();
        for action in &actions {
            if let Action::Persist(op) = action {
                self.registry.apply(op);
            }
        }
        actions
    }

    /// Valid encodings of the messages a master receives, each with the sender it comes from.
    fn inputs(&self) -> Vec<(&'static str, Vec<u8>, &'static str)> {
        fn one<M: Message>(m: M, from: &'static str) -> (&'static str, Vec<u8>, &'static str) {
            (M::NAME, postcard::to_stdvec(&m).unwrap(), from)
        }
        let (s, f, o) = (&self.slave_id, &self.framework_id, &self.offer_id);
        let mut task = sample_task(s);
        task.task_id = TaskId::new("t1");
        vec![
            one(
                RegisterSlaveMessage {
                    slave: sample_slave_info(),
                },
                "slave(2)@10.0.0.4:5051",
            ),
            one(
                ReregisterSlaveMessage {
                    slave_id: s.clone(),
                    slave: sample_slave_info(),
                    tasks: vec![SlaveTask {
                        framework_id: f.clone(),
                        task: task.clone(),
                        state: TaskState::Running,
                    }],
                    frameworks: vec![(f.clone(), upid(FRAMEWORK))],
                },
                SLAVE,
            ),
            one(
                SlaveHeartbeatMessage {
                    slave_id: s.clone(),
                },
                SLAVE,
            ),
            one(
                UnregisterSlaveMessage {
                    slave_id: s.clone(),
                },
                SLAVE,
            ),
            one(
                StatusUpdateMessage {
                    framework_id: f.clone(),
                    status: sample_status(&task.task_id, s),
                    slave_pid: Some(upid(SLAVE)),
                },
                SLAVE,
            ),
            one(
                StatusUpdateAcknowledgementMessage {
                    slave_id: s.clone(),
                    framework_id: f.clone(),
                    task_id: task.task_id.clone(),
                    uuid: [7; 16],
                },
                FRAMEWORK,
            ),
            one(
                RegisterFrameworkMessage {
                    framework: sample_framework_info(None),
                    fencing: None,
                },
                "fw2@10.0.0.5:6000",
            ),
            one(
                ReregisterFrameworkMessage {
                    framework: sample_framework_info(Some(f.clone())),
                    failover: true,
                    fencing: None,
                },
                "fw@10.0.0.6:6000",
            ),
            one(
                UnregisterFrameworkMessage {
                    framework_id: f.clone(),
                },
                FRAMEWORK,
            ),
            one(
                LaunchTasksMessage {
                    framework_id: f.clone(),
                    offer_ids: vec![o.clone()],
                    tasks: vec![task.clone()],
                    filters: Filters::default(),
                    fencing_epoch: None,
                },
                FRAMEWORK,
            ),
            one(
                DeclineOffersMessage {
                    framework_id: f.clone(),
                    offer_ids: vec![o.clone()],
                    filters: Filters {
                        refuse_seconds: 3.0,
                    },
                },
                FRAMEWORK,
            ),
            one(
                KillTaskMessage {
                    framework_id: f.clone(),
                    task_id: task.task_id.clone(),
                    fencing_epoch: None,
                },
                FRAMEWORK,
            ),
            one(
                ReconcileTasksMessage {
                    framework_id: f.clone(),
                    tasks: vec![(task.task_id.clone(), Some(s.clone()))],
                },
                FRAMEWORK,
            ),
            one(
                ReviveOffersMessage {
                    framework_id: f.clone(),
                },
                FRAMEWORK,
            ),
            one(
                SuppressOffersMessage {
                    framework_id: f.clone(),
                },
                FRAMEWORK,
            ),
        ]
    }

    /// Decodes `bytes` as `name` and hands it to the core, as the master process does.
    fn deliver(&mut self, now: Duration, name: &str, bytes: &[u8], from: &Upid) {
        macro_rules! route {
            ($($ty:ty => $handler:ident),* $(,)?) => {
                match name {
                    $(n if n == <$ty>::NAME => {
                        if let Ok(msg) = decode_body::<$ty>(bytes) {
                            self.core.$handler(now, from, msg);
                        }
                    })*
                    other => panic!("no route for {other}"),
                }
            };
        }
        route! {
            RegisterSlaveMessage => handle_register_slave,
            ReregisterSlaveMessage => handle_reregister_slave,
            SlaveHeartbeatMessage => handle_slave_heartbeat,
            UnregisterSlaveMessage => handle_unregister_slave,
            StatusUpdateMessage => handle_status_update,
            StatusUpdateAcknowledgementMessage => handle_status_update_acknowledgement,
            RegisterFrameworkMessage => handle_register_framework,
            ReregisterFrameworkMessage => handle_reregister_framework,
            UnregisterFrameworkMessage => handle_unregister_framework,
            LaunchTasksMessage => handle_launch_tasks,
            DeclineOffersMessage => handle_decline_offers,
            KillTaskMessage => handle_kill_task,
            ReconcileTasksMessage => handle_reconcile_tasks,
            ReviveOffersMessage => handle_revive_offers,
            SuppressOffersMessage => handle_suppress_offers,
        }
    }
}

/// Runs `steps` (input index, edits) against a fresh fixture, then restarts the master from
/// its registry. Panics are the failure looked for; broken invariants are returned.
fn run(steps: &[(prop::sample::Index, Vec<Edit>)]) -> Result<(), String> {
    let mut fixture = Fixture::new();
    let inputs = fixture.inputs();
    let mut now = Duration::from_secs(2);
    for (which, edits) in steps {
        let (name, valid, from) = &inputs[which.index(inputs.len())];
        let damaged = mutate(valid, edits);
        fixture.deliver(now, name, &damaged, &upid(from));
        fixture.flush();
        fixture.core.check_invariants()?;
        now += Duration::from_millis(700);
        fixture.core.handle_tick(now);
        fixture.core.handle_allocation(now);
        fixture.flush();
        fixture.core.check_invariants()?;
    }
    // A master restarted on what was persisted.
    let mut restarted = MasterCore::new(
        MasterConfig::default(),
        fixture.registry.clone(),
        "run2".into(),
        upid(MASTER),
        2_000_000.0,
    );
    for step in 1..4u64 {
        let later = now + Duration::from_secs(step * 3600);
        restarted.handle_tick(later);
        restarted.handle_allocation(later);
        restarted.drain_actions();
        restarted.check_invariants()?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(fuzz_cases()))]

    /// Sequences of damaged protocol messages never panic the master, keep its invariants,
    /// and leave a registry a restarted master recovers from.
    #[test]
    fn fuzz_master_core_mutated_messages(steps in proptest::collection::vec((any::<prop::sample::Index>(), plateau_runtime::fuzzing::edits(0..5)), 1..6)) {
        if let Err(e) = run(&steps) {
            prop_assert!(false, "{}", e);
        }
    }
}
