//! A replica's durable half: the raft log, the vote and the latest snapshot on a [`LogDisk`],
//! and the application's [`ReplicatedState`] fed by the committed entries.
//!
//! The log is kept in memory as well (bounded by snapshots and log compaction) and written
//! through to the disk before openraft is told an append is done: an entry a replica
//! acknowledged to its leader survives a `kill -9`. The state machine is in memory only: on
//! restart it is rebuilt from the latest snapshot and the committed log after it (openraft
//! re-applies those entries).
//!
//! Two disks: [`RedbDisk`] (a redb file; every write a durable transaction) and
//! [`MemoryDisk`] (shared between clones, so a simulated crash keeps it).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::Cursor;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{
    Entry, EntryPayload, LogId, LogState, OptionalSend, RaftLogReader, RaftSnapshotBuilder,
    Snapshot, SnapshotMeta, StorageError, StorageIOError, StoredMembership, Vote,
};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{de::DeserializeOwned, Serialize};

use crate::error::ReplicaError;
use crate::{ReplicaNode, ReplicatedState, TypeConfig};

type NodeId = u64;

/// One change to a [`LogDisk`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskOp {
    /// Store a log entry at its index.
    PutEntry(u64, Vec<u8>),
    /// Remove the entries at this index and after (a conflicting suffix).
    RemoveFrom(u64),
    /// Remove the entries up to this index, inclusive (compaction).
    RemoveUpTo(u64),
    /// Store a named value (vote, committed, purged, snapshot).
    PutMeta(&'static str, Vec<u8>),
}

/// What a [`LogDisk`] holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskImage {
    /// Encoded log entries by index.
    pub entries: BTreeMap<u64, Vec<u8>>,
    /// Named values.
    pub meta: BTreeMap<String, Vec<u8>>,
}

impl DiskImage {
    fn apply(&mut self, op: &DiskOp) {
        match op {
            DiskOp::PutEntry(i, bytes) => {
                self.entries.insert(*i, bytes.clone());
            }
            DiskOp::RemoveFrom(i) => {
                self.entries.split_off(i);
            }
            DiskOp::RemoveUpTo(i) => {
                let keep = self.entries.split_off(&(i + 1));
                self.entries = keep;
            }
            DiskOp::PutMeta(name, bytes) => {
                self.meta.insert((*name).to_string(), bytes.clone());
            }
        }
    }
}

/// Where a replica keeps its log, vote and snapshot.
pub trait LogDisk: Send + 'static {
    /// Everything stored.
    fn load(&mut self) -> Result<DiskImage, ReplicaError>;
    /// Applies `ops` atomically; durable before it returns when `durable`.
    fn write(&mut self, ops: &[DiskOp], durable: bool) -> Result<(), ReplicaError>;
}

/// A disk in memory, shared between clones: a simulated crash drops the replica, not this.
#[derive(Debug, Clone, Default)]
pub struct MemoryDisk {
    image: Arc<Mutex<DiskImage>>,
}

impl MemoryDisk {
    /// An empty disk.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of log entries stored (for tests of compaction).
    pub fn entry_count(&self) -> usize {
        self.image.lock().expect("disk lock").entries.len()
    }
}

impl LogDisk for MemoryDisk {
    fn load(&mut self) -> Result<DiskImage, ReplicaError> {
        Ok(self.image.lock().expect("disk lock").clone())
    }

    fn write(&mut self, ops: &[DiskOp], _durable: bool) -> Result<(), ReplicaError> {
        let mut image = self.image.lock().expect("disk lock");
        for op in ops {
            image.apply(op);
        }
        Ok(())
    }
}

const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_entries");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");

/// A disk in a redb file (`<work-dir>/master/replica.redb`).
pub struct RedbDisk {
    db: Database,
}

impl Debug for RedbDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedbDisk")
    }
}

impl RedbDisk {
    /// Opens (or creates) the file at `path`.
    pub fn open(path: &Path) -> Result<Self, ReplicaError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| ReplicaError::Disk(e.to_string()))?;
        }
        let db = Database::create(path).map_err(|e| ReplicaError::Disk(e.to_string()))?;
        let txn = db.begin_write().map_err(disk_err)?;
        txn.open_table(ENTRIES).map_err(disk_err)?;
        txn.open_table(META).map_err(disk_err)?;
        txn.commit().map_err(disk_err)?;
        Ok(RedbDisk { db })
    }
}

