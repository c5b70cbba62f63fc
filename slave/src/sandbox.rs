//! Safe reading of files inside a task's sandbox, for the slave's `/files/read` endpoint.
//!
//! A request names a sandbox (the HTTP layer maps it to a directory, the *root*) and a path
//! relative to it. [`resolve`] refuses every way out of the root: absolute paths, `..`
//! components, and symbolic links (anywhere on the path) that point outside. [`read`] then
//! returns a bounded chunk of the file, re-checking after opening it that the opened file
//! really is inside the root, so that a task swapping a directory for a symlink between the
//! check and the open gains nothing.
//!
//! Ownership: the sandbox directory belongs to the task's user, and [`read`] serves only
//! regular files owned by that same user (the owner of the sandbox directory, read at each
//! request). A file is in the sandbox because the task put it there (or the slave did, for the
//! task: `stdout` and `stderr` are given to the task's user); a file of another user can only
//! be there as a hard link (or a rename) of a file from outside, which the task may not be
//! able to read itself — `/etc/shadow`, another task's output — so it is refused, whatever
//! its link count, with [`SandboxError::NotOwned`] (HTTP 403). A file of the task's user with
//! several links is served: the task could read and copy it anyway. A task running as root
//! owns everything it can reach, and could print it to its `stdout` anyway.
//!
//! ```
//! # let dir = std::env::temp_dir().join(format!("plateau-sandbox-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! std::fs::write(dir.join("stdout"), b"hello world").unwrap();
//! let chunk = plateau_slave::sandbox::read(&dir, "stdout", Some(6), Some(100)).unwrap();
//! assert_eq!(chunk.data, b"world");
//! assert_eq!(chunk.file_size, 11);
//! assert!(plateau_slave::sandbox::read(&dir, "../etc/passwd", Some(0), None).is_err());
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use crate::limits;

/// Errors of sandbox file access; each maps to an HTTP status (400, 403 or 404).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The path is malformed: absolute, with `..`, NUL, too long (HTTP 400).
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath {
        /// The requested path.
        path: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The path leads outside the sandbox, through a symbolic link (HTTP 403).
    #[error("path {0:?} leads outside the sandbox")]
    Escapes(String),
    /// The file does not belong to the task's user (the owner of the sandbox): a task may have
    /// linked it in from outside its sandbox, so it is not served (HTTP 403).
    #[error("{0:?} does not belong to the task's user: not served")]
    NotOwned(String),
    /// No such file or directory (HTTP 404).
    #[error("no such file {0:?} in the sandbox")]
    NotFound(String),
    /// The path names a directory or a special file, not a regular file (HTTP 400).
    #[error("{0:?} is not a regular file")]
    NotAFile(String),
    /// Reading failed (HTTP 500).
    #[error("reading {path:?}: {source}")]
    Io {
        /// The requested path.
        path: String,
        /// The error of the operating system.
        source: std::io::Error,
    },
}

/// A chunk of a sandbox file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChunk {
    /// The bytes read (empty at or past the end, or when only the size was asked for).
    pub data: Vec<u8>,
    /// Offset of `data` in the file; the file's size when only the size was asked for.
    pub offset: u64,
    /// Size of the file when it was read.
    pub file_size: u64,
}

fn invalid(path: &str, reason: &'static str) -> SandboxError {
    SandboxError::InvalidPath {
        path: path.to_string(),
        reason,
    }
}

fn io_error(path: &str) -> impl FnOnce(std::io::Error) -> SandboxError + '_ {
    move |source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            SandboxError::NotFound(path.to_string())
        } else {
            SandboxError::Io {
                path: path.to_string(),
                source,
            }
        }
    }
}

/// Checks the shape of `relative` without touching the filesystem.
fn check_relative(relative: &str) -> Result<&Path, SandboxError> {
    if relative.len() > limits::SANDBOX_PATH_LEN_MAX {
        return Err(invalid(relative, "too long"));
    }
    if relative.contains('\0') {
        return Err(invalid(relative, "contains NUL"));
    }
    let path = Path::new(relative);
    for component in path.components() {
        match component {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => return Err(invalid(relative, "contains '..'")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(invalid(relative, "is absolute"))
            }
        }
    }
    Ok(path)
}

