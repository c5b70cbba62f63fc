//! [`CoordClient`]: the pure core of a coordination client — requests with exactly-once retries,
//! a session lease, watches that resume — following the leading master.
//!
//! Pure: time comes in as `now` (time since the runtime clock's origin), randomness from a
//! generator seeded by the configuration, and everything the client wants done comes out of
//! [`CoordClient::poll_transmit`] (messages to send), [`CoordClient::poll_event`] (what the
//! owner learns) and [`CoordClient::poll_timeout`] (when to call
//! [`CoordClient::handle_timeout`]). [`super::host`] drives it from a process's `Context`.
//!
//! # Following the leader
//!
//! The client follows the leading master with a [`MasterDetector`] (the driver's and the
//! slave's rules): it asks every master of its list who leads, and every redirect a follower
//! answers ([`CoordOutcome::NotLeader`]) is news for the detector. A master that does not answer
//! in time (a request, a keep-alive, a watch's confirmation) is *suspected*: the detector
//! forgets it and asks again (it may well be followed again). On every change of leader, what
//! is in flight is sent again to the new one.
//!
//! # Requests, exactly once
//!
//! The client registers (`RegisterClient`) before its first request and stamps every request
//! with its client id, a request id, and the lowest request id it still waits for
//! (`first_unanswered`). A request unanswered after [`COORD_REQUEST_TIMEOUT_MIN`] (doubling up
//! to [`COORD_REQUEST_TIMEOUT_MAX`]) is sent again, with the same id: the store answers a retried
//! write with its first answer instead of applying it twice. After
//! [`COORD_REQUEST_ATTEMPTS_MAX`] sends or [`COORD_REQUEST_DEADLINE`], the request is reported
//! with an unknown outcome ([`RequestError::Unknown`]): a write may or may not have applied,
//! and once it is given up, `first_unanswered` moves past it, so that a late copy can never
//! apply afterwards. At most [`COORD_REQUESTS_IN_FLIGHT_MAX`] requests are in flight.
//!
//! # The session lease
//!
//! [`CoordClient::start_session`] grants a lease and keeps it alive every third of its ttl. The
//! client knows a lower bound of how long the leader keeps it: a keep-alive answered
//! `Alive` at the master's receipt of it, which was after it was *sent*, so the lease lives at
//! least until send time + ttl on the master's clock (the grant: its first send + ttl). That
//! bound is [`SessionInfo::valid_until`]. Keep-alive answers do not say which keep-alive they
//! answer, so each is credited to the *oldest* one still unanswered that went to the answering
//! master (messages between two processes arrive in order): a lost keep-alive makes the bound
//! lower, never higher. A lost keep-alive would make every later answer count one keep-alive
//! too early, so when an answer comes while several keep-alives to that master are unanswered,
//! the client sends the master a *barrier*: a request the masters refuse at once, unproposed
//! (a read of the empty key). Its answer comes after the answers to every keep-alive sent to
//! that master before it, so the keep-alives before it still unanswered then were lost, and
//! are forgotten. (The simulator's duplication fault could credit a duplicated answer to a
//! later keep-alive if several were unanswered at once; real transports do not duplicate, and
//! keep-alives go out a third of a ttl apart.) The session is lost —
//! [`ClientEvent::SessionLost`] — when a keep-alive is refused (the lease is unknown or
//! expiring) or when `valid_until` passes without a newer confirmation.
//!
//! # Watches
//!
//! A watch follows a key or a prefix from a revision. The client remembers where it is (the
//! revision of the last event delivered, and the keys delivered at it), and registers the
//! watch again, from there, with the new leader after a change, after a gap in the
//! notifications' numbers, and after [`COORD_WATCH_REFRESH_INTERVAL`] without a notification
//! (a lost last notification shows no gap; a dead master sends nothing). Events already
//! delivered are never delivered twice. When the masters no longer keep the events it needs
//! (compacted, or lost to an overflow), the watch ends with [`ClientEvent::WatchLost`]: read
//! again, and watch from the read's revision + 1.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::time::Duration;

use plateau_master::coord::{
    ClientId, CoordError, CoordOp, CoordOutcome, CoordReply, CoordRequestMessage,
    CoordResponseMessage, KeepAliveOutcome, KeySelector, LeaseId, LeaseKeepAliveMessage,
    LeaseKeepAliveResponseMessage, UnwatchMessage, WatchEnd, WatchEndReason, WatchEndedMessage,
    WatchEvent, WatchEventsMessage, WatchMessage,
};
use plateau_master::detector::{MasterDetector, Masters};
use plateau_master::limits::COORD_LABEL_BYTES_MAX;
use plateau_master::messages::{LeaderQueryMessage, NewMasterDetectedMessage};
use plateau_runtime::{Rng, Upid};

