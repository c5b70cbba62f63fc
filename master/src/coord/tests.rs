//! Unit and property tests of the coordination store, the lease clock and the watch hub,
//! driven directly with fake revisions and a fake `now`.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::limits::{
    COORD_ANSWERS_PER_CLIENT_MAX, COORD_CLIENTS_MAX, COORD_EXPIRE_RETRY_INTERVAL, COORD_KEYS_MAX,
    COORD_KEYS_PER_LEASE_MAX, COORD_KEY_BYTES_MAX, COORD_LEASES_MAX, COORD_TXN_BYTES_MAX,
    COORD_TXN_OPS_MAX, COORD_VALUE_BYTES_MAX, COORD_WATCHES_PER_SESSION_MAX,
    COORD_WATCH_EVENTS_PER_MESSAGE_MAX, COORD_WATCH_HISTORY_EVENTS_MAX,
};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn put(key: &str, value: &str, expect: Expect, lease: Option<LeaseId>) -> CoordOp {
    CoordOp::Put {
        key: key.into(),
        value: value.as_bytes().to_vec(),
        expect,
        lease,
    }
}

fn get(key: &str) -> CoordOp {
    CoordOp::Get { key: key.into() }
}

fn grant(ttl_s: u64) -> CoordOp {
    CoordOp::GrantLease {
        ttl_ms: ttl_s * 1000,
        session: "test".into(),
    }
}

/// A store and the next revision to apply at.
struct Log {
    store: CoordStore,
    next: u64,
}

impl Log {
    fn new() -> Self {
        Log {
            store: CoordStore::new(),
            next: 1,
        }
    }

    fn apply(&mut self, op: CoordOp) -> CoordResponse {
        let revision = self.next;
        self.next += 1;
        let response = self.store.apply(revision, &op);
        self.store.check_invariants().unwrap();
        response
    }

    fn command(&mut self, command: &CoordCommand) -> CoordResponse {
        let revision = self.next;
        self.next += 1;
        let response = self.store.apply_command(revision, command);
        self.store.check_invariants().unwrap();
        response
    }

    fn lease(&mut self, ttl_s: u64) -> LeaseId {
        match self.apply(grant(ttl_s)) {
            Ok(CoordReply::LeaseGranted { lease, .. }) => lease,
            other => panic!("grant: {other:?}"),
        }
    }

    fn value(&mut self, key: &str) -> Option<String> {
        match self.apply(get(key)) {
            Ok(CoordReply::Value { entry, .. }) => {
                entry.map(|e| String::from_utf8(e.value).unwrap())
            }
            other => panic!("get: {other:?}"),
        }
    }
}

// ---- store: compare-and-set -----------------------------------------------------------------

#[test]
fn put_records_mod_and_create_revisions() {
    let mut log = Log::new();
    assert_eq!(
        log.apply(put("a", "1", Expect::Any, None)),
        Ok(CoordReply::Put {
            revision: 1,
            create_revision: 1
        })
    );
    assert_eq!(
        log.apply(put("a", "2", Expect::Any, None)),
        Ok(CoordReply::Put {
            revision: 2,
            create_revision: 1
        })
    );
    assert_eq!(
        log.apply(get("a")),
        Ok(CoordReply::Value {
            revision: 3,
            entry: Some(KeyEntry {
                value: b"2".to_vec(),
                mod_revision: 2,
                create_revision: 1,
                lease: None
            })
        })
    );
    assert_eq!(
        log.apply(get("b")),
        Ok(CoordReply::Value {
            revision: 4,
            entry: None
        })
    );
}

#[test]
fn compare_and_set_on_the_modification_revision() {
    let mut log = Log::new();
    log.apply(put("k", "v1", Expect::Any, None)).unwrap(); // revision 1
                                                           // A stale version fails and names the current one; nothing changes.
    assert_eq!(
        log.apply(put("k", "v2", Expect::Version(7), None)),
        Err(CoordError::ExpectationFailed { current: Some(1) })
    );
    assert_eq!(log.value("k").as_deref(), Some("v1"));
    // The current version succeeds, and moves the version on.
    assert!(log.apply(put("k", "v2", Expect::Version(1), None)).is_ok()); // revision 4
    assert_eq!(
        log.apply(put("k", "v3", Expect::Version(1), None)),
        Err(CoordError::ExpectationFailed { current: Some(4) })
    );
    // Absent: only creates.
    assert_eq!(
        log.apply(put("k", "x", Expect::Absent, None)),
        Err(CoordError::ExpectationFailed { current: Some(4) })
    );
    assert!(log.apply(put("new", "x", Expect::Absent, None)).is_ok());
    // A version on an absent key fails.
    assert_eq!(
        log.apply(put("absent", "x", Expect::Version(1), None)),
        Err(CoordError::ExpectationFailed { current: None })
    );
    assert_eq!(log.store.len(), 2);
}

#[test]
fn delete_with_expectations() {
    let mut log = Log::new();
    log.apply(put("k", "v", Expect::Any, None)).unwrap(); // 1
    assert_eq!(
        log.apply(CoordOp::Delete {
            key: "k".into(),
            expect: Expect::Version(9)
        }),
        Err(CoordError::ExpectationFailed { current: Some(1) })
    );
    assert_eq!(
        log.apply(CoordOp::Delete {
            key: "k".into(),
            expect: Expect::Version(1)
        }),
        Ok(CoordReply::Deleted {
            revision: 3,
            existed: true
        })
    );
    assert_eq!(
        log.apply(CoordOp::Delete {
            key: "k".into(),
            expect: Expect::Any
        }),
        Ok(CoordReply::Deleted {
            revision: 4,
            existed: false
        })
    );
    assert!(log.store.is_empty());
    assert_eq!(log.store.stored_bytes(), 0);
}

#[test]
fn failed_and_read_operations_consume_their_revision_but_change_nothing() {
    let mut log = Log::new();
    log.apply(put("k", "v", Expect::Any, None)).unwrap();
    log.store.drain_events();
    let before = log.store.clone();
    log.apply(put("k", "w", Expect::Absent, None)).unwrap_err();
    log.apply(get("k")).unwrap();
    assert_eq!(log.store.revision(), 3);
    assert!(log.store.drain_events().events.is_empty());
    assert_eq!(log.store.get("k"), before.get("k"));
}

