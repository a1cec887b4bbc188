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
use crate::store::pg_client::Client;
use crate::store::{scope_key, ChangeMarker, Tx};

use super::errors::map_pg;
use super::locks::lock_key;
use super::{pg_lock_ms, sqlf};

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
    /// The first failed statement: PostgreSQL aborts the transaction on it, so a body that
    /// swallowed the error must not believe its later writes were committed.
    pub(super) failed: RefCell<Option<RpcError>>,
}

type P<'a> = (&'a (dyn ToSql + Sync), Type);

impl<'a> PgTx<'a> {
    pub(super) fn new(c: &'a mut Client, loc: &'a PgLocation, begin: Option<String>) -> Self {
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
                "SELECT scope, capped(body), revision, created_at, updated_at FROM {s}.profiles WHERE provider = $1 AND scope IN ('', $2) ORDER BY id, scope DESC",
                &[(&p, T), (&scope, T)],
            )?,
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
        self.q_opt(
            "SELECT capped(ids), revision FROM {s}.orders WHERE scope = $1 AND provider = $2",
            &[(&scope, T), (&provider, T)],
        )?
        .map(|r| {
            Ok((
                decode_ids(capped(&r, 0, "a stored order", self.loc)?)?,
                r.get(1),
            ))
        })
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
        let mut out = HashMap::new();
        if ids.is_empty() {
            return Ok(out);
        }
        let list: Vec<&str> = ids.to_vec();
        let rows = self.q(
            "SELECT profile_id, capped(body) FROM {s}.usage WHERE profile_id = ANY($1)",
            &[(&list, Type::TEXT_ARRAY)],
        )?;
        for r in rows {
            if let Some(Ok(u)) = r
                .get::<_, Option<&str>>(1)
                .map(serde_json::from_str::<Usage>)
            {
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
        check_row_size(&format!("usage of {id}"), body.len())?;
        self.exec(
            "INSERT INTO {s}.usage (profile_id, body) VALUES ($1, $2) ON CONFLICT (profile_id) DO UPDATE SET body = excluded.body",
            &[(&id, T), (&body, T)],
        )?;
        Ok(())
    }

    fn setting(&self, key: &str) -> Result<Option<serde_json::Value>, RpcError> {
        Ok(self
            .q_opt(
                "SELECT capped(value) FROM {s}.settings WHERE key = $1",
                &[(&key, T)],
            )?
            .and_then(|r| serde_json::from_str(r.get::<_, Option<&str>>(0)?).ok()))
    }

    fn settings(&self) -> Result<serde_json::Map<String, serde_json::Value>, RpcError> {
        let rows = self.q("SELECT key, capped(value) FROM {s}.settings", &[])?;
        let mut out = serde_json::Map::new();
        for r in rows {
            if let Some(Ok(v)) = r.get::<_, Option<&str>>(1).map(serde_json::from_str) {
                out.insert(r.get(0), v);
            }
        }
        Ok(out)
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
        let rows = self.q(
            "SELECT id, capped(body) FROM {s}.providers ORDER BY id",
            &[],
        )?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.get(0),
                    r.get::<_, Option<&str>>(1)
                        .and_then(|b| serde_json::from_str(b).ok())
                        .unwrap_or(serde_json::Value::Null),
                )
            })
            .collect())
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
        let rows = self.q(
            "SELECT provider, id, capped(value) FROM {s}.named_secrets ORDER BY provider, id",
            &[],
        )?;
        rows.iter()
            .map(|r| {
                let v = capped(r, 2, "a stored secret", self.loc)?;
                Ok((r.get(0), r.get(1), Secret::new(v.to_string())))
            })
            .collect()
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
