//! A task's cgroups: creation with limits and usage statistics through `cgroups-rs` (slave side),
//! and plain file operations on the cgroup directories (listing, killing, OOM counter, removal)
//! that both the slave and the supervisor use.
//!
//! Only cgroup v1 is supported: this is where the `cpu`, `memory` and `pids` controllers are on
//! the hosts Plateau targets (hybrid mode, as on this project's machines).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cgroups_rs::fs::cpu::CpuController;
use cgroups_rs::fs::cpuacct::CpuAcctController;
use cgroups_rs::fs::hierarchies::{self, V1};
use cgroups_rs::fs::memory::MemController;
use cgroups_rs::fs::pid::PidController;
use cgroups_rs::fs::{Cgroup, Controllers, MaxValue};
use serde::{Deserialize, Serialize};

use super::{ContainerizerError, Usage};
use crate::limits;

/// The v1 controllers every task cgroup has.
const CONTROLLERS: [Controllers; 5] = [
    Controllers::Cpu,
    Controllers::CpuAcct,
    Controllers::Mem,
    Controllers::Pids,
    Controllers::Freezer,
];

/// Checks that the host has the v1 controllers the containerizer needs.
pub(crate) fn check_host() -> Result<(), ContainerizerError> {
    if hierarchies::is_cgroup2_unified_mode() {
        return Err(ContainerizerError::Unsupported(
            "cgroup v2 unified mode: the containerizer needs the cgroup v1 controllers cpu, cpuacct, memory, pids, freezer".into(),
        ));
    }
    let v1 = V1::new();
    let missing: Vec<String> = CONTROLLERS
        .iter()
        .filter(|c| v1.get_mount_point((*c).clone()).is_none())
        .map(|c| c.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(ContainerizerError::Unsupported(format!(
            "cgroup v1 controllers not mounted: {}",
            missing.join(", ")
        )));
    }
    Ok(())
}

/// Absolute directories of one task cgroup, one per controller: what the supervisor needs to
/// join, watch, kill and remove it without `cgroups-rs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CgroupDirs {
    /// Every controller's directory.
    pub all: Vec<PathBuf>,
    /// The memory controller's directory.
    pub memory: PathBuf,
    /// The freezer controller's directory.
    pub freezer: PathBuf,
}

/// Resource limits of a task cgroup.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Limits {
    /// `cpu.shares`.
    pub cpu_shares: u64,
    /// `cpu.cfs_quota_us` (period [`limits::TASK_CPU_PERIOD_US`]).
    pub cpu_quota_us: u64,
    /// `memory.limit_in_bytes`.
    pub memory_bytes: u64,
    /// `pids.max`.
    pub pids_max: u64,
}

impl Limits {
    /// Limits for `cpus` CPUs and `mem_mb` MiB, with the minima of [`crate::limits`].
    pub fn new(cpus: f64, mem_mb: f64, pids_max: u64) -> Limits {
        let cpu_shares = ((cpus * 1024.0) as u64).max(limits::TASK_CPU_SHARES_MIN);
        let cpu_quota_us =
            ((cpus * limits::TASK_CPU_PERIOD_US as f64) as u64).max(limits::TASK_CPU_QUOTA_MIN_US);
        let memory_bytes =
            ((mem_mb * 1024.0 * 1024.0) as u64).max(limits::TASK_MEMORY_LIMIT_MIN_BYTES);
        Limits {
            cpu_shares,
            cpu_quota_us,
            memory_bytes,
            pids_max,
        }
    }
}

fn cgroup_error(cgroup: &str, what: &str, err: impl std::fmt::Display) -> ContainerizerError {
    ContainerizerError::Cgroup {
        cgroup: cgroup.to_string(),
        reason: format!("{what}: {err}"),
    }
}

/// A handle on the task cgroup at `relative` (not created).
pub(crate) fn load(relative: &str) -> Cgroup {
    Cgroup::load_with_specified_controllers(
        Box::new(V1::new()),
        relative,
        CONTROLLERS.iter().map(|c| c.to_string()).collect(),
    )
}

/// The directories of a cgroup handle.
pub(crate) fn dirs(cgroup: &Cgroup) -> CgroupDirs {
    let mut all = Vec::new();
    let mut memory = PathBuf::new();
    let mut freezer = PathBuf::new();
    for subsystem in cgroup.subsystems() {
        let controller = subsystem.to_controller();
        let path = controller.path().to_path_buf();
        match controller.control_type() {
            Controllers::Mem => memory = path.clone(),
            Controllers::Freezer => freezer = path.clone(),
            _ => {}
        }
        all.push(path);
    }
    assert!(
        !memory.as_os_str().is_empty() && !freezer.as_os_str().is_empty(),
        "check_host guarantees memory and freezer controllers"
    );
    CgroupDirs {
        all,
        memory,
        freezer,
    }
}

