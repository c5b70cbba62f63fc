//! A simulated cluster: one master or a group of masters, N slaves and F frameworks, all real
//! process code, in one [`Sim`].
//!
//! Addresses: master `k` (from 0) is `master@10.0.0.<k+1>:5050`; slave `i` is `slave(1)@10.<a>.<b>.<c>:5051`
//! (`i + 1` spread over the last three bytes, `a` from 1), with the attribute `rack:r<k>`
//! (`k = i mod racks`, 25 slaves per rack, at least 2 racks); framework `j` is
//! `keeper@10.250.<j/256>.<j%256>:8080`; after the Keeper frameworks come, when asked for,
//! one real Marathon (`marathon@...:8080`, [`crate::marathon`]) and one real Chronos
//! (`chronos@...:4400`, [`crate::chronos`]), numbered on; with [`ClusterConfig::marathons`]
//! or [`ClusterConfig::chronoses`] above 1, that many instances of each, one node each, as
//! leader + standbys ([`crate::standbys`]).
//!
//! One master ([`ClusterConfig::masters`] = 1) runs alone on its registry. A group (3 or 5)
//! runs the real [`MasterProcess::replicated`] members of one replicated log, each on its own
//! [`MemoryDisk`], bootstrapped with the whole list on their first start and restarted
//! without it; slaves, Keepers, Marathon and Chronos are given the list and follow whichever
//! leads. "The master" of every check and report is then the master acting now
//! ([`Cluster::acting_master`]).
//!
//! Each node's disk lives here, outside its processes, so a crash (which drops the process
//! and everything in flight to it) followed by a restart recovers what was written:
//! a master's [`MemoryRegistry`] or [`MemoryDisk`], each slave's [`MemoryCheckpoint`] (and its [`SimMachine`],
//! whose tasks keep running while the slave is down, as real tasks do), each framework's
//! [`KeeperDisk`], Marathon's and Chronos' in-memory stores.
//!
//! The disk model is simple on purpose: every write is synced when it returns. The real
//! stores are redb files whose every commit is durable before it returns (the master's
//! registry and the slave's checkpoint both commit per change), so there is no write cache a
//! crash could cut short; a crash only loses what the process had not written yet.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use plateau_master::core::MasterCore;
use plateau_master::detector::Masters;
use plateau_master::registry::MemoryRegistry;
use plateau_master::replicated::MasterState;
use plateau_master::resources::{Attributes, Resources};
use plateau_master::{MasterConfig, MasterProcess};
use plateau_replica::storage::MemoryDisk;
use plateau_replica::{Replica, ReplicaConfig};
use plateau_runtime::sim::{NetworkFaults, Sim, SimConfig};
use plateau_runtime::{NodeAddr, Upid};
use plateau_sdk::SchedulerDriver;
use plateau_slave::checkpoint::MemoryCheckpoint;
use plateau_slave::containerizer::SimMachine;
use plateau_slave::health::{ProbeScript, ScriptedProber};
use plateau_slave::process::{MailboxSlot, SlaveEffects, SlaveProcessConfig};
use plateau_slave::{SlaveProcess, SLAVE_PROCESS_NAME};

use crate::chronos::{ChronosNodeConfig, ChronosWitness, CHRONOS_PROCESS_NAME};
use crate::error::SimError;
use crate::keeper::{AppSpec, Keeper, KeeperConfig, KeeperDisk, Workload};
use crate::limits::{
    APPS_MAX, CHRONOS_JOBS_MAX, FRAMEWORKS_MAX, INSTANCES_PER_APP_MAX, MARATHON_APPS_MAX,
    MASTERS_MAX, SLAVES_MAX, STANDBYS_MAX, STANDBY_ELECTION_WAIT_MS_MAX,
};
use crate::marathon::{MarathonNodeConfig, MARATHON_PROCESS_NAME};
use crate::masters::GroupWatch;
use crate::observe::{InjectedBug, Ledger, Observed, ObservedCheckpoint, ObservedContainerizer};
use crate::standbys::{StandbyKind, StandbyWatch};

/// Slaves per rack.
pub const SLAVES_PER_RACK: usize = 25;

/// Process name of a Keeper framework's scheduler.
pub const KEEPER_PROCESS_NAME: &str = "keeper";

/// What to build.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The run's seed.
    pub seed: u64,
    /// Number of slaves.
    pub slaves: usize,
    /// Number of Keeper frameworks.
    pub frameworks: usize,
    /// Apps over all frameworks (spread round robin).
    pub apps: usize,
    /// Instances of each app.
    pub instances: u32,
    /// Per-host limit of each app; None: `max(1, ceil(2 * instances / slaves))`.
    pub max_per_host: Option<u32>,
    /// Resources of each slave (Mesos text).
    pub slave_resources: String,
    /// Resources of each task: cpus, mem (MB), disk (MB); plus one port.
    pub task_cpus: f64,
    /// Memory of each task, MB.
    pub task_mem_mb: f64,
    /// Disk of each task, MB.
    pub task_disk_mb: f64,
    /// How tasks behave.
    pub workload: Workload,
    /// Network behaviour at start.
    pub network: NetworkFaults,
    /// A bug to inject (tests only).
    pub bug: Option<InjectedBug>,
    /// Apps of the real Marathon (0: no Marathon node).
    pub marathon_apps: usize,
    /// Jobs of the real Chronos (0: no Chronos node).
    pub chronos_jobs: usize,
    /// Masters: 1 runs a master alone (on its registry); more run a group on a replicated
    /// log.
    pub masters: usize,
    /// Instances of the real Marathon (when it has apps): 1 alone on its store; more as
    /// leader + standbys on the masters' coordination store (needs a group of masters).
    pub marathons: usize,
    /// Instances of the real Chronos (when it has jobs), as for [`ClusterConfig::marathons`].
    pub chronoses: usize,
}

