//! Plateau slave: runs tasks as real processes under cgroups and reports their status reliably.
//!
//! The slave registers with the master (`master@HOST:PORT`; of a group of masters, the one that
//! leads, found and followed by [`plateau_master::detector::MasterDetector`]), heartbeats, launches
//! the tasks the master sends it, reports every change of their state as a status update that it
//! retries until the framework acknowledges it, runs their health checks, and survives its own
//! restart (even `kill -9`): its tasks keep running and it re-registers with them.
//!
//! - [`core`]: pure — registration state machine, heartbeat schedule, task books, the status
//!   update manager, health-check bookkeeping. Time comes in as `now`.
//! - [`process`]: [`process::SlaveProcess`], the process (`slave(1)`) driving the core; its
//!   side effects go through three traits: [`containerizer::Containerizer`],
//!   [`health::HealthProber`], [`checkpoint::CheckpointStore`].
//! - [`containerizer`]: the real cgroups containerizer (one supervisor process per task) and a
//!   simulated one; [`health`]: real and scripted health probes; [`checkpoint`]: redb and
//!   in-memory checkpoints.
//! - [`host`]: resource discovery; [`http`]: `/state`, `/monitor/statistics`, `/files/read`,
//!   `/metrics`, `/health`; [`sandbox`]: safe sandbox file reads; [`user`]: the users tasks run
//!   as; [`limits`]: named maxima.
//!
//! Starting a real slave (inside an actix system, with a started [`plateau_runtime::Node`]):
//!
//! ```no_run
//! # fn demo(node: &plateau_runtime::Node) -> Result<(), plateau_slave::SlaveError> {
//! use plateau_slave::{start, SlaveConfig};
//! use plateau_master::detector::Masters;
//! let masters = Masters::parse("10.0.0.1:5050,10.0.0.2:5050,10.0.0.3:5050").unwrap();
//! let supervisor = std::env::current_exe().unwrap();
//! let mut config = SlaveConfig::new(masters, "/var/lib/plateau", supervisor);
//! config.supervisor_args = vec!["supervise".into()];
//! config.resources = Some("cpus:4;mem:8192;disk:20000;ports:[31000-32000]".into());
//! let slave = start(node, config)?;
//! // actix_web::App::new().configure(|cfg| plateau_slave::http::configure(cfg, slave.clone()))
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod checkpoint;
pub mod containerizer;
pub mod core;
pub mod error;
pub mod health;
pub mod host;
pub mod http;
pub mod limits;
pub mod process;
pub mod sandbox;
pub mod user;

use std::ffi::OsString;
use std::path::PathBuf;

use plateau_master::detector::Masters;
use plateau_master::resources::{Attributes, Resources};
use plateau_runtime::{Node, ProcessRef};

pub use error::SlaveError;
pub use process::{SlaveProcess, SLAVE_PROCESS_NAME};

use checkpoint::RedbCheckpoint;
use containerizer::{CgroupsContainerizer, CgroupsContainerizerConfig};
use health::ThreadProber;
use process::{MailboxSlot, SlaveEffects, SlaveProcessConfig};

/// How to start a real slave.
#[derive(Debug, Clone)]
pub struct SlaveConfig {
    /// The masters (`master@HOST:PORT` each); the slave follows the one that leads.
    pub masters: Masters,
    /// The work directory: checkpoint (`slave/checkpoint.redb`), supervisor run directories
    /// (`slave/run`), sandboxes (`slaves/...`).
    pub work_dir: PathBuf,
    /// `--resources` (Mesos text, `cpus:4;mem:8192;...`); None: discovered from the host.
    pub resources: Option<String>,
    /// `--attributes` (`rack:r1;zone:a`).
    pub attributes: Option<String>,
    /// The hostname given to the master and tasks; None: the node's listen address.
    pub hostname: Option<String>,
    /// What the host keeps for itself when resources are discovered.
    pub reserve: host::Reserve,
    /// The program running the task supervisor (`plateau` itself, or `plateau-supervisor`).
    pub supervisor_program: PathBuf,
    /// Its leading arguments (`["supervise"]` for `plateau supervise`).
    pub supervisor_args: Vec<OsString>,
    /// First component of task cgroups (default `plateau`).
    pub cgroup_root: String,
    /// The slave's cgroup namespace under the root; None: derived from the work directory, so
    /// that it is stable across restarts and distinct for two slaves of one host.
    pub cgroup_slave_name: Option<String>,
    /// `--default-task-user`: the user of tasks that name none (neither their command nor their
    /// framework); default [`user::DEFAULT_TASK_USER`] (`nobody`).
    pub default_task_user: String,
}

