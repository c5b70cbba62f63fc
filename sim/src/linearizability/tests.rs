//! Tests of the linearizability checker: hand-made histories, linearizable or not (several
//! that a naive check would pass), and histories made by applying operations one at a time
//! to the real [`CoordStore`] with overlapping invocation windows.

use std::collections::BTreeMap;

use plateau_master::coord::{CoordStore, Expect, FencingToken, KeyEntry, LeaseId, TxnOp};
use proptest::prelude::*;

use super::*;

// ---- a register, to test the search on its own ----------------------------------------------

/// A register of small numbers: `Some(v)` writes `v`, `None` reads.
struct Register;

impl Model for Register {
    type State = u8;
    type Input = Option<u8>;
    type Output = u8;
    fn init(&self) -> u8 {
        0
    }
    fn step(&self, state: &u8, input: &Option<u8>, output: Option<&u8>) -> Option<u8> {
        match (input, output) {
            (Some(v), _) => Some(*v),
            (None, None) => Some(*state),
            (None, Some(seen)) => (seen == state).then_some(*state),
        }
    }
}

fn reg(call: u64, ret: Option<u64>, input: Option<u8>, output: u8) -> Operation<Option<u8>, u8> {
    Operation {
        client: 0,
        call,
        input,
        result: ret.map(|at| Returned { at, output }),
    }
}

#[test]
fn register_histories() {
    // Empty.
    assert_eq!(
        check_operations(&Register, &[]).unwrap(),
        Outcome::Linearizable
    );
    // A read overlapping a write may see either value.
    for seen in [0, 1] {
        let h = [reg(0, Some(10), Some(1), 0), reg(5, Some(15), None, seen)];
        assert_eq!(
            check_operations(&Register, &h).unwrap(),
            Outcome::Linearizable
        );
    }
    // After the write returned, the old value is gone.
    let h = [reg(0, Some(10), Some(1), 0), reg(11, Some(15), None, 0)];
    assert!(matches!(
        check_operations(&Register, &h).unwrap(),
        Outcome::NotLinearizable { .. }
    ));
    // Equal times are concurrent.
    let h = [reg(0, Some(10), Some(1), 0), reg(10, Some(15), None, 0)];
    assert_eq!(
        check_operations(&Register, &h).unwrap(),
        Outcome::Linearizable
    );
    // A write whose answer never came may take effect late, or never.
    let h = [
        reg(0, None, Some(1), 0),
        reg(5, Some(6), None, 0),
        reg(7, Some(8), None, 1),
    ];
    assert_eq!(
        check_operations(&Register, &h).unwrap(),
        Outcome::Linearizable
    );
    let h = [reg(0, None, Some(1), 0), reg(50, Some(60), None, 0)];
    assert_eq!(
        check_operations(&Register, &h).unwrap(),
        Outcome::Linearizable
    );
    // ... but only once.
    let h = [
        reg(0, None, Some(1), 0),
        reg(5, Some(6), None, 1),
        reg(7, Some(8), None, 0),
    ];
    assert!(matches!(
        check_operations(&Register, &h).unwrap(),
        Outcome::NotLinearizable { .. }
    ));
}

#[test]
fn new_old_inversion_is_caught_though_each_read_alone_is_plausible() {
    // A naive check ("each read returns a value written before it ended, not overwritten
    // before it began") passes: both reads overlap the write. But once one read saw the new
    // value, a later read cannot see the old one.
    let h = [
        reg(0, Some(100), Some(1), 0),
        reg(10, Some(20), None, 1),
        reg(30, Some(40), None, 0),
    ];
    let Outcome::NotLinearizable { longest_prefix } = check_operations(&Register, &h).unwrap()
    else {
        panic!("expected a violation");
    };
    assert!(!longest_prefix.is_empty());
}

#[test]
fn a_response_before_its_invocation_is_refused() {
    let h = [reg(10, Some(5), None, 0)];
    assert!(check_operations(&Register, &h).is_err());
}