impl ClusterConfig {
    /// A cluster of `slaves` slaves, `frameworks` frameworks and `apps` apps of `instances`
    /// each, with 16-cpu, 64 GB slaves, 0.1-cpu 64 MB tasks that run until killed, and a
    /// reliable network.
    pub fn new(seed: u64, slaves: usize, frameworks: usize, apps: usize, instances: u32) -> Self {
        ClusterConfig {
            seed,
            slaves,
            frameworks,
            apps,
            instances,
            max_per_host: None,
            slave_resources: "cpus:16;mem:65536;disk:200000;ports:[31000-32000]".to_string(),
            task_cpus: 0.1,
            task_mem_mb: 64.0,
            task_disk_mb: 10.0,
            workload: Workload::forever(),
            network: NetworkFaults::none(),
            bug: None,
            marathon_apps: 0,
            chronos_jobs: 0,
            masters: 1,
            marathons: 1,
            chronoses: 1,
        }
    }

    /// The per-host limit in force.
    pub fn per_host_limit(&self) -> u32 {
        self.max_per_host.unwrap_or_else(|| {
            let n = (2 * u64::from(self.instances)).div_ceil(self.slaves.max(1) as u64);
            n.max(1) as u32
        })
    }

    fn validate(&self) -> Result<(), SimError> {
        let bad = |what: String| Err(SimError::Config(what));
        if self.masters == 0 || self.masters > MASTERS_MAX {
            return bad(format!("masters must be 1..={MASTERS_MAX}"));
        }
        if self.slaves == 0 || self.slaves > SLAVES_MAX {
            return bad(format!("slaves must be 1..={SLAVES_MAX}"));
        }
        if self.frameworks > FRAMEWORKS_MAX {
            return bad(format!("frameworks must be at most {FRAMEWORKS_MAX}"));
        }
        if self.apps > APPS_MAX {
            return bad(format!("apps must be at most {APPS_MAX}"));
        }
        if self.apps > 0 && self.frameworks == 0 {
            return bad("apps need at least one framework".into());
        }
        if self.instances > INSTANCES_PER_APP_MAX {
            return bad(format!("instances must be at most {INSTANCES_PER_APP_MAX}"));
        }
        if self.marathon_apps > MARATHON_APPS_MAX {
            return bad(format!("marathon apps must be at most {MARATHON_APPS_MAX}"));
        }
        if self.chronos_jobs > CHRONOS_JOBS_MAX {
            return bad(format!("chronos jobs must be at most {CHRONOS_JOBS_MAX}"));
        }
        for (what, n) in [("marathons", self.marathons), ("chronoses", self.chronoses)] {
            if n == 0 || n > STANDBYS_MAX {
                return bad(format!("{what} must be 1..={STANDBYS_MAX}"));
            }
            if n > 1 && self.masters == 1 {
                return bad(format!(
                    "{what} > 1 needs a group of masters (--masters 3): standbys coordinate \
                     through the masters' replicated store"
                ));
            }
        }
        Ok(())
    }
}

/// A slave node and its disk.
#[derive(Debug)]
pub struct SlaveNode {
    /// Its address.
    pub addr: NodeAddr,
    /// Its slave process.
    pub upid: Upid,
    /// Its rack.
    pub rack: usize,
    /// What the machine really has.
    pub capacity: Resources,
    /// What the slave is configured with: the capacity, unless a bug is injected.
    pub configured: Resources,
    /// What the slave advertises: what it is configured with, unless a shrink fault lowered
    /// it (see [`Cluster::set_slave_resources`]).
    pub advertised: Resources,
    /// Its attributes.
    pub attributes: Attributes,
    /// The machine (tasks survive a slave crash).
    pub machine: SimMachine,
    /// Its checkpoint (disk).
    pub checkpoint: MemoryCheckpoint,
    /// Health verdicts (all healthy).
    pub probes: ProbeScript,
    /// True while its node is up.
    pub up: bool,
}

/// Which framework runs on a framework node (its spawn, restart and convergence check are the
/// places that match on it).
#[derive(Debug, Clone)]
pub enum FrameworkKind {
    /// A [`Keeper`] with its configuration.
    Keeper(KeeperConfig),
    /// The real Marathon, its apps and its store.
    Marathon(MarathonNodeConfig),
    /// The real Chronos, its jobs and its store.
    Chronos(ChronosNodeConfig),
}

/// A framework node and its disk.
#[derive(Debug)]
pub struct FrameworkNode {
    /// Which framework.
    pub kind: FrameworkKind,
    /// Its address.
    pub addr: NodeAddr,
    /// Its scheduler process.
    pub upid: Upid,
    /// Its disk, for a Keeper (Marathon's and Chronos' stores are in their [`FrameworkKind`]).
    pub disk: KeeperDisk,
    /// True while its node is up.
    pub up: bool,
}

/// A master node and its disk.
#[derive(Debug)]
pub struct MasterNode {
    /// Its address.
    pub addr: NodeAddr,
    /// The master process.
    pub upid: Upid,
    /// Its registry (disk), when it runs alone.
    pub registry: MemoryRegistry,
    /// Its replicated log's disk, when it is a member of a group.
    pub disk: MemoryDisk,
    /// Its configuration.
    pub config: MasterConfig,
    /// True while its node is up.
    pub up: bool,
    /// True while its node is paused (as by SIGSTOP).
    pub paused: bool,
    /// True once it started (a member of a group is bootstrapped on its first start only).
    pub started: bool,
}

