//! The method handlers, one file per domain. Each handler takes the typed params
//! ([`crate::api`]), runs one store transaction ([`crate::store::Store`]) and the pure rules
//! ([`crate::core`]), and returns the typed result.
//!
//! | file | methods |
//! |---|---|
//! | `mod.rs` | [`App`], `helper.info`, shared param normalisation, the read cache |
//! | [`profiles`] | `profiles.put/get/list/remove` |
//! | [`order`] | `order.get/set/clear` |
//! | [`auth`] | `auth.resolve`, `auth.candidates` (the walk made concrete) |
//! | [`usage`] | `auth.report`, `auth.clearCooldown`, `auth.status` |
//! | [`refresh`] | `auth.refresh` and the single-flight OAuth refresh every resolve uses |
//! | [`providers`] | `providers.put/get/list/remove`, built-in OAuth clients |
//! | [`settings`] | `settings.get/set` |
//! | [`transfer`] | `store.import/export/validate`: applies an import plan in one transaction |
//! | [`sources`] | reads import sources (files, OpenClaw state dirs, SQLite), read-only and capped |
//!
//! This is the shell around the pure core: it reads the clock, the store and the
//! environment; the decisions are made by pure functions.

pub(crate) mod auth;
mod import_extras;
pub(crate) mod order;
pub(crate) mod profiles;
pub(crate) mod providers;
pub(crate) mod refresh;
pub(crate) mod seal;
pub(crate) mod settings;
pub(crate) mod sources;
#[cfg(test)]
pub(crate) mod testing;
pub mod transfer;
pub(crate) mod usage;
pub(crate) mod walk;

use crate::api::{InfoParams, InfoResult, ResolveResult, StoreInfo};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::core::error::{ErrorKind, Result, RpcError};
use crate::core::ids::{self, Aliases};
use crate::core::profile::StoredProfile;
use crate::core::settings::Settings;
use crate::core::usage::Usage;
use crate::handlers::refresh::{oauth_providers, Snapshot};
use crate::store::{self, ChangeMarker, RefreshLocks, Store, Tx};

/// The application state shared by every request of one process.
pub struct App {
    store: Mutex<Box<dyn Store>>,
    /// The store's single-flight refresh locks, taken without holding `store`.
    pub(crate) refresh_locks: Arc<dyn RefreshLocks>,
    cache: Mutex<ReadCache>,
}

/// What a long-lived `serve` process keeps between requests while the store is unchanged:
/// parsed aliases, settings and per-(agent, provider) views. Dropped as soon as the
/// [`ChangeMarker`] changes, so a write by any process is seen by the next request.
#[derive(Default)]
struct ReadCache {
    key: Option<ChangeMarker>,
    aliases: Option<Arc<Aliases>>,
    views: HashMap<(Option<String>, String), Arc<ProviderSnapshot>>,
    /// `settings.get`'s answer: the effective settings and their revision.
    settings: Option<(Arc<Settings>, i64)>,
}

/// The stored state the resolution walk of one provider needs.
struct ProviderSnapshot {
    profiles: Arc<Vec<StoredProfile>>,
    /// Position of each profile in `profiles`, by id (lookups per step stay O(1), so no
    /// walking method is quadratic in the provider's profile count).
    index: HashMap<String, usize>,
    order: Option<crate::core::resolve::ExplicitOrder>,
    usage: HashMap<String, Usage>,
    settings: Arc<Settings>,
    /// Providers with an `oauth.tokenUrl` registered (their oauth profiles can refresh).
    with_oauth: HashSet<String>,
    /// The provider's registered `envVars` (protocol §6), names only.
    env_vars: Vec<String>,
    /// Walks already done over this snapshot, kept until their horizon
    /// ([`crate::core::resolve::walk_horizon`]); at most [`WALKS_KEPT`].
    walks: Mutex<Vec<KeptWalk>>,
}

/// How many (agent, provider) views the read cache keeps at most.
const VIEWS_KEPT: usize = 256;

/// How many walks (one per model and pinned profile asked for) a snapshot keeps: a client
/// naming a new model on every request replaces them instead of growing the cache.
const WALKS_KEPT: usize = 16;

/// A walk of a [`ProviderSnapshot`] for one model and pinned profile, done at `done_at` and
/// unchanged before `horizon` (both ms since the epoch; `None` = no end).
struct KeptWalk {
    model: Option<String>,
    pinned: Option<String>,
    done_at: i64,
    horizon: Option<i64>,
    steps: Arc<Vec<crate::core::resolve::Step>>,
}

