//! The SQL behind [`Tx`] for the SQLite store: profiles, orders, lastGood, usage, settings,
//! providers, named secrets and import marks.

use std::collections::HashMap;
use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

use crate::core::error::{ErrorKind, RpcError};
use crate::core::profile::{Profile, StoredProfile};
use crate::core::secret_value::Secret;
use crate::core::usage::Usage;
use crate::store::limits::check_row_size;
use crate::store::{scope_key, ChangeMarker, Tx};

use super::{apply_busy_timeout, map_sqlite};

thread_local! {
    /// The read transaction open on this thread: its connection's handle and, once taken,
    /// its change marker ([`read_marker_scope`]).
    static READ_MARKER: std::cell::Cell<Option<(u64, Option<Option<ChangeMarker>>)>> =
        const { std::cell::Cell::new(None) };
}

/// The identity of `c` (its handle's address) in change markers.
fn handle_id(c: &Connection) -> u64 {
    // SAFETY: only the address is used, as an identity; the handle is not dereferenced.
    (unsafe { c.handle() }) as usize as u64
}

/// Opens (`Some(c)`, at `BEGIN`) or closes (`None`, at its end) the scope of a read
/// transaction on `c` within which [`Tx::change_marker`] is taken once: the first ask,
/// before the body reads anything, gives the marker of the whole transaction (issue 19:
/// a warm `serve` stat-ed the store's files twice per request; a marker taken after the
/// snapshot could also label older data with a newer marker).
pub(super) fn read_marker_scope(c: Option<&Connection>) {
    READ_MARKER.set(c.map(|c| (handle_id(c), None)));
    READ_SETTINGS.take();
}

thread_local! {
    /// The settings table as the read transaction open on this thread read it (by its
    /// connection's handle), kept until the transaction ends ([`read_marker_scope`]): the
    /// settings are read several times per read (the busy timeout, the effective settings,
    /// the sealed store's `$seal` row), each time from the same snapshot.
    static READ_SETTINGS: std::cell::RefCell<Option<(u64, serde_json::Map<String, serde_json::Value>)>> =
        const { std::cell::RefCell::new(None) };
}

/// Whether a read transaction on `c` is open on this thread.
fn in_read_tx(c: &Connection) -> bool {
    READ_MARKER.get().is_some_and(|(h, _)| h == handle_id(c))
}

/// `f` over the settings the read transaction open on `c` has read, if it has.
fn read_settings<T>(
    c: &Connection,
    f: impl FnOnce(&serde_json::Map<String, serde_json::Value>) -> T,
) -> Option<T> {
    if !in_read_tx(c) {
        return None;
    }
    let h = handle_id(c);
    READ_SETTINGS.with_borrow(|m| m.as_ref().filter(|(k, _)| *k == h).map(|(_, m)| f(m)))
}

/// The change marker of `c` now (see [`crate::store::ChangeMarker`]).
fn fresh_marker(c: &Connection, handle: u64) -> Result<Option<ChangeMarker>, RpcError> {
    if c.is_readonly(rusqlite::MAIN_DB).unwrap_or(false) {
        // `data_version` moves at every transaction of a read-only connection without
        // a live writer: see `open::readonly_marker`.
        return Ok(super::open::readonly_marker(c).map(|m| (handle, m, 0)));
    }
    let v: i64 = c
        .prepare_cached("PRAGMA data_version")
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(sql)?;
    Ok(Some((handle, v, c.total_changes())))
}

/// The SQL behind [`Tx`]: a connection inside a transaction opened by [`SqliteStore`].
impl Tx for Connection {
    fn change_marker(&self) -> Result<Option<ChangeMarker>, RpcError> {
        let handle = handle_id(self);
        match READ_MARKER.get() {
            Some((h, Some(m))) if h == handle => return Ok(m),
            Some((h, None)) if h == handle => {
                let m = fresh_marker(self, handle)?;
                READ_MARKER.set(Some((h, Some(m))));
                return Ok(m);
            }
            _ => {}
        }
        fresh_marker(self, handle)
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
        check_row_size(&format!("secret {provider}/{id}"), value.expose().len())?;
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

pub(super) fn sql(e: rusqlite::Error) -> RpcError {
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
    check_row_size(&format!("profile {}", p.id), body.len())?;
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
    check_row_size(&format!("the {provider} order"), body.len())?;
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
    check_row_size(&format!("usage of {id}"), body.len())?;
    c.prepare_cached("INSERT INTO usage (profile_id, body) VALUES (?1, ?2) ON CONFLICT (profile_id) DO UPDATE SET body = excluded.body")
        .map_err(sql)?
        .execute(params![id, body])
        .map_err(sql)?;
    Ok(())
}

/// A stored setting (JSON text) by key; `None` when absent or not JSON. Inside a read
/// transaction that has read every setting, from that read: the same answer, since
/// [`settings`] fails on a row it cannot read and leaves out a value that is not JSON.
fn setting(c: &Connection, key: &str) -> Result<Option<serde_json::Value>, RpcError> {
    if let Some(v) = read_settings(c, |m| m.get(key).cloned()) {
        return Ok(v);
    }
    let v: Option<String> = c
        .prepare_cached("SELECT value FROM settings WHERE key = ?1")
        .map_err(sql)?
        .query_row(params![key], |r| r.get(0))
        .optional()
        .map_err(sql)?;
    Ok(v.and_then(|s| serde_json::from_str(&s).ok()))
}

/// Every stored setting: key → JSON value (a value that is not JSON is left out). Read
/// once per read transaction ([`READ_SETTINGS`]).
pub(super) fn settings(
    c: &Connection,
) -> Result<serde_json::Map<String, serde_json::Value>, RpcError> {
    if let Some(m) = read_settings(c, |m| m.clone()) {
        return Ok(m);
    }
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
    if in_read_tx(c) {
        READ_SETTINGS.set(Some((handle_id(c), out.clone())));
    }
    Ok(out)
}

/// Stores a setting.
fn put_setting(c: &Connection, key: &str, value: &serde_json::Value) -> Result<(), RpcError> {
    let value = value.to_string();
    check_row_size(&format!("setting {key}"), value.len())?;
    c.prepare_cached("INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
        .map_err(sql)?
        .execute(params![key, value])
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
    let body = body.to_string();
    check_row_size(&format!("provider {id}"), body.len())?;
    let existed = c
        .prepare_cached("SELECT 1 FROM providers WHERE id = ?1")
        .map_err(sql)?
        .query_row(params![id], |_| Ok(()))
        .optional()
        .map_err(sql)?
        .is_some();
    c.prepare_cached("INSERT INTO providers (id, body) VALUES (?1, ?2) ON CONFLICT (id) DO UPDATE SET body = excluded.body")
        .map_err(sql)?
        .execute(params![id, body])
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