#[test]
fn sizes_are_validated() {
    let mut log = Log::new();
    assert_eq!(
        log.apply(put("", "v", Expect::Any, None)),
        Err(CoordError::EmptyKey)
    );
    let long_key = "k".repeat(COORD_KEY_BYTES_MAX + 1);
    assert_eq!(
        log.apply(put(&long_key, "v", Expect::Any, None)),
        Err(Limit::KeyBytes.exceeded())
    );
    let big = CoordOp::Put {
        key: "k".into(),
        value: vec![0; COORD_VALUE_BYTES_MAX + 1],
        expect: Expect::Any,
        lease: None,
    };
    assert_eq!(log.apply(big), Err(Limit::ValueBytes.exceeded()));
    let max = CoordOp::Put {
        key: "k".repeat(COORD_KEY_BYTES_MAX),
        value: vec![0; COORD_VALUE_BYTES_MAX],
        expect: Expect::Any,
        lease: None,
    };
    assert!(log.apply(max).is_ok());
    assert!(matches!(
        log.apply(CoordOp::GrantLease {
            ttl_ms: 10,
            session: "s".into()
        }),
        Err(CoordError::TtlOutOfRange { ttl_ms: 10, .. })
    ));
    assert_eq!(
        log.apply(CoordOp::GrantLease {
            ttl_ms: 10_000,
            session: "s".repeat(1000)
        }),
        Err(Limit::LabelBytes.exceeded())
    );
    assert_eq!(
        log.apply(CoordOp::Range {
            prefix: String::new(),
            after: None,
            limit: u32::MAX
        }),
        Err(Limit::RangeKeys.exceeded())
    );
    assert_eq!(log.store.len(), 1);
}

#[test]
fn range_pages_through_a_prefix() {
    let mut log = Log::new();
    for key in ["a/1", "a/2", "a/3", "ab", "b/1"] {
        log.apply(put(key, key, Expect::Any, None)).unwrap();
    }
    let range =
        |log: &mut Log, prefix: &str, after: Option<&str>, limit| match log.apply(CoordOp::Range {
            prefix: prefix.into(),
            after: after.map(str::to_string),
            limit,
        }) {
            Ok(CoordReply::Range { entries, more, .. }) => (
                entries.into_iter().map(|(k, _)| k).collect::<Vec<_>>(),
                more,
            ),
            other => panic!("{other:?}"),
        };
    assert_eq!(
        range(&mut log, "a/", None, 2),
        (vec!["a/1".to_string(), "a/2".to_string()], true)
    );
    assert_eq!(
        range(&mut log, "a/", Some("a/2"), 2),
        (vec!["a/3".to_string()], false)
    );
    assert_eq!(range(&mut log, "", None, 0).0.len(), 5);
    // `after` before the prefix starts at the prefix.
    assert_eq!(
        range(&mut log, "b", Some("a"), 0).0,
        vec!["b/1".to_string()]
    );
    assert_eq!(range(&mut log, "c", None, 0), (vec![], false));
}

// ---- store: leases --------------------------------------------------------------------------

#[test]
fn lease_ids_are_the_granting_revision() {
    let mut log = Log::new();
    log.apply(get("x")).unwrap();
    assert_eq!(log.lease(10), LeaseId(2));
    assert_eq!(log.lease(10), LeaseId(3));
}

#[test]
fn put_on_an_unknown_lease_is_refused() {
    let mut log = Log::new();
    assert_eq!(
        log.apply(put("k", "v", Expect::Any, Some(LeaseId(42)))),
        Err(CoordError::UnknownLease { lease: LeaseId(42) })
    );
    assert!(log.store.is_empty());
}

#[test]
fn revoking_a_lease_deletes_its_keys_and_only_its_keys() {
    let mut log = Log::new();
    let lease = log.lease(10);
    let other = log.lease(10);
    log.apply(put("a", "1", Expect::Any, Some(lease))).unwrap();
    log.apply(put("b", "2", Expect::Any, Some(lease))).unwrap();
    log.apply(put("c", "3", Expect::Any, Some(other))).unwrap();
    log.apply(put("d", "4", Expect::Any, None)).unwrap();
    // Moving "b" to no lease detaches it.
    log.apply(put("b", "2'", Expect::Any, None)).unwrap();
    log.store.drain_events();
    assert_eq!(
        log.apply(CoordOp::RevokeLease { lease }),
        Ok(CoordReply::LeaseRevoked {
            revision: 8,
            keys_deleted: 1
        })
    );
    assert_eq!(log.value("a"), None);
    assert_eq!(log.value("b").as_deref(), Some("2'"));
    assert_eq!(log.value("c").as_deref(), Some("3"));
    let drained = log.store.drain_events();
    assert_eq!(
        drained.events,
        vec![WatchEvent {
            revision: 8,
            key: "a".into(),
            change: Change::Delete
        }]
    );
    assert_eq!(
        log.apply(CoordOp::RevokeLease { lease }),
        Err(CoordError::UnknownLease { lease })
    );
}

#[test]
fn expiry_skips_leases_already_gone() {
    let mut log = Log::new();
    let a = log.lease(10);
    let b = log.lease(10);
    log.apply(put("a", "1", Expect::Any, Some(a))).unwrap();
    log.apply(put("b", "1", Expect::Any, Some(b))).unwrap();
    log.apply(CoordOp::RevokeLease { lease: a }).unwrap();
    log.store.drain_lease_changes();
    assert_eq!(
        log.apply(CoordOp::ExpireLeases { leases: vec![a, b] }),
        Ok(CoordReply::LeasesExpired {
            revision: 6,
            leases: vec![b]
        })
    );
    assert!(log.store.is_empty());
    assert_eq!(log.store.leases().count(), 0);
    // The clock hears that both are gone.
    assert_eq!(
        log.store.drain_lease_changes().changes,
        vec![
            LeaseChange::Ended { lease: a },
            LeaseChange::Ended { lease: b }
        ]
    );
}

#[test]
fn keys_per_lease_and_leases_are_bounded() {
    let mut log = Log::new();
    let lease = log.lease(10);
    for i in 0..COORD_KEYS_PER_LEASE_MAX {
        log.store
            .apply(
                log.next,
                &put(&format!("k{i}"), "", Expect::Any, Some(lease)),
            )
            .unwrap();
        log.next += 1;
    }
    assert_eq!(
        log.apply(put("one-more", "", Expect::Any, Some(lease))),
        Err(Limit::KeysPerLease.exceeded())
    );
    // Rewriting a key already on the lease is fine.
    assert!(log.apply(put("k0", "x", Expect::Any, Some(lease))).is_ok());

    let mut log = Log::new();
    for _ in 0..COORD_LEASES_MAX {
        log.store.apply(log.next, &grant(10)).unwrap();
        log.next += 1;
    }
    assert_eq!(log.apply(grant(10)), Err(Limit::Leases.exceeded()));
}

// ---- store: fencing -------------------------------------------------------------------------

