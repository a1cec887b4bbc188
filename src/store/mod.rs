//! The store seam: what the method handlers need from a backend, and nothing more.
//!
//! A backend implements two traits:
//!
//! - [`Store`]: one handle per process on one store location. It runs a closure inside a
//!   read transaction (a consistent snapshot) or a write transaction (one read-modify-write,
//!   committed durably or not at all), reports what it is (`helper.info`), and hands out
//!   the single-flight lock that OAuth refresh takes (protocol §5.2).
//! - [`Tx`]: the scoped reads and writes available inside such a transaction. Scopes are
//!   `None` (shared) or `Some(agent)`; an agent's *view* is its own rows plus the shared
//!   ones, its own winning on the same id. Usage state is keyed by profile id alone
//!   (it belongs to the credential). All times are milliseconds since the Unix epoch.
//!
//! [`sqlite::SqliteStore`] is the first implementation, [`postgres::PgStore`] the second
//! (a `postgres://` location, PROTOCOL §2.3 r2; locations are parsed in [`location`]).
//! `conformance` (behind the
//! `conformance` module) is one behaviour suite that runs against any implementation;
//! a new backend adds a constructor to it and passes it.
//!
//! Every method returns [`RpcError`] with a store kind of protocol §7 on failure
//! (`store_busy`, `store_corrupt`, `store_permissions`, `store_readonly`,
//! `store_newer_schema`); an error inside a write transaction rolls the whole transaction
//! back.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::core::error::RpcError;
use crate::core::profile::{Profile, StoredProfile};
use crate::core::resolve::{ExplicitOrder, OrderSource};
use crate::core::secret_value::Secret;
use crate::core::usage::Usage;

pub mod conformance;
pub(crate) mod flock;
pub(crate) mod limits;
pub(crate) mod location;
pub(crate) mod pg_client;
pub mod postgres;
pub mod sealed;
pub mod sqlite;

pub use location::{parse_location, StoreLocation};
pub use postgres::PgStore;
pub use sqlite::{default_store_path, SqliteStore, DEFAULT_BUSY_TIMEOUT_MS, SCHEMA_VERSION};

/// Scope key as stored: `''` for the shared scope, the agent id otherwise.
pub(crate) fn scope_key(agent: Option<&str>) -> &str {
    agent.unwrap_or("")
}

/// Identifies one committed state of the store as seen by this process. Two equal markers
/// mean nothing was written in between (by any process); `None` from
/// [`Tx::change_marker`] means the backend cannot tell, and nothing may be cached.
pub(crate) type ChangeMarker = (u64, i64, u64);

/// Where a store is and what it holds, for `helper.info` (protocol §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreDescription {
    /// `"sqlite"` (or another backend's name).
    pub backend: &'static str,
    /// The location, as shown to people (never with a password).
    pub path: String,
    /// Whether the store exists (reads of a missing store answer as empty).
    pub exists: bool,
}

/// A held single-flight refresh lock (protocol §5.2). Dropping it releases the lock; so
/// does the death of the holding process (the kernel or the server releases it).
pub trait RefreshGuard: Send {}

/// The reads and writes of one transaction. Object safe: handlers take `&dyn Tx`.
pub trait Tx {
    /// A marker of the committed state this transaction reads (see [`ChangeMarker`]).
    fn change_marker(&self) -> Result<Option<ChangeMarker>, RpcError>;

    /// Applies a lock-wait limit (ms, `settings.busyTimeoutMs`) to this transaction's
    /// connection now, so a new value is proven usable before it is committed.
    fn apply_busy_timeout(&self, ms: u64) -> Result<(), RpcError>;

