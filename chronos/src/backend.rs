//! Where the scheduler's state goes: one interface ([`Backend::commit`]), two ways of
//! completing.
//!
//! - **Local** ([`Backend::Local`]): a [`Store`] on this node (redb, or memory in tests). A
//!   commit is durable when it returns, so whatever follows it (a launch, an acknowledgement,
//!   an API answer) may happen at once. One `plateau chronos` with one master runs so.
//! - **Replicated** ([`Backend::Replicated`]): the framework's replicated state in the masters'
//!   coordination store, written by the leader of several instances through the SDK's driver
//!   ([`Driver::write`]). A commit is *taken* when it returns and *durable* when the driver
//!   reports it ([`Scheduler::committed`](plateau_sdk::Scheduler::committed)). The driver holds
//!   every call to the master made meanwhile (launch, kill, acknowledgement, reconciliation)
//!   and sends them, in order, once the writes before them committed; API answers wait here
//!   ([`Backend::reply_when_committed`]). When the instance is deposed, the writes not committed
//!   may or may not land (only while its epoch held), the held calls are dropped and the
//!   waiting answers fail.
//!
//! In both cases the scheduler changes its in-memory model as soon as a commit is taken: its
//! writes commit in the order it made them, every effect waits for the writes before it, and a
//! deposed leader drops its model, so nothing acts on a state that did not land.

use std::collections::VecDeque;

use plateau_sdk::coord::WriteId;
use plateau_sdk::{Driver, LeaderConfig};

use crate::limits;
use crate::replicated::{self, OpsError};
use crate::scheduler::ApiError;
use crate::store::{Store, StoreError, Write};

/// A pending API answer: called once, with `Ok` when the writes it waited for committed, or
/// with the error that ended the wait.
pub type Reply = Box<dyn FnOnce(Result<(), ApiError>) + Send>;

/// Why a commit was not taken.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// The local store failed: the scheduler stops (as a crash would).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Not the leader (a standby, deposed, or its lease unconfirmed).
    #[error("not the leader")]
    NotLeading,
    /// Too many writes wait for their commit: the action waits or is refused.
    #[error("{uncommitted} state writes wait for the coordination store (at most {max})")]
    Behind {
        /// Writes not committed.
        uncommitted: usize,
        /// The most allowed.
        max: u64,
    },
    /// A record cannot be stored in the coordination store.
    #[error(transparent)]
    Ops(#[from] OpsError),
    /// The driver refused the write (it is being deposed).
    #[error("the state write was refused: {0}")]
    Refused(String),
}

/// The leader's part of the replicated backend.
pub struct Replicated {
    leader_config: LeaderConfig,
    /// True from `elected` to `deposed`.
    leading: bool,
    /// The leader's advertised address, as last seen (standbys proxy to it).
    leader: Option<String>,
    /// This scheduler's writes taken and not committed yet, in order.
    uncommitted: VecDeque<WriteId>,
    /// API answers waiting for a write (and every one before it) to commit, in order.
    replies: VecDeque<(WriteId, Reply)>,
}

impl std::fmt::Debug for Replicated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replicated")
            .field("leading", &self.leading)
            .field("leader", &self.leader)
            .field("uncommitted", &self.uncommitted.len())
            .field("replies", &self.replies.len())
            .finish()
    }
}

/// The scheduler's state store (see the [module docs](self)).
pub enum Backend {
    /// A store on this node: commits are durable when taken.
    Local(Box<dyn Store>),
    /// The replicated state of a leader + standbys: commits are durable when the driver says.
    Replicated(Replicated),
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backend::Local(_) => write!(f, "Local"),
            Backend::Replicated(r) => r.fmt(f),
        }
    }
}

impl Backend {
    /// The replicated backend of the instance that campaigns with `leader_config`.
    pub fn replicated(leader_config: LeaderConfig) -> Backend {
        Backend::Replicated(Replicated {
            leader_config,
            leading: false,
            leader: None,
            uncommitted: VecDeque::new(),
            replies: VecDeque::new(),
        })
    }

    /// The election configuration, for the replicated backend.
    pub fn leader_config(&self) -> Option<&LeaderConfig> {
        match self {
            Backend::Local(_) => None,
            Backend::Replicated(r) => Some(&r.leader_config),
        }
    }

    /// True when this instance may act on its model: always with a local store; with the
    /// replicated state, from `elected` to `deposed`.
    pub fn is_leading(&self) -> bool {
        match self {
            Backend::Local(_) => true,
            Backend::Replicated(r) => r.leading,
        }
    }

