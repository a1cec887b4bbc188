//! The PostgreSQL implementation of [`Store`] (PROTOCOL §2.3 *(r2)*): one store shared by
//! every helper on every machine.
//!
//! - Location: a `postgres://` / `postgresql://` URL ([`super::location`]); the tables live
//!   in one schema (`modelauth`, or `$MODELAUTH_PG_SCHEMA`), created on the first write.
//!   Reads of a database without that schema answer as an empty store and create nothing.
//! - Schema versioned in `<schema>.meta` (`schema_version`); migrations run forward under
//!   a transaction-scoped advisory lock, so many helpers starting at once do not race; a
//!   newer version is refused (`store_newer_schema`), checked again in every write.
//! - Every write transaction takes `pg_advisory_xact_lock(<store key>)` first: writers are
//!   serialised as SQLite's `BEGIN IMMEDIATE` serialises them, so a read-modify-write loses
//!   nothing. `lock_timeout` = `busyTimeoutMs` → `store_busy`. Transaction-scoped locks only
//!   (no session state), so this works behind PgBouncer in transaction mode.
//! - Reads run in one `REPEATABLE READ READ ONLY` transaction on the server, begun lazily.
//!   The change marker is a generation counter in `<schema>.meta` that every write
//!   transaction moves before it commits; the service's read cache is reused only while it
//!   is unchanged, so a request sees every write committed before it started, from any
//!   machine, and a warm `auth.resolve` costs one round trip.
//! - The server unreachable or gone: `store_unavailable` (retryable); the broken client is
//!   dropped and the next request connects again (connect timeout 5 s).
//! - Refresh locks: a dedicated connection holding a transaction with
//!   `pg_try_advisory_xact_lock(hash(schema, scope, id))`, polled with backoff; dropping the
//!   guard rolls back, and the server releases it when the holder's session dies.
//!
//! Queries use `query_typed` (one round trip, unnamed statements: nothing prepared outlives
//! a transaction, which PgBouncer's transaction mode requires).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use postgres::types::{ToSql, Type};
use postgres::Row;

use super::pg_client::Client;
use sha2::{Digest, Sha256};

use crate::core::error::{ErrorKind, RpcError};
use crate::core::profile::{Profile, StoredProfile};
use crate::core::secret_value::Secret;
use crate::core::usage::Usage;

use super::location::{PgLocation, SslMode, PG_CONNECT_TIMEOUT};
use super::{
    scope_key, ChangeMarker, RefreshGuard, RefreshLocks, Store, StoreDescription, Tx, TxBody,
    DEFAULT_BUSY_TIMEOUT_MS,
};

/// The schema version this build writes (`<schema>.meta`, key `schema_version`).
pub const PG_SCHEMA_VERSION: i64 = 3;

/// Forward migrations: entry `i` takes the schema from version `i` to `i + 1`. `{s}` is
/// the schema name. Text columns that are sorted use the "C" collation, so the order is
/// byte order as in SQLite.
const MIGRATIONS: &[&str] = &[
    // 0 -> 1
    r#"CREATE TABLE {s}.profiles (
        scope text COLLATE "C" NOT NULL,
        id text COLLATE "C" NOT NULL,
        provider text COLLATE "C" NOT NULL,
        body text NOT NULL,
        revision bigint NOT NULL,
        created_at bigint NOT NULL,
        updated_at bigint NOT NULL,
        PRIMARY KEY (scope, id)
    );
    CREATE INDEX profiles_by_provider ON {s}.profiles (provider, scope);
    CREATE INDEX profiles_by_id ON {s}.profiles (id);
    CREATE TABLE {s}.orders (
        scope text COLLATE "C" NOT NULL,
        provider text COLLATE "C" NOT NULL,
        ids text NOT NULL,
        revision bigint NOT NULL,
        updated_at bigint NOT NULL,
        PRIMARY KEY (scope, provider)
    );
    CREATE TABLE {s}.last_good (
        scope text COLLATE "C" NOT NULL,
        provider text COLLATE "C" NOT NULL,
        profile_id text COLLATE "C" NOT NULL,
        PRIMARY KEY (scope, provider)
    );
    CREATE TABLE {s}.usage (
        profile_id text COLLATE "C" PRIMARY KEY,
        body text NOT NULL
    );
    CREATE TABLE {s}.providers (
        id text COLLATE "C" PRIMARY KEY,
        body text NOT NULL
    );
    CREATE TABLE {s}.settings (
        key text COLLATE "C" PRIMARY KEY,
        value text NOT NULL
    );"#,
    // 1 -> 2: a random salt for the advisory-lock keys (issue 20), so a role that may only
    // connect cannot compute them and hold them to block every write and refresh. Older
    // helpers, which use unsalted keys, refuse a version-2 store instead of locking apart.
    r#"INSERT INTO {s}.meta (key, value) VALUES ('lock_salt',
        ('x' || substr(md5(gen_random_uuid()::text || clock_timestamp()::text), 1, 16))::bit(64)::bigint)
        ON CONFLICT (key) DO NOTHING;"#,
    // 2 -> 3: named secrets (the `store` SecretRef source, protocol §12 r3).
    r#"CREATE TABLE {s}.named_secrets (
        provider text COLLATE "C" NOT NULL,
        id text COLLATE "C" NOT NULL,
        value text NOT NULL,
        updated_at bigint NOT NULL,
        PRIMARY KEY (provider, id)
    );
    CREATE TABLE {s}.import_marks (
        scope text COLLATE "C" NOT NULL,
        kind text COLLATE "C" NOT NULL,
        key text COLLATE "C" NOT NULL,
        source text NOT NULL,
        PRIMARY KEY (scope, kind, key)
    );"#,
];

/// The PostgreSQL store handle: one lazily opened connection, reopened after a failure.
pub struct PgStore {
    loc: Arc<PgLocation>,
    /// In a `RefCell` so that [`Store::describe`] (`&self`) can ask the server.
    client: RefCell<Option<Client>>,
    busy_timeout_ms: u64,
    /// Last known: the schema exists (set by any transaction, `schema_version`, `describe`).
    exists: Cell<bool>,
    /// The store's advisory-lock salt (`<schema>.meta` `lock_salt`), once read.
    salt: Cell<Option<i64>>,
    /// The stored `settings.busyTimeoutMs` was applied (once per handle).
    settings_read: bool,
    empty: Option<rusqlite::Connection>,
}

impl PgStore {
    /// A handle on the store at `loc`; nothing is connected or created yet.
    pub fn new(loc: PgLocation) -> Self {
        PgStore {
            loc: Arc::new(loc),
            client: RefCell::new(None),
            busy_timeout_ms: DEFAULT_BUSY_TIMEOUT_MS,
            exists: Cell::new(false),
            salt: Cell::new(None),
            settings_read: false,
            empty: None,
        }
    }

    /// Asks the server whether the schema exists (for `describe`); false when it cannot
    /// tell (the next transaction reports why).
    fn probe_exists(&self) -> bool {
        let Ok(mut slot) = self.client.try_borrow_mut() else {
            return false;
        };
        if slot.as_ref().is_some_and(|c| c.is_closed()) {
            *slot = None;
        }
        if slot.is_none() {
            match connect(&self.loc, self.busy_timeout_ms) {
                Ok(c) => *slot = Some(c),
                Err(_) => return false,
            }
        }
        let c = slot.as_mut().expect("connected above");
        match probe_version(c, &self.loc, &self.salt) {
            Ok(v) => v.is_some(),
            Err(_) => {
                *slot = None;
                false
            }
        }
    }