fn disk_err(e: impl std::fmt::Display) -> ReplicaError {
    ReplicaError::Disk(e.to_string())
}

impl LogDisk for RedbDisk {
    fn load(&mut self) -> Result<DiskImage, ReplicaError> {
        let txn = self.db.begin_read().map_err(disk_err)?;
        let mut image = DiskImage::default();
        let entries = txn.open_table(ENTRIES).map_err(disk_err)?;
        for row in entries.iter().map_err(disk_err)? {
            let (k, v) = row.map_err(disk_err)?;
            image.entries.insert(k.value(), v.value().to_vec());
        }
        let meta = txn.open_table(META).map_err(disk_err)?;
        for row in meta.iter().map_err(disk_err)? {
            let (k, v) = row.map_err(disk_err)?;
            image.meta.insert(k.value().to_string(), v.value().to_vec());
        }
        Ok(image)
    }

    fn write(&mut self, ops: &[DiskOp], durable: bool) -> Result<(), ReplicaError> {
        let mut txn = self.db.begin_write().map_err(disk_err)?;
        if !durable {
            txn.set_durability(redb::Durability::None)
                .map_err(disk_err)?;
        }
        {
            let mut entries = txn.open_table(ENTRIES).map_err(disk_err)?;
            let mut meta = txn.open_table(META).map_err(disk_err)?;
            for op in ops {
                match op {
                    DiskOp::PutEntry(i, bytes) => {
                        entries.insert(*i, bytes.as_slice()).map_err(disk_err)?;
                    }
                    DiskOp::RemoveFrom(i) => {
                        entries.retain_in(*i.., |_, _| false).map_err(disk_err)?;
                    }
                    DiskOp::RemoveUpTo(i) => {
                        entries.retain_in(..=*i, |_, _| false).map_err(disk_err)?;
                    }
                    DiskOp::PutMeta(name, bytes) => {
                        meta.insert(*name, bytes.as_slice()).map_err(disk_err)?;
                    }
                }
            }
        }
        txn.commit().map_err(disk_err)?;
        Ok(())
    }
}

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const PURGED: &str = "purged";
const SNAPSHOT_META: &str = "snapshot_meta";
const SNAPSHOT_DATA: &str = "snapshot_data";

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    postcard::to_allocvec(v).expect("raft types encode")
}

fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, ReplicaError> {
    postcard::from_bytes(bytes)
        .map_err(|e| ReplicaError::Disk(format!("{what} does not decode: {e}")))
}

fn io_write(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::write_logs(openraft::AnyError::error(e.to_string())).into()
}

/// The disk, the in-memory log and what was recovered at start, shared by the log store, its
/// readers and the state machine (snapshots are on the same disk).
struct LogInner {
    disk: Box<dyn LogDisk>,
    entries: BTreeMap<u64, Entry<TypeConfig>>,
    vote: Option<Vote<NodeId>>,
    committed: Option<LogId<NodeId>>,
    last_purged: Option<LogId<NodeId>>,
}

/// What a disk held when the replica started.
pub(crate) struct Recovered {
    pub(crate) log: LogStore,
    pub(crate) snapshot: Option<StoredSnapshot>,
}

/// A snapshot as stored.
#[derive(Clone)]
pub(crate) struct StoredSnapshot {
    pub(crate) meta: SnapshotMeta<NodeId, ReplicaNode>,
    pub(crate) data: Vec<u8>,
}

/// openraft's log store (and log reader) over a [`LogDisk`].
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<LogInner>>,
}

