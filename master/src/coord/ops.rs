//! The coordination store's vocabulary: the operations replicated through the log, their
//! answers and errors, keys, leases and watch events.
//!
//! These are wire types (postcard, inside log entries and messages): never reorder enum
//! variants or struct fields once released, only append.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::messages::FencingToken;
use crate::limits::{
    COORD_ANSWERS_PER_CLIENT_MAX, COORD_EXPIRE_LEASES_PER_OP_MAX, COORD_KEYS_MAX,
    COORD_KEYS_PER_LEASE_MAX, COORD_KEY_BYTES_MAX, COORD_LABEL_BYTES_MAX, COORD_LEASES_MAX,
    COORD_LEASE_TTL_MAX, COORD_LEASE_TTL_MIN, COORD_RANGE_KEYS_MAX, COORD_STORED_BYTES_MAX,
    COORD_TXN_BYTES_MAX, COORD_TXN_OPS_MAX, COORD_VALUE_BYTES_MAX, COORD_WATCHES_PER_SESSION_MAX,
    COORD_WATCH_SESSIONS_MAX,
};

/// A lease. Its id is the revision (log index) that granted it, so ids only grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LeaseId(pub u64);

impl fmt::Display for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "lease {}", self.0)
    }
}

/// A client registered for deduplication of retried requests: the revision that registered it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ClientId(pub u64);

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "client {}", self.0)
    }
}

/// The condition a write puts on the key's current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Expect {
    /// Write whatever the key holds.
    Any,
    /// Write only if the key does not exist (create; how an election is won).
    Absent,
    /// Write only if the key exists and was last modified at exactly this revision
    /// (compare-and-set on [`KeyEntry::mod_revision`]).
    Version(u64),
}

impl Expect {
    /// Whether the expectation holds for a key whose modification revision is `current`
    /// (`None`: the key does not exist).
    pub fn holds(&self, current: Option<u64>) -> bool {
        match self {
            Expect::Any => true,
            Expect::Absent => current.is_none(),
            Expect::Version(v) => current == Some(*v),
        }
    }
}

/// Which keys a watch follows.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeySelector {
    /// Exactly this key.
    Key(String),
    /// Every key starting with this prefix (the empty prefix: every key).
    Prefix(String),
}

impl KeySelector {
    /// Whether `key` is selected.
    pub fn matches(&self, key: &str) -> bool {
        match self {
            KeySelector::Key(k) => k == key,
            KeySelector::Prefix(p) => key.starts_with(p.as_str()),
        }
    }

    fn text(&self) -> &str {
        match self {
            KeySelector::Key(k) | KeySelector::Prefix(k) => k,
        }
    }

    /// Checks the selector's size (and that an exact key is not empty).
    pub fn validate(&self) -> Result<(), CoordError> {
        if let KeySelector::Key(k) = self {
            check_key(k)?;
        }
        check_len(self.text().len(), Limit::KeyBytes)
    }
}

/// One write of a [`CoordOp::Txn`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOp {
    /// Write `value` at `key`, detached from any lease (as [`CoordOp::Put`] with `lease:
    /// None`).
    Put {
        /// The key (UTF-8, 1 to [`COORD_KEY_BYTES_MAX`] bytes).
        key: String,
        /// The value (up to [`COORD_VALUE_BYTES_MAX`] bytes).
        value: Vec<u8>,
    },
    /// Delete `key` (an absent key is no error).
    Delete {
        /// The key.
        key: String,
    },
}

impl TxnOp {
    /// The key written.
    pub fn key(&self) -> &str {
        match self {
            TxnOp::Put { key, .. } | TxnOp::Delete { key } => key,
        }
    }

    /// Key and value bytes, counted against [`COORD_TXN_BYTES_MAX`].
    pub fn bytes(&self) -> usize {
        match self {
            TxnOp::Put { key, value } => key.len() + value.len(),
            TxnOp::Delete { key } => key.len(),
        }
    }
}

