//! Schema setup and migrations of the PostgreSQL store, and the schema-ownership checks.

use std::cell::Cell;

use postgres::types::{ToSql, Type};

use crate::core::error::{ErrorKind, RpcError};
use crate::store::location::PgLocation;
use crate::store::pg_client::Client;

use super::errors::map_pg;
use super::locks::lock_key;
use super::{sqlf, PgStore, PG_SCHEMA_VERSION};

/// Forward migrations: entry `i` takes the schema from version `i` to `i + 1`. `{s}` is
/// the schema name. Text columns that are sorted use the "C" collation, so the order is
/// byte order as in SQLite.
pub(super) const MIGRATIONS: &[&str] = &[
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

impl PgStore {
    /// Creates the schema and tables, or migrates them, under the setup advisory lock.
    pub(super) fn setup(&mut self) -> Result<(), RpcError> {
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
    pub(super) fn setup_once(&mut self, race: &mut bool) -> Result<(), RpcError> {
        let loc = self.loc.clone();
        let ms = self.busy_timeout_ms;
        let c = self.client()?;
        let r = lock_and_read_version(c, &loc, ms);
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
        let r = migrate_from(c, &loc, v);
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
}

/// The first half of a setup attempt: the transaction with its timeouts, the setup lock,
/// the schema and `meta` created if missing, the ownership check. The stored schema
/// version (0 for a new schema), or `Err((what, owner))` when something in the schema is
/// owned by another role.
fn lock_and_read_version(
    c: &mut Client,
    loc: &PgLocation,
    ms: u64,
) -> Result<Result<i64, (String, String)>, postgres::Error> {
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
        loc,
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
                loc,
                "SELECT value FROM {s}.meta WHERE key = 'schema_version'",
            ),
            &[],
        )?
        .map(|r| r.get::<_, i64>(0))
        .unwrap_or(0);
    Ok(Ok(v))
}

/// The second half: the migrations from version `v`, the generation counter, the version
/// written, and the commit. The store's lock salt, when it has one.
fn migrate_from(c: &mut Client, loc: &PgLocation, v: i64) -> Result<Option<i64>, postgres::Error> {
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(v as usize) {
        tracing::info!(from = i, to = i + 1, "migrating store schema");
        c.batch_execute(&sqlf(loc, sql))?;
    }
    // The generation counter of the change marker, starting at a value unique to
    // this creation (µs since the epoch), so a re-created store never matches a
    // marker of the old one.
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    c.query_typed(
        &sqlf(loc, "INSERT INTO {s}.meta (key, value) VALUES ('generation', $1) ON CONFLICT (key) DO NOTHING"),
        &[(&start as &(dyn ToSql + Sync), Type::INT8)],
    )?;
    let to = PG_SCHEMA_VERSION;
    c.query_typed(
        &sqlf(loc, "INSERT INTO {s}.meta (key, value) VALUES ('schema_version', $1) ON CONFLICT (key) DO UPDATE SET value = excluded.value"),
        &[(&to as &(dyn ToSql + Sync), Type::INT8)],
    )?;
    let salt = c
        .query_typed_opt(
            &sqlf(loc, "SELECT value FROM {s}.meta WHERE key = 'lock_salt'"),
            &[],
        )?
        .map(|r| r.get::<_, i64>(0));
    c.batch_execute("COMMIT")?;
    Ok(salt)
}

/// How many of the schema and the relations in it are owned by a role other than the
/// connecting one, superusers included (`$2` the schema name: a subquery of
/// [`probe_catalog`]'s one statement): 0 on the common path, where
/// [`FOREIGN_OWNER_SQL`] need not run. Catalog lookups by name (`to_regnamespace`,
/// `to_regrole`) instead of joins with the `pg_roles` view: a fresh backend answers it in
/// about 1.4 ms against 2.1 ms (issue 19). A connecting role it cannot name counts every
/// object (`IS DISTINCT FROM` a null), so the full check runs.
pub(super) const FOREIGN_OWNED_SQL_2: &str = "SELECT count(*) FROM (
      SELECT nspowner AS owner FROM pg_namespace WHERE oid = to_regnamespace(quote_ident($2))
      UNION ALL
      SELECT relowner FROM pg_class WHERE relnamespace = to_regnamespace(quote_ident($2))
    ) x WHERE owner IS DISTINCT FROM to_regrole(quote_ident(current_user::text))::oid";

/// Who owns the schema and what is in it, as one row when something is owned by a role
/// other than the connecting one (or a superuser): (what, owner).
pub(super) const FOREIGN_OWNER_SQL: &str =
    "WITH me AS (SELECT oid FROM pg_roles WHERE rolname = current_user)
    SELECT 'schema ' || n.nspname::text, r.rolname::text
      FROM pg_namespace n JOIN pg_roles r ON r.oid = n.nspowner
     WHERE n.nspname = $1 AND n.nspowner <> (SELECT oid FROM me) AND NOT r.rolsuper
    UNION ALL
    SELECT 'table ' || n.nspname::text || '.' || c.relname::text, r.rolname::text
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_roles r ON r.oid = c.relowner
     WHERE n.nspname = $1 AND c.relowner <> (SELECT oid FROM me) AND NOT r.rolsuper
    LIMIT 1";