use crate::limits::{
    COORD_CLIENT_WATCHES_MAX, COORD_KEEP_ALIVES_OUTSTANDING_MAX, COORD_KEEP_ALIVE_ANSWER_TIMEOUT,
    COORD_REQUESTS_IN_FLIGHT_MAX, COORD_REQUESTS_QUEUED_MAX, COORD_REQUEST_ATTEMPTS_MAX,
    COORD_REQUEST_DEADLINE, COORD_REQUEST_TIMEOUT_MAX, COORD_REQUEST_TIMEOUT_MIN,
    COORD_WATCH_REFRESH_INTERVAL,
};

/// A request of this client: also its request id on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// A watch of this client: also its watch id on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WatchId(pub u64);

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// The store refused it; nothing changed.
    Refused(CoordError),
    /// No answer came within the retry budget: a write may or may not have been applied (it
    /// can no longer apply later). Read to find out.
    Unknown {
        /// How many times it was sent.
        attempts: u32,
    },
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::Refused(e) => write!(f, "refused: {e}"),
            RequestError::Unknown { attempts } => write!(
                f,
                "no answer after {attempts} attempts: the outcome is unknown"
            ),
        }
    }
}

impl std::error::Error for RequestError {}

/// Why the client did not take a request or a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// [`COORD_REQUESTS_QUEUED_MAX`] requests are waiting already.
    Overloaded {
        /// The maximum.
        max: usize,
    },
    /// [`COORD_CLIENT_WATCHES_MAX`] watches exist already.
    TooManyWatches {
        /// The maximum.
        max: usize,
    },
    /// There is no coordination client (a scheduler driver without leader election).
    Unavailable,
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Overloaded { max } => {
                write!(f, "{max} coordination requests are waiting already")
            }
            ClientError::TooManyWatches { max } => write!(f, "{max} watches exist already"),
            ClientError::Unavailable => {
                write!(
                    f,
                    "no coordination client (the driver runs without leader election)"
                )
            }
        }
    }
}

impl std::error::Error for ClientError {}

/// Why a watch ended: read the keys again and watch from the read's revision + 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchLost {
    /// The masters no longer keep the events from the watch's resume revision.
    Compacted {
        /// The oldest revision a watch can start at.
        oldest_revision: u64,
    },
    /// Events were lost before they reached the watch (an overflow, a snapshot installed).
    EventsLost {
        /// The last revision whose events may be missing.
        through_revision: u64,
    },
    /// The watch was refused (a limit).
    Refused(CoordError),
}

/// Why the session ended without being asked to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionLost {
    /// A keep-alive was refused: the lease is unknown (revoked, expired) or expiring.
    Refused(CoordError),
    /// No keep-alive was confirmed within the ttl: the lease may have expired.
    Unconfirmed,
    /// The lease could not be granted.
    GrantFailed(RequestError),
}

impl fmt::Display for SessionLost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionLost::Refused(e) => write!(f, "keep-alive refused: {e}"),
            SessionLost::Unconfirmed => write!(f, "no keep-alive confirmed within the ttl"),
            SessionLost::GrantFailed(e) => write!(f, "lease not granted: {e}"),
        }
    }
}

/// What the client's owner learns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// A request was answered, or given up.
    Answered {
        /// The request.
        request: RequestId,
        /// The answer.
        outcome: Result<CoordReply, RequestError>,
    },
    /// New events of a watch, in revision order, each delivered once.
    WatchEvents {
        /// The watch.
        watch: WatchId,
        /// The events.
        events: Vec<WatchEvent>,
    },
    /// A watch ended (it is forgotten).
    WatchLost {
        /// The watch.
        watch: WatchId,
        /// Why.
        reason: WatchLost,
    },
    /// The session's lease was granted.
    SessionStarted {
        /// The lease.
        lease: LeaseId,
    },
    /// The session ended (it is forgotten; start another to go on).
    SessionLost {
        /// Its lease, if it was granted.
        lease: Option<LeaseId>,
        /// Why.
        reason: SessionLost,
    },
}

/// A message the client wants sent.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// A request.
    Request(CoordRequestMessage),
    /// A keep-alive.
    KeepAlive(LeaseKeepAliveMessage),
    /// A watch (or its renewal).
    Watch(WatchMessage),
    /// The end of a watch.
    Unwatch(UnwatchMessage),
    /// Who leads?
    LeaderQuery(LeaderQueryMessage),
}

/// A message to send, and to whom.
#[derive(Debug, Clone)]
pub struct Transmit {
    /// The receiver (a master).
    pub to: Upid,
    /// The message.
    pub message: Outgoing,
}

/// How a [`CoordClient`] is set up.
#[derive(Debug, Clone)]
pub struct CoordClientConfig {
    /// The masters to follow.
    pub masters: Masters,
    /// Who the client is (its `Upid`, usually), shown to operators by the masters; cut to
    /// the masters' label limit.
    pub label: String,
    /// Seed of the client's generator (the jitter of the leader queries): take it from the
    /// process's RNG.
    pub seed: u64,
}