impl LogStore {
    pub(crate) fn open(mut disk: Box<dyn LogDisk>) -> Result<Recovered, ReplicaError> {
        let image = disk.load()?;
        let mut entries = BTreeMap::new();
        for (index, bytes) in &image.entries {
            let entry: Entry<TypeConfig> = decode(bytes, "a log entry")?;
            if entry.log_id.index != *index {
                return Err(ReplicaError::Disk(format!(
                    "log entry stored at {index} says index {}",
                    entry.log_id.index
                )));
            }
            entries.insert(*index, entry);
        }
        let meta = |name: &str| image.meta.get(name);
        let vote = meta(VOTE).map(|b| decode(b, "the vote")).transpose()?;
        let committed: Option<LogId<NodeId>> = meta(COMMITTED)
            .map(|b| decode::<Option<LogId<NodeId>>>(b, "the committed log id"))
            .transpose()?
            .flatten();
        let last_purged = meta(PURGED)
            .map(|b| decode(b, "the purged log id"))
            .transpose()?;
        let snapshot = match (meta(SNAPSHOT_META), meta(SNAPSHOT_DATA)) {
            (Some(m), Some(d)) => Some(StoredSnapshot {
                meta: decode(m, "the snapshot's metadata")?,
                data: d.clone(),
            }),
            _ => None,
        };
        Ok(Recovered {
            log: LogStore {
                inner: Arc::new(Mutex::new(LogInner {
                    disk,
                    entries,
                    vote,
                    committed,
                    last_purged,
                })),
            },
            snapshot,
        })
    }

    fn write_disk(&self, ops: &[DiskOp], durable: bool) -> Result<(), ReplicaError> {
        self.inner
            .lock()
            .expect("log lock")
            .disk
            .write(ops, durable)
    }

    /// Number of entries in the log (after compaction).
    pub fn len(&self) -> usize {
        self.inner.lock().expect("log lock").entries.len()
    }

