//! [`ReplicatedState`]: a framework leader's state in the coordination store, under a key
//! prefix, written only with its election token.
//!
//! - **Load** at election ([`ReplicatedState::load`]): every key under the prefix is read, in
//!   pages of [`STATE_LOAD_PAGE_KEYS`], into an in-memory mirror. The pages are read at
//!   different revisions; that is one consistent state because every writer of the prefix
//!   writes with a guard, and the guards of the leaders before this one no longer hold (a
//!   framework must not write its prefix any other way).
//! - **Write** ([`ReplicatedState::write`]): a list of puts and deletes becomes one guarded
//!   transaction (`CoordOp::Txn` with the election token as its guard), so that it lands all
//!   or nothing, and only while this leader's epoch holds the election key. One transaction is
//!   in flight at a time, so that writes commit in the order they were made; the writes made
//!   meanwhile are merged (last write of a key wins) into the next one, up to the store's
//!   transaction limits: a group commit.
//! - **Outcome**: [`StateEvent::Committed`] for each write, in order, once its transaction
//!   applied (the mirror then shows it); or [`StateEvent::Failed`] for it and every write
//!   after it: the guard no longer holds, the store refused, or no answer came in time (the
//!   outcome is unknown). A failure means the framework must step down: its state is no longer
//!   what it believes, and a new leader will load what landed. The state takes no more writes
//!   until it is loaded again.
//!
//! Values larger than the store's limit (`COORD_VALUE_BYTES_MAX`, 256 KiB) are refused by
//! [`ReplicatedState::write`] with [`StateError::ValueTooLarge`], naming the key: split large
//! records into several keys (Marathon keeps one key per app and per task, as it did in
//! ZooKeeper, where the limit was 1 MiB). Splitting here would make a value's parts land in
//! one transaction only while they fit in [`COORD_TXN_BYTES_MAX`], so the framework decides.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::time::Duration;

use plateau_master::coord::{CoordOp, CoordReply, FencingToken, TxnOp};
use plateau_master::limits::{
    COORD_KEY_BYTES_MAX, COORD_TXN_BYTES_MAX, COORD_TXN_OPS_MAX, COORD_VALUE_BYTES_MAX,
};

use super::client::{ClientEvent, CoordClient, RequestError, RequestId};
use crate::limits::{STATE_LOAD_PAGE_KEYS, STATE_WRITES_QUEUED_MAX};

/// Merged changes, by full key: `Some(value)` a put, `None` a delete.
type Changes = BTreeMap<String, Option<Vec<u8>>>;

/// A write of the state: the order writes commit in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WriteId(pub u64);

impl fmt::Display for WriteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "write {}", self.0)
    }
}

/// One change of a write; keys are relative to the state's prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateOp {
    /// Write `value` at `key`.
    Put {
        /// The key, under the prefix.
        key: String,
        /// The value (at most `COORD_VALUE_BYTES_MAX` bytes).
        value: Vec<u8>,
    },
    /// Delete `key` (absent: nothing).
    Delete {
        /// The key, under the prefix.
        key: String,
    },
}

impl StateOp {
    fn key(&self) -> &str {
        match self {
            StateOp::Put { key, .. } | StateOp::Delete { key } => key,
        }
    }
}

