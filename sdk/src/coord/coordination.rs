//! [`Coordination`]: a client, an [`Election`] and a [`ReplicatedState`] wired together — what
//! a framework run as leader + standbys embeds.
//!
//! The recipe it carries out: campaign; once elected, load the state; only then lead
//! ([`CoordinationEvent::Leading`]); write through the state with the election token as the
//! guard; when a write fails or the state cannot load, step down; when deposed, drop the state
//! and campaign again as a standby.

use std::collections::VecDeque;
use std::time::Duration;

use plateau_master::coord::{
    CoordResponseMessage, FencingToken, LeaseKeepAliveResponseMessage, WatchEndedMessage,
    WatchEventsMessage,
};
use plateau_master::messages::NewMasterDetectedMessage;
use plateau_runtime::Upid;

use super::client::{ClientEvent, CoordClient, CoordClientConfig, Transmit};
use super::election::{Deposed, Election, ElectionConfig, ElectionEvent};
use super::state::{ReplicatedState, StateError, StateEvent, StateOp, WriteId};

/// What the framework learns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoordinationEvent {
    /// Elected and the state loaded: act as the leader, stamping calls with `token`.
    Leading {
        /// The election token.
        token: FencingToken,
    },
    /// Leadership ended (or, elected, the state could not load): stop acting at once. The
    /// candidate campaigns again.
    Deposed {
        /// The epoch it was elected at.
        epoch: u64,
        /// Why.
        reason: Deposed,
    },
    /// The holder of the election key changed (its advertised address; `None`: nobody).
    LeaderChanged {
        /// The holder's value.
        leader: Option<Vec<u8>>,
    },
    /// A state write committed (and every one before it).
    Committed {
        /// The write.
        write: WriteId,
        /// Its revision.
        revision: u64,
    },
    /// A state write did not commit (a [`CoordinationEvent::Deposed`] follows).
    WriteFailed {
        /// The write.
        write: WriteId,
        /// Why.
        error: StateError,
    },
    /// An event of the client for the framework's own requests and watches.
    Client(ClientEvent),
}

/// A client, an election and a state (see the [module docs](self)). Pure.
#[derive(Debug)]
pub struct Coordination {
    client: CoordClient,
    election: Election,
    state: ReplicatedState,
    /// Elected with this token and loading the state.
    loading: Option<FencingToken>,
    events: VecDeque<CoordinationEvent>,
}

impl Coordination {
    /// Not campaigning yet.
    pub fn new(client: CoordClientConfig, election: ElectionConfig, state_prefix: String) -> Self {
        Coordination {
            client: CoordClient::new(client),
            election: Election::new(election),
            state: ReplicatedState::new(state_prefix),
            loading: None,
            events: VecDeque::new(),
        }
    }

    /// Starts campaigning.
    pub fn campaign(&mut self, now: Duration) {
        self.election.campaign(&mut self.client, now);
        self.route(now);
    }

    /// Stops leading and campaigning (the lease is revoked: a standby takes over at once).
    pub fn resign(&mut self, now: Duration) {
        self.election.resign(&mut self.client, now);
        self.route(now);
    }

    /// Stop leading (the master refused the epoch, ...): deposed now, campaigning again.
    pub fn step_down(&mut self, now: Duration, why: &str) {
        self.election.step_down(&mut self.client, now, why);
        self.route(now);
    }

    /// Whether this framework leads at `now`: elected, sure of its lease, state loaded.
    pub fn is_leading(&self, now: Duration) -> bool {
        self.state.is_loaded() && self.election.is_leader(&self.client, now)
    }

    /// Writes the state (see [`ReplicatedState::write`]).
    pub fn write(&mut self, now: Duration, ops: Vec<StateOp>) -> Result<WriteId, StateError> {
        let write = self.state.write(&mut self.client, now, ops);
        self.route(now);
        write
    }

    /// The client (for the framework's own requests and watches; their events come as
    /// [`CoordinationEvent::Client`]).
    pub fn client_mut(&mut self) -> &mut CoordClient {
        &mut self.client
    }

    /// The client.
    pub fn client(&self) -> &CoordClient {
        &self.client
    }

    /// The election.
    pub fn election(&self) -> &Election {
        &self.election
    }

