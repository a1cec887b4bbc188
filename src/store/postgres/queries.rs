//! The SQL behind [`Tx`] for the PostgreSQL store: a connection inside a transaction.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use postgres::types::{ToSql, Type};
use postgres::Row;

use crate::core::error::{ErrorKind, RpcError};
use crate::core::profile::{Profile, StoredProfile};
use crate::core::secret_value::Secret;
use crate::core::usage::Usage;
use crate::store::limits::{check_row_size, row_too_large};
use crate::store::location::PgLocation;
use crate::store::pg_client::{Client, Pipelined, Statement};
use crate::store::{scope_key, ChangeMarker, Tx};

use super::errors::map_pg;
use super::locks::lock_key;
use super::schema::{meta_of, Meta, META_SQL};
use super::{pg_lock_ms, sqlf, PG_SCHEMA_VERSION};

/// A connection inside a transaction opened by [`PgStore`].
pub(super) struct PgTx<'a> {
    c: RefCell<&'a mut Client>,
    loc: &'a PgLocation,
    /// For a read: the `BEGIN …` sent before the first statement other than the change
    /// marker (a read answered from the cache is then one round trip). `None`: begun.
    begin: Option<String>,
    pub(super) begun: Cell<bool>,
    /// The change marker, read once per transaction.
    marker: Cell<Option<Option<ChangeMarker>>>,
    /// The first read of a handle: the store's meta rows go out in the round trip of its
    /// `BEGIN`, ahead of it (see [`PgTx::with_meta_probe`]).
    pub(super) meta_probe: Cell<MetaProbe>,
    /// The first failed statement: PostgreSQL aborts the transaction on it, so a body that
    /// swallowed the error must not believe its later writes were committed.
    pub(super) failed: RefCell<Option<RpcError>>,
    /// A read transaction's settings and providers, read once: the sealing layer, the walk
    /// and the provider table each ask for them, and nothing changes inside a read-only
    /// snapshot (issue 19: fewer round trips on a cold read). Writes never keep them.
    settings_memo: RefCell<Option<serde_json::Map<String, serde_json::Value>>>,
    providers_memo: RefCell<Option<Vec<(String, serde_json::Value)>>>,
    named_memo: RefCell<Option<Vec<(String, String, Secret)>>>,
    /// A read's orders `(scope, provider)` and usage rows, read with a provider's profiles
    /// (the walk asks for all three): the usage of exactly the ids in `usage_memo.0`.
    orders_memo: RefCell<HashMap<(String, String), StoredOrder>>,
    usage_memo: RefCell<Option<CoveredUsage>>,
}

type P<'a> = (&'a (dyn ToSql + Sync), Type);
/// The usage rows of exactly the profile ids in the set (ids without a row: default state).
type CoveredUsage = (std::collections::HashSet<String>, HashMap<String, Usage>);
/// A read of one stored order: `(ids, revision)` when there is one.
type StoredOrder = Result<Option<(Vec<String>, i64)>, RpcError>;

impl<'a> PgTx<'a> {
    pub(super) fn new(c: &'a mut Client, loc: &'a PgLocation, begin: Option<String>) -> Self {
        PgTx {
            c: RefCell::new(c),
            loc,
            begun: Cell::new(begin.is_none()),
            begin,
            marker: Cell::new(None),
            meta_probe: Cell::new(MetaProbe::Off),
            failed: RefCell::new(None),
            settings_memo: RefCell::new(None),
            providers_memo: RefCell::new(None),
            named_memo: RefCell::new(None),
            orders_memo: RefCell::new(HashMap::new()),
            usage_memo: RefCell::new(None),
        }
    }

    /// Takes `generation` (read by the probe just before, outside any snapshot) as this
    /// transaction's change marker instead of reading it again.
    pub(super) fn with_generation(self, generation: Option<i64>) -> Self {
        if let Some(g) = generation {
            self.marker.set(Some(Some(marker(self.loc, g))));
        }
        self
    }

    /// Reads the store's meta rows ([`META_SQL`]) in the round trip of this read's `BEGIN`,
    /// ahead of it (outside the snapshot, like a probe): the generation is this
    /// transaction's change marker. When the store is not at this build's schema version,
    /// or the rows cannot be read, the first statement fails and [`PgTx::meta_probe`] says
    /// so: the caller rolls back and probes the slow way (issue 19: one round trip fewer on
    /// a cold read).
    pub(super) fn with_meta_probe(self) -> Self {
        self.meta_probe.set(MetaProbe::Pending);
        self
    }