/// A simulated cluster (see the [module docs](self)).
pub struct Cluster {
    /// The simulator.
    pub sim: Sim,
    /// What was built.
    pub config: ClusterConfig,
    /// The masters (one, or a group).
    pub masters: Vec<MasterNode>,
    /// The list slaves and frameworks are given.
    pub master_list: Masters,
    /// The per-event checks of a group of masters (None with one master).
    pub watch: Option<GroupWatch>,
    /// The slaves.
    pub slaves: Vec<SlaveNode>,
    /// The frameworks.
    pub frameworks: Vec<FrameworkNode>,
    /// What the observation points saw.
    pub ledger: Ledger,
    /// The exactly-once witness of Chronos tasks, when a Chronos node runs.
    pub chronos_witness: Option<ChronosWitness>,
    /// The checks of Marathon and Chronos as leader + standbys (None when each runs alone).
    pub standbys: Option<StandbyWatch>,
    racks: usize,
    /// What the masters that crashed counted (a restarted master counts from zero).
    retired_master_counts: MasterPathCounts,
}

/// The address of master `k` (from 0).
pub fn master_addr(k: usize) -> NodeAddr {
    NodeAddr::new(format!("10.0.0.{}", k + 1), 5050)
}

/// Counts of rare master paths over a run, across master restarts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MasterPathCounts {
    /// Slaves that re-registered over-committed (tasks using more than their resources).
    pub overcommitted_reregistrations: u64,
    /// Staging tasks dropped because their re-registering slave had no room left for them.
    pub staging_tasks_dropped: u64,
}

impl MasterPathCounts {
    /// What `core` counted so far.
    pub fn of(core: &MasterCore) -> Self {
        let counters = core.counters();
        MasterPathCounts {
            overcommitted_reregistrations: counters.slave_reregistrations_overcommitted,
            staging_tasks_dropped: counters.staging_tasks_dropped,
        }
    }

    /// Adds `other`'s counts.
    pub fn add(&mut self, other: MasterPathCounts) {
        self.overcommitted_reregistrations += other.overcommitted_reregistrations;
        self.staging_tasks_dropped += other.staging_tasks_dropped;
    }
}

/// The address of slave `i`.
pub fn slave_addr(i: usize) -> NodeAddr {
    let n = i + 1;
    NodeAddr::new(
        format!("10.{}.{}.{}", 1 + n / 65536, (n / 256) % 256, n % 256),
        5051,
    )
}

impl Cluster {
    /// Builds and starts the cluster (master, then slaves, then frameworks, all at time 0).
    pub fn new(config: ClusterConfig) -> Result<Self, SimError> {
        config.validate()?;
        let mut sim_config = SimConfig::new(config.seed);
        sim_config.faults = config.network.clone();
        // Linked processes learn that a connection broke when the real transport does: after
        // its idle timeout.
        sim_config.link_timeout = plateau_runtime::limits::IDLE_TIMEOUT;
        let mut sim = Sim::new(sim_config);
        let mut masters = Vec::with_capacity(config.masters);
        for k in 0..config.masters {
            let addr = master_addr(k);
            sim.add_node(addr.clone());
            debug_assert_eq!(
                sim.node_index(&addr),
                Some(k),
                "masters are the first nodes"
            );
            masters.push(MasterNode {
                upid: Upid::new("master", &addr),
                config: MasterConfig {
                    seed: config.seed,
                    hostname: addr.host.to_string(),
                    ..MasterConfig::default()
                },
                addr,
                registry: MemoryRegistry::new(),
                disk: MemoryDisk::new(),
                up: true,
                paused: false,
                started: false,
            });
        }
        let master_list = Masters::new(masters.iter().map(|m| m.upid.clone()).collect())
            .map_err(|e| SimError::Config(format!("masters: {e}")))?;
        let capacity = Resources::parse(&config.slave_resources)
            .map_err(|e| SimError::Config(format!("slave resources: {e}")))?;
        let racks = config.slaves.div_ceil(SLAVES_PER_RACK).max(2);
        let ledger = Ledger::new();
        let mut slaves = Vec::with_capacity(config.slaves);
        for i in 0..config.slaves {
            let addr = slave_addr(i);
            sim.add_node(addr.clone());
            let rack = i % racks;
            let attributes = Attributes::parse(&format!("rack:r{rack}"))
                .map_err(|e| SimError::Config(format!("attributes: {e}")))?;
            let advertised = if config.bug == Some(InjectedBug::SlaveOvercommit) && i == 0 {
                capacity.clone() + &capacity.scalars()
            } else {
                capacity.clone()
            };
            ledger.add_machine(i, capacity.clone(), advertised.clone());
            slaves.push(SlaveNode {
                upid: Upid::new(SLAVE_PROCESS_NAME, &addr),
                addr,
                rack,
                capacity: capacity.clone(),
                configured: advertised.clone(),
                advertised,
                attributes,
                machine: SimMachine::new(),
                checkpoint: MemoryCheckpoint::new(),
                probes: ProbeScript::new(true),
                up: true,
            });
        }
        let per_host = config.per_host_limit();
        let task_resources =
            Resources::new(config.task_cpus, config.task_mem_mb, config.task_disk_mb)
                .map_err(|e| SimError::Config(format!("task resources: {e}")))?;
        let mut apps_of: Vec<Vec<AppSpec>> = vec![Vec::new(); config.frameworks];
        for a in 0..config.apps {
            let j = a % config.frameworks;
            let id = format!("keeper{j}-app{}", apps_of[j].len());
            apps_of[j].push(AppSpec {
                id,
                instances: config.instances,
                max_per_host: per_host,
                resources: task_resources.clone(),
                ports: 1,
            });
        }
        let mut frameworks = Vec::with_capacity(config.frameworks);
        for (j, apps) in apps_of.into_iter().enumerate() {
            let addr = NodeAddr::new(format!("10.250.{}.{}", j / 256, j % 256), 8080);
            sim.add_node(addr.clone());
            frameworks.push(FrameworkNode {
                kind: FrameworkKind::Keeper(KeeperConfig {
                    name: format!("keeper{j}"),
                    apps,
                    workload: config.workload.clone(),
                    failover_timeout_secs: 7.0 * 24.0 * 3600.0,
                }),
                upid: Upid::new(KEEPER_PROCESS_NAME, &addr),
                addr,
                disk: KeeperDisk::new(),
                up: true,
            });
        }
        let mut standbys = StandbyWatch::default();
        let mut has_standbys = false;
        if config.marathon_apps > 0 {
            let apps = crate::marathon::draw_apps(
                config.seed,
                config.marathon_apps,
                config.slaves,
                racks,
                config.bug,
            );
            let instances = add_framework_instances(
                &mut sim,
                &mut frameworks,
                config.marathons,
                (MARATHON_PROCESS_NAME, 8080),
                || {
                    FrameworkKind::Marathon(MarathonNodeConfig {
                        name: "marathon".into(),
                        apps: apps.clone(),
                        store: plateau_marathon::store::MemoryStore::new(),
                        ha: config.marathons > 1,
                    })
                },
            );
            if config.marathons > 1 {
                standbys.add(StandbyKind::Marathon, instances);
                has_standbys = true;
            }
        }
        let mut chronos_witness = None;
        if config.chronos_jobs > 0 {
            let jobs =
                crate::chronos::draw_jobs(config.seed, config.chronos_jobs, sim.wall_clock());
            let instances = add_framework_instances(
                &mut sim,
                &mut frameworks,
                config.chronoses,
                (CHRONOS_PROCESS_NAME, 4400),
                || {
                    FrameworkKind::Chronos(ChronosNodeConfig {
                        name: "chronos".into(),
                        jobs: jobs.clone(),
                        store: plateau_chronos::store::MemoryStore::new(),
                        ha: config.chronoses > 1,
                    })
                },
            );
            if config.chronoses > 1 {
                standbys.add(StandbyKind::Chronos, instances);
                has_standbys = true;
            }
            let witness = ChronosWitness::new(ledger.clone());
            for (i, s) in slaves.iter().enumerate() {
                witness.add_machine(i, s.machine.clone());
            }
            chronos_witness = Some(witness);
        }
        let watch = (config.masters > 1).then(|| {
            ledger.track_registrations();
            let mut watch = GroupWatch::new(
                masters.iter().map(|m| m.upid.clone()).collect(),
                ledger.clone(),
            );
            for name in ["marathon", "chronos"] {
                watch.watch_election_key(&crate::standbys::election_key(name));
            }
            watch
        });
        let mut cluster = Cluster {
            sim,
            config,
            masters,
            master_list,
            watch,
            slaves,
            frameworks,
            ledger,
            chronos_witness,
            standbys: has_standbys.then_some(standbys),
            racks,
            retired_master_counts: MasterPathCounts::default(),
        };
        for k in 0..cluster.masters.len() {
            cluster.spawn_master(k)?;
        }
        for i in 0..cluster.slaves.len() {
            cluster.spawn_slave(i)?;
        }
        for j in 0..cluster.frameworks.len() {
            cluster.spawn_framework(j);
        }
        cluster.post_workloads();
        Ok(cluster)
    }

