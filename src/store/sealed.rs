//! Sealing at the store seam (PROTOCOL §9 r3): a decorator around any [`Store`] that
//! seals secret fields on the way in and opens them on the way out, so both backends share
//! one implementation and no handler ever sees a ciphertext.
//!
//! - **State.** A sealed store holds one reserved settings row, [`META_KEY`]:
//!   `{"v":1,"storeId":"<32 hex>","keys":["sha256:…",…]}` — the store id bound into every
//!   ciphertext and the fingerprints of the keys in use (the first seals new writes). The
//!   row is hidden from handlers. No row (or JSON `null`) = not sealed.
//! - **Profiles.** `key`, `token`, `access`, `refresh` are stored as envelopes
//!   (`crate::seal::envelope`) with associated data (store id, `profile`, scope, id,
//!   field). On read, a field that fails to open becomes
//!   [`crate::core::sealed::UNDECRYPTABLE`] and the walk skips its profile
//!   (`undecryptable`).
//! - **Settings and providers** of a sealed store are stored as
//!   `{"$seal": <envelope of nothing>, "value": <json>}`: readable, and authenticated by the
//!   envelope's tag over the canonical JSON. With a key, a row whose tag does not verify is
//!   ignored (a database writer without the key cannot plant an exec command or a token
//!   URL). Without a key the values are used for what needs no secret, minus
//!   `secretProviders` and providers' `oauth` (nothing store-named runs).
//! - **Writes.** A secret is written only under the first configured key the store lists;
//!   none → `store_sealed` (no key) or `store_key_mismatch`. A store with a key configured
//!   becomes sealed on its first secret write.
//! - **store.seal / rekey / unseal** ([`SealOp`]) run in bounded write transactions of at
//!   most [`BATCH`] profiles each, so other helpers go on resolving and writing meanwhile;
//!   every helper reads plaintext and sealed fields alike, so none sees a profile missing.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{json, Map, Value};

use crate::core::error::{ErrorKind, RpcError};
use crate::core::profile::{Credential, Profile, StoredProfile};
use crate::core::sealed::{credential_unopened, locked, undecryptable};
use crate::core::secret_value::Secret;
use crate::core::usage::Usage;
use crate::seal::envelope::{self, StoreKey};
use crate::seal::keys::{KeyRing, KEY_VARIABLES};

use super::{ChangeMarker, RefreshLocks, Store, StoreDescription, Tx, TxBody};

/// The reserved settings key holding the sealing state.
pub const META_KEY: &str = "$seal";
/// Profiles changed per transaction by seal, rekey and unseal.
pub const BATCH: usize = 200;

/// The sealing state of a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// Random, bound into every ciphertext's associated data.
    pub store_id: String,
    /// Fingerprints of the keys in use; the first seals new writes.
    pub keys: Vec<String>,
}

impl Meta {
    fn from_json(v: &Value) -> Option<Meta> {
        let o = v.as_object()?;
        Some(Meta {
            store_id: o.get("storeId")?.as_str()?.to_string(),
            keys: o
                .get("keys")?
                .as_array()?
                .iter()
                .filter_map(|k| k.as_str().map(str::to_string))
                .collect(),
        })
    }
    fn to_json(&self) -> Value {
        json!({"v": 1, "storeId": self.store_id, "keys": self.keys})
    }
}

/// What `helper.info` and `check` say about sealing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SealInfo {
    /// Whether the store is sealed.
    pub sealed: bool,
    /// Fingerprints of the keys in use (the first seals new writes).
    pub keys: Vec<String>,
    /// How many secret fields are stored in plaintext.
    pub plaintext_secrets: u64,
}

/// A store-wide sealing operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealOp {
    /// Seal every plaintext secret under the first configured key.
    Seal,
    /// Move every sealed secret to the first configured key.
    Rekey,
    /// Store every secret in plaintext again and drop the sealing state.
    Unseal,
}

/// What a [`SealOp`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SealReport {
    /// Profiles rewritten.
    pub profiles: u64,
    /// Profiles left as they were because a field could not be opened.
    pub undecryptable: Vec<String>,
    /// Write transactions used.
    pub transactions: u64,
    /// The state afterwards.
    pub info: SealInfo,
}

fn sealed_error() -> RpcError {
    RpcError::new(
        ErrorKind::StoreSealed,
        "the store is sealed and no store key is configured",
    )
    .with_hint(format!(
        "give the store key by {KEY_VARIABLES}; requests that need no secret (lists, orders, status, reports) work without it"
    ))
}

fn mismatch_error(expected: &[String], given: &[String]) -> RpcError {
    RpcError::new(
        ErrorKind::StoreKeyMismatch,
        "no configured store key is one this store is sealed with",
    )
    .with("expected", expected.to_vec())
    .with("given", given.to_vec())
}

/// The sealing state last read, by the change marker of the committed state it was read
/// from, shared by the transactions of one store handle.
type MetaCache = Arc<Mutex<Option<(ChangeMarker, Option<Meta>)>>>;

/// The store decorator. Wraps the store returned by `store::open`.
pub struct SealedStore {
    inner: Box<dyn Store>,
    keys: Result<Arc<KeyRing>, RpcError>,
    meta_cache: MetaCache,
}