/// Creates the task cgroup at `relative` with `limits`. A leftover cgroup of the same name is
/// emptied and removed first.
pub(crate) fn create(
    relative: &str,
    limits: Limits,
) -> Result<(Cgroup, CgroupDirs), ContainerizerError> {
    let cgroup = load(relative);
    let dirs = dirs(&cgroup);
    if cgroup.exists() {
        destroy(&dirs);
    }
    cgroup
        .create()
        .map_err(|e| cgroup_error(relative, "create", e))?;
    let result = apply(&cgroup, relative, limits);
    if let Err(err) = result {
        destroy(&dirs);
        return Err(err);
    }
    Ok((cgroup, dirs))
}

fn apply(cgroup: &Cgroup, relative: &str, limits: Limits) -> Result<(), ContainerizerError> {
    let cpu: &CpuController = cgroup
        .controller_of()
        .ok_or_else(|| cgroup_error(relative, "cpu controller", "missing"))?;
    cpu.set_shares(limits.cpu_shares)
        .map_err(|e| cgroup_error(relative, "set cpu.shares", e))?;
    // Period first: the kernel checks the quota against the current period.
    cpu.set_cfs_period(limits::TASK_CPU_PERIOD_US)
        .map_err(|e| cgroup_error(relative, "set cpu.cfs_period_us", e))?;
    cpu.set_cfs_quota(limits.cpu_quota_us as i64)
        .map_err(|e| cgroup_error(relative, "set cpu.cfs_quota_us", e))?;
    let memory: &MemController = cgroup
        .controller_of()
        .ok_or_else(|| cgroup_error(relative, "memory controller", "missing"))?;
    memory
        .set_limit(limits.memory_bytes as i64)
        .map_err(|e| cgroup_error(relative, "set memory.limit_in_bytes", e))?;
    // With swap accounting, also cap memory+swap so that swap cannot extend the limit. Hosts
    // without swap accounting have no such file: nothing to cap.
    let memsw = dirs(cgroup).memory.join("memory.memsw.limit_in_bytes");
    if memsw.exists() {
        memory
            .set_memswap_limit(limits.memory_bytes as i64)
            .map_err(|e| cgroup_error(relative, "set memory.memsw.limit_in_bytes", e))?;
    }
    let pids: &PidController = cgroup
        .controller_of()
        .ok_or_else(|| cgroup_error(relative, "pids controller", "missing"))?;
    pids.set_pid_max(MaxValue::Value(limits.pids_max as i64))
        .map_err(|e| cgroup_error(relative, "set pids.max", e))?;
    Ok(())
}

/// Usage statistics of a task cgroup.
pub(crate) fn usage(cgroup: &Cgroup, relative: &str) -> Result<Usage, ContainerizerError> {
    if !cgroup.exists() {
        return Err(cgroup_error(relative, "usage", "cgroup does not exist"));
    }
    let mut usage = Usage::default();
    if let Some(acct) = cgroup.controller_of::<CpuAcctController>() {
        let acct = acct.cpuacct();
        usage.cpus_user_time_secs = acct.usage_user as f64 / 1e9;
        usage.cpus_system_time_secs = acct.usage_sys as f64 / 1e9;
    }
    if let Some(cpu) = cgroup.controller_of::<CpuController>() {
        if let (Ok(quota), Ok(period)) = (cpu.cfs_quota(), cpu.cfs_period()) {
            if quota > 0 && period > 0 {
                usage.cpus_limit = quota as f64 / period as f64;
            }
        }
        for line in cpu.cpu().stat.lines() {
            let mut parts = line.split_whitespace();
            let (Some(key), Some(value)) = (parts.next(), parts.next()) else {
                continue;
            };
            let value: u64 = value.parse().unwrap_or(0);
            match key {
                "nr_periods" => usage.cpus_nr_periods = value,
                "nr_throttled" => usage.cpus_nr_throttled = value,
                "throttled_time" => usage.cpus_throttled_time_secs = value as f64 / 1e9,
                _ => {}
            }
        }
    }
    if let Some(memory) = cgroup.controller_of::<MemController>() {
        let stat = memory.memory_stat();
        usage.mem_rss_bytes = stat.stat.total_rss;
        usage.mem_total_bytes = stat.usage_in_bytes;
        usage.mem_limit_bytes = stat.limit_in_bytes.max(0) as u64;
        usage.mem_max_usage_bytes = stat.max_usage_in_bytes;
    }
    if let Some(pids) = cgroup.controller_of::<PidController>() {
        usage.processes = pids.get_pid_current().unwrap_or(0);
    }
    Ok(usage)
}

/// Pids of the processes in the cgroup (union over controllers).
pub(crate) fn procs(dirs: &CgroupDirs) -> BTreeSet<libc::pid_t> {
    let mut pids = BTreeSet::new();
    for dir in &dirs.all {
        if let Ok(text) = fs::read_to_string(dir.join("cgroup.procs")) {
            pids.extend(
                text.lines()
                    .filter_map(|l| l.trim().parse::<libc::pid_t>().ok()),
            );
        }
    }
    pids
}

/// Whether any controller directory of the cgroup still exists.
pub(crate) fn exists(dirs: &CgroupDirs) -> bool {
    dirs.all.iter().any(|d| d.exists())
}

