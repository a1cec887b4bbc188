//! `auth.resolve` and `auth.candidates`: the pure walk ([`crate::core::resolve::walk`]) over
//! a cached snapshot of the scope view, made concrete — SecretRefs resolved, OAuth tokens
//! inside the margin refreshed — with environment keys (protocol §6) as the fallback.

use super::walk::{RawWalk, WalkRequest, WalkView};
use super::{now_ms, unknown_profile, App, Attempt, Pass, RefreshMode};
use crate::api::{
    CandidateEntry, CandidatesParams, CandidatesResult, ResolveParams, ResolveResult, TraceEntry,
};
use crate::core::envkeys::{self, EnvKey};
use crate::core::error::{ErrorKind, Result, RpcError};
use crate::core::profile::{Credential, CredentialType, StoredProfile};
use crate::core::resolve::{self, CredentialSource, Decision, SkipReason, Step};
use crate::core::secret_value::Secret;
use crate::core::settings::{EnvFallback, Settings};
use crate::handlers::refresh::Snapshot;
use crate::store::Tx;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// The outcome of materialising the walk: the chosen profile and its secret, plus every
/// step with ref failures folded in as skips.
pub(super) struct Walked {
    /// The walk's steps, each with its decision (`Secret`s are not in here). Shared with
    /// the read cache until a failure is folded in (then a copy).
    pub(super) steps: Arc<Vec<Step>>,
    /// With `stop_at_first`: the first usable step and its secret.
    chosen: Option<(usize, Secret)>,
    /// Without `stop_at_first`: every usable step with its secret, in walk order.
    usable: Vec<(usize, Secret)>,
    /// The error of the first failed ref, for a pinned profile.
    first_ref_error: Option<RpcError>,
    /// [`RefreshMode::Stop`]: the step that must be refreshed before the walk can go on.
    needs_refresh: Option<usize>,
    /// The error of the first refresh this request tried that failed.
    first_refresh_error: Option<RpcError>,
}

