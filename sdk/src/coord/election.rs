//! [`Election`]: leader election over the coordination store, with a fencing token.
//!
//! The recipe (see `plateau_master::coord::Fencing`): a candidate holds a session lease; it
//! campaigns by creating the election key ([`Expect::Absent`]) on that lease, with its
//! advertised address as the value. If the put succeeds it leads, and its epoch is the put's
//! revision (the key's creation revision): [`ElectionEvent::Elected`] gives the
//! [`FencingToken`] to stamp its calls and writes with. Otherwise it watches the key (reporting
//! the holder's value: [`ElectionEvent::LeaderChanged`]) and campaigns again when the key is
//! deleted — when the holder's lease ends, revoked or expired.
//!
//! # When leadership ends
//!
//! The holder believes it leads only while it is *sure* the masters keep its lease: until the
//! session's [`SessionInfo::valid_until`](super::SessionInfo::valid_until) (the send time of
//! the last confirmed keep-alive plus the ttl, on its own clock) minus a safety margin
//! ([`ElectionConfig::margin`], for clock drift). The masters expire the lease no earlier than
//! that bound without the margin, and a standby can only win after the expiry is applied, so
//! two candidates never both believe they lead (with clocks whose rates differ by less than
//! the margin over a ttl). [`ElectionEvent::Deposed`] comes as soon as the holder can no longer
//! be sure — the margin's deadline passed, the session was refused, its key was deleted or
//! taken over, or the framework's state write failed ([`Election::step_down`]) — and the
//! candidate then revokes its old lease (best effort), starts a new session and campaigns
//! again as a standby. Fencing, not timing, is what makes a paused ex-leader harmless: its
//! calls carry an epoch that is no longer the key's.
//!
//! Pure, like the client it drives: every call takes the [`CoordClient`] and `now`; the
//! owner gives it the client's events ([`Election::handle_client_event`]) and calls
//! [`Election::handle_timeout`] at [`Election::poll_timeout`].

use std::collections::{BTreeSet, VecDeque};
use std::fmt;
use std::time::Duration;

use plateau_master::coord::{
    Change, CoordError, CoordOp, CoordReply, Expect, FencingToken, KeyEntry, KeySelector, LeaseId,
    WatchEvent,
};

use super::client::{ClientEvent, CoordClient, RequestError, RequestId, SessionLost, WatchId};
use crate::limits::{COORD_ELECTION_RETRY_INTERVAL, COORD_SESSION_TTL_DEFAULT};

/// How a candidate campaigns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElectionConfig {
    /// The election key (e.g. `/marathon/leader`).
    pub key: String,
    /// The candidate's advertised address (the key's value while it leads), e.g.
    /// `10.0.0.5:8080`: what standbys proxy to and `/v2/leader` shows.
    pub value: Vec<u8>,
    /// The session's ttl: how long a crashed leader keeps the key.
    pub ttl: Duration,
    /// How long before the session's last sure instant the holder stops believing it leads.
    pub margin: Duration,
}

impl ElectionConfig {
    /// A campaign for `key` advertising `value`, with the default ttl
    /// ([`COORD_SESSION_TTL_DEFAULT`]) and a margin of a fifth of it.
    pub fn new(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        let ttl = COORD_SESSION_TTL_DEFAULT;
        ElectionConfig {
            key: key.into(),
            value: value.into(),
            ttl,
            margin: ttl / 5,
        }
    }

    /// The same with session ttl `ttl` and margin a fifth of it.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self.margin = ttl / 5;
        self
    }
}

/// Why leadership ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deposed {
    /// The session was lost (a keep-alive refused, or none confirmed within the ttl).
    SessionLost(SessionLost),
    /// No keep-alive was confirmed within the ttl minus the margin.
    Unconfirmed,
    /// The election key was deleted or is held at another epoch.
    KeyLost,
    /// The owner stepped down: a state write failed, the master refused the epoch, or it
    /// resigned.
    SteppedDown(String),
}

impl fmt::Display for Deposed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Deposed::SessionLost(why) => write!(f, "session lost ({why})"),
            Deposed::Unconfirmed => write!(f, "no keep-alive confirmed in time"),
            Deposed::KeyLost => write!(f, "the election key was deleted or taken over"),
            Deposed::SteppedDown(why) => write!(f, "stepped down: {why}"),
        }
    }
}