impl SealedStore {
    /// Wraps `inner` with the keys of the process (`keys` errors surface on the first
    /// request that needs a key).
    pub fn new(inner: Box<dyn Store>, keys: Result<KeyRing, RpcError>) -> SealedStore {
        SealedStore {
            inner,
            keys: keys.map(Arc::new),
            meta_cache: Arc::new(Mutex::new(None)),
        }
    }

    fn ctx(&self) -> Ctx {
        Ctx {
            keys: self.keys.clone(),
            meta_cache: self.meta_cache.clone(),
        }
    }
}

#[derive(Clone)]
struct Ctx {
    keys: Result<Arc<KeyRing>, RpcError>,
    meta_cache: MetaCache,
}

impl Ctx {
    fn ring(&self) -> Result<&KeyRing, RpcError> {
        self.keys.as_deref().map_err(Clone::clone)
    }
}

/// The secret fields of a credential, by field name.
fn secret_fields(c: &mut Credential) -> Vec<(&'static str, &mut Secret)> {
    match c {
        Credential::ApiKey { key, .. } => key.iter_mut().map(|s| ("key", s)).collect(),
        Credential::Token { token, .. } => token.iter_mut().map(|s| ("token", s)).collect(),
        Credential::OAuth {
            access, refresh, ..
        } => vec![("access", access), ("refresh", refresh)],
    }
}

fn profile_aad(meta: &Meta, scope: Option<&str>, id: &str, field: &str) -> Vec<u8> {
    envelope::aad(&meta.store_id, "profile", scope.unwrap_or(""), id, field)
}

/// JSON with object keys sorted at every level (what a tag covers).
pub fn canonical_json(v: &Value) -> String {
    fn sort(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                let mut out = Map::new();
                for k in keys {
                    out.insert(k.clone(), sort(&m[k]));
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(sort).collect()),
            x => x.clone(),
        }
    }
    // serde_json's map may keep insertion order; build the sorted text by hand.
    fn write(v: &Value, out: &mut String) {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String((*k).clone()).to_string());
                    out.push(':');
                    write(&m[k.as_str()], out);
                }
                out.push('}');
            }
            Value::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(x, out);
                }
                out.push(']');
            }
            x => out.push_str(&x.to_string()),
        }
    }
    let mut s = String::new();
    write(&sort(v), &mut s);
    s
}

/// A settings or provider row as stored on a sealed store: the value and its tag.
fn wrap(key: &StoreKey, meta: &Meta, kind: &str, id: &str, value: &Value) -> Value {
    let aad = envelope::aad(&meta.store_id, kind, "", id, &canonical_json(value));
    json!({"$seal": key.seal(&aad, b""), "value": value})
}

/// `Some((tag, value))` when `v` is a wrapped row.
fn unwrap_parts(v: &Value) -> Option<(&str, &Value)> {
    let o = v.as_object()?;
    if o.len() != 2 {
        return None;
    }
    Some((o.get("$seal")?.as_str()?, o.get("value")?))
}

/// The transaction decorator.
struct SealedTx<'a> {
    inner: &'a dyn Tx,
    ctx: &'a Ctx,
    /// Loaded on first use: `Some(meta)` of this transaction.
    meta: RefCell<Option<Option<Meta>>>,
}

impl<'a> SealedTx<'a> {
    fn new(inner: &'a dyn Tx, ctx: &'a Ctx) -> Self {
        SealedTx {
            inner,
            ctx,
            meta: RefCell::new(None),
        }
    }

    fn meta(&self) -> Result<Option<Meta>, RpcError> {
        if let Some(m) = &*self.meta.borrow() {
            return Ok(m.clone());
        }
        let marker = self.inner.change_marker()?;
        if let Some(mk) = marker {
            let cache = self
                .ctx
                .meta_cache
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if let Some((k, m)) = &*cache {
                if *k == mk {
                    let m = m.clone();
                    drop(cache);
                    *self.meta.borrow_mut() = Some(m.clone());
                    return Ok(m);
                }
            }
        }
        let m = self
            .inner
            .setting(META_KEY)?
            .as_ref()
            .and_then(Meta::from_json);
        if let Some(mk) = marker {
            *self
                .ctx
                .meta_cache
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some((mk, m.clone()));
        }
        *self.meta.borrow_mut() = Some(m.clone());
        Ok(m)
    }

    fn set_meta(&self, m: Option<Meta>) -> Result<(), RpcError> {
        let v = m.as_ref().map(Meta::to_json).unwrap_or(Value::Null);
        self.inner.put_setting(META_KEY, &v)?;
        *self.meta.borrow_mut() = Some(m);
        Ok(())
    }

    /// The key new secrets of a sealed store are written under.
    fn write_key(&self, meta: &Meta) -> Result<StoreKey, RpcError> {
        let ring = self.ctx.ring()?;
        if ring.keys.is_empty() {
            return Err(sealed_error());
        }
        ring.keys
            .iter()
            .find(|k| meta.keys.iter().any(|m| m == k.fingerprint()))
            .cloned()
            .ok_or_else(|| mismatch_error(&meta.keys, &ring.fingerprints()))
    }