#[test]
fn many_concurrent_writes_are_decided_quickly_thanks_to_memoization() {
    // 12 concurrent writes, then reads: without memoization the search would try the 12!
    // orders of the writes one by one before giving up on the second read.
    let mut h = Vec::new();
    for v in 0..12u8 {
        h.push(reg(0, Some(100), Some(v + 1), 0));
    }
    h.push(reg(200, Some(210), None, 12));
    assert_eq!(
        check_operations(&Register, &h).unwrap(),
        Outcome::Linearizable
    );
    h.push(reg(220, Some(230), None, 3));
    assert!(matches!(
        check_operations(&Register, &h).unwrap(),
        Outcome::NotLinearizable { .. }
    ));
}

// ---- the coordination store: hand-made histories --------------------------------------------

fn put(key: &str, value: &str, expect: Expect, lease: Option<u64>) -> CoordOp {
    CoordOp::Put {
        key: key.into(),
        value: value.as_bytes().to_vec(),
        expect,
        lease: lease.map(LeaseId),
    }
}

fn get(key: &str) -> CoordOp {
    CoordOp::Get { key: key.into() }
}

fn put_ok(revision: u64, create_revision: u64) -> CoordResponse {
    Ok(CoordReply::Put {
        revision,
        create_revision,
    })
}

fn seen(revision: u64, entry: Option<(&str, u64, u64, Option<u64>)>) -> CoordResponse {
    Ok(CoordReply::Value {
        revision,
        entry: entry.map(|(value, m, c, lease)| KeyEntry {
            value: value.as_bytes().to_vec(),
            mod_revision: m,
            create_revision: c,
            lease: lease.map(LeaseId),
        }),
    })
}

fn failed(current: Option<u64>) -> CoordResponse {
    Err(CoordError::ExpectationFailed { current })
}

fn op(call: u64, ret: u64, input: CoordOp, output: CoordResponse) -> CoordOperation {
    Operation {
        client: call,
        call,
        input,
        result: Some(Returned { at: ret, output }),
    }
}

fn timed_out(call: u64, input: CoordOp) -> CoordOperation {
    Operation {
        client: call,
        call,
        input,
        result: None,
    }
}

fn check(h: &[CoordOperation]) -> Verdict {
    check_coord_history(&BTreeMap::new(), h).unwrap()
}

fn assert_violation(h: &[CoordOperation], key: Option<&str>) {
    match check(h) {
        Verdict::Violation { key: k, .. } => assert_eq!(k.as_deref(), key),
        other => panic!("expected a violation, got {other:?}"),
    }
}

#[test]
fn overlapping_put_and_get_either_way() {
    let h = [
        op(0, 10, put("k", "v", Expect::Any, None), put_ok(5, 5)),
        op(2, 8, get("k"), seen(4, None)),
        op(3, 9, get("k"), seen(6, Some(("v", 5, 5, None)))),
    ];
    assert_eq!(check(&h), Verdict::Linearizable);
}

#[test]
fn a_read_after_a_completed_put_must_see_it() {
    let h = [
        op(0, 10, put("k", "v", Expect::Any, None), put_ok(5, 5)),
        op(20, 30, get("k"), seen(6, None)),
    ];
    assert_violation(&h, Some("k"));
}

#[test]
fn a_read_cannot_see_a_value_at_a_revision_before_it_was_written() {
    // The read overlaps the put, and the value is right; but it claims to have read at
    // revision 4 a value written at revision 5.
    let h = [
        op(0, 10, put("k", "v", Expect::Any, None), put_ok(5, 5)),
        op(2, 8, get("k"), seen(4, Some(("v", 5, 5, None)))),
    ];
    assert_violation(&h, Some("k"));
}

#[test]
fn two_concurrent_creates_cannot_both_win() {
    // Each create alone is plausible: the key was absent when each began.
    let h = [
        op(
            0,
            10,
            put("leader", "a", Expect::Absent, None),
            put_ok(5, 5),
        ),
        op(
            1,
            11,
            put("leader", "b", Expect::Absent, None),
            put_ok(6, 6),
        ),
    ];
    assert_violation(&h, Some("leader"));
    // One wins, the other fails seeing it.
    let h = [
        op(
            0,
            10,
            put("leader", "a", Expect::Absent, None),
            put_ok(5, 5),
        ),
        op(
            1,
            11,
            put("leader", "b", Expect::Absent, None),
            failed(Some(5)),
        ),
    ];
    assert_eq!(check(&h), Verdict::Linearizable);
}

