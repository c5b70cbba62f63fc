//! Plateau's replicated log: a group of 3 or 5 processes that agree, through openraft, on one
//! sequence of commands and one leader at a time — the base of the highly available master.
//!
//! A [`Replica`] is not a process: a process (the master) embeds one and forwards it three
//! kinds of message — raft requests and answers from its peers, and a wake-up timer. openraft
//! is async; its tasks run on a deterministic [`executor::Executor`] the replica polls inside
//! those handlers, at the handler's `ctx.now()`, with randomness from the process's seeded RNG.
//! So the same code runs on a real node (QUIC between replicas, redb on disk) and in the
//! simulator (virtual clock, [`storage::MemoryDisk`]), where the same seed gives the same
//! elections.
//!
//! What is pure and what does I/O: the [`ReplicatedState`] the application supplies is pure
//! (commands in, answers out). The replica writes its log, vote and snapshots to a
//! [`storage::LogDisk`] before it acknowledges them, and sends messages only through the
//! context it is given.
//!
//! A process that hosts a replica:
//! 1. [`Replica::open`] on its disk with the application state; [`Replica::start`] in
//!    `initialize` (with the group's members on first start: [`Replica::bootstrap`]).
//! 2. Installs [`install`]'s three handlers, which call [`HostsReplica::replica`] and then
//!    [`HostsReplica::replica_changed`] so the host can look at [`Replica::status`] and take
//!    [`Replica::drain_completions`].
//! 3. Proposes commands with [`Replica::propose`] (leader only) and acts only while
//!    [`Replica::is_leader_with_lease`].
//!
//! ```
//! use plateau_replica::{HostsReplica, Replica, ReplicaConfig, ReplicatedState};
//! use plateau_replica::storage::MemoryDisk;
//! use plateau_runtime::sim::{Sim, SimConfig};
//! use plateau_runtime::{Context, Handlers, NodeAddr, Process, Upid};
//!
//! /// A counter: every command adds its byte.
//! #[derive(Default)]
//! struct Counter(u64);
//! impl ReplicatedState for Counter {
//!     fn apply(&mut self, _index: u64, command: &[u8]) -> Vec<u8> {
//!         self.0 += u64::from(command[0]);
//!         self.0.to_le_bytes().to_vec()
//!     }
//!     fn snapshot(&self) -> Vec<u8> { self.0.to_le_bytes().to_vec() }
//!     fn restore(&mut self, s: &[u8]) -> Result<(), String> {
//!         self.0 = u64::from_le_bytes(s.try_into().map_err(|_| "8 bytes")?);
//!         Ok(())
//!     }
//! }
//!
//! struct Member { replica: Replica<Counter>, peers: Vec<Upid> }
//! impl HostsReplica for Member {
//!     type State = Counter;
//!     fn replica(&mut self) -> Option<&mut Replica<Counter>> { Some(&mut self.replica) }
//!     fn replica_changed(&mut self, ctx: &mut Context<'_>) {
//!         if self.replica.is_leader_with_lease(ctx.now().since_origin())
//!             && self.replica.status().last_applied.is_some()
//!             && self.replica.with_state(|c| c.0) == 0
//!             && self.replica.proposals_in_flight() == 0
//!         {
//!             self.replica.propose(ctx, vec![5]);
//!         }
//!         self.replica.drain_completions();
//!     }
//! }
//! impl Process for Member {
//!     fn install(h: &mut Handlers<Self>) { plateau_replica::install(h); }
//!     fn initialize(&mut self, ctx: &mut Context<'_>) {
//!         self.replica.bootstrap(&self.peers);
//!         self.replica.start(ctx);
//!     }
//! }
//!
//! let mut sim = Sim::new(SimConfig::new(7));
//! let nodes: Vec<NodeAddr> = (1..=3).map(|i| NodeAddr::new(format!("10.0.0.{i}"), 5050)).collect();
//! let peers: Vec<Upid> = nodes.iter().map(|n| Upid::new("master", n)).collect();
//! for (node, me) in nodes.iter().zip(&peers) {
//!     sim.add_node(node.clone());
//!     let replica = Replica::open(ReplicaConfig::new(me.clone()), Box::new(MemoryDisk::new()),
//!                                 Counter::default(), 7).unwrap();
//!     sim.spawn(node, "master", Member { replica, peers: peers.clone() });
//! }
//! sim.run_for(std::time::Duration::from_secs(5));
//! for me in &peers {
//!     assert_eq!(sim.inspect(me, |m: &Member| m.replica.with_state(|c| c.0)), Some(5));
//! }
//! ```
#![deny(missing_docs)]