    /// The schema name holding the tables.
    pub fn schema(&self) -> &str {
        &self.loc.schema
    }

    fn client(&mut self) -> Result<&mut Client, RpcError> {
        let slot = self.client.get_mut();
        if slot.as_ref().is_some_and(|c| c.is_closed()) {
            *slot = None;
        }
        if slot.is_none() {
            *slot = Some(connect(&self.loc, self.busy_timeout_ms)?);
        }
        let c = slot.as_mut().expect("connected above");
        c.set_round_trip(round_trip(self.busy_timeout_ms));
        Ok(c)
    }

    /// Forgets a client that failed so the next request connects again.
    fn after_error(&mut self) {
        let slot = self.client.get_mut();
        if let Some(c) = slot {
            if c.is_closed() || c.batch_execute("ROLLBACK").is_err() {
                *slot = None;
            }
        }
    }

    /// `Some(version)` when the schema's meta table exists.
    fn query_version(&mut self) -> Result<Option<i64>, RpcError> {
        let loc = self.loc.clone();
        let salt = &self.salt;
        let slot = self.client.get_mut();
        if slot.as_ref().is_some_and(|c| c.is_closed()) {
            *slot = None;
        }
        if slot.is_none() {
            *slot = Some(connect(&loc, self.busy_timeout_ms)?);
        }
        let c = slot.as_mut().expect("connected above");
        probe_version(c, &loc, salt)
    }

    fn schema_version_inner(&mut self) -> Result<Option<i64>, RpcError> {
        let v = self.query_version();
        if v.is_err() {
            self.after_error();
        }
        let v = v?;
        // Known to exist (and so skip this check) only at a version this build reads.
        self.exists
            .set(v.is_some_and(|v| (1..=PG_SCHEMA_VERSION).contains(&v)));
        Ok(v)
    }

    /// Creates the schema and tables, or migrates them, under the setup advisory lock.
    fn setup(&mut self) -> Result<(), RpcError> {
        let mut attempt = 0;
        loop {
            let mut race = false;
            match self.setup_once(&mut race) {
                Err(_) if race && attempt < 3 => attempt += 1,
                r => return r,
            }
        }
    }

    /// One attempt of [`PgStore::setup`]. `race` is set when another helper created the
    /// schema while this one waited for the setup lock: this session's catalog cache
    /// still said "missing" (invalidations are read when a transaction starts, not when an
    /// advisory lock is granted), so a new transaction sees it.
    fn setup_once(&mut self, race: &mut bool) -> Result<(), RpcError> {
        let loc = self.loc.clone();
        let ms = self.busy_timeout_ms;
        let c = self.client()?;
        let r = (|| {
            c.batch_execute(&format!(
                "BEGIN; SET LOCAL lock_timeout = {ms}; SET LOCAL statement_timeout = {}",
                ms + 30_000
            ))?;
            let key = lock_key(&["setup", &loc.schema]);
            c.query_typed(
                "SELECT pg_advisory_xact_lock($1)",
                &[(&key as &(dyn ToSql + Sync), Type::INT8)],
            )?;
            c.batch_execute(&sqlf(
                &loc,
                "CREATE SCHEMA IF NOT EXISTS {s} AUTHORIZATION CURRENT_USER; CREATE TABLE IF NOT EXISTS {s}.meta (key text PRIMARY KEY, value bigint NOT NULL)",
            ))?;
            // Under the setup lock, in the transaction that created it: a schema that
            // already existed (IF NOT EXISTS) may be another role's.
            if let Some(r) = c.query_typed_opt(
                FOREIGN_OWNER_SQL,
                &[(&loc.schema as &(dyn ToSql + Sync), Type::TEXT)],
            )? {
                return Ok(Err((r.get::<_, String>(0), r.get::<_, String>(1))));
            }
            let v = c
                .query_typed_opt(
                    &sqlf(
                        &loc,
                        "SELECT value FROM {s}.meta WHERE key = 'schema_version'",
                    ),
                    &[],
                )?
                .map(|r| r.get::<_, i64>(0))
                .unwrap_or(0);
            Ok::<Result<i64, (String, String)>, postgres::Error>(Ok(v))
        })();
        let v = match r {
            Ok(Ok(v)) => v,
            Ok(Err((what, owner))) => {
                self.after_error();
                return Err(not_owned(&loc, &what, &owner));
            }
            Err(e) => {
                *race = matches!(
                    e.code().map(|c| c.code()),
                    Some("23505" | "42P06" | "42P07")
                );
                let e = map_pg(e, &loc);
                self.after_error();
                return Err(e);
            }
        };
        if v > PG_SCHEMA_VERSION {
            self.after_error();
            return Err(newer_schema(&loc, v));
        }
        let c = self.client()?;
        let r = (|| {
            for (i, sql) in MIGRATIONS.iter().enumerate().skip(v as usize) {
                tracing::info!(from = i, to = i + 1, "migrating store schema");
                c.batch_execute(&sqlf(&loc, sql))?;
            }
            // The generation counter of the change marker, starting at a value unique to
            // this creation (µs since the epoch), so a re-created store never matches a
            // marker of the old one.
            let start = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_micros() as i64)
                .unwrap_or(0);
            c.query_typed(
                &sqlf(&loc, "INSERT INTO {s}.meta (key, value) VALUES ('generation', $1) ON CONFLICT (key) DO NOTHING"),
                &[(&start as &(dyn ToSql + Sync), Type::INT8)],
            )?;
            let to = PG_SCHEMA_VERSION;
            c.query_typed(
                &sqlf(&loc, "INSERT INTO {s}.meta (key, value) VALUES ('schema_version', $1) ON CONFLICT (key) DO UPDATE SET value = excluded.value"),
                &[(&to as &(dyn ToSql + Sync), Type::INT8)],
            )?;
            let salt = c
                .query_typed_opt(
                    &sqlf(&loc, "SELECT value FROM {s}.meta WHERE key = 'lock_salt'"),
                    &[],
                )?
                .map(|r| r.get::<_, i64>(0));
            c.batch_execute("COMMIT")?;
            Ok(salt)
        })();
        match r {
            Ok(salt) => self.salt.set(salt),
            Err(e) => {
                let e = map_pg(e, &loc);
                self.after_error();
                return Err(e);
            }
        }
        self.exists.set(true);
        Ok(())
    }

    /// Applies a stored `settings.busyTimeoutMs` (as SQLite does when it opens a store).
    fn apply_stored_busy_timeout(&mut self) {
        if self.settings_read || !self.exists.get() {
            return;
        }
        self.settings_read = true;
        let loc = self.loc.clone();
        let Ok(c) = self.client() else { return };
        let v = c.query_typed_opt(
            &sqlf(
                &loc,
                "SELECT value FROM {s}.settings WHERE key = 'busyTimeoutMs'",
            ),
            &[],
        );
        if let Ok(Some(r)) = v {
            if let Some(ms) = r
                .get::<_, String>(0)
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|ms| crate::core::settings::BUSY_TIMEOUT_MS_RANGE.contains(ms))
            {
                self.busy_timeout_ms = pg_lock_ms(ms);
            }
        }
    }

    fn read_in_tx(&mut self, f: TxBody<'_>) -> Result<(), RpcError> {
        if !self.exists.get() {
            match self.schema_version_inner()? {
                None => {
                    if self.empty.is_none() {
                        self.empty = Some(super::sqlite::empty_connection()?);
                    }
                    let c = self.empty.as_mut().expect("set above");
                    let tx = c
                        .transaction()
                        .map_err(|e| RpcError::internal(format!("empty store: {e}")))?;
                    return f(&*tx);
                }
                Some(v) if v > PG_SCHEMA_VERSION => return Err(newer_schema(&self.loc, v)),
                Some(_) => {}
            }
        }
        self.apply_stored_busy_timeout();
        let loc = self.loc.clone();
        let ms = self.busy_timeout_ms;
        let c = self.client()?;
        let begin = format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET LOCAL statement_timeout = {}",
            ms + 30_000
        );
        let (r, begun) = {
            let tx = PgTx::new(&mut *c, &loc, Some(begin));
            let r = f(&tx);
            let begun = tx.begun.get();
            let r = match tx.failed.into_inner() {
                Some(e) if r.is_ok() => Err(e),
                _ => r,
            };
            (r, begun)
        };
        match r {
            Ok(()) => {
                if !begun {
                    return Ok(());
                }
                if let Err(e) = c.batch_execute("COMMIT") {
                    let e = map_pg(e, &loc);
                    self.after_error();
                    return Err(e);
                }
                Ok(())
            }
            Err(e) => {
                if e.kind == ErrorKind::Internal && is_missing_table(&e) {
                    self.exists.set(false);
                }
                self.after_error();
                Err(e)
            }
        }
    }

    fn write_in_tx(&mut self, f: TxBody<'_>) -> Result<(), RpcError> {
        // Without the salt (a version-1 store seen by a read), check again and migrate.
        if !self.exists.get() || self.salt.get().is_none() {
            match self.schema_version_inner()? {
                Some(v) if v > PG_SCHEMA_VERSION => return Err(newer_schema(&self.loc, v)),
                Some(v) if v == PG_SCHEMA_VERSION => {}
                _ => self.setup()?,
            }
            self.empty = None;
        }
        self.apply_stored_busy_timeout();
        let loc = self.loc.clone();
        let ms = self.busy_timeout_ms;
        let salt = self.salt.get();
        let c = self.client()?;
        let begin = (|| {
            c.batch_execute(&format!(
                "BEGIN; SET LOCAL lock_timeout = {ms}; SET LOCAL statement_timeout = {}",
                ms + 30_000
            ))?;
            let salt = salt.map(|s| s.to_string()).unwrap_or_default();
            let key = lock_key(&["write", &loc.schema, &salt]);
            let row = c.query_typed_one(
                &sqlf(&loc, "SELECT pg_advisory_xact_lock($1)::text, (SELECT value FROM {s}.meta WHERE key = 'schema_version')"),
                &[(&key as &(dyn ToSql + Sync), Type::INT8)],
            )?;
            Ok::<Option<i64>, postgres::Error>(row.get(1))
        })();
        let version = match begin {
            Ok(v) => v,
            Err(e) => {
                let missing = e.code() == Some(&postgres::error::SqlState::UNDEFINED_TABLE);
                let e = map_pg(e, &loc);
                self.after_error();
                if missing {
                    // The schema was dropped under us: create it again on the next write.
                    self.exists.set(false);
                }
                return Err(e);
            }
        };
        if let Some(v) = version.filter(|v| *v > PG_SCHEMA_VERSION) {
            self.after_error();
            return Err(newer_schema(&loc, v));
        }
        let r = {
            let tx = PgTx::new(&mut *c, &loc, None);
            let r = f(&tx);
            match tx.failed.into_inner() {
                Some(e) if r.is_ok() => Err(e),
                _ => r,
            }
        };
        match r {
            Ok(()) => {
                // Every write moves the generation (the change marker of every reader).
                let commit = sqlf(
                    &loc,
                    "UPDATE {s}.meta SET value = value + 1 WHERE key = 'generation'; COMMIT",
                );
                if let Err(e) = c.batch_execute(&commit) {
                    let e = map_pg(e, &loc);
                    self.after_error();
                    return Err(e);
                }
                Ok(())
            }
            Err(e) => {
                self.after_error();
                Err(e)
            }
        }
    }
}