    fn spawn_master(&mut self, k: usize) -> Result<(), SimError> {
        let node = &self.masters[k];
        let process = if self.masters.len() == 1 {
            MasterProcess::new(node.config.clone(), Box::new(node.registry.clone()))
                .map_err(|e| SimError::Start(format!("master: {e}")))?
        } else {
            let mut replica = Replica::open(
                ReplicaConfig::new(node.upid.clone()),
                Box::new(node.disk.clone()),
                MasterState::default(),
                self.config.seed,
            )
            .map_err(|e| SimError::Start(format!("master {}: {e}", node.addr)))?;
            if !node.started {
                // First start: the group is new, every member is given the whole list.
                replica.bootstrap(self.master_list.as_slice());
            }
            MasterProcess::replicated(node.config.clone(), replica)
        };
        let addr = node.addr.clone();
        self.masters[k].started = true;
        self.sim.spawn(&addr, "master", process);
        if let Some(watch) = &mut self.watch {
            watch.restarted(k);
            watch.observe(&mut self.sim, k);
        }
        Ok(())
    }

    fn spawn_slave(&mut self, i: usize) -> Result<(), SimError> {
        let node = &self.slaves[i];
        let slot = MailboxSlot::new();
        let on_termination = match &self.chronos_witness {
            Some(w) => w.termination_callback(slot.termination_callback()),
            None => slot.termination_callback(),
        };
        let observed = ObservedContainerizer::new(
            node.machine.clone(),
            i,
            self.ledger.clone(),
            on_termination,
        );
        let containerizer: Box<dyn plateau_slave::containerizer::Containerizer> =
            match &self.chronos_witness {
                Some(w) => Box::new(w.containerizer(Box::new(observed), i)),
                None => Box::new(observed),
            };
        let prober = ScriptedProber::new(node.probes.clone(), slot.probe_callback());
        let checkpoint = ObservedCheckpoint::new(node.checkpoint.clone(), self.ledger.clone(), i);
        let config = SlaveProcessConfig {
            masters: self.master_list.clone(),
            work_dir: PathBuf::from(format!("/sim/{}", node.addr.host)),
            hostname: node.addr.host.to_string(),
            port: node.addr.port,
            resources: node.advertised.clone(),
            attributes: node.attributes.clone(),
        };
        let effects = SlaveEffects {
            containerizer,
            prober: Box::new(prober),
            checkpoint: Box::new(checkpoint),
        };
        let process = SlaveProcess::new(config, effects, slot)
            .map_err(|e| SimError::Start(format!("slave {}: {e}", node.addr)))?;
        let addr = node.addr.clone();
        self.sim.spawn(&addr, SLAVE_PROCESS_NAME, process);
        Ok(())
    }

