//! Schema and migrations of the SQLite store: the migration list, the sidecar setup lock.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, TransactionBehavior};

use crate::core::error::{ErrorKind, RpcError};

use super::checks::{check_own_file, create_private_dirs};
use super::{io_error, map_sqlite, SqliteStore, SCHEMA_VERSION};

/// Forward migrations: entry `i` takes the schema from version `i` to `i + 1`.
pub(super) const MIGRATIONS: &[&str] = &[
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

impl SqliteStore {
    pub(super) fn user_version(&self, c: &Connection) -> Result<i64, RpcError> {
        c.pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| map_sqlite(e, &self.path))
    }

    pub(super) fn lock_path(&self) -> PathBuf {
        let mut s = self.path.as_os_str().to_owned();
        s.push(".lock");
        PathBuf::from(s)
    }

    /// Creates missing directories (0700) and runs `f` under the sidecar lock.
    pub(super) fn with_setup_lock<T>(
        &self,
        f: impl FnOnce() -> Result<T, RpcError>,
    ) -> Result<T, RpcError> {
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
    pub(super) fn migrate(&self, c: &mut Connection) -> Result<(), RpcError> {
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
}

pub(super) fn newer_schema(path: &Path, v: i64) -> RpcError {
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
