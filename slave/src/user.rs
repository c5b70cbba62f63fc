//! The users tasks run as.
//!
//! A task runs as the user its command names, else its framework's user, else the slave's
//! default task user (`--default-task-user`, [`DEFAULT_TASK_USER`]): see
//! [`plateau_master::messages::TaskInfo::user`] and [`crate::process::SlaveProcess::task_user`].
//! The slave resolves the name here, on the machine the task runs on, with the C library's
//! user database (`getpwnam_r`, `getgrouplist`): a [`TaskUser`] holds the uid, the primary gid,
//! the supplementary groups and the home directory. A user that does not exist on the slave
//! fails the task.
//!
//! The switch itself ([`TaskUser::switch_in_child`]) happens in the child between `fork` and
//! `exec`, after the child joined the task's cgroups (which needs root): supplementary groups,
//! then the gid, then the uid, so that no group privilege outlives the switch.
//!
//! ```
//! let root = plateau_slave::user::TaskUser::lookup("root").unwrap();
//! assert_eq!((root.uid, root.gid), (0, 0));
//! assert!(plateau_slave::user::TaskUser::lookup("no-such-user-here").is_err());
//! ```

use std::ffi::{CStr, CString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::limits;

/// The user of tasks that name none, unless the slave's `--default-task-user` says otherwise.
pub const DEFAULT_TASK_USER: &str = "nobody";

/// Why a task user cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// The name is empty, too long or holds a NUL.
    #[error("invalid user name {0:?}")]
    InvalidName(String),
    /// No such user in this slave's user database.
    #[error("user '{0}' does not exist on this slave")]
    NotFound(String),
    /// The user database could not be read.
    #[error("looking up user '{user}': {source}")]
    Lookup {
        /// The user.
        user: String,
        /// The error of the C library.
        source: io::Error,
    },
}

/// A task user resolved on this slave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskUser {
    /// Its name.
    pub name: String,
    /// Its uid.
    pub uid: u32,
    /// Its primary gid.
    pub gid: u32,
    /// Every group it is in (`getgrouplist`: the primary gid included).
    pub groups: Vec<u32>,
    /// Its home directory (`HOME` of its tasks).
    pub home: PathBuf,
}

impl TaskUser {
    /// Looks `name` up in the user database of this machine.
    pub fn lookup(name: &str) -> Result<TaskUser, UserError> {
        if name.is_empty() || name.len() > limits::TASK_USER_NAME_LEN_MAX || name.contains('\0') {
            return Err(UserError::InvalidName(name.to_string()));
        }
        let c_name = CString::new(name).map_err(|_| UserError::InvalidName(name.to_string()))?;
        let lookup_error = |source: io::Error| UserError::Lookup {
            user: name.to_string(),
            source,
        };
        let mut buffer: Vec<libc::c_char> = vec![0; 16 << 10];
        // SAFETY: an all-zero passwd is a valid value to be overwritten by getpwnam_r.
        let mut passwd: libc::passwd = unsafe { std::mem::zeroed() };
        loop {
            let mut result: *mut libc::passwd = std::ptr::null_mut();
            // SAFETY: every pointer is valid for the call; the buffer's length is passed.
            let ret = unsafe {
                libc::getpwnam_r(
                    c_name.as_ptr(),
                    &mut passwd,
                    buffer.as_mut_ptr(),
                    buffer.len(),
                    &mut result,
                )
            };
            if ret == libc::ERANGE && buffer.len() < limits::USER_LOOKUP_BUFFER_BYTES_MAX {
                buffer.resize(buffer.len() * 2, 0);
                continue;
            }
            if ret != 0 {
                return Err(lookup_error(io::Error::from_raw_os_error(ret)));
            }
            if result.is_null() {
                return Err(UserError::NotFound(name.to_string()));
            }
            break;
        }
        let (uid, gid) = (passwd.pw_uid, passwd.pw_gid);
        let home = if passwd.pw_dir.is_null() {
            PathBuf::from("/")
        } else {
            // SAFETY: getpwnam_r succeeded: pw_dir points to a NUL-terminated string in `buffer`.
            let dir = unsafe { CStr::from_ptr(passwd.pw_dir) };
            PathBuf::from(std::ffi::OsStr::from_bytes(dir.to_bytes()))
        };
        let mut groups: Vec<libc::gid_t> = vec![0; 64];
        loop {
            let mut count = groups.len() as libc::c_int;
            // SAFETY: `groups` holds `count` entries; getgrouplist writes at most that many and
            // sets `count` to the number it found.
            let ret = unsafe {
                libc::getgrouplist(c_name.as_ptr(), gid, groups.as_mut_ptr(), &mut count)
            };
            if ret >= 0 {
                groups.truncate(count.max(0) as usize);
                break;
            }
            let wanted = (count.max(0) as usize).max(groups.len() * 2);
            if wanted > limits::TASK_USER_GROUPS_MAX {
                return Err(lookup_error(io::Error::other(format!(
                    "in more than {} groups",
                    limits::TASK_USER_GROUPS_MAX
                ))));
            }
            groups.resize(wanted, 0);
        }
        if !groups.contains(&gid) {
            groups.insert(0, gid);
        }
        Ok(TaskUser {
            name: name.to_string(),
            uid,
            gid,
            groups,
            home,
        })
    }