#[test]
fn fencing_admits_only_the_current_holders_epoch() {
    let mut log = Log::new();
    let key = "/frameworks/marathon/leader";
    let lease1 = log.lease(10);
    let Ok(CoordReply::Put {
        revision: epoch1,
        create_revision,
    }) = log.apply(put(key, "m1", Expect::Absent, Some(lease1)))
    else {
        panic!()
    };
    assert_eq!(epoch1, create_revision);
    let fencing = log.store.fencing();
    assert_eq!(fencing.check(key, epoch1), Ok(()));
    let holder = fencing.holder(key).unwrap();
    assert_eq!(
        (holder.epoch, holder.lease, holder.value),
        (epoch1, Some(lease1), &b"m1"[..])
    );

    // The holder rewrites its value: the epoch stays.
    log.apply(put(key, "m1'", Expect::Version(epoch1), Some(lease1)))
        .unwrap();
    assert_eq!(log.store.fencing().check(key, epoch1), Ok(()));

    // A second candidate cannot take a held key.
    let lease2 = log.lease(10);
    assert!(log
        .apply(put(key, "m2", Expect::Absent, Some(lease2)))
        .is_err());

    // The first lease expires: nobody holds the key, the old epoch is refused.
    log.apply(CoordOp::ExpireLeases {
        leases: vec![lease1],
    })
    .unwrap();
    let err = log.store.fencing().check(key, epoch1).unwrap_err();
    assert_eq!(err.current, None);
    assert!(!err.is_ahead());

    // The second candidate wins with a later epoch; the first is fenced off.
    let Ok(CoordReply::Put {
        revision: epoch2, ..
    }) = log.apply(put(key, "m2", Expect::Absent, Some(lease2)))
    else {
        panic!()
    };
    assert!(epoch2 > epoch1);
    assert_eq!(log.store.fencing().check(key, epoch2), Ok(()));
    let err = log.store.fencing().check(key, epoch1).unwrap_err();
    assert_eq!(err.current, Some(epoch2));
    assert_eq!(
        err.to_string(),
        format!("stale epoch {epoch1} for '{key}': the current holder's epoch is {epoch2}")
    );
    // An epoch this master has not applied yet: refused, but flagged as "retry".
    let ahead = log
        .store
        .fencing()
        .check(key, log.store.revision() + 5)
        .unwrap_err();
    assert!(ahead.is_ahead());
}

// ---- store: guarded transactions ------------------------------------------------------------

fn txn_put(key: &str, value: &str) -> TxnOp {
    TxnOp::Put {
        key: key.into(),
        value: value.as_bytes().to_vec(),
    }
}

fn txn_delete(key: &str) -> TxnOp {
    TxnOp::Delete { key: key.into() }
}

fn txn(guard: Option<(&str, u64)>, ops: Vec<TxnOp>) -> CoordOp {
    CoordOp::Txn {
        guard: guard.map(|(key, epoch)| FencingToken {
            key: key.into(),
            epoch,
        }),
        ops,
    }
}

#[test]
fn a_transaction_applies_all_its_writes_at_one_revision_with_one_event_each() {
    let mut log = Log::new();
    log.apply(put("s/a", "old", Expect::Any, None)).unwrap();
    log.apply(put("s/b", "gone", Expect::Any, None)).unwrap();
    log.store.drain_events();
    let answer = log.apply(txn(
        None,
        vec![
            txn_put("s/a", "new"),
            txn_put("s/c", "created"),
            txn_delete("s/b"),
            txn_delete("s/absent"),
        ],
    ));
    assert_eq!(answer, Ok(CoordReply::Txn { revision: 3 }));
    let a = log.store.get("s/a").unwrap();
    assert_eq!((a.mod_revision, a.create_revision), (3, 1));
    let c = log.store.get("s/c").unwrap();
    assert_eq!((c.mod_revision, c.create_revision), (3, 3));
    assert!(log.store.get("s/b").is_none());
    let events = log.store.drain_events().events;
    let seen: Vec<(u64, &str, bool)> = events
        .iter()
        .map(|e| (e.revision, e.key.as_str(), e.change == Change::Delete))
        .collect();
    // In the order of the ops; deleting an absent key changes nothing.
    assert_eq!(
        seen,
        [(3, "s/a", false), (3, "s/c", false), (3, "s/b", true)]
    );
}

#[test]
fn a_guarded_transaction_lands_only_while_its_epoch_holds_the_key() {
    let mut log = Log::new();
    let key = "/marathon/leader";
    let lease1 = log.lease(10);
    let Ok(CoordReply::Put {
        revision: epoch1, ..
    }) = log.apply(put(key, "m1", Expect::Absent, Some(lease1)))
    else {
        panic!()
    };
    let write = |epoch, value: &str| {
        txn(
            Some((key, epoch)),
            vec![txn_put("/marathon/state/app", value)],
        )
    };
    assert!(matches!(
        log.apply(write(epoch1, "v1")),
        Ok(CoordReply::Txn { .. })
    ));
    // The holder's lease ends: nobody holds the key, the old leader's write is refused.
    log.apply(CoordOp::RevokeLease { lease: lease1 }).unwrap();
    log.store.drain_events();
    let stale = log.apply(write(epoch1, "v2")).unwrap_err();
    assert_eq!(
        stale,
        CoordError::StaleGuard {
            key: key.into(),
            epoch: epoch1,
            current: None
        }
    );
    assert!(stale.to_string().contains("nobody holds"), "{stale}");
    // A second leader is elected: the first's epoch is still refused, the second's lands.
    let lease2 = log.lease(10);
    let Ok(CoordReply::Put {
        revision: epoch2, ..
    }) = log.apply(put(key, "m2", Expect::Absent, Some(lease2)))
    else {
        panic!()
    };
    log.store.drain_events();
    assert_eq!(
        log.apply(write(epoch1, "v3")),
        Err(CoordError::StaleGuard {
            key: key.into(),
            epoch: epoch1,
            current: Some(epoch2)
        })
    );
    assert!(
        log.store.drain_events().events.is_empty(),
        "a refused transaction changes nothing"
    );
    assert_eq!(log.value("/marathon/state/app").as_deref(), Some("v1"));
    assert!(matches!(
        log.apply(write(epoch2, "v4")),
        Ok(CoordReply::Txn { .. })
    ));
    assert_eq!(log.value("/marathon/state/app").as_deref(), Some("v4"));
    // An empty guarded transaction is a linearizable "do I still lead?".
    assert!(log.apply(txn(Some((key, epoch2)), vec![])).is_ok());
    assert!(log.apply(txn(Some((key, epoch1)), vec![])).is_err());
}

#[test]
fn a_transaction_detaches_the_keys_it_writes_from_their_lease() {
    let mut log = Log::new();
    let lease = log.lease(10);
    log.apply(put("k", "v", Expect::Any, Some(lease))).unwrap();
    log.apply(put("l", "v", Expect::Any, Some(lease))).unwrap();
    log.apply(txn(None, vec![txn_put("k", "w"), txn_delete("l")]))
        .unwrap();
    assert_eq!(log.store.get("k").unwrap().lease, None);
    assert!(log.store.lease(lease).unwrap().keys.is_empty());
    // The lease's end no longer takes the key.
    log.apply(CoordOp::RevokeLease { lease }).unwrap();
    assert_eq!(log.value("k").as_deref(), Some("w"));
}

