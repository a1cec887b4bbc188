//! `auth.report`, `auth.clearCooldown` and `auth.status`: usage state (cooldown and disable
//! windows, protocol §4) and per-profile health rolled up as OpenClaw's `models status`.

use super::walk::{RawWalk, WalkRequest, WalkView};
use super::{
    agent_param, load_aliases, load_settings, model_param, now_ms, profile_id_param,
    unknown_profile, App,
};
use crate::api::{
    ClearCooldownParams, ClearCooldownResult, ProfileStatus, ProviderStatus, ReportParams,
    ReportResult, StatusParams, StatusResult,
};
use crate::core::envkeys::{self};
use crate::core::error::{Result, RpcError};
use crate::core::profile::StoredProfile;
use crate::core::resolve::SkipReason;
use crate::core::settings::{EnvFallback, Settings};
use crate::core::status;
use crate::core::usage::{self, Outcome};

use crate::secrets;
use crate::store::Tx;

/// Whether `sp`'s SecretRef can be read now, without side effects: `env` and `file` refs
/// are read; an `exec` ref is run only when `probe` is true, else [`status::RefCheck::Unchecked`].
pub(crate) fn ref_check(sp: &StoredProfile, settings: &Settings, probe: bool) -> status::RefCheck {
    use crate::core::profile::SecretSource;
    match sp.profile.credential.secret_ref() {
        None => status::RefCheck::Inline,
        Some(r) if r.source == SecretSource::Exec && !probe => status::RefCheck::Unchecked,
        Some(r) => match secrets::resolve_ref(r, settings) {
            Ok(_) => status::RefCheck::Available,
            Err(_) => status::RefCheck::Unavailable,
        },
    }
}

impl App {
    /// `auth.report`: records how a call with `profileId` went (protocol §4). Usage is keyed
    /// by profile id and seen by every agent; a success also records lastGood for the
    /// provider in the request's scope. A failure of a cooldown-exempt provider records
    /// nothing (`recorded: false`).
    ///
    /// Errors: `invalid_params`, `unknown_profile`, store errors.
    pub(crate) fn auth_report(&self, p: ReportParams) -> Result<ReportResult> {
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
    pub(crate) fn auth_clear_cooldown(
        &self,
        p: ClearCooldownParams,
    ) -> Result<ClearCooldownResult> {
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
    /// roll-up of OpenClaw's `models status` ([`crate::core::status`]). The views are read
    /// in one transaction; SecretRefs are checked after it ended ([`ref_check`] may read a
    /// file or, with `probe`, run an exec helper).
    ///
    /// Errors: `invalid_params` (a negative `expiringWithinMs`, a bad provider or agent),
    /// store errors.
    pub(crate) fn auth_status(&self, p: StatusParams) -> Result<StatusResult> {
        let agent = WalkRequest::agent(p.agent)?;
        let now = now_ms();
        if p.expiring_within_ms < 0 {
            return Err(
                RpcError::invalid_params("`expiringWithinMs` must be >= 0 milliseconds")
                    .with("pointer", "/expiringWithinMs"),
            );
        }
        let views = self.status_views(&agent, p.provider.as_deref(), now)?;
        let out: Vec<ProviderStatus> = views
            .into_iter()
            .map(|(req, view)| provider_status(&req, &view, now, p.expiring_within_ms, p.probe))
            .collect();
        let overall = status::overall_status(out.iter().map(|p| p.status));
        Ok(StatusResult {
            agent,
            overall,
            providers: out,
            now,
        })
    }

    /// The walk of every provider `auth.status` reports (the view's providers, or `only`),
    /// read in one transaction.
    fn status_views(
        &self,
        agent: &Option<String>,
        only: Option<&str>,
        now: i64,
    ) -> Result<Vec<(WalkRequest, WalkView)>> {
        self.store().read(|c| {
            let aliases = self.cached_aliases(c)?;
            let only = only
                .map(|x| {
                    let raw = RawWalk {
                        provider: Some(x),
                        ..RawWalk::default()
                    };
                    WalkRequest::normalise(agent.clone(), raw, &aliases).map(|r| r.provider)
                })
                .transpose()?;
            let view = c.view_profiles(agent.as_deref(), only.as_deref())?;
            let mut providers: Vec<String> =
                view.iter().map(|s| s.profile.provider.clone()).collect();
            providers.extend(only);
            providers.sort();
            providers.dedup();
            providers
                .into_iter()
                .map(|provider| {
                    let req = WalkRequest {
                        agent: agent.clone(),
                        provider,
                        model: None,
                        pinned: None,
                    };
                    let view = self.walk_view(c, &req, now)?;
                    Ok((req, view))
                })
                .collect()
        })
    }
}

/// One provider of `auth.status`: its profiles' statuses in walk order and the roll-up.
/// Runs outside any transaction (it may resolve SecretRefs).
fn provider_status(
    req: &WalkRequest,
    view: &WalkView,
    now: i64,
    expiring_within_ms: i64,
    probe: bool,
) -> ProviderStatus {
    let settings = view.settings();
    let mut entries = vec![];
    let mut roll = vec![];
    for step in view.steps.iter() {
        let Some(sp) = view.profile(&step.profile_id) else {
            continue;
        };
        let u = view.usage().get(&sp.profile.id);
        let refc = ref_check(sp, settings, probe);
        let (st, reason, until) =
            status::profile_status(sp, u, now, expiring_within_ms, view.can_refresh(sp), refc);
        let listed = !step
            .skip
            .as_ref()
            .is_some_and(|k| k.reason == SkipReason::ExcludedByAuthOrder);
        roll.push(status::RollUpEntry {
            kind: sp.profile.credential.credential_type(),
            health: status::health(sp, u, refc, now, expiring_within_ms),
            eligible: status::eligible(sp, now),
            listed,
            expires: sp.profile.credential.expires(),
        });
        entries.push(ProfileStatus {
            profile_id: sp.profile.id.clone(),
            kind: sp.profile.credential.credential_type(),
            status: st,
            reason,
            expires: sp.profile.credential.expires(),
            until,
        });
    }
    let env_vars = if settings.env_fallback == EnvFallback::Never {
        vec![]
    } else {
        envkeys::env_names(&view.env_keys(&req.provider))
    };
    let (mut pstatus, expires) = status::provider_roll_up(&roll, view.order().is_some());
    if pstatus == status::Health::Missing && roll.is_empty() && !env_vars.is_empty() {
        // Environment keys are static credentials.
        pstatus = status::Health::Static;
    }
    ProviderStatus {
        provider: req.provider.clone(),
        status: pstatus,
        expires,
        profiles: entries,
        env_vars,
    }
}

#[cfg(test)]
mod tests {
    use crate::core::error::ErrorKind;
    use crate::core::status::{Health, ProfileHealth};
    use crate::core::usage::Outcome;
    use crate::handlers::testing::{app, params, put};
    use serde_json::json;

    #[test]
    fn an_http_status_maps_to_its_outcome_and_starts_a_cooldown() {
        let (_d, app) = app();
        put(&app, "openai:a", "sk-unit-usage-a1");
        let r = app
            .auth_report(params(json!({"profileId": "openai:a", "httpStatus": 429})))
            .unwrap();
        assert_eq!(r.outcome, Outcome::RateLimit);
        assert!(r.recorded);
        assert!(r.usage.cooldown_until.is_some());
        let st = app.auth_status(params(json!({}))).unwrap();
        assert_eq!(st.providers[0].profiles[0].status, ProfileHealth::Cooldown);
        // An explicit outcome wins over httpStatus.
        let r = app
            .auth_report(params(
                json!({"profileId": "openai:a", "httpStatus": 429, "outcome": "success"}),
            ))
            .unwrap();
        assert_eq!(r.outcome, Outcome::Success);
    }

    #[test]
    fn a_report_needs_an_outcome_and_a_known_profile() {
        let (_d, app) = app();
        let e = app
            .auth_report(params(json!({"profileId": "openai:a"})))
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidParams);
        assert_eq!(e.extra.get("pointer"), Some(&json!("/outcome")));
        let e = app
            .auth_report(params(json!({"profileId": "openai:a", "outcome": "auth"})))
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::UnknownProfile);
    }

