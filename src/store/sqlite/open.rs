//! Opening the SQLite store so that a read writes nothing (issue 19), and checking that
//! the file SQLite opened is the one that was checked (issue 20).
//!
//! - Every read-write connection keeps its `-wal` and `-shm` when it closes
//!   (`SQLITE_FCNTL_PERSIST_WAL`), with the `-wal` truncated to 0 bytes on close
//!   (`journal_size_limit`). They are created once, by the first write, and never removed.
//! - A read on a store that has both opens it `mode=ro&readonly_shm=1`: the database is
//!   opened read-only, the `-shm` `O_RDONLY` and mapped read-only, the `-wal` is not
//!   created (it exists). With a writer alive, the reader uses its WAL index; without
//!   one, SQLite reads the `-wal` into private memory (empty after a clean close). No
//!   file is created, written, truncated, chmod-ed or removed (`bench/strace-read.sh`,
//!   `tests/sqlite_location.rs`).
//! - A store without them (written by an older modelauth, which removed them on close) is
//!   opened read-write once, which creates them; from then on reads write nothing.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use crate::core::error::RpcError;
use crate::store::flock::FileId;

use super::checks::location_error;
use super::{map_sqlite, uri_path, SqliteStore};

/// Largest `-wal` kept between transactions (bytes); truncated to 0 when a writer closes.
const WAL_SIZE_LIMIT: i64 = 4 << 20;

/// Process-wide SQLite settings, applied once before the library initialises (so before
/// the first connection of the process; called by every open in this module's parent).
///
/// No bulk page-cache allocation (`SQLITE_CONFIG_PAGECACHE` with no buffer and 0 lines):
/// by default each connection allocates 20 cache lines (~86 KiB) up front and writes a
/// header into each, one page fault per line, before reading anything; a cold one-shot
/// call reads a handful of pages (issue 19: page faults are most of a cold start). Cache
/// lines are then allocated one by one as pages are read; a warm `serve` keeps them.
///
/// A small lookaside (`SQLITE_CONFIG_LOOKASIDE`: 64 slots of 128 bytes, 8 KiB, instead of
/// SQLite's default 48 KiB): SQLite threads a free list through every slot when a
/// connection opens, touching every page of it (issue 19: page faults of a cold call);
/// allocations beyond the slots go to `malloc`.
/// Once SQLite is initialised (another module opened a database first) this is a no-op.
pub(crate) fn configure_library() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: SQLITE_CONFIG_PAGECACHE takes (void *buffer, int line size, int lines);
        // a null buffer with 0 lines is documented as "no bulk allocation";
        // SQLITE_CONFIG_LOOKASIDE takes (int, int). sqlite3_config is only called here,
        // once, before any other SQLite call of this module; if the library is already
        // initialised it returns SQLITE_MISUSE and changes nothing.
        unsafe {
            rusqlite::ffi::sqlite3_config(
                rusqlite::ffi::SQLITE_CONFIG_PAGECACHE,
                std::ptr::null_mut::<std::os::raw::c_void>(),
                0 as std::os::raw::c_int,
                0 as std::os::raw::c_int,
            );
            // (int slot size, int slot count), as documented for SQLITE_CONFIG_LOOKASIDE.
            rusqlite::ffi::sqlite3_config(
                rusqlite::ffi::SQLITE_CONFIG_LOOKASIDE,
                128 as std::os::raw::c_int,
                64 as std::os::raw::c_int,
            );
        }
    });
}

/// How long after its last modification a store file's state is not trusted as a cache key
/// ("racily clean", as git's index): file times have the granularity of the kernel's
/// clock tick, or coarser (a second, two) on some file systems, so two commits within one
/// tick could leave the same times. A read within this window caches nothing.
#[cfg(not(test))]
const RACY_WINDOW: std::time::Duration = std::time::Duration::from_secs(2);
#[cfg(test)]
const RACY_WINDOW: std::time::Duration = std::time::Duration::from_millis(300);