    /// The leader's advertised address as last seen (replicated backend).
    pub fn leader(&self) -> Option<&str> {
        match self {
            Backend::Local(_) => None,
            Backend::Replicated(r) => r.leader.as_deref(),
        }
    }

    /// Takes `writes` as one batch: durable at once (local), or written through the driver
    /// (replicated; split in order into transactions that fit, see [`replicated::split`]).
    pub fn commit(
        &mut self,
        driver: &mut Driver<'_, '_>,
        writes: &[Write],
    ) -> Result<(), CommitError> {
        match self {
            Backend::Local(store) => Ok(store.commit(writes)?),
            Backend::Replicated(r) => r.commit(driver, writes),
        }
    }

    /// Calls `reply` with `Ok` once every state write taken so far committed: at once with a
    /// local store, or when nothing is in flight; else when [`Backend::committed`] reaches the
    /// last write taken. Fails it at once when too many answers wait.
    pub fn reply_when_committed(&mut self, driver: &Driver<'_, '_>, reply: Reply) {
        let Backend::Replicated(r) = self else {
            return reply(Ok(()));
        };
        let waiting_for = driver
            .state()
            .filter(|s| s.has_uncommitted())
            .and_then(|s| s.last_write());
        match waiting_for {
            None => reply(Ok(())),
            Some(_) if r.replies.len() >= limits::REPLIES_WAITING_MAX => {
                reply(Err(ApiError::Unavailable(format!(
                    "{} answers wait for the coordination store already",
                    limits::REPLIES_WAITING_MAX
                ))))
            }
            Some(write) => r.replies.push_back((write, reply)),
        }
    }

    /// Leadership starts (replicated backend): nothing of an earlier one is pending.
    pub fn handle_elected(&mut self) {
        if let Backend::Replicated(r) = self {
            debug_assert!(r.replies.is_empty(), "deposed before elected again");
            r.leading = true;
            r.uncommitted.clear();
        }
    }

    /// Leadership ended: the answers waiting fail (the client asks again, and a standby
    /// proxies it to the next leader).
    pub fn handle_deposed(&mut self) {
        if let Backend::Replicated(r) = self {
            r.leading = false;
            r.uncommitted.clear();
            let error = || ApiError::NotLeader { leader: None };
            for (_, reply) in std::mem::take(&mut r.replies) {
                reply(Err(error()));
            }
        }
    }

    /// The leader is now at `leader` (replicated backend).
    pub fn handle_leader_changed(&mut self, leader: Option<&str>) {
        if let Backend::Replicated(r) = self {
            r.leader = leader.map(str::to_string);
        }
    }

    /// Every write up to `write` committed: the answers waiting for them go out.
    pub fn handle_committed(&mut self, write: WriteId) {
        if let Backend::Replicated(r) = self {
            while r.uncommitted.front().is_some_and(|w| *w <= write) {
                r.uncommitted.pop_front();
            }
            while r.replies.front().is_some_and(|(w, _)| *w <= write) {
                let (_, reply) = r.replies.pop_front().expect("front exists");
                reply(Ok(()));
            }
        }
    }

    /// Answers waiting for commits.
    pub fn replies_waiting(&self) -> usize {
        match self {
            Backend::Local(_) => 0,
            Backend::Replicated(r) => r.replies.len(),
        }
    }
}

impl Replicated {
    fn commit(&mut self, driver: &mut Driver<'_, '_>, writes: &[Write]) -> Result<(), CommitError> {
        if !self.leading || !driver.is_leading() {
            return Err(CommitError::NotLeading);
        }
        let state = driver.state().ok_or(CommitError::NotLeading)?;
        if !state.is_loaded() {
            return Err(CommitError::NotLeading);
        }
        let ops = replicated::ops_of(writes, |job| {
            state
                .range(&replicated::history_prefix(job))
                .map(|(key, _)| key.to_string())
                .collect()
        });
        let groups = replicated::split(state.prefix().len(), ops)?;
        let uncommitted = self.uncommitted.len();
        if (uncommitted + groups.len()) as u64 > limits::UNCOMMITTED_WRITES_MAX {
            return Err(CommitError::Behind {
                uncommitted,
                max: limits::UNCOMMITTED_WRITES_MAX,
            });
        }
        if groups.len() > 1 {
            tracing::info!(
                transactions = groups.len(),
                "a state change too large for one transaction is written in several, in order"
            );
        }
        for group in groups {
            // Only a deposition underway refuses a write that passed the checks above; the
            // model it leaves behind is dropped when `deposed` comes.
            let write = driver
                .write(group)
                .map_err(|e| CommitError::Refused(e.to_string()))?;
            self.uncommitted.push_back(write);
        }
        Ok(())
    }
}
