//! The master's durable registry: what must survive a master restart.
//!
//! Mesos calls this the registrar. It holds the admitted slaves (with their unreachable flag),
//! the registered frameworks (with their info and failover timeout), the role weights, the id
//! counters and the current master run id. Tasks are *not* in it: slaves re-register after a
//! master restart and report them.
//!
//! Everything goes through one small trait, [`Registry`], so that the storage can later move
//! onto a replicated log without touching the core. Two implementations:
//!
//! - [`RedbRegistry`]: a redb file (`<work-dir>/master/registry.redb`). Each
//!   [`Registry::apply`] is one write transaction committed with redb's default, immediate
//!   durability (fsync) before it returns, so a change the master has replied about survives
//!   a `kill -9`.
//! - [`MemoryRegistry`]: in memory, shared between clones (an `Arc`), so a test or the
//!   simulator can "crash" a master and start a new one on the same registry.
//!
//! ```
//! use plateau_master::registry::{MemoryRegistry, Registry, RegistryOp};
//!
//! let mut registry = MemoryRegistry::new();
//! registry.apply(&[RegistryOp::SetWeight { role: "apps".into(), weight: 2.0 }])?;
//! let state = registry.clone().load()?;
//! assert_eq!(state.weights.get("apps"), Some(&2.0));
//! # Ok::<(), plateau_master::MasterError>(())
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::error::MasterError;
use crate::ids::{FrameworkId, SlaveId};
use crate::maintenance::MaintenanceState;
use crate::messages::{FrameworkInfo, SlaveInfo};
use plateau_runtime::Upid;

/// A slave the master admitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisteredSlave {
    /// Its id.
    pub id: SlaveId,
    /// What it reported when it last (re-)registered.
    pub info: SlaveInfo,
    /// True while it is out of touch (it may re-register).
    pub unreachable: bool,
    /// Its process when it last (re-)registered: a newly elected master tells it so.
    pub pid: Option<Upid>,
}

/// A framework the master registered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisteredFramework {
    /// Its id.
    pub id: FrameworkId,
    /// Its info as last (re-)registered; `info.failover_timeout_secs` is its failover timeout.
    pub info: FrameworkInfo,
    /// Its scheduler when it last (re-)registered: a newly elected master tells it so.
    pub pid: Option<Upid>,
}

/// The stored layout of format 1, before slaves and frameworks kept their pid.
#[derive(Serialize, Deserialize)]
struct RegisteredSlaveV1 {
    id: SlaveId,
    info: SlaveInfo,
    unreachable: bool,
}

/// The stored layout of format 1, before slaves and frameworks kept their pid.
#[derive(Serialize, Deserialize)]
struct RegisteredFrameworkV1 {
    id: FrameworkId,
    info: FrameworkInfo,
}

/// Everything in the registry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RegistryState {
    /// The run id of the master that wrote last, if any.
    pub master_run_id: Option<String>,
    /// Admitted slaves.
    pub slaves: BTreeMap<SlaveId, RegisteredSlave>,
    /// Registered frameworks.
    pub frameworks: BTreeMap<FrameworkId, RegisteredFramework>,
    /// Role weights set by the operator.
    pub weights: BTreeMap<String, f64>,
    /// Next slave number (ids `<run-id>-S<n>`).
    pub next_slave_number: u64,
    /// Next framework number (ids `<run-id>-<4-digit n>`).
    pub next_framework_number: u64,
    /// The maintenance schedule and the machines that are DOWN.
    pub maintenance: MaintenanceState,
}

impl RegistryState {
    /// Applies one change in memory (what every implementation does, then stores).
    pub fn apply(&mut self, op: &RegistryOp) {
        match op {
            RegistryOp::SetMasterRunId(id) => self.master_run_id = Some(id.clone()),
            RegistryOp::AdmitSlave(slave) => {
                self.slaves.insert(slave.id.clone(), slave.clone());
            }
            RegistryOp::MarkSlaveUnreachable(id) => {
                if let Some(slave) = self.slaves.get_mut(id) {
                    slave.unreachable = true;
                }
            }
            RegistryOp::RemoveSlave(id) => {
                self.slaves.remove(id);
            }
            RegistryOp::PutFramework(framework) => {
                self.frameworks
                    .insert(framework.id.clone(), framework.clone());
            }
            RegistryOp::RemoveFramework(id) => {
                self.frameworks.remove(id);
            }
            RegistryOp::SetWeight { role, weight } => {
                self.weights.insert(role.clone(), *weight);
            }
            RegistryOp::SetNextSlaveNumber(n) => self.next_slave_number = *n,
            RegistryOp::SetNextFrameworkNumber(n) => self.next_framework_number = *n,
            RegistryOp::SetMaintenance(state) => self.maintenance = state.clone(),
        }
    }
}