/// A command of the coordination store: what the replicated log carries.
///
/// Reads go through the log too: a read applied at revision `r` sees exactly the writes
/// before `r`, which is what makes it linearizable without leader leases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CoordOp {
    /// Write `value` at `key` if `expect` holds; attach the key to `lease` (the key is deleted
    /// when the lease ends) or, with `None`, detach it from any lease.
    Put {
        /// The key (UTF-8, 1 to [`COORD_KEY_BYTES_MAX`] bytes).
        key: String,
        /// The value (up to [`COORD_VALUE_BYTES_MAX`] bytes).
        value: Vec<u8>,
        /// The condition on the key's current state.
        expect: Expect,
        /// The lease the key belongs to afterwards.
        lease: Option<LeaseId>,
    },
    /// Delete `key` if `expect` holds (deleting an absent key with `Any` or `Absent` succeeds
    /// and says it did not exist).
    Delete {
        /// The key.
        key: String,
        /// The condition on the key's current state.
        expect: Expect,
    },
    /// Read one key.
    Get {
        /// The key.
        key: String,
    },
    /// Read the keys starting with `prefix`, in key order, after `after` (paging).
    Range {
        /// The prefix (empty: every key).
        prefix: String,
        /// Start strictly after this key (the last key of the previous page).
        after: Option<String>,
        /// Most keys to return; 0 means [`COORD_RANGE_KEYS_MAX`].
        limit: u32,
    },
    /// Grant a lease of `ttl_ms` to a session. The answer's lease id is the revision of this
    /// operation.
    GrantLease {
        /// Time to live without keep-alive, in milliseconds
        /// ([`COORD_LEASE_TTL_MIN`] to [`COORD_LEASE_TTL_MAX`]).
        ttl_ms: u64,
        /// Who holds it (the session's own name for itself, e.g. its `Upid`): shown to
        /// operators, never interpreted.
        session: String,
    },
    /// End a lease now, deleting its keys.
    RevokeLease {
        /// The lease.
        lease: LeaseId,
    },
    /// End leases whose time ran out on the leader's clock, deleting their keys. Proposed by
    /// the leader only ([`CoordOp::is_leader_only`]); leases already gone are skipped.
    ExpireLeases {
        /// The leases (at most [`COORD_EXPIRE_LEASES_PER_OP_MAX`]).
        leases: Vec<LeaseId>,
    },
    /// Register a client for deduplication of its retried requests; the answer names its
    /// [`ClientId`].
    RegisterClient {
        /// Who the client is (e.g. its `Upid`): shown to operators, never interpreted.
        label: String,
    },
    /// Apply `ops` all or nothing, at one revision, if `guard` holds: its key exists and was
    /// created at exactly its epoch (the holder of an election key, see
    /// [`super::Fencing`]). Refused with [`CoordError::StaleGuard`] otherwise, so that a
    /// deposed framework leader's write can never land once another leader was elected (or
    /// once its own key ended). Each key may appear once; written keys are detached from
    /// any lease. Every key changed gets a watch event at the transaction's revision (in
    /// the order of `ops`; deleting an absent key changes nothing).
    Txn {
        /// The election key and epoch the transaction requires, or `None` (unconditional).
        guard: Option<FencingToken>,
        /// The writes (at most [`COORD_TXN_OPS_MAX`], at most [`COORD_TXN_BYTES_MAX`] key
        /// and value bytes in all; none is a pure guard check).
        ops: Vec<TxnOp>,
    },
}

