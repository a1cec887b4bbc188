//! Single flight for OAuth refresh (protocol §5.2): one exclusive lock per profile,
//! shared by every process using the store.
//!
//! The lock is an open-file-description byte-range lock (`F_OFD_SETLK`) of one byte of the
//! **store file itself**, at an offset far past anything SQLite locks or writes:
//! `2^62 + (first 8 bytes of sha256(scope NUL profile id)) / 4`. So it is keyed by the
//! file's (device, inode), not by a path: two processes reaching one store through a
//! symlink, a hard link, a bind mount or another container's mount take the same lock
//! (issue 20), and no lock file or directory exists that another user could plant or
//! hold (the former `<store>.locks/` directory is gone). OFD locks and the POSIX locks
//! SQLite takes (around offset 2^30) are on distinct bytes, so they never conflict.
//!
//! Closing any descriptor of a file drops every classic POSIX lock the process holds on
//! it, SQLite's included. So the descriptor used here is opened once per store file and
//! kept for the life of the process ([`store_file`]); a lock is released by unlocking its
//! byte, never by closing. The kernel releases everything when the holder dies, so a
//! crashed or killed holder never blocks refresh. Within one process, holders are kept
//! apart by a set of held (device, inode, offset) keys, since OFD locks on one descriptor
//! do not exclude each other. A live holder is bounded by the token call's own time limit
//! ([`crate::secrets::oauth::REQUEST_TIMEOUT`]); waiters poll with a short backoff for at
//! most their wait limit ([`super::REFRESH_WAIT`]).

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// (device, inode) of a file.
pub(crate) type FileId = (u64, u64);

/// A held refresh lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub(crate) struct RefreshLock {
    file: Arc<File>,
    key: (FileId, u64),
}

impl Drop for RefreshLock {
    fn drop(&mut self) {
        let _ = ofd_lock(&self.file, self.key.1, libc::F_UNLCK as i16);
        held()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}

/// The byte of the store file that is the lock of `(scope, profile_id)`: at least 2^62,
/// below 2^63 (the largest `off_t`). Pure.
pub(crate) fn lock_offset(scope: &str, profile_id: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(scope.as_bytes());
    h.update([0u8]);
    h.update(profile_id.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    (1u64 << 62) | (u64::from_be_bytes(b) >> 2)
}

/// The pause before try number `attempt` (0-based) of taking a busy lock: 2 ms doubling
/// to at most 25 ms. Pure.
pub(crate) fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((2u64 << attempt.min(10)).min(25))
}

fn held() -> &'static Mutex<HashSet<(FileId, u64)>> {
    static HELD: std::sync::OnceLock<Mutex<HashSet<(FileId, u64)>>> = std::sync::OnceLock::new();
    HELD.get_or_init(Default::default)
}

/// The process's descriptor of the store file at `store` (opened read-write, since a
/// write lock needs it, `O_NONBLOCK`, never closed), with its (device, inode). The file must
/// be a regular file of this user with exactly one link (a hard-linked store has two
/// `-wal`s and cannot be locked consistently).
///
/// Errors: the file cannot be opened, or is refused (`PermissionDenied`).
pub(crate) fn store_file(store: &Path) -> io::Result<(Arc<File>, FileId)> {
    static FILES: std::sync::OnceLock<Mutex<HashMap<FileId, Arc<File>>>> =
        std::sync::OnceLock::new();
    let check = |m: &std::fs::Metadata| {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let uid = unsafe { libc::geteuid() };
        if !m.is_file() || m.uid() != uid || m.nlink() != 1 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "not a regular file of this user with exactly one link",
            ));
        }
        Ok((m.dev(), m.ino()))
    };
    let id = check(&std::fs::metadata(store)?)?;
    let mut files = FILES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(kept) = files.get(&id) {
        return Ok((kept.clone(), id));
    }
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(store)?;
    if check(&f.metadata()?)? != id {
        // Replaced between the stat and the open: refuse (and keep the descriptor, whose
        // closing could drop SQLite's locks on that file).
        std::mem::forget(f);
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "the store file was replaced while it was being opened",
        ));
    }
    let f = Arc::new(f);
    files.insert(id, f.clone());
    Ok((f, id))
}

