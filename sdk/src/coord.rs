//! The framework side of the masters' coordination service: a client that follows the leading
//! master, leader election with fencing, and a framework's replicated state — what Marathon
//! and Chronos need to run as one leader and several standbys.
//!
//! # Concepts
//!
//! The masters keep a coordination store (see `plateau_master::coord`): keys with revisions,
//! compare-and-set, leases, watches, guarded transactions. A framework run as several
//! instances uses it three ways:
//!
//! 1. **[`CoordClient`]** talks to the store: it follows the leading master, registers for
//!    exactly-once retries, retries requests with backoff, holds a **session lease** (keep-alive
//!    every third of its ttl; lost when a keep-alive is refused or none is confirmed within the
//!    ttl), and keeps **watches** that resume after a master failover without losing or
//!    repeating events.
//! 2. **[`Election`]** campaigns for an election key on the session's lease. The winner gets a
//!    [`FencingToken`](plateau_master::coord::FencingToken) (the key and its epoch, the key's
//!    creation revision) and is **deposed** as soon as it can no longer be sure the masters keep
//!    its lease — never later than the masters could let a standby win.
//! 3. **[`ReplicatedState`]** is the leader's state under a key prefix: loaded at election,
//!    written as guarded transactions that land only while the epoch holds, committed in order.
//!
//! [`Coordination`] wires the three together (campaign → elected → load → lead → write → on a
//! failed write step down → on deposition drop the state and campaign again), and the
//! [`SchedulerDriver`](crate::SchedulerDriver) embeds one when given a
//! [`LeaderConfig`](crate::LeaderConfig): see the crate docs for the framework's recipe.
//!
//! # What is pure
//!
//! [`CoordClient`], [`Election`], [`ReplicatedState`] and [`Coordination`] are pure: `handle_*`
//! inputs with `now` (time since the runtime clock's origin), `poll_*` outputs (messages to
//! send, events, the next deadline), a generator seeded by configuration. [`host`] is the thin
//! glue that drives them from a process's `Context`.
//!
//! # Example
//!
//! A candidate elected against a fake master, with a fake clock:
//!
//! ```
//! use std::time::Duration;
//! use plateau_master::coord::*;
//! use plateau_sdk::coord::*;
//! use plateau_sdk::Masters;
//!
//! let master: plateau_runtime::Upid = "master@10.0.0.1:5050".parse().unwrap();
//! let mut coordination = Coordination::new(
//!     CoordClientConfig { masters: Masters::one(master.clone()), label: "marathon-1".into(), seed: 1 },
//!     ElectionConfig::new("/marathon/leader", "10.0.0.5:8080"),
//!     "/marathon/state/".into(),
//! );
//! let mut store = CoordStore::new();
//! let mut revision = 0;
//! let now = Duration::from_secs(1);
//! coordination.campaign(now);
//! // The fake master: apply each request to a store, answer at once.
//! let mut leading = None;
//! for _ in 0..20 {
//!     while let Some(t) = coordination.poll_transmit() {
//!         let Outgoing::Request(request) = t.message else { continue };
//!         revision += 1;
//!         let stamp = request.client.map(|client| RequestStamp {
//!             client, request_id: request.request_id, first_unanswered: request.first_unanswered,
//!         });
//!         let answer = store.apply_command(revision, &CoordCommand { stamp, op: request.op });
//!         let response = CoordResponseMessage { request_id: request.request_id, outcome: CoordOutcome::Done(answer) };
//!         coordination.handle_response(now, &master, response);
//!     }
//!     while let Some(event) = coordination.poll_event() {
//!         if let CoordinationEvent::Leading { token } = event { leading = Some(token) }
//!     }
//! }
//! let token = leading.expect("elected");
//! assert_eq!(token.key, "/marathon/leader");
//! assert!(coordination.is_leading(now));
//! // Its writes are guarded by the token.
//! let write = coordination.write(now, vec![StateOp::Put { key: "apps/web".into(), value: b"{}".to_vec() }]).unwrap();
//! let Outgoing::Request(txn) = coordination.poll_transmit().unwrap().message else { panic!() };
//! assert!(matches!(txn.op, CoordOp::Txn { guard: Some(ref g), .. } if *g == token));
//! # let _ = write;
//! ```

pub mod client;
pub mod coordination;
pub mod election;
pub mod host;
pub mod state;

#[cfg(test)]
mod tests;

pub use client::{
    ClientError, ClientEvent, CoordClient, CoordClientConfig, Outgoing, RequestError, RequestId,
    SessionInfo, SessionLost, Transmit, WatchId, WatchLost,
};
pub use coordination::{Coordination, CoordinationEvent};
pub use election::{Deposed, Election, ElectionConfig, ElectionEvent};
pub use state::{ReplicatedState, StateError, StateEvent, StateOp, WriteId};