    /// Makes an unsealed store sealed under the first configured key: the state row, and
    /// every settings and provider row wrapped. Profiles are left to `store.seal`.
    fn init_meta(&self) -> Result<Meta, RpcError> {
        let ring = self.ctx.ring()?;
        let key = ring.keys.first().ok_or_else(sealed_error)?.clone();
        let meta = Meta {
            store_id: envelope::random_nonce()[..16]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
            keys: vec![key.fingerprint().to_string()],
        };
        self.rewrap_rows(None, &meta, Some(&key))?;
        self.set_meta(Some(meta.clone()))?;
        Ok(meta)
    }

    /// Rewrites every settings and provider row: wrapped under `key`, or plain (`None`).
    /// Rows are read as this transaction sees them (verified).
    fn rewrap_rows(
        &self,
        read_meta: Option<&Meta>,
        meta: &Meta,
        key: Option<&StoreKey>,
    ) -> Result<(), RpcError> {
        let raw_settings = self.inner.settings()?;
        let raw_providers = self.inner.providers()?;
        // Read the values as they are now (plain before sealing, verified after).
        let settings: Vec<(String, Value)> = raw_settings
            .into_iter()
            .filter(|(k, _)| k != META_KEY)
            .filter_map(|(k, v)| self.read_row(read_meta, "settings", &k, v).map(|v| (k, v)))
            .collect();
        let providers: Vec<(String, Value)> = raw_providers
            .into_iter()
            .filter_map(|(k, v)| self.read_row(read_meta, "provider", &k, v).map(|v| (k, v)))
            .collect();
        for (k, v) in settings {
            let out = match key {
                Some(key) => wrap(key, meta, "settings", &k, &v),
                None => v,
            };
            self.inner.put_setting(&k, &out)?;
        }
        for (k, v) in providers {
            let out = match key {
                Some(key) => wrap(key, meta, "provider", &k, &v),
                None => v,
            };
            self.inner.put_provider(&k, &out)?;
        }
        Ok(())
    }

    /// A settings or provider row as handlers see it; `None` when it must be ignored.
    fn read_row(&self, meta: Option<&Meta>, kind: &str, id: &str, v: Value) -> Option<Value> {
        let Some(meta) = meta else {
            if unwrap_parts(&v).is_some() {
                tracing::warn!(%kind, %id, "a sealed row in a store that is not sealed is ignored");
                return None;
            }
            return Some(v);
        };
        let Some((tag, value)) = unwrap_parts(&v) else {
            tracing::warn!(%kind, %id, "an unauthenticated row in a sealed store is ignored");
            return None;
        };
        let ring = match self.ctx.ring() {
            Ok(r) if !r.keys.is_empty() => r,
            _ => return Some(strip_unverified(kind, value.clone())),
        };
        let ok = envelope::parse(tag).ok().is_some_and(|env| {
            ring.by_short_id(env.key_id).is_some_and(|k| {
                let aad = envelope::aad(&meta.store_id, kind, "", id, &canonical_json(value));
                k.open(&aad, &env).is_some()
            })
        });
        if ok {
            Some(value.clone())
        } else if meta
            .keys
            .iter()
            .any(|fp| ring.keys.iter().any(|k| k.fingerprint() == fp))
        {
            tracing::warn!(%kind, %id, "a row whose tag does not verify under the store key is ignored");
            None
        } else {
            // Keys configured but none of them the store's: as without a key.
            Some(strip_unverified(kind, value.clone()))
        }
    }

    /// Opens the sealed fields of a profile read from the store.
    fn open_profile(&self, mut sp: StoredProfile) -> Result<StoredProfile, RpcError> {
        let meta = self.meta()?;
        let ring = self.ctx.ring().ok();
        // No usable key at all: a sealed field is locked, not damaged.
        let no_key = meta.is_some() && self.seal_error().ok().flatten().is_some();
        let scope = sp.scope.clone();
        let id = sp.profile.id.clone();
        for (field, s) in secret_fields(&mut sp.profile.credential) {
            if !envelope::is_envelope(s.expose()) {
                continue;
            }
            let opened = meta.as_ref().and_then(|m| {
                let env = envelope::parse(s.expose()).ok()?;
                let key = ring?.by_short_id(env.key_id)?;
                let pt = key.open(&profile_aad(m, scope.as_deref(), &id, field), &env)?;
                String::from_utf8(pt.to_vec()).ok()
            });
            *s = match opened {
                Some(v) => Secret::new(v),
                None if no_key => locked(),
                None => undecryptable(),
            };
        }
        Ok(sp)
    }

    /// Seals the secret fields of a profile about to be written.
    fn seal_profile(&self, agent: Option<&str>, p: &Profile) -> Result<Profile, RpcError> {
        let mut out = p.clone();
        let fields = secret_fields(&mut out.credential);
        if fields.is_empty() {
            return Ok(out);
        }
        drop(fields);
        if credential_unopened(&out.credential) {
            return Err(self.seal_error()?.unwrap_or_else(|| {
                RpcError::new(
                    ErrorKind::StoreSealed,
                    format!("profile `{}` holds a secret that could not be opened; it is not written back", p.id),
                )
            }));
        }
        let ring = self.ctx.ring()?;
        let meta = match self.meta()? {
            Some(m) => m,
            None if ring.keys.is_empty() => return Ok(out),
            None => self.init_meta()?,
        };
        let key = self.write_key(&meta)?;
        for (field, s) in secret_fields(&mut out.credential) {
            if envelope::is_envelope(s.expose()) {
                return Err(RpcError::new(
                    ErrorKind::InvalidProfile,
                    format!(
                        "`{field}` of `{}` looks like a sealed envelope; it is not a credential",
                        p.id
                    ),
                ));
            }
            let aad = profile_aad(&meta, agent, &p.id, field);
            *s = Secret::new(key.seal(&aad, s.expose().as_bytes()));
        }
        Ok(out)
    }

