//! The slave's checkpoint: what it must remember across a restart (even a `kill -9`) to keep
//! its tasks and re-register with them.
//!
//! It holds the slave's id and info, the frameworks of its tasks (id, info, scheduler address),
//! and per task: the [`TaskInfo`], its latest state, the containerizer's [`LaunchInfo`] and the
//! unacknowledged status updates. The slave writes *before* it acts: a task is recorded before
//! it is launched, an update before it is sent.
//!
//! Two stores implement [`CheckpointStore`]: [`RedbCheckpoint`] (a redb file,
//! `<work-dir>/slave/checkpoint.redb`; each write is one committed transaction) and
//! [`MemoryCheckpoint`] (shared in memory: a simulated slave "restarted" with a clone of it
//! finds what it wrote).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use plateau_master::ids::{FrameworkId, SlaveId, TaskId};
use plateau_master::messages::{FrameworkInfo, SlaveInfo, TaskInfo, TaskState, TaskStatus};
use plateau_runtime::Upid;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::containerizer::LaunchInfo;
use crate::core::KillCause;
use crate::error::SlaveError;
use crate::limits;

/// The slave's identity as the master admitted it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlaveRecord {
    /// The id the master gave.
    pub slave_id: SlaveId,
    /// What the slave registered with.
    pub info: SlaveInfo,
}

/// A framework with tasks on the slave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameworkRecord {
    /// Its id.
    pub id: FrameworkId,
    /// Its registration data.
    pub info: FrameworkInfo,
    /// Its scheduler's address.
    pub pid: Upid,
}

/// A task of the slave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// Its framework.
    pub framework_id: FrameworkId,
    /// The task (shared with the slave's books while it runs).
    pub info: Arc<TaskInfo>,
    /// The state of its latest update (Staging before the launch).
    pub state: TaskState,
    /// Its sandbox.
    pub sandbox: Arc<Path>,
    /// What the containerizer launched; None until the launch returned.
    pub launch: Option<LaunchInfo>,
    /// A kill asked of the containerizer, and why.
    pub kill: Option<KillCause>,
    /// Updates not acknowledged yet, oldest first.
    pub pending_updates: Vec<TaskStatus>,
}

impl TaskRecord {
    /// The record as a borrowed view, to write it.
    pub fn borrowed(&self) -> TaskRecordRef<'_> {
        TaskRecordRef {
            framework_id: &self.framework_id,
            info: &self.info,
            state: self.state,
            sandbox: &self.sandbox,
            launch: self.launch.as_ref(),
            kill: self.kill,
            pending_updates: PendingUpdates(&self.pending_updates, &[]),
        }
    }
}

/// A [`TaskRecord`] borrowed from the slave's books: what a write takes, so that writing a
/// task clones nothing. It encodes exactly as the [`TaskRecord`] it stands for.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct TaskRecordRef<'a> {
    /// Its framework.
    pub framework_id: &'a FrameworkId,
    /// The task.
    pub info: &'a Arc<TaskInfo>,
    /// The state of its latest update.
    pub state: TaskState,
    /// Its sandbox.
    pub sandbox: &'a Arc<Path>,
    /// What the containerizer launched.
    pub launch: Option<&'a LaunchInfo>,
    /// A kill asked of the containerizer, and why.
    pub kill: Option<KillCause>,
    /// Updates not acknowledged yet, oldest first.
    pub pending_updates: PendingUpdates<'a>,
}

impl TaskRecordRef<'_> {
    /// An owned copy.
    pub fn to_record(&self) -> TaskRecord {
        TaskRecord {
            framework_id: self.framework_id.clone(),
            info: self.info.clone(),
            state: self.state,
            sandbox: Arc::clone(self.sandbox),
            launch: self.launch.cloned(),
            kill: self.kill,
            pending_updates: self.pending_updates.iter().cloned().collect(),
        }
    }
}

/// Unacknowledged updates as the two halves of a ring buffer (`VecDeque::as_slices`),
/// encoded as one sequence.
#[derive(Debug, Clone, Copy)]
pub struct PendingUpdates<'a>(pub &'a [TaskStatus], pub &'a [TaskStatus]);