/// One change to the registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RegistryOp {
    /// Record the current master's run id.
    SetMasterRunId(String),
    /// Admit (or re-admit, clearing the unreachable flag) a slave.
    AdmitSlave(RegisteredSlave),
    /// Mark a slave unreachable.
    MarkSlaveUnreachable(SlaveId),
    /// Forget a slave.
    RemoveSlave(SlaveId),
    /// Add or update a framework.
    PutFramework(RegisteredFramework),
    /// Forget a framework.
    RemoveFramework(FrameworkId),
    /// Set a role's weight.
    SetWeight {
        /// The role.
        role: String,
        /// Its weight.
        weight: f64,
    },
    /// Set the next slave number.
    SetNextSlaveNumber(u64),
    /// Set the next framework number.
    SetNextFrameworkNumber(u64),
    /// Replace the maintenance schedule and the set of DOWN machines.
    SetMaintenance(MaintenanceState),
}

/// The master's durable state. `apply` returns only once the changes are durable: the master
/// replies to a registration only after that.
pub trait Registry {
    /// Reads everything.
    fn load(&self) -> Result<RegistryState, MasterError>;

    /// Applies `ops` atomically (all or none) and durably.
    fn apply(&mut self, ops: &[RegistryOp]) -> Result<(), MasterError>;
}

/// A registry in memory. Clones share the same state, which is what lets a test drop a master
/// and start another on the same registry.
#[derive(Debug, Clone, Default)]
pub struct MemoryRegistry {
    state: Arc<Mutex<RegistryState>>,
}

impl MemoryRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Registry for MemoryRegistry {
    fn load(&self) -> Result<RegistryState, MasterError> {
        Ok(self.state.lock().expect("registry lock").clone())
    }

    fn apply(&mut self, ops: &[RegistryOp]) -> Result<(), MasterError> {
        let mut state = self.state.lock().expect("registry lock");
        for op in ops {
            state.apply(op);
        }
        Ok(())
    }
}

const SLAVES: TableDefinition<&str, &[u8]> = TableDefinition::new("slaves");
const FRAMEWORKS: TableDefinition<&str, &[u8]> = TableDefinition::new("frameworks");
const WEIGHTS: TableDefinition<&str, f64> = TableDefinition::new("weights");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// One row, [`MAINTENANCE_KEY`]: the postcard-encoded [`MaintenanceState`] (absent: empty).
/// A table of its own, so registries written before it need no migration.
const MAINTENANCE: TableDefinition<&str, &[u8]> = TableDefinition::new("maintenance");
const MAINTENANCE_KEY: &str = "state";

const META_FORMAT: &str = "format_version";
const META_RUN_ID: &str = "master_run_id";
const META_NEXT_SLAVE: &str = "next_slave_number";
const META_NEXT_FRAMEWORK: &str = "next_framework_number";
/// Version of the stored layout; bump it with a migration when a stored type changes.
/// 2: slaves and frameworks keep their pid (format 1 is migrated at open).
const FORMAT_VERSION: u64 = 2;

/// The registry in a redb file. Values are postcard-encoded [`RegisteredSlave`] and
/// [`RegisteredFramework`] records keyed by id.
pub struct RedbRegistry {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for RedbRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RedbRegistry({})", self.path.display())
    }
}

fn storage_error(path: &Path, what: &str, e: impl std::fmt::Display) -> MasterError {
    MasterError::Registry {
        message: format!("{what} {}: {e}", path.display()),
    }
}

impl RedbRegistry {
    /// The registry's file under a master work dir: `<work_dir>/master/registry.redb`.
    pub fn path_in(work_dir: &Path) -> PathBuf {
        work_dir.join("master").join("registry.redb")
    }