    /// The state (its mirror is what committed).
    pub fn state(&self) -> &ReplicatedState {
        &self.state
    }

    /// See [`CoordClient::handle_response`].
    pub fn handle_response(&mut self, now: Duration, from: &Upid, msg: CoordResponseMessage) {
        self.client.handle_response(now, from, msg);
        self.route(now);
    }

    /// See [`CoordClient::handle_keep_alive_response`].
    pub fn handle_keep_alive_response(
        &mut self,
        now: Duration,
        from: &Upid,
        msg: LeaseKeepAliveResponseMessage,
    ) {
        self.client.handle_keep_alive_response(now, from, msg);
        self.route(now);
    }

    /// See [`CoordClient::handle_watch_events`].
    pub fn handle_watch_events(&mut self, now: Duration, from: &Upid, msg: WatchEventsMessage) {
        self.client.handle_watch_events(now, from, msg);
        self.route(now);
    }

    /// See [`CoordClient::handle_watch_ended`].
    pub fn handle_watch_ended(&mut self, now: Duration, from: &Upid, msg: WatchEndedMessage) {
        self.client.handle_watch_ended(now, from, msg);
        self.route(now);
    }

    /// See [`CoordClient::handle_new_master_detected`].
    pub fn handle_new_master_detected(
        &mut self,
        now: Duration,
        from: &Upid,
        msg: &NewMasterDetectedMessage,
    ) {
        self.client.handle_new_master_detected(now, from, msg);
        self.route(now);
    }

    /// Time passed.
    pub fn handle_timeout(&mut self, now: Duration) {
        self.client.handle_timeout(now);
        self.election.handle_timeout(&mut self.client, now);
        self.route(now);
    }

    /// When [`Self::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Duration> {
        match (
            self.client.poll_timeout(),
            self.election.poll_timeout(&self.client),
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.client.poll_transmit()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<CoordinationEvent> {
        self.events.pop_front()
    }

    /// Whether events wait for [`Self::poll_event`].
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// Hands the client's events to the election and the state, and follows the recipe on
    /// theirs, until nothing is left.
    fn route(&mut self, now: Duration) {
        loop {
            let mut progressed = false;
            while let Some(event) = self.client.poll_event() {
                progressed = true;
                if self
                    .election
                    .handle_client_event(&mut self.client, now, &event)
                {
                    continue;
                }
                if self
                    .state
                    .handle_client_event(&mut self.client, now, &event)
                {
                    continue;
                }
                self.events.push_back(CoordinationEvent::Client(event));
            }
            while let Some(event) = self.election.poll_event() {
                progressed = true;
                match event {
                    ElectionEvent::Elected { token } => {
                        self.loading = Some(token.clone());
                        self.state.load(&mut self.client, now, token);
                    }
                    ElectionEvent::Deposed { epoch, reason } => {
                        self.loading = None;
                        self.state.reset();
                        self.events
                            .push_back(CoordinationEvent::Deposed { epoch, reason });
                    }
                    ElectionEvent::LeaderChanged { leader } => self
                        .events
                        .push_back(CoordinationEvent::LeaderChanged { leader }),
                }
            }
            while let Some(event) = self.state.poll_event() {
                progressed = true;
                match event {
                    StateEvent::Loaded { revision, keys } => {
                        if let Some(token) = self.loading.take() {
                            tracing::info!(
                                epoch = token.epoch,
                                revision,
                                keys,
                                "state loaded: leading"
                            );
                            self.events.push_back(CoordinationEvent::Leading { token });
                        }
                    }
                    StateEvent::LoadFailed { error } => {
                        self.loading = None;
                        let why = format!("the state did not load: {error}");
                        self.election.step_down(&mut self.client, now, &why);
                    }
                    StateEvent::Committed { write, revision } => self
                        .events
                        .push_back(CoordinationEvent::Committed { write, revision }),
                    StateEvent::Failed { write, error } => {
                        let deposed = error == StateError::Deposed;
                        self.events.push_back(CoordinationEvent::WriteFailed {
                            write,
                            error: error.clone(),
                        });
                        if !deposed {
                            let why = format!("a state write failed: {error}");
                            self.election.step_down(&mut self.client, now, &why);
                        }
                    }
                }
            }
            if !progressed {
                break;
            }
        }
    }
}
