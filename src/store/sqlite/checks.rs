//! Location checks of the SQLite store: directory and file modes and owners, sidecars,
//! private directory creation.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::core::error::{ErrorKind, RpcError};

use super::{io_error, SqliteStore};
use crate::store::flock::FileId;

impl SqliteStore {
    /// The directory checks of [`Self::verify_location`] (no file is opened); returns the
    /// store's canonical path when it exists.
    ///
    /// Every ancestor directory is checked as OpenSSH's `StrictModes` checks them (issue
    /// 20): those of the path as given (made absolute, each prefix followed as the kernel
    /// follows it) and those of the path a symlink leads to, up to `/`. Each must be owned
    /// by this user or root and not group/world-writable unless sticky (`/tmp`). A missing
    /// directory (one the first write will create, 0700) is skipped.
    pub(super) fn verify_dirs(&self) -> Result<Option<PathBuf>, RpcError> {
        let real = fs::canonicalize(&self.path).ok();
        let given = std::path::absolute(&self.path).unwrap_or_else(|_| self.path.clone());
        let mut dirs: Vec<PathBuf> = vec![];
        for p in std::iter::once(given.as_path()).chain(real.as_deref()) {
            for d in p.ancestors().skip(1) {
                if !d.as_os_str().is_empty() && !dirs.iter().any(|x| x == d) {
                    dirs.push(d.to_path_buf());
                }
            }
        }
        for d in &dirs {
            match fs::metadata(d) {
                Ok(m) => check_dir(&m, d)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(e, "examine the directory", d)),
            }
        }
        Ok(real)
    }

    /// Verifies an existing store location before it is used (issue 11):
    /// - each directory holding the store (as given, and where a symlink leads) is owned by
    ///   this user (or root) and not group/world-writable unless sticky (`/tmp`);
    /// - the store file is a regular file (a device such as `/dev/null`, a directory or a
    ///   FIFO is refused before SQLite touches it) owned by this user;
    /// - `-wal`, `-shm`, `.lock` are regular files (never symlinks, opened `O_NOFOLLOW`)
    ///   owned by this user;
    /// - the store file and every sidecar has exactly one link (a hard-linked `-wal` could
    ///   be another file's, and a hard-linked store has two `-wal`s): refused before any
    ///   `fchmod`;
    /// - group/world permission bits on any of them are removed through the descriptor
    ///   (`fchmod`), never a path.
    ///
    /// Returns the store file's (device, inode) when it exists, for
    /// [`super::open::check_opened`] to compare with the file SQLite opened.
    ///
    /// Errors: `store_permissions` naming the path.
    /// Runs before the connection is opened: closing a descriptor of the store file while
    /// SQLite holds POSIX locks on it would drop them.
    pub(super) fn verify_location(&self) -> Result<Option<FileId>, RpcError> {
        let real = self.verify_dirs()?;
        let checked = match fs::metadata(&self.path) {
            Ok(m) if !m.is_file() => {
                return Err(location_error(
                    &self.path,
                    format!("is a {}, not a store file", crate::fsread::file_kind(&m)),
                    "point --store at a regular file (or a path that does not exist yet)",
                ))
            }
            Ok(_) => {
                let f = OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
                    .open(&self.path)
                    .map_err(|e| io_error(e, "open", &self.path))?;
                Some(check_own_file(&f, &self.path)?)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_error(e, "examine", &self.path)),
        };
        let mut sidecars = vec![self.lock_path()];
        for base in std::iter::once(self.path.as_path()).chain(real.as_deref()) {
            for suffix in ["-wal", "-shm", "-journal"] {
                let mut s = base.as_os_str().to_owned();
                s.push(suffix);
                let s = PathBuf::from(s);
                if !sidecars.contains(&s) {
                    sidecars.push(s);
                }
            }
        }
        for sc in &sidecars {
            let m = match fs::symlink_metadata(sc) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_error(e, "examine", sc)),
            };
            if !m.is_file() {
                return Err(location_error(
                    sc,
                    format!(
                        "is a {}, not a regular file",
                        if m.file_type().is_symlink() {
                            "symbolic link"
                        } else {
                            crate::fsread::file_kind(&m)
                        }
                    ),
                    "remove it: modelauth creates its own sidecar files",
                ));
            }
            let f = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
                .open(sc)
                .map_err(|e| io_error(e, "open", sc))?;
            check_own_file(&f, sc)?;
        }
        Ok(checked)
    }
}