impl CoordOp {
    /// Checks sizes and ranges that do not depend on the store's state. The host may call it
    /// before proposing (so that garbage never enters the log); [`super::CoordStore::apply`]
    /// calls it again, so a replica never depends on the host having done so.
    pub fn validate(&self) -> Result<(), CoordError> {
        match self {
            CoordOp::Put { key, value, .. } => {
                check_key(key)?;
                check_len(value.len(), Limit::ValueBytes)
            }
            CoordOp::Delete { key, .. } | CoordOp::Get { key } => check_key(key),
            CoordOp::Range {
                prefix,
                after,
                limit,
            } => {
                check_len(prefix.len(), Limit::KeyBytes)?;
                if let Some(after) = after {
                    check_len(after.len(), Limit::KeyBytes)?;
                }
                check_len(*limit as usize, Limit::RangeKeys)
            }
            CoordOp::GrantLease { ttl_ms, session } => {
                let ttl = Duration::from_millis(*ttl_ms);
                if !(COORD_LEASE_TTL_MIN..=COORD_LEASE_TTL_MAX).contains(&ttl) {
                    return Err(CoordError::TtlOutOfRange {
                        ttl_ms: *ttl_ms,
                        min_ms: COORD_LEASE_TTL_MIN.as_millis() as u64,
                        max_ms: COORD_LEASE_TTL_MAX.as_millis() as u64,
                    });
                }
                check_len(session.len(), Limit::LabelBytes)
            }
            CoordOp::RevokeLease { .. } => Ok(()),
            CoordOp::ExpireLeases { leases } => check_len(leases.len(), Limit::ExpireLeasesPerOp),
            CoordOp::RegisterClient { label } => check_len(label.len(), Limit::LabelBytes),
            CoordOp::Txn { guard, ops } => {
                if let Some(guard) = guard {
                    check_key(&guard.key)?;
                }
                check_len(ops.len(), Limit::TxnOps)?;
                let mut bytes = 0;
                let mut keys = std::collections::BTreeSet::new();
                for op in ops {
                    check_key(op.key())?;
                    if let TxnOp::Put { value, .. } = op {
                        check_len(value.len(), Limit::ValueBytes)?;
                    }
                    if !keys.insert(op.key()) {
                        return Err(CoordError::DuplicateKey {
                            key: op.key().to_string(),
                        });
                    }
                    bytes += op.bytes();
                }
                check_len(bytes, Limit::TxnBytes)
            }
        }
    }

    /// Whether the operation only reads (reads are not remembered for retries: applying a
    /// retried read again answers it at a later revision, which is still linearizable).
    pub fn is_read(&self) -> bool {
        matches!(self, CoordOp::Get { .. } | CoordOp::Range { .. })
    }

    /// Whether only the leader may propose it: a client request carrying it is refused with
    /// [`CoordError::LeaderOnly`] before it reaches the log.
    pub fn is_leader_only(&self) -> bool {
        matches!(self, CoordOp::ExpireLeases { .. })
    }

    /// The one key the operation names, if it names one (a transaction names several: see
    /// [`CoordOp::keys`]).
    pub fn key(&self) -> Option<&str> {
        match self {
            CoordOp::Put { key, .. } | CoordOp::Delete { key, .. } | CoordOp::Get { key } => {
                Some(key)
            }
            _ => None,
        }
    }

    /// Every key the operation writes or reads by name: the key of a put, delete or get, and
    /// the written keys and guard key of a transaction (not the keys a range or a lease's end
    /// may cover).
    pub fn keys(&self) -> Vec<&str> {
        match self {
            CoordOp::Txn { guard, ops } => guard
                .iter()
                .map(|g| g.key.as_str())
                .chain(ops.iter().map(TxnOp::key))
                .collect(),
            other => other.key().into_iter().collect(),
        }
    }
}

fn check_key(key: &str) -> Result<(), CoordError> {
    if key.is_empty() {
        return Err(CoordError::EmptyKey);
    }
    check_len(key.len(), Limit::KeyBytes)
}

fn check_len(len: usize, limit: Limit) -> Result<(), CoordError> {
    if len as u64 > limit.max() {
        return Err(limit.exceeded());
    }
    Ok(())
}

/// Who sent a request and which of its requests this is: lets the store answer a retried
/// request with its first answer instead of applying it twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestStamp {
    /// The registered client.
    pub client: ClientId,
    /// The client's number for this request (unique per client; a retry reuses it).
    pub request_id: u64,
    /// The lowest request id the client still waits an answer for: answers below it are
    /// forgotten, and a request below it is never applied (a late copy of a request the
    /// client gave up on cannot take effect after the client moved on).
    pub first_unanswered: u64,
}

/// One entry of the coordination store in the replicated log: an operation, stamped when it
/// comes from a registered client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoordCommand {
    /// The client request it answers, or `None` (the leader's own proposals; clients that
    /// did not register, whose retried writes may apply twice).
    pub stamp: Option<RequestStamp>,
    /// The operation.
    pub op: CoordOp,
}