/// Who owns the schema and what is in it, as one row when something is owned by a role
/// other than the connecting one (or a superuser): (what, owner).
const FOREIGN_OWNER_SQL: &str = "WITH me AS (SELECT oid FROM pg_roles WHERE rolname = current_user)
    SELECT 'schema ' || n.nspname::text, r.rolname::text
      FROM pg_namespace n JOIN pg_roles r ON r.oid = n.nspowner
     WHERE n.nspname = $1 AND n.nspowner <> (SELECT oid FROM me) AND NOT r.rolsuper
    UNION ALL
    SELECT 'table ' || n.nspname::text || '.' || c.relname::text, r.rolname::text
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_roles r ON r.oid = c.relowner
     WHERE n.nspname = $1 AND c.relowner <> (SELECT oid FROM me) AND NOT r.rolsuper
    LIMIT 1";

/// Refuses a schema, or anything in it, owned by another role (PROTOCOL §11 *(r3)*): a
/// role that pre-created the schema ("schema squatting") would read every key written to
/// it and choose the settings (secret providers) this helper obeys. A superuser's is
/// accepted: a superuser can read everything anyway.
///
/// Errors: `store_permissions` with `data.reason: "schema_not_owned"`; store errors.
fn check_owner(c: &mut Client, loc: &PgLocation) -> Result<(), RpcError> {
    let row = c
        .query_typed_opt(
            FOREIGN_OWNER_SQL,
            &[(&loc.schema as &(dyn ToSql + Sync), Type::TEXT)],
        )
        .map_err(|e| map_pg(e, loc))?;
    match row {
        None => Ok(()),
        Some(r) => Err(not_owned(
            loc,
            &r.get::<_, String>(0),
            &r.get::<_, String>(1),
        )),
    }
}

fn not_owned(loc: &PgLocation, what: &str, owner: &str) -> RpcError {
    RpcError::new(
        ErrorKind::StorePermissions,
        format!(
            "the PostgreSQL store {} is not this role's: {what} is owned by role `{owner}`; nothing was read from it or written to it",
            loc.display
        ),
    )
    .with("reason", "schema_not_owned")
    .with("schema", loc.schema.as_str())
    .with_hint("whoever owns the schema reads every key written to it and chooses the settings this helper obeys: drop it, or use a schema this role creates ($MODELAUTH_PG_SCHEMA)")
}

/// `Some(version)` when the schema's meta table exists in the database of `c`.
fn probe_version(
    c: &mut Client,
    loc: &PgLocation,
    salt: &Cell<Option<i64>>,
) -> Result<Option<i64>, RpcError> {
    let reg = format!("\"{}\".meta", loc.schema);
    let row = c
        .query_typed_one(
            "SELECT to_regclass($1) IS NOT NULL",
            &[(&reg as &(dyn ToSql + Sync), Type::TEXT)],
        )
        .map_err(|e| map_pg(e, loc))?;
    if !row.get::<_, bool>(0) {
        return Ok(None);
    }
    check_owner(c, loc)?;
    let rows = c
        .query_typed(
            &sqlf(
                loc,
                "SELECT key::text, value FROM {s}.meta WHERE key IN ('schema_version', 'lock_salt')",
            ),
            &[],
        )
        .map_err(|e| map_pg(e, loc))?;
    let mut v = 0;
    for r in rows {
        match r.get::<_, String>(0).as_str() {
            "schema_version" => v = r.get::<_, i64>(1),
            _ => salt.set(Some(r.get::<_, i64>(1))),
        }
    }
    Ok(Some(v))
}