pub mod error;
pub mod executor;
pub mod limits;
pub mod network;
pub mod storage;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::metrics::RaftMetrics;
use openraft::{ChangeMembers, Config, Raft, ServerState, SnapshotPolicy};
use plateau_runtime::{Context, Handlers, TimerId, Upid};
use rand::RngCore;
use serde::{Deserialize, Serialize};

pub use error::{ProposeError, ReplicaError};
use executor::Executor;
use limits::*;
use network::{
    decode, encode, Network, Outbound, ReplicaRequestMessage, ReplicaResponseMessage,
    ReplicaWakeTimer, RpcKind, SharedWire, Wire,
};
use storage::{LogDisk, LogStore, StateMachineStore};

openraft::declare_raft_types!(
    /// The openraft types of every replica: opaque commands and answers (the application
    /// encodes its own), members named by their process address.
    pub TypeConfig:
        D = Vec<u8>,
        R = Vec<u8>,
        NodeId = u64,
        Node = ReplicaNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = std::io::Cursor<Vec<u8>>,
        Responder = openraft::impls::OneshotResponder<TypeConfig>,
        AsyncRuntime = executor::PlateauRuntime,
);

/// A member of a group, as stored in the log's membership entries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaNode {
    /// The process hosting the replica (`master@host:port`).
    pub upid: String,
}

/// The application's state: a deterministic function of the commands applied, in order.
pub trait ReplicatedState: Send + 'static {
    /// Applies the command committed at log `index`; returns the answer for its proposer.
    fn apply(&mut self, index: u64, command: &[u8]) -> Vec<u8>;
    /// The whole state, encoded (for snapshots).
    fn snapshot(&self) -> Vec<u8>;
    /// Replaces the whole state with a snapshot's.
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String>;
}

/// The raft id of the member hosted by `upid` (a stable hash of its address).
pub fn node_id(upid: &Upid) -> u64 {
    plateau_runtime::rng::stable_hash(upid.to_string().as_bytes())
}

/// Settings of a replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaConfig {
    /// The process hosting this replica.
    pub upid: Upid,
    /// Leader heartbeat interval.
    pub heartbeat_interval: Duration,
    /// See [`limits::ELECTION_TIMEOUT_MIN_DEFAULT`]; also how long a leader acts after it
    /// last heard from a majority.
    pub election_timeout_min: Duration,
    /// See [`limits::ELECTION_TIMEOUT_MAX_DEFAULT`].
    pub election_timeout_max: Duration,
    /// Entries applied since the last snapshot that trigger a new one.
    pub snapshot_after_entries: u64,
    /// Entries kept behind the latest snapshot.
    pub log_entries_kept: u64,
}

impl ReplicaConfig {
    /// The defaults for the replica hosted by `upid`.
    pub fn new(upid: Upid) -> Self {
        ReplicaConfig {
            upid,
            heartbeat_interval: HEARTBEAT_INTERVAL_DEFAULT,
            election_timeout_min: ELECTION_TIMEOUT_MIN_DEFAULT,
            election_timeout_max: ELECTION_TIMEOUT_MAX_DEFAULT,
            snapshot_after_entries: SNAPSHOT_AFTER_ENTRIES_DEFAULT,
            log_entries_kept: LOG_ENTRIES_KEPT_DEFAULT,
        }
    }

    fn openraft(&self) -> Result<Config, ReplicaError> {
        let ms = |d: Duration| d.as_millis() as u64;
        let config = Config {
            cluster_name: "plateau".to_string(),
            heartbeat_interval: ms(self.heartbeat_interval),
            election_timeout_min: ms(self.election_timeout_min),
            election_timeout_max: ms(self.election_timeout_max),
            install_snapshot_timeout: ms(self.election_timeout_min).max(200),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_after_entries),
            max_in_snapshot_log_to_keep: self.log_entries_kept,
            snapshot_max_chunk_size: SNAPSHOT_CHUNK_BYTES_MAX,
            ..Config::default()
        };
        config
            .validate()
            .map_err(|e| ReplicaError::Config(e.to_string()))
    }
}