    fn spawn_framework(&mut self, j: usize) {
        let node = &self.frameworks[j];
        match &node.kind {
            FrameworkKind::Keeper(config) => {
                let mut info = plateau_sdk::FrameworkInfo::new(&config.name);
                info.failover_timeout_secs = config.failover_timeout_secs;
                info.id = node.disk.snapshot().framework_id;
                let keeper = Keeper::new(config.clone(), node.disk.clone());
                let observed = Observed::new(keeper, self.ledger.clone(), self.config.bug);
                let driver =
                    SchedulerDriver::with_masters(info, self.master_list.clone(), observed);
                let addr = node.addr.clone();
                self.sim.spawn(&addr, KEEPER_PROCESS_NAME, driver);
            }
            FrameworkKind::Marathon(config) => {
                let process = crate::marathon::process(
                    config,
                    &node.addr.host,
                    &self.master_list,
                    &self.ledger,
                    self.config.bug,
                );
                let addr = node.addr.clone();
                self.sim.spawn(&addr, MARATHON_PROCESS_NAME, process);
            }
            FrameworkKind::Chronos(config) => {
                let process = crate::chronos::process(
                    config,
                    &node.addr.host,
                    &self.master_list,
                    &self.ledger,
                    self.config.bug,
                );
                let addr = node.addr.clone();
                self.sim.spawn(&addr, CHRONOS_PROCESS_NAME, process);
            }
        }
    }

    /// Posts Marathon's apps and Chronos' jobs through their APIs (once, at the start; they
    /// are on the frameworks' disks from then on) and records which were acknowledged.
    fn post_workloads(&mut self) {
        if self.standbys.is_some() {
            return self.post_workloads_to_leaders();
        }
        for j in 0..self.frameworks.len() {
            let upid = self.frameworks[j].upid.clone();
            let bug = self.config.bug;
            let mut kind = self.frameworks[j].kind.clone();
            match &mut kind {
                FrameworkKind::Keeper(_) => {}
                FrameworkKind::Marathon(config) => {
                    for app in &mut config.apps {
                        app.acknowledged =
                            crate::marathon::post_app(&mut self.sim, &upid, app, bug);
                    }
                }
                FrameworkKind::Chronos(config) => {
                    for job in &mut config.jobs {
                        job.acknowledged = crate::chronos::post_job(&mut self.sim, &upid, job);
                    }
                    if let Some(w) = &self.chronos_witness {
                        w.set_jobs(&config.jobs);
                    }
                }
            }
            self.frameworks[j].kind = kind;
        }
    }

    /// Posts Marathon's apps and Chronos' jobs to their leaders (leader + standbys): waits
    /// (simulated time, checked) for each framework's leader, posts, and waits for the
    /// answers, which come once the writes commit.
    fn post_workloads_to_leaders(&mut self) {
        let bug = self.config.bug;
        for kind in [StandbyKind::Marathon, StandbyKind::Chronos] {
            let members: Vec<usize> = (0..self.frameworks.len())
                .filter(|&j| self.standby_kind(j) == Some(kind))
                .collect();
            let Some(&first) = members.first() else {
                continue;
            };
            if members.len() == 1 {
                // Alone on its store: posted as before.
                let upid = self.frameworks[first].upid.clone();
                let mut node_kind = self.frameworks[first].kind.clone();
                match &mut node_kind {
                    FrameworkKind::Marathon(config) => {
                        for app in &mut config.apps {
                            app.acknowledged =
                                crate::marathon::post_app(&mut self.sim, &upid, app, bug);
                        }
                    }
                    FrameworkKind::Chronos(config) => {
                        for job in &mut config.jobs {
                            job.acknowledged = crate::chronos::post_job(&mut self.sim, &upid, job);
                        }
                        if let Some(w) = &self.chronos_witness {
                            w.set_jobs(&config.jobs);
                        }
                    }
                    FrameworkKind::Keeper(_) => {}
                }
                self.frameworks[first].kind = node_kind;
                continue;
            }
            let mut leader = None;
            for _ in 0..STANDBY_ELECTION_WAIT_MS_MAX / 10 {
                leader = self.acting_instance(first);
                if leader.is_some() {
                    break;
                }
                self.run_checked(Duration::from_millis(10));
            }
            let Some(leader) = leader else {
                // Nothing acknowledged: the convergence check asks nothing of it.
                continue;
            };
            let upid = self.frameworks[leader].upid.clone();
            let mut node_kind = self.frameworks[leader].kind.clone();
            match &mut node_kind {
                FrameworkKind::Marathon(config) => {
                    let mut answers: Vec<_> = config
                        .apps
                        .iter()
                        .map(|app| {
                            crate::marathon::post_app_to_leader(&mut self.sim, &upid, app, bug)
                        })
                        .collect();
                    let mut statuses = vec![None; answers.len()];
                    for _ in 0..STANDBY_ELECTION_WAIT_MS_MAX / 10 {
                        for (answer, status) in answers.iter_mut().zip(statuses.iter_mut()) {
                            if status.is_none() {
                                match answer {
                                    Some(a) => *status = a.try_take().map(|r| r.status),
                                    None => *status = Some(503),
                                }
                            }
                        }
                        if statuses.iter().all(Option::is_some) {
                            break;
                        }
                        self.run_checked(Duration::from_millis(10));
                    }
                    for (app, status) in config.apps.iter_mut().zip(statuses) {
                        app.acknowledged = status == Some(201);
                    }
                }
                FrameworkKind::Chronos(config) => {
                    let slots: Vec<_> = config
                        .jobs
                        .iter()
                        .map(|job| crate::chronos::post_job_to_leader(&mut self.sim, &upid, job))
                        .collect();
                    let answered =
                        |slots: &[Option<std::sync::Arc<std::sync::Mutex<Option<bool>>>>]| {
                            slots.iter().all(|s| {
                                s.as_ref()
                                    .is_none_or(|s| s.lock().expect("answer slot").is_some())
                            })
                        };
                    for _ in 0..STANDBY_ELECTION_WAIT_MS_MAX / 10 {
                        if answered(&slots) {
                            break;
                        }
                        self.run_checked(Duration::from_millis(10));
                    }
                    for (job, slot) in config.jobs.iter_mut().zip(&slots) {
                        job.acknowledged = slot
                            .as_ref()
                            .is_some_and(|s| *s.lock().expect("answer slot") == Some(true));
                    }
                    if let Some(w) = &self.chronos_witness {
                        w.set_jobs(&config.jobs);
                    }
                }
                FrameworkKind::Keeper(_) => {}
            }
            // Every instance carries what was acknowledged (the convergence check reads it).
            for &j in &members {
                self.frameworks[j].kind = node_kind.clone();
            }
        }
    }

