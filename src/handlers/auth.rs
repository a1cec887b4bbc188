//! `auth.resolve` and `auth.candidates`: the pure walk ([`crate::core::resolve::walk`]) over
//! a cached snapshot of the scope view, made concrete — SecretRefs resolved, OAuth tokens
//! inside the margin refreshed — with environment keys (protocol §6) as the fallback.

use super::*;
use crate::api::*;
use crate::core::envkeys::{self, EnvKey};
use crate::core::error::{ErrorKind, Result, RpcError};
use crate::core::profile::{Credential, StoredProfile};
use crate::core::resolve::{self, SkipReason, Step, WalkInput};
use crate::core::secret_value::Secret;
use crate::core::settings::{EnvFallback, Settings};
use crate::handlers::refresh::{refreshable, Snapshot};
use crate::store::Tx;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

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
pub(super) struct Walked {
    /// The walk's steps, each with its decision (`Secret`s are not in here).
    pub(super) steps: Vec<Step>,
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

/// Walks and materialises: the first usable step whose secret can be produced wins.
/// With `stop_at_first` false every usable step is checked (for `order.get` `effective`).
pub(super) fn materialise(
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

/// The environment keys (protocol §6) this process sees for `provider`, with the
/// provider's registered `envVars` from the store.
pub(super) fn env_keys_for(c: &dyn Tx, provider: &str) -> Result<Vec<EnvKey>> {
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
    pub(super) fn walk_view(
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
            crate::handlers::seal::require_secrets(c, profiles.iter())?;
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
                        return Err(crate::handlers::refresh::refresh_failed(
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
            crate::handlers::seal::require_secrets(c, profiles.iter())?;
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
}
