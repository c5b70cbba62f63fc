//! Marathon's durable state: apps and their versions, deployments, instances and the
//! framework id, behind the small [`Store`] trait.
//!
//! - [`RedbStore`]: a redb file at `<work-dir>/marathon/state.redb`. Each [`Store::apply`] is
//!   one write transaction, committed durably before it returns: the scheduler writes before
//!   the API answers and before a launch is sent, so a kill -9 loses no acknowledged change
//!   and a restarted Marathon never launches a task id twice.
//! - [`MemoryStore`]: the same in memory, shared between clones, so a simulated Marathon can
//!   "crash" and restart on the same state.
//!
//! Values are JSON (the records of [`crate::state`]), keyed by app id, task id, deployment id.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use plateau_master::ids::{FrameworkId, TaskId};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;

use crate::error::Error;
use crate::state::{AppRecord, Deployment, Instance};

/// Everything the store holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredState {
    /// The framework id the master gave, once registered.
    pub framework_id: Option<FrameworkId>,
    /// Apps by id.
    pub apps: BTreeMap<String, AppRecord>,
    /// Instances by task id.
    pub instances: BTreeMap<TaskId, Instance>,
    /// Deployments by id.
    pub deployments: BTreeMap<String, Deployment>,
}

/// One change to the store.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreOp {
    /// Remember the framework id.
    PutFrameworkId(FrameworkId),
    /// Create or replace an app.
    PutApp(Box<AppRecord>),
    /// Forget an app.
    DeleteApp(String),
    /// Create or replace an instance.
    PutInstance(Box<Instance>),
    /// Forget an instance.
    DeleteInstance(TaskId),
    /// Create or replace a deployment.
    PutDeployment(Box<Deployment>),
    /// Forget a deployment.
    DeleteDeployment(String),
}

/// Where Marathon keeps its state.
pub trait Store: Send {
    /// Reads everything.
    fn load(&self) -> Result<StoredState, Error>;
    /// Applies `ops` atomically and durably (all or none).
    fn apply(&mut self, ops: &[StoreOp]) -> Result<(), Error>;
}

fn apply_to(state: &mut StoredState, ops: &[StoreOp]) {
    for op in ops {
        match op {
            StoreOp::PutFrameworkId(id) => state.framework_id = Some(id.clone()),
            StoreOp::PutApp(app) => {
                state.apps.insert(app.app.id.clone(), (**app).clone());
            }
            StoreOp::DeleteApp(id) => {
                state.apps.remove(id);
            }
            StoreOp::PutInstance(i) => {
                state.instances.insert(i.task_id.clone(), (**i).clone());
            }
            StoreOp::DeleteInstance(id) => {
                state.instances.remove(id);
            }
            StoreOp::PutDeployment(d) => {
                state.deployments.insert(d.id.clone(), (**d).clone());
            }
            StoreOp::DeleteDeployment(id) => {
                state.deployments.remove(id);
            }
        }
    }
}

/// State in memory, shared by clones (a simulated node's "disk").
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<StoredState>>,
    fail: Arc<Mutex<bool>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of what it holds (for tests).
    pub fn snapshot(&self) -> StoredState {
        self.state.lock().expect("memory store lock").clone()
    }

    /// Make every later write fail (to test that failures stop the scheduler).
    pub fn set_failing(&self, failing: bool) {
        *self.fail.lock().expect("memory store lock") = failing;
    }
}

impl Store for MemoryStore {
    fn load(&self) -> Result<StoredState, Error> {
        Ok(self.snapshot())
    }

    fn apply(&mut self, ops: &[StoreOp]) -> Result<(), Error> {
        if *self.fail.lock().expect("memory store lock") {
            return Err(Error::Store {
                path: "memory".into(),
                message: "writes are failing (test)".into(),
            });
        }
        apply_to(&mut self.state.lock().expect("memory store lock"), ops);
        Ok(())
    }
}

const APPS: TableDefinition<&str, &[u8]> = TableDefinition::new("apps");
const INSTANCES: TableDefinition<&str, &[u8]> = TableDefinition::new("instances");
const DEPLOYMENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("deployments");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const META_FRAMEWORK_ID: &str = "framework_id";

/// State in a redb file.
pub struct RedbStore {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RedbStore({})", self.path.display())
    }
}

impl RedbStore {
    /// The store's file under a work dir: `<work_dir>/marathon/state.redb`.
    pub fn path_in(work_dir: &Path) -> PathBuf {
        work_dir.join("marathon").join("state.redb")
    }

    /// Opens (or creates) `<work_dir>/marathon/state.redb`, creating the directory.
    pub fn open_in(work_dir: &Path) -> Result<Self, Error> {
        let path = Self::path_in(work_dir);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::Store {
                path: dir.display().to_string(),
                message: format!("cannot create: {e}"),
            })?;
        }
        Self::open(&path)
    }

    /// Opens (or creates) the store file at `path`.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let err = |e: &dyn std::fmt::Display| Error::Store {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        let db = Database::create(path).map_err(|e| err(&e))?;
        let txn = db.begin_write().map_err(|e| err(&e))?;
        {
            for table in [APPS, INSTANCES, DEPLOYMENTS, META] {
                txn.open_table(table).map_err(|e| err(&e))?;
            }
        }
        txn.commit().map_err(|e| err(&e))?;
        Ok(RedbStore {
            db,
            path: path.to_path_buf(),
        })
    }

    fn err(&self, e: &dyn std::fmt::Display) -> Error {
        Error::Store {
            path: self.path.display().to_string(),
            message: e.to_string(),
        }
    }

    fn read_table<T: DeserializeOwned>(
        &self,
        txn: &redb::ReadTransaction,
        table: TableDefinition<&str, &[u8]>,
    ) -> Result<Vec<T>, Error> {
        let table = txn.open_table(table).map_err(|e| self.err(&e))?;
        let mut out = Vec::new();
        for row in table.iter().map_err(|e| self.err(&e))? {
            let (key, value) = row.map_err(|e| self.err(&e))?;
            let record = serde_json::from_slice(value.value())
                .map_err(|e| self.err(&format!("record {}: {e}", key.value())))?;
            out.push(record);
        }
        Ok(out)
    }
}

fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("state records serialize")
}

impl Store for RedbStore {
    fn load(&self) -> Result<StoredState, Error> {
        let txn = self.db.begin_read().map_err(|e| self.err(&e))?;
        let mut state = StoredState::default();
        for app in self.read_table::<AppRecord>(&txn, APPS)? {
            state.apps.insert(app.app.id.clone(), app);
        }
        for instance in self.read_table::<Instance>(&txn, INSTANCES)? {
            state.instances.insert(instance.task_id.clone(), instance);
        }
        for deployment in self.read_table::<Deployment>(&txn, DEPLOYMENTS)? {
            state.deployments.insert(deployment.id.clone(), deployment);
        }
        let meta = txn.open_table(META).map_err(|e| self.err(&e))?;
        if let Some(v) = meta.get(META_FRAMEWORK_ID).map_err(|e| self.err(&e))? {
            state.framework_id = Some(FrameworkId::new(String::from_utf8_lossy(v.value())));
        }
        Ok(state)
    }

    fn apply(&mut self, ops: &[StoreOp]) -> Result<(), Error> {
        if ops.is_empty() {
            return Ok(());
        }
        // One transaction; redb's default durability is immediate: `commit` returns once the
        // data is on disk.
        let txn = self.db.begin_write().map_err(|e| self.err(&e))?;
        {
            let mut apps = txn.open_table(APPS).map_err(|e| self.err(&e))?;
            let mut instances = txn.open_table(INSTANCES).map_err(|e| self.err(&e))?;
            let mut deployments = txn.open_table(DEPLOYMENTS).map_err(|e| self.err(&e))?;
            let mut meta = txn.open_table(META).map_err(|e| self.err(&e))?;
            for op in ops {
                let result = match op {
                    StoreOp::PutFrameworkId(id) => meta
                        .insert(META_FRAMEWORK_ID, id.as_str().as_bytes())
                        .map(|_| ()),
                    StoreOp::PutApp(app) => apps
                        .insert(app.app.id.as_str(), encode(&**app).as_slice())
                        .map(|_| ()),
                    StoreOp::DeleteApp(id) => apps.remove(id.as_str()).map(|_| ()),
                    StoreOp::PutInstance(i) => instances
                        .insert(i.task_id.as_str(), encode(&**i).as_slice())
                        .map(|_| ()),
                    StoreOp::DeleteInstance(id) => instances.remove(id.as_str()).map(|_| ()),
                    StoreOp::PutDeployment(d) => deployments
                        .insert(d.id.as_str(), encode(&**d).as_slice())
                        .map(|_| ()),
                    StoreOp::DeleteDeployment(id) => deployments.remove(id.as_str()).map(|_| ()),
                };
                result.map_err(|e| self.err(&e))?;
            }
        }
        txn.commit().map_err(|e| self.err(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::AppDefinition;

    fn app(id: &str) -> AppRecord {
        let def = AppDefinition {
            id: id.into(),
            cmd: Some("sleep 1".into()),
            ..AppDefinition::default()
        };
        AppRecord {
            app: def.clone(),
            versions: BTreeMap::from([("v1".to_string(), def)]),
        }
    }

    #[test]
    fn redb_store_survives_reopen() {
        let dir =
            std::env::temp_dir().join(format!("plateau-marathon-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        struct Cleanup(PathBuf);
        impl Drop for Cleanup {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
        let _cleanup = Cleanup(dir.clone());
        {
            let mut store = RedbStore::open_in(&dir).unwrap();
            store
                .apply(&[
                    StoreOp::PutFrameworkId(FrameworkId::new("fw-1")),
                    StoreOp::PutApp(Box::new(app("/a"))),
                    StoreOp::PutApp(Box::new(app("/b"))),
                ])
                .unwrap();
            store.apply(&[StoreOp::DeleteApp("/a".into())]).unwrap();
        }
        let store = RedbStore::open_in(&dir).unwrap();
        let state = store.load().unwrap();
        assert_eq!(state.framework_id, Some(FrameworkId::new("fw-1")));
        assert_eq!(state.apps.keys().collect::<Vec<_>>(), vec!["/b"]);
        assert_eq!(state.apps["/b"], app("/b"));
    }

    #[test]
    fn memory_store_is_shared_by_clones_and_can_fail() {
        let store = MemoryStore::new();
        let mut writer = store.clone();
        writer
            .apply(&[StoreOp::PutApp(Box::new(app("/x")))])
            .unwrap();
        assert!(store.load().unwrap().apps.contains_key("/x"));
        store.set_failing(true);
        assert!(writer.apply(&[StoreOp::DeleteApp("/x".into())]).is_err());
        assert!(store.load().unwrap().apps.contains_key("/x"));
    }
}