fn is_missing_table(e: &RpcError) -> bool {
    e.message.contains("does not exist")
}

impl Store for PgStore {
    fn describe(&self) -> StoreDescription {
        StoreDescription {
            backend: "postgres",
            path: self.loc.display.clone(),
            exists: self.exists.get() || self.probe_exists(),
        }
    }

    fn schema_version(&mut self) -> Result<Option<i64>, RpcError> {
        self.schema_version_inner()
    }

    fn set_busy_timeout(&mut self, ms: u64) {
        self.busy_timeout_ms = pg_lock_ms(ms);
        self.settings_read = true;
    }

    fn read_tx(&mut self, f: TxBody<'_>) -> Result<(), RpcError> {
        self.read_in_tx(f)
    }

    fn write_tx(&mut self, f: TxBody<'_>) -> Result<(), RpcError> {
        self.write_in_tx(f)
    }

    fn refresh_locks(&self) -> Arc<dyn RefreshLocks> {
        Arc::new(PgLocks {
            loc: self.loc.clone(),
        })
    }
}

/// The 64-bit advisory lock key of `parts` (SHA-256, first 8 bytes).
fn lock_key(parts: &[&str]) -> i64 {
    let mut h = Sha256::new();
    h.update(b"modelauth");
    for p in parts {
        h.update([0u8]);
        h.update(p.as_bytes());
    }
    let d = h.finalize();
    i64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
}

/// How long a refresh-lock transaction may sit idle before the server ends it (ms): past
/// the token call's 20 s limit and a waiter's 30 s wait.
const REFRESH_LOCK_IDLE_MS: u64 = 120_000;

/// Refresh locks as transaction-scoped advisory locks, each on a dedicated connection.
struct PgLocks {
    loc: Arc<PgLocation>,
}

struct PgGuard {
    client: Option<Client>,
}

impl RefreshGuard for PgGuard {}

impl Drop for PgGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.client.take() {
            let _ = c.batch_execute("ROLLBACK");
        }
    }
}

impl RefreshLocks for PgLocks {
    fn lock(
        &self,
        scope: Option<&str>,
        profile_id: &str,
        wait: Duration,
    ) -> Result<Option<Box<dyn RefreshGuard>>, RpcError> {
        let lock_failed = |e: RpcError| e.with("reason", "lock_failed");
        let mut c = connect(&self.loc, DEFAULT_BUSY_TIMEOUT_MS).map_err(lock_failed)?;
        // The salt is read here, each time: a helper that last saw the store at version 1
        // (unsalted) must not lock apart from those that migrated it. Before BEGIN, so a
        // store not created yet (no meta table: nothing to refresh) aborts nothing.
        let salt = match c.query_typed_opt(
            &sqlf(
                &self.loc,
                "SELECT value FROM {s}.meta WHERE key = 'lock_salt'",
            ),
            &[],
        ) {
            Ok(row) => row
                .map(|r| r.get::<_, i64>(0).to_string())
                .unwrap_or_default(),
            Err(e) if e.code() == Some(&postgres::error::SqlState::UNDEFINED_TABLE) => {
                String::new()
            }
            Err(e) => return Err(lock_failed(map_pg(e, &self.loc))),
        };
        // The lock lives as long as this transaction, which stays idle while the token
        // call runs (up to 20 s): a server-wide `idle_in_transaction_session_timeout`
        // shorter than that would end the session, release the lock mid-refresh and let a
        // second helper send the same refresh token. This transaction gets its own,
        // longer than any holder's wait (a dead holder's session still ends).
        c.batch_execute(&format!(
            "BEGIN; SET LOCAL idle_in_transaction_session_timeout = {REFRESH_LOCK_IDLE_MS}"
        ))
        .map_err(|e| lock_failed(map_pg(e, &self.loc)))?;
        let key = lock_key(&[
            "refresh",
            &self.loc.schema,
            &salt,
            scope_key(scope),
            profile_id,
        ]);
        let deadline = Instant::now() + wait;
        let mut pause = Duration::from_millis(5);
        loop {
            let got: bool = c
                .query_typed_one(
                    "SELECT pg_try_advisory_xact_lock($1)",
                    &[(&key as &(dyn ToSql + Sync), Type::INT8)],
                )
                .map_err(|e| lock_failed(map_pg(e, &self.loc)))?
                .get(0);
            if got {
                return Ok(Some(Box::new(PgGuard { client: Some(c) })));
            }
            let now = Instant::now();
            if now >= deadline {
                let _ = c.batch_execute("ROLLBACK");
                return Ok(None);
            }
            std::thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }
}

/// Connects, with TLS per `sslmode`. Errors: `store_unavailable` (retryable) when the server
/// cannot be reached; `store_permissions` when it refuses the login.
fn connect(loc: &PgLocation, busy_timeout_ms: u64) -> Result<Client, RpcError> {
    let mut config = loc.config.clone();
    // Bounds a request when the link is cut mid-query: unacknowledged data for this long
    // aborts the connection (Linux TCP_USER_TIMEOUT).
    config.tcp_user_timeout(PG_CONNECT_TIMEOUT + Duration::from_millis(busy_timeout_ms));
    config.keepalives(true);
    config.keepalives_idle(Duration::from_secs(30));
    // libpq never negotiates TLS on a Unix socket; skipping it saves a round trip.
    let unix_only = config
        .get_hosts()
        .iter()
        .all(|h| matches!(h, postgres::config::Host::Unix(_)));
    let rt = round_trip(busy_timeout_ms);
    let r = if loc.ssl_mode == SslMode::Disable || unix_only {
        config.ssl_mode(postgres::config::SslMode::Disable);
        Client::connect(&config, postgres::NoTls, PG_CONNECT_TIMEOUT, rt)
    } else {
        Client::connect(&config, tls::connector(loc)?, PG_CONNECT_TIMEOUT, rt)
    };
    r.map_err(|e| map_pg(e, loc))
}

/// `busyTimeoutMs` as a PostgreSQL `lock_timeout`: 0 means "do not wait" to SQLite but
/// "wait for ever" to PostgreSQL, so it becomes 1 ms (issue 20: a stored 0 was ignored).
fn pg_lock_ms(ms: u64) -> u64 {
    ms.max(1)
}

/// The client-side deadline of one statement (PROTOCOL §11 *(r3)*): the server-side
/// `statement_timeout` the transactions set (`busyTimeoutMs` + 30 s) plus 5 s, so a live
/// server answers first with its own error and a silent one is abandoned.
fn round_trip(busy_timeout_ms: u64) -> Duration {
    Duration::from_millis(busy_timeout_ms + 30_000) + PG_CONNECT_TIMEOUT
}

/// Maps a PostgreSQL error to the store error kinds of PROTOCOL §7. Messages name the
/// location without its password, and never carry parameter values.
fn map_pg(e: postgres::Error, loc: &PgLocation) -> RpcError {
    use postgres::error::SqlState;
    let where_ = &loc.display;
    let Some(code) = e.code() else {
        // No SQLSTATE: the connection failed, closed, timed out, TLS failed, or no password.
        return classify_without_sqlstate(&e, loc);
    };
    let c = code.code();
    if *code == SqlState::LOCK_NOT_AVAILABLE
        || *code == SqlState::QUERY_CANCELED
        || *code == SqlState::T_R_SERIALIZATION_FAILURE
        || *code == SqlState::T_R_DEADLOCK_DETECTED
    {
        return RpcError::new(
            ErrorKind::StoreBusy,
            format!("the store {where_} stayed locked by another helper past the busy timeout"),
        )
        .with_hint("retry; raise settings.busyTimeoutMs if this happens often");
    }
    if c == "57P03" || c == "57P01" || c == "57P02" {
        // cannot_connect_now (starting up, shutting down, in recovery), admin/crash shutdown.
        return RpcError::new(
            ErrorKind::StoreUnavailable,
            format!("the PostgreSQL server of {where_} is starting or stopping: {}", short(&e)),
        )
        .with("reason", "server_starting_or_stopping")
        .with_hint("retry in a moment; the helper reconnects by itself once the server accepts connections")
        .retryable(true);
    }
    if c.starts_with("08") || c.starts_with("57P") || c == "53300" {
        return RpcError::new(
            ErrorKind::StoreUnavailable,
            format!("the PostgreSQL store {where_} is unavailable ({c})"),
        )
        .with_hint("retry; the helper reconnects by itself once the server is back")
        .retryable(true);
    }
    if c == "28P01" || (c == "28000" && loc.passfile_ignored.is_some()) {
        return auth_error(
            loc,
            format!("the PostgreSQL server of {where_} refused the password ({c})"),
        );
    }
    if c.starts_with("28") || *code == SqlState::INSUFFICIENT_PRIVILEGE || c == "3D000" {
        return RpcError::new(
            ErrorKind::StorePermissions,
            format!(
                "the PostgreSQL store {where_} refused this role ({c}): {}",
                short(&e)
            ),
        )
        .with_hint("check the user, password (PGPASSWORD, ~/.pgpass), database and grants");
    }
    if *code == SqlState::READ_ONLY_SQL_TRANSACTION {
        return RpcError::new(
            ErrorKind::StoreReadonly,
            format!("the PostgreSQL store {where_} is read-only (a standby?)"),
        );
    }
    if c.starts_with("53") {
        return RpcError::new(
            ErrorKind::StoreReadonly,
            format!(
                "the PostgreSQL server of {where_} is out of resources ({c}); nothing was changed"
            ),
        )
        .retryable(true);
    }
    RpcError::internal(format!("store {where_}: {}", short(&e)))
}

/// Classifies an error that carries no SQLSTATE (PROTOCOL §10 r3): a TLS failure is
/// `store_tls`; a password the server asked for and none was given (or the passfile was
/// ignored for its mode) `store_auth`; an unknown host name `store_unavailable` with a hint
/// naming DNS — none of them retryable; a refused connection, a reset, a closed
/// connection or a time-out `store_unavailable` (retryable: the helper reconnects).
fn classify_without_sqlstate(e: &postgres::Error, loc: &PgLocation) -> RpcError {
    let where_ = &loc.display;
    let kind_text = e.to_string();
    let mut causes = vec![];
    let mut io_kind = None;
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        causes.push(c.to_string());
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            io_kind.get_or_insert(io.kind());
        }
        src = c.source();
    }
    let cause = causes.first().cloned().unwrap_or_default();
    let all = causes.join(": ").to_ascii_lowercase();
    if kind_text.contains("TLS") || all.contains("certificate") || all.contains("tls") {
        return RpcError::new(
            ErrorKind::StoreTls,
            format!("TLS with the PostgreSQL server of {where_} failed: {cause}"),
        )
        .with("reason", "tls")
        .with_hint(format!(
            "the server's certificate did not verify under sslmode={}: give the CA that signed it with sslrootcert=/path/ca.pem in the store URL (or PGSSLROOTCERT), or check the host name it was issued for",
            ssl_mode_word(loc.ssl_mode)
        ))
        .retryable(false);
    }
    if all.contains("password missing") {
        let msg =
            format!("the PostgreSQL server of {where_} asks for a password and none was given");
        return auth_error(loc, msg);
    }
    if all.contains("lookup address")
        || all.contains("name or service not known")
        || all.contains("no address associated")
        || all.contains("temporary failure in name resolution")
    {
        return RpcError::new(
            ErrorKind::StoreUnavailable,
            format!("the host of the PostgreSQL store {where_} cannot be found: {cause}"),
        )
        .with("reason", "dns")
        .with_hint("check the host name in the store URL: DNS does not know it (a typo, or no network/DNS here?)")
        .retryable(false);
    }
    let refused = io_kind == Some(std::io::ErrorKind::ConnectionRefused);
    let detail = if cause.is_empty() {
        kind_text.clone()
    } else {
        format!("{kind_text}: {cause}")
    };
    RpcError::new(
        ErrorKind::StoreUnavailable,
        format!("the PostgreSQL store {where_} is unreachable: {detail}"),
    )
    .with("reason", if refused { "connection_refused" } else { "unreachable" })
    .with_hint(if refused {
        "nothing accepts connections at that host and port: start the server (or fix the port); the helper reconnects by itself once it is up"
    } else {
        "retry; the helper reconnects by itself once the server is back"
    })
    .retryable(true)
}