/// The change marker of a read-only connection (see [`crate::store::ChangeMarker`]).
///
/// `PRAGMA data_version` cannot serve here: a read-only connection with no live writer
/// holds no shared WAL index (`readonly_shm`: SQLite re-reads the `-wal` into private
/// memory for each transaction) and reports a change on every transaction, which emptied
/// the read cache of a `serve` whose store was opened read-only at every request (issue
/// 19: 10k instead of 100k+ resolves/s). Instead: the identity, size and modification
/// time of the database and its `-wal`, and the `-wal` header (checkpoint sequence and
/// salts, which change when the log restarts). Every commit appends to the `-wal` or
/// restarts it, and every checkpoint writes the database file; within [`RACY_WINDOW`] of
/// the last modification the state is not trusted (`None`: nothing cached), so equal
/// times cannot hide a commit. `None` also when a file cannot be read. (Not the change
/// time: as root, SQLite `fchown`s the `-wal`/`-shm` at every open, which moves it.)
pub(super) fn readonly_marker(c: &Connection) -> Option<i64> {
    use std::hash::{Hash, Hasher};
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let db = Path::new(c.path().filter(|p| !p.is_empty())?);
    let wal = sidecar(db, "-wal");
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    for (i, path) in [db, wal.as_path()].into_iter().enumerate() {
        let m = match std::fs::symlink_metadata(path) {
            Ok(m) => m,
            // No `-wal` (yet): that is a state too.
            Err(e) if i == 1 && e.kind() == std::io::ErrorKind::NotFound => {
                0u8.hash(&mut h);
                continue;
            }
            Err(_) => return None,
        };
        let (sec, nsec) = (m.mtime(), m.mtime_nsec());
        let t = std::time::Duration::new(u64::try_from(sec).ok()?, u32::try_from(nsec).ok()?);
        if now.checked_sub(t).is_none_or(|age| age < RACY_WINDOW) {
            return None;
        }
        (m.dev(), m.ino(), m.size(), sec, nsec).hash(&mut h);
        if i == 1 && m.size() >= 32 {
            let mut header = [0u8; 32];
            std::fs::File::open(path)
                .ok()?
                .read_exact(&mut header)
                .ok()?;
            header.hash(&mut h);
        }
    }
    Some(h.finish() as i64)
}

/// The path of `db`'s sidecar with `suffix` (`-wal`, `-shm`).
pub(super) fn sidecar(db: &Path, suffix: &str) -> std::path::PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(suffix);
    s.into()
}

/// Makes a read-write connection keep its `-wal`/`-shm` on close (see the module doc).
///
/// Errors: store errors from SQLite.
pub(super) fn persist_wal(c: &Connection, path: &Path) -> Result<(), RpcError> {
    let mut on: std::os::raw::c_int = 1;
    // SAFETY: a valid open handle, a NUL-terminated schema name and an `int` argument, as
    // SQLITE_FCNTL_PERSIST_WAL takes.
    let rc = unsafe {
        rusqlite::ffi::sqlite3_file_control(
            c.handle(),
            c"main".as_ptr(),
            rusqlite::ffi::SQLITE_FCNTL_PERSIST_WAL,
            (&mut on as *mut std::os::raw::c_int).cast(),
        )
    };
    if rc != rusqlite::ffi::SQLITE_OK {
        return Err(RpcError::internal(format!(
            "store {}: cannot keep the WAL (SQLite code {rc})",
            path.display()
        )));
    }
    c.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)
        .map_err(|e| map_sqlite(e, path))
}

/// The (device, inode) of the database file SQLite holds open on `c`, read with `fstat`
/// on its descriptor (`SQLITE_FCNTL_FILE_POINTER`; the unix VFS's `unixFile` starts with
/// three pointers and then the descriptor, a layout unchanged since 2008). `None` when it
/// cannot be read.
pub(super) fn opened_file_id(c: &Connection) -> Option<FileId> {
    #[repr(C)]
    struct UnixFileHead {
        methods: *const std::ffi::c_void,
        vfs: *const std::ffi::c_void,
        inode: *const std::ffi::c_void,
        fd: std::os::raw::c_int,
    }
    let mut file: *mut rusqlite::ffi::sqlite3_file = std::ptr::null_mut();
    // SAFETY: a valid open handle; FILE_POINTER writes one `sqlite3_file*`.
    let rc = unsafe {
        rusqlite::ffi::sqlite3_file_control(
            c.handle(),
            c"main".as_ptr(),
            rusqlite::ffi::SQLITE_FCNTL_FILE_POINTER,
            (&mut file as *mut *mut rusqlite::ffi::sqlite3_file).cast(),
        )
    };
    if rc != rusqlite::ffi::SQLITE_OK || file.is_null() {
        return None;
    }
    // SAFETY: the main database of a connection of the default (unix) VFS is a `unixFile`,
    // alive while `c` is; only its descriptor is read.
    let fd = unsafe { (*(file as *const UnixFileHead)).fd };
    if fd < 0 {
        return None;
    }
    // SAFETY: an all-zero stat is valid; fstat fills it for a valid descriptor.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is the VFS's open descriptor; fstat does not change it.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return None;
    }
    Some((st.st_dev, st.st_ino))
}