impl<'a> PendingUpdates<'a> {
    /// The updates, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &'a TaskStatus> + 'a {
        self.0.iter().chain(self.1.iter())
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.0.len() + self.1.len()
    }

    /// True when there is none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Serialize for PendingUpdates<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = serializer.serialize_seq(Some(self.len()))?;
        for update in self.iter() {
            seq.serialize_element(update)?;
        }
        seq.end()
    }
}

/// Everything checkpointed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Checkpoint {
    /// The slave's id and info, once registered.
    pub slave: Option<SlaveRecord>,
    /// Frameworks by id.
    pub frameworks: BTreeMap<FrameworkId, FrameworkRecord>,
    /// Tasks by id (boxed: a record is large, and a B-tree moves its values on every insert).
    pub tasks: BTreeMap<TaskId, Box<TaskRecord>>,
}

/// Durable storage of the [`Checkpoint`]. Each method returns once the change is durable.
pub trait CheckpointStore: Send {
    /// Reads everything.
    fn load(&self) -> Result<Checkpoint, SlaveError>;
    /// Records the slave's id and info.
    fn put_slave(&mut self, record: &SlaveRecord) -> Result<(), SlaveError>;
    /// Records (or replaces) a framework.
    fn put_framework(&mut self, record: &FrameworkRecord) -> Result<(), SlaveError>;
    /// Forgets a framework.
    fn remove_framework(&mut self, id: &FrameworkId) -> Result<(), SlaveError>;
    /// Records (or replaces) a task.
    fn put_task(&mut self, record: &TaskRecordRef<'_>) -> Result<(), SlaveError>;
    /// Records (or replaces) several tasks at once: one commit for all (group commit).
    fn put_tasks(&mut self, records: &[TaskRecordRef<'_>]) -> Result<(), SlaveError> {
        records.iter().try_for_each(|r| self.put_task(r))
    }
    /// Forgets a task.
    fn remove_task(&mut self, id: &TaskId) -> Result<(), SlaveError>;
}

/// An in-memory checkpoint, shared between clones: a simulated slave restarted with a clone
/// recovers what its previous incarnation wrote.
#[derive(Debug, Clone, Default)]
pub struct MemoryCheckpoint {
    inner: Arc<Mutex<Checkpoint>>,
}

impl MemoryCheckpoint {
    /// An empty checkpoint.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of the current content (for tests).
    pub fn snapshot(&self) -> Checkpoint {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Checkpoint> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl CheckpointStore for MemoryCheckpoint {
    fn load(&self) -> Result<Checkpoint, SlaveError> {
        Ok(self.snapshot())
    }
    fn put_slave(&mut self, record: &SlaveRecord) -> Result<(), SlaveError> {
        self.lock().slave = Some(record.clone());
        Ok(())
    }
    fn put_framework(&mut self, record: &FrameworkRecord) -> Result<(), SlaveError> {
        self.lock()
            .frameworks
            .insert(record.id.clone(), record.clone());
        Ok(())
    }
    fn remove_framework(&mut self, id: &FrameworkId) -> Result<(), SlaveError> {
        self.lock().frameworks.remove(id);
        Ok(())
    }
    fn put_task(&mut self, record: &TaskRecordRef<'_>) -> Result<(), SlaveError> {
        let mut checkpoint = self.lock();
        match checkpoint.tasks.get_mut(&record.info.task_id) {
            // A task is rewritten at each of its updates and acknowledgements, mostly with
            // its state and pending updates changed: update in place, cloning only what
            // differs (the simulator writes millions of these).
            Some(stored) => {
                if &stored.framework_id != record.framework_id {
                    stored.framework_id.clone_from(record.framework_id);
                }
                // The record shares the slave's description of the task, which never changes
                // while the task is in the books: the same pointer, nothing to compare.
                if !Arc::ptr_eq(&stored.info, record.info) {
                    stored.info = Arc::clone(record.info);
                }
                stored.state = record.state;
                if !Arc::ptr_eq(&stored.sandbox, record.sandbox) {
                    stored.sandbox = Arc::clone(record.sandbox);
                }
                if stored.launch.as_ref() != record.launch {
                    stored.launch = record.launch.cloned();
                }
                stored.kill = record.kill;
                let pending = record.pending_updates;
                // Mostly one update more or one less: a different count needs no comparing.
                if stored.pending_updates.len() != pending.len()
                    || !stored.pending_updates.iter().eq(pending.iter())
                {
                    stored.pending_updates.clear();
                    // Exactly: a first growth would make room for four 152-byte statuses,
                    // and a task mostly has one or two pending.
                    stored.pending_updates.reserve_exact(pending.len());
                    stored.pending_updates.extend(pending.iter().cloned());
                }
            }
            None => {
                checkpoint
                    .tasks
                    .insert(record.info.task_id.clone(), Box::new(record.to_record()));
            }
        }
        Ok(())
    }
    fn remove_task(&mut self, id: &TaskId) -> Result<(), SlaveError> {
        self.lock().tasks.remove(id);
        Ok(())
    }
}

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const FRAMEWORKS: TableDefinition<&str, &[u8]> = TableDefinition::new("frameworks");
const TASKS: TableDefinition<&str, &[u8]> = TableDefinition::new("tasks");
const META_SLAVE: &str = "slave";
const META_FORMAT: &str = "format";
const FORMAT_VERSION: u64 = 1;

/// The checkpoint in a redb file; records are postcard-encoded.
pub struct RedbCheckpoint {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for RedbCheckpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RedbCheckpoint({})", self.path.display())
    }
}

impl RedbCheckpoint {
    /// Opens (or creates) the checkpoint at `path`, creating its directory.
    pub fn open(path: &Path) -> Result<Self, SlaveError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Self::error(path, "cannot create", e))?;
        }
        let db = Database::create(path).map_err(|e| Self::error(path, "cannot open", e))?;
        let store = RedbCheckpoint {
            db,
            path: path.to_path_buf(),
        };
        store.init()?;
        Ok(store)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(path: &Path, what: &str, e: impl std::fmt::Display) -> SlaveError {
        SlaveError::Checkpoint {
            path: path.to_path_buf(),
            reason: format!("{what}: {e}"),
        }
    }

    fn err(&self, what: &'static str) -> impl Fn(&dyn std::fmt::Display) -> SlaveError + '_ {
        move |e| Self::error(&self.path, what, e)
    }

    fn init(&self) -> Result<(), SlaveError> {
        let err = self.err("cannot initialize");
        let txn = self.db.begin_write().map_err(|e| err(&e))?;
        {
            txn.open_table(FRAMEWORKS).map_err(|e| err(&e))?;
            txn.open_table(TASKS).map_err(|e| err(&e))?;
            let mut meta = txn.open_table(META).map_err(|e| err(&e))?;
            let stored = meta
                .get(META_FORMAT)
                .map_err(|e| err(&e))?
                .map(|v| v.value().to_vec());
            match stored {
                None => {
                    meta.insert(META_FORMAT, FORMAT_VERSION.to_le_bytes().as_slice())
                        .map_err(|e| err(&e))?;
                }
                Some(v) if v == FORMAT_VERSION.to_le_bytes() => {}
                Some(v) => {
                    return Err(err(&format!(
                        "unsupported checkpoint format {v:?} (this slave reads {FORMAT_VERSION})"
                    )))
                }
            }
        }
        txn.commit().map_err(|e| err(&e))
    }

    fn encode<T: Serialize>(&self, value: &T) -> Result<Vec<u8>, SlaveError> {
        let bytes = postcard::to_stdvec(value).map_err(|e| self.err("cannot encode")(&e))?;
        if bytes.len() > limits::CHECKPOINT_RECORD_BYTES_MAX {
            return Err(self.err("cannot write")(&format!(
                "record of {} bytes is above the maximum {}",
                bytes.len(),
                limits::CHECKPOINT_RECORD_BYTES_MAX
            )));
        }
        Ok(bytes)
    }

    fn put(
        &mut self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
        value: &[u8],
    ) -> Result<(), SlaveError> {
        let err = self.err("cannot write");
        let txn = self.db.begin_write().map_err(|e| err(&e))?;
        {
            let mut t = txn.open_table(table).map_err(|e| err(&e))?;
            t.insert(key, value).map_err(|e| err(&e))?;
        }
        txn.commit().map_err(|e| err(&e))
    }

    fn remove(&mut self, table: TableDefinition<&str, &[u8]>, key: &str) -> Result<(), SlaveError> {
        let err = self.err("cannot write");
        let txn = self.db.begin_write().map_err(|e| err(&e))?;
        {
            let mut t = txn.open_table(table).map_err(|e| err(&e))?;
            t.remove(key).map_err(|e| err(&e))?;
        }
        txn.commit().map_err(|e| err(&e))
    }
}

impl CheckpointStore for RedbCheckpoint {
    fn load(&self) -> Result<Checkpoint, SlaveError> {
        let err = self.err("cannot read");
        let txn = self.db.begin_read().map_err(|e| err(&e))?;
        let mut checkpoint = Checkpoint::default();
        let meta = txn.open_table(META).map_err(|e| err(&e))?;
        if let Some(v) = meta.get(META_SLAVE).map_err(|e| err(&e))? {
            checkpoint.slave = Some(
                postcard::from_bytes(v.value()).map_err(|e| err(&format!("slave record: {e}")))?,
            );
        }
        let frameworks = txn.open_table(FRAMEWORKS).map_err(|e| err(&e))?;
        for row in frameworks.iter().map_err(|e| err(&e))? {
            let (key, value) = row.map_err(|e| err(&e))?;
            let record: FrameworkRecord = postcard::from_bytes(value.value())
                .map_err(|e| err(&format!("framework {}: {e}", key.value())))?;
            checkpoint.frameworks.insert(record.id.clone(), record);
        }
        let tasks = txn.open_table(TASKS).map_err(|e| err(&e))?;
        for row in tasks.iter().map_err(|e| err(&e))? {
            let (key, value) = row.map_err(|e| err(&e))?;
            let record: TaskRecord = postcard::from_bytes(value.value())
                .map_err(|e| err(&format!("task {}: {e}", key.value())))?;
            checkpoint
                .tasks
                .insert(record.info.task_id.clone(), Box::new(record));
        }
        Ok(checkpoint)
    }

    fn put_slave(&mut self, record: &SlaveRecord) -> Result<(), SlaveError> {
        let bytes = self.encode(record)?;
        self.put(META, META_SLAVE, &bytes)
    }

    fn put_framework(&mut self, record: &FrameworkRecord) -> Result<(), SlaveError> {
        let bytes = self.encode(record)?;
        self.put(FRAMEWORKS, record.id.as_str(), &bytes)
    }

    fn remove_framework(&mut self, id: &FrameworkId) -> Result<(), SlaveError> {
        self.remove(FRAMEWORKS, id.as_str())
    }

    fn put_task(&mut self, record: &TaskRecordRef<'_>) -> Result<(), SlaveError> {
        let bytes = self.encode(record)?;
        self.put(TASKS, record.info.task_id.as_str(), &bytes)
    }

    fn put_tasks(&mut self, records: &[TaskRecordRef<'_>]) -> Result<(), SlaveError> {
        let encoded = records
            .iter()
            .map(|r| Ok((r.info.task_id.as_str(), self.encode(r)?)))
            .collect::<Result<Vec<_>, SlaveError>>()?;
        let err = self.err("cannot write");
        let txn = self.db.begin_write().map_err(|e| err(&e))?;
        {
            let mut t = txn.open_table(TASKS).map_err(|e| err(&e))?;
            for (key, bytes) in &encoded {
                t.insert(*key, bytes.as_slice()).map_err(|e| err(&e))?;
            }
        }
        txn.commit().map_err(|e| err(&e))
    }

    fn remove_task(&mut self, id: &TaskId) -> Result<(), SlaveError> {
        self.remove(TASKS, id.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plateau_master::messages::{CommandInfo, StatusSource};
    use plateau_master::resources::{Attributes, Resources};
    use plateau_runtime::NodeAddr;

    fn record(id: &str) -> TaskRecord {
        TaskRecord {
            framework_id: FrameworkId::new("fw"),
            info: Arc::new(TaskInfo {
                name: id.into(),
                task_id: TaskId::new(id),
                slave_id: SlaveId::new("S1"),
                resources: Resources::parse("cpus:0.5;mem:32;ports:[31000-31001]").unwrap(),
                command: CommandInfo::shell("sleep 1"),
                health_check: None,
                labels: BTreeMap::new(),
                kill_grace_period_secs: Some(1.5),
            }),
            state: TaskState::Running,
            sandbox: Path::new("/tmp/sandbox").into(),
            launch: Some(LaunchInfo {
                task_id: id.into(),
                pid: 10,
                supervisor_pid: 9,
                supervisor_start_time: 1234,
                cgroup: "plateau/s/t".into(),
                sandbox: Path::new("/tmp/sandbox").into(),
                run_dir: PathBuf::from("/tmp/run"),
            }),
            kill: Some(KillCause::Requested),
            pending_updates: vec![TaskStatus {
                task_id: TaskId::new(id),
                state: TaskState::Running,
                message: Some("m".into()),
                source: StatusSource::Slave,
                reason: None,
                slave_id: Some(SlaveId::new("S1")),
                healthy: Some(true),
                timestamp: 1.5,
                uuid: Some([7; 16]),
            }],
        }
    }

    fn exercise(store: &mut dyn CheckpointStore) -> Checkpoint {
        let slave = SlaveRecord {
            slave_id: SlaveId::new("run-S1"),
            info: SlaveInfo {
                hostname: "h".into(),
                port: 5051,
                resources: Resources::parse("cpus:2;mem:1024").unwrap(),
                attributes: Attributes::parse("rack:r1").unwrap(),
            },
        };
        store.put_slave(&slave).unwrap();
        let framework = FrameworkRecord {
            id: FrameworkId::new("fw"),
            info: FrameworkInfo::new("marathon"),
            pid: Upid::new("marathon", &NodeAddr::new("10.0.0.1", 8080)),
        };
        store.put_framework(&framework).unwrap();
        store
            .put_framework(&FrameworkRecord {
                id: FrameworkId::new("gone"),
                ..framework.clone()
            })
            .unwrap();
        store.remove_framework(&FrameworkId::new("gone")).unwrap();
        store.put_task(&record("a").borrowed()).unwrap();
        store.put_task(&record("b").borrowed()).unwrap();
        store.remove_task(&TaskId::new("b")).unwrap();
        let loaded = store.load().unwrap();
        assert_eq!(loaded.slave, Some(slave));
        assert_eq!(loaded.frameworks.len(), 1);
        assert_eq!(loaded.frameworks[&FrameworkId::new("fw")], framework);
        assert_eq!(loaded.tasks.len(), 1);
        assert_eq!(*loaded.tasks[&TaskId::new("a")], record("a"));
        loaded
    }

    #[test]
    fn a_borrowed_record_encodes_and_stores_as_its_owned_record() {
        let mut owned = record("a");
        let second = TaskStatus {
            state: TaskState::Finished,
            uuid: Some([8; 16]),
            ..owned.pending_updates[0].clone()
        };
        owned.pending_updates.push(second);
        // A ring buffer that wrapped around: the updates sit in two slices.
        let mut ring = std::collections::VecDeque::with_capacity(2);
        ring.push_back(owned.pending_updates[1].clone());
        ring.push_front(owned.pending_updates[0].clone());
        let (front, back) = ring.as_slices();
        let view = TaskRecordRef {
            pending_updates: PendingUpdates(front, back),
            ..owned.borrowed()
        };
        let bytes = postcard::to_stdvec(&view).unwrap();
        assert_eq!(bytes, postcard::to_stdvec(&owned).unwrap());
        let decoded: TaskRecord = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(decoded, owned);
        assert_eq!(view.to_record(), owned);
        // Rewriting a stored task in place gives the same record as writing it afresh.
        let mut store = MemoryCheckpoint::new();
        store.put_task(&record("a").borrowed()).unwrap();
        store.put_task(&view).unwrap();
        assert_eq!(*store.load().unwrap().tasks[&TaskId::new("a")], owned);
    }

    #[test]
    fn memory_checkpoint_is_shared_between_clones() {
        let mut store = MemoryCheckpoint::new();
        let written = exercise(&mut store);
        assert_eq!(store.clone().load().unwrap(), written);
    }

    #[test]
    fn redb_checkpoint_survives_reopening() {
        let dir = std::env::temp_dir().join(format!("plateau-slave-ckpt-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        struct Cleanup(PathBuf);
        impl Drop for Cleanup {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
        let _cleanup = Cleanup(dir.clone());
        let path = dir.join("slave/checkpoint.redb");
        let written = {
            let mut store = RedbCheckpoint::open(&path).unwrap();
            exercise(&mut store)
        };
        let store = RedbCheckpoint::open(&path).unwrap();
        assert_eq!(store.load().unwrap(), written);
    }
}