/// A key's state.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KeyEntry {
    /// The value.
    pub value: Vec<u8>,
    /// The revision of the put that wrote this value (what [`Expect::Version`] compares).
    pub mod_revision: u64,
    /// The revision of the put that created the key (it stays while the key lives): the
    /// fencing epoch of an election key.
    pub create_revision: u64,
    /// The lease the key belongs to.
    pub lease: Option<LeaseId>,
}

impl KeyEntry {
    /// Bytes counted against [`COORD_STORED_BYTES_MAX`] for this entry at `key`.
    pub fn stored_bytes(key: &str, value: &[u8]) -> u64 {
        (key.len() + value.len()) as u64
    }
}

/// What a successful operation answers. Every answer names the revision it was applied at
/// (a lease's id is that revision).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CoordReply {
    /// The put was applied at `revision` (the key's new modification revision).
    Put {
        /// The revision of the put.
        revision: u64,
        /// The key's creation revision (equal to `revision` when the put created it).
        create_revision: u64,
    },
    /// The delete was applied.
    Deleted {
        /// The revision of the delete.
        revision: u64,
        /// Whether the key existed.
        existed: bool,
    },
    /// A key read at `revision`.
    Value {
        /// The revision of the read.
        revision: u64,
        /// The key's state, or `None` when it does not exist.
        entry: Option<KeyEntry>,
    },
    /// Keys read at `revision`.
    Range {
        /// The revision of the read.
        revision: u64,
        /// The keys, in order.
        entries: Vec<(String, KeyEntry)>,
        /// Whether more keys match (read on after the last key returned).
        more: bool,
    },
    /// A lease was granted.
    LeaseGranted {
        /// The lease (its id is the revision of the grant).
        lease: LeaseId,
        /// Its time to live, in milliseconds.
        ttl_ms: u64,
    },
    /// A lease was revoked.
    LeaseRevoked {
        /// The revision of the revocation.
        revision: u64,
        /// How many keys went with it.
        keys_deleted: u32,
    },
    /// Leases were expired.
    LeasesExpired {
        /// The revision of the expiry.
        revision: u64,
        /// The leases that ended (the others named were already gone).
        leases: Vec<LeaseId>,
    },
    /// A client was registered.
    ClientRegistered {
        /// Its id (the revision of the registration).
        client: ClientId,
    },
    /// A transaction was applied, all of it.
    Txn {
        /// The revision of the transaction (every key it put has this modification revision).
        revision: u64,
    },
}

impl CoordReply {
    /// The revision the operation was applied at.
    pub fn revision(&self) -> u64 {
        match self {
            CoordReply::Put { revision, .. }
            | CoordReply::Deleted { revision, .. }
            | CoordReply::Value { revision, .. }
            | CoordReply::Range { revision, .. }
            | CoordReply::LeaseRevoked { revision, .. }
            | CoordReply::LeasesExpired { revision, .. }
            | CoordReply::Txn { revision } => *revision,
            CoordReply::LeaseGranted { lease, .. } => lease.0,
            CoordReply::ClientRegistered { client } => client.0,
        }
    }
}

/// The answer to an operation.
pub type CoordResponse = Result<CoordReply, CoordError>;

/// A bound of the coordination service (each one a constant in [`crate::limits`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Limit {
    /// [`COORD_KEY_BYTES_MAX`].
    KeyBytes,
    /// [`COORD_VALUE_BYTES_MAX`].
    ValueBytes,
    /// [`COORD_KEYS_MAX`].
    Keys,
    /// [`COORD_STORED_BYTES_MAX`].
    StoredBytes,
    /// [`COORD_LEASES_MAX`].
    Leases,
    /// [`COORD_KEYS_PER_LEASE_MAX`].
    KeysPerLease,
    /// [`COORD_LABEL_BYTES_MAX`].
    LabelBytes,
    /// [`COORD_RANGE_KEYS_MAX`].
    RangeKeys,
    /// [`COORD_EXPIRE_LEASES_PER_OP_MAX`].
    ExpireLeasesPerOp,
    /// [`COORD_ANSWERS_PER_CLIENT_MAX`].
    AnswersPerClient,
    /// [`COORD_WATCHES_PER_SESSION_MAX`].
    WatchesPerSession,
    /// [`COORD_WATCH_SESSIONS_MAX`].
    WatchSessions,
    /// [`COORD_TXN_OPS_MAX`].
    TxnOps,
    /// [`COORD_TXN_BYTES_MAX`].
    TxnBytes,
}