/// A replica's part in its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// Not started, or stopped by a storage failure.
    Down,
    /// Following a leader (or waiting for one).
    Follower,
    /// Standing for election.
    Candidate,
    /// Leading.
    Leader,
    /// Receiving the log without a vote (joining the group).
    Learner,
}

/// Where a replica stands (refreshed after every run of its tasks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaStatus {
    /// Its part.
    pub role: Role,
    /// The current term.
    pub term: u64,
    /// The leader it knows (itself when leading).
    pub leader: Option<Upid>,
    /// Index of the last entry applied to the state.
    pub last_applied: Option<u64>,
    /// Index of the last entry in its log.
    pub last_log_index: Option<u64>,
    /// Index of its latest snapshot.
    pub snapshot_index: Option<u64>,
    /// The voting members.
    pub voters: Vec<Upid>,
    /// The non-voting members (joining).
    pub learners: Vec<Upid>,
    /// Leading only: when it last heard from a majority (monotonic, since the clock's origin).
    pub quorum_acked_at: Option<Duration>,
}

/// Identifies a proposal until its outcome is drained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ticket(pub u64);

/// A committed proposal: its log index and the state's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// Where it sits in the log.
    pub index: u64,
    /// What [`ReplicatedState::apply`] answered (empty for membership changes).
    pub answer: Vec<u8>,
}

type Completions = Arc<Mutex<Vec<(Ticket, Result<Committed, ProposeError>)>>>;

/// One member of a replicated group, embedded in a process. See the [crate docs](crate).
pub struct Replica<S: ReplicatedState> {
    config: ReplicaConfig,
    id: u64,
    executor: Executor,
    wire: SharedWire,
    raft: Arc<Mutex<Option<Raft<TypeConfig>>>>,
    metrics: Option<tokio::sync::watch::Receiver<RaftMetrics<u64, ReplicaNode>>>,
    state: StateMachineStore<S>,
    log: LogStore,
    completions: Completions,
    next_ticket: u64,
    in_flight: usize,
    status: ReplicaStatus,
    /// The wake-up timer set, and when it fires.
    wake: Option<(Duration, TimerId)>,
    bootstrap: Option<BTreeMap<u64, ReplicaNode>>,
    started: bool,
}

impl<S: ReplicatedState> std::fmt::Debug for Replica<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("upid", &self.config.upid)
            .field("status", &self.status)
            .finish()
    }
}

impl<S: ReplicatedState> Replica<S> {
    /// A replica on `disk` (recovering what it holds) with `state` as the empty state; `seed`
    /// seeds openraft's random draws until [`Replica::start`] reseeds them from the process.
    pub fn open(
        config: ReplicaConfig,
        disk: Box<dyn LogDisk>,
        state: S,
        seed: u64,
    ) -> Result<Self, ReplicaError> {
        config.openraft()?;
        let recovered = LogStore::open(disk)?;
        let state = StateMachineStore::new(state, recovered.snapshot, recovered.log.clone())?;
        let id = node_id(&config.upid);
        Ok(Replica {
            id,
            executor: Executor::new(seed),
            wire: Arc::new(Mutex::new(Wire::default())),
            raft: Arc::new(Mutex::new(None)),
            metrics: None,
            state,
            log: recovered.log,
            completions: Arc::new(Mutex::new(Vec::new())),
            next_ticket: 0,
            in_flight: 0,
            status: ReplicaStatus {
                role: Role::Down,
                term: 0,
                leader: None,
                last_applied: None,
                last_log_index: None,
                snapshot_index: None,
                voters: Vec::new(),
                learners: Vec::new(),
                quorum_acked_at: None,
            },
            wake: None,
            bootstrap: None,
            started: false,
            config,
        })
    }

    /// On start, make a group of `members` if this replica has never been part of one
    /// (openraft ignores it otherwise). Every member of a new group may be given the same
    /// list; a replica that joins a running group is given none and is added by the leader.
    pub fn bootstrap(&mut self, members: &[Upid]) {
        self.bootstrap = Some(
            members
                .iter()
                .map(|m| {
                    (
                        node_id(m),
                        ReplicaNode {
                            upid: m.to_string(),
                        },
                    )
                })
                .collect(),
        );
    }

