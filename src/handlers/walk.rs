//! One resolve path for every method that walks (`auth.resolve`, `auth.candidates`,
//! `order.get`, `auth.status`, and through them `get`, `exec` and `check`):
//!
//! 1. **normalise** the request once ([`WalkRequest::normalise`]: agent validated, provider
//!    alias resolved, model trimmed with empty meaning none, a pinned profile id checked
//!    against the provider);
//! 2. **read** the scope view inside one store transaction ([`App::walk_view`]) and run the
//!    pure walk ([`crate::core::resolve::walk`]);
//! 3. **materialise** after the transaction has ended (`handlers::auth::materialise`):
//!    SecretRefs — files, exec helpers — are resolved only there, so no helper ever runs
//!    while a transaction pins the SQLite WAL or a PostgreSQL snapshot (ARCHITECTURE.md,
//!    "Invariants").

use std::sync::Arc;

use super::{agent_param, model_param, profile_id_param, provider_param, App, ProviderSnapshot};
use crate::core::envkeys::{self, EnvKey};
use crate::core::error::{ErrorKind, Result, RpcError};
use crate::core::ids::Aliases;
use crate::core::profile::StoredProfile;
use crate::core::resolve::{self, ExplicitOrder, Step, WalkInput};
use crate::core::settings::Settings;
use crate::handlers::refresh::refreshable;
use crate::store::Tx;

/// A walk request as it arrives in a method's params, before normalisation.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RawWalk<'a> {
    /// `provider` param (an id or a registered alias).
    pub provider: Option<&'a str>,
    /// `profileId` param: pins the walk to one profile.
    pub profile_id: Option<&'a str>,
    /// `model` param.
    pub model: Option<&'a str>,
}

/// A walk request normalised once, the same way for every method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WalkRequest {
    /// The agent (validated, protocol §2.1); `None` is the shared scope.
    pub agent: Option<String>,
    /// The canonical provider id (aliases resolved).
    pub provider: String,
    /// The model, trimmed; `None` when absent or blank.
    pub model: Option<String>,
    /// The pinned profile id (canonical), when `profileId` was given.
    pub pinned: Option<String>,
}

impl WalkRequest {
    /// Validates the agent alone (it needs no store): `invalid_params` at `/agent`.
    pub(crate) fn agent(raw: Option<String>) -> Result<Option<String>> {
        agent_param(raw)
    }

    /// Normalises `raw` against the store's `aliases`.
    ///
    /// Errors: `invalid_params` (a bad provider or profile id, or neither given, with the
    /// JSON pointer), `provider_mismatch` (a pinned profile of another provider).
    pub(crate) fn normalise(
        agent: Option<String>,
        raw: RawWalk<'_>,
        aliases: &Aliases,
    ) -> Result<WalkRequest> {
        let pinned = raw
            .profile_id
            .map(|x| profile_id_param(x, aliases, "/profileId"))
            .transpose()?;
        let provider = match (raw.provider, &pinned) {
            (Some(x), _) => provider_param(x, aliases)?,
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
        Ok(WalkRequest {
            agent,
            provider,
            model: model_param(raw.model.map(str::to_string)),
            pinned: pinned.map(|(id, _)| id),
        })
    }

    /// The agent as a `&str`.
    pub(crate) fn agent_str(&self) -> Option<&str> {
        self.agent.as_deref()
    }
}

/// What one walk read from the store, and the walk over it. Owns everything it needs, so
/// it outlives the transaction it was read in.
pub(crate) struct WalkView {
    snapshot: Arc<ProviderSnapshot>,
    /// The walk's steps, in walk order, each usable or skipped with its reason (shared with
    /// the read cache: a step changes only in a copy, `Arc::make_mut`).
    pub steps: Arc<Vec<Step>>,
}

impl WalkView {
    /// The scope view's profiles of the provider.
    #[cfg(test)]
    pub(crate) fn profiles(&self) -> &Arc<Vec<StoredProfile>> {
        &self.snapshot.profiles
    }

    /// The explicit order in effect, if any.
    pub(crate) fn order(&self) -> Option<&ExplicitOrder> {
        self.snapshot.order.as_ref()
    }

    /// The effective settings.
    pub(crate) fn settings(&self) -> &Arc<Settings> {
        &self.snapshot.settings
    }

    /// The usage state of the view's profiles, by profile id.
    pub(crate) fn usage(&self) -> &std::collections::HashMap<String, crate::core::usage::Usage> {
        &self.snapshot.usage
    }

    /// Whether `sp` can be refreshed (it, or its provider, has a token URL).
    pub(crate) fn can_refresh(&self, sp: &StoredProfile) -> bool {
        refreshable(sp, &self.snapshot.with_oauth)
    }