/// Resolves `relative` inside the sandbox `root` to a canonical path (every symbolic link
/// followed) and checks that it stays inside `root`. The empty path is the root itself.
pub fn resolve(root: &Path, relative: &str) -> Result<PathBuf, SandboxError> {
    let path = check_relative(relative)?;
    let root = fs::canonicalize(root).map_err(io_error(relative))?;
    let full = fs::canonicalize(root.join(path)).map_err(io_error(relative))?;
    if !full.starts_with(&root) {
        return Err(SandboxError::Escapes(relative.to_string()));
    }
    Ok(full)
}

/// Opens the regular file `relative` in the sandbox `root` for reading, with every check of
/// [`read`] (inside the root after the open, a regular file, owned by the task's user).
pub fn open(root: &Path, relative: &str) -> Result<(File, fs::Metadata), SandboxError> {
    let full = resolve(root, relative)?;
    let root = fs::canonicalize(root).map_err(io_error(relative))?;
    let file: File = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&full)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                SandboxError::Escapes(relative.to_string())
            } else {
                io_error(relative)(e)
            }
        })?;
    // The path was checked before the open; check what was actually opened.
    let opened =
        fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).map_err(io_error(relative))?;
    if !opened.starts_with(&root) {
        return Err(SandboxError::Escapes(relative.to_string()));
    }
    let metadata = file.metadata().map_err(io_error(relative))?;
    if !metadata.is_file() {
        return Err(SandboxError::NotAFile(relative.to_string()));
    }
    // Of the opened file (fstat) and of the canonical root: no path to swap meanwhile. The
    // task cannot give its sandbox away (only root can chown), nor replace it (its parent
    // belongs to the slave).
    let task_uid = fs::metadata(&root).map_err(io_error(relative))?.uid();
    if metadata.uid() != task_uid {
        return Err(SandboxError::NotOwned(relative.to_string()));
    }
    Ok((file, metadata))
}

/// One entry of a sandbox directory, as Mesos' `/files/browse` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its name in the directory.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification, seconds since the Unix epoch.
    pub mtime: i64,
    /// `ls -l` style mode (`drwxr-xr-x`).
    pub mode: String,
    /// Hard links.
    pub nlink: u64,
    /// Owner's user id.
    pub uid: u32,
    /// Owner's group id.
    pub gid: u32,
}