fn ofd_lock(f: &File, offset: u64, kind: i16) -> io::Result<bool> {
    // SAFETY: an all-zero flock is valid; the fields are set below.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind;
    fl.l_whence = libc::SEEK_SET as i16;
    fl.l_start = offset as libc::off_t;
    fl.l_len = 1;
    // SAFETY: a valid descriptor and a valid flock (l_pid 0, as OFD locks require).
    let r = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_OFD_SETLK, &mut fl) };
    if r == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EACCES) => Ok(false),
        _ => Err(e),
    }
}

/// Takes the lock of `(scope, profile_id)` on the store file `store`, waiting at most
/// `wait`. `Ok(None)` when it stayed busy.
///
/// Errors: the store file cannot be opened or locked, or is refused by [`store_file`].
pub(crate) fn acquire(
    store: &Path,
    scope: &str,
    profile_id: &str,
    wait: Duration,
) -> io::Result<Option<RefreshLock>> {
    let (file, id) = store_file(store)?;
    let key = (id, lock_offset(scope, profile_id));
    let deadline = Instant::now() + wait;
    let mut attempt = 0;
    loop {
        let mine = held().lock().unwrap_or_else(|p| p.into_inner()).insert(key);
        if mine {
            match ofd_lock(&file, key.1, libc::F_WRLCK as i16) {
                Ok(true) => return Ok(Some(RefreshLock { file, key })),
                Ok(false) => {}
                Err(e) => {
                    held()
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&key);
                    return Err(e);
                }
            }
            held()
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key);
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        std::thread::sleep(backoff(attempt).min(deadline - now));
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(0), Duration::from_millis(2));
        assert_eq!(backoff(1), Duration::from_millis(4));
        assert_eq!(backoff(3), Duration::from_millis(16));
        assert_eq!(backoff(4), Duration::from_millis(25));
        assert_eq!(backoff(99), Duration::from_millis(25));
    }

    #[test]
    fn one_byte_per_scope_and_id_far_from_sqlite() {
        let a = lock_offset("", "openai:a");
        assert_eq!(a, lock_offset("", "openai:a"));
        assert_ne!(a, lock_offset("main", "openai:a"));
        assert_ne!(a, lock_offset("", "openai:b"));
        for o in [a, lock_offset("x", "y")] {
            assert!((1 << 62..1 << 63).contains(&o), "{o:x}");
        }
    }

    #[test]
    fn a_held_lock_excludes_others_until_dropped() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("store.db");
        std::fs::write(&p, b"").unwrap();
        let held = acquire(&p, "", "openai:a", Duration::ZERO)
            .unwrap()
            .expect("free");
        assert!(acquire(&p, "", "openai:a", Duration::from_millis(30))
            .unwrap()
            .is_none());
        assert!(acquire(&p, "", "openai:b", Duration::ZERO)
            .unwrap()
            .is_some());
        drop(held);
        assert!(acquire(&p, "", "openai:a", Duration::ZERO)
            .unwrap()
            .is_some());
    }

    #[test]
    fn the_lock_is_the_file_not_the_path() {
        // Through a symlink and through a second directory's bind-like alias (a symlinked
        // directory): one file, one lock. No `.locks` directory appears.
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("store.db");
        std::fs::write(&p, b"").unwrap();
        let alias_dir = tempfile::tempdir().unwrap();
        let alias = alias_dir.path().join("elsewhere.db");
        std::os::unix::fs::symlink(&p, &alias).unwrap();
        let held = acquire(&p, "", "openai:a", Duration::ZERO)
            .unwrap()
            .expect("free");
        assert!(acquire(&alias, "", "openai:a", Duration::ZERO)
            .unwrap()
            .is_none());
        drop(held);
        let names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("store.db")]);
    }

    #[test]
    fn a_hard_linked_store_file_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("store.db");
        std::fs::write(&p, b"").unwrap();
        std::fs::hard_link(&p, d.path().join("link.db")).unwrap();
        let e = acquire(&p, "", "openai:a", Duration::ZERO).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
    }
}