    /// The profiles an `agent` sees (its own plus shared; its own win on the same id), or
    /// the shared ones without an agent; optionally of one provider. Sorted by provider, id.
    fn view_profiles(
        &self,
        agent: Option<&str>,
        provider: Option<&str>,
    ) -> Result<Vec<StoredProfile>, RpcError>;
    /// One profile in the view of `agent` (its own first, then shared).
    fn view_profile(
        &self,
        agent: Option<&str>,
        id: &str,
    ) -> Result<Option<StoredProfile>, RpcError>;
    /// One profile in exactly one scope.
    fn scope_profile(
        &self,
        agent: Option<&str>,
        id: &str,
    ) -> Result<Option<StoredProfile>, RpcError>;
    /// Inserts or replaces a profile in a scope at time `now`. Returns `(created, revision)`:
    /// the revision is 1 for a new profile and rises by one on every replace.
    fn upsert_profile(
        &self,
        agent: Option<&str>,
        p: &Profile,
        now: i64,
    ) -> Result<(bool, i64), RpcError>;
    /// Deletes a profile from a scope; true if it was there.
    fn delete_profile(&self, agent: Option<&str>, id: &str) -> Result<bool, RpcError>;
    /// Whether any scope still holds a profile with this id.
    fn profile_id_exists_anywhere(&self, id: &str) -> Result<bool, RpcError>;
    /// Every scope that holds a profile or an order: `None` (shared) first, then agents
    /// sorted.
    fn scopes(&self) -> Result<Vec<Option<String>>, RpcError>;

    /// An explicit order stored in exactly one scope: `(ids, revision)`.
    fn scope_order(
        &self,
        agent: Option<&str>,
        provider: &str,
    ) -> Result<Option<(Vec<String>, i64)>, RpcError>;
    /// Stores an order in a scope at time `now`; returns the new revision (1 when new).
    fn set_order(
        &self,
        agent: Option<&str>,
        provider: &str,
        ids: &[String],
        now: i64,
    ) -> Result<i64, RpcError>;
    /// Removes a scope's order for a provider; true if there was one.
    fn clear_order(&self, agent: Option<&str>, provider: &str) -> Result<bool, RpcError>;
    /// Every order of a scope: `(provider, ids)` sorted by provider.
    fn scope_orders(&self, agent: Option<&str>) -> Result<Vec<(String, Vec<String>)>, RpcError>;

    /// lastGood of a scope for a provider.
    fn last_good(&self, agent: Option<&str>, provider: &str) -> Result<Option<String>, RpcError>;
    /// Every lastGood of a scope: `(provider, profile id)` sorted by provider.
    fn scope_last_good(&self, agent: Option<&str>) -> Result<Vec<(String, String)>, RpcError>;
    /// Records lastGood of a scope for a provider.
    fn set_last_good(&self, agent: Option<&str>, provider: &str, id: &str) -> Result<(), RpcError>;
    /// Removes the lastGood entries of a scope that name `id`; returns how many.
    fn clear_last_good_for(&self, agent: Option<&str>, id: &str) -> Result<usize, RpcError>;

    /// Usage state of one profile id (the default when none is stored).
    fn usage(&self, id: &str) -> Result<Usage, RpcError>;
    /// Usage state of several profile ids (only those with stored state).
    fn usages(&self, ids: &[&str]) -> Result<HashMap<String, Usage>, RpcError>;
    /// Usage state of the given profiles, by id (only those with stored state).
    fn usages_of(&self, profiles: &[StoredProfile]) -> Result<HashMap<String, Usage>, RpcError> {
        let ids: Vec<&str> = profiles.iter().map(|s| s.profile.id.as_str()).collect();
        self.usages(&ids)
    }
    /// Stores usage state; the default state removes the row.
    fn put_usage(&self, id: &str, u: &Usage) -> Result<(), RpcError>;

    /// A stored setting by key.
    fn setting(&self, key: &str) -> Result<Option<serde_json::Value>, RpcError>;
    /// Every stored setting: key → JSON value.
    fn settings(&self) -> Result<serde_json::Map<String, serde_json::Value>, RpcError>;
    /// Stores a setting.
    fn put_setting(&self, key: &str, value: &serde_json::Value) -> Result<(), RpcError>;

    /// Every registered provider: `(id, JSON body)` sorted by id.
    fn providers(&self) -> Result<Vec<(String, serde_json::Value)>, RpcError>;
    /// Stores a provider registration; true when it is new.
    fn put_provider(&self, id: &str, body: &serde_json::Value) -> Result<bool, RpcError>;
    /// Removes a provider registration; true if it was there.
    fn delete_provider(&self, id: &str) -> Result<bool, RpcError>;