#[test]
fn compare_and_set_answers_must_agree_with_the_versions() {
    let base = op(0, 1, put("k", "v1", Expect::Any, None), put_ok(3, 3));
    // Two CAS on version 3 racing: both cannot succeed (each alone could).
    let h = [
        base.clone(),
        op(
            10,
            20,
            put("k", "a", Expect::Version(3), None),
            put_ok(7, 3),
        ),
        op(
            11,
            21,
            put("k", "b", Expect::Version(3), None),
            put_ok(8, 3),
        ),
    ];
    assert_violation(&h, Some("k"));
    // A CAS on the current version cannot fail naming that same version.
    let h = [
        base.clone(),
        op(
            10,
            20,
            put("k", "a", Expect::Version(3), None),
            failed(Some(3)),
        ),
    ];
    assert_violation(&h, Some("k"));
    // A CAS failing because the other one won is fine.
    let h = [
        base,
        op(
            10,
            20,
            put("k", "a", Expect::Version(3), None),
            put_ok(7, 3),
        ),
        op(
            11,
            21,
            put("k", "b", Expect::Version(3), None),
            failed(Some(7)),
        ),
    ];
    assert_eq!(check(&h), Verdict::Linearizable);
}

#[test]
fn a_timed_out_put_may_take_effect_but_only_once() {
    // The put's answer never came; a later read shows it took effect (at revision 4), and a
    // CAS on that revision succeeds.
    let h = [
        timed_out(0, put("k", "v", Expect::Any, None)),
        op(10, 20, get("k"), seen(6, Some(("v", 4, 4, None)))),
        op(
            30,
            40,
            put("k", "w", Expect::Version(4), None),
            put_ok(9, 4),
        ),
    ];
    assert_eq!(check(&h), Verdict::Linearizable);
    // Seen, then unseen with nothing deleting it.
    let h = [
        timed_out(0, put("k", "v", Expect::Any, None)),
        op(10, 20, get("k"), seen(6, Some(("v", 4, 4, None)))),
        op(30, 40, get("k"), seen(9, None)),
    ];
    assert_violation(&h, Some("k"));
    // Never seen: fine too.
    let h = [
        timed_out(0, put("k", "v", Expect::Any, None)),
        op(30, 40, get("k"), seen(9, None)),
    ];
    assert_eq!(check(&h), Verdict::Linearizable);
}

#[test]
fn a_revoked_lease_takes_its_keys() {
    let grant = op(
        0,
        1,
        CoordOp::GrantLease {
            ttl_ms: 10_000,
            session: "s".into(),
        },
        Ok(CoordReply::LeaseGranted {
            lease: LeaseId(2),
            ttl_ms: 10_000,
        }),
    );
    let attach = op(2, 3, put("k", "v", Expect::Any, Some(2)), put_ok(4, 4));
    let revoke = |call, ret, revision| {
        op(
            call,
            ret,
            CoordOp::RevokeLease { lease: LeaseId(2) },
            Ok(CoordReply::LeaseRevoked {
                revision,
                keys_deleted: 1,
            }),
        )
    };
    // Read after the revocation returned: the key must be gone.
    let h = [
        grant.clone(),
        attach.clone(),
        revoke(10, 20, 8),
        op(30, 40, get("k"), seen(9, Some(("v", 4, 4, Some(2))))),
    ];
    assert_violation(&h, Some("k"));
    // A read overlapping the revocation may see it either way.
    let h = [
        grant.clone(),
        attach.clone(),
        revoke(10, 20, 8),
        op(12, 18, get("k"), seen(7, Some(("v", 4, 4, Some(2))))),
        op(13, 19, get("k"), seen(9, None)),
    ];
    assert_eq!(check(&h), Verdict::Linearizable);
    // A revocation refused as "unknown lease" while a key is on it: impossible.
    let h = [
        grant,
        attach,
        op(
            10,
            20,
            CoordOp::RevokeLease { lease: LeaseId(2) },
            Err(CoordError::UnknownLease { lease: LeaseId(2) }),
        ),
    ];
    assert_violation(&h, Some("k"));
}

#[test]
fn an_expiry_that_skips_a_live_lease_with_keys_is_caught() {
    let h = [
        op(0, 1, put("k", "v", Expect::Any, Some(2)), put_ok(4, 4)),
        op(
            10,
            20,
            CoordOp::ExpireLeases {
                leases: vec![LeaseId(2)],
            },
            Ok(CoordReply::LeasesExpired {
                revision: 8,
                leases: vec![],
            }),
        ),
    ];
    assert_violation(&h, Some("k"));
}