    /// A read transaction (begun lazily, `READ ONLY`): what it reads cannot change under it.
    fn read_only(&self) -> bool {
        self.begin.is_some()
    }

    /// Sends a read's `BEGIN` with the reads every read transaction makes (settings: the
    /// sealing layer's first question; providers; named secrets), in one round trip
    /// (issue 19: a cold `get` against `pgbench -C`). The answers stay for this
    /// transaction. A failed statement among them fails the transaction, as it would have
    /// when asked for.
    pub(super) fn ensure_begun(&self) -> Result<(), RpcError> {
        if self.begun.get() {
            return Ok(());
        }
        let begin = self
            .begin
            .as_deref()
            .expect("a read transaction has its BEGIN");
        self.begun.set(true);
        let probe = self.meta_probe.get() == MetaProbe::Pending;
        let meta = sqlf(self.loc, META_SQL);
        let sql = [SETTINGS_SQL, PROVIDERS_SQL, NAMED_SECRETS_SQL].map(|t| sqlf(self.loc, t));
        let mut items = Vec::with_capacity(5);
        if probe {
            items.push(Pipelined::Query(&meta, &[]));
        }
        items.push(Pipelined::Batch(begin));
        items.extend(sql.iter().map(|s| Pipelined::Query(s, &[])));
        let answers = self.c.borrow_mut().pipeline(&items);
        let mut answers = answers.map_err(|e| self.fail(e))?.into_iter();
        let mut next = || answers.next().expect("one answer per item");
        if probe {
            let m = match next() {
                Ok(rows) => meta_of(&rows),
                Err(_) => {
                    self.meta_probe.set(MetaProbe::Failed);
                    return Err(probe_again());
                }
            };
            self.meta_probe.set(MetaProbe::Read(m));
            if m.version != PG_SCHEMA_VERSION {
                return Err(probe_again());
            }
            self.marker
                .set(Some(m.generation.map(|g| marker(self.loc, g))));
        }
        next().map_err(|e| self.fail(e))?;
        let (settings, providers, named) = (
            next().map_err(|e| self.fail(e))?,
            next().map_err(|e| self.fail(e))?,
            next().map_err(|e| self.fail(e))?,
        );
        *self.settings_memo.borrow_mut() = Some(settings_of(&settings));
        *self.providers_memo.borrow_mut() = Some(providers_of(&providers));
        // A row over the size cap is an error for whoever asks (named_secrets), not here.
        *self.named_memo.borrow_mut() = named_secrets_of(&named, self.loc).ok();
        Ok(())
    }

    /// The settings this transaction read (its prefetch), if it read them.
    pub(super) fn read_settings(&self) -> Option<serde_json::Map<String, serde_json::Value>> {
        self.settings_memo.borrow().clone()
    }