    /// A named secret (protocol §12 r3: the `store` SecretRef source, `{source: "store",
    /// provider, id}`), by the ref's `provider` and `id`. The value is a secret field (sealed
    /// at rest in a sealed store).
    fn named_secret(&self, provider: &str, id: &str) -> Result<Option<Secret>, RpcError>;
    /// Every named secret: `(provider, id, value)` sorted by provider, id.
    fn named_secrets(&self) -> Result<Vec<(String, String, Secret)>, RpcError>;
    /// Stores a named secret at time `now` (ms since the epoch); true when it is new.
    fn put_named_secret(
        &self,
        provider: &str,
        id: &str,
        value: &Secret,
        now: i64,
    ) -> Result<bool, RpcError>;
    /// Removes a named secret; true if it was there.
    fn delete_named_secret(&self, provider: &str, id: &str) -> Result<bool, RpcError>;

    /// Import provenance (`store.import` with `sync`, issue 18): every mark of `source`
    /// (an import source's canonical path) as `(scope, kind, key)`, kind `profile` (key =
    /// profile id) or `order` (key = provider), sorted.
    fn import_marks(&self, source: &str)
        -> Result<Vec<(Option<String>, String, String)>, RpcError>;
    /// Records that `source` brought `(scope, kind, key)` (a later import from another
    /// source takes the mark over).
    fn set_import_mark(
        &self,
        agent: Option<&str>,
        kind: &str,
        key: &str,
        source: &str,
    ) -> Result<(), RpcError>;
    /// Removes the mark of `(scope, kind, key)`; true if there was one.
    fn delete_import_mark(
        &self,
        agent: Option<&str>,
        kind: &str,
        key: &str,
    ) -> Result<bool, RpcError>;

    /// The order an agent uses for a provider: its own if set, else the shared one
    /// (protocol §2.1).
    fn effective_order(
        &self,
        agent: Option<&str>,
        provider: &str,
    ) -> Result<Option<ExplicitOrder>, RpcError> {
        if agent.is_some() {
            if let Some((ids, _)) = self.scope_order(agent, provider)? {
                return Ok(Some(ExplicitOrder {
                    ids,
                    source: OrderSource::Agent,
                }));
            }
        }
        Ok(self
            .scope_order(None, provider)?
            .map(|(ids, _)| ExplicitOrder {
                ids,
                source: OrderSource::Shared,
            }))
    }

    /// *(r3)* The error a request that needs a secret gets on this store now:
    /// `store_sealed` (sealed, no key configured) or `store_key_mismatch`; `None` when
    /// secrets can be read (PROTOCOL §9). Backends without sealing answer `None`.
    fn seal_error(&self) -> Result<Option<RpcError>, RpcError> {
        Ok(None)
    }
}

/// A closure run inside a transaction by the object-safe [`Store`] methods.
pub(crate) type TxBody<'a> = &'a mut dyn FnMut(&dyn Tx) -> Result<(), RpcError>;