impl Limit {
    /// The maximum.
    pub fn max(self) -> u64 {
        match self {
            Limit::KeyBytes => COORD_KEY_BYTES_MAX as u64,
            Limit::ValueBytes => COORD_VALUE_BYTES_MAX as u64,
            Limit::Keys => COORD_KEYS_MAX as u64,
            Limit::StoredBytes => COORD_STORED_BYTES_MAX,
            Limit::Leases => COORD_LEASES_MAX as u64,
            Limit::KeysPerLease => COORD_KEYS_PER_LEASE_MAX as u64,
            Limit::LabelBytes => COORD_LABEL_BYTES_MAX as u64,
            Limit::RangeKeys => COORD_RANGE_KEYS_MAX as u64,
            Limit::ExpireLeasesPerOp => COORD_EXPIRE_LEASES_PER_OP_MAX as u64,
            Limit::AnswersPerClient => COORD_ANSWERS_PER_CLIENT_MAX as u64,
            Limit::WatchesPerSession => COORD_WATCHES_PER_SESSION_MAX as u64,
            Limit::WatchSessions => COORD_WATCH_SESSIONS_MAX as u64,
            Limit::TxnOps => COORD_TXN_OPS_MAX as u64,
            Limit::TxnBytes => COORD_TXN_BYTES_MAX as u64,
        }
    }

    /// What is counted, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Limit::KeyBytes => "key bytes",
            Limit::ValueBytes => "value bytes",
            Limit::Keys => "keys in the store",
            Limit::StoredBytes => "bytes stored",
            Limit::Leases => "leases",
            Limit::KeysPerLease => "keys on one lease",
            Limit::LabelBytes => "label bytes",
            Limit::RangeKeys => "keys in one range read",
            Limit::ExpireLeasesPerOp => "leases in one expire operation",
            Limit::AnswersPerClient => "unacknowledged answers of one client",
            Limit::WatchesPerSession => "watches of one session",
            Limit::WatchSessions => "sessions with watches",
            Limit::TxnOps => "writes in one transaction",
            Limit::TxnBytes => "key and value bytes in one transaction",
        }
    }

    /// The error saying this limit was exceeded.
    pub fn exceeded(self) -> CoordError {
        CoordError::LimitExceeded {
            limit: self,
            max: self.max(),
        }
    }
}

/// Why an operation was refused. Each is an answer, not a failure of the store: nothing was
/// changed.
///
/// A wire value (it travels in answers and is cached for retries), so it has its own
/// `Display` rather than being a variant of [`crate::MasterError`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CoordError {
    /// The write's [`Expect`] did not hold; `current` is the key's modification revision
    /// (`None`: absent).
    ExpectationFailed {
        /// The key's current modification revision.
        current: Option<u64>,
    },
    /// The lease does not exist (never granted, revoked or expired).
    UnknownLease {
        /// The lease.
        lease: LeaseId,
    },
    /// A bound would be exceeded.
    LimitExceeded {
        /// Which.
        limit: Limit,
        /// Its maximum.
        max: u64,
    },
    /// A key must not be empty.
    EmptyKey,
    /// A lease time to live outside the accepted range.
    TtlOutOfRange {
        /// As asked, in milliseconds.
        ttl_ms: u64,
        /// Shortest accepted.
        min_ms: u64,
        /// Longest accepted.
        max_ms: u64,
    },
    /// The client is not registered (never, or forgotten after
    /// [`crate::limits::COORD_CLIENTS_MAX`] newer ones): register again. The request was not
    /// applied.
    UnknownClient {
        /// The client.
        client: ClientId,
    },
    /// A request below the client's `first_unanswered`: the client no longer waits for it,
    /// so it was not applied.
    StaleRequest {
        /// The request.
        request_id: u64,
        /// The lowest request id the client still waits for.
        first_unanswered: u64,
    },
    /// Only the leader proposes this operation.
    LeaderOnly,
    /// The lease's time ran out on the leader and its expiry is under way: its holder must
    /// stop acting on it.
    LeaseExpiring {
        /// The lease.
        lease: LeaseId,
    },
    /// A watch cannot start at this revision: the events before `oldest_revision` are no
    /// longer kept. Read the keys again and watch from the read's revision + 1.
    Compacted {
        /// The oldest revision a watch can start at.
        oldest_revision: u64,
    },
    /// A transaction's guard does not hold: its key is not held at that epoch (another
    /// holder was elected, or the key ended with its lease). Nothing was written; the writer
    /// no longer leads and must stop acting.
    StaleGuard {
        /// The guard's key.
        key: String,
        /// The epoch the transaction required.
        epoch: u64,
        /// The key's creation revision now (`None`: nobody holds it).
        current: Option<u64>,
    },
    /// A transaction names this key twice.
    DuplicateKey {
        /// The key.
        key: String,
    },
}