    /// Whether framework node `j` is an instance of Marathon or Chronos.
    fn standby_kind(&self, j: usize) -> Option<StandbyKind> {
        match &self.frameworks[j].kind {
            FrameworkKind::Marathon(_) => Some(StandbyKind::Marathon),
            FrameworkKind::Chronos(_) => Some(StandbyKind::Chronos),
            FrameworkKind::Keeper(_) => None,
        }
    }

    /// The instance acting now of the framework that node `j` runs, when it runs as leader
    /// + standbys (None: none acts, or `j` runs alone).
    pub fn acting_instance(&mut self, j: usize) -> Option<usize> {
        let kind = self.standby_kind(j)?;
        let watch = self.standbys.as_ref()?;
        let acting = watch.acting(&mut self.sim, kind);
        let members: Vec<usize> = (0..self.frameworks.len())
            .filter(|&i| self.standby_kind(i) == Some(kind))
            .collect();
        acting.first().map(|&i| members[i])
    }

    // ---- queries ----

    /// Number of slaves.
    pub fn slave_count(&self) -> usize {
        self.slaves.len()
    }

    /// Number of frameworks.
    pub fn framework_count(&self) -> usize {
        self.frameworks.len()
    }

    /// Number of racks.
    pub fn rack_count(&self) -> usize {
        self.racks
    }

    /// Host of slave `i`.
    pub fn slave_host(&self, i: usize) -> &str {
        &self.slaves[i].addr.host
    }

    /// Name of framework `j`.
    pub fn framework_name(&self, j: usize) -> String {
        match &self.frameworks[j].kind {
            FrameworkKind::Keeper(c) => c.name.clone(),
            FrameworkKind::Marathon(c) => c.name.clone(),
            FrameworkKind::Chronos(c) => c.name.clone(),
        }
    }

    /// Host of framework `j`'s node.
    pub fn framework_host(&self, j: usize) -> &str {
        &self.frameworks[j].addr.host
    }

    /// Name of framework `j`, with its host when it is one of several instances.
    pub fn framework_label(&self, j: usize) -> String {
        let several = match &self.frameworks[j].kind {
            FrameworkKind::Marathon(c) => c.ha,
            FrameworkKind::Chronos(c) => c.ha,
            FrameworkKind::Keeper(_) => false,
        };
        if several {
            format!("{} {}", self.framework_name(j), self.framework_host(j))
        } else {
            self.framework_name(j)
        }
    }

    /// True while slave `i` is up.
    pub fn is_slave_up(&self, i: usize) -> bool {
        self.slaves[i].up
    }

    /// Number of masters.
    pub fn master_count(&self) -> usize {
        self.masters.len()
    }

    /// True while master `k` is up (paused or not).
    pub fn is_master_up(&self, k: usize) -> bool {
        self.masters[k].up
    }

    /// Host of master `k`.
    pub fn master_host(&self, k: usize) -> &str {
        &self.masters[k].addr.host
    }

    /// The master acting now, if any: a master alone while it runs its core; in a group, the
    /// one that runs a core and holds its lease ([`MasterProcess::acts_at`]; the first found,
    /// though the checks make sure there is at most one).
    pub fn acting_master(&mut self) -> Option<usize> {
        if self.masters.len() == 1 {
            let upid = self.masters[0].upid.clone();
            return self
                .sim
                .inspect(&upid, |m: &MasterProcess| m.try_core().is_some())
                .unwrap_or(false)
                .then_some(0);
        }
        let now = self.sim.now().since_origin();
        (0..self.masters.len()).find(|&k| {
            let upid = self.masters[k].upid.clone();
            self.sim
                .inspect(&upid, |m: &MasterProcess| m.acts_at(now))
                .unwrap_or(false)
        })
    }

    /// True while framework `j` is up.
    pub fn is_framework_up(&self, j: usize) -> bool {
        self.frameworks[j].up
    }

    /// Runs `f` on the core of the master acting now ([`Cluster::acting_master`]), if one
    /// does.
    pub fn with_master<R>(&mut self, f: impl FnOnce(&MasterCore) -> R) -> Option<R> {
        let k = self.acting_master()?;
        self.with_master_core(k, f)
    }

