//! The method handlers: each takes the typed params, runs one store transaction and the
//! pure rules ([`crate::profile`], [`crate::resolve`]) and returns the typed result.
//!
//! This is the shell around the pure core: it reads the clock, the store and the
//! environment; the decisions are made by pure functions.

pub mod providers;
pub mod refresh;
pub mod transfer;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::api::*;
use crate::envkeys::{self, EnvKey};
use crate::error::{ErrorKind, Result, RpcError};
use crate::ids::{self, Aliases};
use crate::profile::{validate_profile, Credential, ProfileView, StoredProfile};
use crate::refresh::{oauth_providers, refreshable, Snapshot};
use crate::resolve::{self, SkipReason, Step, WalkInput};
use crate::secret::Secret;
use crate::secrets;
use crate::settings::{self, EnvFallback, Settings};
use crate::status;
use crate::store::{self, ChangeMarker, RefreshLocks, Store, Tx};
use crate::usage::{self, Outcome, Usage};

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
}

/// The stored state the resolution walk of one provider needs.
struct ProviderSnapshot {
    profiles: Arc<Vec<StoredProfile>>,
    order: Option<(Vec<String>, &'static str)>,
    usage: HashMap<String, Usage>,
    settings: Arc<Settings>,
    /// Providers with an `oauth.tokenUrl` registered (their oauth profiles can refresh).
    with_oauth: HashSet<String>,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
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
pub fn load_aliases(c: &dyn Tx) -> Result<Aliases> {
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
pub fn load_settings(c: &dyn Tx) -> Result<Settings> {
    Ok(settings::from_stored(&c.settings()?))
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

/// The settings-table key holding the settings revision (not a setting: never merged).
const SETTINGS_REVISION_KEY: &str = "_revision";

/// The settings revision: 0 before the first `settings.set`, +1 per successful one.
fn settings_revision(c: &dyn Tx) -> Result<i64> {
    Ok(c.setting(SETTINGS_REVISION_KEY)?
        .and_then(|v| v.as_i64())
        .unwrap_or(0))
}

/// The current settings revision, or `revision_conflict` when `expected` differs.
fn check_settings_revision(c: &dyn Tx, expected: Option<i64>) -> Result<i64> {
    let current = settings_revision(c)?;
    match expected {
        Some(e) if e != current => Err(revision_conflict(e, current)),
        _ => Ok(current),
    }
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

/// The `auth.status` word of one profile at `now` (protocol §3), its reason and until/expiry
/// (ms since the epoch): `needs_reauth`, `ref_unavailable` (its SecretRef cannot be read
/// now: [`status::RefCheck`]), `disabled` / `cooldown`, then by expiry: `static` (api_key,
/// token without `expires`), `expired` (past, or an unusable `expires`), `refreshable` (an
/// oauth past `expires` with a token endpoint), `expiring` (within `expiring_within_ms`; for
/// an oauth at least the 5 min refresh margin) or `ok` — OpenClaw's words where it has them.
pub fn profile_status(
    sp: &StoredProfile,
    u: Option<&Usage>,
    now: i64,
    expiring_within_ms: i64,
    can_refresh: bool,
    refc: status::RefCheck,
) -> (&'static str, Option<String>, Option<i64>) {
    if let Some(u) = u {
        if u.needs_reauth {
            return ("needs_reauth", Some("needs_reauth".into()), None);
        }
    }
    if refc == status::RefCheck::Unavailable {
        return ("ref_unavailable", Some("ref_unavailable".into()), None);
    }
    if let Some(u) = u {
        if let Some(b) = u.block(now, None) {
            let st = if b.reason == "disabled" {
                "disabled"
            } else {
                "cooldown"
            };
            return (st, Some(b.cause), Some(b.until));
        }
    }
    match status::health(sp, u, refc, now, expiring_within_ms) {
        "static" => ("static", None, None),
        "missing" => ("expired", Some("invalid_expires".into()), None),
        "expired" => {
            let e = sp.profile.credential.expires();
            let oauth = matches!(sp.profile.credential, Credential::OAuth { .. });
            if oauth && can_refresh {
                ("refreshable", None, e)
            } else {
                ("expired", Some("expired".into()), e)
            }
        }
        "expiring" => ("expiring", None, sp.profile.credential.expires()),
        _ => ("ok", None, None),
    }
}

/// Whether `sp`'s SecretRef can be read now, without side effects: `env` and `file` refs
/// are read; an `exec` ref is run only when `probe` is true, else [`status::RefCheck::Unchecked`].
pub fn ref_check(sp: &StoredProfile, settings: &Settings, probe: bool) -> status::RefCheck {
    use crate::profile::SecretSource;
    match sp.profile.credential.secret_ref() {
        None => status::RefCheck::Inline,
        Some(r) if r.source == SecretSource::Exec && !probe => status::RefCheck::Unchecked,
        Some(r) => match secrets::resolve_ref(r, settings) {
            Ok(_) => status::RefCheck::Available,
            Err(_) => status::RefCheck::Unavailable,
        },
    }
}

fn view_of(
    sp: &StoredProfile,
    usage: &HashMap<String, Usage>,
    with_oauth: &HashSet<String>,
    now: i64,
    reveal: bool,
) -> ProfileView {
    let u = usage.get(&sp.profile.id);
    let (status, _, _) = profile_status(
        sp,
        u,
        now,
        86_400_000,
        refreshable(sp, with_oauth),
        status::RefCheck::Unchecked,
    );
    ProfileView::new(
        sp,
        status,
        u.map(|u| u.view(now)).unwrap_or_default(),
        reveal,
    )
}

/// The scope view's profiles of a provider, the explicit order in effect (ids and source),
/// the walk over them, and the settings used.
type WalkView = (
    Arc<Vec<StoredProfile>>,
    Option<(Vec<String>, &'static str)>,
    Vec<Step>,
    Arc<Settings>,
);

/// The outcome of materialising the walk: the chosen profile and its secret, plus every
/// step with ref failures folded in as skips.
struct Walked {
    steps: Vec<Step>,
    chosen: Option<(usize, Secret)>,
    /// Every usable step with its secret, in walk order (all of them unless `stop_at_first`).
    usable: Vec<(usize, Secret)>,
    /// The error of the first failed ref, for a pinned profile.
    first_ref_error: Option<RpcError>,
    /// [`RefreshMode::Stop`]: the step that must be refreshed before the walk can go on.
    needs_refresh: Option<usize>,
    /// The error of the first refresh this request tried that failed.
    first_refresh_error: Option<RpcError>,
}

/// How [`materialise`] treats a usable oauth step inside the refresh margin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RefreshMode {
    /// `order.get` `effective`: usable (auth.resolve would refresh it).
    Assume,
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

/// Walks and materialises: the first usable step whose secret can be produced wins.
/// With `stop_at_first` false every usable step is checked (for `order.get` `effective`).
fn materialise(
    profiles: &[StoredProfile],
    mut steps: Vec<Step>,
    settings: &Settings,
    stop_at_first: bool,
    mode: RefreshMode,
    attempts: &HashMap<String, Attempt>,
    now: i64,
) -> Walked {
    // Steps are in walk order and usually few: a linear find beats building a map.
    let find = |id: &str| profiles.iter().find(|p| p.profile.id == id);
    let mut chosen = None;
    let mut usable = vec![];
    let mut first_ref_error = None;
    let mut needs_refresh = None;
    let mut first_refresh_error = None;
    for (i, step) in steps.iter_mut().enumerate() {
        if step.skip.is_some() {
            continue;
        }
        let Some(sp) = find(step.profile_id.as_str()) else {
            continue;
        };
        if step.needs_refresh && mode != RefreshMode::Assume {
            match attempts.get(&step.profile_id) {
                None if mode == RefreshMode::Stop && chosen.is_none() => {
                    needs_refresh = Some(i);
                    break;
                }
                Some(Attempt::Failed(e)) if first_refresh_error.is_none() => {
                    first_refresh_error = Some(e.clone());
                }
                _ => {}
            }
            let expires = sp.profile.credential.expires().unwrap_or(i64::MIN);
            if now >= expires {
                step.skip = Some(resolve::Skip {
                    reason: SkipReason::Expired,
                    until: Some(expires),
                });
                continue;
            }
        }
        let secret = match (
            sp.profile.credential.inline_secret(),
            sp.profile.credential.secret_ref(),
        ) {
            (Some(s), _) => Ok(s.clone()),
            (None, Some(r)) => crate::secrets::resolve_ref(r, settings),
            (None, None) => Err(RpcError::internal("profile without a secret")),
        };
        match secret {
            Ok(s) => {
                usable.push((i, s.clone()));
                if chosen.is_none() {
                    chosen = Some((i, s));
                    if stop_at_first {
                        break;
                    }
                }
            }
            Err(e) => {
                step.skip = Some(resolve::Skip {
                    reason: SkipReason::RefUnavailable,
                    until: None,
                });
                if first_ref_error.is_none() {
                    first_ref_error = Some(e);
                }
            }
        }
    }
    Walked {
        steps,
        chosen,
        usable,
        first_ref_error,
        needs_refresh,
        first_refresh_error,
    }
}

/// Normalises an optional `model` param: trimmed; empty means none.
fn model_param(m: Option<String>) -> Option<String> {
    m.map(|m| m.trim().to_string()).filter(|m| !m.is_empty())
}

/// The environment keys (protocol §6) this process sees for `provider`, with the
/// provider's registered `envVars` from the store.
fn env_keys_for(c: &dyn Tx, provider: &str) -> Result<Vec<EnvKey>> {
    let registered: Vec<String> = c
        .providers()?
        .into_iter()
        .find(|(id, _)| id == provider)
        .and_then(|(_, body)| {
            body.get("envVars").and_then(|v| v.as_array()).map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
        })
        .unwrap_or_default();
    Ok(envkeys::env_keys(
        provider,
        &envkeys::process_env(),
        &registered,
    ))
}

/// Whether `envFallback` lets environment keys be used after the walk `steps`
/// (`whenNoProfiles`: only when the provider has no stored profile in the view).
fn env_allowed(mode: EnvFallback, steps: &[Step]) -> bool {
    match mode {
        EnvFallback::Never => false,
        EnvFallback::WhenNoProfiles => steps.is_empty(),
        EnvFallback::Always => true,
    }
}

/// Adds `data.envAvailable` (variable names only, never values) to a resolution error.
fn with_env_available(mut e: RpcError, env: &[EnvKey], mode: EnvFallback) -> RpcError {
    let names = envkeys::env_names(env);
    let why = match mode {
        EnvFallback::Never => "envFallback is `never`",
        _ => "envFallback `whenNoProfiles` does not switch to them while stored profiles exist",
    };
    let extra = format!(
        "environment keys exist ({}) but {why}; to allow them: settings.set {{\"settings\": {{\"envFallback\": \"always\"}}}}",
        names.join(", ")
    );
    e.hint = Some(match e.hint.take() {
        Some(h) => format!("{h}; {extra}"),
        None => extra,
    });
    e.with("envAvailable", names)
}

/// Adds `data.trace` (every candidate, skipped, with reason and until) to a resolution
/// error of a request with `explain`.
fn with_trace(e: RpcError, steps: &[Step]) -> RpcError {
    let trace: Vec<TraceEntry> = steps
        .iter()
        .map(|s| TraceEntry {
            profile_id: Some(s.profile_id.clone()),
            env_var: None,
            decision: "skipped".into(),
            reason: s.skip.as_ref().map(|k| k.reason.as_str().to_string()),
            until: s.skip.as_ref().and_then(|k| k.until),
        })
        .collect();
    e.with("trace", trace)
}

/// The `auth.resolve` result for an environment key.
fn env_result(
    provider: &str,
    agent: &Option<String>,
    k: EnvKey,
    steps: &[Step],
    explain: bool,
) -> ResolveResult {
    let first = steps.first();
    let trace = explain.then(|| {
        steps
            .iter()
            .map(|s| TraceEntry {
                profile_id: Some(s.profile_id.clone()),
                env_var: None,
                decision: "skipped".into(),
                reason: s.skip.as_ref().map(|k| k.reason.as_str().to_string()),
                until: s.skip.as_ref().and_then(|k| k.until),
            })
            .chain(std::iter::once(TraceEntry {
                profile_id: None,
                env_var: Some(k.var.clone()),
                decision: "chosen".into(),
                reason: None,
                until: None,
            }))
            .collect()
    });
    tracing::debug!(env_var = %k.var, %provider, agent = ?agent, "resolved from the environment");
    ResolveResult {
        profile_id: None,
        provider: provider.to_string(),
        agent: agent.clone(),
        kind: "api_key".into(),
        source: "env".into(),
        env_var: Some(k.var),
        secret: k.value,
        expires: None,
        email: None,
        account_id: None,
        fallback_from: first.map(|s| s.profile_id.clone()),
        fallback_reason: first
            .and_then(|s| s.skip.as_ref())
            .map(|k| k.reason.as_str().to_string()),
        trace,
    }
}

impl App {
    /// An app on the store at `path` (nothing is opened yet).
    pub fn new(path: PathBuf) -> Self {
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
    pub fn info(&self, _: InfoParams, methods: Vec<String>) -> Result<InfoResult> {
        let mut st = self.store();
        let schema_version = st.schema_version()?;
        let d = st.describe();
        Ok(InfoResult {
            name: "modelauth".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            protocol_version: 1,
            store: StoreInfo {
                backend: d.backend.into(),
                path: d.path,
                exists: d.exists,
                schema_version,
            },
            methods,
        })
    }

    /// `profiles.put`: create or replace, keeping the routability invariant.
    pub fn profiles_put(&self, p: PutParams) -> Result<PutResult> {
        let agent = agent_param(p.agent)?;
        let a = agent.as_deref();
        let now = now_ms();
        // Validate before opening (and so before creating) the store.
        let aliases = self.store().read(load_aliases)?;
        let profile = validate_profile(&p.profile, "/profile", &aliases)?;
        self.store().write(|c| {
            // Aliases may have changed since the read; re-validate inside the transaction.
            let aliases_now = load_aliases(c)?;
            let profile = if aliases_now != aliases {
                validate_profile(&p.profile, "/profile", &aliases_now)?
            } else {
                profile
            };
            let id = profile.id.clone();
            let provider = profile.provider.clone();
            let existing = c.scope_profile(a, &id)?;
            if let Some(expected) = p.expected_revision {
                let current = existing.as_ref().map(|e| e.revision).unwrap_or(0);
                if current != expected {
                    return Err(revision_conflict(expected, current).with("profileId", &id));
                }
            }
            let (created, revision) = c.upsert_profile(a, &profile, now)?;
            if !created {
                // Replacing a credential clears its cooldowns and failure counts.
                let mut u = c.usage(&id)?;
                u.cooldowns.clear();
                u.disabled = None;
                u.error_count = 0;
                u.failure_counts.clear();
                u.last_failure_at = None;
                u.needs_reauth = false;
                c.put_usage(&id, &u)?;
            }
            // Routability invariant.
            let own = c.scope_order(a, &provider)?.map(|(ids, _)| ids);
            let base = match (&own, a) {
                (Some(ids), _) => Some(ids.clone()),
                (None, Some(_)) => c.scope_order(None, &provider)?.map(|(ids, _)| ids),
                (None, None) => None,
            };
            let new_order = match base {
                Some(mut ids) => {
                    let before = ids.clone();
                    if p.primary {
                        ids.retain(|x| x != &id);
                        ids.insert(0, id.clone());
                    } else if !ids.contains(&id) {
                        ids.push(id.clone());
                    }
                    (own.is_some() || ids != before).then_some(ids)
                }
                None if p.primary => {
                    let view = c.view_profiles(a, Some(&provider))?;
                    let usage = c.usages_of(&view)?;
                    let mut ids = vec![id.clone()];
                    ids.extend(
                        resolve::default_order(&view, &usage, now)
                            .into_iter()
                            .map(|s| s.profile.id.clone())
                            .filter(|x| x != &id),
                    );
                    Some(ids)
                }
                None => None,
            };
            if let Some(ids) = &new_order {
                if own.as_ref() != Some(ids) {
                    c.set_order(a, &provider, ids, now)?;
                }
            }
            if p.primary {
                c.set_last_good(a, &provider, &id)?;
            }
            tracing::info!(profile_id = %id, agent = ?a, created, revision, "profile stored");
            Ok(PutResult {
                profile_id: id,
                agent: agent.clone(),
                created,
                revision,
                order: new_order,
            })
        })
    }

    /// `profiles.get`.
    pub fn profiles_get(&self, p: GetParams) -> Result<GetResult> {
        let agent = agent_param(p.agent)?;
        let a = agent.as_deref();
        let now = now_ms();
        self.store().read(|c| {
            let aliases = load_aliases(c)?;
            let (id, _) = profile_id_param(&p.profile_id, &aliases, "/profileId")?;
            let sp = c
                .view_profile(a, &id)?
                .ok_or_else(|| unknown_profile(&id, a))?;
            let usage = c.usages(&[id.as_str()])?;
            let with_oauth = oauth_providers(c)?;
            Ok(GetResult {
                agent: agent.clone(),
                profile: view_of(&sp, &usage, &with_oauth, now, p.reveal),
            })
        })
    }

    /// `profiles.list`.
    pub fn profiles_list(&self, p: ListParams) -> Result<ListResult> {
        let agent = agent_param(p.agent)?;
        let a = agent.as_deref();
        let now = now_ms();
        self.store().read(|c| {
            let aliases = load_aliases(c)?;
            let provider = p
                .provider
                .as_deref()
                .map(|x| provider_param(x, &aliases))
                .transpose()?;
            let view = c.view_profiles(a, provider.as_deref())?;
            let usage = c.usages_of(&view)?;
            let with_oauth = oauth_providers(c)?;
            let profiles = view
                .iter()
                .map(|sp| view_of(sp, &usage, &with_oauth, now, false))
                .collect();
            Ok(ListResult {
                agent: agent.clone(),
                profiles,
            })
        })
    }

    /// `profiles.remove`: from the scope, its orders and lastGood.
    pub fn profiles_remove(&self, p: RemoveParams) -> Result<RemoveResult> {
        let agent = agent_param(p.agent)?;
        let a = agent.as_deref();
        let now = now_ms();
        let body = |c: &dyn Tx, apply: bool| -> Result<RemoveResult> {
            let aliases = load_aliases(c)?;
            let (id, _) = profile_id_param(&p.profile_id, &aliases, "/profileId")?;
            let sp = c.scope_profile(a, &id)?.ok_or_else(|| {
                let e = unknown_profile(&id, a);
                if a.is_some() && c.scope_profile(None, &id).ok().flatten().is_some() {
                    e.with_hint("this id is a shared profile: remove it without `agent`")
                } else {
                    e
                }
            })?;
            if let Some(expected) = p.expected_revision {
                if sp.revision != expected {
                    return Err(revision_conflict(expected, sp.revision).with("profileId", &id));
                }
            }
            let mut order_entries_removed = vec![];
            for (provider, ids) in c.scope_orders(a)? {
                if ids.contains(&id) {
                    order_entries_removed.push(provider.clone());
                    if apply {
                        let rest: Vec<String> = ids.into_iter().filter(|x| x != &id).collect();
                        if rest.is_empty() {
                            c.clear_order(a, &provider)?;
                        } else {
                            c.set_order(a, &provider, &rest, now)?;
                        }
                    }
                }
            }
            let last_good_removed: Vec<String> = c
                .scope_last_good(a)?
                .into_iter()
                .filter(|(_, pid)| pid == &id)
                .map(|(prov, _)| prov)
                .collect();
            if apply {
                c.clear_last_good_for(a, &id)?;
                c.delete_profile(a, &id)?;
                if !c.profile_id_exists_anywhere(&id)? {
                    c.put_usage(&id, &Usage::default())?;
                }
                tracing::info!(profile_id = %id, agent = ?a, "profile removed");
            }
            Ok(RemoveResult {
                profile_id: id,
                agent: agent.clone(),
                removed: apply,
                order_entries_removed,
                last_good_removed,
                dry_run: !apply,
            })
        };
        let mut st = self.store();
        if p.dry_run || !st.describe().exists {
            st.read(|c| body(c, false)).map(|mut r| {
                r.dry_run = p.dry_run;
                r
            })
        } else {
            st.write(|c| body(c, true))
        }
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
        let snap = Arc::new(ProviderSnapshot {
            profiles: Arc::new(profiles),
            order,
            usage,
            settings,
            with_oauth,
        });
        cache.views.insert(k, snap.clone());
        Ok(snap)
    }

    fn walk_view(
        &self,
        c: &dyn Tx,
        a: Option<&str>,
        provider: &str,
        model: Option<&str>,
        pinned: Option<&str>,
        now: i64,
    ) -> Result<WalkView> {
        let snap = self.snapshot(c, a, provider)?;
        let can_refresh = |sp: &StoredProfile| refreshable(sp, &snap.with_oauth);
        let steps = resolve::walk(&WalkInput {
            profiles: &snap.profiles,
            order: snap.order.as_ref().map(|(ids, _)| ids.as_slice()),
            usage: &snap.usage,
            now,
            model,
            pinned,
            refresh_margin_ms: snap.settings.refresh_margin_ms,
            can_refresh: &can_refresh,
        });
        Ok((
            snap.profiles.clone(),
            snap.order.clone(),
            steps,
            snap.settings.clone(),
        ))
    }

    /// `order.get`: the explicit order in effect and the walk it gives now.
    pub fn order_get(&self, p: OrderGetParams) -> Result<OrderGetResult> {
        let agent = agent_param(p.agent)?;
        let a = agent.as_deref();
        let now = now_ms();
        // The store is read in one transaction; SecretRefs (which may run exec helpers or
        // read files) are resolved after it ended, so no helper runs inside it.
        let (provider, profiles, order, steps, settings) = self.store().read(|c| {
            let aliases = load_aliases(c)?;
            let provider = provider_param(&p.provider, &aliases)?;
            let (profiles, order, steps, settings) =
                self.walk_view(c, a, &provider, p.model.as_deref(), None, now)?;
            Ok((provider, profiles, order, steps, settings))
        })?;
        {
            let walked = materialise(
                &profiles,
                steps,
                &settings,
                false,
                RefreshMode::Assume,
                &HashMap::new(),
                now,
            );
            let effective = walked
                .steps
                .iter()
                .map(|s| EffectiveEntry {
                    profile_id: s.profile_id.clone(),
                    usable: s.skip.is_none(),
                    reason: s.skip.as_ref().map(|k| k.reason),
                    until: s.skip.as_ref().and_then(|k| k.until),
                })
                .collect();
            let (order, source) = match order {
                Some((ids, src)) => (Some(ids), Some(src.to_string())),
                None => (None, None),
            };
            Ok(OrderGetResult {
                provider,
                agent: agent.clone(),
                order,
                source,
                effective,
            })
        }
    }

    /// `order.set`.
    pub fn order_set(&self, p: OrderSetParams) -> Result<OrderSetResult> {
        let agent = agent_param(p.agent)?;
        let a = agent.as_deref();
        let now = now_ms();
        if p.order.is_empty() {
            return Err(
                RpcError::invalid_params("`order` must list at least one profile id")
                    .with("pointer", "/order")
                    .with_hint(format!(
                        "to remove the order use order.clear {{\"provider\": \"{}\"}}",
                        p.provider.trim()
                    )),
            );
        }
        let check = |c: &dyn Tx| -> Result<(String, Vec<String>)> {
            let aliases = load_aliases(c)?;
            let provider = provider_param(&p.provider, &aliases)?;
            let mut seen = BTreeSet::new();
            let mut ids = vec![];
            for (i, raw) in p.order.iter().enumerate() {
                let (id, _) = profile_id_param(raw, &aliases, &format!("/order/{i}"))?;
                if seen.insert(id.clone()) {
                    ids.push(id);
                }
            }
            let mut missing = vec![];
            let mut mismatched = vec![];
            for id in &ids {
                match c.view_profile(a, id)? {
                    None => missing.push(id.clone()),
                    Some(sp) if sp.profile.provider != provider => mismatched.push(id.clone()),
                    Some(_) => {}
                }
            }
            if !missing.is_empty() {
                return Err(RpcError::new(
                    ErrorKind::UnknownProfile,
                    format!("no profile {} in this scope's view", missing.join(", ")),
                )
                .with("missing", &missing)
                .with_hint(
                    "store them first with profiles.put, or list what exists with profiles.list",
                ));
            }
            if !mismatched.is_empty() {
                return Err(RpcError::new(
                    ErrorKind::ProviderMismatch,
                    format!(
                        "{} do(es) not belong to provider `{provider}`",
                        mismatched.join(", ")
                    ),
                )
                .with("mismatched", &mismatched)
                .with("provider", &provider));
            }
            Ok((provider, ids))
        };
        // Validate first so that a refused order.set does not create the store.
        self.store().read(|c| check(c).map(|_| ()))?;
        self.store().write(|c| {
            let (provider, ids) = check(c)?;
            if let Some(expected) = p.expected_revision {
                let current = c.scope_order(a, &provider)?.map(|(_, r)| r).unwrap_or(0);
                if current != expected {
                    return Err(revision_conflict(expected, current).with("provider", &provider));
                }
            }
            let revision = c.set_order(a, &provider, &ids, now)?;
            tracing::info!(%provider, agent = ?a, revision, "order stored");
            Ok(OrderSetResult {
                provider,
                agent: agent.clone(),
                order: ids,
                revision,
            })
        })
    }

    /// `order.clear`.
    pub fn order_clear(&self, p: OrderClearParams) -> Result<OrderClearResult> {
        let agent = agent_param(p.agent)?;
        let a = agent.as_deref();
        let mut st = self.store();
        let aliases = st.read(load_aliases)?;
        let provider = provider_param(&p.provider, &aliases)?;
        let exists = st.read(|c| c.scope_order(a, &provider))?.is_some();
        let cleared = if exists {
            st.write(|c| c.clear_order(a, &provider))?
        } else {
            false
        };
        Ok(OrderClearResult {
            provider,
            agent: agent.clone(),
            cleared,
        })
    }

    /// `auth.resolve`: the credential to use now (protocol §3 "Resolution walk").
    ///
    /// An oauth profile inside the refresh margin is refreshed before it is handed out
    /// ([`App::refresh_profile`], single flight across processes); then the walk is done
    /// again on the committed state. Every profile is tried at most once per request.
    ///
    /// Errors: `invalid_params`, `provider_mismatch`, `unknown_profile`, the -32020 kinds,
    /// `secret_unavailable`, `refresh_failed` (a pinned profile's refresh, or the only
    /// candidates' refresh, failed), store errors.
    pub fn auth_resolve(&self, p: ResolveParams) -> Result<ResolveResult> {
        let agent = agent_param(p.agent.clone())?;
        let mut attempts: HashMap<String, Attempt> = HashMap::new();
        loop {
            match self.resolve_pass(&p, &agent, &attempts)? {
                Pass::Done(r) => return Ok(*r),
                Pass::Refresh {
                    scope,
                    id,
                    seen,
                    pinned,
                } => match self.refresh_profile(scope.as_deref(), &id, Some(&seen), false) {
                    Ok(_) => {
                        attempts.insert(id, Attempt::Done);
                    }
                    Err(e) if pinned && e.kind == ErrorKind::RefreshFailed && !e.retryable => {
                        return Err(e)
                    }
                    Err(e) => {
                        attempts.insert(id, Attempt::Failed(e));
                    }
                },
            }
        }
    }

    /// One walk of `auth.resolve` over the store as it is now.
    fn resolve_pass(
        &self,
        p: &ResolveParams,
        agent: &Option<String>,
        attempts: &HashMap<String, Attempt>,
    ) -> Result<Pass> {
        let a = agent.as_deref();
        let now = now_ms();
        self.store().read(|c| {
            let aliases = self.cached_aliases(c)?;
            let pinned = p
                .profile_id
                .as_deref()
                .map(|x| profile_id_param(x, &aliases, "/profileId"))
                .transpose()?;
            let provider = match (&p.provider, &pinned) {
                (Some(x), _) => provider_param(x, &aliases)?,
                (None, Some((_, prov))) => prov.clone(),
                (None, None) => {
                    return Err(RpcError::invalid_params("missing `provider`")
                        .with("pointer", "/provider")
                        .with_hint("auth.resolve {\"provider\": \"openai\"}"))
                }
            };
            if let Some((id, prov)) = &pinned {
                if prov != &provider {
                    return Err(RpcError::new(
                        ErrorKind::ProviderMismatch,
                        format!("profile `{id}` belongs to provider `{prov}`, not `{provider}`"),
                    )
                    .with("pointer", "/profileId"));
                }
            }
            let pin = pinned.as_ref().map(|(id, _)| id.as_str());
            let model = model_param(p.model.clone());
            let (profiles, _, steps, settings) = self.walk_view(c, a, &provider, model.as_deref(), pin, now)?;
            if let Some(id) = pin {
                if steps.is_empty() {
                    return Err(unknown_profile(id, a));
                }
            }
            let walked = materialise(&profiles, steps, &settings, true, RefreshMode::Stop, attempts, now);
            if let Some(i) = walked.needs_refresh {
                let sp = profiles
                    .iter()
                    .find(|s| s.profile.id == walked.steps[i].profile_id)
                    .ok_or_else(|| RpcError::internal("walk step without a profile"))?;
                let seen = Snapshot::of(sp).ok_or_else(|| RpcError::internal("refresh of a non-oauth profile"))?;
                return Ok(Pass::Refresh {
                    scope: sp.scope.clone(),
                    id: sp.profile.id.clone(),
                    seen,
                    pinned: pin.is_some(),
                });
            }
            let Some((idx, secret)) = walked.chosen else {
                if pin.is_some() {
                    if let Some(e) = walked.first_ref_error {
                        return Err(e);
                    }
                    if let Some(e) = walked.first_refresh_error {
                        return Err(e);
                    }
                    let s = &walked.steps[0];
                    let k = s.skip.as_ref().expect("not chosen means skipped");
                    let mut e = RpcError::new(
                        ErrorKind::Unavailable,
                        format!("profile `{}` is not usable now: {}", s.profile_id, k.reason.as_str()),
                    )
                    .with("profileId", &s.profile_id)
                    .with("reason", k.reason)
                    .with("candidates", vec![resolve::CandidateReport { profile_id: s.profile_id.clone(), reason: Some(k.reason), until: k.until }]);
                    if k.reason == SkipReason::NeedsReauth {
                        return Err(crate::refresh::refresh_failed(
                            &s.profile_id,
                            "needs_reauth",
                            false,
                            format!("the refresh token of `{}` was refused; it needs a new login", s.profile_id),
                        )
                        .with_hint("log in again and store the new credential with profiles.put (same id)"));
                    }
                    if let (Some(t), SkipReason::Cooldown | SkipReason::Disabled) = (k.until, k.reason) {
                        e = e.with("earliestUntil", t).with_hint(format!(
                            "wait, or clear the window with auth.clearCooldown {{\"profileId\": \"{}\"}}",
                            s.profile_id
                        ));
                    } else {
                        e = e.retryable(false).with_hint("replace the credential with profiles.put (same id)");
                    }
                    return Err(e);
                }
                let env = env_keys_for(c, &provider)?;
                if env_allowed(settings.env_fallback, &walked.steps) {
                    if let Some(k) = env.into_iter().next() {
                        return Ok(Pass::Done(Box::new(env_result(&provider, agent, k, &walked.steps, p.explain))));
                    }
                } else if !env.is_empty() {
                    let e = with_env_available(
                        resolve::no_credential_error(&provider, a, &walked.steps),
                        &env,
                        settings.env_fallback,
                    );
                    return Err(if p.explain { with_trace(e, &walked.steps) } else { e });
                }
                let e = match walked.first_refresh_error {
                    Some(e) => e,
                    None => resolve::no_credential_error(&provider, a, &walked.steps),
                };
                return Err(if p.explain { with_trace(e, &walked.steps) } else { e });
            };
            let step = &walked.steps[idx];
            let sp = profiles
                .iter()
                .find(|s| s.profile.id == step.profile_id)
                .expect("a chosen step names a profile of the view");
            let first = &walked.steps[0];
            let (fallback_from, fallback_reason) = match (&first.skip, idx) {
                (Some(k), i) if i > 0 => (Some(first.profile_id.clone()), Some(k.reason.as_str().to_string())),
                _ => (None, None),
            };
            let trace = p.explain.then(|| {
                walked
                    .steps
                    .iter()
                    .enumerate()
                    .filter(|(i, s)| *i <= idx || s.skip.is_some())
                    .map(|(i, s)| TraceEntry {
                        profile_id: Some(s.profile_id.clone()),
                        env_var: None,
                        decision: if i == idx { "chosen".into() } else { "skipped".into() },
                        reason: s.skip.as_ref().map(|k| k.reason.as_str().to_string()),
                        until: s.skip.as_ref().and_then(|k| k.until),
                    })
                    .collect()
            });
            let account_id = match &sp.profile.credential {
                Credential::OAuth { account_id, .. } => account_id.clone(),
                _ => None,
            };
            tracing::debug!(profile_id = %sp.profile.id, %provider, agent = ?a, "resolved");
            Ok(Pass::Done(Box::new(ResolveResult {
                profile_id: Some(sp.profile.id.clone()),
                provider: provider.clone(),
                agent: agent.clone(),
                kind: sp.profile.credential.type_name().into(),
                source: "profile".into(),
                env_var: None,
                secret,
                expires: sp.profile.credential.expires(),
                email: sp.profile.email.clone(),
                account_id,
                fallback_from,
                fallback_reason,
                trace,
            })))
        })
    }

    /// `auth.report`: records how a call with `profileId` went (protocol §4). Usage is keyed
    /// by profile id and seen by every agent; a success also records lastGood for the
    /// provider in the request's scope. A failure of a cooldown-exempt provider records
    /// nothing (`recorded: false`).
    ///
    /// Errors: `invalid_params`, `unknown_profile`, store errors.
    pub fn auth_report(&self, p: ReportParams) -> Result<ReportResult> {
        let agent = agent_param(p.agent)?;
        let a = agent.as_deref();
        let model = model_param(p.model);
        let outcome = match (p.outcome, p.http_status) {
            (Some(o), _) => o,
            (None, Some(status)) => usage::outcome_for_http_status(status),
            (None, None) => {
                return Err(RpcError::invalid_params(
                    "auth.report needs `outcome` or `httpStatus`",
                )
                .with("pointer", "/outcome")
                .with_hint(
                    "give the provider's HTTP status, e.g. {\"profileId\": \"openai:default\", \"httpStatus\": 429, \"retryAfterMs\": 20000}, or an outcome such as \"rate_limit\"",
                ))
            }
        };
        let retry_after_ms = p
            .retry_after_ms
            .map(|ms| i64::try_from(ms).unwrap_or(i64::MAX));
        let now = now_ms();
        let find = |c: &dyn Tx| -> Result<StoredProfile> {
            let aliases = load_aliases(c)?;
            let (id, _) = profile_id_param(&p.profile_id, &aliases, "/profileId")?;
            c.view_profile(a, &id)?
                .ok_or_else(|| unknown_profile(&id, a))
        };
        let mut st = self.store();
        // Refuse an unknown id without creating the store.
        st.read(|c| find(c).map(|_| ()))?;
        st.write(|c| {
            let sp = find(c)?;
            let id = sp.profile.id.clone();
            let provider = sp.profile.provider.clone();
            let settings = load_settings(c)?;
            let before = c.usage(&id)?;
            let exempt = settings
                .cooldown_exempt_providers
                .iter()
                .any(|x| x.trim().eq_ignore_ascii_case(&provider));
            if exempt && outcome != Outcome::Success {
                tracing::info!(profile_id = %id, outcome = outcome.as_str(), "cooldown-exempt provider: nothing recorded");
                return Ok(ReportResult {
                    profile_id: id,
                    agent: agent.clone(),
                    outcome,
                    recorded: false,
                    usage: before.view(now),
                });
            }
            let after =
                usage::apply_report_retry_after(
                    &before,
                    outcome,
                    model.as_deref(),
                    now,
                    &settings.cooldowns,
                    retry_after_ms,
                );
            c.put_usage(&id, &after)?;
            if outcome == Outcome::Success {
                c.set_last_good(a, &provider, &id)?;
            }
            tracing::info!(profile_id = %id, outcome = outcome.as_str(), model = ?model, "usage reported");
            Ok(ReportResult {
                profile_id: id,
                agent: agent.clone(),
                outcome,
                recorded: true,
                usage: after.view(now),
            })
        })
    }

    /// `auth.clearCooldown`: with `model` only that model's windows go, else every cooldown
    /// and disable window; the failure counts restart either way.
    ///
    /// Errors: `invalid_params`, `unknown_profile` (no profile with the id in any scope, or
    /// in the agent's view when `agent` is given), store errors.
    pub fn auth_clear_cooldown(&self, p: ClearCooldownParams) -> Result<ClearCooldownResult> {
        let agent = agent_param(p.agent)?;
        let a = agent.as_deref();
        let model = model_param(p.model);
        let now = now_ms();
        let find = |c: &dyn Tx| -> Result<String> {
            let aliases = load_aliases(c)?;
            let (id, _) = profile_id_param(&p.profile_id, &aliases, "/profileId")?;
            let exists = match a {
                Some(_) => c.view_profile(a, &id)?.is_some(),
                None => c.profile_id_exists_anywhere(&id)?,
            };
            if exists {
                Ok(id)
            } else {
                Err(unknown_profile(&id, a))
            }
        };
        let mut st = self.store();
        let id = st.read(find)?;
        let before = st.read(|c| c.usage(&id))?;
        if usage::clear_cooldown(&before, model.as_deref()) == before {
            return Ok(ClearCooldownResult {
                profile_id: id,
                cleared: false,
                usage: before.view(now),
            });
        }
        st.write(|c| {
            let id = find(c)?;
            let before = c.usage(&id)?;
            let after = usage::clear_cooldown(&before, model.as_deref());
            c.put_usage(&id, &after)?;
            tracing::info!(profile_id = %id, model = ?model, "cooldown cleared");
            Ok(ClearCooldownResult {
                profile_id: id,
                cleared: after != before,
                usage: after.view(now),
            })
        })
    }

    /// `auth.status`: every provider of the view with its profiles' statuses and the
    /// roll-up of OpenClaw's `models status` ([`crate::status`]).
    ///
    /// Errors: `invalid_params` (a negative `expiringWithinMs`, a bad provider or agent),
    /// store errors.
    pub fn auth_status(&self, p: StatusParams) -> Result<StatusResult> {
        let agent = agent_param(p.agent)?;
        let a = agent.as_deref();
        let now = now_ms();
        if p.expiring_within_ms < 0 {
            return Err(
                RpcError::invalid_params("`expiringWithinMs` must be >= 0 milliseconds")
                    .with("pointer", "/expiringWithinMs"),
            );
        }
        self.store().read(|c| {
            let aliases = load_aliases(c)?;
            let only = p
                .provider
                .as_deref()
                .map(|x| provider_param(x, &aliases))
                .transpose()?;
            let view = c.view_profiles(a, only.as_deref())?;
            let mut providers: Vec<String> =
                view.iter().map(|s| s.profile.provider.clone()).collect();
            providers.extend(only.clone());
            providers.sort();
            providers.dedup();
            let mut out = vec![];
            let with_oauth = oauth_providers(c)?;
            for provider in providers {
                let (profiles, order, steps, settings) =
                    self.walk_view(c, a, &provider, None, None, now)?;
                let usage = c.usages_of(&profiles)?;
                let by_id: HashMap<&str, &StoredProfile> = profiles
                    .iter()
                    .map(|s| (s.profile.id.as_str(), s))
                    .collect();
                let mut entries = vec![];
                let mut roll = vec![];
                for step in &steps {
                    let Some(sp) = by_id.get(step.profile_id.as_str()) else {
                        continue;
                    };
                    let u = usage.get(&sp.profile.id);
                    let can = refreshable(sp, &with_oauth);
                    let refc = ref_check(sp, &settings, p.probe);
                    let (st, reason, until) =
                        profile_status(sp, u, now, p.expiring_within_ms, can, refc);
                    let listed = !step
                        .skip
                        .as_ref()
                        .is_some_and(|k| k.reason == SkipReason::ExcludedByAuthOrder);
                    roll.push(status::RollUpEntry {
                        kind: sp.profile.credential.type_name(),
                        health: status::health(sp, u, refc, now, p.expiring_within_ms),
                        eligible: status::eligible(sp, now),
                        listed,
                        expires: sp.profile.credential.expires(),
                    });
                    entries.push(ProfileStatus {
                        profile_id: sp.profile.id.clone(),
                        kind: sp.profile.credential.type_name().into(),
                        status: st.into(),
                        reason,
                        expires: sp.profile.credential.expires(),
                        until,
                    });
                }
                let env_vars = if settings.env_fallback == EnvFallback::Never {
                    vec![]
                } else {
                    envkeys::env_names(&env_keys_for(c, &provider)?)
                };
                let (mut pstatus, expires) = status::provider_roll_up(&roll, order.is_some());
                if pstatus == "missing" && roll.is_empty() && !env_vars.is_empty() {
                    // Environment keys are static credentials.
                    pstatus = "static";
                }
                out.push(ProviderStatus {
                    provider,
                    status: pstatus.into(),
                    expires,
                    profiles: entries,
                    env_vars,
                });
            }
            let overall = status::overall_status(out.iter().map(|p| p.status.as_str()));
            Ok(StatusResult {
                agent: agent.clone(),
                overall: overall.into(),
                providers: out,
                now,
            })
        })
    }

    /// `auth.candidates`: every usable credential in resolution order, deduplicated by
    /// secret value, then the environment keys when `envFallback` allows them. An empty
    /// list is not an error.
    ///
    /// Errors: `invalid_params`, store errors.
    pub fn auth_candidates(&self, p: CandidatesParams) -> Result<CandidatesResult> {
        let agent = agent_param(p.agent)?;
        let a = agent.as_deref();
        let model = model_param(p.model);
        // First refresh every usable oauth candidate inside the margin (single flight);
        // a failure leaves the stored token, used while it is valid.
        let due: Vec<(Option<String>, String, Snapshot)> = self.store().read(|c| {
            let aliases = load_aliases(c)?;
            let provider = provider_param(&p.provider, &aliases)?;
            let (profiles, _, steps, _) =
                self.walk_view(c, a, &provider, model.as_deref(), None, now_ms())?;
            Ok(steps
                .iter()
                .filter(|s| s.skip.is_none() && s.needs_refresh)
                .filter_map(|s| profiles.iter().find(|sp| sp.profile.id == s.profile_id))
                .filter_map(|sp| {
                    Snapshot::of(sp).map(|snap| (sp.scope.clone(), sp.profile.id.clone(), snap))
                })
                .collect())
        })?;
        let mut attempts = HashMap::new();
        for (scope, id, seen) in due {
            let r = self.refresh_profile(scope.as_deref(), &id, Some(&seen), false);
            attempts.insert(
                id,
                match r {
                    Ok(_) => Attempt::Done,
                    Err(e) => Attempt::Failed(e),
                },
            );
        }
        let now = now_ms();
        // Read in one transaction; resolve SecretRefs (exec helpers, files) after it.
        let (provider, profiles, steps, settings, env_keys) = self.store().read(|c| {
            let aliases = load_aliases(c)?;
            let provider = provider_param(&p.provider, &aliases)?;
            let (profiles, _, steps, settings) =
                self.walk_view(c, a, &provider, model.as_deref(), None, now)?;
            let env_keys = env_keys_for(c, &provider)?;
            Ok((provider, profiles, steps, settings, env_keys))
        })?;
        {
            let walked = materialise(
                &profiles,
                steps,
                &settings,
                false,
                RefreshMode::Stored,
                &attempts,
                now,
            );
            let by_id: HashMap<&str, &StoredProfile> = profiles
                .iter()
                .map(|s| (s.profile.id.as_str(), s))
                .collect();
            let mut seen = BTreeSet::new();
            let mut candidates = vec![];
            for (i, secret) in walked.usable {
                let sp = by_id[walked.steps[i].profile_id.as_str()];
                if !seen.insert(secret.expose().to_string()) {
                    continue;
                }
                candidates.push(CandidateEntry {
                    profile_id: Some(sp.profile.id.clone()),
                    env_var: None,
                    source: "profile".into(),
                    kind: sp.profile.credential.type_name().into(),
                    secret,
                    expires: sp.profile.credential.expires(),
                });
            }
            if env_allowed(settings.env_fallback, &walked.steps) {
                for k in env_keys {
                    if !seen.insert(k.value.expose().to_string()) {
                        continue;
                    }
                    candidates.push(CandidateEntry {
                        profile_id: None,
                        env_var: Some(k.var),
                        source: "env".into(),
                        kind: "api_key".into(),
                        secret: k.value,
                        expires: None,
                    });
                }
            }
            Ok(CandidatesResult {
                provider,
                agent: agent.clone(),
                candidates,
            })
        }
    }

    /// `settings.get`: the effective settings (defaults merged with the stored keys).
    ///
    /// Errors: store errors.
    pub fn settings_get(&self, _: SettingsGetParams) -> Result<SettingsResult> {
        let (settings, revision) = self
            .store()
            .read(|c| Ok((load_settings(c)?, settings_revision(c)?)))?;
        Ok(SettingsResult { settings, revision })
    }

    /// `settings.set`: merges the given keys into the stored ones (`cooldowns` key by key)
    /// and returns the effective settings. `busyTimeoutMs` applies to this process at once
    /// and to others when they next open the store.
    ///
    /// Errors: `invalid_settings` (unknown key, wrong type or value), store errors.
    pub fn settings_set(&self, p: SettingsSetParams) -> Result<SettingsResult> {
        let mut st = self.store();
        // Validate first so that refused settings do not create the store.
        st.read(|c| {
            check_settings_revision(c, p.expected_revision)?;
            settings::merge_settings(&c.settings()?, &p.settings).map(|_| ())
        })?;
        let (settings, revision) = st.write(|c| {
            let current = check_settings_revision(c, p.expected_revision)?;
            let (to_store, settings) = settings::merge_settings(&c.settings()?, &p.settings)?;
            // Applied before committed: a value this connection cannot use is refused
            // here, inside the transaction, and nothing is stored.
            c.apply_busy_timeout(settings.busy_timeout_ms)?;
            for (k, v) in &to_store {
                c.put_setting(k, v)?;
            }
            c.put_setting(SETTINGS_REVISION_KEY,
                &serde_json::Value::from(current + 1),
            )?;
            Ok((settings, current + 1))
        })?;
        st.set_busy_timeout(settings.busy_timeout_ms);
        tracing::info!(keys = ?p.settings.keys().collect::<Vec<_>>(), "settings stored");
        Ok(SettingsResult { settings, revision })
    }
}