/// The session as the client knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionInfo {
    /// The lease.
    pub lease: LeaseId,
    /// Its time to live.
    pub ttl: Duration,
    /// Until when the leader keeps it at least (on this client's clock, assuming clocks run
    /// at the same rate): the send time of the last confirmed keep-alive plus the ttl.
    pub valid_until: Duration,
}

/// What a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// The owner's: answered with an event.
    Owner,
    /// Registering this client.
    Register,
    /// Granting the session's lease.
    Grant { ttl: Duration },
    /// Revoking a lease the client gave up (best effort: no event).
    Revoke,
}

#[derive(Debug, Clone)]
struct Pending {
    op: CoordOp,
    purpose: Purpose,
    created: Duration,
    attempts: u32,
    first_sent: Option<Duration>,
    /// Where the current attempt went and until when its answer is awaited; `None`: to send.
    current: Option<(Upid, Duration)>,
    timeout: Duration,
    /// The client id its copies were stamped with: a write that may have applied under one
    /// registration is never sent under another (the store could not deduplicate it).
    sent_under: Option<ClientId>,
}

impl Pending {
    fn needs_client(&self) -> bool {
        self.purpose != Purpose::Register
    }
}

#[derive(Debug, Clone)]
struct LiveSession {
    lease: LeaseId,
    ttl: Duration,
    confirmed_until: Duration,
    next_keep_alive: Duration,
    /// Keep-alives sent and not answered: (to, sent at), oldest first.
    outstanding: VecDeque<(Upid, Duration)>,
    answer_deadline: Option<Duration>,
}

#[derive(Debug, Clone)]
enum SessionState {
    None,
    Granting { request: u64 },
    Live(LiveSession),
}

/// A barrier request in flight: the keep-alives sent to `to` before `sent` and unanswered when
/// its answer comes were lost.
#[derive(Debug, Clone)]
struct Barrier {
    request_id: u64,
    to: Upid,
    sent: Duration,
    deadline: Duration,
}

#[derive(Debug, Clone)]
struct Watch {
    selector: KeySelector,
    /// The revision to watch from (the revision of the last event delivered, or the start).
    resume: u64,
    /// The keys delivered at `resume` already.
    seen: BTreeSet<String>,
    /// The master it is registered with (or was sent to); `None`: to send.
    at: Option<Upid>,
    /// The next notification number expected; `None`: awaiting the confirmation (seq 0).
    expect_seq: Option<u64>,
    /// When to suspect the master (no confirmation) or refresh (no notification).
    deadline: Duration,
}

impl Watch {
    /// The events not delivered yet, remembering them as delivered.
    fn take_new(&mut self, events: Vec<WatchEvent>) -> Vec<WatchEvent> {
        let mut fresh = Vec::new();
        for event in events {
            if !self.selector.matches(&event.key) || event.revision < self.resume {
                continue;
            }
            if event.revision > self.resume {
                self.resume = event.revision;
                self.seen.clear();
            }
            if self.seen.insert(event.key.clone()) {
                fresh.push(event);
            }
        }
        fresh
    }
}

/// A coordination client (see the [module docs](self)).
///
/// ```
/// use std::time::Duration;
/// use plateau_master::coord::{CoordOp, CoordOutcome, CoordReply, CoordResponseMessage};
/// use plateau_sdk::coord::{ClientEvent, CoordClient, CoordClientConfig, Outgoing};
/// use plateau_sdk::Masters;
///
/// let master: plateau_runtime::Upid = "master@10.0.0.1:5050".parse().unwrap();
/// let mut client = CoordClient::new(CoordClientConfig {
///     masters: Masters::one(master.clone()),
///     label: "doc".into(),
///     seed: 7,
/// });
/// let now = Duration::ZERO;
/// let get = client.request(now, CoordOp::Get { key: "k".into() }).unwrap();
/// // It registers first; the master answers with the client's id.
/// let t = client.poll_transmit().unwrap();
/// let Outgoing::Request(register) = t.message else { panic!() };
/// let answer = |request_id, reply| CoordResponseMessage { request_id, outcome: CoordOutcome::Done(Ok(reply)) };
/// client.handle_response(now, &master, answer(register.request_id, CoordReply::ClientRegistered { client: plateau_master::coord::ClientId(3) }));
/// // Then the read goes out, stamped.
/// let Outgoing::Request(read) = client.poll_transmit().unwrap().message else { panic!() };
/// assert_eq!(read.request_id, get.0);
/// assert_eq!(read.client, Some(plateau_master::coord::ClientId(3)));
/// client.handle_response(now, &master, answer(read.request_id, CoordReply::Value { revision: 4, entry: None }));
/// assert!(matches!(client.poll_event(), Some(ClientEvent::Answered { request, outcome: Ok(_) }) if request == get));
/// ```
#[derive(Debug)]
pub struct CoordClient {
    label: String,
    detector: MasterDetector,
    rng: Rng,
    client_id: Option<ClientId>,
    registering: Option<u64>,
    next_request: u64,
    requests: BTreeMap<u64, Pending>,
    session: SessionState,
    barrier: Option<Barrier>,
    next_watch: u64,
    watches: BTreeMap<u64, Watch>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<ClientEvent>,
    /// Requests sent, retries and resends included.
    sends: u64,
}