/// The refusal of a schema, or anything in it, owned by another role (PROTOCOL §11
/// *(r3)*): a role that pre-created the schema ("schema squatting") would read every key
/// written to it and choose the settings (secret providers) this helper obeys. A
/// superuser's is accepted: a superuser can read everything anyway. `store_permissions`
/// with `data.reason: "schema_not_owned"`.
pub(super) fn not_owned(loc: &PgLocation, what: &str, owner: &str) -> RpcError {
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

/// What [`probe_version`] read about a store whose meta table exists.
pub(super) struct Probe {
    /// `<schema>.meta` `schema_version` (0 when the row is missing).
    pub(super) version: i64,
    /// The change-marker generation (`<schema>.meta` `generation`), read outside any
    /// snapshot: the marker of a read transaction begun right after this probe.
    pub(super) generation: Option<i64>,
    /// The stored `settings.busyTimeoutMs` row as text (capped), when there is one;
    /// `None` also when the settings table could not be read.
    pub(super) busy_timeout: Option<String>,
}

/// The meta rows a probe reads: `(key, value)` for `schema_version`, `lock_salt` and
/// `generation`.
pub(super) const META_SQL: &str =
    "SELECT key::text, value FROM {s}.meta WHERE key IN ('schema_version', 'lock_salt', 'generation')";

/// What [`META_SQL`]'s rows say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Meta {
    /// `schema_version` (0 when the row is missing).
    pub(super) version: i64,
    /// The advisory-lock salt (schema version 2 on).
    pub(super) salt: Option<i64>,
    /// The change-marker generation.
    pub(super) generation: Option<i64>,
}

/// Reads [`META_SQL`]'s rows.
pub(super) fn meta_of(rows: &[postgres::Row]) -> Meta {
    let mut m = Meta {
        version: 0,
        salt: None,
        generation: None,
    };
    for r in rows {
        match r.get::<_, String>(0).as_str() {
            "schema_version" => m.version = r.get::<_, i64>(1),
            "generation" => m.generation = Some(r.get::<_, i64>(1)),
            _ => m.salt = Some(r.get::<_, i64>(1)),
        }
    }
    m
}

/// The catalog half of a probe, in one statement: whether the schema's
/// meta table exists, and — when it does — a refusal when the schema or anything in it is
/// another role's ([`FOREIGN_OWNED_SQL_2`], then [`FOREIGN_OWNER_SQL`] when it counts
/// anything; [`not_owned`]). Nothing in the schema is read before this answers.
pub(super) fn probe_catalog(c: &mut Client, loc: &PgLocation) -> Result<bool, RpcError> {
    let reg = format!("\"{}\".meta", loc.schema);
    // One statement: a fresh backend pays its per-statement start once (~0.2 ms, issue 19).
    let sql = format!("SELECT to_regclass($1) IS NOT NULL, ({FOREIGN_OWNED_SQL_2})");
    let row = c
        .query_typed_one(
            &sql,
            &[
                (&reg as &(dyn ToSql + Sync), Type::TEXT),
                (&loc.schema as &(dyn ToSql + Sync), Type::TEXT),
            ],
        )
        .map_err(|e| map_pg(e, loc))?;
    if !row.get::<_, bool>(0) {
        return Ok(false);
    }
    if row.get::<_, Option<i64>>(1).is_none_or(|n| n > 0) {
        // Something is another role's: refused unless every such owner is a superuser.
        let row = c
            .query_typed_opt(
                FOREIGN_OWNER_SQL,
                &[(&loc.schema as &(dyn ToSql + Sync), Type::TEXT)],
            )
            .map_err(|e| map_pg(e, loc))?;
        if let Some(r) = row {
            return Err(not_owned(
                loc,
                &r.get::<_, String>(0),
                &r.get::<_, String>(1),
            ));
        }
    }
    Ok(true)
}

/// `Some(probe)` when the schema's meta table exists in the database of `c`, in two round
/// trips (issue 19): [`probe_catalog`], then the store's own rows — [`META_SQL`] and the
/// stored busy timeout — sent together. Sets `salt` when the store has one.
pub(super) fn probe_version(
    c: &mut Client,
    loc: &PgLocation,
    salt: &Cell<Option<i64>>,
) -> Result<Option<Probe>, RpcError> {
    if !probe_catalog(c, loc)? {
        return Ok(None);
    }
    let meta = sqlf(loc, META_SQL);
    let busy = sqlf(
        loc,
        "SELECT capped(value) FROM {s}.settings WHERE key = 'busyTimeoutMs'",
    );
    let answers = c
        .query_typed_pipelined(&[(meta.as_str(), &[]), (busy.as_str(), &[])])
        .map_err(|e| map_pg(e, loc))?;
    let [rows, busy] = two(answers);
    let m = meta_of(&rows.map_err(|e| map_pg(e, loc))?);
    if m.salt.is_some() {
        salt.set(m.salt);
    }
    Ok(Some(Probe {
        version: m.version,
        generation: m.generation,
        busy_timeout: busy
            .ok()
            .and_then(|rows| rows.into_iter().next())
            .and_then(|r| r.get::<_, Option<String>>(0)),
    }))
}

/// The two answers of a two-statement pipeline.
fn two<T>(v: Vec<T>) -> [T; 2] {
    v.try_into()
        .unwrap_or_else(|_| unreachable!("two statements give two answers"))
}

pub(super) fn is_missing_table(e: &RpcError) -> bool {
    e.message.contains("does not exist")
}

pub(super) fn newer_schema(loc: &PgLocation, v: i64) -> RpcError {
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
