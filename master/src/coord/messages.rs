//! The wire protocol between coordination clients (the SDK's client, inside Marathon,
//! Chronos and user frameworks) and the masters. Wire names are `plateau.coord.<Name>`;
//! never change one once released.
//!
//! Every request may be sent to any master: a follower answers with a redirect naming the
//! leader. Delivery is at most once, so the client retries on a timeout: a write stamped
//! with a registered client's request id is applied at most once however often it is sent
//! (see [`RequestStamp`](super::RequestStamp)); a read is simply answered again; a
//! keep-alive, a watch and an unwatch are idempotent.

use plateau_runtime::{Message, Upid};
use serde::{Deserialize, Serialize};

use super::ops::{ClientId, CoordError, CoordOp, CoordResponse, KeySelector, LeaseId, WatchEvent};
use super::watch::WatchEndReason;

/// Where the leading master is, as far as the answering master knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderHint {
    /// The leading master process, if one is known.
    pub leader: Option<Upid>,
    /// Its election term (a client follows a hint only if the term is not older than the
    /// one it follows).
    pub term: u64,
}

/// A client's operation. Answered with a [`CoordResponseMessage`] of the same `request_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoordRequestMessage {
    /// The client's number for the request (a retry reuses it).
    pub request_id: u64,
    /// The registered client sending it (`None` for `RegisterClient`, or a client that does
    /// without deduplication). With it, the master stamps the log entry with
    /// `(client, request_id, first_unanswered)`.
    pub client: Option<ClientId>,
    /// The lowest request id the client still waits for (see
    /// [`RequestStamp::first_unanswered`](super::RequestStamp::first_unanswered)).
    pub first_unanswered: u64,
    /// The operation (never a leader-only one: those are refused with
    /// [`CoordError::LeaderOnly`]).
    pub op: CoordOp,
}

/// What became of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CoordOutcome {
    /// Applied (or refused) by the store; the answer.
    Done(CoordResponse),
    /// This master does not lead: send it there. The request was not proposed.
    NotLeader(LeaderHint),
}

/// The answer to a [`CoordRequestMessage`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoordResponseMessage {
    /// The request answered.
    pub request_id: u64,
    /// What became of it.
    pub outcome: CoordOutcome,
}

/// Keeps a lease alive: on the leader, the lease then runs until now + its ttl. Send it
/// several times per ttl (a third of it is usual).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseKeepAliveMessage {
    /// The lease.
    pub lease: LeaseId,
}

/// What became of a keep-alive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeepAliveOutcome {
    /// The lease lives for another `ttl_ms` from when the leader received the keep-alive.
    Alive {
        /// Its time to live, in milliseconds.
        ttl_ms: u64,
    },
    /// It cannot be kept alive (unknown, or expiring): its holder must stop acting on it.
    Refused(CoordError),
    /// This master does not lead.
    NotLeader(LeaderHint),
}

/// The answer to a [`LeaseKeepAliveMessage`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseKeepAliveResponseMessage {
    /// The lease.
    pub lease: LeaseId,
    /// What became of the keep-alive.
    pub outcome: KeepAliveOutcome,
}

/// Watch keys: the leader answers with [`WatchEventsMessage`]s (the first, `seq` 0, at once)
/// or a [`WatchEndedMessage`]. Sending it again with the same `watch_id` replaces the watch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchMessage {
    /// The client's id for the watch.
    pub watch_id: u64,
    /// The keys.
    pub selector: KeySelector,
    /// The first revision whose events are wanted (usually a read's revision + 1); `None`:
    /// from the next one.
    pub start_revision: Option<u64>,
}

/// Stop a watch (no answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnwatchMessage {
    /// The client's id for the watch.
    pub watch_id: u64,
}

/// Events for a watch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchEventsMessage {
    /// The client's id for the watch.
    pub watch_id: u64,
    /// This notification's number for the watch: 0, 1, 2, ... A gap means one was lost:
    /// watch again from the last revision received + 1.
    pub seq: u64,
    /// The events, in revision order.
    pub events: Vec<WatchEvent>,
}

/// Why a watch ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WatchEnd {
    /// The watch was refused (a limit, or a start revision no longer kept).
    Refused(CoordError),
    /// Events were lost before they reached it.
    Hub(WatchEndReason),
    /// This master does not lead (or no longer does).
    NotLeader(LeaderHint),
}

/// A watch ended: read again and watch anew (at the leader).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchEndedMessage {
    /// The client's id for the watch.
    pub watch_id: u64,
    /// Why.
    pub reason: WatchEnd,
}

/// The fencing token a framework stamps its calls to the master with (launch, kill, accept):
/// its election key and the epoch it won it at. See [`Fencing`](super::Fencing).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FencingToken {
    /// The election key.
    pub key: String,
    /// The revision at which the framework created the key.
    pub epoch: u64,
}

macro_rules! wire {
    ($($ty:ident => $name:literal),* $(,)?) => {
        $(impl Message for $ty { const NAME: &'static str = $name; })*
    };
}

wire! {
    CoordRequestMessage => "plateau.coord.CoordRequestMessage",
    CoordResponseMessage => "plateau.coord.CoordResponseMessage",
    LeaseKeepAliveMessage => "plateau.coord.LeaseKeepAliveMessage",
    LeaseKeepAliveResponseMessage => "plateau.coord.LeaseKeepAliveResponseMessage",
    WatchMessage => "plateau.coord.WatchMessage",
    UnwatchMessage => "plateau.coord.UnwatchMessage",
    WatchEventsMessage => "plateau.coord.WatchEventsMessage",
    WatchEndedMessage => "plateau.coord.WatchEndedMessage",
}