impl CoordClient {
    /// A client following `config.masters`; nothing is sent until there is something to do.
    pub fn new(config: CoordClientConfig) -> Self {
        let mut label = config.label;
        if label.len() > COORD_LABEL_BYTES_MAX {
            let mut end = COORD_LABEL_BYTES_MAX;
            while !label.is_char_boundary(end) {
                end -= 1;
            }
            label.truncate(end);
        }
        CoordClient {
            label,
            detector: MasterDetector::new(config.masters),
            rng: Rng::seed_from_u64(config.seed),
            client_id: None,
            registering: None,
            next_request: 1,
            requests: BTreeMap::new(),
            session: SessionState::None,
            barrier: None,
            next_watch: 1,
            watches: BTreeMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            sends: 0,
        }
    }

    // ---- the owner's calls ------------------------------------------------------------------

    /// Sends `op` (to the leader, once registered), retried until answered or given up; the
    /// answer comes as [`ClientEvent::Answered`].
    pub fn request(&mut self, now: Duration, op: CoordOp) -> Result<RequestId, ClientError> {
        let id = self.enqueue(now, op, Purpose::Owner)?;
        self.settle(now);
        Ok(RequestId(id))
    }

    /// Watches `selector` from `start_revision` (usually a read's revision + 1): events come
    /// as [`ClientEvent::WatchEvents`].
    pub fn watch(
        &mut self,
        now: Duration,
        selector: KeySelector,
        start_revision: u64,
    ) -> Result<WatchId, ClientError> {
        if self.watches.len() >= COORD_CLIENT_WATCHES_MAX {
            return Err(ClientError::TooManyWatches {
                max: COORD_CLIENT_WATCHES_MAX,
            });
        }
        let id = self.next_watch;
        self.next_watch += 1;
        self.watches.insert(
            id,
            Watch {
                selector,
                resume: start_revision,
                seen: BTreeSet::new(),
                at: None,
                expect_seq: None,
                deadline: now,
            },
        );
        self.settle(now);
        Ok(WatchId(id))
    }

    /// Stops a watch (no more events for it).
    pub fn unwatch(&mut self, watch: WatchId) {
        if let Some(w) = self.watches.remove(&watch.0) {
            if let Some(at) = w.at {
                self.transmit(at, Outgoing::Unwatch(UnwatchMessage { watch_id: watch.0 }));
            }
        }
    }

    /// Grants a session lease of `ttl` (kept alive from then on); [`ClientEvent::SessionStarted`]
    /// or [`ClientEvent::SessionLost`] follows. Nothing happens if a session exists or is
    /// being granted.
    pub fn start_session(&mut self, now: Duration, ttl: Duration) -> Result<(), ClientError> {
        if !matches!(self.session, SessionState::None) {
            return Ok(());
        }
        let op = CoordOp::GrantLease {
            ttl_ms: ttl.as_millis() as u64,
            session: self.label.clone(),
        };
        let request = self.enqueue(now, op, Purpose::Grant { ttl })?;
        self.session = SessionState::Granting { request };
        self.settle(now);
        Ok(())
    }

    /// Ends the session: keep-alives stop and the lease is revoked (best effort; otherwise it
    /// expires), deleting its keys. No event follows.
    pub fn end_session(&mut self, now: Duration) {
        match std::mem::replace(&mut self.session, SessionState::None) {
            SessionState::Live(live) => self.revoke(now, live.lease),
            // The grant's answer revokes the lease it names (see `finish`).
            SessionState::Granting { .. } | SessionState::None => {}
        }
        self.settle(now);
    }

    /// The session, once granted and until lost or ended.
    pub fn session(&self) -> Option<SessionInfo> {
        match &self.session {
            SessionState::Live(live) => Some(SessionInfo {
                lease: live.lease,
                ttl: live.ttl,
                valid_until: live.confirmed_until,
            }),
            _ => None,
        }
    }

    /// Whether a session is being granted.
    pub fn is_granting(&self) -> bool {
        matches!(self.session, SessionState::Granting { .. })
    }

    /// The leading master followed, if known.
    pub fn leader(&self) -> Option<&Upid> {
        self.detector.leader()
    }