#[test]
fn transactions_are_validated_before_the_log() {
    let too_many: Vec<TxnOp> = (0..=COORD_TXN_OPS_MAX)
        .map(|i| txn_put(&format!("k{i}"), "v"))
        .collect();
    assert_eq!(
        txn(None, too_many).validate(),
        Err(Limit::TxnOps.exceeded())
    );
    let value = "x".repeat(COORD_VALUE_BYTES_MAX);
    let too_big: Vec<TxnOp> = (0..COORD_TXN_BYTES_MAX / COORD_VALUE_BYTES_MAX + 1)
        .map(|i| txn_put(&format!("k{i}"), &value))
        .collect();
    assert_eq!(
        txn(None, too_big).validate(),
        Err(Limit::TxnBytes.exceeded())
    );
    let one_too_large = vec![txn_put("k", &"x".repeat(COORD_VALUE_BYTES_MAX + 1))];
    assert_eq!(
        txn(None, one_too_large).validate(),
        Err(Limit::ValueBytes.exceeded())
    );
    let twice = txn(None, vec![txn_put("k", "1"), txn_delete("k")]);
    let err = twice.validate().unwrap_err();
    assert_eq!(err, CoordError::DuplicateKey { key: "k".into() });
    assert_eq!(err.to_string(), "key 'k' appears twice in one transaction");
    assert_eq!(
        txn(None, vec![txn_put("", "v")]).validate(),
        Err(CoordError::EmptyKey)
    );
    assert_eq!(
        txn(Some(("", 1)), vec![]).validate(),
        Err(CoordError::EmptyKey)
    );
    // The store validates too, whatever the host did, consuming the revision.
    let mut log = Log::new();
    assert!(log.apply(twice).is_err());
    assert_eq!(log.store.revision(), 1);
    assert!(log.store.is_empty());
}

#[test]
fn a_transaction_is_bounded_by_the_state_it_leaves_not_by_its_order() {
    let mut store = CoordStore::new();
    for i in 0..COORD_KEYS_MAX {
        store
            .apply(
                i as u64 + 1,
                &put(&format!("k{i:06}"), "", Expect::Any, None),
            )
            .unwrap();
    }
    store.drain_events();
    let next = COORD_KEYS_MAX as u64 + 1;
    // Full: creating one key and deleting another fits, whatever the order.
    let swap = txn(None, vec![txn_put("new", ""), txn_delete("k000000")]);
    assert!(store.apply(next, &swap).is_ok());
    // Creating two and deleting one does not: nothing is written.
    let over = txn(
        None,
        vec![
            txn_put("new2", ""),
            txn_put("new3", ""),
            txn_delete("k000001"),
        ],
    );
    assert_eq!(store.apply(next + 1, &over), Err(Limit::Keys.exceeded()));
    assert!(store.get("k000001").is_some());
    assert!(store.get("new2").is_none());
    assert_eq!(store.len(), COORD_KEYS_MAX);
    store.check_invariants().unwrap();
}

// ---- store: retried requests ----------------------------------------------------------------

fn stamped(client: ClientId, request_id: u64, first_unanswered: u64, op: CoordOp) -> CoordCommand {
    CoordCommand {
        stamp: Some(RequestStamp {
            client,
            request_id,
            first_unanswered,
        }),
        op,
    }
}

