//! [`CoordStore`], the deterministic state machine of the coordination store, and
//! [`Fencing`], the check the master makes with it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::Bound;

use serde::{Deserialize, Serialize};

use super::messages::FencingToken;
use super::ops::{
    Change, ClientId, CoordCommand, CoordError, CoordOp, CoordReply, CoordResponse, Expect,
    KeyEntry, LeaseChange, LeaseId, Limit, TxnOp, WatchEvent,
};
use crate::limits::{
    COORD_ANSWERS_PER_CLIENT_MAX, COORD_CLIENTS_MAX, COORD_EVENTS_QUEUED_MAX,
    COORD_EVENT_BYTES_QUEUED_MAX, COORD_KEYS_MAX, COORD_KEYS_PER_LEASE_MAX, COORD_LEASES_MAX,
    COORD_RANGE_BYTES_MAX, COORD_RANGE_KEYS_MAX, COORD_STORED_BYTES_MAX,
};
use crate::MasterError;

/// Most lease changes queued between two drains; beyond it the queue is emptied and the
/// drain says so (the leader's clock then resynchronizes from the store). Each apply adds at
/// most [`crate::limits::COORD_EXPIRE_LEASES_PER_OP_MAX`].
const LEASE_CHANGES_QUEUED_MAX: usize = 2 * COORD_LEASES_MAX;

/// A live lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Time to live without keep-alive, in milliseconds.
    pub ttl_ms: u64,
    /// The label of the session holding it.
    pub session: String,
    /// The keys attached to it (deleted when it ends).
    pub keys: BTreeSet<String>,
}

/// What the store remembers of a registered client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ClientRecord {
    /// Its label.
    label: String,
    /// The last revision that carried one of its requests (the least recently used client
    /// is forgotten first; revisions are unique, so the choice is deterministic).
    last_used: u64,
    /// Highest `first_unanswered` seen: requests below it are never applied.
    floor: u64,
    /// The answers to its writes at or above `floor`, by request id.
    answers: BTreeMap<u64, CoordResponse>,
}

/// Watch events applied since the last drain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DrainedEvents {
    /// The events, in revision order.
    pub events: Vec<WatchEvent>,
    /// When the queue overflowed: every event at or before this revision may be missing
    /// (events of one revision are dropped together; `events` are all after it).
    pub lost_through: Option<u64>,
}

/// Lease changes applied since the last drain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseChanges {
    /// The changes, in order.
    pub changes: Vec<LeaseChange>,
    /// Whether changes were dropped (the queue overflowed): resynchronize from
    /// [`CoordStore::lease_ttls`] instead.
    pub lost: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct EventQueue {
    events: VecDeque<WatchEvent>,
    bytes: usize,
    lost_through: Option<u64>,
}

impl EventQueue {
    fn push(&mut self, event: WatchEvent) {
        self.bytes += event.bytes();
        self.events.push_back(event);
        while self.events.len() > COORD_EVENTS_QUEUED_MAX
            || self.bytes > COORD_EVENT_BYTES_QUEUED_MAX
        {
            // Drop the whole oldest revision, so that what is kept is complete per revision.
            let oldest = self.events.front().map(|e| e.revision).expect("not empty");
            while self.events.front().is_some_and(|e| e.revision == oldest) {
                let dropped = self.events.pop_front().expect("front exists");
                self.bytes -= dropped.bytes();
            }
            self.lost_through = Some(oldest);
        }
    }
}