    /// The error a request that needs a secret gets, if any.
    fn seal_error(&self) -> Result<Option<RpcError>, RpcError> {
        let Some(meta) = self.meta()? else {
            return Ok(None);
        };
        // A key source that is set but unusable is the answer (it names the source).
        let ring = match self.ctx.ring() {
            Ok(r) => r,
            Err(e) => return Ok(Some(e)),
        };
        if ring.keys.is_empty() {
            return Ok(Some(sealed_error()));
        }
        if !ring
            .keys
            .iter()
            .any(|k| meta.keys.iter().any(|m| m == k.fingerprint()))
        {
            return Ok(Some(mismatch_error(&meta.keys, &ring.fingerprints())));
        }
        Ok(None)
    }

    fn write_row(&self, kind: &str, id: &str, value: &Value) -> Result<Value, RpcError> {
        match self.meta()? {
            None => {
                // A configured key that cannot be loaded never lets a write go through
                // in plaintext silently; an unsealed store without keys is as before.
                self.ctx.ring()?;
                Ok(value.clone())
            }
            Some(meta) => {
                let key = self.write_key(&meta)?;
                Ok(wrap(&key, &meta, kind, id, value))
            }
        }
    }
}

/// What an unverified settings or provider row may still be used for: nothing that names
/// a command, a file or a token URL.
fn strip_unverified(kind: &str, mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        match kind {
            "settings" => {}
            _ => {
                o.remove("oauth");
            }
        }
    }
    v
}