/// What the candidate learns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElectionEvent {
    /// This candidate leads, with this token (its epoch is the key's creation revision).
    Elected {
        /// The election key and epoch: stamp every call to the master and every state write.
        token: FencingToken,
    },
    /// This candidate no longer leads: stop acting at once. It campaigns again.
    Deposed {
        /// The epoch it led at.
        epoch: u64,
        /// Why.
        reason: Deposed,
    },
    /// The holder of the key changed: its value (the leader's advertised address), or `None`
    /// while nobody holds it.
    LeaderChanged {
        /// The holder's value.
        leader: Option<Vec<u8>>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not campaigning.
    Idle,
    /// Waiting for a session lease.
    Session,
    /// The campaign's put is in flight.
    Campaigning(RequestId),
    /// Someone else holds the key (or it is being read): waiting for it to go.
    Following,
    /// Leading at this epoch.
    Leading { epoch: u64 },
    /// Something failed: try again then.
    Retry { at: Duration },
}

/// A candidate for an election key (see the [module docs](self)).
#[derive(Debug)]
pub struct Election {
    config: ElectionConfig,
    phase: Phase,
    /// The lease campaigned with.
    lease: Option<LeaseId>,
    watch: Option<WatchId>,
    reading: Option<RequestId>,
    /// The holder's value last reported.
    holder: Option<Vec<u8>>,
    /// Requests given up on before their answer (swallowed when it comes).
    abandoned: BTreeSet<RequestId>,
    /// The revision of the latest state of the key observed (read, watched, or won): older
    /// observations, a slow read or a replayed event, are stale and ignored.
    observed: u64,
    events: VecDeque<ElectionEvent>,
}