/// The coordination store: keys with versions and leases, leases, and the table of answers
/// to registered clients' requests. Deterministic: the same commands at the same revisions
/// give the same store, answers and events on every replica.
///
/// ```
/// use plateau_master::coord::{CoordOp, CoordReply, CoordStore, Expect};
///
/// let mut store = CoordStore::new();
/// let put = |expect| CoordOp::Put {
///     key: "/marathon/leader".into(),
///     value: b"marathon-1".to_vec(),
///     expect,
///     lease: None,
/// };
/// // Log index 5 creates the key; creating it again fails and says who is there.
/// assert!(matches!(store.apply(5, &put(Expect::Absent)), Ok(CoordReply::Put { revision: 5, .. })));
/// let again = store.apply(6, &put(Expect::Absent));
/// assert_eq!(again.unwrap_err().to_string(), "expectation failed: the key was last modified at revision 5");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoordStore {
    /// The last revision applied.
    revision: u64,
    keys: BTreeMap<String, KeyEntry>,
    leases: BTreeMap<LeaseId, Lease>,
    clients: BTreeMap<ClientId, ClientRecord>,
    /// Sum of key and value bytes.
    stored_bytes: u64,
    /// Not part of a snapshot: the host drains it after each apply.
    #[serde(skip)]
    events: EventQueue,
    #[serde(skip)]
    lease_changes: Vec<LeaseChange>,
    #[serde(skip)]
    lease_changes_lost: bool,
}