    /// True when the log holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let inner = self.inner.lock().expect("log lock");
        Ok(inner.entries.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let inner = self.inner.lock().expect("log lock");
        let last = inner
            .entries
            .last_key_value()
            .map(|(_, e)| e.log_id)
            .or(inner.last_purged);
        Ok(LogState {
            last_purged_log_id: inner.last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.inner.lock().expect("log lock");
        inner
            .disk
            .write(&[DiskOp::PutMeta(VOTE, encode(vote))], true)
            .map_err(|e| {
                StorageError::from(StorageIOError::write_vote(openraft::AnyError::error(
                    e.to_string(),
                )))
            })?;
        inner.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(self.inner.lock().expect("log lock").vote)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.inner.lock().expect("log lock");
        // Not durable on its own: it only spares re-applying after a restart, and a later
        // durable write (any append) carries it to the disk.
        inner
            .disk
            .write(&[DiskOp::PutMeta(COMMITTED, encode(&committed))], false)
            .map_err(io_write)?;
        inner.committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self.inner.lock().expect("log lock").committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        let ops: Vec<DiskOp> = entries
            .iter()
            .map(|e| DiskOp::PutEntry(e.log_id.index, encode(e)))
            .collect();
        let mut inner = self.inner.lock().expect("log lock");
        if let Err(e) = inner.disk.write(&ops, true) {
            callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
            return Err(io_write(e));
        }
        for e in entries {
            inner.entries.insert(e.log_id.index, e);
        }
        drop(inner);
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.inner.lock().expect("log lock");
        inner
            .disk
            .write(&[DiskOp::RemoveFrom(log_id.index)], true)
            .map_err(io_write)?;
        inner.entries.split_off(&log_id.index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.inner.lock().expect("log lock");
        inner
            .disk
            .write(
                &[
                    DiskOp::PutMeta(PURGED, encode(&log_id)),
                    DiskOp::RemoveUpTo(log_id.index),
                ],
                true,
            )
            .map_err(io_write)?;
        inner.last_purged = Some(log_id);
        let keep = inner.entries.split_off(&(log_id.index + 1));
        inner.entries = keep;
        Ok(())
    }
}

/// The application's state and what openraft needs beside it.
pub(crate) struct StateInner<S> {
    pub(crate) state: S,
    pub(crate) last_applied: Option<LogId<NodeId>>,
    pub(crate) membership: StoredMembership<NodeId, ReplicaNode>,
    pub(crate) snapshot: Option<StoredSnapshot>,
    snapshot_count: u64,
}

/// openraft's state machine over a [`ReplicatedState`].
pub struct StateMachineStore<S> {
    pub(crate) inner: Arc<Mutex<StateInner<S>>>,
    log: LogStore,
}

impl<S> Clone for StateMachineStore<S> {
    fn clone(&self) -> Self {
        StateMachineStore {
            inner: self.inner.clone(),
            log: self.log.clone(),
        }
    }
}

impl<S: ReplicatedState> StateMachineStore<S> {
    /// The state restored from `snapshot` (or `state` as given when there is none).
    pub(crate) fn new(
        mut state: S,
        snapshot: Option<StoredSnapshot>,
        log: LogStore,
    ) -> Result<Self, ReplicaError> {
        let (last_applied, membership) = match &snapshot {
            Some(s) => {
                state.restore(&s.data).map_err(|e| {
                    ReplicaError::Disk(format!("the snapshot does not restore: {e}"))
                })?;
                (s.meta.last_log_id, s.meta.last_membership.clone())
            }
            None => (None, StoredMembership::default()),
        };
        Ok(StateMachineStore {
            inner: Arc::new(Mutex::new(StateInner {
                state,
                last_applied,
                membership,
                snapshot,
                snapshot_count: 0,
            })),
            log,
        })
    }
}

impl<S> StateMachineStore<S> {
    /// Writes a snapshot durably (the latest replaces the previous). openraft's error type is
    /// what it is; it goes straight back to openraft.
    #[allow(clippy::result_large_err)]
    fn store_snapshot(
        &self,
        meta: &SnapshotMeta<NodeId, ReplicaNode>,
        data: &[u8],
    ) -> Result<(), StorageError<NodeId>> {
        self.log
            .write_disk(
                &[
                    DiskOp::PutMeta(SNAPSHOT_META, encode(meta)),
                    DiskOp::PutMeta(SNAPSHOT_DATA, data.to_vec()),
                ],
                true,
            )
            .map_err(|e| {
                StorageError::from(StorageIOError::write_snapshot(
                    Some(meta.signature()),
                    openraft::AnyError::error(e.to_string()),
                ))
            })
    }
}

impl<S: ReplicatedState> RaftSnapshotBuilder<TypeConfig> for StateMachineStore<S> {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let mut inner = self.inner.lock().expect("state lock");
        let data = inner.state.snapshot();
        inner.snapshot_count += 1;
        let snapshot_id = match inner.last_applied {
            Some(id) => format!("{}-{}-{}", id.leader_id, id.index, inner.snapshot_count),
            None => format!("none-{}", inner.snapshot_count),
        };
        let meta = SnapshotMeta {
            last_log_id: inner.last_applied,
            last_membership: inner.membership.clone(),
            snapshot_id,
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        };
        self.store_snapshot(&meta, &data)?;
        inner.snapshot = Some(stored);
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl<S: ReplicatedState> RaftStateMachine<TypeConfig> for StateMachineStore<S> {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, ReplicaNode>), StorageError<NodeId>>
    {
        let inner = self.inner.lock().expect("state lock");
        Ok((inner.last_applied, inner.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Vec<u8>>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut inner = self.inner.lock().expect("state lock");
        let mut responses = Vec::new();
        for entry in entries {
            inner.last_applied = Some(entry.log_id);
            let response = match entry.payload {
                EntryPayload::Blank => Vec::new(),
                EntryPayload::Normal(command) => inner.state.apply(entry.log_id.index, &command),
                EntryPayload::Membership(m) => {
                    inner.membership = StoredMembership::new(Some(entry.log_id), m);
                    Vec::new()
                }
            };
            responses.push(response);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, ReplicaNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let data = snapshot.into_inner();
        let mut inner = self.inner.lock().expect("state lock");
        inner.state.restore(&data).map_err(|e| {
            StorageError::from(StorageIOError::read_snapshot(
                Some(meta.signature()),
                openraft::AnyError::error(e),
            ))
        })?;
        self.store_snapshot(meta, &data)?;
        inner.last_applied = meta.last_log_id;
        inner.membership = meta.last_membership.clone();
        inner.snapshot = Some(StoredSnapshot {
            meta: meta.clone(),
            data,
        });
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let inner = self.inner.lock().expect("state lock");
        Ok(inner.snapshot.as_ref().map(|s| Snapshot {
            meta: s.meta.clone(),
            snapshot: Box::new(Cursor::new(s.data.clone())),
        }))
    }
}