impl ProviderSnapshot {
    /// The walk for `model` and `pinned` at `now`: a kept one when `now` is inside its
    /// `done_at ..< horizon`, else `walk()` (kept for the next request). The walk is pure
    /// over the snapshot, so a kept one is the walk `walk()` would give (the property
    /// `a_walk_holds_until_its_horizon` in `core::resolve` pins the horizon).
    fn walk_at(
        &self,
        model: Option<&str>,
        pinned: Option<&str>,
        now: i64,
        walk: impl FnOnce() -> Vec<crate::core::resolve::Step>,
    ) -> Arc<Vec<crate::core::resolve::Step>> {
        let mut kept = self.walks.lock().unwrap_or_else(|p| p.into_inner());
        let holds = |k: &KeptWalk| {
            k.model.as_deref() == model
                && k.pinned.as_deref() == pinned
                && k.done_at <= now
                && k.horizon.is_none_or(|h| now < h)
        };
        if let Some(k) = kept.iter().find(|k| holds(k)) {
            return k.steps.clone();
        }
        let steps = Arc::new(walk());
        let horizon = crate::core::resolve::walk_horizon(
            &self.profiles,
            &self.usage,
            self.settings.refresh_margin_ms,
            now,
        );
        kept.retain(|k| k.model.as_deref() != model || k.pinned.as_deref() != pinned);
        if kept.len() >= WALKS_KEPT {
            kept.clear();
        }
        kept.push(KeptWalk {
            model: model.map(str::to_string),
            pinned: pinned.map(str::to_string),
            done_at: now,
            horizon,
            steps: steps.clone(),
        });
        steps
    }
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Validates an optional `agent` param (protocol §2.1).
fn agent_param(a: Option<String>) -> Result<Option<String>> {
    match a {
        None => Ok(None),
        Some(a) => ids::validate_agent(&a)
            .map(Some)
            .map_err(|e| RpcError::invalid_params(e.to_string()).with("pointer", "/agent")),
    }
}

fn provider_param(raw: &str, aliases: &Aliases) -> Result<String> {
    ids::normalize_provider(raw, aliases)
        .map_err(|e| RpcError::invalid_params(e.to_string()).with("pointer", "/provider"))
}

fn profile_id_param(raw: &str, aliases: &Aliases, pointer: &str) -> Result<(String, String)> {
    ids::normalize_profile_id(raw, aliases)
        .map_err(|e| RpcError::invalid_params(e.to_string()).with("pointer", pointer))
}

/// Registered aliases (alias → provider) from the providers table.
pub(crate) fn load_aliases(c: &dyn Tx) -> Result<Aliases> {
    let mut out = Aliases::new();
    for (id, body) in c.providers()? {
        if let Some(list) = body.get("aliases").and_then(|v| v.as_array()) {
            for a in list.iter().filter_map(|v| v.as_str()) {
                out.insert(a.to_string(), id.clone());
            }
        }
    }
    Ok(out)
}

/// Effective settings from the store.
pub(crate) fn load_settings(c: &dyn Tx) -> Result<Settings> {
    let mut s = crate::core::settings::from_stored(&c.settings()?);
    s.named_secrets = c
        .named_secrets()?
        .into_iter()
        .map(|(p, id, v)| ((p, id), v))
        .collect();
    Ok(s)
}

pub(crate) fn unknown_profile(id: &str, agent: Option<&str>) -> RpcError {
    let scope = agent
        .map(|a| format!("agent `{a}` or the shared scope"))
        .unwrap_or_else(|| "the shared scope".into());
    RpcError::new(
        ErrorKind::UnknownProfile,
        format!("no profile `{id}` in {scope}"),
    )
    .with("profileId", id)
    .with_hint("list the stored ids with profiles.list, or create it with profiles.put")
}

fn revision_conflict(expected: i64, current: i64) -> RpcError {
    RpcError::new(
        ErrorKind::RevisionConflict,
        format!("expected revision {expected}, but the current revision is {current}"),
    )
    .with("expectedRevision", expected)
    .with("currentRevision", current)
    .with_hint("read the current state again and retry with its revision")
}

/// How [`materialise`] treats a usable oauth step inside the refresh margin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RefreshMode {
    /// `auth.resolve`: stop at the first one not yet tried; the caller refreshes it and
    /// walks again.
    Stop,
    /// `auth.candidates` (after its refresh pass): the stored token while it is valid,
    /// else skipped as `expired`.
    Stored,
}

/// A refresh this request already tried.
enum Attempt {
    /// Refreshed, by us or by another process meanwhile.
    Done,
    /// Failed; the stored token is used while it is still valid.
    Failed(RpcError),
}

