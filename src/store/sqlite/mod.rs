//! The SQLite implementation of [`Store`] (protocol §2): profiles per scope, orders, lastGood, usage, providers
//! and settings in one database file.
//!
//! - Path: `--store`, else `$MODELAUTH_STORE`, else `$XDG_STATE_HOME/modelauth/store.db`,
//!   else `~/.local/state/modelauth/store.db` ([`default_store_path`]).
//! - Created on the first write: directory 0700, files 0600 whatever the umask. Reads of a
//!   missing store see an empty in-memory database and create nothing.
//! - WAL journal, `synchronous=FULL` (a rotated refresh token cannot be recovered),
//!   an explicit busy timeout, and `BEGIN IMMEDIATE` for every read-modify-write, so any
//!   number of processes can share one file without losing a write.
//! - Creation and migration run under an exclusive lock on a sidecar file
//!   (`<store>.lock`), so many processes opening a brand-new store at once do not race.
//! - Schema versioned with `PRAGMA user_version`; a newer version is refused untouched
//!   (`store_newer_schema`).
//!
//! Scopes are encoded as `''` for the shared scope and the agent id otherwise.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior};

use crate::core::error::{ErrorKind, RpcError};

use super::{scope_key, RefreshGuard, RefreshLocks, Store, StoreDescription, TxBody};

mod checks;
mod open;
mod queries;
mod schema;

use queries::{settings, sql};
use schema::{newer_schema, MIGRATIONS};

pub(crate) use checks::set_create_parents;

/// The schema version this build writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 2;

/// Default busy timeout in milliseconds (`settings.busyTimeoutMs`).
pub const DEFAULT_BUSY_TIMEOUT_MS: u64 = 5000;

/// Resolves the store path of protocol §2 from the flag, the environment and the home
/// directory. Errors only when none of `--store`, `MODELAUTH_STORE`, `XDG_STATE_HOME`, `HOME` is set.
pub fn default_store_path(flag: Option<&Path>) -> Result<PathBuf, RpcError> {
    if let Some(p) = flag {
        return Ok(p.to_path_buf());
    }
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(p) = env("MODELAUTH_STORE") {
        return Ok(PathBuf::from(p));
    }
    if let Some(x) = env("XDG_STATE_HOME") {
        return Ok(PathBuf::from(x).join("modelauth").join("store.db"));
    }
    if let Some(h) = env("HOME") {
        return Ok(PathBuf::from(h).join(".local/state/modelauth/store.db"));
    }
    Err(RpcError::new(
        ErrorKind::StorePermissions,
        "no store path: set --store, MODELAUTH_STORE, XDG_STATE_HOME or HOME",
    ))
}

/// No value over [`crate::store::limits::MAX_ROW_BYTES`] is read (or bound) on a store
/// connection: SQLite stops with `SQLITE_TOOBIG` instead (issue 20).
fn cap_values(c: &Connection, path: &Path) -> Result<(), RpcError> {
    let cap = crate::store::limits::MAX_ROW_BYTES as i32;
    c.set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_LENGTH, cap)
        .map_err(|e| map_sqlite(e, path))?;
    Ok(())
}

/// Maps a SQLite error to the store error kinds of protocol §7.
pub(crate) fn map_sqlite(e: rusqlite::Error, path: &Path) -> RpcError {
    let p = path.display();
    match &e {
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => RpcError::new(
                ErrorKind::StoreBusy,
                format!("the store {p} stayed locked by another process past the busy timeout"),
            )
            .with_hint("retry; raise settings.busyTimeoutMs if this happens often"),
            ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt => RpcError::new(
                ErrorKind::StoreCorrupt,
                format!("the store {p} is not a readable modelauth database"),
            )
            .with_hint("move the file aside (it is left untouched) or point --store elsewhere"),
            // Writes are checked before they get here (`store::limits`): a value over the
            // cap met on read.
            ErrorCode::TooBig => crate::store::limits::row_too_large("a stored value", &p.to_string()),
            ErrorCode::ReadOnly => RpcError::new(
                ErrorKind::StoreReadonly,
                format!("the store {p} is read-only"),
            ),
            ErrorCode::CannotOpen
            | ErrorCode::PermissionDenied
            | ErrorCode::AuthorizationForStatementDenied => RpcError::new(
                ErrorKind::StorePermissions,
                format!("cannot open the store {p}: permission denied or missing directory"),
            ),
            ErrorCode::DiskFull => RpcError::new(
                ErrorKind::StoreReadonly,
                format!("the disk holding the store {p} is full; nothing was changed"),
            )
            .with("reason", "disk_full")
            .with_hint("free some space and retry")
            .retryable(true),
            // A full disk often shows as an I/O error first: the WAL index (-shm) cannot
            // grow. The store file itself is intact; this is not corruption.
            ErrorCode::SystemIoFailure => RpcError::new(
                ErrorKind::StoreReadonly,
                format!(
                    "I/O error on the store {p} or its -wal/-shm files (is the disk full?); nothing was changed"
                ),
            )
            .with("reason", "io_error")
            .with_hint("free some space and retry; the store file is left as it was")
            .retryable(true),
            _ => RpcError::internal(format!("store {p}: {e}")),
        },
        _ => RpcError::internal(format!("store {p}: {e}")),
    }
}