    /// Opens (or creates) the registry at `<work_dir>/master/registry.redb`, creating the
    /// directory if needed.
    pub fn open_in(work_dir: &Path) -> Result<Self, MasterError> {
        let path = Self::path_in(work_dir);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| storage_error(dir, "cannot create", e))?;
        }
        Self::open(&path)
    }

    /// Opens (or creates) the registry file at `path`.
    pub fn open(path: &Path) -> Result<Self, MasterError> {
        let db = Database::create(path).map_err(|e| storage_error(path, "cannot open", e))?;
        let registry = RedbRegistry {
            db,
            path: path.to_path_buf(),
        };
        registry.init()?;
        Ok(registry)
    }

    /// Creates the tables and checks the format version.
    fn init(&self) -> Result<(), MasterError> {
        let err = |e: &dyn std::fmt::Display| storage_error(&self.path, "cannot initialize", e);
        let txn = self.db.begin_write().map_err(|e| err(&e))?;
        {
            txn.open_table(SLAVES).map_err(|e| err(&e))?;
            txn.open_table(FRAMEWORKS).map_err(|e| err(&e))?;
            txn.open_table(WEIGHTS).map_err(|e| err(&e))?;
            txn.open_table(MAINTENANCE).map_err(|e| err(&e))?;
            let mut meta = txn.open_table(META).map_err(|e| err(&e))?;
            let stored = meta
                .get(META_FORMAT)
                .map_err(|e| err(&e))?
                .map(|v| decode_u64(v.value()));
            match stored {
                None => {
                    meta.insert(META_FORMAT, FORMAT_VERSION.to_le_bytes().as_slice())
                        .map_err(|e| err(&e))?;
                }
                Some(Some(FORMAT_VERSION)) => {}
                Some(Some(1)) => {
                    Self::migrate_from_1(&txn).map_err(|e| err(&e))?;
                    meta.insert(META_FORMAT, FORMAT_VERSION.to_le_bytes().as_slice())
                        .map_err(|e| err(&e))?;
                    tracing::info!(path = %self.path.display(), "registry migrated from format 1 to {FORMAT_VERSION}");
                }
                Some(other) => {
                    return Err(storage_error(
                        &self.path,
                        "unsupported registry format in",
                        format!("{other:?} (this master reads {FORMAT_VERSION})"),
                    ))
                }
            }
        }
        txn.commit().map_err(|e| err(&e))
    }
}

impl RedbRegistry {
    /// Format 1 → 2: every slave and framework record gains an unknown pid.
    fn migrate_from_1(txn: &redb::WriteTransaction) -> Result<(), String> {
        let e = |e: &dyn std::fmt::Display| e.to_string();
        let mut slaves = txn.open_table(SLAVES).map_err(|x| e(&x))?;
        let mut rows = Vec::new();
        for row in slaves.iter().map_err(|x| e(&x))? {
            let (key, value) = row.map_err(|x| e(&x))?;
            let old: RegisteredSlaveV1 = postcard::from_bytes(value.value()).map_err(|x| e(&x))?;
            let new = RegisteredSlave {
                id: old.id,
                info: old.info,
                unreachable: old.unreachable,
                pid: None,
            };
            rows.push((
                key.value().to_string(),
                postcard::to_allocvec(&new).map_err(|x| e(&x))?,
            ));
        }
        for (key, bytes) in rows {
            slaves
                .insert(key.as_str(), bytes.as_slice())
                .map_err(|x| e(&x))?;
        }
        let mut frameworks = txn.open_table(FRAMEWORKS).map_err(|x| e(&x))?;
        let mut rows = Vec::new();
        for row in frameworks.iter().map_err(|x| e(&x))? {
            let (key, value) = row.map_err(|x| e(&x))?;
            let old: RegisteredFrameworkV1 =
                postcard::from_bytes(value.value()).map_err(|x| e(&x))?;
            let new = RegisteredFramework {
                id: old.id,
                info: old.info,
                pid: None,
            };
            rows.push((
                key.value().to_string(),
                postcard::to_allocvec(&new).map_err(|x| e(&x))?,
            ));
        }
        for (key, bytes) in rows {
            frameworks
                .insert(key.as_str(), bytes.as_slice())
                .map_err(|x| e(&x))?;
        }
        Ok(())
    }
}

fn decode_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