impl CoordStore {
    /// An empty store at revision 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// The last revision applied (0 before any).
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Applies `op` at `revision` (its log index; strictly above the last one applied, gaps
    /// allowed: other entries of the log do not touch this store), without deduplication.
    ///
    /// # Panics
    /// If `revision` is not above [`CoordStore::revision`] (a programmer error: the log
    /// applies each index once, in order).
    pub fn apply(&mut self, revision: u64, op: &CoordOp) -> CoordResponse {
        self.advance(revision);
        self.execute(revision, op)
    }

    /// Applies a log entry at `revision`: a stamped write already applied answers with its
    /// first answer, a request below the client's acknowledged floor or from an unknown
    /// client is refused without effect. The revision is consumed in every case.
    ///
    /// # Panics
    /// As [`CoordStore::apply`].
    pub fn apply_command(&mut self, revision: u64, command: &CoordCommand) -> CoordResponse {
        self.advance(revision);
        let Some(stamp) = command.stamp else {
            return self.execute(revision, &command.op);
        };
        if command.op.is_leader_only() {
            // The host refuses these before the log; a replica does not depend on it.
            return Err(CoordError::LeaderOnly);
        }
        let Some(record) = self.clients.get_mut(&stamp.client) else {
            return Err(CoordError::UnknownClient {
                client: stamp.client,
            });
        };
        record.last_used = revision;
        if stamp.first_unanswered > record.floor {
            record.floor = stamp.first_unanswered;
            record.answers = record.answers.split_off(&record.floor);
        }
        if command.op.is_read() {
            return self.execute(revision, &command.op);
        }
        if stamp.request_id < record.floor {
            return Err(CoordError::StaleRequest {
                request_id: stamp.request_id,
                first_unanswered: record.floor,
            });
        }
        if let Some(answer) = record.answers.get(&stamp.request_id) {
            return answer.clone();
        }
        if record.answers.len() >= COORD_ANSWERS_PER_CLIENT_MAX {
            return Err(Limit::AnswersPerClient.exceeded());
        }
        let response = self.execute(revision, &command.op);
        // The client is still there: registering another client (the only way to forget one)
        // forgets the least recently used, and this one was used at this very revision.
        if let Some(record) = self.clients.get_mut(&stamp.client) {
            record.answers.insert(stamp.request_id, response.clone());
        }
        response
    }

    fn advance(&mut self, revision: u64) {
        assert!(
            revision > self.revision,
            "coordination store revisions strictly increase: {revision} after {}",
            self.revision
        );
        self.revision = revision;
    }

    fn execute(&mut self, revision: u64, op: &CoordOp) -> CoordResponse {
        op.validate()?;
        match op {
            CoordOp::Put {
                key,
                value,
                expect,
                lease,
            } => self.put(revision, key, value, *expect, *lease),
            CoordOp::Delete { key, expect } => self.delete(revision, key, *expect),
            CoordOp::Get { key } => Ok(CoordReply::Value {
                revision,
                entry: self.keys.get(key).cloned(),
            }),
            CoordOp::Range {
                prefix,
                after,
                limit,
            } => Ok(self.range(revision, prefix, after.as_deref(), *limit)),
            CoordOp::GrantLease { ttl_ms, session } => {
                if self.leases.len() >= COORD_LEASES_MAX {
                    return Err(Limit::Leases.exceeded());
                }
                let lease = LeaseId(revision);
                self.leases.insert(
                    lease,
                    Lease {
                        ttl_ms: *ttl_ms,
                        session: session.clone(),
                        keys: BTreeSet::new(),
                    },
                );
                self.push_lease_change(LeaseChange::Granted {
                    lease,
                    ttl_ms: *ttl_ms,
                });
                Ok(CoordReply::LeaseGranted {
                    lease,
                    ttl_ms: *ttl_ms,
                })
            }
            CoordOp::RevokeLease { lease } => match self.end_lease(revision, *lease) {
                Some(keys_deleted) => Ok(CoordReply::LeaseRevoked {
                    revision,
                    keys_deleted,
                }),
                None => Err(CoordError::UnknownLease { lease: *lease }),
            },
            CoordOp::ExpireLeases { leases } => {
                let mut expired = Vec::new();
                for lease in leases {
                    if self.end_lease(revision, *lease).is_some() {
                        expired.push(*lease);
                    } else {
                        // Tell the clock anyway: it must stop proposing a lease that is gone.
                        self.push_lease_change(LeaseChange::Ended { lease: *lease });
                    }
                }
                Ok(CoordReply::LeasesExpired {
                    revision,
                    leases: expired,
                })
            }
            CoordOp::RegisterClient { label } => {
                if self.clients.len() >= COORD_CLIENTS_MAX {
                    let oldest = self
                        .clients
                        .iter()
                        .min_by_key(|(_, record)| record.last_used)
                        .map(|(id, _)| *id)
                        .expect("the table is full, so not empty");
                    self.clients.remove(&oldest);
                }
                let client = ClientId(revision);
                self.clients.insert(
                    client,
                    ClientRecord {
                        label: label.clone(),
                        last_used: revision,
                        floor: 0,
                        answers: BTreeMap::new(),
                    },
                );
                Ok(CoordReply::ClientRegistered { client })
            }
            CoordOp::Txn { guard, ops } => self.txn(revision, guard.as_ref(), ops),
        }
    }

    fn put(
        &mut self,
        revision: u64,
        key: &str,
        value: &[u8],
        expect: Expect,
        lease: Option<LeaseId>,
    ) -> CoordResponse {
        let current = self.keys.get(key);
        let current_revision = current.map(|e| e.mod_revision);
        if !expect.holds(current_revision) {
            return Err(CoordError::ExpectationFailed {
                current: current_revision,
            });
        }
        if let Some(lease) = lease {
            let Some(record) = self.leases.get(&lease) else {
                return Err(CoordError::UnknownLease { lease });
            };
            if !record.keys.contains(key) && record.keys.len() >= COORD_KEYS_PER_LEASE_MAX {
                return Err(Limit::KeysPerLease.exceeded());
            }
        }
        if current.is_none() && self.keys.len() >= COORD_KEYS_MAX {
            return Err(Limit::Keys.exceeded());
        }
        let old_bytes = current.map_or(0, |e| KeyEntry::stored_bytes(key, &e.value));
        let new_bytes = KeyEntry::stored_bytes(key, value);
        let stored = self.stored_bytes - old_bytes + new_bytes;
        if stored > COORD_STORED_BYTES_MAX {
            return Err(Limit::StoredBytes.exceeded());
        }
        let create_revision = self.write_key(revision, key, value, lease);
        Ok(CoordReply::Put {
            revision,
            create_revision,
        })
    }

    /// Writes `key` (bounds and expectation already checked), moving it to `lease`, queueing
    /// its put event; answers its creation revision.
    fn write_key(&mut self, revision: u64, key: &str, value: &[u8], lease: Option<LeaseId>) -> u64 {
        let current = self.keys.get(key);
        let old_bytes = current.map_or(0, |e| KeyEntry::stored_bytes(key, &e.value));
        let old_lease = current.and_then(|e| e.lease);
        let create_revision = current.map_or(revision, |e| e.create_revision);
        if old_lease != lease {
            if let Some(old) = old_lease {
                self.lease_mut(old).keys.remove(key);
            }
            if let Some(new) = lease {
                self.lease_mut(new).keys.insert(key.to_string());
            }
        }
        self.stored_bytes = self.stored_bytes - old_bytes + KeyEntry::stored_bytes(key, value);
        self.keys.insert(
            key.to_string(),
            KeyEntry {
                value: value.to_vec(),
                mod_revision: revision,
                create_revision,
                lease,
            },
        );
        self.events.push(WatchEvent {
            revision,
            key: key.to_string(),
            change: Change::Put {
                value: value.to_vec(),
                create_revision,
                lease,
            },
        });
        create_revision
    }

    /// A guarded transaction: the guard and every bound are checked against the state the
    /// whole transaction leaves before anything changes, so that it applies all or nothing.
    fn txn(&mut self, revision: u64, guard: Option<&FencingToken>, ops: &[TxnOp]) -> CoordResponse {
        if let Some(guard) = guard {
            let current = self.keys.get(&guard.key).map(|e| e.create_revision);
            if current != Some(guard.epoch) {
                return Err(CoordError::StaleGuard {
                    key: guard.key.clone(),
                    epoch: guard.epoch,
                    current,
                });
            }
        }
        // Keys are distinct (validated), so each op's "before" is the store's.
        let mut keys = self.keys.len();
        let mut stored = self.stored_bytes;
        for op in ops {
            let current = self.keys.get(op.key());
            if let Some(entry) = current {
                stored -= KeyEntry::stored_bytes(op.key(), &entry.value);
                keys -= 1;
            }
            if let TxnOp::Put { key, value } = op {
                stored += KeyEntry::stored_bytes(key, value);
                keys += 1;
            }
        }
        if keys > COORD_KEYS_MAX {
            return Err(Limit::Keys.exceeded());
        }
        if stored > COORD_STORED_BYTES_MAX {
            return Err(Limit::StoredBytes.exceeded());
        }
        for op in ops {
            match op {
                TxnOp::Put { key, value } => {
                    self.write_key(revision, key, value, None);
                }
                TxnOp::Delete { key } => {
                    self.remove_key(revision, key);
                }
            }
        }
        debug_assert_eq!(self.stored_bytes, stored);
        debug_assert_eq!(self.keys.len(), keys);
        Ok(CoordReply::Txn { revision })
    }

    fn delete(&mut self, revision: u64, key: &str, expect: Expect) -> CoordResponse {
        let current_revision = self.keys.get(key).map(|e| e.mod_revision);
        if !expect.holds(current_revision) {
            return Err(CoordError::ExpectationFailed {
                current: current_revision,
            });
        }
        let existed = self.remove_key(revision, key);
        Ok(CoordReply::Deleted { revision, existed })
    }

    /// Removes `key` (detaching it from its lease), queueing its delete event.
    fn remove_key(&mut self, revision: u64, key: &str) -> bool {
        let Some(entry) = self.keys.remove(key) else {
            return false;
        };
        self.stored_bytes -= KeyEntry::stored_bytes(key, &entry.value);
        if let Some(lease) = entry.lease {
            self.lease_mut(lease).keys.remove(key);
        }
        self.events.push(WatchEvent {
            revision,
            key: key.to_string(),
            change: Change::Delete,
        });
        true
    }

    /// Ends `lease` and deletes its keys; `None` if it does not exist.
    fn end_lease(&mut self, revision: u64, lease: LeaseId) -> Option<u32> {
        let record = self.leases.remove(&lease)?;
        for key in &record.keys {
            let entry = self.keys.remove(key.as_str());
            let entry = entry.expect("a lease's keys exist");
            debug_assert_eq!(entry.lease, Some(lease));
            self.stored_bytes -= KeyEntry::stored_bytes(key, &entry.value);
            self.events.push(WatchEvent {
                revision,
                key: key.clone(),
                change: Change::Delete,
            });
        }
        self.push_lease_change(LeaseChange::Ended { lease });
        Some(record.keys.len() as u32)
    }

    fn lease_mut(&mut self, lease: LeaseId) -> &mut Lease {
        self.leases
            .get_mut(&lease)
            .expect("a key's lease exists (checked before writing)")
    }

    fn push_lease_change(&mut self, change: LeaseChange) {
        if self.lease_changes.len() >= LEASE_CHANGES_QUEUED_MAX {
            self.lease_changes.clear();
            self.lease_changes_lost = true;
        }
        self.lease_changes.push(change);
    }

    fn range(&self, revision: u64, prefix: &str, after: Option<&str>, limit: u32) -> CoordReply {
        let limit = if limit == 0 {
            COORD_RANGE_KEYS_MAX
        } else {
            limit as usize
        };
        let start = match after {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        let mut entries = Vec::new();
        let mut bytes = 0;
        let mut more = false;
        for (key, entry) in self.keys.range::<str, _>((start, Bound::Unbounded)) {
            if !key.starts_with(prefix) {
                break;
            }
            let size = key.len() + entry.value.len();
            if entries.len() >= limit
                || (!entries.is_empty() && bytes + size > COORD_RANGE_BYTES_MAX)
            {
                more = true;
                break;
            }
            bytes += size;
            entries.push((key.clone(), entry.clone()));
        }
        CoordReply::Range {
            revision,
            entries,
            more,
        }
    }

    /// Takes the watch events queued by the applies since the last drain. Every replica's
    /// host drains after applying (followers feed them to their watch history, so that a new
    /// leader can replay recent events).
    pub fn drain_events(&mut self) -> DrainedEvents {
        let queue = std::mem::take(&mut self.events);
        DrainedEvents {
            events: queue.events.into(),
            lost_through: queue.lost_through,
        }
    }

    /// Takes the lease changes queued since the last drain (for the leader's
    /// [`super::LeaseClock`]; followers drain and drop them).
    pub fn drain_lease_changes(&mut self) -> LeaseChanges {
        LeaseChanges {
            changes: std::mem::take(&mut self.lease_changes),
            lost: std::mem::take(&mut self.lease_changes_lost),
        }
    }

    /// A key's state.
    pub fn get(&self, key: &str) -> Option<&KeyEntry> {
        self.keys.get(key)
    }

    /// The keys starting with `prefix`, in order.
    pub fn prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a KeyEntry)> {
        self.keys
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(k, e)| (k.as_str(), e))
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the store has no keys.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Key and value bytes stored.
    pub fn stored_bytes(&self) -> u64 {
        self.stored_bytes
    }

    /// A live lease.
    pub fn lease(&self, lease: LeaseId) -> Option<&Lease> {
        self.leases.get(&lease)
    }

    /// The live leases, in id order.
    pub fn leases(&self) -> impl Iterator<Item = (LeaseId, &Lease)> {
        self.leases.iter().map(|(id, lease)| (*id, lease))
    }

    /// The live leases and their time to live, for [`super::LeaseClock::on_become_leader`].
    pub fn lease_ttls(&self) -> impl Iterator<Item = (LeaseId, std::time::Duration)> + '_ {
        self.leases
            .iter()
            .map(|(id, lease)| (*id, std::time::Duration::from_millis(lease.ttl_ms)))
    }

