//! Fuzz targets of the master's wire types: every registered message decoded from arbitrary
//! bytes and from damaged valid encodings, as a receiving node decodes a frame's body.

use std::collections::BTreeMap;

use plateau_runtime::fuzzing::{check_message_decoding, fuzz_cases, mutate};
use plateau_runtime::Message;
use proptest::prelude::*;

use super::*;
use crate::coord::{
    ClientId, CoordOp, CoordRequestMessage, CoordResponseMessage, KeySelector,
    LeaseKeepAliveMessage, LeaseKeepAliveResponseMessage, UnwatchMessage, WatchEndedMessage,
    WatchEventsMessage, WatchMessage,
};

/// Decodes `bytes` as each of the listed types (see [`check_message_decoding`]).
macro_rules! check_all {
    ($bytes:expr; $($ty:ty),* $(,)?) => {{
        let mut failures = Vec::new();
        $(
            if let Err(e) = check_message_decoding::<$ty>($bytes) {
                failures.push(e);
            }
        )*
        failures
    }};
}

/// Every wire type of the master (master, slave and framework protocol; coordination).
pub(crate) fn check_every_message(bytes: &[u8]) -> Vec<String> {
    check_all!(bytes;
        LeaderQueryMessage, NewMasterDetectedMessage, JoinMastersMessage, RegisterSlaveMessage,
        ReregisterSlaveMessage, SlaveRegisteredMessage, SlaveReregisteredMessage,
        SlaveHeartbeatMessage, ReregisterRequestMessage, UnregisterSlaveMessage, RunTaskMessage,
        KillTaskMessage, StatusUpdateMessage, StatusUpdateAcknowledgementMessage,
        ShutdownFrameworkMessage, RegisterFrameworkMessage, ReregisterFrameworkMessage,
        FrameworkRegisteredMessage, FrameworkReregisteredMessage, UnregisterFrameworkMessage,
        ResourceOffersMessage, RescindResourceOfferMessage, LaunchTasksMessage,
        DeclineOffersMessage, ReconcileTasksMessage, ReviveOffersMessage, SuppressOffersMessage,
        LostSlaveMessage, FrameworkErrorMessage, InverseOffersMessage,
        RescindInverseOfferMessage, RespondInverseOffersMessage,
        CoordRequestMessage, CoordResponseMessage, LeaseKeepAliveMessage,
        LeaseKeepAliveResponseMessage, WatchMessage, UnwatchMessage, WatchEventsMessage,
        WatchEndedMessage,
    )
}

pub(crate) fn upid(text: &str) -> Upid {
    text.parse().expect("valid upid")
}

pub(crate) fn sample_slave_info() -> SlaveInfo {
    SlaveInfo {
        hostname: "10.0.0.2".into(),
        port: 5051,
        resources: Resources::parse("cpus:4;mem:4096;disk:1000;ports:[31000-31010]").unwrap(),
        attributes: Attributes::parse("rack:r1;level:3").unwrap(),
    }
}

pub(crate) fn sample_task(slave_id: &SlaveId) -> TaskInfo {
    let mut command = CommandInfo::shell("sleep 100");
    command.environment.insert("A".into(), "b".into());
    TaskInfo {
        name: "t".into(),
        task_id: TaskId::new("t1"),
        slave_id: slave_id.clone(),
        resources: Resources::parse("cpus:0.5;mem:128;ports:[31000-31000]").unwrap(),
        command,
        health_check: Some(HealthCheck {
            kind: HealthCheckKind::Http {
                port: 31000,
                path: "/health".into(),
            },
            delay_secs: 1.0,
            interval_secs: 2.0,
            timeout_secs: 1.0,
            consecutive_failures: 3,
            grace_period_secs: 10.0,
        }),
        labels: BTreeMap::from([("k".into(), "v".into())]),
        kill_grace_period_secs: Some(2.5),
    }
}

pub(crate) fn sample_framework_info(id: Option<FrameworkId>) -> FrameworkInfo {
    let mut info = FrameworkInfo::new("fw");
    info.id = id;
    info.failover_timeout_secs = 60.0;
    info.principal = Some("p".into());
    info
}

pub(crate) fn sample_status(task_id: &TaskId, slave_id: &SlaveId) -> TaskStatus {
    TaskStatus {
        task_id: task_id.clone(),
        state: TaskState::Running,
        message: Some("ok".into()),
        source: StatusSource::Executor,
        reason: Some(Reason::TaskHealthCheckStatusUpdated),
        slave_id: Some(slave_id.clone()),
        healthy: Some(true),
        timestamp: 1_000_000.5,
        uuid: Some([7; 16]),
    }
}