/// One process's handle on one store location. Nothing is opened or created until the
/// first transaction; reads of a missing store answer as an empty store and create nothing.
pub trait Store: Send {
    /// Backend, location and existence (`helper.info`).
    fn describe(&self) -> StoreDescription;
    /// The schema version of the existing store, `None` when it does not exist.
    fn schema_version(&mut self) -> Result<Option<i64>, RpcError>;
    /// The lock-wait limit in milliseconds (`settings.busyTimeoutMs`) for this and later
    /// transactions.
    fn set_busy_timeout(&mut self, ms: u64);
    /// Runs `f` once in a read transaction (one consistent snapshot). Use [`dyn Store::read`].
    fn read_tx(&mut self, f: TxBody<'_>) -> Result<(), RpcError>;
    /// Runs `f` once in a write transaction that takes the write lock first and commits
    /// durably, or changes nothing when `f` fails. Creates the store on first use.
    /// Use [`dyn Store::write`].
    fn write_tx(&mut self, f: TxBody<'_>) -> Result<(), RpcError>;
    /// The single-flight refresh locks of this store (protocol §5.2), usable without
    /// holding the store handle while waiting.
    fn refresh_locks(&self) -> std::sync::Arc<dyn RefreshLocks>;

    /// *(r3)* Whether the store is sealed, the key fingerprints in use and how many
    /// secret fields are in plaintext (PROTOCOL §9). A bare backend is never sealed.
    fn seal_info(&mut self) -> Result<sealed::SealInfo, RpcError> {
        Ok(sealed::SealInfo::default())
    }

    /// *(r3)* `store.seal` / `store.rekey` / `store.unseal` at time `now` (ms since the
    /// epoch), in bounded transactions (PROTOCOL §9). Only the sealing decorator
    /// ([`sealed::SealedStore`], what [`open`] returns) implements it.
    fn seal_op(&mut self, _op: sealed::SealOp, _now: i64) -> Result<sealed::SealReport, RpcError> {
        Err(RpcError::internal("this store handle cannot seal"))
    }
}

/// How long a process waits for another's refresh of the same profile (protocol §5.2's
/// bounded wait); the holder is itself bounded by the token call's time limit.
pub(crate) const REFRESH_WAIT: Duration = Duration::from_secs(30);

/// The single-flight refresh locks of one store (protocol §5.2).
pub trait RefreshLocks: Send + Sync {
    /// Takes the lock of `(scope, profile_id)`, waiting at most `wait`; `Ok(None)` when
    /// another holder kept it that long. The lock is shared by every process using the
    /// same store, and released when the guard is dropped or its holder dies.
    ///
    /// Errors: the lock cannot be taken at all (`data.reason` says why).
    fn lock(
        &self,
        scope: Option<&str>,
        profile_id: &str,
        wait: Duration,
    ) -> Result<Option<Box<dyn RefreshGuard>>, RpcError>;
}

impl dyn Store + '_ {
    /// Runs `f` in a read transaction and returns its result.
    pub fn read<T>(
        &mut self,
        f: impl FnOnce(&dyn Tx) -> Result<T, RpcError>,
    ) -> Result<T, RpcError> {
        let mut f = Some(f);
        let mut out = None;
        self.read_tx(&mut |tx| {
            let f = f.take().expect("a transaction body runs once");
            out = Some(f(tx)?);
            Ok(())
        })?;
        Ok(out.expect("the body ran"))
    }

    /// Runs `f` in a write transaction (one read-modify-write) and returns its result.
    pub(crate) fn write<T>(
        &mut self,
        f: impl FnOnce(&dyn Tx) -> Result<T, RpcError>,
    ) -> Result<T, RpcError> {
        let mut f = Some(f);
        let mut out = None;
        self.write_tx(&mut |tx| {
            let f = f.take().expect("a transaction body runs once");
            out = Some(f(tx)?);
            Ok(())
        })?;
        Ok(out.expect("the body ran"))
    }
}

/// Opens the store at a location: a SQLite file path, or a `postgres://` URL (PROTOCOL
/// §2.3 *(r2)*; `$MODELAUTH_PG_SCHEMA` and the libpq variables are read here). Nothing is
/// connected yet. A location that cannot be parsed gives a store whose every transaction
/// fails with that error (the CLI refuses a bad `--store` before this).
///
/// *(r3)* The store is wrapped in [`sealed::SealedStore`] with the store keys of the
/// process environment (PROTOCOL §9; `crate::seal::keys`).
pub fn open(location: PathBuf) -> Box<dyn Store> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let inner: Box<dyn Store> = match parse_location(&location, false, &env) {
        Ok(StoreLocation::Sqlite(p)) => Box::new(SqliteStore::new(p)),
        Ok(StoreLocation::Postgres(loc)) => Box::new(PgStore::new(*loc)),
        Err(e) => return Box::new(Unusable(e)),
    };
    Box::new(sealed::SealedStore::new(
        inner,
        crate::seal::keys::load_from_env(),
    ))
}

/// A store whose location could not be parsed: every transaction fails with the error.
struct Unusable(RpcError);

impl Store for Unusable {
    fn describe(&self) -> StoreDescription {
        StoreDescription {
            backend: "postgres",
            path: String::new(),
            exists: false,
        }
    }
    fn schema_version(&mut self) -> Result<Option<i64>, RpcError> {
        Err(self.0.clone())
    }
    fn set_busy_timeout(&mut self, _: u64) {}
    fn read_tx(&mut self, _: TxBody<'_>) -> Result<(), RpcError> {
        Err(self.0.clone())
    }
    fn write_tx(&mut self, _: TxBody<'_>) -> Result<(), RpcError> {
        Err(self.0.clone())
    }
    fn refresh_locks(&self) -> std::sync::Arc<dyn RefreshLocks> {
        std::sync::Arc::new(UnusableLocks(self.0.clone()))
    }
}

struct UnusableLocks(RpcError);

impl RefreshLocks for UnusableLocks {
    fn lock(
        &self,
        _: Option<&str>,
        _: &str,
        _: Duration,
    ) -> Result<Option<Box<dyn RefreshGuard>>, RpcError> {
        Err(self.0.clone())
    }
}