    /// Whether `client` is registered.
    pub fn is_client_registered(&self, client: ClientId) -> bool {
        self.clients.contains_key(&client)
    }

    /// Number of registered clients.
    pub fn clients_len(&self) -> usize {
        self.clients.len()
    }

    /// The fencing check over this store.
    pub fn fencing(&self) -> Fencing<'_> {
        Fencing { store: self }
    }

    /// The store as a raft snapshot (postcard). Queued events and lease changes are not part
    /// of it.
    pub fn to_snapshot(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("maps of strings and integers always encode")
    }

    /// A store from a raft snapshot, checked: a snapshot that does not decode or breaks an
    /// invariant is refused, never half-installed.
    pub fn from_snapshot(bytes: &[u8]) -> Result<Self, MasterError> {
        let store: CoordStore =
            postcard::from_bytes(bytes).map_err(|e| MasterError::CoordSnapshot {
                message: e.to_string(),
            })?;
        store
            .check_invariants()
            .map_err(|message| MasterError::CoordSnapshot { message })?;
        Ok(store)
    }

    /// Checks every invariant of the store: each key's lease exists and lists it, each
    /// lease's keys exist and name it, revisions are consistent, counts and bytes are within
    /// their limits. `Err` says the first one broken.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut bytes = 0;
        for (key, entry) in &self.keys {
            if key.is_empty() || key.len() > Limit::KeyBytes.max() as usize {
                return Err(format!("key '{key}' has a bad length"));
            }
            if entry.create_revision > entry.mod_revision || entry.mod_revision > self.revision {
                return Err(format!(
                    "key '{key}': created at {}, modified at {}, store at {}",
                    entry.create_revision, entry.mod_revision, self.revision
                ));
            }
            if let Some(lease) = entry.lease {
                if !self
                    .leases
                    .get(&lease)
                    .is_some_and(|l| l.keys.contains(key))
                {
                    return Err(format!("key '{key}' names {lease}, which does not list it"));
                }
            }
            bytes += KeyEntry::stored_bytes(key, &entry.value);
        }
        if bytes != self.stored_bytes {
            return Err(format!(
                "{bytes} bytes stored, {} counted",
                self.stored_bytes
            ));
        }
        for (id, lease) in &self.leases {
            if id.0 > self.revision {
                return Err(format!(
                    "{id} is after the store's revision {}",
                    self.revision
                ));
            }
            if lease.keys.len() > COORD_KEYS_PER_LEASE_MAX {
                return Err(format!("{id} has {} keys", lease.keys.len()));
            }
            for key in &lease.keys {
                if self.keys.get(key).and_then(|e| e.lease) != Some(*id) {
                    return Err(format!("{id} lists key '{key}', which is not on it"));
                }
            }
        }
        for (id, client) in &self.clients {
            if id.0 > client.last_used || client.last_used > self.revision {
                return Err(format!("{id} last used at {}", client.last_used));
            }
            if client.answers.len() > COORD_ANSWERS_PER_CLIENT_MAX
                || client
                    .answers
                    .keys()
                    .next()
                    .is_some_and(|r| *r < client.floor)
            {
                return Err(format!("{id} keeps answers it must not"));
            }
        }
        if self.keys.len() > COORD_KEYS_MAX
            || self.leases.len() > COORD_LEASES_MAX
            || self.clients.len() > COORD_CLIENTS_MAX
            || self.stored_bytes > COORD_STORED_BYTES_MAX
        {
            return Err("a count is above its limit".to_string());
        }
        Ok(())
    }
}