impl fmt::Display for CoordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoordError::ExpectationFailed { current: None } => {
                write!(f, "expectation failed: the key does not exist")
            }
            CoordError::ExpectationFailed { current: Some(r) } => {
                write!(
                    f,
                    "expectation failed: the key was last modified at revision {r}"
                )
            }
            CoordError::UnknownLease { lease } => write!(f, "unknown {lease}"),
            CoordError::LimitExceeded { limit, max } => {
                write!(f, "too many {} (maximum {max})", limit.name())
            }
            CoordError::EmptyKey => write!(f, "empty key"),
            CoordError::TtlOutOfRange {
                ttl_ms,
                min_ms,
                max_ms,
            } => write!(f, "lease ttl {ttl_ms} ms is outside {min_ms}..={max_ms} ms"),
            CoordError::UnknownClient { client } => {
                write!(f, "unknown {client}: register again (request not applied)")
            }
            CoordError::StaleRequest {
                request_id,
                first_unanswered,
            } => write!(
                f,
                "request {request_id} is below the first unanswered request {first_unanswered} \
                 (not applied)"
            ),
            CoordError::LeaderOnly => write!(f, "only the leader proposes this operation"),
            CoordError::LeaseExpiring { lease } => write!(f, "{lease} has expired"),
            CoordError::Compacted { oldest_revision } => write!(
                f,
                "events before revision {oldest_revision} are no longer kept: read again"
            ),
            CoordError::StaleGuard {
                key,
                epoch,
                current: Some(current),
            } => write!(
                f,
                "stale guard: '{key}' is held at epoch {current}, not {epoch} (nothing written)"
            ),
            CoordError::StaleGuard {
                key,
                epoch,
                current: None,
            } => write!(
                f,
                "stale guard: nobody holds '{key}' (epoch {epoch} required; nothing written)"
            ),
            CoordError::DuplicateKey { key } => {
                write!(f, "key '{key}' appears twice in one transaction")
            }
        }
    }
}

impl std::error::Error for CoordError {}

/// What happened to a key, as told to watches.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Change {
    /// The key was written.
    Put {
        /// The new value.
        value: Vec<u8>,
        /// The key's creation revision.
        create_revision: u64,
        /// The lease it belongs to.
        lease: Option<LeaseId>,
    },
    /// The key was deleted (by a delete, or with its lease).
    Delete,
}

/// A change of one key at one revision.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WatchEvent {
    /// The revision of the change (several keys change at one revision when a lease ends).
    pub revision: u64,
    /// The key.
    pub key: String,
    /// What happened.
    pub change: Change,
}

impl WatchEvent {
    /// Key and value bytes, for the bounds on queued and kept events.
    pub fn bytes(&self) -> usize {
        self.key.len()
            + match &self.change {
                Change::Put { value, .. } => value.len(),
                Change::Delete => 0,
            }
    }
}

/// A change in the set of leases, for the leader's [`super::LeaseClock`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaseChange {
    /// A lease was granted.
    Granted {
        /// The lease.
        lease: LeaseId,
        /// Its time to live, in milliseconds.
        ttl_ms: u64,
    },
    /// A lease is gone (revoked, expired, or named by an expiry but already gone).
    Ended {
        /// The lease.
        lease: LeaseId,
    },
}