impl SlaveConfig {
    /// A configuration with defaults: discovered resources, no attributes, the node's host.
    /// `masters` is one master (a `Upid`) or a [`Masters`] list.
    pub fn new(
        masters: impl Into<Masters>,
        work_dir: impl Into<PathBuf>,
        supervisor_program: impl Into<PathBuf>,
    ) -> Self {
        SlaveConfig {
            masters: masters.into(),
            work_dir: work_dir.into(),
            resources: None,
            attributes: None,
            hostname: None,
            reserve: host::Reserve::default(),
            supervisor_program: supervisor_program.into(),
            supervisor_args: Vec::new(),
            cgroup_root: "plateau".to_string(),
            cgroup_slave_name: None,
            default_task_user: user::DEFAULT_TASK_USER.to_string(),
        }
    }
}

/// The cgroup name a slave uses for `work_dir` when none is configured: stable across restarts,
/// distinct for two slaves of one host. (`work_dir` as given; `start` canonicalizes it first.)
pub fn cgroup_slave_name(work_dir: &std::path::Path) -> String {
    let canonical = std::fs::canonicalize(work_dir).unwrap_or_else(|_| work_dir.to_path_buf());
    work_dir_name(&canonical)
}

/// Removes the (empty, once its tasks are destroyed) cgroup folders of the slave of `work_dir`
/// under the default root (`/sys/fs/cgroup/<controller>/plateau/<name>`), so that a cluster
/// started for a while (`plateau dev`, a benchmark) leaves nothing behind. Call it before
/// removing `work_dir`. Folders that still hold tasks are left alone (rmdir fails).
pub fn remove_slave_cgroups(work_dir: &std::path::Path) {
    let name = cgroup_slave_name(work_dir);
    if let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") {
        for controller in controllers.flatten() {
            let _ = std::fs::remove_dir(controller.path().join("plateau").join(&name));
        }
    }
}