    /// The environment keys (protocol §6) this process sees for the provider: read from
    /// the process environment, so no store access is needed.
    pub(crate) fn env_keys(&self, provider: &str) -> Vec<EnvKey> {
        envkeys::env_keys(provider, &envkeys::process_env(), &self.snapshot.env_vars)
    }

    /// The profile a step names (O(1): the snapshot's index).
    pub(crate) fn profile(&self, id: &str) -> Option<&StoredProfile> {
        let i = *self.snapshot.index.get(id)?;
        self.snapshot.profiles.get(i)
    }
}

impl App {
    /// Reads the scope view of `req` (from the read cache when the store is unchanged) and
    /// walks it at `now` (milliseconds since the epoch). Runs inside a transaction and does
    /// no I/O besides the store: nothing here resolves a SecretRef.
    pub(crate) fn walk_view(&self, c: &dyn Tx, req: &WalkRequest, now: i64) -> Result<WalkView> {
        let snapshot = self.snapshot(c, req.agent_str(), &req.provider)?;
        let can_refresh = |sp: &StoredProfile| refreshable(sp, &snapshot.with_oauth);
        let (model, pinned) = (req.model.as_deref(), req.pinned.as_deref());
        let steps = snapshot.walk_at(model, pinned, now, || {
            resolve::walk(&WalkInput {
                profiles: &snapshot.profiles,
                order: snapshot.order.as_ref().map(|o| o.ids.as_slice()),
                usage: &snapshot.usage,
                now,
                model,
                pinned,
                refresh_margin_ms: snapshot.settings.refresh_margin_ms,
                can_refresh: &can_refresh,
            })
        });
        Ok(WalkView { snapshot, steps })
    }

    /// Normalises `raw` and reads its walk in one read transaction; the transaction has
    /// ended when this returns. With `needs_secrets` (a method that hands secrets out), a
    /// sealed store without its key fails here with `store_sealed` / `store_key_mismatch`
    /// (protocol §9) instead of walking.
    pub(crate) fn read_walk(
        &self,
        agent: Option<String>,
        raw: RawWalk<'_>,
        now: i64,
        needs_secrets: bool,
    ) -> Result<(WalkRequest, WalkView)> {
        self.store().read(|c| {
            let aliases = self.cached_aliases(c)?;
            let req = WalkRequest::normalise(agent.clone(), raw, &aliases)?;
            let view = self.walk_view(c, &req, now)?;
            if needs_secrets {
                crate::handlers::seal::require_secrets(c, view.snapshot.profiles.iter())?;
                crate::handlers::seal::require_named_secrets(
                    c,
                    view.snapshot.profiles.iter(),
                    &view.snapshot.settings.named_secrets,
                )?;
            }
            Ok((req, view))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::status::{Health, ProfileHealth};

    fn aliases() -> Aliases {
        let mut a = Aliases::new();
        a.insert("gpt".into(), "openai".into());
        a
    }

    fn raw<'a>(
        provider: Option<&'a str>,
        profile_id: Option<&'a str>,
        model: Option<&'a str>,
    ) -> RawWalk<'a> {
        RawWalk {
            provider,
            profile_id,
            model,
        }
    }

    #[test]
    fn model_is_trimmed_and_blank_means_none_for_every_method() {
        let a = aliases();
        for (m, want) in [
            (Some(""), None),
            (Some("   "), None),
            (Some(" m1 "), Some("m1")),
            (Some("m1"), Some("m1")),
            (None, None),
        ] {
            let r = WalkRequest::normalise(None, raw(Some("openai"), None, m), &a).unwrap();
            assert_eq!(r.model.as_deref(), want, "{m:?}");
        }
    }

    #[test]
    fn aliases_resolve_and_a_pinned_profile_names_its_provider() {
        let a = aliases();
        let r = WalkRequest::normalise(None, raw(Some("gpt"), None, None), &a).unwrap();
        assert_eq!(r.provider, "openai");
        let r = WalkRequest::normalise(None, raw(None, Some("openai:work"), None), &a).unwrap();
        assert_eq!(
            (r.provider.as_str(), r.pinned.as_deref()),
            ("openai", Some("openai:work"))
        );
    }

    #[test]
    fn a_pinned_profile_of_another_provider_is_a_mismatch() {
        let e = WalkRequest::normalise(
            None,
            raw(Some("anthropic"), Some("openai:work"), None),
            &aliases(),
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::ProviderMismatch);
    }

    #[test]
    fn neither_provider_nor_profile_is_invalid_params_at_provider() {
        let e = WalkRequest::normalise(None, raw(None, None, Some("m")), &aliases()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidParams);
        assert_eq!(
            e.extra.get("pointer").and_then(|v| v.as_str()),
            Some("/provider")
        );
    }

    #[test]
    fn a_bad_agent_is_refused_before_the_store_is_read() {
        assert!(WalkRequest::agent(Some("not an agent!".into())).is_err());
        assert_eq!(
            WalkRequest::agent(Some("cron".into())).unwrap().as_deref(),
            Some("cron")
        );
    }

    // Handler tests: an `App` on a temp-file store, driven without the binary.

    use crate::handlers::testing::{app, params, put};
    use serde_json::json;

    #[test]
    fn read_walk_reads_the_view_and_ends_its_transaction() {
        let (_d, app) = app();
        put(&app, "openai:a", "sk-unit-a-0001");
        put(&app, "openai:b", "sk-unit-b-0002");
        let raw = RawWalk {
            provider: Some("openai"),
            ..RawWalk::default()
        };
        let (req, view) = app
            .read_walk(None, raw, super::super::now_ms(), false)
            .unwrap();
        assert_eq!(req.provider, "openai");
        assert_eq!(view.steps.len(), 2);
        assert!(view.order().is_none());
        // The transaction has ended: a write goes through while the view is held.
        put(&app, "openai:c", "sk-unit-c-0003");
        assert_eq!(view.profiles().len(), 2, "the view is a snapshot");
    }

    #[test]
    fn a_model_cooldown_is_seen_by_order_get_and_resolve_alike() {
        let (_d, app) = app();
        put(&app, "openai:a", "sk-unit-a-0004");
        put(&app, "openai:b", "sk-unit-b-0005");
        app.order_set(params(
            json!({"provider": "openai", "order": ["openai:a", "openai:b"]}),
        ))
        .unwrap();
        app.auth_report(params(
            json!({"profileId": "openai:a", "outcome": "rate_limit", "model": "m1"}),
        ))
        .unwrap();
        for model in ["m1", " m1 ", "", "m2"] {
            let r = app
                .auth_resolve(params(json!({"provider": "openai", "model": model})))
                .unwrap();
            let o = app
                .order_get(params(json!({"provider": "openai", "model": model})))
                .unwrap();
            assert_eq!(
                o.effective[0].usable,
                r.profile_id.as_deref() == Some("openai:a"),
                "{model:?}"
            );
        }
    }

    #[test]
    fn a_pinned_profile_that_does_not_exist_is_unknown_profile() {
        let (_d, app) = app();
        put(&app, "openai:a", "sk-unit-a-0006");
        let e = app
            .auth_resolve(params(json!({"profileId": "openai:nope"})))
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::UnknownProfile);
    }