/// `store_auth` (not retryable), with a hint naming the ignored passfile when there is one.
fn auth_error(loc: &PgLocation, msg: String) -> RpcError {
    let hint = match &loc.passfile_ignored {
        Some(p) => format!(
            "the passfile {} was ignored because group or others can read it (as libpq does): chmod 0600 {}",
            p.display(),
            p.display()
        ),
        None => "give the password in PGPASSWORD, in $MODELAUTH_STORE's URL, or in ~/.pgpass (mode 0600) — never in --store".to_string(),
    };
    let mut e = RpcError::new(ErrorKind::StoreAuth, msg)
        .with_hint(hint)
        .retryable(false);
    if let Some(p) = &loc.passfile_ignored {
        e = e
            .with("reason", "passfile_ignored")
            .with("passfile", p.display().to_string());
    } else {
        e = e.with("reason", "password");
    }
    e
}

fn ssl_mode_word(m: SslMode) -> &'static str {
    match m {
        SslMode::Disable => "disable",
        SslMode::Prefer => "prefer",
        SslMode::Require => "require",
        SslMode::VerifyCa => "verify-ca",
        SslMode::VerifyFull => "verify-full",
    }
}

/// The error text without detail lines (which could quote row values).
fn short(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => {
            let s = e.to_string();
            s.lines().next().unwrap_or("").to_string()
        }
    }
}

fn newer_schema(loc: &PgLocation, v: i64) -> RpcError {
    RpcError::new(
        ErrorKind::StoreNewerSchema,
        format!(
            "the store {} (schema {}) has schema version {v}, newer than this modelauth understands ({PG_SCHEMA_VERSION}); it was not changed",
            loc.display, loc.schema
        ),
    )
    .with("schemaVersion", v)
    .with_hint("upgrade modelauth")
}

/// `t` with `{s}` replaced by the schema name, quoted: a name that is also an SQL keyword
/// (`user`, `select`) works like any other (the name is `[a-z_][a-z0-9_]*`, so quoting
/// does not change which schema it is).
fn sqlf(loc: &PgLocation, t: &str) -> String {
    t.replace("{s}", &format!("\"{}\"", loc.schema))
}