impl Tx for SealedTx<'_> {
    fn change_marker(&self) -> Result<Option<ChangeMarker>, RpcError> {
        self.inner.change_marker()
    }
    fn apply_busy_timeout(&self, ms: u64) -> Result<(), RpcError> {
        self.inner.apply_busy_timeout(ms)
    }
    fn view_profiles(
        &self,
        agent: Option<&str>,
        provider: Option<&str>,
    ) -> Result<Vec<StoredProfile>, RpcError> {
        self.inner
            .view_profiles(agent, provider)?
            .into_iter()
            .map(|sp| self.open_profile(sp))
            .collect()
    }
    fn view_profile(
        &self,
        agent: Option<&str>,
        id: &str,
    ) -> Result<Option<StoredProfile>, RpcError> {
        self.inner
            .view_profile(agent, id)?
            .map(|sp| self.open_profile(sp))
            .transpose()
    }
    fn scope_profile(
        &self,
        agent: Option<&str>,
        id: &str,
    ) -> Result<Option<StoredProfile>, RpcError> {
        self.inner
            .scope_profile(agent, id)?
            .map(|sp| self.open_profile(sp))
            .transpose()
    }
    fn upsert_profile(
        &self,
        agent: Option<&str>,
        p: &Profile,
        now: i64,
    ) -> Result<(bool, i64), RpcError> {
        let sealed = self.seal_profile(agent, p)?;
        self.inner.upsert_profile(agent, &sealed, now)
    }
    fn delete_profile(&self, agent: Option<&str>, id: &str) -> Result<bool, RpcError> {
        self.inner.delete_profile(agent, id)
    }
    fn profile_id_exists_anywhere(&self, id: &str) -> Result<bool, RpcError> {
        self.inner.profile_id_exists_anywhere(id)
    }
    fn scopes(&self) -> Result<Vec<Option<String>>, RpcError> {
        self.inner.scopes()
    }
    fn scope_order(
        &self,
        agent: Option<&str>,
        provider: &str,
    ) -> Result<Option<(Vec<String>, i64)>, RpcError> {
        self.inner.scope_order(agent, provider)
    }
    fn set_order(
        &self,
        agent: Option<&str>,
        provider: &str,
        ids: &[String],
        now: i64,
    ) -> Result<i64, RpcError> {
        self.inner.set_order(agent, provider, ids, now)
    }
    fn clear_order(&self, agent: Option<&str>, provider: &str) -> Result<bool, RpcError> {
        self.inner.clear_order(agent, provider)
    }
    fn scope_orders(&self, agent: Option<&str>) -> Result<Vec<(String, Vec<String>)>, RpcError> {
        self.inner.scope_orders(agent)
    }
    fn last_good(&self, agent: Option<&str>, provider: &str) -> Result<Option<String>, RpcError> {
        self.inner.last_good(agent, provider)
    }
    fn scope_last_good(&self, agent: Option<&str>) -> Result<Vec<(String, String)>, RpcError> {
        self.inner.scope_last_good(agent)
    }
    fn set_last_good(&self, agent: Option<&str>, provider: &str, id: &str) -> Result<(), RpcError> {
        self.inner.set_last_good(agent, provider, id)
    }
    fn clear_last_good_for(&self, agent: Option<&str>, id: &str) -> Result<usize, RpcError> {
        self.inner.clear_last_good_for(agent, id)
    }
    fn usage(&self, id: &str) -> Result<Usage, RpcError> {
        self.inner.usage(id)
    }
    fn usages(&self, ids: &[&str]) -> Result<HashMap<String, Usage>, RpcError> {
        self.inner.usages(ids)
    }
    fn usages_of(&self, profiles: &[StoredProfile]) -> Result<HashMap<String, Usage>, RpcError> {
        self.inner.usages_of(profiles)
    }
    fn put_usage(&self, id: &str, u: &Usage) -> Result<(), RpcError> {
        self.inner.put_usage(id, u)
    }
    fn setting(&self, key: &str) -> Result<Option<Value>, RpcError> {
        if key == META_KEY {
            return Ok(None);
        }
        let meta = self.meta()?;
        Ok(self
            .inner
            .setting(key)?
            .and_then(|v| self.read_row(meta.as_ref(), "settings", key, v))
            .and_then(|v| self.unverified_settings_filter(meta.as_ref(), key, v)))
    }
    fn settings(&self) -> Result<Map<String, Value>, RpcError> {
        let meta = self.meta()?;
        let mut out = Map::new();
        for (k, v) in self.inner.settings()? {
            if k == META_KEY {
                continue;
            }
            if let Some(v) = self
                .read_row(meta.as_ref(), "settings", &k, v)
                .and_then(|v| self.unverified_settings_filter(meta.as_ref(), &k, v))
            {
                out.insert(k, v);
            }
        }
        Ok(out)
    }
    fn put_setting(&self, key: &str, value: &Value) -> Result<(), RpcError> {
        if key == META_KEY {
            return Err(RpcError::new(
                ErrorKind::InvalidSettings,
                "reserved settings key",
            ));
        }
        let v = self.write_row("settings", key, value)?;
        self.inner.put_setting(key, &v)
    }
    fn providers(&self) -> Result<Vec<(String, Value)>, RpcError> {
        let meta = self.meta()?;
        Ok(self
            .inner
            .providers()?
            .into_iter()
            .filter_map(|(k, v)| {
                self.read_row(meta.as_ref(), "provider", &k, v)
                    .map(|v| (k, v))
            })
            .collect())
    }
    fn put_provider(&self, id: &str, body: &Value) -> Result<bool, RpcError> {
        let v = self.write_row("provider", id, body)?;
        self.inner.put_provider(id, &v)
    }
    fn delete_provider(&self, id: &str) -> Result<bool, RpcError> {
        self.inner.delete_provider(id)
    }
    fn seal_error(&self) -> Result<Option<RpcError>, RpcError> {
        SealedTx::seal_error(self)
    }
    fn named_secret(&self, provider: &str, id: &str) -> Result<Option<Secret>, RpcError> {
        let Some(v) = self.inner.named_secret(provider, id)? else {
            return Ok(None);
        };
        let meta = self.meta()?;
        match self.open_named(meta.as_ref(), provider, id, v) {
            Some(s) => Ok(Some(s)),
            None => Err(self.seal_error()?.unwrap_or_else(|| {
                RpcError::new(
                    ErrorKind::SecretUnavailable,
                    format!("the store entry `{provider}` / `{id}` is sealed and did not open (undecryptable)"),
                )
                .with("reason", "undecryptable")
            })),
        }
    }
    fn named_secrets(&self) -> Result<Vec<(String, String, Secret)>, RpcError> {
        // An entry that does not open is left out: a `store` ref to it is unavailable,
        // and every request that needs no secret goes on working.
        let meta = self.meta()?;
        Ok(self
            .inner
            .named_secrets()?
            .into_iter()
            .filter_map(|(p, i, v)| {
                let s = self.open_named(meta.as_ref(), &p, &i, v)?;
                Some((p, i, s))
            })
            .collect())
    }
    fn put_named_secret(
        &self,
        provider: &str,
        id: &str,
        value: &Secret,
        now: i64,
    ) -> Result<bool, RpcError> {
        let stored = self.seal_named(provider, id, value)?;
        self.inner.put_named_secret(provider, id, &stored, now)
    }
    fn delete_named_secret(&self, provider: &str, id: &str) -> Result<bool, RpcError> {
        self.inner.delete_named_secret(provider, id)
    }
    fn import_marks(
        &self,
        source: &str,
    ) -> Result<Vec<(Option<String>, String, String)>, RpcError> {
        self.inner.import_marks(source)
    }
    fn set_import_mark(
        &self,
        agent: Option<&str>,
        kind: &str,
        key: &str,
        source: &str,
    ) -> Result<(), RpcError> {
        self.inner.set_import_mark(agent, kind, key, source)
    }
    fn delete_import_mark(
        &self,
        agent: Option<&str>,
        kind: &str,
        key: &str,
    ) -> Result<bool, RpcError> {
        self.inner.delete_import_mark(agent, kind, key)
    }
}

/// Associated data of a named secret (the `store` SecretRef source, protocol §12).
fn named_aad(meta: &Meta, provider: &str, id: &str) -> Vec<u8> {
    envelope::aad(&meta.store_id, "named_secret", provider, id, "value")
}

