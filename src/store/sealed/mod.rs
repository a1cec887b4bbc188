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

use std::sync::{Arc, Mutex};

use serde_json::{json, Map, Value};

use crate::core::error::{ErrorKind, RpcError};
use crate::core::profile::Credential;
use crate::core::secret_value::Secret;
use crate::seal::envelope::{self, StoreKey};
use crate::seal::keys::{KeyRing, KEY_VARIABLES};

use super::{ChangeMarker, RefreshLocks, Store, StoreDescription, Tx, TxBody};

mod ops;
mod tx;

use ops::{raw_scope_profiles, run_op};
use tx::SealedTx;

/// The reserved settings key holding the sealing state.
pub(crate) const META_KEY: &str = "$seal";
/// Profiles changed per transaction by seal, rekey and unseal.
pub(crate) const BATCH: usize = 200;

/// The sealing state of a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Meta {
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
pub(crate) fn canonical_json(v: &Value) -> String {
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
pub(crate) fn with_source_tx<T>(
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