    /// This client's registration, once registered.
    pub fn client_id(&self) -> Option<ClientId> {
        self.client_id
    }

    /// Requests not yet answered (the owner's and the client's own).
    pub fn requests_pending(&self) -> usize {
        self.requests.len()
    }

    /// Watches.
    pub fn watches(&self) -> usize {
        self.watches.len()
    }

    /// Requests sent so far, retries and resends included.
    pub fn requests_sent(&self) -> u64 {
        self.sends
    }

    // ---- inputs ---------------------------------------------------------------------------

    /// Who leads the masters: an answer to a leader query, a new leader's announcement, a
    /// redirect.
    pub fn handle_new_master_detected(
        &mut self,
        now: Duration,
        from: &Upid,
        msg: &NewMasterDetectedMessage,
    ) {
        self.detector.handle_new_master_detected(now, from, msg);
        self.settle(now);
    }

    /// The answer to a request.
    pub fn handle_response(&mut self, now: Duration, from: &Upid, msg: CoordResponseMessage) {
        if !self.detector.masters().contains(from) {
            return;
        }
        let id = msg.request_id;
        if self
            .barrier
            .as_ref()
            .is_some_and(|b| b.request_id == id && b.to == *from)
        {
            let barrier = self.barrier.take().expect("checked");
            if let SessionState::Live(live) = &mut self.session {
                live.outstanding
                    .retain(|(to, sent)| *to != barrier.to || *sent > barrier.sent);
            }
            return;
        }
        let Some(pending) = self.requests.get_mut(&id) else {
            return; // a duplicate, or an answer to a request given up
        };
        match msg.outcome {
            CoordOutcome::NotLeader(hint) => {
                if pending.current.as_ref().is_some_and(|(to, _)| to == from) {
                    pending.current = None;
                }
                let news = NewMasterDetectedMessage {
                    leader: hint.leader,
                    term: hint.term,
                };
                self.detector.handle_new_master_detected(now, from, &news);
            }
            CoordOutcome::Done(Err(CoordError::UnknownClient { client })) => {
                if self.client_id == Some(client) {
                    tracing::info!(%client, "the masters forgot this coordination client: registering again");
                    self.client_id = None;
                }
                if pending.attempts == 1 && pending.sent_under == Some(client) {
                    // Its only copy was refused: it never applied, send it again.
                    pending.sent_under = None;
                    pending.current = None;
                } else {
                    let pending = self.requests.remove(&id).expect("present");
                    let attempts = pending.attempts;
                    self.finish(now, id, pending, Err(RequestError::Unknown { attempts }));
                }
            }
            CoordOutcome::Done(response) => {
                let pending = self.requests.remove(&id).expect("present");
                self.finish(now, id, pending, response.map_err(RequestError::Refused));
            }
        }
        self.settle(now);
    }

    /// The answer to a keep-alive.
    pub fn handle_keep_alive_response(
        &mut self,
        now: Duration,
        from: &Upid,
        msg: LeaseKeepAliveResponseMessage,
    ) {
        let SessionState::Live(live) = &mut self.session else {
            return;
        };
        if live.lease != msg.lease {
            return;
        }
        // Credited to the oldest keep-alive still unanswered that went to this master.
        let Some(position) = live.outstanding.iter().position(|(to, _)| to == from) else {
            return; // nothing sent there unanswered: a stray
        };
        let ambiguous = live.outstanding.iter().filter(|(to, _)| to == from).count() > 1;
        let (_, sent) = live.outstanding.remove(position).expect("found");
        match msg.outcome {
            KeepAliveOutcome::Alive { ttl_ms } => {
                let ttl = live.ttl.min(Duration::from_millis(ttl_ms));
                live.confirmed_until = live.confirmed_until.max(sent + ttl);
                if self.detector.is_leader(from) {
                    live.answer_deadline = None;
                }
                if ambiguous && self.barrier.is_none() {
                    self.send_barrier(now, from.clone());
                }
            }
            KeepAliveOutcome::Refused(e) => {
                let lease = live.lease;
                tracing::warn!(%lease, error = %e, "coordination session lost: keep-alive refused");
                self.session = SessionState::None;
                self.events.push_back(ClientEvent::SessionLost {
                    lease: Some(lease),
                    reason: SessionLost::Refused(e),
                });
            }
            KeepAliveOutcome::NotLeader(hint) => {
                let news = NewMasterDetectedMessage {
                    leader: hint.leader,
                    term: hint.term,
                };
                self.detector.handle_new_master_detected(now, from, &news);
                if self.detector.leader().is_some_and(|l| l != from) {
                    self.send_keep_alive(now);
                }
            }
        }
        self.settle(now);
    }