/// Sends `signal` to every process of the cgroup. For SIGKILL the cgroup is frozen first, so
/// that no process can fork a child the listing misses, then thawed so the signal is delivered.
/// Returns how many processes were signalled.
pub(crate) fn signal_all(dirs: &CgroupDirs, signal: libc::c_int) -> usize {
    let freeze = signal == libc::SIGKILL && dirs.freezer.exists();
    if freeze {
        freeze_and_wait(&dirs.freezer);
    }
    let pids = procs(dirs);
    for &pid in &pids {
        // Best effort: a process may have exited since the listing.
        let _ = super::sys::kill(pid, signal);
    }
    if freeze {
        let _ = fs::write(dirs.freezer.join("freezer.state"), "THAWED");
    }
    pids.len()
}

fn freeze_and_wait(freezer: &Path) {
    let state = freezer.join("freezer.state");
    if fs::write(&state, "FROZEN").is_err() {
        return;
    }
    // Freezing is asynchronous: FREEZING until every task stopped. Bounded wait; killing a
    // partly frozen cgroup still works, the caller just loops more.
    let deadline = super::monotonic_now() + Duration::from_secs(1);
    while super::monotonic_now() < deadline {
        match fs::read_to_string(&state) {
            Ok(s) if s.trim() == "FROZEN" => return,
            Ok(_) => std::thread::sleep(Duration::from_millis(1)),
            Err(_) => return,
        }
    }
}

/// The memory cgroup's OOM kill counter (`oom_kill` of `memory.oom_control`), if readable.
pub(crate) fn oom_kill_count(dirs: &CgroupDirs) -> Option<u64> {
    let text = fs::read_to_string(dirs.memory.join("memory.oom_control")).ok()?;
    parse_oom_kill(&text)
}

fn parse_oom_kill(text: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let mut parts = line.split_whitespace();
        (parts.next() == Some("oom_kill")).then(|| parts.next()?.parse().ok())?
    })
}

/// Reads a `u64` file of the memory cgroup (`memory.limit_in_bytes`...).
pub(crate) fn memory_value(dirs: &CgroupDirs, file: &str) -> Option<u64> {
    fs::read_to_string(dirs.memory.join(file))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// SIGKILLs everything in the cgroup until it is empty (or `timeout` passes), calling `tick`
/// between rounds (the supervisor reaps its children there). Returns whether it is empty.
pub(crate) fn kill_until_empty(
    dirs: &CgroupDirs,
    timeout: Duration,
    mut tick: impl FnMut(),
) -> bool {
    let deadline = super::monotonic_now() + timeout;
    loop {
        if signal_all(dirs, libc::SIGKILL) == 0 {
            return true;
        }
        tick();
        if super::monotonic_now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Removes the cgroup directories (the cgroup must be empty). Retries briefly: the kernel may
/// still be tearing down the last exited process. Returns whether all are gone.
pub(crate) fn remove(dirs: &CgroupDirs) -> bool {
    let deadline = super::monotonic_now() + Duration::from_secs(2);
    loop {
        let mut all_gone = true;
        for dir in &dirs.all {
            match fs::remove_dir(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(_) => all_gone = false,
            }
        }
        if all_gone || super::monotonic_now() >= deadline {
            return all_gone;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Kills everything in the cgroup and removes it (best effort, bounded). Returns whether the
/// cgroup is gone.
pub(crate) fn destroy(dirs: &CgroupDirs) -> bool {
    if !exists(dirs) {
        return true;
    }
    kill_until_empty(dirs, limits::CGROUP_EMPTY_TIMEOUT, || {});
    // A cgroup left frozen by an interrupted kill would keep its processes stuck forever.
    let _ = fs::write(dirs.freezer.join("freezer.state"), "THAWED");
    remove(dirs)
}

/// Names of the child cgroups of `parent_relative` (this slave's task cgroups), from the
/// freezer hierarchy (every task cgroup has one there).
pub(crate) fn children(parent_relative: &str) -> Vec<String> {
    let parent = load(parent_relative);
    let dir = dirs(&parent).freezer;
    let Ok(entries) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_control_is_parsed() {
        let text = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(parse_oom_kill(text), Some(3));
        assert_eq!(parse_oom_kill("oom_kill_disable 0\nunder_oom 0\n"), None);
    }

    #[test]
    fn limits_follow_mesos_conventions() {
        let l = Limits::new(0.5, 64.0, 100);
        assert_eq!(l.cpu_shares, 512);
        assert_eq!(l.cpu_quota_us, 50_000);
        assert_eq!(l.memory_bytes, 64 << 20);
        let tiny = Limits::new(0.0001, 1.0, 1);
        assert_eq!(tiny.cpu_shares, limits::TASK_CPU_SHARES_MIN);
        assert_eq!(tiny.cpu_quota_us, limits::TASK_CPU_QUOTA_MIN_US);
        assert_eq!(tiny.memory_bytes, limits::TASK_MEMORY_LIMIT_MIN_BYTES);
    }
}
