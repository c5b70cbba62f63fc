//! Running a framework as one leader and several standbys: the driver's side.
//!
//! A [`SchedulerDriver`](crate::SchedulerDriver) given a [`LeaderConfig`] embeds a
//! [`Coordination`] (a coordination client, an election, the framework's replicated state)
//! and changes three things:
//!
//! 1. **It registers only while leading.** It starts as a standby: it campaigns for the
//!    election key and does not register with the master. Once elected and its state loaded,
//!    it calls [`Scheduler::elected`](crate::Scheduler::elected), then registers (or
//!    re-registers, as a failover, with the framework id kept in its state) carrying the
//!    election's fencing token. Until it leads, and after it is deposed, the master's messages
//!    are ignored (status updates are not acknowledged: the master gives them to the next
//!    leader).
//! 2. **It stamps its calls.** Launches and kills carry the token's epoch; the masters refuse
//!    them from any other epoch.
//! 3. **It holds calls until the writes before them commit** — the rule is automatic and has
//!    no exception: a call to the master (launch, kill, acknowledge, decline, reconcile, ...)
//!    made while some state write ([`Driver::write`](crate::Driver::write)) has not committed
//!    waits for every write made before it, and goes out, in order, when they commit
//!    ([`HeldCalls`]). When a write fails, or leadership ends, the calls held are dropped: they
//!    were decided on a state that may never land.
//!
//! When deposed ([`Scheduler::deposed`](crate::Scheduler::deposed)) the driver stops talking
//! to the master, drops its held calls and its state, and campaigns again as a standby; the
//! scheduler must drop whatever it derived as the leader (its next
//! [`Scheduler::elected`](crate::Scheduler::elected) comes with the state loaded afresh).

use std::collections::VecDeque;
use std::time::Duration;

use plateau_runtime::message::AnyMessage;

use crate::coord::WriteId;
use crate::limits::{COORD_SESSION_TTL_DEFAULT, HELD_CALLS_MAX};

/// The state key (under [`LeaderConfig::state_prefix`]) where the driver keeps the framework
/// id. Keys under `driver/` are the driver's.
pub const FRAMEWORK_ID_KEY: &str = "driver/framework-id";

/// How a framework run as leader + standbys coordinates.
///
/// The coordination store is the masters' replicated log: the masters must run as a group
/// (`MasterProcess::replicated`, even a group of one). A master on a local registry has no
/// store (it answers every coordination request with "no leader"), so a framework with leader
/// election stays a standby there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderConfig {
    /// The election key, e.g. `/marathon/leader`.
    pub election_key: String,
    /// This instance's advertised address (its API's `host:port`): the key's value while it
    /// leads, what standbys proxy to.
    pub address: String,
    /// The prefix of the framework's state, e.g. `/marathon/state/`.
    pub state_prefix: String,
    /// The session's ttl: how long a crashed leader keeps the key.
    pub session_ttl: Duration,
}

impl LeaderConfig {
    /// The election key `/{name}/leader`, the state under `/{name}/state/`, the default ttl.
    pub fn new(name: &str, address: impl Into<String>) -> Self {
        LeaderConfig {
            election_key: format!("/{name}/leader"),
            address: address.into(),
            state_prefix: format!("/{name}/state/"),
            session_ttl: COORD_SESSION_TTL_DEFAULT,
        }
    }

    /// The same with session ttl `ttl`.
    pub fn with_session_ttl(mut self, ttl: Duration) -> Self {
        self.session_ttl = ttl;
        self
    }
}

/// Calls to the master held until the state writes made before them commit. Pure.
///
/// ```
/// use plateau_sdk::coord::WriteId;
/// use plateau_sdk::HeldCalls;
/// use plateau_master::messages::ReviveOffersMessage;
/// use plateau_master::ids::FrameworkId;
///
/// let mut held = HeldCalls::new();
/// let revive = || Box::new(ReviveOffersMessage { framework_id: FrameworkId::new("f") });
/// held.hold(WriteId(1), revive()).unwrap();
/// held.hold(WriteId(2), revive()).unwrap();
/// assert_eq!(held.release(WriteId(1)).len(), 1);
/// assert_eq!(held.len(), 1);
/// assert_eq!(held.drop_all(), 1);
/// ```
#[derive(Default)]
pub struct HeldCalls {
    /// (the last write made before the call, the call), in the order made.
    queue: VecDeque<(WriteId, Box<dyn AnyMessage>)>,
}

impl std::fmt::Debug for HeldCalls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldCalls")
            .field("len", &self.queue.len())
            .finish()
    }
}

/// The call was not held: [`HELD_CALLS_MAX`] are held already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldCallsFull;

impl HeldCalls {
    /// Nothing held.
    pub fn new() -> Self {
        Self::default()
    }

    /// Holds `call` until `after` (the last write made before it) commits.
    pub fn hold(&mut self, after: WriteId, call: Box<dyn AnyMessage>) -> Result<(), HeldCallsFull> {
        if self.queue.len() >= HELD_CALLS_MAX {
            return Err(HeldCallsFull);
        }
        debug_assert!(
            self.queue.back().is_none_or(|(w, _)| *w <= after),
            "writes are made in order"
        );
        self.queue.push_back((after, call));
        Ok(())
    }

    /// Every write up to `committed` committed: the calls that waited for them, in order.
    pub fn release(&mut self, committed: WriteId) -> Vec<Box<dyn AnyMessage>> {
        let mut out = Vec::new();
        while self.queue.front().is_some_and(|(w, _)| *w <= committed) {
            out.push(self.queue.pop_front().expect("front exists").1);
        }
        out
    }

    /// Drops every call held (a write failed, or leadership ended); how many.
    pub fn drop_all(&mut self) -> usize {
        let n = self.queue.len();
        self.queue.clear();
        n
    }

    /// Calls held.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}