    /// Events of a watch.
    pub fn handle_watch_events(&mut self, now: Duration, from: &Upid, msg: WatchEventsMessage) {
        let Some(watch) = self.watches.get_mut(&msg.watch_id) else {
            if self.detector.masters().contains(from) {
                // A watch this client ended: tell the master again.
                let unwatch = UnwatchMessage {
                    watch_id: msg.watch_id,
                };
                self.transmit(from.clone(), Outgoing::Unwatch(unwatch));
            }
            return;
        };
        if watch.at.as_ref() != Some(from) {
            return; // from a master it is no longer registered with
        }
        match (watch.expect_seq, msg.seq) {
            // A (re-)registration's confirmation: it replays from the resume revision.
            (_, 0) => watch.expect_seq = Some(1),
            (Some(next), seq) if seq == next => watch.expect_seq = Some(next + 1),
            (Some(next), seq) if seq < next => return, // a duplicate
            (Some(_), _) => {
                // A notification was lost: register again from where it is.
                watch.at = None;
                self.settle(now);
                return;
            }
            (None, _) => return, // from the registration this one replaced
        }
        watch.deadline = now + COORD_WATCH_REFRESH_INTERVAL;
        let fresh = watch.take_new(msg.events);
        if !fresh.is_empty() {
            self.events.push_back(ClientEvent::WatchEvents {
                watch: WatchId(msg.watch_id),
                events: fresh,
            });
        }
    }

    /// A watch ended at a master.
    pub fn handle_watch_ended(&mut self, now: Duration, from: &Upid, msg: WatchEndedMessage) {
        let Some(watch) = self.watches.get_mut(&msg.watch_id) else {
            return;
        };
        if watch.at.as_ref() != Some(from) {
            return;
        }
        let reason = match msg.reason {
            WatchEnd::NotLeader(hint) => {
                watch.at = None;
                let news = NewMasterDetectedMessage {
                    leader: hint.leader,
                    term: hint.term,
                };
                self.detector.handle_new_master_detected(now, from, &news);
                self.settle(now);
                return;
            }
            WatchEnd::Refused(CoordError::Compacted { oldest_revision }) => {
                WatchLost::Compacted { oldest_revision }
            }
            WatchEnd::Refused(e) => WatchLost::Refused(e),
            WatchEnd::Hub(WatchEndReason::EventsLost { through_revision }) => {
                WatchLost::EventsLost { through_revision }
            }
        };
        self.watches.remove(&msg.watch_id);
        self.events.push_back(ClientEvent::WatchLost {
            watch: WatchId(msg.watch_id),
            reason,
        });
    }

    /// Time passed: retries, keep-alives, session loss, watch refreshes, leader queries.
    pub fn handle_timeout(&mut self, now: Duration) {
        // Requests.
        let mut given_up = Vec::new();
        let mut suspects = Vec::new();
        for (id, pending) in self.requests.iter_mut() {
            if now >= pending.created + COORD_REQUEST_DEADLINE {
                given_up.push(*id);
                continue;
            }
            if let Some((to, deadline)) = &pending.current {
                if *deadline <= now {
                    suspects.push(to.clone());
                    pending.current = None;
                    pending.timeout = (pending.timeout * 2).min(COORD_REQUEST_TIMEOUT_MAX);
                }
            }
        }
        for id in given_up {
            let pending = self.requests.remove(&id).expect("listed");
            let attempts = pending.attempts;
            self.finish(now, id, pending, Err(RequestError::Unknown { attempts }));
        }
        if self.barrier.as_ref().is_some_and(|b| b.deadline <= now) {
            self.barrier = None; // lost: the next ambiguous answer sends another
        }
        // The session.
        let mut lost = None;
        if let SessionState::Live(live) = &mut self.session {
            if now >= live.confirmed_until {
                lost = Some(live.lease);
            } else {
                if live.answer_deadline.is_some_and(|d| d <= now) {
                    live.answer_deadline = None;
                    if let Some((to, _)) = live.outstanding.back() {
                        suspects.push(to.clone());
                    }
                }
                if now >= live.next_keep_alive {
                    self.send_keep_alive(now);
                }
            }
        }
        if let Some(lease) = lost {
            tracing::warn!(%lease, "coordination session lost: no keep-alive confirmed within its ttl");
            self.session = SessionState::None;
            self.events.push_back(ClientEvent::SessionLost {
                lease: Some(lease),
                reason: SessionLost::Unconfirmed,
            });
        }
        // Watches.
        for watch in self.watches.values_mut() {
            if watch.deadline > now {
                continue;
            }
            if let Some(at) = watch.at.take() {
                if watch.expect_seq.is_none() {
                    suspects.push(at);
                }
            }
        }
        for suspect in suspects {
            self.suspect(now, &suspect);
        }
        self.settle(now);
    }