/// An empty in-memory store with the current schema: what reads of a store that does not
/// exist yet see (also used by other backends for their not-yet-created stores).
pub(crate) fn empty_connection() -> Result<Connection, RpcError> {
    let p = Path::new("(empty store)");
    open::configure_library();
    let mut c = Connection::open_in_memory().map_err(|e| map_sqlite(e, p))?;
    let tx = c.transaction().map_err(|e| map_sqlite(e, p))?;
    for sql in MIGRATIONS {
        tx.execute_batch(sql).map_err(|e| map_sqlite(e, p))?;
    }
    tx.commit().map_err(|e| map_sqlite(e, p))?;
    Ok(c)
}

fn io_error(e: std::io::Error, what: &str, path: &Path) -> RpcError {
    let kind = match e.kind() {
        std::io::ErrorKind::PermissionDenied => ErrorKind::StorePermissions,
        std::io::ErrorKind::ReadOnlyFilesystem => ErrorKind::StoreReadonly,
        std::io::ErrorKind::StorageFull => ErrorKind::StoreReadonly,
        _ => ErrorKind::StorePermissions,
    };
    RpcError::new(kind, format!("cannot {what} {}: {e}", path.display()))
}

/// The SQLite store handle: one lazily opened connection to the file.
pub struct SqliteStore {
    path: PathBuf,
    conn: Option<Connection>,
    empty: Option<Connection>,
    busy_timeout_ms: u64,
    /// Set when the file could only be opened read-only (a read-only file system, a file
    /// or directory we may not write): reads work, writes are `store_readonly`.
    readonly: bool,
    /// Whether `conn` was opened for reads only ([`open`]): a write reopens it read-write.
    conn_ro: bool,
    /// The stored settings (busy timeout) are applied by the first read transaction of a
    /// connection opened for reads, inside it: two lock cycles fewer on a cold call (issue
    /// 19).
    settings_pending: bool,
}

impl SqliteStore {
    /// A handle on the store at `path`; nothing is opened or created yet.
    pub fn new(path: PathBuf) -> Self {
        SqliteStore {
            path,
            conn: None,
            empty: None,
            busy_timeout_ms: DEFAULT_BUSY_TIMEOUT_MS,
            readonly: false,
            conn_ro: false,
            settings_pending: false,
        }
    }

    /// Whether the store file exists.
    pub(crate) fn exists(&self) -> bool {
        self.path.exists()
    }

    /// Sets the busy timeout (ms) for this and later connections.
    /// Values above [`crate::core::settings::BUSY_TIMEOUT_MS_RANGE`] are clamped to its end.
    pub(crate) fn set_busy_timeout(&mut self, ms: u64) {
        self.busy_timeout_ms = ms;
        if let Some(c) = &self.conn {
            let _ = c.busy_timeout(busy_duration(ms));
        }
    }

    fn configure(&self, c: &Connection) -> Result<(), RpcError> {
        c.busy_timeout(busy_duration(self.busy_timeout_ms))
            .map_err(|e| map_sqlite(e, &self.path))?;
        // secure_delete: a replaced or deleted row (a plaintext secret sealed by
        // store.seal, an old ciphertext after store.rekey) is overwritten, not left in a
        // free page (PROTOCOL §9 r3).
        c.execute_batch("PRAGMA synchronous=FULL; PRAGMA secure_delete=ON;")
            .map_err(|e| map_sqlite(e, &self.path))?;
        cap_values(c, &self.path)?;
        c.set_prepared_statement_cache_capacity(64);
        Ok(())
    }