/// Walks and materialises: the first usable step whose secret can be produced wins.
/// With `stop_at_first` false every usable step's secret is produced (`auth.candidates`).
/// `steps` are copied only when a step's decision changes (a ref that fails, a token that
/// expired while its refresh failed): a plain resolve reads the cached walk as it is.
pub(super) fn materialise(
    view: &WalkView,
    mut steps: Arc<Vec<Step>>,
    stop_at_first: bool,
    mode: RefreshMode,
    attempts: &HashMap<String, Attempt>,
    now: i64,
) -> Walked {
    let settings: &Settings = view.settings();
    let mut chosen = None;
    let mut usable = vec![];
    let mut first_ref_error = None;
    let mut needs_refresh = None;
    let mut first_refresh_error = None;
    for i in 0..steps.len() {
        let step = &steps[i];
        if step.skip.is_some() {
            continue;
        }
        let Some(sp) = view.profile(&step.profile_id) else {
            continue;
        };
        if step.needs_refresh {
            match attempts.get(&step.profile_id) {
                None if mode == RefreshMode::Stop => {
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
                Arc::make_mut(&mut steps)[i].skip = Some(resolve::Skip {
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
            Ok(s) if stop_at_first => {
                chosen = Some((i, s));
                break;
            }
            Ok(s) => usable.push((i, s)),
            Err(e) => {
                Arc::make_mut(&mut steps)[i].skip = Some(resolve::Skip {
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

/// The provider's registered `envVars` (protocol §6) from the store, names only.
pub(super) fn registered_env_vars(c: &dyn Tx, provider: &str) -> Result<Vec<String>> {
    Ok(c.providers()?
        .into_iter()
        .find(|(id, _)| id == provider)
        .and_then(|(_, body)| {
            body.get("envVars").and_then(|v| v.as_array()).map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
        })
        .unwrap_or_default())
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

/// One `trace` entry for a walk step.
fn trace_entry(s: &Step, decision: Decision) -> TraceEntry {
    TraceEntry {
        profile_id: Some(s.profile_id.clone()),
        env_var: None,
        decision,
        reason: s.skip.as_ref().map(|k| k.reason),
        until: s.skip.as_ref().and_then(|k| k.until),
    }
}

/// Adds `data.trace` (every candidate, skipped, with reason and until) to a resolution
/// error of a request with `explain`.
fn with_trace(e: RpcError, steps: &[Step]) -> RpcError {
    let trace: Vec<TraceEntry> = steps
        .iter()
        .map(|s| trace_entry(s, Decision::Skipped))
        .collect();
    e.with("trace", trace)
}

/// The `auth.resolve` result for an environment key.
fn env_result(req: &WalkRequest, k: EnvKey, steps: &[Step], explain: bool) -> ResolveResult {
    let first = steps.first();
    let trace = explain.then(|| {
        steps
            .iter()
            .map(|s| trace_entry(s, Decision::Skipped))
            .chain(std::iter::once(TraceEntry {
                profile_id: None,
                env_var: Some(k.var.clone()),
                decision: Decision::Chosen,
                reason: None,
                until: None,
            }))
            .collect()
    });
    tracing::debug!(env_var = %k.var, provider = %req.provider, agent = ?req.agent, "resolved from the environment");
    ResolveResult {
        profile_id: None,
        provider: req.provider.clone(),
        agent: req.agent.clone(),
        kind: CredentialType::ApiKey,
        source: CredentialSource::Env,
        env_var: Some(k.var),
        secret: k.value,
        expires: None,
        email: None,
        account_id: None,
        fallback_from: first.map(|s| s.profile_id.clone()),
        fallback_reason: first.and_then(|s| s.skip.as_ref()).map(|k| k.reason),
        trace,
    }
}

/// The error for a pinned profile (`profileId`) that the walk could not hand out.
fn pinned_unusable(walked: Walked) -> RpcError {
    if let Some(e) = walked.first_ref_error {
        return e;
    }
    if let Some(e) = walked.first_refresh_error {
        return e;
    }
    let s = &walked.steps[0];
    let Some(k) = s.skip.as_ref() else {
        return RpcError::internal("a pinned profile neither chosen nor skipped");
    };
    if k.reason == SkipReason::NeedsReauth {
        return crate::handlers::refresh::refresh_failed(
            &s.profile_id,
            "needs_reauth",
            false,
            format!(
                "the refresh token of `{}` was refused; it needs a new login",
                s.profile_id
            ),
        )
        .with_hint("log in again and store the new credential with profiles.put (same id)");
    }
    let e = RpcError::new(
        ErrorKind::Unavailable,
        format!(
            "profile `{}` is not usable now: {}",
            s.profile_id,
            k.reason.as_str()
        ),
    )
    .with("profileId", &s.profile_id)
    .with("reason", k.reason)
    .with(
        "candidates",
        vec![resolve::CandidateReport {
            profile_id: s.profile_id.clone(),
            reason: Some(k.reason),
            until: k.until,
        }],
    );
    match (k.until, k.reason) {
        (Some(t), SkipReason::Cooldown | SkipReason::Disabled) => {
            e.with("earliestUntil", t).with_hint(format!(
                "wait, or clear the window with auth.clearCooldown {{\"profileId\": \"{}\"}}",
                s.profile_id
            ))
        }
        _ => e
            .retryable(false)
            .with_hint("replace the credential with profiles.put (same id)"),
    }
}

/// The answer when no profile could be handed out: an environment key when `envFallback`
/// allows one, else the resolution error (with `data.envAvailable` and `data.trace`).
fn without_a_profile(
    req: &WalkRequest,
    view: &WalkView,
    walked: Walked,
    explain: bool,
) -> Result<ResolveResult> {
    let env = view.env_keys(&req.provider);
    let mode = view.settings().env_fallback;
    let a = req.agent_str();
    if env_allowed(mode, &walked.steps) {
        if let Some(k) = env.into_iter().next() {
            return Ok(env_result(req, k, &walked.steps, explain));
        }
    } else if !env.is_empty() {
        let e = resolve::no_credential_error(&req.provider, a, &walked.steps);
        let e = with_env_available(e, &env, mode);
        return Err(if explain {
            with_trace(e, &walked.steps)
        } else {
            e
        });
    }
    let e = match walked.first_refresh_error {
        Some(e) => e,
        None => resolve::no_credential_error(&req.provider, a, &walked.steps),
    };
    Err(if explain {
        with_trace(e, &walked.steps)
    } else {
        e
    })
}

/// The `auth.resolve` result for the chosen step `idx` of `steps`.
fn profile_result(
    req: &WalkRequest,
    sp: &StoredProfile,
    steps: &[Step],
    idx: usize,
    secret: Secret,
    explain: bool,
) -> ResolveResult {
    let first = &steps[0];
    let (fallback_from, fallback_reason) = match (&first.skip, idx) {
        (Some(k), i) if i > 0 => (Some(first.profile_id.clone()), Some(k.reason)),
        _ => (None, None),
    };
    let trace = explain.then(|| {
        steps
            .iter()
            .enumerate()
            .filter(|(i, s)| *i <= idx || s.skip.is_some())
            .map(|(i, s)| {
                let d = if i == idx {
                    Decision::Chosen
                } else {
                    Decision::Skipped
                };
                trace_entry(s, d)
            })
            .collect()
    });
    let account_id = match &sp.profile.credential {
        Credential::OAuth { account_id, .. } => account_id.clone(),
        _ => None,
    };
    tracing::debug!(profile_id = %sp.profile.id, provider = %req.provider, agent = ?req.agent, "resolved");
    ResolveResult {
        profile_id: Some(sp.profile.id.clone()),
        provider: req.provider.clone(),
        agent: req.agent.clone(),
        kind: sp.profile.credential.credential_type(),
        source: CredentialSource::Profile,
        env_var: None,
        secret,
        expires: sp.profile.credential.expires(),
        email: sp.profile.email.clone(),
        account_id,
        fallback_from,
        fallback_reason,
        trace,
    }
}

impl App {
    /// `auth.resolve`: the credential to use now (protocol §3 "Resolution walk").
    ///
    /// An oauth profile inside the refresh margin is refreshed before it is handed out
    /// ([`App::refresh_profile`], single flight across processes); then the walk is done
    /// again on the committed state. Every profile is tried at most once per request.
    ///
    /// Errors: `invalid_params`, `provider_mismatch`, `unknown_profile`, the -32020 kinds,
    /// `secret_unavailable`, `refresh_failed` (a pinned profile's refresh, or the only
    /// candidates' refresh, failed), store errors.
    pub(crate) fn auth_resolve(&self, p: ResolveParams) -> Result<ResolveResult> {
        let agent = WalkRequest::agent(p.agent.clone())?;
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

    /// One walk of `auth.resolve` over the store as it is now: read (one transaction),
    /// decide, then materialise with the transaction ended.
    fn resolve_pass(
        &self,
        p: &ResolveParams,
        agent: &Option<String>,
        attempts: &HashMap<String, Attempt>,
    ) -> Result<Pass> {
        let now = now_ms();
        let raw = RawWalk {
            provider: p.provider.as_deref(),
            profile_id: p.profile_id.as_deref(),
            model: p.model.as_deref(),
        };
        let (req, mut view) = self.read_walk(agent.clone(), raw, now, true)?;
        if let Some(id) = &req.pinned {
            if view.steps.is_empty() {
                return Err(unknown_profile(id, req.agent_str()));
            }
        }
        let steps = std::mem::take(&mut view.steps);
        let mut walked = materialise(&view, steps, true, RefreshMode::Stop, attempts, now);
        if let Some(i) = walked.needs_refresh {
            let sp = view
                .profile(&walked.steps[i].profile_id)
                .ok_or_else(|| RpcError::internal("walk step without a profile"))?;
            let seen = Snapshot::of(sp)
                .ok_or_else(|| RpcError::internal("refresh of a non-oauth profile"))?;
            return Ok(Pass::Refresh {
                scope: sp.scope.clone(),
                id: sp.profile.id.clone(),
                seen,
                pinned: req.pinned.is_some(),
            });
        }
        let Some((idx, secret)) = walked.chosen.take() else {
            if req.pinned.is_some() {
                return Err(pinned_unusable(walked));
            }
            return without_a_profile(&req, &view, walked, p.explain)
                .map(|r| Pass::Done(Box::new(r)));
        };
        let sp = view
            .profile(&walked.steps[idx].profile_id)
            .ok_or_else(|| RpcError::internal("a chosen step names no profile of the view"))?;
        let r = profile_result(&req, sp, &walked.steps, idx, secret, p.explain);
        Ok(Pass::Done(Box::new(r)))
    }

    /// `auth.candidates`: every usable credential in resolution order, deduplicated by
    /// secret value, then the environment keys when `envFallback` allows them. An empty
    /// list is not an error.
    ///
    /// Errors: `invalid_params`, store errors.
    pub(crate) fn auth_candidates(&self, p: CandidatesParams) -> Result<CandidatesResult> {
        let agent = WalkRequest::agent(p.agent.clone())?;
        let raw = RawWalk {
            provider: Some(&p.provider),
            profile_id: None,
            model: p.model.as_deref(),
        };
        // First refresh every usable oauth candidate inside the margin (single flight);
        // a failure leaves the stored token, used while it is valid.
        let (_, view) = self.read_walk(agent.clone(), raw, now_ms(), true)?;
        let due: Vec<(Option<String>, String, Snapshot)> = view
            .steps
            .iter()
            .filter(|s| s.skip.is_none() && s.needs_refresh)
            .filter_map(|s| view.profile(&s.profile_id))
            .filter_map(|sp| {
                Snapshot::of(sp).map(|snap| (sp.scope.clone(), sp.profile.id.clone(), snap))
            })
            .collect();
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
        let (req, mut view) = self.read_walk(agent, raw, now, true)?;
        let steps = std::mem::take(&mut view.steps);
        let walked = materialise(&view, steps, false, RefreshMode::Stored, &attempts, now);
        let mut seen = BTreeSet::new();
        let mut candidates = vec![];
        for (i, secret) in walked.usable {
            let Some(sp) = view.profile(&walked.steps[i].profile_id) else {
                continue;
            };
            if !seen.insert(secret.expose().to_string()) {
                continue;
            }
            candidates.push(CandidateEntry {
                profile_id: Some(sp.profile.id.clone()),
                env_var: None,
                source: CredentialSource::Profile,
                kind: sp.profile.credential.credential_type(),
                secret,
                expires: sp.profile.credential.expires(),
            });
        }
        if env_allowed(view.settings().env_fallback, &walked.steps) {
            for k in view.env_keys(&req.provider) {
                if !seen.insert(k.value.expose().to_string()) {
                    continue;
                }
                candidates.push(CandidateEntry {
                    profile_id: None,
                    env_var: Some(k.var),
                    source: CredentialSource::Env,
                    kind: CredentialType::ApiKey,
                    secret: k.value,
                    expires: None,
                });
            }
        }
        Ok(CandidatesResult {
            provider: req.provider,
            agent: req.agent,
            candidates,
        })
    }
}
