//! `auth.report`, `auth.clearCooldown` and `auth.status`: usage state (cooldown and disable
//! windows, protocol §4) and per-profile health rolled up as OpenClaw's `models status`.

use super::auth::env_keys_for;
use super::*;
use crate::api::*;
use crate::core::envkeys::{self};
use crate::core::error::{Result, RpcError};
use crate::core::profile::{Credential, StoredProfile};
use crate::core::resolve::SkipReason;
use crate::core::settings::{EnvFallback, Settings};
use crate::core::status;
use crate::core::usage::{self, Outcome, Usage};
use crate::handlers::refresh::{oauth_providers, refreshable};
use crate::secrets;
use crate::store::Tx;
use std::collections::HashMap;

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
    /// roll-up of OpenClaw's `models status` ([`crate::core::status`]).
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
}