    /// Opens the file read-write and reads its schema version (the first read is what
    /// fails when the file cannot be used, e.g. when the WAL index cannot be created).
    fn connect_rw(&self) -> Result<(Connection, i64), RpcError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        open::configure_library();
        let c = Connection::open_with_flags(&self.path, flags)
            .map_err(|e| map_sqlite(e, &self.path))?;
        self.configure(&c)?;
        let v = self.user_version(&c)?;
        Ok((c, v))
    }

    /// Opens the file read-only: `mode=ro`, and when even the WAL index (`-shm`) cannot be
    /// created (a read-only file system) `immutable=1`, which is safe there because no
    /// process can write the file either.
    fn connect_ro(&self) -> Result<(Connection, i64), RpcError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut last = None;
        for query in ["mode=ro", "mode=ro&immutable=1"] {
            let uri = format!("file:{}?{query}", uri_path(&self.path));
            open::configure_library();
            let r = Connection::open_with_flags(&uri, flags)
                .map_err(|e| map_sqlite(e, &self.path))
                .and_then(|c| {
                    self.configure_readonly(&c)?;
                    let v = self.user_version(&c)?;
                    Ok((c, v))
                });
            match r {
                Ok(ok) => return Ok(ok),
                Err(e)
                    if matches!(
                        e.kind,
                        ErrorKind::StorePermissions | ErrorKind::StoreReadonly
                    ) =>
                {
                    last = Some(e)
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("tried at least once"))
    }

    fn configure_readonly(&self, c: &Connection) -> Result<(), RpcError> {
        c.busy_timeout(busy_duration(self.busy_timeout_ms))
            .map_err(|e| map_sqlite(e, &self.path))?;
        cap_values(c, &self.path)?;
        c.set_prepared_statement_cache_capacity(64);
        Ok(())
    }

    /// Opens an existing store for reads: without writing anything when it has its `-wal`
    /// and `-shm` ([`open`]); otherwise (or when it needs a migration) as
    /// [`Self::open_existing`] does.
    fn open_for_read(&mut self) -> Result<(), RpcError> {
        if !self.has_wal_files() {
            return self.open_existing();
        }
        let checked = self.verify_location()?;
        let (c, v) = match self.connect_read_only_shm() {
            Ok(ok) => ok,
            Err(_) => return self.open_existing(),
        };
        open::check_opened(&c, &self.path, checked)?;
        if v > SCHEMA_VERSION {
            return Err(newer_schema(&self.path, v));
        }
        if v < SCHEMA_VERSION {
            drop(c);
            return self.open_existing();
        }
        self.settings_pending = true;
        self.conn = Some(c);
        self.conn_ro = true;
        Ok(())
    }

    fn open_existing(&mut self) -> Result<(), RpcError> {
        let checked = self.verify_location()?;
        let (mut c, v, readonly) = match self.connect_rw() {
            Ok((c, v)) => {
                let ro = c.is_readonly(rusqlite::MAIN_DB).unwrap_or(false);
                (c, v, ro)
            }
            Err(e)
                if matches!(
                    e.kind,
                    ErrorKind::StorePermissions | ErrorKind::StoreReadonly
                ) =>
            {
                match self.connect_ro() {
                    Ok((c, v)) => (c, v, true),
                    Err(_) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        open::check_opened(&c, &self.path, checked)?;
        if v > SCHEMA_VERSION {
            return Err(newer_schema(&self.path, v));
        }
        if readonly {
            tracing::debug!("the store is read-only: reads only");
            if v < SCHEMA_VERSION {
                return Err(readonly_error(&self.path)
                    .with_hint("the store needs a schema upgrade, which needs write access"));
            }
        }
        self.readonly = readonly;
        if v < SCHEMA_VERSION {
            // Version and tables from one statement (one snapshot): another process may be
            // creating the store right now, and its tables and version appear together.
            let (v, tables): (i64, i64) = c
                .query_row(
                    "SELECT (SELECT user_version FROM pragma_user_version), count(*) FROM sqlite_master",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(|e| map_sqlite(e, &self.path))?;
            if v == 0 && tables > 0 {
                // Not an empty file we created but did not finish: something not ours.
                return Err(RpcError::new(
                    ErrorKind::StoreCorrupt,
                    format!(
                        "{} is a SQLite database, but not a modelauth store",
                        self.path.display()
                    ),
                ));
            }
            if v < SCHEMA_VERSION {
                self.with_setup_lock(|| self.migrate(&mut c))?;
            }
        }
        if !readonly {
            // Only now, on a store this build can use: a refused one keeps no -wal/-shm.
            open::persist_wal(&c, &self.path)?;
        }
        self.apply_stored_settings(&c);
        self.conn = Some(c);
        self.conn_ro = false;
        Ok(())
    }

    /// Stored settings, written by any process, apply from the first open on. Bad ones
    /// (out of bounds, unparsable) never stop the store from opening: they are named on
    /// stderr and the defaults are used, so a settings.set can still repair them.
    fn apply_stored_settings(&mut self, c: &Connection) {
        self.settings_pending = false;
        if let Some(ms) = stored_busy_timeout(c, &self.path) {
            self.busy_timeout_ms = ms;
        }
    }

    fn create(&mut self) -> Result<(), RpcError> {
        let path = self.path.clone();
        self.with_setup_lock(|| {
            if !path.exists() {
                let f = OpenOptions::new()
                    .create_new(true)
                    .write(true)
                    .mode(0o600)
                    .open(&path);
                match f {
                    Ok(f) => {
                        f.set_permissions(fs::Permissions::from_mode(0o600))
                            .map_err(|e| io_error(e, "set permissions on", &path))?;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(io_error(e, "create the store", &path)),
                }
            }
            Ok(())
        })?;
        self.open_existing()
    }

    /// The connection for reads: the file if it exists, else an empty in-memory store.
    fn read_conn(&mut self) -> Result<&mut Connection, RpcError> {
        if self.conn.is_none() {
            if self.path.exists() {
                self.open_for_read()?;
            } else {
                if self.empty.is_none() {
                    self.empty = Some(empty_connection()?);
                }
                return Ok(self.empty.as_mut().expect("set above"));
            }
        }
        Ok(self.conn.as_mut().expect("opened above"))
    }

    fn write_conn(&mut self) -> Result<&mut Connection, RpcError> {
        if self.conn_ro {
            // Opened for reads only: closed (it holds no lock between transactions) and
            // reopened read-write.
            self.conn = None;
            self.conn_ro = false;
        }
        if self.conn.is_none() {
            if self.path.exists() {
                self.open_existing()?;
            } else {
                self.create()?;
            }
            self.empty = None;
        }
        Ok(self.conn.as_mut().expect("opened above"))
    }

    /// Schema version of the file, or `None` when it does not exist. Never creates it.
    pub(crate) fn schema_version(&mut self) -> Result<Option<i64>, RpcError> {
        if !self.path.exists() {
            return Ok(None);
        }
        let c = self.read_conn()?;
        Ok(Some(
            c.pragma_query_value(None, "user_version", |r| r.get(0))
                .unwrap_or(0),
        ))
    }

    /// Runs `f` in a read transaction (a consistent snapshot). A missing store reads as empty.
    ///
    /// `BEGIN` and `COMMIT` are cached statements (rusqlite's `Transaction` parses both
    /// again each time: a warm `serve` answering from its read cache paid for it at every
    /// request, issue 19); a body that fails — or panics — is rolled back.
    fn read_in_tx(&mut self, f: TxBody<'_>) -> Result<(), RpcError> {
        let path = self.path.clone();
        self.read_conn()?;
        let pending = std::mem::take(&mut self.settings_pending);
        let (r, busy) = Self::read_on(self.read_conn()?, &path, pending, f);
        if let Some(ms) = busy {
            self.busy_timeout_ms = ms;
        } else if pending && r.is_err() {
            // Not applied (the transaction did not begin): the next read tries again.
            self.settings_pending = true;
        }
        r
    }

    /// [`Self::read_in_tx`] on `c`; with `pending`, the stored settings are applied inside
    /// the transaction first (their busy timeout is returned).
    fn read_on(
        c: &Connection,
        path: &Path,
        pending: bool,
        f: TxBody<'_>,
    ) -> (Result<(), RpcError>, Option<u64>) {
        let run = |c: &Connection, sql: &str| -> rusqlite::Result<()> {
            c.prepare_cached(sql)?.execute([]).map(|_| ())
        };
        if let Err(e) = run(c, "BEGIN DEFERRED") {
            return (Err(map_sqlite(e, path)), None);
        }
        /// Rolls the read back unless it committed (a body's error or panic), and closes
        /// its change-marker scope.
        struct Open<'c>(&'c Connection, bool);
        impl Drop for Open<'_> {
            fn drop(&mut self) {
                queries::read_marker_scope(None);
                if !self.1 {
                    let _ = self.0.execute_batch("ROLLBACK");
                }
            }
        }
        queries::read_marker_scope(Some(c));
        let mut open = Open(c, false);
        let busy = if pending {
            stored_busy_timeout(open.0, path)
        } else {
            None
        };
        let r = f(open.0).and_then(|()| {
            run(open.0, "COMMIT").map_err(|e| map_sqlite(e, path))?;
            open.1 = true;
            Ok(())
        });
        (r, busy)
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction and commits it durably; on error
    /// nothing is changed. Creates the store on first use.
    fn write_in_tx(&mut self, f: TxBody<'_>) -> Result<(), RpcError> {
        let path = self.path.clone();
        self.write_conn()?;
        if self.readonly {
            return Err(readonly_error(&path));
        }
        let c = self.write_conn()?;
        let tx = c
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| map_sqlite(e, &path))?;
        f(&*tx)?;
        tx.commit().map_err(|e| map_sqlite(e, &path))
    }
}

impl RefreshGuard for crate::store::flock::RefreshLock {}

impl Store for SqliteStore {
    fn describe(&self) -> StoreDescription {
        StoreDescription {
            backend: "sqlite",
            path: self.path.display().to_string(),
            exists: self.exists(),
        }
    }

    fn schema_version(&mut self) -> Result<Option<i64>, RpcError> {
        SqliteStore::schema_version(self)
    }

    fn set_busy_timeout(&mut self, ms: u64) {
        SqliteStore::set_busy_timeout(self, ms)
    }

    fn read_tx(&mut self, f: TxBody<'_>) -> Result<(), RpcError> {
        self.read_in_tx(f)
    }

    fn write_tx(&mut self, f: TxBody<'_>) -> Result<(), RpcError> {
        self.write_in_tx(f)
    }

    fn refresh_locks(&self) -> std::sync::Arc<dyn RefreshLocks> {
        std::sync::Arc::new(FileLocks {
            store: self.path.clone(),
        })
    }
}

/// Refresh locks as byte-range locks on the store file itself (see
/// [`crate::store::flock`]): keyed by its (device, inode), released by the kernel when the
/// holder dies.
struct FileLocks {
    store: PathBuf,
}

impl RefreshLocks for FileLocks {
    fn lock(
        &self,
        scope: Option<&str>,
        profile_id: &str,
        wait: Duration,
    ) -> Result<Option<Box<dyn RefreshGuard>>, RpcError> {
        // The lock is a byte of the store file: a store not written yet (nothing to
        // refresh in it) is created empty, 0600, as its first write would.
        if !self.store.exists() {
            let created = OpenOptions::new()
                .create_new(true)
                .write(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&self.store);
            match created {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(
                        io_error(e, "create the store", &self.store).with("reason", "lock_failed")
                    )
                }
            }
        }
        match crate::store::flock::acquire(&self.store, scope_key(scope), profile_id, wait) {
            Ok(l) => Ok(l.map(|l| Box::new(l) as Box<dyn RefreshGuard>)),
            Err(e) => {
                Err(io_error(e, "take the refresh lock on", &self.store)
                    .with("reason", "lock_failed"))
            }
        }
    }
}

/// Applies the store's stored busy timeout to `c` and returns it (ms), warning about
/// stored settings out of bounds; `None` when the settings cannot be read.
fn stored_busy_timeout(c: &Connection, path: &Path) -> Option<u64> {
    let stored = settings(c).ok()?;
    let (effective, ignored) = crate::core::settings::from_stored_checked(&stored);
    if !ignored.is_empty() {
        tracing::warn!(
            store = %path.display(),
            keys = ?ignored,
            "stored settings out of bounds or unreadable: using the defaults for them; fix with settings.set"
        );
    }
    let _ = c.busy_timeout(busy_duration(effective.busy_timeout_ms));
    Some(effective.busy_timeout_ms)
}

/// The busy timeout as a `Duration`, clamped to [`crate::core::settings::BUSY_TIMEOUT_MS_RANGE`]
/// (rusqlite panics on a value that does not fit SQLite's `int`).
pub(crate) fn busy_duration(ms: u64) -> Duration {
    Duration::from_millis(ms.min(*crate::core::settings::BUSY_TIMEOUT_MS_RANGE.end()))
}

/// Applies a busy timeout (ms, clamped) to `c` now.
///
/// Errors: store errors from SQLite.
fn apply_busy_timeout(c: &Connection, ms: u64) -> Result<(), RpcError> {
    c.busy_timeout(busy_duration(ms)).map_err(sql)
}

fn readonly_error(path: &Path) -> RpcError {
    RpcError::new(
        ErrorKind::StoreReadonly,
        format!(
            "the store {} can only be opened read-only (read-only file system, file or directory); nothing was changed",
            path.display()
        ),
    )
    .with_hint("reads work; to write, make the store and its directory writable or point --store elsewhere")
}

/// The path part of a SQLite `file:` URI: every byte outside `A-Z a-z 0-9 - . _ ~ /`
/// percent-encoded (so `?`, `#` and `%` in a path stay part of it).
fn uri_path(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut out = String::new();
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::profile::{Credential, Profile};
    use crate::core::secret_value::Secret;

    fn profile(id: &str) -> Profile {
        Profile {
            id: id.into(),
            provider: id.split(':').next().unwrap().into(),
            email: None,
            display_name: None,
            credential: Credential::ApiKey {
                key: Some(Secret::new("k")),
                key_ref: None,
                metadata: None,
            },
        }
    }

    #[test]
    fn reads_of_a_missing_store_create_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/store.db");
        let mut s: Box<dyn Store> = Box::new(SqliteStore::new(path.clone()));
        let v = s.read(|c| c.view_profiles(None, None)).unwrap();
        assert!(v.is_empty());
        assert!(!path.exists());
        assert!(!dir.path().join("sub").exists());
        assert_eq!(s.schema_version().unwrap(), None);
    }

    #[test]
    fn a_newer_schema_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        {
            let c = Connection::open(&path).unwrap();
            c.pragma_update(None, "user_version", 99).unwrap();
        }
        let before = fs::read(&path).unwrap();
        let mut s: Box<dyn Store> = Box::new(SqliteStore::new(path.clone()));
        let e = s
            .write(|c| c.upsert_profile(None, &profile("x:a"), 1))
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::StoreNewerSchema);
        let e = s.read(|c| c.view_profiles(None, None)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::StoreNewerSchema);
        assert_eq!(fs::read(&path).unwrap(), before);
    }

    #[test]
    fn a_file_that_is_not_sqlite_is_corrupt_and_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        fs::write(
            &path,
            b"this is not a database, just text that is long enough",
        )
        .unwrap();
        let before = fs::read(&path).unwrap();
        let mut s: Box<dyn Store> = Box::new(SqliteStore::new(path.clone()));
        let e = s.read(|c| c.view_profiles(None, None)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::StoreCorrupt);
        assert_eq!(fs::read(&path).unwrap(), before);
    }

    /// A read transaction reads the settings table once; `setting(key)` then answers from
    /// that read, as the table itself would: a value that is not JSON is `None`, and a
    /// write committed by another connection is seen by the next read transaction.
    #[test]
    fn a_read_answers_setting_from_its_own_read_of_settings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let mut s: Box<dyn Store> = Box::new(SqliteStore::new(path.clone()));
        s.write(|c| c.put_setting("cooldowns", &serde_json::json!({"x": 1})))
            .unwrap();
        Connection::open(&path)
            .unwrap()
            .execute(
                "INSERT INTO settings (key, value) VALUES ('broken', 'not json')",
                [],
            )
            .unwrap();
        let direct = |s: &mut Box<dyn Store>| {
            s.read(|c| {
                Ok((
                    c.setting("cooldowns")?,
                    c.setting("broken")?,
                    c.setting("none")?,
                ))
            })
            .unwrap()
        };
        let after_settings = |s: &mut Box<dyn Store>| {
            s.read(|c| {
                let all = c.settings()?;
                assert!(!all.contains_key("broken"));
                Ok((
                    c.setting("cooldowns")?,
                    c.setting("broken")?,
                    c.setting("none")?,
                ))
            })
            .unwrap()
        };
        let want = (Some(serde_json::json!({"x": 1})), None, None);
        assert_eq!(direct(&mut s), want);
        assert_eq!(after_settings(&mut s), want);
        Connection::open(&path)
            .unwrap()
            .execute(
                "UPDATE settings SET value = '2' WHERE key = 'cooldowns'",
                [],
            )
            .unwrap();
        let want = (Some(serde_json::json!(2)), None, None);
        assert_eq!(after_settings(&mut s), want);
        assert_eq!(direct(&mut s), want);
    }
}