    /// Starts openraft (call once, from the host's `initialize`).
    pub fn start(&mut self, ctx: &mut Context<'_>) {
        assert!(!self.started, "a replica starts once");
        self.started = true;
        self.executor = Executor::new(ctx.rng().next_u64());
        let config = Arc::new(self.config.openraft().expect("validated at open"));
        let network = Network {
            wire: self.wire.clone(),
        };
        let (id, log, state, slot) = (
            self.id,
            self.log.clone(),
            self.state.clone(),
            self.raft.clone(),
        );
        let bootstrap = self.bootstrap.take();
        self.executor.spawn_detached(async move {
            match Raft::new(id, config, network, log, state).await {
                Ok(raft) => {
                    *slot.lock().expect("raft slot") = Some(raft.clone());
                    if let Some(members) = bootstrap {
                        match raft.initialize(members).await {
                            Ok(()) => tracing::info!("replica group bootstrapped"),
                            Err(e) => {
                                tracing::debug!(error = %e, "replica already part of a group")
                            }
                        }
                    }
                }
                Err(e) => tracing::error!(error = %e, "replica failed to start"),
            }
        });
        self.poll(ctx);
    }

    /// This replica's raft id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Where it stands.
    pub fn status(&self) -> &ReplicaStatus {
        &self.status
    }

    /// True while this replica leads and heard from a majority within the least election
    /// timeout: no other replica can have been elected since (followers refuse to vote for
    /// the greatest election timeout after they last heard from it).
    pub fn is_leader_with_lease(&self, now: Duration) -> bool {
        self.status.role == Role::Leader
            && self
                .status
                .quorum_acked_at
                .is_some_and(|at| now < at + self.config.election_timeout_min)
    }

    /// When the current lease ends (leading only).
    pub fn lease_until(&self) -> Option<Duration> {
        (self.status.role == Role::Leader)
            .then_some(self.status.quorum_acked_at)
            .flatten()
            .map(|at| at + self.config.election_timeout_min)
    }

    /// Reads or changes the application state. Changing it outside [`ReplicatedState::apply`]
    /// is for state that is not replicated (queues of events to hand out, caches).
    pub fn with_state<R>(&self, f: impl FnOnce(&mut S) -> R) -> R {
        let mut inner = self.state.inner.lock().expect("state lock");
        f(&mut inner.state)
    }

    /// Entries in the log now (compaction keeps it bounded).
    pub fn log_len(&self) -> usize {
        self.log.len()
    }

    /// Proposals whose outcome is not drained yet.
    pub fn proposals_in_flight(&self) -> usize {
        self.in_flight
    }

    fn raft(&self) -> Option<Raft<TypeConfig>> {
        self.raft.lock().expect("raft slot").clone()
    }

    fn next_ticket(&mut self) -> Ticket {
        let ticket = Ticket(self.next_ticket);
        self.next_ticket += 1;
        self.in_flight += 1;
        ticket
    }

    fn fail_now(&self, ticket: Ticket, error: ProposeError) {
        self.completions
            .lock()
            .expect("completions lock")
            .push((ticket, Err(error)));
    }

    /// Proposes `command`; its outcome comes out of [`Replica::drain_completions`] once
    /// committed and applied (on this replica), or refused.
    pub fn propose(&mut self, ctx: &mut Context<'_>, command: Vec<u8>) -> Ticket {
        let ticket = self.next_ticket();
        let Some(raft) = self.raft() else {
            self.fail_now(ticket, ProposeError::Stopped("not started".into()));
            return ticket;
        };
        if self.in_flight > PROPOSALS_IN_FLIGHT_MAX {
            self.fail_now(
                ticket,
                ProposeError::Stopped("too many proposals in flight".into()),
            );
            return ticket;
        }
        let completions = self.completions.clone();
        self.executor.spawn_detached(async move {
            let outcome = raft
                .client_write(command)
                .await
                .map(|r| Committed {
                    index: r.log_id.index,
                    answer: r.data,
                })
                .map_err(write_error);
            completions
                .lock()
                .expect("completions lock")
                .push((ticket, outcome));
        });
        self.poll(ctx);
        ticket
    }

