//! Whether a command named by store content may run (PROTOCOL §11 *(r3)*): write access to
//! a store is authority over every host that uses it, so an `exec` secret provider's
//! `command` runs only when this machine vouches for it.
//!
//! - The command file (after following symlinks) must be a regular file owned by root or
//!   the user, not group- or world-writable; so must its directory, and every ancestor
//!   must be owned by root or the user and not group- or world-writable unless sticky (as
//!   `/tmp` is) — OpenSSH's StrictModes walk. With every directory on the way closed to
//!   other users, nobody else can swap the file between this check and the exec.
//! - On a store shared with other machines (PostgreSQL), the command must also lie in or
//!   below a directory of the machine-local, colon-separated `$MODELAUTH_TRUSTED_DIRS`
//!   (read from the environment, never from the store). Unset: no store-named command runs.
//! - A SQLite store (a file the user owns, checked when it is opened) keeps the owner and
//!   mode checks only.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// The environment variable listing the directories whose commands a shared store may name.
pub(crate) const TRUSTED_DIRS_VAR: &str = "MODELAUTH_TRUSTED_DIRS";

static SHARED_STORE: AtomicBool = AtomicBool::new(false);

/// Records whether this process's store is shared with other machines (PostgreSQL): then
/// store-named commands must also lie under `$MODELAUTH_TRUSTED_DIRS`. Set once when the
/// store is opened ([`crate::handlers::App::new`]).
pub(crate) fn set_shared_store(shared: bool) {
    SHARED_STORE.store(shared, Ordering::SeqCst);
}

/// Whether [`set_shared_store`] said the store is shared.
pub(crate) fn shared_store() -> bool {
    SHARED_STORE.load(Ordering::SeqCst)
}

/// Why a command was refused: a stable word for `data.reason`'s companion `data.trust` and
/// a sentence for people (paths only, never a value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// `not_found`, `not_regular`, `bad_owner`, `writable`, `dir_bad_owner`,
    /// `dir_writable`, `no_trusted_dirs`, `outside_trusted_dirs`.
    pub why: &'static str,
    /// What is wrong, naming the path.
    pub message: String,
}

fn refuse(why: &'static str, message: String) -> Refusal {
    Refusal { why, message }
}

/// Why a file or directory with `owner` and `mode` is not trusted by user `uid`: `None`
/// when it is owned by root or `uid` and not group- or world-writable; with
/// `sticky_ok`, a sticky directory may be writable by others (`/tmp`). Pure, for tests.
pub(crate) fn untrusted_bits(
    owner: u32,
    mode: u32,
    uid: u32,
    sticky_ok: bool,
) -> Option<&'static str> {
    if owner != 0 && owner != uid {
        return Some("owner");
    }
    if mode & 0o022 != 0 && !(sticky_ok && mode & 0o1000 != 0) {
        return Some("writable");
    }
    None
}

/// The directories of a `$MODELAUTH_TRUSTED_DIRS` value: absolute entries, each resolved
/// (symlinks followed); empty, relative or missing entries are ignored.
pub(crate) fn trusted_dirs(value: &str) -> Vec<PathBuf> {
    value
        .split(':')
        .map(str::trim)
        .filter(|d| d.starts_with('/'))
        .filter_map(|d| std::fs::canonicalize(d).ok())
        .collect()
}

/// Checks that `command` may run for user `uid`; `trusted` is `Some(dirs)` when the store
/// is shared (the command must lie in or below one of `dirs`), `None` for a user's own
/// SQLite store. Returns the resolved path to run, so the file checked is the file run.
///
/// Errors: a [`Refusal`] naming the path and what is wrong with it.
pub(crate) fn check_command(
    command: &Path,
    uid: u32,
    trusted: Option<&[PathBuf]>,
) -> Result<PathBuf, Refusal> {
    let real = std::fs::canonicalize(command).map_err(|e| {
        refuse(
            "not_found",
            format!("{} cannot be resolved: {e}", command.display()),
        )
    })?;
    check_file(&real, uid)?;
    check_ancestors(&real, uid)?;
    if let Some(dirs) = trusted {
        check_trusted_dirs(&real, dirs)?;
    }
    Ok(real)
}

/// The command file itself: a regular file owned by root or `uid`, not group- or
/// world-writable.
fn check_file(real: &Path, uid: u32) -> Result<(), Refusal> {
    let meta = std::fs::metadata(real).map_err(|e| {
        refuse(
            "not_found",
            format!("{} cannot be examined: {e}", real.display()),
        )
    })?;
    if !meta.is_file() {
        return Err(refuse(
            "not_regular",
            format!("{} is not a regular file", real.display()),
        ));
    }
    match untrusted_bits(meta.uid(), meta.mode(), uid, false) {
        Some("owner") => Err(refuse(
            "bad_owner",
            format!(
                "{} is owned by uid {}, not by root or this user (uid {uid})",
                real.display(),
                meta.uid()
            ),
        )),
        Some(_) => Err(refuse(
            "writable",
            format!(
                "{} is group- or world-writable (mode {:o})",
                real.display(),
                meta.mode() & 0o7777
            ),
        )),
        None => Ok(()),
    }
}

