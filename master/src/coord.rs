//! The coordination store: what frameworks used ZooKeeper for — durable shared state,
//! compare-and-set, watches, leases and leader election — as a key space of the masters'
//! replicated log.
//!
//! # Concepts
//!
//! - **Keys** are UTF-8 strings holding byte values. Each carries its modification revision
//!   (what compare-and-set compares) and creation revision, and may belong to a lease.
//! - **Revisions** are log indices: every operation, reads included, is one log entry, and
//!   the store applies it at its index. A read at revision `r` sees exactly the writes
//!   before `r`, so every operation is linearizable. Indices of other entries of the log
//!   (the master registry) are gaps, which is fine: revisions only need to increase.
//! - **Leases** belong to a session and live while it sends keep-alives to the leader. A
//!   lease's id is the revision that granted it; when it ends (revoked, or expired on the
//!   leader's clock) its keys are deleted with it.
//! - **Fencing**: an election key's creation revision is its holder's epoch; the master
//!   refuses framework calls stamped with any other (see [`Fencing`] for the recipe).
//! - **Transactions** ([`CoordOp::Txn`]) write several keys all or nothing at one revision,
//!   guarded by an election key and epoch: how a framework leader writes its state, so that a
//!   deposed leader's write can never land.
//! - **Watches** follow a key or a prefix from a revision on; the leader sends events.
//! - **Retries**: a registered client stamps its writes with a request id; the store answers
//!   a retried write with its first answer instead of applying it twice.
//!
//! # What is pure, and who runs what
//!
//! Everything here is pure: no I/O, no clock (`now` comes in as an argument), no randomness.
//!
//! | part | runs on | state |
//! |---|---|---|
//! | [`CoordStore`] | every master, applying committed entries | replicated, in snapshots |
//! | [`WatchHub`] | every master (history); watches on the leader only | in memory |
//! | [`LeaseClock`] | the leader only | in memory; rebuilt with a grace on election |
//!
//! # How the replicated master drives it
//!
//! 1. **Requests.** On a [`CoordRequestMessage`]: a follower answers
//!    [`CoordOutcome::NotLeader`]. The leader refuses a leader-only op
//!    ([`CoordError::LeaderOnly`]) and an invalid one ([`CoordOp::validate`]) at once, and
//!    otherwise proposes a [`CoordCommand`] (stamped with `(client, request_id,
//!    first_unanswered)` when the request names a client), postcard-encoded in a log entry.
//! 2. **Apply.** For each committed entry, in order, every master calls
//!    [`CoordStore::apply_command`] with the entry's log index; the leader sends the answer to
//!    the client waiting on that index. After applying a batch: drain
//!    [`CoordStore::drain_events`] into [`WatchHub::handle_applied`] (every master; the
//!    leader sends the outputs), and [`CoordStore::drain_lease_changes`] into
//!    [`LeaseClock::handle_changes`] (the leader; followers drop them).
//! 3. **Leases.** On [`LeaseKeepAliveMessage`] the leader calls
//!    [`LeaseClock::handle_keep_alive`]. It keeps a timer at [`LeaseClock::poll_timeout`];
//!    when it fires, [`LeaseClock::due`] lists leases to expire and the leader proposes
//!    [`CoordOp::ExpireLeases`] with them (unstamped).
//! 4. **Leadership.** On becoming leader: drain and drop the lease changes, then
//!    [`LeaseClock::on_become_leader`]`(now, grace, store.lease_ttls())`, with `grace` at
//!    least the election timeout plus a keep-alive interval. On losing it:
//!    [`LeaseClock::clear`], and [`WatchHub::drop_all`], telling each session
//!    [`WatchEnd::NotLeader`].
//! 5. **Snapshots.** [`CoordStore::to_snapshot`] / [`CoordStore::from_snapshot`]; after
//!    installing one, [`WatchHub::reset`] at the store's revision.
//! 6. **Fencing.** On a framework call carrying a [`FencingToken`], check
//!    `store.fencing().check(&token.key, token.epoch)` against the applied store, and refuse
//!    the call on `Err` (when [`StaleEpoch::is_ahead`], the framework retries). The master
//!    should also pin each framework to one election key (the first it registered with), so
//!    that a framework cannot present another framework's key.
//!
//! # Example
//!
//! A Marathon campaigns, wins, and is fenced off once its lease expires and a second
//! instance wins:
//!
//! ```
//! use plateau_master::coord::{CoordOp, CoordReply, CoordStore, Expect, LeaseId};
//!
//! let mut store = CoordStore::new();
//! let grant = CoordOp::GrantLease { ttl_ms: 10_000, session: "marathon-1".into() };
//! let Ok(CoordReply::LeaseGranted { lease, .. }) = store.apply(1, &grant) else { panic!() };
//! let campaign = |lease| CoordOp::Put {
//!     key: "/marathon/leader".into(),
//!     value: b"marathon-1:8080".to_vec(),
//!     expect: Expect::Absent,
//!     lease: Some(lease),
//! };
//! let Ok(CoordReply::Put { revision: epoch, .. }) = store.apply(2, &campaign(lease)) else { panic!() };
//! assert!(store.fencing().check("/marathon/leader", epoch).is_ok());
//!
//! // Marathon 1 pauses; the leader expires its lease, and with it the key.
//! store.apply(3, &CoordOp::ExpireLeases { leases: vec![lease] }).unwrap();
//! let grant2 = CoordOp::GrantLease { ttl_ms: 10_000, session: "marathon-2".into() };
//! store.apply(4, &grant2).unwrap();
//! store.apply(5, &campaign(LeaseId(4))).unwrap();
//!
//! // Marathon 1 wakes up: its calls carry epoch 2, the key's epoch is now 5.
//! let stale = store.fencing().check("/marathon/leader", epoch).unwrap_err();
//! assert_eq!(stale.current, Some(5));
//! ```

mod lease_clock;
mod messages;
mod ops;
mod store;
mod watch;

#[cfg(test)]
mod tests;

pub use lease_clock::LeaseClock;
pub use messages::{
    CoordOutcome, CoordRequestMessage, CoordResponseMessage, FencingToken, KeepAliveOutcome,
    LeaderHint, LeaseKeepAliveMessage, LeaseKeepAliveResponseMessage, UnwatchMessage, WatchEnd,
    WatchEndedMessage, WatchEventsMessage, WatchMessage,
};
pub use ops::{
    Change, ClientId, CoordCommand, CoordError, CoordOp, CoordReply, CoordResponse, Expect,
    KeyEntry, KeySelector, LeaseChange, LeaseId, Limit, RequestStamp, TxnOp, WatchEvent,
};
pub use store::{CoordStore, DrainedEvents, Fencing, Holder, Lease, LeaseChanges, StaleEpoch};
pub use watch::{WatchEndReason, WatchHub, WatchOutput};