    /// Adds `member` to the group as a learner, then, once it has caught up, makes the voters
    /// `voters` (which should include it). Leader only. One outcome for the whole change.
    pub fn change_membership(
        &mut self,
        ctx: &mut Context<'_>,
        add: Option<Upid>,
        voters: &[Upid],
    ) -> Ticket {
        let ticket = self.next_ticket();
        let Some(raft) = self.raft() else {
            self.fail_now(ticket, ProposeError::Stopped("not started".into()));
            return ticket;
        };
        let voters: BTreeSet<u64> = voters.iter().map(node_id).collect();
        let completions = self.completions.clone();
        self.executor.spawn_detached(async move {
            let outcome = async {
                if let Some(add) = add {
                    let node = ReplicaNode {
                        upid: add.to_string(),
                    };
                    raft.add_learner(node_id(&add), node, true)
                        .await
                        .map_err(write_error)?;
                }
                raft.change_membership(ChangeMembers::ReplaceAllVoters(voters), false)
                    .await
                    .map(|r| Committed {
                        index: r.log_id.index,
                        answer: Vec::new(),
                    })
                    .map_err(write_error)
            }
            .await;
            completions
                .lock()
                .expect("completions lock")
                .push((ticket, outcome));
        });
        self.poll(ctx);
        ticket
    }

    /// Outcomes of proposals, in the order they were decided.
    pub fn drain_completions(&mut self) -> Vec<(Ticket, Result<Committed, ProposeError>)> {
        let done = std::mem::take(&mut *self.completions.lock().expect("completions lock"));
        self.in_flight -= done.len();
        done
    }

    /// A raft request from a peer.
    pub fn handle_request(
        &mut self,
        ctx: &mut Context<'_>,
        from: &Upid,
        msg: ReplicaRequestMessage,
    ) {
        let Some(raft) = self.raft() else {
            // Not started yet: the peer retries at its next heartbeat.
            return;
        };
        let wire = self.wire.clone();
        let from = from.clone();
        self.executor.spawn_detached(async move {
            let body = match msg.kind {
                RpcKind::Vote => match decode(&msg.body) {
                    Ok(rpc) => Some(encode(&raft.vote(rpc).await)),
                    Err(e) => bad_request(&from, "vote", &e),
                },
                RpcKind::Append => match decode(&msg.body) {
                    Ok(rpc) => Some(encode(&raft.append_entries(rpc).await)),
                    Err(e) => bad_request(&from, "append-entries", &e),
                },
                RpcKind::Snapshot => match decode(&msg.body) {
                    Ok(rpc) => Some(encode(&raft.install_snapshot(rpc).await)),
                    Err(e) => bad_request(&from, "install-snapshot", &e),
                },
            };
            if let Some(body) = body {
                wire.lock()
                    .expect("wire lock")
                    .outbox
                    .push(Outbound::Response(
                        from,
                        ReplicaResponseMessage { id: msg.id, body },
                    ));
            }
        });
        self.poll(ctx);
    }

    /// The answer to a raft request this replica sent.
    pub fn handle_response(
        &mut self,
        ctx: &mut Context<'_>,
        from: &Upid,
        msg: ReplicaResponseMessage,
    ) {
        if !self.wire.lock().expect("wire lock").answer(from, msg) {
            tracing::trace!(%from, "replica: answer to no pending request");
        }
        self.poll(ctx);
    }

    /// The wake-up timer fired.
    pub fn handle_wake(&mut self, ctx: &mut Context<'_>) {
        self.wake = None;
        self.poll(ctx);
    }

    /// Runs every task that can progress now, sends what they queued, refreshes the status
    /// and sets the wake-up timer for the next sleeping task.
    pub fn poll(&mut self, ctx: &mut Context<'_>) {
        let now = ctx.now().since_origin();
        self.executor.run(now);
        let outbox = std::mem::take(&mut self.wire.lock().expect("wire lock").outbox);
        for out in outbox {
            match out {
                Outbound::Request(to, msg) => ctx.send(&to, msg),
                Outbound::Response(to, msg) => ctx.send(&to, msg),
            }
        }
        self.refresh_status(now);
        if let Some(deadline) = self.executor.next_deadline() {
            if self.wake.is_none_or(|(at, _)| deadline < at) {
                if let Some((_, timer)) = self.wake.take() {
                    ctx.cancel(timer);
                }
                let timer = ctx.delay(deadline.saturating_sub(now), ReplicaWakeTimer);
                self.wake = Some((deadline, timer));
            }
        }
    }

