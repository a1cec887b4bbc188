//! Single flight for OAuth refresh (protocol §5.2): one exclusive lock per profile,
//! shared by every process using the store.
//!
//! The lock is an OS advisory lock (`flock`, via `std::fs::File::try_lock`) on a sidecar
//! file `<store>.locks/refresh-<hash>.lock`, where `<hash>` is the first 16 hex digits of
//! sha256(scope NUL profile id). The kernel releases it when the holder's file is closed,
//! including when the holder crashes or is killed, so a dead holder never blocks refresh.
//! A live holder is bounded by the token call's own time limit
//! ([`crate::secrets::oauth::REQUEST_TIMEOUT`]); waiters poll with a short backoff for at most
//! their wait limit ([`super::REFRESH_WAIT`]).
//!
//! Lock files are never deleted (deleting a lock file someone may be waiting on would let
//! two holders lock two different files); they are empty and one per refreshed profile.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// A held refresh lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct RefreshLock {
    file: File,
}

impl Drop for RefreshLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

/// The lock file of `(scope, profile_id)` for the store at `store`.
pub fn lock_path(store: &Path, scope: &str, profile_id: &str) -> PathBuf {
    let mut h = Sha256::new();
    h.update(scope.as_bytes());
    h.update([0u8]);
    h.update(profile_id.as_bytes());
    let hex: String = h
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    // Keyed by the real file: two processes reaching one store through a symlink (or
    // `..`, or a bind of the same path) take the same lock.
    let real = fs::canonicalize(store).unwrap_or_else(|_| store.to_path_buf());
    let mut dir = real.as_os_str().to_owned();
    dir.push(".locks");
    PathBuf::from(dir).join(format!("refresh-{hex}.lock"))
}

/// The pause before try number `attempt` (0-based) of taking a busy lock: 2 ms doubling
/// to at most 25 ms. Pure.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((2u64 << attempt.min(10)).min(25))
}

/// Takes the lock at `path`, waiting at most `wait`. `Ok(None)` when it stayed busy.
///
/// Errors: the lock directory or file cannot be created or opened.
pub fn acquire(path: &Path, wait: Duration) -> std::io::Result<Option<RefreshLock>> {
    if let Some(dir) = path.parent() {
        if !dir.is_dir() {
            match fs::DirBuilder::new().mode(0o700).create(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let deadline = Instant::now() + wait;
    let mut attempt = 0;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(Some(RefreshLock { file })),
            Err(TryLockError::WouldBlock) => {
                let now = Instant::now();
                if now >= deadline {
                    return Ok(None);
                }
                std::thread::sleep(backoff(attempt).min(deadline - now));
                attempt += 1;
            }
            Err(TryLockError::Error(e)) => return Err(e),
        }
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
    fn one_path_per_scope_and_id() {
        let s = Path::new("/tmp/x/store.db");
        let a = lock_path(s, "", "openai:a");
        assert_eq!(a, lock_path(s, "", "openai:a"));
        assert_ne!(a, lock_path(s, "main", "openai:a"));
        assert_ne!(a, lock_path(s, "", "openai:b"));
        assert!(a.starts_with("/tmp/x/store.db.locks"));
    }

    #[test]
    fn a_held_lock_excludes_others_until_dropped() {
        let d = tempfile::tempdir().unwrap();
        let p = lock_path(&d.path().join("store.db"), "", "openai:a");
        let held = acquire(&p, Duration::ZERO).unwrap().expect("free");
        assert!(acquire(&p, Duration::from_millis(30)).unwrap().is_none());
        drop(held);
        assert!(acquire(&p, Duration::ZERO).unwrap().is_some());
    }
}