    /// Whether the user is in group `gid` (primary or supplementary).
    pub fn is_in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }

    /// Whether this user may search (traverse) every directory on the way to `dir` (`dir`
    /// included): the permission bits and owners only, which is what the kernel checks for a
    /// user without capabilities. Answers the first directory it cannot search.
    pub fn check_reachable(&self, dir: &Path) -> Result<(), PathBuf> {
        if self.uid == 0 {
            return Ok(());
        }
        for ancestor in dir.ancestors() {
            let Ok(meta) = std::fs::metadata(ancestor) else {
                return Err(ancestor.to_path_buf());
            };
            let mode = meta.mode();
            let searchable = if meta.uid() == self.uid {
                mode & 0o100 != 0
            } else if self.is_in_group(meta.gid()) {
                mode & 0o010 != 0
            } else {
                mode & 0o001 != 0
            };
            if !searchable {
                return Err(ancestor.to_path_buf());
            }
        }
        Ok(())
    }

    /// Becomes this user, in a child between `fork` and `exec`: supplementary groups, then the
    /// gid, then the uid. Afterwards the process cannot get any of its former privileges back
    /// (checked: setting uid 0 again must fail, for a user other than root).
    ///
    /// # Safety
    /// Async-signal-safe: to be called in a `pre_exec` closure, with `groups` prepared before
    /// the fork (it does not allocate).
    pub unsafe fn switch_in_child(uid: u32, gid: u32, groups: &[u32]) -> io::Result<()> {
        // SAFETY (of each call): plain system calls on values prepared before the fork.
        if libc::setgroups(groups.len(), groups.as_ptr()) < 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::setgid(gid) < 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::setuid(uid) < 0 {
            return Err(io::Error::last_os_error());
        }
        if uid != 0 && libc::setuid(0) == 0 {
            return Err(io::Error::from_raw_os_error(libc::EPERM));
        }
        Ok(())
    }
}

/// The effective uid of this process (the slave's user).
pub fn current_uid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_users_up() {
        let root = TaskUser::lookup("root").unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert!(root.groups.contains(&0));
        let nobody = TaskUser::lookup(DEFAULT_TASK_USER).unwrap();
        assert_ne!(nobody.uid, 0);
        assert!(nobody.is_in_group(nobody.gid));
        assert!(matches!(
            TaskUser::lookup("plateau-no-such-user"),
            Err(UserError::NotFound(_))
        ));
        for bad in ["", "a\0b", &"x".repeat(limits::TASK_USER_NAME_LEN_MAX + 1)] {
            assert!(matches!(
                TaskUser::lookup(bad),
                Err(UserError::InvalidName(_))
            ));
        }
    }

    #[test]
    fn reachability_follows_the_mode_bits() {
        use std::os::unix::fs::PermissionsExt;
        let nobody = TaskUser::lookup(DEFAULT_TASK_USER).unwrap();
        let dir = std::env::temp_dir().join(format!("plateau-user-reach-{}", std::process::id()));
        let deep = dir.join("a/b");
        std::fs::create_dir_all(&deep).unwrap();
        let set = |p: &Path, mode: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
        };
        set(&dir, 0o755);
        set(&dir.join("a"), 0o755);
        let reachable = nobody.check_reachable(&deep);
        set(&dir.join("a"), 0o700);
        let blocked = nobody.check_reachable(&deep);
        let _ = std::fs::remove_dir_all(&dir);
        // The directories belong to whoever runs the test, not to nobody.
        if current_uid() != nobody.uid {
            assert_eq!(reachable, Ok(()));
            assert_eq!(blocked, Err(dir.join("a")));
        }
    }
}