    /// A read's profiles of `provider` in `scope` (and the shared one), sent together
    /// with what the walk asks next — the provider's order in `scope` and the shared scope,
    /// and the usage rows of those profiles — in one round trip (issue 19). The order and
    /// usage answers stay for this transaction.
    fn provider_rows(&self, scope: &str, provider: &str) -> Result<Vec<StoredProfile>, RpcError> {
        self.ensure_begun()?;
        let sql = [PROVIDER_PROFILES_SQL, ORDER_SQL, PROVIDER_USAGE_SQL].map(|t| sqlf(self.loc, t));
        let shared = "";
        let mut stmts: Vec<Statement<'_>> = vec![];
        let (profiles_p, order_p, shared_p) = (
            [(&provider as &(dyn ToSql + Sync), T), (&scope, T)],
            [(&scope as &(dyn ToSql + Sync), T), (&provider, T)],
            [(&shared as &(dyn ToSql + Sync), T), (&provider, T)],
        );
        stmts.push((&sql[0], &profiles_p));
        stmts.push((&sql[2], &profiles_p));
        stmts.push((&sql[1], &order_p));
        if !scope.is_empty() {
            stmts.push((&sql[1], &shared_p));
        }
        let answers = self.c.borrow_mut().query_typed_pipelined(&stmts);
        let mut answers = answers.map_err(|e| self.fail(e))?.into_iter();
        let mut next = || {
            answers
                .next()
                .expect("one answer per statement")
                .map_err(|e| self.fail(e))
        };
        let (profiles, usage) = (next()?, next()?);
        let mut orders = self.orders_memo.borrow_mut();
        for s in if scope.is_empty() {
            vec![shared]
        } else {
            vec![scope, shared]
        } {
            let rows = next()?;
            orders.insert(
                (s.to_string(), provider.to_string()),
                order_of(rows.first(), self.loc),
            );
        }
        let profiles = profiles
            .iter()
            .map(|r| to_stored(r, self.loc))
            .collect::<Result<Vec<_>, _>>()?;
        let covered = profiles.iter().map(|sp| sp.profile.id.clone()).collect();
        *self.usage_memo.borrow_mut() = Some((covered, usage_of(&usage)));
        Ok(profiles)
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

const SETTINGS_SQL: &str = "SELECT key, capped(value) FROM {s}.settings";
const PROVIDERS_SQL: &str = "SELECT id, capped(body) FROM {s}.providers ORDER BY id";
const NAMED_SECRETS_SQL: &str =
    "SELECT provider, id, capped(value) FROM {s}.named_secrets ORDER BY provider, id";

const PROVIDER_PROFILES_SQL: &str = "SELECT scope, capped(body), revision, created_at, updated_at FROM {s}.profiles WHERE provider = $1 AND scope IN ('', $2) ORDER BY id, scope DESC";
const ORDER_SQL: &str =
    "SELECT capped(ids), revision FROM {s}.orders WHERE scope = $1 AND provider = $2";
/// The usage rows of the profiles [`PROVIDER_PROFILES_SQL`] reads (same parameters).
const PROVIDER_USAGE_SQL: &str = "SELECT profile_id, capped(body) FROM {s}.usage WHERE profile_id IN (SELECT id FROM {s}.profiles WHERE provider = $1 AND scope IN ('', $2))";

/// A stored order of [`ORDER_SQL`]'s row: `(ids, revision)`. Errors: `store_row_too_large`,
/// or a corrupt id list.
fn order_of(row: Option<&Row>, loc: &PgLocation) -> Result<Option<(Vec<String>, i64)>, RpcError> {
    row.map(|r| Ok((decode_ids(capped(r, 0, "a stored order", loc)?)?, r.get(1))))
        .transpose()
}

/// The usage of usage rows `(profile_id, body)`: a body over the size cap or not a usage
/// state is left out (the profile's default state).
fn usage_of(rows: &[Row]) -> HashMap<String, Usage> {
    rows.iter()
        .filter_map(|r| {
            let u = serde_json::from_str::<Usage>(r.get::<_, Option<&str>>(1)?).ok()?;
            Some((r.get(0), u))
        })
        .collect()
}

/// The settings of [`SETTINGS_SQL`]'s rows: a value over the size cap or not JSON is left out.
fn settings_of(rows: &[Row]) -> serde_json::Map<String, serde_json::Value> {
    let mut out = serde_json::Map::new();
    for r in rows {
        if let Some(Ok(v)) = r.get::<_, Option<&str>>(1).map(serde_json::from_str) {
            out.insert(r.get(0), v);
        }
    }
    out
}

/// The providers of [`PROVIDERS_SQL`]'s rows: a body over the size cap or not JSON is null.
fn providers_of(rows: &[Row]) -> Vec<(String, serde_json::Value)> {
    rows.iter()
        .map(|r| {
            (
                r.get(0),
                r.get::<_, Option<&str>>(1)
                    .and_then(|b| serde_json::from_str(b).ok())
                    .unwrap_or(serde_json::Value::Null),
            )
        })
        .collect()
}

/// The entries of [`NAMED_SECRETS_SQL`]'s rows. Errors: `store_row_too_large` for a value
/// over the size cap.
fn named_secrets_of(
    rows: &[Row],
    loc: &PgLocation,
) -> Result<Vec<(String, String, Secret)>, RpcError> {
    rows.iter()
        .map(|r| {
            let v = capped(r, 2, "a stored secret", loc)?;
            Ok((r.get(0), r.get(1), Secret::new(v.to_string())))
        })
        .collect()
}

/// Where a transaction's meta probe ([`PgTx::with_meta_probe`]) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MetaProbe {
    /// Not asked for: the handle knows its store.
    Off,
    /// To be read with `BEGIN`.
    Pending,
    /// Read (at this build's schema version or not).
    Read(Meta),
    /// The meta rows could not be read.
    Failed,
}

/// The error a meta probe that found no store at this build's version ends the body with;
/// the caller rolls back and probes the slow way (the body never sees data).
fn probe_again() -> RpcError {
    RpcError::internal("the store's schema must be probed again")
}

/// The change marker of the store at `loc` at `generation`: `(store identity, generation, 0)`.
fn marker(loc: &PgLocation, generation: i64) -> ChangeMarker {
    let id = lock_key(&["store", &loc.display, &loc.schema]) as u64;
    (id, generation, 0)
}

pub(super) fn parse_profile(body: &str) -> Result<Profile, RpcError> {
    serde_json::from_str(body).map_err(|_| {
        RpcError::new(
            ErrorKind::StoreCorrupt,
            "a stored profile could not be decoded",
        )
    })
}

pub(super) fn to_stored(r: &Row, loc: &PgLocation) -> Result<StoredProfile, RpcError> {
    let scope: String = r.get(0);
    let body = capped(r, 1, "a stored profile", loc)?;
    Ok(StoredProfile {
        profile: parse_profile(body)?,
        scope: if scope.is_empty() { None } else { Some(scope) },
        revision: r.get(2),
        created_at: r.get(3),
        updated_at: r.get(4),
    })
}

/// Column `i`, selected as `capped(col)`: NULL means the stored value is over
/// [`crate::store::limits::MAX_ROW_BYTES`] and was not sent (`store_corrupt`, [`row_too_large`]).
pub(super) fn capped<'r>(
    r: &'r Row,
    i: usize,
    what: &str,
    loc: &PgLocation,
) -> Result<&'r str, RpcError> {
    r.get::<_, Option<&str>>(i)
        .ok_or_else(|| row_too_large(what, &loc.display))
}