impl SealedTx<'_> {
    /// A named secret as read: plaintext as is, an envelope opened; `None` when it does
    /// not open (no key, another key, or damaged or moved).
    fn open_named(
        &self,
        meta: Option<&Meta>,
        provider: &str,
        id: &str,
        v: Secret,
    ) -> Option<Secret> {
        if !envelope::is_envelope(v.expose()) {
            return Some(v);
        }
        let m = meta?;
        let env = envelope::parse(v.expose()).ok()?;
        let key = self.ctx.ring().ok()?.by_short_id(env.key_id)?;
        let pt = key.open(&named_aad(m, provider, id), &env)?;
        String::from_utf8(pt.to_vec()).ok().map(Secret::new)
    }

    /// A named secret about to be written: sealed under the first configured key of a
    /// sealed store (or of an unsealed one with a key configured, which it seals).
    fn seal_named(&self, provider: &str, id: &str, value: &Secret) -> Result<Secret, RpcError> {
        if envelope::is_envelope(value.expose()) {
            return Err(RpcError::new(
                ErrorKind::InvalidParams,
                format!("the value of `{provider}` / `{id}` looks like a sealed envelope; it is not a secret"),
            ));
        }
        let ring = self.ctx.ring()?;
        let meta = match self.meta()? {
            Some(m) => m,
            None if ring.keys.is_empty() => return Ok(value.clone()),
            None => self.init_meta()?,
        };
        let key = self.write_key(&meta)?;
        let aad = named_aad(&meta, provider, id);
        Ok(Secret::new(key.seal(&aad, value.expose().as_bytes())))
    }
}

/// Rewrites every named secret for `op`: sealed under `target`, or plaintext for unseal.
/// Entries that do not open are left as they are. Runs inside one write transaction
/// (named secrets are few: what an import referenced).
fn step_named_secrets(
    tx: &dyn Tx,
    meta: &Meta,
    ring: &KeyRing,
    target: Option<&StoreKey>,
    now: i64,
) -> Result<u64, RpcError> {
    let mut n = 0;
    for (provider, id, v) in tx.named_secrets()? {
        let aad = named_aad(meta, &provider, &id);
        let plain = if envelope::is_envelope(v.expose()) {
            let opened = envelope::parse(v.expose()).ok().and_then(|env| {
                let key = ring.by_short_id(env.key_id)?;
                if target.is_some_and(|t| t.fingerprint() == key.fingerprint()) {
                    return None; // already under the target key
                }
                key.open(&aad, &env)
            });
            match opened {
                Some(pt) => Secret::new(String::from_utf8_lossy(&pt).into_owned()),
                None => continue,
            }
        } else if target.is_none() {
            continue; // unseal: already plaintext
        } else {
            v
        };
        let out = match target {
            Some(k) => Secret::new(k.seal(&aad, plain.expose().as_bytes())),
            None => plain,
        };
        tx.put_named_secret(&provider, &id, &out, now)?;
        n += 1;
    }
    Ok(n)
}

impl SealedTx<'_> {
    /// Without a usable key, `secretProviders` of a sealed store are not trusted.
    fn unverified_settings_filter(
        &self,
        meta: Option<&Meta>,
        key: &str,
        v: Value,
    ) -> Option<Value> {
        if meta.is_some() && key == "secretProviders" && self.seal_error().ok().flatten().is_some()
        {
            return None;
        }
        Some(v)
    }
}