    #[test]
    fn a_failure_of_a_cooldown_exempt_provider_records_nothing() {
        let (_d, app) = app();
        put(&app, "openrouter:a", "sk-unit-usage-or1");
        let r = app
            .auth_report(params(
                json!({"profileId": "openrouter:a", "outcome": "rate_limit"}),
            ))
            .unwrap();
        assert!(!r.recorded);
        assert_eq!(r.usage.cooldown_until, None);
    }

    #[test]
    fn clear_cooldown_says_whether_it_cleared_anything() {
        let (_d, app) = app();
        put(&app, "openai:a", "sk-unit-usage-a2");
        let c = app
            .auth_clear_cooldown(params(json!({"profileId": "openai:a"})))
            .unwrap();
        assert!(!c.cleared);
        app.auth_report(params(
            json!({"profileId": "openai:a", "outcome": "overloaded"}),
        ))
        .unwrap();
        let c = app
            .auth_clear_cooldown(params(json!({"profileId": "openai:a"})))
            .unwrap();
        assert!(c.cleared);
        assert_eq!(c.usage.cooldown_until, None);
    }

    #[test]
    fn status_rolls_up_providers_and_refuses_a_negative_window() {
        let (_d, app) = app();
        let st = app.auth_status(params(json!({}))).unwrap();
        assert_eq!(st.overall, Health::Missing, "no provider at all");
        put(&app, "openai:a", "sk-unit-usage-a3");
        app.profiles_put(params(
            json!({"profile": {"id": "anthropic:t", "type": "token",
            "token": "tok-unit-usage-1", "expires": 1_000}}),
        ))
        .unwrap();
        let st = app.auth_status(params(json!({}))).unwrap();
        let words: Vec<(&str, Health)> = st
            .providers
            .iter()
            .map(|p| (p.provider.as_str(), p.status))
            .collect();
        assert_eq!(
            words,
            [("anthropic", Health::Expired), ("openai", Health::Static)]
        );
        assert_eq!(st.overall, Health::Expired);
        let e = app
            .auth_status(params(json!({"expiringWithinMs": -1})))
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidParams);
    }
}