/// Kills whatever still runs in the task cgroups of the slave of `work_dir` and removes those
/// cgroups and the slave's own folders: for a test or benchmark that started slaves as separate
/// processes and must leave nothing behind, whatever state they were left in.
pub fn destroy_leftover_tasks(work_dir: &std::path::Path) {
    let name = cgroup_slave_name(work_dir);
    for controller in ["freezer", "pids", "memory", "cpu", "cpuacct"] {
        let root = std::path::Path::new("/sys/fs/cgroup")
            .join(controller)
            .join("plateau")
            .join(&name);
        let Ok(tasks) = std::fs::read_dir(&root) else {
            continue;
        };
        for task in tasks.flatten().filter(|e| e.path().is_dir()) {
            if let Ok(procs) = std::fs::read_to_string(task.path().join("cgroup.procs")) {
                for pid in procs.lines().filter_map(|l| l.parse::<i32>().ok()) {
                    // SAFETY: a plain kill(2) of a process left in a task cgroup of ours.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
            // The kernel needs a moment to reap what was killed before the folder can go.
            for _ in 0..50 {
                if std::fs::remove_dir(task.path()).is_ok() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        let _ = std::fs::remove_dir(&root);
    }
    remove_slave_cgroups(work_dir);
}

/// A stable, path-safe name for a work directory.
fn work_dir_name(work_dir: &std::path::Path) -> String {
    let hash = plateau_runtime::rng::stable_hash(work_dir.to_string_lossy().as_bytes());
    format!("slave-{hash:016x}")
}

/// Parses the resources and attributes of a configuration (discovering resources when not
/// given).
pub fn resolve_resources(config: &SlaveConfig) -> Result<(Resources, Attributes), SlaveError> {
    let resources = match &config.resources {
        Some(text) => Resources::parse(text).map_err(|source| SlaveError::Resources {
            what: "resources",
            source: Box::new(source),
        })?,
        None => host::discover(&config.work_dir, config.reserve)?,
    };
    let attributes = match &config.attributes {
        Some(text) => Attributes::parse(text).map_err(|source| SlaveError::Resources {
            what: "attributes",
            source: Box::new(source),
        })?,
        None => Attributes::default(),
    };
    Ok((resources, attributes))
}

/// Starts a real slave on `node` as `slave(1)`: opens the checkpoint, starts the cgroups
/// containerizer and the health prober, recovers checkpointed tasks, and registers with the
/// master. Must be called on the node's actix system thread.
pub fn start(node: &Node, config: SlaveConfig) -> Result<ProcessRef<SlaveProcess>, SlaveError> {
    std::fs::create_dir_all(&config.work_dir).map_err(|e| {
        SlaveError::Config(format!(
            "cannot create work directory {}: {e}",
            config.work_dir.display()
        ))
    })?;
    let work_dir = std::fs::canonicalize(&config.work_dir).map_err(|e| {
        SlaveError::Config(format!("work directory {}: {e}", config.work_dir.display()))
    })?;
    let (resources, attributes) = resolve_resources(&config)?;
    if config.default_task_user.is_empty() {
        return Err(SlaveError::Config(
            "--default-task-user must name a user".into(),
        ));
    }
    // Checked now rather than at each launch: a slave whose every default task would fail
    // must not offer its resources.
    user::TaskUser::lookup(&config.default_task_user)
        .map_err(|e| SlaveError::Config(format!("--default-task-user: {e}")))?;
    // The slave's own state (its checkpoint holds every task's command and environment; the
    // run directories, the supervisors' logs) is the slave's alone: tasks run as other users.
    let own_dir = work_dir.join("slave");
    std::fs::create_dir_all(&own_dir)
        .and_then(|()| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&own_dir, std::fs::Permissions::from_mode(0o700))
        })
        .map_err(|e| SlaveError::Config(format!("slave directory {}: {e}", own_dir.display())))?;
    let checkpoint = RedbCheckpoint::open(&work_dir.join("slave").join("checkpoint.redb"))?;
    let slot = MailboxSlot::new();
    let mut containerizer_config = CgroupsContainerizerConfig::new(
        config
            .cgroup_slave_name
            .clone()
            .unwrap_or_else(|| work_dir_name(&work_dir)),
        work_dir.join("slave").join("run"),
        config.supervisor_program.clone(),
    );
    containerizer_config.supervisor_args = config.supervisor_args.clone();
    containerizer_config.cgroup_root = config.cgroup_root.clone();
    let mut containerizer =
        CgroupsContainerizer::new(containerizer_config, slot.termination_callback())?;
    // Launches run off the actor thread, which a `plateau dev` cluster shares with its master,
    // its other slaves and its frameworks.
    containerizer.start_launchers(limits::LAUNCHER_THREADS, slot.launch_callback())?;
    let prober = ThreadProber::new(slot.probe_callback())
        .map_err(|e| SlaveError::Config(format!("cannot start health prober threads: {e}")))?;
    let process_config = SlaveProcessConfig {
        masters: config.masters.clone(),
        work_dir,
        hostname: config
            .hostname
            .clone()
            .unwrap_or_else(|| node.addr().host.to_string()),
        port: node.addr().port,
        resources,
        attributes,
    };
    let effects = SlaveEffects {
        containerizer: Box::new(containerizer),
        prober: Box::new(prober),
        checkpoint: Box::new(checkpoint),
    };
    let process = SlaveProcess::new(process_config, effects, slot)?
        .with_default_task_user(config.default_task_user.clone())
        .with_usage_reports(limits::USAGE_REPORT_INTERVAL);
    Ok(node.spawn(SLAVE_PROCESS_NAME, process)?)
}
