//! Discovery of the resources a slave offers when `--resources` does not say: CPUs, memory
//! (`/proc/meminfo` MemTotal), disk (statvfs of the work directory), minus a reserve for the
//! host itself, and the default port range `[31000-32000]`. The arithmetic is pure
//! ([`offered`]); only [`discover`] reads the host.

use std::path::Path;

use plateau_master::resources::{Ranges, Resources};

use crate::error::SlaveError;

/// What the host keeps for itself (Mesos' defaults: 1 GB of memory or half of it when the
/// machine is small, 5 GB of disk or half of it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reserve {
    /// Memory kept, in MB, when the host has at least twice as much.
    pub mem_mb: f64,
    /// Disk kept, in MB, when the host has at least twice as much.
    pub disk_mb: f64,
}

impl Default for Reserve {
    fn default() -> Self {
        Reserve {
            mem_mb: 1024.0,
            disk_mb: 5120.0,
        }
    }
}

/// What the host measures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HostTotals {
    /// CPUs.
    pub cpus: f64,
    /// Memory, MB.
    pub mem_mb: f64,
    /// Disk of the work directory's filesystem, MB.
    pub disk_mb: f64,
}

fn after_reserve(total: f64, reserve: f64) -> f64 {
    if total >= 2.0 * reserve {
        total - reserve
    } else {
        total / 2.0
    }
}

/// The resources offered from the host's totals: all CPUs, memory and disk minus the reserve
/// (or half when the host is small), ports `[31000-32000]`.
pub fn offered(totals: HostTotals, reserve: Reserve) -> Result<Resources, SlaveError> {
    let discovery = |e: plateau_master::MasterError| SlaveError::Discovery(e.to_string());
    let resources = Resources::new(
        (totals.cpus * 1000.0).floor() / 1000.0,
        after_reserve(totals.mem_mb, reserve.mem_mb).floor(),
        after_reserve(totals.disk_mb, reserve.disk_mb).floor(),
    )
    .map_err(discovery)?;
    Ok(resources.with_ports(Ranges::single(31000, 32000)))
}

/// Measures the host: CPUs available to this process, MemTotal, the size of `work_dir`'s
/// filesystem.
pub fn measure(work_dir: &Path) -> Result<HostTotals, SlaveError> {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get() as f64)
        .map_err(|e| SlaveError::Discovery(format!("CPU count: {e}")))?;
    let meminfo = std::fs::read_to_string("/proc/meminfo")
        .map_err(|e| SlaveError::Discovery(format!("/proc/meminfo: {e}")))?;
    let mem_kb: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| SlaveError::Discovery("no MemTotal in /proc/meminfo".into()))?;
    let disk_mb = statvfs_mb(work_dir)?;
    Ok(HostTotals {
        cpus,
        mem_mb: mem_kb / 1024.0,
        disk_mb,
    })
}

fn statvfs_mb(path: &Path) -> Result<f64, SlaveError> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| SlaveError::Discovery(format!("{} contains NUL", path.display())))?;
    // SAFETY: statvfs writes into the zeroed struct we own; the path is NUL-terminated.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) };
    if rc != 0 {
        return Err(SlaveError::Discovery(format!(
            "statvfs {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        )));
    }
    Ok(stat.f_blocks as f64 * stat.f_frsize as f64 / (1024.0 * 1024.0))
}

/// Measures the host and computes what to offer.
pub fn discover(work_dir: &Path, reserve: Reserve) -> Result<Resources, SlaveError> {
    offered(measure(work_dir)?, reserve)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_is_taken_from_big_hosts_and_half_from_small_ones() {
        let big = offered(
            HostTotals {
                cpus: 8.0,
                mem_mb: 16384.0,
                disk_mb: 100_000.0,
            },
            Reserve::default(),
        )
        .unwrap();
        assert_eq!(big.cpus(), 8.0);
        assert_eq!(big.mem_mb(), 15360.0);
        assert_eq!(big.disk_mb(), 94880.0);
        assert_eq!(big.ports().to_string(), "[31000-32000]");
        let small = offered(
            HostTotals {
                cpus: 1.0,
                mem_mb: 1500.0,
                disk_mb: 8000.0,
            },
            Reserve::default(),
        )
        .unwrap();
        assert_eq!(small.mem_mb(), 750.0);
        assert_eq!(small.disk_mb(), 4000.0);
    }

    #[test]
    fn this_host_can_be_measured() {
        let totals = measure(&std::env::temp_dir()).unwrap();
        assert!(
            totals.cpus >= 1.0 && totals.mem_mb > 0.0 && totals.disk_mb > 0.0,
            "{totals:?}"
        );
    }
}