impl Election {
    /// A candidate that does not campaign yet.
    pub fn new(config: ElectionConfig) -> Self {
        Election {
            config,
            phase: Phase::Idle,
            lease: None,
            watch: None,
            reading: None,
            holder: None,
            abandoned: BTreeSet::new(),
            observed: 0,
            events: VecDeque::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ElectionConfig {
        &self.config
    }

    /// Starts campaigning (nothing if it does already).
    pub fn campaign(&mut self, client: &mut CoordClient, now: Duration) {
        if self.phase == Phase::Idle {
            self.read(client, now);
            self.start(client, now);
        }
    }

    /// Stops leading and campaigning: the session ends (its lease revoked, the key with it),
    /// and the watch.
    pub fn resign(&mut self, client: &mut CoordClient, now: Duration) {
        self.depose(client, now, Deposed::SteppedDown("resigned".into()));
        client.end_session(now);
        if let Some(watch) = self.watch.take() {
            client.unwatch(watch);
        }
        self.lease = None;
        if let Some(read) = self.reading.take() {
            self.abandoned.insert(read);
        }
        self.set_phase(Phase::Idle);
    }

    /// The owner can no longer act as leader (its state write failed, the master refused its
    /// epoch): deposed now, it campaigns again with a new session.
    pub fn step_down(&mut self, client: &mut CoordClient, now: Duration, why: &str) {
        self.depose(client, now, Deposed::SteppedDown(why.to_string()));
    }

    /// Whether this candidate leads at `now`: elected, and sure its lease lives for at least
    /// the margin more.
    pub fn is_leader(&self, client: &CoordClient, now: Duration) -> bool {
        matches!(self.phase, Phase::Leading { .. })
            && self.leader_until(client).is_some_and(|until| now < until)
    }

    /// The token while elected (check [`Self::is_leader`] before acting on it).
    pub fn token(&self) -> Option<FencingToken> {
        match self.phase {
            Phase::Leading { epoch } => Some(FencingToken {
                key: self.config.key.clone(),
                epoch,
            }),
            _ => None,
        }
    }

    /// The current holder's value (the leader's advertised address), as last seen.
    pub fn leader(&self) -> Option<&[u8]> {
        self.holder.as_deref()
    }

    /// Until when the holder may believe it leads.
    fn leader_until(&self, client: &CoordClient) -> Option<Duration> {
        let session = client.session().filter(|s| Some(s.lease) == self.lease)?;
        Some(session.valid_until.saturating_sub(self.config.margin))
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ElectionEvent> {
        self.events.pop_front()
    }

    /// When [`Self::handle_timeout`] is next due.
    pub fn poll_timeout(&self, client: &CoordClient) -> Option<Duration> {
        match self.phase {
            Phase::Leading { .. } => self.leader_until(client),
            Phase::Retry { at } => Some(at),
            _ => None,
        }
    }

    /// Time passed: a leader that can no longer be sure is deposed; a retry is due.
    pub fn handle_timeout(&mut self, client: &mut CoordClient, now: Duration) {
        match self.phase {
            Phase::Leading { .. } if !self.is_leader(client, now) => {
                self.depose(client, now, Deposed::Unconfirmed);
            }
            Phase::Retry { at } if at <= now => {
                if self.watch.is_none() {
                    self.read(client, now);
                }
                self.start(client, now);
            }
            _ => {}
        }
    }

    /// An event of the client: true when it was the election's.
    pub fn handle_client_event(
        &mut self,
        client: &mut CoordClient,
        now: Duration,
        event: &ClientEvent,
    ) -> bool {
        match event {
            ClientEvent::SessionStarted { lease } => {
                if self.phase != Phase::Session {
                    return false;
                }
                self.lease = Some(*lease);
                self.put(client, now);
                true
            }
            ClientEvent::SessionLost { lease, reason } => {
                let ours = lease.is_some() && *lease == self.lease;
                if !ours && self.phase != Phase::Session {
                    return false;
                }
                self.lease = None;
                match self.phase {
                    Phase::Leading { .. } => {
                        self.depose(client, now, Deposed::SessionLost(reason.clone()))
                    }
                    Phase::Idle => {}
                    _ if matches!(reason, SessionLost::GrantFailed(_)) => self.retry_later(now),
                    _ => self.start(client, now),
                }
                true
            }
            ClientEvent::Answered { request, outcome } => {
                if self.abandoned.remove(request) {
                    true
                } else if self.phase == Phase::Campaigning(*request) {
                    // Answered: not abandoned when the phase moves on.
                    self.phase = Phase::Following;
                    self.handle_campaign(client, now, outcome);
                    true
                } else if self.reading == Some(*request) {
                    self.reading = None;
                    match outcome {
                        Ok(CoordReply::Value { revision, entry }) => {
                            if self.watch.is_none() && self.phase != Phase::Idle {
                                let selector = KeySelector::Key(self.config.key.clone());
                                self.watch = client.watch(now, selector, revision + 1).ok();
                            }
                            self.observe(client, now, *revision, entry.as_ref());
                        }
                        // A leader keeps watching its key: read again (each read has its own
                        // retry budget).
                        _ if matches!(self.phase, Phase::Leading { .. }) => self.read(client, now),
                        _ => self.retry_later(now),
                    }
                    true
                } else {
                    false
                }
            }
            ClientEvent::WatchEvents { watch, events } => {
                if Some(*watch) != self.watch {
                    return false;
                }
                for event in events {
                    self.handle_watch_event(client, now, event);
                }
                true
            }
            ClientEvent::WatchLost { watch, .. } => {
                if Some(*watch) != self.watch {
                    return false;
                }
                self.watch = None;
                self.read(client, now);
                true
            }
        }
    }

    // ---- inside -----------------------------------------------------------------------------

    /// Moves to `phase`; a campaign left unanswered is abandoned.
    fn set_phase(&mut self, phase: Phase) {
        if let Phase::Campaigning(request) = self.phase {
            if phase != self.phase {
                self.abandoned.insert(request);
            }
        }
        self.phase = phase;
    }

    /// Campaigns with the live session, or starts one.
    fn start(&mut self, client: &mut CoordClient, now: Duration) {
        match client.session() {
            Some(session) if now < session.valid_until.saturating_sub(self.config.margin) => {
                self.lease = Some(session.lease);
                self.put(client, now);
            }
            session => {
                if session.is_some() {
                    // Too close to its end to lead on: a fresh one.
                    client.end_session(now);
                }
                self.set_phase(Phase::Session);
                if client.start_session(now, self.config.ttl).is_err() {
                    self.retry_later(now);
                }
            }
        }
    }

    fn put(&mut self, client: &mut CoordClient, now: Duration) {
        let op = CoordOp::Put {
            key: self.config.key.clone(),
            value: self.config.value.clone(),
            expect: Expect::Absent,
            lease: self.lease,
        };
        match client.request(now, op) {
            Ok(request) => self.set_phase(Phase::Campaigning(request)),
            Err(_) => self.retry_later(now),
        }
    }

    fn read(&mut self, client: &mut CoordClient, now: Duration) {
        if self.reading.is_some() {
            return;
        }
        let op = CoordOp::Get {
            key: self.config.key.clone(),
        };
        self.reading = client.request(now, op).ok();
    }

    fn retry_later(&mut self, now: Duration) {
        if !matches!(self.phase, Phase::Leading { .. } | Phase::Idle) {
            self.set_phase(Phase::Retry {
                at: now + COORD_ELECTION_RETRY_INTERVAL,
            });
        }
    }

    fn handle_campaign(
        &mut self,
        client: &mut CoordClient,
        now: Duration,
        outcome: &Result<CoordReply, RequestError>,
    ) {
        match outcome {
            Ok(CoordReply::Put {
                create_revision, ..
            }) => self.elect(client, now, *create_revision),
            Err(RequestError::Refused(CoordError::UnknownLease { .. })) => {
                // The session is gone though the client has not noticed yet.
                client.end_session(now);
                self.lease = None;
                self.start(client, now);
            }
            Err(RequestError::Refused(CoordError::ExpectationFailed { .. }))
            | Err(RequestError::Unknown { .. }) => {
                // Someone holds it — maybe this candidate, if an unanswered put applied: the
                // read tells (the key's lease).
                self.set_phase(Phase::Following);
                self.read(client, now);
            }
            Ok(_) | Err(_) => {
                tracing::warn!(key = %self.config.key, ?outcome, "campaign failed; retrying");
                self.retry_later(now);
            }
        }
    }

    /// The key's state, read or watched: follow the holder, lead if it is ours, campaign if
    /// nobody holds it.
    fn observe(
        &mut self,
        client: &mut CoordClient,
        now: Duration,
        revision: u64,
        entry: Option<&KeyEntry>,
    ) {
        if revision < self.observed {
            return;
        }
        self.observed = revision;
        let ours = entry.is_some_and(|e| e.lease.is_some() && e.lease == self.lease);
        match (self.phase, entry) {
            (Phase::Leading { epoch }, Some(e)) if e.create_revision == epoch => {}
            (Phase::Leading { .. }, _) => self.depose(client, now, Deposed::KeyLost),
            (Phase::Following, Some(e)) if ours => self.elect(client, now, e.create_revision),
            (Phase::Following, None) => self.start(client, now),
            _ => {}
        }
        self.report_holder(entry.map(|e| e.value.clone()));
    }

    fn handle_watch_event(&mut self, client: &mut CoordClient, now: Duration, event: &WatchEvent) {
        if event.key != self.config.key {
            return;
        }
        let entry = match &event.change {
            Change::Put {
                value,
                create_revision,
                lease,
            } => Some(KeyEntry {
                value: value.clone(),
                mod_revision: event.revision,
                create_revision: *create_revision,
                lease: *lease,
            }),
            Change::Delete => None,
        };
        self.observe(client, now, event.revision, entry.as_ref());
    }

    fn report_holder(&mut self, holder: Option<Vec<u8>>) {
        if holder != self.holder {
            self.holder = holder.clone();
            self.events
                .push_back(ElectionEvent::LeaderChanged { leader: holder });
        }
    }

    fn elect(&mut self, client: &mut CoordClient, now: Duration, epoch: u64) {
        let until = self.leader_until(client);
        if until.is_none_or(|until| now >= until) {
            // Won, but the session may not outlive the margin: let the key go with it.
            tracing::info!(key = %self.config.key, epoch, "won an election too late to lead; campaigning again");
            client.end_session(now);
            self.lease = None;
            self.start(client, now);
            return;
        }
        tracing::info!(key = %self.config.key, epoch, "elected");
        self.observed = self.observed.max(epoch);
        self.set_phase(Phase::Leading { epoch });
        self.report_holder(Some(self.config.value.clone()));
        self.events.push_back(ElectionEvent::Elected {
            token: FencingToken {
                key: self.config.key.clone(),
                epoch,
            },
        });
        if self.watch.is_none() {
            self.read(client, now);
        }
    }

    /// Leadership ends (if it was held): the event, then a fresh session and a new campaign.
    fn depose(&mut self, client: &mut CoordClient, now: Duration, reason: Deposed) {
        let Phase::Leading { epoch } = self.phase else {
            return;
        };
        tracing::warn!(key = %self.config.key, epoch, %reason, "deposed");
        self.events
            .push_back(ElectionEvent::Deposed { epoch, reason });
        // Revoking the old lease lets a standby take over at once (if the masters hear it).
        client.end_session(now);
        self.lease = None;
        self.set_phase(Phase::Following);
        self.start(client, now);
    }
}
