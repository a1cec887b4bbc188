//! `order.get`, `order.set`, `order.clear`: the explicit per-provider order of a scope, and
//! the exact walk `auth.resolve` would do now.

use super::usage::ref_check;
use super::walk::{RawWalk, WalkRequest, WalkView};
use super::{
    agent_param, load_aliases, now_ms, profile_id_param, provider_param, revision_conflict, App,
};
use crate::api::{
    EffectiveEntry, OrderClearParams, OrderClearResult, OrderGetParams, OrderGetResult,
    OrderSetParams, OrderSetResult,
};
use crate::core::error::{ErrorKind, Result, RpcError};
use crate::core::resolve::{Skip, SkipReason};
use crate::core::status::RefCheck;
use crate::store::Tx;
use std::collections::BTreeSet;

/// `order.get` `effective`: the walk's steps, with a step whose SecretRef cannot be read
/// now skipped as `ref_unavailable` ([`ref_check`] without `probe`: an `exec` ref is not
/// run and counts as usable). An oauth inside the refresh margin is usable (auth.resolve
/// would refresh it). Runs outside any transaction.
fn effective(view: &WalkView) -> Vec<EffectiveEntry> {
    view.steps
        .iter()
        .map(|s| {
            let mut skip = s.skip.clone();
            if skip.is_none() {
                let unreadable = view.profile(&s.profile_id).is_some_and(|sp| {
                    ref_check(sp, view.settings(), false) == RefCheck::Unavailable
                });
                if unreadable {
                    skip = Some(Skip {
                        reason: SkipReason::RefUnavailable,
                        until: None,
                    });
                }
            }
            EffectiveEntry {
                profile_id: s.profile_id.clone(),
                usable: skip.is_none(),
                reason: skip.as_ref().map(|k| k.reason),
                until: skip.as_ref().and_then(|k| k.until),
            }
        })
        .collect()
}

impl App {
    /// `order.get`: the explicit order in effect and the walk it gives now — the same
    /// normalised request and walk as `auth.resolve` ([`super::walk`]).
    ///
    /// Errors: `invalid_params`, store errors.
    pub(crate) fn order_get(&self, p: OrderGetParams) -> Result<OrderGetResult> {
        let agent = WalkRequest::agent(p.agent)?;
        let now = now_ms();
        let raw = RawWalk {
            provider: Some(&p.provider),
            profile_id: None,
            model: p.model.as_deref(),
        };
        // The store is read in one transaction; SecretRefs are checked after it ended, as
        // `auth.status` checks them: `env` and `file` refs are read (no side effects), an
        // `exec` helper is never run (order.get reports the walk, it hands out no secret).
        let (req, view) = self.read_walk(agent, raw, now, false)?;
        let effective = effective(&view);
        Ok(OrderGetResult {
            provider: req.provider,
            agent: req.agent,
            order: view.order().map(|o| o.ids.clone()),
            source: view.order().map(|o| o.source),
            effective,
        })
    }

    /// `order.set`.
    pub(crate) fn order_set(&self, p: OrderSetParams) -> Result<OrderSetResult> {
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
    pub(crate) fn order_clear(&self, p: OrderClearParams) -> Result<OrderClearResult> {
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
}

#[cfg(test)]
mod tests {
    use crate::core::error::ErrorKind;
    use crate::core::resolve::{OrderSource, SkipReason};
    use crate::handlers::testing::{app, params, put};
    use serde_json::json;

    #[test]
    fn order_set_drops_duplicates_and_follows_expected_revision() {
        let (_d, app) = app();
        put(&app, "openai:a", "sk-unit-order-a1");
        put(&app, "openai:b", "sk-unit-order-b1");
        let r = app
            .order_set(params(json!({"provider": "openai",
                "order": ["openai:b", "openai:a", "openai:b"], "expectedRevision": 0})))
            .unwrap();
        assert_eq!(r.order, ["openai:b", "openai:a"]);
        assert_eq!(r.revision, 1);
        let e = app
            .order_set(params(json!({"provider": "openai",
                "order": ["openai:a"], "expectedRevision": 0})))
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::RevisionConflict);
        let o = app
            .order_get(params(json!({"provider": "openai"})))
            .unwrap();
        assert_eq!(
            o.order.as_deref(),
            Some(&["openai:b".into(), "openai:a".into()][..])
        );
        assert_eq!(o.source, Some(OrderSource::Shared));
    }

    #[test]
    fn order_set_refuses_unknown_and_foreign_ids_and_writes_nothing() {
        let (_d, app) = app();
        put(&app, "openai:a", "sk-unit-order-a2");
        put(&app, "mistral:m", "sk-unit-order-m2");
        let e = app
            .order_set(params(
                json!({"provider": "openai", "order": ["openai:a", "openai:zz"]}),
            ))
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::UnknownProfile);
        assert_eq!(e.extra.get("missing"), Some(&json!(["openai:zz"])));
        let e = app
            .order_set(params(
                json!({"provider": "openai", "order": ["mistral:m"]}),
            ))
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::ProviderMismatch);
        let e = app
            .order_set(params(json!({"provider": "openai", "order": []})))
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidParams);
        let o = app
            .order_get(params(json!({"provider": "openai"})))
            .unwrap();
        assert_eq!(o.order, None, "a refused order.set stored an order");
    }

    #[test]
    fn order_clear_of_nothing_is_not_an_error() {
        let (_d, app) = app();
        put(&app, "openai:a", "sk-unit-order-a3");
        let r = app
            .order_clear(params(json!({"provider": "openai"})))
            .unwrap();
        assert!(!r.cleared);
        app.order_set(params(json!({"provider": "openai", "order": ["openai:a"]})))
            .unwrap();
        let r = app
            .order_clear(params(json!({"provider": "openai"})))
            .unwrap();
        assert!(r.cleared);
    }

    #[test]
    fn order_get_reports_an_unreadable_ref_and_an_unlisted_profile() {
        let (_d, app) = app();
        put(&app, "openai:a", "sk-unit-order-a4");
        put(&app, "openai:c", "sk-unit-order-c4");
        app.profiles_put(params(json!({"profile": {"id": "openai:r", "type": "api_key",
            "keyRef": {"source": "env", "provider": "default", "id": "MODELAUTH_UNIT_ORDER_UNSET"}}})))
            .unwrap();
        app.order_set(params(
            json!({"provider": "openai", "order": ["openai:r", "openai:a"]}),
        ))
        .unwrap();
        let o = app
            .order_get(params(json!({"provider": "openai"})))
            .unwrap();
        let got: Vec<(&str, bool, Option<SkipReason>)> = o
            .effective
            .iter()
            .map(|e| (e.profile_id.as_str(), e.usable, e.reason))
            .collect();
        assert_eq!(
            got,
            [
                ("openai:r", false, Some(SkipReason::RefUnavailable)),
                ("openai:a", true, None),
                ("openai:c", false, Some(SkipReason::ExcludedByAuthOrder)),
            ]
        );
    }
}