/// The outcome of one walk of `auth.resolve`.
enum Pass {
    /// The answer.
    Done(Box<ResolveResult>),
    /// This profile must be refreshed first; then walk again.
    Refresh {
        scope: Option<String>,
        id: String,
        seen: Snapshot,
        pinned: bool,
    },
}

/// Normalises an optional `model` param: trimmed; empty means none.
fn model_param(m: Option<String>) -> Option<String> {
    m.map(|m| m.trim().to_string()).filter(|m| !m.is_empty())
}

impl App {
    /// An app on the store at `path` (nothing is opened yet).
    pub fn new(path: PathBuf) -> Self {
        // PROTOCOL §11: a shared store's commands must also lie under $MODELAUTH_TRUSTED_DIRS.
        crate::secrets::trust::set_shared_store(
            path.to_str().is_some_and(store::location::is_postgres_url),
        );
        let store = store::open(path);
        App {
            refresh_locks: store.refresh_locks(),
            store: Mutex::new(store),
            cache: Mutex::new(ReadCache::default()),
        }
    }

    pub(crate) fn store(&self) -> std::sync::MutexGuard<'_, Box<dyn Store>> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `helper.info`.
    pub(crate) fn info(&self, _: InfoParams, methods: Vec<String>) -> Result<InfoResult> {
        let mut st = self.store();
        // PROTOCOL §10 r3: helper.info answers without the store; the store part says
        // that it is unreachable and why.
        let (schema_version, error) = match st.schema_version() {
            Ok(v) => (v, None),
            Err(e) => (None, Some(e)),
        };
        let seal = if error.is_none() {
            st.seal_info().unwrap_or_default()
        } else {
            Default::default()
        };
        let d = st.describe();
        let reachable = error.is_none();
        let error = error.map(|e| {
            let j = e.to_json();
            serde_json::json!({
                "kind": e.kind.as_str(),
                "message": j["message"],
                "retryable": e.retryable,
                "hint": j["data"]["hint"],
            })
        });
        Ok(InfoResult {
            name: "modelauth".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            protocol_version: 1,
            store: StoreInfo {
                backend: d.backend.into(),
                path: d.path,
                exists: d.exists,
                schema_version,
                sealed: seal.sealed,
                keys: seal.keys,
                reachable,
                error,
            },
            methods,
        })
    }

    #[allow(clippy::type_complexity)]
    /// The cache, emptied first if the store changed since it was filled.
    fn cache_at(&self, c: &dyn Tx) -> Result<std::sync::MutexGuard<'_, ReadCache>> {
        let key = c.change_marker()?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        // A backend that cannot tell whether the store changed (`None`) caches nothing.
        if key.is_none() || cache.key != key {
            *cache = ReadCache {
                key,
                ..ReadCache::default()
            };
        }
        Ok(cache)
    }

    /// Registered aliases, from the cache when the store is unchanged.
    fn cached_aliases(&self, c: &dyn Tx) -> Result<Arc<Aliases>> {
        let mut cache = self.cache_at(c)?;
        if let Some(a) = &cache.aliases {
            return Ok(a.clone());
        }
        let a = Arc::new(load_aliases(c)?);
        cache.aliases = Some(a.clone());
        Ok(a)
    }

    fn snapshot(
        &self,
        c: &dyn Tx,
        a: Option<&str>,
        provider: &str,
    ) -> Result<Arc<ProviderSnapshot>> {
        let mut cache = self.cache_at(c)?;
        let k = (a.map(str::to_string), provider.to_string());
        if let Some(v) = cache.views.get(&k) {
            return Ok(v.clone());
        }
        let settings = Arc::new(load_settings(c)?);
        let profiles = c.view_profiles(a, Some(provider))?;
        let order = c.effective_order(a, provider)?;
        let usage = c.usages_of(&profiles)?;
        let with_oauth = oauth_providers(c)?;
        let env_vars = auth::registered_env_vars(c, provider)?;
        let index = profiles
            .iter()
            .enumerate()
            .map(|(i, p)| (p.profile.id.clone(), i))
            .collect();
        let snap = Arc::new(ProviderSnapshot {
            index,
            profiles: Arc::new(profiles),
            order,
            usage,
            settings,
            with_oauth,
            env_vars,
            walks: Mutex::default(),
        });
        // Keyed by what requests name (agents, providers): bounded, so a client naming a
        // new agent on every request replaces views instead of growing the cache.
        if cache.views.len() >= VIEWS_KEPT {
            cache.views.clear();
        }
        cache.views.insert(k, snap.clone());
        Ok(snap)
    }
}