    /// Runs `f` on master `k`'s core, if it runs one.
    pub fn with_master_core<R>(&mut self, k: usize, f: impl FnOnce(&MasterCore) -> R) -> Option<R> {
        let upid = self.masters[k].upid.clone();
        self.sim
            .inspect(&upid, |m: &MasterProcess| m.try_core().map(f))
            .flatten()
    }

    /// Rare master paths taken so far, by every master of the run (the running one included;
    /// in a group, every core the harness saw run).
    pub fn master_path_counts(&mut self) -> MasterPathCounts {
        if let Some(watch) = &mut self.watch {
            watch.observe_all(&mut self.sim);
            return watch.path_counts();
        }
        let mut counts = self.retired_master_counts;
        if let Some(now) = self.with_master(MasterPathCounts::of) {
            counts.add(now);
        }
        counts
    }

    /// Runs `f` on slave `i`'s process, if it is up.
    pub fn with_slave<R>(&mut self, i: usize, f: impl FnOnce(&SlaveProcess) -> R) -> Option<R> {
        let upid = self.slaves[i].upid.clone();
        self.sim.inspect(&upid, f)
    }

    /// Runs `f` on framework `j`'s Keeper, if it is up.
    pub fn with_keeper<R>(&mut self, j: usize, f: impl FnOnce(&Keeper) -> R) -> Option<R> {
        let upid = self.frameworks[j].upid.clone();
        self.sim
            .inspect(&upid, |d: &SchedulerDriver<Observed<Keeper>>| {
                f(d.scheduler().inner())
            })
    }

    // ---- faults ----

    /// Crashes slave `i`'s node (its tasks keep running on the machine).
    pub fn crash_slave(&mut self, i: usize) {
        self.sim.crash(&self.slaves[i].addr);
        self.slaves[i].up = false;
    }

    /// Restarts slave `i` from its checkpoint.
    pub fn restart_slave(&mut self, i: usize) {
        self.sim.restart(&self.slaves[i].addr);
        self.slaves[i].up = true;
        self.spawn_slave(i)
            .expect("a slave that started once restarts");
    }

    /// Sets what slave `i` advertises from its next start on (an operator changing its
    /// `--resources`; the machine keeps its capacity). Restart it for the change to apply.
    pub fn set_slave_resources(&mut self, i: usize, advertised: Resources) {
        self.ledger.set_advertised(i, advertised.clone());
        self.slaves[i].advertised = advertised;
    }

    /// Crashes master `k`'s node (paused or not).
    pub fn crash_master(&mut self, k: usize) {
        match &mut self.watch {
            Some(watch) => watch.crashed(k),
            None => {
                if let Some(counts) = self.with_master_core(k, MasterPathCounts::of) {
                    self.retired_master_counts.add(counts);
                }
            }
        }
        self.sim.crash(&self.masters[k].addr);
        self.masters[k].up = false;
        self.masters[k].paused = false;
    }

    /// Restarts master `k` from its disk (a member of a group without the bootstrap list).
    /// With [`InjectedBug::MasterDiskNotDurable`], from an empty disk, as on its first start.
    pub fn restart_master(&mut self, k: usize) {
        if self.config.bug == Some(InjectedBug::MasterDiskNotDurable) {
            self.masters[k].disk = MemoryDisk::new();
            self.masters[k].registry = MemoryRegistry::new();
            self.masters[k].started = false;
        }
        self.sim.restart(&self.masters[k].addr);
        self.masters[k].up = true;
        self.spawn_master(k)
            .expect("the in-memory registry or log always loads");
    }

    /// Pauses master `k`'s node (as SIGSTOP): it keeps its state and handles nothing until
    /// [`Cluster::resume_master`].
    pub fn pause_master(&mut self, k: usize) {
        self.sim.pause(&self.masters[k].addr);
        self.masters[k].paused = true;
    }

    /// Resumes a paused master `k`: what waited for it is handled now.
    pub fn resume_master(&mut self, k: usize) {
        self.sim.resume(&self.masters[k].addr);
        self.masters[k].paused = false;
    }

    /// True while master `k` is paused.
    pub fn is_master_paused(&self, k: usize) -> bool {
        self.masters[k].paused
    }

    /// Runs the simulation for `limit` (simulated time) with the per-event checks of a group
    /// of masters, stopping at the first violation recorded in the ledger. True when none was.
    pub fn run_checked(&mut self, limit: std::time::Duration) -> bool {
        let ledger = self.ledger.clone();
        let watch = &mut self.watch;
        let standbys = &mut self.standbys;
        self.sim.run_until_condition(limit, |sim| {
            if let Some(watch) = watch {
                watch.after_event(sim);
            }
            if let Some(standbys) = standbys {
                standbys.after_event(sim, &ledger);
            }
            ledger.violation_count() > 0
        });
        ledger.violation_count() == 0
    }

    /// Checks the group of masters now (after a change made from outside the event loop);
    /// nothing with one master.
    pub fn observe_masters(&mut self) {
        if let Some(watch) = &mut self.watch {
            watch.observe_all(&mut self.sim);
        }
    }

    /// Crashes framework `j`'s node.
    pub fn crash_framework(&mut self, j: usize) {
        self.sim.crash(&self.frameworks[j].addr);
        self.frameworks[j].up = false;
    }

    /// Restarts framework `j` from its disk.
    pub fn restart_framework(&mut self, j: usize) {
        self.sim.restart(&self.frameworks[j].addr);
        self.frameworks[j].up = true;
        self.spawn_framework(j);
    }

    /// Cuts slave `i` from every master, both ways.
    pub fn partition_slave(&mut self, i: usize) {
        let a = self.slaves[i].addr.clone();
        for k in 0..self.masters.len() {
            let b = self.masters[k].addr.clone();
            self.sim.partition(&a, &b);
        }
    }