impl Store for SealedStore {
    fn describe(&self) -> StoreDescription {
        self.inner.describe()
    }
    fn schema_version(&mut self) -> Result<Option<i64>, RpcError> {
        self.inner.schema_version()
    }
    fn set_busy_timeout(&mut self, ms: u64) {
        self.inner.set_busy_timeout(ms)
    }
    fn read_tx(&mut self, f: TxBody<'_>) -> Result<(), RpcError> {
        let ctx = self.ctx();
        self.inner.read_tx(&mut |tx| f(&SealedTx::new(tx, &ctx)))
    }
    fn write_tx(&mut self, f: TxBody<'_>) -> Result<(), RpcError> {
        let ctx = self.ctx();
        let r = self.inner.write_tx(&mut |tx| f(&SealedTx::new(tx, &ctx)));
        if r.is_err() {
            // What this transaction set aside for the cache may not have been committed.
            *self.meta_cache.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
        r
    }
    fn refresh_locks(&self) -> Arc<dyn RefreshLocks> {
        self.inner.refresh_locks()
    }
    fn seal_info(&mut self) -> Result<SealInfo, RpcError> {
        if self.inner.schema_version()?.is_none() {
            return Ok(SealInfo::default());
        }
        let ctx = self.ctx();
        let mut out = SealInfo::default();
        self.inner.read_tx(&mut |tx| {
            let t = SealedTx::new(tx, &ctx);
            let meta = t.meta()?;
            out.sealed = meta.is_some();
            out.keys = meta.map(|m| m.keys).unwrap_or_default();
            out.plaintext_secrets = 0;
            for scope in tx.scopes()? {
                for mut sp in raw_scope_profiles(tx, scope.as_deref())? {
                    out.plaintext_secrets += secret_fields(&mut sp.profile.credential)
                        .iter()
                        .filter(|(_, s)| !envelope::is_envelope(s.expose()))
                        .count() as u64;
                }
            }
            out.plaintext_secrets += tx
                .named_secrets()?
                .iter()
                .filter(|(_, _, s)| !envelope::is_envelope(s.expose()))
                .count() as u64;
            Ok(())
        })?;
        Ok(out)
    }
    fn seal_op(&mut self, op: SealOp, now: i64) -> Result<SealReport, RpcError> {
        run_op(self, op, now)
    }
}

/// Runs `f` on another store's transaction `src` (a `modelauth-store` import source) seen
/// through the sealing layer with the process's store keys: sealed fields opened, the
/// state row hidden, rows verified. A sealed source whose key is not configured is refused
/// first (`store_sealed` / `store_key_mismatch`), so nothing is written.
pub fn with_source_tx<T>(
    src: &dyn Tx,
    f: impl FnOnce(&dyn Tx) -> Result<T, RpcError>,
) -> Result<T, RpcError> {
    let ctx = Ctx {
        keys: crate::seal::keys::load_from_env().map(Arc::new),
        meta_cache: Arc::new(Mutex::new(None)),
    };
    let t = SealedTx::new(src, &ctx);
    if let Some(e) = t.seal_error()? {
        return Err(RpcError {
            message: format!("the import source is a sealed store: {}", e.message),
            ..e
        });
    }
    f(&t)
}

/// The profiles stored in exactly one scope, as stored (sealed fields unopened).
fn raw_scope_profiles(tx: &dyn Tx, scope: Option<&str>) -> Result<Vec<StoredProfile>, RpcError> {
    Ok(tx
        .view_profiles(scope, None)?
        .into_iter()
        .filter(|sp| sp.scope.as_deref() == scope)
        .collect())
}

/// What one batch step does to a stored profile: `Some(new profile)` to rewrite it.
fn step_profile(
    op: SealOp,
    meta: &Meta,
    ring: &KeyRing,
    target: Option<&StoreKey>,
    sp: &StoredProfile,
) -> Result<Option<Profile>, ()> {
    let mut p = sp.profile.clone();
    let mut changed = false;
    for (field, s) in secret_fields(&mut p.credential) {
        let aad = profile_aad(meta, sp.scope.as_deref(), &p.id, field);
        let sealed = envelope::is_envelope(s.expose());
        let needs = match op {
            SealOp::Seal => !sealed,
            SealOp::Unseal => sealed,
            SealOp::Rekey => {
                !sealed
                    || envelope::parse(s.expose())
                        .map(|e| Some(e.key_id) != target.map(|t| t.short_id()))
                        .unwrap_or(true)
            }
        };
        if !needs {
            continue;
        }
        let plain = if sealed {
            let env = envelope::parse(s.expose()).map_err(|_| ())?;
            let key = ring.by_short_id(env.key_id).ok_or(())?;
            let pt = key.open(&aad, &env).ok_or(())?;
            String::from_utf8(pt.to_vec()).map_err(|_| ())?
        } else {
            s.expose().to_string()
        };
        *s = match target {
            Some(k) => Secret::new(k.seal(&aad, plain.as_bytes())),
            None => Secret::new(plain),
        };
        changed = true;
    }
    Ok(changed.then_some(p))
}

fn run_op(st: &mut SealedStore, op: SealOp, now: i64) -> Result<SealReport, RpcError> {
    let ctx = st.ctx();
    let ring = ctx.ring()?.clone();
    if ring.keys.is_empty() {
        return Err(sealed_error());
    }
    let first = ring.keys[0].clone();
    let mut report = SealReport::default();
    // Step 1: the state row (and settings/provider rows) for the operation.
    let mut meta_out: Option<Meta> = None;
    st.inner.write_tx(&mut |tx| {
        let t = SealedTx::new(tx, &ctx);
        let meta = match (op, t.meta()?) {
            (SealOp::Seal, None) => t.init_meta()?,
            (SealOp::Seal, Some(m)) => {
                t.write_key(&m)?;
                m
            }
            (SealOp::Rekey | SealOp::Unseal, None) => {
                return Err(
                    RpcError::new(ErrorKind::InvalidParams, "the store is not sealed").with_hint(
                        "`modelauth store seal` seals it under the first configured key",
                    ),
                );
            }
            (SealOp::Rekey, Some(mut m)) => {
                if !m.keys.iter().any(|k| k == first.fingerprint()) {
                    t.write_key(&m)?; // some configured key must be the store's
                    m.keys.insert(0, first.fingerprint().to_string());
                    t.set_meta(Some(m.clone()))?;
                }
                t.rewrap_rows(Some(&m), &m, Some(&first))?;
                m
            }
            (SealOp::Unseal, Some(m)) => {
                t.write_key(&m)?;
                m
            }
        };
        meta_out = Some(meta);
        Ok(())
    })?;
    report.transactions += 1;
    let meta = meta_out.expect("set by step 1");
    let target = match op {
        SealOp::Seal => {
            let fp = meta.keys.first().cloned().unwrap_or_default();
            Some(
                ring.keys
                    .iter()
                    .find(|k| k.fingerprint() == fp)
                    .cloned()
                    .ok_or_else(|| mismatch_error(&meta.keys, &ring.fingerprints()))?,
            )
        }
        SealOp::Rekey => Some(first.clone()),
        SealOp::Unseal => None,
    };
    // Step 1b: the named secrets (the `store` SecretRef source), in one transaction.
    st.inner.write_tx(&mut |tx| {
        step_named_secrets(tx, &meta, &ring, target.as_ref(), now).map(|_| ())
    })?;
    report.transactions += 1;
    // Step 2: profiles, BATCH per transaction, until none is left to change.
    let mut skipped: std::collections::BTreeSet<String> = Default::default();
    loop {
        let mut done = 0usize;
        st.inner.write_tx(&mut |tx| {
            done = 0;
            'scopes: for scope in tx.scopes()? {
                for sp in raw_scope_profiles(tx, scope.as_deref())? {
                    let label = format!("{}/{}", scope.as_deref().unwrap_or(""), sp.profile.id);
                    if skipped.contains(&label) {
                        continue;
                    }
                    match step_profile(op, &meta, &ring, target.as_ref(), &sp) {
                        Ok(Some(p)) => {
                            tx.upsert_profile(scope.as_deref(), &p, now)?;
                            done += 1;
                            if done >= BATCH {
                                break 'scopes;
                            }
                        }
                        Ok(None) => {}
                        Err(()) => {
                            skipped.insert(label);
                        }
                    }
                }
            }
            Ok(())
        })?;
        report.transactions += 1;
        report.profiles += done as u64;
        if done < BATCH {
            break;
        }
    }
    // Step 3: settle the state row, checking in the same transaction that nothing is left.
    let mut left = 0usize;
    loop {
        st.inner.write_tx(&mut |tx| {
            let t = SealedTx::new(tx, &ctx);
            left = 0;
            for scope in tx.scopes()? {
                for sp in raw_scope_profiles(tx, scope.as_deref())? {
                    let label = format!("{}/{}", scope.as_deref().unwrap_or(""), sp.profile.id);
                    if !skipped.contains(&label)
                        && step_profile(op, &meta, &ring, target.as_ref(), &sp)
                            .map(|c| c.is_some())
                            .unwrap_or(false)
                    {
                        left += 1;
                    }
                }
            }
            if left > 0 {
                return Ok(());
            }
            let current = t.meta()?;
            match op {
                SealOp::Seal => {}
                SealOp::Rekey => {
                    if let Some(mut m) = current {
                        m.keys.retain(|k| k == first.fingerprint());
                        if m.keys.is_empty() {
                            m.keys.push(first.fingerprint().to_string());
                        }
                        t.set_meta(Some(m))?;
                    }
                }
                SealOp::Unseal => {
                    if skipped.is_empty() {
                        let m = current.unwrap_or_else(|| meta.clone());
                        t.rewrap_rows(Some(&m), &m, None)?;
                        t.set_meta(None)?;
                    }
                }
            }
            Ok(())
        })?;
        report.transactions += 1;
        if left == 0 {
            break;
        }
        // Writers added more meanwhile: another round of batches.
        let mut done = 0usize;
        st.inner.write_tx(&mut |tx| {
            done = 0;
            for scope in tx.scopes()? {
                for sp in raw_scope_profiles(tx, scope.as_deref())? {
                    if done >= BATCH {
                        return Ok(());
                    }
                    if let Ok(Some(p)) = step_profile(op, &meta, &ring, target.as_ref(), &sp) {
                        tx.upsert_profile(scope.as_deref(), &p, now)?;
                        done += 1;
                    }
                }
            }
            Ok(())
        })?;
        report.transactions += 1;
        report.profiles += done as u64;
    }
    *st.meta_cache.lock().unwrap_or_else(|p| p.into_inner()) = None;
    report.undecryptable = skipped.into_iter().collect();
    report.info = st.seal_info()?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let a: Value =
            serde_json::from_str(r#"{"b":1,"a":{"d":[{"z":1,"y":2}],"c":"x"}}"#).unwrap();
        let b: Value =
            serde_json::from_str(r#"{"a":{"c":"x","d":[{"y":2,"z":1}]},"b":1}"#).unwrap();
        assert_eq!(canonical_json(&a), canonical_json(&b));
        assert_eq!(
            canonical_json(&a),
            r#"{"a":{"c":"x","d":[{"y":2,"z":1}]},"b":1}"#
        );
    }

    #[test]
    fn wrapped_rows_verify_only_in_place() {
        let k = StoreKey::from_bytes([9; 32]);
        let meta = Meta {
            store_id: "s".into(),
            keys: vec![k.fingerprint().into()],
        };
        let v = json!({"command": "/bin/true"});
        let w = wrap(&k, &meta, "settings", "x", &v);
        let (tag, value) = unwrap_parts(&w).unwrap();
        let env = envelope::parse(tag).unwrap();
        let aad = |id: &str, v: &Value| envelope::aad("s", "settings", "", id, &canonical_json(v));
        assert!(k.open(&aad("x", value), &env).is_some());
        assert!(k.open(&aad("y", value), &env).is_none());
        assert!(k
            .open(&aad("x", &json!({"command": "/bin/evil"})), &env)
            .is_none());
    }
}