/// Why a write was not taken, or failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateError {
    /// The state is not loaded (not elected yet, or loading).
    NotLoaded,
    /// An earlier write failed: the framework must step down; nothing more is written.
    Failed {
        /// The first failure.
        why: String,
    },
    /// The framework stepped down: the write may or may not land (it lands only if its
    /// epoch still held when it was applied).
    Deposed,
    /// A key must not be empty.
    EmptyKey,
    /// The key with the prefix is too long.
    KeyTooLong {
        /// The key (under the prefix).
        key: String,
        /// Its length with the prefix.
        bytes: usize,
        /// The most accepted.
        max: usize,
    },
    /// A value is larger than the store accepts: split it into several keys.
    ValueTooLarge {
        /// The key.
        key: String,
        /// Its size.
        bytes: usize,
        /// The most accepted.
        max: usize,
    },
    /// More changes in one write than one transaction takes.
    TooManyOps {
        /// Changes given (after merging repeated keys).
        ops: usize,
        /// The most accepted.
        max: usize,
    },
    /// More key and value bytes in one write than one transaction takes.
    TooLarge {
        /// Bytes given.
        bytes: usize,
        /// The most accepted.
        max: usize,
    },
    /// [`STATE_WRITES_QUEUED_MAX`] writes wait already.
    TooManyQueued {
        /// The maximum.
        max: usize,
    },
    /// The client did not take the request (overloaded).
    Client(String),
    /// The transaction failed: refused (a stale guard: another leader) or with an unknown
    /// outcome.
    Request(RequestError),
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateError::NotLoaded => write!(f, "the state is not loaded (not the leader)"),
            StateError::Failed { why } => write!(f, "an earlier write failed ({why})"),
            StateError::Deposed => write!(f, "no longer the leader"),
            StateError::EmptyKey => write!(f, "empty key"),
            StateError::KeyTooLong { key, bytes, max } => {
                write!(
                    f,
                    "key '{key}' is {bytes} bytes with its prefix (maximum {max})"
                )
            }
            StateError::ValueTooLarge { key, bytes, max } => write!(
                f,
                "the value of '{key}' is {bytes} bytes (maximum {max}): split it into several keys"
            ),
            StateError::TooManyOps { ops, max } => {
                write!(f, "{ops} changes in one write (maximum {max})")
            }
            StateError::TooLarge { bytes, max } => {
                write!(f, "{bytes} bytes in one write (maximum {max})")
            }
            StateError::TooManyQueued { max } => write!(f, "{max} writes wait already"),
            StateError::Client(why) => write!(f, "{why}"),
            StateError::Request(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StateError {}

/// What the owner learns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateEvent {
    /// The state is loaded: writes are taken.
    Loaded {
        /// The revision of the last page read.
        revision: u64,
        /// Keys loaded.
        keys: usize,
    },
    /// The load failed (no answer, a refusal): step down.
    LoadFailed {
        /// Why.
        error: RequestError,
    },
    /// A write committed (the writes before it did too).
    Committed {
        /// The write.
        write: WriteId,
        /// The revision of its transaction.
        revision: u64,
    },
    /// A write failed (the writes after it too): step down.
    Failed {
        /// The write.
        write: WriteId,
        /// Why.
        error: StateError,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Idle,
    Loading { request: RequestId },
    Ready,
    Failed(String),
}

#[derive(Debug, Clone)]
struct InFlight {
    request: RequestId,
    writes: Vec<WriteId>,
    changes: Changes,
}

/// A framework's replicated state (see the [module docs](self)).
#[derive(Debug)]
pub struct ReplicatedState {
    prefix: String,
    mirror: BTreeMap<String, Vec<u8>>,
    phase: Phase,
    token: Option<FencingToken>,
    queue: VecDeque<(WriteId, Changes)>,
    in_flight: Option<InFlight>,
    next_write: u64,
    committed_through: Option<WriteId>,
    /// Requests given up on before their answer (swallowed when it comes).
    abandoned: BTreeSet<RequestId>,
    events: VecDeque<StateEvent>,
}

impl ReplicatedState {
    /// The state under `prefix` (e.g. `/marathon/state/`), not loaded.
    pub fn new(prefix: impl Into<String>) -> Self {
        ReplicatedState {
            prefix: prefix.into(),
            mirror: BTreeMap::new(),
            phase: Phase::Idle,
            token: None,
            queue: VecDeque::new(),
            in_flight: None,
            next_write: 1,
            committed_through: None,
            abandoned: BTreeSet::new(),
            events: VecDeque::new(),
        }
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Reads the whole prefix (dropping what was loaded); writes will be guarded by `token`.
    pub fn load(&mut self, client: &mut CoordClient, now: Duration, token: FencingToken) {
        self.reset();
        self.token = Some(token);
        self.read_page(client, now, None);
    }

    /// Drops the state (the framework stepped down): writes not committed yet fail with
    /// [`StateError::Deposed`] (they land only if their epoch still held).
    pub fn reset(&mut self) {
        if let Phase::Loading { request } = self.phase {
            self.abandoned.insert(request);
        }
        self.fail_all(StateError::Deposed);
        self.mirror.clear();
        self.phase = Phase::Idle;
        self.token = None;
    }

    /// Whether writes are taken.
    pub fn is_loaded(&self) -> bool {
        self.phase == Phase::Ready
    }

    /// A value, as committed.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.mirror.get(key).map(Vec::as_slice)
    }

    /// The keys under `sub_prefix` (relative to the state's prefix) and their values, in key
    /// order, as committed.
    pub fn range<'a>(&'a self, sub_prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a [u8])> {
        self.mirror
            .range::<str, _>((
                std::ops::Bound::Included(sub_prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(move |(k, _)| k.starts_with(sub_prefix))
            .map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.mirror.len()
    }

    /// Whether there is no key.
    pub fn is_empty(&self) -> bool {
        self.mirror.is_empty()
    }

    /// The last write committed (every one before it is).
    pub fn committed_through(&self) -> Option<WriteId> {
        self.committed_through
    }

    /// The last write taken (`None`: none since the state was made).
    pub fn last_write(&self) -> Option<WriteId> {
        (self.next_write > 1).then(|| WriteId(self.next_write - 1))
    }

    /// Whether some write taken has not committed yet.
    pub fn has_uncommitted(&self) -> bool {
        self.in_flight.is_some() || !self.queue.is_empty()
    }

    /// Takes a write: one transaction of `ops` (keys relative to the prefix), guarded by the
    /// election token, committed after every write taken before it.
    pub fn write(
        &mut self,
        client: &mut CoordClient,
        now: Duration,
        ops: Vec<StateOp>,
    ) -> Result<WriteId, StateError> {
        match &self.phase {
            Phase::Ready => {}
            Phase::Failed(why) => return Err(StateError::Failed { why: why.clone() }),
            Phase::Idle | Phase::Loading { .. } => return Err(StateError::NotLoaded),
        }
        if self.queue.len() >= STATE_WRITES_QUEUED_MAX {
            return Err(StateError::TooManyQueued {
                max: STATE_WRITES_QUEUED_MAX,
            });
        }
        let mut changes = BTreeMap::new();
        for op in ops {
            let key = op.key();
            if key.is_empty() {
                return Err(StateError::EmptyKey);
            }
            let full = format!("{}{key}", self.prefix);
            if full.len() > COORD_KEY_BYTES_MAX {
                return Err(StateError::KeyTooLong {
                    key: key.to_string(),
                    bytes: full.len(),
                    max: COORD_KEY_BYTES_MAX,
                });
            }
            match op {
                StateOp::Put { key, value } => {
                    if value.len() > COORD_VALUE_BYTES_MAX {
                        return Err(StateError::ValueTooLarge {
                            key,
                            bytes: value.len(),
                            max: COORD_VALUE_BYTES_MAX,
                        });
                    }
                    changes.insert(full, Some(value));
                }
                StateOp::Delete { .. } => {
                    changes.insert(full, None);
                }
            }
        }
        if changes.len() > COORD_TXN_OPS_MAX {
            return Err(StateError::TooManyOps {
                ops: changes.len(),
                max: COORD_TXN_OPS_MAX,
            });
        }
        let bytes = bytes_of(&changes);
        if bytes > COORD_TXN_BYTES_MAX {
            return Err(StateError::TooLarge {
                bytes,
                max: COORD_TXN_BYTES_MAX,
            });
        }
        let id = WriteId(self.next_write);
        self.next_write += 1;
        self.queue.push_back((id, changes));
        self.pump(client, now);
        Ok(id)
    }

    /// An event of the client: true when it was the state's.
    pub fn handle_client_event(
        &mut self,
        client: &mut CoordClient,
        now: Duration,
        event: &ClientEvent,
    ) -> bool {
        let ClientEvent::Answered { request, outcome } = event else {
            return false;
        };
        if self.abandoned.remove(request) {
            return true;
        }
        if self.phase == (Phase::Loading { request: *request }) {
            match outcome {
                Ok(CoordReply::Range {
                    revision,
                    entries,
                    more,
                }) => {
                    for (key, entry) in entries {
                        if let Some(relative) = key.strip_prefix(self.prefix.as_str()) {
                            self.mirror
                                .insert(relative.to_string(), entry.value.clone());
                        }
                    }
                    match (more, entries.last()) {
                        (true, Some((last, _))) => {
                            let after = last.clone();
                            self.read_page(client, now, Some(after));
                        }
                        _ => {
                            self.phase = Phase::Ready;
                            self.events.push_back(StateEvent::Loaded {
                                revision: *revision,
                                keys: self.mirror.len(),
                            });
                        }
                    }
                }
                Ok(other) => {
                    tracing::error!(?other, "a range read answered with another reply");
                    self.load_failed(RequestError::Unknown { attempts: 0 });
                }
                Err(e) => self.load_failed(e.clone()),
            }
            return true;
        }
        if self
            .in_flight
            .as_ref()
            .is_none_or(|f| f.request != *request)
        {
            return false;
        }
        let done = self.in_flight.take().expect("checked");
        match outcome {
            Ok(CoordReply::Txn { revision }) => {
                for (key, change) in done.changes {
                    let relative = key[self.prefix.len()..].to_string();
                    match change {
                        Some(value) => {
                            self.mirror.insert(relative, value);
                        }
                        None => {
                            self.mirror.remove(&relative);
                        }
                    }
                }
                for write in done.writes {
                    self.committed_through = Some(write);
                    self.events.push_back(StateEvent::Committed {
                        write,
                        revision: *revision,
                    });
                }
                self.pump(client, now);
            }
            other => {
                let error = match other {
                    Err(e) => StateError::Request(e.clone()),
                    Ok(reply) => StateError::Client(format!("unexpected answer {reply:?}")),
                };
                tracing::warn!(%error, "state write failed: the framework must step down");
                self.phase = Phase::Failed(error.to_string());
                for write in done.writes {
                    self.events.push_back(StateEvent::Failed {
                        write,
                        error: error.clone(),
                    });
                }
                self.fail_all(error);
            }
        }
        true
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<StateEvent> {
        self.events.pop_front()
    }

    // ---- inside -----------------------------------------------------------------------------

    fn read_page(&mut self, client: &mut CoordClient, now: Duration, after: Option<String>) {
        let op = CoordOp::Range {
            prefix: self.prefix.clone(),
            after,
            limit: STATE_LOAD_PAGE_KEYS,
        };
        match client.request(now, op) {
            Ok(request) => self.phase = Phase::Loading { request },
            Err(_) => self.load_failed(RequestError::Unknown { attempts: 0 }),
        }
    }

    fn load_failed(&mut self, error: RequestError) {
        tracing::warn!(%error, prefix = %self.prefix, "state load failed");
        self.phase = Phase::Idle;
        self.events.push_back(StateEvent::LoadFailed { error });
    }

    /// Sends the next transaction: the queued writes merged while they fit.
    fn pump(&mut self, client: &mut CoordClient, now: Duration) {
        if self.in_flight.is_some() || self.queue.is_empty() || self.phase != Phase::Ready {
            return;
        }
        let mut writes = Vec::new();
        let mut changes: Changes = BTreeMap::new();
        let mut bytes = 0usize;
        while let Some((_, next)) = self.queue.front() {
            // What merging `next` adds (a key written again replaces its earlier change).
            let mut keys_added = 0;
            let mut bytes_after = bytes;
            for (key, change) in next {
                let size = change.as_ref().map_or(0, Vec::len);
                match changes.get(key) {
                    Some(old) => {
                        bytes_after = bytes_after - old.as_ref().map_or(0, Vec::len) + size;
                    }
                    None => {
                        keys_added += 1;
                        bytes_after += key.len() + size;
                    }
                }
            }
            let fits = changes.len() + keys_added <= COORD_TXN_OPS_MAX
                && bytes_after <= COORD_TXN_BYTES_MAX;
            if !fits && !writes.is_empty() {
                break;
            }
            let (id, next) = self.queue.pop_front().expect("front exists");
            writes.push(id);
            changes.extend(next);
            bytes = bytes_after;
        }
        debug_assert_eq!(bytes, bytes_of(&changes));
        let ops = changes
            .iter()
            .map(|(key, change)| match change {
                Some(value) => TxnOp::Put {
                    key: key.clone(),
                    value: value.clone(),
                },
                None => TxnOp::Delete { key: key.clone() },
            })
            .collect();
        let op = CoordOp::Txn {
            guard: self.token.clone(),
            ops,
        };
        match client.request(now, op) {
            Ok(request) => {
                self.in_flight = Some(InFlight {
                    request,
                    writes,
                    changes,
                })
            }
            Err(e) => {
                let error = StateError::Client(e.to_string());
                self.phase = Phase::Failed(error.to_string());
                for write in writes {
                    self.events.push_back(StateEvent::Failed {
                        write,
                        error: error.clone(),
                    });
                }
                self.fail_all(error);
            }
        }
    }

    /// Fails the write in flight (abandoning its request) and every queued one.
    fn fail_all(&mut self, error: StateError) {
        if let Some(in_flight) = self.in_flight.take() {
            self.abandoned.insert(in_flight.request);
            for write in in_flight.writes {
                self.events.push_back(StateEvent::Failed {
                    write,
                    error: error.clone(),
                });
            }
        }
        for (write, _) in std::mem::take(&mut self.queue) {
            self.events.push_back(StateEvent::Failed {
                write,
                error: error.clone(),
            });
        }
    }
}

/// Key and value bytes of merged changes, as the store counts a transaction's.
fn bytes_of(changes: &Changes) -> usize {
    changes
        .iter()
        .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len))
        .sum()
}