/// One valid encoding of every master wire type, with its name.
fn samples() -> Vec<(&'static str, Vec<u8>)> {
    fn one<M: Message>(m: M) -> (&'static str, Vec<u8>) {
        (M::NAME, postcard::to_stdvec(&m).unwrap())
    }
    let s = SlaveId::new("run-S1");
    let f = FrameworkId::new("run-F1");
    let o = OfferId::new("run-O1");
    let t = TaskId::new("t1");
    let offer = Offer {
        id: o.clone(),
        framework_id: f.clone(),
        slave_id: s.clone(),
        hostname: "h".into(),
        resources: sample_slave_info().resources,
        attributes: sample_slave_info().attributes,
        unavailability: Some(Unavailability {
            start_nanos: 1,
            duration_nanos: Some(2),
        }),
    };
    vec![
        one(LeaderQueryMessage {}),
        one(NewMasterDetectedMessage {
            leader: Some(upid("master@10.0.0.1:5050")),
            term: 3,
        }),
        one(JoinMastersMessage {}),
        one(RegisterSlaveMessage {
            slave: sample_slave_info(),
        }),
        one(ReregisterSlaveMessage {
            slave_id: s.clone(),
            slave: sample_slave_info(),
            tasks: vec![SlaveTask {
                framework_id: f.clone(),
                task: sample_task(&s),
                state: TaskState::Running,
            }],
            frameworks: vec![(f.clone(), upid("fw@10.0.0.3:6000"))],
        }),
        one(SlaveRegisteredMessage {
            slave_id: s.clone(),
            heartbeat_interval_ms: 1000,
        }),
        one(SlaveReregisteredMessage {
            slave_id: s.clone(),
            heartbeat_interval_ms: 1000,
        }),
        one(SlaveHeartbeatMessage {
            slave_id: s.clone(),
        }),
        one(ReregisterRequestMessage {
            slave_id: s.clone(),
        }),
        one(UnregisterSlaveMessage {
            slave_id: s.clone(),
        }),
        one(RunTaskMessage {
            framework_id: f.clone(),
            framework: sample_framework_info(Some(f.clone())),
            framework_pid: upid("fw@10.0.0.3:6000"),
            task: sample_task(&s),
        }),
        one(KillTaskMessage {
            framework_id: f.clone(),
            task_id: t.clone(),
            fencing_epoch: Some(4),
        }),
        one(StatusUpdateMessage {
            framework_id: f.clone(),
            status: sample_status(&t, &s),
            slave_pid: Some(upid("slave(1)@10.0.0.2:5051")),
        }),
        one(StatusUpdateAcknowledgementMessage {
            slave_id: s.clone(),
            framework_id: f.clone(),
            task_id: t.clone(),
            uuid: [7; 16],
        }),
        one(ShutdownFrameworkMessage {
            framework_id: f.clone(),
        }),
        one(RegisterFrameworkMessage {
            framework: sample_framework_info(None),
            fencing: Some(FencingToken {
                key: "k".into(),
                epoch: 2,
            }),
        }),
        one(ReregisterFrameworkMessage {
            framework: sample_framework_info(Some(f.clone())),
            failover: true,
            fencing: None,
        }),
        one(FrameworkRegisteredMessage {
            framework_id: f.clone(),
            master: upid("master@10.0.0.1:5050"),
        }),
        one(FrameworkReregisteredMessage {
            framework_id: f.clone(),
            master: upid("master@10.0.0.1:5050"),
        }),
        one(UnregisterFrameworkMessage {
            framework_id: f.clone(),
        }),
        one(ResourceOffersMessage {
            offers: vec![offer],
        }),
        one(RescindResourceOfferMessage {
            offer_id: o.clone(),
        }),
        one(LaunchTasksMessage {
            framework_id: f.clone(),
            offer_ids: vec![o.clone()],
            tasks: vec![sample_task(&s)],
            filters: Filters::default(),
            fencing_epoch: None,
        }),
        one(DeclineOffersMessage {
            framework_id: f.clone(),
            offer_ids: vec![o.clone()],
            filters: Filters::default(),
        }),
        one(ReconcileTasksMessage {
            framework_id: f.clone(),
            tasks: vec![(t.clone(), Some(s.clone()))],
        }),
        one(ReviveOffersMessage {
            framework_id: f.clone(),
        }),
        one(SuppressOffersMessage {
            framework_id: f.clone(),
        }),
        one(LostSlaveMessage {
            slave_id: s.clone(),
        }),
        one(FrameworkErrorMessage {
            message: "no".into(),
        }),
        one(InverseOffersMessage {
            inverse_offers: vec![InverseOffer {
                id: o.clone(),
                framework_id: f.clone(),
                slave_id: s.clone(),
                hostname: "h".into(),
                unavailability: Unavailability {
                    start_nanos: 1,
                    duration_nanos: None,
                },
            }],
        }),
        one(RescindInverseOfferMessage {
            inverse_offer_id: o.clone(),
        }),
        one(RespondInverseOffersMessage {
            framework_id: f.clone(),
            inverse_offer_ids: vec![o.clone()],
            accept: true,
            filters: Filters::default(),
        }),
        one(CoordRequestMessage {
            request_id: 1,
            client: Some(ClientId(2)),
            first_unanswered: 1,
            op: CoordOp::GrantLease {
                ttl_ms: 3000,
                session: "s".into(),
            },
        }),
        one(LeaseKeepAliveMessage {
            lease: crate::coord::LeaseId(5),
        }),
        one(WatchMessage {
            watch_id: 1,
            selector: KeySelector::Prefix("/a".into()),
            start_revision: Some(3),
        }),
        one(UnwatchMessage { watch_id: 1 }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(fuzz_cases()))]

    /// Arbitrary bytes decoded as every master wire type: refused or decoded, never a panic,
    /// and what decodes encodes back stably.
    #[test]
    fn fuzz_master_messages_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..160)) {
        let failures = check_every_message(&bytes);
        prop_assert!(failures.is_empty(), "{:?}", failures);
    }

    /// Valid encodings of every type with a few edits, decoded as every type.
    #[test]
    fn fuzz_master_messages_mutated(which in any::<prop::sample::Index>(), edits in plateau_runtime::fuzzing::edits(1..6)) {
        let samples = samples();
        let (_, valid) = &samples[which.index(samples.len())];
        let damaged = mutate(valid, &edits);
        let failures = check_every_message(&damaged);
        prop_assert!(failures.is_empty(), "{:?}", failures);
    }
}

/// Each sample decodes as its own type (else the mutation target would start from garbage).
#[test]
fn fuzz_samples_are_valid() {
    for (name, bytes) in samples() {
        assert!(check_every_message(&bytes).is_empty(), "{name}");
    }
    assert!(samples().len() >= 30);
}