#[test]
fn range_reads_are_checked_key_by_key() {
    let range = |call, ret, revision, entries: Vec<(&str, &str, u64)>, more| {
        op(
            call,
            ret,
            CoordOp::Range {
                prefix: "apps/".into(),
                after: None,
                limit: 1,
            },
            Ok(CoordReply::Range {
                revision,
                entries: entries
                    .into_iter()
                    .map(|(k, v, r)| {
                        (
                            k.to_string(),
                            KeyEntry {
                                value: v.as_bytes().to_vec(),
                                mod_revision: r,
                                create_revision: r,
                                lease: None,
                            },
                        )
                    })
                    .collect(),
                more,
            }),
        )
    };
    let a = op(0, 1, put("apps/a", "1", Expect::Any, None), put_ok(2, 2));
    let b = op(2, 3, put("apps/b", "1", Expect::Any, None), put_ok(3, 3));
    // A page of one that stops before "apps/b" says nothing about it.
    let h = [
        a.clone(),
        b.clone(),
        range(10, 20, 5, vec![("apps/a", "1", 2)], true),
    ];
    assert_eq!(check(&h), Verdict::Linearizable);
    // A complete read without "apps/b" after it was written: a violation on that key.
    let h = [a, b, range(10, 20, 5, vec![("apps/a", "1", 2)], false)];
    assert_violation(&h, Some("apps/b"));
    // A range showing a key nobody wrote.
    let h = [range(10, 20, 5, vec![("apps/ghost", "1", 2)], false)];
    assert_violation(&h, Some("apps/ghost"));
}

#[test]
fn revisions_must_agree_with_real_time_across_keys() {
    // Each key alone is fine; but the put on "a" returned before the put on "b" began, and
    // got a higher revision: the log order contradicts real time.
    let h = [
        op(0, 10, put("a", "1", Expect::Any, None), put_ok(9, 9)),
        op(20, 30, put("b", "1", Expect::Any, None), put_ok(5, 5)),
    ];
    assert_violation(&h, None);
    // Two operations answering one revision.
    let h = [
        op(0, 10, put("a", "1", Expect::Any, None), put_ok(5, 5)),
        op(0, 10, put("b", "1", Expect::Any, None), put_ok(5, 5)),
    ];
    assert_violation(&h, None);
    // Concurrent: any order.
    let h = [
        op(0, 25, put("a", "1", Expect::Any, None), put_ok(9, 9)),
        op(20, 30, put("b", "1", Expect::Any, None), put_ok(5, 5)),
    ];
    assert_eq!(check(&h), Verdict::Linearizable);
}

#[test]
fn an_initial_store_is_the_starting_point() {
    let mut initial = BTreeMap::new();
    initial.insert(
        "k".to_string(),
        KeyEntry {
            value: b"old".to_vec(),
            mod_revision: 3,
            create_revision: 2,
            lease: None,
        },
    );
    let h = [op(10, 20, get("k"), seen(7, Some(("old", 3, 2, None))))];
    assert_eq!(
        check_coord_history(&initial, &h).unwrap(),
        Verdict::Linearizable
    );
    assert!(matches!(
        check_coord_history(&BTreeMap::new(), &h).unwrap(),
        Verdict::Violation { .. }
    ));
}

#[test]
fn refusals_that_change_nothing_are_ignored() {
    let h = [
        op(
            0,
            10,
            put("k", "v", Expect::Any, Some(77)),
            Err(CoordError::UnknownLease { lease: LeaseId(77) }),
        ),
        op(
            0,
            10,
            put("k", "v", Expect::Any, None),
            Err(CoordError::StaleRequest {
                request_id: 1,
                first_unanswered: 2,
            }),
        ),
        op(20, 30, get("k"), seen(5, None)),
    ];
    assert_eq!(check(&h), Verdict::Linearizable);
}

#[test]
fn the_recorder_keeps_unanswered_operations_unknown() {
    let mut recorder = HistoryRecorder::new();
    let a = recorder
        .invoke(1, 0, put("k", "v", Expect::Any, None))
        .unwrap();
    let b = recorder.invoke(2, 5, get("k")).unwrap();
    recorder.respond(b, 8, seen(3, Some(("v", 2, 2, None))));
    recorder.respond(b, 9, seen(4, None)); // a duplicate answer is ignored
    assert!(recorder.operations()[a].result.is_none());
    assert_eq!(recorder.check().unwrap(), Verdict::Linearizable);
}

