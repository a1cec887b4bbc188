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