/// After SQLite opened the store: the file it opened must be the one
/// [`SqliteStore::verify_location`] checked (a directory entry swapped in between, e.g.
/// through a writable ancestor, is refused).
///
/// Errors: `store_permissions`.
pub(super) fn check_opened(
    c: &Connection,
    path: &Path,
    checked: Option<FileId>,
) -> Result<(), RpcError> {
    let opened = opened_file_id(c);
    if checked.is_some() && opened == checked {
        return Ok(());
    }
    Err(location_error(
        path,
        "was replaced between the location check and the open".to_string(),
        "make sure no one else can write the store's directories, then retry",
    ))
}

impl SqliteStore {
    /// Whether the store has its `-wal` and `-shm` as regular files (not symlinks), so a
    /// read can open it without creating anything.
    pub(super) fn has_wal_files(&self) -> bool {
        ["-wal", "-shm"].iter().all(|s| {
            std::fs::symlink_metadata(sidecar(&self.path, s)).is_ok_and(|m| m.file_type().is_file())
        })
    }

    /// Opens the store for reads only, writing nothing (see the module doc) and reads its
    /// schema version.
    ///
    /// Errors: store errors from SQLite.
    pub(super) fn connect_read_only_shm(&self) -> Result<(Connection, i64), RpcError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let uri = format!("file:{}?mode=ro&readonly_shm=1", uri_path(&self.path));
        configure_library();
        let c = Connection::open_with_flags(&uri, flags).map_err(|e| map_sqlite(e, &self.path))?;
        self.configure_readonly(&c)?;
        let v = self.user_version(&c)?;
        Ok((c, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// A read-only connection with no live writer (the store's writer has closed) keeps
    /// its change marker while nothing is committed, so a `serve` opened read-only keeps
    /// its read cache (it moved at every transaction: `data_version`). That a commit of
    /// another process moves it is `tests/read_cache.rs` (a writer in this process would
    /// share the read-only WAL index of this connection).
    #[test]
    fn a_read_only_connection_keeps_its_change_marker_while_nothing_is_committed() {
        use crate::core::profile::{Credential, Profile};
        use crate::store::{ChangeMarker, Store};
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("s.db");
        let p = Profile {
            id: "x:a".into(),
            provider: "x".into(),
            email: None,
            display_name: None,
            credential: Credential::ApiKey {
                key: Some(crate::core::secret_value::Secret::new("k")),
                key_ref: None,
                metadata: None,
            },
        };
        let mut w: Box<dyn Store> = Box::new(SqliteStore::new(path.clone()));
        w.write(|c| c.upsert_profile(None, &p, 1)).unwrap();
        drop(w);
        let marker = |r: &mut Box<dyn Store>| -> (Option<ChangeMarker>, usize) {
            r.read(|c| Ok((c.change_marker()?, c.view_profiles(None, None)?.len())))
                .unwrap()
        };
        let mut r: Box<dyn Store> = Box::new(SqliteStore::new(path.clone()));
        std::thread::sleep(RACY_WINDOW + std::time::Duration::from_millis(100));
        let (m1, n1) = marker(&mut r);
        let (m2, _) = marker(&mut r);
        let (m3, _) = marker(&mut r);
        assert_eq!(n1, 1);
        assert!(m1.is_some(), "a settled store has a marker");
        assert_eq!(
            m1, m2,
            "the marker of a read-only connection moved without a commit"
        );
        assert_eq!(
            m2, m3,
            "the marker of a read-only connection moved without a commit"
        );
    }

    #[test]
    fn the_opened_file_id_is_the_database_file() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a.db");
        let b = d.path().join("b.db");
        let ca = Connection::open(&a).unwrap();
        ca.execute_batch("CREATE TABLE t(x)").unwrap();
        std::fs::write(&b, b"").unwrap();
        let ma = std::fs::metadata(&a).unwrap();
        let mb = std::fs::metadata(&b).unwrap();
        assert_eq!(opened_file_id(&ca), Some((ma.dev(), ma.ino())));
        assert!(check_opened(&ca, &a, Some((ma.dev(), ma.ino()))).is_ok());
        let e = check_opened(&ca, &a, Some((mb.dev(), mb.ino()))).unwrap_err();
        assert_eq!(e.kind, crate::core::error::ErrorKind::StorePermissions);
        assert!(e.message.contains("replaced"), "{}", e.message);
    }
}