fn register(log: &mut Log) -> ClientId {
    match log.apply(CoordOp::RegisterClient { label: "c".into() }) {
        Ok(CoordReply::ClientRegistered { client }) => client,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_retried_write_is_answered_with_its_first_answer() {
    let mut log = Log::new();
    let client = register(&mut log);
    let first = log.command(&stamped(client, 1, 1, put("k", "a", Expect::Absent, None)));
    assert_eq!(
        first,
        Ok(CoordReply::Put {
            revision: 2,
            create_revision: 2
        })
    );
    // Someone else writes in between; the retry must not apply again (it would fail now, or
    // worse, with Expect::Any, overwrite).
    log.apply(put("k", "b", Expect::Any, None)).unwrap();
    log.store.drain_events();
    let retry = log.command(&stamped(client, 1, 1, put("k", "a", Expect::Absent, None)));
    assert_eq!(retry, first);
    assert_eq!(log.value("k").as_deref(), Some("b"));
    assert!(log.store.drain_events().events.is_empty());
    // A lease grant retried gives the same lease, and no second lease.
    let g1 = log.command(&stamped(client, 2, 1, grant(10)));
    let g2 = log.command(&stamped(client, 2, 1, grant(10)));
    assert_eq!(g1, g2);
    assert_eq!(log.store.leases().count(), 1);
}

#[test]
fn acknowledged_requests_are_forgotten_and_never_applied_late() {
    let mut log = Log::new();
    let client = register(&mut log);
    log.command(&stamped(client, 1, 1, put("k", "1", Expect::Any, None)))
        .unwrap();
    // Request 2 says the client no longer waits for 1: a late copy of 1 is refused.
    log.command(&stamped(client, 2, 2, put("k", "2", Expect::Any, None)))
        .unwrap();
    assert_eq!(
        log.command(&stamped(client, 1, 1, put("k", "1", Expect::Any, None))),
        Err(CoordError::StaleRequest {
            request_id: 1,
            first_unanswered: 2
        })
    );
    assert_eq!(log.value("k").as_deref(), Some("2"));
}

#[test]
fn a_client_cannot_expire_leases() {
    let mut log = Log::new();
    let client = register(&mut log);
    let lease = log.lease(10);
    assert_eq!(
        log.command(&stamped(
            client,
            1,
            1,
            CoordOp::ExpireLeases {
                leases: vec![lease]
            }
        )),
        Err(CoordError::LeaderOnly)
    );
    assert!(log.store.lease(lease).is_some());
}

#[test]
fn reads_are_not_remembered() {
    let mut log = Log::new();
    let client = register(&mut log);
    let r1 = log.command(&stamped(client, 1, 1, get("k"))).unwrap();
    log.apply(put("k", "v", Expect::Any, None)).unwrap();
    let r2 = log.command(&stamped(client, 1, 1, get("k"))).unwrap();
    assert_ne!(r1, r2, "a retried read is read again");
    // Even below the floor: a read never changes anything.
    log.command(&stamped(client, 5, 5, get("k"))).unwrap();
    assert!(log.command(&stamped(client, 1, 1, get("k"))).is_ok());
}

#[test]
fn unknown_clients_and_unacknowledged_answers_are_refused() {
    let mut log = Log::new();
    assert_eq!(
        log.command(&stamped(
            ClientId(99),
            1,
            1,
            put("k", "v", Expect::Any, None)
        )),
        Err(CoordError::UnknownClient {
            client: ClientId(99)
        })
    );
    assert!(log.store.is_empty());
    let client = register(&mut log);
    for id in 1..=COORD_ANSWERS_PER_CLIENT_MAX as u64 {
        log.command(&stamped(client, id, 1, put("k", "v", Expect::Any, None)))
            .unwrap();
    }
    let next = COORD_ANSWERS_PER_CLIENT_MAX as u64 + 1;
    assert_eq!(
        log.command(&stamped(client, next, 1, put("k", "v", Expect::Any, None))),
        Err(Limit::AnswersPerClient.exceeded())
    );
    // Acknowledging frees room.
    assert!(log
        .command(&stamped(
            client,
            next,
            next,
            put("k", "v", Expect::Any, None)
        ))
        .is_ok());
}

#[test]
fn the_least_recently_used_client_is_forgotten_when_the_table_is_full() {
    let mut log = Log::new();
    let first = register(&mut log);
    let second = register(&mut log);
    // `first` is used after `second` registered, so `second` is the least recently used.
    log.command(&stamped(first, 1, 1, get("k"))).unwrap();
    for _ in 2..COORD_CLIENTS_MAX {
        log.store
            .apply(log.next, &CoordOp::RegisterClient { label: "c".into() })
            .unwrap();
        log.next += 1;
    }
    assert_eq!(log.store.clients_len(), COORD_CLIENTS_MAX);
    register(&mut log);
    assert_eq!(log.store.clients_len(), COORD_CLIENTS_MAX);
    assert!(log.store.is_client_registered(first));
    assert!(!log.store.is_client_registered(second));
}

// ---- store: snapshots and events ------------------------------------------------------------

#[test]
fn snapshot_round_trip_and_refusals() {
    let mut log = Log::new();
    let client = register(&mut log);
    let lease = log.lease(10);
    log.apply(put("a", "1", Expect::Any, Some(lease))).unwrap();
    log.command(&stamped(client, 1, 1, put("b", "2", Expect::Any, None)))
        .unwrap();
    log.store.drain_events();
    log.store.drain_lease_changes();
    let bytes = log.store.to_snapshot();
    let restored = CoordStore::from_snapshot(&bytes).unwrap();
    assert_eq!(restored, log.store);
    // The restored store deduplicates as the original did.
    let mut restored_log = Log {
        store: restored,
        next: log.next,
    };
    assert_eq!(
        restored_log.command(&stamped(client, 1, 1, put("b", "2", Expect::Any, None))),
        Ok(CoordReply::Put {
            revision: 4,
            create_revision: 4
        })
    );
    assert!(matches!(
        CoordStore::from_snapshot(&bytes[..bytes.len() - 3]),
        Err(crate::MasterError::CoordSnapshot { .. })
    ));
    assert!(CoordStore::from_snapshot(&[0xff; 40]).is_err());
}

#[test]
fn event_queue_overflow_drops_whole_old_revisions_and_says_so() {
    let mut log = Log::new();
    let n = crate::limits::COORD_EVENTS_QUEUED_MAX + 10;
    for i in 0..n {
        log.store
            .apply(
                log.next,
                &put(&format!("k{}", i % 100), "v", Expect::Any, None),
            )
            .unwrap();
        log.next += 1;
    }
    let drained = log.store.drain_events();
    assert_eq!(drained.lost_through, Some(10));
    assert_eq!(drained.events.len(), n - 10);
    assert_eq!(drained.events[0].revision, 11);
    assert_eq!(log.store.drain_events(), DrainedEvents::default());
}

// ---- lease clock ----------------------------------------------------------------------------

fn granted(lease: u64, ttl_s: u64) -> LeaseChanges {
    LeaseChanges {
        changes: vec![LeaseChange::Granted {
            lease: LeaseId(lease),
            ttl_ms: ttl_s * 1000,
        }],
        lost: false,
    }
}

#[test]
fn keep_alive_extends_to_now_plus_ttl() {
    let mut clock = LeaseClock::new();
    clock.handle_changes(secs(100), &granted(1, 10), []);
    assert_eq!(clock.deadline(LeaseId(1)), Some(secs(110)));
    assert_eq!(clock.handle_keep_alive(secs(105), LeaseId(1)), Ok(secs(10)));
    assert_eq!(clock.poll_timeout(), Some(secs(115)));
    assert!(clock.due(secs(114)).is_empty());
    assert_eq!(clock.due(secs(115)), vec![LeaseId(1)]);
    assert_eq!(
        clock.handle_keep_alive(secs(115), LeaseId(2)),
        Err(CoordError::UnknownLease { lease: LeaseId(2) })
    );
}

#[test]
fn a_due_lease_is_not_kept_alive_and_is_proposed_again_until_applied() {
    let mut clock = LeaseClock::new();
    clock.handle_changes(secs(0), &granted(1, 10), []);
    assert_eq!(clock.due(secs(10)), vec![LeaseId(1)]);
    assert!(!clock.is_live(LeaseId(1)));
    assert_eq!(
        clock.handle_keep_alive(secs(10), LeaseId(1)),
        Err(CoordError::LeaseExpiring { lease: LeaseId(1) })
    );
    assert!(clock.due(secs(10)).is_empty());
    // The proposal was lost: proposed again after the retry interval.
    assert_eq!(
        clock.due(secs(10) + COORD_EXPIRE_RETRY_INTERVAL),
        vec![LeaseId(1)]
    );
    // Applied: gone.
    clock.handle_changes(
        secs(12),
        &LeaseChanges {
            changes: vec![LeaseChange::Ended { lease: LeaseId(1) }],
            lost: false,
        },
        [],
    );
    assert!(clock.is_empty());
    assert_eq!(clock.poll_timeout(), None);
}

#[test]
fn a_new_leader_gives_every_lease_its_ttl_plus_a_grace() {
    let mut clock = LeaseClock::new();
    // Leases that the old leader was about to expire survive a failover.
    clock.on_become_leader(
        secs(50),
        secs(5),
        [(LeaseId(3), secs(10)), (LeaseId(4), secs(30))],
    );
    assert_eq!(clock.deadline(LeaseId(3)), Some(secs(65)));
    assert_eq!(clock.deadline(LeaseId(4)), Some(secs(85)));
    // A keep-alive during the grace never shortens it.
    clock.handle_keep_alive(secs(51), LeaseId(3)).unwrap();
    assert_eq!(clock.deadline(LeaseId(3)), Some(secs(65)));
    clock.handle_keep_alive(secs(60), LeaseId(3)).unwrap();
    assert_eq!(clock.deadline(LeaseId(3)), Some(secs(70)));
    clock.clear();
    assert!(clock.due(secs(1000)).is_empty());
}

#[test]
fn lost_changes_resynchronize_from_the_store() {
    let mut clock = LeaseClock::new();
    clock.handle_changes(secs(0), &granted(1, 10), []);
    clock.handle_changes(secs(0), &granted(2, 10), []);
    clock.handle_keep_alive(secs(5), LeaseId(1)).unwrap();
    clock.handle_changes(
        secs(6),
        &LeaseChanges {
            changes: vec![],
            lost: true,
        },
        [(LeaseId(1), secs(10)), (LeaseId(3), secs(20))],
    );
    assert_eq!(clock.deadline(LeaseId(1)), Some(secs(15)), "kept");
    assert_eq!(clock.deadline(LeaseId(2)), None, "gone from the store");
    assert_eq!(clock.deadline(LeaseId(3)), Some(secs(26)), "new");
}

#[test]
fn due_returns_a_bounded_batch_in_deadline_order() {
    let mut clock = LeaseClock::new();
    let n = crate::limits::COORD_EXPIRE_LEASES_PER_OP_MAX as u64 + 5;
    for i in 0..n {
        clock.handle_changes(secs(i), &granted(i + 1, 1), []);
    }
    let first = clock.due(secs(10_000));
    assert_eq!(first.len(), crate::limits::COORD_EXPIRE_LEASES_PER_OP_MAX);
    assert_eq!(first[0], LeaseId(1));
    assert!(first.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(clock.due(secs(10_000)).len(), 5);
}

// ---- watches --------------------------------------------------------------------------------

fn drained(events: Vec<WatchEvent>) -> DrainedEvents {
    DrainedEvents {
        events,
        lost_through: None,
    }
}

fn put_event(revision: u64, key: &str) -> WatchEvent {
    WatchEvent {
        revision,
        key: key.into(),
        change: Change::Put {
            value: key.as_bytes().to_vec(),
            create_revision: revision,
            lease: None,
        },
    }
}

fn events_of<S: Clone>(out: &[WatchOutput<S>]) -> Vec<(u64, u64, Vec<String>)> {
    out.iter()
        .filter_map(|o| match o {
            WatchOutput::Events {
                watch_id,
                seq,
                events,
                ..
            } => Some((
                *watch_id,
                *seq,
                events.iter().map(|e| e.key.clone()).collect(),
            )),
            WatchOutput::Ended { .. } => None,
        })
        .collect()
}

#[test]
fn watches_get_matching_events_numbered_from_a_confirmation() {
    let mut hub: WatchHub<&str> = WatchHub::new(0);
    let ack = hub
        .handle_watch("s", 1, KeySelector::Prefix("/apps/".into()), None)
        .unwrap();
    assert_eq!(events_of(&ack), vec![(1, 0, vec![])]);
    hub.handle_watch("s", 2, KeySelector::Key("/leader".into()), None)
        .unwrap();
    let out = hub.handle_applied(
        drained(vec![
            put_event(1, "/apps/a"),
            put_event(1, "/leader"),
            put_event(2, "/leaderx"),
            put_event(3, "/apps/b"),
        ]),
        3,
    );
    assert_eq!(
        events_of(&out),
        vec![
            (1, 1, vec!["/apps/a".to_string(), "/apps/b".to_string()]),
            (2, 1, vec!["/leader".to_string()])
        ]
    );
}

#[test]
fn a_watch_from_a_past_revision_replays_the_history() {
    let mut hub: WatchHub<&str> = WatchHub::new(10);
    assert_eq!(hub.oldest_revision(), 11);
    hub.handle_applied(
        drained(vec![
            put_event(11, "a"),
            put_event(12, "b"),
            put_event(13, "a"),
        ]),
        14,
    );
    let out = hub
        .handle_watch("s", 7, KeySelector::Prefix(String::new()), Some(12))
        .unwrap();
    assert_eq!(
        events_of(&out),
        vec![(7, 0, vec!["b".to_string(), "a".to_string()])]
    );
    assert_eq!(
        hub.handle_watch("s", 8, KeySelector::Prefix(String::new()), Some(10)),
        Err(CoordError::Compacted {
            oldest_revision: 11
        })
    );
    // A future start only gets events from there.
    hub.handle_watch("s", 9, KeySelector::Key("a".into()), Some(16))
        .unwrap();
    let out = hub.handle_applied(drained(vec![put_event(15, "a"), put_event(16, "a")]), 16);
    let mine: Vec<_> = events_of(&out).into_iter().filter(|e| e.0 == 9).collect();
    assert_eq!(mine, vec![(9, 1, vec!["a".to_string()])]);
}

#[test]
fn the_history_is_bounded_by_whole_revisions() {
    let mut hub: WatchHub<u8> = WatchHub::new(0);
    let events: Vec<_> = (1..=COORD_WATCH_HISTORY_EVENTS_MAX as u64 + 1)
        .map(|r| put_event(r, "k"))
        .collect();
    hub.handle_applied(drained(events), COORD_WATCH_HISTORY_EVENTS_MAX as u64 + 1);
    assert_eq!(hub.oldest_revision(), 2);
    assert!(hub
        .handle_watch(0, 0, KeySelector::Key("k".into()), Some(1))
        .is_err());
    let out = hub
        .handle_watch(0, 0, KeySelector::Key("k".into()), Some(2))
        .unwrap();
    // Replayed in notifications of bounded size.
    let sizes: Vec<usize> = out
        .iter()
        .map(|o| match o {
            WatchOutput::Events { events, .. } => events.len(),
            WatchOutput::Ended { .. } => 0,
        })
        .collect();
    assert!(sizes
        .iter()
        .all(|n| *n <= COORD_WATCH_EVENTS_PER_MESSAGE_MAX));
    assert_eq!(sizes.iter().sum::<usize>(), COORD_WATCH_HISTORY_EVENTS_MAX);
}

#[test]
fn lost_events_end_every_watch() {
    let mut hub: WatchHub<&str> = WatchHub::new(0);
    hub.handle_watch("s", 1, KeySelector::Prefix(String::new()), None)
        .unwrap();
    let out = hub.handle_applied(
        DrainedEvents {
            events: vec![put_event(9, "k")],
            lost_through: Some(8),
        },
        9,
    );
    assert_eq!(
        out,
        vec![WatchOutput::Ended {
            session: "s",
            watch_id: 1,
            reason: WatchEndReason::EventsLost {
                through_revision: 8
            }
        }]
    );
    assert!(hub.is_empty());
    assert_eq!(hub.oldest_revision(), 9);
    // A snapshot install ends them too.
    hub.handle_watch("s", 2, KeySelector::Prefix(String::new()), None)
        .unwrap();
    assert_eq!(hub.reset(50).len(), 1);
    assert_eq!(hub.oldest_revision(), 51);
}

#[test]
fn watches_are_bounded_replaced_and_dropped() {
    let mut hub: WatchHub<&str> = WatchHub::new(0);
    for id in 0..COORD_WATCHES_PER_SESSION_MAX as u64 {
        hub.handle_watch("s", id, KeySelector::Key("k".into()), None)
            .unwrap();
    }
    assert_eq!(
        hub.handle_watch("s", 9999, KeySelector::Key("k".into()), None),
        Err(Limit::WatchesPerSession.exceeded())
    );
    // Re-registering an id (a retry) replaces it and restarts its numbering.
    let again = hub
        .handle_watch("s", 0, KeySelector::Key("j".into()), None)
        .unwrap();
    assert_eq!(events_of(&again), vec![(0, 0, vec![])]);
    assert_eq!(hub.len(), COORD_WATCHES_PER_SESSION_MAX);
    hub.handle_watch("t", 0, KeySelector::Key("k".into()), None)
        .unwrap();
    assert!(hub.handle_unwatch(&"t", 0));
    assert!(!hub.handle_unwatch(&"t", 0));
    assert_eq!(hub.drop_session(&"s"), COORD_WATCHES_PER_SESSION_MAX);
    hub.handle_watch("u", 5, KeySelector::Key("k".into()), None)
        .unwrap();
    assert_eq!(hub.drop_all(), vec![("u", 5)]);
    assert!(hub
        .handle_applied(drained(vec![put_event(1, "k")]), 1)
        .is_empty());
    assert_eq!(
        hub.handle_watch("u", 1, KeySelector::Key(String::new()), None),
        Err(CoordError::EmptyKey)
    );
}

// ---- wire -----------------------------------------------------------------------------------

#[test]
fn wire_messages_round_trip_through_postcard() {
    let request = CoordRequestMessage {
        request_id: 7,
        client: Some(ClientId(3)),
        first_unanswered: 5,
        op: put("k", "v", Expect::Version(4), Some(LeaseId(2))),
    };
    let bytes = postcard::to_stdvec(&request).unwrap();
    assert_eq!(
        postcard::from_bytes::<CoordRequestMessage>(&bytes).unwrap(),
        request
    );
    let response = CoordResponseMessage {
        request_id: 7,
        outcome: CoordOutcome::Done(Err(CoordError::ExpectationFailed { current: Some(9) })),
    };
    let bytes = postcard::to_stdvec(&response).unwrap();
    assert_eq!(
        postcard::from_bytes::<CoordResponseMessage>(&bytes).unwrap(),
        response
    );
    use plateau_runtime::Message;
    assert!(CoordRequestMessage::NAME.starts_with("plateau.coord."));
    assert!(WatchEventsMessage::NAME.starts_with("plateau.coord."));
}

// ---- properties -----------------------------------------------------------------------------

/// Operations over a few keys and leases, so that they collide.
fn arb_op() -> impl Strategy<Value = CoordOp> {
    let key = prop_oneof![Just("a"), Just("b"), Just("c/1"), Just("c/2")].prop_map(String::from);
    let lease = prop::option::of((1u64..40).prop_map(LeaseId));
    let expect = prop_oneof![
        Just(Expect::Any),
        Just(Expect::Absent),
        (1u64..40).prop_map(Expect::Version)
    ];
    prop_oneof![
        4 => (key.clone(), any::<u8>(), expect.clone(), lease.clone()).prop_map(|(key, v, expect, lease)| {
            CoordOp::Put { key, value: vec![v], expect, lease }
        }),
        2 => (key.clone(), expect).prop_map(|(key, expect)| CoordOp::Delete { key, expect }),
        1 => key.clone().prop_map(|key| CoordOp::Get { key }),
        1 => (prop_oneof![Just(""), Just("c/")], 0u32..3).prop_map(|(p, limit)| CoordOp::Range {
            prefix: p.into(), after: None, limit
        }),
        2 => (1u64..30).prop_map(|s| CoordOp::GrantLease { ttl_ms: s * 1000, session: "s".into() }),
        1 => (1u64..40).prop_map(|l| CoordOp::RevokeLease { lease: LeaseId(l) }),
        1 => prop::collection::vec((1u64..40).prop_map(LeaseId), 0..4)
            .prop_map(|leases| CoordOp::ExpireLeases { leases }),
        3 => (
            prop::option::of((key.clone(), 1u64..40)),
            prop::collection::vec((key, prop::option::of(any::<u8>())), 0..4),
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

/// A plain reference model of the store's keys and leases.
#[derive(Default)]
struct Reference {
    keys: BTreeMap<String, KeyEntry>,
    leases: BTreeMap<LeaseId, ()>,
}

impl Reference {
    fn end_lease(&mut self, lease: LeaseId) -> u32 {
        let before = self.keys.len();
        self.keys.retain(|_, e| e.lease != Some(lease));
        (before - self.keys.len()) as u32
    }

    fn apply(&mut self, revision: u64, op: &CoordOp) -> CoordResponse {
        match op {
            CoordOp::Put {
                key,
                value,
                expect,
                lease,
            } => {
                let current = self.keys.get(key).map(|e| e.mod_revision);
                if !expect.holds(current) {
                    return Err(CoordError::ExpectationFailed { current });
                }
                if let Some(l) = lease {
                    if !self.leases.contains_key(l) {
                        return Err(CoordError::UnknownLease { lease: *l });
                    }
                }
                let create_revision = self.keys.get(key).map_or(revision, |e| e.create_revision);
                self.keys.insert(
                    key.clone(),
                    KeyEntry {
                        value: value.clone(),
                        mod_revision: revision,
                        create_revision,
                        lease: *lease,
                    },
                );
                Ok(CoordReply::Put {
                    revision,
                    create_revision,
                })
            }
            CoordOp::Delete { key, expect } => {
                let current = self.keys.get(key).map(|e| e.mod_revision);
                if !expect.holds(current) {
                    return Err(CoordError::ExpectationFailed { current });
                }
                Ok(CoordReply::Deleted {
                    revision,
                    existed: self.keys.remove(key).is_some(),
                })
            }
            CoordOp::Get { key } => Ok(CoordReply::Value {
                revision,
                entry: self.keys.get(key).cloned(),
            }),
            CoordOp::Range { prefix, limit, .. } => {
                let all: Vec<_> = self
                    .keys
                    .iter()
                    .filter(|(k, _)| k.starts_with(prefix.as_str()))
                    .map(|(k, e)| (k.clone(), e.clone()))
                    .collect();
                let limit = if *limit == 0 {
                    usize::MAX
                } else {
                    *limit as usize
                };
                Ok(CoordReply::Range {
                    revision,
                    more: all.len() > limit,
                    entries: all.into_iter().take(limit).collect(),
                })
            }
            CoordOp::GrantLease { ttl_ms, .. } => {
                self.leases.insert(LeaseId(revision), ());
                Ok(CoordReply::LeaseGranted {
                    lease: LeaseId(revision),
                    ttl_ms: *ttl_ms,
                })
            }
            CoordOp::RevokeLease { lease } => {
                if self.leases.remove(lease).is_none() {
                    return Err(CoordError::UnknownLease { lease: *lease });
                }
                Ok(CoordReply::LeaseRevoked {
                    revision,
                    keys_deleted: self.end_lease(*lease),
                })
            }
            CoordOp::ExpireLeases { leases } => {
                let mut expired = Vec::new();
                for lease in leases {
                    if self.leases.remove(lease).is_some() {
                        self.end_lease(*lease);
                        expired.push(*lease);
                    }
                }
                Ok(CoordReply::LeasesExpired {
                    revision,
                    leases: expired,
                })
            }
            CoordOp::Txn { guard, ops } => {
                let mut seen = std::collections::BTreeSet::new();
                if let Some(op) = ops.iter().find(|op| !seen.insert(op.key())) {
                    return Err(CoordError::DuplicateKey {
                        key: op.key().to_string(),
                    });
                }
                if let Some(guard) = guard {
                    let current = self.keys.get(&guard.key).map(|e| e.create_revision);
                    if current != Some(guard.epoch) {
                        return Err(CoordError::StaleGuard {
                            key: guard.key.clone(),
                            epoch: guard.epoch,
                            current,
                        });
                    }
                }
                for op in ops {
                    match op {
                        TxnOp::Put { key, value } => {
                            let create_revision =
                                self.keys.get(key).map_or(revision, |e| e.create_revision);
                            self.keys.insert(
                                key.clone(),
                                KeyEntry {
                                    value: value.clone(),
                                    mod_revision: revision,
                                    create_revision,
                                    lease: None,
                                },
                            );
                        }
                        TxnOp::Delete { key } => {
                            self.keys.remove(key);
                        }
                    }
                }
                Ok(CoordReply::Txn { revision })
            }
            CoordOp::RegisterClient { .. } => unreachable!("not generated"),
        }
    }
}

/// Applies `ops` at increasing revisions with gaps of `gaps[i] + 1`.
fn revisions(gaps: &[u8]) -> impl Iterator<Item = u64> + '_ {
    gaps.iter().scan(0u64, |r, g| {
        *r += u64::from(*g) + 1;
        Some(*r)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The store answers as the plain reference does, keeps its invariants, and its events
    /// replayed on a copy of the keys give its keys.
    #[test]
    fn the_store_agrees_with_a_reference(
        ops in prop::collection::vec(arb_op(), 1..80),
        gaps in prop::collection::vec(0u8..3, 80),
    ) {
        let mut store = CoordStore::new();
        let mut reference = Reference::default();
        let mut replayed: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        for (op, revision) in ops.iter().zip(revisions(&gaps)) {
            let got = store.apply(revision, op);
            prop_assert_eq!(&got, &reference.apply(revision, op), "{:?} at {}", op, revision);
            prop_assert!(store.check_invariants().is_ok(), "{:?}", store.check_invariants());
            for event in store.drain_events().events {
                prop_assert_eq!(event.revision, revision);
                match event.change {
                    Change::Put { value, .. } => { replayed.insert(event.key, value); }
                    Change::Delete => { prop_assert!(replayed.remove(&event.key).is_some()); }
                }
            }
        }
        let keys: BTreeMap<String, KeyEntry> =
            store.prefix("").map(|(k, e)| (k.to_string(), e.clone())).collect();
        prop_assert_eq!(&keys, &reference.keys);
        let values: BTreeMap<String, Vec<u8>> =
            keys.into_iter().map(|(k, e)| (k, e.value)).collect();
        prop_assert_eq!(values, replayed);
    }

    /// A snapshot restores a store equal to the original, at any point.
    #[test]
    fn snapshot_round_trip_equals_the_original(
        ops in prop::collection::vec(arb_op(), 0..60),
        gaps in prop::collection::vec(0u8..3, 60),
    ) {
        let mut store = CoordStore::new();
        for (op, revision) in ops.iter().zip(revisions(&gaps)) {
            let _ = store.apply(revision, op);
        }
        store.drain_events();
        store.drain_lease_changes();
        let restored = CoordStore::from_snapshot(&store.to_snapshot()).unwrap();
        prop_assert_eq!(restored, store);
    }

    /// Epochs only grow: lease ids, and the creation revision of each newly created key, are
    /// above every one before.
    #[test]
    fn epochs_are_monotonic(
        ops in prop::collection::vec(arb_op(), 1..80),
        gaps in prop::collection::vec(0u8..3, 80),
    ) {
        let mut store = CoordStore::new();
        let mut last_epoch = 0;
        for (op, revision) in ops.iter().zip(revisions(&gaps)) {
            match store.apply(revision, op) {
                Ok(CoordReply::LeaseGranted { lease, .. }) => {
                    prop_assert!(lease.0 > last_epoch);
                    last_epoch = lease.0;
                }
                Ok(CoordReply::Put { revision: r, create_revision }) if r == create_revision => {
                    prop_assert!(create_revision > last_epoch);
                    last_epoch = create_revision;
                }
                _ => {}
            }
        }
    }

    /// Retried stamped writes (each request sent 1 to 3 times, the copies anywhere later in
    /// the log) give the same keys and leases as sending each once, and every copy gets the
    /// first answer.
    #[test]
    fn retries_apply_once(
        ops in prop::collection::vec(arb_op(), 1..40),
        copies in prop::collection::vec((0usize..3, 0usize..6), 40),
    ) {
        // The log with retries: entry i is (request id, op); copies go a few places later.
        let mut log: Vec<(u64, &CoordOp)> = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            log.push((i as u64 + 1, op));
        }
        for (i, (n, delay)) in copies.iter().enumerate().take(ops.len()) {
            for _ in 0..*n {
                let at = (i + 1 + delay).min(log.len());
                log.insert(at, (i as u64 + 1, &ops[i]));
            }
        }
        let mut with = CoordStore::new();
        let mut without = CoordStore::new();
        let client = ClientId(1);
        let register = CoordOp::RegisterClient { label: "c".into() };
        with.apply(1, &register).unwrap();
        without.apply(1, &register).unwrap();
        let mut first: BTreeMap<u64, CoordResponse> = BTreeMap::new();
        for (index, (request_id, op)) in log.iter().enumerate() {
            let revision = index as u64 + 2;
            let command = CoordCommand {
                stamp: Some(RequestStamp { client, request_id: *request_id, first_unanswered: 1 }),
                op: (*op).clone(),
            };
            let answer = with.apply_command(revision, &command);
            match first.get(request_id) {
                // Reads are answered afresh; writes with their first answer.
                Some(earlier) if !op.is_read() => prop_assert_eq!(&answer, earlier),
                Some(_) => {}
                None => {
                    // The first copy: apply it once, at the same revision, to the other store.
                    let once = without.apply_command(revision, &command);
                    prop_assert_eq!(&answer, &once);
                    first.insert(*request_id, answer);
                }
            }
        }
        let keys = |s: &CoordStore| s.prefix("").map(|(k, e)| (k.to_string(), e.clone())).collect::<Vec<_>>();
        prop_assert_eq!(keys(&with), keys(&without));
        let leases = |s: &CoordStore| s.leases().map(|(id, l)| (id, l.clone())).collect::<Vec<_>>();
        prop_assert_eq!(leases(&with), leases(&without));
    }

    /// A prefix watch registered at the start sees exactly the store's events for its keys.
    #[test]
    fn a_watch_sees_exactly_its_events(
        ops in prop::collection::vec(arb_op(), 1..60),
    ) {
        let mut store = CoordStore::new();
        let mut hub: WatchHub<u8> = WatchHub::new(0);
        hub.handle_watch(0, 0, KeySelector::Prefix("c/".into()), None).unwrap();
        let mut all = Vec::new();
        let mut seen = Vec::new();
        let mut next_seq = 1;
        for (i, op) in ops.iter().enumerate() {
            let _ = store.apply(i as u64 + 1, op);
            let drained = store.drain_events();
            all.extend(drained.events.iter().filter(|e| e.key.starts_with("c/")).cloned());
            for out in hub.handle_applied(drained, store.revision()) {
                match out {
                    WatchOutput::Events { seq, events, .. } => {
                        prop_assert_eq!(seq, next_seq);
                        next_seq += 1;
                        seen.extend(events);
                    }
                    WatchOutput::Ended { .. } => prop_assert!(false, "no loss expected"),
                }
            }
        }
        prop_assert_eq!(seen, all);
    }
}