fn guarded(key: &str, epoch: u64, ops: Vec<TxnOp>) -> CoordOp {
    CoordOp::Txn {
        guard: Some(FencingToken {
            key: key.into(),
            epoch,
        }),
        ops,
    }
}

fn write(key: &str, value: &str) -> TxnOp {
    TxnOp::Put {
        key: key.into(),
        value: value.as_bytes().to_vec(),
    }
}

fn stale(key: &str, epoch: u64, current: Option<u64>) -> CoordResponse {
    Err(CoordError::StaleGuard {
        key: key.into(),
        epoch,
        current,
    })
}

#[test]
fn guarded_transactions_are_checked_on_their_keys_and_their_guard() {
    let elected = op(
        0,
        1,
        put("leader", "m1", Expect::Absent, None),
        put_ok(2, 2),
    );
    // The holder's write lands and is read back.
    let h = [
        elected.clone(),
        op(
            5,
            6,
            guarded("leader", 2, vec![write("s/a", "1")]),
            Ok(CoordReply::Txn { revision: 7 }),
        ),
        op(8, 9, get("s/a"), seen(9, Some(("1", 7, 7, None)))),
    ];
    assert_eq!(check(&h), Verdict::Linearizable);
    // A write that landed with an epoch nobody held: the fencing failed.
    let h = [
        elected.clone(),
        op(
            5,
            6,
            guarded("leader", 3, vec![write("s/a", "1")]),
            Ok(CoordReply::Txn { revision: 7 }),
        ),
    ];
    assert_violation(&h, Some("leader"));
    // Refused while its epoch held the key: wrong.
    let h = [
        elected.clone(),
        op(
            5,
            6,
            guarded("leader", 2, vec![]),
            stale("leader", 2, Some(2)),
        ),
    ];
    assert_violation(&h, Some("leader"));
    // Refused once another holder took over: right, and the refused write is not seen.
    let h = [
        elected,
        op(
            3,
            4,
            CoordOp::Delete {
                key: "leader".into(),
                expect: Expect::Any,
            },
            Ok(CoordReply::Deleted {
                revision: 4,
                existed: true,
            }),
        ),
        op(
            5,
            6,
            put("leader", "m2", Expect::Absent, None),
            put_ok(6, 6),
        ),
        op(
            7,
            8,
            guarded("leader", 2, vec![write("s/a", "1")]),
            stale("leader", 2, Some(6)),
        ),
        op(9, 10, get("s/a"), seen(10, None)),
    ];
    assert_eq!(check(&h), Verdict::Linearizable);
    // A write whose answer never came may have landed, or not.
    for read in [seen(9, None), seen(9, Some(("1", 7, 7, None)))] {
        let h = [
            op(
                0,
                1,
                put("leader", "m1", Expect::Absent, None),
                put_ok(2, 2),
            ),
            timed_out(5, guarded("leader", 2, vec![write("s/a", "1")])),
            op(8, 9, get("s/a"), read),
        ];
        assert_eq!(check(&h), Verdict::Linearizable);
    }
}

// ---- properties -------------------------------------------------------------------------------