    #[test]
    fn status_checks_refs_after_the_read_and_rolls_up_a_usable_fallback() {
        let (_d, app) = app();
        put(&app, "openai:a", "sk-unit-a-0007");
        app.profiles_put(params(
            json!({"profile": {"id": "openai:ref", "type": "api_key",
            "keyRef": {"source": "env", "provider": "default", "id": "MODELAUTH_UNIT_UNSET_VAR"}}}),
        ))
        .unwrap();
        let st = app
            .auth_status(params(json!({"provider": "openai"})))
            .unwrap();
        let p = &st.providers[0];
        assert_eq!(p.provider, "openai");
        let word = |id: &str| {
            p.profiles
                .iter()
                .find(|x| x.profile_id == id)
                .map(|x| x.status)
        };
        assert_eq!(word("openai:a"), Some(ProfileHealth::Static));
        assert_eq!(word("openai:ref"), Some(ProfileHealth::RefUnavailable));
        assert_ne!(
            p.status,
            Health::Missing,
            "a usable key beside a broken ref"
        );
    }

    /// The read cache is keyed by what requests name, so it is bounded: views per
    /// (agent, provider) and kept walks per (model, pinned profile); answers stay right
    /// when a bound empties it.
    #[test]
    fn the_read_cache_stays_bounded_whatever_requests_name() {
        let (_d, app) = app();
        put(&app, "openai:a", "sk-unit-a-0001");
        let resolve = |agent: Option<String>, model: Option<String>| {
            app.auth_resolve(params(
                json!({"provider": "openai", "agent": agent, "model": model}),
            ))
            .unwrap()
        };
        for i in 0..(super::super::VIEWS_KEPT * 2 + 3) {
            let r = resolve(Some(format!("agent-{i}")), None);
            assert_eq!(r.profile_id.as_deref(), Some("openai:a"));
        }
        let views = app.cache.lock().unwrap().views.len();
        assert!(
            views > 0 && views <= super::super::VIEWS_KEPT,
            "{views} views"
        );
        for i in 0..(super::super::WALKS_KEPT * 3 + 1) {
            let r = resolve(None, Some(format!("model-{i}")));
            assert_eq!(r.profile_id.as_deref(), Some("openai:a"));
        }
        let cache = app.cache.lock().unwrap();
        let snap = cache.views.get(&(None, "openai".to_string())).unwrap();
        let walks = snap.walks.lock().unwrap().len();
        assert!(
            walks > 0 && walks <= super::super::WALKS_KEPT,
            "{walks} walks"
        );
    }
}