/// Who holds an election key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holder<'a> {
    /// The holder's epoch: the key's creation revision.
    pub epoch: u64,
    /// The lease the key lives on.
    pub lease: Option<LeaseId>,
    /// The key's value (by convention, the holder's address).
    pub value: &'a [u8],
}

/// A call stamped with an epoch that is not the current holder's of its election key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleEpoch {
    /// The election key.
    pub key: String,
    /// The epoch the call carried.
    pub given: u64,
    /// The current holder's epoch, if the key is held.
    pub current: Option<u64>,
    /// The store's revision when checked.
    pub applied_revision: u64,
}

impl StaleEpoch {
    /// Whether the epoch is after everything this master has applied: the caller may be
    /// legitimate and this master behind (a new leader still applying its log). Refuse the
    /// call all the same; the caller retries.
    pub fn is_ahead(&self) -> bool {
        self.given > self.applied_revision
    }
}

impl std::fmt::Display for StaleEpoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.current {
            _ if self.is_ahead() => write!(
                f,
                "epoch {} of '{}' is after revision {} applied here: retry",
                self.given, self.key, self.applied_revision
            ),
            Some(current) => write!(
                f,
                "stale epoch {} for '{}': the current holder's epoch is {current}",
                self.given, self.key
            ),
            None => write!(
                f,
                "stale epoch {} for '{}': nobody holds it",
                self.given, self.key
            ),
        }
    }
}