fn arb_op() -> impl Strategy<Value = CoordOp> {
    let key = prop_oneof![Just("a"), Just("b"), Just("c/1"), Just("c/2")].prop_map(String::from);
    // Few distinct values, so that reads are ambiguous and the search must work.
    let value = (0u8..3).prop_map(|v| vec![v]);
    let lease = prop::option::of((1u64..60).prop_map(LeaseId));
    let expect = prop_oneof![
        2 => Just(Expect::Any),
        1 => Just(Expect::Absent),
        2 => (1u64..60).prop_map(Expect::Version),
    ];
    prop_oneof![
        5 => (key.clone(), value, expect.clone(), lease).prop_map(|(key, value, expect, lease)| {
            CoordOp::Put { key, value, expect, lease }
        }),
        2 => (key.clone(), expect).prop_map(|(key, expect)| CoordOp::Delete { key, expect }),
        3 => key.clone().prop_map(|key| CoordOp::Get { key }),
        1 => (prop_oneof![Just(""), Just("c/")], 0u32..3).prop_map(|(p, limit)| CoordOp::Range {
            prefix: p.into(), after: None, limit
        }),
        2 => (1u64..30).prop_map(|s| CoordOp::GrantLease { ttl_ms: s * 1000, session: "s".into() }),
        1 => (1u64..60).prop_map(|l| CoordOp::RevokeLease { lease: LeaseId(l) }),
        1 => prop::collection::vec((1u64..60).prop_map(LeaseId), 1..3)
            .prop_map(|leases| CoordOp::ExpireLeases { leases }),
        2 => (
            prop::option::of((key.clone(), 1u64..60)),
            prop::collection::vec((key, prop::option::of(0u8..3)), 0..3),
        )
            .prop_map(|(guard, writes)| CoordOp::Txn {
                guard: guard.map(|(key, epoch)| FencingToken { key, epoch }),
                ops: writes
                    .into_iter()
                    .map(|(key, value)| match value {
                        Some(v) => TxnOp::Put { key, value: vec![v] },
                        None => TxnOp::Delete { key },
                    })
                    .collect(),
            }),
    ]
}

/// What happens to an operation: answered, applied but never answered, or lost before it
/// was applied.
#[derive(Debug, Clone, Copy)]
enum Fate {
    Answered,
    Unanswered,
    Lost,
}

fn arb_fate() -> impl Strategy<Value = Fate> {
    prop_oneof![
        16 => Just(Fate::Answered),
        2 => Just(Fate::Unanswered),
        1 => Just(Fate::Lost),
    ]
}

/// Applies `ops` one at a time to a real store, at instants 10 apart, each invoked up to
/// `before` earlier and answered up to `after` later, so that up to nine overlap.
fn sequential_history(ops: &[CoordOp], timing: &[(u64, u64, u8, Fate)]) -> Vec<CoordOperation> {
    let mut store = CoordStore::new();
    let mut revision = 0;
    let mut history = Vec::new();
    for (i, (op, &(before, after, gap, fate))) in ops.iter().zip(timing).enumerate() {
        let point = 100 + 10 * i as u64;
        revision += u64::from(gap) + 1;
        let response = match fate {
            Fate::Lost => None,
            Fate::Answered | Fate::Unanswered => Some(store.apply(revision, op)),
        };
        history.push(Operation {
            client: i as u64,
            call: point - before,
            input: op.clone(),
            result: match fate {
                Fate::Answered => Some(Returned {
                    at: point + after,
                    output: response.expect("applied"),
                }),
                _ => None,
            },
        });
    }
    history
}

fn arb_timing() -> impl Strategy<Value = Vec<(u64, u64, u8, Fate)>> {
    prop::collection::vec((0u64..45, 0u64..45, 0u8..3, arb_fate()), 60)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Whatever the overlap, a history the real store produced one operation at a time is
    /// accepted.
    #[test]
    fn histories_of_the_real_store_are_linearizable(
        ops in prop::collection::vec(arb_op(), 1..60),
        timing in arb_timing(),
    ) {
        let history = sequential_history(&ops, &timing);
        prop_assert_eq!(check_coord_history(&BTreeMap::new(), &history).unwrap(), Verdict::Linearizable);
    }

    /// A read answering a value nobody wrote is always caught.
    #[test]
    fn a_corrupted_read_is_caught(
        ops in prop::collection::vec(arb_op(), 1..60),
        timing in arb_timing(),
        pick in any::<prop::sample::Index>(),
    ) {
        let mut history = sequential_history(&ops, &timing);
        let reads: Vec<usize> = history
            .iter()
            .enumerate()
            .filter(|(_, op)| matches!(
                op.result,
                Some(Returned { output: Ok(CoordReply::Value { entry: Some(_), .. }), .. })
            ))
            .map(|(i, _)| i)
            .collect();
        prop_assume!(!reads.is_empty());
        let i = reads[pick.index(reads.len())];
        if let Some(Returned { output: Ok(CoordReply::Value { entry: Some(entry), .. }), .. }) =
            &mut history[i].result
        {
            entry.value = vec![200];
        }
        let verdict = check_coord_history(&BTreeMap::new(), &history).unwrap();
        prop_assert!(matches!(verdict, Verdict::Violation { .. }), "{:?}", verdict);
    }
}