/// `ls -l`'s mode string of `metadata` (not following a symbolic link).
fn mode_string(metadata: &fs::Metadata) -> String {
    use std::os::unix::fs::FileTypeExt;
    let t = metadata.file_type();
    let kind = if t.is_dir() {
        'd'
    } else if t.is_symlink() {
        'l'
    } else if t.is_fifo() {
        'p'
    } else if t.is_socket() {
        's'
    } else if t.is_char_device() {
        'c'
    } else if t.is_block_device() {
        'b'
    } else {
        '-'
    };
    let mode = metadata.mode();
    let mut out = String::with_capacity(10);
    out.push(kind);
    for shift in [6u32, 3, 0] {
        let bits = (mode >> shift) & 7;
        out.push(if bits & 4 != 0 { 'r' } else { '-' });
        out.push(if bits & 2 != 0 { 'w' } else { '-' });
        out.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    out
}

/// Lists the directory `relative` of the sandbox `root` (the empty path: the sandbox itself),
/// sorted by name, at most [`limits::SANDBOX_BROWSE_ENTRIES_MAX`] entries. Symbolic links are
/// listed as links (not followed).
pub fn browse(root: &Path, relative: &str) -> Result<Vec<Entry>, SandboxError> {
    let full = resolve(root, relative)?;
    let metadata = fs::metadata(&full).map_err(io_error(relative))?;
    if !metadata.is_dir() {
        return Err(invalid(relative, "is not a directory"));
    }
    let mut entries = Vec::new();
    for entry in fs::read_dir(&full).map_err(io_error(relative))? {
        let entry = entry.map_err(io_error(relative))?;
        let Ok(m) = entry.metadata() else { continue };
        entries.push(Entry {
            name: entry.file_name().to_string_lossy().into_owned(),
            size: m.len(),
            mtime: m.mtime(),
            mode: mode_string(&m),
            nlink: m.nlink(),
            uid: m.uid(),
            gid: m.gid(),
        });
        if entries.len() >= limits::SANDBOX_BROWSE_ENTRIES_MAX {
            break;
        }
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

/// Reads `relative` in the sandbox `root`: at most `length` bytes (and at most
/// [`limits::SANDBOX_READ_LENGTH_MAX`]; `None` means the maximum) from `offset`. `offset: None`
/// asks only for the file's size (Mesos' `offset=-1`): empty data, `offset` = size.
pub fn read(
    root: &Path,
    relative: &str,
    offset: Option<u64>,
    length: Option<u64>,
) -> Result<FileChunk, SandboxError> {
    let (mut file, metadata) = open(root, relative)?;
    let file_size = metadata.len();
    let Some(offset) = offset else {
        return Ok(FileChunk {
            data: Vec::new(),
            offset: file_size,
            file_size,
        });
    };
    let length = length
        .unwrap_or(limits::SANDBOX_READ_LENGTH_MAX)
        .min(limits::SANDBOX_READ_LENGTH_MAX);
    let mut data = Vec::new();
    if offset < file_size && length > 0 {
        file.seek(SeekFrom::Start(offset))
            .map_err(io_error(relative))?;
        (&mut file)
            .take(length)
            .read_to_end(&mut data)
            .map_err(io_error(relative))?;
    }
    Ok(FileChunk {
        data,
        offset,
        file_size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A temporary directory removed on drop, even when the test fails.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let dir =
                std::env::temp_dir().join(format!("plateau-sandbox-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(dir.join("sandbox/sub")).unwrap();
            fs::write(dir.join("sandbox/stdout"), b"0123456789").unwrap();
            fs::write(dir.join("sandbox/sub/file"), b"inner").unwrap();
            fs::write(dir.join("secret"), b"secret").unwrap();
            TempDir(dir)
        }
        fn sandbox(&self) -> PathBuf {
            self.0.join("sandbox")
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn reads_chunks() {
        let dir = TempDir::new("chunks");
        let root = dir.sandbox();
        let chunk = read(&root, "stdout", Some(2), Some(3)).unwrap();
        assert_eq!(
            (chunk.data.as_slice(), chunk.offset, chunk.file_size),
            (&b"234"[..], 2, 10)
        );
        assert_eq!(read(&root, "stdout", Some(8), None).unwrap().data, b"89");
        assert!(read(&root, "stdout", Some(10), Some(5))
            .unwrap()
            .data
            .is_empty());
        assert!(read(&root, "stdout", Some(99), Some(5))
            .unwrap()
            .data
            .is_empty());
        let size_only = read(&root, "stdout", None, None).unwrap();
        assert_eq!((size_only.data.len(), size_only.offset), (0, 10));
        assert_eq!(
            read(&root, "sub/file", Some(0), None).unwrap().data,
            b"inner"
        );
        assert_eq!(
            read(&root, "./sub//file", Some(0), None).unwrap().data,
            b"inner"
        );
    }

    #[test]
    fn browse_lists_a_sandbox_directory_and_refuses_ways_out() {
        let t = TempDir::new("browse");
        symlink(t.0.join("secret"), t.sandbox().join("link-out")).unwrap();
        let entries = browse(&t.sandbox(), "").unwrap();
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["link-out", "stdout", "sub"]);
        let stdout = &entries[1];
        assert_eq!(stdout.size, 10);
        assert!(stdout.mode.starts_with("-rw"), "{}", stdout.mode);
        assert!(entries[2].mode.starts_with('d'));
        assert!(
            entries[0].mode.starts_with('l'),
            "a link is listed, not followed"
        );
        assert_eq!(browse(&t.sandbox(), "sub").unwrap()[0].name, "file");
        assert!(matches!(
            browse(&t.sandbox(), ".."),
            Err(SandboxError::InvalidPath { .. })
        ));
        assert!(matches!(
            browse(&t.sandbox(), "stdout"),
            Err(SandboxError::InvalidPath { .. })
        ));
        symlink(&t.0, t.sandbox().join("dir-out")).unwrap();
        assert!(matches!(
            browse(&t.sandbox(), "dir-out"),
            Err(SandboxError::Escapes(_))
        ));
        // Download opens with the same checks as a read.
        let (_, metadata) = open(&t.sandbox(), "stdout").unwrap();
        assert_eq!(metadata.len(), 10);
        assert!(matches!(
            open(&t.sandbox(), "link-out"),
            Err(SandboxError::Escapes(_))
        ));
        assert!(matches!(
            open(&t.sandbox(), "sub"),
            Err(SandboxError::NotAFile(_))
        ));
    }

    #[test]
    fn refuses_escapes() {
        let dir = TempDir::new("escapes");
        let root = dir.sandbox();
        assert!(matches!(
            read(&root, "../secret", Some(0), None),
            Err(SandboxError::InvalidPath { .. })
        ));
        assert!(matches!(
            read(&root, "sub/../../secret", Some(0), None),
            Err(SandboxError::InvalidPath { .. })
        ));
        let absolute = dir.0.join("secret");
        assert!(matches!(
            read(&root, absolute.to_str().unwrap(), Some(0), None),
            Err(SandboxError::InvalidPath { .. })
        ));
        assert!(matches!(
            read(&root, "std\0out", Some(0), None),
            Err(SandboxError::InvalidPath { .. })
        ));
        symlink(dir.0.join("secret"), root.join("link-out")).unwrap();
        assert!(matches!(
            read(&root, "link-out", Some(0), None),
            Err(SandboxError::Escapes(_))
        ));
        symlink(&dir.0, root.join("dir-out")).unwrap();
        assert!(matches!(
            read(&root, "dir-out/secret", Some(0), None),
            Err(SandboxError::Escapes(_))
        ));
        symlink("/etc", root.join("etc")).unwrap();
        assert!(matches!(
            read(&root, "etc/hostname", Some(0), None),
            Err(SandboxError::Escapes(_)) | Err(SandboxError::NotFound(_))
        ));
    }

    #[test]
    fn follows_symlinks_that_stay_inside() {
        let dir = TempDir::new("inside");
        let root = dir.sandbox();
        symlink("sub/file", root.join("link-in")).unwrap();
        assert_eq!(
            read(&root, "link-in", Some(0), None).unwrap().data,
            b"inner"
        );
    }

    #[test]
    fn reports_missing_files_and_directories() {
        let dir = TempDir::new("missing");
        let root = dir.sandbox();
        assert!(matches!(
            read(&root, "nope", Some(0), None),
            Err(SandboxError::NotFound(_))
        ));
        assert!(matches!(
            read(&root, "sub", Some(0), None),
            Err(SandboxError::NotAFile(_))
        ));
        assert!(matches!(
            read(&root, "", Some(0), None),
            Err(SandboxError::NotAFile(_))
        ));
        assert_eq!(
            resolve(&root, "").unwrap(),
            fs::canonicalize(&root).unwrap()
        );
    }

    #[test]
    fn serves_only_files_of_the_sandbox_owner() {
        // Changing owners needs root; as another user the rule is checked with its own files.
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        let dir = TempDir::new("owner");
        let root = dir.sandbox();
        let nobody = crate::user::TaskUser::lookup(crate::user::DEFAULT_TASK_USER).unwrap();
        let give = |path: &Path| {
            std::os::unix::fs::chown(path, Some(nobody.uid), Some(nobody.gid)).unwrap()
        };
        give(&root);
        give(&root.join("stdout"));
        assert_eq!(
            read(&root, "stdout", Some(0), Some(3)).unwrap().data,
            b"012"
        );
        // A root-only file outside, hard-linked in (as a task may do): refused.
        let secret = dir.0.join("secret");
        fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        fs::hard_link(&secret, root.join("shadow")).unwrap();
        assert!(matches!(
            read(&root, "shadow", Some(0), None),
            Err(SandboxError::NotOwned(_))
        ));
        // Even the size is not told.
        assert!(matches!(
            read(&root, "shadow", None, None),
            Err(SandboxError::NotOwned(_))
        ));
        // A file of another user with a single link (moved in): refused too.
        assert!(matches!(
            read(&root, "sub/file", Some(0), None),
            Err(SandboxError::NotOwned(_))
        ));
        // A file of the task's user with two links: the task could read it anyway.
        give(&root.join("sub/file"));
        fs::hard_link(root.join("sub/file"), root.join("again")).unwrap();
        assert_eq!(read(&root, "again", Some(0), None).unwrap().data, b"inner");
    }

    #[test]
    fn caps_the_length() {
        let dir = TempDir::new("cap");
        let root = dir.sandbox();
        let big = vec![7u8; (limits::SANDBOX_READ_LENGTH_MAX + 10) as usize];
        fs::write(root.join("big"), &big).unwrap();
        let chunk = read(&root, "big", Some(0), Some(u64::MAX)).unwrap();
        assert_eq!(chunk.data.len() as u64, limits::SANDBOX_READ_LENGTH_MAX);
    }
}