impl Registry for RedbRegistry {
    fn load(&self) -> Result<RegistryState, MasterError> {
        let err = |e: &dyn std::fmt::Display| storage_error(&self.path, "cannot read", e);
        let txn = self.db.begin_read().map_err(|e| err(&e))?;
        let mut state = RegistryState::default();
        let slaves = txn.open_table(SLAVES).map_err(|e| err(&e))?;
        for row in slaves.iter().map_err(|e| err(&e))? {
            let (key, value) = row.map_err(|e| err(&e))?;
            let slave: RegisteredSlave = postcard::from_bytes(value.value())
                .map_err(|e| err(&format!("slave {}: {e}", key.value())))?;
            state.slaves.insert(slave.id.clone(), slave);
        }
        let frameworks = txn.open_table(FRAMEWORKS).map_err(|e| err(&e))?;
        for row in frameworks.iter().map_err(|e| err(&e))? {
            let (key, value) = row.map_err(|e| err(&e))?;
            let framework: RegisteredFramework = postcard::from_bytes(value.value())
                .map_err(|e| err(&format!("framework {}: {e}", key.value())))?;
            state.frameworks.insert(framework.id.clone(), framework);
        }
        let weights = txn.open_table(WEIGHTS).map_err(|e| err(&e))?;
        for row in weights.iter().map_err(|e| err(&e))? {
            let (key, value) = row.map_err(|e| err(&e))?;
            state.weights.insert(key.value().to_string(), value.value());
        }
        let meta = txn.open_table(META).map_err(|e| err(&e))?;
        if let Some(v) = meta.get(META_RUN_ID).map_err(|e| err(&e))? {
            state.master_run_id = Some(String::from_utf8_lossy(v.value()).into_owned());
        }
        let counter = |key: &str| -> Result<u64, MasterError> {
            Ok(meta
                .get(key)
                .map_err(|e| err(&e))?
                .and_then(|v| decode_u64(v.value()))
                .unwrap_or(0))
        };
        state.next_slave_number = counter(META_NEXT_SLAVE)?;
        state.next_framework_number = counter(META_NEXT_FRAMEWORK)?;
        let maintenance = txn.open_table(MAINTENANCE).map_err(|e| err(&e))?;
        if let Some(v) = maintenance.get(MAINTENANCE_KEY).map_err(|e| err(&e))? {
            state.maintenance =
                postcard::from_bytes(v.value()).map_err(|e| err(&format!("maintenance: {e}")))?;
        }
        Ok(state)
    }