mod tls {
    //! rustls for `sslmode` (ring provider; webpki roots or `sslrootcert`).
    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::client::WebPkiServerVerifier;
    use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore};
    use tokio_postgres_rustls::MakeRustlsConnect;

    use super::super::location::{PgLocation, SslMode};
    use crate::core::error::{ErrorKind, RpcError};

    fn tls_error(msg: String) -> RpcError {
        RpcError::new(ErrorKind::StoreTls, msg)
            .retryable(false)
            .with("reason", "tls")
            .with_hint("check sslmode and sslrootcert in the store URL")
    }

    pub(super) fn connector(loc: &PgLocation) -> Result<MakeRustlsConnect, RpcError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error(format!("TLS setup: {e}")))?;
        let config = match loc.ssl_mode {
            SslMode::Disable | SslMode::Prefer | SslMode::Require => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
                .with_no_client_auth(),
            SslMode::VerifyCa | SslMode::VerifyFull => {
                let mut roots = RootCertStore::empty();
                match &loc.root_cert {
                    Some(path) => {
                        use rustls::pki_types::pem::PemObject;
                        let certs = CertificateDer::pem_file_iter(path).map_err(|e| {
                            tls_error(format!("cannot read sslrootcert {}: {e}", path.display()))
                        })?;
                        for c in certs {
                            let c = c.map_err(|e| {
                                tls_error(format!("bad sslrootcert {}: {e}", path.display()))
                            })?;
                            roots.add(c).map_err(|e| {
                                tls_error(format!("bad sslrootcert {}: {e}", path.display()))
                            })?;
                        }
                    }
                    None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
                }
                let inner =
                    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                        .build()
                        .map_err(|e| tls_error(format!("TLS roots: {e}")))?;
                if loc.ssl_mode == SslMode::VerifyCa {
                    builder
                        .dangerous()
                        .with_custom_certificate_verifier(Arc::new(AnyName(inner)))
                        .with_no_client_auth()
                } else {
                    builder.with_webpki_verifier(inner).with_no_client_auth()
                }
            }
        };
        Ok(MakeRustlsConnect::new(config))
    }

    /// `sslmode=prefer/require`: encrypted, certificate not checked (as libpq without a
    /// root certificate).
    #[derive(Debug)]
    struct NoVerify(Arc<CryptoProvider>);

    impl ServerCertVerifier for NoVerify {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    /// `sslmode=verify-ca`: the chain is checked, the host name is not.
    #[derive(Debug)]
    struct AnyName(Arc<WebPkiServerVerifier>);

    impl ServerCertVerifier for AnyName {
        fn verify_server_cert(
            &self,
            end: &CertificateDer<'_>,
            mids: &[CertificateDer<'_>],
            name: &ServerName<'_>,
            ocsp: &[u8],
            now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            match self.0.verify_server_cert(end, mids, name, ocsp, now) {
                Err(rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName
                    | CertificateError::NotValidForNameContext { .. },
                )) => Ok(ServerCertVerified::assertion()),
                other => other,
            }
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.0.verify_tls12_signature(m, c, d)
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.0.verify_tls13_signature(m, c, d)
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.supported_verify_schemes()
        }
    }
}

// ---- The SQL behind Tx.

/// A connection inside a transaction opened by [`PgStore`].
struct PgTx<'a> {
    c: RefCell<&'a mut Client>,
    loc: &'a PgLocation,
    /// For a read: the `BEGIN …` sent before the first statement other than the change
    /// marker (a read answered from the cache is then one round trip). `None`: begun.
    begin: Option<String>,
    begun: Cell<bool>,
    /// The change marker, read once per transaction.
    marker: Cell<Option<Option<ChangeMarker>>>,
    /// The first failed statement: PostgreSQL aborts the transaction on it, so a body that
    /// swallowed the error must not believe its later writes were committed.
    failed: RefCell<Option<RpcError>>,
}

type P<'a> = (&'a (dyn ToSql + Sync), Type);

impl<'a> PgTx<'a> {
    fn new(c: &'a mut Client, loc: &'a PgLocation, begin: Option<String>) -> Self {
        PgTx {
            c: RefCell::new(c),
            loc,
            begun: Cell::new(begin.is_none()),
            begin,
            marker: Cell::new(None),
            failed: RefCell::new(None),
        }
    }

    fn ensure_begun(&self) -> Result<(), RpcError> {
        if self.begun.get() {
            return Ok(());
        }
        let sql = self
            .begin
            .as_deref()
            .expect("a read transaction has its BEGIN");
        let r = self.c.borrow_mut().batch_execute(sql);
        r.map_err(|e| self.fail(e))?;
        self.begun.set(true);
        Ok(())
    }