pub(super) fn location_error(path: &Path, what: String, hint: &str) -> RpcError {
    RpcError::new(
        ErrorKind::StorePermissions,
        format!("refusing the store location: {} {what}", path.display()),
    )
    .with("path", path.display().to_string())
    .with_hint(hint.to_string())
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// A directory holding the store: owned by this user or root; not group/world-writable
/// unless sticky (so another user cannot replace the store or plant its sidecars).
fn check_dir(m: &fs::Metadata, d: &Path) -> Result<(), RpcError> {
    use std::os::unix::fs::MetadataExt;
    let uid = euid();
    if m.uid() != uid && m.uid() != 0 {
        return Err(location_error(
            d,
            format!("is owned by uid {}, not by this user (uid {uid})", m.uid()),
            "keep the store in a directory of your own, e.g. ~/.local/state/modelauth",
        ));
    }
    if m.mode() & 0o022 != 0 && m.mode() & 0o1000 == 0 {
        return Err(location_error(
            d,
            format!(
                "has mode {:04o}: other users can replace files in it",
                m.mode() & 0o7777
            ),
            &format!("chmod 700 {}", d.display()),
        ));
    }
    Ok(())
}

/// A store or sidecar file open as `f`: a regular file owned by this user; group/world
/// bits are removed with `fchmod` on the descriptor (on a read-only file system, where
/// nobody can change it, they are only reported). A file with more than one link is
/// refused before that. Returns its (device, inode).
pub(super) fn check_own_file(f: &fs::File, path: &Path) -> Result<FileId, RpcError> {
    use std::os::unix::fs::MetadataExt;
    let m = f.metadata().map_err(|e| io_error(e, "examine", path))?;
    if !m.is_file() {
        return Err(location_error(
            path,
            format!("is a {}, not a regular file", crate::fsread::file_kind(&m)),
            "point --store at a regular file (or a path that does not exist yet)",
        ));
    }
    let uid = euid();
    if m.uid() != uid {
        return Err(location_error(
            path,
            format!("is owned by uid {}, not by this user (uid {uid})", m.uid()),
            "a store made by another user is never used: move it aside or point --store elsewhere",
        ));
    }
    if m.nlink() != 1 {
        return Err(location_error(
            path,
            format!("has {} links: another name of it could be anyone's", m.nlink()),
            "keep the store and its sidecars as files of their own (no hard links): copy it to a new file",
        ));
    }
    let mode = m.mode() & 0o7777;
    if mode & 0o077 != 0 {
        match f.set_permissions(fs::Permissions::from_mode(mode & 0o700)) {
            Ok(()) => {
                tracing::info!(path = %path.display(), from = format!("{mode:04o}"), "tightened store file permissions")
            }
            Err(e) if e.raw_os_error() == Some(libc::EROFS) => {
                tracing::warn!(path = %path.display(), "store file is group/world-accessible on a read-only file system")
            }
            Err(e) => {
                return Err(location_error(
                    path,
                    format!("has mode {mode:04o} and cannot be tightened to 0600: {e}"),
                    &format!("chmod 600 {}", path.display()),
                ))
            }
        }
    }
    Ok((m.dev(), m.ino()))
}

static CREATE_PARENTS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Whether a first write may create the store directory's missing parents too (the
/// default). The CLI turns it off for a location named by `--store` or `$MODELAUTH_STORE`
/// without `--create-dirs` (PROTOCOL §10 r3): a mistyped path then fails instead of
/// silently creating a directory chain.
pub(crate) fn set_create_parents(on: bool) {
    CREATE_PARENTS.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// Creates `dir` and any missing parents with mode 0700 (set explicitly, whatever the umask).
pub(super) fn create_private_dirs(dir: &Path) -> Result<(), RpcError> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut missing = vec![];
    let mut cur = Some(dir);
    while let Some(d) = cur {
        if d.as_os_str().is_empty() || d.exists() {
            break;
        }
        missing.push(d);
        cur = d.parent();
    }
    if missing.len() > 1 && !CREATE_PARENTS.load(std::sync::atomic::Ordering::Relaxed) {
        let top = missing.last().expect("more than one");
        return Err(RpcError::new(
            ErrorKind::InvalidParams,
            format!(
                "the store's directory {} does not exist, nor does {}; refused to create {} directories for a location given by --store or $MODELAUTH_STORE (a typo?)",
                dir.display(),
                top.display(),
                missing.len()
            ),
        )
        .with("reason", "store_directory_missing")
        .with("missing", missing.iter().rev().map(|d| d.display().to_string()).collect::<Vec<_>>())
        .with_hint(format!(
            "check the path; to create it: mkdir -p {} (or pass --create-dirs)",
            dir.display()
        )));
    }
    for d in missing.into_iter().rev() {
        match fs::DirBuilder::new().mode(0o700).create(d) {
            Ok(()) => {
                // fchmod on the directory we just made (O_NOFOLLOW: never a planted link).
                let fd = OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
                    .open(d)
                    .map_err(|e| io_error(e, "open the directory", d))?;
                fd.set_permissions(fs::Permissions::from_mode(0o700))
                    .map_err(|e| io_error(e, "set permissions on", d))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_error(e, "create the directory", d)),
        }
    }
    Ok(())
}