    fn apply(&mut self, ops: &[RegistryOp]) -> Result<(), MasterError> {
        if ops.is_empty() {
            return Ok(());
        }
        let err = |e: &dyn std::fmt::Display| storage_error(&self.path, "cannot write", e);
        // One transaction for the batch; redb's default durability is immediate: `commit`
        // returns after the data is on disk, which is what makes a reply safe to send.
        let txn = self.db.begin_write().map_err(|e| err(&e))?;
        {
            let mut slaves = txn.open_table(SLAVES).map_err(|e| err(&e))?;
            let mut frameworks = txn.open_table(FRAMEWORKS).map_err(|e| err(&e))?;
            let mut weights = txn.open_table(WEIGHTS).map_err(|e| err(&e))?;
            let mut meta = txn.open_table(META).map_err(|e| err(&e))?;
            let mut maintenance = txn.open_table(MAINTENANCE).map_err(|e| err(&e))?;
            for op in ops {
                match op {
                    RegistryOp::SetMasterRunId(id) => {
                        meta.insert(META_RUN_ID, id.as_bytes())
                            .map_err(|e| err(&e))?;
                    }
                    RegistryOp::AdmitSlave(slave) => {
                        let bytes = postcard::to_allocvec(slave).map_err(|e| err(&e))?;
                        slaves
                            .insert(slave.id.as_str(), bytes.as_slice())
                            .map_err(|e| err(&e))?;
                    }
                    RegistryOp::MarkSlaveUnreachable(id) => {
                        let current = slaves
                            .get(id.as_str())
                            .map_err(|e| err(&e))?
                            .map(|v| postcard::from_bytes::<RegisteredSlave>(v.value()));
                        if let Some(slave) = current {
                            let mut slave = slave.map_err(|e| err(&e))?;
                            slave.unreachable = true;
                            let bytes = postcard::to_allocvec(&slave).map_err(|e| err(&e))?;
                            slaves
                                .insert(id.as_str(), bytes.as_slice())
                                .map_err(|e| err(&e))?;
                        }
                    }
                    RegistryOp::RemoveSlave(id) => {
                        slaves.remove(id.as_str()).map_err(|e| err(&e))?;
                    }
                    RegistryOp::PutFramework(framework) => {
                        let bytes = postcard::to_allocvec(framework).map_err(|e| err(&e))?;
                        frameworks
                            .insert(framework.id.as_str(), bytes.as_slice())
                            .map_err(|e| err(&e))?;
                    }
                    RegistryOp::RemoveFramework(id) => {
                        frameworks.remove(id.as_str()).map_err(|e| err(&e))?;
                    }
                    RegistryOp::SetWeight { role, weight } => {
                        weights
                            .insert(role.as_str(), *weight)
                            .map_err(|e| err(&e))?;
                    }
                    RegistryOp::SetNextSlaveNumber(n) => {
                        meta.insert(META_NEXT_SLAVE, n.to_le_bytes().as_slice())
                            .map_err(|e| err(&e))?;
                    }
                    RegistryOp::SetNextFrameworkNumber(n) => {
                        meta.insert(META_NEXT_FRAMEWORK, n.to_le_bytes().as_slice())
                            .map_err(|e| err(&e))?;
                    }
                    RegistryOp::SetMaintenance(state) => {
                        let bytes = postcard::to_allocvec(state).map_err(|e| err(&e))?;
                        maintenance
                            .insert(MAINTENANCE_KEY, bytes.as_slice())
                            .map_err(|e| err(&e))?;
                    }
                }
            }
        }
        txn.commit().map_err(|e| err(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{Attributes, Resources};

    /// A temporary directory removed on drop, even when the test fails.
    pub(crate) struct TempDir(pub PathBuf);

    impl TempDir {
        pub(crate) fn new(tag: &str) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "plateau-master-{tag}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn sample_ops() -> Vec<RegistryOp> {
        let info = SlaveInfo {
            hostname: "h1".into(),
            port: 5051,
            resources: Resources::parse("cpus:4;mem:1024;ports:[31000-32000]").unwrap(),
            attributes: Attributes::parse("rack:r1").unwrap(),
        };
        vec![
            RegistryOp::SetMasterRunId("run-1".into()),
            RegistryOp::AdmitSlave(RegisteredSlave {
                id: SlaveId::new("run-1-S0"),
                info: info.clone(),
                unreachable: false,
                pid: Some("slave(1)@h1:5051".parse().unwrap()),
            }),
            RegistryOp::AdmitSlave(RegisteredSlave {
                id: SlaveId::new("run-1-S1"),
                info,
                unreachable: false,
                pid: None,
            }),
            RegistryOp::MarkSlaveUnreachable(SlaveId::new("run-1-S1")),
            RegistryOp::PutFramework(RegisteredFramework {
                id: FrameworkId::new("run-1-0000"),
                info: FrameworkInfo {
                    failover_timeout_secs: 60.0,
                    ..FrameworkInfo::new("marathon")
                },
                pid: Some("marathon@h2:8080".parse().unwrap()),
            }),
            RegistryOp::PutFramework(RegisteredFramework {
                id: FrameworkId::new("run-1-0001"),
                info: FrameworkInfo::new("gone"),
                pid: None,
            }),
            RegistryOp::RemoveFramework(FrameworkId::new("run-1-0001")),
            RegistryOp::SetWeight {
                role: "apps".into(),
                weight: 2.5,
            },
            RegistryOp::SetNextSlaveNumber(2),
            RegistryOp::SetNextFrameworkNumber(2),
            RegistryOp::SetMaintenance(
                MaintenanceState::default()
                    .with_schedule(vec![crate::maintenance::Window {
                        machine_ids: vec![crate::maintenance::MachineId::new(
                            Some("h1"),
                            Some("10.0.0.1"),
                        )],
                        unavailability: crate::maintenance::Unavailability {
                            start_nanos: 5,
                            duration_nanos: None,
                        },
                    }])
                    .unwrap(),
            ),
        ]
    }

    fn expected() -> RegistryState {
        let mut state = RegistryState::default();
        for op in sample_ops() {
            state.apply(&op);
        }
        state
    }

    #[test]
    fn memory_registry_is_shared_between_clones() {
        let mut a = MemoryRegistry::new();
        let b = a.clone();
        a.apply(&sample_ops()).unwrap();
        let state = b.load().unwrap();
        assert_eq!(state, expected());
        assert!(state.slaves[&SlaveId::new("run-1-S1")].unreachable);
        assert!(!state.slaves[&SlaveId::new("run-1-S0")].unreachable);
        assert_eq!(state.frameworks.len(), 1);
    }

    #[test]
    fn redb_registry_survives_drop_and_reopen() {
        let dir = TempDir::new("registry-reopen");
        {
            let mut registry = RedbRegistry::open_in(&dir.0).unwrap();
            assert_eq!(registry.load().unwrap(), RegistryState::default());
            let ops = sample_ops();
            // Two batches, as the master writes them.
            registry.apply(&ops[..3]).unwrap();
            registry.apply(&ops[3..]).unwrap();
        }
        assert!(RedbRegistry::path_in(&dir.0).exists());
        let registry = RedbRegistry::open_in(&dir.0).unwrap();
        assert_eq!(registry.load().unwrap(), expected());
    }

    #[test]
    fn a_format_1_registry_is_migrated_with_unknown_pids() {
        let dir = TempDir::new("registry-migrate");
        let path = RedbRegistry::path_in(&dir.0);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let state = expected();
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut slaves = txn.open_table(SLAVES).unwrap();
                for s in state.slaves.values() {
                    let v1 = RegisteredSlaveV1 {
                        id: s.id.clone(),
                        info: s.info.clone(),
                        unreachable: s.unreachable,
                    };
                    slaves
                        .insert(
                            s.id.as_str(),
                            postcard::to_allocvec(&v1).unwrap().as_slice(),
                        )
                        .unwrap();
                }
                let mut frameworks = txn.open_table(FRAMEWORKS).unwrap();
                for f in state.frameworks.values() {
                    let v1 = RegisteredFrameworkV1 {
                        id: f.id.clone(),
                        info: f.info.clone(),
                    };
                    frameworks
                        .insert(
                            f.id.as_str(),
                            postcard::to_allocvec(&v1).unwrap().as_slice(),
                        )
                        .unwrap();
                }
                txn.open_table(WEIGHTS).unwrap();
                let mut meta = txn.open_table(META).unwrap();
                meta.insert(META_FORMAT, 1u64.to_le_bytes().as_slice())
                    .unwrap();
            }
            txn.commit().unwrap();
        }
        let registry = RedbRegistry::open_in(&dir.0).unwrap();
        let loaded = registry.load().unwrap();
        assert_eq!(loaded.slaves.len(), state.slaves.len());
        assert!(loaded.slaves.values().all(|s| s.pid.is_none()));
        assert_eq!(loaded.frameworks.len(), state.frameworks.len());
        assert!(loaded.frameworks.values().all(|f| f.pid.is_none()));
        assert_eq!(
            loaded.slaves.keys().collect::<Vec<_>>(),
            state.slaves.keys().collect::<Vec<_>>()
        );
        drop(registry);
        // Migrated once: it opens as the current format from now on.
        RedbRegistry::open_in(&dir.0).unwrap();
    }

    /// A write acknowledged by `apply` is on disk: a child process commits and then is killed
    /// with SIGKILL before it could do anything else; the parent reads everything back.
    #[test]
    fn redb_commit_survives_kill_9() {
        if let Ok(dir) = std::env::var("PLATEAU_REGISTRY_KILL_CHILD_DIR") {
            // Child: commit, say so, then wait to be killed.
            let mut registry = RedbRegistry::open_in(Path::new(&dir)).unwrap();
            registry.apply(&sample_ops()).unwrap();
            println!("COMMITTED");
            use std::io::Write;
            std::io::stdout().flush().unwrap();
            loop {
                std::thread::park();
            }
        }
        let dir = TempDir::new("registry-kill");
        let exe = std::env::current_exe().unwrap();
        let mut child = std::process::Command::new(exe)
            .args([
                "--exact",
                "registry::tests::redb_commit_survives_kill_9",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("PLATEAU_REGISTRY_KILL_CHILD_DIR", &dir.0)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Kill the child whatever happens below.
        struct Reap(std::process::Child);
        impl Drop for Reap {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let stdout = child.stdout.take().unwrap();
        let mut child = Reap(child);
        use std::io::BufRead;
        let mut committed = false;
        for line in std::io::BufReader::new(stdout).lines() {
            if line.unwrap().contains("COMMITTED") {
                committed = true;
                break;
            }
        }
        assert!(committed, "child never committed");
        child.0.kill().unwrap(); // SIGKILL
        child.0.wait().unwrap();
        let registry = RedbRegistry::open_in(&dir.0).unwrap();
        assert_eq!(registry.load().unwrap(), expected());
    }
}
