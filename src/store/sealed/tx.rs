//! The transaction decorator of the sealed store: reads open sealed fields, writes seal them.

use std::cell::RefCell;
use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::core::error::{ErrorKind, RpcError};
use crate::core::profile::{Profile, StoredProfile};
use crate::core::sealed::{credential_unopened, locked, undecryptable};
use crate::core::secret_value::Secret;
use crate::core::usage::Usage;
use crate::seal::envelope::{self, StoreKey};
use crate::store::{ChangeMarker, Tx};

use super::{
    canonical_json, mismatch_error, profile_aad, sealed_error, secret_fields, unwrap_parts, wrap,
    Ctx, Meta, META_KEY,
};

/// The transaction decorator.
pub(super) struct SealedTx<'a> {
    inner: &'a dyn Tx,
    ctx: &'a Ctx,
    /// Loaded on first use: `Some(meta)` of this transaction.
    meta: RefCell<Option<Option<Meta>>>,
}

impl<'a> SealedTx<'a> {
    pub(super) fn new(inner: &'a dyn Tx, ctx: &'a Ctx) -> Self {
        SealedTx {
            inner,
            ctx,
            meta: RefCell::new(None),
        }
    }

    pub(super) fn meta(&self) -> Result<Option<Meta>, RpcError> {
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

    pub(super) fn set_meta(&self, m: Option<Meta>) -> Result<(), RpcError> {
        let v = m.as_ref().map(Meta::to_json).unwrap_or(Value::Null);
        self.inner.put_setting(META_KEY, &v)?;
        *self.meta.borrow_mut() = Some(m);
        Ok(())
    }

    /// The key new secrets of a sealed store are written under.
    pub(super) fn write_key(&self, meta: &Meta) -> Result<StoreKey, RpcError> {
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
    pub(super) fn init_meta(&self) -> Result<Meta, RpcError> {
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
    pub(super) fn rewrap_rows(
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
    pub(super) fn read_row(
        &self,
        meta: Option<&Meta>,
        kind: &str,
        id: &str,
        v: Value,
    ) -> Option<Value> {
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
    pub(super) fn open_profile(&self, mut sp: StoredProfile) -> Result<StoredProfile, RpcError> {
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
    pub(super) fn seal_profile(
        &self,
        agent: Option<&str>,
        p: &Profile,
    ) -> Result<Profile, RpcError> {
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

    pub(super) fn write_row(&self, kind: &str, id: &str, value: &Value) -> Result<Value, RpcError> {
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
pub(super) fn named_aad(meta: &Meta, provider: &str, id: &str) -> Vec<u8> {
    envelope::aad(&meta.store_id, "named_secret", provider, id, "value")
}

impl SealedTx<'_> {
    /// A named secret as read: plaintext as is, an envelope opened; `None` when it does
    /// not open (no key, another key, or damaged or moved).
    pub(super) fn open_named(
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
    pub(super) fn seal_named(
        &self,
        provider: &str,
        id: &str,
        value: &Secret,
    ) -> Result<Secret, RpcError> {
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
impl SealedTx<'_> {
    /// Without a usable key, `secretProviders` of a sealed store are not trusted.
    pub(super) fn unverified_settings_filter(
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