    fn refresh_status(&mut self, now: Duration) {
        if self.metrics.is_none() {
            if let Some(raft) = self.raft() {
                self.metrics = Some(raft.metrics());
            }
        }
        let Some(rx) = self.metrics.as_mut() else {
            return;
        };
        if !rx.has_changed().unwrap_or(false) {
            return;
        }
        let m = rx.borrow_and_update().clone();
        let membership = m.membership_config.membership();
        let upid_of = |id: &u64| -> Option<Upid> {
            membership.get_node(id).and_then(|n| n.upid.parse().ok())
        };
        let role = match (m.running_state.is_ok(), m.state) {
            (false, _) => Role::Down,
            (true, ServerState::Leader) => Role::Leader,
            (true, ServerState::Follower) => Role::Follower,
            (true, ServerState::Candidate) => Role::Candidate,
            (true, ServerState::Learner) => Role::Learner,
            (true, ServerState::Shutdown) => Role::Down,
        };
        let voters: Vec<Upid> = membership
            .voter_ids()
            .filter_map(|id| upid_of(&id))
            .collect();
        let learners: Vec<Upid> = membership
            .learner_ids()
            .filter_map(|id| upid_of(&id))
            .collect();
        // The metrics were published during the run that just ended, at `now`: "ms since a
        // majority acknowledged" converts to an instant. Rounded down to whole ms by openraft,
        // so one more is taken off: the lease never ends later than it should.
        let quorum_acked_at = match (role, m.millis_since_quorum_ack) {
            (Role::Leader, Some(ms)) => Some(now.saturating_sub(Duration::from_millis(ms + 1))),
            _ => None,
        };
        self.status = ReplicaStatus {
            role,
            term: m.current_term,
            leader: m.current_leader.as_ref().and_then(upid_of),
            last_applied: m.last_applied.map(|l| l.index),
            last_log_index: m.last_log_index,
            snapshot_index: m.snapshot.map(|l| l.index),
            voters,
            learners,
            quorum_acked_at,
        };
    }
}

fn bad_request(from: &Upid, what: &str, error: &str) -> Option<Vec<u8>> {
    tracing::warn!(%from, error, "replica: malformed {what} request dropped");
    None
}

fn write_error(e: RaftError<u64, ClientWriteError<u64, ReplicaNode>>) -> ProposeError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => ProposeError::NotLeader {
            leader: f.leader_node.and_then(|n| n.upid.parse().ok()),
        },
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
            ProposeError::Membership(c.to_string())
        }
        RaftError::Fatal(f) => ProposeError::Stopped(f.to_string()),
    }
}

/// A process that embeds a [`Replica`].
pub trait HostsReplica: Sized + 'static {
    /// The application state.
    type State: ReplicatedState;
    /// The replica (None when this process runs without one: its messages are ignored).
    fn replica(&mut self) -> Option<&mut Replica<Self::State>>;
    /// Called after every message the replica handled: look at the status, drain outcomes.
    fn replica_changed(&mut self, ctx: &mut Context<'_>);
}

fn on_request<P: HostsReplica>(
    p: &mut P,
    ctx: &mut Context<'_>,
    from: &Upid,
    m: ReplicaRequestMessage,
) {
    if let Some(replica) = p.replica() {
        replica.handle_request(ctx, from, m);
        p.replica_changed(ctx);
    }
}

fn on_response<P: HostsReplica>(
    p: &mut P,
    ctx: &mut Context<'_>,
    from: &Upid,
    m: ReplicaResponseMessage,
) {
    if let Some(replica) = p.replica() {
        replica.handle_response(ctx, from, m);
        p.replica_changed(ctx);
    }
}

fn on_wake<P: HostsReplica>(p: &mut P, ctx: &mut Context<'_>, from: &Upid, _: ReplicaWakeTimer) {
    if from != ctx.self_upid() {
        return;
    }
    if let Some(replica) = p.replica() {
        replica.handle_wake(ctx);
        p.replica_changed(ctx);
    }
}

/// Installs the handlers of the replica's messages in a process that hosts one.
pub fn install<P: HostsReplica + plateau_runtime::Process>(h: &mut Handlers<P>) {
    h.on(on_request::<P>).on(on_response::<P>).on(on_wake::<P>);
}
