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

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior};

use crate::core::error::{ErrorKind, RpcError};
use crate::core::profile::{Profile, StoredProfile};
use crate::core::secret_value::Secret;
use crate::core::usage::Usage;

use super::{
    scope_key, ChangeMarker, RefreshGuard, RefreshLocks, Store, StoreDescription, Tx, TxBody,
};

/// The schema version this build writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 2;

/// Default busy timeout in milliseconds (`settings.busyTimeoutMs`).
pub const DEFAULT_BUSY_TIMEOUT_MS: u64 = 5000;

/// Forward migrations: entry `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 0 -> 1
    "CREATE TABLE profiles (
        scope TEXT NOT NULL,
        id TEXT NOT NULL,
        provider TEXT NOT NULL,
        body TEXT NOT NULL,
        revision INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (scope, id)
    ) WITHOUT ROWID;
    CREATE INDEX profiles_by_provider ON profiles (provider, scope);
    CREATE TABLE orders (
        scope TEXT NOT NULL,
        provider TEXT NOT NULL,
        ids TEXT NOT NULL,
        revision INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (scope, provider)
    ) WITHOUT ROWID;
    CREATE TABLE last_good (
        scope TEXT NOT NULL,
        provider TEXT NOT NULL,
        profile_id TEXT NOT NULL,
        PRIMARY KEY (scope, provider)
    ) WITHOUT ROWID;
    CREATE TABLE usage (
        profile_id TEXT PRIMARY KEY,
        body TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE providers (
        id TEXT PRIMARY KEY,
        body TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE settings (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;",
    // 1 -> 2: named secrets (the `store` SecretRef source, protocol §12 r3).
    "CREATE TABLE named_secrets (
        provider TEXT NOT NULL,
        id TEXT NOT NULL,
        value TEXT NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (provider, id)
    ) WITHOUT ROWID;
    CREATE TABLE import_marks (
        scope TEXT NOT NULL,
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        source TEXT NOT NULL,
        PRIMARY KEY (scope, kind, key)
    ) WITHOUT ROWID;",
];

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

/// Maps a SQLite error to the store error kinds of protocol §7.
pub fn map_sqlite(e: rusqlite::Error, path: &Path) -> RpcError {
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
        }
    }

    /// Whether the open store could only be opened read-only.
    pub fn is_readonly(&self) -> bool {
        self.readonly
    }

    /// The store's file path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the store file exists.
    pub fn exists(&self) -> bool {
        self.path.exists()
    }

    /// Sets the busy timeout (ms) for this and later connections.
    /// Values above [`crate::core::settings::BUSY_TIMEOUT_MS_RANGE`] are clamped to its end.
    pub fn set_busy_timeout(&mut self, ms: u64) {
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
        c.set_prepared_statement_cache_capacity(64);
        Ok(())
    }

    fn user_version(&self, c: &Connection) -> Result<i64, RpcError> {
        c.pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| map_sqlite(e, &self.path))
    }

    fn lock_path(&self) -> PathBuf {
        let mut s = self.path.as_os_str().to_owned();
        s.push(".lock");
        PathBuf::from(s)
    }

    /// Creates missing directories (0700) and runs `f` under the sidecar lock.
    fn with_setup_lock<T>(&self, f: impl FnOnce() -> Result<T, RpcError>) -> Result<T, RpcError> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_private_dirs(dir)?;
        }
        // Only the directories here: the store's own files may be open in this process
        // (a migration), and closing another descriptor of them would drop SQLite's
        // POSIX locks.
        self.verify_dirs()?;
        let lp = self.lock_path();
        // O_NOFOLLOW: a planted `store.db.lock` symlink is refused, never followed (and
        // its target never chmod-ed); the chmod below acts on the descriptor (fchmod).
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&lp)
            .map_err(|e| io_error(e, "create the lock file", &lp))?;
        check_own_file(&lock, &lp)?;
        lock.lock().map_err(|e| io_error(e, "lock", &lp))?;
        let r = f();
        let _ = lock.unlock();
        r
    }

    /// Brings the schema of `c` to [`SCHEMA_VERSION`] (caller holds the setup lock).
    fn migrate(&self, c: &mut Connection) -> Result<(), RpcError> {
        let mode: String = c
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(|e| map_sqlite(e, &self.path))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(mode, "journal_mode is not wal");
        }
        let tx = c
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| map_sqlite(e, &self.path))?;
        let v: i64 = tx
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| map_sqlite(e, &self.path))?;
        if v > SCHEMA_VERSION {
            return Err(newer_schema(&self.path, v));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(v as usize) {
            tracing::info!(from = i, to = i + 1, "migrating store schema");
            tx.execute_batch(sql)
                .map_err(|e| map_sqlite(e, &self.path))?;
        }
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(|e| map_sqlite(e, &self.path))?;
        tx.commit().map_err(|e| map_sqlite(e, &self.path))?;
        Ok(())
    }

    /// Opens the file read-write and reads its schema version (the first read is what
    /// fails when the file cannot be used, e.g. when the WAL index cannot be created).
    fn connect_rw(&self) -> Result<(Connection, i64), RpcError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
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
        c.set_prepared_statement_cache_capacity(64);
        Ok(())
    }

    fn open_existing(&mut self) -> Result<(), RpcError> {
        self.verify_location()?;
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
        // Stored settings, written by any process, apply from the first open on. Bad ones
        // (out of bounds, unparsable) never stop the store from opening: they are named
        // on stderr and the defaults are used, so a settings.set can still repair them.
        if let Ok(stored) = settings(&c) {
            let (effective, ignored) = crate::core::settings::from_stored_checked(&stored);
            if !ignored.is_empty() {
                tracing::warn!(
                    store = %self.path.display(),
                    keys = ?ignored,
                    "stored settings out of bounds or unreadable: using the defaults for them; fix with settings.set"
                );
            }
            self.busy_timeout_ms = effective.busy_timeout_ms;
            let _ = c.busy_timeout(busy_duration(effective.busy_timeout_ms));
        }
        self.conn = Some(c);
        Ok(())
    }

    /// The directory checks of [`Store::verify_location`] (no file is opened); returns the
    /// store's canonical path when it exists.
    fn verify_dirs(&self) -> Result<Option<PathBuf>, RpcError> {
        let real = fs::canonicalize(&self.path).ok();
        let mut dirs = vec![];
        for p in std::iter::once(self.path.as_path()).chain(real.as_deref()) {
            let d = match p.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => PathBuf::from("."),
            };
            if !dirs.contains(&d) {
                dirs.push(d);
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
    /// - group/world permission bits on any of them are removed through the descriptor
    ///   (`fchmod`), never a path.
    ///
    /// Errors: `store_permissions` naming the path.
    /// Runs before the connection is opened: closing a descriptor of the store file while
    /// SQLite holds POSIX locks on it would drop them.
    fn verify_location(&self) -> Result<(), RpcError> {
        let real = self.verify_dirs()?;
        match fs::metadata(&self.path) {
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
                check_own_file(&f, &self.path)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(e, "examine", &self.path)),
        }
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
        Ok(())
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
                self.open_existing()?;
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
    pub fn schema_version(&mut self) -> Result<Option<i64>, RpcError> {
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
    fn read_in_tx(&mut self, f: TxBody<'_>) -> Result<(), RpcError> {
        let path = self.path.clone();
        let c = self.read_conn()?;
        let tx = c
            .transaction_with_behavior(TransactionBehavior::Deferred)
            .map_err(|e| map_sqlite(e, &path))?;
        f(&*tx)?;
        tx.commit().map_err(|e| map_sqlite(e, &path))
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

/// Refresh locks as OS advisory locks on sidecar files next to the store (see
/// [`crate::store::flock`]): the kernel releases them when the holder's file closes.
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
        let lp = crate::store::flock::lock_path(&self.store, scope_key(scope), profile_id);
        match crate::store::flock::acquire(&lp, wait) {
            Ok(l) => Ok(l.map(|l| Box::new(l) as Box<dyn RefreshGuard>)),
            Err(e) => Err(io_error(e, "take the refresh lock", &lp).with("reason", "lock_failed")),
        }
    }
}

/// The SQL behind [`Tx`]: a connection inside a transaction opened by [`SqliteStore`].
impl Tx for Connection {
    fn change_marker(&self) -> Result<Option<ChangeMarker>, RpcError> {
        let v: i64 = self
            .prepare_cached("PRAGMA data_version")
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(sql)?;
        // SAFETY: only the address is used, as an identity; the handle is not dereferenced.
        let handle = unsafe { self.handle() } as usize as u64;
        Ok(Some((handle, v, self.total_changes())))
    }
    fn apply_busy_timeout(&self, ms: u64) -> Result<(), RpcError> {
        apply_busy_timeout(self, ms)
    }
    fn view_profiles(
        &self,
        a: Option<&str>,
        p: Option<&str>,
    ) -> Result<Vec<StoredProfile>, RpcError> {
        view_profiles(self, a, p)
    }
    fn view_profile(&self, a: Option<&str>, id: &str) -> Result<Option<StoredProfile>, RpcError> {
        view_profile(self, a, id)
    }
    fn scope_profile(&self, a: Option<&str>, id: &str) -> Result<Option<StoredProfile>, RpcError> {
        scope_profile(self, a, id)
    }
    fn upsert_profile(
        &self,
        a: Option<&str>,
        p: &Profile,
        now: i64,
    ) -> Result<(bool, i64), RpcError> {
        upsert_profile(self, a, p, now)
    }
    fn delete_profile(&self, a: Option<&str>, id: &str) -> Result<bool, RpcError> {
        delete_profile(self, a, id)
    }
    fn profile_id_exists_anywhere(&self, id: &str) -> Result<bool, RpcError> {
        profile_id_exists_anywhere(self, id)
    }
    fn scopes(&self) -> Result<Vec<Option<String>>, RpcError> {
        scopes(self)
    }
    fn scope_order(
        &self,
        a: Option<&str>,
        p: &str,
    ) -> Result<Option<(Vec<String>, i64)>, RpcError> {
        scope_order(self, a, p)
    }
    fn set_order(
        &self,
        a: Option<&str>,
        p: &str,
        ids: &[String],
        now: i64,
    ) -> Result<i64, RpcError> {
        set_order(self, a, p, ids, now)
    }
    fn clear_order(&self, a: Option<&str>, p: &str) -> Result<bool, RpcError> {
        clear_order(self, a, p)
    }
    fn scope_orders(&self, a: Option<&str>) -> Result<Vec<(String, Vec<String>)>, RpcError> {
        scope_orders(self, a)
    }
    fn last_good(&self, a: Option<&str>, p: &str) -> Result<Option<String>, RpcError> {
        last_good(self, a, p)
    }
    fn scope_last_good(&self, a: Option<&str>) -> Result<Vec<(String, String)>, RpcError> {
        scope_last_good(self, a)
    }
    fn set_last_good(&self, a: Option<&str>, p: &str, id: &str) -> Result<(), RpcError> {
        set_last_good(self, a, p, id)
    }
    fn clear_last_good_for(&self, a: Option<&str>, id: &str) -> Result<usize, RpcError> {
        clear_last_good_for(self, a, id)
    }
    fn usage(&self, id: &str) -> Result<Usage, RpcError> {
        usage(self, id)
    }
    fn usages(&self, ids: &[&str]) -> Result<HashMap<String, Usage>, RpcError> {
        usages(self, ids)
    }
    fn put_usage(&self, id: &str, u: &Usage) -> Result<(), RpcError> {
        put_usage(self, id, u)
    }
    fn setting(&self, key: &str) -> Result<Option<serde_json::Value>, RpcError> {
        setting(self, key)
    }
    fn settings(&self) -> Result<serde_json::Map<String, serde_json::Value>, RpcError> {
        settings(self)
    }
    fn put_setting(&self, key: &str, value: &serde_json::Value) -> Result<(), RpcError> {
        put_setting(self, key, value)
    }
    fn providers(&self) -> Result<Vec<(String, serde_json::Value)>, RpcError> {
        providers(self)
    }
    fn put_provider(&self, id: &str, body: &serde_json::Value) -> Result<bool, RpcError> {
        put_provider(self, id, body)
    }
    fn delete_provider(&self, id: &str) -> Result<bool, RpcError> {
        delete_provider(self, id)
    }
    fn named_secret(&self, provider: &str, id: &str) -> Result<Option<Secret>, RpcError> {
        self.prepare_cached("SELECT value FROM named_secrets WHERE provider = ?1 AND id = ?2")
            .map_err(sql)?
            .query_row(params![provider, id], |r| r.get::<_, String>(0))
            .optional()
            .map_err(sql)
            .map(|v| v.map(Secret::new))
    }
    fn named_secrets(&self) -> Result<Vec<(String, String, Secret)>, RpcError> {
        let mut s = self
            .prepare_cached("SELECT provider, id, value FROM named_secrets ORDER BY provider, id")
            .map_err(sql)?;
        let rows = s
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(sql)?;
        let mut out = vec![];
        for r in rows {
            let (p, id, v) = r.map_err(sql)?;
            out.push((p, id, Secret::new(v)));
        }
        Ok(out)
    }
    fn put_named_secret(
        &self,
        provider: &str,
        id: &str,
        value: &Secret,
        now: i64,
    ) -> Result<bool, RpcError> {
        let existed = self.named_secret(provider, id)?.is_some();
        self.prepare_cached("INSERT INTO named_secrets (provider, id, value, updated_at) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (provider, id) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at")
            .map_err(sql)?
            .execute(params![provider, id, value.expose(), now])
            .map_err(sql)?;
        Ok(!existed)
    }
    fn import_marks(
        &self,
        source: &str,
    ) -> Result<Vec<(Option<String>, String, String)>, RpcError> {
        let mut s = self
            .prepare_cached(
                "SELECT scope, kind, key FROM import_marks WHERE source = ?1 ORDER BY scope, kind, key",
            )
            .map_err(sql)?;
        let rows = s
            .query_map(params![source], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(sql)?;
        let mut out = vec![];
        for r in rows {
            let (scope, kind, key) = r.map_err(sql)?;
            out.push(((!scope.is_empty()).then_some(scope), kind, key));
        }
        Ok(out)
    }
    fn set_import_mark(
        &self,
        agent: Option<&str>,
        kind: &str,
        key: &str,
        source: &str,
    ) -> Result<(), RpcError> {
        self.prepare_cached("INSERT INTO import_marks (scope, kind, key, source) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (scope, kind, key) DO UPDATE SET source = excluded.source")
            .map_err(sql)?
            .execute(params![scope_key(agent), kind, key, source])
            .map_err(sql)?;
        Ok(())
    }
    fn delete_import_mark(
        &self,
        agent: Option<&str>,
        kind: &str,
        key: &str,
    ) -> Result<bool, RpcError> {
        let n = self
            .prepare_cached("DELETE FROM import_marks WHERE scope = ?1 AND kind = ?2 AND key = ?3")
            .map_err(sql)?
            .execute(params![scope_key(agent), kind, key])
            .map_err(sql)?;
        Ok(n > 0)
    }
    fn delete_named_secret(&self, provider: &str, id: &str) -> Result<bool, RpcError> {
        let n = self
            .prepare_cached("DELETE FROM named_secrets WHERE provider = ?1 AND id = ?2")
            .map_err(sql)?
            .execute(params![provider, id])
            .map_err(sql)?;
        Ok(n > 0)
    }
}

fn location_error(path: &Path, what: String, hint: &str) -> RpcError {
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
/// nobody can change it, they are only reported).
fn check_own_file(f: &fs::File, path: &Path) -> Result<(), RpcError> {
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
    Ok(())
}

/// The busy timeout as a `Duration`, clamped to [`crate::core::settings::BUSY_TIMEOUT_MS_RANGE`]
/// (rusqlite panics on a value that does not fit SQLite's `int`).
pub fn busy_duration(ms: u64) -> Duration {
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

fn newer_schema(path: &Path, v: i64) -> RpcError {
    RpcError::new(
        ErrorKind::StoreNewerSchema,
        format!(
            "the store {} has schema version {v}, newer than this modelauth understands ({SCHEMA_VERSION}); it was not changed",
            path.display()
        ),
    )
    .with("schemaVersion", v)
    .with_hint("upgrade modelauth")
}

static CREATE_PARENTS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Whether a first write may create the store directory's missing parents too (the
/// default). The CLI turns it off for a location named by `--store` or `$MODELAUTH_STORE`
/// without `--create-dirs` (PROTOCOL §10 r3): a mistyped path then fails instead of
/// silently creating a directory chain.
pub fn set_create_parents(on: bool) {
    CREATE_PARENTS.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// Creates `dir` and any missing parents with mode 0700 (set explicitly, whatever the umask).
fn create_private_dirs(dir: &Path) -> Result<(), RpcError> {
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

fn sql(e: rusqlite::Error) -> RpcError {
    // The path is added by map_sqlite at the transaction boundary; inside, keep the kind.
    map_sqlite(e, Path::new("(store)"))
}

fn parse_profile(body: &str) -> Result<Profile, RpcError> {
    serde_json::from_str(body).map_err(|_| {
        RpcError::new(
            ErrorKind::StoreCorrupt,
            "a stored profile could not be decoded",
        )
    })
}

fn row_to_stored(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String, i64, i64, i64)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn to_stored(row: (String, String, i64, i64, i64)) -> Result<StoredProfile, RpcError> {
    let (scope, body, revision, created_at, updated_at) = row;
    Ok(StoredProfile {
        profile: parse_profile(&body)?,
        scope: if scope.is_empty() { None } else { Some(scope) },
        revision,
        created_at,
        updated_at,
    })
}

// ---- Queries. Each takes a connection inside a transaction opened by Store::read/write.

/// The profiles an `agent` sees (its own plus shared; its own win on the same id), or the
/// shared ones without an agent; optionally of one provider. Sorted by provider, id.
fn view_profiles(
    c: &Connection,
    agent: Option<&str>,
    provider: Option<&str>,
) -> Result<Vec<StoredProfile>, RpcError> {
    let scope = scope_key(agent);
    let mut out: Vec<StoredProfile> = Vec::new();
    let mut push_rows = |stmt: &mut rusqlite::CachedStatement<'_>,
                         p: &[&dyn rusqlite::ToSql]|
     -> Result<(), RpcError> {
        let rows = stmt.query_map(p, row_to_stored).map_err(sql)?;
        for r in rows {
            out.push(to_stored(r.map_err(sql)?)?);
        }
        Ok(())
    };
    match provider {
        Some(p) => {
            let mut s = c
                .prepare_cached("SELECT scope, body, revision, created_at, updated_at FROM profiles WHERE provider = ?1 AND scope IN ('', ?2) ORDER BY id, scope DESC")
                .map_err(sql)?;
            push_rows(&mut s, &[&p, &scope])?;
        }
        None => {
            let mut s = c
                .prepare_cached("SELECT scope, body, revision, created_at, updated_at FROM profiles WHERE scope IN ('', ?1) ORDER BY provider, id, scope DESC")
                .map_err(sql)?;
            push_rows(&mut s, &[&scope])?;
        }
    }
    // With an agent, rows come agent-first for the same id (scope DESC puts '' last): keep the first.
    out.dedup_by(|b, a| a.profile.id == b.profile.id);
    Ok(out)
}

/// One profile in the view of `agent` (its own first, then shared).
fn view_profile(
    c: &Connection,
    agent: Option<&str>,
    id: &str,
) -> Result<Option<StoredProfile>, RpcError> {
    let mut s = c
        .prepare_cached("SELECT scope, body, revision, created_at, updated_at FROM profiles WHERE id = ?1 AND scope IN ('', ?2) ORDER BY scope DESC LIMIT 1")
        .map_err(sql)?;
    let row = s
        .query_row(params![id, scope_key(agent)], row_to_stored)
        .optional()
        .map_err(sql)?;
    row.map(to_stored).transpose()
}

/// One profile in exactly one scope.
fn scope_profile(
    c: &Connection,
    agent: Option<&str>,
    id: &str,
) -> Result<Option<StoredProfile>, RpcError> {
    let mut s = c
        .prepare_cached("SELECT scope, body, revision, created_at, updated_at FROM profiles WHERE scope = ?1 AND id = ?2")
        .map_err(sql)?;
    let row = s
        .query_row(params![scope_key(agent), id], row_to_stored)
        .optional()
        .map_err(sql)?;
    row.map(to_stored).transpose()
}

/// Inserts or replaces a profile in a scope. Returns `(created, revision)`.
fn upsert_profile(
    c: &Connection,
    agent: Option<&str>,
    p: &Profile,
    now: i64,
) -> Result<(bool, i64), RpcError> {
    let body =
        serde_json::to_string(p).map_err(|e| RpcError::internal(format!("encode profile: {e}")))?;
    let scope = scope_key(agent);
    let existing: Option<i64> = c
        .prepare_cached("SELECT revision FROM profiles WHERE scope = ?1 AND id = ?2")
        .map_err(sql)?
        .query_row(params![scope, p.id], |r| r.get(0))
        .optional()
        .map_err(sql)?;
    match existing {
        Some(rev) => {
            c.prepare_cached("UPDATE profiles SET provider = ?3, body = ?4, revision = ?5, updated_at = ?6 WHERE scope = ?1 AND id = ?2")
                .map_err(sql)?
                .execute(params![scope, p.id, p.provider, body, rev + 1, now])
                .map_err(sql)?;
            Ok((false, rev + 1))
        }
        None => {
            c.prepare_cached("INSERT INTO profiles (scope, id, provider, body, revision, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, 1, ?5, ?5)")
                .map_err(sql)?
                .execute(params![scope, p.id, p.provider, body, now])
                .map_err(sql)?;
            Ok((true, 1))
        }
    }
}

/// Deletes a profile from a scope; true if it was there.
fn delete_profile(c: &Connection, agent: Option<&str>, id: &str) -> Result<bool, RpcError> {
    let n = c
        .prepare_cached("DELETE FROM profiles WHERE scope = ?1 AND id = ?2")
        .map_err(sql)?
        .execute(params![scope_key(agent), id])
        .map_err(sql)?;
    Ok(n > 0)
}

/// Every scope with a profile or an order: shared (`''` → `None`) first, agents sorted.
fn scopes(c: &Connection) -> Result<Vec<Option<String>>, RpcError> {
    let mut s = c
        .prepare_cached("SELECT scope FROM profiles UNION SELECT scope FROM orders ORDER BY 1")
        .map_err(sql)?;
    let rows = s.query_map([], |r| r.get::<_, String>(0)).map_err(sql)?;
    rows.map(|r| r.map(|s| (!s.is_empty()).then_some(s)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql)
}

/// Whether any scope still holds a profile with this id.
fn profile_id_exists_anywhere(c: &Connection, id: &str) -> Result<bool, RpcError> {
    c.prepare_cached("SELECT 1 FROM profiles WHERE id = ?1 LIMIT 1")
        .map_err(sql)?
        .query_row(params![id], |_| Ok(()))
        .optional()
        .map_err(sql)
        .map(|o| o.is_some())
}

/// An explicit order stored in exactly one scope: `(ids, revision)`.
fn scope_order(
    c: &Connection,
    agent: Option<&str>,
    provider: &str,
) -> Result<Option<(Vec<String>, i64)>, RpcError> {
    let row: Option<(String, i64)> = c
        .prepare_cached("SELECT ids, revision FROM orders WHERE scope = ?1 AND provider = ?2")
        .map_err(sql)?
        .query_row(params![scope_key(agent), provider], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()
        .map_err(sql)?;
    row.map(|(ids, rev)| {
        serde_json::from_str::<Vec<String>>(&ids)
            .map(|v| (v, rev))
            .map_err(|_| {
                RpcError::new(
                    ErrorKind::StoreCorrupt,
                    "a stored order could not be decoded",
                )
            })
    })
    .transpose()
}

/// Stores an order in a scope; returns the new revision (1 for a new order).
fn set_order(
    c: &Connection,
    agent: Option<&str>,
    provider: &str,
    ids: &[String],
    now: i64,
) -> Result<i64, RpcError> {
    let rev = scope_order(c, agent, provider)?
        .map(|(_, r)| r + 1)
        .unwrap_or(1);
    let body = serde_json::to_string(ids).map_err(|e| RpcError::internal(e.to_string()))?;
    c.prepare_cached("INSERT INTO orders (scope, provider, ids, revision, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
                      ON CONFLICT (scope, provider) DO UPDATE SET ids = excluded.ids, revision = excluded.revision, updated_at = excluded.updated_at")
        .map_err(sql)?
        .execute(params![scope_key(agent), provider, body, rev, now])
        .map_err(sql)?;
    Ok(rev)
}

/// Removes a scope's order for a provider; true if there was one.
fn clear_order(c: &Connection, agent: Option<&str>, provider: &str) -> Result<bool, RpcError> {
    let n = c
        .prepare_cached("DELETE FROM orders WHERE scope = ?1 AND provider = ?2")
        .map_err(sql)?
        .execute(params![scope_key(agent), provider])
        .map_err(sql)?;
    Ok(n > 0)
}

/// Every order of a scope: provider → ids.
fn scope_orders(
    c: &Connection,
    agent: Option<&str>,
) -> Result<Vec<(String, Vec<String>)>, RpcError> {
    let mut s = c
        .prepare_cached("SELECT provider, ids FROM orders WHERE scope = ?1 ORDER BY provider")
        .map_err(sql)?;
    let rows = s
        .query_map(params![scope_key(agent)], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })
        .map_err(sql)?;
    let mut out = vec![];
    for r in rows {
        let (p, ids) = r.map_err(sql)?;
        let ids: Vec<String> = serde_json::from_str(&ids).map_err(|_| {
            RpcError::new(
                ErrorKind::StoreCorrupt,
                "a stored order could not be decoded",
            )
        })?;
        out.push((p, ids));
    }
    Ok(out)
}

/// lastGood of a scope for a provider.
fn last_good(
    c: &Connection,
    agent: Option<&str>,
    provider: &str,
) -> Result<Option<String>, RpcError> {
    c.prepare_cached("SELECT profile_id FROM last_good WHERE scope = ?1 AND provider = ?2")
        .map_err(sql)?
        .query_row(params![scope_key(agent), provider], |r| r.get(0))
        .optional()
        .map_err(sql)
}

/// Every lastGood of a scope: provider → profile id.
fn scope_last_good(c: &Connection, agent: Option<&str>) -> Result<Vec<(String, String)>, RpcError> {
    let mut s = c
        .prepare_cached(
            "SELECT provider, profile_id FROM last_good WHERE scope = ?1 ORDER BY provider",
        )
        .map_err(sql)?;
    let rows = s
        .query_map(params![scope_key(agent)], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(sql)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(sql)
}

/// Records lastGood of a scope for a provider.
fn set_last_good(
    c: &Connection,
    agent: Option<&str>,
    provider: &str,
    id: &str,
) -> Result<(), RpcError> {
    c.prepare_cached(
        "INSERT INTO last_good (scope, provider, profile_id) VALUES (?1, ?2, ?3)
                      ON CONFLICT (scope, provider) DO UPDATE SET profile_id = excluded.profile_id",
    )
    .map_err(sql)?
    .execute(params![scope_key(agent), provider, id])
    .map_err(sql)?;
    Ok(())
}

/// Removes lastGood entries of a scope that name `id`; returns how many.
fn clear_last_good_for(c: &Connection, agent: Option<&str>, id: &str) -> Result<usize, RpcError> {
    c.prepare_cached("DELETE FROM last_good WHERE scope = ?1 AND profile_id = ?2")
        .map_err(sql)?
        .execute(params![scope_key(agent), id])
        .map_err(sql)
}

/// Usage state of one profile id (default when none is stored).
fn usage(c: &Connection, id: &str) -> Result<Usage, RpcError> {
    let body: Option<String> = c
        .prepare_cached("SELECT body FROM usage WHERE profile_id = ?1")
        .map_err(sql)?
        .query_row(params![id], |r| r.get(0))
        .optional()
        .map_err(sql)?;
    Ok(body
        .and_then(|b| serde_json::from_str(&b).ok())
        .unwrap_or_default())
}

/// Usage state of several profiles (only those with stored state), in one query.
fn usages(c: &Connection, ids: &[&str]) -> Result<HashMap<String, Usage>, RpcError> {
    let mut out = HashMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let any: i64 = c
        .prepare_cached("SELECT count(*) FROM (SELECT 1 FROM usage LIMIT 1)")
        .map_err(sql)?
        .query_row([], |r| r.get(0))
        .map_err(sql)?;
    if any == 0 {
        return Ok(out);
    }
    let list = serde_json::to_string(&ids).map_err(|e| RpcError::internal(e.to_string()))?;
    let mut s = c
        .prepare_cached("SELECT profile_id, body FROM usage WHERE profile_id IN (SELECT value FROM json_each(?1))")
        .map_err(sql)?;
    let rows = s
        .query_map(params![list], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })
        .map_err(sql)?;
    for r in rows {
        let (id, body) = r.map_err(sql)?;
        if let Ok(u) = serde_json::from_str::<Usage>(&body) {
            out.insert(id, u);
        }
    }
    Ok(out)
}

/// Stores usage state (removes the row when it is the default).
fn put_usage(c: &Connection, id: &str, u: &Usage) -> Result<(), RpcError> {
    if *u == Usage::default() {
        c.prepare_cached("DELETE FROM usage WHERE profile_id = ?1")
            .map_err(sql)?
            .execute(params![id])
            .map_err(sql)?;
        return Ok(());
    }
    let body = serde_json::to_string(u).map_err(|e| RpcError::internal(e.to_string()))?;
    c.prepare_cached("INSERT INTO usage (profile_id, body) VALUES (?1, ?2) ON CONFLICT (profile_id) DO UPDATE SET body = excluded.body")
        .map_err(sql)?
        .execute(params![id, body])
        .map_err(sql)?;
    Ok(())
}

/// A stored setting (JSON text) by key.
fn setting(c: &Connection, key: &str) -> Result<Option<serde_json::Value>, RpcError> {
    let v: Option<String> = c
        .prepare_cached("SELECT value FROM settings WHERE key = ?1")
        .map_err(sql)?
        .query_row(params![key], |r| r.get(0))
        .optional()
        .map_err(sql)?;
    Ok(v.and_then(|s| serde_json::from_str(&s).ok()))
}

/// Every stored setting: key → JSON value.
fn settings(c: &Connection) -> Result<serde_json::Map<String, serde_json::Value>, RpcError> {
    let mut s = c
        .prepare_cached("SELECT key, value FROM settings")
        .map_err(sql)?;
    let rows = s
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .map_err(sql)?;
    let mut out = serde_json::Map::new();
    for r in rows {
        let (k, v) = r.map_err(sql)?;
        if let Ok(v) = serde_json::from_str(&v) {
            out.insert(k, v);
        }
    }
    Ok(out)
}

/// Stores a setting.
fn put_setting(c: &Connection, key: &str, value: &serde_json::Value) -> Result<(), RpcError> {
    c.prepare_cached("INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
        .map_err(sql)?
        .execute(params![key, value.to_string()])
        .map_err(sql)?;
    Ok(())
}

/// Every registered provider: id → JSON body.
fn providers(c: &Connection) -> Result<Vec<(String, serde_json::Value)>, RpcError> {
    let mut s = c
        .prepare_cached("SELECT id, body FROM providers ORDER BY id")
        .map_err(sql)?;
    let rows = s
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .map_err(sql)?;
    let mut out = vec![];
    for r in rows {
        let (id, body) = r.map_err(sql)?;
        out.push((
            id,
            serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
        ));
    }
    Ok(out)
}

/// Stores a provider registration.
fn put_provider(c: &Connection, id: &str, body: &serde_json::Value) -> Result<bool, RpcError> {
    let existed = c
        .prepare_cached("SELECT 1 FROM providers WHERE id = ?1")
        .map_err(sql)?
        .query_row(params![id], |_| Ok(()))
        .optional()
        .map_err(sql)?
        .is_some();
    c.prepare_cached("INSERT INTO providers (id, body) VALUES (?1, ?2) ON CONFLICT (id) DO UPDATE SET body = excluded.body")
        .map_err(sql)?
        .execute(params![id, body.to_string()])
        .map_err(sql)?;
    Ok(!existed)
}

/// Removes a provider registration; true if it was there.
fn delete_provider(c: &Connection, id: &str) -> Result<bool, RpcError> {
    let n = c
        .prepare_cached("DELETE FROM providers WHERE id = ?1")
        .map_err(sql)?
        .execute(params![id])
        .map_err(sql)?;
    Ok(n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::profile::Credential;
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
}