    // ---- outputs --------------------------------------------------------------------------

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event for the owner.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// When [`Self::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Duration> {
        let mut at = self.detector.next_deadline();
        let mut consider = |t: Duration| at = Some(at.map_or(t, |a: Duration| a.min(t)));
        for pending in self.requests.values() {
            consider(pending.created + COORD_REQUEST_DEADLINE);
            if let Some((_, deadline)) = pending.current {
                consider(deadline);
            }
        }
        if let SessionState::Live(live) = &self.session {
            consider(live.confirmed_until);
            consider(live.next_keep_alive);
            if let Some(d) = live.answer_deadline {
                consider(d);
            }
        }
        for watch in self.watches.values() {
            if watch.at.is_some() {
                consider(watch.deadline);
            }
        }
        if let Some(barrier) = &self.barrier {
            consider(barrier.deadline);
        }
        at
    }

    // ---- inside -----------------------------------------------------------------------------

    fn enqueue(
        &mut self,
        now: Duration,
        op: CoordOp,
        purpose: Purpose,
    ) -> Result<u64, ClientError> {
        if self.requests.len() >= COORD_REQUESTS_QUEUED_MAX {
            return Err(ClientError::Overloaded {
                max: COORD_REQUESTS_QUEUED_MAX,
            });
        }
        let id = self.next_request;
        self.next_request += 1;
        self.requests.insert(
            id,
            Pending {
                op,
                purpose,
                created: now,
                attempts: 0,
                first_sent: None,
                current: None,
                timeout: COORD_REQUEST_TIMEOUT_MIN,
                sent_under: None,
            },
        );
        Ok(id)
    }

    fn revoke(&mut self, now: Duration, lease: LeaseId) {
        // Past the queue bound the lease simply expires.
        let _ = self.enqueue(now, CoordOp::RevokeLease { lease }, Purpose::Revoke);
    }

    /// The lowest request id still awaited (what `first_unanswered` says).
    fn first_unanswered(&self) -> u64 {
        self.requests
            .keys()
            .next()
            .copied()
            .unwrap_or(self.next_request)
    }

    fn transmit(&mut self, to: Upid, message: Outgoing) {
        self.transmits.push_back(Transmit { to, message });
    }

    /// A master did not answer in time: if it is the one followed, the detector forgets it
    /// and asks who leads (with one master, it stays).
    fn suspect(&mut self, now: Duration, master: &Upid) {
        if self.detector.is_leader(master) {
            self.detector.handle_exited(now, master);
        }
    }

    /// Follows the detector (queries, a new leader: everything in flight goes again), then
    /// sends what waits.
    fn settle(&mut self, now: Duration) {
        for master in self.detector.poll_queries(now, &mut self.rng) {
            self.transmit(master, Outgoing::LeaderQuery(LeaderQueryMessage {}));
        }
        if let Some(change) = self.detector.poll_change() {
            if let Some(leader) = &change.leader {
                tracing::debug!(%leader, term = change.term, "coordination: following a new leading master");
                for pending in self.requests.values_mut() {
                    pending.current = None;
                }
                for watch in self.watches.values_mut() {
                    watch.at = None;
                }
                if matches!(self.session, SessionState::Live(_)) {
                    self.send_keep_alive(now);
                }
            }
        }
        self.pump_requests(now);
        self.pump_watches(now);
    }

    fn pump_requests(&mut self, now: Duration) {
        let Some(leader) = self.detector.leader().cloned() else {
            return;
        };
        if self.client_id.is_none()
            && self.registering.is_none()
            && self.requests.values().any(Pending::needs_client)
        {
            let op = CoordOp::RegisterClient {
                label: self.label.clone(),
            };
            if let Ok(id) = self.enqueue(now, op, Purpose::Register) {
                self.registering = Some(id);
            }
        }
        let floor = self.first_unanswered();
        let to_send: Vec<u64> = self
            .requests
            .iter()
            .filter(|(_, p)| p.current.is_none())
            .map(|(id, _)| *id)
            .collect();
        for id in to_send {
            let pending = self.requests.get_mut(&id).expect("listed");
            let stamp = match pending.purpose {
                Purpose::Register => None,
                _ => match self.client_id {
                    Some(client) => Some(client),
                    None => continue, // waits for the registration
                },
            };
            if stamp.is_some() && id >= floor + COORD_REQUESTS_IN_FLIGHT_MAX {
                continue; // waits for the window
            }
            let moved = pending.sent_under.is_some_and(|old| Some(old) != stamp);
            if (moved && !pending.op.is_read()) || pending.attempts >= COORD_REQUEST_ATTEMPTS_MAX {
                let pending = self.requests.remove(&id).expect("listed");
                let attempts = pending.attempts;
                self.finish(now, id, pending, Err(RequestError::Unknown { attempts }));
                continue;
            }
            pending.attempts += 1;
            self.sends += 1;
            pending.first_sent.get_or_insert(now);
            pending.current = Some((leader.clone(), now + pending.timeout));
            if stamp.is_some() {
                pending.sent_under = stamp;
            }
            let message = CoordRequestMessage {
                request_id: id,
                client: stamp,
                first_unanswered: floor,
                op: pending.op.clone(),
            };
            self.transmit(leader.clone(), Outgoing::Request(message));
        }
    }

    fn pump_watches(&mut self, now: Duration) {
        let Some(leader) = self.detector.leader().cloned() else {
            return;
        };
        let mut out = Vec::new();
        for (id, watch) in self.watches.iter_mut() {
            if watch.at.is_some() {
                continue;
            }
            watch.at = Some(leader.clone());
            watch.expect_seq = None;
            watch.deadline = now + 2 * COORD_REQUEST_TIMEOUT_MIN;
            out.push(WatchMessage {
                watch_id: *id,
                selector: watch.selector.clone(),
                start_revision: Some(watch.resume),
            });
        }
        for message in out {
            self.transmit(leader.clone(), Outgoing::Watch(message));
        }
    }

    /// Sends a barrier to `to`: a read of the empty key, refused by any master as soon as it
    /// gets it (never proposed), so that its answer follows the answers to everything sent to
    /// that master before it.
    fn send_barrier(&mut self, now: Duration, to: Upid) {
        let request_id = self.next_request;
        self.next_request += 1;
        self.barrier = Some(Barrier {
            request_id,
            to: to.clone(),
            sent: now,
            deadline: now + COORD_KEEP_ALIVE_ANSWER_TIMEOUT,
        });
        let message = CoordRequestMessage {
            request_id,
            client: None,
            first_unanswered: self.first_unanswered(),
            op: CoordOp::Get { key: String::new() },
        };
        self.transmit(to, Outgoing::Request(message));
    }

    fn send_keep_alive(&mut self, now: Duration) {
        let leader = self.detector.leader().cloned();
        let SessionState::Live(live) = &mut self.session else {
            return;
        };
        let interval = live.ttl / 3;
        live.next_keep_alive = now + interval;
        let Some(leader) = leader else {
            return; // sent when a leader is found
        };
        if live.outstanding.len() >= COORD_KEEP_ALIVES_OUTSTANDING_MAX {
            return;
        }
        live.outstanding.push_back((leader.clone(), now));
        live.answer_deadline = Some(now + COORD_KEEP_ALIVE_ANSWER_TIMEOUT.min(interval));
        let message = LeaseKeepAliveMessage { lease: live.lease };
        self.transmit(leader, Outgoing::KeepAlive(message));
    }

    /// A request is done (answered or given up).
    fn finish(
        &mut self,
        now: Duration,
        id: u64,
        pending: Pending,
        outcome: Result<CoordReply, RequestError>,
    ) {
        match pending.purpose {
            Purpose::Owner => self.events.push_back(ClientEvent::Answered {
                request: RequestId(id),
                outcome,
            }),
            Purpose::Register => {
                if self.registering == Some(id) {
                    self.registering = None;
                }
                match outcome {
                    Ok(CoordReply::ClientRegistered { client }) => {
                        tracing::debug!(%client, "coordination client registered");
                        self.client_id = Some(client);
                    }
                    Ok(other) => tracing::warn!(?other, "unexpected answer to a registration"),
                    Err(e) => tracing::warn!(error = %e, "coordination client not registered"),
                }
            }
            Purpose::Grant { ttl } => {
                let wanted =
                    matches!(self.session, SessionState::Granting { request } if request == id);
                match outcome {
                    Ok(CoordReply::LeaseGranted { lease, .. }) if wanted => {
                        // The leader started the lease when it applied the grant, after its
                        // first send.
                        let sent = pending.first_sent.expect("answered, so sent");
                        let live = LiveSession {
                            lease,
                            ttl,
                            confirmed_until: sent + ttl,
                            next_keep_alive: now,
                            outstanding: VecDeque::new(),
                            answer_deadline: None,
                        };
                        self.session = SessionState::Live(live);
                        self.send_keep_alive(now);
                        self.events.push_back(ClientEvent::SessionStarted { lease });
                    }
                    Ok(CoordReply::LeaseGranted { lease, .. }) => self.revoke(now, lease),
                    Ok(other) => {
                        tracing::warn!(?other, "unexpected answer to a lease grant");
                        if wanted {
                            self.session = SessionState::None;
                        }
                    }
                    Err(e) if wanted => {
                        self.session = SessionState::None;
                        self.events.push_back(ClientEvent::SessionLost {
                            lease: None,
                            reason: SessionLost::GrantFailed(e),
                        });
                    }
                    Err(_) => {}
                }
            }
            Purpose::Revoke => {}
        }
    }
}
