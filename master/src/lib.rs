//! Plateau master: registries of slaves, frameworks and tasks, the DRF allocator and resource offers.
//!
//! # What is here
//!
//! - [`resources`]: the resource model shared by master, slaves and frameworks — fixed-point
//!   scalars (cpus, mem, disk) and port ranges, the Mesos text format, slave attributes.
//! - [`ids`]: newtype ids for slaves, frameworks, offers and tasks.
//! - [`allocator`]: the hierarchical DRF allocator that turns free resources into offers.
//! - [`bench`](mod@bench): the allocator benchmark, with a JSON-serializable report for the CLI.
//! - [`core`]: the master as a pure core — slaves, frameworks, tasks, offers, the protocol.
//! - [`maintenance`]: maintenance primitives — the schedule of unavailability windows and each
//!   machine's mode (UP, DRAINING, DOWN), validated as Mesos does (pure).
//! - [`registry`]: the durable registry (redb on disk, or in memory) behind one trait.
//! - [`replicated`]: what a group of masters replicates through its log (the registry).
//! - [`process`]: [`MasterProcess`], the runtime process that drives the core.
//! - [`coord`]: the coordination store frameworks use instead of ZooKeeper (keys with
//!   compare-and-set, leases, watches, fencing epochs) — pure parts, for the replicated log.
//! - [`http`]: `/master/state`, `/metrics/snapshot`, `/metrics`, `/health`, `/version`.
//! - [`messages`]: the wire protocol between master, slaves and frameworks.
//! - [`detector`]: [`detector::MasterDetector`], with which slaves and frameworks find and
//!   follow the leading master of a group (pure).
//! - [`limits`]: named maxima; [`error`]: the crate's error type.
//!
//! # Pure and impure
//!
//! `resources`, `ids` and `allocator` are pure cores: no I/O, no clock (time comes in as a
//! `now: Duration` argument), no global randomness (the allocator's slave order comes from a
//! seed in its config). Same inputs, same outputs — the simulator relies on it. Only
//! [`bench`](mod@bench) reads the wall clock, to measure. `core` is pure too; [`process`] does
//! its I/O through the runtime's context and the [`registry::Registry`] trait, [`http`] serves
//! JSON from it. [`start`] opens the redb registry and spawns the master on a node.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use plateau_master::allocator::{Allocator, AllocatorConfig};
//! use plateau_master::ids::{FrameworkId, SlaveId};
//! use plateau_master::resources::Resources;
//!
//! let mut allocator = Allocator::new(AllocatorConfig::default());
//! for i in 0..4 {
//!     let total = Resources::parse("cpus:8;mem:16384;disk:100000;ports:[31000-32000]")?;
//!     allocator.add_slave(SlaveId::new(format!("S{i}")), total, vec![])?;
//! }
//! allocator.add_framework(FrameworkId::new("marathon"), "apps")?;
//! allocator.add_framework(FrameworkId::new("chronos"), "jobs")?;
//!
//! // Four slaves, two roles of equal weight: DRF gives each framework two slaves.
//! let offers = allocator.allocate(Duration::ZERO);
//! assert_eq!(offers.len(), 4);
//! let to_marathon = offers.iter().filter(|o| o.framework.as_str() == "marathon").count();
//! assert_eq!(to_marathon, 2);
//! # Ok::<(), plateau_master::MasterError>(())
//! ```
#![deny(missing_docs)]

pub mod allocator;
pub mod bench;
pub mod coord;
pub mod core;
pub mod detector;
pub mod error;
pub mod http;
pub mod ids;
pub mod limits;
pub mod maintenance;
pub mod messages;
pub mod process;
pub mod registry;
pub mod replicated;
pub mod resources;
pub mod ui;

pub use error::MasterError;

pub use crate::core::MasterConfig;
pub use process::MasterProcess;

use std::path::Path;

use plateau_runtime::{Node, ProcessRef};

/// Opens the redb registry at `<work_dir>/master/registry.redb` (creating it if needed) and
/// spawns the master as process `master` on `node`. Must be called on the node's actix system
/// thread.
pub async fn start(
    node: &Node,
    config: MasterConfig,
    work_dir: &Path,
) -> Result<ProcessRef<MasterProcess>, MasterError> {
    let registry = registry::RedbRegistry::open_in(work_dir)?;
    let process = MasterProcess::new(config, Box::new(registry))?;
    node.spawn("master", process)
        .map_err(|e| MasterError::Start {
            message: e.to_string(),
        })
}

/// How a master takes part in a group of masters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMembership {
    /// The group's masters (`master@host:port`), this one included unless it joins.
    pub peers: Vec<plateau_runtime::Upid>,
    /// True to ask the running group to add this master, instead of forming a new group.
    pub join: bool,
}

/// Opens the replicated log at `<work_dir>/master/replica.redb` and spawns a member of a group
/// of masters as process `master` on `node`. A new group forms from `peers` (every member
/// given the same list); a master with `join` asks the running group to add it. Must be
/// called on the node's actix system thread.
pub async fn start_group(
    node: &Node,
    config: MasterConfig,
    work_dir: &Path,
    group: GroupMembership,
) -> Result<ProcessRef<MasterProcess>, MasterError> {
    let me = node.upid("master");
    if !group.join && !group.peers.contains(&me) {
        return Err(MasterError::Start {
            message: format!("--peers must name this master ({me}) unless it joins with --join"),
        });
    }
    let disk =
        plateau_replica::storage::RedbDisk::open(&work_dir.join("master").join("replica.redb"))
            .map_err(|e| MasterError::Start {
                message: e.to_string(),
            })?;
    let mut replica = plateau_replica::Replica::open(
        plateau_replica::ReplicaConfig::new(me),
        Box::new(disk),
        replicated::MasterState::default(),
        config.seed,
    )
    .map_err(|e| MasterError::Start {
        message: e.to_string(),
    })?;
    let process = if group.join {
        MasterProcess::replicated(config, replica).joining(group.peers)
    } else {
        replica.bootstrap(&group.peers);
        MasterProcess::replicated(config, replica)
    };
    node.spawn("master", process)
        .map_err(|e| MasterError::Start {
            message: e.to_string(),
        })
}