pub(super) fn decode_ids(s: &str) -> Result<Vec<String>, RpcError> {
    serde_json::from_str(s).map_err(|_| {
        RpcError::new(
            ErrorKind::StoreCorrupt,
            "a stored order could not be decoded",
        )
    })
}

pub(super) const T: Type = Type::TEXT;
pub(super) const I: Type = Type::INT8;

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
        if self.meta_probe.get() == MetaProbe::Pending {
            // The generation comes with the meta rows, ahead of `BEGIN`.
            self.ensure_begun()?;
        }
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
        let m = row.map(|r| marker(self.loc, r.get::<_, i64>(0)));
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
            Some(p) if self.read_only() => {
                let mut out = self.provider_rows(scope, p)?;
                out.dedup_by(|b, a| a.profile.id == b.profile.id);
                return Ok(out);
            }
            Some(p) => self.q(PROVIDER_PROFILES_SQL, &[(&p, T), (&scope, T)])?,
            None => self.q(
                "SELECT scope, capped(body), revision, created_at, updated_at FROM {s}.profiles WHERE scope IN ('', $1) ORDER BY provider, id, scope DESC",
                &[(&scope, T)],
            )?,
        };
        let mut out = rows
            .iter()
            .map(|r| to_stored(r, self.loc))
            .collect::<Result<Vec<_>, _>>()?;
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
            "SELECT scope, capped(body), revision, created_at, updated_at FROM {s}.profiles WHERE id = $1 AND scope IN ('', $2) ORDER BY scope DESC LIMIT 1",
            &[(&id, T), (&scope, T)],
        )?
        .as_ref()
        .map(|r| to_stored(r, self.loc))
        .transpose()
    }

    fn scope_profile(
        &self,
        agent: Option<&str>,
        id: &str,
    ) -> Result<Option<StoredProfile>, RpcError> {
        let scope = scope_key(agent);
        self.q_opt(
            "SELECT scope, capped(body), revision, created_at, updated_at FROM {s}.profiles WHERE scope = $1 AND id = $2",
            &[(&scope, T), (&id, T)],
        )?
        .as_ref()
        .map(|r| to_stored(r, self.loc))
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
        check_row_size(&format!("profile {}", p.id), body.len())?;
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
        let k = (scope.to_string(), provider.to_string());
        if let Some(o) = self.orders_memo.borrow().get(&k) {
            return o.clone();
        }
        let row = self.q_opt(ORDER_SQL, &[(&scope, T), (&provider, T)])?;
        order_of(row.as_ref(), self.loc)
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
        check_row_size(&format!("the {provider} order"), body.len())?;
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
            "SELECT provider, capped(ids) FROM {s}.orders WHERE scope = $1 ORDER BY provider",
            &[(&scope, T)],
        )?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.get(0),
                    decode_ids(capped(r, 1, "a stored order", self.loc)?)?,
                ))
            })
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
                "SELECT capped(body) FROM {s}.usage WHERE profile_id = $1",
                &[(&id, T)],
            )?
            .and_then(|r| serde_json::from_str(r.get::<_, Option<&str>>(0)?).ok())
            .unwrap_or_default())
    }

    fn usages(&self, ids: &[&str]) -> Result<HashMap<String, Usage>, RpcError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        if let Some((covered, usage)) = self.usage_memo.borrow().as_ref() {
            if ids.iter().all(|id| covered.contains(*id)) {
                return Ok(ids
                    .iter()
                    .filter_map(|id| Some((id.to_string(), usage.get(*id)?.clone())))
                    .collect());
            }
        }
        let list: Vec<&str> = ids.to_vec();
        let rows = self.q(
            "SELECT profile_id, capped(body) FROM {s}.usage WHERE profile_id = ANY($1)",
            &[(&list, Type::TEXT_ARRAY)],
        )?;
        Ok(usage_of(&rows))
    }

    fn put_usage(&self, id: &str, u: &Usage) -> Result<(), RpcError> {
        if *u == Usage::default() {
            self.exec("DELETE FROM {s}.usage WHERE profile_id = $1", &[(&id, T)])?;
            return Ok(());
        }
        let body = serde_json::to_string(u).map_err(|e| RpcError::internal(e.to_string()))?;
        check_row_size(&format!("usage of {id}"), body.len())?;
        self.exec(
            "INSERT INTO {s}.usage (profile_id, body) VALUES ($1, $2) ON CONFLICT (profile_id) DO UPDATE SET body = excluded.body",
            &[(&id, T), (&body, T)],
        )?;
        Ok(())
    }

    fn setting(&self, key: &str) -> Result<Option<serde_json::Value>, RpcError> {
        if self.read_only() {
            return Ok(self.settings()?.remove(key));
        }
        Ok(self
            .q_opt(
                "SELECT capped(value) FROM {s}.settings WHERE key = $1",
                &[(&key, T)],
            )?
            .and_then(|r| serde_json::from_str(r.get::<_, Option<&str>>(0)?).ok()))
    }

    fn settings(&self) -> Result<serde_json::Map<String, serde_json::Value>, RpcError> {
        self.ensure_begun()?;
        if let Some(m) = self.settings_memo.borrow().as_ref() {
            return Ok(m.clone());
        }
        Ok(settings_of(&self.q(SETTINGS_SQL, &[])?))
    }

    fn put_setting(&self, key: &str, value: &serde_json::Value) -> Result<(), RpcError> {
        let v = value.to_string();
        check_row_size(&format!("setting {key}"), v.len())?;
        self.exec(
            "INSERT INTO {s}.settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[(&key, T), (&v, T)],
        )?;
        Ok(())
    }

    fn providers(&self) -> Result<Vec<(String, serde_json::Value)>, RpcError> {
        self.ensure_begun()?;
        if let Some(p) = self.providers_memo.borrow().as_ref() {
            return Ok(p.clone());
        }
        Ok(providers_of(&self.q(PROVIDERS_SQL, &[])?))
    }

    fn put_provider(&self, id: &str, body: &serde_json::Value) -> Result<bool, RpcError> {
        let b = body.to_string();
        check_row_size(&format!("provider {id}"), b.len())?;
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
            "SELECT capped(value) FROM {s}.named_secrets WHERE provider = $1 AND id = $2",
            &[(&provider, T), (&id, T)],
        )?;
        row.map(|r| {
            Ok(Secret::new(
                capped(&r, 0, "a stored secret", self.loc)?.to_string(),
            ))
        })
        .transpose()
    }

    fn named_secrets(&self) -> Result<Vec<(String, String, Secret)>, RpcError> {
        self.ensure_begun()?;
        if let Some(n) = self.named_memo.borrow().as_ref() {
            return Ok(n.clone());
        }
        named_secrets_of(&self.q(NAMED_SECRETS_SQL, &[])?, self.loc)
    }

    fn put_named_secret(
        &self,
        provider: &str,
        id: &str,
        value: &Secret,
        now: i64,
    ) -> Result<bool, RpcError> {
        let v = value.expose();
        check_row_size(&format!("secret {provider}/{id}"), v.len())?;
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