    fn fail(&self, e: postgres::Error) -> RpcError {
        let e = map_pg(e, self.loc);
        self.failed.borrow_mut().get_or_insert_with(|| e.clone());
        e
    }
    fn q(&self, t: &str, params: &[P<'_>]) -> Result<Vec<Row>, RpcError> {
        self.ensure_begun()?;
        let r = self.c.borrow_mut().query_typed(&sqlf(self.loc, t), params);
        r.map_err(|e| self.fail(e))
    }
    fn q_opt(&self, t: &str, params: &[P<'_>]) -> Result<Option<Row>, RpcError> {
        Ok(self.q(t, params)?.into_iter().next())
    }
    fn exec(&self, t: &str, params: &[P<'_>]) -> Result<u64, RpcError> {
        self.ensure_begun()?;
        let r = self
            .c
            .borrow_mut()
            .execute_typed(&sqlf(self.loc, t), params);
        r.map_err(|e| self.fail(e))
    }
}

fn parse_profile(body: &str) -> Result<Profile, RpcError> {
    serde_json::from_str(body).map_err(|_| {
        RpcError::new(
            ErrorKind::StoreCorrupt,
            "a stored profile could not be decoded",
        )
    })
}

fn to_stored(r: &Row) -> Result<StoredProfile, RpcError> {
    let scope: String = r.get(0);
    let body: String = r.get(1);
    Ok(StoredProfile {
        profile: parse_profile(&body)?,
        scope: if scope.is_empty() { None } else { Some(scope) },
        revision: r.get(2),
        created_at: r.get(3),
        updated_at: r.get(4),
    })
}

fn decode_ids(s: &str) -> Result<Vec<String>, RpcError> {
    serde_json::from_str(s).map_err(|_| {
        RpcError::new(
            ErrorKind::StoreCorrupt,
            "a stored order could not be decoded",
        )
    })
}

const T: Type = Type::TEXT;
const I: Type = Type::INT8;

impl Tx for PgTx<'_> {
    /// `SET LOCAL lock_timeout`: proves the value usable inside this transaction; later
    /// transactions take it from the handle ([`Store::set_busy_timeout`]).
    fn apply_busy_timeout(&self, ms: u64) -> Result<(), RpcError> {
        let ms = ms.min(*crate::core::settings::BUSY_TIMEOUT_MS_RANGE.end());
        let ms = pg_lock_ms(ms);
        self.exec(&format!("SET LOCAL lock_timeout = {ms}"), &[])?;
        Ok(())
    }

    /// `(store identity, generation, 0)`: the generation in `<schema>.meta` moves with
    /// every committed write of any helper on any machine. Read before any other statement
    /// of a read (outside its snapshot), so cached data is never older than its marker: a
    /// write landing in between only costs the next request a refill.
    fn change_marker(&self) -> Result<Option<ChangeMarker>, RpcError> {
        if let Some(m) = self.marker.get() {
            return Ok(m);
        }
        let r = self.c.borrow_mut().query_typed_opt(
            &sqlf(
                self.loc,
                "SELECT value FROM {s}.meta WHERE key = 'generation'",
            ),
            &[],
        );
        let row = r.map_err(|e| self.fail(e))?;
        let id = lock_key(&["store", &self.loc.display, &self.loc.schema]) as u64;
        let m = row.map(|r| (id, r.get::<_, i64>(0), 0));
        self.marker.set(Some(m));
        Ok(m)
    }

    fn view_profiles(
        &self,
        agent: Option<&str>,
        provider: Option<&str>,
    ) -> Result<Vec<StoredProfile>, RpcError> {
        let scope = scope_key(agent);
        let rows = match provider {
            Some(p) => self.q(
                "SELECT scope, body, revision, created_at, updated_at FROM {s}.profiles WHERE provider = $1 AND scope IN ('', $2) ORDER BY id, scope DESC",
                &[(&p, T), (&scope, T)],
            )?,
            None => self.q(
                "SELECT scope, body, revision, created_at, updated_at FROM {s}.profiles WHERE scope IN ('', $1) ORDER BY provider, id, scope DESC",
                &[(&scope, T)],
            )?,
        };
        let mut out = rows.iter().map(to_stored).collect::<Result<Vec<_>, _>>()?;
        out.dedup_by(|b, a| a.profile.id == b.profile.id);
        Ok(out)
    }

    fn view_profile(
        &self,
        agent: Option<&str>,
        id: &str,
    ) -> Result<Option<StoredProfile>, RpcError> {
        let scope = scope_key(agent);
        self.q_opt(
            "SELECT scope, body, revision, created_at, updated_at FROM {s}.profiles WHERE id = $1 AND scope IN ('', $2) ORDER BY scope DESC LIMIT 1",
            &[(&id, T), (&scope, T)],
        )?
        .as_ref()
        .map(to_stored)
        .transpose()
    }

    fn scope_profile(
        &self,
        agent: Option<&str>,
        id: &str,
    ) -> Result<Option<StoredProfile>, RpcError> {
        let scope = scope_key(agent);
        self.q_opt(
            "SELECT scope, body, revision, created_at, updated_at FROM {s}.profiles WHERE scope = $1 AND id = $2",
            &[(&scope, T), (&id, T)],
        )?
        .as_ref()
        .map(to_stored)
        .transpose()
    }

    fn upsert_profile(
        &self,
        agent: Option<&str>,
        p: &Profile,
        now: i64,
    ) -> Result<(bool, i64), RpcError> {
        let body = serde_json::to_string(p)
            .map_err(|e| RpcError::internal(format!("encode profile: {e}")))?;
        let scope = scope_key(agent);
        let row = self.q_opt(
            "INSERT INTO {s}.profiles (scope, id, provider, body, revision, created_at, updated_at) VALUES ($1, $2, $3, $4, 1, $5, $5)
             ON CONFLICT (scope, id) DO UPDATE SET provider = excluded.provider, body = excluded.body, revision = {s}.profiles.revision + 1, updated_at = excluded.updated_at
             RETURNING revision",
            &[(&scope, T), (&p.id, T), (&p.provider, T), (&body, T), (&now, I)],
        )?;
        let rev: i64 = row.map(|r| r.get(0)).unwrap_or(1);
        Ok((rev == 1, rev))
    }

    fn delete_profile(&self, agent: Option<&str>, id: &str) -> Result<bool, RpcError> {
        let scope = scope_key(agent);
        Ok(self.exec(
            "DELETE FROM {s}.profiles WHERE scope = $1 AND id = $2",
            &[(&scope, T), (&id, T)],
        )? > 0)
    }

    fn profile_id_exists_anywhere(&self, id: &str) -> Result<bool, RpcError> {
        Ok(self
            .q_opt(
                "SELECT 1 FROM {s}.profiles WHERE id = $1 LIMIT 1",
                &[(&id, T)],
            )?
            .is_some())
    }

    fn scopes(&self) -> Result<Vec<Option<String>>, RpcError> {
        let rows = self.q(
            "SELECT scope FROM {s}.profiles UNION SELECT scope FROM {s}.orders ORDER BY 1",
            &[],
        )?;
        Ok(rows
            .iter()
            .map(|r| {
                let s: String = r.get(0);
                (!s.is_empty()).then_some(s)
            })
            .collect())
    }

    fn scope_order(
        &self,
        agent: Option<&str>,
        provider: &str,
    ) -> Result<Option<(Vec<String>, i64)>, RpcError> {
        let scope = scope_key(agent);
        self.q_opt(
            "SELECT ids, revision FROM {s}.orders WHERE scope = $1 AND provider = $2",
            &[(&scope, T), (&provider, T)],
        )?
        .map(|r| Ok((decode_ids(r.get::<_, &str>(0))?, r.get(1))))
        .transpose()
    }

    fn set_order(
        &self,
        agent: Option<&str>,
        provider: &str,
        ids: &[String],
        now: i64,
    ) -> Result<i64, RpcError> {
        let scope = scope_key(agent);
        let body = serde_json::to_string(ids).map_err(|e| RpcError::internal(e.to_string()))?;
        let row = self.q_opt(
            "INSERT INTO {s}.orders (scope, provider, ids, revision, updated_at) VALUES ($1, $2, $3, 1, $4)
             ON CONFLICT (scope, provider) DO UPDATE SET ids = excluded.ids, revision = {s}.orders.revision + 1, updated_at = excluded.updated_at
             RETURNING revision",
            &[(&scope, T), (&provider, T), (&body, T), (&now, I)],
        )?;
        Ok(row.map(|r| r.get(0)).unwrap_or(1))
    }

    fn clear_order(&self, agent: Option<&str>, provider: &str) -> Result<bool, RpcError> {
        let scope = scope_key(agent);
        Ok(self.exec(
            "DELETE FROM {s}.orders WHERE scope = $1 AND provider = $2",
            &[(&scope, T), (&provider, T)],
        )? > 0)
    }

    fn scope_orders(&self, agent: Option<&str>) -> Result<Vec<(String, Vec<String>)>, RpcError> {
        let scope = scope_key(agent);
        let rows = self.q(
            "SELECT provider, ids FROM {s}.orders WHERE scope = $1 ORDER BY provider",
            &[(&scope, T)],
        )?;
        rows.iter()
            .map(|r| Ok((r.get(0), decode_ids(r.get::<_, &str>(1))?)))
            .collect()
    }

    fn last_good(&self, agent: Option<&str>, provider: &str) -> Result<Option<String>, RpcError> {
        let scope = scope_key(agent);
        Ok(self
            .q_opt(
                "SELECT profile_id FROM {s}.last_good WHERE scope = $1 AND provider = $2",
                &[(&scope, T), (&provider, T)],
            )?
            .map(|r| r.get(0)))
    }

    fn scope_last_good(&self, agent: Option<&str>) -> Result<Vec<(String, String)>, RpcError> {
        let scope = scope_key(agent);
        let rows = self.q(
            "SELECT provider, profile_id FROM {s}.last_good WHERE scope = $1 ORDER BY provider",
            &[(&scope, T)],
        )?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    fn set_last_good(&self, agent: Option<&str>, provider: &str, id: &str) -> Result<(), RpcError> {
        let scope = scope_key(agent);
        self.exec(
            "INSERT INTO {s}.last_good (scope, provider, profile_id) VALUES ($1, $2, $3)
             ON CONFLICT (scope, provider) DO UPDATE SET profile_id = excluded.profile_id",
            &[(&scope, T), (&provider, T), (&id, T)],
        )?;
        Ok(())
    }

    fn clear_last_good_for(&self, agent: Option<&str>, id: &str) -> Result<usize, RpcError> {
        let scope = scope_key(agent);
        Ok(self.exec(
            "DELETE FROM {s}.last_good WHERE scope = $1 AND profile_id = $2",
            &[(&scope, T), (&id, T)],
        )? as usize)
    }

    fn usage(&self, id: &str) -> Result<Usage, RpcError> {
        Ok(self
            .q_opt(
                "SELECT body FROM {s}.usage WHERE profile_id = $1",
                &[(&id, T)],
            )?
            .and_then(|r| serde_json::from_str(r.get::<_, &str>(0)).ok())
            .unwrap_or_default())
    }

    fn usages(&self, ids: &[&str]) -> Result<HashMap<String, Usage>, RpcError> {
        let mut out = HashMap::new();
        if ids.is_empty() {
            return Ok(out);
        }
        let list: Vec<&str> = ids.to_vec();
        let rows = self.q(
            "SELECT profile_id, body FROM {s}.usage WHERE profile_id = ANY($1)",
            &[(&list, Type::TEXT_ARRAY)],
        )?;
        for r in rows {
            if let Ok(u) = serde_json::from_str::<Usage>(r.get::<_, &str>(1)) {
                out.insert(r.get(0), u);
            }
        }
        Ok(out)
    }

    fn put_usage(&self, id: &str, u: &Usage) -> Result<(), RpcError> {
        if *u == Usage::default() {
            self.exec("DELETE FROM {s}.usage WHERE profile_id = $1", &[(&id, T)])?;
            return Ok(());
        }
        let body = serde_json::to_string(u).map_err(|e| RpcError::internal(e.to_string()))?;
        self.exec(
            "INSERT INTO {s}.usage (profile_id, body) VALUES ($1, $2) ON CONFLICT (profile_id) DO UPDATE SET body = excluded.body",
            &[(&id, T), (&body, T)],
        )?;
        Ok(())
    }

    fn setting(&self, key: &str) -> Result<Option<serde_json::Value>, RpcError> {
        Ok(self
            .q_opt(
                "SELECT value FROM {s}.settings WHERE key = $1",
                &[(&key, T)],
            )?
            .and_then(|r| serde_json::from_str(r.get::<_, &str>(0)).ok()))
    }

    fn settings(&self) -> Result<serde_json::Map<String, serde_json::Value>, RpcError> {
        let rows = self.q("SELECT key, value FROM {s}.settings", &[])?;
        let mut out = serde_json::Map::new();
        for r in rows {
            if let Ok(v) = serde_json::from_str(r.get::<_, &str>(1)) {
                out.insert(r.get(0), v);
            }
        }
        Ok(out)
    }

    fn put_setting(&self, key: &str, value: &serde_json::Value) -> Result<(), RpcError> {
        let v = value.to_string();
        self.exec(
            "INSERT INTO {s}.settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[(&key, T), (&v, T)],
        )?;
        Ok(())
    }

    fn providers(&self) -> Result<Vec<(String, serde_json::Value)>, RpcError> {
        let rows = self.q("SELECT id, body FROM {s}.providers ORDER BY id", &[])?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.get(0),
                    serde_json::from_str(r.get::<_, &str>(1)).unwrap_or(serde_json::Value::Null),
                )
            })
            .collect())
    }

    fn put_provider(&self, id: &str, body: &serde_json::Value) -> Result<bool, RpcError> {
        let b = body.to_string();
        let row = self.q_opt(
            "INSERT INTO {s}.providers (id, body) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET body = excluded.body RETURNING (xmax = 0)",
            &[(&id, T), (&b, T)],
        )?;
        Ok(row.map(|r| r.get::<_, bool>(0)).unwrap_or(false))
    }

    fn delete_provider(&self, id: &str) -> Result<bool, RpcError> {
        Ok(self.exec("DELETE FROM {s}.providers WHERE id = $1", &[(&id, T)])? > 0)
    }

    fn named_secret(&self, provider: &str, id: &str) -> Result<Option<Secret>, RpcError> {
        let row = self.q_opt(
            "SELECT value FROM {s}.named_secrets WHERE provider = $1 AND id = $2",
            &[(&provider, T), (&id, T)],
        )?;
        Ok(row.map(|r| Secret::new(r.get::<_, String>(0))))
    }

    fn named_secrets(&self) -> Result<Vec<(String, String, Secret)>, RpcError> {
        let rows = self.q(
            "SELECT provider, id, value FROM {s}.named_secrets ORDER BY provider, id",
            &[],
        )?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), Secret::new(r.get::<_, String>(2))))
            .collect())
    }

    fn put_named_secret(
        &self,
        provider: &str,
        id: &str,
        value: &Secret,
        now: i64,
    ) -> Result<bool, RpcError> {
        let v = value.expose();
        let row = self.q_opt(
            "INSERT INTO {s}.named_secrets (provider, id, value, updated_at) VALUES ($1, $2, $3, $4) ON CONFLICT (provider, id) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at RETURNING (xmax = 0)",
            &[(&provider, T), (&id, T), (&v, T), (&now, Type::INT8)],
        )?;
        Ok(row.map(|r| r.get::<_, bool>(0)).unwrap_or(false))
    }

    fn import_marks(
        &self,
        source: &str,
    ) -> Result<Vec<(Option<String>, String, String)>, RpcError> {
        let rows = self.q(
            "SELECT scope, kind, key FROM {s}.import_marks WHERE source = $1 ORDER BY scope, kind, key",
            &[(&source, T)],
        )?;
        Ok(rows
            .iter()
            .map(|r| {
                let scope: String = r.get(0);
                ((!scope.is_empty()).then_some(scope), r.get(1), r.get(2))
            })
            .collect())
    }

    fn set_import_mark(
        &self,
        agent: Option<&str>,
        kind: &str,
        key: &str,
        source: &str,
    ) -> Result<(), RpcError> {
        let scope = scope_key(agent);
        self.exec(
            "INSERT INTO {s}.import_marks (scope, kind, key, source) VALUES ($1, $2, $3, $4) ON CONFLICT (scope, kind, key) DO UPDATE SET source = excluded.source",
            &[(&scope, T), (&kind, T), (&key, T), (&source, T)],
        )?;
        Ok(())
    }

    fn delete_import_mark(
        &self,
        agent: Option<&str>,
        kind: &str,
        key: &str,
    ) -> Result<bool, RpcError> {
        let scope = scope_key(agent);
        Ok(self.exec(
            "DELETE FROM {s}.import_marks WHERE scope = $1 AND kind = $2 AND key = $3",
            &[(&scope, T), (&kind, T), (&key, T)],
        )? > 0)
    }

    fn delete_named_secret(&self, provider: &str, id: &str) -> Result<bool, RpcError> {
        Ok(self.exec(
            "DELETE FROM {s}.named_secrets WHERE provider = $1 AND id = $2",
            &[(&provider, T), (&id, T)],
        )? > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_keys_differ_by_every_part() {
        let a = lock_key(&["refresh", "modelauth", "", "x:a"]);
        assert_ne!(a, lock_key(&["refresh", "modelauth", "cron", "x:a"]));
        assert_ne!(a, lock_key(&["refresh", "other", "", "x:a"]));
        assert_ne!(lock_key(&["a", "bc"]), lock_key(&["ab", "c"]));
        assert_eq!(a, lock_key(&["refresh", "modelauth", "", "x:a"]));
    }
}