    /// Cuts framework `j` from every master, both ways.
    pub fn partition_framework(&mut self, j: usize) {
        let a = self.frameworks[j].addr.clone();
        for k in 0..self.masters.len() {
            let b = self.masters[k].addr.clone();
            self.sim.partition(&a, &b);
        }
    }

    /// Cuts every slave of `rack` from every master; returns how many.
    pub fn partition_rack(&mut self, rack: usize) -> usize {
        let members: Vec<usize> = (0..self.slaves.len())
            .filter(|i| self.slaves[*i].rack == rack)
            .collect();
        for i in &members {
            self.partition_slave(*i);
        }
        members.len()
    }

    /// Cuts master `k` from every other node.
    pub fn isolate_master(&mut self, k: usize) {
        let addr = self.masters[k].addr.clone();
        self.sim.isolate(&addr);
    }

    /// Heals the cuts between master `k` and every other node (other cuts stay).
    pub fn heal_master(&mut self, k: usize) {
        let addr = self.masters[k].addr.clone();
        let others: Vec<NodeAddr> = self.sim.nodes().filter(|n| **n != addr).cloned().collect();
        for other in &others {
            self.sim.heal_one_way(&addr, other);
            self.sim.heal_one_way(other, &addr);
        }
    }

    /// Cuts master `k` from the other masters, both ways (slaves and frameworks still reach
    /// it, and it them).
    pub fn partition_from_masters(&mut self, k: usize) {
        let a = self.masters[k].addr.clone();
        for other in 0..self.masters.len() {
            if other != k {
                let b = self.masters[other].addr.clone();
                self.sim.partition(&a, &b);
            }
        }
    }

    /// Heals the cuts between master `k` and the other masters.
    pub fn heal_from_masters(&mut self, k: usize) {
        let a = self.masters[k].addr.clone();
        for other in 0..self.masters.len() {
            if other != k {
                let b = self.masters[other].addr.clone();
                self.sim.heal_one_way(&a, &b);
                self.sim.heal_one_way(&b, &a);
            }
        }
    }

    /// Cuts one direction between slave `i` and every master.
    pub fn cut_one_way(&mut self, i: usize, slave_to_master: bool) {
        let s = self.slaves[i].addr.clone();
        for k in 0..self.masters.len() {
            let m = self.masters[k].addr.clone();
            if slave_to_master {
                self.sim.cut_one_way(&s, &m);
            } else {
                self.sim.cut_one_way(&m, &s);
            }
        }
    }

    /// Heals every cut.
    pub fn heal(&mut self) {
        self.sim.heal();
    }

    /// From now on, every framework launches tasks with `workload` (and keeps it across
    /// restarts).
    pub fn set_workload(&mut self, workload: &crate::keeper::Workload) {
        for j in 0..self.frameworks.len() {
            match &mut self.frameworks[j].kind {
                FrameworkKind::Keeper(config) => config.workload = workload.clone(),
                // Marathon's apps run until killed; Chronos' jobs keep their drawn commands.
                FrameworkKind::Marathon(_) | FrameworkKind::Chronos(_) => continue,
            }
            let upid = self.frameworks[j].upid.clone();
            self.sim
                .call(&upid, |d: &mut SchedulerDriver<Observed<Keeper>>, ctx| {
                    let (s, _) = d.scheduler_and_driver(ctx);
                    s.inner_mut().set_workload(workload.clone())
                });
        }
    }

    /// The tasks of Keeper apps no longer end by themselves (nor get OOM-killed): they run
    /// until killed. With [`Cluster::set_workload`] to [`Workload::forever`](crate::keeper::Workload::forever),
    /// the end of the faults for the Keepers' tasks. Returns how many tasks changed.
    pub fn keeper_tasks_run_until_killed(&mut self) -> usize {
        let apps: BTreeSet<String> = self
            .frameworks
            .iter()
            .filter_map(|f| match &f.kind {
                FrameworkKind::Keeper(config) => Some(config.apps.iter().map(|a| a.id.clone())),
                FrameworkKind::Marathon(_) | FrameworkKind::Chronos(_) => None,
            })
            .flatten()
            .collect();
        self.slaves
            .iter()
            .map(|s| {
                s.machine
                    .run_until_killed(|id| apps.contains(crate::observe::app_of(id)))
            })
            .sum()
    }

    /// Restarts every node that is down and resumes every paused master.
    pub fn restart_all(&mut self) {
        for k in 0..self.masters.len() {
            if self.masters[k].paused {
                self.resume_master(k);
            }
            if !self.masters[k].up {
                self.restart_master(k);
            }
        }
        for i in 0..self.slaves.len() {
            if !self.slaves[i].up {
                self.restart_slave(i);
            }
        }
        for j in 0..self.frameworks.len() {
            if !self.frameworks[j].up {
                self.restart_framework(j);
            }
        }
    }
}

/// Adds `count` instances of a framework (Marathon or Chronos) on nodes of their own, after
/// the framework nodes already there: their (node index, upid), for the standby watch.
fn add_framework_instances(
    sim: &mut Sim,
    frameworks: &mut Vec<FrameworkNode>,
    count: usize,
    (process, port): (&str, u16),
    kind: impl Fn() -> FrameworkKind,
) -> Vec<(usize, Upid)> {
    let mut instances = Vec::new();
    for _ in 0..count {
        let j = frameworks.len();
        let addr = NodeAddr::new(format!("10.250.{}.{}", j / 256, j % 256), port);
        sim.add_node(addr.clone());
        let upid = Upid::new(process, &addr);
        instances.push((sim.node_index(&addr).expect("just added"), upid.clone()));
        frameworks.push(FrameworkNode {
            kind: kind(),
            upid,
            addr,
            disk: KeeperDisk::new(),
            up: true,
        });
    }
    instances
}