/// Every directory above the command (StrictModes): owned by root or `uid`, not group- or
/// world-writable — the command's own directory even if sticky, the ones above it unless
/// sticky.
fn check_ancestors(real: &Path, uid: u32) -> Result<(), Refusal> {
    for (i, dir) in real.ancestors().skip(1).enumerate() {
        let m = std::fs::metadata(dir).map_err(|e| {
            refuse(
                "not_found",
                format!("{} cannot be examined: {e}", dir.display()),
            )
        })?;
        match untrusted_bits(m.uid(), m.mode(), uid, i > 0) {
            Some("owner") => {
                return Err(refuse(
                    "dir_bad_owner",
                    format!(
                        "directory {} is owned by uid {}, not by root or this user (uid {uid})",
                        dir.display(),
                        m.uid()
                    ),
                ))
            }
            Some(_) => {
                return Err(refuse(
                    "dir_writable",
                    format!(
                        "directory {} is group- or world-writable (mode {:o})",
                        dir.display(),
                        m.mode() & 0o7777
                    ),
                ))
            }
            None => {}
        }
    }
    Ok(())
}

/// On a shared store: the command lies in or below one of `dirs` (none: nothing runs).
fn check_trusted_dirs(real: &Path, dirs: &[PathBuf]) -> Result<(), Refusal> {
    if dirs.is_empty() {
        return Err(refuse(
            "no_trusted_dirs",
            format!(
                "the store is shared (PostgreSQL) and ${TRUSTED_DIRS_VAR} is not set on this machine, so no command named by the store runs ({})",
                real.display()
            ),
        ));
    }
    if !dirs.iter().any(|d| real.starts_with(d)) {
        return Err(refuse(
            "outside_trusted_dirs",
            format!(
                "{} is not in a directory of ${TRUSTED_DIRS_VAR} on this machine",
                real.display()
            ),
        ));
    }
    Ok(())
}

/// The effective user id of this process.
pub(crate) fn current_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &Path, mode: u32) -> PathBuf {
        let p = dir.join("helper");
        std::fs::write(&p, "#!/bin/sh\necho x\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn bits() {
        assert_eq!(untrusted_bits(0, 0o755, 1000, false), None);
        assert_eq!(untrusted_bits(1000, 0o700, 1000, false), None);
        assert_eq!(untrusted_bits(1001, 0o700, 1000, false), Some("owner"));
        assert_eq!(untrusted_bits(1000, 0o775, 1000, false), Some("writable"));
        assert_eq!(untrusted_bits(1000, 0o757, 1000, false), Some("writable"));
        assert_eq!(untrusted_bits(0, 0o1777, 1000, true), None);
        assert_eq!(untrusted_bits(0, 0o1777, 1000, false), Some("writable"));
        assert_eq!(untrusted_bits(0, 0o777, 1000, true), Some("writable"));
    }

    #[test]
    fn the_file_and_its_directory_are_checked() {
        let d = tempfile::tempdir().unwrap();
        let uid = current_uid();
        let p = script(d.path(), 0o755);
        assert!(check_command(&p, uid, None).is_ok());
        let p = script(d.path(), 0o777);
        assert_eq!(check_command(&p, uid, None).unwrap_err().why, "writable");
        let p = script(d.path(), 0o755);
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert_eq!(
            check_command(&p, uid, None).unwrap_err().why,
            "dir_writable"
        );
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        // Another owner (a uid nobody has) for the checker's point of view.
        assert_eq!(
            check_command(&p, uid.wrapping_add(4242).max(1), None)
                .map_err(|r| r.why)
                .err(),
            if uid == 0 { None } else { Some("bad_owner") }
        );
    }

    #[test]
    fn a_symlink_is_checked_at_its_target() {
        let d = tempfile::tempdir().unwrap();
        let uid = current_uid();
        let open = d.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let target = script(&open, 0o755);
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert_eq!(
            check_command(&link, uid, None).unwrap_err().why,
            "dir_writable"
        );
    }

    #[test]
    fn a_shared_store_needs_the_trusted_dirs() {
        let d = tempfile::tempdir().unwrap();
        let uid = current_uid();
        let p = script(d.path(), 0o755);
        assert_eq!(
            check_command(&p, uid, Some(&[])).unwrap_err().why,
            "no_trusted_dirs"
        );
        let other = tempfile::tempdir().unwrap();
        let dirs = trusted_dirs(&format!("relative:{}:", other.path().display()));
        assert_eq!(dirs.len(), 1);
        assert_eq!(
            check_command(&p, uid, Some(&dirs)).unwrap_err().why,
            "outside_trusted_dirs"
        );
        let dirs = trusted_dirs(&format!("{}", d.path().display()));
        assert_eq!(
            check_command(&p, uid, Some(&dirs)).unwrap(),
            std::fs::canonicalize(&p).unwrap()
        );
        // A prefix that is not a whole path component does not count.
        let sib = PathBuf::from(format!("{}x", d.path().display()));
        assert_eq!(
            check_command(&p, uid, Some(&[sib])).unwrap_err().why,
            "outside_trusted_dirs"
        );
    }
}