impl std::error::Error for StaleEpoch {}

/// Fencing: whether a call stamped with an election epoch comes from the current holder.
///
/// The recipe (ZooKeeper's and etcd's election, with a fencing token):
/// 1. a candidate grants itself a lease and keeps it alive;
/// 2. it campaigns by putting the election key with [`Expect::Absent`] on that lease (the
///    value is its address). If the put succeeds, it leads, and its epoch is the put's
///    revision (the key's `create_revision`); if it fails, it watches the key and campaigns
///    again when the key is deleted;
/// 3. it stamps every call to the master (launch, kill, accept) with `(key, epoch)`;
/// 4. the master calls [`Fencing::check`]: only the holder of the key *now*, with exactly that
///    epoch, may act. When the lease ends (revoked, or expired on the leader's clock), its key
///    goes with it, and the next winner's epoch is a later revision, so a paused ex-leader
///    that wakes up is refused whatever it believes about time.
#[derive(Debug, Clone, Copy)]
pub struct Fencing<'a> {
    store: &'a CoordStore,
}

impl<'a> Fencing<'a> {
    /// The current holder of `key`.
    pub fn holder(&self, key: &str) -> Option<Holder<'a>> {
        self.store.keys.get(key).map(|entry| Holder {
            epoch: entry.create_revision,
            lease: entry.lease,
            value: &entry.value,
        })
    }

    /// `Ok` if `key` is held with exactly `epoch`; otherwise the call must be refused.
    pub fn check(&self, key: &str, epoch: u64) -> Result<(), StaleEpoch> {
        let current = self.holder(key).map(|h| h.epoch);
        if current == Some(epoch) {
            return Ok(());
        }
        Err(StaleEpoch {
            key: key.to_string(),
            given: epoch,
            current,
            applied_revision: self.store.revision,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_breaking_an_invariant_is_refused() {
        let mut store = CoordStore::new();
        store
            .apply(
                1,
                &CoordOp::GrantLease {
                    ttl_ms: 5_000,
                    session: "s".into(),
                },
            )
            .unwrap();
        store
            .apply(
                2,
                &CoordOp::Put {
                    key: "k".into(),
                    value: b"v".to_vec(),
                    expect: Expect::Any,
                    lease: Some(LeaseId(1)),
                },
            )
            .unwrap();
        let mut broken = store.clone();
        broken.leases.get_mut(&LeaseId(1)).unwrap().keys.clear();
        let err = CoordStore::from_snapshot(&broken.to_snapshot()).unwrap_err();
        assert!(err.to_string().contains("does not list it"), "{err}");
        let mut broken = store.clone();
        broken.stored_bytes += 1;
        assert!(CoordStore::from_snapshot(&broken.to_snapshot()).is_err());
        let mut broken = store;
        broken.revision = 1;
        assert!(CoordStore::from_snapshot(&broken.to_snapshot()).is_err());
    }
}
